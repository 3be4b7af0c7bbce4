"""A new run's first look (issue 23): while its training step compiles, a small build measures
step 0 at the initial weights and the page draws it; the first trained rows replace it. The
look must be the run's own step 0, leave the run as it would be without it, and never be kept."""
from __future__ import annotations

import httpx
import jax
import numpy as np
import pytest

from conftest import LiveServer, recv_until, ws_open
from test_dashboard import browser, tabs  # noqa: F401  (fixtures)


def trainer(config, cache=None, **kw):
    from gradscope.engine import CompileCache, Trainer

    return Trainer(config, cache=cache or CompileCache(background=True), stats_every=1, chunk_steps=4, **kw)


def leaves(state):
    return [np.asarray(x) for x in jax.tree.leaves(jax.device_get(state))]


@pytest.mark.parametrize("config", [
    {"depth": 4, "width": 12, "batch_size": 16, "activation": "sigmoid", "batchnorm": True},
    {"model": "lstm", "width": 8, "batch_size": 8, "seq_len": 6, "dataset": "adding"},
    {"model": "cnn", "depth": 3, "width": 4, "batch_size": 8, "dataset": "digits"},
    {"model": "gan", "g_depth": 2, "d_depth": 2, "width": 8, "batch_size": 16},
], ids=["mlp", "lstm", "cnn", "gan"])
def test_the_first_look_is_the_runs_own_step_0_and_leaves_the_run_as_it_was(config):
    from gradscope.families import family_of

    looks = []
    tr = trainer(config, on_preview=looks.append)
    assert len(looks) == 1
    look = looks[0]
    family = family_of(tr.config.model)
    shown = [s for s in family.preview_stats if s in family.model_stats(tr.config.model)]
    assert shown and set(shown) <= set(look), (shown, sorted(look))
    assert list(look["step"]) == [0] and list(look["count"]) == [1] and not look["nonfinite"].any()
    # the run itself has not moved: its state is a fresh run's, and its first measured row is the look's
    plain = trainer(config)
    assert tr.step == 0 and all(np.array_equal(a, b) for a, b in zip(leaves(tr.state), leaves(plain.state), strict=True))
    first = tr.run(1)
    for name in shown:
        np.testing.assert_allclose(np.asarray(look[name], float), np.asarray(first[name], float), rtol=1e-5, atol=1e-12,
                                   err_msg=name)
    again = plain.run(1)
    assert all(np.array_equal(a, b) for a, b in zip(leaves(tr.state), leaves(plain.state), strict=True))
    for name in first:
        np.testing.assert_array_equal(first[name], again[name], err_msg=name)


def test_a_look_only_where_it_saves_the_wait():
    from gradscope.engine import CompileCache

    config = {"depth": 3, "width": 10, "batch_size": 8, "dataset": "xor"}
    looks = []
    cache = CompileCache(background=True)
    tr = trainer(config, cache, on_preview=looks.append)
    assert len(looks) == 1
    tr.run(1)  # (its chunk built)
    trainer(config, cache, on_preview=looks.append)  # its chunk is built: nothing to wait for
    assert len(looks) == 1
    tr.update({"depth": 2})  # a reset builds again: its own rows follow, no look
    tr.reset()
    assert len(looks) == 1
    tr.run(1)  # (its build done: no compile thread left running when the process ends)
    # a cache without a background thread compiles in the caller: nothing to look from meanwhile
    trainer({**config, "width": 11}, CompileCache(background=False), on_preview=looks.append)
    assert len(looks) == 1


@pytest.fixture
def background_server(settings_for, request):
    """A live server whose compile cache compiles in the background, as `gradscope serve` runs
    (settings overrides from the test's `settings` mark)."""
    from gradscope.engine import CompileCache
    from gradscope.server import create_app

    mark = request.node.get_closest_marker("settings")
    cache = CompileCache(background=True)
    srv = LiveServer(create_app(settings_for(chunk_steps=None, **(mark.kwargs if mark else {})), warm_compile=False, cache=cache))
    yield srv
    srv.stop()
    cache.close()


def test_a_new_session_shows_its_first_look_before_its_first_rows_and_never_keeps_it(background_server):
    srv = background_server
    body = {"depth": 5, "width": 9, "batch_size": 8, "dataset": "xor", "activation": "sigmoid"}
    r = httpx.post(f"{srv.url}/api/sessions", json=body, timeout=120)
    assert r.status_code == 201, r.text
    d = r.json()
    seen = []
    with ws_open(srv, d["id"]) as ws:
        recv_until(ws, lambda m: m["type"] == "stats", seen=seen)
    kinds = [m["type"] for m in seen]
    assert kinds[0] == "hello" and kinds.count("preview") == 1 and kinds.index("preview") < kinds.index("stats"), kinds
    look, rows = seen[kinds.index("preview")], seen[kinds.index("stats")]
    assert look["step"] == [0] and len(look["grad_norm"][0]) == body["depth"] + 1 and "before any update" in look["what"]
    assert rows["step"][0] == rows["count"][0] - 1  # the first trained row covers steps 0..its step
    # trained rows only: the history and a client joining now never see the look
    steps = httpx.get(f"{srv.url}/api/sessions/{d['id']}/history", timeout=60).json()["step"]
    assert steps[0] == rows["step"][0], (steps[:3], rows["step"])
    with ws_open(srv, d["id"]) as late:
        got = []
        recv_until(late, lambda m: m["type"] == "stats", seen=got)
        assert "preview" not in [m["type"] for m in got]


@pytest.mark.settings(first_look=False)
def test_a_server_started_with_no_first_look_sends_none(background_server):
    srv = background_server  # (`gradscope serve --no-first-look`)
    r = httpx.post(f"{srv.url}/api/sessions", json={"depth": 4, "width": 9, "batch_size": 8, "dataset": "xor"}, timeout=120)
    seen = []
    with ws_open(srv, r.json()["id"]) as ws:
        recv_until(ws, lambda m: m["type"] == "stats", seen=seen)
    assert "preview" not in [m["type"] for m in seen]


@pytest.mark.browser
# shapes no other test compiles: a build loaded from the run's disk cache could be done before the page's socket opens
@pytest.mark.parametrize("query", ["depth=5&width=24&batch_size=16", "model=cnn&depth=2&width=6&batch_size=8",
                                   "model=lstm&width=7&batch_size=8&seq_len=5", "model=gan&g_depth=2&d_depth=2&width=9"],
                         ids=["mlp", "cnn", "lstm", "gan"])
def test_a_new_run_draws_step_0_while_its_step_compiles_then_its_trained_rows(background_server, tabs, query):  # noqa: F811
    """A new run's first look (a `preview` message: step 0 at the initial weights) is drawn while its
    training step compiles, and the top bar says so; the first trained rows replace it. Every
    family's page draws it (a chart that broke on it would be a console error: Tab.close)."""
    tab = tabs().open(f"{background_server.url}/?{query}")
    tab.wait("() => window.gradscope && gradscope.dashboard.info.previews >= 1")
    tab.wait("() => gradscope.dashboard.series.step.length >= 1 && !gradscope.dashboard.series.provisional"
             " && gradscope.dashboard.info.frames >= 1")
    assert tab.eval("gradscope.dashboard.info.previews") == 1
    shown = tab.eval("gradscope.busy.info.shown")
    assert any(t.startswith("step 0 shown, before training; compiling ") for t in shown), shown
    # replaced, not kept: the series holds the trained rows from the first (steps 0..its step) on
    assert tab.eval("gradscope.dashboard.info.previewsReplaced") == 1
    if query.startswith("depth"):  # the MLP's layer profile drew the look: 5 hidden layers and the readout
        tab.wait("() => gradscope.dashboard.info.renders >= 1")
        assert tab.eval("gradscope.dashboard.info.previewDrawn") == 6
