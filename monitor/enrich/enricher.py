"""Fills ``Item.entities``: places with coordinates, units, people and quantities, for every source alike.

The extractors load once per process (the gazetteer from its cache) and are read-only afterwards. A
channel's usual area, the mean position of the places it names unambiguously, is learned as items
pass and helps resolve names shared by several places (the 20-odd Andriivkas).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

import structlog

from monitor.schema import Entities, Person, Place, Unit

log = structlog.get_logger(__name__)

# A channel's area counts once it has this many confident places; older evidence decays slowly.
AREA_MIN_PLACES = 3
AREA_MEMORY = 200


class PlaceSource(Protocol):
    def extract(self, text: str, *, area: tuple[float, float] | None = None) -> list[Place]: ...


class UnitSource(Protocol):
    def extract(self, text: str) -> list[Unit]: ...


class PersonSource(Protocol):
    def extract(self, text: str) -> list[Person]: ...


@dataclass(slots=True)
class _Area:
    lat: float = 0.0
    lon: float = 0.0
    weight: float = 0.0

    def add(self, lat: float, lon: float) -> None:
        keep = min(self.weight, AREA_MEMORY - 1)
        self.lat = (self.lat * keep + lat) / (keep + 1)
        self.lon = (self.lon * keep + lon) / (keep + 1)
        self.weight = keep + 1


@dataclass(slots=True)
class Enricher:
    """Runs every extractor over an item's text."""

    places: PlaceSource
    units: UnitSource
    people: PersonSource
    _areas: dict[str, _Area] = field(default_factory=dict)

    @classmethod
    def load(cls) -> Enricher:
        """Load the gazetteer and the curated lists (a second or two on first use, from the cache after)."""
        from monitor.enrich.people import PeopleExtractor  # noqa: PLC0415 - heavy: loaded only when enrichment is on
        from monitor.enrich.places import PlaceExtractor  # noqa: PLC0415
        from monitor.enrich.units import UnitExtractor  # noqa: PLC0415

        return cls(PlaceExtractor.load(), UnitExtractor.load(), PeopleExtractor.load())

    def area(self, channel: str) -> tuple[float, float] | None:
        """The learned centre of the places a channel usually names, once there is enough evidence."""
        known = self._areas.get(channel)
        return (known.lat, known.lon) if known is not None and known.weight >= AREA_MIN_PLACES else None

    def enrich(self, text: str, *, lang: str | None = None, channel: str | None = None) -> Entities:
        """The entities of ``text``; spans index ``text``."""
        from monitor.enrich.quantities import extract_quantities  # noqa: PLC0415 - see load()

        area = self.area(channel) if channel else None
        places = self.places.extract(text, area=area)
        if channel:
            for place in places:
                if place.confidence >= 1.0 and place.lat is not None and place.lon is not None:
                    self._areas.setdefault(channel, _Area()).add(place.lat, place.lon)
        return Entities(
            places=places,
            units=self.units.extract(text),
            people=self.people.extract(text),
            quantities=extract_quantities(text, lang),
        )
