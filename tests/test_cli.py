"""`gradscope run` as a user runs it: a real subprocess writing JSON Lines."""

import json
import subprocess
import sys
from pathlib import Path

from gradscope.config import KEYS_BY_MODEL
from gradscope.core.train_gan import SPARSE_STATS as GAN_SPARSE
from gradscope.core.train_gan import STAT_NAMES as GAN_ONLY
from gradscope.records import STAT_NAMES

GAN_STATS = set(GAN_ONLY + GAN_SPARSE) - {"step", "nonfinite"}

BACKEND = str(Path(__file__).resolve().parents[1] / "backend")


def gradscope(*args, tmp_path):
    return subprocess.run([sys.executable, "-m", "gradscope", *args], capture_output=True, text=True, timeout=300,
                          env={"GRADSCOPE_CACHE": str(tmp_path / "cache"), "PATH": "/usr/bin:/bin", "JAX_PLATFORMS": "cpu",
                               "PYTHONPATH": BACKEND})  # this checkout's package, however it is installed


def test_run_writes_a_header_and_every_kth_step(tmp_path):
    cfg = tmp_path / "cfg.json"
    cfg.write_text(json.dumps({"depth": 2, "width": 8, "batch_size": 16}))
    out = tmp_path / "run.jsonl"
    proc = gradscope("run", "--config", str(cfg), "--set", "activation=tanh", "--set", "batchnorm=true",
                     "--steps", "7", "--every", "3", "--out", str(out), tmp_path=tmp_path)
    assert proc.returncode == 0, proc.stderr
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    header, records = lines[0], lines[1:]
    assert header["config"]["activation"] == "tanh" and header["config"]["batchnorm"] is True
    assert header["config"]["depth"] == 2 and header["backend"] == "cpu" and header["devices"] and header["events"] == []
    assert [r["step"] for r in records] == [2, 5, 6] and [r["count"] for r in records] == [3, 3, 1]  # the last: steps 6..6
    r = records[0]
    assert len(r["grad_norm"]) == 3 and len(r["delta_norm"]) == 3 and len(r["act_std"]) == 2
    assert list(r) == [n for n in STAT_NAMES if n in r] and len(r) == len(STAT_NAMES) - len(GAN_STATS)  # every MLP statistic, in order
    assert len(r["h_grad_norm"]) == 2 and len(r["init_distance"]) == 3 and len(r["z_hist"]) == 2
    assert r["val_loss"] is not None and records[1]["val_loss"] is None  # held out: at step 0, among steps 0-2
    assert r["neg_slope"] == [None, None] and r["clip_cosine"] == 1
    assert "steps/s" not in proc.stderr and "[#" not in proc.stderr  # stderr is no terminal here: no progress bar


def test_non_finite_numbers_are_null(tmp_path):
    proc = gradscope("run", "--set", "activation=linear", "--set", "init=standard_normal", "--set", "init_gain=4",
                     "--set", "learning_rate=10", "--set", "depth=3", "--set", "width=16", "--steps", "30", tmp_path=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "NaN" not in proc.stdout and "Infinity" not in proc.stdout
    records = [json.loads(line) for line in proc.stdout.splitlines()[1:]]
    assert any(r["nonfinite"] for r in records) and any(r["loss"] is None for r in records)


def test_unknown_key_and_bad_value_exit_nonzero_naming_the_choices(tmp_path):
    proc = gradscope("run", "--set", "activaton=relu", "--steps", "1", tmp_path=tmp_path)
    assert proc.returncode == 2 and "activaton" in proc.stderr and all(k in proc.stderr for k in KEYS_BY_MODEL["mlp"])
    proc = gradscope("run", "--set", "init=xavier", "--steps", "1", tmp_path=tmp_path)
    assert proc.returncode == 2 and "init" in proc.stderr and "he_normal" in proc.stderr and "glorot_uniform" in proc.stderr
    proc = gradscope("run", "--set", "depth=999", "--steps", "1", tmp_path=tmp_path)
    assert proc.returncode == 2 and "depth" in proc.stderr
