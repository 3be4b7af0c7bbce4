"""The CNN's speed against a minimal JAX CNN (issue 19): the shipping chunk, every statistic,
against the same net trained with nothing else, interleaved rounds, median rates.

The reference: the same conv stack (3x3, SAME, unrolled, bias, relu), global average pooling and a
Dense readout, softmax cross-entropy, plain SGD; K steps per compiled call under lax.scan, each on a
random batch drawn like gradscope's (one key and one gather per step). No statistics, knobs,
BatchNorm, residual or dropout paths.

    python bench/bench_cnn.py [--depth 20] [--width 16] [--batch 128] [--steps 32] [--rounds 7]
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

    def chunk(params, key, x_all, y_all):
        def step(carry, _):
            params, key = carry
            key, k_batch = jax.random.split(key)
            idx = jax.random.randint(k_batch, (batch,), 0, x_all.shape[0])
            value, grads = jax.value_and_grad(loss)(params, x_all[idx], y_all[idx])
            return (jax.tree.map(lambda p, g: p - learning_rate * g, params, grads), key), value
        return jax.lax.scan(step, (params, key), None, length=steps)
    return chunk


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--depth", type=int, default=20)
    ap.add_argument("--width", type=int, default=16)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--steps", type=int, default=32)
    ap.add_argument("--rounds", type=int, default=7)
    a = ap.parse_args()
    c = make_config({"model": "cnn", "dataset": "digits", "depth": a.depth, "width": a.width, "batch_size": a.batch,
                     "activation": "relu", "init": "he_normal"})
    family = family_of("cnn")
    shape = family.shape_of(c)
    x, y, x_val, y_val = family.data(c, shape)
    state = family.initial_state(c, shape)
    ours = jax.jit(make_chunk("relu", "sgd", shape, a.steps, family.spec_of(c)))
    args = lambda every: family.chunk_args(state, c, x, y, x_val, y_val, a.steps, every)

    ref = jax.jit(reference_chunk(a.steps, a.batch))
    ref_params = {"conv": [(layer["w"], layer["b"]) for layer in state.params["conv"]],
                  "out": (state.params["out"]["w"], state.params["out"]["b"])}
    variants = {
        "reference (no statistics)": lambda: ref(ref_params, jax.random.PRNGKey(0), x, y),
        f"gradscope, measured once per call (every {a.steps}, as the server)": lambda: ours(*args(a.steps)),
        "gradscope, every step measured (the CLI's default)": lambda: ours(*args(1)),
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
    print(f"CNN depth {a.depth} x {a.width} channels, batch {a.batch}, digits, K = {a.steps}, {a.rounds} interleaved rounds "
          f"({jax.default_backend()})")
    print("| variant | steps/s | time vs reference |\n|---|---:|---:|")
    for k, t in times.items():
        m = np.median(t)
        print(f"| {k} | {a.steps / m:,.0f} | {m / base:.3f}x |")


if __name__ == "__main__":
    main()
