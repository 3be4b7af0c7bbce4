"""The views of #10 in a real headless Chromium against a real server: each fills in with the
engine's statistics, the dropout control round-trips through the URL, a click on a layer of the
chain-rule chart highlights it elsewhere, clipping shows its threshold, the diagnosis reads the
factors. Waits on page state, never on time."""
from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

import pytest

from test_dashboard import SMALL, browser, server, tabs  # noqa: F401  (fixtures)

pytestmark = pytest.mark.browser
DEPTH = 6

CHART = "name => document.getElementById(`chart-${name}`)"


def show(tab, name):
    """Scroll chart `name` into view (charts off screen are not redrawn) and wait for a fresh draw."""
    tab.page.locator(f"#chart-{name}").scroll_into_view_if_needed()
    n = tab.eval("n => gradscope.dashboard.scheduler.counts()[n]", name)
    tab.wait("([name, n]) => gradscope.dashboard.scheduler.counts()[name] > n + 1", [name, n])


def trace(tab, name, i, key="y"):
    return tab.eval(f"([n, i, k]) => ({CHART})(n).data[i][k]", [name, i, key])


def test_new_views_fill_in_with_real_data(server, tabs):  # noqa: F811
    tab = tabs().open(f"{server}/?{SMALL}")  # sigmoid, Glorot: vanishing
    tab.wait_running(60)
    show(tab, "chain")
    assert [len(trace(tab, "chain", i)) for i in range(5)] == [DEPTH] * 5  # slope, weight, BatchNorm, product, theory
    # the numbers of one draw (the plotted arrays may be caught between two animation frames)
    f = tab.eval("gradscope.dashboard.info.chain")
    slope, weight, bn, product = f["slope"], f["weight"], f["bn"], f["product"]
    assert all(v > 0 for v in product)
    for s, w, b, p in zip(slope, weight, bn, product, strict=True):
        assert s * w * b == pytest.approx(p, rel=1e-4)  # the three factors telescope
        assert s <= 0.25 * (1 + 1e-3)  # sigmoid's slope is at most 0.25, and no dropout
    assert all(b == pytest.approx(1, rel=1e-5) for b in bn)  # no BatchNorm: u == z

    show(tab, "slope")
    share, dphi = trace(tab, "slope", 0), trace(tab, "slope", 1)
    assert len(share) == 48 and sum(share) == pytest.approx(1)
    assert max(dphi) == pytest.approx(0.25, rel=1e-3)  # sigmoid's slope, peaked at z = 0
    flat = tab.eval(f"({CHART})('slope').layout.shapes.map(s => [s.x0, s.x1])")
    assert len(flat) == 2 and flat[0][1] < -2 and flat[1][0] > 2  # |phi'| < 0.05 beyond |z| ~ 3

    for name, rows in [("zmap", DEPTH), ("hmap", 48), ("drift", DEPTH + 1)]:
        show(tab, name)
        tab.wait(f"n => ({CHART})(n).data[0].z.length === {rows}", name)
        assert tab.eval(f"({CHART})('{name}').layout.images[0].source").startswith("data:image/png")

    show(tab, "weights")
    dist = trace(tab, "weights", 6)
    assert len(dist) == DEPTH + 1 and all(v > 0 for v in dist)  # every layer moved from its start

    show(tab, "clip")
    assert set(trace(tab, "clip", 2)) == {1}  # no clipping: the clipped gradient is the gradient
    assert set(trace(tab, "clip", 3)) == {0}

    show(tab, "val")
    tab.wait(f"() => ({CHART})('val').data[1].y.length >= 2")  # held-out points, every meta.val_every steps
    steps = trace(tab, "val", 1, "x")
    assert all(s % tab.eval("gradscope.meta.val_every") == 0 for s in steps)
    acc = trace(tab, "val", 3)
    assert all(0 <= a <= 1 for a in acc)


def test_diagnosis_reads_the_slope_factor(server, tabs):  # noqa: F811
    tab = tabs().open(f"{server}/?{SMALL}")
    tab.wait_running(20)
    line = tab.wait("() => gradscope.diagnosis && gradscope.diagnosis.lines.find(l => l.startsWith('Slope factor'))")
    assert line.endswith("per layer: sigmoid's ceiling is 0.25.")
    assert 0 < float(line.split()[2]) <= 0.25


def test_dropout_round_trips_through_the_url(server, tabs):  # noqa: F811
    tab = tabs().open(f"{server}/?{SMALL}&dropout=0.3")
    tab.wait_running(5)
    assert tab.eval("gradscope.config.dropout") == 0.3
    assert float(tab.page.input_value("#ctl-dropout")) == pytest.approx(0.3)
    tab.page.click("#btn-setup")
    assert parse_qs(urlsplit(tab.wait("() => gradscope.copied")).query)["dropout"] == ["0.3"]
    tab.page.fill("#ctl-dropout", "0.5")  # a range input: fill sets the value and fires change
    tab.wait("() => gradscope.config.dropout === 0.5")
    tab.wait("() => (gradscope.dashboard.info.labels || []).some(l => l.includes('dropout 0.3 -> 0.5'))")
    tab.page.click("#btn-setup")
    tab.wait("() => gradscope.copied.includes('dropout=0.5')")


def test_click_on_a_layer_highlights_it_everywhere(server, tabs):  # noqa: F811
    tab = tabs().open(f"{server}/?{SMALL}")
    tab.wait_running(20)
    show(tab, "chain")
    layer = 3  # 0-based: the fourth hidden layer
    marker = tab.page.locator("#chart-chain .scatterlayer .traceproduct .points path").nth(layer)
    box = marker.bounding_box()
    tab.page.mouse.click(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)  # a real click on the point
    tab.wait("l => gradscope.dashboard.layer === l", layer)
    for name in ["profile", "chain", "ratio", "acts", "weights"]:
        rects = tab.eval(f"({CHART})('{name}').layout.shapes.filter(s => s.type === 'rect' && s.xref === 'x')")
        assert [(r["x0"], r["x1"]) for r in rects] == [(layer + 0.5, layer + 1.5)], name
    assert tab.page.input_value("#hist-layer") == str(layer)
    assert tab.page.input_value("#slope-layer") == str(layer)
    show(tab, "slope")
    assert tab.eval("gradscope.dashboard.info.slope.layer") == layer


def test_clipping_shows_threshold_and_clipped_profile(server, tabs):  # noqa: F811
    tab = tabs().open(f"{server}/?{SMALL}&clip_mode=value&clip_value=0.001")
    tab.wait_running(20)
    texts = tab.eval(f"({CHART})('clip').layout.annotations.map(a => a.text)")
    assert "per-entry cap" in texts
    assert tab.eval(f"({CHART})('clip').layout.shapes.some(s => s.y0 === 0.001 && s.xref === 'paper')")
    show(tab, "clip")
    assert min(trace(tab, "clip", 2)) < 1  # capping entries turns the gradient
    assert max(trace(tab, "clip", 3)) > 0
    clipped = tab.eval(f"({CHART})('profile').data.find(t => t.name === 'clipped')")
    assert clipped["visible"] is True and len(clipped["y"]) == DEPTH + 1
    tab.page.select_option("#ctl-clip_mode", "norm")
    tab.wait(f"() => ({CHART})('clip').layout.annotations.some(a => a.text === 'norm cap')")
