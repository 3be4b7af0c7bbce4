"""The registry of sessions: creation, lazy loading from SQLite, limits, idle pausing."""
from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import secrets
import threading
import time
from collections import Counter

from gradscope.config import Config, meta
from gradscope.engine import CompileCache, prewarm

from .backends import make_backend
from .dependencies import RateLimit
from .errors import ActionError
from .history import pack, unpack
from .sessions import Services, Session
from .settings import Settings
from .store import Store, Writer

log = logging.getLogger("gradscope.server")


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class SessionManager:
    """Owns every Session of one app; its methods run on the event loop unless noted."""

    def __init__(self, settings: Settings, warm: bool = True, cache: CompileCache | None = None):
        self.settings, self.warm = settings, warm
        self.store = Store(settings.db_path)
        self.writer = Writer()               # big store writes, in order, off the loop and the workers
        self._own_cache = cache is None
        self.cache = cache or CompileCache(background=warm, max_entries=settings.compile_cache_entries,
                                           max_bytes=settings.compile_cache_mb << 20)
        self.backend = make_backend(settings, self.cache, warm)
        self.services = Services(settings, self.store, self.writer, self.cache, warm, self.emit, self.backend)
        self.sessions: dict[str, Session] = {}
        self.loop: asyncio.AbstractEventLoop | None = None
        self._meta: dict | None = None
        self._lock = threading.RLock()
        self._monitor: asyncio.Task | None = None
        self._warmer: asyncio.Task | None = None
        self._create_lock = threading.Lock()  # count-then-insert of stored sessions, in threads only
        self._buckets: dict[str, RateLimit] = {}  # creates + forks per client address
        self.starting: Counter = Counter()    # reserved running places: session id -> requests holding one
        self.deleting: set[str] = set()      # ids being deleted: never loaded again meanwhile
        self.unloading: dict[str, threading.Event] = {}  # ids being saved out of memory: loaded after

    # -- lifecycle -------------------------------------------------------------------
    async def start(self) -> None:
        self.loop = asyncio.get_running_loop()
        self.store.pause_all_running()
        self._monitor = asyncio.create_task(self._idle_monitor())
        # (on a cluster the front trains nothing: each actor compiles for its own session)
        if self.warm and self.settings.chunk_steps is None and self.backend.name == "in-process":
            self._warmer = asyncio.create_task(self._warm_up())

    async def _warm_up(self) -> None:
        """The default setup's chunk and decision boundary (engine.prewarm), compiled in the
        cache's background thread once that can delay nobody: after the first session's first
        frame, or after `warmup_idle_s` with none, and never while a run is being built. An XLA
        compile in flight cannot be paused: started with the server, the warm-up held the first
        frame of a session of another shape behind it (depth 200: 11.4 s against 4.9 s at the
        default depth, which shared the warm-up's compile)."""
        since = self.loop.time()
        while True:
            served = any(s.step > 0 for s in list(self.sessions.values()))
            if not self.cache.busy and (served or self.loop.time() - since >= self.settings.warmup_idle_s):
                break
            await asyncio.sleep(0.1)
        await asyncio.to_thread(prewarm, self.cache)

    async def stop(self) -> None:
        if self._warmer:
            self._warmer.cancel()
        if self._monitor:
            self._monitor.cancel()
        sessions = list(self.sessions.values())
        await asyncio.gather(*(asyncio.to_thread(s.close) for s in sessions))
        await asyncio.to_thread(self.writer.close)  # every save handed over is on disk
        await asyncio.to_thread(self.backend.close)
        if self._own_cache:
            self.cache.close()

    async def _idle_monitor(self) -> None:
        period = max(0.05, min(1.0, self.settings.idle_pause_s / 4))
        last_expiry = 0.0
        while True:
            await asyncio.sleep(period)
            if time.monotonic() - last_expiry > min(60.0, self.settings.session_ttl_s / 4):
                last_expiry = time.monotonic()
                await self.expire()
            for s in list(self.sessions.values()):
                if s.status == "running" and s.idle_for() > self.settings.idle_pause_s \
                        and not s.idle_pending:
                    s.idle_pending = True
                    s.submit(s.idle_pause)
            await self.unload_idle()

    async def unload_idle(self) -> None:
        """Save and drop from memory the paused sessions nobody has watched or commanded for
        `unload_idle_s` (their worker, weights and history): a server that runs for days holds
        the sessions in use, not every session ever opened. `get` loads one again."""
        limit = self.settings.unload_idle_s
        for s in list(self.sessions.values()):
            if (s.status == "running" or s.hub.count or s.gate is not None or s.stop_at is not None
                    or min(s.hub.idle_for(), time.monotonic() - s.last_command) < limit):
                continue
            with self._lock:
                if self.sessions.get(s.id) is not s or s.id in self.starting or s.id in self.deleting:
                    continue
                del self.sessions[s.id]
                done = self.unloading[s.id] = threading.Event()
            try:
                await asyncio.to_thread(s.close, True)
                await asyncio.wrap_future(self.writer.submit(lambda: None))  # its save is on disk
            finally:
                with self._lock:
                    del self.unloading[s.id]
                done.set()

    async def expire(self) -> None:
        """Delete the sessions nobody has changed or opened for `session_ttl_s` (none that
        trains or is watched)."""
        ids = await asyncio.to_thread(self.store.expired, time.time() - self.settings.session_ttl_s)
        for sid in ids:
            s = self.sessions.get(sid)
            if s is None:
                await asyncio.wrap_future(self.writer.submit(self.store.delete, sid))
            elif s.status != "running" and s.hub.count == 0:
                await self.delete(s)
        if ids:
            log.info("expired %d abandoned sessions", len(ids))

    def admit(self, client: str | None) -> None:
        """Rate limit on creates and forks per client address (event loop): 429 beyond."""
        key = client or "?"
        bucket = self._buckets.get(key)
        if bucket is None:
            if len(self._buckets) > 10_000:  # forget the clients whose bucket has refilled
                self._buckets = {k: b for k, b in self._buckets.items() if not b.full()}
            bucket = self._buckets[key] = RateLimit(self.settings.create_rate, self.settings.create_burst)
        if not bucket.allow():
            raise ActionError("too many new sessions from your address; try again in a minute",
                              field="session", status=429)

    def check_storage(self, client: str | None) -> None:
        """Stored-session limits (blocking: from a thread, under `_create_lock`)."""
        total, mine = self.store.counts(client)
        if total >= self.settings.max_sessions:
            raise ActionError(f"the server stores its limit of {self.settings.max_sessions} sessions; "
                              "try again later", field="session", status=507)
        if client is not None and mine >= self.settings.max_sessions_per_client:
            raise ActionError(f"your address has {mine} stored sessions (limit "
                              f"{self.settings.max_sessions_per_client}); delete some first",
                              field="session", status=429)

    def meta(self) -> dict:
        if self._meta is None:
            self._meta = meta()
        return self._meta

    # -- lent to the sessions (their `Services.emit`), called from their worker threads ----
    def emit(self, hub, msg) -> None:
        """Hand a message to a session's hub on the event loop (thread-safe)."""
        loop = self.loop
        if loop is None or loop.is_closed():
            return
        try:
            loop.call_soon_threadsafe(hub.publish, msg)
        except RuntimeError:  # loop shutting down
            pass

    # -- registry --------------------------------------------------------------------
    def _running_ids(self) -> set[str]:
        """Running sessions and places reserved for sessions about to run (under `_lock`)."""
        return {sid for sid, s in list(self.sessions.items()) if s.status == "running"} | set(self.starting)

    def running_count(self) -> int:
        with self._lock:  # also called from threads (create) while the loop reserves places
            return len(self._running_ids())

    def _check_room(self, sids) -> set[str]:
        """Under `_lock`: the ids of `sids` not yet counted; 429 unless they fit."""
        counted = self._running_ids()
        new = set(sids) - counted
        if len(counted) + len(new) > self.settings.max_running:
            raise ActionError(f"too many running sessions (limit {self.settings.max_running}); "
                              "pause one or try again later", status=429)
        return new

    def reserve(self, *sids: str) -> tuple[str, ...]:
        """Hold running places for these sessions (existing ones, or `new_id()`s of sessions
        about to be created) until `release(*sids)`: 429 unless all of them fit. Count and
        reserve are one step under the lock, so concurrent plays, forks and compares cannot
        overshoot; a running session's place stays held while a request pauses it (compare)."""
        with self._lock:
            self._check_room(sids)
            self.starting.update(sids)
        return sids

    def release(self, *sids: str) -> None:
        with self._lock:
            self.starting.subtract(sids)
            for sid in sids:
                if self.starting.get(sid, 0) <= 0:
                    self.starting.pop(sid, None)

    @staticmethod
    def new_id() -> str:
        return secrets.token_urlsafe(9)

    def create(self, config: Config, *, paused: bool = False, parent: str | None = None,
               config0: Config | None = None, events: list | None = None, step: int = 0,
               weights: bytes | None = None, history: dict | None = None,
               replay: list | None = None, client: str | None = None,
               sid: str | None = None) -> tuple[Session, str]:
        """A new session and its owner token (shown once, stored hashed). Blocking: call it
        from a thread; raises ActionError (429/507) at the limits. `sid`: an id from `new_id()`
        (already `reserve`d when it is to run)."""
        with self._create_lock:
            self.check_storage(client)
            return self._create(config, paused, parent, config0, events, step, weights, history, replay, client,
                                sid or self.new_id())

    def _create(self, config, paused, parent, config0, events, step, weights, history, replay, client, sid):
        with self._lock:
            if not paused:  # counted as running from the insert below, in the same locked step
                self._check_room([sid])
            token = secrets.token_urlsafe(24)
            row = {"id": sid, "token_hash": hash_token(token), "config0": (config0 or config).model_dump(),
                   "config": config.model_dump(), "status": "paused" if paused else "running",
                   "step": step, "events": list(events or []), "parent": parent, "client": client}
            s = Session(row, self.services, weights=weights, replay=replay)
            if history is not None:
                s.history.load_arrays(history)
            self.sessions[sid] = s
        self.store.create(row)  # outside the lock: the event loop takes it to count running sessions
        if weights is not None:
            self.store.save_snapshot(sid, step, weights, None if history is None else pack(history))
        if not paused:
            s.start()  # a paused session builds its trainer on its first command
        return s, token

    def get(self, sid: str) -> Session | None:
        """The live session, loading it (paused) from SQLite if needed: the newest of its full
        save and its appended rows and checkpoints (blocking: call it from a thread)."""
        s = self.sessions.get(sid)
        if s is not None or sid in self.deleting:
            return s
        unloading = self.unloading.get(sid)
        if unloading is not None:  # being saved out of memory: loaded from what it saves
            unloading.wait(60)
        row = self.store.get(sid)
        if row is None:
            return None
        self.store.touch(sid)  # opened: not abandoned
        snap = self.store.snapshot(sid) or {"step": -1, "weights": None, "history": None}
        appended, checkpoints = self.store.appended(sid)
        weights = snap["weights"]
        if checkpoints and checkpoints[-1][0] > snap["step"]:
            weights = checkpoints[-1][1]
        with self._lock:
            if sid in self.sessions or sid in self.deleting:
                return self.sessions.get(sid)
            if row["status"] == "running":
                row["status"] = "paused"
            s = Session(row, self.services, weights=weights, checkpoints=checkpoints)
            if snap["history"]:
                s.history.load_bytes(snap["history"])
            for blob in appended:
                s.history.append_after(unpack(blob))
            self.sessions[sid] = s
        return s

    def holds(self, s: Session) -> bool:
        """Whether `s` is the live session of its id (not deleted, unloaded or replaced)."""
        return self.sessions.get(s.id) is s

    def is_owner(self, s: Session, token: str | None) -> bool:
        return bool(token) and hmac.compare_digest(hash_token(token), s.token_hash)

    async def delete(self, s: Session) -> None:
        """Stop, hang up on every client (code 4404) and forget the session everywhere."""
        self.deleting.add(s.id)
        try:
            self.sessions.pop(s.id, None)
            s.hub.close({"type": "status", "status": "deleted", "step": s.step, "diverged": None})
            await asyncio.to_thread(s.close, False)
            # after every write the session handed over (its worker has ended)
            await asyncio.wrap_future(self.writer.submit(self.store.delete, s.id))
        finally:
            self.deleting.discard(s.id)
