"""The X collector: mapping, rules, the reconnect policy, and streaming and polling against a local fake X.

The fake (tests/x_server.py) listens on 127.0.0.1 and speaks X API v2's shapes. Redis is the
session's real redis-server under a per-test prefix. Sleeps are injected and only recorded, so no
test waits for a real backoff.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, cast

import pytest
import redis.asyncio as aioredis
from aiohttp.test_utils import TestServer
from hypothesis import given, settings
from hypothesis import strategies as st
from redis.exceptions import ConnectionError as RedisConnectionError
from structlog.testing import capture_logs

from monitor.bus.keys import Keys
from monitor.bus.publish import Publisher
from monitor.collectors.base import Checkpoints, Emitter
from monitor.collectors.x import (
    ReconnectPolicy,
    XCollector,
    XRulesError,
    build_rules,
    credentials_present,
    http_backoff,
    items_from_response,
    network_backoff,
    rate_limit_backoff,
    tweet_to_raw,
    users_key,
    with_retweet_filter,
)
from monitor.config import XSettings
from monitor.metrics import Metrics
from monitor.schema import Forward, Media, RawItem, decode_entry, item_id
from tests.x_server import KEEPALIVE, OPERATIONAL_DISCONNECT, FakeX, StreamScript

TOKEN = "AAAAtest-bearer-token-0123456789"
NOW = 1_709_280_000.0  # the injected wall clock (epoch seconds)
COLLECTED = datetime(2024, 3, 1, 9, 0, tzinfo=UTC)


def x_settings(**overrides: Any) -> XSettings:
    """XSettings with a token and test-short timeouts."""
    values: dict[str, Any] = {"bearer_token": TOKEN, "stall_timeout": 0.3, "timeout": 5.0, **overrides}
    return XSettings(**values)


# --- pure: backoff ---------------------------------------------------------------------------------


def test_network_backoff_is_linear_and_capped() -> None:
    """Network errors back off by 250 ms per try, up to 16 s."""
    assert [network_backoff(n) for n in (1, 2, 3, 4)] == [0.25, 0.5, 0.75, 1.0]
    assert network_backoff(64) == 16.0
    assert network_backoff(1000) == 16.0


def test_http_backoff_is_exponential_and_capped() -> None:
    """HTTP errors back off from 5 s, doubling, up to 320 s."""
    assert [http_backoff(n) for n in range(1, 9)] == [5, 10, 20, 40, 80, 160, 320, 320]


def test_rate_limit_backoff_honours_reset_when_later() -> None:
    """A 429 waits 60 s doubling, or until x-rate-limit-reset when that is later."""
    assert rate_limit_backoff(1) == 60.0
    assert rate_limit_backoff(2) == 120.0
    assert rate_limit_backoff(1, reset_at=NOW + 500, now=NOW) == 500.0
    assert rate_limit_backoff(2, reset_at=NOW + 30, now=NOW) == 120.0


def test_reconnect_policy_drop_then_backoff_then_healthy() -> None:
    """A drop retries at once, a second drop without posts backs off, and a post resets everything."""
    policy = ReconnectPolicy()
    assert policy.after_drop() == 0.0
    assert policy.after_drop() == 0.25
    assert policy.after_network_error() == 0.5
    assert policy.after_http_error() == 5.0
    assert policy.after_http_error() == 10.0
    policy.connected()
    assert policy.after_http_error() == 5.0  # a 200 clears the HTTP count
    assert policy.after_network_error() == 0.75  # ... but not the network one
    policy.healthy()
    assert policy.after_drop() == 0.0
    assert policy.after_network_error() == 0.25


# --- pure: rules -----------------------------------------------------------------------------------


def test_build_rules_packs_accounts_and_adds_queries() -> None:
    """Accounts are packed into few from: rules within the length limit; each query is its own rule."""
    accounts = [f"@Account_{n:02d}" for n in range(12)]
    rules = build_rules(
        x_settings(accounts=accounts, queries=["Bakhmut lang:en", "Avdiivka OR Авдіївка"], max_rule_length=120)
    )
    account_rules = [r for r in rules if r["tag"] == "accounts"]
    assert len(account_rules) == 3
    assert account_rules[0]["value"].startswith("(from:account_00 OR from:account_01")
    assert all(r["value"].endswith(") -is:retweet") and len(r["value"]) <= 120 for r in account_rules)
    assert rules[-2:] == [
        {"value": "Bakhmut lang:en -is:retweet", "tag": "Bakhmut lang:en"},
        {"value": "(Avdiivka OR Авдіївка) -is:retweet", "tag": "Avdiivka OR Авдіївка"},
    ]


def test_build_rules_with_retweets_and_single_account() -> None:
    """With retweets included nothing is appended; one account needs no parentheses."""
    assert build_rules(x_settings(accounts=["nexta_tv"], include_retweets=True)) == [
        {"value": "from:nexta_tv", "tag": "accounts"}
    ]
    assert build_rules(x_settings(accounts=["nexta_tv"])) == [{"value": "from:nexta_tv -is:retweet", "tag": "accounts"}]
    assert with_retweet_filter("Kherson is:retweet", False) == "Kherson is:retweet"


def test_build_rules_too_many_rules_rejected_before_sending() -> None:
    """More rules than the tier allows is an XRulesError naming the rules over the limit."""
    with pytest.raises(XRulesError, match=r"needs 3 X stream rules.*allows 2.*'Mariupol -is:retweet'"):
        build_rules(x_settings(queries=["Kherson", "Zaporizhzhia", "Mariupol"], max_rules=2))


def test_build_rules_too_long_rule_names_it() -> None:
    """A query longer than max_rule_length is an XRulesError naming that query."""
    long_query = "Pokrovsk " + " ".join(f"word{n}" for n in range(20))
    with pytest.raises(XRulesError, match=r"'Pokrovsk word0.*is 150 characters; the access tier allows 40"):
        build_rules(x_settings(queries=[long_query], max_rule_length=40))


@settings(max_examples=60, deadline=None)
@given(
    names=st.lists(st.from_regex(r"[a-z][a-z0-9_]{0,14}", fullmatch=True), min_size=1, max_size=40, unique=True),
    limit=st.integers(min_value=40, max_value=300),
    retweets=st.booleans(),
)
def test_build_rules_packing_property(names: list[str], limit: int, retweets: bool) -> None:
    """Every account lands in exactly one rule, and every rule fits the length limit."""
    rules = build_rules(x_settings(accounts=names, max_rule_length=limit, max_rules=1000, include_retweets=retweets))
    found: list[str] = []
    for rule in rules:
        assert len(rule["value"]) <= limit
        body = rule["value"].removesuffix(" -is:retweet").strip("()")
        found.extend(part.removeprefix("from:") for part in body.split(" OR "))
    assert sorted(found) == sorted(names)


# --- pure: mapping ---------------------------------------------------------------------------------


def sample_fake() -> FakeX:
    """A fake X holding a small network of users, tweets and media."""
    fake = FakeX(TOKEN)
    fake.add_user("100", "NEXTA_TV", "NEXTA")
    fake.add_user("200", "KyivIndependent", "The Kyiv Independent")
    fake.add_media("3_1", "photo", url="https://pbs.twimg.com/media/a.jpg")
    fake.add_media("7_2", "video", preview="https://pbs.twimg.com/ext/b.jpg")
    fake.add_tweet(
        900,
        "200",
        "Full original text about shelling in Kharkiv that is longer than a retweet shows.",
        metrics={"retweet_count": 3, "reply_count": 1, "like_count": 9, "quote_count": 2},
    )
    fake.add_tweet(
        901,
        "100",
        "Explosions reported in Odesa",
        media_keys=["3_1", "7_2"],
        refs=[("replied_to", "899")],
        metrics={"retweet_count": 5, "reply_count": 4, "like_count": 20, "quote_count": 1, "impression_count": 777},
    )
    fake.add_tweet(902, "100", "RT @KyivIndependent: Full original text about sh…", refs=[("retweeted", "900")])
    fake.add_tweet(903, "100", "Worth reading", refs=[("quoted", "555")])
    return fake


def test_tweet_to_raw_maps_every_field() -> None:
    """Author channel, url, time, author, reply, media, metrics and matching rules map as documented."""
    fake = sample_fake()
    message = fake.stream_message(901)
    item = tweet_to_raw(
        message["data"], message["includes"], matching_rules=[{"id": "7", "tag": "accounts"}], collected_at=COLLECTED
    )
    assert (item.source, item.channel, item.external_id) == ("x", "nexta_tv", "901")
    assert item_id(item) == "x:nexta_tv:901"
    assert item.url == "https://x.com/NEXTA_TV/status/901"
    assert item.published_at == datetime(2024, 3, 1, 8, 0, 1, tzinfo=UTC)
    assert item.author == "NEXTA"
    assert item.text == "Explosions reported in Odesa"
    assert item.reply_to == "899"
    assert item.forwarded_from is None
    assert item.media == [
        Media(type="photo", url="https://pbs.twimg.com/media/a.jpg", id="3_1"),
        Media(type="video", url="https://pbs.twimg.com/ext/b.jpg", id="7_2"),
    ]
    assert item.metrics is not None
    assert (item.metrics.views, item.metrics.forwards, item.metrics.likes, item.metrics.replies) == (777, 6, 20, 4)
    assert item.raw is not None
    assert item.raw["matching_rules"] == ["accounts"]
    assert item.raw["id"] == "901" and item.raw["lang"] == "en"


def test_retweet_provenance_and_full_text() -> None:
    """A retweet points at the original's author and id, and carries the original's full text."""
    fake = sample_fake()
    message = fake.stream_message(902)
    item = tweet_to_raw(message["data"], message["includes"], collected_at=COLLECTED)
    assert item.channel == "nexta_tv"
    assert item.forwarded_from == Forward(
        channel="kyivindependent",
        id="900",
        name="The Kyiv Independent",
        date=datetime(2024, 3, 1, 8, 0, 0, tzinfo=UTC),
    )
    assert item.text.startswith("Full original text") and "…" not in item.text
    assert item.raw is not None and "matching_rules" not in item.raw


def test_quote_of_unexpanded_tweet_keeps_its_id() -> None:
    """A quote whose original is not in includes still records the quoted id, with no channel."""
    fake = sample_fake()
    message = fake.stream_message(903)
    item = tweet_to_raw(message["data"], message["includes"], collected_at=COLLECTED)
    assert item.forwarded_from == Forward(id="555")
    assert item.text == "Worth reading"


def test_channel_falls_back_to_author_id() -> None:
    """Without the expanded user, channel is the author id and the url uses /i/web/."""
    tweet = {"id": "42", "text": "hi", "author_id": "3141"}
    item = tweet_to_raw(tweet, {}, collected_at=COLLECTED)
    assert (item.channel, item.author, item.url) == ("3141", None, "https://x.com/i/web/status/42")


def test_items_from_response_partial_success() -> None:
    """Partial success keeps the tweets and returns each error for counting."""
    fake = sample_fake()
    fake.missing_refs.add("900")
    tweets = [fake.tweets["901"], fake.tweets["902"]]
    body = {"data": [*tweets, {"text": "no id"}], "includes": fake.includes_for(tweets)}
    body["errors"] = fake.partial_errors(tweets)
    items, errors = items_from_response(body, collected_at=COLLECTED)
    assert [i.external_id for i in items] == ["901", "902"]
    assert [e["resource_id"] for e in errors] == ["900"]
    assert items[1].forwarded_from == Forward(id="900")


def test_credentials_present() -> None:
    """A blank or missing token means no credentials."""
    assert credentials_present(x_settings())
    assert not credentials_present(XSettings())
    assert not credentials_present(XSettings(bearer_token="  "))


# --- against the fake server -----------------------------------------------------------------------


@dataclass
class Env:
    """The fake X, Redis under a unique prefix, metrics, and recorded sleeps."""

    fake: FakeX
    base_url: str
    redis: aioredis.Redis
    keys: Keys
    metrics: Metrics
    checkpoints: Checkpoints
    emitter: Emitter
    sleeps: list[float] = field(default_factory=list)
    made: list[XCollector] = field(default_factory=list)
    on_sleep: Callable[[float], None] | None = None

    async def sleep(self, delay: float) -> None:
        self.sleeps.append(delay)
        if self.on_sleep is not None:
            self.on_sleep(delay)
        await asyncio.sleep(0)

    def collector(self, **overrides: Any) -> XCollector:
        collector = XCollector(
            x_settings(base_url=self.base_url, **overrides),
            self.emitter,
            self.checkpoints,
            self.metrics,
            self.keys,
            self.redis,
            sleep=self.sleep,
            clock=lambda: NOW,
        )
        self.made.append(collector)
        return collector

    async def published(self) -> list[RawItem]:
        entries = cast(list[tuple[bytes, dict[bytes, bytes]]], await self.redis.xrange(self.keys.raw))
        return [decode_entry(RawItem, fields) for _, fields in entries]

    def sample(self, name: str, labels: dict[str, str]) -> float:
        return self.metrics.registry.get_sample_value(name, labels) or 0.0

    def errors(self, channel: str, kind: str) -> float:
        return self.sample("warwatch_collector_errors_total", {"source": "x", "channel": channel, "kind": kind})


@pytest.fixture
async def env(redis_client: aioredis.Redis, keys: Keys) -> AsyncIterator[Env]:
    """A fake X on 127.0.0.1, the real Redis under a unique prefix, and fresh metrics."""
    fake = sample_fake()
    server = TestServer(fake.app(), host="127.0.0.1")
    await server.start_server()
    metrics = Metrics()
    checkpoints = Checkpoints(redis_client, keys)
    emitter = Emitter(Publisher(redis_client, keys, 3600), checkpoints, metrics)
    environment = Env(fake, str(server.make_url("")).rstrip("/"), redis_client, keys, metrics, checkpoints, emitter)
    yield environment
    for collector in environment.made:
        await collector.aclose()
    await server.close()


async def wait_for(predicate: Callable[[], Any], timeout: float = 5.0) -> None:
    """Poll an async predicate until it is true."""
    deadline = asyncio.get_running_loop().time() + timeout
    while not await predicate():
        assert asyncio.get_running_loop().time() < deadline, "timed out"
        await asyncio.sleep(0.02)


# --- rules sync ------------------------------------------------------------------------------------


async def test_sync_rules_deletes_stale_validates_then_adds(env: Env) -> None:
    """Rules not wanted are deleted, missing ones are dry-run validated then added, kept ones untouched."""
    env.fake.rules = {
        "1": {"id": "1", "value": "from:nexta_tv -is:retweet", "tag": "accounts"},
        "2": {"id": "2", "value": "Bakhmut", "tag": "old"},
    }
    collector = env.collector(accounts=["NEXTA_TV"], queries=["Kherson OR Херсон"])
    await collector.sync_rules()
    assert sorted((r["value"], r["tag"]) for r in env.fake.rules.values()) == [
        ("(Kherson OR Херсон) -is:retweet", "Kherson OR Херсон"),
        ("from:nexta_tv -is:retweet", "accounts"),
    ]
    calls = [(r.method, r.query.get("dry_run"), r.body) for r in env.fake.requests]
    added = {"add": [{"value": "(Kherson OR Херсон) -is:retweet", "tag": "Kherson OR Херсон"}]}
    assert calls == [
        ("GET", None, None),
        ("POST", None, {"delete": {"ids": ["2"]}}),
        ("POST", "true", added),
        ("POST", None, added),
    ]
    assert all(r.authorization == f"Bearer {TOKEN}" for r in env.fake.requests)
    await collector.sync_rules()  # already in sync: one GET, nothing posted
    assert [r.method for r in env.fake.requests[4:]] == ["GET"]


async def test_sync_rules_reports_invalid_rule_with_detail(env: Env) -> None:
    """A rule X rejects raises XRulesError with X's detail and value; nothing is added for real."""
    collector = env.collector(queries=["Kupiansk badop:foo"])
    with pytest.raises(XRulesError, match=r"invalid operator 'badop'.*rule 'Kupiansk badop:foo -is:retweet'"):
        await collector.sync_rules()
    posts = [r for r in env.fake.requests if r.method == "POST"]
    assert [r.query.get("dry_run") for r in posts] == ["true"]
    assert env.fake.rules == {}


# --- stream ----------------------------------------------------------------------------------------


async def test_stream_survives_drops_stalls_and_errors_without_loss_or_duplicates(env: Env) -> None:
    """Across a drop, an operational disconnect and a stall (with replays), each tweet is published exactly once."""
    ids = list(range(1001, 1013))
    for n in ids:
        env.fake.add_tweet(n, "100" if n % 2 else "200", f"report {n}")
    includes = env.fake.includes_for([env.fake.tweets["1005"]])
    fields_reordered = {"matching_rules": [{"id": "9", "tag": "accounts"}], "includes": includes}
    reordered = json.dumps({**fields_reordered, "data": env.fake.tweets["1005"]}).encode() + b"\r\n"
    env.fake.stream_scripts = [
        StreamScript(lines=[KEEPALIVE, 1001, 1002, KEEPALIVE, 1003, 1003], end="drop"),
        StreamScript(lines=[1002, 1003, 1004, {"event": "unknown-kind"}, b"not json\r\n", OPERATIONAL_DISCONNECT]),
        StreamScript(lines=[1004, reordered, 1006, KEEPALIVE], end="stall"),
        StreamScript(lines=[1006, 1007, 1008], end="close"),
        StreamScript(lines=[b"".join(json.dumps(env.fake.stream_message(n)).encode() + b"\r\n" for n in ids[7:])]),
    ]
    collector = env.collector(accounts=["nexta_tv", "KyivIndependent"])
    stop = asyncio.Event()
    task = asyncio.create_task(collector.run(stop))

    async def all_in() -> bool:
        return len(await env.published()) >= len(ids)

    await wait_for(all_in)
    await asyncio.sleep(0.05)
    stop.set()
    await asyncio.wait_for(task, 5)

    items = await env.published()
    assert sorted(int(i.external_id) for i in items) == ids
    assert len({item_id(i) for i in items}) == len(ids)
    assert {item_id(i) for i in items if i.external_id == "1001"} == {"x:nexta_tv:1001"}
    assert env.fake.stream_connections == 6  # five scripted, then one held open until stop
    assert env.sleeps[:5] == [0.0, 0.0, 0.0, 0.0, 0.0]  # each connection delivered posts: reconnect at once
    assert env.sample("warwatch_collector_reconnects_total", {"source": "x", "channel": "stream"}) == 5
    assert env.errors("stream", "stream_error") == 1
    assert env.errors("stream", "stall") == 1
    assert env.errors("stream", "parse") == 1
    assert env.sample("warwatch_collector_items_total", {"source": "x", "channel": "nexta_tv"}) == 6
    assert env.fake.requests[0].path.endswith("/rules")  # the rules were synced before streaming
    stream_request = next(r for r in env.fake.requests if r.path == "/2/tweets/search/stream")
    assert stream_request.query["expansions"] == "author_id,attachments.media_keys,referenced_tweets.id"
    assert stream_request.query["user.fields"] == "username,name"
    assert "public_metrics" in stream_request.query["tweet.fields"]
    assert "media_key" in stream_request.query["media.fields"]
    tagged = next(i for i in items if i.external_id == "1005")
    assert tagged.raw is not None and tagged.raw["matching_rules"] == ["accounts"]


async def test_stream_backoff_follows_x_policy_and_stops_on_401(env: Env) -> None:
    """Network, HTTP and 429 failures back off as X documents; a 401 stops retrying, naming the token problem."""
    env.fake.add_tweet(2001, "100", "first")
    reset_at = int(NOW) + 500
    env.fake.stream_scripts = [
        StreamScript(refuse=True),
        StreamScript(refuse=True),
        StreamScript(status=503),
        StreamScript(status=503),
        StreamScript(status=429, headers={"x-rate-limit-reset": str(reset_at), "x-rate-limit-remaining": "0"}),
        StreamScript(lines=[2001], end="close"),
        StreamScript(status=503),
    ]
    collector = env.collector(accounts=["nexta_tv"])
    gauge: list[float] = []

    def revoke(delay: float) -> None:
        gauge.append(env.sample("warwatch_collector_backoff_seconds", {"source": "x", "channel": "stream"}))
        if len(env.sleeps) == 7:
            env.fake.token = "rotated"  # the next connection is refused with 401

    env.on_sleep = revoke
    with capture_logs() as logs:
        await asyncio.wait_for(collector.stream(asyncio.Event()), 5)  # returns by itself after the 401
    assert env.sleeps == [0.25, 0.5, 5.0, 10.0, 500.0, 0.0, 5.0]
    assert gauge == env.sleeps
    assert env.fake.stream_connections == 10  # each refusal is two hang-ups (aiohttp retries once)
    assert env.errors("stream", "network") == 2
    assert env.errors("stream", "http_5xx") == 3
    assert env.errors("stream", "rate_limited") == 1
    assert env.errors("stream", "auth") == 1
    assert env.sample("warwatch_collector_reconnects_total", {"source": "x", "channel": "stream"}) == 7
    assert env.sample("warwatch_x_rate_limit_reset_timestamp_seconds", {"endpoint": "stream"}) > NOW
    assert env.sample("warwatch_collector_backoff_seconds", {"source": "x", "channel": "stream"}) == 0
    assert [i.external_id for i in await env.published()] == ["2001"]
    auth = [e for e in logs if e["log_level"] == "error"]
    assert len(auth) == 1 and "bearer token" in auth[0]["error"] and "401" in auth[0]["error"]
    assert TOKEN not in repr(logs)


async def test_stream_403_names_access_level(env: Env) -> None:
    """A 403 on the stream stops the collector with a message about the access level."""
    env.fake.stream_scripts = [StreamScript(status=403, detail="client-not-enrolled")]
    collector = env.collector(accounts=["nexta_tv"])
    with capture_logs() as logs:
        await asyncio.wait_for(collector.stream(asyncio.Event()), 5)
    errors = [e["error"] for e in logs if e["log_level"] == "error"]
    assert len(errors) == 1 and "access level" in errors[0] and "client-not-enrolled" in errors[0]
    assert env.sleeps == []


async def test_run_does_not_stream_with_invalid_rules(env: Env) -> None:
    """When X rejects a rule, run logs it, counts kind 'rules' and never opens the stream."""
    collector = env.collector(queries=["badop:x"])
    await asyncio.wait_for(collector.run(asyncio.Event()), 5)
    assert env.fake.stream_connections == 0
    assert env.errors("rules", "rules") == 1


async def test_redis_outage_during_stream_keeps_posts_until_redis_returns(env: Env) -> None:
    """Posts that Redis refused are kept in memory and published with the next post."""
    for n in (3001, 3002):
        env.fake.add_tweet(n, "100", f"post {n}")
    collector = env.collector(accounts=["nexta_tv"])
    real = env.emitter.publisher.publish_raw
    calls = 0

    async def flaky(items: Any) -> Any:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise RedisConnectionError("redis went away")
        return await real(items)

    env.emitter.publisher.publish_raw = flaky  # type: ignore[method-assign]
    env.fake.stream_scripts = [StreamScript(lines=[3001, 3002], end="hold")]
    stop = asyncio.Event()
    task = asyncio.create_task(collector.stream(stop))

    async def both() -> bool:
        return len(await env.published()) == 2

    await wait_for(both)
    stop.set()
    await asyncio.wait_for(task, 5)
    assert env.errors("stream", "publish") == 1


# --- polling ---------------------------------------------------------------------------------------


async def test_poll_search_paginates_from_since_id_and_advances_checkpoint(env: Env) -> None:
    """Recent search reads every page newer than since_id via next_token; the checkpoint moves to the max id."""
    query = "Bakhmut"
    ids = [str(n) for n in range(5001, 5026)]
    for n in ids:
        env.fake.add_tweet(n, "100", f"Bakhmut update {n}")
    env.fake.search[with_retweet_filter(query, False)] = ids
    await env.checkpoints.set("x", f"query:{query}", "5003")
    collector = env.collector(mode="poll", queries=[query])
    assert await collector.poll_once() == 22
    searches = [r.query for r in env.fake.requests]
    assert [q.get("next_token") for q in searches] == [None, "p10", "p20"]
    assert {q["since_id"] for q in searches} == {"5003"}
    assert searches[0]["query"] == "Bakhmut -is:retweet"
    assert [int(i.external_id) for i in await env.published()] == list(range(5004, 5026))
    assert await env.checkpoints.get("x", f"query:{query}") == "5025"

    env.fake.add_tweet(5026, "200", "Bakhmut later")
    env.fake.search["Bakhmut -is:retweet"].append("5026")
    assert await collector.poll_once() == 1
    assert env.fake.requests[-1].query["since_id"] == "5025"
    assert await env.checkpoints.get("x", f"query:{query}") == "5026"
    assert item_id((await env.published())[-1]) == "x:kyivindependent:5026"


async def test_poll_recovers_from_a_checkpoint_older_than_the_search_window(env: Env) -> None:
    """A since_id X rejects as too old (400) is dropped: the newest posts are read and the checkpoint moves on."""
    query = "Bakhmut"
    for n in range(7001, 7006):
        env.fake.add_tweet(n, "100", f"Bakhmut update {n}")
    env.fake.search[with_retweet_filter(query, False)] = [str(n) for n in range(7001, 7006)]
    env.fake.oldest_searchable_id = 7000
    await env.checkpoints.set("x", f"query:{query}", "42")
    collector = env.collector(mode="poll", queries=[query])
    assert await collector.poll_once() == 5
    sent = [r.query.get("since_id") for r in env.fake.requests if r.path == "/2/tweets/search/recent"]
    assert sent == ["42", None]
    assert await env.checkpoints.get("x", f"query:{query}") == "7005"
    assert env.metrics.collector_errors.labels("x", f"query:{query}", "checkpoint_expired")._value.get() == 1
    assert await collector.poll_once() == 0  # the next cycle uses the new checkpoint and succeeds


async def test_poll_checkpoint_moves_only_after_redis_accepted(env: Env) -> None:
    """When Redis refuses the items the checkpoint stays; the next poll re-reads and then advances it."""
    env.fake.search["Vuhledar -is:retweet"] = ["6001", "6002"]
    for n in (6001, 6002):
        env.fake.add_tweet(n, "100", f"Vuhledar {n}")
    await env.checkpoints.set("x", "query:Vuhledar", "6000")
    collector = env.collector(mode="poll", queries=["Vuhledar"])
    real = env.emitter.publisher.publish_raw

    async def down(items: Any) -> Any:
        raise RedisConnectionError("redis went away")

    env.emitter.publisher.publish_raw = down  # type: ignore[method-assign]
    assert await collector.poll_once() == 0
    assert await env.checkpoints.get("x", "query:Vuhledar") == "6000"
    assert env.errors("query:Vuhledar", "publish") == 1

    env.emitter.publisher.publish_raw = real  # type: ignore[method-assign]
    assert await collector.poll_once() == 2
    assert env.fake.requests[-1].query["since_id"] == "6000"
    assert await env.checkpoints.get("x", "query:Vuhledar") == "6002"


async def test_poll_failure_mid_pagination_keeps_checkpoint(env: Env) -> None:
    """A 503 on a later page publishes what was read but does not move the checkpoint past the gap."""
    ids = [str(n) for n in range(7001, 7016)]
    for n in ids:
        env.fake.add_tweet(n, "100", f"Toretsk {n}")
    env.fake.search["Toretsk -is:retweet"] = ids
    await env.checkpoints.set("x", "query:Toretsk", "7000")
    env.fake.fail_later_pages = 1
    collector = env.collector(mode="poll", queries=["Toretsk"])
    assert await collector.poll_once() == 10
    assert await env.checkpoints.get("x", "query:Toretsk") == "7000"
    assert env.errors("query:Toretsk", "http_5xx") == 1


async def test_user_timeline_resolves_handle_once_and_caches_it_in_redis(env: Env) -> None:
    """The handle is looked up once and cached in Redis; a second collector reads the cache, not X."""
    env.fake.timelines["100"] = ["8001", "8002", "8003"]
    for n in (8001, 8002, 8003):
        env.fake.add_tweet(n, "100", f"timeline {n}")
    env.fake.page_size = 2
    await env.checkpoints.set("x", "user:nexta_tv", "8000")
    first = env.collector(mode="poll", accounts=["@NEXTA_TV"])
    assert await first.poll_once() == 3
    assert env.fake.count("/2/users/by/username/") == 1
    cached = json.loads(await env.redis.hget(users_key(env.keys), "nexta_tv") or "null")
    assert cached == {"id": "100", "username": "NEXTA_TV", "name": "NEXTA"}
    timeline = [r.query for r in env.fake.requests if r.path == "/2/users/100/tweets"]
    assert [q.get("pagination_token") for q in timeline] == [None, "p2"]
    assert all(q["exclude"] == "retweets" and q["since_id"] == "8000" for q in timeline)
    assert await env.checkpoints.get("x", "user:nexta_tv") == "8003"

    second = env.collector(mode="poll", accounts=["nexta_tv"])
    env.fake.timelines["100"].append("8004")
    env.fake.add_tweet(8004, "100", "timeline 8004")
    assert await second.poll_once() == 1
    assert env.fake.count("/2/users/by/username/") == 1
    assert env.fake.requests[-1].query["since_id"] == "8003"


async def test_unknown_account_is_counted_and_skipped(env: Env) -> None:
    """A handle X does not know is counted as unresolved and skipped; nothing is cached."""
    collector = env.collector(mode="poll", accounts=["no_such_handle"])
    assert await collector.poll_once() == 0
    assert env.errors("user:no_such_handle", "unresolved") == 1
    assert await env.redis.hget(users_key(env.keys), "no_such_handle") is None


async def test_poll_counts_partial_errors(env: Env) -> None:
    """A page with data and errors publishes the data and counts each error as 'partial'."""
    env.fake.add_tweet(9001, "100", "quote of a deleted post", refs=[("quoted", "8999")])
    env.fake.add_tweet(8999, "200", "deleted")
    env.fake.missing_refs.add("8999")
    env.fake.search["Siversk -is:retweet"] = ["9001"]
    collector = env.collector(mode="poll", queries=["Siversk"])
    assert await collector.poll_once() == 1
    assert env.errors("query:Siversk", "partial") == 1


async def test_poll_respects_rate_limit_headers(env: Env) -> None:
    """With the window spent, the next poll waits until reset and makes no request to that endpoint."""
    env.fake.search["Lyman -is:retweet"] = []
    env.fake.limits["search"] = (0, int(NOW) + 420)
    collector = env.collector(mode="poll", queries=["Lyman"], poll_interval=60)
    await collector.poll_once()
    assert env.sample("warwatch_x_rate_limit_remaining", {"endpoint": "search_recent"}) == 0
    assert env.sample("warwatch_x_rate_limit_reset_timestamp_seconds", {"endpoint": "search_recent"}) == NOW + 420
    assert collector.next_poll_delay() == 420.0
    before = len(env.fake.requests)
    await collector.poll_once()
    assert len(env.fake.requests) == before


async def test_poll_429_is_counted_and_skipped(env: Env) -> None:
    """A 429 on search is counted as rate_limited; the next delay honours its reset."""
    env.fake.search["Chasiv Yar -is:retweet"] = ["1"]
    env.fake.fail_next["search"] = [(429, {"x-rate-limit-remaining": "0", "x-rate-limit-reset": str(int(NOW) + 900)})]
    collector = env.collector(mode="poll", queries=["Chasiv Yar"])
    assert await collector.poll_once() == 0
    assert env.errors("query:Chasiv Yar", "rate_limited") == 1
    assert collector.next_poll_delay() == 900.0


async def test_run_once_polls_in_poll_mode_and_skips_stream_mode(env: Env) -> None:
    """run_once does one poll cycle in poll mode, and nothing at all in stream mode."""
    env.fake.search["Kreminna -is:retweet"] = ["1101"]
    env.fake.add_tweet(1101, "200", "Kreminna")
    await env.collector(mode="stream", queries=["Kreminna"]).run_once()
    assert env.fake.requests == []
    await env.collector(mode="poll", queries=["Kreminna"]).run_once()
    assert [i.external_id for i in await env.published()] == ["1101"]


async def test_poll_run_stops_on_401(env: Env) -> None:
    """In poll mode a rejected token ends run() with an auth error instead of retrying forever."""
    env.fake.token = "someone-else"
    collector = env.collector(mode="poll", queries=["Huliaipole"])
    await asyncio.wait_for(collector.run(asyncio.Event()), 5)
    assert env.errors("poll", "auth") == 1
    assert env.sleeps == []


async def test_keepalives_keep_a_quiet_stream_open(env: Env) -> None:
    """A stream that sends only keep-alives for longer than stall_timeout is not treated as stalled."""
    env.fake.stream_scripts = [StreamScript(lines=[KEEPALIVE], end="hold")]
    collector = env.collector(accounts=["nexta_tv"], stall_timeout=0.15)
    stop = asyncio.Event()
    task = asyncio.create_task(collector.stream(stop))
    await asyncio.sleep(0.6)
    stop.set()
    await asyncio.wait_for(task, 5)
    assert env.fake.stream_connections == 1
    assert env.errors("stream", "stall") == 0
    assert env.sleeps == []


async def test_poll_run_waits_poll_interval_between_cycles(env: Env) -> None:
    """In poll mode run() polls, then waits poll_interval (through the injected sleep) until stopped."""
    env.fake.search["Robotyne -is:retweet"] = ["1201"]
    env.fake.add_tweet(1201, "100", "Robotyne")
    collector = env.collector(mode="poll", queries=["Robotyne"], poll_interval=45)
    stop = asyncio.Event()
    env.on_sleep = lambda _: stop.set() if len(env.sleeps) >= 2 else None
    await asyncio.wait_for(collector.run(stop), 5)
    assert env.sleeps == [45.0, 45.0]
    assert env.fake.count("/2/tweets/search/recent") == 2
    assert [i.external_id for i in await env.published()] == ["1201"]
