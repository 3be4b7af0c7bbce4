"""The sequence tasks: their layouts, targets and the baseline loss each one states."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gradscope.core import datasets, sequences


def draw(task, seq_len, batch, seed=0, pool=None):
    x, y = sequences.sample(task, seq_len, batch, jax.random.PRNGKey(seed), *sequences.pool(task, pool))
    return np.asarray(x), np.asarray(y)


@pytest.mark.parametrize("seq_len", [2, 3, 50])
def test_adding_marks_one_number_in_each_half_and_predicting_the_mean_scores_the_baseline(seq_len):
    x, y = draw("adding", seq_len, 20000)
    marks = x[..., 1]
    assert (marks.sum(0) == 2).all()
    half = max(seq_len // 2, 1)
    assert (marks[:half].sum(0) == 1).all() and (marks[half:].sum(0) == 1).all()
    np.testing.assert_allclose(y[0, :, 0], (x[..., 0] * marks).sum(0), rtol=1e-6)
    mse = float(sequences.loss("adding", jnp.ones_like(jnp.asarray(y)), jnp.asarray(y))[0])
    assert mse == pytest.approx(sequences.spec("adding", seq_len).baseline, rel=0.03)


def test_copy_layout_and_chance_loss():
    seq_len, s, a = 12, sequences.COPY_SYMBOLS, sequences.COPY_ALPHABET
    x, y = draw("copy", seq_len, 64)
    assert x.shape == (seq_len, 64, a + 2) and y.shape == (s, 64)
    np.testing.assert_array_equal(x[:s].argmax(-1), y)  # the symbols first
    assert (x[s:seq_len - s - 1].argmax(-1) == a).all() and (x[seq_len - s:].argmax(-1) == a).all()  # blanks
    assert (x[seq_len - s - 1].argmax(-1) == a + 1).all()  # the go marker right before the answers
    chance = float(sequences.loss("copy", jnp.zeros((s, 64, a)), jnp.asarray(y))[0])
    assert chance == pytest.approx(sequences.spec("copy", seq_len).baseline, rel=1e-6)


def test_parity_labels_count_the_plus_ones():
    x, y = draw("parity", 9, 256)
    np.testing.assert_array_equal(y[0], (x[..., 0] > 0).sum(0) % 2)
    assert 0.35 < y.mean() < 0.65


@pytest.mark.parametrize("seq_len", [8, 64])
def test_digits_read_rows_or_single_pixels_of_the_same_image(seq_len):
    pool = datasets.load("digits", noise=0.0, seed=0)
    x, y = draw("digits", seq_len, 16, pool=pool)
    assert x.shape == (seq_len, 16, 64 // seq_len)
    images = x.swapaxes(0, 1).reshape(16, 64)
    rows = [np.flatnonzero((pool[0] == img).all(1)) for img in images]
    assert all(r.size and pool[1][r[0]] == label for r, label in zip(rows, y[0], strict=True))
    assert sequences.spec("digits", seq_len).baseline == pytest.approx(math.log(10))


def test_lengths_that_do_not_fit_their_task_are_named():
    assert sequences.length_error("copy", 6) is not None and sequences.length_error("copy", 7) is None
    message, valid = sequences.length_error("digits", 10)
    assert valid == [2, 4, 8, 16, 32, 64]
    assert sequences.length_error("adding", 2) is None and sequences.length_error("parity", 1000) is None
