"""Sessions on a Ray cluster (`gradscope serve --ray auto|ADDRESS`, the `[ray]` extra).

The front (this process: FastAPI, the WebSocket hubs, tokens, limits, the SQLite store and
each session's timeline) stays what users talk to. Each session's Trainer lives in a Ray
actor that reserves `ray_cpus` CPUs, placed across the nodes (`SPREAD`); its worker thread on
the front drives it through a `RemoteTrainer`, which has the Trainer's interface: every call
is one actor method call, and `run` returns the chunk's statistics rows (numpy arrays, one
transfer per chunk) for the front to record and fan out as it does in process.

Checkpoints: the actor holds the snapshots the front refers to (the rewind ring, replay
marks) and drops each once the front lets go of it; every second the session's flush pulls
the newest one's bytes to the front, which stores them and keeps the last in memory. When an
actor dies (its node lost, out of memory, killed), Ray restarts it (`max_restarts`), on
another node where its own is gone; the proxy loads the front's newest checkpoint into it,
re-applies the knobs changed since, and raises `WorkerLost` so the session records the move
("moved to node X, resumed from step N; steps N..M were lost").

Admission: at most `ray_slots` sessions hold an actor (default: the cluster's CPUs over
`ray_cpus`, read again as nodes come and go). Beyond, a session's build waits in a FIFO
queue and the page is told its place; a slot frees when a session closes (deleted, or saved
out of memory after `unload_idle_s`).
"""
from __future__ import annotations

import itertools
import logging
import os
import threading
import time
import traceback
import weakref
from collections import OrderedDict, deque
from collections.abc import Callable
from pathlib import Path

import jax
import ray
from ray.exceptions import ActorUnavailableError, GetTimeoutError, RayActorError

from gradscope.config import LIVE_KEYS, Config, ConfigError, differing, load_config
from gradscope.engine import GRID, CompileCache, Trainer, enable_persistent_cache
from gradscope.engine.trainer import SnapshotError

from .errors import ActionError, WorkerLost
from .settings import Settings

log = logging.getLogger("gradscope.server")

POLL_S = 0.25            # while a call runs longer, the proxy asks the actor whether it compiles
MAX_SNAPS = 64           # snapshots an actor holds at most (the front refers to ~10: the ring and marks)
ACTOR_CACHE_ENTRIES = 8  # compiled programs per actor (one session's shapes: the current and a few switches)


class _TrainerActor:
    """One session's Trainer, on whichever node Ray placed it (made a Ray actor by `RayBackend`).

    Built empty: `build` or `recover` gives it its run, so that a restart by Ray (which runs
    this constructor again) is seen by the next call (`lost`) and given the front's checkpoint.
    Methods answer ("ok", value, step, config, K), ("lost",), ("config", [errors]), ("snapshot",
    message), ("action", message) or ("bug", traceback): the front re-raises what it knows."""

    def __init__(self, chunk_steps: int | None, stats_every: int | None, disk_cache: str | None):
        if disk_cache:  # the front's on-disk compile cache: on its machine, the actors there compile a shape once
            enable_persistent_cache(disk_cache)
        self._opts = {"chunk_steps": chunk_steps, "stats_every": stats_every}
        self._cache = CompileCache(background=True, max_entries=ACTOR_CACHE_ENTRIES)
        self.tr: Trainer | None = None
        self.snaps: OrderedDict[int, tuple] = OrderedDict()  # the front's ids -> snapshots
        self.compiling: dict | None = None
        self._sent = None  # the config the front last got

    @staticmethod
    def where() -> dict:
        ctx = ray.get_runtime_context()
        return {"node": ctx.get_node_id(), "ip": ray.util.get_node_ip_address(), "pid": os.getpid()}

    def waiting(self) -> dict | None:
        """The compile this actor waits for now ({what, since}), else None (asked concurrently)."""
        return self.compiling

    def _told(self, what: str, state: str, seconds: float | None) -> None:
        self.compiling = {"what": what, "since": time.time()} if state == "start" else None

    def call(self, name: str, args: tuple, drops: list[int], mirror: bool = True):
        """Run `_name(*args)` (see the class's docstring for the answers). `mirror`: a call of the
        session's worker, which mirrors the step and config; the writer thread's (`to_bytes`,
        concurrent with the worker's: `max_concurrency`) must not take the config it would
        otherwise have been sent, or the worker's next answer says "unchanged" and its mirror
        stays behind (found by the state machine on Ray: a rewind lost the optimizer reapplied)."""
        for i in drops:
            self.snaps.pop(i, None)
        if self.tr is None and name not in ("build", "recover"):
            return ("lost",)
        try:
            value = getattr(self, "_" + name)(*args)
        except ConfigError as exc:
            return ("config", exc.as_dicts())
        except SnapshotError as exc:
            return ("snapshot", str(exc))
        except KeyError as exc:  # a snapshot id it no longer holds
            return ("action", f"that checkpoint is no longer held ({exc})")
        except Exception:
            return ("bug", traceback.format_exc())
        # the config only when it changed, as a dict: a Config instance travels with its (generated)
        # class by value, which cost the front ~25% of its CPU in unpickling on every chunk
        config = self.tr.config
        if not mirror:
            return ("ok", value, self.tr.step, None, self.tr.chunk_steps)
        sent, self._sent = self._sent, config
        # K too: a build (or rebuild, for another shape) calibrates it, and the front's grid of chunks follows it
        return ("ok", value, self.tr.step, None if config is sent else config.model_dump(), self.tr.chunk_steps)

    # -- what `call` runs -------------------------------------------------------------------
    def _build(self, config: dict) -> dict:
        self.snaps.clear()
        self._sent = None
        self.tr = Trainer(load_config(config), cache=self._cache, warm=True, on_compile=self._told, **self._opts)
        return self.where()

    def _recover(self, config: dict, blob: bytes | None) -> dict:
        where = self._build(config)
        if blob is not None:
            self.tr.load_bytes(blob)
        return where

    def _run(self, steps: int | None, keep: int):
        """Train, then keep the state reached as snapshot `keep`: the front's next `snapshot()`
        (the rewind ring's, before the next chunk) is then answered without a call."""
        rows = self.tr.run(steps)
        self._keep(keep, self.tr.snapshot())
        return rows, self.tr.finished_at  # (the time the node measured them: a frame's age is told from it)

    def _update(self, changes: dict) -> dict:
        return self.tr.update(changes)

    def _reset(self) -> None:
        self.tr.reset()

    def _keep(self, sid: int, snap) -> None:
        self.snaps[sid] = snap
        while len(self.snaps) > MAX_SNAPS:
            self.snaps.popitem(last=False)

    def _snapshot(self, sid: int) -> None:
        self._keep(sid, self.tr.snapshot())

    def _restore(self, sid: int) -> None:
        self.tr.restore(self.snaps[sid])

    def _to_bytes(self, sid: int | None) -> bytes:
        return self.tr.to_bytes(None if sid is None else self.snaps[sid])

    def _load_bytes(self, blob: bytes, sid: int) -> None:
        self._keep(sid, self.tr.load_bytes(blob))

    def _decision_grid(self, n: int, wait: bool):
        return self.tr.decision_grid(n, wait)

    def _data_plane(self):
        return self.tr.data_plane()


class RemoteSnap:
    """A checkpoint held by an actor: its id there, the step, and the actor's life and the
    run's lineage it belongs to. The actor drops it once the front lets go of this object."""

    __slots__ = ("id", "step", "life", "lineage", "__weakref__")

    def __init__(self, sid: int, step: int, life: int, lineage: int):
        self.id, self.step, self.life, self.lineage = sid, step, life, lineage


class RemoteTrainer:
    """The Trainer interface, over one session's actor (see the module's docstring)."""

    def __init__(self, backend: RayBackend, sid: str, config: Config, on_compile: Callable):
        self.backend, self.sid, self.on_compile = backend, sid, on_compile
        self.config, self.step = config, 0
        self.finished_at: float | None = None  # when the actor's last `run` ended, by the node's clock
        self._drops: list[int] = []
        self._drop_lock = threading.Lock()
        self._ids = itertools.count(1)   # snapshot ids on the actor, chosen here
        self._after: RemoteSnap | None = None  # the state the last `run` reached, kept by the actor
        self.life = 0            # +1 each time the actor is lost and recovered
        self.lineage = 0         # +1 each time the run's state is replaced (reset, restore, load)
        self.last: tuple[int, int, bytes] | None = None  # (lineage, step, blob): the newest checkpoint the front holds
        self.where: dict = {}
        self.actor = backend.new_actor(sid)
        try:
            self.where = self._call("build", config.model_dump())  # (its answer sets chunk_steps)
        except BaseException:  # a config the trainer refuses: the actor goes, the error to the caller
            self.close()
            raise

    @property
    def node(self) -> str:
        return _short(self.where)

    @property
    def checkpoint_step(self) -> int | None:
        """The step of the newest checkpoint the front holds (a lost worker resumes there)."""
        last = self.last
        return last[1] if last is not None and last[0] == self.lineage else None

    # -- the calls ----------------------------------------------------------------------------
    def _call(self, name: str, *args, worker: bool = True):
        """Call the actor's `name`. `worker`: from the session's worker thread, which alone
        mirrors the step and config and recovers a lost actor (the writer thread's `to_bytes`
        does neither: it gives up on that checkpoint with WorkerLost)."""
        with self._drop_lock:
            drops, self._drops = self._drops, []
        ref = self.actor.call.remote(name, args, drops, worker)
        try:
            answer = self._wait(ref) if worker else ray.get(ref)
        except RayActorError as exc:
            if not worker:
                raise WorkerLost(self.step, self.node, _why(exc)) from None
            self._recover(_why(exc))  # raises WorkerLost once the run is back
        if answer[0] == "lost":
            if not worker:
                raise WorkerLost(self.step, self.node, "its process was restarted")
            self._recover("its process was restarted")  # Ray restarted the actor between two calls
        return self._value(answer, mirror=worker)

    def _value(self, answer, mirror: bool = True):
        kind = answer[0]
        if kind == "ok":
            if mirror:
                self.step, self.chunk_steps = answer[2], answer[4]
                if answer[3] is not None:
                    self.config = load_config(answer[3])
            return answer[1]
        if kind == "config":
            raise ConfigError.of([ConfigError(e["field"], e["message"], e["choices"]) for e in answer[1]])
        if kind == "snapshot":
            raise SnapshotError(answer[1])
        if kind == "action":
            raise ActionError(answer[1])
        raise RuntimeError(f"the session's remote trainer failed:\n{answer[1]}")

    def _wait(self, ref):
        """The call's answer; while it takes longer than POLL_S the actor is asked whether it
        compiles, and the session told ("compiling ..." on the page, as in process). (`ray.get`
        with a timeout: `ray.wait` then `ray.get` cost the front twice as much per chunk.)"""
        try:
            return ray.get(ref, timeout=POLL_S)
        except GetTimeoutError:
            pass
        shown = None
        try:
            while True:
                try:
                    now = ray.get(self.actor.waiting.remote(), timeout=5.0)
                except (GetTimeoutError, RayActorError):
                    now = None
                if (now or {}).get("what") != (shown or {}).get("what"):
                    if shown is not None:
                        self.on_compile(shown["what"], "end", time.time() - shown["since"])
                    if now is not None:
                        self.on_compile(now["what"], "start", None)
                    shown = now
                try:
                    return ray.get(ref, timeout=POLL_S)
                except GetTimeoutError:
                    continue
        finally:
            if shown is not None:
                self.on_compile(shown["what"], "end", time.time() - shown["since"])

    def _recover(self, why: str) -> None:
        """The actor died: wait for Ray to restart it (or make a new one once its restarts are
        spent), load the newest checkpoint the front holds (the run's start where there is none),
        re-apply the live knobs changed since; then tell the session (WorkerLost)."""
        config = self.config
        lineage_ok = self.last is not None and self.last[0] == self.lineage
        blob = self.last[2] if lineage_ok else None
        deadline = time.monotonic() + self.backend.settings.ray_restart_timeout_s
        while True:
            try:
                answer = ray.get(self.actor.call.remote("recover", (config.model_dump(), blob), []),
                                 timeout=max(1.0, deadline - time.monotonic()))
                break
            except RayActorError as exc:
                if time.monotonic() > deadline:
                    raise ActionError(f"this session's worker was lost ({_why(exc)}) and is not back yet; "
                                      "try again", status=503) from None
                if not isinstance(exc, ActorUnavailableError):  # its restarts are spent: a new actor
                    self.actor = self.backend.new_actor(self.sid)
                time.sleep(0.5)  # Ray restarts it where there is room
            except GetTimeoutError:
                raise ActionError("this session's worker was lost and the cluster has no room to start it "
                                  "again yet; try again", status=503) from None
        self.where = self._value(answer)
        self._after = None
        self.life += 1
        self.lineage += 1
        later = {k: new for k, (_, new) in differing(self.config, config, LIVE_KEYS).items()}
        if later:
            self._value(ray.get(self.actor.call.remote("update", (later,), [])))
        self.last = (self.lineage, self.step, blob) if blob is not None else None
        log.warning("session %s: worker lost (%s); resumed from step %d on node %s", self.sid, why, self.step, self.node)
        raise WorkerLost(self.step, self.node, why)

    def _snap(self, sid: int) -> RemoteSnap:
        snap = RemoteSnap(sid, self.step, self.life, self.lineage)
        weakref.finalize(snap, self._drop, sid, self.life)
        return snap

    # -- the Trainer's interface -----------------------------------------------------------------
    def run(self, steps: int | None = None) -> dict:
        keep = next(self._ids)
        self._after = None
        rows, self.finished_at = self._call("run", steps, keep)
        self._after = self._snap(keep)
        return rows

    def update(self, changes: dict) -> dict:
        self._after = None  # (a live change is part of the config a snapshot holds)
        out = self._call("update", changes)
        if out["kind"] == "reset":
            self.lineage += 1
            self.last = None
        return out

    def reset(self) -> None:
        self._after = None
        self._call("reset")
        self.lineage += 1
        self.last = None

    def snapshot(self) -> RemoteSnap:
        if self._after is not None and self._after.life == self.life:  # nothing changed since the last chunk
            return self._after
        sid = next(self._ids)
        self._call("snapshot", sid)
        return self._snap(sid)

    def _drop(self, sid: int, life: int) -> None:
        if life == self.life:  # the next call tells the actor it may forget it
            with self._drop_lock:
                self._drops.append(sid)

    def _held(self, snap) -> int:
        if not isinstance(snap, RemoteSnap) or snap.life != self.life:
            raise ActionError("that checkpoint was held by a worker that was lost", status=409)
        return snap.id

    def restore(self, snap: RemoteSnap) -> None:
        self._after = None
        self._call("restore", self._held(snap))
        self.lineage += 1  # (the checkpoint held before belongs to the run past this point)
        # the restored state is the one a lost worker comes back to: to the front at once
        self.last = (self.lineage, self.step, self._call("to_bytes", None))

    def to_bytes(self, snap: RemoteSnap | None = None) -> bytes:
        """Bytes of the current state or of a snapshot (the writer thread's checkpoints: each one
        the newest the front holds, which a lost worker comes back to)."""
        if snap is None:
            return self._call("to_bytes", None, worker=False)
        blob = self._call("to_bytes", self._held(snap), worker=False)
        if snap.lineage == self.lineage and (self.last is None or self.last[1] <= snap.step):
            self.last = (snap.lineage, snap.step, blob)
        return blob

    def load_bytes(self, blob: bytes) -> RemoteSnap:
        self._after = None
        sid = next(self._ids)
        self._call("load_bytes", blob, sid)
        self.lineage += 1
        self.last = (self.lineage, self.step, blob)
        return self._snap(sid)

    def rebuild(self, config: Config) -> None:
        """A new run for the same session (another shape): the same actor, built again."""
        self._after = None
        self.where = self._call("build", config.model_dump())
        self.lineage += 1
        self.last = None

    def decision_grid(self, n: int = GRID, wait: bool = False):
        return self._call("decision_grid", n, wait)

    def data_plane(self):
        return self._call("data_plane")

    def close(self) -> None:
        try:
            ray.kill(self.actor, no_restart=True)
        except Exception:  # already gone with its node
            log.info("session %s: its actor was already gone", self.sid)


def _why(exc: Exception) -> str:
    text = str(exc).strip().splitlines()
    return (text[0] if text else type(exc).__name__)[:200]


def _short(where: dict) -> str:
    node = where.get("node") or "?"
    return f"{node[:8]} ({where.get('ip', '?')})"


class RayBackend:
    """Sessions' trainers as actors of a Ray cluster, with a FIFO queue for the places on it."""

    name = "ray"

    def __init__(self, settings: Settings):
        self.settings = settings
        if not ray.is_initialized():
            package = str(Path(__file__).resolve().parents[2])  # the actors import this very gradscope
            path = os.pathsep.join(p for p in (package, os.environ.get("PYTHONPATH", "")) if p)
            ray.init(address=settings.ray_address, namespace="gradscope", log_to_driver=False,
                     runtime_env={"env_vars": {"PYTHONPATH": path}})
        self._actor_class = ray.remote(_TrainerActor)
        self._cv = threading.Condition()
        self._queue: deque[str] = deque()   # sessions waiting for a place, first first
        self._held: dict[str, RemoteTrainer | None] = {}  # sessions holding a place -> their trainer
        self._cancelled: set[str] = set()
        self._clients: dict[str, str | None] = {}  # session -> its client address (per-client caps)

    # -- places --------------------------------------------------------------------------------
    def slots(self) -> int:
        if self.settings.ray_slots is not None:
            return self.settings.ray_slots
        cpus = ray.cluster_resources().get("CPU", 0.0)
        return max(1, int(cpus // self.settings.ray_cpus))

    def position(self, sid: str) -> int | None:
        """1 for the next to start; None when not waiting."""
        with self._cv:
            return self._queue.index(sid) + 1 if sid in self._queue else None

    def _next(self) -> str | None:
        """Under `_cv`: the first queued session whose client is under its cap of places."""
        cap = self.settings.ray_slots_per_client
        if cap is None:
            return self._queue[0] if self._queue else None
        held = [self._clients.get(s) for s in self._held]
        return next((q for q in self._queue if self._clients.get(q) is None or held.count(self._clients[q]) < cap), None)

    def _admit(self, sid: str, client: str | None, on_queue: Callable) -> None:
        """Block until `sid` holds a place (FIFO, skipping sessions whose client holds its cap);
        `on_queue(position | None)` as it changes."""
        with self._cv:
            if sid in self._held:
                return
            self._queue.append(sid)
            self._clients[sid] = client
            told = None
            try:
                while True:
                    if sid in self._cancelled:
                        raise ActionError("this session was closed while it waited for a place", status=410)
                    if self._next() == sid and len(self._held) < self.slots():
                        self._held[sid] = None  # a place held from here (its trainer is being built)
                        break
                    place = self._queue.index(sid) + 1
                    if place != told:
                        told = place
                        on_queue(place)
                    self._cv.wait(1.0)  # a place freed, or nodes joined: look again
            finally:
                self._queue.remove(sid)
                self._cancelled.discard(sid)
                if sid not in self._held:
                    self._clients.pop(sid, None)
                self._cv.notify_all()
        if told is not None:
            on_queue(None)

    def new_actor(self, sid: str):
        s = self.settings
        return self._actor_class.options(
            num_cpus=s.ray_cpus, scheduling_strategy="SPREAD", max_restarts=s.ray_max_restarts,
            max_concurrency=4,  # `waiting` and the writer's `to_bytes` answer while `run` trains
        ).remote(s.chunk_steps, s.stats_every, jax.config.jax_compilation_cache_dir)

    # -- what a session asks -------------------------------------------------------------------------
    def trainer(self, sid: str, config: Config, *, on_compile: Callable, on_queue: Callable,
                client: str | None = None, on_preview: Callable | None = None) -> RemoteTrainer:
        """(`on_preview`: not on a cluster. An actor's first build waits for a place and a node's
        cache; its first trained row is what the page shows first.)"""
        existing = self._held.get(sid)
        if existing is not None:  # the same session, another shape: its actor builds again
            existing.rebuild(config)
            return existing
        self._admit(sid, client, on_queue)
        try:
            tr = RemoteTrainer(self, sid, config, on_compile)
        except BaseException:
            self.release(sid)
            raise
        with self._cv:
            self._held[sid] = tr
        return tr

    def cancel(self, sid: str) -> None:
        with self._cv:
            if sid in self._queue:
                self._cancelled.add(sid)
                self._cv.notify_all()

    def release(self, sid: str, after=None) -> None:
        """`sid` closed: its place freed and its actor ended, once `after` (its last save, which
        pulls the weights from the actor) is done."""
        if after is not None:
            try:
                after.result(timeout=60)
            except Exception:  # the save logged its failure; the actor ends regardless
                log.warning("session %s: its last save before leaving the cluster failed", sid)
        with self._cv:
            tr = self._held.pop(sid, None)
            self._clients.pop(sid, None)
            self._cv.notify_all()
        if tr is not None:
            tr.close()

    def meta(self) -> dict:
        nodes = [n for n in ray.nodes() if n.get("Alive")]
        return {"name": self.name, "nodes": len(nodes), "slots": self.slots(),
                "held": len(self._held), "queued": len(self._queue)}

    def close(self) -> None:
        for sid in list(self._held):
            self.release(sid)
