"""Chunk statistics -> wire and file formats. Non-finite numbers become null."""

import math

import numpy as np

from gradscope.core.train import HIST_STATS, STAT_NAMES

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
    if name in INT_STATS or a.dtype == np.bool_:
        return a.astype(np.int64).tolist()
    return _clean(a.astype(np.float64).tolist())


def to_wire(stats: dict) -> dict:
    """Columnar JSON-able dict: every statistic an array over steps (per-layer: of arrays)."""
    return {name: _plain(name, a) for name, a in stats.items()}


def iter_records(stats: dict):
    """One JSON-able dict per step, the same field names."""
    wire = to_wire(stats)
    names = [n for n in STAT_NAMES if n in wire] + sorted(set(wire) - set(STAT_NAMES))
    for i in range(len(wire["step"])):
        yield {name: wire[name][i] for name in names}

