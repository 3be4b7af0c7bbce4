"""The contracts of core's registries: every activation's derivative is its function's
gradient, every recommended initializer exists, and the names other modules import
(ACTIVATIONS, SLOPED, INITIALIZERS) are the registries' own."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gradscope.core.activations import ACTIVATIONS, REGISTRY, SLOPED, derivative
from gradscope.core.initializers import INITIALIZERS
from gradscope.core.initializers import REGISTRY as INIT_REGISTRY

# float32: a derivative of O(1) terms (gelu's near its minimum a difference of two) agrees to rounding, not bitwise
# kinks (0) included: each derivative must agree with jax's choice there (relu'(0) = 0, leaky'(0) = 1)
Z = np.concatenate([np.linspace(-6.0, 6.0, 97), [0.0, -1e-3, 1e-3, 1e-6, -1e-6]]).astype(np.float32)
SLOPES = (0.0, 0.02, 0.23, 1.0)


@pytest.mark.parametrize("name", list(REGISTRY))
def test_derivative_is_the_gradient_of_the_function(name):
    record = REGISTRY[name]
    for slope in SLOPES if record.sloped else (0.0,):
        s = np.float32(slope)
        want = jax.vmap(jax.grad(record.fn), in_axes=(0, None))(jnp.asarray(Z), s)
        got = record.derivative(jnp.asarray(Z), s)
        assert got.shape == Z.shape and got.dtype == jnp.float32
        np.testing.assert_allclose(np.asarray(got), np.asarray(want), rtol=1e-5, atol=1e-6, err_msg=f"{name}, slope {slope}")


@pytest.mark.parametrize("name", list(REGISTRY))
def test_derivative_broadcasts_per_unit_slopes_like_the_layers(name):
    """Stacked (D, B, W) pre-activations with (D, 1, W) slopes, as activation_stats passes them."""
    z = jax.random.normal(jax.random.PRNGKey(0), (3, 4, 5)) * 3
    slopes = jax.random.uniform(jax.random.PRNGKey(1), (3, 1, 5), minval=0.1, maxval=0.3)
    got = derivative(name, z, slopes)
    want = jax.vmap(jax.grad(lambda v, s: REGISTRY[name].fn(v, s)))(z.reshape(-1), jnp.broadcast_to(slopes, z.shape).reshape(-1))
    assert got.shape == z.shape
    np.testing.assert_allclose(np.asarray(got).reshape(-1), np.asarray(want), rtol=1e-5, atol=1e-6)


def test_records_and_their_names():
    for name, record in REGISTRY.items():
        assert record.name == name
        assert record.init in INIT_REGISTRY, f"{name} recommends an initializer that does not exist: {record.init}"
        assert record.gain > 0
        assert ACTIVATIONS[name] is record.fn
    assert list(ACTIVATIONS) == list(REGISTRY)
    assert SLOPED == ("leaky_relu", "rrelu", "prelu")
    for name, record in INIT_REGISTRY.items():
        assert record.name == name
        assert record.variance(100, 50) > 0
    assert INITIALIZERS == tuple(INIT_REGISTRY)


def test_recommendations_are_the_literatures():
    """He for the ReLU family, LeCun for SELU (Klambauer et al. 2017), Glorot otherwise: the
    page's banner recommends the same."""
    assert {n: r.init for n, r in REGISTRY.items() if r.init != "glorot_normal"} == {
        "relu": "he_normal", "leaky_relu": "he_normal", "rrelu": "he_normal", "prelu": "he_normal", "selu": "lecun_normal"}
