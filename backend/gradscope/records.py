"""Chunk statistics -> wire and file formats. Non-finite numbers become null.

The file formats, written by `gradscope run --out` and by the session export alike: JSON
Lines, a header (`run_header`) then one record per row; CSV, one column per number (a
per-layer statistic `grad_norm[0]`, `grad_norm[1]`, ...); Parquet (pyarrow, optional), one
column per statistic (per-layer ones as fixed-size lists), the header in the file's metadata.
`encode` turns a call's rows (columns of numpy arrays) into a format's bytes at once, and
`RecordWriter` writes them on a thread of its own, so the training thread never waits on JSON.
"""

import json
import math
import queue
import threading

import numpy as np
import orjson

from gradscope.core.stats import PER_STEP_STATS, SPARSE_STATS, STAT_NAMES
from gradscope.core.train import HIST_STATS

INT_STATS = ("step", "count", "nonfinite", "nonfinite_count") + HIST_STATS


def _clean(value):
    """Nested lists with NaN/Inf replaced by None (browsers reject a bare NaN token)."""
    if isinstance(value, list):
        return [_clean(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _plain(name, array):
    a = np.asarray(array)
    if a.dtype.kind in "iub" or (name in INT_STATS and np.all(np.isfinite(a)) and np.all(a == np.round(a))):
        return a.astype(np.int64).tolist()
    return _clean(a.astype(np.float64).tolist())  # a merged row's mean histogram stays a mean


def to_wire(stats: dict) -> dict:
    """Columnar JSON-able dict: every statistic an array over steps (per-layer: of arrays)."""
    return {name: _plain(name, a) for name, a in stats.items()}


def iter_records(stats: dict):
    """One JSON-able dict per row, the same field names, in STAT_NAMES order (others after, sorted)."""
    wire = to_wire(stats)
    names = [n for n in STAT_NAMES if n in wire] + sorted(set(wire) - set(STAT_NAMES))
    for i in range(len(wire["step"])):
        yield {name: wire[name][i] for name in names}


def run_header(config, events=(), columns=None) -> dict:
    """The first line of a file: the config the run started from, the config changes since
    (`events`, the session timeline; none for `gradscope run`), the JAX backend and devices,
    the version; a family that names its columns (the recurrent models' groups) adds them (of `columns`, default `config`)."""
    import jax

    from gradscope import __version__
    from gradscope.families import family_of

    header = {"config": config.model_dump(), "events": list(events), "backend": jax.default_backend(),
              "devices": [str(d) for d in jax.devices()], "version": __version__}
    columns = columns or config
    family = family_of(columns.model)
    named = family.columns(columns)
    if named is not None:  # e.g. the recurrent models' parameter groups and gates, under the family's name
        header[family.name] = named
    return header


def merge_rows(stats: dict, ends) -> dict:
    """Consecutive rows merged into groups ending at the row indices `ends` (sorted, the last
    one the last row): `count` summed; loss and accuracy their count-weighted means, `nonfinite`
    whether any row's was, val_loss/val_accuracy the mean of the evaluations among them (NaN if
    none); every other statistic the group's last row's (its step's, as Trainer.run's rows)."""
    ends = np.asarray(ends, np.int64)
    if len(ends) == len(stats["step"]):
        return stats
    starts = np.concatenate([[0], ends[:-1] + 1])
    count = np.asarray(stats["count"], np.int64)
    out = {k: np.asarray(v)[ends] for k, v in stats.items()}
    out["count"] = np.add.reduceat(count, starts)
    for k in PER_STEP_STATS:
        if k not in stats:
            continue
        v = np.asarray(stats[k])
        if k == "nonfinite":
            out[k] = np.add.reduceat(v.astype(np.int64), starts) > 0
        elif k in SPARSE_STATS:
            seen = np.isfinite(v)
            with np.errstate(invalid="ignore", divide="ignore"):
                out[k] = np.add.reduceat(np.where(seen, v, 0.0), starts) / np.add.reduceat(seen, starts)
        else:
            out[k] = np.add.reduceat(v.astype(np.float64) * count, starts) / out["count"]
    return out


class Blocks:
    """A run's rows, arriving chunk by chunk, gathered into rows of `every` steps: rows end on
    the steps every-1, 2*every-1, ..., on `last` (the run's last step) and on the run's first
    non-finite step (where it broke stays exact). With every = 1 rows pass unchanged."""

    def __init__(self, every: int, last: int):
        self.every, self.last, self.held, self.broke = every, last, None, False

    def add(self, stats: dict) -> dict | None:
        """One chunk in; the rows it completes out (None if none)."""
        if self.held is not None:
            stats = {k: np.concatenate([self.held[k], stats[k]]) for k in stats}
        step = np.asarray(stats["step"], np.int64)
        end = ((step + 1) % self.every == 0) | (step >= self.last)
        bad = np.flatnonzero(np.asarray(stats["nonfinite"]))
        if bad.size and not self.broke:
            end[bad[0]], self.broke = True, True
        ends = np.flatnonzero(end)
        if ends.size == 0:
            self.held = stats
            return None
        n = ends[-1] + 1
        self.held = {k: np.asarray(v)[n:] for k, v in stats.items()} if n < len(step) else None
        return merge_rows({k: np.asarray(v)[:n] for k, v in stats.items()}, ends)


# -- whole calls at once: columns in, a format's bytes out --------------------------------
FORMATS = ("jsonl", "csv", "parquet")
_NUMPY = orjson.OPT_SERIALIZE_NUMPY


def columns(rows: dict) -> list[tuple[str, np.ndarray]]:
    """A call's rows as ordered (name, array) columns, as iter_records orders and types them:
    STAT_NAMES first, others sorted; booleans and integral counts as integers; C order."""
    names = [n for n in STAT_NAMES if n in rows] + sorted(set(rows) - set(STAT_NAMES))
    out = []
    for name in names:
        a = np.asarray(rows[name])
        integral = a.dtype.kind == "f" and name in INT_STATS and np.all(np.isfinite(a)) and np.all(a == np.round(a))
        if a.dtype.kind == "b" or integral:
            a = a.astype(np.int64)
        elif a.dtype.kind == "f" and a.dtype not in (np.float32, np.float64):
            a = a.astype(np.float32)
        out.append((name, np.ascontiguousarray(a)))
    return out


def column_names(cols, run: str | None = None) -> list[str]:
    """The flat column names of `columns(...)`: `loss`, `grad_norm[0]`, `hist[1][3]`, ..."""
    names = ["run"] if run is not None else []
    for name, a in cols:
        names += [name + "".join(f"[{i}]" for i in idx) for idx in np.ndindex(a.shape[1:])]
    return names


def jsonl_bytes(rows: dict, run: str | None = None) -> bytes:
    """One JSON line per row (NaN and Inf as null; float32 values in their shortest form)."""
    cols = columns(rows)
    head = {"run": run} if run is not None else {}
    opt = _NUMPY | orjson.OPT_APPEND_NEWLINE
    return b"".join(orjson.dumps({**head, **{n: a[i] for n, a in cols}}, option=opt) for i in range(len(rows["step"])))


def csv_bytes(rows: dict, run: str | None = None) -> bytes:
    """One CSV line per row, its columns as `column_names` names them (null: empty)."""
    cols = [(n, a) for n, a in columns(rows) if a[0].size]  # a statistic of no entries has no columns
    head = [run] if run is not None else []
    lines = []
    for i in range(len(rows["step"])):
        # a flat JSON list is a CSV line once its brackets go: numbers never hold them
        text = orjson.dumps(head + [a[i] for _, a in cols], option=_NUMPY)
        lines.append(text.replace(b"[", b"").replace(b"]", b"").replace(b"null", b"") + b"\n")
    return b"".join(lines)


def _parquet():
    try:
        import pyarrow
        import pyarrow.parquet
    except ImportError:
        raise RuntimeError("the parquet format needs pyarrow: pip install 'gradscope[parquet]'") from None
    return pyarrow, pyarrow.parquet


def parquet_table(rows: dict, run: str | None = None):
    """A pyarrow Table of a call's rows: a column per statistic, per-layer ones as nested fixed-size lists."""
    pa, _ = _parquet()

    def nested(a):
        values = pa.array(a.reshape(-1))
        for size in reversed(a.shape[1:]):
            values = pa.FixedSizeListArray.from_arrays(values, size)
        return values

    cols = columns(rows)
    names = (["run"] if run is not None else []) + [n for n, _ in cols]
    arrays = ([pa.array([run] * len(rows["step"]))] if run is not None else []) + [nested(a) for _, a in cols]
    return pa.Table.from_arrays(arrays, names=names)


def encode(fmt: str, rows: dict, run: str | None = None) -> bytes:
    return {"jsonl": jsonl_bytes, "csv": csv_bytes}[fmt](rows, run)


class RecordWriter:
    """Writes calls' rows to `out` (a binary file) in `fmt` on a thread of its own: `put` hands
    over a call's rows and returns (waiting only while `depth` calls are queued), `close`
    finishes and raises what the writer raised. JSON Lines start with `header`; CSV with the
    column names; Parquet keeps the header in the file's metadata (key b"gradscope") and
    writes a row group per `group_rows` rows."""

    def __init__(self, out, fmt: str, header: dict, *, depth: int = 8, group_rows: int = 8192):
        if fmt not in FORMATS:
            raise ValueError(f"format {fmt!r}: one of {', '.join(FORMATS)}")
        if fmt == "parquet":
            _parquet()  # the clear error before any training, not at the first write
        self.out, self.fmt, self.header, self.group_rows = out, fmt, header, group_rows
        self.queue: queue.Queue = queue.Queue(maxsize=depth)
        self.error: BaseException | None = None
        self.wrote_header = False
        self.parquet = None
        self.pending: list = []
        self.thread = threading.Thread(target=self._work, name="gradscope-writer", daemon=True)
        self.thread.start()

    def put(self, rows: dict, run: str | None = None) -> None:
        if self.error is not None:
            raise self.error
        self.queue.put((rows, run))

    def close(self) -> None:
        self.queue.put(None)
        self.thread.join()
        if self.error is not None:
            raise self.error

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def _work(self) -> None:
        try:
            if self.fmt == "jsonl":
                self.out.write(json.dumps(self.header).encode() + b"\n")
            while (item := self.queue.get()) is not None:
                self._write(*item)
            self._finish()
        except BaseException as exc:  # handed to the training thread at its next put or at close
            self.error = exc
            while self.queue.get() is not None:  # drain, so put() never blocks on a dead writer
                pass

    def _write(self, rows: dict, run: str | None) -> None:
        if self.fmt == "parquet":
            self.pending.append(parquet_table(rows, run))
            if sum(t.num_rows for t in self.pending) >= self.group_rows:
                self._flush_parquet()
            return
        if self.fmt == "csv" and not self.wrote_header:
            self.out.write(",".join(column_names(columns(rows), run)).encode() + b"\n")
            self.wrote_header = True
        self.out.write(encode(self.fmt, rows, run))

    def _flush_parquet(self) -> None:
        pa, pq = _parquet()
        if not self.pending:
            return
        table = pa.concat_tables(self.pending)
        self.pending = []
        if self.parquet is None:
            meta = {b"gradscope": json.dumps(self.header).encode()}
            self.parquet = pq.ParquetWriter(self.out, table.schema.with_metadata(meta))
        self.parquet.write_table(table.replace_schema_metadata(self.parquet.schema.metadata))

    def _finish(self) -> None:
        if self.fmt == "parquet":
            self._flush_parquet()
            if self.parquet is not None:
                self.parquet.close()
