"""The recurrent models through the engine, the config rules, the CLI and the HTTP API."""

import json

import numpy as np
import pytest

from gradscope.config import ConfigError, make_config
from gradscope.core.train_rnn import group_names
from gradscope.engine import Trainer
from test_cli import gradscope

SMALL = dict(model="rnn", dataset="adding", seq_len=12, width=8, batch_size=16, activation="tanh", optimizer="adam", learning_rate=0.01)


@pytest.mark.parametrize("values,field,choice", [
    (dict(model="lstm", dataset="spirals"), "dataset", "adding"),  # a dataset that is not a sequence (given none: adding)
    (dict(dataset="copy"), "dataset", "spirals"),
    (dict(model="gru", dataset="adding", batchnorm=True), "batchnorm", "seq_len"),  # not taken: the keys it takes
    (dict(model="lstm", dataset="adding", residual=True), "residual", "forget_bias"),
    (dict(model="rnn", dataset="adding", activation="prelu"), "activation", "tanh"),
    (dict(model="rnn", dataset="adding", depth=5), "depth", 4),
    (dict(model="rnn", dataset="digits", seq_len=10), "seq_len", 8),
    (dict(model="rnn", dataset="copy", seq_len=6), "seq_len", None),
    (dict(model="lstm", dataset="adding", seq_len=1000, width=1024, batch_size=64), "seq_len", None),
    (dict(init="identity"), "init", "orthogonal"),
])
def test_keys_that_do_not_fit_the_model_are_named_with_their_choices(values, field, choice):
    with pytest.raises(ConfigError) as info:
        make_config(values)
    assert info.value.field == field
    assert choice is None or choice in info.value.choices


def test_a_recurrent_model_defaults_to_one_layer_and_accepts_identity():
    c = make_config(dict(model="lstm", dataset="adding", init="identity"))
    assert c.depth == 1 and c.seq_len == 50 and c.forget_bias == 1.0


def test_live_knobs_keep_weights_and_shape_keys_reset(compile_cache):
    tr = Trainer(SMALL, chunk_steps=4, cache=compile_cache)
    first = tr.run(4)
    assert first["time_delta_norm"].shape == (4, 1, 12) and first["grad_norm"].shape == (4, len(group_names("rnn", 1)))
    w = np.asarray(tr.state.params["layers"][0]["w_hh"])
    for change in ({"activation": "relu"}, {"clip_mode": "norm", "clip_value": 1e-3}, {"optimizer": "sgd"}, {"l2": 0.01}):
        assert tr.update(change)["kind"] == "live" and tr.step == 4
    np.testing.assert_array_equal(np.asarray(tr.state.params["layers"][0]["w_hh"]), w)
    clipped = tr.run(2)
    np.testing.assert_allclose(clipped["clipped_global_grad_norm"], 1e-3, rtol=1e-4)
    assert (clipped["penalty"] > 0).all() and np.isfinite(clipped["loss"]).all()
    assert tr.update({"model": "gru"})["kind"] == "reset" and tr.step == 0
    s = tr.run(2)
    assert s["gate_saturation"].shape == (2, 1, 3) and s["forget_gate_mean"].shape == (2, 1)
    assert tr.update({"model": "mlp", "dataset": "spirals"})["kind"] == "reset"
    assert tr.run(1)["delta_norm"].shape == (1, tr.config.depth + 1)


def test_checkpoint_round_trip_and_evaluation(compile_cache):
    tr = Trainer({**SMALL, "model": "lstm"}, chunk_steps=4, cache=compile_cache)
    tr.run(4)
    blob, before = tr.to_bytes(), tr.evaluate()
    other = Trainer({**SMALL, "model": "lstm", "seed": 3}, chunk_steps=4, cache=compile_cache)
    other.load_bytes(blob)
    assert other.step == 4 and other.evaluate()["loss"] == pytest.approx(before["loss"], rel=1e-6)
    assert before["baseline"] == pytest.approx(1 / 6) and 0.0 < before["loss"] < 3.0


def test_cli_writes_the_recurrent_statistics(tmp_path):
    out = tmp_path / "run.jsonl"
    proc = gradscope("run", "--set", "model=lstm", "--set", "dataset=adding", "--set", "seq_len=50", "--set", "width=8",
                     "--set", "batch_size=8", "--steps", "4", "--every", "2", "--out", str(out), tmp_path=tmp_path)
    assert proc.returncode == 0, proc.stderr
    header, *records = [json.loads(line) for line in out.read_text().splitlines()]
    assert header["config"]["model"] == "lstm" and header["recurrent"]["gates"] == ["i", "f", "g", "o"]
    assert header["recurrent"]["groups"] == group_names("lstm", 1) and header["recurrent"]["baseline"] == pytest.approx(1 / 6)
    assert [r["step"] for r in records] == [1, 3] and [r["count"] for r in records] == [2, 2]  # rows of --every 2 steps
    r = records[0]
    assert len(r["time_delta_norm"]) == 1 and len(r["time_delta_norm"][0]) == 50
    assert len(r["grad_norm"]) == len(header["recurrent"]["groups"]) and len(r["spectral_radius"][0]) == 4
    assert r["forget_gate_mean"][0] == pytest.approx(0.73, abs=0.03)  # sigmoid(forget_bias 1) at initialization (step 1: one update later)
    assert r["accuracy"] is None  # a regression: accuracy does not apply
    assert {"loss", "baseline", "global_grad_norm", "clipped_global_grad_norm", "update_ratio", "weight_norm",
            "gate_saturation", "gate_mean", "nonfinite", "nonfinite_count"} <= set(r)


def test_http_answers_a_set_that_does_not_fit_the_model_with_422(client):
    r = client.post("/api/sessions", json={"model": "gru", "dataset": "adding", "batchnorm": True, "paused": True})
    assert r.status_code == 422 and r.json()["detail"][0]["field"] == "batchnorm"
    r = client.post("/api/sessions", json={**SMALL, "paused": True})
    assert r.status_code == 201, r.text
    d = r.json()
    headers = {"Authorization": f"Bearer {d['token']}"}
    r = client.post(f"/api/sessions/{d['id']}/config", json={"changes": {"residual": True}}, headers=headers)
    assert r.status_code == 422 and r.json()["detail"][0]["field"] == "residual"
    r = client.post(f"/api/sessions/{d['id']}/config", json={"changes": {"dataset": "moons"}}, headers=headers)
    assert r.status_code == 422 and r.json()["detail"][0]["choices"] == ["adding", "copy", "parity", "digits"]
    m = client.get("/api/meta").json()
    assert m["models"] == ["mlp", "rnn", "lstm", "gru", "cnn", "gan", "attached"]
    assert m["families"]["recurrent"]["gates"]["gru"] == ["r", "z", "n"]


def test_a_running_recurrent_session_streams_time_statistics_and_takes_live_switches(live_server):
    from conftest import recv_until
    from test_server_ws import create, of_type, ws_connect

    srv = live_server()
    d = create(srv, **{**SMALL, "depth": 2})
    with ws_connect(srv, d) as ws:
        hello = recv_until(ws, of_type("hello"))
        assert hello["meta"]["families"]["recurrent"]["gates"]["lstm"] == ["i", "f", "g", "o"]
        stats = recv_until(ws, of_type("stats"))
        assert len(stats["time_delta_norm"][0]) == 2 and len(stats["time_delta_norm"][0][0]) == 12
        assert len(stats["theory_factor"][0]) == 2 and len(stats["grad_norm"][0]) == len(group_names("rnn", 2))
        ws.send(json.dumps({"type": "set", "id": "a", "changes": {"activation": "relu", "clip_mode": "norm", "clip_value": 1e-4}}))
        ack = recv_until(ws, of_type("ack", id="a"))
        assert ack["applied"]["kind"] == "live"
        after = recv_until(ws, lambda m: m["type"] == "stats" and m["step"][0] > ack["step"])
        assert all(abs(v - 1e-4) < 1e-8 for v in after["clipped_global_grad_norm"])
        ws.send(json.dumps({"type": "set", "id": "o", "changes": {"optimizer": "sgd", "learning_rate": 0.05}}))
        ack = recv_until(ws, of_type("ack", id="o"))
        assert ack["applied"] == {"kind": "live", "changes": {"optimizer": ["adam", "sgd"], "learning_rate": [0.01, 0.05]}}
        after = recv_until(ws, lambda m: m["type"] == "stats" and m["step"][0] > ack["step"])
        assert all(v is not None for v in after["loss"])  # trains on under SGD, from the same weights (live)
        ws.send(json.dumps({"type": "set", "id": "b", "changes": {"batchnorm": True}}))
        err = recv_until(ws, of_type("error", id="b"))
        assert err["field"] == "batchnorm" and "seq_len" in err["choices"] and "batchnorm" not in err["choices"]
