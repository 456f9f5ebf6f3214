"""One Aho-Corasick automaton for every term of every rule, and the rule logic on top of it.

The text is folded into a *match view*: its word tokens (``\\w+``), case-folded (and ``ё`` -> ``е``),
joined by single spaces and padded with a space at each end. A term is folded the same way and
searched as ``" term "``, so it can only match whole words, and a phrase matches across any run of
whitespace or punctuation ("chemical weapons" finds "chemical-weapons" and "chemical, weapons").
One pass over the view finds every term of every rule; spans in the original text are recovered only
for the rules that fire.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
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


def _is_word(char: str) -> bool:
    return char.isalnum() or char == "_"


def match_view(text: str) -> str:
    """The padded, folded token string the automaton runs over."""
    return " " + fold(" ".join(WORD.findall(text))) + " "


def fold_term(term: str) -> str:
    """A rule term in match-view form (without the padding)."""
    return fold(" ".join(WORD.findall(term)))


@dataclass(slots=True)
class Hit:
    """A term of one rule found in the text; ``start``/``end`` index the original text."""

    term: str
    start: int
    end: int


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

    def __init__(self, rules: Sequence[Rule]) -> None:
        self.rules = list(rules)
        ids: dict[str, int] = {}
        self._any_mask: list[int] = []
        self._none_mask: list[int] = []
        self._all_slots: list[int] = []  # per pattern: the (rule, all-term) slots it satisfies
        self._all_rules: list[int] = []  # per pattern: rules that use it as an all-term
        self._required: list[int] = []  # per rule: its all-term slots
        self._positives: list[list[tuple[int, str]]] = []  # per rule: (pattern id, term as written)
        slot = 0

        def pattern_id(folded: str) -> int:
            if folded not in ids:
                ids[folded] = len(ids)
                for masks in (self._any_mask, self._none_mask, self._all_slots, self._all_rules):
                    masks.append(0)
            return ids[folded]

        for index, rule in enumerate(self.rules):
            bit = 1 << index
            required = 0
            positives: dict[int, str] = {}
            for term in rule.any:
                pid = pattern_id(fold_term(term))
                self._any_mask[pid] |= bit
                positives.setdefault(pid, term)
            for folded, term in {fold_term(t): t for t in rule.all}.items():
                pid = pattern_id(folded)
                self._all_slots[pid] |= 1 << slot
                self._all_rules[pid] |= bit
                required |= 1 << slot
                slot += 1
                positives.setdefault(pid, term)
            for term in rule.none:
                self._none_mask[pattern_id(fold_term(term))] |= bit
            self._required.append(required)
            self._positives.append(list(positives.items()))
        self._patterns = list(ids)
        self.pattern_count = len(ids)
        self._regexes: dict[int, re.Pattern[str]] = {}
        self._automaton = ahocorasick.Automaton()
        for pattern, pid in ids.items():
            padded = f" {pattern} "
            self._automaton.add_word(padded, (len(padded), pid))
        if ids:
            self._automaton.make_automaton()
        self._has_any = [bool(rule.any) for rule in self.rules]
        self._sources = [frozenset(rule.sources) for rule in self.rules]
        self._channels = [frozenset(c.lower() for c in rule.channels) for rule in self.rules]

    def match(self, text: str, *, source: str | None = None, channel: str | None = None) -> list[RuleMatch]:
        """Every rule that fires on ``text`` from ``source``/``channel``, in rule order."""
        if not self.pattern_count:
            return []
        view = match_view(text)
        hits = list(self._automaton.iter(view))  # [(end, (length, pattern id))], in one C pass
        if not hits:
            return []
        any_hit = none_hit = all_slots = all_rules = 0
        for pid in {value[1] for _, value in hits}:
            any_hit |= self._any_mask[pid]
            none_hit |= self._none_mask[pid]
            all_slots |= self._all_slots[pid]
            all_rules |= self._all_rules[pid]
        candidates = (any_hit | all_rules) & ~none_hit
        fired: list[int] = []
        while candidates:
            low = candidates & -candidates
            candidates ^= low
            index = low.bit_length() - 1
            if self._has_any[index] and not any_hit & low:
                continue
            if self._required[index] & ~all_slots:
                continue
            if self._sources[index] and source not in self._sources[index]:
                continue
            if self._channels[index] and (channel or "").lower() not in self._channels[index]:
                continue
            fired.append(index)
        if not fired:
            return []
        starts: dict[int, list[int]] = {}
        for end, (length, pid) in hits:
            starts.setdefault(pid, []).append(end - length + 1)
        spans = _SpanMap(self, text, view, starts)
        return [
            RuleMatch(
                self.rules[index], spans.hits([(pid, term) for pid, term in self._positives[index] if pid in starts])
            )
            for index in fired
        ]

    def pattern_regex(self, pid: int) -> re.Pattern[str]:
        """A case-sensitive regex for one pattern in the lowered text (built on first use).

        It starts with the literal first word, so ``re`` can scan for it quickly; the left word
        boundary is checked by the caller.
        """
        regex = self._regexes.get(pid)
        if regex is None:
            words = (re.escape(word) for word in self._patterns[pid].split(" "))
            regex = self._regexes[pid] = re.compile(r"\W+".join(words) + r"(?!\w)")
        return regex


class _SpanMap:
    """Spans in the original text of the patterns found in the match view.

    Usually a per-pattern regex over the original text finds exactly the occurrences the automaton
    found (C speed). Where case folding changed a word's length (ß, some ligatures) the counts differ,
    and the view offsets are mapped back through the text's token offsets instead: ``\\w+`` and
    ``\\W+`` partition the text, so one split gives every token's position.
    """

    def __init__(self, rules: CompiledRules, text: str, view: str, starts: dict[int, list[int]]) -> None:
        self.rules = rules
        self.text = text
        self.view = view
        self.starts = starts
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
        lowered = self._lowered
        if lowered is not None:
            for match in self.rules.pattern_regex(pid).finditer(lowered):
                start = match.start()
                if start == 0 or not _is_word(lowered[start - 1]):
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

    def hits(self, positives: list[tuple[int, str]]) -> list[Hit]:
        found: dict[tuple[int, int], Hit] = {}
        for pid, term in positives:
            for span in self.spans_of(pid):
                if span not in found:
                    found[span] = Hit(term, span[0], span[1])
        return sorted(found.values(), key=lambda hit: (hit.start, hit.end))
