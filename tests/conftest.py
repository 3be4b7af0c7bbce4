"""Shared fixtures: server apps on temporary data dirs, in-process (TestClient) or on loopback (uvicorn)."""
from __future__ import annotations

import json
import socket
import threading
import time
import warnings

import pytest

with warnings.catch_warnings():  # starlette nags about httpx vs httpx2 at import; httpx is what we have
    warnings.filterwarnings("ignore", message=".*httpx2.*")
    from fastapi.testclient import TestClient

SMALL = {"depth": 3, "width": 16, "batch_size": 32}


@pytest.fixture(scope="session", autouse=True)
def persistent_compile_cache(tmp_path_factory):
    """Compiled executables on disk for the whole run: a Trainer built again for a shape
    already seen (in this process or in a server subprocess) loads instead of compiling."""
    import os

    from gradscope.engine import enable_persistent_cache

    path = tmp_path_factory.mktemp("jax-cache")
    enable_persistent_cache(path)
    os.environ["GRADSCOPE_TEST_JAX_CACHE"] = str(path)
    yield path


@pytest.fixture(scope="session")
def compile_cache():
    """One engine compile cache for the whole run: each shape/activation compiles once."""
    from gradscope.engine import CompileCache

    cache = CompileCache(background=False)
    yield cache
    cache.close()


@pytest.fixture
def settings_for(tmp_path):
    """Settings(...) on this test's data dir, with a fixed K and overrides."""
    from gradscope.server import Settings

    def make(**overrides):
        base = {"data_dir": tmp_path / "data", "chunk_steps": 16, "idle_pause_s": 600.0}
        return Settings(**{**base, **overrides})

    return make


@pytest.fixture
def make_app(settings_for, compile_cache):
    from gradscope.server import create_app

    def make(**overrides):
        return create_app(settings_for(**overrides), warm_compile=False, cache=compile_cache)

    return make


@pytest.fixture
def client(make_app):
    with TestClient(make_app()) as c:
        yield c


class LiveServer:
    """uvicorn on a free loopback port, in a thread; `stop()` runs the app's shutdown."""

    def __init__(self, app):
        import uvicorn

        # The socket is bound and listening before uvicorn runs, so a client may connect at
        # once: the kernel holds it in the backlog until the app has started. Nothing to wait for.
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        config = uvicorn.Config(app, log_level="warning", ws_max_size=1 << 20,
                                ws_per_message_deflate=False, lifespan="on")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True)
        self.thread.start()
        self.url = f"http://127.0.0.1:{self.port}"
        self.ws_url = f"ws://127.0.0.1:{self.port}"

    def stop(self):
        self.server.should_exit = True
        self.thread.join(60)
        self.sock.close()


@pytest.fixture
def live_server(make_app):
    """Factory: live_server(**settings overrides) -> LiveServer; all stopped at teardown."""
    servers = []

    def start(**overrides):
        srv = LiveServer(make_app(**overrides))
        servers.append(srv)
        return srv

    yield start
    for srv in servers:
        if srv.thread.is_alive():
            srv.stop()


def recv_until(ws, pred, timeout: float = 120.0, seen: list | None = None):
    """Messages from a websockets sync connection until pred(msg); returns that message."""
    deadline = time.monotonic() + timeout
    while True:
        msg = json.loads(ws.recv(timeout=max(0.01, deadline - time.monotonic())))
        if seen is not None:
            seen.append(msg)
        if pred(msg):
            return msg
