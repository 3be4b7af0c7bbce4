"""Compiles are visible (every client is told what a session waits for, and for how long) and
Rewind's advice can be followed (offered only with a checkpoint behind, resuming at a chosen
learning rate), through a real server, its WebSocket and its HTTP routes (issue 17)."""
from __future__ import annotations

import json

import httpx

from conftest import recv_until, ws_open
from test_server_disconnect import control, create

# a shape no other test compiles: its first step compiles in front of the client
FRESH = {"depth": 1, "width": 13, "batch_size": 3, "dataset": "xor"}


def summary(srv, d):
    return httpx.get(f"{srv.url}/api/sessions/{d['id']}", timeout=60).json()


def test_a_step_that_compiles_tells_every_client_start_then_end(live_server):
    srv = live_server()
    d = create(srv, paused=True, **FRESH, activation="elu")
    with ws_open(srv, d["id"]) as viewer, ws_open(srv, d["id"], d["token"]) as owner:
        hello = recv_until(viewer, lambda m: m["type"] == "hello")
        assert hello["compiling"] is None and hello["rewind_to"] is None
        recv_until(owner, lambda m: m["type"] == "hello")
        owner.send(json.dumps({"type": "control", "id": "s", "action": "step"}))
        start = recv_until(viewer, lambda m: m["type"] == "compile")
        assert start["state"] == "start" and start["what"].startswith("elu, ") and "depth 1 x width 13" in start["what"]
        end = recv_until(viewer, lambda m: m["type"] == "compile")
        assert end["state"] == "end" and end["what"] == start["what"] and end["seconds"] > 0
        assert end["since"] == start["since"]
        recv_until(owner, lambda m: m.get("id") == "s" and m["type"] == "ack")
        # built now: the next step compiles nothing (a stats frame comes, no compile message first)
        owner.send(json.dumps({"type": "control", "id": "t", "action": "step"}))
        assert recv_until(viewer, lambda m: m["type"] in ("compile", "stats"))["type"] == "stats"
    assert summary(srv, d)["compiling"] is None


def test_rewind_is_offered_only_with_a_checkpoint_behind(live_server):
    srv = live_server()
    d = create(srv, paused=True)
    assert summary(srv, d)["rewind_to"] is None  # step 0: nothing behind
    r = httpx.post(f"{srv.url}/api/sessions/{d['id']}/control", json={"action": "rewind"},
                   headers={"Authorization": f"Bearer {d['token']}"}, timeout=60)
    assert r.status_code == 409 and "checkpoint" in r.text
    control(srv, d, "step")
    assert summary(srv, d)["rewind_to"] == 0


def test_rewind_resumes_at_the_learning_rate_asked_for_and_says_so(live_server):
    srv = live_server()
    d = create(srv, paused=True, learning_rate=0.3)
    for _ in range(3):
        control(srv, d, "step")
    back = control(srv, d, "rewind", learning_rate=0.03)["applied"]
    assert back["to_step"] == 0 and back["changes"] == {"learning_rate": [0.3, 0.03]}
    body = summary(srv, d)
    assert body["config"]["learning_rate"] == 0.03 and body["step"] == 0
    ev = body["events"][-1]
    assert ev["kind"] == "rewind" and "learning rate 0.3 -> 0.03" in ev["detail"]
    assert ev["changes"] == {"learning_rate": [0.3, 0.03]}
    # the same rate changes nothing and says nothing about it
    control(srv, d, "step")
    back = control(srv, d, "rewind", learning_rate=0.03)["applied"]
    assert back["changes"] == {} and "learning rate" not in summary(srv, d)["events"][-1]["detail"]


def test_a_bad_rewind_learning_rate_is_answered_and_changes_nothing(live_server):
    srv = live_server()
    d = create(srv, paused=True)
    control(srv, d, "step")
    auth = {"Authorization": f"Bearer {d['token']}"}
    for body, field in (({"action": "rewind", "learning_rate": -1}, "learning_rate"),
                        ({"action": "step", "learning_rate": 0.1}, "learning_rate")):
        r = httpx.post(f"{srv.url}/api/sessions/{d['id']}/control", json=body, headers=auth, timeout=60)
        assert r.status_code == 422 and field in r.text, r.text
    with ws_open(srv, d["id"], d["token"]) as ws:
        recv_until(ws, lambda m: m["type"] == "hello")
        ws.send(json.dumps({"type": "control", "id": 1, "action": "rewind", "learning_rate": "fast"}))
        err = recv_until(ws, lambda m: m.get("id") == 1)
        assert err["type"] == "error" and err["field"] == "learning_rate", err
    assert summary(srv, d)["step"] == 1  # nothing rewound


def test_a_step_can_take_many_steps_and_a_bad_count_is_answered(live_server):
    srv = live_server()
    d = create(srv, paused=True)
    assert control(srv, d, "step", steps=40)["step"] == 0
    assert summary(srv, d)["step"] == 40 and summary(srv, d)["status"] == "paused"
    auth = {"Authorization": f"Bearer {d['token']}"}
    for body in ({"action": "step", "steps": 0}, {"action": "step", "steps": 10**6}, {"action": "play", "steps": 3},
                 {"action": "step", "steps": True}):
        r = httpx.post(f"{srv.url}/api/sessions/{d['id']}/control", json=body, headers=auth, timeout=60)
        assert r.status_code == 422 and "steps" in r.text, (body, r.text)
    assert summary(srv, d)["step"] == 40
