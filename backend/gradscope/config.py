"""The validated run configuration: one flat object, the same keys everywhere.

The `Literal` choices are the registry names themselves, so the schema, the URL, the
WebSocket messages and the engine can never disagree about what a name means.
"""

from typing import Any, Literal, get_args, get_origin

import jax
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from gradscope import __version__
from gradscope.core.activations import ACTIVATIONS
from gradscope.core.datasets import DATASETS
from gradscope.core.initializers import INITIALIZERS
from gradscope.core.network import H_EDGES, Z_EDGES
from gradscope.core.recurrent import MODELS, RECURRENT_INITIALIZERS, RNN_ACTIVATIONS
from gradscope.core.sequences import TASKS, length_error
from gradscope.core.train import (
    CLIP_MODES,
    GLOBAL_STATS,
    HIDDEN_STATS,
    HIST_EDGES,
    HIST_STATS,
    LAYER_STATS,
    OPTIMIZER_NAMES,
    SPARSE_STATS,
    VAL_EVERY,
)
from gradscope.core.train_rnn import describe as describe_recurrent

ACTIVATION_NAMES = tuple(ACTIVATIONS)

LIMITS = {
    "depth": [1, 256],
    "width": [2, 1024],
    "batch_size": [1, 4096],
    "input_dim": [2, 64],
    "recurrent_depth": [1, 4],  # recurrent models: depth is the number of stacked recurrent layers
    "seq_len": [2, 1000],
    # Server protection beyond the per-key bounds: kernel entries and activations per step.
    "max_parameters": 2**24,
    "max_activations": 2**25,
}

LIVE_KEYS = ("activation", "leaky_alpha", "batchnorm", "residual", "clip_mode", "clip_value", "optimizer", "learning_rate", "l1", "l2",
             "dropout")
RESET_KEYS = ("model", "dataset", "input_dim", "noise", "depth", "width", "batch_size", "init", "init_gain", "seed", "seq_len", "forget_bias")
ALL_DATASETS = DATASETS + tuple(t for t in TASKS if t not in DATASETS)


class Config(BaseModel):
    """A run: data, architecture, initialization (reset keys) and the live knobs."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    model: Literal[("mlp",) + MODELS] = "mlp"
    dataset: Literal[ALL_DATASETS] = "spirals"
    input_dim: int = Field(2, ge=LIMITS["input_dim"][0], le=LIMITS["input_dim"][1])
    noise: float = Field(0.1, ge=0.0, le=2.0)
    depth: int = Field(10, ge=LIMITS["depth"][0], le=LIMITS["depth"][1])
    width: int = Field(64, ge=LIMITS["width"][0], le=LIMITS["width"][1])
    batch_size: int = Field(128, ge=LIMITS["batch_size"][0], le=LIMITS["batch_size"][1])
    init: Literal[RECURRENT_INITIALIZERS] = "glorot_normal"
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

    @model_validator(mode="after")
    def _bounded_size(self):
        params = self.depth * self.width * self.width
        if params > LIMITS["max_parameters"]:
            raise ValueError(f"depth x width^2 = {params} exceeds {LIMITS['max_parameters']} weights; lower depth or width")
        acts = self.depth * self.width * self.batch_size
        if acts > LIMITS["max_activations"]:
            raise ValueError(f"depth x width x batch_size = {acts} exceeds {LIMITS['max_activations']}; lower one of them")
        return self

    @model_validator(mode="before")
    @classmethod
    def _recurrent_depth_default(cls, data):
        """A recurrent model given no depth gets one layer, not the MLP's default of 10."""
        if isinstance(data, dict) and data.get("model", "mlp") in MODELS and "depth" not in data:
            return {**data, "depth": 1}
        return data

    @model_validator(mode="after")
    def _fits_model(self):
        check_model(self)
        return self


# -- recurrent models: which keys apply to which model (issue 12) ---------------------
MLP_ONLY_KEYS = ("batchnorm", "residual", "dropout")  # refused for the recurrent models (the page greys them out)


def check_model(c) -> None:
    """Raise ConfigError naming the field when a key does not fit `c.model`."""
    if c.model == "mlp":
        if c.dataset not in DATASETS:
            raise ConfigError("dataset", f"{c.dataset} is a sequence task: set model to one of {', '.join(MODELS)}", list(DATASETS))
        if c.init == "identity":
            raise ConfigError("init", "identity initializes W_hh of the recurrent models only", list(INITIALIZERS))
        return
    if c.dataset not in TASKS:
        raise ConfigError("dataset", f"model {c.model} reads sequences; {c.dataset} is not a sequence task", list(TASKS))
    for key in MLP_ONLY_KEYS:
        if getattr(c, key):
            raise ConfigError(key, f"does not apply to the recurrent model {c.model}", [0.0 if key == "dropout" else False])
    if c.model == "rnn" and c.activation not in RNN_ACTIVATIONS:
        raise ConfigError("activation", f"{c.activation} is not defined for the Elman RNN", list(RNN_ACTIVATIONS))
    lo, hi = LIMITS["recurrent_depth"]
    if not lo <= c.depth <= hi:
        raise ConfigError("depth", f"recurrent models stack {lo} to {hi} layers", list(range(lo, hi + 1)))
    bad = length_error(c.dataset, c.seq_len)
    if bad:
        raise ConfigError("seq_len", *bad)
    acts = c.depth * c.seq_len * c.width * c.batch_size
    if acts > LIMITS["max_activations"]:
        raise ConfigError("seq_len", f"depth x seq_len x width x batch_size = {acts} exceeds {LIMITS['max_activations']}; lower one of them")


CONFIG_KEYS = tuple(Config.model_fields)


class ConfigError(ValueError):
    """A bad config value: which field, why, and (for named choices) the valid ones."""

    def __init__(self, field: str, message: str, choices: list | None = None):
        self.field, self.message, self.choices = field, message, choices
        hint = f" (valid: {', '.join(map(str, choices))})" if choices else ""
        super().__init__(f"{field}: {message}{hint}")

    def as_dict(self):
        return {"field": self.field, "message": self.message, "choices": self.choices}


def choices_of(field: str) -> list | None:
    info = Config.model_fields.get(field)
    if info is None:
        return None
    if get_origin(info.annotation) is Literal:
        return list(get_args(info.annotation))
    if info.annotation is bool:
        return [True, False]
    return None


def describe_errors(exc: ValidationError) -> list[dict]:
    """pydantic errors as [{"field", "message", "choices"}], choices listed where they exist."""
    out = []
    for err in exc.errors():
        field = ".".join(str(p) for p in err["loc"]) or "config"
        if isinstance(err.get("ctx", {}).get("error"), ConfigError):  # raised by check_model: already names its field
            out.append(err["ctx"]["error"].as_dict())
        elif err["type"] == "extra_forbidden":
            out.append({"field": field, "message": "unknown key", "choices": list(CONFIG_KEYS)})
        else:
            out.append({"field": field, "message": err["msg"], "choices": choices_of(field)})
    return out


def _first_error(exc: ValidationError) -> ConfigError:
    err = describe_errors(exc)[0]
    if err["field"] == "config":  # a cross-field limit: name the largest culprit
        err["field"] = "depth"
    return ConfigError(err["field"], err["message"], err["choices"])


def make_config(values: dict[str, Any] | None = None) -> Config:
    """Validate a (partial) dict of config keys; raises ConfigError naming the first bad field."""
    if values is not None and not isinstance(values, dict):
        raise ConfigError("config", "must be an object of config keys", list(CONFIG_KEYS))
    try:
        return Config.model_validate(values or {})
    except ValidationError as exc:
        raise _first_error(exc) from None


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
        "initializers": list(RECURRENT_INITIALIZERS),  # identity: recurrent models only (see "recurrent")
        "datasets": list(ALL_DATASETS),  # which apply to which model: "datasets_by_model"
        "models": ["mlp", *MODELS],
        "datasets_by_model": {"mlp": list(DATASETS), **{m: list(TASKS) for m in MODELS}},
        "initializers_by_model": {"mlp": list(INITIALIZERS), **{m: list(RECURRENT_INITIALIZERS) for m in MODELS}},
        "mlp_only_keys": list(MLP_ONLY_KEYS),
        "recurrent": describe_recurrent(),
        "optimizers": list(OPTIMIZER_NAMES),
        "clip_modes": list(CLIP_MODES),
        "live_keys": list(LIVE_KEYS),
        "reset_keys": list(RESET_KEYS),
        "defaults": Config().model_dump(),
        "limits": LIMITS,
        "bounds": _bounds(),
        "hist_edges": [float(e) for e in HIST_EDGES],
        "z_edges": [float(e) for e in Z_EDGES],
        "h_edges": [float(e) for e in H_EDGES],
        "stats": {"global": list(GLOBAL_STATS), "layer": list(LAYER_STATS), "hidden": list(HIDDEN_STATS),
                  "hist": list(HIST_STATS), "sparse": list(SPARSE_STATS)},
        "val_every": VAL_EVERY,
        "backend": jax.default_backend(),
        "devices": [str(d) for d in jax.devices()],
    }
