"""Places named in a text: gazetteer names found with the alerting matcher's folding, resolved to one place.

Matching
--------
Every surface form of every gazetteer name (``monitor.enrich.gazetteer.surface_forms``: case forms,
transliterations, spellings) goes into one Aho-Corasick automaton, searched over the same *match
view* as alert rules (``monitor.alerting.matcher``: ``\\w+`` tokens, case-folded, ``ё`` = ``е``,
padded with spaces, so only whole words match and a phrase matches across punctuation). Texts with
mixed-script words or spaced-out letters take the matcher's de-obfuscated view (homoglyphs, "B.a.k.h.m.u.t");
zero-width characters, soft hyphens, bidi controls and stress marks are skipped here too. Spans index the
text as given. Where mentions overlap, the leftmost-longest wins ("Donetsk region" is the oblast, "Nova
Kakhovka" is not Kakhovka).

Names that are also ordinary words (the gazetteer's ``COMMON`` flag: "Мирне", "Піски", "Щастя",
"Перемога", and case forms such as "буде" of Буда) only count when capitalized (every word of a
several-word name). If such a name is also a *frequent* word (``FREQUENT``) and stands at the start of a
sentence or line, or is written in capitals, it is *weak*: it is kept only with support, i.e. a
settlement cue right before it ("с. Мирне", "village of", "біля"), a strong mention of the same name
elsewhere in the text, another place named within ``WEAK_SUPPORT_KM``, its oblast named right by it, or
a channel area within ``AREA_KM``. Places of 100k people or more are exempt from the sentence-start
rule. Curated places marked ``context`` (Niu-York: "у Нью-Йорку" is usually the other one) are always
weak. Other vetoes: a capitalized given name right before ("Roman Chop": a surname); a place named like
a given name followed by a capitalized word or after a title ("Volodymyr Zelensky", "President
Volodymyr"); an adjective form followed by a sector word ("на Лиманському напрямку", "у Покровському
районі"); curated ``not_before``/``not_after`` patterns (the Dnipro river, the Azov regiment, the
"Donetsk People's Republic").

Ambiguity (one name, several places: ~20 Andriivkas)
----------------------------------------------------
Each candidate has a prior weight: ``max(population, 200)``, times 3 in an oblast on the front line or
the Russian border (``gazetteer.FRONT_ADMIN1``), times 3 for curated places. Names are resolved in
this order:

1. an oblast named right by the mention ("Andriivka, Donetsk region", "Петропавлівки Харківської
   області": up to ``OBLAST_WINDOW`` tokens after it) narrows the candidates to that oblast;
2. a *dominant* name (one candidate holds >= 90 % of the prior weight: Donetsk the city, not the
   Rostov-oblast town) keeps its prior; otherwise *anchors*, the places of unambiguous or dominant
   mentions, decide: the candidate nearest to an anchor within ``SUPPORT_KM`` wins, and names resolved
   so become anchors for the rest (fewest candidates first);
3. the caller's ``area`` (a channel's usual centre): the nearest candidate within ``AREA_KM``;
4. other ambiguous names: the candidate with the most other names having a candidate within
   ``SUPPORT_KM`` (ties by prior weight);
5. otherwise the prior: the heaviest candidate.

``confidence`` is 1.0 for a name with one place; else ``0.95`` (anchors), ``0.9`` (area) or ``0.8``
(mutual support) times the winner's share among the candidates that qualified at that step (inverse
distance for steps 2-3, prior weight otherwise), the prior share for dominant names and at step 5
(``0.95`` of it when an oblast narrowed the candidates). Weak mentions kept through support get ``0.8``
times that. ``candidates`` lists the other places, most plausible first (at most ``MAX_CANDIDATES``).
"""

from __future__ import annotations

import bisect
import re
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import ahocorasick

from monitor.alerting.matcher import _LETTER_RUN, WORD, _scan, deobfuscated_view, fold, fold_term
from monitor.enrich.gazetteer import (
    COMMON,
    FLAG_BITS,
    FREQUENT,
    FRONT_ADMIN1,
    GIVEN,
    Gazetteer,
    GazetteerEntry,
    load_gazetteer,
)
from monitor.enrich.geo import haversine_km
from monitor.schema import Place, PlaceCandidate

__all__ = ["AREA_KM", "MAX_CANDIDATES", "SUPPORT_KM", "PlaceExtractor", "haversine_km"]

SUPPORT_KM = 100.0
WEAK_SUPPORT_KM = 30.0
OBLAST_WINDOW = 12  # tokens: an oblast named this close after a place (or 3 before) qualifies it
AREA_KM = 150.0
MAX_CANDIDATES = 10
DOMINANT_SHARE = 0.9
SENTENCE_RULE_POPULATION = 100_000

# Skipped like the normalizer does: zero-width and bidi controls, soft hyphen, BOM, stress marks and
# strike-through overlays (decomposed letters such as й = и + U+0306 are left alone).
_INVISIBLE = re.compile(
    "[\u00ad\u061c\u180e\u200b-\u200f\u202a-\u202e\u2060-\u2064\u2066-\u2069\ufeff\u0300\u0301\u0335-\u0338]+"
)
_SENTENCE_END = frozenset(".!?…\n")
_PREVIOUS_WORD = re.compile(r"(\w+)\W*$")
# "на Лиманському напрямку", "у Покровському районі": an adjective made from a place name, naming a
# front sector, district or community, is not the village of that adjective's form (Лиманське).
_SECTOR_NEXT = re.compile(
    r"[\s\-]*(?:напрям|направлен|ділянк|ділянц|участ|плацдарм|фронт|угрупован|группировк|сектор|район|округ|громад"
    r"|водосховищ|водохранилищ)\w*",
    re.IGNORECASE,
)
_ADJECTIVE_END = re.compile(r"(?:ому|ого|ий|ій|им|ім|ом|ая|ой|ую|ої|ою|ей|ое)$")
# Words right before a name that say it is a settlement (abbreviations are followed by a dot).
_CUES = frozenset(
    {
        "с", "м", "смт", "сел", "селище", "селища", "селі", "село", "села", "селом", "місто", "міста", "місті",
        "містом", "містечко", "поселок", "поселка", "поселке", "посёлок", "пос", "пгт", "г", "город", "города",
        "городе", "деревня", "деревни", "хутор", "хутора", "станиця", "станица", "village", "villages", "town",
        "city", "settlement", "near", "біля", "поблизу", "під", "возле", "около", "под", "районі", "районе"
    }
)  # fmt: skip


@dataclass(slots=True)
class _Mention:
    start: int
    end: int
    first: int  # first and last token in the match view
    last: int
    candidates: tuple[int, ...]
    weak: bool
    oblasts: frozenset[tuple[str, str | None]] = frozenset()  # oblasts named right by it


@dataclass(slots=True)
class _Resolution:
    chosen: int
    confidence: float
    ranked: list[int]  # every candidate, best first


class PlaceExtractor:
    """Finds gazetteer places in text. Read-only after construction, so one instance serves every thread."""

    _loaded: dict[str, PlaceExtractor] = {}  # noqa: RUF012 - a per-process memo, guarded by _lock
    _lock = threading.Lock()

    def __init__(self, gazetteer: Gazetteer) -> None:
        self.gazetteer = gazetteer
        self.entries: list[GazetteerEntry] = gazetteer.entries
        self._by_id = {entry.id: index for index, entry in enumerate(self.entries)}
        self._by_geonames = {e.geonames_id: i for i, e in enumerate(self.entries) if e.geonames_id is not None}
        self._patterns = gazetteer.patterns
        self._refs = gazetteer.refs
        self._pattern_ids = {pattern: pid for pid, pattern in enumerate(self._patterns)}
        self._lat = [entry.lat for entry in self.entries]
        self._lon = [entry.lon for entry in self.entries]
        self._population = [entry.population for entry in self.entries]
        self._weight = [self._prior(entry) for entry in self.entries]
        self._is_place = [entry.kind == "place" for entry in self.entries]
        self._vetoes = {
            index: (
                re.compile(entry.not_before, re.IGNORECASE) if entry.not_before else None,
                re.compile(entry.not_after, re.IGNORECASE) if entry.not_after else None,
            )
            for index, entry in enumerate(self.entries)
            if entry.not_before or entry.not_after
        }
        self._given_names = frozenset(gazetteer.given_names)
        self._needs_context = frozenset(i for i, entry in enumerate(self.entries) if entry.needs_context)
        self._automaton = ahocorasick.Automaton()
        for pid, pattern in enumerate(self._patterns):
            self._automaton.add_word(f" {pattern} ", pid)
        self._automaton.make_automaton()

    @staticmethod
    def _prior(entry: GazetteerEntry) -> float:
        weight = float(max(entry.population, 200))
        if (entry.country, entry.admin1_code or "") in FRONT_ADMIN1:
            weight *= 3
        if entry.curated and entry.kind == "place":
            weight *= 3
        return weight

    @classmethod
    def load(cls, cache_dir: Path | None = None) -> PlaceExtractor:
        """The extractor over the cached gazetteer (built on first use); one instance per process and dir."""
        key = str(cache_dir or "")
        with cls._lock:
            loaded = cls._loaded.get(key)
            if loaded is None:
                loaded = cls._loaded[key] = cls(load_gazetteer(cache_dir))
            return loaded

    # ------------------------------------------------------------------ lookup

    def entry(self, entry_id: str) -> GazetteerEntry | None:
        """The entry with this id (``geonames:<id>`` or ``alias:<slug>``)."""
        index = self._by_id.get(entry_id)
        return None if index is None else self.entries[index]

    def lookup(self, name_or_id: str) -> list[GazetteerEntry]:
        """Entries for an id, a GeoNames number or any name or form of one ("bakhmut", "Артемівськ",
        "kryvyi-rih", "Бахмуті"), most likely first (by prior weight)."""
        text = name_or_id.strip()
        if text.startswith(("geonames:", "alias:")):
            found = self.entry(text)
            if found is None and text.startswith("geonames:") and text[9:].isdigit():
                index = self._by_geonames.get(int(text[9:]))
                found = None if index is None else self.entries[index]
            return [found] if found is not None else []
        if text.isdigit():
            index = self._by_geonames.get(int(text))
            return [] if index is None else [self.entries[index]]
        pid = self._pattern_ids.get(fold_term(text))
        if pid is None:
            return []
        indices = sorted((ref >> FLAG_BITS for ref in self._refs[pid]), key=lambda i: -self._weight[i])
        return [self.entries[i] for i in indices]

    # ------------------------------------------------------------------ extraction

    def extract(self, text: str, *, area: tuple[float, float] | None = None) -> list[Place]:
        """Every place named in ``text``, in text order; spans index ``text``."""
        clean, segments = _strip_invisible(text)
        mentions = self._mentions(clean)
        if not mentions:
            return []
        resolved = self._resolve(mentions, area)
        places = []
        for mention in mentions:
            resolution = resolved.get(mention.candidates)
            if resolution is None:
                continue
            start, end = mention.start, mention.end
            if segments is not None:
                start, end = _original(segments, start), _original(segments, end - 1) + 1
            places.append(self._place(resolution, start, end))
        return places

    def _mentions(self, text: str) -> list[_Mention]:
        words, mixed = _scan(text)
        view = " " + fold(words) + " "
        tokens: list[tuple[int, int]] | None = None
        if mixed or _LETTER_RUN.search(view) is not None:
            view, tokens = deobfuscated_view(text)
        hits = self._automaton.iter(view)
        found: list[_Mention] = []
        for end, pid in hits:
            pattern = self._patterns[pid]
            # The padded pattern's leading space is view[end - len(pattern) - 1]; the spaces up to and
            # including it, less the view's own leading one, count the tokens before the match.
            first = view.count(" ", 0, end - len(pattern)) - 1
            last = first + pattern.count(" ")
            if tokens is None:
                tokens = [m.span() for m in WORD.finditer(text)]
            if last >= len(tokens):
                continue
            start, stop = tokens[first][0], tokens[last][1]
            mention = self._filter(text, pid, start, stop, first, last)
            if mention is not None:
                found.append(mention)
        if len(found) < 2:
            return found
        found.sort(key=lambda m: (m.first, m.first - m.last))
        chosen: list[_Mention] = []
        for mention in found:  # leftmost-longest, no overlaps
            if not chosen or mention.first > chosen[-1].last:
                chosen.append(mention)
        regions = [m for m in chosen if len(m.candidates) == 1 and not self._is_place[m.candidates[0]]]
        for mention in chosen:
            near = [
                (self.entries[r.candidates[0]].country, self.entries[r.candidates[0]].admin1_code)
                for r in regions
                if r is not mention and -3 <= r.first - mention.last <= OBLAST_WINDOW
            ]
            if near:
                mention.oblasts = frozenset(near)
        return chosen

    def _filter(self, text: str, pid: int, start: int, stop: int, first: int, last: int) -> _Mention | None:
        """The places a hit can stand for here, after the capitalization and context rules."""
        if _after_given_name(text, start, self._given_names):
            return None  # "Roman Chop", "Ivan Sirko": a surname
        if _SECTOR_NEXT.match(text, stop) and _ADJECTIVE_END.search(text[start:stop].lower()):
            return None  # "на Лиманському напрямку"
        strong: list[int] = []
        weak: list[int] = []
        position: tuple[bool, bool] | None = None  # (title-cased, weak position), computed on demand
        person: bool | None = None
        for ref in self._refs[pid]:
            index, flags = ref >> FLAG_BITS, ref & 7
            if index in self._vetoes and _vetoed(self._vetoes[index], text, start, stop):
                continue
            if flags & GIVEN:
                if person is None:
                    person = _before_surname(text, start, stop)
                if person:
                    continue  # "Volodymyr Zelensky", "президент Володимир"
            if index in self._needs_context:
                weak.append(index)
                continue
            if not flags & COMMON:
                strong.append(index)
                continue
            if position is None:
                position = _position(text, start, stop)
            titled, weak_position = position
            if not titled:
                continue
            if flags & FREQUENT and weak_position and self._population[index] < SENTENCE_RULE_POPULATION:
                weak.append(index)
            else:
                strong.append(index)
        if strong:
            return _Mention(start, stop, first, last, tuple(strong), False)
        if weak:
            return _Mention(start, stop, first, last, tuple(weak), True)
        return None

    # ------------------------------------------------------------------ resolution

    def _near(self, index: int, points: Iterable[tuple[float, float]]) -> float:
        lat, lon = self._lat[index], self._lon[index]
        return min((haversine_km(lat, lon, p_lat, p_lon) for p_lat, p_lon in points), default=float("inf"))

    def _resolve(
        self, mentions: list[_Mention], area: tuple[float, float] | None
    ) -> dict[tuple[int, ...], _Resolution]:
        strong_keys = {m.candidates for m in mentions if not m.weak}
        keys = list(dict.fromkeys(m.candidates for m in mentions))
        weight = self._weight
        local: dict[tuple[int, ...], set[tuple[str, str | None]]] = {}  # oblasts named right by a name
        for mention in mentions:
            local.setdefault(mention.candidates, set()).update(mention.oblasts)
        anchors: dict[tuple[int, ...], tuple[float, float]] = {}
        resolved: dict[tuple[int, ...], _Resolution] = {}
        for key in keys:
            best = max(key, key=weight.__getitem__)
            share = weight[best] / sum(weight[i] for i in key)
            if len(key) == 1:
                resolved[key] = _Resolution(best, 1.0, [best])
            if key in strong_keys and self._is_place[best] and (len(key) == 1 or share >= DOMINANT_SHARE):
                anchors[key] = (self._lat[best], self._lon[best])
        pending = sorted((k for k in keys if len(k) > 1), key=len)
        undecided: list[tuple[int, ...]] = []
        for key in pending:
            pool = self._in_oblasts(key, local.get(key))
            best = max(key, key=weight.__getitem__)
            share = weight[best] / sum(weight[i] for i in key)
            if share >= DOMINANT_SHARE and best in pool:
                # Donetsk (the city, not the town in Rostov oblast): context does not overturn the prior.
                resolved[key] = _Resolution(best, share, sorted(key, key=lambda i: -weight[i]))
                continue
            points = [point for other, point in anchors.items() if other != key]
            decided = self._by_distance(key, pool, points, 0.95) if points else None
            if decided is None and area is not None:
                decided = self._by_distance(key, pool, [area], 0.9, radius=AREA_KM)
            if decided is None:
                undecided.append(key)
                continue
            resolved[key] = decided
            if key in strong_keys and decided.confidence >= 0.5:
                anchors[key] = (self._lat[decided.chosen], self._lon[decided.chosen])
        for key in undecided:
            pool = self._in_oblasts(key, local.get(key))
            others = [k for k in undecided if k != key]
            support = {
                i: sum(1 for k in others if self._near(i, ((self._lat[j], self._lon[j]) for j in k)) <= SUPPORT_KM)
                for i in pool
            }
            top = max(support.values(), default=0)
            if top > 0:  # step 4: mutual support
                best_pool, factor = [i for i in pool if support[i] == top], 0.8
            else:  # step 5: the prior (within a named oblast: 0.95 of it)
                best_pool, factor = pool, (0.95 if len(pool) < len(key) else 1.0)
            chosen = max(best_pool, key=weight.__getitem__)
            share = weight[chosen] / sum(weight[i] for i in best_pool)
            ranked = sorted(key, key=lambda i: (i not in best_pool, -support.get(i, 0), -weight[i]))
            resolved[key] = _Resolution(chosen, factor * share, ranked)
        # Weak mentions stand only with support; strong ones of the same name support them.
        for key in keys:
            if key in strong_keys or key not in resolved:
                continue
            chosen = resolved[key].chosen
            points = [point for other, point in anchors.items() if other != key]
            entry = self.entries[chosen]
            supported = (
                (points and self._near(chosen, points) <= WEAK_SUPPORT_KM)
                or (area is not None and self._near(chosen, [area]) <= AREA_KM)
                or (entry.country, entry.admin1_code) in local.get(key, ())
            )
            if supported:
                resolved[key].confidence *= 0.8
            else:
                del resolved[key]
        return resolved

    def _in_oblasts(self, key: tuple[int, ...], oblasts: set[tuple[str, str | None]] | None) -> list[int]:
        """The candidates in the oblasts named right by the mention, or all of them."""
        if not oblasts:
            return list(key)
        inside = [i for i in key if (self.entries[i].country, self.entries[i].admin1_code) in oblasts]
        return inside or list(key)

    def _by_distance(
        self,
        key: tuple[int, ...],
        pool: list[int],
        points: list[tuple[float, float]],
        factor: float,
        radius: float = SUPPORT_KM,
    ) -> _Resolution | None:
        distance = {i: self._near(i, points) for i in key}
        near = [i for i in pool if distance[i] <= radius]
        if not near:
            return None
        chosen = min(near, key=lambda i: (distance[i], -self._weight[i]))
        closeness = {i: 1.0 / (distance[i] + 5.0) for i in near}
        confidence = factor * closeness[chosen] / sum(closeness.values())
        ranked = sorted(key, key=lambda i: (i not in near, distance[i] if i in near else -self._weight[i]))
        return _Resolution(chosen, confidence, ranked)

    def _place(self, resolution: _Resolution, start: int, end: int) -> Place:
        entry = self.entries[resolution.chosen]
        candidates = [
            PlaceCandidate(id=other.id, lat=other.lat, lon=other.lon, admin1=other.admin1, country=other.country)
            for other in (self.entries[i] for i in resolution.ranked if i != resolution.chosen)
        ][:MAX_CANDIDATES]
        return Place(
            name=entry.name,
            start=start,
            end=end,
            lat=entry.lat,
            lon=entry.lon,
            id=entry.id,
            admin1=entry.admin1,
            country=entry.country,
            geonames_id=entry.geonames_id,
            confidence=round(resolution.confidence, 3),
            candidates=candidates,
        )


def _strip_invisible(text: str) -> tuple[str, list[tuple[int, int]] | None]:
    """The text without invisible characters, and ``(clean offset, original offset)`` per kept run."""
    if _INVISIBLE.search(text) is None:
        return text, None
    pieces: list[str] = []
    segments: list[tuple[int, int]] = []
    position = clean_length = 0
    for match in _INVISIBLE.finditer(text):
        if match.start() > position:
            segments.append((clean_length, position))
            pieces.append(text[position : match.start()])
            clean_length += match.start() - position
        position = match.end()
    if position < len(text):
        segments.append((clean_length, position))
        pieces.append(text[position:])
    return "".join(pieces), segments


def _original(segments: list[tuple[int, int]], offset: int) -> int:
    index = bisect.bisect_right(segments, (offset, float("inf"))) - 1
    clean_start, original_start = segments[max(index, 0)]
    return original_start + offset - clean_start


def _position(text: str, start: int, stop: int) -> tuple[bool, bool]:
    """``(every word title-cased, at a weak position)`` for a mention of a common-word name.

    Weak: the start of the text, a line or a sentence, or written in capitals, unless a settlement cue
    ("с.", "village", "біля") comes right before.
    """
    span = text[start:stop]
    words = [w for w in WORD.findall(span) if len(w) >= 3] or [span]
    titled = all(w[0].isupper() for w in words)
    if not titled:
        return False, False
    capitals = sum(c.isupper() for c in span) > 1 and span.upper() == span
    before = text[max(0, start - 40) : start]
    previous = _PREVIOUS_WORD.search(before)
    if previous is not None and previous.group(1).lower() in _CUES:
        return True, False
    index = start - 1
    while index >= 0 and not text[index].isalnum():
        if text[index] in _SENTENCE_END:
            return True, True
        index -= 1
    return True, index < 0 or capitals


_TITLES = frozenset(
    {
        "president", "президент", "президента", "президентом", "general", "генерал", "генерала", "minister",
        "міністр", "міністра", "министр", "министра", "mr", "mrs", "ms", "пан", "пані", "commander", "командир",
        "командира", "colonel", "полковник", "полковника"
    }
)  # fmt: skip


def _after_given_name(text: str, start: int, given: frozenset[str]) -> bool:
    """Whether a capitalized given name comes right before (spaces only): the mention is a surname."""
    index = start - 1
    while index >= 0 and text[index] in " \t\u00a0":
        index -= 1
    if index == start - 1 or index < 0 or not text[index].isalpha():
        return False
    end = index + 1
    while index >= 0 and text[index].isalpha():
        index -= 1
    word = text[index + 1 : end]
    return word[:1].isupper() and fold(word) in given


def _before_surname(text: str, start: int, stop: int) -> bool:
    """Whether a given-name mention is a person's: a capitalized word follows (spaces only), or a title precedes."""
    index = stop
    while index < len(text) and text[index] in " \t\u00a0":
        index += 1
    if index > stop and index < len(text) and text[index].isupper():
        return True
    previous = _PREVIOUS_WORD.search(text[max(0, start - 30) : start])
    return previous is not None and previous.group(1).lower() in _TITLES


def _vetoed(vetoes: tuple[re.Pattern[str] | None, re.Pattern[str] | None], text: str, start: int, stop: int) -> bool:
    before, after = vetoes
    if before is not None and before.search(text[max(0, start - 60) : start]):
        return True
    return after is not None and after.search(text[stop : stop + 40]) is not None
