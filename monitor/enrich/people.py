"""People from a curated list (data/people.yaml) named in item text, as ``monitor.schema.Person``.

Matching is the alerting matcher's (``monitor.alerting.matcher.CompiledRules``): one rule per person whose
terms are the surname variants, so Ukrainian/Russian case forms (Зеленського, Пригожина, Сирському) and
transliterations come from the one shared model (``monitor.alerting.forms``). Latin variants match as
written (a Latin term would otherwise also get guessed Cyrillic spellings). The model has no instrumental
for -ов/-ев/-ин surnames (Путиным, Путіним, Пригожиним), so those forms are added here.

After a surname is found:

* a first name of that person (any case form: Олександра Сирського, Vladimir Putin) or its initial
  ("В. Путин", "O. Syrskyi") right before it is included in the span;
* ``caps`` forms (surnames that are also rarer common words: ru "песков" = of sands) count only when
  capitalized;
* ``ambiguous`` forms (surnames that are also common words: uk "маляр" = painter) count only when
  capitalized and either not sentence-initial, or after a first name or a title (generals, ministers,
  spokesmen ...), or (``gender: f``) before a feminine past-tense verb ("Маляр заявила": the common noun
  is masculine), or when the same person is named unambiguously elsewhere in the text;
* ``common`` surnames (Prokopenko, Zakharova) count only with the first name or initial, or when the
  person is named with a first name elsewhere in the text;
* ``other_first``: a surname right after another bearer's first name is not this person
  ("Ахмат Кадыров").

The surnames are searched in the enricher's shared ``MatchView`` when it passes one (one automaton pass
with the units' names, ``enricher.RuleIndex``); the hits are those of ``CompiledRules.match``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import yaml

# Only the matcher is imported: importing monitor.alerting.forms first would leave the matcher without its
# inflection model (a circular import that fails quietly), so first names are expanded through it too.
from monitor.alerting.matcher import CompiledRules, fold, term_forms
from monitor.config import Rule
from monitor.enrich.enricher import MatchView
from monitor.schema import Person

__all__ = ["PeopleExtractor"]

DATA = Path(__file__).with_name("data") / "people.yaml"

_CYRILLIC = re.compile(r"[а-яіїєґё]", re.IGNORECASE)
# Masculine possessive-type surnames whose instrumental the suffix model does not produce.
_INSTRUMENTAL_STEM = re.compile(r"(?:ов|ев|єв|ёв|ин|ін|їн|ын)$", re.IGNORECASE)
_PREVIOUS_WORD = re.compile(r"([^\W\d_]+(?:['-][^\W\d_]+)*)(\.?)\s+$")
_WORDS_BEFORE = re.compile(r"[^\W\d_]+")
_FEMININE_VERB_AFTER = re.compile(r"\s+[а-яіїєґё']{2,}л[аи](?:ся|сь)?\b")
_SENTENCE_END = ".!?:;…"
_OPENERS = " \t\"'«»“„([*•-—–"


def _quote(term: str) -> str:
    return term if term[:1] in "\"'" else f'"{term}"'


@dataclass(slots=True)
class _Entry:
    id: str
    name: str
    first: frozenset[str]  # folded first names and their case forms
    initials: frozenset[str]  # folded first letters of the first names
    ambiguous: frozenset[str]  # terms (as written in the rule) that need capitals and context
    caps: frozenset[str]  # terms that need capitals only
    common: bool
    other_first: frozenset[str]
    feminine: bool
    origin: dict[str, str] = field(default_factory=dict)  # generated term -> the data term it came from


@dataclass(slots=True)
class _Mention:
    entry: _Entry
    start: int
    end: int
    with_first: bool
    needs: str | None  # None | "ambiguous" | "common"
    titled: bool


class PeopleExtractor:
    """Finds people from the curated list; build once with ``load()`` and reuse (read-only)."""

    takes_view = True  # extract() accepts the enricher's shared MatchView

    def __init__(self, data: dict[str, Any]) -> None:
        titles = data.get("titles", {})
        self._titles = tuple(fold(t) for group in titles.values() for t in group)
        rules: list[Rule] = []
        self._entries: dict[str, _Entry] = {}
        for person in data["people"]:
            first_forms: set[str] = set()
            for first in person.get("first", []):
                first_forms.update(form for form in term_forms(first)[1] if " " not in form)
            terms: list[str] = []
            origin: dict[str, str] = {}
            for surname in person["surnames"]:
                bare = surname.strip("\"'")
                term = surname if _CYRILLIC.search(bare) else _quote(surname)  # Latin: as written
                terms.append(term)
                origin[term] = surname
                if _CYRILLIC.search(bare) and " " not in bare and _INSTRUMENTAL_STEM.search(bare):
                    for ending in ("им", "ым"):
                        extra = _quote(bare + ending)
                        terms.append(extra)
                        origin[extra] = surname
            entry = _Entry(
                id=person["id"],
                name=person["name"],
                first=frozenset(first_forms),
                initials=frozenset(fold(f)[0] for f in person.get("first", []) if f),
                ambiguous=frozenset(person.get("ambiguous", [])),
                caps=frozenset(person.get("caps", [])),
                common=bool(person.get("common")),
                feminine=person.get("gender") == "f",
                other_first=frozenset(form for other in person.get("other_first", []) for form in term_forms(other)[1]),
                origin=origin,
            )
            if entry.id in self._entries:
                raise ValueError(f"duplicate person id {entry.id!r}")
            self._entries[entry.id] = entry
            rules.append(Rule(name=entry.id, any=terms))
        self._rules = CompiledRules(rules)

    @classmethod
    def load(cls, path: Path | None = None) -> PeopleExtractor:
        """The extractor for the curated data file (cached per path)."""
        return _load(path or DATA)

    @property
    def name_rules(self) -> CompiledRules:
        """The surname variants as alerting rules, one per person."""
        return self._rules

    @property
    def ids(self) -> list[str]:
        """Every person id in the list."""
        return list(self._entries)

    def extract(self, text: str, *, view: MatchView | None = None) -> list[Person]:
        """Every listed person named in ``text``, in text order; ``text[start:end]`` is the mention.

        ``view``: the text's ``MatchView`` when the caller has one (the enricher shares it).
        """
        if not text:
            return []
        mentions: list[_Mention] = []
        for rule_match in MatchView.of(text, view).match(self._rules):
            entry = self._entries[rule_match.rule.name]
            for hit in rule_match.hits:
                mention = self._mention(text, entry, hit.term, hit.start, hit.end)
                if mention is not None:
                    mentions.append(mention)
        if not mentions:
            return []
        named_plainly = {m.entry.id for m in mentions if m.needs is None or m.with_first}
        named_with_first = {m.entry.id for m in mentions if m.with_first}
        people: list[Person] = []
        last_end = -1
        for mention in sorted(mentions, key=lambda m: (m.start, -(m.end - m.start))):
            if mention.needs == "ambiguous" and not (
                mention.with_first
                or mention.titled
                or mention.entry.id in named_plainly
                or not _sentence_initial(text, mention.start)
            ):
                continue
            if mention.needs == "common" and not (mention.with_first or mention.entry.id in named_with_first):
                continue
            if mention.start < last_end:
                continue
            people.append(Person(id=mention.entry.id, name=mention.entry.name, start=mention.start, end=mention.end))
            last_end = mention.end
        return people

    def _mention(self, text: str, entry: _Entry, term: str, start: int, end: int) -> _Mention | None:
        written = entry.origin.get(term, term)
        needs = "ambiguous" if written in entry.ambiguous else "common" if entry.common else None
        if (needs == "ambiguous" or written in entry.caps) and not text[start : start + 1].isupper():
            return None
        with_first = False
        previous = _PREVIOUS_WORD.search(text, max(0, start - 40), start)
        if previous is not None:
            word, dot = fold(previous.group(1)), previous.group(2)
            if word in entry.other_first:
                return None
            initial = dot and len(word) == 1 and word in entry.initials and previous.group(1).isupper()
            if initial or (not dot and word in entry.first):
                start = previous.start()
                with_first = True
        titled = False
        if needs == "ambiguous" and not with_first:
            before = _WORDS_BEFORE.findall(text, max(0, start - 60), start)[-3:]
            titled = any(fold(word).startswith(self._titles) for word in before)
            # "Маляр повідомила": a feminine past-tense verb cannot go with the (masculine) common noun
            titled = titled or (entry.feminine and _FEMININE_VERB_AFTER.match(text, end) is not None)
        return _Mention(entry, start, end, with_first, needs, titled)


def _sentence_initial(text: str, start: int) -> bool:
    """Whether only whitespace, quotes or bullets stand between ``start`` and a sentence end (or the text start)."""
    index = start - 1
    while index >= 0:
        char = text[index]
        if char == "\n":
            return True
        if char not in _OPENERS:
            return char in _SENTENCE_END
        index -= 1
    return True


@cache
def _load(path: Path) -> PeopleExtractor:
    with path.open(encoding="utf-8") as handle:
        return PeopleExtractor(yaml.safe_load(handle))
