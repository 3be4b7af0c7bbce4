"""The CNN's page in a real Chromium (issue 19): its own three views, the channel heat map, the
signal-propagation chart with the theory for its architecture, and the input beside its
saliency, drawn from the rows the server sent; the recurrent models' cards stay hidden."""
from __future__ import annotations

import math

import pytest

from test_dashboard import browser, server, tabs  # noqa: F401  (fixtures)

pytestmark = pytest.mark.browser

CNN = "model=cnn&dataset=shapes&depth=5&width=4&batch_size=16&residual=true&activation=relu&init=he_normal"


def test_channels_signal_propagation_and_saliency_are_drawn_from_the_rows(server, tabs):  # noqa: F811
    tab = tabs().open(f"{server}/?{CNN}")
    tab.wait_running(5)
    hidden = tab.eval("name => Object.fromEntries(name.map(n => [n, document.querySelector(`[data-card=${n}]`).hidden]))",
                      ["channels", "spp", "saliency", "profile", "time", "gates"])
    assert hidden == {"channels": False, "spp": False, "saliency": False, "profile": False, "time": True, "gates": True}
    tab.wait("() => gradscope.dashboard.series.latest && gradscope.dashboard.series.latest.input_grad")
    tab.page.keyboard.press("Space")  # paused: the rows stop, so what is drawn can be held against what was sent
    tab.wait("() => gradscope.status === 'paused'")
    for card in ("channels", "spp", "saliency"):
        tab.page.locator(f"[data-card={card}]").scroll_into_view_if_needed()  # offscreen charts skip their redraws
        tab.wait(f"() => gradscope.dashboard.drawn['{card}'] === gradscope.dashboard.series.version")
    got = tab.eval("""() => { const latest = gradscope.dashboard.series.latest, el = (n) => document.getElementById('chart-' + n);
        return { latest: { channel: latest.channel_grad_norm, grad: latest.input_grad, image: latest.input_image, spp: latest.spp_var },
                 channels: el('channels').data[0].z, saliency: el('saliency').data.map(t => t.z),
                 sppX: el('spp').data[0].x, sppY: el('spp').data[0].y, theory: el('spp').data[3] }; }""")
    latest = got["latest"]
    # the channel map: one row per conv layer, log10 of the norms the server sent
    assert len(got["channels"]) == len(latest["channel"]) == 5
    for row, sent in zip(got["channels"], latest["channel"], strict=True):
        for drawn, value in zip(row, sent, strict=True):
            assert drawn is None if value is None else drawn == pytest.approx(math.log10(value) if value > 0 else -12)
    # the pair: the 16x16 shapes image and its dL/dx, as sent
    assert got["saliency"] == [latest["image"], latest["grad"]] and len(latest["grad"]) == 16
    # signal propagation: the finite per-block entries (NaN inside a block), and the doubling theory
    finite = [(i + 1, v) for i, v in enumerate(latest["spp"]) if v is not None and v > 0]
    assert list(zip(got["sppX"], got["sppY"], strict=True)) == finite and len(finite) >= 2
    assert got["theory"]["name"] == "theory: doubles per block"
    assert got["theory"]["y"] == pytest.approx([finite[0][1] * 2**k for k in range(len(finite))])
