"""The CNN training chunk: up to K optimizer steps in one compiled loop, statistics reduced on
device, in the MLP chunk's form (core.train): per-step scalars for every step, every other
statistic at the measured steps (every `every`-th and the last), their count under "rows".

`make_chunk(act, optimizer, shape, steps, spec)` returns
    chunk(state, knobs, x_all, y_all, x_val, y_val, n, every) -> (state, out)
with the knobs (network.Knobs) and n, every traced: a new value never recompiles.

Statistics (D = depth conv layers, the readout last where the axis is "layer"; M = max channels):
  GLOBAL_STATS                                                                                 ()
  grad_norm clipped_grad_norm delta_norm weight_norm update_ratio nonfinite_count
  init_distance bias_grad_norm                                                                 (D+1,)
  act_mean act_std saturation dead (channels never active over batch and space)
  u_grad_norm ||dL/du_l|| (conv outputs), h_grad_norm ||dL/dh_l|| (activation outputs)            (D,)
  spp_mean_sq spp_var spp_res_var (core.cnn.forward; NaN inside residual blocks)                 (D,)
  channel_grad_norm ||dL/dW|| over each output channel's kernel, NaN past a layer's channels    (D, M)
  input_grad dL/dx of the first held-out image, summed over its channels, evaluation mode        (side, side)
  input_image that image, summed over its channels (constant: shown beside input_grad)           (side, side)
"""

import jax
import jax.numpy as jnp
import optax

from gradscope.core.cnn import (
    CnnShape,
    biases,
    dropout_masks,
    forward,
    init_bn_state,
    kernels,
    max_channels,
    penalized,
    scaled_norm,
    scaled_norms,
    zero_taps,
)
from gradscope.core.network import BN_MOMENTUM, Knobs, fixed
from gradscope.core.optimizers import ClipMode, advance, clip_effect, feed, fixed_mode, make_optimizer
from gradscope.core.train import GENERIC, VAL_EVERY, Spec, TrainState, _packer, kept, specialize

GLOBAL_STATS = ("loss", "accuracy", "penalty", "global_grad_norm", "clipped_global_grad_norm", "nonfinite",
                "clip_cosine", "clip_fraction", "val_loss", "val_accuracy")
LAYER_STATS = ("grad_norm", "clipped_grad_norm", "delta_norm", "weight_norm", "update_ratio", "nonfinite_count",
               "init_distance", "bias_grad_norm")
HIDDEN_STATS = ("act_mean", "act_std", "saturation", "dead", "u_grad_norm", "h_grad_norm")
SPP_STATS = ("spp_mean_sq", "spp_var", "spp_res_var")
STAT_NAMES = GLOBAL_STATS + LAYER_STATS + HIDDEN_STATS + SPP_STATS + ("channel_grad_norm", "input_grad", "input_image")


def init_state(key, params, shape: CnnShape, optimizer: str) -> TrainState:
    opt_state = make_optimizer(optimizer).init(params)
    return TrainState(params, opt_state, init_bn_state(shape), key, jnp.zeros((), jnp.int32), tuple(kernels(params)))


def reset_optimizer(state: TrainState, optimizer: str) -> TrainState:
    return state._replace(opt_state=make_optimizer(optimizer).init(state.params))


def _norms(arrays):
    return jnp.stack(scaled_norms(arrays))


def make_loss(act, shape: CnnShape, measure=True):
    """loss_fn(params, taps, bn_state, x, y, knobs, masks) -> (loss + penalty, (loss, penalty, accuracy, aux))."""
    def loss_fn(params, taps, bn_state, x, y, knobs, masks):
        logits, aux = forward(act, params, bn_state, x, knobs, shape, train=True, taps=taps, masks=masks, measure=measure)
        data_loss = optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()
        penalty = jnp.zeros(())
        if fixed(knobs.l1) != 0.0:
            penalty = penalty + knobs.l1 * sum(jnp.abs(k).sum() for k in penalized(params))
        if fixed(knobs.l2) != 0.0:
            penalty = penalty + knobs.l2 * sum(jnp.square(k).sum() for k in penalized(params))
        return data_loss + penalty, (data_loss, penalty, (logits.argmax(-1) == y).mean(), aux)
    return loss_fn


def make_predict(act, shape: CnnShape):
    """Evaluation-mode logits (running BatchNorm statistics, no dropout): predict(params, bn_state, knobs, x)."""
    def predict(params, bn_state, knobs, x):
        return forward(act, params, bn_state, x, knobs, shape, train=False)[0]
    return predict


def make_saliency(act, shape: CnnShape):
    """dL/dx of one image in evaluation mode, summed over channels: (side, side)."""
    predict = make_predict(act, shape)

    def saliency(params, bn_state, knobs, x, y):
        loss = lambda x: optax.softmax_cross_entropy_with_integer_labels(predict(params, bn_state, knobs, x[None]), y[None]).mean()
        return jax.grad(loss)(x).sum(axis=-1)
    return saliency


def _channel_norms(grads, width):
    """Per conv layer ||dL/dW|| over each output channel's kernel, NaN-padded to `width`: (D, width);
    and the per-layer vectors they come from."""
    norms = scaled_norms(kernels(grads)[:-1], axis=(0, 1, 2))
    rows = [jnp.pad(n, (0, width - n.shape[0]), constant_values=jnp.nan) for n in norms]
    return jnp.stack(rows), norms


def _statistics(state, update, grads, clipped, tap_norms, aux, shape, saliency):
    """Everything measured from one step's gradient at its parameters, before `update`."""
    w_before = kernels(state.params)
    weight_norm = _norms(w_before)
    channel, per_channel = _channel_norms(grads, max_channels(shape))
    grad_norm = jnp.concatenate([_norms(per_channel), scaled_norm(kernels(grads)[-1])[None]])
    global_norm = optax.tree.norm(grads)
    if clipped is None:
        clipped_norm, clipped_global, (cosine, fraction) = grad_norm, global_norm, (jnp.ones(()), jnp.zeros(()))
    else:
        clipped_norm, clipped_global = _norms(kernels(clipped)), optax.tree.norm(clipped)
        cosine, fraction = clip_effect(grads, clipped)
    none = lambda g: jnp.zeros((len(w_before),), jnp.int32)
    count = lambda g: jnp.stack([jnp.sum(~jnp.isfinite(a)) for a in g]).astype(jnp.int32)
    layer, spp = aux["layer"], aux["spp"]
    return {
        "global_grad_norm": global_norm,
        "clipped_global_grad_norm": clipped_global,
        "clip_cosine": cosine,
        "clip_fraction": fraction,
        "grad_norm": grad_norm,
        "clipped_grad_norm": clipped_norm,
        "delta_norm": tap_norms["z"],
        "u_grad_norm": tap_norms["u"],
        "h_grad_norm": tap_norms["h"],
        "weight_norm": weight_norm,
        "update_ratio": _norms(kernels(update)) / weight_norm,
        "nonfinite_count": jax.lax.cond(jnp.isfinite(global_norm), none, count, kernels(grads)),
        "init_distance": _norms([a - b for a, b in zip(w_before, state.w0, strict=True)]) / _norms(state.w0),
        "bias_grad_norm": _norms(biases(grads)),
        "act_mean": layer[:, 0],
        "act_std": layer[:, 1],
        "saturation": layer[:, 2],
        "dead": layer[:, 3],
        "spp_mean_sq": spp[:, 0],
        "spp_var": spp[:, 1],
        "spp_res_var": spp[:, 2],
        "channel_grad_norm": channel,
        "input_grad": saliency,
        "step": state.step,
    }


def _running_moments(bn_state, aux, knobs):
    """BatchNorm's running statistics, tracked while BatchNorm is on."""
    on = fixed(knobs.batchnorm)
    if on is False:
        return bn_state
    new = {"mean": [BN_MOMENTUM * a + (1 - BN_MOMENTUM) * m for a, m in zip(bn_state["mean"], aux["mu"], strict=True)],
           "var": [BN_MOMENTUM * a + (1 - BN_MOMENTUM) * v for a, v in zip(bn_state["var"], aux["var"], strict=True)]}
    if on is True:
        return new
    return jax.tree.map(lambda a, b: jnp.where(knobs.batchnorm, a, b), new, bn_state)


def make_step(act, optimizer, shape: CnnShape, spec: Spec = GENERIC, measure=True, with_stats=True):
    """step(state, knobs, x_all, y_all, x_val, y_val, draw) -> (state, per-step scalars, measured row or None).
    `with_stats` False: the measured row keeps only its step (the benchmark's ablation)."""
    grad_fn = jax.grad(make_loss(act, shape, measure), argnums=(0, 1) if measure else 0, has_aux=True)
    predict, saliency = make_predict(act, shape), make_saliency(act, shape)

    def validate(params, bn_state, knobs, x_val, y_val):
        logits = predict(params, bn_state, knobs, x_val)
        return optax.softmax_cross_entropy_with_integer_labels(logits, y_val).mean(), (logits.argmax(-1) == y_val).mean()

    def step(state: TrainState, knobs: Knobs, x_all, y_all, x_val, y_val, draw):
        knobs = specialize(knobs, spec)
        x, y = x_all[draw["idx"]], y_all[draw["idx"]]  # (B, side, side, C), (B,)
        masks = dropout_masks(knobs, draw["drop"], shape, on=spec.dropout)
        if measure:
            (grads, tap_norms), (loss, penalty, acc, aux) = grad_fn(state.params, zero_taps(shape), state.bn_state, x, y, knobs, masks)
        else:
            grads, (loss, penalty, acc, aux) = grad_fn(state.params, None, state.bn_state, x, y, knobs, masks)
        opt = make_optimizer(optimizer, knobs.clip_mode)
        clipped, update, opt_state = opt.update(grads, state.opt_state, state.params)
        row, old = None, state.params
        if measure:
            unclipped = fixed_mode(knobs.clip_mode) is ClipMode.NONE
            image = saliency(state.params, state.bn_state, knobs, x_val[0], y_val[0])
            row = _statistics(state, update, grads, None if unclipped else clipped, tap_norms, aux, shape, image)
            # the image itself beside its saliency (the page shows the pair), channels summed as input_grad's
            row = {**row, "penalty": penalty, "input_image": x_val[0].sum(-1)} if with_stats else {"step": row["step"]}
            row, old = jax.lax.optimization_barrier((row, old))  # measured before the update is written in place
        params = jax.tree.map(jnp.add, old, update)
        finite = jnp.isfinite(loss) & (jnp.isfinite(row["global_grad_norm"]) if measure and with_stats else True)
        nan = jnp.full((), jnp.nan, jnp.float32)
        val = lambda: validate(state.params, state.bn_state, knobs, x_val, y_val)
        val_loss, val_acc = jax.lax.cond(state.step % VAL_EVERY == 0, val, lambda: (nan, nan))
        scalars = {"loss": loss, "accuracy": acc, "nonfinite": ~finite, "val_loss": val_loss, "val_accuracy": val_acc}
        bn_state = _running_moments(state.bn_state, aux, knobs)
        return TrainState(params, opt_state, bn_state, state.key, state.step + 1, state.w0), scalars, row

    return step


def make_draws(shape: CnnShape):
    """draws(key, first, count, n_data) -> {"idx": (K, B), "drop": (K, 2)}; step i's stream is fold_in(key, i)."""
    def draws(key, first, count, n_data):
        keys = jax.vmap(lambda i: jax.random.split(jax.random.fold_in(key, i), 2))(first + jnp.arange(count))
        idx = jax.vmap(lambda k: jax.random.randint(k, (shape.batch,), 0, n_data))(keys[:, 0])
        return {"idx": idx, "drop": keys[:, 1]}
    return draws


def make_chunk(act, optimizer, shape: CnnShape, steps: int, spec: Spec = GENERIC, with_stats=True, keep=None):
    """Up to K = `steps` steps; the traced `n` says how many run and `every` which are measured
    (see core.train.make_chunk, whose loop and output form this is).

    K = 1 (what families.cnn asks for) is one measured step in straight-line code, with no loop or
    conditional around it: XLA's CPU backend runs the backward convolutions inside a while loop or
    a conditional 30-50x slower than at the top level of a program (depth 20 x 16 channels, batch
    128: 2.4-2.7 s a step against 52-58 ms; the forward convolutions are not affected, so the
    held-out evaluation keeps its conditional). `keep`: the statistics to compute (None: all;
    core.train.kept)."""
    full = kept(make_step(act, optimizer, shape, spec, with_stats=with_stats), keep)
    plain = kept(make_step(act, optimizer, shape, spec, measure=False), keep)
    make = make_draws(shape)

    if steps == 1:
        def one_step(state, knobs, x_all, y_all, x_val, y_val, n, every):
            state = state._replace(opt_state=feed(state.opt_state, knobs))
            draw = jax.tree.map(lambda a: a[0], make(state.key, state.step, 1, x_all.shape[0]))
            state, scalars, row = full(state, knobs, x_all, y_all, x_val, y_val, draw)
            state = state._replace(opt_state=advance(state.opt_state, 1))
            return state, jax.tree.map(lambda a: a[None], {**scalars, **row})  # every step measured: a row a step

        return one_step

    def chunk(state, knobs, x_all, y_all, x_val, y_val, n, every):
        n, every = jnp.minimum(n, steps), jnp.maximum(every, 1)
        state = state._replace(opt_state=feed(state.opt_state, knobs))
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
            last = jnp.minimum((j + 1) * every, n) - 1
            s, per_step = jax.lax.fori_loop(j * every, last, train_only, (s, per_step))
            s, scalars, row = full(s, knobs, x_all, y_all, x_val, y_val, pick(last))
            return s, write(per_step, scalars, last), write(rows, pack(row), j)

        measured = (n + every - 1) // every
        state, per_step, rows = jax.lax.fori_loop(0, measured, group, (state, per_step, rows))
        state = state._replace(opt_state=advance(state.opt_state, n))
        return state, {**per_step, **unpack(rows), "rows": measured}

    return chunk
