"""Activation registry: one record per activation (`REGISTRY`, name -> Activation).

Each record holds phi(z, slope) (jax.nn's function where there is one), its derivative
phi'(z, slope) (the saturated fraction |phi'| < 0.05, and the RNN theory line's
sqrt(E[phi'(z)^2]), are read from it), and the initializer recommended with it (a name in
initializers.REGISTRY, with its init_gain; the page's banner recommends the same).

`slope` is the negative-side slope used by the leaky family (leaky_relu: the live
`leaky_alpha`; rrelu: a random slope in training, the mean slope at evaluation;
prelu: the learned per-layer parameter). Every other activation ignores it.
"""

from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

RRELU_LOWER, RRELU_UPPER = 1.0 / 8.0, 1.0 / 3.0
RRELU_MEAN = (RRELU_LOWER + RRELU_UPPER) / 2.0
PRELU_INIT = 0.25
# jax.nn.selu's constants (Klambauer et al. 2017)
SELU_ALPHA = 1.6732632423543772848170429916717
SELU_SCALE = 1.0507009873554804934193349852946
GELU_CUBIC = 0.044715  # jax.nn.gelu's tanh approximation (its default)


class Activation(NamedTuple):
    name: str
    fn: Callable  # phi(z, slope), elementwise
    derivative: Callable  # phi'(z, slope), elementwise (the shape of z broadcast with slope)
    init: str  # the recommended initializer: a name in initializers.REGISTRY
    gain: float = 1.0  # the init_gain that goes with `init`
    sloped: bool = False  # whether phi takes the negative-side slope


def _leaky(z, slope):
    return jnp.where(z >= 0, z, slope * z)


def _d_leaky(z, slope):
    return jnp.where(z >= 0, 1.0, slope * jnp.ones_like(z))


def _d_sigmoid(z, slope):
    s = jax.nn.sigmoid(z)
    return s * (1 - s)


def _d_tanh(z, slope):
    t = jnp.tanh(z)
    return (1 + t) * (1 - t)


def _d_elu(z, alpha=1.0):
    """jax.nn.elu's derivative: 1 for z > 0 (0 included on the other side), alpha e^z below."""
    return jnp.where(z > 0, 1.0, alpha * (jnp.expm1(jnp.where(z > 0, 0.0, z)) + 1))


def _d_gelu(z, slope):
    """The derivative of jax.nn.gelu's tanh approximation z/2 (1 + tanh(c (z + 0.044715 z^3)))."""
    c = np.sqrt(2 / np.pi).astype(z.dtype)
    t = jnp.tanh(c * (z + GELU_CUBIC * z**3))
    return 0.5 * (1 + t) + z * 0.5 * (1 + t) * (1 - t) * c * (1 + 3 * GELU_CUBIC * z**2)


def _d_swish(z, slope):
    s = jax.nn.sigmoid(z)
    return s * (1 + z * (1 - s))


_RECORDS = (
    Activation("linear", lambda z, s: z, lambda z, s: jnp.ones_like(z), "glorot_normal"),
    Activation("sigmoid", lambda z, s: jax.nn.sigmoid(z), _d_sigmoid, "glorot_normal"),
    Activation("tanh", lambda z, s: jnp.tanh(z), _d_tanh, "glorot_normal"),
    # jax.nn.relu's derivative at 0 is 0
    Activation("relu", lambda z, s: jax.nn.relu(z), lambda z, s: (z > 0).astype(z.dtype), "he_normal"),
    Activation("leaky_relu", _leaky, _d_leaky, "he_normal", sloped=True),
    Activation("rrelu", _leaky, _d_leaky, "he_normal", sloped=True),
    Activation("prelu", _leaky, _d_leaky, "he_normal", sloped=True),
    Activation("elu", lambda z, s: jax.nn.elu(z), lambda z, s: _d_elu(z), "glorot_normal"),
    Activation("selu", lambda z, s: jax.nn.selu(z), lambda z, s: SELU_SCALE * _d_elu(z, SELU_ALPHA), "lecun_normal"),
    Activation("gelu", lambda z, s: jax.nn.gelu(z), _d_gelu, "glorot_normal"),
    Activation("swish", lambda z, s: jax.nn.swish(z), _d_swish, "glorot_normal"),
)
REGISTRY: dict[str, Activation] = {a.name: a for a in _RECORDS}

# name -> phi(z, slope): the registry's functions, in its order (the config's choices)
ACTIVATIONS = {name: a.fn for name, a in REGISTRY.items()}
# Which activations take a negative-side slope, and where it comes from (see above).
SLOPED = tuple(name for name, a in REGISTRY.items() if a.sloped)


def derivative(name, z, slope):
    """phi'(z) elementwise, from the registry."""
    return REGISTRY[name].derivative(z, slope)
