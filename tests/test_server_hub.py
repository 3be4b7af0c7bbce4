"""Per-client queues: stats chunks coalesce into one message, and a slow client's queue stays bounded."""
from __future__ import annotations

import asyncio
import json

import numpy as np

from gradscope.server import hub as hub_module
from gradscope.server.hub import Frame, Hub, encode_stats


def frame(start, k):
    return Frame({"step": np.arange(start, start + k), "loss": np.ones(k, np.float32),
                  "grad_norm": np.tile(np.array([1.0, 2.0], np.float32), (k, 1))})


def test_encoding_nulls_non_finite_with_and_without_orjson(monkeypatch):
    stats = {"step": np.arange(3), "loss": np.array([0.5, np.nan, np.inf], np.float32),
             "hist": np.zeros((3, 2, 4), np.int32), "nonfinite": np.array([0, 1, 1], np.int32)}
    want = {"type": "stats", "t": None, "step": [0, 1, 2], "loss": [0.5, None, None],
            "hist": [[[0] * 4] * 2] * 3, "nonfinite": [0, 1, 1]}
    assert json.loads(encode_stats(stats)) == want
    assert json.loads(encode_stats(stats, 1.5))["t"] == 1.5
    monkeypatch.setattr(hub_module, "orjson", None)
    assert json.loads(encode_stats(stats)) == want
    assert json.loads(encode_stats(stats, 1.5))["t"] == 1.5


def test_chunks_coalesce_in_order_with_messages():
    async def main():
        hub = Hub(max_steps=1000, max_items=10)
        sub = hub.subscribe()
        hub.publish(frame(0, 4))
        hub.publish(frame(4, 4))
        hub.publish({"type": "ack", "id": 1, "step": 8})
        hub.publish(frame(8, 4))
        return await sub.next_texts()

    texts, had_stats = asyncio.run(main())
    msgs = [json.loads(t) for t in texts]
    assert had_stats and [m["type"] for m in msgs] == ["stats", "ack", "stats"]
    assert msgs[0]["step"] == list(range(8)) and len(msgs[0]["grad_norm"]) == 8
    assert msgs[2]["step"] == [8, 9, 10, 11]


def test_slow_client_queue_is_bounded_and_keeps_the_latest():
    async def main():
        hub = Hub(max_steps=100, max_items=5)
        slow, other = hub.subscribe(), hub.subscribe()
        for i in range(10_000):
            hub.publish(frame(i * 10, 10))
            if i % 100 == 0:
                hub.publish({"type": "event", "i": i})
            if i % 1000 == 0:
                await other.next_texts()  # one client keeps up, the other never reads
        assert slow.pending_steps <= 100 and len(slow.items) <= 5
        texts, _ = await slow.next_texts()
        return [json.loads(t) for t in texts]

    msgs = asyncio.run(main())
    stats = [m for m in msgs if m["type"] == "stats"]
    assert stats[-1]["step"][-1] == 99_999
