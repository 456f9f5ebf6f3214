"""Evasions that must not hide a term, and the prefix/exact term syntax."""

from __future__ import annotations

import pytest

from monitor.alerting.matcher import CompiledRules
from monitor.config import Rule
from monitor.normalize.text import clean_text


def matched(term: str, text: str) -> list[str]:
    """The text each hit of a one-term rule covers, after the normalizer's cleaning, or [] for no match."""
    cleaned = clean_text(text)
    result = CompiledRules([Rule(name="r", any=[term])]).match(cleaned)
    return [cleaned[h.start : h.end] for h in result[0].hits] if result else []


@pytest.mark.parametrize(
    ("text", "covered"),
    [
        ("Shelling near Bаkhmut", "Bаkhmut"),  # Cyrillic а inside a Latin word
        ("Shelling near BАKНMUT", "BАKНMUT"),  # Cyrillic А and Н
        ("Shelling near B.a.k.h.m.u.t today", "B.a.k.h.m.u.t"),
        ("Shelling near B a k h m u t today", "B a k h m u t"),
        ("Shelling near Bak\u200bhmut", "Bakhmut"),  # zero-width space, removed by the normalizer
        ("Shelling near Bak\u00adhmut", "Bakhmut"),  # soft hyphen
        ("Shelling near Ｂａｋｈｍｕｔ", "Bakhmut"),  # full-width forms (NFKC)
        ("Shelling near B̶a̶k̶h̶m̶u̶t̶", "Bakhmut"),  # strike-through combining marks
    ],
)
def test_latin_evasions_do_not_hide_bakhmut(text: str, covered: str) -> None:
    """Homoglyphs, spaced or dotted letters, invisible characters, full-width forms and marks still match."""
    assert matched("Bakhmut", text) == [covered]


@pytest.mark.parametrize(
    ("text", "covered"),
    [
        ("Бои за Бaхмут продолжаются", "Бaхмут"),  # Latin a inside a Cyrillic word
        ("Бои за БAXМYТ продолжаются", "БAXМYТ"),  # Latin A, X, Y
        ("Бои за Б.а.х.м.у.т", "Б.а.х.м.у.т"),
        ("Бои за Бахму́т", "Бахмут"),  # a stress mark
    ],
)
def test_cyrillic_evasions_do_not_hide_bakhmut(text: str, covered: str) -> None:
    """The same evasions in Cyrillic text are undone too."""
    assert matched("Бахмут", text) == [covered]


def test_single_script_words_are_not_touched() -> None:
    """A Latin word is never read as Cyrillic (or the reverse) when it is written in one script."""
    assert matched("сахар", "Cахар is sugar") == ["Cахар"]  # mixed: a homoglyph evasion, matched
    assert matched("сахар", "caxap is not a word") == []  # all Latin: left alone


def test_short_spaced_runs_are_not_joined() -> None:
    """Three or fewer spaced letters stay separate words (initials, list markers)."""
    assert matched("abc", "a b c") == []
    assert matched("U.S", "U.S. officials said") == ["U.S"]


def test_prefix_term_matches_word_starts() -> None:
    """``Бахм*`` matches every word starting with it, covering the whole word."""
    assert matched("Бахм*", "Бахмутом и Бахмутский район") == ["Бахмутом", "Бахмутский"]
    assert matched("Бахм*", "Пробахмут") == []


def test_quoted_term_matches_only_as_written() -> None:
    """A quoted term is not inflected or transliterated: only the word itself matches."""
    assert matched('"Бахмут"', "под Бахмутом и в Бахмут") == ["Бахмут"]
    assert matched('"Bakhmut"', "у Бахмута") == []


def test_match_explains_how_a_term_matched() -> None:
    """`monitor match` says which term matched which text, and which folding it took."""
    from monitor.alerting.engine import AlertEngine  # noqa: PLC0415 - local to this test
    from monitor.notify.console import explain_lines  # noqa: PLC0415
    from monitor.schema import Item, utcnow  # noqa: PLC0415

    text = clean_text("Near Bаkhmut, then Бахм-ский район")
    item = Item(id="i", source="corpus", channel="c", external_id="1", text=text, collected_at=utcnow(),
                lang="en", content_hash="h")  # fmt: skip
    rules = [Rule(name="r", any=["Bakhmut", "Бахм*"])]
    [alert] = AlertEngine(rules).evaluate(item)
    lines = explain_lines(alert, item.text)
    assert "term 'Bakhmut' matched 'Bаkhmut' (as written, after folding" in lines[0]
    assert "term 'Бахм*' matched 'Бахм' (prefix, form 'бахм*')" in lines[1]
