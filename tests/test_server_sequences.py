"""Issue 8's sequences written out, through the state machine's own rules and invariants.

The generated runs (test_server_stateful.py) start with these sequences on generated setups;
this fixed one adds what a generated run reaches only by chance: switches and rewinds across
running chunks, both rewinds over the WebSocket, and a SIGKILL while diverged.
"""
from __future__ import annotations

import json

from conftest import ServerProcess, recv_until, ws_open
from test_server_stateful import ServerMachine


def test_issue_sequences_against_a_server(tmp_path, server_log):
    """The sequences of issue 8, through the machine's own rules and invariants: optimizer
    switch then rewind, two switches then two rewinds, shape change then rewind, explode then
    rewind then clip, each across running chunks and a SIGKILL."""
    ServerMachine.factory = staticmethod(lambda: ServerProcess(tmp_path / "data", tmp_path / "server.log", server_log))
    m = ServerMachine()
    sizes = {"depth": 2, "width": 4, "batch_size": 4}

    def ok(sid, action, via_ws=False, expect=200):
        code, body = m.command(m.sessions[sid], {"type": "control", "action": action}, via_ws)
        assert code == expect, body
        m.sessions_agree()
        m.log_clean()
        return body

    def train_past(sid, step):
        t = m.sessions[sid]
        with ws_open(m.srv, sid, t.token) as ws:
            ws.send(json.dumps({"type": "control", "id": "go", "action": "play"}))
            recv_until(ws, lambda msg: msg["type"] == "stats" and msg["step"][-1] >= step)
            ws.send(json.dumps({"type": "control", "id": "stop", "action": "pause"}))
            recv_until(ws, lambda msg: msg.get("id") == "stop")

    try:
        a = m.create(sizes, {}, {"optimizer": "sgd"}, True)
        train_past(a, 40)
        m.set_config(a, {"optimizer": "adam"}, via_ws=False)
        ok(a, "step")
        back = ok(a, "rewind")
        assert back["applied"]["to_step"] < back["step"]
        ok(a, "step", via_ws=True)
        train_past(a, m.sessions[a].step + 20)                       # play after it: trains on
        m.set_config(a, {"optimizer": "momentum", "activation": "relu"}, via_ws=True)
        ok(a, "step")
        m.set_config(a, {"optimizer": "adam", "learning_rate": 0.05}, via_ws=False)
        ok(a, "step")
        ok(a, "rewind")
        ok(a, "rewind", via_ws=True)
        ok(a, "step")
        m.set_config(a, {"depth": 1}, via_ws=False)                    # shape change, then rewind
        ok(a, "rewind", expect=409)
        ok(a, "step")
        b = m.create(sizes, {}, {"activation": "linear", "learning_rate": 10.0}, True)
        m.set_config(b, {"learning_rate": 10.0}, via_ws=False)
        for _ in range(64):                                          # explode ...
            if ok(b, "step")["applied"]["status"] == "diverged":
                break
        assert m.call("GET", f"/api/sessions/{b}").json()["status"] == "diverged"
        m.restart(kill=True)                                         # ... crash while diverged ...
        assert ok(b, "rewind", via_ws=True)["applied"]["status"] == "paused"  # ... rewind
        m.set_config(b, {"clip_mode": "norm", "learning_rate": 0.05}, via_ws=False)  # ... clip
        ok(b, "step")
        train_past(b, m.sessions[b].step + 20)
        assert m.call("GET", f"/api/sessions/{b}").json()["status"] == "paused"
    finally:
        m.teardown()
