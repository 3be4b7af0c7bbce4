"""The validated run configuration: a discriminated union on `model`, one class per model
family, each holding the common keys and the family's own (`ModelFamily.config_fields`).

The `Literal` choices are the registry names themselves, so the schema, the URL, the
WebSocket messages and the engine can never disagree about what a name means. A key a model
does not take is refused by name ("the LSTM does not take batchnorm"); switching the model
(`parse_changes`) keeps the keys the new model shares and drops the rest.
"""

from collections.abc import Callable, Iterator
from typing import Annotated, Any, Literal, NamedTuple, Union, get_args, get_origin

import jax
from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    TypeAdapter,
    ValidationError,
    create_model,
    model_validator,
)

from gradscope import __version__
from gradscope.core.activations import ACTIVATIONS
from gradscope.core.network import H_EDGES, Z_EDGES
from gradscope.core.train import (
    CLIP_MODES,
    HIST_EDGES,
    OPTIMIZER_NAMES,
    VAL_EVERY,
)
from gradscope.errors import ConfigError
from gradscope.families import FAMILIES, MODELS, family_of

ACTIVATION_NAMES = tuple(ACTIVATIONS)

LIMITS = {
    "depth": [1, 256],
    "width": [2, 1024],
    "batch_size": [1, 4096],
    # Server protection beyond the per-key bounds: kernel entries and activations per step.
    "max_parameters": 2**24,
    "max_activations": 2**25,
}

# Every name some model takes, in the order the families list them; which model takes which: MODELS.
ALL_DATASETS = tuple(dict.fromkeys(d for m in MODELS.values() for d in m.datasets))
ALL_INITIALIZERS = tuple(dict.fromkeys(i for m in MODELS.values() for i in m.initializers))

DEFAULT_MODEL = next(iter(MODELS))  # the first family's first model: the MLP
MODEL_NAMES = {name: m.label for name, m in MODELS.items()}
DATASETS_BY_MODEL = {name: m.datasets for name, m in MODELS.items()}
INITIALIZERS_BY_MODEL = {name: m.initializers for name, m in MODELS.items()}
# (): the model takes no activation (the gated cells' fixed sigmoids and tanh): any value is accepted and ignored
ACTIVATIONS_BY_MODEL = {name: m.activations for name, m in MODELS.items()}


# The keys every model takes: size, seed and the live optimization knobs, and the names (`dataset`,
# `init`: every model's, so that a name another model takes gets the rule's "the LSTM does not take
# ..."). A family's class adds `model` and `depth` (its names, its default) and its own keys.
COMMON_FIELDS = {
    "dataset": (Literal[ALL_DATASETS], "spirals"),
    "depth": (int, Field(10, ge=LIMITS["depth"][0], le=LIMITS["depth"][1])),
    "width": (int, Field(64, ge=LIMITS["width"][0], le=LIMITS["width"][1])),
    "batch_size": (int, Field(128, ge=LIMITS["batch_size"][0], le=LIMITS["batch_size"][1])),
    "init": (Literal[ALL_INITIALIZERS], "glorot_normal"),
    "init_gain": (float, Field(1.0, gt=0.0, le=100.0)),
    "seed": (int, Field(0, ge=0, le=2**31 - 1)),
    "activation": (Literal[ACTIVATION_NAMES], "sigmoid"),
    "leaky_alpha": (float, Field(0.01, ge=0.0, le=1.0)),
    "clip_mode": (Literal[CLIP_MODES], "none"),
    "clip_value": (float, Field(1.0, gt=0.0, le=1e6)),
    "optimizer": (Literal[OPTIMIZER_NAMES], "sgd"),
    "learning_rate": (float, Field(0.1, gt=0.0, le=10.0)),
    "l1": (float, Field(0.0, ge=0.0, le=10.0)),
    "l2": (float, Field(0.0, ge=0.0, le=10.0)),
}
# The order of the keys in every config, record and URL; a family's new keys follow.
ORDER = ("model", "dataset", "input_dim", "noise", "depth", "width", "batch_size", "init", "init_gain", "seed", "activation",
         "leaky_alpha", "batchnorm", "residual", "clip_mode", "clip_value", "optimizer", "learning_rate", "l1", "l2", "dropout",
         "seq_len", "forget_bias", "stages", "skip_init")


class CommonConfig(BaseModel):
    """What every family's config class shares: strictness, and every error at once."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)  # NaN, Inf: "must be a finite number"

    @model_validator(mode="wrap")
    @classmethod
    def _every_error(cls, data, handler):
        """The per-key checks, then every cross-field rule (RULES), all in one ValidationError.
        With bad keys, the rules that read only good ones still run (the bad ones at their defaults)."""
        data = _model_dataset_default(data)
        try:
            config = handler(data)
        except ValidationError as exc:
            bad = {e["loc"][0] for e in exc.errors() if e["loc"]}
            good = {k: v for k, v in data.items() if k not in bad and k in cls.model_fields} if isinstance(data, dict) and bad else None
            try:
                rest = handler(_model_dataset_default(good)) if good is not None else None
            except ValidationError:
                rest = None
            broken = broken_rules(rest, skip=bad) if rest is not None else []
            if not broken:
                raise
            raise _validation_error(cls.__name__, exc.errors(), broken) from None
        broken = broken_rules(config)
        if broken:
            raise _validation_error(cls.__name__, [], broken)
        return config



def _family_config(family) -> type[CommonConfig]:
    """The config class of `family`'s models: its names and defaults, the common keys, its own keys."""
    models = tuple(m.name for m in family.models)
    datasets = family.models[0].datasets
    fields = {
        **COMMON_FIELDS,
        "model": (Literal[models], models[0]),
        "dataset": (Literal[ALL_DATASETS], "spirals" if "spirals" in datasets or not datasets else datasets[0]),
        "depth": (int, Field(family.default_depth, ge=LIMITS["depth"][0], le=LIMITS["depth"][1])),
    }
    fields = {k: v for k, v in fields.items() if k not in family.common_keys_not_taken}
    fields.update(family.config_fields)
    rank = {k: i for i, k in enumerate(ORDER)}
    fields = dict(sorted(fields.items(), key=lambda kv: rank.get(kv[0], len(rank))))
    name = "".join(part.capitalize() for part in family.name.split("_")) + "Config"
    return create_model(name, __base__=CommonConfig, __module__=__name__, __doc__=f"A run of a {family.name} model.", **fields)


CLASSES: dict[str, type[CommonConfig]] = {f.name: _family_config(f) for f in FAMILIES}


def _family_tag(value) -> str | None:
    """The union's discriminator: the family of the value's model (the default model's where it names none)."""
    model = value.get("model", DEFAULT_MODEL) if isinstance(value, dict) else getattr(value, "model", None)
    return family_of(model).name if isinstance(model, str) and model in MODELS else None


Config = Annotated[
    Union[tuple(Annotated[cls, Tag(name)] for name, cls in CLASSES.items())],  # noqa: UP007 (a tuple of members)
    Discriminator(_family_tag, custom_error_type="unknown_model", custom_error_message="unknown model"),
]
CONFIG = TypeAdapter(Config)
# Every key some model takes, the common ones first, then each family's in the families' order.
FIELDS = {name: info for cls in CLASSES.values() for name, info in cls.model_fields.items()}
CONFIG_KEYS = tuple(sorted(FIELDS, key=lambda k: ORDER.index(k) if k in ORDER else len(ORDER)))
KEYS_BY_MODEL = {m: tuple(k for k in CONFIG_KEYS if k in CLASSES[family_of(m).name].model_fields) for m in MODELS}
CHOICES = {"model": list(MODELS)}
# Live keys change mid-run (traced: weights and step kept); the others re-initialize the run.
COMMON_LIVE_KEYS = ("activation", "leaky_alpha", "clip_mode", "clip_value", "optimizer", "learning_rate", "l1", "l2")
LIVE_KEYS = tuple(k for k in CONFIG_KEYS if k in COMMON_LIVE_KEYS or any(k in f.live_keys for f in FAMILIES))
RESET_KEYS = tuple(k for k in CONFIG_KEYS if k not in LIVE_KEYS)
# The live keys that pick compiled code rather than a traced number: their change compiles, like a reset's.
CODE_KEYS = ("activation", "optimizer", *dict.fromkeys(k for f in FAMILIES for k in f.code_keys))
COMPILE_KEYS = RESET_KEYS + CODE_KEYS


def _model_dataset_default(data):
    """A config given no dataset gets its model's first where its family's default is not among the
    model's (every model of a family starts from the family's, where it takes it)."""
    model = data.get("model", DEFAULT_MODEL) if isinstance(data, dict) else None
    if model in MODELS and "dataset" not in data:
        datasets = MODELS[model].datasets
        field = CLASSES[family_of(model).name].model_fields.get("dataset")
        if field is not None and field.default not in datasets:
            data = {**data, "dataset": datasets[0]}
    return data


def _validation_error(title: str, errors: list[dict], broken: list) -> ValidationError:
    """pydantic's errors plus the broken rules' ConfigErrors (as value errors at their fields)."""
    lines = [{"type": e["type"], "loc": e["loc"], "input": e["input"], **({"ctx": e["ctx"]} if "ctx" in e else {})}
             for e in errors]
    lines += [{"type": "value_error", "loc": (b.field,), "input": None, "ctx": {"error": b}} for b in broken]
    return ValidationError.from_exception_data(title, lines)


# -- cross-field rules: which keys fit which model, sizes (issues 12, 17) ------------------
class Rule(NamedTuple):
    """A check over several keys: the keys it reads (or, where they depend on the model, a function of
    the config giving them), and the errors of a config that breaks it."""

    keys: tuple[str, ...] | Callable[[Any], tuple[str, ...]]
    check: Callable[[Any], Iterator["ConfigError"]]


def _in_model_list(key: str, table: dict) -> Rule:
    """`key`'s value is in `table[model]` (an empty list: the model ignores the key)."""
    def check(c):
        names, value = table[c.model], getattr(c, key)
        if names and value not in names:
            takers = [MODEL_NAMES[m] for m, ok in table.items() if value in ok]
            also = f" ({', '.join(takers)} {'does' if len(takers) == 1 else 'do'})" if takers else ""
            yield ConfigError(key, f"the {MODEL_NAMES[c.model]} does not take {key} {value}{also}", list(names))
    return Rule(("model", key), check)


def _depth(c):
    family = family_of(c.model)
    lo, hi = family.depth_range
    if not lo <= c.depth <= hi:
        yield ConfigError("depth", f"{family.name} models stack {lo} to {hi} layers", list(range(lo, hi + 1)))


def _family_rules(c):
    yield from family_of(c.model).rules(c)


def _weights(c):
    params = c.depth * c.width * c.width
    if params > LIMITS["max_parameters"]:
        yield ConfigError("depth", f"depth x width^2 = {params} exceeds {LIMITS['max_parameters']} weights; lower depth or width")


def _activations(c):
    acts, key, what = family_of(c.model).activation_count(c)
    if acts > LIMITS["max_activations"]:
        yield ConfigError(key, f"{what} = {acts} exceeds {LIMITS['max_activations']}; lower one of them")


# In order: a key keeps the first error a rule gives it.
RULES = (
    _in_model_list("dataset", DATASETS_BY_MODEL),
    _in_model_list("init", INITIALIZERS_BY_MODEL),
    _in_model_list("activation", ACTIVATIONS_BY_MODEL),
    Rule(("model", "depth"), _depth),
    Rule(lambda c: ("model", *family_of(c.model).rule_keys), _family_rules),
    Rule(("depth", "width"), _weights),
    Rule(lambda c: ("model", *family_of(c.model).count_keys), _activations),
)


def broken_rules(c, skip=frozenset()) -> list["ConfigError"]:
    """Every cross-field error of `c`, one per key; rules reading a key in `skip` (a bad one) do not run."""
    out, taken = {}, type(c).model_fields
    for rule in RULES:
        keys = set(rule.keys(c) if callable(rule.keys) else rule.keys)
        if not skip & keys and keys <= set(taken):  # a rule over keys the model does not take does not apply
            for err in rule.check(c):
                if err.field not in skip:
                    out.setdefault(err.field, err)
    return list(out.values())


def choices_of(field: str) -> list | None:
    if field in CHOICES:
        return CHOICES[field]
    info = FIELDS.get(field)
    if info is None:
        return None
    if get_origin(info.annotation) is Literal:
        return list(get_args(info.annotation))
    if info.annotation is bool:
        return [True, False]
    return None


SYMBOLS = {"gt": ">", "ge": ">=", "lt": "<", "le": "<="}


def range_of(field: str) -> str:
    """A numeric key's bounds as words: "from 1 to 256", "> 0 and <= 10"; "" where it has none."""
    bounds = {op: getattr(m, op) for m in FIELDS[field].metadata for op in SYMBOLS if getattr(m, op, None) is not None}
    text = {op: str(int(v)) if isinstance(v, float) and v.is_integer() else str(v) for op, v in bounds.items()}
    if set(bounds) == {"ge", "le"}:
        return f"from {text['ge']} to {text['le']}"
    return " and ".join(f"{SYMBOLS[op]} {text[op]}" for op in SYMBOLS if op in bounds)


NUMBER_ERRORS = ("greater_than", "greater_than_equal", "less_than", "less_than_equal", "int_parsing", "int_from_float",
                 "int_type", "float_parsing", "float_type")


def _message(field: str, err: dict) -> str:
    kind, info = err["type"], FIELDS.get(field)
    if info is not None and (kind == "finite_number" or kind in NUMBER_ERRORS):
        what = "a finite number" if kind == "finite_number" else "an integer" if info.annotation is int else "a number"
        return f"must be {what} {range_of(field)}".strip()
    if kind == "literal_error":
        shown = repr(err["input"])
        return f"unknown {field} {shown if len(shown) <= 40 else shown[:37] + '...'}"
    if kind in ("bool_parsing", "bool_type"):
        return "must be true or false"
    return err["msg"]


def not_taken(field: str, model: str) -> dict:
    """The error of a key `model` does not take: which models do, and the keys it takes."""
    if model not in MODELS:
        return {"field": field, "message": "unknown key", "choices": list(CONFIG_KEYS)}
    takers = [MODEL_NAMES[m] for m, keys in KEYS_BY_MODEL.items() if field in keys]
    if not takers:
        return {"field": field, "message": "unknown key", "choices": list(KEYS_BY_MODEL[model])}
    also = f" ({', '.join(takers)} {'does' if len(takers) == 1 else 'do'})"
    return {"field": field, "message": f"the {MODEL_NAMES[model]} does not take {field}{also}",
            "choices": list(KEYS_BY_MODEL[model])}


def describe_error(err: dict, field: str | None = None, model: str | None = None) -> dict:
    """One pydantic error of a config as {"field", "message", "choices"}: the key by its name (`field`, or
    the error's location), what it takes (a finite number, its range), its valid names where it has some.
    `model`: the config's model, for a key it does not take."""
    if isinstance(err.get("ctx", {}).get("error"), ConfigError):  # a cross-field rule's: it names its field
        return err["ctx"]["error"].as_dict()
    loc = tuple(p for p in err["loc"] if not (isinstance(p, str) and p in CLASSES))  # the union's member tag
    field = field or next((p for p in reversed(loc) if isinstance(p, str)), None)
    if err["type"] == "unknown_model":  # the discriminator's
        field, err = "model", {**err, "type": "literal_error", "input": err["input"].get("model") if isinstance(err["input"], dict) else err["input"]}
    field = field or "config"
    if err["type"] == "extra_forbidden":
        return not_taken(field, model or DEFAULT_MODEL)
    return {"field": field, "message": _message(field, err), "choices": choices_of(field)}


def describe_errors(exc: ValidationError, model: str | None = None) -> list[dict]:
    """pydantic errors as [{"field", "message", "choices"}], every problem once: the errors of a
    list's entries (the GAN's drawn `points`) that say the same thing are one, naming the first
    entry and how many more."""
    groups: dict[tuple, list] = {}
    for err in exc.errors():
        d = describe_error(err, model=model)
        entry = next((p for p in err["loc"] if isinstance(p, int)), None)
        groups.setdefault((d["field"], d["message"]), [d, entry, 0])[2] += 1
    out = []
    for d, entry, n in groups.values():
        if entry is not None:
            d = {**d, "message": f"{d['message']} (entry {entry}{f' and {n - 1} more' if n > 1 else ''})"}
        out.append(d)
    return out


def make_config(values: dict[str, Any] | None = None) -> Config:
    """Validate a (partial) dict of config keys; raises ConfigError naming the first bad field, the others in `more`.
    A key given a value of its own (not its default) where it does not apply (the GAN's clip_c under a
    gradient penalty: `ModelFamily.applies`) is refused by name."""
    config = _validate(values)
    given = {k for k, v in (values or {}).items() if k in type(config).model_fields and v != type(config).model_fields[k].default}
    _check_applies(config, given)
    return config


def _check_applies(config, keys) -> None:
    """ConfigErrors for the `keys` that do not apply under the config's other values (`ModelFamily.applies`)."""
    errors = []
    for key in sorted(keys):
        rule = family_of(config.model).applies.get(key)
        if rule is not None and getattr(config, rule[0]) not in rule[1]:
            on = " or ".join(f"{rule[0]} {v}" for v in rule[1])
            errors.append(ConfigError(key, f"{key} applies only with {on} (this run has {rule[0]} {getattr(config, rule[0])}); "
                                           f"set {rule[0]} first", list(rule[1])))
    if errors:
        raise ConfigError.of(errors)


def _validate(values: dict[str, Any] | None = None) -> Config:
    if values is not None and not isinstance(values, dict):
        raise ConfigError("config", "must be an object of config keys", list(CONFIG_KEYS))
    values = values or {}
    try:
        return CONFIG.validate_python(values)
    except ValidationError as exc:
        model = values.get("model", DEFAULT_MODEL)
        raise ConfigError.of([ConfigError(**d) for d in describe_errors(exc, model if isinstance(model, str) else None)]) from None


def is_config(value) -> bool:
    return isinstance(value, CommonConfig)


def load_config(values: dict[str, Any]) -> Config:
    """A config as an earlier version stored it (every key of every model in one flat object):
    the keys its model takes, validated; the others dropped."""
    model = values.get("model", DEFAULT_MODEL)
    keys = KEYS_BY_MODEL.get(model, CONFIG_KEYS)
    return _validate({k: v for k, v in values.items() if k in keys})


def parse_changes(config: Config, changes: Any) -> Config:
    """The config with `changes` applied, validated; raises ConfigError. A change of model keeps the
    keys the new model takes too and drops the others (theirs start at their defaults)."""
    if not isinstance(changes, dict) or not changes:
        raise ConfigError("changes", "must be a non-empty object of config keys", list(CONFIG_KEYS))
    new = _apply(config, changes)
    _check_applies(new, set(changes))
    return new


def _apply(config: Config, changes: dict) -> Config:
    current = config.model_dump()
    model = changes.get("model", config.model)
    if model != config.model and model in MODELS and not (family_of(model).trains_here and family_of(config.model).trains_here):
        attached = MODEL_NAMES[model if not family_of(model).trains_here else config.model]
        raise ConfigError("model", f"an {attached} is trained by its own script: it cannot become another model, "
                          "nor another model become one", [config.model])
    if model == config.model or model not in MODELS:
        for key, (on, values) in family_of(config.model).cleared_with.items():
            if on in changes and changes[on] not in values and key not in changes:
                current.pop(key, None)  # its default: it belongs to the value being left
        return _validate({**current, **changes})
    kept = {k: v for k, v in current.items() if k in KEYS_BY_MODEL[model]}
    while True:
        try:
            return _validate({**kept, **changes})
        except ConfigError as exc:
            unfit = {e.field for e in (exc, *exc.more)} - set(changes)
            if not unfit:
                raise
            if unfit & set(kept):  # a kept value the new model refuses (the MLP's spirals for an LSTM): its default
                kept = {k: v for k, v in kept.items() if k not in unfit}
            elif set(kept) & set(family_of(model).rule_keys):  # a default that does not fit a kept value (seq_len 50
                kept = {k: v for k, v in kept.items() if k not in family_of(model).rule_keys}  # for digits' 64 pixels)
            elif set(kept) - set(LIVE_KEYS):
                kept = {k: v for k, v in kept.items() if k in LIVE_KEYS}  # the knobs stay; the run's set-up is the model's
            else:
                raise


def differing(old: Config, new: Config, keys=None) -> dict[str, list]:
    """{key: [old value, new value]} of the keys (`keys`, else every key) whose values differ; a key
    only one of the two models takes counts as None in the other."""
    a, b = old.model_dump(), new.model_dump()
    return {k: [a.get(k), b.get(k)] for k in (keys if keys is not None else CONFIG_KEYS) if a.get(k) != b.get(k)}


def _bounds() -> dict:
    """[min, max] of every numeric config key, from the schema (exclusive bounds as given)."""
    out = {}
    for name, info in FIELDS.items():
        lo = hi = None
        for m in info.metadata:
            lo = getattr(m, "ge", getattr(m, "gt", lo))
            hi = getattr(m, "le", getattr(m, "lt", hi))
        if lo is not None or hi is not None:
            out[name] = [lo, hi]
    return out


def _flat_defaults() -> dict:
    """One value for every key: the default model's defaults, then each other family's for its own keys
    (what a page shows, greyed, for a key its model does not take)."""
    out = {}
    for cls in CLASSES.values():
        for k, v in cls().model_dump().items():
            out.setdefault(k, v)
    return {k: out[k] for k in CONFIG_KEYS}


def meta() -> dict:
    """The valid names, limits, statistic groups, histogram bins and the JAX platform, for clients."""
    return {
        "version": __version__,
        "activations": list(ACTIVATION_NAMES),
        "initializers": list(ALL_INITIALIZERS),  # which apply to which model: "initializers_by_model"
        "datasets": list(ALL_DATASETS),  # which apply to which model: "datasets_by_model"
        "models": list(MODELS),
        "model_names": MODEL_NAMES,
        "datasets_by_model": {m: list(names) for m, names in DATASETS_BY_MODEL.items()},
        "initializers_by_model": {m: list(names) for m, names in INITIALIZERS_BY_MODEL.items()},
        "activations_by_model": {m: list(names) for m, names in ACTIVATIONS_BY_MODEL.items()},  # []: the model ignores it
        "families": {f.name: {**f.meta(), "keys": list(CLASSES[f.name].model_fields)} for f in FAMILIES},
        "model_family": {name: family_of(name).name for name in MODELS},
        "optimizers": list(OPTIMIZER_NAMES),
        "clip_modes": list(CLIP_MODES),
        "live_keys": list(LIVE_KEYS),
        "reset_keys": list(RESET_KEYS),
        "compile_keys": list(COMPILE_KEYS),  # a change compiles new code (the page says "compiling")
        "choices": {k: choices_of(k) for k in CONFIG_KEYS if k != "model" and get_origin(FIELDS[k].annotation) is Literal},
        "defaults": _flat_defaults(),  # every key: the default model's, then the others' own keys
        "defaults_by_model": {m: make_config({"model": m}).model_dump() for m in MODELS},
        "keys_by_model": {m: list(keys) for m, keys in KEYS_BY_MODEL.items()},  # a key not listed: refused by name
        "limits": {**LIMITS, **{k: _bounds()[k] for k in ("input_dim", "seq_len")}},
        "bounds": _bounds(),
        "hist_edges": [float(e) for e in HIST_EDGES],
        "z_edges": [float(e) for e in Z_EDGES],
        "h_edges": [float(e) for e in H_EDGES],
        "val_every": VAL_EVERY,
        "backend": jax.default_backend(),
        "devices": [str(d) for d in jax.devices()],
    }
