"""The idempotent publisher: an entry is added to a stream at most once per idempotency key.

``SET key NX EX ttl`` and ``XADD`` run in one Lua script, so they are atomic: there is no window in
which the key is set but the entry was never added (which would lose the item), nor one in which the
entry is added twice (which would double it). Collectors use ``publish_raw``; stage workers queue the
same script on their pipelines with ``queue_once``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from redis.asyncio.client import Pipeline
from redis.commands.core import AsyncScript

from monitor.bus.keys import Keys
from monitor.bus.redis import Redis
from monitor.schema import SCHEMA_VERSION, RawItem, dedup_key, encode, item_id

# KEYS[1] idempotency key, KEYS[2] stream; ARGV[1] ttl seconds, then field/value pairs.
_PUBLISH_ONCE = """
if redis.call('SET', KEYS[1], '1', 'NX', 'EX', ARGV[1]) then
  return redis.call('XADD', KEYS[2], '*', unpack(ARGV, 2))
end
return false
"""

# The same for many model entries in one call (one round trip and one script run for a batch). Every
# entry has the contract's two fields, v and data, so only the data travels per entry.
# KEYS: once key and stream per entry; ARGV[1] ttl, ARGV[2] schema version, then one data per entry.
_PUBLISH_MANY = """
local ttl = ARGV[1]
local version = ARGV[2]
local out = {}
for i = 1, #KEYS, 2 do
  if redis.call('SET', KEYS[i], '1', 'NX', 'EX', ttl) then
    out[#out + 1] = redis.call('XADD', KEYS[i + 1], '*', 'v', version, 'data', ARGV[2 + (i + 1) / 2])
  else
    out[#out + 1] = false
  end
end
return out
"""

# SET key 1 EX ttl for every key (delivery records), in one call.
_MARK_MANY = """
for i = 1, #KEYS do
  redis.call('SET', KEYS[i], '1', 'EX', ARGV[1])
end
return #KEYS
"""


class Publisher:
    """Writes entries exactly once per idempotency key, pipelined in batches."""

    def __init__(self, redis: Redis, keys: Keys, dedup_ttl: float) -> None:
        self.redis = redis
        self.keys = keys
        self.ttl = max(1, int(dedup_ttl))
        self._script: AsyncScript = redis.register_script(_PUBLISH_ONCE)
        self._many: AsyncScript = redis.register_script(_PUBLISH_MANY)
        self._mark: AsyncScript = redis.register_script(_MARK_MANY)

    def queue_once(self, pipe: Pipeline, once_key: str, stream: str, fields: Mapping[str, Any]) -> None:
        """Queue an add-once of ``fields`` to ``stream`` on ``pipe``; it returns the id or None."""
        args: list[Any] = [self.ttl]
        for name, value in fields.items():
            args.append(name)
            args.append(value)
        pipe.scripts.add(self._script)  # type: ignore[arg-type] # redis-py types it for sync Script only
        pipe.evalsha(self._script.sha, 2, once_key, stream, *args)

    def queue_many(self, pipe: Pipeline, entries: Sequence[tuple[str, str, bytes]]) -> None:
        """Queue add-once writes of ``(once_key, stream, data)`` entries as one script call on ``pipe``.

        Each entry gets the fields ``v`` (the schema version) and ``data``. The call's reply is a list
        with the new entry id, or None for a key already set, per entry.
        """
        keys: list[str] = []
        data: list[bytes] = []
        for once_key, stream, payload in entries:
            keys.append(once_key)
            keys.append(stream)
            data.append(payload)
        pipe.scripts.add(self._many)  # type: ignore[arg-type] # redis-py types it for sync Script only
        pipe.evalsha(self._many.sha, len(keys), *keys, self.ttl, SCHEMA_VERSION, *data)

    def queue_marks(self, pipe: Pipeline, keys: Sequence[str]) -> None:
        """Queue ``SET key 1 EX ttl`` for every key as one script call on ``pipe``."""
        pipe.scripts.add(self._mark)  # type: ignore[arg-type] # redis-py types it for sync Script only
        pipe.evalsha(self._mark.sha, len(keys), *keys, self.ttl)

    async def publish_raw(self, items: Sequence[RawItem]) -> list[str | None]:
        """Add RawItems to the raw stream; return each entry id, or None for an item already seen.

        Returns only after Redis has accepted every entry, so a collector may then move its checkpoint.
        """
        if not items:
            return []
        pipe = self.redis.pipeline(transaction=False)
        self.queue_many(
            pipe, [(self.keys.seen(dedup_key(raw, item_id(raw))), self.keys.raw, encode(raw)) for raw in items]
        )
        [results] = await pipe.execute()
        return [r.decode() if isinstance(r, bytes) else None for r in results]
