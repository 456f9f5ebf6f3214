"""Claimed counts in item text (losses, attacks, strikes, casualties, prisoners) as ``monitor.schema.Quantity``.

A quantity is a number next to a counted noun from a fixed lexicon (uk, ru, en), in one of two orders:

* forward, ``NUMBER [(+N)] [units of|од.] [up to 3 adjectives: Russian, enemy, ворожих ...] NOUN``:
  "3,574 tanks", "712 artillery strikes", "понад 100 окупантів", "знищено 7 БпЛА", "уничтожено 12 танков";
* list form, ``NOUN [up to 2 words] - NUMBER [(+N)]`` (dash or colon): the Ukrainian General Staff's daily
  report ("танків ‒ 5408 (+19) од", "UAV operational-tactical level ‒ 5,798 (+26)").

Numbers: digits with thousands separators (``,`` ``.`` space, NBSP: "169,170", "317 860"; a separator
followed by exactly three digits groups thousands, otherwise it is a decimal mark: "1,5 тис." = 1500 in
uk/ru; in English "." is always decimal), an optional multiplier (thousand/тис./тыс./million/млн), small
number words (en one..twenty and tens, uk/ru два..десять). A range keeps its first number ("10-15 танків"
= 10). Vague amounts ("dozens", "десятки") are not quantities. A number is never read out of a date
("24.02.22"), a time ("12:30"), a model name ("Су-34", "Т-72"), an ordinal ("92nd", "92-га"), a
percentage, a money amount ("$100"), or a year after a preposition ("in 2023", "у 2023"); unit numbers
("92 ОМБр", "3 бригади") are not quantities because unit nouns are not in the lexicon.

``kind`` and ``unit`` (the normalized noun) come from the noun and the words around it in the same
sentence (a loss verb such as destroyed/знищено/уничтожено, capture, killed, wounded):

* equipment (tanks, afv, artillery_systems, mlrs, air_defense, aircraft, helicopters, uav, cruise_missiles,
  missiles, ships, submarines, vehicles, special_equipment, equipment): ``losses`` near a loss word (or
  in a list whose paragraph names losses: the General Staff report), ``captured`` near a capture word,
  otherwise ``count`` ("Ukraine received 31 tanks" is not a loss);
* enemy personnel (personnel, occupiers, окупантів, особового складу): ``losses``/personnel;
* soldiers (neutral): ``casualties``/killed or wounded with such a word, ``captured``/prisoners,
  ``losses``/personnel with a loss word, else ``count``/personnel; people: the same, but nothing without
  a word; civilians and children: ``casualties``/civilians_killed or civilians_wounded, else nothing;
* "4 killed", "12 wounded", "15 prisoners": ``casualties``/killed, wounded; ``captured``/prisoners;
* ``attacks``/attacks or clashes ("24 attacks repelled", "95 бойових зіткнень");
* ``strikes``/air_strikes, artillery_strikes (shellings), mlrs_strikes, missile_strikes, drone_strikes,
  guided_bombs, strikes;
* ``count``/shells.

Speed: the number regex is tried only at digits that follow no word character (``enricher.number_starts``,
shared with the units); one Aho-Corasick pass over the lower-cased text finds the number words that
are whitespace-separated tokens and where context words can start (``_CONTEXT`` is tried only there);
the sentence and clause-break regexes are written to start with a character set, which ``re`` scans for.

A total followed by a daily increment in parentheses ("5408 (+19)") gives a second Quantity, kind
``<kind>_daily`` ("losses_daily"), whose span is the increment ("+19").
"""

from __future__ import annotations

import re
from bisect import bisect_left, bisect_right
from collections.abc import Iterable, Iterator
from re import _parser  # type: ignore[attr-defined]
from typing import NamedTuple

import ahocorasick

from monitor.enrich.enricher import MatchView, number_starts
from monitor.enrich.regex_parts import top_level_alternatives
from monitor.schema import Quantity

__all__ = ["extract_quantities"]

# (group, unit, alternatives): ordered, more specific first (the first alternative that matches wins).
# Alternatives are regexes matched case-insensitively as whole words; "~" stands for any Cyrillic ending.
LEXICON: list[tuple[str, str, list[str]]] = [
    # --- strikes (before the weapons they are made with)
    ("strikes", "mlrs_strikes", [
        r"(?:mlrs|rocket artillery) (?:strikes|attacks|shellings)",
        r"обстріл~ (?:з|із) (?:рсзв|реактивних систем~ залпового вогню)", r"обстрел~ из рсзо",
    ]),
    ("strikes", "missile_strikes", [r"missile (?:strikes|attacks)", r"ракетн~ (?:удар~|атак~)"]),
    ("strikes", "drone_strikes", [
        r"(?:drone|uav|kamikaze drone|shahed) (?:strikes|attacks)",
        r"(?:удар|атак)~ (?:ударних |ударных )?(?:дрон~|безпілотник~|беспилотник~|бпла|шахед~)"
        r"(?:-камікадзе|-камикадзе)?",
    ]),
    ("strikes", "air_strikes", [
        r"air ?strikes", r"airstrikes", r"air raids", r"aviation strikes", r"авіаудар~", r"авиаудар~",
        r"авіаційн~ удар~", r"авиационн~ удар~", r"авіанальот~", r"авианалет~",
    ]),
    ("strikes", "guided_bombs", [
        r"guided (?:aerial )?bombs", r"glide bombs", r"кабів", r"кабов", r"каби", r"каб", r"керован~ авіабомб~",
        r"управляем~ авиабомб~", r"авіабомб~", r"авиабомб~",
    ]),
    ("strikes", "artillery_strikes", [
        r"artillery (?:strikes|attacks|shellings?|fire)", r"shellings?", r"(?:арт)?обстріл(?:и|ів|у|ах)?",
        r"(?:арт)?обстрел(?:ы|ов|а|ах)?", r"артилерійськ~ удар~", r"артиллерийск~ удар~",
    ]),
    # --- attacks
    ("attacks", "clashes", [
        r"(?:combat )?(?:engagements|clashes)", r"firefights", r"battles", r"бойов~ зіткнен~", r"бо[єе]зіткнен~",
        r"боестолкновени~", r"боев~ столкновени~", r"бо[їе]в",
    ]),
    ("attacks", "attacks", [
        r"(?:enemy )?(?:attacks|assaults)", r"attempts to advance", r"offensive actions", r"атак(?:и|а|у)?",
        r"штурм(?:ів|ов|и)", r"штурмов~ (?:дій|действий)", r"наступальн~ дій", r"наступательн~ действий",
    ]),
    # --- equipment
    ("equipment", "special_equipment", [
        r"(?:units of |pieces of )?special(?: military)? equipment", r"спеціальн~ техн~", r"специальн~ техн~",
        r"спецтехн~",
    ]),
    ("equipment", "afv", [
        r"armou?red (?:combat|personnel|fighting) vehicles?", r"combat armou?red (?:vehicles|machines)",
        r"armou?red vehicles?", r"infantry fighting vehicles?", r"armou?red personnel carriers?",
        r"apcs?", r"apvs?", r"afvs?", r"acvs?", r"ifvs?", r"bmps?", r"btrs?",
        r"бойов~ броньован~ машин~", r"бойов~ бронирован~ машин~", r"боев~ бронированн~ машин~",
        r"броньован~ машин~", r"бронирован~ машин~",
        r"бронетехн~", r"бронемашин~", r"ббм", r"бмп", r"бтр",
    ]),
    ("equipment", "vehicles", [
        r"(?:motor |military |automotive )?vehicles(?: and fuel (?:tanks|tankers|trucks))?",
        r"(?:motor |military )?vehicle", r"trucks?", r"fuel (?:tanks|tankers)",
        r"автомобільн~ техн~(?: (?:та|і) автоцистерн~)?", r"автомобильн~ техн~(?: и автоцистерн~)?", r"автотехн~",
        r"автомобіл(?:і|ів|ь)", r"автомобил(?:и|ей|ь|я)", r"вантажівк~", r"грузовик~", r"автоцистерн~",
    ]),
    ("equipment", "mlrs", [
        r"multiple(?: launch)? rocket (?:launchers?|systems?)", r"mlrs", r"mrls", r"рсзв", r"рсзо",
        r"реактивн~ систем~ залпового (?:вогню|огня)",
    ]),
    ("equipment", "air_defense", [
        r"air defen[cs]e (?:systems?|means|units?)", r"anti-aircraft (?:warfare )?(?:systems?|guns?)", r"sams",
        r"засоб(?:и|ів) ппо", r"систем~ ппо", r"средств~ пво", r"систем~ пво", r"зенітн~ ракетн~ комплекс~",
        r"зенитн~ ракетн~ комплекс~", r"зрк",
    ]),
    ("equipment", "cruise_missiles", [r"cruise missiles?", r"крилат~ ракет~", r"крылат~ ракет~"]),
    ("equipment", "artillery_systems", [
        r"artillery (?:systems?|pieces?|units?|guns?)", r"howitzers?", r"артилерійськ~ систем~",
        r"артиллерийск~ систем~", r"артсистем~", r"гармат~", r"гаубиц~", r"орудий", r"орудия",
    ]),
    ("equipment", "tanks", [r"tanks?", r"танк(?:и|ів|а|ов)?", r"[tт]-(?:55|62|64|72|80|90)[\w-]*"]),
    ("equipment", "helicopters", [
        r"helicopters?", r"choppers?", r"гелікоптер(?:и|ів|а)?", r"вертоліт", r"вертольот(?:и|ів|а)",
        r"вертол[её]т(?:а|ов|ы)?", r"(?:ka|ка|mi|мі|ми)-\d+[\w-]*",
    ]),
    ("equipment", "aircraft", [
        r"(?:war|fighter |combat |military )?(?:aircraft|airplanes?|planes?)", r"warplanes?", r"fighter jets?",
        r"jets", r"літак(?:и|ів|а)?", r"самол[её]т(?:а|ов|ы)?", r"(?:su|су)-\d+[\w-]*", r"винищувач~",
        r"истребител~",
    ]),
    ("equipment", "uav", [
        r"(?:kamikaze )?drones?", r"uavs?", r"unmanned aerial vehicles?", r"shaheds?", r"shahed-\d+s?",
        r"loitering munitions", r"lancets", r"бпла", r"бпл", r"безпілотник(?:и|ів|а)?", r"беспилотник(?:и|ов|а)?",
        r"дрон(?:и|ів|а|ов)?(?:-камікадзе|-камикадзе)?", r"шахед(?:и|ів|а|ов)?", r"шахід(?:и|ів|а)?",
        r"герань~", r"ланцет(?:и|ів|а|ов)?",
    ]),
    ("equipment", "missiles", [r"(?:ballistic )?missiles?", r"rockets", r"ракет(?:и|а|у)?"]),
    ("equipment", "ships", [
        r"warships\s*/\s*boats", r"(?:war)?ships?", r"boats?", r"vessels?", r"кораблі\s*/\s*катери",
        r"корабли\s*/\s*катера", r"корабл~", r"корабель", r"катер(?:и|ів|а|ов)?",
    ]),
    ("equipment", "submarines", [r"submarines?", r"підводн~ чов(?:ен|ни|нів|на)", r"подводн~ лод(?:ка|ки|ок)"]),
    ("equipment", "equipment", [
        r"(?:units|pieces) of (?:military )?equipment", r"одиниц~ (?:військової )?техн~",
        r"единиц~ (?:военной )?техн~", r"техн(?:іки|ики)",
    ]),
    ("shells", "shells", [r"(?:artillery )?(?:shells|rounds)", r"снаряд(?:и|ів|а|ов)?"]),
    # --- people
    ("enemy", "personnel", [
        r"personnel", r"manpower", r"occupiers", r"invaders", r"orcs", r"особов~ склад~", r"личн~ состав~",
        r"жив(?:ої|ой) сил~", r"окупант(?:и|ів|а)?", r"оккупант(?:ы|ов|а)?", r"загарбник(?:и|ів|а)?",
        r"рашист(?:и|ів|а)?", r"орк(?:и|ів)", r"вагнерівц(?:і|ів)", r"москал(?:і|ів)",
    ]),
    ("soldiers", "personnel", [
        r"soldiers?", r"troops", r"servicem[ae]n", r"service ?members", r"fighters", r"militants",
        r"mercenar(?:y|ies)", r"military personnel", r"військовослужбовц~", r"військов(?:их|і|ий)",
        r"солдат(?:и|ів|а)?", r"бійц(?:і|ів|я)", r"бо[єе]ць", r"бойовик(?:и|ів|а)?", r"найманц~", r"военнослужащ~",
        r"военн(?:ых|ые|ый)", r"бойц(?:ы|ов|а)", r"боец", r"наемник~", r"мобілізован~", r"мобилизованн~",
    ]),
    ("civilians", "civilians", [
        r"civilians?", r"residents", r"children", r"kids", r"мирн~ (?:жител~|мешканц~|людей|громадян~)",
        r"цивільн~", r"мирн(?:их|ые|ых)", r"діт(?:ей|и)", r"дитин(?:и|а)", r"дет(?:и|ей)", r"ребен(?:ок|ка)",
        r"жител(?:ів|і|ей|и)", r"мешканц(?:ів|і)",
    ]),
    ("people", "people", [r"people", r"persons", r"person", r"individuals", r"люд(?:ей|ини|и)", r"ос(?:іб|оби)",
                          r"человек(?:а)?"]),
    # killed/wounded as a noun or a predicate right after the number ("4 killed", "5 загинули", "12 ранены")
    ("killed", "killed", [
        r"killed", r"dead", r"deaths", r"fatalities", r"загибл~", r"загинул~", r"вбит~", r"убит~", r"погибш~",
        r"погибл~", r"двохсотих", r"двухсотых",
    ]),
    ("wounded", "wounded", [
        r"wounded", r"injured", r"поранен~", r"ранен~", r"травмован~", r"постраждал~", r"пострадавш~",
        r"пострадал~", r"трьохсотих", r"трехсотых",
    ]),
    ("prisoners", "prisoners", [
        r"prisoners?(?: of war)?", r"pows?", r"captives", r"військовополонен~", r"полонен(?:их|і|ий)",
        r"военнопленн~", r"пленн(?:ых|ые|ый)",
    ]),
]  # fmt: skip
_ENDING = "[а-яіїєґё']*"


def _closing_paren(pattern: str) -> int:
    """The index of the ")" that closes the "(" at index 0."""
    depth = 0
    for index, char in enumerate(pattern):
        depth += char == "("
        depth -= char == ")"
        if depth == 0:
            return index
    raise ValueError(f"unbalanced parentheses in {pattern!r}")


def _first_letters(alternative: str) -> set[str] | None:
    """The letters an alternative can start with, or None when that is not simple to tell."""
    if alternative[:1].isalpha():
        return {alternative[0]}
    if alternative.startswith("[") and "]" in alternative:
        chars = alternative[1 : alternative.index("]")]
        return set(chars) if chars.isalpha() else None
    if alternative.startswith("(?:"):
        close = _closing_paren(alternative)
        inner, rest = alternative[3:close], alternative[close + 1 :]
        found: set[str] = set()
        for part in top_level_alternatives(inner):
            letters = _first_letters(part)
            if letters is None:
                return None
            found |= letters
        if rest.startswith("?"):  # an optional prefix: the rest can start the word too
            letters = _first_letters(rest[1:])
            if letters is None:
                return None
            found |= letters
        return found
    return None


def _guarded(alternatives: list[str]) -> str:
    """The alternatives as one regex, behind a lookahead on their first letters (so that ``re`` skips a
    group with one character test instead of trying each of its alternatives)."""
    body = "|".join(alternatives).replace("~", _ENDING)
    letters: set[str] = set()
    for alternative in alternatives:
        first = _first_letters(alternative)
        if first is None:
            return body
        letters |= first
    return f"(?=[{re.escape(''.join(sorted(letters)))}])(?:{body})"


_NOUN_GROUPS = "|".join(f"(?P<n{i}>{_guarded(alternatives)})" for i, (_, _, alternatives) in enumerate(LEXICON))
_FILLERS = (
    r"more|additional|other|new|enemy|hostile|russian|ukrainian|russia's|occupying|of|the|ворож(?:их|і)|"
    r"російськ(?:их|і)|рашистськ(?:их|і)|окупантськ(?:их|і)|окупаційн(?:их|і)|вражеск(?:их|ие)|российск(?:их|ие)|"
    r"оккупационн(?:ых|ые)|украинск(?:их|ие)|українськ(?:их|і)|різн(?:их|і)|ще|еще|ещё"
)
_UNIT_WORDS = r"од\.?|ед\.?|шт\.?|units? of|pieces? of|одиниц[ьі]|единиц[аы]?"
_INCREMENT = r"\(\s*(?P<inc>\+\s?\d{1,3}(?:[ ,.\u00a0]\d{3})*|\+\s?\d+)\s*\)"
_FORWARD = re.compile(
    rf"\s*(?:{_INCREMENT}\s*)?(?:(?:{_UNIT_WORDS})\s+)?(?:(?:{_FILLERS})\s+){{0,3}}(?:{_NOUN_GROUPS})(?![\w])",
    re.IGNORECASE,
)
_APPROX = (
    r"about|approximately|around|over|more than|nearly|almost|близько|приблизно|понад|майже|около|примерно|более|почти"
)
_APPROX_WORDS = tuple(_APPROX.split("|"))
_LIST_DASHES = "-‒–—:"
# Tried with .match at each word start of the list item (after the last "," ";" "(" ")" or line break),
# leftmost first, rather than searched: the noun alternation is costly to try at every position.
_BACKWARD = re.compile(
    rf"(?:{_NOUN_GROUPS})(?:[ \t]+[^\W\d][\w'/-]*){{0,2}}[ \t]*[-‒–—:][ \t]*(?:(?:{_APPROX})[ \t]+)?$",
    re.IGNORECASE,
)
_WORD_START = re.compile(r"(?<![\w])\w")
_ITEM_DELIMITERS = ",;()\n"
_INCREMENT_AFTER = re.compile(rf"\s*{_INCREMENT}")

_EN_WORDS = {
    "one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7, "eight": 8, "nine": 9, "ten": 10,
    "eleven": 11, "twelve": 12, "thirteen": 13, "fourteen": 14, "fifteen": 15, "sixteen": 16, "seventeen": 17,
    "eighteen": 18, "nineteen": 19, "twenty": 20, "thirty": 30, "forty": 40, "fifty": 50, "sixty": 60,
    "seventy": 70, "eighty": 80, "ninety": 90, "hundred": 100, "a hundred": 100,
}  # fmt: skip
_UK_WORDS = {
    "два": 2, "дві": 2, "три": 3, "чотири": 4, "п'ять": 5, "шість": 6, "сім": 7, "вісім": 8, "дев'ять": 9,
    "десять": 10,
}  # fmt: skip
_RU_WORDS = {
    "два": 2, "две": 2, "три": 3, "четыре": 4, "пять": 5, "шесть": 6, "семь": 7, "восемь": 8, "девять": 9,
    "десять": 10,
}  # fmt: skip
_WORDS = {**_EN_WORDS, **_UK_WORDS, **_RU_WORDS}
_WORDS_BY_LANG = {"en": _EN_WORDS, "uk": _UK_WORDS, "ru": _RU_WORDS}
_WORD_SETS = {lang: frozenset(words) for lang, words in _WORDS_BY_LANG.items()}
_ALL_WORDS = frozenset(_WORDS)
_MULTIPLIERS = (
    (re.compile(r"thousand|тис\.?|тисяч[а-яі]*|тыс\.?|тысяч[а-я]*|k", re.IGNORECASE), 1_000.0),
    (re.compile(r"million|mln|млн\.?|мільйон[а-яі]*|миллион[а-я]*", re.IGNORECASE), 1_000_000.0),
)
_MULTIPLIER_AFTER = re.compile(
    r"\s?(?:thousand|million|mln|тис\.?|тисяч[а-яі]*|тыс\.?|тысяч[а-я]*|млн\.?|мільйон[а-яі]*|миллион[а-я]*|k)(?![\w])",
    re.IGNORECASE,
)
# Digits: not inside a date, time, code, model name ("Су-34"), money or signed number; not an ordinal
# ("92nd", "92-га") or a percentage. Thousands are grouped by one repeated separator.
_DIGITS = re.compile(
    r"(?<![\w.,:/+\-−№#$€£₴])"
    r"(?P<int>\d{1,3}(?P<sep>[,. \u00a0\u202f])\d{3}(?:(?P=sep)\d{3})*|\d+)(?P<frac>[.,]\d+)?"
    r"(?:\s?[-–]\s?\d+(?:[.,]\d+)?)?"  # a range keeps its first number
    r"(?![\w%]|[.,:/]\d|\s?%|-[^\W\d_])"
)
# Number words are found by a set lookup of the text's tokens first (a regex alternation of ~50 words
# tried at every position costs ~10x more), then with a literal regex per word that is present.
_WORD_REGEXES: dict[str, re.Pattern[str]] = {}


class _Number(NamedTuple):
    start: int
    end: int
    value: float
    plain: bool  # digits only, no separator or decimal part: a year candidate


def _digit_matches(text: str, starts: Iterable[int] | None = None) -> Iterator[re.Match[str]]:
    """``_DIGITS.finditer(text)``, tried only where a digit follows no word character.

    A match starts with such a digit (its lookbehind rules out a word character before), and ``re``
    finds those with a fast character scan where ``_DIGITS`` itself would be tried at every position.
    ``starts``: those positions when the caller has them (``MatchView.number_starts``).
    """
    end = 0
    for position in number_starts(text) if starts is None else starts:
        if position < end:
            continue
        match = _DIGITS.match(text, position)
        if match is not None:
            end = match.end()
            yield match


def _numbers(
    text: str,
    lang: str | None,
    lowered: str | None = None,
    starts: Iterable[int] | None = None,
    tokens: set[str] | None = None,
) -> list[_Number]:
    """Every number in ``text`` (digits and number words), with multipliers applied, in text order.

    ``tokens``: the number words that are whitespace-separated tokens of ``lowered``, when known.
    """
    found: list[_Number] = []
    for match in _digit_matches(text, starts):
        whole, sep, frac = match["int"], match["sep"], match["frac"]
        if sep == "." and lang == "en" and frac is None and whole.count(".") == 1:
            value = float(whole)  # English: "3.574" is a decimal
        else:
            value = float(whole.replace(sep, "")) if sep else float(whole)
            if frac:
                value += float("0." + frac[1:])
        found.append(_multiplied(text, match.start(), match.end(), value, sep is None and frac is None))
    if lowered is None:
        lowered = text.lower()
    if len(lowered) == len(text):  # lower() kept every offset (nearly always)
        words = _WORDS_BY_LANG.get(lang or "", _WORDS)
        # A number word only counts before a noun, so it is followed by a space: a whitespace split finds it.
        present = _WORD_SETS.get(lang or "", _ALL_WORDS).intersection(lowered.split() if tokens is None else tokens)
        for word in present:
            regex = _WORD_REGEXES.get(word)
            if regex is None:
                regex = _WORD_REGEXES[word] = re.compile(rf"(?<![\w']){re.escape(word)}(?![\w'])")
            for match in regex.finditer(lowered):
                found.append(_multiplied(text, match.start(), match.end(), float(words[word]), False))
        if present:
            found.sort(key=lambda number: number.start)
    return found


def _multiplied(text: str, start: int, end: int, value: float, plain: bool) -> _Number:
    """The number with a following "thousand"/"тис."/"млн" applied (and included in its span)."""
    after = text[end : end + 2].lstrip()[:1]
    if not after or after.lower() not in "tmkтм":  # what every multiplier starts with
        return _Number(start, end, value, plain)
    mult = _MULTIPLIER_AFTER.match(text, end)
    if mult is not None:
        word = mult.group().strip()
        for regex, factor in _MULTIPLIERS:
            if regex.fullmatch(word):
                return _Number(start, mult.end(), value * factor, False)
    return _Number(start, end, value, plain)


_YEAR_PREPOSITION = re.compile(r"(?:^|\W)(?:in|since|of|from|until|by|by|у|в|з|с|від|до|по|от|із)\s+$", re.IGNORECASE)
_SENTENCE = re.compile(r"[.!?;](?=\s)|\n")
# The same matches, written to start with a character set, which ``re`` scans for quickly.
_SENTENCE_FAST = re.compile(r"[\n.!?;](?:(?<=\n)|(?=\s))")
_PARAGRAPH = re.compile(r"\n\s*\n")

_LOSS = re.compile(
    r"\b(?:destroy\w*|lost|loss(?:es)?|losing|shot down|downed|eliminat\w*|neutrali[sz]\w*|liquidat\w*|wiped out|"
    r"знищ\w*|ліквід\w*|збит\w*|збил\w*|збив\w*|знешкод\w*|уражен\w*|уразил\w*|втрат\w*|мінус|"
    r"уничтож\w*|ликвид\w*|сбит\w*|сбил\w*|поражен\w*|поразил\w*|потер(?:и|ял\w*|ь|ей|ями|ях)|минус|"
    r"подбит\w*|підбит\w*|burn(?:ed|t)|спален\w*|сожжен\w*)\b",
    re.IGNORECASE,
)
_CAPTURE = re.compile(
    r"\b(?:captur\w*|seized|trophy|trophies|taken prisoner|took prisoner|surrender\w*|полон\w*|захопил\w*|"
    r"захоплен\w*|затрофе\w*|трофе\w*|в плен\w*|пленил\w*|пленен\w*|захвач\w*|захватил\w*|сдал\w*(?: в плен)?|"
    r"здал\w*(?: в полон)?)\b",
    re.IGNORECASE,
)
_KILLED = re.compile(
    r"\b(?:killed|kills|dead|died|die|deaths?|fatalit\w*|perished|загин\w*|загибл\w*|вбит\w*|вбил\w*|вбив\w*|"
    r"убит\w*|убил\w*|погиб\w*|загибел\w*|смерт\w*|жертв\w*)\b",
    re.IGNORECASE,
)
_WOUNDED = re.compile(
    r"\b(?:wounded|injur\w*|hurt|поранен\w*|поранил\w*|травмован\w*|ранен\w*|ранил\w*|постраждал\w*|"
    r"пострадал\w*|пострадавш\w*)\b",
    re.IGNORECASE,
)
# One regex for every context word, run once per text over its lower-cased copy; the named group that
# matched is the category. A lookahead for the words' first letters lets ``re`` skip to candidates
# (about 3x faster than a leading ``\b``, and 10x faster than IGNORECASE on the original text).
_CONTEXT_PARTS = (("captured", _CAPTURE), ("wounded", _WOUNDED), ("killed", _KILLED), ("loss", _LOSS))
_CONTEXT_BODIES = [(name, regex.pattern[len(r"\b(?:") : -len(r")\b")]) for name, regex in _CONTEXT_PARTS]
_FIRST_LETTERS = "".join(sorted({alt[0] for _, body in _CONTEXT_BODIES for alt in re.split(r"\|(?![^(]*\))", body)}))
if not _FIRST_LETTERS.isalpha():  # every alternative must start with a letter for the lookahead to be exact
    raise ValueError(f"a context word starts with a non-letter: {_FIRST_LETTERS!r}")
_CONTEXT = re.compile(
    rf"(?<!\w)(?=[{_FIRST_LETTERS}])(?:" + "|".join(f"(?P<{name}>{body})" for name, body in _CONTEXT_BODIES) + r")\b"
)
_CONTEXT_ANY_CASE = re.compile(_CONTEXT.pattern.replace(f"[{_FIRST_LETTERS}]", r"\w"), re.IGNORECASE)


def _literal_prefix(alternative: str) -> str:
    """The literal text every match of a regex alternative starts with ("" when it has none)."""
    prefix = []
    for op, value in _parser.parse(alternative).data:
        if op is not _parser.LITERAL:
            break
        prefix.append(chr(value))
    return "".join(prefix)


# Every context word starts with one of these literal prefixes, so a match of ``_CONTEXT`` can only start
# where the automaton finds one; ``_CONTEXT`` is tried there (in C the automaton is ~3x faster than
# ``re`` trying every word start).
_CONTEXT_PREFIXES = frozenset(
    _literal_prefix(alt) for _, body in _CONTEXT_BODIES for alt in top_level_alternatives(body)
)
if "" in _CONTEXT_PREFIXES:
    raise ValueError("every context word needs a literal prefix")
# One pass over the lower-cased text finds those prefixes and the number words (without spaces: only those
# can be whitespace-separated tokens). Value: (prefix length - 1 or None, number word or None).
_LOWERED_AUTOMATON = ahocorasick.Automaton()
for _key in sorted(_CONTEXT_PREFIXES | {word for word in _ALL_WORDS if not any(c.isspace() for c in word)}):
    _LOWERED_AUTOMATON.add_word(
        _key, (len(_key) - 1 if _key in _CONTEXT_PREFIXES else None, _key if _key in _ALL_WORDS else None)
    )
_LOWERED_AUTOMATON.make_automaton()


def _scan_lowered(lowered: str) -> tuple[list[int], set[str]]:
    """``(where a context word can start, the number words that are whitespace-separated tokens)``.

    The second is ``_ALL_WORDS.intersection(lowered.split())``: a word is a token of the split where one
    of its occurrences has whitespace (or an end of the text) on both sides.
    """
    candidates: set[int] = set()
    tokens: set[str] = set()
    last = len(lowered) - 1
    for end, (back, word) in _LOWERED_AUTOMATON.iter(lowered):
        if back is not None:
            candidates.add(end - back)
        if word is not None and word not in tokens:
            start = end - len(word) + 1
            if (start == 0 or lowered[start - 1].isspace()) and (end == last or lowered[end + 1].isspace()):
                tokens.add(word)
    return sorted(candidates), tokens


def _context_matches(lowered: str, candidates: list[int] | None = None) -> list[tuple[int, int, str]]:
    """``(start, end, category)`` of every ``_CONTEXT`` match in ``lowered``, as ``finditer`` finds them.

    ``candidates``: the first part of ``_scan_lowered(lowered)``, when known.
    """
    if candidates is None:
        candidates = _scan_lowered(lowered)[0]
    found = []
    reached = 0
    for position in candidates:
        if position < reached:
            continue
        match = _CONTEXT.match(lowered, position)
        if match is not None:
            reached = match.end()
            found.append((position, reached, match.lastgroup or ""))
    return found


# What may stand between a casualty word and a bare number ("погибли 3", "were wounded at least 12").
_CASUALTY_GAP = re.compile(
    r"\s+(?:(?:at least|щонайменше|не менее|не менше|ще|еще|ещё|about|близько|около|понад|более)\s+)?$",
    re.IGNORECASE,
)
_FORWARD_ANY_NOUN = re.compile(r"\s*[^\W\d]")  # any word follows: it is not a bare count
# The words right after the noun that can qualify it ("500 soldiers killed") end at a clause break.
_CLAUSE_BREAK = re.compile(r"[,;:()\n]|\s(?:and|but|while|та|і|й|а|але|и|но)\s", re.IGNORECASE)
# The same matches, written to start with a character set, which ``re`` scans for quickly (only the start
# of a match is used).
_CLAUSE_BREAK_FAST = re.compile(r"[,;:()\s](?:(?<=[,;:()\n])|(?:and|but|while|та|і|й|а|але|и|но)\s)", re.IGNORECASE)
_AFTER_WINDOW = 40
_DIGIT = re.compile(r"\d")


def _noun(match: re.Match[str]) -> tuple[str, str, int, int] | None:
    """(group, unit, start, end) of the lexicon noun a forward/backward match found."""
    name = match.lastgroup  # the noun group closes last in both regexes (nothing after it is a group)
    if name is not None and name[0] == "n" and name[1:].isdigit():
        group, unit, _ = LEXICON[int(name[1:])]
        return group, unit, match.start(name), match.end(name)
    return _noun_slow(match)


def _noun_slow(match: re.Match[str]) -> tuple[str, str, int, int] | None:
    """``_noun`` by looking at every group."""
    for name, value in match.groupdict().items():
        if value is not None and name[0] == "n" and name[1:].isdigit():
            group, unit, _ = LEXICON[int(name[1:])]
            return group, unit, match.start(name), match.end(name)
    return None


class _Contexts:
    """Every context word of a text (found on first use), looked up by position."""

    def __init__(self, text: str, lowered: str | None = None, candidates: list[int] | None = None) -> None:
        self.text = text
        self._lowered = lowered
        self._candidates = candidates  # where context words can start in lowered, when known
        self._starts: list[int] | None = None
        self._ends: list[int] = []
        self._categories: list[str] = []

    def _scan(self) -> list[int]:
        if self._starts is None:
            lowered = self.text.lower() if self._lowered is None else self._lowered
            if len(lowered) == len(self.text):
                found = _context_matches(lowered, self._candidates)
            else:
                found = [(m.start(), m.end(), m.lastgroup or "") for m in _CONTEXT_ANY_CASE.finditer(self.text)]
            self._starts = [start for start, _, _ in found]
            self._ends = [end for _, end, _ in found]
            self._categories = [category for _, _, category in found]
        return self._starts

    def nearest(self, before_start: int, before_end: int, after_start: int, after_end: int) -> str | None:
        """The category of the first word in the after-window, else of the last one in the before-window."""
        starts = self._scan()
        index = bisect_left(starts, after_start)
        if index < len(starts) and starts[index] < after_end:
            return self._categories[index]
        index = bisect_left(starts, before_end) - 1
        if index >= 0 and starts[index] >= before_start and self._ends[index] <= before_end:
            return self._categories[index]
        return None

    def casualty_before(self, start: int) -> str | None:
        """``killed``/``wounded`` when such a word stands right before ``start`` ("погибли 3")."""
        starts = self._scan()
        index = bisect_left(starts, start) - 1
        if index < 0 or self._categories[index] not in ("killed", "wounded"):
            return None
        end = self._ends[index]
        return self._categories[index] if end <= start and _CASUALTY_GAP.match(self.text, end, start) else None


def _after_list_dash(text: str, start: int) -> bool:
    """Whether a dash or colon (and perhaps "about"/"близько") stands right before ``start``."""
    before = text[max(0, start - 40) : start].rstrip()
    if before[-1:] in _LIST_DASHES:
        return bool(before)
    lowered = before.lower()
    if not lowered.endswith(_APPROX_WORDS):
        return False
    for word in _APPROX_WORDS:
        if lowered.endswith(word) and not lowered[-len(word) - 1 : -len(word)].isalnum():
            return before[: -len(word)].rstrip()[-1:] in _LIST_DASHES and len(before) > len(word)
    return False


def _backward(text: str, start: int) -> re.Match[str] | None:
    """The list-form noun that ends right before the number at ``start`` ("танків ‒ 5408"), or None."""
    item_start = max(max(text.rfind(c, 0, start) for c in _ITEM_DELIMITERS) + 1, start - 120)
    for word in _WORD_START.finditer(text, item_start, start):
        found = _BACKWARD.match(text, word.start(), start)
        if found is not None:
            return found
    return None


def _kind(group: str, unit: str, context: str | None) -> tuple[str, str] | None:
    """(kind, unit) for a noun group and its context category, or None when it is not a claim."""
    if group == "strikes":
        return "strikes", unit
    if group == "attacks":
        return "attacks", unit
    if group == "shells":
        return "count", unit
    if group == "killed":
        return "casualties", "killed"
    if group == "wounded":
        return "casualties", "wounded"
    if group == "prisoners":
        return "captured", "prisoners"
    if group == "equipment":
        return {"loss": "losses", "captured": "captured"}.get(context or "", "count"), unit
    if group == "enemy":
        if context == "captured":
            return "captured", "prisoners"
        if context == "wounded":
            return "casualties", "wounded"
        return "losses", "personnel"
    if group in ("soldiers", "people"):
        if context == "captured":
            return "captured", "prisoners"
        if context in ("killed", "wounded"):
            return "casualties", context
        if context == "loss":
            return "losses", "personnel"
        return ("count", "personnel") if group == "soldiers" else None
    if group == "civilians" and context in ("killed", "wounded"):
        return "casualties", f"civilians_{context}"
    return None


def extract_quantities(text: str, lang: str | None = None, *, view: MatchView | None = None) -> list[Quantity]:
    """Every claimed count in ``text`` (see the module doc), in text order; spans index ``text``.

    ``lang`` (en, uk, ru or None for any) selects the number words and whether "." groups thousands.
    ``view``: the text's ``MatchView`` when the caller has one (it knows where numbers can start).
    """
    if not text:
        return []
    starts = view.number_starts() if view is not None and (view.text is text or view.text == text) else None
    lowered = text.lower()
    scanned = _scan_lowered(lowered) if len(lowered) == len(text) else None
    numbers = _numbers(text, lang, lowered, starts, scanned[1] if scanned is not None else None)
    if not numbers:
        return []
    boundaries = [m.end() for m in _SENTENCE_FAST.finditer(text)]
    paragraphs: list[int] | None = None
    loss_ends: dict[int, int] = {}  # paragraph start -> end of its first loss word (len(text) + 1: none)
    contexts = _Contexts(text, lowered, scanned[0] if scanned is not None else None)
    found: list[Quantity] = []
    taken_until = -1
    for number in numbers:
        start, end, value = number.start, number.end, number.value
        if start < taken_until:
            continue
        if number.plain and 1900 <= value <= 2100 and _YEAR_PREPOSITION.search(text, max(0, start - 12), start):
            continue
        noun = None
        increment: re.Match[str] | None = None
        listed = _after_list_dash(text, start)
        if listed:  # "танків - 5408 (+19)": the noun is before the number
            backward = _backward(text, start)
            noun = _noun(backward) if backward is not None else None
            listed = noun is not None
            if listed:
                increment = _INCREMENT_AFTER.match(text, end)
        if noun is None:
            forward = _FORWARD.match(text, end)
            if forward is not None:
                noun = _noun(forward)
                increment = forward if forward["inc"] else None
            else:  # "погибли 3", "were wounded 12": a bare number right after a casualty word
                if _FORWARD_ANY_NOUN.match(text, end):
                    continue
                casualty = contexts.casualty_before(start)
                if casualty is None:
                    continue
                noun = (casualty, casualty, start, end)
        if noun is None:
            continue
        group, unit, noun_start, noun_end = noun
        first, last = min(start, noun_start), max(end, noun_end)
        index = bisect_right(boundaries, first)
        sentence_start = boundaries[index - 1] if index else 0
        following = bisect_right(boundaries, last)
        sentence_end = boundaries[following] if following < len(boundaries) else len(text)
        after_from = increment.end() if listed and increment is not None else last
        after_to = min(sentence_end, after_from + _AFTER_WINDOW)
        clause_break = _CLAUSE_BREAK_FAST.search(text, after_from, after_to)
        if clause_break is not None:
            after_to = clause_break.start()
        digit = _DIGIT.search(text, after_from, after_to)
        if digit is not None:
            after_to = digit.start()
        context = contexts.nearest(sentence_start, first, after_from, after_to)
        if listed and context is None:
            # A list item takes its sense from the paragraph: "Загальні бойові втрати противника ...:"
            if paragraphs is None:
                paragraphs = [m.end() for m in _PARAGRAPH.finditer(text)]
            at = bisect_right(paragraphs, first)
            paragraph = paragraphs[at - 1] if at else 0
            loss_end = loss_ends.get(paragraph)
            if loss_end is None:
                # Where the paragraph's first loss word ends, found once per paragraph: a long list would
                # otherwise search its paragraph from the start again for every item (quadratic).
                found_loss = _LOSS.search(text, paragraph)
                loss_end = loss_ends[paragraph] = found_loss.end() if found_loss is not None else len(text) + 1
            if loss_end <= first:  # a loss word before the item: ``_LOSS.search(text, paragraph, first)``
                context = "loss"
        resolved = _kind(group, unit, context)
        if resolved is None:
            continue
        kind, unit = resolved
        found.append(Quantity(kind=kind, value=value, unit=unit, start=first, end=last))
        taken_until = last
        if increment is not None and kind == "losses":
            digits = re.sub(r"[+ ,.\u00a0]", "", increment["inc"])
            if digits.isdigit():
                inc_start, inc_end = increment.span("inc")
                found.append(
                    Quantity(kind=f"{kind}_daily", value=float(digits), unit=unit, start=inc_start, end=inc_end)
                )
                taken_until = max(taken_until, inc_end)
    found.sort(key=lambda q: (q.start, q.end))
    return found
