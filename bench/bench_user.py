"""What users run, against the minimal JAX step: the call a session makes and the call the CLI makes,
each timed whole (the compiled chunk, the device->host transfer, the rows built), interleaved with
bench/reference_step.py in one process; prints a markdown table of ratios.

    python bench/bench_user.py [--widths 64 256] [--rounds 9]

- session call: `Trainer(stats_every=None).run(K)`, as a server's worker drives it (statistics once a call);
- CLI call: `Trainer().run(K)`, as `gradscope run` drives it (statistics every step).
K is the trainer's calibrated chunk (about 30 ms of steps). Ratios, not rates, are the point: the
machine's load moves the rates, and every variant of a round shares it.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "backend"))
sys.path.insert(0, str(ROOT / "bench"))

import jax  # noqa: E402

import reference_step  # noqa: E402
from gradscope.engine import CompileCache, Trainer  # noqa: E402


def variants(width: int) -> tuple[dict, int]:
    config = {"depth": 10, "width": width, "batch_size": 128, "activation": "sigmoid"}
    cache = CompileCache(background=False)
    session = Trainer(config, cache=cache, stats_every=None, specialize=True)
    cli = Trainer(config, cache=cache, stats_every=1, specialize=True)
    k = session.chunk_steps
    shape = session.shape
    params = reference_step.init(jax.random.PRNGKey(0), shape.n_in, shape.depth, shape.width, shape.classes)
    key = jax.random.PRNGKey(1)
    ref = jax.jit(reference_step.make_chunk(k, shape.batch)).lower(params, key, session.x, session.y).compile()
    return {
        "minimal JAX step (bench/reference_step.py)": lambda: jax.block_until_ready(ref(params, key, session.x, session.y)),
        "session call: Trainer(stats_every=None).run(K), rows built": lambda: session.run(k),
        "CLI call: Trainer().run(K), statistics every step, rows built": lambda: cli.run(k),
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


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--widths", type=int, nargs="+", default=[64, 256])
    parser.add_argument("--rounds", type=int, default=9)
    args = parser.parse_args()
    print(f"JAX {jax.__version__} on {jax.default_backend()}; depth 10, batch 128, sigmoid, SGD; "
          f"median of {args.rounds} interleaved rounds\n")
    print("| width | K | variant | steps/s | vs minimal step |\n|---:|---:|---|---:|---:|")
    for width in args.widths:
        calls, k = variants(width)
        got = rates(calls, k, args.rounds)
        ref = next(iter(got.values()))
        for name, rate in got.items():
            print(f"| {width} | {k} | {name} | {rate:,.0f} | {rate / ref:.2f}x |")


if __name__ == "__main__":
    main()
