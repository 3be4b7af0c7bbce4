"""Server benchmarks against a real uvicorn on loopback; prints a markdown table.

    python bench/bench_server.py [--depth 6 --width 32 --batch 64 --seconds 5]

set -> first frame reflecting it (p50/p95), frames/s to 1 and 10 clients, steps/s of one
session vs eight at once, history bytes per session after 100,000 steps, and the first
frame on a fresh server (empty compile cache): from `POST /api/sessions` to the first
stats frame, right after the server answers and once its start-up compiles are done.
"""
from __future__ import annotations

import argparse
import json
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
import numpy as np
from websockets.sync.client import connect

BACKEND = Path(__file__).resolve().parents[1] / "backend"


def start_server(data_dir: Path, warm_compile=False):
    """`serve()` in its own process, so the clients here do not share its GIL. No persistent
    compile cache (the CLI's `serve` enables one; the Python entry point does not)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    code = (f"import sys; sys.path.insert(0, {str(BACKEND)!r}); from gradscope.server import serve; "
            f"serve('127.0.0.1', {port}, {str(data_dir)!r}, max_running=9, idle_pause_s=3600, warm_compile={warm_compile})")
    proc = subprocess.Popen([sys.executable, "-W", "ignore::DeprecationWarning", "-c", code],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    for _ in range(600):
        try:
            if httpx.get(f"{url}/api/health").status_code == 200:
                break
        except httpx.HTTPError:
            time.sleep(0.1)
    return proc, url, f"ws://127.0.0.1:{port}"


def recv_until(ws, pred, timeout=120.0):
    deadline = time.monotonic() + timeout
    while True:
        msg = json.loads(ws.recv(timeout=max(0.01, deadline - time.monotonic())))
        if pred(msg):
            return msg


def set_latency(ws_url, d, n=40):
    out = []
    with connect(f"{ws_url}/api/sessions/{d['id']}/ws", subprotocols=["gradscope", f"bearer.{d['token']}"],
                 max_size=None) as ws:
        recv_until(ws, lambda m: m["type"] == "boundary")  # its first one compiles: not part of a set
        for i in range(n):
            t0 = time.perf_counter()
            ws.send(json.dumps({"type": "set", "id": i, "changes": {"learning_rate": 0.1 + 0.001 * (i % 2)}}))
            ack = recv_until(ws, lambda m, i=i: m["type"] == "ack" and m["id"] == i)
            recv_until(ws, lambda m, ack=ack: m["type"] == "stats" and m["step"][-1] >= ack["step"])
            out.append(time.perf_counter() - t0)
    return np.array(out) * 1000


def frames_per_second(ws_url, d, clients, seconds):
    counts = [0] * clients
    ready = threading.Barrier(clients + 1)

    def watch(i):
        with connect(f"{ws_url}/api/sessions/{d['id']}/ws", max_size=None) as ws:
            recv_until(ws, lambda m: m["type"] == "stats")
            ready.wait()
            end = time.monotonic() + seconds
            while time.monotonic() < end:
                try:
                    text = ws.recv(timeout=max(0.01, end - time.monotonic()))
                except TimeoutError:
                    break
                counts[i] += text.startswith('{"type":"stats"')  # no parsing: clients stay cheap

    threads = [threading.Thread(target=watch, args=(i,)) for i in range(clients)]
    for t in threads:
        t.start()
    ready.wait()
    for t in threads:
        t.join()
    return np.array(counts) / seconds


def steps_per_second(url, ids, seconds):
    step = lambda sid: httpx.get(f"{url}/api/sessions/{sid}", timeout=60).json()["step"]
    s0, t0 = [step(s) for s in ids], time.perf_counter()
    time.sleep(seconds)
    s1, t1 = [step(s) for s in ids], time.perf_counter()
    return (np.array(s1) - np.array(s0)) / (t1 - t0)


def control(url, d, action):
    r = httpx.post(f"{url}/api/sessions/{d['id']}/control", json={"action": action},
                   headers={"Authorization": f"Bearer {d['token']}"}, timeout=120)
    r.raise_for_status()


def first_frame(depth: int, settle: float) -> float:
    """Seconds from `POST /api/sessions` ({"depth": depth}, the rest default) to the first
    stats frame, on a fresh server process with an empty compile cache, `settle` seconds
    after it first answers (0: at once; its start-up compiles of the default setup are then
    still running)."""
    with tempfile.TemporaryDirectory() as tmp:
        proc, url, ws_url = start_server(Path(tmp), warm_compile=True)
        try:
            time.sleep(settle)
            t0 = time.perf_counter()
            d = httpx.post(f"{url}/api/sessions", json={"depth": depth}, timeout=120).json()
            with connect(f"{ws_url}/api/sessions/{d['id']}/ws", max_size=None) as ws:
                recv_until(ws, lambda m: m["type"] == "stats")
            return time.perf_counter() - t0
        finally:
            proc.terminate()
            proc.wait(60)


def first_frame_rows(repeats=3):
    rows = []
    for depth in (10, 200):
        for settle in (0.0, 10.0):
            seconds = [first_frame(depth, settle) for _ in range(repeats)]
            when = "right after it answers" if settle == 0 else f"{settle:.0f} s after it answers"
            rows.append((f"fresh server, POST -> first stats frame, depth {depth}, {when}",
                         f"median {np.median(seconds):.2f} s (runs: {', '.join(f'{x:.2f}' for x in seconds)})"))
    return rows


def serving_rows(args):
    cfg = {"depth": args.depth, "width": args.width, "batch_size": args.batch}
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        proc, url, ws_url = start_server(Path(tmp))
        try:
            a = httpx.post(f"{url}/api/sessions", json=cfg, timeout=60).json()
            lat = set_latency(ws_url, a)
            rows.append(("set -> first frame reflecting it", f"p50 {np.percentile(lat, 50):.1f} ms, "
                         f"p95 {np.percentile(lat, 95):.1f} ms (n={len(lat)})"))
            for n in (1, 10):
                fps = frames_per_second(ws_url, a, n, args.seconds)
                rows.append((f"frames/s per client, {n} client(s)", f"mean {fps.mean():.1f}, min {fps.min():.1f}"))
            one = steps_per_second(url, [a["id"]], args.seconds)[0]
            rows.append(("steps/s, one session", f"{one:,.0f}"))
            others = [httpx.post(f"{url}/api/sessions", json={**cfg, "seed": i + 1}, timeout=60).json()
                      for i in range(7)]
            for d in others:  # wait until each has trained (compile done) before timing
                while httpx.get(f"{url}/api/sessions/{d['id']}").json()["step"] == 0:
                    time.sleep(0.1)
            eight = steps_per_second(url, [a["id"]] + [d["id"] for d in others], args.seconds)
            rows.append(("steps/s, eight at once", f"total {eight.sum():,.0f}; per session "
                         f"min {eight.min():,.0f}, max {eight.max():,.0f}"))
            for d in others:
                control(url, d, "pause")
            t0 = time.perf_counter()
            while (info := httpx.get(f"{url}/api/sessions/{a['id']}").json())["step"] < args.steps:
                if time.perf_counter() - t0 > 600:
                    break
                time.sleep(0.5)
            n_rows = len(httpx.get(f"{url}/api/sessions/{a['id']}/history", timeout=300).json()["step"])
            rows.append((f"history bytes after {info['step']:,} steps",
                         f"{info['history_bytes'] / 2**20:.2f} MiB ({n_rows:,} rows)"))
        finally:
            proc.terminate()
            proc.wait(60)
    return rows


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--depth", type=int, default=6)
    ap.add_argument("--width", type=int, default=32)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--steps", type=int, default=100_000)
    ap.add_argument("--first-frame-only", action="store_true", help="only the fresh-server first frames")
    ap.add_argument("--no-first-frame", action="store_true", help="skip the fresh-server first frames (12 server starts)")
    args = ap.parse_args()
    rows = [] if args.no_first_frame else first_frame_rows()
    if not args.first_frame_only:
        rows += serving_rows(args)
    print(f"| measure ({args.depth}x{args.width}, batch {args.batch}; first frames at width 64, batch 128) | result |\n|---|---|")
    for k, v in rows:
        print(f"| {k} | {v} |")


if __name__ == "__main__":
    main()
