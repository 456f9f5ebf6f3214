"""Read a Telegram Desktop "Export chat history" file (``result.json``) into RawItems.

Why this exists: the live and web-preview collectors only see posts from the moment they start
watching. A channel's history, exported once from Telegram Desktop, fills in everything before that,
and because each post gets the same item id as the live collectors give it
(``telegram:<channel id>:<message id>``, DESIGN.md) a post seen both ways is one item, not two.

``read_corpus_file`` routes every ``.json`` file here after its size, UTF-8 and binary checks. Like the
other corpus readers nothing here raises for bad content: an unusable file becomes one
:class:`Rejected`, an unusable message becomes a ``path:messages[INDEX]`` rejection while the rest of
the file is still imported, and what was skipped or guessed is reported in ``FileResult.warnings``.

Export facts this relies on (Telegram Desktop's JSON writer):

- The top level holds the chat's ``name`` (title), ``type`` and bare numeric ``id``, and ``messages``.
- ``date`` is the exporting computer's local time without an offset; newer exports add the exact
  ``date_unixtime`` (seconds, as a string). Older exports only have ``date``, read here as UTC.
- ``text`` is a string, or a list of strings and entity objects (``{"type", "text", ...}``); newer
  exports add ``text_entities``, the same text as a list of objects. Only the visible ``text`` of each
  entity is kept, so a ``text_link``'s ``href`` never enters the item text.
- Peers are written as ``channel<id>``, ``chat<id>`` or ``user<id>`` (``from_id``,
  ``forwarded_from_id``, ``reply_to_peer_id``).
- Media are relative paths (``photo``, ``file``) or a placeholder such as "(File not included. ...)"
  when the export left the file out; both are kept as written.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, TypeGuard

from monitor.collectors.corpus_files import DEFAULT_MAX_TEXT_CHARS, FileResult, Rejected, Truncated, truncate_text
from monitor.schema import Forward, Media, RawItem, bound_raw, utcnow

__all__ = ["NOT_AN_EXPORT", "parse_export"]

NOT_AN_EXPORT = "JSON file is not a Telegram Desktop chat export (no 'messages' list)"

# ASCII digits only: ``\d`` would also accept other scripts' digits, which int() reads differently.
_UNIXTIME = re.compile(r"[0-9]{1,12}")
_CHANNEL_PEER = re.compile(r"channel([0-9]{1,20})")
_SHOWN_CHARS = 40  # how much of a bad value a rejection reason quotes


class _MalformedError(Exception):
    """One message that cannot be imported; the message text is the rejection reason."""


def _kind(value: Any) -> str:
    """The JSON name of a value's type, for rejection reasons."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "a list"
    return "an object"


def _show(value: Any) -> str:
    """A short quotation of a bad value."""
    if not isinstance(value, str | int | float | bool):
        return _kind(value)
    shown = json.dumps(value, ensure_ascii=False)
    if len(shown) > _SHOWN_CHARS:
        shown = shown[: _SHOWN_CHARS - 3] + "..."
    return shown.encode("utf-8", "backslashreplace").decode("utf-8")  # a lone surrogate stays printable


def _is_int(value: Any) -> TypeGuard[int]:
    """A JSON integer (Python's bool is an int, JSON's true is not)."""
    return isinstance(value, int) and not isinstance(value, bool)


def _from_unixtime(value: Any) -> datetime | None:
    """A ``date_unixtime`` / ``edited_unixtime`` value ("1700143531", or a bare number) as UTC."""
    if isinstance(value, str) and _UNIXTIME.fullmatch(value):
        seconds = int(value)
    elif _is_int(value) and value >= 0:
        seconds = value
    else:
        return None
    try:
        return datetime.fromtimestamp(seconds, UTC)
    except (OverflowError, OSError, ValueError):
        return None


def _from_local_date(value: Any) -> datetime | None:
    """A ``date`` / ``edited`` value ("2023-11-16T14:05:31", local time) read as UTC."""
    if not isinstance(value, str):
        return None
    try:
        parsed = datetime.fromisoformat(value.strip())
        return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)
    except (ValueError, OverflowError):  # not ISO 8601, or an offset that moves it out of datetime's range
        return None


def _text_of(value: Any, name: str) -> str:
    """The visible text of a ``text`` or ``text_entities`` value: its strings and entities' ``text``."""
    if isinstance(value, str):
        return value
    if not isinstance(value, list):
        raise _MalformedError(f"'{name}' must be a string or a list, not {_kind(value)}")
    parts: list[str] = []
    for position, part in enumerate(value):
        if isinstance(part, str):
            parts.append(part)
        elif isinstance(part, dict) and isinstance(part.get("text"), str):
            parts.append(part["text"])
        else:
            raise _MalformedError(
                f"'{name}[{position}]' is {_kind(part)}, not a string or an entity object with a 'text' string"
            )
    return "".join(parts)


def _size(value: Any) -> int | None:
    return int(value) if _is_int(value) and value >= 0 else None


def _media(message: dict[str, Any]) -> list[Media]:
    found: list[Media] = []
    photo, file = message.get("photo"), message.get("file")
    if isinstance(photo, str) and photo:
        # Newer exports size a photo as photo_file_size; file_size belongs to the file when there is one.
        size = message.get("photo_file_size", None if file else message.get("file_size"))
        found.append(Media(type="photo", url=photo, size=_size(size)))
    if isinstance(file, str) and file:
        kind = message.get("media_type")
        found.append(
            Media(
                type=kind if isinstance(kind, str) and kind else "document",
                url=file,
                size=_size(message.get("file_size")),
            )
        )
    return found


def _forward(message: dict[str, Any]) -> Forward | None:
    """Where a repost came from; the channel is the numeric id of a ``channel<id>`` source."""
    if "forwarded_from" not in message and "forwarded_from_id" not in message:
        return None
    name = message.get("forwarded_from")  # null when the source is hidden or deleted
    source = message.get("forwarded_from_id")
    match = _CHANNEL_PEER.fullmatch(source) if isinstance(source, str) else None
    return Forward(
        name=name if isinstance(name, str) and name else None,
        channel=match.group(1) if match else None,
    )


def _load(data: str) -> tuple[Any, str | None]:
    """``(document, None)``, or ``(None, reason)`` when ``data`` is not JSON."""
    try:
        return json.loads(data), None
    except json.JSONDecodeError as exc:
        return None, f"invalid JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}"
    except RecursionError:
        return None, "invalid JSON: nested too deeply"
    except ValueError as exc:  # e.g. an integer longer than Python's digit limit
        return None, f"invalid JSON: {exc}"


@dataclass(slots=True)
class _Reader:
    """Turns one export's messages into items, keeping what it skipped for the file's warnings."""

    path: str
    channel: str
    channel_id: int | None
    collected_at: datetime
    max_text_chars: int
    result: FileResult
    own_peer: str | None = None  # how this chat appears in from_id / reply_to_peer_id: "channel<id>"
    skipped: Counter[str] = field(default_factory=Counter)
    local_dates: int = 0

    def read(self, index: int, message: Any) -> None:
        where = f"{self.path}:messages[{index}]"
        try:
            built = self._build(message, where)
        except _MalformedError as exc:
            self.result.rejected.append(Rejected(where, str(exc)))
            return
        if built is not None:
            self.result.items.append(built)

    def _build(self, message: Any, where: str) -> RawItem | None:
        if not isinstance(message, dict):
            raise _MalformedError(f"message is {_kind(message)}, not an object")
        kind = message.get("type", "message")
        if not isinstance(kind, str):
            raise _MalformedError(f"'type' must be a string, not {_kind(kind)}")
        if kind != "message":  # "service" (joins, pins, title changes) or "unsupported" media: no post
            self.skipped[kind] += 1
            return None
        msg_id = message.get("id")
        if msg_id is None:
            raise _MalformedError("no 'id'")
        if not _is_int(msg_id) or msg_id <= 0:
            raise _MalformedError(f"'id' must be a positive integer, not {_show(msg_id)}")
        published = self._published_at(message)
        if "text_entities" in message:
            text = _text_of(message["text_entities"], "text_entities")
        else:
            text = _text_of(message.get("text", ""), "text")
        text = text.replace("\r\n", "\n").replace("\r", "\n")  # as the other corpus readers do
        media = _media(message)
        if not text.strip() and not media:
            self.skipped["empty"] += 1
            return None
        try:
            raw = bound_raw(message)
        except UnicodeEncodeError as exc:  # a lone "\ud800" escape: valid JSON, but no UTF-8 can hold it
            raise _MalformedError(f"contains an unpaired surrogate escape ({exc.object[exc.start]!r})") from None
        edited = _from_unixtime(message.get("edited_unixtime")) or _from_local_date(message.get("edited"))
        if raw is not None and edited is not None:
            raw = {**raw, "edited_at": edited.isoformat()}
        kept = truncate_text(text, self.max_text_chars)
        if kept != text:
            self.result.truncated.append(Truncated(where, len(text), len(kept)))
        return RawItem(
            source="telegram_export",
            channel=self.channel,
            channel_id=self.channel_id,
            external_id=str(msg_id),
            text=kept,
            collected_at=self.collected_at,
            published_at=published,
            author=self._author(message),
            forwarded_from=_forward(message),
            reply_to=self._reply_to(message),
            media=media,
            raw=raw,
        )

    def _published_at(self, message: dict[str, Any]) -> datetime:
        stamp = message.get("date_unixtime")
        if stamp is not None:
            exact = _from_unixtime(stamp)
            if exact is not None:
                return exact
        local = _from_local_date(message.get("date"))
        if local is None:
            if stamp is not None:
                raise _MalformedError(f"invalid 'date_unixtime' {_show(stamp)} and no usable 'date'")
            if "date" in message:
                raise _MalformedError(f"invalid 'date' {_show(message['date'])} and no 'date_unixtime'")
            raise _MalformedError("no 'date' or 'date_unixtime'")
        self.local_dates += 1
        return local

    def _author(self, message: dict[str, Any]) -> str | None:
        """The post signature; in a group, the sender (a channel's own posts are sent by the channel)."""
        signature = message.get("author")
        if isinstance(signature, str) and signature.strip():
            return signature
        sender, sender_id = message.get("from"), message.get("from_id")
        if isinstance(sender, str) and sender.strip() and isinstance(sender_id, str) and sender_id != self.own_peer:
            return sender
        return None

    def _reply_to(self, message: dict[str, Any]) -> str | None:
        """The id of the replied-to message, when it is in this chat (not a reply into another chat)."""
        target = message.get("reply_to_message_id")
        if not _is_int(target) or target <= 0:
            return None
        peer = message.get("reply_to_peer_id")
        if peer is not None and peer != self.own_peer:
            return None
        return str(target)

    def warnings(self) -> list[str]:
        notes: list[str] = []
        if self.local_dates:
            notes.append(
                f"{self.local_dates} message(s) had no valid 'date_unixtime' (older exports lack it): their 'date', "
                "the exporting computer's local time, was read as UTC, so times may be off by that UTC offset"
            )
        if self.skipped:
            counts = ", ".join(
                f"{count} {kind if kind != 'empty' else 'with neither text nor media'}"
                for kind, count in sorted(self.skipped.items())
            )
            notes.append(f"skipped {sum(self.skipped.values())} message(s) that are not posts: {counts}")
        return notes


def _channel_name(document: dict[str, Any], channel_id: int | None) -> str | None:
    name = document.get("name")
    if isinstance(name, str) and name.strip():
        # A lone surrogate escape in the title could not be encoded on the stream; replace it.
        return name.strip().encode("utf-8", "replace").decode("utf-8")
    return str(channel_id) if channel_id is not None else None


def parse_export(
    data: str,
    *,
    path: str,
    collected_at: datetime | None = None,
    max_text_chars: int = DEFAULT_MAX_TEXT_CHARS,
) -> FileResult:
    """The posts of one Telegram Desktop chat export as ``telegram_export`` RawItems.

    ``data`` is the decoded text of ``result.json`` and ``path`` names it in rejections (a bad message
    is ``path:messages[INDEX]``). Each item has ``channel`` = the export's ``name``, ``channel_id`` =
    its numeric ``id`` and ``external_id`` = the message id, so its item id is
    ``telegram:<id>:<message id>``. Service and unsupported messages, and messages with neither text
    nor media, are skipped and counted in ``warnings``. Never raises for bad content. (A non-positive
    ``max_text_chars`` is a programming error and raises ValueError.)
    """
    if max_text_chars < 1:
        raise ValueError("max_text_chars must be positive")
    result = FileResult()
    document, problem = _load(data.removeprefix("\ufeff"))
    if problem is not None:
        result.rejected.append(Rejected(path, problem))
        return result
    messages = document.get("messages") if isinstance(document, dict) else None
    if not isinstance(messages, list):
        reason = NOT_AN_EXPORT
        if isinstance(document, dict) and isinstance(document.get("chats"), dict):
            reason += "; this looks like a whole-account export: export one channel's chat history instead"
        result.rejected.append(Rejected(path, reason))
        return result

    raw_id = document.get("id")
    channel_id = raw_id if _is_int(raw_id) and raw_id > 0 else None
    channel = _channel_name(document, channel_id)
    if channel is None:
        result.rejected.append(Rejected(path, "Telegram export has neither a 'name' nor a numeric 'id'"))
        return result
    if channel_id is None:
        result.warnings.append(
            "the export has no numeric 'id': item ids use the channel name, so they will not match "
            "the ids the live Telegram collectors give the same posts"
        )

    reader = _Reader(
        path=path,
        channel=channel,
        channel_id=channel_id,
        collected_at=collected_at or utcnow(),
        max_text_chars=max_text_chars,
        result=result,
        own_peer=f"channel{channel_id}" if channel_id is not None else None,
    )
    for index, message in enumerate(messages):
        reader.read(index, message)
    result.warnings.extend(reader.warnings())
    if not result.items and not result.rejected:
        result.warnings.append("the export holds no posts with text or media")
    return result
