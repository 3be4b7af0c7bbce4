"""gradscope: watch vanishing and exploding gradients layer by layer, and fix them live.

For your own JAX training loop: `gradscope.optax.monitor` wraps the optimizer, `gradscope.attach`
records the run (to a file, a server, or both), `gradscope.probe` marks an activation whose dL/dz
to record (see `gradscope.monitoring`); for a PyTorch loop, `gradscope.torch.watch` hooks the model
and its optimizer. They load JAX (and torch) on first use, not on `import gradscope`.
"""

__version__ = "0.1.0"

_LAZY = {"attach": "gradscope.attaching", "probe": "gradscope.monitoring", "Run": "gradscope.monitoring"}


def __getattr__(name):
    if name in ("optax", "torch"):  # gradscope.optax.monitor, gradscope.torch.watch without importing them first
        import importlib

        return importlib.import_module(f"gradscope.{name}")
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'gradscope' has no attribute {name!r}")
