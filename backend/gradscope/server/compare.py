"""Compare two sessions in lockstep, and the lessons: routes, the pair gate, the lesson runs.

Pages: `/compare/{a}/{b}` (both runs, viewer of each unless this browser holds its token)
and `/lessons/{id}` (a lesson's shareable link). A compare pair runs in lockstep: a session
may train its next chunk only while its partner, if running, has reached its step, so
neither is ever more than one chunk ahead and step N of A and of B are comparable.
"""
from __future__ import annotations

import asyncio
import threading
import time
from typing import Literal

from fastapi import APIRouter, Depends, Header, HTTPException, Query, Request
from pydantic import BaseModel, ConfigDict, Field

from gradscope.compare import changed_keys
from gradscope.lessons import Lesson, evaluate, load_lessons

from .dependencies import bearer_token, client_of, get_manager, get_session, index_page
from .history import select
from .manager import SessionManager
from .routes import fork_current
from .sessions import ActionError, Session

router = APIRouter()
WAIT_S = 0.05  # a held-back worker re-checks its commands this often (woken sooner by its partner)


class Lockstep:
    """The gate of a compare pair, installed on both sessions (called on their worker threads)."""

    def __init__(self, a: Session, b: Session):
        self.a, self.b = a, b
        self.cond = threading.Condition()

    def __call__(self, s: Session) -> bool:
        other = self.b if s is self.a else self.a
        with self.cond:
            self.cond.notify_all()  # the partner may be waiting for this one's progress
            if not _running(other) or other.step >= s.step:
                return True
            self.cond.wait(WAIT_S)
            return False


def _running(s: Session) -> bool:
    return s.status == "running" and s.manager.sessions.get(s.id) is s


def pair(a: Session, b: Session) -> Lockstep:
    gate = Lockstep(a, b)
    a.gate = b.gate = gate
    return gate


# -- request bodies ----------------------------------------------------------------------
class CompareRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    changes: dict = Field(default_factory=dict)
    paused: bool = True


class PairControl(BaseModel):
    model_config = ConfigDict(extra="forbid")
    action: Literal["play", "pause", "step"]


class LessonStart(BaseModel):
    model_config = ConfigDict(extra="forbid")
    paused: bool = False


def _owns(manager: SessionManager, s: Session, token: str | None) -> bool:
    return bool(token) and manager.is_owner(s, token)


# -- compare -----------------------------------------------------------------------------
@router.post("/api/sessions/{sid}/compare", status_code=201)
async def start_compare(request: Request, body: CompareRequest | None = None, s: Session = Depends(get_session),
                        manager: SessionManager = Depends(get_manager), authorization: str | None = Header(None)) -> dict:
    """Run B from this session's very state with `changes`; its owner's token pauses A first and pairs them."""
    body = body or CompareRequest()
    if body.changes:
        changed_keys(s.config, body.changes)  # validate before anything is created (422 names the key)
    client = client_of(request)
    manager.admit(client)  # B is a new session: the rate and stored-session limits of create
    owner = _owns(manager, s, bearer_token(authorization))
    bid = manager.new_id()
    # the places of the runs that will play, held from before A pauses until both run again
    held = () if body.paused else manager.reserve(*((s.id, bid) if owner else (bid,)))
    try:
        if owner:
            await s.call(s.set_running, False, "paused to compare")
        b, token = await fork_current(manager, s, paused=True, client=client, sid=bid)
        if body.changes:
            await b.call(b.apply_changes, body.changes)
        if owner:
            pair(s, b)
        if not body.paused:  # the owner's pair plays in lockstep; anyone else's B plays alone
            await asyncio.gather(*(x.call(x.set_running, True, "compare") for x in ((s, b) if owner else (b,))))
    finally:
        manager.release(*held)
    return {"a": s.summary(), "b": b.summary(), "token": token, "paired": owner,
            "url": str(request.url_for("compare_page", a=s.id, b=b.id))}


async def _two(manager: SessionManager, a: str, b: str) -> tuple[Session, Session]:
    """Both sessions (404 if either is unknown), loaded from SQLite in a thread if need be."""
    return await asyncio.to_thread(lambda: (get_session(a, manager), get_session(b, manager)))


@router.get("/api/compare/{a}/{b}")
async def read_compare(a: str, b: str, manager: SessionManager = Depends(get_manager)) -> dict:
    """Both sessions' summaries (for anyone with the link)."""
    sa, sb = await _two(manager, a, b)
    return {"a": sa.summary(), "b": sb.summary()}


@router.post("/api/compare/{a}/{b}/control")
async def pair_control(a: str, b: str, body: PairControl, manager: SessionManager = Depends(get_manager),
                       authorization: str | None = Header(None), x_token_b: str | None = Header(None)) -> dict:
    """Owner of both (A's token as Bearer, B's in X-Token-B): play, pause or step both in lockstep."""
    sa, sb = await _two(manager, a, b)
    if sa is sb:
        raise HTTPException(422, "a and b must be two different sessions")
    if not _owns(manager, sa, bearer_token(authorization)) or not _owns(manager, sb, x_token_b):
        raise HTTPException(403, "both owner tokens required: 'Authorization: Bearer TOKEN_A' and 'X-Token-B: TOKEN_B'")
    pair(sa, sb)
    if body.action == "play":
        held = manager.reserve(sa.id, sb.id)
        try:
            await asyncio.gather(sa.call(sa.set_running, True, "lockstep play"), sb.call(sb.set_running, True, "lockstep play"))
        finally:
            manager.release(*held)
    else:
        await asyncio.gather(sa.call(sa.set_running, False, "lockstep pause"), sb.call(sb.set_running, False, "lockstep pause"))
        await _level(sa, sb)
        if body.action == "step":
            await asyncio.gather(sa.call(sa.single_step), sb.call(sb.single_step))
    return {"a": {"step": sa.step, "status": sa.status}, "b": {"step": sb.step, "status": sb.status}}


async def _level(sa: Session, sb: Session) -> None:
    """Bring the run that is behind (at most a chunk, in lockstep) to the other's step."""
    lag, lead = (sa, sb) if sa.step < sb.step else (sb, sa)
    n = lead.step - lag.step
    if n > 0:
        await lag.call(lag.advance, n)


@router.get("/compare/{a}/{b}", include_in_schema=False, name="compare_page")
async def compare_page(request: Request, a: str, b: str):
    return index_page(request)


# -- lessons -----------------------------------------------------------------------------
def get_lessons(request: Request) -> dict[str, Lesson]:
    """The catalogue, loaded once per app: packaged lessons and `settings.lessons_dirs`."""
    state = request.app.state
    if getattr(state, "lessons", None) is None:
        state.lessons = load_lessons(state.settings.lessons_dirs)
    return state.lessons


def get_lesson(lid: str, lessons: dict = Depends(get_lessons)) -> Lesson:
    if lid not in lessons:
        raise HTTPException(404, f"no lesson {lid[:64]!r}; see /api/lessons")
    return lessons[lid]


def _public(lesson: Lesson) -> dict:
    """Everything but the answer and the verdict's checks: the student predicts first."""
    data = lesson.model_dump(exclude={"verdict"})
    data["question"] = {k: v for k, v in data["question"].items() if k != "answer"}
    data["config"] = lesson.config("a").model_dump()
    return data


@router.get("/api/lessons")
async def list_lessons(lessons: dict = Depends(get_lessons)) -> list[dict]:
    """Every lesson: id, title, claim, chart to look at, steps, whether it runs a B."""
    return [{"id": x.id, "title": x.title, "claim": x.claim, "look": x.look, "steps": x.steps,
             "compare": x.vs is not None} for x in lessons.values()]


@router.get("/api/lessons/{lid}")
async def read_lesson(lesson: Lesson = Depends(get_lesson)) -> dict:
    """The lesson (setup, question without its answer, what to look at)."""
    return _public(lesson)


@router.post("/api/lessons/{lid}/start", status_code=201)
async def start_lesson(request: Request, body: LessonStart | None = None, lesson: Lesson = Depends(get_lesson),
                       manager: SessionManager = Depends(get_manager)) -> dict:
    """Create the lesson's run A (and B, paired in lockstep); they pause at the lesson's last step."""
    body = body or LessonStart()
    client = client_of(request)
    ids = {run: manager.new_id() for run in (("a", "b") if lesson.vs is not None else ("a",))}
    for _ in ids:  # each run is a new session: the rate limit of create
        manager.admit(client)
    held = () if body.paused else manager.reserve(*ids.values())
    made: dict[str, tuple[Session, str]] = {}
    try:
        for run, sid in ids.items():
            made[run] = await asyncio.to_thread(manager.create, lesson.config("a"), paused=True, client=client,
                                                replay=_change_events(lesson), sid=sid)
            made[run][0].stop_at = lesson.steps
            if run == "b":
                await made[run][0].call(made[run][0].apply_changes, lesson.vs)
        if "b" in made:
            pair(made["a"][0], made["b"][0])
        if not body.paused:
            await asyncio.gather(*(s.call(s.set_running, True, f"lesson {lesson.id}") for s, _ in made.values()))
    except ActionError:  # B refused (stored-session limit): no half of a lesson is left behind
        for s, _ in made.values():
            await manager.delete(s)
        raise
    finally:
        manager.release(*held)
    out = {run: {**s.summary(), "token": token} for run, (s, token) in made.items()}
    sids = list(ids.values())
    url = request.url_for("compare_page", a=sids[0], b=sids[1]) if len(sids) == 2 else request.url_for("session_page", sid=sids[0])
    return {"lesson": lesson.id, **out, "url": str(url)}


def _change_events(lesson: Lesson) -> list[dict]:
    """The lesson's mid-run change as a scheduled event: the session applies it at exactly that step."""
    if lesson.change is None:
        return []
    config = lesson.config("a")
    diff = changed_keys(config, lesson.change.set)
    return [{"seq": 0, "step": lesson.change.at, "kind": "change", "changes": diff, "time": time.time(), "detail": None}]


@router.get("/api/lessons/{lid}/verdict")
async def lesson_verdict(lesson: Lesson = Depends(get_lesson), a: str = Query(..., max_length=64),
                         b: str | None = Query(None, max_length=64), manager: SessionManager = Depends(get_manager)) -> dict:
    """The verdict over sessions' recorded histories (`ready` once every run reached the last step)."""
    if lesson.vs is not None and b is None:
        raise HTTPException(422, "this lesson compares two runs: give ?a=SESSION&b=SESSION")
    runs = {"a": a, **({"b": b} if lesson.vs is not None else {})}
    sessions = await asyncio.to_thread(lambda: {run: get_session(sid, manager) for run, sid in runs.items()})
    for run, s in sessions.items():
        if s.config.depth != lesson.config(run).depth:  # its layer indices would not fit
            raise HTTPException(422, f"session {s.id} (depth {s.config.depth}) is not run {run} of lesson {lesson.id}")
    return await asyncio.to_thread(lambda: evaluate(lesson, {run: _history(s) for run, s in sessions.items()}))


def _history(s: Session) -> dict:
    """Thread: the whole history's means (merged outside the lock that `summary` takes)."""
    with s.lock:
        parts = s.history.parts()
    rows = select(parts)
    if rows is None:
        return {}
    return {"step": rows["step"], **rows["mean"]}


@router.get("/lessons/{lid}", include_in_schema=False, name="lesson_page")
async def lesson_page(request: Request, lid: str):
    return index_page(request)

