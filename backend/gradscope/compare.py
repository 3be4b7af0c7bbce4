"""Two runs from one state: start run B from run A's exact state with changes, run them in lockstep.

Used by `gradscope run --vs`, by the lessons' headless runner and (through the session's
fork state) by the server's compare endpoints. "The very same state" is the weights, the
optimizer state, the BatchNorm running statistics, the RNG key (so the data order) and the
step. A live change (activation, clipping, learning rate, ...) keeps all of it. A change of a
reset key (init, depth, width, ...) cannot keep the weights: B then re-initializes from the
same seed, at step 0, so that both runs still share the data order and the seed.
"""
from __future__ import annotations

from collections.abc import Iterator

from gradscope.config import CONFIG_KEYS, Config, ConfigError, differing, parse_changes
from gradscope.engine import CompileCache, Trainer


def parse_pairs(pairs: list[str], option: str = "--vs") -> dict:
    """["key=value", ...] -> {key: "value"}; raises ConfigError naming the bad pair."""
    out = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise ConfigError(option, f"expected key=value, got {pair!r}", list(CONFIG_KEYS))
        out[key.strip()] = value.strip()
    return out


def changed_keys(config: Config, changes: dict) -> dict:
    """{key: [old, new]} for the keys `changes` really changes (validated; raises ConfigError)."""
    new = parse_changes(config, changes)
    return differing(config, new)


def branch(a: Trainer, changes: dict | None, cache: CompileCache | None = None,
           chunk_steps: int | None = None) -> tuple[Trainer, dict]:
    """Run B: a new Trainer holding A's very state, then `changes` applied.

    Returns (trainer, {"kind": "live"|"reset"|"same", "changes": {key: [old, new]}}). Jax
    arrays are immutable, so sharing A's state copies nothing and A is never affected.
    """
    b = Trainer(a.config, chunk_steps=chunk_steps or a.chunk_steps, cache=cache, stats=a.stats)
    b.restore(a.snapshot())
    if not changes:
        return b, {"kind": "same", "changes": {}}
    return b, b.update(changes)


def run_lockstep(trainers: dict[str, Trainer], steps: int, change: tuple[int, dict] | None = None
                 ) -> Iterator[tuple[str, dict]]:
    """Train every run to `steps`, chunk by chunk in turn, none more than one chunk ahead.

    Yields (run name, stats of one chunk) in order. `change`: (step, changes) applied to
    every run when it reaches that step (chunks are cut there, so it lands exactly).
    """
    applied = set()
    while any(t.step < steps for t in trainers.values()):
        floor = min(t.step for t in trainers.values())
        for name, t in trainers.items():
            if t.step >= steps or t.step > floor:
                continue
            if change is not None and name not in applied and t.step >= change[0]:
                t.update(change[1])
                applied.add(name)
            stop = change[0] if change is not None and name not in applied else steps
            n = min(stop - t.step, steps - t.step, t.max_steps)
            yield name, t.run(n)
