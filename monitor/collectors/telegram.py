"""Live Telegram collection through Telethon, built so that no channel post is ever missed.

Live updates (new messages, edits, deletions) arrive over the MTProto connection, but updates can be
lost: while the process is down, across reconnects, or when Telegram drops a difference. So the live
path is only the fast path. A reconciliation pass reads each channel's history from its checkpoint
onwards on start, after every reconnect and every ``reconcile_interval``, and publishes whatever the
live path did not. Both paths publish through the idempotent publisher, and both give a post the same
item id (``telegram:<channel id>:<message id>``), so a post seen twice is written once.

The checkpoint (the highest message id known to be published with nothing missing below it) moves
only after Redis accepted the items (``Emitter``). The live path moves it only when a message follows
the checkpoint directly; a gap is left for the reconciliation pass to fill, never skipped.

Telethon sits behind a small port (``TelegramPort``: resolve a channel, read its history) so the
collection logic runs in tests against real ``telethon.tl.types.Message`` objects without a network.
The mapping from messages to RawItems is a set of pure functions.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import re
import time
from collections import OrderedDict
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Final, Protocol

import structlog
from redis.exceptions import RedisError
from rich.console import Console
from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from telethon import TelegramClient, errors, events, utils
from telethon.tl import types

from monitor.bus.keys import Keys
from monitor.bus.publish import Publisher
from monitor.bus.redis import Redis, open_redis
from monitor.collectors.base import Checkpoints, Emitter
from monitor.config import Settings, TelegramSettings
from monitor.errors import MonitorError
from monitor.metrics import Metrics
from monitor.schema import Engagement, Event, Forward, Media, RawItem, bound_raw, utcnow

log = structlog.get_logger(__name__)

SOURCE: Final = "telegram"
# Messages per publish while reading history: the checkpoint moves after each batch.
HISTORY_BATCH = 100
# How long the live path waits for the other parts of an album before publishing it as one item.
ALBUM_DELAY = 1.0
# Albums whose first message id is remembered, so late parts and edits map onto the album's item.
ALBUM_MEMORY = 4096
# Reconnect backoff after Telethon gave up its own retries.
RECONNECT_INITIAL = 1.0
RECONNECT_MAX = 300.0
# Bytes values in ``raw`` larger than this are replaced by their length.
RAW_BYTES_INLINE = 64

Sleep = Callable[[float], Awaitable[None]]
Clock = Callable[[], float]


# --- errors ----------------------------------------------------------------------------------------


class FloodWait(Exception):
    """Telegram asked us to wait ``seconds`` before calling again (FLOOD_WAIT_X)."""

    def __init__(self, seconds: float) -> None:
        self.seconds = float(seconds)
        super().__init__(f"Telegram asks to wait {self.seconds:g} s")


class ChannelUnresolvable(MonitorError):
    """A configured channel reference that names no reachable channel."""

    def __init__(self, reference: str, reason: str) -> None:
        self.reference = reference
        self.reason = reason
        super().__init__(f"telegram channel {reference!r} cannot be resolved: {reason}")


class TelegramUnavailable(Exception):
    """A Telegram call failed for a reason other than a flood wait; ``kind`` is a bounded metric label."""

    def __init__(self, message: str, kind: str = "rpc") -> None:
        self.kind = kind
        super().__init__(message)


# --- channels --------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ChannelRef:
    """A resolved channel: Telethon's entity id and access hash, and how it is shown."""

    id: int
    access_hash: int
    username: str | None
    title: str

    @property
    def name(self) -> str:
        """The ``channel`` of its items, checkpoints and metric labels: the lowercased username, else the id."""
        return self.username.lower() if self.username else str(self.id)

    def link(self, message_id: int) -> str:
        """The public link of one post (the ``/c/`` form, for members only, when there is no username)."""
        if self.username:
            return f"https://t.me/{self.username}/{message_id}"
        return f"https://t.me/c/{self.id}/{message_id}"

    def to_json(self) -> str:
        return json.dumps(
            {"id": self.id, "access_hash": self.access_hash, "username": self.username, "title": self.title},
            ensure_ascii=False,
        )

    @classmethod
    def from_json(cls, data: str | bytes) -> ChannelRef:
        """Decode ``to_json`` output; raises ValueError when it is not one."""
        try:
            value = json.loads(data)
            return cls(
                id=int(value["id"]),
                access_hash=int(value["access_hash"]),
                username=value.get("username") or None,
                title=str(value.get("title") or ""),
            )
        except (TypeError, KeyError, json.JSONDecodeError) as exc:
            raise ValueError(f"not a stored channel: {exc}") from exc


_LINK = re.compile(r"^(?:https?://)?(?:www\.)?(?:t\.me|telegram\.me|telegram\.dog)/(?P<path>[^?#]*)", re.I)
_USERNAME = re.compile(r"[A-Za-z][A-Za-z0-9_]{2,31}")
_NUMERIC = re.compile(r"-?\d+")
# Telegram's "marked" form of a channel id, as used by bots and Telethon's get_peer_id: -100<id>.
_MARKED_CHANNEL = "-100"


def normalize_reference(reference: str) -> str:
    """One canonical form per channel reference: a lowercased username, or a channel id as digits.

    Accepts ``ab3army``, ``@ab3army``, ``https://t.me/ab3army``, ``t.me/s/ab3army``, a post link,
    ``https://t.me/c/1392375461/5``, ``-1001392375461`` and ``1392375461``.
    """
    text = reference.strip()
    match = _LINK.match(text)
    if match:
        parts = [p for p in match["path"].split("/") if p]
        if parts and parts[0] == "s":
            parts = parts[1:]
        if len(parts) >= 2 and parts[0] == "c":
            text = parts[1]
        elif parts:
            text = parts[0]
        else:
            raise ChannelUnresolvable(reference, "the link names no channel")
    text = text.lstrip("@")
    if _NUMERIC.fullmatch(text):
        if text.startswith(_MARKED_CHANNEL):
            text = text[len(_MARKED_CHANNEL) :]
        elif text.startswith("-"):
            raise ChannelUnresolvable(reference, "a negative id that is not -100<id> is a basic group, not a channel")
        channel_id = int(text)
        if channel_id <= 0:
            raise ChannelUnresolvable(reference, "a channel id is a positive number")
        return str(channel_id)
    if _USERNAME.fullmatch(text):
        return text.lower()
    raise ChannelUnresolvable(reference, "expected a username, a t.me link or a numeric channel id")


# --- mapping: Telethon messages -> RawItems --------------------------------------------------------


def _utc(value: datetime | None) -> datetime | None:
    if value is None:
        return None
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


def _json_safe(value: Any) -> Any:
    """A JSON-encodable copy of a Telethon ``to_dict()``, without the empty fields that bloat it."""
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for key, item in value.items():
            if item is None or (isinstance(item, list | tuple | dict) and not item):
                continue
            out[str(key)] = _json_safe(item)
        return out
    if isinstance(value, list | tuple):
        return [_json_safe(item) for item in value]
    if isinstance(value, datetime):
        moment = _utc(value)
        return moment.isoformat().replace("+00:00", "Z") if moment else None
    if isinstance(value, bytes):
        if len(value) <= RAW_BYTES_INLINE:
            return base64.b64encode(value).decode("ascii")
        return {"bytes": len(value)}
    if isinstance(value, bool) or value is None or isinstance(value, str | float):
        return value
    if isinstance(value, int):
        # Telegram ids fit in 64 bits; anything wider could not be encoded as a JSON number by msgspec.
        return value if -(2**63) <= value < 2**64 else str(value)
    return repr(value)


def _raw_of(message: Any) -> dict[str, Any]:
    try:
        data = message.to_dict()
    except (AttributeError, TypeError, ValueError):
        return {"id": getattr(message, "id", None)}
    safe = _json_safe(data)
    return safe if isinstance(safe, dict) else {"value": safe}


def _snake(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


def _photo_size(photo: Any) -> int | None:
    """The byte size of a photo's largest stored size, when Telegram told it."""
    best: int | None = None
    for size in getattr(photo, "sizes", None) or []:
        if isinstance(size, types.PhotoSize):
            candidate = size.size
        elif isinstance(size, types.PhotoSizeProgressive):
            candidate = max(size.sizes) if size.sizes else None
        elif isinstance(size, types.PhotoCachedSize):
            candidate = len(size.bytes)
        else:  # stripped thumbnails, vector outlines, empty sizes
            continue
        if candidate is not None and (best is None or candidate > best):
            best = candidate
    return best


def _document_type(document: Any) -> str:
    attributes = getattr(document, "attributes", None) or []
    kinds = {type(a) for a in attributes}
    if types.DocumentAttributeSticker in kinds:
        return "sticker"
    if types.DocumentAttributeAnimated in kinds:
        return "animation"
    for attribute in attributes:
        if isinstance(attribute, types.DocumentAttributeVideo):
            return "video"
        if isinstance(attribute, types.DocumentAttributeAudio):
            return "voice" if attribute.voice else "audio"
    return "document"


def media_of(media: Any) -> list[Media]:
    """The attachment of one message as ``Media`` (none for text-only messages). Nothing is downloaded."""
    if media is None or isinstance(media, types.MessageMediaEmpty):
        return []
    if isinstance(media, types.MessageMediaPhoto):
        photo = media.photo
        if isinstance(photo, types.Photo):
            return [Media(type="photo", id=str(photo.id), size=_photo_size(photo))]
        return [Media(type="photo")]
    if isinstance(media, types.MessageMediaDocument):
        document = media.document
        if isinstance(document, types.Document):
            return [Media(type=_document_type(document), id=str(document.id), size=document.size)]
        return [Media(type="document")]
    if isinstance(media, types.MessageMediaWebPage):
        page = media.webpage
        page_id = getattr(page, "id", None)
        return [Media(type="webpage", url=getattr(page, "url", None) or None, id=str(page_id) if page_id else None)]
    if isinstance(media, types.MessageMediaPoll):
        return [Media(type="poll", id=str(media.poll.id))]
    if isinstance(media, types.MessageMediaGeo):
        return [Media(type="geo")]
    if isinstance(media, types.MessageMediaGeoLive):
        return [Media(type="geo_live")]
    name = type(media).__name__.removeprefix("MessageMedia") or "unknown"
    return [Media(type=_snake(name))]


def _forward_of(message: Any) -> Forward | None:
    header = getattr(message, "fwd_from", None)
    if not isinstance(header, types.MessageFwdHeader):
        return None
    source = header.from_id
    channel: str | None = None
    title: str | None = None
    if isinstance(source, types.PeerChannel):
        channel = str(source.channel_id)
        # A message that came through a live client may know the source entity (never a network call).
        entity = getattr(getattr(message, "forward", None), "chat", None)
        username = getattr(entity, "username", None)
        if isinstance(username, str) and username:
            channel = username.lower()
        entity_title = getattr(entity, "title", None)
        title = entity_title if isinstance(entity_title, str) else None
    elif isinstance(source, types.PeerChat):
        channel = str(source.chat_id)
    return Forward(
        channel=channel,
        id=str(header.channel_post) if header.channel_post else None,
        name=header.from_name or header.post_author or title,
        date=_utc(header.date),
    )


def _reply_to_of(message: Any) -> str | None:
    header = getattr(message, "reply_to", None)
    if isinstance(header, types.MessageReplyHeader) and header.reply_to_msg_id:
        return str(header.reply_to_msg_id)
    return None


def _engagement_of(messages: Iterable[Any]) -> Engagement | None:
    def largest(values: Iterable[int | None]) -> int | None:
        present = [v for v in values if v is not None]
        return max(present) if present else None

    parts = list(messages)
    views = largest(getattr(m, "views", None) for m in parts)
    forwards = largest(getattr(m, "forwards", None) for m in parts)
    replies = largest(getattr(getattr(m, "replies", None), "replies", None) for m in parts)
    if views is None and forwards is None and replies is None:
        return None
    return Engagement(views=views, forwards=forwards, replies=replies)


def delete_to_raw(message_id: int, *, channel: ChannelRef, collected_at: datetime | None = None) -> RawItem:
    """The ``delete`` event of one message: no text, keyed like the post it removes."""
    return RawItem(
        source=SOURCE,
        channel=channel.name,
        channel_id=channel.id,
        external_id=str(message_id),
        text="",
        collected_at=collected_at or utcnow(),
        url=channel.link(message_id),
        event="delete",
    )


def message_to_raw(
    message: types.Message,
    *,
    channel: ChannelRef,
    collected_at: datetime | None = None,
    event: Event = "new",
) -> RawItem:
    """One channel message as a RawItem (``event`` says whether it is new, an edit or a deletion)."""
    collected = collected_at or utcnow()
    if event == "delete":
        return delete_to_raw(message.id, channel=channel, collected_at=collected)
    return RawItem(
        source=SOURCE,
        channel=channel.name,
        channel_id=channel.id,
        external_id=str(message.id),
        text=message.message or "",
        collected_at=collected,
        url=channel.link(message.id),
        published_at=_utc(message.date),
        author=message.post_author or None,
        event=event,
        forwarded_from=_forward_of(message),
        reply_to=_reply_to_of(message),
        media=media_of(message.media),
        metrics=_engagement_of([message]),
        raw=bound_raw(_raw_of(message)),
    )


def album_to_raw(
    messages: Sequence[types.Message],
    *,
    channel: ChannelRef,
    collected_at: datetime | None = None,
    event: Event = "new",
) -> RawItem:
    """The parts of one album (same ``grouped_id``) as a single item, keyed by the smallest message id.

    The text is the caption (the part that has text; several captions are joined in id order), the
    media are every part's, and the counters are the largest among the parts.
    """
    if not messages:
        raise ValueError("an album needs at least one message")
    parts = sorted(messages, key=lambda m: m.id)
    head = parts[0]
    collected = collected_at or utcnow()
    if event == "delete":
        return delete_to_raw(head.id, channel=channel, collected_at=collected)
    captions = list(dict.fromkeys(m.message for m in parts if m.message))
    return RawItem(
        source=SOURCE,
        channel=channel.name,
        channel_id=channel.id,
        external_id=str(head.id),
        text="\n\n".join(captions),
        collected_at=collected,
        url=channel.link(head.id),
        published_at=_utc(head.date),
        author=next((m.post_author for m in parts if m.post_author), None),
        event=event,
        forwarded_from=next((f for f in map(_forward_of, parts) if f is not None), None),
        reply_to=next((r for r in map(_reply_to_of, parts) if r is not None), None),
        media=[item for m in parts for item in media_of(m.media)],
        metrics=_engagement_of(parts),
        raw=bound_raw({"album": [_raw_of(m) for m in parts]}),
    )


def group_messages(messages: Iterable[types.Message]) -> list[list[types.Message]]:
    """Messages as publishable units: a single message, or all parts of one album; ordered by first id."""
    units: dict[tuple[str, int], list[types.Message]] = {}
    for message in messages:
        key = ("album", message.grouped_id) if message.grouped_id else ("message", message.id)
        units.setdefault(key, []).append(message)
    grouped = [sorted(unit, key=lambda m: m.id) for unit in units.values()]
    return sorted(grouped, key=lambda unit: unit[0].id)


def items_of(
    messages: Iterable[types.Message], *, channel: ChannelRef, collected_at: datetime | None = None
) -> list[RawItem]:
    """RawItems for a run of messages: one per single message, one per album."""
    collected = collected_at or utcnow()
    return [
        album_to_raw(unit, channel=channel, collected_at=collected)
        if unit[0].grouped_id
        else message_to_raw(unit[0], channel=channel, collected_at=collected)
        for unit in group_messages(messages)
    ]


async def _batches(source: AsyncIterable[types.Message], size: int) -> AsyncIterator[list[types.Message]]:
    """Consecutive batches of about ``size`` messages that never split an album across two batches."""
    batch: list[types.Message] = []
    async for message in source:
        if len(batch) >= size and not (message.grouped_id and message.grouped_id == batch[-1].grouped_id):
            yield batch
            batch = []
        batch.append(message)
    if batch:
        yield batch


async def _iterate(messages: Iterable[types.Message]) -> AsyncIterator[types.Message]:
    for message in messages:
        yield message


# --- the port: the only place that talks to Telegram ----------------------------------------------


class TelegramPort(Protocol):
    """What the collector needs from Telegram; ``TelethonPort`` in production, a fake in tests.

    Every method raises ``FloodWait`` when Telegram asks to wait and ``TelegramUnavailable`` on other
    failures of the call.
    """

    async def resolve(self, reference: str) -> ChannelRef:
        """A username, t.me link or numeric id -> the channel; raises ``ChannelUnresolvable``."""
        ...

    def iter_history(
        self, channel: ChannelRef, *, min_id: int = 0, limit: int | None = None, since: datetime | None = None
    ) -> AsyncIterator[types.Message]:
        """Messages with an id above ``min_id`` (and, with ``since``, posted after it), oldest first.

        ``limit`` caps the count: the first ``limit`` messages in that order.
        """
        ...

    async def recent(self, channel: ChannelRef, limit: int) -> list[types.Message]:
        """The newest ``limit`` messages of a channel, returned oldest first (for the first run)."""
        ...


@contextlib.contextmanager
def _translated_errors(channel: ChannelRef) -> Iterator[None]:
    """Telethon's errors while reading a channel, as the port's own: FloodWait or TelegramUnavailable."""
    try:
        yield
    except (errors.FloodWaitError, errors.FloodPremiumWaitError) as exc:
        raise FloodWait(exc.seconds) from exc
    except errors.ChannelPrivateError as exc:
        raise TelegramUnavailable(f"{channel.name}: {exc}", "private") from exc
    except errors.RPCError as exc:
        raise TelegramUnavailable(f"{channel.name}: {exc}") from exc
    except ConnectionError as exc:
        raise TelegramUnavailable(f"{channel.name}: {exc}", "connection") from exc


class TelethonPort(TelegramPort):
    """``TelegramPort`` over a connected ``telethon.TelegramClient``."""

    def __init__(self, client: TelegramClient) -> None:
        self.client = client

    async def resolve(self, reference: str) -> ChannelRef:
        key = normalize_reference(reference)
        target: Any = types.PeerChannel(int(key)) if key.isdigit() else key
        try:
            entity = await self.client.get_entity(target)
        except (errors.FloodWaitError, errors.FloodPremiumWaitError) as exc:
            raise FloodWait(exc.seconds) from exc
        except (errors.UsernameNotOccupiedError, errors.UsernameInvalidError, errors.ChannelPrivateError) as exc:
            raise ChannelUnresolvable(reference, str(exc).split(" (caused by")[0]) from exc
        except ValueError as exc:  # Telethon: "Cannot find any entity corresponding to ..."
            raise ChannelUnresolvable(reference, str(exc)) from exc
        except errors.RPCError as exc:
            raise TelegramUnavailable(f"resolving {reference!r}: {exc}") from exc
        except ConnectionError as exc:
            raise TelegramUnavailable(f"resolving {reference!r}: {exc}", "connection") from exc
        if not isinstance(entity, types.Channel):
            raise ChannelUnresolvable(reference, f"it is a {type(entity).__name__}, not a channel or supergroup")
        if entity.access_hash is None:
            raise ChannelUnresolvable(reference, "Telegram returned the channel without an access hash")
        return ChannelRef(id=entity.id, access_hash=entity.access_hash, username=entity.username, title=entity.title)

    @staticmethod
    def _peer(channel: ChannelRef) -> types.InputPeerChannel:
        return types.InputPeerChannel(channel_id=channel.id, access_hash=channel.access_hash)

    async def iter_history(
        self, channel: ChannelRef, *, min_id: int = 0, limit: int | None = None, since: datetime | None = None
    ) -> AsyncIterator[types.Message]:
        messages = self.client.iter_messages(
            self._peer(channel), min_id=min_id, reverse=True, limit=limit, offset_date=since
        )
        with _translated_errors(channel):
            async for message in messages:
                # Service messages (pins, title changes) carry no post; they are skipped, not published.
                if isinstance(message, types.Message):
                    yield message

    async def recent(self, channel: ChannelRef, limit: int) -> list[types.Message]:
        if limit <= 0:
            return []
        with _translated_errors(channel):
            found = [m async for m in self.client.iter_messages(self._peer(channel), limit=limit)]
        return sorted((m for m in found if isinstance(m, types.Message)), key=lambda m: m.id)


# --- the channel directory -------------------------------------------------------------------------


class ChannelDirectory:
    """Configured references -> ``ChannelRef``, resolved once and kept in Redis across restarts.

    Resolving a username is one of Telegram's most rate-limited calls, so each reference is resolved
    only when the hash ``keys.telegram_entities`` does not have it yet. A reference that cannot be
    resolved is reported once (log and ``collector_errors{kind="unresolved"}``) and then skipped.
    """

    def __init__(self, redis: Redis, keys: Keys, port: TelegramPort, metrics: Metrics) -> None:
        self.redis = redis
        self.keys = keys
        self.port = port
        self.metrics = metrics
        self._cache: dict[str, ChannelRef] = {}
        self._unresolvable: dict[str, str] = {}

    @property
    def unresolvable(self) -> dict[str, str]:
        """References given up on in this process, with the reason."""
        return dict(self._unresolvable)

    def _report(self, reference: str, label: str, reason: str) -> None:
        if label in self._unresolvable:
            return
        self._unresolvable[label] = reason
        self.metrics.collector_errors.labels(SOURCE, label, "unresolved").inc()
        log.error("telegram channel skipped: cannot resolve it", reference=reference, reason=reason)

    async def resolve(self, reference: str) -> ChannelRef | None:
        """The channel behind ``reference``, or None when it cannot be resolved. Raises ``FloodWait``."""
        try:
            key = normalize_reference(reference)
        except ChannelUnresolvable as exc:
            self._report(reference, reference.strip()[:64] or "(empty)", exc.reason)
            return None
        if key in self._cache:
            return self._cache[key]
        if key in self._unresolvable:
            return None
        stored = await self.redis.hget(self.keys.telegram_entities, key)
        if stored is not None:
            try:
                ref = ChannelRef.from_json(stored)
            except ValueError:
                log.warning("stored telegram channel is unreadable; resolving it again", reference=key)
            else:
                self._cache[key] = ref
                return ref
        try:
            ref = await self.port.resolve(key)
        except ChannelUnresolvable as exc:
            self._report(reference, key, exc.reason)
            return None
        await self.redis.hset(self.keys.telegram_entities, key, ref.to_json())
        self._cache[key] = ref
        log.info("telegram channel resolved", reference=key, channel_id=ref.id, title=ref.title)
        return ref


# --- the collector ---------------------------------------------------------------------------------


@dataclass(slots=True)
class _AlbumBuffer:
    channel: ChannelRef
    parts: dict[int, types.Message] = field(default_factory=dict)
    task: asyncio.Task[None] | None = None


class TelegramCollector:
    """Live updates plus periodic reconciliation against channel history, publishing each post once."""

    source = SOURCE

    def __init__(
        self,
        settings: TelegramSettings,
        port: TelegramPort,
        emitter: Emitter,
        checkpoints: Checkpoints,
        metrics: Metrics,
        directory: ChannelDirectory,
        *,
        sleep: Sleep = asyncio.sleep,
        clock: Clock = time.monotonic,
        album_delay: float = ALBUM_DELAY,
    ) -> None:
        self.settings = settings
        self.port = port
        self.emitter = emitter
        self.checkpoints = checkpoints
        self.metrics = metrics
        self.directory = directory
        self.sleep = sleep
        self.clock = clock
        self.album_delay = album_delay
        # True once live updates flow (a live event arrived, or ``run`` finished its start-up pass): what
        # reconciliation publishes from then on was missed by the live path and counts as a fill.
        self.live = False
        self.channels: dict[int, ChannelRef] = {}
        self._paused_until: dict[str, float] = {}
        self._locks: dict[int, asyncio.Lock] = {}
        self._albums: dict[tuple[int, int], _AlbumBuffer] = {}
        self._album_heads: OrderedDict[tuple[int, int], int] = OrderedDict()
        self._album_tasks: set[asyncio.Task[None]] = set()
        self._handlers: list[Callable[..., Any]] = []
        self._listening: frozenset[int] = frozenset()

    # -- flood waits --------------------------------------------------------------------------------

    def paused(self, label: str) -> bool:
        """True while a long flood wait pauses this channel; keeps the ``flood_wait`` gauge current."""
        until = self._paused_until.get(label)
        if until is None:
            return False
        remaining = until - self.clock()
        gauge = self.metrics.flood_wait.labels(self.source, label)
        if remaining > 0:
            gauge.set(remaining)
            return True
        del self._paused_until[label]
        gauge.set(0)
        log.info("telegram flood wait over; channel resumes", channel=label)
        return False

    async def _flood(self, label: str, seconds: float) -> bool:
        """Handle a flood wait: sleep through a short one (True: retry now), pause the channel otherwise."""
        gauge = self.metrics.flood_wait.labels(self.source, label)
        self.emitter.error(self.source, label, "flood_wait")
        cap = self.settings.flood_wait_cap
        if seconds <= cap:
            log.warning("telegram flood wait; sleeping", channel=label, seconds=seconds)
            gauge.set(seconds)
            try:
                await self.sleep(seconds)
            finally:
                gauge.set(0)
            return True
        self._paused_until[label] = self.clock() + seconds
        gauge.set(seconds)
        log.warning(
            "telegram flood wait above the cap; pausing this channel only",
            channel=label,
            seconds=seconds,
            cap=cap,
            setting="collectors.telegram.flood_wait_cap",
        )
        return False

    # -- channels -----------------------------------------------------------------------------------

    async def resolve_channels(self) -> list[ChannelRef]:
        """Every configured channel that resolves (from Redis when known), without duplicates."""
        resolved: dict[int, ChannelRef] = {}
        for reference in self.settings.channels:
            try:
                label = normalize_reference(reference)
            except ChannelUnresolvable:
                label = reference
            while not self.paused(label):
                try:
                    ref = await self.directory.resolve(reference)
                except FloodWait as exc:
                    if await self._flood(label, exc.seconds):
                        continue
                    break
                except TelegramUnavailable as exc:
                    self.emitter.error(self.source, label, exc.kind)
                    log.warning("telegram channel not resolved this time", reference=reference, error=str(exc))
                    break
                if ref is not None:
                    resolved.setdefault(ref.id, ref)
                break
        self.channels.update(resolved)
        return list(resolved.values())

    def _lock(self, channel: ChannelRef) -> asyncio.Lock:
        return self._locks.setdefault(channel.id, asyncio.Lock())

    def _remember_album(self, channel: ChannelRef, grouped_id: int, head: int) -> int:
        """The album's first message id: the one already published for it, else ``head``."""
        key = (channel.id, grouped_id)
        known = self._album_heads.get(key)
        if known is not None and known <= head:
            self._album_heads.move_to_end(key)
            return known
        self._album_heads[key] = head
        self._album_heads.move_to_end(key)
        while len(self._album_heads) > ALBUM_MEMORY:
            self._album_heads.popitem(last=False)
        return head

    def _items_of(self, channel: ChannelRef, messages: Iterable[types.Message]) -> list[RawItem]:
        """RawItems for publishable units.

        Parts of an album that is already out under an earlier id are not a new post: when they carry
        a caption it goes out as an ``edit`` of the album's item (so its text is not lost), else nothing.
        """
        collected_at = utcnow()
        items: list[RawItem] = []
        for unit in group_messages(messages):
            head = unit[0]
            if head.grouped_id:
                first = self._remember_album(channel, head.grouped_id, head.id)
                if first < head.id:
                    if any(m.message for m in unit):
                        edit = album_to_raw(unit, channel=channel, collected_at=collected_at, event="edit")
                        edit.external_id, edit.url = str(first), channel.link(first)
                        items.append(edit)
                    continue
                items.append(album_to_raw(unit, channel=channel, collected_at=collected_at))
            else:
                items.append(message_to_raw(head, channel=channel, collected_at=collected_at))
        return items

    # -- reconciliation -----------------------------------------------------------------------------

    async def _publish_history(self, channel: ChannelRef, messages: AsyncIterable[types.Message]) -> int:
        published = 0
        async for batch in _batches(messages, HISTORY_BATCH):
            items = self._items_of(channel, batch)
            async with self._lock(channel):
                result = await self.emitter.emit(self.source, channel.name, items, checkpoint=max(m.id for m in batch))
            published += result.published
            if self.live and result.published:
                self.metrics.reconciliation_fills.labels(self.source, channel.name).inc(result.published)
                log.info(
                    "reconciliation filled posts the live path missed", channel=channel.name, count=result.published
                )
        return published

    async def reconcile(self, channel: ChannelRef) -> int:
        """Publish everything newer than the checkpoint (the last ``initial_history`` posts on a first run).

        Returns how many items were published (duplicates of what the live path sent are not counted).
        Raises ``TelegramUnavailable`` and Redis errors; the checkpoint then stays where it was published to.
        """
        published = 0
        while not self.paused(channel.name):
            checkpoint = await self.checkpoints.get_int(self.source, channel.name)
            try:
                if checkpoint == 0:
                    published += await self._first_run(channel)
                else:
                    history = self.port.iter_history(channel, min_id=checkpoint, limit=None)
                    published += await self._publish_history(channel, history)
            except FloodWait as exc:
                if await self._flood(channel.name, exc.seconds):
                    continue  # the checkpoint holds whatever was published before the wait
                break
            break
        return published

    async def _first_run(self, channel: ChannelRef) -> int:
        wanted = self.settings.initial_history
        messages = await self.port.recent(channel, max(wanted, 1))
        if wanted == 0:
            # Nothing back-filled: start from the newest post so that everything after it is collected.
            if messages:
                await self.emitter.emit(self.source, channel.name, [], checkpoint=max(m.id for m in messages))
            return 0
        newest = max((m.id for m in messages), default=0)
        if len(messages) >= wanted and messages and messages[0].grouped_id:
            # The window starts inside an album whose first parts are older than it: leave that album out
            # rather than publish it under an id that is not its first.
            cut = messages[0].grouped_id
            messages = [m for m in messages if m.grouped_id != cut]
        log.info("telegram first run: reading recent history", channel=channel.name, messages=len(messages))
        published = await self._publish_history(channel, _iterate(messages))
        if newest:
            await self.emitter.emit(self.source, channel.name, [], checkpoint=newest)
        return published

    async def reconcile_all(self) -> None:
        """One reconciliation pass over every configured channel; one failing channel never stops the others."""
        for channel in await self.resolve_channels():
            try:
                await self.reconcile(channel)
            except TelegramUnavailable as exc:
                self.emitter.error(self.source, channel.name, exc.kind)
                log.warning("telegram history read failed; retrying next pass", channel=channel.name, error=str(exc))
            except (RedisError, OSError) as exc:
                self.emitter.error(self.source, channel.name, "redis")
                log.warning(
                    "publishing failed; checkpoint kept, retrying next pass", channel=channel.name, error=str(exc)
                )

    # -- live updates -------------------------------------------------------------------------------

    async def _publish_live(self, channel: ChannelRef, messages: Sequence[types.Message]) -> None:
        items = self._items_of(channel, messages)
        ids = sorted(m.id for m in messages)
        try:
            async with self._lock(channel):
                checkpoint = await self.checkpoints.get_int(self.source, channel.name)
                # Move the checkpoint only when these ids follow it directly: a gap is reconciliation's job.
                follows = checkpoint > 0 and ids == list(range(checkpoint + 1, checkpoint + 1 + len(ids)))
                await self.emitter.emit(self.source, channel.name, items, checkpoint=ids[-1] if follows else None)
        except (RedisError, OSError) as exc:
            self.emitter.error(self.source, channel.name, "redis")
            log.warning(
                "publishing a live post failed; reconciliation will retry", channel=channel.name, error=str(exc)
            )

    async def on_message(self, message: types.Message, channel: ChannelRef) -> None:
        """A live new post. Album parts wait ``album_delay`` for their siblings, then go out as one item."""
        self.live = True
        if message.grouped_id:
            key = (channel.id, message.grouped_id)
            buffer = self._albums.get(key)
            if buffer is None:
                buffer = self._albums[key] = _AlbumBuffer(channel=channel)
                buffer.task = asyncio.create_task(self._flush_later(key), name=f"telegram-album-{message.grouped_id}")
                self._album_tasks.add(buffer.task)
                buffer.task.add_done_callback(self._album_tasks.discard)
            buffer.parts[message.id] = message
            return
        await self._publish_live(channel, [message])

    async def _flush_later(self, key: tuple[int, int]) -> None:
        await asyncio.sleep(self.album_delay)
        buffer = self._albums.pop(key, None)
        if buffer is not None:
            await self._publish_live(buffer.channel, list(buffer.parts.values()))

    async def flush_albums(self) -> None:
        """Publish every album still waiting for parts now, and wait for those being published (on shutdown)."""
        while self._albums:
            key, buffer = next(iter(self._albums.items()))
            del self._albums[key]
            if buffer.task is not None:
                buffer.task.cancel()  # still sleeping: its buffer was in the map
            await self._publish_live(buffer.channel, list(buffer.parts.values()))
        pending = [t for t in self._album_tasks if t is not asyncio.current_task()]
        if pending:
            await asyncio.gather(*pending, return_exceptions=True)

    async def on_edit(self, message: types.Message, channel: ChannelRef) -> None:
        """A live edit: an ``edit`` event of the post's item (an album's item for a caption edit)."""
        self.live = True
        raw = message_to_raw(message, channel=channel, event="edit")
        if message.grouped_id:
            if not message.message:
                return  # an album part without caption: the album's text did not change
            head = self._album_heads.get((channel.id, message.grouped_id))
            if head is not None and head != message.id:
                raw.external_id = str(head)
                raw.url = channel.link(head)
        try:
            await self.emitter.emit(self.source, channel.name, [raw])
        except (RedisError, OSError) as exc:
            self.emitter.error(self.source, channel.name, "redis")
            log.warning("publishing an edit failed", channel=channel.name, message_id=message.id, error=str(exc))

    async def on_delete(self, message_ids: Sequence[int], channel: ChannelRef) -> None:
        """Live deletions: one ``delete`` event per message id."""
        self.live = True
        collected_at = utcnow()
        items = [delete_to_raw(i, channel=channel, collected_at=collected_at) for i in message_ids]
        try:
            await self.emitter.emit(self.source, channel.name, items)
        except (RedisError, OSError) as exc:
            self.emitter.error(self.source, channel.name, "redis")
            log.warning("publishing deletions failed", channel=channel.name, count=len(items), error=str(exc))

    # -- the production supervisor ------------------------------------------------------------------

    def _listen(self, client: TelegramClient) -> None:
        """(Re-)register the live handlers whenever the set of resolved channels changed."""
        wanted = frozenset(self.channels)
        if self._handlers and wanted == self._listening:
            return
        self._unlisten(client)
        by_peer = {utils.get_peer_id(types.PeerChannel(c.id)): c for c in self.channels.values()}
        chats = list(by_peer)  # marked ids (-100...): unambiguous, unlike bare ids

        async def new_message(event: Any) -> None:
            channel = by_peer.get(event.chat_id)
            if channel is not None:
                await self.on_message(event.message, channel)

        async def edited(event: Any) -> None:
            channel = by_peer.get(event.chat_id)
            if channel is not None:
                await self.on_edit(event.message, channel)

        async def deleted(event: Any) -> None:
            channel = by_peer.get(event.chat_id)
            if channel is not None:
                await self.on_delete(list(event.deleted_ids), channel)

        client.add_event_handler(new_message, events.NewMessage(chats=chats))
        client.add_event_handler(edited, events.MessageEdited(chats=chats))
        client.add_event_handler(deleted, events.MessageDeleted(chats=chats))
        self._handlers = [new_message, edited, deleted]
        self._listening = wanted
        log.info("telegram collector listening", channels=sorted(c.name for c in self.channels.values()))

    def _unlisten(self, client: TelegramClient) -> None:
        for handler in self._handlers:
            client.remove_event_handler(handler)
        self._handlers = []
        self._listening = frozenset()

    @staticmethod
    def _hook_reconnects(client: TelegramClient, reconnected: asyncio.Event) -> None:
        """Set ``reconnected`` whenever Telethon re-establishes the connection by itself.

        Telethon does not fetch the updates missed across its automatic reconnects (its
        ``_handle_auto_reconnect`` only re-subscribes), so each one must trigger a reconciliation pass.
        There is no public hook; this wraps the sender's callback and degrades to the periodic pass
        alone if a future Telethon renames it.
        """
        sender = getattr(client, "_sender", None)
        if sender is None or not hasattr(sender, "_auto_reconnect_callback"):
            log.warning("cannot observe Telethon reconnects; relying on the periodic reconciliation")
            return
        original = sender._auto_reconnect_callback

        async def on_reconnect() -> None:
            reconnected.set()
            if original is not None:
                await original()

        sender._auto_reconnect_callback = on_reconnect

    async def run(self, client: TelegramClient, stop: asyncio.Event) -> None:
        """Connect, listen and reconcile until ``stop``; reconnect with exponential backoff when dropped."""
        backoff = RECONNECT_INITIAL
        reconnected = asyncio.Event()
        self._hook_reconnects(client, reconnected)
        try:
            while not stop.is_set():
                try:
                    if not client.is_connected():
                        await client.connect()
                    if not await client.is_user_authorized():
                        raise MonitorError(
                            f"the Telegram session {self.settings.session} is not logged in; "
                            "run `monitor telegram login` first"
                        )
                    # Listen before the first pass, so nothing falls between the history read and live updates.
                    await self.resolve_channels()
                    self._listen(client)
                    backoff = RECONNECT_INITIAL
                    await self._serve(client, stop, reconnected)
                except OSError as exc:  # ConnectionError is an OSError
                    log.warning("telegram connection lost; reconnecting", error=str(exc), retry_in=backoff)
                    await _wait(stop, backoff)
                    backoff = min(backoff * 2, RECONNECT_MAX)
        finally:
            await self.flush_albums()
            self._unlisten(client)
            with contextlib.suppress(OSError, RuntimeError):
                await client.disconnect()

    async def _serve(self, client: TelegramClient, stop: asyncio.Event, reconnected: asyncio.Event) -> None:
        """Reconcile now, after each automatic reconnect and every ``reconcile_interval``.

        Returns on stop; raises ConnectionError when Telethon gave up reconnecting.
        """
        disconnected: asyncio.Future[Any] = client.disconnected
        while not stop.is_set():
            reconnected.clear()
            await self.reconcile_all()
            self._listen(client)  # channels resolved only now (after a flood wait, say) start listening too
            # From here on the live path is listening: what a later pass finds, it had missed. (The pass
            # at start-up mostly collects what was posted while the process was down.)
            self.live = True
            waits = {asyncio.ensure_future(stop.wait()), asyncio.ensure_future(reconnected.wait())}
            try:
                await asyncio.wait(
                    {*waits, disconnected},
                    timeout=self.settings.reconcile_interval,
                    return_when=asyncio.FIRST_COMPLETED,
                )
            finally:
                for waiter in waits:
                    waiter.cancel()
            if disconnected.done():
                reason = None if disconnected.cancelled() else disconnected.exception()
                raise ConnectionError(f"disconnected from Telegram ({reason or 'no reason given'})")
            if reconnected.is_set():
                log.info("telegram reconnected; reconciling what the live path may have missed")


async def _wait(stop: asyncio.Event, seconds: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), seconds)


# --- client, login and backfill for the CLI and the daemon ----------------------------------------


def credentials_present(settings: TelegramSettings) -> bool:
    """True when both the API id and hash are configured."""
    return bool(settings.api_id) and settings.api_hash is not None and bool(settings.api_hash.get_secret_value())


def make_client(settings: TelegramSettings) -> TelegramClient:
    """A Telethon client on the SQLite session file ``settings.session`` (created owner-only).

    The session holds the login's auth key and Telethon's update state, so ``catch_up`` can replay
    what was missed while the process was down. It is never a StringSession.
    """
    if not credentials_present(settings) or settings.api_hash is None or settings.api_id is None:
        raise MonitorError(
            "Telegram API credentials are missing: set TELEGRAM_API_ID and TELEGRAM_API_HASH "
            "(collectors.telegram.api_id / api_hash; get them at https://my.telegram.org)"
        )
    session = settings.session
    session.parent.mkdir(parents=True, exist_ok=True)
    client = TelegramClient(
        str(session), settings.api_id, settings.api_hash.get_secret_value(), catch_up=True, auto_reconnect=True
    )
    with contextlib.suppress(OSError):
        # The session file is a credential: whoever reads it is logged in as this account.
        path = session if session.suffix == ".session" else session.with_name(session.name + ".session")
        path.chmod(0o600)
    return client


async def login(settings: TelegramSettings) -> str:
    """Log in interactively (phone, code, 2FA password) and keep the session; returns who is logged in."""
    client = make_client(settings)
    try:
        await client.start()
        me = await client.get_me()
        name = f"@{me.username}" if getattr(me, "username", None) else (getattr(me, "first_name", None) or "?")
        return f"logged in as {name} (id {me.id}); session saved to {settings.session}"
    finally:
        await client.disconnect()


async def backfill(
    port: TelegramPort,
    emitter: Emitter,
    channel: ChannelRef,
    *,
    since: datetime,
    limit: int | None,
    progress: bool,
    sleep: Sleep = asyncio.sleep,
    max_flood_wait: float = 300.0,
) -> int:
    """Publish a channel's history since ``since``, oldest first; returns how many items were new.

    The collector's checkpoint is left alone: a backfill that starts after it would otherwise jump
    over posts never read. Items it publishes are dropped as duplicates when the collector reaches
    them. Flood waits up to ``max_flood_wait`` are slept through and the read resumes where it stopped.
    """
    since_utc = _utc(since)
    published = 0
    seen = 0
    last_id = 0
    bar = Progress(
        SpinnerColumn(),
        TextColumn(f"[bold]backfill[/bold] {channel.name}"),
        TextColumn("{task.completed} messages, {task.fields[new]} new"),
        TimeElapsedColumn(),
        console=Console(stderr=True),
        disable=not progress,
    )
    with bar:
        task = bar.add_task("backfill", total=limit, new=0)
        while True:
            remaining = None if limit is None else limit - seen
            if remaining is not None and remaining <= 0:
                break
            history = port.iter_history(channel, min_id=last_id, limit=remaining, since=since_utc)
            try:
                async for batch in _batches(history, HISTORY_BATCH):
                    items = items_of(batch, channel=channel)
                    last_id = max(last_id, *(m.id for m in batch))
                    result = await emitter.emit(SOURCE, channel.name, items)
                    seen += len(batch)
                    published += result.published
                    bar.update(task, completed=seen, new=published)
            except FloodWait as exc:
                if exc.seconds > max_flood_wait:
                    raise MonitorError(
                        f"Telegram asks to wait {exc.seconds:g} s before reading {channel.name} again; "
                        f"{published} items were published; run the backfill again later to continue"
                    ) from exc
                log.warning("telegram flood wait during backfill; sleeping", channel=channel.name, seconds=exc.seconds)
                await sleep(exc.seconds)
                continue
            break
    return published


async def backfill_command(
    settings: Settings, reference: str, *, since: datetime, limit: int | None, progress: bool
) -> int:
    """``monitor telegram backfill``: connect with the logged-in session, resolve, and push history."""
    client = make_client(settings.collectors.telegram)
    await client.connect()
    try:
        if not await client.is_user_authorized():
            raise MonitorError(
                f"the Telegram session {settings.collectors.telegram.session} is not logged in; "
                "run `monitor telegram login` first"
            )
        port = TelethonPort(client)
        async with open_redis(settings.redis) as redis:
            keys = Keys(settings.redis.key_prefix)
            metrics = Metrics()
            directory = ChannelDirectory(redis, keys, port, metrics)
            channel = await directory.resolve(reference)
            if channel is None:
                raise ChannelUnresolvable(reference, "see the log above for Telegram's answer")
            emitter = Emitter(Publisher(redis, keys, settings.redis.dedup_ttl), Checkpoints(redis, keys), metrics)
            return await backfill(port, emitter, channel, since=since, limit=limit, progress=progress)
    finally:
        await client.disconnect()


async def run_collector(
    settings: TelegramSettings, redis: Redis, keys: Keys, emitter: Emitter, metrics: Metrics, stop: asyncio.Event
) -> None:
    """The daemon's entry point: build the client and the collector, then run until ``stop``."""
    client = make_client(settings)
    port = TelethonPort(client)
    directory = ChannelDirectory(redis, keys, port, metrics)
    collector = TelegramCollector(settings, port, emitter, emitter.checkpoints, metrics, directory)
    await collector.run(client, stop)


__all__ = [
    "ChannelDirectory",
    "ChannelRef",
    "ChannelUnresolvable",
    "FloodWait",
    "TelegramCollector",
    "TelegramPort",
    "TelegramUnavailable",
    "TelethonPort",
    "album_to_raw",
    "backfill",
    "backfill_command",
    "credentials_present",
    "delete_to_raw",
    "group_messages",
    "login",
    "make_client",
    "media_of",
    "message_to_raw",
    "normalize_reference",
    "run_collector",
]
