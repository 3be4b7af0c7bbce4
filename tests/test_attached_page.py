"""An attached run's page in a real Chromium: a session of `model: "attached"` made over HTTP as
`gradscope.attach` makes it, its rows posted as its script posts them. The owner link
(`/s/ID#token=TOKEN`) makes the page the owner and leaves the address bar without the token; the
panel shows only the keys the run takes, and of those only the knobs the script exposes are
enabled; what would act on the training itself (play, step, reset, fork, copy setup) is disabled
with the reason; the per-layer charts and the diagnosis go by the script's layer names, and the
probes sit at the layers of the same names. A change of the learning rate made on the page reaches
the server's config and the script's next post."""
from __future__ import annotations

import json
import urllib.error
import urllib.request

import pytest

from test_dashboard import TIMEOUT, Tab, browser, server  # noqa: F401  (fixtures)

pytestmark = pytest.mark.browser

LAYERS = ["embed", "h1", "h2", "h3", "head"]
PROBES = ["h1", "head"]  # each the name of a layer: drawn at those layers (x = 2 and 5)
REFUSED = ["activation", "init", "depth", "width", "optimizer", "clip_mode", "batch_size", "dataset", "seed"]


def call(method, url, body=None, token=None):
    headers = {"Content-Type": "application/json", **({"Authorization": f"Bearer {token}"} if token else {})}
    data = None if body is None else json.dumps(body).encode()
    with urllib.request.urlopen(urllib.request.Request(url, data=data, headers=headers, method=method), timeout=60) as r:
        text = r.read()
        return json.loads(text) if text else None


def record(step):
    """A vanishing profile (1e-6 at the input, 1 at the output) with healthy update ratios."""
    return {"step": step, "loss": 1.0 - 0.01 * step, "grad_norm": [1e-6, 1e-4, 1e-3, 1e-1, 1.0],
            "weight_norm": [1.0] * len(LAYERS), "update_ratio": [1e-3] * len(LAYERS), "delta_norm": [1e-4, 1.0]}


@pytest.fixture
def attached(server):  # noqa: F811
    """An attached session with 20 rows posted: (id, owner token)."""
    s = call("POST", f"{server}/api/sessions", {"model": "attached", "run_name": "t", "layers": LAYERS, "probes": PROBES,
                                                 "knobs": ["learning_rate"], "learning_rate": 0.01})
    call("POST", f"{server}/api/sessions/{s['id']}/rows", {"records": [record(i) for i in range(20)]}, s["token"])
    yield s["id"], s["token"]
    try:
        call("DELETE", f"{server}/api/sessions/{s['id']}", token=s["token"])
    except urllib.error.HTTPError:  # the tab deleted it
        pass


# What the page shows of the controls, the buttons, the charts and the diagnosis.
STATE = """(keys) => {
  const $ = (id) => document.getElementById(id), row = (k) => document.querySelector(`[data-key=${k}]`);
  const shown = (el) => Boolean(el) && !el.hidden && !el.closest('section').hidden;
  const profile = $('chart-profile');
  return {
    role: gradscope.role, href: location.href, hash: location.hash,
    token: localStorage.getItem(`gradscope.token.${gradscope.id}`),
    lr: {disabled: $('ctl-learning_rate').disabled, shown: shown(row('learning_rate'))},
    clip: {disabled: $('ctl-clip_value').disabled, shown: shown(row('clip_value')),
           why: row('clip_value').querySelector('.ctl-why').innerText},
    refused: Object.fromEntries(keys.map((k) => [k, shown(row(k))])),
    model: {value: $('ctl-model').value, disabled: $('ctl-model').disabled,
            options: [...$('ctl-model').options].map((o) => [o.value, o.disabled]),
            help: row('model').querySelector('.ctl-help').innerText},
    buttons: Object.fromEntries(['btn-play', 'btn-step', 'btn-reset', 'btn-fork', 'btn-setup', 'btn-share', 'btn-export']
      .map((id) => [id, {disabled: $(id).disabled, title: $(id).title}])),
    ticks: profile.layout.xaxis.ticktext, range: profile.layout.xaxis.range,
    grad: profile.data.find((t) => t.name === 'grad_norm').x,
    delta: profile.data.find((t) => t.name === 'delta_norm').x,
    heat: $('chart-heatmap').layout.yaxis.ticktext,
    diagnosis: $('diagnosis').innerText,
    fixButtons: [...document.querySelectorAll('#diagnosis button[data-fix]')].map((b) => b.dataset.fix),
  };
}"""


def test_owner_link_takes_the_page_and_the_page_sets_an_exposed_knob(server, browser, attached):  # noqa: F811
    sid, token = attached
    tab = Tab(browser).open(f"{server}/s/{sid}#token={token}")
    tab.wait("() => window.gradscope && gradscope.role === 'owner' && gradscope.dashboard.info.renders >= 1"
             " && document.getElementById('chart-profile').layout.xaxis.ticktext"
             " && document.querySelector('#diagnosis').innerText.includes('(output)')")
    s = tab.eval(STATE, REFUSED)
    # the owner link: the token is kept, and gone from the address bar
    assert s["token"] == token and s["hash"] == "" and token not in s["href"] and s["href"].endswith(f"/s/{sid}")
    # the knobs: the exposed learning rate enabled, the clip threshold (taken, not exposed) greyed with the reason
    assert s["lr"] == {"disabled": False, "shown": True}
    assert s["clip"]["disabled"] and s["clip"]["shown"] and "the script does not expose it" in s["clip"]["why"]
    # the keys the run refuses: no row at all
    assert s["refused"] == dict.fromkeys(REFUSED, False)
    # the Model menu shows the run's model, greyed; it offers the others and says nothing of this one
    assert s["model"]["value"] == "attached" and s["model"]["disabled"]
    assert ["attached", True] in s["model"]["options"] and all(not off for m, off in s["model"]["options"] if m != "attached")
    assert "attached" not in s["model"]["help"]
    # what the script does is not the page's: disabled, with the reason as the tooltip
    for b in ["btn-play", "btn-step", "btn-reset", "btn-fork", "btn-setup"]:
        assert s["buttons"][b]["disabled"] and "trained by its own script" in s["buttons"][b]["title"], (b, s["buttons"][b])
    assert not s["buttons"]["btn-share"]["disabled"] and not s["buttons"]["btn-export"]["disabled"]
    # the charts go by the script's layer names, one point per layer (no readout added), the probes at their layers
    assert s["ticks"] == LAYERS and s["range"] == [0.5, len(LAYERS) + 0.5] and s["grad"] == [1, 2, 3, 4, 5]
    assert s["delta"] == [2, 5]
    assert s["heat"] == LAYERS
    # the diagnosis names the layers; its fixes (none the run takes) are advice for the script, not buttons
    assert "embed receives 1e-6 of the gradient of head (output)" in s["diagnosis"], s["diagnosis"]
    assert "In your script: Switch to ReLU + He init" in s["diagnosis"] and s["fixButtons"] == []

    # the learning rate, changed on the page (a log10 slider: -3 is 1e-3), reaches the server and the script
    tab.page.fill("#ctl-learning_rate", "-3")
    tab.wait("() => gradscope.config.learning_rate === 0.001")
    assert call("GET", f"{server}/api/sessions/{sid}")["config"]["learning_rate"] == 0.001
    reply = call("POST", f"{server}/api/sessions/{sid}/rows", {"records": [record(20)]}, token)
    assert reply["set"] == {"learning_rate": 0.001}, reply
    tab.close()


def test_a_viewer_of_an_attached_run_cannot_fork_it(server, browser, attached):  # noqa: F811
    sid, _ = attached
    tab = Tab(browser).open(f"{server}/s/{sid}")
    tab.wait("() => window.gradscope && gradscope.role === 'viewer' && gradscope.config && gradscope.dashboard.info.renders >= 1")
    assert tab.page.is_visible("#btn-fork") and tab.page.is_disabled("#btn-fork")
    assert "cannot be forked" in tab.page.get_attribute("#btn-fork", "title")
    assert tab.page.is_disabled("#ctl-learning_rate") and tab.page.is_disabled("#btn-setup")
    assert tab.eval("localStorage.getItem(`gradscope.token.${gradscope.id}`)") is None
    tab.close()


def test_a_running_scripts_learning_rate_is_set_from_its_page(server, browser):  # noqa: F811
    """The whole path, as a user has it: a monitored JAX loop attached to the server, its owner link
    opened, the learning rate moved on the page, and the script's next updates taking it."""
    import threading

    import numpy as np
    import optax

    import gradscope
    from gradscope import optax as gso
    from test_monitor import data, make_step, mlp_params

    x, y = data()
    tx = gso.monitor(optax.sgd, learning_rate=0.01)
    params = mlp_params(__import__("jax").random.PRNGKey(0))
    step = make_step(tx)
    gs = gradscope.attach("page lr", server=server)
    stop, changed, linked, later = threading.Event(), threading.Event(), threading.Event(), threading.Event()
    seen = {}

    def loop():  # the user's loop: it never waits for the server, the page or the disk
        nonlocal params
        state, i = tx.init(params), 0
        while not stop.is_set():
            params, state, loss = step(params, state, x, y)
            state = gs.publish(i, state, loss=loss)
            if gs.link:
                linked.set()
            lr = float(gso.hyperparams(state)["learning_rate"])
            if abs(lr - 0.01) > 1e-6 and "step" not in seen:
                seen.update(step=i, lr=lr)
                changed.set()
            elif "step" in seen and i > seen["step"]:
                later.set()  # a step taken at the new rate is published
            i += 1
            stop.wait(0.01)  # a real step's pace, not a wait on something

    worker = threading.Thread(target=loop, daemon=True)
    worker.start()
    try:
        assert linked.wait(120), "the script never reached the server"
        tab = Tab(browser).open(gs.remote.owner_url)
        tab.wait("() => window.gradscope && gradscope.role === 'owner' && gradscope.dashboard.info.renders >= 1")
        tab.page.fill("#ctl-learning_rate", "-1")  # a log10 slider: 0.1
        tab.wait("() => gradscope.config.learning_rate === 0.1")
        assert changed.wait(120), "the page's learning rate never reached the script"
        assert seen["lr"] == np.float32(0.1)
        assert later.wait(120)
        gs.flush(60)
        after = [r for r in gs.records if r["step"] > seen["step"]]
        assert after  # SGD: from the update after the change, each layer moved by 0.1 x its gradient
        np.testing.assert_allclose(np.divide(after[0]["update_norm"], after[0]["grad_norm"]), 0.1, rtol=1e-4)
        assert tab.errors == []
        tab.close()
    finally:
        stop.set()
        worker.join(60)
        gs.close()
