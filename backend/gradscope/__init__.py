"""gradscope: watch vanishing and exploding gradients layer by layer, and fix them live."""

__version__ = "0.1.0"
