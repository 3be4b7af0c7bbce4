"""The live session server: `create_app(settings)` for tests, `serve(...)` for the CLI."""
from __future__ import annotations

from pathlib import Path

from .settings import Settings

__all__ = ["Settings", "create_app", "serve", "serve_in_thread", "main"]


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


def serve_in_thread(host: str = "127.0.0.1", port: int = 0, data_dir: str | Path | None = None, *,
                    timeout: float = 60.0, **overrides):
    """Start the server in a daemon thread of this process (`gradscope.attach(serve=True)`,
    `gradscope view`); returns (its address, the uvicorn server: `should_exit = True` stops it).
    `port` 0 picks a free port; `data_dir` None: a temporary directory."""
    import tempfile
    import threading
    import time

    import uvicorn

    from .app import create_app

    data = Path(data_dir) if data_dir is not None else Path(tempfile.mkdtemp(prefix="gradscope-"))
    settings = Settings(data_dir=data, **overrides)
    config = uvicorn.Config(create_app(settings, warm_compile=False), host=host, port=port, ws_max_size=1 << 20,
                            ws_per_message_deflate=False, access_log=False, log_level="warning")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name="gradscope-server", daemon=True)
    thread.start()
    deadline = time.monotonic() + timeout
    while not server.started:  # uvicorn sets it once the socket listens
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError(f"the gradscope server did not start on {host}:{port}")
        time.sleep(0.02)
    bound = server.servers[0].sockets[0].getsockname()[1]
    return f"http://{host}:{bound}", server


def main(args) -> None:
    """Entry for an argparse namespace with host, port, data_dir and (optional) allow_origins."""
    serve(host=getattr(args, "host", "127.0.0.1"), port=int(getattr(args, "port", 8000)),
          data_dir=getattr(args, "data_dir", "data"), allow_origins=getattr(args, "allow_origins", None) or ())
