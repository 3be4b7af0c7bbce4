"""No empty chart without a reason, and the page's polish, in a real Chromium: exact zeros drawn on
a marked floor of every log axis, empty charts that say why, the page at 400 px (one column, no
horizontal overflow, controls big enough to touch), the dark theme (the system's, or the
reader's choice, remembered), chart downloads, the Export button, no internal words. With
GRADSCOPE_SCREENSHOTS=1 it refreshes docs/page-{400,1440}-{light,dark}.png."""
from __future__ import annotations

import csv
import io
import json
import re
from pathlib import Path

import pytest

from test_dashboard import SHOTS, SMALL, TIMEOUT, Tab, browser, server, tabs  # noqa: F401  (fixtures)

pytestmark = pytest.mark.browser

# ReLU at width 2: every unit of some layer is dead on the whole batch from step 0 (seed 0), so
# every gradient below it is exactly 0, a hole on a log axis if drawn naively.
DEAD = "activation=relu&init=he_normal&depth=12&width=2&batch_size=16"
FRONTEND = Path(__file__).resolve().parents[1] / "frontend"


def themed(browser, width, scheme="light", height=900):  # noqa: F811
    """A tab whose system colour scheme is `scheme`, `width` CSS pixels wide."""
    tab = Tab(browser)
    tab.context.close()
    tab.context = browser.new_context(viewport={"width": width, "height": height}, color_scheme=scheme)
    tab.context.route("**/*", tab._route)
    tab.page = tab.context.new_page()
    tab.page.on("console", lambda m: m.type == "error" and tab.errors.append(m.text))
    tab.page.on("pageerror", lambda e: tab.errors.append(str(e)))
    return tab


@pytest.fixture
def sized(browser):  # noqa: F811
    opened = []

    def make(width, scheme="light", height=900):
        opened.append(themed(browser, width, scheme, height))
        return opened[-1]

    yield make
    for t in opened:
        t.close()


def test_zeros_sit_on_a_marked_floor_of_every_log_axis(server, tabs):  # noqa: F811
    tab = tabs().open(f"{server}/?{DEAD}")
    tab.wait_running(5)
    tab.wait("() => (gradscope.dashboard.info.profile || []).some(v => v === null)")  # some layer's gradient is exactly 0
    profile = tab.eval("""() => { const el = document.getElementById('chart-profile'), y = el.layout.yaxis;
        return { g: gradscope.dashboard.info.profileDrawn[0], raw: gradscope.dashboard.info.profile,
                 ticks: y.ticktext, vals: y.tickvals, range: y.range,
                 floor: el.layout.shapes.filter(s => s.type === 'rect' && s.xref === 'paper' && s.yref === 'y') }; }""")
    floor = 10 ** (profile["range"][0] + 0.5)
    assert profile["ticks"][0] == "0" and profile["vals"][0] == pytest.approx(floor)
    zeros = [i for i, v in enumerate(profile["raw"]) if v is None]  # exactly 0 (the run is finite), from the same draw
    assert zeros and all(profile["g"][i] == pytest.approx(floor) for i in zeros)  # drawn on the floor, not a hole
    assert len(profile["floor"]) == 1 and profile["floor"][0]["y0"] == pytest.approx(10 ** profile["range"][0])
    # the heat map paints exact zeros in their own colour and names it on the colour bar
    tab.wait("() => (document.getElementById('chart-heatmap').data[0].colorbar.title.text || '').includes('= 0')")
    # the chain-rule chart: a factor of exactly 0 (a dead layer passes nothing) on its floor too
    tab.page.locator("#chart-chain").scroll_into_view_if_needed()
    tab.wait("() => document.getElementById('chart-chain').layout.yaxis.ticktext[0] === '0'")


def test_every_empty_chart_says_why(server, tabs):  # noqa: F811
    tab = tabs().open(f"{server}/?{SMALL}&paused=true")
    tab.wait("() => window.gradscope && gradscope.status === 'paused' && gradscope.dashboard.info.empty.profile")
    empty = tab.eval("gradscope.dashboard.info.empty")
    assert empty["profile"] == "Paused at step 0: press Play or Step."
    assert tab.page.is_visible("#empty-profile") and tab.page.inner_text("#empty-profile") == empty["profile"]
    tab.page.click("#btn-step")
    tab.wait("() => gradscope.dashboard.series.latest && gradscope.dashboard.info.empty.profile === null")
    assert tab.page.is_hidden("#empty-profile")
    gaussian = tabs().open(f"{server}/?{SMALL}&dataset=gaussian&input_dim=8")
    gaussian.wait_running(3)
    gaussian.wait("() => gradscope.dashboard.info.empty.boundary")
    assert "more than two" in gaussian.page.inner_text("#empty-boundary")


def test_the_page_at_400_px_is_one_column_with_nothing_overflowing(server, sized):  # noqa: F811
    tab = sized(400).open(f"{server}/?{SMALL}")
    tab.wait_running(5)
    assert tab.eval("document.scrollingElement.scrollWidth") <= 400
    cards = tab.eval("Array.from(document.querySelectorAll('.card:not([hidden])'), c => Math.round(c.getBoundingClientRect().left))")
    assert len(set(cards)) == 1  # one column
    assert tab.eval("document.getElementById('btn-play').getBoundingClientRect().height") >= 40  # a finger's size
    assert not tab.page.is_visible("#controls")  # the settings are one tap away
    tab.page.click("#btn-settings")
    assert tab.page.is_visible("#ctl-activation")
    assert tab.eval("document.getElementById('ctl-activation').getBoundingClientRect().height") >= 40
    assert tab.eval("document.scrollingElement.scrollWidth") <= 400
    for url in [f"{server}/?depth=abc&foo=bar", f"{server}/compare/aaa/bbb"]:  # the error panel too
        tab.page.goto(url)
        tab.wait("() => !document.getElementById('notice').hidden")
        assert tab.eval("document.scrollingElement.scrollWidth") <= 400
    tab.errors[:] = [e for e in tab.errors if "status of 4" not in e]


def test_dark_theme_follows_the_system_and_the_toggle_is_remembered(server, sized):  # noqa: F811
    dark = sized(1280, "dark").open(f"{server}/?{SMALL}")
    dark.wait_running(3)
    colours = "() => [document.documentElement.dataset.theme, document.getElementById('chart-profile').layout.plot_bgcolor," \
              " getComputedStyle(document.querySelector('.card')).backgroundColor]"
    theme, plot, card = dark.eval(colours)
    assert theme == "dark" and plot == "#161b21" and card == "rgb(26, 31, 38)"
    dark.page.click("#btn-theme")
    dark.wait("() => document.getElementById('chart-profile').layout.plot_bgcolor === '#ffffff'")
    assert dark.eval(colours)[0] == "light" and dark.eval("localStorage.getItem('gradscope.theme')") == "light"
    dark.page.reload()  # the reader's choice outlives the system's
    dark.wait_running(3)
    assert dark.eval(colours)[:2] == ["light", "#ffffff"]
    light = sized(1280, "light").open(f"{server}/?{SMALL}")
    light.wait_running(3)
    assert light.eval(colours)[:2] == ["light", "#ffffff"]


def test_charts_download_and_the_run_exports_as_json_lines_and_csv(server, tabs):  # noqa: F811
    tab = tabs().open(f"{server}/?{SMALL}")
    tab.wait_running(10)
    titles = tab.eval("Array.from(document.querySelectorAll('#chart-profile .modebar-btn'), b => b.dataset.title)")
    assert titles == ["Download as PNG", "Download as SVG"]
    tab.page.click("#btn-export")
    with tab.page.expect_download(timeout=TIMEOUT) as got:
        tab.page.click("#export-jsonl")
    lines = Path(got.value.path()).read_text().splitlines()
    rows = [json.loads(line) for line in lines]
    records = [r for r in rows if "step" in r and "loss" in r]
    assert len(records) >= 10 and [r["step"] for r in records] == sorted(r["step"] for r in records)
    assert got.value.suggested_filename.endswith(".jsonl")
    with tab.page.expect_download(timeout=TIMEOUT) as got:
        tab.page.click("#export-csv")
    table = list(csv.reader(io.StringIO(Path(got.value.path()).read_text())))
    assert table[0][:2] == ["step", "count"] and len(table) > 10 and got.value.suggested_filename.endswith(".csv")


def test_no_internal_words_on_the_page(server, tabs):  # noqa: F811
    for path in FRONTEND.rglob("*"):
        if path.suffix in (".js", ".html", ".css") and "vendor" not in path.parts:
            text = path.read_text()
            for word, flags in ((r"issue \d", re.I), (r"seed article", re.I), (r"Source:", 0)):
                assert not re.search(word, text, flags), (path.name, word)
    tab = tabs().open(f"{server}/lessons/dead-relu")
    tab.wait("() => document.querySelector('.lesson-source')")
    source = tab.page.inner_text(".lesson-source")
    assert source.startswith("References: ") and "seed" not in source.lower()


@pytest.mark.parametrize("width", [400, 1440])
@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_screenshots(server, sized, width, scheme):  # noqa: F811
    """The README's look at a phone's and a laptop's width, in both themes (docs/page-*.png)."""
    tab = sized(width, scheme, 1500 if width == 400 else 1000).open(f"{server}/?{SMALL}&activation=relu&init=he_normal")
    tab.wait_steps(300)
    assert tab.eval("document.scrollingElement.scrollWidth") <= width
    renders = tab.eval("gradscope.dashboard.info.renders")
    tab.wait("n => gradscope.dashboard.info.renders > n + 3 && document.fonts.status === 'loaded'", renders)
    SHOTS.mkdir(exist_ok=True)
    tab.page.screenshot(path=str(SHOTS / f"page-{width}-{scheme}.png"))
