"""What every live collector shares: checkpoints, and publishing that moves them only after Redis accepted.

A collector reads a channel from its checkpoint onwards, turns what it read into RawItems and hands
them to ``Emitter.emit`` together with the new checkpoint value. The items go through the idempotent
publisher first; only when Redis has accepted all of them is the checkpoint written. If Redis is
unavailable the call raises and the checkpoint stays where it was, so the next attempt re-reads the
same range and the add-once keys drop whatever did get through.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

from monitor.bus.keys import Keys
from monitor.bus.publish import Publisher
from monitor.bus.redis import Redis
from monitor.metrics import Metrics
from monitor.schema import RawItem


class Checkpoints:
    """``{prefix}:cursor:{source}:{channel}``: the last message id, since_id or ETag per channel."""

    def __init__(self, redis: Redis, keys: Keys) -> None:
        self.redis = redis
        self.keys = keys

    async def get(self, source: str, channel: str) -> str | None:
        value = await self.redis.get(self.keys.cursor(source, channel))
        return value.decode() if isinstance(value, bytes) else value

    async def get_int(self, source: str, channel: str) -> int:
        """The checkpoint as a message id (0 when there is none yet)."""
        value = await self.get(source, channel)
        try:
            return int(value) if value else 0
        except ValueError:
            return 0

    async def set(self, source: str, channel: str, value: str | int) -> None:
        await self.redis.set(self.keys.cursor(source, channel), str(value))

    async def advance(self, source: str, channel: str, message_id: int) -> None:
        """Raise an integer checkpoint to ``message_id``; never move it backwards."""
        if message_id > await self.get_int(source, channel):
            await self.set(source, channel, message_id)


@dataclass(slots=True)
class EmitResult:
    """What one emit did."""

    published: int = 0
    duplicates: int = 0


class Emitter:
    """Publishes a collector's items, then moves its checkpoint and updates its metrics."""

    def __init__(self, publisher: Publisher, checkpoints: Checkpoints, metrics: Metrics) -> None:
        self.publisher = publisher
        self.checkpoints = checkpoints
        self.metrics = metrics
        self._newest: dict[tuple[str, str], float] = {}

    async def emit(
        self, source: str, channel: str, items: Sequence[RawItem], *, checkpoint: str | int | None = None
    ) -> EmitResult:
        """Publish ``items`` (add-once), then set the checkpoint. Raises (checkpoint untouched) on Redis errors."""
        result = EmitResult()
        if items:
            ids = await self.publisher.publish_raw(items)
            result.duplicates = ids.count(None)
            result.published = len(ids) - result.duplicates
            if result.published:
                self.metrics.collected.labels(source, channel).inc(result.published)
            newest = max((i.published_at or i.collected_at for i in items), default=None)
            if newest is not None:
                # Never backwards: an edit of an old post or a late catch-up fill carries an old date.
                moment = max(newest.timestamp(), self._newest.get((source, channel), 0.0))
                self._newest[(source, channel)] = moment
                self.metrics.collector_last_item.labels(source, channel).set(moment)
        if checkpoint is not None:
            if isinstance(checkpoint, int):
                await self.checkpoints.advance(source, channel, checkpoint)
            else:
                await self.checkpoints.set(source, channel, checkpoint)
        return result

    def error(self, source: str, channel: str, kind: str) -> None:
        """Count a collector error of a bounded ``kind`` (http_5xx, rate_limited, parse, ...)."""
        self.metrics.collector_errors.labels(source, channel, kind).inc()


def now_ts() -> float:
    """Wall-clock seconds, for gauges."""
    return time.time()
