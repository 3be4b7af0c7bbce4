"""The Trainer, the only stateful object of the engine: one run's data, weights, optimizer
state and config, trained in compiled chunks. Not thread-safe (one worker owns it)."""
from __future__ import annotations

import io
import json
import logging
import time

import jax
import jax.numpy as jnp
import numpy as np

from gradscope.config import (
    LIVE_KEYS,
    MODEL_NAMES,
    MODELS,
    RESET_KEYS,
    Config,
    ConfigError,
    differing,
    is_config,
    load_config,
    make_config,
    parse_changes,
)
from gradscope.families import family_of
from gradscope.families.base import TARGET_CHUNK_SECONDS

from .cache import CompileCache
from .evaluation import Evaluation
from .programs import GRID, PreviewKey, describe_key
from .rows import rows_of

log = logging.getLogger(__name__)

# The order in which other activations compile in the background: the usual fixes first
# (relu: the README demo's next step), and how many of them per new shape. Each executable
# held costs memory (CompileCache's bounds); every other switch compiles on demand, shown.
WARM_ORDER = ("relu", "leaky_relu", "tanh", "elu", "selu", "gelu", "swish", "prelu", "rrelu", "sigmoid", "linear")
WARM_ACTIVATIONS = 2
# to_bytes' layout: 2 stores each array under its path in the state (1: in flattening order)
SNAPSHOT_FORMAT = 2
OPTIMIZER_FIELD = "opt_state"  # the state's field that holds the optimizer's state, in every family


class SnapshotError(ValueError):
    """A saved state that does not fit the trainer's (a weight missing or of another shape)."""


def _text(s: str) -> np.ndarray:
    return np.frombuffer(s.encode(), np.uint8)


def _in_optimizer(path) -> bool:
    return bool(path) and getattr(path[0], "name", None) == OPTIMIZER_FIELD


def _by_position(pathed, saved: list) -> list:
    """The first format's arrays against the state's paths: all of them where the counts agree;
    else the leaves before and after the optimizer state, from either end (its own restarts)."""
    if len(saved) == len(pathed):
        return list(saved)
    opt = [i for i, (p, _) in enumerate(pathed) if _in_optimizer(p)]
    if not opt:
        return [None] * len(pathed)
    head, tail = opt[0], len(pathed) - opt[-1] - 1
    if head + tail > len(saved):
        return [None] * len(pathed)
    return saved[:head] + [None] * (len(pathed) - head - tail) + (saved[len(saved) - tail:] if tail else [])


def _activation(config) -> str | None:
    """The config's activation; None for a model without one (the GAN has one per network)."""
    return getattr(config, "activation", None)


def _with(config, **values):
    """`config` with those of `values` it takes replaced (a key its model does not take is left out)."""
    return config.model_copy(update={k: v for k, v in values.items() if k in type(config).model_fields})


def prewarm(cache: CompileCache, config: Config | dict | None = None) -> None:
    """Queue the compiles a first session of `config` (default: the default config) needs,
    its chunk first, then its evaluation program, on the cache's background thread.
    A server calls this at start-up, so its first session finds them built (or building)."""
    config = config if is_config(config) else make_config(config)
    family = family_of(config.model)
    shape = family.shape_of(config)
    x, y, x_val, y_val = family.data(config, shape)
    state = family.initial_state(config, shape)
    key = lambda spec: family.chunk_key(config, shape, int(x.shape[0]), int(x_val.shape[0]), family.max_chunk_steps(shape), spec)
    args = family.chunk_args(state, config, x, y, x_val, y_val, 0, 1)
    # the build for the config's values first (the first session trains on it), then the
    # generic one that serves any knob change while that change's own build compiles
    spec = family.spec_of(config)
    cache.warm([key(spec)] + ([key(None)] if spec is not None else []), args)
    predict = family.predict_key(config, shape, GRID * GRID)
    if predict is not None:
        cache.warm([predict], family.predict_args(state, config, shape, GRID * GRID))

# The statistics every selection keeps (`stats`): what turning a chunk's output into rows needs
# (the measured steps, where a run broke) and the loss (the CLI's progress line).
KEPT_ALWAYS = ("step", "nonfinite")  # and the family's loss_stat

class Trainer(Evaluation):
    """One run: data, parameters, optimizer state and the config; trains in compiled chunks."""

    def __init__(self, config: Config | dict | None = None, *, chunk_steps: int | None = None, cache: CompileCache | None = None,
                 warm=False, stats_every: int | None = 1, specialize: bool | None = None, on_compile=None,
                 stats: tuple[str, ...] | None = None, on_preview=None):
        """`warm`: compile the next activations (WARM_ORDER) in the background too.

        `stats_every`: measure every k-th step (and the last of each call); None: once per
        chunk of `chunk_steps` steps, about 30 times a second (a server's choice: the page
        draws no more). Rows then cover several steps: see `run`.
        `specialize`: train on an executable built for the structural knobs' current values
        (BatchNorm, residual, dropout on, clip mode, L1/L2 on) while one is built, on the
        generic build otherwise. Default: where the cache compiles in the background (a
        change then never waits: the generic build serves until the new one is ready).
        `on_compile(what, state, seconds)`: told when this trainer starts ("start") and stops
        ("end", with seconds) waiting for a compile; `what` names it for a person.
        `stats`: the statistics to compute (names the model emits; the rows always carry
        step, count, loss and nonfinite); None: every one. Raises ConfigError naming a
        statistic the model does not emit, with those it does.
        `on_preview(rows)`: where the cache compiles in the background and the run's chunk is
        not built yet, the first build also compiles a small program (programs.PreviewKey) and
        calls this with its row, step 0's statistics at the initial weights (the family's
        `preview_stats`), while the chunk still compiles: a first look, seconds before the
        first trained row. Its step is not taken: the run is the same without it. Once, for
        the run this trainer is built for (not after a reset or a restore)."""
        self.on_compile = on_compile
        self._on_preview = on_preview
        self.stats = None if stats is None else tuple(dict.fromkeys(stats))
        self._fixed_k = chunk_steps
        self._cache = cache or CompileCache(background=warm)
        self._warm = warm
        self.stats_every = stats_every
        self.specialize = self._cache.background if specialize is None else specialize
        self._built_spec = None  # the spec the first executable was built for (compiled in the caller)
        self.finished_at: float | None = None  # wall-clock time (time.time()) the last `run` ended: its rows' age
        self._build(config if is_config(config) else make_config(config))

    # -- construction -------------------------------------------------------
    def _build(self, config: Config):
        with self._cache.foreground():
            self._build_run(config)
        self._warm_others()

    def _build_run(self, config: Config):
        if not family_of(config.model).trains_here:
            raise ConfigError("model", f"an {MODEL_NAMES[config.model]} is trained by its own script, not here: "
                              "wrap its optimizer in gradscope.optax.monitor and call gradscope.attach (docs/attach.md)",
                              [m for m in MODELS if family_of(m).trains_here])
        self.config, self.family = config, family_of(config.model)
        if self.stats is not None:
            emitted = self.family.model_stats(config.model)
            unknown = [s for s in self.stats if s not in emitted]
            if unknown or not self.stats:
                label = self.family.model(config.model).label
                what = f"the {label} emits no statistic {unknown[0]!r}" if unknown else "names no statistic"
                raise ConfigError("stats", what, list(emitted))
        self.shape = self.family.shape_of(config)
        self.x, self.y, self.x_val, self.y_val = self.family.data(config, self.shape)
        # a fixed K is capped by the family's: the CNN's chunk is one straight-line step (a loop of them runs 30-50x slower)
        family_k = self.family.max_chunk_steps(self.shape)
        self.max_steps = min(self._fixed_k, family_k) if self._fixed_k else family_k
        spec = self.family.spec_of(config) if self.specialize else None
        first = self._key(_activation(config), config.optimizer, spec)  # the build `_executable` asks for first
        preview = self._preview_key(first)
        if spec is not None or preview is not None:
            # the first executable (or the preview, which is what the user sees first) compiles from
            # the state's shapes on a thread of its own while the initial weights compile and run here
            # (two cores, not one after the other); the run's chunk follows the initial weights
            self.state = self.family.initial_state(config, self.shape, abstract=True)
            self._cache.start(preview or first, self._args(1 if preview else 0))
        self.state = self.family.initial_state(config, self.shape)
        if preview is not None:
            self._cache.start(first, self._args(0))
            self._show_preview(preview)
        self._built_spec = None
        self.chunk_steps = self.max_steps if self._fixed_k else self._calibrate()

    def _preview_key(self, first):
        """The first look's program (programs.PreviewKey) for a run whose chunk `first` is not
        built, where this trainer was asked for one; None otherwise."""
        names = [s for s in self.family.preview_stats if s in self.family.model_stats(self.config.model)]
        if self._on_preview is None or not self._cache.background or not names or self._cache.built(first) is not None:
            self._on_preview = None  # once: a later build (a reset, a restore) shows its own rows
            return None
        keep = tuple(dict.fromkeys(names + list(KEPT_ALWAYS) + [self.family.loss_stat]))
        return PreviewKey("preview", self.family.chunk_key(self.config, self.shape, int(self.x.shape[0]), int(self.x_val.shape[0]),
                                                           1, self.family.spec_of(self.config), keep))

    def _show_preview(self, key):
        """Step 0's statistics from the preview's build, told to `on_preview`; the state it returns is dropped."""
        tell, self._on_preview = self._on_preview, None
        try:
            args = self._args(1)
            _, out = self._get(key, args)(*args)
            rows, _ = rows_of(jax.device_get(out), 1)
        except Exception:  # the first look is a courtesy: the run goes on to its own build
            log.exception("the first look at %s failed", describe_key(key))
            return
        tell(rows)

    def _warm_others(self):
        """Queue background compiles, most wanted first: the evaluation program (the decision
        boundary shown now), the builds for the current knob values under the next
        WARM_ACTIVATIONS changes the family names (`warm_changes`: for most, the next activations
        of WARM_ORDER the model takes, relu first, the README demo's next step; for the GAN, the
        next loss of its lesson), so such a switch trains on its own build at once, the generic build
        (it serves any other knob change at once), then the others' evaluation programs. Not
        every activation and optimizer: per shape that was ~22 executables, and a server meeting
        hundreds of shapes held them all (issue 17); the rest compile when chosen, shown. Each
        compile in flight slows a compile someone waits for (two at once on two cores: 5.7 s
        instead of 2.4 s), so the queue holds builds for the values (2.3 s at depth 10), not
        generic ones (4.0 s), where it can."""
        if not self._warm:
            return
        act, opt, spec = _activation(self.config), self.config.optimizer, self.family.spec_of(self.config)
        # the family names the changes (activations; the GAN's next loss): the builds for them
        others = [_with(self.config, **c) for c in self.family.warm_changes(self.config, WARM_ORDER)][:WARM_ACTIVATIONS]
        predicts = [k for k in (self.family.predict_key(c, self.shape, GRID * GRID) for c in [self.config] + others)
                    if k is not None]
        if predicts:
            self._cache.warm(predicts[:1], self._predict_args(GRID * GRID))
        self._cache.warm([self._key_for(c, self.family.spec_of(c)) for c in others], self._args(0))
        if spec is not None:
            self._cache.warm([self._key(act, opt)], self._args(0))
        if predicts[1:]:
            self._cache.warm(predicts[1:], self._predict_args(GRID * GRID))

    def _get(self, key, args):
        """The executable of `key` from the cache (built at once where it is), `on_compile` told while it is waited for."""
        tell = self.on_compile
        with self._cache.foreground():  # someone waits for it: queued background compiles do not start meanwhile
            return self._cache.get(key, args, on_wait=None if tell is None else
                                   (lambda state, seconds: tell(describe_key(key), state, seconds)))

    def _key(self, act, optimizer, spec=None):
        """The chunk's key for activation `act` and `optimizer` (`spec` None: the generic build)."""
        return self._key_for(_with(self.config, activation=act, optimizer=optimizer), spec)

    def _key_for(self, config, spec=None):
        """The chunk's key for `config` (of this trainer's shape and data)."""
        keep = None if self.stats is None else tuple(dict.fromkeys(self.stats + KEPT_ALWAYS + (self.family.loss_stat,)))
        return self.family.chunk_key(config, self.shape, int(self.x.shape[0]), int(self.x_val.shape[0]), self.max_steps, spec, keep)

    def _args(self, n, every=1):
        return self.family.chunk_args(self.state, self.config, self.x, self.y, self.x_val, self.y_val, n, every)

    def _predict_key(self, act, rows=GRID * GRID):
        return self.family.predict_key(_with(self.config, activation=act), self.shape, rows)

    def _predict_args(self, rows):
        return self.family.predict_args(self.state, self.config, self.shape, rows)

    def _executable(self):
        """The build for the current knob values if compiled, else the generic one if compiled.

        A new run compiles (in the caller) the build for its values. A later knob change trains
        on the generic build while the new values' build compiles in the background. Where
        neither is built (an activation or optimizer nobody warmed), the caller compiles the build
        for its values alone, and the generic one follows in the background: at depth 10 the
        build for the values compiles in 2.3 s and the generic in 4.0 s, and the two at once
        on two cores took 8.9 s to the first frame (bench/first_frame.py)."""
        act, opt = _activation(self.config), self.config.optimizer
        spec = self.family.spec_of(self.config)
        if spec is None or not self.specialize:
            return self._get(self._key(act, opt), self._args(0))
        own, generic = self._key(act, opt, spec), self._key(act, opt)
        exe = self._cache.built(own)
        if exe is not None:
            return exe
        if self._built_spec is None or self._built_spec == (act, opt, spec):
            self._built_spec = (act, opt, spec)
            return self._get(own, self._args(0))
        exe = self._cache.built(generic)
        if exe is not None:
            self._cache.warm([own], self._args(0))
            return exe
        exe = self._get(own, self._args(0))
        self._cache.warm([generic], self._args(0))  # serves the next knob change at once
        return exe

    def _calibrate(self):
        """Steps per call so that one call takes about TARGET_CHUNK_SECONDS (cached per shape).

        The time per step is the slope between a short and a longer call, each measured once
        as a server's calls are: a call's fixed cost and its measured step are not per-step
        costs, and counting them as such (a single 8-step probe) made K about half what fits."""
        if self.max_steps == 1:  # nothing to choose (the CNN): no probe calls before the first frame
            return 1
        ckey = (self.shape, int(self.x.shape[0]))
        if ckey not in self._cache.chunk_steps:
            probe = self._executable()
            short, long = min(8, self.max_steps), min(32, self.max_steps)

            def seconds(n):  # the faster of two calls
                times = []
                for _ in range(2):
                    t0 = time.perf_counter()
                    jax.block_until_ready(probe(*self._args(n, n)))  # sync point: timing only
                    times.append(time.perf_counter() - t0)
                return min(times)

            for n in sorted({short, long}):  # the first calls after a compile allocate: not steady state
                jax.block_until_ready(probe(*self._args(n, n)))
            if long == short:  # a deep or wide net: its calls are few steps and each step costs far more than a call
                per_step = seconds(long) / long
            else:
                t_short, t_long = seconds(short), seconds(long)
                per_step = (t_long - t_short) / (long - short) if t_long > t_short else t_long / long
            self._cache.remember_steps(ckey, int(np.clip(round(TARGET_CHUNK_SECONDS / per_step), 1, self.max_steps)))
        return self._cache.chunk_steps.get(ckey, self.max_steps)

    # -- training -----------------------------------------------------------
    @property
    def step(self) -> int:
        return int(self.state.step)

    @property
    def every(self) -> int:
        """Steps between measured steps (see `stats_every`)."""
        return max(1, int(self.chunk_steps if self.stats_every is None else self.stats_every))

    def run(self, steps: int | None = None) -> dict:
        """Train `steps` steps (default: one chunk of K) and return their statistics.

        Returns numpy arrays with a leading axis of rows, one per measured step (every
        `every`-th step and the last): `count` steps each row covers (the steps since the
        previous row, its own included), `step` the measured step. Per-layer statistics,
        norms and histograms are that step's; `loss` and `accuracy` are means over the row's
        steps, `nonfinite` whether any of them went non-finite, `val_loss`/`val_accuracy`
        the held-out evaluation made among them (NaN if none). With `every` 1 a row is a
        step. Globals (rows,), per-layer (rows, depth+1), hidden-layer (rows, depth), `hist`
        (rows, depth+1, bins). A run that goes non-finite between measured steps ends at the
        first non-finite step, measured: the step and layer where it broke are reported.
        """
        steps = self.chunk_steps if steps is None else int(steps)
        parts, done = [], 0
        while done < steps:
            n = min(steps - done, self.max_steps)
            before = self.state
            self.state, out = self._executable()(*self._args(n, self.every))
            rows, broke = rows_of(jax.device_get(out), n)  # the one device->host transfer per call
            if broke is not None:  # train again to the step that broke, measuring it
                self.state = before
                self.state, out = self._executable()(*self._args(broke, self.every))
                parts.append(rows_of(jax.device_get(out), broke)[0])
                break
            parts.append(rows)
            done += n
        self.finished_at = time.time()
        return {name: np.concatenate([p[name] for p in parts]) for name in parts[0]}

    def update(self, changes: dict) -> dict:
        """Apply config changes; live keys keep weights and step, others re-initialize.

        Returns {"kind": "live"|"reset", "changes": {key: [old, new]}}; raises ConfigError.
        """
        new = parse_changes(self.config, changes)
        old = self.config
        diff = differing(old, new)
        if any(k not in LIVE_KEYS for k in diff):
            self._build(new)
            return {"kind": "reset", "changes": diff}
        self.config = new
        if "optimizer" in diff:
            self.state = self.family.reset_optimizer(self.state, new.optimizer)
            self._warm_others()
        return {"kind": "live", "changes": diff}

    def reset(self):
        """Re-initialize weights, optimizer and step from the current config's seed."""
        self._build(self.config)

    # -- checkpoints --------------------------------------------------------
    def snapshot(self):
        """An in-memory checkpoint: the config and the state that belong together
        (jax arrays are immutable, so this copies nothing)."""
        return (self.config, self.state)

    def restore(self, snap):
        """Back to a checkpoint: its weights, optimizer state and config, together.

        The executable follows the restored config (activation, optimizer); data and
        shapes are rebuilt only when a reset key differs from the current config.
        """
        config, state = snap
        if differing(config, self.config, RESET_KEYS):
            self._build(config)
        self.config = config
        self.state = state

    def to_bytes(self, snap=None) -> bytes:
        """Config, weights, optimizer and BatchNorm state, step and RNG key, as one blob:
        of the current state, or of a `snapshot()` (safe to call from another thread).

        Each array is stored under its path in the state ("paths"), so a later version whose
        optimizer state has another structure still finds the weights (see load_bytes)."""
        config, state = snap if snap is not None else self.snapshot()
        pathed, _ = jax.tree_util.tree_flatten_with_path(state)
        leaves = jax.device_get([leaf for _, leaf in pathed])
        paths = json.dumps([jax.tree_util.keystr(p) for p, _ in pathed])
        buf = io.BytesIO()
        np.savez(buf, format=np.array(SNAPSHOT_FORMAT), config=_text(config.model_dump_json()), paths=_text(paths),
                 **{f"l{i}": a for i, a in enumerate(leaves)})
        return buf.getvalue()

    def load_bytes(self, blob: bytes):
        """Load a `to_bytes` blob (config included); returns it as a `snapshot()`.

        Shapes and data are rebuilt only when a reset key differs; another optimizer only
        changes the structure the optimizer state is read into. An optimizer state that does
        not fit this version's (a blob from an older gradscope) restarts, keeping the weights;
        a weight that does not fit raises SnapshotError.
        """
        data = np.load(io.BytesIO(blob))
        config = load_config(json.loads(bytes(data["config"]).decode()))
        if differing(config, self.config, RESET_KEYS):
            self._build(config)
        elif config.optimizer != self.config.optimizer:
            self.state = self.family.reset_optimizer(self.state, config.optimizer)
        self.config = config
        pathed, treedef = jax.tree_util.tree_flatten_with_path(self.state)
        saved = [data[f"l{i}"] for i in range(sum(k.startswith("l") and k[1:].isdigit() for k in data.files))]
        if "paths" in data.files:
            by_path = dict(zip(json.loads(bytes(data["paths"]).decode()), saved, strict=True))
            found = [by_path.get(jax.tree_util.keystr(p)) for p, _ in pathed]
        else:  # the first format: arrays in flattening order, no paths
            found = _by_position(pathed, saved)
        fits = [a is not None and a.shape == leaf.shape and a.dtype == leaf.dtype for a, (_, leaf) in zip(found, pathed, strict=True)]
        for ok, (path, leaf) in zip(fits, pathed, strict=True):
            if not ok and not _in_optimizer(path):
                raise SnapshotError(f"the saved state has no {jax.tree_util.keystr(path)} of shape {leaf.shape}")
        leaves = [jnp.asarray(a) if ok else leaf for a, ok, (_, leaf) in zip(found, fits, pathed, strict=True)]
        self.state = jax.tree.unflatten(treedef, leaves)
        if not all(fits):  # an optimizer state of another structure: it restarts from these weights
            self.state = self.family.reset_optimizer(self.state, config.optimizer)
        return self.snapshot()

    def close(self):
        self._cache.close()
