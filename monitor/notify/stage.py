"""The notifier stage: alerts stream -> the console (at once) and each routed sink's outbox.

Local sinks such as the console are written to while the batch is handled; a delivery is recorded per
(alert, sink) after it succeeds, so a redelivered alert is not printed twice. Remote sinks (Apprise) are
not sent to here: the alert is put in each routed sink's outbox in the same pipeline as the ack, and
that sink's dispatcher delivers it with retries, rate limits and digests. Nothing is acked before it
is either delivered or safely in an outbox.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Protocol

import structlog
from redis.asyncio.client import Pipeline

from monitor.bus.consume import Entry, Outcome
from monitor.bus.keys import GROUP_NOTIFIER, Keys
from monitor.bus.publish import Publisher
from monitor.bus.redis import Redis
from monitor.metrics import Metrics
from monitor.notify.outbox import Outbox
from monitor.notify.routing import Router
from monitor.schema import Alert, decode_entry

log = structlog.get_logger(__name__)


class Sink(Protocol):
    """A local sink: written to directly by the stage (the console, or a test collector)."""

    name: str

    async def send(self, alert: Alert) -> None: ...


def digest_slot(alert: Alert, period: float) -> tuple[float, str]:
    """For a rule with ``aggregate``: when the alert's period ends (its due time) and the period's key."""
    start = math.floor(alert.fired_at.timestamp() / period) * period
    return start + period, f"{alert.rule}:{int(start)}"


class NotifierStage:
    """Consumes ``alerts`` in group ``notifier``: local sinks at once, remote sinks through outboxes."""

    name = "notifier"
    group = GROUP_NOTIFIER

    def __init__(
        self,
        redis: Redis,
        keys: Keys,
        sinks: Sequence[Sink],
        metrics: Metrics,
        ttl: float,
        *,
        outboxes: Mapping[str, Outbox] | None = None,
        router: Router | None = None,
        aggregate_for: Callable[[str], float] | None = None,
        on_queued: Callable[[set[str]], None] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.redis = redis
        self.publisher = Publisher(redis, keys, ttl)
        self.keys = keys
        self.stream = keys.alerts
        self.sinks = list(sinks)
        self.outboxes = dict(outboxes or {})
        self.router = router
        self.aggregate_for = aggregate_for or (lambda _rule: 0.0)
        self.on_queued = on_queued
        self.clock = clock
        self.metrics = metrics
        self.ttl = max(1, int(ttl))
        self._seconds = metrics.stage_seconds.labels(self.name)
        self._sent_incs: dict[str, Callable[[], None]] = {}

    def _routed(self, alert: Alert) -> list[str]:
        if self.router is None:
            return []
        return [name for name in self.router.sinks_for(alert) if name in self.outboxes]

    async def handle(self, entries: Sequence[Entry]) -> list[Outcome | BaseException]:
        decoded: list[Alert | BaseException] = []
        for _, fields in entries:
            try:
                decoded.append(decode_entry(Alert, fields))
            except Exception as exc:  # noqa: BLE001 - recorded per entry
                decoded.append(exc)
        alerts = [a for a in decoded if isinstance(a, Alert)]
        routes = {a.alert_id: self._routed(a) for a in alerts}
        pairs = [(a.alert_id, s.name) for a in alerts for s in self.sinks]
        pairs += [(a.alert_id, name) for a in alerts for name in routes[a.alert_id]]
        flags = await self.redis.mget([self.keys.delivered(sink, aid) for aid, sink in pairs]) if pairs else []
        done = {pair: flag is not None for pair, flag in zip(pairs, flags, strict=True)}
        results: list[Outcome | BaseException] = []
        delivered_batch: list[str] = []
        queued: list[tuple[str, Alert, bytes]] = []
        last_outcome: Outcome | None = None
        for (_, fields), alert in zip(entries, decoded, strict=True):
            if not isinstance(alert, Alert):
                results.append(alert)
                continue
            started = time.perf_counter()
            error: BaseException | None = None
            delivered: list[str] = []
            for sink in self.sinks:
                if done[(alert.alert_id, sink.name)]:
                    continue
                try:
                    await sink.send(alert)
                except Exception as exc:  # noqa: BLE001 - a failing sink must not stop the others
                    self.metrics.notifications.labels(sink.name, "failed").inc()
                    log.warning("notification failed", sink=sink.name, rule=alert.rule, error=str(exc))
                    error = exc
                    continue
                self._sent(sink.name)
                delivered.append(self.keys.delivered(sink.name, alert.alert_id))
            self._seconds.observe(time.perf_counter() - started)
            if error is not None:
                # Record the sinks that did get it now, so the retry only repeats the failed one.
                if delivered:
                    record = self.redis.pipeline(transaction=False)
                    for key in delivered:
                        record.set(key, b"1", ex=self.ttl)
                    await record.execute()
                results.append(error)
                continue
            delivered_batch.extend(delivered)
            data = fields[b"data"]
            queued.extend((name, alert, data) for name in routes[alert.alert_id] if not done[(alert.alert_id, name)])
            last_outcome = Outcome(source=alert.source)
            results.append(last_outcome)
        if last_outcome is not None and (delivered_batch or queued):  # one place writes the whole batch
            last_outcome.extra = self._record(delivered_batch, queued)
            if queued and self.on_queued is not None:
                names = {name for name, _, _ in queued}
                callback = self.on_queued
                last_outcome.on_written = lambda: callback(names)
        return results

    def _sent(self, sink: str) -> None:
        inc = self._sent_incs.get(sink)
        if inc is None:
            inc = self._sent_incs[sink] = self.metrics.notifications.labels(sink, "sent").inc
        inc()

    def _record(self, marks: list[str], queued: list[tuple[str, Alert, bytes]]) -> Callable[[Pipeline], None]:
        now = self.clock()

        def queue(pipe: Pipeline) -> None:
            if marks:
                self.publisher.queue_marks(pipe, marks)
            for name, alert, data in queued:
                period = self.aggregate_for(alert.rule)
                if period > 0:
                    due, key = digest_slot(alert, period)
                    self.outboxes[name].queue(pipe, alert.alert_id, data, due, key)
                else:
                    self.outboxes[name].queue(pipe, alert.alert_id, data, now)

        return queue
