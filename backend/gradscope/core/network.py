"""The MLP: input -> `depth` hidden Dense layers of `width` -> Dense output to the classes.

Parameters (a pytree of arrays; D = depth, W = width, C = classes):
  first:  w (n_in, W), b (W,)          the first hidden layer
  hidden: w (D-1, W, W), b (D-1, W)    the identical hidden layers, stacked for lax.scan
  out:    w (W, C), b (C,)
  bn:     gamma (D, W), beta (D, W)    BatchNorm scale and shift (used when batchnorm is on)
  prelu:  (D,)                         one learned negative slope per hidden layer

Forward takes `taps`, zero scalars (one per layer and site) that leave the values alone;
the gradient of the loss with respect to a tap is the norm of the gradient arriving at
its site (see `tap`): ||dL/du_l||, ||dL/dz_l||, ||dL/dh_l|| come out of the one backward
pass without materializing the (B, W) gradients.
"""

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from gradscope.core.activations import ACTIVATIONS, PRELU_INIT, RRELU_LOWER, RRELU_MEAN, RRELU_UPPER, SLOPED, derivative
from gradscope.core.initializers import init_kernel

BN_EPS = 1e-5
BN_MOMENTUM = 0.9
SATURATION_THRESHOLD = 0.05
# Fixed bins of the activation statistics (first and last bins open-ended, see `bin_counts`).
Z_EDGES = np.linspace(-6.0, 6.0, 49)  # z_l, the input of phi: 48 bins of 0.25
# h_l: 0.05-wide bins over [-1, 1] (sigmoid's and tanh's whole range, ReLU's start), then
# coarser ones out to +-4 for the unbounded activations and residual sums.
H_EDGES = np.concatenate([[-4.0, -3.0, -2.0, -1.5], np.linspace(-1.0, 1.0, 41), [1.5, 2.0, 3.0, 4.0]])
ACT_HIST_SAMPLE = 512  # entries of z_l and h_l per layer that the histograms count, at most


class Shape(NamedTuple):
    n_in: int
    depth: int
    width: int
    classes: int
    batch: int


def fixed(value):
    """A knob's value when it is baked into the executable as a Python constant (see
    `train.Spec`), None when it is traced (any value, set while training)."""
    return value if isinstance(value, (bool, int, float)) else None


class Knobs(NamedTuple):
    """Everything the user can change mid-run without a recompile: traced scalars."""

    leaky_alpha: jax.Array
    batchnorm: jax.Array  # bool
    residual: jax.Array  # bool
    clip_mode: jax.Array  # int32: optimizers.ClipMode.index (a Python int in a build for one mode)
    clip_value: jax.Array
    learning_rate: jax.Array
    l1: jax.Array
    l2: jax.Array
    dropout: jax.Array  # rate in [0, 1): inverted dropout on hidden activations, training only


def init_params(key, shape: Shape, init: str, gain: float):
    """Every kernel, the output layer's included, drawn with `init`; biases 0, gamma 1, beta 0."""
    n_in, d, w, c, _ = shape
    k_first, k_hidden, k_out = jax.random.split(key, 3)
    hidden_keys = jax.random.split(k_hidden, max(d - 1, 1))[: d - 1]
    hidden_w = jax.vmap(lambda k: init_kernel(init, k, (w, w), gain))(hidden_keys)
    return {
        "first": {"w": init_kernel(init, k_first, (n_in, w), gain), "b": jnp.zeros((w,))},
        "hidden": {"w": hidden_w.reshape(d - 1, w, w), "b": jnp.zeros((d - 1, w))},
        "out": {"w": init_kernel(init, k_out, (w, c), gain), "b": jnp.zeros((c,))},
        "bn": {"gamma": jnp.ones((d, w)), "beta": jnp.zeros((d, w))},
        "prelu": jnp.full((d,), PRELU_INIT),
    }


def init_bn_state(shape: Shape):
    return {"mean": jnp.zeros((shape.depth, shape.width)), "var": jnp.ones((shape.depth, shape.width))}


@jax.custom_vjp
def tap(x, probe):
    """Identity in x; the "gradient" it reports for `probe` (a zero scalar) is ||dL/dx||."""
    return x


def _tap_fwd(x, probe):
    return x, None


def _tap_bwd(_, g):
    return g, jnp.sqrt(jnp.sum(jnp.square(g)))


tap.defvjp(_tap_fwd, _tap_bwd)


def _tap(x, probe):
    """`tap`, or x itself where the step measures nothing (probe None)."""
    return x if probe is None else tap(x, probe)


def zero_taps(shape: Shape):
    """The norm probes: u (D,), z (D+1,) with the logits last, h (D,)."""
    d = shape.depth
    return {"u": jnp.zeros((d,)), "z": jnp.zeros((d + 1,)), "h": jnp.zeros((d,))}


def rrelu_slopes(key, depth, width):
    """RReLU's training slopes for one step: (D, 1, W) drawn from U(lower, upper)."""
    return jax.random.uniform(key, (depth, 1, width), minval=RRELU_LOWER, maxval=RRELU_UPPER)


def layer_slopes(act, params, knobs, drawn, depth, train):
    """The negative-side slope of each hidden layer: (D, 1, W) or broadcastable.
    `drawn`: this step's RReLU slopes (rrelu_slopes), used in training only."""
    if act == "leaky_relu":
        return jnp.broadcast_to(knobs.leaky_alpha, (depth, 1, 1))
    if act == "rrelu":
        return drawn if train else jnp.full((depth, 1, 1), RRELU_MEAN)
    if act == "prelu":
        return params["prelu"][:, None, None]
    return jnp.zeros((depth, 1, 1))


def mean_slopes(act, slopes):
    """The negative-side slope in use per hidden layer (D,); NaN where the activation has none."""
    if act not in SLOPED:
        return jnp.full((slopes.shape[0],), jnp.nan)
    return jnp.mean(slopes, axis=(1, 2))


def dropout_masks(knobs, key, shape: Shape, batch: int, on=None):
    """Inverted-dropout multipliers (D, B, W): 0 or 1/(1-rate); all ones when the rate is 0.
    None (no multiply at all) where the executable is built with dropout off (`on` False).

    Drawing D*B*W random bits costs about as much as a whole step on CPU, so a build for
    any rate draws them only while dropout is on (one cond per step)."""
    if on is False:
        return None
    keep = 1.0 - knobs.dropout
    dims = (shape.depth, batch, shape.width)
    draw = lambda: jax.random.bernoulli(key, keep, dims).astype(jnp.float32) / keep
    if on is True:
        return draw()
    return jax.lax.cond(knobs.dropout > 0, draw, lambda: jnp.ones(dims, jnp.float32))


def bin_counts(v, edges):
    """Counts (len(edges)-1,) int32 of the finite entries of v in the bins of `edges`;
    values below the first interior edge land in bin 0, above the last in the last bin.

    Equal bins (Z_EDGES, train.HIST_EDGES): the bin index by arithmetic. Others (H_EDGES): a
    branch-free binary search (unrolled: no loop kernels) for each entry's bin. Then one
    scatter-add. Counting by dense compares against every edge was slower: XLA materializes
    the (entries, edges) table, and fused its producer (a log10) into it once per edge."""
    flat = v.reshape(-1)
    width = np.diff(edges)
    if np.allclose(width, width[0]):
        # equal bins: the bin is arithmetic, one fused pass (the search compiled a gather,
        # compare and select per level; a value within rounding of an edge may land either side)
        idx = jnp.clip(jnp.floor((flat - edges[0]) / width[0]), 0, len(edges) - 2)
        idx = jnp.where(jnp.isfinite(idx), idx, 0).astype(jnp.int32)
    else:
        idx = jnp.searchsorted(jnp.asarray(edges[1:-1], flat.dtype), flat, side="right", method="scan_unrolled")
    return jnp.zeros((len(edges) - 1,), jnp.int32).at[idx].add(jnp.isfinite(flat).astype(jnp.int32))


def _sample_rows(a):
    """The first rows of each layer's (B, W) batch, at most ACT_HIST_SAMPLE entries per layer
    (the batch is random): (D, B, W) -> (D, rows, W)."""
    return a[:, : max(1, min(a.shape[1], ACT_HIST_SAMPLE // a.shape[2]))]


def activation_stats(act, z, h, slopes):
    """All hidden layers at once from stacked z, h (D, B, W) and slopes (D, 1, W|1): moments
    (D, 4) = mean and std of h_l, saturated fraction (|phi'(z)| < 0.05), dead-unit fraction;
    and bin counts of z (D, NZ) and h (D, NH). Outside the layer loop: a few kernels per
    step, not a few per layer (on CPU each kernel launch costs about a microsecond).

    Mean, std and dead units use the whole batch; the saturated fraction and the
    histograms the first rows of it (ACT_HIST_SAMPLE entries per layer; the batch is a
    random draw), since phi' and the bin search cost per entry."""
    flat = h.reshape(h.shape[0], -1)
    mean = flat.mean(axis=1)
    std = jnp.sqrt(jnp.maximum(jnp.mean(jnp.square(flat), axis=1) - jnp.square(mean), 0.0))
    dead = (jnp.max(jnp.abs(h), axis=1) == 0).mean(axis=1)
    zs, hs = _sample_rows(z), _sample_rows(h)
    saturated = (jnp.abs(derivative(act, zs, slopes)) < SATURATION_THRESHOLD).mean(axis=(1, 2))
    counts = lambda a, edges: jax.vmap(lambda v: bin_counts(v, edges))(a)
    return jnp.stack([mean, std, saturated, dead], axis=1), counts(zs, Z_EDGES), counts(hs, H_EDGES)


def _dense_bn(h, w, b, gamma, beta, mean_rs, var_rs, knobs, train, u_tap):
    """Dense then (if batchnorm) normalize; returns z and the batch moments.

    BatchNorm as one per-feature scale and shift, z = u * s + t, chosen per feature (W,)
    rather than per entry: with BatchNorm off (s = 1, t = 0) the (B, W) work is one fused
    multiply-add, where selecting between two (B, W) results cost 1.4x a plain layer."""
    a = _tap(h @ w + b, u_tap)  # (B, W): u_l
    mu = a.mean(axis=0)
    var = jnp.mean(jnp.square(a - mu), axis=0)  # biased variance, as BatchNorm uses in training
    if fixed(knobs.batchnorm) is False:  # built without BatchNorm: nothing to select
        return a, mu, var
    m, v = (mu, var) if train else (mean_rs, var_rs)
    scale = jnp.where(knobs.batchnorm, gamma * jax.lax.rsqrt(v + BN_EPS), 1.0)
    shift = jnp.where(knobs.batchnorm, beta - m * scale, 0.0)
    return a * scale + shift, mu, var


def forward(act, params, bn_state, x, taps, slopes, masks, knobs, *, train, stats=True, unroll=1):
    """x (B, n_in) -> logits (B, C), aux: batch moments mu, var (D, W) and (when `stats`)
    z_l and h_l stacked (D, B, W) for activation_stats. `masks`: (D, B, W) dropout
    multipliers or None (evaluation). `taps`: the norm probes (zero_taps), or None where
    the step measures nothing."""
    phi = ACTIVATIONS[act]
    bn = params["bn"]

    def layer(h_in, w, b, l, t, mask, residual):
        z, mu, var = _dense_bn(h_in, w, b, bn["gamma"][l], bn["beta"][l], bn_state["mean"][l], bn_state["var"][l], knobs, train, t[0])
        z = _tap(z, t[1])
        h = phi(z, slopes[l])
        if mask is not None:
            h = h * mask
        if residual and fixed(knobs.residual) is None:
            h = jnp.where(knobs.residual, h_in + h, h)
        elif residual and fixed(knobs.residual):
            h = h_in + h
        h = _tap(h, t[2])
        return h, ((mu, var, z, h) if stats else (mu, var))

    site = lambda sl: (None, None, None) if taps is None else (taps["u"][sl], taps["z"][:-1][sl], taps["h"][sl])
    first_mask = None if masks is None else masks[0]
    h, first_aux = layer(x, params["first"]["w"], params["first"]["b"], 0, site(0), first_mask, False)

    def body(h, xs):
        w, b, l, t, mask = xs
        return layer(h, w, b, l, t, mask, True)

    d = params["prelu"].shape[0]
    xs = (params["hidden"]["w"], params["hidden"]["b"], jnp.arange(1, d), site(slice(1, None)), None if masks is None else masks[1:])
    h, hidden_aux = jax.lax.scan(body, h, xs, unroll=max(1, min(unroll, d - 1)))
    logits = _tap(h @ params["out"]["w"] + params["out"]["b"], None if taps is None else taps["z"][-1])
    aux = jax.tree.map(lambda f, r: jnp.concatenate([f[None], r]), first_aux, hidden_aux)
    return logits, aux


def unit_axes(path):
    """AGC's units in these params (optimizers.adaptive_clip): the stacked hidden kernels per
    layer and output unit (their fan-in axis), the stacked biases and BatchNorm parameters per
    layer; the other leaves as optax's default has them."""
    top = getattr(path[0], "key", None)
    return 1 if top in ("hidden", "bn") else None


def kernels(tree):
    """The kernel-shaped leaves of a params-shaped tree, first to output: 3 arrays."""
    return tree["first"]["w"], tree["hidden"]["w"], tree["out"]["w"]


def biases(tree):
    """The bias leaves of a params-shaped tree, first to output: 3 arrays."""
    return tree["first"]["b"], tree["hidden"]["b"], tree["out"]["b"]
