"""What users run, against the minimal JAX step: the call a session makes and the call the CLI makes,
each timed whole (the compiled chunk, the device->host transfer, the rows built), interleaved with
bench/reference_step.py in one process; then `gradscope run` end to end as a subprocess, PyTorch
eager with hooks, and a fresh server's first frame. Prints markdown tables of ratios.

    python bench/bench_user.py [--widths 64 256] [--rounds 9] [--cli-steps 10000] [--quick]

- session call: `Trainer(stats_every=None).run(K)`, as a server's worker drives it (statistics once a call);
- CLI call: `Trainer().run(K)`, as `gradscope run` drives it (statistics every step);
- CLI call with `--stats grad_norm,delta_norm` (SELECTED): the two chain-rule profiles every step.
K is the trainer's calibrated chunk (about 30 ms of steps). Ratios, not rates, are the point: the
machine's load moves the rates, and every variant of a round shares it.
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "backend"))
sys.path.insert(0, str(ROOT / "bench"))

import jax  # noqa: E402

import reference_step  # noqa: E402
from gradscope.engine import CompileCache, Trainer  # noqa: E402

SELECTED = ("grad_norm", "delta_norm")
PARTS = ("calls", "cli", "torch", "first")


def variants(width: int) -> tuple[dict, int]:
    config = {"depth": 10, "width": width, "batch_size": 128, "activation": "sigmoid"}
    cache = CompileCache(background=False)
    session = Trainer(config, cache=cache, stats_every=None, specialize=True)
    cli = Trainer(config, cache=cache, stats_every=1, specialize=True)
    selected = Trainer(config, cache=cache, stats_every=1, specialize=True, stats=SELECTED)
    k = session.chunk_steps
    shape = session.shape
    params = reference_step.init(jax.random.PRNGKey(0), shape.n_in, shape.depth, shape.width, shape.classes)
    key = jax.random.PRNGKey(1)
    ref = jax.jit(reference_step.make_chunk(k, shape.batch)).lower(params, key, session.x, session.y).compile()
    return {
        "minimal JAX step (bench/reference_step.py)": lambda: jax.block_until_ready(ref(params, key, session.x, session.y)),
        "session call: Trainer(stats_every=None).run(K), rows built": lambda: session.run(k),
        "CLI call: Trainer().run(K), statistics every step, rows built": lambda: cli.run(k),
        f"CLI call, `--stats {','.join(SELECTED)}`: those every step, rows built": lambda: selected.run(k),
    }, k


def rates(calls: dict, k: int, rounds: int) -> dict:
    times = {name: [] for name in calls}
    for fn in calls.values():
        fn()  # the first calls after a compile allocate
        fn()
    for _ in range(rounds):
        for name, fn in calls.items():
            t0 = time.perf_counter()
            fn()  # each returns host values or blocks: a sync point
            times[name].append(time.perf_counter() - t0)
    return {name: k / statistics.median(ts) for name, ts in times.items()}


def cli_seconds(steps: int, width: int, cache_dir: str, fmt: str = "jsonl", stats=()) -> float:
    """`gradscope run` as a user types it, statistics every step (`stats`: only those), to a file: wall seconds."""
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [sys.executable, "-m", "gradscope", "run", "--steps", str(steps), "--every", "1", "-q",
               "--set", f"width={width}", "--out", str(Path(tmp) / f"run.{fmt}")] + (["--stats", ",".join(stats)] if stats else [])
        env = {**os.environ, "PYTHONPATH": str(ROOT / "backend"), "GRADSCOPE_CACHE": cache_dir}
        t0 = time.perf_counter()
        subprocess.run(cmd, env=env, check=True, cwd=tmp)
        return time.perf_counter() - t0


def cli_table(widths, steps: int) -> None:
    """The CLI end to end (start-up included), and without start-up: the slope between a 1-step and
    a `steps`-step run on a warm persistent compile cache; against the minimal step's rate measured
    in this process just before and after (a subprocess cannot interleave with it)."""
    print(f"\n| width | `gradscope run --steps {steps} --every 1 --out f.jsonl` | start-up (1 step) | "
          "steps/s without start-up | minimal step, steps/s | vs minimal step |\n|---:|---|---:|---:|---:|---:|")
    with tempfile.TemporaryDirectory() as cache_dir:
        for width in widths:
            for stats in ((), SELECTED):
                cli_seconds(1, width, cache_dir, stats=stats)  # fills the persistent cache: the start-up measured is a warm one
            calls, k = variants(width)
            ref = {"minimal": next(iter(calls.values()))}
            before = rates(ref, k, 5)["minimal"]
            runs = {stats: (cli_seconds(1, width, cache_dir, stats=stats), cli_seconds(steps, width, cache_dir, stats=stats))
                    for stats in ((), SELECTED)}
            after = rates(ref, k, 5)["minimal"]
            minimal = (before + after) / 2
            for stats, (one, whole) in runs.items():
                rate = (steps - 1) / (whole - one)
                what = f"{width}, `--stats {','.join(stats)}`" if stats else str(width)
                print(f"| {what} | {whole:.1f} s ({steps / whole:,.0f} steps/s) | {one:.1f} s | {rate:,.0f} | {minimal:,.0f} | "
                      f"{rate / minimal:.2f}x |")


def torch_table(steps: int, cli_total: float | None = None) -> None:
    """PyTorch eager with hooks, the same statistics every step (bench_engine's loop), its rate
    for the step alone (no file written): an upper bound on what it does end to end."""
    import bench_engine

    try:
        import torch  # noqa: F401
    except ImportError:
        print("\nPyTorch is not installed (`pip install 'gradscope[torch]'` or torch's CPU wheel): its row is skipped.")
        return
    config = {"depth": 10, "width": 64, "batch_size": 128, "activation": "sigmoid"}
    torch_rate = bench_engine.torch_steps_per_second(config, seconds=3.0, every=1)
    with tempfile.TemporaryDirectory() as cache_dir:
        cli_seconds(1, 64, cache_dir)
        total = cli_seconds(steps, 64, cache_dir)
    print(f"\n| depth 10, width 64, statistics every step, {steps} steps | seconds | vs gradscope |\n|---|---:|---:|")
    print(f"| `gradscope run` end to end (start-up, compile from the disk cache, file written) | {total:.1f} | 1.00x |")
    print(f"| PyTorch eager + hooks, the steps alone (no start-up, no file) | {steps / torch_rate:.1f} | "
          f"{(steps / torch_rate) / total:.2f}x slower |")


def first_frame_table(depths) -> None:
    import first_frame

    first_frame.cold_starts(list(depths), 1)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--widths", type=int, nargs="+", default=[64, 256])
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--cli-steps", type=int, default=10_000)
    parser.add_argument("--quick", action="store_true", help="the in-process calls only")
    parser.add_argument("--parts", nargs="+", choices=PARTS, default=list(PARTS), help="which tables (default: all)")
    args = parser.parse_args()
    print(f"JAX {jax.__version__} on {jax.default_backend()}; depth 10, batch 128, sigmoid, SGD; "
          f"median of {args.rounds} interleaved rounds\n")
    parts = set(args.parts) & ({"calls"} if args.quick else set(PARTS))
    if "calls" in parts:
        calls_table(args.widths, args.rounds)
    if "cli" in parts:
        cli_table(args.widths, args.cli_steps)
    if "torch" in parts:
        torch_table(args.cli_steps)
    if "first" in parts:
        print()
        first_frame_table((10, 200))


def calls_table(widths, rounds) -> None:
    print("| width | K | variant | steps/s | vs minimal step |\n|---:|---:|---|---:|---:|")
    for width in widths:
        calls, k = variants(width)
        got = rates(calls, k, rounds)
        ref = next(iter(got.values()))
        for name, rate in got.items():
            print(f"| {width} | {k} | {name} | {rate:,.0f} | {rate / ref:.2f}x |")


if __name__ == "__main__":
    main()
