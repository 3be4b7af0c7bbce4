"""The session: one Trainer trained on its worker thread, between the commands it is sent.

A Session composes three parts, each with a narrow interface: its `Worker` (the thread and
the command queue), its `Timeline` (events, history, rewind checkpoints, replay) and its
`Persistence` (the row, saves and appends through the store). What it needs from its owner
(settings, store, writer, compile cache, the way to reach the event loop) it is given at
construction as `Services`; it never calls the manager back.

Chunks end on multiples of K (single steps elsewhere), so a run is a pure function of its
seed and its event timeline and a fork "from the start" replays it call for call.
"""
from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass

import numpy as np

from gradscope.config import LIVE_KEYS, RESET_KEYS, Config, differing, load_config
from gradscope.engine import CompileCache, Trainer
from gradscope.families import family_of
from gradscope.records import to_wire

from .backends import Backend
from .commands import SessionCommands
from .errors import ActionError, WorkerLost, error_id
from .feed import Feed
from .hub import Frame, Hub
from .persist import Persistence
from .settings import Settings
from .store import Store, Writer
from .timeline import Timeline
from .worker import Worker

log = logging.getLogger("gradscope.server")


@dataclass(frozen=True)
class Services:
    """What the manager lends every session: `emit(hub, message)` hands a message to a hub on
    the event loop from any thread; `backend` makes its trainer (in process or on Ray: backends.py)."""

    settings: Settings
    store: Store
    writer: Writer
    cache: CompileCache
    warm: bool
    emit: Callable[[Hub, object], None]
    backend: Backend


class Session(SessionCommands):
    """A training session: config, status, step, subscribers; its worker, timeline and persistence
    (the commands its worker runs for callers are `SessionCommands`, commands.py)."""

    def __init__(self, row: dict, services: Services, *, weights: bytes | None = None,
                 replay: list | None = None, checkpoints: list | None = None):
        self.services, self.settings = services, services.settings
        self.id, self.token_hash, self.parent = row["id"], row["token_hash"], row.get("parent")
        self.client = row.get("client")      # the creator's address (a cluster's places are capped per client)
        self.config0 = load_config(row["config0"])  # (an earlier version stored every key of every model)
        self.config = load_config(row["config"])
        self.status, self.step = row["status"], int(row["step"])
        # False: an attached run, trained by its script; its rows are posted (`ingest`) to a Feed
        self.trains_here = family_of(self.config.model).trains_here
        self.timeline = Timeline(row["events"], history_bytes=self.settings.history_bytes,
                                 ring_size=self.settings.ring_size, replay=replay, stored=checkpoints)
        last = self.timeline.last_event(("diverged", "rewind", "reset"))
        self.diverged = ({"step": last.get("first_step"), "layer": last.get("layer")}
                         if self.status == "diverged" and last and last["kind"] == "diverged" else None)
        self.persistence = Persistence(self.id, services.store, services.writer, self.settings.ring_size)
        self.hub = Hub(self.settings.max_pending_steps, self.settings.max_pending_items)
        self.worker = Worker(f"gradscope-{self.id}", build=self._build, work=self._work,
                             running=lambda: self.status == "running", ready=lambda: self.tr is not None,
                             fault=self._fault, stop=self._stop, moved=self._moved)
        self._weights = weights
        self.idle_pending = False            # an idle pause is queued (the monitor asks once)
        self.last_command = time.monotonic()  # when a command was last submitted (unloading waits)
        self._last_save = self._last_boundary = self._last_flush = time.monotonic()
        self._save_job: Future | None = None
        self.tr: Trainer | None = None
        self.compiling: dict | None = None   # {"what", "since"} while a command or the run waits for a compile
        self.preview: dict | None = None     # a new run's first look (step 0) until its first trained row
        self.gate = None                     # lockstep: gate(session) -> may a chunk run now
        self.stop_at: int | None = None      # lessons: pause on reaching this step

    # -- what readers on other threads use ----------------------------------------------
    @property
    def lock(self):
        """Guards `history` and `events` against readers."""
        return self.timeline.lock

    @property
    def history(self):
        return self.timeline.history

    @property
    def events(self) -> list:
        return self.timeline.events

    def start(self) -> None:
        self.worker.start()

    def submit(self, fn, *args) -> Future:
        """Run fn(*args) on the worker thread between chunks."""
        self.last_command = time.monotonic()
        return self.worker.submit(fn, *args)

    async def call(self, fn, *args):
        return await asyncio.wrap_future(self.submit(fn, *args))

    def close(self, save: bool = True, timeout: float = 30.0) -> None:
        """Stop the worker (saving weights and history first unless `save` is False)."""
        self.services.backend.cancel(self.id)  # no longer waiting for a place on a cluster
        self.worker.close(save, timeout)

    def summary(self) -> dict:
        with self.lock:
            events, nbytes = list(self.events), self.history.nbytes
        return {"id": self.id, "config": self.config.model_dump(), "status": self.status,
                "step": self.step, "diverged": self.diverged, "events": events,
                "parent": self.parent, "viewers": self.hub.count, "history_bytes": nbytes,
                "rewind_to": self.rewind_to, "compiling": self.compiling,
                # on a cluster: where it trains, and the newest checkpoint the front holds (what a lost node resumes from)
                "node": getattr(self.tr, "node", None), "checkpoint": getattr(self.tr, "checkpoint_step", None)}

    @property
    def rewind_to(self) -> int | None:
        """The step a `rewind` goes back to: the newest checkpoint before the divergence (or
        before now); None where there is none (a run that diverged on its first step)."""
        limit = (self.diverged or {}).get("step")
        return self.timeline.rewind_to(self.step if limit is None else limit)

    # -- the worker's build, work, fault and stop ------------------------------------------
    def _build(self) -> None:
        target = self.config0 if self.timeline.replaying else self.config
        # a new run (not a fork, a replay or a session resumed from disk) gets a first look at step 0,
        # unless the server was started without (`serve --no-first-look`)
        fresh = (self.settings.first_look and self.step == 0 and self._weights is None and not self.timeline.replaying
                 and self.history.last_step is None)
        self.tr = self._new_trainer(target, on_preview=self._on_preview if fresh else None)
        self.persistence.cp_step = max(self.persistence.cp_step, self.timeline.load_stored(self.tr.load_bytes))
        if self._weights is not None:
            self._load_weights(self._weights, target)
            self._weights = None
        with self.lock:
            if self.trains_here:  # rows past the weights were trained by a run that died: it resumes before them
                self.history.truncate(self.tr.step)
            else:  # an attached script's rows are what happened: every one kept, the next ones after them
                self.tr.step = max(self.tr.step, (self.history.last_step if self.history.last_step is not None else -1) + 1)
        saved_step = self.step
        self.config, self.step = self.tr.config, self.tr.step
        if self.step < saved_step and not self.timeline.replaying:  # the server died before it could save
            self._event("recovered", detail=f"the server stopped unexpectedly: resumed from step {self.step}, "
                        f"steps {self.step}..{saved_step - 1} were lost")

    def _load_weights(self, blob: bytes, target: Config) -> None:
        """Saved weights, under the config last acknowledged (saved with every change, while
        the weights are saved every few seconds: after a crash the two can differ)."""
        self.tr.load_bytes(blob)
        saved = self.tr.config
        if differing(saved, target, RESET_KEYS):
            self.tr = self._new_trainer(target)  # the weights belong to an older shape
            self.timeline.ring.clear()
            return
        live = {k: new for k, (_, new) in differing(saved, target, LIVE_KEYS).items()}
        if live:
            self.tr.update(live)

    def _new_trainer(self, config: Config, on_preview=None) -> Trainer | Feed:
        if not self.trains_here:
            return Feed(config)
        return self.services.backend.trainer(self.id, config, on_compile=self._on_compile, on_queue=self._on_queue,
                                             on_preview=on_preview,
                                             client=self.client)

    def _work(self) -> None:
        self._train_once()
        self._housekeeping()

    def _fault(self, what: str, exc: Exception) -> str:
        """A bug met on the worker: logged under an error id, told to the session's clients as an
        `error` event (the id, not the internals), a running session paused; the worker goes on
        answering its commands. Returns the id."""
        eid = error_id()
        log.error("server fault %s: session %s: %s", eid, self.id, what, exc_info=exc)
        try:
            self._event("error", detail=f"{what}: internal server error (error id {eid}); the session goes on")
            if self.status == "running":
                self._set_status("paused", "paused", detail=what)
        except Exception:  # reporting failed too: the log has it, the worker must live on
            log.exception("session %s: reporting a fault failed", self.id)
        return eid

    def _stop(self, save: bool) -> None:
        saved = None
        if save and self.tr is not None:
            saved = self.save()
        elif not save:
            self.persistence.cancel_checkpoint()
        if self.trains_here:
            self.services.backend.release(self.id, after=saved)  # a cluster's place, once saved

    def _moved(self, lost: WorkerLost) -> None:
        """Worker: the remote worker was lost and its run resumed from the front's newest
        checkpoint (`lost.step`) on another node: later rows and checkpoints are gone; the
        page is told where it went and which steps were lost; saved at once."""
        was = self.step
        self.timeline.ring.clear()  # held by the lost worker
        self.timeline.replay_snaps.clear()
        with self.lock:
            self.history.truncate(lost.step)
        self.timeline.keep(lost.step, self.tr.snapshot())
        self.config, self.step = self.tr.config, self.tr.step
        steps = f"steps {lost.step}..{was - 1} were lost" if was > lost.step else "no step was lost"
        self._event("moved", detail=f"moved to node {lost.node}, resumed from step {lost.step}; {steps} "
                    f"(its worker was lost: {lost.why})", node=lost.node, resumed=lost.step, lost_to=was)
        self._emit({"type": "status", "status": self.status, "step": self.step,
                    "diverged": self.diverged, "rewind_to": self.rewind_to})
        self.save()

    # -- training (worker thread) -----------------------------------------------------------
    def _emit(self, msg) -> None:
        self.services.emit(self.hub, msg)

    def _on_queue(self, position: int | None) -> None:
        """Worker: this session waits for a place on the cluster (`position` 1: next), or no longer."""
        if position is None:
            self._on_compile("", "end", None)
            return
        ahead = "next in line" if position == 1 else f"{position - 1} sessions ahead"
        self.compiling = {"what": f"a place on the cluster ({ahead})", "since": time.time(), "queue": position}
        self._emit({"type": "compile", "state": "start", **self.compiling})

    def _on_compile(self, what: str, state: str, seconds: float | None) -> None:
        """Worker: the run or a command waits for a compile: every client is told at once, and
        hello and the summary say so while it lasts (the page shows "compiling <what>... N s")."""
        if state == "start":
            self.compiling = {"what": what, "since": time.time()}
            self._emit({"type": "compile", "state": "start", **self.compiling})
            return
        since = (self.compiling or {}).get("since", time.time())
        self.compiling = None
        self._emit({"type": "compile", "state": "end", "what": what, "since": since,
                    "seconds": round(float(seconds or 0.0), 3)})

    def _on_preview(self, rows: dict) -> None:
        """Worker: a new run's first look, step 0's statistics at the initial weights, while its
        training step compiles (engine.Trainer's `on_preview`): sent to every client now and to
        each that joins before the first trained row (ws.py), which replaces it. Never kept: the
        history, records and exports hold trained rows only."""
        self.preview = {"type": "preview", "what": "step 0 at the initial weights, before any update",
                        **to_wire(rows)}
        self._emit(self.preview)

    def _train_once(self) -> None:
        tr, step = self.tr, self.tr.step
        ev = self.timeline.due(step)
        if ev is not None:
            self._apply_scheduled(ev)
            return
        if self.gate is not None and not self.gate(self):
            return
        if self.stop_at is not None and step >= self.stop_at:
            self.stop_at = None
            self.set_running(False, detail=f"stopped at step {step}")
            return
        self.timeline.mark(step, tr.snapshot)
        k = tr.chunk_steps
        stops = self.timeline.stops(step) + ([self.stop_at] if self.stop_at else [])
        if step % k == 0 and all(s >= step + k for s in stops):
            self.timeline.keep(step, tr.snapshot())
            self._record(tr.run())
        else:
            self._record(tr.run(1))

    def idle_for(self) -> float:
        """Seconds without what keeps this session running: a watcher, or for an attached run its script's rows."""
        if self.trains_here or self.tr is None:
            return self.hub.idle_for()
        return self.tr.silent_for()

    def _record(self, stats: dict | None) -> None:
        if stats is None:  # an attached session's wait: no rows
            return
        self.preview = None
        with self.lock:
            self.history.append(stats)
            self.step = self.tr.step
        self.persistence.note(stats)
        if self.hub.count:
            self._emit(Frame(stats, self.tr.finished_at))
        bad = np.flatnonzero(np.asarray(stats["nonfinite"]))
        if bad.size and self.diverged is None:
            i = int(bad[0])
            layers = np.flatnonzero(np.asarray(stats["nonfinite_count"][i]))
            layer = int(layers[0]) if layers.size else None
            self.diverged = {"step": int(stats["step"][i]), "layer": layer}
            replaying = self.timeline.replaying
            self._set_status("running" if replaying else "diverged", "diverged",
                             detail=f"non-finite statistics at step {self.diverged['step']}, layer {layer}",
                             first_step=self.diverged["step"], layer=layer)
            if not replaying:
                self.save()

    def _housekeeping(self) -> None:
        now = time.monotonic()
        if now - self._last_save > self.settings.save_interval_s and (self._save_job is None or self._save_job.done()):
            # one periodic full save in flight at most: a queued one holds a copy of the history
            self._last_save = self._last_flush = now
            self._save_job = self.save()
        elif now - self._last_flush > self.settings.flush_interval_s:
            self._last_flush = now
            self.flush()
        if now - self._last_boundary > self.settings.boundary_interval_s:
            self.send_views()

    def send_views(self) -> None:
        """Worker: the decision boundary and the GAN's data plane as they are now, to every client.
        A running session sends them every `boundary_interval_s`; a paused one after each step
        taken by hand, change, reset or rewind, and when a client subscribes: a paused run's plane
        shows its generator as it is, not as it was when it was paused."""
        self._last_boundary = time.monotonic()
        if self.tr is None or not self.hub.count:
            return
        grid = self.tr.decision_grid()
        if grid is not None:
            self._emit({"type": "boundary", "step": self.step, **grid})
        plane = self.tr.data_plane()
        if plane is not None:
            self._emit({"type": "plane", "step": self.step, **plane})

    def views_on_subscribe(self) -> None:
        """Event loop: a new client of a paused, built session gets the views at once (a running
        one sends them within `boundary_interval_s`). Not a command: it keeps no session loaded."""
        if self.tr is None or self.status == "running":
            return
        try:
            self.worker.submit(self.send_views)
        except ActionError:  # closing: nothing to show
            pass

    # -- state changes and persistence (worker thread) ----------------------------------------
    def _event(self, kind: str, changes: dict | None = None, detail: str | None = None, **extra) -> dict:
        step = extra.pop("step", self.tr.step if self.tr else self.step)
        ev = self.timeline.add_event(step, kind, changes, detail, **extra)
        self._emit({"type": "event", "event": ev})
        self._write_row()
        return ev

    def _set_status(self, status: str, kind: str, detail: str | None = None, **extra) -> dict:
        self.status = status
        if status != "diverged" and kind != "diverged":
            self.diverged = None
        ev = self._event(kind, detail=detail, **extra)
        self._emit({"type": "status", "status": status, "step": self.step,
                    "diverged": self.diverged, "rewind_to": self.rewind_to})
        return ev

    def _write_row(self) -> None:
        self.persistence.write_row(self.config.model_dump(), self.status, self.step, self.timeline.events_now())

    def save(self, forget_checkpoints: bool = False) -> Future:
        """Worker: the row now; weights + the whole history through the writer thread
        (`forget_checkpoints`: after a reset, none of the stored ones is of this run)."""
        arrays = self.timeline.frozen().arrays()  # references under the lock; concatenating outside it
        self._write_row()
        return self.persistence.save(self.tr, arrays, not forget_checkpoints)

    def flush(self) -> None:
        """Worker: the rows trained since the last flush and the newest checkpoint, appended."""
        self.persistence.flush(self.tr, self.timeline.newest())
