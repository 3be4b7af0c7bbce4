"""Load on both backends: N running sessions, a viewer each, against `gradscope serve` in process
and `gradscope serve --ray ADDRESS` on a loopback Ray cluster started here (a head with no
CPUs and two worker nodes), one after the other on the same machine.

Reports per backend: stats frames per second per viewer, steps per second per session, the
front's CPU (the server process alone, from /proc: on Ray the training is elsewhere), and a
knob's round trip (an owner's `set` of the learning rate until its ack: page -> front ->
trainer -> front -> page, which waits for the chunk in progress), and the step-to-page latency
(a frame's arrival at its viewer minus its `t`, when the node measured its last row: on Ray
that is the actor's answer, the front's relay and the WebSocket). Not a test: a measurement.

    PYTHONPATH=backend python bench/bench_ray.py --sessions 4 8 --duration 30
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
from websockets.asyncio.client import connect

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_load import bench_env, free_port, viewer, wait_healthy  # noqa: E402

TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS  # utime + stime


def start_front(data_dir: str, ray_address: str | None, sessions: int) -> tuple[subprocess.Popen, str]:
    """`gradscope serve` (with `--ray ray_address` where given) in its own process."""
    port = free_port()
    cmd = [sys.executable, "-m", "gradscope", "serve", "--port", str(port), "--data-dir", data_dir,
           "--max-running", str(sessions), "--create-burst", "1000"]
    if ray_address:
        cmd += ["--ray", ray_address]
    log_path = os.path.join(data_dir, "server.log")
    with open(log_path, "w") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=bench_env())
    url = f"http://127.0.0.1:{port}"
    wait_healthy(proc, url, log_path, timeout=180)
    return proc, url


async def round_trips(url: str, d: dict, n: int) -> list[float]:
    ws_url = f"{url.replace('http', 'ws')}/api/sessions/{d['id']}/ws"
    out = []
    async with connect(ws_url, subprotocols=["gradscope", f"bearer.{d['token']}"], max_size=None) as ws:
        for i in range(n):
            t = time.perf_counter()
            await ws.send(json.dumps({"type": "set", "id": f"rt{i}", "changes": {"learning_rate": 0.1 + 0.01 * (i % 2)}}))
            while True:
                m = json.loads(await ws.recv())
                if m.get("type") in ("ack", "error") and m.get("id") == f"rt{i}":
                    break
            out.append(time.perf_counter() - t)
    return out


async def measure(url: str, pid: int, n: int, duration: float, config: dict) -> dict:
    async with httpx.AsyncClient(timeout=300) as http:
        made = []
        for i in range(n):
            r = await http.post(f"{url}/api/sessions", json={**config, "seed": i})
            r.raise_for_status()
            made.append(r.json())
        while True:  # every session trained its first steps (actors started, programs compiled)
            infos = [(await http.get(f"{url}/api/sessions/{d['id']}")).json() for d in made]
            if all(i["step"] > 0 for i in infos):
                break
            await asyncio.sleep(0.5)
        counts, errors, stop, ages = [[0] for _ in made], [], asyncio.Event(), []
        ws = url.replace("http", "ws")
        tasks = [asyncio.create_task(viewer(f"{ws}/api/sessions/{d['id']}/ws", counts[i], errors, stop, ages))
                 for i, d in enumerate(made)]
        await asyncio.sleep(2.0)  # viewers connected and streaming
        for c in counts:
            c[-1] = 0
        ages.clear()
        steps0 = [(await http.get(f"{url}/api/sessions/{d['id']}")).json()["step"] for d in made]
        cpu0, t0 = cpu_seconds(pid), time.monotonic()
        await asyncio.sleep(duration)
        elapsed, cpu = time.monotonic() - t0, cpu_seconds(pid) - cpu0
        fps = [c[-1] / elapsed for c in counts]
        steps = [(await http.get(f"{url}/api/sessions/{d['id']}")).json()["step"] for d in made]
        stop.set()
        await asyncio.gather(*tasks)
        trips = await round_trips(url, made[0], 10)
        for d in made:
            await http.delete(f"{url}/api/sessions/{d['id']}", headers={"Authorization": f"Bearer {d['token']}"})
    rates = [(b - a) / elapsed for a, b in zip(steps0, steps, strict=True)]
    return {"sessions": n, "fps_per_viewer_median": round(statistics.median(fps), 1), "fps_min": round(min(fps), 1),
            "steps_per_s_per_session_median": round(statistics.median(rates)), "steps_per_s_total": round(sum(rates)),
            "front_cpu_percent": round(100 * cpu / elapsed, 1),
            "knob_round_trip_ms_median": round(1000 * statistics.median(trips), 1),
            "step_to_page_ms_median": round(1000 * statistics.median(ages), 1),
            "step_to_page_ms_p95": round(1000 * statistics.quantiles(ages, n=20)[-1], 1), "errors": errors[:5]}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sessions", type=int, nargs="+", default=[4, 8])
    p.add_argument("--duration", type=float, default=30.0)
    p.add_argument("--node-cpus", type=int, default=4, help="CPUs each of the two worker nodes declares")
    p.add_argument("--depth", type=int, default=6)
    p.add_argument("--width", type=int, default=32)
    args = p.parse_args()
    config = {"depth": args.depth, "width": args.width, "batch_size": 64}
    import ray
    from ray.cluster_utils import Cluster

    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 0})
    for _ in range(2):
        cluster.add_node(num_cpus=args.node_cpus)
    cluster.wait_for_nodes()
    results = []
    try:
        for n in args.sessions:
            for name, address in (("in-process", None), ("ray", cluster.address)):
                data = tempfile.mkdtemp(prefix="gradscope-bench-ray-")
                proc, url = start_front(data, address, n)
                try:
                    row = {"backend": name, **asyncio.run(measure(url, proc.pid, n, args.duration, config))}
                finally:
                    proc.send_signal(signal.SIGTERM)
                    proc.wait(120)
                print(json.dumps(row), flush=True)
                results.append(row)
    finally:
        ray.shutdown()
        cluster.shutdown()
    print(json.dumps({"cpus": os.cpu_count(), "config": config, "results": results}, indent=1))


if __name__ == "__main__":
    main()
