"""Rules from config.yaml and a rules/ folder: validation, and live reload on SIGHUP or a file change."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from monitor.bus.keys import Keys
from monitor.bus.publish import Publisher
from monitor.config import load_config
from monitor.daemon import Daemon
from monitor.errors import ConfigError
from monitor.schema import Alert, RawItem, decode_entry, utcnow
from tests.test_pipeline import CollectingSink


def write_config(tmp_path: Path, redis_url: str, keys: Keys) -> Path:
    config = tmp_path / "config.yaml"
    config.write_text(
        json.dumps(
            {
                "redis": {"url": redis_url, "key_prefix": keys.prefix, "consumer": {"block_ms": 50}},
                "metrics": {"enabled": False},
                "rules": [{"name": "bakhmut", "any": ["Bakhmut"], "severity": "high"}],
            }
        )
    )
    return config


def test_rules_folder_is_merged_and_validated(tmp_path: Path) -> None:
    """Rule files beside the config add rules; their errors name the file and field."""
    (tmp_path / "config.yaml").write_text("rules:\n  - name: bakhmut\n    any: [Bakhmut]\n")
    folder = tmp_path / "rules"
    (folder / "units").mkdir(parents=True)
    (folder / "places.yaml").write_text("- name: avdiivka\n  any: [Avdiivka]\n")
    (folder / "units" / "brigades.yml").write_text("rules:\n  - name: third\n    any: [3rd Assault Brigade]\n")
    (folder / ".hidden.yaml").write_text("- name: ignored\n  bogus: 1\n")
    settings = load_config(tmp_path / "config.yaml", env={})
    assert [r.name for r in settings.rules] == ["bakhmut", "avdiivka", "third"]
    assert [p.name for p in settings.rule_paths] == ["places.yaml", "brigades.yml"]

    (folder / "bad.yaml").write_text(
        "- name: broken\n  any: []\n- name: bakhmut\n  any: [x]\n- name: loud\n  any: [y]\n  severity: urgent\n"
    )
    with pytest.raises(ConfigError) as info:
        load_config(tmp_path / "config.yaml", env={})
    found = dict(info.value.problems)
    assert "needs a term in 'any' or 'all'" in found["rules/bad.yaml: rules[0]"]
    assert "also defined in config rules" in found["rules/bad.yaml: rules[1].name"]
    assert "rules/bad.yaml: rules[2].severity" in found


def test_check_config_reports_rule_file_errors(tmp_path: Path) -> None:
    """`monitor check-config` exits 2 naming the rule file and field."""
    (tmp_path / "config.yaml").write_text("rules:\n")
    (tmp_path / "rules").mkdir()
    (tmp_path / "rules" / "x.yaml").write_text("- name: a\n  any: [ok]\n  colour: red\n")
    result = subprocess.run(
        [sys.executable, "-m", "monitor", "check-config", "--config", str(tmp_path / "config.yaml")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 2
    assert "rules/x.yaml: rules[0].colour" in result.stderr


async def publish(client: aioredis.Redis, keys: Keys, n: int, text: str) -> None:
    raw = RawItem(source="telegram_web", channel="c", external_id=str(n), text=text, collected_at=utcnow())
    await Publisher(client, keys, 3600).publish_raw([raw])


async def wait_for(predicate, timeout: float = 20.0) -> None:  # type: ignore[no-untyped-def]
    deadline = asyncio.get_running_loop().time() + timeout
    while not await predicate():
        assert asyncio.get_running_loop().time() < deadline, "condition not met in time"
        await asyncio.sleep(0.05)


async def test_rules_reload_on_file_change_and_sighup(
    redis_url: str, redis_client: aioredis.Redis, keys: Keys, tmp_path: Path
) -> None:
    """A new rule file takes effect without a restart; an invalid set is rejected and the old rules stay."""
    config = write_config(tmp_path, redis_url, keys)
    daemon = Daemon(load_config(config, env={}), sinks=[CollectingSink()], consumer_prefix="test")
    daemon.rules_poll_interval = 0.05
    task = asyncio.create_task(daemon.run())
    try:
        await asyncio.wait_for(daemon.ready.wait(), 20)

        async def rules_of_alerts() -> list[str]:
            return [decode_entry(Alert, f).rule for _, f in await redis_client.xrange(keys.alerts)]

        await publish(redis_client, keys, 1, "Wagner units left Bakhmut.")

        async def one_alert() -> bool:
            return await rules_of_alerts() == ["bakhmut"]

        await wait_for(one_alert)

        (tmp_path / "rules").mkdir()
        (tmp_path / "rules" / "wagner.yaml").write_text("- name: wagner\n  any: [Wagner]\n")

        async def reloaded() -> bool:
            return daemon.metrics.rules_reloads.labels("ok")._value.get() >= 1

        await wait_for(reloaded)
        await publish(redis_client, keys, 2, "Wagner units regroup.")

        async def wagner_alert() -> bool:
            return (await rules_of_alerts()).count("wagner") == 1

        await wait_for(wagner_alert)

        (tmp_path / "rules" / "broken.yaml").write_text("- name: broken\n  all: []\n")

        async def rejected() -> bool:
            return daemon.metrics.rules_reloads.labels("failed")._value.get() >= 1

        await wait_for(rejected)
        assert daemon.metrics.rules_reload_success._value.get() == 0
        await publish(redis_client, keys, 3, "Wagner again.")

        async def still_active() -> bool:
            return (await rules_of_alerts()).count("wagner") == 2

        await wait_for(still_active)

        (tmp_path / "rules" / "broken.yaml").unlink()
        (tmp_path / "rules" / "wagner.yaml").write_text("- name: wagner\n  any: [Wagner]\n  severity: critical\n")
        before = daemon.metrics.rules_reloads.labels("ok")._value.get()
        daemon.install_signal_handlers()
        os.kill(os.getpid(), signal.SIGHUP)

        async def hup_reload() -> bool:
            return daemon.metrics.rules_reloads.labels("ok")._value.get() > before

        await wait_for(hup_reload)
        assert daemon.metrics.rules_reload_success._value.get() == 1
        assert [r.severity for r in daemon.settings.rules if r.name == "wagner"] == ["critical"]
    finally:
        daemon.stop.set()
        await asyncio.wait_for(task, 30)
