"""The GAN's page in a real Chromium (issue 20): the data plane fills with real and generated points
and D's arrows from the server's plane messages; G's and D's profiles and the logit-gradient chart
draw the rows the server sent, on the theory of the loss in use; gan_loss switched live takes effect
(|dL_G/dlogit| moves from 1 - D(G(z)) to D(G(z))); the controls grey out what the chosen Lipschitz
constraint does not use and the common keys the GAN does not take; a compare of two GAN runs draws both;
the data drawn on the plane with the mouse becomes the run's dataset, and a viewer cannot draw."""
from __future__ import annotations

import json
import math
import urllib.parse
import urllib.request

import pytest

from test_dashboard import Tab, browser, server, session_id, tabs  # noqa: F401  (fixtures)

pytestmark = pytest.mark.browser

# test_gan_family's session shape (its executables may be in the suite's compile cache) with a D that
# learns fast (d_lr is traced: the same executable), soon rejecting G's samples: the two theories far apart
GAN = "model=gan&dataset=ring8&width=16&batch_size=64&g_depth=2&d_depth=2&d_lr=0.1"
GAN_CARDS = ["plane", "logit", "gprofile", "dprofile", "gheat", "dheat", "odds", "critic", "modes"]
# The control panel alone, on a same-origin page, from the server's /api/meta (no session: nothing compiles).
PANEL = """async () => {
  const [state, controls] = await Promise.all(["state", "controls"].map((m) => import(`/static/${m}.js`)));
  const meta = await (await fetch("/api/meta")).json();
  window.META = meta;
  window.P = new controls.Controls(document.body.appendChild(document.createElement("div")), new state.Schema(meta), () => {});
}"""
CLIP_ONLY = "Clip c applies under lipschitz clip only; the server refuses it under lipschitz "
GP_ONLY = "Penalty λ applies under lipschitz gp only; the server refuses it under lipschitz "
SHOWN = "names => Object.fromEntries(names.map(n => [n, !document.querySelector(`[data-card=${n}]`).hidden]))"
STATE = """keys => Object.fromEntries(keys.map(k => {
  const row = document.querySelector(`[data-key=${k}]`), why = row.querySelector('.ctl-why');
  return [k, {disabled: document.getElementById(`ctl-${k}`).disabled, note: why.hidden ? '' : why.textContent}];
}))"""


def drawn(tab, cards):
    """Until each of `cards` has drawn the series as it is now (scrolled into view: offscreen charts skip their redraws)."""
    for card in cards:
        tab.page.locator(f"[data-card={card}]").scroll_into_view_if_needed()
        tab.wait(f"() => gradscope.dashboard.drawn['{card}'] === gradscope.dashboard.series.version")


def logit_theory(tab):
    """The latest row's (d_fake, g_logit_grad), the chart's "now" point, and its solid theory curve's name."""
    return tab.eval("""() => { const s = gradscope.dashboard.series.latest, el = document.getElementById('chart-logit');
        return { d: s.d_fake, g: s.g_logit_grad, now: [el.data[3].x[0], el.data[3].y[0]],
                 solid: el.data.slice(0, 2).filter(t => t.line.dash === 'solid').map(t => t.name) }; }""")


def nearer(point, loss):
    """Whether |dL_G/dlogit| lies nearer `loss`'s theory curve at D(G(z)) than the other loss' (G's batch is
    measured against D after D's update, so it lies near its curve, not on it)."""
    theory = {"saturating": point["d"], "non_saturating": 1 - point["d"]}
    other = next(k for k in theory if k != loss)
    return abs(point["g"] - theory[loss]) < 0.5 * abs(point["g"] - theory[other])


def test_plane_profiles_and_logit_gradient_follow_the_rows_and_a_live_loss_switch(server, tabs):  # noqa: F811
    tab = tabs().open(f"{server}/?{GAN}")
    tab.wait_running(3)
    assert tab.eval(SHOWN, [*GAN_CARDS, "profile", "loss", "boundary"]) == {**dict.fromkeys(GAN_CARDS, True),
                                                                             "profile": False, "loss": False, "boundary": False}
    # the data plane: a plane message drawn, with real and generated points and D's arrows
    tab.page.locator("[data-card=plane]").scroll_into_view_if_needed()
    plane = tab.wait("() => { const p = gradscope.dashboard.info.plane; return p && p.frames >= 1 && p; }")
    sent = tab.eval("() => { const m = gradscope.dashboard.plane;"
                    " return [m.real.length, m.fake.length, m.arrows.length, m.d.length, m.d_output]; }")
    assert [plane["real"], plane["fake"], plane["arrows"]] == sent[:3] and min(sent[:3]) > 0
    assert sent[3] > 1 and sent[4] == "probability" and plane["range"] == [0, 1]

    tab.wait("() => gradscope.dashboard.series.latest.d_fake < 0.3")  # D is confident
    tab.page.click("#btn-play")  # paused: the rows stop, so what is drawn can be held against what was sent
    tab.wait("() => gradscope.status === 'paused'")
    drawn(tab, ["gprofile", "dprofile", "critic", "logit"])
    got = tab.eval("""() => { const s = gradscope.dashboard.series.latest, y = (n, i) => document.getElementById('chart-' + n).data[i].y;
        return { g: s.g_grad_norm, d: s.d_grad_norm, gDrawn: y('gprofile', 6), dDrawn: y('dprofile', 6), dDelta: y('dprofile', 7),
                 dDeltaSent: s.d_delta_norm, critic: [y('critic', 0), y('critic', 1)], criticSent: s.critic_act_grad }; }""")
    assert len(got["g"]) == len(got["d"]) == 3  # hidden layers and the output layer, per network
    assert got["gDrawn"] == got["g"] and got["dDrawn"] == got["d"] and got["dDelta"] == got["dDeltaSent"]
    assert got["critic"] == got["criticSent"] and len(got["critic"][0]) == 2  # real and fake, per D hidden layer
    # non-saturating (the default): |dL_G/dlogit| = 1 - D(G(z)), the chart's "now" point and its solid curve
    before = logit_theory(tab)
    assert before["now"] == [before["d"], before["g"]] and before["solid"] == ["non-saturating: 1 − D(G(z))"]
    assert nearer(before, "non_saturating")

    # switched live: the weights and the step stay, the rows after the switch follow the saturating theory
    step = tab.eval("gradscope.step")
    tab.page.select_option("#ctl-gan_loss", "saturating")
    tab.wait("() => gradscope.config.gan_loss === 'saturating'")
    assert "gan_loss non_saturating -> saturating" in " ".join(tab.eval("gradscope.dashboard.info.labels"))
    tab.page.click("#btn-play")
    tab.wait("n => gradscope.dashboard.series.latest.step > n + 2", step)
    tab.page.click("#btn-play")
    tab.wait("() => gradscope.status === 'paused'")
    drawn(tab, ["logit"])
    after = logit_theory(tab)
    assert after["now"] == [after["d"], after["g"]] and after["solid"] == ["saturating: D(G(z))"]
    assert nearer(after, "saturating") and after["d"] < 0.4
    assert tab.eval("gradscope.dashboard.series.step[0]") < step  # not a restart: the series from before the switch stays
    # the controls: clip_c greyed under lipschitz none, the common keys the GAN does not take greyed with the reason
    state = tab.eval(STATE, ["clip_c", "gan_loss", "learning_rate"])
    assert state["clip_c"] == {"disabled": True, "note": CLIP_ONLY + "none."}
    assert state["gan_loss"] == {"disabled": False, "note": ""}
    assert state["learning_rate"]["disabled"] and "the server refuses it for the GAN" in state["learning_rate"]["note"]


def test_controls_grey_what_the_lipschitz_choice_and_the_model_do_not_use(server, browser):  # noqa: F811
    context = browser.new_context()
    page, errors = context.new_page(), []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(f"{server}/api/health")
    page.evaluate(PANEL)
    show = "over => P.setConfig({...META.defaults, ...META.defaults_by_model[over.model], ...over})"
    page.evaluate(show, {"model": "gan", "lipschitz": "gp"})
    state = page.evaluate(STATE, ["clip_c", "gp_lambda", "n_critic", "g_lr", "learning_rate", "depth", "activation"])
    assert state["clip_c"] == {"disabled": True, "note": CLIP_ONLY + "gp."}
    for key in ("gp_lambda", "n_critic", "g_lr"):
        assert state[key] == {"disabled": False, "note": ""}, key
    for key in ("learning_rate", "depth", "activation"):  # the common keys the GAN's per-network keys replace
        assert state[key]["disabled"] and "the server refuses it for the GAN" in state[key]["note"], key
    assert page.evaluate("document.querySelector('[data-key=gan_loss]').closest('section').hidden") is False
    page.evaluate(show, {"model": "gan", "lipschitz": "clip"})  # weight clipping: clip_c applies, the penalty's weight does not
    state = page.evaluate(STATE, ["clip_c", "gp_lambda"])
    assert state["clip_c"] == {"disabled": False, "note": ""}
    assert state["gp_lambda"] == {"disabled": True, "note": GP_ONLY + "clip."}
    page.evaluate(show, {"model": "mlp"})  # the MLP: the GAN's section hidden, its own keys back
    assert page.evaluate("document.querySelector('[data-key=gan_loss]').closest('section').hidden") is True
    assert page.evaluate(STATE, ["learning_rate", "depth"]) == {k: {"disabled": False, "note": ""} for k in ("learning_rate", "depth")}
    context.close()
    assert errors == []


def test_compare_draws_two_gan_runs_from_one_state(server, browser):  # noqa: F811
    """Saturating against non-saturating from one state, in lockstep (the shape and both losses'
    executables are the first test's: nothing compiles when it ran before)."""
    tab = Tab(browser).open(f"{server}/?{GAN}&gan_loss=saturating")
    tab.wait("() => window.gradscope && gradscope.dashboard.series.step.length >= 1")
    tab.page.click("#btn-compare")
    tab.page.fill("#compare-changes", "gan_loss=non_saturating")
    tab.page.click("#compare-go")
    tab.page.wait_for_url("**/compare/**")
    tab.wait("() => gradscope.compare && gradscope.compare.runs.every(r => r.role && r.config) && gradscope.compare.owner")
    start = tab.eval("Math.max(...gradscope.compare.runs.map(r => r.step))")
    tab.page.click("#cmp-play")
    tab.wait("n => gradscope.compare.runs.every(r => r.step >= n && r.series.latest)", start + 20)
    tab.page.click("#cmp-play")
    tab.wait("() => { const [a, b] = gradscope.compare.runs; return [a, b].every(r => r.status === 'paused') && a.step === b.step; }")
    tab.wait("""() => { const c = gradscope.compare;
        if (!c.runs.every(r => r.series.latest && r.series.latest.step === r.step - 1)) return false;
        if (!window.pairAsked) { window.pairAsked = true; c.dirty = true; return false; }
        return !c.dirty; }""")
    assert tab.eval("gradscope.compare.runs.map(r => r.config.gan_loss)") == ["saturating", "non_saturating"]
    shown = tab.eval("() => Object.fromEntries(Array.from(document.querySelectorAll('.cmp-card'), c => [c.dataset.chart, !c.hidden]))")
    assert {k: shown[k] for k in ("gprofile", "dprofile", "logit", "odds", "modes", "heatmap", "diagnosis", "profile", "loss")} == {
        **dict.fromkeys(("gprofile", "dprofile", "logit", "odds", "modes", "heatmap", "diagnosis"), True), "profile": False, "loss": False}
    latest = tab.eval("gradscope.compare.runs.map(r => r.series.latest.g_grad_norm)")
    drawn = tab.eval("Array.from(document.getElementById('cmp-gprofile').data, t => ({name: t.name, y: t.y}))")
    traces = {t["name"]: t["y"] for t in drawn}
    assert [traces["A g_grad_norm"], traces["B g_grad_norm"]] == latest and latest[0] != latest[1]
    rows = tab.eval("['a', 'b'].map(n => gradscope.compare.heat.maps[n].grid.z.length)")
    assert rows == [3, 3]  # G's layers: its heat map
    for name in ("a", "b"):
        assert tab.page.locator(f"#cmp-diagnosis-{name}").get_attribute("data-level") in ("ok", "warn", "bad")
    assert tab.errors == [] and tab.external == []
    tab.context.close()


def to_pixel(box, rect, x, y):
    """The page's point of data (x, y) on the drawing canvas at `rect`, by the plane's mapping
    (charts/plane.js fitBox: one scale for both axes, 6 px padding, the box centred), written again here."""
    x0, x1, y0, y1 = box
    s = min((rect["width"] - 12) / (x1 - x0), (rect["height"] - 12) / (y1 - y0))
    ox, oy = (rect["width"] - s * (x1 - x0)) / 2 - s * x0, (rect["height"] + s * (y1 - y0)) / 2 + s * y0
    return rect["x"] + ox + s * x, rect["y"] + oy - s * y


def drag(tab, pixels):
    """Press at the first pixel, move through the others (two pointer events to each), release."""
    mouse = tab.page.mouse
    mouse.move(*pixels[0])
    mouse.down()
    for px in pixels[1:]:
        mouse.move(*px, steps=2)
    mouse.up()


def test_data_drawn_on_the_plane_becomes_the_runs_dataset_and_a_viewer_cannot_draw(server, tabs):  # noqa: F811
    tab = tabs().open(f"{server}/?{GAN}")
    tab.page.locator("[data-card=plane]").scroll_into_view_if_needed()
    tab.wait("() => window.gradscope && gradscope.role === 'owner' && gradscope.dashboard.info.plane")  # the plane has axes
    assert tab.eval("gradscope.drawing.spec") == {"dataset": "drawn", "key": "points", "min": 8, "max": 5000}  # /api/meta
    # "drawn" in the Dataset menu opens the drawing mode rather than sending a set the server would refuse
    tab.page.select_option("#ctl-dataset", "drawn")
    tab.wait("() => gradscope.drawing.isOpen")
    assert tab.page.input_value("#ctl-dataset") == "ring8" and tab.eval("gradscope.config.dataset") == "ring8"
    assert tab.page.is_disabled("#draw-train") and tab.page.inner_text("#draw-train") == "Train on 0 points"
    tab.page.click("#draw-cancel")
    assert tab.eval("gradscope.drawing.isOpen") is False and tab.page.is_visible("#btn-draw")

    tab.page.click("#btn-draw")
    box = tab.eval("gradscope.drawing.box")
    assert box == tab.eval("gradscope.dashboard.charts.get('plane').axes()")  # the plane holds the axes drawn in
    rect = tab.page.locator(".draw-canvas").bounding_box()
    cx, cy, r = (box[0] + box[1]) / 2, (box[2] + box[3]) / 2, 0.3 * min(box[1] - box[0], box[3] - box[2])
    drag(tab, [to_pixel(box, rect, cx + r * (i / 2 - 1), cy - r / 2) for i in range(5)])  # a line, then cleared
    assert tab.eval("gradscope.drawing.points.length") >= 8
    tab.page.click("#draw-clear")
    assert tab.eval("gradscope.drawing.points.length") == 0 and tab.page.is_disabled("#draw-train")
    # an arc around the plane's centre, from angle 0 to pi
    arc = [(cx + r * math.cos(t), cy + r * math.sin(t)) for t in (math.pi * i / 12 for i in range(13))]
    drag(tab, [to_pixel(box, rect, x, y) for x, y in arc])
    points = tab.eval("gradscope.drawing.points")
    assert tab.page.locator(".draw-canvas").bounding_box() == rect  # the count shown never moved the plane under the pointer
    assert len(points) >= 20 and tab.page.inner_text("#draw-train") == f"Train on {len(points)} points"
    assert tab.page.is_enabled("#draw-train") and "at least" not in tab.page.inner_text("#draw-note")

    def on_the_arc(pts, tol):
        return all(abs(math.hypot(x - cx, y - cy) - r) < tol and y > cy - tol for x, y in pts)

    assert on_the_arc(points, 0.1)  # the page's mapping from pixels back to data is the plane's
    # a drawing the server refuses: said by field, and the mode stays open with the drawing
    held = tab.eval("() => { const d = gradscope.drawing, kept = d.points; d.points = kept.slice(0, 3); d.submit(); return kept; }")
    tab.wait("() => gradscope.errors.some(e => e.startsWith('points: '))")
    assert "too few drawn points: 3" in tab.page.inner_text("#toast") and tab.eval("gradscope.drawing.isOpen")
    tab.eval("kept => { gradscope.drawing.points = kept; gradscope.drawing.update(); }", held)

    tab.page.click("#draw-train")
    tab.wait("() => !gradscope.drawing.isOpen && gradscope.config.dataset === 'drawn'")
    sid = session_id(tab)
    with urllib.request.urlopen(f"{server}/api/sessions/{sid}", timeout=60) as reply:
        config = json.load(reply)["config"]
    assert config["dataset"] == "drawn" and len(config["points"]) == len(points)
    assert config["points"] == [[round(x, 4), round(y, 4)] for x, y in points]  # rounded to 4 decimals
    assert on_the_arc(config["points"], 0.1)
    angles = [math.atan2(y - cy, x - cx) for x, y in config["points"]]
    assert min(angles) < 0.2 and max(angles) > math.pi - 0.2  # the whole arc, end to end
    # G trains on jittered copies of it: the plane's real points follow the drawing, and the plane draws them
    tab.wait("""([cx, cy, r]) => { const m = gradscope.dashboard.plane;
        return m.real.length > 0 && m.real.every(([x, y]) => Math.abs(Math.hypot(x - cx, y - cy) - r) < 0.3 && y > cy - 0.3); }""",
             [cx, cy, r])
    tab.wait("() => gradscope.dashboard.info.plane.step === gradscope.dashboard.plane.step")
    assert tab.eval("gradscope.dashboard.charts.get('plane').held") is None  # the axes follow the messages again
    # a setup link cannot carry the drawing: it keeps the rest of the setup, starts the default dataset, and says so
    tab.page.click("#btn-setup")
    link = tab.wait("() => gradscope.copied")
    query = urllib.parse.parse_qs(urllib.parse.urlsplit(link).query)
    assert "points" not in query and "dataset" not in query and query["model"] == ["gan"] and query["d_lr"] == ["0.1"]
    assert "without the drawing" in tab.page.inner_text("#toast")
    with urllib.request.urlopen(urllib.request.Request(f"{server}/api/sessions", method="POST", data=json.dumps(
            {k: v[0] for k, v in query.items()}).encode(), headers={"Content-Type": "application/json"}), timeout=120) as reply:
        assert reply.status == 201  # the server starts it

    viewer = tabs().open(f"{server}/s/{sid}")  # the share link, without the owner's token
    viewer.wait("() => window.gradscope && gradscope.role === 'viewer' && gradscope.config && gradscope.config.dataset === 'drawn'")
    assert viewer.page.is_disabled("#btn-draw") and viewer.page.is_disabled("#ctl-dataset")
    assert viewer.eval("gradscope.drawing.open()") is False and not viewer.page.is_visible(".draw-canvas")

    # back to a dataset of the family's own: the points go with the drawing (the server takes them with no other dataset)
    tab.page.select_option("#ctl-dataset", "ring8")
    tab.wait("() => gradscope.config.dataset === 'ring8' && !gradscope.config.points")
    with urllib.request.urlopen(f"{server}/api/sessions/{sid}", timeout=60) as reply:
        config = json.load(reply)["config"]
    assert (config["dataset"], config["points"]) == ("ring8", None) and tab.eval("gradscope.errors.length") == 1  # the refusal above
