"""The validated run configuration: one flat object, the same keys everywhere.

The `Literal` choices are the registry names themselves, so the schema, the URL, the
WebSocket messages and the engine can never disagree about what a name means.
"""

from collections.abc import Callable, Iterator
from typing import Any, Literal, NamedTuple, get_args, get_origin

import jax
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

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
    "input_dim": [2, 64],
    "seq_len": [2, 1000],
    # Server protection beyond the per-key bounds: kernel entries and activations per step.
    "max_parameters": 2**24,
    "max_activations": 2**25,
}

LIVE_KEYS = ("activation", "leaky_alpha", "batchnorm", "residual", "clip_mode", "clip_value", "optimizer", "learning_rate", "l1", "l2",
             "dropout")
RESET_KEYS = ("model", "dataset", "input_dim", "noise", "depth", "width", "batch_size", "init", "init_gain", "seed", "seq_len", "forget_bias",
              "stages", "skip_init")
# The live keys that pick compiled code rather than a traced number: their change compiles, like a reset's.
CODE_KEYS = ("activation", "optimizer")
COMPILE_KEYS = RESET_KEYS + CODE_KEYS
# Every name some model takes, in the order the families list them; which model takes which: MODELS.
ALL_DATASETS = tuple(dict.fromkeys(d for m in MODELS.values() for d in m.datasets))
ALL_INITIALIZERS = tuple(dict.fromkeys(i for m in MODELS.values() for i in m.initializers))

DEFAULT_MODEL = next(iter(MODELS))  # the first family's first model: the MLP
MODEL_NAMES = {name: m.label for name, m in MODELS.items()}
DATASETS_BY_MODEL = {name: m.datasets for name, m in MODELS.items()}
INITIALIZERS_BY_MODEL = {name: m.initializers for name, m in MODELS.items()}
# (): the model takes no activation (the gated cells' fixed sigmoids and tanh): any value is accepted and ignored
ACTIVATIONS_BY_MODEL = {name: m.activations for name, m in MODELS.items()}


class Config(BaseModel):
    """A run: data, architecture, initialization (reset keys) and the live knobs."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)  # NaN, Inf: "must be a finite number"

    model: Literal[tuple(MODELS)] = DEFAULT_MODEL
    dataset: Literal[ALL_DATASETS] = "spirals"
    input_dim: int = Field(2, ge=LIMITS["input_dim"][0], le=LIMITS["input_dim"][1])
    noise: float = Field(0.1, ge=0.0, le=2.0)
    depth: int = Field(10, ge=LIMITS["depth"][0], le=LIMITS["depth"][1])
    width: int = Field(64, ge=LIMITS["width"][0], le=LIMITS["width"][1])
    batch_size: int = Field(128, ge=LIMITS["batch_size"][0], le=LIMITS["batch_size"][1])
    init: Literal[ALL_INITIALIZERS] = "glorot_normal"
    init_gain: float = Field(1.0, gt=0.0, le=100.0)
    seed: int = Field(0, ge=0, le=2**31 - 1)
    activation: Literal[ACTIVATION_NAMES] = "sigmoid"
    leaky_alpha: float = Field(0.01, ge=0.0, le=1.0)
    batchnorm: bool = False
    residual: bool = False
    clip_mode: Literal[CLIP_MODES] = "none"
    clip_value: float = Field(1.0, gt=0.0, le=1e6)
    optimizer: Literal[OPTIMIZER_NAMES] = "sgd"
    learning_rate: float = Field(0.1, gt=0.0, le=10.0)
    l1: float = Field(0.0, ge=0.0, le=10.0)
    l2: float = Field(0.0, ge=0.0, le=10.0)
    dropout: float = Field(0.0, ge=0.0, le=0.9)
    seq_len: int = Field(50, ge=LIMITS["seq_len"][0], le=LIMITS["seq_len"][1])
    forget_bias: float = Field(1.0, ge=-10.0, le=10.0)
    stages: int = Field(1, ge=1, le=3)  # the CNN's stride-2 stages
    skip_init: bool = False  # the CNN's SkipInit gains on its residual branches

    @model_validator(mode="wrap")
    @classmethod
    def _every_error(cls, data, handler):
        """The per-key checks, then every cross-field rule (RULES), all in one ValidationError.
        With bad keys, the rules that read only good ones still run (the bad ones at their defaults)."""
        data = _family_depth_default(data)
        try:
            config = handler(data)
        except ValidationError as exc:
            bad = {e["loc"][0] for e in exc.errors() if e["loc"]}
            good = {k: v for k, v in data.items() if k not in bad} if isinstance(data, dict) and bad else None
            try:
                rest = handler(_family_depth_default(good)) if good is not None else None
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


def _family_depth_default(data):
    """A config given no depth gets its family's default (one recurrent layer, not the MLP's ten),
    and one given no dataset its model's first where the default is not among the model's
    (`/?model=cnn` trains on digits, not the MLP's spirals)."""
    model = data.get("model", DEFAULT_MODEL) if isinstance(data, dict) else None
    if model in MODELS and "depth" not in data:
        data = {**data, "depth": family_of(model).default_depth}
    if model in MODELS and "dataset" not in data:
        datasets = family_of(model).model(model).datasets
        if Config.model_fields["dataset"].default not in datasets:
            data = {**data, "dataset": datasets[0]}
    return data


def _validation_error(title: str, errors: list[dict], broken: list) -> ValidationError:
    """pydantic's errors plus the broken rules' ConfigErrors (as value errors at their fields)."""
    lines = [{"type": e["type"], "loc": e["loc"], "input": e["input"], **({"ctx": e["ctx"]} if "ctx" in e else {})}
             for e in errors]
    lines += [{"type": "value_error", "loc": (b.field,), "input": None, "ctx": {"error": b}} for b in broken]
    return ValidationError.from_exception_data(title, lines)


# -- cross-field rules: which keys fit which model, sizes (issues 12, 17) ------------------
# Keys some family refuses (with the one value it allows: the page greys them out); the rest its family takes.
REFUSED_KEYS = tuple(dict.fromkeys(k for f in FAMILIES for k, allowed in f.refused_keys.items() if allowed is not None))


class Rule(NamedTuple):
    """A check over several keys: the keys it reads, and the errors of a config that breaks it."""

    keys: tuple[str, ...]
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


def _refused(c):
    family = family_of(c.model)
    for key, allowed in family.refused_keys.items():
        if allowed is not None and getattr(c, key) != allowed:
            yield ConfigError(key, f"does not apply to the {family.name} model {c.model}", [allowed])


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
    Rule(("model",) + REFUSED_KEYS, _refused),
    Rule(("model", "depth"), _depth),
    Rule(("model",) + tuple(dict.fromkeys(k for f in FAMILIES for k in f.rule_keys)), _family_rules),
    Rule(("depth", "width"), _weights),
    Rule(("model",) + tuple(dict.fromkeys(k for f in FAMILIES for k in f.count_keys)), _activations),
)


def broken_rules(c, skip=frozenset()) -> list["ConfigError"]:
    """Every cross-field error of `c`, one per key; rules reading a key in `skip` (a bad one) do not run."""
    out = {}
    for rule in RULES:
        if not skip & set(rule.keys):
            for err in rule.check(c):
                if err.field not in skip:
                    out.setdefault(err.field, err)
    return list(out.values())


CONFIG_KEYS = tuple(Config.model_fields)


def choices_of(field: str) -> list | None:
    info = Config.model_fields.get(field)
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
    bounds = {op: getattr(m, op) for m in Config.model_fields[field].metadata for op in SYMBOLS if getattr(m, op, None) is not None}
    text = {op: str(int(v)) if isinstance(v, float) and v.is_integer() else str(v) for op, v in bounds.items()}
    if set(bounds) == {"ge", "le"}:
        return f"from {text['ge']} to {text['le']}"
    return " and ".join(f"{SYMBOLS[op]} {text[op]}" for op in SYMBOLS if op in bounds)


NUMBER_ERRORS = ("greater_than", "greater_than_equal", "less_than", "less_than_equal", "int_parsing", "int_from_float",
                 "int_type", "float_parsing", "float_type")


def _message(field: str, err: dict) -> str:
    kind, info = err["type"], Config.model_fields.get(field)
    if info is not None and (kind == "finite_number" or kind in NUMBER_ERRORS):
        what = "a finite number" if kind == "finite_number" else "an integer" if info.annotation is int else "a number"
        return f"must be {what} {range_of(field)}".strip()
    if kind == "literal_error":
        shown = repr(err["input"])
        return f"unknown {field} {shown if len(shown) <= 40 else shown[:37] + '...'}"
    if kind in ("bool_parsing", "bool_type"):
        return "must be true or false"
    return err["msg"]


def describe_error(err: dict, field: str | None = None) -> dict:
    """One pydantic error of a Config as {"field", "message", "choices"}: the key by its name (`field`, or
    the error's location), what it takes (a finite number, its range), its valid names where it has some."""
    if isinstance(err.get("ctx", {}).get("error"), ConfigError):  # a cross-field rule's: it names its field
        return err["ctx"]["error"].as_dict()
    field = field or next((p for p in reversed(err["loc"]) if isinstance(p, str)), "config")
    if err["type"] == "extra_forbidden":
        return {"field": field, "message": "unknown key", "choices": list(CONFIG_KEYS)}
    return {"field": field, "message": _message(field, err), "choices": choices_of(field)}


def describe_errors(exc: ValidationError) -> list[dict]:
    """pydantic errors as [{"field", "message", "choices"}], every one of them."""
    return [describe_error(err) for err in exc.errors()]


def make_config(values: dict[str, Any] | None = None) -> Config:
    """Validate a (partial) dict of config keys; raises ConfigError naming the first bad field, the others in `more`."""
    if values is not None and not isinstance(values, dict):
        raise ConfigError("config", "must be an object of config keys", list(CONFIG_KEYS))
    try:
        return Config.model_validate(values or {})
    except ValidationError as exc:
        raise ConfigError.of([ConfigError(**d) for d in describe_errors(exc)]) from None


def parse_changes(config: Config, changes: Any) -> Config:
    """The config with `changes` applied, validated; raises ConfigError."""
    if not isinstance(changes, dict) or not changes:
        raise ConfigError("changes", "must be a non-empty object of config keys", list(CONFIG_KEYS))
    return make_config({**config.model_dump(), **changes})


def _bounds() -> dict:
    """[min, max] of every numeric config key, from the schema (exclusive bounds as given)."""
    out = {}
    for name, info in Config.model_fields.items():
        lo = hi = None
        for m in info.metadata:
            lo = getattr(m, "ge", getattr(m, "gt", lo))
            hi = getattr(m, "le", getattr(m, "lt", hi))
        if lo is not None or hi is not None:
            out[name] = [lo, hi]
    return out


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
        "families": {f.name: f.meta() for f in FAMILIES},
        "model_family": {name: family_of(name).name for name in MODELS},
        "optimizers": list(OPTIMIZER_NAMES),
        "clip_modes": list(CLIP_MODES),
        "live_keys": list(LIVE_KEYS),
        "reset_keys": list(RESET_KEYS),
        "compile_keys": list(COMPILE_KEYS),  # a change compiles new code (the page says "compiling")
        "defaults": Config().model_dump(),
        "limits": LIMITS,
        "bounds": _bounds(),
        "hist_edges": [float(e) for e in HIST_EDGES],
        "z_edges": [float(e) for e in Z_EDGES],
        "h_edges": [float(e) for e in H_EDGES],
        "val_every": VAL_EVERY,
        "backend": jax.default_backend(),
        "devices": [str(d) for d in jax.devices()],
    }
