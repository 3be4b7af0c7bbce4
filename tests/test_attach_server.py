"""An attached run on the server: the user's loop posts to a session, the page's knobs reach back.

The loops here are what a user writes: a jitted step over a plain-dict MLP, its optimizer
wrapped in `gradscope.optax.monitor`, `gradscope.attach(server=...)` and `publish` after each
step. The server is real (uvicorn on loopback, in a thread or, to be killed, in its own process).
"""
from __future__ import annotations

import json
import signal

import httpx
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import gradscope
from conftest import recv_until, ws_open
from gradscope import cli
from gradscope import optax as gso
from test_monitor import data, loss_fn, make_step, mlp_params

LAYERS = ["0", "1", "2", "3"]  # the plain list of {"w", "b"} of test_monitor's MLP


def owner(token: str) -> dict:
    return {"Authorization": f"Bearer {token}"}


def publish_steps(gs, step, params, state, x, y, start: int, n: int):
    for i in range(start, start + n):
        params, state, loss = step(params, state, x, y)
        state = gs.publish(i, state, loss=loss)
    return params, state


def loop(lr=0.05, probed=False):
    tx = gso.monitor(optax.sgd, learning_rate=lr)
    params = mlp_params(jax.random.PRNGKey(0))
    return tx, params, tx.init(params), make_step(tx, probed=probed)


def test_a_monitored_loop_is_a_session_with_the_statistics_it_published(live_server):
    srv = live_server()
    x, y = data()
    tx, params, state, step = loop(probed=True)
    p0 = params
    gs = gradscope.attach("my run", server=srv.url)
    params, state = publish_steps(gs, step, params, state, x, y, 0, 12)
    assert gs.flush(60)
    sid = gs.remote.sid
    assert gs.link == f"{srv.url}/s/{sid}" and gs.remote.owner_url.endswith(f"#token={gs.remote.token}")
    info = httpx.get(f"{srv.url}/api/sessions/{sid}").json()
    assert info["config"]["model"] == "attached" and info["config"]["layers"] == LAYERS
    assert info["config"]["probes"] == ["z0", "z1", "z2"] and info["config"]["knobs"] == ["learning_rate"]
    assert info["config"]["learning_rate"] == pytest.approx(0.05) and info["status"] == "running"
    hist = httpx.get(f"{srv.url}/api/sessions/{sid}/history").json()
    assert hist["step"] == list(range(12))
    recs = {r["step"]: r for r in gs.records}
    for k in ("grad_norm", "weight_norm", "update_ratio"):
        np.testing.assert_allclose(np.asarray(hist[k], float), [recs[s][k] for s in range(12)], rtol=1e-6)
    # a probe's value comes from a host callback beside the step: a record fetched after the loop ran
    # ahead has none (docs/attach.md), and the session shows a gap (null) there
    # (or some of its probes only): the session holds each probe's value under its name, null where none came
    names = ["z0", "z1", "z2"]
    for s in range(12):
        got = dict(zip(recs[s].get("probes", []), recs[s].get("delta_norm", []), strict=True))
        want = [got.get(n) for n in names]
        assert [v is None for v in hist["delta_norm"][s]] == [v is None for v in want]
        np.testing.assert_allclose([v for v in hist["delta_norm"][s] if v is not None], [v for v in want if v is not None],
                                   rtol=1e-6)
    assert any("delta_norm" in r for r in recs.values())
    # step 0's per-layer gradient norms against an independent jax.grad
    grads = jax.grad(loss_fn)(p0, x, y)
    expect = [np.sqrt(sum(float(jnp.sum(g ** 2)) for g in layer.values())) for layer in grads]
    np.testing.assert_allclose(hist["grad_norm"][0], expect, rtol=1e-5)
    # a viewer of the session gets the same frames a built-in run's viewer gets
    with ws_open(srv, sid) as ws:
        hello = recv_until(ws, lambda m: m["type"] == "hello")
        assert hello["role"] == "viewer" and hello["config"]["layers"] == LAYERS
        params, state = publish_steps(gs, step, params, state, x, y, 12, 4)
        gs.flush(60)
        frame = recv_until(ws, lambda m: m["type"] == "stats")
        assert len(frame["grad_norm"][0]) == len(LAYERS) and frame["step"][-1] <= 15
    gs.close()
    assert httpx.get(f"{srv.url}/api/sessions/{sid}").json()["status"] == "paused"  # the script finished


def test_a_page_change_of_the_learning_rate_reaches_the_scripts_next_update(live_server):
    srv = live_server()
    x, y = data()
    tx, params, state, step = loop(lr=0.01)
    gs = gradscope.attach("lr", server=srv.url)
    params, state = publish_steps(gs, step, params, state, x, y, 0, 3)
    gs.flush(60)
    sid, token = gs.remote.sid, gs.remote.token
    r = httpx.post(f"{srv.url}/api/sessions/{sid}/config", json={"changes": {"learning_rate": 0.5}}, headers=owner(token))
    assert r.status_code == 200 and r.json()["applied"]["changes"]["learning_rate"][1] == 0.5
    # the change travels back in the reply to the script's next post, and the publish after it applies it
    i = 3
    while gso.hyperparams(state)["learning_rate"] != pytest.approx(0.5):
        assert i < 50, "the page's learning rate never reached the script"
        params, state = publish_steps(gs, step, params, state, x, y, i, 1)
        gs.flush(60)
        i += 1
    params, state = publish_steps(gs, step, params, state, x, y, i, 1)
    gs.flush(60)
    rec = gs.records[-1]  # SGD: the update is lr x the gradient, layer by layer
    np.testing.assert_allclose(np.asarray(rec["update_norm"]) / np.asarray(rec["grad_norm"]), 0.5, rtol=1e-4)
    assert rec["knobs"]["learning_rate"] == pytest.approx(0.5)
    assert gs.out is None  # with a server and no `out`, nothing is written to disk
    gs.close()


def test_an_attached_session_refuses_what_only_its_script_can_do(client):
    r = client.post("/api/sessions", json={"model": "attached", "layers": ["a", "b"], "knobs": ["learning_rate"],
                                           "learning_rate": 0.01})
    assert r.status_code == 201
    sid, token = r.json()["id"], r.json()["token"]
    row = {"step": 0, "loss": 1.0, "grad_norm": [0.1, 1.0]}
    assert client.post(f"/api/sessions/{sid}/rows", json={"records": [row]}).status_code == 403  # viewers watch
    ok = client.post(f"/api/sessions/{sid}/rows", json={"records": [row]}, headers=owner(token))
    assert ok.status_code == 200 and ok.json()["step"] == 1
    for changes, field in (({"clip_value": 0.5}, "clip_value"), ({"depth": 3}, "depth"), ({"model": "mlp"}, "model")):
        r = client.post(f"/api/sessions/{sid}/config", json={"changes": changes}, headers=owner(token))
        (err,) = r.json()["detail"]
        assert r.status_code == 422 and err["field"] == field, r.json()
    for action in ("play", "pause", "step", "reset", "rewind"):
        r = client.post(f"/api/sessions/{sid}/control", json={"action": action}, headers=owner(token))
        assert r.status_code == 409 and "trained by its script" in r.json()["detail"]
    r = client.post(f"/api/sessions/{sid}/fork", json={})
    assert r.status_code == 409 and "cannot be forked" in r.json()["detail"]
    bad = client.post(f"/api/sessions/{sid}/rows", json={"records": [{"step": 1, "grad_norm": [1.0]}]}, headers=owner(token))
    (err,) = bad.json()["detail"]
    assert bad.status_code == 422 and err["field"] == "records[0].grad_norm" and "2 numbers" in err["message"]
    bad = client.post(f"/api/sessions/{sid}/rows", json={"records": [{"loss": 1.0}]}, headers=owner(token))
    assert bad.status_code == 422 and bad.json()["detail"][0]["field"] == "records[0].step"
    # a built-in session takes no rows, and no model switches to or from an attached one
    mlp = client.post("/api/sessions", json={"model": "mlp", "depth": 2, "width": 8, "paused": True}).json()
    r = client.post(f"/api/sessions/{mlp['id']}/rows", json={"records": [row]}, headers=owner(mlp["token"]))
    assert r.status_code == 409
    r = client.post(f"/api/sessions/{mlp['id']}/config", json={"changes": {"model": "attached"}}, headers=owner(mlp["token"]))
    assert r.status_code == 422 and r.json()["detail"][0]["field"] == "model"
    # a retried post (its reply lost) records nothing twice
    again = client.post(f"/api/sessions/{sid}/rows", json={"records": [row]}, headers=owner(token))
    assert again.json()["step"] == 1
    assert client.get(f"/api/sessions/{sid}/history").json()["step"] == [0]


def test_non_finite_gradients_in_the_users_loop_show_as_a_divergence(client):
    r = client.post("/api/sessions", json={"model": "attached", "layers": ["a", "b", "c"]}).json()
    sid, token = r["id"], r["token"]
    rows = [{"step": 0, "grad_norm": [0.1, 0.2, 0.3], "nonfinite_count": [0, 0, 0]},
            {"step": 1, "grad_norm": [None, 1e30, 0.3], "nonfinite_count": [4, 0, 0], "nonfinite": True}]
    reply = client.post(f"/api/sessions/{sid}/rows", json={"records": rows}, headers=owner(token)).json()
    assert reply["status"] == "diverged"
    info = client.get(f"/api/sessions/{sid}").json()
    assert info["diverged"] == {"step": 1, "layer": 0}
    hist = client.get(f"/api/sessions/{sid}/history").json()
    assert hist["grad_norm"][1][0] is None and hist["nonfinite"] == [0, 1]  # NaN is data: null on the wire
    # the run goes on recording (its script has not stopped)
    more = client.post(f"/api/sessions/{sid}/rows", json={"records": [{"step": 2, "grad_norm": [0.1, 0.1, 0.1]}]},
                       headers=owner(token)).json()
    assert more["step"] == 3


def test_the_server_killed_mid_run_the_script_goes_on_and_reconnects_after_a_restart(server_process, caplog):
    srv = server_process()
    x, y = data()
    tx, params, state, step = loop()
    gs = gradscope.attach("survivor", server=srv.url)
    params, state = publish_steps(gs, step, params, state, x, y, 0, 10)
    assert gs.flush(60)
    sid = gs.remote.sid
    port = srv.port
    srv.stop(signal.SIGKILL)
    params, state = publish_steps(gs, step, params, state, x, y, 10, 10)  # never raises, never waits
    gs.flush(60)
    assert gs.remote.down and len(gs.records) == 20
    warned = [r for r in caplog.records if "does not answer" in r.getMessage()]
    assert len(warned) == 1  # told once
    srv.start(port=port)
    params, state = publish_steps(gs, step, params, state, x, y, 20, 5)
    assert gs.flush(60)
    i = 25
    while gs.remote.down:  # the first try after the restart may fall inside the retry pause
        assert i < 200, "the run never reconnected"
        params, state = publish_steps(gs, step, params, state, x, y, i, 1)
        gs.flush(60)
        i += 1
    assert gs.remote.sid == sid  # the same session: the restarted server loaded it from its store
    hist = httpx.get(f"{srv.url}/api/sessions/{sid}/history").json()
    assert set(range(10, i)) <= set(hist["step"])  # what waited while the server was down came after it
    events = httpx.get(f"{srv.url}/api/sessions/{sid}").json()["events"]
    assert any(e["kind"] == "resumed" for e in events)
    gs.close()


def test_gradscope_view_opens_a_recorded_file(live_server, tmp_path, capsys):
    srv = live_server()
    x, y = data()
    tx, params, state, step = loop()
    path = tmp_path / "run.jsonl"
    with gradscope.attach("recorded", out=path) as gs:  # no server: the file only
        publish_steps(gs, step, params, state, x, y, 0, 8)
    assert cli.main(["view", str(path), "--server", srv.url]) == 0
    url = capsys.readouterr().out.strip()
    sid = url.rsplit("/", 1)[1]
    info = httpx.get(f"{srv.url}/api/sessions/{sid}").json()
    assert info["config"]["run_name"] == "recorded" and info["config"]["knobs"] == [] and info["status"] == "paused"
    hist = httpx.get(f"{srv.url}/api/sessions/{sid}/history").json()
    recs = [json.loads(line) for line in path.read_text().splitlines()[1:]]
    assert hist["step"] == [r["step"] for r in recs]
    np.testing.assert_allclose(np.asarray(hist["grad_norm"], float), [r["grad_norm"] for r in recs], rtol=1e-6)
    # a built-in run's file too (gradscope run --out), its layers by number
    out = tmp_path / "mlp.jsonl"
    assert cli.main(["run", "--set", "depth=3", "--set", "width=8", "--steps", "6", "--out", str(out), "-q"]) == 0
    capsys.readouterr()
    assert cli.main(["view", str(out), "--server", srv.url]) == 0
    sid = capsys.readouterr().out.strip().rsplit("/", 1)[1]
    info = httpx.get(f"{srv.url}/api/sessions/{sid}").json()
    assert info["config"]["layers"] == ["layer 1", "layer 2", "layer 3", "output"]
    assert httpx.get(f"{srv.url}/api/sessions/{sid}/history").json()["step"] == list(range(6))
    # not a record file: a clear error, exit 2
    (tmp_path / "x.jsonl").write_text('{"hello": 1}\n')
    assert cli.main(["view", str(tmp_path / "x.jsonl"), "--server", srv.url]) == 2
    assert "not a gradscope record file" in capsys.readouterr().err


def test_the_engine_and_the_cli_refuse_to_train_an_attached_model(capsys):
    from gradscope.config import ConfigError
    from gradscope.engine import Trainer

    with pytest.raises(ConfigError) as info:
        Trainer({"model": "attached", "layers": ["a"]})
    assert info.value.field == "model" and "its own script" in info.value.message and "mlp" in info.value.choices
    assert cli.main(["run", "--set", "model=attached", "--steps", "1"]) == 2
    assert "its own script" in capsys.readouterr().err


def test_the_attached_familys_statistics_are_what_the_monitor_packs():
    from gradscope.families.attached import FAMILY, GLOBAL, LAYER

    assert LAYER == gso.LAYER_STATS and set(GLOBAL) <= set(gso.GLOBAL_STATS)
    axes = FAMILY.stat_axes("attached")
    assert all(axes[k] == ("layer",) for k in LAYER) and axes["delta_norm"] == ("probe",)
