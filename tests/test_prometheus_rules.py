"""The Prometheus files in deploy/prometheus: promtool validates them and runs the rules' unit tests.

The promtool tests are skipped, with the reason, when promtool is not installed (`.ci/run` installs
Debian's prometheus package). The checks that only read the YAML always run.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import REPO_ROOT

PROMETHEUS_DIR = REPO_ROOT / "deploy" / "prometheus"
CONFIG = PROMETHEUS_DIR / "prometheus.yml"
ALERTS = PROMETHEUS_DIR / "alerts.yml"
ALERTS_TEST = PROMETHEUS_DIR / "alerts_test.yml"
SILENCE_GROUP = "warwatch-channel-silence"

PROMTOOL = shutil.which("promtool")
needs_promtool = pytest.mark.skipif(
    PROMTOOL is None, reason="promtool not installed (Debian: apt-get install prometheus; .ci/run does it)"
)


def promtool(*args: str, cwd: Path = PROMETHEUS_DIR) -> subprocess.CompletedProcess[str]:
    assert PROMTOOL is not None
    return subprocess.run([PROMTOOL, *args], capture_output=True, text=True, cwd=cwd, timeout=120, check=False)


def load(path: Path) -> Any:
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def alert_rules() -> list[dict[str, Any]]:
    return [rule for group in load(ALERTS)["groups"] for rule in group["rules"] if "alert" in rule]


@needs_promtool
def test_prometheus_config_is_valid() -> None:
    """`promtool check config` accepts prometheus.yml and the rule file it references."""
    result = promtool("check", "config", str(CONFIG))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 rule files found" in result.stdout


@needs_promtool
def test_alert_rules_are_valid() -> None:
    """`promtool check rules` accepts alerts.yml (PromQL parses, templates compile, no duplicate names)."""
    result = promtool("check", "rules", str(ALERTS))
    assert result.returncode == 0, result.stdout + result.stderr


@needs_promtool
def test_alert_rule_unit_tests_pass() -> None:
    """`promtool test rules alerts_test.yml` passes: every alert fires and stays quiet when it should."""
    result = promtool("test", "rules", str(ALERTS_TEST))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_every_alert_has_a_firing_and_a_quiet_test_case() -> None:
    """Each alert in alerts.yml has a promtool case expecting it to fire and one expecting silence."""
    tests = load(ALERTS_TEST)
    assert tests["rule_files"] == ["alerts.yml"]
    firing: set[str] = set()
    quiet: set[str] = set()
    for case in tests["tests"]:
        for check in case.get("alert_rule_test", []):
            (firing if check.get("exp_alerts") else quiet).add(check["alertname"])
    names = {rule["alert"] for rule in alert_rules()}
    assert names, "no alerts found in alerts.yml"
    assert not names - firing, f"alerts without a firing test case: {sorted(names - firing)}"
    assert not names - quiet, f"alerts without a not-firing test case: {sorted(names - quiet)}"
    assert not (firing | quiet) - names, f"test cases for unknown alerts: {sorted((firing | quiet) - names)}"


def test_every_alert_has_severity_and_annotations() -> None:
    """Each alert has a severity label (critical or warning) and summary and description annotations."""
    problems = []
    for rule in alert_rules():
        if rule.get("labels", {}).get("severity") not in ("critical", "warning"):
            problems.append(f"{rule['alert']}: severity label")
        for name in ("summary", "description"):
            if not str(rule.get("annotations", {}).get(name, "")).strip():
                problems.append(f"{rule['alert']}: {name} annotation")
    assert not problems, problems


def test_configs_point_at_the_rules_and_the_warwatch_job() -> None:
    """prometheus.yml loads alerts.yml, scrapes job "warwatch" at monitor:9108 and sends to alertmanager:9093."""
    config = load(CONFIG)
    assert config["rule_files"] == ["alerts.yml"]
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    targets = [t for sc in jobs["warwatch"]["static_configs"] for t in sc["targets"]]
    assert targets == ["monitor:9108"]
    managers = [t for am in config["alerting"]["alertmanagers"] for sc in am["static_configs"] for t in sc["targets"]]
    assert managers == ["alertmanager:9093"]
    selectors = [rule["expr"] for rule in alert_rules() if "up{" in rule["expr"]]
    assert selectors and all('job="warwatch"' in expr for expr in selectors)


OVERRIDE_TEST = """
rule_files: [alerts.yml]
evaluation_interval: 1m
tests:
  - interval: 1m
    input_series:
      - series: 'warwatch_collector_last_item_timestamp_seconds{source="telegram_web", channel="ab3army"}'
        values: "0x1800"
      - series: 'warwatch_collector_last_item_timestamp_seconds{source="telegram_web", channel="nexta_live"}'
        values: "0x1800"
    promql_expr_test:
      - expr: warwatch:channel_silence_threshold_seconds
        eval_time: 1h
        exp_samples:
          - labels: 'warwatch:channel_silence_threshold_seconds{source="telegram_web", channel="ab3army"}'
            value: 21600
          - labels: 'warwatch:channel_silence_threshold_seconds{source="telegram_web", channel="nexta_live"}'
            value: 86400
    alert_rule_test:
      - eval_time: 7h
        alertname: ChannelSilent
        exp_alerts:
          - exp_labels: {severity: warning, source: telegram_web, channel: ab3army}
            exp_annotations:
              summary: telegram_web channel ab3army is silent
              description: >-
                The newest item from telegram_web channel ab3army is 7h 0m 0s old, longer than its silence
                timeout. The channel may have stopped posting, or its collector is failing quietly (check its
                errors on the dashboard).
      - eval_time: 25h
        alertname: ChannelSilent
        exp_alerts:
          - exp_labels: {severity: warning, source: telegram_web, channel: ab3army}
            exp_annotations:
              summary: telegram_web channel ab3army is silent
              description: >-
                The newest item from telegram_web channel ab3army is 1d 1h 0m 0s old, longer than its silence
                timeout. The channel may have stopped posting, or its collector is failing quietly (check its
                errors on the dashboard).
          - exp_labels: {severity: warning, source: telegram_web, channel: nexta_live}
            exp_annotations:
              summary: telegram_web channel nexta_live is silent
              description: >-
                The newest item from telegram_web channel nexta_live is 1d 1h 0m 0s old, longer than its silence
                timeout. The channel may have stopped posting, or its collector is failing quietly (check its
                errors on the dashboard).
"""


@needs_promtool
def test_channel_silence_override_as_documented(tmp_path: Path) -> None:
    """A per-channel override added as alerts.yml's comment says replaces the 6h default for that channel only."""
    rules = load(ALERTS)
    group = next(g for g in rules["groups"] if g["name"] == SILENCE_GROUP)
    # The rule from the comment in alerts.yml, placed first in the group as documented there.
    override = {
        "record": "warwatch:channel_silence_threshold_seconds:override",
        "expr": "vector(86400)",
        "labels": {"source": "telegram_web", "channel": "nexta_live"},
    }
    assert "warwatch:channel_silence_threshold_seconds:override" in ALERTS.read_text(encoding="utf-8")
    group["rules"].insert(0, override)
    (tmp_path / "alerts.yml").write_text(yaml.safe_dump(rules, sort_keys=False, allow_unicode=True))
    (tmp_path / "alerts_test.yml").write_text(OVERRIDE_TEST)
    result = promtool("test", "rules", "alerts_test.yml", cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
