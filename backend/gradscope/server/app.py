"""`create_app(settings)`: the FastAPI app, its lifespan, error handlers and static files."""
from __future__ import annotations

import logging
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse
from fastapi.staticfiles import StaticFiles

import gradscope
from gradscope.config import CONFIG_KEYS, ConfigError, choices_of

from . import routes, ws
from .manager import SessionManager
from .sessions import ActionError
from .settings import Settings

log = logging.getLogger("gradscope.server")


def frontend_dir(settings: Settings) -> Path:
    if settings.frontend_dir is not None:
        return Path(settings.frontend_dir)
    packaged = Path(gradscope.__file__).parent / "frontend"
    return packaged if packaged.is_dir() else Path(gradscope.__file__).resolve().parents[2] / "frontend"


def plotly_js() -> Path | None:
    try:
        import plotly
    except ImportError:
        return None
    path = Path(plotly.__file__).parent / "package_data" / "plotly.min.js"
    return path if path.is_file() else None


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
    app.include_router(routes.router)
    app.include_router(ws.router)
    _add_static(app, frontend_dir(settings))
    return app


def _validation_item(err: dict) -> dict:
    if isinstance(err.get("ctx", {}).get("error"), ConfigError):  # config.check_model's rules name their own field
        return err["ctx"]["error"].as_dict()
    loc = [str(p) for p in err.get("loc", ()) if p not in ("body", "query", "path", "header")]
    field = loc[-1] if loc else "body"
    if err.get("type") == "extra_forbidden" and field in CONFIG_KEYS + ("paused",):
        return {"field": field, "message": err.get("msg", "invalid"), "choices": None}
    if err.get("type") == "extra_forbidden":
        return {"field": field, "message": "unknown key", "choices": list(CONFIG_KEYS) + ["paused"]}
    if field == "body" and err.get("type") == "value_error":
        field = "depth"  # the cross-field size limit: depth x width x batch
    choices = choices_of(field)
    if choices is None and "expected" in err.get("ctx", {}):
        choices = [c.strip(" '") for c in str(err["ctx"]["expected"]).replace(" or ", ",").split(",")]
    return {"field": field, "message": err.get("msg", "invalid"), "choices": choices}


def _add_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(RequestValidationError)
    async def validation(request: Request, exc: RequestValidationError):
        return JSONResponse({"detail": [_validation_item(e) for e in exc.errors()]}, status_code=422)

    @app.exception_handler(ConfigError)
    async def config_error(request: Request, exc: ConfigError):
        return JSONResponse({"detail": [exc.as_dict()]}, status_code=422)

    @app.exception_handler(ActionError)
    async def action_error(request: Request, exc: ActionError):
        return JSONResponse({"detail": exc.message, "field": exc.field, "choices": exc.choices},
                            status_code=exc.status)

    @app.exception_handler(Exception)
    async def anything(request: Request, exc: Exception):
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return JSONResponse({"detail": f"request could not be handled: {type(exc).__name__}"}, status_code=400)


def _add_static(app: FastAPI, root: Path) -> None:
    index = root / "index.html"

    def page():
        if not index.is_file():
            raise HTTPException(404, "the dashboard is not installed (frontend/index.html missing)")
        return FileResponse(index)

    @app.get("/", include_in_schema=False)
    async def home():
        return page()

    @app.get("/s/{sid}", include_in_schema=False, name="session_page")
    async def session_page(sid: str):
        return page()

    @app.get("/static/vendor/plotly.min.js", include_in_schema=False)
    async def plotly_bundle():
        path = plotly_js()
        if path is None:
            raise HTTPException(404, "plotly is not installed")
        return FileResponse(path, media_type="text/javascript")

    app.mount("/static", StaticFiles(directory=root, check_dir=False), name="static")
