"""The daemon as users run it: embedded Redis, HTTP endpoints, signals, CLI errors, log redaction."""

from __future__ import annotations

import asyncio
import io
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import aiohttp
import redis.asyncio as aioredis
import structlog

from monitor.bus.keys import Keys
from monitor.bus.redis import EmbeddedRedis, open_redis, redact_url
from monitor.config import LogSettings, parse_config
from monitor.daemon import Daemon
from monitor.log import configure_logging
from monitor.schema import Alert, Item, decode_entry
from tests.conftest import REPO_ROOT
from tests.test_pipeline import BAKHMUT_RULE, CollectingSink, make_settings


def cli(*args: str, cwd: Path | None = None, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("WARWATCH")}
    return subprocess.run(
        [sys.executable, "-m", "monitor", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=cwd or REPO_ROOT,
        env=env,
        check=False,
    )


async def test_embedded_redis_runs_with_aof_and_stops_cleanly(tmp_path: Path) -> None:
    """The embedded server keeps data in the data dir with AOF everysec, and exits 0 on stop."""
    server = EmbeddedRedis(tmp_path)
    url = await server.start()
    assert url.startswith("unix://") and server.unix_socket is not None
    client = aioredis.from_url(url)
    assert (await client.config_get("appendonly"))["appendonly"] == "yes"
    assert (await client.config_get("appendfsync"))["appendfsync"] == "everysec"
    await client.xadd("s", {"k": "v"})
    await client.aclose()
    await server.stop()
    assert server.process is not None and server.process.returncode == 0
    files = [p.name for p in (tmp_path / "redis").rglob("*")]
    assert any(name.startswith("appendonly") for name in files), files
    # Restarted on the same dir, the data is still there (AOF replay).
    again = EmbeddedRedis(tmp_path)
    client = aioredis.from_url(await again.start())
    assert await client.xlen("s") == 1
    await client.aclose()
    await again.stop()


async def test_embedded_redis_is_restarted_when_it_dies(tmp_path: Path) -> None:
    """The supervisor restarts a killed embedded server."""
    server = EmbeddedRedis(tmp_path)
    await server.start()
    stop = asyncio.Event()
    task = asyncio.create_task(server.supervise(stop, check_every=0.05))
    assert server.process is not None
    server.process.kill()
    for _ in range(200):
        if server.restarts:
            break
        await asyncio.sleep(0.05)
    stop.set()
    await task
    assert server.restarts == 1 and server.running()
    await server.stop()


async def test_second_process_shares_running_embedded_redis(tmp_path: Path) -> None:
    """open_redis on a data dir whose server is alive connects to it instead of starting another."""
    settings = parse_config({"redis": {"data_dir": str(tmp_path)}}, env={})
    started: list[EmbeddedRedis] = []
    async with open_redis(settings.redis, embedded_server=started) as first:
        await first.set("marker", "1")
        shared: list[EmbeddedRedis] = []
        async with open_redis(settings.redis, embedded_server=shared) as second:
            assert await second.get("marker") == b"1"
        assert shared == [] and started[0].running()
    assert not started[0].running()


async def test_metrics_livez_readyz(redis_url: str, keys: Keys, seeds_dir: Path) -> None:
    """/livez answers, /readyz is 200 once groups exist, /metrics exposes the stage counters."""
    settings = make_settings(redis_url, keys, [seeds_dir], metrics={"enabled": True, "port": 0})
    daemon = Daemon(settings, sinks=[CollectingSink()], consumer_prefix="test")
    task = asyncio.create_task(daemon.run())
    try:
        for _ in range(400):
            if daemon.metrics_port and daemon.metrics.items_out.labels("alerter", "corpus")._value.get() >= 5:
                break
            await asyncio.sleep(0.025)
        base = f"http://127.0.0.1:{daemon.metrics_port}"
        async with aiohttp.ClientSession() as http:
            async with http.get(f"{base}/livez") as resp:
                assert resp.status == 200
            async with http.get(f"{base}/readyz") as resp:
                assert resp.status == 200, await resp.text()
            async with http.get(f"{base}/metrics") as resp:
                body = await resp.text()
                assert resp.headers["Content-Type"].startswith("text/plain")
        assert 'warwatch_stage_items_in_total{source="corpus",stage="normalizer"} 5.0' in body
        assert 'warwatch_alerts_total{rule="bakhmut",severity="high"} 5.0' in body
        assert "warwatch_stage_seconds_bucket" in body
        assert 'warwatch_build_info{version="' in body
    finally:
        daemon.stop.set()
        await asyncio.wait_for(task, 30)


async def test_readyz_fails_without_groups(redis_url: str, keys: Keys) -> None:
    """Readiness reports the missing group when the pipeline groups do not exist."""
    settings = make_settings(redis_url, keys, [])
    daemon = Daemon(settings)
    daemon.redis = aioredis.from_url(redis_url)
    ok, reason = await daemon.readiness()
    await daemon.redis.aclose()
    assert not ok and "normalizer" in reason


def test_run_once_cli_prints_json_alerts(redis_url: str, keys: Keys, seeds_dir: Path, tmp_path: Path) -> None:
    """`monitor run --once` ingests, drains, exits 0, and prints one JSON alert per line off a TTY."""
    config = tmp_path / "config.yaml"
    config.write_text(
        json.dumps(
            {
                "redis": {"url": redis_url, "key_prefix": keys.prefix},
                "metrics": {"enabled": False},
                "collectors": {"corpus": {"paths": [str(seeds_dir)]}},
                "rules": [BAKHMUT_RULE],
            }
        )
    )
    result = cli("run", "--once", "--config", str(config))
    assert result.returncode == 0, result.stderr
    alerts = [json.loads(line) for line in result.stdout.splitlines()]
    assert len(alerts) == 5 and {a["rule"] for a in alerts} == {"bakhmut"}
    logs = [json.loads(line) for line in result.stderr.splitlines() if line.startswith("{")]
    assert any(entry["event"] == "corpus ingested" for entry in logs)


def test_sigterm_drains_and_exits(redis_url: str, keys: Keys, tmp_path: Path) -> None:
    """SIGTERM makes `monitor run` stop reading, drain, and exit 0."""
    config = tmp_path / "config.yaml"
    config.write_text(json.dumps({"redis": {"url": redis_url, "key_prefix": keys.prefix}, "metrics": {"port": 0}}))
    env = {k: v for k, v in os.environ.items() if not k.startswith("WARWATCH")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "monitor", "run", "--config", str(config)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    assert proc.stderr is not None
    lines = []
    for line in proc.stderr:
        lines.append(line)
        if "monitor running" in line:
            break
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, "".join(lines) + err
    assert "signal received" in err and "monitor stopped" in err


def test_unreachable_redis_is_one_clear_line(tmp_path: Path) -> None:
    """A Redis that is not there gives exit 1 and one line naming the URL, without a traceback."""
    config = tmp_path / "config.yaml"
    config.write_text(json.dumps({"redis": {"url": "redis://:hunter22@127.0.0.1:1/0", "connect_timeout": 1}}))
    result = cli("status", "--config", str(config))
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert "redis://:***@127.0.0.1:1/0" in result.stderr
    assert "hunter22" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_config_error_stops_run_before_start(tmp_path: Path) -> None:
    """`monitor run` with a bad config exits 2 listing the field, starting nothing."""
    config = tmp_path / "config.yaml"
    config.write_text("redis:\n  url: embedded\n  data_dir: " + str(tmp_path / "d") + "\nrulez: []\n")
    result = cli("run", "--config", str(config))
    assert result.returncode == 2 and "rulez" in result.stderr
    assert not (tmp_path / "d").exists()


def test_match_cli_json_and_stdin() -> None:
    """`monitor match -` reads stdin and `--json` prints a JSON list of alerts."""
    result = subprocess.run(
        [sys.executable, "-m", "monitor", "match", "-", "--json", "--config", str(REPO_ROOT / "config.yaml")],
        input="Russian forces used chemical weapons near Бахмута? Reports from Бахмут.",
        capture_output=True,
        text=True,
        check=False,
        cwd=REPO_ROOT,
    )
    assert result.returncode == 0, result.stderr
    alerts = json.loads(result.stdout)
    # near-bakhmut is the shipped entity rule: the gazetteer places Бахмут within its 20 km.
    assert {a["rule"] for a in alerts} == {"bakhmut", "chemical-weapons", "near-bakhmut"}


def test_status_json_cli(redis_url: str, keys: Keys, tmp_path: Path) -> None:
    """`monitor status --json` prints streams, groups, dead letters and channels as JSON."""
    config = tmp_path / "config.yaml"
    config.write_text(json.dumps({"redis": {"url": redis_url, "key_prefix": keys.prefix}}))
    result = cli("status", "--json", "--config", str(config))
    assert result.returncode == 0, result.stderr
    status = json.loads(result.stdout)
    assert {s["name"] for s in status["streams"]} == {keys.raw, keys.items, keys.alerts, keys.dead}
    assert status["dead_letters"] == 0


def test_logs_redact_secrets() -> None:
    """Secret values, secret-named fields and URL passwords never reach the log output."""
    out = io.StringIO()
    configure_logging(LogSettings(format="json"), secrets=["s3cr3t-api-hash"], stream=out)
    log = structlog.get_logger("test")
    log.warning("connecting with s3cr3t-api-hash", bearer_token="AAAA-token", url="redis://u:pw123@h:6379/0")
    log.warning("header", header="Authorization: Bearer abc.def.ghi")
    text = out.getvalue()
    assert "s3cr3t-api-hash" not in text and "AAAA-token" not in text and "pw123" not in text
    assert "abc.def.ghi" not in text
    first = json.loads(text.splitlines()[0])
    assert first["bearer_token"] == "***" and first["url"] == "redis://u:***@h:6379/0"
    structlog.reset_defaults()  # leave no configuration behind for the tests that follow


def test_redact_url() -> None:
    """Passwords in Redis URLs are masked; URLs without one are unchanged."""
    assert redact_url("redis://user:pw@host:6380/1") == "redis://user:***@host:6380/1"
    assert redact_url("unix:///tmp/r.sock") == "unix:///tmp/r.sock"


def test_ctrl_c_to_process_group_drains_before_embedded_redis_stops(tmp_path: Path, seeds_dir: Path) -> None:
    """Ctrl-C reaches the whole process group; the embedded Redis outlives the drain and stops last."""
    config = tmp_path / "config.yaml"
    config.write_text(
        json.dumps(
            {
                "redis": {"data_dir": str(tmp_path / "data")},
                "metrics": {"port": 0},
                "collectors": {"corpus": {"paths": [str(seeds_dir)]}},
                "rules": [BAKHMUT_RULE],
            }
        )
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("WARWATCH")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "monitor", "run", "--config", str(config)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        start_new_session=True,
    )
    assert proc.stderr is not None
    seen = []
    for line in proc.stderr:
        seen.append(line)
        if "corpus ingested" in line:
            break
    os.killpg(proc.pid, signal.SIGINT)
    out, err = proc.communicate(timeout=30)
    log = "".join(seen) + err
    assert proc.returncode == 0, log
    assert "redis unavailable" not in log
    assert "monitor stopped; stopping embedded redis" in err
    assert not list((tmp_path / "data" / "redis").glob("redis.sock"))  # the server exited and removed it
    assert len(out.splitlines()) == 5  # every alert was delivered before the drain ended


def test_killed_daemon_loses_nothing_and_doubles_nothing(redis_url: str, keys: Keys, tmp_path: Path) -> None:
    """SIGKILL a running daemon mid-stream; a second run reclaims its pending entries: each item and alert once."""
    posts = tmp_path / "posts"
    posts.mkdir()
    with (posts / "feed.jsonl").open("w") as out:
        for n in range(3000):
            text = f"Post {n}: shelling near Bakhmut continues." if n % 3 == 0 else f"Post {n}: quiet night in Sumy."
            out.write(
                json.dumps(
                    {
                        "source": "telegram_web",
                        "channel": "example",
                        "external_id": str(n),
                        "text": text,
                        "collected_at": "2023-05-20T10:00:00Z",
                    }
                )
                + "\n"
            )
    base = {
        "redis": {
            "url": redis_url,
            "key_prefix": keys.prefix,
            "consumer": {"batch_size": 50, "claim_idle_ms": 200, "claim_interval": 0.1},
        },
        "metrics": {"enabled": False},
        "collectors": {"corpus": {"paths": [str(posts)]}},
        "rules": [BAKHMUT_RULE],
    }
    config = tmp_path / "config.yaml"
    config.write_text(json.dumps(base))
    env = {k: v for k, v in os.environ.items() if not k.startswith("WARWATCH")}
    victim = subprocess.Popen(
        [sys.executable, "-m", "monitor", "run", "--config", str(config)],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        env=env,
    )
    assert victim.stdout is not None
    for _ in range(100):  # wait until alerts are flowing, then kill without warning
        if victim.stdout.readline():
            break
    victim.kill()
    victim.wait(10)

    async def counts() -> tuple[int, int, int]:
        client = aioredis.from_url(redis_url)
        try:
            pending = 0
            for stream in (keys.raw, keys.items):
                pending += sum(int(g["pending"]) for g in await client.xinfo_groups(stream))
            return await client.xlen(keys.items), await client.xlen(keys.alerts), pending
        finally:
            await client.aclose()

    items_before, _, pending = asyncio.run(counts())
    assert items_before < 3000 or pending > 0, "the victim finished before it was killed; nothing was tested"
    result = cli("run", "--once", "--config", str(config))
    assert result.returncode == 0, result.stderr

    async def check() -> None:
        client = aioredis.from_url(redis_url)
        try:
            items = [decode_entry(Item, f) for _, f in await client.xrange(keys.items)]
            alerts = [decode_entry(Alert, f) for _, f in await client.xrange(keys.alerts)]
            assert len(items) == len({i.id for i in items}) == 3000
            assert len(alerts) == len({a.item_id for a in alerts}) == 1000
            for stream in (keys.raw, keys.items, keys.alerts):
                assert all(int(g["pending"]) == 0 for g in await client.xinfo_groups(stream))
        finally:
            await client.aclose()

    asyncio.run(check())
