"""The bounded history: every step up to a budget, then min/max/mean buckets; spikes survive."""
from __future__ import annotations

import json

import numpy as np

from gradscope.server import history as history_module
from gradscope.server.history import History, rows_to_json, rows_to_wire


def chunk(start, k, depth=2, spike_at=None):
    step = np.arange(start, start + k)
    loss = np.full(k, 1.0, np.float32)
    if spike_at is not None and start <= spike_at < start + k:
        loss[spike_at - start] = 1e6
    return {"step": step, "loss": loss, "nonfinite": np.zeros(k, np.int32),
            "grad_norm": np.ones((k, depth + 1), np.float32) * step[:, None],
            "hist": np.ones((k, depth + 1, 5), np.int32)}


def test_memory_bounded_and_spikes_survive():
    h = History(budget_bytes=200_000, bucket=4)
    for start in range(0, 100_000, 50):
        h.append(chunk(start, 50, spike_at=31_337))
    assert h.nbytes <= 200_000 * 1.1
    rows = h.rows()
    assert rows["count"].sum() == 100_000 and rows["step"][-1] == 99_999
    assert rows["max"]["loss"].max() == 1e6 and np.allclose(rows["min"]["loss"], 1.0)
    assert (np.diff(rows["step"]) > 0).all() and rows["count"][-1] == 1  # recent steps stay exact
    mean = (rows["mean"]["grad_norm"][:, 0] * rows["count"]).sum() / rows["count"].sum()
    assert np.isclose(mean, np.arange(100_000).mean(), rtol=1e-4)


def test_downsample_query_and_truncate():
    h = History()
    for start in range(0, 1000, 100):
        h.append(chunk(start, 100, spike_at=555))
    r = h.rows(since=500, max_points=10)
    assert len(r["step"]) == 10 and r["count"].sum() == 500 and r["max"]["loss"].max() == 1e6
    h.truncate(700)
    assert h.last_step == 699 and h.rows()["count"].sum() == 700
    h.truncate(0)
    assert h.rows() is None and rows_to_wire(None)["step"] == []


def test_bytes_roundtrip_and_nan_as_null():
    h = History(budget_bytes=50_000, bucket=2)
    for start in range(0, 5000, 25):
        h.append(chunk(start, 25))
    c = chunk(5000, 3)
    c["loss"][1] = np.nan
    h.append(c)
    h2 = History(budget_bytes=50_000)
    h2.load_bytes(h.to_bytes())
    assert rows_to_wire(h2.rows()) == rows_to_wire(h.rows())
    wire = rows_to_wire(h2.rows(since=5000))
    assert wire["loss"] == [1.0, None, 1.0] and wire["step"] == [5000, 5001, 5002]


def test_json_body_same_with_and_without_orjson(monkeypatch):
    h = History()
    c = chunk(0, 4)
    c["loss"][2] = np.inf
    h.append(c)
    fast = json.loads(rows_to_json(h.rows(), hist=True, session="x"))
    monkeypatch.setattr(history_module, "orjson", None)
    slow = json.loads(rows_to_json(h.rows(), hist=True, session="x"))
    assert fast == slow and fast["loss"][2] is None and fast["session"] == "x"


def test_sparse_stats_merge_over_finite_values_and_every_hist_skips_minmax():
    """val_loss measured on every 4th step only: a bucket's mean is the numpy nanmean of its
    steps; z_hist/h_hist (integer histograms) are kept as means only, like hist."""
    k, depth, bins = 64, 2, 5
    rng = np.random.default_rng(0)
    val = np.full(k, np.nan, np.float32)
    val[::4] = rng.uniform(0.5, 1.5, k // 4)
    stats = {**chunk(0, k, depth), "val_loss": val,
             "z_hist": rng.integers(0, 9, (k, depth, bins)).astype(np.int32),
             "h_hist": rng.integers(0, 9, (k, depth, bins)).astype(np.int32)}
    h = History()
    h.append(stats)
    rows = h.rows(max_points=8)                                  # buckets of 8 steps
    expect = np.nanmean(val.reshape(8, 8), axis=1)
    assert np.allclose(rows["mean"]["val_loss"], expect)
    assert np.allclose(rows["max"]["val_loss"], np.nanmax(val.reshape(8, 8), axis=1))
    assert np.allclose(rows["mean"]["z_hist"], stats["z_hist"].reshape(8, 8, depth, bins).mean(1))
    assert not {"z_hist", "h_hist", "hist"} & set(rows["min"])
    wire = rows_to_wire(rows)
    assert "z_hist" not in wire and "h_hist" not in wire and "z_hist" in rows_to_wire(rows, hist=True)
    only_nan = History()
    only_nan.append({**chunk(0, 8, depth), "val_loss": np.full(8, np.nan, np.float32)})
    assert np.isnan(only_nan.rows(max_points=1)["mean"]["val_loss"]).all()  # not measured: NaN, no warning


def test_a_frozen_copy_and_parts_ignore_later_appends_compaction_and_truncation():
    """What a reader takes under the session's lock (`frozen()`, `parts()`) and reads outside
    it stays the history of that moment while the worker appends, compacts and truncates."""
    from gradscope.server.history import select

    h = History(budget_bytes=60_000, bucket=4)
    for start in range(0, 2000, 50):
        h.append(chunk(start, 50))
    frozen, parts = h.frozen(), h.parts()
    expect = {k: v.copy() for k, v in h.arrays().items()}
    for start in range(2000, 8000, 50):  # enough to compact the raw tier again
        h.append(chunk(start, 50, spike_at=7000))
    h.truncate(3000)
    got = frozen.arrays()
    assert got.keys() == expect.keys() and all(np.array_equal(got[k], expect[k]) for k in expect)
    rows = select(parts)
    assert rows["step"][-1] == 1999 and rows["count"].sum() == 2000 and rows["max"]["loss"].max() == 1.0
    assert h.last_step < 3000 and h.rows()["count"].sum() == h.last_step + 1  # whole buckets go
