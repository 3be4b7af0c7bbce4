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
from gradscope.core.train import (CLIP_MODES, GLOBAL_STATS, HIDDEN_STATS, HIST_EDGES, HIST_STATS, LAYER_STATS, OPTIMIZER_NAMES,
                                  SPARSE_STATS, VAL_EVERY)

ACTIVATION_NAMES = tuple(ACTIVATIONS)

LIMITS = {
    "depth": [1, 256],
    "width": [2, 1024],
    "batch_size": [1, 4096],
    "input_dim": [2, 64],
    # Server protection beyond the per-key bounds: kernel entries and activations per step.
    "max_parameters": 2**24,
    "max_activations": 2**25,
}

LIVE_KEYS = ("activation", "leaky_alpha", "batchnorm", "residual", "clip_mode", "clip_value", "optimizer", "learning_rate", "l1", "l2",
             "dropout")
RESET_KEYS = ("dataset", "input_dim", "noise", "depth", "width", "batch_size", "init", "init_gain", "seed")


class Config(BaseModel):
    """A run: data, architecture, initialization (reset keys) and the live knobs."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    dataset: Literal[DATASETS] = "spirals"
    input_dim: int = Field(2, ge=LIMITS["input_dim"][0], le=LIMITS["input_dim"][1])
    noise: float = Field(0.1, ge=0.0, le=2.0)
    depth: int = Field(10, ge=LIMITS["depth"][0], le=LIMITS["depth"][1])
    width: int = Field(64, ge=LIMITS["width"][0], le=LIMITS["width"][1])
    batch_size: int = Field(128, ge=LIMITS["batch_size"][0], le=LIMITS["batch_size"][1])
    init: Literal[INITIALIZERS] = "glorot_normal"
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

    @model_validator(mode="after")
    def _bounded_size(self):
        params = self.depth * self.width * self.width
        if params > LIMITS["max_parameters"]:
            raise ValueError(f"depth x width^2 = {params} exceeds {LIMITS['max_parameters']} weights; lower depth or width")
        acts = self.depth * self.width * self.batch_size
        if acts > LIMITS["max_activations"]:
            raise ValueError(f"depth x width x batch_size = {acts} exceeds {LIMITS['max_activations']}; lower one of them")
        return self


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
        if err["type"] == "extra_forbidden":
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
        "initializers": list(INITIALIZERS),
        "datasets": list(DATASETS),
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
