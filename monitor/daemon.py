"""The supervisor behind ``monitor run``.

It starts the embedded Redis when configured, then runs the corpus collector, the normalizer, alerter
and notifier workers, the trimmer, the stats exporter and the metrics server under one
``asyncio.TaskGroup``. SIGTERM or SIGINT sets a stop event: workers stop reading, finish the batch in
hand and return; whatever is still running after ``redis.consumer.shutdown_grace`` is cancelled. With
``once`` the daemon stops by itself when the corpus is in and every group's lag and pending are zero.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol

import structlog
from aiohttp import web
from redis.exceptions import RedisError, ResponseError

from monitor.alerting.engine import AlertEngine
from monitor.alerting.stage import AlerterStage
from monitor.alerting.windows import Windows, flatline_alerts
from monitor.bus.consume import Stage, StreamWorker, ensure_group
from monitor.bus.keys import GROUP_ARCHIVER, Keys
from monitor.bus.publish import Publisher
from monitor.bus.redis import EmbeddedRedis, Redis, open_redis
from monitor.bus.trim import run_trimmer
from monitor.channel_metrics import prime_channel_metrics
from monitor.collectors.base import Checkpoints, Emitter
from monitor.collectors.corpus import ingest_paths
from monitor.config import Settings, load_config, rule_files
from monitor.errors import ConfigError
from monitor.metrics import Metrics, metrics_app
from monitor.normalize.normalizer import Normalizer
from monitor.normalize.stage import NormalizerStage
from monitor.notify.apprise_sink import AppriseSink
from monitor.notify.console import ConsoleSink
from monitor.notify.dispatcher import DispatchLimits, SinkDispatcher
from monitor.notify.outbox import Outbox, RetryPolicy
from monitor.notify.routing import Router
from monitor.notify.stage import NotifierStage, Sink
from monitor.notify.templates import Templates
from monitor.schema import encode
from monitor.status import export_gauges, export_redis_health, pipeline_status

if TYPE_CHECKING:
    from monitor.archive import Archive

log = structlog.get_logger(__name__)

Role = Literal["all", "collectors", "workers"]
# A worker process holds its consumer name this long between renewals (renewed every third of it).
CONSUMER_LEASE_SECONDS = 30


class PollingCollector(Protocol):
    """What the web preview, feed and X collectors have in common for the daemon."""

    async def run_once(self) -> None: ...

    async def run(self, stop: asyncio.Event) -> None: ...

    async def aclose(self) -> None: ...


@dataclass(slots=True)
class Daemon:
    """One running monitor: its settings, metrics, stop event and (once started) Redis client."""

    settings: Settings
    metrics: Metrics = field(default_factory=Metrics)
    stop: asyncio.Event = field(default_factory=asyncio.Event)
    once: bool = False
    consumer_prefix: str = field(default_factory=socket.gethostname)
    sinks: list[Sink] | None = None
    redis: Redis | None = None
    metrics_port: int | None = None
    ready: asyncio.Event = field(default_factory=asyncio.Event)
    reload_requested: asyncio.Event = field(default_factory=asyncio.Event)
    rules_poll_interval: float = 2.0
    flatline_interval: float = 30.0
    # How often an idle sink dispatcher looks for alerts queued by another process or due for a retry.
    notify_poll_interval: float = 1.0
    alerter: AlerterStage | None = None
    # all: collectors and workers; collectors: only the collectors; workers: the stage workers,
    # notification dispatchers, trimmer and timers. Roles can run as separate processes or machines.
    role: Role = "all"
    _lease_token: str = field(default_factory=lambda: f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}")
    dispatchers: list[SinkDispatcher] = field(default_factory=list)
    archive: Archive | None = None
    _aggregates: tuple[object, dict[str, float]] = (None, {})

    @property
    def keys(self) -> Keys:
        return Keys(self.settings.redis.key_prefix)

    def build_stages(self, redis: Redis) -> list[Stage]:
        """The three pipeline stages, wired to this daemon's settings."""
        sinks = self.sinks
        if sinks is None:
            console = self.settings.notify.console
            sinks = [ConsoleSink(console.format)] if console.enabled else []
        notify = self.settings.notify
        outboxes = {
            sink.name: Outbox(redis, self.keys, sink.name, delivered_ttl=notify.delivered_ttl) for sink in notify.sinks
        }
        templates = Templates.from_settings(notify)
        self.dispatchers = [
            SinkDispatcher(
                AppriseSink(
                    sink.name,
                    sink.url.get_secret_value(),
                    template=sink.template,
                    api_url=sink.api_url,
                    timeout=sink.timeout,
                ),
                outboxes[sink.name],
                templates,
                self.metrics,
                DispatchLimits(
                    rate_limit=sink.rate_limit,
                    rate_window=sink.rate_window,
                    digest_max=sink.digest_max,
                    concurrency=sink.concurrency,
                    timeout=sink.timeout,
                    retry=RetryPolicy(sink.max_attempts, sink.backoff, sink.backoff_max),
                ),
                poll_interval=self.notify_poll_interval,
            )
            for sink in notify.sinks
        ]
        wakes = {dispatcher.sink.name: dispatcher.wake for dispatcher in self.dispatchers}

        def wake(names: set[str]) -> None:
            for name in names:
                wakes[name].set()

        notifier = NotifierStage(
            redis,
            self.keys,
            sinks,
            self.metrics,
            self.settings.redis.stage_dedup_ttl,
            outboxes=outboxes,
            router=Router(notify),
            aggregate_for=self._aggregate_for,
            on_queued=wake,
        )
        normalizer_settings = self.settings.normalizer
        clusters = None
        if normalizer_settings.cluster:
            from monitor.enrich.clusters import StoryClusters  # noqa: PLC0415 - numpy and the index only when on

            clusters = StoryClusters(redis, self.keys, window=normalizer_settings.cluster_window)
        stages: list[Stage] = [
            NormalizerStage(self.keys, Normalizer(normalizer_settings, warm=True), self.metrics, clusters),
            AlerterStage(self.keys, AlertEngine(self.settings.rules), self.metrics, Windows(redis, self.keys)),
            notifier,
        ]
        if self.archive is not None:
            from monitor.archive import ArchiverStage  # noqa: PLC0415 - sqlite and gzip only when archiving

            stages.append(ArchiverStage(self.keys, self.archive, self.metrics))
        return stages

    def _aggregate_for(self, rule: str) -> float:
        """The ``aggregate`` period of a rule in the live rule set (0 when unknown or unset)."""
        rules = self.settings.rules
        if self._aggregates[0] is not rules:
            self._aggregates = (rules, {r.name: r.aggregate for r in rules})
        return self._aggregates[1].get(rule, 0.0)

    async def run(self) -> None:
        """Run until stopped (or, with ``once``, until drained)."""
        servers: list[EmbeddedRedis] = []
        async with open_redis(self.settings.redis, embedded_server=servers) as redis:
            self.redis = redis
            await self._run_with(redis, servers[0] if servers else None)

    @property
    def runs_workers(self) -> bool:
        return self.role in ("all", "workers")

    @property
    def runs_collectors(self) -> bool:
        return self.role in ("all", "collectors")

    async def _run_with(self, redis: Redis, server: EmbeddedRedis | None) -> None:
        settings = self.settings
        keys = self.keys
        # Collectors' "seen" markers must outlive re-ingestion (dedup_ttl); the stages' markers only
        # have to outlive redeliveries (stage_dedup_ttl), which keeps Redis memory down.
        publisher = Publisher(redis, keys, settings.redis.dedup_ttl)
        stage_publisher = Publisher(redis, keys, settings.redis.stage_dedup_ttl)
        workers: list[StreamWorker] = []
        if self.runs_workers:
            await self._claim_consumer_name(redis)
            await self._open_archive(redis)
            stages = self.build_stages(redis)
            self.alerter = next(stage for stage in stages if isinstance(stage, AlerterStage))
            for stage in stages:
                await ensure_group(redis, stage.stream, stage.group)
            self.metrics.prime_pipeline(
                [stage.name for stage in stages],
                list(keys.stream_groups()),
                [dispatcher.sink.name for dispatcher in self.dispatchers],
            )
            workers = [
                StreamWorker(
                    redis,
                    keys,
                    stage,
                    consumer=f"{self.consumer_prefix}-{stage.name}",
                    settings=settings.redis.consumer,
                    publisher=stage_publisher,
                    metrics=self.metrics,
                    stop=self.stop,
                )
                for stage in stages
            ]
        if self.runs_collectors:
            await prime_channel_metrics(self.metrics, settings, redis, keys, time.time())
        tasks: list[asyncio.Task[None]] = []
        async with asyncio.TaskGroup() as group:

            def spawn(coro: Awaitable[None], name: str) -> asyncio.Task[None]:
                task = group.create_task(_named(coro), name=name)
                tasks.append(task)
                return task

            group.create_task(self._shutdown_watchdog(tasks), name="watchdog")
            if settings.metrics.enabled:
                spawn(self._serve_metrics(redis), "metrics")
            if server is not None:
                spawn(server.supervise(self.stop), "embedded-redis")
            spawn(self._export_stats(redis), "stats")
            if self.runs_workers:
                for worker in workers:
                    spawn(worker.run(), f"worker-{worker.stage.name}")
                for dispatcher in self.dispatchers:
                    spawn(dispatcher.run(self.stop), f"notify-{dispatcher.sink.name}")
                spawn(run_trimmer(redis, keys, settings.redis.retention, self.metrics, self.stop), "trimmer")
                spawn(self._watch_rules(), "rules")
                spawn(self._flatline_timer(redis, stage_publisher), "flatline")
                spawn(self._keep_consumer_name(redis), "consumer-lease")
            collecting: list[asyncio.Task[None]] = []  # one-shot collection that --once waits for
            if self.runs_collectors:
                emitter = Emitter(publisher, Checkpoints(redis, keys), self.metrics)
                collecting = self._spawn_collectors(spawn, redis, publisher, emitter)
            if self.once:
                if self.runs_workers:
                    spawn(self._stop_when_drained(redis, collecting), "once")
                else:
                    spawn(self._stop_when_collected(collecting), "once")
            self.ready.set()
            log.info(
                "monitor running",
                role=self.role,
                once=self.once,
                rules=len(settings.rules),
                prefix=keys.prefix,
                redis=f"embedded ({server.url}, data in {server.directory})" if server else "external",
            )
        if self.archive is not None:
            self.archive.close()
        if server is not None:
            log.info("monitor stopped; stopping embedded redis")
        else:
            log.info("monitor stopped")

    async def _open_archive(self, redis: Redis) -> None:
        """Open (and if needed rebuild) the archive before its worker starts; warn about an orphan group."""
        settings = self.settings.archive
        if not settings.enabled:
            groups: Any = await redis.xinfo_groups(self.keys.items) if await redis.exists(self.keys.items) else []
            if any(_name(group) == GROUP_ARCHIVER for group in groups):
                log.warning(
                    "archive is disabled but the archiver group still exists; it holds back trimming of the "
                    "items stream. Remove it with: XGROUP DESTROY " + self.keys.items + " " + GROUP_ARCHIVER
                )
            return
        from monitor.archive import Archive  # noqa: PLC0415 - sqlite and gzip only when archiving

        directory = settings.dir or self.settings.redis.data_dir / "archive"
        self.archive = Archive(directory, fsync=settings.fsync, compress_level=settings.compress_level)
        await asyncio.to_thread(self.archive.open)

    def _spawn_collectors(
        self,
        spawn: Callable[[Awaitable[None], str], asyncio.Task[None]],
        redis: Redis,
        publisher: Publisher,
        emitter: Emitter,
    ) -> list[asyncio.Task[None]]:
        """Start every enabled collector; returns the one-shot ones ``--once`` waits for."""
        settings = self.settings
        collecting: list[asyncio.Task[None]] = []
        corpus = settings.collectors.corpus
        if corpus.enabled and corpus.paths:
            collecting.append(spawn(self._ingest(publisher), "corpus"))
        web = settings.collectors.telegram_web
        if web.enabled is not False and web.channels:
            task = spawn(_guard("telegram_web", self._telegram_web(emitter)), "telegram_web")
            if self.once:
                collecting.append(task)
        telegram = settings.collectors.telegram
        if telegram.enabled is not False and not self.once:  # a streaming collector: not in --once
            if telegram.api_id and telegram.api_hash and telegram.api_hash.get_secret_value():
                if telegram.channels:
                    spawn(_guard("telegram", self._telegram(redis, emitter)), "telegram")
            else:
                log.info(
                    "telegram collector disabled: no API credentials. To enable it set TELEGRAM_API_ID and "
                    "TELEGRAM_API_HASH (collectors.telegram.api_id/api_hash), run `monitor telegram login`, "
                    "and list collectors.telegram.channels"
                )
        feeds = settings.collectors.feeds
        if feeds.enabled is not False and feeds.urls:
            task = spawn(_guard("feeds", self._feeds(emitter)), "feeds")
            if self.once:
                collecting.append(task)
        x = settings.collectors.x
        if x.enabled is not False and (x.accounts or x.queries):
            if x.bearer_token is not None and x.bearer_token.get_secret_value():
                if not self.once or x.mode == "poll":  # the filtered stream is skipped by --once
                    task = spawn(_guard("x", self._x(redis, emitter)), "x")
                    if self.once:
                        collecting.append(task)
            else:
                log.info("x collector disabled: set X_BEARER_TOKEN (collectors.x.bearer_token) to enable it")
        return collecting

    async def _stop_when_collected(self, collecting: list[asyncio.Task[None]]) -> None:
        """For ``--once --role collectors``: stop when every one-shot collector has finished."""
        if collecting:
            await asyncio.wait(collecting)
        log.info("collection done; stopping (--once)")
        self.stop.set()

    async def _claim_consumer_name(self, redis: Redis) -> None:
        """Make sure no live process uses this consumer name: two would read each other's pending entries.

        The name is leased in Redis. A lease left by a process that died on this host (or by an earlier
        run of this container, which had the same pid) is taken over at once; one held from another host
        is waited out until its TTL ends, and a live holder is an error.
        """
        key = self.keys.consumer_lease(self.consumer_prefix)
        token = self._lease_token
        deadline = time.monotonic() + CONSUMER_LEASE_SECONDS + 2
        while True:
            if await redis.set(key, token, nx=True, ex=CONSUMER_LEASE_SECONDS):
                return
            raw: Any = await redis.get(key)
            holder = raw.decode() if raw is not None else ""
            if not holder:
                continue
            host, _, rest = holder.partition(":")
            pid_text = rest.partition(":")[0]
            if host == socket.gethostname() and pid_text.isdigit():
                pid = int(pid_text)
                if pid == os.getpid() or not _alive(pid):
                    log.info("taking over the consumer name of a process that is gone", consumer=self.consumer_prefix)
                    await redis.set(key, token, ex=CONSUMER_LEASE_SECONDS)
                    return
                raise ConfigError(
                    [
                        (
                            "--consumer",
                            f"consumer name {self.consumer_prefix!r} is in use by another running process "
                            f"(pid {pid}); give each worker process its own --consumer",
                        )
                    ],
                    "command line",
                )
            if time.monotonic() > deadline:
                raise ConfigError(
                    [
                        (
                            "--consumer",
                            f"consumer name {self.consumer_prefix!r} is in use by a process on {host}; "
                            "give each worker process its own --consumer",
                        )
                    ],
                    "command line",
                )
            log.warning("consumer name held by another host; waiting for its lease to lapse", holder_host=host)
            await asyncio.sleep(1.0)

    async def _keep_consumer_name(self, redis: Redis) -> None:
        """Renew the consumer-name lease while running; release it on the way out."""
        key = self.keys.consumer_lease(self.consumer_prefix)
        try:
            while not self.stop.is_set():
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.stop.wait(), CONSUMER_LEASE_SECONDS / 3)
                with contextlib.suppress(RedisError, OSError):
                    await redis.set(key, self._lease_token, ex=CONSUMER_LEASE_SECONDS)
        finally:
            with contextlib.suppress(RedisError, OSError):
                held: Any = await redis.get(key)
                if held is not None and held.decode() == self._lease_token:
                    await redis.delete(key)

    async def _ingest(self, publisher: Publisher) -> None:
        corpus = self.settings.collectors.corpus
        try:
            await ingest_paths(corpus.paths, publisher, corpus, self.metrics)
        except (RedisError, OSError) as exc:
            log.error("corpus ingestion failed", error=str(exc))

    async def _poll(self, collector: PollingCollector) -> None:
        """One cycle with ``--once``, else until stopped; the collector's HTTP session is closed after."""
        try:
            if self.once:
                await collector.run_once()
            else:
                await collector.run(self.stop)
        finally:
            await collector.aclose()

    async def _telegram_web(self, emitter: Emitter) -> None:
        from monitor.collectors.telegram_web import TelegramWebCollector  # noqa: PLC0415 - only when enabled

        collector = TelegramWebCollector(
            self.settings.collectors.telegram_web, emitter, emitter.checkpoints, self.metrics
        )
        await self._poll(collector)

    async def flatline_check(self, redis: Redis, publisher: Publisher, now: float | None = None) -> int:
        """Raise the alerts of ``flatline`` rules whose keys have gone silent; returns how many were new."""
        found = await flatline_alerts(redis, self.keys, self.settings.rules, time.time() if now is None else now)
        if not found:
            return 0
        pipe = redis.pipeline(transaction=False)
        publisher.queue_many(pipe, [(self.keys.seen_alert(a.alert_id), self.keys.alerts, encode(a)) for a in found])
        [replies] = await pipe.execute()
        new = 0
        for alert, reply in zip(found, replies, strict=True):
            if reply is not None:
                new += 1
                self.metrics.alerts.labels(alert.rule, alert.severity).inc()
                log.warning("flatline: a channel went silent", rule=alert.rule, channel=alert.channel)
        return new

    async def _flatline_timer(self, redis: Redis, publisher: Publisher) -> None:
        while not self.stop.is_set():  # rules may be reloaded to add a flatline rule: keep looping
            if any(rule.type == "flatline" for rule in self.settings.rules):
                try:
                    await self.flatline_check(redis, publisher)
                except (RedisError, OSError) as exc:
                    log.warning("flatline check failed", error=str(exc))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.stop.wait(), self.flatline_interval)

    def _rules_fingerprint(self) -> tuple[tuple[str, int, int], ...]:
        """What the rules depend on: the config file and every rule file, with their mtimes and sizes."""
        source = self.settings.source_path
        paths = [source] if source else []
        paths += rule_files(source.parent if source else Path.cwd())
        marks = []
        for path in paths:
            try:
                stat = path.stat()
            except OSError:
                continue
            marks.append((str(path), stat.st_mtime_ns, stat.st_size))
        return tuple(marks)

    def reload_rules(self) -> bool:
        """Re-read the config and rule files and swap in the new rules; keep the old ones if invalid."""
        try:
            settings = load_config(self.settings.source_path)
        except ConfigError as exc:
            self.metrics.rules_reloads.labels("failed").inc()
            self.metrics.rules_reload_success.set(0)
            log.error(
                "rule reload rejected; the previous rules stay active",
                problems=[f"{where}: {message}" for where, message in exc.problems],
            )
            return False
        engine = AlertEngine(settings.rules)
        if self.alerter is not None:
            self.alerter.engine = engine
        self.settings.rules = settings.rules
        self.metrics.rules_loaded.set(engine.rule_count)
        self.metrics.rules_reloads.labels("ok").inc()
        self.metrics.rules_reload_success.set(1)
        log.info("rules reloaded", rules=engine.rule_count)
        return True

    async def _watch_rules(self) -> None:
        """Reload the rules on SIGHUP, and when the config file or a rule file changes."""
        seen = self._rules_fingerprint()
        while not self.stop.is_set():
            waiters = {asyncio.ensure_future(self.stop.wait()), asyncio.ensure_future(self.reload_requested.wait())}
            try:
                await asyncio.wait(waiters, timeout=self.rules_poll_interval, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for waiter in waiters:
                    waiter.cancel()
            if self.stop.is_set():
                return
            current = self._rules_fingerprint()
            if self.reload_requested.is_set() or current != seen:
                self.reload_requested.clear()
                seen = current
                self.reload_rules()

    async def _feeds(self, emitter: Emitter) -> None:
        from monitor.collectors.feeds import FeedCollector  # noqa: PLC0415 - only when enabled

        collector = FeedCollector(self.settings.collectors.feeds, emitter, emitter.checkpoints, self.metrics)
        await self._poll(collector)

    async def _x(self, redis: Redis, emitter: Emitter) -> None:
        from monitor.collectors.x import XCollector  # noqa: PLC0415 - only when enabled

        collector = XCollector(self.settings.collectors.x, emitter, emitter.checkpoints, self.metrics, self.keys, redis)
        await self._poll(collector)

    async def _telegram(self, redis: Redis, emitter: Emitter) -> None:
        from monitor.collectors import telegram as tg  # noqa: PLC0415 - Telethon only when enabled

        settings = self.settings.collectors.telegram
        await tg.run_collector(settings, redis, self.keys, emitter, self.metrics, self.stop)

    async def _stop_when_drained(self, redis: Redis, collecting: list[asyncio.Task[None]]) -> None:
        """For ``--once``: stop after two consecutive checks find nothing left to process."""
        if collecting:
            await asyncio.wait(collecting)
        quiet = 0
        while not self.stop.is_set():
            status = await pipeline_status(redis, self.keys)
            now = time.time()
            due = sum([await d.outbox.due(now) for d in self.dispatchers])
            quiet = quiet + 1 if status.backlog == 0 and due == 0 else 0
            if quiet >= 2:
                waiting = {d.sink.name: n for d in self.dispatchers if (n := await d.outbox.size())}
                if waiting:
                    log.info(
                        "notifications still waiting (retrying or held for a digest); they go out on the next run",
                        waiting=waiting,
                    )
                log.info("queues drained; stopping (--once)")
                self.stop.set()
                return
            await asyncio.sleep(0.1)

    async def _shutdown_watchdog(self, tasks: list[asyncio.Task[None]]) -> None:
        """After stop, give tasks ``shutdown_grace`` seconds to drain, then cancel what is left."""
        await self.stop.wait()
        grace = self.settings.redis.consumer.shutdown_grace
        _, still_running = await asyncio.wait(tasks, timeout=grace) if tasks else (set(), set())
        for task in still_running:
            log.warning("task did not drain in time; cancelling", task=task.get_name(), grace=grace)
            task.cancel()

    async def _export_stats(self, redis: Redis) -> None:
        interval = self.settings.metrics.stats_interval
        while not self.stop.is_set():
            try:
                if self.runs_workers:  # one role exports the shared stream gauges, so they are not doubled
                    sinks = [d.sink.name for d in self.dispatchers]
                    export_gauges(await pipeline_status(redis, self.keys, sinks), self.metrics)
                await export_redis_health(redis, self.metrics)
                self.metrics.redis_up.set(1)
            except (RedisError, OSError) as exc:
                self.metrics.redis_up.set(0)
                log.warning("stats read failed", error=str(exc))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.stop.wait(), interval)

    async def readiness(self) -> tuple[bool, str]:
        """Ready when Redis answers and every pipeline group exists."""
        if self.redis is None:
            return False, "redis not connected"
        try:
            await self.redis.ping()
            for stream, groups in self.keys.stream_groups().items():
                if not groups:
                    continue
                try:
                    existing = {_name(g) for g in await self.redis.xinfo_groups(stream)}
                except ResponseError:  # the stream does not exist yet
                    existing = set()
                missing = set(groups) - existing
                if missing:
                    return False, f"group(s) {', '.join(sorted(missing))} missing on {stream}"
        except (RedisError, OSError) as exc:
            return False, f"redis unavailable: {exc}"
        return True, "ready"

    async def _serve_metrics(self, redis: Redis) -> None:
        del redis  # readiness uses self.redis
        cfg = self.settings.metrics
        runner = web.AppRunner(metrics_app(self.metrics, self.readiness), access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, cfg.host, cfg.port)
        try:
            await site.start()
        except OSError as exc:
            log.error("metrics server could not listen", host=cfg.host, port=cfg.port, error=str(exc))
            await runner.cleanup()
            return
        server = getattr(site, "_server", None)
        sockets = getattr(server, "sockets", None) or []
        self.metrics_port = sockets[0].getsockname()[1] if sockets else cfg.port
        log.info("metrics listening", url=f"http://{cfg.host}:{self.metrics_port}/metrics")
        try:
            await self.stop.wait()
        finally:
            await runner.cleanup()

    def install_signal_handlers(self) -> None:
        """SIGTERM/SIGINT set the stop event; a second one exits at once."""
        loop = asyncio.get_running_loop()
        main = asyncio.current_task()

        def on_signal(signame: str) -> None:
            if self.stop.is_set():
                log.warning("second signal; exiting now", signal=signame)
                if main is not None:
                    main.cancel()
                return
            log.info("signal received; draining", signal=signame)
            self.stop.set()

        for sig in (signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(sig, on_signal, sig.name)

        def on_hangup() -> None:
            log.info("SIGHUP received; reloading rules")
            self.reload_requested.set()

        with contextlib.suppress(NotImplementedError, RuntimeError, AttributeError):
            loop.add_signal_handler(signal.SIGHUP, on_hangup)


def _alive(pid: int) -> bool:
    """Whether a process with this pid exists on this host."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # it exists, owned by someone else
    return True


def _name(info: dict[str, object]) -> str:
    value = info["name"]
    return value.decode() if isinstance(value, bytes) else str(value)


async def _named(coro: Awaitable[None]) -> None:
    await coro


async def _guard(name: str, coro: Awaitable[None]) -> None:
    """Run a collector so that its crash is logged and does not bring down the daemon."""
    try:
        await coro
    except asyncio.CancelledError:
        raise
    except Exception as exc:
        log.exception("collector failed", collector=name, error=f"{type(exc).__name__}: {exc}")


async def run_daemon(
    settings: Settings, *, once: bool = False, role: Role = "all", consumer: str | None = None
) -> None:
    """Entry point for ``monitor run``."""
    daemon = Daemon(settings, once=once, role=role)
    if consumer:
        daemon.consumer_prefix = consumer
    daemon.install_signal_handlers()
    await daemon.run()
