"""The Telethon collector: message mapping on real Telethon objects, and the never-miss-a-post logic.

Telegram itself is never contacted. ``FakePort`` implements the same ``TelegramPort`` the production
``TelethonPort`` does, over lists of real ``telethon.tl.types.Message`` objects; publishing,
checkpoints and the channel directory run against the real redis-server of the test session.
"""

from __future__ import annotations

import asyncio
import json
import stat
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import redis.asyncio as aioredis
from hypothesis import given
from hypothesis import strategies as st
from pydantic import SecretStr
from redis.exceptions import ConnectionError as RedisConnectionError
from telethon import errors
from telethon.sessions import SQLiteSession
from telethon.tl import types

from monitor.bus.keys import Keys
from monitor.bus.publish import Publisher
from monitor.collectors.base import Checkpoints, Emitter
from monitor.collectors.telegram import (
    ChannelDirectory,
    ChannelRef,
    ChannelUnresolvable,
    FloodWait,
    TelegramCollector,
    TelegramPort,
    TelethonPort,
    album_to_raw,
    backfill,
    credentials_present,
    delete_to_raw,
    make_client,
    media_of,
    message_to_raw,
    normalize_reference,
)
from monitor.config import TelegramSettings
from monitor.errors import MonitorError
from monitor.metrics import Metrics
from monitor.schema import Engagement, Forward, Media, RawItem, decode, decode_entry, encode, item_id

CHANNEL = ChannelRef(id=1392375461, access_hash=4242, username="AB3army", title="3rd Assault Brigade")
OTHER = ChannelRef(id=1101170442, access_hash=77, username="nexta_tv", title="NEXTA")
PRIVATE = ChannelRef(id=1500000001, access_hash=9, username=None, title="No username")
WHEN = datetime(2024, 2, 17, 6, 0, tzinfo=UTC)


def msg(message_id: int, text: str = "", *, channel: ChannelRef = CHANNEL, **fields: Any) -> types.Message:
    """A real Telethon channel message; its date is WHEN plus ``message_id`` minutes unless given."""
    date = fields.pop("date", WHEN + timedelta(minutes=message_id))
    return types.Message(
        id=message_id, peer_id=types.PeerChannel(channel_id=channel.id), date=date, message=text, **fields
    )


def photo(photo_id: int, sizes: Sequence[int] = (1200, 48000, 156000)) -> types.MessageMediaPhoto:
    return types.MessageMediaPhoto(
        photo=types.Photo(
            id=photo_id,
            access_hash=1,
            file_reference=b"\x01\x02",
            date=WHEN,
            sizes=[
                types.PhotoStrippedSize(type="i", bytes=b"\xff" * 30),
                *[
                    types.PhotoSize(type="msy"[i % 3], w=320 * (i + 1), h=240 * (i + 1), size=s)
                    for i, s in enumerate(sizes)
                ],
            ],
            dc_id=2,
        )
    )


def video(document_id: int, size: int) -> types.MessageMediaDocument:
    return types.MessageMediaDocument(
        document=types.Document(
            id=document_id,
            access_hash=2,
            file_reference=b"\x03",
            date=WHEN,
            mime_type="video/mp4",
            size=size,
            dc_id=2,
            attributes=[
                types.DocumentAttributeVideo(duration=12.5, w=1280, h=720, supports_streaming=True),
                types.DocumentAttributeFilename(file_name="strike.mp4"),
            ],
        )
    )


class FakePort(TelegramPort):
    """The collector's Telegram port over in-memory channel histories, recording every call."""

    def __init__(self, channels: Sequence[ChannelRef] = (CHANNEL, OTHER)) -> None:
        self.refs: dict[str, ChannelRef] = {}
        for channel in channels:
            self.refs[str(channel.id)] = channel
            if channel.username:
                self.refs[channel.username.lower()] = channel
        self.history: dict[int, list[types.Message]] = {}
        self.floods: dict[int, list[float]] = {}
        self.resolve_calls: list[str] = []
        self.reads: list[tuple[str, int, int]] = []  # (method, channel id, min_id or limit)

    def post(self, channel: ChannelRef, *messages: types.Message) -> None:
        self.history.setdefault(channel.id, []).extend(messages)

    def _flood(self, channel: ChannelRef) -> None:
        waits = self.floods.get(channel.id)
        if waits:
            raise FloodWait(waits.pop(0))

    async def resolve(self, reference: str) -> ChannelRef:
        self.resolve_calls.append(reference)
        key = normalize_reference(reference)
        if key not in self.refs:
            raise ChannelUnresolvable(reference, "The username is not in use by anyone else yet")
        return self.refs[key]

    async def iter_history(
        self, channel: ChannelRef, *, min_id: int = 0, limit: int | None = None, since: datetime | None = None
    ) -> AsyncIterator[types.Message]:
        self.reads.append(("history", channel.id, min_id))
        self._flood(channel)
        count = 0
        for message in sorted(self.history.get(channel.id, []), key=lambda m: m.id):
            if message.id <= min_id or (since is not None and message.date < since):
                continue
            if limit is not None and count >= limit:
                return
            count += 1
            yield message

    async def recent(self, channel: ChannelRef, limit: int) -> list[types.Message]:
        self.reads.append(("recent", channel.id, limit))
        self._flood(channel)
        return sorted(self.history.get(channel.id, []), key=lambda m: m.id)[-limit:]


class FlakyPublisher(Publisher):
    """The real publisher, except that it raises a Redis connection error while ``failing`` is set."""

    failing = False

    async def publish_raw(self, items: Sequence[RawItem]) -> list[str | None]:
        if self.failing:
            raise RedisConnectionError("Connection refused (simulated)")
        return await super().publish_raw(items)


class Env:
    """Real publisher, checkpoints and emitter on the test's Redis prefix, plus a controllable clock."""

    def __init__(self, redis: aioredis.Redis, keys: Keys) -> None:
        self.redis = redis
        self.keys = keys
        self.metrics = Metrics()
        self.publisher = FlakyPublisher(redis, keys, 3600)
        self.checkpoints = Checkpoints(redis, keys)
        self.emitter = Emitter(self.publisher, self.checkpoints, self.metrics)
        self.now = 1000.0
        self.sleeps: list[float] = []

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)

    def clock(self) -> float:
        return self.now

    def collector(self, port: FakePort, **settings: Any) -> TelegramCollector:
        config = TelegramSettings(**{"channels": ["ab3army"], **settings})
        directory = ChannelDirectory(self.redis, self.keys, port, self.metrics)
        return TelegramCollector(
            config,
            port,
            self.emitter,
            self.checkpoints,
            self.metrics,
            directory,
            sleep=self.sleep,
            clock=self.clock,
            album_delay=0.05,
        )

    async def items(self) -> list[RawItem]:
        entries: list[tuple[bytes, dict[bytes, bytes]]] = await self.redis.xrange(self.keys.raw)  # type: ignore[assignment]
        return [decode_entry(RawItem, fields) for _, fields in entries]

    async def ids(self) -> list[str]:
        return [item.external_id for item in await self.items()]

    async def checkpoint(self, channel: ChannelRef = CHANNEL) -> int:
        return await self.checkpoints.get_int("telegram", channel.name)

    def sample(self, name: str, channel: ChannelRef | str = CHANNEL, **labels: str) -> float:
        label = channel if isinstance(channel, str) else channel.name
        value = self.metrics.registry.get_sample_value(name, {"source": "telegram", "channel": label, **labels})
        return 0.0 if value is None else value


FILLS = "warwatch_collector_reconciliation_fills_total"
ERRORS = "warwatch_collector_errors_total"
FLOOD = "warwatch_collector_flood_wait_seconds"


@pytest.fixture
def env(redis_client: aioredis.Redis, keys: Keys) -> Env:
    """Publisher, checkpoints, emitter and metrics on the real Redis under this test's prefix."""
    return Env(redis_client, keys)


async def until(condition: Any, timeout: float = 2.0) -> None:
    """Wait for an async condition to become true (for the live album buffer)."""
    deadline = asyncio.get_running_loop().time() + timeout
    while not await condition():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.01)


# --- mapping ---------------------------------------------------------------------------------------


def test_message_to_raw_maps_every_field() -> None:
    """A forwarded photo post with reply, counters and signature maps onto every RawItem field."""
    message = msg(
        4711,
        "Бахмут: the brigade repelled an assault near Klishchiivka.",
        fwd_from=types.MessageFwdHeader(
            date=datetime(2024, 2, 16, 22, 15, tzinfo=UTC),
            from_id=types.PeerChannel(channel_id=OTHER.id),
            channel_post=918,
            post_author="Duty officer",
        ),
        media=photo(5551234, sizes=(1200, 48000, 156000)),
        reply_to=types.MessageReplyHeader(reply_to_msg_id=4700),
        views=15321,
        forwards=210,
        post_author="Press service",
        replies=types.MessageReplies(replies=37, replies_pts=1),
    )
    collected = datetime(2024, 2, 17, 8, 0, tzinfo=UTC)
    raw = message_to_raw(message, channel=CHANNEL, collected_at=collected)

    assert raw.source == "telegram"
    assert raw.channel == "ab3army"
    assert raw.channel_id == CHANNEL.id
    assert raw.external_id == "4711"
    assert item_id(raw) == f"telegram:{CHANNEL.id}:4711"
    assert raw.url == "https://t.me/AB3army/4711"
    assert raw.published_at == WHEN + timedelta(minutes=4711)
    assert raw.collected_at == collected
    assert raw.text == "Бахмут: the brigade repelled an assault near Klishchiivka."
    assert raw.author == "Press service"
    assert raw.event == "new"
    assert raw.reply_to == "4700"
    assert raw.forwarded_from == Forward(
        channel=str(OTHER.id), id="918", name="Duty officer", date=datetime(2024, 2, 16, 22, 15, tzinfo=UTC)
    )
    assert raw.media == [Media(type="photo", id="5551234", size=156000)]
    assert raw.metrics == Engagement(views=15321, forwards=210, replies=37)
    assert raw.raw is not None
    assert raw.raw["id"] == 4711 and raw.raw["_"] == "Message"
    assert raw.raw["date"] == "2024-02-20T12:31:00Z"
    assert decode(RawItem, encode(raw)) == raw  # raw is JSON-safe and the item survives the wire


def test_video_in_a_channel_without_username() -> None:
    """A video's document id and size are kept, and a channel with no username is keyed and linked by id."""
    raw = message_to_raw(msg(12, "", channel=PRIVATE, media=video(880011, 7_340_032)), channel=PRIVATE)

    assert raw.channel == str(PRIVATE.id)
    assert item_id(raw) == f"telegram:{PRIVATE.id}:12"
    assert raw.url == f"https://t.me/c/{PRIVATE.id}/12"
    assert raw.media == [Media(type="video", id="880011", size=7_340_032)]
    assert raw.author is None and raw.forwarded_from is None and raw.reply_to is None and raw.metrics is None


@pytest.mark.parametrize(
    ("media", "expected"),
    [
        (
            types.MessageMediaWebPage(
                webpage=types.WebPage(id=31, url="https://example.org/report", display_url="example.org/report", hash=0)
            ),
            Media(type="webpage", url="https://example.org/report", id="31"),
        ),
        (types.MessageMediaGeo(geo=types.GeoPoint(long=37.99, lat=48.59, access_hash=0)), Media(type="geo")),
        (
            types.MessageMediaDocument(
                document=types.Document(
                    id=5, access_hash=0, file_reference=b"", date=WHEN, mime_type="video/mp4", size=900, dc_id=1,
                    attributes=[types.DocumentAttributeAnimated(), types.DocumentAttributeVideo(duration=2, w=1, h=1)],
                )
            ),
            Media(type="animation", id="5", size=900),
        ),
        (
            types.MessageMediaDocument(
                document=types.Document(
                    id=6, access_hash=0, file_reference=b"", date=WHEN, mime_type="application/pdf", size=4096,
                    dc_id=1, attributes=[types.DocumentAttributeFilename(file_name="losses.pdf")],
                )
            ),
            Media(type="document", id="6", size=4096),
        ),
        (types.MessageMediaPhoto(photo=types.PhotoEmpty(id=9)), Media(type="photo")),
        (
            types.MessageMediaContact(phone_number="", first_name="A", last_name="B", vcard="", user_id=1),
            Media(type="contact"),
        ),
    ],
)  # fmt: skip
def test_media_types(media: Any, expected: Media) -> None:
    """Each kind of attachment gets its type, id, size or URL; nothing is downloaded."""
    assert media_of(media) == [expected]


def test_album_to_raw_is_one_item() -> None:
    """Album parts become one item keyed by the smallest id, with the caption and every part's media."""
    parts = [
        msg(102, "", grouped_id=777, media=photo(3), views=90),
        msg(100, "", grouped_id=777, media=photo(1), views=100),
        msg(101, "Caption on the second part", grouped_id=777, media=video(2, 5000), post_author="Editor"),
    ]
    raw = album_to_raw(parts, channel=CHANNEL)

    assert raw.external_id == "100"
    assert item_id(raw) == f"telegram:{CHANNEL.id}:100"
    assert raw.url == "https://t.me/AB3army/100"
    assert raw.text == "Caption on the second part"
    assert raw.published_at == WHEN + timedelta(minutes=100)
    assert raw.author == "Editor"
    assert [m.id for m in raw.media] == ["1", "2", "3"]
    assert [m.type for m in raw.media] == ["photo", "video", "photo"]
    assert raw.metrics == Engagement(views=100)
    assert raw.raw is not None and [p["id"] for p in raw.raw["album"]] == [100, 101, 102]


def test_delete_event() -> None:
    """A deletion is an empty 'delete' event keyed like the deleted post."""
    raw = delete_to_raw(4711, channel=CHANNEL)
    assert (raw.event, raw.text, raw.external_id) == ("delete", "", "4711")
    assert item_id(raw) == f"telegram:{CHANNEL.id}:4711"
    assert message_to_raw(msg(4711, "gone"), channel=CHANNEL, event="delete").text == ""


def test_huge_message_raw_is_bounded() -> None:
    """A huge post keeps its full text, but its raw payload is replaced by a size note."""
    text = "Артемівськ " * 10_000
    raw = message_to_raw(msg(1, text), channel=CHANNEL)
    assert raw.text == text
    assert raw.raw is not None and raw.raw["truncated"] is True and raw.raw["bytes"] > 64 * 1024


@pytest.mark.parametrize(
    ("reference", "expected"),
    [
        ("ab3army", "ab3army"),
        ("@AB3army", "ab3army"),
        ("https://t.me/ab3army", "ab3army"),
        ("t.me/s/ab3army", "ab3army"),
        ("https://t.me/ab3army/4711", "ab3army"),
        ("-1001392375461", "1392375461"),
        ("1392375461", "1392375461"),
        ("https://t.me/c/1392375461/12", "1392375461"),
    ],
)
def test_normalize_reference(reference: str, expected: str) -> None:
    """Every accepted spelling of a channel reference has one canonical form."""
    assert normalize_reference(reference) == expected


@pytest.mark.parametrize("reference", ["https://t.me/+AbCdEf123", "-12345", "", "t.me/", "no spaces allowed"])
def test_normalize_reference_rejects(reference: str) -> None:
    """Invite links, basic-group ids and junk are unresolvable, never guessed."""
    with pytest.raises(ChannelUnresolvable):
        normalize_reference(reference)


@given(
    username=st.from_regex(r"[A-Za-z][A-Za-z0-9_]{3,30}", fullmatch=True),
    decoration=st.sampled_from(["{}", "@{}", "https://t.me/{}", "http://t.me/s/{}", "t.me/{}/99", " {} "]),
)
def test_normalize_reference_property(username: str, decoration: str) -> None:
    """Any decoration of a username normalizes to the lowercased username."""
    assert normalize_reference(decoration.format(username)) == username.lower()


# --- reconciliation and the live path --------------------------------------------------------------


async def test_first_run_reads_initial_history(env: Env) -> None:
    """Without a checkpoint only the last ``initial_history`` posts are read; later passes read from the checkpoint."""
    port = FakePort()
    port.post(CHANNEL, *[msg(i, f"post {i}") for i in range(1, 11)])
    collector = env.collector(port, initial_history=3)

    assert await collector.reconcile(CHANNEL) == 3
    assert await env.ids() == ["8", "9", "10"]
    assert await env.checkpoint() == 10

    port.post(CHANNEL, msg(11, "post 11"), msg(12, "post 12"))
    assert await collector.reconcile(CHANNEL) == 2
    assert await env.ids() == ["8", "9", "10", "11", "12"]
    assert port.reads == [("recent", CHANNEL.id, 3), ("history", CHANNEL.id, 10)]
    assert env.sample(FILLS) == 0  # no live path was running: this is collection, not gap filling


async def test_first_run_skips_an_album_cut_by_the_window(env: Env) -> None:
    """When the first-run window starts inside an album, that partial album is left out, not mis-keyed."""
    port = FakePort()
    port.post(CHANNEL, *[msg(i, "", grouped_id=9, media=photo(i)) for i in (1, 2, 3)], msg(4, "a"), msg(5, "b"))
    collector = env.collector(port, initial_history=4)

    assert await collector.reconcile(CHANNEL) == 2
    assert await env.ids() == ["4", "5"]
    assert await env.checkpoint() == 5


async def test_reconciliation_fills_gap_without_duplicates(env: Env) -> None:
    """Live delivers 1, 2 and 5; reconciliation finds 3 and 4: five unique items and two fills."""
    port = FakePort()
    history = [msg(i, f"post {i}") for i in range(1, 6)]
    port.post(CHANNEL, *history)
    collector = env.collector(port)

    for live in (history[0], history[1], history[4]):
        await collector.on_message(live, CHANNEL)
    assert await env.ids() == ["1", "2", "5"]

    assert await collector.reconcile(CHANNEL) == 2
    items = await env.items()
    assert sorted(int(i.external_id) for i in items) == [1, 2, 3, 4, 5]
    assert len({item_id(i) for i in items}) == 5
    assert env.sample(FILLS) == 2
    assert await env.checkpoint() == 5

    assert await collector.reconcile(CHANNEL) == 0  # a further pass adds nothing
    assert len(await env.items()) == 5


async def test_live_path_moves_checkpoint_only_without_gap(env: Env) -> None:
    """A live post right after the checkpoint moves it; one after a gap leaves it for reconciliation."""
    port = FakePort()
    port.post(CHANNEL, *[msg(i, f"post {i}") for i in range(1, 11)])
    collector = env.collector(port)
    await collector.reconcile(CHANNEL)
    assert await env.checkpoint() == 10

    port.post(CHANNEL, *[msg(i, f"post {i}") for i in range(11, 15)])
    await collector.on_message(port.history[CHANNEL.id][10], CHANNEL)  # id 11
    assert await env.checkpoint() == 11
    await collector.on_message(port.history[CHANNEL.id][13], CHANNEL)  # id 14: 12 and 13 missed
    assert await env.checkpoint() == 11

    assert await collector.reconcile(CHANNEL) == 2
    assert await env.checkpoint() == 14
    assert env.sample(FILLS) == 2
    assert sorted(int(i) for i in await env.ids()) == list(range(1, 15))


async def test_live_album_parts_become_one_item(env: Env) -> None:
    """Album parts arriving live are buffered and published once; reconciliation then adds nothing."""
    port = FakePort()
    port.post(CHANNEL, msg(20, "before"))
    collector = env.collector(port)
    await collector.reconcile(CHANNEL)

    parts = [
        msg(21, "", grouped_id=9001, media=photo(1)),
        msg(22, "Three photos from Avdiivka", grouped_id=9001, media=photo(2)),
        msg(23, "", grouped_id=9001, media=photo(3)),
    ]
    port.post(CHANNEL, *parts)
    for part in parts:
        await collector.on_message(part, CHANNEL)
    assert await env.ids() == ["20"]  # still buffered

    async def published() -> bool:
        # The checkpoint moves just after Redis accepted the item: wait for both.
        return len(await env.ids()) == 2 and await env.checkpoint() == 23

    await until(published)
    album = (await env.items())[1]
    assert album.external_id == "21"
    assert album.text == "Three photos from Avdiivka"
    assert [m.id for m in album.media] == ["1", "2", "3"]
    assert await env.checkpoint() == 23

    assert await collector.reconcile(CHANNEL) == 0
    assert await env.ids() == ["20", "21"]


async def test_album_in_history_is_one_item(env: Env) -> None:
    """Reconciliation groups album parts found in history into one item."""
    port = FakePort()
    port.post(
        CHANNEL,
        msg(1, "single"),
        msg(2, "", grouped_id=5, media=photo(11)),
        msg(3, "Caption", grouped_id=5, media=video(12, 100)),
        msg(4, "after"),
    )
    collector = env.collector(port)

    assert await collector.reconcile(CHANNEL) == 3
    items = await env.items()
    assert [i.external_id for i in items] == ["1", "2", "4"]
    assert items[1].text == "Caption" and len(items[1].media) == 2
    assert await env.checkpoint() == 4


async def test_late_album_part_maps_onto_the_published_album(env: Env) -> None:
    """Parts arriving after their album went out are no new post: a late caption is an edit of the album."""
    port = FakePort()
    collector = env.collector(port)
    await collector.on_message(msg(30, "", grouped_id=44, media=photo(1)), CHANNEL)
    await collector.flush_albums()
    await collector.on_message(msg(31, "", grouped_id=44, media=photo(2)), CHANNEL)
    await collector.flush_albums()
    assert await env.ids() == ["30"]

    await collector.on_message(msg(32, "late caption", grouped_id=44, media=photo(3)), CHANNEL)
    await collector.flush_albums()
    await collector.on_edit(msg(32, "late caption, edited", grouped_id=44, media=photo(3)), CHANNEL)
    await collector.on_edit(msg(31, "", grouped_id=44, media=photo(2)), CHANNEL)  # no caption: nothing
    items = await env.items()
    assert [(i.event, i.external_id, i.text) for i in items] == [
        ("new", "30", ""),
        ("edit", "30", "late caption"),
        ("edit", "30", "late caption, edited"),
    ]


async def test_edits_are_new_events_once_per_text(env: Env) -> None:
    """An edit is a new 'edit' event; the same edit twice is published once; another text again."""
    port = FakePort()
    collector = env.collector(port)
    await collector.on_message(msg(7, "Shelling reported"), CHANNEL)

    edited = msg(7, "Shelling reported in Kupiansk", edit_date=WHEN + timedelta(hours=1))
    await collector.on_edit(edited, CHANNEL)
    await collector.on_edit(edited, CHANNEL)
    items = await env.items()
    assert [(i.event, i.external_id) for i in items] == [("new", "7"), ("edit", "7")]
    assert items[1].text == "Shelling reported in Kupiansk"
    assert item_id(items[1]) == item_id(items[0])

    await collector.on_edit(msg(7, "Shelling reported in Kupiansk; two injured"), CHANNEL)
    assert [i.event for i in await env.items()] == ["new", "edit", "edit"]


async def test_delete_events(env: Env) -> None:
    """Each deleted id becomes one 'delete' event, published once however often it is reported."""
    port = FakePort()
    collector = env.collector(port)
    await collector.on_delete([15, 16], CHANNEL)
    await collector.on_delete([16], CHANNEL)

    items = await env.items()
    assert [(i.event, i.external_id, i.text) for i in items] == [("delete", "15", ""), ("delete", "16", "")]
    assert item_id(items[0]) == f"telegram:{CHANNEL.id}:15"


# --- faults ----------------------------------------------------------------------------------------


async def test_flood_wait_under_cap_is_slept(env: Env) -> None:
    """A flood wait within the cap is slept through (gauge shows it meanwhile), then the read resumes."""
    port = FakePort()
    port.post(CHANNEL, *[msg(i, f"post {i}") for i in range(1, 4)])
    port.floods[CHANNEL.id] = [30]
    collector = env.collector(port, flood_wait_cap=60)
    gauge_while_sleeping: list[float] = []

    async def sleep(seconds: float) -> None:
        env.sleeps.append(seconds)
        gauge_while_sleeping.append(env.sample(FLOOD))

    collector.sleep = sleep
    assert await collector.reconcile(CHANNEL) == 3
    assert env.sleeps == [30]
    assert gauge_while_sleeping == [30]
    assert env.sample(FLOOD) == 0
    assert env.sample(ERRORS, kind="flood_wait") == 1
    assert await env.ids() == ["1", "2", "3"]


async def test_flood_wait_over_cap_pauses_only_that_channel(env: Env) -> None:
    """A flood wait above the cap pauses its channel (gauge counts down) while the other channel proceeds."""
    port = FakePort()
    port.post(CHANNEL, msg(1, "ab3 post", channel=CHANNEL))
    port.post(OTHER, msg(1, "nexta post", channel=OTHER))
    port.floods[CHANNEL.id] = [600]
    collector = env.collector(port, channels=["ab3army", "nexta_tv"], flood_wait_cap=60)

    await collector.reconcile_all()
    assert [i.channel for i in await env.items()] == ["nexta_tv"]
    assert env.sleeps == []
    assert env.sample(FLOOD) == 600

    env.now += 100
    reads = len(port.reads)
    await collector.reconcile_all()
    assert [r for r in port.reads[reads:] if r[1] == CHANNEL.id] == []  # the paused channel is not called
    assert env.sample(FLOOD) == 500

    env.now += 600
    await collector.reconcile_all()
    assert sorted(i.channel for i in await env.items()) == ["ab3army", "nexta_tv"]
    assert env.sample(FLOOD) == 0


async def test_unresolvable_channel_reported_once_and_skipped(env: Env) -> None:
    """An unknown username and an invite link are reported once each; the resolvable channel is collected."""
    port = FakePort()
    port.post(CHANNEL, msg(1, "post"))
    collector = env.collector(port, channels=["ghost_channel", "https://t.me/+AbCdEf", "@ab3army"])

    await collector.reconcile_all()
    await collector.reconcile_all()
    assert env.sample(ERRORS, "ghost_channel", kind="unresolved") == 1
    assert env.sample(ERRORS, "https://t.me/+AbCdEf", kind="unresolved") == 1
    assert port.resolve_calls.count("ghost_channel") == 1
    assert await env.ids() == ["1"]
    assert set(collector.directory.unresolvable) == {"ghost_channel", "https://t.me/+AbCdEf"}


async def test_directory_persists_refs_across_restarts(env: Env) -> None:
    """Resolved channels are stored in Redis, so a second directory resolves them with no Telegram calls."""
    port = FakePort()
    first = ChannelDirectory(env.redis, env.keys, port, env.metrics)
    references = ["@AB3army", "https://t.me/s/ab3army", "-1001101170442"]
    resolved = [await first.resolve(r) for r in references]
    assert resolved == [CHANNEL, CHANNEL, OTHER]
    assert port.resolve_calls == ["ab3army", "1101170442"]
    stored = await env.redis.hgetall(env.keys.telegram_entities)
    assert set(stored) == {b"ab3army", b"1101170442"}
    assert json.loads(stored[b"ab3army"]) == {
        "id": CHANNEL.id, "access_hash": CHANNEL.access_hash, "username": "AB3army", "title": CHANNEL.title,
    }  # fmt: skip

    restarted_port = FakePort()
    second = ChannelDirectory(env.redis, env.keys, restarted_port, env.metrics)
    assert [await second.resolve(r) for r in references] == [CHANNEL, CHANNEL, OTHER]
    assert restarted_port.resolve_calls == []


async def test_redis_failure_keeps_checkpoint_then_catches_up(env: Env) -> None:
    """When Redis rejects a publish the checkpoint stays; the next pass publishes the same range."""
    port = FakePort()
    port.post(CHANNEL, *[msg(i, f"post {i}") for i in range(1, 4)])
    collector = env.collector(port)
    await collector.reconcile_all()
    assert await env.checkpoint() == 3

    port.post(CHANNEL, *[msg(i, f"post {i}") for i in range(4, 7)])
    env.publisher.failing = True
    await collector.reconcile_all()
    assert await env.checkpoint() == 3
    assert env.sample(ERRORS, kind="redis") == 1
    await collector.on_message(port.history[CHANNEL.id][3], CHANNEL)  # the live path fails too, quietly
    assert env.sample(ERRORS, kind="redis") == 2

    env.publisher.failing = False
    await collector.reconcile_all()
    assert await env.checkpoint() == 6
    assert await env.ids() == ["1", "2", "3", "4", "5", "6"]


# --- backfill, client and the supervisor -----------------------------------------------------------


async def test_backfill_since_date_oldest_first(env: Env) -> None:
    """Backfill publishes posts since a date, oldest first, up to the limit, leaving the checkpoint alone."""
    port = FakePort()
    port.post(CHANNEL, *[msg(i, f"post {i}") for i in range(10, 0, -1)])  # stored newest first
    since = WHEN + timedelta(minutes=4)

    assert await backfill(port, env.emitter, CHANNEL, since=since, limit=5, progress=False) == 5
    assert await env.ids() == ["4", "5", "6", "7", "8"]
    assert await env.checkpoint() == 0  # a later start would otherwise skip posts before ``since``

    assert await backfill(port, env.emitter, CHANNEL, since=since, limit=None, progress=False) == 2
    assert await env.ids() == ["4", "5", "6", "7", "8", "9", "10"]


async def test_backfill_sleeps_through_flood_wait(env: Env) -> None:
    """A flood wait during backfill is slept through and the read resumes without duplicates."""
    port = FakePort()
    port.post(CHANNEL, *[msg(i, f"post {i}") for i in range(1, 4)])
    port.floods[CHANNEL.id] = [12]

    count = await backfill(port, env.emitter, CHANNEL, since=WHEN, limit=None, progress=False, sleep=env.sleep)
    assert count == 3
    assert env.sleeps == [12]
    port.floods[CHANNEL.id] = [3600]
    with pytest.raises(MonitorError, match="3600"):
        await backfill(port, env.emitter, CHANNEL, since=WHEN, limit=None, progress=False, sleep=env.sleep)


def test_make_client_requires_credentials(tmp_path: Path) -> None:
    """Without api_id/api_hash make_client names the environment variables to set."""
    settings = TelegramSettings(session=tmp_path / "tg.session")
    assert not credentials_present(settings)
    with pytest.raises(MonitorError, match=r"TELEGRAM_API_ID.*TELEGRAM_API_HASH"):
        make_client(settings)
    with pytest.raises(MonitorError):
        make_client(TelegramSettings(api_id=12345, session=tmp_path / "tg.session"))


def test_make_client_uses_sqlite_session_file(tmp_path: Path) -> None:
    """The client keeps its session in an owner-only SQLite file at the configured path (folder created)."""
    path = tmp_path / "data" / "telegram.session"
    settings = TelegramSettings(api_id=12345, api_hash=SecretStr("0123456789abcdef"), session=path)
    assert credentials_present(settings)
    client = make_client(settings)
    try:
        assert isinstance(client.session, SQLiteSession)
        assert client.session.filename == str(path)
        assert path.is_file()
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
    finally:
        client.session.close()


class ScriptedTelethon:
    """Stands in for TelegramClient's get_entity and iter_messages, to check TelethonPort's translation."""

    def __init__(self, entity: Any = None, error: Exception | None = None, history: Sequence[Any] = ()) -> None:
        self.entity = entity
        self.error = error
        self.history = list(history)
        self.calls: list[tuple[Any, dict[str, Any]]] = []

    async def get_entity(self, target: Any) -> Any:
        self.calls.append((target, {}))
        if self.error is not None:
            raise self.error
        return self.entity

    def iter_messages(self, peer: Any, **options: Any) -> AsyncIterator[Any]:
        self.calls.append((peer, options))

        async def messages() -> AsyncIterator[Any]:
            for message in self.history:
                yield message
            if self.error is not None:
                raise self.error

        return messages()


async def test_telethon_port_translates_telethon() -> None:
    """TelethonPort maps entities to ChannelRef, Telethon errors to its own, and reads history oldest first."""
    entity = types.Channel(
        id=CHANNEL.id, title=CHANNEL.title, photo=types.ChatPhotoEmpty(), date=WHEN, broadcast=True,
        access_hash=CHANNEL.access_hash, username="AB3army",
    )  # fmt: skip
    client = ScriptedTelethon(entity=entity)
    assert await TelethonPort(client).resolve("https://t.me/s/AB3army") == CHANNEL
    assert client.calls[0][0] == "ab3army"
    await TelethonPort(client).resolve("-1001392375461")
    assert client.calls[1][0] == types.PeerChannel(channel_id=CHANNEL.id)

    for error, expected in [
        (errors.UsernameNotOccupiedError(request=None), ChannelUnresolvable),
        (errors.UsernameInvalidError(request=None), ChannelUnresolvable),
        (ValueError("Cannot find any entity corresponding to x"), ChannelUnresolvable),
        (errors.FloodWaitError(request=None, capture=42), FloodWait),
    ]:
        with pytest.raises(expected):
            await TelethonPort(ScriptedTelethon(error=error)).resolve("ghost_channel")
    user = types.User(id=5, username="someone")
    with pytest.raises(ChannelUnresolvable, match="not a channel"):
        await TelethonPort(ScriptedTelethon(entity=user)).resolve("someone")

    service = types.MessageService(
        id=2, peer_id=types.PeerChannel(CHANNEL.id), date=WHEN, action=types.MessageActionPinMessage()
    )
    reader = ScriptedTelethon(history=[msg(1, "a"), service, msg(3, "c")], error=errors.FloodWaitError(None, 7))
    port = TelethonPort(reader)
    seen: list[int] = []
    with pytest.raises(FloodWait) as flood:
        async for message in port.iter_history(CHANNEL, min_id=0, limit=None):
            seen.append(message.id)
    assert seen == [1, 3] and flood.value.seconds == 7
    peer, options = reader.calls[0]
    assert peer == types.InputPeerChannel(channel_id=CHANNEL.id, access_hash=CHANNEL.access_hash)
    assert options["reverse"] is True and options["min_id"] == 0


class FakeClient:
    """Just enough of TelegramClient's surface for ``run``: connection state and event handlers."""

    def __init__(self) -> None:
        self.connected = False
        self.handlers: list[tuple[Any, Any]] = []
        self._sender = SimpleNamespace(_auto_reconnect_callback=None)
        self.disconnect_calls = 0
        self._disconnected: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def is_connected(self) -> bool:
        return self.connected

    async def connect(self) -> None:
        self.connected = True

    async def is_user_authorized(self) -> bool:
        return True

    @property
    def disconnected(self) -> asyncio.Future[None]:
        return self._disconnected

    def add_event_handler(self, callback: Any, event: Any) -> None:
        self.handlers.append((callback, event))

    def remove_event_handler(self, callback: Any) -> None:
        self.handlers = [(c, e) for c, e in self.handlers if c is not callback]

    async def disconnect(self) -> None:
        self.disconnect_calls += 1
        self.connected = False


async def test_run_wires_handlers_and_reconciles_after_reconnect(env: Env) -> None:
    """``run`` reconciles on start, routes live events by marked channel id, and reconciles after a reconnect."""
    port = FakePort()
    port.post(CHANNEL, msg(1, "before start"))
    collector = env.collector(port)
    client = FakeClient()
    stop = asyncio.Event()
    task = asyncio.create_task(collector.run(client, stop))

    async def count(n: int) -> Any:
        async def check() -> bool:
            return len(await env.ids()) == n

        return check

    await until(await count(1))
    kinds = sorted(type(event).__name__ for _, event in client.handlers)
    assert kinds == ["MessageDeleted", "MessageEdited", "NewMessage"]
    new_message = next(c for c, e in client.handlers if type(e).__name__ == "NewMessage")
    await new_message(SimpleNamespace(chat_id=-1000000000000 - CHANNEL.id, message=msg(2, "live")))
    await new_message(SimpleNamespace(chat_id=-1000000000000 - OTHER.id, message=msg(3, "not configured")))
    assert await env.ids() == ["1", "2"]

    port.post(CHANNEL, msg(3, "missed while reconnecting"))
    await client._sender._auto_reconnect_callback()

    async def filled() -> bool:
        # The fill is counted just after Redis accepted the item: wait for both.
        return len(await env.ids()) == 3 and env.sample(FILLS) == 1

    await until(filled)

    stop.set()
    await asyncio.wait_for(task, 2)
    assert client.disconnect_calls == 1
    assert client.handlers == []
