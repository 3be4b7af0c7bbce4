"""No client can kill a session: a command whose caller went away is dropped harmlessly.

Issue 17's first finding: a `set` sent on the owner's socket, closed within milliseconds, left
the command's future cancelled; the worker's `set_result` raised, its `set_exception` raised
again, the worker thread died, and the session said "running" forever while its controls hung.
"""
from __future__ import annotations

import json
import logging
import threading

import httpx

from conftest import SMALL, recv_until, ws_open


def create(srv, **body):
    r = httpx.post(f"{srv.url}/api/sessions", json={**SMALL, **body}, timeout=120)
    assert r.status_code == 201, r.text
    return r.json()


def control(srv, d, action, **extra):
    r = httpx.post(f"{srv.url}/api/sessions/{d['id']}/control", json={"action": action, **extra},
                   headers={"Authorization": f"Bearer {d['token']}"}, timeout=120)
    assert r.status_code == 200, r.text
    return r.json()


def test_socket_closed_right_after_a_set_leaves_a_working_session(live_server):
    srv = live_server()
    d = create(srv)
    for changes in ({"depth": 4}, {"width": 8}, {"learning_rate": 0.2}, {"depth": 3}):
        with ws_open(srv, d["id"], d["token"]) as ws:
            recv_until(ws, lambda m: m["type"] == "hello")
            ws.send(json.dumps({"type": "set", "id": 1, "changes": changes}))
        # closed at once: the command is dropped or applied, never the worker's end
    assert control(srv, d, "pause")["applied"]["status"] == "paused"
    step = control(srv, d, "step")["step"]
    assert control(srv, d, "step")["step"] == step + 1
    assert control(srv, d, "play")["applied"]["status"] == "running"
    with ws_open(srv, d["id"]) as ws:
        first = recv_until(ws, lambda m: m["type"] == "stats")
        recv_until(ws, lambda m: m["type"] == "stats" and m["step"][-1] > first["step"][-1])
    body = httpx.get(f"{srv.url}/api/sessions/{d['id']}", timeout=60).json()
    assert body["status"] == "running" and not [e for e in body["events"] if e["kind"] == "error"]


def test_cancelled_commands_are_dropped_not_fatal(live_server):
    """The same at the worker's level, deterministically: commands queued behind a slow one
    whose futures are cancelled before they run (a caller gone) are skipped; the ones after
    them still run and answer."""
    srv = live_server()
    d = create(srv, paused=True)
    s = srv.server.config.app.state.manager.sessions[d["id"]]
    gate = threading.Event()
    started = threading.Event()

    def slow():
        started.set()
        gate.wait(60)
        return "slow"

    first = s.submit(slow)
    assert started.wait(120)
    dropped = [s.submit(s.set_running, True) for _ in range(3)]
    for fut in dropped:
        assert fut.cancel()
    after = s.submit(s.single_step)
    gate.set()
    assert first.result(60) == "slow"
    assert after.result(60)["status"] == "paused"  # the cancelled plays never ran
    assert all(f.cancelled() for f in dropped)
    assert control(srv, d, "step")["step"] == 1  # the step it was taken from


def test_a_bug_in_a_command_is_an_error_event_and_the_session_answers(live_server, monkeypatch, server_log):
    """Any exception on the worker is caught, logged and becomes an `error` event; the session
    keeps answering its controls."""
    from gradscope.server.sessions import Session

    srv = live_server()
    d = create(srv, paused=True)

    def broken(self, changes):
        raise ZeroDivisionError("a bug")

    monkeypatch.setattr(Session, "apply_changes", broken)
    with ws_open(srv, d["id"], d["token"]) as ws:
        recv_until(ws, lambda m: m["type"] == "hello")
        ws.send(json.dumps({"type": "set", "id": "x", "changes": {"learning_rate": 0.3}}))
        seen = {}  # the event and the answer come in either order

        def both(m):
            if m["type"] == "error" and m["id"] == "x":
                seen["err"] = m
            elif m["type"] == "event" and m["event"]["kind"] == "error":
                seen["ev"] = m
            return len(seen) == 2

        recv_until(ws, both)
        err, ev = seen["err"], seen["ev"]
        assert "internal server error" in err["message"]
        eid = err["message"].split("error id ")[1].rstrip(")")
        assert eid in ev["event"]["detail"] and "a bug" not in ev["event"]["detail"]
    monkeypatch.undo()
    assert control(srv, d, "step")["step"] == 0  # the step it was taken from
    faults = [r for r in server_log.records if r.levelno >= logging.ERROR]
    assert len(faults) == 1 and faults[0].exc_info[0] is ZeroDivisionError and eid in faults[0].getMessage()
    server_log.records.remove(faults[0])  # made on purpose
