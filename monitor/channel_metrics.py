"""Per-channel series exist from the start, so dashboards show zeros instead of gaps.

Prometheus has no series for a label set until it is first touched, so a channel that has not yet
produced an item (or an error) would be missing from every panel and from the silent-channel alert.
At start the daemon touches the per-channel counters of every configured channel and sets each one's
last-item time from what Redis remembers, or to the start time when Redis has never seen the channel
(a fresh channel gets the silence timeout as grace, not an instant "silent for 56 years").
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import msgspec
from redis.exceptions import RedisError

from monitor.bus.keys import Keys
from monitor.bus.redis import Redis
from monitor.config import Settings
from monitor.errors import MonitorError
from monitor.metrics import Metrics

# The error kinds every collector can meet, pre-created per channel.
COMMON_ERROR_KINDS = ("network", "http_5xx", "http_4xx", "rate_limited", "parse", "publish")


def configured_channels(settings: Settings) -> list[tuple[str, str]]:
    """``(source, channel)`` label pairs of every channel the enabled collectors will watch."""
    from monitor.collectors.telegram import normalize_reference  # noqa: PLC0415 - Telethon import only here
    from monitor.collectors.telegram_web import normalize_channel  # noqa: PLC0415
    from monitor.collectors.x import normalize_account  # noqa: PLC0415

    collectors = settings.collectors
    pairs: list[tuple[str, str]] = []
    if collectors.corpus.enabled:
        pairs += [("corpus", path.name if path.is_dir() else path.parent.name) for path in collectors.corpus.paths]
    if collectors.telegram_web.enabled is not False:
        pairs += [("telegram_web", normalize_channel(c)) for c in collectors.telegram_web.channels]
    telegram = collectors.telegram
    if telegram.enabled is not False and telegram.api_hash is not None and telegram.api_hash.get_secret_value():
        for reference in telegram.channels:
            try:
                pairs.append(("telegram", normalize_reference(str(reference))))
            except MonitorError:
                continue  # the collector reports it
    x = collectors.x
    if x.enabled is not False and x.bearer_token is not None and x.bearer_token.get_secret_value():
        pairs += [("x", normalize_account(a)) for a in x.accounts]
    if collectors.feeds.enabled is not False:
        pairs += [("feed", url) for url in collectors.feeds.urls]
    return list(dict.fromkeys(pair for pair in pairs if pair[1]))


async def prime_channel_metrics(
    metrics: Metrics, settings: Settings, redis: Redis, keys: Keys, started: float
) -> list[tuple[str, str]]:
    """Create the per-channel series of every configured channel; returns the pairs primed."""
    pairs = configured_channels(settings)
    remembered: dict[str, float] = {}
    try:
        records: Any = await redis.hgetall(keys.channel_last_seen)
    except (RedisError, OSError):
        records = {}
    for name, record in records.items():
        try:
            seen = msgspec.json.decode(record)
        except msgspec.DecodeError:
            continue
        moment = (seen.get("published_at") or seen.get("collected_at")) if isinstance(seen, dict) else None
        if isinstance(moment, str):
            try:
                remembered[name.decode() if isinstance(name, bytes) else name] = _epoch(moment)
            except ValueError:
                continue
    for source in dict.fromkeys(source for source, _ in pairs):
        metrics.collector_rejected.labels(source)
    for source, channel in pairs:
        metrics.collected.labels(source, channel)
        metrics.items_normalized.labels(source, channel)
        metrics.items_alerted.labels(source, channel)
        if source == "corpus":  # files: no network, no reconnects; only unreadable files, counted as rejected
            continue
        metrics.collector_reconnects.labels(source, channel)
        for kind in COMMON_ERROR_KINDS:
            metrics.collector_errors.labels(source, channel, kind)
        metrics.flood_wait.labels(source, channel)
        metrics.collector_backoff.labels(source, channel)
        metrics.collector_last_item.labels(source, channel).set(remembered.get(f"{source}:{channel}", started))
    return pairs


def _epoch(moment: str) -> float:
    return datetime.fromisoformat(moment.replace("Z", "+00:00")).timestamp()
