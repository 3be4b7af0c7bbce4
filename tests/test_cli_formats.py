"""`gradscope run --format jsonl|csv|parquet`: the same numbers in each, written whole calls at a
time on the writer's thread (records.RecordWriter), NaN as null, clear errors for what cannot work."""
import csv
import io
import itertools
import json

import numpy as np
import pytest

from gradscope import cli
from gradscope.records import RecordWriter, columns, csv_bytes, iter_records, jsonl_bytes

TINY = ["--set", "depth=2", "--set", "width=8", "--set", "batch_size=16", "--steps", "30"]
_files = itertools.count()


@pytest.fixture
def run(monkeypatch, tmp_path):
    import gradscope.engine

    monkeypatch.setattr(gradscope.engine, "enable_persistent_cache", lambda path: None)

    def go(*args, suffix="jsonl"):
        out = tmp_path / f"run{next(_files)}.{suffix}"
        assert cli.main(["run", *TINY, *args, "--out", str(out), "-q"]) == 0
        return out
    return go


def _rows():
    """Rows as Trainer.run returns them, with a NaN, an Inf, booleans and a per-layer histogram."""
    rng = np.random.default_rng(0)
    grad = rng.lognormal(size=(4, 3)).astype(np.float32)
    grad[1, 2], grad[2, 0] = np.nan, np.inf
    return {"step": np.arange(4, dtype=np.int32), "count": np.ones(4, np.int64),
            "loss": rng.random(4).astype(np.float32), "nonfinite": np.array([False, True, True, False]),
            "grad_norm": grad, "hist": rng.integers(0, 9, (4, 3, 5)).astype(np.int32),
            "val_loss": np.array([0.5, np.nan, np.nan, 0.25], np.float32)}


def test_jsonl_bytes_are_the_records_with_float32_values_exact():
    rows = _rows()
    fast = [json.loads(line) for line in jsonl_bytes(rows, run="b").splitlines()]
    slow = [{"run": "b", **r} for r in iter_records(rows)]
    assert [list(r) for r in fast] == [list(r) for r in slow]  # same keys, same order
    for f, s in zip(fast, slow, strict=True):
        for key in f:
            a, b = np.asarray(f[key], dtype=object), np.asarray(s[key], dtype=object)
            assert (a == None).tolist() == (b == None).tolist(), key  # noqa: E711  (null where not finite)
            if key != "run":
                finite = a != None  # noqa: E711
                np.testing.assert_array_equal(a[finite].astype(np.float32), b[finite].astype(np.float32))
    assert fast[1]["grad_norm"][2] is None and fast[2]["grad_norm"][0] is None and fast[1]["val_loss"] is None
    assert fast[1]["nonfinite"] == 1 and isinstance(fast[0]["hist"][0][0], int)


def test_csv_bytes_have_a_column_per_number_and_empty_for_null():
    rows = _rows()
    from gradscope.records import column_names

    names = column_names(columns(rows))
    table = list(csv.reader(io.StringIO(csv_bytes(rows).decode())))
    assert all(len(line) == len(names) for line in table)
    assert names[:4] == ["step", "count", "loss", "nonfinite"] and "grad_norm[1]" in names and "hist[2][4]" in names
    row1 = dict(zip(names, table[1], strict=True))
    assert row1["grad_norm[2]"] == "" and row1["val_loss"] == "" and row1["nonfinite"] == "1"
    assert np.float32(row1["grad_norm[0]"]) == rows["grad_norm"][1, 0]  # float32 in its shortest form, exact
    assert int(row1["hist[1][3]"]) == rows["hist"][1, 1, 3]


def test_the_three_formats_hold_the_same_run(run):
    lines = run().read_text().splitlines()
    header, records = json.loads(lines[0]), [json.loads(line) for line in lines[1:]]
    assert header["config"]["depth"] == 2 and len(records) == 30

    table = list(csv.reader(io.StringIO(run(suffix="csv").read_text())))
    names, body = table[0], table[1:]
    assert len(body) == 30
    for rec, line in zip(records, body, strict=True):
        got = dict(zip(names, line, strict=True))
        assert int(got["step"]) == rec["step"]
        assert float(got["loss"]) == pytest.approx(rec["loss"], rel=1e-6)
        assert [float(got[f"grad_norm[{i}]"]) for i in range(len(rec["grad_norm"]))] == pytest.approx(rec["grad_norm"], rel=1e-6)

    import pyarrow.parquet as pq

    pt = pq.read_table(run("--format", "parquet", suffix="out"))
    assert json.loads(pt.schema.metadata[b"gradscope"])["config"] == header["config"]
    cols = pt.to_pydict()
    assert cols["step"] == [r["step"] for r in records]
    assert cols["loss"] == pytest.approx([r["loss"] for r in records], rel=1e-6)
    assert np.allclose(np.array(cols["hist"]), np.array([r["hist"] for r in records]))


def test_vs_runs_are_tagged_in_every_format(run):
    lines = run("--vs", "activation=relu").read_text().splitlines()[1:]
    assert {json.loads(line)["run"] for line in lines} == {"a", "b"}
    table = list(csv.reader(io.StringIO(run("--vs", "activation=relu", suffix="csv").read_text())))
    assert table[0][0] == "run" and {line[0] for line in table[1:]} == {"a", "b"}


@pytest.mark.parametrize(("args", "says"), [
    (["--format", "parquet"], "parquet needs a file"),
    (["--format", "csv", "--out", "x.csv", "--vs", "depth=3"], "changes the statistics' shapes"),
])
def test_what_cannot_be_written_is_refused_before_training(monkeypatch, tmp_path, capsys, args, says):
    monkeypatch.chdir(tmp_path)
    import gradscope.engine

    monkeypatch.setattr(gradscope.engine, "enable_persistent_cache", lambda path: None)
    assert cli.main(["run", *TINY, *args]) == 2
    err = capsys.readouterr().err
    assert "--format" in err and says in err


def test_a_writer_that_fails_stops_the_run_with_its_error():
    class Full(io.RawIOBase):
        def writable(self):
            return True

        def write(self, b):
            raise OSError(28, "No space left on device")

    with pytest.raises(OSError, match="No space"), RecordWriter(Full(), "jsonl", {"config": {}}) as writer:
        for _ in range(50):  # the error reaches a later put, or the close on leaving the block
            writer.put(_rows())
    assert not writer.thread.is_alive()
