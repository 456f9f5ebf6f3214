"""The t.me/s collector: parsing real-structured pages, and polling a local fake t.me over HTTP.

The fake server speaks what t.me does: paged ``/s/<channel>?before=`` HTML, ETag and 304, 429 with
Retry-After, 5xx, and a redirect away from ``/s/`` for channels without a public preview. It listens
on 127.0.0.1 only. Redis is the session's real redis-server.
"""

from __future__ import annotations

import asyncio
import hashlib
import html
import re
import socket
from collections import defaultdict
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from email.utils import format_datetime
from typing import cast

import pytest
import redis.asyncio as aioredis
from aiohttp import web
from aiohttp.test_utils import TestServer
from hypothesis import given, settings
from hypothesis import strategies as st
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from structlog.testing import capture_logs

from monitor.bus.keys import Keys
from monitor.bus.publish import Publisher
from monitor.collectors.base import Checkpoints, Emitter
from monitor.collectors.telegram_web import (
    MarkupChanged,
    TelegramWebCollector,
    decode_data_view,
    normalize_channel,
    parse_count,
    parse_page,
    parse_retry_after,
)
from monitor.config import TelegramWebSettings
from monitor.metrics import Metrics
from monitor.schema import Forward, Media, RawItem, decode_entry, item_id
from tests.telegram_web_pages import (
    FakeChannel,
    Post,
    album,
    data_view,
    document,
    emoji,
    landing_html,
    link_preview,
    page_html,
    poll,
    post_html,
    video,
)

SOURCE = "telegram_web"
CHANNEL_ID = 1587203944
OTHER_ID = 1300991177
CDN = "https://cdn4.telesco.pe/file"

# --- the rich page ---------------------------------------------------------------------------------


def rich_page() -> str:
    """One page with every kind of post the parser has to handle, oldest first."""
    chan, title = "Frontline_Digest", "Frontline Digest"
    kyiv = timezone(timedelta(hours=2))
    posts = [
        Post(5001, text_html="Channel photo updated", service=True),
        Post(
            5002,
            text_html=(
                f"<b>Morning summary</b> {emoji('🔥')}<br/>Air defence active over the region.<br/>"
                'Details: <a href="https://example.org/map" target="_blank" rel="noopener">situation map</a>'
                " &amp; sources"
            ),
            when=datetime(2024, 3, 5, 9, 14, tzinfo=kyiv),
            views="987",
            signature="Olena K.",
        ),
        Post(
            5003,
            text_html="Follow-up: the bridge is closed to traffic until further notice.",
            reply_to=5002,
            reply_author="Frontline Digest",
            reply_quote_html="QUOTE-MARKER Morning summary, air defence active",
            views="4.4K",
        ),
        Post(
            5004,
            text_html="Statement from the regional administration about evacuation routes.",
            forwarded_html=(
                'Forwarded from <a class="tgme_widget_message_forwarded_from_name" '
                'href="https://t.me/Src_Chan/123"><span dir="auto">Source Channel</span></a>'
            ),
        ),
        Post(
            5005,
            text_html="Unverified footage from the eastern outskirts.",
            forwarded_html=(
                'Forwarded from <span class="tgme_widget_message_forwarded_from_name"><span dir="auto">'
                "Hidden Sender</span></span>"
            ),
        ),
        Post(
            5006,
            text_html="Damage to the depot, three angles.",
            media_html=album(
                [
                    (f"{CDN}/album_a.jpg", "https://t.me/Frontline_Digest/5006?single"),
                    (f"{CDN}/album_b.jpg", "https://t.me/Frontline_Digest/5007?single"),
                    (f"{CDN}/album_c.jpg", "https://t.me/Frontline_Digest/5008?single"),
                ]
            ),
            views="1.2M",
        ),
        Post(
            5009,
            media_html=video(
                f"{CDN}/clip_5009.mp4", f"{CDN}/clip_5009_thumb.jpg", "https://t.me/Frontline_Digest/5009", "0:42"
            ),
            views="12.5K",
        ),
        Post(
            5010,
            text_html="Full report attached.",
            media_html=document("https://t.me/Frontline_Digest/5010", "casualty_report_march.pdf", "2.4 MB"),
        ),
        Post(
            5011,
            media_html=poll("Should we publish maps with unit positions?", [("Yes", 18), ("No, never", 82)]),
        ),
        Post(
            5012,
            text_html='Analysis: <a href="https://news.example.com/analysis/42">news.example.com/analysis/42</a>',
            after_text_html=link_preview(
                "https://news.example.com/analysis/42",
                "Example News",
                "What the new front line means",
                "A long read on logistics and supply routes.",
                f"{CDN}/preview_42.jpg",
            ),
        ),
        Post(5013, views="55"),  # nothing the parser can read: counted as empty
    ]
    body = [post_html(chan, title, CHANNEL_ID, p) for p in posts]
    return page_html(chan, title, body, before=5001)


def by_id(items: Sequence[RawItem]) -> dict[str, RawItem]:
    return {item.external_id: item for item in items}


def test_parse_rich_page_counts_and_channel() -> None:
    """A rich page: posts, service and empty counts, channel id from data-view, the "more" link, order."""
    page = parse_page(rich_page(), channel="@Frontline_Digest")
    assert (page.posts, page.service, page.empty) == (11, 1, 1)
    assert page.before == 5001
    assert page.channel_id == CHANNEL_ID
    assert (page.oldest_id, page.newest_id) == (5001, 5013)
    assert [i.external_id for i in page.items] == [
        "5002",
        "5003",
        "5004",
        "5005",
        "5006",
        "5009",
        "5010",
        "5011",
        "5012",
    ]
    for item in page.items:
        assert item.source == "telegram_web"
        assert item.channel == "frontline_digest"
        assert item.channel_id == CHANNEL_ID
        assert item.url == f"https://t.me/Frontline_Digest/{item.external_id}"
        assert item_id(item) == f"telegram:{CHANNEL_ID}:{item.external_id}"


def test_parse_text_br_emoji_links_and_signature() -> None:
    """<br> becomes a newline, the emoji its character, link text stays, tags go; the signature is the author."""
    item = by_id(parse_page(rich_page(), channel="frontline_digest").items)["5002"]
    assert item.text == "Morning summary 🔥\nAir defence active over the region.\nDetails: situation map & sources"
    assert item.author == "Olena K."
    assert item.published_at == datetime(2024, 3, 5, 7, 14, tzinfo=UTC)
    assert item.metrics is not None and item.metrics.views == 987
    assert item.raw is not None and item.raw["links"] == ["https://example.org/map"]


def test_parse_reply_quote_does_not_leak() -> None:
    """A reply gives reply_to; the quoted text nested in the reply is not part of the post text."""
    items = by_id(parse_page(rich_page(), channel="frontline_digest").items)
    reply = items["5003"]
    assert reply.reply_to == "5002"
    assert reply.text == "Follow-up: the bridge is closed to traffic until further notice."
    assert "QUOTE-MARKER" not in reply.text
    assert reply.metrics is not None and reply.metrics.views == 4400
    assert reply.author is None  # the header with the channel's own name is not a signature
    assert items["5002"].reply_to is None


def test_parse_forwards_linked_and_hidden() -> None:
    """A forward with a link gives channel, id and name; a hidden source gives only the name."""
    items = by_id(parse_page(rich_page(), channel="frontline_digest").items)
    assert items["5004"].forwarded_from == Forward(channel="src_chan", id="123", name="Source Channel")
    assert items["5005"].forwarded_from == Forward(name="Hidden Sender")
    assert items["5003"].forwarded_from is None


def test_parse_media_album_video_document_poll_link() -> None:
    """Album -> one item with three photos; video, document (with size), poll question as text, link preview."""
    items = by_id(parse_page(rich_page(), channel="frontline_digest").items)
    assert items["5006"].media == [
        Media(type="photo", url=f"{CDN}/album_a.jpg"),
        Media(type="photo", url=f"{CDN}/album_b.jpg"),
        Media(type="photo", url=f"{CDN}/album_c.jpg"),
    ]
    assert items["5006"].text == "Damage to the depot, three angles."
    assert items["5006"].metrics is not None and items["5006"].metrics.views == 1_200_000
    assert items["5009"].media == [Media(type="video", url=f"{CDN}/clip_5009.mp4")]
    assert items["5009"].text == ""
    assert items["5010"].media == [
        Media(type="document", url="https://t.me/Frontline_Digest/5010", size=round(2.4 * 1024**2))
    ]
    assert items["5011"].text == "Should we publish maps with unit positions?"
    assert items["5011"].media == [Media(type="poll")]
    assert items["5011"].raw is not None
    assert items["5011"].raw["media"][0]["options"] == ["Yes", "No, never"]
    assert items["5012"].media == [Media(type="link", url="https://news.example.com/analysis/42")]
    assert items["5012"].text == "Analysis: news.example.com/analysis/42"


def test_parse_raw_is_small_and_has_no_html() -> None:
    """``raw`` holds the parsed fields, not the page's HTML."""
    for item in parse_page(rich_page(), channel="frontline_digest").items:
        assert item.raw is not None
        assert item.raw["post"] == f"Frontline_Digest/{item.external_id}"
        assert item.raw["view"]["c"] == -CHANNEL_ID
        assert "<div" not in repr(item.raw)
        assert len(repr(item.raw)) < 2000


def test_parse_markup_changed_raises() -> None:
    """Posts whose text and media the parser cannot find at all mean the markup changed."""
    posts = [Post(i, text_html=f"Report {i}", text_class="tgme_widget_message_body") for i in range(10, 15)]
    html = page_html("renamed", "Renamed", [post_html("renamed", "Renamed", CHANNEL_ID, p) for p in posts])
    with pytest.raises(MarkupChanged):
        parse_page(html, channel="renamed")


def test_parse_only_service_posts_is_not_markup_change() -> None:
    """A page holding only service messages is fine: nothing to emit, nothing wrong."""
    html = page_html(
        "quiet", "Quiet", [post_html("quiet", "Quiet", CHANNEL_ID, Post(1, "Channel created", service=True))]
    )
    page = parse_page(html, channel="quiet")
    assert (page.posts, page.service, page.items) == (1, 1, [])


TEXT_TOKENS = [
    *"abcXYZ019 .,:;!?-«»<>&\"'/#@",
    "  ",
    "\n",
    "\n\n",
    "Бахмут",
    "Харків",
    "🔥",
    "🇺🇦",
    "https://x.org/a?b=1",
]


@settings(max_examples=150, deadline=None)
@given(st.lists(st.sampled_from(TEXT_TOKENS), max_size=40).map("".join))
def test_parse_text_round_trip(text: str) -> None:
    """Any escaped text with newlines as <br> comes back as the same text (trimmed), tags never leaking."""
    body = html.escape(text).replace("\n", "<br/>")
    page = page_html("prop", "Prop", [post_html("prop", "Prop", CHANNEL_ID, Post(9, text_html=body))])
    expected = re.sub(r"[ \t]+\n", "\n", text).strip()
    if not expected:
        with pytest.raises(MarkupChanged):  # the only post is empty
            parse_page(page, channel="prop")
        return
    [item] = parse_page(page, channel="prop").items
    assert item.text == expected


@pytest.mark.parametrize(
    ("text", "value"),
    [("987", 987), ("4.4K", 4400), ("1.2M", 1_200_000), ("12,5K", 12_500), ("3B", 3_000_000_000), ("n/a", None)],
)
def test_parse_count(text: str, value: int | None) -> None:
    """View counters as t.me abbreviates them."""
    assert parse_count(text) == value


def test_data_view_padding_and_junk() -> None:
    """data-view decodes with or without base64 padding; junk decodes to an empty dict."""
    when = datetime(2024, 1, 1, tzinfo=UTC)
    dropped = 0
    for post_id in (7, 77, 777):  # JSON lengths with every remainder mod 3
        bare, padded = data_view(CHANNEL_ID, post_id, when), data_view(CHANNEL_ID, post_id, when, padded=True)
        dropped += bare != padded
        assert decode_data_view(bare) == decode_data_view(padded)
        assert decode_data_view(bare)["c"] == -CHANNEL_ID
    assert dropped == 2
    assert decode_data_view("%%%not base64") == {}
    assert decode_data_view("WzEsMl0") == {}  # valid base64 of a JSON list
    assert decode_data_view(None) == {}


def test_normalize_channel() -> None:
    """Configured channels may carry @, capitals or a t.me URL."""
    assert normalize_channel("@Nexta_Live") == "nexta_live"
    assert normalize_channel("https://t.me/s/AB3Army") == "ab3army"
    assert normalize_channel("t.me/frontline_digest") == "frontline_digest"


def test_parse_retry_after_seconds_and_date() -> None:
    """Retry-After in seconds or as an HTTP date."""
    assert parse_retry_after("120") == 120.0
    soon = format_datetime(datetime.now(UTC) + timedelta(seconds=90), usegmt=True)
    seconds = parse_retry_after(soon)
    assert seconds is not None and 85 <= seconds <= 91
    assert parse_retry_after("soon") is None


# --- the fake t.me ---------------------------------------------------------------------------------

Scripted = Callable[[], web.StreamResponse]


@dataclass
class Seen:
    """One request the fake t.me received."""

    channel: str
    before: str | None
    headers: dict[str, str]


@dataclass
class FakeTme:
    """t.me/s on 127.0.0.1: paged HTML, optional ETag/Last-Modified, and scripted failures per channel."""

    channels: dict[str, FakeChannel] = field(default_factory=dict)
    scripted: dict[str, list[Scripted]] = field(default_factory=lambda: defaultdict(list))
    private: set[str] = field(default_factory=set)
    etag: bool = False
    last_modified: str | None = None
    delay: float = 0.0
    requests: list[Seen] = field(default_factory=list)
    in_flight: int = 0
    max_in_flight: int = 0
    base_url: str = ""

    def add(self, channel: FakeChannel) -> FakeChannel:
        self.channels[channel.name] = channel
        return channel

    def hits(self, channel: str) -> int:
        return sum(1 for r in self.requests if r.channel == channel)

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/s/{channel}", self.preview)
        app.router.add_get("/{channel}", self.landing)
        return app

    async def preview(self, request: web.Request) -> web.StreamResponse:
        name = request.match_info["channel"]
        self.requests.append(Seen(name, request.query.get("before"), dict(request.headers)))
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            if self.delay:
                await asyncio.sleep(self.delay)
            if self.scripted[name]:
                return self.scripted[name].pop(0)()
            if name in self.private or name not in self.channels:
                raise web.HTTPFound(f"/{name}")
            before = request.query.get("before")
            body = self.channels[name].render(int(before) if before else None)
            headers: dict[str, str] = {}
            if self.etag:
                tag = '"' + hashlib.sha1(body.encode()).hexdigest()[:20] + '"'
                headers["ETag"] = tag
                if request.headers.get("If-None-Match") == tag:
                    return web.Response(status=304, headers=headers)
            if self.last_modified:
                headers["Last-Modified"] = self.last_modified
                if request.headers.get("If-Modified-Since") == self.last_modified:
                    return web.Response(status=304, headers=headers)
            return web.Response(text=body, content_type="text/html", headers=headers)
        finally:
            self.in_flight -= 1

    async def landing(self, request: web.Request) -> web.Response:
        name = request.match_info["channel"]
        return web.Response(text=landing_html(name, name.title()), content_type="text/html")


def status(code: int, headers: dict[str, str] | None = None) -> Scripted:
    """A scripted plain response with ``code``."""
    return lambda: web.Response(status=code, text=f"error {code}", headers=headers)


class FakeClock:
    """A monotonic clock the test moves by hand, so pauses need no real waiting."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@dataclass
class Env:
    """Everything a polling test needs."""

    tme: FakeTme
    redis: aioredis.Redis
    keys: Keys
    metrics: Metrics
    checkpoints: Checkpoints
    emitter: Emitter
    clock: FakeClock
    made: list[TelegramWebCollector] = field(default_factory=list)

    def collector(self, channels: Sequence[str], **overrides: object) -> TelegramWebCollector:
        values: dict[str, object] = {"base_url": self.tme.base_url, "channels": list(channels), "interval": 120.0}
        values.update(overrides)
        settings = TelegramWebSettings.model_validate(values)
        made = TelegramWebCollector(settings, self.emitter, self.checkpoints, self.metrics, clock=self.clock)
        self.made.append(made)
        return made

    async def published(self) -> list[RawItem]:
        entries = cast(list[tuple[bytes, dict[bytes, bytes]]], await self.redis.xrange(self.keys.raw))
        return [decode_entry(RawItem, fields) for _, fields in entries]

    async def checkpoint(self, channel: str) -> int:
        return await self.checkpoints.get_int(SOURCE, channel)

    def errors(self, channel: str, kind: str) -> float:
        value = self.metrics.registry.get_sample_value(
            "warwatch_collector_errors_total", {"source": SOURCE, "channel": channel, "kind": kind}
        )
        return value or 0.0

    def flood_wait(self, channel: str) -> float | None:
        return self.metrics.registry.get_sample_value(
            "warwatch_collector_flood_wait_seconds", {"source": SOURCE, "channel": channel}
        )


@pytest.fixture
async def env(redis_client: aioredis.Redis, keys: Keys) -> AsyncIterator[Env]:
    """A fake t.me on 127.0.0.1, the real Redis under a unique prefix, and fresh metrics."""
    tme = FakeTme()
    server = TestServer(tme.app(), host="127.0.0.1")
    await server.start_server()
    tme.base_url = str(server.make_url("")).rstrip("/")
    metrics = Metrics()
    checkpoints = Checkpoints(redis_client, keys)
    emitter = Emitter(Publisher(redis_client, keys, 3600), checkpoints, metrics)
    environment = Env(tme, redis_client, keys, metrics, checkpoints, emitter, FakeClock())
    yield environment
    for collector in environment.made:
        await collector.aclose()
    await server.close()


# --- polling ---------------------------------------------------------------------------------------


async def test_pagination_back_to_checkpoint(env: Env) -> None:
    """With a checkpoint three pages back, every newer post is published once, oldest first."""
    env.tme.add(FakeChannel.numbered("kharkiv_now", "Kharkiv Now", CHANNEL_ID, 1001, 1070))
    await env.checkpoints.set(SOURCE, "kharkiv_now", 1025)
    collector = env.collector(["kharkiv_now"])
    assert await collector.poll_channel("kharkiv_now") == 45
    ids = [int(i.external_id) for i in await env.published()]
    assert ids == list(range(1026, 1071))
    assert [r.before for r in env.tme.requests] == [None, "1051", "1031"]
    assert await env.checkpoint("kharkiv_now") == 1070


async def test_first_run_limited_to_first_run_pages(env: Env) -> None:
    """Without a checkpoint only first_run_pages pages are read."""
    env.tme.add(FakeChannel.numbered("odesa_watch", "Odesa Watch", CHANNEL_ID, 1, 100))
    collector = env.collector(["odesa_watch"], first_run_pages=2)
    assert await collector.poll_channel("odesa_watch") == 40
    ids = [int(i.external_id) for i in await env.published()]
    assert ids == list(range(61, 101))
    assert env.tme.hits("odesa_watch") == 2
    assert await env.checkpoint("odesa_watch") == 100


async def test_catchup_never_exceeds_max_catchup_pages(env: Env) -> None:
    """A checkpoint far behind is chased back at most max_catchup_pages pages."""
    env.tme.add(FakeChannel.numbered("far_behind", "Far Behind", CHANNEL_ID, 1, 200))
    await env.checkpoints.set(SOURCE, "far_behind", 5)
    collector = env.collector(["far_behind"], max_catchup_pages=3)
    assert await collector.poll_channel("far_behind") == 60
    assert env.tme.hits("far_behind") == 3
    assert await env.checkpoint("far_behind") == 200


async def test_repoll_publishes_nothing_new(env: Env) -> None:
    """A second poll of an unchanged channel adds nothing; add-once holds even with the checkpoint reset."""
    env.tme.add(FakeChannel.numbered("donbas_feed", "Donbas Feed", CHANNEL_ID, 300, 330))
    collector = env.collector(["donbas_feed"])
    assert await collector.poll_channel("donbas_feed") == 31
    assert await collector.poll_channel("donbas_feed") == 0
    await env.checkpoints.set(SOURCE, "donbas_feed", 0)
    assert await collector.poll_channel("donbas_feed") == 0
    assert len(await env.published()) == 31
    env.tme.channels["donbas_feed"].add(Post(331, text_html="New: convoy spotted on the highway"))
    assert await collector.poll_channel("donbas_feed") == 1
    assert [i.external_id for i in await env.published()][-1] == "331"


async def test_etag_304_means_nothing_new(env: Env) -> None:
    """The newest page is fetched with If-None-Match; a 304 publishes nothing; a change is fetched again."""
    env.tme.etag = True
    channel = env.tme.add(FakeChannel.numbered("zp_line", "ZP Line", CHANNEL_ID, 1, 10))
    collector = env.collector(["zp_line"])
    assert await collector.poll_channel("zp_line") == 10
    assert "If-None-Match" not in env.tme.requests[0].headers
    assert await collector.poll_channel("zp_line") == 0
    assert env.tme.requests[1].headers.get("If-None-Match", "").startswith('"')
    channel.add(Post(11, text_html="Sirens in the city centre"))
    assert await collector.poll_channel("zp_line") == 1
    assert await env.checkpoint("zp_line") == 11
    assert env.tme.requests[0].headers["User-Agent"].startswith("Mozilla/5.0")


async def test_last_modified_sends_if_modified_since(env: Env) -> None:
    """A Last-Modified response makes the next request conditional with If-Modified-Since."""
    env.tme.last_modified = "Tue, 05 Mar 2024 07:00:00 GMT"
    env.tme.add(FakeChannel.numbered("lm_chan", "LM", CHANNEL_ID, 1, 3))
    collector = env.collector(["lm_chan"])
    assert await collector.poll_channel("lm_chan") == 3
    assert await collector.poll_channel("lm_chan") == 0
    assert env.tme.requests[1].headers.get("If-Modified-Since") == "Tue, 05 Mar 2024 07:00:00 GMT"


async def test_429_pauses_only_that_channel(env: Env) -> None:
    """429 with Retry-After: counted, gauge set, channel paused; the other channel is still polled."""
    env.tme.add(FakeChannel.numbered("busy_chan", "Busy", CHANNEL_ID, 1, 5))
    env.tme.add(FakeChannel.numbered("calm_chan", "Calm", OTHER_ID, 1, 4))
    env.tme.scripted["busy_chan"].append(status(429, {"Retry-After": "300"}))
    collector = env.collector(["busy_chan", "calm_chan"])
    await collector.run_once()
    assert env.errors("busy_chan", "rate_limited") == 1
    assert env.flood_wait("busy_chan") == 300
    assert collector.pause_remaining("busy_chan") == 300
    assert {i.channel for i in await env.published()} == {"calm_chan"}
    await collector.run_once()  # still paused: no request for it
    assert env.tme.hits("busy_chan") == 1
    assert env.tme.hits("calm_chan") == 2
    env.clock.advance(301)
    await collector.run_once()
    assert env.tme.hits("busy_chan") == 2
    assert env.flood_wait("busy_chan") == 0
    assert sorted(int(i.external_id) for i in await env.published() if i.channel == "busy_chan") == [1, 2, 3, 4, 5]


async def test_429_with_http_date(env: Env) -> None:
    """A Retry-After given as an HTTP date pauses the channel until then."""
    env.tme.add(FakeChannel.numbered("dated", "Dated", CHANNEL_ID, 1, 2))
    until = format_datetime(datetime.now(UTC) + timedelta(seconds=600), usegmt=True)
    env.tme.scripted["dated"].append(status(429, {"Retry-After": until}))
    collector = env.collector(["dated"])
    assert await collector.poll_channel("dated") == 0
    assert 590 <= collector.pause_remaining("dated") <= 601
    flood = env.flood_wait("dated")
    assert flood is not None and 590 <= flood <= 601


async def test_5xx_counted_backed_off_and_retried(env: Env) -> None:
    """5xx: counted, the channel backs off (doubling), and a later poll succeeds."""
    env.tme.add(FakeChannel.numbered("flaky", "Flaky", CHANNEL_ID, 1, 6))
    env.tme.scripted["flaky"] += [status(503), status(502)]
    collector = env.collector(["flaky"], interval=60)
    assert await collector.poll_channel("flaky") == 0
    assert env.errors("flaky", "http_5xx") == 1
    assert collector.pause_remaining("flaky") == 60
    assert await collector.poll_channel("flaky") == 0  # paused: not fetched
    assert env.tme.hits("flaky") == 1
    env.clock.advance(61)
    assert await collector.poll_channel("flaky") == 0
    assert env.errors("flaky", "http_5xx") == 2
    assert collector.pause_remaining("flaky") == 120
    env.clock.advance(121)
    assert await collector.poll_channel("flaky") == 6
    assert collector.pause_remaining("flaky") == 0
    assert await env.checkpoint("flaky") == 6


async def test_4xx_and_network_errors_counted(env: Env) -> None:
    """A 404 counts as http_4xx; a response slower than the timeout counts as network."""
    env.tme.add(FakeChannel.numbered("gone", "Gone", CHANNEL_ID, 1, 2))
    env.tme.add(FakeChannel.numbered("slow", "Slow", OTHER_ID, 1, 2))
    env.tme.scripted["gone"].append(status(404))
    collector = env.collector(["gone"], timeout=0.2)
    assert await collector.poll_channel("gone") == 0
    assert env.errors("gone", "http_4xx") == 1
    env.tme.delay = 1.0
    assert await collector.poll_channel("slow") == 0
    assert env.errors("slow", "network") == 1
    assert await env.published() == []


async def test_redirect_away_from_preview_is_no_preview(env: Env) -> None:
    """A channel whose /s/ page redirects elsewhere: no_preview counted, logged once, nothing emitted."""
    env.tme.private.add("closed_circle")
    env.tme.add(FakeChannel.numbered("open_chan", "Open", OTHER_ID, 1, 3))
    collector = env.collector(["closed_circle", "open_chan"])
    with capture_logs() as logs:
        await collector.run_once()
        assert collector.pause_remaining("closed_circle") >= 3600
        env.clock.advance(4000)
        await collector.run_once()
    assert env.errors("closed_circle", "no_preview") == 2
    assert sum(1 for e in logs if "no public web preview" in e["event"]) == 1
    assert {i.channel for i in await env.published()} == {"open_chan"}
    assert await env.checkpoint("closed_circle") == 0


async def test_markup_changed_counts_parse_and_emits_nothing(env: Env) -> None:
    """A page whose posts yield nothing: parse error counted, nothing emitted, checkpoint untouched."""
    channel = env.tme.add(FakeChannel("reworked", "Reworked", CHANNEL_ID))
    for post_id in range(40, 46):
        channel.add(Post(post_id, text_html=f"Report {post_id}", text_class="tgme_widget_message_content"))
    await env.checkpoints.set(SOURCE, "reworked", 39)
    collector = env.collector(["reworked"])
    with capture_logs() as logs:
        assert await collector.poll_channel("reworked") == 0
    assert env.errors("reworked", "parse") == 1
    assert any(e["log_level"] == "error" for e in logs)
    assert await env.published() == []
    assert await env.checkpoint("reworked") == 39


async def test_redis_failure_keeps_checkpoint_and_next_poll_catches_up(env: Env) -> None:
    """If Redis refuses the items the checkpoint stays; the next poll (even with ETag) publishes them."""
    env.tme.etag = True
    env.tme.add(FakeChannel.numbered("resilient", "Resilient", CHANNEL_ID, 1, 25))
    await env.checkpoints.set(SOURCE, "resilient", 10)
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        dead_port = probe.getsockname()[1]
    dead = aioredis.Redis(host="127.0.0.1", port=dead_port, retry=Retry(NoBackoff(), 0), socket_connect_timeout=1)
    collector = env.collector(["resilient"])
    collector.emitter = Emitter(Publisher(dead, env.keys, 3600), env.checkpoints, env.metrics)
    try:
        with pytest.raises(RedisConnectionError):
            await collector.poll_channel("resilient")
    finally:
        await dead.aclose()
    assert env.errors("resilient", "publish") == 1
    assert await env.checkpoint("resilient") == 10
    assert await env.published() == []
    collector.emitter = env.emitter
    assert await collector.poll_channel("resilient") == 15
    assert [int(i.external_id) for i in await env.published()] == list(range(11, 26))
    assert await env.checkpoint("resilient") == 25


async def test_checkpoint_steps_over_trailing_service_posts(env: Env) -> None:
    """Service and empty posts are never emitted, but the checkpoint moves past them."""
    channel = env.tme.add(FakeChannel.numbered("svc", "Svc", CHANNEL_ID, 1, 3))
    channel.add(Post(4, text_html="Live stream started", service=True))
    collector = env.collector(["svc"])
    assert await collector.poll_channel("svc") == 3
    assert await env.checkpoint("svc") == 4


async def test_run_schedules_channels_one_at_a_time(env: Env) -> None:
    """run() polls every channel repeatedly on its own schedule, never two at once, and stops on the event."""
    env.tme.delay = 0.01
    for name, ident in (("alpha_chan", CHANNEL_ID), ("beta_chan", OTHER_ID), ("gamma_chan", OTHER_ID + 1)):
        env.tme.add(FakeChannel.numbered(name, name.title(), ident, 1, 3))
    web_settings = TelegramWebSettings(
        base_url=env.tme.base_url, channels=["alpha_chan", "beta_chan", "gamma_chan"], interval=0.05, jitter=0.5
    )
    collector = TelegramWebCollector(web_settings, env.emitter, env.checkpoints, env.metrics)
    stop = asyncio.Event()
    task = asyncio.create_task(collector.run(stop))
    try:
        for _ in range(200):
            await asyncio.sleep(0.02)
            if all(env.tme.hits(n) >= 2 for n in ("alpha_chan", "beta_chan", "gamma_chan")):
                break
        stop.set()
        await asyncio.wait_for(task, timeout=2)
    finally:
        await collector.aclose()
    assert all(env.tme.hits(n) >= 2 for n in ("alpha_chan", "beta_chan", "gamma_chan"))
    assert env.tme.max_in_flight == 1
    assert len(await env.published()) == 9
