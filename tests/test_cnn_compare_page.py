"""The compare view with CNN runs in a real headless Chromium, opened as a user does (the session
page's Compare dialog): plain against residual from the same state, and without against with
BatchNorm. Both runs step in lockstep; the panels hold each run's own per-conv-layer data."""
from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import pytest

from test_dashboard import Tab, browser, server  # noqa: F401  (fixtures)

pytestmark = pytest.mark.browser

DEPTH = 6
CNN = f"model=cnn&dataset=digits&depth={DEPTH}&width=8&batch_size=32"
STEPS = 10
SHOT = Path(tempfile.gettempdir()) / "gradscope-screenshots" / "cnn-compare.png"
SLOW = 240_000  # ms: four CNN programs compile on a shared 2-core machine


def wait(tab, expr, arg=None):
    return tab.page.wait_for_function(expr, arg=arg, timeout=SLOW, polling=100).json_value()


def open_compare(browser, query, changes):  # noqa: F811
    """A CNN session page, then Compare with `changes`: the compare page, paused, this browser owning both."""
    tab = Tab(browser).open(query)
    wait(tab, "() => window.gradscope && gradscope.dashboard.series.step.length >= 1")
    page = tab.page
    page.click("#btn-compare")
    page.fill("#compare-changes", changes)
    page.click("#compare-go")
    page.wait_for_url("**/compare/**", timeout=SLOW)
    wait(tab, "() => gradscope.compare && gradscope.compare.runs.every(r => r.role && r.config) && gradscope.compare.owner")
    return tab


def step_both(tab, steps):
    """Play both in lockstep until each is `steps` past where they started, then pause: level again."""
    start = tab.eval("gradscope.compare.runs.map(r => r.step)")
    assert start[0] == start[1]  # B is A's very state
    tab.page.click("#cmp-play")
    wait(tab, "n => gradscope.compare.runs.every(r => r.step >= n)", start[0] + steps)
    tab.page.click("#cmp-play")
    wait(tab, "() => { const [a, b] = gradscope.compare.runs; return [a, b].every(r => r.status === 'paused') && a.step === b.step; }")
    # every step's statistics are in, then one more draw
    wait(tab, """() => { const c = gradscope.compare;
        if (!c.runs.every(r => r.series.latest && r.series.latest.step === r.step - 1)) return false;
        if (!window.pairAsked) { window.pairAsked = true; c.dirty = true; return false; }
        return !c.dirty; }""")
    return start[0]


def check_panels(tab, depth, start):
    """Profile, ratio and activations hold A's and B's own latest rows; the heat maps one row per
    weight (depth conv layers and the classifier); the loss and accuracy both runs' series."""
    runs = tab.eval("""() => gradscope.compare.runs.map(r => ({ name: r.name, step: r.step, status: r.status,
        model: r.config.model, first: r.series.step[0], latest: r.series.latest,
        loss: r.series.h.loss, acc: r.series.h.accuracy }))""")
    assert [r["model"] for r in runs] == ["cnn", "cnn"]
    assert [r["step"] for r in runs] == [runs[0]["step"]] * 2 and runs[0]["step"] >= start + STEPS
    shown = tab.eval("""() => Object.fromEntries(Array.from(document.querySelectorAll('.cmp-card'),
        c => [c.dataset.chart, !c.hidden]))""")
    for card in ("profile", "ratio", "acts", "loss", "accuracy", "clip", "heatmap", "diagnosis"):
        assert shown[card], (card, shown)
    for chart, stat in (("profile", "grad_norm"), ("ratio", "update_ratio"), ("acts", "act_std")):
        traces = tab.eval("n => Array.from(document.getElementById(`cmp-${n}`).data, t => ({ name: t.name, y: t.y }))", chart)
        by_name = {t["name"]: t["y"] for t in traces}
        for r in runs:
            sent = r["latest"][stat]
            drawn = by_name[f"{r['name'].upper()} {stat}"]
            assert len(drawn) == len(sent) == (depth if stat == "act_std" else depth + 1)
            if chart == "acts":
                assert drawn == sent
            else:  # log charts draw through LogAxis: positive values unchanged
                np.testing.assert_allclose([v for v, s in zip(drawn, sent, strict=True) if s and s > 0],
                                           [s for s in sent if s and s > 0], rtol=1e-12)
    a, b = (r["latest"]["grad_norm"] for r in runs)
    assert a != b  # each run's own statistics, not one run's twice
    heats = {}
    for name in ("a", "b"):
        heat = tab.eval(f"""() => {{ const c = gradscope.compare, r = c.runs.find(r => r.name === '{name}'),
            m = c.heat.maps['{name}'], el = document.getElementById('cmp-heatmap-{name}');
            return {{ z: m.grid.z, last: r.series.h.grad_norm.at(-1), images: el.layout.images.length,
                      zmin: el.data[0].zmin, zmax: el.data[0].zmax }}; }}""")
        assert heat["images"] == 1 and len(heat["z"]) == depth + 1  # one row per conv layer, and the classifier
        np.testing.assert_allclose([row[-1] for row in heat["z"]], np.log10(heat["last"]), rtol=1e-9)
        heats[name] = heat
    assert (heats["a"]["zmin"], heats["a"]["zmax"]) == (heats["b"]["zmin"], heats["b"]["zmax"])  # one colour scale
    for name in ("loss", "accuracy"):
        traces = tab.eval("n => Array.from(document.getElementById(`cmp-${n}`).data, t => [t.name, t.y.at(-1)])", name)
        stat = "loss" if name == "loss" else "accuracy"
        assert traces == [[f"{r['name'].upper()} {stat}", r["loss" if name == "loss" else "acc"][-1]] for r in runs]
    # no shown card says it has nothing to draw; the chain-rule factors (an MLP's theory) stay hidden
    empty = tab.eval("""() => Array.from(document.querySelectorAll('.cmp-card:not([hidden]) .card-empty:not([hidden])'),
        e => e.closest('.cmp-card').dataset.chart + ': ' + e.textContent)""")
    assert empty == [] and not shown["chain"]
    for name in ("a", "b"):
        panel = tab.page.locator(f"#cmp-diagnosis-{name}")
        assert panel.get_attribute("data-level") in ("ok", "warn", "bad")
        assert panel.locator(".diag-title").inner_text().strip()
    return runs


def test_cnn_plain_against_residual_from_the_same_state(server, browser):  # noqa: F811
    tab = open_compare(browser, f"{server}/?{CNN}&activation=relu&init=he_normal", "residual=true")
    assert tab.eval("gradscope.compare.runs.map(r => r.config.residual)") == [False, True]
    start = step_both(tab, STEPS)
    runs = check_panels(tab, DEPTH, start)
    same = tab.eval("""n => gradscope.compare.runs.map(r => r.series.h.loss[r.series.step.indexOf(n - 1)])""", start)
    assert same[0] == same[1]  # the last step before the fork: one run's
    assert runs[0]["loss"][-1] != runs[1]["loss"][-1]
    assert "residual true" in tab.page.inner_text(".cmp-runs")
    SHOT.parent.mkdir(exist_ok=True)
    tab.page.screenshot(path=str(SHOT), full_page=True)
    assert tab.errors == [] and tab.external == []
    tab.context.close()


def test_cnn_without_against_with_batchnorm(server, browser):  # noqa: F811
    tab = open_compare(browser, f"{server}/?{CNN}&activation=tanh&init=glorot_normal", "batchnorm=true")
    assert tab.eval("gradscope.compare.runs.map(r => r.config.batchnorm)") == [False, True]
    start = step_both(tab, STEPS)
    runs = check_panels(tab, DEPTH, start)
    assert runs[0]["loss"][-1] != runs[1]["loss"][-1]
    assert "batchnorm true" in tab.page.inner_text(".cmp-runs")
    assert tab.errors == [] and tab.external == []
    tab.context.close()
