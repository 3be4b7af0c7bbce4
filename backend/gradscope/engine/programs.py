"""What gets compiled, asked of the config's family: the typed key of each program (its
`compile` builds it, its `describe` names it for a person), the live knobs and structural
spec passed to it, and the data and initial state it trains from."""
from __future__ import annotations

from gradscope.config import Config
from gradscope.families import family_of
from gradscope.families.mlp import UNROLL

GRID = 48  # the decision boundary's grid is GRID x GRID points

__all__ = ["GRID", "UNROLL", "compile_key", "describe_key", "knobs_of", "max_chunk_steps", "shape_of", "spec_of"]


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
