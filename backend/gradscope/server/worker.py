"""A session's worker: one thread, a command queue, and the futures its callers await.

Everything that touches a session's Trainer runs on this thread: commands submitted from
the event loop (or any thread) are drained before each chunk of training, and each one's
future is settled with its result or its error. The worker knows nothing of training: the
session gives it, at construction, what to build, what one round of work is, and whether
it is running.
"""
from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from concurrent.futures import Future

from gradscope.config import ConfigError

from .errors import ActionError, WorkerLost


def _answer(fut: Future, result=None, exc: BaseException | None = None) -> None:
    """Settle a command's future; one nobody waits for any more (cancelled) is left as it is."""
    if fut.done():
        return
    if exc is not None:
        fut.set_exception(exc)
    else:
        fut.set_result(result)


def _closed() -> ActionError:
    return ActionError("this session is closed", status=410)


class Worker:
    """The thread and the command queue of one session.

    `build()` runs first on the thread; then, while not closed, queued commands run, and
    `work()` runs between them while `running()` and `ready()` (the trainer is built). A
    failure anywhere goes to `fault(what, exc)`, which returns the error id told to the
    caller; `stop(save)` runs as the last command of `close`.
    """

    def __init__(self, name: str, *, build: Callable[[], None], work: Callable[[], None],
                 running: Callable[[], bool], ready: Callable[[], bool],
                 fault: Callable[[str, Exception], str], stop: Callable[[bool], None],
                 moved: Callable[[WorkerLost], None] = lambda lost: None):
        self.name = name
        self._build, self._work, self._running, self._ready = build, work, running, ready
        self._fault, self._on_stop, self._moved = fault, stop, moved
        self._commands: queue.Queue = queue.Queue()
        self.thread: threading.Thread | None = None
        self.closing = False
        self._accepting = True               # False once the worker answered its last command
        self._submit_lock = threading.Lock()

    # -- any thread ----------------------------------------------------------------------
    def start(self) -> None:
        if self.thread is None and not self.closing:
            self.thread = threading.Thread(target=self._main, name=self.name, daemon=True)
            self.thread.start()

    def submit(self, fn, *args) -> Future:
        """Run fn(*args) on the worker thread between chunks (starting the thread if need be)."""
        self.start()
        fut: Future = Future()
        with self._submit_lock:  # against the worker's last drain: queued means answered
            if self._accepting and not self.closing:
                self._commands.put((fn, args, fut))
                return fut
        fut.set_exception(_closed())
        return fut

    def close(self, save: bool = True, timeout: float = 30.0) -> None:
        """Stop the thread after the commands queued before (`stop(save)` last)."""
        if self.thread is None:
            with self._submit_lock:  # never started: it never will be
                self.closing, self._accepting = True, False
            return
        self._commands.put((self._stop, (save,), Future()))
        self.thread.join(timeout)

    # -- the worker thread -----------------------------------------------------------------
    def _main(self) -> None:
        try:
            self._build()
        except ActionError as exc:  # closed while it waited for a place on a cluster: nothing to report
            if exc.status != 410:
                self._fault("failed to start", exc)
        except Exception as exc:  # a failed build leaves a paused session that reports why
            self._fault("failed to start", exc)
        while not self.closing:
            try:
                self._drain(block=not (self._running() and self._ready()))
                if self.closing or not self._running() or not self._ready():
                    continue
                self._work()
            except WorkerLost as lost:  # a remote worker came back from a checkpoint: the run goes on
                self._moved_or_fault(lost)
            except Exception as exc:  # nothing a client or a run does may end this thread
                self._fault("training failed" if self._running() else "a command failed", exc)
        with self._submit_lock:  # nobody will run these any more; nothing can be queued after
            self._accepting = False
            while not self._commands.empty():
                _answer(self._commands.get_nowait()[2], exc=_closed())

    def _drain(self, block: bool) -> None:
        try:
            item = self._commands.get(block=block)
        except queue.Empty:
            return
        while True:
            self._run(*item)
            try:
                item = self._commands.get_nowait()
            except queue.Empty:
                return

    def _run(self, fn, args, fut: Future) -> None:
        # False: the caller went away (a socket closed, a request cancelled) before it ran: dropped
        if not fut.set_running_or_notify_cancel():
            return
        try:
            # (== not `is`: each `self._stop` is a new bound method; `is` refused the stop of a session
            # whose build failed, and closing it waited out the join's timeout)
            if not self._ready() and fn != self._stop:
                raise ActionError("this session could not start its trainer", status=409)
            result = fn(*args)
        except (ActionError, ConfigError) as exc:
            _answer(fut, exc=exc)
        except WorkerLost as lost:
            self._moved_or_fault(lost)
            _answer(fut, exc=ActionError(f"this session's worker was lost and resumed from step {lost.step}; "
                                         "try again", status=503))
        except Exception as exc:  # a bug: the session logs it and tells its clients; its id to the caller
            eid = self._fault(f"{getattr(fn, '__name__', 'a command')} failed", exc)
            _answer(fut, exc=ActionError(f"internal server error (error id {eid})", field="message", status=500))
        else:
            _answer(fut, result)

    def _moved_or_fault(self, lost: WorkerLost) -> None:
        try:
            self._moved(lost)
        except WorkerLost as again:  # lost again while recording the move: the next round records it
            self._fault("recording a lost worker", again)
        except Exception as exc:
            self._fault("recording a lost worker", exc)

    def _stop(self, save: bool) -> None:
        self.closing = True
        self._on_stop(save)
