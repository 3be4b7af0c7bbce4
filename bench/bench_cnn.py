"""The CNN's speed against a minimal JAX CNN (issue 19): the shipping chunk, every statistic,
against the same net trained with nothing else, interleaved rounds, median rates.

The reference: the same conv stack (3x3, SAME, unrolled, bias, relu), global average pooling and a
Dense readout, softmax cross-entropy, plain SGD; one step per compiled call, straight-line code,
on a random batch drawn like gradscope's (one key and one gather). No statistics, knobs,
BatchNorm, residual or dropout paths. One step a call on both sides: XLA's CPU backend runs the
backward convolutions inside a loop (lax.scan, fori_loop) or a conditional 30-50x slower, so
neither side loops (the shipping chunk's K is 1, families.cnn).

    python bench/bench_cnn.py [--depth 20] [--width 16] [--batch 128] [--rounds 9]
"""
from __future__ import annotations

import argparse
import time

import jax
import numpy as np
import optax

from gradscope.config import make_config
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


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--depth", type=int, default=20)
    ap.add_argument("--width", type=int, default=16)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--rounds", type=int, default=9)
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
    for f in variants.values():  # compile and warm up
        jax.block_until_ready(f())
        jax.block_until_ready(f())
    times = {k: [] for k in variants}
    for _ in range(a.rounds):
        for k, f in variants.items():
            t0 = time.perf_counter()
            jax.block_until_ready(f())  # sync point: timing only
            times[k].append(time.perf_counter() - t0)
    base = np.median(times["reference (no statistics)"])
    print(f"CNN depth {a.depth} x {a.width} channels, batch {a.batch}, digits, K = {steps}, {a.rounds} interleaved rounds "
          f"({jax.default_backend()})")
    print("| variant | steps/s | time vs reference |\n|---|---:|---:|")
    for k, t in times.items():
        m = np.median(t)
        print(f"| {k} | {steps / m:,.1f} | {m / base:.3f}x |")


if __name__ == "__main__":
    main()
