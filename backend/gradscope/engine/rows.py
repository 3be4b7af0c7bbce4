"""A compiled chunk's output -> rows: one per measured step, with the steps it covers.

Two forms of output, whatever the family: a chunk that measures every k-th step returns its
measured steps' statistics with their number ("rows") and the per-step scalars for all K
steps; a chunk that measures every step returns each statistic for all K steps (a row a step)."""
from __future__ import annotations

import numpy as np

from gradscope.core.stats import PER_STEP_STATS, SPARSE_STATS


def rows_of(out: dict, n: int) -> tuple[dict, int | None]:
    """A chunk's host output after `n` steps -> (its rows, see Trainer.run; the number of steps to
    train again from the call's start to measure a non-finite step that fell between measured ones, else None)."""
    if "rows" not in out:  # every step measured
        rows = {name: np.asarray(v)[:n] for name, v in out.items()}
        return {**rows, "count": np.ones(n, np.int64)}, None
    rows, nonfinite = _rows(out, n)
    return rows, _unmeasured_break(rows, nonfinite)


def _rows(out: dict, n: int) -> tuple[dict, np.ndarray]:
    """A chunk's host output (n steps ran) -> (one row per measured step, see Trainer.run;
    the per-step non-finite flags)."""
    m = int(out.pop("rows"))
    scalars = {k: np.asarray(out.pop(k))[:n] for k in PER_STEP_STATS if k in out}
    rows = {k: np.asarray(v)[:m] for k, v in out.items()}
    ends = _measured_indices(n, rows)
    starts = np.concatenate([[0], ends[:-1] + 1])
    count = ends - starts + 1
    rows["count"] = count.astype(np.int64)
    ones = np.ones(n, np.float64)
    for k, v in scalars.items():
        if k == "nonfinite":
            rows[k] = np.add.reduceat(v.astype(np.int64), starts) > 0
        else:
            rows[k] = merge_mean(k, v, ones, starts)
    return rows, scalars["nonfinite"]


def merge_mean(name: str, values: np.ndarray, weights: np.ndarray, starts: np.ndarray) -> np.ndarray:
    """The `weights`-weighted means of consecutive runs of `values` (leading axis) beginning at `starts`:
    the steps of a call into its rows (weights 1), or rows into a history's buckets (weights their
    counts). A sparse statistic (SPARSE_STATS: NaN where it was not measured) averages its finite
    values only, NaN where it has none; float32 out."""
    w = weights.astype(np.float64).reshape((-1,) + (1,) * (values.ndim - 1))
    if name in SPARSE_STATS:
        seen = np.isfinite(values)
        total = np.add.reduceat(np.where(seen, values, 0.0) * w, starts, axis=0)
        with np.errstate(invalid="ignore", divide="ignore"):
            return (total / np.add.reduceat(seen * w, starts, axis=0)).astype(np.float32)
    total = np.add.reduceat(values.astype(np.float64) * w, starts, axis=0)
    return (total / np.add.reduceat(w, starts, axis=0)).astype(np.float32)


def _measured_indices(n: int, rows: dict) -> np.ndarray:
    """Indices within a call of n steps of its measured steps (the last step always is)."""
    steps = np.asarray(rows["step"], np.int64)
    return steps - (steps[-1] - (n - 1))


def _unmeasured_break(rows: dict, nonfinite: np.ndarray):
    """The number of steps to the first non-finite step if it was not measured, else None."""
    bad = np.flatnonzero(nonfinite)
    if len(bad) == 0 or bad[0] in _measured_indices(len(nonfinite), rows):
        return None
    return int(bad[0]) + 1
