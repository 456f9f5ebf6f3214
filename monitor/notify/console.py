"""The console sink: one readable rich line per alert on a TTY, one JSON object per line otherwise."""

from __future__ import annotations

import sys
from typing import Literal, TextIO

from rich.console import Console
from rich.markup import escape

from monitor.schema import Alert, encode

_SEVERITY_STYLE = {
    "info": "dim",
    "low": "cyan",
    "medium": "yellow",
    "high": "bold red",
    "critical": "bold white on red",
}


class ConsoleSink:
    """Writes alerts to stdout (logs go to stderr, so the two never mix)."""

    name = "console"

    def __init__(self, fmt: Literal["auto", "rich", "json"] = "auto", stream: TextIO | None = None) -> None:
        self.stream = stream or sys.stdout
        self.rich = fmt == "rich" or (fmt == "auto" and self.stream.isatty())
        self._console = Console(file=self.stream, highlight=False, soft_wrap=True) if self.rich else None

    async def send(self, alert: Alert) -> None:
        """Print one alert."""
        if self._console is not None:
            self._console.print(render_line(alert))
        else:
            self.stream.write(encode(alert).decode() + "\n")
            self.stream.flush()


def render_line(alert: Alert) -> str:
    """Rich markup for one alert: time, severity, rule, source/channel, matched terms, snippet, places, link."""
    style = _SEVERITY_STYLE.get(alert.severity, "")
    when = alert.fired_at.strftime("%H:%M:%S")
    terms = ", ".join(sorted({m.term for m in alert.matched}))
    parts = [
        f"[dim]{when}[/dim]",
        f"[{style}]{alert.severity.upper():8}[/{style}]",
        f"[bold]{escape(alert.rule)}[/bold]",
        f"[dim]{escape(alert.source)}/{escape(alert.channel)}[/dim]",
        f"[magenta]{escape(terms)}[/magenta]",
    ]
    if alert.title and not alert.snippet.lstrip("…").startswith(alert.title[:40]):
        parts.append(f"[bold]{escape(alert.title[:120])}[/bold] -")
    parts.append(escape(alert.snippet))
    if alert.entities is not None and alert.entities.places:
        where = ", ".join(dict.fromkeys(place.name for place in alert.entities.places))
        parts.append(f"[cyan]@ {escape(where)}[/cyan]")
    if alert.url:
        parts.append(f"[link={escape(alert.url)}]{escape(alert.url)}[/link]")
    return " ".join(parts)


def explain_lines(alert: Alert, text: str | None = None) -> list[str]:
    """For ``monitor match``: each distinct way the alert's terms matched: the text, the form, the folding."""
    lines = []
    seen: set[tuple[str, str, str | None]] = set()
    for match in alert.matched:
        surface = text[match.start : match.end] if text is not None else ""
        key = (match.term, surface, match.via)
        if key in seen:
            continue
        seen.add(key)
        how = f"{match.via}, form {match.form!r}" if match.via else "as written"
        folded = " ".join(surface.split()).casefold()
        if surface and folded != (match.form or match.term).casefold() and not match.via:
            how += ", after folding (case, homoglyphs, spacing, invisible characters)"
        lines.append(f"  term {match.term!r} matched {surface!r} ({how})")
    return lines
