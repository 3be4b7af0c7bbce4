"""First frames as a user meets them, at the default depth 10 (issue 17's targets).

    python bench/first_frame.py [--repeat 3]

Each repeat uses a fresh persistent compile cache directory and two server processes on it,
as `gradscope serve` runs (persistent cache and background warm-up on):
  1. cold start: `POST /api/sessions` (the default config) -> its first stats frame;
  2. cold activation switch: a `set` of an activation nobody compiled yet (elu: not among the
     warmed ones) on that running session -> the first frame trained under it, at once after the
     first frame (the start-up warm-up still compiling beside it) and, for another activation
     (gelu), once the warm-up is done (/api/health: nothing pending), as a class that watched
     sigmoid for a while meets it;
  3. warm start: the server restarted on the same cache directory, the same first frame.
Prints a markdown table of each figure's median; the targets are 1 s (3) and 3 s (2).

    python bench/first_frame.py --depths 10 200             # cold starts of the default model
    python bench/first_frame.py --model cnn --depths 20     # a cold depth-20 CNN (its defaults: digits)
    python bench/first_frame.py --config model=cnn width=16 dataset=shapes --depths 20

With --depths other than 10 alone, --model or --config: cold starts only, each on a fresh server
and cache, POST of the config at once -> its first stats frame.
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


def switch_to(ws, activation: str) -> float:
    """Seconds from a `set` of `activation` to the first frame trained under it."""
    t1 = time.perf_counter()
    ws.send(json.dumps({"type": "set", "id": activation, "changes": {"activation": activation}}))
    recv_until(ws, lambda m: m.get("id") == activation)
    recv_until(ws, lambda m: m["type"] == "stats")
    return time.perf_counter() - t1


def settled(url: str) -> None:
    """Until the compile cache has nothing queued or compiling (a bench polls; tests never do)."""
    while httpx.get(f"{url}/api/health").json()["compile_cache"]["pending"]:
        time.sleep(0.1)


def parse_config(pairs: list[str]) -> dict:
    """["model=cnn", "depth=20", "residual=true"] -> {"model": "cnn", "depth": 20, "residual": True}"""
    out = {}
    for pair in pairs:
        key, _, text = pair.partition("=")
        try:
            out[key] = json.loads(text)
        except json.JSONDecodeError:
            out[key] = text
    return out


def first_frame(url: str, switch: bool = False, depth: int = 10, config: dict | None = None) -> tuple[float, float | None, float | None]:
    """(create -> first frame, a cold switch at once -> its first frame, one once the warm-up is done) in seconds."""
    t0 = time.perf_counter()
    r = httpx.post(f"{url}/api/sessions", json={**(config or {}), "depth": depth}, timeout=300)
    r.raise_for_status()
    d = r.json()
    ws_url = url.replace("http", "ws") + f"/api/sessions/{d['id']}/ws"
    with connect(ws_url, subprotocols=["gradscope", f"bearer.{d['token']}"], max_size=None) as ws:
        recv_until(ws, lambda m: m["type"] == "stats")
        created = time.perf_counter() - t0
        if not switch:
            return created, None, None
        at_once = switch_to(ws, "elu")
        settled(url)
        return created, at_once, switch_to(ws, "gelu")


def cold_starts(depths: list[int], repeat: int, config: dict | None = None) -> None:
    """A fresh server on an empty cache for each depth and repeat: POST at once -> first frame."""
    times = {d: [] for d in depths}
    for _ in range(repeat):
        for depth in depths:
            with tempfile.TemporaryDirectory() as tmp:
                proc, url = start(Path(tmp) / "data", Path(tmp) / "jax")
                try:
                    times[depth].append(first_frame(url, depth=depth, config=config)[0])
                finally:
                    proc.terminate()
                    proc.wait(60)
    given = ", ".join(f"{k}={v}" for k, v in (config or {}).items())
    print(f"| cold start, a fresh server, POST at once{f' ({given})' if given else ''} | median s | runs |\n|---|---:|---|")
    for depth, xs in times.items():
        print(f"| depth {depth} | {statistics.median(xs):.2f} | {', '.join(f'{x:.2f}' for x in xs)} |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--depths", type=int, nargs="+", default=[10],
                    help="also time a cold start at these depths (each on a fresh server and cache)")
    ap.add_argument("--model", help="the model of the cold starts (its family's defaults fill the rest)")
    ap.add_argument("--config", nargs="+", default=[], metavar="KEY=VALUE",
                    help="config keys of the cold starts (values as JSON: 16, true; anything else a string)")
    args = ap.parse_args()
    config = {**parse_config(args.config), **({"model": args.model} if args.model else {})}
    if args.depths != [10] or config:
        depths = [config.pop("depth")] if "depth" in config and args.depths == [10] else args.depths
        cold_starts(depths, args.repeat, config)
        return
    rows = {"cold start": [], "cold activation switch at once (elu)": [], "cold activation switch, warm-up done (gelu)": [],
            "warm start (second server)": []}
    for _ in range(args.repeat):
        with tempfile.TemporaryDirectory() as tmp:
            for run in (1, 2):
                proc, url = start(Path(tmp) / f"data{run}", Path(tmp) / "jax")
                try:
                    created, at_once, later = first_frame(url, switch=run == 1)
                finally:
                    proc.terminate()
                    proc.wait(60)
                if run == 1:
                    rows["cold start"].append(created)
                    rows["cold activation switch at once (elu)"].append(at_once)
                    rows["cold activation switch, warm-up done (gelu)"].append(later)
                else:
                    rows["warm start (second server)"].append(created)
    print("| depth 10, default config | median s | runs |")
    print("|---|---:|---|")
    for name, xs in rows.items():
        print(f"| {name} | {statistics.median(xs):.2f} | {', '.join(f'{x:.2f}' for x in xs)} |")


if __name__ == "__main__":
    main()
