"""The corpus collector: article files on disk -> RawItems on the raw stream, with a progress bar.

Reading and parsing live in ``corpus_files``; this module publishes. Items go out in pipelined
batches through the idempotent publisher, so re-ingesting an unchanged file adds nothing. Every file
that cannot be read is reported once with its path and the reason; the others are still ingested.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import structlog
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from monitor.bus.keys import Keys
from monitor.bus.publish import Publisher
from monitor.bus.redis import open_redis
from monitor.collectors.corpus_files import Rejected, Truncated, discover, read_corpus_file
from monitor.config import CorpusSettings, Settings
from monitor.metrics import Metrics
from monitor.schema import RawItem, utcnow

log = structlog.get_logger(__name__)

PUBLISH_BATCH = 200


@dataclass(slots=True)
class IngestReport:
    """What one ingestion did."""

    files: int = 0
    items: int = 0
    published: int = 0
    duplicates: int = 0
    rejected: list[Rejected] = field(default_factory=list)
    truncated: list[Truncated] = field(default_factory=list)


async def ingest_paths(
    paths: Sequence[Path | str],
    publisher: Publisher,
    settings: CorpusSettings,
    metrics: Metrics,
    *,
    progress: bool = False,
) -> IngestReport:
    """Read every article under ``paths`` and publish it; never stops on one bad file."""
    report = IngestReport()
    files, rejected = discover(paths)
    for bad in rejected:
        _report_rejected(bad, metrics)
    report.rejected.extend(rejected)
    report.files = len(files)
    pending: list[RawItem] = []
    collected_at = utcnow()

    bar = Progress(
        TextColumn("[bold]ingest[/bold]"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[current]}", style="dim"),
        TimeElapsedColumn(),
        console=Console(stderr=True),
        disable=not progress,
        transient=False,
    )
    with bar:
        task = bar.add_task("ingest", total=len(files), current="")
        for path in files:
            bar.update(task, current=path.name[:40])
            result = await asyncio.to_thread(
                read_corpus_file,
                path,
                max_bytes=settings.max_bytes,
                max_text_chars=settings.max_text_chars,
                collected_at=collected_at,
            )
            for bad in result.rejected:
                _report_rejected(bad, metrics)
            for cut in result.truncated:
                log.warning(
                    "article text truncated",
                    path=cut.path,
                    chars=cut.original_chars,
                    kept=cut.kept_chars,
                    setting="collectors.corpus.max_text_chars",
                )
            for note in result.warnings:
                log.warning("corpus file note", path=str(path), note=note)
            report.rejected.extend(result.rejected)
            report.truncated.extend(result.truncated)
            pending.extend(result.items)
            report.items += len(result.items)
            if len(pending) >= PUBLISH_BATCH:
                await _flush(pending, publisher, metrics, report)
            bar.advance(task)
        await _flush(pending, publisher, metrics, report)
        bar.update(task, current="done")
    log.info(
        "corpus ingested",
        files=report.files,
        items=report.items,
        published=report.published,
        duplicates=report.duplicates,
        rejected=len(report.rejected),
        truncated=len(report.truncated),
    )
    return report


async def _flush(pending: list[RawItem], publisher: Publisher, metrics: Metrics, report: IngestReport) -> None:
    if not pending:
        return
    ids = await publisher.publish_raw(pending)
    for raw, entry_id in zip(pending, ids, strict=True):
        if entry_id is None:
            report.duplicates += 1
        else:
            report.published += 1
            metrics.collected.labels(raw.source, raw.channel).inc()
    pending.clear()


def _report_rejected(bad: Rejected, metrics: Metrics) -> None:
    metrics.collector_rejected.labels("corpus").inc()
    log.warning("corpus file skipped", path=bad.path, reason=bad.reason)


async def ingest(settings: Settings, paths: Sequence[Path | str], *, progress: bool = True) -> IngestReport:
    """``monitor ingest``: connect as configured and ingest ``paths`` (the configured ones if empty)."""
    chosen = list(paths) or list(settings.collectors.corpus.paths)
    async with open_redis(settings.redis) as redis:
        publisher = Publisher(redis, Keys(settings.redis.key_prefix), settings.redis.dedup_ttl)
        return await ingest_paths(chosen, publisher, settings.collectors.corpus, Metrics(), progress=progress)
