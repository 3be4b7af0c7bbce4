"""The deep CNN: `depth` 3x3 conv layers, each conv -> BatchNorm (when on) -> activation, then
global average pooling and a Dense readout. NHWC images, HWIO kernels (lax.conv_general_dilated),
"SAME" padding.

The layers are unrolled in Python, not stacked under lax.scan: with stages their shapes differ,
and a scan over conv layers ran 60-80x slower on CPU (issue 19).

Stages (`stages` S, 1..3): layer l belongs to stage l*S//depth; a stage's first layer has stride 2
and doubles the channels (width * 2**stage), so the resolution halves.

Residual (a live knob): layer 0 is the stem; the layers after it pair up into basic blocks (a
last odd layer is a block of one conv). The stream s runs between layers as the conv outputs
before BatchNorm, so a block is pre-activation (He et al. 2016b, as Brock, De & Smith 2021 study):

    plain:     s_l = u_l                                   u_l = conv_l(h_{l-1}), h_l = phi(BN_l(s_l))
    residual:  s_l = P(s_start) + alpha_b u_l               at the last layer l of block b, else s_l = u_l

with s_start the stream entering the block, P the identity or a 1x1 projection (stride and channels
where the block changes them), alpha_b = 1, or with `skip_init` a learned scalar initialized to 0
(SkipInit, De & Smith 2020). In a plain net the whole stack is conv -> BN -> phi per layer.

Parameters (D = depth, L_l = plan(shape)[l]):
  conv: D dicts  w (3, 3, c_in, c_out), b (c_out,)
  bn:   D dicts  gamma (c_out,), beta (c_out,)
  proj: {"<block>": {"w": (1, 1, c_in, c_out)}} for the blocks that change the shape
  skip: (blocks,) SkipInit's gains (only with skip_init)
  out:  w (c_last, classes), b (classes,)
"""

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from gradscope.core.activations import ACTIVATIONS, derivative
from gradscope.core.initializers import init_kernel as _init_kernel
from gradscope.core.network import BN_EPS, SATURATION_THRESHOLD, fixed

KERNEL = 3
SAMPLE = 512  # entries of z per layer that the saturated fraction reads, at least one image
DIMENSIONS = ("NHWC", "HWIO", "NHWC")


class CnnShape(NamedTuple):
    """Everything that fixes array shapes (and so the compiled executable) for one run."""

    side: int  # input images are side x side
    channels: int  # input channels
    depth: int
    width: int  # channels of the first stage
    stages: int
    classes: int
    batch: int
    skip_init: bool


class Layer(NamedTuple):
    c_in: int
    c_out: int
    stride: int
    side: int  # of its output


class Block(NamedTuple):
    """A residual unit: its layers; the stem (layer 0) is a unit of its own with no skip."""

    first: int
    last: int
    index: int  # among the residual blocks (the stem is -1)
    stride: int  # of the whole block (P's stride)


def plan(shape: CnnShape) -> tuple[Layer, ...]:
    layers, side, c = [], shape.side, shape.channels
    stage_of = lambda l: l * shape.stages // shape.depth
    for l in range(shape.depth):
        stride = 2 if l > 0 and stage_of(l) != stage_of(l - 1) else 1
        side = -(-side // stride)
        layers.append(Layer(c, shape.width * 2 ** stage_of(l), stride, side))
        c = layers[-1].c_out
    return tuple(layers)


def blocks(shape: CnnShape) -> tuple[Block, ...]:
    """The stem, then the residual blocks of two layers (the last of one where depth - 1 is odd)."""
    layers = plan(shape)
    out = [Block(0, 0, -1, 1)]
    for i, first in enumerate(range(1, shape.depth, 2)):
        last = min(first + 1, shape.depth - 1)
        out.append(Block(first, last, i, int(np.prod([layers[l].stride for l in range(first, last + 1)]))))
    return tuple(out)


def projected(shape: CnnShape, block: Block) -> bool:
    layers = plan(shape)
    return block.stride != 1 or layers[block.first].c_in != layers[block.last].c_out


def max_channels(shape: CnnShape) -> int:
    return max(layer.c_out for layer in plan(shape))


def unit_ends(shape: CnnShape) -> np.ndarray:
    """(D,) bool: the layers whose output ends a unit of the residual net (the stem, each block's last)."""
    ends = np.zeros(shape.depth, bool)
    ends[[b.last for b in blocks(shape)]] = True
    return ends


# One small compiled program per kernel shape (a stack has three or four), shared by every layer
# of that shape: drawing all of a deep stack's kernels in one program compiled for seconds.
init_kernel = jax.jit(_init_kernel, static_argnums=(0, 2, 4))


def init_params(key, shape: CnnShape, init: str, gain: float):
    """Kernels drawn with `init` (fan_in = 3*3*c_in: jax's initializers read HWIO that way), biases 0, gamma 1, beta 0."""
    layers, units = plan(shape), blocks(shape)[1:]
    keys = jax.random.split(key, shape.depth + len(units) + 1)
    params = {
        "conv": [{"w": init_kernel(init, keys[l], (KERNEL, KERNEL, L.c_in, L.c_out), gain), "b": jnp.zeros((L.c_out,))}
                 for l, L in enumerate(layers)],
        "bn": [{"gamma": jnp.ones((L.c_out,)), "beta": jnp.zeros((L.c_out,))} for L in layers],
        "proj": {str(b.index): {"w": init_kernel(init, keys[shape.depth + b.index], (1, 1, layers[b.first].c_in, layers[b.last].c_out),
                                                 gain)} for b in units if projected(shape, b)},
        "out": {"w": init_kernel(init, keys[-1], (layers[-1].c_out, shape.classes), gain), "b": jnp.zeros((shape.classes,))},
    }
    if shape.skip_init:
        params["skip"] = jnp.zeros((len(units),))
    return params


def init_bn_state(shape: CnnShape):
    layers = plan(shape)
    return {"mean": [jnp.zeros((L.c_out,)) for L in layers], "var": [jnp.ones((L.c_out,)) for L in layers]}


def scaled_norm(a, axis=None):
    """||a|| over `axis`, computed as m ||a / m|| with m = max |a|: a gradient of 1e-20 per entry
    (30 sigmoid layers down) has a norm, where its squares would flush to zero in float32."""
    m = jnp.max(jnp.abs(a), axis=axis, keepdims=True)
    safe = jnp.where(m > 0, m, 1.0)
    out = jnp.squeeze(safe, axis) * jnp.sqrt(jnp.sum(jnp.square(a / safe), axis=axis))
    return jnp.where(jnp.squeeze(m, axis) > 0, out, jnp.squeeze(m, axis))  # 0 stays 0; NaN and Inf stay


def scaled_norms(arrays, axis=None) -> list:
    """[scaled_norm(a, axis) for a in arrays], with the arrays of one shape stacked and reduced
    together: one set of reductions per distinct shape instead of one per array. A deep stack's
    kernels come in three or four shapes, so its per-layer norms compile as a handful of operations
    rather than hundreds (each one a separately compiled kernel on XLA's CPU backend)."""
    arrays = list(arrays)
    groups: dict = {}
    for i, a in enumerate(arrays):
        groups.setdefault(a.shape, []).append(i)
    out = [None] * len(arrays)
    for shape, members in groups.items():
        if len(members) == 1:
            out[members[0]] = scaled_norm(arrays[members[0]], axis)
            continue
        dims = range(len(shape)) if axis is None else (axis if isinstance(axis, tuple) else (axis,))
        norms = scaled_norm(jnp.stack([arrays[i] for i in members]), tuple(d + 1 for d in dims))
        for j, i in enumerate(members):
            out[i] = norms[j]
    return out


@jax.custom_vjp
def tap(x, probe):
    """Identity in x; the "gradient" it reports for `probe` (a zero scalar) is ||dL/dx|| (scaled_norm)."""
    return x


tap.defvjp(lambda x, probe: (x, None), lambda _, g: (g, scaled_norm(g)))


def conv(h, w, stride):
    """(B, H, W, c_in) * (k, k, c_in, c_out) -> (B, ceil(H/stride), ceil(W/stride), c_out)."""
    return jax.lax.conv_general_dilated(h, w, (stride, stride), "SAME", dimension_numbers=DIMENSIONS)


def moments(a):
    """Per-channel mean and (biased) variance over batch and space: (C,), (C,)."""
    mu = a.mean(axis=(0, 1, 2))
    return mu, jnp.mean(jnp.square(a - mu), axis=(0, 1, 2))


def _normalize(s, bn, mean_rs, var_rs, knobs, train, mu, var):
    """BatchNorm2d as one per-channel scale and shift (identity where BatchNorm is off)."""
    if fixed(knobs.batchnorm) is False:
        return s
    m, v = (mu, var) if train else (mean_rs, var_rs)
    scale = jnp.where(knobs.batchnorm, bn["gamma"] * jax.lax.rsqrt(v + BN_EPS), 1.0)
    shift = jnp.where(knobs.batchnorm, bn["beta"] - m * scale, 0.0)
    return s * scale + shift


def _residual(knobs, with_skip, without):
    on = fixed(knobs.residual)
    if on is None:
        return jnp.where(knobs.residual, with_skip, without)
    return with_skip if on else without


def _layer_stats(act, z, h, slope):
    """act_mean, act_std, saturated fraction (|phi'(z)| < 0.05 over the first images), dead channels."""
    mean = h.mean()
    std = jnp.sqrt(jnp.maximum(jnp.mean(jnp.square(h)) - jnp.square(mean), 0.0))
    zs = z[: max(1, SAMPLE // int(np.prod(z.shape[1:])))]
    saturated = (jnp.abs(derivative(act, zs, slope)) < SATURATION_THRESHOLD).mean()
    dead = (jnp.max(jnp.abs(h), axis=(0, 1, 2)) == 0).mean()
    return jnp.stack([mean, std, saturated, dead])


def forward(act, params, bn_state, x, knobs, shape: CnnShape, *, train, taps=None, masks=None, measure=False):
    """x (B, side, side, C) -> logits (B, classes), aux.

    aux["mu"], aux["var"]: the per-layer channel moments of s_l (BatchNorm's batch statistics; None
    where a build without BatchNorm measures nothing). With `measure`: aux["layer"] (D, 4) (see
    _layer_stats) and aux["spp"] (D, 3): per layer the average squared channel mean of s_l, its
    average channel variance and the average channel variance of u_l, the residual branch at its end.
    `taps` (zero_taps): zero probes whose gradients are the norms of the gradients at their sites:
    u (D,) ||dL/du_l||, the conv outputs; z (D+1,) ||dL/dz_l||, the activations' inputs, then the
    logits'; h (D,) ||dL/dh_l||, the activations' outputs (after dropout).
    `masks`: per layer (B, 1, 1, c_out) channel-dropout multipliers, or None."""
    phi, layers, slope = ACTIVATIONS[act], plan(shape), knobs.leaky_alpha
    ends = {b.last: b for b in blocks(shape)[1:]}
    starts = {b.first for b in blocks(shape)[1:]}
    need_moments = measure or (train and fixed(knobs.batchnorm) is not False)
    h, s, s_start = x, None, None
    mus, vars_, stats, spp = [], [], [], []
    for l, L in enumerate(layers):
        if l in starts:
            s_start = s
        u = conv(h, params["conv"][l]["w"], L.stride) + params["conv"][l]["b"]
        if taps is not None:
            u = tap(u, taps["u"][l])
        s = u
        if l in ends and fixed(knobs.residual) is not False:
            b = ends[l]
            skip = s_start if not projected(shape, b) else conv(s_start, params["proj"][str(b.index)]["w"], b.stride)
            branch = u * params["skip"][b.index] if shape.skip_init else u
            s = _residual(knobs, skip + branch, u)
        mu, var = moments(s) if need_moments else (None, None)
        mus.append(mu)
        vars_.append(var)
        z = _normalize(s, params["bn"][l], bn_state["mean"][l], bn_state["var"][l], knobs, train, mu, var)
        if taps is not None:
            z = tap(z, taps["z"][l])
        h = phi(z, slope)
        if measure:
            stats.append(_layer_stats(act, z, h, slope))
            u_var = moments(u)[1].mean() if s is not u else var.mean()
            spp.append(jnp.stack([jnp.mean(jnp.square(mu)), var.mean(), u_var]))
        if masks is not None:
            h = h * masks[l]
        if taps is not None:
            h = tap(h, taps["h"][l])
    logits = h.mean(axis=(1, 2)) @ params["out"]["w"] + params["out"]["b"]
    if taps is not None:
        logits = tap(logits, taps["z"][-1])
    aux = {"mu": mus, "var": vars_}
    if measure:
        # a residual net's units end at the stem and the blocks' last layers: NaN between
        inner = jnp.asarray(~unit_ends(shape))[:, None]
        spp = jnp.stack(spp)
        aux["layer"], aux["spp"] = jnp.stack(stats), jnp.where(inner & _residual(knobs, True, False), jnp.nan, spp)
    return logits, aux


def zero_taps(shape: CnnShape):
    d = shape.depth
    return {"u": jnp.zeros((d,)), "z": jnp.zeros((d + 1,)), "h": jnp.zeros((d,))}


def dropout_masks(knobs, key, shape: CnnShape, on=None):
    """Channel dropout (Dropout2d): per layer (B, 1, 1, c_out) multipliers 0 or 1/(1-rate), all ones
    at rate 0; None where the executable is built with dropout off (`on` False)."""
    if on is False:
        return None
    keep = 1.0 - knobs.dropout
    dims = [(shape.batch, 1, 1, L.c_out) for L in plan(shape)]
    draw = lambda: [jax.random.bernoulli(jax.random.fold_in(key, l), keep, d).astype(jnp.float32) / keep for l, d in enumerate(dims)]
    if on is True:
        return draw()
    return jax.lax.cond(knobs.dropout > 0, draw, lambda: [jnp.ones(d, jnp.float32) for d in dims])


def kernels(tree):
    """The kernel leaves of a params-shaped tree, per layer: D conv kernels, then the readout's (D+1 arrays)."""
    return [c["w"] for c in tree["conv"]] + [tree["out"]["w"]]


def biases(tree):
    return [c["b"] for c in tree["conv"]] + [tree["out"]["b"]]


def penalized(tree):
    """The arrays L1 and L2 penalize: every kernel, the projections' included (not biases, BatchNorm, gains)."""
    return kernels(tree) + [p["w"] for p in tree["proj"].values()]
