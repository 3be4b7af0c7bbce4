"""A lesson run headless: the same runs, change and step count the page drives live."""
from __future__ import annotations

import numpy as np

from gradscope.compare import branch, run_lockstep
from gradscope.engine import CompileCache, Trainer

from .schema import Lesson


def run_lesson(lesson: Lesson, cache: CompileCache | None = None, chunk_steps: int | None = None) -> dict:
    """Train the lesson's run A (and B from A's very state, for lessons with `vs`).

    Returns {"a": history, "b": history}: columnar numpy stats with a leading (steps,) axis.
    """
    a = Trainer(lesson.config("a"), chunk_steps=chunk_steps, cache=cache)
    trainers = {"a": a}
    if lesson.vs is not None:
        trainers["b"] = branch(a, lesson.vs, cache=cache, chunk_steps=chunk_steps)[0]
    change = (lesson.change.at, lesson.change.set) if lesson.change is not None else None
    parts: dict = {name: [] for name in trainers}
    for name, stats in run_lockstep(trainers, lesson.steps, change):
        parts[name].append(stats)
    return {name: {k: np.concatenate([p[k] for p in ps]) for k in ps[0]} for name, ps in parts.items()}

