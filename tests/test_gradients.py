"""Per-layer gradients and gradient norms (the taps) against an independent numpy backprop,
itself checked by finite differences."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gradscope.core.activations import ACTIVATIONS
from gradscope.core.network import Knobs, Shape, init_params, layer_slopes, rrelu_slopes, zero_taps
from gradscope.core.train import make_loss
from reference import forward_backward, loss_only, unpack

SHAPE = Shape(n_in=3, depth=3, width=5, classes=3, batch=6)


def knobs(**kw):
    base = dict(leaky_alpha=0.02, batchnorm=False, residual=False, clip_mode=0, clip_value=1.0, learning_rate=0.1,
                l1=0.0, l2=0.0, dropout=0.0)
    base.update(kw)
    return Knobs(**{k: np.asarray(v, np.float32 if isinstance(v, float) else None) for k, v in base.items()})


def setup(act, seed=0):
    key = jax.random.PRNGKey(seed)
    params = init_params(key, SHAPE, "glorot_normal", 1.5)
    # Non-trivial BatchNorm parameters and PReLU slopes, so their paths are exercised.
    k1, k2, k3, k4 = jax.random.split(jax.random.PRNGKey(seed + 1), 4)
    params["bn"]["gamma"] = 1 + 0.3 * jax.random.normal(k1, params["bn"]["gamma"].shape)
    params["bn"]["beta"] = 0.2 * jax.random.normal(k2, params["bn"]["beta"].shape)
    params["prelu"] = jnp.array([0.25, 0.1, 0.4])
    x = jax.random.normal(k3, (SHAPE.batch, SHAPE.n_in))
    y = jax.random.randint(k4, (SHAPE.batch,), 0, SHAPE.classes)
    return params, x, y


def drawn_slopes(key):
    """One step's RReLU slopes, as the chunk draws them."""
    return rrelu_slopes(key, SHAPE.depth, SHAPE.width)


def jax_grads(act, params, x, y, kn, key):
    loss_fn = make_loss(act, SHAPE, unroll=1)
    bn_state = {"mean": jnp.zeros((3, 5)), "var": jnp.ones((3, 5))}
    grad = jax.grad(loss_fn, argnums=(0, 1), has_aux=True)  # eager: tiny arrays, no compile per case
    with jax.disable_jit():
        (g, norms), aux = grad(params, zero_taps(SHAPE), bn_state, x, y, kn, drawn_slopes(key), None)
    return g, norms, aux


def numpy_slopes(act, params, kn, key):
    s = layer_slopes(act, params, kn, drawn_slopes(key), SHAPE.depth, train=True)
    return np.broadcast_to(np.asarray(s, np.float64).reshape(SHAPE.depth, -1), (SHAPE.depth, SHAPE.width))


VARIANTS = [dict(), dict(batchnorm=True), dict(residual=True), dict(batchnorm=True, residual=True)]


@pytest.mark.parametrize("variant", VARIANTS, ids=["plain", "bn", "residual", "bn+residual"])
@pytest.mark.parametrize("act", list(ACTIVATIONS))
def test_gradients_match_numpy_backprop(act, variant):
    params, x, y = setup(act)
    kn, key = knobs(**variant), jax.random.PRNGKey(7)
    g, norms, aux = jax_grads(act, params, x, y, kn, key)
    ws, bs, gamma, beta = unpack(params)
    slopes = numpy_slopes(act, params, kn, key)
    loss, dws, dbs, ref_deltas, dgamma, dbeta, dslope, dhs, dus = forward_backward(
        act, ws, bs, gamma, beta, np.asarray(x, np.float64), np.asarray(y), slopes, **variant)

    assert float(aux[0]) == pytest.approx(loss, rel=1e-5)
    ours_w = [g["first"]["w"], *g["hidden"]["w"], g["out"]["w"]]
    ours_b = [g["first"]["b"], *g["hidden"]["b"], g["out"]["b"]]
    for l in range(SHAPE.depth + 1):
        np.testing.assert_allclose(ours_w[l], dws[l], rtol=2e-4, atol=1e-6, err_msg=f"dL/dW layer {l}")
        np.testing.assert_allclose(ours_b[l], dbs[l], rtol=2e-4, atol=1e-6, err_msg=f"dL/db layer {l}")
    norm = lambda arrays: [np.linalg.norm(a) for a in arrays]
    np.testing.assert_allclose(norms["z"], norm(ref_deltas), rtol=2e-4, atol=1e-7, err_msg="||dL/dz||")
    np.testing.assert_allclose(norms["u"], norm(dus), rtol=2e-4, atol=1e-7, err_msg="||dL/du||")
    np.testing.assert_allclose(norms["h"], norm(dhs), rtol=2e-4, atol=1e-7, err_msg="||dL/dh||")
    if variant.get("batchnorm"):
        np.testing.assert_allclose(g["bn"]["gamma"], dgamma, rtol=2e-4, atol=1e-6)
        np.testing.assert_allclose(g["bn"]["beta"], dbeta, rtol=2e-4, atol=1e-6)
    if act == "prelu":
        np.testing.assert_allclose(g["prelu"], dslope, rtol=2e-4, atol=1e-6)


@pytest.mark.parametrize("variant", [dict(), dict(batchnorm=True, residual=True)], ids=["plain", "bn+residual"])
@pytest.mark.parametrize("act", ["sigmoid", "tanh", "relu", "leaky_relu", "elu", "selu", "gelu", "swish"])
def test_numpy_reference_matches_finite_differences(act, variant):
    """The oracle checks itself: central differences in float64 on every kernel."""
    params, x, y = setup(act, seed=3)
    ws, bs, gamma, beta = unpack(params)
    x, y = np.asarray(x, np.float64), np.asarray(y)
    slopes = np.full((SHAPE.depth, SHAPE.width), 0.02)
    _, dws, *_ = forward_backward(act, ws, bs, gamma, beta, x, y, slopes, **variant)
    rng, h = np.random.default_rng(0), 1e-6
    for l, w in enumerate(ws):
        for _ in range(4):
            i, j = rng.integers(w.shape[0]), rng.integers(w.shape[1])
            plus, minus = [v.copy() for v in ws], [v.copy() for v in ws]
            plus[l][i, j] += h
            minus[l][i, j] -= h
            fd = (loss_only(act, plus, bs, gamma, beta, x, y, slopes, **variant)
                  - loss_only(act, minus, bs, gamma, beta, x, y, slopes, **variant)) / (2 * h)
            assert dws[l][i, j] == pytest.approx(fd, rel=1e-5, abs=1e-9), f"layer {l} entry {(i, j)}"


def test_penalties_add_their_gradient():
    act = "tanh"
    params, x, y = setup(act)
    key = jax.random.PRNGKey(0)
    g0, *_ = jax_grads(act, params, x, y, knobs(), key)
    g1, *_ = jax_grads(act, params, x, y, knobs(l1=0.01, l2=0.03), key)
    w = params["hidden"]["w"]
    np.testing.assert_allclose(g1["hidden"]["w"] - g0["hidden"]["w"], 0.01 * np.sign(w) + 0.06 * w, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(g1["first"]["b"], g0["first"]["b"], rtol=1e-6)  # biases are not penalized
