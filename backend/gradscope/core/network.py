"""The MLP: input -> `depth` hidden Dense layers of `width` -> Dense output to the classes.

Parameters (a pytree of arrays; D = depth, W = width, C = classes):
  first:  w (n_in, W), b (W,)          the first hidden layer
  hidden: w (D-1, W, W), b (D-1, W)    the identical hidden layers, stacked for lax.scan
  out:    w (W, C), b (C,)
  bn:     gamma (D, W), beta (D, W)    BatchNorm scale and shift (used when batchnorm is on)
  prelu:  (D,)                         one learned negative slope per hidden layer

Forward takes `eps`, zero arrays added to every activation input z_l: the gradient of
the loss with respect to them is the backpropagated delta dL/dz_l, for free.
"""

from typing import NamedTuple

import jax
import jax.numpy as jnp

from gradscope.core.activations import ACTIVATIONS, PRELU_INIT, RRELU_LOWER, RRELU_MEAN, RRELU_UPPER, derivative
from gradscope.core.initializers import init_kernel

BN_EPS = 1e-5
BN_MOMENTUM = 0.9
SATURATION_THRESHOLD = 0.05


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


def zero_eps(shape: Shape, batch: int):
    """The delta probes: (B, W) for the first layer, (D-1, B, W) hidden, (B, C) logits."""
    n_in, d, w, c, _ = shape
    return {"first": jnp.zeros((batch, w)), "hidden": jnp.zeros((d - 1, batch, w)), "out": jnp.zeros((batch, c))}


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


def _dense_bn(h, w, b, gamma, beta, mean_rs, var_rs, knobs, train):
    """Dense then (if batchnorm) normalize; returns z and the batch moments."""
    a = h @ w + b  # (B, W)
    mu, var = a.mean(axis=0), a.var(axis=0)  # biased variance, as BatchNorm uses in training
    m, v = (mu, var) if train else (mean_rs, var_rs)
    normed = gamma * (a - m) * jax.lax.rsqrt(v + BN_EPS) + beta
    return jnp.where(knobs.batchnorm, normed, a), mu, var


def _layer_stats(act, z, h, slope):
    """Per hidden layer: mean and std of h_l, saturated fraction, dead-unit fraction."""
    d = derivative(act, z, slope)
    dead = jnp.all(h == 0, axis=0).mean()
    return jnp.stack([h.mean(), h.std(), (jnp.abs(d) < SATURATION_THRESHOLD).mean(), dead])


def forward(act, params, bn_state, x, eps, slopes, knobs, *, train, unroll=1):
    """x (B, n_in) -> logits (B, C), aux: per-layer stats (D, 4), batch moments (D, W) x2."""
    phi = ACTIVATIONS[act]
    bn = params["bn"]

    def layer(h_in, w, b, l, e, residual):
        z, mu, var = _dense_bn(h_in, w, b, bn["gamma"][l], bn["beta"][l], bn_state["mean"][l], bn_state["var"][l], knobs, train)
        z = z + e
        h = phi(z, slopes[l])
        if residual:
            h = jnp.where(knobs.residual, h_in + h, h)
        return h, (_layer_stats(act, z, h, slopes[l]), mu, var)

    h, first_aux = layer(x, params["first"]["w"], params["first"]["b"], 0, eps["first"], False)

    def body(h, xs):
        w, b, l, e = xs
        return layer(h, w, b, l, e, True)

    d = params["prelu"].shape[0]
    xs = (params["hidden"]["w"], params["hidden"]["b"], jnp.arange(1, d), eps["hidden"])
    h, hidden_aux = jax.lax.scan(body, h, xs, unroll=max(1, min(unroll, d - 1)))
    logits = h @ params["out"]["w"] + params["out"]["b"] + eps["out"]
    aux = jax.tree.map(lambda f, r: jnp.concatenate([f[None], r]), first_aux, hidden_aux)
    return logits, aux


def kernels(tree):
    """The kernel-shaped leaves of a params-shaped tree, first to output: 3 arrays."""
    return tree["first"]["w"], tree["hidden"]["w"], tree["out"]["w"]
