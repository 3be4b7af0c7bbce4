"""The MLP family: a deep fully-connected classifier on 2-D (or n-D) point clouds and digits,
with BatchNorm, residual connections and dropout, measured layer by layer (core.network, core.train).

Its programs: the training chunk, specialised to the structural knobs' values (`Spec`) or generic
(any value, traced), and the evaluation-mode forward pass behind the decision boundary.
"""
from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from gradscope.core import datasets
from gradscope.core.activations import ACTIVATIONS
from gradscope.core.initializers import INITIALIZERS
from gradscope.core.network import Knobs, Shape, init_params
from gradscope.core.optimizers import ClipMode
from gradscope.core.train import (
    GENERIC,
    GLOBAL_STATS,
    HIDDEN_STATS,
    LAYER_STATS,
    Spec,
    init_state,
    make_chunk,
    make_predict,
    reset_optimizer,
)

from . import keys
from .base import Model, ModelFamily, Stat, chunk_steps_for, compile_program, jit_program

UNROLL = 1  # hidden layers per scan iteration: more compiled slower and ran no faster (bench/bench_engine.py)


class ChunkKey(NamedTuple):
    """The MLP's training chunk: K steps of `optimizer` on `shape` under `activation`, built for `spec`."""

    kind: str  # "chunk"
    activation: str
    optimizer: str
    shape: Shape
    n_train: int
    n_val: int
    steps: int
    spec: Spec
    keep: tuple[str, ...] | None = None  # the statistics computed (None: every one)

    def function(self):
        """The chunk, uncompiled: chunk(*args) -> (state, statistics)."""
        return make_chunk(self.activation, self.optimizer, self.shape, self.steps, UNROLL, spec=self.spec, keep=self.keep)

    def compile(self, args):
        return compile_program(self.function(), args)

    def describe(self) -> str:
        return f"{self.activation}, {self.optimizer}, depth {self.shape.depth} x width {self.shape.width}"


class PredictKey(NamedTuple):
    """The evaluation-mode forward pass over `rows` inputs (the decision boundary's grid, a split)."""

    kind: str  # "predict"
    activation: str
    shape: Shape
    rows: int

    def compile(self, args):
        return compile_program(make_predict(self.activation, self.shape, UNROLL), args)

    def describe(self) -> str:
        return f"the decision boundary ({self.activation})"


@functools.partial(jit_program, static_argnums=(1, 2, 3, 4))
def _initial_state(seed, shape, init, gain, optimizer):
    """Weights and optimizer state from the seed, as one compiled program: run op by op, the
    initialization compiled dozens of small programs, seconds before the first frame. Built at
    -O1 (jit_program): 0.37 s to compile at depth 10 where the default level took 0.63 s, and the
    same weights and optimizer state bit for bit (every initializer, SGD and Adam; -O0 changed
    some). It compiles beside a new run's first look, on the other core."""
    k_init, k_train = jax.random.split(jax.random.PRNGKey(seed))
    params = init_params(k_init, shape, init, gain)
    return init_state(k_train, params, shape, optimizer)


class MlpFamily(ModelFamily):
    name = "mlp"
    models = (Model("mlp", "MLP", datasets.DATASETS, INITIALIZERS, tuple(ACTIVATIONS)),)
    config_fields = {"input_dim": keys.INPUT_DIM, "noise": keys.NOISE, **keys.LAYER_KNOBS}
    live_keys = tuple(keys.LAYER_KNOBS)
    depth_range = (1, 256)
    default_depth = 10
    stats = (
        *(Stat(s) for s in GLOBAL_STATS),
        *(Stat(s, ("layer",)) for s in LAYER_STATS),
        *(Stat(s, ("hidden",)) for s in HIDDEN_STATS),
        Stat("hist", ("layer", "bin"), "log10 |dL/dW| counts"),
        Stat("z_hist", ("hidden", "bin"), "pre-activation z counts"),
        Stat("h_hist", ("hidden", "bin"), "activation h counts"),
    )
    views = {"axis": "layer", "diagnosis": "layers", "theory": "chain", "boundary": True}

    def activation_count(self, c):
        return c.depth * c.width * c.batch_size, "depth", "depth x width x batch_size"

    def shape_of(self, c) -> Shape:
        return Shape(n_in=datasets.num_features(c.dataset, c.input_dim), depth=c.depth, width=c.width,
                     classes=datasets.num_classes(c.dataset), batch=c.batch_size)

    def data(self, c, shape):
        points = datasets.load(c.dataset, noise=c.noise, seed=c.seed, input_dim=c.input_dim)
        (x, y), (x_val, y_val) = datasets.split(*points, seed=c.seed)
        return jnp.asarray(x), jnp.asarray(y), jnp.asarray(x_val), jnp.asarray(y_val)

    def initial_state(self, c, shape, abstract=False):
        # (the shapes from the function itself: a jit with compiler options may not be traced inside another)
        build = _initial_state.__wrapped__ if abstract else _initial_state
        make = lambda seed: build(seed, shape, c.init, c.init_gain, c.optimizer)
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

    def max_chunk_steps(self, shape: Shape) -> int:
        n_in, d, w, c, b = shape
        flops = 6 * b * (n_in * w + (d - 1) * w * w + w * c) + 20 * d * w * w
        return chunk_steps_for(flops / 100e9 + d * 10e-6)

    def predict_key(self, c, shape, rows) -> PredictKey:
        return PredictKey("predict", c.activation, shape, rows)

    def predict_args(self, state, c, shape, rows):
        return (state.params, state.bn_state, self.knobs_of(c), jax.ShapeDtypeStruct((rows, shape.n_in), jnp.float32))


FAMILY = MlpFamily()
