"""The GAN step against a minimal JAX GAN step of the same nets (issue 20's speed goal: 1.2x or less).

    python bench/bench_gan.py [--widths 64 128] [--batch 256] [--rounds 9]

Minimal: G and D as plain MLPs (G relu, D leaky relu, the same widths and depths), the
non-saturating loss, Adam on both, one D update then one G update per step, batches drawn from the
same 2,000 ring8 points, K steps in one `lax.scan`: no statistic, no knob, no clipping. Against it,
what users run, interleaved in one process and timed whole (compiled call, transfer, rows built):
- session call: `Trainer(stats_every=None).run(K)` (every statistic once a call, as a server drives it);
- CLI call: `Trainer().run(K)` (every statistic every step, as `gradscope run --every 1`).
K is the trainer's calibrated chunk. Ratios, not rates, are the point: every variant of a round
shares the machine's load.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "backend"))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import optax  # noqa: E402

from gradscope.engine import CompileCache, Trainer  # noqa: E402


def mlp_init(key, sizes):
    keys = jax.random.split(key, len(sizes) - 1)
    init = jax.nn.initializers.he_normal()
    return [{"w": init(k, (a, b)), "b": jnp.zeros((b,))} for k, a, b in zip(keys, sizes[:-1], sizes[1:], strict=True)]


def mlp(params, x, act):
    for layer in params[:-1]:
        x = act(x @ layer["w"] + layer["b"])
    return x @ params[-1]["w"] + params[-1]["b"]


def minimal_chunk(k: int, batch: int, z_dim: int):
    """K plain GAN steps (non-saturating loss, Adam, one D and one G update) in one scan."""
    opt = optax.adam(1e-3)
    g_act, d_act = jax.nn.relu, jax.nn.leaky_relu

    def d_loss(d, g, real, z):
        fake = mlp(g, z, g_act)
        return jnp.mean(jax.nn.softplus(-mlp(d, real, d_act))) + jnp.mean(jax.nn.softplus(mlp(d, fake, d_act)))

    def g_loss(g, d, z):
        return jnp.mean(jax.nn.softplus(-mlp(d, mlp(g, z, g_act), d_act)))

    def step(carry, key):
        g, d, gs, ds, data = carry
        k1, k2, k3 = jax.random.split(key, 3)
        real = data[jax.random.randint(k1, (batch,), 0, data.shape[0])]
        grads = jax.grad(d_loss)(d, g, real, jax.random.normal(k2, (batch, z_dim)))
        upd, ds = opt.update(grads, ds, d)
        d = optax.apply_updates(d, upd)
        grads = jax.grad(g_loss)(g, d, jax.random.normal(k3, (batch, z_dim)))
        upd, gs = opt.update(grads, gs, g)
        g = optax.apply_updates(g, upd)
        return (g, d, gs, ds, data), None

    def chunk(g, d, gs, ds, data, key):
        (g, d, gs, ds, _), _ = jax.lax.scan(step, (g, d, gs, ds, data), jax.random.split(key, k))
        return g, d, gs, ds

    return chunk, opt


def variants(width: int, batch: int, depth: int = 3, z_dim: int = 2):
    config = {"model": "gan", "dataset": "ring8", "width": width, "batch_size": batch, "g_depth": depth, "d_depth": depth,
              "z_dim": z_dim, "optimizer": "adam"}
    cache = CompileCache(background=False)
    session = Trainer(config, cache=cache, stats_every=None)
    cli = Trainer(config, cache=cache, stats_every=1)
    k = session.chunk_steps
    key = jax.random.PRNGKey(0)
    g = mlp_init(jax.random.fold_in(key, 1), [z_dim] + [width] * depth + [2])
    d = mlp_init(jax.random.fold_in(key, 2), [2] + [width] * depth + [1])
    chunk, opt = minimal_chunk(k, batch, z_dim)
    gs, ds, data = opt.init(g), opt.init(d), session.x
    ref = jax.jit(chunk).lower(g, d, gs, ds, data, key).compile()
    return {
        "minimal JAX GAN step (scan of K, no statistics)": lambda: jax.block_until_ready(ref(g, d, gs, ds, data, key)),
        "session call: Trainer(stats_every=None).run(K), rows built": lambda: session.run(k),
        "CLI call: Trainer().run(K), every statistic every step": lambda: cli.run(k),
    }, k


def rates(calls: dict, k: int, rounds: int) -> dict:
    times = {name: [] for name in calls}
    for fn in calls.values():
        fn()
        fn()
    for _ in range(rounds):
        for name, fn in calls.items():
            t0 = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t0)
    return {name: k / statistics.median(ts) for name, ts in times.items()}


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--widths", type=int, nargs="+", default=[64, 128])
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--rounds", type=int, default=9)
    args = parser.parse_args()
    print(f"JAX {jax.__version__} on {jax.default_backend()}; GAN on ring8, G and D 3 hidden layers, batch {args.batch}, "
          f"Adam, n_critic 1; median of {args.rounds} interleaved rounds\n")
    print("| width | K | variant | steps/s | minimal / this (time ratio) |\n|---:|---:|---|---:|---:|")
    for width in args.widths:
        calls, k = variants(width, args.batch)
        got = rates(calls, k, args.rounds)
        ref = next(iter(got.values()))
        for name, rate in got.items():
            print(f"| {width} | {k} | {name} | {rate:,.0f} | {ref / rate:.2f}x |")


if __name__ == "__main__":
    main()
