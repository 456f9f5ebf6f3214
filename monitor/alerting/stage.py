"""The alerter stage: items stream -> AlertEngine -> alerts stream, each alert written once."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

from redis.asyncio.client import Pipeline

from monitor.alerting.engine import AlertEngine
from monitor.alerting.windows import Windows
from monitor.bus.consume import Emit, Entry, Outcome
from monitor.bus.keys import GROUP_ALERTER, Keys
from monitor.config import Rule
from monitor.metrics import Metrics
from monitor.schema import Alert, Item, decode_entry, encode


class AlerterStage:
    """Consumes ``items`` in group ``alerter``; writes Alerts to ``alerts``."""

    name = "alerter"
    group = GROUP_ALERTER

    def __init__(self, keys: Keys, engine: AlertEngine, metrics: Metrics, windows: Windows | None = None) -> None:
        self.keys = keys
        self.stream = keys.items
        self.engine = engine
        self.windows = windows
        self.metrics = metrics
        self._seconds = metrics.stage_seconds.labels(self.name)
        metrics.rules_loaded.set(engine.rule_count)
        self._incs: dict[str, Callable[[], None]] = {}
        self._alerted_item = ""

    def _counter(self, rule: str, severity: str) -> Callable[[], None]:
        """The bound ``inc`` of the alerts counter for one rule (cached: labels() is not free)."""
        inc = self._incs.get(rule)
        if inc is None:
            inc = self._incs[rule] = self.metrics.alerts.labels(rule, severity).inc
        return inc

    def _emit(self, alert: Alert, item: Item | None = None) -> Emit:
        """The add-once write of ``alert``; with ``item``, its writing also counts the item as alerted."""
        counted = self._counter(alert.rule, alert.severity)
        if item is None:
            return Emit(self.keys.alerts, self.keys.seen_alert(alert.alert_id), encode(alert), on_written=counted)

        def written() -> None:
            counted()
            self._item_alerted(item)

        return Emit(self.keys.alerts, self.keys.seen_alert(alert.alert_id), encode(alert), on_written=written)

    def _item_alerted(self, item: Item) -> None:
        """Per-channel alerted count and the end-to-end delays, once per item (at its first new alert)."""
        if self._alerted_item == item.id:
            return
        self._alerted_item = item.id
        self.metrics.items_alerted.labels(item.source, item.channel).inc()
        now = time.time()
        self.metrics.end_to_end.labels(item.source, "collected").observe(max(0.0, now - item.collected_at.timestamp()))
        if item.published_at is not None:
            delay = max(0.0, now - item.published_at.timestamp())
            self.metrics.end_to_end.labels(item.source, "published").observe(delay)

    async def handle(self, entries: Sequence[Entry]) -> list[Outcome | BaseException]:
        results: list[Outcome | BaseException] = []
        rules = self.engine.rules_by_name  # the engine may be swapped by a reload: read it per batch
        windowed: list[tuple[Item, Alert, Rule]] = []
        owners: list[Outcome] = []
        for _, fields in entries:
            started = time.perf_counter()
            try:
                item = decode_entry(Item, fields)
                alerts = self.engine.evaluate(item)
            except Exception as exc:  # noqa: BLE001 - every failure is recorded per entry, never lost
                results.append(exc)
                continue
            outcome = Outcome(source=item.source)
            for alert in alerts:
                rule = rules[alert.rule]
                if rule.type != "match" and self.windows is not None:
                    windowed.append((item, alert, rule))
                    owners.append(outcome)
                else:
                    outcome.emits.append(self._emit(alert, item))
            results.append(outcome)
            self._seconds.observe(time.perf_counter() - started)
        if windowed and self.windows is not None:
            decisions = await self.windows.decide(windowed)
            for outcome, decision, (item, _, _) in zip(owners, decisions, windowed, strict=True):
                if decision is None:
                    continue
                outcome.emits.append(self._emit(decision.alert, item))
                outcome.extra = _chain(outcome.extra, decision.writes)
        return results


def _chain(
    first: Callable[[Pipeline], None] | None, more: list[Callable[[Pipeline], None]]
) -> Callable[[Pipeline], None] | None:
    """One ``extra`` that queues ``first`` and then each of ``more``."""
    if not more:
        return first

    def queue(pipe: Pipeline) -> None:
        if first is not None:
            first(pipe)
        for write in more:
            write(pipe)

    return queue
