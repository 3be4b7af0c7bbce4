"""SQLite persistence: one row per session plus its latest weights and history blobs.

A connection per call keeps it safe to use from worker threads and the event loop alike;
calls are rare (create, status changes, a periodic save), so the open cost does not matter.
"""
from __future__ import annotations

import json
import sqlite3
import time
from contextlib import closing
from pathlib import Path

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
    updated REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS snapshots (
    id TEXT PRIMARY KEY REFERENCES sessions(id) ON DELETE CASCADE,
    step INTEGER NOT NULL,
    weights BLOB,
    history BLOB
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

    def _conn(self):
        db = sqlite3.connect(self.path, timeout=30)
        db.row_factory = sqlite3.Row
        db.execute("PRAGMA foreign_keys=ON")
        return _Tx(db)

    def create(self, row: dict) -> None:
        now = time.time()
        with self._conn() as db:
            db.execute(
                "INSERT INTO sessions VALUES (?,?,?,?,?,?,?,?,?,?)",
                (row["id"], row["token_hash"], json.dumps(row["config0"]), json.dumps(row["config"]),
                 row["status"], row["step"], json.dumps(row["events"]), row.get("parent"), now, now))

    def update(self, sid: str, *, config: dict, status: str, step: int, events: list) -> None:
        with self._conn() as db:
            db.execute("UPDATE sessions SET config=?, status=?, step=?, events=?, updated=? WHERE id=?",
                       (json.dumps(config), status, step, json.dumps(events), time.time(), sid))

    def save_snapshot(self, sid: str, step: int, weights: bytes | None, history: bytes | None) -> None:
        with self._conn() as db:
            db.execute("INSERT OR REPLACE INTO snapshots VALUES (?,?,?,?)", (sid, step, weights, history))

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

    def ids(self) -> list[str]:
        with self._conn() as db:
            return [r[0] for r in db.execute("SELECT id FROM sessions ORDER BY created")]

    def delete(self, sid: str) -> None:
        with self._conn() as db:
            db.execute("DELETE FROM snapshots WHERE id=?", (sid,))
            db.execute("DELETE FROM sessions WHERE id=?", (sid,))

    def pause_all_running(self) -> None:
        """At startup nothing trains yet: a session saved as running reopens paused."""
        with self._conn() as db:
            db.execute("UPDATE sessions SET status='paused' WHERE status='running'")


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
