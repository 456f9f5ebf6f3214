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

import ahocorasick

from monitor.config import Rule

WORD = re.compile(r"\w+")

_ANY, _ALL, _NONE = 0, 1, 2
_KINDS = (("any", _ANY), ("all", _ALL), ("none", _NONE))


def fold(text: str) -> str:
    """Case-fold for matching; ``ё`` is written ``е`` in much Russian text, so they are one letter."""
    return text.casefold().replace("ё", "е")


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


# One automaton value: the padded pattern and every (rule index, kind, term as written) it stands for.
_Ref = tuple[int, int, str]


class CompiledRules:
    """Rules compiled once; ``match`` is a single pass of the automaton plus per-rule bookkeeping."""

    def __init__(self, rules: Sequence[Rule]) -> None:
        self.rules = list(rules)
        refs: dict[str, list[_Ref]] = {}
        for index, rule in enumerate(self.rules):
            for attr, kind in _KINDS:
                for term in getattr(rule, attr):
                    folded = fold_term(term)
                    if folded:
                        refs.setdefault(f" {folded} ", []).append((index, kind, term))
        self.pattern_count = len(refs)
        self._automaton = ahocorasick.Automaton()
        for pattern, pattern_refs in refs.items():
            self._automaton.add_word(pattern, (len(pattern), tuple(pattern_refs)))
        if refs:
            self._automaton.make_automaton()
        self._required_all = [{fold_term(t) for t in rule.all} for rule in self.rules]
        self._sources = [frozenset(rule.sources) for rule in self.rules]
        self._channels = [frozenset(c.lower() for c in rule.channels) for rule in self.rules]

    def match(self, text: str, *, source: str | None = None, channel: str | None = None) -> list[RuleMatch]:
        """Every rule that fires on ``text`` from ``source``/``channel``, in rule order."""
        if not self.pattern_count:
            return []
        view = match_view(text)
        # rule index -> [positive hits (view start, length, term), all-terms seen, any seen, excluded]
        found: dict[int, _Found] = {}
        for end, (length, refs) in self._automaton.iter(view):
            start = end - length + 1
            for index, kind, term in refs:
                entry = found.get(index)
                if entry is None:
                    entry = found[index] = _Found()
                if kind == _NONE:
                    entry.excluded = True
                    continue
                entry.positives.append((start, length, term))
                if kind == _ANY:
                    entry.any_seen = True
                else:
                    entry.all_seen.add(view[start + 1 : end])
        if not found:
            return []
        results: list[RuleMatch] = []
        tokens: list[re.Match[str]] | None = None
        for index in sorted(found):
            entry = found[index]
            rule = self.rules[index]
            if entry.excluded or not entry.positives:
                continue
            if rule.any and not entry.any_seen:
                continue
            if not self._required_all[index] <= entry.all_seen:
                continue
            if self._sources[index] and source not in self._sources[index]:
                continue
            if self._channels[index] and (channel or "").lower() not in self._channels[index]:
                continue
            if tokens is None:
                tokens = list(WORD.finditer(text))
            results.append(RuleMatch(rule, _spans(view, entry.positives, tokens)))
        return results


@dataclass(slots=True)
class _Found:
    positives: list[tuple[int, int, str]] = field(default_factory=list)
    all_seen: set[str] = field(default_factory=set)
    any_seen: bool = False
    excluded: bool = False


def _spans(view: str, positives: list[tuple[int, int, str]], tokens: list[re.Match[str]]) -> list[Hit]:
    """Map view positions back to spans of the original text, dropping repeats, in text order."""
    hits: dict[tuple[int, int], Hit] = {}
    for start, length, term in positives:
        first = view.count(" ", 0, start + 1) - 1
        words = view.count(" ", start, start + length) - 1
        last = first + words - 1
        if first < 0 or last >= len(tokens):
            continue
        span = (tokens[first].start(), tokens[last].end())
        hits.setdefault(span, Hit(term, span[0], span[1]))
    return sorted(hits.values(), key=lambda hit: (hit.start, hit.end))
