"""Canonical text form for every item, so that hashing, dedup, matching and language detection see
one spelling of the same words whatever the source's typography, encoding quirks or invisible junk.

It runs once per item on the hot path, so every step is a C-level ``str``/``unicodedata``/regex call,
most guarded by a cheap ``in`` check; there is no Python loop over characters or lines, and the
deletion regex only runs on texts that hold a non-printable character.
"""

from __future__ import annotations

import re
import unicodedata

__all__ = ["clean_text"]

# Invisible or harmful characters dropped outright: C0 controls except \t \n (\v \f \r are turned into
# line breaks first), DEL and the C1 block except NEL, soft hyphen, Arabic letter mark,
# Mongolian vowel separator, zero-width space/joiners, LRM/RLM, bidi embeddings and isolates, word
# joiner and invisible operators, BOM / zero-width no-break space, and lone surrogates (which
# ``surrogateescape`` decoding leaves behind and which cannot be encoded to UTF-8).
_DELETE_RE = re.compile(
    "[\x00-\x08\x0e-\x1f\x7f-\x84\x86-\x9f\u00ad\u061c\u180e\u200b-\u200f\u202a-\u202e"
    "\u2060-\u2064\u2066-\u2069\ufeff\ud800-\udfff]+"
)

# Typographic punctuation folded to ASCII, before NFKC and again after it when NFKC changed anything
# (full-width and small forms become these characters). NFKC turns the double prime "″" into two
# primes, hence the "′′" entry, which must be applied before "′".
_PUNCT_FOLDS: tuple[tuple[str, str], ...] = (
    # double quotes: “ ” „ ‟ « » ″  ->  "
    ("\u2032\u2032", '"'),
    ("\u2033", '"'),
    ("\u201c", '"'),
    ("\u201d", '"'),
    ("\u201e", '"'),
    ("\u201f", '"'),
    ("\u00ab", '"'),
    ("\u00bb", '"'),
    # single quotes and apostrophes: ‘ ’ ‚ ‛ ʼ ′ `  ->  '
    ("\u2018", "'"),
    ("\u2019", "'"),
    ("\u201a", "'"),
    ("\u201b", "'"),
    ("\u02bc", "'"),
    ("\u2032", "'"),
    ("`", "'"),
    # hyphens, dashes and minus: ‐ ‑ ‒ – — ― −  ->  -
    ("\u2010", "-"),
    ("\u2011", "-"),
    ("\u2012", "-"),
    ("\u2013", "-"),
    ("\u2014", "-"),
    ("\u2015", "-"),
    ("\u2212", "-"),
    # ellipsis
    ("\u2026", "..."),
)
# Line breaks other than \n, checked with ``in`` (C speed) before any replacing is done.
_LINE_BREAKS: tuple[tuple[str, str], ...] = (
    ("\r\n", "\n"),
    ("\r", "\n"),
    ("\x0b", "\n"),
    ("\x0c", "\n"),
    ("\x85", "\n"),
    ("\u2028", "\n"),
    ("\u2029", "\n\n"),
)
# Common compatibility spaces replaced before NFKC (which maps them to a space anyway): a text that is
# already NFKC passes unicodedata's quick check, and a full normalization pass costs ~10x more.
_PRE_NFKC_SPACES: tuple[tuple[str, str], ...] = (
    ("\u00a0", " "),
    ("\u202f", " "),
    ("\u2009", " "),
    ("\u2007", " "),
)
# Whitespace other than space and \n (tab, U+1680, ...); only looked for when a non-printable
# character is present, as every such character is non-printable.
_ODD_SPACE_RE = re.compile(r"[^\S\n ]")
# Written with a literal prefix so that the regex engine can skip ahead with a fast substring search.
_SPACE_RUN_RE = re.compile("  +")
_BLANK_RUN_RE = re.compile("\n\n\n+")


def _replace_all(text: str, pairs: tuple[tuple[str, str], ...]) -> str:
    for old, new in pairs:
        if old in text:
            text = text.replace(old, new)
    return text


def _nfkc(text: str) -> str:
    """NFKC, then fold any typographic punctuation the normalization produced (e.g. from full-width forms)."""
    normed = unicodedata.normalize("NFKC", text)
    if normed is text:  # unicodedata returns its argument when the quick check says it is normalized
        return text
    return _replace_all(normed, _PUNCT_FOLDS)


# Combining marks still left after NFKC (stress marks on Cyrillic vowels, strike-through and other
# "decorations" used to dodge filters). Only the generic combining blocks: scripts whose vowel signs are
# combining marks (Devanagari, Arabic, ...) keep theirs.
_COMBINING_RE = re.compile("[\u0300-\u036f\u0483-\u0489\u1ab0-\u1aff\u1dc0-\u1dff\u20d0-\u20ff\ufe20-\ufe2f]+")


def clean_text(text: str) -> str:
    """Return ``text`` in the project's canonical form.

    What it does:

    * line breaks: ``\\r\\n``, ``\\r``, ``\\v``, ``\\f``, NEL (U+0085) and LINE SEPARATOR (U+2028)
      become ``\\n``; PARAGRAPH SEPARATOR (U+2029) becomes a blank line;
    * deleted: zero-width characters (U+200B..U+200D, U+2060, U+FEFF), soft hyphen (U+00AD), bidi
      controls (U+200E, U+200F, U+061C, U+202A..U+202E, U+2066..U+2069), the remaining C0/C1
      control characters (tab is kept and becomes a space) and lone surrogates;
    * Unicode NFKC (full-width forms, ligatures, compatibility spaces, ...), then the generic
      combining marks that NFKC could not compose away (stress marks, strike-through) are dropped;
    * punctuation folding: ``‘ ’ ‚ ‛ ʼ ′ ` `` -> ``'``; ``“ ” „ ‟ « » ″`` -> ``"``;
      ``‐ ‑ ‒ – — ― −`` -> ``-``; ``…`` -> ``...``;
    * whitespace: runs of spaces, tabs, NBSP and other Unicode spaces inside a line become one
      space; lines are stripped; two or more blank lines collapse to one (paragraphs are separated
      by ``"\\n\\n"``); single newlines are kept; the result is stripped.

    The function is idempotent: ``clean_text(clean_text(s)) == clean_text(s)``.
    """
    if not text:
        return ""
    text = _replace_all(text, _LINE_BREAKS)
    if not text.isascii():
        text = _replace_all(text, _PUNCT_FOLDS)
        text = _replace_all(text, _PRE_NFKC_SPACES)
        text = _nfkc(text)
    elif "`" in text:
        text = text.replace("`", "'")
    # Every character to delete, and all whitespace but space and \n, is non-printable.
    if not text.replace("\n", " ").isprintable():
        text = _DELETE_RE.sub("", text)
        if not text.isascii():
            # a deleted character may have separated a base letter from its combining mark
            text = _nfkc(text)
        text = _ODD_SPACE_RE.sub(" ", text)
    if not text.isascii() and _COMBINING_RE.search(text):
        text = _COMBINING_RE.sub("", text)
    if "  " in text:
        text = _SPACE_RUN_RE.sub(" ", text)
    # at most one space either side of a line break is left now
    if " \n" in text:
        text = text.replace(" \n", "\n")
    if "\n " in text:
        text = text.replace("\n ", "\n")
    if "\n\n\n" in text:
        text = _BLANK_RUN_RE.sub("\n\n", text)
    return text.strip()
