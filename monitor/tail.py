"""``monitor tail``: follow the alerts or items stream live in the terminal, for people without Grafana.

It reads with plain XREAD (no consumer group), so watching never takes entries away from the
pipeline and never acknowledges anything. It can first show the last N entries, then blocks for new
ones; filters apply to both.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from rich.console import Console
from rich.markup import escape

from monitor.bus.keys import Keys
from monitor.bus.redis import Redis
from monitor.notify.console import render_line
from monitor.schema import Alert, Item, WireError, decode_entry, encode

StreamKind = Literal["alerts", "items"]


@dataclass(slots=True)
class TailFilter:
    """Which entries to show: empty lists mean every one."""

    rules: Sequence[str] = field(default_factory=tuple)
    sources: Sequence[str] = field(default_factory=tuple)
    channels: Sequence[str] = field(default_factory=tuple)

    def accepts(self, entry: Alert | Item) -> bool:
        if self.sources and entry.source not in self.sources:
            return False
        if self.channels and entry.channel.lower() not in {c.lower() for c in self.channels}:
            return False
        if self.rules:
            return isinstance(entry, Alert) and entry.rule in self.rules
        return True


def render_item(item: Item) -> str:
    """Rich markup for one item: time, source/channel, language, title or text start, places, story, link."""
    when = (item.published_at or item.collected_at).strftime("%H:%M:%S")
    text = " ".join((item.title or item.text).split())
    if len(text) > 160:
        text = text[:159] + "…"
    parts = [
        f"[dim]{when}[/dim]",
        f"[cyan]{escape(item.source)}/{escape(item.channel)}[/cyan]",
        f"[dim]{escape(item.lang or '??')}[/dim]",
        escape(text),
    ]
    places = list(dict.fromkeys(place.name for place in item.entities.places))
    if places:
        parts.append(f"[green]@ {escape(', '.join(places))}[/green]")
    if item.cluster_id:
        parts.append(f"[dim]story {escape(item.cluster_id)}[/dim]")
    if item.url:
        parts.append(f"[link={escape(item.url)}]{escape(item.url)}[/link]")
    return " ".join(parts)


async def follow(
    redis: Redis,
    keys: Keys,
    kind: StreamKind,
    show: Callable[[Alert | Item], None],
    *,
    only: TailFilter | None = None,
    last: int = 10,
    stop: asyncio.Event | None = None,
    block_ms: int = 1000,
) -> int:
    """Show the last ``last`` matching entries, then new ones until ``stop``; returns how many were shown."""
    stream = keys.alerts if kind == "alerts" else keys.items
    model: type[Alert] | type[Item] = Alert if kind == "alerts" else Item
    only = only or TailFilter()
    stop = stop or asyncio.Event()
    shown = 0
    cursor = "$"
    if last > 0:
        # Newest first, a page at a time, until enough entries pass the filter (or the stream ends).
        backlog: list[Alert | Item] = []
        newest: Any = await redis.xrevrange(stream, count=1)
        cursor = newest[0][0].decode() if newest else "0-0"
        upper = "+"
        while len(backlog) < last:
            page: Any = await redis.xrevrange(stream, max=upper, count=200)
            if not page:
                break
            for _, fields in page:
                entry = _decode(model, fields)
                if entry is not None and only.accepts(entry):
                    backlog.append(entry)
            upper = "(" + page[-1][0].decode()
        for entry in reversed(backlog[:last]):
            show(entry)
            shown += 1
    if cursor == "$":
        newest = await redis.xrevrange(stream, count=1)
        cursor = newest[0][0].decode() if newest else "0-0"
    while not stop.is_set():
        response: Any = await redis.xread({stream: cursor}, count=200, block=block_ms)
        for _, entries in response or []:
            for entry_id, fields in entries:
                cursor = entry_id.decode()
                entry = _decode(model, fields)
                if entry is not None and only.accepts(entry):
                    show(entry)
                    shown += 1
    return shown


def _decode(model: type[Alert] | type[Item], fields: dict[bytes, bytes]) -> Alert | Item | None:
    try:
        return decode_entry(Alert, fields) if model is Alert else decode_entry(Item, fields)
    except WireError:
        return None


def printer(console: Console, *, as_json: bool = False) -> Callable[[Alert | Item], None]:
    """How ``monitor tail`` shows an entry: a rich line, or one JSON object per line."""

    def show(entry: Alert | Item) -> None:
        if as_json:
            console.out(encode(entry).decode(), highlight=False)
        elif isinstance(entry, Alert):
            console.print(render_line(entry))
        else:
            console.print(render_item(entry))

    return show
