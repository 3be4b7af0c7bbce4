"""`gradscope run --stats NAMES`: only the statistics asked for are computed (XLA drops the others'
work from the compiled program), their numbers are the full run's, and a name the model does not
emit is refused with the names it does."""
import csv
import io

import numpy as np
import pytest

from gradscope import cli
from gradscope.engine import CompileCache, Trainer

TINY = ["--set", "depth=3", "--set", "width=8", "--set", "batch_size=16", "--steps", "12"]
KEPT = ["step", "count", "loss", "nonfinite"]


@pytest.fixture
def run(monkeypatch, tmp_path, capsys):
    import gradscope.engine

    monkeypatch.setattr(gradscope.engine, "enable_persistent_cache", lambda path: None)

    def go(*args):
        out = tmp_path / "run.csv"
        code = cli.main(["run", *TINY, *args, "--format", "csv", "--out", str(out), "-q"])
        return code, (list(csv.DictReader(io.StringIO(out.read_text()))) if code == 0 else capsys.readouterr().err)
    return go


def test_selected_columns_are_the_full_runs_numbers(run):
    code, full = run()
    assert code == 0
    code, some = run("--stats", "grad_norm", "--stats", "delta_norm,act_std")
    assert code == 0
    names = list(some[0])
    assert names[:4] == KEPT and {n.split("[")[0] for n in names[4:]} == {"grad_norm", "delta_norm", "act_std"}
    assert len(some) == len(full) == 12
    for column in names:
        got = np.array([float(r[column]) for r in some])
        want = np.array([float(r[column]) for r in full])
        np.testing.assert_allclose(got, want, rtol=1e-5, err_msg=column)  # the same steps, the same numbers


def test_a_statistic_the_model_does_not_emit_is_named_with_the_ones_it_does(run):
    code, err = run("--stats", "grad_norm,spectral_radius")
    assert code == 2 and "stats" in err and "spectral_radius" in err
    assert "grad_norm" in err and "delta_norm" in err and "hist" in err  # the MLP's, as the choices
    code, err = run("--set", "model=lstm", "--set", "dataset=adding", "--set", "depth=1", "--set", "seq_len=8",
                    "--stats", "spectral_radius,hist")
    assert code == 2 and "'hist'" in err and "spectral_radius" in err


@pytest.mark.parametrize("config", [
    {"depth": 3, "width": 16, "batch_size": 32},
    {"model": "lstm", "dataset": "adding", "seq_len": 10, "width": 8, "batch_size": 8},
    {"model": "cnn", "depth": 3, "width": 8, "batch_size": 8},
], ids=lambda c: c.get("model", "mlp"))
def test_a_selection_compiles_less_work_in_every_family(config):
    """The compiled program's own cost analysis: fewer floating-point operations with one statistic
    than with all (the MLP packs every row statistic into one array: the selection must come first)."""
    cache = CompileCache(background=False)
    flops = {}
    for stats in (None, ("grad_norm",)):
        t = Trainer(config, cache=cache, chunk_steps=4, specialize=True, stats=stats)
        cost = t._executable().cost_analysis()
        flops[stats] = (cost[0] if isinstance(cost, list) else cost)["flops"]
        rows = t.run(3)
        assert set(rows) == ({"count", "grad_norm", "loss", "nonfinite", "step"} if stats else set(rows))
    cache.close()
    assert flops[("grad_norm",)] < 0.8 * flops[None]  # measured: 0.21x (MLP), 0.71x (LSTM), 0.06x (CNN)
