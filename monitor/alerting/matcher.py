"""One Aho-Corasick automaton for every term of every rule, and the rule logic on top of it.

The text is folded into a *match view*: its word tokens (``\\w+``), case-folded (and ``ё`` -> ``е``),
joined by single spaces and padded with a space at each end. A term is folded the same way and
searched as ``" term "``, so it can only match whole words, and a phrase matches across any run of
whitespace or punctuation ("chemical weapons" finds "chemical-weapons" and "chemical, weapons").
One pass over the view finds every term of every rule; spans in the original text are recovered only
for the rules that fire. The view is built on the text's UTF-8 bytes with C-level methods (``_scan``);
texts with characters that cannot be classified cheaply (emoji, symbols) take the regex path.

Folding loses case, so one rule is applied after the pass: given ``common_words``, a term written with a
capital (a name) counts its forms that are also everyday words (Буда's «буде») only where the text
capitalizes them (``_drop_lower_case``).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field
from itertools import accumulate

import ahocorasick

from monitor.config import Rule

WORD = re.compile(r"\w+")
_SPLIT = re.compile(r"(\W+)")


def fold(text: str) -> str:
    """Case-fold for matching; ``ё`` is written ``е`` in much Russian text, so they are one letter."""
    return text.casefold().replace("ё", "е")


def fold_lower(text: str) -> str:
    """A same-length (for nearly all text) lower-cased copy, used to locate spans quickly."""
    return text.lower().replace("ё", "е")


def match_view(text: str) -> str:
    """The padded, folded token string the automaton runs over."""
    return " " + fold(_scan(text)[0]) + " "


def fold_term(term: str) -> str:
    """A rule term in match-view form (without the padding)."""
    return fold(" ".join(WORD.findall(term)))


_QUOTES = '"“”„«»'


def term_forms(term: str) -> tuple[bool, dict[str, str]]:
    """``(is_prefix, {folded surface form: how it was derived})`` for a rule term.

    ``"Бахмут"`` (quoted) matches only as written; ``Бахм*`` matches any word starting with it;
    other terms also match their Ukrainian/Russian case forms and transliterations
    (``monitor.alerting.forms``); a Latin term gets Cyrillic spellings only when it is capitalized.
    """
    stripped = term.strip()
    if len(stripped) > 1 and stripped[0] in _QUOTES and stripped[-1] in _QUOTES:
        folded = fold_term(stripped[1:-1])
        return False, {folded: "exact (quoted)"} if folded else {}
    if stripped.endswith("*"):
        folded = fold_term(stripped[:-1])
        return True, {folded: "prefix"} if folded else {}
    folded = fold_term(stripped)
    forms = {folded: "as written"} if folded else {}
    # forms.py imports fold_term from this module, so it is imported here, at rule-compile time, once
    # both modules are loaded whichever was imported first.
    from monitor.alerting.forms import expand_term  # noqa: PLC0415 - see above

    # Latin -> Cyrillic spellings only for names (a capital first letter): "Bakhmut" is also
    # Бахмут, but "tank" must not become танк.
    proper = stripped[:1].isupper()
    for form, how in expand_term(stripped).forms.items():
        if form and (proper or "latin->" not in how):
            forms.setdefault(form, how)
    return False, forms


# --- obfuscation -----------------------------------------------------------------------------------
# Homoglyphs: letters that look alike in Latin and Cyrillic. In a word that mixes the two scripts, the
# minority script's look-alikes are read as the majority script's letters ("Bаkhmut" with a Cyrillic
# а is Bakhmut). Words written in one script are never touched.
_CYR_TO_LAT = str.maketrans("аеорсухіјѕкмнвтАЕОРСУХІЈЅКМНВТ", "aeopcyxijskmhbtAEOPCYXIJSKMHBT")
_LAT_TO_CYR = str.maketrans("aeopcyxikmhbtAEOPCYXIKMHBT", "аеорсухікмнвтАЕОРСУХІКМНВТ")
_LATIN = re.compile(r"[A-Za-z]")
_CYRILLIC = re.compile(r"[Ѐ-ӿ]")
# Cheap tests (C-level) that decide whether the slower de-obfuscating view is needed: a Latin letter
# next to a Cyrillic one inside a word (see ``_scan``), or four one-letter words in a row in the match
# view ("B.a.k.h.m.u.t", "Б а х м у т").
_LETTER_RUN = re.compile(r" \w \w \w \w ")


# --- the word string, on UTF-8 bytes ---------------------------------------------------------------
# ``" ".join(WORD.findall(text))`` built with C-level bytes methods (several times faster than the
# regex): ASCII non-word bytes become spaces and runs of spaces collapse to one. That is exact as long
# as every non-ASCII character is a word character. A lead byte all of whose characters are word
# characters (most of Cyrillic, Latin Extended, CJK ...) needs no check; a two-byte lead that also
# starts non-word characters (0xD2: Ukrainian ґ, but also ҂) is checked for those with a literal-prefix
# regex; any other character (emoji, symbols ...) sends the text through the regex.
_ASCII_GAPS = bytes(b if b >= 0x80 or chr(b).isalnum() or b == 0x5F else 0x20 for b in range(256))
_SPACE_RUN = re.compile(b"  +")  # a literal prefix: ``re`` skips ahead with a fast substring search


def _lead_chars(lead: int) -> str:
    """Every character whose UTF-8 encoding starts with the byte ``lead`` (two- and three-byte forms)."""
    if lead >= 0xE0:
        first = (lead - 0xE0) << 12
        return "".join(map(chr, range(max(first, 0x800), first + 0x1000)))
    first = (lead - 0xC0) << 6
    return "".join(map(chr, range(first, first + 0x40)))


_WORD_LEADS = frozenset(lead for lead in range(0xC2, 0xF0) if _lead_chars(lead).isalnum())
_NON_WORD_AFTER: dict[int, re.Pattern[bytes]] = {  # two-byte lead -> the regex for its non-word characters
    lead: re.compile(
        re.escape(bytes([lead]))
        + b"["
        + b"".join(re.escape(bytes([0x80 + i])) for i, c in enumerate(_lead_chars(lead)) if not c.isalnum())
        + b"]"
    )
    for lead in range(0xC2, 0xE0)
    if lead not in _WORD_LEADS
}
_PLAIN_BYTES = bytes(range(0xC0)) + bytes(sorted(_WORD_LEADS))  # deleted to leave the leads to check
# Per byte: an ASCII letter 1, a Cyrillic lead byte (U+0400-U+04FF) 2, another lead byte that is not
# all word characters 8, anything else 0; continuation bytes are dropped, so neighbours are characters.
_SCRIPT_CLASSES = bytes(
    1
    if 0x41 <= b <= 0x5A or 0x61 <= b <= 0x7A
    else 2
    if 0xD0 <= b <= 0xD3
    else 8
    if b >= 0xC0 and b not in _WORD_LEADS
    else 0
    for b in range(256)
)
_CONTINUATION = bytes(range(0x80, 0xC0))


def _only_word_characters(raw: bytes) -> bool:
    """Whether every non-ASCII character of the UTF-8 ``raw`` is a word character (``\\w``)."""
    for lead in set(raw.translate(None, _PLAIN_BYTES)):
        checker = _NON_WORD_AFTER.get(lead)
        if checker is None or checker.search(raw) is not None:
            return False
    return True


def _scan(text: str) -> tuple[str, bool]:
    """``(" ".join(WORD.findall(text)), whether a Latin letter touches a Cyrillic one)``."""
    raw = text.encode("utf-8", "surrogatepass")
    mixed = False
    if not text.isascii():
        classes = raw.translate(_SCRIPT_CLASSES, _CONTINUATION)
        # Read as one integer, the classes plus themselves shifted by a byte have a byte 3 exactly where
        # a 1 and a 2 are neighbours (every other sum of two classes is 0-2, 4 or at least 8, and no
        # byte carries into the next).
        number = int.from_bytes(classes, "little")
        mixed = b"\x03" in (number + (number << 8)).to_bytes(len(classes) + 1, "little")
        # 0xD2 is a Cyrillic lead (class 2) that also starts non-word characters.
        if (b"\x08" in classes or b"\xd2" in raw) and not _only_word_characters(raw):
            return " ".join(WORD.findall(text)), mixed
    words = _SPACE_RUN.sub(b" ", raw.translate(_ASCII_GAPS)).strip(b" ")
    return words.decode("utf-8", "surrogatepass"), mixed


def _one_script(word: str) -> str:
    """A mixed-script word rewritten in the one script all its letters can be read in (else the majority's)."""
    latin = len(_LATIN.findall(word))
    cyrillic = len(_CYRILLIC.findall(word))
    if not latin or not cyrillic:
        return word
    as_cyrillic = word.translate(_LAT_TO_CYR)
    as_latin = word.translate(_CYR_TO_LAT)
    cyrillic_ok = not _LATIN.search(as_cyrillic)
    latin_ok = not _CYRILLIC.search(as_latin)
    if cyrillic_ok != latin_ok:
        return as_cyrillic if cyrillic_ok else as_latin
    return as_latin if latin > cyrillic else as_cyrillic


_SEPARATORS = frozenset(" .·•_*/|+-")


def deobfuscated_view(text: str) -> tuple[str, list[tuple[int, int]]]:
    """A match view with homoglyphs resolved and spaced-out letters joined, and each token's span.

    Slower than ``match_view`` (Python per token), so it runs only when ``_scan`` finds a mixed-script
    word or ``_LETTER_RUN`` a run of one-letter words.
    A run of four or more one-letter words, each apart from the next by exactly one separator
    character, is read as one word.
    """
    found = [(m.group(), m.start(), m.end()) for m in WORD.finditer(text)]
    words: list[str] = []
    spans: list[tuple[int, int]] = []
    index = 0
    while index < len(found):
        run_end = index
        while (
            run_end + 1 < len(found)
            and len(found[run_end][0]) == 1
            and len(found[run_end + 1][0]) == 1
            and found[run_end + 1][1] - found[run_end][2] == 1
            and text[found[run_end][2]] in _SEPARATORS
        ):
            run_end += 1
        if run_end - index + 1 >= 4:
            words.append("".join(word for word, _, _ in found[index : run_end + 1]))
            spans.append((found[index][1], found[run_end][2]))
            index = run_end + 1
            continue
        word, start, end = found[index]
        words.append(_one_script(word))
        spans.append((start, end))
        index += 1
    return " " + fold(" ".join(words)) + " ", spans


@dataclass(slots=True)
class Hit:
    """A term of one rule found in the text; ``start``/``end`` index the original text."""

    term: str
    start: int
    end: int
    form: str = ""
    how: str = "as written"


NEAR = re.compile(r"^(.+?)\s+NEAR/(\d+)\s+(.+)$")
REGEX_PREFIX = "re:"


@dataclass(frozen=True, slots=True)
class _RegexTerm:
    """``re:PATTERN``: a case-insensitive regular expression searched in the item text."""

    rule: int
    kind: str  # any | all | none
    term: str
    regex: re.Pattern[str]
    slot: int


@dataclass(frozen=True, slots=True)
class _Near:
    """``left NEAR/n right``: both sides within ``distance`` words of each other, in either order."""

    rule: int
    kind: str  # any | all | none
    term: str
    left: tuple[int, ...]
    right: tuple[int, ...]
    distance: int
    slot: int  # the all-term slot it fills (kind "all")

    def satisfied(
        self, present: set[int], hits: list[tuple[int, tuple[int, int]]], view: str, patterns: list[str]
    ) -> list[int] | None:
        """The pattern ids of a close-enough pair, or None."""
        if not present.intersection(self.left) or not present.intersection(self.right):
            return None
        left, right = set(self.left), set(self.right)
        spots: list[tuple[int, int, int, bool]] = []  # (first word, last word, pid, is left)
        for end, (length, pid) in hits:
            if pid in left or pid in right:
                first = view.count(" ", 0, end - length + 1)
                last = first + patterns[pid].count(" ")
                if pid in left:
                    spots.append((first, last, pid, True))
                if pid in right:
                    spots.append((first, last, pid, False))
        for a_first, a_last, a_pid, a_left in spots:
            if not a_left:
                continue
            for b_first, b_last, b_pid, b_left in spots:
                if b_left:
                    continue
                gap = b_first - a_last - 1 if b_first > a_last else a_first - b_last - 1
                if 0 <= gap <= self.distance:
                    return [a_pid, b_pid]
        return None


@dataclass(slots=True)
class RuleMatch:
    """A rule that fired, with every occurrence of its positive terms, in text order."""

    rule: Rule
    hits: list[Hit] = field(default_factory=list)


class CompiledRules:
    """Rules compiled once: one automaton for all terms, and per-pattern rule bitmasks.

    ``match`` runs the automaton once, ORs the masks of the patterns present (any-term rules,
    none-term rules, and one bit per (rule, all-term) slot), and only then looks at the few candidate
    rules; spans are computed for the rules that fire.
    """

    def __init__(self, rules: Sequence[Rule], *, common_words: AbstractSet[str] = frozenset()) -> None:
        """``common_words``: folded forms that are also everyday words (``monitor.alerting.common_words``).
        A term written with a capital (a name: Буда, Мирне) matches such a form of it (буде, мирне) only
        where the text has a capital there; a form that any lower-case term also yields is not limited."""
        self.rules = list(rules)
        ids: dict[tuple[str, bool], int] = {}
        capital: dict[int, bool] = {}  # pattern id -> whether every term yielding it is a capitalized name
        self._any_mask: list[int] = []
        self._none_mask: list[int] = []
        self._all_slots: list[int] = []  # per pattern: the (rule, all-term) slots it satisfies
        self._all_rules: list[int] = []  # per pattern: rules that use it as an all-term
        self._required: list[int] = []  # per rule: its all-term slots
        positives_per_rule: list[dict[int, str]] = []  # per rule: pattern id -> term as written, in order
        self._how: dict[tuple[int, str], str] = {}  # (pattern id, term) -> how that form was derived
        slot = 0

        def pattern_ids(term: str) -> list[int]:
            """The pattern ids of every surface form of ``term`` (see ``term_forms``)."""
            prefix, forms = term_forms(term)
            stripped = term.strip()
            name = bool(common_words) and not prefix and stripped[:1].isupper()
            found = []
            for form, how in forms.items():
                key = (form, prefix)
                if key not in ids:
                    ids[key] = len(ids)
                    for masks in (self._any_mask, self._none_mask, self._all_slots, self._all_rules):
                        masks.append(0)
                pid = ids[key]
                needs = name and form in common_words
                capital[pid] = needs and capital.get(pid, True)
                self._how.setdefault((pid, term), how)
                found.append(pid)
            return found

        self._near: list[_Near] = []
        self._regex_terms: list[_RegexTerm] = []

        def regex(term: str, index: int, kind: str, slot_bit: int = 0) -> bool:
            """Register ``re:PATTERN``: searched in the text itself, compiled once here."""
            if not term.startswith(REGEX_PREFIX):
                return False
            compiled = re.compile(term[len(REGEX_PREFIX) :], re.IGNORECASE)  # validated by the Rule model
            self._regex_terms.append(_RegexTerm(index, kind, term, compiled, slot_bit))
            return True

        def near(term: str, index: int, kind: str, slot_bit: int = 0) -> bool:
            """Register ``a NEAR/n b``: both sides are searched, the distance is checked per item."""
            found = NEAR.match(term.strip())
            if found is None:
                return False
            left, distance, right = found.group(1), int(found.group(2)), found.group(3)
            self._near.append(
                _Near(index, kind, term, tuple(pattern_ids(left)), tuple(pattern_ids(right)), distance, slot_bit)
            )
            return True

        for index, rule in enumerate(self.rules):
            bit = 1 << index
            required = 0
            positives: dict[int, str] = {}
            for term in rule.any:
                if regex(term, index, "any") or near(term, index, "any"):
                    continue
                for pid in pattern_ids(term):
                    self._any_mask[pid] |= bit
                    positives.setdefault(pid, term)
            for term in {fold_term(t) or t: t for t in rule.all}.values():
                if not (regex(term, index, "all", 1 << slot) or near(term, index, "all", 1 << slot)):
                    for pid in pattern_ids(term):  # any form of the term fills its slot
                        self._all_slots[pid] |= 1 << slot
                        self._all_rules[pid] |= bit
                        positives.setdefault(pid, term)
                required |= 1 << slot
                slot += 1
            for term in rule.none:
                if regex(term, index, "none") or near(term, index, "none"):
                    continue
                for pid in pattern_ids(term):
                    self._none_mask[pid] |= bit
            self._required.append(required)
            positives_per_rule.append(positives)
        self._patterns = [form for form, _ in ids]
        self._prefix = [prefix for _, prefix in ids]
        self._capital_pids = frozenset(pid for pid, needs in capital.items() if needs)
        self.pattern_count = len(ids)
        self._regexes: dict[int, re.Pattern[str]] = {}
        self._automaton = ahocorasick.Automaton()
        for (pattern, prefix), pid in ids.items():
            # A prefix pattern has no trailing space, so it matches the start of a longer word too.
            padded = f" {pattern}" if prefix else f" {pattern} "
            self._automaton.add_word(padded, (len(padded), pid))
        if ids:
            self._automaton.make_automaton()
        self._has_any = [bool(rule.any) for rule in self.rules]
        self._sources = [frozenset(rule.sources) for rule in self.rules]
        self._channels = [frozenset(c.lower() for c in rule.channels) for rule in self.rules]
        self._langs = [frozenset(rule.langs) for rule in self.rules]
        self._near_rules = 0
        for entry in self._near:
            self._near_rules |= 1 << entry.rule
        # Per rule: pattern id -> (position among its positives, pid, term, form, how), so that a fired
        # rule looks up the few patterns present instead of scanning all its (often ~100) forms.
        self._positive_entries: list[dict[int, tuple[int, int, str, str, str]]] = [
            {pid: (order, pid, term, *self.explain(pid, term)) for order, (pid, term) in enumerate(positives.items())}
            for positives in positives_per_rule
        ]

    def explain(self, pid: int, term: str) -> tuple[str, str]:
        """The surface form a pattern stands for and how it was derived from ``term``."""
        form = self._patterns[pid] + ("*" if self._prefix[pid] else "")
        return form, self._how.get((pid, term), "as written")

    def match(
        self, text: str, *, source: str | None = None, channel: str | None = None, lang: str | None = None
    ) -> list[RuleMatch]:
        """Every rule that fires on ``text`` from ``source``/``channel`` in language ``lang``, in rule order."""
        if not self.pattern_count and not self._regex_terms:
            return []
        tokens: list[tuple[int, int]] | None = None
        words, mixed_scripts = _scan(text)
        view = " " + fold(words) + " "
        if mixed_scripts or _LETTER_RUN.search(view) is not None:
            view, tokens = deobfuscated_view(text)
        hits = list(self._automaton.iter(view)) if self.pattern_count else []  # one C pass
        if not hits and not self._regex_terms:
            return []
        starts: dict[int, list[int]] = {}  # pattern id -> where it starts in the view, in order
        for end, (length, pid) in hits:
            pid_starts = starts.get(pid)
            if pid_starts is None:
                starts[pid] = [end - length + 1]
            else:
                pid_starts.append(end - length + 1)
        if self._capital_pids and not self._capital_pids.isdisjoint(starts):
            _drop_lower_case(starts, self._capital_pids, text, words, view, tokens)
        any_hit = none_hit = all_slots = all_rules = 0
        any_mask, none_mask, slot_mask, all_mask = self._any_mask, self._none_mask, self._all_slots, self._all_rules
        for pid in starts:
            any_hit |= any_mask[pid]
            none_hit |= none_mask[pid]
            all_slots |= slot_mask[pid]
            all_rules |= all_mask[pid]
        # Regex and NEAR terms are checked per item; each one satisfied credits its rule like a pattern.
        satisfied: list[_RegexTerm | _Near] = []
        regex_hits: dict[int, list[Hit]] = {}
        for term_regex in self._regex_terms:
            spans_found = [m.span() for m in term_regex.regex.finditer(text) if m.end() > m.start()]
            if spans_found:
                satisfied.append(term_regex)
                if term_regex.kind != "none":
                    regex_hits.setdefault(term_regex.rule, []).extend(
                        Hit(term_regex.term, a, b, term_regex.term, "regular expression") for a, b in spans_found
                    )
        near_positives: dict[int, list[tuple[int, str]]] = {}
        present = set(starts) if self._near else set()
        for entry in self._near:
            sides = entry.satisfied(present, hits, view, self._patterns)
            if sides is not None:
                satisfied.append(entry)
                if entry.kind != "none":
                    near_positives.setdefault(entry.rule, []).extend((pid, entry.term) for pid in sides)
        for term in satisfied:
            bit = 1 << term.rule
            if term.kind == "none":
                none_hit |= bit
            elif term.kind == "any":
                any_hit |= bit
            else:
                all_slots |= term.slot
                all_rules |= bit
        candidates = (any_hit | all_rules) & ~none_hit
        fired: list[int] = []
        has_any, required, sources, channels, langs = (
            self._has_any,
            self._required,
            self._sources,
            self._channels,
            self._langs,
        )
        while candidates:
            low = candidates & -candidates
            candidates ^= low
            index = low.bit_length() - 1
            if has_any[index] and not any_hit & low:
                continue
            if required[index] & ~all_slots:
                continue
            if sources[index] and source not in sources[index]:
                continue
            if channels[index] and (channel or "").lower() not in channels[index]:
                continue
            if langs[index] and lang not in langs[index]:
                continue
            fired.append(index)
        if not fired:
            return []
        spans = _SpanMap(self, text, view, starts, tokens)
        results = []
        positive_entries = self._positive_entries
        for index in fired:
            entries = positive_entries[index]
            present_terms = [entries[pid] for pid in starts if pid in entries]
            if len(present_terms) > 1:
                present_terms.sort()  # the rule's own order: the first term to claim a span names it
            for pid, near_term in near_positives.get(index, ()):
                present_terms.append((0, pid, near_term, *self.explain(pid, near_term)))
            found = spans.hits(present_terms)
            if index in regex_hits:
                seen = {(h.start, h.end) for h in found}
                found += [h for h in regex_hits[index] if (h.start, h.end) not in seen]
                found.sort(key=lambda hit: (hit.start, hit.end))
            results.append(RuleMatch(self.rules[index], found))
        return results

    def pattern_regex(self, pid: int) -> re.Pattern[str]:
        """A case-sensitive regex for one pattern in the lowered text (built on first use).

        It starts with the literal first word, so ``re`` can scan for it quickly; the left word
        boundary is checked by the caller.
        """
        regex = self._regexes.get(pid)
        if regex is None:
            words = (re.escape(word) for word in self._patterns[pid].split(" "))
            tail = r"\w*" if self._prefix[pid] else r"(?!\w)"
            regex = self._regexes[pid] = re.compile(r"\W+".join(words) + tail)
        return regex


def _drop_lower_case(
    starts: dict[int, list[int]],
    capital_pids: frozenset[int],
    text: str,
    words: str,
    view: str,
    tokens: list[tuple[int, int]] | None,
) -> None:
    """Remove the starts of capital-only patterns whose first letter is not upper case in the text.

    ``starts`` are positions in ``view`` of a pattern's leading space. When the view is ``words`` folded
    character for character, ``words[start]`` is that letter as written; with a de-obfuscated view,
    ``tokens`` gives the token's span in the text. Otherwise (folding changed a length) nothing is removed.
    """
    if tokens is None and len(view) != len(words) + 2:
        return
    for pid in capital_pids.intersection(starts):
        if tokens is None:
            kept = [start for start in starts[pid] if words[start].isupper()]
        else:
            kept = []
            for start in starts[pid]:
                index = view.count(" ", 0, start + 1) - 1  # the view's leading space precedes token 0
                if index < len(tokens) and text[tokens[index][0]].isupper():
                    kept.append(start)
        if kept:
            starts[pid] = kept
        else:
            del starts[pid]


class _SpanMap:
    """Spans in the original text of the patterns found in the match view.

    Usually a per-pattern regex over the original text finds exactly the occurrences the automaton
    found (C speed). Where case folding changed a word's length (ß, some ligatures) the counts differ,
    and the view offsets are mapped back through the text's token offsets instead: ``\\w+`` and
    ``\\W+`` partition the text, so one split gives every token's position.
    """

    def __init__(
        self,
        rules: CompiledRules,
        text: str,
        view: str,
        starts: dict[int, list[int]],
        tokens: list[tuple[int, int]] | None = None,
    ) -> None:
        self.rules = rules
        self.text = text
        self.view = view
        self.starts = starts
        self.tokens = tokens  # set when the view was de-obfuscated: view token i spans text[tokens[i]]
        self._cache: dict[int, list[tuple[int, int]]] = {}
        self._offsets: list[int] | None = None
        self._parts: list[str] = []
        lowered = fold_lower(text)
        self._lowered = lowered if len(lowered) == len(text) else None

    def spans_of(self, pid: int) -> list[tuple[int, int]]:
        cached = self._cache.get(pid)
        if cached is not None:
            return cached
        found: list[tuple[int, int]] = []
        if self.tokens is not None:
            words = self.rules._patterns[pid].count(" ") + 1
            for start in self.starts[pid]:
                first = self.view.count(" ", 0, start)
                last = first + words - 1
                if last < len(self.tokens):
                    found.append((self.tokens[first][0], self.tokens[last][1]))
            self._cache[pid] = found
            return found
        lowered = self._lowered
        if lowered is not None:
            for match in self.rules.pattern_regex(pid).finditer(lowered):
                start = match.start()
                if start == 0 or not ((before := lowered[start - 1]).isalnum() or before == "_"):
                    found.append(match.span())
        if len(found) != len(self.starts[pid]):
            found = self._mapped(pid)
        self._cache[pid] = found
        return found

    def _mapped(self, pid: int) -> list[tuple[int, int]]:
        if self._offsets is None:
            self._parts = _SPLIT.split(self.text)
            self._offsets = list(accumulate(map(len, self._parts), initial=0))
        first_part = 0 if self._parts and self._parts[0] else 2
        words = self.rules._patterns[pid].count(" ") + 1
        result = []
        for start in self.starts[pid]:
            first = first_part + 2 * self.view.count(" ", 0, start)
            last = first + 2 * (words - 1)
            if last < len(self._parts):
                result.append((self._offsets[first], self._offsets[last + 1]))
        return result

    def hits(self, positives: list[tuple[int, int, str, str, str]]) -> list[Hit]:
        """One hit per span, named by the first ``(order, pid, term, form, how)`` entry that covers it."""
        if len(positives) == 1:  # the usual case: its spans are already distinct and in order
            _, pid, term, form, how = positives[0]
            return [Hit(term, start, end, form, how) for start, end in self.spans_of(pid)]
        found: dict[tuple[int, int], tuple[str, str, str]] = {}
        for _, pid, term, form, how in positives:
            for span in self.spans_of(pid):
                if span not in found:
                    found[span] = (term, form, how)
        # Spans are unique keys, so sorting the items orders by (start, end) alone.
        return [Hit(term, start, end, form, how) for (start, end), (term, form, how) in sorted(found.items())]
