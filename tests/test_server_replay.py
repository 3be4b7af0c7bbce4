"""Forks (from current weights, from the start) and step-for-step replay of a timeline."""
from __future__ import annotations

import json

import httpx
import numpy as np

from conftest import SMALL, recv_until, ws_open


def create(srv, **body):
    r = httpx.post(f"{srv.url}/api/sessions", json={**SMALL, **body}, timeout=120)
    assert r.status_code == 201, r.text
    return r.json()


def ws_for(srv, d):
    return ws_open(srv, d["id"], d["token"])


def command(ws, ident, **msg):
    ws.send(json.dumps({"id": ident, **msg}))
    reply = recv_until(ws, lambda m: m["type"] in ("ack", "error") and m["id"] == ident)
    assert reply["type"] == "ack", reply
    return reply


def history(srv, sid):
    return httpx.get(f"{srv.url}/api/sessions/{sid}/history", timeout=120).json()


def test_fork_from_start_replays_the_timeline(live_server):
    srv = live_server()
    a = create(srv, paused=True, seed=7)
    with ws_for(srv, a) as ws:
        for i in range(3):  # off the K grid: the replay must cut its chunks the same way
            command(ws, f"s{i}", type="control", action="step")
        command(ws, "lr", type="set", changes={"learning_rate": 0.5})
        command(ws, "play", type="control", action="play")
        recv_until(ws, lambda m: m["type"] == "stats" and m["step"][-1] >= 60)
        opt = command(ws, "opt", type="set", changes={"optimizer": "momentum", "l2": 0.001})
        recv_until(ws, lambda m: m["type"] == "stats" and m["step"][-1] >= opt["step"] + 40)
        end = command(ws, "pause", type="control", action="pause")["step"]
    assert opt["step"] > 3 and end > opt["step"]

    r = httpx.post(f"{srv.url}/api/sessions/{a['id']}/fork", json={"from": "start"}, timeout=120)
    assert r.status_code == 201, r.text
    b = r.json()
    assert b["token"] != a["token"] and b["parent"] == a["id"]
    with ws_for(srv, b) as ws:
        recv_until(ws, lambda m: m["type"] == "stats" and m["step"][-1] >= end)
        command(ws, "pause", type="control", action="pause")
    ha, hb = history(srv, a["id"]), history(srv, b["id"])
    n = ha["step"].index(end - 1) + 1
    # the same measured steps (a row per call, the last step of each), covering every step
    assert ha["step"][:n] == hb["step"][:n] and ha["count"][:n] == hb["count"][:n] and sum(ha["count"][:n]) == end
    np.testing.assert_allclose(np.array(hb["loss"][:n], float), np.array(ha["loss"][:n], float), rtol=1e-6)
    np.testing.assert_allclose(np.array(hb["grad_norm"][:n], float), np.array(ha["grad_norm"][:n], float),
                               rtol=1e-5)
    info = httpx.get(f"{srv.url}/api/sessions/{b['id']}", timeout=120).json()
    kinds = [(e["kind"], e["step"], e["changes"]) for e in info["events"] if e["kind"] in ("change", "reset")]
    want = [(e["kind"], e["step"], e["changes"]) for e in httpx.get(f"{srv.url}/api/sessions/{a['id']}", timeout=120).json()["events"]
            if e["kind"] in ("change", "reset")]
    assert kinds == want
    assert info["config"]["optimizer"] == "momentum" and info["config"]["learning_rate"] == 0.5


def test_fork_from_current_keeps_weights_history_and_timeline(live_server):
    srv = live_server()
    a = create(srv, paused=True, seed=2)
    with ws_for(srv, a) as ws:
        for i in range(5):
            command(ws, i, type="control", action="step")
        command(ws, "lr", type="set", changes={"learning_rate": 0.2})
    r = httpx.post(f"{srv.url}/api/sessions/{a['id']}/fork", json={"from": "current", "paused": True}, timeout=120)
    b = r.json()
    assert r.status_code == 201 and b["step"] == 5 and b["config"]["learning_rate"] == 0.2
    assert history(srv, b["id"])["loss"] == history(srv, a["id"])["loss"]
    # the same next step from the same weights on both sides
    with ws_for(srv, a) as wa, ws_for(srv, b) as wb:
        command(wa, "x", type="control", action="step")
        command(wb, "x", type="control", action="step")
    la, lb = history(srv, a["id"])["loss"], history(srv, b["id"])["loss"]
    assert len(la) == len(lb) == 6 and lb[5] == la[5]
    kinds = [e["kind"] for e in httpx.get(f"{srv.url}/api/sessions/{b['id']}", timeout=120).json()["events"]]
    assert kinds == ["change", "fork"]
    # the fork is its owner's: the original token does not work on it
    r = httpx.delete(f"{srv.url}/api/sessions/{b['id']}", headers={"Authorization": f"Bearer {a['token']}"}, timeout=120)
    assert r.status_code == 403
