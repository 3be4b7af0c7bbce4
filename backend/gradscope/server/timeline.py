"""A session's timeline: its events, its recorded history, the checkpoint ring `rewind` goes
back to, and the replay schedule of a fork from the start.

The worker thread writes it; request threads read `events` and `history` under `lock`.
It holds checkpoints as the trainer's snapshots and never touches the trainer itself.
"""
from __future__ import annotations

import threading
import time
from collections import deque

from .errors import ActionError
from .history import History

REPLAYED = ("change", "reset", "rewind")  # the events a fork from the start applies again, at their steps


class Timeline:
    """Events, history and checkpoints of one session (`stored`: the persisted checkpoints, as
    (step, blob), until the trainer is built and `load_stored` turns them into the ring)."""

    def __init__(self, events: list, *, history_bytes: int, ring_size: int, replay: list | None = None,
                 stored: list | None = None):
        self.lock = threading.Lock()         # guards history and events against readers
        self.events = list(events)
        self.history = History(history_bytes)
        self.ring: deque = deque(maxlen=ring_size)
        self.stored = list(stored or [])
        self.schedule = deque(e for e in (replay or []) if e["kind"] in REPLAYED)
        self.targets = {e["to_step"] for e in self.schedule if e["kind"] == "rewind"}
        self.replay_snaps: dict = {}

    # -- events and history ------------------------------------------------------------
    def add_event(self, step: int, kind: str, changes: dict | None, detail: str | None, **extra) -> dict:
        with self.lock:
            ev = {"seq": len(self.events), "step": step, "kind": kind, "changes": changes or {},
                  "detail": detail, "time": time.time(), **extra}
            self.events.append(ev)
        return ev

    def events_now(self) -> list:
        with self.lock:
            return list(self.events)

    def last_event(self, kinds: tuple[str, ...]) -> dict | None:
        return next((e for e in reversed(self.events) if e["kind"] in kinds), None)

    def parts(self):
        """The history's parts, taken under the lock (merging them can then happen outside it)."""
        with self.lock:
            return self.history.parts()

    def frozen(self):
        with self.lock:
            return self.history.frozen()

    # -- checkpoints (`rewind`) -----------------------------------------------------------
    def load_stored(self, load) -> int:
        """The persisted checkpoints into the ring (`load(blob)` -> snapshot), oldest first;
        returns the newest one's step (-1 without one)."""
        newest = -1
        for step, blob in self.stored:
            self.ring.append((step, load(blob)))
            newest = step
        self.stored = []
        return newest

    def keep(self, step: int, snap) -> None:
        self.ring.append((step, snap))

    def holds_from(self, step: int) -> bool:
        """Whether the newest checkpoint is at `step` or later."""
        return bool(self.ring) and self.ring[-1][0] >= step

    def newest(self):
        return self.ring[-1] if self.ring else None

    def rewind_to(self, limit: int) -> int | None:
        """The newest checkpoint's step before `limit` (in the ring, or before the trainer is
        built the stored ones); None where there is none."""
        found = sorted(step for step, _ in list(self.ring) + list(self.stored) if step < limit)
        return found[-1] if found else None

    def checkpoint_before(self, limit: int):
        """(step, snapshot) of the newest checkpoint before `limit`; 409 without one."""
        found = [(s, sn) for s, sn in self.ring if s < limit]
        if not found:
            raise ActionError("no earlier checkpoint to rewind to")
        return found[-1]

    def cut(self, to_step: int) -> None:
        """Forget everything past `to_step` (a rewind): later checkpoints and history rows."""
        while self.ring and self.ring[-1][0] > to_step:
            self.ring.pop()
        with self.lock:
            self.history.truncate(to_step)

    def forget(self) -> None:
        """A re-initialized run: no history, no checkpoints."""
        with self.lock:
            self.history.clear()
        self.ring.clear()

    # -- replay (a fork from the start) -----------------------------------------------------
    @property
    def replaying(self) -> bool:
        return bool(self.schedule)

    def due(self, step: int, kinds: tuple[str, ...] = REPLAYED) -> dict | None:
        """The next scheduled event of these kinds if it is due at `step`, taken off the schedule."""
        if self.schedule and self.schedule[0]["step"] <= step and self.schedule[0]["kind"] in kinds:
            return self.schedule.popleft()
        return None

    def stops(self, step: int) -> list[int]:
        """The steps past `step` a chunk must end on: the next scheduled event, rewind targets."""
        return ([self.schedule[0]["step"]] if self.schedule else []) + [t for t in self.targets if t > step]

    def scheduled_after(self, step: int) -> list[int]:
        return [e["step"] for e in self.schedule if e["step"] > step]

    def mark(self, step: int, snapshot) -> None:
        """At a rewind target of the replay: keep the trainer's state (`snapshot()`) to go back to."""
        if step in self.targets:
            self.replay_snaps[step] = snapshot()

    def replayed(self) -> None:
        """After a scheduled event: once the schedule is done, drop what the replay kept."""
        if not self.schedule:
            self.replay_snaps.clear()
            self.targets.clear()
