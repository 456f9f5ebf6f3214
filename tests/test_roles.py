"""Split roles: collectors and workers as separate processes, several workers sharing one group, and the
consumer-name lease that stops two processes from sharing a name. Plus the per-channel and end-to-end
metrics those processes export."""

from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import redis.asyncio as aioredis

from monitor.bus.keys import Keys
from monitor.bus.publish import Publisher
from monitor.config import parse_config
from monitor.daemon import Daemon
from monitor.schema import Alert, Item, RawItem, decode_entry
from tests.test_pipeline import BAKHMUT_RULE, CollectingSink


def worker_config(tmp_path: Path, redis_url: str, keys: Keys) -> Path:
    config = tmp_path / "config.yaml"
    config.write_text(
        json.dumps(
            {
                "redis": {"url": redis_url, "key_prefix": keys.prefix, "consumer": {"batch_size": 50}},
                "metrics": {"port": 0, "stats_interval": 0.5},
                "log": {"format": "json", "level": "info"},
                "collectors": {"corpus": {"enabled": False}, "telegram_web": {"enabled": False}},
                "notify": {"console": {"enabled": False}},
                "archive": {"enabled": False},
                "rules": [BAKHMUT_RULE],
            }
        ),
        encoding="utf-8",
    )
    return config


def start_worker(config: Path, consumer: str) -> subprocess.Popen[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("WARWATCH")}
    command = [sys.executable, "-m", "monitor", "run", "--role", "workers", "--consumer", consumer, "--config"]
    return subprocess.Popen(
        [*command, str(config)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env
    )


async def metrics_url(process: subprocess.Popen[str]) -> str:
    """Read the process's JSON logs until it says where its metrics server listens."""
    assert process.stderr is not None
    loop = asyncio.get_running_loop()
    while True:
        line = await asyncio.wait_for(loop.run_in_executor(None, process.stderr.readline), 60)
        assert line, f"worker exited early with {process.poll()}"
        if '"metrics listening"' in line:
            return str(json.loads(line)["url"])


def posts(count: int) -> list[RawItem]:
    now = datetime.now(UTC)
    return [
        RawItem(
            source="telegram_web",
            channel="split",
            external_id=str(n),
            text=f"Post {n}: shelling near Bakhmut." if n % 2 == 0 else f"Post {n}: a quiet night in Sumy.",
            collected_at=now,
            published_at=now,
        )
        for n in range(count)
    ]


def sample(text: str, name: str, **labels: str) -> float:
    """The value of one sample in Prometheus text, 0 when absent."""
    wanted = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))  # the exposition sorts label names
    for line in text.splitlines():
        if line.startswith(f"{name}{{{wanted}}}") or (not labels and line.startswith(f"{name} ")):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


async def test_two_worker_processes_share_a_group_without_double_processing(
    redis_url: str, redis_client: aioredis.Redis, keys: Keys, tmp_path: Path
) -> None:
    """Two `run --role workers` processes split the raw stream between them; every item and alert exists once."""
    config = worker_config(tmp_path, redis_url, keys)
    workers = [start_worker(config, "worker-a"), start_worker(config, "worker-b")]
    try:
        urls = [await metrics_url(w) for w in workers]
        async with aiohttp.ClientSession() as http:
            for url in urls:
                for _ in range(200):
                    async with http.get(url.replace("/metrics", "/readyz")) as response:
                        if response.status == 200:
                            break
                    await asyncio.sleep(0.05)
            publisher = Publisher(redis_client, keys, 3600)
            items = posts(4000)
            for start in range(0, len(items), 200):
                await publisher.publish_raw(items[start : start + 200])
            for _ in range(600):
                if await redis_client.xlen(keys.alerts) >= 2000:
                    break
                await asyncio.sleep(0.1)
            texts = []
            for url in urls:
                async with http.get(url) as response:
                    texts.append(await response.text())
    finally:
        for worker in workers:
            worker.terminate()
        for worker in workers:
            worker.wait(30)
    item_ids = [decode_entry(Item, f).id for _, f in await redis_client.xrange(keys.items)]
    alert_ids = [decode_entry(Alert, f).alert_id for _, f in await redis_client.xrange(keys.alerts)]
    assert len(item_ids) == len(set(item_ids)) == 4000
    assert len(alert_ids) == len(set(alert_ids)) == 2000
    shares = [sample(t, "warwatch_stage_items_in_total", stage="normalizer", source="telegram_web") for t in texts]
    assert sum(shares) == 4000  # each raw entry was handled by exactly one of the two processes
    assert all(share > 0 for share in shares), shares
    alerted = [sample(t, "warwatch_items_alerted_total", source="telegram_web", channel="split") for t in texts]
    assert sum(alerted) == 2000
    assert all(worker.returncode == 0 for worker in workers)


async def test_a_second_process_cannot_take_a_live_consumer_name(redis_url: str, keys: Keys, tmp_path: Path) -> None:
    """Starting a worker with the consumer name of a running one fails with exit 2 and says why."""
    config = worker_config(tmp_path, redis_url, keys)
    first = start_worker(config, "same-name")
    try:
        await metrics_url(first)
        second = start_worker(config, "same-name")
        _, stderr = await asyncio.get_running_loop().run_in_executor(None, second.communicate, None, 60)
        assert second.returncode == 2
        assert "consumer name 'same-name' is in use" in stderr
    finally:
        first.terminate()
        first.wait(30)
    assert first.returncode == 0


async def test_consumer_name_of_a_killed_process_is_taken_over(
    redis_url: str, redis_client: aioredis.Redis, keys: Keys, tmp_path: Path
) -> None:
    """A worker restarted after SIGKILL reuses its consumer name at once instead of waiting out the lease."""
    config = worker_config(tmp_path, redis_url, keys)
    victim = start_worker(config, "restarted")
    await metrics_url(victim)
    victim.kill()
    victim.wait(10)
    assert await redis_client.exists(keys.consumer_lease("restarted")) == 1
    started = time.monotonic()
    again = start_worker(config, "restarted")
    try:
        await metrics_url(again)
        assert again.poll() is None
        assert time.monotonic() - started < 25  # well inside the 30 s lease: it was taken over, not waited out
    finally:
        again.terminate()
        again.wait(30)
    assert await redis_client.exists(keys.consumer_lease("restarted")) == 0  # released on a clean stop


def split_settings(redis_url: str, keys: Keys, corpus: Path, **extra: Any) -> Any:
    data: dict[str, Any] = {
        "redis": {"url": redis_url, "key_prefix": keys.prefix, "consumer": {"block_ms": 50}},
        "metrics": {"enabled": False},
        "log": {"level": "warning"},
        "archive": {"dir": tempfile.mkdtemp(prefix="warwatch-test-archive-")},
        "collectors": {"corpus": {"paths": [str(corpus)]}},
        "rules": [BAKHMUT_RULE],
        **extra,
    }
    return parse_config(data, env={})


async def test_collectors_role_only_collects_and_workers_role_only_processes(
    redis_url: str, redis_client: aioredis.Redis, keys: Keys, tmp_path: Path
) -> None:
    """--role collectors fills the raw stream and stops; --role workers then turns it into items and alerts."""
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    (corpus / "a.txt").write_text("Report\n\nFighting near Bakhmut went on all night.\n", encoding="utf-8")
    (corpus / "b.txt").write_text("Weather\n\nRain in Lviv.\n", encoding="utf-8")
    settings = split_settings(redis_url, keys, corpus)
    sink = CollectingSink()
    await asyncio.wait_for(Daemon(settings, once=True, role="collectors", sinks=[sink]).run(), 60)
    assert await redis_client.xlen(keys.raw) == 2
    assert await redis_client.exists(keys.items) == 0
    assert await redis_client.exists(keys.raw) and not await redis_client.xinfo_groups(keys.raw)
    await asyncio.wait_for(Daemon(settings, once=True, role="workers", sinks=[sink], consumer_prefix="w").run(), 60)
    assert await redis_client.xlen(keys.items) == 2
    assert [a.rule for a in sink.alerts] == ["bakhmut"]


async def test_per_channel_series_exist_from_start_and_flow_metrics_count(
    redis_url: str, keys: Keys, tmp_path: Path
) -> None:
    """Configured channels have zeroed series at start; normalized/alerted counts and end-to-end delays follow items."""
    corpus = tmp_path / "reports"
    corpus.mkdir()
    (corpus / "a.txt").write_text("Report\n\nFighting near Bakhmut went on all night.\n", encoding="utf-8")
    (corpus / "b.txt").write_text("Weather\n\nRain in Lviv.\n", encoding="utf-8")
    settings = split_settings(
        redis_url,
        keys,
        corpus,
        collectors={
            "corpus": {"paths": [str(corpus)]},
            # Nothing listens there: the channel never yields an item, yet its series must exist.
            "telegram_web": {"channels": ["@Silent_Channel"], "base_url": "http://127.0.0.1:9", "interval": 3600},
        },
    )
    before = time.time()
    daemon = Daemon(settings, once=True, sinks=[CollectingSink()], consumer_prefix="m")
    await asyncio.wait_for(daemon.run(), 60)
    text = daemon.metrics.render().decode()
    assert sample(text, "warwatch_collector_items_total", source="telegram_web", channel="silent_channel") == 0.0
    assert re.search(r'warwatch_collector_items_total\{channel="silent_channel",source="telegram_web"\}', text)
    assert re.search(r'warwatch_items_alerted_total\{channel="silent_channel",source="telegram_web"\} 0\.0', text)
    last = re.search(
        r'warwatch_collector_last_item_timestamp_seconds\{channel="silent_channel",source="telegram_web"\} (\S+)', text
    )
    assert last is not None and before - 1 <= float(last.group(1)) <= time.time()
    assert re.search(r'warwatch_items_normalized_total\{channel="reports",source="corpus"\} 2\.0', text)
    assert re.search(r'warwatch_items_alerted_total\{channel="reports",source="corpus"\} 1\.0', text)
    assert re.search(r'warwatch_end_to_end_seconds_count\{since="collected",source="corpus"\} 1\.0', text)
    assert re.search(r"warwatch_redis_memory_used_bytes \d", text)
    assert re.search(r"warwatch_redis_aof_last_write_ok 1\.0", text)
    assert re.search(r"warwatch_dead_letter_entries 0\.0", text)


async def test_last_item_gauge_never_moves_back(redis_client: aioredis.Redis, keys: Keys) -> None:
    """An edit of an old post (old published_at) emitted after a new one leaves the channel's last-item time alone."""
    from monitor.collectors.base import Checkpoints, Emitter  # noqa: PLC0415 - only this test needs them
    from monitor.metrics import Metrics  # noqa: PLC0415

    metrics = Metrics()
    emitter = Emitter(Publisher(redis_client, keys, 3600), Checkpoints(redis_client, keys), metrics)
    newer, older = posts(2)
    newer.published_at = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
    older.published_at = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)
    await emitter.emit("telegram_web", "split", [newer])
    await emitter.emit("telegram_web", "split", [older])
    labels = {"source": "telegram_web", "channel": "split"}
    value = metrics.registry.get_sample_value("warwatch_collector_last_item_timestamp_seconds", labels)
    assert value == newer.published_at.timestamp()
