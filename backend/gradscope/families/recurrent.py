"""The recurrent family: Elman RNN, LSTM and GRU on sequence tasks (adding, copy, parity, digits
read row by row), measured per parameter group and per time step (core.recurrent, core.train_rnn).

Its one program is the training chunk. LSTM and GRU ignore the activation knob (fixed sigmoid
gates and tanh): their keys store "-" for it, so that switching it never recompiles.
"""
from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from pydantic import Field

from gradscope.core import datasets, sequences
from gradscope.core.recurrent import GATES, MODELS, RECURRENT_INITIALIZERS, RNN_ACTIVATIONS, RecurrentShape, init_params
from gradscope.core.train_rnn import GLOBAL_STATS, GROUP_STATS, MODEL_STATS, TIME_STATS, group_names, init_state, make_chunk, make_eval
from gradscope.core.train_rnn import describe as describe_recurrent
from gradscope.core.train_rnn import knobs_of as _knobs_of
from gradscope.core.train_rnn import reset_optimizer as _reset_optimizer
from gradscope.errors import ConfigError

from . import keys
from .base import Model, ModelFamily, Stat, chunk_steps_for, compile_program

EVAL_BATCH = 512  # sequences in the fixed evaluation batch


class ChunkKey(NamedTuple):
    """A recurrent training chunk: K steps of `optimizer` on `shape` (its model included)."""

    kind: str  # "chunk"
    activation: str  # "-" for the gated cells
    optimizer: str
    shape: RecurrentShape
    n_train: int
    n_val: int
    steps: int
    keep: tuple[str, ...] | None = None  # the statistics computed (None: every one)

    def function(self):
        """The chunk, uncompiled, with every chunk's args: (state, knobs, x, y, x_val, y_val, n); the held-out pair is unused."""
        chunk = make_chunk(self.shape.model, self.activation, self.optimizer, self.shape, self.steps, keep=self.keep)
        return lambda state, knobs, x, y, x_val, y_val, n: chunk(state, knobs, x, y, n)

    def compile(self, args):
        return compile_program(self.function(), args)

    def describe(self) -> str:
        return f"{self.shape.model} {self.activation}, {self.optimizer}, depth {self.shape.depth} x width {self.shape.width}"


class RecurrentFamily(ModelFamily):
    name = "recurrent"
    models = tuple(Model(m, m.upper(), sequences.TASKS, RECURRENT_INITIALIZERS, RNN_ACTIVATIONS if GATES[m] == ("h",) else ())
                   for m in MODELS)
    config_fields = {
        "noise": keys.NOISE,  # the digits task's pixel noise
        "seq_len": (int, Field(50, ge=2, le=1000)),
        "forget_bias": (float, Field(1.0, ge=-10.0, le=10.0)),  # the LSTM's; the RNN and GRU ignore it
    }
    rule_keys = ("dataset", "seq_len")
    count_keys = ("depth", "width", "batch_size", "seq_len")
    depth_range = (1, 4)  # stacked recurrent layers
    default_depth = 1
    # the first look: the weights' gradients and, through time, the deltas' (the vanishing picture)
    preview_stats = ("loss", "accuracy", "grad_norm", "weight_norm", "time_delta_norm")
    stats = (
        *(Stat(s) for s in GLOBAL_STATS),
        *(Stat(s, ("group",)) for s in GROUP_STATS),
        Stat("time_delta_norm", ("layer", "time"), "||dL/dh_t|| over the batch"),
        Stat("spectral_radius", ("layer", "gate"), "of each gate's block of W_hh"),
        Stat("gate_saturation", ("layer", "gate"), "fraction of gate values in a flat tail"),
        Stat("slope_rms", ("layer",), "rnn: RMS phi'"),
        Stat("theory_factor", ("layer",), "rnn: spectral_radius * slope_rms"),
        Stat("gate_mean", ("layer", "gate"), "lstm, gru"),
        Stat("forget_gate_mean", ("layer",), "lstm, gru: the gate that keeps the state"),
    )
    views = {"axis": "time", "diagnosis": "time", "theory": "time", "boundary": False,
             # the way out of vanishing through time for a model without gates (Hochreiter & Schmidhuber 1997)
             "gated_alternative": {"label": "Switch to LSTM", "changes": {"model": "lstm"}}}

    def rules(self, c):
        bad = c.dataset in sequences.TASKS and sequences.length_error(c.dataset, c.seq_len)
        if bad:
            yield ConfigError("seq_len", *bad)

    def activation_count(self, c):
        return c.depth * c.seq_len * c.width * c.batch_size, "seq_len", "depth x seq_len x width x batch_size"

    def shape_of(self, c) -> RecurrentShape:
        s = sequences.spec(c.dataset, c.seq_len)
        return RecurrentShape(c.model, c.dataset, s.n_in, c.depth, c.width, s.n_out, s.out_steps, c.batch_size, c.seq_len)

    def data(self, c, shape):
        """The arrays the chunk samples its batches from (the digits pool, or placeholders for the
        generated tasks); the tasks draw fresh batches, so nothing is held out (a 1-row stand-in)."""
        digits = datasets.load("digits", noise=c.noise, seed=c.seed) if c.dataset == "digits" else None
        x, y = (jnp.asarray(a) for a in sequences.pool(c.dataset, digits))
        return x, y, x[:1], y[:1]

    def initial_state(self, c, shape, abstract=False):
        def make():
            k_init, k_train = jax.random.split(jax.random.PRNGKey(c.seed))
            return init_state(k_train, init_params(k_init, shape, c.init, c.init_gain, c.forget_bias), c.optimizer, c.model)
        return jax.eval_shape(make) if abstract else make()

    def knobs_of(self, c):
        return _knobs_of(c.model_dump())

    def reset_optimizer(self, state, optimizer):
        return _reset_optimizer(state, optimizer)

    def chunk_key(self, c, shape, n_train, n_val, steps, spec=None, keep=None) -> ChunkKey:
        act = c.activation if self.model(c.model).activations else "-"
        return ChunkKey("chunk", act, c.optimizer, shape, n_train, n_val, steps, keep)

    def chunk_args(self, state, c, x, y, x_val, y_val, n, every):
        return (state, self.knobs_of(c), x, y, x_val, y_val, np.int32(n))

    def max_chunk_steps(self, shape: RecurrentShape) -> int:
        """Forward and backward cost 6 multiply-adds per weight per sequence element, and every
        time step of the scan has a fixed cost (about 10 us on CPU, forward and backward)."""
        g, h, d, t, b = len(GATES[shape.model]), shape.width, shape.depth, shape.seq_len, shape.batch
        flops = 6 * b * t * g * h * (shape.n_in + (2 * d - 1) * h) + 2 * 48 * d * g * h * h
        return chunk_steps_for(flops / 20e9 + 2 * d * t * 10e-6)

    def evaluate(self, trainer, held_out):
        """Loss and accuracy on a fixed batch of EVAL_BATCH sequences drawn from the config's seed."""
        c = trainer.config
        key = jax.random.fold_in(jax.random.PRNGKey(c.seed), 1)
        x, y = sequences.sample(c.dataset, c.seq_len, EVAL_BATCH, key, trainer.x, trainer.y)
        act = c.activation if self.model(c.model).activations else None
        loss, acc = jax.jit(make_eval(c.model, act, trainer.shape._replace(batch=EVAL_BATCH)))(trainer.state.params, self.knobs_of(c), x, y)
        return {"loss": float(loss), "accuracy": float(acc), "baseline": sequences.spec(c.dataset, c.seq_len).baseline}

    def columns(self, c) -> dict:
        return {"groups": group_names(c.model, c.depth), "gates": list(GATES[c.model]),
                "baseline": sequences.spec(c.dataset, c.seq_len).baseline}

    def axis_sizes(self, c) -> dict[str, int]:
        return {"layer": c.depth, "group": len(group_names(c.model, c.depth))}

    def model_stats(self, model):
        return GLOBAL_STATS + GROUP_STATS + TIME_STATS + MODEL_STATS[model]

    def meta(self) -> dict:
        about = describe_recurrent()  # gates, tasks and the theory line, as v0.2 published them
        return {**super().meta(), **{k: about[k] for k in ("gates", "tasks", "groups", "theory")}}


FAMILY = RecurrentFamily()
