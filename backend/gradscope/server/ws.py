"""WebSocket `/api/sessions/{id}/ws`: a receiver and a sender coroutine per connection.

The sessions router registers `session_ws` at that path; this module holds the protocol.
"""
from __future__ import annotations

import json
import logging
import time
from urllib.parse import urlsplit

import anyio
from fastapi import WebSocket, WebSocketDisconnect

from .actions import apply_control, apply_set
from .dependencies import MAX_ID, RateLimit
from .errors import error_body, error_id
from .hub import Subscriber

log = logging.getLogger("gradscope.server")
PROTOCOL = 1
SUBPROTOCOL = "gradscope"
BEARER = "bearer."
GONE = 4404  # close code: the session does not exist (any more); the page stops reconnecting


def origin_allowed(origin: str | None, host: str | None, allowed: tuple[str, ...]) -> bool:
    """Same-origin, an explicitly allowed origin, or no Origin header (not a browser)."""
    if not origin:
        return True
    if "*" in allowed or origin.rstrip("/") in {a.rstrip("/") for a in allowed}:
        return True
    return bool(host) and urlsplit(origin).netloc == host


def offered_token(ws: WebSocket) -> tuple[str | None, bool]:
    """(owner token, whether the client speaks our subprotocol) from Sec-WebSocket-Protocol.

    A browser cannot set headers on a WebSocket but can offer subprotocols:
    `new WebSocket(url, ["gradscope", "bearer." + token])`. The token never appears in the
    URL, so no access or proxy log records it; the server answers with "gradscope" only.
    """
    offered = [p.strip() for p in ws.headers.get("sec-websocket-protocol", "").split(",") if p.strip()]
    token = next((p[len(BEARER):] for p in offered if p.startswith(BEARER)), None)
    return token, SUBPROTOCOL in offered


async def session_ws(ws: WebSocket, sid: str):
    """Stream a session; the owner (token offered as subprotocol `bearer.TOKEN`) may also command it."""
    manager = ws.app.state.manager
    if not origin_allowed(ws.headers.get("origin"), ws.headers.get("host"), manager.settings.allow_origins):
        await ws.close(code=1008, reason="origin not allowed")
        return
    token, speaks = offered_token(ws)
    s = await anyio.to_thread.run_sync(manager.get, sid) if len(sid) <= MAX_ID else None
    await ws.accept(subprotocol=SUBPROTOCOL if speaks else None)
    if s is None:
        await ws.send_json(_error(None, "session", "no such session"))
        await ws.close(code=GONE, reason="no such session")
        return
    owner = manager.is_owner(s, token)
    sub = s.hub.subscribe()
    try:
        if token and not owner:
            sub.put(_error(None, "token", "token does not match this session; joined as a viewer"))
        if not sub.closed:
            sub.put(_hello(manager, s, "owner" if owner else "viewer"))
            preview = s.preview  # a new run's first look, until its first trained row
            if preview is not None:
                sub.put(preview)
            s.views_on_subscribe()
        async with anyio.create_task_group() as tg:
            async def first_ends(fn, *args):
                await fn(*args)
                tg.cancel_scope.cancel()
            tg.start_soon(first_ends, _receiver, ws, manager, s, sub, owner)
            tg.start_soon(first_ends, _sender, ws, sub, manager.settings.max_fps)
    finally:
        s.hub.unsubscribe(sub)


def _hello(manager, s, role: str) -> dict:
    info = s.summary()
    return {"type": "hello", "protocol": PROTOCOL, "session": s.id, "role": role,
            "config": info["config"], "status": info["status"], "step": info["step"],
            "diverged": info["diverged"], "events": info["events"], "rewind_to": info["rewind_to"],
            "compiling": info["compiling"], "meta": manager.meta()}


def _error(mid, field: str, message: str, choices=None) -> dict:
    return {"type": "error", "id": mid, "field": field, "message": message, "choices": choices}


async def _sender(ws: WebSocket, sub: Subscriber, fps: float) -> None:
    try:
        while True:
            texts, had_stats = await sub.next_texts()
            t0 = time.monotonic()
            for text in texts:
                await ws.send_text(text)
            if sub.closed:
                await ws.close(code=GONE, reason="session deleted")
                return
            if had_stats:  # at most `fps` stats messages a second; more chunks coalesce meanwhile
                await anyio.sleep(max(0.0, 1.0 / fps - (time.monotonic() - t0)))
    except (WebSocketDisconnect, RuntimeError, OSError):
        return


async def _receiver(ws: WebSocket, manager, s, sub: Subscriber, owner: bool) -> None:
    limit = RateLimit(manager.settings.ws_rate, manager.settings.ws_burst)
    while True:
        try:
            msg = await ws.receive()
        except (WebSocketDisconnect, RuntimeError):
            return
        if msg["type"] == "websocket.disconnect":
            return
        raw = msg.get("text")
        if raw is None:
            raw = (msg.get("bytes") or b"").decode("utf-8", "replace")
        if len(raw.encode()) > manager.settings.ws_max_bytes:
            sub.put(_error(None, "message", f"message larger than {manager.settings.ws_max_bytes} bytes"))
        elif not limit.allow():
            sub.put(_error(None, "message", "too many messages; slow down"))
        else:
            sub.put(await _handle(manager, s, raw, owner))


async def _handle(manager, s, raw: str, owner: bool) -> dict:
    try:
        msg = json.loads(raw)
    except ValueError as exc:
        return _error(None, "message", f"malformed JSON: {exc}")
    if not isinstance(msg, dict):
        return _error(None, "message", "a message must be a JSON object with a type", ["set", "control"])
    mid, kind = msg.get("id"), msg.get("type")
    if kind not in ("set", "control"):
        return _error(mid, "type", f"unknown message type {kind!r}", ["set", "control"])
    if not owner:
        return _error(mid, "token", "only the owner can change this session; fork it to get your own")
    try:
        if kind == "set":
            body = await apply_set(manager, s, msg.get("changes"))
        else:
            body = await apply_control(manager, s, msg.get("action"), msg.get("learning_rate"), msg.get("steps"))
    except Exception as exc:
        err = error_body(exc)
        if err is None:  # a server fault: its details stay in the log, under an id
            eid = error_id()
            log.error("server fault %s: session %s: %s command", eid, s.id, kind, exc_info=exc)
            err = {"field": "message", "message": f"internal server error (error id {eid})", "choices": None}
        return {"type": "error", "id": mid, **err}
    return {"type": "ack", "id": mid, **body}

