"""The matcher's fast paths give exactly what the plain regex paths give.

``matcher._scan`` builds the word string on UTF-8 bytes and tests for mixed-script words with integer
arithmetic; these tests hold it to ``" ".join(WORD.findall(text))`` and to the character-level
definition of a mixed-script word, for every character and for generated texts, and check that whole
matches (spans, terms, forms) do not depend on which path built the view.
"""

from __future__ import annotations

import re
from unittest import mock

from hypothesis import given, settings
from hypothesis import strategies as st

from monitor.alerting import matcher
from monitor.alerting.matcher import WORD, CompiledRules
from monitor.config import Rule

_MIXED = re.compile(r"[A-Za-z][\u0400-\u04ff]|[\u0400-\u04ff][A-Za-z]")


def reference_scan(text: str) -> tuple[str, bool]:
    """What ``_scan`` must return, computed the slow way (one regex each)."""
    return " ".join(WORD.findall(text)), _MIXED.search(text) is not None


def check_scan(text: str) -> None:
    assert matcher._scan(text) == reference_scan(text), ascii(text)


def test_scan_is_exact_for_every_character() -> None:
    """Every BMP character (surrogates included) and a sample of the others is classified as ``re`` does."""
    astral = [*range(0x10000, 0x110000, 97), *range(0x1F000, 0x1FC00)]  # all of the emoji blocks
    for code in [*range(0x80, 0x10000), *astral]:
        char = chr(code)
        check_scan(f"a{char}b {char} x{char}.{char}Я")


def test_scan_without_non_ascii() -> None:
    """ASCII texts: every separator collapses to one space, nothing is mixed-script."""
    for text in ["", " ", "...", "a", "_", "a_b", " a,  b.\n\tc-d ", "3rd-Assault  brigade!!", "x" * 3 + " " * 5]:
        check_scan(text)


INTERESTING = (
    "abzABZ09_ .,;:-'\"()\n\t"
    "абвгґдеєёжзиіїйклмнопрстуфхцчшщьюяАБВҐЄЁІЇЯ"
    "҂҃҄҇҈҉ßẞİıﬁŉǅΣσςàéñøæ×÷"
    "\u00a0\u00ad\u02bc\u0301\u0336\u200b\u2009\u2014\u2026«»№©°²½"
    "αβγ一二가אב١٢😀🙂🇺🇦❤\ufe0f\U0001d400\U0001f100"
)
WORDS = [
    "Bakhmut",
    "Бахмут",
    "Бахмутом",
    "Bаkhmut",  # Cyrillic а
    "Бaхмут",  # Latin a
    "BАKНMUT",
    "B.a.k.h.m.u.t",
    "Б а х м у т",
    "chemical weapons",
    "chemical-weapons",
    "Straße",
    "STRASSE",
    "İstanbul",
    "Куп'янськ",
    "Ґудзь",
    "Артёмовск",
    "3rd Assault Brigade",
    "U.S.",
    "tank_",
    "ба ба ба",
]
texts = st.lists(
    st.one_of(
        st.sampled_from(WORDS),
        st.text(alphabet=INTERESTING, max_size=8),
        st.text(max_size=4),
        st.sampled_from([" ", ", ", ". ", "\n", "-", "  ", " — ", "😀"]),
    ),
    max_size=20,
).map("".join)


@settings(max_examples=400, deadline=None)
@given(text=texts)
def test_scan_on_generated_texts(text: str) -> None:
    """Texts mixing scripts, separators, marks, emoji and obfuscations scan as the regexes do."""
    check_scan(text)


RULES = [
    Rule(name="place", any=["Bakhmut", "Бахм*", '"Бахмут"', "Kupiansk", "Куп'янськ", "İstanbul", "Straße"]),
    Rule(name="topic", any=["tank"], all=["chemical weapons", "Авдіївка"], none=["exercise"]),
    Rule(name="near", any=["Bakhmut NEAR/3 tank", "re:s+t?r?a"]),
    Rule(name="codes", any=["ба ба", "x y z w", "3rd Assault Brigade", "U.S", "Ґудзь", "tank_", "Артёмовск"]),
]
compiled = CompiledRules(RULES)


def outcome(text: str) -> list[tuple[str, list[tuple[str, int, int, str, str]]]]:
    return [(m.rule.name, [(h.term, h.start, h.end, h.form, h.how) for h in m.hits]) for m in compiled.match(text)]


@settings(max_examples=300, deadline=None)
@given(text=texts)
def test_matches_do_not_depend_on_the_view_path(text: str) -> None:
    """Fired rules and every hit are the same when the view is built by the regex path instead."""
    fast = outcome(text)
    with mock.patch.object(matcher, "_scan", reference_scan):
        slow = outcome(text)
    assert fast == slow


def test_first_listed_term_names_a_shared_span() -> None:
    """When two terms of a rule cover the same span, the hit carries the term listed first."""
    first_exact = CompiledRules([Rule(name="r", any=["Бахмут", "Бахм*"])]).match("під Бахмутом і Бахмут")
    assert [(h.term, h.form) for h in first_exact[0].hits] == [("Бахмут", "бахмутом"), ("Бахмут", "бахмут")]
    # The exact form's pattern id is older than the prefix's (an earlier rule made it), yet order wins.
    rules = CompiledRules([Rule(name="a", any=["Бахмут"]), Rule(name="b", any=["Бахм*", "Бахмут"])])
    [_, second] = rules.match("під Бахмутом і Бахмут")
    assert [(h.term, h.form) for h in second.hits] == [("Бахм*", "бахм*"), ("Бахм*", "бахм*")]


def test_hits_are_distinct_and_in_text_order() -> None:
    """One hit per occurrence, in text order: for one term (regex and mapped span paths) and for several."""
    text = "tank STRASSE tank, Straße; tank straße"
    rules = CompiledRules(
        [Rule(name="s", any=["Straße"]), Rule(name="t", any=["tank"]), Rule(name="both", any=["Straße", "tank"])]
    )
    found = {m.rule.name: [text[h.start : h.end] for h in m.hits] for m in rules.match(text)}
    assert found == {
        "s": ["STRASSE", "Straße", "straße"],
        "t": ["tank", "tank", "tank"],
        "both": ["tank", "STRASSE", "tank", "Straße", "tank", "straße"],
    }


def test_surrogates_do_not_break_the_byte_path() -> None:
    """Lone surrogates (which the normalizer removes) still scan, and match as on the regex path."""
    text = "Bakhmut\ud800 tank \udfffБахмут"
    check_scan(text)
    with mock.patch.object(matcher, "_scan", reference_scan):
        slow = outcome(text)
    assert outcome(text) == slow
    assert slow[0] == (
        "place",
        [("Bakhmut", 0, 7, "bakhmut", "as written"), ("Bakhmut", 15, 21, "бахмут", "transliteration latin->uk")],
    )
