"""The statistics that explain *why* gradients vanish or explode (issue 10), read off real
training steps: checked against the numpy backprop in reference.py, against theory (sigmoid's
slope is at most 1/4, ReLU's at most 1) and against their own definitions."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gradscope.core.network import H_EDGES, Z_EDGES, bin_counts, dropout_masks
from gradscope.core.train import HIST_EDGES, SPARSE_STATS, VAL_EVERY
from gradscope.engine import Trainer, knobs_of
from gradscope.records import iter_records
from reference import forward_backward, unpack

SMALL = dict(depth=4, width=16, batch_size=32)


@pytest.fixture
def cache(compile_cache):
    return compile_cache  # the run's shared cache: executables built once for every module


def step0_batch(tr):
    """The batch the first step draws (same key schedule as core.train.make_draws)."""
    k_batch = jax.random.split(jax.random.fold_in(tr.state.key, 0), 3)[0]
    idx = np.asarray(jax.random.randint(k_batch, (tr.shape.batch,), 0, tr.x.shape[0]))
    return np.asarray(tr.x, np.float64)[idx], np.asarray(tr.y)[idx]


@pytest.mark.parametrize("variant", [dict(), dict(batchnorm=True), dict(residual=True)], ids=["plain", "bn", "residual"])
@pytest.mark.parametrize("act", ["tanh", "prelu"])
def test_new_norms_match_numpy_backprop(cache, act, variant):
    tr = Trainer(dict(SMALL, activation=act, init="he_normal", **variant), cache=cache)
    ws, bs, gamma, beta = unpack(tr.state.params)
    x, y = step0_batch(tr)
    slopes = np.full((tr.shape.depth, tr.shape.width), 0.25)  # PReLU's initial value; tanh ignores it
    loss, dws, dbs, deltas, _, _, _, dhs, dus = forward_backward(act, ws, bs, gamma, beta, x, y, slopes, **variant)
    s = {k: v[0] for k, v in tr.run(1).items()}
    norm = lambda arrays: [np.linalg.norm(a) for a in arrays]
    assert s["loss"] == pytest.approx(loss, rel=1e-5)
    for name, ref in [("grad_norm", dws), ("bias_grad_norm", dbs), ("delta_norm", deltas), ("h_grad_norm", dhs), ("u_grad_norm", dus)]:
        np.testing.assert_allclose(s[name], norm(ref), rtol=3e-4, atol=1e-7, err_msg=name)


@pytest.mark.parametrize("variant", [dict(), dict(batchnorm=True), dict(residual=True, batchnorm=True)], ids=["plain", "bn", "bn+residual"])
@pytest.mark.parametrize("act,ceiling", [("sigmoid", 0.25), ("relu", 1.0)])
def test_chain_rule_factors_telescope_and_slope_factor_is_bounded(cache, act, ceiling, variant):
    s = Trainer(dict(SMALL, activation=act, init="standard_normal", **variant), cache=cache).run(20)
    delta, h, u = s["delta_norm"], s["h_grad_norm"], s["u_grad_norm"]
    u_next = np.concatenate([u[:, 1:], delta[:, -1:]], axis=1)  # the output layer's u is its z
    bn_factor, weight_factor, slope_factor = u_next / delta[:, 1:], h / u_next, delta[:, :-1] / h
    np.testing.assert_allclose(bn_factor * weight_factor * slope_factor, delta[:, :-1] / delta[:, 1:], rtol=1e-5)
    assert (slope_factor <= ceiling * (1 + 1e-6)).all()
    assert slope_factor.max() > 0.5 * ceiling * (act == "relu")  # the bound is not vacuous for ReLU
    if not variant.get("batchnorm"):
        np.testing.assert_allclose(s["u_grad_norm"], s["delta_norm"][:, :-1], rtol=1e-6)  # summed in another order


def test_init_distance_starts_at_zero_and_grows(cache):
    tr = Trainer(dict(SMALL, activation="relu", init="he_normal", learning_rate=0.05), cache=cache)
    s = tr.run(30)
    assert (s["init_distance"][0] == 0).all()
    assert (s["init_distance"][-1] > 0).all()
    w0 = [tr.state.w0[0], *tr.state.w0[1], tr.state.w0[2]]
    w = [tr.state.params["first"]["w"], *tr.state.params["hidden"]["w"], tr.state.params["out"]["w"]]
    expected = [np.linalg.norm(a - b) / np.linalg.norm(b) for a, b in zip(w, w0, strict=True)]
    np.testing.assert_allclose(tr.run(1)["init_distance"][0], expected, rtol=1e-4)
    tr.reset()
    assert (tr.run(1)["init_distance"][0] == 0).all()


def test_held_out_split_is_disjoint_fixed_per_seed_and_evaluated_sparsely(cache):
    tr = Trainer(SMALL, cache=cache)
    train = {tuple(r) for r in np.asarray(tr.x).tolist()}
    val = {tuple(r) for r in np.asarray(tr.x_val).tolist()}
    assert not train & val and len(val) == tr.x_val.shape[0] > 0
    again = Trainer(SMALL, cache=cache)
    np.testing.assert_array_equal(tr.x_val, again.x_val)
    s = tr.run(2 * VAL_EVERY + 1)
    finite = np.flatnonzero(np.isfinite(s["val_loss"]))
    np.testing.assert_array_equal(s["step"][finite], [0, VAL_EVERY, 2 * VAL_EVERY])
    assert SPARSE_STATS == ("val_loss", "val_accuracy")
    # At step 0 the held-out loss is the evaluation-mode loss of the initial weights.
    fresh = Trainer(SMALL, cache=cache)
    assert s["val_loss"][0] == pytest.approx(fresh.evaluate(held_out=True)["loss"], rel=1e-5)
    assert s["val_accuracy"][0] == pytest.approx(fresh.evaluate(held_out=True)["accuracy"])


def test_dropout_scales_in_training_and_is_off_in_evaluation(cache):
    config = dict(depth=3, width=64, batch_size=128, activation="sigmoid")
    plain, dropped = Trainer(config, cache=cache), Trainer(dict(config, dropout=0.5), cache=cache)
    np.testing.assert_array_equal(plain.predict(plain.x[:20]), dropped.predict(dropped.x[:20]))
    a, b = plain.run(1), dropped.run(1)
    assert a["val_loss"][0] == b["val_loss"][0]  # evaluation mode: no dropout
    assert b["act_mean"][0][0] == pytest.approx(a["act_mean"][0][0], rel=0.05)  # inverted: E[h] kept
    assert b["act_std"][0][0] > 2 * a["act_std"][0][0]  # but half the units are zeroed
    masks = dropout_masks(knobs_of(dropped.config), jax.random.PRNGKey(3), dropped.shape, 128)
    assert float(jnp.mean(masks == 0)) == pytest.approx(0.5, abs=0.02)
    assert float(jnp.mean(masks)) == pytest.approx(1.0, abs=0.04)
    assert set(np.unique(np.asarray(masks)).tolist()) == {0.0, 2.0}
    assert (dropout_masks(knobs_of(plain.config), jax.random.PRNGKey(3), plain.shape, 128) == 1).all()


@pytest.mark.parametrize("act,expected", [("leaky_relu", 0.2), ("prelu", 0.25), ("rrelu", None), ("tanh", "nan")])
def test_neg_slope_in_use(cache, act, expected):
    tr = Trainer(dict(SMALL, activation=act, leaky_alpha=0.2), cache=cache)
    s = tr.run(3)
    slope = s["neg_slope"]
    if expected == "nan":
        assert np.isnan(slope).all()
        assert next(iter_records(s))["neg_slope"] == [None] * SMALL["depth"]
    elif expected is None:  # RReLU: the mean of slopes drawn from U(1/8, 1/3), new each step
        assert (slope > 1 / 8).all() and (slope < 1 / 3).all() and np.ptp(slope[:, 0]) > 0
    elif act == "prelu":  # learned: starts at 0.25 and moves with training
        np.testing.assert_allclose(slope[0], expected, rtol=1e-6)
        assert (slope[-1] != expected).any()
        current = np.asarray(tr.state.params["prelu"])
        np.testing.assert_allclose(tr.run(1)["neg_slope"][0], current, rtol=1e-6)
    else:
        np.testing.assert_allclose(slope, expected, rtol=1e-6)


def test_clip_cosine_and_fraction(cache):
    none = Trainer(dict(SMALL, activation="relu", init="he_normal"), cache=cache).run(5)
    assert (none["clip_cosine"] == 1).all() and (none["clip_fraction"] == 0).all()
    by_norm = Trainer(dict(SMALL, activation="relu", init="he_normal", clip_mode="norm", clip_value=1e-3), cache=cache).run(5)
    np.testing.assert_allclose(by_norm["clip_cosine"], 1, rtol=1e-5)  # scaling keeps the direction
    assert (by_norm["clip_fraction"] > 0.5).all()
    by_value = Trainer(dict(SMALL, activation="relu", init="he_normal", clip_mode="value", clip_value=1e-3), cache=cache).run(5)
    assert (by_value["clip_cosine"] < 0.999).all() and (0 < by_value["clip_fraction"]).all() and (by_value["clip_fraction"] < 1).all()


@pytest.mark.parametrize("specialize", [False, True], ids=["generic", "specialized"])
def test_nonfinite_count_is_zero_until_a_gradient_breaks_then_counts_its_entries(cache, specialize):
    tr = Trainer(dict(SMALL, activation="tanh"), cache=cache, specialize=specialize)
    assert (tr.run(2)["nonfinite_count"] == 0).all()
    w = np.array(tr.state.params["out"]["w"])
    w[0, 0] = np.inf  # an infinite logit: the loss and every hidden layer's gradient entries are NaN
    tr.state = tr.state._replace(params={**tr.state.params, "out": {**tr.state.params["out"], "w": jnp.asarray(w)}})
    s = tr.run(1)
    d, width, n_in = tr.shape.depth, tr.shape.width, tr.shape.n_in
    sizes = [n_in * width] + [width * width] * (d - 1) + [width * tr.shape.classes]
    counts = s["nonfinite_count"][0].tolist()
    assert s["nonfinite"][0] and counts[:-1] == sizes[:-1] and 0 < counts[-1] <= sizes[-1]


@pytest.mark.parametrize("edges", [Z_EDGES, H_EDGES, HIST_EDGES], ids=["z", "h", "log-grad"])
def test_bin_counts_match_numpy_histogram_with_open_ends(edges):
    """Equal bins (z, log10|g|) are counted by arithmetic, unequal ones (h) by a search."""
    v = np.random.default_rng(0).normal(0, 3, 2000).astype(np.float32)
    v[:4] = [np.nan, np.inf, -np.inf, 1e9]
    ours = np.asarray(bin_counts(jnp.asarray(v), edges))
    finite = np.clip(v[np.isfinite(v)], edges[0], edges[-1])
    np.testing.assert_array_equal(ours, np.histogram(finite, edges)[0])
    assert ours.dtype == np.int32 and ours.sum() == 1997


def test_activation_histograms_count_samples_of_z_and_h(cache):
    s = Trainer(dict(SMALL, activation="sigmoid"), cache=cache).run(2)
    assert s["z_hist"].shape == (2, SMALL["depth"], len(Z_EDGES) - 1)
    assert s["h_hist"].shape == (2, SMALL["depth"], len(H_EDGES) - 1)
    assert (s["z_hist"].sum(-1) == SMALL["batch_size"] * SMALL["width"]).all()  # small layers: no sampling
    inside = (H_EDGES[:-1] >= 0) & (H_EDGES[1:] <= 1)  # sigmoid's range
    assert (s["h_hist"][..., ~inside] == 0).all()
    record = next(iter_records(s))
    assert all(isinstance(c, int) for c in record["z_hist"][0] + record["h_hist"][0])
