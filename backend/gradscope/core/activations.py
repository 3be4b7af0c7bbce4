"""Activation registry: name -> phi(z, slope), elementwise.

`slope` is the negative-side slope used by the leaky family (leaky_relu: the live
`leaky_alpha`; rrelu: a random slope in training, the mean slope at evaluation;
prelu: the learned per-layer parameter). Every other activation ignores it.
"""

import jax
import jax.numpy as jnp

RRELU_LOWER, RRELU_UPPER = 1.0 / 8.0, 1.0 / 3.0
RRELU_MEAN = (RRELU_LOWER + RRELU_UPPER) / 2.0
PRELU_INIT = 0.25


def _leaky(z, slope):
    return jnp.where(z >= 0, z, slope * z)


ACTIVATIONS = {
    "linear": lambda z, s: z,
    "sigmoid": lambda z, s: jax.nn.sigmoid(z),
    "tanh": lambda z, s: jnp.tanh(z),
    "relu": lambda z, s: jax.nn.relu(z),
    "leaky_relu": _leaky,
    "rrelu": _leaky,
    "prelu": _leaky,
    "elu": lambda z, s: jax.nn.elu(z),
    "selu": lambda z, s: jax.nn.selu(z),
    "gelu": lambda z, s: jax.nn.gelu(z),
    "swish": lambda z, s: jax.nn.swish(z),
}

# Which activations take a negative-side slope, and where it comes from.
SLOPED = ("leaky_relu", "rrelu", "prelu")


def derivative(name, z, slope):
    """phi'(z) elementwise, by forward-mode AD of the registry function."""
    fn = ACTIVATIONS[name]
    return jax.jvp(lambda x: fn(x, slope), (z,), (jnp.ones_like(z),))[1]
