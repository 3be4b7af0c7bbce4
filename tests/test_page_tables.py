"""The page's tables agree with the backend's: config keys, names, live keys and limits come from
`/api/meta`, the control ranges lie inside the config schema's bounds, and the theory curve's
activations and initializer variances are the engine's (evaluated in a real Chromium)."""
from __future__ import annotations

import numpy as np
import pytest

from gradscope.config import CONFIG, CONFIG_KEYS, LIMITS, LIVE_KEYS, choices_of, make_config
from gradscope.core.activations import ACTIVATIONS, PRELU_INIT, RRELU_MEAN, derivative
from gradscope.core.initializers import INITIALIZERS, kernel_variance
from test_dashboard import browser, server  # noqa: F401  (fixtures)

pytestmark = pytest.mark.browser

# Modules only, no session: a same-origin JSON page imports the page's ES modules.
LOAD = """async () => {
  const [state, controls, theory] = await Promise.all(["state", "controls", "theory"].map((m) => import(`/static/${m}.js`)));
  const meta = await (await fetch("/api/meta")).json();
  const schema = new state.Schema(meta);
  window.T = { state, controls, theory, meta, schema, panel: new controls.Controls(document.createElement("div"), schema, () => {}) };
}"""
# every key's JSON schema, from the union's members (a key several families take has one schema)
PROPERTIES = {k: p for d in CONFIG.json_schema()["$defs"].values() for k, p in d["properties"].items()}


@pytest.fixture(scope="module")
def page(server, browser):  # noqa: F811
    context = browser.new_context()
    p = context.new_page()
    errors = []
    p.on("pageerror", lambda e: errors.append(str(e)))
    p.goto(f"{server}/api/health")
    p.evaluate(LOAD)
    yield p
    context.close()
    assert errors == []


# no control in the panel: a list drawn on the GAN's plane (drawing.js), and an attached run's names
# and the knobs its script exposes (set by the script, shown by the charts and the controls' greying)
DRAWN_KEYS = {"points", "run_name", "layers", "probes", "knobs"}


def test_schema_keys_choices_and_live_flags_come_from_meta(page):
    keys, live = page.evaluate("[T.schema.keys, T.schema.keys.filter((k) => T.schema.isLive(k))]")
    assert keys == list(CONFIG_KEYS) and set(live) == set(LIVE_KEYS)
    choices = page.evaluate("T.schema.choices")
    literal = {k: choices_of(k) for k in CONFIG_KEYS if choices_of(k) and not isinstance(choices_of(k)[0], bool)}
    assert choices == literal  # every named-choice key, with the engine's registry names
    types = page.evaluate("Object.fromEntries(T.schema.keys.map((k) => [k, T.schema.type(k)]))")
    for key, prop in PROPERTIES.items():
        if key in DRAWN_KEYS:
            continue
        expected = "choice" if "enum" in prop else "bool" if prop["type"] == "boolean" else "number"
        assert types[key] == expected, key


def test_url_round_trip_parses_every_key(page):
    """A setup link's parameters go to the server as the text they are; it parses them back into the same config."""
    config = {**make_config().model_dump(), "activation": "relu", "depth": 30, "batchnorm": True, "learning_rate": 0.003, "seed": 7}
    query = page.evaluate("c => T.schema.toQuery(c)", config)
    params = page.evaluate("async q => (await import('/static/pageparams.js')).queryParams(q)", query)
    assert all(isinstance(v, str) for v in params.values())
    assert params == {k: str(v).lower() if isinstance(v, bool) else str(v) for k, v in config.items()
                      if v != make_config().model_dump()[k] or k == "seed"}
    created = page.evaluate("""async (params) => {
      const r = await fetch('/api/sessions', { method: 'POST', headers: { 'Content-Type': 'application/json' },
                                               body: JSON.stringify({ ...params, paused: true }) });
      const data = await r.json();
      await fetch(`/api/sessions/${data.id}`, { method: 'DELETE', headers: { Authorization: `Bearer ${data.token}` } });
      return data.config;
    }""", params)
    assert created == config


def test_every_key_has_a_control_within_the_schema_bounds(page):
    widgets = page.evaluate("[...T.panel.widgets.keys()]")
    assert sorted(widgets) == sorted(set(CONFIG_KEYS) - DRAWN_KEYS)  # every family's keys, the GAN's own included
    ranges = page.evaluate("T.panel.ranges()")
    props = PROPERTIES
    for key, (lo, hi) in ranges.items():
        p = props[key]
        assert lo >= p.get("minimum", p.get("exclusiveMinimum", -np.inf)), key
        assert hi <= p.get("maximum", np.inf), key
    for key, limit in LIMITS.items():
        if isinstance(limit, list) and key in ranges:
            assert ranges[key] == limit, key  # the size keys take meta.limits as they are


def test_theory_activations_are_the_engines(page):
    z = np.linspace(-6, 6, 241)
    alpha = 0.07
    slope = {"leaky_relu": alpha, "rrelu": RRELU_MEAN, "prelu": PRELU_INIT}
    assert page.evaluate("[T.theory.RRELU_MEAN, T.theory.PRELU_INIT]") == pytest.approx([RRELU_MEAN, PRELU_INIT])
    for name, fn in ACTIVATIONS.items():
        s = slope.get(name, 0.0)
        page_phi, page_dphi = page.evaluate("([n, a, z]) => { const s = T.theory.defaultSlope(n, a);"
                                            " const f = T.theory.activation(n, s), d = T.theory.derivative(n, s);"
                                            " return [z.map(f), z.map(d)]; }", [name, alpha, z.tolist()])
        np.testing.assert_allclose(page_phi, np.asarray(fn(z, s)), rtol=1e-5, atol=1e-6, err_msg=name)
        keep = np.abs(z) > 1e-3  # the kinks of the ReLU family, where a central difference averages both sides
        np.testing.assert_allclose(np.asarray(page_dphi)[keep], np.asarray(derivative(name, z, s))[keep],
                                   rtol=1e-3, atol=1e-5, err_msg=name)


def test_theory_initializer_variances_are_the_engines(page):
    for name in INITIALIZERS:
        for fan_in, fan_out, gain in [(64, 64, 1.0), (2, 64, 1.5), (256, 10, 0.5)]:
            got = page.evaluate("([n, a, b, g]) => T.theory.kernelVariance(n, a, b, g)", [name, fan_in, fan_out, gain])
            assert got == pytest.approx(kernel_variance(name, fan_in, fan_out, gain), rel=1e-12), name


def test_theory_uses_the_reported_negative_slope(page):
    """PReLU learns its slope: with the engine's neg_slope at 1 every layer is linear's, at null PReLU's start."""
    config = {**make_config().model_dump(), "activation": "prelu", "init": "he_normal", "depth": 5}
    ones, nulls = page.evaluate("c => [T.theory.layerFactors(c, [1, 1, 1, 1, 1]), "
                                "T.theory.layerFactors(c, [null, null, null, null, null])]", config)
    linear = page.evaluate("c => T.theory.layerFactors({...c, activation: 'linear'})", config)
    start = page.evaluate("c => T.theory.layerFactors(c)", config)
    assert ones == pytest.approx(linear, rel=1e-6)
    assert nulls == pytest.approx(start, rel=1e-12)
    assert nulls[0] == pytest.approx(np.sqrt(2 * (1 + PRELU_INIT**2) / 2), rel=5e-3)  # He: width*Var(W)*E[phi'^2] = 2 * (1 + a^2)/2
