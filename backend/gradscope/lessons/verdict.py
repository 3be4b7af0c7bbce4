"""The one verdict evaluator: a lesson's checks over run histories -> numbers and sentences.

The server evaluates it over a session's recorded history (GET /api/lessons/{id}/verdict)
and the test suite over a headless run, so the page and the tests share one implementation.
A history is columnar: `step` (T,) and each statistic (T,) or (T, layers), as the engine's
`Trainer.run` returns it or as the server's History rows hold it (means per row).
"""
from __future__ import annotations

import math

import numpy as np

from .schema import Check, Lesson, Measure

_STEP_REDUCE = {
    "mean": lambda a: float(np.mean(a)),
    "max": lambda a: float(np.max(a)),
    "min": lambda a: float(np.min(a)),
    "first": lambda a: float(a[0]),
    "last": lambda a: float(a[-1]),
}
_LAYER_REDUCE = {"mean": np.mean, "max": np.max, "min": np.min}


def last_step(history: dict | None) -> int:
    """The last step recorded in a history, -1 when there is none."""
    if not history or len(history.get("step", ())) == 0:
        return -1
    return int(np.asarray(history["step"])[-1])


def _per_step(history: dict, m: Measure, stat: str) -> np.ndarray:
    """(T,) values of `stat` at the measure's layer (or reduced over layers)."""
    a = np.asarray(history[stat], dtype=np.float64)
    if a.ndim == 1:
        return a
    if isinstance(m.layer, int):
        return a[:, m.layer]
    with np.errstate(invalid="ignore"):
        return _LAYER_REDUCE[m.layer](a, axis=1)


def measure(histories: dict, m: Measure) -> float:
    """The measure's value; NaN when its run or window has no data yet."""
    h = histories.get(m.run)
    if not h or len(h.get("step", ())) == 0:
        return math.nan
    steps = np.asarray(h["step"])
    sel = (steps >= m.steps[0]) & (steps < m.steps[1])
    if not sel.any():
        return math.nan
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        # layer reductions come after the division: "per" compares like with like, layer by layer
        a = np.asarray(h[m.stat], dtype=np.float64)[sel]
        if m.per is not None:
            a = a / np.asarray(h[m.per], dtype=np.float64)[sel]
        return _STEP_REDUCE[m.reduce](_per_step({m.stat: a}, m, m.stat))


def check_value(histories: dict, c: Check) -> float:
    v = measure(histories, c.value)
    if c.over is None:
        return v
    with np.errstate(divide="ignore", invalid="ignore"):
        return float(np.float64(v) / np.float64(measure(histories, c.over)))


def passes(c: Check, v: float) -> bool:
    """Whether a value satisfies the check; a non-finite value satisfies none but `outside`/`>` with inf."""
    if math.isnan(v):
        return False
    if c.op == "<":
        return v < c.threshold
    if c.op == ">":
        return v > c.threshold
    lo, hi = c.threshold
    inside = lo <= v <= hi
    return inside if c.op == "between" else not inside


def _done(history: dict | None, steps: int) -> bool:
    """A run is done at its last step, or once it went non-finite (it gets no further by itself)."""
    if last_step(history) >= steps - 1:
        return True
    return bool(history) and "nonfinite" in history and bool(np.any(np.asarray(history["nonfinite"]) > 0))


def ready(lesson: Lesson, histories: dict) -> bool:
    """Every run the lesson needs is done: recorded step `steps - 1`, or diverged."""
    runs = ("a", "b") if lesson.vs is not None else ("a",)
    return all(_done(histories.get(r), lesson.steps) for r in runs)


def _fill(template: str, values: dict) -> str:
    return template.format(**{k: (math.nan if v is None else v) for k, v in values.items()})


def evaluate(lesson: Lesson, histories: dict) -> dict:
    """{"lesson", "ready", "holds", "message", "values", "checks": [...], "answer", "steps"}.

    `histories`: {"a": history, "b": history} (b only for lessons with `vs`). Values are
    plain floats, non-finite as None (JSON null). `holds` is False until `ready`.
    """
    values, checks = {}, []
    for c in lesson.verdict.checks:
        v = check_value(histories, c)
        values[c.name] = v if math.isfinite(v) else (None if math.isnan(v) else v)
        checks.append({"name": c.name, "passed": passes(c, v)})
    for item, c in zip(checks, lesson.verdict.checks):
        item["value"] = values[c.name] if values[c.name] is None or math.isfinite(values[c.name]) else None
        item["says"] = _fill(c.says, values)
    is_ready = ready(lesson, histories)
    holds = is_ready and all(c["passed"] for c in checks)
    message = _fill(lesson.verdict.holds if holds else lesson.verdict.fails, values) if is_ready else ""
    finite = {k: (v if v is not None and math.isfinite(v) else None) for k, v in values.items()}
    return {"lesson": lesson.id, "ready": is_ready, "holds": holds, "message": message, "values": finite,
            "checks": checks, "answer": lesson.question.answer,
            "steps": {r: last_step(h) for r, h in histories.items()}}
