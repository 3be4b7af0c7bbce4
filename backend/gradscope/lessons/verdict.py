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


def _at_layer(a: np.ndarray, layer) -> np.ndarray:
    """(T,) or (T, L) -> (T,): the column of `layer`, or its reduction over the layers."""
    if a.ndim == 1:
        return a
    if isinstance(layer, int):
        return a[:, layer]
    return _LAYER_REDUCE[layer](a, axis=1)


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
        if m.row is not None:  # (T, rows, L) -> (T, L)
            a = a[:, m.row]
        return _STEP_REDUCE[m.reduce](_at_layer(a, m.layer))


def check_value(histories: dict, c: Check) -> float:
    v = measure(histories, c.value)
    if c.over is None:
        return v
    with np.errstate(divide="ignore", invalid="ignore"):
        return float(np.float64(v) / np.float64(measure(histories, c.over)))


def passes(c: Check, v: float) -> bool:
    """Whether a value satisfies the check; a non-finite value (no data, 0/0, overflow) satisfies none."""
    if not math.isfinite(v):
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
    return template.format(**values)  # nan/inf print as "nan"/"inf"


def _plain(v: float) -> float | None:
    """JSON has no NaN or Infinity: non-finite values travel as null."""
    return v if math.isfinite(v) else None


def evaluate(lesson: Lesson, histories: dict) -> dict:
    """{"lesson", "ready", "holds", "message", "values", "checks": [...], "answer", "steps"}.

    `histories`: {"a": history, "b": history} (b only for lessons with `vs`). Values are
    plain floats, non-finite as None (JSON null). `holds` is False until `ready`.
    """
    values = {c.name: check_value(histories, c) for c in lesson.verdict.checks}
    checks = [{"name": c.name, "value": _plain(values[c.name]), "passed": passes(c, values[c.name]),
               "says": _fill(c.says, values)} for c in lesson.verdict.checks]
    is_ready = ready(lesson, histories)
    holds = is_ready and all(c["passed"] for c in checks)
    message = _fill(lesson.verdict.holds if holds else lesson.verdict.fails, values) if is_ready else ""
    return {"lesson": lesson.id, "ready": is_ready, "holds": holds, "message": message,
            "values": {k: _plain(v) for k, v in values.items()}, "checks": checks,
            "answer": lesson.question.answer, "steps": {r: last_step(h) for r, h in histories.items()}}
