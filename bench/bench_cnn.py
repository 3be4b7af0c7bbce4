"""The CNN's speed against a minimal JAX CNN (issue 19): the shipping chunk, every statistic,
against the same net trained with nothing else, interleaved rounds, median rates.

The reference: the same conv stack (3x3, SAME, unrolled, bias, relu), global average pooling and a
Dense readout, softmax cross-entropy, plain SGD; one step per compiled call, straight-line code,
on a random batch drawn like gradscope's (one key and one gather). No statistics, knobs,
BatchNorm, residual or dropout paths. One step a call on both sides: XLA's CPU backend runs the
backward convolutions inside a loop (lax.scan, fori_loop) or a conditional 30-50x slower, so
neither side loops (the shipping chunk's K is 1, families.cnn).

PyTorch eager (the optional extra; skipped where torch is not installed): the same net from the
same initial weights, the same batch drawn per step from the same digits, plain SGD, with the
statistics a user would gather with hooks on every step: forward hooks on each conv layer and the
readout that hook their outputs' gradients (dL/dz per layer), post-accumulate-grad hooks on the
weights (||dL/dW|| per layer), then each weight's norm and its update ratio ||dW||/||W|| after the
step, and the held-out evaluation every 50 steps, as gradscope's; every figure fetched once a step.
That is a subset of what gradscope's chunk measures (no activation moments, channel norms, signal
propagation or saliency): it favours torch. It runs on 1 and on 2 intra-op threads (on a shared
machine its OpenMP threads can starve), interleaved with the JAX variants in the same process.

    python bench/bench_cnn.py [--depth 20] [--width 16] [--batch 128] [--rounds 9] [--calls 5]
"""
from __future__ import annotations

import argparse
import os
import time

import jax
import numpy as np
import optax

from gradscope.config import make_config
from gradscope.core.train import VAL_EVERY
from gradscope.core.train_cnn import make_chunk
from gradscope.families import family_of


def reference_chunk(steps, batch, learning_rate=0.1):
    def loss(params, x, y):
        h = x
        for w, b in params["conv"]:
            h = jax.nn.relu(jax.lax.conv_general_dilated(h, w, (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC")) + b)
        w, b = params["out"]
        return optax.softmax_cross_entropy_with_integer_labels(h.mean((1, 2)) @ w + b, y).mean()

    def step(params, key, x_all, y_all):
        key, k_batch = jax.random.split(key)
        idx = jax.random.randint(k_batch, (batch,), 0, x_all.shape[0])
        value, grads = jax.value_and_grad(loss)(params, x_all[idx], y_all[idx])
        return jax.tree.map(lambda p, g: p - learning_rate * g, params, grads), key, value
    return step


def torch_step(params, x, y, x_val, y_val, batch, learning_rate=0.1):
    """One PyTorch eager step a call, every statistic above gathered with hooks; None without torch."""
    try:
        import torch
    except ImportError:
        return None
    import torch.nn.functional as F  # noqa: N812

    torch.manual_seed(0)
    nchw = lambda a: torch.tensor(np.asarray(a).transpose(0, 3, 1, 2).copy())  # noqa: E731
    x, x_val = nchw(x), nchw(x_val)
    y, y_val = torch.tensor(np.asarray(y)).long(), torch.tensor(np.asarray(y_val)).long()
    convs = []
    for layer in params["conv"]:
        w = np.asarray(layer["w"])  # HWIO -> OIHW
        conv = torch.nn.Conv2d(w.shape[2], w.shape[3], 3, padding=1)
        with torch.no_grad():
            conv.weight.copy_(torch.tensor(w.transpose(3, 2, 0, 1).copy()))
            conv.bias.copy_(torch.tensor(np.asarray(layer["b"])))
        convs.append(conv)
    out = torch.nn.Linear(*params["out"]["w"].shape)
    with torch.no_grad():
        out.weight.copy_(torch.tensor(np.asarray(params["out"]["w"]).T.copy()))
        out.bias.copy_(torch.tensor(np.asarray(params["out"]["b"])))
    layers = [*convs, out]
    weights = [m.weight for m in layers]
    opt = torch.optim.SGD([p for m in layers for p in m.parameters()], lr=learning_rate)
    n = len(layers)
    delta, grad = [None] * n, [None] * n
    measuring = [True]

    def on_output(k):
        def hook(module, inputs, z):
            if measuring[0] and z.requires_grad:
                z.register_hook(lambda g: delta.__setitem__(k, g.norm()))
        return hook

    def on_grad(k):
        return lambda w: grad.__setitem__(k, w.grad.norm())

    for k, m in enumerate(layers):
        m.register_forward_hook(on_output(k))
        m.weight.register_post_accumulate_grad_hook(on_grad(k))

    def forward(h):
        for conv in convs:
            h = F.relu(conv(h))
        return out(h.mean((2, 3)))

    count = [0]

    def step():
        val = None
        if count[0] % VAL_EVERY == 0:  # the held-out evaluation, as gradscope's
            measuring[0] = False
            with torch.no_grad():
                logits = forward(x_val)
                val = torch.stack([F.cross_entropy(logits, y_val), (logits.argmax(1) == y_val).float().mean()])
            measuring[0] = True
        idx = torch.randint(0, len(x), (batch,))
        yb = y[idx]
        logits = forward(x[idx])
        loss = F.cross_entropy(logits, yb)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        with torch.no_grad():
            before = [w.detach().clone() for w in weights]
            opt.step()
            w_norm = torch.stack([w.norm() for w in weights])
            ratio = torch.stack([(w - b).norm() for w, b in zip(weights, before, strict=True)]) / torch.stack([b.norm() for b in before])
            scalars = torch.stack([loss.detach(), (logits.argmax(1) == yb).float().mean()])
            stats = torch.stack([torch.stack(grad), torch.stack(delta), w_norm, ratio])
        count[0] += 1
        return scalars.tolist(), stats.tolist(), None if val is None else val.tolist()

    def call(threads):
        def go():
            torch.set_num_threads(threads)
            return step()
        return go
    return call


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--depth", type=int, default=20)
    ap.add_argument("--width", type=int, default=16)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--rounds", type=int, default=9)
    ap.add_argument("--calls", type=int, default=5, help="calls (steps) of each variant in a round, timed together")
    a = ap.parse_args()
    c = make_config({"model": "cnn", "dataset": "digits", "depth": a.depth, "width": a.width, "batch_size": a.batch,
                     "activation": "relu", "init": "he_normal"})
    family = family_of("cnn")
    shape = family.shape_of(c)
    x, y, x_val, y_val = family.data(c, shape)
    state = family.initial_state(c, shape)
    steps = family.max_chunk_steps(shape)
    ours = jax.jit(make_chunk("relu", "sgd", shape, steps, family.spec_of(c)))
    plain = jax.jit(make_chunk("relu", "sgd", shape, steps, family.spec_of(c), with_stats=False))
    rest = family.chunk_args(state, c, x, y, x_val, y_val, steps, 1)[1:]
    box = {"ours": state, "plain": state}

    def call(name, exe):
        # each call goes on from the last one's state, as a session's do: the held-out evaluation
        # then runs at its own rate (every 50 steps), not on every call from step 0
        def go():
            box[name], out = exe(box[name], *rest)
            return out
        return go

    ref = jax.jit(reference_chunk(steps, a.batch))
    ref_params = {"conv": [(layer["w"], layer["b"]) for layer in state.params["conv"]],
                  "out": (state.params["out"]["w"], state.params["out"]["b"])}
    variants = {
        "reference (no statistics)": lambda: ref(ref_params, jax.random.PRNGKey(0), x, y),
        "gradscope, every statistic (what ships: server and CLI)": call("ours", ours),
        "gradscope, the loss alone (its knobs, BatchNorm, residual and dropout paths)": call("plain", plain),
    }
    torch_call = torch_step(state.params, x, y, x_val, y_val, a.batch)
    if torch_call is None:
        print("PyTorch is not installed (the optional extra): its rows are skipped")
    else:
        import torch
        for threads in (1, 2):
            variants[f"PyTorch {torch.__version__} eager + hooks, {threads} thread{'s' * (threads > 1)}"] = torch_call(threads)
    load = os.getloadavg()[0]
    for f in variants.values():  # compile and warm up
        jax.block_until_ready(f())
        jax.block_until_ready(f())
    times = {k: [] for k in variants}
    for _ in range(a.rounds):
        for k, f in variants.items():
            t0 = time.perf_counter()
            for _ in range(a.calls):
                jax.block_until_ready(f())  # sync point: timing only (torch's call returns host floats)
            times[k].append((time.perf_counter() - t0) / a.calls)
    base = np.median(times["reference (no statistics)"])
    ours = np.median(times["gradscope, every statistic (what ships: server and CLI)"])
    print(f"CNN depth {a.depth} x {a.width} channels, batch {a.batch}, digits, K = {steps}, {a.rounds} interleaved rounds "
          f"of {a.calls} calls ({jax.default_backend()}, {os.cpu_count()} CPUs, load {load:.1f} -> {os.getloadavg()[0]:.1f})")
    print("| variant | steps/s | time vs reference | time vs gradscope |\n|---|---:|---:|---:|")
    for k, t in times.items():
        m = np.median(t)
        print(f"| {k} | {steps / m:,.1f} | {m / base:.3f}x | {m / ours:.2f}x |")
    torch_times = [np.median(t) for k, t in times.items() if k.startswith("PyTorch")]
    if torch_times:
        print(f"gradscope, every statistic, against PyTorch eager + hooks on its better thread count: "
              f"{min(torch_times) / ours:.2f}x its step rate")


if __name__ == "__main__":
    main()
