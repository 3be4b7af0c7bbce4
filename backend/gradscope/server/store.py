"""SQLite persistence (WAL): one row per session, its weights and history, its checkpoints.

Crash safety: besides a full save now and then (weights + the whole bounded history), every
second or so a session appends its new history rows and its latest rewind checkpoint, so a
SIGKILL loses about a second. The big writes go through one writer thread (`Writer`), in
order, so neither the event loop nor a training worker waits for compression or disk.
A connection per call keeps the rest safe to use from any thread.
"""
from __future__ import annotations

import json
import logging
import queue
import sqlite3
import threading
import time
from concurrent.futures import Future
from contextlib import closing
from pathlib import Path

log = logging.getLogger("gradscope.server")

SCHEMA = """
CREATE TABLE IF NOT EXISTS sessions (
    id TEXT PRIMARY KEY,
    token_hash TEXT NOT NULL,
    config0 TEXT NOT NULL,      -- the config at creation: with `events`, replays the run
    config TEXT NOT NULL,       -- the current config
    status TEXT NOT NULL,
    step INTEGER NOT NULL,
    events TEXT NOT NULL,       -- JSON list, the event timeline
    parent TEXT,
    created REAL NOT NULL,
    updated REAL NOT NULL,
    client TEXT                 -- the creating client's address (per-client limits)
);
CREATE TABLE IF NOT EXISTS snapshots (
    id TEXT PRIMARY KEY REFERENCES sessions(id) ON DELETE CASCADE,
    step INTEGER NOT NULL,
    weights BLOB,
    history BLOB
);
CREATE TABLE IF NOT EXISTS history_rows (  -- appended since the snapshot: raw rows, compressed
    id TEXT NOT NULL REFERENCES sessions(id) ON DELETE CASCADE,
    last INTEGER NOT NULL,
    rows BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS history_rows_id ON history_rows(id, last);
CREATE TABLE IF NOT EXISTS checkpoints (   -- the newest rewind checkpoints (Trainer.to_bytes)
    id TEXT NOT NULL REFERENCES sessions(id) ON DELETE CASCADE,
    step INTEGER NOT NULL,
    weights BLOB NOT NULL,
    PRIMARY KEY (id, step)
);
"""


class Store:
    """Session rows in `<data_dir>/gradscope.sqlite3`."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self._conn() as db:
            db.execute("PRAGMA journal_mode=WAL")
            db.executescript(SCHEMA)
            columns = {r[1] for r in db.execute("PRAGMA table_info(sessions)")}
            if "client" not in columns:  # a data dir from before the per-client limits
                db.execute("ALTER TABLE sessions ADD COLUMN client TEXT")

    def _conn(self):
        db = sqlite3.connect(self.path, timeout=30)
        db.row_factory = sqlite3.Row
        db.execute("PRAGMA foreign_keys=ON")
        # WAL + NORMAL: a commit survives the process being killed (what we guard against);
        # only a power cut may lose the last ones. No fsync per append.
        db.execute("PRAGMA synchronous=NORMAL")
        return _Tx(db)

    def create(self, row: dict) -> None:
        now = time.time()
        with self._conn() as db:
            db.execute(
                "INSERT INTO sessions (id, token_hash, config0, config, status, step, events, parent, created,"
                " updated, client) VALUES (?,?,?,?,?,?,?,?,?,?,?)",
                (row["id"], row["token_hash"], json.dumps(row["config0"]), json.dumps(row["config"]),
                 row["status"], row["step"], json.dumps(row["events"]), row.get("parent"), now, now,
                 row.get("client")))

    def update(self, sid: str, *, config: dict, status: str, step: int, events: list) -> None:
        with self._conn() as db:
            db.execute("UPDATE sessions SET config=?, status=?, step=?, events=?, updated=? WHERE id=?",
                       (json.dumps(config), status, step, json.dumps(events), time.time(), sid))

    def save_snapshot(self, sid: str, step: int, weights: bytes | None, history: bytes | None,
                      keep_checkpoints: bool = True) -> None:
        """The full save: it holds every history row and supersedes the appended ones and any
        checkpoint past `step` (a rewind forgot them; a reset, `keep_checkpoints=False`, all)."""
        with self._conn() as db:
            if db.execute("SELECT 1 FROM sessions WHERE id=?", (sid,)).fetchone() is None:
                return  # deleted meanwhile
            db.execute("INSERT OR REPLACE INTO snapshots VALUES (?,?,?,?)", (sid, step, weights, history))
            db.execute("DELETE FROM history_rows WHERE id=?", (sid,))
            db.execute("DELETE FROM checkpoints WHERE id=? AND step>?", (sid, step if keep_checkpoints else -1))
            db.execute("UPDATE sessions SET step=? WHERE id=?", (step, sid))  # after earlier appends

    def append(self, sid: str, step: int, rows: bytes | None, checkpoint: tuple[int, bytes] | None,
               keep: int) -> None:
        """New history rows (up to `step`), maybe a checkpoint (the newest `keep` are kept)."""
        with self._conn() as db:
            if db.execute("SELECT 1 FROM sessions WHERE id=?", (sid,)).fetchone() is None:
                return
            if rows is not None:
                db.execute("INSERT INTO history_rows VALUES (?,?,?)", (sid, step, rows))
            if checkpoint is not None:
                db.execute("INSERT OR REPLACE INTO checkpoints VALUES (?,?,?)", (sid, *checkpoint))
                db.execute("DELETE FROM checkpoints WHERE id=? AND step NOT IN "
                           "(SELECT step FROM checkpoints WHERE id=? ORDER BY step DESC LIMIT ?)", (sid, sid, keep))
            db.execute("UPDATE sessions SET step=MAX(step, ?), updated=? WHERE id=?", (step, time.time(), sid))

    def appended(self, sid: str) -> tuple[list[bytes], list[tuple[int, bytes]]]:
        """(history row blobs in order, checkpoints (step, blob) oldest first)."""
        with self._conn() as db:
            rows = [r[0] for r in db.execute("SELECT rows FROM history_rows WHERE id=? ORDER BY rowid", (sid,))]
            cps = [(r[0], r[1]) for r in db.execute("SELECT step, weights FROM checkpoints WHERE id=? ORDER BY step", (sid,))]
        return rows, cps

    def get(self, sid: str) -> dict | None:
        with self._conn() as db:
            row = db.execute("SELECT * FROM sessions WHERE id=?", (sid,)).fetchone()
        if row is None:
            return None
        out = dict(row)
        for key in ("config0", "config", "events"):
            out[key] = json.loads(out[key])
        return out

    def snapshot(self, sid: str) -> dict | None:
        with self._conn() as db:
            row = db.execute("SELECT step, weights, history FROM snapshots WHERE id=?", (sid,)).fetchone()
        return None if row is None else dict(row)

    def counts(self, client: str | None) -> tuple[int, int]:
        """(stored sessions in total, stored sessions created from `client`)."""
        with self._conn() as db:
            total = db.execute("SELECT COUNT(*) FROM sessions").fetchone()[0]
            mine = db.execute("SELECT COUNT(*) FROM sessions WHERE client=?", (client,)).fetchone()[0]
        return total, mine

    def touch(self, sid: str) -> None:
        with self._conn() as db:
            db.execute("UPDATE sessions SET updated=? WHERE id=?", (time.time(), sid))

    def expired(self, before: float) -> list[str]:
        """Sessions not updated since the unix time `before`."""
        with self._conn() as db:
            return [r[0] for r in db.execute("SELECT id FROM sessions WHERE updated<?", (before,))]

    def delete(self, sid: str) -> None:
        with self._conn() as db:
            db.execute("DELETE FROM history_rows WHERE id=?", (sid,))
            db.execute("DELETE FROM checkpoints WHERE id=?", (sid,))
            db.execute("DELETE FROM snapshots WHERE id=?", (sid,))
            db.execute("DELETE FROM sessions WHERE id=?", (sid,))

    def pause_all_running(self) -> None:
        """At startup nothing trains yet: a session saved as running reopens paused."""
        with self._conn() as db:
            db.execute("UPDATE sessions SET status='paused' WHERE status='running'")


class Writer:
    """One thread that runs store writes in the order they were handed over."""

    def __init__(self):
        self._jobs: queue.Queue = queue.Queue()
        self._thread = threading.Thread(target=self._run, name="gradscope-writer", daemon=True)
        self._thread.start()

    @property
    def backlog(self) -> int:
        """Writes handed over and not yet done (a health figure)."""
        return self._jobs.qsize()

    def submit(self, fn, *args) -> Future:
        fut: Future = Future()
        self._jobs.put((fn, args, fut))
        return fut

    def _run(self) -> None:
        while True:
            fn, args, fut = self._jobs.get()
            if not fut.set_running_or_notify_cancel():  # cancelled by its session: skip it
                continue
            if fn is None:
                fut.set_result(None)
                return
            try:
                fut.set_result(fn(*args))
            except Exception as exc:  # the caller's future carries it; nothing is lost silently
                log.error("store write failed", exc_info=exc)
                fut.set_exception(exc)

    def close(self, timeout: float = 60.0) -> None:
        """Finish every write handed over so far, then stop."""
        self.submit(None)
        self._thread.join(timeout)


class _Tx:
    """`with` block = one transaction, and the connection is always closed."""

    def __init__(self, db: sqlite3.Connection):
        self.db = db

    def __enter__(self) -> sqlite3.Connection:
        return self.db

    def __exit__(self, exc_type, exc, tb) -> None:
        with closing(self.db):
            if exc_type is None:
                self.db.commit()
            else:
                self.db.rollback()
