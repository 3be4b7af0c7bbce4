"""Pages: the one HTML page at every page path, Plotly from its Python package, the page's files."""
from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles

from ..dependencies import frontend_dir, index_page
from ..settings import Settings

router = APIRouter(include_in_schema=False)


def plotly_js() -> Path | None:
    """plotly.min.js from the installed plotly package; None without it."""
    try:
        import plotly
    except ImportError:
        return None
    path = Path(plotly.__file__).parent / "package_data" / "plotly.min.js"
    return path if path.is_file() else None


def static_files(settings: Settings) -> StaticFiles:
    """The page's files, mounted at /static after this router (so the vendored route wins)."""
    return StaticFiles(directory=frontend_dir(settings), check_dir=False)


@router.get("/")
async def home(request: Request):
    """The dashboard."""
    return index_page(request)


@router.get("/s/{sid}", name="session_page")
async def session_page(request: Request, sid: str):
    """A session's page (the page reads the id from its path)."""
    return index_page(request)


@router.get("/compare/{a}/{b}", name="compare_page")
async def compare_page(request: Request, a: str, b: str):
    """A compare pair's page."""
    return index_page(request)


@router.get("/lessons/{lid}", name="lesson_page")
async def lesson_page(request: Request, lid: str):
    """A lesson's shareable link."""
    return index_page(request)


@router.get("/static/vendor/plotly.min.js")
async def plotly_bundle():
    """Plotly, served from its Python package (not vendored in the repository)."""
    path = plotly_js()
    if path is None:
        raise HTTPException(404, "plotly is not installed")
    return FileResponse(path, media_type="text/javascript")
