"""The host side of a monitored training loop: `attach`, `Run.publish` and `probe`.

    tx = gradscope.optax.monitor(optax.adam, learning_rate=1e-3)
    gs = gradscope.attach(name="my run", out="my-run.jsonl")
    for step in range(steps):
        params, opt_state, loss = train_step(params, opt_state, batch)
        opt_state = gs.publish(step, opt_state, loss=loss)

`publish` never waits for the device or the disk: it hands the step's packed statistics (a
device array, not yet fetched) to a background thread and returns at once. The thread fetches
them, turns them into one record in the format of `gradscope run --out` (JSON Lines: a header,
then one record per published step), and writes it. When the thread falls behind, frames are
dropped (counted in `Run.dropped`), never queued without bound; a sink that fails (a full disk)
is logged once and the run goes on. Knob changes requested with `Run.request` (from any thread)
are applied to the optimizer state that `publish` returns, so they reach the next update.
"""
from __future__ import annotations

import collections
import functools
import json
import logging
import math
import queue
import threading
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from gradscope import optax as gs_optax

log = logging.getLogger("gradscope.attach")

QUEUE_FRAMES = 64      # published steps waiting for the background thread; more are dropped
RECENT_RECORDS = 1024  # records kept in memory (Run.records) for a notebook or a test
PROBE_VALUES = 256     # dL/dz norms kept per probe between two fetches


# -- probes: dL/dz of an activation inside the user's model ------------------------------
_probe_lock = threading.Lock()
_probe_values: dict[str, collections.deque] = {}


def _record_probe(name: str, value) -> None:
    with _probe_lock:
        _probe_values.setdefault(name, collections.deque(maxlen=PROBE_VALUES)).append(float(value))


_probe_order: dict[str, None] = {}  # probe names in the forward pass's order (seen when traced)


def _drain_probes() -> dict[str, float]:
    """The latest value of each probe since the last drain (older ones belong to earlier steps),
    in forward order. The values come from host callbacks that run beside the step, not in it:
    after the step's outputs are ready, the callbacks are waited for (jax.effects_barrier), so
    a value is the probed step's or, where the loop has run ahead, a step or two later's."""
    if _probe_order:
        jax.effects_barrier()
    with _probe_lock:
        out = {name: _probe_values[name][-1] for name in _probe_order if _probe_values.get(name)}
        for values in _probe_values.values():
            values.clear()
    return out


@functools.partial(jax.custom_vjp, nondiff_argnums=(1,))
def probe(x, name: str):
    """Identity on `x` (an activation, e.g. a layer's pre-activation z); in the backward pass
    it records ||dL/dz|| (the Frobenius norm over the batch, as the built-in nets' `delta_norm`)
    under `name`. The run's records then carry `delta_norm` per probe, in call order."""
    return x


def _probe_fwd(x, name):
    _probe_order.setdefault(name)  # runs when the step is traced, in forward order
    return x, None


def _probe_bwd(name, _, g):
    norm = jnp.sqrt(sum(jnp.sum(jnp.square(jnp.asarray(leaf, jnp.float32))) for leaf in jax.tree_util.tree_leaves(g)))
    jax.debug.callback(functools.partial(_record_probe, name), norm)
    return (g,)


probe.defvjp(_probe_fwd, _probe_bwd)


# -- records ------------------------------------------------------------------------------
def _plain(value):
    """JSON-able: numpy and JAX numbers to Python, NaN/Inf to None (JSON has no NaN)."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    a = np.asarray(value)
    if a.ndim:
        return [_plain(v) for v in a.tolist()]
    v = a.item()
    if isinstance(v, float) and not math.isfinite(v):
        return None
    return v


class Run:
    """One monitored training run (make it with `attach`). Thread-safe `request`; `publish` from the training loop."""

    def __init__(self, name: str, out: str | Path | None = None, *, every: int = 1, queue_frames: int = QUEUE_FRAMES):
        if not isinstance(every, int) or every < 1:
            raise ValueError(f"every: {every!r} must be an int >= 1 (publish every Nth step)")
        self.name = name
        self.out = None if out is None else Path(out)
        self.every = every
        self.records: collections.deque = collections.deque(maxlen=RECENT_RECORDS)
        self.dropped = 0        # frames the background thread was too far behind to take
        self.published = 0
        self._layers: list[str] | None = None
        self._knobs: dict[str, float] | None = None
        self._pending: dict[str, float] = {}
        self._lock = threading.Lock()
        self._queue: queue.Queue = queue.Queue(maxsize=queue_frames)
        self._file = None
        self._sink_failed = False
        self._warned_no_monitor = False
        self._last_update = None
        self._closed = False
        self._thread = threading.Thread(target=self._drain, name=f"gradscope-publish-{name}", daemon=True)
        self._thread.start()

    # -- the training thread -------------------------------------------------------------
    def publish(self, step: int, opt_state, loss=None, metrics: dict | None = None):
        """Send this step's statistics (without waiting) and return `opt_state` with the knob
        changes requested since the last call applied. `loss` and `metrics` ({name: number})
        may be device arrays: they are fetched on the background thread."""
        if self._closed:
            raise RuntimeError(f"run {self.name!r} is closed: attach a new one")
        step = int(step)
        state = gs_optax.find_state(opt_state)
        if state is None and not self._warned_no_monitor:
            self._warned_no_monitor = True
            log.warning("gradscope: opt_state holds no monitor state; wrap the optimizer in gradscope.optax.monitor(...) "
                        "for per-layer statistics (only loss and metrics are recorded)")
        if state is not None:
            self._layers = list(state.layers)
            if self._knobs is None:  # read once (a device fetch); afterwards only `request` changes them
                self._knobs = gs_optax.hyperparams(opt_state)
        if step % self.every == 0:
            frame = ("frame", step, None if state is None else state.stats, loss, dict(metrics or {}), dict(self._knobs or {}))
            try:
                self._queue.put_nowait(frame)
                self.published += 1
            except queue.Full:
                self.dropped += 1
        return opt_state if state is None else self._apply_pending(step, opt_state)

    def request(self, **changes: float) -> None:
        """Ask for knob changes (`learning_rate`, `clip_value`): the next `publish` applies them."""
        for key, value in changes.items():
            if key not in gs_optax.KNOBS:
                raise ValueError(f"{key}: not a knob of a monitored run; choose from {list(gs_optax.KNOBS)}")
            if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) or value < 0:
                raise ValueError(f"{key}: {value!r} is not a finite number >= 0")
        with self._lock:
            self._pending.update(changes)

    def _apply_pending(self, step, opt_state):
        with self._lock:
            pending, self._pending = self._pending, {}
        if not pending:
            return opt_state
        try:
            opt_state = gs_optax.set_hyperparams(opt_state, pending)
        except ValueError as e:  # a knob this run does not expose: told, the run goes on
            log.warning("gradscope: %s", e)
            return opt_state
        self._knobs = {**self._knobs, **{k: float(v) for k, v in pending.items()}}
        try:  # rare: worth waiting a moment for room rather than losing the line (the records' knobs show it anyway)
            self._queue.put(("set", {"step": step, "set": _plain(pending)}), timeout=1.0)
        except queue.Full:
            log.warning("gradscope: the recorder is behind; the change at step %s is applied but not written as its own line", step)
        return opt_state

    @property
    def knobs(self) -> dict[str, float]:
        """The knobs this run exposes and their values at the last publish."""
        return dict(self._knobs or {})

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until every published frame is written (True), or `timeout` seconds passed (False)."""
        done = threading.Event()
        try:
            self._queue.put(done, timeout=timeout)
        except queue.Full:
            return False
        return done.wait(timeout)

    def close(self) -> None:
        """Write what is queued and close the file. Idempotent."""
        if self._closed:
            return
        self.flush(timeout=30)
        self._closed = True
        self._queue.put(None)
        self._thread.join(timeout=30)
        if self._file is not None:
            self._file.close()
            self._file = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # -- the background thread -------------------------------------------------------------
    def _drain(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            if isinstance(item, threading.Event):
                item.set()
                continue
            try:
                rec = self._record(*item[1:]) if item[0] == "frame" else item[1]
                if rec is not None:
                    self._write(rec)
            except Exception:  # never the training loop's problem: logged, the run goes on
                log.exception("gradscope: could not record step %s", item[1])

    def _record(self, step, stats, loss, metrics, knobs) -> dict:
        rec: dict = {"step": step, "count": 1}
        if loss is not None:
            rec["loss"] = _plain(loss)
        if stats is not None:
            packed = np.asarray(stats)  # waits for this step's device work, on this thread only
            n = (packed.size - len(gs_optax.GLOBAL_STATS)) // len(gs_optax.LAYER_STATS)
            stats = gs_optax.unpack(packed, n)
            if stats["update"] == self._last_update:
                return None  # monitor(every=N): no new measurement since the last record
            self._last_update = stats["update"]
            rec.update({k: _plain(v) for k, v in stats.items()})
        probes = _drain_probes()
        if probes:
            rec["probes"] = list(probes)
            rec["delta_norm"] = _plain(np.array(list(probes.values())))
        rec.update({k: _plain(v) for k, v in metrics.items() if k not in rec})
        rec["knobs"] = knobs
        return rec

    def header(self) -> dict:
        return {"attached": {"name": self.name, "layers": self._layers or [], "knobs": self._knobs or {},
                             "layer_stats": list(gs_optax.LAYER_STATS), "global_stats": list(gs_optax.GLOBAL_STATS)},
                "backend": jax.default_backend(), "devices": [str(d) for d in jax.devices()],
                "version": _version()}

    def _write(self, rec: dict) -> None:
        if "set" not in rec:
            self.records.append(rec)
        if self.out is None or self._sink_failed:
            return
        try:
            if self._file is None:
                self.out.parent.mkdir(parents=True, exist_ok=True)
                self._file = self.out.open("w", encoding="utf-8")
                self._file.write(json.dumps(self.header()) + "\n")
            self._file.write(json.dumps(rec) + "\n")
            self._file.flush()
        except OSError as e:
            self._sink_failed = True
            log.warning("gradscope: writing %s failed (%s); the run goes on without it", self.out, e)


def _version() -> str:
    from gradscope import __version__
    return __version__


def attach(name: str = "run", out: str | Path | None = None, *, every: int = 1) -> Run:
    """Start recording a monitored run. `out`: the JSON Lines file (default `<name>.jsonl` in the
    working directory); `every`: publish every Nth step only."""
    if out is None:
        out = Path("".join(c if c.isalnum() or c in "-_." else "-" for c in name) + ".jsonl")
    return Run(name, out, every=every)
