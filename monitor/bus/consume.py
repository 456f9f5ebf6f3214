"""The consumer-group worker loop shared by every pipeline stage.

At-least-once with idempotent effects:

* the group is created idempotently (``XGROUP CREATE ... MKSTREAM``, BUSYGROUP ignored);
* on start, and after any Redis error, the worker first re-reads its own pending entries (``0``), then
  new ones (``>``);
* a batch (``COUNT``) is handled in one go; its outputs and the ``XACK`` of the entries that produced
  them go out in one pipeline, outputs first, so an entry is acked only once its output is written;
* outputs are add-once scripts keyed per input, so a redelivered entry writes nothing twice;
* ``XAUTOCLAIM`` takes over entries idle longer than ``claim_idle_ms`` (a dead consumer's, or ones
  that failed here);
* an entry that fails ``max_deliveries`` times, or fails permanently (undecodable), is moved to the
  dead stream with the error and its original fields;
* when ``stop`` is set the worker finishes the batch in hand and returns.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import structlog
from prometheus_client import Counter
from redis.asyncio.client import Pipeline
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError, ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from monitor.bus.keys import Keys
from monitor.bus.publish import Publisher
from monitor.bus.redis import Redis
from monitor.config import ConsumerSettings
from monitor.errors import PermanentError
from monitor.metrics import Metrics
from monitor.schema import WireError, utcnow

log = structlog.get_logger(__name__)

Fields = dict[bytes, bytes]
Entry = tuple[bytes, Fields]


@dataclass(slots=True)
class Emit:
    """One output entry (``v`` and ``data``, the model's JSON): written to ``stream`` once per ``once_key``."""

    stream: str
    once_key: str
    data: bytes
    on_written: Callable[[], None] | None = None


@dataclass(slots=True)
class Outcome:
    """What handling one entry produced. ``extra`` may queue more writes on the batch pipeline."""

    emits: list[Emit] = field(default_factory=list)
    extra: Callable[[Pipeline], None] | None = None
    source: str = "unknown"


class Stage(Protocol):
    """A pipeline stage: turns a batch of entries into one Outcome or exception per entry."""

    name: str
    stream: str
    group: str

    async def handle(self, entries: Sequence[Entry]) -> list[Outcome | BaseException]: ...


async def ensure_group(redis: Redis, stream: str, group: str) -> None:
    """Create ``group`` on ``stream`` (and the stream) unless it exists."""
    try:
        await redis.xgroup_create(stream, group, id="0", mkstream=True)
    except ResponseError as exc:
        if "BUSYGROUP" not in str(exc):
            raise


def is_permanent(error: BaseException) -> bool:
    """Errors that no retry can fix: the entry goes to the dead stream at once."""
    return isinstance(error, PermanentError | WireError)


class StreamWorker:
    """Runs one Stage as one consumer in its group until ``stop`` is set."""

    def __init__(
        self,
        redis: Redis,
        keys: Keys,
        stage: Stage,
        *,
        consumer: str,
        settings: ConsumerSettings,
        publisher: Publisher,
        metrics: Metrics,
        stop: asyncio.Event,
    ) -> None:
        self.redis = redis
        self.keys = keys
        self.stage = stage
        self.consumer = consumer
        self.settings = settings
        self.publisher = publisher
        self.metrics = metrics
        self.stop = stop
        self.processed = 0
        self._read_own_pending = True
        self._group_ready = False
        self._prefetched: list[Entry] = []
        self._last_claim = 0.0
        self._children: dict[tuple[int, str], Any] = {}

    async def run(self) -> None:
        """The loop: own pending first, periodic XAUTOCLAIM, then new entries, until stopped."""
        backoff = 0.2
        bound = log.bind(stage=self.stage.name, consumer=self.consumer)
        # After stop, entries already fetched with the last write are still handled (graceful drain).
        while not self.stop.is_set() or self._prefetched:
            try:
                await self.step()
                backoff = 0.2
            except (RedisConnectionError, RedisTimeoutError, OSError) as exc:
                bound.warning("redis unavailable; retrying", error=str(exc), backoff=backoff)
                self._read_own_pending = True
                self._prefetched = []  # still in our pending list; re-read from there
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.stop.wait(), backoff)
                backoff = min(backoff * 2, 10.0)
            except RedisError as exc:
                bound.error("redis error in worker; retrying", error=str(exc))
                self._read_own_pending = True
                self._prefetched = []
                self._group_ready = False  # e.g. NOGROUP after the stream was deleted
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.stop.wait(), backoff)
                backoff = min(backoff * 2, 10.0)
        bound.debug("worker stopped", processed=self.processed)

    async def step(self) -> int:
        """One round: pending, claim or read; handle what came. Returns entries handled."""
        if not self._group_ready:
            await ensure_group(self.redis, self.stage.stream, self.stage.group)
            self._group_ready = True
        if self._prefetched:
            entries, self._prefetched = self._prefetched, []
            return await self.process(entries, prefetch=True)
        if self._read_own_pending:
            entries = await self._read("0")
            if entries:
                return await self.process(entries)
            self._read_own_pending = False
        now = time.monotonic()
        if now - self._last_claim >= self.settings.claim_interval:
            self._last_claim = now
            claimed = await self.claim_idle()
            if claimed:
                return await self.process(claimed)
        if self.stop.is_set():
            return 0
        entries = await self._read(">", block=self.settings.block_ms)
        if entries:
            return await self.process(entries, prefetch=True)
        return 0

    async def _read(self, start: str, block: int | None = None) -> list[Entry]:
        response: Any = await self.redis.xreadgroup(  # RESP2: [[stream, [(id, fields), ...]]]
            self.stage.group,
            self.consumer,
            {self.stage.stream: start},
            count=self.settings.batch_size,
            block=block,
        )
        if not response:
            return []
        _, entries = response[0]
        return list(entries)

    async def claim_idle(self) -> list[Entry]:
        """Take over entries idle longer than ``claim_idle_ms`` from any consumer of the group."""
        result: Any = await self.redis.xautoclaim(
            self.stage.stream,
            self.stage.group,
            self.consumer,
            min_idle_time=self.settings.claim_idle_ms,
            start_id="0-0",
            count=self.settings.batch_size,
        )
        entries = list(result[1]) if result and len(result) > 1 else []
        if entries:
            self.metrics.reclaimed.labels(self.stage.name).inc(len(entries))
            log.info("reclaimed idle entries", stage=self.stage.name, count=len(entries))
        return entries

    async def process(self, entries: list[Entry], *, prefetch: bool = False) -> int:
        """Handle a batch, then write outputs, dead letters and acks in one pipeline.

        With ``prefetch`` (reading new entries), the same round trip also fetches the next batch
        (a non-blocking XREADGROUP queued after the acks), which the next step handles.
        """
        # Entries deleted from the stream while pending come back with no fields: nothing to do.
        live = [(eid, fields) for eid, fields in entries if fields]
        gone = [eid for eid, fields in entries if not fields]
        results = await self.stage.handle(live) if live else []
        pipe = self.redis.pipeline(transaction=False)
        acks: list[bytes] = list(gone)
        retry: list[tuple[Entry, BaseException]] = []
        emits: list[tuple[Emit, str]] = []
        stage = self.stage.name
        for (entry_id, fields), result in zip(live, results, strict=True):
            if isinstance(result, Outcome):
                self._count(self.metrics.items_in, result.source)
                emits.extend((emit, result.source) for emit in result.emits)
                if result.extra is not None:
                    result.extra(pipe)
                acks.append(entry_id)
            elif is_permanent(result):
                self._queue_dead(pipe, entry_id, fields, result, deliveries=None)
                acks.append(entry_id)
            else:
                retry.append(((entry_id, fields), result))
        position = len(pipe)
        if emits:  # every output of the batch in one add-once script call, queued before the acks
            self.publisher.queue_many(pipe, [(e.once_key, e.stream, e.data) for e, _ in emits])
        if acks:
            pipe.xack(self.stage.stream, self.stage.group, *acks)
        fetch = prefetch and not self.stop.is_set() and not retry
        if fetch:
            pipe.xreadgroup(self.stage.group, self.consumer, {self.stage.stream: ">"}, count=self.settings.batch_size)
        replies = await pipe.execute()
        if fetch and replies[-1]:
            self._prefetched = list(replies[-1][0][1])
        self.processed += len(acks)
        if emits:
            for (emit, source), reply in zip(emits, replies[position], strict=True):
                if reply is None:
                    self.metrics.duplicates.labels(stage).inc()
                    continue
                self._count(self.metrics.items_out, source)
                if emit.on_written is not None:
                    emit.on_written()
        if retry:
            await self._handle_failures(retry)
        return len(entries)

    async def _handle_failures(self, failures: list[tuple[Entry, BaseException]]) -> None:
        """Dead-letter entries delivered ``max_deliveries`` times; leave the rest pending for a retry."""
        ids = sorted((entry_id for (entry_id, _), _ in failures), key=_id_key)
        pending = await self.redis.xpending_range(
            self.stage.stream, self.stage.group, min=ids[0], max=ids[-1], count=len(ids) * 4 + 10
        )
        deliveries = {p["message_id"]: int(p["times_delivered"]) for p in pending}
        pipe = self.redis.pipeline(transaction=False)
        acks: list[bytes] = []
        for (entry_id, fields), error in failures:
            count = deliveries.get(entry_id, 1)
            if count >= self.settings.max_deliveries:
                self._queue_dead(pipe, entry_id, fields, error, deliveries=count)
                acks.append(entry_id)
            else:
                self.metrics.failures.labels(self.stage.name).inc()
                log.warning(
                    "entry failed; will retry",
                    stage=self.stage.name,
                    entry_id=entry_id.decode(),
                    deliveries=count,
                    error=f"{type(error).__name__}: {error}",
                )
        if acks:
            pipe.xack(self.stage.stream, self.stage.group, *acks)
            await pipe.execute()

    def _count(self, counter: Counter, source: str) -> None:
        """Increment a per-(stage, source) counter, caching the labelled child."""
        key = (id(counter), source)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = counter.labels(self.stage.name, source)
        child.inc()

    def _queue_dead(
        self, pipe: Pipeline, entry_id: bytes, fields: Fields, error: BaseException, deliveries: int | None
    ) -> None:
        reason = f"{type(error).__name__}: {error}"[:2000]
        dead: dict[str, Any] = {
            "stream": self.stage.stream,
            "group": self.stage.group,
            "stage": self.stage.name,
            "entry_id": entry_id,
            "error": reason,
            "deliveries": deliveries if deliveries is not None else 1,
            "failed_at": utcnow().isoformat().replace("+00:00", "Z"),
        }
        for name, value in fields.items():
            dead[f"orig_{name.decode(errors='replace')}" if name not in (b"v", b"data") else name.decode()] = value
        # Keyed by stream entry id, so a redelivered poison entry is dead-lettered only once.
        once_key = self.keys.emitted(f"dead:{self.stage.group}", f"{self.stage.stream}:{entry_id.decode()}")
        self.publisher.queue_once(pipe, once_key, self.keys.dead, dead)
        self.metrics.dead_letters.labels(self.stage.name).inc()
        log.error("entry moved to dead stream", stage=self.stage.name, entry_id=entry_id.decode(), error=reason)


def _id_key(entry_id: bytes) -> tuple[int, int]:
    ms, _, seq = entry_id.partition(b"-")
    return int(ms), int(seq or 0)
