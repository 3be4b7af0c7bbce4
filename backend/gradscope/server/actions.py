"""Owner commands (`set`, `control`), shared by the WebSocket and the HTTP routes."""
from __future__ import annotations

from gradscope.config import ConfigError

from .errors import ActionError
from .sessions import Session

ACTIONS = ("play", "pause", "step", "reset", "rewind")
MAX_STEPS = 50_000  # steps one `step` command may take (the worker answers nothing else meanwhile)


async def apply_set(manager, s: Session, changes) -> dict:
    """Validate and apply config changes; returns the ack body (step, kind, applied)."""
    if not isinstance(changes, dict) or not changes:
        raise ConfigError("changes", "must be a non-empty object of config keys",
                          list(manager.meta()["defaults"]))
    res = await s.call(s.apply_changes, changes)
    return {"step": res["step"], "applied": {"kind": res["kind"], "changes": res["changes"]}}


async def apply_control(manager, s: Session, action, learning_rate=None, steps=None) -> dict:
    """play | pause | step | reset | rewind (`learning_rate`: the rate to resume with, rewind
    only; `steps`: how many a step takes, 1 by default); returns the ack body."""
    if action not in ACTIONS:
        raise ActionError(f"unknown action {action!r}", choices=list(ACTIONS), status=422)
    if learning_rate is not None and action != "rewind":
        raise ActionError("only rewind takes a learning rate", field="learning_rate", choices=["rewind"], status=422)
    if steps is not None and (action != "step" or isinstance(steps, bool) or not isinstance(steps, int)
                              or not 1 <= steps <= MAX_STEPS):
        raise ActionError(f"steps must be an integer from 1 to {MAX_STEPS}, with action step", field="steps",
                          choices=["step"], status=422)
    if not s.trains_here:
        raise ActionError(f"an attached run is trained by its script: {action} is the script's to do; "
                          "the page changes the knobs the script exposes", field="action", status=409)
    if action == "play":
        held = manager.reserve(s.id)  # its place until it runs (already counted if it does)
        try:
            res = await s.call(s.set_running, True)
        finally:
            manager.release(*held)
    elif action == "pause":
        res = await s.call(s.set_running, False)
    elif action == "step":
        res = await s.call(s.single_step, steps or 1)
    elif action == "reset":
        res = await s.call(s.apply_reset)
    else:
        res = await s.call(s.apply_rewind, None, None, learning_rate)
    return {"step": res["step"], "applied": {"action": action, **{k: v for k, v in res.items() if k != "step"}}}



async def apply_rows(manager, s: Session, records, done: bool) -> dict:
    """An attached run's posted records (its script's `publish`); returns the step, the status
    and the knob changes the script is to apply (`set`)."""
    if s.trains_here:
        raise ActionError("only an attached run takes posted rows: this session trains here", field="session",
                          status=409)
    held = manager.reserve(s.id) if s.status == "paused" and records else ()  # the post resumes it
    try:
        if s.tr is not None:
            s.tr.wake()  # the worker's wait for rows ends now
        return await s.call(s.ingest, records, done)
    finally:
        manager.release(*held)
