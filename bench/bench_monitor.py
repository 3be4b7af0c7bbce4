"""What `gradscope.optax.monitor` plus `Run.publish` cost the user's own training step (issue 21: 5% at most).

    python bench/bench_monitor.py [--model mlp|flax-cnn] [--depth 20] [--width 128] [--batch 128] [--steps 200] [--rounds 7]

The user's loop: a `depth`-layer tanh MLP (plain dict params), or examples/flax_cnn.py's Flax
nnx CNN (`--model flax-cnn`: `depth` 3x3 convolutions of `width` channels, relu, on the 8x8
images), on the project's digits set (64 inputs, 10 classes), Adam, one jitted step per batch,
nothing fetched between steps but what the loop itself does. Variants, interleaved in one process and each timed over `steps`
steps ended by one block_until_ready:
- plain: optax.adam, no gradscope;
- monitor: gradscope.optax.monitor(optax.adam) and `publish` after every step (statistics
  fetched and written to JSON Lines on the background thread);
- monitor+probes: the same with `gradscope.probe` on every hidden layer's z (a host callback
  per probe per step).
Ratios against plain, per round, median over rounds: every variant of a round shares the machine's load.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "backend"))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import optax  # noqa: E402

import gradscope  # noqa: E402
from gradscope import optax as gso  # noqa: E402
from gradscope.core.datasets import load  # noqa: E402


def init(key, depth, width):
    sizes = [64] + [width] * depth + [10]
    keys = jax.random.split(key, len(sizes))
    return [{"w": jax.random.normal(k, (a, b)) * np.sqrt(1.0 / a), "b": jnp.zeros(b)}
            for k, a, b in zip(keys, sizes[:-1], sizes[1:], strict=False)]


def forward(params, x, probed):
    h = x
    for i, layer in enumerate(params[:-1]):
        z = h @ layer["w"] + layer["b"]
        h = jnp.tanh(gradscope.probe(z, f"z{i}") if probed else z)
    return h @ params[-1]["w"] + params[-1]["b"]


def flax_cnn(depth, width):
    """examples/flax_cnn.py's model: (params, forward(params, x, probed)) over its nnx.Param pytree."""
    sys.path.insert(0, str(ROOT / "examples"))
    from flax import nnx
    from flax_cnn import CNN

    nets = {probed: CNN(depth, width, jax.nn.relu, rngs=nnx.Rngs(0), probed=probed) for probed in (False, True)}
    graphs = {probed: nnx.split(net, nnx.Param)[0] for probed, net in nets.items()}
    params = nnx.split(nets[False], nnx.Param)[1]
    return params, lambda p, x, probed: nnx.merge(graphs[probed], p)(x)


def make_step(tx, fwd=forward, probed=False):
    def loss(params, x, y):
        return optax.softmax_cross_entropy_with_integer_labels(fwd(params, x, probed), y).mean()

    @jax.jit
    def step(params, state, x, y):
        value, grads = jax.value_and_grad(loss)(params, x, y)
        updates, state = tx.update(grads, state, params)
        return optax.apply_updates(params, updates), state, value
    return step


def run(step, params, state, batches, gs=None):
    t0 = time.perf_counter()
    for i, (x, y) in enumerate(batches):
        params, state, value = step(params, state, x, y)
        if gs is not None:
            state = gs.publish(i, state, loss=value)
    jax.block_until_ready((params, state))
    return time.perf_counter() - t0


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", choices=["mlp", "flax-cnn"], default="mlp")
    ap.add_argument("--depth", type=int, default=None, help="default: 20 (mlp), 6 (flax-cnn)")
    ap.add_argument("--width", type=int, default=None, help="default: 128 (mlp), 16 (flax-cnn)")
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--rounds", type=int, default=7)
    args = ap.parse_args(argv)

    data = load("digits")
    x_all, y_all = jnp.asarray(data[0], jnp.float32), jnp.asarray(data[1])
    cnn = args.model == "flax-cnn"
    args.depth = args.depth or (6 if cnn else 20)
    args.width = args.width or (16 if cnn else 128)
    if cnn:
        x_all = x_all.reshape(-1, 8, 8, 1)
    rng = np.random.default_rng(0)
    batches = []
    for _ in range(args.steps):
        idx = rng.integers(0, x_all.shape[0], args.batch)
        batches.append((x_all[idx], y_all[idx]))
    params, fwd = flax_cnn(args.depth, args.width) if cnn else (init(jax.random.PRNGKey(0), args.depth, args.width), forward)

    plain_tx = optax.adam(1e-3)
    mon_tx = gso.monitor(optax.adam, learning_rate=1e-3)
    variants = {"plain": (make_step(plain_tx, fwd), plain_tx, False),
                "monitor": (make_step(mon_tx, fwd), mon_tx, True),
                "monitor+probes": (make_step(mon_tx, fwd, probed=True), mon_tx, True)}
    out = Path(tempfile.mkdtemp())
    times = {name: [] for name in variants}
    for r in range(args.rounds + 1):  # round 0 compiles and warms: not counted
        for name, (step, tx, publishes) in variants.items():
            gs = gradscope.attach(name, out=out / f"{name}.jsonl") if publishes else None
            seconds = run(step, params, tx.init(params), batches, gs)
            if gs is not None:
                gs.close()
                assert gs.dropped == 0 or r == 0, f"{name}: {gs.dropped} frames dropped"
            if r:
                times[name].append(seconds)
    ms = {name: 1000 * statistics.median(t) / args.steps for name, t in times.items()}
    what = "Flax CNN" if cnn else "MLP"
    print(f"{args.depth}-layer {what}, width {args.width}, batch {args.batch}, {args.steps} steps x {args.rounds} rounds, "
          f"{jax.default_backend()}")
    for name, t in times.items():
        ratio = statistics.median(a / b for a, b in zip(t, times["plain"], strict=True))
        print(f"  {name:15s} {ms[name]:7.3f} ms/step   {ratio:5.3f}x plain")


if __name__ == "__main__":
    main()
