"""Server settings: one frozen object built by the caller (CLI or tests) and injected."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Settings:
    """Everything the server can be tuned by; no value is read from the environment here."""

    data_dir: Path = Path("data")
    allow_origins: tuple[str, ...] = ()     # extra WebSocket origins; "*" allows any
    max_running: int = 8                    # concurrently running sessions (429 beyond)
    idle_pause_s: float = 300.0             # a running session with no viewer pauses after this
    max_fps: float = 30.0                   # frames per second per client, at most
    max_pending_steps: int = 4096           # coalesced steps kept for a slow client
    max_pending_items: int = 256            # queued non-stats messages kept for a slow client
    ws_max_bytes: int = 16_384              # larger client messages get an error
    ws_rate: float = 30.0                   # client messages per second (token bucket refill)
    ws_burst: int = 60                      # token bucket size
    ring_size: int = 8                      # recent checkpoints kept for `rewind`
    history_bytes: int = 16 << 20           # per-session history budget (raw + downsampled)
    save_interval_s: float = 120.0          # full save (weights + whole history) this often while running;
                                            # between them the appends below keep a crash cheap
    flush_interval_s: float = 1.0           # new history rows + newest checkpoint appended this often:
                                            # what a SIGKILL can lose
    boundary_interval_s: float = 1.0        # decision-boundary frames, at most this often
    # per client address: a classroom behind one NAT shares one, hence the generous values
    max_sessions: int = 5000                # stored sessions in total (507 beyond)
    max_sessions_per_client: int = 500      # stored sessions per client address (429 beyond)
    session_ttl_s: float = 14 * 86400.0     # a session nobody has changed or opened this long is deleted
    create_rate: float = 0.5                # creates + forks per second per client address...
    create_burst: int = 60                  # ...after a burst of this many (429 beyond)
    unload_idle_s: float = 600.0            # a paused session nobody watched or commanded this long leaves
                                            # memory (saved; loaded again when next opened)
    compile_cache_entries: int = 24         # compiled executables held in memory (~50 MiB, ~700 mappings each on CPU)
    compile_cache_mb: int = 1024            # ...and their estimated size
    warmup_idle_s: float = 5.0              # start-up warm-up: after the first session's first frame, or
                                            # after this long with none (never while a run is built)
    first_look: bool = True                 # a new run's step 0 shown while its training step compiles
                                            # (a `preview` message): ~1.4 s sooner, the first trained frame ~0.5 s later
    chunk_steps: int | None = None          # fixed K (tests); None: the engine calibrates
    stats_every: int | None = None          # measure every k-th step; None: once per chunk (~30/s)
    frontend_dir: Path | None = None        # None: the packaged or repo frontend/
    lessons_dirs: tuple[Path, ...] = ()     # extra lesson files (`gradscope serve --lessons DIR`)
    # a Ray cluster (`gradscope serve --ray auto|ADDRESS`): each session's trainer an actor (cluster.py)
    ray_address: str | None = None          # None: every session trains in this process
    ray_cpus: float = 1.0                   # CPUs each session's actor reserves
    ray_slots: int | None = None            # sessions training on the cluster at once (beyond: they queue);
                                            # None: the cluster's CPUs / ray_cpus, as nodes come and go
    ray_slots_per_client: int | None = None  # places one client address holds at once (its others queue)
    ray_max_restarts: int = 3               # times Ray restarts a lost actor before a new one is made
    ray_restart_timeout_s: float = 120.0    # a lost worker not back by then: the command fails (503)

    @property
    def db_path(self) -> Path:
        return Path(self.data_dir) / "gradscope.sqlite3"
