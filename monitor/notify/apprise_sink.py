"""One Apprise destination: checks its URL, sends a rendered message, and keeps the URL secret.

Apprise URLs carry credentials (bot tokens, webhook paths, passwords), so the URL is never logged,
never put in a repr or an error, and every part of it that could be a credential is handed to the log
redactor. Apprise's own retries are left off: the outbox retries with backoff and records the outcome.
"""

from __future__ import annotations

import logging
import re
from typing import Literal

import apprise

from monitor.schema import Severity

# Apprise logs through the stdlib logger "apprise", sometimes with the URL in the message; its
# messages are captured per call (AppriseResult logs) and redacted here, never printed directly.
_apprise_logger = logging.getLogger("apprise")
_apprise_logger.propagate = False
_apprise_logger.addHandler(logging.NullHandler())

TemplateKind = Literal["short", "full"]

# Schemes whose messages are read in a mailbox or by a program: they get the full template.
FULL_TEMPLATE_SCHEMES = frozenset(
    {
        "mailto",
        "mailtos",
        "json",
        "jsons",
        "xml",
        "xmls",
        "form",
        "forms",
        "ses",
        "sendgrid",
        "mailgun",
        "sparkpost",
        "smtp2go",
        "resend",
        "o365",
        "azure",
    }
)
TELEGRAM_SCHEMES = frozenset({"tgram"})

NOTIFY_TYPE: dict[Severity, str] = {
    "info": apprise.NotifyType.INFO,
    "low": apprise.NotifyType.INFO,
    "medium": apprise.NotifyType.WARNING,
    "high": apprise.NotifyType.WARNING,
    "critical": apprise.NotifyType.FAILURE,
}

_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.\-]*)://")
_URL_PARTS = re.compile(r"[/?&=@:,#;+]")
_HOSTNAME = re.compile(r"^(?:[A-Za-z0-9\-]+\.)+[A-Za-z0-9\-]+$|^localhost$")
REDACTED = "***"


class DeliveryError(Exception):
    """A sink did not accept a message; the text says why, with every credential removed."""


def scheme_of(url: str) -> str:
    """The lowercased scheme of an Apprise URL, or ``""``."""
    match = _SCHEME.match(url.strip())
    return match.group(1).lower() if match else ""


def check_url(url: str) -> str | None:
    """Why Apprise cannot use ``url`` (naming only its scheme), or None when it can."""
    scheme = scheme_of(url)
    if not scheme:
        return "not an Apprise URL: it needs a scheme such as tgram://, slack://, mailto:// or json://"
    plugin = apprise.Apprise.instantiate(url, suppress_exceptions=True)
    if plugin is None:
        return f"Apprise cannot use this {scheme}:// URL: unknown scheme or malformed URL (see Apprise's URL formats)"
    return None


def url_secrets(url: str) -> list[str]:
    """The whole URL and each part of it that could be a credential, for the log redactor.

    Host names and IP addresses and short parts (chat ids, ports) are kept out: scrubbing them from
    every log line would hide more than it protects.
    """
    url = url.strip()
    scheme = scheme_of(url)
    rest = url[len(scheme) + 3 :] if scheme else url
    parts = {url, rest}
    for part in _URL_PARTS.split(rest):
        if len(part) >= 6 and not _HOSTNAME.match(part):
            parts.add(part)
    # Telegram bot tokens are "<bot id>:<secret>": keep the pair too.
    parts.update(re.findall(r"\d{5,}:[A-Za-z0-9_\-]{10,}", rest))
    return sorted((p for p in parts if len(p) >= 6), key=len, reverse=True)


def redact(text: str, secrets: list[str]) -> str:
    """``text`` with every secret replaced by ``***``."""
    for secret in secrets:
        if secret in text:
            text = text.replace(secret, REDACTED)
    return text


class AppriseSink:
    """Sends title and body to one Apprise URL; raises DeliveryError (redacted) when it is not accepted."""

    def __init__(
        self,
        name: str,
        url: str,
        *,
        template: Literal["auto", "short", "full"] = "auto",
        api_url: str | None = None,
        timeout: float = 30.0,
    ) -> None:
        self.name = name
        self.scheme = scheme_of(url)
        self.timeout = timeout
        self.kind: TemplateKind = (
            template if template != "auto" else ("full" if self.scheme in FULL_TEMPLATE_SCHEMES else "short")
        )
        self._secrets = url_secrets(url)
        plugin = apprise.Apprise.instantiate(url, suppress_exceptions=True)
        if plugin is None:
            raise ValueError(f"sink {name!r}: Apprise cannot use this {self.scheme}:// URL")
        if api_url and self.scheme in TELEGRAM_SCHEMES:
            # The Telegram plugin builds every request from notify_url + token; an instance attribute
            # points this one sink at another Bot API server without touching other sinks.
            # The attribute is defined on the Telegram plugin class, not on the NotifyBase type returned.
            plugin.notify_url = api_url.rstrip("/") + "/bot"  # type: ignore[attr-defined]
        self._apprise = apprise.Apprise()
        self._apprise.add(plugin)

    def __repr__(self) -> str:
        return f"AppriseSink(name={self.name!r}, scheme={self.scheme!r}, template={self.kind!r})"

    async def send(self, title: str, body: str, severity: Severity = "medium") -> None:
        """Deliver one message; DeliveryError when the service did not accept it."""
        try:
            result = await self._apprise.async_notify(
                body=body,
                title=title,
                notify_type=NOTIFY_TYPE.get(severity, apprise.NotifyType.INFO),
                body_format=apprise.NotifyFormat.TEXT,
                timeout=self.timeout,
            )
        except Exception as exc:  # noqa: BLE001 - any plugin failure is a failed delivery, reported redacted
            raise DeliveryError(redact(f"{type(exc).__name__}: {exc}", self._secrets)) from None
        if result:
            return
        messages = [entry.message for entry in result.logs() if entry.level in ("WARNING", "ERROR", "CRITICAL")]
        reason = "; ".join(dict.fromkeys(messages)) or f"Apprise reported {result.status.name.lower()}"
        raise DeliveryError(redact(reason, self._secrets)[:1000])
