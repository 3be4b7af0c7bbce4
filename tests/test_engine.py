"""The Trainer: statistics consistent with the gradients, live knobs without recompiling,
clipping invariants, initializer variances, determinism, checkpoints and non-finite data."""

import io

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from gradscope.config import ConfigError, make_config
from gradscope.core.initializers import INITIALIZERS, init_kernel, kernel_variance
from gradscope.core.network import Knobs
from gradscope.core.train import GENERIC, clip_gradients
from gradscope.engine import CompileCache, Trainer, spec_of
from gradscope.engine.trainer import SnapshotError
from gradscope.records import iter_records, to_wire

SMALL = dict(depth=3, width=16, batch_size=32)


@pytest.fixture
def cache(compile_cache):
    return compile_cache  # the run's shared cache: executables built once for every module


def test_chunk_shapes_and_step_counter(cache):
    tr = Trainer(SMALL, cache=cache)
    stats = tr.run(5)
    assert tr.step == 5
    np.testing.assert_array_equal(stats["step"], np.arange(5))
    assert stats["grad_norm"].shape == (5, 4) and stats["delta_norm"].shape == (5, 4)
    assert stats["act_mean"].shape == (5, 3) and stats["dead"].shape == (5, 3)
    assert stats["hist"].shape[:2] == (5, 4)
    # Every finite gradient entry lands in exactly one histogram bin (small layers: no sampling).
    assert (stats["hist"].sum(-1) == np.array([2 * 16, 16 * 16, 16 * 16, 16 * 2])).all()
    more = tr.run()
    assert more["step"][0] == 5 and len(more["step"]) == tr.chunk_steps


def test_chunked_run_equals_single_steps(cache):
    a, b = Trainer(SMALL, cache=cache), Trainer(SMALL, cache=cache)
    together = a.run(12)
    apart = [b.run(1) for _ in range(12)]
    np.testing.assert_array_equal(together["loss"], np.concatenate([s["loss"] for s in apart]))


def test_grad_norm_matches_jax_grad_at_the_same_weights(cache):
    """Step 0 records the gradient at the initial weights, before the update."""
    tr = Trainer(dict(SMALL, activation="tanh", init="he_normal"), cache=cache)
    params = tr.state.params
    stats = tr.run(1)
    # global_grad_norm covers every parameter; grad_norm the kernels, layer by layer.
    layers = [params["first"]["w"], *params["hidden"]["w"], params["out"]["w"]]
    np.testing.assert_allclose(stats["weight_norm"][0], [np.linalg.norm(w) for w in layers], rtol=1e-5)
    new = [tr.state.params["first"]["w"], *tr.state.params["hidden"]["w"], tr.state.params["out"]["w"]]
    lr = tr.config.learning_rate
    # plain SGD: the update is lr * grad, so update_ratio * ||W|| / lr is the grad norm
    for l in range(4):
        assert np.linalg.norm(new[l] - layers[l]) / lr == pytest.approx(stats["grad_norm"][0][l], rel=1e-4)
    assert stats["update_ratio"][0] == pytest.approx(stats["grad_norm"][0] * lr / stats["weight_norm"][0], rel=1e-4)


def test_live_knobs_keep_weights_and_never_recompile(cache):
    tr = Trainer(SMALL, cache=cache)
    tr.run(3)
    compiled = len(cache._futures)
    for change in [{"learning_rate": 0.01}, {"batchnorm": True}, {"residual": True}, {"clip_mode": "norm", "clip_value": 0.5},
                   {"l1": 1e-4, "l2": 1e-3}, {"leaky_alpha": 0.2}, {"dropout": 0.5}]:
        before = tr.state.params
        info = tr.update(change)
        assert info["kind"] == "live" and tr.step == 3
        assert tr.state.params is before
        tr.run(1)
        tr.state = tr.state._replace(step=jnp.asarray(3, jnp.int32))
    assert len(cache._futures) == compiled


def test_background_warm_queues_the_next_activations_relu_first_then_the_generic_build():
    """Per new shape, most wanted first: its predict (the boundary shown now), the builds for the
    current knob values under WARM_ACTIVATIONS others of WARM_ORDER (relu first: the README demo's
    next step), its own generic build (any knob change), then the others' predicts; not every
    activation and optimizer (22 executables per shape held a server's memory until it died, issue 17)."""
    from gradscope.config import ACTIVATION_NAMES
    from gradscope.engine import WARM_ACTIVATIONS, WARM_ORDER

    assert sorted(WARM_ORDER) == sorted(ACTIVATION_NAMES) and WARM_ORDER[0] == "relu"
    queued = []

    class Recorder(CompileCache):
        def warm(self, keys, args):
            queued.extend(keys)

    tr = Trainer(SMALL, cache=Recorder(background=False), warm=True)
    assert [k[0] for k in queued] == ["predict"] + ["chunk"] * (WARM_ACTIVATIONS + 1) + ["predict"] * WARM_ACTIVATIONS
    chunks = [k for k in queued if k[0] == "chunk"]
    assert [k[1] for k in chunks] == ["relu", "leaky_relu"][:WARM_ACTIVATIONS] + ["sigmoid"]
    assert all(k.optimizer == "sgd" and k.spec == spec_of(tr.config) for k in chunks[:-1]) and chunks[-1].spec == GENERIC
    predicts = [k.activation for k in queued if k[0] == "predict"]
    assert predicts == ["sigmoid", "relu", "leaky_relu"][:WARM_ACTIVATIONS + 1]
    tr.update({"activation": "relu"})  # the README demo's switch: its build is the one warmed
    assert tr._key("relu", "sgd", spec_of(tr.config)) == chunks[0]


def test_shape_change_resets_and_names_the_change(cache):
    tr = Trainer(SMALL, cache=cache)
    tr.run(4)
    info = tr.update({"depth": 2})
    assert info == {"kind": "reset", "changes": {"depth": [3, 2]}}
    assert tr.step == 0 and tr.run(1)["grad_norm"].shape == (1, 3)


def test_optimizer_switch_keeps_weights(cache):
    tr = Trainer(SMALL, cache=cache)
    tr.run(2)
    w = tr.state.params["out"]["w"]
    assert tr.update({"optimizer": "adam"})["kind"] == "live"
    assert tr.state.params["out"]["w"] is w and tr.step == 2
    assert np.isfinite(tr.run(2)["loss"]).all()


@pytest.mark.parametrize("bad", [{"activation": "relu6"}, {"depth": 0}, {"width": 4096}, {"colour": 1}, {"batchnorm": "maybe"}])
def test_bad_changes_name_the_field(cache, bad):
    tr = Trainer(SMALL, cache=cache)
    with pytest.raises(ConfigError) as exc:
        tr.update(bad)
    assert exc.value.field == next(iter(bad))
    if "activation" in bad:
        assert "relu" in exc.value.choices and "sigmoid" in exc.value.choices
    assert tr.step == 0 and tr.config.depth == 3  # the trainer is untouched


def test_norm_clipping_invariant(cache):
    tr = Trainer(dict(SMALL, clip_mode="norm", clip_value=0.05, init="he_normal", activation="relu"), cache=cache)
    s = tr.run(10)
    np.testing.assert_allclose(s["clipped_global_grad_norm"], np.minimum(s["global_grad_norm"], 0.05), rtol=1e-5)


def test_histogram_counts_log10_magnitudes_and_samples_large_layers():
    from gradscope.core.train import HIST_EDGES, HIST_SAMPLE, _histogram
    g = jnp.array([1e-13, 0.0, 3e-3, -3e-3, 50.0, 1e6, jnp.nan, jnp.inf])
    h = np.asarray(_histogram(g))
    assert h.sum() == 6 and h[0] == 2 and h[-1] == 1  # zeros and tiny values clamp low, huge high
    assert h[int((np.log10(50.0) - HIST_EDGES[0]) // 0.5)] == 1
    assert h[int((np.log10(3e-3) - HIST_EDGES[0]) // 0.5)] == 2
    big = np.asarray(_histogram(jnp.full((300, 300), 1e-2)))
    assert HIST_SAMPLE // 2 < big.sum() <= HIST_SAMPLE


def test_value_and_norm_clipping_on_gradient_trees():
    grads = {"a": jnp.array([3.0, -0.2, 0.7]), "b": jnp.array([[-5.0, 0.1]])}
    kn = lambda mode, c: Knobs(np.float32(0.01), np.bool_(False), np.bool_(False), np.int32(mode), np.float32(c), np.float32(0.1),
                               np.float32(0), np.float32(0), np.float32(0))
    clipped = clip_gradients(grads, kn(1, 0.5))
    assert max(float(jnp.abs(v).max()) for v in jax.tree.leaves(clipped)) <= 0.5
    assert float(clipped["a"][1]) == pytest.approx(-0.2)
    for c in (0.3, 100.0):
        assert float(optax.tree.norm(clip_gradients(grads, kn(2, c)))) == pytest.approx(min(float(optax.tree.norm(grads)), c), rel=1e-6)
    assert jax.tree.all(jax.tree.map(lambda a, b: bool((a == b).all()), clip_gradients(grads, kn(0, 0.1)), grads))


@pytest.mark.parametrize("name", INITIALIZERS)
@pytest.mark.parametrize("gain", [1.0, 2.0])
def test_initializer_variance(name, gain):
    fan_in, fan_out = 400, 300
    w = init_kernel(name, jax.random.PRNGKey(1), (fan_in, fan_out), gain)
    assert w.shape == (fan_in, fan_out)
    assert float(jnp.var(w)) == pytest.approx(kernel_variance(name, fan_in, fan_out, gain), rel=0.05)
    assert abs(float(jnp.mean(w))) < 0.05 * gain * float(jnp.std(w)) + 1e-3


def test_nonfinite_is_data_not_a_crash(cache):
    tr = Trainer(dict(SMALL, activation="linear", init="standard_normal", init_gain=3.0, learning_rate=10.0), cache=cache)
    s = tr.run(40)
    assert s["nonfinite"].any()
    wire = to_wire(s)
    assert None in wire["loss"] or any(None in row for row in wire["grad_norm"])
    bad = np.flatnonzero(s["nonfinite"])[0]
    assert s["nonfinite_count"][bad:].sum() > 0 or not np.isfinite(s["loss"][bad])
    for record in iter_records(s):
        assert list(record)[0] == "step"


def test_checkpoint_bytes_round_trip(cache):
    a = Trainer(dict(SMALL, optimizer="adam", batchnorm=True), cache=cache)
    a.run(7)
    blob = a.to_bytes()
    b = Trainer(SMALL, cache=cache)
    b.load_bytes(blob)
    assert b.step == 7 and b.config == a.config
    np.testing.assert_array_equal(a.run(5)["loss"], b.run(5)["loss"])


def _first_format(tr, drop_optimizer_leaves=0) -> bytes:
    """A blob as gradscope 0.2 wrote it (arrays in flattening order, no paths), optionally
    with an optimizer state of fewer leaves than this version's (an older chain)."""
    pathed, _ = jax.tree_util.tree_flatten_with_path(tr.state)
    opt = [i for i, (p, _) in enumerate(pathed) if p[0].name == "opt_state"]
    drop = set(opt[:drop_optimizer_leaves])
    leaves = [np.asarray(leaf) for i, (_, leaf) in enumerate(pathed) if i not in drop]
    buf = io.BytesIO()
    np.savez(buf, config=np.frombuffer(tr.config.model_dump_json().encode(), np.uint8), **{f"l{i}": a for i, a in enumerate(leaves)})
    return buf.getvalue()


@pytest.mark.parametrize("dropped", [0, 1])
def test_a_checkpoint_of_the_first_format_loads_its_weights(cache, dropped):
    """Sessions saved by an older version open: their weights and step load; an optimizer
    state of another structure restarts (with the weights kept) instead of failing."""
    a = Trainer(dict(SMALL, optimizer="momentum"), cache=cache)
    a.run(6)
    b = Trainer(SMALL, cache=cache)
    b.load_bytes(_first_format(a, dropped))
    assert b.step == 6 and b.config == a.config
    for x, y in zip(jax.tree.leaves(a.state.params), jax.tree.leaves(b.state.params), strict=True):
        np.testing.assert_array_equal(x, y)
    kept = jax.tree.leaves(b.state.opt_state)
    fresh = jax.tree.leaves(b.family.reset_optimizer(b.state, "momentum").opt_state)
    same_as_saved = all(np.array_equal(x, y) for x, y in zip(kept, jax.tree.leaves(a.state.opt_state), strict=True))
    same_as_fresh = all(np.array_equal(x, y) for x, y in zip(kept, fresh, strict=True))
    assert same_as_saved if dropped == 0 else same_as_fresh


def test_a_checkpoint_of_another_shape_is_refused_by_name(cache):
    a = Trainer(dict(SMALL, width=SMALL["width"] + 2), cache=cache)
    blob = io.BytesIO(a.to_bytes())
    data = dict(np.load(blob))
    data["config"] = np.frombuffer(Trainer(SMALL, cache=cache).config.model_dump_json().encode(), np.uint8)
    out = io.BytesIO()
    np.savez(out, **data)
    with pytest.raises(SnapshotError, match=r"params.*shape"):
        Trainer(SMALL, cache=cache).load_bytes(out.getvalue())


def test_snapshot_restore_rewinds(cache):
    tr = Trainer(SMALL, cache=cache)
    tr.run(3)
    snap = tr.snapshot()
    first = tr.run(4)["loss"]
    tr.restore(snap)
    assert tr.step == 3
    np.testing.assert_array_equal(tr.run(4)["loss"], first)


def test_rrelu_uses_its_mean_slope_at_evaluation(cache):
    tr = Trainer(dict(SMALL, activation="rrelu"), cache=cache)
    p1, p2 = tr.predict(np.asarray(tr.x[:10])), tr.predict(np.asarray(tr.x[:10]))
    np.testing.assert_array_equal(p1, p2)  # deterministic at evaluation
    assert tr.evaluate()["accuracy"] >= 0


def test_decision_grid_for_2d_data_only(cache):
    tr = Trainer(SMALL, cache=cache)
    grid = tr.decision_grid(8)
    assert len(grid["x"]) == 8 and np.asarray(grid["p"]).shape == (8, 8)
    assert Trainer(dict(SMALL, dataset="gaussian", input_dim=5), cache=cache).decision_grid() is None


def test_decision_grid_never_waits_for_a_background_compile():
    """With a background pool, the first call queues the predict compile and answers None."""
    pool = CompileCache(background=True)
    try:
        tr = Trainer(dict(SMALL, depth=2), cache=pool)
        first = tr.decision_grid(6)
        assert first is None or np.asarray(first["p"]).shape == (6, 6)
        assert np.asarray(tr.decision_grid(6, wait=True)["p"]).shape == (6, 6)
    finally:
        pool.close()


def test_prewarm_builds_the_first_session_in_the_background():
    from gradscope.engine import prewarm
    pool = CompileCache(background=True)
    try:
        prewarm(pool, SMALL)
        queued = sorted(k[0] for k in pool._futures)
        # the build for the config's knob values, the generic build, the decision boundary
        assert queued == ["chunk", "chunk", "predict"]
        specs = {k.spec for k in pool._futures if k[0] == "chunk"}
        assert specs == {GENERIC, spec_of(make_config(SMALL))}
        tr = Trainer(SMALL, cache=pool)  # waits for the queued compile instead of starting its own
        assert sorted(k[0] for k in pool._futures) == ["chunk", "chunk", "predict"]
        assert tr.run(2)["loss"].shape == (2,)
    finally:
        pool.close()


KNOBBED = dict(SMALL, batchnorm=True, residual=True, clip_mode="norm", clip_value=0.5, l2=1e-3, dropout=0.2)


@pytest.mark.parametrize("config", [SMALL, KNOBBED], ids=["defaults", "every-knob"])
def test_a_build_for_the_knob_values_trains_as_the_generic_build_does(cache, config):
    """The executable specialized for the structural knobs (BatchNorm, residual, dropout,
    clipping, penalties as constants) computes the same run as the one that takes them traced."""
    own = Trainer(config, cache=cache, specialize=True)
    generic = Trainer(config, cache=cache, specialize=False)
    assert own._executable() is not generic._executable()
    a, b = own.run(6), generic.run(6)
    assert set(a) == set(b)
    for name in a:  # every statistic, the clipping ones included (a build without clipping skips their passes)
        # which entries a scaling by nearly 1 leaves bit-identical depends on rounding: the
        # changed fraction agrees to a percent, not to float precision
        atol = 0.01 if name == "clip_fraction" else 1e-7
        np.testing.assert_allclose(a[name], b[name], rtol=2e-5, atol=atol, err_msg=name)
    for x, y in zip(jax.tree.leaves(own.state), jax.tree.leaves(generic.state), strict=True):
        np.testing.assert_allclose(np.asarray(x, np.float64), np.asarray(y, np.float64), rtol=2e-5, atol=1e-6)


def test_queued_compiles_wait_while_a_run_is_built_and_what_it_waits_for_is_built_at_once():
    """Background compiles hold off while a run is built (its first executable, its timing),
    and a queued one that the run itself needs is built for it rather than left in the queue."""
    pool = CompileCache(background=True)
    try:
        tr = Trainer(SMALL, cache=pool)
        keys = [tr._key(act, "sgd") for act in ("relu", "tanh", "elu")]
        with pool.foreground():
            pool.warm(keys, tr._args(0))
            needed = pool.get(keys[-1], tr._args(0))  # last in the queue: no waiting behind the others
            assert needed is not None and pool.built(keys[0]) is None and pool.built(keys[1]) is None
        assert pool.get(keys[0], None) is not None and pool.get(keys[1], None) is not None  # then the queue runs
    finally:
        pool.close()


def test_a_knob_change_trains_at_once_and_moves_to_its_own_build_when_ready():
    pool = CompileCache(background=True)
    try:
        tr = Trainer(SMALL, cache=pool, warm=True)
        first = tr._executable()
        tr.run(2)
        tr.update({"batchnorm": True})
        assert tr.run(2)["loss"].shape == (2,)  # trains on the generic build (or its own, if already built)
        own = tr._key(tr.config.activation, tr.config.optimizer, spec_of(tr.config))
        pool.get(own, None)  # queued by the change: wait for its background compile
        assert tr._executable() is pool.built(own) and tr._executable() is not first
        assert tr.run(2)["loss"].shape == (2,)
    finally:
        pool.close()


def test_measuring_every_kth_step_keeps_the_run_and_summarizes_the_steps_between(cache):
    """Rows at every k-th step (and the last of each call) carry that step's statistics,
    exactly as a run measuring every step has them; loss and accuracy average the steps a
    row covers; the training itself does not depend on what is measured."""
    every, dense = Trainer(SMALL, cache=cache, stats_every=4), Trainer(SMALL, cache=cache)
    a = every.run(10)
    b = dense.run(10)
    assert a["step"].tolist() == [3, 7, 9] and a["count"].tolist() == [4, 4, 2]
    assert b["step"].tolist() == list(range(10)) and (b["count"] == 1).all()
    for name in ("grad_norm", "delta_norm", "weight_norm", "hist", "z_hist", "init_distance"):
        np.testing.assert_allclose(a[name], b[name][[3, 7, 9]], rtol=1e-6, err_msg=name)
    np.testing.assert_allclose(a["loss"], [b["loss"][:4].mean(), b["loss"][4:8].mean(), b["loss"][8:].mean()], rtol=1e-6)
    np.testing.assert_allclose(a["accuracy"][2], b["accuracy"][8:].mean(), rtol=1e-6)
    assert np.isfinite(a["val_loss"][0]) and np.isnan(a["val_loss"][1:]).all()  # step 0 is a held-out step
    assert a["val_loss"][0] == b["val_loss"][0]
    for x, y in zip(jax.tree.leaves(every.state.params), jax.tree.leaves(dense.state.params), strict=True):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


def test_a_run_that_breaks_between_measured_steps_ends_at_that_step_measured(cache):
    config = dict(SMALL, activation="linear", init="standard_normal", init_gain=3.0, learning_rate=10.0)
    dense = Trainer(config, cache=cache).run(40)
    bad = np.flatnonzero(dense["nonfinite"])
    assert bad.size, "this setup must diverge within 40 steps"
    first = int(dense["step"][bad[0]])
    tr = Trainer(config, cache=cache, stats_every=64)
    rows = tr.run(40)
    assert rows["nonfinite"][-1] and not rows["nonfinite"][:-1].any()
    assert int(rows["step"][-1]) == first and tr.step == first + 1  # stopped there, that step measured
    np.testing.assert_array_equal(rows["nonfinite_count"][-1], dense["nonfinite_count"][bad[0]])
