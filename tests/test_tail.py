"""``monitor tail``: recent entries first, then live ones, filtered, without touching the consumer groups."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from datetime import UTC, datetime
from pathlib import Path

import redis.asyncio as aioredis

from monitor.bus.keys import Keys
from monitor.schema import Alert, Item, MatchedTerm, Place, entry_fields
from monitor.tail import TailFilter, follow, render_item

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)


def alert(number: int, rule: str, source: str = "telegram_web") -> Alert:
    return Alert(
        alert_id=f"a{number}",
        rule=rule,
        severity="high",
        item_id=f"telegram:1:{number}",
        fired_at=NOW,
        matched=[MatchedTerm(term="Bakhmut", start=0, end=7)],
        snippet=f"Bakhmut report {number}",
        source=source,  # type: ignore[arg-type]
        channel="ab3army",
        url=f"https://t.me/ab3army/{number}",
    )


def item(number: int) -> Item:
    return Item(
        id=f"telegram:1:{number}",
        source="telegram_web",
        channel="Nexta_Live",
        external_id=str(number),
        collected_at=NOW,
        text=f"Item text {number}",
        lang="en",
        content_hash="h",
    )


async def add(client: aioredis.Redis, stream: str, *models: Alert | Item) -> None:
    for model in models:
        await client.xadd(stream, entry_fields(model))  # type: ignore[arg-type]


async def test_tail_shows_recent_matching_alerts_then_new_ones(redis_client: aioredis.Redis, keys: Keys) -> None:
    """The last N alerts passing the filter come first, oldest first; then alerts added later, until stopped."""
    await add(redis_client, keys.alerts, *(alert(n, "bakhmut" if n % 2 else "other") for n in range(10)))
    shown: list[str] = []
    stop = asyncio.Event()

    def show(entry: Alert | Item) -> None:
        assert isinstance(entry, Alert)
        shown.append(entry.alert_id)
        if entry.alert_id == "a13":
            stop.set()

    task = asyncio.create_task(
        follow(redis_client, keys, "alerts", show, only=TailFilter(rules=["bakhmut"]), last=3, stop=stop, block_ms=50)
    )
    for _ in range(100):
        if len(shown) >= 3:
            break
        await asyncio.sleep(0.01)
    assert shown == ["a5", "a7", "a9"]
    await add(redis_client, keys.alerts, alert(12, "other"), alert(13, "bakhmut"))
    assert await asyncio.wait_for(task, 10) == 4
    assert shown == ["a5", "a7", "a9", "a13"]
    assert await redis_client.xinfo_groups(keys.alerts) == []  # no consumer group was created


async def test_tail_items_filter_by_channel_case_insensitively(redis_client: aioredis.Redis, keys: Keys) -> None:
    """--items with --channel shows only that channel's items, whatever the case of the name given."""
    await add(redis_client, keys.items, item(1), item(2))
    other = item(3)
    other.channel = "elsewhere"
    await add(redis_client, keys.items, other)
    shown: list[str] = []
    stop = asyncio.Event()
    stop.set()  # only the backlog
    count = await follow(
        redis_client, keys, "items", lambda e: shown.append(e.id), only=TailFilter(channels=["nexta_live"]), stop=stop
    )
    assert count == 2 and shown == ["telegram:1:1", "telegram:1:2"]
    assert "telegram_web/Nexta_Live" in render_item(item(1)) and "Item text 1" in render_item(item(1))


def test_an_item_line_names_its_places_and_story() -> None:
    """`monitor tail --items` lines name each place once and the story cluster; without them, neither."""
    plain = item(4)
    assert "@ " not in render_item(plain) and "story" not in render_item(plain)
    placed = item(5)
    placed.entities.places = [
        Place(name="Bakhmut", start=0, end=7),
        Place(name="Bakhmut", start=20, end=27),
        Place(name="Klishchiivka", start=30, end=42),
    ]
    placed.cluster_id = "ec6fc66d18be8344"
    line = render_item(placed)
    assert "@ Bakhmut, Klishchiivka" in line and "story ec6fc66d18be8344" in line


async def test_tail_command_prints_json_lines_and_stops_cleanly_on_ctrl_c(
    redis_url: str, redis_client: aioredis.Redis, keys: Keys, tmp_path: Path
) -> None:
    """`monitor tail --json` prints the recent alerts as JSON lines and exits 0 on SIGINT."""
    await add(redis_client, keys.alerts, alert(1, "bakhmut"), alert(2, "bakhmut", source="x"))
    config = tmp_path / "config.yaml"
    config.write_text(json.dumps({"redis": {"url": redis_url, "key_prefix": keys.prefix}}), encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if not k.startswith("WARWATCH")}
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "monitor", "tail", "--json", "--source", "x", "--config", str(config),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=env,
    )  # fmt: skip
    assert process.stdout is not None
    line = await asyncio.wait_for(process.stdout.readline(), 60)
    assert json.loads(line)["alert_id"] == "a2"
    process.send_signal(signal.SIGINT)
    _, stderr = await asyncio.wait_for(process.communicate(), 30)
    assert process.returncode == 0, stderr.decode()
