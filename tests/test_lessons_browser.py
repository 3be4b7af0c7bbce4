"""Lessons and compare in a real headless Chromium: a lesson start to finish, the compare view in lockstep."""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np
import pytest

from test_dashboard import SMALL, Tab, browser, server  # noqa: F401  (fixtures)

pytestmark = pytest.mark.browser
# The README's pictures are refreshed on request (GRADSCOPE_SCREENSHOTS=1); a plain run keeps the tree clean.
SHOTS = (Path(__file__).resolve().parents[1] / "docs" if os.environ.get("GRADSCOPE_SCREENSHOTS")
         else Path(tempfile.gettempdir()) / "gradscope-screenshots")
SCREENSHOT = SHOTS / "compare.png"
LESSON_SHOT = SCREENSHOT.with_name("lesson.png")
SLOW = 300_000  # ms: two runs compile and train on a shared 2-core machine


def wait(tab, expr, arg=None):
    return tab.page.wait_for_function(expr, arg=arg, timeout=SLOW, polling=100).json_value()


def test_a_lesson_from_prediction_to_verdict(server, browser):  # noqa: F811
    tab = Tab(browser).open(f"{server}/lessons/sigmoid-vs-tanh")
    page = tab.page
    page.wait_for_selector("#lesson-run", timeout=SLOW)
    assert page.is_disabled("#lesson-run")  # predict first
    assert "answer" not in tab.eval("JSON.stringify(gradscope.lesson.lesson.question)")
    page.check("input[name=choice][value='2']")
    page.click("#lesson-run")
    verdict = wait(tab, "() => gradscope.lesson && gradscope.lesson.verdict")
    assert verdict["ready"] and verdict["holds"] and verdict["answer"] == 2
    shown = page.inner_text(".lesson-verdict")
    assert "Right." in shown and "under tanh" in shown and "✓ sigmoid: layer 1 / output" in shown
    assert page.get_attribute(".cmp-card.highlight", "data-chart") == "profile"
    runs = tab.eval("gradscope.compare.runs.map(r => [r.status, r.step])")
    assert runs == [["paused", 20], ["paused", 20]]
    legend = tab.eval("Array.from(document.getElementById('cmp-profile').data, t => t.name)")
    assert legend == ["A grad_norm", "B grad_norm"]
    page.screenshot(path=str(LESSON_SHOT))
    assert tab.errors == [] and tab.external == []


def check_pair_panels(tab, depth):
    """The heat maps, the chain-rule factors and the diagnoses of A and B hold each run's own data."""
    # every step's stats are in (the status message may come first), then one more draw
    tab.wait("""() => { const c = gradscope.compare;
        if (!c.runs.every(r => r.series.latest && r.series.latest.step === r.step - 1)) return false;
        if (!window.pairAsked) { window.pairAsked = true; c.dirty = true; return false; }
        return !c.dirty; }""")
    for name in ("a", "b"):
        heat = tab.eval(f"""() => {{ const c = gradscope.compare, r = c.runs.find(r => r.name === '{name}'),
            m = c.heat.maps['{name}'], el = document.getElementById('cmp-heatmap-{name}');
            return {{ z: m.grid.z, last: r.series.h.grad_norm.at(-1), images: el.layout.images.length,
                      zmin: el.data[0].zmin, zmax: el.data[0].zmax }}; }}""")
        assert heat["images"] == 1 and len(heat["z"]) == depth + 1  # one row per weight matrix
        # the last column is log10 of the last kept step's per-layer gradient norms
        np.testing.assert_allclose([row[-1] for row in heat["z"]], np.log10(heat["last"]), rtol=1e-9)
        assert heat["zmin"] <= min(min(row) for row in heat["z"]) and max(max(row) for row in heat["z"]) <= heat["zmax"]
        if name == "a":
            shared = (heat["zmin"], heat["zmax"])
    assert (heat["zmin"], heat["zmax"]) == shared  # one colour scale for both
    chain = tab.eval("""() => ({ names: Array.from(document.getElementById('cmp-chain').data, t => t.name),
        y: Array.from(document.getElementById('cmp-chain').data, t => t.y),
        latest: gradscope.compare.runs.map(r => [r.series.latest.delta_norm, r.series.latest.h_grad_norm,
                                                 r.series.latest.u_grad_norm]) })""")
    assert chain["names"] == ["A slope", "A weight", "B slope", "B weight"]
    for k, (delta, h, u) in enumerate(chain["latest"]):
        delta, h, u = map(np.asarray, (delta, h, u))
        u_next = np.append(u[1:], delta[depth])  # the output layer's u is its z
        np.testing.assert_allclose(chain["y"][2 * k], delta[:depth] / h, rtol=1e-9)
        np.testing.assert_allclose(chain["y"][2 * k + 1], h / u_next, rtol=1e-9)
        assert np.all(np.asarray(chain["y"][2 * k]) <= 1 + 1e-9)  # tanh's slope is at most 1
    for k, name in enumerate(("a", "b")):
        panel = tab.page.locator(f"#cmp-diagnosis-{name}")
        assert panel.get_attribute("data-level") in ("ok", "warn", "bad")
        assert panel.locator(".diag-title").inner_text().strip()
        # each panel reads its own run: its per-layer slope factor is that run's geometric mean
        line = next(t for t in panel.locator("li").all_inner_texts() if t.startswith("Per layer back: slope factor"))
        expected = float(np.exp(np.mean(np.log(chain["y"][2 * k]))))
        assert float(line.split()[5]) == pytest.approx(expected, rel=0.06)  # printed to 2 digits


def test_compare_from_a_session_steps_both_in_lockstep_and_the_link_opens_as_viewer(server, browser):  # noqa: F811
    tab = Tab(browser).open(f"{server}/?{SMALL}&activation=tanh")
    wait(tab, "() => window.gradscope && gradscope.dashboard.series.step.length >= 5")
    page = tab.page
    page.click("#btn-compare")
    page.fill("#compare-changes", "learning_rate=0.5, clip_mode=norm")
    page.click("#compare-go")
    page.wait_for_url("**/compare/**", timeout=SLOW)
    wait(tab, "() => gradscope.compare && gradscope.compare.runs.every(r => r.role) && gradscope.compare.owner")
    assert not page.is_disabled("#cmp-step")  # this browser holds both tokens: lockstep controls
    start = tab.eval("gradscope.compare.runs.map(r => r.step)")
    assert start[0] == start[1]  # B is A's very state: paused at the same step
    for _ in range(2):
        page.click("#cmp-step")
    wait(tab, "n => gradscope.compare.runs.every(r => r.step === n && r.series.lastStep === n - 1)", start[0] + 2)
    same = tab.eval("""() => { const [a, b] = gradscope.compare.runs;
        return [a.series.h.loss.at(-3) === b.series.h.loss.at(-3), a.series.h.loss.at(-1) === b.series.h.loss.at(-1)]; }""")
    assert same == [True, False]  # identical up to the change, apart one step after it
    page.click("#cmp-play")
    wait(tab, "n => gradscope.compare.runs.every(r => r.status === 'running' && r.step > n)", start[0] + 20)
    page.click("#cmp-play")
    tab.wait("() => gradscope.compare.runs.every(r => r.status === 'paused')")
    tab.wait("() => { const [a, b] = gradscope.compare.runs; return a.step === b.step; }")
    check_pair_panels(tab, depth=6)
    acc = tab.eval("""() => ({ names: Array.from(document.getElementById('cmp-accuracy').data, t => t.name),
        y: Array.from(document.getElementById('cmp-accuracy').data, t => t.y.at(-1)),
        want: gradscope.compare.runs.map(r => r.series.h.accuracy.at(-1)) })""")
    assert acc["names"] == ["A accuracy", "B accuracy"] and acc["y"] == acc["want"]  # spirals: a classification
    assert all(0 <= a <= 1 for a in acc["y"])
    SCREENSHOT.parent.mkdir(exist_ok=True)
    page.screenshot(path=str(SCREENSHOT), full_page=True)
    # B's own knobs, on the compare page: its learning rate only; the server has it, the chip says it
    assert page.input_value("#cmp-knob-b-learning_rate") == "0.5" and page.input_value("#cmp-knob-a-clip_mode") == "none"
    page.fill("#cmp-knob-b-learning_rate", "0.05")
    page.press("#cmp-knob-b-learning_rate", "Tab")
    tab.wait("() => gradscope.compare.runs[1].config.learning_rate === 0.05")
    rates = tab.eval("""async () => Promise.all(gradscope.compare.runs.map(async r =>
        (await (await fetch(`/api/sessions/${r.id}`)).json()).config.learning_rate))""")
    assert rates == [0.1, 0.05] and "learning_rate 0.05" in page.inner_text(".cmp-runs")
    page.select_option("#cmp-knob-a-activation", "relu")
    tab.wait("() => gradscope.compare.runs[0].config.activation === 'relu'")
    assert "activation tanh" in page.inner_text(".cmp-runs")  # B's difference from A is now its activation
    assert page.is_disabled("#cmp-knob-a-clip_value") and not page.is_disabled("#cmp-knob-b-clip_value")  # A does not clip
    link = page.url
    viewer = Tab(browser).open(link)
    wait(viewer, "() => gradscope.compare && gradscope.compare.runs.every(r => r.role === 'viewer')")
    assert viewer.page.is_disabled("#cmp-step") and viewer.page.is_disabled("#cmp-play")
    assert "learning_rate 0.05" in viewer.page.inner_text(".cmp-runs")
    assert viewer.page.is_disabled("#cmp-knob-a-learning_rate") and viewer.page.is_disabled("#cmp-knob-b-learning_rate")
    assert tab.errors == [] and viewer.errors == [] and tab.external == []


def test_compare_with_an_existing_session_by_its_link_and_open_each_runs_own_page(server, browser):  # noqa: F811
    """The Compare dialog's second field: another session's link. This browser owns A, not B:
    no lockstep controls, a link to each run's own page (the owner's controls on A's, a viewer's on B's)."""
    other = Tab(browser).open(f"{server}/?{SMALL}&activation=relu")  # someone else's session: its token stays there
    wait(other, "() => window.gradscope && gradscope.dashboard.series.step.length >= 3")
    bid = other.eval("gradscope.id")
    tab = Tab(browser).open(f"{server}/?{SMALL}&activation=tanh")
    wait(tab, "() => window.gradscope && gradscope.dashboard.series.step.length >= 3")
    aid, page = tab.eval("gradscope.id"), tab.page
    page.click("#btn-compare")
    page.fill("#compare-link", f"{server}/s/{bid}?x=1")
    page.click("#compare-go")
    page.wait_for_url(f"**/compare/{aid}/{bid}", timeout=SLOW)
    wait(tab, "() => gradscope.compare && gradscope.compare.runs.every(r => r.role)")
    assert tab.eval("gradscope.compare.runs.map(r => [r.id, r.role])") == [[aid, "owner"], [bid, "viewer"]]
    assert page.is_disabled("#cmp-step") and page.is_disabled("#cmp-play")  # lockstep needs both tokens
    # each run's knobs: A's for its owner, B's shown but not changeable here
    knobs = "r => ['activation', 'learning_rate', 'clip_mode'].map(k => document.getElementById(`cmp-knob-${r}-${k}`).disabled)"
    assert tab.eval(knobs, "a") == [False, False, False] and tab.eval(knobs, "b") == [True, True, True]
    assert page.input_value("#cmp-knob-b-activation") == "relu" and page.input_value("#cmp-knob-a-activation") == "tanh"
    assert "activation relu" in page.inner_text(".cmp-runs")
    links = page.eval_on_selector_all(".cmp-open", "els => els.map(e => [e.getAttribute('href'), e.target])")
    assert links == [[f"/s/{aid}", "_blank"], [f"/s/{bid}", "_blank"]]
    wait(tab, "() => gradscope.compare.runs.every(r => r.series.latest)")  # both runs' charts have data
    assert tab.eval("Array.from(document.getElementById('cmp-profile').data, t => t.name)") == ["A grad_norm", "B grad_norm"]
    for k, (sid, role) in enumerate(((aid, "owner"), (bid, "viewer"))):
        with tab.context.expect_page() as opened:
            page.locator(".cmp-open").nth(k).click()
        own = opened.value
        own.wait_for_function("id => window.gradscope && gradscope.id === id && gradscope.socket", arg=sid, timeout=SLOW)
        own.wait_for_function("r => document.getElementById('role').dataset.role === r", arg=role, timeout=SLOW)
        assert own.is_disabled("#btn-play") == (role == "viewer")  # the owner controls A on its own page
        own.close()
    assert tab.errors == [] and other.errors == [] and tab.external == [] and other.external == []


def test_a_cnn_lesson_outlines_the_signal_propagation_chart(server, browser):  # noqa: F811
    """The residual CNN without and with BatchNorm: the verdict holds in the page, and the compare
    view's signal-propagation card (the lesson's look) holds both runs' per-unit variances."""
    tab = Tab(browser).open(f"{server}/lessons/cnn-residual-batchnorm")
    page = tab.page
    page.wait_for_selector("#lesson-run", timeout=SLOW)
    page.check("input[name=choice][value='1']")
    page.click("#lesson-run")
    verdict = wait(tab, "() => gradscope.lesson && gradscope.lesson.verdict")
    assert verdict["ready"] and verdict["holds"], verdict
    assert verdict["values"]["exp"] > 10 and verdict["values"]["lin"] < 3
    assert page.get_attribute(".cmp-card.highlight", "data-chart") == "spp"
    assert "Right." in page.inner_text(".lesson-verdict")
    tab.wait("() => document.getElementById('cmp-spp').data && document.getElementById('cmp-spp').data.length === 4")
    traces = tab.eval("Array.from(document.getElementById('cmp-spp').data, t => [t.name, t.y.length, t.connectgaps])")
    assert [t[0] for t in traces] == ["A spp_var", "A spp_res_var", "B spp_var", "B spp_res_var"]
    assert all(n == 25 and gaps for _, n, gaps in traces)  # one entry per conv layer, drawn across the blocks' insides
    # the page's last values are the runs' own: B's (BatchNorm) last unit is far below A's
    last = tab.eval("""() => Object.fromEntries(gradscope.compare.runs.map(r => [r.name, r.series.latest.spp_var.at(-1)]))""")
    assert last["a"] > 5 * last["b"] > 0
    assert not page.is_hidden("#cmp-spp") and page.is_hidden("#cmp-chain")
    assert tab.errors == [] and tab.external == []


def test_the_lessons_menu_groups_the_lessons_by_model(server, browser):  # noqa: F811
    tab = Tab(browser).open(f"{server}/?depth=2&width=4")
    tab.page.click("#btn-lessons")
    tab.page.wait_for_selector("#lessons-menu .lesson-group", timeout=SLOW)
    groups = tab.eval("Array.from(document.querySelectorAll('#lessons-menu .lesson-group'), g => g.textContent)")
    assert groups == ["MLP", "CNN", "GAN"]
    order = tab.eval("Array.from(document.querySelectorAll('#lessons-menu .lesson-link'), a => a.dataset.model)")
    assert order == sorted(order, key=["mlp", "cnn", "gan"].index) and order.count("cnn") == 7 and order.count("gan") == 3
    assert tab.page.get_attribute("#lessons-menu .lesson-link[data-model=cnn]", "href").startswith("/lessons/cnn-")
    assert tab.errors == [] and tab.external == []
