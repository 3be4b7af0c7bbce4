"""A session's persistence: its row, full saves and the one-second appends, through the store.

`Persistence` is given the store, the writer thread and the session's id at construction;
it is handed the trainer and what to write, and never reaches back into the session. Its
methods run on the session's worker thread except `_write_*`, which run on the writer.
"""
from __future__ import annotations

import logging
from concurrent.futures import Future

import numpy as np

from .errors import WorkerLost
from .history import pack
from .store import Store, Writer

log = logging.getLogger("gradscope.server")


class Persistence:
    """What a session has stored and what it has yet to hand over (rows since the last flush,
    the newest checkpoint), with at most one append job and one checkpoint in flight."""

    def __init__(self, sid: str, store: Store, writer: Writer, ring_size: int):
        self.sid, self.store, self.writer, self.ring_size = sid, store, writer, ring_size
        self.unsaved: list[dict] = []        # stats chunks not yet handed to the writer
        self.cp_step = -1                    # the newest checkpoint handed to the writer
        self._cp_job: Future | None = None
        self._flush_job: Future | None = None

    def write_row(self, config: dict, status: str, step: int, events: list) -> None:
        """The session's row (config, status, step, events), at once."""
        self.store.update(self.sid, config=config, status=status, step=step, events=events)

    def note(self, stats: dict) -> None:
        """Rows trained: handed over with the next flush (or contained in the next full save)."""
        self.unsaved.append(stats)

    def save(self, tr, arrays: dict, keep_checkpoints: bool = True) -> Future:
        """Weights + the whole history (`arrays`) through the writer thread (`keep_checkpoints`
        False: after a reset, none of the stored checkpoints is of this run)."""
        self.unsaved = []
        self.cp_step = -1
        return self.writer.submit(self._write_full, tr, tr.step, tr.snapshot(), arrays, keep_checkpoints)

    def _write_full(self, tr, step: int, snap, arrays: dict, keep_checkpoints: bool) -> None:
        """Writer thread (a remote worker lost meanwhile: this save is skipped, its move saves again)."""
        try:
            weights = tr.to_bytes(snap)
        except WorkerLost as lost:
            log.warning("session %s: a save skipped: %s", self.sid, lost)
            return
        self.store.save_snapshot(self.sid, step, weights, pack(arrays), keep_checkpoints)

    def flush(self, tr, newest) -> None:
        """Hand the rows trained since the last flush, and the newest checkpoint `newest` (step,
        snapshot) if the writer is done with the previous one, to the writer thread."""
        if self._flush_job is not None and not self._flush_job.done():
            return  # the writer is behind: these rows go with the next flush (one job in flight)
        stats, self.unsaved = self.unsaved, []
        cp = None
        if newest is not None and newest[0] != self.cp_step and (self._cp_job is None or self._cp_job.done()):
            cp = newest
            self.cp_step = cp[0]
        if stats or cp:
            self._flush_job = self.writer.submit(self._write_appended, tr, tr.step, stats, cp)
            self._cp_job = self._flush_job if cp else self._cp_job

    def _write_appended(self, tr, step: int, stats: list[dict], cp) -> None:
        """Writer thread: compress and append."""
        rows = None
        if stats:
            keys = [k for k in stats[0] if all(k in c for c in stats)]
            rows = pack({k: np.concatenate([c[k] for c in stats]) for k in keys})
        try:
            blob = (cp[0], tr.to_bytes(cp[1])) if cp else None
        except WorkerLost as lost:  # that checkpoint went with its worker: the rows are kept
            log.warning("session %s: a checkpoint skipped: %s", self.sid, lost)
            blob = None
        self.store.append(self.sid, step, rows, blob, self.ring_size)

    def cancel_checkpoint(self) -> None:
        """A session closed without saving: its checkpoint still waiting is not written."""
        if self._cp_job is not None:
            self._cp_job.cancel()
