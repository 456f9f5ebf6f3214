"""Rules on entities: places (resolved through the gazetteer), units, people, within_km, and per: cluster."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import ClassVar

import pytest

from monitor.alerting.engine import AlertEngine
from monitor.config import Rule
from monitor.errors import ConfigError
from monitor.schema import Entities, Item, Person, Place, PlaceCandidate, Unit


@dataclass(frozen=True)
class Entry:
    id: str
    lat: float
    lon: float


class SmallGazetteer:
    """Three real places, looked up by name or id, as the full gazetteer's ``lookup`` does."""

    ENTRIES: ClassVar[dict[str, Entry]] = {
        "bakhmut": Entry("geonames:712451", 48.5947, 37.9999),
        "soledar": Entry("geonames:693468", 48.6838, 38.0861),
        "lviv": Entry("geonames:702550", 49.8397, 24.0297),
    }

    def lookup(self, name_or_id: str) -> list[Entry]:
        key = name_or_id.lower()
        if key in self.ENTRIES:
            return [self.ENTRIES[key]]
        return [e for e in self.ENTRIES.values() if e.id == name_or_id]


def item(text: str, *, places: list[Place] = (), units: list[Unit] = (), people: list[Person] = (),  # type: ignore[assignment]
         cluster: str | None = None, number: int = 1) -> Item:  # fmt: skip
    return Item(
        id=f"telegram:1:{number}",
        source="telegram_web",
        channel="ab3army",
        external_id=str(number),
        text=text,
        collected_at=datetime(2026, 11, 23, tzinfo=UTC),
        lang="en",
        content_hash="h",
        entities=Entities(places=list(places), units=list(units), people=list(people)),
        cluster_id=cluster,
    )


def place(name: str, start: int, lat: float, lon: float, pid: str, **extra: object) -> Place:
    return Place(name=name, start=start, end=start + len(name), lat=lat, lon=lon, id=pid, **extra)  # type: ignore[arg-type]


SOLEDAR = place("Soledar", 14, 48.6838, 38.0861, "geonames:693468")
LVIV = place("Lviv", 14, 49.8397, 24.0297, "geonames:702550")


def test_places_rule_fires_on_the_place_without_any_term() -> None:
    """places: [soledar] fires on an item whose entities name Soledar, with the place's span as the match."""
    engine = AlertEngine([Rule(name="soledar", places=["Soledar"])], places=SmallGazetteer())
    [alert] = engine.evaluate(item("Heavy fighting Soledar today", places=[SOLEDAR]))
    [matched] = alert.matched
    assert (matched.term, matched.start, matched.end, matched.via) == ("Soledar", 14, 21, "place")
    assert engine.evaluate(item("Quiet in Lviv", places=[LVIV])) == []


def test_ambiguous_place_matches_through_its_candidates() -> None:
    """A mention whose chosen place is another namesake still satisfies the rule when a candidate is the place."""
    mention = place("Soledar", 0, 50.0, 30.0, "geonames:999", confidence=0.5,
                    candidates=[PlaceCandidate(id="geonames:693468", lat=48.68, lon=38.09)])  # fmt: skip
    engine = AlertEngine([Rule(name="soledar", places=["geonames:693468"])], places=SmallGazetteer())
    assert [a.rule for a in engine.evaluate(item("Soledar", places=[mention]))] == ["soledar"]


def test_within_km_uses_distance_to_the_centre() -> None:
    """within_km: {of: bakhmut, km: 15} takes Soledar (~12 km away) and leaves Lviv (~1,000 km)."""
    engine = AlertEngine([Rule(name="near", within_km={"of": "bakhmut", "km": 15})], places=SmallGazetteer())  # type: ignore[arg-type]
    [alert] = engine.evaluate(item("Heavy fighting Soledar today", places=[SOLEDAR]))
    assert alert.matched[0].via == "within 15 km of bakhmut"
    assert engine.evaluate(item("Heavy fighting Lviv", places=[LVIV])) == []
    narrow = AlertEngine([Rule(name="near", within_km={"of": "bakhmut", "km": 5})], places=SmallGazetteer())  # type: ignore[arg-type]
    assert narrow.evaluate(item("Heavy fighting Soledar today", places=[SOLEDAR])) == []


def test_terms_and_entity_conditions_must_both_hold() -> None:
    """A rule with terms and units fires only when a term and one of the units are both in the item."""
    rule = Rule(name="assault", any=["assault"], units=["3-assault-brigade"])
    engine = AlertEngine([rule], places=SmallGazetteer())
    brigade = Unit(id="ua-3-assault-brigade", name="3rd Separate Assault Brigade", start=0, end=3)
    fired = engine.evaluate(item("3 ОШБр repelled an assault", units=[brigade]))
    assert [a.rule for a in fired] == ["assault"]
    assert {m.via for m in fired[0].matched} == {None, "unit"}
    assert engine.evaluate(item("an assault elsewhere")) == []
    assert engine.evaluate(item("3 ОШБр holds", units=[brigade])) == []


def test_people_condition_and_rule_scope() -> None:
    """people: [...] compares person ids, and an entity-only rule still honours its sources filter."""
    syrskyi = Person(id="oleksandr-syrskyi", name="Oleksandr Syrskyi", start=0, end=7)
    who = ["oleksandr-syrskyi"]
    rules = [Rule(name="cinc", people=who), Rule(name="x", people=who, sources=["x"])]
    engine = AlertEngine(rules, places=SmallGazetteer())
    assert [a.rule for a in engine.evaluate(item("Syrskyi visited", people=[syrskyi]))] == ["cinc"]


def test_unknown_place_in_a_rule_is_a_config_error() -> None:
    """A place the gazetteer does not know is reported with the rule and the name, not silently ignored."""
    with pytest.raises(ConfigError) as info:
        AlertEngine([Rule(name="typo", places=["Bakhmutt"])], places=SmallGazetteer())
    assert info.value.problems == [("rules[typo].places", "no place named 'Bakhmutt' in the gazetteer")]


def test_per_cluster_rule_gives_one_alert_id_per_story() -> None:
    """per: cluster keys the alert on the story cluster: two reposts share the id; per: item keeps them apart."""
    engine = AlertEngine([Rule(name="story", any=["Bakhmut"], per="cluster"), Rule(name="each", any=["Bakhmut"])])
    first = {a.rule: a for a in engine.evaluate(item("Bakhmut holds", cluster="c1", number=1))}
    repost = {a.rule: a for a in engine.evaluate(item("Bakhmut holds!", cluster="c1", number=2))}
    other = {a.rule: a for a in engine.evaluate(item("Bakhmut holds", cluster="c2", number=3))}
    assert first["story"].alert_id == repost["story"].alert_id != other["story"].alert_id
    assert first["each"].alert_id != repost["each"].alert_id
    assert first["story"].cluster_id == "c1"
    alone = {a.rule: a for a in engine.evaluate(item("Bakhmut holds", number=4))}  # no cluster: per item
    assert alone["story"].alert_id != first["story"].alert_id
