"""config.yaml as typed, validated settings.

Every section has defaults, so a file holding only ``rules:`` is valid. Unknown keys are errors
(``extra="forbid"``). Strings may reference the environment as ``${VAR}`` (an error when unset) or
``${VAR:-default}``. Secrets are ``SecretStr`` so they never print. All problems are collected and
raised together as one ``ConfigError`` naming each field path.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)

from monitor.errors import ConfigError
from monitor.schema import Severity, Source

DEFAULT_CONFIG_FILE = Path("config.yaml")
CONFIG_ENV_VAR = "WARWATCH_CONFIG"

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d|w)?\s*$")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0}


def _parse_duration(value: Any) -> Any:
    """Accept seconds as a number, or a string such as ``500ms``, ``90s``, ``10m``, ``7d``."""
    if isinstance(value, bool):
        raise ValueError("expected a duration such as 30s, 10m or 7d")
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        match = _DURATION.match(value)
        if not match:
            raise ValueError(f"{value!r} is not a duration; use a number of seconds or e.g. 500ms, 30s, 10m, 7d")
        return float(match.group(1)) * _UNIT_SECONDS[match.group(2) or "s"]
    return value


Seconds = Annotated[float, BeforeValidator(_parse_duration), Field(ge=0)]
AutoBool = bool | Literal["auto"]


class Section(BaseModel):
    """Base of every config section: unknown keys are errors, values are re-validated on assignment."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)


# --- redis -----------------------------------------------------------------------------------------


class ConsumerSettings(Section):
    """How every consumer-group worker reads, retries and dead-letters."""

    batch_size: int = Field(200, ge=1, le=10_000)
    block_ms: int = Field(500, ge=1, le=60_000)
    claim_idle_ms: int = Field(60_000, ge=100)
    claim_interval: Seconds = 5.0
    max_deliveries: int = Field(5, ge=1)
    shutdown_grace: Seconds = 10.0


class RetentionSettings(Section):
    """How long stream entries are kept once every group has acknowledged them."""

    max_entries: int = Field(100_000, ge=0)
    max_age: Seconds = 7 * 86400.0
    hard_max_entries: int = Field(2_000_000, ge=1000)
    interval: Seconds = 30.0


class RedisSettings(Section):
    """Where Redis is and how the streams on it are named and kept."""

    url: SecretStr = SecretStr("embedded")
    data_dir: Path = Path("data")
    key_prefix: str = Field("warwatch", pattern=r"^[A-Za-z0-9_.\-{}]+$")
    dedup_ttl: Seconds = 90 * 86400.0
    stage_dedup_ttl: Seconds = 2 * 86400.0
    connect_timeout: Seconds = 5.0
    consumer: ConsumerSettings = Field(default_factory=ConsumerSettings)
    retention: RetentionSettings = Field(default_factory=RetentionSettings)

    @field_validator("url")
    @classmethod
    def _known_scheme(cls, value: SecretStr) -> SecretStr:
        url = value.get_secret_value()
        if url != "embedded" and not url.startswith(("redis://", "rediss://", "unix://")):
            raise ValueError("must be 'embedded' or a redis://, rediss:// or unix:// URL")
        return value

    @property
    def embedded(self) -> bool:
        """True when the daemon runs its own redis-server."""
        return self.url.get_secret_value() == "embedded"


# --- metrics and log -------------------------------------------------------------------------------


class MetricsSettings(Section):
    """The HTTP server for /metrics, /livez and /readyz."""

    enabled: bool = True
    host: str = "127.0.0.1"
    port: int = Field(9108, ge=0, le=65535)
    stats_interval: Seconds = 10.0


class LogSettings(Section):
    """Log level and rendering: console on a TTY and JSON otherwise when ``format: auto``."""

    level: Literal["debug", "info", "warning", "error"] = "info"
    format: Literal["auto", "console", "json"] = "auto"


# --- collectors ------------------------------------------------------------------------------------


class CorpusSettings(Section):
    """Article files on disk, ingested at start-up and by ``monitor ingest``."""

    enabled: bool = True
    paths: list[Path] = Field(default_factory=list)
    max_bytes: int = Field(5 * 1024 * 1024, ge=1)
    max_text_chars: int = Field(200_000, ge=100)


class TelegramSettings(Section):
    """Live Telegram collection through Telethon (implemented in a later release)."""

    enabled: AutoBool = "auto"
    api_id: int | None = None
    api_hash: SecretStr | None = None
    session: Path = Path("data/telegram.session")
    channels: list[str] = Field(default_factory=list)
    # Flood waits up to this long are slept through; longer ones pause only that channel.
    flood_wait_cap: Seconds = 300.0
    # Period of the catch-up pass that fills gaps live updates missed.
    reconcile_interval: Seconds = 300.0
    # Messages fetched per channel on the very first run (no checkpoint yet).
    initial_history: int = Field(50, ge=0)

    @field_validator("api_id", "api_hash", mode="before")
    @classmethod
    def _blank_is_none(cls, value: Any) -> Any:
        return None if value == "" else value


class TelegramWebSettings(Section):
    """The credential-free t.me/s web preview (implemented in a later release)."""

    enabled: AutoBool = True
    base_url: str = "https://t.me"
    channels: list[str] = Field(default_factory=list)
    interval: Seconds = 120.0
    # Random extra delay, as a share of the interval, so channels are not polled in lockstep.
    jitter: float = Field(0.1, ge=0, le=1)
    # Pages (about 20 posts each) read back on the first run, when there is no checkpoint.
    first_run_pages: int = Field(3, ge=1, le=100)
    # Pages read back at most after downtime, to reach the checkpoint.
    max_catchup_pages: int = Field(50, ge=1)
    timeout: Seconds = 20.0


class XSettings(Section):
    """X API v2: the filtered stream, or polling of recent search and user timelines."""

    enabled: AutoBool = "auto"
    bearer_token: SecretStr | None = None
    base_url: str = "https://api.x.com"
    mode: Literal["stream", "poll"] = "stream"
    # Every post from these accounts (stream rules "from:a OR from:b ..."; polling reads their timelines).
    accounts: list[str] = Field(default_factory=list)
    # Search queries / stream rules in X's rule syntax, e.g. "Bakhmut lang:en".
    queries: list[str] = Field(default_factory=list)
    # Leave retweets out (adds -is:retweet to every rule).
    include_retweets: bool = False
    # Access-tier limits, checked before rules are sent.
    max_rules: int = Field(5, ge=1)
    max_rule_length: int = Field(512, ge=10)
    # Polling period (the rate-limit headers may stretch it).
    poll_interval: Seconds = 60.0
    # A stream silent this long (no data, no keep-alive) is treated as dead and reconnected.
    stall_timeout: Seconds = 20.0
    timeout: Seconds = 30.0

    @field_validator("bearer_token", mode="before")
    @classmethod
    def _blank_is_none(cls, value: Any) -> Any:
        return None if value == "" else value


class FeedsSettings(Section):
    """RSS/Atom feeds, optionally with the full article text of each entry."""

    enabled: AutoBool = True
    urls: list[str] = Field(default_factory=list)
    interval: Seconds = 600.0
    jitter: float = Field(0.1, ge=0, le=1)
    fetch_full_text: bool = False
    timeout: Seconds = 30.0
    # At most this many requests at once to one host.
    per_host_concurrency: int = Field(2, ge=1)
    # A feed with no new entry for longer than this is reported stale.
    stale_after: Seconds = 2 * 86400.0


class CollectorsSettings(Section):
    """One entry per source; each can be switched off."""

    corpus: CorpusSettings = Field(default_factory=CorpusSettings)
    telegram: TelegramSettings = Field(default_factory=TelegramSettings)
    telegram_web: TelegramWebSettings = Field(default_factory=TelegramWebSettings)
    x: XSettings = Field(default_factory=XSettings)
    feeds: FeedsSettings = Field(default_factory=FeedsSettings)


# --- normalizer, rules, notify ---------------------------------------------------------------------


class NormalizerSettings(Section):
    """RawItem to Item: cleaning, boilerplate removal and language ID."""

    strip_boilerplate: bool = True
    lang_detect_chars: int = Field(2000, ge=50)
    max_text_chars: int = Field(200_000, ge=100)
    # Entities: places (gazetteer with coordinates), units, people and claimed quantities.
    enrich: bool = True
    # Story clusters: near-duplicates across sources and languages within cluster_window share a
    # cluster_id (the index lives in Redis, so several normalizers agree).
    cluster: bool = True
    cluster_window: Seconds = 48 * 3600.0


_TERM_HAS_WORD = re.compile(r"\w")


class WithinKm(Section):
    """Any place named in the item within ``km`` of the place ``of`` (a gazetteer name or id)."""

    of: str = Field(min_length=1)
    km: float = Field(gt=0, le=2000)


class Rule(Section):
    """A keyword rule: ``any`` (one must match), ``all`` (each must), ``none`` (none may)."""

    name: str = Field(min_length=1, max_length=100, pattern=r"^[\w.\-:]+$")
    any: list[str] = Field(default_factory=list)
    all: list[str] = Field(default_factory=list)
    none: list[str] = Field(default_factory=list)
    sources: list[Source] = Field(default_factory=list)
    channels: list[str] = Field(default_factory=list)
    # Item languages (ISO 639-1, as the normalizer detects them: en, uk, ru, de, ...); empty = every one.
    langs: list[Annotated[str, Field(pattern=r"^[a-z]{2,3}$")]] = Field(default_factory=list)
    severity: Severity = "medium"
    # match: every matching item alerts. frequency: at least num_events matching items within
    # timeframe (per group_by key). spike: the last timeframe against the one before it.
    # flatline: a key that matched before has had no matching item for timeframe (a dead channel).
    # first_seen: the first time a term appears (per group_by key).
    type: Literal["match", "frequency", "spike", "flatline", "first_seen"] = "match"
    num_events: int = Field(5, ge=1)
    # spike: matching items in the last timeframe >= spike_ratio x those in the timeframe before it
    # (and >= num_events).
    spike_ratio: float = Field(3.0, gt=1.0)
    timeframe: Seconds = 3600.0
    group_by: Literal["none", "source", "channel"] = "none"
    # Cooldown after an alert, per rule and group key (0 = none).
    realert: Seconds = 0.0
    # Digest: hold this rule's alerts and send them as one message per period (0 = send each at once).
    aggregate: Seconds = 0.0
    # Entity conditions (each, when given, must hold as well as the terms): a place (gazetteer name
    # or id) named in the item, a unit id ("3-assault-brigade"), a person id, or any place within
    # `km` of a place. A rule may use them without any terms.
    places: list[str] = Field(default_factory=list)
    units: list[str] = Field(default_factory=list)
    people: list[str] = Field(default_factory=list)
    within_km: WithinKm | None = None
    # item: one alert per matching item; cluster: one per story cluster (reposts of the same story
    # across channels and sources page once).
    per: Literal["item", "cluster"] = "item"

    @field_validator("any", "all", "none")
    @classmethod
    def _terms_have_words(cls, terms: list[str]) -> list[str]:
        for term in terms:
            if isinstance(term, str) and term.startswith("re:"):
                try:
                    compiled = re.compile(term[3:], re.IGNORECASE)
                except re.error as exc:
                    raise ValueError(f"term {term!r} is not a valid regular expression: {exc}") from None
                if compiled.search(""):
                    raise ValueError(f"term {term!r} matches empty text; it would fire on every item")
                continue
            if not isinstance(term, str) or not _TERM_HAS_WORD.search(term):
                raise ValueError(f"term {term!r} has no letters or digits to match")
        return terms

    @model_validator(mode="after")
    def _needs_positive_terms(self) -> Rule:
        if not (self.any or self.all or self.places or self.units or self.people or self.within_km):
            raise ValueError("a rule needs a term in 'any' or 'all', or an entity condition (places, units, ...)")
        return self

    @property
    def has_entity_conditions(self) -> bool:
        return bool(self.places or self.units or self.people or self.within_km)


class ConsoleSinkSettings(Section):
    """Alerts printed to stdout: a rich line on a TTY, JSON lines otherwise (``format: auto``)."""

    enabled: bool = True
    format: Literal["auto", "rich", "json"] = "auto"


_SINK_NAME = r"^[A-Za-z0-9_.\-]+$"


class SinkSettings(Section):
    """One Apprise destination (Telegram bot, Slack, Discord, Matrix, email, ntfy, Signal, JSON webhook...)."""

    name: str = Field(min_length=1, max_length=64, pattern=_SINK_NAME)
    # The Apprise URL, e.g. tgram://BOT_TOKEN/CHAT_ID, slack://..., mailto://..., json://host/path.
    # It holds credentials: write it as ${ENV_VAR}. It never appears in logs or metrics.
    url: SecretStr
    # Which body: short (chat apps) or full (email, webhooks); auto picks by the URL's scheme.
    template: Literal["auto", "short", "full"] = "auto"
    # For tgram:// only: the Bot API server (a self-hosted telegram-bot-api, or a test server).
    api_url: str | None = Field(None, pattern=r"^https?://[^\s]+$")
    # At most rate_limit messages per rate_window; a burst beyond that is folded into one digest.
    rate_limit: int = Field(20, ge=1)
    rate_window: Seconds = 60.0
    # The most alerts one digest message lists.
    digest_max: int = Field(50, ge=2, le=1000)
    # Deliveries to this sink in flight at once (Apprise sends from a thread pool).
    concurrency: int = Field(4, ge=1, le=64)
    # Attempts before the alert goes to the dead stream for this sink; the wait doubles from
    # backoff up to backoff_max between attempts.
    max_attempts: int = Field(6, ge=1, le=100)
    backoff: Seconds = 5.0
    backoff_max: Seconds = 900.0
    # One delivery attempt gives up after this long.
    timeout: Seconds = 30.0

    @field_validator("url")
    @classmethod
    def _apprise_url(cls, url: SecretStr) -> SecretStr:
        from monitor.notify.apprise_sink import check_url  # noqa: PLC0415 - imports apprise only when sinks exist

        problem = check_url(url.get_secret_value())
        if problem:
            raise ValueError(problem)
        return url


class RouteSettings(Section):
    """Alerts of these rules (empty = every rule) at or above min_severity go to these sinks."""

    rules: list[str] = Field(default_factory=list)
    min_severity: Severity = "info"
    sinks: list[str] = Field(min_length=1)


class TemplateSettings(Section):
    """Jinja2 templates for notification bodies; unset = the built-in ones (see README)."""

    # Files (relative to config.yaml) holding a template; the title is an inline template.
    short: Path | None = None
    full: Path | None = None
    digest_short: Path | None = None
    digest_full: Path | None = None
    title: str | None = None


class NotifySettings(Section):
    """Where alerts are delivered."""

    console: ConsoleSinkSettings = Field(default_factory=ConsoleSinkSettings)
    sinks: list[SinkSettings] = Field(default_factory=list)
    # Every route whose rules and severity match adds its sinks. An alert that no route matches goes
    # to default_sinks (unset = every sink).
    routes: list[RouteSettings] = Field(default_factory=list)
    default_sinks: list[str] | None = None
    templates: TemplateSettings = Field(default_factory=TemplateSettings)
    # How long "delivered to this sink" is remembered: a replay or `dead retry` of an alert within it
    # never re-sends to a sink that already has it.
    delivered_ttl: Seconds = 7 * 86400.0

    @model_validator(mode="after")
    def _known_sinks(self) -> NotifySettings:
        names = [sink.name for sink in self.sinks]
        repeated = sorted({name for name in names if names.count(name) > 1})
        problems = [f"sink name {name!r} is used more than once" for name in repeated]
        known = set(names)

        def unknown(name: str) -> str:
            if "://" in name:  # a sink URL pasted where its name belongs: never echo it (credentials)
                return f"expected a sink name, not a URL (sinks: {sorted(known)})"
            return f"no sink is named {name!r} (sinks: {sorted(known)})"

        for index, route in enumerate(self.routes):
            problems += [f"routes[{index}].sinks: {unknown(name)}" for name in route.sinks if name not in known]
        problems += [f"default_sinks: {unknown(name)}" for name in self.default_sinks or [] if name not in known]
        if problems:
            raise ValueError("; ".join(problems))
        return self


class ArchiveSettings(Section):
    """Every item in daily gzip JSONL files plus a SQLite FTS5 index (``monitor search``/``export``)."""

    enabled: bool = True
    # Unset: <redis.data_dir>/archive. Relative paths are relative to the config file.
    dir: Path | None = None
    # fsync the files and the index before acknowledging a batch (off: a power cut can lose batches).
    fsync: bool = True
    compress_level: int = Field(6, ge=1, le=9)


class Settings(Section):
    """The whole config.yaml."""

    redis: RedisSettings = Field(default_factory=RedisSettings)
    metrics: MetricsSettings = Field(default_factory=MetricsSettings)
    log: LogSettings = Field(default_factory=LogSettings)
    collectors: CollectorsSettings = Field(default_factory=CollectorsSettings)
    normalizer: NormalizerSettings = Field(default_factory=NormalizerSettings)
    rules: list[Rule] = Field(default_factory=list)
    notify: NotifySettings = Field(default_factory=NotifySettings)
    archive: ArchiveSettings = Field(default_factory=ArchiveSettings)

    # Where the config came from; relative paths in it were resolved against its folder.
    source_path: Path | None = Field(default=None, exclude=True)
    # The rule files (``rules/*.yaml`` beside the config) whose rules were added to ``rules``.
    rule_paths: list[Path] = Field(default_factory=list, exclude=True)

    @field_validator("rules")
    @classmethod
    def _unique_rule_names(cls, rules: list[Rule]) -> list[Rule]:
        seen: set[str] = set()
        for rule in rules:
            if rule.name in seen:
                raise ValueError(f"rule name {rule.name!r} is used more than once")
            seen.add(rule.name)
        return rules


# --- loading ---------------------------------------------------------------------------------------

_ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


def _field_path(loc: tuple[Any, ...] | list[Any]) -> str:
    """``('rules', 0, 'any')`` -> ``rules[0].any``."""
    path = ""
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
        else:
            path += ("." if path else "") + str(part)
    return path or "(top level)"


def _interpolate(node: Any, loc: list[Any], env: dict[str, str], problems: list[tuple[str, str]]) -> Any:
    """Replace ``${VAR}`` and ``${VAR:-default}`` in every string, recording unset variables."""
    if isinstance(node, dict):
        return {key: _interpolate(value, [*loc, key], env, problems) for key, value in node.items()}
    if isinstance(node, list):
        return [_interpolate(value, [*loc, index], env, problems) for index, value in enumerate(node)]
    if isinstance(node, str) and "${" in node:

        def substitute(match: re.Match[str]) -> str:
            name, default = match.group(1), match.group(2)
            if default is not None:  # as in the shell, ${VAR:-default} also replaces an empty VAR
                return env.get(name) or default
            if name in env:
                return env[name]
            problems.append((_field_path(loc), f"environment variable {name} is not set"))
            return ""

        return _ENV_REF.sub(substitute, node)
    return node


def _resolve_paths(settings: Settings, base: Path) -> None:
    """Make relative paths in the config relative to the folder the config file is in."""

    def resolve(path: Path) -> Path:
        return path if path.is_absolute() else base / path

    settings.redis.data_dir = resolve(settings.redis.data_dir)
    archive = settings.archive
    archive.dir = resolve(archive.dir) if archive.dir else settings.redis.data_dir / "archive"
    settings.collectors.corpus.paths = [resolve(p) for p in settings.collectors.corpus.paths]
    settings.collectors.telegram.session = resolve(settings.collectors.telegram.session)
    templates = settings.notify.templates
    for name in ("short", "full", "digest_short", "digest_full"):
        path = getattr(templates, name)
        if path is not None:
            setattr(templates, name, resolve(path))


def _notify_problems(settings: Settings) -> list[tuple[str, str]]:
    """Cross-checks the models cannot do alone: routes name existing rules, templates load and render."""
    problems: list[tuple[str, str]] = []
    rules = {rule.name for rule in settings.rules}
    for index, route in enumerate(settings.notify.routes):
        for name in route.rules:
            if name not in rules:
                problems.append((f"notify.routes[{index}].rules", f"no rule is named {name!r}"))
    geo_rules = [rule for rule in settings.rules if rule.places or rule.within_km]
    if geo_rules:
        from monitor.alerting.entities import EntityConditions  # noqa: PLC0415 - loads the gazetteer

        for rule in geo_rules:
            try:
                EntityConditions.build(rule)
            except ConfigError as exc:
                problems += exc.problems
    if settings.notify.sinks or settings.notify.templates != TemplateSettings():
        from monitor.notify.templates import template_problems  # noqa: PLC0415 - jinja2 only when needed

        problems += [(f"notify.templates.{where}", message) for where, message in template_problems(settings.notify)]
    return problems


def parse_config(
    data: Any,
    *,
    source: str = "config",
    env: dict[str, str] | None = None,
    base_dir: Path | None = None,
    cross_check: bool = True,
) -> Settings:
    """Validate an already-loaded YAML document; raise ConfigError listing every problem.

    ``cross_check=False`` leaves out the checks that need the final rule list (rule files come later).
    """
    problems: list[tuple[str, str]] = []
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError([("(top level)", f"expected a mapping of sections, got {type(data).__name__}")], source)
    # A section written with no value (``rules:``) means "defaults".
    data = {key: value for key, value in data.items() if value is not None}
    data = _interpolate(data, [], dict(os.environ) if env is None else env, problems)
    settings: Settings | None = None
    try:
        settings = Settings.model_validate(data)
    except ValidationError as exc:
        for error in exc.errors():
            message = error["msg"]
            if error["type"] == "extra_forbidden":
                message = "unknown key"
            elif message.startswith("Value error, "):
                message = message[len("Value error, ") :]
            problems.append((_field_path(error["loc"]), message))
    if problems or settings is None:
        raise ConfigError(problems, source)
    if base_dir is not None:
        _resolve_paths(settings, base_dir)
    if cross_check and (problems := _notify_problems(settings)):
        raise ConfigError(problems, source)
    return settings


def config_path(path: Path | str | None) -> Path | None:
    """The config file to use: the argument, then $WARWATCH_CONFIG, then ./config.yaml if present."""
    if path is not None:
        return Path(path)
    if os.environ.get(CONFIG_ENV_VAR):
        return Path(os.environ[CONFIG_ENV_VAR])
    return DEFAULT_CONFIG_FILE if DEFAULT_CONFIG_FILE.exists() else None


RULES_DIR = "rules"


def _read_yaml(path: Path) -> Any:
    """Parse one YAML file; a ConfigError names the file and, for syntax errors, the line."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError([("(file)", f"config file {path} does not exist")], str(path)) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError([("(file)", f"cannot read {path}: {exc}")], str(path)) from None
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        where = ""
        mark = getattr(exc, "problem_mark", None)
        if mark is not None:
            where = f"line {mark.line + 1}, column {mark.column + 1}: "
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError([("(yaml)", f"{where}{problem}")], str(path)) from None


def rule_files(base_dir: Path) -> list[Path]:
    """The ``*.yaml``/``*.yml`` files in ``<base_dir>/rules`` (recursively, hidden ones skipped), sorted."""
    folder = base_dir / RULES_DIR
    if not folder.is_dir():
        return []
    found = [p for p in folder.rglob("*") if p.suffix in (".yaml", ".yml") and p.is_file()]
    return sorted(p for p in found if not any(part.startswith(".") for part in p.relative_to(folder).parts))


def _load_rule_files(
    files: list[Path], base_dir: Path, env: dict[str, str]
) -> tuple[list[Rule], list[tuple[str, str]], list[str]]:
    """Rules from rule files, with problems as ``("<file>: rules[i].field", message)``."""
    rules: list[Rule] = []
    problems: list[tuple[str, str]] = []
    origins: list[str] = []
    for path in files:
        label = str(path.relative_to(base_dir))
        try:
            data = _read_yaml(path)
        except ConfigError as exc:
            problems.extend((f"{label}: {where}", message) for where, message in exc.problems)
            continue
        if isinstance(data, dict) and set(data) <= {"rules"}:
            data = data.get("rules")
        if data is None:
            continue
        if not isinstance(data, list):
            problems.append((label, "expected a list of rules (or a mapping with a 'rules' list)"))
            continue
        for index, entry in enumerate(data):
            entry_problems: list[tuple[str, str]] = []
            entry = _interpolate(entry, ["rules", index], env, entry_problems)
            problems.extend((f"{label}: {where}", message) for where, message in entry_problems)
            try:
                rules.append(Rule.model_validate(entry))
                origins.append(f"{label}: rules[{index}]")
            except ValidationError as exc:
                for error in exc.errors():
                    message = error["msg"].removeprefix("Value error, ")
                    if error["type"] == "extra_forbidden":
                        message = "unknown key"
                    where = _field_path(("rules", index, *error["loc"]))
                    problems.append((f"{label}: {where}", message))
    return rules, problems, origins


def load_config(path: Path | str | None = None, *, env: dict[str, str] | None = None) -> Settings:
    """Read and validate config.yaml (or defaults when there is none) plus the rule files beside it.

    Rules come from the config's ``rules`` list and from every YAML file in the ``rules/`` folder next
    to the config file. Raises ConfigError listing every problem, each with its file and field path.
    """
    chosen = config_path(path)
    environment = dict(os.environ) if env is None else env
    if chosen is None:
        settings = parse_config({}, source="(defaults)", env=environment, base_dir=Path.cwd(), cross_check=False)
        base_dir = Path.cwd()
        source = "(defaults)"
    else:
        data = _read_yaml(chosen)
        base_dir = chosen.resolve().parent
        source = str(chosen)
        settings = parse_config(data, source=source, env=environment, base_dir=base_dir, cross_check=False)
        settings.source_path = chosen.resolve()
    files = rule_files(base_dir)
    if files:
        extra, problems, origins = _load_rule_files(files, base_dir, environment)
        defined = {rule.name: "config rules" for rule in settings.rules}
        for rule, origin in zip(extra, origins, strict=True):
            if rule.name in defined:
                problems.append((f"{origin}.name", f"rule name {rule.name!r} is also defined in {defined[rule.name]}"))
            defined.setdefault(rule.name, origin)
        if problems:
            raise ConfigError(problems, source)
        settings.rules = [*settings.rules, *extra]
        settings.rule_paths = files
    if problems := _notify_problems(settings):
        raise ConfigError(problems, source)
    return settings


def secret_values(settings: Settings) -> list[str]:
    """Every secret string in the config, so the log redactor can scrub them from any message."""
    values: list[str] = []
    candidates: list[SecretStr | None] = [
        settings.collectors.telegram.api_hash,
        settings.collectors.x.bearer_token,
    ]
    url = settings.redis.url.get_secret_value()
    if "@" in url:  # credentials inside a redis URL
        candidates.append(settings.redis.url)
    for secret in candidates:
        if secret is not None and len(secret.get_secret_value()) >= 4:
            values.append(secret.get_secret_value())
    if settings.notify.sinks:
        from monitor.notify.apprise_sink import url_secrets  # noqa: PLC0415 - only when sinks exist

        for sink in settings.notify.sinks:
            values += url_secrets(sink.url.get_secret_value())
    return values
