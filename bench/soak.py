"""Soak: a server meets hundreds of distinct shapes; its memory must level off.

    python bench/soak.py [--shapes 300 --every 25]

Starts `serve()` in its own process (background warm-up on, as `gradscope serve` runs), then
for each of `--shapes` distinct (model, depth, width, batch, activation) creates a running
session, waits for its first stats frame as a viewer, and deletes it: issue 17's measurement,
which took main from 2,121 to 13,213 memory mappings and 721 to 1,919 MiB in 11 shapes (the
server died at 65,530 mappings, `vm.max_map_count`). Prints, every `--every` shapes, the
server's resident memory, its mapping count (/proc/PID/maps), the compile cache's fill
(/api/health) and the time, as a markdown table (BENCHMARKS.md has one).
"""
from __future__ import annotations

import argparse
import itertools
import json
import random
import sys
import tempfile
import time
from pathlib import Path

import httpx
from websockets.sync.client import connect

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_server import recv_until, start_server  # noqa: E402

MLP_ACTIVATIONS = ("relu", "tanh", "sigmoid", "leaky_relu", "elu", "gelu", "swish", "selu", "linear")


def shapes(n: int, seed: int = 0) -> list[dict]:
    """`n` distinct configs: MLPs of many depths, widths, batches and activations, and one in
    six a small RNN, LSTM or GRU."""
    mlp = [{"model": "mlp", "depth": d, "width": w, "batch_size": b, "activation": a, "dataset": "spirals"}
           for d, w, b, a in itertools.product(range(1, 13), (4, 8, 16, 24, 32, 48), (8, 16, 32, 64), MLP_ACTIVATIONS)]
    rec = [{"model": m, "depth": d, "width": w, "batch_size": b, "dataset": "adding", "seq_len": s,
            **({"activation": a} if m == "rnn" else {})}
           for m, d, w, b, s, a in itertools.product(("rnn", "lstm", "gru"), (1, 2), (8, 16), (8, 32), (5, 10),
                                                     ("tanh", "relu"))
           if m == "rnn" or a == "tanh"]
    rng = random.Random(seed)
    rng.shuffle(mlp)
    rng.shuffle(rec)
    out = []
    for i in range(n):
        out.append(rec.pop() if i % 6 == 5 and rec else mlp.pop())
    return out


def memory(pid: int) -> tuple[float, int]:
    """(resident MiB, memory mappings) of a process."""
    status = Path(f"/proc/{pid}/status").read_text()
    rss = next(int(line.split()[1]) for line in status.splitlines() if line.startswith("VmRSS:"))
    maps = sum(1 for _ in open(f"/proc/{pid}/maps"))
    return rss / 1024, maps


def first_frame(http, url, ws_url, config) -> float:
    t0 = time.perf_counter()
    r = http.post(f"{url}/api/sessions", json=config)
    r.raise_for_status()
    d = r.json()
    with connect(f"{ws_url}/api/sessions/{d['id']}/ws", subprotocols=["gradscope"], max_size=None) as ws:
        recv_until(ws, lambda m: m["type"] == "stats", timeout=600)
    seconds = time.perf_counter() - t0
    http.delete(f"{url}/api/sessions/{d['id']}", headers={"Authorization": f"Bearer {d['token']}"}).raise_for_status()
    return seconds


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shapes", type=int, default=300)
    ap.add_argument("--every", type=int, default=25)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        proc, url, ws_url = start_server(Path(tmp), warm_compile=True)
        http = httpx.Client(timeout=600)
        try:
            rss, maps = memory(proc.pid)
            print("| shapes | RSS MiB | mappings | cache entries | cache MiB (est.) | evictions | minutes |")
            print("|---:|---:|---:|---:|---:|---:|---:|")
            print(f"| 0 | {rss:.0f} | {maps} | 0 | 0 | 0 | 0.0 |", flush=True)
            t0, frames = time.perf_counter(), []
            for i, config in enumerate(shapes(args.shapes), 1):
                frames.append(first_frame(http, url, ws_url, config))
                if i % args.every == 0 or i == args.shapes:
                    rss, maps = memory(proc.pid)
                    c = http.get(f"{url}/api/health").json()["compile_cache"]
                    print(f"| {i} | {rss:.0f} | {maps} | {c['entries']} | {c['bytes'] / 2**20:.0f} | {c['evictions']} "
                          f"| {(time.perf_counter() - t0) / 60:.1f} |", flush=True)
            frames.sort()
            print(f"\nfirst frame of a new shape: median {frames[len(frames) // 2]:.2f} s, "
                  f"p95 {frames[int(len(frames) * 0.95)]:.2f} s", flush=True)
            print(json.dumps({"shapes": args.shapes, "rss_mib": round(rss), "mappings": maps}))
        finally:
            http.close()
            proc.terminate()
            proc.wait(60)


if __name__ == "__main__":
    main()
