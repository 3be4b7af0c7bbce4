"""Meta: the names, limits and versions the page and clients read (/api/meta), and /api/health."""
from __future__ import annotations

import asyncio

from fastapi import APIRouter, Depends

from ..dependencies import get_manager
from ..manager import SessionManager

router = APIRouter(prefix="/api")


@router.get("/meta")
async def read_meta(manager: SessionManager = Depends(get_manager)) -> dict:
    """Valid names, limits, histogram edges, JAX backend and devices, version."""
    return manager.meta()


@router.get("/health")
async def health(manager: SessionManager = Depends(get_manager)) -> dict:
    """Liveness, loaded and running sessions, store writes waiting, the compile cache's fill, and
    where sessions train (`backend`: in process, or a Ray cluster's nodes, places and queue)."""
    backend = await asyncio.to_thread(manager.backend.meta)  # asks the cluster on Ray
    return {"ok": True, "sessions": len(manager.sessions), "running": manager.running_count(),
            "writes_pending": manager.writer.backlog, "compile_cache": manager.cache.stats(), "backend": backend}
