"""Initializer registry (`REGISTRY`, name -> Initializer) with `jax.nn.initializers`
meaning, kernels laid out (fan_in, fan_out).

`standard_normal` is N(0, 1) (the failing baseline of the literature), not jax's
`normal()` default of stddev 0.01. `gain` multiplies the standard deviation.
"""

from collections.abc import Callable
from typing import NamedTuple

import jax.numpy as jnp
from jax.nn import initializers as ji


class Initializer(NamedTuple):
    name: str
    factory: Callable  # () -> a jax.nn.initializers initializer: (key, shape, dtype) -> array
    variance: Callable[[int, int], float]  # (fan_in, fan_out) -> the variance it aims for, at gain 1


_RECORDS = (
    Initializer("standard_normal", lambda: ji.normal(stddev=1.0), lambda fan_in, fan_out: 1.0),
    Initializer("glorot_normal", ji.glorot_normal, lambda fan_in, fan_out: 2.0 / (fan_in + fan_out)),
    Initializer("glorot_uniform", ji.glorot_uniform, lambda fan_in, fan_out: 2.0 / (fan_in + fan_out)),
    Initializer("lecun_normal", ji.lecun_normal, lambda fan_in, fan_out: 1.0 / fan_in),
    Initializer("lecun_uniform", ji.lecun_uniform, lambda fan_in, fan_out: 1.0 / fan_in),
    Initializer("he_normal", ji.he_normal, lambda fan_in, fan_out: 2.0 / fan_in),
    Initializer("he_uniform", ji.he_uniform, lambda fan_in, fan_out: 2.0 / fan_in),
    # 1/fan_out per entry in expectation: the larger fan's rows or columns are orthonormal
    Initializer("orthogonal", ji.orthogonal, lambda fan_in, fan_out: 1.0 / max(fan_in, fan_out)),
)
REGISTRY: dict[str, Initializer] = {i.name: i for i in _RECORDS}
INITIALIZERS = tuple(REGISTRY)  # the names, in the registry's order (the config's choices)


def init_kernel(name, key, shape, gain=1.0, dtype=jnp.float32):
    """Draw a (fan_in, fan_out) kernel; the standard deviation is scaled by `gain`."""
    return REGISTRY[name].factory()(key, shape, dtype) * gain


def kernel_variance(name, fan_in, fan_out, gain=1.0):
    """The variance each initializer aims for."""
    return REGISTRY[name].variance(fan_in, fan_out) * gain**2
