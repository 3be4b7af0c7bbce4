"""A lesson as data: setup, optional second run and mid-run change, question, verdict.

A lesson file (JSON or TOML, one lesson per file) validates into `Lesson`. Everything a
lesson may name is checked here, once: the setup and every change are real configs, every
statistic is one the engine records, every layer index exists at the setup's depth, every
step window lies inside the run and every message template names only known values.
docs/lessons.md is the format's reference for lecturers.
"""
from __future__ import annotations

import re
import string
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from gradscope.config import LIVE_KEYS, Config, ConfigError, make_config, parse_changes
from gradscope.families import FAMILIES, family_of

# What a measure may read: a statistic with one number a step, one along a single axis (layers,
# hidden layers, parameter groups, a GAN network's layers, the critic's input points), or one along
# two axes of which `row` picks the first (the critic's activation gradients: real or fake batch,
# then its hidden layers). Which of them a lesson's model emits: its family's stat_axes.
MAX_AXES = 2
STATS = tuple(dict.fromkeys(s.name for f in FAMILIES for s in f.stats if len(s.axes) <= MAX_AXES))
CHARTS = ("profile", "heatmap", "loss", "clip", "ratio", "acts", "hist", "boundary", "spp")
LAYER_REDUCERS = ("mean", "max", "min")
MAX_STEPS = 2000
_NAME = re.compile(r"^[a-z][a-z0-9_]{0,31}$")
_SLUG = re.compile(r"^[a-z0-9][a-z0-9-]{0,63}$")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Measure(_Strict):
    """One number from a run's history.

    Per step: `stat` at `layer` (an index, negative from the end, or a reduction over all
    layers), optionally divided by `per` at the same step and layer; then `reduce` over the
    steps in [steps[0], steps[1]). Non-finite values stay in and make the result non-finite.
    """

    stat: Literal[STATS]  # every family's; the setup's model must emit it (Lesson checks)
    run: Literal["a", "b"] = "a"
    row: int | None = None  # for a statistic along two axes: the index along the first
    layer: int | Literal[LAYER_REDUCERS] | None = None
    per: Literal[STATS] | None = None
    steps: tuple[int, int]
    reduce: Literal["mean", "max", "min", "first", "last"] = "mean"

    @model_validator(mode="after")
    def _shape(self):
        lo, hi = self.steps
        if not 0 <= lo < hi:
            raise ValueError(f"steps must be [start, end) with 0 <= start < end, got {list(self.steps)}")
        return self


class Check(_Strict):
    """`value` (or value / `over`) compared with a threshold; `says` is its sentence."""

    name: str
    value: Measure
    over: Measure | None = None
    op: Literal["<", ">", "between", "outside"]
    threshold: float | tuple[float, float]
    says: str = ""

    @field_validator("name")
    @classmethod
    def _name(cls, v):
        if not _NAME.match(v):
            raise ValueError("a check's name is a lowercase identifier (letters, digits, _), it is used in templates")
        return v

    @model_validator(mode="after")
    def _threshold(self):
        pair = isinstance(self.threshold, tuple)
        if pair != (self.op in ("between", "outside")):
            raise ValueError(f"op {self.op!r} takes {'[low, high]' if self.op in ('between', 'outside') else 'one number'}")
        if pair and not self.threshold[0] < self.threshold[1]:
            raise ValueError("threshold [low, high] needs low < high")
        return self


class Verdict(_Strict):
    """All checks must pass for the claim to hold; `holds`/`fails` are message templates."""

    checks: list[Check] = Field(min_length=1, max_length=8)
    holds: str
    fails: str


class Question(_Strict):
    prompt: str
    choices: list[str] = Field(min_length=2, max_length=6)
    answer: int = Field(ge=0)

    @model_validator(mode="after")
    def _answer(self):
        if self.answer >= len(self.choices):
            raise ValueError(f"answer {self.answer} is not an index of choices (0..{len(self.choices) - 1})")
        return self


class Change(_Strict):
    """Config changes applied to every run of the lesson when it reaches step `at`."""

    at: int = Field(ge=1)
    set: dict


class Lesson(_Strict):
    id: str
    title: str
    claim: str                  # what the literature (or an article the lesson checks) says
    source: str = ""            # where it says it
    explain: str = ""           # shown with the verdict: why it happens
    setup: dict                 # config keys for run A (validated)
    vs: dict | None = None      # changes for run B, started from A's very same state
    change: Change | None = None
    steps: int = Field(ge=1, le=MAX_STEPS)
    look: Literal[CHARTS]
    question: Question
    verdict: Verdict

    @field_validator("id")
    @classmethod
    def _slug(cls, v):
        if not _SLUG.match(v):
            raise ValueError("id is a slug: lowercase letters, digits and '-'")
        return v

    @model_validator(mode="after")
    def _consistent(self):
        config = _config(self.setup, "setup")
        for where, changes in (("vs", self.vs), ("change.set", self.change and self.change.set)):
            if changes is not None:
                _config(changes, where, base=config)
        if self.change is not None:
            if self.change.at >= self.steps:
                raise ValueError(f"change.at={self.change.at} must be before steps={self.steps}")
            if not set(self.change.set) <= set(LIVE_KEYS):  # a reset key would wipe the run's history
                raise ValueError(f"change.set may name live keys only: {', '.join(LIVE_KEYS)}")
        names = [c.name for c in self.verdict.checks]
        if len(set(names)) != len(names):
            raise ValueError("check names must be unique")
        for c in self.verdict.checks:
            for m in (c.value, c.over):
                if m is not None:
                    _check_measure(m, config, self.steps, self.vs is not None)
        for text in [self.verdict.holds, self.verdict.fails] + [c.says for c in self.verdict.checks]:
            _check_template(text, names)
        return self

    def config(self, run: str = "a") -> Config:
        """The config a run starts with (B: the setup with `vs` applied)."""
        base = make_config(self.setup)
        return parse_changes(base, self.vs) if run == "b" and self.vs else base


def _config(values, where, base: Config | None = None) -> Config:
    try:
        return make_config(values) if base is None else parse_changes(base, values)
    except ConfigError as exc:
        raise ValueError(f"{where}: {exc}") from None


def _check_measure(m: Measure, config: Config, steps: int, has_b: bool) -> None:
    """The measure reads a statistic the setup's model emits, along an axis that exists, inside the run.
    (Run B shares the setup's model: `vs` may change its keys but the checks read both runs alike.)"""
    if m.run == "b" and not has_b:
        raise ValueError("a measure of run 'b' needs a `vs` (the second run's changes)")
    if m.steps[1] > steps:
        raise ValueError(f"window {list(m.steps)} ends after the lesson's {steps} steps")
    family = family_of(config.model)
    axes = {k: a for k, a in family.stat_axes(config.model).items() if len(a) <= MAX_AXES}
    for stat in (m.stat, m.per):
        if stat is not None and stat not in axes:
            raise ValueError(f"the {config.model} model records no statistic {stat!r} a measure can read; "
                             f"it records: {', '.join(axes)}")
    axis, sizes = axes[m.stat], family.axis_sizes(config)
    if (m.row is not None) != (len(axis) == 2):
        raise ValueError(f"{m.stat} is per {' and '.join(axis)}: give a row (the {axis[0]}) and a layer" if len(axis) == 2
                         else f"row is for a statistic along two axes; {m.stat} is {'global' if not axis else f'per {axis[0]}'}")
    if m.row is not None and not -sizes[axis[0]] <= m.row < sizes[axis[0]]:
        raise ValueError(f"row {m.row} does not exist for {m.stat} (0..{sizes[axis[0]] - 1})")
    along = axis[-1:]  # what `layer` indexes (after `row`)
    if bool(along) != (m.layer is not None):
        raise ValueError(f"{m.stat} is {f'per {along[0]}: give a layer' if along else 'global: give no layer'}")
    if m.per is not None and axes[m.per] != axis:
        raise ValueError(f"per={m.per} must be {'global' if not axis else 'per ' + ' and '.join(axis)} like {m.stat}")
    if isinstance(m.layer, int):
        n = sizes[along[0]]
        if not -n <= m.layer < n:
            raise ValueError(f"layer {m.layer} does not exist for {m.stat}: its {along[0]} axis has {n} entries "
                             f"(0..{n - 1} or -{n}..-1)")


def _check_template(text: str, names: list[str]) -> None:
    for _, field, _, _ in string.Formatter().parse(text):
        if field is not None and field not in names:
            raise ValueError(f"template field {{{field}}} is not a check name (known: {', '.join(names)})")
