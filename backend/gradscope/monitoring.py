"""The host side of a monitored training loop: `Run.publish`, `Remote` and `probe`.

    tx = gradscope.optax.monitor(optax.adam, learning_rate=1e-3)
    gs = gradscope.attach(name="my run", server="http://localhost:8000")  # or out="my-run.jsonl"
    for step in range(steps):
        params, opt_state, loss = train_step(params, opt_state, batch)
        opt_state = gs.publish(step, opt_state, loss=loss)

`publish` never waits for the device, the disk or the network: it hands the step's packed
statistics (a device array, not yet fetched) to a background thread and returns at once. The
thread fetches them, turns them into one record in the format of `gradscope run --out` (JSON
Lines: a header, then one record per published step), writes it, and, given a server, posts
the records to the run's session there about five times a second (`Remote`). When the thread
falls behind (a slow disk, a slow server), frames are dropped (counted in `Run.dropped`), never
queued without bound; a sink or a server that fails is logged once and the run goes on (the
records wait, bounded, and go when the server is back). Knob changes, requested with
`Run.request` from any thread or made on the page (they come back in the server's replies), are
applied to the optimizer state that `publish` returns, so they reach the next update.

This module stands on the standard library, JAX and numpy only (an import contract): it runs in
the user's process. `gradscope.attach` (attaching.py) builds a `Run` and can start a server.
"""
from __future__ import annotations

import collections
import functools
import json
import logging
import math
import queue
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from gradscope import optax as gs_optax

log = logging.getLogger("gradscope.attach")

QUEUE_FRAMES = 64      # published steps waiting for the background thread; more are dropped
RECENT_RECORDS = 1024  # records kept in memory (Run.records) for a notebook or a test
PROBE_VALUES = 256     # dL/dz norms kept per probe between two fetches
POST_EVERY_S = 0.2     # a server gets the new records about this often
POST_RECORDS = 512     # records one post carries at most (the server's limit)
OUTBOX_RECORDS = 4096  # records waiting for an unreachable server; older ones are dropped
RETRY_S = 2.0          # while the server is unreachable, a post is tried this often
HTTP_TIMEOUT_S = 5.0


# -- probes: dL/dz of an activation inside the user's model ------------------------------
_probe_lock = threading.Lock()
_probe_values: dict[str, collections.deque] = {}


def record_probe(name: str, value) -> None:
    """Keep a probe's ||dL/dz|| (a number, or a PyTorch tensor still on its device: fetched on the
    recorder's thread, so the backward pass never waits for it)."""
    with _probe_lock:
        _probe_values.setdefault(name, collections.deque(maxlen=PROBE_VALUES)).append(value)


def note_probe(name: str) -> None:
    """A probe seen in the forward pass, in order (`gradscope.torch.probe` calls it)."""
    _probe_order.setdefault(name)


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
    return {name: float(_numpy(v)) for name, v in out.items()}


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
    jax.debug.callback(functools.partial(record_probe, name), norm)
    return (g,)


probe.defvjp(_probe_fwd, _probe_bwd)


# -- records ------------------------------------------------------------------------------
def _numpy(value) -> np.ndarray:
    """A JAX array, a numpy array, a number, or a (PyTorch) tensor, on the host."""
    if hasattr(value, "detach") and hasattr(value, "cpu"):
        value = value.detach().cpu().numpy()
    return np.asarray(value)


def _plain(value):
    """JSON-able: numpy and JAX numbers to Python, NaN/Inf to None (JSON has no NaN)."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    a = _numpy(value)
    if a.ndim:
        return [_plain(v) for v in a.tolist()]
    v = a.item()
    if isinstance(v, float) and not math.isfinite(v):
        return None
    return v


class Run:
    """One monitored training run (make it with `attach`). Thread-safe `request`; `publish` from the training loop."""

    def __init__(self, name: str, out: str | Path | None = None, *, every: int = 1, queue_frames: int = QUEUE_FRAMES,
                 server: str | None = None, session: str | None = None, token: str | None = None):
        if not isinstance(every, int) or every < 1:
            raise ValueError(f"every: {every!r} must be an int >= 1 (publish every Nth step)")
        self.name = name
        self.out = None if out is None else Path(out)
        self.remote = None if server is None else Remote(self, server, session=session, token=token)
        # another library's hooks that pack the statistics (gradscope.torch.watch sets it):
        # .layers, .packed() (the latest packed array or tensor, or None), .knobs(), .apply(changes)
        self.source = None
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
    def publish(self, step: int, opt_state=None, loss=None, metrics: dict | None = None):
        """Send this step's statistics (without waiting) and return `opt_state` with the knob
        changes requested since the last call applied. `loss` and `metrics` ({name: number})
        may be device arrays or tensors: they are fetched on the background thread. A run
        watched by `gradscope.torch.watch` passes no `opt_state`: its statistics come from the
        watch's hooks, and the changes go to the optimizer's param_groups."""
        if self._closed:
            raise RuntimeError(f"run {self.name!r} is closed: attach a new one")
        step = int(step)
        if opt_state is None and self.source is not None:
            return self._publish_source(step, loss, metrics)
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

    def _publish_source(self, step: int, loss, metrics) -> None:
        """publish for a run whose statistics another library's hooks pack (`self.source`)."""
        src = self.source
        self._layers = list(src.layers)
        if self._knobs is None:
            self._knobs = src.knobs()
        if step % self.every == 0:
            frame = ("frame", step, src.packed(), loss, dict(metrics or {}), dict(self._knobs or {}))
            try:
                self._queue.put_nowait(frame)
                self.published += 1
            except queue.Full:
                self.dropped += 1
        self._apply_pending(step, None, src.apply)
        return None

    def _apply_pending(self, step, opt_state, apply=None):
        with self._lock:
            pending, self._pending = self._pending, {}
        if not pending:
            return opt_state
        try:
            if apply is not None:
                apply(pending)
            else:
                opt_state = gs_optax.set_hyperparams(opt_state, pending)
        except ValueError as e:  # a knob this run does not expose: told, the run goes on
            log.warning("gradscope: %s", e)
            return opt_state
        self._knobs = {**(self._knobs or {}), **{k: float(v) for k, v in pending.items()}}
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

    @property
    def link(self) -> str | None:
        """The run's page on the server (None without a server, or before the first post)."""
        return None if self.remote is None else self.remote.url

    # -- the background thread -------------------------------------------------------------
    def _drain(self) -> None:
        while True:
            try:
                item = self._queue.get(timeout=RETRY_S if self.remote is not None else None)
            except queue.Empty:  # a quiet loop: records still waiting for the server go now
                self._send()
                continue
            if item is None:
                self._send(done=True)
                return
            if isinstance(item, threading.Event):
                self._send(force=True)
                item.set()
                continue
            try:
                rec = self._record(*item[1:]) if item[0] == "frame" else item[1]
                if rec is not None:
                    self._write(rec)
            except Exception:  # never the training loop's problem: logged, the run goes on
                log.exception("gradscope: could not record step %s", item[1])
            self._send()

    def _send(self, force: bool = False, done: bool = False) -> None:
        if self.remote is None:
            return
        try:
            self.remote.send(force=force, done=done)
        except Exception:  # a bug in talking to the server must not end the recorder
            log.exception("gradscope: posting to %s failed", self.remote.base)

    def _record(self, step, stats, loss, metrics, knobs) -> dict:
        rec: dict = {"step": step, "count": 1}
        if loss is not None:
            rec["loss"] = _plain(loss)
        if stats is not None:
            packed = _numpy(stats)  # waits for this step's device work, on this thread only
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

    def header(self, knobs: dict | None = None) -> dict:
        """The file's first line; `knobs`: their values as of the first record (default: now). The
        header is written with the first record, on the recorder's thread: a `request` made after
        that step was published must not show in it (a busy machine wrote the header late)."""
        return {"attached": {"name": self.name, "layers": self._layers or [], "knobs": (self._knobs or {}) if knobs is None else knobs,
                             "layer_stats": list(gs_optax.LAYER_STATS), "global_stats": list(gs_optax.GLOBAL_STATS)},
                "backend": jax.default_backend(), "devices": [str(d) for d in jax.devices()],
                "version": _version()}

    def _write(self, rec: dict) -> None:
        if "set" not in rec:
            self.records.append(rec)
            if self.remote is not None:
                self.remote.add(rec)
        if self.out is None or self._sink_failed:
            return
        try:
            if self._file is None:
                self.out.parent.mkdir(parents=True, exist_ok=True)
                self._file = self.out.open("w", encoding="utf-8")
                self._file.write(json.dumps(self.header(rec.get("knobs"))) + "\n")
            self._file.write(json.dumps(rec) + "\n")
            self._file.flush()
        except OSError as e:
            self._sink_failed = True
            log.warning("gradscope: writing %s failed (%s); the run goes on without it", self.out, e)


def _version() -> str:
    from gradscope import __version__
    return __version__


# -- the server side of a run: its session, its records posted, the page's knob changes back ------
class ServerError(Exception):
    """An answer of the server other than success: its HTTP status and message."""

    def __init__(self, status: int, message: str):
        super().__init__(f"{status}: {message}")
        self.status, self.message = status, message


def http_json(method: str, url: str, body: dict | None = None, token: str | None = None,
              timeout: float = HTTP_TIMEOUT_S) -> dict:
    """One JSON request with the standard library (no client library in the user's process);
    raises ServerError for an HTTP error and OSError when the server cannot be reached."""
    data = None if body is None else json.dumps(body, allow_nan=False).encode()
    req = urllib.request.Request(url, data=data, method=method, headers={"Content-Type": "application/json"})
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            text = resp.read().decode() or "{}"
    except urllib.error.HTTPError as e:
        detail = e.read().decode(errors="replace")
        try:
            detail = json.loads(detail).get("detail", detail)
        except (ValueError, AttributeError):
            pass
        raise ServerError(e.code, detail if isinstance(detail, str) else json.dumps(detail)) from None
    return json.loads(text)


def session_config(name: str, layers: list[str], probes: list[str], knobs: dict) -> dict:
    """The config of an attached run's session: its names, and the knobs it exposes with their
    values (a value outside the page's range, such as a learning rate above 10, is not a knob there)."""
    exposed = {k: float(f"{float(v):.7g}") for k, v in knobs.items()
               if k in gs_optax.KNOBS and isinstance(v, int | float) and math.isfinite(v)
               and 0 < v <= (10.0 if k == "learning_rate" else 1e6)}
    return {"model": "attached", "run_name": (name or "run")[:200], "layers": [n[:200] for n in layers],
            "probes": [n[:200] for n in probes], "knobs": list(exposed), **exposed}


class Remote:
    """A run's session on a gradscope server, fed from the run's recorder thread.

    The session is created at the first post (`model: attached`, the run's layer and probe
    names, the knobs it exposes), or continued (`session` and its `token`). Records wait in a
    bounded outbox and go in posts of up to POST_RECORDS, about every POST_EVERY_S. A server that
    cannot be reached is told once (a warning) and tried again every RETRY_S, the records
    waiting meanwhile (the oldest dropped beyond OUTBOX_RECORDS); when it answers again, the
    run goes on in the same session (a restarted server loads it from its store) or, where the
    server no longer has it, in a new one, whose link is printed. The replies carry the knob
    changes made on the page: they go to `Run.request`, and the next `publish` applies them."""

    def __init__(self, run: Run, server: str, *, session: str | None = None, token: str | None = None):
        if (session is None) != (token is None):
            raise ValueError("session= and token= go together: the id and the owner token of a run to continue")
        self.run, self.base = run, server.rstrip("/")
        self.sid, self.token, self.url = session, token, None
        if session is not None:
            self.url = f"{self.base}/s/{session}"
        self.outbox: collections.deque = collections.deque()
        self.dropped = 0       # records dropped while the server could not be reached
        self.posted = 0        # records the server accepted
        self.down = False      # the server did not answer the last try
        self.refused = False   # the server refused the token: nothing more is sent
        self._last = 0.0
        self._next_try = 0.0

    def add(self, rec: dict) -> None:
        if len(self.outbox) >= OUTBOX_RECORDS:
            self.outbox.popleft()
            self.dropped += 1
        self.outbox.append(rec)

    def send(self, force: bool = False, done: bool = False) -> None:
        now = time.monotonic()
        if self.refused or (not self.outbox and not done) or (self.sid is None and not self.outbox):
            return
        if not (force or done) and (now < self._next_try or now - self._last < POST_EVERY_S):
            return
        self._last = now
        try:
            if self.sid is None:
                self._create()
            while True:
                batch = [self.outbox[i] for i in range(min(len(self.outbox), POST_RECORDS))]
                last = len(batch) == len(self.outbox)
                reply = http_json("POST", f"{self.base}/api/sessions/{self.sid}/rows",
                                  {"records": [self._fit(r) for r in batch], "done": done and last}, self.token)
                for _ in batch:
                    self.outbox.popleft()
                self.posted += len(batch)
                self._apply(reply.get("set") or {})
                if last:
                    break
        except ServerError as e:
            self._refused(e)
        except (OSError, ValueError) as e:  # unreachable, timed out, a reply that is not JSON
            self._next_try = now + RETRY_S
            if not self.down:
                log.warning("gradscope: the server at %s does not answer (%s); the run goes on and its records "
                            "wait for it (retried every %g s)", self.base, e, RETRY_S)
            self.down = True
            return
        if self.down:
            log.warning("gradscope: the server at %s answers again; the run goes on at %s", self.base, self.url)
            self.down = False

    def _create(self) -> None:
        first = self.outbox[0]
        self.probes = list(first.get("probes") or [])
        config = session_config(self.run.name, self.run._layers or [], self.probes, self.run.knobs)
        created = http_json("POST", f"{self.base}/api/sessions", config)
        self.sid, self.token, self.url = created["id"], created["token"], created.get("url") or f"{self.base}/s/{created['id']}"
        print(f"gradscope: {self.run.name!r} is live at {self.url} (share this link: viewers watch)\n"
              f"gradscope: to change its knobs from the page, open {self.owner_url} (keep this one to yourself)",
              file=sys.stderr, flush=True)

    @property
    def owner_url(self) -> str | None:
        """The page with the owner token in its fragment (never sent to a server, dropped from the address bar)."""
        return None if self.url is None else f"{self.url}#token={self.token}"

    def _fit(self, rec: dict) -> dict:
        """A record for the session: its probes' deltas in the session's probe order."""
        probes = rec.get("probes")
        if probes is None or probes == getattr(self, "probes", probes):
            return rec
        by_name = dict(zip(probes, rec.get("delta_norm") or [], strict=False))
        return {**rec, "probes": self.probes, "delta_norm": [by_name.get(p) for p in self.probes]}

    def _apply(self, changes: dict) -> None:
        if not changes:
            return
        try:
            self.run.request(**changes)
        except ValueError as e:
            log.warning("gradscope: the page asked for %s, which this run cannot take (%s)", changes, e)
            return
        log.warning("gradscope: the page changed %s; applied at the next publish",
                    ", ".join(f"{k} to {v:g}" for k, v in changes.items()))

    def _refused(self, e: ServerError) -> None:
        if e.status == 404:  # the server no longer has the session (a new store): a new one at the next post
            log.warning("gradscope: %s no longer has session %s; the run goes on in a new one", self.base, self.sid)
            self.sid = self.token = None
        elif e.status in (401, 403):
            self.refused = True
            log.warning("gradscope: %s refused the run's token (%s); nothing more is sent", self.base, e.message)
        elif e.status == 422:  # records the session cannot take: dropped, not retried forever
            log.warning("gradscope: %s refused records (%s); %d dropped", self.base, e.message, len(self.outbox))
            self.dropped += len(self.outbox)
            self.outbox.clear()
        else:
            self._next_try = time.monotonic() + RETRY_S
            if not self.down:
                log.warning("gradscope: the server at %s answered %s; retrying every %g s", self.base, e, RETRY_S)
            self.down = True
