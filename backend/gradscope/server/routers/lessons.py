"""Lessons: the catalogue, one lesson (without its answer), starting its runs, the verdict."""
from __future__ import annotations

from fastapi import APIRouter, Depends, HTTPException, Query, Request
from pydantic import BaseModel, ConfigDict

from gradscope.lessons import Lesson

from .. import lessons
from ..dependencies import client_of, get_manager
from ..manager import SessionManager

router = APIRouter(prefix="/api")


class LessonStart(BaseModel):
    model_config = ConfigDict(extra="forbid")
    paused: bool = False


def get_lessons(request: Request) -> dict[str, Lesson]:
    """The catalogue, loaded once per app: packaged lessons and `settings.lessons_dirs`."""
    return lessons.catalogue(request.app.state)


def get_lesson(lid: str, catalogue: dict = Depends(get_lessons)) -> Lesson:
    """The lesson `lid`; 404 when there is none."""
    if lid not in catalogue:
        raise HTTPException(404, f"no lesson {lid[:64]!r}; see /api/lessons")
    return catalogue[lid]


@router.get("/lessons")
async def list_lessons(catalogue: dict = Depends(get_lessons)) -> list[dict]:
    """Every lesson: id, title, claim, chart to look at, steps, whether it runs a B."""
    return lessons.listing(catalogue)


@router.get("/lessons/{lid}")
async def read_lesson(lesson: Lesson = Depends(get_lesson)) -> dict:
    """The lesson (setup, question without its answer, what to look at)."""
    return lessons.public(lesson)


@router.post("/lessons/{lid}/start", status_code=201)
async def start_lesson(request: Request, body: LessonStart | None = None, lesson: Lesson = Depends(get_lesson),
                       manager: SessionManager = Depends(get_manager)) -> dict:
    """Create the lesson's run A (and B, paired in lockstep); they pause at the lesson's last step."""
    body = body or LessonStart()
    made = await lessons.start(manager, lesson, paused=body.paused, client=client_of(request))
    out = {run: {**s.summary(), "token": token} for run, (s, token) in made.items()}
    sids = [s.id for s, _ in made.values()]
    url = request.url_for("compare_page", a=sids[0], b=sids[1]) if len(sids) == 2 else request.url_for("session_page", sid=sids[0])
    return {"lesson": lesson.id, **out, "url": str(url)}


@router.get("/lessons/{lid}/verdict")
async def lesson_verdict(lesson: Lesson = Depends(get_lesson), a: str = Query(..., max_length=64),
                         b: str | None = Query(None, max_length=64), manager: SessionManager = Depends(get_manager)) -> dict:
    """The verdict over sessions' recorded histories (`ready` once every run reached the last step)."""
    return await lessons.verdict(manager, lesson, a, b)
