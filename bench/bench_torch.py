"""What `gradscope.torch.watch` plus `Run.publish` cost a PyTorch training step (issue 21: 5% at most).

    python bench/bench_torch.py [--depth 20] [--width 128] [--batch 128] [--steps 200] [--rounds 7] [--threads N]

The user's loop: a `depth`-layer tanh MLP (torch.nn.Sequential) on the project's digits set
(64 inputs, 10 classes), Adam, clip_grad_norm_, one step per batch, on the CPU. Variants,
interleaved in one process and each timed over `steps` steps:
- plain: no gradscope;
- watch: gradscope.torch.watch hooks and `publish` after every step, records to JSON Lines;
- watch every 10: the hooks measure every 10th step only (`watch(..., every=10)`);
- watch+server: as watch, the records also posted to a gradscope server in this process.
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

import numpy as np  # noqa: E402
import torch  # noqa: E402

import gradscope  # noqa: E402
from gradscope.core.datasets import load  # noqa: E402


def model(depth, width):
    torch.manual_seed(0)
    sizes = [64] + [width] * depth
    layers = []
    for a, b in zip(sizes[:-1], sizes[1:], strict=True):
        layers += [torch.nn.Linear(a, b), torch.nn.Tanh()]
    return torch.nn.Sequential(*layers, torch.nn.Linear(width, 10))


def run(net, opt, batches, gs=None):
    t0 = time.perf_counter()
    for i, (xb, yb) in enumerate(batches):
        loss = torch.nn.functional.cross_entropy(net(xb), yb)
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(net.parameters(), 1.0)
        opt.step()
        if gs is not None:
            gs.publish(i, loss=loss)
    return time.perf_counter() - t0


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--depth", type=int, default=20)
    ap.add_argument("--width", type=int, default=128)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's)")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    x, y = (torch.as_tensor(np.asarray(a)) for a in load("digits"))
    x, y = x.float(), y.long()
    rng = np.random.default_rng(0)
    batches = [(x[idx], y[idx]) for idx in (torch.as_tensor(rng.integers(0, len(x), args.batch)) for _ in range(args.steps))]
    out = Path(tempfile.mkdtemp())
    from gradscope.attaching import local_server

    server = local_server()
    variants = {}
    for name, kw in (("plain", None), ("watch", {}), ("watch every 10", {"every": 10}), ("watch+server", {"server": True})):
        net = model(args.depth, args.width)
        opt = torch.optim.Adam(net.parameters(), lr=1e-3)
        gs = None
        if kw is not None:
            gs = gradscope.attach(name, out=out / f"{name}.jsonl", server=server if kw.get("server") else None)
            gradscope.torch.watch(net, opt, gs, every=kw.get("every", 1))
        run(net, opt, batches[:10], gs)  # warm-up
        variants[name] = (net, opt, gs)
    times = {name: [] for name in variants}
    for _ in range(args.rounds):
        for name, (net, opt, gs) in variants.items():
            times[name].append(run(net, opt, batches, gs) / args.steps)
    plain = times["plain"]
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; {args.depth}-layer width-{args.width} tanh MLP, "
          f"Adam, batch {args.batch}, {args.steps} steps x {args.rounds} rounds")
    print("| variant | ms / step (median) | vs plain (median of per-round ratios) | dropped |")
    print("|---|---|---|---|")
    for name, ts in times.items():
        ratio = statistics.median(t / p for t, p in zip(ts, plain, strict=True))
        gs = variants[name][2]
        if gs is not None:
            gs.flush(60)
        print(f"| {name} | {1e3 * statistics.median(ts):.2f} | {ratio:.3f}x | {gs.dropped if gs else '-'} |")
    for _, _, gs in variants.values():
        if gs is not None:
            gs.close()


if __name__ == "__main__":
    main()
