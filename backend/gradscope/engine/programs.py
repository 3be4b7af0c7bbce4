"""What gets compiled, asked of the config's family: the typed key of each program (its
`compile` builds it, its `describe` names it for a person), the live knobs and structural
spec passed to it, and the data and initial state it trains from."""
from __future__ import annotations

from typing import Any, NamedTuple

from gradscope.config import Config
from gradscope.families import family_of
from gradscope.families.base import compile_program
from gradscope.families.mlp import UNROLL

GRID = 48  # the decision boundary's grid is GRID x GRID points

__all__ = ["GRID", "PREVIEW_OPTIONS", "UNROLL", "PreviewKey", "compile_key", "describe_key", "knobs_of", "max_chunk_steps",
           "shape_of", "spec_of"]

# XLA:CPU's LLVM back end at -O0 for the preview: measured at depth 10 (width 64, sigmoid), the
# one-step chunk with the preview's statistics compiles in 0.87 s at -O0, 1.03 s at -O1, where
# the training chunk with every statistic takes 2.1 s at -O1. It runs once, so its speed is moot.
PREVIEW_OPTIONS = {"xla_backend_optimization_level": 0}


class PreviewKey(NamedTuple):
    """A new run's first look: one measured step of the family's chunk (`chunk`, a chunk key of
    one step that computes only the family's `preview_stats`), built at XLA's lowest
    optimization level. It runs once from the initial weights while the run's own chunk
    compiles; its row (step 0, before any update) is shown, never kept, and its new state
    thrown away: the run trains on its own build, bit for bit as without a preview."""

    kind: str  # "preview"
    chunk: Any

    def compile(self, args):
        return compile_program(self.chunk.function(), args, cpu_options=PREVIEW_OPTIONS)

    def describe(self) -> str:
        return f"a first look at step 0 ({self.chunk.describe()})"


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
