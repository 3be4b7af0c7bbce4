"""The session runtime: one worker thread owns one Trainer and trains between commands.

Everything that touches the Trainer runs on the worker thread, as a command drained
before each chunk; the event loop submits commands and awaits their futures. Chunks end
on multiples of K (single steps elsewhere), so a run is a pure function of its seed and
its event timeline and a fork "from the start" replays it call for call.
"""
from __future__ import annotations

import asyncio
import logging
import queue
import secrets
import threading
import time
from collections import deque
from concurrent.futures import Future

import numpy as np

from gradscope.config import LIVE_KEYS, Config, ConfigError, parse_changes
from gradscope.engine import Trainer

from .history import History
from .hub import Frame, Hub
from .persist import Persistence

log = logging.getLogger("gradscope.server")
REPLAYED = ("change", "reset", "rewind")


class ActionError(Exception):
    """A command that cannot be carried out now; becomes an `error` message / 4xx."""

    def __init__(self, message: str, field: str = "action", choices: list | None = None, status: int = 409):
        super().__init__(message)
        self.field, self.message, self.choices, self.status = field, message, choices, status

    def as_dict(self) -> dict:
        return {"field": self.field, "message": self.message, "choices": self.choices}


def _answer(fut: Future, result=None, exc: BaseException | None = None) -> None:
    """Settle a command's future; one nobody waits for any more (cancelled) is left as it is."""
    if fut.done():
        return
    if exc is not None:
        fut.set_exception(exc)
    else:
        fut.set_result(result)


def fork_event(events: list, step: int, source: str, start: str) -> dict:
    """The event a fork's timeline gets first: where it came from."""
    return {"seq": len(events), "step": step, "kind": "fork", "changes": {}, "time": time.time(),
            "detail": f"forked from {source} ({start})", "source": source, "start": start}


class Session(Persistence):
    """A training session: config, status, event timeline, history, subscribers, worker."""

    def __init__(self, manager, row: dict, *, weights: bytes | None = None, replay: list | None = None,
                 checkpoints: list | None = None):
        self.manager, self.settings = manager, manager.settings
        self.id, self.token_hash, self.parent = row["id"], row["token_hash"], row.get("parent")
        self.config0 = Config.model_validate(row["config0"])
        self.config = Config.model_validate(row["config"])
        self.status, self.step, self.events = row["status"], int(row["step"]), list(row["events"])
        last = next((e for e in reversed(self.events) if e["kind"] in ("diverged", "rewind", "reset")), None)
        self.diverged = ({"step": last.get("first_step"), "layer": last.get("layer")}
                         if self.status == "diverged" and last and last["kind"] == "diverged" else None)
        self.history = History(self.settings.history_bytes)
        self.hub = Hub(self.settings.max_pending_steps, self.settings.max_pending_items)
        self.lock = threading.Lock()         # guards history and events against readers
        self._weights = weights
        self._schedule = deque(e for e in (replay or []) if e["kind"] in REPLAYED)
        self._targets = {e["to_step"] for e in self._schedule if e["kind"] == "rewind"}
        self._replay_snaps: dict = {}
        self._ring: deque = deque(maxlen=self.settings.ring_size)
        self._commands: queue.Queue = queue.Queue()
        self._thread: threading.Thread | None = None
        self._closing = False
        self._accepting = True               # False once the worker answered its last command
        self._submit_lock = threading.Lock()
        self.idle_pending = False            # an idle pause is queued (the monitor asks once)
        self.last_command = time.monotonic()  # when a command was last submitted (unloading waits)
        self._last_save = self._last_boundary = self._last_flush = time.monotonic()
        self._checkpoints = list(checkpoints or [])   # (step, blob) persisted: the ring after a restart
        self._unsaved: list[dict] = []       # stats chunks not yet handed to the writer
        self._cp_step = -1                   # the newest checkpoint handed to the writer
        self._cp_job: Future | None = None
        self._flush_job: Future | None = None
        self._save_job: Future | None = None
        self.tr: Trainer | None = None
        self.compiling: dict | None = None   # {"what", "since"} while a command or the run waits for a compile
        self.gate = None                     # compare lockstep: gate(session) -> may a chunk run now
        self.stop_at: int | None = None      # lessons: pause on reaching this step

    # -- event-loop side -------------------------------------------------------------
    def start(self) -> None:
        if self._thread is None and not self._closing:
            self._thread = threading.Thread(target=self._main, name=f"gradscope-{self.id}", daemon=True)
            self._thread.start()

    def submit(self, fn, *args) -> Future:
        """Run fn(*args) on the worker thread between chunks."""
        self.start()
        self.last_command = time.monotonic()
        fut: Future = Future()
        with self._submit_lock:  # against the worker's last drain: queued means answered
            if self._accepting and not self._closing:
                self._commands.put((fn, args, fut))
                return fut
        fut.set_exception(ActionError("this session is closed", status=410))
        return fut

    async def call(self, fn, *args):
        return await asyncio.wrap_future(self.submit(fn, *args))

    def close(self, save: bool = True, timeout: float = 30.0) -> None:
        """Stop the worker (saving weights and history first unless `save` is False)."""
        if self._thread is None:
            with self._submit_lock:  # never started: it never will be
                self._closing, self._accepting = True, False
            return
        self._commands.put((self._stop, (save,), Future()))
        self._thread.join(timeout)

    def summary(self) -> dict:
        with self.lock:
            events, nbytes = list(self.events), self.history.nbytes
        return {"id": self.id, "config": self.config.model_dump(), "status": self.status,
                "step": self.step, "diverged": self.diverged, "events": events,
                "parent": self.parent, "viewers": self.hub.count, "history_bytes": nbytes,
                "rewind_to": self.rewind_to, "compiling": self.compiling}

    @property
    def rewind_to(self) -> int | None:
        """The step a `rewind` goes back to: the newest checkpoint before the divergence (or
        before now); None where there is none (a run that diverged on its first step)."""
        limit = (self.diverged or {}).get("step")
        limit = self.step if limit is None else limit
        # the ring, or before the trainer is built (a session loaded from disk) the stored checkpoints
        found = sorted(step for step, _ in list(self._ring) + list(self._checkpoints) if step < limit)
        return found[-1] if found else None

    # -- worker thread -----------------------------------------------------------------
    def _main(self) -> None:
        try:
            self._build()
        except Exception as exc:  # a failed build leaves a paused session that reports why
            self._fault("failed to start", exc)
        while not self._closing:
            try:
                self._drain(block=self.status != "running" or self.tr is None)
                if self._closing or self.status != "running" or self.tr is None:
                    continue
                self._train_once()
                self._housekeeping()
            except Exception as exc:  # nothing a client or a run does may end this thread
                self._fault("training failed" if self.status == "running" else "a command failed", exc)
        with self._submit_lock:  # nobody will run these any more; nothing can be queued after
            self._accepting = False
            while not self._commands.empty():
                _answer(self._commands.get_nowait()[2], exc=ActionError("this session is closed", status=410))

    def _fault(self, what: str, exc: Exception) -> str:
        """A bug met on the worker: logged under an error id, told to the session's clients as an
        `error` event (the id, not the internals), a running session paused; the worker goes on
        answering its commands. Returns the id."""
        eid = secrets.token_hex(6)
        log.error("server fault %s: session %s: %s", eid, self.id, what, exc_info=exc)
        try:
            self._event("error", detail=f"{what}: internal server error (error id {eid}); the session goes on")
            if self.status == "running":
                self._set_status("paused", "paused", detail=what)
        except Exception:  # reporting failed too: the log has it, the worker must live on
            log.exception("session %s: reporting a fault failed", self.id)
        return eid

    def _build(self) -> None:
        target = self.config0 if self._schedule else self.config
        self.tr = self._new_trainer(target)
        for step, blob in self._checkpoints:  # the persisted rewind checkpoints, oldest first
            self._ring.append((step, self.tr.load_bytes(blob)))
            self._cp_step = step
        self._checkpoints = []
        if self._weights is not None:
            self._load_weights(self._weights, target)
            self._weights = None
        with self.lock:  # rows past the weights were trained by a run that died: it resumes before them
            self.history.truncate(self.tr.step)
        saved_step = self.step
        self.config, self.step = self.tr.config, self.tr.step
        if self.step < saved_step and not self._schedule:  # the server died before it could save
            self._event("recovered", detail=f"the server stopped unexpectedly: resumed from step {self.step}, "
                        f"steps {self.step}..{saved_step - 1} were lost")

    def _drain(self, block: bool) -> None:
        try:
            item = self._commands.get(block=block)
        except queue.Empty:
            return
        while True:
            fn, args, fut = item
            # False: the caller went away (a socket closed, a request cancelled) before it ran: dropped
            if fut.set_running_or_notify_cancel():
                try:
                    if self.tr is None and fn is not self._stop:
                        raise ActionError("this session could not start its trainer", status=409)
                    result = fn(*args)
                except (ActionError, ConfigError) as exc:
                    _answer(fut, exc=exc)
                except Exception as exc:  # a bug: logged and an `error` event here, its id to the caller
                    eid = self._fault(f"{getattr(fn, '__name__', 'a command')} failed", exc)
                    _answer(fut, exc=ActionError(f"internal server error (error id {eid})", field="message", status=500))
                else:
                    _answer(fut, result)
            try:
                item = self._commands.get_nowait()
            except queue.Empty:
                return

    def _stop(self, save: bool) -> None:
        self._closing = True
        if save and self.tr is not None:
            self.save()
        elif not save and self._cp_job is not None:
            self._cp_job.cancel()

    def _new_trainer(self, config: Config) -> Trainer:
        return Trainer(config, chunk_steps=self.settings.chunk_steps, stats_every=self.settings.stats_every,
                       cache=self.manager.cache, warm=self.manager.warm, on_compile=self._on_compile)

    def _on_compile(self, what: str, state: str, seconds: float | None) -> None:
        """Worker: the run or a command waits for a compile: every client is told at once, and
        hello and the summary say so while it lasts (the page shows "compiling <what>... N s")."""
        if state == "start":
            self.compiling = {"what": what, "since": time.time()}
            self.manager.emit(self.hub, {"type": "compile", "state": "start", **self.compiling})
            return
        since = (self.compiling or {}).get("since", time.time())
        self.compiling = None
        self.manager.emit(self.hub, {"type": "compile", "state": "end", "what": what, "since": since,
                                     "seconds": round(float(seconds or 0.0), 3)})

    def _train_once(self) -> None:
        tr, step = self.tr, self.tr.step
        if self._schedule and self._schedule[0]["step"] <= step:
            self._apply_scheduled(self._schedule.popleft())
            return
        if self.gate is not None and not self.gate(self):
            return
        if self.stop_at is not None and step >= self.stop_at:
            self.stop_at = None
            self.set_running(False, detail=f"stopped at step {step}")
            return
        if step in self._targets:
            self._replay_snaps[step] = tr.snapshot()
        k = tr.chunk_steps
        stops = [e for e in ([self._schedule[0]["step"]] if self._schedule else [])
                 + [t for t in self._targets if t > step] + ([self.stop_at] if self.stop_at else [])]
        if step % k == 0 and all(s >= step + k for s in stops):
            self._ring.append((step, tr.snapshot()))
            self._record(tr.run())
        else:
            self._record(tr.run(1))

    def _record(self, stats: dict) -> None:
        with self.lock:
            self.history.append(stats)
            self.step = self.tr.step
        self._unsaved.append(stats)
        if self.hub.count:
            self.manager.emit(self.hub, Frame(stats))
        bad = np.flatnonzero(np.asarray(stats["nonfinite"]))
        if bad.size and self.diverged is None:
            i = int(bad[0])
            layers = np.flatnonzero(np.asarray(stats["nonfinite_count"][i]))
            layer = int(layers[0]) if layers.size else None
            self.diverged = {"step": int(stats["step"][i]), "layer": layer}
            replaying = bool(self._schedule)
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
        if self.hub.count and now - self._last_boundary > self.settings.boundary_interval_s:
            self._last_boundary = now
            grid = self.tr.decision_grid()
            if grid is not None:
                self.manager.emit(self.hub, {"type": "boundary", "step": self.step, **grid})

    # -- state changes (worker thread) ------------------------------------------------
    def _event(self, kind: str, changes: dict | None = None, detail: str | None = None, **extra) -> dict:
        with self.lock:
            ev = {"seq": len(self.events), "step": self.tr.step if self.tr else self.step, "kind": kind,
                  "changes": changes or {}, "detail": detail, "time": time.time(), **extra}
            self.events.append(ev)
        self.manager.emit(self.hub, {"type": "event", "event": ev})
        self.manager.persist(self)
        return ev

    def _set_status(self, status: str, kind: str, detail: str | None = None, **extra) -> dict:
        self.status = status
        if status != "diverged" and kind != "diverged":
            self.diverged = None
        ev = self._event(kind, detail=detail, **extra)
        self.manager.emit(self.hub, {"type": "status", "status": status, "step": self.step,
                                     "diverged": self.diverged, "rewind_to": self.rewind_to})
        return ev

    def _after_reinit(self) -> None:
        with self.lock:
            self.history.clear()
            self.step = self.tr.step
        self._ring.clear()
        self.diverged = None

    def apply_changes(self, changes: dict) -> dict:
        """Worker: a `set`; live changes keep weights and step, shape changes re-initialize."""
        step = self.tr.step
        info = self.tr.update(changes)
        self.config = self.tr.config
        if not info["changes"]:
            return {"step": step, "kind": "live", "changes": {}}
        if info["kind"] == "reset":
            self._after_reinit()
            why = ", ".join(info["changes"])
            self._event("reset", info["changes"], detail=f"new {why}: weights re-initialized", step=step)
            if self.status == "diverged":
                self._set_status("paused", "paused", detail=f"new {why} after divergence")
            self.save(forget_checkpoints=True)  # the stored weights and checkpoints are of the old shape
        else:
            self._event("change", info["changes"], step=step)
        return {"step": step, **info}

    def apply_reset(self) -> dict:
        step = self.tr.step
        self.tr.reset()
        self._after_reinit()
        self._event("reset", detail="weights re-initialized", step=step)
        if self.status == "diverged":
            self._set_status("paused", "paused", detail="reset after divergence")
        self.save(forget_checkpoints=True)  # supersedes the stored rows and checkpoints of the forgotten run
        return {"step": step, "status": self.status}

    def apply_rewind(self, snap=None, to_step: int | None = None, learning_rate: float | None = None) -> dict:
        """Worker: back to the latest checkpoint before the divergence (or before now), to
        resume with `learning_rate` where one is given (the page offers a tenth of the rate
        that diverged)."""
        step = self.tr.step
        if learning_rate is not None:  # checked before anything changes
            parse_changes(self.tr.config, {"learning_rate": learning_rate})
        if snap is None:
            limit = self.diverged["step"] if self.diverged else step
            found = [(s, sn) for s, sn in self._ring if s < limit]
            if not found:
                raise ActionError("no earlier checkpoint to rewind to")
            to_step, snap = found[-1]
        current = self.tr.config
        self.tr.restore(snap)
        restored = self.tr.config
        # The checkpoint's weights, optimizer state and config come back together; the live
        # knobs set since are then applied again as one change (a switched optimizer starts
        # fresh from the restored weights, as it did when it was switched), so the controls
        # keep what the owner last chose.
        later = {k: getattr(current, k) for k in LIVE_KEYS if getattr(restored, k) != getattr(current, k)}
        reapplied = self.tr.update(later)["changes"] if later else {}
        changes, detail = {}, f"rewound from step {step} to {to_step}"
        if learning_rate is not None and learning_rate != self.tr.config.learning_rate:
            changes = self.tr.update({"learning_rate": learning_rate})["changes"]
            old, new = changes["learning_rate"]
            detail += f"; learning rate {old:g} -> {new:g}"
        self.config = self.tr.config
        while self._ring and self._ring[-1][0] > to_step:
            self._ring.pop()
        with self.lock:
            self.history.truncate(to_step)
            self.step = self.tr.step
        self._event("rewind", changes, detail=detail, step=step, to_step=to_step,
                    config=restored.model_dump(), reapplied=reapplied)
        self.diverged = None
        if self.status == "diverged":
            self._set_status("paused", "paused", detail="rewound after divergence")
        self.save()  # supersedes the stored rows and checkpoints past `to_step`
        return {"step": step, "to_step": to_step, "status": self.status, "changes": changes}

    def _apply_scheduled(self, ev: dict) -> None:
        if ev["kind"] == "rewind":
            lr = (ev.get("changes") or {}).get("learning_rate")
            self.apply_rewind(self._replay_snaps[ev["to_step"]], ev["to_step"], lr[1] if lr else None)
        elif ev["changes"]:
            self.apply_changes({k: v[1] for k, v in ev["changes"].items()})
        else:
            self.apply_reset()
        if not self._schedule:
            self._replay_snaps.clear()
            self._targets.clear()

    def set_running(self, running: bool, detail: str | None = None) -> dict:
        if running and self.status != "running":
            self._set_status("running", "resumed", detail=detail)
        elif not running and self.status == "running":
            self._set_status("paused", "paused", detail=detail)
            self.save()
        return {"step": self.tr.step, "status": self.status}

    def idle_pause(self) -> dict:
        self.idle_pending = False
        if self.hub.count == 0:
            return self.set_running(False, detail="idle: nobody watching")
        return {"step": self.tr.step, "status": self.status}

    def single_step(self, n: int = 1) -> dict:
        step = self.tr.step
        self.advance(n, detail="single step" if n == 1 else f"{n} steps")
        return {"step": step, "status": self.status}

    def advance(self, n: int, detail: str = "catching up") -> dict:
        """Worker: `n` training steps while paused (a Step; a compare run catching up with its
        partner), in whole calls up to each chunk boundary and scheduled change rather than a
        call per step: a row, a frame and a flush per step made thousands of steps take seconds."""
        if self.status == "running":
            self.set_running(False, detail=detail)
        target = self.tr.step + n
        while self.tr.step < target:
            # a lesson's scheduled change lands on steps taken by hand as it does on a chunk
            while self._schedule and self._schedule[0]["step"] <= self.tr.step and self._schedule[0]["kind"] == "change":
                self._apply_scheduled(self._schedule.popleft())
            step, k = self.tr.step, self.tr.chunk_steps
            if step % k == 0 and not (self._ring and self._ring[-1][0] >= step):
                self._ring.append((step, self.tr.snapshot()))  # steps taken by hand can be rewound too
            stop = min([target, step + k - step % k] + [e["step"] for e in self._schedule if e["step"] > step])
            self._record(self.tr.run(stop - step))
        self.flush()  # no housekeeping runs while paused
        return {"step": self.tr.step, "status": self.status}

    def fork_state(self) -> dict:
        """Worker: what a fork 'from current' starts with."""
        with self.lock:
            frozen, events = self.history.frozen(), list(self.events)
        return {"weights": self.tr.to_bytes(), "history": frozen.arrays(),
                "config": self.tr.config.model_dump(), "step": self.tr.step, "events": events}
