"""One name everywhere: the schema's choices are the registries' names."""

import math
from typing import get_args

import numpy as np
import pytest

from gradscope.config import CONFIG_KEYS, FIELDS, KEYS_BY_MODEL, LIVE_KEYS, RESET_KEYS, ConfigError, choices_of, make_config, meta, range_of
from gradscope.core.activations import ACTIVATIONS
from gradscope.core.datasets import DATASETS, load
from gradscope.core.initializers import INITIALIZERS
from gradscope.core.train import CLIP_MODES, OPTIMIZERS


def test_schema_choices_are_the_registry_names():
    fields = FIELDS
    assert get_args(fields["activation"].annotation) == tuple(ACTIVATIONS)
    assert get_args(fields["init"].annotation) == INITIALIZERS + ("identity",)  # identity: W_hh of the recurrent models
    # digits: also sequences and images; moons: also the GAN's
    assert get_args(fields["dataset"].annotation) == DATASETS + ("adding", "copy", "parity", "shapes", "ring8", "grid25", "swissroll",
                                                                 "drawn")
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
    mlp = ["step", "count", *m["families"]["mlp"]["model_stats"]["mlp"]]
    assert mlp == list(STAT_NAMES)[:len(mlp)]  # the MLP's first (the records' column order), then the GAN's
    assert m["z_edges"] == list(Z_EDGES) and len(m["z_edges"]) == 49 and m["z_edges"][0] == -6.0
    assert m["h_edges"] == sorted(m["h_edges"]) and len(m["h_edges"]) == len(H_EDGES)
    assert m["bounds"]["dropout"] == [0.0, 0.9] and m["bounds"]["depth"] == [1, 256]
    assert "dropout" in m["live_keys"]


FLOAT_KEYS = [k for k, f in FIELDS.items() if f.annotation is float]
NUMERIC_KEYS = [k for k, f in FIELDS.items() if f.annotation in (int, float)]


def of_a_taker(values: dict) -> dict:
    """`values` with the first model that takes all of their keys."""
    model = next(m for m, keys in KEYS_BY_MODEL.items() if set(values) <= set(keys))
    return {"model": model, **values}


def errors_of(values) -> list[dict]:
    with pytest.raises(ConfigError) as info:
        make_config(values)
    return info.value.as_dicts()


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf, "nan", "inf", "-Infinity"])
@pytest.mark.parametrize("key", FLOAT_KEYS)
def test_non_finite_numbers_are_refused_as_such(key, value):
    (err,) = errors_of(of_a_taker({key: value}))
    assert err["field"] == key and err["message"].startswith("must be a finite number"), err


@pytest.mark.parametrize("key", NUMERIC_KEYS)
def test_a_number_out_of_range_is_told_the_range(key):
    lo, hi = meta()["bounds"][key]
    (err,) = errors_of(of_a_taker({key: hi * 2 + 1 if hi is not None else lo - 1}))
    assert err["field"] == key and range_of(key) and range_of(key) in err["message"], err


def test_every_bad_key_is_named_at_once_with_its_choices():
    errs = errors_of({"activation": "relu6", "init": "he", "depth": 0, "learning_rate": -1, "colour": 1, "batchnorm": "maybe"})
    by_field = {e["field"]: e for e in errs}
    assert set(by_field) == {"activation", "init", "depth", "learning_rate", "colour", "batchnorm"}
    for key in ("activation", "init", "batchnorm"):
        assert by_field[key]["choices"] == choices_of(key)
    assert "learning_rate" in by_field["colour"]["choices"]
    assert "from 1 to 256" in by_field["depth"]["message"] and "> 0 and <= 10" in by_field["learning_rate"]["message"]


def test_every_broken_cross_field_rule_is_named_with_the_bad_keys():
    errs = errors_of({"model": "rnn", "dataset": "spirals", "activation": "prelu", "batchnorm": True, "depth": 9})
    assert [e["field"] for e in errs] == ["batchnorm", "dataset", "activation", "depth"]  # the keys' own errors first
    assert all(e["choices"] for e in errs)
    # A bad key and a broken rule over good keys: both; a rule reading the bad key does not guess.
    errs = errors_of({"model": "rnn", "dataset": "spirals", "activation": "bogus", "dropout": 0.5})
    assert [e["field"] for e in errs] == ["activation", "dropout", "dataset"]
    assert [e["field"] for e in errors_of({"model": "vae", "dataset": "adding"})] == ["model"]
    assert [e["field"] for e in errors_of({"model": "gan", "dataset": "adding"})] == ["dataset"]
    errs = errors_of({"model": "cnn", "dataset": "adding", "width": 256, "stages": 3, "depth": 2, "seq_len": 7})
    assert [e["field"] for e in errs] == ["seq_len", "dataset", "width", "stages"] and all(e["choices"] for e in errs)
    assert [e["field"] for e in errors_of({"model": "mlp", "stages": 2, "skip_init": True, "dataset": "shapes"})] == [
        "stages", "skip_init", "dataset"]


def test_meta_names_the_keys_that_compile():
    m = meta()
    gan = {"g_activation", "d_activation", "gan_loss", "lipschitz", "n_critic"}  # the GAN's structural knobs
    assert set(m["compile_keys"]) == set(RESET_KEYS) | {"activation", "optimizer"} | gan
    assert "model" in m["compile_keys"] and "learning_rate" not in m["compile_keys"]
    assert set(m["compile_keys"]) <= set(CONFIG_KEYS)


def test_meta_model_tables_agree_with_validation():
    m = meta()
    assert list(m["model_names"]) == m["models"] == list(m["activations_by_model"]) == list(m["datasets_by_model"])
    assert m["model_names"]["mlp"] == "MLP" and m["activations_by_model"]["mlp"] == m["activations"]
    for model in m["models"]:
        datasets = m["datasets_by_model"][model]  # none: an attached run's data are its script's
        base = {"model": model, **({"dataset": datasets[0]} if datasets else {})}
        if "seq_len" in m["keys_by_model"][model]:
            base["seq_len"] = 64  # fits every task
        listed = m["activations_by_model"][model]
        # every listed one is accepted; an empty list: the model takes any and ignores it (the GAN: one per network)
        for name in m["activations"] if "activation" in m["keys_by_model"][model] else ():
            if name in listed or not listed:
                assert make_config({**base, "activation": name}).activation == name
            else:
                (err,) = errors_of({**base, "activation": name})
                assert err["field"] == "activation" and err["choices"] == listed
        for key, table in (("dataset", "datasets_by_model"), ("init", "initializers_by_model")):
            for name in m[table][model]:
                extra = {"points": [[float(i), 0.0] for i in range(8)]} if name == "drawn" else {}  # a drawing needs its points
                assert getattr(make_config({**base, key: name, **extra}), key) == name
    assert m["model_family"]["rnn"] == "recurrent" and m["families"]["recurrent"]["models"] == ["rnn", "lstm", "gru"]


@pytest.mark.parametrize("config", [{"depth": 2, "width": 4, "batch_size": 8},
                                    *({"model": m, "dataset": "adding", "seq_len": 4, "width": 4, "batch_size": 4}
                                      for m in ("rnn", "lstm", "gru")),
                                    {"model": "cnn", "dataset": "digits", "depth": 3, "width": 4, "batch_size": 4, "stages": 2,
                                     "residual": True}], ids=lambda c: c.get("model", "mlp"))
def test_each_family_emits_exactly_the_statistics_it_publishes_with_their_axes(config):
    """/api/meta's families are the contract the page builds its charts from: every statistic a
    model emits is listed with its axes (one array axis each, after the row axis), and nothing else."""
    from gradscope.engine import Trainer

    m = meta()
    family = m["families"][m["model_family"][config.get("model", "mlp")]]
    rows = Trainer(config).run(3)
    emitted = set(rows) - {"step", "count"}
    assert emitted == set(family["model_stats"][config.get("model", "mlp")])
    for name in emitted:
        assert np.asarray(rows[name]).ndim == 1 + len(family["stats"][name]), name



@pytest.mark.parametrize(("model", "dataset"), [("mlp", "spirals"), ("rnn", "adding"), ("gru", "adding"), ("cnn", "digits")])
def test_a_model_given_no_dataset_takes_its_first_when_the_default_does_not_apply(model, dataset):
    assert make_config({"model": model}).dataset == dataset
    with pytest.raises(ConfigError, match="dataset"):  # a dataset given outright is still checked
        make_config({"model": model, "dataset": "parity" if model in ("mlp", "cnn") else "spirals"})
