"""Compare runs: B from A's very state with some changes, the pair run in lockstep.

A compare pair trains in lockstep (lockstep.py): neither run is ever more than one chunk
ahead of the other, so step N of A and of B are comparable. Only A's owner pairs A with B
(pausing A first); anyone else's B is a fork that runs alone.
"""
from __future__ import annotations

import asyncio

from fastapi import HTTPException

from gradscope.compare import changed_keys

from . import lockstep
from .dependencies import get_session
from .forks import fork_current
from .manager import SessionManager
from .sessions import Session


def owns(manager: SessionManager, s: Session, token: str | None) -> bool:
    return bool(token) and manager.is_owner(s, token)


async def start(manager: SessionManager, s: Session, changes: dict, *, paused: bool, owner: bool,
                client: str | None) -> tuple[Session, str]:
    """Run B from `s`'s very state with `changes`; `owner`: pause A first and pair them. Returns (B, token)."""
    if changes:
        changed_keys(s.config, changes)  # validate before anything is created (422 names the key)
    manager.admit(client)  # B is a new session: the rate and stored-session limits of create
    bid = manager.new_id()
    # the places of the runs that will play, held from before A pauses until both run again
    held = () if paused else manager.reserve(*((s.id, bid) if owner else (bid,)))
    try:
        if owner:
            await s.call(s.set_running, False, "paused to compare")
        b, token = await fork_current(manager, s, paused=True, client=client, sid=bid)
        if changes:
            await b.call(b.apply_changes, changes)
        if owner:
            lockstep.pair(s, b, live=manager.holds)
        if not paused:  # the owner's pair plays in lockstep; anyone else's B plays alone
            await lockstep.play((s, b) if owner else (b,), "compare")
    finally:
        manager.release(*held)
    return b, token


async def both(manager: SessionManager, a: str, b: str) -> tuple[Session, Session]:
    """Both sessions (404 if either is unknown), loaded from SQLite in a thread if need be."""
    return await asyncio.to_thread(lambda: (get_session(a, manager), get_session(b, manager)))


async def control(manager: SessionManager, a: str, b: str, action: str, token_a: str | None,
                  token_b: str | None) -> dict:
    """The owner of both plays, pauses or steps them in lockstep; returns each one's step and status."""
    sa, sb = await both(manager, a, b)
    if sa is sb:
        raise HTTPException(422, "a and b must be two different sessions")
    if not owns(manager, sa, token_a) or not owns(manager, sb, token_b):
        raise HTTPException(403, "both owner tokens required: 'Authorization: Bearer TOKEN_A' and 'X-Token-B: TOKEN_B'")
    lockstep.pair(sa, sb, live=manager.holds)
    await lockstep.control(manager, (sa, sb), action)
    return {"a": {"step": sa.step, "status": sa.status}, "b": {"step": sb.step, "status": sb.status}}
