"""Sequence tasks for the recurrent models, each with the loss of a model that learns nothing.

Every task is read time-major, x (T, B, n_in) with T = seq_len, and scored on the readout
of the last `out_steps` hidden states. The synthetic tasks are drawn fresh on device for
every batch from a key (a model cannot memorize them); `digits` samples from a pool.

  adding  (Hochreiter & Schmidhuber 1997) channel 0: U(0, 1) numbers, channel 1: two markers,
          one in each half; regress the sum of the two marked numbers (MSE). Predicting the
          mean, 1, scores Var(U + U) = 1/6 = 0.167.
  copy    COPY_SYMBOLS symbols of an alphabet of COPY_ALPHABET, a blank delay, a go marker,
          then the symbols again (cross-entropy on the last COPY_SYMBOLS steps). No memory
          scores log(COPY_ALPHABET) per symbol.
  parity  a sequence of +-1 bits; classify the parity of the count of +1 (cross-entropy on
          the last step). Chance is log 2.
  digits  the 8x8 digits, 64 / T pixels per step (T = 8: one row per step, T = 64: one pixel
          at a time); 10 classes, chance log 10.
"""

import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

TASKS = ("adding", "copy", "parity", "digits")
COPY_SYMBOLS, COPY_ALPHABET = 3, 8
DIGIT_PIXELS = 64
DIGIT_LENGTHS = tuple(n for n in range(2, DIGIT_PIXELS + 1) if DIGIT_PIXELS % n == 0)


class TaskSpec(NamedTuple):
    n_in: int
    n_out: int
    out_steps: int
    regression: bool
    baseline: float  # the loss of a model that ignores its input


def spec(task: str, seq_len: int) -> TaskSpec:
    if task == "adding":
        return TaskSpec(2, 1, 1, True, 1.0 / 6.0)
    if task == "copy":
        return TaskSpec(COPY_ALPHABET + 2, COPY_ALPHABET, COPY_SYMBOLS, False, math.log(COPY_ALPHABET))
    if task == "parity":
        return TaskSpec(1, 2, 1, False, math.log(2))
    if task == "digits":
        return TaskSpec(DIGIT_PIXELS // seq_len, 10, 1, False, math.log(10))
    raise KeyError(task)


def length_error(task: str, seq_len: int) -> tuple[str, list | None] | None:
    """Why `seq_len` does not fit `task` (a message and the valid lengths), or None."""
    if task == "copy" and seq_len < 2 * COPY_SYMBOLS + 1:
        return f"copy needs at least {2 * COPY_SYMBOLS + 1} steps ({COPY_SYMBOLS} symbols, a go marker, {COPY_SYMBOLS} answers)", None
    if task == "digits" and seq_len not in DIGIT_LENGTHS:
        return "digits reads 64 pixels in equal steps: seq_len must divide 64", list(DIGIT_LENGTHS)
    return None


def _adding(key, batch, seq_len):
    k_v, k_a, k_b = jax.random.split(key, 3)
    values = jax.random.uniform(k_v, (seq_len, batch))
    half = max(seq_len // 2, 1)
    first = jax.random.randint(k_a, (batch,), 0, half)
    second = jax.random.randint(k_b, (batch,), half, seq_len)
    t = jnp.arange(seq_len)[:, None]
    marks = ((t == first) | (t == second)).astype(jnp.float32)
    return jnp.stack([values, marks], axis=-1), (values * marks).sum(0)[None, :, None]  # (T, B, 2), (1, B, 1)


def _copy(key, batch, seq_len):
    s, a = COPY_SYMBOLS, COPY_ALPHABET
    symbols = jax.random.randint(key, (s, batch), 0, a)
    blank = jnp.full((seq_len, batch), a).at[:s].set(symbols).at[seq_len - s - 1].set(a + 1)
    return jax.nn.one_hot(blank, a + 2), symbols  # (T, B, A+2), (S, B)


def _parity(key, batch, seq_len):
    bits = jax.random.bernoulli(key, 0.5, (seq_len, batch))
    return (2.0 * bits - 1.0)[..., None], (bits.sum(0) % 2)[None].astype(jnp.int32)  # (T, B, 1), (1, B)


def sample(task, seq_len, batch, key, pool_x, pool_y):
    """One batch: x (T, B, n_in) float32 and targets, (1, B, 1) float for adding, else (S, B) int.

    pool_x (N, 64) and pool_y (N,) are the digits; the other tasks ignore them.
    """
    if task == "adding":
        return _adding(key, batch, seq_len)
    if task == "copy":
        return _copy(key, batch, seq_len)
    if task == "parity":
        return _parity(key, batch, seq_len)
    idx = jax.random.randint(key, (batch,), 0, pool_x.shape[0])
    x = pool_x[idx].reshape(batch, seq_len, DIGIT_PIXELS // seq_len).swapaxes(0, 1)
    return x, pool_y[idx][None]


def pool(task, digits_xy):
    """The arrays `sample` reads: the digits (x (N, 64), y (N,)) for `digits`, else 1-element placeholders."""
    if task == "digits":
        return digits_xy
    return np.zeros((1, DIGIT_PIXELS), np.float32), np.zeros((1,), np.int32)


def loss(task, out, y):
    """Readout out (S, B, C) against targets -> (mean loss, accuracy; NaN for the regression)."""
    if task == "adding":
        return jnp.mean(jnp.square(out - y)), jnp.float32(jnp.nan)
    xent = optax.softmax_cross_entropy_with_integer_labels(out, y).mean()
    return xent, (out.argmax(-1) == y).mean()
