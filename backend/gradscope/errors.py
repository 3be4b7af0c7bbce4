"""The one error a bad config value raises, below everything that validates one (config, families)."""
from __future__ import annotations


class ConfigError(ValueError):
    """A bad config value: which field, why, and (for named choices) the valid ones. `more`: the
    request's other bad values, so that one answer lists them all (`as_dicts`)."""

    def __init__(self, field: str, message: str, choices: list | None = None, more: tuple = ()):
        self.field, self.message, self.choices, self.more = field, message, choices, tuple(more)
        hint = f" (valid: {', '.join(map(str, choices))})" if choices else ""
        super().__init__("; ".join([f"{field}: {message}{hint}", *map(str, self.more)]))

    @classmethod
    def of(cls, errors: list[ConfigError]) -> ConfigError:
        """One error carrying several: the first's field, message and choices, the rest in `more`."""
        first, *rest = errors
        return cls(first.field, first.message, first.choices, (*first.more, *rest))

    def as_dict(self):
        return {"field": self.field, "message": self.message, "choices": self.choices}

    def as_dicts(self) -> list[dict]:
        return [self.as_dict(), *(e.as_dict() for e in self.more)]
