"""gradscope: watch vanishing and exploding gradients layer by layer, and fix them live.

For your own JAX training loop: `gradscope.optax.monitor` wraps the optimizer, `gradscope.attach`
records the run, `gradscope.probe` marks an activation whose dL/dz to record (see
`gradscope.monitoring`). They load JAX on first use, not on `import gradscope`.
"""

__version__ = "0.1.0"

_LAZY = {"attach": "gradscope.attaching", "probe": "gradscope.monitoring", "Run": "gradscope.monitoring"}


def __getattr__(name):
    if name == "optax":  # gradscope.optax.monitor without importing the submodule first
        import importlib

        return importlib.import_module("gradscope.optax")
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'gradscope' has no attribute {name!r}")
