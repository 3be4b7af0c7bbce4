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
Prints a markdown table of each figure's median; the targets are 1 s (3) and 3 s (2). A new
run's first look (a `preview` message: step 0's statistics at the initial weights, shown while
the run's training step compiles) is timed beside its first trained frame.

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


PREVIEW = True  # --no-preview: servers started with first_look=False (`gradscope serve --no-first-look`), for an A/B


def start(data_dir: Path, cache_dir: Path):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    code = (f"import sys; sys.path.insert(0, {str(BACKEND)!r}); "
            "from gradscope.engine import enable_persistent_cache; from gradscope.server import serve; "
            f"enable_persistent_cache({str(cache_dir)!r}); serve('127.0.0.1', {port}, {str(data_dir)!r}, first_look={PREVIEW})")
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


LOOKS: dict[str, list] = {}  # depth -> seconds from create to the first look (a `preview` message), where one came


def first_frame(url: str, switch: bool = False, depth: int = 10, config: dict | None = None) -> tuple[float, float | None, float | None]:
    """(create -> first frame, a cold switch at once -> its first frame, one once the warm-up is done) in seconds.
    The first look before the first frame (a `preview`: step 0 at the initial weights) goes to LOOKS."""
    t0 = time.perf_counter()
    r = httpx.post(f"{url}/api/sessions", json={**(config or {}), "depth": depth}, timeout=300)
    r.raise_for_status()
    d = r.json()
    ws_url = url.replace("http", "ws") + f"/api/sessions/{d['id']}/ws"
    with connect(ws_url, subprotocols=["gradscope", f"bearer.{d['token']}"], max_size=None) as ws:
        look = []

        def seen(m):
            if m["type"] == "preview" and not look:
                look.append(time.perf_counter() - t0)
            return m["type"] == "stats"

        recv_until(ws, seen)
        created = time.perf_counter() - t0
        LOOKS.setdefault(depth, []).append(look[0] if look else None)
        if not switch:
            return created, None, None
        at_once = switch_to(ws, "elu")
        settled(url)
        return created, at_once, switch_to(ws, "gelu")


def row(name: str, xs: list) -> str:
    """A table row: the median of the runs that had one, then every run ("-": none came)."""
    got = [x for x in xs if x is not None]
    median = f"{statistics.median(got):.2f}" if got else "none"
    return f"| {name} | {median} | {', '.join('-' if x is None else f'{x:.2f}' for x in xs)} |"


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
        print(row(f"depth {depth}: the first look (step 0, before training)", LOOKS.get(depth, [])))
        print(row(f"depth {depth}: the first trained frame", xs))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--no-preview", action="store_true",
                    help="servers that send no first look, to time the first trained frame without one (default: they send it)")
    ap.add_argument("--depths", type=int, nargs="+", default=[10],
                    help="also time a cold start at these depths (each on a fresh server and cache)")
    ap.add_argument("--model", help="the model of the cold starts (its family's defaults fill the rest)")
    ap.add_argument("--config", nargs="+", default=[], metavar="KEY=VALUE",
                    help="config keys of the cold starts (values as JSON: 16, true; anything else a string)")
    args = ap.parse_args()
    global PREVIEW
    PREVIEW = not args.no_preview
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
    print(row("cold start: the first look (step 0, before training)", LOOKS.get(10, [])[0::2]))
    print(row("warm start: the first look", LOOKS.get(10, [])[1::2]))
    for name, xs in rows.items():
        print(row(name, xs))


if __name__ == "__main__":
    main()
