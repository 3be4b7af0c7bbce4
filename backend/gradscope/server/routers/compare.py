"""Compare: start B from a session's state, read a pair, play/pause/step a pair in lockstep."""
from __future__ import annotations

from typing import Literal

from fastapi import APIRouter, Depends, Header, Request
from pydantic import BaseModel, ConfigDict, Field

from .. import compare
from ..dependencies import bearer_token, client_of, get_manager, get_session
from ..manager import SessionManager
from ..sessions import Session

router = APIRouter(prefix="/api")


class CompareRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    changes: dict = Field(default_factory=dict)
    paused: bool = True


class PairControl(BaseModel):
    model_config = ConfigDict(extra="forbid")
    action: Literal["play", "pause", "step"]


@router.post("/sessions/{sid}/compare", status_code=201)
async def start_compare(request: Request, body: CompareRequest | None = None, s: Session = Depends(get_session),
                        manager: SessionManager = Depends(get_manager), authorization: str | None = Header(None)) -> dict:
    """Run B from this session's very state with `changes`; its owner's token pauses A first and pairs them."""
    body = body or CompareRequest()
    owner = compare.owns(manager, s, bearer_token(authorization))
    b, token = await compare.start(manager, s, body.changes, paused=body.paused, owner=owner,
                                   client=client_of(request))
    return {"a": s.summary(), "b": b.summary(), "token": token, "paired": owner,
            "url": str(request.url_for("compare_page", a=s.id, b=b.id))}


@router.get("/compare/{a}/{b}")
async def read_compare(a: str, b: str, manager: SessionManager = Depends(get_manager)) -> dict:
    """Both sessions' summaries (for anyone with the link)."""
    sa, sb = await compare.both(manager, a, b)
    return {"a": sa.summary(), "b": sb.summary()}


@router.post("/compare/{a}/{b}/control")
async def pair_control(a: str, b: str, body: PairControl, manager: SessionManager = Depends(get_manager),
                       authorization: str | None = Header(None), x_token_b: str | None = Header(None)) -> dict:
    """Owner of both (A's token as Bearer, B's in X-Token-B): play, pause or step both in lockstep."""
    return await compare.control(manager, a, b, body.action, bearer_token(authorization), x_token_b)
