"""`gradscope.torch.watch`: the per-layer statistics of a PyTorch training loop, and the page's
learning rate reaching back into its optimizer.

    gs = gradscope.attach("my run", server="http://localhost:8000")
    gradscope.torch.watch(model, optimizer, gs)          # 1
    for step, (x, y) in enumerate(batches):
        loss = loss_fn(model(x), y)
        optimizer.zero_grad(); loss.backward(); optimizer.step()
        gs.publish(step, loss=loss)                      # 2

The statistics are `gradscope.optax.monitor`'s, in its packed layout, so that the recorder, the
file, the server and the page treat a PyTorch run as they treat a JAX one:

- a layer is a module with parameters of its own (`model.named_modules()`'s names: `0`, `fc1`,
  `blocks.3.conv`), its parameters counted together;
- `grad_norm` is read by a post-accumulate-grad hook on every parameter, when backward has
  accumulated its gradient: before any clipping the loop does between `backward` and `step`
  (`torch.nn.utils.clip_grad_norm_`); `clipped_grad_norm` is read just before `optimizer.step`,
  after it; `weight_norm`, `update_norm` (||θ after − θ before||) and `update_ratio` around the
  step (the optimizer's pre- and post-step hooks), and `nonfinite_count` per layer;
- every number stays on the parameters' device, in one tensor per step, until the recorder's
  background thread fetches it.

Install with `pip install gradscope[torch]`. This module imports torch and, of gradscope, only
the recorder (an import contract keeps it so).
"""
from __future__ import annotations

import functools
import math

import torch

from .monitoring import Run

_EPS = 1e-12


class Watch:
    """The hooks on one model and its optimizer, feeding one `Run` (`watch` makes it)."""

    def __init__(self, model: torch.nn.Module, optimizer: torch.optim.Optimizer, run: Run, every: int = 1):
        if not isinstance(every, int) or every < 1:
            raise ValueError(f"every: {every!r} must be an int >= 1 (measure every Nth step)")
        groups = []
        for name, module in model.named_modules():
            params = [p for p in module.parameters(recurse=False) if p.requires_grad]
            if params:
                groups.append((name or type(model).__name__, params))
        if not groups:
            raise ValueError("the model has no parameters that require a gradient: nothing to watch")
        watched = {id(p) for g in optimizer.param_groups for p in g["params"]}
        missing = [name for name, params in groups if not any(id(p) in watched for p in params)]
        if missing:
            raise ValueError(f"the optimizer does not update {', '.join(missing)}: pass the optimizer of this model")
        self.model, self.optimizer, self.run, self.every = model, optimizer, run, every
        self.layers = [name for name, _ in groups]
        self._params = [params for _, params in groups]
        flat = [p for params in self._params for p in params]
        self._layer_of = torch.tensor([i for i, params in enumerate(self._params) for _ in params], device=flat[0].device)
        self._grad_sq = torch.zeros(len(flat), device=flat[0].device)  # per parameter, set by its hook
        self._bad = torch.zeros(len(flat), device=flat[0].device)
        self._clipped_sq = None
        self._before = None
        self._packed = None
        self.updates = 0  # optimizer steps taken since watch
        self._handles = [p.register_post_accumulate_grad_hook(functools.partial(self._on_grad, j))
                         for j, p in enumerate(flat)]
        self._handles += [optimizer.register_step_pre_hook(self._pre_step),
                          optimizer.register_step_post_hook(self._post_step)]
        run.source = self

    # -- the hooks (the training thread) ---------------------------------------------------
    def _measuring(self) -> bool:
        return self.updates % self.every == 0

    @torch.no_grad()
    def _on_grad(self, j: int, p: torch.Tensor) -> None:
        """After backward accumulated p's gradient (again on each accumulation: the last one counts)."""
        if self._measuring():
            g = p.grad.detach()
            self._grad_sq[j] = g.float().square().sum()
            self._bad[j] = (~torch.isfinite(g)).sum()

    def _per_layer(self, values: torch.Tensor) -> torch.Tensor:
        return torch.zeros(len(self.layers), device=values.device).index_add_(0, self._layer_of, values)

    @torch.no_grad()
    def _pre_step(self, optimizer, args, kwargs) -> None:
        if not self._measuring():
            return
        flat = [p for params in self._params for p in params]
        zero = torch.zeros((), device=self._grad_sq.device)
        self._clipped_sq = self._per_layer(torch.stack([p.grad.float().square().sum() if p.grad is not None else zero
                                                         for p in flat]))
        self._before = [p.detach().clone() for p in flat]

    @torch.no_grad()
    def _post_step(self, optimizer, args, kwargs) -> None:
        if self._measuring() and self._before is not None:
            flat = [p for params in self._params for p in params]
            weight_sq = self._per_layer(torch.stack([p.float().square().sum() for p in flat]))
            update_sq = self._per_layer(torch.stack([(p.float() - b.float()).square().sum()
                                                     for p, b in zip(flat, self._before, strict=True)]))
            grad_sq, bad = self._per_layer(self._grad_sq), self._per_layer(self._bad)
            grad, clipped = grad_sq.sqrt(), self._clipped_sq.sqrt()
            weight, update = weight_sq.sqrt(), update_sq.sqrt()
            g_all, c_all = grad_sq.sum().sqrt(), self._clipped_sq.sum().sqrt()
            step = torch.tensor(float(self.updates), device=grad.device)
            glob = torch.stack([g_all, c_all, (bad.sum() > 0).float(), 1.0 - c_all / (g_all + _EPS), step])
            # gradscope.optax's layout: LAYER_STATS rows of a value per layer, then GLOBAL_STATS
            self._packed = torch.cat([grad, clipped, weight, update, update / (weight + _EPS), bad, glob])
            self._grad_sq.zero_()
            self._bad.zero_()
            self._before = None
        self.updates += 1

    # -- what the recorder asks (Run.source) -------------------------------------------------
    def packed(self) -> torch.Tensor | None:
        """The latest measured step's statistics, one tensor (still on the device)."""
        return self._packed

    def knobs(self) -> dict[str, float]:
        """The learning rate (of the first param group; a change sets every group's)."""
        lr = self.optimizer.param_groups[0].get("lr")
        lr = float(lr) if isinstance(lr, int | float | torch.Tensor) else math.nan
        return {"learning_rate": lr} if math.isfinite(lr) else {}

    def apply(self, changes: dict[str, float]) -> None:
        """The page's changes, between two steps: the learning rate of every param group."""
        for key in changes:
            if key != "learning_rate":
                raise ValueError(f"{key}: a watched PyTorch run exposes only learning_rate")
        for group in self.optimizer.param_groups:
            if isinstance(group["lr"], torch.Tensor):
                group["lr"].fill_(changes["learning_rate"])
            else:
                group["lr"] = float(changes["learning_rate"])

    def remove(self) -> None:
        """Take the hooks off (the run keeps what it recorded)."""
        for h in self._handles:
            h.remove()
        self._handles = []
        if self.run.source is self:
            self.run.source = None


def watch(model: torch.nn.Module, optimizer: torch.optim.Optimizer, run: Run, *, every: int = 1) -> Watch:
    """Watch `model` trained by `optimizer`: hooks measure every `every`-th step and `run.publish(step,
    loss=...)` after each `optimizer.step()` sends it; the page's learning rate reaches the optimizer
    at the next publish."""
    return Watch(model, optimizer, run, every)
