"""Lessons: the catalogue, a lesson's runs (A, and B in lockstep) and the verdict on them.

A lesson's runs are created paused at step 0 with the lesson's mid-run change scheduled as
an event, so it lands at exactly its step; they pause at the lesson's last step.
"""
from __future__ import annotations

import asyncio
import time

from fastapi import HTTPException

from gradscope.compare import changed_keys
from gradscope.config import MODEL_NAMES
from gradscope.families import family_of
from gradscope.lessons import Lesson, evaluate, load_lessons

from . import lockstep
from .dependencies import get_session
from .errors import ActionError
from .history import select
from .manager import SessionManager
from .sessions import Session


def catalogue(state) -> dict[str, Lesson]:
    """The lessons, loaded once per app (`state`: the app's): packaged ones and `settings.lessons_dirs`."""
    if getattr(state, "lessons", None) is None:
        state.lessons = load_lessons(state.settings.lessons_dirs)
    return state.lessons


def listing(lessons: dict[str, Lesson]) -> list[dict]:
    """Every lesson with its model (and the model's label), grouped in the models' menu order
    (the MLP's first), each group in the catalogue's order."""
    order = {name: k for k, name in enumerate(MODEL_NAMES)}
    rows = [{"id": x.id, "title": x.title, "claim": x.claim, "look": x.look, "steps": x.steps,
             "compare": x.vs is not None, "model": x.config().model, "model_label": MODEL_NAMES[x.config().model]}
            for x in lessons.values()]
    return sorted(rows, key=lambda r: order[r["model"]])


def public(lesson: Lesson) -> dict:
    """Everything but the answer and the verdict's checks: the student predicts first."""
    data = lesson.model_dump(exclude={"verdict"})
    data["question"] = {k: v for k, v in data["question"].items() if k != "answer"}
    data["config"] = lesson.config("a").model_dump()
    return data


async def start(manager: SessionManager, lesson: Lesson, *, paused: bool,
                client: str | None) -> dict[str, tuple[Session, str]]:
    """Create run A (and B, paired in lockstep); returns {run: (session, token)}."""
    ids = {run: manager.new_id() for run in (("a", "b") if lesson.vs is not None else ("a",))}
    for _ in ids:  # each run is a new session: the rate limit of create
        manager.admit(client)
    held = () if paused else manager.reserve(*ids.values())
    made: dict[str, tuple[Session, str]] = {}
    try:
        for run, sid in ids.items():
            s, token = made[run] = await asyncio.to_thread(manager.create, lesson.config("a"), paused=True,
                                                           client=client, replay=change_events(lesson), sid=sid)
            s.stop_at = lesson.steps
            if run == "b":
                await s.call(s.apply_changes, lesson.vs)
        runs = [s for s, _ in made.values()]
        if len(runs) == 2:
            lockstep.pair(*runs, live=manager.holds)
        if not paused:
            await lockstep.play(runs, f"lesson {lesson.id}")
    except ActionError:  # B refused (stored-session limit): no half of a lesson is left behind
        for s, _ in made.values():
            await manager.delete(s)
        raise
    finally:
        manager.release(*held)
    return made


def change_events(lesson: Lesson) -> list[dict]:
    """The lesson's mid-run change as a scheduled event: the session applies it at exactly that step."""
    if lesson.change is None:
        return []
    diff = changed_keys(lesson.config("a"), lesson.change.set)
    return [{"seq": 0, "step": lesson.change.at, "kind": "change", "changes": diff, "time": time.time(), "detail": None}]


async def verdict(manager: SessionManager, lesson: Lesson, a: str, b: str | None) -> dict:
    """The verdict over the runs' recorded histories (`ready` once every run reached the last step)."""
    if lesson.vs is not None and b is None:
        raise HTTPException(422, "this lesson compares two runs: give ?a=SESSION&b=SESSION")
    runs = {"a": a, **({"b": b} if lesson.vs is not None else {})}
    sessions = await asyncio.to_thread(lambda: {run: get_session(sid, manager) for run, sid in runs.items()})
    for run, s in sessions.items():
        want = lesson.config(run)
        sizes = lambda c: family_of(c.model).axis_sizes(c)
        if s.config.model != want.model or sizes(s.config) != sizes(want):  # its layer indices would not fit
            raise HTTPException(422, f"session {s.id} ({s.config.model}, {_axes(sizes(s.config))}) is not run {run} of lesson "
                                     f"{lesson.id} ({want.model}, {_axes(sizes(want))})")
    return await asyncio.to_thread(lambda: evaluate(lesson, {run: _means(s) for run, s in sessions.items()}))


def _axes(sizes: dict) -> str:
    return ", ".join(f"{n} {axis}" for axis, n in sizes.items())


def _means(s: Session) -> dict:
    """Thread: the whole history's means (merged outside the lock that `summary` takes)."""
    rows = select(s.timeline.parts())
    if rows is None:
        return {}
    return {"step": rows["step"], **rows["mean"]}
