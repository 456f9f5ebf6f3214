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
    # Called once the batch's writes (including ``extra``) have been executed.
    on_written: Callable[[], None] | None = None


@dataclass(slots=True)
class _Batch:
    """A handled batch whose writes are queued on ``pipe`` but not yet sent."""

    pipe: Pipeline
    acks: list[bytes] = field(default_factory=list)
    emits: list[tuple[Emit, str]] = field(default_factory=list)
    retry: list[tuple[Entry, BaseException]] = field(default_factory=list)
    written: list[Callable[[], None]] = field(default_factory=list)
    position: int = 0
    fetch: bool = False


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
        self._inflight: asyncio.Task[list[Entry]] | None = None
        self._last_claim = 0.0
        self._children: dict[tuple[int, str], Any] = {}

    async def run(self) -> None:
        """The loop: own pending first, periodic XAUTOCLAIM, then new entries, until stopped."""
        backoff = 0.2
        bound = log.bind(stage=self.stage.name, consumer=self.consumer)
        # After stop, the write in flight and the entries it fetched are still finished (graceful drain).
        while not self.stop.is_set() or self._prefetched or self._inflight is not None:
            try:
                await self.step()
                backoff = 0.2
            except (RedisConnectionError, RedisTimeoutError, OSError) as exc:
                bound.warning("redis unavailable; retrying", error=str(exc), backoff=backoff)
                self._reset_stream()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.stop.wait(), backoff)
                backoff = min(backoff * 2, 10.0)
            except RedisError as exc:
                bound.error("redis error in worker; retrying", error=str(exc))
                self._reset_stream()
                self._group_ready = False  # e.g. NOGROUP after the stream was deleted
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.stop.wait(), backoff)
                backoff = min(backoff * 2, 10.0)
        bound.debug("worker stopped", processed=self.processed)

    def _reset_stream(self) -> None:
        """After a Redis error: whatever was fetched or in flight is in our pending list; re-read it."""
        self._read_own_pending = True
        self._prefetched = []
        if self._inflight is not None:
            self._inflight.cancel()
            self._inflight = None

    async def step(self) -> int:
        """One round: pending, claim or read; handle what came. Returns entries handled.

        New entries are handled in a stream of batches with one write in flight: batch N's outputs,
        acks and a read of further entries go out in one pipeline, and while Redis runs it the worker
        handles batch N+1, fetched by the previous pipeline.
        """
        if not self._group_ready:
            await ensure_group(self.redis, self.stage.stream, self.stage.group)
            self._group_ready = True
        if self._prefetched or self._inflight is not None:
            return await self._stream_step()
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
        if not entries:
            return 0
        self._prefetched = entries
        return await self._stream_step()

    async def settle(self) -> None:
        """Wait for the write in flight (its fetched entries stay in hand for the next step)."""
        if self._inflight is not None:
            inflight, self._inflight = self._inflight, None
            self._prefetched += await inflight

    async def _stream_step(self) -> int:
        if not self._prefetched:
            # Nothing in hand: the write in flight brings the next entries (or none).
            assert self._inflight is not None
            inflight, self._inflight = self._inflight, None
            self._prefetched = await inflight
            if not self._prefetched:
                return 0
        entries, self._prefetched = self._prefetched, []
        batch = await self._prepare(entries, fetch=not self.stop.is_set())
        if self._inflight is not None:  # the previous write: its reply carries the entries for the next step
            inflight, self._inflight = self._inflight, None
            self._prefetched = await inflight
        self._inflight = asyncio.create_task(self._execute(batch))
        await asyncio.sleep(0)  # let the task send the pipeline before this worker goes on
        if time.monotonic() - self._last_claim >= self.settings.claim_interval and not self.stop.is_set():
            # Let the periodic XAUTOCLAIM run: finish the stream, the next step claims.
            inflight, self._inflight = self._inflight, None
            self._prefetched += await inflight
            if self._prefetched:
                entries_left, self._prefetched = self._prefetched, []
                await self.process(entries_left)
        return len(entries)

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

    async def process(self, entries: list[Entry]) -> int:
        """Handle a batch, then write outputs, dead letters and acks in one pipeline, and wait for it."""
        batch = await self._prepare(entries, fetch=False)
        await self._execute(batch)
        return len(entries)

    async def _prepare(self, entries: list[Entry], *, fetch: bool) -> _Batch:
        """Handle a batch and queue its outputs, dead letters and acks (outputs first) on a pipeline.

        With ``fetch`` a non-blocking XREADGROUP for more new entries is queued after the acks.
        """
        # Entries deleted from the stream while pending come back with no fields: nothing to do.
        live = [(eid, fields) for eid, fields in entries if fields]
        gone = [eid for eid, fields in entries if not fields]
        results = await self.stage.handle(live) if live else []
        batch = _Batch(self.redis.pipeline(transaction=False), acks=list(gone))
        pipe = batch.pipe
        for (entry_id, fields), result in zip(live, results, strict=True):
            if isinstance(result, Outcome):
                self._count(self.metrics.items_in, result.source)
                batch.emits.extend((emit, result.source) for emit in result.emits)
                if result.extra is not None:
                    result.extra(pipe)
                if result.on_written is not None:
                    batch.written.append(result.on_written)
                batch.acks.append(entry_id)
            elif is_permanent(result):
                self._queue_dead(pipe, entry_id, fields, result, deliveries=None)
                batch.acks.append(entry_id)
            else:
                batch.retry.append(((entry_id, fields), result))
        batch.position = len(pipe)
        if batch.emits:  # every output of the batch in one add-once script call, queued before the acks
            self.publisher.queue_many(pipe, [(e.once_key, e.stream, e.data) for e, _ in batch.emits])
        if batch.acks:
            pipe.xack(self.stage.stream, self.stage.group, *batch.acks)
        batch.fetch = fetch and not batch.retry
        if batch.fetch:
            pipe.xreadgroup(self.stage.group, self.consumer, {self.stage.stream: ">"}, count=self.settings.batch_size)
        return batch

    async def _execute(self, batch: _Batch) -> list[Entry]:
        """Run a prepared pipeline, account for it, and return the entries it fetched."""
        replies = await batch.pipe.execute() if len(batch.pipe) else []
        fetched: list[Entry] = list(replies[-1][0][1]) if batch.fetch and replies and replies[-1] else []
        self.processed += len(batch.acks)
        if batch.emits:
            for (emit, source), reply in zip(batch.emits, replies[batch.position], strict=True):
                if reply is None:
                    self.metrics.duplicates.labels(self.stage.name).inc()
                    continue
                self._count(self.metrics.items_out, source)
                if emit.on_written is not None:
                    emit.on_written()
        for callback in batch.written:
            callback()
        if batch.retry:
            await self._handle_failures(batch.retry)
        return fetched

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
