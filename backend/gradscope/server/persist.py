"""A session's persistence, run on its worker: full saves, one-second appends, loading weights.

Kept apart from the runtime in sessions.py; every method here runs on the session's worker
thread except the `_write_*` ones, which run on the manager's writer thread.
"""
from __future__ import annotations

from concurrent.futures import Future

import numpy as np

from gradscope.config import LIVE_KEYS, RESET_KEYS, Config

from .history import pack


class Persistence:
    """Mixin for Session: needs id, manager, settings, lock, history, tr, _ring, _unsaved,
    _cp_step, _cp_job, _flush_job."""

    def _load_weights(self, blob: bytes, target: Config) -> None:
        """Saved weights, under the config last acknowledged (saved with every change, while
        the weights are saved every few seconds: after a crash the two can differ)."""
        self.tr.load_bytes(blob)
        saved = self.tr.config
        if any(getattr(saved, k) != getattr(target, k) for k in RESET_KEYS):
            self.tr = self._new_trainer(target)  # the weights belong to an older shape
            self._ring.clear()
            return
        live = {k: getattr(target, k) for k in LIVE_KEYS if getattr(saved, k) != getattr(target, k)}
        if live:
            self.tr.update(live)

    def save(self, forget_checkpoints: bool = False) -> Future:
        """Worker: the row now; weights + the whole history through the writer thread
        (`forget_checkpoints`: after a reset, none of the stored ones is of this run)."""
        with self.lock:  # references under the lock; concatenating and compressing outside it
            frozen = self.history.frozen()
        arrays = frozen.arrays()
        self._unsaved = []
        self._cp_step = -1
        self.manager.persist(self)
        return self.manager.writer.submit(self._write_full, self.tr.step, self.tr.snapshot(), arrays,
                                          not forget_checkpoints)

    def _write_full(self, step: int, snap, arrays: dict, keep_checkpoints: bool) -> None:
        """Writer thread."""
        self.manager.store.save_snapshot(self.id, step, self.tr.to_bytes(snap), pack(arrays), keep_checkpoints)

    def flush(self) -> None:
        """Worker: hand the rows trained since the last flush, and the newest checkpoint (if
        the writer is done with the previous one), to the writer thread."""
        if self._flush_job is not None and not self._flush_job.done():
            return  # the writer is behind: these rows go with the next flush (one job in flight)
        stats, self._unsaved = self._unsaved, []
        cp = None
        if self._ring and self._ring[-1][0] != self._cp_step and (self._cp_job is None or self._cp_job.done()):
            cp = self._ring[-1]
            self._cp_step = cp[0]
        if stats or cp:
            self._flush_job = self.manager.writer.submit(self._write_appended, self.tr.step, stats, cp)
            self._cp_job = self._flush_job if cp else self._cp_job

    def _write_appended(self, step: int, stats: list[dict], cp) -> None:
        """Writer thread: compress and append."""
        rows = None
        if stats:
            keys = [k for k in stats[0] if all(k in c for c in stats)]
            rows = pack({k: np.concatenate([c[k] for c in stats]) for k in keys})
        blob = (cp[0], self.tr.to_bytes(cp[1])) if cp else None
        self.manager.store.append(self.id, step, rows, blob, self.settings.ring_size)
