"""The `gradscope` command: `run` trains headless to JSON Lines, CSV or Parquet, `serve` starts the server,
`view` opens a recorded run on the dashboard.

The only module that reads argv and the environment.
"""

import argparse
import json
import math
import os
import sys
import time
from pathlib import Path

from gradscope import __version__
from gradscope.config import CONFIG_KEYS, ConfigError, make_config
from gradscope.lessons.loader import LessonError


def _parse_sets(pairs):
    out = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep:
            raise ConfigError(pair, "expected key=value", list(CONFIG_KEYS))
        out[key.strip()] = value.strip()
    return out


def _load_config(args):
    values = {}
    if args.config:
        try:
            values = json.loads(Path(args.config).read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise ConfigError("--config", f"cannot read {args.config}: {exc}") from None
    values.update(_parse_sets(args.set))
    return make_config(values)


class _Progress:
    """A one-line progress bar (steps done/total, steps/s, ETA, loss) on `stream` if it is a terminal."""

    def __init__(self, total, stream=None, on=True):
        self.total, self.stream = total, stream or sys.stderr
        self.on = on and self.stream.isatty()
        self.start, self.drawn = time.monotonic(), -math.inf

    def update(self, done, loss):
        now = time.monotonic()
        if not self.on or (done < self.total and now - self.drawn < 0.1):  # ten redraws a second are plenty
            return
        self.drawn = now
        rate = done / max(now - self.start, 1e-9)
        eta = _clock((self.total - done) / rate) if rate > 0 else "?"
        filled = int(30 * done / self.total)
        self.stream.write(f"\r[{'#' * filled}{'.' * (30 - filled)}] {done}/{self.total} {rate:,.0f} steps/s "
                          f"ETA {eta} loss {loss:.4g}\x1b[K")
        self.stream.flush()

    def close(self):
        if self.on:
            self.stream.write("\n")
            self.stream.flush()


def _clock(seconds):
    m, s = divmod(int(round(seconds)), 60)
    h, m = divmod(m, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


def _format(args) -> str:
    """--format, else from --out's suffix (.csv, .parquet), else JSON Lines."""
    if args.format:
        fmt = args.format
    else:
        suffix = Path(args.out).suffix.lower() if args.out else ""
        fmt = {".csv": "csv", ".parquet": "parquet", ".pq": "parquet"}.get(suffix, "jsonl")
    if fmt == "parquet" and not args.out:
        raise ConfigError("--format", "parquet needs a file: add --out FILE.parquet", ["jsonl", "csv"])
    if fmt == "parquet":
        try:
            import pyarrow.parquet  # noqa: F401
        except ImportError:
            raise ConfigError("--format", "parquet needs pyarrow: pip install 'gradscope[parquet]'", ["jsonl", "csv"]) from None
    return fmt


def cmd_run(args) -> int:
    from gradscope.compare import branch, parse_pairs
    from gradscope.engine import CompileCache, Trainer, enable_persistent_cache
    from gradscope.records import RecordWriter, run_header

    config = _load_config(args)
    if args.steps < 1 or args.every < 1:
        raise ConfigError("--steps" if args.steps < 1 else "--every", "must be a positive integer")
    fmt = _format(args)
    enable_persistent_cache(_cache_dir())

    vs = parse_pairs(args.vs) if args.vs else None
    cache = CompileCache(background=False)  # A and B share executables
    # one config: the build for its values; measured every k-th step, rows of k steps
    stats = tuple(s.strip() for arg in args.stats for s in arg.split(",") if s.strip()) or None
    trainers = {"a": Trainer(config, cache=cache, specialize=True, stats_every=args.every, stats=stats)}
    header = run_header(config)
    if vs is not None:
        trainers["b"], info = branch(trainers["a"], vs, cache=cache)
        trainers["b"].stats_every = args.every
        header["vs"] = {"changes": info["changes"], "kind": info["kind"], "config": trainers["b"].config.model_dump()}
        if fmt != "jsonl" and trainers["b"].shape != trainers["a"].shape:
            raise ConfigError("--format", f"{fmt} keeps one set of columns, and --vs {' '.join(args.vs)} changes the "
                              "statistics' shapes: write JSON Lines", ["jsonl"])
    out = open(args.out, "wb") if args.out else sys.stdout.buffer
    progress = _Progress(args.steps, on=not args.quiet)
    try:
        with RecordWriter(out, fmt, header) as writer:
            tag = len(trainers) > 1
            for run, rows in _rows(trainers, args.steps, args.every, progress):
                writer.put(rows, run if tag else None)  # encoded and written on the writer's thread
    finally:
        progress.close()
        if out is not sys.stdout.buffer:
            out.close()
        else:
            out.flush()
    return 0


def _rows(trainers, steps, every, progress):
    """The runs' rows, a call's at a time, each row `every` steps (`count`), with the run's name."""
    from gradscope.records import Blocks

    blocks = {name: Blocks(every, steps - 1) for name in trainers}
    for run, stats in _chunks(trainers, steps, every):
        rows = blocks[run].add(stats)
        if rows is not None:
            yield run, rows
        progress.update(min(t.step for t in trainers.values()), float(stats[trainers[run].family.loss_stat][-1]))


def _chunks(trainers, steps, every):
    """`run_lockstep`'s chunks, with every call ending on a multiple of `every` (or at `steps`)
    and, except after a run broke off a call at a non-finite step, starting on one: the
    engine's rows then end on the steps every-1, 2*every-1, ... (or on the last, or where it broke)."""
    from gradscope.compare import run_lockstep

    def stop(step, max_steps):
        if step % every:  # back onto the grid after a break
            return step - step % every + every
        return step + every * max(1, max_steps // every)

    while any(t.step < steps for t in trainers.values()):
        target = min(stop(t.step, t.max_steps) for t in trainers.values() if t.step < steps)
        yield from run_lockstep(trainers, min(target, steps))


def cmd_serve(args) -> int:
    from gradscope.engine import enable_persistent_cache
    from gradscope.lessons import load_lessons
    from gradscope.server import serve

    dirs = tuple(Path(d) for d in args.lessons)
    load_lessons(dirs)  # a broken lesson file stops the start, naming the file and the field
    enable_persistent_cache(_cache_dir())
    limits = {name: getattr(args, name) for name, *_ in SERVE_LIMITS}
    if args.ray is not None:
        limits.update(ray_address=args.ray, ray_cpus=args.ray_cpus, ray_slots=args.ray_slots,
                      ray_slots_per_client=args.ray_slots_per_client)
        if not any(a.startswith("--max-running") for a in sys.argv):  # on a cluster the places queue sessions; 429 only far beyond
            limits["max_running"] = RAY_MAX_RUNNING
    serve(host=args.host, port=args.port, data_dir=args.data_dir, allow_origins=args.allow_origin, lessons_dirs=dirs,
          first_look=args.first_look, **limits)
    return 0


def cmd_view(args) -> int:
    """Open a recorded file (attach's JSON Lines, or `gradscope run --out`'s) on the dashboard: posted
    to `--server`, or to a server started here, which then serves until interrupted."""
    import threading

    from gradscope.attaching import upload
    from gradscope.monitoring import ServerError

    path = Path(args.file)
    if not path.is_file():
        raise ConfigError("file", f"{path}: no such file")
    server = args.server
    local = None
    if server is None:
        from gradscope.server import serve_in_thread

        server, local = serve_in_thread(args.host, args.port, args.data_dir)
    try:
        url = upload(path, server, name=args.name)
    except (ValueError, KeyError) as exc:
        raise ConfigError("file", f"{path}: not a gradscope record file ({exc})") from None
    except ServerError as exc:
        raise ConfigError("file", f"{path}: the server refused it: {exc.message}") from None
    except OSError as exc:
        raise ConfigError("--server", f"{server} does not answer ({exc})") from None
    print(url, flush=True)
    if local is not None:
        print("gradscope: serving it here; press Ctrl-C to stop", file=sys.stderr, flush=True)
        try:
            threading.Event().wait()
        except KeyboardInterrupt:
            local.should_exit = True
    return 0


RAY_MAX_RUNNING = 1000  # `serve --ray`'s default --max-running: the cluster's places queue sessions instead

# The serve flags for the limits: each is the Settings field of the same name (dashes for underscores).
SERVE_LIMITS = (
    ("max_running", int, "N", "sessions training at once (429 beyond)"),
    ("max_sessions", int, "N", "stored sessions in total (507 beyond)"),
    ("max_sessions_per_client", int, "N", "stored sessions per client address (429 beyond)"),
    ("create_rate", float, "PER_S", "new sessions (creates, forks, compares, lesson runs) per second per client address"),
    ("create_burst", int, "N", "...after a burst of this many (429 beyond)"),
    ("session_ttl_s", float, "SECONDS", "delete a session nobody has changed or opened for this long"),
    ("unload_idle_s", float, "SECONDS", "save a paused session nobody watches or commands out of memory after this long"),
    ("compile_cache_entries", int, "N", "compiled programs kept in memory, least recently used out beyond"),
    ("compile_cache_mb", int, "MIB", "...and their estimated size"),
)


def _positive(kind):
    def parse(text):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a positive {kind.__name__}, got {text!r}") from None
        if not value > 0:
            raise argparse.ArgumentTypeError(f"must be positive, got {text!r}")
        return value

    parse.__name__ = kind.__name__
    return parse


def _cache_dir():
    return Path(os.environ.get("GRADSCOPE_CACHE", Path.home() / ".cache" / "gradscope" / "jax"))


def build_parser():
    parser = argparse.ArgumentParser(prog="gradscope", description="Watch vanishing and exploding gradients, layer by layer.")
    parser.add_argument("--version", action="version", version=f"gradscope {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="train headless and write one record per K steps")
    run.add_argument("--config", help="a JSON file of config keys (default none: every key at its default)")
    run.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override one config key (repeatable)")
    run.add_argument("--steps", type=int, required=True, help="training steps to run")
    run.add_argument("--every", type=int, default=1, metavar="K",
                     help="one record per K steps (count K): loss and accuracy their means, the rest the K-th step's (default 1)")
    run.add_argument("--out", help="write the records here (default stdout)")
    run.add_argument("--format", choices=("jsonl", "csv", "parquet"),
                     help="JSON Lines (a header line, then a record a line), CSV (a column per number) or Parquet "
                          "(needs pyarrow; a column per statistic, the header in its metadata); default from --out's "
                          "suffix, else jsonl")
    run.add_argument("--stats", action="append", default=[], metavar="NAMES",
                     help="compute only these statistics, comma-separated (repeatable; step, count, loss and nonfinite "
                          "always): XLA drops the others' work, so a run measuring every step buys speed with fewer "
                          "columns (default: every statistic the model emits; a name it does not emit lists them)")
    run.add_argument("--vs", action="append", default=[], metavar="KEY=VALUE",
                     help="also run B from A's very initial state with this change (repeatable); records get \"run\": \"a\"/\"b\"")
    run.add_argument("-q", "--quiet", action="store_true", help="no progress bar (shown only when stderr is a terminal)")
    run.set_defaults(func=cmd_run)

    serve = sub.add_parser("serve", help="start the live dashboard server")
    serve.add_argument("--host", default="127.0.0.1", help="the address to listen on (default 127.0.0.1)")
    serve.add_argument("--port", type=int, default=8000, help="the port to listen on (default 8000)")
    serve.add_argument("--data-dir", default="data", help="where the SQLite database lives (default ./data)")
    serve.add_argument("--allow-origin", action="append", default=[], metavar="ORIGIN",
                       help="accept WebSocket connections from this extra origin, repeatable (default none: the page's own only)")
    serve.add_argument("--lessons", action="append", default=[], metavar="DIR",
                       help="load extra lesson files (*.json, *.toml) from this directory, repeatable (default none: the packaged ones)")
    serve.add_argument("--ray", metavar="auto|ADDRESS", default=None,
                       help="train each session as an actor of this Ray cluster ('auto': the one this machine "
                            "belongs to; needs pip install 'gradscope[ray]') (default none: every session trains in this process)")
    serve.add_argument("--ray-cpus", type=_positive(float), default=1.0, metavar="N",
                       help="CPUs each session's actor reserves on the cluster (default 1)")
    serve.add_argument("--ray-slots", type=_positive(int), default=None, metavar="N",
                       help="sessions training on the cluster at once, the others queue "
                            "(default the cluster's CPUs / --ray-cpus, as nodes come and go)")
    serve.add_argument("--ray-slots-per-client", type=_positive(int), default=None, metavar="N",
                       help="places on the cluster one client address holds at once, its other sessions queue (default none: no cap)")
    serve.add_argument("--no-first-look", dest="first_look", action="store_false",
                       help="send no first look: a new run's step 0, drawn while its training step compiles, about 1.4 s "
                            "sooner than its first trained rows, which then come about 0.5 s later on two cores (default sent)")
    from gradscope.server.settings import Settings  # a dataclass: no FastAPI or JAX imported

    for name, kind, metavar, text in SERVE_LIMITS:
        default = getattr(Settings, name)
        shown = f"{default:.0f}" if float(default).is_integer() else str(default)
        serve.add_argument("--" + name.replace("_", "-"), type=_positive(kind), default=default, metavar=metavar,
                           help=f"{text} (default {shown}{': 14 days' if name == 'session_ttl_s' else ''})")
    serve.set_defaults(func=cmd_serve)

    view = sub.add_parser("view", help="open a recorded run (attach's or run --out's JSON Lines) on the dashboard")
    view.add_argument("file", help="the JSON Lines file")
    view.add_argument("--server", help="post it to this running server (default: start one here and serve until Ctrl-C)")
    view.add_argument("--name", help="the run's name on the page (default: the file's)")
    view.add_argument("--host", default="127.0.0.1", help="the address a server started here listens on (default 127.0.0.1)")
    view.add_argument("--port", type=int, default=8000, help="...and its port (default 8000; 0: any free one)")
    view.add_argument("--data-dir", default=None, help="...and where it keeps sessions (default: a temporary directory)")
    view.set_defaults(func=cmd_view)
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (ConfigError, LessonError) as exc:
        print(f"gradscope: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
