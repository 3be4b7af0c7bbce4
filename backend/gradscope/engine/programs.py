"""What gets compiled: the key of each program (chunk or predict), its compile, the live knobs
and structural spec passed to it, and the data and initial state it trains from."""
from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from gradscope import engine_rnn
from gradscope.config import Config
from gradscope.core import datasets
from gradscope.core.network import Knobs, Shape, init_params
from gradscope.core.train import CLIP_MODES, Spec, init_state, make_chunk, make_predict

GRID = 48  # the decision boundary's grid is GRID x GRID points

TARGET_CHUNK_SECONDS = 0.03
MAX_CHUNK_STEPS = 256
UNROLL = 1  # hidden layers per scan iteration: more compiles slower and ran no faster (bench/bench_engine.py)


def knobs_of(config: Config) -> Knobs:
    """The traced live knobs, with fixed dtypes so a new value never retraces."""
    f = np.float32
    return Knobs(
        leaky_alpha=f(config.leaky_alpha),
        batchnorm=np.bool_(config.batchnorm),
        residual=np.bool_(config.residual),
        clip_mode=np.int32(CLIP_MODES.index(config.clip_mode)),
        clip_value=f(config.clip_value),
        learning_rate=f(config.learning_rate),
        l1=f(config.l1),
        l2=f(config.l2),
        dropout=f(config.dropout),
    )


def spec_of(config: Config) -> Spec:
    """The structural knob values of `config`, for the executable built for them."""
    return Spec(batchnorm=bool(config.batchnorm), residual=bool(config.residual), dropout=config.dropout > 0,
                clip_mode=CLIP_MODES.index(config.clip_mode), l1=config.l1 > 0, l2=config.l2 > 0)


def shape_of(config: Config) -> Shape:
    if engine_rnn.is_recurrent(config):
        return engine_rnn.shape_of(config)
    return Shape(
        n_in=datasets.num_features(config.dataset, config.input_dim),
        depth=config.depth,
        width=config.width,
        classes=datasets.num_classes(config.dataset),
        batch=config.batch_size,
    )


def describe_key(key) -> str:
    """A compile as a person reads it: "relu, adam, depth 10 x width 32" or "the decision boundary (relu)"."""
    if key[0] == "predict":
        return f"the decision boundary ({key[1]})"
    _, act, optimizer, shape = key[:4]
    model = getattr(shape, "model", None)
    return f"{model + ' ' if model else ''}{act}, {optimizer}, depth {shape.depth} x width {shape.width}"


def _compile(key, args):
    """key: ("chunk", act, optimizer, shape, n_train, n_val, K, spec) (recurrent: no spec)
    or ("predict", act, shape, rows)."""
    if key[0] == "predict":
        _, act, shape, _ = key
        return jax.jit(make_predict(act, shape, UNROLL)).lower(*args).compile()
    if isinstance(key[3], engine_rnn.RecurrentShape):
        return engine_rnn.compile_chunk(key, args)
    _, act, optimizer, shape, _, _, steps, spec = key
    return jax.jit(make_chunk(act, optimizer, shape, steps, UNROLL, spec=spec)).lower(*args).compile()


def max_chunk_steps(shape: Shape) -> int:
    """K, the scan length compiled: about twice the steps a 30 ms call can fit, by a cost model."""
    n_in, d, w, c, b = shape
    flops = 6 * b * (n_in * w + (d - 1) * w * w + w * c) + 20 * d * w * w
    seconds = flops / 100e9 + d * 10e-6
    k = 2 ** int(np.ceil(np.log2(max(2 * TARGET_CHUNK_SECONDS / seconds, 1))))
    return int(min(k, MAX_CHUNK_STEPS))


def _data(config: Config):
    """Shape, training split and held-out split of `config`."""
    shape = shape_of(config)
    data = datasets.load(config.dataset, noise=config.noise, seed=config.seed, input_dim=config.input_dim)
    (x, y), (x_val, y_val) = datasets.split(*data, seed=config.seed)
    return shape, (jnp.asarray(x), jnp.asarray(y)), (jnp.asarray(x_val), jnp.asarray(y_val))


def _initial(config: Config, shape: Shape, abstract=False):
    """The initial TrainState of `config` (`abstract`: its shapes and dtypes only, traced
    without compiling or running anything, for compiling the chunk ahead of it)."""
    make = lambda seed: _initial_state(seed, shape, config.init, config.init_gain, config.optimizer)
    return jax.eval_shape(make, np.int32(config.seed)) if abstract else make(np.int32(config.seed))


def _setup(config: Config):
    """Shape, training split, held-out split and the initial TrainState of `config`."""
    shape, train, val = _data(config)
    return shape, train, val, _initial(config, shape)


@functools.partial(jax.jit, static_argnums=(1, 2, 3, 4))
def _initial_state(seed, shape, init, gain, optimizer):
    """Weights and optimizer state from the seed, as one compiled program: run op by op, the
    initialization compiled dozens of small programs, seconds before the first frame."""
    k_init, k_train = jax.random.split(jax.random.PRNGKey(seed))
    params = init_params(k_init, shape, init, gain)
    return init_state(k_train, params, shape, optimizer)
