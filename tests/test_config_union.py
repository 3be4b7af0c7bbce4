"""The config is a discriminated union on `model` (issue 18): one class per family holding the common
keys and the family's own, so a key a model does not take is refused by name; a switch of model keeps
what the new model shares; a config stored flat by an earlier version still loads."""
from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gradscope.config import (
    CLASSES,
    CONFIG,
    CONFIG_KEYS,
    KEYS_BY_MODEL,
    MODEL_NAMES,
    ConfigError,
    load_config,
    make_config,
    meta,
    parse_changes,
)
from gradscope.families import FAMILIES, MODELS, family_of


def errors_of(values) -> list[dict]:
    with pytest.raises(ConfigError) as info:
        make_config(values)
    return info.value.as_dicts()


def test_one_class_per_family_chosen_by_the_model():
    for model in MODELS:
        config = make_config({"model": model})
        assert type(config) is CLASSES[family_of(model).name]
        assert list(config.model_dump()) == list(KEYS_BY_MODEL[model])  # its keys, in the one order
    schema = CONFIG.json_schema()
    members = schema.get("oneOf") or schema.get("anyOf")
    assert len(members) == len(FAMILIES) and set(schema["$defs"]) == {cls.__name__ for cls in CLASSES.values()}
    # every family's own keys are in its class and in no class that does not list them
    for f in FAMILIES:
        assert set(f.config_fields) <= set(CLASSES[f.name].model_fields)
    assert set(CONFIG_KEYS) == {k for cls in CLASSES.values() for k in cls.model_fields}


@pytest.mark.parametrize("model", list(MODELS))
def test_every_key_another_model_takes_is_refused_by_name(model):
    m = meta()
    for key in CONFIG_KEYS:
        if key in KEYS_BY_MODEL[model]:
            continue
        (err,) = errors_of({"model": model, key: m["defaults"][key]})
        takers = [MODEL_NAMES[o] for o in MODELS if key in KEYS_BY_MODEL[o]]
        assert err["field"] == key and err["message"].startswith(f"the {MODEL_NAMES[model]} does not take {key} (")
        assert all(t in err["message"] for t in takers) and err["choices"] == list(KEYS_BY_MODEL[model])
    (err,) = errors_of({"model": model, "colour": "red"})
    assert err == {"field": "colour", "message": "unknown key", "choices": list(KEYS_BY_MODEL[model])}


def test_an_unknown_model_is_named_with_the_models():
    for bad in ("transformer", 3, None, ["mlp"]):
        (err,) = errors_of({"model": bad, "depth": 3})
        assert err["field"] == "model" and err["message"].startswith("unknown model") and err["choices"] == list(MODELS)


def test_switching_the_model_keeps_what_the_new_one_takes():
    mlp = make_config({"model": "mlp", "width": 32, "activation": "relu", "learning_rate": 0.01, "batchnorm": True,
                       "dropout": 0.2, "depth": 6, "dataset": "digits", "seed": 3})
    lstm = parse_changes(mlp, {"model": "lstm"})
    assert (lstm.width, lstm.learning_rate, lstm.seed) == (32, 0.01, 3)  # shared
    assert lstm.depth == 1 and "batchnorm" not in lstm.model_dump()  # 6 is beyond 1..4: the LSTM's default
    # digits is an LSTM task too, but not at the default seq_len (50 does not divide 64 pixels): the keys
    # of the rule that failed start at the LSTM's defaults
    assert (lstm.dataset, lstm.seq_len) == ("adding", 50)
    assert parse_changes(mlp, {"model": "lstm", "seq_len": 16}).dataset == "digits"
    cnn = parse_changes(lstm, {"model": "cnn", "stages": 2, "depth": 4})
    assert (cnn.width, cnn.dataset, cnn.stages, cnn.batchnorm, cnn.depth) == (32, "digits", 2, False, 4)
    # a value the switch names itself is never replaced: it is refused
    with pytest.raises(ConfigError) as info:
        parse_changes(mlp, {"model": "gru", "depth": 9})
    assert info.value.field == "depth"
    with pytest.raises(ConfigError) as info:
        parse_changes(mlp, {"model": "gru", "dropout": 0.1})
    assert info.value.field == "dropout" and "does not take dropout" in info.value.message


def test_a_flat_config_of_an_earlier_version_loads_with_its_models_keys():
    flat = {**meta()["defaults"], "model": "gru", "dataset": "parity", "depth": 2, "seq_len": 20, "batchnorm": False}
    config = load_config(flat)
    assert config.model == "gru" and config.seq_len == 20 and "batchnorm" not in config.model_dump()
    with pytest.raises(ConfigError):
        make_config(flat)  # strictly, the flat object is refused: it names keys a GRU does not take


@settings(max_examples=60, deadline=None)
@given(st.sampled_from(list(MODELS)), st.sampled_from(list(MODELS)),
       st.dictionaries(st.sampled_from(CONFIG_KEYS), st.sampled_from([0, 1, 2, 0.5, True, "x", None]), max_size=4))
def test_a_switch_either_validates_or_names_a_key_it_changes(start, to, extra):
    """Any switch with any companion changes: a valid config of the new model, or an error naming a key
    the changes name (the switch never fails on a key the user did not touch)."""
    current = make_config({"model": start})
    changes = {**extra, "model": to}
    try:
        new = parse_changes(current, changes)
    except ConfigError as exc:
        assert {e.field for e in (exc, *exc.more)} <= set(changes)
        return
    assert new.model == to and set(new.model_dump()) == set(KEYS_BY_MODEL[to])
