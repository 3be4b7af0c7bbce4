"""Engine speed, measured side by side in one process; prints a markdown report.

    python bench/bench_engine.py [--quick]

Ratios, not absolute numbers, are the point: every variant runs in the same rounds,
interleaved, and the median of the rounds is reported.
"""

import argparse
import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np

from gradscope.config import make_config
from gradscope.core.train import make_chunk
from gradscope.engine import UNROLL, Trainer, knobs_of

ROUNDS = 7


def compiled(tr, *, with_stats=True, specialized=False, unroll=UNROLL, steps=None):
    steps = steps or tr.max_steps
    chunk = make_chunk(tr.config.activation, tr.config.optimizer, tr.shape, steps, unroll, with_stats)
    args = (tr.state, knobs_of(tr.config), tr.x, tr.y, np.int32(steps))
    if specialized:  # the knobs baked in as constants: what a build for one config would be
        knobs = knobs_of(tr.config)
        fn = jax.jit(lambda s, x, y, n: chunk(s, knobs, x, y, n))
        exe = fn.lower(args[0], args[2], args[3], args[4]).compile()
        return lambda: exe(args[0], args[2], args[3], args[4]), exe
    exe = jax.jit(chunk).lower(*args).compile()
    return lambda: exe(*args), exe


def steps_per_second(variants, steps):
    """Interleaved rounds; returns {name: median steps/s}."""
    times = {name: [] for name in variants}
    for fn in variants.values():
        jax.block_until_ready(fn())  # warm-up
    for _ in range(ROUNDS):
        for name, fn in variants.items():
            t0 = time.perf_counter()
            jax.block_until_ready(fn())  # sync point: timing
            times[name].append(time.perf_counter() - t0)
    return {name: steps / statistics.median(ts) for name, ts in times.items()}


def torch_steps_per_second(config, seconds=3.0):
    """A PyTorch CPU eager loop doing the same work, statistics gathered with hooks."""
    import torch

    torch.manual_seed(0)
    tr = Trainer(config)
    x_all, y_all = torch.tensor(np.asarray(tr.x)), torch.tensor(np.asarray(tr.y)).long()
    d, w = config["depth"], config["width"]
    layers = [torch.nn.Linear(x_all.shape[1], w)] + [torch.nn.Linear(w, w) for _ in range(d - 1)] + [torch.nn.Linear(w, 2)]
    for layer in layers:
        torch.nn.init.xavier_normal_(layer.weight)
        torch.nn.init.zeros_(layer.bias)
    params = [p for layer in layers for p in layer.parameters()]
    opt = torch.optim.SGD(params, lr=config.get("learning_rate", 0.1))

    def step():
        idx = torch.randint(0, len(x_all), (config["batch_size"],))
        h, zs, deltas, acts = x_all[idx], [], [], []
        for layer in layers[:-1]:
            z = layer(h)
            z.register_hook(lambda g: deltas.append(g.norm()))
            h = torch.sigmoid(z)
            zs.append(z)
            acts.append(h)
        logits = layers[-1](h)
        logits.register_hook(lambda g: deltas.append(g.norm()))
        loss = torch.nn.functional.cross_entropy(logits, y_all[idx])
        opt.zero_grad()
        loss.backward()
        with torch.no_grad():
            grad_norms = [layer.weight.grad.norm() for layer in layers]
            before = [layer.weight.detach().clone() for layer in layers]
            stats = [(a.mean(), a.std(), (a * (1 - a) < 0.05).float().mean(), (a == 0).all(0).float().mean()) for a in acts]
            hist = [torch.histc(torch.log10(layer.weight.grad.abs() + 1e-30), 32, -12, 4) for layer in layers]
        opt.step()
        with torch.no_grad():
            ratios = [(layer.weight - b).norm() / b.norm() for layer, b in zip(layers, before)]
        return loss.item(), [float(g) for g in grad_norms], [float(v) for v in deltas], stats, hist, ratios

    for _ in range(5):
        step()
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        step()
        n += 1
    return n / (time.perf_counter() - t0)


def matmul_flops_per_second(n=2048):
    a = jnp.ones((n, n), jnp.float32)
    f = jax.jit(lambda a: a @ a)
    jax.block_until_ready(f(a))
    ts = []
    for _ in range(5):
        t0 = time.perf_counter()
        jax.block_until_ready(f(a))
        ts.append(time.perf_counter() - t0)
    return 2 * n**3 / min(ts)


def step_flops(shape):
    """Matmul FLOPs of one training step, counted by hand: XLA's cost_analysis counts a
    scan body once, not once per iteration. Forward z = h W (2 B fan_in fan_out), backward
    dW = h^T delta and delta W^T (twice that); elementwise work and statistics not counted."""
    dims = [shape.n_in] + [shape.width] * shape.depth + [shape.classes]
    return 6 * shape.batch * sum(a * b for a, b in zip(dims[:-1], dims[1:]))


def compile_seconds(depth, width=64):
    tr = Trainer(dict(depth=depth, width=width), chunk_steps=16)
    chunk = make_chunk(tr.config.activation, tr.config.optimizer, tr.shape, 16, UNROLL)
    args = (tr.state, knobs_of(tr.config), tr.x, tr.y, np.int32(16))
    t0 = time.perf_counter()
    jax.jit(chunk).lower(*args).compile()
    return time.perf_counter() - t0


def size_report(width, quick):
    config = dict(depth=10, width=width, batch_size=128, activation="sigmoid")
    tr = Trainer(config)
    steps = tr.max_steps
    full, exe = compiled(tr)
    variants = {
        "live knobs, all statistics": full,
        "live knobs, no statistics": compiled(tr, with_stats=False)[0],
        "specialized, all statistics": compiled(tr, specialized=True)[0],
        "live knobs, 4 hidden layers per scan iteration": compiled(tr, unroll=4)[0],
        "live knobs, hidden layers fully unrolled": compiled(tr, unroll=tr.config.depth)[0],
    }
    rates = steps_per_second(variants, steps)
    flops = step_flops(tr.shape)
    base = rates["live knobs, all statistics"]
    rows = [(name, rate, rate / base) for name, rate in rates.items()]
    torch_rate = None if quick else torch_steps_per_second(config)
    return rows, flops, torch_rate, base


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="skip PyTorch and the deep compile")
    args = parser.parse_args()
    peak = matmul_flops_per_second()
    print(f"# gradscope engine benchmark\n\nJAX {jax.__version__} on {jax.default_backend()} ({jax.devices()[0]}); "
          f"a 2048x2048 jnp.dot runs at {peak / 1e9:.1f} GFLOP/s.\n")
    for width in (64, 256):
        rows, flops, torch_rate, base = size_report(width, args.quick)
        print(f"## depth 10, width {width}, batch 128 (sigmoid, SGD)\n")
        print("| variant | steps/s | relative to live knobs + statistics |\n|---|---:|---:|")
        for name, rate, rel in rows:
            print(f"| {name} | {rate:,.0f} | {rel:.2f} |")
        if torch_rate:
            print(f"| PyTorch eager + hooks (same statistics) | {torch_rate:,.0f} | {torch_rate / base:.2f} |")
        stats_cost = rows[1][1] / rows[0][1] - 1
        print(f"\n- statistics cost: {stats_cost:+.1%} of the step rate without them")
        print(f"- live knobs vs specialized: {rows[2][1] / rows[0][1] - 1:+.1%}")
        if torch_rate:
            print(f"- speed-up over PyTorch eager: {base / torch_rate:.1f}x")
        print(f"- {flops / 1e6:.2f} MFLOP per step; achieved {flops * base / 1e9:.2f} GFLOP/s = {flops * base / peak:.1%} of the matmul rate\n")
    depths = (10, 50) if args.quick else (10, 50, 200)
    seconds = {d: compile_seconds(d) for d in depths}
    print("## compile time (width 64, one chunk)\n\n| depth | seconds | relative to depth 10 |\n|---:|---:|---:|")
    for d, s in seconds.items():
        print(f"| {d} | {s:.2f} | {s / seconds[10]:.2f} |")


if __name__ == "__main__":
    main()
