"""First frames as a user meets them, at the default depth 10 (issue 17's targets).

    python bench/first_frame.py [--repeat 3]

Each repeat uses a fresh persistent compile cache directory and two server processes on it,
as `gradscope serve` runs (persistent cache and background warm-up on):
  1. cold start: `POST /api/sessions` (the default config) -> its first stats frame;
  2. cold activation switch: a `set` of an activation nobody compiled yet (elu: not among the
     warmed ones) on that running session -> the first frame trained under it;
  3. warm start: the server restarted on the same cache directory, the same first frame.
Prints a markdown table of each figure's median; the targets are 1 s (3) and 3 s (2).
"""
from __future__ import annotations

import argparse
import json
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
from websockets.sync.client import connect

BACKEND = Path(__file__).resolve().parents[1] / "backend"


def start(data_dir: Path, cache_dir: Path):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    code = (f"import sys; sys.path.insert(0, {str(BACKEND)!r}); "
            "from gradscope.engine import enable_persistent_cache; from gradscope.server import serve; "
            f"enable_persistent_cache({str(cache_dir)!r}); serve('127.0.0.1', {port}, {str(data_dir)!r})")
    proc = subprocess.Popen([sys.executable, "-W", "ignore", "-c", code], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    while True:
        try:
            if httpx.get(f"{url}/api/health").status_code == 200:
                return proc, url
        except httpx.HTTPError:
            time.sleep(0.05)


def recv_until(ws, pred, timeout=300.0):
    deadline = time.monotonic() + timeout
    while True:
        msg = json.loads(ws.recv(timeout=max(0.01, deadline - time.monotonic())))
        if pred(msg):
            return msg


def first_frame(url: str, switch: str | None = None) -> tuple[float, float | None]:
    """(create -> first frame, set activation `switch` -> its first frame) in seconds."""
    t0 = time.perf_counter()
    d = httpx.post(f"{url}/api/sessions", json={}, timeout=300).json()
    ws_url = url.replace("http", "ws") + f"/api/sessions/{d['id']}/ws"
    with connect(ws_url, subprotocols=["gradscope", f"bearer.{d['token']}"], max_size=None) as ws:
        recv_until(ws, lambda m: m["type"] == "stats")
        created = time.perf_counter() - t0
        if switch is None:
            return created, None
        t1 = time.perf_counter()
        ws.send(json.dumps({"type": "set", "id": "switch", "changes": {"activation": switch}}))
        recv_until(ws, lambda m: m.get("id") == "switch")
        recv_until(ws, lambda m: m["type"] == "stats")
        return created, time.perf_counter() - t1


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    rows = {"cold start": [], "cold activation switch (elu)": [], "warm start (second server)": []}
    for _ in range(args.repeat):
        with tempfile.TemporaryDirectory() as tmp:
            for run in (1, 2):
                proc, url = start(Path(tmp) / f"data{run}", Path(tmp) / "jax")
                try:
                    created, switched = first_frame(url, "elu" if run == 1 else None)
                finally:
                    proc.terminate()
                    proc.wait(60)
                if run == 1:
                    rows["cold start"].append(created)
                    rows["cold activation switch (elu)"].append(switched)
                else:
                    rows["warm start (second server)"].append(created)
    print("| depth 10, default config | median s | runs |")
    print("|---|---:|---|")
    for name, xs in rows.items():
        print(f"| {name} | {statistics.median(xs):.2f} | {', '.join(f'{x:.2f}' for x in xs)} |")


if __name__ == "__main__":
    main()
