"""The WebSocket stream against a real uvicorn on loopback, driven by the `websockets` library."""
from __future__ import annotations

import json
import time

import httpx
import pytest
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import connect

from conftest import SMALL, recv_until, ws_open


def create(srv, **body):
    r = httpx.post(f"{srv.url}/api/sessions", json={**SMALL, **body}, timeout=120)
    assert r.status_code == 201, r.text
    return r.json()


def ws_connect(srv, d, token=True, **kw):
    return ws_open(srv, d["id"], d["token"] if token else None, **kw)


def of_type(kind, **match):
    return lambda m: m["type"] == kind and all(m.get(k) == v for k, v in match.items())


def test_owner_streams_sets_and_pauses(live_server):
    srv = live_server()
    created = time.time()
    d = create(srv)
    with ws_connect(srv, d) as ws:
        hello = recv_until(ws, of_type("hello"))
        assert hello["role"] == "owner" and hello["protocol"] == 1 and "relu" in hello["meta"]["activations"]
        stats = recv_until(ws, of_type("stats"))
        assert created <= stats["t"] <= time.time()  # when its rows were measured (on whichever node trained them)
        n = len(stats["step"])
        assert n >= 1 and len(stats["loss"]) == n and len(stats["grad_norm"][0]) == 4
        assert len(stats["hist"][0]) == 4
        ws.send(json.dumps({"type": "set", "id": "a", "changes": {"learning_rate": 0.3, "clip_mode": "norm"}}))
        seen = []
        ack = recv_until(ws, of_type("ack", id="a"), seen=seen)
        ev = next(m["event"] for m in seen if m["type"] == "event" and m["event"]["kind"] == "change")
        assert ev["step"] == ack["step"] and ev["changes"]["learning_rate"] == [0.1, 0.3]
        assert ack["applied"]["kind"] == "live"
        after = recv_until(ws, lambda m: m["type"] == "stats" and m["step"][-1] >= ack["step"])
        assert after["step"][-1] >= ack["step"]
        ws.send(json.dumps({"type": "control", "id": 2, "action": "pause"}))
        ack = recv_until(ws, of_type("ack", id=2))
        assert ack["applied"]["status"] == "paused"
    body = httpx.get(f"{srv.url}/api/sessions/{d['id']}", timeout=120).json()
    assert body["status"] == "paused" and body["config"]["learning_rate"] == 0.3
    assert [e["kind"] for e in body["events"]] == ["change", "paused"]


def test_viewer_and_garbage_get_errors_and_socket_stays_open(live_server):
    srv = live_server(ws_max_bytes=1000, ws_burst=8, ws_rate=0.001)
    d = create(srv, paused=True)
    with ws_connect(srv, d, token=False) as ws:
        assert recv_until(ws, of_type("hello"))["role"] == "viewer"
        ws.send(json.dumps({"type": "control", "id": 1, "action": "play"}))
        err = recv_until(ws, of_type("error", id=1))
        assert err["field"] == "token"
        ws.send("{this is not json")
        assert "malformed" in recv_until(ws, of_type("error"))["message"]
        ws.send(json.dumps([1, 2]))
        recv_until(ws, of_type("error"))
        ws.send(json.dumps({"type": "dance", "id": 3}))
        assert recv_until(ws, of_type("error", id=3))["choices"] == ["set", "control"]
        ws.send("x" * 5000)
        assert "larger" in recv_until(ws, of_type("error"))["message"]
        for i in range(6):
            ws.send(json.dumps({"type": "set", "id": 10 + i, "changes": {}}))
        assert "too many" in recv_until(ws, lambda m: m["type"] == "error" and "too many" in m["message"])["message"]
    with ws_connect(srv, d) as ws:  # a wrong-token connection is a viewer, and is told so
        pass
    with ws_open(srv, d["id"], "wrong") as ws:
        err = recv_until(ws, of_type("error"))
        assert err["field"] == "token"
        assert recv_until(ws, of_type("hello"))["role"] == "viewer"


def test_owner_bad_set_gets_field_and_choices(live_server):
    srv = live_server()
    d = create(srv, paused=True)
    with ws_connect(srv, d) as ws:
        ws.send(json.dumps({"type": "set", "id": 1, "changes": {"activation": "swishy"}}))
        err = recv_until(ws, of_type("error", id=1))
        assert err["field"] == "activation" and "swish" in err["choices"]
        ws.send(json.dumps({"type": "control", "id": 2, "action": "fly"}))
        err = recv_until(ws, of_type("error", id=2))
        assert err["field"] == "action" and "rewind" in err["choices"]
        ws.send(json.dumps({"type": "control", "id": 3, "action": "rewind"}))
        assert "checkpoint" in recv_until(ws, of_type("error", id=3))["message"]


def test_shape_change_resets_and_says_so(live_server):
    srv = live_server()
    d = create(srv, paused=True)
    with ws_connect(srv, d) as ws:
        recv_until(ws, of_type("hello"))
        for i in range(3):
            ws.send(json.dumps({"type": "control", "id": i, "action": "step"}))
            recv_until(ws, of_type("ack", id=i))
        ws.send(json.dumps({"type": "set", "id": "w", "changes": {"width": 8}}))
        seen = []
        ack = recv_until(ws, of_type("ack", id="w"), seen=seen)
        assert ack["applied"]["kind"] == "reset" and ack["step"] == 3
        ev = next(m["event"] for m in seen if m["type"] == "event")
        assert ev["kind"] == "reset" and ev["changes"] == {"width": [16, 8]} and "re-initialized" in ev["detail"]
    body = httpx.get(f"{srv.url}/api/sessions/{d['id']}", timeout=120).json()
    assert body["step"] == 0 and body["config"]["width"] == 8
    assert httpx.get(f"{srv.url}/api/sessions/{d['id']}/history", timeout=120).json()["step"] == []


def test_divergence_pauses_with_layer_then_rewind(live_server):
    srv = live_server()
    d = create(srv, activation="linear", init="standard_normal", learning_rate=10.0, init_gain=3.0)
    with ws_connect(srv, d) as ws:
        st = recv_until(ws, lambda m: m["type"] == "status" and m["status"] == "diverged")
        div = st["diverged"]
        assert div["step"] >= 1 and (div["layer"] is None or 0 <= div["layer"] <= 3)
        body = httpx.get(f"{srv.url}/api/sessions/{d['id']}", timeout=120).json()
        assert body["status"] == "diverged" and body["diverged"] == div
        assert any(e["kind"] == "diverged" and e["first_step"] == div["step"] for e in body["events"])
        ws.send(json.dumps({"type": "set", "id": 1, "changes": {"learning_rate": 1e-4}}))
        recv_until(ws, of_type("ack", id=1))
        ws.send(json.dumps({"type": "control", "id": 2, "action": "rewind"}))
        ack = recv_until(ws, of_type("ack", id=2))
        to = ack["applied"]["to_step"]
        assert to < div["step"] and ack["applied"]["status"] == "paused"
    body = httpx.get(f"{srv.url}/api/sessions/{d['id']}", timeout=120).json()
    assert body["status"] == "paused" and body["step"] == to and body["config"]["learning_rate"] == 1e-4
    h = httpx.get(f"{srv.url}/api/sessions/{d['id']}/history", timeout=120).json()
    assert all(s < to for s in h["step"]) and all(v is not None for v in h.get("loss", []))


@pytest.mark.parametrize("allowed", [(), ("http://friend.example",)])
def test_foreign_origin_refused_unless_allowed(live_server, allowed):
    srv = live_server(allow_origins=allowed)
    d = create(srv, paused=True)
    with ws_connect(srv, d, origin=f"http://127.0.0.1:{srv.port}") as ws:
        recv_until(ws, of_type("hello"))
    if allowed:
        with ws_connect(srv, d, origin="http://friend.example") as ws:
            recv_until(ws, of_type("hello"))
    with pytest.raises(InvalidStatus) as info:
        with ws_connect(srv, d, origin="http://evil.example"):
            pass
    assert info.value.response.status_code == 403


def test_unknown_session_socket_says_so(live_server):
    srv = live_server()
    with connect(f"{srv.ws_url}/api/sessions/nope/ws", open_timeout=30) as ws:
        err = recv_until(ws, of_type("error"))
        assert err["field"] == "session"
        with pytest.raises(ConnectionClosed) as info:
            ws.recv(timeout=30)
        assert info.value.rcvd.code == 4404


def test_delete_hangs_up_on_viewers(live_server):
    srv = live_server()
    d = create(srv, paused=True)
    with ws_connect(srv, d, token=False) as ws:
        recv_until(ws, of_type("hello"))
        r = httpx.delete(f"{srv.url}/api/sessions/{d['id']}", headers={"Authorization": f"Bearer {d['token']}"}, timeout=120)
        assert r.status_code == 204
        assert recv_until(ws, of_type("status"))["status"] == "deleted"
        with pytest.raises(ConnectionClosed) as info:
            ws.recv(timeout=30)
        assert info.value.rcvd.code == 4404  # the page's "gone: stop reconnecting"


WS_COUNTER = """window.__sockets = 0; const Native = window.WebSocket;
window.WebSocket = class extends Native { constructor(...a) { super(...a); window.__sockets++; } };"""


@pytest.mark.browser
def test_the_page_stops_reconnecting_to_a_deleted_session_and_says_so(live_server):
    """In Chromium, on a page's fake clock: a dropped socket reconnects once its backoff timer
    fires; after a delete (close code 4404) no timer ever opens another, and the page shows 'deleted'."""
    sync_api = pytest.importorskip("playwright.sync_api")
    srv = live_server()
    d = create(srv, paused=True)
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=["--no-sandbox"])
        try:
            page = browser.new_page()
            errors = []
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.add_init_script(WS_COUNTER)
            page.goto(f"{srv.url}/s/{d['id']}")
            opened = "n => window.__sockets === n && gradscope.socket && gradscope.socket.ws.readyState === 1"
            page.wait_for_function(opened, arg=1, timeout=120_000, polling=100)
            page.clock.install()  # from here on the backoff timers fire only when the test says so
            page.evaluate("gradscope.socket.ws.close()")  # an ordinary drop: the page reconnects
            page.wait_for_function("() => gradscope.status === 'reconnecting'", timeout=60_000, polling=100)
            page.clock.run_for(60_000)
            page.wait_for_function(opened, arg=2, timeout=60_000, polling=100)
            r = httpx.delete(f"{srv.url}/api/sessions/{d['id']}", headers={"Authorization": f"Bearer {d['token']}"},
                             timeout=120)
            assert r.status_code == 204
            page.wait_for_function("() => gradscope.socket.closed && gradscope.status === 'deleted'",
                                   timeout=60_000, polling=100)
            page.clock.run_for(60_000)  # every backoff delay is at most 5 s: any reconnect would be made now
            assert page.evaluate("window.__sockets") == 2
            assert page.locator("#status").text_content() == "deleted" and errors == []
        finally:
            browser.close()
