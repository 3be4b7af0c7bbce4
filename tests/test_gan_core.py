"""The GAN core (backend/gradscope/core/gan.py) against numpy, finite differences and theory.

Small nets throughout; each distinct (shape, spec) compiles once (a few seconds on 2 cores).
"""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gradscope.core import gan

TINY = gan.GanShape(z_dim=2, width=16, g_depth=2, d_depth=3, batch=32)


# --------------------------------------------------------------------------- data


def test_ring8_has_eight_distinct_angles_on_radius_two_and_is_fixed_by_its_seed():
    points, modes, std = gan.load("ring8", n=800, seed=3)
    assert points.shape == (800, 2) and points.dtype == np.float32 and modes.shape == (8, 2)
    angles = np.sort(np.round(np.degrees(np.arctan2(modes[:, 1], modes[:, 0])) % 360, 3))
    assert np.allclose(angles, np.arange(8) * 45.0)
    assert np.allclose(np.linalg.norm(modes, axis=1), 2.0)
    # every point within 5 std of its nearest mode, every mode drawn from
    dist = np.linalg.norm(points[:, None] - modes[None], axis=-1)
    assert np.all(dist.min(axis=1) < 5 * std) and len(np.unique(dist.argmin(axis=1))) == 8
    again, _, _ = gan.load("ring8", n=800, seed=3)
    other, _, _ = gan.load("ring8", n=800, seed=4)
    assert np.array_equal(points, again) and not np.allclose(points, other)


def test_each_dataset_gives_points_and_its_modes_only_for_the_mixtures():
    for name in gan.DATASETS:
        points, modes, std = gan.load(name, n=300)
        assert points.shape == (300, 2) and np.all(np.isfinite(points)), name
        assert (modes is None) == (std is None) == (name in ("swissroll", "moons")), name
    _, grid, _ = gan.load("grid25")
    assert grid.shape == (25, 2) and len({tuple(m) for m in grid}) == 25
    with pytest.raises(ValueError, match="unknown GAN dataset"):
        gan.load("spirals")


@pytest.mark.parametrize("points, message", [
    ([[0.0, 1.0]] * 7 + [[np.nan, 0.0]], "finite: 1 coordinates"),
    ([[0.0, 1.0]] * 9 + [[np.inf, -np.inf]], "finite: 2 coordinates"),
    ([[0.0, 1.0, 2.0]] * 10, r"\(N, 2\).*shape \(10, 3\)"),
    ([0.0] * 20, r"\(N, 2\).*shape \(20,\)"),
    ([[0.0, 1.0]] * 7, "too few drawn points: 7, at least 8"),
    ([[0.0, 1.0]] * 31, "too many drawn points: 31, at most 30"),
    ([[0.0, 1.0], [2.0]] * 5, "list of \\[x, y\\] number pairs"),
    ([["a", "b"]] * 10, "list of \\[x, y\\] number pairs"),
])
def test_drawn_rejects_bad_points_naming_the_problem(points, message):
    with pytest.raises(ValueError, match=message):
        gan.drawn(points, max_points=30)


def test_drawn_accepts_good_points_as_float32():
    out = gan.drawn([[i, -i] for i in range(8)], max_points=8)
    assert out.shape == (8, 2) and out.dtype == np.float32 and out[3, 1] == -3


# --------------------------------------------------------------------------- mode counts


def test_mode_counts_on_hand_built_samples():
    _, modes, std = gan.load("ring8")
    rng = np.random.default_rng(0)
    one = modes[2] + std * rng.standard_normal((400, 2)).clip(-2, 2)  # all within 3 std of mode 2
    covered, quality = gan.mode_stats(jnp.asarray(one), modes, std)
    assert int(covered) == 1 and float(quality) == 1.0
    spread = modes[np.arange(400) % 8] + std * rng.standard_normal((400, 2)).clip(-2, 2)
    covered, quality = gan.mode_stats(jnp.asarray(spread), modes, std)
    assert int(covered) == 8 and float(quality) == 1.0
    far = rng.uniform(5.0, 9.0, (400, 2))  # uniform noise, nowhere near the ring
    covered, quality = gan.mode_stats(jnp.asarray(far), modes, std)
    assert int(covered) == 0 and float(quality) == 0.0
    # half on the ring's modes, half off: quality 1/2; 3 samples on mode 5 are below 1% of 400
    mixed = np.concatenate([spread[:200], far[:197], modes[5] + np.zeros((3, 2))])
    mixed[:200] = modes[0]
    covered, quality = gan.mode_stats(jnp.asarray(mixed), modes, std)
    assert int(covered) == 1 and float(quality) == pytest.approx(203 / 400)


# --------------------------------------------------------------------------- spectral norms, gradient penalty


def test_spectral_norms_converge_to_numpys_largest_singular_values():
    params = gan.init_critic(jax.random.key(0), gan.GanShape(width=24, d_depth=3), "he_normal")
    u = gan.init_u(jax.random.key(1), params)
    truth = np.array([np.linalg.svd(np.asarray(w), compute_uv=False)[0] for w in gan.kernels(params)])
    first, _ = gan.spectral_norms(params, u)
    assert np.all(np.asarray(first) <= truth * (1 + 1e-5))  # ||W u|| never exceeds sigma_max
    for _ in range(30):
        sigmas, u = gan.spectral_norms(params, u)
    np.testing.assert_allclose(np.asarray(sigmas), truth, rtol=0.02)


def _critic_fd_gradient(params, x, act, h=1e-3):
    f = lambda x: np.asarray(gan.critic(act, params, jnp.asarray(x))[0], np.float64)
    grad = np.zeros_like(x, dtype=np.float64)
    for j in range(2):
        e = np.zeros_like(x)
        e[:, j] = h
        grad[:, j] = (f(x + e) - f(x - e)) / (2 * h)
    return grad


def test_gradient_penalty_input_gradient_matches_central_differences():
    params = gan.init_critic(jax.random.key(2), gan.GanShape(width=16, d_depth=3), "glorot_normal", gain=1.5)
    x = np.random.default_rng(0).standard_normal((8, 2)).astype(np.float32)
    fd = _critic_fd_gradient(params, x, "tanh")
    auto = np.asarray(gan.input_gradients("tanh", params, jnp.asarray(x)))
    np.testing.assert_allclose(auto, fd, rtol=1e-2, atol=1e-3)
    penalty = float(gan.gradient_penalty("tanh", params, jnp.asarray(x), 10.0))
    assert penalty == pytest.approx(10.0 * np.mean((np.linalg.norm(fd, axis=1) - 1.0) ** 2), rel=1e-2)
    # its derivative in D's weights (a gradient of a gradient) against a central difference
    def pen(b0):
        p = jax.tree.map(lambda a: a, params)
        p["hidden"][0]["b"] = p["hidden"][0]["b"].at[0].set(b0)
        return gan.gradient_penalty("tanh", p, jnp.asarray(x), 10.0)
    b0 = params["hidden"][0]["b"][0]
    h = 1e-2
    fd_b = (float(pen(b0 + h)) - float(pen(b0 - h))) / (2 * h)
    assert float(jax.grad(pen)(b0)) == pytest.approx(fd_b, rel=2e-2, abs=1e-4)


# --------------------------------------------------------------------------- G's logit gradient


@pytest.fixture(scope="module")
def logit_steps():
    """One compiled step per sigmoid loss (tiny nets, no Lipschitz constraint)."""
    return {loss: gan.make_step(TINY, gan.GanSpec(g_act="tanh", d_act="leaky_relu", gan_loss=loss)) for loss in gan.SIGMOID_LOSSES}


def _logit_grad_and_logits(step, loss, out_bias, d_lr):
    points, _, _ = gan.load("ring8", n=500)
    spec = gan.GanSpec(g_act="tanh", d_act="leaky_relu", gan_loss=loss)
    state = gan.init_state(jax.random.key(5), TINY, spec)
    state.d_params["out"]["b"] = jnp.full((1,), out_bias)
    key = jax.random.key(9)
    new, stats = step(state, gan.knobs(d_lr=d_lr), jnp.asarray(points), key)
    # the G update's logits, recomputed: G before its update, D after its update, the step's latents
    g_z = gan.step_draws(key, TINY, 1, len(points))["g_z"]
    logits = gan.critic("leaky_relu", new.d_params, gan.generate("tanh", state.g_params, g_z)[0])[0]
    return float(stats["g_logit_grad"]), np.asarray(logits, np.float64)


def test_g_logit_grad_is_sigmoid_for_saturating_and_one_minus_sigmoid_for_non_saturating(logit_steps):
    sig = lambda l: 1.0 / (1.0 + np.exp(-l))
    for loss, formula in (("saturating", sig), ("non_saturating", lambda l: 1.0 - sig(l))):
        measured, logits = _logit_grad_and_logits(logit_steps[loss], loss, 0.7, 1e-3)
        assert logits.std() > 1e-3  # the logits differ per sample: a per-sample formula, not one value
        assert measured == pytest.approx(np.mean(formula(logits)), rel=1e-4), loss


def test_a_confident_critic_starves_the_saturating_generator(logit_steps):
    """D(G(z)) = sigmoid(-8) ~ 3e-4: the saturating slope sigmoid(l) is ~3e-4, the
    non-saturating 1 - sigmoid(l) ~ 1 (measured ratio ~3000)."""
    sat, l_sat = _logit_grad_and_logits(logit_steps["saturating"], "saturating", -8.0, 0.0)
    non, _ = _logit_grad_and_logits(logit_steps["non_saturating"], "non_saturating", -8.0, 0.0)
    assert np.all(l_sat < -6)
    assert sat < 1e-3 and non > 0.99 and non > 10 * sat


def test_the_steps_spectral_norm_statistic_matches_svd_and_knobs_do_not_recompile(logit_steps):
    step = logit_steps["non_saturating"]
    points, _, _ = gan.load("ring8", n=500)
    state = gan.init_state(jax.random.key(6), TINY, gan.GanSpec(g_act="tanh", d_act="leaky_relu"))
    frozen = gan.knobs(d_lr=0.0, g_lr=1e-3)  # D fixed: its power iteration converges on fixed kernels
    for i in range(40):
        state, stats = step(state, frozen, jnp.asarray(points), jax.random.key(i))
    truth = np.array([np.linalg.svd(np.asarray(w), compute_uv=False)[0] for w in gan.kernels(state.d_params)])
    np.testing.assert_allclose(np.asarray(stats["spectral_norm"]), truth, rtol=0.02)
    size = step._cache_size()
    step(state, gan.knobs(d_lr=3e-4, g_lr=2e-4, clip_c=0.5, gp_lambda=1.0), jnp.asarray(points), jax.random.key(0))
    assert step._cache_size() == size


# --------------------------------------------------------------------------- weight clipping (WGAN-GP, Fig. 1b)


def test_weight_clipping_explodes_or_vanishes_the_critics_gradient_toward_its_input():
    """A 12-layer ReLU critic of width 512 on swissroll, its weights clipped: with every entry at
    +-c the backward pass multiplies ||dD/dh|| by about c sqrt(W/2) per layer (half the ReLUs on).
    Measured (seeds 1-3, first 5 steps): c = 0.1: layer 0 / last ~120-136, last-but-one / last 1.56 (theory 1.58);
    c = 0.001: layer 0 underflows to 0, last-but-one / last 0.0166 (theory 0.0158)."""
    shape = gan.GanShape(z_dim=2, width=512, g_depth=2, d_depth=12, batch=64)
    spec = gan.GanSpec(g_act="relu", d_act="relu", gan_loss="wasserstein", lipschitz="clip",
                       g_optimizer="rmsprop", d_optimizer="rmsprop", n_critic=5)
    step = gan.make_step(shape, spec)
    points, _, _ = gan.load("swissroll", n=1000)
    per_layer = {}
    for c in (0.1, 0.001):
        # N(0, 1) kernels: clipping puts nearly every entry at +-c, where training drives them
        state = gan.init_state(jax.random.key(1), shape, spec, d_init="standard_normal")
        # one step: its 5 D updates, each followed by the clip; measured at the last one
        state, stats = step(state, gan.knobs(g_lr=5e-5, d_lr=5e-5, clip_c=c), jnp.asarray(points), jax.random.key(0))
        assert np.all(np.abs(np.asarray(state.d_params["out"]["w"])) <= c * (1 + 1e-6))
        grads = np.asarray(stats["critic_act_grad"])
        assert grads.shape == (2, 12) and np.all(np.isfinite(grads))
        per_layer[c] = grads
        theory = c * np.sqrt(512 / 2)
        np.testing.assert_allclose(grads[:, -2] / grads[:, -1], theory, rtol=0.25)
    assert np.all(per_layer[0.1][:, 0] > 20 * per_layer[0.1][:, -1])
    assert np.all(np.diff(per_layer[0.1], axis=1) < 0)  # grows layer by layer toward the input
    assert np.all(per_layer[0.001][:, 0] < 1e-6 * per_layer[0.001][:, -1])
    assert np.all(np.diff(per_layer[0.001][:, 4:], axis=1) > 0)  # shrinks toward the input (earlier layers underflow to 0)


# --------------------------------------------------------------------------- training smoke test


@pytest.mark.parametrize("spec", [
    gan.GanSpec(g_act="tanh", d_act="leaky_relu", gan_loss="wasserstein", lipschitz="gp", n_critic=2, g_batchnorm=True),
    gan.GanSpec(g_act="relu", d_act="relu", gan_loss="least_squares", lipschitz="spectral", g_optimizer="momentum"),
], ids=["wgan-gp-bn", "lsgan-spectral"])
def test_a_short_run_keeps_every_statistic_finite_and_shaped(spec):
    points, modes, std = gan.load("ring8", n=1000)
    step = gan.make_step(TINY, spec)
    state = gan.init_state(jax.random.key(0), TINY, spec)
    k = gan.knobs(g_lr=1e-3, d_lr=1e-3)
    for i in range(20):
        state, stats = step(state, k, jnp.asarray(points), jax.random.key(100 + i))
    shapes = gan.stat_shapes(TINY)
    assert set(stats) == set(shapes) == set(gan.STAT_NAMES)
    for name, value in stats.items():
        assert value.shape == shapes[name], name
        assert np.all(np.isfinite(np.asarray(value))), name
    assert int(stats["step"]) == 19 and int(state.step) == 20
    assert np.all(np.asarray(stats["g_dead"]) >= 0) and np.all(np.asarray(stats["d_saturation"]) <= 1)
    if spec.lipschitz == "spectral":
        # every kernel divided by (an estimate of) its spectral norm, ReLU 1-Lipschitz: ||grad_x D|| <= ~1
        assert np.all(np.asarray(stats["input_grad_norm"]) < 1.05)
    samples = gan.make_sampler(TINY, spec)(state.g_params, jax.random.key(7), 500)
    covered, quality = gan.mode_stats(samples, modes, std)
    assert samples.shape == (500, 2) and 0 <= int(covered) <= 8 and 0.0 <= float(quality) <= 1.0
