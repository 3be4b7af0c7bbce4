"""Config -> compiled programs, and the Trainer that owns one run's state. What to compile,
train on and measure is asked of the config's model family (gradscope.families).

- `programs`: the family's program keys, compiled and described; its knobs and shape;
- `cache`: the bounded compile cache (LRU by entries and bytes) and the disk cache's set-up;
- `rows`: a compiled chunk's output as rows, one per measured step;
- `trainer`: the Trainer (train, change, checkpoint) and `prewarm`;
- `evaluation`: predictions, loss and accuracy, the decision boundary.

Executables are cached by key in a `CompileCache` shared between trainers, which warms the
likely next activations in the background.
"""
from .cache import CACHE_BYTES, CACHE_ENTRIES, CompileCache, enable_persistent_cache
from .programs import GRID, UNROLL, describe_key, knobs_of, max_chunk_steps, shape_of, spec_of
from .trainer import WARM_ACTIVATIONS, WARM_ORDER, Trainer, prewarm

__all__ = ["CACHE_BYTES", "CACHE_ENTRIES", "GRID", "UNROLL", "WARM_ACTIVATIONS", "WARM_ORDER", "CompileCache",
           "Trainer", "describe_key", "enable_persistent_cache", "knobs_of", "max_chunk_steps", "prewarm",
           "shape_of", "spec_of"]
