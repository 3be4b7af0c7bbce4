"""What gets compiled, asked of the config's family: the typed key of each program (its
`compile` builds it, its `describe` names it for a person), the live knobs and structural
spec passed to it, and the data and initial state it trains from."""
from __future__ import annotations

from typing import Any, NamedTuple

import jax

from gradscope.config import Config
from gradscope.core.xla import QUICK_BUILD
from gradscope.families import family_of
from gradscope.families.mlp import UNROLL

GRID = 48  # the decision boundary's grid is GRID x GRID points

__all__ = ["GRID", "UNROLL", "FirstBuild", "compile_key", "describe_key", "knobs_of", "max_chunk_steps", "shape_of", "spec_of"]


class FirstBuild(NamedTuple):
    """A run's chunk program (`key`, a family's chunk key) built with QUICK_BUILD: ~3x faster
    to build, 3-5x slower per step. It serves a new run's first frames while `key`'s optimized
    build compiles behind it (Trainer), where that build is not already on disk."""

    key: Any

    def compile(self, args):
        return jax.jit(self.key.function()).lower(*args).compile(compiler_options=QUICK_BUILD)

    def describe(self) -> str:
        return self.key.describe()


def compile_key(key, args):
    """The executable of a program key for `args` (concrete arrays or their shapes)."""
    return key.compile(args)


def describe_key(key) -> str:
    """A compile as a person reads it: "relu, adam, depth 10 x width 32" or "the decision boundary (relu)"."""
    return key.describe()


def knobs_of(config: Config):
    """The traced live knobs, with fixed dtypes so that a new value never retraces."""
    return family_of(config.model).knobs_of(config)


def spec_of(config: Config):
    """The structural knob values of `config`, for the executable built for them (None: the family builds one kind)."""
    return family_of(config.model).spec_of(config)


def shape_of(config: Config):
    return family_of(config.model).shape_of(config)


def max_chunk_steps(config: Config) -> int:
    """K, the scan length compiled for `config`'s shape, by its family's cost model."""
    family = family_of(config.model)
    return family.max_chunk_steps(family.shape_of(config))
