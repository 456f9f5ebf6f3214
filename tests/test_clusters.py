"""Story clusters on a real redis-server: text near-duplicates, forwards, cross-language anchors, races."""

from __future__ import annotations

import asyncio
import re
import zlib
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import redis.asyncio as aioredis
from hypothesis import given, settings
from hypothesis import strategies as st

from monitor.alerting.matcher import fold, match_view
from monitor.bus.keys import Keys
from monitor.collectors.x import tweet_to_raw
from monitor.enrich import clusters as cl
from monitor.enrich.clusters import (
    ClusterResult,
    StoryClusters,
    anchor_score,
    anchors,
    band_hashes,
    estimate_jaccard,
    is_strong,
    minhash,
    minhash_of,
    numbers,
    numbers_disagree,
    provenance,
    shingle_hashes,
    signature,
    tokens,
    view,
)
from monitor.normalize.normalizer import Normalizer
from monitor.schema import Entities, Forward, Item, Place, Unit, short_hash

T0 = datetime(2023, 11, 16, 9, 0, tzinfo=UTC)

# --- realistic texts --------------------------------------------------------------------------------

BRIGADE_UK = (
    "Пекельний штурм під Бахмутом. Воїни 3-ї окремої штурмової бригади відбили 24 атаки росіян біля "
    "Іванівського, Кліщіївки та Андріївки. За добу окупанти здійснили 30 авіаударів та 712 "
    "артилерійських обстрілів по наших позиціях. Штурмова група «Макара» зачистила лісосмугу за 6 км на "
    "захід від Бахмута та закріпилася на нових рубежах. Ворог відступив, залишивши техніку. Слава Україні!"
)
# A media channel reposts it: a breaking-news header, one word changed, the sign-off replaced by a credit.
BRIGADE_UK_REPOST = (
    "⚡️Терміново! Пекельний штурм під Бахмутом. Воїни 3-ї окремої штурмової бригади відбили 24 атаки "
    "росіян біля Іванівського, Кліщіївки та Андріївки. За добу окупанти здійснили 30 авіаударів та 712 "
    "артилерійських обстрілів по позиціях. Штурмова група «Макара» зачистила лісосмугу за 6 км на захід "
    "від Бахмута та закріпилася на нових рубежах. Ворог відступив, залишивши техніку. Джерело: 3 ОШБр"
)
BRIGADE_EN_WRITEUP = (
    "Ukraine's 3rd Assault Brigade says it repelled 24 Russian attacks near Ivanivske, Klishchiivka and "
    "Andriivka, south of Bakhmut. According to the brigade, Russian forces carried out 30 air strikes and "
    "712 artillery strikes on its positions over the past day. An assault group led by a commander with "
    "the call sign Makar cleared a tree line six kilometres west of Bakhmut, the brigade said in a "
    "Telegram post on Thursday, November 16."
)
KHARKIV_UK = (
    "Вночі росіяни атакували Харків ударними дронами. Пошкоджено приватні будинки та лінію "
    "електропередач, постраждали двоє людей, їм надано допомогу. На місці працюють рятувальники ДСНС, "
    "інформація уточнюється, повідомив начальник обласної військової адміністрації."
)
ODESA_EN = (
    "Air defence forces shot down 15 of 18 Shahed drones over the Odesa region overnight, the Ukrainian "
    "Air Force said. Debris damaged port infrastructure and a grain warehouse; no casualties were reported."
)
GS_UK_DAY1 = (
    "Загальні бойові втрати противника з 24.02.22 по 18.11.23 орієнтовно склали: особового складу ‒ "
    "близько 316 980 (+1 150) осіб ліквідовано, танків ‒ 5 373 (+17) од, бойових броньованих машин ‒ "
    "10 039 (+25) од, артилерійських систем – 7 699 (+20) од, РСЗВ – 883 (+1) од, засоби ППО ‒ 579 (+2) "
    "од, літаків – 322 (+0) од, гелікоптерів – 324 (+0) од, БПЛА оперативно-тактичного рівня – 5 714 (+8), "
    "крилаті ракети ‒ 1 559 (+0), кораблі / катери ‒ 22 (+0) од, підводні човни - 1 (+0) од, "
    "автомобільної техніки та автоцистерн – 9 846 (+22) од, спеціальна техніка ‒ 1 078 (+6). "
    "Дані уточнюються. Бий окупанта! Разом переможемо!"
)
GS_EN_DAY1 = (
    "The total combat losses of the enemy from 24.02.22 to 18.11.23 were approximately: personnel ‒ "
    "about 316,980 (+1,150) persons were liquidated, tanks ‒ 5,373 (+17), armored combat vehicles ‒ "
    "10,039 (+25), artillery systems – 7,699 (+20), MLRS – 883 (+1), air defense means ‒ 579 (+2), "
    "aircraft – 322 (+0), helicopters – 324 (+0), operational-tactical level UAVs – 5,714 (+8), cruise "
    "missiles ‒ 1,559 (+0), warships / boats ‒ 22 (+0), submarines – 1 (+0), automotive equipment and "
    "fuel tanks – 9,846 (+22), special equipment ‒ 1,078 (+6). The data is being updated."
)
GS_UK_DAY2 = (
    "Загальні бойові втрати противника з 24.02.22 по 19.11.23 орієнтовно склали: особового складу ‒ "
    "близько 318 050 (+1 070) осіб ліквідовано, танків ‒ 5 388 (+15) од, бойових броньованих машин ‒ "
    "10 057 (+18) од, артилерійських систем – 7 717 (+18) од, РСЗВ – 884 (+1) од, засоби ППО ‒ 580 (+1) "
    "од, літаків – 322 (+0) од, гелікоптерів – 324 (+0) од, БПЛА оперативно-тактичного рівня – 5 726 (+12), "
    "крилаті ракети ‒ 1 559 (+0), кораблі / катери ‒ 22 (+0) од, підводні човни - 1 (+0) од, "
    "автомобільної техніки та автоцистерн – 9 869 (+23) од, спеціальна техніка ‒ 1 081 (+3). "
    "Дані уточнюються. Бий окупанта! Разом переможемо!"
)


def place(slug: str) -> Place:
    return Place(name=slug, start=0, end=0, id=f"alias:{slug}")


BATTLE_PLACES = [place("bakhmut"), place("ivanivske"), place("klishchiivka"), place("andriivka")]
BRIGADE = Unit(id="ua:3-assault-brigade", name="3rd Assault Brigade", start=0, end=0)


def make_item(
    text: str,
    *,
    source: str = "telegram",
    channel: str = "ab3army",
    external_id: str = "1",
    at: datetime = T0,
    lang: str = "uk",
    channel_id: int | None = None,
    forwarded_from: Forward | None = None,
    entities: Entities | None = None,
    event: str = "new",
) -> Item:
    key = str(channel_id) if channel_id is not None else channel
    platform = "telegram" if source.startswith("telegram") else source
    return Item(
        id=f"{platform}:{key}:{external_id}",
        source=source,  # type: ignore[arg-type]
        channel=channel,
        external_id=external_id,
        text=text,
        collected_at=at + timedelta(seconds=30),
        published_at=at,
        lang=lang,
        content_hash=short_hash(text),
        channel_id=channel_id,
        forwarded_from=forwarded_from,
        entities=entities or Entities(),
        event=event,  # type: ignore[arg-type]
    )


@pytest.fixture
def clusters(redis_client: aioredis.Redis, keys: Keys) -> StoryClusters:
    return StoryClusters(redis_client, keys)


async def cluster_keys(redis_client: aioredis.Redis, keys: Keys) -> list[bytes]:
    return [key async for key in redis_client.scan_iter(match=f"{keys.prefix}:cluster:*")]


# --- pure functions ----------------------------------------------------------------------------------


def test_minhash_is_deterministic_and_estimates_jaccard() -> None:
    """Signatures are reproducible; a light repost scores high, an unrelated text near zero."""
    first = minhash(BRIGADE_UK)
    assert first.dtype.name == "uint32" and first.shape == (128,)
    assert (first == minhash(BRIGADE_UK)).all()
    assert estimate_jaccard(first, minhash(BRIGADE_UK_REPOST)) >= 0.6
    assert estimate_jaccard(first, minhash(KHARKIV_UK)) < 0.1
    assert estimate_jaccard(first, minhash(BRIGADE_EN_WRITEUP)) < 0.1  # why anchors exist
    assert minhash("Вибухи в Харкові").size == 0  # too short to tell stories apart


def test_numbers_join_groups_and_skip_urls() -> None:
    """Digit groups join across languages' separators; URLs, glued digits and years do not anchor."""
    assert numbers("316 980 осіб") == numbers("316,980 persons") == numbers("316\u00a0980") == [316980]
    assert numbers("з 24.02.22 по 18.11.23") == [24, 2, 22, 18, 11, 23]
    assert numbers("https://t.me/ab3army/4521 A320 Су-34") == [34]
    item = make_item(GS_UK_DAY1)
    assert {"n:316980", "n:1559", "n:22"} <= anchors(item)
    assert "n:1" not in anchors(item)  # single digits are not anchors
    assert is_strong("n:316980") and is_strong("n:712")
    assert not any(is_strong(a) for a in ("n:24", "n:2023", "n:500", "place:alias:bakhmut"))


def test_anchor_rules_are_conservative() -> None:
    """Linking needs 3 shared anchors, one strong number and Jaccard >= 0.5; entities alone never link."""
    post = {"n:24", "n:30", "n:712", "place:a", "unit:b"}
    assert anchor_score(post, post | {"n:16"}) == pytest.approx(5 / 6)
    assert anchor_score({"place:a", "place:b", "unit:c"}, {"place:a", "place:b", "unit:c"}) is None
    assert anchor_score({"n:712", "n:24"}, {"n:712", "n:24"}) is None  # only two shared
    assert anchor_score(post, post | {f"n:{v}" for v in range(100, 110)}) is None  # Jaccard 1/3
    day1 = anchors(make_item(GS_UK_DAY1))
    day2 = anchors(make_item(GS_UK_DAY2))
    assert anchor_score(day1, anchors(make_item(GS_EN_DAY1, lang="en"))) is not None
    assert anchor_score(day1, day2) is None
    assert numbers_disagree(day1, day2)
    assert not numbers_disagree(anchors(make_item(BRIGADE_UK)), anchors(make_item(BRIGADE_UK_REPOST)))


def test_provenance_keys() -> None:
    """Telegram keys by numeric id and username (and date); X keys by tweet id; forwards point at the origin."""
    original = make_item(BRIGADE_UK, channel="ab3army", channel_id=1527145437, external_id="4521")
    origins, own = provenance(original)
    assert origins == []
    assert {"tg:1527145437:4521", "tg:ab3army:4521", f"tg:ab3army@{int(T0.timestamp())}"} <= set(own)
    fwd = make_item("коментар", forwarded_from=Forward(channel="1527145437", id="4521"), external_id="9")
    assert provenance(fwd)[0] == ["tg:1527145437:4521"]
    export_fwd = make_item("коментар", forwarded_from=Forward(channel="1527145437", date=T0), external_id="9")
    assert provenance(export_fwd)[0] == [f"tg:1527145437@{int(T0.timestamp())}"]
    quote = make_item("look", source="x", channel="nexta_tv", forwarded_from=Forward(id="1725"))
    assert provenance(quote) == (["x:1725"], ["x:1"])


# --- Redis -------------------------------------------------------------------------------------------


async def test_repost_with_small_edits_joins_the_original(clusters: StoryClusters) -> None:
    """A media channel's lightly edited repost lands in the brigade post's cluster by text."""
    original = make_item(BRIGADE_UK, channel="ab3army", external_id="4521")
    repost = make_item(BRIGADE_UK_REPOST, channel="operativnoZSU", external_id="88001", at=T0 + timedelta(hours=1))
    first = await clusters.assign(original)
    second = await clusters.assign(repost)
    assert first.is_new and first.matched_by == "new" and first.size == 1
    assert first.cluster_id == short_hash(original.id, 8)
    assert second.cluster_id == first.cluster_id
    assert second.matched_by == "text" and second.via == original.id
    assert second.score is not None and second.score >= 0.5
    assert not second.is_new and second.size == 2 and second.first_item_id == original.id


async def test_unrelated_stories_get_their_own_clusters(clusters: StoryClusters) -> None:
    """Different stories at the same time, in the same and in other languages, never share a cluster."""
    results = await clusters.assign_many(
        [
            make_item(BRIGADE_UK, external_id="1"),
            make_item(KHARKIV_UK, channel="kharkivoda", external_id="2"),
            make_item(ODESA_EN, source="feed", channel="https://news.example/feed", external_id="3", lang="en"),
            make_item(GS_UK_DAY1, channel="GeneralStaffZSU", external_id="4"),
        ]
    )
    assert len({r.cluster_id for r in results}) == 4
    assert all(r.is_new for r in results)


@pytest.mark.parametrize("forward_channel", ["1527145437", "ab3army", "AB3ARMY"])
async def test_forward_with_other_text_joins_the_original(clusters: StoryClusters, forward_channel: str) -> None:
    """A forward whose own text is only a comment joins the original's cluster (header by id or username)."""
    original = make_item(BRIGADE_UK, channel="ab3army", channel_id=1527145437, external_id="4521")
    forward = make_item(
        "Дивіться, що коїться під Бахмутом. Наші хлопці тримаються 💪",
        channel="some_blog",
        external_id="77",
        at=T0 + timedelta(minutes=20),
        forwarded_from=Forward(channel=forward_channel, id="4521", name="3-тя ОШБр"),
    )
    first = await clusters.assign(original)
    second = await clusters.assign(forward)
    assert second.cluster_id == first.cluster_id
    assert second.matched_by == "forward" and second.size == 2


async def test_forward_seen_before_its_original(clusters: StoryClusters) -> None:
    """When the forward arrives first, the original still joins it (provenance is recorded both ways)."""
    forward = make_item(
        "Коментар без спільного тексту.",
        channel="blog",
        external_id="5",
        forwarded_from=Forward(channel="ab3army", id="4521"),
    )
    original = make_item(BRIGADE_UK, channel="ab3army", channel_id=1527145437, external_id="4521")
    first = await clusters.assign(forward)
    second = await clusters.assign(original)
    assert second.cluster_id == first.cluster_id and second.matched_by == "forward"


async def test_x_quote_joins_the_quoted_tweet(clusters: StoryClusters) -> None:
    """The X collector's quote mapping (referenced_tweets -> forwarded_from) links a quote to its tweet."""
    users = [{"id": "10", "username": "nexta_tv", "name": "NEXTA"}, {"id": "20", "username": "someone", "name": "S"}]
    tweet = {"id": "1725", "author_id": "10", "created_at": "2023-11-16T10:00:00.000Z", "text": BRIGADE_EN_WRITEUP}
    quote = {
        "id": "1726",
        "author_id": "20",
        "created_at": "2023-11-16T10:05:00.000Z",
        "text": "Incredible footage, watch till the end",
        "referenced_tweets": [{"type": "quoted", "id": "1725"}],
    }
    normalizer = Normalizer()
    original_item = normalizer.normalize(tweet_to_raw(tweet, {"users": users}))
    quote_item = normalizer.normalize(tweet_to_raw(quote, {"users": users, "tweets": [tweet]}))
    assert quote_item.forwarded_from is not None and quote_item.forwarded_from.id == "1725"
    first = await clusters.assign(original_item)
    second = await clusters.assign(quote_item)
    assert second.cluster_id == first.cluster_id and second.matched_by == "forward"


async def test_general_staff_report_in_uk_and_en_via_anchors(clusters: StoryClusters) -> None:
    """The daily loss report in Ukrainian and its English version share no text but all their numbers."""
    uk = make_item(GS_UK_DAY1, channel="GeneralStaffZSU", external_id="10001")
    en = make_item(
        GS_EN_DAY1,
        source="feed",
        channel="https://mil.example/en",
        external_id="e1",
        lang="en",
        at=T0 + timedelta(hours=2),
    )
    first = await clusters.assign(uk)
    second = await clusters.assign(en)
    assert second.cluster_id == first.cluster_id
    assert second.matched_by == "anchors" and second.score is not None and second.score > 0.8


async def test_brigade_post_uk_and_media_writeup_en_via_anchors(clusters: StoryClusters) -> None:
    """A brigade's Ukrainian post and an English write-up with the same numbers, places and unit link."""
    entities = Entities(places=BATTLE_PLACES, units=[BRIGADE])
    post = make_item(BRIGADE_UK, channel="ab3army", external_id="4521", entities=entities)
    writeup = make_item(
        BRIGADE_EN_WRITEUP,
        source="feed",
        channel="https://kyivnews.example/rss",
        external_id="https://kyivnews.example/a/3osb",
        at=T0 + timedelta(hours=5),
        lang="en",
        entities=entities,
    )
    unrelated = make_item(
        KHARKIV_UK, channel="kharkivoda", external_id="9", entities=Entities(places=[place("kharkiv")])
    )
    first, _, second = await clusters.assign_many([post, unrelated, writeup])
    assert second.cluster_id == first.cluster_id and second.matched_by == "anchors"
    assert second.score == pytest.approx(8 / 9)  # all but "November 16" shared


async def test_consecutive_daily_reports_stay_apart(clusters: StoryClusters) -> None:
    """Near miss: two days' reports share the template and some unchanged counters, not the story."""
    day1 = make_item(GS_UK_DAY1, channel="GeneralStaffZSU", external_id="10001")
    day2 = make_item(GS_UK_DAY2, channel="GeneralStaffZSU", external_id="10002", at=T0 + timedelta(hours=24))
    assert estimate_jaccard(minhash(GS_UK_DAY1), minhash(GS_UK_DAY2)) > 0.2  # the template alone is a lot
    first = await clusters.assign(day1)
    second = await clusters.assign(day2)
    assert second.cluster_id != first.cluster_id and second.is_new


async def test_assigning_twice_is_idempotent(clusters: StoryClusters) -> None:
    """Re-processing an item (replay, redelivery, an edit) returns its cluster and adds no member."""
    original = make_item(BRIGADE_UK, external_id="4521")
    repost = make_item(BRIGADE_UK_REPOST, channel="operativnoZSU", external_id="88001")
    first = await clusters.assign(original)
    joined = await clusters.assign(repost)
    again = await clusters.assign(repost)
    edited = await clusters.assign(make_item(KHARKIV_UK, channel="operativnoZSU", external_id="88001", event="edit"))
    batch = await clusters.assign_many([original, original])
    assert again.cluster_id == joined.cluster_id == edited.cluster_id == first.cluster_id
    assert again.matched_by == edited.matched_by == "self" and not again.is_new
    assert [r.matched_by for r in batch] == ["self", "self"]
    assert again.size == edited.size == 2
    assert len(await clusters.members(first.cluster_id)) == 2


async def test_two_normalizers_racing_make_one_cluster(redis_url: str, keys: Keys) -> None:
    """Two processes assigning two near-duplicates at the same moment agree on one cluster."""
    clients = [aioredis.from_url(redis_url), aioredis.from_url(redis_url)]
    try:
        for round_number in range(5):
            round_keys = Keys(f"{keys.prefix}r{round_number}")
            first_item = make_item(BRIGADE_UK, channel="ab3army", external_id=f"a{round_number}")
            second_item = make_item(BRIGADE_UK_REPOST, channel="operativnoZSU", external_id=f"b{round_number}")
            a, b = StoryClusters(clients[0], round_keys), StoryClusters(clients[1], round_keys)
            first, second = await asyncio.gather(a.assign(first_item), b.assign(second_item))
            assert first.cluster_id == second.cluster_id
            assert sorted([first.is_new, second.is_new]) == [False, True]
            assert len(await a.members(first.cluster_id)) == 2
            # and one item redelivered to both at once is recorded once
            again_a, again_b = await asyncio.gather(a.assign(second_item), b.assign(second_item))
            assert again_a.cluster_id == again_b.cluster_id == first.cluster_id
            assert again_a.matched_by == again_b.matched_by == "self"
            assert len(await a.members(first.cluster_id)) == 2
            third = make_item(BRIGADE_UK, channel="c3", external_id=f"c{round_number}")
            twice = await asyncio.gather(a.assign(third), b.assign(third))
            assert {r.cluster_id for r in twice} == {first.cluster_id}
            assert len(await a.members(first.cluster_id)) == 3
    finally:
        for client in clients:
            await client.aclose()


async def test_every_key_has_a_ttl(clusters: StoryClusters, redis_client: aioredis.Redis, keys: Keys) -> None:
    """Index buckets expire after one window, cluster records and member sets after two; nothing is permanent."""
    forward = make_item(
        "коментар до посту", channel="blog", external_id="2", forwarded_from=Forward(channel="ab3army", id="1")
    )
    await clusters.assign_many([make_item(BRIGADE_UK), make_item(GS_UK_DAY1, external_id="3"), forward])
    found = [key.decode() for key in await cluster_keys(redis_client, keys)]
    index = [key for key in found if ":cluster:index:" in key]
    records = [key for key in found if ":cluster:index:" not in key]
    assert {key.split(":")[-1] for key in index} == {"items", "bands", "anchors", "origins"}
    assert len(records) == 4  # two clusters: a hash and a members set each
    window = 48 * 3600
    for key in index:
        assert window - 60 < await redis_client.ttl(key) <= window, key
    for key in records:
        assert 2 * window - 60 < await redis_client.ttl(key) <= 2 * window, key


async def test_members_are_ordered_by_time(clusters: StoryClusters) -> None:
    """Members come back oldest first whatever order they were assigned in; the first-seen item stays first."""
    base = make_item(BRIGADE_UK, external_id="1", at=T0 + timedelta(hours=3))
    earlier = make_item(BRIGADE_UK_REPOST, channel="media", external_id="2", at=T0)
    later = make_item(BRIGADE_UK + " Підписуйтесь!", channel="other", external_id="3", at=T0 + timedelta(hours=6))
    results = await clusters.assign_many([base, later])
    results.append(await clusters.assign(earlier))
    assert len({r.cluster_id for r in results}) == 1
    members = await clusters.members(results[0].cluster_id)
    assert [m for m, _ in members] == [earlier.id, base.id, later.id]
    assert [t for _, t in members] == sorted(t for _, t in members)
    info = await clusters.info(results[0].cluster_id)
    assert info == {"first": base.id, "first_seen": (T0 + timedelta(hours=3)).timestamp(), "size": 3}


async def test_window_limits_links(clusters: StoryClusters) -> None:
    """The same text three days later is a new story; within the window it is not."""
    first = await clusters.assign(make_item(BRIGADE_UK, external_id="1"))
    inside = await clusters.assign(make_item(BRIGADE_UK, channel="c2", external_id="2", at=T0 + timedelta(hours=47)))
    outside = await clusters.assign(make_item(BRIGADE_UK, channel="c3", external_id="3", at=T0 + timedelta(days=5)))
    assert inside.cluster_id == first.cluster_id
    assert outside.cluster_id != first.cluster_id and outside.is_new


async def test_batch_costs_two_round_trips_and_links_within_itself(clusters: StoryClusters) -> None:
    """A batch of 200 takes two round trips; near-duplicates inside one batch share a cluster."""
    items = [
        make_item(
            f"{BRIGADE_UK} Випуск {n}. {KHARKIV_UK if n % 2 else ODESA_EN}", channel=f"ch{n % 50}", external_id=str(n)
        )
        for n in range(200)
    ]
    results = await clusters.assign_many(items)
    assert clusters.round_trips == 2  # the lookup script and the commit script
    assert len({r.cluster_id for r in results}) == 1
    assert results[0].is_new and results[-1].size == 200
    assert sum(r.is_new for r in results) == 1


async def test_seed_articles_are_not_merged(clusters: StoryClusters, seeds_dir: Path) -> None:
    """Five different articles about one battle (Bakhmut) stay five clusters even at the same moment."""
    items = []
    for path in sorted(seeds_dir.glob("*.txt")):
        items.append(
            make_item(
                path.read_text(encoding="utf-8"), source="corpus", channel="seeds", external_id=path.stem, lang="en"
            )
        )
    results = await clusters.assign_many(items)
    assert len(results) == 5
    assert len({r.cluster_id for r in results}) == 5
    assert all(r.matched_by == "new" for r in results)


def test_cluster_keys_share_the_prefix() -> None:
    """Every cluster key name stays under ``{prefix}:cluster:`` and no two collide."""
    names = Keys("ww")
    built = [
        names.cluster("abc"),
        names.cluster_members("abc"),
        names.cluster_items(1),
        names.cluster_bands(1),
        names.cluster_anchors(1),
        names.cluster_origins(1),
    ]
    assert all(name.startswith("ww:cluster:") for name in built)
    assert len(set(built)) == len(built)


AIR_FORCE_DAY1 = (
    "У ніч на 18 листопада 2023 року противник атакував ударними БпЛА типу Shahed-136/131 з напрямку "
    "Приморсько-Ахтарськ – РФ. Всього було 38 ударних БпЛА. До відбиття повітряного нападу залучалися "
    "зенітні ракетні підрозділи, засоби радіоелектронної боротьби та мобільні вогневі групи Сил оборони "
    "України. У результаті бойової роботи знищено 29 ударних БпЛА в межах Миколаївської, Одеської, "
    "Херсонської, Дніпропетровської та Хмельницької областей. Повітряні сили ЗС України"
)
AIR_FORCE_DAY2 = AIR_FORCE_DAY1.replace("18 листопада", "19 листопада").replace("38 ударних", "20 ударних")
AIR_FORCE_DAY2 = AIR_FORCE_DAY2.replace("знищено 29", "знищено 15")


async def test_same_template_with_other_numbers_is_vetoed(redis_client: aioredis.Redis, keys: Keys) -> None:
    """Near miss: the Air Force's nightly template is a textual near-duplicate; its numbers keep days apart."""
    assert estimate_jaccard(minhash(AIR_FORCE_DAY1), minhash(AIR_FORCE_DAY2)) >= 0.5
    day1 = make_item(AIR_FORCE_DAY1, channel="kpszsu", external_id="1")
    day2 = make_item(AIR_FORCE_DAY2, channel="kpszsu", external_id="2", at=T0 + timedelta(hours=24))
    vetoed = StoryClusters(redis_client, keys)
    first, second = await vetoed.assign_many([day1, day2])
    assert second.cluster_id != first.cluster_id and second.is_new
    # the control: without the veto the text match alone would merge the two nights
    unvetoed = StoryClusters(redis_client, Keys(f"{keys.prefix}nv"), veto_min_numbers=10**6)
    first, second = await unvetoed.assign_many([day1, day2])
    assert second.cluster_id == first.cluster_id and second.matched_by == "text"


async def test_export_forward_by_date_and_same_second_posts(clusters: StoryClusters) -> None:
    """An export's forward header (channel and date, no id) finds the original; same-second posts stay apart."""
    original = make_item(BRIGADE_UK, channel="ab3army", channel_id=1527145437, external_id="4521")
    same_second = make_item(KHARKIV_UK, channel="ab3army", channel_id=1527145437, external_id="4522")
    forward = make_item(
        "Переслано без коментарів, але з іншим підписом каналу та посиланням",
        source="telegram_export",
        channel="archive",
        external_id="3",
        forwarded_from=Forward(channel="1527145437", date=T0, name="3-тя ОШБр"),
    )
    first, other, joined = await clusters.assign_many([original, same_second, forward])
    assert other.cluster_id != first.cluster_id
    assert joined.cluster_id == first.cluster_id and joined.matched_by == "forward"


async def test_deletes_and_empty_batches(clusters: StoryClusters) -> None:
    """A delete answers with the known cluster and records nothing new; an empty batch costs nothing."""
    assert await clusters.assign_many([]) == [] and clusters.round_trips == 0
    original = await clusters.assign(make_item(BRIGADE_UK, external_id="1"))
    known = await clusters.assign(make_item("", external_id="1", event="delete"))
    unknown = await clusters.assign(make_item("", external_id="2", event="delete"))
    assert known.cluster_id == original.cluster_id and known.matched_by == "self" and known.size == 1
    assert unknown.size == 0 and unknown.matched_by == "self" and not unknown.is_new
    assert await clusters.info(unknown.cluster_id) is None


async def test_forced_commit_reports_an_item_recorded_meanwhile(redis_url: str, keys: Keys) -> None:
    """With no retries left, an item another process recorded meanwhile is answered with that record's cluster."""
    clients = [aioredis.from_url(redis_url), aioredis.from_url(redis_url)]
    try:
        a, b = (StoryClusters(client, keys, max_retries=0) for client in clients)
        item = make_item(BRIGADE_UK, external_id="1")
        first, second = await asyncio.gather(a.assign(item), b.assign(item))
        assert first.cluster_id == second.cluster_id == short_hash(item.id, 8)
        assert sorted([first.matched_by, second.matched_by]) == ["new", "self"]
        assert first.first_item_id == second.first_item_id == item.id and first.size == second.size == 1
    finally:
        for client in clients:
            await client.aclose()


# --- the fast paths against their definitions ----------------------------------------------------------

_GROUPED = re.compile(r"\d{1,3}(?:[ \u00a0\u2009\u202f,.'’]\d{3})+(?![\d]|[.,]\d)")
_URL = re.compile(r"(?:https?://|www\.|t\.me/|t\.co/)\S*", re.IGNORECASE)


def reference_view(text: str) -> str:
    """The view as the module docstring defines it: URLs out, digit groups joined, then ``match_view``."""
    if any(marker in text for marker in ("://", "www.", "t.me/", "t.co/", "WWW.")):
        text = _URL.sub(" ", text)

    def join(match: re.Match[str]) -> str:
        start = match.start()
        if start and match.string[start - 1] in "0123456789.,":
            return match.group()
        return re.sub(r"\D", "", match.group())

    return match_view(_GROUPED.sub(join, text))


def reference_minhash(words: list[str], num_perm: int = 128) -> np.ndarray:
    """MinHash computed the plain way: crc32 per word, rolled 3-grams, min of ``(a*x + b) >> 32`` per permutation."""
    if len(words) < 6:
        return np.zeros(0, dtype=np.uint32)
    hashes = np.array([zlib.crc32(word.encode("utf-8", "surrogatepass")) for word in words], dtype=np.uint64)
    count = len(words) - 2
    rolled = hashes[:count].copy()
    for offset in (1, 2):
        rolled = rolled * np.uint64(0x9E3779B97F4A7C15) + hashes[offset : offset + count]
    shingles = (rolled * np.uint64(0xC2B2AE3D27D4EB4F)) >> np.uint64(32)
    a, b = cl._permutations(num_perm)
    return ((a * shingles[None, :] + b) >> np.uint64(32)).min(axis=1).astype(np.uint32)


TRICKY_TEXTS = [
    "",
    "316 980 осіб, 316,980 persons, 316\u00a0980, 10\u2009039 and 1.078 (+6)",
    "12,345,678.90 1,123.5 .123 456 5. 123 x 1 234 567 7 12 345",
    "https://t.me/ab3army/4521 A320 Су-34 WWW.EXAMPLE.COM 1 000 T.ME/abc 5 000 www.x.org",
    "⚡️Терміново! 3 574 танків — «Бахмут» ґанок ҐАНОК 12 345 🇺🇦🔥",
    "٣١٦ ٩٨٠ Arabic-Indic digits, १२ ३४५ Devanagari, １２ ３４５ fullwidth",
    "Ёлка ЁЖ straße STRASSE İstanbul ﬁle ﬆ 92nd 1st 2ND 3rd 44th",
    "abc’def 12’345 a_b c__d _ __ tab\t12\n345 Mixed Bаkhmut 100 500 € 12 345 ₴",
    "\ud800 lone surrogate 123 456",
]


@pytest.mark.parametrize("text", TRICKY_TEXTS)
def test_view_matches_its_definition(text: str) -> None:
    """The one-pass view (bytes scan, digit-group prefilter) is the view the docstring defines, token for token."""
    expected = reference_view(text)
    assert view(text) == expected
    assert tokens(text) == expected.split()
    assert numbers(text) == cl.numbers_in_view(expected)


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet="abXY абЁёґҐ 0123456789 ,.'’\u00a0\u2009\u202f-—:/ wt.meh ١٢ 🔥 _\n", max_size=60))
def test_view_matches_its_definition_on_random_text(text: str) -> None:
    """Random mixes of digits, separators, scripts, URLs markers and emoji: the fast view never drifts."""
    expected = reference_view(text)
    assert view(text) == expected
    assert numbers(text) == cl.numbers_in_view(expected)


def test_byte_classes_match_unicode() -> None:
    """The byte tests know the lead of every non-ASCII ``\\d`` and of every character that folds into ASCII.

    (Four-byte characters never take the byte path.) Derived from this Python's Unicode tables, so a
    new Unicode version that adds such characters under other lead bytes fails here.
    """
    digits, folds = set(), set()
    for code in range(0x80, 0x10000):
        if 0xD800 <= code < 0xE000:
            continue
        char = chr(code)
        if re.match(r"\d", char):
            digits.add(char.encode("utf-8")[0])
        if any(folded < "\x80" for folded in fold(char)):
            folds.add(char.encode("utf-8")[0])
        assert fold(fold(char)) == fold(char)  # the word-hash cache takes tokens folded or not
    assert digits == set(cl._DIGIT_LEADS)
    assert folds == set(cl._FOLD_LEADS)


def test_batched_signatures_equal_the_plain_computation() -> None:
    """One batch of texts (short, exact-minimum, long past a numpy step) gets each text's own MinHash, bit for bit."""
    words = tokens(" ".join([BRIGADE_UK, KHARKIV_UK, ODESA_EN, GS_UK_DAY1, GS_EN_DAY1]))
    texts = [
        tokens(BRIGADE_UK),
        tokens(KHARKIV_UK),
        words[:6],  # exactly min_tokens
        (words * 4)[: 3 * cl._STEP + 7],  # several numpy steps
        tokens(GS_EN_DAY1),
        words[:7],
    ]
    batched = cl._signatures(texts, 128, 3)
    for row, text in enumerate(texts):
        expected = reference_minhash(text)
        assert (batched[row] == expected).all()
        assert (minhash_of(text) == expected).all()
        assert (signature(shingle_hashes(text)) == expected).all()
    assert minhash_of(words[:5]).size == 0
    assert (signature(np.zeros(0, dtype=np.uint64)) == np.iinfo(np.uint32).max).all()


def test_prepared_batch_matches_per_item_functions() -> None:
    """prepare_many (batched MinHash, bands, anchors) gives what the per-item functions give."""
    clusters = StoryClusters(aioredis.Redis(), Keys("p"))
    items = [
        make_item(BRIGADE_UK, external_id="1", entities=Entities(places=BATTLE_PLACES, units=[BRIGADE])),
        make_item("Вибухи в Харкові", external_id="2"),
        make_item(GS_UK_DAY1, external_id="3"),
        make_item("", external_id="4", event="delete"),
        make_item(AIR_FORCE_DAY1, source="x", external_id="5", forwarded_from=Forward(id="9")),
        *(make_item(text + " 92ND 3rd 12 345 ſt 92ſt", external_id=f"t{n}") for n, text in enumerate(TRICKY_TEXTS)),
        make_item("Сили оборони: 92ND, 3Rd, 44th і 712 обстрілів; STRASSE 2023 року", external_id="u"),
    ]
    for item, prepared in zip(items, clusters.prepare_many(items), strict=True):
        sig = minhash(item.text) if item.event != "delete" else np.zeros(0, dtype=np.uint32)
        assert (prepared.sig == sig).all() and prepared.sig.size == sig.size
        assert list(prepared.bands) == band_hashes(sig)
        assert prepared.band_blob == b"".join(band_hashes(sig))
        if item.event != "delete":
            assert prepared.anchors == anchors(item)
            assert prepared.strong == sorted(a for a in anchors(item) if is_strong(a))
        origins, own = provenance(item)
        assert prepared.lookups == origins + [key for key in own if "@" not in key]
        assert prepared.marks == [key for key in own if "@" in key]


async def test_equal_scores_go_to_the_older_candidate(clusters: StoryClusters) -> None:
    """Two candidates with the same text score are decided by age, not by set order: every process agrees."""
    older = make_item(BRIGADE_UK, channel="a", external_id="1")
    newer = make_item(BRIGADE_UK, channel="b", external_id="2", at=T0 + timedelta(hours=72))  # out of the window
    between = make_item(BRIGADE_UK, channel="c", external_id="3", at=T0 + timedelta(hours=36))
    first = await clusters.assign(older)
    second = await clusters.assign(newer)
    assert second.cluster_id != first.cluster_id
    joined = await clusters.assign(between)
    assert joined.matched_by == "text" and joined.score == 1.0
    assert joined.cluster_id == first.cluster_id and joined.via == older.id


async def test_a_write_between_lookup_and_commit_is_caught(redis_url: str, keys: Keys) -> None:
    """The commit skips its compare-and-set only when nobody wrote in between: a write in between is a conflict."""
    clients = [aioredis.from_url(redis_url), aioredis.from_url(redis_url)]
    try:
        a, b = StoryClusters(clients[0], keys), StoryClusters(clients[1], keys)
        first_item = make_item(BRIGADE_UK, channel="ab3army", external_id="1")
        second_item = make_item(BRIGADE_UK_REPOST, channel="operativnoZSU", external_id="2")
        commit = b._commit
        results: list[ClusterResult] = []

        async def a_commits_first(*args: Any, **kwargs: Any) -> Any:
            if not results:
                results.append(await a.assign(first_item))  # lookup and commit while b is between its two
            return await commit(*args, **kwargs)

        b._commit = a_commits_first  # type: ignore[assignment]
        second = await b.assign(second_item)
        first = results[0]
        assert first.is_new and second.cluster_id == first.cluster_id and second.matched_by == "text"
        assert b.round_trips == 4  # the conflict, then a fresh plan
        assert len(await a.members(first.cluster_id)) == 2
    finally:
        for client in clients:
            await client.aclose()


async def test_one_process_never_retries(clusters: StoryClusters) -> None:
    """Batches of one normalizer commit without conflicts: two round trips each, even when they overlap."""
    items = [
        make_item(
            f"{BRIGADE_UK} Випуск {n % 7}. {KHARKIV_UK if n % 2 else ODESA_EN}", channel=f"c{n % 9}", external_id=str(n)
        )
        for n in range(120)
    ]
    for start in range(0, 120, 40):
        await clusters.assign_many(items[start : start + 40])
    assert clusters.round_trips == 6
