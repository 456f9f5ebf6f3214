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
Kakhovka" is not Kakhovka). Oblasts listed before one oblast noun ("the Bryansk and Kursk regions",
"Харківську, Сумську та Чернігівську області") are each the oblast (``_coordinated_oblasts``; in English
only before a plural noun).

The view comes from the enricher's shared ``MatchView`` when it passes one. Spans are found without
listing every token: a hit's token index and the word characters before it (both read off the view)
locate it in the text (``_TokenStarts``). A hit whose names need no rule beyond the given-name and sector
checks skips the rest of ``_filter``, and one of a common word that is not capitalized is dropped
before its span is looked up. Priors of candidate sets and distances are remembered (pure values), and
the places of one resolved name are copies of its first one with their own spans.

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
from msgspec.structs import replace

from monitor.alerting.matcher import _ASCII_GAPS, WORD, _only_word_characters, fold, fold_term
from monitor.enrich.enricher import MatchView
from monitor.enrich.gazetteer import (
    COMMON,
    FLAG_BITS,
    FREQUENT,
    FRONT_ADMIN1,
    GIVEN,
    OBLAST_NOUNS,
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
# Memo sizes (each memo is cleared when full): pattern shapes, priors of candidate sets, distances.
_SHAPES_MEMO = 50_000
_PRIORS_MEMO = 20_000
_DISTANCES_MEMO = 50_000
_COMMON_ONLY = object()
_PREVIOUS_WORD = re.compile(r"(\w+)\W*$")
# "на Лиманському напрямку", "у Покровському районі": an adjective made from a place name, naming a
# front sector, district or community, is not the village of that adjective's form (Лиманське).
_SECTOR_NEXT = re.compile(
    r"[\s\-]*(?:напрям|направлен|ділянк|ділянц|участ|плацдарм|фронт|угрупован|группировк|сектор|район|округ|громад"
    r"|водосховищ|водохранилищ)\w*",
    re.IGNORECASE,
)
_ADJECTIVE_END = re.compile(r"(?:ому|ого|ий|ій|им|ім|ом|ая|ой|ую|ої|ою|ей|ое)$")
_ADJECTIVE_LAST = frozenset(ending[-1] for ending in _ADJECTIVE_END.pattern[3:-2].split("|"))  # their last letters
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


# A word joined by a comma or a conjunction to what follows, at the end of a stretch of text.
_COORDINATED = re.compile(
    r"(?<![\w'’-])(?P<name>\w[\w'’-]*)(?:\s*,\s*|\s+(?:and|or|&|та|і|й|и|або|или)\s+)$",
    re.IGNORECASE,
)
_LAST_WORD = re.compile(r"\w+$")
_EN_SINGULAR_NOUNS = frozenset({"oblast", "region", "province"})
# English contexts in which an oblast centre's name means the oblast (see _english_oblast_readings).
_EN_TOWN_AFTER = re.compile(r"\s+(?:town|village|settlement|hamlet)s?\b", re.IGNORECASE)
_EN_WHOLE_BEFORE = re.compile(r"\b(?:the\s+whole\s+of|all\s+of|the\s+entire)\s+$", re.IGNORECASE)
_EN_REGIONS_BEFORE = re.compile(
    r"\b(?:regions?|oblasts?|provinces?)\s*[-–—(\[]?\s*"
    r"(?:(?:composed|made\s+up|consisting)\s+of|including|along\s+with|such\s+as|like|namely|of)\s+$",
    re.IGNORECASE,
)
_EN_LIST_GAP = re.compile(r"\s*,\s*(?:and\s+)?|\s+and\s+", re.IGNORECASE)
MAX_LISTED_OBLASTS = 30  # names followed back from one oblast noun (Ukraine has 24 oblasts)


class PlaceExtractor:
    """Finds gazetteer places in text. One instance serves every thread: after construction only its memos
    of pure values (pattern shapes, priors, distances) change, one dict operation at a time."""

    _loaded: dict[str, PlaceExtractor] = {}  # noqa: RUF012 - a per-process memo, guarded by _lock
    _lock = threading.Lock()
    takes_view = True  # extract() accepts the enricher's shared MatchView

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
        self._shapes: dict[int, tuple[int, int, int, tuple[int, ...] | object | None]] = {}  # pid -> _shape(pid)
        self._distances: dict[tuple[int, float, float], float] = {}  # (candidate, point) -> km, for _near
        self._priors: dict[tuple[int, ...], tuple[int, float, tuple[float, float] | None]] = {}  # _prior_of's memo
        # An oblast's name as it stands before an oblast noun ("bryansk", "брянської") -> the oblast.
        self._oblast_heads: dict[str, int] = {}
        for pid, pattern in enumerate(self._patterns):
            head, _, noun = pattern.rpartition(" ")
            if head and noun in OBLAST_NOUNS:
                for ref in self._refs[pid]:
                    if self.entries[ref >> FLAG_BITS].kind == "oblast":
                        self._oblast_heads.setdefault(head, ref >> FLAG_BITS)
        # A place whose English name is an oblast's (the city of Donetsk) -> that oblast.
        self._capital_oblast: dict[int, int] = {
            index: oblast
            for index, entry in enumerate(self.entries)
            if entry.kind == "place" and (oblast := self._oblast_heads.get(fold_term(entry.name))) is not None
        }
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

    def extract(
        self, text: str, *, area: tuple[float, float] | None = None, view: MatchView | None = None
    ) -> list[Place]:
        """Every place named in ``text``, in text order; spans index ``text``.

        ``view``: the text's ``MatchView`` when the caller has one (the enricher shares it).
        """
        clean, segments = _strip_invisible(text)
        mentions = self._mentions(clean, view if segments is None else None)
        if not mentions:
            return []
        resolved = self._resolve(mentions, area)
        places = []
        # id(resolution) -> its first Place: the others are copies with their span, sharing its candidates
        # (their own list, the same PlaceCandidate values: nothing changes a candidate once made)
        made: dict[int, Place] = {}
        for mention in mentions:
            resolution = resolved.get(mention.candidates)
            if resolution is None:
                continue
            start, end = mention.start, mention.end
            if segments is not None:
                start, end = _original(segments, start), _original(segments, end - 1) + 1
            first = made.get(id(resolution))
            if first is None:
                place = made[id(resolution)] = self._place(resolution, start, end)
            else:
                place = replace(first, start=start, end=end, candidates=first.candidates.copy())
            places.append(place)
        return places

    def _mentions(self, text: str, view: MatchView | None = None) -> list[_Mention]:
        shared = MatchView.of(text, view)
        padded, tokens, words = shared.view, shared.tokens, shared.words
        starts: _TokenStarts | None = None
        spans: list[tuple[int, int]] | None = None  # every token's span, when the view is not aligned
        found: list[_Mention] = []
        shapes = self._shapes
        given = self._given_names
        spaces = 0  # spaces in padded[:position], counted on from the last hit
        position = 0
        for end, pid in self._automaton.iter(padded):
            shape = shapes.get(pid)
            if shape is None:
                shape = self._shape(pid)
            length, inner_spaces, last_word, plain = shape
            # The padded pattern's leading space is padded[end - len(pattern) - 1]; the spaces up to and
            # including it, less the view's own leading one, count the tokens before the match.
            at = end - length  # where the pattern starts in padded (in words: at - 1)
            if plain is _COMMON_ONLY and not inner_spaces and words is not None and not words[at - 1].isupper():
                continue  # what _filter says first: words[at - 1] is the hit's first character as written
            if at >= position:
                spaces += padded.count(" ", position, at)
            else:
                spaces -= padded.count(" ", at, position)
            position = at
            first = spaces - 1
            last = first + inner_spaces
            if tokens is not None:
                if last >= len(tokens):
                    continue
                start, stop = tokens[first][0], tokens[last][1]
            elif words is not None:  # word characters before the hit's tokens count them in the text
                if starts is None:
                    starts = _TokenStarts(text)
                found_start = starts.start(first, at - 1 - first)
                if found_start is None:
                    continue
                start = found_start
                if not inner_spaces:
                    stop = start + length
                else:
                    last_start = starts.start(last, at - 1 + last_word - last)
                    if last_start is None:
                        continue
                    stop = last_start + length - last_word
            else:
                if spans is None:
                    spans = word_spans(text)
                if last >= len(spans):
                    continue
                start, stop = spans[first][0], spans[last][1]
            previous = None
            if tokens is None:  # the view's tokens are the text's, folded: the one before the hit
                previous = padded[padded.rfind(" ", 0, at - 1) + 1 : at - 1]
                if (
                    type(plain) is tuple
                    and previous not in given
                    and previous.isalpha()
                    and text[stop - 1].lower()[-1:] not in _ADJECTIVE_LAST
                ):
                    # _filter's answer without the call: no given name before, no sector word after
                    found.append(_Mention(start, stop, first, last, plain, False))
                    continue
            mention = self._filter(text, pid, start, stop, first, last, previous)
            if mention is not None:
                found.append(mention)
        if len(found) < 2:
            chosen = found
        else:
            found.sort(key=lambda m: (m.first, m.first - m.last))
            chosen = []
            for mention in found:  # leftmost-longest, no overlaps
                if not chosen or mention.first > chosen[-1].last:
                    chosen.append(mention)
        self._english_oblast_readings(text, chosen)
        regions = [m for m in chosen if len(m.candidates) == 1 and not self._is_place[m.candidates[0]]]
        if not regions:
            return chosen
        chosen = self._coordinated_oblasts(text, chosen, regions)
        if len(chosen) < 2:
            return chosen
        regions = sorted(
            (m for m in chosen if len(m.candidates) == 1 and not self._is_place[m.candidates[0]]), key=lambda m: m.first
        )
        firsts = [r.first for r in regions]
        for mention in chosen:  # the regions starting from 3 tokens before its end to OBLAST_WINDOW after
            low = bisect.bisect_left(firsts, mention.last - 3)
            high = bisect.bisect_right(firsts, mention.last + OBLAST_WINDOW)
            near = [
                (self.entries[r.candidates[0]].country, self.entries[r.candidates[0]].admin1_code)
                for r in regions[low:high]
                if r is not mention
            ]
            if near:
                mention.oblasts = frozenset(near)
        return chosen

    def _english_oblast_readings(self, text: str, chosen: list[_Mention]) -> None:
        """English phrases where an oblast centre's bare name means the oblast: "the Donetsk town",
        "the whole of Donetsk", and names listed right after "regions" ("the four regions - along with
        Luhansk, Kherson, and Zaporizhzhia", "the Donbas region [composed of Donetsk and Luhansk]")."""
        if self._capital_oblast.keys().isdisjoint(index for m in chosen for index in m.candidates):
            return  # no oblast centre among the candidates (nearly every text): nothing to read
        oblast_of = [self._oblast_for(mention, text) for mention in chosen]
        for position, mention in enumerate(chosen):
            oblast = oblast_of[position]
            if oblast is None:
                continue
            if _EN_TOWN_AFTER.match(text, mention.end) or _EN_WHOLE_BEFORE.search(
                text, max(0, mention.start - 20), mention.start
            ):
                mention.candidates, mention.weak = (oblast,), False
                continue
            if not _EN_REGIONS_BEFORE.search(text, max(0, mention.start - 60), mention.start):
                continue
            # The list that starts here: names joined by commas and "and", each an oblast centre's name.
            listed = [(mention, oblast)]
            for following, following_oblast in zip(chosen[position + 1 :], oblast_of[position + 1 :], strict=True):
                if following_oblast is None or not _EN_LIST_GAP.fullmatch(text, listed[-1][0].end, following.start):
                    break
                listed.append((following, following_oblast))
            for member, member_oblast in listed:
                member.candidates, member.weak = (member_oblast,), False

    def _oblast_for(self, mention: _Mention, text: str) -> int | None:
        """The oblast whose centre an English mention may name (its first such candidate), else None."""
        capital_of = self._capital_oblast
        oblast = next((capital_of[index] for index in mention.candidates if index in capital_of), None)
        return oblast if oblast is not None and text[mention.start : mention.end].isascii() else None

    def _coordinated_oblasts(self, text: str, chosen: list[_Mention], regions: list[_Mention]) -> list[_Mention]:
        """Oblasts listed before one oblast noun ("the Bryansk and Kursk regions", "Харківської та Сумської
        областей"): each name before the named oblast, joined by a comma or a conjunction, is an oblast too.

        Such a name's mention (the city of Bryansk) becomes the oblast; one that matched nothing (the
        adjective "Сумської") is added. ``regions``: the mentions of ``chosen`` that are not places.
        """
        added = False
        by_span = {(m.start, m.end): m for m in chosen}
        covered = {token for m in chosen for token in range(m.first, m.last + 1)}  # tokens in a mention
        for named in regions:
            index = named.candidates[0]
            if self.entries[index].kind != "oblast":
                continue
            noun = _LAST_WORD.search(text, named.start, named.end)
            folded_noun = fold(noun.group()) if noun is not None else ""
            if folded_noun not in OBLAST_NOUNS or folded_noun in _EN_SINGULAR_NOUNS:
                # "Oblast of Kursk", the name alone (Курщина), or "Kharkiv and Sumy region", which may well
                # be the city and the oblast (a Ukrainian or Russian list is of adjectives: both oblasts)
                continue
            start, first = named.start, named.first
            for _ in range(MAX_LISTED_OBLASTS):
                joined = _COORDINATED.search(text, max(0, start - 80), start)
                if joined is None:
                    break
                head = fold(joined.group("name"))
                oblast = self._oblast_heads.get(head) or self._oblast_heads.get(head.replace("-", " "))
                if oblast is None:
                    break
                name_start, name_end = joined.span("name")
                first -= len(WORD.findall(text, name_start, start))
                last = first + len(WORD.findall(text, name_start, name_end)) - 1
                same = by_span.get((name_start, name_end))
                if same is not None:
                    same.candidates, same.weak = (oblast,), False
                elif covered.isdisjoint(range(first, last + 1)):
                    mention = _Mention(name_start, name_end, first, last, (oblast,), False)
                    by_span[(name_start, name_end)] = mention
                    covered.update(range(first, last + 1))
                    chosen.append(mention)
                    added = True
                else:
                    break  # part of a longer name: leave it
                start = name_start
        if added:
            chosen.sort(key=lambda m: m.first)
        return chosen

    def _filter(
        self, text: str, pid: int, start: int, stop: int, first: int, last: int, previous: str | None = None
    ) -> _Mention | None:
        """The places a hit can stand for here, after the capitalization and context rules.

        ``previous``: the folded token before the hit in a match view whose tokens are the text's (None
        when unknown). A given name right before the hit is that whole token, so when the token is all
        letters and not a given name the check for one is skipped.
        """
        plain = self._shape(pid)[3]
        if plain is _COMMON_ONLY and first == last and not text[start].isupper():
            return None  # one word, not capitalized: no ref survives the capitalization rule
        if (previous is None or previous in self._given_names or not previous.isalpha()) and _after_given_name(
            text, start, self._given_names
        ):
            return None  # "Roman Chop", "Ivan Sirko": a surname
        if (
            text[stop - 1].lower()[-1:] in _ADJECTIVE_LAST
            and _SECTOR_NEXT.match(text, stop)
            and _ADJECTIVE_END.search(text[start:stop].lower())
        ):
            return None  # "на Лиманському напрямку"
        if type(plain) is tuple:
            return _Mention(start, stop, first, last, plain, False)
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

    def _shape(self, pid: int) -> tuple[int, int, int, tuple[int, ...] | object | None]:
        """``(length, spaces, where its last word starts, _plain_candidates)`` of a pattern (remembered)."""
        shape = self._shapes.get(pid)
        if shape is None:
            if len(self._shapes) >= _SHAPES_MEMO:
                self._shapes.clear()
            pattern = self._patterns[pid]
            shape = (len(pattern), pattern.count(" "), pattern.rfind(" ") + 1, self._plain_candidates(pid))
            self._shapes[pid] = shape
        return shape

    def _plain_candidates(self, pid: int) -> tuple[int, ...] | object | None:
        """What ``_filter`` can shortcut for a pattern: its candidates when none of its refs has a rule
        beyond the given-name and sector ones (no veto, not a given name or common word, no context
        needed); ``_COMMON_ONLY`` when every ref is only a common word (so needs capitals); else None."""
        indices = []
        common = 0
        for ref in self._refs[pid]:
            index, flags = ref >> FLAG_BITS, ref & 7
            if index in self._vetoes or flags & GIVEN or index in self._needs_context:
                return None
            common += bool(flags & COMMON)
            indices.append(index)
        if not indices:
            return None
        if not common:
            return tuple(indices)
        return _COMMON_ONLY if common == len(indices) else None

    # ------------------------------------------------------------------ resolution

    def _near(self, index: int, points: Iterable[tuple[float, float]]) -> float:
        """The distance from a candidate to the nearest of ``points`` (each distance remembered)."""
        lat, lon = self._lat[index], self._lon[index]
        distances = self._distances
        nearest = float("inf")
        for p_lat, p_lon in points:
            key = (index, p_lat, p_lon)
            distance = distances.get(key)
            if distance is None:
                if len(distances) >= _DISTANCES_MEMO:
                    distances.clear()
                distance = distances[key] = haversine_km(lat, lon, p_lat, p_lon)
            if distance < nearest:
                nearest = distance
        return nearest

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
            best, share, anchor = self._prior_of(key)
            if len(key) == 1:
                resolved[key] = _Resolution(best, 1.0, [best])
            if anchor is not None and key in strong_keys:
                anchors[key] = anchor
        pending = sorted((k for k in keys if len(k) > 1), key=len)
        undecided: list[tuple[int, ...]] = []
        for key in pending:
            pool = self._in_oblasts(key, local.get(key))
            best, share, _ = self._prior_of(key)
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

    def _prior_of(self, key: tuple[int, ...]) -> tuple[int, float, tuple[float, float] | None]:
        """``(heaviest candidate, its share of the prior weight, its point if it can anchor others)``;
        the last for a place that is the only candidate or a dominant one (remembered per key)."""
        known = self._priors.get(key)
        if known is None:
            weight = self._weight
            best = max(key, key=weight.__getitem__)
            share = weight[best] / sum(weight[i] for i in key)
            anchor = None
            if self._is_place[best] and (len(key) == 1 or share >= DOMINANT_SHARE):
                anchor = (self._lat[best], self._lon[best])
            if len(self._priors) >= _PRIORS_MEMO:
                self._priors.clear()
            known = self._priors[key] = (best, share, anchor)
        return known

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
    if not _may_have_invisible(text):
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


# The UTF-8 lead bytes of every ``_INVISIBLE`` character; a text with none of them has none of those.
_INVISIBLE_LEADS = frozenset(
    char.encode("utf-8")[0]
    for char in _INVISIBLE.findall("".join(map(chr, range(0x80, 0x10000))))  # all in the BMP
)
_NOT_INVISIBLE_LEADS = bytes(b for b in range(256) if b not in _INVISIBLE_LEADS)


def _may_have_invisible(text: str) -> bool:
    """False when ``text`` has no ``_INVISIBLE`` character (C-level checks); True means "search for them"."""
    if text.isascii():
        return False
    if not text.encode("utf-8", "surrogatepass").translate(None, _NOT_INVISIBLE_LEADS):
        return False
    return _INVISIBLE.search(text) is not None


def word_spans(text: str) -> list[tuple[int, int]]:
    """``[m.span() for m in WORD.finditer(text)]``: the spans of the text's word tokens."""
    return [m.span() for m in WORD.finditer(text)]


class _TokenStarts:
    """Where the text's word tokens start, from their index and the word characters before them.

    The text with every non-word character made a space (``gapped``: same offsets) has the tokens as its
    runs of non-spaces. Token ``k`` with ``n`` word characters before it starts right before the first
    position ``g`` with ``n + 1`` of them before it: ``g = n + 1 + (spaces before g)``, solved by a few
    C-level ``count`` calls from the last token found (going back, from the nearest one found before),
    starting from one space per token in between (the least there can be).
    """

    __slots__ = ("_gapped", "_letters", "_marks", "_position", "_starts", "_token", "_tokens")

    def __init__(self, text: str) -> None:
        if text.isascii():
            gapped = text.encode("ascii").translate(_ASCII_GAPS).decode("ascii")
        else:
            raw = text.encode("utf-8", "surrogatepass")
            gapped = raw.translate(_ASCII_GAPS).decode("utf-8", "surrogatepass")
            if not _only_word_characters(raw):
                gapped = _NON_WORD_LEFT.sub(" ", gapped)
        self._gapped = gapped
        self._position = self._letters = self._token = 0  # the cursor: a token's start, letters before, index
        self._marks = [0]  # tokens found so far (ascending), with their starts and the letters before them
        self._tokens = [0]
        self._starts = [0]

    def start(self, token: int, letters: int) -> int | None:
        """Where token number ``token``, with ``letters`` word characters before it, starts (None past the end)."""
        position, before, at = self._position, self._letters, self._token
        if letters < before:
            back = bisect.bisect_right(self._marks, letters) - 1
            position, before, at = self._starts[back], self._marks[back], self._tokens[back]
        gapped = self._gapped
        base = position + letters - before + 1
        found = base + token - at
        while True:
            moved = base + gapped.count(" ", position, found)
            if moved == found:
                break
            found = moved
        found -= 1  # the token's first character
        if found >= len(gapped):
            return None
        self._position, self._letters, self._token = found, letters, token
        if letters > self._marks[-1]:
            self._marks.append(letters)
            self._tokens.append(token)
            self._starts.append(found)
        return found


_NON_WORD_LEFT = re.compile(r"[^\w ]")  # in a text whose ASCII non-word characters are spaces already


def _original(segments: list[tuple[int, int]], offset: int) -> int:
    index = bisect.bisect_right(segments, (offset, float("inf"))) - 1
    clean_start, original_start = segments[max(index, 0)]
    return original_start + offset - clean_start


_SPAN_WORDS = re.compile(r"[\w'’ʼ]+")


def _position(text: str, start: int, stop: int) -> tuple[bool, bool]:
    """``(every word title-cased, at a weak position)`` for a mention of a common-word name.

    Weak: the start of the text, a line or a sentence, or written in capitals, unless a settlement cue
    ("с.", "village", "біля") comes right before.
    """
    span = text[start:stop]
    # Words split at spaces and hyphens only: an apostrophe is inside a word (Куп'янськ, Слов'янськ).
    words = [w for w in _SPAN_WORDS.findall(span) if len(w) >= 3] or [span]
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
