"""Generated sequences of everything a user or a hostile client can do, against a real server.

A hypothesis `RuleBasedStateMachine` drives `gradscope serve` in its own process (so a restart
can be a real SIGKILL) with real httpx and websockets clients, and checks after every rule:
no 5xx and no traceback in the server's log, every session answers with the config last
acknowledged, a step counter only goes back with a `rewind`/`reset`/`recovered` event, a
deleted session stays deleted (404, WebSocket close 4404), a viewer changes nothing. The
short run is part of the default test command; `-m slow` runs a long one.
"""
from __future__ import annotations

import json
import signal
import threading
from contextlib import ExitStack
from dataclasses import dataclass

import httpx
import pytest
from hypothesis import HealthCheck, Phase, settings
from hypothesis import strategies as st
from hypothesis.stateful import Bundle, RuleBasedStateMachine, invariant, multiple, rule, run_state_machine_as_test
from websockets.exceptions import ConnectionClosed

from conftest import ServerProcess, read_text, recv_until, ws_open

GONE = 4404
BACKWARDS = ("rewind", "reset", "recovered")   # the only events after which the step may be lower
COMMANDS = ("set", "change", "reset", "rewind", "paused", "resumed", "recovered")
# Small shapes only: every (shape, activation, optimizer) compiles once per run (shared disk cache).
SIZES = st.fixed_dictionaries({"depth": st.sampled_from([1, 2]), "width": st.sampled_from([2, 4]),
                               "batch_size": st.sampled_from([1, 4])})
LIVE = st.fixed_dictionaries({}, optional={
    "learning_rate": st.sampled_from([0.05, 0.5, 10.0]), "optimizer": st.sampled_from(["sgd", "adam", "momentum"]),
    "activation": st.sampled_from(["relu", "tanh", "linear"]), "clip_mode": st.sampled_from(["none", "norm"])})
INVALID = st.sampled_from([{"learning_rate": -1}, {"activation": "nope"}, {"depth": 0}, {"bogus": 1},
                           {"optimizer": None}, {"width": "wide"}, {}])
GARBAGE = st.sampled_from(["{not json", "[1, 2]", '{"type": "dance"}', '{"type": "control", "action": "explode"}',
                           '{"type": "set", "changes": "all"}', "x" * 20_000, ""])


@dataclass
class Tracked:
    """What the model knows of one session."""

    id: str
    token: str
    config: dict | None      # None: a fork from the start replays changes the model did not make
    step: int = 0
    events: int = 0
    deleted: bool = False


class ServerMachine(RuleBasedStateMachine):
    """One server process, restarted on its data dir by the `restart` rule."""

    factory = None  # set by the test: () -> an unstarted ServerProcess on a fresh data dir

    def __init__(self):
        super().__init__()
        self.srv: ServerProcess = type(self).factory().start()
        self.http = httpx.Client(timeout=120)
        self.sessions: dict[str, Tracked] = {}
        self.slow: list = []         # (session id, socket): viewers that never read
        self.stack = ExitStack()     # their connections

    handles = Bundle("sessions")

    # -- helpers -----------------------------------------------------------------------
    def call(self, method: str, path: str, token: str | None = None, **kw) -> httpx.Response:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        r = self.http.request(method, f"{self.srv.url}{path}", headers=headers, **kw)
        assert r.status_code < 500, (method, path, r.status_code, r.text)
        return r

    def command(self, t: Tracked, msg: dict, via_ws: bool) -> tuple[int, dict]:
        """(HTTP-like status, body) of a set/control, sent over HTTP or the owner's WebSocket."""
        if not via_ws:
            kind = "config" if msg["type"] == "set" else "control"
            r = self.call("POST", f"/api/sessions/{t.id}/{kind}", t.token,
                          json={k: v for k, v in msg.items() if k != "type"})
            return r.status_code, r.json() if r.content else {}
        with ws_open(self.srv, t.id, t.token) as ws:
            first = recv_until(ws, lambda m: m["type"] in ("hello", "error"), timeout=60)
            if first["type"] == "error":
                assert first["field"] == "session"
                self.expect_gone(ws)
                return 404, first
            assert first["role"] == "owner"
            ws.send(json.dumps({**msg, "id": "cmd"}))
            reply = recv_until(ws, lambda m: m["type"] in ("ack", "error") and m.get("id") == "cmd", timeout=120)
        if reply["type"] == "ack":
            return 200, reply
        if "too many running" in reply["message"]:
            return 429, reply
        return (409 if reply["field"] == "action" else 422), reply

    @staticmethod
    def expect_gone(ws) -> None:
        with pytest.raises(ConnectionClosed) as info:
            while True:
                ws.recv(timeout=60)
        assert info.value.rcvd is not None and info.value.rcvd.code == GONE

    def track(self, d: dict, config: dict | None) -> str:
        self.sessions[d["id"]] = Tracked(d["id"], d["token"], config, d["step"], len(d["events"]))
        return d["id"]

    # -- rules -------------------------------------------------------------------------
    @rule(target=handles, sizes=SIZES, live=LIVE, paused=st.booleans())
    def create(self, sizes, live, paused):
        r = self.call("POST", "/api/sessions", json={**sizes, **live, "paused": paused})
        assert r.status_code in (201, 429), r.text
        if r.status_code == 429:
            return multiple()
        d = r.json()
        assert all(d["config"][k] == v for k, v in {**sizes, **live}.items())
        return self.track(d, d["config"])

    @rule(sid=handles, changes=st.one_of(LIVE, SIZES, INVALID), via_ws=st.booleans())
    def set_config(self, sid, changes, via_ws):
        t = self.sessions[sid]
        code, body = self.command(t, {"type": "set", "changes": changes}, via_ws)
        if t.deleted:
            assert code == 404
            return
        valid = changes and all(k in ("depth", "width", "batch_size", "learning_rate", "optimizer",
                                      "activation", "clip_mode") for k in changes) \
            and changes.get("learning_rate", 1) > 0 and changes.get("depth", 1) > 0 \
            and changes.get("activation", "relu") != "nope" and isinstance(changes.get("width", 2), int) \
            and changes.get("optimizer", "sgd") is not None
        assert code == (200 if valid else 422), (changes, body)
        if valid and t.config is not None:
            for k, (old, new) in body["applied"]["changes"].items():
                assert t.config[k] == old
                t.config[k] = new
            assert all(t.config[k] == v for k, v in changes.items())

    @rule(sid=handles, action=st.sampled_from(["play", "pause", "step", "reset", "rewind"]), via_ws=st.booleans())
    def control(self, sid, action, via_ws):
        t = self.sessions[sid]
        code, body = self.command(t, {"type": "control", "action": action}, via_ws)
        allowed = {"play": (200, 429), "rewind": (200, 409)}.get(action, (200,))
        # any session can step (a diverged one too), and reset always works
        assert code == 404 if t.deleted else code in allowed, (action, code, body)

    @rule(target=handles, sid=handles, source=st.sampled_from(["current", "start"]), paused=st.booleans())
    def fork(self, sid, source, paused):
        t = self.sessions[sid]
        r = self.call("POST", f"/api/sessions/{sid}/fork", json={"from": source, "paused": paused})
        if t.deleted or r.status_code == 429:
            assert r.status_code == (404 if t.deleted else 429)
            return multiple()
        assert r.status_code == 201, r.text
        d = r.json()
        if source == "current" and t.config is not None:
            assert d["config"] == t.config
        return self.track(d, d["config"] if source == "current" and t.config is not None else None)

    @rule(sid=handles)
    def delete(self, sid):
        """Delete while a viewer connects: either way that viewer ends with close code 4404."""
        t = self.sessions[sid]
        result = {}
        deleter = threading.Thread(target=lambda: result.update(
            r=self.http.delete(f"{self.srv.url}/api/sessions/{sid}", headers={"Authorization": f"Bearer {t.token}"})))
        deleter.start()
        with ws_open(self.srv, sid) as ws:
            deleter.join()
            if not t.deleted:
                self.expect_gone(ws)
        assert result["r"].status_code == (404 if t.deleted else 204), result["r"].text
        t.deleted = True
        for sock_sid, ws in [x for x in self.slow if x[0] == sid]:
            self.expect_gone(ws)  # reads what a slow viewer left queued, then the close
            self.slow.remove((sock_sid, ws))
        with ws_open(self.srv, sid) as ws:  # a page reconnecting later is told again
            assert recv_until(ws, lambda m: m["type"] == "error")["field"] == "session"
            self.expect_gone(ws)

    @rule(sid=handles, garbage=GARBAGE, wrong_token=st.booleans())
    def viewer_pokes(self, sid, garbage, wrong_token):
        t = self.sessions[sid]
        before = self.call("GET", f"/api/sessions/{sid}")
        with ws_open(self.srv, sid, "not-the-token" if wrong_token else None) as ws:
            first = recv_until(ws, lambda m: m["type"] in ("hello", "error"), timeout=60)
            if t.deleted:
                assert first["field"] == "session"
                self.expect_gone(ws)
                return
            hello = first if first["type"] == "hello" else recv_until(ws, lambda m: m["type"] == "hello")
            assert hello["role"] == "viewer"
            for msg in ({"type": "control", "id": 1, "action": "reset"}, {"type": "set", "id": 2, "changes": {"depth": 1}}):
                ws.send(json.dumps(msg))
                assert recv_until(ws, lambda m: m["type"] == "error" and m["id"] == msg["id"])["field"] == "token"
            ws.send(garbage)
            recv_until(ws, lambda m: m["type"] == "error")
        after = self.call("GET", f"/api/sessions/{sid}").json()
        assert after["config"] == before.json()["config"]
        new = [e["kind"] for e in after["events"][len(before.json()["events"]):]]
        assert not set(new) & set(COMMANDS), new

    @rule(sid=handles)
    def slow_viewer(self, sid):
        """A viewer that connects and never reads: training and other clients go on."""
        if len(self.slow) >= 3:
            self.slow.pop(0)[1].close()
        self.slow.append((sid, self.stack.enter_context(ws_open(self.srv, sid))))

    @rule(kill=st.booleans())
    def restart(self, kill):
        """Graceful (SIGTERM) or SIGKILL mid-training; every session comes back, not running."""
        for _, ws in self.slow:
            ws.close()
        self.slow.clear()
        self.srv.stop(signal.SIGKILL if kill else signal.SIGTERM)
        self.srv.start()
        for t in self.sessions.values():
            r = self.call("GET", f"/api/sessions/{t.id}")
            assert r.status_code == (404 if t.deleted else 200)
            assert t.deleted or r.json()["status"] in ("paused", "diverged")

    # -- invariants --------------------------------------------------------------------
    @invariant()
    def sessions_agree(self):
        for t in self.sessions.values():
            r = self.call("GET", f"/api/sessions/{t.id}")
            if t.deleted:
                assert r.status_code == 404
                continue
            body = r.json()
            assert r.status_code == 200 and body["status"] in ("running", "paused", "diverged")
            if t.config is not None:
                assert body["config"] == t.config
            kinds = {e["kind"] for e in body["events"][t.events:]}
            assert body["step"] >= t.step or kinds & set(BACKWARDS), (t, body["step"], kinds)
            assert len(body["events"]) >= t.events
            t.step, t.events = body["step"], len(body["events"])

    @invariant()
    def log_clean(self):
        text = read_text(self.srv.log_path)
        assert "Traceback" not in text and "ERROR" not in text, text[-3000:]

    def teardown(self):
        self.stack.close()
        self.http.close()
        self.srv.stop()


def run_machine(tmp_path, server_log, examples: int, steps: int) -> None:
    count = iter(range(10**6))

    def factory():
        n = next(count)
        return ServerProcess(tmp_path / f"data{n}", tmp_path / f"server{n}.log", server_log, max_running=3)

    ServerMachine.factory = staticmethod(factory)
    run_state_machine_as_test(ServerMachine, settings=settings(
        max_examples=examples, stateful_step_count=steps, deadline=None, database=None,
        phases=[Phase.explicit, Phase.generate],  # shrinking restarts servers for many minutes
        suppress_health_check=list(HealthCheck)))


def test_generated_sequences_short(tmp_path, server_log):
    run_machine(tmp_path, server_log, examples=3, steps=12)


@pytest.mark.slow
def test_generated_sequences_long(tmp_path, server_log, request):
    """About an hour on two cores: run only when asked for (`-m slow`), not in the default command."""
    if "slow" not in (request.config.getoption("markexpr") or ""):
        pytest.skip("the long generated run: select it with -m slow")
    run_machine(tmp_path, server_log, examples=40, steps=40)


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
        a = m.create(sizes, {"optimizer": "sgd"}, True)
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
        b = m.create(sizes, {"activation": "linear", "learning_rate": 10.0}, True)
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
