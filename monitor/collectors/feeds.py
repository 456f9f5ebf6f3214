"""The ``feed`` collector: RSS 2.0 and Atom feeds, optionally with the full text of each article.

News sites, ministries and wire services publish feeds. Bridges (RSSHub-style services) also turn
social accounts into feeds. A feed is cheap to poll and needs no account, so it is the broadest
source this monitor has. Feeds are also untidy in practice, and this module deals with that:

* It is polite. One GET per feed per interval (plus jitter), with a descriptive User-Agent and a
  conditional GET (``If-None-Match`` / ``If-Modified-Since``). There is a per-host concurrency
  limit. ``Retry-After`` is honoured on 429 and 503, and other failures back off exponentially.
* Identity. An entry's ``external_id`` is ``short_hash(entry_key(entry))``: the GUID, else the
  link, else a hash of title and date. Some feeds hand out a new GUID for the same article on every
  fetch, so there is a second add-once guard. It keys on the normalized link, and on title plus
  date, and it lives in Redis:

      ``{prefix}:feed:links:{short_hash(feed_url)}``, a sorted set. Each member is a guard
      (``link:<hash>`` or ``title:<hash>``) and its score is the wall time it was last seen. Members
      older than the dedup TTL are trimmed on write, and the key expires a TTL after the last
      write. (keys.py is not ours to edit, so the key is documented here.)

  An entry is new only when none of its guards is present. Guards are written only after Redis
  accepted the items.
* Checkpoint. ``{prefix}:cursor:feed:{feed_url}`` holds JSON: ``etag``, ``modified`` (the
  validators), ``newest`` (the epoch time of the newest entry date seen) and ``last_new`` (the wall
  time when new entries last arrived). It is written only after the items and the guards are stored.
  A failed publish is therefore never hidden by a later 304.
* Staleness comes from entry dates, not from HTTP success. A bridge that answers 200 with only
  old entries is stale. ``feed_stale{channel}`` goes to 1, and this is logged once. Feeds whose
  entries carry no dates fall back to ``last_new``.
* Malformed feeds are logged with the URL and feedparser's reason, and counted (kind ``parse``).
  Every feed fails on its own; one bad feed never stops the others.
"""

from __future__ import annotations

import asyncio
import calendar
import contextlib
import html
import io
import json
import random
import re
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from html.parser import HTMLParser
from typing import Any, Final
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import aiohttp
import feedparser  # type: ignore[import-untyped]  # feedparser ships no type information
import structlog
import trafilatura
from redis.exceptions import RedisError

from monitor import __version__
from monitor.collectors.base import Checkpoints, Emitter

# Shared with the corpus reader on purpose: one reference-counted switch that quiets trafilatura's
# loggers, and one list of what its parser may raise on hostile markup.
from monitor.collectors.corpus_files import _HTML_PARSE_ERRORS, _quiet_html_loggers
from monitor.config import FeedsSettings
from monitor.metrics import Metrics
from monitor.schema import Media, RawItem, bound_raw, short_hash, utcnow

__all__ = [
    "SOURCE",
    "FeedCheckpoint",
    "FeedCollector",
    "FeedParseError",
    "entries_to_items",
    "entry_guards",
    "entry_key",
    "html_to_text",
    "normalize_link",
    "parse_feed",
    "parse_retry_after",
]

log = structlog.get_logger(__name__)

SOURCE: Final = "feed"

USER_AGENT: Final = (
    f"warwatch/{__version__} (news feed monitor; RSS/Atom reader; polls each feed about every few minutes "
    "with conditional GET)"
)
FEED_ACCEPT: Final = (
    "application/rss+xml, application/atom+xml;q=0.95, application/xml;q=0.9, text/xml;q=0.9, */*;q=0.5"
)
ARTICLE_ACCEPT: Final = "text/html,application/xhtml+xml;q=0.9,*/*;q=0.5"

# Bodies larger than this are refused rather than read into memory.
MAX_FEED_BYTES: Final = 10 * 1024 * 1024
MAX_ARTICLE_BYTES: Final = 5 * 1024 * 1024
# Items per Emitter call (one script run each).
EMIT_CHUNK: Final = 100
# Exponential backoff after 5xx, 4xx or network errors starts at the interval and is capped here.
BACKOFF_CAP: Final = 3600.0
# A 429 without a usable Retry-After pauses the feed this long; an absurd Retry-After is capped.
DEFAULT_RETRY_AFTER: Final = 60.0
MAX_RETRY_AFTER: Final = 6 * 3600.0
# On start-up the feeds' first polls are spread at most this far apart (or interval / n, if less).
START_SPACING: Final = 5.0
# Bounds of ``raw``.
RAW_TEXT_CHARS: Final = 300
RAW_TAGS: Final = 20
# feedparser's reason for a malformed feed can be long; logs keep this much.
REASON_CHARS: Final = 300

# Query parameters that only track the reader; dropped when links are compared.
_TRACKING_PARAMS = re.compile(r"^(utm_\w+|fbclid|gclid|yclid|mc_cid|mc_eid|_ga|ref|ref_src|cmpid|at_medium)$", re.I)
_WHITESPACE = re.compile(r"\s+")
_MANY_NEWLINES = re.compile(r"\n{3,}")
_HTML_TAG = re.compile(r"<[A-Za-z!/][^>]*>")


# --- text ------------------------------------------------------------------------------------------

_PARAGRAPH_TAGS = frozenset(
    {
        "p", "div", "section", "article", "aside", "blockquote", "pre", "figure", "figcaption", "header",
        "footer", "h1", "h2", "h3", "h4", "h5", "h6", "ul", "ol", "dl", "table", "hr", "main", "address",
    }
)  # fmt: skip
_LINE_TAGS = frozenset({"li", "tr", "dt", "dd", "caption"})
_SKIP_TAGS = frozenset({"script", "style", "template", "noscript", "svg", "head", "iframe", "object"})


class _TextExtractor(HTMLParser):
    """HTML to plain text: blocks become paragraphs, ``<br>`` and list items become lines."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self._skip = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in _SKIP_TAGS:
            self._skip += 1
        elif tag == "br":
            self.parts.append("\n")
        elif tag in _PARAGRAPH_TAGS:
            self.parts.append("\n\n")
        elif tag in _LINE_TAGS:
            self.parts.append("\n")

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "br":
            self.parts.append("\n")
        elif tag == "hr":
            self.parts.append("\n\n")

    def handle_endtag(self, tag: str) -> None:
        if tag in _SKIP_TAGS:
            self._skip = max(0, self._skip - 1)
        elif tag in _PARAGRAPH_TAGS:
            self.parts.append("\n\n")

    def handle_data(self, data: str) -> None:
        if not self._skip:
            self.parts.append(_WHITESPACE.sub(" ", data))


def _tidy_lines(text: str) -> str:
    """Strip every line, and keep at most one blank line between paragraphs."""
    lines = [line.strip() for line in text.replace("\r\n", "\n").replace("\r", "\n").split("\n")]
    return _MANY_NEWLINES.sub("\n\n", "\n".join(lines)).strip()


def html_to_text(value: str) -> str:
    """Plain text of an HTML fragment (a feed summary or content): tags dropped, paragraph breaks kept.

    Text with no tags in it is treated as plain text: entities are decoded and its line breaks kept.
    """
    if not value:
        return ""
    if not _HTML_TAG.search(value):
        return _tidy_lines("\n".join(" ".join(line.split()) for line in html.unescape(value).splitlines()))
    parser = _TextExtractor()
    try:
        parser.feed(value)
        parser.close()
    except (AssertionError, ValueError):  # html.parser on hopeless markup; fall back to a crude strip
        return _tidy_lines(html.unescape(_HTML_TAG.sub(" ", value)))
    return _tidy_lines("".join(parser.parts))


def _detail_text(entry: Mapping[str, Any], key: str) -> str:
    """A feedparser text construct (title, summary) as plain text, whatever its declared type."""
    value = entry.get(key) or ""
    if not isinstance(value, str):
        return ""
    detail = entry.get(f"{key}_detail") or {}
    kind = str(detail.get("type") or "text/html") if isinstance(detail, Mapping) else "text/html"
    if kind == "text/plain":
        return _tidy_lines(value)
    return html_to_text(value)


def _entry_text(entry: Mapping[str, Any]) -> str:
    """The longest of the entry's content blocks (Atom content, content:encoded), else its summary."""
    best = ""
    for block in entry.get("content") or []:
        if not isinstance(block, Mapping):
            continue
        value = block.get("value") or ""
        if not isinstance(value, str):
            continue
        text = _tidy_lines(value) if block.get("type") == "text/plain" else html_to_text(value)
        if len(text) > len(best):
            best = text
    return best or _detail_text(entry, "summary")


# --- entries ---------------------------------------------------------------------------------------


def entry_key(entry: Mapping[str, Any]) -> str:
    """What identifies an entry: its GUID (``id``), else its link, else a hash of title and date."""
    for key in ("id", "link"):
        value = entry.get(key)
        if isinstance(value, str) and value.strip():
            return value.strip()
    title = entry.get("title") or ""
    date = entry.get("published") or _plain_get(entry, "updated") or entry.get("created") or ""
    return short_hash(f"{title}\n{date}")


def _plain_get(entry: Mapping[str, Any], key: str) -> Any:
    """``entry[key]`` without feedparser's deprecated ``updated`` -> ``published`` fallback (and its warning)."""
    return dict.get(entry, key) if isinstance(entry, dict) else entry.get(key)


def _entry_time(entry: Mapping[str, Any]) -> datetime | None:
    """Publication time in UTC from feedparser's parsed dates (they are UTC struct_times)."""
    for key in ("published_parsed", "updated_parsed", "created_parsed"):
        value = _plain_get(entry, key)
        if value:
            try:
                return datetime.fromtimestamp(calendar.timegm(value), UTC)
            except (OverflowError, ValueError, TypeError, OSError):
                continue
    return None


def _entry_author(entry: Mapping[str, Any]) -> str | None:
    author = entry.get("author")
    if isinstance(author, str) and author.strip():
        return " ".join(author.split())
    for person in entry.get("authors") or []:
        if isinstance(person, Mapping) and isinstance(person.get("name"), str) and person["name"].strip():
            return " ".join(person["name"].split())
    return None


def _media_type(mime: str | None, medium: str | None) -> str:
    """Our media type from an RSS/Media RSS ``medium`` or a MIME type."""
    medium = (medium or "").lower()
    if medium in ("image", "video", "audio", "document"):
        return "photo" if medium == "image" else medium
    major = (mime or "").split("/", 1)[0].lower()
    return {"image": "photo", "video": "video", "audio": "audio"}.get(major, "document")


def _entry_media(entry: Mapping[str, Any]) -> list[Media]:
    """Enclosures and Media RSS ``media:content``, in that order, each URL once."""
    media: list[Media] = []
    seen: set[str] = set()
    sources: list[tuple[Any, str]] = [(e, "href") for e in entry.get("enclosures") or []]
    sources += [(m, "url") for m in entry.get("media_content") or []]
    for attachment, url_key in sources:
        if not isinstance(attachment, Mapping):
            continue
        url = attachment.get(url_key) or attachment.get("url") or attachment.get("href")
        if not isinstance(url, str) or not url or url in seen:
            continue
        seen.add(url)
        length = str(attachment.get("length") or attachment.get("fileSize") or "")
        size = int(length) if length.isdigit() and int(length) > 0 else None
        media.append(Media(type=_media_type(attachment.get("type"), attachment.get("medium")), url=url, size=size))
    return media


def _clip(text: str | None) -> str | None:
    if text is None or len(text) <= RAW_TEXT_CHARS:
        return text
    return text[:RAW_TEXT_CHARS] + "…"


def _entry_raw(entry: Mapping[str, Any], summary: str) -> dict[str, Any] | None:
    """A small, bounded copy of what the feed said about the entry."""
    tags = [t.get("term") for t in entry.get("tags") or [] if isinstance(t, Mapping) and t.get("term")]
    raw: dict[str, Any] = {
        "id": entry.get("id"),
        "link": entry.get("link"),
        "title": _clip(entry.get("title")),
        "published": entry.get("published"),
        "updated": _plain_get(entry, "updated"),
        "tags": [str(t)[:100] for t in tags[:RAW_TAGS]],
        "summary": _clip(summary),
    }
    return bound_raw({k: v for k, v in raw.items() if v not in (None, "", [])})


def entries_to_items(parsed: Any, *, feed_url: str, collected_at: datetime | None = None) -> list[RawItem]:
    """The entries of a feedparser result as RawItems, oldest first (undated entries last, newest-in-feed last).

    ``channel`` is ``feed_url`` (the configured URL). Entries with no id, link, title or text are
    skipped.
    """
    when = collected_at or utcnow()
    items: list[RawItem] = []
    entries = list(parsed.get("entries") or [])
    for entry in reversed(entries):  # feeds list newest first
        if not isinstance(entry, Mapping):
            continue
        title = _detail_text(entry, "title") or None
        text = _entry_text(entry)
        link = entry.get("link") if isinstance(entry.get("link"), str) else None
        if not (text or title or link or entry.get("id")):
            continue
        items.append(
            RawItem(
                source=SOURCE,
                channel=feed_url,
                external_id=short_hash(entry_key(entry)),
                text=text or title or "",
                collected_at=when,
                url=link or None,
                published_at=_entry_time(entry),
                author=_entry_author(entry),
                title=title,
                media=_entry_media(entry),
                raw=_entry_raw(entry, text),
            )
        )
    items.sort(key=lambda item: (item.published_at is None, item.published_at or when))
    return items


def normalize_link(url: str) -> str:
    """A link as compared across fetches: no scheme, lowercase host, no default port, fragment, tracking
    parameters or trailing slash; remaining query parameters sorted."""
    parts = urlsplit(url.strip())
    host = (parts.hostname or "").lower()
    if host.startswith("www."):
        host = host[4:]
    port = parts.port if parts.port not in (None, 80, 443) else None
    netloc = f"{host}:{port}" if port else host
    query = sorted((k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if not _TRACKING_PARAMS.match(k))
    path = parts.path.rstrip("/") or "/"
    return urlunsplit(("", netloc, path, urlencode(query), ""))


def entry_guards(item: RawItem) -> list[str]:
    """The second add-once keys of an item: its normalized link, and its title with its date."""
    guards: list[str] = []
    if item.url:
        guards.append("link:" + short_hash(normalize_link(item.url)))
    if item.title and item.published_at is not None:
        folded = " ".join(item.title.casefold().split())
        guards.append("title:" + short_hash(f"{folded}\n{item.published_at.isoformat()}"))
    return guards


class FeedParseError(Exception):
    """The body is not a usable feed (malformed with no entries, or not RSS/Atom at all)."""


def parse_feed(body: bytes, headers: Mapping[str, str] | None = None, *, url: str | None = None) -> Any:
    """Parse feed bytes with feedparser; raise FeedParseError (with feedparser's reason) when unusable.

    The bytes go in as a stream: feedparser treats a bare ``bytes`` argument as a possible file name
    first, and a feed body must never be able to name a local file. ``url`` (the final URL) resolves
    relative links unless the response says otherwise (Content-Location).
    """
    response_headers = {k.lower(): v for k, v in (headers or {}).items()}
    if url:
        response_headers.setdefault("content-location", url)
    parsed = feedparser.parse(io.BytesIO(body), response_headers=response_headers)
    if not parsed.get("entries") and (parsed.get("bozo") or not parsed.get("version")):
        exc = parsed.get("bozo_exception")
        reason = f"{type(exc).__name__}: {exc}" if exc is not None else "not an RSS or Atom document"
        raise FeedParseError(reason[:REASON_CHARS])
    return parsed


def parse_retry_after(value: str | None, *, now: float) -> float | None:
    """``Retry-After`` as seconds: a number, or an HTTP date turned into the time left after ``now``."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, when.timestamp() - now)


# --- checkpoint ------------------------------------------------------------------------------------


@dataclass(slots=True)
class FeedCheckpoint:
    """The JSON stored at ``{prefix}:cursor:feed:{url}``."""

    etag: str | None = None
    modified: str | None = None
    newest: float | None = None  # epoch seconds of the newest entry date seen (never later than when seen)
    last_new: float | None = None  # wall time when new entries were last published

    @classmethod
    def loads(cls, value: str | None) -> FeedCheckpoint:
        """Read a stored checkpoint; a plain (non-JSON) value is taken as an ETag; garbage as none."""
        if not value:
            return cls()
        try:
            data = json.loads(value)
        except ValueError:
            return cls(etag=value)
        if not isinstance(data, dict):
            return cls()

        def text(key: str) -> str | None:
            found = data.get(key)
            return found if isinstance(found, str) and found else None

        def number(key: str) -> float | None:
            found = data.get(key)
            return float(found) if isinstance(found, int | float) and not isinstance(found, bool) else None

        return cls(etag=text("etag"), modified=text("modified"), newest=number("newest"), last_new=number("last_new"))

    def dumps(self) -> str:
        return json.dumps(asdict(self), separators=(",", ":"))

    @property
    def reference(self) -> float | None:
        """The time staleness is measured from: the newest entry date, else when something new came."""
        return self.newest if self.newest is not None else self.last_new


# --- collecting ------------------------------------------------------------------------------------


class _HttpStatus(Exception):
    """A response that is neither 2xx nor 304."""

    def __init__(self, status: int, retry_after: float | None = None) -> None:
        super().__init__(f"HTTP {status}")
        self.status = status
        self.retry_after = retry_after


class _TooLarge(Exception):
    """A body over its size limit."""


@dataclass(slots=True)
class _Fetched:
    final_url: str
    body: bytes
    headers: dict[str, str]
    etag: str | None
    modified: str | None


@dataclass(slots=True)
class _FeedState:
    """What the collector remembers about one feed between polls (in memory only)."""

    paused_until: float = 0.0  # monotonic time before which the feed is not fetched
    failures: int = 0  # consecutive failures, for the exponential backoff
    stale: bool | None = None  # last staleness reported (None: not judged yet)
    final_url: str | None = None  # where the last fetch ended after redirects


class FeedCollector:
    """Polls RSS/Atom feeds and publishes their new entries."""

    source = SOURCE

    def __init__(
        self,
        settings: FeedsSettings,
        emitter: Emitter,
        checkpoints: Checkpoints,
        metrics: Metrics,
        *,
        session: aiohttp.ClientSession | None = None,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
        rng: Callable[[], float] = random.random,
    ) -> None:
        self.settings = settings
        self.emitter = emitter
        self.checkpoints = checkpoints
        self.metrics = metrics
        self._session = session
        self._owns_session = session is None
        self._clock = clock
        self._wall = wall_clock
        self._rng = rng
        self._states: dict[str, _FeedState] = {}
        self._host_limits: dict[str, asyncio.Semaphore] = {}

    # -- public API ---------------------------------------------------------------------------------

    @property
    def urls(self) -> list[str]:
        """The configured feed URLs, stripped and without repeats, in config order."""
        return list(dict.fromkeys(u for url in self.settings.urls if (u := url.strip())))

    def links_key(self, url: str) -> str:
        """The Redis sorted set of link/title guards of one feed (see the module docstring)."""
        return f"{self.checkpoints.keys.prefix}:feed:links:{short_hash(url)}"

    def pause_remaining(self, url: str) -> float:
        """Seconds before ``url`` is fetched again (0 when it is not paused)."""
        state = self._states.get(url)
        return max(0.0, state.paused_until - self._clock()) if state else 0.0

    async def poll_feed(self, url: str) -> int:
        """One fetch of one feed; publishes what is new and returns how many items were published.

        HTTP, network and parse failures are counted, logged and (except parse errors) pause this
        feed; they do not raise. A Redis failure raises, and the checkpoint stays where it was.
        """
        state = self._states.setdefault(url, _FeedState())
        now = self._clock()
        if state.paused_until > now:
            self._set_backoff(url, state.paused_until - now)
            return 0
        if state.paused_until:
            state.paused_until = 0.0
            self._set_backoff(url, 0.0)

        checkpoint = FeedCheckpoint.loads(await self.checkpoints.get(SOURCE, url))
        try:
            fetched = await self._fetch_feed(url, checkpoint)
        except _HttpStatus as exc:
            self._http_failure(url, state, exc)
            self._judge_staleness(url, state, checkpoint)
            return 0
        except (aiohttp.ClientError, TimeoutError) as exc:
            self._error(url, "network")
            delay = self._backoff(url, state)
            log.warning("feed fetch failed", feed=url, error=_describe(exc), retry_in=delay)
            self._judge_staleness(url, state, checkpoint)
            return 0
        except _TooLarge as exc:
            self._error(url, "parse")
            log.error("feed body too large; skipped", feed=url, detail=str(exc))
            return 0
        state.failures = 0
        if fetched is None:  # 304: nothing changed since the last accepted response
            log.debug("feed not modified", feed=url)
            self._judge_staleness(url, state, checkpoint)
            return 0
        if fetched.final_url != url and fetched.final_url != state.final_url:
            log.info("feed redirected", feed=url, final_url=fetched.final_url)
        state.final_url = fetched.final_url

        try:
            parsed = await asyncio.to_thread(parse_feed, fetched.body, fetched.headers, url=fetched.final_url)
        except FeedParseError as exc:
            self._error(url, "parse")
            log.error(
                "feed could not be parsed; nothing emitted", feed=url, final_url=fetched.final_url, reason=str(exc)
            )
            return 0
        if parsed.get("bozo"):
            problem = parsed.get("bozo_exception")
            reason = f"{type(problem).__name__}: {problem}"[:REASON_CHARS] if problem is not None else "unknown"
            log.warning("feed is not well-formed; using the entries that parsed", feed=url, reason=reason)

        wall = self._wall()
        items = entries_to_items(parsed, feed_url=url, collected_at=utcnow())
        dates = [min(i.published_at.timestamp(), wall) for i in items if i.published_at is not None]
        fresh = await self._new_items(url, items)
        if fresh and self.settings.fetch_full_text:
            await self._add_full_text(url, fresh)
        updated = FeedCheckpoint(
            etag=fetched.etag,
            modified=fetched.modified,
            newest=max([*dates, *([checkpoint.newest] if checkpoint.newest is not None else [])], default=None),
            last_new=wall if fresh else checkpoint.last_new,
        )
        published = await self._publish(url, fresh, items, updated, write_checkpoint=updated != checkpoint)
        if updated.newest is not None:
            self.metrics.collector_last_item.labels(SOURCE, url).set(updated.newest)
        self._judge_staleness(url, state, updated)
        return published

    async def run_once(self) -> None:
        """Every feed once, concurrently within the per-host limits (``monitor run --once``)."""
        await asyncio.gather(*(self._poll_guarded(url) for url in self.urls))

    async def run(self, stop: asyncio.Event) -> None:
        """Poll until ``stop`` is set; each feed runs on its own schedule (interval plus jitter)."""
        urls = self.urls
        if not urls:
            await stop.wait()
            return
        start = self._clock()
        spacing = min(self.settings.interval / len(urls), START_SPACING)
        async with asyncio.TaskGroup() as group:
            for index, url in enumerate(urls):
                first = start + index * spacing + self._rng() * spacing
                group.create_task(self._feed_loop(url, first, stop), name=f"feed:{url}")

    async def aclose(self) -> None:
        """Close the HTTP session if this collector opened it."""
        if self._owns_session and self._session is not None and not self._session.closed:
            await self._session.close()
        self._session = None

    # -- scheduling ---------------------------------------------------------------------------------

    async def _feed_loop(self, url: str, due: float, stop: asyncio.Event) -> None:
        while not stop.is_set():
            delay = due - self._clock()
            if delay > 0:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), timeout=delay)
                if stop.is_set():
                    break
            await self._poll_guarded(url)
            due = self._next_due(url)

    async def _poll_guarded(self, url: str) -> None:
        """poll_feed, with anything unexpected logged so that the other feeds still run."""
        try:
            await self.poll_feed(url)
        except asyncio.CancelledError:
            raise
        except RedisError:
            pass  # already counted (kind "publish") and logged by _publish; the next poll retries
        except Exception as exc:
            log.exception("feed poll failed", feed=url, error=_describe(exc))

    def _next_due(self, url: str) -> float:
        interval = self.settings.interval
        regular = self._clock() + interval + self._rng() * self.settings.jitter * interval
        state = self._states.get(url)
        return max(regular, state.paused_until) if state else regular

    # -- HTTP ---------------------------------------------------------------------------------------

    def _host_limit(self, url: str) -> asyncio.Semaphore:
        """The semaphore of the URL's host (and port): at most ``per_host_concurrency`` requests at once."""
        host = urlsplit(url).netloc.lower()
        limit = self._host_limits.get(host)
        if limit is None:
            limit = self._host_limits[host] = asyncio.Semaphore(self.settings.per_host_concurrency)
        return limit

    def _get_session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(headers={"User-Agent": USER_AGENT})
            self._owns_session = True
        return self._session

    async def _fetch_feed(self, url: str, checkpoint: FeedCheckpoint) -> _Fetched | None:
        """GET the feed, conditional on the stored validators. None on 304; raises on anything but 2xx."""
        headers = {"User-Agent": USER_AGENT, "Accept": FEED_ACCEPT}
        if checkpoint.etag:
            headers["If-None-Match"] = checkpoint.etag
        if checkpoint.modified:
            headers["If-Modified-Since"] = checkpoint.modified
        timeout = aiohttp.ClientTimeout(total=self.settings.timeout)
        async with (
            self._host_limit(url),
            self._get_session().get(url, headers=headers, timeout=timeout, allow_redirects=True) as response,
        ):
            if response.status == 304:
                return None
            if not 200 <= response.status < 300:
                retry = parse_retry_after(response.headers.get("Retry-After"), now=self._wall())
                raise _HttpStatus(response.status, retry)
            body = await _read_limited(response, MAX_FEED_BYTES)
            return _Fetched(
                final_url=str(response.url),
                body=body,
                headers={k.lower(): v for k, v in response.headers.items()},
                etag=response.headers.get("ETag"),
                modified=response.headers.get("Last-Modified"),
            )

    def _http_failure(self, url: str, state: _FeedState, exc: _HttpStatus) -> None:
        status = exc.status
        if status == 429 or (status == 503 and exc.retry_after is not None):
            kind = "rate_limited" if status == 429 else "http_5xx"
            wait = exc.retry_after if exc.retry_after is not None else DEFAULT_RETRY_AFTER
            wait = min(max(wait, 0.0), MAX_RETRY_AFTER)
            self._error(url, kind)
            state.paused_until = self._clock() + wait
            self._set_backoff(url, wait)
            log.warning("feed asked us to wait; paused", feed=url, status=status, retry_after=wait)
        elif status >= 500:
            self._error(url, "http_5xx")
            delay = self._backoff(url, state)
            log.warning("feed server error", feed=url, status=status, retry_in=delay)
        else:
            self._error(url, "http_4xx")
            delay = self._backoff(url, state)
            log.warning("feed request refused", feed=url, status=status, retry_in=delay)

    def _backoff(self, url: str, state: _FeedState) -> float:
        """Pause the feed: the interval, doubled per consecutive failure, capped."""
        state.failures += 1
        cap = max(BACKOFF_CAP, self.settings.interval)
        delay = min(cap, max(self.settings.interval, 1.0) * 2 ** min(state.failures - 1, 20))
        state.paused_until = self._clock() + delay
        self._set_backoff(url, delay)
        return delay

    # -- new entries, full text, publishing ---------------------------------------------------------

    async def _new_items(self, url: str, items: Sequence[RawItem]) -> list[RawItem]:
        """Items none of whose guards is stored (nor taken by an earlier item of this fetch)."""
        guards = {id(item): entry_guards(item) for item in items}
        wanted = sorted({g for gs in guards.values() for g in gs})
        known: set[str] = set()
        if wanted:
            try:
                scores = await self.checkpoints.redis.zmscore(self.links_key(url), wanted)
            except RedisError as exc:
                self._error(url, "publish")
                log.warning("reading the feed's link guards failed", feed=url, error=_describe(exc))
                raise
            known = {guard for guard, score in zip(wanted, scores, strict=True) if score is not None}
        fresh: list[RawItem] = []
        for item in items:
            mine = guards[id(item)]
            if any(g in known for g in mine):
                continue
            known.update(mine)
            fresh.append(item)
        return fresh

    async def _remember(self, url: str, items: Iterable[RawItem]) -> None:
        """Store (or refresh) the guards of every entry the feed listed, trimming those past the TTL."""
        now = self._wall()
        members = {g: now for item in items for g in entry_guards(item)}
        if not members:
            return
        ttl = self.emitter.publisher.ttl
        key = self.links_key(url)
        pipe = self.checkpoints.redis.pipeline(transaction=True)
        pipe.zadd(key, members)
        pipe.zremrangebyscore(key, "-inf", now - ttl)
        pipe.expire(key, ttl)
        await pipe.execute()

    async def _publish(
        self,
        url: str,
        fresh: list[RawItem],
        listed: Sequence[RawItem],
        checkpoint: FeedCheckpoint,
        *,
        write_checkpoint: bool,
    ) -> int:
        """Emit oldest first; then store the guards; then (only then) the validators."""
        published = 0
        try:
            for start in range(0, len(fresh), EMIT_CHUNK):
                result = await self.emitter.emit(SOURCE, url, fresh[start : start + EMIT_CHUNK])
                published += result.published
            await self._remember(url, listed)
            if write_checkpoint:
                await self.checkpoints.set(SOURCE, url, checkpoint.dumps())
        except (RedisError, OSError) as exc:
            self._error(url, "publish")
            log.warning("publishing failed; checkpoint kept", feed=url, error=_describe(exc))
            raise
        if published:
            log.info("feed items published", feed=url, published=published)
        return published

    async def _add_full_text(self, feed_url: str, items: Sequence[RawItem]) -> None:
        """Replace each item's text by its article's main text (author and date fill gaps)."""
        targets = [i for i in items if i.url and urlsplit(i.url).scheme in ("http", "https")]
        await asyncio.gather(*(self._full_text(feed_url, item) for item in targets))

    async def _full_text(self, feed_url: str, item: RawItem) -> None:
        assert item.url is not None  # filtered by _add_full_text
        try:
            page = await self._fetch_article(item.url)
            article = await asyncio.to_thread(_extract_article, page, item.collected_at)
        except (aiohttp.ClientError, TimeoutError, _HttpStatus, _TooLarge, *_HTML_PARSE_ERRORS) as exc:
            article, reason = None, _describe(exc)
        else:
            reason = "no article text found in the page"
        if article is None or not article.get("text"):
            self._error(feed_url, "article_fetch")
            log.warning("article text not available; keeping the feed summary", feed=feed_url, url=item.url,
                        reason=reason)  # fmt: skip
            if item.raw is not None:
                item.raw["full_text"] = "failed"
            return
        item.text = article["text"]
        if not item.author and article.get("author"):
            item.author = article["author"]
        if item.published_at is None and article.get("date") is not None:
            item.published_at = article["date"]
        if item.raw is not None:
            item.raw["full_text"] = True

    async def _fetch_article(self, url: str) -> bytes:
        headers = {"User-Agent": USER_AGENT, "Accept": ARTICLE_ACCEPT}
        timeout = aiohttp.ClientTimeout(total=self.settings.timeout)
        async with (
            self._host_limit(url),
            self._get_session().get(url, headers=headers, timeout=timeout, allow_redirects=True) as response,
        ):
            if not 200 <= response.status < 300:
                raise _HttpStatus(response.status)
            return await _read_limited(response, MAX_ARTICLE_BYTES)

    # -- metrics ------------------------------------------------------------------------------------

    def _judge_staleness(self, url: str, state: _FeedState, checkpoint: FeedCheckpoint) -> None:
        """Set feed_stale from the newest entry date; log when it changes."""
        reference = checkpoint.reference
        if reference is None:
            return
        age = self._wall() - reference
        stale = age > self.settings.stale_after
        self.metrics.feed_stale.labels(url).set(1 if stale else 0)
        if stale and state.stale is not True:
            newest = datetime.fromtimestamp(reference, UTC).isoformat().replace("+00:00", "Z")
            log.warning("feed is stale: no new entry for too long", feed=url, newest_entry=newest,
                        age_seconds=round(age), stale_after=self.settings.stale_after)  # fmt: skip
        elif not stale and state.stale is True:
            log.info("feed is fresh again", feed=url)
        state.stale = stale

    def _set_backoff(self, url: str, seconds: float) -> None:
        self.metrics.collector_backoff.labels(SOURCE, url).set(max(0.0, seconds))

    def _error(self, url: str, kind: str) -> None:
        self.emitter.error(SOURCE, url, kind)


async def _read_limited(response: aiohttp.ClientResponse, limit: int) -> bytes:
    """The response body, refusing more than ``limit`` bytes."""
    chunks: list[bytes] = []
    size = 0
    async for chunk in response.content.iter_chunked(64 * 1024):
        size += len(chunk)
        if size > limit:
            raise _TooLarge(f"{response.url} is larger than {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def _extract_article(page: bytes, collected_at: datetime) -> dict[str, Any] | None:
    """Main text, author and date of an article page with trafilatura (run in a worker thread)."""
    with _quiet_html_loggers():
        document = trafilatura.bare_extraction(
            page,
            include_comments=False,
            with_metadata=True,
            date_extraction_params={
                "original_date": True,
                "extensive_search": False,
                "max_date": collected_at.strftime("%Y-%m-%d"),
            },
        )
    if document is None:
        return None
    fields = (
        document
        if isinstance(document, dict)
        else {name: getattr(document, name, None) for name in ("text", "author", "date")}
    )
    text = _tidy_lines(str(fields.get("text") or ""))
    author = fields.get("author")
    return {"text": text, "author": str(author) if author else None, "date": _iso_date(fields.get("date"))}


def _iso_date(value: Any) -> datetime | None:
    if not isinstance(value, str) or not value.strip():
        return None
    try:
        parsed = datetime.fromisoformat(value.strip())
    except ValueError:
        return None
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)


def _describe(exc: BaseException) -> str:
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
