"""A PyTorch MLP on the digits set, watched by gradscope: two lines attach it.

    python examples/torch_mlp.py [--steps 300] [--activation relu] [--serve | --server URL] [--out torch-mlp.jsonl]

An 8-layer MLP trained with Adam; with `--activation sigmoid` the first layers'
gradients are orders of magnitude smaller than the last's and the loss stays near chance. The
gradient is clipped by its global norm, so the records hold each layer's norm before and after.
The two gradscope lines are marked. With `--serve` the run is live on a page started here,
whose learning-rate knob reaches this loop's optimizer.
"""
from __future__ import annotations

import argparse
import json
import threading

import numpy as np
import torch

import gradscope
from gradscope.core.datasets import load

ACTIVATIONS = {"relu": torch.nn.ReLU, "tanh": torch.nn.Tanh, "sigmoid": torch.nn.Sigmoid}


def mlp(depth: int, activation: str) -> torch.nn.Sequential:
    sizes = [64] + [32] * depth
    layers = []
    for a, b in zip(sizes[:-1], sizes[1:], strict=True):
        layers += [torch.nn.Linear(a, b), ACTIVATIONS[activation]()]
    return torch.nn.Sequential(*layers, torch.nn.Linear(sizes[-1], 10))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--depth", type=int, default=8)
    ap.add_argument("--activation", default="relu", choices=sorted(ACTIVATIONS))
    ap.add_argument("--out", default="torch-mlp.jsonl")
    ap.add_argument("--server", help="also post the run to this gradscope server (its page shows it live)")
    ap.add_argument("--serve", action="store_true",
                    help="start a gradscope server in this process, post there, and keep it up after training (Ctrl-C ends)")
    args = ap.parse_args(argv)

    torch.manual_seed(0)
    x, y = (torch.as_tensor(np.asarray(a)) for a in load("digits"))
    x, y = x.float(), y.long()
    model = mlp(args.depth, args.activation)
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    rng = np.random.default_rng(0)
    with gradscope.attach("torch mlp", out=args.out, server=args.server, serve=args.serve) as gs:
        gradscope.torch.watch(model, optimizer, gs)  # 1: hook the model and its optimizer
        for i in range(args.steps):
            idx = torch.as_tensor(rng.integers(0, x.shape[0], 128))
            loss = torch.nn.functional.cross_entropy(model(x[idx]), y[idx])
            optimizer.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            gs.publish(i, loss=loss)  # 2: publish each step
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
