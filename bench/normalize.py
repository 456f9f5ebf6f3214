"""Normalizer benchmark: items/s without and with enrichment, and the end-to-end cost of enrichment.

Three figures from the same synthetic posts (English, Ukrainian and Russian, 200-1,500 characters, with
place names, units and loss figures in them):

* the normalizer alone, in process, in batches of 200 as the stage runs it: core (cleaning,
  boilerplate, language) against core + entities (places from the gazetteer, units, people, quantities);
* story-cluster assignment against a real redis-server (the embedded launcher), in batches of 200;
* the end-to-end pipeline (``bench/pipeline.py``'s throughput phase: normalizer and alerter processes
  on one Redis) in the same run three times: core, with entities (``normalizer.cluster: false``), and
  with entities and story clusters. The issue's limit: enrichment must not cut end-to-end throughput by
  more than half.

Usage: python bench/normalize.py [--items 3000] [--pipeline-items 10000]
"""

from __future__ import annotations

import argparse
import asyncio
import random
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import redis.asyncio as aioredis
from pipeline import synthetic_posts, throughput_phase

from monitor.bus.keys import Keys
from monitor.bus.redis import EmbeddedRedis
from monitor.config import NormalizerSettings
from monitor.enrich.clusters import StoryClusters
from monitor.enrich.enricher import Enricher
from monitor.normalize.normalizer import Normalizer
from monitor.schema import RawItem

EXTRAS = [
    "The 92nd Separate Mechanized Brigade repelled 24 attacks near Klishchiivka and Andriivka.",
    "Сили оборони знищили 15 танків та 7 БпЛА під Авдіївкою, повідомив Олександр Сирський.",
    "Вагнеровцы заявили о взятии Соледара; уничтожено 12 танков, сообщил Пригожин.",
    "3-тя окрема штурмова бригада звільнила Андріївку південніше Бахмута.",
    "Russian forces launched 30 air strikes and 712 artillery strikes on Kupiansk and Lyman.",
]


def enriched_posts(count: int, seed: int = 11) -> list[RawItem]:
    """The pipeline bench's posts with a sentence naming places, units, people or losses added to most."""
    rng = random.Random(seed)
    posts = synthetic_posts(count, seed=seed)
    for post in posts:
        if rng.random() < 0.7:
            post.text = f"{post.text} {rng.choice(EXTRAS)}"
    return posts


def rate(normalizer: Normalizer, posts: list[RawItem], batch: int = 200) -> float:
    """Items/s of ``normalize_many`` in batches of ``batch`` (the stage's path: extractor by extractor)."""
    started = time.perf_counter()
    for start in range(0, len(posts), batch):
        normalizer.normalize_many(posts[start : start + batch])
    return len(posts) / (time.perf_counter() - started)


async def cluster_rate(posts: list[RawItem], normalizer: Normalizer) -> tuple[float, int]:
    items = [normalizer.normalize(post) for post in posts]
    with tempfile.TemporaryDirectory(prefix="warwatch-bench-") as tmp:
        server = EmbeddedRedis(Path(tmp))
        url = await server.start()
        client = aioredis.from_url(url)
        try:
            clusters = StoryClusters(client, Keys("bench-cl"))
            started = time.perf_counter()
            results = []
            for start in range(0, len(items), 200):
                results += await clusters.assign_many(items[start : start + 200])
            elapsed = time.perf_counter() - started
        finally:
            await client.aclose()
            await server.stop()
    return len(items) / elapsed, len({r.cluster_id for r in results})


async def end_to_end(items: int) -> tuple[float, float, float]:
    """Items/s end to end: core, with entities only (``normalizer.cluster: false``), with entities and clusters."""
    with tempfile.TemporaryDirectory(prefix="warwatch-bench-") as tmp:
        server = EmbeddedRedis(Path(tmp))
        url = await server.start()
        rates = []
        try:
            for enrich, cluster in ((False, False), (True, False), (True, True)):
                result = await throughput_phase(url, items, 1, 200, 0.5, enrich=enrich, cluster=cluster)
                rates.append(float(result["items_per_s"]))  # type: ignore[arg-type]
                client = aioredis.from_url(url)
                await client.flushall()
                await client.aclose()
        finally:
            await server.stop()
    return rates[0], rates[1], rates[2]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--items", type=int, default=3000, help="posts for the in-process figures")
    parser.add_argument("--pipeline-items", type=int, default=10_000, help="posts for the end-to-end figures")
    args = parser.parse_args()
    posts = enriched_posts(args.items)
    started = time.perf_counter()
    enricher = Enricher.load()
    load_seconds = time.perf_counter() - started
    core = Normalizer(NormalizerSettings(enrich=False), warm=True)
    full = Normalizer(NormalizerSettings(enrich=True), warm=True, enricher=enricher)
    rate(full, posts[:200])  # warm caches
    core_rate, full_rate = rate(core, posts), rate(full, posts)
    items = [full.normalize(p) for p in posts]
    found = sum(len(i.entities.places) + len(i.entities.units) + len(i.entities.people) for i in items)
    quantities = sum(len(i.entities.quantities) for i in items)
    print(f"posts: {len(posts)} (en/uk/ru, 200-1500 chars, 70% with an entity sentence); enricher loaded in "
          f"{load_seconds:.2f} s")  # fmt: skip
    print(f"normalizer, core: {core_rate:,.0f} items/s")
    share = full_rate / core_rate
    per_item = f"{found / len(items):.1f} places/units/people and {quantities / len(items):.1f} quantities per item"
    print(f"normalizer, core + entities: {full_rate:,.0f} items/s ({share:.0%} of core); {per_item}")
    cl_rate, clusters = asyncio.run(cluster_rate(posts, core))
    print(f"story clusters (redis, batches of 200): {cl_rate:,.0f} items/s, {clusters} clusters")
    core_e2e, entities_e2e, full_e2e = asyncio.run(end_to_end(args.pipeline_items))
    print(f"end to end ({args.pipeline_items} posts, 1 normalizer + 1 alerter/notifier process): "
          f"core {core_e2e:,.0f} items/s; with entities {entities_e2e:,.0f} items/s ({entities_e2e / core_e2e:.0%}); "
          f"with entities and clusters {full_e2e:,.0f} items/s ({full_e2e / core_e2e:.0%}; limit 50%)")  # fmt: skip


if __name__ == "__main__":
    main()
