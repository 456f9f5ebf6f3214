"""The exceptions the monitor raises on purpose, so the CLI can turn each into one clear line."""

from __future__ import annotations


class MonitorError(Exception):
    """Base of every error the monitor reports to the user without a traceback."""

    exit_code = 1


class ConfigError(MonitorError):
    """The configuration is invalid; ``problems`` holds one ``(field path, message)`` per error."""

    exit_code = 2

    def __init__(self, problems: list[tuple[str, str]], source: str = "config") -> None:
        self.problems = problems
        self.source = source
        lines = "\n".join(f"  {path}: {message}" for path, message in problems)
        super().__init__(f"{source}: {len(problems)} error(s)\n{lines}")


class RedisUnavailable(MonitorError):
    """Redis could not be reached, or the embedded server could not be started."""


class PermanentError(Exception):
    """An entry that will never succeed however often it is retried; it goes to ``dead`` at once."""
