"""The ``telegram_web`` collector: public channels read from the t.me/s web preview, with no account.

Telethon needs an API id, a phone login and a session file. Many deployments have none of these, or
don't want a personal account tied to a monitor. Public channels are also shown at
``https://t.me/s/<channel>`` as plain HTML, about 20 posts a page, newest last, with a "more" link to
older pages. This module turns those pages into RawItems.

* ``parse_page`` is pure. It takes one page of HTML and returns the posts as RawItems, oldest first,
  with the numeric channel id from each post's ``data-view`` JSON. Because of that id, the three
  Telegram collectors give the same item id to the same post (DESIGN.md).
* ``TelegramWebCollector`` polls each channel on its own jittered schedule. It reads back through
  ``?before=`` pages until it reaches the checkpoint and publishes what is new, oldest first, through
  the ``Emitter``. The Emitter moves the checkpoint only once Redis has accepted the items. The
  collector honours 429 ``Retry-After``, backs off on 5xx and network errors, and notices when a
  channel has no public preview. It also notices when the markup has changed so much that nothing
  parses. Each channel's failures stay with that channel.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import json
import random
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any, Final
from urllib.parse import urlsplit

import aiohttp
import structlog
from redis.exceptions import RedisError
from selectolax.lexbor import LexborHTMLParser, LexborNode

from monitor.collectors.base import Checkpoints, Emitter
from monitor.config import TelegramWebSettings
from monitor.metrics import Metrics
from monitor.schema import Engagement, Forward, Media, RawItem, bound_raw, utcnow

log = structlog.get_logger(__name__)

SOURCE: Final = "telegram_web"

# Items per Emitter call: one pipelined script run each, and the checkpoint moves after each chunk.
EMIT_CHUNK = 100
# Exponential backoff after 5xx or network errors starts at the poll interval and is capped here.
BACKOFF_CAP = 15 * 60.0
# A 429 without a usable Retry-After pauses the channel this long; an absurd one is capped.
DEFAULT_RETRY_AFTER = 60.0
MAX_RETRY_AFTER = 6 * 3600.0
# A channel without a public preview is tried again after this long (or 30 intervals, if longer).
NO_PREVIEW_RETRY = 3600.0
# On start-up, the first polls of the channels are at least this far apart (or interval / n, if less).
START_SPACING = 5.0
# Sizes of the bounded parts of ``raw``.
RAW_TEXT_CHARS = 300
RAW_LINKS = 20

USER_AGENT = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0.0.0 Safari/537.36"
REQUEST_HEADERS = {
    "User-Agent": USER_AGENT,
    "Accept": "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8",
    "Accept-Language": "en-US,en;q=0.9",
}

# --- selectors and patterns (compiled or fixed once) -----------------------------------------------

SEL_POST = "div.tgme_widget_message[data-post]"
SEL_ANY_DATA_POST = "[data-post]"
SEL_MORE = "a.tme_messages_more[data-before]"
# A child selector: a reply quote nests its own .tgme_widget_message_text inside a.tgme_widget_message_reply.
SEL_TEXT = ".tgme_widget_message_bubble > .tgme_widget_message_text"
SEL_DATE = "a.tgme_widget_message_date"
SEL_TIME = "time[datetime]"
SEL_VIEWS = ".tgme_widget_message_views"
SEL_FORWARD = ".tgme_widget_message_bubble > .tgme_widget_message_forwarded_from"
SEL_FORWARD_NAME = ".tgme_widget_message_forwarded_from_name"
SEL_REPLY = ".tgme_widget_message_bubble > a.tgme_widget_message_reply"
SEL_SIGNATURE = ".tgme_widget_message_from_author"
SEL_AUTHOR = ".tgme_widget_message_bubble > .tgme_widget_message_author"
SEL_OWNER_NAME = ".tgme_widget_message_owner_name"
SEL_META = ".tgme_widget_message_meta"
SEL_BUBBLE = ".tgme_widget_message_bubble"
SEL_LINKS = "a[href]"
SEL_POLL_QUESTION = ".tgme_widget_message_poll_question"
SEL_POLL_OPTION = ".tgme_widget_message_poll_option_text"
SEL_POLL_TYPE = ".tgme_widget_message_poll_type"
SEL_DOC_TITLE = ".tgme_widget_message_document_title"
SEL_DOC_EXTRA = ".tgme_widget_message_document_extra"
SEL_VIDEO_TAG = "video"
SEL_VIDEO_THUMB = ".tgme_widget_message_video_thumb, .tgme_widget_message_roundvideo_thumb"
SEL_DURATION = ".message_video_duration, .tgme_widget_message_voice_duration"
SEL_AUDIO_TAG = "audio"
SEL_PREVIEW_TITLE = ".link_preview_title"
SEL_PREVIEW_SITE = ".link_preview_site_name"
SEL_PREVIEW_DESCRIPTION = ".link_preview_description"
SEL_PREVIEW_IMAGE = ".link_preview_image, .link_preview_right_image"
SEL_STICKER_IMAGE = ".tgme_widget_message_sticker"

_BACKGROUND_URL = re.compile(r"background-image\s*:\s*url\(\s*(['\"]?)(.*?)\1\s*\)", re.IGNORECASE)
_EMOJI_FILE = re.compile(r"/([0-9A-Fa-f]{2,})\.(?:png|webp|svg)", re.IGNORECASE)
_VIEWS = re.compile(r"^([\d]+(?:[.,]\d+)?)\s*([KMB])?$", re.IGNORECASE)
_SIZE = re.compile(r"([\d]+(?:[.,]\d+)?)\s*(B|KB|MB|GB|TB)\b", re.IGNORECASE)
_TRAILING_ID = re.compile(r"/(\d+)/?$")
_SPACES_BEFORE_NEWLINE = re.compile(r"[ \t]+\n")

_VIEW_UNITS = {"": 1, "K": 1_000, "M": 1_000_000, "B": 1_000_000_000}
_SIZE_UNITS = {"B": 1, "KB": 1024, "MB": 1024**2, "GB": 1024**3, "TB": 1024**4}
# Elements whose content starts and ends a line in the rendered text.
_BLOCK_TAGS = frozenset({"blockquote", "pre", "div", "p", "li", "ul", "ol"})
_SKIP_TAGS = frozenset({"script", "style", "svg", "template"})


# --- parsing ---------------------------------------------------------------------------------------


class NoPublicPreview(Exception):
    """The channel's /s/ page redirected elsewhere: it is private, has no web preview, or does not exist."""


class MarkupChanged(Exception):
    """A page had posts but none of them yielded text or media; the t.me markup has probably changed."""


@dataclass(slots=True)
class ParsedPage:
    """One t.me/s page, parsed."""

    items: list[RawItem]  # oldest first
    before: int | None  # data-before of the "more" link (the older page), if any
    channel_id: int | None  # numeric channel id from data-view, if any post carried one
    posts: int  # post divs seen
    service: int  # service messages skipped
    empty: int  # posts with neither text nor media (never emitted)
    # Message ids of every post div on the page, service and empty ones included.
    oldest_id: int | None = None
    newest_id: int | None = None


def normalize_channel(channel: str) -> str:
    """``@Nexta_Live``, ``t.me/nexta_live`` or ``https://t.me/s/nexta_live`` -> ``nexta_live``."""
    name = channel.strip()
    if "/" in name:
        parts = [p for p in urlsplit(name if "//" in name else f"//{name}").path.split("/") if p]
        if parts and parts[0] == "s":
            parts = parts[1:]
        name = parts[0] if parts else ""
    return name.lstrip("@").lower()


def parse_page(html: str, *, channel: str, collected_at: datetime | None = None) -> ParsedPage:
    """Parse one t.me/s page into RawItems, oldest first.

    ``channel`` is the configured username; it becomes ``RawItem.channel`` (lowercased, without @).
    Service messages are skipped and counted, and so are posts with neither text nor media. Raises
    MarkupChanged when the page has posts (or ``data-post`` elements) and none of them yields anything.
    """
    name = normalize_channel(channel)
    when = collected_at or utcnow()
    tree = LexborHTMLParser(html)
    page = ParsedPage(items=[], before=None, channel_id=None, posts=0, service=0, empty=0)
    ids: list[int] = []
    for node in tree.css(SEL_POST):
        page.posts += 1
        message_id = _post_id(node)
        if message_id is not None:
            ids.append(message_id)
        if "service_message" in _classes(node):
            page.service += 1
            continue
        item = _parse_post(node, name, message_id, when) if message_id is not None else None
        if item is None:
            page.empty += 1
            continue
        if page.channel_id is None:
            page.channel_id = item.channel_id
        page.items.append(item)
    more = tree.css_first(SEL_MORE)
    if more is not None:
        page.before = _int(more.attributes.get("data-before"))
    if ids:
        page.oldest_id, page.newest_id = min(ids), max(ids)
    page.items.sort(key=lambda item: int(item.external_id))
    if page.posts > page.service and not page.items:
        raise MarkupChanged(f"{page.posts} posts on the page, none with text or media ({page.service} service)")
    if page.posts == 0 and tree.css_first(SEL_ANY_DATA_POST) is not None:
        raise MarkupChanged("the page has data-post elements but no div.tgme_widget_message")
    return page


def _parse_post(node: LexborNode, channel: str, message_id: int, collected_at: datetime) -> RawItem | None:
    """One post div -> RawItem, or None when it has neither text nor media."""
    post = node.attributes.get("data-post") or f"{channel}/{message_id}"
    view = decode_data_view(node.attributes.get("data-view"))
    channel_id = _channel_id(view)
    raw: dict[str, Any] = {"post": post}
    if view:
        raw["view"] = {k: view[k] for k in ("c", "p", "t") if k in view}

    text_node = node.css_first(SEL_TEXT)
    text = extract_text(text_node) if text_node is not None else ""
    if text_node is not None:
        links = [href for a in text_node.css(SEL_LINKS) if (href := a.attributes.get("href"))]
        if links:
            raw["links"] = links[:RAW_LINKS]

    media: list[Media] = []
    details: list[dict[str, Any]] = []
    bubble = node.css_first(SEL_BUBBLE) or node
    _collect_media(bubble, media, details)
    if details:
        raw["media"] = details
    if not text:
        poll = next((d for d in details if d.get("type") == "poll"), None)
        if poll is not None and poll.get("question"):
            text = str(poll["question"])
    if not text and not media:
        return None

    date = node.css_first(SEL_DATE)
    url = date.attributes.get("href") if date is not None else None
    published = _published_at(date, view)

    views_text = _text_or_none(node.css_first(SEL_VIEWS))
    views = parse_count(views_text) if views_text else None
    if views_text:
        raw["views"] = views_text

    forwarded = _forward(node.css_first(SEL_FORWARD))
    if forwarded is not None:
        origin = {"channel": forwarded.channel, "id": forwarded.id, "name": forwarded.name}
        raw["forwarded_from"] = {k: v for k, v in origin.items() if v}

    reply_to: str | None = None
    reply = node.css_first(SEL_REPLY)
    if reply is not None:
        href = reply.attributes.get("href") or ""
        match = _TRAILING_ID.search(urlsplit(href).path)
        reply_to = match.group(1) if match else None
        raw["reply"] = {"url": href, "quote": _clip(extract_text(reply))}

    author = _author(node)
    if author:
        raw["author"] = author
    meta = node.css_first(SEL_META)
    if meta is not None and "edited" in meta.text(deep=False).lower():
        raw["edited"] = True
    raw["text"] = _clip(text)

    return RawItem(
        source=SOURCE,
        channel=channel,
        channel_id=channel_id,
        external_id=str(message_id),
        url=url or f"https://t.me/{post}",
        published_at=published,
        collected_at=collected_at,
        text=text,
        media=media,
        forwarded_from=forwarded,
        reply_to=reply_to,
        metrics=Engagement(views=views) if views is not None else None,
        author=author,
        raw=bound_raw(raw),
    )


def extract_text(node: LexborNode) -> str:
    """The visible text of a message: ``<br>`` as newline, emoji images as their character, tags dropped."""
    out: list[str] = []
    _walk_text(node, out)
    text = "".join(out).replace("\r\n", "\n").replace("\r", "\n")
    return _SPACES_BEFORE_NEWLINE.sub("\n", text).strip()


def _walk_text(node: LexborNode, out: list[str]) -> None:
    for child in node.iter(include_text=True):
        tag = child.tag or ""
        if tag == "-text":
            out.append(child.text(deep=False))
        elif tag.startswith("-") or tag in _SKIP_TAGS:
            continue
        elif tag == "br":
            out.append("\n")
        elif tag == "i" and "emoji" in _classes(child):
            out.append(_emoji(child))
        elif tag in _BLOCK_TAGS:
            if out and not out[-1].endswith("\n"):
                out.append("\n")
            _walk_text(child, out)
            out.append("\n")
        else:
            _walk_text(child, out)


def _emoji(node: LexborNode) -> str:
    """``<i class="emoji" style="background-image:url(.../F09F94A5.png)"><b>🔥</b></i>`` -> ``🔥``."""
    inner = node.text()
    if inner.strip():
        return inner.strip()
    url = _background_url(node) or ""
    match = _EMOJI_FILE.search(url)
    if match and len(match.group(1)) % 2 == 0:
        try:
            return bytes.fromhex(match.group(1)).decode("utf-8")
        except (ValueError, UnicodeDecodeError):
            return ""
    return ""


def _collect_media(node: LexborNode, media: list[Media], details: list[dict[str, Any]]) -> None:
    """Attachments in document order; reply quotes, the text and the footer are not searched."""
    for child in node.iter():
        classes = _classes(child)
        tag = child.tag
        if (
            "tgme_widget_message_reply" in classes
            or "tgme_widget_message_text" in classes
            or "tgme_widget_message_footer" in classes
        ):
            continue
        if "tgme_widget_message_photo_wrap" in classes:
            url = _absolute(_background_url(child))
            media.append(Media(type="photo", url=url))
            details.append(_detail("photo", url=url, href=child.attributes.get("href")))
        elif (
            "tgme_widget_message_video_player" in classes
            or "tgme_widget_message_roundvideo_player" in classes
            or tag == "video"
        ):
            video = child if tag == "video" else child.css_first(SEL_VIDEO_TAG)
            src = _absolute(video.attributes.get("src")) if video is not None else None
            thumb_node = child.css_first(SEL_VIDEO_THUMB)
            thumb = _absolute(_background_url(thumb_node)) if thumb_node is not None else None
            href = child.attributes.get("href")
            media.append(Media(type="video", url=src or thumb or href))
            details.append(
                _detail("video", url=src, thumb=thumb, href=href, duration=_text_or_none(child.css_first(SEL_DURATION)))
            )
        elif "tgme_widget_message_document_wrap" in classes or "tgme_widget_message_document" in classes:
            title = _text_or_none(child.css_first(SEL_DOC_TITLE))
            extra = _text_or_none(child.css_first(SEL_DOC_EXTRA))
            href = child.attributes.get("href")
            media.append(Media(type="document", url=href, size=parse_size(extra) if extra else None))
            details.append(_detail("document", url=href, title=title, extra=extra))
        elif "tgme_widget_message_voice_player" in classes or tag == "audio":
            audio = child if tag == "audio" else child.css_first(SEL_AUDIO_TAG)
            src = _absolute(audio.attributes.get("src")) if audio is not None else None
            media.append(Media(type="voice", url=src))
            details.append(_detail("voice", url=src, duration=_text_or_none(child.css_first(SEL_DURATION))))
        elif "tgme_widget_message_sticker_wrap" in classes:
            image = child.css_first(SEL_STICKER_IMAGE)
            url = _absolute(_background_url(image)) if image is not None else None
            media.append(Media(type="sticker", url=url))
            details.append(_detail("sticker", url=url))
        elif "tgme_widget_message_poll" in classes:
            question = _text_or_none(child.css_first(SEL_POLL_QUESTION))
            options = [t for o in child.css(SEL_POLL_OPTION) if (t := o.text(strip=True))]
            media.append(Media(type="poll"))
            details.append(
                _detail(
                    "poll", question=question, options=options, poll_type=_text_or_none(child.css_first(SEL_POLL_TYPE))
                )
            )
        elif "tgme_widget_message_link_preview" in classes:
            href = child.attributes.get("href")
            image_node = child.css_first(SEL_PREVIEW_IMAGE)
            media.append(Media(type="link", url=href))
            details.append(
                _detail(
                    "link",
                    url=href,
                    site=_text_or_none(child.css_first(SEL_PREVIEW_SITE)),
                    title=_clip(_text_or_none(child.css_first(SEL_PREVIEW_TITLE))),
                    description=_clip(_text_or_none(child.css_first(SEL_PREVIEW_DESCRIPTION))),
                    image=_absolute(_background_url(image_node)) if image_node is not None else None,
                )
            )
        elif "tgme_widget_message_location_wrap" in classes:
            href = child.attributes.get("href")
            media.append(Media(type="location", url=href))
            details.append(_detail("location", url=href))
        elif "message_media_not_supported_wrap" in classes:
            # "Please open Telegram to view this post": media the preview cannot show, still a post.
            link = child.css_first(SEL_LINKS)
            href = link.attributes.get("href") if link is not None else None
            media.append(Media(type="unsupported", url=href))
            details.append(_detail("unsupported", url=href))
        else:
            _collect_media(child, media, details)


def _forward(node: LexborNode | None) -> Forward | None:
    """``Forwarded from <a href="https://t.me/src/123">Name</a>``, or a bare name when the source is hidden."""
    if node is None:
        return None
    name_node = node.css_first(SEL_FORWARD_NAME)
    name = _text_or_none(name_node)
    if name is None:
        text = node.text(strip=True)
        name = text.removeprefix("Forwarded from").strip() or None
    channel: str | None = None
    message_id: str | None = None
    href = name_node.attributes.get("href") if name_node is not None and name_node.tag == "a" else None
    if href:
        parts = [p for p in urlsplit(href).path.split("/") if p]
        if parts and parts[0] == "s":
            parts = parts[1:]
        if len(parts) >= 3 and parts[0] == "c":  # https://t.me/c/<id>/<msg>: a channel without username
            channel, message_id = parts[1], parts[2]
        elif parts:
            channel = parts[0].lower()
            message_id = parts[1] if len(parts) > 1 and parts[1].isdigit() else None
    return Forward(channel=channel, id=message_id, name=name)


def _author(node: LexborNode) -> str | None:
    """The post signature. The bubble's author line is used only when it is not the channel's own name."""
    signature = _text_or_none(_first_outside_reply(node, SEL_SIGNATURE))
    if signature:
        return signature
    header = node.css_first(SEL_AUTHOR)
    if header is not None and header.css_first(SEL_OWNER_NAME) is None:
        return _text_or_none(header)
    return None


def _first_outside_reply(post: LexborNode, selector: str) -> LexborNode | None:
    """The first match of ``selector`` in ``post`` that is not part of a reply quote."""
    for candidate in post.css(selector):
        parent = candidate.parent
        while parent is not None and parent.mem_id != post.mem_id:
            if "tgme_widget_message_reply" in _classes(parent):
                break
            parent = parent.parent
        else:
            return candidate
    return None


def _published_at(date: LexborNode | None, view: dict[str, Any]) -> datetime | None:
    """``time[datetime]`` in UTC; the data-view ``t`` (unix seconds) when the tag is missing."""
    stamp = date.css_first(SEL_TIME) if date is not None else None
    value = stamp.attributes.get("datetime") if stamp is not None else None
    if value:
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError:
            parsed = None
        if parsed is not None:
            return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)
    seconds = view.get("t")
    if isinstance(seconds, int | float) and not isinstance(seconds, bool) and seconds > 0:
        return datetime.fromtimestamp(seconds, UTC)
    return None


def decode_data_view(value: str | None) -> dict[str, Any]:
    """The base64 JSON of ``data-view``; padding may be missing. Returns {} for anything unreadable."""
    if not value:
        return {}
    text = value.strip()
    text += "=" * (-len(text) % 4)
    for decode in (base64.b64decode, base64.urlsafe_b64decode):
        try:
            data = json.loads(decode(text))
        except (binascii.Error, ValueError):
            continue
        return data if isinstance(data, dict) else {}
    return {}


def _channel_id(view: dict[str, Any]) -> int | None:
    """The data-view ``c`` is the channel id negated; Telethon and the export use the positive one."""
    value = view.get("c")
    number: int | None = None
    if isinstance(value, int) and not isinstance(value, bool):
        number = value
    elif isinstance(value, str):
        number = _int(value)
    return abs(number) if number else None


def parse_count(text: str) -> int | None:
    """``"987"`` -> 987, ``"4.4K"`` -> 4400, ``"1.2M"`` -> 1200000; None when unreadable."""
    match = _VIEWS.match(text.strip().replace("\xa0", "").replace(" ", ""))
    if not match:
        return None
    number = float(match.group(1).replace(",", "."))
    return round(number * _VIEW_UNITS[(match.group(2) or "").upper()])


def parse_size(text: str) -> int | None:
    """``"1.2 MB"`` -> bytes; None when the text holds no size."""
    match = _SIZE.search(text)
    if not match:
        return None
    return round(float(match.group(1).replace(",", ".")) * _SIZE_UNITS[match.group(2).upper()])


def _post_id(node: LexborNode) -> int | None:
    post = node.attributes.get("data-post") or ""
    _, _, tail = post.rpartition("/")
    return _int(tail)


def _int(value: str | None) -> int | None:
    if value is None:
        return None
    try:
        return int(value.strip())
    except ValueError:
        return None


def _classes(node: LexborNode) -> list[str]:
    return (node.attributes.get("class") or "").split()


def _background_url(node: LexborNode) -> str | None:
    match = _BACKGROUND_URL.search(node.attributes.get("style") or "")
    return match.group(2) if match and match.group(2) else None


def _absolute(url: str | None) -> str | None:
    """Protocol-relative CDN URLs (``//cdn4.telesco.pe/...``) -> https."""
    if url and url.startswith("//"):
        return f"https:{url}"
    return url or None


def _text_or_none(node: LexborNode | None) -> str | None:
    if node is None:
        return None
    text = node.text(separator=" ", strip=True)
    return " ".join(text.split()) or None


def _clip(text: str | None) -> str | None:
    if text is None or len(text) <= RAW_TEXT_CHARS:
        return text
    return text[:RAW_TEXT_CHARS] + "…"


def _detail(media_type: str, /, **fields: Any) -> dict[str, Any]:
    return {"type": media_type, **{k: v for k, v in fields.items() if v not in (None, "", [])}}


# --- collecting ------------------------------------------------------------------------------------


class _HttpStatus(Exception):
    """A response that is neither 200 nor 304."""

    def __init__(self, status: int, retry_after: float | None = None) -> None:
        super().__init__(f"HTTP {status}")
        self.status = status
        self.retry_after = retry_after


@dataclass(slots=True)
class _Page:
    """A fetched page body with its cache validators."""

    url: str
    html: str
    etag: str | None
    last_modified: str | None


@dataclass(slots=True)
class _ChannelState:
    """What the collector remembers about one channel between polls (in memory only)."""

    paused_until: float = 0.0  # monotonic time before which the channel is not fetched
    rate_limited: bool = False  # the pause is a 429 (the flood-wait gauge is set)
    failures: int = 0  # consecutive 5xx / network errors, for the backoff
    no_preview_logged: bool = False
    # URL -> (ETag, Last-Modified) of the last response whose items Redis accepted.
    validators: dict[str, tuple[str | None, str | None]] = field(default_factory=dict)


class TelegramWebCollector:
    """Polls public channels through t.me/s and publishes their new posts."""

    source = SOURCE

    def __init__(
        self,
        settings: TelegramWebSettings,
        emitter: Emitter,
        checkpoints: Checkpoints,
        metrics: Metrics,
        *,
        session: aiohttp.ClientSession | None = None,
        clock: Callable[[], float] = time.monotonic,
        rng: Callable[[], float] = random.random,
    ) -> None:
        self.settings = settings
        self.emitter = emitter
        self.checkpoints = checkpoints
        self.metrics = metrics
        self._session = session
        self._owns_session = session is None
        self._clock = clock
        self._rng = rng
        self._states: dict[str, _ChannelState] = {}
        base = settings.base_url.rstrip("/")
        self._base = base
        self._preview_prefix = urlsplit(base).path.rstrip("/") + "/s/"

    # -- public API ---------------------------------------------------------------------------------

    @property
    def channels(self) -> list[str]:
        """The configured channels, normalized and without repeats, in config order."""
        return list(dict.fromkeys(n for c in self.settings.channels if (n := normalize_channel(c))))

    def pause_remaining(self, channel: str) -> float:
        """Seconds before ``channel`` is fetched again (0 when it is not paused)."""
        state = self._states.get(normalize_channel(channel))
        return max(0.0, state.paused_until - self._clock()) if state else 0.0

    async def poll_channel(self, channel: str) -> int:
        """One cycle for one channel: read back to the checkpoint, publish what is new; returns items published.

        HTTP, network and parse failures are counted, logged and turn into a pause of this channel; they
        do not raise. A Redis failure while publishing raises (the checkpoint stays where it was).
        """
        name = normalize_channel(channel)
        state = self._states.setdefault(name, _ChannelState())
        now = self._clock()
        if state.paused_until > now:
            if state.rate_limited:
                self.metrics.flood_wait.labels(SOURCE, name).set(state.paused_until - now)
            return 0
        if state.rate_limited:
            state.rate_limited = False
            self.metrics.flood_wait.labels(SOURCE, name).set(0)

        checkpoint = await self.checkpoints.get_int(SOURCE, name)
        try:
            result = await self._read_back(name, state, checkpoint)
        except NoPublicPreview as exc:
            self._error(name, "no_preview")
            state.paused_until = self._clock() + max(NO_PREVIEW_RETRY, 30 * self.settings.interval)
            if not state.no_preview_logged:
                state.no_preview_logged = True
                log.warning("channel has no public web preview; skipping it for now", channel=name, detail=str(exc))
            return 0
        except MarkupChanged as exc:
            self._error(name, "parse")
            log.error("t.me/s markup not understood; nothing emitted", channel=name, detail=str(exc))
            return 0
        except _HttpStatus as exc:
            self._http_failure(name, state, exc)
            return 0
        except (aiohttp.ClientError, TimeoutError) as exc:
            self._error(name, "network")
            delay = self._backoff(state)
            log.warning("fetch failed", channel=name, error=f"{type(exc).__name__}: {exc}", retry_in=delay)
            return 0

        state.failures = 0
        state.no_preview_logged = False
        if result is None:  # 304: nothing changed since the last accepted response
            return 0
        items, newest_seen, pages = result
        published = await self._publish(name, items, newest_seen, checkpoint)
        for page in pages:  # only now may later requests be conditional on these responses
            if page.etag or page.last_modified:
                state.validators[page.url] = (page.etag, page.last_modified)
        return published

    async def run_once(self) -> None:
        """One cycle over every channel, one after another (``monitor run --once``)."""
        for name in self.channels:
            await self._poll_guarded(name)

    async def run(self, stop: asyncio.Event) -> None:
        """Poll until ``stop`` is set. Each channel has its own schedule, and only one is fetched at a time."""
        names = self.channels
        if not names:
            await stop.wait()
            return
        start = self._clock()
        spacing = min(self.settings.interval / len(names), START_SPACING)
        due = {name: start + index * spacing + self._rng() * spacing for index, name in enumerate(names)}
        while not stop.is_set():
            name = min(due, key=due.__getitem__)
            delay = due[name] - self._clock()
            if delay > 0:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), timeout=delay)
                if stop.is_set():
                    break
            await self._poll_guarded(name)
            due[name] = self._next_due(name)

    async def aclose(self) -> None:
        """Close the HTTP session if this collector opened it."""
        if self._owns_session and self._session is not None and not self._session.closed:
            await self._session.close()
        self._session = None

    # -- internals ----------------------------------------------------------------------------------

    async def _poll_guarded(self, name: str) -> None:
        """poll_channel, with anything unexpected logged so that the other channels still run."""
        try:
            await self.poll_channel(name)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.exception("telegram_web poll failed", channel=name, error=f"{type(exc).__name__}: {exc}")

    def _next_due(self, name: str) -> float:
        interval = self.settings.interval
        regular = self._clock() + interval + self._rng() * self.settings.jitter * interval
        state = self._states.get(name)
        return max(regular, state.paused_until) if state else regular

    async def _read_back(
        self, name: str, state: _ChannelState, checkpoint: int
    ) -> tuple[list[RawItem], int, list[_Page]] | None:
        """Fetch pages from the newest back to the checkpoint; None when the newest page is unchanged (304)."""
        limit = self.settings.max_catchup_pages
        if checkpoint <= 0:
            limit = min(limit, self.settings.first_run_pages)
        url = f"{self._base}/s/{name}"
        found: dict[int, RawItem] = {}
        newest_seen = 0
        fetched: list[_Page] = []
        collected_at = utcnow()
        previous_before: int | None = None
        while True:
            page_html = await self._fetch(url, state, conditional=not fetched)
            if page_html is None:
                if not fetched:
                    return None
                break  # an older page unchanged: nothing more to learn from it
            fetched.append(page_html)
            page = parse_page(page_html.html, channel=name, collected_at=collected_at)
            for item in page.items:
                message_id = int(item.external_id)
                if message_id > checkpoint:
                    found.setdefault(message_id, item)
            newest_seen = max(newest_seen, page.newest_id or 0)
            older = page.before if page.before is not None else page.oldest_id
            if checkpoint > 0 and older is not None and older <= checkpoint + 1:
                break  # everything after the checkpoint is on the pages read
            if page.before is None:
                break  # the start of the channel
            if previous_before is not None and page.before >= previous_before:
                log.warning("pagination did not move back; stopping", channel=name, before=page.before)
                break
            if len(fetched) >= limit:
                if checkpoint > 0:
                    log.warning(
                        "catch-up page limit reached; older posts after the checkpoint are skipped",
                        channel=name,
                        pages=len(fetched),
                        checkpoint=checkpoint,
                        oldest_read=page.before,
                    )
                break
            previous_before = page.before
            url = f"{self._base}/s/{name}?before={page.before}"
        items = [found[k] for k in sorted(found)]
        return items, newest_seen, fetched

    async def _publish(self, name: str, items: list[RawItem], newest_seen: int, checkpoint: int) -> int:
        """Emit oldest first in chunks; each chunk's checkpoint moves only after Redis accepted it."""
        published = 0
        try:
            for start in range(0, len(items), EMIT_CHUNK):
                chunk = items[start : start + EMIT_CHUNK]
                mark = int(chunk[-1].external_id)
                if start + EMIT_CHUNK >= len(items):
                    mark = max(mark, newest_seen)  # also step over service and empty posts at the end
                result = await self.emitter.emit(SOURCE, name, chunk, checkpoint=mark)
                published += result.published
            if not items and newest_seen > checkpoint:
                await self.emitter.emit(SOURCE, name, [], checkpoint=newest_seen)
        except (RedisError, OSError) as exc:
            self._error(name, "publish")
            log.warning("publishing failed; checkpoint kept", channel=name, error=f"{type(exc).__name__}: {exc}")
            raise
        if published:
            log.info("telegram_web items published", channel=name, published=published)
        return published

    async def _fetch(self, url: str, state: _ChannelState, *, conditional: bool) -> _Page | None:
        """GET one page. None on 304; raises NoPublicPreview, _HttpStatus, aiohttp errors or TimeoutError."""
        headers = dict(REQUEST_HEADERS)
        if conditional and url in state.validators:
            etag, last_modified = state.validators[url]
            if etag:
                headers["If-None-Match"] = etag
            if last_modified:
                headers["If-Modified-Since"] = last_modified
        session = self._get_session()
        timeout = aiohttp.ClientTimeout(total=self.settings.timeout)
        async with session.get(url, headers=headers, timeout=timeout, allow_redirects=True) as response:
            if not response.url.path.startswith(self._preview_prefix):
                raise NoPublicPreview(f"{url} redirected to {response.url}")
            status = response.status
            if status == 304:
                return None
            if status == 429:
                raise _HttpStatus(status, parse_retry_after(response.headers.get("Retry-After")))
            if status != 200:
                raise _HttpStatus(status)
            html = await response.text(errors="replace")
            return _Page(url, html, response.headers.get("ETag"), response.headers.get("Last-Modified"))

    def _http_failure(self, name: str, state: _ChannelState, exc: _HttpStatus) -> None:
        if exc.status == 429:
            wait = exc.retry_after if exc.retry_after is not None else DEFAULT_RETRY_AFTER
            wait = min(max(wait, 0.0), MAX_RETRY_AFTER)
            self._error(name, "rate_limited")
            state.paused_until = self._clock() + wait
            state.rate_limited = True
            self.metrics.flood_wait.labels(SOURCE, name).set(wait)
            log.warning("rate limited by t.me; channel paused", channel=name, retry_after=wait)
        elif exc.status >= 500:
            self._error(name, "http_5xx")
            delay = self._backoff(state)
            log.warning("t.me server error", channel=name, status=exc.status, retry_in=delay)
        else:
            self._error(name, "http_4xx")
            delay = self._backoff(state)
            log.warning("t.me refused the request", channel=name, status=exc.status, retry_in=delay)

    def _backoff(self, state: _ChannelState) -> float:
        """Pause the channel: the interval, doubled per consecutive failure, capped."""
        state.failures += 1
        cap = max(BACKOFF_CAP, self.settings.interval)
        delay = min(cap, max(self.settings.interval, 1.0) * 2 ** min(state.failures - 1, 20))
        state.paused_until = self._clock() + delay
        return delay

    def _error(self, name: str, kind: str) -> None:
        self.metrics.collector_errors.labels(SOURCE, name, kind).inc()

    def _get_session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession()
            self._owns_session = True
        return self._session


def parse_retry_after(value: str | None) -> float | None:
    """``Retry-After`` as seconds: a number, or an HTTP date turned into the time left until it."""
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
    return max(0.0, (when - utcnow()).total_seconds())
