"""Known results for recurrent networks, read off the statistics of the first step.

Backpropagation through one step of an Elman RNN multiplies dL/dh_t by W_hh diag(phi'(z_t)),
so ||dL/dh_t|| / ||dL/dh_T|| falls (or grows) geometrically by about the spectral radius of
W_hh times the RMS slope (`theory_factor`; the mean-field picture of Pennington, Schoenholz
& Ganguli 2017, for a W_hh that mixes the units). Bengio, Simard & Frasconi 1994; Pascanu,
Mikolov & Bengio 2013; Le, Jaitly & Hinton 2015 (identity initialization).

Sizes: tanh RNN, one layer of width 128, batch 64, the adding task over 40 steps, seeds 0 and 1.
"""

import numpy as np
import pytest

from gradscope.engine import Trainer

T = 40


@pytest.fixture(scope="module")
def first_step(compile_cache):
    def run(init, gain, seed):
        config = dict(model="rnn", dataset="adding", seq_len=T, width=128, batch_size=64, activation="tanh",
                      init=init, init_gain=gain, seed=seed)
        s = {k: v[0] for k, v in Trainer(config, chunk_steps=1, cache=compile_cache).run(1).items()}
        d = s["time_delta_norm"][0]  # (T,): ||dL/dh_t||, t = 1..T
        inner = d[4:T - 4]  # away from both ends: the readout at T and the zero state before step 1
        with np.errstate(divide="ignore", invalid="ignore"):  # a saturated net's gradient can be exactly 0
            measured = float(np.exp(np.mean(np.log(inner[:-1] / inner[1:]))))
        return s, d, measured
    return run


@pytest.mark.parametrize("seed", [0, 1])
def test_gain_half_vanishes_at_the_predicted_rate(first_step, seed):
    s, d, measured = first_step("glorot_normal", 0.5, seed)
    assert s["spectral_radius"][0, 0] == pytest.approx(0.5, rel=0.12)  # circular law: rho ~ gain
    assert measured == pytest.approx(s["theory_factor"][0], rel=0.08)
    assert measured < 0.6 and d[0] / d[-1] < 1e-9  # about 0.5 per step: 1e-11 over 39 steps


@pytest.mark.parametrize("init,seed", [("orthogonal", 0), ("orthogonal", 1), ("glorot_normal", 0), ("glorot_normal", 1)])
def test_gain_one_keeps_the_gradient_and_follows_the_theory(first_step, init, seed):
    s, d, measured = first_step(init, 1.0, seed)
    if init == "orthogonal":
        assert s["spectral_radius"][0, 0] == pytest.approx(1.0, abs=1e-3)
    tol = 0.02 if init == "orthogonal" else 0.08  # a Gaussian W_hh stretches some directions more than others
    assert measured == pytest.approx(s["theory_factor"][0], rel=tol)
    assert measured > 0.9 and d[0] / d[-1] > 1e-2


@pytest.mark.parametrize("seed", [0, 1])
def test_identity_gain_one_falls_far_slower_than_its_line(first_step, seed):
    """Identity W_hh never mixes units: the gradient rides on the units that stay unsaturated,
    so it falls more slowly than rho * RMS slope predicts (the line is a lower bound here)."""
    s, d, measured = first_step("identity", 1.0, seed)
    assert s["spectral_radius"][0, 0] == pytest.approx(1.0, abs=1e-4)
    assert measured > 0.95 and measured > s["theory_factor"][0] and d[0] / d[-1] > 1e-2


@pytest.mark.parametrize("seed", [0, 1])
def test_large_identity_gain_saturates_and_the_gradient_falls_again(first_step, seed):
    s, d, _ = first_step("identity", 3.0, seed)
    assert s["gate_saturation"][0, 0] > 0.8  # units pinned at +-1 by the self-excitation of 3 h
    assert s["theory_factor"][0] < 0.85 and d[0] / d[-1] < 1e-6


@pytest.mark.parametrize("init,gain", [("orthogonal", 3.0), ("orthogonal", 6.0), ("glorot_normal", 3.0)])
def test_large_mixing_gain_explodes_as_predicted(first_step, init, gain):
    """With a mixing W_hh the RMS slope falls only like 1/sqrt(gain): rho * slope grows, and so does the gradient."""
    s, d, measured = first_step(init, gain, 0)
    assert s["gate_saturation"][0, 0] > 0.3 and s["theory_factor"][0] > 1.3
    assert measured == pytest.approx(s["theory_factor"][0], rel=0.15) and d[0] / d[-1] > 1e4


@pytest.mark.slow
def test_lstm_learns_adding_over_50_steps_where_a_glorot_tanh_rnn_stays_at_the_baseline(compile_cache):
    """Hochreiter & Schmidhuber 1997's adding problem: width 32, batch 64, seq_len 50, Adam at
    0.01, 1500 steps, seeds 0-2 (about 90 s on 2 CPU cores). Measured: LSTM eval MSE ~3e-4 by
    step 1500 for every seed; the RNN stays within 0.157-0.177 of the 0.167 baseline."""
    base = dict(dataset="adding", seq_len=50, width=32, batch_size=64, activation="tanh", init="glorot_normal",
                optimizer="adam", learning_rate=0.01)
    for seed in (0, 1, 2):
        results = {}
        for model in ("lstm", "rnn"):
            tr = Trainer({**base, "model": model, "seed": seed}, chunk_steps=100, cache=compile_cache)
            tr.run(1500)
            results[model] = tr.evaluate()
        baseline = results["lstm"]["baseline"]
        assert results["lstm"]["loss"] < 0.1 * baseline, (seed, results)
        assert results["rnn"]["loss"] > 0.75 * baseline, (seed, results)
