"""`create_app(settings)`: the FastAPI app: its lifespan, middleware and error handlers, and the routers."""
from __future__ import annotations

import logging
from contextlib import asynccontextmanager
from typing import get_args

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel

import gradscope
from gradscope.config import CONFIG_KEYS, ConfigError, choices_of, describe_error

from .errors import ActionError, error_id
from .manager import SessionManager
from .routers import compare, lessons, meta, pages, sessions
from .settings import Settings

log = logging.getLogger("gradscope.server")


def create_app(settings: Settings | None = None, *, warm_compile: bool = True, cache=None) -> FastAPI:
    """The app. `warm_compile`: the engine compiles other activations in the background;
    `cache`: a shared engine CompileCache (tests reuse one across apps)."""
    settings = settings or Settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        await app.state.manager.start()
        try:
            yield
        finally:
            await app.state.manager.stop()

    app = FastAPI(title="gradscope", version=gradscope.__version__, lifespan=lifespan)
    app.state.settings = settings
    app.state.manager = SessionManager(settings, warm=warm_compile, cache=cache)
    _add_error_handlers(app)
    app.add_middleware(FaultBarrier)
    app.add_middleware(SecurityHeaders)
    for router in (sessions.router, meta.router, compare.router, lessons.router, pages.router):
        app.include_router(router)
    app.mount("/static", pages.static_files(settings), name="static")
    return app


WHERE = ("body", "query", "path", "header", "cookie")
NOT_AN_OBJECT = ("model_type", "model_attributes_type", "dict_type")


def _body_keys(request: Request) -> list[str] | None:
    """The keys the route's body model takes (a fork, a control...), None where it is not one."""
    field = getattr(request.scope.get("route"), "body_field", None)
    annotation = getattr(getattr(field, "field_info", None), "annotation", None)
    for model in get_args(annotation) or (annotation,):
        if isinstance(model, type) and issubclass(model, BaseModel) and not set(model.model_fields) >= set(CONFIG_KEYS):
            return [f.alias or name for name, f in model.model_fields.items()]
    return None


def _validation_item(err: dict, body_keys: list[str] | None = None) -> dict:
    """One request validation error as {"field", "message", "choices"}: the key by its name (never a
    list index or a character position), or where the request went wrong ("body")."""
    loc = list(err.get("loc", ()))
    where = str(loc.pop(0)) if loc and loc[0] in WHERE else "body"
    kind = err.get("type")
    if kind == "json_invalid":  # loc: ("body", character position)
        why = err.get("ctx", {}).get("error", "decode error")
        at = f" at character {loc[0]}" if loc and isinstance(loc[0], int) else ""
        return {"field": "body", "message": f"is not valid JSON ({why}{at})", "choices": None}
    field = next((p for p in reversed(loc) if isinstance(p, str)), None)
    if field is None:  # the body (or query) as a whole
        message = "must be a JSON object" if kind in NOT_AN_OBJECT else err.get("msg", "invalid")
        return {"field": where, "message": message, "choices": None}
    if kind == "extra_forbidden" and field in CONFIG_KEYS + ("paused",):  # a config key where none is taken
        return {"field": field, "message": "is not taken here", "choices": None}
    if kind == "extra_forbidden":
        return {"field": field, "message": "unknown key", "choices": body_keys or list(CONFIG_KEYS) + ["paused"]}
    if field in CONFIG_KEYS or isinstance(err.get("ctx", {}).get("error"), ConfigError):
        return describe_error(err, field)
    choices = choices_of(field)
    if choices is None and "expected" in err.get("ctx", {}):
        choices = [c.strip(" '") for c in str(err["ctx"]["expected"]).replace(" or ", ",").split(",")]
    return {"field": field, "message": err.get("msg", "invalid"), "choices": choices}


def _add_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(RequestValidationError)
    async def validation(request: Request, exc: RequestValidationError):
        keys = _body_keys(request)
        return JSONResponse({"detail": [_validation_item(e, keys) for e in exc.errors()]}, status_code=422)

    @app.exception_handler(ConfigError)
    async def config_error(request: Request, exc: ConfigError):
        return JSONResponse({"detail": exc.as_dicts()}, status_code=422)

    @app.exception_handler(ActionError)
    async def action_error(request: Request, exc: ActionError):
        return JSONResponse({"detail": exc.message, "field": exc.field, "choices": exc.choices},
                            status_code=exc.status)


# Exactly what the page loads: its own scripts (no inline script), Plotly's injected styles,
# the data: favicon, and its own origin's HTTP and WebSocket ('self' covers ws: in CSP 3).
CSP = ("default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data: blob:; "
       "font-src 'self' data:; connect-src 'self'; object-src 'none'; base-uri 'none'; "
       "frame-ancestors 'none'; form-action 'self'")
HEADERS = [(b"content-security-policy", CSP.encode()), (b"x-content-type-options", b"nosniff"),
           (b"referrer-policy", b"no-referrer"), (b"x-frame-options", b"DENY")]


class SecurityHeaders:
    """ASGI middleware: the headers a public deployment needs, on every HTTP answer
    (no-referrer: a session link never leaks to another site through Referer)."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)

        async def with_headers(message):
            if message["type"] == "http.response.start":
                message = {**message, "headers": list(message.get("headers", [])) + HEADERS}
            await send(message)

        await self.app(scope, receive, with_headers)


class FaultBarrier:
    """ASGI middleware: a bug in the app is a 500 carrying only an error id; the traceback
    goes to the log under that id (and a test fixture fails on it). Known failures are
    answered as 4xx by the exception handlers before they get here."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        started = False

        async def tracked(message):
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, receive, tracked)
        except Exception as exc:
            eid = error_id()
            log.error("server fault %s on %s %s", eid, scope.get("method"), scope.get("path"), exc_info=exc)
            if started:  # the answer is on its way: nothing more can be said over HTTP
                return
            body = {"detail": "internal server error", "error_id": eid}
            await JSONResponse(body, status_code=500)(scope, receive, send)
