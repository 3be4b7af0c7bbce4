"""`gradscope run --every K` against `--every 1` (the oracle), its progress bar, `serve --help`."""
import itertools
import json
import os
import re
import select
import subprocess
import sys

import numpy as np
import pytest

from gradscope import cli
from test_cli import BACKEND

TINY = ("--set", "depth=2", "--set", "width=8", "--set", "batch_size=16")
RNN = ("--set", "model=rnn", "--set", "dataset=adding", "--set", "seq_len=5", "--set", "depth=1",
       "--set", "width=8", "--set", "batch_size=16")
_files = itertools.count()


def run_in_process(monkeypatch, tmp_path, *args):
    """`gradscope run ... --out FILE` in this process (the suite's compile cache): (header, records)."""
    import gradscope.engine

    monkeypatch.setattr(gradscope.engine, "enable_persistent_cache", lambda path: None)
    out = tmp_path / f"run{next(_files)}.jsonl"
    assert cli.main(["run", *args, "--out", str(out)]) == 0
    header, *records = [json.loads(line) for line in out.read_text().splitlines()]
    return header, records


def check_rows_against_every_step(rows, steps, every):
    """Each row of `rows` covers `count` steps of `steps` (one record per step) ending at its `step`:
    loss and accuracy their means, nonfinite any, the held-out evaluation made among them, the rest that step's."""
    by_step = {r["step"]: r for r in steps}
    last = max(by_step)
    ends = [r["step"] for r in rows]
    assert ends[-1] == last and sum(r["count"] for r in rows) == last + 1
    first_bad = next((r["step"] for r in steps if r["nonfinite"]), None)
    assert ends == sorted({s for s in by_step if (s + 1) % every == 0 or s == last or s == first_bad})
    start = 0
    for row in rows:
        covered = [by_step[s] for s in range(start, row["step"] + 1)]
        assert row["count"] == len(covered)
        assert row["nonfinite"] == int(any(r["nonfinite"] for r in covered))
        for key in ("loss", "accuracy"):
            values = [r[key] for r in covered]
            if all(v is not None for v in values):
                assert row[key] == pytest.approx(np.mean(values), rel=1e-5, abs=1e-7), (row["step"], key)
        evaluated = [r["val_loss"] for r in covered if r.get("val_loss") is not None]
        assert row.get("val_loss") == (pytest.approx(np.mean(evaluated), rel=1e-5) if evaluated else None)
        own = by_step[row["step"]]
        for key in ("grad_norm", "weight_norm", "hist", "time_delta_norm"):
            if key in own and own["nonfinite"] == 0:
                assert np.allclose(row[key], own[key], rtol=1e-5, atol=1e-8), (row["step"], key)
        start = row["step"] + 1


def test_every_k_rows_cover_k_steps_each(monkeypatch, tmp_path):
    _, steps = run_in_process(monkeypatch, tmp_path, *TINY, "--steps", "11")
    _, rows = run_in_process(monkeypatch, tmp_path, *TINY, "--steps", "11", "--every", "4")
    assert [r["count"] for r in rows] == [4, 4, 3] and [r["step"] for r in rows] == [3, 7, 10]
    check_rows_against_every_step(rows, steps, 4)


def test_every_k_longer_than_a_compiled_call(monkeypatch, tmp_path):
    """K = 16 steps per call at this size: rows of 20 steps gather several calls' rows on the host."""
    wide = ("--set", "depth=8", "--set", "width=256", "--set", "batch_size=256", "--steps", "45")
    _, steps = run_in_process(monkeypatch, tmp_path, *wide)
    _, rows = run_in_process(monkeypatch, tmp_path, *wide, "--every", "20")
    assert [r["count"] for r in rows] == [20, 20, 5]
    check_rows_against_every_step(rows, steps, 20)


def test_every_k_for_a_recurrent_model_and_for_a_pair(monkeypatch, tmp_path):
    """The recurrent engine measures every step: its rows are merged on the host, to the same rows."""
    _, steps = run_in_process(monkeypatch, tmp_path, *RNN, "--steps", "10")
    _, rows = run_in_process(monkeypatch, tmp_path, *RNN, "--steps", "10", "--every", "4")
    assert [r["count"] for r in rows] == [4, 4, 2]
    check_rows_against_every_step(rows, steps, 4)
    _, pair = run_in_process(monkeypatch, tmp_path, *TINY, "--vs", "learning_rate=0.5", "--steps", "6", "--every", "3")
    for run in "ab":
        assert [(r["step"], r["count"]) for r in pair if r["run"] == run] == [(2, 3), (5, 3)]


def test_every_k_keeps_the_step_where_a_run_broke(monkeypatch, tmp_path):
    boom = ("--set", "activation=linear", "--set", "init=standard_normal", "--set", "init_gain=4", "--set", "learning_rate=10",
            "--set", "depth=3", "--set", "width=16", "--steps", "30")
    _, steps = run_in_process(monkeypatch, tmp_path, *boom)
    _, rows = run_in_process(monkeypatch, tmp_path, *boom, "--every", "7")
    first_bad = next(r["step"] for r in steps if r["nonfinite"])
    assert first_bad % 7 != 6, "choose a setup that breaks off the grid"
    assert first_bad in [r["step"] for r in rows]
    check_rows_against_every_step(rows, steps, 7)


def _on_a_terminal(*args, tmp_path):
    """`gradscope ...` in a subprocess whose stderr is a pseudo-terminal: what it wrote there."""
    main, other = os.openpty()
    env = {"GRADSCOPE_CACHE": str(tmp_path / "cache"), "PATH": "/usr/bin:/bin", "JAX_PLATFORMS": "cpu", "PYTHONPATH": BACKEND}
    proc = subprocess.Popen([sys.executable, "-m", "gradscope", *args], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=other, env=env)
    os.close(other)
    got = b""
    try:
        while select.select([main], [], [], 300)[0]:  # readable: data, or the other end closed
            try:
                data = os.read(main, 4096)
            except OSError:  # EIO: every writer closed the terminal
                break
            if not data:
                break
            got += data
    finally:
        os.close(main)
    assert proc.wait(timeout=60) == 0, got.decode(errors="replace")
    return got.decode(errors="replace")


def test_progress_bar_on_a_terminal_and_quiet(tmp_path):
    out = str(tmp_path / "run.jsonl")
    shown = _on_a_terminal("run", *TINY, "--steps", "40", "--out", out, tmp_path=tmp_path)
    last = shown.replace("\r\n", "\n").split("\r")[-1]  # the bar as it was left
    assert re.search(r"\[#{30}\] 40/40 [\d,]+ steps/s ETA 0:00 loss [\d.e+-]+", last), repr(last)
    quiet = _on_a_terminal("run", *TINY, "--steps", "40", "--out", out, "--quiet", tmp_path=tmp_path)
    assert "steps/s" not in quiet and "ETA" not in quiet and "[#" not in quiet


def test_serve_help_shows_every_option_with_its_default(capsys):
    with pytest.raises(SystemExit):
        cli.main(["serve", "--help"])
    text = capsys.readouterr().out
    blocks = {block.split()[0]: " ".join(block.split()) for block in re.split(r"\n  (?=-)", text.split("options:")[1])[1:]}
    serve = cli.build_parser()._subparsers._group_actions[0].choices["serve"]
    options = [a.option_strings[-1] for a in serve._actions if "--help" not in a.option_strings]
    assert len(options) >= 11 and set(blocks) == {"-h,", *options}
    assert all("(default " in blocks[o] for o in options), [o for o in options if "(default " not in blocks[o]]
    assert "(default 127.0.0.1)" in blocks["--host"] and "(default 8000)" in blocks["--port"]
    assert "(default ./data)" in blocks["--data-dir"]
