"""Read article files from disk into RawItems (the corpus collector's file side; no Redis here).

Supported files:

- ``.txt``: plain text, kept as written (UTF-8, a BOM is dropped, line endings become ``\\n``).
  Title and publication date come from :func:`extract_title` and :func:`extract_published_at`.
- ``.md`` / ``.markdown``: optional front matter between ``---`` lines (``title:``, ``date:``,
  ``author:``); otherwise the first ``# `` heading is the title. Markdown syntax is stripped lightly.
- ``.html`` / ``.htm``: the main text, title, author and date come from trafilatura; our own
  extractors fill in what its metadata lacks. The raw HTML is not carried (``html=None``).
- ``.jsonl``: one RawItem JSON object per line, validated by ``schema.decode``.
- ``.json``: a Telegram Desktop chat export (``result.json``), one ``telegram_export`` item per post;
  see :mod:`monitor.collectors.telegram_export`. Any other JSON document is rejected.

Identity of an article (``.jsonl`` and ``.json`` items carry their own): ``source="corpus"``,
``channel`` = the name of the file's (resolved) parent folder and ``external_id`` = ``short_hash`` of
the file's raw bytes, so re-reading an unchanged file, however its path is spelled, yields the same
item id.

Nothing here raises for bad content. A file that cannot be used becomes a :class:`Rejected` with a
readable reason; an over-long text is cut at a paragraph or word boundary and reported as
:class:`Truncated`. One bad file never affects another, and one bad ``.jsonl`` line never affects the
other lines.
"""

from __future__ import annotations

import bisect
import logging
import os
import re
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import trafilatura
from lxml import etree

from monitor.schema import RawItem, WireError, decode, short_hash, utcnow

__all__ = [
    "DEFAULT_MAX_BYTES",
    "DEFAULT_MAX_TEXT_CHARS",
    "SUPPORTED_SUFFIXES",
    "FileResult",
    "Rejected",
    "Truncated",
    "article_from_text",
    "discover",
    "extract_published_at",
    "extract_title",
    "read_corpus_file",
    "truncate_text",
]

SUPPORTED_SUFFIXES: frozenset[str] = frozenset({".txt", ".md", ".markdown", ".html", ".htm", ".jsonl", ".json"})
DEFAULT_MAX_BYTES = 5 * 1024 * 1024
DEFAULT_MAX_TEXT_CHARS = 200_000

# The config key named in the "file too large" reason, so the user knows what to raise.
MAX_BYTES_SETTING = "collectors.corpus.max_bytes"

_MARKDOWN_SUFFIXES = frozenset({".md", ".markdown"})
_HTML_SUFFIXES = frozenset({".html", ".htm"})
_JSONL_SUFFIXES = frozenset({".jsonl"})
_JSON_SUFFIXES = frozenset({".json"})

_UTF8_BOM = b"\xef\xbb\xbf"
_BINARY_SNIFF_BYTES = 8 * 1024
_BINARY_CONTROL_SHARE = 0.10
# Control bytes that ordinary text does contain: tab, line feed, vertical tab, form feed, carriage return.
_TEXT_CONTROLS = frozenset(b"\t\n\x0b\x0c\r")


@dataclass(frozen=True, slots=True)
class Rejected:
    """A file (or ``path:LINE`` of .jsonl, ``path:messages[INDEX]`` of an export) that yielded no item, and why."""

    path: str
    reason: str


@dataclass(frozen=True, slots=True)
class Truncated:
    """An item whose text was cut to the configured maximum length."""

    path: str
    original_chars: int
    kept_chars: int


@dataclass(slots=True)
class FileResult:
    """Everything one file produced: its items, and what was rejected or truncated on the way.

    ``warnings`` are notes about a file that was still read, such as messages skipped on purpose or a
    date read in a guessed time zone; they are worth showing once per file, not an error.
    """

    items: list[RawItem] = field(default_factory=list)
    rejected: list[Rejected] = field(default_factory=list)
    truncated: list[Truncated] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


# --------------------------------------------------------------------------------------------------
# discovery


def _is_supported(path: Path) -> bool:
    return path.suffix.lower() in SUPPORTED_SUFFIXES


def _describe_suffix(path: Path) -> str:
    return f"unsupported file type '{path.suffix}'" if path.suffix else "unsupported file type (no extension)"


def _walk_folder(root: Path) -> list[Path]:
    """Supported files below ``root``, sorted by their path inside it; hidden files and folders skipped."""
    found: list[Path] = []
    for folder, dirnames, filenames in os.walk(root, followlinks=False):
        dirnames[:] = [d for d in dirnames if not d.startswith(".")]
        for name in filenames:
            candidate = Path(folder) / name
            if not name.startswith(".") and _is_supported(candidate) and candidate.is_file():
                found.append(candidate)
    return sorted(found, key=lambda candidate: candidate.relative_to(root).parts)


def discover(paths: Sequence[Path | str]) -> tuple[list[Path], list[Rejected]]:
    """Expand files and folders into the supported files to read, in a deterministic order.

    Folders are walked recursively (sorted by name, hidden entries skipped) and files with other
    suffixes in them are passed over silently. A file named explicitly with an unsupported suffix, or a
    path that does not exist, becomes a :class:`Rejected`. A file reached twice is listed once.
    """
    if isinstance(paths, str | Path):
        paths = [paths]
    found: list[Path] = []
    rejected: list[Rejected] = []
    seen: set[Path] = set()

    def add(path: Path) -> None:
        key = path.resolve()
        if key not in seen:
            seen.add(key)
            found.append(path)

    for given in paths:
        path = Path(given)
        if path.is_dir():
            for candidate in _walk_folder(path):
                add(candidate)
        elif path.is_file():
            if _is_supported(path):
                add(path)
            else:
                rejected.append(Rejected(str(given), _describe_suffix(path)))
        elif path.exists():
            rejected.append(Rejected(str(given), "not a regular file or folder"))
        else:
            rejected.append(Rejected(str(given), "no such file or folder"))
    return found, rejected


# --------------------------------------------------------------------------------------------------
# bytes -> text


def _human_size(size: int) -> str:
    if size < 1024:
        return f"{size} bytes"
    if size < 1024 * 1024:
        return f"{size / 1024:.1f} KB"
    return f"{size / (1024 * 1024):.1f} MB"


def _binary_reason(data: bytes) -> str | None:
    """Why ``data`` looks like a binary file, or None when it looks like text."""
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        return "UTF-16 text is not supported (save the file as UTF-8)"
    if b"\x00" in data:
        return "binary file (NUL bytes)"
    head = data[:_BINARY_SNIFF_BYTES]
    controls = sum(1 for byte in head if (byte < 0x20 and byte not in _TEXT_CONTROLS) or byte == 0x7F)
    if head and controls / len(head) > _BINARY_CONTROL_SHARE:
        share = 100 * controls / len(head)
        return f"binary file ({share:.0f}% control characters in the first 8 KB)"
    return None


def _decode_utf8(data: bytes) -> tuple[str | None, str | None]:
    """``(text, None)``, or ``(None, reason)`` when ``data`` is not valid UTF-8. Drops a leading BOM."""
    offset = 0
    if data.startswith(_UTF8_BOM):
        data, offset = data[len(_UTF8_BOM) :], len(_UTF8_BOM)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        byte = data[exc.start]
        return None, f"not valid UTF-8 (invalid byte 0x{byte:02x} at offset {exc.start + offset})"
    return _normalize_newlines(text), None


def _normalize_newlines(text: str) -> str:
    return text.replace("\r\n", "\n").replace("\r", "\n")


def truncate_text(text: str, limit: int) -> str:
    """``text`` cut to at most ``limit`` characters, at a paragraph break or else a space if possible."""
    if len(text) <= limit:
        return text
    floor = limit // 2  # do not throw away more than half of what we may keep to find a boundary
    window = text[: limit + 1]  # a boundary right after the last kept character still counts
    for pattern in ("\n\n", "\n", " "):
        cut = window.rfind(pattern, floor)
        if cut > 0:
            kept = text[:cut].rstrip()
            if kept:
                return kept
    return text[:limit]


# --------------------------------------------------------------------------------------------------
# dates

_EN_MONTHS = {
    "january": 1, "jan": 1, "february": 2, "feb": 2, "march": 3, "mar": 3, "april": 4, "apr": 4,
    "may": 5, "june": 6, "jun": 6, "july": 7, "jul": 7, "august": 8, "aug": 8, "september": 9,
    "sept": 9, "sep": 9, "october": 10, "oct": 10, "november": 11, "nov": 11, "december": 12, "dec": 12,
}  # fmt: skip
# Ukrainian and Russian month names in the genitive case, as they appear in "18 листопада 2023".
_SLAVIC_MONTHS = {
    "січня": 1, "лютого": 2, "березня": 3, "квітня": 4, "травня": 5, "червня": 6,
    "липня": 7, "серпня": 8, "вересня": 9, "жовтня": 10, "листопада": 11, "грудня": 12,
    "января": 1, "февраля": 2, "марта": 3, "апреля": 4, "мая": 5, "июня": 6,
    "июля": 7, "августа": 8, "сентября": 9, "октября": 10, "ноября": 11, "декабря": 12,
}  # fmt: skip

# English month names must be capitalised ("May 26, 2023"), so "may" the verb is not read as a month.
_EN_MONTH_RE = "|".join(
    sorted({name.capitalize() for name in _EN_MONTHS} | {name.upper() for name in _EN_MONTHS}, key=len)[::-1]
)
_SLAVIC_MONTH_RE = "|".join(sorted(_SLAVIC_MONTHS, key=len, reverse=True))
_YEAR = r"(?P<year>(?:19|20)\d\d)(?!\d)"
_ORDINAL = r"(?:st|nd|rd|th)?"

_DATE_PATTERNS: tuple[re.Pattern[str], ...] = (
    # 2023-11-18, optionally with a time and offset: 2023-11-18T14:05:00Z
    re.compile(
        r"(?<![\d.])(?P<year>(?:19|20)\d\d)-(?P<month>\d\d)-(?P<day>\d\d)"
        r"(?:[T ](?P<hour>\d\d):(?P<minute>\d\d)(?::(?P<second>\d\d)(?:\.\d+)?)?"
        r"(?P<tz>Z|[+-]\d\d:?\d\d)?)?(?![\d])"
    ),
    # Mar. 24, 2023 / March 24, 2023 / March 24th 2023
    re.compile(rf"\b(?P<mname>{_EN_MONTH_RE})\.?\s+(?P<day>\d{{1,2}}){_ORDINAL},?\s+{_YEAR}"),
    # 24th March 2023 / 24 March 2023 / 24th of March, 2023
    re.compile(rf"(?<![\d.])(?P<day>\d{{1,2}}){_ORDINAL}\s+(?:of\s+)?(?P<mname>{_EN_MONTH_RE})\.?,?\s+{_YEAR}"),
    # 18 листопада 2023 / 18 ноября 2023
    re.compile(rf"(?<![\d.])(?P<day>\d{{1,2}})\s+(?P<mname>{_SLAVIC_MONTH_RE})\s+{_YEAR}", re.IGNORECASE),
    # 18.11.2023 (day first, as written in Ukraine, Russia and most of Europe)
    re.compile(r"(?<![\d.])(?P<day>\d{1,2})\.(?P<month>\d{1,2})\.(?P<year>(?:19|20)\d\d)(?![\d])"),
)

# Explicit publication markers; the date must follow within a few words (a weekday, "on", a comma).
_MARKER_RE = re.compile(
    r"(?:^|(?<=\s))(?:date|dated|published(?:\s+on)?|posted(?:\s+on)?|"
    r"опубліковано|опубликовано|дата(?:\s+публікації|\s+публикации)?)\b\s*[:\-\u2013\u2014]?\s*",
    re.IGNORECASE,
)
_MARKER_REACH = 24  # characters between the marker and the start of its date


@dataclass(frozen=True, slots=True)
class _FoundDate:
    start: int
    value: datetime


def _to_datetime(match: re.Match[str]) -> datetime | None:
    groups = match.groupdict()
    try:
        year = int(groups["year"])
        day = int(groups["day"])
        if groups.get("mname"):
            name = groups["mname"].lower()
            month = _EN_MONTHS.get(name) or _SLAVIC_MONTHS[name]
        else:
            month = int(groups["month"])
        if groups.get("hour"):
            value = datetime(year, month, day, int(groups["hour"]), int(groups["minute"]), int(groups["second"] or 0))
            tz = groups.get("tz")
            if tz and tz != "Z":
                sign = 1 if tz[0] == "+" else -1
                digits = tz[1:].replace(":", "")
                value -= sign * timedelta(hours=int(digits[:2]), minutes=int(digits[2:]))
            return value.replace(tzinfo=UTC)
        return datetime(year, month, day, tzinfo=UTC)
    except (KeyError, ValueError, OverflowError):
        return None


def _find_dates(text: str) -> list[_FoundDate]:
    """Every full (day, month and year) date in ``text``, in order of position."""
    found: list[_FoundDate] = []
    claimed: list[list[tuple[int, int]]] = []  # per earlier pattern: its spans, sorted and disjoint

    def overlaps(start: int, end: int) -> bool:
        for spans in claimed:
            index = bisect.bisect_left(spans, (start, end))
            if (index > 0 and spans[index - 1][1] > start) or (index < len(spans) and spans[index][0] < end):
                return True
        return False

    for pattern in _DATE_PATTERNS:  # earlier patterns win where two formats overlap
        spans: list[tuple[int, int]] = []
        for match in pattern.finditer(text):
            start, end = match.span()
            if overlaps(start, end):
                continue
            value = _to_datetime(match)
            if value is not None:
                spans.append((start, end))
                found.append(_FoundDate(start, value))
        claimed.append(spans)
    found.sort(key=lambda item: item.start)
    return found


def extract_published_at(text: str, *, now: datetime | None = None) -> datetime | None:
    """The publication time the text states, in UTC (midnight when only a date is given), or None.

    An explicit marker ("date 2023-11-18", "Published: ...", "Опубліковано ...", "Опубликовано ...")
    wins. Otherwise the latest full date mentioned is taken, since an article is published on or after
    the events it reports. Dates without a year are ignored, and so is any date later than ``now``
    (default: the current time) plus one day of slack for time zones.
    """
    latest_allowed = (now or utcnow()) + timedelta(days=1)
    dates = [found for found in _find_dates(text) if found.value <= latest_allowed]
    if not dates:
        return None
    starts = [found.start for found in dates]
    for marker in _MARKER_RE.finditer(text):
        index = bisect.bisect_left(starts, marker.end())
        if index < len(dates) and dates[index].start <= marker.end() + _MARKER_REACH:
            between = text[marker.end() : dates[index].start]
            if "\n" not in between and not any(ch.isdigit() for ch in between):
                return dates[index].value
    return max(found.value for found in dates)


# --------------------------------------------------------------------------------------------------
# titles

_TITLE_MIN, _TITLE_MAX = 15, 200
_TITLE_HEAD_LINES = 12  # how far down the page a headline is looked for
_REPEAT_REACH = 4  # how close a repeated headline must follow its first copy
_BREADCRUMB_MAX_WORDS = 5
_TITLE_SCAN_CHARS = 20_000  # a headline sits at the top; huge texts are not split whole

# Navigation, sharing, credits and other page furniture: never a headline.
_BOILERPLATE_PREFIX = re.compile(
    r"^(?:no\s?script|please wait|enable javascript|javascript is|skip to\b|main menu|sign in|log in|"
    r"subscribe\b|home page|we use cookies|cookie|advertisement|advertising|sponsored|share this|"
    r"share on\b|copy to clipboard|copy/paste|close button|leave a (?:reply|comment)|no comments|"
    r"exit mobile version|you might also like|you may also like|read more|read also|see also|most read|"
    r"more from\b|follow us|tags?:|filed under|(?:photo|image|picture|video|credits?)\s*(?:credit|by)?\s*:|"
    r"source:|copyright\b|all rights reserved|"
    r"поділитися|читайте також|дивіться також|реклама|фото\s*:|джерело\s*:|"
    r"поделиться|читайте также|смотрите также|источник\s*:)",
    re.IGNORECASE,
)
_BOILERPLATE_ANYWHERE = re.compile(r"©|\bcopyright\b|all rights reserved|\b[a-z]+_[a-z]|https?://|www\.", re.IGNORECASE)
# "From: Jane Doe", "Author: ...", "Written by ..."; a bare "By <Name>" is checked in _is_byline.
_BYLINE_LABEL = re.compile(
    r"^(?:(?:from|author|автор|авторка|автори)\s*:|(?:written|posted|reported)\s+by\s)", re.IGNORECASE
)
_DATE_MARKER_LINE = re.compile(r"^(?:date|dated|published|posted|updated)\b\s*:?\s*\d", re.IGNORECASE)
_MD_HEADING = re.compile(r"^#{1,6}\s+(?P<title>.+?)\s*#*\s*$")


def _clean_line(line: str) -> str:
    return " ".join(line.split())


def _is_boilerplate(line: str) -> bool:
    if _BOILERPLATE_PREFIX.match(line) or _BOILERPLATE_ANYWHERE.search(line):
        return True
    if _DATE_MARKER_LINE.match(line):
        return True
    return _is_byline(line)


def _is_byline(line: str) -> bool:
    """A short credit line: "By Staff Reporter", "From: Jane Doe" (but not "By the numbers: ...")."""
    words = line.split()
    if len(line) > 80 or len(words) > 10:
        return False
    if _BYLINE_LABEL.match(line):
        return True
    return len(words) > 1 and words[0].lower() == "by" and words[1][:1].isupper()


def _title_like(line: str) -> bool:
    if not _TITLE_MIN <= len(line) <= _TITLE_MAX or len(line.split()) < 3:
        return False
    letters = sum(ch.isalpha() for ch in line)
    return letters >= len(line) * 0.6 and not _is_boilerplate(line)


def _is_prose(line: str) -> bool:
    """A body paragraph rather than a headline: long, or a full sentence of many words."""
    return len(line) > _TITLE_MAX or (line.endswith(".") and len(line.split()) >= 12)


def _repeated_headline(lines: list[str]) -> str | None:
    """A headline printed twice near the top, or once behind a breadcrumb ("Home World <title>")."""
    for index, line in enumerate(lines[:_TITLE_HEAD_LINES]):
        if _is_prose(line) and not _is_boilerplate(line):
            break
        for later in lines[index + 1 : index + 1 + _REPEAT_REACH]:
            if not _title_like(later):
                continue
            if later.casefold() == line.casefold():
                return later
            if line.casefold().endswith(" " + later.casefold()):
                prefix = line[: len(line) - len(later)].split()
                if len(prefix) <= _BREADCRUMB_MAX_WORDS:
                    return later
    return None


def extract_title(text: str) -> str | None:
    """A headline for ``text``, found by general layout heuristics, or None.

    In order: a markdown ``# heading`` opening the text; a line repeated near the top (scraped pages
    often print the headline twice, sometimes once behind a breadcrumb such as "Home World "); else the
    first line of 15 to 200 characters, before the body starts, that is not navigation, a byline, a credit
    or other boilerplate and does not end with a full stop.
    """
    head = text[:_TITLE_SCAN_CHARS].removeprefix("\ufeff")
    lines = [cleaned for raw in head.splitlines() if (cleaned := _clean_line(raw))]
    if not lines:
        return None
    heading = _MD_HEADING.match(lines[0])
    if heading:
        return heading.group("title")
    repeated = _repeated_headline(lines)
    if repeated:
        return repeated
    for line in lines[:_TITLE_HEAD_LINES]:
        if _is_boilerplate(line):
            continue
        if _title_like(line) and not line.endswith((".", ":", ",", ";")):
            return line
        if _is_prose(line):
            break  # the body has started; a subheading further down is not the headline
    return None


# --------------------------------------------------------------------------------------------------
# markdown

_FRONT_MATTER_KEY = re.compile(r"^(?P<key>[A-Za-z_][\w-]*)\s*:\s*(?P<value>.*)$")
# Link targets may hold one level of parentheses ("https://en.wikipedia.org/wiki/X_(city)").
_MD_TARGET = r"\((?:[^()\n]|\([^()\n]{0,200}\)){0,2000}\)"
_MD_IMAGE = re.compile(rf"!\[[^\[\]\n]{{0,500}}\](?:{_MD_TARGET}|\[[^\[\]\n]{{0,500}}\])")
_MD_LINK = re.compile(
    rf"\[(?P<text>[^\[\]\n]{{1,500}})\]{_MD_TARGET}|\[(?P<ref>[^\[\]\n]{{1,500}})\]\[[^\[\]\n]{{0,500}}\]"
)
_MD_REF_DEFINITION = re.compile(r"^[ \t]{0,3}\[[^\]\n]{1,500}\]:[ \t]+\S.*$", re.MULTILINE)
_MD_HEADING_MARKS = re.compile(r"^[ \t]{0,3}#{1,6}[ \t]+(.*?)[ \t]*#*[ \t]*$", re.MULTILINE)
_MD_RULE = re.compile(r"^[ \t]{0,3}(?:[-*_][ \t]*){3,}$", re.MULTILINE)
_MD_QUOTE = re.compile(r"^[ \t]{0,3}>[ \t]?", re.MULTILINE)
# A span may not contain its own marker and is bounded, so lines full of unmatched markers stay linear.
_MD_STRONG = re.compile(r"\*\*(?=\S)([^*\n]{1,500}?)(?<=\S)\*\*|__(?=\S)([^_\n]{1,500}?)(?<=\S)__")
_MD_EMPHASIS = re.compile(
    r"(?<![\w*])\*(?=\S)([^*\n]{1,500}?)(?<=\S)\*(?![\w*])|(?<![\w_])_(?=\S)([^_\n]{1,500}?)(?<=\S)_(?![\w_])"
)
_MD_STRIKE = re.compile(r"~~(?=\S)([^~\n]{1,500}?)(?<=\S)~~")
_MD_CODE = re.compile(r"`([^`\n]+)`")


def _split_front_matter(text: str) -> tuple[dict[str, str], str]:
    """``(keys, body)``: simple ``key: value`` front matter between ``---`` lines, if the text has it."""
    lines = text.split("\n")
    if not lines or lines[0].strip() != "---":
        return {}, text
    for end in range(1, len(lines)):
        if lines[end].strip() in ("---", "..."):
            break
    else:
        return {}, text  # an opening rule that is never closed is content, not front matter
    keys: dict[str, str] = {}
    for line in lines[1:end]:
        match = _FRONT_MATTER_KEY.match(line.strip())
        if match:
            value = match.group("value").strip()
            if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
                value = value[1:-1]
            keys[match.group("key").lower()] = value
    return keys, "\n".join(lines[end + 1 :])


def _strip_markdown(text: str) -> str:
    text = _MD_REF_DEFINITION.sub("", text)
    text = _MD_IMAGE.sub("", text)
    text = _MD_LINK.sub(lambda m: m.group("text") or m.group("ref"), text)
    text = _MD_RULE.sub("", text)
    text = _MD_HEADING_MARKS.sub(r"\1", text)
    text = _MD_QUOTE.sub("", text)
    text = _MD_STRONG.sub(lambda m: m.group(1) or m.group(2), text)
    text = _MD_EMPHASIS.sub(lambda m: m.group(1) or m.group(2), text)
    text = _MD_STRIKE.sub(r"\1", text)
    text = _MD_CODE.sub(r"\1", text)
    text = re.sub(r"\n{3,}", "\n\n", text)
    return text.strip()


def _first_heading(markdown: str) -> str | None:
    for line in markdown.split("\n"):
        match = _MD_HEADING.match(line.strip())
        if match and line.lstrip().startswith("# "):
            return _strip_markdown(match.group("title")) or None
    return None


# --------------------------------------------------------------------------------------------------
# items


@dataclass(frozen=True, slots=True)
class _Context:
    """What every item read from one file shares."""

    channel: str
    external_id: str
    collected_at: datetime
    url: str | None
    max_text_chars: int
    label: str  # the path (or text) named in a Truncated report


def _build_item(
    text: str,
    ctx: _Context,
    *,
    title: str | None,
    published_at: datetime | None,
    author: str | None = None,
) -> tuple[RawItem, Truncated | None]:
    kept = truncate_text(text, ctx.max_text_chars)
    truncated = Truncated(ctx.label, len(text), len(kept)) if kept != text else None
    item = RawItem(
        source="corpus",
        channel=ctx.channel,
        external_id=ctx.external_id,
        text=kept,
        collected_at=ctx.collected_at,
        url=ctx.url,
        published_at=published_at,
        author=author or None,
        title=title or None,
    )
    return item, truncated


def _plain_article(text: str, ctx: _Context) -> tuple[RawItem, Truncated | None]:
    return _build_item(
        text,
        ctx,
        title=extract_title(text),
        published_at=extract_published_at(text, now=ctx.collected_at),
    )


def article_from_text(
    text: str,
    *,
    channel: str,
    external_id: str | None = None,
    collected_at: datetime | None = None,
    url: str | None = None,
    max_text_chars: int = DEFAULT_MAX_TEXT_CHARS,
) -> tuple[RawItem, Truncated | None]:
    """A corpus RawItem for a plain text, with its title and publication date extracted.

    ``external_id`` defaults to ``short_hash(text)``. A text over ``max_text_chars`` is cut at a
    paragraph or word boundary and the cut is returned as a :class:`Truncated` (its ``path`` is ``url``,
    or ``channel/external_id``). An empty text is not rejected here; that is the caller's decision.
    """
    text = text.removeprefix("\ufeff")
    ext_id = external_id or short_hash(text)
    ctx = _Context(
        channel=channel,
        external_id=ext_id,
        collected_at=collected_at or utcnow(),
        url=url,
        max_text_chars=max_text_chars,
        label=url or f"{channel}/{ext_id}",
    )
    return _plain_article(text, ctx)


def _standalone_date(value: str | None, now: datetime) -> datetime | None:
    """A date given on its own (front matter, HTML metadata): ISO 8601 first, then the text formats."""
    if not value:
        return None
    try:
        parsed = datetime.fromisoformat(value.strip())
    except ValueError:
        return extract_published_at(value, now=now)
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)


def _markdown_article(text: str, ctx: _Context) -> tuple[RawItem, Truncated | None]:
    keys, body = _split_front_matter(text)
    plain = _strip_markdown(body)
    title = keys.get("title") or _first_heading(body) or extract_title(plain)
    published = _standalone_date(keys.get("date") or keys.get("published"), ctx.collected_at)
    if published is None:
        published = extract_published_at(plain, now=ctx.collected_at)
    return _build_item(plain, ctx, title=title, published_at=published, author=keys.get("author"))


# trafilatura logs every page it discards; the Rejected reason says the same thing once, without
# writing over the progress bar. Reference-counted so concurrent reader threads restore levels correctly.
_QUIET_LOGGERS = ("trafilatura", "htmldate", "courlan")
_quiet_lock = threading.Lock()
_quiet_depth = 0
_saved_levels: dict[str, int] = {}


@contextmanager
def _quiet_html_loggers() -> Iterator[None]:
    global _quiet_depth
    with _quiet_lock:
        if _quiet_depth == 0:
            for name in _QUIET_LOGGERS:
                logger = logging.getLogger(name)
                _saved_levels[name] = logger.level
                logger.setLevel(logging.CRITICAL)
        _quiet_depth += 1
    try:
        yield
    finally:
        with _quiet_lock:
            _quiet_depth -= 1
            if _quiet_depth == 0:
                for name, level in _saved_levels.items():
                    logging.getLogger(name).setLevel(level)


# What a parser may raise on hostile markup; anything else is a bug worth a traceback.
_HTML_PARSE_ERRORS = (
    etree.LxmlError,
    ValueError,
    TypeError,
    AttributeError,
    LookupError,
    RecursionError,
)


def _html_article(html: str, ctx: _Context) -> tuple[RawItem, Truncated | None] | str:
    """The article in an HTML page, or the reason there is none."""
    try:
        with _quiet_html_loggers():
            document = trafilatura.bare_extraction(
                html,
                include_comments=False,
                with_metadata=True,
                date_extraction_params={
                    "original_date": True,
                    "extensive_search": False,
                    "max_date": ctx.collected_at.strftime("%Y-%m-%d"),
                },
            )
    except _HTML_PARSE_ERRORS as exc:  # hostile markup must not stop the other files
        return f"HTML could not be parsed ({type(exc).__name__}: {exc})"
    if document is None:
        return "no article text found in HTML"
    fields = (
        document
        if isinstance(document, dict)
        else {name: getattr(document, name, None) for name in ("text", "title", "date", "author")}
    )
    text = _normalize_newlines(str(fields.get("text") or "")).strip()
    if not text:
        return "no article text found in HTML"
    title = fields.get("title")
    author = fields.get("author")
    published = _standalone_date(fields.get("date"), ctx.collected_at)
    if published is None:
        published = extract_published_at(text, now=ctx.collected_at)
    return _build_item(
        text,
        ctx,
        title=str(title) if title else extract_title(text),
        published_at=published,
        author=str(author) if author else None,
    )


def _read_jsonl(data: bytes, label: str, max_text_chars: int, result: FileResult) -> None:
    """One RawItem per non-blank line; a bad line is rejected on its own and the rest still count."""
    for lineno, raw_line in enumerate(data.split(b"\n"), start=1):
        if not raw_line.strip():
            continue
        where = f"{label}:{lineno}"
        line, problem = _decode_utf8(raw_line)
        if line is None:
            result.rejected.append(Rejected(where, f"line {lineno}: {problem}"))
            continue
        try:
            item = decode(RawItem, line)
        except WireError as exc:
            result.rejected.append(Rejected(where, f"line {lineno}: {exc}"))
            continue
        kept = truncate_text(item.text, max_text_chars)
        if kept != item.text:
            result.truncated.append(Truncated(where, len(item.text), len(kept)))
            item.text = kept
        result.items.append(item)


def read_corpus_file(
    path: Path,
    *,
    max_bytes: int = DEFAULT_MAX_BYTES,
    max_text_chars: int = DEFAULT_MAX_TEXT_CHARS,
    collected_at: datetime | None = None,
) -> FileResult:
    """Read one file into RawItems; problems come back in ``rejected``, ``truncated`` and ``warnings``.

    Never raises for bad content. (A non-positive limit is a programming error and raises ValueError.)
    """
    if max_text_chars < 1 or max_bytes < 1:
        raise ValueError("max_bytes and max_text_chars must be positive")
    path = Path(path)
    label = str(path)
    result = FileResult(items=[], rejected=[], truncated=[])

    def reject(reason: str) -> FileResult:
        result.rejected.append(Rejected(label, reason))
        return result

    try:
        size = path.stat().st_size
    except FileNotFoundError:
        return reject("no such file")
    except OSError as exc:
        return reject(f"cannot read file ({exc.strerror or exc})")
    if not path.is_file():
        return reject("not a regular file")
    suffix = path.suffix.lower()
    if suffix not in SUPPORTED_SUFFIXES:
        return reject(_describe_suffix(path))
    if size > max_bytes:
        return reject(f"file is {_human_size(size)}, over the {_human_size(max_bytes)} limit ({MAX_BYTES_SETTING})")
    try:
        with path.open("rb") as handle:
            data = handle.read(max_bytes + 1)  # the file may have grown since stat()
    except OSError as exc:
        return reject(f"cannot read file ({exc.strerror or exc})")
    if len(data) > max_bytes:
        return reject(f"file is over the {_human_size(max_bytes)} limit ({MAX_BYTES_SETTING})")
    if not data.removeprefix(_UTF8_BOM).strip():
        return reject("empty file")
    binary = _binary_reason(data)
    if binary:
        return reject(binary)

    if suffix in _JSONL_SUFFIXES:
        _read_jsonl(data, label, max_text_chars, result)
        return result

    text, problem = _decode_utf8(data)
    if text is None:
        return reject(problem or "not valid UTF-8")
    if not text.strip():
        return reject("empty file")
    if suffix in _JSON_SUFFIXES:
        # telegram_export builds on this module's FileResult, Rejected and Truncated, so importing it at
        # the top would be circular; after the first call this is a dictionary lookup.
        from monitor.collectors.telegram_export import parse_export  # noqa: PLC0415

        return parse_export(text, path=label, collected_at=collected_at, max_text_chars=max_text_chars)

    resolved = path.resolve()
    ctx = _Context(
        channel=resolved.parent.name or "corpus",
        external_id=short_hash(data),
        collected_at=collected_at or utcnow(),
        url=resolved.as_uri(),
        max_text_chars=max_text_chars,
        label=label,
    )
    built: tuple[RawItem, Truncated | None] | str
    if suffix in _MARKDOWN_SUFFIXES:
        built = _markdown_article(text, ctx)
    elif suffix in _HTML_SUFFIXES:
        built = _html_article(text, ctx)
    else:
        built = _plain_article(text, ctx)
    if isinstance(built, str):
        return reject(built)
    item, truncated = built
    if not item.text.strip():
        return reject("no article text")
    result.items.append(item)
    if truncated is not None:
        result.truncated.append(truncated)
    return result
