"""The archive: every Item in daily gzip JSONL files, a SQLite FTS5 index to search them, and export.

* ``writer``: the day files (append a batch as a gzip member, fsync, read back past a torn tail);
* ``index``: the search index beside the files (upsert, search, rebuild from the files);
* ``stage``: the ``archiver`` consumer group on the items stream, writing both per batch;
* ``export``: JSONL, CSV and GeoJSON out of the files, one record per item.
"""

from __future__ import annotations

from monitor.archive.export import FORMATS, export, export_file
from monitor.archive.index import (
    ArchiveError,
    ArchiveIndex,
    SearchHit,
    SearchQueryError,
    hits_json,
    index_path,
    open_index,
    parse_time,
    rebuild_index,
    render_hits,
    search,
)
from monitor.archive.stage import Archive, ArchiverStage
from monitor.archive.writer import ArchiveWriter, iter_items, read_lines

__all__ = [
    "FORMATS",
    "Archive",
    "ArchiveError",
    "ArchiveIndex",
    "ArchiveWriter",
    "ArchiverStage",
    "SearchHit",
    "SearchQueryError",
    "export",
    "export_file",
    "hits_json",
    "index_path",
    "iter_items",
    "open_index",
    "parse_time",
    "read_lines",
    "rebuild_index",
    "render_hits",
    "search",
]
