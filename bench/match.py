"""Matcher benchmark: 10,000 terms across 1,000 rules, compiled matcher against a naive per-rule regex loop.

The compiled matcher (one Aho-Corasick automaton over every surface form of every term, then bitmask
rule logic) and the baseline (one case-insensitive ``\\b(?:term|...)\\b`` regex per rule, tried rule by
rule, the obvious way to write it) run over the same synthetic posts (English, Ukrainian and Russian,
200-1,500 characters). Printed: MB/s and items/s for each, and the speed-up.

Usage: python bench/match.py [--rules 1000] [--terms-per-rule 10] [--items 5000]
"""

from __future__ import annotations

import argparse
import random
import re
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from pipeline import PLACES, UNWATCHED, synthetic_posts

from monitor.alerting.matcher import CompiledRules
from monitor.config import Rule

SYLLABLES = ["ба", "ва", "го", "ди", "ка", "ло", "ми", "но", "ро", "са", "ти", "ку", "ze", "ra", "no", "ki", "vo"]


def vocabulary(count: int, rng: random.Random) -> list[str]:
    """``count`` distinct terms: the real place names plus invented words and two-word phrases."""
    words = {w for names in (*PLACES.values(), *UNWATCHED.values()) for w in names}
    while len(words) < count:
        word = "".join(rng.choice(SYLLABLES) for _ in range(rng.randint(2, 4)))
        words.add(word if rng.random() < 0.8 else f"{word} {rng.choice(SYLLABLES)}{rng.choice(SYLLABLES)}")
    return sorted(words)[:count]


def make_rules(count: int, per_rule: int, rng: random.Random) -> list[Rule]:
    terms = vocabulary(count * per_rule, rng)
    rng.shuffle(terms)
    return [
        Rule(name=f"rule{i:04d}", any=terms[i * per_rule : (i + 1) * per_rule], severity="medium") for i in range(count)
    ]


def baseline(rules: list[Rule]) -> list[tuple[str, re.Pattern[str]]]:
    return [
        (rule.name, re.compile(r"\b(?:" + "|".join(re.escape(t) for t in rule.any) + r")\b", re.IGNORECASE))
        for rule in rules
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rules", type=int, default=1000)
    parser.add_argument("--terms-per-rule", type=int, default=10)
    parser.add_argument("--items", type=int, default=5000)
    parser.add_argument("--baseline-items", type=int, default=300, help="items for the (slow) baseline")
    args = parser.parse_args()
    rng = random.Random(5)
    rules = make_rules(args.rules, args.terms_per_rule, rng)
    texts = [p.text for p in synthetic_posts(args.items, seed=9)]
    size_mb = sum(len(t.encode()) for t in texts) / 1e6

    started = time.perf_counter()
    compiled = CompiledRules(rules)
    compile_s = time.perf_counter() - started

    started = time.perf_counter()
    fired = sum(len(compiled.match(text)) for text in texts)
    fast_s = time.perf_counter() - started

    regexes = baseline(rules)
    sample = texts[: args.baseline_items]
    sample_mb = sum(len(t.encode()) for t in sample) / 1e6
    started = time.perf_counter()
    base_fired = sum(1 for text in sample for _, regex in regexes if regex.search(text))
    base_s = time.perf_counter() - started

    terms = sum(len(r.any) for r in rules)
    print(
        f"rules: {len(rules)}, terms: {terms}, automaton patterns (all forms): {compiled.pattern_count}, "
        f"compiled in {compile_s:.2f} s"
    )
    print(f"items: {len(texts)} ({size_mb:.1f} MB, en/uk/ru), rules fired: {fired}")
    print(f"compiled matcher: {size_mb / fast_s:.1f} MB/s, {len(texts) / fast_s:,.0f} items/s")
    print(
        f"naive per-rule regex (first {len(sample)} items): {sample_mb / base_s:.2f} MB/s, "
        f"{len(sample) / base_s:,.0f} items/s, rules fired: {base_fired}"
    )
    print(f"speed-up: {(size_mb / fast_s) / (sample_mb / base_s):.0f}x")  # fmt: skip


if __name__ == "__main__":
    main()
