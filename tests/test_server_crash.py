"""SIGKILL mid-training: every session comes back paused, loses about a second, can rewind."""
from __future__ import annotations

import signal
import time

import httpx

from conftest import SMALL, recv_until, ws_open

FLUSH_S = 1.0  # the flush interval (the default): a kill loses about this; the bound allows 5x for a loaded machine


def test_sigkill_loses_at_most_a_few_seconds_and_rewind_works(server_process):
    srv = server_process(flush_interval_s=FLUSH_S)
    sessions = [httpx.post(f"{srv.url}/api/sessions", json={**SMALL, "seed": i}, timeout=120).json() for i in range(2)]
    seen = []  # (monotonic time, last step streamed) for the first session
    with ws_open(srv, sessions[0]["id"]) as ws:
        def streamed_long_enough(m):
            if m["type"] == "stats":
                seen.append((time.monotonic(), m["step"][-1]))
            return len(seen) > 1 and seen[-1][0] - seen[0][0] > 4 * FLUSH_S
        recv_until(ws, streamed_long_enough)
        srv.proc.send_signal(signal.SIGKILL)  # training is still running: nothing gets to save
        srv.proc.wait(60)
    killed_at, last_seen = seen[-1]

    srv.start()
    for d in sessions:
        info = httpx.get(f"{srv.url}/api/sessions/{d['id']}", timeout=120).json()
        assert info["status"] == "paused"
    auth = {"Authorization": f"Bearer {sessions[0]['token']}"}
    sid = sessions[0]["id"]
    step = httpx.post(f"{srv.url}/api/sessions/{sid}/control", json={"action": "step"}, headers=auth, timeout=120).json()
    resumed = step["step"]
    h = httpx.get(f"{srv.url}/api/sessions/{sid}/history", timeout=120).json()
    assert h["step"][-1] == resumed and sum(h["count"]) == resumed + 1  # every step 0..resumed, once
    assert all(a < b for a, b in zip(h["step"], h["step"][1:], strict=False))
    info = httpx.get(f"{srv.url}/api/sessions/{sid}", timeout=120).json()
    recovered = [e for e in info["events"] if e["kind"] == "recovered"]
    assert len(recovered) <= 1 and (recovered or resumed >= last_seen)
    # what was lost: the steps streamed after the last one that came back
    lost_since = min((t for t, s in seen if s >= resumed), default=killed_at)
    assert killed_at - lost_since <= 5 * FLUSH_S, (resumed, last_seen, killed_at - lost_since)
    back = httpx.post(f"{srv.url}/api/sessions/{sid}/control", json={"action": "rewind"}, headers=auth, timeout=120)
    assert back.status_code == 200, back.text     # the persisted checkpoints came back too
    assert back.json()["applied"]["to_step"] < back.json()["step"]
