"""Windowed rules, kept in Redis so that several alerter processes agree.

* ``frequency``: at least ``num_events`` matching items within ``timeframe``, per ``group_by`` key.
  Each matching item is added to a sorted set scored by its time (``published_at``, else
  ``collected_at``), so a redelivered item is not counted twice and replays count the same way. The
  alert id hashes the rule, the key and the window (``timeframe``-long buckets), so several alerters,
  replays and redeliveries raise one alert per window.
* ``spike``: matching items in the last ``timeframe`` at least ``spike_ratio`` times those in the
  ``timeframe`` before it, and at least ``num_events``; ids per window as for ``frequency``.
* ``flatline``: a key (channel, source, or the whole rule) that matched before and has been silent
  for ``timeframe``. Matches record the last item per key; a timer in the daemon raises the alert,
  once per silence (the id hashes the time of the last match).
* ``first_seen``: the first time a term appears, per ``group_by`` key. The term is recorded as seen
  in the same pipeline that writes the alert, so a crash in between re-raises the (same-id) alert
  rather than losing it.
* ``realert``: after an alert, the rule and key stay quiet for this long. The cooldown is written
  with the alert, for the same reason.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from redis.asyncio.client import Pipeline

from monitor.alerting.matcher import fold_term
from monitor.bus.keys import Keys
from monitor.bus.redis import Redis
from monitor.config import Rule
from monitor.schema import Alert, Item, short_hash, utcnow


def group_key(rule: Rule, item: Item) -> str:
    """The value of the rule's ``group_by`` for an item."""
    if rule.group_by == "source":
        return item.source
    if rule.group_by == "channel":
        return f"{item.source}:{item.channel}"
    return "all"


def item_time(item: Item) -> float:
    return (item.published_at or item.collected_at).timestamp()


@dataclass(slots=True)
class Decision:
    """A windowed alert to emit, and the writes that must go out with it."""

    alert: Alert
    writes: list[Callable[[Pipeline], None]] = field(default_factory=list)


class Windows:
    """Decides which matches of windowed rules become alerts."""

    def __init__(self, redis: Redis, keys: Keys) -> None:
        self.redis = redis
        self.keys = keys

    async def decide(self, pending: Sequence[tuple[Item, Alert, Rule]]) -> list[Decision | None]:
        """One decision (or None: no alert) per pending match, with two pipelined round trips."""
        if not pending:
            return []
        pipe = self.redis.pipeline(transaction=False)
        plans: list[tuple[str, int, Any]] = []
        for item, alert, rule in pending:
            group = group_key(rule, item)
            if rule.type in ("frequency", "spike"):
                key = self.keys.window(rule.name, group)
                now = item_time(item)
                keep = rule.timeframe * (2 if rule.type == "spike" else 1)
                start = len(pipe)
                pipe.zadd(key, {item.id: now})
                pipe.zremrangebyscore(key, "-inf", now - keep)
                pipe.zcount(key, now - rule.timeframe, now)
                pipe.zcount(key, now - 2 * rule.timeframe, f"({now - rule.timeframe}")
                pipe.expire(key, int(keep) + 60)
                plans.append((rule.type, start + 2, None))
            elif rule.type == "flatline":
                # Each match just records when the key last matched; the timer in ``flatline_alerts`` alerts.
                record = json.dumps({"at": item_time(item), "item_id": item.id, "source": item.source,
                                 "channel": item.channel, "url": item.url})  # fmt: skip
                pipe.hset(self.keys.last_match(rule.name), group, record)
                plans.append(("flatline", len(pipe), None))
            else:
                terms = sorted({fold_term(m.term) for m in alert.matched})
                start = len(pipe)
                for term in terms:
                    pipe.sismember(self.keys.first_seen(rule.name, group), term)
                plans.append(("first_seen", start, terms))
            pipe.get(self.keys.cooldown(rule.name, group))
        replies = await pipe.execute()
        decisions: list[Decision | None] = []
        position = 0
        for (item, alert, rule), (kind, at, terms) in zip(pending, plans, strict=True):
            group = group_key(rule, item)
            decision: Decision | None = None
            if kind == "flatline":
                position = at
            elif kind == "spike":
                count, reference = int(replies[at]), int(replies[at + 1])
                position = at + 3
                if count >= rule.num_events and count >= rule.spike_ratio * max(reference, 1):
                    window = int(item_time(item) // max(rule.timeframe, 1))
                    alert.alert_id = short_hash(f"{rule.name}\x1f{group}\x1f{window}")
                    alert.snippet = (
                        f"spike: {count} matching items in the last {rule.timeframe:g} s against {reference} "
                        f"before: {alert.snippet}"
                    )
                    decision = Decision(alert)
            elif kind == "frequency":
                count = int(replies[at])
                position = at + 3
                if count >= rule.num_events:
                    window = int(item_time(item) // max(rule.timeframe, 1))
                    alert.alert_id = short_hash(f"{rule.name}\x1f{group}\x1f{window}")
                    alert.snippet = f"{count} matching items within {rule.timeframe:g} s: {alert.snippet}"
                    decision = Decision(alert)
            else:
                seen = replies[at : at + len(terms)]
                position = at + len(terms)
                new = [term for term, flag in zip(terms, seen, strict=True) if not flag]
                if new:
                    alert.alert_id = short_hash(f"{rule.name}\x1f{group}\x1f{new[0]}")
                    key = self.keys.first_seen(rule.name, group)
                    decision = Decision(alert, [_sadd(key, new)])
            cooling = replies[position]
            if decision is not None and rule.realert > 0:
                if cooling is not None and cooling.decode() != decision.alert.alert_id:
                    decision = None  # still cooling down after another alert
                else:
                    decision.writes.append(_cooldown(self.keys.cooldown(rule.name, group), decision.alert, rule))
            decisions.append(decision)
        return decisions


async def flatline_alerts(redis: Redis, keys: Keys, rules: Sequence[Rule], now: float) -> list[Alert]:
    """Alerts for every ``flatline`` rule key whose last match is older than the rule's timeframe.

    The id hashes the rule, the key and the time of that last match, so one silence alerts once.
    """
    found: list[Alert] = []
    for rule in rules:
        if rule.type != "flatline":
            continue
        records: Any = await redis.hgetall(keys.last_match(rule.name))
        for group_raw, raw in records.items():
            group = group_raw.decode() if isinstance(group_raw, bytes) else str(group_raw)
            last = json.loads(raw)
            silent = now - float(last["at"])
            if silent < rule.timeframe:
                continue
            since = datetime.fromtimestamp(float(last["at"]), UTC)
            found.append(
                Alert(
                    alert_id=short_hash(f"{rule.name}\x1f{group}\x1flast:{last['at']}"),
                    rule=rule.name,
                    severity=rule.severity,
                    item_id=str(last["item_id"]),
                    fired_at=utcnow(),
                    matched=[],
                    snippet=f"no matching item for {silent:.0f} s (limit {rule.timeframe:g} s); "
                    f"the last was at {since.isoformat().replace('+00:00', 'Z')}",
                    source=last["source"],
                    channel=last["channel"],
                    url=last.get("url"),
                )
            )
    return found


def _sadd(key: str, members: list[str]) -> Callable[[Pipeline], None]:
    def queue(pipe: Pipeline) -> None:
        pipe.sadd(key, *members)

    return queue


def _cooldown(key: str, alert: Alert, rule: Rule) -> Callable[[Pipeline], None]:
    def queue(pipe: Pipeline) -> None:
        pipe.set(key, alert.alert_id, ex=max(1, int(rule.realert)), nx=True)

    return queue
