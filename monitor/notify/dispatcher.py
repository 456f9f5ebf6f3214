"""Delivery to one sink: claims due alerts from its outbox, folds bursts into digests, sends, records.

One dispatcher runs per sink, so a slow or failing sink never holds up the others. Within a sink at
most ``concurrency`` sends are in flight (Apprise sends from a thread pool). Each claim is first charged
against the sink's rate budget: when more messages are due than the budget allows, the overflow is
folded into one digest message; when the budget is spent, the alerts wait for the next window.
Alerts of a rule with ``aggregate`` arrive together (their due time is the end of their period) and
go out as one digest per rule and period.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Protocol

import msgspec
import structlog
from redis.exceptions import RedisError

from monitor.metrics import Metrics
from monitor.notify.apprise_sink import DeliveryError, TemplateKind
from monitor.notify.outbox import Claimed, Outbox, RetryPolicy
from monitor.notify.templates import SEVERITY_RANK, Message, Story, Templates
from monitor.schema import Alert, Severity, decode

log = structlog.get_logger(__name__)


class MessageSink(Protocol):
    """Something that takes a rendered message (AppriseSink, or a test double)."""

    name: str
    kind: TemplateKind

    async def send(self, title: str, body: str, severity: Severity = "medium") -> None: ...


@dataclass(frozen=True, slots=True)
class DispatchLimits:
    """A sink's pacing: rate budget, digest size, concurrency, retries and the per-send timeout."""

    rate_limit: int = 20
    rate_window: float = 60.0
    digest_max: int = 50
    concurrency: int = 4
    timeout: float = 30.0
    retry: RetryPolicy = field(default_factory=RetryPolicy)

    @property
    def lease(self) -> float:
        """How long a claim is held: long enough for every send one claim can lead to, plus a margin."""
        sends = min(self.digest_max, self.rate_limit)
        return self.timeout * math.ceil(sends / self.concurrency) + 10.0


@dataclass(slots=True)
class _Unit:
    """What becomes one message: one alert, or several folded into a digest."""

    claims: list[Claimed]
    alerts: list[Alert]


class SinkDispatcher:
    """Runs the delivery loop for one sink."""

    def __init__(
        self,
        sink: MessageSink,
        outbox: Outbox,
        templates: Templates,
        metrics: Metrics,
        limits: DispatchLimits | None = None,
        *,
        poll_interval: float = 1.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.sink = sink
        self.outbox = outbox
        self.templates = templates
        self.metrics = metrics
        self.limits = limits or DispatchLimits()
        self.poll_interval = poll_interval
        self.clock = clock
        self.wake = asyncio.Event()
        self._semaphore = asyncio.Semaphore(self.limits.concurrency)
        name = sink.name
        self._sent = metrics.notifications.labels(name, "sent")
        self._failed = metrics.notifications.labels(name, "failed")
        self._dead = metrics.notifications.labels(name, "dead")
        self._limited = metrics.notifications.labels(name, "rate_limited")
        self._seconds = metrics.notification_seconds.labels(name)

    async def run(self, stop: asyncio.Event) -> None:
        """Deliver until ``stop`` is set; Redis outages are waited out."""
        while not stop.is_set():
            self.wake.clear()
            try:
                handled = await self.step()
            except (RedisError, OSError) as exc:
                log.warning("notification outbox unavailable; retrying", sink=self.sink.name, error=str(exc))
                handled = 0
            if handled:
                continue
            await self._idle(stop)

    async def _idle(self, stop: asyncio.Event) -> None:
        """Sleep until woken, stopped, the next alert is due, or the poll interval passes."""
        timeout = self.poll_interval
        with contextlib.suppress(RedisError, OSError):
            due = await self.outbox.next_due()
            if due is not None:
                timeout = min(timeout, max(0.01, due - self.clock()))
        waiters = [asyncio.ensure_future(self.wake.wait()), asyncio.ensure_future(stop.wait())]
        try:
            await asyncio.wait(waiters, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiter in waiters:
                waiter.cancel()

    async def step(self) -> int:
        """Claim what is due and deliver it; returns how many alerts were handled (0 = nothing to do now)."""
        now = self.clock()
        claims = await self.outbox.claim(now, self.limits.lease, self.limits.digest_max)
        if not claims:
            return 0
        units = await self._units(claims, now)
        if not units:
            return len(claims)
        granted, window_left = await self.outbox.take_budget(
            len(units), self.limits.rate_limit, self.limits.rate_window, now
        )
        if granted == 0:
            waiting = [claim for unit in units for claim in unit.claims]
            self._limited.inc(len(waiting))
            await self.outbox.postpone(waiting, now + window_left)
            return 0
        if granted < len(units):
            # Over budget: send the first granted-1 as they are and fold the rest into one digest.
            folded = units[granted - 1 :]
            self._limited.inc(sum(len(unit.claims) for unit in folded))
            units = [
                *units[: granted - 1],
                _Unit([c for u in folded for c in u.claims], [a for u in folded for a in u.alerts]),
            ]
        await asyncio.gather(*(self._deliver(unit) for unit in units))
        return len(claims)

    async def _units(self, claims: list[Claimed], now: float) -> list[_Unit]:
        """Decode the claimed alerts and group them: one unit per alert, or per digest key."""
        units: list[_Unit] = []
        by_digest: dict[str, _Unit] = {}
        broken: list[tuple[Claimed, str]] = []
        for claim in claims:
            try:
                alert = decode(Alert, claim.data)
            except (msgspec.DecodeError, msgspec.ValidationError, ValueError) as exc:
                broken.append((claim, f"undecodable alert in the outbox: {exc}"))
                continue
            if not claim.digest_key:
                units.append(_Unit([claim], [alert]))
                continue
            unit = by_digest.get(claim.digest_key)
            if unit is None:
                unit = by_digest[claim.digest_key] = _Unit([], [])
                units.append(unit)
            unit.claims.append(claim)
            unit.alerts.append(alert)
        for claim, error in broken:  # no retry can fix these: straight to the dead stream
            await self.outbox.failed([claim], error, now, RetryPolicy(max_attempts=1))
            self._dead.inc()
            log.error("notification dropped to the dead stream", sink=self.sink.name, error=error)
        return units

    async def _stories(self, alerts: list[Alert]) -> dict[str, Story]:
        """For alerts with a story cluster: how many other posts it has so far, and its first post."""
        clusters = sorted({a.cluster_id for a in alerts if a.cluster_id})
        if not clusters:
            return {}
        keys = self.outbox.keys
        pipe = self.outbox.redis.pipeline(transaction=False)
        for cluster in clusters:
            pipe.zcard(keys.cluster_members(cluster))
            pipe.zrange(keys.cluster_members(cluster), 0, 0, withscores=True)
        replies = await pipe.execute()
        stories: dict[str, Story] = {}
        for index, cluster in enumerate(clusters):
            size, first = int(replies[2 * index]), replies[2 * index + 1]
            if not first:
                stories[cluster] = Story(max(0, size - 1))
                continue
            member, score = first[0]
            item_id = member.decode() if isinstance(member, bytes) else str(member)
            stories[cluster] = Story(max(0, size - 1), item_id, datetime.fromtimestamp(float(score), UTC))
        return stories

    def _render(self, unit: _Unit, stories: dict[str, Story]) -> Message:
        if len(unit.alerts) == 1:
            return self.templates.render(unit.alerts[0], self.sink.kind, stories)
        return self.templates.render_digest(unit.alerts, self.sink.kind, stories)

    async def _deliver(self, unit: _Unit) -> None:
        """Send one message and record the outcome for every alert in it."""
        error: str | None = None
        severity: Severity = max((a.severity for a in unit.alerts), key=SEVERITY_RANK.__getitem__)
        try:
            stories = await self._stories(unit.alerts)
        except (RedisError, OSError):
            stories = {}  # the story is a nicety; never fail a delivery for it
        async with self._semaphore:
            started = time.perf_counter()
            try:
                message = self._render(unit, stories)
                await self.sink.send(message.title, message.body, severity)
            except DeliveryError as exc:
                error = str(exc)
            except Exception as exc:  # noqa: BLE001 - a template or plugin bug is a failed delivery, not a crash
                error = f"{type(exc).__name__}: {exc}"
            finally:
                self._seconds.observe(time.perf_counter() - started)
        if error is None:
            await self.outbox.delivered(unit.claims)
            self._sent.inc(len(unit.claims))
            kind = "single" if len(unit.claims) == 1 else "digest"
            self.metrics.notification_messages.labels(self.sink.name, kind).inc()
            return
        dead = await self.outbox.failed(unit.claims, error, self.clock(), self.limits.retry)
        self._failed.inc(len(unit.claims))
        if dead:
            self._dead.inc(len(dead))
            self.metrics.dead_letters.labels(f"notify:{self.sink.name}").inc(len(dead))
            log.error(
                "notification failed for good; alert moved to the dead stream",
                sink=self.sink.name,
                alerts=len(dead),
                attempts=self.limits.retry.max_attempts,
                error=error,
            )
        else:
            log.warning("notification failed; will retry", sink=self.sink.name, alerts=len(unit.claims), error=error)
