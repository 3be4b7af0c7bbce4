"""Issue 18, the other half of test_frontend_names: the page's decisions come from /api/meta's
families alone. Every model and family is renamed in a copy of the meta (and the old keys the page
used to read, `recurrent`, `mlp_only_keys`, the top-level `refused_keys` and `stats`, are dropped);
the page's modules, given the copy, must decide exactly what they decide with the real meta: the
charts each model shows, the menus, the keys greyed out and why, what a switch of model sends, the
diagnosis and its fixes."""
from __future__ import annotations

import json
import re

import pytest

from test_dashboard import browser, server  # noqa: F401  (fixtures)

pytestmark = pytest.mark.browser

DROPPED = ("recurrent", "mlp_only_keys", "refused_keys", "stats")

DECIDE = """async ([meta, base]) => {
  const imp = (m) => import(`/static/${m}.js`);
  const [state, controls, models, diagnosis, diagnoses, charts, compare] =
    await Promise.all(["state", "controls", "models", "diagnosis", "diagnoses", "charts/index", "comparecharts"].map(imp));
  const schema = new state.Schema(meta), panel = new controls.Controls(document.createElement("div"), schema, () => {});
  const out = {};
  for (const model of meta.models) {
    const m = {};
    m.charts = charts.CHARTS.filter((c) => models.shows(meta, model, c.spec)).map((c) => c.spec.name);
    m.compareCharts = Object.entries(compare.CHARTS).filter(([, s]) => models.emits(meta, model, s.requires)).map(([n]) => n);
    m.views = models.viewsOf(meta, model);
    m.gated = models.isGated(meta, model);
    m.gates = models.gatesOf(meta, model);
    m.menus = panel.menus(model);
    panel.config = { ...base, residual: true, dropout: 0.5, depth: 9 };
    m.fit = panel.fitModel(model);
    panel.applyModel(model);
    m.why = Object.fromEntries(panel.why);
    const config = { ...base, model, depth: 1, activation: "tanh", init: "glorot_normal", init_gain: 0.5 };
    const s = { time_delta_norm: [[1e-9, 1e-5, 1]], loss: 0.5, baseline: 0.16, grad_norm: [1e-6, 1e-3, 1], slope_rms: [0.5] };
    const result = diagnoses.diagnoseFor(meta, config, s), table = diagnosis.fixTable(meta, model);
    m.diagnosis = result;
    m.fixes = result.fixes.map((f) => [f, table[f] && table[f].label, diagnosis.fixChanges(f, config, table)]);
    out[model] = m;
  }
  return out;
}"""


def renamed(meta: dict) -> tuple[dict, dict]:
    """A copy of `meta` with every model, its label and every family renamed; and the renaming."""
    models = {m: f"model{k}" for k, m in enumerate(meta["models"])}
    labels = {meta["model_names"][m]: f"Net{k}" for k, m in enumerate(meta["models"])}
    families = {f: f"family{k}" for k, f in enumerate(meta["families"])}

    def walk(x):
        if isinstance(x, dict):
            return {models.get(k, k): walk(v) for k, v in x.items()}
        if isinstance(x, list):
            return [walk(v) for v in x]
        if not isinstance(x, str):
            return x
        return models.get(x) or re.sub(r"\b\w+\b", lambda w: labels.get(w.group(), w.group()), x)  # "Switch to LSTM"

    out = {k: walk(v) for k, v in meta.items() if k not in DROPPED and k not in ("families", "model_family")}
    out["families"] = {families[f]: walk(rec) for f, rec in meta["families"].items()}
    out["model_family"] = {models[m]: families[f] for m, f in meta["model_family"].items()}
    return out, {**models, **labels}


@pytest.fixture(scope="module")
def page(server, browser):  # noqa: F811
    context = browser.new_context()
    p = context.new_page()
    errors = []
    p.on("pageerror", lambda e: errors.append(str(e)))
    p.goto(f"{server}/api/health")
    p.add_script_tag(url=f"{server}/static/vendor/plotly.min.js")  # the chart modules read window.Plotly as they load
    yield p
    context.close()
    assert errors == []


def test_renamed_models_and_families_get_the_same_page(page, server):  # noqa: F811
    meta = page.evaluate("async () => (await fetch('/api/meta')).json()")
    other, names = renamed(meta)
    base = dict(meta["defaults"])
    real = page.evaluate(DECIDE, [meta, base])
    got = page.evaluate(DECIDE, [other, {**base, "model": names[base["model"]]}])
    # the real decisions, written with the new names: each name and label is a whole JSON string or a word in one
    text = json.dumps(real)
    for old in sorted(names, key=len, reverse=True):
        text = text.replace(f'"{old}"', f'"{names[old]}"')
        for label in (old,) if old in meta["model_names"].values() else ():
            text = text.replace(f" {label}", f" {names[label]}")
    expected = json.loads(text)
    for model in got:
        for key in got[model]:
            assert got[model][key] == expected[model][key], (model, key)
    # and they are the ones the page had before issue 18, for the models of today
    rnn, lstm, mlp = real["rnn"], real["lstm"], real["mlp"]
    assert "boundary" in mlp["charts"] and "boundary" not in rnn["charts"] and "time" in rnn["charts"] and "time" not in mlp["charts"]
    assert set(rnn["why"]) == {"input_dim", "batchnorm", "residual", "dropout", "stages", "skip_init"}  # the MLP's, the CNN's
    assert set(lstm["why"]) == {"input_dim", "batchnorm", "residual", "dropout", "stages", "skip_init", "activation"}
    assert set(mlp["why"]) == {"seq_len", "forget_bias", "stages", "skip_init"}  # the recurrent models', the CNN's
    assert rnn["fit"] == {"dataset": "adding", "depth": 4} and mlp["fit"] == {}  # residual, dropout: the server drops them
    assert [f[0] for f in rnn["fixes"]] == ["gated", "orthogonal", "identity_relu"]
    assert rnn["fixes"][0][1:] == ["Switch to LSTM", {"model": "lstm"}]
    assert [f[0] for f in lstm["fixes"]] == ["orthogonal"]
    assert mlp["diagnosis"]["title"] == "Vanishing gradients" and rnn["diagnosis"]["title"] == "Vanishing gradients through time"
