"""The training chunk: up to K optimizer steps in one compiled loop, statistics reduced on device.

`make_chunk(act, optimizer, shape, steps)` returns a pure function
    chunk(state, knobs, x, y, x_val, y_val, n) -> (state, stats)
whose knobs and `n` (steps to run, at most K) are traced: changing them never recompiles;
only the activation, the optimizer and the shapes are baked in. Every step records
statistics of the gradient taken at the parameters of that step, before its update.
"""

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from gradscope.core.network import (BN_MOMENTUM, Knobs, Shape, biases, dropout_masks, forward, init_bn_state, kernels,
                                    layer_slopes, mean_slopes, zero_taps)

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
VAL_EVERY = 50  # steps between held-out evaluations (at steps that are multiples of it)

GLOBAL_STATS = ("loss", "accuracy", "penalty", "global_grad_norm", "clipped_global_grad_norm", "nonfinite",
                "clip_cosine", "clip_fraction", "val_loss", "val_accuracy")
LAYER_STATS = ("grad_norm", "clipped_grad_norm", "delta_norm", "weight_norm", "update_ratio", "nonfinite_count",
               "init_distance", "bias_grad_norm")
HIDDEN_STATS = ("act_mean", "act_std", "saturation", "dead", "h_grad_norm", "u_grad_norm", "neg_slope")
HIST_STATS = ("hist", "z_hist", "h_hist")  # int counts: (D+1, 32), (D, NZ), (D, NH) per step
# Recorded every VAL_EVERY steps and NaN in between: history buckets average their finite values.
SPARSE_STATS = ("val_loss", "val_accuracy")


class TrainState(NamedTuple):
    params: dict
    opt_state: tuple  # the optimizer's own state (restarts when the user switches optimizer)
    bn_state: dict
    key: jax.Array
    step: jax.Array
    w0: tuple  # the kernels at the last (re)initialization, for init_distance


def init_state(key, params, shape: Shape, optimizer: str):
    opt_state = OPTIMIZERS[optimizer]().init(params)
    return TrainState(params, opt_state, init_bn_state(shape), key, jnp.zeros((), jnp.int32), kernels(params))


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


def _clip_effect(grads, clipped):
    """Cosine between the raw and the clipped gradient (1 when nothing changed), and the
    fraction of entries that clipping changed (NaN entries do not count as changed)."""
    g, c = jax.tree.leaves(grads), jax.tree.leaves(clipped)
    dot = sum(jnp.vdot(a, b) for a, b in zip(g, c))
    changed = sum(jnp.sum((a != b) & ~jnp.isnan(a)) for a, b in zip(g, c))
    total = sum(a.size for a in g)
    cosine = jnp.where(changed == 0, 1.0, dot / (optax.tree.norm(grads) * optax.tree.norm(clipped)))
    return cosine, changed / total


def make_loss(act, shape: Shape, unroll):
    """loss_fn(params, taps, bn_state, x, y, knobs, key, masks) -> (loss, aux); its gradient
    with respect to `taps` is the per-layer gradient norms (network.tap)."""
    def loss_fn(params, taps, bn_state, x, y, knobs, key, masks):
        slopes = layer_slopes(act, params, knobs, key, shape.depth, train=True)
        logits, aux = forward(act, params, bn_state, x, taps, slopes, masks, knobs, train=True, unroll=unroll)
        data_loss = optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()
        ks = kernels(params)
        penalty = knobs.l1 * sum(jnp.abs(k).sum() for k in ks) + knobs.l2 * sum(jnp.square(k).sum() for k in ks)
        accuracy = (logits.argmax(-1) == y).mean()
        return data_loss + penalty, (data_loss, penalty, accuracy, aux, mean_slopes(act, slopes))
    return loss_fn


def make_predict(act, shape: Shape, unroll=1):
    """Evaluation-mode logits: running BatchNorm statistics, rrelu at its mean slope, no dropout."""
    def predict(params, bn_state, knobs, x):
        slopes = layer_slopes(act, params, knobs, None, shape.depth, train=False)
        return forward(act, params, bn_state, x, zero_taps(shape), slopes, None, knobs, train=False, stats=False, unroll=unroll)[0]
    return predict


def make_validate(act, shape: Shape, unroll=1):
    """(loss, accuracy) on the held-out split, in evaluation mode."""
    predict = make_predict(act, shape, unroll)

    def validate(params, bn_state, knobs, x_val, y_val):
        logits = predict(params, bn_state, knobs, x_val)
        loss = optax.softmax_cross_entropy_with_integer_labels(logits, y_val).mean()
        return loss, (logits.argmax(-1) == y_val).mean()
    return validate


def _statistics(state, params, grads, clipped, tap_norms, aux):
    """Everything measured from one step's gradient, before its update (see GLOBAL_STATS...)."""
    loss, penalty, acc, (moments, z_hist, h_hist, _, _), neg_slope = aux
    w_before, w_after = kernels(state.params), kernels(params)
    weight_norm = _per_layer_norm(w_before)
    global_norm = optax.tree.norm(grads)
    cosine, fraction = _clip_effect(grads, clipped)
    return {
        "loss": loss,
        "accuracy": acc,
        "penalty": penalty,
        "global_grad_norm": global_norm,
        "clipped_global_grad_norm": optax.tree.norm(clipped),
        "clip_cosine": cosine,
        "clip_fraction": fraction,
        "grad_norm": _per_layer_norm(kernels(grads)),
        "clipped_grad_norm": _per_layer_norm(kernels(clipped)),
        "delta_norm": tap_norms["z"],
        "u_grad_norm": tap_norms["u"],
        "h_grad_norm": tap_norms["h"],
        "bias_grad_norm": _per_layer_norm(biases(grads)),
        "weight_norm": weight_norm,
        "update_ratio": _per_layer_norm(tuple(a - b for a, b in zip(w_after, w_before))) / weight_norm,
        "init_distance": _per_layer_norm(tuple(a - b for a, b in zip(w_before, state.w0))) / _per_layer_norm(state.w0),
        "nonfinite_count": _count_nonfinite(kernels(grads)),
        "act_mean": moments[:, 0],
        "act_std": moments[:, 1],
        "saturation": moments[:, 2],
        "dead": moments[:, 3],
        "neg_slope": neg_slope,
        "hist": _layer_histograms(grads),
        "z_hist": z_hist,
        "h_hist": h_hist,
        "step": state.step,
        "nonfinite": ~(jnp.isfinite(loss) & jnp.isfinite(global_norm) & jnp.isfinite(optax.tree.norm(params))),
    }


def make_step(act, optimizer, shape: Shape, unroll=1, with_stats=True):
    """One optimizer step: step(state, knobs, x_all, y_all, x_val, y_val) -> (state, stats).
    `with_stats=False` records the loss alone (the benchmark's baseline; XLA then drops the
    statistics' work as dead code)."""
    grad_fn = jax.grad(make_loss(act, shape, unroll), argnums=(0, 1), has_aux=True)
    validate = make_validate(act, shape, unroll)
    opt = OPTIMIZERS[optimizer]()

    def step(state: TrainState, knobs: Knobs, x_all, y_all, x_val, y_val):
        key, k_batch, k_slope, k_drop = jax.random.split(state.key, 4)
        idx = jax.random.randint(k_batch, (shape.batch,), 0, x_all.shape[0])
        x, y = x_all[idx], y_all[idx]  # (B, n_in), (B,)
        masks = dropout_masks(knobs, k_drop, shape, shape.batch)
        (grads, tap_norms), aux = grad_fn(state.params, zero_taps(shape), state.bn_state, x, y, knobs, k_slope, masks)

        clipped = _clip(grads, knobs)
        updates, opt_state = opt.update(clipped, state.opt_state, state.params)
        params = jax.tree.map(lambda p, u: p + knobs.learning_rate * u, state.params, updates)
        _, _, _, (_, _, _, mu, var), _ = aux
        bn_state = {
            "mean": BN_MOMENTUM * state.bn_state["mean"] + (1 - BN_MOMENTUM) * mu,
            "var": BN_MOMENTUM * state.bn_state["var"] + (1 - BN_MOMENTUM) * var,
        }
        new_state = TrainState(params, opt_state, bn_state, key, state.step + 1, state.w0)
        if not with_stats:
            return new_state, {"loss": aux[0], "step": state.step}
        stats = _statistics(state, params, grads, clipped, tap_norms, aux)
        # Held-out evaluation at fixed steps; a cond, so the other steps skip the forward pass.
        nan = jnp.full((), jnp.nan, jnp.float32)
        val = lambda: validate(state.params, state.bn_state, knobs, x_val, y_val)
        stats["val_loss"], stats["val_accuracy"] = jax.lax.cond(state.step % VAL_EVERY == 0, val, lambda: (nan, nan))
        return new_state, stats

    return step


def make_chunk(act, optimizer, shape: Shape, steps: int, unroll=1, with_stats=True):
    """Up to K = `steps` training steps in one loop; the traced `n` says how many run.

    Stats are stacked along a leading (K,) axis; rows from n on are left zero (the
    caller slices them off), so one executable serves any chunk length up to K. A
    fori_loop with a traced bound runs exactly n steps: no per-step cond, no wasted steps.
    """
    step = make_step(act, optimizer, shape, unroll, with_stats)

    def chunk(state, knobs, x_all, y_all, x_val, y_val, n):
        run = lambda s: step(s, knobs, x_all, y_all, x_val, y_val)
        rows = jax.tree.map(lambda a: jnp.zeros((steps,) + a.shape, a.dtype), jax.eval_shape(run, state)[1])

        def body(i, carry):
            s, rows = carry
            s, stats = run(s)
            return s, jax.tree.map(lambda r, v: jax.lax.dynamic_update_index_in_dim(r, v, i, 0), rows, stats)
        return jax.lax.fori_loop(0, jnp.minimum(n, steps), body, (state, rows))

    return chunk
