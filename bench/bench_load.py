"""Load: N running sessions and M WebSocket viewers against `gradscope serve` for a while.

Reports, per window: stats frames each viewer received (min / median / max), the server's
resident memory; then RSS growth after warm-up, steps trained, and every error seen (viewer
disconnects, HTTP failures, errors in the server log). Not a test: a measurement.

    PYTHONPATH=backend python bench/bench_load.py --duration 600 --sessions 16 --viewers 50
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
from websockets.asyncio.client import connect

SERVE = """
import sys
from gradscope.server import serve
overrides = {"history_bytes": int(sys.argv[4])} if int(sys.argv[4]) else {}
serve(port=int(sys.argv[1]), data_dir=sys.argv[2], warm_compile=False, max_running=int(sys.argv[3]),
      max_sessions_per_client=10_000, create_burst=10_000, **overrides)
"""


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def bench_env() -> dict:
    """This environment with the repository's backend/ first on PYTHONPATH."""
    paths = [str(Path(__file__).resolve().parents[1] / "backend"), os.environ.get("PYTHONPATH", "")]
    return {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in paths if p)}


def wait_healthy(proc: subprocess.Popen, url: str, log_path: str, timeout: float = 120.0) -> None:
    """Until the server at `url` answers /api/health; its log's end if it exits or never answers."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            httpx.get(f"{url}/api/health", timeout=5).raise_for_status()
            return
        except httpx.TransportError:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the server did not start: {Path(log_path).read_text(errors='replace')[-2000:]}") from None
            time.sleep(0.2)  # a benchmark's startup poll


def start_server(data_dir: str, log_path: str, max_running: int, history_bytes: int = 0) -> tuple[subprocess.Popen, str]:
    """The server in its own process (`history_bytes` 0: the default budget per session)."""
    port = free_port()
    with open(log_path, "w") as log:
        proc = subprocess.Popen([sys.executable, "-c", SERVE, str(port), data_dir, str(max_running), str(history_bytes)],
                                stdout=log, stderr=subprocess.STDOUT, env=bench_env())
    url = f"http://127.0.0.1:{port}"
    wait_healthy(proc, url, log_path)
    return proc, url


STATS = '{"type":"stats","t":'  # how every stats frame begins (server/hub.py encode_stats)


async def viewer(ws_url: str, counts: list, errors: list, stop: asyncio.Event, ages: list | None = None) -> None:
    """Counts stats frames into counts[-1] (the current window) until `stop`; `ages`: each
    frame's step-to-page latency in seconds (its arrival here minus its `t`, when its last row
    was measured: one machine's clock, as on a loopback cluster)."""
    try:
        async with connect(ws_url, subprotocols=["gradscope"], max_size=None) as ws:
            while not stop.is_set():
                try:
                    text = await asyncio.wait_for(ws.recv(), timeout=1.0)
                except TimeoutError:
                    continue
                if text.startswith(STATS):
                    counts[-1] += 1
                    if ages is not None:  # '{"type":"stats","t":1765...,' : the stamp without parsing the rest
                        stamp = text[len(STATS):text.index(",", len(STATS))]
                        if stamp != "null":
                            ages.append(time.time() - float(stamp))
                elif '"type":"error"' in text:
                    errors.append(f"viewer got {text[:200]}")
    except Exception as exc:  # a measurement: every failure is reported, none stops the run
        errors.append(f"viewer {ws_url[-30:]}: {type(exc).__name__}: {exc}")


async def run(args) -> dict:
    data = tempfile.mkdtemp(prefix="gradscope-load-")
    log_path = os.path.join(data, "server.log")
    proc, url = start_server(data, log_path, args.sessions, args.history_bytes)
    errors: list[str] = []
    try:
        async with httpx.AsyncClient(timeout=120) as http:
            config = {"depth": args.depth, "width": args.width, "batch_size": args.batch}
            sessions = []
            for i in range(args.sessions):
                r = await http.post(f"{url}/api/sessions", json={**config, "seed": i})
                r.raise_for_status()
                sessions.append(r.json())
            ws_base = url.replace("http", "ws")
            counts = [[0] for _ in range(args.viewers)]
            stop = asyncio.Event()
            tasks = [asyncio.create_task(viewer(f"{ws_base}/api/sessions/{sessions[i % len(sessions)]['id']}/ws",
                                                counts[i], errors, stop)) for i in range(args.viewers)]
            windows, t0 = [], time.monotonic()
            while time.monotonic() - t0 < args.duration:
                await asyncio.sleep(args.interval)
                per = [c[-1] / args.interval for c in counts]
                for c in counts:
                    c.append(0)
                health = (await http.get(f"{url}/api/health")).json()
                infos = [(await http.get(f"{url}/api/sessions/{s['id']}")).json() for s in sessions]
                windows.append({"t": round(time.monotonic() - t0), "rss_mb": round(rss_mb(proc.pid), 1),
                                "history_mb": round(sum(i["history_bytes"] for i in infos) / 2**20, 1),
                                "steps": sum(i["step"] for i in infos),
                                "fps_min": round(min(per), 1), "fps_median": round(statistics.median(per), 1),
                                "fps_max": round(max(per), 1), "running": health["running"],
                                "writes_pending": health.get("writes_pending")})
                print(json.dumps(windows[-1]), flush=True)
            stop.set()
            await asyncio.gather(*tasks)
            steps = [(await http.get(f"{url}/api/sessions/{s['id']}")).json()["step"] for s in sessions]
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(120)
    log = Path(log_path).read_text(errors="replace")
    errors += [line for line in log.splitlines() if "Traceback" in line or "ERROR" in line]
    warm = [w for w in windows if w["t"] >= args.warmup] or windows
    return {"sessions": args.sessions, "viewers": args.viewers, "duration_s": args.duration,
            "config": config, "cpus": os.cpu_count(),
            "fps_per_viewer_min_over_run": min(w["fps_min"] for w in windows),
            "fps_per_viewer_median_over_run": statistics.median(w["fps_median"] for w in windows),
            "windows_with_a_starved_viewer": sum(w["fps_min"] == 0 for w in windows),
            "rss_after_warmup_mb": warm[0]["rss_mb"], "rss_end_mb": windows[-1]["rss_mb"],
            "rss_growth_after_warmup_mb": round(windows[-1]["rss_mb"] - warm[0]["rss_mb"], 1),
            "rss_last_half_mb": [min(w["rss_mb"] for w in windows[len(windows) // 2:]),
                                 max(w["rss_mb"] for w in windows[len(windows) // 2:])],
            "history_end_mb": windows[-1]["history_mb"],
            "steps_trained_total": sum(steps), "errors": errors[:20], "error_count": len(errors)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--duration", type=float, default=600.0, help="seconds of load (default 600)")
    p.add_argument("--interval", type=float, default=10.0, help="seconds per reported window")
    p.add_argument("--warmup", type=float, default=60.0, help="seconds before RSS growth is measured")
    p.add_argument("--sessions", type=int, default=16)
    p.add_argument("--viewers", type=int, default=50)
    p.add_argument("--depth", type=int, default=4)
    p.add_argument("--width", type=int, default=32)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--history-bytes", type=int, default=0, help="per-session history budget (0: the server's default)")
    summary = asyncio.run(run(p.parse_args()))
    print(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()
