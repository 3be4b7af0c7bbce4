"""The recurrent models' page in a real Chromium: the time profile with its theory line, gate
saturation, the diagnosis in time steps and its one-click fix (tanh RNN, gain 0.5, width 16,
batch 16, 30 steps of the adding task: the gradient falls about 2x per step)."""
from __future__ import annotations

import pytest

from test_dashboard import browser, server, tabs  # noqa: F401  (fixtures)

pytestmark = pytest.mark.browser

RNN = "model=rnn&dataset=adding&seq_len=30&depth=1&width=16&batch_size=16&activation=tanh&init=glorot_normal&init_gain=0.5"


def test_time_profile_theory_line_diagnosis_and_the_lstm_fix(server, tabs):  # noqa: F811
    tab = tabs().open(f"{server}/?{RNN}")
    tab.wait_running(5)
    tab.wait("() => (gradscope.dashboard.info.timeProfile || []).length === 30")
    hidden = tab.eval("name => Object.fromEntries(name.map(n => [n, document.querySelector(`[data-card=${n}]`).hidden]))",
                      ["time", "timeheat", "gates", "clip", "loss", "profile", "heatmap"])
    assert hidden == {"time": False, "timeheat": False, "gates": False, "clip": False, "loss": False, "profile": True, "heatmap": True}
    tab.wait("() => gradscope.dashboard.info.timeHeatColumns >= 5")
    profile, theory = tab.eval("[gradscope.dashboard.info.timeProfile, gradscope.dashboard.info.timeTheory]")
    assert theory[-1] == pytest.approx(profile[-1]) and theory[0] < 1e-3 * theory[-1]  # the line anchors at step T
    assert profile[0] < 1e-3 * profile[-1]  # and the measured gradient falls with it
    tab.wait("() => gradscope.diagnosis && gradscope.diagnosis.title === 'Vanishing gradients through time'")
    text = tab.page.inner_text("#diagnosis")
    assert "step 1 receives" in text and "of the gradient at step 30" in text and "per step" in text
    tab.page.click("button[data-fix=lstm]")
    tab.wait("() => gradscope.config.model === 'lstm'")
    tab.page.locator("[data-card=gates]").scroll_into_view_if_needed()  # offscreen charts skip their redraws
    # The LSTM compiles now (a reset key): up to minutes on a busy 2-core machine.
    tab.page.wait_for_function("() => (gradscope.dashboard.info.gateSaturation || []).length === 1"
                               " && gradscope.dashboard.info.gateSaturation[0].length === 4", timeout=240_000, polling=200)
    assert tab.eval(
        "document.getElementById('chart-gates').data.map(t => t.x.join(''))") == ["ifgo"]
