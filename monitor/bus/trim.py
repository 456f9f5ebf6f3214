"""Stream trimming that never drops an entry some consumer group has not acknowledged.

``XADD ... MAXLEN ~`` would silently drop a lagging group's backlog, so entries are added without a
cap and this trimmer runs on a timer instead. Per stream it computes

* the *safe point*: the oldest entry still pending in, or not yet delivered to, any group;
* the *retention point*: entries older than ``max_age`` or beyond the newest ``max_entries`` may go;

and runs ``XTRIM MINID`` up to the older of the two. Only when a stream exceeds ``hard_max_entries``
(a guard against filling memory) are unacknowledged entries dropped; that loss is counted in
``warwatch_stream_trim_lost_total`` and logged as an error.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass

import structlog
from redis.exceptions import RedisError, ResponseError

from monitor.bus.keys import Keys
from monitor.bus.redis import Redis
from monitor.config import RetentionSettings
from monitor.metrics import Metrics

log = structlog.get_logger(__name__)

_COUNT_CHUNK = 5000  # entries read per step when locating the count-retention cutoff


def parse_id(entry_id: bytes | str) -> tuple[int, int]:
    """``b"1700000000000-3"`` -> ``(1700000000000, 3)``."""
    text = entry_id.decode() if isinstance(entry_id, bytes) else entry_id
    ms, _, seq = text.partition("-")
    return int(ms), int(seq or 0)


def format_id(parts: tuple[int, int]) -> str:
    return f"{parts[0]}-{parts[1]}"


def next_id(entry_id: bytes | str) -> tuple[int, int]:
    """The smallest id greater than ``entry_id``."""
    ms, seq = parse_id(entry_id)
    return (ms, seq + 1)


async def safe_point(redis: Redis, stream: str) -> tuple[int, int] | None:
    """The oldest id some group still needs (pending or undelivered); None when the stream has no groups."""
    try:
        groups = await redis.xinfo_groups(stream)
    except ResponseError:  # no such stream
        return None
    if not groups:
        return None
    points: list[tuple[int, int]] = []
    for group in groups:
        point = next_id(group["last-delivered-id"])
        if int(group["pending"]) > 0:
            summary = await redis.xpending(stream, group["name"])
            if summary and summary.get("min"):
                point = min(point, parse_id(summary["min"]))
        points.append(point)
    return min(points)


@dataclass(slots=True)
class TrimResult:
    """What one trim of one stream did."""

    stream: str
    trimmed: int = 0
    lost: int = 0
    safe: tuple[int, int] | None = None


async def _count_cutoff(redis: Redis, stream: str, keep: int, limit: tuple[int, int] | None) -> tuple[int, int]:
    """The id before which entries exceed the newest ``keep`` (bounded read; never past ``limit``)."""
    length = await redis.xlen(stream)
    overflow = length - keep
    if overflow <= 0:
        return (0, 0)
    start = "-"
    cutoff = (0, 0)
    while overflow > 0:
        chunk = await redis.xrange(stream, min=start, max="+", count=min(overflow, _COUNT_CHUNK))
        if not chunk:
            break
        last_id = chunk[-1][0]
        assert last_id is not None  # XRANGE always returns ids
        cutoff = next_id(last_id)
        overflow -= len(chunk)
        if limit is not None and cutoff >= limit:
            break  # the safe point is older: no need to look further
        start = format_id(cutoff)
    return cutoff


async def trim_stream(
    redis: Redis, stream: str, retention: RetentionSettings, *, now_ms: int | None = None
) -> TrimResult:
    """Trim one stream as far as both the groups and the retention settings allow."""
    result = TrimResult(stream)
    safe = await safe_point(redis, stream)
    result.safe = safe
    now_ms = int(time.time() * 1000) if now_ms is None else now_ms
    retention_point = (0, 0)
    if retention.max_age > 0:
        retention_point = max(retention_point, (now_ms - int(retention.max_age * 1000), 0))
    if retention.max_entries > 0:
        retention_point = max(retention_point, await _count_cutoff(redis, stream, retention.max_entries, safe))
    minid = retention_point if safe is None else min(safe, retention_point)
    if minid > (0, 0):
        result.trimmed = int(await redis.xtrim(stream, minid=format_id(minid), approximate=False))
    length = await redis.xlen(stream)
    if length > retention.hard_max_entries:
        # Give up retention of acknowledged entries before dropping anything a group still needs.
        if safe is not None:
            result.trimmed += int(await redis.xtrim(stream, minid=format_id(safe), approximate=False))
        else:
            result.trimmed += int(await redis.xtrim(stream, maxlen=retention.hard_max_entries, approximate=False))
        length = await redis.xlen(stream)
        if length > retention.hard_max_entries:
            result.lost = int(await redis.xtrim(stream, maxlen=retention.hard_max_entries, approximate=False))
            log.error(
                "stream hit its hard cap; dropped entries a consumer group had not acknowledged",
                stream=stream,
                dropped=result.lost,
                hard_max_entries=retention.hard_max_entries,
            )
    return result


async def trim_all(redis: Redis, keys: Keys, retention: RetentionSettings, metrics: Metrics) -> list[TrimResult]:
    """Trim every pipeline stream once."""
    results = []
    for stream in keys.stream_groups():
        result = await trim_stream(redis, stream, retention)
        if result.trimmed:
            metrics.trimmed.labels(stream).inc(result.trimmed)
        if result.lost:
            metrics.trim_lost.labels(stream).inc(result.lost)
        results.append(result)
    return results


async def run_trimmer(
    redis: Redis, keys: Keys, retention: RetentionSettings, metrics: Metrics, stop: asyncio.Event
) -> None:
    """Trim on a timer until ``stop`` is set."""
    while not stop.is_set():
        try:
            await trim_all(redis, keys, retention, metrics)
        except (RedisError, OSError) as exc:
            log.warning("trim failed; will retry", error=str(exc))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), retention.interval)
