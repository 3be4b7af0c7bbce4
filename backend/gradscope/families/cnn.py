"""The CNN family: a deep stack of 3x3 conv layers on small images (digits, shapes), with
BatchNorm2d, pre-activation residual blocks, SkipInit and stride-2 stages, measured per conv
layer, per channel and per residual unit (core.cnn, core.train_cnn).

Its programs: the training chunk (built for the structural knobs' values, or generic), and the
evaluation-mode forward pass that the trainer's evaluation reads.
"""
from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from pydantic import Field

from gradscope.core import datasets, images
from gradscope.core.activations import ACTIVATIONS
from gradscope.core.cnn import CnnShape, blocks, init_params, max_channels, plan, unit_ends
from gradscope.core.initializers import INITIALIZERS
from gradscope.core.network import Knobs
from gradscope.core.optimizers import ClipMode
from gradscope.core.train import GENERIC, Spec
from gradscope.core.train_cnn import (
    GLOBAL_STATS,
    HIDDEN_STATS,
    LAYER_STATS,
    SPP_STATS,
    init_state,
    make_chunk,
    make_predict,
    reset_optimizer,
)
from gradscope.errors import ConfigError

from . import keys
from .base import Model, ModelFamily, Stat, compile_program

WIDTH_RANGE = (4, 128)
# rrelu draws random slopes and prelu learns one per layer: neither is built for the conv stack
CNN_ACTIVATIONS = tuple(a for a in ACTIVATIONS if a not in ("rrelu", "prelu"))


class ChunkKey(NamedTuple):
    """The CNN's training chunk: K steps of `optimizer` on `shape` under `activation`, built for `spec`."""

    kind: str  # "chunk"
    activation: str
    optimizer: str
    shape: CnnShape
    n_train: int
    n_val: int
    steps: int
    spec: Spec
    keep: tuple[str, ...] | None = None  # the statistics computed (None: every one)

    def function(self):
        """The chunk, uncompiled: chunk(*args) -> (state, statistics)."""
        return make_chunk(self.activation, self.optimizer, self.shape, self.steps, self.spec, keep=self.keep)

    def compile(self, args):
        return compile_program(self.function(), args)

    def describe(self) -> str:
        s = self.shape
        stages = f", {s.stages} stages" if s.stages > 1 else ""
        return f"CNN {self.activation}, {self.optimizer}, depth {s.depth} x {s.width} channels{stages}"


class PredictKey(NamedTuple):
    """The evaluation-mode forward pass over `rows` images."""

    kind: str  # "predict"
    activation: str
    shape: CnnShape
    rows: int

    def compile(self, args):
        return compile_program(make_predict(self.activation, self.shape), args)

    def describe(self) -> str:
        return f"the CNN's evaluation ({self.activation})"


def _initial_state(seed, shape, init, gain, optimizer):
    """Weights and optimizer state from the seed: each kernel drawn by its shape's small compiled
    program (core.cnn.init_kernel), the rest a few cached operations."""
    k_init, k_train = jax.random.split(jax.random.PRNGKey(seed))
    return init_state(k_train, init_params(k_init, shape, init, gain), shape, optimizer)


def _spec(c) -> images.ImageSpec:
    """The dataset's image size; a dataset the CNN does not take (another rule names it) counts as the largest."""
    return images.SPECS.get(c.dataset, images.SPECS["shapes"])


def _shape(c) -> CnnShape:
    s = _spec(c)
    return CnnShape(s.side, s.channels, c.depth, c.width, c.stages, s.classes, c.batch_size, bool(c.skip_init))


class CnnFamily(ModelFamily):
    name = "cnn"
    models = (Model("cnn", "CNN", images.IMAGE_DATASETS, INITIALIZERS, CNN_ACTIVATIONS),)
    config_fields = {
        "noise": keys.NOISE,  # the images' pixel noise
        **keys.LAYER_KNOBS,
        "stages": (int, Field(1, ge=1, le=3)),  # stride-2 stages, each halving the side and doubling the channels
        "skip_init": (bool, False),  # SkipInit: a zero-initialized gain on each residual branch
    }
    live_keys = tuple(keys.LAYER_KNOBS)
    rule_keys = ("width", "stages", "depth")
    count_keys = ("depth", "width", "batch_size", "stages", "dataset")
    depth_range = (1, 100)
    default_depth = 10
    stats = (
        *(Stat(s) for s in GLOBAL_STATS),
        *(Stat(s, ("layer",)) for s in LAYER_STATS),
        *(Stat(s, ("hidden",)) for s in HIDDEN_STATS),
        *(Stat(s, ("hidden",), about) for s, about in zip(SPP_STATS, (
            "average squared channel mean of the unit's output s_l (NaN inside a residual block)",
            "average channel variance of the unit's output s_l (NaN inside a residual block)",
            "average channel variance of the residual branch at its end (NaN inside a residual block)"), strict=True)),
        Stat("channel_grad_norm", ("hidden", "channel"), "||dL/dW|| over each output channel's kernel; NaN past a layer's channels"),
        Stat("input_grad", ("row", "column"), "dL/dx of the first held-out image, evaluation mode (saliency)"),
        Stat("input_image", ("row", "column"), "that held-out image, channels summed (shown beside its saliency)"),
    )
    views = {"axis": "layer", "diagnosis": "layers", "theory": "spp", "boundary": False}

    def rules(self, c):
        lo, hi = WIDTH_RANGE
        if not lo <= c.width <= hi:
            yield ConfigError("width", f"the CNN's layers have {lo} to {hi} channels (its first stage's)", [lo, hi])
        if c.stages > c.depth:
            yield ConfigError("stages", f"{c.stages} stages need at least {c.stages} conv layers (depth is {c.depth})",
                              list(range(1, min(c.depth, 3) + 1)))

    def activation_count(self, c):
        shape = _shape(c)
        acts = c.batch_size * sum(L.side**2 * L.c_out for L in plan(shape))
        return acts, "depth", "batch_size x the sum over conv layers of side^2 x channels"

    def shape_of(self, c) -> CnnShape:
        return _shape(c)

    def data(self, c, shape):
        x, y = images.load(c.dataset, noise=c.noise, seed=c.seed)
        (x, y), (x_val, y_val) = datasets.split(x, y, seed=c.seed)
        return jnp.asarray(x), jnp.asarray(y), jnp.asarray(x_val), jnp.asarray(y_val)

    def initial_state(self, c, shape, abstract=False):
        make = lambda seed: _initial_state(seed, shape, c.init, c.init_gain, c.optimizer)
        return jax.eval_shape(make, np.int32(c.seed)) if abstract else make(np.int32(c.seed))

    def knobs_of(self, c) -> Knobs:
        f = np.float32
        return Knobs(leaky_alpha=f(c.leaky_alpha), batchnorm=np.bool_(c.batchnorm), residual=np.bool_(c.residual),
                     clip_mode=np.int32(ClipMode(c.clip_mode).index), clip_value=f(c.clip_value),
                     learning_rate=f(c.learning_rate), l1=f(c.l1), l2=f(c.l2), dropout=f(c.dropout))

    def spec_of(self, c) -> Spec:
        return Spec(batchnorm=bool(c.batchnorm), residual=bool(c.residual), dropout=c.dropout > 0,
                    clip_mode=ClipMode(c.clip_mode).index, l1=c.l1 > 0, l2=c.l2 > 0)

    def reset_optimizer(self, state, optimizer):
        return reset_optimizer(state, optimizer)

    def chunk_key(self, c, shape, n_train, n_val, steps, spec=None, keep=None) -> ChunkKey:
        return ChunkKey("chunk", c.activation, c.optimizer, shape, n_train, n_val, steps, GENERIC if spec is None else spec, keep)

    def chunk_args(self, state, c, x, y, x_val, y_val, n, every):
        return (state, self.knobs_of(c), x, y, x_val, y_val, np.int32(n), np.int32(every))

    def max_chunk_steps(self, shape: CnnShape) -> int:
        """One step a call, always (core.train_cnn.make_chunk): a loop of steps runs XLA's CPU
        backward convolutions 30-50x slower. A step of a CNN is milliseconds to tens of them, so
        the call's own cost (dispatch, the rows fetched) stays a few percent of it."""
        return 1

    def predict_key(self, c, shape, rows) -> PredictKey:
        return PredictKey("predict", c.activation, shape, rows)

    def predict_args(self, state, c, shape, rows):
        return (state.params, state.bn_state, self.knobs_of(c),
                jax.ShapeDtypeStruct((rows, shape.side, shape.side, shape.channels), jnp.float32))

    def columns(self, c) -> dict:
        """Per conv layer its channels, output side and stride; which layers end a residual unit (the
        spp statistics' entries in a residual net); the residual units' layers; the input's side."""
        shape = _shape(c)
        layers = plan(shape)
        return {"channels": [L.c_out for L in layers], "sides": [L.side for L in layers], "strides": [L.stride for L in layers],
                "unit_ends": unit_ends(shape).tolist(), "units": [[b.first, b.last] for b in blocks(shape)],
                "max_channels": max_channels(shape), "image_side": shape.side}


FAMILY = CnnFamily()
