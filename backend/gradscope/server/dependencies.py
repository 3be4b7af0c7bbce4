"""What the routers and the app share: the owner's bearer token, rate limits, session lookup, the page.

The routers take these through `Depends`; this module imports no other server module at run
time (the manager's types are named for annotations only), so nothing imports back up.
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING

from fastapi import Depends, Header, HTTPException, Request
from fastapi.responses import FileResponse

import gradscope

if TYPE_CHECKING:
    from .manager import SessionManager
    from .sessions import Session
    from .settings import Settings

MAX_ID = 64  # a longer session id is not looked up (nor loaded from the store)


def bearer_token(authorization: str | None) -> str | None:
    """The token of an `Authorization: Bearer TOKEN` header; None without one."""
    return authorization[7:].strip() if authorization and authorization.startswith("Bearer ") else None


class RateLimit:
    """Token bucket: `rate` messages a second, bursts up to `burst`."""

    def __init__(self, rate: float, burst: int):
        self.rate, self.burst, self.tokens, self.t = rate, burst, float(burst), time.monotonic()

    def full(self) -> bool:
        return self.tokens + (time.monotonic() - self.t) * self.rate >= self.burst

    def allow(self) -> bool:
        now = time.monotonic()
        self.tokens = min(self.burst, self.tokens + (now - self.t) * self.rate)
        self.t = now
        if self.tokens >= 1:
            self.tokens -= 1
            return True
        return False


def client_of(request: Request) -> str | None:
    """The client's address: what the per-client limits count by."""
    return request.client.host if request.client else None


def get_manager(request: Request) -> SessionManager:
    return request.app.state.manager


def get_session(sid: str, manager: SessionManager = Depends(get_manager)) -> Session:
    """The session `sid` (loaded from the store if need be); 404 when there is none."""
    s = manager.get(sid) if len(sid) <= MAX_ID else None
    if s is None:
        raise HTTPException(404, "no such session")
    return s


def owned_session(s: Session = Depends(get_session), manager: SessionManager = Depends(get_manager),
                  authorization: str | None = Header(None)) -> Session:
    """The session, for its owner only: 403 without the token or with another one."""
    token = bearer_token(authorization)
    if token is None:
        raise HTTPException(403, "owner token required: send 'Authorization: Bearer TOKEN'")
    if not manager.is_owner(s, token):
        raise HTTPException(403, "the token does not match this session")
    return s


def frontend_dir(settings: Settings) -> Path:
    """The page's files: `settings.frontend_dir`, else the packaged copy, else the repository's."""
    if settings.frontend_dir is not None:
        return Path(settings.frontend_dir)
    packaged = Path(gradscope.__file__).parent / "frontend"
    return packaged if packaged.is_dir() else Path(gradscope.__file__).resolve().parents[2] / "frontend"


def index_page(request: Request) -> FileResponse:
    """The one HTML page every page route answers with (the page reads its path itself)."""
    index = frontend_dir(request.app.state.settings) / "index.html"
    if not index.is_file():
        raise HTTPException(404, "the dashboard is not installed (frontend/index.html missing)")
    return FileResponse(index)
