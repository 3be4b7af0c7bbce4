"""The README's lecture demo, followed in a real Chromium, and the diagnosis' contract: it is never
wrong in the green direction (issue 17).

The demo opens the default run (10 sigmoid layers, Glorot, spirals), lets it train and picks relu.
Measured (seed 0, README "The lecture demo"): after 2,000 sigmoid steps ReLU learns the spirals; after
10,000 or 30,000 sigmoid has pushed every bias of layer 10 below 0, so under ReLU all of its units are 0
on every example and every weight gradient is exactly 0, for good. The page must say so in red and
its fixes must bring the run back. The steps are driven, not timed: the session is created paused and
advanced by exact step counts; every check waits on page state.
"""
from __future__ import annotations

import math

import httpx
import numpy as np
import pytest

from conftest import LiveServer
from test_dashboard import browser, tabs  # noqa: F401  (fixtures)

pytestmark = pytest.mark.browser

K = 16  # steps per compiled call: the compiles other tests' servers make (conftest.settings_for)
DEAD = 0.9  # diagnosis.js: a layer this dead is named


@pytest.fixture(scope="module")
def demo(tmp_path_factory, compile_cache):
    """An in-process server: the test advances its sessions by exact step counts on their workers."""
    from gradscope.server import Settings, create_app

    settings = Settings(data_dir=tmp_path_factory.mktemp("demo"), chunk_steps=K, idle_pause_s=600.0, create_burst=1000)
    srv = LiveServer(create_app(settings, warm_compile=False, cache=compile_cache))
    yield srv
    srv.stop()


@pytest.fixture
def modules(demo, tabs):  # noqa: F811
    """A tab on the server's origin with the diagnosis modules imported (as window.D, window.TD)."""
    tab = tabs().open(f"{demo.url}/api/health")
    tab.eval("async () => { window.D = await import('/static/diagnosis.js'); window.TD = await import('/static/timediagnosis.js'); }")
    return tab


# -- what the statistics say, independently of the page -----------------------------------
def zero_layers(stats) -> list[int]:
    return [i for i, v in enumerate(stats["grad_norm"]) if v == 0]


def dead_layers(stats) -> list[int]:
    return [i for i, v in enumerate(stats.get("dead") or []) if v is not None and v >= DEAD]


def spans(indices, most=4) -> str:
    """1-based spans as the page writes them: [0, 1, 2, 4] -> "1–3, 5" (then "and N more")."""
    runs: list[list[int]] = []
    for i in indices:
        if runs and i == runs[-1][1] + 1:
            runs[-1][1] = i
        else:
            runs.append([i, i])
    text = ", ".join(f"{a + 1}" if a == b else f"{a + 1}–{b + 1}" for a, b in runs[:most])
    rest = sum(b - a + 1 for a, b in runs[most:])
    return f"{text} and {rest} more" if rest else text


def check_agrees(diag, stats):
    """The verdict against the record it was computed from: red exactly when a layer's gradient is
    exactly 0 (unless the loss gives none), 'Gradients flow' only when every layer's is finite and
    non-zero and no layer is dead; the silent layers and the dead ones named."""
    g = stats["grad_norm"]
    finite = all(v is not None and math.isfinite(v) for v in g) and stats["loss"] is not None
    zero, dead = zero_layers(stats), dead_layers(stats)
    text = " ".join([diag["title"], *diag["lines"]])
    if diag["title"].startswith("Gradients flow") or diag["level"] == "ok":
        assert finite and not zero and not dead, (diag, stats)
    if not finite:
        assert diag["level"] == "bad", (diag, stats)
        return
    if zero and (stats.get("delta_norm") or [None])[-1] != 0:  # else the loss itself gives no gradient
        assert diag["level"] == "bad" and f"{'layer' if len(zero) == 1 else 'layers'} {spans(zero)}" in text, (diag, stats)
        if len(zero) == len(g) or dead:
            assert diag["title"] == f"Dead network: no gradient reaches {'layer' if len(zero) == 1 else 'layers'} {spans(zero)}", diag
    if dead:
        assert diag["level"] != "ok" and f"{'Layer' if len(dead) == 1 else 'Layers'} {spans(dead)}: " in text, (diag, stats)


# -- the contract over many records (Chromium evaluates the page's own modules) -------------
def records(n: int, depth: int = 10, seed: int = 0) -> list[dict]:
    """Records of every kind: healthy, vanishing, exploding, some or all layers exactly 0, one layer
    90%+ dead among healthy ones, NaN, and a loss that gives no gradient."""
    rng = np.random.default_rng(seed)
    out = []
    for k in range(n):
        g = 10.0 ** rng.uniform(-8, 2, depth + 1) if k % 3 else 10.0 ** rng.uniform(-1, 0, depth + 1)
        dead = np.where(rng.random(depth) < 0.15, rng.uniform(0.85, 1.0, depth), rng.uniform(0, 0.3, depth))
        kind = k % 7
        if kind == 1:
            g[: rng.integers(1, depth + 2)] = 0  # silent from the input side
        elif kind == 2:
            g[:] = 0
        elif kind == 3:
            g[rng.integers(0, depth + 1)] = 0  # one silent layer anywhere
        g = [float(v) for v in g]
        if kind == 4:
            g[rng.integers(0, depth + 1)] = None
        delta = [float(v) for v in g if v is not None] + [1.0] * (depth + 1)
        delta = delta[: depth + 1]
        loss = 0.69
        if kind == 5 and k % 2:
            g, delta, loss = [0.0] * (depth + 1), [0.0] * (depth + 1), 0.0
        out.append({"grad_norm": g, "delta_norm": delta, "dead": [float(v) for v in dead], "loss": loss,
                    "saturation": [float(v) for v in rng.uniform(0, 1, depth)], "update_ratio": [1e-3] * (depth + 1)})
    return out


CONFIGS = [{"activation": a, "init": i, "init_gain": 1.0, "batchnorm": bn, "residual": False, "clip_mode": "none",
            "learning_rate": 0.1, "leaky_alpha": 0.01}
           for a in ("relu", "sigmoid", "leaky_relu") for i in ("glorot_normal", "he_normal") for bn in (False, True)]


def test_the_diagnosis_is_never_green_with_a_silent_or_dead_layer(modules):
    recs = records(210)
    for config in CONFIGS:
        diags = modules.eval("([c, rs]) => rs.map((s) => D.diagnose(c, s))", [config, recs])
        for diag, stats in zip(diags, recs, strict=True):
            check_agrees(diag, stats)


def test_a_dead_network_is_red_and_names_its_layers(modules):
    """The record the README demo measured after 10,000 sigmoid steps and the switch to relu."""
    config = CONFIGS[0]
    dead = [0, 0.06, 0.11, 0.12, 0.17, 0.2, 0.16, 0.14, 0.23, 1.0]  # mean 0.22: under the old 0.4 average
    stats = {"grad_norm": [0.0] * 11, "delta_norm": [0.0] * 10 + [0.33], "dead": dead, "loss": 0.693,
             "saturation": [0.0] * 10}
    diag = modules.eval("([c, s]) => D.diagnose(c, s)", [config, stats])
    assert diag["level"] == "bad" and diag["title"] == "Dead network: no gradient reaches layers 1–11", diag
    assert any(line.startswith("Layer 10: 100% of its units are 0") for line in diag["lines"]), diag
    assert diag["fixes"] == ["batchnorm", "relu_he", "leaky"]
    he = modules.eval("([c, s]) => D.diagnose(c, s)", [{**config, "init": "he_normal", "batchnorm": True}, stats])
    assert he["fixes"] == ["leaky"] and "BatchNorm" not in he["lines"][-1]  # only what is left to do
    # one layer 95% dead among healthy ones: named, although the mean over layers is 0.1
    alive = {**stats, "grad_norm": [0.01] * 11, "delta_norm": [0.01] * 11, "dead": [0.0] * 6 + [0.95] + [0.0] * 3,
             "update_ratio": [1e-3] * 11}
    diag = modules.eval("([c, s]) => D.diagnose(c, s)", [config, alive])
    assert diag["level"] == "warn" and diag["title"] == "Dead units in layer 7", diag
    # the loss itself gives no gradient: not green, and not called dead
    fit = {**stats, "delta_norm": [0.0] * 11, "loss": 0.0}
    diag = modules.eval("([c, s]) => D.diagnose(c, s)", [config, fit])
    assert diag["level"] == "warn" and diag["title"].startswith("No gradient: the loss"), diag


def test_zero_gradients_through_time_are_never_green(modules):
    config = {"model": "rnn", "depth": 1, "activation": "tanh", "init": "glorot_normal", "init_gain": 0.5, "clip_mode": "none"}
    healthy = {"time_delta_norm": [[0.5, 0.6, 0.7, 0.8]], "loss": 0.1, "baseline": 1.0, "grad_norm": [1.0] * 5, "slope_rms": [0.9]}
    cases = {
        "healthy": healthy,
        "all zero": {**healthy, "time_delta_norm": [[0.0] * 4]},
        "early steps zero": {**healthy, "time_delta_norm": [[0.0, 0.0, 0.7, 0.8]]},
        "a group zero": {**healthy, "grad_norm": [0.0, 1.0, 1.0, 1.0, 1.0]},
        "every group zero": {**healthy, "grad_norm": [0.0] * 5},
        "a lower layer zero": {**healthy, "time_delta_norm": [[0.0] * 4, [0.5, 0.6, 0.7, 0.8]]},
        "a lower layer's first step zero": {**healthy, "time_delta_norm": [[0.0, 0.5, 0.6, 0.7], [0.5, 0.6, 0.7, 0.8]]},
    }
    got = {name: modules.eval("([c, s]) => TD.diagnoseTime(c, s)", [{**config, "depth": len(s["time_delta_norm"])}, s])
           for name, s in cases.items()}
    assert got["healthy"]["level"] == "ok"
    assert got["all zero"]["level"] == "bad" and got["all zero"]["title"] == "Dead network: no gradient reaches any time step"
    assert got["early steps zero"]["level"] == "bad" and "time steps 1–2" in " ".join(got["early steps zero"]["lines"])
    assert got["a group zero"]["level"] == "bad" and "1 of 5 parameter groups" in got["a group zero"]["title"]
    assert got["every group zero"]["level"] == "warn"
    assert got["a lower layer zero"]["title"] == "Dead network: no gradient reaches recurrent layer 1"
    assert "time step 1 of recurrent layer 1" in " ".join(got["a lower layer's first step zero"]["lines"])
    for name, diag in got.items():
        if name != "healthy":
            assert diag["level"] != "ok", (name, diag)


# -- the README demo, step by step --------------------------------------------------------
def owner(srv, sid):
    return srv.server.config.app.state.manager.sessions[sid]


def advance(srv, sid, n):
    """n training steps on the session's worker, exactly (HTTP has only the single Step)."""
    s = owner(srv, sid)
    return s.submit(s.advance, n).result(timeout=600)


def fork(srv, sid, token) -> tuple[str, str]:
    r = httpx.post(f"{srv.url}/api/sessions/{sid}/fork", json={"from": "current", "paused": True},
                   headers={"Authorization": f"Bearer {token}"}, timeout=120)
    r.raise_for_status()
    return r.json()["id"], r.json()["token"]


def open_as_owner(tabs, srv, sid, token):  # noqa: F811
    tab = tabs().open(f"{srv.url}/api/health")
    tab.eval("([k, v]) => localStorage.setItem(k, v)", [f"gradscope.token.{sid}", token])
    tab.open(f"{srv.url}/s/{sid}")
    tab.eval("async () => { window.D = await import('/static/diagnosis.js'); }")
    return tab


SHOWN = """n => {
  const s = window.gradscope && gradscope.dashboard.series.latest, panel = document.getElementById('diagnosis');
  if (!s || !s.grad_norm || s.step !== n || !gradscope.diagnosis) return false;
  const mine = D.diagnose(gradscope.config, s);
  const title = panel.querySelector('.diag-title'), fixes = [...panel.querySelectorAll('button[data-fix]')].map((b) => b.dataset.fix);
  if (JSON.stringify(mine) !== JSON.stringify(gradscope.diagnosis) || !title || title.textContent !== mine.title
      || panel.dataset.level !== mine.level || JSON.stringify(fixes) !== JSON.stringify(mine.fixes)) return false;
  return { diag: mine, stats: { step: s.step, loss: s.loss, grad_norm: s.grad_norm, delta_norm: s.delta_norm, dead: s.dead } };
}"""


def shown(tab, srv, sid, step):
    """Once the page shows the record of `step`: its diagnosis (as drawn) and that record, which
    must be the server's own measured row."""
    seen = tab.wait(SHOWN, step)
    rows = httpx.get(f"{srv.url}/api/sessions/{sid}/history", params={"since": step}, timeout=60).json()
    assert rows["step"][-1] == seen["stats"]["step"] == step
    np.testing.assert_allclose(np.array(rows["grad_norm"][-1], float), np.array(seen["stats"]["grad_norm"], float), rtol=1e-6)
    assert zero_layers({"grad_norm": rows["grad_norm"][-1]}) == zero_layers(seen["stats"])  # exact zeros stay exact
    check_agrees(seen["diag"], seen["stats"])
    return seen["diag"], seen["stats"]


def within_10(stats) -> bool:
    """The README: every layer's gradient within a factor of 10 of the output layer's."""
    g = np.array(stats["grad_norm"], float)
    return bool(np.all(g > 0) and g.max() / g[-1] < 10 and g.min() / g[-1] > 0.1)


def switch_to_relu(tab, srv, sid, at):
    """The README: pick relu in the Activation menu; the weights and the step stay."""
    tab.page.select_option("#ctl-activation", "relu")
    tab.wait("() => gradscope.config.activation === 'relu'"
             " && (gradscope.dashboard.info.labels || []).some(l => l.includes('sigmoid -> relu'))")
    advance(srv, sid, 1)
    return shown(tab, srv, sid, at)


def test_the_lecture_demo_at_2000_10000_and_30000_sigmoid_steps(demo, tabs):  # noqa: F811
    r = httpx.post(f"{demo.url}/api/sessions", json={"paused": True}, timeout=120)  # what `/` starts, paused
    r.raise_for_status()
    a, token = r.json()["id"], r.json()["token"]
    assert r.json()["config"]["activation"] == "sigmoid" and r.json()["config"]["depth"] == 10
    trained = 0
    for steps in (2000, 10000, 30000):
        advance(demo, a, steps - trained)
        trained = steps
        b, tb = fork(demo, a, token)  # the lecturer's run as it is at this moment
        tab = open_as_owner(tabs, demo, b, tb)
        diag, stats = shown(tab, demo, b, steps - 1)
        g = stats["grad_norm"]
        assert diag["title"] == "Vanishing gradients" and 1e-8 < g[0] / g[-1] < 1e-4, (diag, g)  # "about a millionth"
        diag, stats = switch_to_relu(tab, demo, b, steps)
        if steps == 2000:  # ReLU takes over: the gradient reaches every layer and the spirals are learned
            assert not diag["title"].startswith("Dead network") and within_10(stats), (diag, stats)
            advance(demo, b, 1999)
            diag, stats = shown(tab, demo, b, steps + 1999)
            assert within_10(stats) and stats["loss"] < 0.1, (diag, stats)
        else:  # layer 10 all 0: every weight gradient is 0, and stays so
            assert zero_layers(stats) == list(range(11)) and stats["dead"][9] == 1.0, stats
            assert diag["level"] == "bad" and diag["title"] == "Dead network: no gradient reaches layers 1–11", diag
            assert any(line.startswith("Layer 10: 100% of its units are 0") for line in diag["lines"]), diag
            advance(demo, b, 499)
            diag, stats = shown(tab, demo, b, steps + 499)
            assert zero_layers(stats) == list(range(11)) and diag["title"].startswith("Dead network"), diag
            # the README's way out: Add BatchNorm keeps the weights; ReLU + He init restarts them
            fix, more = ("batchnorm", 1000) if steps == 10000 else ("relu_he", 1500)
            tab.page.click(f"button[data-fix={fix}]")
            if fix == "batchnorm":
                tab.wait("() => gradscope.config.batchnorm === true")
                start = steps + 500
            else:
                tab.wait("() => gradscope.config.init === 'he_normal' && gradscope.config.activation === 'relu'")
                start = 0
            advance(demo, b, more)
            diag, stats = shown(tab, demo, b, start + more - 1)
            assert not zero_layers(stats) and stats["loss"] < 0.1, (fix, diag, stats)
            assert not diag["title"].startswith("Dead network"), diag
