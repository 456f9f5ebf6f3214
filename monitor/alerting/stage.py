"""The alerter stage: items stream -> AlertEngine -> alerts stream, each alert written once."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

from monitor.alerting.engine import AlertEngine
from monitor.bus.consume import Emit, Entry, Outcome
from monitor.bus.keys import GROUP_ALERTER, Keys
from monitor.metrics import Metrics
from monitor.schema import Item, decode_entry, encode


class AlerterStage:
    """Consumes ``items`` in group ``alerter``; writes Alerts to ``alerts``."""

    name = "alerter"
    group = GROUP_ALERTER

    def __init__(self, keys: Keys, engine: AlertEngine, metrics: Metrics) -> None:
        self.keys = keys
        self.stream = keys.items
        self.engine = engine
        self.metrics = metrics
        self._seconds = metrics.stage_seconds.labels(self.name)
        metrics.rules_loaded.set(engine.rule_count)
        self._incs: dict[str, Callable[[], None]] = {}

    def _counter(self, rule: str, severity: str) -> Callable[[], None]:
        """The bound ``inc`` of the alerts counter for one rule (cached: labels() is not free)."""
        inc = self._incs.get(rule)
        if inc is None:
            inc = self._incs[rule] = self.metrics.alerts.labels(rule, severity).inc
        return inc

    async def handle(self, entries: Sequence[Entry]) -> list[Outcome | BaseException]:
        results: list[Outcome | BaseException] = []
        for _, fields in entries:
            started = time.perf_counter()
            try:
                item = decode_entry(Item, fields)
                alerts = self.engine.evaluate(item)
            except Exception as exc:  # noqa: BLE001 - every failure is recorded per entry, never lost
                results.append(exc)
                continue
            emits = [
                Emit(
                    self.keys.alerts,
                    self.keys.seen_alert(alert.alert_id),
                    encode(alert),
                    on_written=self._counter(alert.rule, alert.severity),
                )
                for alert in alerts
            ]
            results.append(Outcome(emits=emits, source=item.source))
            self._seconds.observe(time.perf_counter() - started)
        return results
