"""Config -> compiled closures, and the Trainer that owns one run's state.

The Trainer is the only stateful object of the engine; it is not thread-safe (one
worker owns it). Executables are cached by (activation, shapes, K) in a `CompileCache`,
which can be shared between trainers and warms the other activations in the
background, so a live change of any knob never waits for a compile.
"""

import contextlib
import functools
import io
import json
import threading
import time
from collections import OrderedDict
from concurrent.futures import Future, ThreadPoolExecutor

import jax
import jax.numpy as jnp
import numpy as np

from gradscope import engine_rnn
from gradscope.config import LIVE_KEYS, RESET_KEYS, Config, make_config, parse_changes
from gradscope.core import datasets
from gradscope.core.network import Knobs, Shape, init_params
from gradscope.core.train import (
    CLIP_MODES,
    GENERIC,
    PER_STEP_STATS,
    SPARSE_STATS,
    Spec,
    init_state,
    make_chunk,
    make_predict,
    reset_optimizer,
)

GRID = 48  # the decision boundary's grid is GRID x GRID points

TARGET_CHUNK_SECONDS = 0.03
MAX_CHUNK_STEPS = 256
UNROLL = 1  # hidden layers per scan iteration: more compiles slower and ran no faster (bench/bench_engine.py)
# The order in which other activations compile in the background: the usual fixes first
# (relu: the README demo's next step), and how many of them per new shape. Each executable
# held costs memory (CompileCache's bounds); every other switch compiles on demand, shown.
WARM_ORDER = ("relu", "leaky_relu", "tanh", "elu", "selu", "gelu", "swish", "prelu", "rrelu", "sigmoid", "linear")
WARM_ACTIVATIONS = 2
DISK_CACHE_BYTES = 2 << 30  # the persistent compile cache on disk


def enable_persistent_cache(path) -> None:
    """Keep compiled executables on disk, so a restarted server or CLI skips compiling."""
    jax.config.update("jax_compilation_cache_dir", str(path))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.2)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
    jax.config.update("jax_compilation_cache_max_size", DISK_CACHE_BYTES)  # least recently used out beyond


def knobs_of(config: Config) -> Knobs:
    """The traced live knobs, with fixed dtypes so a new value never retraces."""
    f = np.float32
    return Knobs(
        leaky_alpha=f(config.leaky_alpha),
        batchnorm=np.bool_(config.batchnorm),
        residual=np.bool_(config.residual),
        clip_mode=np.int32(CLIP_MODES.index(config.clip_mode)),
        clip_value=f(config.clip_value),
        learning_rate=f(config.learning_rate),
        l1=f(config.l1),
        l2=f(config.l2),
        dropout=f(config.dropout),
    )


def spec_of(config: Config) -> Spec:
    """The structural knob values of `config`, for the executable built for them."""
    return Spec(batchnorm=bool(config.batchnorm), residual=bool(config.residual), dropout=config.dropout > 0,
                clip_mode=CLIP_MODES.index(config.clip_mode), l1=config.l1 > 0, l2=config.l2 > 0)


def shape_of(config: Config) -> Shape:
    if engine_rnn.is_recurrent(config):
        return engine_rnn.shape_of(config)
    return Shape(
        n_in=datasets.num_features(config.dataset, config.input_dim),
        depth=config.depth,
        width=config.width,
        classes=datasets.num_classes(config.dataset),
        batch=config.batch_size,
    )


# Bounds of a CompileCache: a server runs for days and meets hundreds of shapes; every
# executable held keeps its machine code mapped (~1,000 mappings and ~10 MiB on CPU).
CACHE_ENTRIES = 24
CACHE_BYTES = 1 << 30
# what XLA's CPU memory analysis does not report (code, allocations): bench/soak.py measured
# ~40-60 MiB of resident memory and ~700 memory mappings per executable held
EXECUTABLE_OVERHEAD = 32 << 20
MAX_QUEUED = 8      # background compiles waiting to start; the oldest are dropped beyond (their sessions moved on)
CLEAR_EVERY = 4     # evictions between clearing JAX's own tracing and compilation caches


def executable_bytes(exe) -> int:
    """What a compiled executable holds, estimated: its buffers as XLA reports them plus its code."""
    try:
        m = exe.memory_analysis()
        return int(m.temp_size_in_bytes + m.output_size_in_bytes + m.generated_code_size_in_bytes) + EXECUTABLE_OVERHEAD
    except Exception:  # a backend without a memory analysis
        return EXECUTABLE_OVERHEAD


class CompileCache:
    """Ahead-of-time compiled executables keyed by (kind, activation, optimizer, shape, ...),
    least recently used first out beyond `max_entries` or `max_bytes`.

    `get` compiles in the caller if nobody has; `warm` queues compiles on one background
    thread. An evicted executable is dropped here (a trainer using it holds it for one call
    at most) and freed; a later `get` compiles it again (from the persistent disk cache, where
    one is on). Safe to share between trainers and threads.
    """

    def __init__(self, background=True, max_entries: int = CACHE_ENTRIES, max_bytes: int = CACHE_BYTES):
        self.background = background
        self.max_entries, self.max_bytes = max(1, int(max_entries)), int(max_bytes)
        self._lock = threading.Lock()
        self._futures: OrderedDict = OrderedDict()  # key -> Future of its executable, least recent first
        self._sizes: dict = {}  # key -> bytes, for the built ones
        self._bytes = 0
        self._tasks: dict = {}  # key -> the pool's future of its queued background compile
        self._busy = 0  # runs being built (first executable, calibration): queued compiles wait
        self._wanted: set = set()  # keys someone waits for: their background compile never waits
        self._quiet = threading.Condition(self._lock)
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="gradscope-compile") if background else None
        self.chunk_steps: OrderedDict = OrderedDict()  # calibrated K per (shape, n_data), bounded below
        self.compiles = self.evictions = self.dropped = 0
        self._cleared_at = 0  # evictions when JAX's caches were last cleared

    def stats(self) -> dict:
        """Entries and estimated bytes held, compiles and evictions so far."""
        with self._lock:
            pending = sum(not f.done() for f in self._futures.values())
            return {"entries": len(self._futures) - pending, "pending": pending, "bytes": self._bytes,
                    "max_entries": self.max_entries, "max_bytes": self.max_bytes,
                    "compiles": self.compiles, "evictions": self.evictions, "dropped": self.dropped}

    def get(self, key, args, on_wait=None):
        """The executable of `key`, compiled here from example `args` unless it is built or
        compiling (then waited for); `args` None: only wait for a queued or running compile.
        `on_wait(state, seconds)`: told "start" before waiting for a compile (here or anywhere)
        and "end" with its seconds after, so a session can show what it waits for."""
        with self._lock:
            fut = self._futures.get(key)
            mine = fut is None
            if mine:
                fut = self._futures[key] = Future()
            else:
                self._futures.move_to_end(key)
                if args is not None and not fut.done() and key in self._tasks and self._tasks[key].cancel():
                    mine = True  # queued behind other background compiles, not started: built here instead
                    del self._tasks[key]
                elif not fut.done():
                    self._wanted.add(key)  # started: it must not wait for the builds in progress
                    self._quiet.notify_all()
        if fut.done():
            return fut.result()
        t0 = time.perf_counter()
        if on_wait is not None:
            on_wait("start", None)
        try:
            if mine:
                self._fill(key, args, fut)
            return fut.result()
        finally:
            if on_wait is not None:
                on_wait("end", time.perf_counter() - t0)

    @contextlib.contextmanager
    def foreground(self):
        """While a run is built (its first executable compiled, its calls timed), queued
        background compiles do not start: they would take the cores it needs (a depth-200 first
        frame took 5.9 s instead of 2.9 s while the server's start-up compiles ran) and skew the
        timing that sets its steps per call."""
        with self._lock:
            self._busy += 1
        try:
            yield
        finally:
            with self._lock:
                self._busy -= 1
                self._quiet.notify_all()

    def _background(self, key, args, fut):
        with self._lock:  # at most a minute: a build in progress never holds the queue for good
            self._quiet.wait_for(lambda: self._busy == 0 or key in self._wanted, timeout=60.0)
            self._tasks.pop(key, None)
        self._fill(key, args, fut)

    def _fill(self, key, args, fut):
        try:
            exe = _compile(key, args)
        except BaseException as exc:  # surfaced to every waiter, then forgotten
            with self._lock:
                if self._futures.get(key) is fut:
                    del self._futures[key]
                self._wanted.discard(key)
            fut.set_exception(exc)
            return
        size = executable_bytes(exe)
        with self._lock:
            self._wanted.discard(key)
            self.compiles += 1
            if self._futures.get(key) is fut:  # (not dropped by `close` meanwhile)
                self._sizes[key] = size
                self._bytes += size
                self._futures.move_to_end(key)
                self._evict(keep=key)
            clear = self.evictions - self._cleared_at >= CLEAR_EVERY
            if clear:
                self._cleared_at = self.evictions
        fut.set_result(exe)
        if clear:
            # What JAX keeps per program traced (jaxprs, lowerings, the small jitted helpers'
            # executables) outlives ours: measured, ~160 memory mappings per shape after its
            # executables were evicted, none after this. Ours (AOT-compiled) are not touched.
            jax.clear_caches()

    def _evict(self, keep) -> None:
        """Under the lock: drop built executables, least recently used first, until within bounds."""
        for key in list(self._futures):
            if len(self._sizes) <= self.max_entries and self._bytes <= self.max_bytes:
                break
            if key == keep or key not in self._sizes:  # the newest stays; compiles in flight are not held yet
                continue
            del self._futures[key]
            self._bytes -= self._sizes.pop(key)
            self.evictions += 1

    def built(self, key):
        """The executable if it is compiled, else None (queues nothing)."""
        with self._lock:
            fut = self._futures.get(key)
            if fut is not None and fut.done():
                self._futures.move_to_end(key)
        if fut is None or not fut.done() or fut.cancelled() or fut.exception() is not None:
            return None
        return fut.result()

    def ready(self, key, args):
        """The executable if built; else None, queueing its compile (in the background where
        there is a pool, here otherwise)."""
        exe = self.built(key)
        if exe is not None:
            return exe
        if self._pool is None:
            return self.get(key, args)
        self.warm([key], args)
        return None

    def start(self, key, args):
        """Start compiling `key` now on a thread of its own (not behind the queued background
        compiles): `get` then waits for it. Where there is no background pool, nothing:
        the caller's `get` compiles it."""
        if self._pool is None:
            return
        with self._lock:
            if key in self._futures:
                return
            fut = self._futures[key] = Future()
        threading.Thread(target=self._fill, args=(key, args, fut), name="gradscope-compile-first", daemon=True).start()

    def warm(self, keys, args):
        """Queue background compiles of `keys` (each with the same example `args`); a key
        counts as built from here on, so `get` waits for it instead of compiling it twice."""
        if self._pool is None:
            return
        for key in keys:
            with self._lock:
                if key in self._futures:
                    continue
                fut = self._futures[key] = Future()
                self._tasks[key] = self._pool.submit(self._background, key, args, fut)
                self._drop_stale()

    def _drop_stale(self) -> None:
        """Under the lock: beyond MAX_QUEUED queued background compiles, the oldest are dropped
        (a server meeting shape after shape queued warm-ups for sessions long gone: 107 waiting
        after 40 shapes); one somebody waits for is kept. A dropped key compiles when asked for."""
        queued = [k for k, task in self._tasks.items() if not task.running() and not task.done()]
        for key in queued[:max(0, len(queued) - MAX_QUEUED)]:
            if key in self._wanted or not self._tasks[key].cancel():
                continue
            del self._tasks[key]
            fut = self._futures.pop(key, None)
            if fut is not None:
                fut.cancel()
            self.dropped += 1

    def remember_steps(self, key, k: int) -> None:
        """A calibrated K, kept for the newest 4,096 shapes."""
        with self._lock:
            self.chunk_steps[key] = k
            self.chunk_steps.move_to_end(key)
            while len(self.chunk_steps) > 4096:
                self.chunk_steps.popitem(last=False)

    def close(self):
        """Stop the background thread; waiters on compiles it never started get an error."""
        if self._pool is None:
            return
        self._pool.shutdown(wait=False, cancel_futures=True)
        for key, task in list(self._tasks.items()):
            if task.cancelled():
                with self._lock:
                    fut = self._futures.pop(key, None)
                if fut is not None and not fut.done():
                    fut.set_exception(RuntimeError("compile cache closed"))


def describe_key(key) -> str:
    """A compile as a person reads it: "relu, adam, depth 10 x width 32" or "the decision boundary (relu)"."""
    if key[0] == "predict":
        return f"the decision boundary ({key[1]})"
    _, act, optimizer, shape = key[:4]
    model = getattr(shape, "model", None)
    return f"{model + ' ' if model else ''}{act}, {optimizer}, depth {shape.depth} x width {shape.width}"


def _compile(key, args):
    """key: ("chunk", act, optimizer, shape, n_train, n_val, K, spec) (recurrent: no spec)
    or ("predict", act, shape, rows)."""
    if key[0] == "predict":
        _, act, shape, _ = key
        return jax.jit(make_predict(act, shape, UNROLL)).lower(*args).compile()
    if isinstance(key[3], engine_rnn.RecurrentShape):
        return engine_rnn.compile_chunk(key, args)
    _, act, optimizer, shape, _, _, steps, spec = key
    return jax.jit(make_chunk(act, optimizer, shape, steps, UNROLL, spec=spec)).lower(*args).compile()


def max_chunk_steps(shape: Shape) -> int:
    """K, the scan length compiled: about twice the steps a 30 ms call can fit, by a cost model."""
    n_in, d, w, c, b = shape
    flops = 6 * b * (n_in * w + (d - 1) * w * w + w * c) + 20 * d * w * w
    seconds = flops / 100e9 + d * 10e-6
    k = 2 ** int(np.ceil(np.log2(max(2 * TARGET_CHUNK_SECONDS / seconds, 1))))
    return int(min(k, MAX_CHUNK_STEPS))


def _data(config: Config):
    """Shape, training split and held-out split of `config`."""
    shape = shape_of(config)
    data = datasets.load(config.dataset, noise=config.noise, seed=config.seed, input_dim=config.input_dim)
    (x, y), (x_val, y_val) = datasets.split(*data, seed=config.seed)
    return shape, (jnp.asarray(x), jnp.asarray(y)), (jnp.asarray(x_val), jnp.asarray(y_val))


def _initial(config: Config, shape: Shape, abstract=False):
    """The initial TrainState of `config` (`abstract`: its shapes and dtypes only, traced
    without compiling or running anything, for compiling the chunk ahead of it)."""
    make = lambda seed: _initial_state(seed, shape, config.init, config.init_gain, config.optimizer)
    return jax.eval_shape(make, np.int32(config.seed)) if abstract else make(np.int32(config.seed))


def _setup(config: Config):
    """Shape, training split, held-out split and the initial TrainState of `config`."""
    shape, train, val = _data(config)
    return shape, train, val, _initial(config, shape)


@functools.partial(jax.jit, static_argnums=(1, 2, 3, 4))
def _initial_state(seed, shape, init, gain, optimizer):
    """Weights and optimizer state from the seed, as one compiled program: run op by op, the
    initialization compiled dozens of small programs, seconds before the first frame."""
    k_init, k_train = jax.random.split(jax.random.PRNGKey(seed))
    params = init_params(k_init, shape, init, gain)
    return init_state(k_train, params, shape, optimizer)


def _rows(out: dict, n: int) -> tuple[dict, np.ndarray]:
    """A chunk's host output (n steps ran) -> (one row per measured step, see Trainer.run;
    the per-step non-finite flags)."""
    m = int(out.pop("rows"))
    scalars = {k: np.asarray(out.pop(k))[:n] for k in PER_STEP_STATS if k in out}
    rows = {k: np.asarray(v)[:m] for k, v in out.items()}
    ends = _measured_indices(n, rows)
    starts = np.concatenate([[0], ends[:-1] + 1])
    count = ends - starts + 1
    rows["count"] = count.astype(np.int64)
    for k, v in scalars.items():
        if k == "nonfinite":
            rows[k] = np.add.reduceat(v.astype(np.int64), starts) > 0
        elif k in SPARSE_STATS:
            seen = np.isfinite(v)
            with np.errstate(invalid="ignore", divide="ignore"):
                rows[k] = (np.add.reduceat(np.where(seen, v, 0.0), starts) / np.add.reduceat(seen, starts)).astype(np.float32)
        else:
            rows[k] = (np.add.reduceat(v.astype(np.float64), starts) / count).astype(np.float32)
    return rows, scalars["nonfinite"]


def _measured_indices(n: int, rows: dict) -> np.ndarray:
    """Indices within a call of n steps of its measured steps (the last step always is)."""
    steps = np.asarray(rows["step"], np.int64)
    return steps - (steps[-1] - (n - 1))


def _unmeasured_break(rows: dict, nonfinite: np.ndarray):
    """The number of steps to the first non-finite step if it was not measured, else None."""
    bad = np.flatnonzero(nonfinite)
    if len(bad) == 0 or bad[0] in _measured_indices(len(nonfinite), rows):
        return None
    return int(bad[0]) + 1


def prewarm(cache: CompileCache, config: Config | dict | None = None) -> None:
    """Queue the compiles a first session of `config` (default: the default config) needs,
    its chunk first, then its decision-boundary predict, on the cache's background thread.
    A server calls this at start-up, so its first session finds them built (or building)."""
    config = config if isinstance(config, Config) else make_config(config)
    shape, (x, y), (x_val, y_val), state = _setup(config)
    k = max_chunk_steps(shape)
    chunk_key = ("chunk", config.activation, config.optimizer, shape, int(x.shape[0]), int(x_val.shape[0]), k)
    args = (state, knobs_of(config), x, y, x_val, y_val, np.int32(0), np.int32(1))
    # the build for the config's values first (the first session trains on it), then the
    # generic one that serves any knob change while that change's own build compiles
    cache.warm([chunk_key + (spec_of(config),), chunk_key + (GENERIC,)], args)
    rows = jax.ShapeDtypeStruct((GRID * GRID, shape.n_in), jnp.float32)
    cache.warm([("predict", config.activation, shape, GRID * GRID)], (state.params, state.bn_state, knobs_of(config), rows))


class Trainer:
    """One run: data, parameters, optimizer state and the config; trains in compiled chunks."""

    def __init__(self, config: Config | dict | None = None, *, chunk_steps: int | None = None, cache: CompileCache | None = None,
                 warm=False, stats_every: int | None = 1, specialize: bool | None = None, on_compile=None):
        """`warm`: compile the next activations (WARM_ORDER) in the background too.

        `stats_every`: measure every k-th step (and the last of each call); None: once per
        chunk of `chunk_steps` steps, about 30 times a second (a server's choice: the page
        draws no more). Rows then cover several steps: see `run`.
        `specialize`: train on an executable built for the structural knobs' current values
        (BatchNorm, residual, dropout on, clip mode, L1/L2 on) while one is built, on the
        generic build otherwise. Default: where the cache compiles in the background (a
        change then never waits: the generic build serves until the new one is ready).
        `on_compile(what, state, seconds)`: told when this trainer starts ("start") and stops
        ("end", with seconds) waiting for a compile; `what` names it for a person."""
        self.on_compile = on_compile
        self._fixed_k = chunk_steps
        self._cache = cache or CompileCache(background=warm)
        self._warm = warm
        self.stats_every = stats_every
        self.specialize = self._cache.background if specialize is None else specialize
        self._built_spec = None  # the spec the first executable was built for (compiled in the caller)
        self._build(config if isinstance(config, Config) else make_config(config))

    # -- construction -------------------------------------------------------
    def _build(self, config: Config):
        with self._cache.foreground():
            self._build_run(config)
        self._warm_others()

    def _build_run(self, config: Config):
        self.config = config
        if engine_rnn.is_recurrent(config):  # issue 12: the recurrent models' data, state and cost model
            self.shape = shape_of(config)
            x, y = engine_rnn.load(config)
            self.x, self.y = jnp.asarray(x), jnp.asarray(y)
            # the sequence tasks draw fresh batches: nothing is held out
            self.x_val, self.y_val = self.x[:1], self.y[:1]
            self.state = engine_rnn.new_state(config, self.shape)
            self.max_steps = self._fixed_k or engine_rnn.max_chunk_steps(self.shape)
        else:
            self.shape, (self.x, self.y), (self.x_val, self.y_val) = _data(config)
            self.max_steps = self._fixed_k or max_chunk_steps(self.shape)
            if self.specialize:
                # the first executable compiles from the state's shapes on a thread of its
                # own while the initial weights compile and run here (two cores, not one after the other)
                self.state = _initial(config, self.shape, abstract=True)
                self._cache.start(self._key(config.activation, config.optimizer, spec_of(config)), self._args(0))
            self.state = _initial(config, self.shape)
        self._built_spec = None
        self.chunk_steps = self._fixed_k or self._calibrate()

    def _warm_others(self):
        """Queue background compiles: the generic build and the decision boundary's predict,
        then the next WARM_ACTIVATIONS activations of WARM_ORDER (relu first). Not every
        activation and optimizer: per shape that was ~22 executables, and a server meeting
        hundreds of shapes held them all (issue 17); the rest compile when chosen, shown."""
        if not self._warm:
            return
        act, opt = self.config.activation, self.config.optimizer
        recurrent = engine_rnn.is_recurrent(self.config)
        order = engine_rnn.warm_order(self.config.model, WARM_ORDER) if recurrent else WARM_ORDER
        others = [a for a in order if a != act][:WARM_ACTIVATIONS]
        if recurrent:  # no predict functions: the valid activations' chunks
            self._cache.warm([self._key(a, opt) for a in others], self._args(0))
            return
        self._cache.warm([self._key(act, opt)], self._args(0))  # serves any knob change at once
        self._cache.warm([self._predict_key(act)], self._predict_args(GRID * GRID))
        for a in others:
            self._cache.warm([self._key(a, opt)], self._args(0))
            self._cache.warm([self._predict_key(a)], self._predict_args(GRID * GRID))

    def _get(self, key, args):
        """The executable of `key` from the cache, `on_compile` told while it is waited for."""
        tell = self.on_compile
        return self._cache.get(key, args, on_wait=None if tell is None else
                               (lambda state, seconds: tell(describe_key(key), state, seconds)))

    def _key(self, act, optimizer, spec=GENERIC):
        if engine_rnn.is_recurrent(self.config):
            act = engine_rnn.cache_activation(self.shape, act)
            return ("chunk", act, optimizer, self.shape, int(self.x.shape[0]), int(self.x_val.shape[0]), self.max_steps)
        return ("chunk", act, optimizer, self.shape, int(self.x.shape[0]), int(self.x_val.shape[0]), self.max_steps, spec)

    def _args(self, n, every=1):
        if engine_rnn.is_recurrent(self.config):
            return (self.state, engine_rnn.knobs_of(self.config), self.x, self.y, self.x_val, self.y_val, np.int32(n))
        return (self.state, knobs_of(self.config), self.x, self.y, self.x_val, self.y_val, np.int32(n), np.int32(every))

    def _predict_key(self, act, rows=GRID * GRID):
        return ("predict", act, self.shape, rows)

    def _predict_args(self, rows):
        return (self.state.params, self.state.bn_state, knobs_of(self.config), jax.ShapeDtypeStruct((rows, self.shape.n_in), jnp.float32))

    def _executable(self):
        """The build for the current knob values if compiled, else the generic one.

        A new run compiles (in the caller) the build for its values; a later knob change
        trains on the generic build (warmed in the background, or compiled here once) while
        the new values' build compiles in the background."""
        act, opt = self.config.activation, self.config.optimizer
        if engine_rnn.is_recurrent(self.config) or not self.specialize:
            return self._get(self._key(act, opt), self._args(0))
        spec = spec_of(self.config)
        own, generic = self._key(act, opt, spec), self._key(act, opt)
        exe = self._cache.built(own)
        if exe is not None:
            return exe
        if self._built_spec is None or self._built_spec == (act, opt, spec):
            self._built_spec = (act, opt, spec)
            return self._get(own, self._args(0))
        self._cache.warm([own], self._args(0))
        return self._cache.built(generic) or self._get(generic, self._args(0))

    def _calibrate(self):
        """Steps per call so that one call takes about TARGET_CHUNK_SECONDS (cached per shape).

        The time per step is the slope between a short and a longer call, each measured once
        as a server's calls are: a call's fixed cost and its measured step are not per-step
        costs, and counting them as such (a single 8-step probe) made K about half what fits."""
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
        recurrent = engine_rnn.is_recurrent(self.config)
        parts, done = [], 0
        while done < steps:
            n = min(steps - done, self.max_steps)
            before = self.state
            self.state, out = self._executable()(*self._args(n, self.every))
            if recurrent:
                parts.append((n, out))
                done += n
                continue
            out, nonfinite = _rows(jax.device_get(out), n)
            broke = _unmeasured_break(out, nonfinite)
            if broke is not None:  # train again to the step that broke, measuring it
                self.state = before
                self.state, out = self._executable()(*self._args(broke, self.every))
                parts.append((broke, _rows(jax.device_get(out), broke)[0]))
                break
            parts.append((n, out))
            done += n
        if recurrent:
            host = jax.device_get(parts)  # the one device->host transfer per call
            stats = {name: np.concatenate([p[name][:n] for n, p in host]) for name in host[0][1]}
            return {**stats, "count": np.ones(len(stats["step"]), np.int64)}
        return {name: np.concatenate([p[name] for _, p in parts]) for name in parts[0][1]}

    def update(self, changes: dict) -> dict:
        """Apply config changes; live keys keep weights and step, others re-initialize.

        Returns {"kind": "live"|"reset", "changes": {key: [old, new]}}; raises ConfigError.
        """
        new = parse_changes(self.config, changes)
        old = self.config
        diff = {k: [getattr(old, k), getattr(new, k)] for k in type(new).model_fields if getattr(old, k) != getattr(new, k)}
        if any(k not in LIVE_KEYS for k in diff):
            self._build(new)
            return {"kind": "reset", "changes": diff}
        self.config = new
        if "optimizer" in diff:
            reset = engine_rnn.reset_optimizer if engine_rnn.is_recurrent(new) else reset_optimizer
            self.state = reset(self.state, new.optimizer)
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
        if any(getattr(config, k) != getattr(self.config, k) for k in RESET_KEYS):
            self._build(config)
        self.config = config
        self.state = state

    def to_bytes(self, snap=None) -> bytes:
        """Config, weights, optimizer and BatchNorm state, step and RNG key, as one blob:
        of the current state, or of a `snapshot()` (safe to call from another thread)."""
        config, state = snap if snap is not None else self.snapshot()
        leaves = jax.device_get(jax.tree.leaves(state))
        buf = io.BytesIO()
        np.savez(buf, config=np.frombuffer(config.model_dump_json().encode(), np.uint8), **{f"l{i}": a for i, a in enumerate(leaves)})
        return buf.getvalue()

    def load_bytes(self, blob: bytes):
        """Load a `to_bytes` blob (config included); returns it as a `snapshot()`.

        Shapes and data are rebuilt only when a reset key differs; another optimizer only
        changes the structure the optimizer state is read into.
        """
        data = np.load(io.BytesIO(blob))
        config = make_config(json.loads(bytes(data["config"]).decode()))
        if any(getattr(config, k) != getattr(self.config, k) for k in RESET_KEYS):
            self._build(config)
        elif config.optimizer != self.config.optimizer:
            reset = engine_rnn.reset_optimizer if engine_rnn.is_recurrent(config) else reset_optimizer
            self.state = reset(self.state, config.optimizer)
        self.config = config
        treedef = jax.tree.structure(self.state)
        self.state = jax.tree.unflatten(treedef, [jnp.asarray(data[f"l{i}"]) for i in range(treedef.num_leaves)])
        return self.snapshot()

    # -- evaluation ---------------------------------------------------------
    def predict(self, x) -> np.ndarray:
        """Evaluation-mode class probabilities (running BatchNorm stats, rrelu's mean slope, no dropout)."""
        x = jnp.asarray(x, jnp.float32)
        exe = self._get(self._predict_key(self.config.activation, x.shape[0]), self._predict_args(x.shape[0]))
        return self._probabilities(exe, x)

    def _probabilities(self, exe, x):
        logits = exe(self.state.params, self.state.bn_state, knobs_of(self.config), x)
        return np.asarray(jax.nn.softmax(logits))

    def evaluate(self, held_out: bool = False) -> dict:
        """Loss and accuracy over the training split (or the held-out one), in evaluation mode.

        Recurrent models: on a fixed batch of sequences, with the task's baseline loss."""
        if engine_rnn.is_recurrent(self.config):
            return engine_rnn.evaluate(self.config, self.shape, self.state, (self.x, self.y))
        x, y = (self.x_val, self.y_val) if held_out else (self.x, self.y)
        p = self.predict(x)
        y = np.asarray(y)
        with np.errstate(divide="ignore", invalid="ignore"):
            loss = float(-np.mean(np.log(p[np.arange(len(y)), y])))
        return {"loss": loss, "accuracy": float(np.mean(p.argmax(1) == y))}

    def decision_grid(self, n: int = GRID, wait: bool = False) -> dict | None:
        """Class-1 probability on an n x n grid over the data (2-D datasets), else None.

        Also None (unless `wait`) while its predict function is still compiling in the
        background: the caller's thread never waits for a compile after an activation switch."""
        if self.config.dataset not in datasets.TWO_D:
            return None
        key, args = self._predict_key(self.config.activation, n * n), self._predict_args(n * n)
        exe = self._get(key, args) if wait else self._cache.ready(key, args)
        if exe is None:
            return None
        x = np.asarray(self.x)
        lo, hi = x.min(axis=0) - 0.3, x.max(axis=0) + 0.3
        gx, gy = np.linspace(lo[0], hi[0], n), np.linspace(lo[1], hi[1], n)
        grid = np.stack(np.meshgrid(gx, gy), axis=-1).reshape(-1, 2)
        p = self._probabilities(exe, jnp.asarray(grid, jnp.float32))[:, 1].reshape(n, n)
        return {"x": gx.tolist(), "y": gy.tolist(), "p": np.where(np.isfinite(p), p, np.nan).tolist()}

    def close(self):
        self._cache.close()
