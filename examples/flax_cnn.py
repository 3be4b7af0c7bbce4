"""A Flax (nnx) CNN on the digits set, watched by gradscope: two lines attach it.

    python examples/flax_cnn.py [--steps 300] [--depth 6] [--activation relu] [--out flax-cnn.jsonl]

`depth` 3x3 convolutions of 16 channels on the 8x8 digits, global average pooling and a linear
readout, trained with Adam in a plain `jax.jit` step over the parameters' pytree (nnx.split /
nnx.merge). With `--activation sigmoid --depth 12` the first convolutions' gradients fall orders
of magnitude below the readout's. The two gradscope lines are marked; the probes are optional.

Layer names come from the pytree paths: `convs/0` ... `convs/5`, `head`. nnx orders a module's
attributes by name (its State sorts them), so a list of layers, or names that sort in forward
order, give the profile from the input to the output.
"""
from __future__ import annotations

import argparse
import json
import threading

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

import gradscope
from gradscope.core.datasets import load


class CNN(nnx.Module):
    def __init__(self, depth: int, width: int, act, *, rngs: nnx.Rngs, probed: bool = True):
        self.act, self.probed = act, probed
        sizes = [1] + [width] * depth
        self.convs = nnx.List([nnx.Conv(a, b, (3, 3), rngs=rngs) for a, b in zip(sizes[:-1], sizes[1:], strict=True)])
        self.head = nnx.Linear(width, 10, rngs=rngs)

    def __call__(self, x):
        for i, conv in enumerate(self.convs):
            z = conv(x)
            x = self.act(gradscope.probe(z, f"conv{i}") if self.probed else z)  # optional: record dL/dz here
        return self.head(x.mean(axis=(1, 2)))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--depth", type=int, default=6)
    ap.add_argument("--activation", default="relu", choices=["relu", "tanh", "sigmoid"])
    ap.add_argument("--out", default="flax-cnn.jsonl")
    ap.add_argument("--server", help="also post the run to this gradscope server (its page shows it live)")
    ap.add_argument("--serve", action="store_true",
                    help="start a gradscope server in this process, post there, and keep it up after training (Ctrl-C ends)")
    args = ap.parse_args(argv)

    x, y = load("digits")
    x = jnp.asarray(x, jnp.float32).reshape(-1, 8, 8, 1)  # the 8x8 images, one channel (NHWC)
    y = jnp.asarray(y)
    model = CNN(args.depth, 16, getattr(jax.nn, args.activation), rngs=nnx.Rngs(0))
    graphdef, params = nnx.split(model, nnx.Param)
    tx = gradscope.optax.monitor(optax.adam, learning_rate=3e-3)  # 1: wrap the optimizer
    opt_state = tx.init(params)

    @jax.jit
    def step(params, opt_state, xb, yb):
        def loss_fn(p):
            logits = nnx.merge(graphdef, p)(xb)
            return optax.softmax_cross_entropy_with_integer_labels(logits, yb).mean()
        loss, grads = jax.value_and_grad(loss_fn)(params)
        updates, opt_state = tx.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, loss

    rng = np.random.default_rng(0)
    with gradscope.attach("flax cnn", out=args.out, server=args.server, serve=args.serve) as gs:
        for i in range(args.steps):
            idx = rng.integers(0, x.shape[0], 128)
            params, opt_state, loss = step(params, opt_state, x[idx], y[idx])
            opt_state = gs.publish(i, opt_state, loss=loss)  # 2: publish each step
    last = gs.records[-1]
    print(json.dumps({"steps": args.steps, "loss": round(last["loss"], 4), "layers": len(last["grad_norm"]),
                      "first/last layer grad_norm": last["grad_norm"][0] / last["grad_norm"][-1],
                      "dropped": gs.dropped, "out": args.out, "link": gs.link}))
    if args.serve:
        print("training done; the page stays up until Ctrl-C", flush=True)
        try:
            threading.Event().wait()
        except KeyboardInterrupt:
            pass


if __name__ == "__main__":
    main()
