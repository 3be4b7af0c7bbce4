"""The GAN family: a generator G and a discriminator/critic D, both MLPs, on 2-D data where every
sample can be seen (core.gan, core.train_gan). Measured per network and per layer: G's and D's
gradients, D's outputs on real and fake points, the generator's gradient at D's logit (the
saturating loss's vanishing one), the critic's activation gradients under weight clipping or a
gradient penalty, spectral norms, and for the mixtures the modes the generator covers.

The GAN has a depth, an activation and a learning rate per network (`g_depth`, `d_activation`,
`g_lr`, ...), so it does not take the common `depth`, `activation` and `learning_rate`, nor the
classifier's gradient clipping and L1/L2 (its Lipschitz constraint on D is `lipschitz`).

Its one program is the training chunk, built for the structural choices' values (GanSpec:
activations, loss, Lipschitz constraint, n_critic, optimizer, G's BatchNorm). They are live keys:
a change keeps both networks' weights and the step, and compiles that choice's chunk (shown as a
compile). Learning rates, clip_c and gp_lambda are traced: a change never compiles.
"""
from __future__ import annotations

import functools
from typing import Literal, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from pydantic import Field

from gradscope.core import gan
from gradscope.core.initializers import INITIALIZERS
from gradscope.core.train_gan import PER_STEP_STATS, ROW_STATS, SPARSE_STATS, make_chunk
from gradscope.errors import ConfigError

from .base import Model, ModelFamily, Stat, chunk_steps_for, compile_program

MODE_SAMPLES = 1000  # G's samples counted against a mixture's modes, at the last measured step of each call
PLANE_SAMPLES = 256  # real and generated points on the page's data plane
PLANE_ARROWS = 32  # generated points with a grad_x D arrow (where D pushes G)
PLANE_GRID = 40  # D's output on a PLANE_GRID x PLANE_GRID grid over the data (the plane's background)
DEPTHS = (1, 16)


class GanChunkKey(NamedTuple):
    """The GAN's training chunk: K steps of (n_critic D updates, one G update) on `shape` under `spec`.
    Every dataset shares it (the modes are an argument, padded to MAX_MODES): switching the data,
    or drawing new points, takes no compile."""

    kind: str  # "chunk"
    shape: gan.GanShape
    spec: gan.GanSpec
    n_train: int
    steps: int
    keep: tuple[str, ...] | None = None  # the statistics returned (None: every one)

    def function(self):
        """chunk(state, knobs, points, modes, key, mode_std, n, every) -> (state, statistics): the
        chunk's own output plus, at its last measured row, the mode statistics of MODE_SAMPLES of G's
        samples (NaN at the other rows: sparse statistics, as the MLP's held-out loss; NaN at every
        row for data that is not a mixture, where `mode_std` = [std, 0])."""
        chunk = make_chunk(self.shape, self.spec, self.steps)
        sample = gan.make_sampler(self.shape, self.spec)
        steps, keep = self.steps, self.keep

        def run(state, knobs, points, modes, key, mode_std, n, every):
            state, out = chunk(state, knobs, points, key, n, every)
            fake = sample(state.g_params, jax.random.fold_in(jax.random.fold_in(key, 1 << 30), state.step), MODE_SAMPLES)
            covered, quality = gan.mode_stats(fake, modes, mode_std[0])
            shown = (jnp.arange(steps) == out["rows"] - 1) & (mode_std[1] > 0)
            out["modes_covered"] = jnp.where(shown, covered.astype(jnp.float32), jnp.nan)
            out["high_quality"] = jnp.where(shown, quality, jnp.nan)
            if keep is not None:
                out = {k: v for k, v in out.items() if k in keep or k == "rows"}
            return state, out
        return run

    def compile(self, args):
        return compile_program(self.function(), args, cpu_options=None)  # the default -O level: see base.CPU_OPTIONS

    def describe(self) -> str:
        s, sp = self.shape, self.spec
        return (f"GAN {sp.gan_loss}, {sp.lipschitz}, G {sp.g_act} x {s.g_depth}, D {sp.d_act} x {s.d_depth}, "
                f"width {s.width}, {sp.d_optimizer}")


@functools.partial(jax.jit, static_argnums=(1, 2, 3, 4))
def _initial_state(seed, shape, spec, init, gain):
    """Both networks, optimizer states and power-iteration vectors from the seed, one compiled program."""
    return gan.init_state(jax.random.PRNGKey(seed), shape, spec, init, init, gain, gain)


@functools.cache
def _n_modes(dataset: str) -> int:
    """The mixture's mode count (0: not a mixture, or a drawing)."""
    if dataset not in gan.DATASETS:
        return 0
    modes = gan.load(dataset, n=1, seed=0)[1]
    return 0 if modes is None else len(modes)


NEXT_LOSS = {"saturating": "non_saturating", "non_saturating": "saturating", "least_squares": "non_saturating"}
MAX_MODES = max(_n_modes(d) for d in gan.DATASETS)  # the chunk's modes argument, padded to this
FAR = 1e6  # where padding modes lie: no sample is ever near one, so none is ever covered


@functools.lru_cache(maxsize=32)
def _sampler(shape: gan.GanShape, spec: gan.GanSpec):
    """G's sampler for a shape and spec, built once: the data plane draws from it every second."""
    return gan.make_sampler(shape, spec)


def _log(lo, hi, zero=False):
    return {"kind": "log", "min": lo, "max": hi, "zero": zero}


# The page's control section for the GAN's own keys: [key, label, widget, what it does to gradients]
# (frontend/controls.js builds it as its own sections; the widgets' bounds lie inside config_fields').
CONTROLS = {"title": "Generator & discriminator", "rows": [
    ["gan_loss", "Adversarial loss", {"kind": "select"},
     "What G and D play for. Saturating: G minimizes log(1 − D(G(z))), whose gradient at D's logit is D(G(z)) and vanishes "
     "once D rejects G's samples; non-saturating: G maximizes log D(G(z)), gradient 1 − D(G(z)); least squares; "
     "Wasserstein: a critic's raw score, which needs a Lipschitz constraint."],
    ["lipschitz", "Lipschitz constraint", {"kind": "select"},
     "How D is kept smooth: weight clipping to [−c, c] (the critic's gradient then explodes or vanishes across its layers "
     "with c), a gradient penalty on (‖grad_x D‖ − 1)² at points between real and fake, or spectral normalization of every D layer."],
    ["clip_c", "Clip c", _log(1e-4, 10),
     "D's weights are clipped to [−c, c] after every update. Too large: the critic's gradient explodes toward the input; "
     "too small: it vanishes."],
    ["gp_lambda", "Penalty λ", _log(1e-2, 1000, zero=True), "The gradient penalty's weight; 10 is WGAN-GP's value."],
    ["n_critic", "D steps per G step", {"kind": "number", "min": 1, "max": 10},
     "D's updates for each of G's: a Wasserstein critic needs several to be near its optimum, whose gradient G then follows."],
    ["g_lr", "G learning rate", _log(1e-5, 10), "G's step size."],
    ["d_lr", "D learning rate", _log(1e-5, 10),
     "D's step size. A D that learns much faster than G wins the game, and the saturating loss then starves G."],
    ["g_activation", "G activation", {"kind": "select"}, "The activation of G's hidden layers."],
    ["d_activation", "D activation", {"kind": "select"}, "The activation of D's hidden layers (leaky ReLU is the DCGAN choice)."],
    ["z_dim", "Noise dim", {"kind": "number", "min": 1, "max": 16},
     "The dimension of G's input noise z ~ N(0, I). Restarts training."],
    ["g_depth", "G depth", {"kind": "number", "min": DEPTHS[0], "max": DEPTHS[1]}, "G's hidden layers. Restarts training."],
    ["d_depth", "D depth", {"kind": "number", "min": DEPTHS[0], "max": DEPTHS[1]}, "D's hidden layers. Restarts training."],
]}
# The page's fixes for what its diagnosis finds (frontend/gamediagnosis.js names them): Goodfellow et
# al. (2014)'s switch of G's loss, and WGAN-GP (Gulrajani et al. 2017)
FIXES = {
    "non_saturating": {"label": "Switch to the non-saturating loss", "changes": {"gan_loss": "non_saturating"}},
    "wgan_gp": {"label": "Wasserstein loss + gradient penalty", "changes": {"gan_loss": "wasserstein", "lipschitz": "gp"}},
}


class GanFamily(ModelFamily):
    name = "gan"
    models = (Model("gan", "GAN", gan.DATASETS + (gan.DRAWN,), INITIALIZERS, gan.GAN_ACTIVATIONS),)
    common_keys_not_taken = ("depth", "activation", "leaky_alpha", "clip_mode", "clip_value", "learning_rate", "l1", "l2")
    config_fields = {
        "z_dim": (int, Field(2, ge=1, le=16)),
        "g_depth": (int, Field(3, ge=DEPTHS[0], le=DEPTHS[1])),
        "d_depth": (int, Field(3, ge=DEPTHS[0], le=DEPTHS[1])),
        "g_activation": (Literal[gan.GAN_ACTIVATIONS], "relu"),
        "d_activation": (Literal[gan.GAN_ACTIVATIONS], "leaky_relu"),
        "batchnorm": (bool, False),  # in G only
        "gan_loss": (Literal[gan.GAN_LOSSES], "non_saturating"),
        "lipschitz": (Literal[gan.LIPSCHITZ], "none"),
        "clip_c": (float, Field(0.01, gt=0.0, le=10.0)),
        "gp_lambda": (float, Field(10.0, ge=0.0, le=1000.0)),
        "n_critic": (int, Field(1, ge=1, le=10)),
        "g_lr": (float, Field(1e-3, gt=0.0, le=10.0)),
        "d_lr": (float, Field(1e-3, gt=0.0, le=10.0)),
        # dataset=drawn: the user's points, [[x, y], ...] (a tuple: configs are hashable)
        "points": (tuple[tuple[float, float], ...] | None, Field(None, max_length=gan.MAX_DRAWN)),
    }
    live_keys = ("g_activation", "d_activation", "batchnorm", "gan_loss", "lipschitz", "clip_c", "gp_lambda", "n_critic",
                 "g_lr", "d_lr")
    code_keys = ("g_activation", "d_activation", "gan_loss", "lipschitz", "n_critic")  # and batchnorm (G's)
    rule_keys = ("g_depth", "d_depth", "width")
    count_keys = ("g_depth", "d_depth", "width", "batch_size")
    depth_range = DEPTHS
    default_depth = 3
    applies = {"clip_c": ("lipschitz", ("clip",)), "gp_lambda": ("lipschitz", ("gp",))}
    cleared_with = {"points": ("dataset", (gan.DRAWN,))}
    loss_stat = "d_loss"
    # the first look: both losses, what D says of real and fake, and both networks' per-layer gradients
    preview_stats = ("d_loss", "g_loss", "d_real", "d_fake", "g_logit_grad", "g_grad_norm", "g_delta_norm", "g_weight_norm",
                     "d_grad_norm", "d_delta_norm", "d_weight_norm")
    per_step_stats = PER_STEP_STATS
    sparse_stats = SPARSE_STATS
    stats = (
        Stat("d_loss", (), "D's loss (no penalty)"), Stat("g_loss", (), "G's loss"),
        Stat("d_real", (), "mean D(x) on real points (a probability; raw under wasserstein)"),
        Stat("d_fake", (), "mean D(G(z))"),
        Stat("g_logit_grad", (), "mean |dL_G / d logit of D(G(z))|"),
        Stat("w_estimate", (), "mean D(real) - mean D(fake): the critic's Wasserstein estimate"),
        *(Stat(s, ("g_layer",)) for s in gan.G_LAYER_STATS),
        *(Stat(s, ("g_hidden",)) for s in gan.G_HIDDEN_STATS),
        *(Stat(s, ("d_layer",)) for s in gan.D_LAYER_STATS),
        *(Stat(s, ("d_hidden",)) for s in gan.D_HIDDEN_STATS),
        Stat("critic_act_grad", ("batch", "d_hidden"), "||dD/dh_l||, row 0 real, row 1 fake"),
        Stat("input_grad_norm", ("point",), "||grad_x D|| at real, fake, interpolated points"),
        Stat("modes_covered", (), "mixtures: modes with at least 1% of G's samples within 3 std"),
        Stat("high_quality", (), "mixtures: share of G's samples within 3 std of a mode"),
    )
    # the page's GAN views: the data plane (plane messages), G's and D's profiles and heat maps (the
    # networks' stat prefixes), the logit-gradient chart with its theory, the two networks' game as
    # its diagnosis with its fixes, its own control section, the knobs of each compared run, and the
    # dataset drawn on the plane (its name, the key of its points and how many it takes)
    views = {"axis": "layer", "diagnosis": "game", "theory": "logit", "boundary": False, "plane": True, "page": True,
             "networks": {"g": "generator", "d": "discriminator"}, "controls": CONTROLS, "fixes": FIXES,
             "compare_knobs": ["gan_loss", "g_lr", "d_lr"],
             "draw": {"dataset": gan.DRAWN, "key": "points", "min": gan.MIN_DRAWN, "max": gan.MAX_DRAWN}}

    # -- config --------------------------------------------------------------------
    def rules(self, c):
        if c.dataset == gan.DRAWN:
            if c.points is None:
                yield ConfigError("points", f"dataset drawn trains on the points you draw: send points=[[x, y], ...] "
                                  f"({gan.MIN_DRAWN} to {gan.MAX_DRAWN} of them)")
            else:
                try:
                    gan.drawn(c.points)
                except ValueError as e:
                    yield ConfigError("points", str(e))
        elif c.points is not None:
            yield ConfigError("points", f"points are read only with dataset drawn, not {c.dataset}", [gan.DRAWN])
        params = (c.g_depth + c.d_depth) * c.width * c.width
        if params > 2**24:
            yield ConfigError("width", f"(g_depth + d_depth) x width^2 = {params} exceeds {2**24} weights; lower a depth or width")

    def activation_count(self, c):
        return (c.g_depth + c.d_depth) * c.width * c.batch_size * (c.n_critic + 1), "batch_size", \
            "(g_depth + d_depth) x width x batch_size x (n_critic + 1)"

    def warm_changes(self, config, order):
        """The fix each lesson makes next, compiled while the run shows the problem: the saturating
        loss's switch to the non-saturating one (and back), weight clipping's switch to the
        gradient penalty. The two activations compile when chosen."""
        if config.gan_loss == "wasserstein":
            return ({"lipschitz": "gp"},) if config.lipschitz == "clip" else ()
        return ({"gan_loss": NEXT_LOSS[config.gan_loss]},)

    # -- data and state --------------------------------------------------------------
    def shape_of(self, c) -> gan.GanShape:
        return gan.GanShape(z_dim=c.z_dim, width=c.width, g_depth=c.g_depth, d_depth=c.d_depth, batch=c.batch_size)

    def spec_of(self, c) -> gan.GanSpec:
        return gan.GanSpec(g_act=c.g_activation, d_act=c.d_activation, gan_loss=c.gan_loss, lipschitz=c.lipschitz,
                           g_optimizer=c.optimizer, d_optimizer=c.optimizer, n_critic=c.n_critic, g_batchnorm=c.batchnorm)

    def data(self, c, shape):
        """(points, modes padded to MAX_MODES far away, [mode std, is a mixture], a 1-row stand-in):
        the chunk draws its batches from the points. Every dataset gives arrays of the same shapes,
        so one build serves them all."""
        if c.dataset == gan.DRAWN:
            points, modes, std = gan.from_drawn(c.points, seed=c.seed), None, None
        else:
            points, modes, std = gan.load(c.dataset, seed=c.seed)
        padded = np.full((MAX_MODES, 2), FAR, np.float32)
        if modes is not None:
            padded[:len(modes)] = modes
        flag = np.asarray([std or 1.0, float(modes is not None)], np.float32)
        return jnp.asarray(points), jnp.asarray(padded), jnp.asarray(flag), jnp.asarray(points[:1])

    def initial_state(self, c, shape, abstract=False):
        make = lambda seed: _initial_state(seed, shape, self.spec_of(c), c.init, c.init_gain)
        return jax.eval_shape(make, np.int32(c.seed)) if abstract else make(np.int32(c.seed))

    def knobs_of(self, c) -> gan.GanKnobs:
        return gan.knobs(g_lr=c.g_lr, d_lr=c.d_lr, clip_c=c.clip_c, gp_lambda=c.gp_lambda)

    def reset_optimizer(self, state, optimizer):
        """Both optimizers restarted as `optimizer` from the current weights."""
        g_opt = gan._optimizer(optimizer)
        return state._replace(g_opt=g_opt.init(state.g_params), d_opt=g_opt.init(state.d_params))

    # -- compiled programs ------------------------------------------------------------
    def chunk_key(self, c, shape, n_train, n_val, steps, spec=None, keep=None) -> GanChunkKey:
        """One build per choice of the structural knobs (spec None is the config's own: GAN builds are never generic)."""
        return GanChunkKey("chunk", shape, self.spec_of(c), n_train, steps, keep)

    def chunk_args(self, state, c, x, y, x_val, y_val, n, every):
        """(state, knobs, points, modes, key, mode_std, n, every): x the points, y the modes, x_val [mode std, is a mixture]."""
        key = jax.random.fold_in(jax.random.PRNGKey(c.seed), 2)
        return (state, self.knobs_of(c), x, y, key, x_val, np.int32(n), np.int32(every))

    def max_chunk_steps(self, shape: gan.GanShape) -> int:
        """Each step is n_critic + 1 updates of both small MLPs over a batch (twice it for D's real and fake)."""
        w, b = shape.width, shape.batch
        flops = 6 * 3 * b * (shape.g_depth + shape.d_depth) * w * w
        return chunk_steps_for(flops / 20e9 + (shape.g_depth + shape.d_depth) * 30e-6)

    def evaluate(self, trainer, held_out):
        """D's and G's losses on a fresh batch, and for mixtures the modes covered."""
        c = trainer.config
        fake = self.samples(trainer, MODE_SAMPLES)
        out = {"samples": int(fake.shape[0])}
        points, modes, std = gan.load(c.dataset, seed=c.seed)
        if modes is not None:
            covered, quality = gan.mode_stats(jnp.asarray(fake), jnp.asarray(modes), std)
            out.update(modes_covered=int(covered), high_quality=float(quality), modes=int(len(modes)))
        return out

    def samples(self, trainer, n: int) -> np.ndarray:
        """n of G's samples from the trainer's current weights (a fixed draw: frames compare)."""
        sample = _sampler(trainer.shape, self.spec_of(trainer.config))
        return np.asarray(sample(trainer.state.g_params, jax.random.PRNGKey(7), n))

    def plane(self, trainer, n: int = PLANE_GRID) -> dict:
        """The data plane: real and generated points, D's output on an n x n grid over them (as
        a probability for the sigmoid losses, raw otherwise), and grad_x D at some generated
        points (the direction D pushes G's samples)."""
        c, st = trainer.config, trainer.state
        real = np.asarray(trainer.x)[:PLANE_SAMPLES]
        fake = self.samples(trainer, PLANE_SAMPLES)
        both = np.concatenate([real, fake[np.isfinite(fake).all(axis=1)]])
        lo, hi = both.min(axis=0) - 0.5, both.max(axis=0) + 0.5
        gx, gy = np.linspace(lo[0], hi[0], n), np.linspace(lo[1], hi[1], n)
        grid = np.stack(np.meshgrid(gx, gy), axis=-1).reshape(-1, 2).astype(np.float32)
        d, arrows = _plane_fields(c.d_activation, c.gan_loss, c.lipschitz, st.d_params, st.u, jnp.asarray(grid),
                                  jnp.asarray(fake[:PLANE_ARROWS]))
        clean = lambda a: np.where(np.isfinite(a), a, np.nan).tolist()
        return {"real": clean(real), "fake": clean(fake), "x": gx.tolist(), "y": gy.tolist(),
                "d": clean(np.asarray(d).reshape(n, n)), "arrows": clean(np.asarray(arrows)),
                "d_output": "probability" if c.gan_loss in gan.SIGMOID_LOSSES else "critic value"}

    def axis_sizes(self, c) -> dict[str, int]:
        return {"g_layer": c.g_depth + 1, "g_hidden": c.g_depth, "d_layer": c.d_depth + 1, "d_hidden": c.d_depth,
                "batch": 2, "point": 3}

    def columns(self, c) -> dict:
        return {"networks": ["g", "d"], "input_grad_points": ["real", "fake", "interpolated"],
                "critic_act_grad_rows": ["real", "fake"],
                "d_output": "probability" if c.gan_loss in gan.SIGMOID_LOSSES else "critic value"}

    def model_stats(self, model):
        return tuple(s.name for s in self.stats)

    def meta(self) -> dict:
        """Beside the common record: the key that picks the loss and the losses under which D outputs a
        probability (the page's logit-gradient theory and D(x) axis read them), and each mixture's mode
        count (the page's modes chart)."""
        modes = {d: _n_modes(d) for d in gan.DATASETS if _n_modes(d)}
        return {**super().meta(), "losses": list(gan.GAN_LOSSES), "lipschitz": list(gan.LIPSCHITZ),
                "loss_key": "gan_loss", "probability_losses": list(gan.SIGMOID_LOSSES), "modes": modes}


@functools.partial(jax.jit, static_argnums=(0, 1, 2))
def _plane_fields(act, gan_loss, lipschitz, d_params, u, grid, fake):
    sigmas = gan.spectral_norms(d_params, u)[0] if lipschitz == "spectral" else None
    raw = gan.critic(act, d_params, grid, sigmas=sigmas)[0]
    arrows = gan.input_gradients(act, d_params, fake, sigmas=sigmas)
    return (jax.nn.sigmoid(raw) if gan_loss in gan.SIGMOID_LOSSES else raw), arrows


FAMILY = GanFamily()

__all__ = ["FAMILY", "GanChunkKey", "GanFamily", "ROW_STATS"]
