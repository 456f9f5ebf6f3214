"""structlog set-up: a console renderer on a TTY, JSON lines otherwise, secrets always redacted.

Logs go to stderr so stdout stays free for alerts and command output. The redactor masks values of
secret-looking keys (tokens, hashes, passwords, session strings, webhook URLs), every configured secret
value wherever it appears in a message, and credentials embedded in URLs.
"""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import Iterable, MutableMapping
from typing import Any, TextIO

import structlog
from pydantic import SecretStr

from monitor.config import LogSettings

REDACTED = "***"
_SECRET_KEY = re.compile(r"(token|secret|password|passwd|api_hash|session_string|webhook|authorization|bearer)", re.I)
_URL_CREDENTIALS = re.compile(r"(?P<scheme>[a-z][a-z0-9+.\-]*://)(?P<user>[^:/@\s]*):(?P<pw>[^@/\s]+)@", re.I)
_BEARER = re.compile(r"(Bearer\s+)[A-Za-z0-9\-._~+/%]+=*", re.I)


class Redactor:
    """A structlog processor that scrubs secrets from every event."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        self.secrets = sorted({s for s in secrets if s}, key=len, reverse=True)

    def scrub(self, text: str) -> str:
        for secret in self.secrets:
            if secret in text:
                text = text.replace(secret, REDACTED)
        text = _URL_CREDENTIALS.sub(lambda m: f"{m['scheme']}{m['user']}:{REDACTED}@", text)
        return _BEARER.sub(lambda m: f"{m.group(1)}{REDACTED}", text)

    def _value(self, key: str, value: Any) -> Any:
        if isinstance(value, SecretStr):
            return REDACTED
        if _SECRET_KEY.search(key) and value not in (None, "", False):
            return REDACTED
        if isinstance(value, str):
            return self.scrub(value)
        if isinstance(value, dict):
            return {k: self._value(str(k), v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [self._value(key, v) for v in value]
        return value

    def __call__(self, _: Any, __: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
        for key in list(event.keys()):
            event[key] = self._value(key, event[key])
        return event


class _CurrentStderr:
    """Writes to whatever ``sys.stderr`` is at the time, so a rich progress bar that redirects stderr
    prints log lines above the bar instead of through it."""

    def write(self, text: str) -> int:
        return sys.stderr.write(text)

    def flush(self) -> None:
        sys.stderr.flush()

    def isatty(self) -> bool:
        return sys.stderr.isatty()


def configure_logging(
    settings: LogSettings | None = None, *, secrets: Iterable[str] = (), stream: TextIO | None = None
) -> None:
    """Configure structlog for the process (console on a TTY unless ``log.format`` says otherwise)."""
    settings = settings or LogSettings()
    out: Any = stream or _CurrentStderr()
    fmt = settings.format
    if fmt == "auto":
        fmt = "console" if out.isatty() else "json"
    renderer: Any
    if fmt == "console":
        renderer = structlog.dev.ConsoleRenderer(colors=out.isatty())
        exc: Any = structlog.dev.set_exc_info
    else:
        renderer = structlog.processors.JSONRenderer()
        exc = structlog.processors.dict_tracebacks
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            exc,
            Redactor(secrets),
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(getattr(logging, settings.level.upper())),
        logger_factory=structlog.PrintLoggerFactory(file=out),
        cache_logger_on_first_use=False,
    )
