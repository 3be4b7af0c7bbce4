"""XLA compile options the product chooses per program."""
from __future__ import annotations

# For a program whose build time matters more than its speed: one that runs once (a run's
# initial state), or a run's first build, which serves its first frames while the optimized
# build compiles behind it (engine.programs.FirstBuild). LLVM's optimizations and XLA:CPU's
# fusion emitters off. Measured on this project's 2-core CPU machine at depth 10 (200): the
# initial state builds in 0.17 s instead of 0.82 s; the training chunk in 0.9-1.2 s (0.7 s)
# instead of 3.0-3.6 s (2.4 s), and then trains 3-5x slower per step. Debug options are one
# proto for every backend: a GPU reads the first and ignores the second.
QUICK_BUILD = {"xla_backend_optimization_level": 0, "xla_cpu_use_fusion_emitters": False}
