"""Config loading: defaults, ${ENV} interpolation, and errors that name their field path."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from monitor.config import load_config, parse_config
from monitor.errors import ConfigError
from tests.conftest import REPO_ROOT


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def problems(tmp_path: Path, text: str, env: dict[str, str] | None = None) -> dict[str, str]:
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, text), env=env or {})
    return dict(info.value.problems)


def test_rules_only_file_is_valid(tmp_path: Path) -> None:
    """A file holding only `rules:` loads with every default."""
    settings = load_config(write(tmp_path, "rules:\n"), env={})
    assert settings.rules == []
    assert settings.redis.embedded and settings.redis.key_prefix == "warwatch"
    assert settings.redis.consumer.max_deliveries == 5


def test_shipped_config_is_valid() -> None:
    """The repository's config.yaml validates with an empty environment."""
    settings = load_config(REPO_ROOT / "config.yaml", env={})
    assert any(rule.name == "bakhmut" for rule in settings.rules)
    assert settings.collectors.corpus.paths == [REPO_ROOT / "corpus"]
    assert settings.collectors.telegram.api_hash is None


def test_unknown_keys_are_rejected_with_path(tmp_path: Path) -> None:
    """Unknown keys at any depth are errors naming the full path."""
    found = problems(tmp_path, "redis:\n  ulr: embedded\nrules:\n  - name: a\n    any: [x]\n    colour: red\n")
    assert found["redis.ulr"] == "unknown key"
    assert found["rules[0].colour"] == "unknown key"


def test_bad_types_are_rejected_with_path(tmp_path: Path) -> None:
    """Wrong types and bad values each report their field path."""
    text = (
        "metrics:\n  port: lots\n"
        "redis:\n  consumer:\n    batch_size: 0\n  retention:\n    max_age: forever\n"
        "rules:\n  - name: a\n    any: [x]\n    severity: urgent\n"
    )
    found = problems(tmp_path, text)
    assert "metrics.port" in found
    assert "redis.consumer.batch_size" in found
    assert "not a duration" in found["redis.retention.max_age"]
    assert "rules[0].severity" in found


def test_missing_env_var_is_reported_with_path(tmp_path: Path) -> None:
    """${VAR} with VAR unset names the variable and the field; ${VAR:-d} falls back."""
    text = "collectors:\n  x:\n    bearer_token: ${X_TOKEN_FOR_TEST}\n  telegram:\n    api_hash: ${TG_HASH:-}\n"
    found = problems(tmp_path, text)
    assert found == {"collectors.x.bearer_token": "environment variable X_TOKEN_FOR_TEST is not set"}
    settings = load_config(write(tmp_path, text), env={"X_TOKEN_FOR_TEST": "sekret-token"})
    assert settings.collectors.x.bearer_token is not None
    assert settings.collectors.x.bearer_token.get_secret_value() == "sekret-token"
    assert "sekret-token" not in repr(settings)


def test_default_replaces_an_empty_variable_as_in_the_shell(tmp_path: Path) -> None:
    """${VAR:-default} uses the default when VAR is set but empty (an empty .env line), like sh does."""
    text = "redis:\n  url: ${REDIS_FOR_TEST:-embedded}\nmetrics:\n  port: ${PORT_FOR_TEST:-9200}\n"
    settings = load_config(write(tmp_path, text), env={"REDIS_FOR_TEST": "", "PORT_FOR_TEST": ""})
    assert settings.redis.url.get_secret_value() == "embedded"
    assert settings.metrics.port == 9200
    settings = load_config(write(tmp_path, text), env={"PORT_FOR_TEST": "9300"})
    assert settings.metrics.port == 9300


def test_all_errors_are_reported_together(tmp_path: Path) -> None:
    """Several problems come back in one ConfigError, not one at a time."""
    found = problems(tmp_path, "log:\n  level: loud\nnormalizer:\n  strip: true\nrules:\n  - name: x\n")
    assert set(found) >= {"log.level", "normalizer.strip", "rules[0]"}


def test_rule_validation(tmp_path: Path) -> None:
    """Rules need positive terms, terms need letters, and names must be unique."""
    text = "rules:\n  - name: a\n    none: [x]\n  - name: b\n    any: ['!!!']\n"
    found = problems(tmp_path, text)
    assert "needs a term in 'any' or 'all'" in found["rules[0]"]
    assert "no letters or digits" in found["rules[1].any"]
    found = problems(tmp_path, "rules:\n  - name: c\n    any: [x]\n  - name: c\n    any: [y]\n")
    assert "more than once" in found["rules"]


def test_invalid_yaml_names_the_line(tmp_path: Path) -> None:
    """A YAML syntax error is a ConfigError with its line number."""
    found = problems(tmp_path, "rules:\n  - name: a\n   any: [x\n")
    assert "line" in found["(yaml)"]


def test_redis_url_scheme_checked() -> None:
    """Only embedded, redis://, rediss:// and unix:// are accepted."""
    with pytest.raises(ConfigError) as info:
        parse_config({"redis": {"url": "http://localhost"}}, env={})
    assert info.value.problems[0][0] == "redis.url"
    assert parse_config({"redis": {"url": "unix:///tmp/r.sock"}}, env={}).redis.embedded is False


def test_durations_parse() -> None:
    """Durations accept plain seconds and unit suffixes."""
    settings = parse_config({"redis": {"dedup_ttl": "2d", "retention": {"interval": "500ms", "max_age": 60}}}, env={})
    assert settings.redis.dedup_ttl == 2 * 86400
    assert settings.redis.retention.interval == 0.5
    assert settings.redis.retention.max_age == 60


def test_check_config_cli_exit_codes(tmp_path: Path) -> None:
    """`monitor check-config` exits 0 on a good file and 2 listing each bad field path."""
    good = subprocess.run(
        [sys.executable, "-m", "monitor", "check-config", "--config", str(REPO_ROOT / "config.yaml")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert good.returncode == 0, good.stderr
    assert "ok" in good.stdout
    bad = write(tmp_path, "redis:\n  bogus: 1\nmetrics:\n  port: -5\n")
    result = subprocess.run(
        [sys.executable, "-m", "monitor", "check-config", "--config", str(bad)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 2
    assert "redis.bogus" in result.stderr and "metrics.port" in result.stderr
    assert "Traceback" not in result.stderr
