"""Known cases from the literature, read off the statistics of the first step.

Glorot & Bengio 2010 (sigmoid vanishes), He et al. 2015 (He init keeps ReLU nets stable;
Glorot init halves the variance per ReLU layer), Klambauer et al. 2017 (SELU with LeCun
normal self-normalizes). The factor per layer is about sqrt(fan_in * Var(W) * E[phi'(z)^2]).
"""

import numpy as np
import pytest

from gradscope.engine import CompileCache, Trainer


@pytest.fixture(scope="module")
def first_step():
    cache = CompileCache(background=False)

    def run(**config):
        return {k: v[0] for k, v in Trainer(config, cache=cache, chunk_steps=1, specialize=True).run(1).items()}

    yield run
    cache.close()


def per_layer_factor(delta):
    """Geometric-mean ratio delta_{l-1} / delta_l over the hidden layers."""
    hidden = delta[:-1]
    return float(np.exp(np.mean(np.log(hidden[:-1] / hidden[1:]))))


def test_sigmoid_with_glorot_vanishes_over_depth_10(first_step):
    s = first_step(activation="sigmoid", init="glorot_normal", depth=10, width=64)
    assert s["delta_norm"][0] / s["delta_norm"][9] < 1e-4  # orders of magnitude
    assert (np.diff(s["delta_norm"][:10]) > 0).all()  # shrinking steadily toward the input


def test_linear_with_standard_normal_explodes_by_sqrt_width(first_step):
    s = first_step(activation="linear", init="standard_normal", depth=10, width=64)
    assert per_layer_factor(s["delta_norm"]) == pytest.approx(np.sqrt(64), rel=0.2)


def test_relu_with_he_keeps_deltas_within_a_decade(first_step):
    s = first_step(activation="relu", init="he_normal", depth=30, width=64)
    assert s["delta_norm"].max() / s["delta_norm"].min() < 10


def test_relu_with_glorot_shrinks_deltas_but_not_weight_gradients(first_step):
    s = first_step(activation="relu", init="glorot_normal", depth=30, width=64, dataset="gaussian", input_dim=64)
    assert per_layer_factor(s["delta_norm"]) == pytest.approx(2**-0.5, rel=0.1)
    grads = s["grad_norm"][:-1]
    assert grads.max() / grads.min() < 6  # flat, against deltas spanning 2^14.5 over 29 layers
    assert s["delta_norm"][-2] / s["delta_norm"][0] > 1e3


def test_selu_with_lecun_normal_self_normalizes_at_depth_50(first_step):
    s = first_step(activation="selu", init="lecun_normal", depth=50, width=64, dataset="gaussian", input_dim=64)
    assert abs(s["act_mean"][-10:]).max() < 0.2
    assert np.abs(s["act_std"][-10:] - 1).max() < 0.2


def test_sigmoid_saturation_and_relu_dead_units_are_measured(first_step):
    sat = first_step(activation="sigmoid", init="standard_normal", depth=10, width=64)
    assert sat["saturation"][1:].mean() > 0.3  # N(0,1) weights drive sigmoid units into their tails
    dead = first_step(activation="relu", init="he_normal", init_gain=1.0, depth=10, width=64)
    assert dead["dead"].max() < 0.5 and 0 <= dead["dead"].min()
