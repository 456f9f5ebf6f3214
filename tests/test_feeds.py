"""The feed collector: parsing RSS/Atom entries, and polling a local news-feed server over HTTP.

The server (tests/feed_server.py) listens on 127.0.0.1 only and serves feeds and article pages written
for these tests. Redis is the session's real redis-server under a unique prefix. Time is injected:
nothing here sleeps through a Retry-After.
"""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from html import escape
from typing import cast

import pytest
import redis.asyncio as aioredis
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
from monitor.collectors.feeds import (
    FeedCheckpoint,
    FeedCollector,
    FeedParseError,
    entries_to_items,
    entry_key,
    html_to_text,
    normalize_link,
    parse_feed,
)
from monitor.config import FeedsSettings
from monitor.metrics import Metrics
from monitor.schema import Media, RawItem, decode_entry, short_hash
from tests.feed_server import (
    ARTICLE_PARAGRAPHS,
    NOW,
    SITE,
    Entry,
    FeedServer,
    Resource,
    bridge_entries,
    frontline_entries,
    install_newsroom,
    kyiv_bureau_entries,
    rss,
)

SOURCE = "feed"
BASE = "http://127.0.0.1:9"  # only used to build documents for the pure parsing tests


class FakeClock:
    """A clock the test moves by hand."""

    def __init__(self, start: float) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@dataclass
class Env:
    """The local server, Redis under this test's prefix, metrics, and injected clocks."""

    server: FeedServer
    redis: aioredis.Redis
    keys: Keys
    metrics: Metrics
    checkpoints: Checkpoints
    emitter: Emitter
    clock: FakeClock = field(default_factory=lambda: FakeClock(1000.0))
    wall: FakeClock = field(default_factory=lambda: FakeClock(NOW.timestamp()))
    made: list[FeedCollector] = field(default_factory=list)

    def collector(self, paths: list[str], **overrides: object) -> FeedCollector:
        feeds = FeedsSettings.model_validate({"urls": [self.server.url(p) for p in paths], **overrides})
        made = FeedCollector(
            feeds, self.emitter, self.checkpoints, self.metrics, clock=self.clock, wall_clock=self.wall, rng=lambda: 0.0
        )
        self.made.append(made)
        return made

    async def published(self) -> list[RawItem]:
        entries = cast(list[tuple[bytes, dict[bytes, bytes]]], await self.redis.xrange(self.keys.raw))
        return [decode_entry(RawItem, fields) for _, fields in entries]

    async def checkpoint(self, path: str) -> str | None:
        return await self.checkpoints.get(SOURCE, self.server.url(path))

    def sample(self, name: str, **labels: str) -> float | None:
        return self.metrics.registry.get_sample_value(name, labels)

    def errors(self, path: str, kind: str) -> float:
        value = self.sample("warwatch_collector_errors_total", source=SOURCE, channel=self.server.url(path), kind=kind)
        return value or 0.0

    def backoff(self, path: str) -> float | None:
        return self.sample("warwatch_collector_backoff_seconds", source=SOURCE, channel=self.server.url(path))

    def stale(self, path: str) -> float | None:
        return self.sample("warwatch_feed_stale", channel=self.server.url(path))


@pytest.fixture
async def env(redis_client: aioredis.Redis, keys: Keys) -> AsyncIterator[Env]:
    """A news-feed server on 127.0.0.1, the real Redis under a unique prefix, and fresh metrics."""
    server = FeedServer()
    http = TestServer(server.app(), host="127.0.0.1")
    await http.start_server()
    server.base_url = str(http.make_url("")).rstrip("/")
    install_newsroom(server)
    metrics = Metrics()
    checkpoints = Checkpoints(redis_client, keys)
    emitter = Emitter(Publisher(redis_client, keys, 3600), checkpoints, metrics)
    environment = Env(server, redis_client, keys, metrics, checkpoints, emitter)
    yield environment
    for collector in environment.made:
        await collector.aclose()
    await http.close()


def dead_redis() -> aioredis.Redis:
    """A client for a port nothing listens on, failing fast."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return aioredis.Redis(host="127.0.0.1", port=port, retry=Retry(NoBackoff(), 0), socket_connect_timeout=1)


# --- pure parsing ----------------------------------------------------------------------------------


def test_entry_key_prefers_guid_then_link_then_title_and_date() -> None:
    """entry_key falls back from the GUID to the link to a hash of title and date."""
    assert entry_key({"id": " urn:x:1 ", "link": "https://a.example/1"}) == "urn:x:1"
    assert entry_key({"id": "", "link": "https://a.example/1"}) == "https://a.example/1"
    by_title = entry_key({"title": "Bakhmut update", "published": "Tue, 05 Mar 2024 07:40:00 +0200"})
    assert by_title == short_hash("Bakhmut update\nTue, 05 Mar 2024 07:40:00 +0200")
    assert by_title != entry_key({"title": "Bakhmut update", "published": "Wed, 06 Mar 2024 07:40:00 +0200"})


def test_rss_entries_become_items_oldest_first() -> None:
    """RSS 2.0 entries map to RawItems: ids, UTC dates, authors, plain text with paragraphs, media."""
    parsed = parse_feed(rss("Frontline Review", SITE, frontline_entries(BASE)), {"content-type": "application/rss+xml"})
    items = entries_to_items(parsed, feed_url="https://frontline-review.example/rss")
    assert [i.external_id for i in items] == [
        short_hash("frontline:2024-03-05:bakhmut-west"),
        short_hash("frontline:2024-03-05:kharkiv-drones-uk"),
        short_hash("frontline:2024-03-06:bakhmut-heights-ru"),
    ]
    west, kharkiv, heights = items
    assert all(i.source == "feed" and i.channel == "https://frontline-review.example/rss" for i in items)
    assert west.published_at == datetime(2024, 3, 5, 5, 40, tzinfo=UTC)
    assert kharkiv.published_at == datetime(2024, 3, 5, 21, 15, tzinfo=UTC)
    assert west.title == "Fighting continues west of Bakhmut as reserves rotate"
    assert west.url == f"{BASE}/articles/bakhmut-west.html?utm_source=rss&utm_medium=feed"
    assert west.author == "Frontline Desk"
    assert west.text == (
        "Ukrainian units repelled six assaults near Bakhmut overnight, the General Staff said.\n\n"
        "Shelling was reported in Chasiv Yar and Ivanivske.\nTwo civilians were injured."
    )
    assert west.media == [Media(type="photo", url=f"{SITE}/media/bakhmut-west.jpg", size=184_220)]
    assert kharkiv.text.startswith("Уночі російські ударні дрони атакували Харків")
    assert "\n\nПоранених немає" in kharkiv.text
    assert kharkiv.author == "Олена Мирна"
    assert heights.text == "Бои идут у Часова Яра и Ивановского.\nПодразделения ротируются ночью."
    assert heights.media == [Media(type="video", url=f"{SITE}/media/heights.mp4")]
    assert west.raw is not None
    assert west.raw["id"] == "frontline:2024-03-05:bakhmut-west"
    assert west.raw["tags"] == ["Bakhmut", "Donetsk oblast"]


def test_atom_entries_use_content_over_summary() -> None:
    """Atom entries take their text from the content block, and their author from <author><name>."""
    from tests.feed_server import atom  # noqa: PLC0415 -- only this test builds an Atom document

    body = atom("Київське бюро", f"{BASE}/kyiv", "tag:kyiv-bureau.example,2024:feed", kyiv_bureau_entries(BASE))
    items = entries_to_items(parse_feed(body), feed_url="k")
    assert [i.title for i in items] == [
        "Одеса: ППО збила ракети над морем",
        "Бахмутський напрямок: ворог збільшив кількість штурмів",
    ]
    odesa, bakhmut = items
    assert bakhmut.text == (
        "За минулу добу на Бахмутському напрямку відбито 14 атак.\n\n"
        "Найактивніше противник діяв поблизу Богданівки та Іванівського."
    )
    assert bakhmut.author == "Київське бюро"
    assert bakhmut.published_at == datetime(2024, 3, 6, 7, 30, tzinfo=UTC)
    assert odesa.author is None
    assert odesa.external_id == short_hash("tag:kyiv-bureau.example,2024-03-05:odesa-ppo")


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"<?xml version='1.0'?>\n<rss version='2.0'>\n<channel><title>Oops</title>\n</rss", "SAXParseException"),
        (b"<html><head><title>502 Bad Gateway</title></head><body>nginx</body></html>", "not an RSS or Atom"),
        (b"", "not an RSS or Atom document"),
    ],
)
def test_parse_feed_rejects_what_is_not_a_feed(body: bytes, reason: str) -> None:
    """Malformed XML with no entries, an HTML error page and an empty body raise FeedParseError."""
    with pytest.raises(FeedParseError, match=reason):
        parse_feed(body)


def test_normalize_link_ignores_tracking_and_cosmetics() -> None:
    """Links that differ only in scheme, www, tracking parameters, fragment or trailing slash compare equal."""
    a = normalize_link("https://www.Example.org/news/bakhmut/?utm_source=rss&id=7#comments")
    assert a == normalize_link("http://example.org/news/bakhmut?id=7")
    assert a != normalize_link("https://example.org/news/bakhmut?id=8")


@settings(max_examples=60, deadline=None)
@given(st.lists(st.text(alphabet=st.characters(blacklist_categories=("Cs", "Cc")), min_size=1), max_size=4))
def test_html_to_text_keeps_paragraphs(paragraphs: list[str]) -> None:
    """Escaped paragraphs come back as their text, whitespace-normalized, separated by blank lines."""
    source = "".join(f"<p>{escape(p)}</p>" for p in paragraphs)
    expected = "\n\n".join(n for p in paragraphs if (n := " ".join(p.split())))
    assert html_to_text(source) == expected


# --- polling ---------------------------------------------------------------------------------------


async def test_poll_publishes_and_conditional_get_gets_304(env: Env) -> None:
    """A first poll publishes every entry; the next one sends If-None-Match from the checkpoint and gets 304."""
    collector = env.collector(["/rss/frontline.xml"])
    url = env.server.url("/rss/frontline.xml")
    assert await collector.poll_feed(url) == 3
    items = await env.published()
    assert [i.title for i in items] == [
        "Fighting continues west of Bakhmut as reserves rotate",
        "Харків: нічна атака дронів, пошкоджено енергетичну інфраструктуру",
        "Под Бахмутом продолжаются бои за высоты к западу от города",
    ]
    assert {i.channel for i in items} == {url}
    stored = FeedCheckpoint.loads(await env.checkpoint("/rss/frontline.xml"))
    first = env.server.hits("/rss/frontline.xml")[0]
    assert "warwatch" in first.headers["User-Agent"]
    assert "If-None-Match" not in first.headers
    assert stored.etag is not None and stored.etag.startswith('"')
    assert stored.newest == datetime(2024, 3, 6, 6, 5, tzinfo=UTC).timestamp()
    newest = env.sample("warwatch_collector_last_item_timestamp_seconds", source=SOURCE, channel=url)
    assert newest == stored.newest

    assert await collector.poll_feed(url) == 0
    second = env.server.hits("/rss/frontline.xml")[1]
    assert second.headers["If-None-Match"] == stored.etag
    assert len(await env.published()) == 3
    assert env.sample("warwatch_collector_items_total", source=SOURCE, channel=url) == 3


async def test_last_modified_validator_is_sent_back(env: Env) -> None:
    """A feed with only Last-Modified is asked with If-Modified-Since and answers 304."""
    collector = env.collector(["/atom/kyiv.xml"])
    url = env.server.url("/atom/kyiv.xml")
    assert await collector.poll_feed(url) == 2
    stored = FeedCheckpoint.loads(await env.checkpoint("/atom/kyiv.xml"))
    assert stored.modified == "Wed, 06 Mar 2024 07:31:00 GMT"
    assert stored.etag is None
    assert await collector.poll_feed(url) == 0
    assert env.server.hits("/atom/kyiv.xml")[1].headers["If-Modified-Since"] == stored.modified
    assert env.server.resources["/atom/kyiv.xml"].served == 1


async def test_changing_guids_do_not_duplicate(env: Env) -> None:
    """A feed that mints new GUIDs each fetch yields each story once; a genuinely new story still comes through."""
    collector = env.collector(["/rss/zaporizhzhia.xml"])
    url = env.server.url("/rss/zaporizhzhia.xml")
    assert await collector.poll_feed(url) == 3
    assert await collector.poll_feed(url) == 1
    assert await collector.poll_feed(url) == 0
    titles = [i.title for i in await env.published()]
    assert titles == [
        "Curfew hours unchanged",
        "Bakhmut direction: situation update",
        "Air raid alert lifted in Zaporizhzhia",
        "Power restored in Zaporizhzhia districts",
    ]
    assert env.server.resources["/rss/zaporizhzhia.xml"].served == 3
    assert await env.redis.ttl(collector.links_key(url)) > 0


async def test_malformed_feed_is_reported_and_others_still_collected(env: Env) -> None:
    """Broken XML and an HTML error page are logged with URL and reason (kind parse); the good feed is read."""
    collector = env.collector(["/rss/broken.xml", "/rss/error-page.xml", "/rss/frontline.xml"])
    with capture_logs() as logs:
        await collector.run_once()
    assert len(await env.published()) == 3
    assert env.errors("/rss/broken.xml", "parse") == 1
    assert env.errors("/rss/error-page.xml", "parse") == 1
    assert env.errors("/rss/frontline.xml", "parse") == 0
    failures = {e["feed"]: e for e in logs if e["log_level"] == "error"}
    assert set(failures) == {env.server.url("/rss/broken.xml"), env.server.url("/rss/error-page.xml")}
    assert "SAXParseException" in failures[env.server.url("/rss/broken.xml")]["reason"]
    assert await env.checkpoint("/rss/broken.xml") is None


async def test_bozo_feed_with_entries_is_used_with_a_warning(env: Env) -> None:
    """A feed that is not well-formed but still yields entries is published, with a warning logged."""
    body = rss("Sloppy Wire", SITE, [Entry("Kramatorsk&nbsp;update", link=f"{SITE}/k/1", guid="sloppy-1")])
    env.server.add("/rss/sloppy.xml", Resource(body.replace(b"&amp;nbsp;", b"&nbsp;")))
    collector = env.collector(["/rss/sloppy.xml"])
    with capture_logs() as logs:
        assert await collector.poll_feed(env.server.url("/rss/sloppy.xml")) == 1
    warnings = [e for e in logs if e["log_level"] == "warning"]
    assert warnings and "undefined entity" in warnings[0]["reason"]
    assert env.errors("/rss/sloppy.xml", "parse") == 0


async def test_redirect_keeps_the_configured_url_as_channel(env: Env) -> None:
    """After a 301 the items keep the configured URL as channel; the final URL is only logged."""
    collector = env.collector(["/old/frontline.rss"])
    url = env.server.url("/old/frontline.rss")
    with capture_logs() as logs:
        assert await collector.poll_feed(url) == 3
    assert {i.channel for i in await env.published()} == {url}
    redirected = [e for e in logs if e["event"] == "feed redirected"]
    assert [e["final_url"] for e in redirected] == [env.server.url("/rss/frontline.xml")]
    assert await env.checkpoint("/rss/frontline.xml") is None
    assert await collector.poll_feed(url) == 0  # the validators travel through the redirect: 304
    assert "If-None-Match" in env.server.hits("/rss/frontline.xml")[1].headers


async def test_429_retry_after_pauses_only_that_feed(env: Env) -> None:
    """A 429 with Retry-After pauses the feed that long (gauge shows what is left); then it is read."""
    env.server.resources["/rss/frontline.xml"].script.append((429, {"Retry-After": "120"}))
    collector = env.collector(["/rss/frontline.xml", "/atom/kyiv.xml"])
    url = env.server.url("/rss/frontline.xml")
    await collector.run_once()
    assert env.errors("/rss/frontline.xml", "rate_limited") == 1
    assert env.backoff("/rss/frontline.xml") == 120
    assert len(await env.published()) == 2  # the Atom feed was not held up
    env.clock.advance(60)
    assert await collector.poll_feed(url) == 0
    assert len(env.server.hits("/rss/frontline.xml")) == 1  # no request while paused
    assert env.backoff("/rss/frontline.xml") == 60
    env.clock.advance(61)
    assert await collector.poll_feed(url) == 3
    assert env.backoff("/rss/frontline.xml") == 0


async def test_503_with_http_date_retry_after(env: Env) -> None:
    """A 503 whose Retry-After is an HTTP date pauses the feed until then (kind http_5xx)."""
    until = format_datetime(NOW + timedelta(minutes=5), usegmt=True)
    env.server.resources["/rss/frontline.xml"].script.append((503, {"Retry-After": until}))
    collector = env.collector(["/rss/frontline.xml"])
    url = env.server.url("/rss/frontline.xml")
    assert await collector.poll_feed(url) == 0
    assert env.errors("/rss/frontline.xml", "http_5xx") == 1
    assert env.errors("/rss/frontline.xml", "rate_limited") == 0
    assert collector.pause_remaining(url) == 300
    assert env.backoff("/rss/frontline.xml") == 300


async def test_other_5xx_back_off_exponentially_and_4xx_is_counted(env: Env) -> None:
    """Consecutive 500s double the pause from the interval; success resets it; a 404 counts as http_4xx."""
    env.server.resources["/rss/frontline.xml"].script.extend([(500, {}), (502, {})])
    collector = env.collector(["/rss/frontline.xml", "/rss/missing.xml"], interval=100)
    url = env.server.url("/rss/frontline.xml")
    assert await collector.poll_feed(url) == 0
    assert collector.pause_remaining(url) == 100
    env.clock.advance(100)
    assert await collector.poll_feed(url) == 0
    assert collector.pause_remaining(url) == 200
    assert env.backoff("/rss/frontline.xml") == 200
    env.clock.advance(200)
    assert await collector.poll_feed(url) == 3
    assert env.errors("/rss/frontline.xml", "http_5xx") == 2
    assert await collector.poll_feed(env.server.url("/rss/missing.xml")) == 0
    assert env.errors("/rss/missing.xml", "http_4xx") == 1


async def test_network_error_is_counted_and_backed_off(env: Env) -> None:
    """A refused connection counts as kind network and pauses only that feed."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed = f"http://127.0.0.1:{probe.getsockname()[1]}/rss.xml"
    settings_ = FeedsSettings(urls=[closed], interval=30, timeout=2)
    collector = FeedCollector(settings_, env.emitter, env.checkpoints, env.metrics, clock=env.clock)
    env.made.append(collector)
    assert await collector.poll_feed(closed) == 0
    errors = env.sample("warwatch_collector_errors_total", source=SOURCE, channel=closed, kind="network")
    assert errors == 1
    assert collector.pause_remaining(closed) == 30


async def test_bridge_serving_only_old_entries_is_stale(env: Env) -> None:
    """Staleness follows entry dates: a 200 with only 2022 posts is stale (logged once) until a new post."""
    collector = env.collector(["/bridge/feed.xml", "/rss/frontline.xml"])
    bridge = env.server.url("/bridge/feed.xml")
    with capture_logs() as logs:
        await collector.run_once()
        assert await collector.poll_feed(bridge) == 0  # 304, still stale, not logged again
    assert env.stale("/bridge/feed.xml") == 1
    assert env.stale("/rss/frontline.xml") == 0
    stale_logs = [e for e in logs if e["event"].startswith("feed is stale")]
    assert [e["feed"] for e in stale_logs] == [bridge]
    assert stale_logs[0]["newest_entry"] == "2022-12-14T18:02:00Z"

    fresh = Entry(
        "Bridge back online: Bakhmut outskirts quiet",
        link=f"{bridge}/status/2001",
        guid="bridge-2001",
        published=NOW - timedelta(hours=1),
        summary_html="Quiet night on the outskirts of Bakhmut.",
    )
    env.server.resources["/bridge/feed.xml"].body = rss("Bridge", SITE, [fresh, *bridge_entries(env.server.base_url)])
    with capture_logs() as logs:
        assert await collector.poll_feed(bridge) == 1
    assert env.stale("/bridge/feed.xml") == 0
    assert any(e["event"] == "feed is fresh again" for e in logs)


async def test_full_text_replaces_summary_and_fills_gaps(env: Env) -> None:
    """With fetch_full_text the article's main text (no nav/footer) replaces the summary; a 404 falls back."""
    collector = env.collector(["/rss/longreads.xml"], fetch_full_text=True)
    url = env.server.url("/rss/longreads.xml")
    assert await collector.poll_feed(url) == 2
    by_title = {i.title: i for i in await env.published()}
    analysis = by_title["What the withdrawal from Avdiivka means for Bakhmut's flank"]
    assert ARTICLE_PARAGRAPHS[1] in analysis.text
    assert ARTICLE_PARAGRAPHS[3] in analysis.text
    assert "NAVIGATION-NOISE" not in analysis.text and "FOOTER-NOISE" not in analysis.text
    assert "teaser" not in analysis.text
    assert analysis.author == "Iryna Koval"  # the feed had none
    assert analysis.published_at is not None and analysis.published_at.date() == datetime(2024, 3, 4).date()
    gone = by_title["Removed story"]
    assert gone.text == "Summary of a story whose page was taken down."
    assert env.errors("/rss/longreads.xml", "article_fetch") == 1

    assert await collector.poll_feed(url) == 0  # nothing new: no article is fetched again
    assert len(env.server.hits("/articles/avdiivka-analysis.html")) == 1
    assert len(env.server.hits("/articles/gone.html")) == 1


async def test_redis_failure_leaves_validators_and_guards_unchanged(env: Env) -> None:
    """If Redis refuses the items, neither validators nor guards are stored; the next poll publishes them."""
    collector = env.collector(["/rss/frontline.xml"])
    url = env.server.url("/rss/frontline.xml")
    dead = dead_redis()
    collector.emitter = Emitter(Publisher(dead, env.keys, 3600), env.checkpoints, env.metrics)
    try:
        with pytest.raises(RedisConnectionError):
            await collector.poll_feed(url)
    finally:
        await dead.aclose()
    assert env.errors("/rss/frontline.xml", "publish") == 1
    assert await env.checkpoint("/rss/frontline.xml") is None
    assert await env.redis.exists(collector.links_key(url)) == 0
    collector.emitter = env.emitter
    assert await collector.poll_feed(url) == 3
    assert "If-None-Match" not in env.server.hits("/rss/frontline.xml")[1].headers
    assert FeedCheckpoint.loads(await env.checkpoint("/rss/frontline.xml")).etag is not None


@pytest.mark.parametrize("limit", [1, 3])
async def test_per_host_concurrency_limit(env: Env, limit: int) -> None:
    """run_once fetches feeds concurrently, but never more than per_host_concurrency at once per host."""
    paths = [f"/rss/mirror-{n}.xml" for n in range(5)]
    for path in paths:
        env.server.add(path, Resource(rss("Mirror", SITE, frontline_entries(env.server.base_url)), delay=0.05))
    collector = env.collector(paths, per_host_concurrency=limit)
    await collector.run_once()
    assert env.server.max_in_flight == limit
    assert all(len(env.server.hits(p)) == 1 for p in paths)


async def test_run_polls_every_feed_until_stopped(env: Env) -> None:
    """run() polls each feed on its own schedule, again after the interval, and returns once stop is set."""
    feeds = FeedsSettings(urls=[env.server.url("/rss/frontline.xml"), env.server.url("/atom/kyiv.xml")], interval=0.05)
    collector = FeedCollector(feeds, env.emitter, env.checkpoints, env.metrics, clock=time.monotonic)
    env.made.append(collector)
    stop = asyncio.Event()
    task = asyncio.create_task(collector.run(stop))
    async with asyncio.timeout(5):
        await env.server.wait_for_hits(["/rss/frontline.xml", "/atom/kyiv.xml"], 3)
    stop.set()
    await asyncio.wait_for(task, timeout=2)
    assert len(await env.published()) == 5
