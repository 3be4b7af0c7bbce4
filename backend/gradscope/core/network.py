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


class Knobs(NamedTuple):
    """Everything the user can change mid-run without a recompile: traced scalars."""

    leaky_alpha: jax.Array
    batchnorm: jax.Array  # bool
    residual: jax.Array  # bool
    clip_mode: jax.Array  # int: 0 none, 1 value, 2 norm
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


def zero_taps(shape: Shape):
    """The norm probes: u (D,), z (D+1,) with the logits last, h (D,)."""
    d = shape.depth
    return {"u": jnp.zeros((d,)), "z": jnp.zeros((d + 1,)), "h": jnp.zeros((d,))}


def layer_slopes(act, params, knobs, key, depth, train):
    """The negative-side slope of each hidden layer: (D, 1, W) or broadcastable."""
    if act == "leaky_relu":
        return jnp.broadcast_to(knobs.leaky_alpha, (depth, 1, 1))
    if act == "rrelu":
        if not train:
            return jnp.full((depth, 1, 1), RRELU_MEAN)
        width = params["first"]["w"].shape[1]
        return jax.random.uniform(key, (depth, 1, width), minval=RRELU_LOWER, maxval=RRELU_UPPER)
    if act == "prelu":
        return params["prelu"][:, None, None]
    return jnp.zeros((depth, 1, 1))


def mean_slopes(act, slopes):
    """The negative-side slope in use per hidden layer (D,); NaN where the activation has none."""
    if act not in SLOPED:
        return jnp.full((slopes.shape[0],), jnp.nan)
    return jnp.mean(slopes, axis=(1, 2))


def dropout_masks(knobs, key, shape: Shape, batch: int):
    """Inverted-dropout multipliers (D, B, W): 0 or 1/(1-rate); all ones when the rate is 0.

    Drawing D*B*W random bits costs about as much as a whole step on CPU, so they are
    drawn only while dropout is on (one cond per step)."""
    keep = 1.0 - knobs.dropout
    dims = (shape.depth, batch, shape.width)
    draw = lambda: jax.random.bernoulli(key, keep, dims).astype(jnp.float32) / keep
    return jax.lax.cond(knobs.dropout > 0, draw, lambda: jnp.ones(dims, jnp.float32))


def bin_counts(v, edges):
    """Counts (len(edges)-1,) int32 of the finite entries of v in the bins of `edges`;
    values below the first interior edge land in bin 0, above the last in the last bin.

    Dense compares against the interior edges (no scatter: that runs serially on CPU)."""
    flat = v.reshape(-1)
    fin = jnp.isfinite(flat)
    above = jnp.sum(fin[:, None] & (flat[:, None] >= jnp.asarray(edges[1:-1], flat.dtype)), axis=0, dtype=jnp.int32)
    total = jnp.sum(fin, dtype=jnp.int32)
    ge = jnp.concatenate([total[None], above, jnp.zeros((1,), jnp.int32)])
    return ge[:-1] - ge[1:]


def _sample_rows(a):
    """The first rows of a (B, W) batch, at most ACT_HIST_SAMPLE entries (the batch is random)."""
    return a[: max(1, min(a.shape[0], ACT_HIST_SAMPLE // a.shape[1]))]


def _layer_stats(act, z, h, slope):
    """Per hidden layer: mean and std of h_l, saturated fraction, dead-unit fraction; z, h bin counts."""
    d = derivative(act, z, slope)
    dead = jnp.all(h == 0, axis=0).mean()
    moments = jnp.stack([h.mean(), h.std(), (jnp.abs(d) < SATURATION_THRESHOLD).mean(), dead])
    return moments, bin_counts(_sample_rows(z), Z_EDGES), bin_counts(_sample_rows(h), H_EDGES)


def _dense_bn(h, w, b, gamma, beta, mean_rs, var_rs, knobs, train, u_tap):
    """Dense then (if batchnorm) normalize; returns z and the batch moments."""
    a = tap(h @ w + b, u_tap)  # (B, W): u_l
    mu, var = a.mean(axis=0), a.var(axis=0)  # biased variance, as BatchNorm uses in training
    m, v = (mu, var) if train else (mean_rs, var_rs)
    normed = gamma * (a - m) * jax.lax.rsqrt(v + BN_EPS) + beta
    return jnp.where(knobs.batchnorm, normed, a), mu, var


def forward(act, params, bn_state, x, taps, slopes, masks, knobs, *, train, stats=True, unroll=1):
    """x (B, n_in) -> logits (B, C), aux (when `stats`): per-layer moments (D, 4), batch
    moments (D, W) x2, z and h bin counts (D, NZ), (D, NH). `masks`: (D, B, W) dropout
    multipliers or None (evaluation)."""
    phi = ACTIVATIONS[act]
    bn = params["bn"]

    def layer(h_in, w, b, l, t, mask, residual):
        z, mu, var = _dense_bn(h_in, w, b, bn["gamma"][l], bn["beta"][l], bn_state["mean"][l], bn_state["var"][l], knobs, train, t[0])
        z = tap(z, t[1])
        h = phi(z, slopes[l])
        if mask is not None:
            h = h * mask
        if residual:
            h = jnp.where(knobs.residual, h_in + h, h)
        h = tap(h, t[2])
        if not stats:
            return h, (mu, var)
        return h, (*_layer_stats(act, z, h, slopes[l]), mu, var)

    site = lambda sl: (taps["u"][sl], taps["z"][:-1][sl], taps["h"][sl])
    first_mask = None if masks is None else masks[0]
    h, first_aux = layer(x, params["first"]["w"], params["first"]["b"], 0, site(0), first_mask, False)

    def body(h, xs):
        w, b, l, t, mask = xs
        return layer(h, w, b, l, t, mask, True)

    d = params["prelu"].shape[0]
    xs = (params["hidden"]["w"], params["hidden"]["b"], jnp.arange(1, d), site(slice(1, None)), None if masks is None else masks[1:])
    h, hidden_aux = jax.lax.scan(body, h, xs, unroll=max(1, min(unroll, d - 1)))
    logits = tap(h @ params["out"]["w"] + params["out"]["b"], taps["z"][-1])
    aux = jax.tree.map(lambda f, r: jnp.concatenate([f[None], r]), first_aux, hidden_aux)
    return logits, aux


def kernels(tree):
    """The kernel-shaped leaves of a params-shaped tree, first to output: 3 arrays."""
    return tree["first"]["w"], tree["hidden"]["w"], tree["out"]["w"]


def biases(tree):
    """The bias leaves of a params-shaped tree, first to output: 3 arrays."""
    return tree["first"]["b"], tree["hidden"]["b"], tree["out"]["b"]
