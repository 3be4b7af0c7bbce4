"""Chunk statistics -> wire and file formats. Non-finite numbers become null.

The file format, written by `gradscope run --out` and by the session export alike: JSON
Lines, a header (`run_header`) then one record per row (`iter_records`), or CSV (`csv_lines`).
"""

import csv
import io
import json
import math

import numpy as np

from gradscope.core.train import HIST_STATS, PER_STEP_STATS, SPARSE_STATS, STAT_NAMES

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


def jsonl_lines(header: dict, records):
    """The JSON Lines file, line by line: the header, then one record a line (NaN/Inf as null)."""
    yield json.dumps(header) + "\n"
    for record in records:
        yield json.dumps(record, allow_nan=False) + "\n"


def _flat(name, value):
    if not isinstance(value, list):
        return [(name, value)]
    return [kv for j, v in enumerate(value) for kv in _flat(f"{name}[{j}]", v)]


def csv_lines(records):
    """The CSV file, line by line: a header row, then one row per record. A per-layer list
    becomes columns `grad_norm[0]`, `grad_norm[1]`, ..., a histogram `hist[layer][bin]`; null is empty."""
    for i, record in enumerate(records):
        flat = [kv for k, v in record.items() for kv in _flat(k, v)]
        buf = io.StringIO()
        writer = csv.writer(buf)
        if i == 0:
            writer.writerow([k for k, _ in flat])
        writer.writerow(["" if v is None else v for _, v in flat])
        yield buf.getvalue()


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
