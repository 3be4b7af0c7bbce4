"""One name everywhere: the schema's choices are the registries' names."""

from typing import get_args

from gradscope.config import CONFIG_KEYS, LIVE_KEYS, RESET_KEYS, Config, meta
from gradscope.core.activations import ACTIVATIONS
from gradscope.core.datasets import DATASETS, load
from gradscope.core.initializers import INITIALIZERS
from gradscope.core.train import CLIP_MODES, OPTIMIZERS


def test_schema_choices_are_the_registry_names():
    fields = Config.model_fields
    assert get_args(fields["activation"].annotation) == tuple(ACTIVATIONS)
    assert get_args(fields["init"].annotation) == INITIALIZERS + ("identity",)  # identity: W_hh of the recurrent models
    assert get_args(fields["dataset"].annotation) == DATASETS + ("adding", "copy", "parity")  # and digits as a sequence
    assert get_args(fields["optimizer"].annotation) == tuple(OPTIMIZERS)
    assert get_args(fields["clip_mode"].annotation) == CLIP_MODES
    m = meta()
    assert m["activations"] == list(ACTIVATIONS) and m["initializers"] == list(INITIALIZERS) + ["identity"]
    assert set(LIVE_KEYS) | set(RESET_KEYS) == set(CONFIG_KEYS) and not set(LIVE_KEYS) & set(RESET_KEYS)


def test_datasets_are_standardized_and_labelled():
    for name in DATASETS:
        x, y = load(name, noise=0.1, seed=0, input_dim=5)
        assert abs(x.mean(0)).max() < 1e-4 and (abs(x.std(0) - 1) < 1e-3).all() | (x.std(0) == 0).any()
        assert y.min() == 0 and len(set(y.tolist())) == (10 if name == "digits" else 2)
    assert load("digits")[0].shape == (1797, 64)


def test_meta_lists_statistics_bins_and_bounds():
    from gradscope.core.network import H_EDGES, Z_EDGES
    from gradscope.records import STAT_NAMES
    m = meta()
    groups = m["stats"]
    assert ["step", "count", *groups["global"], *groups["layer"], *groups["hidden"], *groups["hist"]] == list(STAT_NAMES)
    assert set(groups["sparse"]) <= set(groups["global"])
    assert m["z_edges"] == list(Z_EDGES) and len(m["z_edges"]) == 49 and m["z_edges"][0] == -6.0
    assert m["h_edges"] == sorted(m["h_edges"]) and len(m["h_edges"]) == len(H_EDGES)
    assert m["bounds"]["dropout"] == [0.0, 0.9] and m["bounds"]["depth"] == [1, 256]
    assert "dropout" in m["live_keys"]
