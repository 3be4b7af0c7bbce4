"""The bounded compile cache: compiled programs by key, least recently used out, compiled in
the caller or on one background thread; and the persistent (disk) cache's set-up."""
from __future__ import annotations

import contextlib
import threading
import time
from collections import OrderedDict
from concurrent.futures import Future, ThreadPoolExecutor

import jax

from .programs import compile_key

DISK_CACHE_BYTES = 2 << 30  # the persistent compile cache on disk


def enable_persistent_cache(path) -> None:
    """Keep compiled executables on disk, so a restarted server or CLI skips compiling."""
    jax.config.update("jax_compilation_cache_dir", str(path))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.2)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
    jax.config.update("jax_compilation_cache_max_size", DISK_CACHE_BYTES)  # least recently used out beyond



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

    @property
    def busy(self) -> bool:
        """Whether a run is being built or someone waits for a compile (see `foreground`)."""
        with self._lock:
            return self._busy > 0 or bool(self._wanted)

    def _background(self, key, args, fut):
        with self._lock:  # at most a minute: a build in progress never holds the queue for good
            self._quiet.wait_for(lambda: self._busy == 0 or key in self._wanted, timeout=60.0)
            self._tasks.pop(key, None)
        self._fill(key, args, fut)

    def _fill(self, key, args, fut):
        try:
            exe = compile_key(key, args)
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
