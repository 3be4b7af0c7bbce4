"""The control panel follows the model in a real Chromium: on a recurrent session the keys its family
refuses (BatchNorm, residual, dropout: the keys `/api/meta`'s keys_by_model does not list for it) are greyed out with the
reason shown, and the dataset and initializer menus offer only what `/api/meta` lists for the model;
switching to the MLP with the Model control restores them (the page sends the dataset the MLP needs
with the switch, or the server would refuse it)."""
from __future__ import annotations

import pytest

from test_dashboard import browser, server, tabs  # noqa: F401  (fixtures)

pytestmark = pytest.mark.browser

RNN = "model=rnn&dataset=adding&seq_len=20&width=16&batch_size=16"
MLP_ONLY = ["batchnorm", "residual", "dropout"]  # the keys the recurrent models refuse and the MLP takes
# the GAN's own keys: their section (the family's views.controls) is hidden for the other models, its inputs disabled
GAN_ONLY = ["z_dim", "g_depth", "d_depth", "g_activation", "d_activation", "gan_loss", "lipschitz", "clip_c", "gp_lambda",
            "n_critic", "g_lr", "d_lr"]
TAKERS = {"input_dim": "MLP", "batchnorm": "MLP, CNN and GAN", "residual": "MLP and CNN", "dropout": "MLP and CNN",
          "stages": "CNN", "skip_init": "CNN"}
# Each key's state as the page shows it: disabled, the visible note, the tooltip.
STATE = """keys => Object.fromEntries(keys.map(k => {
  const row = document.querySelector(`[data-key=${k}]`), why = row.querySelector('.ctl-why');
  return [k, {disabled: document.getElementById(`ctl-${k}`).disabled, note: why.hidden ? '' : why.innerText, title: row.title}];
}))"""
HIDDEN = """keys => Object.fromEntries(keys.map(k => [k, {disabled: document.getElementById(`ctl-${k}`).disabled,
  hidden: document.querySelector(`[data-key=${k}]`).closest('section').hidden}]))"""
OPTIONS = "id => [...document.getElementById(id).options].map(o => o.value)"


def test_recurrent_model_greys_out_mlp_keys_and_narrows_menus(server, tabs):  # noqa: F811
    tab = tabs().open(f"{server}/?{RNN}")
    tab.wait_running(3)
    meta = tab.eval("gradscope.meta")
    # and the GAN's drawn points, which have no control: they are drawn on its plane
    # and an attached run's names and knobs, which have none: its script sets them
    assert [k for k in meta["defaults"] if k not in meta["keys_by_model"]["rnn"]] == [
        *TAKERS, *GAN_ONLY, "points", "run_name", "layers", "probes", "knobs"]
    assert tab.eval(HIDDEN, GAN_ONLY) == dict.fromkeys(GAN_ONLY, {"disabled": True, "hidden": True})
    assert all(k in meta["keys_by_model"]["mlp"] for k in MLP_ONLY)
    state = tab.eval(STATE, list(TAKERS))
    for key, s in state.items():
        assert s["disabled"], key
        assert f"applies to the {TAKERS[key]} only" in s["note"] and "the server refuses it for the RNN, LSTM and GRU" in s["note"], key
        assert s["title"] == s["note"], key
    assert tab.eval(OPTIONS, "ctl-dataset") == meta["datasets_by_model"]["rnn"] == ["adding", "copy", "parity", "digits"]
    inits = tab.eval(OPTIONS, "ctl-init")
    assert "identity" in inits and inits == meta["initializers_by_model"]["rnn"]
    acts = tab.eval(OPTIONS, "ctl-activation")  # the Elman RNN refuses rrelu and prelu
    assert acts == meta["activations_by_model"]["rnn"] and "prelu" not in acts
    assert not tab.eval("document.getElementById('ctl-activation').disabled")

    tab.page.select_option("#ctl-model", "mlp")
    tab.wait("() => gradscope.config.model === 'mlp'")
    assert tab.eval("gradscope.config.dataset") in meta["datasets_by_model"]["mlp"]
    state = tab.eval(STATE, MLP_ONLY)
    assert state == {k: {"disabled": False, "note": "", "title": ""} for k in MLP_ONLY}
    assert tab.eval(OPTIONS, "ctl-dataset") == meta["datasets_by_model"]["mlp"]
    inits = tab.eval(OPTIONS, "ctl-init")
    assert "identity" not in inits and inits == meta["initializers_by_model"]["mlp"]
    assert tab.eval(OPTIONS, "ctl-activation") == meta["activations"]
    # the MLP-only keys are live again: the server accepts a switch the page sends
    tab.page.check("#ctl-residual")
    tab.wait("() => gradscope.config.residual === true")
    # and back: the switch to the RNN takes residual off and a sequence task with it
    tab.page.select_option("#ctl-model", "rnn")
    tab.wait("() => gradscope.config.model === 'rnn'")
    assert tab.eval("[gradscope.config.residual, gradscope.config.dataset]") == [False, "adding"]
    assert all(s["disabled"] and s["note"] for s in tab.eval(STATE, MLP_ONLY).values())
