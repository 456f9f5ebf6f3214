"""`monitor dead list|retry`: inspect dead letters and re-drive them through their stream."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import msgspec
import redis.asyncio as aioredis

from monitor.bus.dead import list_dead, retry_dead
from monitor.bus.keys import Keys
from monitor.schema import Item, decode_entry
from tests.test_pipeline import make_settings, run_once


async def test_dead_letters_are_listed_and_retried(
    redis_url: str, redis_client: aioredis.Redis, keys: Keys, tmp_path: Path
) -> None:
    """A poison entry is listed with its error; once fixed upstream and retried, it is processed."""
    good = {"source": "corpus", "channel": "c", "external_id": "1", "text": "Shelling near Bakhmut.",
            "collected_at": "2023-05-20T10:00:00Z"}  # fmt: skip
    await redis_client.xadd(keys.raw, {"v": 2, "data": msgspec.json.encode(good)})  # a version this build rejects
    await redis_client.xadd(keys.raw, {"v": 1, "data": b"{broken"})
    settings = make_settings(redis_url, keys, [])
    await run_once(settings)
    dead = await list_dead(redis_client, keys)
    assert [d.stage for d in dead] == ["normalizer", "normalizer"]
    assert "schema version" in dead[0].error and dead[0].stream == keys.raw
    assert dead[1].data == "{broken"

    # Retrying the version-2 entry as it is fails again and lands back in dead, nothing is lost.
    assert await retry_dead(redis_client, keys, [dead[0].id]) == [dead[0].id]
    await run_once(settings)
    assert len(await list_dead(redis_client, keys)) == 2
    assert await redis_client.xlen(keys.items) == 0

    # An operator rewrites the dead letter to the supported version and retries everything.
    again = await list_dead(redis_client, keys)
    target = next(d for d in again if "schema version" in d.error)
    await redis_client.xdel(keys.dead, target.id)
    await redis_client.xadd(
        keys.dead,
        {"v": 1, "data": msgspec.json.encode(good), "stream": keys.raw, "group": "normalizer", "stage": "normalizer",
         "entry_id": target.entry_id, "error": target.error, "deliveries": 1, "failed_at": target.failed_at},
    )  # fmt: skip
    retried = await retry_dead(redis_client, keys)
    assert len(retried) == 2
    await run_once(settings)
    items = [decode_entry(Item, f) for _, f in await redis_client.xrange(keys.items)]
    assert [i.external_id for i in items] == ["1"]
    assert await redis_client.xlen(keys.alerts) == 1
    remaining = await list_dead(redis_client, keys)
    assert [d.data for d in remaining] == ["{broken"]  # still broken, dead again, listed once


def test_dead_cli(redis_url: str, keys: Keys, tmp_path: Path) -> None:
    """`monitor dead list --json` and `monitor dead retry --all` work from the command line."""
    import asyncio  # noqa: PLC0415 - local to this test

    async def seed() -> None:
        client = aioredis.from_url(redis_url)
        await client.xadd(keys.dead, {"v": 1, "data": b"{}", "stream": keys.raw, "group": "normalizer",
                                      "stage": "normalizer", "entry_id": "1-0", "error": "WireError: x",
                                      "deliveries": 1, "failed_at": "2023-05-20T10:00:00Z"})  # fmt: skip
        await client.aclose()

    asyncio.run(seed())
    config = tmp_path / "config.yaml"
    config.write_text(json.dumps({"redis": {"url": redis_url, "key_prefix": keys.prefix}}))
    listed = subprocess.run([sys.executable, "-m", "monitor", "dead", "list", "--json", "--config", str(config)],
                            capture_output=True, text=True, check=False)  # fmt: skip
    assert listed.returncode == 0, listed.stderr
    assert [e["error"] for e in json.loads(listed.stdout)] == ["WireError: x"]
    retried = subprocess.run([sys.executable, "-m", "monitor", "dead", "retry", "--all", "--config", str(config)],
                             capture_output=True, text=True, check=False)  # fmt: skip
    assert retried.returncode == 0 and "1 dead letter(s)" in retried.stderr
    none_given = subprocess.run([sys.executable, "-m", "monitor", "dead", "retry", "--config", str(config)],
                                capture_output=True, text=True, check=False)  # fmt: skip
    assert none_given.returncode == 2
