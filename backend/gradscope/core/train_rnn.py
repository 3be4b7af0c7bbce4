"""The recurrent training chunk: K optimizer steps in one `lax.scan`, statistics reduced on device.

`make_chunk(model, act, optimizer, shape, steps)` returns a pure function
    chunk(state, knobs, pool_x, pool_y, n) -> (state, stats)
with the MLP chunk's signature, so the engine runs either the same way. Knobs are traced
(a new value never recompiles); the activation only matters for `rnn`.

Per step (L = depth, T = seq_len, G gates, P parameter groups named by `group_names`):
  loss accuracy penalty baseline global_grad_norm clipped_global_grad_norm nonfinite
  clip_cosine clip_fraction                                                           ()
  grad_norm clipped_grad_norm weight_norm update_ratio nonfinite_count                 (P,)
  time_delta_norm ||dL/dh_t|| over the batch, t = 1..T                                (L, T)
  spectral_radius of each gate's block of W_hh                                          (L, G)
  gate_saturation fraction of gate values in a flat tail (rnn: |phi'| < 0.05)          (L, G)
  rnn:       slope_rms (RMS phi'), theory_factor = spectral_radius * slope_rms          (L,)
  lstm, gru: gate_mean (L, G), forget_gate_mean (L,) (LSTM's f, GRU's z: the state kept)
"""

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from gradscope.core import sequences
from gradscope.core.optimizers import ClipMode, advance, clip_effect, feed, make_optimizer
from gradscope.core.recurrent import (
    CARRY_GATE,
    GATES,
    RECURRENT_INITIALIZERS,
    RNN_ACTIVATIONS,
    RecurrentShape,
    forward,
    gate_radii,
    init_power,
    readout,
    theory_factor,
    zero_eps,
)

GLOBAL_STATS = ("loss", "accuracy", "penalty", "baseline", "global_grad_norm", "clipped_global_grad_norm", "nonfinite",
                "clip_cosine", "clip_fraction")
GROUP_STATS = ("grad_norm", "clipped_grad_norm", "weight_norm", "update_ratio", "nonfinite_count")
TIME_STATS = ("time_delta_norm", "spectral_radius", "gate_saturation")
MODEL_STATS = {"rnn": ("slope_rms", "theory_factor"), "lstm": ("gate_mean", "forget_gate_mean"), "gru": ("gate_mean", "forget_gate_mean")}


class RnnKnobs(NamedTuple):
    """The live knobs that apply to the recurrent models, as traced scalars."""

    leaky_alpha: jax.Array
    clip_mode: jax.Array  # int32: ClipMode.index
    clip_value: jax.Array
    learning_rate: jax.Array
    l1: jax.Array
    l2: jax.Array


def knobs_of(values: dict) -> RnnKnobs:
    """From plain config values, with fixed dtypes so a new value never retraces."""
    f = np.float32
    return RnnKnobs(f(values["leaky_alpha"]), np.int32(ClipMode(values["clip_mode"]).index), f(values["clip_value"]),
                    f(values["learning_rate"]), f(values["l1"]), f(values["l2"]))


class RnnState(NamedTuple):
    params: dict
    opt_state: tuple  # optimizers.make_optimizer's chain state
    power: list  # per layer (G, H): the power-iteration vectors of W_hh's gate blocks
    key: jax.Array
    step: jax.Array


def init_state(key, params, optimizer: str, model: str) -> RnnState:
    opt_state = make_optimizer(optimizer).init(params)
    return RnnState(params, opt_state, init_power(params, model), key, jnp.zeros((), jnp.int32))


def reset_optimizer(state: RnnState, optimizer: str) -> RnnState:
    return state._replace(opt_state=make_optimizer(optimizer).init(state.params))


def group_names(model: str, depth: int) -> list[str]:
    """The parameter groups of the (P,) statistics, in order: per layer W_xh, W_hh, b per gate, then the readout."""
    gates = GATES[model]
    suffix = (lambda g: "") if model == "rnn" else (lambda g: f".{g}")
    names = [f"L{l + 1}.{m}{suffix(g)}" for l in range(depth) for m in ("W_xh", "W_hh", "b") for g in gates]
    return names + ["out.W", "out.b"]


def _per_group(tree, reduce, gates):
    """reduce(a, axes) over each gate block of every layer's arrays, then the readout: (P,)."""
    parts = []
    for layer in tree["layers"]:
        for name in ("w_xh", "w_hh"):
            w = layer[name]
            parts.append(reduce(w.reshape(w.shape[0], gates, -1), (0, 2)))
        parts.append(reduce(layer["b"].reshape(gates, -1), (1,)))
    parts += [reduce(tree["out"]["w"], None)[None], reduce(tree["out"]["b"], None)[None]]
    return jnp.concatenate(parts)


def _norms(tree, gates):
    return jnp.sqrt(_per_group(tree, lambda a, ax: jnp.sum(jnp.square(a), axis=ax), gates))


def _nonfinite(tree, gates):
    return _per_group(tree, lambda a, ax: jnp.sum(~jnp.isfinite(a), axis=ax), gates)


def kernels(params):
    """The penalized arrays: every W_xh, W_hh and the readout's W (biases are not penalized)."""
    return [layer[k] for layer in params["layers"] for k in ("w_xh", "w_hh")] + [params["out"]["w"]]


def make_loss(model, act, shape: RecurrentShape):
    """loss_fn(params, eps, x (T, B, n_in), y, knobs) -> (loss + penalty, (loss, penalty, accuracy, aux (L, 2, G)))."""
    def loss_fn(params, eps, x, y, knobs):
        hs, aux = forward(model, act, params, x, eps, knobs.leaky_alpha)
        data_loss, acc = sequences.loss(shape.task, readout(params["out"], hs, shape.out_steps), y)
        ks = kernels(params)
        penalty = knobs.l1 * sum(jnp.abs(k).sum() for k in ks) + knobs.l2 * sum(jnp.square(k).sum() for k in ks)
        return data_loss + penalty, (data_loss, penalty, acc, aux)
    return loss_fn


def _model_stats(model, radius, aux):
    """The per-layer gate and theory statistics from aux (L, 2, G) and the radii (L, G)."""
    if model == "rnn":
        slope_rms = jnp.sqrt(aux[:, 1, 0])
        return {"slope_rms": slope_rms, "theory_factor": theory_factor(radius[:, 0], slope_rms)}
    return {"gate_mean": aux[:, 1], "forget_gate_mean": aux[:, 1, CARRY_GATE[model]]}


def make_step(model, act, optimizer, shape: RecurrentShape):
    loss_fn = make_loss(model, act, shape)
    grad_fn = jax.grad(loss_fn, argnums=(0, 1), has_aux=True)
    gates = len(GATES[model])
    baseline = jnp.float32(sequences.spec(shape.task, shape.seq_len).baseline)

    def step(state: RnnState, knobs: RnnKnobs, pool_x, pool_y):
        key, k_batch = jax.random.split(state.key)
        x, y = sequences.sample(shape.task, shape.seq_len, shape.batch, k_batch, pool_x, pool_y)
        (grads, deltas), (loss, penalty, acc, aux) = grad_fn(state.params, zero_eps(shape, shape.batch), x, y, knobs)
        # the clip mode is traced here (no build per mode): the chain chooses at run time
        clipped, updates, opt_state = make_optimizer(optimizer, knobs.clip_mode).update(grads, state.opt_state, state.params)
        params = jax.tree.map(jnp.add, state.params, updates)

        weight_norm = _norms(state.params, gates)
        update_norm = _norms(jax.tree.map(jnp.subtract, params, state.params), gates)
        global_norm = optax.tree.norm(grads)
        radius, power = gate_radii(state.params, model, state.power)
        cosine, fraction = clip_effect(grads, clipped)
        stats = {
            "loss": loss, "accuracy": acc, "penalty": penalty, "baseline": baseline,
            "global_grad_norm": global_norm, "clipped_global_grad_norm": optax.tree.norm(clipped),
            "clip_cosine": cosine, "clip_fraction": fraction,
            "grad_norm": _norms(grads, gates), "clipped_grad_norm": _norms(clipped, gates),
            "weight_norm": weight_norm,
            "update_ratio": jnp.where(weight_norm > 0, update_norm / jnp.where(weight_norm > 0, weight_norm, 1.0), jnp.nan),
            "nonfinite_count": _nonfinite(grads, gates),
            "time_delta_norm": jnp.sqrt(jnp.sum(jnp.square(deltas), axis=(2, 3))),  # (L, T)
            "spectral_radius": radius, "gate_saturation": aux[:, 0],
            **_model_stats(model, radius, aux),
            "step": state.step,
        }
        stats["nonfinite"] = ~(jnp.isfinite(loss) & jnp.isfinite(global_norm) & jnp.isfinite(optax.tree.norm(params)))
        return RnnState(params, opt_state, power, key, state.step + 1), stats

    return step


def make_chunk(model, act, optimizer, shape: RecurrentShape, steps: int, keep=None):
    """Up to K = `steps` steps in one scan; the traced `n` says how many run (later rows are zero).
    `keep`: the statistics to compute (None: all): XLA drops the others' work."""
    step = make_step(model, act, optimizer, shape)
    if keep is not None:
        full, keep = step, set(keep)

        def step(*args):
            state, stats = full(*args)
            return state, {k: v for k, v in stats.items() if k in keep}

    def chunk(state, knobs, pool_x, pool_y, n):
        state = state._replace(opt_state=feed(state.opt_state, knobs))  # the live learning rate and clip threshold
        def body(s, i):
            skip = lambda s: (s, jax.tree.map(lambda a: jnp.zeros(a.shape, a.dtype), jax.eval_shape(step, s, knobs, pool_x, pool_y)[1]))
            return jax.lax.cond(i < n, lambda s: step(s, knobs, pool_x, pool_y), skip, s)
        state, stats = jax.lax.scan(body, state, jnp.arange(steps))
        return state._replace(opt_state=advance(state.opt_state, jnp.minimum(n, steps))), stats  # the updates' counts

    return chunk


def make_eval(model, act, shape: RecurrentShape):
    """evaluate(params, knobs, x, y) -> (loss, accuracy) on a given batch (no probes needed)."""
    loss_fn = make_loss(model, act, shape)

    def evaluate(params, knobs, x, y):
        _, (loss, _, acc, _) = loss_fn(params, zero_eps(shape, x.shape[1]), x, y, knobs)
        return loss, acc

    return evaluate


def describe() -> dict:
    """The recurrent models for clients (`/api/meta`): gates, statistics, tasks and the theory line."""
    return {
        "gates": {m: list(g) for m, g in GATES.items()},
        "activations": list(RNN_ACTIVATIONS),
        "initializers": list(RECURRENT_INITIALIZERS),
        "tasks": {t: {"baseline": sequences.spec(t, 64).baseline, "regression": sequences.spec(t, 64).regression} for t in sequences.TASKS},
        "group_stats": list(GROUP_STATS),
        "stats": {m: list(GLOBAL_STATS + GROUP_STATS + TIME_STATS + MODEL_STATS[m]) for m in GATES},
        "groups": "per layer l = 1..depth: L{l}.W_xh.{gate}, L{l}.W_hh.{gate}, L{l}.b.{gate} (rnn: no .gate), then out.W, out.b",
        "theory": "rnn: time_delta_norm[t-1] / time_delta_norm[t] ~ theory_factor = spectral_radius * slope_rms, "
                  "so time_delta_norm[t] ~ time_delta_norm[T] * theory_factor ** (T - t)",
    }
