"""Turns an Item into Alerts: runs the compiled rules and builds each alert's id, terms and snippet.

The alert id is a hash of the rule name and the item id, so replays, redeliveries and several
alerters never produce two alerts for one rule and one item.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from monitor.alerting.matcher import CompiledRules, Hit
from monitor.config import Rule
from monitor.schema import Alert, Item, MatchedTerm, short_hash, utcnow

SNIPPET_CONTEXT = 100  # characters kept on each side of the first match
MAX_MATCHED = 100  # occurrences recorded per alert
_SPACES = re.compile(r"\s+")


def alert_id_for(rule_name: str, the_item_id: str) -> str:
    """Deterministic id of the alert a rule raises on an item."""
    return short_hash(f"{rule_name}\x1f{the_item_id}")


def snippet(text: str, start: int, end: int, context: int = SNIPPET_CONTEXT) -> str:
    """The text around ``text[start:end]`` on one line, cut at word boundaries, with ellipses."""
    left = max(0, start - context)
    right = min(len(text), end + context)
    if left > 0:
        space = text.find(" ", left, start)
        left = space + 1 if space != -1 else left
    if right < len(text):
        space = text.rfind(" ", end, right)
        right = space if space != -1 else right
    body = _SPACES.sub(" ", text[left:right]).strip()
    return ("…" if left > 0 else "") + body + ("…" if right < len(text) else "")


def _matched(hit: Hit) -> MatchedTerm:
    if hit.how == "as written":
        return MatchedTerm(term=hit.term, start=hit.start, end=hit.end)
    return MatchedTerm(term=hit.term, start=hit.start, end=hit.end, form=hit.form, via=hit.how)


class AlertEngine:
    """The rule set compiled once, applied to items."""

    def __init__(self, rules: Sequence[Rule]) -> None:
        self.compiled = CompiledRules(rules)
        self.rules_by_name = {rule.name: rule for rule in self.compiled.rules}

    @property
    def rule_count(self) -> int:
        return len(self.compiled.rules)

    def evaluate(self, item: Item) -> list[Alert]:
        """The alerts ``item`` raises (none for a delete event)."""
        if item.event == "delete":
            return []
        matches = self.compiled.match(item.text, source=item.source, channel=item.channel, lang=item.lang)
        if not matches:
            return []
        fired_at = utcnow()
        alerts = []
        for match in matches:
            hits: list[Hit] = match.hits[:MAX_MATCHED]
            first = hits[0]
            alerts.append(
                Alert(
                    alert_id=alert_id_for(match.rule.name, item.id),
                    rule=match.rule.name,
                    severity=match.rule.severity,
                    item_id=item.id,
                    fired_at=fired_at,
                    matched=[_matched(h) for h in hits],
                    snippet=snippet(item.text, first.start, first.end),
                    source=item.source,
                    channel=item.channel,
                    url=item.url,
                    title=item.title,
                    published_at=item.published_at,
                    lang=item.lang,
                )
            )
        return alerts
