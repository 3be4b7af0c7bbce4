"""Every bad input gets a clear answer naming its fields, over HTTP and the WebSocket alike."""
from __future__ import annotations

import json

import httpx

from conftest import recv_until, ws_open
from test_server_disconnect import create


def test_an_unknown_key_in_a_control_or_fork_lists_what_that_request_takes(live_server):
    srv = live_server()
    d = create(srv, paused=True)
    auth = {"Authorization": f"Bearer {d['token']}"}
    r = httpx.post(f"{srv.url}/api/sessions/{d['id']}/control", json={"action": "step", "speed": 2}, headers=auth)
    assert r.status_code == 422
    assert r.json()["detail"] == [{"field": "speed", "message": "unknown key", "choices": ["action", "learning_rate", "steps"]}]
    r = httpx.post(f"{srv.url}/api/sessions/{d['id']}/fork", json={"form": "start"})
    assert r.status_code == 422 and r.json()["detail"][0]["field"] == "form"
    assert "from" in r.json()["detail"][0]["choices"]


def test_a_websocket_set_with_several_bad_keys_names_every_one(live_server):
    srv = live_server()
    d = create(srv, paused=True)
    with ws_open(srv, d["id"], d["token"]) as ws:
        recv_until(ws, lambda m: m["type"] == "hello")
        ws.send(json.dumps({"type": "set", "id": 1, "changes": {"activation": "nope", "learning_rate": float("nan")}}))
        err = recv_until(ws, lambda m: m.get("id") == 1)
    assert err["type"] == "error"
    fields = {e["field"]: e for e in err["errors"]}
    assert set(fields) == {"activation", "learning_rate"}, err
    assert "relu" in fields["activation"]["choices"] and "finite" in fields["learning_rate"]["message"]
