"""Alerts carry where, who and what was claimed, and the notifications show it.

``AlertEngine`` copies a summary of the item's entities into each alert (each place, unit and person
once, every distinct claim); the built-in templates print them (Where/Who/Claims, places with an
OpenStreetMap link in the full template). The first test runs a real enriched item through the
normalizer and the engine.
"""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from monitor.alerting.engine import AlertEngine, entity_summary
from monitor.config import NormalizerSettings, Rule
from monitor.enrich.enricher import Enricher
from monitor.normalize.normalizer import Normalizer
from monitor.notify.templates import Templates
from monitor.schema import Entities, Item, Person, Place, PlaceCandidate, Quantity, RawItem, Unit, decode, encode

T0 = datetime(2023, 5, 20, 9, 0, tzinfo=UTC)
POST = (
    "Воїни 3-ї окремої штурмової бригади звільнили Андріївку південніше Бахмута. Під Бахмутом знищено "
    "5 танків, повідомив Олександр Сирський. Бої за Бахмут тривають."
)


@pytest.fixture(scope="module")
def normalizer() -> Normalizer:
    return Normalizer(NormalizerSettings(enrich=True), enricher=Enricher.load())


def test_an_enriched_item_alerts_with_its_places_units_people_and_claims(normalizer: Normalizer) -> None:
    """A brigade post through the normalizer and a rule: the alert names Bakhmut once, the brigade,
    Syrskyi and the claim, and survives the stream encoding."""
    raw = RawItem(source="telegram", channel="ab3army", external_id="1", text=POST, collected_at=T0)
    item = normalizer.normalize(raw)
    assert len([p for p in item.entities.places if p.name == "Bakhmut"]) == 3  # three mentions in the item
    (alert,) = AlertEngine([Rule(name="bakhmut", any=["Бахмут"])]).evaluate(item)
    assert alert.entities is not None
    assert [p.name for p in alert.entities.places] == ["Andriivka", "Bakhmut"]
    assert all(not p.candidates for p in alert.entities.places)
    assert [u.id for u in alert.entities.units] == ["ua-3-assault-brigade"]
    assert [p.id for p in alert.entities.people] == ["oleksandr-syrskyi"]
    assert [(q.kind, q.value, q.unit) for q in alert.entities.quantities] == [("losses", 5.0, "tanks")]
    bakhmut = alert.entities.places[1]
    assert item.text[bakhmut.start : bakhmut.end] == "Бахмута"  # the first mention's span
    assert decode(type(alert), encode(alert)) == alert


def test_the_summary_keeps_first_mentions_and_distinct_claims() -> None:
    """Repeated places, units, people and identical claims appear once; an empty item gives None."""
    andriivka = Place(
        name="Andriivka",
        start=10,
        end=19,
        id="alias:andriivka-bakhmut",
        confidence=0.7,
        candidates=[PlaceCandidate(id="geonames:1", lat=1.0, lon=2.0)],
    )
    entities = Entities(
        places=[andriivka, Place(name="Andriivka", start=40, end=49, id="alias:andriivka-bakhmut")],
        units=[Unit(id="u", name="U", start=60, end=61), Unit(id="u", name="U", start=5, end=6)],
        people=[Person(id="p", name="P", start=70, end=71), Person(id="p", name="P", start=80, end=81)],
        quantities=[
            Quantity(kind="losses", value=5, unit="tanks", start=90, end=97),
            Quantity(kind="losses", value=5, unit="tanks", start=100, end=107),
            Quantity(kind="attacks", value=24, unit="attacks", start=110, end=120),
        ],
    )
    summary = entity_summary(entities)
    assert summary is not None
    assert [(p.start, p.candidates) for p in summary.places] == [(10, [])]
    assert [u.start for u in summary.units] == [5]
    assert [p.start for p in summary.people] == [70]
    assert [(q.kind, q.start) for q in summary.quantities] == [("losses", 90), ("attacks", 110)]
    assert entity_summary(Entities()) is None


def test_templates_show_where_who_and_claims(normalizer: Normalizer) -> None:
    """The short template prints Where/Who/Claims; the full one lists each place with a map link."""
    item = normalizer.normalize(
        RawItem(source="telegram", channel="ab3army", external_id="2", text=POST, collected_at=T0)
    )
    (alert,) = AlertEngine([Rule(name="bakhmut", any=["Бахмут"])]).evaluate(item)
    short = Templates().render(alert, "short").body
    assert "Where: Andriivka? (Donetsk), Bakhmut (Donetsk)" in short
    assert "Who: 3rd Separate Assault Brigade, Oleksandr Syrskyi" in short
    assert "Claims: 5 tanks (losses)" in short
    full = Templates().render(alert, "full").body
    assert "https://www.openstreetmap.org/?mlat=48.5" in full
    assert "Claims:    5 tanks (losses)" in full
    digest = Templates().render_digest([alert, alert], "full").body
    assert digest.count("Where: Andriivka? (Donetsk), Bakhmut (Donetsk)") == 2


def test_an_item_without_entities_renders_as_before() -> None:
    """Without entities an alert has none, and the templates print no Where/Who/Claims lines."""
    item = Item(
        id="telegram:c:3",
        source="telegram",
        channel="c",
        external_id="3",
        text="Бої за Бахмут тривають.",
        collected_at=T0,
        lang="uk",
        content_hash="0",
    )
    (alert,) = AlertEngine([Rule(name="bakhmut", any=["Бахмут"])]).evaluate(item)
    assert alert.entities is None
    body = Templates().render(alert, "short").body
    assert "Where:" not in body and "Who:" not in body and "Claims:" not in body
