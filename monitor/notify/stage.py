"""The notifier stage: alerts stream -> every configured sink, each (alert, sink) delivered once.

A delivery is recorded per (alert, sink) after it succeeds, so a redelivered alert is not sent again to
the sinks that already have it, and a sink that failed is retried without repeating the others.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Protocol

import structlog
from redis.asyncio.client import Pipeline

from monitor.bus.consume import Entry, Outcome
from monitor.bus.keys import GROUP_NOTIFIER, Keys
from monitor.bus.publish import Publisher
from monitor.bus.redis import Redis
from monitor.metrics import Metrics
from monitor.schema import Alert, decode_entry

log = structlog.get_logger(__name__)


class Sink(Protocol):
    """Where alerts go."""

    name: str

    async def send(self, alert: Alert) -> None: ...


class NotifierStage:
    """Consumes ``alerts`` in group ``notifier``; sends each to every sink."""

    name = "notifier"
    group = GROUP_NOTIFIER

    def __init__(self, redis: Redis, keys: Keys, sinks: Sequence[Sink], metrics: Metrics, ttl: float) -> None:
        self.redis = redis
        self.publisher = Publisher(redis, keys, ttl)
        self.keys = keys
        self.stream = keys.alerts
        self.sinks = list(sinks)
        self.metrics = metrics
        self.ttl = max(1, int(ttl))
        self._seconds = metrics.stage_seconds.labels(self.name)
        self._sent_incs: dict[str, Callable[[], None]] = {}

    async def handle(self, entries: Sequence[Entry]) -> list[Outcome | BaseException]:
        decoded: list[Alert | BaseException] = []
        for _, fields in entries:
            try:
                decoded.append(decode_entry(Alert, fields))
            except Exception as exc:  # noqa: BLE001 - recorded per entry
                decoded.append(exc)
        alerts = [a for a in decoded if isinstance(a, Alert)]
        pairs = [(a.alert_id, s.name) for a in alerts for s in self.sinks]
        flags = await self.redis.mget([self.keys.delivered(sink, aid) for aid, sink in pairs]) if pairs else []
        done = {pair: flag is not None for pair, flag in zip(pairs, flags, strict=True)}
        results: list[Outcome | BaseException] = []
        delivered_batch: list[str] = []
        last_outcome: Outcome | None = None
        for alert in decoded:
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
            else:
                delivered_batch.extend(delivered)
                last_outcome = Outcome(source=alert.source)
                results.append(last_outcome)
        if last_outcome is not None and delivered_batch:  # one call records every delivery of the batch
            last_outcome.extra = self._record(delivered_batch)
        return results

    def _sent(self, sink: str) -> None:
        inc = self._sent_incs.get(sink)
        if inc is None:
            inc = self._sent_incs[sink] = self.metrics.notifications.labels(sink, "sent").inc
        inc()

    def _record(self, keys: list[str]) -> Callable[[Pipeline], None]:
        def queue(pipe: Pipeline) -> None:
            self.publisher.queue_marks(pipe, keys)

        return queue
