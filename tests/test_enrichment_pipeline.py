"""Enrichment through the whole pipeline: the sample corpus comes out with places (and coordinates),
story clusters, and an archive that `monitor search` and `monitor export` read."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import redis.asyncio as aioredis

from monitor.bus.keys import Keys
from monitor.enrich.geo import haversine_km
from monitor.schema import Item, decode_entry
from tests.conftest import REPO_ROOT
from tests.test_pipeline import CollectingSink, make_settings, run_once

BAKHMUT = (48.5947, 37.9999)


def cli(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("WARWATCH")}
    return subprocess.run(
        [sys.executable, "-m", "monitor", *args, "--config", str(config)],
        capture_output=True, text=True, timeout=120, cwd=REPO_ROOT, env=env, check=False,
    )  # fmt: skip


async def test_corpus_items_carry_places_clusters_and_land_in_the_archive(
    redis_url: str, redis_client: aioredis.Redis, keys: Keys, sample_corpus_dir: Path, tmp_path: Path
) -> None:
    """After --once, items name Bakhmut with its coordinates, have cluster ids, and search/export find them."""
    archive = tmp_path / "archive"
    rules = [{"name": "near", "within_km": {"of": "bakhmut", "km": 25}, "per": "cluster", "severity": "info"}]
    settings = make_settings(redis_url, keys, [sample_corpus_dir], rules=rules, archive={"dir": str(archive)})
    sink = CollectingSink()
    await run_once(settings, sink)
    items = [decode_entry(Item, fields) for _, fields in await redis_client.xrange(keys.items)]
    assert len(items) == 9
    assert all(item.cluster_id for item in items)
    bakhmut = [p for item in items for p in item.entities.places if p.name == "Bakhmut"]
    assert bakhmut and all(haversine_km(p.lat, p.lon, *BAKHMUT) < 5 for p in bakhmut if p.lat and p.lon)
    kharkiv = next(i for i in items if "Kharkiv restores power" in i.text)
    assert "Kharkiv" in {p.name for p in kharkiv.entities.places}
    assert {a.item_id for a in sink.alerts} <= {i.id for i in items if i.entities.places}
    assert kharkiv.id not in {a.item_id for a in sink.alerts}  # Kharkiv is ~190 km from Bakhmut

    config = tmp_path / "config.yaml"
    config.write_text(json.dumps({"archive": {"dir": str(archive)}}), encoding="utf-8")
    found = cli(config, "search", "Бахмут", "--json")
    assert found.returncode == 0, found.stderr
    hits: list[dict[str, Any]] = json.loads(found.stdout)
    assert hits and all(hit["id"] in {i.id for i in items} for hit in hits)
    assert any(hit["lang"] == "uk" for hit in hits)  # the uk article says "Бахмута": a case form
    near = cli(config, "search", "power", "--place", "Kharkiv", "--json")
    assert [hit["id"] for hit in json.loads(near.stdout)] == [kharkiv.id]
    story = items[0].cluster_id
    members = cli(config, "search", "", "--story", story or "", "--json")
    assert members.returncode == 0, members.stderr
    assert [hit["id"] for hit in json.loads(members.stdout)] == [i.id for i in items if i.cluster_id == story]

    geojson = tmp_path / "items.geojson"
    exported = cli(config, "export", "--format", "geojson", "--output", str(geojson))
    assert exported.returncode == 0, exported.stderr
    collection = json.loads(geojson.read_text(encoding="utf-8"))
    assert collection["type"] == "FeatureCollection"
    points = [f["geometry"]["coordinates"] for f in collection["features"]]
    assert points and all(-180 <= lon <= 180 and -90 <= lat <= 90 for lon, lat in points)
    assert any(haversine_km(lat, lon, *BAKHMUT) < 5 for lon, lat in points)
