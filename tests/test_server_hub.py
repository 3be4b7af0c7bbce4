"""Per-client queues: stats chunks coalesce into one message, and a slow client's queue stays bounded."""
from __future__ import annotations

import asyncio
import json

from gradscope.server.hub import Frame, Hub


def frame(start, k):
    return Frame({"step": list(range(start, start + k)), "loss": [1.0] * k, "grad_norm": [[1.0, 2.0]] * k})


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
