"""The pure, jittable core: networks, datasets, optimizers and per-layer statistics.

Imports jax, optax and numpy only; nothing here holds mutable state.
"""
