"""Feed and X collectors inside the daemon: `run --once` polls them once and their items reach the alerts."""

from __future__ import annotations

from datetime import UTC, datetime

import redis.asyncio as aioredis
from aiohttp.test_utils import TestServer

from monitor.bus.keys import Keys
from monitor.schema import Alert, Item, decode_entry
from tests.feed_server import Entry, FeedServer, Resource, rss
from tests.test_pipeline import make_settings, run_once


async def test_feed_entries_flow_to_alerts_once(redis_url: str, redis_client: aioredis.Redis, keys: Keys) -> None:
    """`run --once` fetches the feed, each entry is one Item, a Bakhmut entry alerts, a rerun adds nothing."""
    server = FeedServer()
    http = TestServer(server.app(), host="127.0.0.1")
    await http.start_server()
    try:
        server.base_url = str(http.make_url("")).rstrip("/")
        entries = [
            Entry(
                "Fighting continues near Bakhmut",
                link=server.url("/news/1"),
                guid="n-1",
                published=datetime(2023, 5, 20, 8, 0, tzinfo=UTC),
                summary_html="<p>Ukrainian units held positions on the flanks of Bakhmut overnight.</p>",
            ),
            Entry(
                "Power restored in Kharkiv",
                link=server.url("/news/2"),
                guid="n-2",
                published=datetime(2023, 5, 20, 9, 0, tzinfo=UTC),
                summary_html="<p>Engineers restored power to most districts after the strike.</p>",
            ),
        ]
        server.add("/feed.xml", Resource(body=rss("Frontline Desk", server.url("/"), entries)))
        settings = make_settings(redis_url, keys, [], collectors={"feeds": {"urls": [server.url("/feed.xml")]}})
        await run_once(settings)
        items = [decode_entry(Item, f) for _, f in await redis_client.xrange(keys.items)]
        assert sorted(i.title or "" for i in items) == ["Fighting continues near Bakhmut", "Power restored in Kharkiv"]
        assert all(i.source == "feed" and i.channel == server.url("/feed.xml") for i in items)
        alerts = [decode_entry(Alert, f) for _, f in await redis_client.xrange(keys.alerts)]
        assert [a.title for a in alerts] == ["Fighting continues near Bakhmut"]
        await run_once(settings)
        assert await redis_client.xlen(keys.items) == 2
        assert await redis_client.xlen(keys.alerts) == 1
        assert len(server.hits("/feed.xml")) == 2
        assert "If-None-Match" in server.hits("/feed.xml")[1].headers
    finally:
        await http.close()


def test_headline_outside_the_body_is_matched() -> None:
    """A feed headline that the summary does not repeat becomes part of the Item text, so rules see it."""
    from monitor.alerting.engine import AlertEngine  # noqa: PLC0415
    from monitor.config import parse_config  # noqa: PLC0415 - local to this test
    from monitor.normalize.normalizer import Normalizer  # noqa: PLC0415
    from monitor.schema import RawItem  # noqa: PLC0415

    raw = RawItem(
        source="feed",
        channel="https://example.test/feed.xml",
        external_id="1",
        title="Bakhmut: heavy fighting on the flanks",
        text="Ukrainian units held positions overnight, officials said.",
        collected_at=datetime(2023, 5, 20, tzinfo=UTC),
    )
    item = Normalizer().normalize(raw)
    assert item.text.startswith("Bakhmut: heavy fighting on the flanks\n\n")
    rules = parse_config({"rules": [{"name": "b", "any": ["Bakhmut"]}]}, env={}).rules
    [alert] = AlertEngine(rules).evaluate(item)
    assert item.text[alert.matched[0].start : alert.matched[0].end] == "Bakhmut"
    repeated = Normalizer().normalize(
        RawItem(**{**{f: getattr(raw, f) for f in raw.__struct_fields__}, "text": raw.title + "\n\nBody."})
    )
    assert repeated.text.count("Bakhmut") == 1


async def test_x_polling_flows_to_alerts_once(redis_url: str, redis_client: aioredis.Redis, keys: Keys) -> None:
    """`run --once` in poll mode reads the account timeline and the query; a tweet found by both is one Item."""
    from tests.x_server import FakeX  # noqa: PLC0415 - local to this test

    fake = FakeX("test-token")
    fake.add_user("100", "nexta_tv", "NEXTA")
    fake.add_tweet(1001, "100", "Heavy shelling reported near Bakhmut this morning.")
    fake.add_tweet(1002, "100", "Protests continue in Minsk.")
    fake.timelines["100"] = ["1001", "1002"]
    for query in ("Bakhmut", "Bakhmut -is:retweet", "(Bakhmut) -is:retweet"):  # the fake matches exact queries
        fake.search[query] = ["1001"]
    http = TestServer(fake.app(), host="127.0.0.1")
    await http.start_server()
    try:
        x = {
            "bearer_token": "test-token",
            "base_url": str(http.make_url("")).rstrip("/"),
            "mode": "poll",
            "accounts": ["nexta_tv"],
            "queries": ["Bakhmut"],
        }
        settings = make_settings(redis_url, keys, [], collectors={"x": x})
        await run_once(settings)
        items = [decode_entry(Item, f) for _, f in await redis_client.xrange(keys.items)]
        assert sorted(i.id for i in items) == ["x:nexta_tv:1001", "x:nexta_tv:1002"]
        alerts = [decode_entry(Alert, f) for _, f in await redis_client.xrange(keys.alerts)]
        assert [a.item_id for a in alerts] == ["x:nexta_tv:1001"]
        assert alerts[0].url == "https://x.com/nexta_tv/status/1001"
        searches = [r.query.get("query") for r in fake.requests if r.path == "/2/tweets/search/recent"]
        assert searches and all(q in fake.search for q in searches)  # the search did return tweet 1001
        await run_once(settings)
        assert await redis_client.xlen(keys.items) == 2
    finally:
        await http.close()
