"""Turns an Item into Alerts: runs the compiled rules and builds each alert's id, terms and snippet.

The alert id is a hash of the rule name and the item id (or, for ``per: cluster`` rules, the story
cluster id), so replays, redeliveries and several alerters never produce two alerts for one rule and
one item (or one story).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Hashable, Sequence
from typing import TypeVar

import msgspec

from monitor.alerting.common_words import common_words
from monitor.alerting.entities import EntityConditions, PlaceIndex, rule_scope_admits
from monitor.alerting.matcher import CompiledRules, Hit
from monitor.config import Rule
from monitor.schema import Alert, Entities, Item, MatchedTerm, Person, Place, Quantity, Unit, short_hash, utcnow

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


def entity_summary(entities: Entities) -> Entities | None:
    """What an alert carries of its item's entities: each place, unit and person once (the first mention;
    a place without the other places its name could mean) and each distinct claim; None when empty."""
    if not (entities.places or entities.units or entities.people or entities.quantities):
        return None
    places = _first_of_each(entities.places, lambda place: place.id or place.name)
    return Entities(
        places=[msgspec.structs.replace(p, candidates=[]) if p.candidates else p for p in places],
        units=_first_of_each(entities.units, lambda unit: unit.id),
        people=_first_of_each(entities.people, lambda person: person.id),
        quantities=_first_of_each(entities.quantities, lambda claim: (claim.kind, claim.value, claim.unit)),
    )


_Entity = TypeVar("_Entity", Place, Unit, Person, Quantity)


def _first_of_each(entities: Sequence[_Entity], key: Callable[[_Entity], Hashable]) -> list[_Entity]:
    """The earliest mention (by span) of each distinct ``key``, in text order."""
    first: dict[Hashable, _Entity] = {}
    for entity in sorted(entities, key=lambda found: found.start):
        first.setdefault(key(entity), entity)
    return list(first.values())


class AlertEngine:
    """The rule set compiled once, applied to items.

    Term rules go through the compiled automaton; entity conditions (places, units, people,
    within_km) are checked against ``Item.entities`` for the rules that have them, after the terms.
    """

    def __init__(self, rules: Sequence[Rule], *, places: PlaceIndex | None = None) -> None:
        self.rules = list(rules)
        term_rules = [rule for rule in self.rules if rule.any or rule.all]
        self.compiled = CompiledRules(term_rules, common_words=common_words())
        self.rules_by_name = {rule.name: rule for rule in self.rules}
        self.entity_rules = [EntityConditions.build(rule, places) for rule in self.rules if rule.has_entity_conditions]

    @property
    def rule_count(self) -> int:
        return len(self.rules)

    def evaluate(self, item: Item) -> list[Alert]:
        """The alerts ``item`` raises (none for a delete event)."""
        if item.event == "delete":
            return []
        matches = self.compiled.match(item.text, source=item.source, channel=item.channel, lang=item.lang)
        found: dict[str, list[MatchedTerm]] = {
            match.rule.name: [_matched(h) for h in match.hits[:MAX_MATCHED]] for match in matches
        }
        for conditions in self.entity_rules:
            rule = conditions.rule
            if (rule.any or rule.all) and rule.name not in found:
                continue
            if not (rule.any or rule.all) and not rule_scope_admits(rule, item):
                continue
            entity_hits = conditions.check(item)
            if entity_hits is None:
                found.pop(rule.name, None)
            else:
                found[rule.name] = sorted([*found.get(rule.name, []), *entity_hits], key=lambda m: m.start)
        if not found:
            return []
        fired_at = utcnow()
        summary = entity_summary(item.entities)
        alerts = []
        for name, matched in found.items():
            rule = self.rules_by_name[name]
            first = matched[0]
            subject = f"cluster:{item.cluster_id}" if rule.per == "cluster" and item.cluster_id else item.id
            alerts.append(
                Alert(
                    alert_id=alert_id_for(name, subject),
                    rule=name,
                    severity=rule.severity,
                    item_id=item.id,
                    fired_at=fired_at,
                    matched=matched,
                    snippet=snippet(item.text, first.start, first.end),
                    source=item.source,
                    channel=item.channel,
                    url=item.url,
                    title=item.title,
                    published_at=item.published_at,
                    lang=item.lang,
                    cluster_id=item.cluster_id,
                    entities=summary,
                )
            )
        return alerts
