"""Rewind restores the weights, optimizer state and config that belong together (issue 8)."""
from __future__ import annotations

import math

from conftest import SMALL

K = 16  # the fixed chunk length of the test settings: single steps checkpoint on multiples of it


def owner(d):
    return {"Authorization": f"Bearer {d['token']}"}


def control(client, d, action):
    r = client.post(f"/api/sessions/{d['id']}/control", json={"action": action}, headers=owner(d))
    assert r.status_code == 200, r.text
    return r.json()


def set_(client, d, **changes):
    r = client.post(f"/api/sessions/{d['id']}/config", json={"changes": changes}, headers=owner(d))
    assert r.status_code == 200, r.text
    return r.json()


def steps(client, d, n):
    for _ in range(n):
        control(client, d, "step")


def finite_loss_after_step(client, d):
    step = control(client, d, "step")["step"]
    h = client.get(f"/api/sessions/{d['id']}/history", params={"since": step}).json()
    assert h["step"] == [step] and math.isfinite(h["loss"][0])


def test_optimizer_switch_then_rewind_keeps_training(client):
    """pause, sgd -> adam, step, rewind, step: the checkpoint's sgd state is never run by adam."""
    d = client.post("/api/sessions", json={**SMALL, "paused": True}).json()
    steps(client, d, 3)
    set_(client, d, optimizer="adam")
    control(client, d, "step")
    ack = control(client, d, "rewind")
    assert ack["applied"]["to_step"] == 0 and ack["step"] == 4
    finite_loss_after_step(client, d)
    control(client, d, "play")
    control(client, d, "pause")
    body = client.get(f"/api/sessions/{d['id']}").json()
    assert body["config"]["optimizer"] == "adam" and body["status"] == "paused"
    rewind = next(e for e in body["events"] if e["kind"] == "rewind")
    assert rewind["config"]["optimizer"] == "sgd"            # the checkpoint's own config
    assert rewind["reapplied"] == {"optimizer": ["sgd", "adam"]}


def test_two_switches_then_two_rewinds(client):
    d = client.post("/api/sessions", json={**SMALL, "paused": True}).json()
    steps(client, d, K + 1)                                   # checkpoints at 0 and K
    set_(client, d, optimizer="adam", activation="relu")
    control(client, d, "step")
    set_(client, d, optimizer="momentum", learning_rate=0.05)
    control(client, d, "step")
    assert control(client, d, "rewind")["applied"]["to_step"] == K
    assert control(client, d, "rewind")["applied"]["to_step"] == 0
    finite_loss_after_step(client, d)
    body = client.get(f"/api/sessions/{d['id']}").json()
    assert (body["config"]["optimizer"], body["config"]["activation"]) == ("momentum", "relu")
    assert body["step"] == 1


def test_shape_change_then_rewind_is_refused_cleanly(client):
    """A shape change re-initializes: no checkpoint of the old shape survives it (409, not 500)."""
    d = client.post("/api/sessions", json={**SMALL, "paused": True}).json()
    steps(client, d, 2)
    assert set_(client, d, depth=2)["applied"]["kind"] == "reset"
    r = client.post(f"/api/sessions/{d['id']}/control", json={"action": "rewind"}, headers=owner(d))
    assert r.status_code == 409 and "checkpoint" in r.json()["detail"]
    finite_loss_after_step(client, d)
    steps(client, d, 2)
    assert control(client, d, "rewind")["applied"]["to_step"] == 0


def test_explode_rewind_then_clip(client):
    """Divergence, rewind (status back to paused, saved so), then clipping trains on."""
    d = client.post("/api/sessions", json={**SMALL, "paused": True, "learning_rate": 10.0, "init_gain": 3.0,
                                            "activation": "linear", "init": "standard_normal"}).json()
    for _ in range(64):
        if control(client, d, "step")["applied"]["status"] == "diverged":
            break
    body = client.get(f"/api/sessions/{d['id']}").json()
    assert body["status"] == "diverged"
    assert control(client, d, "rewind")["applied"]["status"] == "paused"
    set_(client, d, clip_mode="norm", clip_value=1.0, learning_rate=0.01)
    finite_loss_after_step(client, d)
    body = client.get(f"/api/sessions/{d['id']}").json()
    assert body["status"] == "paused" and body["diverged"] is None
