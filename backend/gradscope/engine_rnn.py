"""Config -> compiled closures for the recurrent models; the engine's Trainer calls these
where `config.model` is not "mlp", and keeps its own path for the MLP.

Cache keys have the MLP's form ("chunk", activation, optimizer, shape, n_train, n_val, K); the shape is a
`RecurrentShape` (so the two never collide) and, for LSTM and GRU, which ignore the
activation knob, the activation is stored as "-" so that switching it never recompiles.
"""

import jax
import jax.numpy as jnp
import numpy as np

from gradscope.config import Config
from gradscope.core import datasets, sequences
from gradscope.core.recurrent import GATES, RNN_ACTIVATIONS, RecurrentShape, init_params
from gradscope.core.train_rnn import RnnKnobs, group_names, init_state, make_chunk, make_eval
from gradscope.core.train_rnn import knobs_of as _knobs_of
from gradscope.core.train_rnn import reset_optimizer as _reset_optimizer

EVAL_BATCH = 512  # sequences in the fixed evaluation batch
TARGET_CHUNK_SECONDS, MAX_CHUNK_STEPS = 0.03, 256


def is_recurrent(config: Config) -> bool:
    return config.model != "mlp"


def shape_of(config: Config) -> RecurrentShape:
    s = sequences.spec(config.dataset, config.seq_len)
    return RecurrentShape(config.model, config.dataset, s.n_in, config.depth, config.width, s.n_out, s.out_steps,
                          config.batch_size, config.seq_len)


def load(config: Config):
    """The arrays the chunk samples from: the digits pool, or placeholders for generated tasks."""
    digits = datasets.load("digits", noise=config.noise, seed=config.seed) if config.dataset == "digits" else None
    return sequences.pool(config.dataset, digits)


def new_state(config: Config, shape: RecurrentShape):
    k_init, k_train = jax.random.split(jax.random.PRNGKey(config.seed))
    params = init_params(k_init, shape, config.init, config.init_gain, config.forget_bias)
    return init_state(k_train, params, config.optimizer, config.model)


def knobs_of(config: Config) -> RnnKnobs:
    return _knobs_of(config.model_dump())


def reset_optimizer(state, optimizer: str):
    return _reset_optimizer(state, optimizer)


def cache_activation(shape: RecurrentShape, act: str) -> str:
    return act if shape.model == "rnn" else "-"


def warm_order(model: str, order) -> tuple:
    """The activations worth compiling in the background: the valid ones for rnn, none for gated cells."""
    return tuple(a for a in order if a in RNN_ACTIVATIONS) if model == "rnn" else ()


def compile_chunk(key, args):
    """key ("chunk", act, optimizer, shape, n_train, n_val, K); args as the MLP chunk's (the held-out pair is unused)."""
    _, act, optimizer, shape, _, _, steps = key
    chunk = make_chunk(shape.model, act, optimizer, shape, steps)
    return jax.jit(lambda state, knobs, x, y, x_val, y_val, n: chunk(state, knobs, x, y, n)).lower(*args).compile()


def max_chunk_steps(shape: RecurrentShape) -> int:
    """K, the scan length compiled: about twice the steps a 30 ms call fits, by a cost model.

    Forward and backward cost 6 multiply-adds per weight per sequence element, and every
    time step of the scan has a fixed cost (about 10 us on CPU, forward and backward).
    """
    g, h, d, t, b = len(GATES[shape.model]), shape.width, shape.depth, shape.seq_len, shape.batch
    flops = 6 * b * t * g * h * (shape.n_in + (2 * d - 1) * h) + 2 * 48 * d * g * h * h
    seconds = flops / 20e9 + 2 * d * t * 10e-6
    k = 2 ** int(np.ceil(np.log2(max(2 * TARGET_CHUNK_SECONDS / seconds, 1))))
    return int(min(k, MAX_CHUNK_STEPS))


def evaluate(config: Config, shape: RecurrentShape, state, pool) -> dict:
    """Loss and accuracy on a fixed batch of EVAL_BATCH sequences drawn from the config's seed."""
    eval_shape = shape._replace(batch=EVAL_BATCH)
    key = jax.random.fold_in(jax.random.PRNGKey(config.seed), 1)
    x, y = sequences.sample(config.dataset, config.seq_len, EVAL_BATCH, key, *(jnp.asarray(a) for a in pool))
    act = config.activation if config.model == "rnn" else None
    loss, acc = jax.jit(make_eval(config.model, act, eval_shape))(state.params, knobs_of(config), x, y)
    return {"loss": float(loss), "accuracy": float(acc), "baseline": sequences.spec(config.dataset, config.seq_len).baseline}


def header(config: Config) -> dict:
    """What a reader of the statistics needs to name their columns (for the CLI's first line)."""
    return {"groups": group_names(config.model, config.depth), "gates": list(GATES[config.model]),
            "baseline": sequences.spec(config.dataset, config.seq_len).baseline}
