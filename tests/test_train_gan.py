"""The GAN training chunk (backend/gradscope/core/train_gan.py) against gan.make_step called step by step.

One tiny (shape, spec) throughout: the chunk compiles once (module fixture), the reference step once.
Tolerances: the chunk traces the very same jitted step into its loop, so the arithmetic is the
same; only XLA's fusion of it inside a loop may differ, which can reorder float32 sums (a few ulp,
~1e-7 relative, per operation) and grow over the 6 steps. rtol 1e-5 / atol 1e-6 covers that and
still fails on any real difference (a wrong key, step or row is off by 1e-2 or more). On the CPU
this was written on they agree bit for bit.
"""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gradscope.core import gan
from gradscope.core.train_gan import PER_STEP_STATS, ROW_STATS, STAT_NAMES, make_chunk, step_key

SHAPE = gan.GanShape(z_dim=2, width=16, g_depth=1, d_depth=2, batch=32)
SPEC = gan.GanSpec(g_act="tanh", d_act="leaky_relu")
K = 6  # the chunk's compiled length
KNOBS = gan.knobs(g_lr=1e-2, d_lr=1e-2)  # large enough that every step moves both nets visibly
KEY = jax.random.key(42)
TOL = dict(rtol=1e-5, atol=1e-6)
i32 = np.int32  # n and every as the families pass them (train_gan's docstring)


@pytest.fixture(scope="module")
def data():
    return jnp.asarray(gan.load("ring8", n=500)[0])


@pytest.fixture(scope="module")
def start():
    return gan.init_state(jax.random.key(0), SHAPE, SPEC)


@pytest.fixture(scope="module")
def chunk():
    return make_chunk(SHAPE, SPEC, K)


@pytest.fixture(scope="module")
def reference(data, start):
    """K calls of gan.make_step from `start`, step i's key step_key(KEY, i): (the states after 0..K
    steps, the stats of steps 0..K-1)."""
    step = gan.make_step(SHAPE, SPEC)
    states, stats = [start], []
    for _ in range(K):
        state, s = step(states[-1], KNOBS, data, step_key(KEY, states[-1].step))
        states.append(state)
        stats.append(s)
    return states, stats


def assert_same_state(a, b, **tol):
    leaves_a, tree_a = jax.tree.flatten(a)
    leaves_b, tree_b = jax.tree.flatten(b)
    assert tree_a == tree_b
    for x, y in zip(leaves_a, leaves_b, strict=True):
        np.testing.assert_allclose(np.asarray(x), np.asarray(y), **tol)


def assert_rows_match(out, stats, slots):
    """Row j of `out` is step slots[j]'s measured statistics, every one of them."""
    assert int(out["rows"]) == len(slots)
    np.testing.assert_array_equal(np.asarray(out["step"][: len(slots)]), slots)
    for j, i in enumerate(slots):
        for name in ROW_STATS:
            np.testing.assert_allclose(np.asarray(out[name][j]), np.asarray(stats[i][name]), **TOL, err_msg=f"{name} row {j}")


def test_names_cover_gans_statistics_once():
    assert set(STAT_NAMES) == set(gan.STAT_NAMES) | {"nonfinite"} and len(STAT_NAMES) == len(set(STAT_NAMES))
    assert set(PER_STEP_STATS) - {"nonfinite"} == {n for n, s in gan.stat_shapes(SHAPE).items() if s == ()} - {"step"}


def test_a_short_chunk_is_n_steps_of_make_step_and_leaves_the_rest_zero(chunk, data, start, reference):
    states, stats = reference
    state, out = chunk(start, KNOBS, data, KEY, i32(5), i32(2))  # steps 0..4 of K = 6, measured 1, 3 and the last, 4
    assert set(out) == set(STAT_NAMES) | {"rows"}
    assert_same_state(state, states[5], **TOL)  # five steps, not six
    assert int(state.step) == 5
    assert not np.allclose(np.asarray(states[5].g_params["out"]["w"]), np.asarray(states[6].g_params["out"]["w"]))
    for name in PER_STEP_STATS:
        assert out[name].shape == (K,), name
        if name != "nonfinite":
            np.testing.assert_allclose(np.asarray(out[name][:5]), [float(s[name]) for s in stats[:5]], **TOL, err_msg=name)
    assert out["nonfinite"].dtype == jnp.bool_ and not np.any(np.asarray(out["nonfinite"]))
    assert_rows_match(out, stats, [1, 3, 4])  # the last row is the last step's
    shapes = gan.stat_shapes(SHAPE)
    for name in ROW_STATS:
        assert out[name].shape == (K,) + shapes[name], name
        assert np.all(np.asarray(out[name][3:]) == 0), name  # rows past out["rows"]: zero
    for name in PER_STEP_STATS:
        assert np.asarray(out[name][5]) == 0, name  # the step that did not run: zero (False)


@pytest.mark.parametrize("n, every, slots", [
    (6, 1, [0, 1, 2, 3, 4, 5]),  # every step measured
    (6, 3, [2, 5]),
    (6, 4, [3, 5]),  # the last step always measured, though 6 is no multiple of 4
    (6, 6, [5]),
    (4, 100, [3]),  # every past n: the last step alone
    (3, 0, [0, 1, 2]),  # every < 1 is taken as 1
])
def test_every_picks_the_measured_rows(chunk, data, start, reference, n, every, slots):
    states, stats = reference
    state, out = chunk(start, KNOBS, data, KEY, i32(n), i32(every))
    assert_rows_match(out, stats, slots)
    np.testing.assert_allclose(np.asarray(out["g_loss"][:n]), [float(s["g_loss"]) for s in stats[:n]], **TOL)
    assert_same_state(state, states[n], **TOL)


def test_n_is_clipped_to_zero_and_k(chunk, data, start, reference):
    states, _ = reference
    state, out = chunk(start, KNOBS, data, KEY, i32(0), i32(2))
    assert int(out["rows"]) == 0 and int(state.step) == 0
    assert_same_state(state, start)  # exactly: nothing ran
    assert all(not np.any(np.asarray(out[name])) for name in STAT_NAMES)
    state, out = chunk(start, KNOBS, data, KEY, i32(K + 5), i32(1))
    assert int(out["rows"]) == K and int(state.step) == K
    assert_same_state(state, states[K], **TOL)


def test_chunks_compose_the_draws_follow_the_step_not_the_chunk(chunk, data, start, reference):
    states, stats = reference
    mid, first = chunk(start, KNOBS, data, KEY, i32(2), i32(1))
    end, second = chunk(mid, KNOBS, data, KEY, i32(4), i32(2))
    assert_same_state(end, states[6], **TOL)
    np.testing.assert_allclose(np.concatenate([np.asarray(first["d_loss"][:2]), np.asarray(second["d_loss"][:4])]),
                               [float(s["d_loss"]) for s in stats], **TOL)
    np.testing.assert_array_equal(np.asarray(second["step"][:2]), [3, 5])


def test_knobs_n_every_and_key_are_traced_not_compiled_in(chunk, data, start):
    chunk(start, KNOBS, data, KEY, i32(3), i32(1))
    size = chunk._cache_size()
    assert size >= 1
    frozen = gan.knobs(g_lr=0.0, d_lr=0.0, clip_c=0.5, gp_lambda=1.0)
    state, _ = chunk(start, frozen, data, KEY, i32(4), i32(3))
    assert_same_state((state.g_params, state.d_params), (start.g_params, start.d_params))  # lr 0: an Adam update of exactly 0
    only_d = gan.knobs(g_lr=0.0, d_lr=3e-2)
    state, out = chunk(start, only_d, data, jax.random.key(7), i32(2), i32(5))
    assert_same_state(state.g_params, start.g_params)
    assert not np.allclose(np.asarray(state.d_params["out"]["w"]), np.asarray(start.d_params["out"]["w"]))
    _, again = chunk(start, only_d, data, KEY, i32(2), i32(5))
    assert float(out["d_loss"][1]) != float(again["d_loss"][1])  # the key is used
    assert chunk._cache_size() == size


@pytest.mark.parametrize("where", ["nan_in_a_critic_kernel", "inf_in_the_generators_output_bias"])
def test_non_finite_values_in_the_state_are_carried_not_raised(chunk, data, start, where):
    g, d = jax.tree.map(lambda a: a, start.g_params), jax.tree.map(lambda a: a, start.d_params)
    if where.startswith("nan"):
        d["hidden"][1]["w"] = d["hidden"][1]["w"].at[0, 0].set(jnp.nan)
    else:
        g["out"]["b"] = g["out"]["b"].at[1].set(jnp.inf)
    bad = start._replace(g_params=g, d_params=d)
    state, out = chunk(bad, KNOBS, data, KEY, i32(4), i32(2))
    assert int(state.step) == 4 and int(out["rows"]) == 2
    np.testing.assert_array_equal(np.asarray(out["nonfinite"]), [True] * 4 + [False] * 2)
    assert not np.all(np.isfinite(np.asarray(out["d_loss"][:4])))
    assert not np.all(np.isfinite(np.asarray(out["d_grad_norm"][:2])))
    nets = state.d_params if where.startswith("nan") else state.g_params
    assert not all(np.all(np.isfinite(np.asarray(a))) for a in jax.tree.leaves(nets))  # still in the state
