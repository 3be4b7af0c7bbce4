"""Shared fixtures: server apps on temporary data dirs, in-process (TestClient) or on loopback (uvicorn)."""
from __future__ import annotations

import json
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import warnings
from pathlib import Path

import pytest

with warnings.catch_warnings():  # starlette nags about httpx vs httpx2 at import; httpx is what we have
    warnings.filterwarnings("ignore", message=".*httpx2.*")
    from fastapi.testclient import TestClient

SMALL = {"depth": 3, "width": 16, "batch_size": 32}


def pytest_collection_modifyitems(items):
    """The suite runs on pytest-xdist workers (pyproject's addopts: `--dist loadgroup`), each test
    wherever a worker is free, except the tests of a module with a module-scoped fixture (a
    Ray cluster, a server, a browser, a trained run): they stay together on one worker, so the
    fixture is built once and never twice at once."""
    for item in items:
        info = getattr(item, "_fixtureinfo", None)
        defs = [] if info is None else [d for ds in info.name2fixturedefs.values() for d in ds]
        if any(d.scope == "module" for d in defs):
            item.add_marker(pytest.mark.xdist_group(item.module.__name__))


@pytest.fixture(scope="session", autouse=True)
def persistent_compile_cache(tmp_path_factory):
    """Compiled executables on disk for the whole run: a Trainer built again for a shape
    already seen (in this process, another xdist worker or a server subprocess) loads instead
    of compiling."""
    from gradscope.engine import enable_persistent_cache

    if os.environ.get("PYTEST_XDIST_WORKER"):  # one directory for every worker of the run (JAX locks it)
        path = tmp_path_factory.getbasetemp().parent / "jax-cache"
        path.mkdir(exist_ok=True)
    else:
        path = tmp_path_factory.mktemp("jax-cache")
    enable_persistent_cache(path)
    os.environ["GRADSCOPE_TEST_JAX_CACHE"] = str(path)
    yield path


MAPPINGS_LIMIT = 40_000  # of Linux's default 65,530 (vm.max_map_count)


def memory_mappings() -> int:
    try:
        with open("/proc/self/maps", "rb") as f:
            return sum(1 for _ in f)
    except OSError:  # not Linux: no such limit to guard
        return 0


@pytest.fixture(autouse=True)
def release_compiled_programs():
    """Drop what JAX keeps of every program traced and compiled so far once the process holds
    many memory mappings. jit caches hold their executables for the life of the process and each
    holds hundreds of mappings on CPU: kept for the whole suite they passed Linux's 65,530 per
    process near its end and the next compile crashed (a segfault serializing an executable for
    the disk cache). Clearing after every module instead kept the count low but made later
    modules trace and load again what earlier ones had built, so clear only when it is needed."""
    yield
    if memory_mappings() > MAPPINGS_LIMIT:
        import gc

        import jax

        jax.clear_caches()
        gc.collect()


def read_text(path) -> str:
    return Path(path).read_text(errors="replace") if os.path.exists(path) else ""


class LogWatch(logging.Handler):
    """Every log record of the test (server threads included), plus server subprocess logs."""

    def __init__(self):
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []
        self.files: list = []            # subprocess log files, read at teardown

    def emit(self, record):
        self.records.append(record)

    def text(self) -> str:
        lines = [f"{r.name} {r.levelname} {r.getMessage()}" for r in self.records]
        return "\n".join(lines + [read_text(f) for f in self.files])

    def faults(self) -> list[str]:
        bad = [self.format(r) for r in self.records if r.levelno >= logging.ERROR or r.exc_info]
        for f in self.files:
            text = read_text(f)
            if "Traceback" in text or " ERROR " in text or "ERROR:" in text:
                bad.append(f"{f}:\n{text[-4000:]}")
        return bad


@pytest.fixture(autouse=True)
def server_log():
    """Fails the test on any exception or error in the server's log (in-process or subprocess)."""
    watch = LogWatch()
    watch.setFormatter(logging.Formatter("%(name)s %(levelname)s %(message)s"))
    root = logging.getLogger()
    level = root.level
    root.addHandler(watch)
    root.setLevel(logging.INFO)    # INFO too: the token test reads everything a server would log
    try:
        yield watch
    finally:
        root.removeHandler(watch)
        root.setLevel(level)
    faults = watch.faults()
    if faults:
        pytest.fail("the server logged errors:\n" + "\n".join(faults), pytrace=False)


@pytest.fixture(scope="session")
def compile_cache():
    """One engine compile cache for the whole run: each shape/activation compiles once (a
    bound well above what the suite meets; the servers' own bound is tested on its own)."""
    from gradscope.engine import CompileCache

    cache = CompileCache(background=False, max_entries=1000, max_bytes=1 << 40)
    yield cache
    cache.close()


@pytest.fixture
def settings_for(tmp_path):
    """Settings(...) on this test's data dir, with a fixed K and overrides."""
    from gradscope.server import Settings

    def make(**overrides):
        base = {"data_dir": tmp_path / "data", "chunk_steps": 16, "idle_pause_s": 600.0, "create_burst": 1000}
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
        # log_config=None: uvicorn's records propagate to the root logger, where `server_log` reads them
        config = uvicorn.Config(app, log_level="info", log_config=None, ws_max_size=1 << 20,
                                ws_per_message_deflate=False, lifespan="on", access_log=True)
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


SERVE = """
import sys
from gradscope.engine import enable_persistent_cache
from gradscope.server import serve

def number(v):  # a setting's value from the command line: an int, a float, or a string (an address)
    for kind in (int, float):
        try:
            return kind(v)
        except ValueError:
            pass
    return v

enable_persistent_cache(sys.argv[1])
serve(port=int(sys.argv[2]), data_dir=sys.argv[3], warm_compile=False, chunk_steps=16, idle_pause_s=600.0,
      **{k: number(v) for k, v in (a.split("=", 1) for a in sys.argv[4:])})
"""


class ServerProcess:
    """`gradscope serve` in its own process (so it can be SIGKILLed), logging to a file."""

    def __init__(self, data_dir, log_path, watch: LogWatch, **overrides):
        self.data_dir, self.log_path, self.overrides = str(data_dir), str(log_path), overrides
        watch.files.append(self.log_path)
        self.proc = None

    def start(self, port: int | None = None) -> ServerProcess:
        """Start (again, on `port` where given: a client that knows the old address reconnects)."""
        self.port = port
        if port is None:
            with socket.socket() as probe:  # a free port; uvicorn binds it itself (SO_REUSEADDR: again after a kill)
                probe.bind(("127.0.0.1", 0))
                self.port = probe.getsockname()[1]
        self.url, self.ws_url = f"http://127.0.0.1:{self.port}", f"ws://127.0.0.1:{self.port}"
        args = [sys.executable, "-c", SERVE, os.environ["GRADSCOPE_TEST_JAX_CACHE"], str(self.port),
                self.data_dir, *(f"{k}={v}" for k, v in self.overrides.items())]
        env = {**os.environ, "PYTHONPATH": os.path.join(os.path.dirname(__file__), "..", "backend")}
        with open(self.log_path, "a") as log:
            self.proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, env=env)
        self.wait_ready()
        return self

    def wait_ready(self, timeout: float = 120.0) -> None:
        """Until /api/health answers; the process has to import jax first."""
        import httpx

        deadline = time.monotonic() + timeout
        while True:
            assert self.proc.poll() is None, read_text(self.log_path)[-3000:]
            try:
                httpx.get(f"{self.url}/api/health", timeout=5).raise_for_status()
                return
            except httpx.TransportError:
                if time.monotonic() > deadline:
                    raise
                try:  # the pause between polls doubles as the check that it has not died
                    self.proc.wait(timeout=0.2)
                except subprocess.TimeoutExpired:
                    pass

    def stop(self, sig=signal.SIGTERM) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(sig)
            self.proc.wait(120)


@pytest.fixture
def server_process(tmp_path, server_log):
    """Factory: server_process(**settings) -> a started ServerProcess on this test's data dir."""
    procs = []

    def start(**overrides):
        p = ServerProcess(tmp_path / "data", tmp_path / f"server{len(procs)}.log", server_log, **overrides)
        procs.append(p)
        return p.start()

    yield start
    for p in procs:
        p.stop()


def ws_open(srv, sid: str, token: str | None = None, **kw):
    """A websockets sync connection to a session; the owner token goes in Sec-WebSocket-Protocol."""
    from websockets.sync.client import connect

    protocols = ["gradscope"] + ([f"bearer.{token}"] if token else [])
    kw.setdefault("max_size", None)  # a browser takes any frame size; a catch-up frame after a restart can pass 1 MiB
    return connect(f"{srv.ws_url}/api/sessions/{sid}/ws", subprotocols=protocols, open_timeout=30, **kw)


def recv_until(ws, pred, timeout: float = 120.0, seen: list | None = None):
    """Messages from a websockets sync connection until pred(msg); returns that message."""
    deadline = time.monotonic() + timeout
    while True:
        msg = json.loads(ws.recv(timeout=max(0.01, deadline - time.monotonic())))
        if seen is not None:
            seen.append(msg)
        if pred(msg):
            return msg
