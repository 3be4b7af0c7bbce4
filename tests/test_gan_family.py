"""The GAN as a model family (issue 20): its config (keys per network, what applies under which
Lipschitz constraint), the Trainer's rows with the GAN's statistics and theory, live switches,
the CLI, and a session on a real server streaming statistics and the data plane."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import httpx
import numpy as np
import pytest

from conftest import recv_until
from gradscope.config import ConfigError, make_config, meta, parse_changes
from gradscope.engine import CompileCache, Trainer
from test_server_ws import of_type, ws_connect

SMALL = dict(model="gan", dataset="ring8", width=16, batch_size=64, g_depth=2, d_depth=2)
BACKEND = str(Path(__file__).resolve().parents[1] / "backend")


@pytest.fixture(scope="module")
def cache():
    c = CompileCache(background=False)
    yield c
    c.close()


def test_the_gan_takes_its_own_keys_and_names_the_ones_it_does_not():
    c = make_config({"model": "gan"})
    assert (c.g_depth, c.d_depth, c.gan_loss, c.lipschitz, c.dataset) == (3, 3, "non_saturating", "none", "ring8")
    with pytest.raises(ConfigError) as info:
        make_config({"model": "gan", "depth": 5, "learning_rate": 0.1})
    assert sorted(e.field for e in (info.value, *info.value.more)) == ["depth", "learning_rate"]
    assert "the GAN does not take depth" in str(info.value) and "g_depth" in info.value.choices
    # a key that does not apply under the Lipschitz constraint: refused by name, with what it needs
    with pytest.raises(ConfigError) as info:
        make_config({"model": "gan", "lipschitz": "gp", "clip_c": 0.1})
    assert info.value.field == "clip_c" and info.value.choices == ["clip"] and "lipschitz gp" in info.value.message
    run = make_config({"model": "gan", "lipschitz": "clip", "clip_c": 0.1})
    with pytest.raises(ConfigError) as info:
        parse_changes(run, {"lipschitz": "gp", "clip_c": 0.2})
    assert info.value.field == "clip_c"
    assert parse_changes(run, {"lipschitz": "gp"}).clip_c == 0.1  # kept, greyed, until clip comes back
    m = meta()
    assert "depth" not in m["keys_by_model"]["gan"] and "g_lr" in m["keys_by_model"]["gan"]
    assert m["families"]["gan"]["applies"]["gp_lambda"] == {"key": "lipschitz", "values": ["gp"]}
    assert m["choices"]["gan_loss"] == ["saturating", "non_saturating", "least_squares", "wasserstein"]
    # from a GAN back to the MLP: the shared keys stay, the GAN's go
    mlp = parse_changes(make_config({"model": "gan", "width": 24}), {"model": "mlp"})
    assert mlp.width == 24 and not hasattr(mlp, "g_depth")


def test_a_gan_trains_in_rows_with_both_networks_statistics_and_the_logit_gradients_theory(cache):
    tr = Trainer({**SMALL, "gan_loss": "saturating"}, cache=cache, chunk_steps=16)
    out = tr.run(32)
    assert out["step"].tolist() == list(range(32))
    assert out["g_grad_norm"].shape == (32, 3) and out["d_grad_norm"].shape == (32, 3)
    assert out["critic_act_grad"].shape == (32, 2, 2) and out["input_grad_norm"].shape == (32, 3)
    assert np.isfinite(out["d_loss"]).all() and not out["nonfinite"].any()
    # saturating: the per-sample slope is sigmoid(logit), so its mean is D(G(z))'s mean probability
    # (over G's batch rather than D's: the same distribution, another draw)
    assert np.allclose(out["g_logit_grad"], out["d_fake"], atol=0.05)
    seen = np.isfinite(out["modes_covered"])
    assert seen.sum() == 2 and seen[-1] and 0 <= np.nanmax(out["modes_covered"]) <= 8  # once a call, at its last row
    before = len(cache._futures)
    ack = tr.update({"gan_loss": "non_saturating", "g_lr": 5e-3})
    assert ack["kind"] == "live" and tr.step == 32
    out = tr.run(16)
    assert np.allclose(out["g_logit_grad"], 1 - out["d_fake"], atol=0.05)
    assert len(cache._futures) == before + 1  # the loss compiled its chunk; the learning rate did not
    tr.update({"g_lr": 1e-2, "d_lr": 1e-4})
    tr.run(16)
    assert len(cache._futures) == before + 1


def test_the_data_plane_shows_real_and_generated_points_under_ds_output(cache):
    tr = Trainer(SMALL, cache=cache, chunk_steps=16)
    tr.run(16)
    plane = tr.data_plane()
    assert len(plane["real"]) == len(plane["fake"]) == 256 and len(plane["arrows"]) == 32
    d = np.asarray(plane["d"], float)
    assert d.shape == (40, 40) and np.all((d >= 0) & (d <= 1))  # a probability under the sigmoid losses
    assert tr.decision_grid() is None  # no classifier's boundary


def test_gradscope_run_trains_a_gan_and_compares_losses_from_one_state(tmp_path):
    out = tmp_path / "gan.jsonl"
    cmd = [sys.executable, "-m", "gradscope", "run", "--set", "model=gan", "--set", "width=16", "--set", "batch_size=32",
           "--set", "gan_loss=saturating", "--vs", "gan_loss=non_saturating", "--steps", "20", "--every", "10", "--out", str(out)]
    r = subprocess.run(cmd, capture_output=True, text=True, env={"PYTHONPATH": BACKEND, "PATH": "/usr/bin:/bin"}, timeout=600)
    assert r.returncode == 0, r.stderr
    header, *rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert header["config"]["gan_loss"] == "saturating" and header["gan"]["networks"] == ["g", "d"]
    assert sorted((row["run"], row["step"]) for row in rows) == [("a", 9), ("a", 19), ("b", 9), ("b", 19)]
    a, b = (next(row for row in rows if row["run"] == run) for run in "ab")
    assert a["d_fake"] == pytest.approx(b["d_fake"], rel=0.05)  # the same D, the same first steps' fakes
    assert a["g_logit_grad"] == pytest.approx(a["d_fake"], abs=0.05) and b["g_logit_grad"] == pytest.approx(1 - b["d_fake"], abs=0.05)
    bad = subprocess.run([sys.executable, "-m", "gradscope", "run", "--set", "model=gan", "--set", "depth=4", "--steps", "1"],
                         capture_output=True, text=True, env={"PYTHONPATH": BACKEND, "PATH": "/usr/bin:/bin"}, timeout=600)
    assert bad.returncode != 0 and "the GAN does not take depth" in bad.stderr


def test_a_gan_session_streams_statistics_and_the_data_plane(live_server):
    srv = live_server()
    r = httpx.post(f"{srv.url}/api/sessions", json=SMALL, timeout=120)  # not the MLP's SMALL: no depth
    assert r.status_code == 201, r.text
    d = r.json()
    with ws_connect(srv, d) as ws:
        stats = recv_until(ws, of_type("stats"))
        assert len(stats["g_grad_norm"][0]) == 3 and "d_real" in stats
        plane = recv_until(ws, of_type("plane"))
        assert len(plane["real"]) == 256 and len(plane["x"]) == 40
        ws.send(json.dumps({"type": "set", "id": "l", "changes": {"lipschitz": "gp", "gp_lambda": 5.0}}))
        ack = recv_until(ws, of_type("ack", id="l"))
        assert ack["applied"]["kind"] == "live"
        ws.send(json.dumps({"type": "set", "id": "c", "changes": {"clip_c": 0.5}}))
        err = recv_until(ws, of_type("error", id="c"))
        assert err["field"] == "clip_c" and err["choices"] == ["clip"]
        after = recv_until(ws, lambda m: m["type"] == "stats" and m["step"][0] > ack["step"])
        assert all(v is not None for v in after["d_loss"])


def _stroke(n=40):
    """A drawn stroke: an arc of radius 1.5 from 0 to pi (what a mouse drag on the plane sends)."""
    t = np.linspace(0.0, np.pi, n)
    return np.round(np.stack([1.5 * np.cos(t), 1.5 * np.sin(t)], axis=1), 4).tolist()


def test_drawn_points_are_a_dataset_checked_by_name():
    c = make_config({**SMALL, "dataset": "drawn", "points": _stroke()})
    assert len(c.points) == 40 and hash(c)  # a tuple of pairs: configs stay hashable (compile keys read them)
    cases = [({"dataset": "drawn"}, "dataset drawn trains on the points you draw"),
             ({"points": _stroke()}, "points are read only with dataset drawn, not ring8"),
             ({"dataset": "drawn", "points": _stroke(3)}, "too few drawn points: 3, at least 8"),
             ({"dataset": "drawn", "points": [[0.0, 1.0, 2.0]] * 10}, "(entry 0 and 9 more)"),
             ({"dataset": "drawn", "points": [[0.0, float("nan")]] * 10}, "must be a finite number (entry 0 and 9 more)"),
             ({"dataset": "drawn", "points": [[0.0, 1.0]] * 5001}, "at most 5000")]
    for change, message in cases:
        with pytest.raises(ConfigError) as e:
            make_config({**SMALL, **change})
        assert e.value.field == "points" and message in str(e.value), (change, str(e.value))
    assert "drawn" in meta()["datasets_by_model"]["gan"] and "points" in meta()["keys_by_model"]["gan"]
    # leaving the drawing for another dataset drops its points (they belong to it); naming them still refuses
    assert parse_changes(c, {"dataset": "moons"}).points is None
    with pytest.raises(ConfigError, match="points are read only with dataset drawn"):
        parse_changes(c, {"dataset": "moons", "points": _stroke()})
    assert parse_changes(c, {"g_lr": 0.01}).points == c.points


def test_a_drawing_trains_g_on_jittered_copies_of_its_points(cache):
    from gradscope.core import gan

    stroke = np.asarray(_stroke())
    tr = Trainer({**SMALL, "dataset": "drawn", "points": stroke.tolist()}, cache=cache, chunk_steps=16)
    x = np.asarray(tr.x)
    assert x.shape == (gan.N_POINTS, 2)  # every dataset one shape: the ring's build serves the drawing
    nearest = np.min(np.linalg.norm(x[:, None, :] - stroke[None], axis=-1), axis=1)
    assert np.percentile(nearest, 99) < 4 * gan.DRAWN_JITTER  # around the strokes, nowhere else
    assert len(np.unique(np.argmin(np.linalg.norm(x[:, None, :] - stroke[None], axis=-1), axis=1))) == len(stroke)
    again = Trainer({**SMALL, "dataset": "drawn", "points": stroke.tolist()}, cache=cache, chunk_steps=16)
    np.testing.assert_array_equal(np.asarray(again.x), x)  # fixed by the seed
    rows = tr.run(16)
    assert np.all(np.isfinite(rows["d_loss"])) and "modes_covered" not in tr.data_plane()
    assert np.isnan(rows["modes_covered"]).all()  # a drawing is no mixture: no mode counted
    # every dataset shares one build: drawing, or switching the data, waits for no compile
    built = len(cache._futures)
    for dataset in ("ring8", "moons", "grid25"):
        ack = tr.update({"dataset": dataset})
        assert ack["kind"] == "reset"
        rows = tr.run(16)
        counted = rows["modes_covered"][np.isfinite(rows["modes_covered"])]
        if dataset == "moons":
            assert counted.size == 0
        else:  # the padding modes are never covered: at most the mixture's own
            assert counted.size == 1 and 0 <= counted[0] <= {"ring8": 8, "grid25": 25}[dataset]
    assert len(cache._futures) == built


def test_a_session_resets_onto_a_drawing_and_a_bad_one_is_refused_by_name(live_server):
    srv = live_server()
    r = httpx.post(f"{srv.url}/api/sessions", json={**SMALL, "dataset": "drawn", "points": _stroke(5)}, timeout=120)
    assert r.status_code == 422 and r.json()["detail"][0]["field"] == "points"
    r = httpx.post(f"{srv.url}/api/sessions", json=SMALL, timeout=120)
    d = r.json()
    with ws_connect(srv, d) as ws:
        recv_until(ws, of_type("plane"))
        ws.send(json.dumps({"type": "set", "id": "bad", "changes": {"dataset": "drawn"}}))
        err = recv_until(ws, of_type("error", id="bad"))
        assert err["field"] == "points"
        ws.send(json.dumps({"type": "set", "id": "draw", "changes": {"dataset": "drawn", "points": _stroke()}}))
        ack = recv_until(ws, of_type("ack", id="draw"))
        assert ack["applied"]["kind"] == "reset"
        def on_the_arc(m):  # the arc drawn, not the ring (a plane sent before the reset may still arrive first)
            real = np.asarray(m.get("real") or [[0.0, 0.0]], float)
            return m["type"] == "plane" and np.all(np.abs(np.linalg.norm(real, axis=1) - 1.5) < 0.3) and np.all(real[:, 1] > -0.3)
        assert len(recv_until(ws, on_the_arc)["real"]) == 256
    got = httpx.get(f"{srv.url}/api/sessions/{d['id']}", timeout=60).json()
    assert got["config"]["dataset"] == "drawn" and len(got["config"]["points"]) == 40


def test_a_paused_gan_sends_its_plane_to_a_new_client_and_after_each_step_by_hand(live_server):
    srv = live_server()
    d = httpx.post(f"{srv.url}/api/sessions", json=SMALL, timeout=120).json()
    with ws_connect(srv, d) as ws:
        recv_until(ws, of_type("stats"))
        ws.send(json.dumps({"type": "control", "id": "p", "action": "pause"}))
        paused = recv_until(ws, of_type("ack", id="p"))["step"]
        ws.send(json.dumps({"type": "control", "id": "s", "action": "step"}))
        # the step's plane: drawn after the step, though no housekeeping runs while paused
        assert recv_until(ws, lambda m: m["type"] == "plane" and m["step"] > paused)["step"] == paused + 1
    with ws_connect(srv, d, token=False) as viewer:  # a newcomer to the paused run sees its generator at once
        hello = recv_until(viewer, of_type("hello"))
        assert hello["status"] == "paused"
        plane = recv_until(viewer, of_type("plane"))
        assert plane["step"] == paused + 1 and len(plane["real"]) == 256


def test_the_lessons_next_loss_compiles_in_the_background_and_serves_the_switch():
    """Saturating G stalls, the lesson switches to the non-saturating loss: that build is queued
    while the run shows the stall, so the switch trains at once; weight clipping's fix likewise."""
    queued = []

    class Recorder(CompileCache):
        def warm(self, keys, args):
            queued.extend(keys)

    tr = Trainer({**SMALL, "gan_loss": "saturating"}, cache=Recorder(background=False), warm=True)
    chunks = [k for k in queued if k.kind == "chunk"]
    assert [k.spec.gan_loss for k in chunks] == ["non_saturating", "saturating"]  # the next loss, then its own (built)
    tr.update({"gan_loss": "non_saturating"})
    assert tr._key_for(tr.config, tr.family.spec_of(tr.config)) == chunks[0]
    queued.clear()
    Trainer({**SMALL, "gan_loss": "wasserstein", "lipschitz": "clip"}, cache=Recorder(background=False), warm=True)
    assert queued[0].spec.gan_loss == "wasserstein" and queued[0].spec.lipschitz == "gp"
