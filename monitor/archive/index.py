"""The search index beside the archive: SQLite FTS5 in ``<archive_dir>/index.sqlite3``.

One row per item id (``items``, unique ``id``) holds the item's latest version: a redelivered entry
rewrites nothing, an ``edit`` (a later ``collected_at``) replaces the text, a ``delete`` only sets
``deleted_ts`` (the text stays searchable; hits show it was deleted). An FTS5 table with external
content (``items_fts``: title, text, places) is kept in step by triggers; its tokenizer is
``unicode61 remove_diacritics 2``: case-insensitive for Latin and Cyrillic, Latin diacritics folded,
Cyrillic letters kept (``й`` is not ``и``, ``ї`` is not ``і``). ``ё`` is folded to ``е`` before
indexing (so hits' titles and snippets show ``е``), as the rule matcher does.

The archive files are the source of truth: ``rebuild_index`` recreates the index from them, and the
archiver rebuilds it by itself when it finds the index file gone. The archiver writes each batch's
rows in one transaction after the batch's gzip member is fsynced; with ``durable`` (the archiver's
default) the commit is fsynced too (WAL, ``synchronous=FULL``) before the batch is acknowledged.

Queries (``build_match``) are parsed here, never passed to FTS5 as written, so no input can raise an
FTS5 syntax error:

* words are ANDed; ``OR`` between two terms makes them alternatives; ``-word`` or ``NOT word`` excludes;
* ``"a phrase"`` matches those words in a row, as written (an unclosed quote runs to the end);
* ``word*`` matches words starting with it;
* any other word is expanded like a rule term (``monitor.alerting.matcher.term_forms``): Ukrainian and
  Russian case forms (``Бахмут`` also finds ``Бахмуті``, ``Бахмутом``) and, for a capitalized Latin
  word, Cyrillic spellings (``Bakhmut`` finds ``Бахмут``). FTS5 does not stem; this query-side
  expansion is what finds the case forms. Quote a word to search it exactly;
* punctuation is a word separator (``title:x`` is the two words ``title x``), parentheses are ignored.

Ranking is bm25 (title weighted 3, text 1, place names 0.5); snippets come from FTS5 ``snippet()``.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import sqlite3
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any, Literal

import structlog
from rich.console import Console
from rich.style import Style
from rich.text import Text

from monitor.alerting.matcher import fold_term, term_forms
from monitor.archive.writer import Damage, DamageHandler, archive_files, as_utc, decode_line, read_lines
from monitor.errors import MonitorError
from monitor.schema import Item, dedup_key

log = structlog.get_logger(__name__)

INDEX_NAME = "index.sqlite3"
SCHEMA_VERSION = 1
TimeField = Literal["published", "collected"]

MAX_QUERY_CHARS = 2000
MAX_TERMS = 32
MAX_FORMS_PER_TERM = 64
MAX_LIMIT = 1000
SNIPPET_TOKENS = 24
_HL_OPEN, _HL_CLOSE = "\x02", "\x03"  # snippet markers; clean_text strips control characters from items
_WEIGHTS = (3.0, 1.0, 0.5)  # bm25 weights: title, text, places


class ArchiveError(MonitorError):
    """The archive or its index cannot be used (missing folder, unreadable index)."""


class SearchQueryError(MonitorError):
    """A search the user typed that cannot run as asked (only exclusions, too long)."""

    exit_code = 2


def index_path(archive_dir: Path) -> Path:
    """``<archive_dir>/index.sqlite3``."""
    return archive_dir / INDEX_NAME


_SCHEMA = f"""
CREATE TABLE IF NOT EXISTS items (
    rowid INTEGER PRIMARY KEY,
    id TEXT NOT NULL UNIQUE,
    source TEXT NOT NULL,
    channel TEXT NOT NULL,
    published_ts REAL,
    collected_ts REAL NOT NULL,
    ts REAL NOT NULL,              -- published_ts, else collected_ts
    lang TEXT,
    url TEXT,
    cluster_id TEXT,
    event TEXT NOT NULL,
    deleted_ts REAL,
    title TEXT NOT NULL DEFAULT '',
    text TEXT NOT NULL DEFAULT '',
    places TEXT NOT NULL DEFAULT '',       -- searchable: names, surface forms, id tokens
    place_names TEXT NOT NULL DEFAULT '',  -- display: JSON list of canonical names
    place_ids TEXT NOT NULL DEFAULT ''     -- space-separated gazetteer ids
);
CREATE INDEX IF NOT EXISTS items_ts ON items(ts);
CREATE INDEX IF NOT EXISTS items_collected ON items(collected_ts);
CREATE INDEX IF NOT EXISTS items_channel ON items(channel COLLATE NOCASE);
CREATE INDEX IF NOT EXISTS items_cluster ON items(cluster_id) WHERE cluster_id IS NOT NULL;
CREATE VIRTUAL TABLE IF NOT EXISTS items_fts USING fts5(
    title, text, places,
    content='items', content_rowid='rowid',
    tokenize='unicode61 remove_diacritics 2'
);
CREATE TRIGGER IF NOT EXISTS items_ai AFTER INSERT ON items BEGIN
    INSERT INTO items_fts(rowid, title, text, places) VALUES (new.rowid, new.title, new.text, new.places);
END;
CREATE TRIGGER IF NOT EXISTS items_ad AFTER DELETE ON items BEGIN
    INSERT INTO items_fts(items_fts, rowid, title, text, places)
        VALUES ('delete', old.rowid, old.title, old.text, old.places);
END;
CREATE TRIGGER IF NOT EXISTS items_au AFTER UPDATE OF title, text, places ON items BEGIN
    INSERT INTO items_fts(items_fts, rowid, title, text, places)
        VALUES ('delete', old.rowid, old.title, old.text, old.places);
    INSERT INTO items_fts(rowid, title, text, places) VALUES (new.rowid, new.title, new.text, new.places);
END;
PRAGMA user_version = {SCHEMA_VERSION};
"""

_UPSERT = """
INSERT INTO items (id, source, channel, published_ts, collected_ts, ts, lang, url, cluster_id, event,
                   title, text, places, place_names, place_ids)
VALUES (:id, :source, :channel, :published_ts, :collected_ts, :ts, :lang, :url, :cluster_id, :event,
        :title, :text, :places, :place_names, :place_ids)
ON CONFLICT(id) DO UPDATE SET
    source = excluded.source, channel = excluded.channel, published_ts = excluded.published_ts,
    collected_ts = excluded.collected_ts, ts = excluded.ts, lang = excluded.lang, url = excluded.url,
    cluster_id = excluded.cluster_id, event = excluded.event, title = excluded.title, text = excluded.text,
    places = excluded.places, place_names = excluded.place_names, place_ids = excluded.place_ids
WHERE excluded.collected_ts > items.collected_ts
   OR (excluded.collected_ts = items.collected_ts
       AND (excluded.text IS NOT items.text OR excluded.title IS NOT items.title
            OR excluded.places IS NOT items.places OR excluded.cluster_id IS NOT items.cluster_id))
"""

_MARK_DELETED = """
UPDATE items SET deleted_ts = :ts WHERE id = :id AND (deleted_ts IS NULL OR deleted_ts > :ts)
"""

# The columns compared by ``dump_rows`` (everything but the rowid, which depends on insertion order).
ROW_COLUMNS = (
    "id, source, channel, published_ts, collected_ts, ts, lang, url, cluster_id, event, deleted_ts, "
    "title, text, places, place_names, place_ids"
)


def fold_yo(text: str) -> str:
    """``ё`` -> ``е`` (same length, so spans stay valid), as the matcher folds."""
    return text.replace("ё", "е").replace("Ё", "Е")


def _ts(when: datetime | None) -> float | None:
    return as_utc(when).timestamp() if when is not None else None


def _dt(ts: float | None) -> datetime | None:
    return datetime.fromtimestamp(ts, UTC) if ts is not None else None


def place_token(place_id: str) -> str:
    """A place id as one searchable token (``geonames:706448`` -> ``pidgeonames706448``)."""
    return "pid" + "".join(c for c in place_id.casefold() if c.isalnum())


def _row(item: Item) -> dict[str, Any]:
    names: list[str] = []
    searchable: list[str] = []
    ids: list[str] = []
    for place in item.entities.places:
        if place.name and place.name not in names:
            names.append(place.name)
        surface = item.text[place.start : place.end] if 0 <= place.start < place.end <= len(item.text) else ""
        for word in (place.name, surface):
            if word and word not in searchable:
                searchable.append(word)
        if place.id and place.id not in ids:
            ids.append(place.id)
    searchable += [place_token(pid) for pid in ids]
    published = _ts(item.published_at)
    collected = _ts(item.collected_at)
    return {
        "id": item.id,
        "source": item.source,
        "channel": item.channel,
        "published_ts": published,
        "collected_ts": collected,
        "ts": published if published is not None else collected,
        "lang": item.lang,
        "url": item.url,
        "cluster_id": item.cluster_id,
        "event": item.event,
        "title": fold_yo(item.title or ""),
        "text": fold_yo(item.text),
        "places": fold_yo(" ".join(searchable)),
        "place_names": json.dumps(names, ensure_ascii=False) if names else "",
        "place_ids": " ".join(ids),
    }


# --------------------------------------------------------------------------- query parsing

_CLOSERS = {'"': '"”“', "“": '”"“', "”": '”"', "„": '“”"', "«": '»"'}
_SEPARATORS = "()"


@dataclass(slots=True)
class QueryTerm:
    """One term of a parsed query: the folded forms searched for (ORed), and how it combines."""

    written: str
    forms: list[str]
    prefix: bool = False
    negated: bool = False
    or_previous: bool = False


def _searchable(form: str) -> bool:
    return any(c.isalnum() for c in form)


def parse_query(query: str) -> list[QueryTerm]:
    """Split what the user typed into terms (see the module docstring for the syntax)."""
    if len(query) > MAX_QUERY_CHARS:
        raise SearchQueryError(f"query too long ({len(query)} characters; at most {MAX_QUERY_CHARS})")
    terms: list[QueryTerm] = []
    negate = False
    join_or = False
    i, n = 0, len(query)

    def add(written: str, *, exact: bool, prefix: bool) -> None:
        nonlocal negate, join_or
        folded = fold_yo(fold_term(written))
        if exact or prefix:
            forms = [folded] if folded else []
        else:
            _, expanded = term_forms(written)
            # As in rules, only a capitalized Latin word (a name) gets Cyrillic spellings: "Bakhmut" is
            # also Бахмут, but "tank" must not become танк. (The matcher lets case forms of a
            # transliteration through for lowercase words; search does not.)
            latin = not written[:1].isupper() and not any("\u0400" <= c <= "\u04ff" for c in written)
            forms = [fold_yo(form) for form, how in expanded.items() if not (latin and "transliteration" in how)]
        forms = list(dict.fromkeys(f for f in forms if _searchable(f)))[:MAX_FORMS_PER_TERM]
        if forms:
            terms.append(QueryTerm(written, forms, prefix=prefix, negated=negate, or_previous=join_or))
        negate = join_or = False

    while i < n:
        char = query[i]
        if char.isspace() or char in _SEPARATORS:
            i += 1
            continue
        if char in "-!" and i + 1 < n and not query[i + 1].isspace():
            negate = True
            i += 1
            continue
        if char in _CLOSERS:
            closers = _CLOSERS[char]
            end = next((j for j in range(i + 1, n) if query[j] in closers), n)
            body = query[i + 1 : end]
            i = end + 1
            prefix = i < n and query[i] == "*"
            if prefix:
                i += 1
            add(body, exact=True, prefix=prefix)
            continue
        end = i
        while end < n and not query[end].isspace() and query[end] not in _CLOSERS and query[end] not in _SEPARATORS:
            end += 1
        word, i = query[i:end], end
        if word in ("OR", "|", "||"):
            join_or = bool(terms)
            continue
        if word in ("AND", "&", "&&", "+"):
            continue
        if word == "NOT":
            negate = True
            continue
        prefix = word.endswith("*")
        add(word.rstrip("*"), exact=False, prefix=prefix)
    if len(terms) > MAX_TERMS:
        raise SearchQueryError(f"query has {len(terms)} terms; at most {MAX_TERMS}")
    return terms


def _quote(form: str) -> str:
    return '"' + form.replace('"', '""') + '"'


def _term_expr(term: QueryTerm) -> str:
    star = " *" if term.prefix else ""
    return "(" + " OR ".join(_quote(form) + star for form in term.forms) + ")"


def build_match(query: str) -> str | None:
    """The FTS5 MATCH expression (over title and text) for a user query; None when it has no terms."""
    terms = parse_query(query)
    groups: list[list[QueryTerm]] = []
    negatives: list[QueryTerm] = []
    for term in terms:
        if term.negated:
            negatives.append(term)
        elif term.or_previous and groups:
            groups[-1].append(term)
        else:
            groups.append([term])
    if not groups:
        if negatives:
            raise SearchQueryError(
                "the query only excludes words (-word / NOT word); give at least one word to search for"
            )
        return None
    expr = " AND ".join("(" + " OR ".join(_term_expr(t) for t in group) + ")" for group in groups)
    for term in negatives:
        expr = f"({expr}) NOT {_term_expr(term)}"
    return "{title text} : (" + expr + ")"


def build_place_match(places: Sequence[str]) -> str | None:
    """FTS5 expression over the places column: any of the names (with case forms) or ids given."""
    options: list[str] = []
    for place in places:
        place = place.strip()
        if not place:
            continue
        if ":" in place and " " not in place:  # a gazetteer id: geonames:706448, alias:avdiivka-coke
            options.append(_quote(place_token(place)))
            continue
        for term in parse_query(place.replace('"', " ")):
            options.extend(_quote(form) + (" *" if term.prefix else "") for form in term.forms)
    if not options:
        return None
    return "places : (" + " OR ".join(dict.fromkeys(options)) + ")"


# --------------------------------------------------------------------------- hits


@dataclass(frozen=True, slots=True)
class SearchHit:
    """One search result: the item's identity and metadata, a snippet and where it is highlighted."""

    id: str
    source: str
    channel: str
    published_at: datetime | None
    collected_at: datetime
    lang: str | None
    title: str | None
    url: str | None
    cluster_id: str | None
    event: str
    deleted_at: datetime | None
    places: list[str]
    place_ids: list[str]
    snippet: str
    highlights: list[tuple[int, int]] = field(default_factory=list)  # [start, end) in ``snippet``
    score: float | None = None  # bm25: lower is better; None for a listing without words

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: timestamps as ISO 8601 with ``Z``."""

        def iso(when: datetime | None) -> str | None:
            return when.isoformat().replace("+00:00", "Z") if when is not None else None

        return {
            "id": self.id,
            "source": self.source,
            "channel": self.channel,
            "published_at": iso(self.published_at),
            "collected_at": iso(self.collected_at),
            "lang": self.lang,
            "title": self.title,
            "url": self.url,
            "cluster_id": self.cluster_id,
            "event": self.event,
            "deleted_at": iso(self.deleted_at),
            "places": self.places,
            "place_ids": self.place_ids,
            "snippet": self.snippet,
            "highlights": [list(span) for span in self.highlights],
            "score": self.score,
        }


def _split_marked(marked: str) -> tuple[str, list[tuple[int, int]]]:
    """Snippet text with FTS5 markers -> (plain text, highlighted spans)."""
    plain: list[str] = []
    spans: list[tuple[int, int]] = []
    length = 0
    start: int | None = None
    for part in re.split(f"([{_HL_OPEN}{_HL_CLOSE}])", marked):
        if part == _HL_OPEN:
            start = length
        elif part == _HL_CLOSE:
            if start is not None and length > start:
                spans.append((start, length))
            start = None
        elif part:
            plain.append(part)
            length += len(part)
    return "".join(plain), spans


def _excerpt(text: str, size: int = 240) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= size else flat[: size - 1].rstrip() + "…"


def render_hits(hits: Sequence[SearchHit], console: Console) -> None:
    """Print hits for a terminal: time, source/channel, title, the snippet with matches highlighted, link."""
    if not hits:
        console.print(Text("no matches", style="dim"))
        return
    for number, hit in enumerate(hits, 1):
        when = hit.published_at or hit.collected_at
        head = Text()
        head.append(f"{number:>3}. ", style="dim")
        head.append(when.strftime("%Y-%m-%d %H:%M"), style="dim")
        head.append("  ")
        head.append(f"{hit.source}/{hit.channel}", style="cyan")
        if hit.lang:
            head.append(f"  {hit.lang}", style="dim")
        if hit.deleted_at is not None:
            head.append("  [deleted]", style="red")
        elif hit.event == "edit":
            head.append("  [edited]", style="yellow")
        if hit.title:
            head.append("  ")
            head.append(" ".join(hit.title.split()), style="bold")
        console.print(head)
        body = Text("     ")
        flat_offset = len(body)
        body.append(hit.snippet.replace("\n", " "))
        for start, end in hit.highlights:
            body.stylize("bold yellow", flat_offset + start, flat_offset + end)
        console.print(body)
        tail = Text("     ")
        if hit.places:
            tail.append("places: " + ", ".join(hit.places) + "  ", style="green")
        if hit.url:  # a Style object, not a style string: a URL from a post is untrusted text
            linkable = hit.url.startswith(("http://", "https://"))
            tail.append(hit.url, style=Style(color="blue", link=hit.url if linkable else None))
        tail.append(f"  {hit.id}", style="dim")
        console.print(tail)


def hits_json(hits: Sequence[SearchHit]) -> str:
    """The hits as a JSON list (``--json``)."""
    return json.dumps([hit.to_dict() for hit in hits], ensure_ascii=False, indent=2)


# --------------------------------------------------------------------------- the index


@dataclass(slots=True)
class UpsertResult:
    """What one upsert batch changed: rows inserted or replaced, and items marked deleted."""

    written: int = 0
    deleted: int = 0


def _as_list(value: str | Sequence[str] | None) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        return [value] if value.strip() else []
    return [v for v in value if v and v.strip()]


def to_utc_datetime(value: datetime | date | None) -> datetime | None:
    """A ``since``/``until`` bound: a date means its midnight UTC; a naive datetime is UTC."""
    if value is None:
        return None
    if isinstance(value, datetime):
        return as_utc(value)
    return datetime(value.year, value.month, value.day, tzinfo=UTC)


_RELATIVE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(m|h|d|w)\s*$")


def parse_time(value: str, *, now: datetime | None = None) -> datetime:
    """A CLI time bound: ISO 8601 (``2024-02-17``, ``2024-02-17T06:00``, ``...Z``) or an age (``36h``, ``7d``).

    Naive times are UTC. Raises ``SearchQueryError`` (exit code 2) when it is neither.
    """
    match = _RELATIVE.match(value)
    if match:
        unit = {"m": 60, "h": 3600, "d": 86400, "w": 604800}[match[2]]
        return (now or datetime.now(UTC)) - timedelta(seconds=float(match[1]) * unit)
    text = value.strip()
    if text.endswith(("Z", "z")):
        text = text[:-1] + "+00:00"
    try:
        return as_utc(datetime.fromisoformat(text))
    except ValueError:
        raise SearchQueryError(
            f"{value!r} is not a time; use e.g. 2024-02-17, 2024-02-17T06:00Z, or an age such as 36h or 7d"
        ) from None


class ArchiveIndex:
    """One connection to the index file: upserts from the archiver, searches, and maintenance.

    The connection may be used from another thread than the one that opened it (the archiver runs its
    writes in a worker thread), one call at a time (a lock serializes them).
    """

    def __init__(self, path: Path, *, durable: bool = True, timeout: float = 30.0) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._conn = sqlite3.connect(path, timeout=timeout, isolation_level=None, check_same_thread=False)
        try:
            self._conn.execute("PRAGMA journal_mode=WAL")
            self._conn.execute(f"PRAGMA synchronous={'FULL' if durable else 'NORMAL'}")
            version = self._conn.execute("PRAGMA user_version").fetchone()[0]
            if version not in (0, SCHEMA_VERSION):
                raise ArchiveError(
                    f"{path}: index schema version {version}, this build uses {SCHEMA_VERSION}; "
                    "delete the file and rebuild the index from the archive"
                )
            if version == 0:
                self._conn.executescript(_SCHEMA)
        except BaseException:
            self._conn.close()
            raise
        stat = os.stat(path)
        self._identity = (stat.st_dev, stat.st_ino)

    # -- life cycle

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    def __enter__(self) -> ArchiveIndex:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def is_current(self) -> bool:
        """False when the file at ``path`` is gone or is another file than the one open here."""
        try:
            stat = os.stat(self.path)
        except FileNotFoundError:
            return False
        return (stat.st_dev, stat.st_ino) == self._identity

    # -- writing

    def upsert(self, items: Iterable[Item]) -> UpsertResult:
        """Write a batch in one transaction: insert or replace each item's row, mark deletes."""
        rows: list[dict[str, Any]] = []
        deletes: list[dict[str, Any]] = []
        for item in items:
            if item.event == "delete":
                deletes.append({"id": item.id, "ts": _ts(item.collected_at)})
            else:
                rows.append(_row(item))
        result = UpsertResult()
        with self._lock:
            conn = self._conn
            conn.execute("BEGIN IMMEDIATE")
            try:
                if rows:  # rowcount sums the rows each statement changed (trigger writes excluded)
                    result.written = max(conn.executemany(_UPSERT, rows).rowcount, 0)
                if deletes:
                    cursor = conn.executemany(_MARK_DELETED, deletes)
                    result.deleted = max(cursor.rowcount, 0)
                conn.execute("COMMIT")
            except BaseException:
                with contextlib.suppress(sqlite3.Error):
                    conn.execute("ROLLBACK")
                raise
        return result

    def delete_ids(self, ids: Iterable[str]) -> int:
        """Remove rows by item id (rebuild's prune)."""
        removed = 0
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                for chunk in _chunks(list(ids), 500):
                    marks = ",".join("?" * len(chunk))
                    removed += self._conn.execute(f"DELETE FROM items WHERE id IN ({marks})", chunk).rowcount
                self._conn.execute("COMMIT")
            except BaseException:
                with contextlib.suppress(sqlite3.Error):
                    self._conn.execute("ROLLBACK")
                raise
        return removed

    def optimize(self) -> None:
        """Merge the FTS5 index segments (after a rebuild or a large import)."""
        with self._lock:
            self._conn.execute("INSERT INTO items_fts(items_fts) VALUES ('optimize')")

    # -- reading

    def count(self) -> int:
        with self._lock:
            return int(self._conn.execute("SELECT count(*) FROM items").fetchone()[0])

    def ids(self) -> set[str]:
        with self._lock:
            return {row[0] for row in self._conn.execute("SELECT id FROM items")}

    def dump_rows(self) -> list[tuple[Any, ...]]:
        """Every row (without rowid) sorted by id: two indexes are equal when their dumps are."""
        with self._lock:
            return list(self._conn.execute(f"SELECT {ROW_COLUMNS} FROM items ORDER BY id"))

    def integrity_ok(self) -> bool:
        """FTS5's own consistency check of the index against the items table."""
        with self._lock:
            try:
                self._conn.execute("INSERT INTO items_fts(items_fts, rank) VALUES ('integrity-check', 1)")
            except sqlite3.DatabaseError:
                return False
        return True

    def search(
        self,
        query: str,
        *,
        since: datetime | date | None = None,
        until: datetime | date | None = None,
        place: str | Sequence[str] | None = None,
        source: str | Sequence[str] | None = None,
        channel: str | Sequence[str] | None = None,
        limit: int = 20,
        time_field: TimeField = "published",
        story: str | None = None,
    ) -> list[SearchHit]:
        """Best matches first (bm25); with no words in ``query``, the newest items that pass the filters
        (with ``story``, a story cluster's posts: oldest, the first seen, first)."""
        text_match = build_match(query)
        place_match = build_place_match(_as_list(place))
        match = " AND ".join(m for m in (text_match, place_match) if m) or None
        where: list[str] = []
        params: list[Any] = []
        column = "i.ts" if time_field == "published" else "i.collected_ts"
        if (lower := to_utc_datetime(since)) is not None:
            where.append(f"{column} >= ?")
            params.append(lower.timestamp())
        if (upper := to_utc_datetime(until)) is not None:
            where.append(f"{column} < ?")
            params.append(upper.timestamp())
        sources = _as_list(source)
        if sources:
            where.append(f"i.source IN ({','.join('?' * len(sources))})")
            params += sources
        channels = [c.strip().lstrip("@") for c in _as_list(channel)]
        if channels:
            where.append(f"i.channel COLLATE NOCASE IN ({','.join('?' * len(channels))})")
            params += channels
        if story:
            where.append("i.cluster_id = ?")
            params.append(story.strip())
        limit = max(1, min(int(limit), MAX_LIMIT))
        columns = (
            "i.id, i.source, i.channel, i.published_ts, i.collected_ts, i.lang, i.title, i.url, i.cluster_id, "
            "i.event, i.deleted_ts, i.place_names, i.place_ids"
        )
        if match is not None:
            weights = ", ".join(str(w) for w in _WEIGHTS)
            sql = (
                f"SELECT {columns}, snippet(items_fts, 1, '{_HL_OPEN}', '{_HL_CLOSE}', '…', {SNIPPET_TOKENS}), "
                f"bm25(items_fts, {weights}) AS score "
                "FROM items_fts JOIN items i ON i.rowid = items_fts.rowid "
                f"WHERE items_fts MATCH ? {''.join(' AND ' + w for w in where)} "
                "ORDER BY score, i.ts DESC LIMIT ?"
            )
            args: list[Any] = [match, *params, limit]
        else:
            sql = (
                f"SELECT {columns}, substr(i.text, 1, 400), NULL AS score FROM items i "
                f"{'WHERE ' + ' AND '.join(where) if where else ''} ORDER BY i.ts {'ASC' if story else 'DESC'} LIMIT ?"
            )
            args = [*params, limit]
        with self._lock:
            try:
                rows = self._conn.execute(sql, args).fetchall()
            except sqlite3.OperationalError as exc:
                if "fts5" in str(exc).lower() or "match" in str(exc).lower():
                    raise SearchQueryError(f"cannot search for {query!r}: {exc}") from exc
                raise
        return [_hit(row, marked=match is not None) for row in rows]


def _chunks(values: list[str], size: int) -> Iterator[list[str]]:
    for start in range(0, len(values), size):
        yield values[start : start + size]


def _hit(row: tuple[Any, ...], *, marked: bool) -> SearchHit:
    ident, source, channel, published, collected, lang, title, url, cluster, event, deleted, names, ids = row[:13]
    snip, score = row[13], row[14]
    if marked:
        snippet, spans = _split_marked(snip or "")
    else:
        snippet, spans = _excerpt(snip or ""), []
    return SearchHit(
        id=ident,
        source=source,
        channel=channel,
        published_at=_dt(published),
        collected_at=_dt(collected) or datetime.fromtimestamp(0, UTC),
        lang=lang,
        title=title or None,
        url=url,
        cluster_id=cluster,
        event=event,
        deleted_at=_dt(deleted),
        places=json.loads(names) if names else [],
        place_ids=ids.split() if ids else [],
        snippet=" ".join(snippet.split()) if not spans else snippet,
        highlights=spans,
        score=score,
    )


# --------------------------------------------------------------------------- rebuild and module-level API


@dataclass(slots=True)
class RebuildStats:
    """What ``rebuild_index`` read and wrote."""

    files: int = 0
    lines: int = 0
    events: int = 0
    duplicates: int = 0
    invalid: int = 0
    damaged: list[Damage] = field(default_factory=list)
    rows: int = 0
    pruned: int = 0
    moved_aside: Path | None = None
    seconds: float = 0.0


def _healthy(path: Path) -> bool:
    try:
        conn = sqlite3.connect(path, timeout=30)
        try:
            return conn.execute("PRAGMA quick_check").fetchone()[0] == "ok"
        finally:
            conn.close()
    except sqlite3.DatabaseError:
        return False


def _move_aside(path: Path) -> Path:
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    target = path.with_name(f"{path.name}.corrupt-{stamp}")
    for suffix in ("", "-wal", "-shm"):
        source = Path(str(path) + suffix)
        if source.exists():
            os.replace(source, Path(str(target) + suffix))
    return target


def rebuild_index(
    archive_dir: Path,
    *,
    prune: bool = False,
    chunk: int = 2000,
    index: ArchiveIndex | None = None,
) -> RebuildStats:
    """Recreate the search index from the archive files (all of them, oldest first).

    Idempotent and safe while the archiver runs: rows are upserted in chunks, the same way the archiver
    writes them, so the result equals the live index. A missing index file is created; one SQLite
    cannot read is moved aside (``index.sqlite3.corrupt-<time>``) and a new one built. With ``prune``,
    rows whose item is in no archive file are removed (only do that with the archiver stopped: an item
    it writes during the rebuild could otherwise be pruned).
    """
    started = time.monotonic()
    stats = RebuildStats()
    path = index_path(archive_dir)
    own = index is None
    if index is None:
        if path.exists() and not _healthy(path):
            stats.moved_aside = _move_aside(path)
            log.error("search index unreadable; moved aside and rebuilding", moved_to=str(stats.moved_aside))
        index = ArchiveIndex(path, durable=False)
    seen_events: set[str] = set()
    seen_ids: set[str] = set()
    buffer: list[Item] = []

    def damaged(damage: Damage) -> None:
        stats.damaged.append(damage)
        log.warning(
            "archive file damaged; its readable lines are indexed",
            path=str(damage.path),
            offset=damage.offset,
            kind=damage.kind,
            detail=damage.detail,
        )

    on_damage: DamageHandler = damaged
    try:
        for _, file in archive_files(archive_dir):
            stats.files += 1
            for line in read_lines(file, on_damage=on_damage):
                stats.lines += 1
                item = decode_line(line, file)
                if item is None:
                    stats.invalid += 1
                    continue
                key = dedup_key(item, item.id)
                if key in seen_events:
                    stats.duplicates += 1
                    continue
                seen_events.add(key)
                seen_ids.add(item.id)
                stats.events += 1
                buffer.append(item)
                if len(buffer) >= chunk:
                    index.upsert(buffer)
                    buffer.clear()
        if buffer:
            index.upsert(buffer)
        if prune:
            stats.pruned = index.delete_ids(index.ids() - seen_ids)
        index.optimize()
        stats.rows = index.count()
    finally:
        if own:
            index.close()
    stats.seconds = time.monotonic() - started
    log.info(
        "search index rebuilt",
        files=stats.files,
        events=stats.events,
        duplicates=stats.duplicates,
        rows=stats.rows,
        damaged=len(stats.damaged),
        seconds=round(stats.seconds, 2),
    )
    return stats


def open_index(archive_dir: Path, *, rebuild_missing: bool = True, durable: bool = True) -> ArchiveIndex:
    """The index of an archive; when its file is missing and the archive has files, it is rebuilt first."""
    path = index_path(archive_dir)
    missing = not path.exists()
    if missing and not archive_dir.is_dir():
        raise ArchiveError(f"no archive at {archive_dir} (archive.dir); nothing has been archived yet")
    index = ArchiveIndex(path, durable=durable)
    if missing and rebuild_missing and archive_files(archive_dir):
        log.warning("search index missing; rebuilding it from the archive", path=str(path))
        try:
            rebuild_index(archive_dir, index=index)
        except BaseException:
            index.close()
            raise
    return index


def search(
    archive_dir: Path,
    query: str,
    *,
    since: datetime | date | None = None,
    until: datetime | date | None = None,
    place: str | Sequence[str] | None = None,
    source: str | Sequence[str] | None = None,
    channel: str | Sequence[str] | None = None,
    limit: int = 20,
    time_field: TimeField = "published",
    story: str | None = None,
) -> list[SearchHit]:
    """Search the archive's index (see the module docstring for the query syntax).

    ``since`` is inclusive and ``until`` exclusive, on ``published_at`` (``collected_at`` when an item
    has none) or, with ``time_field="collected"``, on ``collected_at``. ``place`` takes names (case
    forms included) or gazetteer ids (``geonames:706448``); several mean any of them. ``source`` and
    ``channel`` (case-insensitive, ``@`` optional) take one value or several. ``story`` keeps a story
    cluster's items (``Item.cluster_id``); with no query words they come oldest first.
    """
    with open_index(archive_dir) as index:
        return index.search(
            query,
            since=since,
            until=until,
            place=place,
            source=source,
            channel=channel,
            limit=limit,
            time_field=time_field,
            story=story,
        )
