"""Engine speed, measured side by side in one process; prints a markdown report.

    python bench/bench_engine.py [--quick]

Ratios, not absolute numbers, are the point: every variant runs in the same rounds,
interleaved, and the median of the rounds is reported. The reference is the minimal JAX
MLP step of bench/reference_step.py, the issue's yardstick.
"""

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import reference_step  # noqa: E402
from gradscope.core.train import GENERIC, make_chunk  # noqa: E402
from gradscope.engine import UNROLL, CompileCache, Trainer, knobs_of, spec_of  # noqa: E402

ROUNDS = 9


def compiled(tr, *, with_stats=True, specialized=True, every=None, unroll=UNROLL, steps=None):
    """The chunk as a server runs it: `steps` per call (its calibrated chunk), measured once
    per call (`every` None) or every `every`-th step; built for the config's knob values
    (`specialized`) or generic (what trains in the seconds after a knob change)."""
    steps = steps or tr.chunk_steps
    spec = spec_of(tr.config) if specialized else GENERIC
    chunk = make_chunk(tr.config.activation, tr.config.optimizer, tr.shape, steps, unroll, with_stats, spec=spec)
    data = (tr.x, tr.y, tr.x_val, tr.y_val, np.int32(steps), np.int32(every or steps))
    knobs = knobs_of(tr.config)
    exe = jax.jit(chunk).lower(tr.state, knobs, *data).compile()
    box = [tr.state]

    def call():
        # each call goes on from the last one's state, as a session's do: the held-out
        # evaluation then runs at its own rate (every VAL_EVERY steps), not on every call
        box[0], out = exe(box[0], knobs, *data)
        return out
    return call, exe


def reference(tr, steps):
    """The minimal JAX step (bench/reference_step.py) at the same size, K steps per call."""
    params = reference_step.init(jax.random.PRNGKey(0), tr.shape.n_in, tr.shape.depth, tr.shape.width, tr.shape.classes)
    key = jax.random.PRNGKey(1)
    exe = jax.jit(reference_step.make_chunk(steps, tr.shape.batch)).lower(params, key, tr.x, tr.y).compile()
    return lambda: exe(params, key, tr.x, tr.y)


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


def torch_steps_per_second(config, seconds=3.0, every=1):
    """The better of PyTorch on 1 and on 2 intra-op threads: on a shared machine its OpenMP
    threads starve (1.4 steps/s on 2 threads against 69 on 1 under load 20)."""
    import torch

    rates = []
    for threads in (1, 2):
        torch.set_num_threads(threads)
        rates.append(_torch_rate(config, seconds, every))
    return max(rates)


def _torch_rate(config, seconds, every=1):
    """A PyTorch CPU eager loop doing the same work, statistics gathered with hooks: the
    per-layer norms (weights, updates, gradients at z, u = z here, h, biases), activation
    moments, the three histograms, distance from init, and a held-out evaluation every 50 steps.
    `every`: the statistics on every `every`-th step only (hooks registered on those steps),
    as gradscope measures them; the loss on every step."""
    import torch

    torch.manual_seed(0)
    tr = Trainer(config, cache=CompileCache(background=False))
    x_all, y_all = torch.tensor(np.asarray(tr.x)), torch.tensor(np.asarray(tr.y)).long()
    x_val, y_val = torch.tensor(np.asarray(tr.x_val)), torch.tensor(np.asarray(tr.y_val)).long()
    d, w = config["depth"], config["width"]
    layers = [torch.nn.Linear(x_all.shape[1], w)] + [torch.nn.Linear(w, w) for _ in range(d - 1)] + [torch.nn.Linear(w, 2)]
    for layer in layers:
        torch.nn.init.xavier_normal_(layer.weight)
        torch.nn.init.zeros_(layer.bias)
    w0 = [layer.weight.detach().clone() for layer in layers]
    params = [p for layer in layers for p in layer.parameters()]
    opt = torch.optim.SGD(params, lr=config.get("learning_rate", 0.1))
    count = [0]

    def forward(h, grads=None):
        zs, acts = [], []
        for layer in layers[:-1]:
            z = layer(h)
            h = torch.sigmoid(z)
            if grads is not None:
                z.register_hook(lambda g: grads.append(g.norm()))
                h.register_hook(lambda g: grads.append(g.norm()))
            zs.append(z)
            acts.append(h)
        logits = layers[-1](h)
        if grads is not None:
            logits.register_hook(lambda g: grads.append(g.norm()))
        return logits, zs, acts

    def evaluate():
        """The held-out evaluation every 50 steps, measured or not (as gradscope's)."""
        if count[0] % 50:
            return None
        with torch.no_grad():
            val_logits = forward(x_val)[0]
            return torch.nn.functional.cross_entropy(val_logits, y_val).item(), (val_logits.argmax(1) == y_val).float().mean().item()

    def step():
        idx = torch.randint(0, len(x_all), (config["batch_size"],))
        if count[0] % every:  # a step that only trains
            val = evaluate()
            logits = forward(x_all[idx])[0]
            loss = torch.nn.functional.cross_entropy(logits, y_all[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            count[0] += 1
            return loss.item(), val
        grads = []
        logits, zs, acts = forward(x_all[idx], grads)
        loss = torch.nn.functional.cross_entropy(logits, y_all[idx])
        opt.zero_grad()
        loss.backward()
        with torch.no_grad():
            grad_norms = [layer.weight.grad.norm() for layer in layers]
            bias_norms = [layer.bias.grad.norm() for layer in layers]
            before = [layer.weight.detach().clone() for layer in layers]
            dist = [(b - a).norm() / a.norm() for a, b in zip(w0, before, strict=True)]
            stats = [(a.mean(), a.std(), (a * (1 - a) < 0.05).float().mean(), (a == 0).all(0).float().mean()) for a in acts]
            hist = [torch.histc(torch.log10(layer.weight.grad.abs() + 1e-30), 32, -12, 4) for layer in layers]
            z_hist = [torch.histc(z[:8], 48, -6, 6) for z in zs]
            h_hist = [torch.histc(a[:8], 48, -1, 1) for a in acts]
            val = evaluate()
        opt.step()
        count[0] += 1
        with torch.no_grad():
            ratios = [(layer.weight - b).norm() / b.norm() for layer, b in zip(layers, before, strict=True)]
        return (loss.item(), [float(g) for g in grad_norms + bias_norms + dist], [float(v) for v in grads], stats, hist,
                z_hist, h_hist, ratios, val)

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
    return 6 * shape.batch * sum(a * b for a, b in zip(dims[:-1], dims[1:], strict=True))


def compile_seconds(depth, width=64):
    tr = Trainer(dict(depth=depth, width=width), chunk_steps=16, cache=CompileCache(background=False))
    chunk = make_chunk(tr.config.activation, tr.config.optimizer, tr.shape, 16, UNROLL, spec=spec_of(tr.config))
    args = (tr.state, knobs_of(tr.config), tr.x, tr.y, tr.x_val, tr.y_val, np.int32(16), np.int32(16))
    t0 = time.perf_counter()
    jax.jit(chunk).lower(*args).compile()
    return time.perf_counter() - t0


FIRST_FRAME = """
import time, sys
t0 = time.perf_counter()
from gradscope.engine import CompileCache, Trainer
t1 = time.perf_counter()
tr = Trainer(dict(depth=int(sys.argv[1])), cache=CompileCache(background=True), specialize=True)  # as a server builds it
tr.run()
print(t1 - t0, time.perf_counter() - t1)
"""


def first_frame_seconds(depth):
    """From Trainer construction to the first chunk's statistics, in a fresh process
    (empty compile cache); the import of jax and gradscope is reported apart."""
    paths = [str(Path(__file__).resolve().parents[1] / "backend"), os.environ.get("PYTHONPATH", "")]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in paths if p)}  # the caller's path kept
    out = subprocess.run([sys.executable, "-c", FIRST_FRAME, str(depth)], capture_output=True, text=True, env=env, check=True)
    imports, frame = map(float, out.stdout.split())
    return imports, frame


def size_report(width, quick):
    config = dict(depth=10, width=width, batch_size=128, activation="sigmoid")
    tr = Trainer(config, cache=CompileCache(background=False), specialize=True)
    steps = tr.chunk_steps
    variants = {
        "what ships: built for the knob values, measured once per chunk": compiled(tr)[0],
        "the same, no statistics": compiled(tr, with_stats=False)[0],
        "minimal JAX step (bench/reference_step.py)": reference(tr, steps),
        "generic build (after a knob change, until its own build is ready)": compiled(tr, specialized=False)[0],
        "measuring every step (stats_every=1, the CLI's default)": compiled(tr, every=1)[0],
    }
    rates = steps_per_second(variants, steps)
    torch_rates = None if quick else (torch_steps_per_second(config, every=1), torch_steps_per_second(config, every=steps))
    return rates, step_flops(tr.shape), torch_rates, steps


GOALS = {64: (0.75, 0.15, 8.0), 256: (0.85, 0.05, 3.0)}  # vs reference, statistics cost, vs PyTorch


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="skip PyTorch, the specialized build and depth 200")
    args = parser.parse_args()
    peak = matmul_flops_per_second()
    print(f"# gradscope engine benchmark\n\nJAX {jax.__version__} on {jax.default_backend()} ({jax.devices()[0]}); "
          f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}; a 2048x2048 jnp.dot runs at {peak / 1e9:.1f} GFLOP/s.\n")
    for width in (64, 256):
        rates, flops, torch_rate, steps = size_report(width, args.quick)
        names = list(rates)
        ours, bare, ref = rates[names[0]], rates[names[1]], rates[names[2]]
        print(f"## depth 10, width {width}, batch 128 (sigmoid, SGD), {steps} steps per call (the calibrated chunk)\n")
        print("| variant | steps/s | relative to what ships |\n|---|---:|---:|")
        for name, rate in rates.items():
            print(f"| {name} | {rate:,.0f} | {rate / ours:.2f} |")
        if torch_rate:
            print(f"| PyTorch eager + hooks, statistics every step | {torch_rate[0]:,.0f} | {torch_rate[0] / ours:.2f} |")
            print(f"| PyTorch eager + hooks, statistics every {steps}th step | {torch_rate[1]:,.0f} | {torch_rate[1] / ours:.2f} |")
        goal_ref, goal_cost, goal_torch = GOALS[width]
        print(f"\n- against the minimal JAX step: {ours / ref:.2f}x (goal >= {goal_ref}x); without statistics {bare / ref:.2f}x")
        print(f"- statistics cost: {1 - ours / bare:.0%} of the step rate without them (goal <= {goal_cost:.0%})")
        if torch_rate:
            print(f"- against PyTorch eager: {ours / torch_rate[0]:.1f}x its loop with statistics every step, "
                  f"{ours / torch_rate[1]:.1f}x with them as often as ours (goal >= {goal_torch}x)")
        print(f"- {flops / 1e6:.2f} MFLOP per step; achieved {flops * ours / 1e9:.2f} GFLOP/s = "
              f"{flops * ours / peak:.1%} of the matmul rate\n")
    depths = (10, 50) if args.quick else (10, 50, 200)
    print("## compile and first frame (width 64)\n\n"
          "| depth | compile one chunk (s) | fresh process: construction to first stats (s) | imports (s) |\n|---:|---:|---:|---:|")
    for d in depths:
        imports, frame = first_frame_seconds(d)
        print(f"| {d} | {compile_seconds(d):.2f} | {frame:.2f} | {imports:.2f} |")


if __name__ == "__main__":
    main()
