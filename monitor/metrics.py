"""Prometheus metrics, in a container built around an injected CollectorRegistry, and the HTTP app.

Injecting the registry keeps tests and several monitors in one process independent. Names follow
Prometheus conventions: prefix ``warwatch_``, base units, ``_total`` on counters, and only bounded
label values (source, channel, rule, severity, stage, stream, group, sink, status).
The app serves ``/metrics``, ``/livez`` (the process answers) and ``/readyz`` (Redis answers and the
consumer groups exist).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence

from aiohttp import web
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info, disable_created_metrics
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest

from monitor import __version__

# Item to alert: from ms (collected -> alert on a fast pipeline) to a day (an old post backfilled).
_END_TO_END_BUCKETS = (
    0.01,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
    60.0,
    300.0,
    900.0,
    3600.0,
    21600.0,
    86400.0,
)
# No ``*_created`` series beside every counter and histogram: they double the series for nothing a
# dashboard of this monitor uses (process-global in prometheus_client, set once on import).
disable_created_metrics()

_STAGE_BUCKETS = (0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5, 1.0)


class Metrics:
    """Every metric the monitor exports, registered on one registry."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        r = self.registry
        self.build_info = Info("warwatch_build", "Version of the running monitor.", registry=r)
        self.build_info.info({"version": __version__})
        self.items_in = Counter(
            "warwatch_stage_items_in_total", "Entries a stage has read, per source.", ["stage", "source"], registry=r
        )
        self.items_out = Counter(
            "warwatch_stage_items_out_total",
            "Entries a stage has written downstream, per source.",
            ["stage", "source"],
            registry=r,
        )
        self.duplicates = Counter(
            "warwatch_duplicates_total",
            "Entries not written again because their idempotency key was already set.",
            ["stage"],
            registry=r,
        )
        self.collected = Counter(
            "warwatch_collector_items_total",
            "Items a collector pushed onto the raw stream (duplicates excluded).",
            ["source", "channel"],
            registry=r,
        )
        self.collector_rejected = Counter(
            "warwatch_collector_rejected_total",
            "Inputs a collector could not turn into an item (bad file, bad line).",
            ["source"],
            registry=r,
        )
        self.items_normalized = Counter(
            "warwatch_items_normalized_total",
            "Items the normalizer wrote to the items stream, per channel.",
            ["source", "channel"],
            registry=r,
        )
        self.items_alerted = Counter(
            "warwatch_items_alerted_total",
            "Items that raised at least one new alert, per channel.",
            ["source", "channel"],
            registry=r,
        )
        self.end_to_end = Histogram(
            "warwatch_end_to_end_seconds",
            "Delay from an item's publication (since=published) or collection (since=collected) to its alert.",
            ["source", "since"],
            buckets=_END_TO_END_BUCKETS,
            registry=r,
        )
        self.alerts = Counter(
            "warwatch_alerts_total", "Alerts written to the alerts stream.", ["rule", "severity"], registry=r
        )
        self.notifications = Counter(
            "warwatch_notifications_total", "Alert deliveries per sink and outcome.", ["sink", "status"], registry=r
        )
        self.notification_messages = Counter(
            "warwatch_notification_messages_total",
            "Messages sent to a sink, by kind: single (one alert) or digest (several folded into one).",
            ["sink", "kind"],
            registry=r,
        )
        self.notification_seconds = Histogram(
            "warwatch_notification_seconds",
            "Time one send to a sink took, successful or not.",
            ["sink"],
            buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0),
            registry=r,
        )
        self.notification_outbox = Gauge(
            "warwatch_notification_outbox",
            "Alerts waiting for delivery to a sink (due, retrying or held for a digest).",
            ["sink"],
            registry=r,
        )
        self.dead_letters = Counter(
            "warwatch_dead_letters_total", "Entries moved to the dead stream.", ["stage"], registry=r
        )
        self.failures = Counter(
            "warwatch_stage_failures_total",
            "Entries whose processing raised and that will be retried.",
            ["stage"],
            registry=r,
        )
        self.reclaimed = Counter(
            "warwatch_reclaimed_total",
            "Pending entries taken over from an idle consumer by XAUTOCLAIM.",
            ["stage"],
            registry=r,
        )
        self.stage_seconds = Histogram(
            "warwatch_stage_seconds",
            "Processing time per item in a stage.",
            ["stage"],
            buckets=_STAGE_BUCKETS,
            registry=r,
        )
        self.stream_length = Gauge("warwatch_stream_length", "Entries in a stream (XLEN).", ["stream"], registry=r)
        self.stream_lag = Gauge(
            "warwatch_stream_lag", "Entries not yet delivered to a group.", ["stream", "group"], registry=r
        )
        self.stream_pending = Gauge(
            "warwatch_stream_pending", "Entries delivered to a group but not acknowledged.", ["stream", "group"],
            registry=r,
        )  # fmt: skip
        self.trimmed = Counter(
            "warwatch_stream_trimmed_total", "Acknowledged entries removed by the trimmer.", ["stream"], registry=r
        )
        self.trim_lost = Counter(
            "warwatch_stream_trim_lost_total",
            "Unacknowledged entries dropped because a stream hit its hard cap.",
            ["stream"],
            registry=r,
        )
        self.collector_last_item = Gauge(
            "warwatch_collector_last_item_timestamp_seconds",
            "Publication time of the newest item a collector has seen, per channel (for silent-channel alerts).",
            ["source", "channel"],
            registry=r,
        )
        self.collector_errors = Counter(
            "warwatch_collector_errors_total",
            "Collector errors by kind (http_5xx, rate_limited, timeout, parse, no_preview, unresolved, ...).",
            ["source", "channel", "kind"],
            registry=r,
        )
        self.flood_wait = Gauge(
            "warwatch_collector_flood_wait_seconds",
            "Seconds left of a Telegram flood wait (or rate-limit pause) per channel; 0 when none.",
            ["source", "channel"],
            registry=r,
        )
        self.reconciliation_fills = Counter(
            "warwatch_collector_reconciliation_fills_total",
            "Messages found by catch-up/reconciliation that the live path had missed.",
            ["source", "channel"],
            registry=r,
        )
        self.collector_reconnects = Counter(
            "warwatch_collector_reconnects_total",
            "Reconnects of a streaming collector (X filtered stream, Telegram).",
            ["source", "channel"],
            registry=r,
        )
        self.collector_backoff = Gauge(
            "warwatch_collector_backoff_seconds",
            "Current backoff before a collector's next attempt on a channel; 0 when none.",
            ["source", "channel"],
            registry=r,
        )
        self.rate_limit_remaining = Gauge(
            "warwatch_x_rate_limit_remaining",
            "Requests left in the current X rate-limit window (x-rate-limit-remaining), per endpoint.",
            ["endpoint"],
            registry=r,
        )
        self.rate_limit_reset = Gauge(
            "warwatch_x_rate_limit_reset_timestamp_seconds",
            "When the current X rate-limit window resets (x-rate-limit-reset), per endpoint.",
            ["endpoint"],
            registry=r,
        )
        self.feed_stale = Gauge(
            "warwatch_feed_stale",
            "1 when a feed has had no new entry for longer than feeds.stale_after.",
            ["channel"],
            registry=r,
        )
        self.dead_letter_entries = Gauge(
            "warwatch_dead_letter_entries", "Entries in the dead stream (XLEN), read on the stats timer.", registry=r
        )
        self.redis_up = Gauge("warwatch_redis_up", "1 when the last Redis check answered.", registry=r)
        self.redis_memory_used = Gauge(
            "warwatch_redis_memory_used_bytes", "Redis used_memory (INFO memory).", registry=r
        )
        self.redis_maxmemory = Gauge("warwatch_redis_maxmemory_bytes", "Redis maxmemory (0 = no limit).", registry=r)
        self.redis_aof_enabled = Gauge(
            "warwatch_redis_aof_enabled", "1 when Redis writes an append-only file (INFO persistence).", registry=r
        )
        self.redis_aof_last_write_ok = Gauge(
            "warwatch_redis_aof_last_write_ok", "1 when the last AOF write succeeded (aof_last_write_status).",
            registry=r,
        )  # fmt: skip
        self.redis_aof_last_rewrite_ok = Gauge(
            "warwatch_redis_aof_last_rewrite_ok",
            "1 when the last AOF rewrite succeeded (aof_last_bgrewrite_status).",
            registry=r,
        )
        self.rules_loaded = Gauge("warwatch_rules_loaded", "Alert rules currently compiled.", registry=r)
        self.rules_reloads = Counter(
            "warwatch_rules_reloads_total",
            "Rule reloads (SIGHUP or a changed file), by outcome.",
            ["status"],
            registry=r,
        )
        self.rules_reload_success = Gauge(
            "warwatch_rules_last_reload_success",
            "1 when the last rule reload was applied, 0 when rejected.",
            registry=r,
        )

    def prime_pipeline(self, stages: Sequence[str], streams: Sequence[str], sinks: Sequence[str]) -> None:
        """Create the pipeline's event series at zero, so the first event shows in ``rate()``/``increase()``.

        A series that appears already at 1 has no earlier sample, and Prometheus cannot see that jump.
        """
        for stage in [*stages, *(f"notify:{sink}" for sink in sinks)]:
            self.dead_letters.labels(stage)
        for stage in stages:
            self.failures.labels(stage)
            self.reclaimed.labels(stage)
            self.duplicates.labels(stage)
        for stream in streams:
            self.trimmed.labels(stream)
            self.trim_lost.labels(stream)
        for sink in ["console", *sinks]:
            for status in ("sent", "failed", "dead", "rate_limited"):
                self.notifications.labels(sink, status)
        for sink in sinks:
            for kind in ("single", "digest"):
                self.notification_messages.labels(sink, kind)
        for status in ("ok", "failed"):
            self.rules_reloads.labels(status)
        self.rules_reload_success.set(1)  # the rules loaded at start are the last successful load

    def render(self) -> bytes:
        """The exposition text for /metrics."""
        return generate_latest(self.registry)


ReadyCheck = Callable[[], Awaitable[tuple[bool, str]]]


def metrics_app(metrics: Metrics, ready: ReadyCheck) -> web.Application:
    """The aiohttp app for /metrics, /livez and /readyz."""

    async def metrics_handler(_: web.Request) -> web.Response:
        return web.Response(body=metrics.render(), headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def livez(_: web.Request) -> web.Response:
        return web.Response(text="ok\n")

    async def readyz(_: web.Request) -> web.Response:
        ok, reason = await ready()
        return web.Response(text=f"{reason}\n", status=200 if ok else 503)

    app = web.Application()
    app.router.add_get("/metrics", metrics_handler)
    app.router.add_get("/livez", livez)
    app.router.add_get("/readyz", readyz)
    return app
