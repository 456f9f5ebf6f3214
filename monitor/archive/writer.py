"""The append-only archive files: one gzip-compressed JSONL file per UTC day, one gzip member per batch.

Layout: ``<archive_dir>/<YYYY>/<MM>/items-<YYYY-MM-DD>.jsonl.gz``. An item goes in the file of the UTC
day of its ``collected_at``: it is always set, it follows stream order, so the archiver appends to
today's file and a past day's file is final (a late ``published_at``, such as a 2022 article ingested
today, never reopens an old file). Search and export filter on ``published_at`` by default (see
``monitor.archive.index``), which is independent of where the line is stored.

Each line is the Item's JSON exactly as it was on the items stream (``zcat ... | jq`` works). Each
batch is one gzip member appended to the day's file; a multi-member gzip file is a valid gzip file
(``zcat``, ``gzip.open``). The append is durable before it returns: the member is written with one
``write`` on an ``O_APPEND`` descriptor under an exclusive ``flock``, then fsynced; when the file
(or its month or year folder) was created by this append, the parent folders are fsynced too, so the
new day's file survives a power cut ("fsync on rotation").

Crashes. A write torn by a crash or a full disk leaves a truncated member at the end of the file. That
batch was never acknowledged (the ack follows the fsync), so the stream redelivers it, and:

* the writer, before its first append to a file (and whenever the file grew by another process's hand
  since its last append), checks the members it has not seen yet; a broken *tail* is cut off (it only
  held lines of an unacknowledged batch, which are written again), logged with the byte count. A broken
  member followed by valid ones (bit rot, not a crash) is left alone and logged as an error;
* the reader (``read_lines``) never stops at a broken member: it keeps the complete lines it could
  decompress, drops the partial last one, logs the damage (``on_damage`` gets a ``Damage``) and looks for
  the next gzip header to go on.

A crash between the fsync and the ack means the batch is written again when redelivered, so a file may
hold the same line twice. Readers dedupe (``iter_items(..., dedupe=True)``, export) and the search
index is keyed by item id, so a duplicate line never shows twice.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import zlib
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import BinaryIO

import structlog

from monitor.schema import Item, WireError, decode, dedup_key

log = structlog.get_logger(__name__)

GZIP_MAGIC = b"\x1f\x8b\x08"
_CHUNK = 1 << 20
_NAME = re.compile(r"^items-(\d{4})-(\d{2})-(\d{2})\.jsonl\.gz$")


def as_utc(when: datetime) -> datetime:
    """A timestamp in UTC; a naive one is taken to be UTC already (the wire format is UTC)."""
    return when.replace(tzinfo=UTC) if when.tzinfo is None else when.astimezone(UTC)


def day_of(item: Item) -> date:
    """The UTC day whose file holds ``item``: that of its ``collected_at``."""
    return as_utc(item.collected_at).date()


def day_path(archive_dir: Path, day: date) -> Path:
    """``<archive_dir>/<YYYY>/<MM>/items-<YYYY-MM-DD>.jsonl.gz``."""
    return archive_dir / f"{day:%Y}" / f"{day:%m}" / f"items-{day.isoformat()}.jsonl.gz"


def archive_files(
    archive_dir: Path, *, since_day: date | None = None, until_day: date | None = None
) -> list[tuple[date, Path]]:
    """The day files present, oldest first, limited to ``since_day <= day <= until_day`` when given."""
    found: list[tuple[date, Path]] = []
    if not archive_dir.is_dir():
        return found
    for path in archive_dir.glob("[0-9][0-9][0-9][0-9]/[0-9][0-9]/items-*.jsonl.gz"):
        match = _NAME.match(path.name)
        if not match or not path.is_file():
            continue
        try:
            day = date(int(match[1]), int(match[2]), int(match[3]))
        except ValueError:
            continue
        if (since_day and day < since_day) or (until_day and day > until_day):
            continue
        found.append((day, path))
    found.sort()
    return found


def compress_member(lines: Iterable[bytes], level: int = 6) -> bytes:
    """One complete gzip member holding ``lines``, each terminated by a newline."""
    packer = zlib.compressobj(level, zlib.DEFLATED, 31)
    parts = [packer.compress(b"".join(line if line.endswith(b"\n") else line + b"\n" for line in lines))]
    parts.append(packer.flush())
    return b"".join(parts)


# --------------------------------------------------------------------------- reading


@dataclass(frozen=True, slots=True)
class Damage:
    """A part of an archive file that could not be read: where, what, and what was kept of it."""

    path: Path
    offset: int  # where the broken member (or the garbage) starts
    kind: str  # "truncated", "corrupt" or "partial-line"
    detail: str
    salvaged_lines: int = 0
    skipped_bytes: int = 0


DamageHandler = Callable[[Damage], None]


def _log_damage(damage: Damage) -> None:
    log.warning(
        "archive file damaged; skipping the broken part",
        path=str(damage.path),
        offset=damage.offset,
        kind=damage.kind,
        detail=damage.detail,
        salvaged_lines=damage.salvaged_lines,
        skipped_bytes=damage.skipped_bytes,
    )


def _find_magic(f: BinaryIO, start: int, size: int) -> int | None:
    """The offset of the next gzip header at or after ``start``, or None."""
    position = start
    while position < size:
        f.seek(position)
        chunk = f.read(_CHUNK + len(GZIP_MAGIC) - 1)
        if not chunk:
            return None
        found = chunk.find(GZIP_MAGIC)
        if found >= 0:
            return position + found
        position += _CHUNK
    return None


@dataclass(slots=True)
class _Member:
    """The outcome of reading one member: where it ended (if valid) or what went wrong."""

    start: int
    end: int | None = None  # offset just past the member when it was complete and valid
    error: str | None = None
    kind: str = ""
    lines: int = 0


def _read_member(f: BinaryIO, start: int, result: _Member) -> Iterator[bytes]:
    """Decompress the member at ``start``, yielding its complete lines; fills ``result`` at the end."""
    f.seek(start)
    unpacker = zlib.decompressobj(31)
    pending = b""
    consumed = 0
    while True:
        chunk = f.read(_CHUNK)
        if not chunk:
            result.kind, result.error = "truncated", "the file ends inside a gzip member"
            break
        try:
            out = unpacker.decompress(chunk)
        except zlib.error as exc:
            result.kind, result.error = "corrupt", f"zlib: {exc}"
            break
        if out:
            *lines, pending = (pending + out).split(b"\n")
            for line in lines:
                if line:
                    result.lines += 1
                    yield line
        if unpacker.eof:
            consumed += len(chunk) - len(unpacker.unused_data)
            result.end = start + consumed
            if pending:  # every member we write ends with a newline
                result.kind, result.error = "partial-line", "member ends without a newline"
                result.end = None
            return
        consumed += len(chunk)
    if pending and result.error:
        result.error += "; its partial last line was dropped"


def read_lines(path: Path, *, on_damage: DamageHandler | None = _log_damage, start: int = 0) -> Iterator[bytes]:
    """Every complete JSON line of one archive file, tolerating torn or corrupt members.

    The lines of a broken member that decompressed before the damage are kept (the partial last one
    is dropped); reading goes on at the next gzip header. Each damaged region is reported to
    ``on_damage`` (logged by default).
    """
    with open(path, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        position = start
        while position < size:
            member = _Member(position)
            yield from _read_member(f, position, member)
            if member.end is not None:
                position = member.end
                continue
            resume = _find_magic(f, position + 1, size)
            skipped = (resume if resume is not None else size) - position
            if on_damage is not None:
                on_damage(Damage(path, position, member.kind, member.error or "", member.lines, skipped_bytes=skipped))
            if resume is None:
                return
            position = resume


def valid_end(path: Path, start: int = 0) -> tuple[int, bool]:
    """``(end, tail_only)``: the offset after the last valid member of the run starting at ``start``.

    ``tail_only`` is False when a valid member follows the first damaged region (damage in the middle
    of the file, which must not be cut off).
    """
    with open(path, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        position = start
        while position < size:
            member = _Member(position)
            for _ in _read_member(f, position, member):
                pass
            if member.end is None:
                resume = _find_magic(f, position + 1, size)
                while resume is not None:
                    probe = _Member(resume)
                    for _ in _read_member(f, resume, probe):
                        pass
                    if probe.end is not None:
                        return position, False
                    resume = _find_magic(f, resume + 1, size)
                return position, True
            position = member.end
        return position, True


def decode_line(line: bytes, path: Path | None = None) -> Item | None:
    """An archived line as an Item, or None (logged) when it is not a valid Item."""
    try:
        return decode(Item, line)
    except WireError as exc:
        log.warning("archive line is not a valid item; skipped", path=str(path) if path else None, error=str(exc))
        return None


def iter_items(
    archive_dir: Path,
    *,
    since_day: date | None = None,
    until_day: date | None = None,
    dedupe: bool = True,
    on_damage: DamageHandler | None = _log_damage,
) -> Iterator[Item]:
    """Every archived Item in file order (oldest day first), each event once when ``dedupe``.

    An event is a post (``new``), each distinct edit, or a delete (``schema.dedup_key``): a line written
    twice after a crash is yielded once, while the edit history is kept.
    """
    seen: set[str] = set()
    for _, path in archive_files(archive_dir, since_day=since_day, until_day=until_day):
        for line in read_lines(path, on_damage=on_damage):
            item = decode_line(line, path)
            if item is None:
                continue
            if dedupe:
                key = dedup_key(item, item.id)
                if key in seen:
                    continue
                seen.add(key)
            yield item


# --------------------------------------------------------------------------- writing


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@dataclass(frozen=True, slots=True)
class Appended:
    """One member written: the file, where the member starts, its size and how many lines it holds."""

    path: Path
    day: date
    offset: int
    size: int
    lines: int
    created: bool


class ArchiveWriter:
    """Appends batches of lines to the day files, durably (``fsync``) unless ``fsync`` is False.

    Safe for several processes on one archive directory (each append holds an exclusive ``flock``);
    not for several threads sharing one writer at once (the stage serializes its batches).
    """

    def __init__(self, archive_dir: Path, *, fsync: bool = True, level: int = 6) -> None:
        self.archive_dir = archive_dir
        self.fsync = fsync
        self.level = level
        # Per file: the offset up to which its members are known to be valid (checked or written here).
        self._checked: dict[Path, int] = {}

    def append(self, lines_by_day: Mapping[date, Sequence[bytes]]) -> list[Appended]:
        """Write each day's lines as one gzip member to that day's file; durable when this returns."""
        written: list[Appended] = []
        for day in sorted(lines_by_day):
            lines = lines_by_day[day]
            if lines:
                written.append(self._append(day, compress_member(lines, self.level), len(lines)))
        return written

    def _append(self, day: date, member: bytes, count: int) -> Appended:
        path = day_path(self.archive_dir, day)
        new_dirs: list[Path] = []  # folders this append creates; each one's parent gets an fsync
        folder = path.parent
        while not folder.exists() and folder.parent != folder:
            new_dirs.append(folder)
            folder = folder.parent
        path.parent.mkdir(parents=True, exist_ok=True)
        created = not path.exists()
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            size = os.fstat(fd).st_size
            size = self._repair(path, fd, size)
            try:
                view = memoryview(member)
                while view:  # a regular file takes it in one write; loop only for the pathological case
                    view = view[os.write(fd, view) :]
                if self.fsync:
                    os.fsync(fd)
            except BaseException:
                # Undo the partial member so the file stays a clean run of members; the batch is retried.
                with contextlib.suppress(OSError):
                    os.ftruncate(fd, size)
                    if self.fsync:
                        os.fsync(fd)
                self._checked.pop(path, None)
                raise
            self._checked[path] = size + len(member)
        finally:
            os.close(fd)  # releases the lock
        if self.fsync and (created or new_dirs):
            _fsync_dir(path.parent)
            for folder in new_dirs:
                _fsync_dir(folder.parent)
        if created:
            log.info("archive file started", path=str(path))
        return Appended(path, day, size, len(member), count, created)

    def _repair(self, path: Path, fd: int, size: int) -> int:
        """Check the members not written by this writer; cut a torn tail off. Returns the size to append at."""
        checked = self._checked.get(path)
        if checked == size:
            return size
        start = checked if checked is not None and checked < size else 0
        end, tail_only = valid_end(path, start)
        if end < size:
            if tail_only:
                log.warning(
                    "archive file had a torn tail (a batch interrupted before its ack); cutting it off",
                    path=str(path),
                    valid_bytes=end,
                    dropped_bytes=size - end,
                )
                os.ftruncate(fd, end)
                if self.fsync:
                    os.fsync(fd)
                size = end
            else:
                log.error(
                    "archive file is damaged before its end; leaving it, readers skip the broken part",
                    path=str(path),
                    damaged_at=end,
                )
        self._checked[path] = size
        return size
