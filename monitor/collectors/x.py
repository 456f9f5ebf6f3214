"""The ``x`` collector: posts from X (Twitter) through API v2, by the filtered stream or by polling.

Army units, officials and reporters post on X first, often minutes before Telegram reposts or the
news sites catch up. This module brings those posts onto the raw stream as RawItems.

Two ways in, chosen by ``collectors.x.mode``:

* ``stream``: the filtered stream ``GET /2/tweets/search/stream``. ``sync_rules`` first makes the
  server-side rules equal to what the config asks for: the accounts packed into as few
  ``from:a OR from:b`` rules as fit, then one rule per query. The stream is newline-delimited JSON on a
  chunked body, with ``\\r\\n`` keep-alives. A connection silent for ``stall_timeout`` counts as dead.
  Reconnects follow X's documented policy (``ReconnectPolicy``): linear for network errors, exponential
  for HTTP errors, a longer exponential for 429 honouring ``x-rate-limit-reset``, and at once after an
  established connection drops. A 401/403 stops the collector with a message naming the problem.
* ``poll``: ``/2/tweets/search/recent`` per query and ``/2/users/:id/tweets`` per account, from a
  ``since_id`` checkpoint, with pagination. Handles are resolved to user ids once and cached in Redis
  (the hash ``users_key(keys)``, i.e. ``{prefix}:x:users``; ``monitor/bus/keys.py`` does not list it
  because this module owns it).

Whichever way a post arrives, its item id is ``x:<author username, lowercased>:<tweet id>``
(``RawItem.channel`` is the author, falling back to the author id). The stream, a search and a
timeline therefore give the same post the same id, and the add-once publisher keeps one copy. The
same holds for the overlap the stream replays after a reconnect.

The bearer token is sent only in the ``Authorization`` header. It is never logged.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections import deque
from collections.abc import Awaitable, Callable, Coroutine, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final, TypeVar
from urllib.parse import quote

import aiohttp
import structlog
from redis.exceptions import RedisError

from monitor.bus.keys import Keys
from monitor.bus.redis import Redis
from monitor.collectors.base import Checkpoints, Emitter
from monitor.config import XSettings
from monitor.errors import MonitorError
from monitor.metrics import Metrics
from monitor.schema import Engagement, Forward, Media, RawItem, bound_raw, utcnow

log = structlog.get_logger(__name__)

SOURCE: Final = "x"
WEB_BASE: Final = "https://x.com"

# --- request shapes --------------------------------------------------------------------------------

TWEET_FIELDS: Final = "created_at,author_id,lang,entities,referenced_tweets,attachments,conversation_id,public_metrics"
EXPANSIONS: Final = "author_id,attachments.media_keys,referenced_tweets.id"
USER_FIELDS: Final = "username,name"
MEDIA_FIELDS: Final = "type,url,preview_image_url,media_key"
FIELD_PARAMS: Final[Mapping[str, str]] = {
    "tweet.fields": TWEET_FIELDS,
    "expansions": EXPANSIONS,
    "user.fields": USER_FIELDS,
    "media.fields": MEDIA_FIELDS,
}

STREAM_PATH: Final = "/2/tweets/search/stream"
RULES_PATH: Final = "/2/tweets/search/stream/rules"
SEARCH_PATH: Final = "/2/tweets/search/recent"
USER_BY_NAME_PATH: Final = "/2/users/by/username/{username}"
USER_TWEETS_PATH: Final = "/2/users/{user_id}/tweets"

# Endpoint labels for the rate-limit gauges (bounded).
ENDPOINT_STREAM: Final = "stream"
ENDPOINT_RULES: Final = "rules"
ENDPOINT_SEARCH: Final = "search_recent"
ENDPOINT_USERS: Final = "users_by_username"
ENDPOINT_TIMELINE: Final = "user_tweets"

# The metrics channel of the stream connection itself (reconnects, backoff, stream errors).
STREAM_CHANNEL: Final = "stream"
ACCOUNTS_TAG: Final = "accounts"
NO_RETWEETS: Final = "-is:retweet"

# --- policy constants ------------------------------------------------------------------------------

# X's reconnect guidance for the filtered stream.
NETWORK_STEP = 0.25  # network errors: +250 ms per consecutive failure ...
NETWORK_CAP = 16.0  # ... up to 16 s
HTTP_START = 5.0  # HTTP errors: 5 s, doubling ...
HTTP_CAP = 320.0  # ... up to 320 s
RATE_LIMIT_START = 60.0  # HTTP 429: 1 min, doubling ...
RATE_LIMIT_CAP = 960.0  # ... up to 16 min (a rate-limit window is 15 min)
# A rate-limit reset further away than this is treated as bogus and capped.
MAX_RESET_WAIT = 3600.0
# A connection up this long counts as healthy even if no post arrived, so its drop retries at once.
STABLE_AFTER = 60.0
# A stream line longer than this is dropped (protects memory against a server that never sends \n).
MAX_LINE_BYTES = 4 * 1024 * 1024
# Posts kept in memory while Redis is unavailable in stream mode (oldest dropped beyond this).
MAX_PENDING = 10_000

# Polling: posts per page, pages per cycle once a checkpoint exists, and on the very first run.
PAGE_SIZE = 100
MAX_PAGES = 10
FIRST_RUN_PAGES = 1


def users_key(keys: Keys) -> str:
    """Hash: lowercased handle -> JSON ``{"id", "username", "name"}`` of the resolved X user."""
    return f"{keys.prefix}:x:users"


# --- errors ----------------------------------------------------------------------------------------


class XUnauthorized(MonitorError):
    """X refused the credentials (401) or the access level (403); retrying cannot help."""


class XRulesError(MonitorError):
    """The stream rules from config exceed the access tier's limits, or X rejected one of them."""


class XApiError(MonitorError):
    """An HTTP status other than success from X (5xx, 429, other 4xx)."""

    def __init__(self, endpoint: str, status: int, detail: str = "", reset_at: float | None = None) -> None:
        self.endpoint = endpoint
        self.status = status
        self.detail = detail
        self.reset_at = reset_at
        super().__init__(f"X {endpoint}: HTTP {status}" + (f": {detail}" if detail else ""))

    @property
    def kind(self) -> str:
        """The bounded error kind for ``collector_errors``."""
        if self.status == 429:
            return "rate_limited"
        return "http_5xx" if self.status >= 500 else "http_4xx"


def credentials_present(settings: XSettings) -> bool:
    """True when a non-empty bearer token is configured."""
    token = settings.bearer_token
    return token is not None and bool(token.get_secret_value().strip())


# --- backoff (pure) --------------------------------------------------------------------------------


def network_backoff(attempt: int) -> float:
    """Delay before retry ``attempt`` (1-based) after a network error: linear, +250 ms each, capped at 16 s."""
    return min(NETWORK_STEP * max(attempt, 1), NETWORK_CAP)


def http_backoff(attempt: int) -> float:
    """Delay before retry ``attempt`` (1-based) after an HTTP error: 5 s doubling, capped at 320 s."""
    return min(HTTP_START * 2.0 ** min(max(attempt, 1) - 1, 30), HTTP_CAP)


def rate_limit_backoff(attempt: int, reset_at: float | None = None, now: float = 0.0) -> float:
    """Delay after a 429: 60 s doubling (capped), or until ``x-rate-limit-reset`` when that is later."""
    delay = min(RATE_LIMIT_START * 2.0 ** min(max(attempt, 1) - 1, 30), RATE_LIMIT_CAP)
    if reset_at is not None:
        delay = max(delay, min(reset_at - now, MAX_RESET_WAIT))
    return delay


class ReconnectPolicy:
    """X's reconnect policy for the filtered stream, as a small state machine with no I/O.

    Each failure kind has its own consecutive-failure count. ``connected`` (an HTTP 200) clears the
    HTTP counts; ``healthy`` (a post arrived, or the connection stayed up long) clears everything. A
    dropped connection is retried at once the first time; a second drop without a post in between
    backs off like a network error, so a server that accepts and hangs up at once is not hammered.
    """

    def __init__(self) -> None:
        self.network_failures = 0
        self.http_failures = 0
        self.rate_limit_failures = 0
        self.immediate_used = False

    def connected(self) -> None:
        self.http_failures = 0
        self.rate_limit_failures = 0

    def healthy(self) -> None:
        self.connected()
        self.network_failures = 0
        self.immediate_used = False

    def after_drop(self) -> float:
        if not self.immediate_used:
            self.immediate_used = True
            return 0.0
        return self.after_network_error()

    def after_network_error(self) -> float:
        self.network_failures += 1
        return network_backoff(self.network_failures)

    def after_http_error(self) -> float:
        self.http_failures += 1
        return http_backoff(self.http_failures)

    def after_rate_limit(self, reset_at: float | None, now: float) -> float:
        self.rate_limit_failures += 1
        return rate_limit_backoff(self.rate_limit_failures, reset_at, now)


# --- rules (pure) ----------------------------------------------------------------------------------


def normalize_account(account: str) -> str:
    """``@NEXTA_TV``, ``x.com/nexta_tv`` or ``nexta_tv`` -> ``nexta_tv``."""
    name = account.strip().rstrip("/")
    if "/" in name:
        name = name.rsplit("/", 1)[-1]
    return name.lstrip("@").lower()


def with_retweet_filter(query: str, include_retweets: bool) -> str:
    """The query with ``-is:retweet`` appended (in parentheses when it has a top-level OR), unless asked not to."""
    query = query.strip()
    if include_retweets or "is:retweet" in query:
        return query
    if " OR " in query:
        query = f"({query})"
    return f"{query} {NO_RETWEETS}"


def _accounts_rule(names: Sequence[str], include_retweets: bool) -> str:
    body = " OR ".join(f"from:{name}" for name in names)
    if include_retweets:
        return body
    return f"({body}) {NO_RETWEETS}" if len(names) > 1 else f"{body} {NO_RETWEETS}"


def build_rules(settings: XSettings) -> list[dict[str, str]]:
    """The stream rules the config asks for, as ``[{"value", "tag"}]``; raises XRulesError beyond the tier limits.

    Accounts are packed greedily, in config order, into as few ``from:a OR from:b ...`` rules as fit
    ``max_rule_length`` (tag ``accounts``). Each query is its own rule, tagged with the query.
    """
    limit = settings.max_rule_length
    rules: list[dict[str, str]] = []
    group: list[str] = []
    for name in dict.fromkeys(n for a in settings.accounts if (n := normalize_account(a))):
        candidate = [*group, name]
        if group and len(_accounts_rule(candidate, settings.include_retweets)) > limit:
            rules.append({"value": _accounts_rule(group, settings.include_retweets), "tag": ACCOUNTS_TAG})
            group = [name]
        else:
            group = candidate
    if group:
        rules.append({"value": _accounts_rule(group, settings.include_retweets), "tag": ACCOUNTS_TAG})
    seen = {rule["value"] for rule in rules}
    for query in settings.queries:
        if not query.strip():
            continue
        value = with_retweet_filter(query, settings.include_retweets)
        if value not in seen:
            seen.add(value)
            rules.append({"value": value, "tag": query.strip()})
    check_rules(rules, settings)
    return rules


def check_rules(rules: Sequence[Mapping[str, str]], settings: XSettings) -> None:
    """Raise XRulesError naming the rule when a rule is too long, or when there are too many rules."""
    for rule in rules:
        if len(rule["value"]) > settings.max_rule_length:
            raise XRulesError(
                f"X stream rule {rule['value']!r} (tag {rule['tag']!r}) is {len(rule['value'])} characters; "
                f"the access tier allows {settings.max_rule_length} (collectors.x.max_rule_length)"
            )
    if len(rules) > settings.max_rules:
        values = ", ".join(repr(rule["value"]) for rule in rules[settings.max_rules :])
        raise XRulesError(
            f"the config needs {len(rules)} X stream rules but the access tier allows {settings.max_rules} "
            f"(collectors.x.max_rules); over the limit: {values}"
        )


# --- mapping (pure) --------------------------------------------------------------------------------


def _parse_time(value: Any) -> datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        when = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return when if when.tzinfo is not None else when.replace(tzinfo=UTC)


def _int(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.isdigit():
        return int(value)
    return None


def _by_key(entries: Any, key: str) -> dict[str, dict[str, Any]]:
    if not isinstance(entries, list):
        return {}
    return {str(e[key]): e for e in entries if isinstance(e, dict) and e.get(key) is not None}


def _references(tweet: Mapping[str, Any]) -> dict[str, str]:
    """``referenced_tweets`` as type -> id (the first of each type)."""
    found: dict[str, str] = {}
    refs = tweet.get("referenced_tweets")
    if isinstance(refs, list):
        for ref in refs:
            if isinstance(ref, dict) and ref.get("type") and ref.get("id") is not None:
                found.setdefault(str(ref["type"]), str(ref["id"]))
    return found


def _rule_tags(matching_rules: Sequence[Any]) -> list[str]:
    tags: list[str] = []
    for rule in matching_rules:
        if isinstance(rule, dict):
            tag = rule.get("tag") or rule.get("id")
            if tag is not None:
                tags.append(str(tag))
        elif isinstance(rule, str):
            tags.append(rule)
    return tags


def tweet_to_raw(
    tweet: Mapping[str, Any],
    includes: Mapping[str, Any] | None,
    *,
    matching_rules: Sequence[Any] | None = None,
    collected_at: datetime | None = None,
) -> RawItem:
    """One v2 tweet object (with the response's ``includes``) -> RawItem.

    The channel is the author's username, lowercased (the author id when the user was not expanded),
    so every path to the same post yields the same item id. A retweet's text is the original's full
    text when the original is in ``includes`` (the retweet's own text is cut at 140 characters).
    """
    includes = includes or {}
    users = _by_key(includes.get("users"), "id")
    tweets = _by_key(includes.get("tweets"), "id")
    media_index = _by_key(includes.get("media"), "media_key")

    tweet_id = str(tweet["id"])
    author_id = str(tweet["author_id"]) if tweet.get("author_id") is not None else None
    user = users.get(author_id) if author_id else None
    username = str(user["username"]) if user and user.get("username") else None
    channel = username.lower() if username else (author_id or "unknown")
    url = f"{WEB_BASE}/{username}/status/{tweet_id}" if username else f"{WEB_BASE}/i/web/status/{tweet_id}"

    refs = _references(tweet)
    text = str(tweet.get("text") or "")
    forwarded: Forward | None = None
    origin_type = "retweeted" if "retweeted" in refs else "quoted" if "quoted" in refs else None
    if origin_type is not None:
        origin_id = refs[origin_type]
        origin = tweets.get(origin_id)
        origin_user = users.get(str(origin.get("author_id"))) if origin else None
        origin_name = origin_user.get("username") if origin_user else None
        forwarded = Forward(
            channel=str(origin_name).lower() if origin_name else None,
            id=origin_id,
            name=str(origin_user["name"]) if origin_user and origin_user.get("name") else None,
            date=_parse_time(origin.get("created_at")) if origin else None,
        )
        if origin_type == "retweeted" and origin and origin.get("text"):
            text = str(origin["text"])

    media: list[Media] = []
    attachments = tweet.get("attachments")
    keys = attachments.get("media_keys") if isinstance(attachments, dict) else None
    for key in keys if isinstance(keys, list) else []:
        entry = media_index.get(str(key))
        if entry is None:
            media.append(Media(type="unknown", id=str(key)))
            continue
        link = entry.get("url") or entry.get("preview_image_url")
        media.append(Media(type=str(entry.get("type") or "unknown"), url=str(link) if link else None, id=str(key)))

    metrics: Engagement | None = None
    counts = tweet.get("public_metrics")
    if isinstance(counts, dict):
        retweets, quotes = _int(counts.get("retweet_count")), _int(counts.get("quote_count"))
        metrics = Engagement(
            views=_int(counts.get("impression_count")),
            forwards=(retweets or 0) + (quotes or 0) if retweets is not None or quotes is not None else None,
            likes=_int(counts.get("like_count")),
            replies=_int(counts.get("reply_count")),
        )

    raw = bound_raw(dict(tweet)) or {}
    if matching_rules is not None:
        raw = {**raw, "matching_rules": _rule_tags(matching_rules)}
    author = (user.get("name") or username) if user else None
    return RawItem(
        source="x",
        channel=channel,
        external_id=tweet_id,
        text=text,
        collected_at=collected_at or utcnow(),
        url=url,
        published_at=_parse_time(tweet.get("created_at")),
        author=str(author) if author else None,
        forwarded_from=forwarded,
        reply_to=refs.get("replied_to"),
        media=media,
        metrics=metrics,
        raw=raw,
    )


def items_from_response(
    body: Mapping[str, Any], *, collected_at: datetime | None = None
) -> tuple[list[RawItem], list[dict[str, Any]]]:
    """A v2 response or stream message -> (items, errors). ``data`` may be one tweet or a list.

    Partial success (``data`` and ``errors`` together) keeps the good tweets; the errors are returned
    for the caller to count. A tweet without an id is skipped.
    """
    when = collected_at or utcnow()
    data = body.get("data")
    tweets = [data] if isinstance(data, dict) else data if isinstance(data, list) else []
    includes = body.get("includes") if isinstance(body.get("includes"), dict) else {}
    rules = body.get("matching_rules")
    matching = rules if isinstance(rules, list) else None
    items: list[RawItem] = []
    for tweet in tweets:
        if not isinstance(tweet, dict) or tweet.get("id") is None:
            log.warning("x tweet without an id skipped")
            continue
        items.append(tweet_to_raw(tweet, includes, matching_rules=matching, collected_at=when))
    errors = body.get("errors")
    return items, [e for e in errors if isinstance(e, dict)] if isinstance(errors, list) else []


def problem_text(body: Any) -> str:
    """A short description of an X error body: RFC 7807 ``title``/``detail``, or each entry of ``errors``."""
    if not isinstance(body, dict):
        return ""
    parts: list[str] = []
    if body.get("title") or body.get("detail"):
        parts.append(": ".join(str(body[k]) for k in ("title", "detail") if body.get(k)))
    errors = body.get("errors")
    if isinstance(errors, list):
        for error in errors[:5]:
            if isinstance(error, dict):
                text = ": ".join(str(error[k]) for k in ("title", "detail", "message") if error.get(k))
                if error.get("value"):
                    text += f" (rule {error['value']!r})"
                parts.append(text)
    return "; ".join(p for p in parts if p)


def _json_object(text: str) -> dict[str, Any]:
    try:
        value = json.loads(text) if text else {}
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def _header_int(headers: Mapping[str, str], name: str) -> int | None:
    value = headers.get(name)
    try:
        return int(value.strip()) if value else None
    except ValueError:
        return None


# --- collecting ------------------------------------------------------------------------------------


@dataclass(slots=True)
class _Connection:
    """One accepted (HTTP 200) stream connection, and how it ended."""

    connected_at: float
    tweets: int = 0
    ended: str = "eof"  # eof | dropped | stall | stream_error
    detail: str = ""


T = TypeVar("T")
Sleep = Callable[[float], Awaitable[Any]]


class XCollector:
    """Reads X through the filtered stream or by polling, and publishes each post once."""

    source = SOURCE

    def __init__(
        self,
        settings: XSettings,
        emitter: Emitter,
        checkpoints: Checkpoints,
        metrics: Metrics,
        keys: Keys,
        redis: Redis,
        *,
        session: aiohttp.ClientSession | None = None,
        sleep: Sleep = asyncio.sleep,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.settings = settings
        self.emitter = emitter
        self.checkpoints = checkpoints
        self.metrics = metrics
        self.keys = keys
        self.redis = redis
        self._session = session
        self._owns_session = session is None
        self._sleep = sleep
        self._clock = clock
        self._base = settings.base_url.rstrip("/")
        # endpoint -> (remaining, reset epoch seconds) from the latest response's headers.
        self._limits: dict[str, tuple[int | None, int | None]] = {}
        self._pending: deque[RawItem] = deque(maxlen=MAX_PENDING)
        self.accounts = list(dict.fromkeys(n for a in settings.accounts if (n := normalize_account(a))))

    # -- public API ---------------------------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        """Stream mode: sync the rules, then stream until ``stop``. Poll mode: ``poll_once`` every interval."""
        if self.settings.mode == "stream":
            if await self._sync_until_done(stop):
                await self.stream(stop)
            return
        while not stop.is_set():
            try:
                await self.poll_once()
            except XUnauthorized as exc:
                self._auth_failed("poll", exc)
                return
            except (RedisError, OSError) as exc:
                self._error("poll", "publish")
                log.warning("x poll cycle failed", error=f"{type(exc).__name__}: {exc}")
            await self._pause(self.next_poll_delay(), stop)

    async def run_once(self) -> None:
        """``monitor run --once``: one polling cycle in poll mode; the stream mode has nothing to do once."""
        if self.settings.mode != "poll":
            log.info("x collector is in stream mode; skipped by --once")
            return
        try:
            await self.poll_once()
        except XUnauthorized as exc:
            self._auth_failed("poll", exc)

    async def aclose(self) -> None:
        """Close the HTTP session if this collector opened it."""
        if self._owns_session and self._session is not None and not self._session.closed:
            await self._session.close()
        self._session = None

    def next_poll_delay(self) -> float:
        """The poll interval, stretched until the reset of any endpoint whose rate-limit window is spent."""
        return max([self.settings.poll_interval, *(self._rate_limit_wait(e) for e in list(self._limits))])

    # -- rules --------------------------------------------------------------------------------------

    async def sync_rules(self) -> None:
        """Make the stream's rules on X equal to the config: delete the others, validate (dry run), add.

        Raises XRulesError (limits, or X rejected a rule, with X's detail), XUnauthorized, XApiError or
        aiohttp/timeout errors.
        """
        wanted = build_rules(self.settings)
        body = await self._request("GET", ENDPOINT_RULES, RULES_PATH)
        current = [r for r in body.get("data") or [] if isinstance(r, dict) and r.get("id") is not None]
        wanted_keys = {(r["value"], r["tag"]) for r in wanted}
        current_keys = {(str(r.get("value")), str(r.get("tag") or "")) for r in current}
        stale = [str(r["id"]) for r in current if (str(r.get("value")), str(r.get("tag") or "")) not in wanted_keys]
        missing = [r for r in wanted if (r["value"], r["tag"]) not in current_keys]
        if stale:
            await self._post_rules({"delete": {"ids": stale}}, "deleting")
            log.info("x stream rules deleted", count=len(stale))
        if missing:
            await self._post_rules({"add": missing}, "validating", dry_run=True)
            await self._post_rules({"add": missing}, "adding")
            log.info("x stream rules added", count=len(missing), tags=[r["tag"] for r in missing])
        log.info("x stream rules in sync", rules=len(wanted), kept=len(wanted) - len(missing), deleted=len(stale))

    async def _post_rules(self, body: Mapping[str, Any], action: str, *, dry_run: bool = False) -> None:
        """POST to the rules endpoint; X's complaints about a rule (in a 2xx or a 400/422) become XRulesError."""
        params = {"dry_run": "true"} if dry_run else None
        try:
            reply = await self._request("POST", ENDPOINT_RULES, RULES_PATH, params=params, body=body)
        except XApiError as exc:
            if exc.status in (400, 422):
                raise XRulesError(f"X rejected the stream rules while {action}: {exc.detail or exc}") from exc
            raise
        self._raise_rule_errors(reply, action)

    @staticmethod
    def _raise_rule_errors(reply: Mapping[str, Any], action: str) -> None:
        errors = reply.get("errors")
        meta = reply.get("meta")
        summary = meta.get("summary") if isinstance(meta, dict) else None
        invalid = summary.get("invalid") if isinstance(summary, dict) else None
        if (isinstance(errors, list) and errors) or (isinstance(invalid, int) and invalid > 0):
            detail = problem_text(reply) or f"{invalid} invalid rule(s)"
            raise XRulesError(f"X rejected the stream rules while {action}: {detail}")

    async def _sync_until_done(self, stop: asyncio.Event) -> bool:
        """sync_rules, retried with backoff on transient failures; False when it can never succeed."""
        policy = ReconnectPolicy()
        while not stop.is_set():
            try:
                await self.sync_rules()
                return True
            except XUnauthorized as exc:
                self._auth_failed(ENDPOINT_RULES, exc)
                return False
            except XRulesError as exc:
                self._error(ENDPOINT_RULES, "rules")
                log.error("x stream rules are not valid; the stream is not started", error=str(exc))
                return False
            except XApiError as exc:
                self._error(ENDPOINT_RULES, exc.kind)
                if exc.status == 429:
                    delay = policy.after_rate_limit(exc.reset_at, self._clock())
                else:
                    delay = policy.after_http_error()
                log.warning("x rules sync failed", error=str(exc), retry_in=delay)
            except (aiohttp.ClientError, TimeoutError, OSError) as exc:
                self._error(ENDPOINT_RULES, "network")
                delay = policy.after_network_error()
                log.warning("x rules sync failed", error=f"{type(exc).__name__}: {exc}", retry_in=delay)
            await self._pause(delay, stop)
        return False

    # -- stream -------------------------------------------------------------------------------------

    async def stream(self, stop: asyncio.Event) -> None:
        """Read the filtered stream until ``stop`` is set, reconnecting by X's policy; returns on 401/403."""
        policy = ReconnectPolicy()
        backoff = self.metrics.collector_backoff.labels(SOURCE, STREAM_CHANNEL)
        first = True
        while not stop.is_set():
            if not first:
                self.metrics.collector_reconnects.labels(SOURCE, STREAM_CHANNEL).inc()
            first = False
            try:
                connection = await self._until_stopped(self._read_stream(policy), stop)
            except XUnauthorized as exc:
                backoff.set(0)
                self._auth_failed(STREAM_CHANNEL, exc)
                return
            except XApiError as exc:
                self._error(STREAM_CHANNEL, exc.kind)
                if exc.status == 429:
                    delay = policy.after_rate_limit(exc.reset_at, self._clock())
                else:
                    delay = policy.after_http_error()
                log.warning("x stream refused", status=exc.status, error=str(exc), retry_in=delay)
            except (aiohttp.ClientError, TimeoutError, OSError) as exc:
                self._error(STREAM_CHANNEL, "network")
                delay = policy.after_network_error()
                log.warning("x stream connection failed", error=f"{type(exc).__name__}: {exc}", retry_in=delay)
            else:
                if connection is None:  # stopped
                    break
                if connection.ended == "stall":
                    self._error(STREAM_CHANNEL, "stall")
                if self._clock() - connection.connected_at >= STABLE_AFTER:
                    policy.healthy()
                delay = policy.after_drop()
                log.info(
                    "x stream disconnected; reconnecting",
                    reason=connection.ended,
                    detail=connection.detail or None,
                    tweets=connection.tweets,
                    retry_in=delay,
                )
            backoff.set(delay)
            await self._pause(delay, stop)
        backoff.set(0)

    async def _read_stream(self, policy: ReconnectPolicy) -> _Connection:
        """One connection: raises before a 200; after it, returns how the connection ended."""
        session = self._get_session()
        timeout = aiohttp.ClientTimeout(
            total=None, connect=self.settings.timeout, sock_connect=self.settings.timeout, sock_read=None
        )
        url = self._base + STREAM_PATH
        async with session.get(url, params=dict(FIELD_PARAMS), headers=self._headers(), timeout=timeout) as response:
            self._record_limits(ENDPOINT_STREAM, response.headers)
            if response.status != 200:
                text = await asyncio.wait_for(response.text(errors="replace"), timeout=self.settings.timeout)
                raise self._status_error(ENDPOINT_STREAM, response.status, response.headers, _json_object(text))
            policy.connected()
            self.metrics.collector_backoff.labels(SOURCE, STREAM_CHANNEL).set(0)
            connection = _Connection(connected_at=self._clock())
            log.info("x stream connected")
            try:
                await self._consume(response, connection, policy)
            except (aiohttp.ClientError, OSError) as exc:
                connection.ended = "dropped"
                connection.detail = f"{type(exc).__name__}: {exc}"
            return connection

    async def _consume(
        self, response: aiohttp.ClientResponse, connection: _Connection, policy: ReconnectPolicy
    ) -> None:
        """Split the chunked body into lines and handle each; return when the connection should end."""
        stall = self.settings.stall_timeout or None
        buffer = bytearray()
        await self._flush_pending()
        while True:
            try:
                chunk = await asyncio.wait_for(response.content.readany(), timeout=stall)
            except TimeoutError:
                connection.ended = "stall"
                connection.detail = f"no data or keep-alive for {self.settings.stall_timeout:g}s"
                return
            if not chunk:
                connection.ended = "eof"
                return
            buffer += chunk
            while (end := buffer.find(b"\n")) >= 0:
                line = bytes(buffer[:end]).strip()
                del buffer[: end + 1]
                if line and await self._handle_line(line, connection, policy):
                    return
            if len(buffer) > MAX_LINE_BYTES:
                self._error(STREAM_CHANNEL, "parse")
                log.warning("x stream line too long; dropped", bytes=len(buffer))
                buffer.clear()

    async def _handle_line(self, line: bytes, connection: _Connection, policy: ReconnectPolicy) -> bool:
        """One stream message; True when it asks for a reconnect (an error without data)."""
        try:
            message = json.loads(line)
        except ValueError:
            message = None
        if not isinstance(message, dict):
            self._error(STREAM_CHANNEL, "parse")
            log.warning("x stream line is not a JSON object; skipped", line=line[:200].decode("utf-8", "replace"))
            return False
        if message.get("data") is None:
            if message.get("errors"):
                self._error(STREAM_CHANNEL, "stream_error")
                connection.ended = "stream_error"
                connection.detail = problem_text(message)
                log.warning("x stream sent an error; reconnecting", detail=connection.detail)
                return True
            log.debug("x stream message of an unknown kind ignored", fields=sorted(message)[:10])
            return False
        try:
            items, errors = items_from_response(message, collected_at=utcnow())
        except (KeyError, TypeError, ValueError) as exc:
            self._error(STREAM_CHANNEL, "parse")
            log.warning("x stream tweet not understood; skipped", error=f"{type(exc).__name__}: {exc}")
            return False
        self._count_partial(STREAM_CHANNEL, errors)
        if items:
            connection.tweets += len(items)
            policy.healthy()
            await self._emit_stream(items)
        return False

    def _stream_metric_channel(self, item: RawItem) -> str:
        """Metrics per configured account (bounded); posts matched by queries count under ``stream``."""
        return item.channel if item.channel in self.accounts else STREAM_CHANNEL

    async def _emit_stream(self, items: Iterable[RawItem]) -> None:
        """Publish stream posts at once; while Redis fails they wait in memory and go with the next post."""
        batch = [*self._pending, *items]
        self._pending.clear()
        groups: dict[str, list[RawItem]] = {}
        for item in batch:
            groups.setdefault(self._stream_metric_channel(item), []).append(item)
        try:
            for channel, group in groups.items():
                await self.emitter.emit(SOURCE, channel, group)
        except (RedisError, OSError) as exc:
            self._pending.extend(batch)  # re-publishing what did get through is harmless (add-once)
            self._error(STREAM_CHANNEL, "publish")
            log.warning(
                "publishing x posts failed; kept in memory", pending=len(self._pending), error=f"{type(exc).__name__}"
            )

    async def _flush_pending(self) -> None:
        if self._pending:
            await self._emit_stream([])

    # -- polling ------------------------------------------------------------------------------------

    async def poll_once(self) -> int:
        """One cycle over the queries (recent search) and accounts (timelines); returns items published.

        Each query and account fails on its own (counted and logged). XUnauthorized is raised.
        """
        total = 0
        for query in dict.fromkeys(q.strip() for q in self.settings.queries if q.strip()):
            total += await self._guarded(f"query:{query}", self._poll_query(query))
        for name in self.accounts:
            total += await self._guarded(f"user:{name}", self._poll_account(name))
        return total

    async def _guarded(self, channel: str, work: Coroutine[Any, Any, int]) -> int:
        try:
            return await work
        except (XUnauthorized, asyncio.CancelledError):
            raise
        except Exception as exc:
            self._error(channel, "unexpected")
            log.exception("x poll failed", channel=channel, error=f"{type(exc).__name__}: {exc}")
            return 0

    async def _poll_query(self, query: str) -> int:
        channel = f"query:{query}"
        params = {
            **FIELD_PARAMS,
            "query": with_retweet_filter(query, self.settings.include_retweets),
            "max_results": str(PAGE_SIZE),
        }
        return await self._poll_paged(channel, ENDPOINT_SEARCH, SEARCH_PATH, params, "next_token")

    async def _poll_account(self, name: str) -> int:
        user_id = await self.resolve_user(name)
        if user_id is None:
            return 0
        params = {**FIELD_PARAMS, "max_results": str(PAGE_SIZE)}
        if not self.settings.include_retweets:
            params["exclude"] = "retweets"
        path = USER_TWEETS_PATH.format(user_id=quote(user_id, safe=""))
        return await self._poll_paged(f"user:{name}", ENDPOINT_TIMELINE, path, params, "pagination_token")

    async def resolve_user(self, name: str) -> str | None:
        """The user id of handle ``name``: from the Redis cache, else from X (then cached). None if unknown."""
        name = normalize_account(name)
        cached = await self.redis.hget(users_key(self.keys), name)
        if cached:
            with contextlib.suppress(ValueError, TypeError, KeyError):
                return str(json.loads(cached)["id"])
        channel = f"user:{name}"
        if self._rate_limit_wait(ENDPOINT_USERS) > 0:
            log.info("x user lookup deferred: rate-limit window spent", channel=channel)
            return None
        path = USER_BY_NAME_PATH.format(username=quote(name, safe=""))
        try:
            body = await self._request("GET", ENDPOINT_USERS, path, params={"user.fields": USER_FIELDS})
        except XApiError as exc:
            self._error(channel, exc.kind)
            log.warning("x user lookup failed", channel=channel, error=str(exc))
            return None
        except (aiohttp.ClientError, TimeoutError) as exc:
            self._error(channel, "network")
            log.warning("x user lookup failed", channel=channel, error=f"{type(exc).__name__}: {exc}")
            return None
        data = body.get("data")
        if not isinstance(data, dict) or data.get("id") is None:
            self._error(channel, "unresolved")
            log.warning("x account not found; skipped", channel=channel, detail=problem_text(body) or None)
            return None
        user = {"id": str(data["id"]), "username": str(data.get("username") or name), "name": data.get("name")}
        await self.redis.hset(users_key(self.keys), name, json.dumps(user))
        return user["id"]

    async def _poll_paged(
        self, channel: str, endpoint: str, path: str, params: dict[str, str], token_param: str
    ) -> int:
        """Read pages newer than the checkpoint, publish them, then move the checkpoint (never backwards).

        The checkpoint moves only when every page needed was read and Redis accepted the items; after
        a failure half-way the items read so far are still published (add-once makes the retry safe).
        """
        since = await self.checkpoints.get_int(SOURCE, channel)
        if since:
            params = {**params, "since_id": str(since)}
        limit = MAX_PAGES if since else FIRST_RUN_PAGES
        found: dict[int, RawItem] = {}
        newest = since
        complete = True
        token: str | None = None
        pages = 0
        collected_at = utcnow()
        while True:
            if self._rate_limit_wait(endpoint) > 0:
                log.info("x poll deferred: rate-limit window spent", channel=channel, endpoint=endpoint)
                complete = False
                break
            page_params = {**params, token_param: token} if token else params
            try:
                body = await self._request("GET", endpoint, path, params=page_params)
            except XApiError as exc:
                if exc.status == 400 and "since_id" in params and "since_id" in exc.detail and not pages:
                    # The checkpoint is older than recent search reaches (7 days): start again from the
                    # newest posts rather than failing on every cycle. Posts in between cannot be read.
                    log.warning(
                        "x checkpoint older than the search window; reading the latest posts instead",
                        channel=channel,
                        since_id=params["since_id"],
                    )
                    self._error(channel, "checkpoint_expired")
                    params = {k: v for k, v in params.items() if k != "since_id"}
                    limit = FIRST_RUN_PAGES
                    continue
                self._error(channel, exc.kind)
                log.warning("x poll request failed", channel=channel, error=str(exc))
                complete = False
                break
            except (aiohttp.ClientError, TimeoutError) as exc:
                self._error(channel, "network")
                log.warning("x poll request failed", channel=channel, error=f"{type(exc).__name__}: {exc}")
                complete = False
                break
            pages += 1
            items, errors = items_from_response(body, collected_at=collected_at)
            self._count_partial(channel, errors)
            for item in items:
                tweet_id = int(item.external_id)
                found.setdefault(tweet_id, item)
                newest = max(newest, tweet_id)
            meta_value = body.get("meta")
            meta: dict[str, Any] = meta_value if isinstance(meta_value, dict) else {}
            newest = max(newest, _int(meta.get("newest_id")) or 0)
            token = str(meta["next_token"]) if meta.get("next_token") else None
            if token is None:
                break
            if pages >= limit:
                if since:
                    log.warning("x page limit reached; older posts after the checkpoint skipped", channel=channel)
                break
        items = [found[k] for k in sorted(found)]
        checkpoint = str(newest) if complete and newest > since else None
        if not items and checkpoint is None:
            return 0
        try:
            result = await self.emitter.emit(SOURCE, channel, items, checkpoint=checkpoint)
        except (RedisError, OSError) as exc:
            self._error(channel, "publish")
            log.warning("publishing x posts failed; checkpoint kept", channel=channel, error=type(exc).__name__)
            return 0
        if result.published:
            log.info("x posts published", channel=channel, published=result.published, pages=pages)
        return result.published

    # -- HTTP ---------------------------------------------------------------------------------------

    def _headers(self) -> dict[str, str]:
        token = self.settings.bearer_token.get_secret_value() if self.settings.bearer_token else ""
        return {"Authorization": f"Bearer {token}", "User-Agent": "warwatch"}

    async def _request(
        self,
        method: str,
        endpoint: str,
        path: str,
        *,
        params: Mapping[str, str] | None = None,
        body: Mapping[str, Any] | None = None,
    ) -> dict[str, Any]:
        """One JSON request; the body on 200/201, else XUnauthorized or XApiError."""
        session = self._get_session()
        timeout = aiohttp.ClientTimeout(total=self.settings.timeout)
        async with session.request(
            method,
            self._base + path,
            params=dict(params) if params else None,
            json=body,
            headers=self._headers(),
            timeout=timeout,
        ) as response:
            self._record_limits(endpoint, response.headers)
            payload = _json_object(await response.text(errors="replace"))
            if response.status in (200, 201):
                return payload
            raise self._status_error(endpoint, response.status, response.headers, payload)

    def _status_error(
        self, endpoint: str, status: int, headers: Mapping[str, str], payload: Mapping[str, Any]
    ) -> XUnauthorized | XApiError:
        detail = problem_text(payload)
        if status == 401:
            return XUnauthorized(
                f"X rejected the bearer token (HTTP 401 on {endpoint}): it is missing, invalid or revoked. "
                f"Set X_BEARER_TOKEN (collectors.x.bearer_token)." + (f" X says: {detail}" if detail else "")
            )
        if status == 403:
            return XUnauthorized(
                f"X refused access (HTTP 403 on {endpoint}): the app's access level or project does not "
                f"allow this endpoint." + (f" X says: {detail}" if detail else "")
            )
        reset = _header_int(headers, "x-rate-limit-reset") if status == 429 else None
        return XApiError(endpoint, status, detail, float(reset) if reset is not None else None)

    def _record_limits(self, endpoint: str, headers: Mapping[str, str]) -> None:
        remaining = _header_int(headers, "x-rate-limit-remaining")
        reset = _header_int(headers, "x-rate-limit-reset")
        if remaining is None and reset is None:
            return
        if remaining is not None:
            self.metrics.rate_limit_remaining.labels(endpoint).set(remaining)
        if reset is not None:
            self.metrics.rate_limit_reset.labels(endpoint).set(reset)
        self._limits[endpoint] = (remaining, reset)

    def _rate_limit_wait(self, endpoint: str) -> float:
        """Seconds until ``endpoint``'s window resets when it is spent (remaining 0); else 0."""
        remaining, reset = self._limits.get(endpoint, (None, None))
        if remaining != 0 or reset is None:
            return 0.0
        return min(max(0.0, reset - self._clock()), MAX_RESET_WAIT)

    def _get_session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession()
            self._owns_session = True
        return self._session

    # -- small helpers ------------------------------------------------------------------------------

    def _error(self, channel: str, kind: str) -> None:
        self.emitter.error(SOURCE, channel, kind)

    def _count_partial(self, channel: str, errors: Sequence[Mapping[str, Any]]) -> None:
        for _ in errors:
            self._error(channel, "partial")
        if errors:
            log.info("x partial response: some objects could not be returned", channel=channel, errors=len(errors))

    def _auth_failed(self, channel: str, exc: XUnauthorized) -> None:
        self._error(channel, "auth")
        log.error("x collector stopped: access refused", error=str(exc))

    async def _pause(self, delay: float, stop: asyncio.Event) -> None:
        """Sleep ``delay`` (through the injected sleep) or until ``stop`` is set, whichever comes first."""
        if stop.is_set():
            return
        await self._until_stopped(self._sleep(delay), stop)

    async def _until_stopped(self, work: Awaitable[T], stop: asyncio.Event) -> T | None:
        """Run ``work``; None when ``stop`` is set first (``work`` is then cancelled)."""
        task: asyncio.Future[T] = asyncio.ensure_future(work)
        waiter: asyncio.Future[Any] = asyncio.ensure_future(stop.wait())
        try:
            await asyncio.wait([task, waiter], return_when=asyncio.FIRST_COMPLETED)
        finally:
            unfinished = [future for future in (task, waiter) if not future.done()]
            for future in unfinished:
                future.cancel()
            if unfinished:  # wait for the cleanup; a cancellation of this task itself still propagates
                await asyncio.wait(unfinished)
        if task.cancelled():
            return None
        return task.result()
