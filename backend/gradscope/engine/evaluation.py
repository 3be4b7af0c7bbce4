"""Evaluation of a Trainer's current weights: class probabilities, loss and accuracy over a
split, the decision boundary on a grid (mixed into Trainer)."""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from gradscope.core import datasets

from .programs import GRID


class Evaluation:
    """Needs the Trainer's config, family, shape, state, x/y splits, _get, _cache, _predict_key, _predict_args."""

    def predict(self, x) -> np.ndarray:
        """Evaluation-mode class probabilities (running BatchNorm stats, rrelu's mean slope, no dropout)."""
        x = jnp.asarray(x, jnp.float32)
        exe = self._get(self._predict_key(getattr(self.config, "activation", None), x.shape[0]), self._predict_args(x.shape[0]))
        return self._probabilities(exe, x)

    def _probabilities(self, exe, x):
        logits = exe(*self.family.predict_args(self.state, self.config, self.shape, x.shape[0])[:-1], x)
        return np.asarray(jax.nn.softmax(logits))

    def evaluate(self, held_out: bool = False) -> dict:
        """Loss and accuracy over the training split (or the held-out one), in evaluation mode.

        A family with its own evaluation (the recurrent models: a fixed batch of sequences, with
        the task's baseline loss) answers instead."""
        own = self.family.evaluate(self, held_out)
        if own is not None:
            return own
        x, y = (self.x_val, self.y_val) if held_out else (self.x, self.y)
        p = self.predict(x)
        y = np.asarray(y)
        with np.errstate(divide="ignore", invalid="ignore"):
            loss = float(-np.mean(np.log(p[np.arange(len(y)), y])))
        return {"loss": loss, "accuracy": float(np.mean(p.argmax(1) == y))}

    def data_plane(self) -> dict | None:
        """The family's data plane (the GAN's real and generated points under D's output), else None."""
        return self.family.plane(self)

    def decision_grid(self, n: int = GRID, wait: bool = False) -> dict | None:
        """Class-1 probability on an n x n grid over the data (2-D datasets), else None.

        Also None (unless `wait`) while its predict function is still compiling in the
        background: the caller's thread never waits for a compile after an activation switch."""
        key = self._predict_key(getattr(self.config, "activation", None), n * n)
        if key is None or self.config.dataset not in datasets.TWO_D:
            return None
        args = self._predict_args(n * n)
        exe = self._get(key, args) if wait else self._cache.ready(key, args)
        if exe is None:
            return None
        x = np.asarray(self.x)
        lo, hi = x.min(axis=0) - 0.3, x.max(axis=0) + 0.3
        gx, gy = np.linspace(lo[0], hi[0], n), np.linspace(lo[1], hi[1], n)
        grid = np.stack(np.meshgrid(gx, gy), axis=-1).reshape(-1, 2)
        p = self._probabilities(exe, jnp.asarray(grid, jnp.float32))[:, 1].reshape(n, n)
        return {"x": gx.tolist(), "y": gy.tolist(), "p": np.where(np.isfinite(p), p, np.nan).tolist()}
