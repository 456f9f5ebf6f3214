"""Military units in item text: numbered brigades, regiments, battalions, divisions, corps and armies,
plus named formations (Wagner, Azov, the Russian Volunteer Corps ...), each as a ``monitor.schema.Unit``.

Two matchers, run on the same (normalized) text; spans index that text.

* A numbered-unit grammar (one regex): NUMBER, then either an abbreviation ("92 ОМБр", "92nd OMBr",
  "3 ОШБр", "200 ОМСБр") or up to five modifiers and a unit noun ("3rd Separate Assault Brigade",
  "3-тя окрема штурмова бригада", "92-я бригада", "200-я мотострелковая бригада", "92nd Ivan Sirko
  Separate Mechanized Brigade"), optionally followed by a qualifier ("бригада морської піхоти", "ЗСУ").
  NUMBER is digits with an ordinal suffix (en ``st nd rd th``; uk/ru a hyphen and one to four letters:
  ``-а -га -тя -ша -ма -та -я -й -ї -го`` ...), and may be a list ("92nd and 93rd brigades", "92-а та
  93-тя бригади": one Unit per number). A bare number counts only before an abbreviation, or before a
  singular noun with at least one specialization word ("47 окрема механізована бригада"): "3 brigades"
  and "3 бригади" are counts, not units. Years (1900-2100) never count bare. A unit named in a street
  name ("вулиця Героїв 93-ї бригади", "92nd Brigade Street") is skipped.
* Curated names through the alerting matcher (``monitor.alerting.matcher.CompiledRules``, one rule per
  formation, so the case forms and transliterations are the shared ones): named formations and the
  honorifics/nicknames of numbered units ("Ivan Sirko" -> the 92nd, "Третя штурмова" -> the 3rd).

Resolution of a numbered mention: the specialization (from modifiers, abbreviation or qualifier), the
side (``ua``/``ru`` from words such as Russian, гвардійська, ЗСУ, or a specialization only one army has,
e.g. motor rifle -> ru, mechanized -> ua) and the type select among the curated known units with that
number (data/units.yaml); a unique match gives its id and name, otherwise the id is built as
``<ua|ru|unit>-<n>[-<spec>]-<type>`` ("unit-" when the side is unknown).

Speed: the grammar is tried only at digits that follow no word character (``enricher.number_starts``,
shared with the quantities), the street test runs its regex only when a street word can be there, and
word classes, unit nouns and modifier lists are remembered. The curated names are searched in the
enricher's shared ``MatchView`` (one automaton pass with the people's names, ``enricher.RuleIndex``).

Overlaps: the longest span wins ("92nd Ivan Sirko Separate Mechanized Brigade" is one unit, not also
"Ivan Sirko"); an honorific right after its numbered unit ("93-тя бригада "Холодний Яр"") or right after
its bare number ("93rd Kholodnyi Yar") is merged into one span.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import yaml

from monitor.alerting.matcher import CompiledRules
from monitor.config import Rule
from monitor.enrich.enricher import MatchView, number_starts
from monitor.enrich.regex_parts import top_level_alternatives
from monitor.schema import Unit

__all__ = ["UnitExtractor", "ordinal"]

DATA = Path(__file__).with_name("data") / "units.yaml"

_CYR = "а-яіїєґё"
TYPE_NOUNS: dict[str, str] = {
    "brigade": r"brigades?|bde|бригад(?:а|и|у|ою|і|ам|ами|ах|е|ой|ы)?",
    "regiment": r"regiments?|полк(?:у|ом|и|ів|а|ов|е|ах|ами)?",
    "battalion": r"battalions?|батальйон(?:у|ом|и|ів|і|ами|ах)?|батальон(?:а|у|ом|ы|ов|е|ами|ах)?",
    "division": r"divisions?|дивізі(?:я|ї|ю|єю|й)|дивизи(?:я|и|ю|ей|й)",
    "corps": r"corps|корпус(?:у|ом|и|ів|а|е|ов)?",
    "army": r"army|armies|армі(?:я|ї|ю|єю)|арми(?:я|и|ю|ей)",
}
_PLURAL_NOUN = re.compile(
    r"(?:brigades|regiments|battalions|divisions|armies|бригад(?:ам|ами|ах)?|полк(?:и|ів|ов|ах|ами)"
    r"|батальйон(?:и|ів|ами|ах)|батальон(?:ы|ов|ами|ах))$",
    re.IGNORECASE,
)
_NOMINATIVE = frozenset(
    {
        *("brigade", "regiment", "battalion", "division", "corps", "army"),
        *("бригада", "полк", "батальйон", "батальон", "дивізія", "дивизия", "корпус", "армія", "армия"),
    }
)
# Adjective endings that only a plural has ("окремі бригади", "отдельные бригады"): with a bare number
# these read as a count ("3 окремі бригади" = three separate brigades).
_PLURAL_ADJ = re.compile(r"(?:і|их|ими|ые|ых|ыми|ие)$", re.IGNORECASE)
_SEPARATE = r"separate|independent|окрем[" + _CYR + r"]*|отдельн[" + _CYR + r"]*"
_ORD = r"\d{1,4}(?:st|nd|rd|th|\s?-\s?[" + _CYR + r"]{1,4})?"
_ORD_PARTS = re.compile(r"(\d{1,4})(st|nd|rd|th|\s?-\s?[" + _CYR + r"]{1,4})?", re.IGNORECASE)
_JOIN = r"(?:\s*,\s*|\s+(?:and|&|та|і|й|и)\s+)"
_STREET_BEFORE = re.compile(
    r"(?:вул\.|вулиц[" + _CYR + r"]*|ул\.|улиц[" + _CYR + r"]*|просп\.|проспект[" + _CYR + r"]*|пров\.|"
    r"провулок|переулок|street|avenue)\s+(?:[\w'-]+\s+){0,3}$",
    re.IGNORECASE,
)
_STREET_AFTER = re.compile(r"^\s+(?:street|st\.|avenue|ave\.|road|rd\.|lane|boulevard)\b", re.IGNORECASE)
_HONORIFIC_NUMBER = re.compile(r"(?<!\d)(\d{1,4})(?:st|nd|rd|th|\s?-\s?[" + _CYR + r"]{1,3})?\s+$", re.IGNORECASE)
_SEPARATE_WORD = re.compile(_SEPARATE, re.IGNORECASE)
_CYR_LETTER = re.compile(f"[{_CYR}]", re.IGNORECASE)
_WORD_BEFORE = re.compile(r"([\w'-]+)\s+$")
_WORD_BACKWARDS = re.compile(r"[\w'-]+")  # _WORD_BEFORE's group, matched on the reversed text
_MEMO = 20_000  # entries in each memo of the extractor's pure helpers (cleared when full)
_QUOTES = '"«»“”„'
# Between a numbered unit and its honorific: quotes, "імені"/"named after" and up to three lowercase words
# ("92-ї бригади імені кошового отамана Івана Сірка").
_MERGE_GAP = re.compile(r"^[\s\"'«»(,-]*(?:(?i:імені|имени|named after)(?:\s+[a-zа-яіїєґё']+){0,3}|the)?[\s\"'«»(-]*$")


def ordinal(number: int) -> str:
    """``1st 2nd 3rd 4th ... 11th 12th 13th ... 21st 92nd``."""
    if 10 <= number % 100 <= 20:
        return f"{number}th"
    return f"{number}{ {1: 'st', 2: 'nd', 3: 'rd'}.get(number % 10, 'th') }"


def _phrase(text: str) -> str:
    """A literal phrase as a regex whose spaces and hyphens match any run of them."""
    return r"[\s-]+".join(re.escape(word) for word in re.split(r"[\s-]+", text.strip()))


def _first_letter_guard(alternatives: list[str]) -> str:
    """``(?=[letters])`` for the first letters of regex alternatives that each start with a letter (not
    made optional by a quantifier), else ""."""
    if not all(alt[:1].isalpha() and alt[1:2] not in ("?", "*", "{") for alt in alternatives):
        return ""
    letters = {alternative[0] for alternative in alternatives}
    return "(?=[" + "".join(sorted(letters)) + "])"


def _alternation(items: list[str]) -> str:
    return "|".join(sorted(items, key=len, reverse=True))


@dataclass(frozen=True, slots=True)
class _Known:
    id: str
    name: str
    number: int
    type: str
    specs: tuple[str, ...]
    country: str | None


@dataclass(slots=True)
class _NameMeta:
    """What a curated name rule resolves to, and the checks its hits must pass."""

    id: str
    name: str
    number: int | None = None
    caps: bool = False
    not_before: list[re.Pattern[str]] = field(default_factory=list)
    not_after: list[re.Pattern[str]] = field(default_factory=list)


@dataclass(slots=True)
class _Found:
    start: int
    end: int
    id: str
    name: str
    numbered: bool = False
    number: int | None = None


class UnitExtractor:
    """Finds military units in text; build once with ``load()`` and reuse (read-only, thread-safe)."""

    takes_view = True  # extract() accepts the enricher's shared MatchView

    def __init__(self, data: dict[str, Any]) -> None:
        self._spec_en: dict[str, str] = {}
        self._spec_stems: list[tuple[str, str]] = []
        self._spec_country: dict[str, str | None] = {}
        self._trailing: dict[str, tuple[str | None, str | None]] = {}  # folded phrase -> (spec, country)
        for spec, entry in data["specs"].items():
            self._spec_country[spec] = entry.get("country")
            for word in entry.get("en", []):
                self._spec_en[" ".join(re.split(r"[\s-]+", word.lower()))] = spec
            for stem in entry.get("stems", []):
                self._spec_stems.append((stem.lower(), spec))
            for phrase in entry.get("trailing", []):
                self._trailing[self._key(phrase)] = (spec, None)
        self._hint_en: dict[str, str] = {}
        self._hint_stems: list[tuple[str, str]] = []
        for country, entry in data["hints"].items():
            for word in entry.get("en", []):
                self._hint_en[word.lower()] = country
            for stem in entry.get("stems", []):
                self._hint_stems.append((stem.lower(), country))
            for phrase in entry.get("trailing", []):
                self._trailing[self._key(phrase)] = (None, country)
        self._spec_stems.sort(key=lambda pair: len(pair[0]), reverse=True)
        self._abbrevs: dict[str, dict[str, Any]] = {self._key(k): v for k, v in data["abbreviations"].items()}

        self._known: dict[tuple[int, str], list[_Known]] = {}
        for entry in data["known"]:
            known = _Known(
                entry["id"], entry["name"], int(entry["number"]), entry["type"], tuple(entry["specs"]), entry["country"]
            )
            self._known.setdefault((known.number, known.type), []).append(known)

        # Longest words first; then "separate"; a capitalized English word last (honorific names: "92nd
        # Ivan Sirko Separate Mechanized Brigade"), so that "Air Assault" is read as one specialization.
        modifiers = "|".join(
            [
                _alternation(
                    [
                        *(_phrase(w) for w in self._spec_en),
                        *(re.escape(w) for w in self._hint_en),
                        *(re.escape(stem) + f"[{_CYR}'-]*" for stem, _ in (*self._spec_stems, *self._hint_stems)),
                    ]
                ),
                _SEPARATE,
                r"(?-i:[A-Z][a-z'’]+)",
            ]
        )
        nouns = "|".join(f"(?:{pattern})" for pattern in TYPE_NOUNS.values())
        abbrevs = _alternation([_phrase(k).replace(r"[\s-]+", r"\s*") for k in data["abbreviations"]])
        trailing = _alternation(
            [_phrase(p) for entry in data["specs"].values() for p in entry.get("trailing", [])]
            + [_phrase(p) for entry in data["hints"].values() for p in entry.get("trailing", [])]
        )
        self._modifier = re.compile(rf"(?:{modifiers})(?![\w])", re.IGNORECASE)
        self._noun_types = [(t, re.compile(rf"(?:{p})$", re.IGNORECASE)) for t, p in TYPE_NOUNS.items()]
        # The abbreviation and noun alternations are long and, ignoring case, ``re`` tries each alternative
        # in turn: a lookahead for the letters they can start with (ignoring case too) rules most words out
        # at once. A lookahead only restates what the alternation needs, so the matches are the same.
        abbr_guard = _first_letter_guard([_phrase(k) for k in data["abbreviations"]])
        noun_guard = _first_letter_guard(
            [alt for pattern in TYPE_NOUNS.values() for alt in top_level_alternatives(pattern)]
        )
        self._grammar = re.compile(
            rf"(?<![\w.,:/+\-№#])(?P<chain>{_ORD}(?:{_JOIN}{_ORD})*)"
            rf"(?:\s*{abbr_guard}(?P<abbr>{abbrevs})(?![\w])"
            rf"|\s+(?P<mods>(?:(?:{modifiers})(?![\w])[\s-]+){{0,5}}){noun_guard}(?P<noun>{nouns})(?![\w]))"
            rf"(?:\s+(?P<trail>{trailing})(?![\w]))?",
            re.IGNORECASE,
        )
        self._guards = (abbr_guard, noun_guard)  # (for tests: the grammar without them is the plain one)

        rules: list[Rule] = []
        self._meta: dict[str, _NameMeta] = {}
        for entry in data["known"]:
            if entry.get("aliases"):
                rules.append(Rule(name=entry["id"], any=[self._term(t) for t in entry["aliases"]]))
                self._meta[entry["id"]] = _NameMeta(
                    entry["id"], entry["name"], int(entry["number"]), caps=bool(entry.get("caps"))
                )
        for entry in data["named"]:
            rules.append(Rule(name=entry["id"], any=[self._term(t) for t in entry["terms"]]))
            self._meta[entry["id"]] = _NameMeta(
                entry["id"],
                entry["name"],
                caps=bool(entry.get("caps")),
                not_before=[re.compile(p, re.IGNORECASE) for p in entry.get("not_before", [])],
                not_after=[re.compile(p, re.IGNORECASE) for p in entry.get("not_after", [])],
            )
        self._names = CompiledRules(rules)
        self._classified: dict[str, tuple[str | None, str | None]] = {}  # _classify's memo
        self._nouns: dict[str, tuple[str, bool, bool]] = {}  # _noun's memo
        self._mods: dict[str, tuple[str, ...]] = {}  # _mod_words' memo

    @property
    def name_rules(self) -> CompiledRules:
        """The curated names (formations, honorifics) as alerting rules, one per unit."""
        return self._names

    @staticmethod
    def _key(phrase: str) -> str:
        return " ".join(re.split(r"[\s-]+", phrase.strip().casefold().replace("ё", "е")))

    @staticmethod
    def _term(term: str) -> str:
        """Latin terms match as written (no Cyrillic guesses); Cyrillic ones get case forms unless quoted."""
        stripped = term.strip()
        if stripped[:1] not in "\"'" and re.search(f"[{_CYR}]", stripped, re.IGNORECASE) is None:
            return f'"{stripped}"'
        return stripped

    @classmethod
    def load(cls, path: Path | None = None) -> UnitExtractor:
        """The extractor for the curated data file (cached per path: loading twice is free)."""
        return _load(path or DATA)

    # ------------------------------------------------------------------------------------------ extract

    def extract(self, text: str, *, view: MatchView | None = None) -> list[Unit]:
        """Every unit named in ``text``, in text order; ``text[start:end]`` is the mention.

        ``view``: the text's ``MatchView`` when the caller has one (the enricher shares it).
        """
        if not text:
            return []
        view = MatchView.of(text, view)
        starts = view.number_starts()
        found = self._numbered(text, starts) if starts else []
        found += self._named(text, view)
        if not found:
            return []
        found.sort(key=lambda f: (f.start, -(f.end - f.start)))
        kept: list[_Found] = []
        for item in found:
            if kept and item.start < kept[-1].end:
                if item.end - item.start > kept[-1].end - kept[-1].start:
                    kept[-1] = item
                continue
            kept.append(item)
        merged: list[_Found] = []
        for item in kept:
            if not item.numbered and item.number is not None:
                # "93rd Kholodnyi Yar": the honorific's own number right before it joins the span
                before = _HONORIFIC_NUMBER.search(text, max(0, item.start - 12), item.start)
                if (
                    before is not None
                    and int(before.group(1)) == item.number
                    and (not merged or merged[-1].end <= before.start())
                ):
                    item.start = before.start()
            if (
                merged
                and merged[-1].id == item.id
                and item.start - merged[-1].end <= 60
                and _MERGE_GAP.match(text[merged[-1].end : item.start])
            ):
                merged[-1].end = item.end
                continue
            merged.append(item)
        for item in merged:  # a name opened with a quote inside the span ends with its closing quote
            inside = text[item.start : item.end]
            if item.end < len(text) and text[item.end] in _QUOTES and sum(inside.count(q) for q in _QUOTES) % 2:
                item.end += 1
        return [Unit(id=f.id, name=f.name, start=f.start, end=f.end) for f in merged]

    def _grammar_matches(self, text: str, starts: list[int] | None = None) -> Iterator[re.Match[str]]:
        """``self._grammar.finditer(text)``, tried only where a number can start.

        A match starts with a digit that no word character (nor ``.,:/+-№#``) precedes, so only the
        positions of ``enricher.number_starts`` (or ``starts``, the same) are tried, each no earlier than
        the last match's end: ``re`` finds digits with a fast character scan, while the grammar itself has
        no literal prefix and would be tried at every position.
        """
        end = 0
        grammar = self._grammar
        for position in number_starts(text) if starts is None else starts:
            if position < end:
                continue
            match = grammar.match(text, position)
            if match is not None:
                end = match.end()
                yield match

    def _numbered(self, text: str, starts: list[int] | None = None) -> list[_Found]:
        out: list[_Found] = []
        for match in self._grammar_matches(text, starts):
            start = match.start()
            if _street_before(text, start) or _STREET_AFTER.match(text, match.end()):
                continue
            numbers = [(m.start(), m.end(), int(m.group(1)), m.group(2)) for m in _ORD_PARTS.finditer(match["chain"])]
            abbr = self._abbrevs.get(self._key(match["abbr"])) if match["abbr"] else None
            spec: str | None = None
            unit_type: str
            country: str | None = None  # from the text's own words: wins over a guess from the spec
            guess: str | None = None
            if abbr is not None:
                unit_type = abbr["type"]
                spec = abbr.get("spec")
                guess = abbr.get("country")
                if abbr.get("ordinal_only") and any(suffix is None for *_, suffix in numbers):
                    continue
            else:
                noun = match["noun"]
                unit_type, plural, nominative = self._noun(noun)
                mods = self._mod_words(match["mods"] or "")
                for word in mods:
                    word_spec, word_country = self._classify(word)
                    spec = spec or word_spec
                    country = country or word_country
                trail_spec = self._trailing.get(self._key(match["trail"]), (None, None))[0] if match["trail"] else None
                if any(suffix is None for *_, suffix in numbers):
                    # A bare number: a unit only when the words say "one unit of a kind" (see the module doc).
                    has_spec = any(self._classify(w)[0] or _SEPARATE_WORD.fullmatch(w) for w in mods)
                    cyr_mods = [w for w in mods if _CYR_LETTER.search(w)]
                    singular = not plural and not (cyr_mods and _PLURAL_ADJ.search(cyr_mods[0]))
                    if (
                        len(numbers) > 1
                        or not singular
                        or not (has_spec or (trail_spec and nominative))
                        or 1900 <= numbers[0][2] <= 2100
                    ):
                        continue
            if match["trail"]:
                trail_spec, trail_country = self._trailing.get(self._key(match["trail"]), (None, None))
                spec = spec or trail_spec
                country = country or trail_country
            country = country or self._country_before(text, start)
            if spec is not None:
                guess = guess or self._spec_country.get(spec)
            base = match.start("chain")
            for index, (a, b, number, _suffix) in enumerate(numbers):
                unit_id, name = self._resolve(number, unit_type, spec, country, guess)
                last = index == len(numbers) - 1
                out.append(_Found(base + a, match.end() if last else base + b, unit_id, name, True, number))
        return out

    def _noun(self, noun: str) -> tuple[str, bool, bool]:
        """``(unit type, plural, nominative singular)`` of a unit noun as written (remembered)."""
        known = self._nouns.get(noun)
        if known is None:
            if len(self._nouns) >= _MEMO:
                self._nouns.clear()
            unit_type = next(t for t, regex in self._noun_types if regex.match(noun))
            plural = _PLURAL_NOUN.match(noun) is not None
            known = self._nouns[noun] = (unit_type, plural, self._key(noun) in _NOMINATIVE)
        return known

    def _mod_words(self, mods: str) -> list[str]:
        """The modifier words of a grammar match's ``mods`` group (remembered)."""
        known = self._mods.get(mods)
        if known is None:
            if len(self._mods) >= _MEMO:
                self._mods.clear()
            known = self._mods[mods] = tuple(m.group() for m in self._modifier.finditer(mods))
        return list(known)

    def _classify(self, word: str) -> tuple[str | None, str | None]:
        """(spec, country) a modifier word stands for (remembered: a handful of words recur)."""
        known = self._classified.get(word)
        if known is None:
            if len(self._classified) >= _MEMO:
                self._classified.clear()
            known = self._classified[word] = self._classify_word(word)
        return known

    def _classify_word(self, word: str) -> tuple[str | None, str | None]:
        low = self._key(word)
        if low in self._spec_en:
            return self._spec_en[low], None
        if low in self._hint_en:
            return None, self._hint_en[low]
        for stem, spec in self._spec_stems:
            if low.startswith(stem):
                return spec, None
        for stem, country in self._hint_stems:
            if low.startswith(stem):
                return None, country
        return None, None

    def _country_before(self, text: str, start: int) -> str | None:
        """The side named by the word right before the number ("Ukrainian 92nd brigade", "російська 200-та")."""
        word = _word_before(text[max(0, start - 30) : start])
        return self._classify(word)[1] if word is not None else None

    def _resolve(
        self, number: int, unit_type: str, spec: str | None, country: str | None, guess: str | None
    ) -> tuple[str, str]:
        candidates = self._known.get((number, unit_type), [])
        if spec is not None:
            candidates = [k for k in candidates if spec in k.specs]
        side = country or guess
        if side is not None:
            candidates = [k for k in candidates if k.country == side]
        if len(candidates) == 1:
            return candidates[0].id, candidates[0].name
        if side is None and candidates and len({k.country for k in candidates}) == 1:
            side = candidates[0].country
        slug = f"{number}-{spec}-{unit_type}" if spec else f"{number}-{unit_type}"
        title = " ".join(part.capitalize() for part in (spec or "").split("-") if part)
        name = " ".join(part for part in (ordinal(number), title, unit_type.capitalize()) if part)
        return f"{side or 'unit'}-{slug}", name

    def _named(self, text: str, view: MatchView | None = None) -> list[_Found]:
        out: list[_Found] = []
        for rule_match in MatchView.of(text, view).match(self._names):
            meta = self._meta[rule_match.rule.name]
            for hit in rule_match.hits:
                surface = text[hit.start : hit.end]
                written = hit.term.strip("\"'")
                if meta.caps and not surface[:1].isupper():
                    continue
                if len(written) > 1 and written.isupper() and not surface.isupper():
                    continue  # an abbreviation written in capitals matches only capitals (РДК, ЛСР)
                if any(p.search(text[max(0, hit.start - 30) : hit.start]) for p in meta.not_before):
                    continue
                if any(p.search(text[hit.end : hit.end + 30]) for p in meta.not_after):
                    continue
                out.append(_Found(hit.start, hit.end, meta.id, meta.name, False, meta.number))
        return out


def _word_before(window: str) -> str | None:
    """``_WORD_BEFORE.search(window).group(1)`` (or None): the run of word characters, apostrophes and
    hyphens right before the window's trailing whitespace, read backwards with one ``match``."""
    stripped = window.rstrip()  # str.isspace() is what \s matches
    if len(stripped) == len(window):
        return None
    found = _WORD_BACKWARDS.match(stripped[::-1])
    return None if found is None else stripped[len(stripped) - found.end() :]


# Every street word of _STREET_BEFORE contains one of these (case-folded; see _street_before).
_STREET_HINTS = ("ул", "пр", "street", "avenue")


def _street_before(text: str, start: int) -> bool:
    """Whether a street word stands up to four words before ``start`` ("вул. Героїв 93-ї бригади").

    ``_STREET_BEFORE`` is tried only when the window has one of ``_STREET_HINTS``: each of its letters
    matches (ignoring case, as ``re`` does) only characters that case-fold to it.
    """
    window_start = max(0, start - 40)
    window = text[window_start:start].casefold()
    if "ул" not in window and "пр" not in window and "street" not in window and "avenue" not in window:
        return False  # none of _STREET_HINTS
    return _STREET_BEFORE.search(text, window_start, start) is not None


@cache
def _load(path: Path) -> UnitExtractor:
    with path.open(encoding="utf-8") as handle:
        return UnitExtractor(yaml.safe_load(handle))
