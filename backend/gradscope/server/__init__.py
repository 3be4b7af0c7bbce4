"""The live session server: `create_app(settings)` for tests, `serve(...)` for the CLI."""
from __future__ import annotations

from pathlib import Path

from .settings import Settings

__all__ = ["Settings", "create_app", "serve", "main"]


def __getattr__(name: str):
    """`create_app` is imported on first use: the CLI reads `Settings` without FastAPI or JAX."""
    if name == "create_app":
        from .app import create_app

        return create_app
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def serve(host: str = "127.0.0.1", port: int = 8000, data_dir: str | Path = "data",
          allow_origins: tuple[str, ...] | list[str] = (), *, warm_compile: bool = True,
          **overrides) -> None:
    """Run the server with uvicorn until interrupted (`gradscope serve`).

    `overrides` are further `Settings` fields (max_running, idle_pause_s, ...);
    `warm_compile=False` skips compiling the other activations in the background.
    """
    import uvicorn

    from .app import create_app

    settings = Settings(data_dir=Path(data_dir), allow_origins=tuple(allow_origins or ()), **overrides)
    app = create_app(settings, warm_compile=warm_compile)
    # no per-message deflate: compressing every frame for every client costs more CPU than
    # the training it reports on; the stream is meant for loopback and LANs
    # no access log: one line per history poll is noise; no token is ever in a URL anyway
    # (the owner's WebSocket token travels in Sec-WebSocket-Protocol)
    uvicorn.run(app, host=host, port=port, ws_max_size=1 << 20, ws_per_message_deflate=False,
                access_log=False, log_level="info")


def main(args) -> None:
    """Entry for an argparse namespace with host, port, data_dir and (optional) allow_origins."""
    serve(host=getattr(args, "host", "127.0.0.1"), port=int(getattr(args, "port", 8000)),
          data_dir=getattr(args, "data_dir", "data"), allow_origins=getattr(args, "allow_origins", None) or ())
