"""Compare: run B from run A's very state; lockstep; the compare link; lessons over real HTTP."""
from __future__ import annotations

import httpx
import numpy as np
import pytest
from websockets.sync.client import connect

from conftest import SMALL, recv_until
from gradscope.compare import branch, run_lockstep
from gradscope.config import ConfigError
from gradscope.engine import Trainer


def test_branch_holds_a_copy_of_the_very_state_and_diverges_only_after_the_change(compile_cache):
    a = Trainer({**SMALL, "activation": "tanh"}, chunk_steps=16, cache=compile_cache)  # K as the server tests: one compile
    a.run(5)
    b, info = branch(a, {"learning_rate": 0.5}, cache=compile_cache)
    assert info == {"kind": "live", "changes": {"learning_rate": [0.1, 0.5]}} and b.step == a.step == 5
    sa, sb = a.run(3), b.run(3)
    # step 5: the gradient at the shared weights, on the shared batch (same RNG key): identical
    for key in ("loss", "grad_norm", "delta_norm", "weight_norm", "act_std", "saturation", "hist"):
        np.testing.assert_array_equal(sa[key][0], sb[key][0], err_msg=key)
    np.testing.assert_allclose(sb["update_ratio"][0], 5 * sa["update_ratio"][0], rtol=1e-4)  # SGD: linear in the rate
    assert not np.array_equal(sa["weight_norm"][1], sb["weight_norm"][1])
    same, _ = branch(a, None, cache=compile_cache)
    np.testing.assert_array_equal(a.run(2)["grad_norm"], same.run(2)["grad_norm"])


def test_branch_validates_and_reset_keys_restart_from_the_seed(compile_cache):
    a = Trainer(SMALL, chunk_steps=16, cache=compile_cache)
    a.run(3)
    with pytest.raises(ConfigError, match="activation"):
        branch(a, {"activation": "nope"}, cache=compile_cache)
    b, info = branch(a, {"seed": 1}, cache=compile_cache)
    assert info["kind"] == "reset" and b.step == 0


def test_lockstep_runner_never_lets_a_run_get_a_chunk_ahead(compile_cache):
    a = Trainer(SMALL, chunk_steps=16, cache=compile_cache)
    b, _ = branch(a, {"learning_rate": 0.2}, cache=compile_cache)
    order = []
    for run, stats in run_lockstep({"a": a, "b": b}, 40, change=(20, {"clip_mode": "norm"})):
        order.append((run, int(stats["step"][0]), len(stats["step"])))
    assert order == [("a", 0, 16), ("b", 0, 16), ("a", 16, 4), ("b", 16, 4), ("a", 20, 16), ("b", 20, 16), ("a", 36, 4), ("b", 36, 4)]
    assert a.config.clip_mode == b.config.clip_mode == "norm"


# -- the server -------------------------------------------------------------------------
def _post(srv, path, body=None, **headers):
    return httpx.post(f"{srv.url}{path}", json=body, headers=headers, timeout=120)


def _create(srv, **body):
    r = _post(srv, "/api/sessions", {**SMALL, "paused": True, **body})
    assert r.status_code == 201, r.text
    return r.json()


def _history(srv, sid):
    return httpx.get(f"{srv.url}/api/sessions/{sid}/history", params={"hist": True}, timeout=60).json()


def _owner(token):
    return {"Authorization": f"Bearer {token}"}


def test_compare_starts_b_from_a_state_and_steps_in_lockstep(live_server):
    srv = live_server()
    a = _create(srv, activation="tanh")
    for _ in range(3):
        _post(srv, f"/api/sessions/{a['id']}/control", {"action": "step"}, **_owner(a["token"]))
    r = _post(srv, f"/api/sessions/{a['id']}/compare", {"changes": {"learning_rate": 0.5}}, **_owner(a["token"]))
    assert r.status_code == 201, r.text
    c = r.json()
    b = c["b"]
    assert c["paired"] and b["step"] == 3 and b["config"]["learning_rate"] == 0.5 and b["parent"] == a["id"]
    assert c["url"].endswith(f"/compare/{a['id']}/{b['id']}")
    assert [e["kind"] for e in b["events"]][-2:] == ["fork", "change"]
    ctl = f"/api/compare/{a['id']}/{b['id']}/control"
    assert _post(srv, ctl, {"action": "step"}, **_owner(a["token"])).status_code == 403  # B's token missing
    for _ in range(2):
        r = _post(srv, ctl, {"action": "step"}, **_owner(a["token"]), **{"X-Token-B": c["token"]})
        assert r.status_code == 200, r.text
    assert r.json() == {"a": {"step": 5, "status": "paused"}, "b": {"step": 5, "status": "paused"}}
    ha, hb = _history(srv, a["id"]), _history(srv, b["id"])
    assert ha["step"] == hb["step"] == [0, 1, 2, 3, 4]
    assert ha["loss"][:4] == hb["loss"][:4] and ha["grad_norm"][3] == hb["grad_norm"][3]  # identical up to the change
    assert ha["update_ratio"][3] != hb["update_ratio"][3] and ha["loss"][4] != hb["loss"][4]  # then they part
    # play both, then pause: level again, at the same step, every step covered by the rows of each
    r = _post(srv, ctl, {"action": "play"}, **_owner(a["token"]), **{"X-Token-B": c["token"]})
    assert r.json()["a"]["status"] == r.json()["b"]["status"] == "running"
    with connect(f"{srv.ws_url}/api/sessions/{a['id']}/ws", open_timeout=30) as ws:
        recv_until(ws, lambda m: m["type"] == "stats" and m["step"][-1] >= 40)
    r = _post(srv, ctl, {"action": "pause"}, **_owner(a["token"]), **{"X-Token-B": c["token"]})
    sa, sb = r.json()["a"], r.json()["b"]
    assert sa["status"] == sb["status"] == "paused" and sa["step"] == sb["step"] >= 40
    ha, hb = _history(srv, a["id"]), _history(srv, b["id"])
    assert ha["step"] == hb["step"] and ha["count"] == hb["count"] and sum(ha["count"]) == sa["step"]


def test_a_restarted_b_catches_up_with_a_in_whole_calls(live_server):
    """A compare with a reset key restarts B at step 0; the first pair pause brings it to A's
    step in calls of up to a chunk each (one row per call), not one call per step."""
    srv = live_server()
    a = _create(srv, activation="tanh")
    owner = _owner(a["token"])
    _post(srv, f"/api/sessions/{a['id']}/control", {"action": "play"}, **owner)
    with connect(f"{srv.ws_url}/api/sessions/{a['id']}/ws", open_timeout=30) as ws:
        recv_until(ws, lambda m: m["type"] == "stats" and m["step"][-1] >= 300)
    _post(srv, f"/api/sessions/{a['id']}/control", {"action": "pause"}, **owner)
    c = _post(srv, f"/api/sessions/{a['id']}/compare", {"changes": {"init": "he_normal"}}, **owner).json()
    assert c["b"]["step"] == 0
    r = _post(srv, f"/api/compare/{a['id']}/{c['b']['id']}/control", {"action": "pause"}, **owner, **{"X-Token-B": c["token"]})
    sa, sb = r.json()["a"], r.json()["b"]
    assert sb["step"] == sa["step"] >= 300
    hb = _history(srv, c["b"]["id"])
    k = 16  # the test server's chunk
    assert sum(hb["count"]) == sb["step"] and len(hb["step"]) <= sb["step"] // k + 2


def test_the_compare_link_opens_as_a_viewer_of_both(live_server):
    srv = live_server()
    a = _create(srv)
    r = _post(srv, f"/api/sessions/{a['id']}/compare", {"changes": {"activation": "relu"}})  # anyone with the link
    assert r.status_code == 201 and not r.json()["paired"]
    b = r.json()["b"]
    page = httpx.get(r.json()["url"], timeout=30)
    assert page.status_code == 200 and "<html" in page.text
    both = httpx.get(f"{srv.url}/api/compare/{a['id']}/{b['id']}", timeout=30).json()
    assert both["a"]["id"] == a["id"] and both["b"]["config"]["activation"] == "relu" and "token" not in str(both)
    for sid in (a["id"], b["id"]):
        with connect(f"{srv.ws_url}/api/sessions/{sid}/ws", open_timeout=30) as ws:
            assert recv_until(ws, lambda m: m["type"] == "hello")["role"] == "viewer"
    assert httpx.get(f"{srv.url}/api/compare/{a['id']}/nope", timeout=30).status_code == 404
    r = _post(srv, f"/api/sessions/{a['id']}/compare", {"changes": {"activation": "relux"}})
    assert r.status_code == 422 and r.json()["detail"][0]["field"] == "activation"


def test_a_lesson_over_http_from_start_to_verdict(live_server):
    srv = live_server()
    lessons = httpx.get(f"{srv.url}/api/lessons", timeout=30).json()
    assert len(lessons) >= 12 and {"id", "title", "look", "compare", "model", "model_label"} <= set(lessons[0])
    models = [lesson["model"] for lesson in lessons]  # grouped, in the models' menu order: the MLP's first
    assert models == sorted(models, key=["mlp", "rnn", "lstm", "gru", "cnn", "gan"].index) and models[0] == "mlp" and "cnn" in models
    assert {(lesson["model"], lesson["model_label"]) for lesson in lessons} >= {("mlp", "MLP"), ("cnn", "CNN")}
    one = httpx.get(f"{srv.url}/api/lessons/sigmoid-vs-tanh", timeout=30).json()
    assert "answer" not in one["question"] and "verdict" not in one and one["config"]["depth"] == 10  # predict first
    r = _post(srv, "/api/lessons/sigmoid-vs-tanh/start", {})
    assert r.status_code == 201, r.text
    run = r.json()
    assert run["b"]["config"]["activation"] == "tanh" and run["url"].endswith(f"/compare/{run['a']['id']}/{run['b']['id']}")
    q = {"a": run["a"]["id"], "b": run["b"]["id"]}
    for sid in q.values():
        with connect(f"{srv.ws_url}/api/sessions/{sid}/ws", open_timeout=30) as ws:
            recv_until(ws, lambda m: m.get("status") == "paused" and m.get("step") == 20)
    v = httpx.get(f"{srv.url}/api/lessons/sigmoid-vs-tanh/verdict", params=q, timeout=30).json()
    assert v["ready"] and v["holds"] and v["answer"] == 2 and v["steps"] == {"a": 19, "b": 19}
    assert "under tanh" in v["message"]
    assert httpx.get(f"{srv.url}/api/lessons/nope", timeout=30).status_code == 404
    r = httpx.get(f"{srv.url}/api/lessons/sigmoid-vs-tanh/verdict", params={"a": q["a"]}, timeout=30)
    assert r.status_code == 422


def test_a_lesson_change_lands_at_its_step(live_server):
    srv = live_server()
    r = _post(srv, "/api/lessons/dead-relu/start", {"paused": True})
    a = r.json()["a"]
    assert "b" not in r.json()
    for _ in range(22):
        _post(srv, f"/api/sessions/{a['id']}/control", {"action": "step"}, **_owner(a["token"]))
    s = httpx.get(f"{srv.url}/api/sessions/{a['id']}", timeout=30).json()
    change = [e for e in s["events"] if e["kind"] == "change"]
    assert change and change[0]["step"] == 20 and change[0]["changes"] == {"learning_rate": [0.001, 0.05]}
    v = httpx.get(f"{srv.url}/api/lessons/dead-relu/verdict", params={"a": a["id"]}, timeout=30).json()
    assert not v["ready"] and not v["holds"] and v["message"] == ""
    # a session of another model (or other sizes) is not a run of the lesson: its layer indices would not fit
    r = httpx.get(f"{srv.url}/api/lessons/gan-spectral-norm/verdict", params={"a": a["id"], "b": a["id"]}, timeout=30)
    assert r.status_code == 422 and f"session {a['id']} (mlp, 11 layer, 10 hidden) is not run a" in r.text, r.text
    assert "(gan, 4 g_layer, 3 g_hidden, 5 d_layer, 4 d_hidden, 2 batch, 3 point)" in r.text, r.text


class _FakeSession:
    """What the gate reads of a session: its id, step and status (`live` says whether the manager holds it)."""

    def __init__(self, sid, step=0, status="running"):
        self.id, self.step, self.status = sid, step, status


def test_the_lockstep_gate_holds_back_only_the_run_ahead_of_a_running_partner():
    from types import SimpleNamespace

    from gradscope.server.lockstep import pair

    manager = SimpleNamespace(sessions={})
    a, b = _FakeSession("a"), _FakeSession("b")
    manager.sessions.update(a=a, b=b)
    gate = pair(a, b, live=lambda s: manager.sessions.get(s.id) is s)
    assert a.gate is b.gate is gate
    assert gate(a) and gate(b)                     # level: both may train their chunk
    a.step = 16
    assert not gate(a) and gate(b)                 # A is a chunk ahead: it waits for B
    b.status = "paused"
    assert gate(a)                                 # a paused partner holds nobody back
    b.status = "running"
    del manager.sessions["b"]
    assert gate(a)                                 # nor does a deleted one
