"""Recurrent gradients against an independent numpy BPTT (itself checked by finite differences),
and the recurrent chunk's statistics against numpy. Sizes: T = 7, B = 3, H = 4, two layers."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gradscope.core import sequences
from gradscope.core.recurrent import GATES, RecurrentShape, init_params, spectral_radius, zero_eps
from gradscope.core.train_rnn import group_names, init_state, knobs_of, make_chunk, make_loss
from reference_rnn import forward_backward, loss_only

T, B, H, L = 7, 3, 4, 2
KNOBS = dict(leaky_alpha=0.1, clip_mode="none", clip_value=1.0, learning_rate=0.01, l1=0.0, l2=0.0)
CASES = [("rnn", "tanh"), ("rnn", "relu"), ("rnn", "leaky_relu"), ("rnn", "sigmoid"), ("rnn", "gelu"), ("lstm", None), ("gru", None)]


def shape_for(model, task, depth=L, width=H, batch=B, seq_len=T):
    s = sequences.spec(task, seq_len)
    return RecurrentShape(model, task, s.n_in, depth, width, s.n_out, s.out_steps, batch, seq_len)


def setup(model, task, seed=0):
    """Parameters with non-zero biases (every bias path exercised) and one batch of the task."""
    shape = shape_for(model, task)
    params = init_params(jax.random.PRNGKey(seed), shape, "glorot_normal", 1.3, forget_bias=0.7)
    keys = jax.random.split(jax.random.PRNGKey(seed + 1), L + 2)
    for l, layer in enumerate(params["layers"]):
        layer["b"] = layer["b"] + 0.2 * jax.random.normal(keys[l], layer["b"].shape)
    params["out"]["b"] = 0.1 * jax.random.normal(keys[L], params["out"]["b"].shape)
    x, y = sequences.sample(task, T, B, keys[L + 1], *sequences.pool(task, None))
    return shape, params, x, y


def as64(tree):
    return jax.tree.map(lambda a: np.asarray(a, np.float64), tree)


def reference(model, act, shape, params, x, y, slope=0.1):
    p = as64(params)
    return forward_backward(model, act, p["layers"], p["out"], np.asarray(x, np.float64), np.asarray(y), shape.task, shape.out_steps, slope)


@pytest.mark.parametrize("task", ["adding", "copy"])
@pytest.mark.parametrize("model,act", CASES)
def test_gradients_and_time_deltas_match_numpy_bptt(model, act, task):
    shape, params, x, y = setup(model, task)
    grad = jax.grad(make_loss(model, act, shape), argnums=(0, 1), has_aux=True)
    with jax.disable_jit():  # tiny arrays: eager is quicker than a compile per case
        (g, deltas), aux = grad(params, zero_eps(shape, B), x, y, knobs_of(KNOBS))
    loss, g_layers, g_out, dh = reference(model, act, shape, params, x, y)
    assert float(aux[0]) == pytest.approx(loss, rel=1e-5)
    tol = dict(rtol=2e-4, atol=1e-6)
    for l in range(L):
        for k in ("w_xh", "w_hh", "b"):
            np.testing.assert_allclose(g["layers"][l][k], g_layers[l][k], **tol, err_msg=f"layer {l} {k}")
        for t in range(T):
            np.testing.assert_allclose(deltas[l, t], dh[l, t], **tol, err_msg=f"dL/dh layer {l} step {t}")
    np.testing.assert_allclose(g["out"]["w"], g_out["w"], **tol)
    np.testing.assert_allclose(g["out"]["b"], g_out["b"], **tol)


@pytest.mark.parametrize("task", ["adding", "copy"])
@pytest.mark.parametrize("model,act", [("rnn", "tanh"), ("rnn", "elu"), ("lstm", None), ("gru", None)])
def test_numpy_bptt_matches_finite_differences(model, act, task):
    """The oracle checks itself: central differences in float64 on entries of every array."""
    shape, params, x, y = setup(model, task, seed=4)
    p = as64(params)
    x, y = np.asarray(x, np.float64), np.asarray(y)
    args = lambda pp: (model, act, pp["layers"], pp["out"], x, y, task, shape.out_steps, 0.1)
    _, g_layers, g_out, _ = forward_backward(*args(p))
    grads = {"layers": g_layers, "out": g_out}
    rng, h = np.random.default_rng(0), 1e-6
    for path in [("layers", l, k) for l in range(L) for k in ("w_xh", "w_hh", "b")] + [("out", "w"), ("out", "b")]:
        arr = p[path[0]][path[1]] if len(path) == 2 else p["layers"][path[1]][path[2]]
        ref = grads[path[0]][path[1]] if len(path) == 2 else grads["layers"][path[1]][path[2]]
        for _ in range(3):
            idx = tuple(rng.integers(n) for n in arr.shape)
            old = arr[idx]
            arr[idx] = old + h
            up = loss_only(*args(p))
            arr[idx] = old - h
            down = loss_only(*args(p))
            arr[idx] = old
            assert ref[idx] == pytest.approx((up - down) / (2 * h), rel=1e-5, abs=1e-9), f"{path} {idx}"


def run_one_step(model, act, task, **knobs):
    """The compiled chunk's first step, and the batch it drew (re-drawn from the same key)."""
    shape, params, _, _ = setup(model, task)
    state = init_state(jax.random.PRNGKey(5), params, "sgd", model)
    pool = sequences.pool(task, None)
    _, stats = jax.jit(make_chunk(model, act, "sgd", shape, 1))(state, knobs_of({**KNOBS, **knobs}), *pool, np.int32(1))
    x, y = sequences.sample(task, T, B, jax.random.split(state.key)[1], *pool)
    return shape, params, x, y, {k: np.asarray(v[0]) for k, v in stats.items()}


@pytest.mark.parametrize("model,act", [("rnn", "tanh"), ("lstm", None), ("gru", None)])
def test_chunk_statistics_match_numpy(model, act):
    """time_delta_norm per step and layer, the per-group gradient norms in group_names' order."""
    shape, params, x, y, s = run_one_step(model, act, "adding")
    loss, g_layers, g_out, dh = reference(model, act, shape, params, x, y)
    assert s["loss"] == pytest.approx(loss, rel=1e-5)
    np.testing.assert_allclose(s["time_delta_norm"], np.sqrt((dh**2).sum(axis=(2, 3))), rtol=2e-4)
    gates, names, expected = len(GATES[model]), group_names(model, L), []
    for g in g_layers:
        for k in ("w_xh", "w_hh"):
            expected += list(np.sqrt((g[k].reshape(g[k].shape[0], gates, H) ** 2).sum(axis=(0, 2))))
        expected += list(np.sqrt((g["b"].reshape(gates, H) ** 2).sum(1)))
    expected += [np.linalg.norm(g_out["w"]), np.linalg.norm(g_out["b"])]
    assert len(names) == len(expected) == s["grad_norm"].shape[0]
    np.testing.assert_allclose(s["grad_norm"], expected, rtol=2e-4, atol=1e-7)
    total = np.sqrt(sum(v**2 for v in expected))
    assert s["global_grad_norm"] == pytest.approx(total, rel=1e-4)
    assert s["baseline"] == pytest.approx(1 / 6, rel=1e-6) and not s["nonfinite"]


def test_clip_by_norm_caps_the_global_norm_and_clip_by_value_each_entry():
    *_, s = run_one_step("rnn", "tanh", "adding", clip_mode="norm", clip_value=1e-3)
    assert s["global_grad_norm"] > 1e-3 and s["clipped_global_grad_norm"] == pytest.approx(1e-3, rel=1e-4)
    shape, params, *_, v = run_one_step("rnn", "tanh", "adding", clip_mode="value", clip_value=1e-4)
    entries = [a.size for layer in params["layers"] for a in (layer["w_xh"], layer["w_hh"], layer["b"])] + [H, 1]
    assert (v["clipped_grad_norm"] <= 1e-4 * np.sqrt(entries) * (1 + 1e-5)).all()  # every entry within +-1e-4
    assert (v["clipped_grad_norm"] < v["grad_norm"]).all()


@pytest.mark.parametrize("kind", ["gaussian", "orthogonal", "identity", "complex_pair"])
def test_power_iteration_finds_the_spectral_radius(kind):
    rng = np.random.default_rng(1)
    n = 32
    w = {
        "gaussian": rng.standard_normal((n, n)) * 1.3 / np.sqrt(n),
        "orthogonal": 0.7 * np.linalg.qr(rng.standard_normal((n, n)))[0],
        "identity": 2.0 * np.eye(n),
        "complex_pair": np.diag(np.r_[0.3 * np.ones(n - 2), 0, 0]) + np.pad([[0.0, -1.5], [1.5, 0.0]], ((n - 2, 0), (n - 2, 0))),
    }[kind]
    exact = np.abs(np.linalg.eigvals(w)).max()
    rel = 0.15 if kind == "gaussian" else 1e-3  # a Gaussian matrix's disk of eigenvalues leaves no gap
    assert float(spectral_radius(jnp.asarray(w, jnp.float32))) == pytest.approx(exact, rel=rel)


def test_identity_init_and_forget_bias():
    shape = shape_for("lstm", "adding", depth=1, width=6)
    params = init_params(jax.random.PRNGKey(0), shape, "identity", 0.8, forget_bias=1.5)
    w_hh = np.asarray(params["layers"][0]["w_hh"])
    for g in range(4):
        np.testing.assert_array_equal(w_hh[:, g * 6:(g + 1) * 6], np.float32(0.8) * np.eye(6, dtype=np.float32))
    np.testing.assert_array_equal(np.asarray(params["layers"][0]["b"]), np.r_[np.zeros(6), 1.5 * np.ones(6), np.zeros(12)])
