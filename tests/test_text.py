"""Tests for monitor.normalize.text.clean_text: removals, folding, whitespace and idempotence."""

from __future__ import annotations

import re
import unicodedata
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from monitor.normalize.text import clean_text

ZERO_WIDTH = ["\u200b", "\u200c", "\u200d", "\u2060", "\ufeff"]
BIDI = ["\u200e", "\u200f", "\u061c", "\u202a", "\u202b", "\u202c", "\u202d", "\u202e"]
BIDI += ["\u2066", "\u2067", "\u2068", "\u2069"]
CONTROLS = ["\x00", "\x01", "\x07", "\x08", "\x0e", "\x1b", "\x1f", "\x7f", "\x80", "\x9b", "\x9f"]
SPACES = ["\u00a0", "\u2002", "\u2003", "\u2007", "\u2009", "\u200a", "\u202f", "\u205f", "\u3000", "\u1680"]

PUNCT_FOLDS = [
    ("\u2018", "'"),
    ("\u2019", "'"),
    ("\u201a", "'"),
    ("\u201b", "'"),
    ("\u02bc", "'"),
    ("\u2032", "'"),
    ("`", "'"),
    ("\u201c", '"'),
    ("\u201d", '"'),
    ("\u201e", '"'),
    ("\u201f", '"'),
    ("\u00ab", '"'),
    ("\u00bb", '"'),
    ("\u2033", '"'),
    ("\u2010", "-"),
    ("\u2011", "-"),
    ("\u2012", "-"),
    ("\u2013", "-"),
    ("\u2014", "-"),
    ("\u2015", "-"),
    ("\u2212", "-"),
    ("\u2026", "..."),
]

# Characters that must never survive clean_text.
FORBIDDEN_RE = re.compile(
    "[\x00-\x08\x0b-\x1f\x7f-\x9f\u00ad\u061c\u180e\u200b-\u200f\u202a-\u202e\u2060-\u2064"
    "\u2066-\u2069\ufeff\ud800-\udfff\u2028\u2029\t\u00a0\u2018\u2019\u201a-\u201f\u00ab\u00bb"
    "\u2032\u2033\u2010-\u2015\u2212\u2026`]"
)


@pytest.mark.parametrize("char", ZERO_WIDTH, ids=[f"U+{ord(c):04X}" for c in ZERO_WIDTH])
def test_zero_width_characters_are_removed(char: str) -> None:
    """Zero-width space/joiners, word joiner and BOM vanish without leaving a space."""
    assert clean_text(f"Бах{char}мут {char}fell") == "Бахмут fell"


def test_soft_hyphen_is_removed() -> None:
    """A soft hyphen inside a word is dropped so the word is searchable."""
    assert clean_text("Zapo\u00adrizhzhia nuclear plant") == "Zaporizhzhia nuclear plant"


@pytest.mark.parametrize("char", BIDI, ids=[f"U+{ord(c):04X}" for c in BIDI])
def test_bidi_controls_are_removed(char: str) -> None:
    """Bidi marks, embeddings, overrides and isolates are dropped."""
    assert clean_text(f"{char}Kyiv{char} says") == "Kyiv says"


@pytest.mark.parametrize("char", CONTROLS, ids=[f"U+{ord(c):04X}" for c in CONTROLS])
def test_control_characters_are_removed(char: str) -> None:
    """C0 and C1 control characters other than newline and tab are dropped."""
    assert clean_text(f"Kher{char}son shelled") == "Kherson shelled"


def test_tab_becomes_space() -> None:
    """A tab separates words like a space, and a run of tabs and spaces becomes one space."""
    assert clean_text("Kyiv\tsays \t \tno") == "Kyiv says no"


@pytest.mark.parametrize("newline", ["\r\n", "\r", "\x0b", "\x0c", "\x85", "\u2028"])
def test_other_line_breaks_become_newline(newline: str) -> None:
    """CRLF, CR and the other Unicode line breaks become a single \\n."""
    assert clean_text(f"first line{newline}second line") == "first line\nsecond line"


def test_crlf_paragraphs_keep_one_blank_line() -> None:
    """Windows paragraph breaks become the canonical blank line."""
    assert clean_text("one\r\n\r\ntwo\r\n\r\n\r\nthree") == "one\n\ntwo\n\nthree"


def test_paragraph_separator_becomes_blank_line() -> None:
    """U+2029 separates paragraphs."""
    assert clean_text("one\u2029two") == "one\n\ntwo"


def test_lone_surrogates_are_dropped() -> None:
    """Bytes decoded with surrogateescape do not crash the cleaner and leave nothing behind."""
    raw = b"Kyiv \xff\xfe under attack".decode("utf-8", errors="surrogateescape")
    assert clean_text(raw) == "Kyiv under attack"
    assert clean_text("\ud83d alone \udc00") == "alone"
    clean_text(raw).encode("utf-8")  # strict encoding must succeed


@pytest.mark.parametrize("space", SPACES, ids=[f"U+{ord(c):04X}" for c in SPACES])
def test_unicode_spaces_fold_to_one_space(space: str) -> None:
    """NBSP and other Unicode spaces, alone or in runs with ASCII spaces, become one space."""
    assert clean_text(f"1,000{space}km {space} front") == "1,000 km front"


def test_lines_are_stripped_and_single_newlines_kept() -> None:
    """Leading/trailing spaces go from each line; a single newline inside a paragraph stays."""
    assert clean_text("  Headline  \n  Sub line\u00a0\n\nBody  ") == "Headline\nSub line\n\nBody"


def test_blank_line_runs_collapse_to_one() -> None:
    """Two or more blank lines (even holding spaces or tabs) become exactly one."""
    assert clean_text("a\n\n\n\nb\n \n\t\n\u00a0\nc") == "a\n\nb\n\nc"


def test_result_is_stripped() -> None:
    """Leading and trailing blank lines and spaces are removed."""
    assert clean_text("\n\n  \u200b \n Bakhmut \n\n\n") == "Bakhmut"


@pytest.mark.parametrize("text", ["", " ", "\n\n\t", "\u200b\u00ad\ufeff"])
def test_empty_or_invisible_input_gives_empty_string(text: str) -> None:
    """Nothing visible in, empty string out."""
    assert clean_text(text) == ""


def test_nfkc_is_applied() -> None:
    """Compatibility forms (ligatures, full-width letters and digits, superscripts) are folded."""
    assert clean_text("ﬁre ＡＴＡＣＭＳ １２ km²") == "fire ATACMS 12 km2"


def test_nfkc_composes_combining_marks() -> None:
    """A base letter and a combining mark become the precomposed letter."""
    assert clean_text("Киі\u0308в") == "Київ"


def test_combining_mark_split_by_zero_width_char_is_composed() -> None:
    """Deleting an invisible character between a letter and its combining mark still yields NFKC."""
    out = clean_text("Киі\u200b\u0308в")
    assert out == "Київ"
    assert unicodedata.is_normalized("NFKC", out)


@pytest.mark.parametrize(("char", "folded"), PUNCT_FOLDS, ids=[f"U+{ord(c):04X}" for c, _ in PUNCT_FOLDS])
def test_punctuation_is_folded(char: str, folded: str) -> None:
    """Typographic quotes, apostrophes, dashes, minus and ellipsis get their ASCII form."""
    assert clean_text(f"a{char}b") == f"a{folded}b"


def test_full_width_and_small_forms_fold_after_nfkc() -> None:
    """Punctuation produced by NFKC (full-width quote, small em dash) is folded too."""
    assert clean_text("\uff02Wagner\uff02 \ufe58 Prigozhin") == '"Wagner" - Prigozhin'


def test_realistic_telegram_post() -> None:
    """A post with mixed typography comes out in the canonical form."""
    raw = (
        "\ufeff\u26a1\ufe0f\u00a0Вибухи у Києві\u200b!\r\n\r\n\r\n"
        "\u00ab\u041f\u0440\u0430\u0446\u044e\u0454 \u041f\u041f\u041e\u00bb \u2014 "
        "\u043a\u0430\u0436\u0435 \u0440\u0435\u0447\u043d\u0438\u043a\u2026\t\n"
        "Об\u02bcєкт пошкоджено.  "
    )
    assert clean_text(raw) == '\u26a1\ufe0f Вибухи у Києві!\n\n"Працює ППО" - каже речник...\nОб\'єкт пошкоджено.'


def test_seed_article_is_clean(seeds_dir: Path) -> None:
    """The seed articles come out with no NBSP, curly quotes or trailing spaces, and stay readable."""
    for path in sorted(seeds_dir.glob("*.txt")):
        raw = path.read_text(encoding="utf-8")
        out = clean_text(raw)
        assert not FORBIDDEN_RE.search(out), path.name
        assert all(line == line.strip() for line in out.split("\n")), path.name
        assert "\n\n\n" not in out
        assert "Bakhmut" in out
        assert len(out) > 0.9 * len(raw.strip())


texts = st.text(
    alphabet=st.one_of(
        st.characters(codec="utf-8"),
        st.sampled_from(ZERO_WIDTH + BIDI + CONTROLS + SPACES + [c for c, _ in PUNCT_FOLDS]),
        st.sampled_from(["\n", "\r", "\t", " ", "\u2028", "\u2029", "\u0301", "\u0308", "\ufe58"]),
        st.sampled_from(["\ud800", "\udcff", "\udfff"]),  # lone surrogates
    ),
    max_size=80,
)


@settings(max_examples=400, deadline=None)
@given(texts)
def test_clean_text_is_idempotent(text: str) -> None:
    """Cleaning twice gives the same result as cleaning once."""
    once = clean_text(text)
    assert clean_text(once) == once


@settings(max_examples=400, deadline=None)
@given(texts)
def test_clean_text_output_invariants(text: str) -> None:
    """The output is NFKC, has no forbidden characters, double spaces, untrimmed lines or blank runs."""
    out = clean_text(text)
    assert unicodedata.is_normalized("NFKC", out)
    assert not FORBIDDEN_RE.search(out)
    assert "  " not in out
    assert "\n\n\n" not in out
    assert out == out.strip()
    assert all(line == line.strip(" ") for line in out.split("\n"))
    out.encode("utf-8")
