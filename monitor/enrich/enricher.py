"""Fills ``Item.entities``: places with coordinates, units, people and quantities, for every source alike.

The extractors load once per process (the gazetteer from its cache) and are read-only afterwards. A
channel's usual area, the mean position of the places it names unambiguously, is learned as items
pass and helps resolve names shared by several places (the 20-odd Andriivkas).

The places, units and people extractors all search the alerting matcher's *match view* of the text
(``monitor.alerting.matcher``); ``MatchView`` builds it once per item and each of them takes it through
the ``view`` keyword (an extractor given no view, or one of another text, builds its own).

``enrich_many`` takes a batch and runs each extractor over all of it before the next one, which keeps
each extractor's tables in the CPU caches (about a quarter less CPU than ``enrich`` item by item).
"""

from __future__ import annotations

import re
import weakref
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from types import ModuleType
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

import structlog

from monitor.schema import Entities, Person, Place, Unit

if TYPE_CHECKING:
    from monitor.alerting.matcher import CompiledRules, RuleMatch

log = structlog.get_logger(__name__)

_Found = TypeVar("_Found")

# A channel's area counts once it has this many confident places; older evidence decays slowly.
AREA_MIN_PLACES = 3
AREA_MEMORY = 200


_matcher: ModuleType | None = None  # monitor.alerting.matcher, imported on first use (the normalizer imports this)


def _load_matcher() -> ModuleType:
    global _matcher
    from monitor.alerting import matcher  # noqa: PLC0415 - see above

    _matcher = matcher
    return matcher


# A digit after no word character (or at the start): where a number can start. The lookbehind comes
# after the digit so that ``re`` scans for digits with its fast character search.
_NUMBER_START = re.compile(r"\d(?<!\w\d)")


def number_starts(text: str) -> list[int]:
    """Every position where a digit follows no word character: the only places the numbered-unit grammar
    and the quantity numbers (whose lookbehinds rule out a word character before) can match."""
    return [match.start() for match in _NUMBER_START.finditer(text)]


class MatchView:
    """The alerting matcher's match view of one text, built once and shared by the extractors.

    ``view`` is what ``CompiledRules.match`` searches (de-obfuscated when the text has mixed-script
    words or spaced-out letters, and then ``tokens`` holds each view token's span in ``text``).
    ``words`` is ``" ".join(WORD.findall(text))`` when ``view`` is exactly it folded, character for
    character (``view[i + 1]`` folds ``words[i]``), else None.
    """

    __slots__ = ("_index", "_index_hits", "_number_starts", "text", "tokens", "view", "words")

    def __init__(self, text: str, index: RuleIndex | None = None) -> None:
        matcher = _matcher or _load_matcher()
        words, mixed = matcher._scan(text)
        view = " " + matcher.fold(words) + " "
        tokens: list[tuple[int, int]] | None = None
        if mixed or matcher._LETTER_RUN.search(view) is not None:
            view, tokens = matcher.deobfuscated_view(text)
        self.text = text
        self.view = view
        self.tokens = tokens
        # Folding never shortens a character, so equal lengths mean every character folded to one.
        self.words: str | None = words if tokens is None and len(view) == len(words) + 2 else None
        self._number_starts: list[int] | None = None
        self._index = index  # rule sets whose terms one automaton pass finds (see RuleIndex)
        self._index_hits: list[list[tuple[int, tuple[int, int]]]] | None = None

    def number_starts(self) -> list[int]:
        """``number_starts(self.text)``, computed once."""
        if self._number_starts is None:
            self._number_starts = number_starts(self.text)
        return self._number_starts

    @staticmethod
    def of(text: str, view: MatchView | None) -> MatchView:
        """``view`` when it was built from ``text``, else a new view of ``text``."""
        if view is not None and (view.text is text or view.text == text):
            return view
        return MatchView(text)

    def match(self, rules: CompiledRules) -> list[RuleMatch]:
        """``rules.match(self.text)`` over this view (without source, channel or language).

        Rule sets of plain ``any`` terms (the curated names of units and people) are matched here, so the
        view is not built again; any other rule set goes through ``rules.match``.
        """
        if not _simple(rules):
            return rules.match(self.text)
        shared = self._index
        slot = shared.slot(rules) if shared is not None else None
        if shared is not None and slot is not None:
            if self._index_hits is None:
                self._index_hits = shared.hits(self.view)
            hits: Iterable[tuple[int, tuple[int, int]]] = self._index_hits[slot]
        else:
            hits = rules._automaton.iter(self.view) if rules.pattern_count else ()
        starts: dict[int, list[int]] = {}  # pattern id -> where it starts in the view, in order
        for end, (length, pid) in hits:
            pid_starts = starts.get(pid)
            if pid_starts is None:
                starts[pid] = [end - length + 1]
            else:
                pid_starts.append(end - length + 1)
        if not starts:
            return []
        any_mask = rules._any_mask
        fired = 0
        for pid in starts:
            fired |= any_mask[pid]
        matcher = _matcher or _load_matcher()
        spans = matcher._SpanMap(rules, self.text, self.view, starts, self.tokens)
        results = []
        positive_entries = rules._positive_entries
        while fired:
            low = fired & -fired
            fired ^= low
            index = low.bit_length() - 1
            entries = positive_entries[index]
            present = [entries[pid] for pid in starts if pid in entries]
            if len(present) > 1:
                present.sort()  # the rule's own order: the first term to claim a span names it
            results.append(matcher.RuleMatch(rules.rules[index], spans.hits(present)))
        return results


class RuleIndex:
    """One automaton for the terms of several rule sets: one pass over a view finds the hits of each.

    Each set's hits are what its own automaton finds (the same padded keys and values), so
    ``MatchView.match`` gives the same results with one pass instead of one per set.
    """

    def __init__(self, rule_sets: Sequence[CompiledRules]) -> None:
        import ahocorasick  # noqa: PLC0415 - with the matcher, only when enrichment is on

        self.rule_sets = tuple(rule_sets)
        self._slots = {id(rules): slot for slot, rules in enumerate(self.rule_sets)}
        table: dict[str, list[tuple[int, int] | None]] = {}
        for slot, rules in enumerate(self.rule_sets):
            for pid, (pattern, prefix) in enumerate(zip(rules._patterns, rules._prefix, strict=True)):
                padded = f" {pattern}" if prefix else f" {pattern} "  # as CompiledRules pads them
                table.setdefault(padded, [None] * len(self.rule_sets))[slot] = (len(padded), pid)
        self._automaton = ahocorasick.Automaton()
        for padded, values in table.items():
            self._automaton.add_word(padded, tuple((slot, value) for slot, value in enumerate(values) if value))
        if table:
            self._automaton.make_automaton()
        self._empty = not table

    def slot(self, rules: CompiledRules) -> int | None:
        """The position of ``rules`` among the indexed sets, or None."""
        slot = self._slots.get(id(rules))
        return slot if slot is not None and self.rule_sets[slot] is rules else None

    def hits(self, view: str) -> list[list[tuple[int, tuple[int, int]]]]:
        """Per rule set, ``(end, (length, pattern id))`` of every term found in ``view``, in the order found."""
        found: list[list[tuple[int, tuple[int, int]]]] = [[] for _ in self.rule_sets]
        if self._empty:
            return found
        for end, values in self._automaton.iter(view):
            for slot, value in values:
                found[slot].append((end, value))
        return found


_SIMPLE: weakref.WeakKeyDictionary[Any, bool] = weakref.WeakKeyDictionary()  # rules -> _simple(rules)


def _simple(rules: CompiledRules) -> bool:
    """Whether every rule has only plain ``any`` terms and no source, channel or language filter."""
    known = _SIMPLE.get(rules)
    if known is not None:
        return known
    simple = (
        not rules._capital_pids  # the capital rule is applied by rules.match alone
        and not rules._regex_terms
        and not rules._near
        and not any(rules._none_mask)
        and not any(rules._required)
        and all(rules._has_any)
        and not any(rules._sources)
        and not any(rules._channels)
        and not any(rules._langs)
    )
    _SIMPLE[rules] = simple
    return simple


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
    _index: RuleIndex | None = field(default=None, repr=False, compare=False)  # units' and people's names
    _indexed: bool = field(default=False, repr=False, compare=False)  # whether _index was built

    @classmethod
    def load(cls) -> Enricher:
        """Load the gazetteer and the curated lists (a second or two on first use, from the cache after)."""
        from monitor.enrich.people import PeopleExtractor  # noqa: PLC0415 - heavy: loaded only when enrichment is on
        from monitor.enrich.places import PlaceExtractor  # noqa: PLC0415
        from monitor.enrich.units import UnitExtractor  # noqa: PLC0415

        enricher = cls(PlaceExtractor.load(), UnitExtractor.load(), PeopleExtractor.load())
        enricher._index = enricher._build_index()
        enricher._indexed = True
        return enricher

    def area(self, channel: str) -> tuple[float, float] | None:
        """The learned centre of the places a channel usually names, once there is enough evidence."""
        known = self._areas.get(channel)
        return (known.lat, known.lon) if known is not None and known.weight >= AREA_MIN_PLACES else None

    def _build_index(self) -> RuleIndex | None:
        """One automaton for the name rules of the units and people extractors that expose them."""
        rule_sets = [
            rules
            for source in (self.units, self.people)
            if getattr(source, "takes_view", False) and (rules := getattr(source, "name_rules", None)) is not None
        ]
        return RuleIndex(rule_sets) if len(rule_sets) > 1 else None

    def enrich(self, text: str, *, lang: str | None = None, channel: str | None = None) -> Entities:
        """The entities of ``text``; spans index ``text``."""
        result = self.enrich_many([text], [lang], [channel])[0]
        if isinstance(result, Exception):
            raise result
        return result

    def enrich_many(
        self, texts: Sequence[str], langs: Sequence[str | None], channels: Sequence[str | None]
    ) -> list[Entities | Exception]:
        """``enrich`` for a batch, each result in its text's place (an extractor's error in its place too).

        Each extractor runs over the whole batch before the next one starts, so its tables (the
        gazetteer's automaton and arrays, the unit grammar, the quantity lexicon) stay in the CPU's
        caches: about a quarter less CPU than item by item (``bench/normalize.py``). A channel's area is
        still learned in item order, from the places of the items before.
        """
        from monitor.enrich.quantities import extract_quantities  # noqa: PLC0415 - see load()

        if not self._indexed:
            self._index = self._build_index()
            self._indexed = True
        places_take, units_take, people_take = (
            getattr(source, "takes_view", False) for source in (self.places, self.units, self.people)
        )
        count = len(texts)
        failed: list[Exception | None] = [None] * count
        views: list[MatchView | None] = [None] * count
        if places_take or units_take or people_take:
            for n, text in enumerate(texts):
                try:
                    views[n] = MatchView(text, self._index)
                except Exception as exc:  # noqa: BLE001 - one text's failure is its own, not the batch's
                    failed[n] = exc
        found_places = self._each(
            texts, failed, lambda n, text: self._places(text, channels[n], views[n] if places_take else None)
        )
        units, people = self.units, self.people
        found_units = self._each(
            texts,
            failed,
            lambda n, text: units.extract(text, view=views[n]) if units_take else units.extract(text),  # type: ignore[call-arg]
        )
        found_people = self._each(
            texts,
            failed,
            lambda n, text: people.extract(text, view=views[n]) if people_take else people.extract(text),  # type: ignore[call-arg]
        )
        found_quantities = self._each(texts, failed, lambda n, text: extract_quantities(text, langs[n], view=views[n]))
        return [
            failure
            if (failure := failed[n]) is not None
            else Entities(
                places=found_places[n], units=found_units[n], people=found_people[n], quantities=found_quantities[n]
            )
            for n in range(count)
        ]

    def _places(self, text: str, channel: str | None, view: MatchView | None) -> list[Place]:
        """The places of one text, resolved with the channel's area; confident ones teach the area."""
        area = self.area(channel) if channel else None
        if view is not None:
            places = self.places.extract(text, area=area, view=view)  # type: ignore[call-arg]
        else:
            places = self.places.extract(text, area=area)
        if channel:
            known: _Area | None = None
            for place in places:
                if place.confidence >= 1.0 and place.lat is not None and place.lon is not None:
                    if known is None:
                        known = self._areas.get(channel) or self._areas.setdefault(channel, _Area())
                    known.add(place.lat, place.lon)
        return places

    @staticmethod
    def _each(
        texts: Sequence[str], failed: list[Exception | None], extract: Callable[[int, str], list[_Found]]
    ) -> list[list[_Found]]:
        """``extract(n, texts[n])`` for each text not failed yet (empty for the others); a failure is noted
        in ``failed`` and is that text's alone."""
        out: list[list[_Found]] = [[] for _ in texts]
        for n, text in enumerate(texts):
            if failed[n] is None:
                try:
                    out[n] = extract(n, text)
                except Exception as exc:  # noqa: BLE001 - one text's failure is its own, not the batch's
                    failed[n] = exc
        return out
