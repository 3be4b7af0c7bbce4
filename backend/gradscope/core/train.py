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

from gradscope.core.network import (
    BN_MOMENTUM,
    Knobs,
    Shape,
    activation_stats,
    biases,
    bin_counts,
    dropout_masks,
    fixed,
    forward,
    init_bn_state,
    kernels,
    layer_slopes,
    mean_slopes,
    rrelu_slopes,
    unit_axes,
    zero_taps,
)
from gradscope.core.optimizers import (  # noqa: F401  (re-exported: the engine, config and tests import them from here)
    CLIP_MODES,
    OPTIMIZER_NAMES,
    OPTIMIZERS,
    ClipMode,
    advance,
    clip_effect,
    clip_gradients,
    feed,
    fixed_mode,
    make_optimizer,
)

HIST_EDGES = np.linspace(-12.0, 4.0, 33)  # log10 |dL/dW|: 32 bins of half a decade
HIST_SAMPLE = 1024  # entries per layer that the histogram counts, at most
VAL_EVERY = 50  # steps between held-out evaluations (at steps that are multiples of it)

GLOBAL_STATS = ("loss", "accuracy", "penalty", "global_grad_norm", "clipped_global_grad_norm", "nonfinite",
                "clip_cosine", "clip_fraction", "val_loss", "val_accuracy")
LAYER_STATS = ("grad_norm", "clipped_grad_norm", "delta_norm", "weight_norm", "update_ratio", "nonfinite_count",
               "init_distance", "bias_grad_norm")
HIDDEN_STATS = ("act_mean", "act_std", "saturation", "dead", "h_grad_norm", "u_grad_norm", "neg_slope")
HIST_STATS = ("hist", "z_hist", "h_hist")  # int counts: (D+1, 32), (D, NZ), (D, NH) per step
# Recorded every VAL_EVERY steps and NaN in between: history buckets average their finite values.
SPARSE_STATS = ("val_loss", "val_accuracy")
# Recorded at every step, measured or not (a row's are averaged over the steps it covers);
# every other statistic is measured at the row's step (see make_chunk).
PER_STEP_STATS = ("loss", "accuracy", "nonfinite") + SPARSE_STATS
# `count`: the steps a row covers (1 where every step is measured; see engine.Trainer.run)
STAT_NAMES = ("step", "count") + GLOBAL_STATS + LAYER_STATS + HIDDEN_STATS + HIST_STATS


class TrainState(NamedTuple):
    params: dict
    opt_state: tuple  # make_optimizer's chain state (restarts when the user switches optimizer)
    bn_state: dict
    key: jax.Array
    step: jax.Array
    w0: tuple  # the kernels at the last (re)initialization, for init_distance


def init_state(key, params, shape: Shape, optimizer: str):
    opt_state = make_optimizer(optimizer).init(params)
    return TrainState(params, opt_state, init_bn_state(shape), key, jnp.zeros((), jnp.int32), kernels(params))


def reset_optimizer(state: TrainState, optimizer: str) -> TrainState:
    """A fresh state for `optimizer`, keeping the weights (used when the user switches to it)."""
    return state._replace(opt_state=make_optimizer(optimizer).init(state.params))


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

    Large layers are sampled: every k-th entry, at most HIST_SAMPLE of them; the shape of
    a 32-bin distribution needs no more, and the counting costs per entry (bench/)."""
    flat = g.reshape(-1)
    a = jnp.abs(flat[:: max(1, -(-flat.shape[0] // HIST_SAMPLE))])
    return bin_counts(jnp.log10(jnp.maximum(a, 1e-30)), HIST_EDGES)  # zeros land in the first bin


def _layer_histograms(grads):
    first, hidden, out = kernels(grads)
    return jnp.concatenate([_histogram(first)[None], jax.vmap(_histogram)(hidden), _histogram(out)[None]])


def _count_nonfinite(arrays):
    first, hidden, out = arrays
    bad = lambda a, axes: jnp.sum(~jnp.isfinite(a), axis=axes)
    return jnp.concatenate([bad(first, None)[None], bad(hidden, (1, 2)), bad(out, None)[None]])


def make_loss(act, shape: Shape, unroll, measure=True):
    """loss_fn(params, taps, bn_state, x, y, knobs, drawn, masks) -> (loss, aux); its gradient
    with respect to `taps` is the per-layer gradient norms (network.tap). `drawn`: this
    step's RReLU slopes (ignored by the other activations).

    `measure` False: the loss of a step that records only its loss and accuracy (`taps`
    None, no activation statistics): aux is (data_loss, penalty, accuracy, (mu, var))."""
    def penalty_of(params, knobs):
        ks, penalty = kernels(params), jnp.zeros(())
        if fixed(knobs.l1) != 0.0:  # an L1 term unless built without one
            penalty = penalty + knobs.l1 * sum(jnp.abs(k).sum() for k in ks)
        if fixed(knobs.l2) != 0.0:
            penalty = penalty + knobs.l2 * sum(jnp.square(k).sum() for k in ks)
        return penalty

    def loss_fn(params, taps, bn_state, x, y, knobs, drawn, masks):
        slopes = layer_slopes(act, params, knobs, drawn, shape.depth, train=True)
        logits, fwd = forward(act, params, bn_state, x, taps, slopes, masks, knobs, train=True, stats=measure, unroll=unroll)
        data_loss = optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()
        penalty = penalty_of(params, knobs)
        accuracy = (logits.argmax(-1) == y).mean()
        if not measure:
            return data_loss + penalty, (data_loss, penalty, accuracy, fwd)
        mu, var, z, h = fwd
        aux = (*activation_stats(act, z, h, slopes), mu, var)
        return data_loss + penalty, (data_loss, penalty, accuracy, aux, mean_slopes(act, slopes))
    return loss_fn


def make_predict(act, shape: Shape, unroll=1):
    """Evaluation-mode logits: running BatchNorm statistics, rrelu at its mean slope, no dropout."""
    def predict(params, bn_state, knobs, x):
        slopes = layer_slopes(act, params, knobs, None, shape.depth, train=False)
        return forward(act, params, bn_state, x, None, slopes, None, knobs, train=False, stats=False, unroll=unroll)[0]
    return predict


def make_validate(act, shape: Shape, unroll=1):
    """(loss, accuracy) on the held-out split, in evaluation mode."""
    predict = make_predict(act, shape, unroll)

    def validate(params, bn_state, knobs, x_val, y_val):
        logits = predict(params, bn_state, knobs, x_val)
        loss = optax.softmax_cross_entropy_with_integer_labels(logits, y_val).mean()
        return loss, (logits.argmax(-1) == y_val).mean()
    return validate


def _statistics(state, update, grads, clipped, tap_norms, aux):
    """Everything measured from one step's gradient at its parameters, before the update
    `update` (the change the optimizer makes to them). See LAYER_STATS, HIDDEN_STATS...
    `clipped` None: a build without clipping, whose clipped norms are the raw ones (and
    clip_effect's two passes over the gradient are skipped)."""
    _, penalty, _, (moments, z_hist, h_hist, _, _), neg_slope = aux
    w_before = kernels(state.params)
    weight_norm = _per_layer_norm(w_before)
    grad_norm, global_norm = _per_layer_norm(kernels(grads)), optax.tree.norm(grads)
    if clipped is None:
        clipped_norm, clipped_global, (cosine, fraction) = grad_norm, global_norm, (jnp.ones(()), jnp.zeros(()))
    else:
        clipped_norm, clipped_global = _per_layer_norm(kernels(clipped)), optax.tree.norm(clipped)
        cosine, fraction = clip_effect(grads, clipped)
    # counted only when something is non-finite (a pass over every gradient otherwise spent on zeros)
    none = lambda g: jnp.zeros((len(weight_norm),), jnp.int32)
    nonfinite = jax.lax.cond(jnp.isfinite(global_norm), none, _count_nonfinite, kernels(grads))
    return {
        "penalty": penalty,
        "global_grad_norm": global_norm,
        "clipped_global_grad_norm": clipped_global,
        "clip_cosine": cosine,
        "clip_fraction": fraction,
        "grad_norm": grad_norm,
        "clipped_grad_norm": clipped_norm,
        "delta_norm": tap_norms["z"],
        "u_grad_norm": tap_norms["u"],
        "h_grad_norm": tap_norms["h"],
        "bias_grad_norm": _per_layer_norm(biases(grads)),
        "weight_norm": weight_norm,
        "update_ratio": _per_layer_norm(kernels(update)) / weight_norm,
        "init_distance": _per_layer_norm(tuple(a - b for a, b in zip(w_before, state.w0, strict=True))) / _per_layer_norm(state.w0),
        "nonfinite_count": nonfinite,
        "act_mean": moments[:, 0],
        "act_std": moments[:, 1],
        "saturation": moments[:, 2],
        "dead": moments[:, 3],
        "neg_slope": neg_slope,
        "hist": _layer_histograms(grads),
        "z_hist": z_hist,
        "h_hist": h_hist,
        "step": state.step,
    }


def make_draws(act, shape: Shape):
    """draws(key, first, count, n_data) -> the randomness of steps first .. first+count-1.

    Drawn for a whole chunk at once, vectorized (on CPU every threefry call is a small loop
    of its own, and per step they cost more than the rest of a small step). Each step's
    stream is fold_in(key, step), so a run's draws do not depend on how it is cut into
    chunks. Returns {"idx": (K, B) batch rows, "drop": (K,) dropout keys, "slopes": RReLU
    slopes (K, D, 1, W) (a (K,) placeholder for the other activations)}."""
    def draws(key, first, count, n_data):
        keys = jax.vmap(lambda i: jax.random.split(jax.random.fold_in(key, i), 3))(first + jnp.arange(count))  # (K, 3, 2)
        idx = jax.vmap(lambda k: jax.random.randint(k, (shape.batch,), 0, n_data))(keys[:, 0])
        if act == "rrelu":
            slopes = jax.vmap(lambda k: rrelu_slopes(k, shape.depth, shape.width))(keys[:, 1])
        else:
            slopes = jnp.zeros((count,))
        return {"idx": idx, "drop": keys[:, 2], "slopes": slopes}
    return draws


class Spec(NamedTuple):
    """The structural knobs an executable is built for, as constants; None: traced, so
    that executable serves any value. The engine trains on the build for the current
    values (`specialize`) once it is compiled, and on the generic build (all None) in
    the meantime, so a change never waits for a compile. A build for its values skips
    what the others need: BatchNorm's selects and moments, the residual select, the
    dropout draw's cond, the unused clipping branches, the penalty's reductions."""

    batchnorm: bool | None = None
    residual: bool | None = None
    dropout: bool | None = None  # whether dropout is on (its rate stays traced)
    clip_mode: int | None = None  # ClipMode.index: the traced knob's form (a compile key: keep it an int)
    l1: bool | None = None  # whether the L1 penalty is on (its weight stays traced)
    l2: bool | None = None


GENERIC = Spec()


def specialize(knobs: Knobs, spec: Spec) -> Knobs:
    """`knobs` with the values `spec` fixes replaced by Python constants (network.fixed)."""
    out = {}
    if spec.batchnorm is not None:
        out["batchnorm"] = bool(spec.batchnorm)
    if spec.residual is not None:
        out["residual"] = bool(spec.residual)
    if spec.clip_mode is not None:
        out["clip_mode"] = fixed_mode(spec.clip_mode).index  # an int (a ClipMode or its name accepted)
    if spec.dropout is False:
        out["dropout"] = 0.0
    if spec.l1 is False:
        out["l1"] = 0.0
    if spec.l2 is False:
        out["l2"] = 0.0
    return knobs._replace(**out)


def make_step(act, optimizer, shape: Shape, unroll=1, with_stats=True, spec: Spec = GENERIC, measure=True):
    """One optimizer step: step(state, knobs, x_all, y_all, x_val, y_val, draw) ->
    (state, scalars, row): `scalars` the per-step statistics (PER_STEP_STATS), `row` the
    measured ones (every other statistic; None where `measure` is False: a step that only
    trains, with no norm probes, activation statistics or histograms). `draw` is one row
    of make_draws' output. `with_stats`: True for every statistic, False for the loss
    alone, or a collection of the names to keep (the benchmark's ablations; XLA drops the
    others' work as dead code). The optimizer reads the learning rate and clip threshold
    from `state.opt_state` (optimizers.feed; make_chunk feeds the knobs' values)."""
    grad_fn = jax.grad(make_loss(act, shape, unroll, measure), argnums=(0, 1) if measure else 0, has_aux=True)
    validate = make_validate(act, shape, unroll)
    keep = set(STAT_NAMES if with_stats is True else with_stats or ()) | {"loss", "step"}

    def step(state: TrainState, knobs: Knobs, x_all, y_all, x_val, y_val, draw):
        knobs = specialize(knobs, spec)
        x, y = x_all[draw["idx"]], y_all[draw["idx"]]  # (B, n_in), (B,)
        masks = dropout_masks(knobs, draw["drop"], shape, shape.batch, on=spec.dropout)
        if measure:
            (grads, tap_norms), aux = grad_fn(state.params, zero_taps(shape), state.bn_state, x, y, knobs, draw["slopes"], masks)
            loss, _, acc, (_, _, _, mu, var), _ = aux
        else:
            grads, aux = grad_fn(state.params, None, state.bn_state, x, y, knobs, draw["slopes"], masks)
            loss, _, acc, (mu, var) = aux

        # built here, where the clip mode is known: a constant in a build for its value, else traced
        opt = make_optimizer(optimizer, knobs.clip_mode, unit_axes)
        clipped, update, opt_state = opt.update(grads, state.opt_state, state.params)  # its knobs fed (make_chunk)
        row = None
        old = state.params
        if measure:
            # a build without clipping: the clipped statistics are the raw ones (see _statistics)
            unclipped = fixed_mode(knobs.clip_mode) is ClipMode.NONE
            row = {k: v for k, v in _statistics(state, update, grads, None if unclipped else clipped, tap_norms, aux).items() if k in keep}
            # the statistics read the weights before the update: computed first, so the
            # update can be written in place instead of into a copy of the weights
            row, old = jax.lax.optimization_barrier((row, old))
        params = jax.tree.map(jnp.add, old, update)
        bn_state = _running_moments(state.bn_state, mu, var, knobs)
        # Non-finite: the loss, and at a measured step the gradient too. A step that only
        # trains checks the loss alone (a pass over every gradient costs 4% of a step at
        # width 256): a non-finite gradient makes the next step's loss non-finite.
        finite = jnp.isfinite(loss) & (jnp.isfinite(row["global_grad_norm"]) if measure and "global_grad_norm" in row else True)
        scalars = {"loss": loss, "accuracy": acc, "nonfinite": ~finite}
        if keep & set(SPARSE_STATS):
            # Held-out evaluation at fixed steps; a cond, so the other steps skip the forward pass.
            nan = jnp.full((), jnp.nan, jnp.float32)
            val = lambda: validate(state.params, state.bn_state, knobs, x_val, y_val)
            scalars["val_loss"], scalars["val_accuracy"] = jax.lax.cond(state.step % VAL_EVERY == 0, val, lambda: (nan, nan))
        new_state = TrainState(params, opt_state, bn_state, state.key, state.step + 1, state.w0)
        return new_state, scalars, row

    return step


def _running_moments(bn_state, mu, var, knobs):
    """BatchNorm's running statistics, tracked while BatchNorm is on (frozen while it is
    off: a build without BatchNorm then computes no batch moments at all)."""
    on = fixed(knobs.batchnorm)
    if on is False:
        return bn_state
    new = {
        "mean": BN_MOMENTUM * bn_state["mean"] + (1 - BN_MOMENTUM) * mu,
        "var": BN_MOMENTUM * bn_state["var"] + (1 - BN_MOMENTUM) * var,
    }
    if on is True:
        return new
    return jax.tree.map(lambda a, b: jnp.where(knobs.batchnorm, a, b), new, bn_state)


def _packer(example: dict):
    """pack(stats) -> one flat vector per dtype; unpack(rows) -> the dict with a leading axis.

    Written into the chunk's output as one row per dtype and step: each separate output
    array costs its own update kernel per step (about 30 of them otherwise)."""
    names = sorted(example)
    dtypes = sorted({str(example[n].dtype) for n in names})
    groups = {d: [n for n in names if str(example[n].dtype) == d] for d in dtypes}

    def pack(stats):
        return {d: jnp.concatenate([stats[n].reshape(-1) for n in groups[d]]) for d in dtypes}

    def unpack(rows):
        out = {}
        for d, group in groups.items():
            cuts = np.cumsum([0] + [int(np.prod(example[n].shape)) for n in group])
            for n, lo, hi in zip(group, cuts[:-1], cuts[1:], strict=True):
                out[n] = rows[d][:, lo:hi].reshape((-1,) + example[n].shape)
        return out
    return pack, unpack


def kept(step, keep):
    """`step` (-> (state, scalars, row)) keeping only the statistics named in `keep` (None: all):
    XLA then drops the others' work (the chunk packs every row statistic into one array, so a
    selection must happen before the packing for that)."""
    if keep is None:
        return step
    keep = set(keep)

    def selected(*args):
        state, scalars, row = step(*args)
        pick = lambda stats: None if stats is None else {k: v for k, v in stats.items() if k in keep}
        return state, pick(scalars), pick(row)
    return selected


def make_chunk(act, optimizer, shape: Shape, steps: int, unroll=1, with_stats=True, spec: Spec = GENERIC, keep=None):
    """Up to K = `steps` training steps in one loop; the traced `n` says how many run and
    the traced `every` which of them are measured.

    chunk(state, knobs, x_all, y_all, x_val, y_val, n, every) -> (state, out): `out` has
    the per-step statistics (PER_STEP_STATS) with a leading (K,) axis, every other
    statistic in rows (K,) of which the first `out["rows"]` are filled: one per measured
    step, the steps (i+1) % every == 0 and the last one (i = n-1). The steps in between
    only train: a loop of its own with no norm probes, activation statistics, histograms
    or weight reductions (those cost as much as the training itself at the default size);
    the page draws at most about 30 frames a second, so measuring a few steps per call
    shows everything it can draw. `every` = 1 measures every step.
    Rows and steps past what ran are left zero (the caller slices them off).
    `keep`: the statistics to compute (None: all; see `kept`).
    """
    full = kept(make_step(act, optimizer, shape, unroll, with_stats, spec), keep)
    plain = kept(make_step(act, optimizer, shape, unroll, with_stats, spec, measure=False), keep)
    make = make_draws(act, shape)

    def chunk(state, knobs, x_all, y_all, x_val, y_val, n, every):
        n, every = jnp.minimum(n, steps), jnp.maximum(every, 1)
        state = state._replace(opt_state=feed(state.opt_state, knobs))  # the live learning rate and clip threshold
        draws = make(state.key, state.step, steps, x_all.shape[0])
        pick = lambda i: jax.tree.map(lambda a: a[i], draws)
        example = jax.eval_shape(lambda s: full(s, knobs, x_all, y_all, x_val, y_val, pick(0)), state)
        pack, unpack = _packer(example[2])
        rows = jax.tree.map(lambda a: jnp.zeros((steps,) + a.shape, a.dtype), jax.eval_shape(pack, example[2]))
        per_step = jax.tree.map(lambda a: jnp.zeros((steps,) + a.shape, a.dtype), example[1])
        write = lambda buf, vals, i: jax.tree.map(lambda b, v: jax.lax.dynamic_update_index_in_dim(b, v, i, 0), buf, vals)

        def train_only(i, carry):
            s, per_step = carry
            s, scalars, _ = plain(s, knobs, x_all, y_all, x_val, y_val, pick(i))
            return s, write(per_step, scalars, i)

        def group(j, carry):
            s, per_step, rows = carry
            last = jnp.minimum((j + 1) * every, n) - 1  # the measured step of row j
            s, per_step = jax.lax.fori_loop(j * every, last, train_only, (s, per_step))
            s, scalars, row = full(s, knobs, x_all, y_all, x_val, y_val, pick(last))
            return s, write(per_step, scalars, last), write(rows, pack(row), j)

        measured = (n + every - 1) // every
        state, per_step, rows = jax.lax.fori_loop(0, measured, group, (state, per_step, rows))
        state = state._replace(opt_state=advance(state.opt_state, n))  # the n updates' counts (Optimizer.update)
        return state, {**per_step, **unpack(rows), "rows": measured}

    return chunk
