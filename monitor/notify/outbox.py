"""The per-sink outbox in Redis: what each sink still has to receive, when, and after how many failures.

Each sink has a sorted set of alert ids scored by when they are due, with the alert JSON, the failure
count and (for rules with ``aggregate``) the digest key in hashes beside it. A dispatcher *claims* due
ids by pushing their score forward by a lease, sends, then records the outcome in one MULTI/EXEC:

- delivered: the ``delivered`` marker is set and the id leaves the outbox;
- failed: the failure count goes up and the id is due again after an exponential backoff, or, once
  ``max_attempts`` is reached, the alert moves to the dead stream with the error;
- rate limited: the id is due again when the sink's rate window ends (not counted as a failure).

Everything is in Redis, so several notifier processes share the work without sending twice, and a
restart resumes where it stopped. A process that dies between a send and its record leaves the id
claimed; when the lease runs out another dispatcher sends it again. That is the one case where a
message can arrive twice, and only once more per crash.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from typing import Any

from redis.asyncio.client import Pipeline
from redis.typing import EncodableT, FieldT

from monitor.bus.keys import GROUP_NOTIFIER, Keys
from monitor.bus.redis import Redis
from monitor.schema import SCHEMA_VERSION, utcnow

# Claim due ids: skip (and clean up) ids already delivered, push the rest's score to the lease end.
_CLAIM = """
local out = {}
local ids = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[3]))
for _, id in ipairs(ids) do
  local data = redis.call('HGET', KEYS[2], id)
  if data == false or redis.call('EXISTS', ARGV[4] .. id) == 1 then
    redis.call('ZREM', KEYS[1], id)
    redis.call('HDEL', KEYS[2], id)
    redis.call('HDEL', KEYS[3], id)
    redis.call('HDEL', KEYS[4], id)
  else
    redis.call('ZADD', KEYS[1], 'XX', ARGV[2], id)
    out[#out + 1] = {id, data, redis.call('HGET', KEYS[3], id) or '0', redis.call('HGET', KEYS[4], id) or ''}
  end
end
return out
"""

# Take up to ARGV[1] sends from the budget of ARGV[2] in this window's counter (which expires after
# ARGV[3] ms, once its window is long over). Returns the number granted.
_TAKE = """
local used = tonumber(redis.call('GET', KEYS[1]) or '0')
local grant = math.max(0, math.min(tonumber(ARGV[1]), tonumber(ARGV[2]) - used))
if grant > 0 then
  redis.call('INCRBY', KEYS[1], grant)
  redis.call('PEXPIRE', KEYS[1], ARGV[3])
end
return grant
"""


@dataclass(slots=True)
class Claimed:
    """One alert claimed for delivery to a sink."""

    alert_id: str
    data: bytes
    failures: int
    digest_key: str


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How often and how patiently a sink is retried."""

    max_attempts: int = 6
    backoff: float = 5.0
    backoff_max: float = 900.0

    def delay(self, failures: int) -> float:
        """Seconds before the next attempt after ``failures`` failures: doubling, capped, with 0-10% jitter."""
        base = min(self.backoff_max, self.backoff * 2 ** max(0, failures - 1))
        return base * (1.0 + random.random() * 0.1)


class Outbox:
    """One sink's outbox."""

    def __init__(self, redis: Redis, keys: Keys, sink: str, *, delivered_ttl: float) -> None:
        self.redis = redis
        self.keys = keys
        self.sink = sink
        self.zset = keys.outbox(sink)
        self.payload = keys.outbox_payload(sink)
        self.attempts = keys.outbox_attempts(sink)
        self.digest = keys.outbox_digest(sink)
        self.rate = keys.sink_rate(sink)
        self.delivered_ttl = max(1, int(delivered_ttl))
        self._delivered_prefix = keys.delivered(sink, "")
        self._claim = redis.register_script(_CLAIM)
        self._take = redis.register_script(_TAKE)

    def queue(self, pipe: Pipeline, alert_id: str, data: bytes, due: float, digest_key: str = "") -> None:
        """Queue (on ``pipe``) one alert for this sink; an alert already in the outbox keeps its schedule."""
        pipe.zadd(self.zset, {alert_id: due}, nx=True)
        pipe.hsetnx(self.payload, alert_id, data)
        if digest_key:
            pipe.hsetnx(self.digest, alert_id, digest_key)

    async def claim(self, now: float, lease: float, limit: int) -> list[Claimed]:
        """Up to ``limit`` due alerts, leased to this caller until ``now + lease``."""
        rows: Any = await self._claim(
            keys=[self.zset, self.payload, self.attempts, self.digest],
            args=[now, now + lease, limit, self._delivered_prefix],
        )
        return [
            Claimed(
                alert_id=_text(alert_id),
                data=data,
                failures=int(failures),
                digest_key=_text(digest_key),
            )
            for alert_id, data, failures, digest_key in rows
        ]

    async def take_budget(self, wanted: int, limit: int, window: float, now: float) -> tuple[int, float]:
        """Reserve up to ``wanted`` sends in the fixed window holding ``now``.

        Returns ``(granted, seconds until that window ends)``. Windows are numbered from the epoch, so
        every notifier process charges the same counter.
        """
        index = math.floor(now / window)
        granted = await self._take(keys=[f"{self.rate}:{index}"], args=[wanted, limit, max(1000, int(window * 2000))])
        return int(granted), (index + 1) * window - now

    async def delivered(self, claims: list[Claimed]) -> None:
        """Record a successful delivery: the marker is set and the alerts leave the outbox."""
        if not claims:
            return
        ids = [c.alert_id for c in claims]
        pipe = self.redis.pipeline(transaction=True)
        for alert_id in ids:
            pipe.set(self._delivered_prefix + alert_id, b"1", ex=self.delivered_ttl)
        self._forget(pipe, ids)
        await pipe.execute()

    async def failed(self, claims: list[Claimed], error: str, now: float, policy: RetryPolicy) -> list[Claimed]:
        """Record a failed attempt; returns the claims that ran out of attempts (now in the dead stream)."""
        if not claims:
            return []
        pipe = self.redis.pipeline(transaction=True)
        dead: list[Claimed] = []
        for claim in claims:
            failures = claim.failures + 1
            if failures >= policy.max_attempts:
                dead.append(claim)
                pipe.xadd(self.keys.dead, self._dead_fields(claim, error, failures))
            else:
                pipe.hset(self.attempts, claim.alert_id, failures)
                pipe.zadd(self.zset, {claim.alert_id: now + policy.delay(failures)}, xx=True)
        if dead:
            self._forget(pipe, [c.alert_id for c in dead])
        await pipe.execute()
        return dead

    async def postpone(self, claims: list[Claimed], due: float) -> None:
        """Give claimed alerts back, due at ``due`` (rate limited: not a failure)."""
        if claims:
            await self.redis.zadd(self.zset, {c.alert_id: due for c in claims}, xx=True)

    async def next_due(self) -> float | None:
        """When the earliest alert in the outbox is due (it may be leased), or None when it is empty."""
        first: Any = await self.redis.zrange(self.zset, 0, 0, withscores=True)
        return float(first[0][1]) if first else None

    async def size(self) -> int:
        """Alerts waiting for this sink (due, leased, backing off or held for a digest)."""
        return int(await self.redis.zcard(self.zset))

    async def due(self, now: float) -> int:
        """Alerts due now (not leased, not backing off, not held for a later digest)."""
        return int(await self.redis.zcount(self.zset, "-inf", now))

    def _forget(self, pipe: Pipeline, ids: list[str]) -> None:
        pipe.zrem(self.zset, *ids)
        pipe.hdel(self.payload, *ids)
        pipe.hdel(self.attempts, *ids)
        pipe.hdel(self.digest, *ids)

    def _dead_fields(self, claim: Claimed, error: str, failures: int) -> dict[FieldT, EncodableT]:
        """A dead letter like the stream workers write: ``dead retry`` re-adds it to the alerts stream,
        and the notifier then re-sends it to the sinks that have not had it, this one."""
        return {
            "stream": self.keys.alerts,
            "group": GROUP_NOTIFIER,
            "stage": f"notify:{self.sink}",
            "entry_id": claim.alert_id,
            "error": error[:2000],
            "deliveries": failures,
            "failed_at": utcnow().isoformat().replace("+00:00", "Z"),
            "sink": self.sink,
            "v": SCHEMA_VERSION,
            "data": claim.data,
        }


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
