"""End-to-end pipeline benchmark on a real redis-server (the embedded launcher, AOF on).

Pushes N synthetic posts (English, Ukrainian and Russian, 200-1500 characters) through the full
Redis pipeline (raw -> normalizer -> items -> alerter -> alerts -> notifier) with 100 keyword rules,
with each stage in its own process as in a scaled-out deployment, and prints:

* throughput: N posts pre-loaded on ``raw``, time until every one is through the alerter and every
  alert through the notifier -> end-to-end items/s;
* latency: posts offered at a fixed rate (default 1,000/s) -> p50/p99 from the raw XADD to the alert
  XADD (both read from the stream entry ids, which are Redis's own millisecond clock);
* peak RSS of each worker process and of redis-server;
* Redis's own ceiling in the same run: pipelined XADD of the same payloads from one client, and the
  pipeline's throughput as a ratio of it.

Usage: python bench/pipeline.py [--items 20000] [--rate 1000] [--seconds 10] [--normalizers 1]
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing as mp
import os
import random
import resource
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

import redis.asyncio as aioredis

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from monitor.alerting.engine import AlertEngine
from monitor.alerting.stage import AlerterStage
from monitor.bus.consume import StreamWorker
from monitor.bus.keys import Keys
from monitor.bus.publish import Publisher
from monitor.bus.redis import EmbeddedRedis
from monitor.config import ConsumerSettings, NormalizerSettings, Rule
from monitor.metrics import Metrics
from monitor.normalize.normalizer import Normalizer
from monitor.normalize.stage import NormalizerStage
from monitor.notify.stage import NotifierStage
from monitor.schema import Alert, RawItem, entry_fields

PLACES = {
    "en": ["Bakhmut", "Avdiivka", "Kupiansk", "Klishchiivka", "Andriivka", "Soledar", "Vuhledar", "Marinka",
           "Robotyne", "Kreminna", "Lyman", "Siversk", "Chasiv Yar", "Toretsk", "Pokrovsk", "Kharkiv"],
    "uk": ["Бахмут", "Авдіївка", "Куп'янськ", "Кліщіївка", "Андріївка", "Соледар", "Вугледар", "Мар'їнка",
           "Роботине", "Кремінна", "Лиман", "Сіверськ", "Часів Яр", "Торецьк", "Покровськ", "Харків"],
    "ru": ["Бахмут", "Авдеевка", "Купянск", "Клещеевка", "Андреевка", "Соледар", "Угледар", "Марьинка",
           "Работино", "Кременная", "Лиман", "Северск", "Часов Яр", "Торецк", "Покровск", "Харьков"],
}  # fmt: skip
# Places no rule watches: most posts in a real feed raise no alert at all.
UNWATCHED = {
    "en": ["Kramatorsk", "Sloviansk", "Kostiantynivka", "Druzhkivka", "Zaporizhzhia", "Kherson", "Odesa",
           "Mykolaiv", "Sumy", "Chernihiv", "Dnipro", "Nikopol", "Orikhiv", "Huliaipole", "Vovchansk", "Izium"],
    "uk": ["Краматорськ", "Слов'янськ", "Костянтинівка", "Дружківка", "Запоріжжя", "Херсон", "Одеса",
           "Миколаїв", "Суми", "Чернігів", "Дніпро", "Нікополь", "Оріхів", "Гуляйполе", "Вовчанськ", "Ізюм"],
    "ru": ["Краматорск", "Славянск", "Константиновка", "Дружковка", "Запорожье", "Херсон", "Одесса",
           "Николаев", "Сумы", "Чернигов", "Днепр", "Никополь", "Орехов", "Гуляйполе", "Волчанск", "Изюм"],
}  # fmt: skip
SENTENCES = {
    "en": [
        "Ukrainian forces repelled {n} Russian attacks near {p} over the past day, the General Staff said.",
        "The {u} brigade published drone footage showing strikes on armoured vehicles outside {p}.",
        "Heavy artillery shelling continued on the outskirts of {p}, according to local officials.",
        "Russian troops tried to advance along the railway north of {p} but were pushed back.",
        "Civilians were evacuated from {p} as fighting intensified in the area.",
        "Military analysts say control of the heights around {p} gives an advantageous firing position.",
        "The commander said his unit destroyed {n} tanks and several artillery systems near {p}.",
    ],
    "uk": [
        "Сили оборони відбили {n} атак ворога поблизу {p} за минулу добу, повідомив Генштаб.",
        "Бійці {u} бригади оприлюднили відео ударів дронами по техніці біля {p}.",
        "Інтенсивні обстріли тривають на околицях {p}, повідомляє місцева влада.",
        "Противник намагався просунутися вздовж залізниці на північ від {p}, але був відкинутий.",
        "З {p} евакуювали цивільних через посилення боїв у районі.",
        "Командир підрозділу заявив, що знищено {n} танків і кілька артилерійських систем біля {p}.",
    ],
    "ru": [
        "Силы обороны отразили {n} атак противника вблизи {p} за прошедшие сутки, сообщил Генштаб.",
        "Бойцы {u} бригады опубликовали видео ударов дронами по технике возле {p}.",
        "Интенсивные обстрелы продолжаются на окраинах {p}, сообщают местные власти.",
        "Противник пытался продвинуться вдоль железной дороги к северу от {p}, но был отброшен.",
        "Из {p} эвакуировали мирных жителей из-за усиления боёв в районе.",
        "Командир подразделения заявил, что уничтожено {n} танков и несколько артиллерийских систем у {p}.",
    ],
}
UNITS = ["3rd Assault", "92nd", "93rd Kholodnyi Yar", "47th", "110th", "59th"]
KEYWORDS = {
    "en": ["drone", "artillery", "tanks", "evacuated", "shelling", "assault", "chemical weapons", "railway"],
    "uk": ["дронами", "обстріли", "танків", "евакуювали", "залізниці", "атак"],
    "ru": ["дронами", "обстрелы", "танков", "эвакуировали", "железной дороги", "атак"],
}


def synthetic_posts(count: int, seed: int = 7, *, watched_share: float = 0.5) -> list[RawItem]:
    """Posts of 200-1500 characters, 40% English, 30% Ukrainian, 30% Russian.

    Each post is about one place (sometimes two); a share ``watched_share`` of the places drawn are ones
    the rules watch, the rest are not.
    """
    rng = random.Random(seed)
    now = datetime.now(UTC)
    posts = []
    for n in range(count):
        lang = rng.choices(["en", "uk", "ru"], weights=[4, 3, 3])[0]
        target = rng.randint(200, 1500)

        # A post is about one place, sometimes mentioning a second one.
        places = [
            rng.choice(PLACES[lang] if rng.random() < watched_share else UNWATCHED[lang])
            for _ in range(2 if rng.random() < 0.3 else 1)
        ]
        parts: list[str] = []
        while sum(len(p) + 1 for p in parts) < target:
            parts.append(
                rng.choice(SENTENCES[lang]).format(n=rng.randint(2, 40), p=rng.choice(places), u=rng.choice(UNITS))
            )
        posts.append(
            RawItem(
                source="telegram_web",
                channel=f"channel{n % 20}",
                external_id=f"{seed}-{n}",
                text=" ".join(parts),
                collected_at=now,
                published_at=now,
                url=f"https://t.me/channel{n % 20}/{n}",
            )
        )
    return posts


def hundred_rules() -> list[Rule]:
    """100 rules: a place (its en/uk/ru names plus case forms) alone, or with a keyword, or a codeword set.

    16 rules watch a place, 48 a place together with a topic keyword (``all``), and 36 watch lists of
    code words that rarely occur, so a post raises a handful of alerts, not dozens.
    """
    rng = random.Random(11)
    rules: list[Rule] = []
    for i in range(100):
        idx = i % 16
        names = [PLACES["en"][idx], PLACES["uk"][idx], PLACES["ru"][idx]]
        kwargs: dict[str, object] = {"name": f"rule{i:03d}", "severity": rng.choice(["low", "medium", "high"])}
        if i < 16:
            kwargs["any"] = names
        elif i < 64:
            lang = ("en", "uk", "ru")[i % 3]
            kwargs["any"] = names
            kwargs["all"] = [rng.choice(KEYWORDS[lang])]
        else:
            kwargs["any"] = [f"codeword{i}x{k}" for k in range(10)]
        if i % 10 == 0:
            kwargs["none"] = ["exercise", "навчання", "учения"]
        rules.append(Rule.model_validate(kwargs))
    return rules


class NullSink:
    """Counts alerts instead of printing them (the console would measure the terminal)."""

    name = "null"

    def __init__(self) -> None:
        self.count = 0

    async def send(self, alert: Alert) -> None:
        self.count += 1


def _worker_main(
    url: str,
    prefix: str,
    role: str,
    index: int,
    stop_evt: mp.synchronize.Event,  # type: ignore[name-defined]
    batch: int,
    enrich: bool = False,
    cluster: bool = False,
) -> None:
    async def main() -> None:
        client = aioredis.from_url(url)
        keys = Keys(prefix)
        metrics = Metrics()
        stop = asyncio.Event()
        consumer = ConsumerSettings(batch_size=batch, block_ms=100, claim_idle_ms=60_000)
        publisher = Publisher(client, keys, 3600)
        if role == "normalizer":
            settings = NormalizerSettings(enrich=enrich, cluster=cluster)
            clusters = None
            if cluster:
                from monitor.enrich.clusters import StoryClusters  # noqa: PLC0415 - only with clusters on

                clusters = StoryClusters(client, keys)
            stages = [NormalizerStage(keys, Normalizer(settings, warm=True), metrics, clusters)]
        else:
            stages = [
                AlerterStage(keys, AlertEngine(hundred_rules()), metrics),
                NotifierStage(client, keys, [NullSink()], metrics, 3600),
            ]
        workers = [
            StreamWorker(client, keys, s, consumer=f"{role}{index}-{s.name}", settings=consumer,
                         publisher=publisher, metrics=metrics, stop=stop)
            for s in stages
        ]  # fmt: skip

        ready = resource.getrusage(resource.RUSAGE_SELF)
        cpu_ready = ready.ru_utime + ready.ru_stime

        async def watch() -> None:
            # A multiprocessing Event cannot be awaited; poll it and set the asyncio one.
            while not stop_evt.is_set():  # noqa: ASYNC110
                await asyncio.sleep(0.05)
            stop.set()

        await asyncio.gather(watch(), *(w.run() for w in workers))
        usage = resource.getrusage(resource.RUSAGE_SELF)
        # VmHWM, not ru_maxrss: Linux carries ru_maxrss over fork+exec, so a spawned worker would report
        # the parent's peak.
        await client.hset(f"{prefix}:bench:rss", f"{role}{index}", peak_rss_kib(os.getpid()))
        await client.hset(f"{prefix}:bench:cpu", f"{role}{index}", usage.ru_utime + usage.ru_stime - cpu_ready)
        await client.aclose()

    asyncio.run(main())


def start_workers(
    url: str, prefix: str, normalizers: int, batch: int = 200, enrich: bool = False, cluster: bool = False
) -> tuple[list[mp.Process], mp.synchronize.Event]:  # type: ignore[name-defined]
    ctx = mp.get_context("spawn")
    stop_evt = ctx.Event()
    procs = [
        ctx.Process(target=_worker_main, args=(url, prefix, "normalizer", i, stop_evt, batch, enrich, cluster))
        for i in range(normalizers)
    ]
    procs.append(ctx.Process(target=_worker_main, args=(url, prefix, "alerter", 0, stop_evt, batch)))
    for p in procs:
        p.start()
    return procs, stop_evt


def stop_workers(procs: Sequence[mp.Process], stop_evt: mp.synchronize.Event) -> None:  # type: ignore[name-defined]
    stop_evt.set()
    for p in procs:
        p.join(15)


async def group_done(client: aioredis.Redis, stream: str, group: str, expected_delivered: int | None = None) -> bool:
    try:
        groups = await client.xinfo_groups(stream)
    except Exception:  # noqa: BLE001 - the stream may not exist yet
        return False
    for g in groups:
        name = g["name"].decode() if isinstance(g["name"], bytes) else g["name"]
        if name == group:
            last = g["last-delivered-id"]
            last = last.decode() if isinstance(last, bytes) else last
            info = await client.xinfo_stream(stream)
            tail = info["last-generated-id"]
            tail = tail.decode() if isinstance(tail, bytes) else tail
            return int(g["pending"]) == 0 and last == tail
    return False


async def wait_drained(client: aioredis.Redis, keys: Keys, timeout: float) -> float:
    start = time.perf_counter()
    while time.perf_counter() - start < timeout:
        if (
            await group_done(client, keys.raw, "normalizer")
            and await group_done(client, keys.items, "alerter")
            and await group_done(client, keys.alerts, "notifier")
        ):
            return time.perf_counter()
        await asyncio.sleep(0.01)
    raise TimeoutError("pipeline did not drain")


async def preload(client: aioredis.Redis, keys: Keys, posts: list[RawItem]) -> None:
    publisher = Publisher(client, keys, 3600)
    for i in range(0, len(posts), 1000):
        await publisher.publish_raw(posts[i : i + 1000])


async def throughput_phase(
    url: str,
    items: int,
    normalizers: int,
    batch: int,
    watched: float,
    *,
    enrich: bool = False,
    cluster: bool | None = None,
) -> dict[str, object]:
    client = aioredis.from_url(url)
    keys = Keys("bench-tp")
    posts = synthetic_posts(items, seed=1, watched_share=watched)
    await preload(client, keys, posts)
    procs, stop_evt = start_workers(
        url, keys.prefix, normalizers, batch, enrich, enrich if cluster is None else cluster
    )
    # Workers need a moment to import; time from the first entry they take.
    while True:
        groups = await client.xinfo_groups(keys.raw) if await client.exists(keys.raw) else []
        if groups and (int(groups[0]["pending"]) > 0 or groups[0]["last-delivered-id"] not in (b"0-0", "0-0")):
            break
        await asyncio.sleep(0.005)
    start = time.perf_counter()
    redis_cpu_start = await redis_cpu(client)
    end = await wait_drained(client, keys, timeout=600)
    redis_cpu_used = await redis_cpu(client) - redis_cpu_start
    stop_workers(procs, stop_evt)
    cpu = {k.decode(): float(v) for k, v in (await client.hgetall(f"{keys.prefix}:bench:cpu")).items()}
    cpu["redis-server"] = redis_cpu_used
    alerts = await client.xlen(keys.alerts)
    item_count = await client.xlen(keys.items)
    rss = {k.decode(): int(v) for k, v in (await client.hgetall(f"{keys.prefix}:bench:rss")).items()}
    await client.aclose()
    return {
        "items": item_count,
        "alerts": alerts,
        "seconds": end - start,
        "items_per_s": item_count / (end - start),
        "rss_kib": rss,
        "cpu_s": cpu,
    }


async def redis_cpu(client: aioredis.Redis) -> float:
    info = await client.info("cpu")
    return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])


async def latency_phase(url: str, rate: int, seconds: float, normalizers: int, batch: int) -> dict[str, float]:
    client = aioredis.from_url(url)
    keys = Keys("bench-lat")
    procs, stop_evt = start_workers(url, keys.prefix, normalizers, batch)
    await asyncio.sleep(3)  # let workers import and create groups
    posts = synthetic_posts(int(rate * seconds), seed=2, watched_share=1.0)
    publisher = Publisher(client, keys, 3600)
    raw_ids: dict[str, int] = {}
    tick = 0.01
    per_tick = max(1, int(rate * tick))
    start = time.perf_counter()
    sent = 0
    while sent < len(posts):
        batch = posts[sent : sent + per_tick]
        ids = await publisher.publish_raw(batch)
        for post, entry_id in zip(batch, ids, strict=True):
            if entry_id:
                raw_ids[f"telegram:{post.channel}:{post.external_id}"] = int(entry_id.split("-")[0])
        sent += len(batch)
        delay = start + (sent / rate) - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
    offered = sent / (time.perf_counter() - start)
    await wait_drained(client, keys, timeout=120)
    stop_workers(procs, stop_evt)
    latencies: dict[str, int] = {}
    last = "-"
    while True:
        chunk = await client.xrange(keys.alerts, min=last, max="+", count=5000)
        if not chunk:
            break
        for entry_id, fields in chunk:
            alert_ms = int(entry_id.decode().split("-")[0])
            data = fields[b"data"]
            start_i = data.index(b'"item_id":"') + 11
            item = data[start_i : data.index(b'"', start_i)].decode()
            if item in raw_ids and item not in latencies:
                latencies[item] = alert_ms - raw_ids[item]
        last = "(" + chunk[-1][0].decode()
    await client.aclose()
    values = sorted(latencies.values())
    q = statistics.quantiles(values, n=100, method="inclusive")
    return {
        "offered_per_s": offered,
        "alerted_items": len(values),
        "p50_ms": q[49],
        "p99_ms": q[98],
        "max_ms": values[-1],
    }


async def redis_ceiling(url: str, items: int) -> float:
    """Pipelined XADD of the same payloads from one client: what Redis alone takes."""
    client = aioredis.from_url(url)
    payloads = [entry_fields(p) for p in synthetic_posts(items, seed=3)]
    start = time.perf_counter()
    for i in range(0, len(payloads), 1000):
        pipe = client.pipeline(transaction=False)
        for fields in payloads[i : i + 1000]:
            pipe.xadd("bench-ceiling:raw", fields)
        await pipe.execute()
    elapsed = time.perf_counter() - start
    await client.delete("bench-ceiling:raw")
    await client.aclose()
    return items / elapsed


def peak_rss_kib(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--items", type=int, default=20_000, help="posts for the throughput phase")
    parser.add_argument("--rate", type=int, default=1000, help="offered posts/s for the latency phase")
    parser.add_argument("--seconds", type=float, default=10, help="length of the latency phase")
    parser.add_argument("--normalizers", type=int, default=1, help="normalizer processes")
    parser.add_argument(
        "--watched-share",
        type=float,
        default=0.5,
        help="share of place mentions that some rule watches (1.0: every post alerts)",
    )
    parser.add_argument("--no-aof", action="store_true", help="turn the embedded server's AOF off (to see its cost)")
    parser.add_argument("--batch", type=int, default=200, help="redis.consumer.batch_size for every worker")
    parser.add_argument("--enrich", action="store_true", help="entities and story clusters in the normalizer")
    args = parser.parse_args()

    async def run() -> None:
        with tempfile.TemporaryDirectory(prefix="warwatch-bench-") as tmp:
            server = EmbeddedRedis(Path(tmp))
            url = await server.start()
            if args.no_aof:
                control = aioredis.from_url(url)
                await control.config_set("appendonly", "no")
                await control.aclose()
            try:
                aof = "AOF off" if args.no_aof else "AOF everysec"
                print(f"redis: {server.binary or 'auto'} at {url} ({aof}); cores: {os.cpu_count()}")
                ceiling = await redis_ceiling(url, args.items)
                tp = await throughput_phase(
                    url, args.items, args.normalizers, args.batch, args.watched_share, enrich=args.enrich
                )
                lat = await latency_phase(url, args.rate, args.seconds, args.normalizers, args.batch)
                redis_peak = peak_rss_kib(server.process.pid) if server.process else 0
            finally:
                await server.stop()
        cpu = ", ".join(f"{name} {sec:.1f} s" for name, sec in sorted(tp["cpu_s"].items()))  # type: ignore[attr-defined]
        worker_rss = ", ".join(f"{name} {kib / 1024:.0f} MiB" for name, kib in sorted(tp["rss_kib"].items()))  # type: ignore[attr-defined]
        print(
            f"posts: {args.items} (en/uk/ru 40/30/30, 200-1500 chars, watched share {args.watched_share}), rules: 100, "
            f"processes: {args.normalizers} normalizer + 1 alerter/notifier"
        )
        print(
            f"throughput: {tp['items_per_s']:,.0f} items/s end to end "
            f"({tp['items']:.0f} items, {tp['alerts']:.0f} alerts in {tp['seconds']:.2f} s)"
        )
        print(f"alerts per item: {tp['alerts'] / tp['items']:.2f}")  # type: ignore[operator]
        print(f"cpu during the throughput phase: {cpu} (after start-up)")
        print(
            f"latency at {lat['offered_per_s']:,.0f} items/s offered: p50 {lat['p50_ms']:.0f} ms, "
            f"p99 {lat['p99_ms']:.0f} ms, max {lat['max_ms']:.0f} ms ({lat['alerted_items']:.0f} alerted items)"
        )
        print(f"peak RSS: {worker_rss}, redis-server {redis_peak / 1024:.0f} MiB")
        print(f"redis ceiling (pipelined XADD, one client): {ceiling:,.0f} entries/s; "
              f"pipeline/ceiling = {tp['items_per_s'] / ceiling:.2f}")  # fmt: skip

    asyncio.run(run())


if __name__ == "__main__":
    main()
