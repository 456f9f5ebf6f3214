"""Delivery through Apprise to a local receiver: retries, exactly-once recording, dead letters, rate
limits and digests, bounded concurrency, secrecy of sink URLs, and the whole daemon path.

Every send goes through real Apprise plugins (``json://`` and ``tgram://``) to an aiohttp server on
127.0.0.1; outboxes live in the real redis-server the suite starts. The dispatcher's clock is injected,
so backoff and rate windows are stepped through without sleeping.
"""

from __future__ import annotations

import asyncio
import io
import json
import sys
import tempfile
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis
import structlog
from prometheus_client import generate_latest

from monitor.bus.dead import list_dead, retry_dead
from monitor.bus.keys import Keys
from monitor.config import parse_config, secret_values
from monitor.daemon import Daemon
from monitor.log import configure_logging
from monitor.metrics import Metrics
from monitor.notify.apprise_sink import AppriseSink
from monitor.notify.dispatcher import DispatchLimits, SinkDispatcher
from monitor.notify.outbox import Outbox, RetryPolicy
from monitor.notify.templates import Templates
from monitor.schema import Alert, MatchedTerm, encode
from tests.notify_receiver import NotifyReceiver

BOT_TOKEN = "123456789:AAHsecretBotTokenValue_xyz"
HOOK_SECRET = "s3cretWebhookPath77"


@pytest.fixture
async def receiver() -> AsyncIterator[NotifyReceiver]:
    server = await NotifyReceiver().start()
    yield server
    await server.stop()


class Clock:
    """A settable clock for the dispatcher."""

    def __init__(self, now: float = 1_700_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def make_alert(number: int, *, rule: str = "bakhmut", severity: str = "high") -> Alert:
    return Alert(
        alert_id=f"alert-{rule}-{number}",
        rule=rule,
        severity=severity,  # type: ignore[arg-type]
        item_id=f"telegram:1001:{number}",
        fired_at=datetime(2026, 11, 23, 12, 0, number % 60, tzinfo=UTC),
        matched=[MatchedTerm(term="Bakhmut", start=10, end=17, form="Бахмута", via="uk case form")],
        snippet=f"Штурм Бахмута триває, повідомлення {number}",
        source="telegram",
        channel="ab3army",
        url=f"https://t.me/ab3army/{number}",
        title=f"Post {number}",
    )


def webhook_sink(receiver: NotifyReceiver, name: str = "ops", template: str = "auto") -> AppriseSink:
    url = f"json://127.0.0.1:{receiver.port}/hook/{HOOK_SECRET}{name}"
    return AppriseSink(name, url, template=template, timeout=10)  # type: ignore[arg-type]


def telegram_sink(receiver: NotifyReceiver) -> AppriseSink:
    return AppriseSink("tg", f"tgram://{BOT_TOKEN}/4242", api_url=receiver.base_url, timeout=10)


async def queue(client: aioredis.Redis, outbox: Outbox, alerts: list[Alert], due: float, digest_key: str = "") -> None:
    pipe = client.pipeline(transaction=False)
    for alert in alerts:
        outbox.queue(pipe, alert.alert_id, encode(alert), due, digest_key)
    await pipe.execute()


def dispatcher_for(
    client: aioredis.Redis,
    keys: Keys,
    sink: AppriseSink,
    clock: Clock,
    metrics: Metrics | None = None,
    **limits: Any,
) -> SinkDispatcher:
    outbox = Outbox(client, keys, sink.name, delivered_ttl=3600)
    settings = {"retry": RetryPolicy(max_attempts=4, backoff=10.0, backoff_max=60.0), **limits}
    return SinkDispatcher(sink, outbox, Templates(), metrics or Metrics(), DispatchLimits(**settings), clock=clock)


async def test_two_500s_then_delivered_exactly_once(
    redis_client: aioredis.Redis, keys: Keys, receiver: NotifyReceiver
) -> None:
    """A webhook that fails twice with 500 gets the alert on the third attempt, and never again after."""
    clock = Clock()
    sink = webhook_sink(receiver)
    hook = f"/hook/{HOOK_SECRET}ops"
    receiver.fail(hook, 500, 500)
    dispatcher = dispatcher_for(redis_client, keys, sink, clock)
    alert = make_alert(1)
    await queue(redis_client, dispatcher.outbox, [alert], clock.now)

    assert await dispatcher.step() == 1  # first attempt: 500
    assert await dispatcher.step() == 0  # backing off: nothing is due
    assert len(receiver.received) == 1
    clock.now += 11.1  # past the first backoff (10 s + at most 10% jitter)
    assert await dispatcher.step() == 1  # second attempt: 500
    clock.now += 11.1
    assert await dispatcher.step() == 0  # the second backoff is 20 s
    clock.now += 11.1
    assert await dispatcher.step() == 1  # third attempt: delivered
    for _ in range(3):
        clock.now += 1000
        assert await dispatcher.step() == 0

    assert [r.status for r in receiver.received] == [500, 500, 200]
    delivered = receiver.delivered(hook)
    assert len(delivered) == 1
    assert alert.url is not None and alert.url in delivered[0].payload["message"]
    assert await redis_client.exists(keys.delivered("ops", alert.alert_id)) == 1
    assert await dispatcher.outbox.size() == 0
    assert await redis_client.xlen(keys.dead) == 0


async def test_exhausted_retries_go_to_dead_stream_and_dead_retry_redrives(
    redis_client: aioredis.Redis, keys: Keys, receiver: NotifyReceiver
) -> None:
    """After max_attempts failures the alert is in the dead stream with the sink and error; retry re-adds it."""
    clock = Clock()
    sink = webhook_sink(receiver)
    receiver.fail(f"/hook/{HOOK_SECRET}ops", *([503] * 10))
    dispatcher = dispatcher_for(redis_client, keys, sink, clock)
    alert = make_alert(2)
    await queue(redis_client, dispatcher.outbox, [alert], clock.now)
    for _ in range(8):
        await dispatcher.step()
        clock.now += 100
    assert len(receiver.received) == 4  # max_attempts
    assert await dispatcher.outbox.size() == 0

    [dead] = await list_dead(redis_client, keys)
    assert dead.stage == "notify:ops"
    assert dead.stream == keys.alerts
    assert dead.deliveries == 4
    assert "503" in dead.error
    assert HOOK_SECRET not in dead.error
    assert json.loads(dead.data)["alert_id"] == alert.alert_id

    assert await retry_dead(redis_client, keys) == [dead.id]
    [(_, fields)] = await redis_client.xrange(keys.alerts)
    assert json.loads(fields[b"data"])["alert_id"] == alert.alert_id
    assert await redis_client.xlen(keys.dead) == 0


async def test_burst_over_rate_limit_is_folded_into_a_digest(
    redis_client: aioredis.Redis, keys: Keys, receiver: NotifyReceiver
) -> None:
    """Ten alerts against a budget of three messages: two sent alone, eight in one digest; then the window waits."""
    clock = Clock()
    sink = webhook_sink(receiver, template="short")
    dispatcher = dispatcher_for(redis_client, keys, sink, clock, rate_limit=3, rate_window=60.0, digest_max=50)
    alerts = [make_alert(n) for n in range(10)]
    await queue(redis_client, dispatcher.outbox, alerts, clock.now)

    assert await dispatcher.step() == 10
    messages = [r.payload["message"] for r in receiver.delivered()]
    assert len(messages) == 3
    digest = [m for m in messages if m.startswith("8 alerts")]
    assert len(digest) == 1
    folded = {n for n in range(10) if f"повідомлення {n}" in digest[0]}
    alone = {n for n in range(10) for m in messages if m is not digest[0] and f"повідомлення {n}\n" in m}
    assert len(folded) == 8 and len(alone) == 2 and folded | alone == set(range(10))
    for alert in alerts:
        assert await redis_client.exists(keys.delivered("ops", alert.alert_id)) == 1

    late = make_alert(11)
    await queue(redis_client, dispatcher.outbox, [late], clock.now)
    assert await dispatcher.step() == 0  # budget spent: postponed to the end of the window
    assert len(receiver.received) == 3
    assert await dispatcher.outbox.size() == 1
    clock.now += 61
    assert await dispatcher.step() == 1
    assert len(receiver.delivered()) == 4
    assert "повідомлення 11" in receiver.delivered()[-1].payload["message"]


async def test_aggregated_alerts_go_out_as_one_digest_per_period(
    redis_client: aioredis.Redis, keys: Keys, receiver: NotifyReceiver
) -> None:
    """Alerts held for a rule's aggregate period are sent together when it ends, as one message."""
    clock = Clock()
    sink = webhook_sink(receiver, template="full")
    dispatcher = dispatcher_for(redis_client, keys, sink, clock)
    period_end = clock.now + 600
    first = [make_alert(n) for n in range(4)]
    await queue(redis_client, dispatcher.outbox, first, period_end, digest_key="bakhmut:1")
    await queue(redis_client, dispatcher.outbox, [make_alert(30, rule="other")], clock.now)

    assert await dispatcher.step() == 1  # only the unaggregated alert is due
    assert len(receiver.delivered()) == 1
    clock.now = period_end + 0.5
    assert await dispatcher.step() == 4
    [single, digest] = receiver.delivered()
    assert "4 alerts for bakhmut" in digest.payload["message"]
    assert all(f"повідомлення {n}" in digest.payload["message"] for n in range(4))
    assert "other" in single.payload["title"]


async def test_concurrency_per_sink_is_bounded(
    redis_client: aioredis.Redis, keys: Keys, receiver: NotifyReceiver
) -> None:
    """With concurrency 2, no more than two sends to the sink are ever in flight at once."""
    clock = Clock()
    receiver.delay = 0.2
    sink = webhook_sink(receiver)
    dispatcher = dispatcher_for(redis_client, keys, sink, clock, concurrency=2, rate_limit=100)
    await queue(redis_client, dispatcher.outbox, [make_alert(n) for n in range(6)], clock.now)
    assert await dispatcher.step() == 6
    assert len(receiver.delivered()) == 6
    assert receiver.max_in_flight == 2


async def test_crash_between_send_and_record_gives_at_most_one_duplicate(
    redis_client: aioredis.Redis, keys: Keys, receiver: NotifyReceiver
) -> None:
    """A dispatcher that dies after sending but before recording leaves a lease; the next one re-sends once."""
    clock = Clock()
    sink = webhook_sink(receiver)
    crashed = dispatcher_for(redis_client, keys, sink, clock)
    alert = make_alert(5)
    await queue(redis_client, crashed.outbox, [alert], clock.now)
    [claim] = await crashed.outbox.claim(clock.now, crashed.limits.lease, 10)
    message = Templates().render(alert, sink.kind)
    await sink.send(message.title, message.body)  # sent ... and the process dies before recording

    survivor = dispatcher_for(redis_client, keys, webhook_sink(receiver), clock)
    assert await survivor.step() == 0  # the lease still holds it
    clock.now += crashed.limits.lease + 1
    assert await survivor.step() == 1
    for _ in range(3):
        clock.now += 10_000
        assert await survivor.step() == 0
    assert claim.alert_id == alert.alert_id
    assert len(receiver.delivered()) == 2  # the documented duplicate, and no more


async def test_already_delivered_alert_is_not_sent_again(
    redis_client: aioredis.Redis, keys: Keys, receiver: NotifyReceiver
) -> None:
    """An alert queued again after its delivery was recorded (a replay) is dropped from the outbox unsent."""
    clock = Clock()
    dispatcher = dispatcher_for(redis_client, keys, webhook_sink(receiver), clock)
    alert = make_alert(6)
    await queue(redis_client, dispatcher.outbox, [alert], clock.now)
    assert await dispatcher.step() == 1
    await queue(redis_client, dispatcher.outbox, [alert], clock.now)
    assert await dispatcher.step() == 0
    assert len(receiver.received) == 1
    assert await dispatcher.outbox.size() == 0


async def test_telegram_bot_api_gets_short_message_with_snippet_link_and_terms(
    redis_client: aioredis.Redis, keys: Keys, receiver: NotifyReceiver
) -> None:
    """tgram:// pointed at the local Bot API: sendMessage to the chat with the short template's text."""
    clock = Clock()
    sink = telegram_sink(receiver)
    assert sink.kind == "short"
    receiver.fail(f"/bot{BOT_TOKEN}/sendMessage", 500)
    dispatcher = dispatcher_for(redis_client, keys, sink, clock)
    alert = make_alert(7)
    await queue(redis_client, dispatcher.outbox, [alert], clock.now)
    await dispatcher.step()
    clock.now += 20
    await dispatcher.step()
    [sent] = receiver.delivered(f"/bot{BOT_TOKEN}/sendMessage")
    assert sent.payload["chat_id"] in (4242, "4242")
    text = sent.payload["text"]
    assert alert.snippet in text
    assert "https://t.me/ab3army/7" in text
    assert "Bakhmut" in text and "telegram/ab3army" in text
    assert await redis_client.exists(keys.delivered("tg", alert.alert_id)) == 1


async def test_sink_urls_never_reach_logs_metrics_or_reprs(
    redis_client: aioredis.Redis, keys: Keys, receiver: NotifyReceiver
) -> None:
    """A failing delivery's log lines, the dead letter, metrics and reprs never hold the URL's secrets."""
    settings = parse_config(
        {
            "notify": {
                "sinks": [
                    {"name": "tg", "url": f"tgram://{BOT_TOKEN}/4242", "api_url": "http://127.0.0.1:9"},
                    {"name": "ops", "url": f"json://127.0.0.1:1/hook/{HOOK_SECRET}"},
                ]
            }
        },
        env={},
    )
    stream = io.StringIO()
    configure_logging(settings.log, secrets=secret_values(settings), stream=stream)
    try:
        metrics = Metrics()
        clock = Clock()
        # Nothing listens on port 1 or 9: connection errors, whose text names the URL's host and path.
        sinks = [AppriseSink("ops", f"json://127.0.0.1:1/hook/{HOOK_SECRET}", timeout=5), telegram_sink(receiver)]
        sinks[1] = AppriseSink("tg", f"tgram://{BOT_TOKEN}/4242", api_url="http://127.0.0.1:9", timeout=5)
        for sink in sinks:
            dispatcher = dispatcher_for(redis_client, keys, sink, clock, metrics, retry=RetryPolicy(max_attempts=1))
            await queue(redis_client, dispatcher.outbox, [make_alert(8)], clock.now)
            assert await dispatcher.step() == 1
    finally:
        structlog.reset_defaults()
    dead = await list_dead(redis_client, keys)
    assert len(dead) == 2
    exposed = "\n".join(
        [
            stream.getvalue(),
            *(d.error for d in dead),
            generate_latest(metrics.registry).decode(),
            repr(settings),
            str(settings.notify.model_dump()),
            *(repr(s) for s in sinks),
        ]
    )
    assert "notification failed" in stream.getvalue()
    for secret in (BOT_TOKEN, BOT_TOKEN.split(":")[1], HOOK_SECRET):
        assert secret not in exposed


def write_corpus(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "report.txt").write_text(
        "Fighting near Bakhmut\n\nUkrainian units held the road into Bakhmut on Saturday, officials said.\n",
        encoding="utf-8",
    )
    (folder / "other.txt").write_text("Weather\n\nRain is expected in Lviv tomorrow.\n", encoding="utf-8")
    return folder


def daemon_settings(redis_url: str, keys: Keys, corpus: Path, receiver: NotifyReceiver, **notify: Any) -> Any:
    data: dict[str, Any] = {
        "redis": {"url": redis_url, "key_prefix": keys.prefix, "consumer": {"block_ms": 50}},
        "metrics": {"enabled": False},
        "log": {"level": "warning"},
        "archive": {"dir": tempfile.mkdtemp(prefix="warwatch-test-archive-")},
        "collectors": {"corpus": {"paths": [str(corpus)]}},
        "rules": [
            {"name": "bakhmut", "any": ["Bakhmut"], "severity": "high"},
            {"name": "lviv", "any": ["Lviv"], "severity": "low"},
        ],
        "notify": {
            "console": {"enabled": False},
            "sinks": [
                {"name": "webhook", "url": f"json://127.0.0.1:{receiver.port}/hook/{HOOK_SECRET}"},
                {"name": "tg", "url": f"tgram://{BOT_TOKEN}/4242", "api_url": receiver.base_url},
            ],
            **notify,
        },
    }
    return parse_config(data, env={})


async def test_daemon_routes_alerts_to_apprise_sinks_and_a_rerun_sends_nothing(
    redis_url: str, keys: Keys, receiver: NotifyReceiver, tmp_path: Path
) -> None:
    """run --once: high alerts reach both sinks, low ones only the default route; a second run re-sends nothing."""
    corpus = write_corpus(tmp_path / "corpus")
    routes = {
        "routes": [{"min_severity": "high", "sinks": ["webhook", "tg"]}],
        "default_sinks": ["webhook"],
    }
    settings = daemon_settings(redis_url, keys, corpus, receiver, **routes)
    await asyncio.wait_for(Daemon(settings, once=True, consumer_prefix="t1").run(), 120)

    hook = receiver.delivered("/hook/")
    telegram = receiver.delivered("/bot")
    assert sorted(r.payload["title"].split("]")[0] for r in hook) == ["[HIGH", "[LOW"]
    [high] = [r for r in hook if r.payload["title"].startswith("[HIGH]")]
    assert "Rule:      bakhmut" in high.payload["message"]  # the full template for a webhook
    assert "Link:      file://" in high.payload["message"] and "report.txt" in high.payload["message"]
    assert "  - Bakhmut\n" in high.payload["message"]
    assert high.payload["type"] == "warning"
    assert len(telegram) == 1 and "Bakhmut" in telegram[0].payload["text"]

    await asyncio.wait_for(Daemon(settings, once=True, consumer_prefix="t2").run(), 120)
    assert len(receiver.received) == 3


async def test_daemon_retries_a_failing_sink_without_resending_to_the_healthy_one(
    redis_url: str, keys: Keys, receiver: NotifyReceiver, tmp_path: Path
) -> None:
    """A webhook failing twice still gets the alert once; the Telegram sink that worked is not sent to again."""
    corpus = write_corpus(tmp_path / "corpus")
    (corpus / "other.txt").unlink()
    settings = daemon_settings(redis_url, keys, corpus, receiver)
    settings.notify.sinks[0].backoff = 0.05
    receiver.fail(f"/hook/{HOOK_SECRET}", 500, 500)
    daemon = Daemon(settings, consumer_prefix="t3", notify_poll_interval=0.05)
    running = asyncio.create_task(daemon.run())
    try:
        for _ in range(400):
            if receiver.delivered("/hook/"):
                break
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.3)  # time for any (wrong) extra send to show up
    finally:
        daemon.stop.set()
        await asyncio.wait_for(running, 60)
    assert [r.status for r in receiver.received if r.path.startswith("/hook/")] == [500, 500, 200]
    assert len(receiver.delivered("/bot")) == 1


async def test_daemon_holds_aggregated_rule_alerts_and_sends_one_digest_when_the_period_ends(
    redis_url: str, redis_client: aioredis.Redis, keys: Keys, receiver: NotifyReceiver, tmp_path: Path
) -> None:
    """A rule with aggregate: 1h queues its alerts under one digest key due at the period's end, sent as one."""
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    for number in range(3):
        (corpus / f"r{number}.txt").write_text(f"Report {number}\n\nShelling near Bakhmut, wave {number}.\n", "utf-8")
    settings = daemon_settings(redis_url, keys, corpus, receiver, default_sinks=["webhook"])
    settings.rules[0].aggregate = 3600.0
    await asyncio.wait_for(Daemon(settings, once=True, consumer_prefix="t4").run(), 120)
    assert receiver.received == []  # held for the digest

    outbox = Outbox(redis_client, keys, "webhook", delivered_ttl=3600)
    queued = await redis_client.zrange(keys.outbox("webhook"), 0, -1, withscores=True)
    assert len(queued) == 3
    [due] = {score for _, score in queued}
    assert due % 3600 == 0
    assert len(set((await redis_client.hgetall(keys.outbox_digest("webhook"))).values())) == 1

    sink = webhook_sink(receiver, "webhook")
    dispatcher = SinkDispatcher(sink, outbox, Templates(), Metrics(), clock=lambda: due + 1)
    assert await dispatcher.step() == 3
    [digest] = receiver.delivered()
    assert digest.payload["message"].startswith("3 alerts for bakhmut")
    assert all(f"wave {n}" in digest.payload["message"] for n in range(3))
    assert await outbox.size() == 0


async def test_notify_test_command_reports_each_sink_without_leaking_urls(
    receiver: NotifyReceiver, tmp_path: Path
) -> None:
    """`monitor notify test` sends the sample alert to each sink, says which failed and exits 1, URLs hidden."""
    config = tmp_path / "config.yaml"
    good = f"json://127.0.0.1:{receiver.port}/hook/{HOOK_SECRET}good"
    bad = f"json://127.0.0.1:{receiver.port}/hook/{HOOK_SECRET}bad"
    config.write_text(
        "rules: [{name: r, any: [x]}]\n"
        f"notify:\n  sinks:\n    - {{name: good, url: '{good}'}}\n    - {{name: bad, url: '{bad}'}}\n",
        encoding="utf-8",
    )
    receiver.fail(f"/hook/{HOOK_SECRET}bad", 502)
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "monitor", "notify", "test", "--config", str(config),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    stdout, stderr = await asyncio.wait_for(process.communicate(), 60)
    output = stdout.decode() + stderr.decode()
    assert process.returncode == 1, output
    assert "ok     good" in output
    assert "failed bad" in output and "502" in output
    assert HOOK_SECRET not in output
    [sent] = receiver.delivered()
    assert sent.payload["title"].startswith("[test] [HIGH] sample-rule")


async def test_per_cluster_alert_says_how_often_the_story_was_reposted(
    redis_client: aioredis.Redis, keys: Keys, receiver: NotifyReceiver
) -> None:
    """An alert of a story cluster with 30 members says 29 more posts of the same story exist."""
    clock = Clock()
    dispatcher = dispatcher_for(redis_client, keys, webhook_sink(receiver, template="short"), clock)
    alert = make_alert(9)
    alert.cluster_id = "story1"
    await redis_client.zadd(keys.cluster_members("story1"), {f"telegram:1:{n}": n for n in range(30)})
    await queue(redis_client, dispatcher.outbox, [alert], clock.now)
    assert await dispatcher.step() == 1
    [sent] = receiver.delivered()
    assert "Same story: 29 more post(s) across channels so far" in sent.payload["message"]
    assert "first telegram:1:0 at 1970-01-01T00:00:00Z" in sent.payload["message"]  # the earliest member


async def test_the_first_post_of_a_story_does_not_name_itself(
    redis_client: aioredis.Redis, keys: Keys, receiver: NotifyReceiver
) -> None:
    """When the alert's own item is the story's first post, the message counts the others but names no first."""
    clock = Clock()
    dispatcher = dispatcher_for(redis_client, keys, webhook_sink(receiver, template="full"), clock)
    alert = make_alert(9)
    alert.cluster_id = "story2"
    await redis_client.zadd(keys.cluster_members("story2"), {alert.item_id: 1, "x:42": 2, "telegram:7:1": 3})
    await queue(redis_client, dispatcher.outbox, [alert], clock.now)
    assert await dispatcher.step() == 1
    [sent] = receiver.delivered()
    assert "Story:     2 more post(s) of the same story so far (cluster story2)" in sent.payload["message"]
    assert "First:" not in sent.payload["message"]
