"""Per-session fan-out to WebSocket clients: one bounded, coalescing queue per subscriber.

The worker thread hands each chunk to the event loop once (`Hub.publish` via
`call_soon_threadsafe`); every subscriber appends it to its own queue, where consecutive
stats chunks merge into one message. A slow client's queue is trimmed from the oldest
stats, so it can never hold training or the other clients back.
"""
from __future__ import annotations

import asyncio
import itertools
import json
import time
from collections import deque

import numpy as np

try:  # optional: serializes numpy directly, NaN/Inf as null, ~50x faster than json + lists
    import orjson
except ImportError:  # pragma: no cover - the plain path below is the reference
    orjson = None


def encode_stats(stats: dict, at: float | None = None) -> str:
    """A `stats` message from columnar numpy arrays; non-finite numbers become null. `at`: when
    its last row was measured (time.time() where it trained), sent as `t` for a client to tell
    a frame's age (a benchmark's step-to-page latency); null where unknown."""
    if orjson is not None:
        body = {k: np.ascontiguousarray(v) for k, v in stats.items()}
        return orjson.dumps({"type": "stats", "t": at, **body}, option=orjson.OPT_SERIALIZE_NUMPY).decode()
    from gradscope.records import to_wire

    return json.dumps({"type": "stats", "t": at, **to_wire(stats)}, separators=(",", ":"))


class Frame:
    """One stats chunk (numpy, leading axis = steps), encoded at most once for all clients."""

    __slots__ = ("stats", "at", "steps", "seq", "_text")
    _seq = itertools.count()

    def __init__(self, stats: dict, at: float | None = None):
        self.stats, self.at = stats, at
        self.steps = len(stats["step"])
        self.seq = next(Frame._seq)
        self._text: str | None = None

    @property
    def text(self) -> str:
        if self._text is None:
            self._text = encode_stats(self.stats, self.at)
        return self._text

    @staticmethod
    def merged_text(frames: list[Frame], cache: dict | None = None) -> str:
        """One message for a run of chunks; clients in step share the encoding via `cache`."""
        if len(frames) == 1:
            return frames[0].text
        key = (frames[0].seq, frames[-1].seq, len(frames))
        if cache is not None and key in cache:
            return cache[key]
        keys = [k for k in frames[0].stats if all(k in f.stats for f in frames)]
        text = encode_stats({k: np.concatenate([f.stats[k] for f in frames]) for k in keys}, frames[-1].at)
        if cache is not None:
            if len(cache) > 64:
                cache.clear()
            cache[key] = text
        return text


class Subscriber:
    """A client's queue: dict messages in order, runs of stats frames merged into one."""

    def __init__(self, max_steps: int = 4096, max_items: int = 256, cache: dict | None = None):
        self.items: deque = deque()      # dict (a message) or list[Frame] (a stats run)
        self.cache = cache
        self.wake = asyncio.Event()
        self.max_steps, self.max_items = max_steps, max_items
        self.pending_steps = 0
        self.dropped_steps = 0
        self.closed = False              # set by Hub.close: send what is queued, then hang up

    def put(self, msg: dict) -> None:
        self.items.append(msg)
        while len(self.items) > self.max_items:
            self._drop_oldest()
        self.wake.set()

    def put_frame(self, frame: Frame) -> None:
        if self.items and isinstance(self.items[-1], list):
            self.items[-1].append(frame)
        else:
            self.items.append([frame])
            while len(self.items) > self.max_items:
                self._drop_oldest()
        self.pending_steps += frame.steps
        while self.pending_steps > self.max_steps and self._drop_oldest_frame():
            pass
        self.wake.set()

    def _drop_oldest_frame(self) -> bool:
        """Drop the oldest stats chunk queued, never the newest one."""
        for item in self.items:
            if not isinstance(item, list):
                continue
            if item is self.items[-1] and len(item) == 1:
                return False
            f = item.pop(0)
            self.pending_steps -= f.steps
            self.dropped_steps += f.steps
            if not item:
                self.items.remove(item)
            return True
        return False

    def _drop_oldest(self) -> None:
        item = self.items.popleft()
        if isinstance(item, list):
            n = sum(f.steps for f in item)
            self.pending_steps -= n
            self.dropped_steps += n

    async def next_texts(self) -> tuple[list[str], bool]:
        """Wait for something to send; return (JSON texts in order, whether stats were among them)."""
        await self.wake.wait()
        self.wake.clear()
        texts, had_stats = [], False
        while self.items:
            item = self.items.popleft()
            if isinstance(item, list):
                self.pending_steps -= sum(f.steps for f in item)
                texts.append(Frame.merged_text(item, self.cache))
                had_stats = True
            else:
                texts.append(json.dumps(item, separators=(",", ":")))
        return texts, had_stats


class Hub:
    """The subscribers of one session; touched only on the event loop."""

    def __init__(self, max_steps: int = 4096, max_items: int = 256):
        self.subscribers: set[Subscriber] = set()
        self.max_steps, self.max_items = max_steps, max_items
        self.last_seen = time.monotonic()    # last moment somebody was watching
        self.cache: dict = {}                 # merged stats texts shared by clients in step
        self.final: dict | None = None        # the last message, once the session is deleted

    def subscribe(self) -> Subscriber:
        """A new subscriber; one that comes after `close` gets the final message and hangs up."""
        sub = Subscriber(self.max_steps, self.max_items, self.cache)
        if self.final is not None:
            sub.closed = True
            sub.put(self.final)
            return sub
        self.subscribers.add(sub)
        self.last_seen = time.monotonic()
        return sub

    def unsubscribe(self, sub: Subscriber) -> None:
        self.subscribers.discard(sub)
        self.last_seen = time.monotonic()

    @property
    def count(self) -> int:
        return len(self.subscribers)

    def idle_for(self) -> float:
        return 0.0 if self.subscribers else time.monotonic() - self.last_seen

    def close(self, msg: dict) -> None:
        """Last message to every subscriber; their senders end after it (session deleted)."""
        self.final = msg
        for sub in self.subscribers:
            sub.closed = True
            sub.put(msg)

    def publish(self, msg) -> None:
        """A dict message or a Frame, to every subscriber."""
        for sub in self.subscribers:
            if isinstance(msg, Frame):
                sub.put_frame(msg)
            else:
                sub.put(msg)
