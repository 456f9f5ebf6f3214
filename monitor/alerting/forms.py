"""Expand a rule term into the surface forms the matcher searches for.

Why this exists: Ukrainian and Russian nouns change their endings with case ("Бахмут", "у Бахмуті",
"під Бахмутом"), and the same place is written in three scripts/spellings ("Авдіївка", "Авдеевка",
"Avdiivka"). The matcher (``monitor.alerting.matcher``) is a single Aho-Corasick pass over *folded*
whole words, so instead of stemming the text at match time we expand every rule term at compile time
into a bounded set of folded surface forms. Everything here is pure Python with hand-written tables;
no dictionary, no morphology library. It is a deliberately small *suffix model*: it over-generates for
words that are not nouns, which only adds patterns that do not occur in real text.

Rule syntax (``expand_term``)
-----------------------------
* ``"Бахмут"`` (straight ``" '`` or typographic ``“ ” „ « » ‘ ’`` quotes) -> mode ``exact``: only the folded term.
* ``Бахм*`` (trailing ``*``) -> mode ``prefix``: only the folded stem; the matcher treats it as a word prefix.
* anything else -> mode ``inflected``: the folded term, its case forms, transliterations and (for Latin
  words) Cyrillic candidates with their case forms. Words under 3 letters are not expanded; derived
  words shorter than 3 letters and words in ``STOPWORDS`` are never generated. The as-written form always comes
  first; the total is capped by ``max_forms`` (multi-word phrases: each word is expanded independently and
  combinations are taken in order of increasing "distance" from the written phrase, so as-written and
  nominative-based combos win). In a phrase, a Cyrillic word before the last also takes adjective case
  forms, first (Нова Каховка -> Нової Каховки, Часів Яр -> Часового Яру), and the last word declines
  even with two letters (Яр -> Яру).

Which model applies to a Cyrillic word: it contains ``і ї є ґ`` -> Ukrainian only; ``ы э ъ`` -> Russian
only; otherwise both (the script cannot tell "Бахмут" apart). Apostrophes: ``fold_term`` splits
"Мар'янка" into "мар янка"; such a word is inflected as one unit (only its last token takes endings).

Ukrainian suffix model (``inflect_uk``; ``S`` = word minus the ending shown)
----------------------------------------------------------------------------
* ``-ія``  (Росія): S+ія, ії, ію, ією, іє
* ``-я``   (Запоріжжя, земля): S+я, і, ю, ею, ям, ями, ях
* ``-а``   (Авдіївка, -ка names): S+а, и, у, ою, о, ам, ами, ах; dative/locative S+і with the velar
  alternation к->ц, г->з, х->с (Авдіївка -> Авдіївці); after ж ч ш щ ц also S+ею
* ``-ь``   (Мелітополь): S+я, ю, і, ем, ею
* ``-ий``  (adjectives, Кривий): S+ого, ому, им, ім;  ``-ій``: S+ього, ьому, ім
* ``-й``   (край): S+ю, я, єм, ї
* ``-о``   (Дніпро): S+а, у, і, ом, ові
* ``-е``   (Курахове, поле): S+ого, ому, им, ім, я, ю, ем, і
* ``-и``/``-і`` (plural names, Суми): S, S+ам, ами, ах (``-и``) / S, S+ям, ями, ях (``-і``)
* consonant-final masculine (Бахмут): +а, у, і, е, ом, ові; velar-final (``-ськ``/``-цьк`` towns,
  Артемівськ): +а, у, ом, ові (and +і with г->з, х->с); sibilant/ц-final: +а, у, і, е, ем, еві.
  Alternation in the last syllable: ``-ів`` -> ``-ов-``, ``-їв`` -> ``-єв-`` (Харків -> Харкова, Київ ->
  Києва) and ``-ріг`` -> ``-рог-``/``-роз-`` (Ріг -> Рогу, Розі); such words take the endings on the
  alternated stem only.
No ending ever adds a derivational suffix, so "Бахмут" never yields "бахмутка" (a different word).

Russian suffix model (``inflect_ru``)
-------------------------------------
* ``-ия`` (Россия): S+ия, ии, ию, ией, иею
* ``-я``: S+я, и, е, ю, ей, ею, ям, ях
* ``-а`` (Авдеевка): S+а, ы (и after г к х ж ш ч щ), е, у, ой, ою, ам, ами, ах; after ж ш ч щ ц also ей, ею
* ``-ь``: S+я, ю, е, ем, и, ью
* ``-ый``/``-ой``: S+ого, ому, ым, ом;  ``-ий``: S+его, ему, им, ем (after г к х: ого, ому, им, ом)
* other ``-й`` (Китай): S+я, ю, е, ем
* ``-ое``: S+ого, ому, ым, ом;  ``-ее``: S+его, ему, им, ем;  ``-о`` (Курахово): S+а, у, е, ом
* other ``-е`` (поле): S+я, ю, ем
* ``-ы``/``-и`` (Сумы): S, S+ам, ами, ах
* consonant-final (Бахмут, Киев, Артемовск): +а, у, е, ом (and +ем after ж ш ч щ ц)

Transliteration tables
----------------------
Ukrainian -> Latin (``transliterate_uk``), Cabinet of Ministers resolution No. 55 of 27 January 2010:
а a, б b, в v, г h, ґ g, д d, е e, є ye/ie, ж zh, з z, и y, і i, ї yi/i, й y/i, к k, л l, м m, н n, о o,
п p, р r, с s, т t, у u, ф f, х kh, ц ts, ч ch, ш sh, щ shch, ь -, ю yu/iu, я ya/ia, apostrophe -.
The first variant of є ї й ю я is used at the start of a word, the second elsewhere; "зг" is "zgh".
Russian letters met in Ukrainian text: ё io, ы y, э e, ъ -.

Russian -> Latin (``transliterate_ru``), a simple BGN/PCGN-style scheme as used by English media:
а a, б b, в v, г g, д d, е e, ё e, ж zh, з z, и i, й y, к k, л l, м m, н n, о o, п p, р r, с s, т t,
у u, ф f, х kh, ц ts, ч ch, ш sh, щ shch, ъ -, ы y, ь -, э e, ю yu, я ya. Unlike strict BGN/PCGN, е is
always "e" (the optional "ye" at word start / after vowels is not produced: Авдеевка -> Avdeevka).
Ukrainian letters met in Russian text: і i, ї yi, є ye, ґ g.

Latin -> Cyrillic (``latin_to_cyrillic_candidates``) parses the word with the inverse of both tables
(digraphs first: shch, zgh, kh, zh, ch, sh, ts, ya/yu/ye/yi/yo, ia/iu/ie), tries the few ambiguous
letters both ways (uk ``i`` after a vowel -> ї/й, ru ``y`` -> ы/й, ru ``h`` -> г/х, final ``sk``/``tsk``/
``l`` -> with or without ь), drops candidates that break basic orthography (ы after к, й after a
consonant...) and keeps at most 4 Ukrainian and 4 Russian spellings, in preference order. Words with
c, q, w or x (letters neither scheme uses, so almost surely English) get no candidates.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Literal

from monitor.alerting.matcher import fold_term

__all__ = [
    "STOPWORDS",
    "TermForms",
    "expand_term",
    "inflect_ru",
    "inflect_uk",
    "latin_to_cyrillic_candidates",
    "transliterate_ru",
    "transliterate_uk",
]

Mode = Literal["exact", "prefix", "inflected"]
Lang = Literal["uk", "ru"]

AS_WRITTEN = "as written"
MIN_LETTERS = 3
# Frequent short words a derived form must never turn into (it would make a different word match).
STOPWORDS: frozenset[str] = frozenset(
    [
        "на",
        "та",
        "що",
        "не",
        "по",
        "до",
        "за",
        "від",
        "або",
        "але",
        "вже",
        "для",
        "при",
        "без",
        "під",
        "над",
        "про",
        "так",
        "його",
        "яка",
        "який",
        "яке",
        "які",
        "цей",
        "все",
        "всі",
        "він",
        "вона",
        "вони",
        "їх",
        "нас",
        "вас",
        "нам",
        "вам",
        "ним",
        "них",
        "тут",
        "там",
        "тем",
        "том",
        "как",
        "его",
        "она",
        "они",
        "это",
        "еще",
        "уже",
        "всех",
        "или",
        "тоже",
        "от",
        "из",
        "что",
        "был",
        "оно",
        "the",
        "and",
        "for",
        "with",
        "from",
        "that",
        "this",
    ]
)

_OPEN_QUOTES = "\"'“”„«»‘’‚"
_CLOSE_QUOTES = "\"'“”«»‘’"

_UK_ONLY = frozenset("іїєґ")
_RU_ONLY = frozenset("ыэъ")
_CYRILLIC = frozenset("абвгдежзийклмнопрстуфхцчшщьюяіїєґыэъ")
_LATIN = frozenset("abcdefghijklmnopqrstuvwxyz")
_ENGLISH_ONLY = frozenset("cqwx")
_VOWELS_CYR = frozenset("аеєиіїоуюяыэ")
_CONSONANTS_CYR = _CYRILLIC - _VOWELS_CYR - {"ь", "ъ", "й"}
_VELARS = frozenset("кгхґ")
_SIBILANTS = frozenset("жчшщц")
_VELAR_ALTERNATION = {"к": "ц", "г": "з", "х": "с"}
_APOSTROPHES = "'’ʼ`"

# --------------------------------------------------------------------------- transliteration, Cyrillic -> Latin

_UK_TABLE: dict[str, str] = {
    "а": "a", "б": "b", "в": "v", "г": "h", "ґ": "g", "д": "d", "е": "e", "є": "ie", "ж": "zh", "з": "z",
    "и": "y", "і": "i", "ї": "i", "й": "i", "к": "k", "л": "l", "м": "m", "н": "n", "о": "o", "п": "p",
    "р": "r", "с": "s", "т": "t", "у": "u", "ф": "f", "х": "kh", "ц": "ts", "ч": "ch", "ш": "sh",
    "щ": "shch", "ь": "", "ю": "iu", "я": "ia",
    "ё": "io", "ы": "y", "э": "e", "ъ": "",
}  # fmt: skip
_UK_WORD_START: dict[str, str] = {"є": "ye", "ї": "yi", "й": "y", "ю": "yu", "я": "ya"}

_RU_TABLE: dict[str, str] = {
    "а": "a", "б": "b", "в": "v", "г": "g", "д": "d", "е": "e", "ё": "e", "ж": "zh", "з": "z", "и": "i",
    "й": "y", "к": "k", "л": "l", "м": "m", "н": "n", "о": "o", "п": "p", "р": "r", "с": "s", "т": "t",
    "у": "u", "ф": "f", "х": "kh", "ц": "ts", "ч": "ch", "ш": "sh", "щ": "shch", "ъ": "", "ы": "y",
    "ь": "", "э": "e", "ю": "yu", "я": "ya",
    "і": "i", "ї": "yi", "є": "ye", "ґ": "g",
}  # fmt: skip

# A word: letters, possibly joined by apostrophes (Мар'янка is one word).
_WORD_WITH_APOSTROPHES = re.compile(r"[^\W\d_]+(?:[" + _APOSTROPHES + r"][^\W\d_]+)*")


def _apply_case(source: str, latin: str, all_upper: bool) -> str:
    if not source.isupper() or not latin:
        return latin
    return latin.upper() if all_upper else latin[0].upper() + latin[1:]


def _transliterate_word(word: str, table: dict[str, str], start_table: dict[str, str], zgh: bool) -> str:
    letters = [c for c in word if c not in _APOSTROPHES]
    all_upper = len(letters) > 1 and all(c.isupper() for c in letters)
    out: list[str] = []
    previous = ""
    for index, char in enumerate(letters):
        low = char.lower()
        if index == 0 and low in start_table:
            latin = start_table[low]
        elif zgh and low == "г" and previous == "з":
            latin = "gh"
        else:
            latin = table.get(low, char)
        out.append(_apply_case(char, latin, all_upper) if low in table else latin)
        previous = low
    return "".join(out)


def transliterate_uk(text: str) -> str:
    """Ukrainian Cyrillic -> Latin by the 2010 national standard (KMU resolution 55); other text is kept."""
    return _WORD_WITH_APOSTROPHES.sub(lambda m: _transliterate_word(m.group(), _UK_TABLE, _UK_WORD_START, True), text)


def transliterate_ru(text: str) -> str:
    """Russian Cyrillic -> Latin by a BGN/PCGN-style scheme (е is always "e"); other text is kept."""
    return _WORD_WITH_APOSTROPHES.sub(lambda m: _transliterate_word(m.group(), _RU_TABLE, {}, False), text)


# --------------------------------------------------------------------------- transliteration, Latin -> Cyrillic

Units = list[tuple[str, tuple[str, ...]]]

# (latin, alternatives in preference order), tried longest first; "^" entries only at the start of a word.
_UK_UNITS: Units = [
    ("shch", ("щ",)), ("zgh", ("зг",)), ("kh", ("х",)), ("zh", ("ж",)), ("ch", ("ч",)), ("sh", ("ш",)),
    ("ts", ("ц",)), ("^ye", ("є",)), ("^yi", ("ї",)), ("^yu", ("ю",)), ("^ya", ("я",)),
    ("ia", ("я", "ія")), ("iu", ("ю", "іу")), ("ie", ("є", "іе")),
    ("a", ("а",)), ("b", ("б",)), ("v", ("в",)), ("h", ("г",)), ("g", ("ґ", "г")), ("d", ("д",)),
    ("e", ("е",)), ("z", ("з",)), ("y", ("и",)), ("k", ("к",)), ("l", ("л",)), ("m", ("м",)),
    ("n", ("н",)), ("o", ("о",)), ("p", ("п",)), ("r", ("р",)), ("s", ("с",)), ("t", ("т",)),
    ("u", ("у",)), ("f", ("ф",)), ("j", ("й",)),
]  # fmt: skip
_RU_UNITS: Units = [
    ("shch", ("щ",)), ("kh", ("х",)), ("zh", ("ж",)), ("ch", ("ч",)), ("sh", ("ш",)), ("ts", ("ц",)),
    ("ya", ("я",)), ("yu", ("ю",)), ("yo", ("е",)), ("ye", ("е",)),
    ("a", ("а",)), ("b", ("б",)), ("v", ("в",)), ("g", ("г",)), ("h", ("г", "х")), ("d", ("д",)),
    ("e", ("е",)), ("z", ("з",)), ("i", ("и",)), ("k", ("к",)), ("l", ("л",)), ("m", ("м",)),
    ("n", ("н",)), ("o", ("о",)), ("p", ("п",)), ("r", ("р",)), ("s", ("с",)), ("t", ("т",)),
    ("u", ("у",)), ("f", ("ф",)), ("j", ("дж", "й")),
]  # fmt: skip
_UK_FINALS: Units = [("tsk", ("цьк", "цк")), ("sk", ("ськ", "ск")), ("l", ("ль", "л"))]
_RU_FINALS: Units = [("tsk", ("цк",)), ("sk", ("ск",)), ("l", ("ль", "л"))]
_LATIN_VOWELS = frozenset("aeiouy")
_PER_LANGUAGE = 4
_MAX_TRIES = 256


def _parse(word: str, *, uk: bool) -> list[tuple[str, ...]]:
    """Slots of Cyrillic alternatives for a lowercase Latin word; [] if a letter has no mapping."""
    units, finals = (_UK_UNITS, _UK_FINALS) if uk else (_RU_UNITS, _RU_FINALS)
    slots: list[tuple[str, ...]] = []
    pos = 0
    while pos < len(word):
        rest = word[pos:]
        final = next((alts for latin, alts in finals if rest == latin and pos > 0), None)
        if final is not None:
            slots.append(final)
            break
        after_vowel = pos > 0 and word[pos - 1] in _LATIN_VOWELS
        if uk and rest[0] == "i" and not rest.startswith(("ia", "iu", "ie")):
            slots.append(("ї", "й") if after_vowel else ("і",))
            pos += 1
            continue
        if not uk and rest[0] == "y" and not rest.startswith(("ya", "yu", "yo", "ye")):
            slots.append(("й",) if pos == 0 or after_vowel else ("ы", "й"))
            pos += 1
            continue
        if not uk and rest[0] == "e" and pos == 0:
            slots.append(("э", "е"))
            pos += 1
            continue
        for latin, alts in units:
            start_only = latin.startswith("^")
            key = latin[1:] if start_only else latin
            if start_only and pos != 0:
                continue
            if rest.startswith(key):
                slots.append(alts)
                pos += len(key)
                break
        else:
            return []
    return slots


def _orthography_ok(word: str, *, uk: bool) -> bool:
    if word[0] in "ьъ" or not any(c in _VOWELS_CYR for c in word):
        return False
    if not uk and word[0] == "ы":
        return False
    for prev, cur in itertools.pairwise(word):
        if cur == "й" and prev in _CONSONANTS_CYR:
            return False
        if cur == "ь" and prev in _VOWELS_CYR:
            return False
        if uk and cur == "ї" and prev in _CONSONANTS_CYR:
            return False
        if not uk and cur == "ы" and prev in "гкхжшчщ":
            return False
        if not uk and cur in "яю" and prev in "жшчщ":
            return False
    return True


def _candidates(word: str, *, uk: bool) -> list[str]:
    found: list[str] = []
    slots = _parse(word, uk=uk)
    if not slots:
        return found
    for combo in itertools.islice(itertools.product(*slots), _MAX_TRIES):
        spelling = "".join(combo)
        if spelling not in found and _orthography_ok(spelling, uk=uk):
            found.append(spelling)
            if len(found) >= _PER_LANGUAGE:
                break
    return found


def _latin_candidates(word: str) -> list[tuple[str, Lang]]:
    """Ordered (spelling, language) candidates, Ukrainian first, without duplicates."""
    low = word.casefold()
    if not low or any(c not in _LATIN for c in low) or set(low) & _ENGLISH_ONLY:
        return []
    out: list[tuple[str, Lang]] = []
    seen: set[str] = set()
    for lang in ("uk", "ru"):
        for spelling in _candidates(low, uk=lang == "uk"):
            if spelling not in seen:
                seen.add(spelling)
                out.append((spelling, "uk" if lang == "uk" else "ru"))
    return out


def latin_to_cyrillic_candidates(word: str) -> set[str]:
    """Plausible Ukrainian and Russian spellings (lowercase, at most 8) of one Latin-script word."""
    return {spelling for spelling, _ in _latin_candidates(word)}


# --------------------------------------------------------------------------- inflection


def _with(stem: str, endings: str) -> list[str]:
    return [stem + ending for ending in endings.split()]


def _inflect_uk_list(word: str) -> list[str]:
    """The word, then its Ukrainian case forms in paradigm order (may include short or stop words)."""
    w = word
    if len(w) < 2 or any(c not in _CYRILLIC for c in w):
        return [w]
    last, stem = w[-1], w[:-1]
    forms: list[str] = [w]
    if w.endswith("ія"):
        forms += _with(w[:-2], "ії ію ією іє")
    elif last == "я":
        forms += _with(stem, "і ю ею ям ями ях")
    elif last == "а":
        forms += _with(stem, "и у ою о ам ами ах")
        forms.append(stem[:-1] + _VELAR_ALTERNATION.get(stem[-1], stem[-1]) + "і")
        if stem[-1] in _SIBILANTS:
            forms.append(stem + "ею")
    elif last == "ь":
        forms += _with(stem, "я ю і ем ею")
    elif w.endswith("ий"):
        forms += _with(w[:-2], "ого ому им ім")
    elif w.endswith("ій"):
        forms += _with(w[:-2], "ього ьому ім")
    elif last == "й":
        forms += _with(stem, "ю я єм ї")
    elif last == "о":
        forms += _with(stem, "а у і ом ові")
    elif last == "е":
        forms += _with(stem, "ого ому им ім я ю ем і")
    elif last == "и":
        forms += [stem, *_with(stem, "ам ами ах")]
    elif last == "і":
        forms += [stem, *_with(stem, "ям ями ях")]
    elif last in _CONSONANTS_CYR:
        if w.endswith(("ів", "їв")) and len(w) >= 4:
            oblique = w[:-2] + ("ов" if w[-2] == "і" else "єв")
            forms += _with(oblique, "а у і е ом ові")
        elif w.endswith("ріг"):
            forms += [*_with(w[:-3] + "рог", "а у ом ові"), w[:-3] + "розі"]
        elif last in _VELARS:
            forms += _with(w, "а у ом ові")
            if last in "гх":
                forms.append(stem + _VELAR_ALTERNATION[last] + "і")
        elif last in _SIBILANTS:
            forms += _with(w, "а у і е ем еві")
        else:
            forms += _with(w, "а у і е ом ові")
    return forms


def _inflect_ru_list(word: str) -> list[str]:
    """The word, then its Russian case forms in paradigm order (may include short or stop words)."""
    w = word
    if len(w) < 2 or any(c not in _CYRILLIC for c in w):
        return [w]
    last, stem = w[-1], w[:-1]
    forms: list[str] = [w]
    if w.endswith("ия"):
        forms += _with(w[:-2], "ии ию ией иею")
    elif w.endswith(("ая", "яя")) and len(w) >= 5:
        # A feminine adjective (Кременная, Великая in Великая Новоселка, Верхняя): declined as one.
        forms += adjective_forms(w, uk=False, ru=True)[1:]
    elif last == "я":
        forms += _with(stem, "и е ю ей ею ям ях")
    elif last == "а":
        forms.append(stem + ("и" if stem[-1] in "гкхжшчщ" else "ы"))
        forms += _with(stem, "е у ой ою ам ами ах")
        if stem[-1] in _SIBILANTS:
            forms += _with(stem, "ей ею")
    elif last == "ь":
        forms += _with(stem, "я ю е ем и ью")
    elif w.endswith(("ый", "ой")):
        forms += _with(w[:-2], "ого ому ым ом")
    elif w.endswith("ий"):
        forms += _with(w[:-2], "ого ому им ом" if w[-3:-2] in ("г", "к", "х") else "его ему им ем")
    elif last == "й":
        forms += _with(stem, "я ю е ем")
    elif w.endswith("ое"):
        forms += _with(w[:-2], "ого ому ым ом")
    elif w.endswith("ее"):
        forms += _with(w[:-2], "его ему им ем")
    elif last == "о":
        forms += _with(stem, "а у е ом")
    elif last == "е":
        forms += _with(stem, "я ю ем")
    elif last in "ыи":
        forms += [stem, *_with(stem, "ам ами ах")]
    elif last in _CONSONANTS_CYR:
        forms += _with(w, "а у е ом")
        if last in _SIBILANTS:
            forms.append(w + "ем")
    return forms


def _keep_derived(form: str) -> bool:
    return len(form) >= MIN_LETTERS and form not in STOPWORDS


def inflect_uk(word: str) -> set[str]:
    """The word and its case forms under the Ukrainian suffix model (lowercase, folded input expected)."""
    return {word} | {f for f in _inflect_uk_list(word) if _keep_derived(f)}


def inflect_ru(word: str) -> set[str]:
    """The word and its case forms under the Russian suffix model (lowercase, folded input expected)."""
    return {word} | {f for f in _inflect_ru_list(word) if _keep_derived(f)}


# --------------------------------------------------------------------------- adjectives

_UK_ADJ: list[tuple[str, str]] = [  # nominative ending -> endings of the other cases (adjective agreement)
    ("ий", "ий ого ому им ім"), ("ій", "ій ього ьому ім"), ("ька", "ька ької ькій ьку ькою"),
    ("ня", "ня ньої ній ню ньою"), ("а", "а ої ій у ою"), ("е", "е ого ому им ім"), ("є", "є ього ьому ім"),
    ("і", "і их им ими"), ("ів", "ів ового овому овим"), ("їв", "їв євого євому євим"),
]  # fmt: skip
_RU_ADJ: list[tuple[str, str]] = [
    ("кий", "кий кого кому ким ком"), ("гий", "гий гого гому гим гом"), ("хий", "хий хого хому хим хом"),
    ("ый", "ый ого ому ым ом"), ("ой", "ой ого ому ым ом"), ("ий", "ий его ему им ем"),
    ("ая", "ая ой ую ою"), ("яя", "яя ей юю ею"), ("ое", "ое ого ому ым ом"), ("ее", "ее его ему им ем"),
    ("ые", "ые ых ым ыми"), ("ие", "ие их им ими"), ("ов", "ов ова ову овым ом"), ("ев", "ев ева еву евым ем"),
]  # fmt: skip


def adjective_forms(word: str, *, uk: bool, ru: bool) -> list[str]:
    """The word and its case forms as an adjective (agreeing with a noun), under the enabled models."""
    forms = [word]
    for enabled, table in ((uk, _UK_ADJ), (ru, _RU_ADJ)):
        if not enabled:
            continue
        for ending, endings in table:
            if word.endswith(ending) and len(word) > len(ending) + 1:
                stem = word[: -len(ending)]
                forms += [stem + e for e in endings.split()]
                break
    return list(dict.fromkeys(f for f in forms if len(f) >= 3))


# --------------------------------------------------------------------------- expansion


@dataclass(frozen=True, slots=True)
class TermForms:
    """A rule term and the folded surface forms to search for, each with how it was derived."""

    written: str
    mode: Mode
    forms: dict[str, str]


def _word_options(word: str, min_letters: int = MIN_LETTERS) -> list[tuple[str, str]]:
    """Ordered (form, derivation) alternatives for one folded token; the token itself first.

    ``min_letters``: the shortest token that is inflected (a phrase's head noun may be shorter: Яр).
    """
    options: dict[str, str] = {word: AS_WRITTEN}

    def add(form: str, how: str) -> None:
        if form not in options and _keep_derived(form):
            options[form] = how

    if len(word) >= min_letters and all(c in _CYRILLIC for c in word):
        letters = set(word)
        if not letters & _RU_ONLY:
            for form in _inflect_uk_list(word):
                add(form, "uk case form")
        if not letters & _UK_ONLY:
            for form in _inflect_ru_list(word):
                add(form, "ru case form")
    elif len(word) >= MIN_LETTERS:
        candidates = _latin_candidates(word)
        for spelling, lang in candidates:
            add(spelling, f"transliteration latin->{lang}")
        for spelling, _lang in candidates:
            # Inflect with every model the spelling's letters allow: "авдеевка" is a possible uk
            # spelling of Avdeevka too, but it is the Russian name and declines the Russian way.
            letters = set(spelling)
            if not letters & _RU_ONLY:
                for form in _inflect_uk_list(spelling):
                    add(form, "uk case form of transliteration")
            if not letters & _UK_ONLY:
                for form in _inflect_ru_list(spelling):
                    add(form, "ru case form of transliteration")
    return list(options.items())


_UNIT = re.compile(r"\w+(?:[" + _APOSTROPHES + r"]\w+)*")


def _unit_options(term: str, folded: str) -> list[list[tuple[str, str]]]:
    """Options per word unit; an apostrophe-joined word ("мар янка") only inflects its last token."""
    unit_tokens = [fold_term(unit).split(" ") for unit in _UNIT.findall(term)]
    if " ".join(" ".join(tokens) for tokens in unit_tokens) != folded:
        unit_tokens = [[token] for token in folded.split(" ")]
    per_unit: list[list[tuple[str, str]]] = []
    for position, tokens in enumerate(unit_tokens):
        head = " ".join(tokens[:-1])
        last = position == len(unit_tokens) - 1
        # The head noun of a phrase declines however short it is (Часів Яр -> Часового Яру).
        options = _word_options(tokens[-1], 2 if last and len(unit_tokens) > 1 else MIN_LETTERS)
        if not last and not head:
            options = _with_adjective_forms(tokens[-1], options)
        per_unit.append([(f"{head} {form}" if head else form, how) for form, how in options])
    return per_unit


def _with_adjective_forms(word: str, options: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """A Cyrillic word before the last of a phrase may be an adjective agreeing with it (Нова Каховка ->
    Нової Каховки, Часів Яр -> Часового Яру): its adjective forms come right after the word as written."""
    if len(word) < MIN_LETTERS or any(c not in _CYRILLIC for c in word):
        return options
    letters = set(word)
    uk, ru = not letters & _RU_ONLY, not letters & _UK_ONLY
    known = {form for form, _ in options}
    added: list[tuple[str, str]] = []
    for model, enabled in (("uk", uk), ("ru", ru)):
        if not enabled:
            continue
        for form in adjective_forms(word, uk=model == "uk", ru=model == "ru"):
            if form not in known and _keep_derived(form):
                known.add(form)
                added.append((form, f"{model} adjective case form"))
    return [options[0], *added, *options[1:]] if added else options


def _index_combos(lengths: list[int]) -> Iterator[tuple[int, ...]]:
    """Index tuples ordered by their sum (distance from the all-zero, as-written combination)."""
    caps = [n - 1 for n in lengths]
    room_after = [*list(itertools.accumulate(reversed(caps)))[::-1], 0]

    def with_sum(position: int, remaining: int) -> Iterator[tuple[int, ...]]:
        if position == len(caps):
            if remaining == 0:
                yield ()
            return
        low = max(0, remaining - room_after[position + 1])
        for index in range(low, min(caps[position], remaining) + 1):
            for tail in with_sum(position + 1, remaining - index):
                yield (index, *tail)

    for total in range(sum(caps) + 1):
        yield from with_sum(0, total)


def _strip_quotes(term: str) -> str | None:
    stripped = term.strip()
    if len(stripped) >= 2 and stripped[0] in _OPEN_QUOTES and stripped[-1] in _CLOSE_QUOTES:
        return stripped[1:-1]
    return None


def expand_term(term: str, *, max_forms: int = 200) -> TermForms:
    """Expand one rule term into folded surface forms (see the module docstring for the syntax and models)."""
    if max_forms < 1:
        raise ValueError("max_forms must be at least 1")
    quoted = _strip_quotes(term)
    if quoted is not None:
        folded = fold_term(quoted)
        return TermForms(term, "exact", {folded: AS_WRITTEN} if folded else {})
    if term.strip().endswith("*"):
        folded = fold_term(term.strip().rstrip("*"))
        return TermForms(term, "prefix", {folded: "prefix stem as written"} if folded else {})

    folded = fold_term(term)
    if not folded:
        return TermForms(term, "inflected", {})
    forms: dict[str, str] = {folded: AS_WRITTEN}
    letters = set(folded)
    if letters & _CYRILLIC:
        translits: list[tuple[str, str]] = []
        if not letters & _RU_ONLY:
            translits.append((fold_term(transliterate_uk(term)), "transliteration uk->latin (KMU 2010)"))
        if not letters & _UK_ONLY:
            translits.append((fold_term(transliterate_ru(term)), "transliteration ru->latin (BGN/PCGN-style)"))
        for form, how in translits:
            if len(form.replace(" ", "")) >= MIN_LETTERS and len(forms) < max_forms:
                forms.setdefault(form, how)

    per_unit = _unit_options(term, folded)
    for indices in _index_combos([len(options) for options in per_unit]):
        if len(forms) >= max_forms:
            break
        chosen = [options[i] for options, i in zip(per_unit, indices, strict=True)]
        form = " ".join(f for f, _ in chosen)
        if form in forms:
            continue
        hows = list(dict.fromkeys(how for _, how in chosen if how != AS_WRITTEN))
        forms[form] = "; ".join(hows) if hows else AS_WRITTEN
    return TermForms(term, "inflected", forms)
