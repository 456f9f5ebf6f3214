"""Which sinks an alert goes to: per rule and per severity, with a default route.

Every route whose rules (empty = any rule) and minimum severity match the alert adds its sinks; an alert
that no route matches goes to ``default_sinks``, or to every sink when that is unset.
"""

from __future__ import annotations

from dataclasses import dataclass

from monitor.config import NotifySettings
from monitor.notify.templates import SEVERITY_RANK
from monitor.schema import Alert


@dataclass(frozen=True, slots=True)
class _Route:
    rules: frozenset[str]
    min_rank: int
    sinks: tuple[str, ...]


class Router:
    """Maps an alert to the names of the sinks it must reach, in config order."""

    def __init__(self, notify: NotifySettings) -> None:
        self.sink_names = [sink.name for sink in notify.sinks]
        self._routes = [
            _Route(frozenset(route.rules), SEVERITY_RANK[route.min_severity], tuple(route.sinks))
            for route in notify.routes
        ]
        self._default = tuple(notify.default_sinks) if notify.default_sinks is not None else tuple(self.sink_names)

    def sinks_for(self, alert: Alert) -> list[str]:
        """The sinks for ``alert``: the union of every matching route's, else the default route's."""
        rank = SEVERITY_RANK.get(alert.severity, 0)
        chosen: dict[str, None] = {}
        for route in self._routes:
            if (not route.rules or alert.rule in route.rules) and rank >= route.min_rank:
                chosen.update(dict.fromkeys(route.sinks))
        if not chosen:
            return list(self._default)
        order = {name: index for index, name in enumerate(self.sink_names)}
        return sorted(chosen, key=order.__getitem__)
