"""Restart: sessions reopen paused with their history, events and weights; idle sessions pause."""
from __future__ import annotations

import json
import threading

import httpx
from websockets.sync.client import connect

from conftest import SMALL, recv_until, ws_open


def command(ws, ident, **msg):
    ws.send(json.dumps({"id": ident, **msg}))
    reply = recv_until(ws, lambda m: m["type"] in ("ack", "error") and m["id"] == ident)
    assert reply["type"] == "ack", reply
    return reply


def test_restart_keeps_history_and_owner_resumes(live_server):
    srv = live_server()
    a = httpx.post(f"{srv.url}/api/sessions", json={**SMALL, "seed": 5}, timeout=120).json()
    b = httpx.post(f"{srv.url}/api/sessions", json={**SMALL, "seed": 6}, timeout=120).json()
    with ws_open(srv, a["id"], a["token"]) as ws:
        recv_until(ws, lambda m: m["type"] == "stats" and m["step"][-1] >= 40)
        command(ws, 1, type="set", changes={"learning_rate": 0.25})
        recv_until(ws, lambda m: m["type"] == "stats" and m["step"][-1] >= 80)
        step = command(ws, 2, type="control", action="pause")["step"]
    with connect(f"{srv.ws_url}/api/sessions/{b['id']}/ws", open_timeout=30) as ws:
        recv_until(ws, lambda m: m["type"] == "stats")  # b is still running when the server stops
    before = httpx.get(f"{srv.url}/api/sessions/{a['id']}/history", timeout=120).json()
    events = httpx.get(f"{srv.url}/api/sessions/{a['id']}", timeout=120).json()["events"]
    srv.stop()

    srv2 = live_server()
    info = httpx.get(f"{srv2.url}/api/sessions/{a['id']}", timeout=120).json()
    assert info["status"] == "paused" and info["step"] == step and info["events"] == events
    assert info["config"]["learning_rate"] == 0.25
    after = httpx.get(f"{srv2.url}/api/sessions/{a['id']}/history", timeout=120).json()
    assert after == before and after["step"][-1] == step - 1
    info_b = httpx.get(f"{srv2.url}/api/sessions/{b['id']}", timeout=120).json()
    assert info_b["status"] == "paused" and info_b["step"] > 0
    hb = httpx.get(f"{srv2.url}/api/sessions/{b['id']}/history", timeout=120).json()
    assert hb["step"][-1] == info_b["step"] - 1

    with ws_open(srv2, a["id"], a["token"]) as ws:
        hello = recv_until(ws, lambda m: m["type"] == "hello")
        assert hello["role"] == "owner" and hello["step"] == step
        command(ws, 3, type="control", action="play")
        stats = recv_until(ws, lambda m: m["type"] == "stats")
        assert stats["step"][0] - stats["count"][0] + 1 == step  # training continues exactly where it stopped
        command(ws, 4, type="control", action="pause")
    r = httpx.delete(f"{srv2.url}/api/sessions/{a['id']}", headers={"Authorization": f"Bearer {a['token']}"}, timeout=120)
    assert r.status_code == 204


def test_idle_session_without_viewers_pauses(make_app, monkeypatch):
    from conftest import TestClient
    from gradscope.server.sessions import Session

    paused = threading.Event()
    original = Session.idle_pause

    def idle_pause(self):  # the server's own decision, observed rather than polled for
        result = original(self)
        paused.set()
        return result

    monkeypatch.setattr(Session, "idle_pause", idle_pause)
    with TestClient(make_app(idle_pause_s=0.2)) as client:
        d = client.post("/api/sessions", json=SMALL).json()
        assert d["status"] == "running"
        assert paused.wait(120), "the idle monitor never paused the session"
        body = client.get(f"/api/sessions/{d['id']}").json()
        assert body["status"] == "paused"
        assert any(e["kind"] == "paused" and "idle" in (e["detail"] or "") for e in body["events"])
