"""The stream contract on a real redis-server: add-once publishing, safe trimming, worker recovery."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import UTC, datetime

import redis.asyncio as aioredis

from monitor.bus.consume import Emit, Entry, Outcome, StreamWorker, ensure_group
from monitor.bus.keys import Keys
from monitor.bus.publish import Publisher
from monitor.bus.trim import safe_point, trim_stream
from monitor.config import ConsumerSettings, RetentionSettings
from monitor.errors import PermanentError
from monitor.metrics import Metrics
from monitor.schema import RawItem, decode_entry

WHEN = datetime(2023, 11, 18, tzinfo=UTC)


def raw(n: int, *, text: str = "Bakhmut", event: str = "new") -> RawItem:
    return RawItem(
        source="telegram_web",
        channel="ab3army",
        external_id=str(n),
        text=text,
        collected_at=WHEN,
        event=event,  # type: ignore[arg-type]
    )


class CopyStage:
    """A stage that copies raw entries to an output stream, recording every handle call."""

    name = "copy"
    group = "copier"

    def __init__(self, keys: Keys, out: str, *, fail: set[str] | None = None) -> None:
        self.keys = keys
        self.stream = keys.raw
        self.out = out
        self.fail = fail or set()
        self.seen: list[str] = []

    async def handle(self, entries: Sequence[Entry]) -> list[Outcome | BaseException]:
        results: list[Outcome | BaseException] = []
        for _, fields in entries:
            try:
                item = decode_entry(RawItem, fields)
            except Exception as exc:  # noqa: BLE001 - the test stage mirrors the real ones
                results.append(exc)
                continue
            self.seen.append(item.external_id)
            if item.external_id in self.fail:
                results.append(RuntimeError(f"transient failure on {item.external_id}"))
                continue
            once = self.keys.emitted(self.name, item.external_id)
            results.append(Outcome(emits=[Emit(self.out, once, item.external_id.encode())], source=item.source))
        return results


def worker(
    client: aioredis.Redis, keys: Keys, stage: CopyStage, consumer: str, stop: asyncio.Event, **settings: int
) -> StreamWorker:
    config = ConsumerSettings(**{"batch_size": 10, "block_ms": 50, "claim_interval": 0, **settings})
    return StreamWorker(
        client,
        keys,
        stage,
        consumer=consumer,
        settings=config,
        publisher=Publisher(client, keys, 3600),
        metrics=Metrics(),
        stop=stop,
    )


async def drain(w: StreamWorker, rounds: int = 50) -> None:
    """Step the worker until a few consecutive rounds find nothing."""
    idle = 0
    for _ in range(rounds):
        idle = idle + 1 if await w.step() == 0 else 0
        if idle >= 2:
            return


async def output_ids(client: aioredis.Redis, stream: str) -> list[str]:
    return [fields[b"data"].decode() for _, fields in await client.xrange(stream)]


async def test_publisher_adds_each_item_once(redis_client: aioredis.Redis, keys: Keys) -> None:
    """Publishing the same RawItems twice adds them once; the second call reports them as seen."""
    publisher = Publisher(redis_client, keys, 3600)
    first = await publisher.publish_raw([raw(1), raw(2)])
    second = await publisher.publish_raw([raw(1), raw(2), raw(3)])
    assert all(first) and len(set(first)) == 2
    assert second[:2] == [None, None] and second[2] is not None
    assert await redis_client.xlen(keys.raw) == 3
    ttl = await redis_client.ttl(keys.seen("telegram:ab3army:1"))
    assert 0 < ttl <= 3600


async def test_publisher_lets_new_edits_through_once(redis_client: aioredis.Redis, keys: Keys) -> None:
    """An edit with new text is a new event; the same edit again is not; a delete passes once."""
    publisher = Publisher(redis_client, keys, 3600)
    results = await publisher.publish_raw(
        [
            raw(1),
            raw(1, text="Bakhmut, updated", event="edit"),
            raw(1, text="Bakhmut, updated", event="edit"),
            raw(1, text="Bakhmut, again", event="edit"),
            raw(1, event="delete"),
            raw(1, event="delete"),
        ]
    )
    assert [r is not None for r in results] == [True, True, False, True, True, False]


async def test_trimmer_keeps_unacknowledged_entries(redis_client: aioredis.Redis, keys: Keys) -> None:
    """Stall a group, push past retention, trim, resume: every entry is still processed, none lost."""
    publisher = Publisher(redis_client, keys, 3600)
    stage = CopyStage(keys, keys.stream("out"))
    await ensure_group(redis_client, keys.raw, stage.group)
    retention = RetentionSettings(max_entries=10, max_age=0, hard_max_entries=100_000)
    await publisher.publish_raw([raw(n) for n in range(50)])  # group stalled: nothing read yet
    result = await trim_stream(redis_client, keys.raw, retention)
    assert result.trimmed == 0 and result.lost == 0
    assert await redis_client.xlen(keys.raw) == 50

    stop = asyncio.Event()
    w = worker(redis_client, keys, stage, "c1", stop, batch_size=7, claim_interval=3600)
    await w.step()  # one batch handled; its write (with a read of the next batch) is in flight
    await w.settle()  # that write is done: 7 acked, 7 more delivered and pending, the rest undelivered
    result = await trim_stream(redis_client, keys.raw, retention)
    assert result.trimmed == 7  # only what the group acknowledged (and is beyond retention) went
    await drain(w)
    assert sorted(await output_ids(redis_client, keys.stream("out")), key=int) == [str(n) for n in range(50)]
    result = await trim_stream(redis_client, keys.raw, retention)
    assert await redis_client.xlen(keys.raw) == 10  # once acknowledged, retention applies


async def test_trimmer_safe_point_covers_pending(redis_client: aioredis.Redis, keys: Keys) -> None:
    """An entry delivered but never acked holds the safe point back, so trimming cannot drop it."""
    publisher = Publisher(redis_client, keys, 3600)
    await ensure_group(redis_client, keys.raw, "g")
    ids = await publisher.publish_raw([raw(n) for n in range(5)])
    await redis_client.xreadgroup("g", "dead-consumer", {keys.raw: ">"}, count=5)
    await redis_client.xack(keys.raw, "g", *[i for i in ids[2:] if i])
    point = await safe_point(redis_client, keys.raw)
    assert point is not None and f"{point[0]}-{point[1]}" == ids[0]
    await trim_stream(redis_client, keys.raw, RetentionSettings(max_entries=0, max_age=0))
    assert await redis_client.xlen(keys.raw) == 5


async def test_hard_cap_drops_and_counts(redis_client: aioredis.Redis, keys: Keys) -> None:
    """Past the hard cap, unacknowledged entries are dropped and counted as lost."""
    publisher = Publisher(redis_client, keys, 3600)
    await ensure_group(redis_client, keys.raw, "g")
    await publisher.publish_raw([raw(n) for n in range(1100)])
    retention = RetentionSettings(max_entries=10, max_age=0, hard_max_entries=1000)
    result = await trim_stream(redis_client, keys.raw, retention)
    assert result.lost == 100
    assert await redis_client.xlen(keys.raw) == 1000


async def test_killed_consumer_entries_are_reclaimed_once(redis_client: aioredis.Redis, keys: Keys) -> None:
    """A consumer dies mid-batch with entries pending; another reclaims them; each output exists once."""
    publisher = Publisher(redis_client, keys, 3600)
    out = keys.stream("out")
    await publisher.publish_raw([raw(n) for n in range(20)])
    await ensure_group(redis_client, keys.raw, "copier")
    # The first consumer read a batch, wrote half the outputs, then died before acking anything.
    delivered = await redis_client.xreadgroup("copier", "victim", {keys.raw: ">"}, count=10)
    victim_stage = CopyStage(keys, out)
    results = await victim_stage.handle(delivered[0][1][:5])
    pipe = redis_client.pipeline(transaction=False)
    publisher_w = Publisher(redis_client, keys, 3600)
    for result in results:
        assert isinstance(result, Outcome)
        for emit in result.emits:
            publisher_w.queue_many(pipe, [(emit.once_key, emit.stream, emit.data)])
    await pipe.execute()

    stage = CopyStage(keys, out)
    stop = asyncio.Event()
    rescuer = worker(redis_client, keys, stage, "rescuer", stop, claim_idle_ms=100)
    await asyncio.sleep(0.15)
    await drain(rescuer)
    ids = await output_ids(redis_client, out)
    assert sorted(ids, key=int) == [str(n) for n in range(20)]
    pending = await redis_client.xpending(keys.raw, "copier")
    assert pending["pending"] == 0


async def test_worker_reads_own_pending_first(redis_client: aioredis.Redis, keys: Keys) -> None:
    """A restarted consumer with the same name processes its own pending entries before new ones."""
    publisher = Publisher(redis_client, keys, 3600)
    await publisher.publish_raw([raw(n) for n in range(3)])
    await ensure_group(redis_client, keys.raw, "copier")
    await redis_client.xreadgroup("copier", "same", {keys.raw: ">"}, count=3)  # then "crashed"
    await publisher.publish_raw([raw(n) for n in range(3, 6)])
    stage = CopyStage(keys, keys.stream("out"))
    w = worker(redis_client, keys, stage, "same", asyncio.Event(), claim_idle_ms=3_600_000)
    await drain(w)
    assert stage.seen[:3] == ["0", "1", "2"] and sorted(stage.seen) == [str(n) for n in range(6)]


async def test_poison_entries_go_to_dead_and_worker_continues(redis_client: aioredis.Redis, keys: Keys) -> None:
    """Undecodable JSON and a RawItem missing a field land in dead with the error; good entries flow."""
    publisher = Publisher(redis_client, keys, 3600)
    await publisher.publish_raw([raw(1)])
    await redis_client.xadd(keys.raw, {"v": 1, "data": b"{not json"})
    await redis_client.xadd(keys.raw, {"v": 1, "data": b'{"source":"corpus","channel":"c"}'})
    await publisher.publish_raw([raw(2)])
    stage = CopyStage(keys, keys.stream("out"))
    w = worker(redis_client, keys, stage, "c", asyncio.Event())
    await drain(w)
    assert await output_ids(redis_client, keys.stream("out")) == ["1", "2"]
    dead = await redis_client.xrange(keys.dead)
    assert len(dead) == 2
    errors = [fields[b"error"].decode() for _, fields in dead]
    assert "malformed" in errors[0].lower() or "json" in errors[0].lower()
    assert "missing required field" in errors[1]
    assert dead[0][1][b"data"] == b"{not json"
    assert dead[1][1][b"stream"] == keys.raw.encode()
    assert (await redis_client.xpending(keys.raw, "copier"))["pending"] == 0


async def test_repeated_failure_dead_letters_after_max_deliveries(redis_client: aioredis.Redis, keys: Keys) -> None:
    """A transient error is retried via XAUTOCLAIM; after max_deliveries the entry goes to dead."""
    publisher = Publisher(redis_client, keys, 3600)
    await publisher.publish_raw([raw(1), raw(2)])
    stage = CopyStage(keys, keys.stream("out"), fail={"2"})
    w = worker(redis_client, keys, stage, "c", asyncio.Event(), claim_idle_ms=100, max_deliveries=3)
    for _ in range(10):
        await w.step()
        if await redis_client.xlen(keys.dead):
            break
        await asyncio.sleep(0.12)
    assert stage.seen.count("2") == 3
    dead = await redis_client.xrange(keys.dead)
    assert len(dead) == 1
    assert b"transient failure on 2" in dead[0][1][b"error"]
    assert dead[0][1][b"deliveries"] == b"3"
    assert await output_ids(redis_client, keys.stream("out")) == ["1"]


async def test_permanent_error_is_dead_lettered_at_once(redis_client: aioredis.Redis, keys: Keys) -> None:
    """A PermanentError skips the retries."""

    class Refuse(CopyStage):
        async def handle(self, entries: Sequence[Entry]) -> list[Outcome | BaseException]:
            return [PermanentError("cannot ever process this") for _ in entries]

    await Publisher(redis_client, keys, 3600).publish_raw([raw(1)])
    w = worker(redis_client, keys, Refuse(keys, keys.stream("out")), "c", asyncio.Event())
    await drain(w)
    dead = await redis_client.xrange(keys.dead)
    assert len(dead) == 1 and dead[0][1][b"deliveries"] == b"1"


async def test_worker_stops_when_event_set(redis_client: aioredis.Redis, keys: Keys) -> None:
    """run() returns promptly once stop is set, after finishing what it read."""
    await Publisher(redis_client, keys, 3600).publish_raw([raw(n) for n in range(5)])
    stop = asyncio.Event()
    stage = CopyStage(keys, keys.stream("out"))
    w = worker(redis_client, keys, stage, "c", stop)
    task = asyncio.create_task(w.run())
    for _ in range(100):
        if await redis_client.xlen(keys.stream("out")) == 5:
            break
        await asyncio.sleep(0.02)
    stop.set()
    await asyncio.wait_for(task, 2)
    assert w.processed == 5
