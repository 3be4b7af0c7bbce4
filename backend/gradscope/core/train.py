"""The training chunk: K optimizer steps under one `lax.scan`, statistics reduced on device.

`make_chunk(act, shape, steps)` returns a pure function
    chunk(state, knobs, x_all, y_all) -> (state, stats)
whose knobs are traced (changing them never recompiles); only the activation and the
shapes are baked in. Every step records statistics of the gradient taken at the
parameters of that step, before its update.
"""

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from gradscope.core.network import BN_MOMENTUM, Knobs, Shape, forward, init_bn_state, kernels, layer_slopes, zero_eps

OPTIMIZERS = {
    # Each at learning rate 1: the live learning rate scales the update afterwards,
    # which is exact for all four (their updates are linear in the learning rate).
    "sgd": lambda: optax.sgd(1.0),
    "momentum": lambda: optax.sgd(1.0, momentum=0.9),
    "adam": lambda: optax.adam(1.0),
    "rmsprop": lambda: optax.rmsprop(1.0),
}
OPTIMIZER_NAMES = tuple(OPTIMIZERS)
CLIP_MODES = ("none", "value", "norm")
HIST_EDGES = np.linspace(-12.0, 4.0, 33)  # log10 |dL/dW|: 32 bins of half a decade
HIST_SAMPLE = 4096  # entries per layer that the histogram counts, at most

GLOBAL_STATS = ("loss", "accuracy", "penalty", "global_grad_norm", "clipped_global_grad_norm", "nonfinite")
LAYER_STATS = ("grad_norm", "clipped_grad_norm", "delta_norm", "weight_norm", "update_ratio", "nonfinite_count")
HIDDEN_STATS = ("act_mean", "act_std", "saturation", "dead")


class TrainState(NamedTuple):
    params: dict
    opt_state: tuple  # the optimizer's own state (restarts when the user switches optimizer)
    bn_state: dict
    key: jax.Array
    step: jax.Array


def init_state(key, params, shape: Shape, optimizer: str):
    opt_state = OPTIMIZERS[optimizer]().init(params)
    return TrainState(params, opt_state, init_bn_state(shape), key, jnp.zeros((), jnp.int32))


def reset_optimizer(state: TrainState, optimizer: str) -> TrainState:
    """A fresh state for `optimizer`, keeping the weights (used when the user switches to it)."""
    return state._replace(opt_state=OPTIMIZERS[optimizer]().init(state.params))


def _per_layer_norm(arrays):
    """Frobenius norm per layer of (first, stacked hidden, out) -> (D+1,)."""
    first, hidden, out = arrays
    return jnp.concatenate([
        jnp.linalg.norm(first)[None],
        jnp.sqrt(jnp.sum(jnp.square(hidden), axis=tuple(range(1, hidden.ndim)))),
        jnp.linalg.norm(out)[None],
    ])


def _histogram(g):
    """Counts of log10|g| in HIST_EDGES' bins (clamped at both ends), non-finite skipped.

    Large layers are sampled: every k-th entry, at most HIST_SAMPLE of them. A scatter-add
    runs serially on CPU, and the shape of the distribution needs no more (bench/).
    """
    lo, hi, nb = HIST_EDGES[0], HIST_EDGES[-1], len(HIST_EDGES) - 1
    flat = g.reshape(-1)
    a = jnp.abs(flat[:: max(1, -(-flat.shape[0] // HIST_SAMPLE))])
    pos = (jnp.log10(jnp.maximum(a, 1e-30)) - lo) / ((hi - lo) / nb)
    idx = jnp.clip(jnp.floor(jnp.nan_to_num(pos)), 0, nb - 1).astype(jnp.int32)
    return jnp.zeros((nb,), jnp.int32).at[idx].add(jnp.isfinite(a).astype(jnp.int32))


def _layer_histograms(grads):
    first, hidden, out = kernels(grads)
    return jnp.concatenate([_histogram(first)[None], jax.vmap(_histogram)(hidden), _histogram(out)[None]])


def _count_nonfinite(arrays):
    first, hidden, out = arrays
    bad = lambda a, axes: jnp.sum(~jnp.isfinite(a), axis=axes)
    return jnp.concatenate([bad(first, None)[None], bad(hidden, (1, 2)), bad(out, None)[None]])


def _clip(grads, knobs):
    """optax's clip (by value) or clip_by_global_norm, chosen by the traced clip_mode.

    A select rather than lax.switch: all three are elementwise, so XLA fuses them into
    one pass, where a conditional would materialize every gradient buffer.
    """
    by_value = optax.clip(knobs.clip_value).update(grads, optax.EmptyState())[0]
    by_norm = optax.clip_by_global_norm(knobs.clip_value).update(grads, optax.EmptyState())[0]
    pick = lambda g, v, n: jnp.where(knobs.clip_mode == 1, v, jnp.where(knobs.clip_mode == 2, n, g))
    return jax.tree.map(pick, grads, by_value, by_norm)


def make_loss(act, shape: Shape, unroll):
    def loss_fn(params, eps, bn_state, x, y, knobs, key):
        slopes = layer_slopes(act, params, knobs, key, shape.depth, train=True)
        logits, (layer_aux, mu, var) = forward(act, params, bn_state, x, eps, slopes, knobs, train=True, unroll=unroll)
        data_loss = optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()
        ks = kernels(params)
        penalty = knobs.l1 * sum(jnp.abs(k).sum() for k in ks) + knobs.l2 * sum(jnp.square(k).sum() for k in ks)
        accuracy = (logits.argmax(-1) == y).mean()
        return data_loss + penalty, (data_loss, penalty, accuracy, layer_aux, mu, var)
    return loss_fn


def make_step(act, optimizer, shape: Shape, unroll=1, with_stats=True):
    """One optimizer step. `with_stats=False` records the loss alone (the benchmark's baseline;
    XLA then drops the statistics' work as dead code)."""
    loss_fn = make_loss(act, shape, unroll)
    opt = OPTIMIZERS[optimizer]()
    grad_fn = jax.grad(loss_fn, argnums=(0, 1), has_aux=True)

    def step(state: TrainState, knobs: Knobs, x_all, y_all):
        key, k_batch, k_slope = jax.random.split(state.key, 3)
        idx = jax.random.randint(k_batch, (shape.batch,), 0, x_all.shape[0])
        x, y = x_all[idx], y_all[idx]  # (B, n_in), (B,)
        eps = zero_eps(shape, shape.batch)
        (grads, deltas), (loss, penalty, acc, layer_aux, mu, var) = grad_fn(state.params, eps, state.bn_state, x, y, knobs, k_slope)

        clipped = _clip(grads, knobs)
        updates, opt_state = opt.update(clipped, state.opt_state, state.params)
        params = jax.tree.map(lambda p, u: p + knobs.learning_rate * u, state.params, updates)
        bn_state = {
            "mean": BN_MOMENTUM * state.bn_state["mean"] + (1 - BN_MOMENTUM) * mu,
            "var": BN_MOMENTUM * state.bn_state["var"] + (1 - BN_MOMENTUM) * var,
        }

        w_before, w_after = kernels(state.params), kernels(params)
        weight_norm = _per_layer_norm(w_before)
        update_norm = _per_layer_norm(tuple(a - b for a, b in zip(w_after, w_before)))
        global_norm = optax.tree.norm(grads)
        stats = {
            "loss": loss,
            "accuracy": acc,
            "penalty": penalty,
            "global_grad_norm": global_norm,
            "clipped_global_grad_norm": optax.tree.norm(clipped),
            "grad_norm": _per_layer_norm(kernels(grads)),
            "clipped_grad_norm": _per_layer_norm(kernels(clipped)),
            "delta_norm": _per_layer_norm((deltas["first"], deltas["hidden"], deltas["out"])),
            "weight_norm": weight_norm,
            "update_ratio": update_norm / weight_norm,
            "nonfinite_count": _count_nonfinite(kernels(grads)),
            "act_mean": layer_aux[:, 0],
            "act_std": layer_aux[:, 1],
            "saturation": layer_aux[:, 2],
            "dead": layer_aux[:, 3],
            "hist": _layer_histograms(grads),
            "step": state.step,
        }
        stats["nonfinite"] = ~(jnp.isfinite(loss) & jnp.isfinite(global_norm) & jnp.isfinite(optax.tree.norm(params)))
        if not with_stats:
            stats = {"loss": loss, "step": state.step}
        return TrainState(params, opt_state, bn_state, key, state.step + 1), stats

    return step


def make_chunk(act, optimizer, shape: Shape, steps: int, unroll=1, with_stats=True):
    """Up to K = `steps` training steps in one scan; the traced `n` says how many run.

    Stats are stacked along a leading (K,) axis; rows from n on are left zero (the
    caller slices them off), so one executable serves any chunk length up to K.
    """
    step = make_step(act, optimizer, shape, unroll, with_stats)

    def chunk(state, knobs, x_all, y_all, n):
        def body(s, i):
            skip = lambda s: (s, jax.tree.map(lambda a: jnp.zeros(a.shape, a.dtype), jax.eval_shape(step, s, knobs, x_all, y_all)[1]))
            return jax.lax.cond(i < n, lambda s: step(s, knobs, x_all, y_all), skip, s)
        return jax.lax.scan(body, state, jnp.arange(steps))

    return chunk


def make_predict(act, shape: Shape, unroll=1):
    """Evaluation-mode logits: running BatchNorm statistics, rrelu at its mean slope."""
    def predict(params, bn_state, knobs, x):
        slopes = layer_slopes(act, params, knobs, None, shape.depth, train=False)
        eps = zero_eps(shape, x.shape[0])
        return forward(act, params, bn_state, x, eps, slopes, knobs, train=False, unroll=unroll)[0]
    return predict
