"""End to end through a real redis-server: corpus -> raw -> normalizer -> items -> alerter -> alerts -> sink."""

from __future__ import annotations

import asyncio
import re
import tempfile
from pathlib import Path
from typing import Any

import msgspec
import pytest
import redis.asyncio as aioredis

from monitor.alerting.offline import match_text
from monitor.bus.keys import Keys
from monitor.bus.publish import Publisher
from monitor.collectors.corpus import ingest_paths
from monitor.config import Settings, parse_config
from monitor.daemon import Daemon
from monitor.metrics import Metrics
from monitor.schema import Alert, Item, decode_entry
from monitor.status import pipeline_status

# v1 matching has no morphology: the Ukrainian and Russian case forms are listed.
BAKHMUT_FORMS = ["Бахмут", "Бахмута", "Бахмуту", "Бахмуті", "Бахмуте", "Бахмутом"]
BAKHMUT_RULE = {"name": "bakhmut", "any": ["Bakhmut", *BAKHMUT_FORMS, "Artiomovsk", "Артемовск"], "severity": "high"}

# Boilerplate lines present in the seed articles that must not survive normalization.
SEED_BOILERPLATE = [
    "Share this article",
    "Copy to clipboard",
    "ADVERTISEMENT",
    "You might also like",
    "At least 4 killed in Russian drone attacks on Kharkiv",
    "No Script",
    "Please Wait",
    "starAdd to favorites",
    "Exit mobile version",
    "Leave A Reply",
    "Please enter your comment!",
    "By Euronews with AP",
    "© Roman Chop/AP/dpa",
    "All rights reserved",
]


class CollectingSink:
    """A notification sink that keeps what it is sent."""

    name = "collect"

    def __init__(self) -> None:
        self.alerts: list[Alert] = []

    async def send(self, alert: Alert) -> None:
        self.alerts.append(alert)


def make_settings(redis_url: str, keys: Keys, paths: list[Path], **extra: Any) -> Settings:
    data: dict[str, Any] = {
        "redis": {"url": redis_url, "key_prefix": keys.prefix, "consumer": {"block_ms": 50}},
        "metrics": {"enabled": False},
        "collectors": {"corpus": {"paths": [str(p) for p in paths]}},
        "rules": [BAKHMUT_RULE],
        "log": {"level": "warning"},
        "archive": {"dir": tempfile.mkdtemp(prefix="warwatch-test-archive-")},
    }
    data.update(extra)
    return parse_config(data, env={})


async def run_once(settings: Settings, sink: CollectingSink | None = None) -> Daemon:
    daemon = Daemon(settings, once=True, sinks=[sink or CollectingSink()], consumer_prefix="test")
    await asyncio.wait_for(daemon.run(), 120)
    return daemon


async def read_models(client: aioredis.Redis, stream: str, kind: type[Any]) -> list[Any]:
    return [decode_entry(kind, fields) for _, fields in await client.xrange(stream)]


def mentions_bakhmut(text: str) -> bool:
    """An independent oracle: Bakhmut or one of its listed case forms as a word."""
    forms = "|".join(["bakhmut", *(f.lower() for f in BAKHMUT_FORMS)])
    return re.search(rf"\b({forms})\b", text, re.IGNORECASE) is not None


async def test_seed_articles_end_to_end(
    redis_url: str, redis_client: aioredis.Redis, keys: Keys, seeds_dir: Path
) -> None:
    """Each seed becomes one Item without its boilerplate, and the Bakhmut rule fires once per article."""
    sink = CollectingSink()
    await run_once(make_settings(redis_url, keys, [seeds_dir]), sink)
    items: list[Item] = await read_models(redis_client, keys.items, Item)
    seeds = sorted(seeds_dir.glob("*.txt"))
    assert len(items) == len(seeds) == 5
    assert len({i.id for i in items}) == 5
    for item in items:
        assert item.lang == "en"
        for line in SEED_BOILERPLATE:
            assert line not in item.text, (item.title, line)
    assert "Bakhmut may have fallen into Russian hands" in "\n".join(i.text for i in items)
    alerts: list[Alert] = await read_models(redis_client, keys.alerts, Alert)
    expected = sum(mentions_bakhmut(p.read_text()) for p in seeds)
    assert len(alerts) == expected == 5
    assert {a.item_id for a in alerts} == {i.id for i in items}
    assert sorted(a.alert_id for a in sink.alerts) == sorted(a.alert_id for a in alerts)
    by_id = {i.id: i for i in items}
    for alert in alerts:
        text = by_id[alert.item_id].text
        assert all(text[m.start : m.end].lower() in ("bakhmut", "artiomovsk") for m in alert.matched), alert.matched
        assert "Bakhmut" in alert.snippet


async def test_sample_corpus_end_to_end(
    redis_url: str, redis_client: aioredis.Redis, keys: Keys, sample_corpus_dir: Path
) -> None:
    """The shipped sample corpus: every article and post becomes one Item; Bakhmut alerts match the texts."""
    await run_once(make_settings(redis_url, keys, [sample_corpus_dir]))
    items: list[Item] = await read_models(redis_client, keys.items, Item)
    assert len(items) == 9
    assert {i.lang for i in items} >= {"en", "uk", "ru"}
    for item in items:
        assert "ADVERTISEMENT" not in item.text and "Exit mobile version" not in item.text
        assert "Поділитися" not in item.text
    alerts: list[Alert] = await read_models(redis_client, keys.alerts, Alert)
    assert sorted(a.item_id for a in alerts) == sorted(i.id for i in items if mentions_bakhmut(i.text))
    assert 5 <= len(alerts) < len(items)


async def test_reingesting_adds_no_items_and_no_alerts(
    redis_url: str, redis_client: aioredis.Redis, keys: Keys, sample_corpus_dir: Path, seeds_dir: Path
) -> None:
    """Running the same corpus twice, and ingesting it again by hand, yields no new items or alerts."""
    settings = make_settings(redis_url, keys, [sample_corpus_dir, seeds_dir])
    sink = CollectingSink()
    await run_once(settings, sink)
    items, alerts, sent = await redis_client.xlen(keys.items), await redis_client.xlen(keys.alerts), len(sink.alerts)
    await run_once(settings, sink)
    publisher = Publisher(redis_client, keys, settings.redis.dedup_ttl)
    report = await ingest_paths(
        [str(sample_corpus_dir) + "/", seeds_dir.resolve()], publisher, settings.collectors.corpus, Metrics()
    )
    assert report.published == 0 and report.duplicates == report.items == 14
    await run_once(settings, sink)
    assert await redis_client.xlen(keys.items) == items == 14
    assert await redis_client.xlen(keys.alerts) == alerts
    assert len(sink.alerts) == sent


async def test_match_command_equals_pipeline(
    redis_url: str, redis_client: aioredis.Redis, keys: Keys, seeds_dir: Path, tmp_path: Path
) -> None:
    """`monitor match` on a text and the same text through Redis yield the same alerts."""
    rules = [BAKHMUT_RULE, {"name": "wagner", "any": ["Wagner"], "severity": "medium"}]
    texts = {p.name: p.read_text() for p in sorted(seeds_dir.glob("*.txt"))}
    texts["uk.txt"] = "Бої за Бахмут тривають.\n\nПоділитися\n\nЗСУ утримують позиції біля Бахмута та Wagner."
    folder = tmp_path / "match-corpus"
    folder.mkdir()
    for name, text in texts.items():
        (folder / name).write_text(text)
    settings = make_settings(redis_url, keys, [folder], rules=rules)
    await run_once(settings)
    through_redis: list[Alert] = await read_models(redis_client, keys.alerts, Alert)
    items = {i.id: i for i in await read_models(redis_client, keys.items, Item)}

    def shape(alert: Alert) -> tuple[Any, ...]:
        return (alert.rule, alert.severity, tuple((m.term, m.start, m.end) for m in alert.matched), alert.snippet)

    offline = sorted(shape(a) for text in texts.values() for a in match_text(text, settings))
    assert offline == sorted(shape(a) for a in through_redis)
    assert len(offline) >= 7
    assert all(items[a.item_id].external_id for a in through_redis)


async def test_status_after_drain(
    redis_url: str, redis_client: aioredis.Redis, keys: Keys, sample_corpus_dir: Path
) -> None:
    """After --once, every group (the archiver too) has zero lag and pending, no dead letters, channels listed."""
    await run_once(make_settings(redis_url, keys, [sample_corpus_dir]))
    status = await pipeline_status(redis_client, keys)
    lengths = {s.name: s.length for s in status.streams}
    assert lengths[keys.raw] == lengths[keys.items] == 9
    groups = {(s.name, g.name): g for s in status.streams for g in s.groups}
    assert set(groups) == {
        (keys.raw, "normalizer"),
        (keys.items, "alerter"),
        (keys.items, "archiver"),
        (keys.alerts, "notifier"),
    }
    assert all(g.lag == 0 and g.pending == 0 for g in groups.values())
    assert status.dead_letters == 0
    assert "corpus:corpus" in status.channels
    assert "telegram_web:example_brigade" in status.channels or any(
        k.startswith("telegram_web:") for k in status.channels
    )


async def test_poison_raw_entry_reaches_dead_through_daemon(
    redis_url: str, redis_client: aioredis.Redis, keys: Keys, tmp_path: Path
) -> None:
    """A raw entry that is not JSON, and one missing a field, go to dead; a good one still alerts."""
    await redis_client.xadd(keys.raw, {"v": 1, "data": b"\xff\xfe not json"})
    await redis_client.xadd(keys.raw, {"v": 1, "data": msgspec.json.encode({"source": "corpus", "channel": "c"})})
    await redis_client.xadd(keys.raw, {"v": 99, "data": b"{}"})
    folder = tmp_path / "one"
    folder.mkdir()
    (folder / "a.txt").write_text("Fighting continues in Bakhmut.")
    await run_once(make_settings(redis_url, keys, [folder]))
    dead = await redis_client.xrange(keys.dead)
    assert len(dead) == 3
    errors = [fields[b"error"].decode() for _, fields in dead]
    assert "missing required field" in errors[1]
    assert "schema version" in errors[2]
    assert await redis_client.xlen(keys.alerts) == 1


@pytest.mark.parametrize("fmt", ["json"])
async def test_console_sink_json_lines(fmt: str, capsys: pytest.CaptureFixture[str]) -> None:
    """Off a TTY the console sink prints one JSON alert per line on stdout."""
    from monitor.notify.console import ConsoleSink  # noqa: PLC0415 - local to this test

    text = "Shelling near Bakhmut overnight."
    alerts = match_text(text, parse_config({"rules": [BAKHMUT_RULE]}, env={}))
    sink = ConsoleSink(fmt)  # type: ignore[arg-type]
    for alert in alerts:
        await sink.send(alert)
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 1
    decoded = msgspec.json.decode(lines[0], type=Alert)
    assert decoded.rule == "bakhmut" and decoded.matched[0].term == "Bakhmut"


async def test_marker_lifetimes(redis_url: str, redis_client: aioredis.Redis, keys: Keys, tmp_path: Path) -> None:
    """Collector "seen" markers live dedup_ttl; stage output, alert and delivery markers live stage_dedup_ttl."""
    folder = tmp_path / "ttl"
    folder.mkdir()
    (folder / "a.txt").write_text("Shelling near Bakhmut.")
    settings = make_settings(redis_url, keys, [folder])
    settings.redis.dedup_ttl = 10 * 86400
    settings.redis.stage_dedup_ttl = 3600
    await run_once(settings)
    [item] = await read_models(redis_client, keys.items, Item)
    [alert] = await read_models(redis_client, keys.alerts, Alert)
    assert 9 * 86400 < await redis_client.ttl(keys.seen(item.id)) <= 10 * 86400
    for key in (
        keys.emitted("normalizer", item.id),
        keys.seen_alert(alert.alert_id),
        keys.delivered("collect", alert.alert_id),
    ):
        assert 0 < await redis_client.ttl(key) <= 3600, key
