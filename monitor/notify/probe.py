"""``monitor notify test``: send one sample alert straight to sinks, to check URLs and templates.

It bypasses the outbox (nothing is recorded or retried) and reports per sink whether the service
accepted the message, with Apprise's redacted reason when it did not.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass

from monitor.config import NotifySettings
from monitor.notify.apprise_sink import AppriseSink, DeliveryError
from monitor.notify.templates import Templates, sample_alert


@dataclass(frozen=True, slots=True)
class ProbeResult:
    """One sink's answer to the test message."""

    sink: str
    ok: bool
    error: str = ""


async def probe_sinks(notify: NotifySettings, names: Sequence[str] = ()) -> list[ProbeResult]:
    """Send the sample alert to the named sinks (all when none are named), concurrently."""
    unknown = sorted(set(names) - {sink.name for sink in notify.sinks})
    if unknown:
        raise ValueError(f"no sink is named {', '.join(map(repr, unknown))}")
    templates = Templates.from_settings(notify)
    chosen = [sink for sink in notify.sinks if not names or sink.name in names]
    alert = sample_alert()

    async def probe(settings_name: str, sink: AppriseSink) -> ProbeResult:
        message = templates.render(alert, sink.kind)
        try:
            await sink.send(f"[test] {message.title}", message.body, alert.severity)
        except DeliveryError as exc:
            return ProbeResult(settings_name, False, str(exc))
        return ProbeResult(settings_name, True)

    sinks = [
        AppriseSink(s.name, s.url.get_secret_value(), template=s.template, api_url=s.api_url, timeout=s.timeout)
        for s in chosen
    ]
    return list(await asyncio.gather(*(probe(sink.name, sink) for sink in sinks)))
