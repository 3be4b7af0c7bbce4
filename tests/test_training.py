"""End-to-end training on spirals: what works, what fails, and what BatchNorm fixes."""

import pytest

from gradscope.engine import CompileCache, Trainer

pytestmark = pytest.mark.slow


def train(config, steps=2000):
    tr = Trainer(config, cache=CompileCache(background=False))
    while tr.step < steps:
        tr.run(min(steps - tr.step, tr.max_steps))
    return tr.evaluate()["accuracy"]


def test_relu_he_adam_learns_spirals():
    assert train(dict(activation="relu", init="he_normal", depth=6, width=32, optimizer="adam", learning_rate=1e-2)) >= 0.9


def test_deep_sigmoid_with_standard_normal_does_not_and_batchnorm_fixes_it():
    base = dict(activation="sigmoid", init="standard_normal", depth=20, optimizer="sgd", learning_rate=0.1)
    assert train(base) < 0.9
    assert train(dict(base, batchnorm=True)) >= 0.9
