"""The archive: the archiver group on a real redis-server, day files, torn tails, FTS5 search, export."""

from __future__ import annotations

import asyncio
import contextlib
import csv
import gzip
import io
import json
import os
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import msgspec
import pytest
import redis.asyncio as aioredis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from rich.console import Console
from structlog.testing import capture_logs

from monitor.archive import writer as writer_module
from monitor.archive.export import export, export_file
from monitor.archive.index import (
    ArchiveError,
    ArchiveIndex,
    SearchQueryError,
    build_match,
    hits_json,
    index_path,
    parse_time,
    rebuild_index,
    render_hits,
    search,
)
from monitor.archive.stage import Archive, ArchiverStage
from monitor.archive.writer import ArchiveWriter, Damage, compress_member, day_path, iter_items, read_lines
from monitor.bus.consume import StreamWorker
from monitor.bus.keys import GROUP_ARCHIVER, Keys
from monitor.bus.publish import Publisher
from monitor.config import ConsumerSettings
from monitor.metrics import Metrics
from monitor.schema import Entities, Item, Person, Place, Quantity, Unit, encode, entry_fields

DAY = datetime(2024, 2, 17, 8, 0, tzinfo=UTC)
BAKHMUT = {"name": "Bakhmut", "id": "geonames:706448", "lat": 48.5947, "lon": 37.9999}
AVDIIVKA = {"name": "Avdiivka", "id": "geonames:713174", "lat": 48.1394, "lon": 37.7497}


def make_item(
    n: int | str,
    text: str = "Shelling reported overnight.",
    *,
    collected: datetime = DAY,
    published: datetime | None = None,
    source: str = "telegram",
    channel: str = "ab3army",
    lang: str = "en",
    event: str = "new",
    title: str | None = None,
    places: Sequence[tuple[dict[str, object], str]] = (),
    version: str = "",
) -> Item:
    """An Item; ``places`` are (place, word in text) pairs whose span is found in the text."""
    found = []
    for place, word in places:
        start = text.index(word)
        found.append(Place(start=start, end=start + len(word), **place))  # type: ignore[arg-type]
    return Item(
        id=f"{source}:{channel}:{n}",
        source=source,  # type: ignore[arg-type]
        channel=channel,
        external_id=str(n),
        text=text,
        collected_at=collected,
        published_at=published,
        lang=lang,
        content_hash=f"h{n}{version}",
        event=event,  # type: ignore[arg-type]
        title=title,
        url=f"https://t.me/{channel}/{n}",
        entities=Entities(places=found),
    )


async def publish(client: aioredis.Redis, keys: Keys, items: Sequence[Item]) -> list[bytes]:
    """XADD items to the items stream as the normalizer would."""
    return [await client.xadd(keys.items, entry_fields(item)) for item in items]  # type: ignore[arg-type]


def make_worker(
    client: aioredis.Redis, keys: Keys, stage: ArchiverStage, consumer: str = "a1", **overrides: int
) -> StreamWorker:
    config = ConsumerSettings(**{"batch_size": 4, "block_ms": 50, "claim_interval": 3600, **overrides})
    return StreamWorker(
        client,
        keys,
        stage,
        consumer=consumer,
        settings=config,
        publisher=Publisher(client, keys, 3600),
        metrics=Metrics(),
        stop=asyncio.Event(),
    )


async def drain(worker: StreamWorker, rounds: int = 100) -> None:
    """Step the worker until a few consecutive rounds find nothing, then settle the write in flight."""
    idle = 0
    for _ in range(rounds):
        idle = idle + 1 if await worker.step() == 0 else 0
        if idle >= 3:
            break
    await worker.settle()


def file_ids(path: Path) -> list[str]:
    return [json.loads(line)["id"] for line in read_lines(path)]


def archive_items(tmp_path: Path, items: Sequence[Item], *, batches: int = 1) -> Path:
    """Write items straight through an Archive (no Redis), in ``batches`` batches."""
    archive_dir = tmp_path / "archive"
    archive = Archive(archive_dir)
    size = max(1, -(-len(items) // batches))
    for start in range(0, len(items), size):
        archive.write([(item, encode(item)) for item in items[start : start + size]])
    archive.close()
    return archive_dir


# --------------------------------------------------------------------------- the stage on Redis


async def test_archiver_group_writes_items_to_their_day_files(
    redis_client: aioredis.Redis, keys: Keys, tmp_path: Path
) -> None:
    """A StreamWorker in group archiver puts each item in the file of its collected_at's UTC day and acks."""
    kyiv = timezone(timedelta(hours=2))
    items = [
        make_item(1, collected=datetime(2024, 2, 16, 23, 59, 59, tzinfo=UTC)),
        make_item(2, collected=datetime(2024, 2, 17, 0, 0, 0, tzinfo=UTC)),
        make_item(3, collected=datetime(2024, 2, 18, 1, 30, tzinfo=kyiv)),  # 23:30 UTC on the 17th
        make_item(4, collected=datetime(2024, 3, 1, 12, 0, tzinfo=UTC), published=datetime(2022, 5, 1, tzinfo=UTC)),
        *[make_item(n, collected=DAY + timedelta(minutes=n)) for n in range(5, 15)],
    ]
    await publish(redis_client, keys, items)
    archive_dir = tmp_path / "archive"
    stage = ArchiverStage(keys, Archive(archive_dir), Metrics())
    assert (stage.name, stage.group, stage.stream) == ("archiver", GROUP_ARCHIVER, keys.items)
    worker = make_worker(redis_client, keys, stage)
    await drain(worker)
    stage.close()

    files = sorted(p.relative_to(archive_dir).as_posix() for p in archive_dir.rglob("*.jsonl.gz"))
    assert files == [
        "2024/02/items-2024-02-16.jsonl.gz",
        "2024/02/items-2024-02-17.jsonl.gz",
        "2024/03/items-2024-03-01.jsonl.gz",
    ]
    assert file_ids(archive_dir / files[0]) == ["telegram:ab3army:1"]
    assert sorted(file_ids(archive_dir / files[1])) == sorted(f"telegram:ab3army:{n}" for n in [2, 3, *range(5, 15)])
    assert file_ids(archive_dir / files[2]) == ["telegram:ab3army:4"]  # by collection, not publication
    # Several batches -> several gzip members; any gzip reader sees one valid file.
    with gzip.open(archive_dir / files[1], "rt", encoding="utf-8") as handle:
        lines = handle.read().splitlines()
    assert len(lines) == 12 and worker.processed == 14
    assert json.loads(lines[0]) == json.loads(encode(items[1]))  # the stream's JSON, unchanged
    assert (await redis_client.xpending(keys.items, GROUP_ARCHIVER))["pending"] == 0
    with ArchiveIndex(index_path(archive_dir)) as index:
        assert index.count() == 14


async def test_redelivered_entries_give_one_search_hit_each(
    redis_client: aioredis.Redis, keys: Keys, tmp_path: Path
) -> None:
    """Entries written by a consumer that died before acking are reclaimed and written again: one hit each."""
    items = [make_item(n, f"Обстріл Бахмута, повідомлення {n}", lang="uk") for n in range(6)]
    await publish(redis_client, keys, items)
    archive_dir = tmp_path / "archive"
    await redis_client.xgroup_create(keys.items, GROUP_ARCHIVER, id="0")
    delivered = await redis_client.xreadgroup(GROUP_ARCHIVER, "victim", {keys.items: ">"}, count=10)
    victim = ArchiverStage(keys, Archive(archive_dir))
    results = await victim.handle(delivered[0][1])  # written and fsynced, then the process "died": no ack
    assert len(results) == 6 and not any(isinstance(r, BaseException) for r in results)
    victim.close()

    rescuer = ArchiverStage(keys, Archive(archive_dir))
    worker = make_worker(redis_client, keys, rescuer, "rescuer", claim_idle_ms=100, claim_interval=0)
    await asyncio.sleep(0.15)
    await drain(worker)
    rescuer.close()

    path = day_path(archive_dir, DAY.date())
    assert sorted(file_ids(path)) == sorted([item.id for item in items] * 2)  # the file holds each twice
    assert (await redis_client.xpending(keys.items, GROUP_ARCHIVER))["pending"] == 0
    hits = search(archive_dir, "Бахмут", limit=50)
    assert sorted(hit.id for hit in hits) == sorted(item.id for item in items)
    assert [item.id for item in iter_items(archive_dir)] == [item.id for item in items]
    out = io.StringIO()
    assert export(archive_dir, out, fmt="jsonl") == 6
    assert sorted(json.loads(line)["id"] for line in out.getvalue().splitlines()) == sorted(i.id for i in items)


async def test_undecodable_entry_is_dead_lettered_and_the_rest_archived(
    redis_client: aioredis.Redis, keys: Keys, tmp_path: Path
) -> None:
    """A malformed entry goes to the dead stream at once; the good entries of its batch are archived."""
    await publish(redis_client, keys, [make_item(1)])
    await redis_client.xadd(keys.items, {"v": 1, "data": b"{not json"})
    await publish(redis_client, keys, [make_item(2)])
    archive_dir = tmp_path / "archive"
    stage = ArchiverStage(keys, Archive(archive_dir))
    await drain(make_worker(redis_client, keys, stage))
    stage.close()
    assert sorted(file_ids(day_path(archive_dir, DAY.date()))) == ["telegram:ab3army:1", "telegram:ab3army:2"]
    dead = await redis_client.xrange(keys.dead)
    assert len(dead) == 1 and dead[0][1][b"data"] == b"{not json"
    assert (await redis_client.xpending(keys.items, GROUP_ARCHIVER))["pending"] == 0


async def test_failed_write_is_not_acked_and_is_retried(
    redis_client: aioredis.Redis, keys: Keys, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """When the index commit fails the batch stays pending; XAUTOCLAIM retries it and it gets archived."""
    items = [make_item(n) for n in range(3)]
    await publish(redis_client, keys, items)
    archive_dir = tmp_path / "archive"
    archive = Archive(archive_dir)
    real_upsert = ArchiveIndex.upsert
    calls = {"n": 0}

    def flaky(self: ArchiveIndex, batch: object) -> object:
        calls["n"] += 1
        if calls["n"] == 1:
            raise OSError("disk full (simulated)")
        return real_upsert(self, batch)  # type: ignore[arg-type]

    monkeypatch.setattr(ArchiveIndex, "upsert", flaky)
    stage = ArchiverStage(keys, archive)
    worker = make_worker(redis_client, keys, stage, claim_idle_ms=100, claim_interval=0)
    await worker.step()
    await worker.settle()
    assert (await redis_client.xpending(keys.items, GROUP_ARCHIVER))["pending"] == 3  # nothing acked
    await asyncio.sleep(0.15)
    await drain(worker)
    stage.close()
    assert (await redis_client.xpending(keys.items, GROUP_ARCHIVER))["pending"] == 0
    assert len(search(archive_dir, "shelling")) == 3


def test_append_fsyncs_file_and_new_folders(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every append fsyncs the file; the first append to a new day file also fsyncs its folders."""
    synced: list[str] = []
    real_fsync = os.fsync

    def spy(fd: int) -> None:
        synced.append(os.readlink(f"/proc/self/fd/{fd}"))
        real_fsync(fd)

    monkeypatch.setattr(writer_module.os, "fsync", spy)
    archive_dir = tmp_path / "archive"
    writer = ArchiveWriter(archive_dir)
    writer.append({DAY.date(): [encode(make_item(1))]})
    path = day_path(archive_dir, DAY.date())
    assert synced[0] == str(path)
    assert {str(path.parent), str(path.parent.parent), str(archive_dir)} <= set(synced[1:])
    synced.clear()
    writer.append({DAY.date(): [encode(make_item(2))]})
    assert synced == [str(path)]  # the same day again: only the file


# --------------------------------------------------------------------------- broken files


def test_truncated_gzip_tail_is_skipped_and_the_rest_kept(tmp_path: Path) -> None:
    """A member cut short by a crash: reading keeps the earlier members and reports the broken tail."""
    items = [make_item(n, collected=DAY + timedelta(seconds=n)) for n in range(6)]
    archive_dir = archive_items(tmp_path, items[:4], batches=2)
    path = day_path(archive_dir, DAY.date())
    torn = compress_member([encode(item) for item in items[4:]])
    with open(path, "ab") as handle:
        handle.write(torn[: len(torn) // 2])
    damages: list[Damage] = []
    ids = [json.loads(line)["id"] for line in read_lines(path, on_damage=damages.append)]
    assert ids == [item.id for item in items[:4]]
    assert len(damages) == 1 and damages[0].kind == "truncated"
    with capture_logs() as logs:
        assert [item.id for item in iter_items(archive_dir)] == ids
    assert any("damaged" in entry["event"] for entry in logs)


def test_writer_cuts_a_torn_tail_before_appending(tmp_path: Path) -> None:
    """A new writer (a restarted archiver) cuts off the unacknowledged torn member, then appends cleanly."""
    items = [make_item(n, collected=DAY + timedelta(seconds=n)) for n in range(5)]
    archive_dir = archive_items(tmp_path, items[:2])
    path = day_path(archive_dir, DAY.date())
    good_size = path.stat().st_size
    torn = compress_member([encode(items[2])])
    with open(path, "ab") as handle:
        handle.write(torn[:-6] + b"\x00" * 4096)  # a torn member, then zeros (a crash on a delayed-allocation fs)
    with capture_logs() as logs:
        ArchiveWriter(archive_dir).append({DAY.date(): [encode(items[3]), encode(items[4])]})
    assert any("torn tail" in entry["event"] for entry in logs)
    damages: list[Damage] = []
    ids = [json.loads(line)["id"] for line in read_lines(path, on_damage=damages.append)]
    assert ids == [items[0].id, items[1].id, items[3].id, items[4].id] and damages == []
    assert path.stat().st_size > good_size
    with gzip.open(path, "rt", encoding="utf-8") as handle:  # a standard reader takes the whole file again
        assert len(handle.read().splitlines()) == 4


def test_corrupt_member_in_the_middle_is_skipped_and_later_members_kept(tmp_path: Path) -> None:
    """Bit rot inside one member: the reader resyncs at the next gzip header; the writer leaves the file alone."""
    items = [make_item(n, collected=DAY + timedelta(seconds=n)) for n in range(3)]
    archive_dir = archive_items(tmp_path, items, batches=3)
    path = day_path(archive_dir, DAY.date())
    data = bytearray(path.read_bytes())
    second = data.index(b"\x1f\x8b\x08", 1)
    for offset in range(second + 12, second + 40):
        data[offset] ^= 0xFF
    path.write_bytes(bytes(data))
    size = path.stat().st_size
    damages: list[Damage] = []
    ids = [json.loads(line)["id"] for line in read_lines(path, on_damage=damages.append)]
    assert ids[0] == items[0].id and ids[-1] == items[2].id and items[1].id not in ids
    assert len(damages) == 1 and damages[0].offset == second
    ArchiveWriter(archive_dir).append({DAY.date(): [encode(make_item(9))]})
    assert path.stat().st_size > size  # appended after, nothing cut
    assert [json.loads(line)["id"] for line in read_lines(path, on_damage=None)][-1] == "telegram:ab3army:9"


# --------------------------------------------------------------------------- index and search


def history() -> list[Item]:
    """Items with redelivered lines (one after the edit), an edit and a delete, over two days."""
    first = make_item(1, "Обстріл Бахмута вночі", lang="uk", places=[(BAKHMUT, "Бахмута")])
    edited = make_item(
        1,
        "Обстріл Бахмута та Авдіївки вночі",
        lang="uk",
        collected=DAY + timedelta(hours=2),
        event="edit",
        places=[(BAKHMUT, "Бахмута"), (AVDIIVKA, "Авдіївки")],
        version="e",
    )
    gone = make_item(2, "Shelling near Avdiivka", places=[(AVDIIVKA, "Avdiivka")])
    deleted = make_item(2, "", collected=DAY + timedelta(days=1), event="delete", version="d")
    other = make_item(3, "Обстрел Бахмута продолжается", lang="ru", channel="rybar", collected=DAY + timedelta(days=1))
    return [first, gone, first, edited, other, deleted, other, first]


def test_rebuild_index_from_files_equals_live_index(tmp_path: Path) -> None:
    """Deleting the index and rebuilding it from the day files gives exactly the rows the archiver wrote."""
    archive_dir = archive_items(tmp_path, history(), batches=4)
    with ArchiveIndex(index_path(archive_dir)) as live:
        live_rows = live.dump_rows()
        assert live.integrity_ok()
    assert len(live_rows) == 3
    by_id = {row[0]: row for row in live_rows}
    assert "Авдіївки" in by_id["telegram:ab3army:1"][12] and by_id["telegram:ab3army:1"][9] == "edit"
    assert by_id["telegram:ab3army:2"][10] is not None  # deleted_ts set, text kept
    assert by_id["telegram:ab3army:2"][12] == "Shelling near Avdiivka"
    for suffix in ("", "-wal", "-shm"):
        Path(str(index_path(archive_dir)) + suffix).unlink(missing_ok=True)
    stats = rebuild_index(archive_dir)
    assert (stats.files, stats.lines, stats.duplicates, stats.rows) == (2, 8, 3, 3)
    with ArchiveIndex(index_path(archive_dir)) as rebuilt:
        assert rebuilt.dump_rows() == live_rows
        assert rebuilt.integrity_ok()


def test_lost_index_is_rebuilt_by_the_archiver(tmp_path: Path) -> None:
    """When the index file disappears under a running archiver, its next batch rebuilds it from the files first."""
    archive_dir = tmp_path / "archive"
    archive = Archive(archive_dir)
    archive.write([(item, encode(item)) for item in history()])
    for suffix in ("", "-wal", "-shm"):
        Path(str(index_path(archive_dir)) + suffix).unlink()
    late = make_item(7, "Удар по Покровську", lang="uk", collected=DAY + timedelta(days=1))
    archive.write([(late, encode(late))])
    archive.close()
    assert {hit.id for hit in search(archive_dir, "", limit=10)} == {
        "telegram:ab3army:1",
        "telegram:ab3army:2",
        "telegram:rybar:3",
        "telegram:ab3army:7",
    }


def test_corrupt_index_is_moved_aside_and_rebuilt(tmp_path: Path) -> None:
    """An index file SQLite cannot read is kept aside for inspection and a new one built from the files."""
    archive_dir = archive_items(tmp_path, history())
    for suffix in ("-wal", "-shm"):
        Path(str(index_path(archive_dir)) + suffix).unlink(missing_ok=True)
    index_path(archive_dir).write_bytes(b"this is not a database" * 100)
    stats = rebuild_index(archive_dir)
    assert stats.moved_aside is not None and stats.moved_aside.exists()
    assert stats.rows == 3 and len(search(archive_dir, "Бахмут")) == 2


@pytest.fixture
def multilingual(tmp_path: Path) -> Path:
    items = [
        make_item("uk1", "Окупанти знову обстрілюють Бахмут з артилерії.", lang="uk", places=[(BAKHMUT, "Бахмут")]),
        make_item("uk2", "Бої тривають у Бахмуті, ситуація складна.", lang="uk", places=[(BAKHMUT, "Бахмуті")]),
        make_item("uk3", "Під Авдіївкою відбито штурм.", lang="uk", places=[(AVDIIVKA, "Авдіївкою")]),
        make_item("ru1", "ВСУ отступили из Бахмута, сообщает ёлка-канал.", lang="ru", channel="rybar"),
        make_item("ru2", "Обстрел Донецка продолжается", lang="ru", channel="rybar"),
        make_item(
            "en1",
            "Heavy shelling near Bakhmut; chemical weapons alleged.",
            title="Bakhmut update",
            source="x",
            channel="nexta_tv",
        ),
        make_item("en2", "Avdiivka: Ukrainian forces hold the line.", source="feed", channel="kyivindependent"),
    ]
    return archive_items(tmp_path, items)


def ids(hits: Sequence[object]) -> set[str]:
    return {hit.id.rsplit(":", 1)[1] for hit in hits}  # type: ignore[attr-defined]


def test_search_by_story_lists_a_clusters_items_oldest_first(tmp_path: Path) -> None:
    """``story=`` keeps one cluster's items: with no query words oldest first, with words by relevance."""
    first = make_item(1, "Brigade post on Bakhmut", published=DAY)
    repost = make_item(2, "Repost: brigade post on Bakhmut", published=DAY + timedelta(hours=2), channel="media")
    other = make_item(3, "Another story on Bakhmut", published=DAY + timedelta(hours=1))
    first.cluster_id = repost.cluster_id = "ec6fc66d18be8344"
    other.cluster_id = "0d2d993e16ba72e0"
    archive_dir = archive_items(tmp_path, [repost, other, first])
    assert [h.id for h in search(archive_dir, "", story="ec6fc66d18be8344")] == [first.id, repost.id]
    assert [h.id for h in search(archive_dir, "repost", story="ec6fc66d18be8344")] == [repost.id]
    assert search(archive_dir, "", story="unknown") == []
    assert {h.id for h in search(archive_dir, "Bakhmut")} == {first.id, repost.id, other.id}


def test_search_finds_uk_ru_en_words_and_case_forms(multilingual: Path) -> None:
    """Cyrillic is case-insensitive, a bare word finds its uk/ru case forms, quotes are exact, * is a prefix."""
    # Бахмут, Бахмуті, Бахмута, and the transliteration Bakhmut
    assert ids(search(multilingual, "Бахмут")) == {"uk1", "uk2", "ru1", "en1"}
    assert ids(search(multilingual, "БАХМУТ")) == {"uk1", "uk2", "ru1", "en1"}
    assert ids(search(multilingual, '"бахмуті"')) == {"uk2"}
    assert ids(search(multilingual, '"Бахмут"')) == {"uk1"}
    assert ids(search(multilingual, "Бахм*")) == {"uk1", "uk2", "ru1"}
    assert ids(search(multilingual, "Bakhmut")) == {"uk1", "uk2", "ru1", "en1"}  # a name: Cyrillic spellings too
    assert ids(search(multilingual, "bakhmut")) == {"en1"}  # lowercase Latin: as written, like rules
    assert ids(search(multilingual, "обстрел")) == {"ru2"}
    assert ids(search(multilingual, "Авдіївка")) == {"uk3", "en2"}  # instrumental Авдіївкою; Avdiivka
    assert ids(search(multilingual, "SHELLING chemical")) == {"en1"}
    assert ids(search(multilingual, "shelling OR обстрел")) == {"en1", "ru2"}
    assert ids(search(multilingual, "Бахмут -отступили -chemical")) == {"uk1", "uk2"}
    assert ids(search(multilingual, "елка")) == ids(search(multilingual, "ёлка")) == {"ru1"}
    top = search(multilingual, "Bakhmut", source="x")[0]
    assert top.title == "Bakhmut update"
    assert [top.snippet[s:e] for s, e in top.highlights] == ["Bakhmut"]
    uk2 = search(multilingual, "Бахмут", source="telegram", channel="AB3ARMY")
    assert [uk2[0].snippet[s:e] for s, e in uk2[0].highlights if "Бахмут" in uk2[0].snippet[s:e]]


def test_place_filter_by_name_case_form_and_id(multilingual: Path) -> None:
    """--place matches the places named in an item, by English name, a Cyrillic form or gazetteer id."""
    assert ids(search(multilingual, "", place="Bakhmut")) == {"uk1", "uk2"}
    assert ids(search(multilingual, "", place="Бахмут")) == {"uk1", "uk2"}
    assert ids(search(multilingual, "", place="geonames:713174")) == {"uk3"}
    assert ids(search(multilingual, "", place=["Bakhmut", "Avdiivka"])) == {"uk1", "uk2", "uk3"}
    assert ids(search(multilingual, "бої", place="Bakhmut")) == {"uk2"}
    assert ids(search(multilingual, "штурм", place="Bakhmut")) == set()
    hit = search(multilingual, "", place="geonames:706448")[0]
    assert hit.places == ["Bakhmut"] and hit.place_ids == ["geonames:706448"]


def test_since_until_filter_on_publication_then_collection(tmp_path: Path) -> None:
    """since is inclusive and until exclusive, on published_at (else collected_at), or on collected_at."""
    base = datetime(2024, 2, 10, tzinfo=UTC)
    items = [
        make_item(1, "Kupiansk front update", published=base, collected=base + timedelta(days=5)),
        make_item(2, "Kupiansk front update", published=base + timedelta(days=1), collected=base + timedelta(days=5)),
        make_item(3, "Kupiansk front update", collected=base + timedelta(days=2)),  # no published_at
        make_item(4, "Kupiansk front update", published=base + timedelta(days=3), collected=base + timedelta(days=3)),
    ]
    archive_dir = archive_items(tmp_path, items)
    assert ids(search(archive_dir, "Kupiansk", since=base + timedelta(days=1))) == {"2", "3", "4"}
    assert ids(search(archive_dir, "Kupiansk", until=base + timedelta(days=1))) == {"1"}
    window = {"since": base + timedelta(days=1), "until": base + timedelta(days=3)}
    assert ids(search(archive_dir, "Kupiansk", **window)) == {"2", "3"}  # type: ignore[arg-type]
    assert ids(search(archive_dir, "", since=(base + timedelta(days=2)).date())) == {"3", "4"}
    collected = search(archive_dir, "Kupiansk", since=base + timedelta(days=4), time_field="collected")
    assert ids(collected) == {"1", "2"}
    out = io.StringIO()
    assert export(archive_dir, out, fmt="jsonl", **window) == 2  # type: ignore[arg-type]
    now = datetime(2024, 2, 20, tzinfo=UTC)
    assert parse_time("36h", now=now) == now - timedelta(hours=36)
    assert parse_time("2024-02-17") == datetime(2024, 2, 17, tzinfo=UTC)
    assert parse_time("2024-02-17T06:00Z") == datetime(2024, 2, 17, 6, tzinfo=UTC)
    with pytest.raises(SearchQueryError):
        parse_time("last tuesday")


HOSTILE = [
    'Bakhmut "chemical',
    '"',
    '""',
    '"""',
    "*",
    "**",
    "-",
    "--Bakhmut",
    "NOT",
    "OR",
    "AND OR NOT",
    "Bakhmut OR",
    "OR Bakhmut",
    "NEAR(Bakhmut chemical, 2)",
    "title:Bakhmut",
    "{title text}: x",
    "^Bakhmut",
    "Bakhmut)",
    "((Bakhmut",
    "'; DROP TABLE items; --",
    "\x00\x02\x03",
    'Bakh"mut*"',
    "«Бахмут",
    "„Бахмут“",
    "_",
    "a" * 3000,
    " ".join(["Bakhmut"] * 40),
    "☢️ ☣️",
    'Бахмут* OR "chemical weapons" -Авдіївка',
]


def test_hostile_query_strings_never_crash(multilingual: Path) -> None:
    """Unbalanced quotes, FTS5 operators, SQL, control characters: a result or a clear SearchQueryError."""
    for query in HOSTILE:
        try:
            hits = search(multilingual, query)
        except SearchQueryError as exc:
            assert str(exc)
            continue
        assert isinstance(hits, list), query
    assert ids(search(multilingual, 'Bakhmut "chemical')) == {"en1"}
    with pytest.raises(SearchQueryError):
        search(multilingual, "-Bakhmut")
    with pytest.raises(SearchQueryError):
        search(multilingual, "a" * 3000)


FTS5_CHARS = "aбZ \"*-()^:{}+'«»“”„\\_.,;|&!\x00"


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(query=st.lists(st.sampled_from([*FTS5_CHARS, "OR", "NOT", "AND", "NEAR"]), max_size=30).map("".join))
def test_any_query_runs_or_fails_cleanly(multilingual: Path, query: str) -> None:
    """Property: for any string built from FTS5's special characters and operators, search never raises else."""
    with contextlib.suppress(SearchQueryError):
        search(multilingual, query)
    expression = None
    try:
        expression = build_match(query)
    except SearchQueryError:
        return
    assert expression is None or expression.startswith("{title text} : (")


def test_render_hits_prints_text_literally_with_highlights(tmp_path: Path) -> None:
    """The terminal renderer shows markup-like text as is and styles the matched words."""
    item = make_item(1, "Claims of [red]chemical[/red] use near Bakhmut", title="[bold]Update", source="x")
    odd_url = msgspec.structs.replace(make_item(2, "chemical again", source="x"), url="javascript:x [link=y] z")
    archive_dir = archive_items(tmp_path, [item, odd_url])
    hits = search(archive_dir, "chemical")
    assert len(hits) == 2
    console = Console(record=True, width=200, force_terminal=True, color_system="standard")
    render_hits(hits, console)
    styled = console.export_text(styles=True, clear=False)
    text = console.export_text()
    assert "\x1b[1;33mchemical" in styled
    assert "[red]chemical[/red]" in text and "[bold]Update" in text and "x/ab3army" in text
    assert "javascript:x [link=y] z" in text
    assert styled.count("\x1b]8;id=") == 1  # only the https URL becomes a terminal hyperlink
    data = {hit["id"]: hit for hit in json.loads(hits_json(hits))}
    assert data[item.id]["snippet"][slice(*data[item.id]["highlights"][0])] == "chemical"
    empty = Console(record=True)
    render_hits([], empty)
    assert "no matches" in empty.export_text()


# --------------------------------------------------------------------------- export


def test_export_jsonl_and_csv_one_record_per_item(tmp_path: Path) -> None:
    """Duplicated lines and edits come out once, in the latest version; a deleted item gets deleted_at."""
    archive_dir = archive_items(tmp_path, history(), batches=3)
    out = io.StringIO()
    assert export(archive_dir, out, fmt="jsonl") == 3
    records = {r["id"]: r for r in map(json.loads, out.getvalue().splitlines())}
    assert set(records) == {"telegram:ab3army:1", "telegram:ab3army:2", "telegram:rybar:3"}
    assert records["telegram:ab3army:1"]["text"] == "Обстріл Бахмута та Авдіївки вночі"
    assert records["telegram:ab3army:2"]["deleted_at"] == "2024-02-18T08:00:00Z"
    assert "deleted_at" not in records["telegram:rybar:3"]

    target = tmp_path / "out.csv"
    assert export_file(archive_dir, target, fmt="csv", channel="@RYBAR") == 1
    with open(target, encoding="utf-8", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [row["id"] for row in rows] == ["telegram:rybar:3"] and rows[0]["text"] == "Обстрел Бахмута продолжается"
    out = io.StringIO(newline="")
    export(archive_dir, out, fmt="csv", source="telegram")
    rows = list(csv.DictReader(io.StringIO(out.getvalue(), newline="")))
    edited = next(row for row in rows if row["id"] == "telegram:ab3army:1")
    assert edited["places"] == "Bakhmut; Avdiivka" and edited["place_ids"] == "geonames:706448 geonames:713174"
    assert edited["event"] == "edit" and len(rows) == 3

    tricky = make_item(9, '=HYPERLINK("http://x")\n"quoted", comma', collected=DAY + timedelta(days=3))
    archive_dir = archive_items(tmp_path / "2", [tricky])
    for safe, expected in ((False, tricky.text), (True, "'" + tricky.text)):
        out = io.StringIO(newline="")
        export(archive_dir, out, fmt="csv", excel_safe=safe)
        assert next(csv.DictReader(io.StringIO(out.getvalue(), newline="")))["text"] == expected


def test_exports_carry_units_people_and_claims(tmp_path: Path) -> None:
    """CSV rows and GeoJSON features name the item's units, people and claims (distinct, ``; ``-joined)."""
    item = make_item(
        7,
        "Бійці 3 ОШБр під Бахмутом знищили 5 танків і 5 танків; 24 атаки відбито, заявив Сирський.",
        lang="uk",
        places=[(BAKHMUT, "Бахмутом")],
    )
    item.entities.units = [Unit(id="ua-3-assault-brigade", name="3rd Separate Assault Brigade", start=6, end=12)]
    item.entities.people = [Person(id="oleksandr-syrskyi", name="Oleksandr Syrskyi", start=80, end=88)]
    item.entities.quantities = [
        Quantity(kind="losses", value=5, unit="tanks", start=31, end=38),
        Quantity(kind="losses", value=5, unit="tanks", start=41, end=48),
        Quantity(kind="attacks", value=24, unit="attacks", start=50, end=58),
    ]
    archive_dir = archive_items(tmp_path, [item])
    out = io.StringIO(newline="")
    export(archive_dir, out, fmt="csv")
    (row,) = csv.DictReader(io.StringIO(out.getvalue(), newline=""))
    assert row["units"] == "3rd Separate Assault Brigade" and row["people"] == "Oleksandr Syrskyi"
    assert row["claims"] == "5 tanks (losses); 24 attacks"
    out = io.StringIO()
    export(archive_dir, out, fmt="geojson")
    (feature,) = json.loads(out.getvalue())["features"]
    assert feature["properties"]["claims"] == "5 tanks (losses); 24 attacks"
    assert feature["properties"]["units"] == "3rd Separate Assault Brigade"


def test_export_geojson_is_a_valid_feature_collection(tmp_path: Path) -> None:
    """One Point per (item, place with coordinates), [lon, lat] in range, same property keys everywhere."""
    bad = {"name": "Nowhere", "id": "alias:nowhere", "lat": 123.0, "lon": 37.0}
    no_coords = {"name": "Somewhere", "id": "alias:somewhere"}
    items = [
        *history(),
        make_item(
            5,
            "Бахмут і знову Бахмут, а також Nowhere та Somewhere",
            lang="uk",
            places=[(BAKHMUT, "Бахмут"), (BAKHMUT, "Бахмут"), (bad, "Nowhere"), (no_coords, "Somewhere")],
        ),
    ]
    archive_dir = archive_items(tmp_path, items, batches=2)
    out = io.StringIO()
    count = export(archive_dir, out, fmt="geojson")
    data = json.loads(out.getvalue())
    assert data["type"] == "FeatureCollection" and "crs" not in data
    features = data["features"]
    assert count == len(features) == 4  # item 1 (edited): 2 places; item 2: 1; item 5: Bakhmut once
    keys = {tuple(sorted(f["properties"])) for f in features}
    assert len(keys) == 1
    for feature in features:
        assert feature["type"] == "Feature" and feature["geometry"]["type"] == "Point"
        lon, lat = feature["geometry"]["coordinates"]
        assert -180 <= lon <= 180 and -90 <= lat <= 90
        props = feature["properties"]
        expected = BAKHMUT if props["place_id"] == BAKHMUT["id"] else AVDIIVKA
        assert (lon, lat) == (expected["lon"], expected["lat"])  # [lon, lat], not [lat, lon]
        assert props["item_id"] and props["url"].startswith("https://") and props["place_name"] == expected["name"]
        assert props["source"] == "telegram" and props["channel"] == "ab3army"
        assert props["published_at"] is None or props["published_at"].endswith("Z")
        assert props["place_text"] in props["excerpt"]
    deleted = [f for f in features if f["properties"]["item_id"] == "telegram:ab3army:2"]
    assert len(deleted) == 1 and deleted[0]["properties"]["deleted_at"] == "2024-02-18T08:00:00Z"
    empty = io.StringIO()
    (tmp_path / "empty").mkdir()
    assert export(tmp_path / "empty", empty, fmt="geojson") == 0
    assert json.loads(empty.getvalue()) == {"type": "FeatureCollection", "features": []}
    with pytest.raises(ArchiveError):
        export(tmp_path / "never-created", io.StringIO(), fmt="jsonl")
