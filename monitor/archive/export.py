"""``monitor export``: the archive as JSONL, CSV or GeoJSON, one record per item.

Records. Each item id is written once, in its latest version (the line with the newest
``collected_at``: an edit replaces the post), so a line archived twice after a crash and an edited post
both come out once. A deleted item keeps its last text and gets ``deleted_at`` (when the delete
event is among the files read). Items are written in archive order (by collection time).

Time window. ``since`` (inclusive) and ``until`` (exclusive) apply to ``published_at`` (``collected_at``
when an item has none), like ``monitor search``; with ``time_field="collected"`` to ``collected_at``.
Files are per collection day, so a window on publication time reads every day file from the day
before ``since`` on (an article published last year may have been collected today); a window on
collection time reads only its own days.

Export reads the archive twice (first the ids and versions, then the records), holding one small
entry per selected item id in memory, never the items themselves.

Formats:

* ``jsonl``: the archived Item JSON, one per line (plus ``deleted_at`` for a deleted item);
* ``csv``: RFC 4180 (UTF-8, no BOM, CRLF), one row per item, places joined by ``; ``. With
  ``excel_safe`` a cell starting with ``= + - @`` gets a leading ``'`` so spreadsheet apps do not run
  it as a formula (posts are untrusted input); off by default because it changes the data;
* ``geojson``: RFC 7946 FeatureCollection (WGS 84, coordinates ``[lon, lat]``, no ``crs`` member),
  one Point feature per (item, place with coordinates); every feature has the same property keys
  (null when unknown) so QGIS reads one consistent attribute table.
"""

from __future__ import annotations

import csv
import json
import math
import os
from collections.abc import Iterator, Sequence
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import IO, Any, Literal

import msgspec
import structlog

from monitor.archive.index import ArchiveError, to_utc_datetime
from monitor.archive.writer import DamageHandler, archive_files, as_utc, decode_line, read_lines
from monitor.schema import Item, Place, claim_label

log = structlog.get_logger(__name__)

Format = Literal["jsonl", "csv", "geojson"]
FORMATS: tuple[str, ...] = ("jsonl", "csv", "geojson")
TimeField = Literal["published", "collected"]

CSV_COLUMNS = (
    "id",
    "source",
    "channel",
    "published_at",
    "collected_at",
    "lang",
    "event",
    "deleted_at",
    "author",
    "title",
    "text",
    "url",
    "places",
    "place_ids",
    "cluster_id",
    "content_hash",
    "units",
    "people",
    "claims",
)
GEOJSON_PROPERTIES = (
    "item_id",
    "url",
    "source",
    "channel",
    "published_at",
    "collected_at",
    "lang",
    "place_id",
    "place_name",
    "place_text",
    "admin1",
    "country",
    "confidence",
    "title",
    "excerpt",
    "cluster_id",
    "deleted_at",
    "units",
    "people",
    "claims",
)
EXCERPT_CHARS = 140  # of text each side of the place mention in a GeoJSON feature
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


class _Head(msgspec.Struct):
    """The fields export needs to pick each item's latest version (unknown fields are ignored)."""

    id: str
    source: str
    channel: str
    collected_at: datetime
    content_hash: str = ""
    event: str = "new"
    published_at: datetime | None = None


_head_decoder = msgspec.json.Decoder(_Head)


def _iso(when: datetime | None) -> str | None:
    return as_utc(when).isoformat().replace("+00:00", "Z") if when is not None else None


def _iso_ts(ts: float | None) -> str | None:
    return _iso(datetime.fromtimestamp(ts, UTC)) if ts is not None else None


class _Selection:
    """Pass one: the winning version of each item id in the window, and deletion times."""

    def __init__(
        self,
        *,
        since: datetime | None,
        until: datetime | None,
        time_field: TimeField,
        sources: set[str],
        channels: set[str],
    ) -> None:
        self.since = since.timestamp() if since else None
        self.until = until.timestamp() if until else None
        self.time_field = time_field
        self.sources = sources
        self.channels = channels
        self.winners: dict[str, tuple[float, str]] = {}
        self.deleted: dict[str, float] = {}

    def admits(self, head: _Head) -> bool:
        if self.sources and head.source not in self.sources:
            return False
        if self.channels and head.channel.casefold() not in self.channels:
            return False
        when = head.published_at if self.time_field == "published" and head.published_at else head.collected_at
        ts = as_utc(when).timestamp()
        if self.since is not None and ts < self.since:
            return False
        return not (self.until is not None and ts >= self.until)

    def see(self, head: _Head) -> None:
        collected = as_utc(head.collected_at).timestamp()
        if head.event == "delete":
            known = self.deleted.get(head.id)
            if known is None or collected < known:
                self.deleted[head.id] = collected
            return
        if not self.admits(head):
            return
        current = self.winners.get(head.id)
        if current is None or collected > current[0]:
            self.winners[head.id] = (collected, head.content_hash)


def _lines(files: Sequence[Path], on_damage: DamageHandler | None) -> Iterator[tuple[Path, bytes]]:
    for path in files:
        for line in read_lines(path, on_damage=on_damage) if on_damage else read_lines(path):
            yield path, line


def _head(line: bytes) -> _Head | None:
    try:
        return _head_decoder.decode(line)
    except msgspec.DecodeError:
        return None


def select_items(
    archive_dir: Path,
    *,
    since: datetime | date | None = None,
    until: datetime | date | None = None,
    time_field: TimeField = "published",
    source: str | Sequence[str] | None = None,
    channel: str | Sequence[str] | None = None,
    on_damage: DamageHandler | None = None,
) -> Iterator[tuple[Item, bytes, float | None]]:
    """``(item, archived line, deleted_ts)`` for each selected item id once, in its latest version."""
    lower, upper = to_utc_datetime(since), to_utc_datetime(until)
    if time_field == "collected":
        since_day = lower.date() if lower else None
        until_day = (upper - timedelta(microseconds=1)).date() if upper else None
    else:  # publication precedes collection (one day of slack for clocks); no upper bound on the file day
        since_day = (lower - timedelta(days=1)).date() if lower else None
        until_day = None
    files = [path for _, path in archive_files(archive_dir, since_day=since_day, until_day=until_day)]
    sources = {source} if isinstance(source, str) else set(source or ())
    channels = {c.lstrip("@").casefold() for c in ([channel] if isinstance(channel, str) else list(channel or ()))}
    selection = _Selection(
        since=lower, until=upper, time_field=time_field, sources=sources - {""}, channels=channels - {""}
    )
    invalid = 0
    for _, line in _lines(files, on_damage):
        head = _head(line)
        if head is None:
            invalid += 1
            continue
        selection.see(head)
    if invalid:
        log.warning("archive lines that are not items were skipped", count=invalid)
    winners = selection.winners
    emitted: set[str] = set()
    for path, line in _lines(files, lambda _damage: None):  # damage was reported by the first pass
        head = _head(line)
        if head is None or head.id in emitted:
            continue
        winner = winners.get(head.id)
        if winner is None or head.event == "delete":
            continue
        if (as_utc(head.collected_at).timestamp(), head.content_hash) != winner:
            continue
        item = decode_line(line, path)
        if item is None:
            continue
        emitted.add(head.id)
        yield item, line, selection.deleted.get(item.id)
    missing = len(winners) - len(emitted)
    if missing:  # a file changed between the passes (a torn tail cut off by the archiver)
        log.warning("some selected items were not found again in the second pass", count=missing)


# --------------------------------------------------------------------------- writers


def _jsonl(out: IO[str], item: Item, line: bytes, deleted: float | None) -> int:
    if deleted is None:
        out.write(line.decode("utf-8"))
    else:
        record = json.loads(line)
        record["deleted_at"] = _iso_ts(deleted)
        out.write(json.dumps(record, ensure_ascii=False, separators=(",", ":")))
    out.write("\n")
    return 1


def _excel_safe(value: str) -> str:
    return "'" + value if value.startswith(_FORMULA_START) else value


def _csv_row(item: Item, deleted: float | None, safe: bool) -> list[str]:
    names = list(dict.fromkeys(p.name for p in item.entities.places if p.name))
    ids = list(dict.fromkeys(p.id for p in item.entities.places if p.id))
    values = [
        item.id,
        item.source,
        item.channel,
        _iso(item.published_at) or "",
        _iso(item.collected_at) or "",
        item.lang,
        item.event,
        _iso_ts(deleted) or "",
        item.author or "",
        item.title or "",
        item.text,
        item.url or "",
        "; ".join(names),
        " ".join(ids),
        item.cluster_id or "",
        item.content_hash,
        *_who_and_claims(item),
    ]
    return [_excel_safe(v) for v in values] if safe else values


def _who_and_claims(item: Item) -> tuple[str, str, str]:
    """The item's units, people and claims, each a ``; ``-joined string (QGIS and spreadsheets read
    strings; lists they do not)."""
    entities = item.entities
    return (
        "; ".join(dict.fromkeys(unit.name for unit in entities.units)),
        "; ".join(dict.fromkeys(person.name for person in entities.people)),
        "; ".join(dict.fromkeys(claim_label(quantity) for quantity in entities.quantities)),
    )


def _valid_point(place: Place) -> bool:
    lat, lon = place.lat, place.lon
    if lat is None or lon is None:
        return False
    if not (math.isfinite(lat) and math.isfinite(lon)):
        return False
    return -90.0 <= lat <= 90.0 and -180.0 <= lon <= 180.0


def place_excerpt(text: str, start: int, end: int, size: int = EXCERPT_CHARS) -> str:
    """The text around a mention, whitespace collapsed, with ``…`` where it was cut."""
    if not (0 <= start <= end <= len(text)):
        start = end = 0
    left = max(0, start - size)
    right = min(len(text), end + size)
    if left > 0:  # start at a word
        space = text.find(" ", left, start)
        left = space + 1 if space >= 0 else left
    if right < len(text):
        space = text.rfind(" ", end, right)
        right = space if space > end else right
    excerpt = " ".join(text[left:right].split())
    return ("…" if left > 0 else "") + excerpt + ("…" if right < len(text) else "")


def geojson_features(item: Item, deleted: float | None = None) -> list[dict[str, Any]]:
    """One RFC 7946 Point feature per distinct place of ``item`` that has valid coordinates."""
    features: list[dict[str, Any]] = []
    seen: set[Any] = set()
    units, people, claims = _who_and_claims(item)
    for place in item.entities.places:
        if not _valid_point(place):
            continue
        assert place.lat is not None and place.lon is not None
        key = place.id or (place.name, place.lat, place.lon)
        if key in seen:
            continue
        seen.add(key)
        surface = item.text[place.start : place.end] if 0 <= place.start < place.end <= len(item.text) else None
        properties = {
            "item_id": item.id,
            "url": item.url,
            "source": item.source,
            "channel": item.channel,
            "published_at": _iso(item.published_at),
            "collected_at": _iso(item.collected_at),
            "lang": item.lang,
            "place_id": place.id,
            "place_name": place.name,
            "place_text": surface,
            "admin1": place.admin1,
            "country": place.country,
            "confidence": place.confidence,
            "title": item.title,
            "excerpt": place_excerpt(item.text, place.start, place.end),
            "cluster_id": item.cluster_id,
            "deleted_at": _iso_ts(deleted),
            "units": units,
            "people": people,
            "claims": claims,
        }
        features.append(
            {
                "type": "Feature",
                "id": f"{item.id}#{place.id or len(features)}",
                "geometry": {"type": "Point", "coordinates": [round(place.lon, 6), round(place.lat, 6)]},
                "properties": properties,
            }
        )
    return features


def export(
    archive_dir: Path,
    out: IO[str],
    *,
    fmt: Format,
    since: datetime | date | None = None,
    until: datetime | date | None = None,
    time_field: TimeField = "published",
    source: str | Sequence[str] | None = None,
    channel: str | Sequence[str] | None = None,
    excel_safe: bool = False,
    on_damage: DamageHandler | None = None,
) -> int:
    """Write the selected archive to ``out`` in ``fmt``; returns the records written.

    Records are items for ``jsonl`` and ``csv``, features (item, place) for ``geojson``. For ``csv``
    open ``out`` with ``newline=""``.
    """
    if fmt not in FORMATS:
        raise ValueError(f"unknown export format {fmt!r}; use one of {', '.join(FORMATS)}")
    if not archive_dir.is_dir():
        raise ArchiveError(f"no archive at {archive_dir} (archive.dir); nothing has been archived yet")
    selected = select_items(
        archive_dir,
        since=since,
        until=until,
        time_field=time_field,
        source=source,
        channel=channel,
        on_damage=on_damage,
    )
    count = 0
    if fmt == "jsonl":
        for item, line, deleted in selected:
            count += _jsonl(out, item, line, deleted)
    elif fmt == "csv":
        writer = csv.writer(out)
        writer.writerow(CSV_COLUMNS)
        for item, _, deleted in selected:
            writer.writerow(_csv_row(item, deleted, excel_safe))
            count += 1
    else:
        out.write('{"type":"FeatureCollection","features":[')
        for item, _, deleted in selected:
            for feature in geojson_features(item, deleted):
                out.write(",\n" if count else "\n")
                out.write(json.dumps(feature, ensure_ascii=False, allow_nan=False, separators=(",", ":")))
                count += 1
        out.write("\n]}\n")
    return count


def export_file(archive_dir: Path, path: Path, *, fmt: Format, **options: Any) -> int:
    """``export`` to a file, atomically: written beside it under a temporary name, then renamed."""
    temporary = path.with_name(f".{path.name}.partial")
    try:
        with open(temporary, "w", encoding="utf-8", newline="") as out:
            count = export(archive_dir, out, fmt=fmt, **options)
            out.flush()
            os.fsync(out.fileno())
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    return count
