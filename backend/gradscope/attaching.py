"""`gradscope.attach`: a monitored run recorded to a file, posted to a server, or both; and
`upload`, which posts a recorded file (`gradscope view FILE`).

    gs = gradscope.attach("my run", server="http://localhost:8000")  # the link is printed
    gs = gradscope.attach("my run", serve=True)                      # a local server, in this process
    gs = gradscope.attach("my run", out="my-run.jsonl")              # no server: the file only

The recorder itself (`Run`, monitoring.py) stands on the standard library, JAX and numpy; this
module is where a run meets the server: starting one in a thread for `serve=True` (the server's
modules load only then).
"""
from __future__ import annotations

import json
import sys
import threading
from pathlib import Path

from .monitoring import POST_RECORDS, Run, http_json, session_config

_local: dict = {}  # the one local server of this process (serve=True), started once
_local_lock = threading.Lock()


def attach(name: str = "run", out: str | Path | None = None, *, server: str | None = None,
           session: str | None = None, token: str | None = None, serve: bool = False, every: int = 1) -> Run:
    """Start recording a run wrapped in `gradscope.optax.monitor`; `publish` after each step.

    - `out`: the JSON Lines file. Default: `<name>.jsonl` in the working directory when there is
      no server, none when there is one (pass a path to have both).
    - `server`: a gradscope server's address. The run's session is made there at the first post
      and its link printed; `session` and `token` continue a session made before.
    - `serve`: start a local server in this process (once; it lives as long as the process)
      and post there.
    - `every`: publish every Nth step only.
    """
    if serve:
        if server is not None:
            raise ValueError("serve=True starts its own server: give serve or server, not both")
        server = local_server()
    if out is None and server is None:
        out = Path("".join(c if c.isalnum() or c in "-_." else "-" for c in name) + ".jsonl")
    return Run(name, out, every=every, server=server, session=session, token=token)


def local_server(host: str = "127.0.0.1", port: int = 0, data_dir: str | Path | None = None) -> str:
    """Start the gradscope server in a daemon thread of this process (once) and return its
    address; `port` 0 picks a free one. Its sessions are kept in `data_dir` (default: a
    temporary directory)."""
    with _local_lock:
        if "url" not in _local:
            from .server import serve_in_thread

            _local["url"], _local["server"] = serve_in_thread(host, port, data_dir)
            print(f"gradscope: serving at {_local['url']}", file=sys.stderr, flush=True)
        return _local["url"]


def upload(path: str | Path, server: str, name: str | None = None) -> str:
    """Post a recorded file (from `attach` without a server, or `gradscope run --out`) to
    `server` as a finished attached run; returns its page's address."""
    lines = Path(path).read_text(encoding="utf-8").splitlines()
    if not lines:
        raise ValueError(f"{path}: empty file: expected a header line and records")
    header = json.loads(lines[0])
    records = [r for r in (json.loads(line) for line in lines[1:] if line.strip()) if "set" not in r]
    first = records[0] if records else {}
    info = header.get("attached")
    if isinstance(info, dict) and "knobs" in info:  # attach's header
        layers, knobs = list(info.get("layers") or []), dict(info.get("knobs") or {})
        probes = list(first.get("probes") or [])
        run_name = name or info.get("name") or Path(path).stem
    elif "config" in header:  # gradscope run --out: the built-in model's layers, by number
        n = len(first.get("grad_norm") or [])
        layers = [f"layer {i + 1}" for i in range(n - 1)] + ["output"] if n else []
        probes = [f"z{i + 1}" for i in range(len(first.get("delta_norm") or []))]
        cfg = header["config"]
        knobs = {}
        run_name = name or f"{cfg.get('model', 'run')} {Path(path).stem}"
        records = [{**r, "probes": probes} for r in records]
    else:
        raise ValueError(f"{path}: not a gradscope record file (its first line has neither 'attached' nor 'config')")
    config = session_config(run_name, layers, probes, knobs)
    config["knobs"] = []  # a recording has no script to take a change
    created = http_json("POST", f"{server.rstrip('/')}/api/sessions", config)
    sid, token = created["id"], created["token"]
    for i in range(0, max(len(records), 1), POST_RECORDS):
        batch = records[i:i + POST_RECORDS]
        http_json("POST", f"{server.rstrip('/')}/api/sessions/{sid}/rows",
                  {"records": batch, "done": i + POST_RECORDS >= len(records)}, token)
    return created.get("url") or f"{server.rstrip('/')}/s/{sid}"
