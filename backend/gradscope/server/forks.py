"""Forks: a new session from another's current state or from its start (replaying its timeline).

Used by the sessions router (`fork`) and by compare runs (B starts as a fork of A).
"""
from __future__ import annotations

import asyncio
import time

from gradscope.config import load_config

from .errors import ActionError
from .manager import SessionManager
from .sessions import Session


def fork_event(events: list, step: int, source: str, start: str) -> dict:
    """The event a fork's timeline gets first: where it came from."""
    return {"seq": len(events), "step": step, "kind": "fork", "changes": {}, "time": time.time(),
            "detail": f"forked from {source} ({start})", "source": source, "start": start}


async def fork(manager: SessionManager, s: Session, source: str, *, paused: bool, client: str | None):
    """A new session owned by `client` from `s` ("current" or "start"); its running place is held
    from now until it runs. Returns (session, token)."""
    if not s.trains_here:
        raise ActionError("an attached run's weights live in its script, so it cannot be forked here; "
                          "export its history instead", field="session", status=409)
    manager.admit(client)
    sid = manager.new_id()
    held = () if paused else manager.reserve(sid)
    try:
        if source == "start":
            return await fork_start(manager, s, paused=paused, client=client, sid=sid)
        return await fork_current(manager, s, paused=paused, client=client, sid=sid)
    finally:
        manager.release(*held)


async def fork_start(manager: SessionManager, s: Session, *, paused: bool, client: str | None, sid: str):
    """A new session that replays `s`'s timeline from its first config. Returns (session, token)."""
    with s.lock:
        events = list(s.events)
    return await asyncio.to_thread(manager.create, s.config0, paused=paused, parent=s.id, replay=events,
                                   events=[fork_event([], 0, s.id, "start")], client=client, sid=sid)


async def fork_current(manager: SessionManager, s: Session, *, paused: bool, client: str | None, sid: str):
    """A new session from `s` as it is now (weights, optimizer state, history, step); the
    snapshot on its worker, the store in a thread. Returns (session, token)."""
    st = await s.call(s.fork_state)
    events = st["events"] + [fork_event(st["events"], st["step"], s.id, "current")]
    return await asyncio.to_thread(
        manager.create, load_config(st["config"]), paused=paused, parent=s.id, config0=s.config0,
        step=st["step"], events=events, weights=st["weights"], history=st["history"], client=client, sid=sid)
