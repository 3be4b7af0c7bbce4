"""A recurrent session on a real server (uvicorn, WebSocket): divergence is data, not a crash.

ReLU with identity W_hh (the IRNN) unclipped at a learning rate of 10: the hidden state grows
without bound within a few steps. The run stops (at the end of that compiled chunk), names the
first non-finite step and flags it in its stats, logs no exception (the autouse `server_log`
fixture), and rewind and reset train on."""
from __future__ import annotations

import math

import httpx

from conftest import recv_until
from test_server_ws import create, of_type, ws_connect

K = 16  # the test settings' chunk length (conftest.settings_for)
IRNN = dict(model="rnn", dataset="adding", seq_len=12, width=8, batch_size=16, activation="relu", init="identity",
            init_gain=1.0, optimizer="sgd", learning_rate=10.0)


def owner(d):
    return {"Authorization": f"Bearer {d['token']}"}


def post(srv, d, what, body):
    r = httpx.post(f"{srv.url}/api/sessions/{d['id']}/{what}", json=body, headers=owner(d), timeout=120)
    assert r.status_code == 200, r.text
    return r.json()


def last_row(srv, d, since):
    h = httpx.get(f"{srv.url}/api/sessions/{d['id']}/history", params={"since": since}, timeout=60).json()
    return {k: v[-1] for k, v in h.items() if isinstance(v, list) and v}


def test_a_diverging_recurrent_run_stops_with_its_step_then_rewind_and_reset_train_on(live_server):
    srv = live_server()
    d = create(srv, **IRNN)
    with ws_connect(srv, d) as ws:
        seen = []
        status = recv_until(ws, of_type("status", status="diverged"), seen=seen)
        first = status["diverged"]["step"]
        assert isinstance(first, int) and first < status["step"] <= first + K  # stopped within the chunk that broke
        event = next(m["event"] for m in seen if m["type"] == "event" and m["event"]["kind"] == "diverged")
        assert event["first_step"] == first and "non-finite" in event["detail"]
        rows = [m for m in seen if m["type"] == "stats"]
        flags = {s: (f, loss) for m in rows for s, f, loss in zip(m["step"], m["nonfinite"], m["loss"], strict=True)}
        assert flags[first][0] and flags[first][1] is None  # the flag at that step, on the wire; NaN/Inf travel as null
        assert not any(f for s, (f, _) in flags.items() if s < first)
    s = httpx.get(f"{srv.url}/api/sessions/{d['id']}", timeout=60).json()
    assert s["status"] == "diverged" and s["diverged"]["step"] == first and s["step"] == status["step"]
    # rewind to the last finite checkpoint; a smaller, clipped rate then trains on
    ack = post(srv, d, "control", {"action": "rewind"})
    assert ack["applied"]["status"] == "paused" and ack["applied"]["to_step"] <= first
    post(srv, d, "config", {"changes": {"learning_rate": 0.01, "clip_mode": "norm", "clip_value": 1.0}})
    step = post(srv, d, "control", {"action": "step"})["step"]
    row = last_row(srv, d, step)
    assert row["step"] == step and math.isfinite(row["loss"]) and not row["nonfinite"]
    # reset: step 0, fresh weights, the live knobs kept
    ack = post(srv, d, "control", {"action": "reset"})
    assert ack["applied"]["status"] == "paused"
    assert post(srv, d, "control", {"action": "step"})["step"] == 0
    row = last_row(srv, d, 0)
    assert row["step"] == 0 and math.isfinite(row["loss"]) and not row["nonfinite"]
    s = httpx.get(f"{srv.url}/api/sessions/{d['id']}", timeout=60).json()
    assert s["status"] == "paused" and s["step"] == 1 and s["diverged"] is None and s["config"]["learning_rate"] == 0.01
