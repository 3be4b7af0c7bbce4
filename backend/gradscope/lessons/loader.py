"""Lesson files -> validated `Lesson`s: the packaged ones plus any directory a lecturer adds.

One lesson per file, `*.json` or `*.toml`, the file's stem being the lesson's id. A bad
file fails loudly with its path and the field at fault, never a half-loaded catalogue.
"""
from __future__ import annotations

import json
import tomllib
from pathlib import Path

from pydantic import ValidationError

from .schema import Lesson

PACKAGED = Path(__file__).parent / "data"


class LessonError(ValueError):
    """A lesson file that cannot be used: which file and why."""


def _describe(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors():
        loc = ".".join(str(p) for p in err["loc"]) or "lesson"
        parts.append(f"{loc}: {err['msg']}")
    return "; ".join(parts)


def load_file(path: Path) -> Lesson:
    """Parse and validate one lesson file; raises LessonError naming the file."""
    try:
        text = path.read_text(encoding="utf-8")
        data = tomllib.loads(text) if path.suffix == ".toml" else json.loads(text)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, tomllib.TOMLDecodeError) as exc:
        raise LessonError(f"{path}: cannot read: {exc}") from None
    if not isinstance(data, dict):
        raise LessonError(f"{path}: a lesson file holds one object")
    data.setdefault("id", path.stem)
    try:
        lesson = Lesson.model_validate(data)
    except ValidationError as exc:
        raise LessonError(f"{path}: {_describe(exc)}") from None
    if lesson.id != path.stem:
        raise LessonError(f"{path}: id {lesson.id!r} differs from the file name {path.stem!r}")
    return lesson


def load_dir(directory: Path) -> list[Lesson]:
    d = Path(directory)
    if not d.is_dir():
        raise LessonError(f"{d}: not a directory of lesson files")
    return [load_file(p) for p in sorted(d.iterdir()) if p.suffix in (".json", ".toml") and p.is_file()]


def load_lessons(extra_dirs=()) -> dict[str, Lesson]:
    """Packaged lessons then each extra directory's, in order; an id seen twice is an error."""
    out: dict[str, Lesson] = {}
    for directory in (PACKAGED, *extra_dirs):
        for lesson in load_dir(directory):
            if lesson.id in out:
                raise LessonError(f"{directory}: lesson id {lesson.id!r} is already defined")
            out[lesson.id] = lesson
    return out
