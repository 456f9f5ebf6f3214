"""Entity conditions of rules: places, units and people named in the item, and places within a radius.

A rule's ``places`` are gazetteer names or ids, resolved once when the rules are compiled (``bakhmut``,
``Бахмут``, ``geonames:712451`` are the same place). An item satisfies ``places`` when one of its
places is, or (for an ambiguous name) could be, one of them; ``units`` and ``people`` compare ids (a
unit id may leave out the country prefix: ``3-assault-brigade`` = ``ua-3-assault-brigade``);
``within_km`` needs a geotagged place within the radius of its centre. Each condition that holds adds
matched terms (the selector as written, the span of the entity, and how it matched) to the alert.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

from monitor.config import Rule
from monitor.enrich.geo import haversine_km
from monitor.errors import ConfigError
from monitor.schema import Item, MatchedTerm


class GazetteerEntry(Protocol):
    """What rule compilation needs to know of a gazetteer place (read-only: the entries are frozen)."""

    @property
    def id(self) -> str: ...
    @property
    def lat(self) -> float: ...
    @property
    def lon(self) -> float: ...


class PlaceIndex(Protocol):
    """Resolves a place name or id to gazetteer entries (most likely first)."""

    def lookup(self, name_or_id: str) -> Sequence[GazetteerEntry]: ...


def rule_scope_admits(rule: Rule, item: Item) -> bool:
    """The rule's source, channel and language filters (for rules the automaton does not run)."""
    if rule.sources and item.source not in rule.sources:
        return False
    if rule.channels and item.channel.lower() not in {c.lower() for c in rule.channels}:
        return False
    return not (rule.langs and item.lang not in rule.langs)


def _slug(text: str) -> str:
    return "-".join(text.strip().lower().replace("_", "-").split())


def _default_places() -> PlaceIndex:
    from monitor.enrich.places import PlaceExtractor  # noqa: PLC0415 - the gazetteer loads only when rules need it

    return PlaceExtractor.load()


@dataclass(slots=True)
class EntityConditions:
    """One rule's entity conditions, with its place selectors resolved to gazetteer ids."""

    rule: Rule
    place_ids: dict[str, str] = field(default_factory=dict)  # gazetteer id -> the selector as written
    centre: tuple[float, float] | None = None

    @classmethod
    def build(cls, rule: Rule, places: PlaceIndex | None = None) -> EntityConditions:
        """Resolve the rule's place selectors; a name the gazetteer does not know is a ConfigError."""
        conditions = cls(rule)
        if not (rule.places or rule.within_km):
            return conditions
        index = places if places is not None else _default_places()
        problems: list[tuple[str, str]] = []
        for selector in rule.places:
            entries = index.lookup(selector)
            if not entries:
                problems.append((f"rules[{rule.name}].places", f"no place named {selector!r} in the gazetteer"))
            for entry in entries:
                conditions.place_ids.setdefault(entry.id, selector)
        if rule.within_km is not None:
            entries = index.lookup(rule.within_km.of)
            if not entries:
                problems.append(
                    (f"rules[{rule.name}].within_km.of", f"no place named {rule.within_km.of!r} in the gazetteer")
                )
            else:
                conditions.centre = (entries[0].lat, entries[0].lon)
        if problems:
            raise ConfigError(problems, "rules")
        return conditions

    def check(self, item: Item) -> list[MatchedTerm] | None:
        """The matched terms when every entity condition holds, else None."""
        rule = self.rule
        entities = item.entities
        hits: list[MatchedTerm] = []
        if rule.places:
            found = []
            for place in entities.places:
                ids = [place.id, *(c.id for c in place.candidates)]
                selector = next((self.place_ids[i] for i in ids if i in self.place_ids), None)
                if selector is not None:
                    found.append(
                        MatchedTerm(term=selector, start=place.start, end=place.end, form=place.name, via="place")
                    )
            if not found:
                return None
            hits += found
        if rule.units:
            wanted = {_slug(u) for u in rule.units}
            found = [
                MatchedTerm(term=unit.id, start=unit.start, end=unit.end, form=unit.name, via="unit")
                for unit in entities.units
                if unit.id in wanted or unit.id.split("-", 1)[-1] in wanted
            ]
            if not found:
                return None
            hits += found
        if rule.people:
            wanted = {_slug(p) for p in rule.people}
            found = [
                MatchedTerm(term=person.id, start=person.start, end=person.end, form=person.name, via="person")
                for person in entities.people
                if person.id in wanted
            ]
            if not found:
                return None
            hits += found
        if rule.within_km is not None and self.centre is not None:
            lat, lon = self.centre
            how = f"within {rule.within_km.km:g} km of {rule.within_km.of}"
            found = [
                MatchedTerm(term=rule.within_km.of, start=place.start, end=place.end, form=place.name, via=how)
                for place in entities.places
                if place.lat is not None
                and place.lon is not None
                and haversine_km(lat, lon, place.lat, place.lon) <= rule.within_km.km
            ]
            if not found:
                return None
            hits += found
        return hits
