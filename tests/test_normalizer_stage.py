"""The normalizer stage's batch path: extractor-by-extractor enrichment and clusters assigned in chunks.

``NormalizerStage.handle`` normalizes a batch in chunks of ``CLUSTER_CHUNK`` and leaves each chunk's
cluster round trips running while the next chunk is cleaned and enriched. These tests hold it to the
plain order of events (each item normalized and assigned in turn) against a real redis-server.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

import pytest
import redis.asyncio as aioredis

from monitor.bus.keys import Keys
from monitor.config import NormalizerSettings
from monitor.enrich.clusters import ClusterResult, StoryClusters
from monitor.enrich.enricher import Enricher
from monitor.metrics import Metrics
from monitor.normalize import stage as stage_module
from monitor.normalize.normalizer import Normalizer
from monitor.normalize.stage import NormalizerStage, chunk_bounds
from monitor.schema import Item, RawItem, decode, entry_fields

T0 = datetime(2023, 5, 20, 9, 0, tzinfo=UTC)
STORY = (
    "Воїни 3-ї окремої штурмової бригади звільнили Андріївку південніше Бахмута. Під час штурму знищено "
    "5 танків, 12 бойових броньованих машин та понад 100 окупантів. Слава Україні!"
)
PLACES = ["Бахмут", "Авдіївка", "Kupiansk", "Лиман", "Часов Яр", "Kherson", "Покровськ", "Toretsk"]
WORD_TEXT = """
обстріл позиції ворога наступ оборона район село місто фронт ракета дрон техніка сили бригада shelling
frontline advance defence village drone strike convoy artillery trench supply bridge атака штурм колона
склад міст окоп розвідка укріплення ночі вранці
"""
WORDS = WORD_TEXT.split()


def other_post(n: int) -> str:
    """A post sharing no story with the others: random words around a place (seeded by ``n``)."""
    rng = random.Random(n)
    words = " ".join(rng.choice(WORDS) for _ in range(30))
    return f"{words} біля {rng.choice(PLACES)}, {rng.randint(2, 40)} танків знищено. {words[::-1][:40]}"


def raw(n: int, text: str, channel: str = "ab3army") -> RawItem:
    return RawItem(
        source="telegram",
        channel=channel,
        external_id=str(n),
        text=text,
        published_at=T0 + timedelta(minutes=n),
        collected_at=T0 + timedelta(minutes=n, seconds=5),
    )


def batch(count: int, repost_at: int) -> list[RawItem]:
    """``count`` posts on varied topics, the brigade's story first and its repost at ``repost_at``."""
    posts = []
    for n in range(count):
        if n == 0:
            posts.append(raw(n, STORY))
        elif n == repost_at:
            posts.append(raw(n, "Репост: " + STORY, channel="operativnoZSU"))
        else:
            posts.append(raw(n, other_post(n), channel=f"c{n % 5}"))
    return posts


def entries(posts: Sequence[RawItem]) -> list[tuple[bytes, dict[bytes, bytes]]]:
    out = []
    for n, post in enumerate(posts):
        fields = {k.encode(): v if isinstance(v, bytes) else str(v).encode() for k, v in entry_fields(post).items()}
        out.append((f"{n + 1}-0".encode(), fields))
    return out


@pytest.fixture(scope="module")
def normalizer() -> Normalizer:
    return Normalizer(NormalizerSettings(enrich=True, cluster=True), enricher=Enricher.load())


def test_chunks_cover_the_batch_and_shrink_towards_its_end() -> None:
    """Chunks cover a batch in order without gaps, none over CLUSTER_CHUNK, the last ones smaller."""
    for count in (0, 1, 15, 16, 17, 99, 100, 101, 200, 1000):
        bounds = chunk_bounds(count)
        assert [start for start, _ in bounds] == [0, *[stop for _, stop in bounds[:-1]]][: len(bounds)]
        assert (bounds[-1][1] if bounds else 0) == count
        sizes = [stop - start for start, stop in bounds]
        assert all(0 < size <= stage_module.CLUSTER_CHUNK for size in sizes)
        assert sizes == sorted(sizes, reverse=True)
    assert chunk_bounds(200)[-1][1] - chunk_bounds(200)[-1][0] < stage_module.MIN_CLUSTER_CHUNK


def emitted_items(outcomes: Sequence[object]) -> list[Item]:
    items = []
    for outcome in outcomes:
        assert not isinstance(outcome, BaseException), outcome
        (emit,) = outcome.emits  # type: ignore[attr-defined]
        items.append(decode(Item, emit.data))
    return items


async def test_chunked_batch_equals_one_item_at_a_time(
    redis_client: aioredis.Redis, keys: Keys, normalizer: Normalizer
) -> None:
    """A batch spanning several chunks gets the entities and clusters that item-by-item processing gives."""
    posts = batch(2 * stage_module.CLUSTER_CHUNK + 30, repost_at=stage_module.CLUSTER_CHUNK + 17)
    stage = NormalizerStage(keys, normalizer, Metrics(), StoryClusters(redis_client, keys))
    items = emitted_items(await stage.handle(entries(posts)))

    plain_keys = Keys(f"{keys.prefix}-plain")
    plain_clusters = StoryClusters(redis_client, plain_keys)
    plain = Normalizer(NormalizerSettings(enrich=True, cluster=True), enricher=Enricher.load())
    for post, item in zip(posts, items, strict=True):
        want = plain.normalize(post)
        want.cluster_id = (await plain_clusters.assign(want)).cluster_id
        assert item.entities == want.entities, post.text
        assert item.cluster_id == want.cluster_id, post.text
    assert items[0].cluster_id == items[stage_module.CLUSTER_CHUNK + 17].cluster_id
    assert len({item.cluster_id for item in items}) == len(items) - 1


class FailingSecondCall:
    """A story-cluster index whose Redis goes away after the first call (fault injection)."""

    def __init__(self, inner: StoryClusters) -> None:
        self.inner = inner
        self.calls = 0

    async def assign_many(self, items: Sequence[Item]) -> list[ClusterResult]:
        self.calls += 1
        if self.calls == 2:
            raise ConnectionError("Connection closed by server.")
        return await self.inner.assign_many(items)


async def test_a_redis_error_in_any_chunk_fails_the_whole_batch(
    redis_client: aioredis.Redis, keys: Keys, normalizer: Normalizer
) -> None:
    """A cluster call failing for the second chunk fails the batch (so it is retried), emitting nothing."""
    failing = FailingSecondCall(StoryClusters(redis_client, keys))
    stage = NormalizerStage(keys, normalizer, Metrics(), failing)
    with pytest.raises(ConnectionError):
        await stage.handle(entries(batch(stage_module.CLUSTER_CHUNK + 5, repost_at=3)))
    assert failing.calls == 2


async def test_one_bad_entry_fails_alone(redis_client: aioredis.Redis, keys: Keys, normalizer: Normalizer) -> None:
    """An undecodable entry in a chunked batch is that entry's failure; the others are emitted with clusters."""
    stage = NormalizerStage(keys, normalizer, Metrics(), StoryClusters(redis_client, keys))
    good = entries(batch(stage_module.CLUSTER_CHUNK + 10, repost_at=5))
    bad = (b"999-0", {b"v": good[0][1][b"v"], b"data": b"{not json"})
    outcomes = await stage.handle([*good[:40], bad, *good[40:]])
    assert isinstance(outcomes[40], Exception)
    items = emitted_items(outcomes[:40] + outcomes[41:])
    assert len(items) == len(good)
    assert all(item.cluster_id for item in items)
    assert items[0].cluster_id == items[5].cluster_id
