"""Windowed rules (frequency, first_seen, realert) through the real pipeline, with item times as the clock."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import redis.asyncio as aioredis

from monitor.bus.keys import Keys
from monitor.bus.publish import Publisher
from monitor.schema import Alert, RawItem, decode_entry
from tests.test_pipeline import make_settings, run_once

T0 = datetime(2023, 5, 20, 8, 0, tzinfo=UTC)


async def publish(client: aioredis.Redis, keys: Keys, posts: list[tuple[int, str, int, str]]) -> None:
    """Posts as (id, channel, minutes after T0, text)."""
    items = [
        RawItem(source="telegram_web", channel=channel, external_id=str(n), text=text,
                collected_at=T0 + timedelta(minutes=minute), published_at=T0 + timedelta(minutes=minute))
        for n, channel, minute, text in posts
    ]  # fmt: skip
    await Publisher(client, keys, 3600).publish_raw(items)


async def alerts(client: aioredis.Redis, keys: Keys) -> list[Alert]:
    return [decode_entry(Alert, f) for _, f in await client.xrange(keys.alerts)]


def settings_with(redis_url: str, keys: Keys, rule: dict[str, Any]) -> Any:
    return make_settings(redis_url, keys, [], rules=[rule])


async def test_frequency_fires_once_per_window_and_group(
    redis_url: str, redis_client: aioredis.Redis, keys: Keys
) -> None:
    """Three Bakhmut posts within 10 minutes from one channel alert once; a sparse channel never does."""
    rule = {"name": "surge", "any": ['"Bakhmut"'], "type": "frequency", "num_events": 3, "timeframe": "10m",
            "group_by": "channel"}  # fmt: skip
    settings = settings_with(redis_url, keys, rule)
    await publish(redis_client, keys, [
        (1, "busy", 0, "Bakhmut shelling"), (2, "busy", 2, "Bakhmut again"), (3, "busy", 4, "Bakhmut third"),
        (4, "busy", 5, "Bakhmut fourth"),
        (5, "quiet", 0, "Bakhmut"), (6, "quiet", 30, "Bakhmut"), (7, "quiet", 60, "Bakhmut"),
    ])  # fmt: skip
    await run_once(settings)
    fired = await alerts(redis_client, keys)
    assert [a.channel for a in fired] == ["busy"]
    assert fired[0].snippet.startswith("3 matching items within 600 s")
    await run_once(settings)  # a rerun (replay) raises nothing new
    assert len(await alerts(redis_client, keys)) == 1


async def test_first_seen_fires_for_new_terms_only(redis_url: str, redis_client: aioredis.Redis, keys: Keys) -> None:
    """The first post naming a place from a source alerts; repeats do not; a new place does."""
    rule = {"name": "new-place", "any": ['"Klishchiivka"', '"Andriivka"'], "type": "first_seen",
            "group_by": "source"}  # fmt: skip
    settings = settings_with(redis_url, keys, rule)
    await publish(redis_client, keys, [(1, "a", 0, "Fighting near Klishchiivka"), (2, "b", 1, "Klishchiivka again")])
    await run_once(settings)
    await publish(redis_client, keys, [(3, "a", 2, "Klishchiivka and Andriivka"), (4, "a", 3, "Andriivka")])
    await run_once(settings)
    fired = await alerts(redis_client, keys)
    assert [a.item_id.rsplit(":", 1)[1] for a in fired] == ["1", "3"]


async def test_realert_cooldown(redis_url: str, redis_client: aioredis.Redis, keys: Keys) -> None:
    """After a frequency alert, the next window's alert is held back during the realert cooldown."""
    rule = {"name": "surge", "any": ['"Bakhmut"'], "type": "frequency", "num_events": 2, "timeframe": "5m",
            "realert": "1h"}  # fmt: skip
    settings = settings_with(redis_url, keys, rule)
    await publish(redis_client, keys, [(1, "c", 0, "Bakhmut"), (2, "c", 1, "Bakhmut")])
    await run_once(settings)
    await publish(redis_client, keys, [(3, "c", 20, "Bakhmut"), (4, "c", 21, "Bakhmut")])
    await run_once(settings)
    assert len(await alerts(redis_client, keys)) == 1
    assert await redis_client.ttl(keys.cooldown("surge", "all")) > 3000


async def test_spike_against_the_previous_window(redis_url: str, redis_client: aioredis.Redis, keys: Keys) -> None:
    """A burst far above the previous window's rate alerts; the same steady rate does not."""
    rule = {"name": "spike", "any": ['"Bakhmut"'], "type": "spike", "timeframe": "10m", "num_events": 4,
            "spike_ratio": 3}  # fmt: skip
    settings = settings_with(redis_url, keys, rule)
    steady = [(n, "c", 5 * n, "Bakhmut") for n in range(1, 9)]  # one post every 5 minutes for 40 minutes
    await publish(redis_client, keys, steady)
    await run_once(settings)
    assert await alerts(redis_client, keys) == []
    burst = [(100 + n, "c", 41 + n // 2, "Bakhmut burst") for n in range(8)]  # 8 posts in 4 minutes
    await publish(redis_client, keys, burst)
    await run_once(settings)
    fired = await alerts(redis_client, keys)
    assert len(fired) == 1 and fired[0].snippet.startswith("spike: ")


async def test_flatline_alerts_once_when_a_channel_goes_silent(
    redis_url: str, redis_client: aioredis.Redis, keys: Keys
) -> None:
    """A channel that matched and then fell silent for the timeframe alerts once; an active one does not."""
    from monitor.daemon import Daemon  # noqa: PLC0415 - local to this test

    rule = {"name": "quiet", "any": ['"Bakhmut"'], "type": "flatline", "timeframe": "1h", "group_by": "channel"}
    settings = settings_with(redis_url, keys, rule)
    await publish(
        redis_client, keys, [(1, "dead", 0, "Bakhmut"), (2, "alive", 0, "Bakhmut"), (3, "alive", 90, "Bakhmut")]
    )
    await run_once(settings)
    assert await alerts(redis_client, keys) == []  # matches alone never alert
    daemon = Daemon(settings)
    publisher = Publisher(redis_client, keys, 3600)
    now = (T0 + timedelta(minutes=100)).timestamp()
    assert await daemon.flatline_check(redis_client, publisher, now=now) == 1
    assert await daemon.flatline_check(redis_client, publisher, now=now + 600) == 0  # same silence: once
    fired = await alerts(redis_client, keys)
    assert [(a.rule, a.channel) for a in fired] == [("quiet", "dead")]
    assert "no matching item for 6000 s" in fired[0].snippet
    await publish(redis_client, keys, [(4, "dead", 200, "Bakhmut is back")])
    await run_once(settings)
    later = (T0 + timedelta(minutes=300)).timestamp()
    await daemon.flatline_check(redis_client, publisher, now=later)
    # (The daemon's own timer, on the wall clock, may have raised some of these first: ids dedup them.)
    raised = sorted((a.channel, a.item_id.rsplit(":", 1)[1]) for a in await alerts(redis_client, keys))
    assert raised == [("alive", "3"), ("dead", "1"), ("dead", "4")]  # one alert per silence, none twice
