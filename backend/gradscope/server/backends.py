"""Where sessions train: in this process (the default) or on a Ray cluster (`serve --ray`).

A backend hands a session its trainer: an object with the Trainer's interface that the
session's worker thread drives (`run`, `update`, `snapshot`, `restore`, `to_bytes`,
`load_bytes`, `reset`, `decision_grid`, `data_plane`, `step`, `config`, `chunk_steps`). In
process that is the engine's `Trainer`; on Ray, a proxy for a Trainer living in an actor on
some node (cluster.py). Everything else a session is (its hub, timeline, tokens, limits,
store) stays on the front either way.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from gradscope.config import Config, ConfigError
from gradscope.engine import CompileCache, Trainer

from .settings import Settings


class Backend(Protocol):
    """What a session asks of the place it trains (`InProcess`, `cluster.RayBackend`)."""

    name: str

    def trainer(self, sid: str, config: Config, *, on_compile: Callable, on_queue: Callable,
                client: str | None = None, on_preview: Callable | None = None): ...
    def cancel(self, sid: str) -> None: ...
    def release(self, sid: str, after=None) -> None: ...
    def meta(self) -> dict: ...
    def close(self) -> None: ...


class InProcess:
    """Every session's trainer in this process, sharing one compile cache."""

    name = "in-process"

    def __init__(self, settings: Settings, cache: CompileCache, warm: bool):
        self.settings, self.cache, self.warm = settings, cache, warm

    def trainer(self, sid: str, config: Config, *, on_compile: Callable, on_queue: Callable,
                client: str | None = None, on_preview: Callable | None = None) -> Trainer:
        return Trainer(config, chunk_steps=self.settings.chunk_steps, stats_every=self.settings.stats_every,
                       cache=self.cache, warm=self.warm, on_compile=on_compile, on_preview=on_preview)

    def cancel(self, sid: str) -> None:
        """A session closes: nothing waits for a place here."""

    def release(self, sid: str, after=None) -> None:
        """A session closed: its trainer goes with it (`after`: its last save, done in order anyway)."""

    def meta(self) -> dict:
        return {"name": self.name}

    def close(self) -> None:
        """Nothing to shut down."""


def make_backend(settings: Settings, cache: CompileCache, warm: bool) -> Backend:
    """The backend the settings ask for (`ray_address` None: in process)."""
    if settings.ray_address is None:
        return InProcess(settings, cache, warm)
    try:
        from .cluster import RayBackend  # Ray only where it is asked for: an optional extra
    except ImportError as exc:
        raise ConfigError("ray", f"a Ray cluster needs Ray in this environment ({exc}): "
                          "pip install 'gradscope[ray]'") from None

    return RayBackend(settings)
