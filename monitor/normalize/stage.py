"""The normalizer stage: raw stream -> Normalizer -> items stream, one add-once entry per event."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from typing import Protocol

import msgspec
from redis.asyncio.client import Pipeline

from monitor.bus.consume import Emit, Entry, Outcome
from monitor.bus.keys import GROUP_NORMALIZER, Keys
from monitor.metrics import Metrics
from monitor.normalize.normalizer import Normalizer
from monitor.schema import Item, RawItem, decode_entry, dedup_key, encode

_last_seen_encoder = msgspec.json.Encoder()


class ClusterResultLike(Protocol):
    @property
    def cluster_id(self) -> str: ...


class ClusterIndex(Protocol):
    """The story-cluster index (``monitor.enrich.clusters.StoryClusters``)."""

    async def assign_many(self, items: Sequence[Item]) -> Sequence[ClusterResultLike]: ...


# Items per cluster-assignment call while the next chunk is normalized (see NormalizerStage._normalize),
# at most and (but for a batch's last few items) at least.
CLUSTER_CHUNK = 100
MIN_CLUSTER_CHUNK = 16


def chunk_bounds(count: int) -> list[tuple[int, int]]:
    """``(start, stop)`` of the chunks of a batch of ``count``: each half of what is left, between
    ``MIN_CLUSTER_CHUNK`` and ``CLUSTER_CHUNK`` (200 -> 100, 50, 25, 16, 9). The last chunk's cluster
    round trips are the ones nothing overlaps, so it is kept small; the first ones are large, since an
    extractor run over more items at once costs less per item."""
    bounds: list[tuple[int, int]] = []
    start = 0
    while start < count:
        left = count - start
        size = min(left, CLUSTER_CHUNK, max(MIN_CLUSTER_CHUNK, (left + 1) // 2))
        bounds.append((start, start + size))
        start += size
    return bounds


# Event-loop turns given to the cluster task at each hand-over. A reply takes a few (the transport
# reads it, the reader wakes the task, the task runs on to its next request); 3 left about half of the
# wait in place in the benchmark, 10 nearly all of it, and a turn with nothing to do costs microseconds.
LET_RUN = 10


def _assign(items: Sequence[Item], clusters: Sequence[ClusterResultLike]) -> None:
    for item, cluster in zip(items, clusters, strict=True):
        item.cluster_id = cluster.cluster_id


async def _let_run() -> None:
    """Yield to the event loop ``LET_RUN`` times: a task in flight takes a reply that has arrived and
    sends its next request."""
    for _ in range(LET_RUN):
        await asyncio.sleep(0)


class NormalizerStage:
    """Consumes ``raw`` in group ``normalizer``; writes Items to ``items``."""

    name = "normalizer"
    group = GROUP_NORMALIZER

    def __init__(
        self, keys: Keys, normalizer: Normalizer, metrics: Metrics, clusters: ClusterIndex | None = None
    ) -> None:
        self.keys = keys
        self.stream = keys.raw
        self.normalizer = normalizer
        self.clusters = clusters
        self.metrics = metrics
        self._seconds = metrics.stage_seconds.labels(self.name)
        self._normalized: dict[tuple[str, str], Callable[[], None]] = {}

    def _counted(self, source: str, channel: str) -> Callable[[], None]:
        """The bound ``inc`` of the per-channel normalized counter (cached: labels() is not free)."""
        inc = self._normalized.get((source, channel))
        if inc is None:
            inc = self._normalized[(source, channel)] = self.metrics.items_normalized.labels(source, channel).inc
        return inc

    async def handle(self, entries: Sequence[Entry]) -> list[Outcome | BaseException]:
        started = time.perf_counter()
        decoded: list[RawItem | BaseException] = []
        for _, fields in entries:
            try:
                decoded.append(decode_entry(RawItem, fields))
            except Exception as exc:  # noqa: BLE001 - every failure is recorded per entry, never lost
                decoded.append(exc)
        raws = [raw for raw in decoded if isinstance(raw, RawItem)]
        done = iter(await self._normalize(raws))
        normalized: list[Item | BaseException] = [next(done) if isinstance(raw, RawItem) else raw for raw in decoded]
        if entries:  # the batch is normalized as a whole: each item is recorded with its share of the time
            share = (time.perf_counter() - started) / len(entries)
            observe = self._seconds.observe
            for _ in entries:
                observe(share)
        results: list[Outcome | BaseException] = []
        last_seen: dict[str, bytes] = {}
        last_outcome: Outcome | None = None
        for result in normalized:
            if not isinstance(result, Item):
                results.append(result)
                continue
            item = result
            once_key = self.keys.emitted(self.name, dedup_key(item, item.id))
            emit = Emit(self.keys.items, once_key, encode(item), on_written=self._counted(item.source, item.channel))
            last_outcome = Outcome(emits=[emit], source=item.source)
            results.append(last_outcome)
            last_seen[f"{item.source}:{item.channel}"] = _last_seen_encoder.encode(
                {"item_id": item.id, "published_at": item.published_at, "collected_at": item.collected_at}
            )
        if last_outcome is not None:  # one HSET for the batch, written in the same pipeline as the items
            last_outcome.extra = self._record_last_seen(last_seen)
        return results

    async def _normalize(self, raws: Sequence[RawItem]) -> list[Item | Exception]:
        """The Items (or errors) of ``raws``, each Item with its cluster when clustering is on.

        With clustering, the batch goes in chunks and each chunk's two cluster round trips (lookup, then
        commit; Lua scripts that keep Redis busy for a while) are left running while the next chunk is
        cleaned and then enriched, instead of the normalizer waiting on them (only the last chunk's are
        waited for: the chunks shrink towards the end, see ``chunk_bounds``). A chunk's clusters are
        assigned only after the previous chunk's are committed, so later items still see earlier ones.
        A Redis error fails the batch (it is retried), as it did when the batch went in one call.
        """
        clusters = self.clusters
        if clusters is None:
            return self.normalizer.normalize_many(raws)
        results: list[Item | Exception] = []
        in_flight: asyncio.Future[Sequence[ClusterResultLike]] | None = None
        flying: list[Item] = []
        try:
            for start, stop in chunk_bounds(len(raws)):
                chunk = self.normalizer.normalize_many(raws[start:stop], enrich=False)
                await _let_run()  # the previous chunk's lookup reply is planned on and its commit sent
                self.normalizer.enrich_items(chunk)
                if in_flight is not None:
                    _assign(flying, await in_flight)
                flying = [item for item in chunk if isinstance(item, Item)]
                in_flight = asyncio.ensure_future(clusters.assign_many(flying)) if flying else None
                await _let_run()  # the chunk's signatures are computed and its lookup sent
                results += chunk
            if in_flight is not None:
                _assign(flying, await in_flight)
        finally:
            if in_flight is not None and not in_flight.done():
                in_flight.cancel()
        return results

    def _record_last_seen(self, records: dict[str, bytes]) -> Callable[[Pipeline], None]:
        key = self.keys.channel_last_seen

        def queue(pipe: Pipeline) -> None:
            pipe.hset(key, mapping=records)  # type: ignore[arg-type]

        return queue
