"""Attaching to the user's own loop: `gradscope.optax.monitor`, `gradscope.attach`, `gradscope.probe`.

Every statistic is checked against an independent computation (numpy over `jax.grad`'s
gradients), knob changes against the update they must change, and the host side against
a sink that fails and a reader that lags.
"""
from __future__ import annotations

import json
import threading

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import gradscope
from gradscope import optax as gso

SIZES = (5, 16, 16, 16, 3)


def mlp_params(key, sizes=SIZES, scale=1.0):
    """A plain-dict MLP: {"w0": ..., "b0": ..., ...}: every leaf at the top level (its own layer)."""
    keys = jax.random.split(key, len(sizes))
    return [{"w": scale * jax.random.normal(k, (a, b)) / np.sqrt(a), "b": jnp.zeros(b)}
            for k, a, b in zip(keys, sizes[:-1], sizes[1:], strict=False)]


def forward(params, x, zeros=None, act=jnp.tanh, probed=False):
    """The MLP; `zeros` (one per hidden layer) are added to z so that their gradient is dL/dz."""
    h = x
    for i, layer in enumerate(params):
        z = h @ layer["w"] + layer["b"]
        if i == len(params) - 1:
            return z
        if zeros is not None:
            z = z + zeros[i]
        if probed:
            z = gradscope.probe(z, f"z{i}")
        h = act(z)


def loss_fn(params, x, y, **kw):
    return optax.softmax_cross_entropy_with_integer_labels(forward(params, x, **kw), y).mean()


def data(n=64):
    kx, ky = jax.random.split(jax.random.PRNGKey(1))
    return jax.random.normal(kx, (n, SIZES[0])), jax.random.randint(ky, (n,), 0, SIZES[-1])


def make_step(tx, **kw):
    @jax.jit
    def step(params, state, x, y):
        loss, grads = jax.value_and_grad(loss_fn)(params, x, y, **kw)
        updates, state = tx.update(grads, state, params)
        return optax.apply_updates(params, updates), state, loss
    return step


def sgd_loop(**monitor_kw):
    """(params, x, y, step, state): the MLP, its data, a jitted step under monitor(optax.sgd, lr 0.1), its first state."""
    params = mlp_params(jax.random.PRNGKey(0))
    tx = gso.monitor(optax.sgd, learning_rate=0.1, **monitor_kw)
    return (params, *data(), make_step(tx), tx.init(params))


def norms(tree_list):
    return np.array([np.sqrt(sum(float(np.sum(np.square(np.asarray(v)))) for v in layer.values())) for layer in tree_list])


@pytest.mark.parametrize("clip,threshold", [(None, None), ("global_norm", 0.05), ("value", 0.001)])
def test_the_statistics_equal_an_independent_computation(clip, threshold):
    params = mlp_params(jax.random.PRNGKey(0))
    x, y = data()
    lr = 0.1
    tx = gso.monitor(optax.sgd, learning_rate=lr, clip=clip, clip_value=threshold)
    state = tx.init(params)
    new, state, _ = make_step(tx)(params, state, x, y)
    got = gso.unpack(state.stats, len(params))

    grads = jax.grad(loss_fn)(params, x, y)
    g = norms(grads)
    if clip == "global_norm":
        total = np.sqrt(np.sum(g ** 2))
        clipped = [{k: np.asarray(v) * min(1.0, threshold / total) for k, v in layer.items()} for layer in grads]
    elif clip == "value":
        clipped = [{k: np.clip(np.asarray(v), -threshold, threshold) for k, v in layer.items()} for layer in grads]
    else:
        clipped = grads
    c = norms(clipped)
    w = norms(params)
    np.testing.assert_allclose(got["grad_norm"], g, rtol=1e-5)
    np.testing.assert_allclose(got["clipped_grad_norm"], c, rtol=1e-5)
    np.testing.assert_allclose(got["weight_norm"], w, rtol=1e-5)
    np.testing.assert_allclose(got["update_norm"], lr * c, rtol=1e-5)  # sgd: the update is -lr x the clipped gradient
    np.testing.assert_allclose(got["update_ratio"], lr * c / w, rtol=1e-5)
    np.testing.assert_allclose(got["global_grad_norm"], np.sqrt(np.sum(g ** 2)), rtol=1e-5)
    np.testing.assert_allclose(got["clipped_global_grad_norm"], np.sqrt(np.sum(c ** 2)), rtol=1e-5)
    assert got["clip_fraction"] == pytest.approx(1 - np.sqrt(np.sum(c ** 2)) / np.sqrt(np.sum(g ** 2)), abs=1e-5)
    if clip is not None:
        assert got["clip_fraction"] > 0.05  # the thresholds above do cut
    assert not got["nonfinite"] and not got["nonfinite_count"].any()
    # and the step is the one the user asked for: the monitor changes nothing in the update
    plain = optax.chain(*([] if clip is None else [gso.CLIPS[clip][0](threshold)]), optax.sgd(lr))
    ref, _ = plain.update(grads, plain.init(params), params)
    for a, b in zip(jax.tree_util.tree_leaves(optax.apply_updates(params, ref)), jax.tree_util.tree_leaves(new), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)  # jit against eager: float32 rounding


def test_adaptive_clipping_is_measured_before_and_after():
    params = mlp_params(jax.random.PRNGKey(0), scale=0.01)
    x, y = data()
    tx = gso.monitor(optax.adam, learning_rate=1e-3, clip="agc", clip_value=0.01)
    _, state, _ = make_step(tx)(params, tx.init(params), x, y)
    grads = jax.grad(loss_fn)(params, x, y)
    clipped, _ = optax.adaptive_grad_clip(0.01).update(grads, None, params)
    got = gso.unpack(state.stats, len(params))
    np.testing.assert_allclose(got["clipped_grad_norm"], norms(clipped), rtol=1e-5)
    assert np.all(got["clipped_grad_norm"] <= got["grad_norm"] * (1 + 1e-6))
    assert np.any(got["clipped_grad_norm"] < 0.5 * got["grad_norm"])


def test_probes_record_the_deltas_dl_dz_of_an_independent_computation(tmp_path):
    params = mlp_params(jax.random.PRNGKey(0))
    x, y = data()
    tx = gso.monitor(optax.sgd, learning_rate=0.1)
    step = make_step(tx, probed=True)
    state = tx.init(params)
    with gradscope.attach("probes", out=tmp_path / "run.jsonl") as gs:
        before = params
        params, state, loss = step(params, state, x, y)
        jax.block_until_ready(state)
        state = gs.publish(0, state, loss=loss)
        assert gs.flush(timeout=60)
    zeros = [jnp.zeros((x.shape[0], n)) for n in SIZES[1:-1]]
    dz = jax.grad(lambda z: loss_fn(before, x, y, zeros=z))(zeros)
    record = gs.records[-1]
    assert record["probes"] == ["z0", "z1", "z2"]  # forward order, whatever order the backward pass ran in
    np.testing.assert_allclose(record["delta_norm"], [float(jnp.linalg.norm(d)) for d in dz], rtol=1e-5)
    assert record["loss"] == pytest.approx(float(loss_fn(before, x, y)), rel=1e-6)


def test_a_knob_change_from_another_thread_reaches_the_next_update_without_a_recompile(tmp_path):
    params = mlp_params(jax.random.PRNGKey(0))
    x, y = data()
    tx = gso.monitor(optax.sgd, learning_rate=0.01, clip="global_norm", clip_value=100.0)
    step = make_step(tx)
    state = tx.init(params)
    with gradscope.attach("knobs", out=tmp_path / "knobs.jsonl") as gs:
        params, state, _ = step(params, state, x, y)
        state = gs.publish(0, state)
        assert gs.knobs == pytest.approx({"learning_rate": 0.01, "clip_value": 100.0})
        asker = threading.Thread(target=gs.request, kwargs={"learning_rate": 0.5, "clip_value": 0.01})
        asker.start()
        asker.join()
        state = gs.publish(1, state)
        assert gso.hyperparams(state) == pytest.approx({"learning_rate": 0.5, "clip_value": 0.01})
        params, state, _ = step(params, state, x, y)
        got = gso.unpack(state.stats, len(params))
        assert step._cache_size() == 1  # state, not constants: the same executable
        np.testing.assert_allclose(got["clipped_global_grad_norm"], 0.01, rtol=1e-4)
        np.testing.assert_allclose(got["update_norm"], 0.5 * got["clipped_grad_norm"], rtol=1e-5)
        with pytest.raises(ValueError, match="momentum: not a knob.*learning_rate"):
            gs.request(momentum=0.9)
        for bad in (-0.1, float("nan"), "0.1", True):
            with pytest.raises(ValueError, match="learning_rate: .* is not a finite number >= 0"):
                gs.request(learning_rate=bad)


def test_nonfinite_gradients_are_data_not_a_crash(tmp_path):
    params = mlp_params(jax.random.PRNGKey(0))
    params[1]["w"] = params[1]["w"].at[0, 0].set(jnp.inf)
    x, y = data()
    tx = gso.monitor(optax.sgd, learning_rate=0.1)
    with gradscope.attach("nan", out=tmp_path / "nan.jsonl") as gs:
        _, state, loss = make_step(tx)(params, tx.init(params), x, y)
        gs.publish(0, state, loss=loss)
    lines = (tmp_path / "nan.jsonl").read_text().splitlines()
    record = json.loads(lines[1])  # strict JSON: NaN and Inf are written as null
    grads = jax.grad(loss_fn)(params, x, y)
    expected = [sum(int(np.sum(~np.isfinite(np.asarray(v)))) for v in layer.values()) for layer in grads]
    assert sum(expected) > 0
    assert record["nonfinite"] is True
    assert record["nonfinite_count"] == expected
    assert [g is None for g in record["grad_norm"]] == [n > 0 for n in expected]
    assert record["weight_norm"][1] is None and record["weight_norm"][0] is not None


def test_the_file_has_the_header_then_one_record_per_published_step(tmp_path):
    params = mlp_params(jax.random.PRNGKey(0))
    x, y = data()
    tx = gso.monitor(optax.adam, learning_rate=1e-3)
    step = make_step(tx)
    state = tx.init(params)
    with gradscope.attach("my run", out=tmp_path / "run.jsonl", every=2) as gs:
        for i in range(6):
            params, state, loss = step(params, state, x, y)
            state = gs.publish(i, state, loss=loss, metrics={"accuracy": jnp.asarray(0.5)})
        gs.request(learning_rate=0.002)
        state = gs.publish(6, state)
    header, *rows = [json.loads(line) for line in (tmp_path / "run.jsonl").read_text().splitlines()]
    assert header["attached"]["name"] == "my run"
    assert header["attached"]["layers"] == ["0", "1", "2", "3"]
    assert header["attached"]["knobs"] == {"learning_rate": pytest.approx(1e-3)}
    assert header["version"] == gradscope.__version__
    records = [r for r in rows if "set" not in r]
    assert [r["step"] for r in records] == [0, 2, 4, 6]
    assert all(r["accuracy"] == 0.5 for r in records[:3])
    assert rows[-1] == {"step": 6, "set": {"learning_rate": 0.002}}


def test_a_failing_sink_is_logged_once_and_the_run_goes_on(tmp_path, caplog):
    params, x, y, step, state = sgd_loop()
    (tmp_path / "taken").mkdir()
    with gradscope.attach("sink", out=tmp_path / "taken") as gs:  # a directory: opening it for writing fails
        for i in range(3):
            params, state, _ = step(params, state, x, y)
            state = gs.publish(i, state)
        assert gs.flush(timeout=60)
    assert len(gs.records) == 3
    assert sum("writing" in r.getMessage() and r.levelname == "WARNING" for r in caplog.records) == 1


def test_a_lagging_reader_drops_frames_instead_of_queueing_them(tmp_path, monkeypatch):
    params, x, y, step, state = sgd_loop()
    states = []
    for _ in range(6):
        params, state, _ = step(params, state, x, y)
        states.append(state)
    release = threading.Event()
    gs = gradscope.Run("lag", None, queue_frames=2)
    real = gs._record
    monkeypatch.setattr(gs, "_record", lambda *a: (release.wait(), real(*a))[1])
    for i, state in enumerate(states):
        gs.publish(i, state)
    assert gs.published + gs.dropped == 6
    assert gs.dropped >= 3  # the reader holds one frame, the queue two
    release.set()
    gs.close()
    assert len(gs.records) == gs.published
    updates = [r["update"] for r in gs.records]
    assert updates[0] == 0 and updates == sorted(set(updates))  # in order, none twice


def test_every_nth_update_is_measured_and_recorded_once(tmp_path):
    params, x, y, step, state = sgd_loop(every=3)
    with gradscope.attach("every", out=tmp_path / "every.jsonl") as gs:
        for i in range(7):
            before = params
            params, state, _ = step(params, state, x, y)
            if i == 3:
                expected = norms(jax.grad(loss_fn)(before, x, y))
            state = gs.publish(i, state)
    assert [r["update"] for r in gs.records] == [0, 3, 6]
    assert [r["step"] for r in gs.records] == [0, 3, 6]
    np.testing.assert_allclose(gs.records[1]["grad_norm"], expected, rtol=1e-5)


@pytest.mark.parametrize("tree,names", [
    ({"params": {f"Dense_{i}": {"kernel": np.ones((2, 2)), "bias": np.ones(2)} for i in range(12)}},
     [f"Dense_{i}" for i in range(12)]),  # linen: numbered in order (not Dense_10 after Dense_1), no `params/`
    ({"encoder": {"kernel": np.ones(2)}, "decoder": {"kernel": np.ones(2)}}, ["decoder", "encoder"]),
    ({"layers": {0: {"kernel": {"value": np.ones(2)}, "bias": {"value": np.ones(2)}},
                 1: {"kernel": {"value": np.ones(2)}}}}, ["layers/0", "layers/1"]),  # nnx: Variable values
    ([(np.ones(2), np.ones(2)), (np.ones(2), None)], ["0", "1"]),  # tuples; None (frozen) is no leaf
    ({"block": {"conv": {"w": np.ones(2)}, "scale": np.float32(1.0)}, "temperature": np.float32(2.0)},
     ["block", "block/conv", "temperature"]),  # a scalar is a parameter of its parent's layer
    ({"w": np.ones(3)}, ["w"]),
    ({}, []),
])
def test_odd_pytrees_get_readable_layer_names(tree, names):
    assert gso.layer_names(tree) == names


def test_an_equinox_model_is_named_from_its_fields():
    eqx = pytest.importorskip("equinox")
    model = eqx.nn.MLP(4, 2, width_size=8, depth=11, key=jax.random.PRNGKey(0))
    names = gso.layer_names(eqx.filter(model, eqx.is_array))
    assert names == [f"layers/{i}" for i in range(12)]


def test_bad_arguments_name_the_field_and_the_choices():
    with pytest.raises(ValueError, match=r"clip: 'norm' is not one of \['agc', 'global_norm', 'value'\]"):
        gso.monitor(optax.sgd, learning_rate=0.1, clip="norm", clip_value=1.0)
    with pytest.raises(ValueError, match="clip_value: clip='value' needs a threshold"):
        gso.monitor(optax.sgd, learning_rate=0.1, clip="value")
    with pytest.raises(ValueError, match="learning_rate: pass the factory"):
        gso.monitor(optax.sgd(0.1), learning_rate=0.1)
    tx = gso.monitor(optax.sgd(0.1))  # built: monitored, its learning rate not a knob
    state = tx.init({"w": jnp.ones(2)})
    assert gso.hyperparams(state) == {}
    with pytest.raises(ValueError, match="learning_rate: this run exposes no knobs"):
        gso.set_hyperparams(state, {"learning_rate": 0.1})
    with pytest.raises(ValueError, match="params: gradscope's monitor"):
        tx.update({"w": jnp.ones(2)}, state)
    with pytest.raises(ValueError, match="every"):
        gradscope.attach("x", every=0)


def test_monitor_inside_a_chain_is_found_and_its_knobs_set():
    params = {"w": jnp.ones(3)}
    tx = optax.chain(optax.add_decayed_weights(1e-4), gso.monitor(optax.sgd, learning_rate=0.1))
    state = tx.init(params)
    assert gso.hyperparams(state) == pytest.approx({"learning_rate": 0.1})
    state = gso.set_hyperparams(state, {"learning_rate": 0.25})
    updates, state = tx.update({"w": jnp.ones(3)}, state, params)
    np.testing.assert_allclose(updates["w"], -0.25 * (1 + 1e-4), rtol=1e-6)


def test_the_equinox_example_trains_and_records(tmp_path):
    """examples/equinox_mlp.py as a user runs it: it learns digits, the file has a record per step."""
    pytest.importorskip("equinox")
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    out = tmp_path / "run.jsonl"
    done = subprocess.run([sys.executable, str(root / "examples" / "equinox_mlp.py"), "--steps", "150", "--out", str(out)],
                          capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout.splitlines()[-1])
    assert summary["loss"] < 1.0 and summary["dropped"] == 0
    header, *records = [json.loads(line) for line in out.read_text().splitlines()]
    assert header["attached"]["layers"] == [f"layers/{i}" for i in range(9)]
    assert [r["step"] for r in records] == list(range(150))
    assert records[-1]["probes"] == [f"z{i}" for i in range(8)] and len(records[-1]["delta_norm"]) == 8


def test_a_flax_nnx_cnn_is_named_in_forward_order_and_its_norms_match_jax_grad():
    """nnx params (State of Param nodes) as a user splits them: conv kernels (k*k*C_in*C_out) and
    biases measured per layer, equal to norms of an independent jax.grad; linen's names too."""
    nnx = pytest.importorskip("flax.nnx")
    linen = pytest.importorskip("flax.linen")

    class CNN(nnx.Module):
        def __init__(self, rngs):
            self.convs = nnx.List([nnx.Conv(c, 4, (3, 3), rngs=rngs) for c in (1, 4, 4)])
            self.head = nnx.Linear(4, 3, rngs=rngs)

        def __call__(self, x):
            for conv in self.convs:
                x = jnp.tanh(conv(x))
            return self.head(x.mean(axis=(1, 2)))

    graphdef, params = nnx.split(CNN(nnx.Rngs(0)), nnx.Param)
    assert gso.layer_names(params) == ["convs/0", "convs/1", "convs/2", "head"]
    x = jax.random.normal(jax.random.PRNGKey(1), (5, 6, 6, 1))
    y = jnp.array([0, 1, 2, 0, 1])
    loss = lambda p: optax.softmax_cross_entropy_with_integer_labels(nnx.merge(graphdef, p)(x), y).mean()
    tx = gso.monitor(optax.sgd, learning_rate=0.1)
    grads = jax.grad(loss)(params)
    _, state = jax.jit(tx.update)(grads, tx.init(params), params)
    got = gso.unpack(gso.find_state(state).stats, 4)
    plain = jax.grad(lambda p: loss(p))(params)  # independent: per layer, the norm over its kernel and bias
    layers = [plain["convs"][i] for i in range(3)] + [plain["head"]]
    want = [np.sqrt(sum(float(jnp.sum(jnp.square(leaf))) for leaf in jax.tree_util.tree_leaves(layer))) for layer in layers]
    np.testing.assert_allclose(got["grad_norm"], want, rtol=1e-5)
    np.testing.assert_allclose(got["update_norm"], 0.1 * np.asarray(want), rtol=1e-5)

    class Linen(linen.Module):
        @linen.compact
        def __call__(self, x):
            for _ in range(11):
                x = linen.Conv(4, (3, 3))(x)
            return linen.Dense(3)(x.mean(axis=(1, 2)))

    variables = Linen().init(jax.random.PRNGKey(0), x)
    assert gso.layer_names(variables) == [f"Conv_{i}" for i in range(11)] + ["Dense_0"]  # Conv_10 after Conv_9


def test_the_flax_example_trains_and_records(tmp_path):
    """examples/flax_cnn.py as a user runs it: a CNN learns digits; a record per step, convs named in order."""
    pytest.importorskip("flax.nnx")
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    out = tmp_path / "run.jsonl"
    done = subprocess.run([sys.executable, str(root / "examples" / "flax_cnn.py"), "--steps", "150", "--depth", "4", "--out", str(out)],
                          capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout.splitlines()[-1])
    assert summary["loss"] < 1.0 and summary["dropped"] == 0
    header, *records = [json.loads(line) for line in out.read_text().splitlines()]
    assert header["attached"]["layers"] == ["convs/0", "convs/1", "convs/2", "convs/3", "head"]
    assert [r["step"] for r in records] == list(range(150))
    assert records[-1]["probes"] == [f"conv{i}" for i in range(4)] and len(records[-1]["delta_norm"]) == 4
