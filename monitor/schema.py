"""Wire models: RawItem, Item and Alert, and how they are encoded on a stream entry.

These sit on the hot path (every stage decodes and encodes one per entry), so they are msgspec
Structs: decoding validates in the same pass. Field names are a contract (DESIGN.md); new fields may
be added with defaults. Each stream entry has two fields: ``v`` (schema version) and ``data``
(compact JSON of the model).
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from typing import Any, Literal, TypeVar

import msgspec

SCHEMA_VERSION = 1

Source = Literal["telegram", "telegram_web", "telegram_export", "x", "feed", "corpus"]
Event = Literal["new", "edit", "delete"]
Severity = Literal["info", "low", "medium", "high", "critical"]

SOURCES: tuple[str, ...] = ("telegram", "telegram_web", "telegram_export", "x", "feed", "corpus")
TELEGRAM_SOURCES = frozenset({"telegram", "telegram_web", "telegram_export"})

# ``raw`` is kept for debugging and re-processing, but must not let one huge payload bloat a stream.
RAW_MAX_BYTES = 64 * 1024


class Media(msgspec.Struct, kw_only=True, omit_defaults=True):
    """One attachment: a photo, video, document or link preview."""

    type: str
    url: str | None = None
    id: str | None = None
    size: int | None = None


class Forward(msgspec.Struct, kw_only=True, omit_defaults=True):
    """Provenance of a repost: the channel and message it was forwarded or quoted from."""

    channel: str | None = None
    id: str | None = None
    name: str | None = None
    date: datetime | None = None


class Engagement(msgspec.Struct, kw_only=True, omit_defaults=True):
    """Public counters at collection time."""

    views: int | None = None
    forwards: int | None = None
    likes: int | None = None
    replies: int | None = None


class RawItem(msgspec.Struct, kw_only=True, omit_defaults=True):
    """What a collector saw, before any cleaning. One per post, article or edit."""

    source: Source
    channel: str
    external_id: str
    text: str
    collected_at: datetime
    url: str | None = None
    published_at: datetime | None = None
    author: str | None = None
    title: str | None = None
    html: str | None = None
    event: Event = "new"
    forwarded_from: Forward | None = None
    reply_to: str | None = None
    media: list[Media] = msgspec.field(default_factory=list)
    metrics: Engagement | None = None
    raw: dict[str, Any] | None = None
    # Numeric channel id where the platform has one (Telegram); it keys the item id when known.
    channel_id: int | None = None


class PlaceCandidate(msgspec.Struct, kw_only=True, omit_defaults=True):
    """Another place the same name could mean, kept when the text does not settle it."""

    id: str
    lat: float
    lon: float
    admin1: str | None = None
    country: str | None = None


class Place(msgspec.Struct, kw_only=True, omit_defaults=True):
    """A place named in the text, with its span and, when known, coordinates.

    ``id`` is the gazetteer id (``geonames:<id>`` or ``alias:<slug>``), ``name`` its canonical
    (English) name; ``confidence`` is 1.0 for an unambiguous name, lower when ``candidates`` lists
    the other places the name could mean.
    """

    name: str
    start: int
    end: int
    lat: float | None = None
    lon: float | None = None
    id: str | None = None
    admin1: str | None = None
    country: str | None = None
    geonames_id: int | None = None
    confidence: float = 1.0
    candidates: list[PlaceCandidate] = msgspec.field(default_factory=list)


class Unit(msgspec.Struct, kw_only=True, omit_defaults=True):
    """A military unit or formation named in the text, normalized to a canonical id."""

    id: str
    name: str
    start: int
    end: int


class Person(msgspec.Struct, kw_only=True, omit_defaults=True):
    """A person from the curated list named in the text."""

    id: str
    name: str
    start: int
    end: int


class Quantity(msgspec.Struct, kw_only=True, omit_defaults=True):
    """A claimed count: ``{kind, value, unit, span}`` ("3,574 tanks" -> kind losses, unit tanks)."""

    kind: str
    value: float
    unit: str
    start: int
    end: int


def claim_label(quantity: Quantity) -> str:
    """A quantity as a reader would say it: ``3,574 tanks (losses)``, ``24 attacks``, ``4 killed (casualties)``."""
    value = f"{quantity.value:,.0f}" if quantity.value == int(quantity.value) else f"{quantity.value:,g}"
    unit = quantity.unit.replace("_", " ")
    kind = quantity.kind.replace("_", " ")
    return f"{value} {unit}" if kind == unit else f"{value} {unit} ({kind})"


class Entities(msgspec.Struct, kw_only=True, omit_defaults=True):
    """What the text is about: places with coordinates, units, people and quantities, each with its span."""

    places: list[Place] = msgspec.field(default_factory=list)
    units: list[Unit] = msgspec.field(default_factory=list)
    people: list[Person] = msgspec.field(default_factory=list)
    quantities: list[Quantity] = msgspec.field(default_factory=list)


class Item(msgspec.Struct, kw_only=True, omit_defaults=True):
    """A normalized item: every RawItem field except html/raw, cleaned text, and derived fields."""

    id: str
    source: Source
    channel: str
    external_id: str
    text: str
    collected_at: datetime
    lang: str
    content_hash: str
    url: str | None = None
    published_at: datetime | None = None
    author: str | None = None
    title: str | None = None
    event: Event = "new"
    forwarded_from: Forward | None = None
    reply_to: str | None = None
    media: list[Media] = msgspec.field(default_factory=list)
    metrics: Engagement | None = None
    channel_id: int | None = None
    entities: Entities = msgspec.field(default_factory=Entities)
    cluster_id: str | None = None
    normalized_at: datetime | None = None


class MatchedTerm(msgspec.Struct, kw_only=True, omit_defaults=True):
    """One occurrence of a rule term in ``Item.text``: ``text[start:end]`` is what matched.

    ``form`` and ``via`` say which surface form of the term matched and how it was derived (a case
    form, a transliteration, a prefix); they are left out when the term matched as written.
    """

    term: str
    start: int
    end: int
    form: str | None = None
    via: str | None = None


class Alert(msgspec.Struct, kw_only=True, omit_defaults=True):
    """A rule fired on an item."""

    alert_id: str
    rule: str
    severity: Severity
    item_id: str
    fired_at: datetime
    matched: list[MatchedTerm]
    snippet: str
    source: Source
    channel: str
    url: str | None = None
    title: str | None = None
    published_at: datetime | None = None
    lang: str | None = None
    cluster_id: str | None = None
    # What the item is about, for the notification: each place, unit and person once (at its first
    # mention, places without their other candidates) and every claimed quantity. Spans index the item's
    # text. None when the item has no entities (or enrichment is off).
    entities: Entities | None = None


Model = TypeVar("Model", RawItem, Item, Alert)

_encoder = msgspec.json.Encoder()
_decoders: dict[type, msgspec.json.Decoder[Any]] = {
    RawItem: msgspec.json.Decoder(RawItem),
    Item: msgspec.json.Decoder(Item),
    Alert: msgspec.json.Decoder(Alert),
}


class WireError(ValueError):
    """A stream entry that can never be decoded (wrong version, bad JSON, missing field)."""


def utcnow() -> datetime:
    """The current time in UTC, as every timestamp in the system is."""
    return datetime.now(UTC)


def encode(model: msgspec.Struct) -> bytes:
    """Compact JSON for the ``data`` field of a stream entry."""
    return _encoder.encode(model)


def entry_fields(model: msgspec.Struct) -> dict[str, bytes | int]:
    """The two fields of a stream entry: ``v`` and ``data``."""
    return {"v": SCHEMA_VERSION, "data": encode(model)}


def decode(kind: type[Model], data: bytes | str) -> Model:
    """Decode and validate one model; raise WireError with the reason when that is impossible."""
    try:
        return _decoders[kind].decode(data)  # type: ignore[no-any-return]
    except msgspec.DecodeError as exc:  # ValidationError is a subclass
        raise WireError(f"{kind.__name__}: {exc}") from exc


def decode_entry(kind: type[Model], fields: dict[bytes, bytes]) -> Model:
    """Decode a stream entry's fields, checking the schema version first."""
    version = fields.get(b"v")
    if version is None or fields.get(b"data") is None:
        raise WireError("entry lacks the 'v' or 'data' field")
    if version != str(SCHEMA_VERSION).encode():
        raise WireError(f"unsupported schema version {version!r} (this build reads {SCHEMA_VERSION})")
    return decode(kind, fields[b"data"])


def bound_raw(raw: dict[str, Any] | None, limit: int = RAW_MAX_BYTES) -> dict[str, Any] | None:
    """Keep ``raw`` only while it is small; a larger one is replaced by a note of its size."""
    if raw is None:
        return None
    size = len(_encoder.encode(raw))
    if size <= limit:
        return raw
    return {"truncated": True, "bytes": size}


def platform_of(source: str) -> str:
    """The platform part of an item id: all Telegram collectors share ``telegram``."""
    return "telegram" if source in TELEGRAM_SOURCES else source


def channel_key(raw: RawItem) -> str:
    """The channel part of an item id: Telegram's numeric id when known, else the lowercased name."""
    if raw.source in TELEGRAM_SOURCES:
        if raw.channel_id is not None:
            return str(raw.channel_id)
        return raw.channel.lower().lstrip("@")
    return raw.channel


def item_id(raw: RawItem) -> str:
    """``platform:channel_key:external_id`` (DESIGN.md)."""
    return f"{platform_of(raw.source)}:{channel_key(raw)}:{raw.external_id}"


def short_hash(text: str | bytes, size: int = 16) -> str:
    """A stable hex digest used for content hashes and idempotency keys."""
    data = text.encode("utf-8", "surrogatepass") if isinstance(text, str) else text
    return hashlib.blake2b(data, digest_size=size).hexdigest()


def dedup_key(raw: RawItem | Item, the_item_id: str) -> str:
    """The idempotency key of one event: edits are keyed by the new text too, deletes by the id."""
    if raw.event == "edit":
        return f"{the_item_id}:edit:{short_hash(raw.text, 8)}"
    if raw.event == "delete":
        return f"{the_item_id}:delete"
    return the_item_id
