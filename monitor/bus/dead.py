"""The dead-letter stream for operators: list what failed and why, and send entries back to be retried.

An entry in ``{prefix}:dead`` keeps the failing entry's ``v`` and ``data``, the stream and group it came
from, its id there, the error and the number of deliveries. Retrying adds ``v``/``data`` to the original
stream as a new entry (so its group reads it again) and deletes it from the dead stream, in one
MULTI/EXEC per entry so that an entry is never both retried and kept, or lost.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from monitor.bus.keys import Keys
from monitor.bus.redis import Redis


@dataclass(slots=True)
class DeadEntry:
    """One dead letter."""

    id: str
    stream: str
    group: str
    stage: str
    entry_id: str
    error: str
    deliveries: int
    failed_at: str
    data: str

    def to_dict(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self.__slots__}


def _text(fields: dict[bytes, bytes], name: str) -> str:
    value = fields.get(name.encode())
    return value.decode("utf-8", "replace") if value is not None else ""


def _entry(entry_id: bytes, fields: dict[bytes, bytes]) -> DeadEntry:
    deliveries = _text(fields, "deliveries")
    return DeadEntry(
        id=entry_id.decode(),
        stream=_text(fields, "stream"),
        group=_text(fields, "group"),
        stage=_text(fields, "stage"),
        entry_id=_text(fields, "entry_id"),
        error=_text(fields, "error"),
        deliveries=int(deliveries) if deliveries.isdigit() else 0,
        failed_at=_text(fields, "failed_at"),
        data=_text(fields, "data"),
    )


async def list_dead(redis: Redis, keys: Keys, *, limit: int = 100) -> list[DeadEntry]:
    """The oldest ``limit`` dead letters."""
    rows: Any = await redis.xrange(keys.dead, count=limit)  # [(id, fields)] with bytes, untyped in redis-py
    return [_entry(entry_id, fields) for entry_id, fields in rows]


async def retry_dead(redis: Redis, keys: Keys, ids: Sequence[str] | None = None) -> list[str]:
    """Send dead letters (all, or those with ``ids``) back to their streams; returns the ids retried.

    Only entries that came from one of this prefix's pipeline streams are retried.
    """
    allowed = set(keys.stream_groups())
    wanted = set(ids) if ids else None
    retried: list[str] = []
    start = "-"
    while True:
        chunk: Any = await redis.xrange(keys.dead, min=start, max="+", count=500)
        if not chunk:
            break
        for entry_id, fields in chunk:
            entry = _entry(entry_id, fields)
            if wanted is not None and entry.id not in wanted:
                continue
            if entry.stream not in allowed or b"data" not in fields or b"v" not in fields:
                continue
            async with redis.pipeline(transaction=True) as tx:
                tx.xadd(entry.stream, {"v": fields[b"v"], "data": fields[b"data"]})
                tx.xdel(keys.dead, entry_id)
                await tx.execute()
            retried.append(entry.id)
        start = "(" + chunk[-1][0].decode()
    return retried
