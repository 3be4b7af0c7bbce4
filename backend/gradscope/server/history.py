"""Bounded per-session history: every engine row up to a budget, then min/max/mean buckets.

Rows are columnar numpy arrays with a leading row axis: `step` (last step of the row),
`count` (steps in the row), each statistic's mean, and for every statistic but the
histograms (names ending in "hist") its `min` and `max` over the row, so a one-step spike
survives any amount of merging. Sparse statistics (`SPARSE_STATS`, NaN on the steps where
they were not measured) merge over their finite values only.
"""
from __future__ import annotations

import io
import json
import math

import numpy as np

from gradscope.core.stats import SPARSE_STATS
from gradscope.engine.rows import merge_mean

try:  # optional fast path: numpy straight to JSON, NaN/Inf as null
    import orjson
except ImportError:  # pragma: no cover
    orjson = None


def is_hist(key: str) -> bool:
    """Histograms (`hist`, `z_hist`, `h_hist`, ...): means only, and only on request."""
    return key.endswith("hist")


def _rows_from_stats(stats: dict) -> dict:
    """Raw engine rows -> history rows; each covers `count` steps (the engine's: 1 per
    step when it measures every step, else the steps since the previous measured one)."""
    mean = {k: np.asarray(v) for k, v in stats.items() if k not in ("step", "count")}
    step = np.asarray(stats["step"], dtype=np.int64)
    count = np.asarray(stats["count"], np.int64) if "count" in stats else np.ones(len(step), np.int64)
    mm = {k: v for k, v in mean.items() if not is_hist(k)}
    return {"step": step, "count": count, "mean": mean, "min": dict(mm), "max": dict(mm)}


def _concat(parts: list[dict]) -> dict | None:
    if not parts:
        return None
    if len(parts) == 1:
        return parts[0]
    cat = lambda key, sub=None: np.concatenate([(p[key] if sub is None else p[key][sub]) for p in parts])
    first = parts[0]
    return {"step": cat("step"), "count": cat("count"),
            **{g: {k: cat(g, k) for k in first[g]} for g in ("mean", "min", "max")}}


def _take(rows: dict, sel) -> dict:
    return {"step": rows["step"][sel], "count": rows["count"][sel],
            **{g: {k: v[sel] for k, v in rows[g].items()} for g in ("mean", "min", "max")}}


def merge(rows: dict, starts: np.ndarray) -> dict:
    """Merge consecutive rows into groups beginning at `starts` (count-weighted means; a
    sparse statistic's mean, min and max are over its finite values, NaN if it has none)."""
    cnt = rows["count"]
    csum = np.add.reduceat(cnt, starts)
    ends = np.append(starts[1:], len(cnt)) - 1

    def extreme(k, a, plain, nan_skipping):
        with np.errstate(invalid="ignore"):
            return (nan_skipping if k in SPARSE_STATS else plain).reduceat(a, starts, axis=0)

    return {"step": rows["step"][ends], "count": csum,
            "mean": {k: merge_mean(k, v, cnt, starts) for k, v in rows["mean"].items()},
            "min": {k: extreme(k, v, np.minimum, np.fmin) for k, v in rows["min"].items()},
            "max": {k: extreme(k, v, np.maximum, np.fmax) for k, v in rows["max"].items()}}


def _nbytes(rows: dict | None) -> int:
    if rows is None:
        return 0
    return sum(a.nbytes for g in ("mean", "min", "max") for a in rows[g].values()) + 16 * len(rows["step"])


class History:
    """Raw tier (every step) + coarse tier (buckets doubling in size); both bounded in bytes."""

    def __init__(self, budget_bytes: int = 16 << 20, bucket: int = 8):
        self.budget = budget_bytes
        self.bucket0 = bucket
        self.clear()

    def clear(self) -> None:
        self.raw: list[dict] = []
        self.raw_rows = 0
        self.coarse: dict | None = None
        self.bucket = self.bucket0
        self.row_bytes = 0

    # -- writing ---------------------------------------------------------------------
    def append(self, stats: dict) -> None:
        """Add one engine chunk (columnar, leading axis = steps)."""
        rows = _rows_from_stats(stats)
        if len(rows["step"]) == 0:
            return
        if self.raw and any(self.raw[0]["mean"][k].shape[1:] != v.shape[1:]
                            for k, v in rows["mean"].items() if k in self.raw[0]["mean"]):
            self.clear()  # network shape changed without a step reset
        self.row_bytes = max(1, _nbytes(rows) // len(rows["step"]))
        self.raw.append(rows)
        self.raw_rows += len(rows["step"])
        if self.raw_rows > self.raw_capacity:
            self._compact()

    def append_after(self, stats: dict) -> None:
        """Append only the steps past the last one held (replaying persisted rows)."""
        last = self.last_step
        if last is not None:
            keep = np.asarray(stats["step"]) > last
            stats = {k: np.asarray(v)[keep] for k, v in stats.items()}
        self.append(stats)

    @property
    def raw_capacity(self) -> int:
        return max(256, self.budget // 2 // max(self.row_bytes, 1))

    def _compact(self) -> None:
        rows = _concat(self.raw)
        n_move = (len(rows["step"]) - self.raw_capacity * 3 // 4) // self.bucket * self.bucket
        if n_move <= 0:
            self.raw = [rows]
            return
        moved = merge(_take(rows, slice(0, n_move)), np.arange(0, n_move, self.bucket))
        self.raw = [_take(rows, slice(n_move, None))]
        self.raw_rows = len(self.raw[0]["step"])
        self.coarse = _concat([c for c in (self.coarse, moved) if c is not None])
        while _nbytes(self.coarse) > self.budget // 2 and len(self.coarse["step"]) > 1:
            self.coarse = merge(self.coarse, np.arange(0, len(self.coarse["step"]), 2))
            self.bucket *= 2

    def truncate(self, step: int) -> None:
        """Forget every row whose last step is >= `step` (rewind / reset)."""
        parts = [p for p in ([self.coarse] if self.coarse else []) + self.raw]
        rows = _concat(parts)
        if rows is None:
            return
        keep = rows["step"] < step
        if keep.all():
            return
        if not keep.any():
            self.clear()
            return
        n_coarse = 0 if self.coarse is None else len(self.coarse["step"])
        kept = _take(rows, keep)
        k_coarse = int(keep[:n_coarse].sum())
        self.coarse = _take(kept, slice(0, k_coarse)) if k_coarse else None
        self.raw = [_take(kept, slice(k_coarse, None))]
        self.raw_rows = len(self.raw[0]["step"])

    # -- reading ---------------------------------------------------------------------
    def parts(self) -> list[dict]:
        """The row blocks of both tiers, oldest first: a cheap copy of the list (take it under
        the session's lock, `select` from it outside; blocks are replaced, never written in place)."""
        return ([self.coarse] if self.coarse else []) + list(self.raw)

    def frozen(self) -> History:
        """A shallow copy that later appends do not change (take it under the session's lock,
        read it outside: `arrays`, `rows` and `to_bytes` concatenate and can take a while)."""
        copy = History.__new__(History)
        copy.__dict__.update(self.__dict__)
        copy.raw = list(self.raw)
        return copy

    def rows(self, since: int = 0, max_points: int | None = None) -> dict | None:
        """All rows with step >= since, merged down to at most max_points rows."""
        return select(self.parts(), since, max_points)

    @property
    def last_step(self) -> int | None:
        if self.raw and len(self.raw[-1]["step"]):
            return int(self.raw[-1]["step"][-1])
        return None if self.coarse is None else int(self.coarse["step"][-1])

    @property
    def nbytes(self) -> int:
        return sum(_nbytes(p) for p in self.raw) + _nbytes(self.coarse)

    # -- persistence -----------------------------------------------------------------
    def to_bytes(self) -> bytes:
        return pack(self.arrays())

    def arrays(self) -> dict:
        """Flat copies of both tiers (of a `frozen()` copy when others may append meanwhile)."""
        arrays = {"bucket": np.array([self.bucket])}
        for tier, rows in (("coarse", self.coarse), ("raw", _concat(self.raw))):
            if rows is None:
                continue
            arrays[f"{tier}/step"], arrays[f"{tier}/count"] = rows["step"], rows["count"]
            for g in ("mean", "min", "max"):
                arrays.update({f"{tier}/{g}/{k}": v for k, v in rows[g].items()})
        return arrays  # no copy needed: rows are replaced, never written in place

    def load_bytes(self, blob: bytes) -> None:
        with np.load(io.BytesIO(blob)) as z:
            self.load_arrays({k: z[k] for k in z.files})

    def load_arrays(self, arrays: dict) -> None:
        """Replace the contents with `arrays()` of another history."""
        self.clear()
        data = dict(arrays)
        self.bucket = int(data.pop("bucket")[0])
        for tier in ("coarse", "raw"):
            if f"{tier}/step" not in data:
                continue
            rows = {"step": data[f"{tier}/step"], "count": data[f"{tier}/count"],
                    "mean": {}, "min": {}, "max": {}}
            for key, v in data.items():
                parts = key.split("/")
                if parts[0] == tier and len(parts) == 3:
                    rows[parts[1]][parts[2]] = v
            if tier == "coarse":
                self.coarse = rows
            else:
                self.raw, self.raw_rows = [rows], len(rows["step"])
                self.row_bytes = max(1, _nbytes(rows) // max(1, self.raw_rows))


def select(parts: list[dict], since: int = 0, max_points: int | None = None) -> dict | None:
    """Rows of `History.parts()` with step >= since, merged down to at most max_points rows
    (concatenating and merging take a while: never under a lock that the event loop takes)."""
    rows = _concat(parts)
    if rows is None:
        return None
    sel = rows["step"] >= since
    rows = rows if sel.all() else _take(rows, sel)
    n = len(rows["step"])
    if n == 0:
        return None
    if max_points and n > max_points:
        per = math.ceil(n / max_points)
        rows = merge(rows, np.arange(0, n, per))
    return rows


def pack(arrays: dict) -> bytes:
    """`History.arrays()` -> compressed bytes (slow: never on the event loop or under a lock)."""
    buf = io.BytesIO()
    np.savez_compressed(buf, **arrays)
    return buf.getvalue()


def unpack(blob: bytes) -> dict:
    """`pack` inverted: {name: array}."""
    with np.load(io.BytesIO(blob)) as z:
        return {k: z[k] for k in z.files}


def jsonable(a: np.ndarray) -> list:
    """numpy array -> nested lists with NaN/Inf as None (browsers reject a bare NaN)."""
    a = np.asarray(a)
    if a.dtype.kind in "iub":
        return a.tolist()
    finite = np.isfinite(a)
    if finite.all():
        return a.astype(np.float64).tolist()
    obj = a.astype(object)
    obj[~finite] = None
    return obj.tolist()


def rows_to_wire(rows: dict | None, hist: bool = False) -> dict:
    """Rows -> the /history JSON body: step, count, each mean, and min/max dicts."""
    if rows is None:
        return {"step": [], "count": [], "min": {}, "max": {}}
    out = {"step": rows["step"].tolist(), "count": rows["count"].tolist()}
    out.update({k: jsonable(v) for k, v in rows["mean"].items() if hist or not is_hist(k)})
    out["min"] = {k: jsonable(v) for k, v in rows["min"].items()}
    out["max"] = {k: jsonable(v) for k, v in rows["max"].items()}
    return out


def rows_to_json(rows: dict | None, hist: bool = False, **head) -> bytes:
    """The /history body as JSON bytes (same content as rows_to_wire)."""
    if orjson is None or rows is None:
        return json.dumps({**head, **rows_to_wire(rows, hist)}, separators=(",", ":")).encode()
    body = {**head, "step": rows["step"], "count": rows["count"],
            **{k: v for k, v in rows["mean"].items() if hist or not is_hist(k)},
            "min": rows["min"], "max": rows["max"]}
    return orjson.dumps(body, option=orjson.OPT_SERIALIZE_NUMPY)
