"""The archiver stage: group ``archiver`` on the items stream -> the day files and the search index.

Durability (at-least-once, idempotent effects). ``handle`` returns only after the batch is durable:

1. each day's lines are appended to that day's file as one gzip member and fsynced (``ArchiveWriter``);
2. the index rows are upserted in one SQLite transaction, committed with the WAL fsynced;
3. only then are the Outcomes returned, and the worker acks the entries (in its next pipeline).

A crash before 1 completes leaves a torn member that the writer cuts off and the reader skips; a crash
after 1 or 2 but before the ack means the batch is redelivered and written again: the file then holds
those lines twice (readers and export dedupe them), while the index, keyed by item id, is unchanged.
A failed write fails the whole batch (the worker retries it, and dead-letters after
``max_deliveries``); an entry that cannot be decoded goes to the dead stream at once.

Cost. The fsyncs are per batch (one per day file touched, one for the WAL commit), not per item: on
the 2-core development VM a batch of 200 items of ~1.2 KB takes ~20-25 ms (gzip ~4 ms, FTS5 upsert
~14 ms), with the fsyncs within the run-to-run noise (~0.4 ms each there; count 5-15 ms each on a
spinning disk, still about 5,000 items/s). Per-item fsyncs would cap the archiver at the disk's fsync
rate; fsync only on rotation would ack batches a power cut can still lose.

The files and SQLite calls are blocking, so each batch runs in a worker thread, off the event loop.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import structlog

from monitor.archive.index import ArchiveIndex, UpsertResult, index_path, rebuild_index
from monitor.archive.writer import Appended, ArchiveWriter, archive_files, day_of
from monitor.bus.consume import Entry, Outcome
from monitor.bus.keys import GROUP_ARCHIVER, Keys
from monitor.metrics import Metrics
from monitor.schema import Item, decode_entry, encode

log = structlog.get_logger(__name__)


@dataclass(slots=True)
class WriteResult:
    """One batch written: the members appended and what the index upsert changed."""

    appended: list[Appended]
    index: UpsertResult


class Archive:
    """The archive directory: day files plus the search index, written together batch by batch.

    ``fsync=False`` skips every fsync (files and index): faster, but an acknowledged batch can then
    be lost in a power cut. Keep the default unless the directory is on storage you can afford to lose.
    """

    def __init__(self, archive_dir: Path, *, fsync: bool = True, compress_level: int = 6) -> None:
        self.archive_dir = archive_dir
        self.fsync = fsync
        self.writer = ArchiveWriter(archive_dir, fsync=fsync, level=compress_level)
        self._index: ArchiveIndex | None = None
        self._lock = threading.Lock()

    def _current_index(self) -> ArchiveIndex:
        """The open index, reopened (and rebuilt from the files) when its file was deleted or replaced."""
        index = self._index
        if index is not None and index.is_current():
            return index
        if index is not None:
            log.warning("search index file was removed or replaced; reopening it", path=str(index.path))
            index.close()
            self._index = None
        path = index_path(self.archive_dir)
        missing = not path.exists()
        index = ArchiveIndex(path, durable=self.fsync)
        if missing and archive_files(self.archive_dir):
            log.warning("search index missing; rebuilding it from the archive before archiving more", path=str(path))
            try:
                rebuild_index(self.archive_dir, index=index)
            except BaseException:
                index.close()
                raise
        self._index = index
        return index

    def open(self) -> None:
        """Open (and if needed rebuild) the index now rather than on the first batch."""
        with self._lock:
            self._current_index()

    def write(self, records: Sequence[tuple[Item, bytes]]) -> WriteResult:
        """Append ``(item, its JSON line)`` records to the day files, then index them; durable on return."""
        by_day: dict[date, list[bytes]] = defaultdict(list)
        for item, line in records:
            by_day[day_of(item)].append(line)
        with self._lock:
            index = self._current_index()
            appended = self.writer.append(by_day)
            upserted = index.upsert(item for item, _ in records)
        return WriteResult(appended, upserted)

    def close(self) -> None:
        with self._lock:
            if self._index is not None:
                self._index.close()
                self._index = None


def item_line(item: Item, data: bytes) -> bytes:
    """The archive line for an item: its stream JSON as is, re-encoded only if it spans lines."""
    if b"\n" in data or b"\r" in data:
        return encode(item)
    return data


class ArchiverStage:
    """Consumes ``items`` in group ``archiver``; writes every Item to the archive and its index."""

    name = "archiver"
    group = GROUP_ARCHIVER

    def __init__(self, keys: Keys, archive: Archive, metrics: Metrics | None = None) -> None:
        self.keys = keys
        self.stream = keys.items
        self.archive = archive
        self._seconds = metrics.stage_seconds.labels(self.name) if metrics is not None else None

    async def handle(self, entries: Sequence[Entry]) -> list[Outcome | BaseException]:
        started = time.perf_counter()
        decoded: list[Item | BaseException] = []
        records: list[tuple[Item, bytes]] = []
        for _, fields in entries:
            try:
                item = decode_entry(Item, fields)
            except Exception as exc:  # noqa: BLE001 - a bad entry is dead-lettered alone, never lost
                decoded.append(exc)
                continue
            decoded.append(item)
            records.append((item, item_line(item, fields[b"data"])))
        failure: BaseException | None = None
        if records:
            try:
                await asyncio.to_thread(self.archive.write, records)
            except Exception as exc:  # noqa: BLE001 - the whole batch is retried
                log.error("archive write failed; the batch will be retried", error=f"{type(exc).__name__}: {exc}")
                failure = exc
        if self._seconds is not None and records:
            per_item = (time.perf_counter() - started) / len(records)
            for _ in records:
                self._seconds.observe(per_item)
        results: list[Outcome | BaseException] = []
        for result in decoded:
            if isinstance(result, Item):
                results.append(failure if failure is not None else Outcome(source=result.source))
            else:
                results.append(result)
        return results

    def close(self) -> None:
        """Close the index connection (the daemon calls this when the worker has stopped)."""
        self.archive.close()
