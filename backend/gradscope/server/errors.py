"""The server's known failures and how they are told: `ActionError`, error ids, `error` bodies.

Imported by every layer of the server and importing none of it.
"""
from __future__ import annotations

import secrets

from gradscope.config import ConfigError


class ActionError(Exception):
    """A command that cannot be carried out now; becomes an `error` message / 4xx."""

    def __init__(self, message: str, field: str = "action", choices: list | None = None, status: int = 409):
        super().__init__(message)
        self.field, self.message, self.choices, self.status = field, message, choices, status

    def as_dict(self) -> dict:
        return {"field": self.field, "message": self.message, "choices": self.choices}


def error_id() -> str:
    """A short random id that ties a fault's answer to its traceback in the log."""
    return secrets.token_hex(6)


def error_body(exc: Exception) -> dict | None:
    """The `error` fields for a known failure, None for a bug."""
    if isinstance(exc, ConfigError):  # the first, as before, and every one of them
        return {**exc.as_dict(), "errors": exc.as_dicts()}
    if isinstance(exc, ActionError):
        return exc.as_dict()
    return None


class WorkerLost(Exception):
    """A session's remote worker died (its node was lost, it ran out of memory, it was killed)
    and was started again from the newest checkpoint the front holds: `step` is where the run
    resumes, `node` where it now runs, `why` what Ray said. The session records the move and
    goes on; a command that met it is answered 503 (try again)."""

    def __init__(self, step: int, node: str, why: str):
        super().__init__(f"its worker was lost ({why}); resumed from step {step} on node {node}")
        self.step, self.node, self.why = step, node, why
