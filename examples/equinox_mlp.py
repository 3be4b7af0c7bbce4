"""An Equinox MLP on the digits set, watched by gradscope: two lines attach it.

    python examples/equinox_mlp.py [--steps 300] [--activation relu] [--out equinox-mlp.jsonl]

An 8-layer MLP; with `--activation sigmoid` the first layers' gradients are orders of magnitude
smaller than the last's and the loss stays at chance. The two gradscope lines are marked.
The records (one per step, JSON Lines) hold per-layer grad_norm, weight_norm, update_ratio
and, from the probes, dL/dz per hidden layer.
"""
from __future__ import annotations

import argparse
import json
import threading

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax

import gradscope
from gradscope.core.datasets import load


class MLP(eqx.Module):
    layers: list

    act: callable = eqx.field(static=True)

    def __init__(self, key, sizes, act):
        self.act = act
        keys = jax.random.split(key, len(sizes) - 1)
        self.layers = [eqx.nn.Linear(a, b, key=k) for k, a, b in zip(keys, sizes[:-1], sizes[1:], strict=True)]

    def __call__(self, x):
        for i, layer in enumerate(self.layers[:-1]):
            z = jax.vmap(layer)(x)
            x = self.act(gradscope.probe(z, f"z{i}"))  # optional: record dL/dz here
        return jax.vmap(self.layers[-1])(x)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--depth", type=int, default=8)
    ap.add_argument("--activation", default="relu", choices=["relu", "tanh", "sigmoid"])
    ap.add_argument("--out", default="equinox-mlp.jsonl")
    ap.add_argument("--server", help="also post the run to this gradscope server (its page shows it live)")
    ap.add_argument("--serve", action="store_true",
                    help="start a gradscope server in this process, post there, and keep it up after training (Ctrl-C ends)")
    args = ap.parse_args(argv)

    x, y = (jnp.asarray(a) for a in load("digits"))
    model = MLP(jax.random.PRNGKey(0), [64] + [32] * args.depth + [10], getattr(jax.nn, args.activation))
    tx = gradscope.optax.monitor(optax.adam, learning_rate=3e-3)  # 1: wrap the optimizer
    opt_state = tx.init(eqx.filter(model, eqx.is_array))

    @eqx.filter_jit
    def step(model, opt_state, xb, yb):
        def loss_fn(m):
            return optax.softmax_cross_entropy_with_integer_labels(m(xb), yb).mean()
        loss, grads = eqx.filter_value_and_grad(loss_fn)(model)
        updates, opt_state = tx.update(grads, opt_state, eqx.filter(model, eqx.is_array))
        return eqx.apply_updates(model, updates), opt_state, loss

    rng = np.random.default_rng(0)
    with gradscope.attach("equinox mlp", out=args.out, server=args.server, serve=args.serve) as gs:
        for i in range(args.steps):
            idx = rng.integers(0, x.shape[0], 128)
            model, opt_state, loss = step(model, opt_state, x[idx], y[idx])
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
