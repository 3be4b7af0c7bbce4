"""What a session's worker runs for its callers: set, reset, rewind, play/pause, steps, fork state.

`SessionCommands` is the command half of `Session` (sessions.py holds the other: its parts,
the training loop, events and saves). Every method runs on the session's worker thread,
submitted through `Session.submit`/`call`, and returns the body its caller acknowledges.
"""
from __future__ import annotations

from gradscope.config import LIVE_KEYS, differing, parse_changes


class SessionCommands:
    """Needs of the session: tr, trains_here, idle_for, settings, config, status, step, diverged, hub, lock, history, events,
    timeline, _event, _set_status, _record, save, flush, send_views."""

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
        self._views_if_paused()
        return {"step": step, **info}

    def apply_reset(self) -> dict:
        step = self.tr.step
        self.tr.reset()
        self._after_reinit()
        self._event("reset", detail="weights re-initialized", step=step)
        if self.status == "diverged":
            self._set_status("paused", "paused", detail="reset after divergence")
        self.save(forget_checkpoints=True)  # supersedes the stored rows and checkpoints of the forgotten run
        self._views_if_paused()
        return {"step": step, "status": self.status}

    def _views_if_paused(self) -> None:
        """A running session sends its views on its next housekeeping; a paused one has none."""
        if self.status != "running" and not self.timeline.replaying:
            self.send_views()

    def _after_reinit(self) -> None:
        self.timeline.forget()
        self.step = self.tr.step
        self.diverged = None

    def apply_rewind(self, snap=None, to_step: int | None = None, learning_rate: float | None = None) -> dict:
        """Worker: back to the latest checkpoint before the divergence (or before now), to
        resume with `learning_rate` where one is given (the page offers a tenth of the rate
        that diverged)."""
        step = self.tr.step
        if learning_rate is not None:  # checked before anything changes
            parse_changes(self.tr.config, {"learning_rate": learning_rate})
        if snap is None:
            to_step, snap = self.timeline.checkpoint_before(self.diverged["step"] if self.diverged else step)
        current = self.tr.config
        self.tr.restore(snap)
        restored = self.tr.config
        # The checkpoint's weights, optimizer state and config come back together; the live
        # knobs set since are then applied again as one change (a switched optimizer starts
        # fresh from the restored weights, as it did when it was switched), so the controls
        # keep what the owner last chose.
        later = {k: new for k, (_, new) in differing(restored, current, LIVE_KEYS).items()}
        reapplied = self.tr.update(later)["changes"] if later else {}
        changes, detail = {}, f"rewound from step {step} to {to_step}"
        if learning_rate is not None and learning_rate != self.tr.config.learning_rate:
            changes = self.tr.update({"learning_rate": learning_rate})["changes"]
            old, new = changes["learning_rate"]
            detail += f"; learning rate {old:g} -> {new:g}"
        self.config = self.tr.config
        self.timeline.cut(to_step)
        self.step = self.tr.step
        self._event("rewind", changes, detail=detail, step=step, to_step=to_step,
                    config=restored.model_dump(), reapplied=reapplied)
        self.diverged = None
        if self.status == "diverged":
            self._set_status("paused", "paused", detail="rewound after divergence")
        self.save()  # supersedes the stored rows and checkpoints past `to_step`
        self._views_if_paused()
        return {"step": step, "to_step": to_step, "status": self.status, "changes": changes}

    def _apply_scheduled(self, ev: dict) -> None:
        """A replayed event, at its step."""
        if ev["kind"] == "rewind":
            lr = (ev.get("changes") or {}).get("learning_rate")
            self.apply_rewind(self.timeline.replay_snaps[ev["to_step"]], ev["to_step"], lr[1] if lr else None)
        elif ev["changes"]:
            self.apply_changes({k: v[1] for k, v in ev["changes"].items()})
        else:
            self.apply_reset()
        self.timeline.replayed()

    def set_running(self, running: bool, detail: str | None = None) -> dict:
        if running and self.status != "running":
            self._set_status("running", "resumed", detail=detail)
        elif not running and self.status == "running":
            self._set_status("paused", "paused", detail=detail)
            self.save()
        return {"step": self.tr.step, "status": self.status}

    def idle_pause(self) -> dict:
        self.idle_pending = False
        if self.trains_here and self.hub.count == 0:
            return self.set_running(False, detail="idle: nobody watching")
        if not self.trains_here and self.idle_for() >= self.settings.idle_pause_s:
            return self.set_running(False, detail="the script stopped publishing")
        return {"step": self.tr.step, "status": self.status}

    def ingest(self, records: list, done: bool = False) -> dict:
        """Worker: rows an attached run's script posted, recorded as a chunk is (a bad record: a
        ConfigError naming its field, and none of the post kept). A paused run resumes; `done`
        (the script closed) pauses it. Returns the step, the status and the knob changes the
        page made since the last post (`set`), which the script applies."""
        stats = self.tr.rows(records)
        if stats is not None:
            if self.status == "paused":
                self._set_status("running", "resumed", detail="the script is publishing")
            self._record(stats)
        if done and self.status == "running":
            self._set_status("paused", "paused", detail="the script finished")
            self.save()
        return {"step": self.tr.step, "status": self.status, "set": self.tr.take_pending()}

    def single_step(self, n: int = 1) -> dict:
        step = self.tr.step
        self.advance(n, detail="single step" if n == 1 else f"{n} steps")
        return {"step": step, "status": self.status}

    def advance(self, n: int, detail: str = "catching up") -> dict:
        """Worker: `n` training steps while paused (a Step; a lockstep run catching up with its
        partner), in whole calls up to each chunk boundary and scheduled change rather than a
        call per step: a row, a frame and a flush per step made thousands of steps take seconds."""
        if self.status == "running":
            self.set_running(False, detail=detail)
        target = self.tr.step + n
        while self.tr.step < target:
            # a lesson's scheduled change lands on steps taken by hand as it does on a chunk
            while (ev := self.timeline.due(self.tr.step, ("change",))) is not None:
                self._apply_scheduled(ev)
            step, k = self.tr.step, self.tr.chunk_steps
            if step % k == 0 and not self.timeline.holds_from(step):
                self.timeline.keep(step, self.tr.snapshot())  # steps taken by hand can be rewound too
            stop = min([target, step + k - step % k] + self.timeline.scheduled_after(step))
            self._record(self.tr.run(stop - step))
        self.flush()  # no housekeeping runs while paused
        self.send_views()
        return {"step": self.tr.step, "status": self.status}

    def fork_state(self) -> dict:
        """Worker: what a fork 'from current' starts with."""
        with self.lock:
            frozen, events = self.history.frozen(), list(self.events)
        return {"weights": self.tr.to_bytes(), "history": frozen.arrays(),
                "config": self.tr.config.model_dump(), "step": self.tr.step, "events": events}
