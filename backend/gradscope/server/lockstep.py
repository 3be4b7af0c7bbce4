"""Runs trained in lockstep (a compare pair, a lesson's A and B): one implementation for all.

A run may train its next chunk only while every running partner has reached its step, so
none is ever more than one chunk ahead and step N of each is comparable. The gate is
installed on every run and called on their worker threads; the coroutines below play,
pause, level and step the runs together from the event loop.
"""
from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .sessions import Session

WAIT_S = 0.05  # a held-back worker re-checks its commands this often (woken sooner by its partner)


class Lockstep:
    """The gate of runs in lockstep. `live(s)`: whether `s` is still the session its owner
    holds (a deleted or unloaded partner holds nobody back)."""

    def __init__(self, runs, live: Callable[[Session], bool]):
        self.runs, self.live = tuple(runs), live
        self.cond = threading.Condition()

    def __call__(self, s: Session) -> bool:
        """Worker of `s`: may it train its next chunk now? (If not, it waits a moment first.)"""
        with self.cond:
            self.cond.notify_all()  # a partner may be waiting for this one's progress
            if all(not self._running(o) or o.step >= s.step for o in self.runs if o is not s):
                return True
            self.cond.wait(WAIT_S)
            return False

    def _running(self, s: Session) -> bool:
        return s.status == "running" and self.live(s)


def pair(*runs: Session, live: Callable[[Session], bool]) -> Lockstep:
    """Put the runs in lockstep (replacing any gate they had); returns the gate."""
    gate = Lockstep(runs, live)
    for s in runs:
        s.gate = gate
    return gate


async def play(runs, detail: str) -> None:
    await asyncio.gather(*(s.call(s.set_running, True, detail) for s in runs))


async def pause(runs, detail: str) -> None:
    await asyncio.gather(*(s.call(s.set_running, False, detail) for s in runs))


async def level(runs) -> None:
    """Bring the runs that are behind (at most a chunk, in lockstep) to the leader's step."""
    top = max(s.step for s in runs)
    await asyncio.gather(*(s.call(s.advance, top - s.step) for s in runs if s.step < top))


async def step(runs) -> None:
    """One step of each (paused and level first)."""
    await asyncio.gather(*(s.call(s.single_step) for s in runs))


async def control(manager, runs, action: str, detail: str = "lockstep") -> None:
    """play | pause | step the runs together (play: their running places held while they start)."""
    if action == "play":
        held = manager.reserve(*(s.id for s in runs))
        try:
            await play(runs, f"{detail} play")
        finally:
            manager.release(*held)
        return
    await pause(runs, f"{detail} pause")
    await level(runs)
    if action == "step":
        await step(runs)
