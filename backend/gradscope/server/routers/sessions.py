"""Sessions: create, read, history, export, fork, owner commands, delete, and the WebSocket."""
from __future__ import annotations

import asyncio
import json
from typing import Any, Literal

import numpy as np
from fastapi import APIRouter, Body, Depends, Query, Request, Response
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from gradscope.config import ConfigError, make_config
from gradscope.records import column_names, columns, csv_bytes, jsonl_bytes, run_header

from .. import forks
from ..actions import apply_control, apply_rows, apply_set
from ..dependencies import client_of, get_manager, get_session, owned_session
from ..history import rows_to_json, select
from ..manager import SessionManager
from ..sessions import Session
from ..ws import session_ws

router = APIRouter(prefix="/api")
router.add_api_websocket_route("/sessions/{sid}/ws", session_ws)


PAUSED = TypeAdapter(bool)
CREATE_BODY = {"description": "A config (any subset of its model's keys; the rest default: `/api/meta`'s "
               "`keys_by_model` and `defaults_by_model`) plus `paused`, whether to start paused.",
               "content": {"application/json": {"schema": {"type": "object", "additionalProperties": True}}}}


class ForkRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)
    source: Literal["current", "start"] = Field("current", alias="from")
    paused: bool = False


class SetRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    changes: dict


class RowsRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    records: list = Field(default_factory=list, description="records as `gradscope.attach` writes them (JSON Lines' lines)")
    done: bool = Field(False, description="the script has finished: the run pauses (a later post resumes it)")


class ControlRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    action: Literal["play", "pause", "step", "reset", "rewind"]
    learning_rate: float | None = Field(None, allow_inf_nan=False,
                                        description="rewind only: the learning rate to resume with")
    steps: int | None = Field(None, strict=True, description="step only: how many steps (1 to 50,000; default 1)")


def created(request: Request, s: Session, token: str) -> dict:
    """A new session's answer: its summary, its owner token (shown once) and its page."""
    return {**s.summary(), "token": token, "url": str(request.url_for("session_page", sid=s.id))}


@router.post("/sessions", status_code=201, openapi_extra={"requestBody": CREATE_BODY})
async def create_session(request: Request, body: dict[str, Any] | None = Body(None),
                         manager: SessionManager = Depends(get_manager)) -> dict:
    """Create a session; it trains at once unless `paused`. The config is validated as its model's
    (the union on `model`): a key that model does not take is refused by name."""
    values = dict(body or {})
    try:
        paused = PAUSED.validate_python(values.pop("paused", False))
    except ValidationError:
        raise ConfigError("paused", "must be true or false", [True, False]) from None
    config = make_config(values)
    client = client_of(request)
    manager.admit(client)
    s, token = await asyncio.to_thread(manager.create, config, paused=paused, client=client)
    return created(request, s, token)


@router.get("/sessions/{sid}")
async def read_session(s: Session = Depends(get_session)) -> dict:
    """Config, status, step and event timeline (never the token)."""
    return s.summary()


@router.get("/sessions/{sid}/history")
async def read_history(s: Session = Depends(get_session), since: int = Query(0, ge=0),
                       max_points: int | None = Query(None, ge=1, le=1_000_000),
                       hist: bool = False) -> dict:
    """Recorded statistics from `since`, merged to at most `max_points` rows (min/max kept)."""
    def body() -> bytes:  # merging and encoding take a while: a thread, outside the lock summary() takes
        return rows_to_json(select(s.timeline.parts(), since, max_points), hist, session=s.id)

    return Response(await asyncio.to_thread(body), media_type="application/json")


@router.get("/sessions/{sid}/export")
async def export(s: Session = Depends(get_session), format: Literal["jsonl", "csv"] = "jsonl"):
    """The whole history as `gradscope run --out` writes it (JSON Lines) or as CSV; a row covers `count` steps."""
    def snapshot():
        with s.lock:
            parts, events, config0, config = s.history.parts(), list(s.events), s.config0, s.config
        return run_header(config0, events, columns=config), _as_stats(select(parts))

    def body() -> bytes:  # the whole history at once, encoded from its columns (records.encode)
        header, stats = snapshot()
        if format == "jsonl":
            return json.dumps(header).encode() + b"\n" + (jsonl_bytes(stats) if stats is not None else b"")
        if stats is None:
            return b""
        return ",".join(column_names(columns(stats))).encode() + b"\n" + csv_bytes(stats)

    media = "application/x-ndjson" if format == "jsonl" else "text/csv"
    headers = {"Content-Disposition": f'attachment; filename="gradscope-{s.id}.{format}"'}
    return Response(await asyncio.to_thread(body), media_type=media, headers=headers)


def _as_stats(rows: dict | None) -> dict | None:
    """History rows -> rows as Trainer.run returns them (the means; `nonfinite`: whether any step was)."""
    if rows is None:
        return None
    mean = rows["mean"]
    return {"step": rows["step"], "count": rows["count"], **mean, "nonfinite": np.asarray(mean["nonfinite"]) > 0}


@router.post("/sessions/{sid}/fork", status_code=201)
async def fork(request: Request, body: ForkRequest | None = None, s: Session = Depends(get_session),
               manager: SessionManager = Depends(get_manager)) -> dict:
    """A new session owned by the caller: same config and timeline, from current weights or from the start."""
    body = body or ForkRequest()
    new, token = await forks.fork(manager, s, body.source, paused=body.paused, client=client_of(request))
    return created(request, new, token)


@router.post("/sessions/{sid}/config")
async def set_config(body: SetRequest, s: Session = Depends(owned_session),
                     manager: SessionManager = Depends(get_manager)) -> dict:
    """Owner: the HTTP twin of the WebSocket `set` message."""
    return await apply_set(manager, s, body.changes)


@router.post("/sessions/{sid}/control")
async def control(body: ControlRequest, s: Session = Depends(owned_session),
                  manager: SessionManager = Depends(get_manager)) -> dict:
    """Owner: the HTTP twin of the WebSocket `control` message."""
    return await apply_control(manager, s, body.action, body.learning_rate, body.steps)


@router.post("/sessions/{sid}/rows")
async def post_rows(body: RowsRequest, s: Session = Depends(owned_session),
                    manager: SessionManager = Depends(get_manager)) -> dict:
    """Owner of an attached run (`model: attached`, made by its script): its records, recorded as
    a built-in run's rows are. The reply's `set` holds the knob changes made on the page since the
    last post: the script applies them (docs/attach.md)."""
    return await apply_rows(manager, s, body.records, body.done)


@router.delete("/sessions/{sid}", status_code=204)
async def delete_session(s: Session = Depends(owned_session), manager: SessionManager = Depends(get_manager)):
    """Owner: stop and delete the session and everything stored for it."""
    await manager.delete(s)
    return Response(status_code=204)
