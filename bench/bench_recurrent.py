"""Recurrent step rate against the same model in PyTorch eager; prints a markdown report.

    python bench/bench_recurrent.py [--quick]

Variants, each timed in interleaved rounds (median reported), Adam, the adding task:
  gradscope           the compiled K-step chunk with every recurrent statistic (what ships)
  JAX, no statistics  the same model, loss + gradients + Adam under one scan, nothing else
  PyTorch fused       torch.nn.RNN/LSTM/GRU (oneDNN kernels on CPU), no per-step statistics
  PyTorch cells       a Python loop of RNNCell/LSTMCell/GRUCell with h_t.retain_grad(): the
                      same per-time-step ||dL/dh_t||, per-parameter norms and clipping
"""

import argparse
import statistics
import time

import jax
import jax.numpy as jnp
import optax

from gradscope.core import sequences
from gradscope.core.recurrent import forward, readout
from gradscope.engine import Trainer

ROUNDS = 5


def timed(fn, steps):
    """Median steps/s of `fn` (which runs `steps` steps and syncs) over ROUNDS rounds."""
    fn()  # warm-up: compile, allocation
    times = []
    for _ in range(ROUNDS):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return steps / statistics.median(times)


def gradscope_rate(config, k):
    tr = Trainer(config, chunk_steps=k)
    return lambda: jax.block_until_ready(tr.run(k)["loss"])  # run() includes the one device->host transfer


def bare_jax_rate(config, k):
    """Loss, gradients and Adam under one scan: no probes, no statistics."""
    tr = Trainer(config, chunk_steps=1)
    shape, opt = tr.shape, optax.adam(config["learning_rate"])
    act = config["activation"] if config["model"] == "rnn" else None

    def loss_fn(params, x, y):
        hs, _ = forward(shape.model, act, params, x, jnp.zeros((shape.depth, shape.seq_len, shape.batch, shape.width)), 0.0)
        return sequences.loss(shape.task, readout(params["out"], hs, shape.out_steps), y)[0]

    def step(carry, _):
        params, opt_state, key = carry
        key, sub = jax.random.split(key)
        x, y = sequences.sample(shape.task, shape.seq_len, shape.batch, sub, tr.x, tr.y)
        loss, grads = jax.value_and_grad(loss_fn)(params, x, y)
        updates, opt_state = opt.update(grads, opt_state)
        return (optax.apply_updates(params, updates), opt_state, key), loss

    run = jax.jit(lambda c: jax.lax.scan(step, c, None, length=k))
    carry = [(tr.state.params, opt.init(tr.state.params), jax.random.PRNGKey(0))]

    def go():
        carry[0], losses = run(carry[0])
        jax.block_until_ready(losses)
    return go


def torch_rates(config, k):
    """(fused, cells) step functions, each running k steps of the same model and task in PyTorch."""
    import torch

    torch.manual_seed(0)
    m, h, t, b = config["model"], config["width"], config["seq_len"], config["batch_size"]
    fused = {"rnn": torch.nn.RNN, "lstm": torch.nn.LSTM, "gru": torch.nn.GRU}[m](2, h)
    cell = {"rnn": torch.nn.RNNCell, "lstm": torch.nn.LSTMCell, "gru": torch.nn.GRUCell}[m](2, h)

    def batch():
        values, marks = torch.rand(t, b), torch.zeros(t, b)
        marks[torch.randint(0, t // 2, (b,)), torch.arange(b)] = 1
        marks[torch.randint(t // 2, t, (b,)), torch.arange(b)] = 1
        return torch.stack([values, marks], -1), (values * marks).sum(0, keepdim=True).T

    def make(module, body):
        out = torch.nn.Linear(h, 1)
        params = list(module.parameters()) + list(out.parameters())
        opt = torch.optim.Adam(params, lr=config["learning_rate"])

        def go():
            for _ in range(k):
                x, y = batch()
                loss, extra = body(module, out, x, y)
                opt.zero_grad()
                loss.backward()
                stats = [p.grad.norm() for p in params] + [hh.grad.norm() for hh in extra]
                torch.nn.utils.clip_grad_norm_(params, 1e6)
                opt.step()
            return float(loss.detach()), len(stats)  # sync point, as gradscope syncs once per chunk
        return go

    def fused_body(module, out, x, y):
        hs, _ = module(x)
        return torch.mean((out(hs[-1]) - y) ** 2), []

    def cell_body(module, out, x, y):
        hs, state = [], None
        for xt in x:
            state = module(xt, state)
            hh = state[0] if m == "lstm" else state
            hh.retain_grad()  # ||dL/dh_t||: the gradient reaching step t, as gradscope's probes give it
            hs.append(hh)
        return torch.mean((out(hs[-1]) - y) ** 2), hs

    return make(fused, fused_body), make(cell, cell_body)


def report(config, k):
    fused, cells = torch_rates(config, k)
    variants = {
        "**gradscope, all statistics (what ships)**": gradscope_rate(config, k),
        "JAX, same model, no statistics": bare_jax_rate(config, k),
        "PyTorch eager, fused nn module, no per-step statistics": fused,
        "PyTorch eager, cell loop with the same statistics": cells,
    }
    rates = {name: timed(fn, k) for name, fn in variants.items()}
    ours = next(iter(rates.values()))
    size = f"width {config['width']}, batch {config['batch_size']}, seq_len {config['seq_len']}, depth {config['depth']}"
    print(f"\n### {config['model']}: {size}\n\n| variant | steps/s | relative |\n|---|---:|---:|")
    for name, r in rates.items():
        print(f"| {name} | {r:,.0f} | {r / ours:.2f} |")
    return rates


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="one size, fewer steps")
    parser.add_argument("--torch-threads", type=int, default=1,
                        help="PyTorch intra-op threads (default 1: on a loaded 2-core host more threads ran 4x slower)")
    args = parser.parse_args()
    import torch

    torch.set_num_threads(args.torch_threads)

    print(f"JAX {jax.__version__} on {jax.default_backend()}, PyTorch {torch.__version__} with {torch.get_num_threads()} threads")
    sizes = [(64, 64, 50)] if args.quick else [(64, 64, 50), (128, 32, 200)]
    for width, batch, seq_len in sizes:
        for model in ("rnn", "lstm", "gru"):
            config = dict(model=model, dataset="adding", width=width, batch_size=batch, seq_len=seq_len, depth=1,
                          activation="tanh", optimizer="adam", learning_rate=0.01, clip_mode="norm", clip_value=1e6)
            report(config, 16 if args.quick else 32)


if __name__ == "__main__":
    main()
