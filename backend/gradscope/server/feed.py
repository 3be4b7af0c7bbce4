"""The rows of an attached session: what its script posts, where a Trainer would train.

A session of the `attached` family (families/attached.py) holds a `Feed` in the place of its
Trainer and answers the same calls its session makes (`run`, `update`, `snapshot`, `to_bytes`,
`load_bytes`, `decision_grid`, `data_plane`). Rows do not come from `run`: the script posts
records (`gradscope.attach(server=...)`, or `gradscope view FILE`), the session's worker turns
them into columns here (`rows`) and records them as it records a chunk. `run` only waits a
moment, so that a running attached session's worker sleeps between posts instead of spinning.

Knob changes the page makes (`update`: the learning rate and clip threshold the script exposes)
wait here until the script's next post, whose reply carries them (`take_pending`); the script's
`publish` applies them to its optimizer state.
"""
from __future__ import annotations

import json
import math
import threading
import time

import numpy as np

from gradscope.config import ConfigError, differing, load_config, parse_changes
from gradscope.families.attached import GLOBAL, KNOBS, LAYER, METRICS

from .errors import ActionError

POLL_S = 0.05           # how long `run` waits (a command waits at most this long behind it)
MAX_POST_RECORDS = 512  # records one post may carry (the client sends every ~0.2 s)


def _number(value, field: str) -> float:
    """A statistic's value: a number, or null for NaN/Inf (JSON has neither)."""
    if value is None:
        return math.nan
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ConfigError(field, f"must be a number or null, not {type(value).__name__}")
    return float(value)


def _vector(value, field: str, n: int, names: str) -> list[float]:
    if value is None:
        return [math.nan] * n
    if not isinstance(value, list) or len(value) != n:
        got = f"{len(value)} values" if isinstance(value, list) else type(value).__name__
        raise ConfigError(field, f"must be a list of {n} numbers, one per name in the session's {names} (got {got})")
    return [_number(v, field) for v in value]


class Feed:
    """Stands for the Trainer of a session whose run trains in the user's script."""

    chunk_steps = 1 << 30  # a rewind checkpoint at step 0 only: nothing here rewinds

    def __init__(self, config):
        self.config = config
        self.step = 0              # the step after the last row recorded
        self.last_post = time.monotonic()
        self.finished_at: float | None = None  # wall-clock time the last rows were posted
        self._pending: dict[str, float] = {}
        self._lock = threading.Lock()
        self._wake = threading.Event()

    # -- the session's worker --------------------------------------------------------------
    def run(self, steps: int | None = None) -> None:
        """Nothing trains here: wait a moment (or until rows arrive) and return no rows."""
        self._wake.wait(POLL_S)
        self._wake.clear()

    def rows(self, records: list) -> dict | None:
        """Posted records -> a chunk's columns (leading axis: records), or None for none; raises
        ConfigError naming the field of the first bad record (nothing of the post is kept)."""
        if not isinstance(records, list):
            raise ConfigError("records", "must be a list of records")
        if len(records) > MAX_POST_RECORDS:
            raise ConfigError("records", f"at most {MAX_POST_RECORDS} records a post (send more often)")
        n_layers, n_probes = len(self.config.layers), len(self.config.probes)
        cols: dict[str, list] = {k: [] for k in ("step", "count", *LAYER, "delta_norm", *GLOBAL, *METRICS, "nonfinite")}
        last = self.step - 1
        for i, rec in enumerate(records):
            where = f"records[{i}]"
            if not isinstance(rec, dict):
                raise ConfigError(where, "a record must be an object with a step")
            step = rec.get("step")
            if isinstance(step, bool) or not isinstance(step, int) or step < 0:
                raise ConfigError(f"{where}.step", "must be an integer >= 0")
            if step <= last:
                continue  # already recorded (a post retried after a lost reply): kept once
            count = rec.get("count", 1)
            if isinstance(count, bool) or not isinstance(count, int) or count < 1:
                raise ConfigError(f"{where}.count", "must be an integer >= 1")
            cols["step"].append(step)
            cols["count"].append(count)
            for k in LAYER:
                cols[k].append(_vector(rec.get(k), f"{where}.{k}", n_layers, "layers"))
            cols["delta_norm"].append(_vector(rec.get("delta_norm"), f"{where}.delta_norm", n_probes, "probes"))
            for k in (*GLOBAL, *METRICS):
                cols[k].append(_number(rec.get(k), f"{where}.{k}"))
            flag = rec.get("nonfinite")
            bad = bool(flag) if flag is not None else False
            counts = np.asarray(cols["nonfinite_count"][-1])
            bad = bad or bool(np.nansum(counts) > 0) or not np.all(np.isfinite(cols["grad_norm"][-1]))
            cols["nonfinite"].append(bad)
            last = step
        if not cols["step"]:
            return None
        self.step = last + 1
        self.last_post, self.finished_at = time.monotonic(), time.time()
        out = {"step": np.asarray(cols.pop("step"), np.int64), "count": np.asarray(cols.pop("count"), np.int64),
               "nonfinite": np.asarray(cols.pop("nonfinite"), bool)}
        out.update({k: np.asarray(v, np.float32).reshape(len(out["step"]), -1) if k in (*LAYER, "delta_norm")
                    else np.asarray(v, np.float32) for k, v in cols.items()})
        return out

    def silent_for(self) -> float:
        """Seconds since the script last posted a row."""
        return time.monotonic() - self.last_post

    def update(self, changes: dict) -> dict:
        """A page's change of a knob the script exposes: validated, kept for the script's next post."""
        exposed = tuple(self.config.knobs)
        for key in changes:
            if key not in exposed:
                why = ("its script does not expose it (gradscope.optax.monitor exposes the learning rate, "
                       "and the clip threshold where it is given clip=)") if key in KNOBS else "its script sets it"
                raise ConfigError(key, f"an attached run cannot change {key} from here: {why}", list(exposed))
        new = parse_changes(self.config, changes)
        diff = differing(self.config, new)
        self.config = new
        with self._lock:
            self._pending.update({k: v[1] for k, v in diff.items()})
        return {"kind": "live", "changes": diff}

    def take_pending(self) -> dict:
        """The knob changes the script has not been told of yet (told once)."""
        with self._lock:
            pending, self._pending = self._pending, {}
        return pending

    def wake(self) -> None:
        self._wake.set()

    # -- what the session saves and restores -----------------------------------------------
    def snapshot(self):
        return (self.config, self.step)

    def to_bytes(self, snap=None) -> bytes:
        config, step = snap or self.snapshot()
        return json.dumps({"attached": True, "config": config.model_dump(), "step": step}).encode()

    def load_bytes(self, blob: bytes):
        data = json.loads(bytes(blob).decode())
        self.config, self.step = load_config(data["config"]), int(data["step"])
        return self.snapshot()

    def restore(self, snap) -> None:
        raise ActionError("an attached run is trained by its script: it has no checkpoints to go back to",
                          field="action", status=409)

    def reset(self) -> None:
        self.restore(None)

    def decision_grid(self, *args, **kwargs) -> None:
        return None

    def data_plane(self) -> None:
        return None
