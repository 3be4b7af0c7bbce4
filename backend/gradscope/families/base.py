"""The interface every model family implements, and the records it publishes.

A family is one module (`mlp`, `recurrent`, later `cnn` and `gan`) holding one `ModelFamily`
object. The config, the engine, the CLI, the server and (through `/api/meta`) the page ask
that object what to do; none of them tests a model's name. What a family owns:

- its models and config: which datasets, initializers and activations each model takes, the
  keys it takes beyond the common ones (`config_fields`: the config's discriminated union on
  `model` holds one class per family), its depth range and its cross-field checks (`rules`);
- its data, initial state and compiled programs, each program named by a typed key (a
  NamedTuple whose `compile` builds it and `describe` names it for a person);
- the statistics it emits, with their axes (`stats`), and what the page shows for it (`views`).

Families import `core` and `errors` only: never the config module, the engine or the server
(an import contract in pyproject.toml keeps it so). `config` arguments are `gradscope.config.Config`.
"""
from __future__ import annotations

import functools
from collections.abc import Iterator
from typing import Any, NamedTuple

import jax
import numpy as np

from gradscope.core.train import PER_STEP_STATS, SPARSE_STATS

TARGET_CHUNK_SECONDS = 0.03  # a compiled call trains about this long (the page draws ~30 frames a second)
MAX_CHUNK_STEPS = 256


# XLA:CPU's LLVM back end at -O1 rather than its default: measured on the MLP (five knob sets),
# the CNN and the LSTM, a chunk builds in 0.67-0.83x the time, trains at 0.97-1.20x the speed
# (interleaved calls) and leaves the weights and optimizer state the same bit for bit after 20
# calls (a held-out loss or a distance moved by one unit in the last place). A new run's first
# frame waits for its build. The GAN keeps the default: its power iteration came out in other bits.
CPU_OPTIONS = {"xla_backend_optimization_level": 1}


def compile_program(function, args, cpu_options=CPU_OPTIONS):
    """`function` jit-compiled for example `args` (arrays or their shapes), with `cpu_options`
    where it builds for the CPU (part of the persistent cache's key, so builds never mix)."""
    options = cpu_options if jax.default_backend() == "cpu" else None
    return jax.jit(function).lower(*args).compile(compiler_options=options or None)


def jit_program(function, **jit_kw):
    """`jax.jit(function, **jit_kw)`, built with CPU_OPTIONS where it runs on the CPU (decided at
    its first call, so that importing a family starts no JAX backend). Only ever called at the
    top level: JAX refuses compiler options on a jit traced inside another (`jax.eval_shape` of
    it included; trace `__wrapped__`, the plain function, there)."""
    jitted = None

    @functools.wraps(function)
    def call(*args, **kw):
        nonlocal jitted
        if jitted is None:
            options = CPU_OPTIONS if jax.default_backend() == "cpu" else None
            jitted = jax.jit(function, compiler_options=options, **jit_kw)
        return jitted(*args, **kw)

    return call


class Stat(NamedTuple):
    """One statistic a family emits per measured step: its name and the axes after the row axis
    ("layer": the weight layers, "hidden": the hidden layers, "group": parameter groups,
    "time": time steps, "bin": histogram bins, "gate": gates, "channel": a layer's output channels,
    "row" and "column": an image's pixels). () for one number a step."""

    name: str
    axes: tuple[str, ...] = ()
    about: str = ""


class Model(NamedTuple):
    """One model a family trains, as the config validates it and the page offers it."""

    name: str  # the config's `model` value
    label: str  # as a person reads it: "MLP", "LSTM"
    datasets: tuple[str, ...]
    initializers: tuple[str, ...]
    activations: tuple[str, ...]  # () : the model takes no activation (any value is accepted and ignored)


def chunk_steps_for(seconds_per_step: float) -> int:
    """K, the scan length compiled for a step that costs `seconds_per_step` by a family's cost model:
    a power of two, about twice the steps a TARGET_CHUNK_SECONDS call fits."""
    k = 2 ** int(np.ceil(np.log2(max(2 * TARGET_CHUNK_SECONDS / seconds_per_step, 1))))
    return int(min(k, MAX_CHUNK_STEPS))


class ModelFamily:
    """The interface. A family overrides every method that raises NotImplementedError; the
    others have the default that most families want."""

    name: str = ""  # the family's name, for people and for /api/meta
    models: tuple[Model, ...] = ()
    # The config keys the family takes beyond the common ones (config.CommonConfig): {name: (type,
    # default or pydantic Field)}. The config builds the family's class from them; a key the family
    # does not list is refused for its models, by name.
    config_fields: dict[str, tuple[Any, Any]] = {}
    # Common keys (config.COMMON_FIELDS) the family's models do not take: the GAN has a depth, an
    # activation and a learning rate per network instead of one
    common_keys_not_taken: tuple[str, ...] = ()
    live_keys: tuple[str, ...] = ()  # those of its own keys that change mid-run (traced); the others reset the run
    code_keys: tuple[str, ...] = ()  # those of its live keys that pick compiled code: a change compiles (shown), weights kept
    rule_keys: tuple[str, ...] = ()  # the config keys `rules` reads (a bad one of them skips it)
    count_keys: tuple[str, ...] = ("depth", "width", "batch_size")  # the keys `activation_count` reads
    depth_range: tuple[int, int] = (1, 256)
    default_depth: int = 10
    stats: tuple[Stat, ...] = ()
    # {key: (other key, its values)}: `key` applies only where the other key has one of those values
    # (greyed on the page otherwise; given a value of its own there, refused by name)
    applies: dict[str, tuple[str, tuple]] = {}
    # {key: (other key, values)}: `key` is cleared (back to its default) when a change moves the other
    # key off `values` without naming `key` (the GAN's drawn points when the dataset changes)
    cleared_with: dict[str, tuple[str, tuple]] = {}
    loss_stat: str = "loss"  # the statistic a progress line shows
    # What a new run's first look shows (engine.programs.PreviewKey): one step's statistics at the
    # initial weights, computed by a small build while the run's own chunk compiles. () : none
    # (the per-layer norms the layer profile, the diagnosis and the chain-rule factors read; no histograms)
    preview_stats: tuple[str, ...] = ("loss", "accuracy", "grad_norm", "delta_norm", "weight_norm", "h_grad_norm", "u_grad_norm")
    per_step_stats: tuple[str, ...] = PER_STEP_STATS  # the chunk's statistics for every step (the others: at measured steps)
    sparse_stats: tuple[str, ...] = SPARSE_STATS  # NaN where not measured: averaged over their finite values
    # False: the family's runs train elsewhere (an attached script posts their rows; server/feed.py):
    # the engine and the CLI refuse the model by name, and no other model switches to or from it
    trains_here: bool = True
    views: dict = {}  # what the page shows for the family (published in /api/meta; see docs/adding-a-model.md)

    # -- config --------------------------------------------------------------------------
    def rules(self, config) -> Iterator:
        """The family's own cross-field errors (ConfigError) of a config of one of its models."""
        return iter(())

    def activation_count(self, config) -> tuple[int, str, str]:
        """Activations a step holds, the key to blame when too many and the product as words."""
        raise NotImplementedError

    # -- data and state -----------------------------------------------------------------
    def shape_of(self, config):
        """The hashable record of everything that fixes array shapes (a compiled program's key includes it)."""
        raise NotImplementedError

    def data(self, config, shape) -> tuple:
        """(x, y, x_val, y_val) as jax arrays: what a compiled chunk trains and evaluates on."""
        raise NotImplementedError

    def initial_state(self, config, shape, abstract: bool = False):
        """The initial TrainState of `config` (`abstract`: its shapes and dtypes only)."""
        raise NotImplementedError

    def knobs_of(self, config):
        """The traced live knobs, with fixed dtypes so that a new value never retraces."""
        raise NotImplementedError

    def spec_of(self, config):
        """The structural knob values an executable can be specialised to; None: this family builds one kind."""
        return None

    def reset_optimizer(self, state, optimizer: str):
        raise NotImplementedError

    # -- compiled programs --------------------------------------------------------------
    def chunk_key(self, config, shape, n_train: int, n_val: int, steps: int, spec=None, keep=None):
        """The typed key of the training chunk for these values (`spec` None: the generic build;
        `keep` None: every statistic, else only those named: XLA drops the others' work)."""
        raise NotImplementedError

    def chunk_args(self, state, config, x, y, x_val, y_val, n: int, every: int) -> tuple:
        raise NotImplementedError

    def max_chunk_steps(self, shape) -> int:
        raise NotImplementedError

    def warm_changes(self, config, order: tuple[str, ...]) -> tuple[dict, ...]:
        """The live knob changes whose builds are worth compiling in the background, most wanted
        first (the next step of a lesson or demo): by default the other activations of `order`
        that the model takes."""
        now = getattr(config, "activation", None)
        return tuple({"activation": a} for a in order if a in self.model(config.model).activations and a != now)

    def predict_key(self, config, shape, rows: int):
        """The key of the evaluation-mode forward pass over `rows` inputs; None: the family has none."""
        return None

    def predict_args(self, state, config, shape, rows: int) -> tuple:
        raise NotImplementedError

    def evaluate(self, trainer, held_out: bool) -> dict | None:
        """Loss and accuracy of the trainer's weights; None: the trainer's predict serves (see Evaluation)."""
        return None

    def plane(self, trainer) -> dict | None:
        """The data plane a session streams as `plane` messages (the GAN's points under D's output); None: none."""
        return None

    def axis_sizes(self, config) -> dict[str, int]:
        """The length of each statistic axis a lesson may index (`Stat.axes`), for `config`.
        Default: a weight layer per hidden layer plus the readout."""
        return {"layer": config.depth + 1, "hidden": config.depth}

    def columns(self, config) -> dict | None:
        """What a reader of a run's records needs to name their columns beyond the statistics' names."""
        return None

    # -- published --------------------------------------------------------------------------
    def model(self, name: str) -> Model:
        return next(m for m in self.models if m.name == name)

    def stat_axes(self, model: str) -> dict[str, tuple[str, ...]]:
        """{name: axes} of the statistics `model` emits."""
        axes = {s.name: s.axes for s in self.stats}
        return {name: axes[name] for name in self.model_stats(model)}

    def model_stats(self, model: str) -> tuple[str, ...]:
        """The names of the statistics `model` emits (default: all of the family's)."""
        return tuple(s.name for s in self.stats)

    def meta(self) -> dict:
        """The family for clients (`/api/meta`'s `families`)."""
        return {"models": [m.name for m in self.models], "stats": {s.name: list(s.axes) for s in self.stats},
                "model_stats": {m.name: list(self.model_stats(m.name)) for m in self.models},
                "depth_range": list(self.depth_range),
                "default_depth": self.default_depth, "views": self.views,
                "applies": {k: {"key": other, "values": list(values)} for k, (other, values) in self.applies.items()}}
