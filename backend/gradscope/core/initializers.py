"""Initializer registry with `jax.nn.initializers` meaning, kernels laid out (fan_in, fan_out).

`standard_normal` is N(0, 1) (the failing baseline of the literature), not jax's
`normal()` default of stddev 0.01. `gain` multiplies the standard deviation.
"""

import jax.numpy as jnp
from jax.nn import initializers as ji

_FACTORIES = {
    "standard_normal": lambda: ji.normal(stddev=1.0),
    "glorot_normal": ji.glorot_normal,
    "glorot_uniform": ji.glorot_uniform,
    "lecun_normal": ji.lecun_normal,
    "lecun_uniform": ji.lecun_uniform,
    "he_normal": ji.he_normal,
    "he_uniform": ji.he_uniform,
    "orthogonal": ji.orthogonal,
}
INITIALIZERS = tuple(_FACTORIES)


def init_kernel(name, key, shape, gain=1.0, dtype=jnp.float32):
    """Draw a (fan_in, fan_out) kernel; the standard deviation is scaled by `gain`."""
    return _FACTORIES[name]()(key, shape, dtype) * gain


def kernel_variance(name, fan_in, fan_out, gain=1.0):
    """The variance each initializer aims for (orthogonal: 1/fan_out per entry in expectation)."""
    base = {
        "standard_normal": 1.0,
        "glorot_normal": 2.0 / (fan_in + fan_out),
        "glorot_uniform": 2.0 / (fan_in + fan_out),
        "lecun_normal": 1.0 / fan_in,
        "lecun_uniform": 1.0 / fan_in,
        "he_normal": 2.0 / fan_in,
        "he_uniform": 2.0 / fan_in,
        "orthogonal": 1.0 / max(fan_in, fan_out),
    }[name]
    return base * gain**2
