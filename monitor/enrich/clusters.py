"""Story clusters: the same story from several sources and languages shares one ``cluster_id``.

A brigade posts a video, a media channel reposts it with an intro, someone forwards it with a
comment, a news site writes it up in English: all of them get the ``cluster_id`` of the first item
the system saw. A cluster has that first item, its time, a size, and its members ordered by time.
The index lives in Redis, so several normalizer processes agree, and it forgets what is older than
the window (default 48 h). ``StoryClusters.assign_many`` is what the normalizer stage calls per batch.

Three signals, tried in this order (``ClusterResult.matched_by``; ``new`` when none links):

``forward``
    Provenance. Every item is recorded under its own provenance keys (``tg:<channel>:<message>``
    for Telegram, by numeric channel id and by username; ``x:<tweet id>`` for X, where tweet ids are
    global) and under the keys of what it forwards or quotes (``Item.forwarded_from``: a Telegram
    forward header; an X retweet or quote, which the X collector maps to ``forwarded_from`` with the
    referenced tweet id). An item that finds any of those keys already mapped joins that cluster,
    whatever its text. The map is symmetric, so a forward seen before its original (or two quotes of
    a tweet the monitor never collected) still end up together. A Telegram export's forward header
    has no message id, only channel and date, so Telegram items are also recorded (write-only, never
    looked up for themselves, so two posts of one channel in the same second are not linked) under
    ``tg:<channel>@<unix time>``. ``reply_to`` is not used: a reply is a new message, often about
    something else.

``text``
    MinHash/LSH over word shingles. The text is folded as the matcher folds it
    (``monitor.alerting.matcher.match_view``: ``\\w+`` tokens, case-folded, ``ё`` -> ``е``), after
    URLs are removed and grouped digits joined ("316 980", "316,980" -> ``316980``); shingles are
    word 3-grams. A text of fewer than ``min_tokens`` (6) tokens is not text-indexed (too little to
    tell stories apart: "Вибухи в Харкові" vs "Вибухи в Києві"). The signature is ``num_perm`` (128)
    minima of multiply-add-shift hashes of the shingles (numpy, fixed seed, so every process computes
    the same signature). LSH uses the first ``bands * rows`` (24 x 3) minima: the S-curve's midpoint
    is at Jaccard 0.35, a pair at 0.5 becomes a candidate with p = 0.96, at 0.6 with p = 0.997. A
    candidate is accepted when the estimated Jaccard (share of equal minima over all 128) is at least
    ``text_threshold`` (0.5), it is within the window, and the *number veto* does not apply: when
    both texts carry at least ``veto_min_numbers`` (4) numbers (years aside) and fewer than
    ``veto_containment`` (half) of the smaller set's are in the other, they are two editions of a
    template (the Air Force's nightly drone report), not one story.
    Cyrillic is *not* transliterated for shingles: uk/ru/en versions of a story share almost no
    word 3-grams either way (names and numbers never stand three in a row), and ru and uk
    transliterate differently (г -> g / h), so it would cost time for nothing; the cross-language
    signal is the next one.

``anchors``
    Language-independent tokens (``anchors``): numbers of at least two digits (``n:<value>``,
    grouped digits joined, from the text and from ``entities.quantities``), and the entity ids
    ``place:<id>``, ``unit:<id>``, ``person:<id>``. Two items are the same story when they share at
    least ``anchor_min_shared`` (3) anchors, at least ``anchor_min_strong`` (1) of them a *strong*
    number (>= 100, not a year 1900-2100, not a round hundred below 10 000: "712 artillery
    strikes", "316 980 personnel", but not "2023" or "500"), and the anchor sets' Jaccard is at
    least ``anchor_jaccard`` (0.5). Places, units and people alone never link (the same brigade
    reports from the same villages every day). The General Staff's loss report in uk and its English
    version share all their numbers (Jaccard 1.0); two consecutive days' reports share the unchanged
    counters only (0.24). Candidates are the last item indexed under each of the item's strong
    numbers (at most ``max_indexed_anchors``).

False merges are worse than misses, so every threshold errs that way; they are all constructor
parameters. Clusters never merge: the first link an item finds wins, and linking is single-link
against one verified candidate (the best-scoring one; equal scores go to the older candidate, then
the smaller item ref, so every process decides alike).

Redis layout (key names in ``monitor.bus.keys.Keys``). The index is
bucketed by *epochs* of the item's time, ``epoch = floor(t / window)``, t = ``published_at`` or
else ``collected_at``:

* ``{p}:cluster:index:{epoch}:items`` hash: item ref (8-byte blake2b of the item id) -> msgpack
  ``[t, cluster_id, minhash bytes, anchors, item_id]``. Serves idempotency (an item already here is
  answered with ``matched_by="self"``: replays, redeliveries, edits) and candidate verification.
  Its field ``v`` (no ref: refs are 8 bytes) counts the commits that wrote to the epoch.
* ``{p}:cluster:index:{epoch}:bands`` hash: 8-byte band hash -> item ref (the last item written).
* ``{p}:cluster:index:{epoch}:anchors`` hash: strong anchor -> item ref (the last item written).
* ``{p}:cluster:index:{epoch}:origins`` hash: provenance key -> cluster id (the first writer wins).
* ``{p}:cluster:{cluster_id}`` hash: ``first`` (item id), ``first_seen`` (unix time), ``size``.
* ``{p}:cluster:{cluster_id}:members`` sorted set: item id -> unix time.

An item looks candidates up in its own epoch and the two beside it (so any item within the window,
in either direction, is found) and is written to its own epoch. Index hashes expire ``window`` after
their last write (an epoch is written until it ends and read until the next one ends); a cluster's
hash and members set expire ``2 * window`` after its last join, so they outlive every index record
that names them. Replayed old items work the same (epochs follow the items' time, TTLs wall-clock
time). One hash per epoch and kind keeps the key count small; memory is about 3.5 KB per item for
1 KB posts (24 band fields ~1.5 KB, the record ~0.8 KB, a singleton cluster's two keys ~0.7 KB).

A batch costs two round trips whatever its size: a lookup script returns, per item, its own record
(if any), the items found under its bands and strong anchors with their records, and the clusters
under its provenance keys; a commit script writes the decisions. Decisions are made in Python, in
batch order, against what was read plus what earlier items of the same batch will have written.
Each script takes the whole batch in a handful of arguments (a msgpack array and concatenated
binary fields), not several per item.

CPU: everything computed from the items alone is done per batch (``prepare_many``). The view is
built in one pass on the text's UTF-8 bytes (the matcher's byte scan; the digit-group regex runs
only when a cheap byte test says a group is possible) and is not folded as a whole: each distinct
word is folded and hashed once (``zlib.crc32``, remembered: news text repeats its words). The
batch's shingles are rolled in one numpy step, and its MinHash is computed in blocks of ``_STEP``
shingles x ``num_perm`` with ``a*x + b == a*(x + c) (mod 2**64)``, ``c = b / a``: two contiguous
numpy operations and one minimum per text. Candidates are scored in one numpy step per item
against a matrix of the round's signatures. Signatures, bands and decisions are bit for bit those
of the plain formulas (``tests/test_clusters.py`` checks them against the definitions).

Races between normalizers: the cluster id is the hex blake2b (8 bytes) of the first item's id, so
replays agree; the commit script is a compare-and-set. An item that decided to start a new cluster
is written only if none of its band, anchor and provenance fields has meanwhile been taken by an
item it did not see; otherwise (and when the item itself was recorded meanwhile) it is planned again
with fresh reads (two more round trips: under real races, and for a batch whose items span epochs,
where a band's last writer in one epoch can hide an earlier one in another). After ``max_retries``
such rounds it is committed as planned. A race can still split a story when the two items' times
fall in adjacent epochs (the compare-and-set checks the item's own epoch). The checks are skipped
when the epoch's write version (``v``) is still the one the lookup read and the batch writes to one
epoch only: nobody else can have written in between, so they could not fail (one normalizer never
pays for them). A process running an older version of the commit script does not count its writes;
while both run (a rolling update) a race between them may split a story.

Every key a script touches is passed in ``KEYS``; under Redis Cluster they would need one hash tag
(e.g. ``{prefix:cluster}``) to share a slot. The client must return bytes (``decode_responses`` off,
as ``monitor.bus.redis`` connects).
"""

from __future__ import annotations

import hashlib
import math
import re
import struct
import zlib
from array import array
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from itertools import chain
from typing import Any, Literal, NamedTuple

import msgspec
import numpy as np
from redis.asyncio import Redis
from redis.commands.core import AsyncScript

# The match view's byte-level word scan (see ``matcher._scan``), reused to build the view without a second pass.
from monitor.alerting.matcher import _ASCII_GAPS, WORD, _only_word_characters, fold
from monitor.bus.keys import Keys
from monitor.schema import TELEGRAM_SOURCES, Item

MatchedBy = Literal["new", "self", "forward", "text", "anchors"]

# Defaults (StoryClusters parameters).
WINDOW = 48 * 3600.0
NUM_PERM = 128
BANDS = 24
ROWS = 3
SHINGLE_SIZE = 3
MIN_TOKENS = 6
TEXT_THRESHOLD = 0.5
ANCHOR_JACCARD = 0.5
ANCHOR_MIN_SHARED = 3
ANCHOR_MIN_STRONG = 1
VETO_MIN_NUMBERS = 4
VETO_CONTAINMENT = 0.5
MAX_RETRIES = 3
MAX_INDEXED_ANCHORS = 32

# The hash functions: changing the seed or the mixing constants changes every signature, so every
# normalizer must run the same code (a mismatch only costs matches, it never merges).
_SEED = 0x7761_7277_6174_6368  # "warwatch"
_ROLL = np.uint64(0x9E37_79B9_7F4A_7C15)
_FINAL = np.uint64(0xC2B2_AE3D_27D4_EB4F)
_BAND_PRIME = np.uint64(0x0000_0100_0000_01B3)  # FNV-1a 64-bit prime
_BAND_BASIS = np.uint64(0xCBF2_9CE4_8422_2325)
_STEP = 256  # shingles hashed per numpy step: a 256 x 128 uint64 block (256 KB) and its two tiles stay in L2
_MASK64 = (1 << 64) - 1


@dataclass(frozen=True, slots=True)
class ClusterResult:
    """Where one item went.

    ``matched_by`` is ``new`` (it starts the cluster), ``self`` (it was assigned before: a replay,
    a redelivery, an edit; or a delete of an unknown item, which is not recorded and has size 0),
    ``forward``, ``text`` or ``anchors``. ``score`` is the estimated text Jaccard or the anchor
    Jaccard, ``via`` the id of the item it was matched to (both None otherwise).
    """

    cluster_id: str
    first_item_id: str
    is_new: bool
    size: int
    matched_by: MatchedBy
    score: float | None = None
    via: str | None = None


# --- text -> tokens, numbers, anchors --------------------------------------------------------------

# Digit groups of a thousands separator: "316 980", "316,980", "1.078", "10 039" (NBSP, thin spaces).
_GROUPED = re.compile(r"\d{1,3}(?:[ \u00a0\u2009\u202f,.'’]\d{3})+(?![\d]|[.,]\d)")
_NON_DIGIT = re.compile(r"\D")
_URL = re.compile(r"(?:https?://|www\.|t\.me/|t\.co/)\S*", re.IGNORECASE)
_URL_MARKERS = ("://", "www.", "t.me/", "t.co/", "WWW.")
_VIEW_NUMBER = re.compile(r" ([0-9]{1,15})(?:st|nd|rd|th)?(?= )")
# The lead bytes of non-ASCII decimal digits (``\d``: Arabic-Indic, Devanagari, fullwidth ...) among
# those a text on the byte path (``_loose_view``) can hold.
_DIGIT_LEADS = frozenset(b"\xd9\xdb\xdf\xe0\xe1\xea\xef")  # tests/test_clusters.py derives it again
# The lead bytes of the characters ``fold`` turns into something with ASCII in it ("ß" -> "ss", "ſ" ->
# "s", "ﬆ" -> "st", the Kelvin sign -> "k"): a view with one of them is read for numbers after folding.
_FOLD_LEADS = frozenset(b"\xc3\xc4\xc5\xc7\xe1\xe2\xef")  # tests/test_clusters.py derives it again
# Per byte: an ASCII digit "0", an ASCII non-word character " ", a lead byte of non-ASCII digits "D",
# of characters that fold into ASCII "F", anything else "x". A text on the byte path can hold a digit
# group ("316 980": a digit, one separator, three digits) only where this shape has "0 000", or a "D":
# ``_GROUPED`` runs only then.
_DIGIT_SHAPES = bytes(
    0x30
    if 0x30 <= b <= 0x39
    else 0x20
    if b < 0x80 and _ASCII_GAPS[b] == 0x20
    else 0x44
    if b in _DIGIT_LEADS
    else 0x46
    if b in _FOLD_LEADS
    else 0x78
    for b in range(256)
)


def _join_groups(match: re.Match[str]) -> str:
    start = match.start()
    if start and match.string[start - 1] in "0123456789.,":  # the tail of a longer number: leave it
        return match.group()
    return _NON_DIGIT.sub("", match.group())


_NO_NUMBERS, _RAW_NUMBERS, _FOLDED_NUMBERS = 0, 1, 2  # how ``_words``' numbers are read (see there)
# ``_VIEW_NUMBER`` for a view before ``fold``: the ordinal suffix in either case ("92ND" folds to "92nd").
_RAW_VIEW_NUMBER = re.compile(r" ([0-9]{1,15})(?:[sS][tT]|[nN][dD]|[rR][dD]|[tT][hH])?(?= )")


def _words(text: str) -> tuple[str, int]:
    """``(view(text) before fold, with runs of spaces where the view has one; how to read its numbers)``.

    Splitting it gives the view's tokens before ``fold`` (``fold`` works character by character and
    makes no spaces). One pass in the common case: the UTF-8 bytes' ASCII punctuation becomes spaces
    (``matcher._scan``; exact when every non-ASCII character is a word character). ``_GROUPED`` runs
    only when a digit group is possible (``_DIGIT_SHAPES``), and ``WORD`` only for texts with
    non-ASCII punctuation, symbols or emoji. Numbers: none without an ASCII digit; ``_RAW_VIEW_NUMBER``
    on this string when no character folds into ASCII ("ſt", "ﬆ", the Kelvin sign ...); else
    ``_VIEW_NUMBER`` on the folded string.
    """
    # The URL markers (_URL_MARKERS), tested with one-character searches first: those are cheap.
    if ("/" in text and ("://" in text or "t.me/" in text or "t.co/" in text)) or (
        ("w" in text and "www." in text) or ("W" in text and "WWW." in text)
    ):
        text = _URL.sub(" ", text)
    raw = text.encode("utf-8", "surrogatepass")
    plain = text.isascii() or _only_word_characters(raw)
    shape = raw.translate(_DIGIT_SHAPES) if plain else None
    if shape is None or b"0 000" in shape or b"D" in shape:
        joined = _GROUPED.sub(_join_groups, text)
        if joined != text:
            text = joined
            raw = text.encode("utf-8", "surrogatepass")
            plain = text.isascii() or _only_word_characters(raw)
    if not plain:
        return " " + " ".join(WORD.findall(text)) + " ", _FOLDED_NUMBERS
    words = " " + raw.translate(_ASCII_GAPS).decode("utf-8", "surrogatepass") + " "
    if shape is None or b"D" in shape or b"F" in shape:
        return words, _FOLDED_NUMBERS
    return words, _RAW_NUMBERS if b"0" in shape else _NO_NUMBERS


def _loose_view(text: str) -> str:
    """``view(text)``, except that a run of spaces may stand where the view has one: same tokens, same numbers."""
    return fold(_words(text)[0])


def _view_numbers(words: str, how: int) -> list[str]:
    """The numbers (as digits) of ``_words``' string, read as ``how`` says."""
    if how == _RAW_NUMBERS:
        return _RAW_VIEW_NUMBER.findall(words)
    if how == _FOLDED_NUMBERS:
        return _VIEW_NUMBER.findall(fold(words))
    return []


def view(text: str) -> str:
    """The padded match view (``matcher.match_view``) of ``text`` with URLs removed and digit groups joined."""
    return " " + " ".join(_loose_view(text).split()) + " "


def tokens(text: str) -> list[str]:
    """The folded word tokens shingles are built from."""
    return _loose_view(text).split()


def numbers_in_view(folded: str) -> list[int]:
    """The whole-token numbers of a ``view``: ASCII digits, and English ordinals ("92nd" -> 92)."""
    return [int(found) for found in _VIEW_NUMBER.findall(folded)]


def numbers(text: str) -> list[int]:
    """Every number in ``text`` outside URLs and not glued to letters, digit groups joined ("3 574" -> 3574)."""
    return numbers_in_view(_loose_view(text))


def is_strong_number(value: int) -> bool:
    """A number specific enough to tie two texts: >= 100, not a year, not a round hundred below 10 000."""
    if value < 100 or 1900 <= value <= 2100:
        return False
    return not (value < 10_000 and value % 100 == 0)


def is_strong(anchor: str) -> bool:
    """Whether an anchor is a strong number (only those are indexed for lookup)."""
    return anchor.startswith("n:") and is_strong_number(int(anchor[2:]))


_NO_ANCHORS: frozenset[str] = frozenset()


class _Number(NamedTuple):
    value: int
    anchor: str  # "n:<value>"
    fact: bool  # not a year
    strong: bool  # ``is_strong_number``


_NUMBERS: dict[str, _Number] = {}  # digits as the view has them -> what they anchor (numbers repeat a lot)


def _number(digits: str) -> _Number:
    found = _NUMBERS.get(digits)
    if found is None:
        value = int(digits)
        found = _Number(value, f"n:{value}", not 1900 <= value <= 2100, is_strong_number(value))
        if len(_NUMBERS) < 100_000:
            _NUMBERS[digits] = found
    return found


def _anchor_parts(item: Item, digits: Iterable[str], limit: int) -> tuple[frozenset[str], frozenset[str], list[str]]:
    """``(anchors, fact_numbers(anchors), the first `limit` strong anchors in sorted order)`` of an item.

    ``digits`` are the numbers of the item text's view, as ``_VIEW_NUMBER`` finds them.
    """
    found = {number.value: number for number in map(_number, digits) if number.value >= 10}
    entities = item.entities
    for quantity in entities.quantities:
        value = quantity.value
        if math.isfinite(value) and value == int(value) and value >= 10 and int(value) not in found:
            found[int(value)] = _number(str(int(value)))
    if found:
        numbers = found.values()
        names = {number.anchor for number in numbers}
        facts = frozenset(number.anchor for number in numbers if number.fact)
        strong = sorted(number.anchor for number in numbers if number.strong)[:limit]
    else:
        names, facts, strong = set(), _NO_ANCHORS, []
    if entities.places:
        names.update(f"place:{place.id}" for place in entities.places if place.id)
    if entities.units:
        names.update(f"unit:{unit.id}" for unit in entities.units if unit.id)
    if entities.people:
        names.update(f"person:{person.id}" for person in entities.people if person.id)
    return frozenset(names), facts, strong


def anchors(item: Item, *, folded: str | None = None) -> set[str]:
    """The language-independent tokens of an item: numbers >= 10 and entity ids.

    ``folded`` is the item text's ``view`` when the caller has it already.
    """
    return set(_anchor_parts(item, _VIEW_NUMBER.findall(_loose_view(item.text) if folded is None else folded), 0)[0])


def anchor_score(
    a: Iterable[str],
    b: Iterable[str],
    *,
    jaccard: float = ANCHOR_JACCARD,
    min_shared: int = ANCHOR_MIN_SHARED,
    min_strong: int = ANCHOR_MIN_STRONG,
) -> float | None:
    """The anchor Jaccard of two items when it links them (see the module docstring), else None."""
    first = a if isinstance(a, (set, frozenset)) else set(a)
    second = b if isinstance(b, (set, frozenset)) else set(b)
    shared = first & second
    if len(shared) < min_shared:
        return None
    score = len(shared) / (len(first) + len(second) - len(shared))
    if score < jaccard or sum(1 for anchor in shared if is_strong(anchor)) < min_strong:
        return None
    return score


def numbers_disagree(
    a: Iterable[str],
    b: Iterable[str],
    *,
    min_numbers: int = VETO_MIN_NUMBERS,
    containment: float = VETO_CONTAINMENT,
) -> bool:
    """The number veto on a text match: both carry numbers (years aside), and mostly different ones."""
    return _facts_disagree(fact_numbers(a), fact_numbers(b), min_numbers, containment)


def fact_numbers(found: Iterable[str]) -> frozenset[str]:
    """The number anchors that state facts: every number anchor except years."""
    return frozenset(anchor for anchor in found if anchor.startswith("n:") and not 1900 <= int(anchor[2:]) <= 2100)


def _facts_disagree(first: frozenset[str], second: frozenset[str], min_numbers: int, containment: float) -> bool:
    if len(first) < min_numbers or len(second) < min_numbers:
        return False
    return len(first & second) / min(len(first), len(second)) < containment


# --- MinHash ---------------------------------------------------------------------------------------


@lru_cache(maxsize=8)
def _permutations(num_perm: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(_SEED)
    a = rng.integers(0, 2**64 - 1, size=num_perm, dtype=np.uint64, endpoint=True) | np.uint64(1)
    b = rng.integers(0, 2**64 - 1, size=num_perm, dtype=np.uint64, endpoint=True)
    return a[:, None], b[:, None]


@lru_cache(maxsize=8)
def _step_tiles(num_perm: int) -> tuple[np.ndarray, np.ndarray]:
    """``_STEP`` rows of ``a`` and of ``c = b * a**-1 (mod 2**64)``: ``a*x + b == a*(x + c) (mod 2**64)``.

    ``a`` is odd, so it has an inverse mod 2**64. With ``c`` the add comes first and both numpy steps run
    on two contiguous blocks of the same shape (a broadcast operand takes numpy's slow loops).
    """
    a, b = _permutations(num_perm)
    c = np.array(
        [(int(add) * pow(int(mul), -1, 1 << 64)) & _MASK64 for mul, add in zip(a.ravel(), b.ravel(), strict=True)],
        dtype=np.uint64,
    )
    return np.tile(a.ravel(), (_STEP, 1)), np.tile(c, (_STEP, 1))


_EMPTY = np.zeros(0, dtype=np.uint32)


class _WordHashes(dict[str, int]):
    """crc32 of a token's folded UTF-8, remembered: news text repeats its words, so nearly every lookup is a hit.

    Keyed by the token as it stands, folded or not (``fold`` is idempotent): the batch path hashes
    the tokens before ``fold`` and never folds the whole text.
    """

    limit = 50_000  # tokens (a few MB); the cache starts over when it is full

    def __missing__(self, word: str) -> int:
        value = self[word] = zlib.crc32(fold(word).encode("utf-8", "surrogatepass"))
        return value

    def trim(self) -> None:
        if len(self) > self.limit:
            self.clear()


_WORD_HASHES = _WordHashes()
_ULONG_64 = array("L").itemsize == 8


def _shingles_of_hashes(word_hashes: np.ndarray, size: int) -> np.ndarray:
    """32-bit hashes (in uint64) of each run of ``size`` consecutive word hashes."""
    count = len(word_hashes) - size + 1
    rolled = word_hashes[:count].copy()
    for offset in range(1, size):
        rolled = rolled * _ROLL + word_hashes[offset : offset + count]
    return (rolled * _FINAL) >> np.uint64(32)


def shingle_hashes(words: Sequence[str], size: int = SHINGLE_SIZE) -> np.ndarray:
    """32-bit hashes (in uint64) of the word ``size``-grams, in order (duplicates kept)."""
    if len(words) < size:
        return np.zeros(0, dtype=np.uint64)
    word_hashes = np.fromiter(map(_WORD_HASHES.__getitem__, words), dtype=np.uint64, count=len(words))
    _WORD_HASHES.trim()
    return _shingles_of_hashes(word_hashes, size)


def _minima(shingles: np.ndarray, spans: Sequence[tuple[int, int]], num_perm: int) -> np.ndarray:
    """Per non-empty span ``(start, stop)`` of ``shingles``: the ``num_perm`` minima of ``a*x + b (mod 2**64)``.

    Consecutive spans are hashed together in blocks of up to ``_STEP`` shingles (the few shingles that
    straddle two texts are hashed and ignored); a longer span takes several blocks.
    """
    a_rows, c_rows = _step_tiles(num_perm)
    block = np.empty((_STEP, num_perm), dtype=np.uint64)
    out = np.empty((len(spans), num_perm), dtype=np.uint64)

    def hashed(start: int, stop: int) -> np.ndarray:
        rows = stop - start
        values = block[:rows]
        values[...] = shingles[start:stop, None]
        np.add(values, c_rows[:rows], out=values)
        np.multiply(values, a_rows[:rows], out=values)
        return values

    index, count = 0, len(spans)
    while index < count:
        start, stop = spans[index]
        if stop - start > _STEP:
            np.minimum.reduce(hashed(start, start + _STEP), axis=0, out=out[index])
            for low in range(start + _STEP, stop, _STEP):
                np.minimum(out[index], hashed(low, min(low + _STEP, stop)).min(axis=0), out=out[index])
            index += 1
            continue
        last = index
        while last + 1 < count and spans[last + 1][1] - start <= _STEP:
            last += 1
        values = hashed(start, spans[last][1])
        for position in range(index, last + 1):
            low, high = spans[position]
            np.minimum.reduce(values[low - start : high - start], axis=0, out=out[position])
        index = last + 1
    return out


def _signatures(token_lists: Sequence[Sequence[str]], num_perm: int, size: int) -> np.ndarray:
    """The MinHash signatures (uint32, one row of ``num_perm`` per list) of token lists of ``size`` or more tokens."""
    counts = [len(words) for words in token_lists]
    total = sum(counts)
    hashed = map(_WORD_HASHES.__getitem__, chain.from_iterable(token_lists))
    if _ULONG_64:  # array's C loop takes the ints a little faster than np.fromiter
        word_hashes = np.frombuffer(array("L", hashed), dtype=np.uint64)
    else:  # pragma: no cover - a platform whose C long has 32 bits
        word_hashes = np.fromiter(hashed, dtype=np.uint64, count=total)
    _WORD_HASHES.trim()
    spans: list[tuple[int, int]] = []
    start = 0
    for count in counts:
        spans.append((start, start + count - size + 1))
        start += count
    minima = _minima(_shingles_of_hashes(word_hashes, size), spans, num_perm)
    return (minima >> np.uint64(32)).astype(np.uint32)


def minhash(
    text: str, *, num_perm: int = NUM_PERM, shingle_size: int = SHINGLE_SIZE, min_tokens: int = MIN_TOKENS
) -> np.ndarray:
    """The MinHash signature (uint32, ``num_perm`` values) of ``text``; empty when it is too short."""
    return minhash_of(tokens(text), num_perm=num_perm, shingle_size=shingle_size, min_tokens=min_tokens)


def minhash_of(
    words: Sequence[str], *, num_perm: int = NUM_PERM, shingle_size: int = SHINGLE_SIZE, min_tokens: int = MIN_TOKENS
) -> np.ndarray:
    """``minhash`` of already tokenized text."""
    if len(words) < max(min_tokens, shingle_size):
        return _EMPTY
    return _signatures([words], num_perm, shingle_size)[0]


def signature(shingles: np.ndarray, num_perm: int = NUM_PERM) -> np.ndarray:
    """MinHash of a set of 32-bit shingle hashes: per permutation the minimum of ``(a*x + b) >> 32``."""
    if len(shingles) == 0:
        return np.full(num_perm, np.iinfo(np.uint32).max, dtype=np.uint32)
    minima = _minima(np.asarray(shingles, dtype=np.uint64), [(0, len(shingles))], num_perm)[0]
    return (minima >> np.uint64(32)).astype(np.uint32)


def estimate_jaccard(a: np.ndarray, b: np.ndarray) -> float:
    """The share of equal minima: an unbiased estimate of the shingle sets' Jaccard similarity."""
    if a.size == 0 or a.size != b.size:
        return 0.0
    return float(np.count_nonzero(a == b)) / a.size


def _band_matrix(sigs: np.ndarray, bands: int, rows: int) -> bytes:
    """``band_hashes`` of every row of a signature matrix, concatenated (``8 * bands`` bytes per row)."""
    matrix = sigs[:, : bands * rows].astype(np.uint64).reshape(len(sigs), bands, rows)
    acc = (np.arange(1, bands + 1, dtype=np.uint64) ^ _BAND_BASIS) * _BAND_PRIME
    for column in range(rows):
        acc = (acc ^ matrix[:, :, column]) * _BAND_PRIME
    return acc.astype("<u8").tobytes()


def band_hashes(sig: np.ndarray, bands: int = BANDS, rows: int = ROWS) -> list[bytes]:
    """One 8-byte hash per LSH band over the first ``bands * rows`` minima (band number included)."""
    if sig.size < bands * rows:
        return []
    raw = _band_matrix(sig[None, :], bands, rows)
    return [raw[offset : offset + 8] for offset in range(0, len(raw), 8)]


# --- provenance ------------------------------------------------------------------------------------


@lru_cache(maxsize=4096)
def _channel_ref(channel: str) -> str:
    return "".join(channel.split()).lower().lstrip("@")  # no whitespace in keys


def provenance(item: Item) -> tuple[list[str], list[str]]:
    """``(keys of what the item forwards or quotes, the item's own keys)``.

    Telegram: ``tg:<channel>:<message id>`` with the numeric channel id and with the username (the
    forward header names either), and ``tg:<channel>@<unix time>`` (the export's forward header has
    no message id, only the original's date). X: ``x:<tweet id>`` (tweet ids are global, and a
    retweet or quote may not name the author). Other sources have no provenance keys.
    """
    own: list[str] = []
    origins: list[str] = []
    forward = item.forwarded_from
    if item.source in TELEGRAM_SOURCES:
        channels = (
            [_channel_ref(item.channel)]
            if item.channel_id is None
            else [str(item.channel_id), _channel_ref(item.channel)]
        )
        external = item.external_id
        own = [f"tg:{channel}:{external}" for channel in channels]
        if item.published_at is not None:
            stamp = int(item.published_at.timestamp())
            own += [f"tg:{channel}@{stamp}" for channel in channels]
        if forward is not None and forward.channel:
            channel = _channel_ref(forward.channel)
            if forward.id:
                origins.append(f"tg:{channel}:{forward.id}")
            if forward.date is not None:
                origins.append(f"tg:{channel}@{int(forward.date.timestamp())}")
    elif item.source == "x":
        own.append(f"x:{item.external_id}")
        if forward is not None and forward.id:
            origins.append(f"x:{forward.id}")
    return origins, own


# --- the Redis side --------------------------------------------------------------------------------
# Both scripts take a batch in a handful of arguments, not five or twelve per item: the per-item
# values as one msgpack array (``cmsgpack.unpack``) and the binary ones (refs, band hashes, records)
# concatenated, one argument each, cut apart by the script. Redis's cmsgpack has no bin type, so
# binary values never travel inside the msgpack.

# The lookup, one call per batch. ARGV[1], one entry per item: {the KEYS indexes of the items hash of
# each epoch to search (the epoch's bands, anchors and origins hashes follow it in KEYS), its number
# of band hashes, its strong anchors, its provenance keys}; ARGV[2]: the item refs (8 bytes each);
# ARGV[3]: the band hashes (8 bytes each), item after item.
# Reply: per item {own record or false, {refs found under its bands}, {refs found under its strong
# anchors} (each ref once), {provenance key position (0-based), cluster id, ...}}, then {KEYS index
# of an items hash, its write version, ...} (for the commit's shortcut, below), then {refs} and
# {records}: the candidates' records (each sent once per call; a ref whose record is gone is left out).
_LOOKUP = """
local batch = cmsgpack.unpack(ARGV[1])
local refs, band_blob = ARGV[2], ARGV[3]
local sent = {}
local present = {}
local out = {}
local record_refs, records = {}, {}
local versions = {}
local versioned = {}
local band_at = 1

local function exists(key)
  local known = present[key]
  if known == nil then
    known = redis.call('EXISTS', key) == 1
    present[key] = known
  end
  return known
end

local function collect(key, fields, ref, found, listed, wanted, marked)
  if #fields == 0 or not exists(key) then return end
  local values = redis.call('HMGET', key, unpack(fields))
  for i = 1, #fields do
    local v = values[i]
    if v and v ~= ref then
      if not listed[v] then
        listed[v] = true
        found[#found + 1] = v
      end
      if not marked[v] then
        marked[v] = true
        if not sent[v] then
          sent[v] = true
          wanted[#wanted + 1] = v
        end
      end
    end
  end
end

for n, entry in ipairs(batch) do
  local ref = string.sub(refs, 8 * n - 7, 8 * n)
  local anchors, origins = entry[3], entry[4]
  local bands = {}
  if entry[2] > 0 then
    bands = {struct.unpack(string.rep('c8', entry[2]), band_blob, band_at)}
    band_at = table.remove(bands)
  end
  local own = false
  local band_refs, anchor_refs, origin_hits = {}, {}, {}
  local band_listed, anchor_listed = {}, {}
  for _, k in ipairs(entry[1]) do
    local ikey = KEYS[k]
    if exists(ikey) then
      if not versioned[k] then
        versioned[k] = true
        versions[#versions + 1] = k
        versions[#versions + 1] = tonumber(redis.call('HGET', ikey, 'v')) or 0
      end
      local wanted, marked = {ref}, {}
      collect(KEYS[k + 1], bands, ref, band_refs, band_listed, wanted, marked)
      collect(KEYS[k + 2], anchors, ref, anchor_refs, anchor_listed, wanted, marked)
      local values = redis.call('HMGET', ikey, unpack(wanted))
      own = values[1] or own
      for i = 2, #wanted do
        if values[i] then
          record_refs[#record_refs + 1] = wanted[i]
          records[#records + 1] = values[i]
        end
      end
    end
    if #origins > 0 and exists(KEYS[k + 3]) then
      local values = redis.call('HMGET', KEYS[k + 3], unpack(origins))
      for i = 1, #origins do
        if values[i] then
          origin_hits[#origin_hits + 1] = i - 1
          origin_hits[#origin_hits + 1] = values[i]
        end
      end
    end
  end
  out[n] = {own, band_refs, anchor_refs, origin_hits}
end
out[#out + 1] = versions
out[#out + 1] = record_refs
out[#out + 1] = records
return out
"""

# The commit, one call per batch. ARGV[1]: TTL of the index hashes, ARGV[2]: TTL of cluster records
# (seconds); ARGV[3]: "1" to commit without the compare-and-set; ARGV[4], one entry per plan: {mode,
# time, cluster id, {the KEYS indexes of the epoch's items, bands, anchors and origins hashes and of
# the cluster hash and members set}, item id, the length of its record, its number of band hashes,
# its strong anchors, provenance keys to check and write, provenance keys only to write, and how many
# item refs and cluster ids the plan saw}. Then, concatenated plan after plan: ARGV[5] the item refs
# (8 bytes each), ARGV[6] the records, ARGV[7] the band hashes (8 bytes each), ARGV[8] the refs seen
# (8 bytes each) and ARGV[9] the cluster ids seen (16 characters each). ARGV[10]: msgpack {KEYS index
# of an items hash, the write version the lookup read, ...}.
# Every commit that writes to an epoch bumps the ``v`` field of its items hash (item refs are 8
# bytes, so it is no ref). When the version is still the one the lookup read, no other process has
# written to the epoch in between and the compare-and-set checks (HEXISTS, the taken fields) are
# skipped: the common case with one normalizer. A process running an older version of this script
# does not bump it; while both run (a rolling update) a race between them may split a story.
# Reply per plan: {mode, cluster_id, first item id, size}, {"conflict"}, or {"late", record} when a
# forced commit finds the item already recorded.
_COMMIT = """
local index_ttl, cluster_ttl = tonumber(ARGV[1]), tonumber(ARGV[2])
local force = ARGV[3] == '1'
local plans = cmsgpack.unpack(ARGV[4])
local refs, record_blob, band_blob, seen_refs, seen_ids = ARGV[5], ARGV[6], ARGV[7], ARGV[8], ARGV[9]
local read_versions = cmsgpack.unpack(ARGV[10])
local record_at, band_at, ref_at, id_at = 1, 1, 1, 1
local touched = {}
local written = {}
local failed = {}
local out = {}
local expected, quiet = {}, {}
for i = 1, #read_versions, 2 do expected[read_versions[i]] = read_versions[i + 1] end

-- Whether no other writer has touched the epoch since the lookup read it: its version is unchanged.
local function unchanged(ikey, k)
  local known = quiet[ikey]
  if known == nil then
    local version = expected[k]
    known = version ~= nil and (tonumber(redis.call('HGET', ikey, 'v')) or 0) == version
    quiet[ikey] = known
  end
  return known
end

local function cut(s, at, count, size)
  local parts = {}
  for i = 1, count do
    parts[i] = string.sub(s, at, at + size - 1)
    at = at + size
  end
  return parts
end

local function taken(key, fields, seen)
  if #fields == 0 then return false end
  local values = redis.call('HMGET', key, unpack(fields))
  for i = 1, #fields do
    local value = values[i]
    if value and not seen[value] then return true end
  end
  return false
end

local function hset_all(key, fields, value)
  if #fields == 0 then return end
  local args = {}
  for _, f in ipairs(fields) do
    args[#args + 1] = f
    args[#args + 1] = value
  end
  redis.call('HSET', key, unpack(args))
  touched[key] = index_ttl
end

local function hsetnx_all(key, fields, value)
  for _, f in ipairs(fields) do
    redis.call('HSETNX', key, f, value)
    touched[key] = index_ttl
  end
end

for n, plan in ipairs(plans) do
  local mode, t, cid, k, item_id = plan[1], plan[2], plan[3], plan[4], plan[5]
  local ikey, bkey, akey, okey, ckey, mkey = KEYS[k[1]], KEYS[k[2]], KEYS[k[3]], KEYS[k[4]], KEYS[k[5]], KEYS[k[6]]
  local ref = string.sub(refs, 8 * n - 7, 8 * n)
  local record = string.sub(record_blob, record_at, record_at + plan[6] - 1)
  record_at = record_at + plan[6]
  local bands = {}
  if plan[7] > 0 then
    bands = {struct.unpack(string.rep('c8', plan[7]), band_blob, band_at)}
    band_at = table.remove(bands)
  end
  local anchors, origins = plan[8], plan[9]
  local seen_at, ids_at = ref_at, id_at
  ref_at = ref_at + 8 * plan[11]
  id_at = id_at + 16 * plan[12]
  -- Nobody else wrote to the epoch since the lookup: the item is not recorded there and nothing the
  -- plan did not see has been written (the batch's own writes are in its plan), so the checks are moot.
  local alone = mode ~= 'self' and unchanged(ikey, k[1])
  local status = 'ok'
  if mode ~= 'self' and not alone and redis.call('HEXISTS', ikey, ref) == 1 then
    status = force and 'late' or 'conflict'
  elseif failed[cid] then
    status = 'conflict'
  elseif mode == 'new' and not force and not alone then
    local seen = {}
    for _, v in ipairs(cut(seen_refs, seen_at, plan[11], 8)) do seen[v] = true end
    for _, v in ipairs(cut(seen_ids, ids_at, plan[12], 16)) do seen[v] = true end
    if taken(bkey, bands, seen) or taken(akey, anchors, seen) or taken(okey, origins, seen) then
      status = 'conflict'
    end
  end
  if status == 'late' then
    out[n] = {'late', redis.call('HGET', ikey, ref)}
  elseif status == 'conflict' then
    if mode == 'new' then failed[cid] = true end
    out[n] = {'conflict'}
  else
    local first, size = false, false
    if mode ~= 'self' then
      redis.call('HSET', ikey, ref, record)
      touched[ikey] = index_ttl
      written[ikey] = true
      hset_all(bkey, bands, ref)
      hset_all(akey, anchors, ref)
      hsetnx_all(okey, origins, cid)
      hsetnx_all(okey, plan[10], cid)
      if redis.call('HSETNX', ckey, 'first', item_id) == 1 then
        redis.call('HSET', ckey, 'first_seen', t)
        first = item_id
      end
      if redis.call('ZADD', mkey, 'NX', t, item_id) == 1 then
        size = redis.call('HINCRBY', ckey, 'size', 1)
      end
      touched[ckey] = cluster_ttl
      touched[mkey] = cluster_ttl
    end
    if not first or not size then
      local info = redis.call('HMGET', ckey, 'first', 'size')
      first = first or info[1]
      size = size or tonumber(info[2]) or 0
    end
    out[n] = {mode, cid, first, size}
  end
end
for key in pairs(written) do
  redis.call('HINCRBY', key, 'v', 1)
end
for key, ttl in pairs(touched) do
  redis.call('EXPIRE', key, ttl)
end
return out
"""


# The per-item working objects are msgspec Structs without GC tracking (``gc=False``: they hold no
# cycles): a batch makes several per item, and tracked ones would set off the cyclic collector
# (and its full passes over the process's heap) every few dozen items.


class _Prepared(msgspec.Struct, gc=False):
    """Everything computed from the item alone (no Redis)."""

    item: Item
    ref: bytes
    cluster_id: str
    t: float
    epoch: int
    anchors: frozenset[str]
    facts: frozenset[str]
    strong: list[str]
    lookups: list[str]  # provenance keys read (and compare-and-set): what it forwards, its own ids
    marks: list[str]  # provenance keys only written: its own date keys, for forward headers without an id
    sig: np.ndarray = _EMPTY
    matrix: np.ndarray = _EMPTY  # the batch's signatures: ``sig`` is its row ``row``
    row: int = -1
    bands: Sequence[bytes] = ()
    band_blob: bytes = b""  # the bands concatenated, as the scripts take them


@lru_cache(maxsize=8)
def _band_cutter(bands: int) -> struct.Struct:
    """Cuts ``bands`` 8-byte band hashes out of a buffer (one C call per item)."""
    return struct.Struct("8s" * bands)


class _Record(msgspec.Struct, array_like=True, gc=False):
    """An index record: msgpack ``[t, cluster_id, minhash bytes, anchors, item_id]`` as stored, decoded as is."""

    t: float
    cluster_id: str
    sig: bytes
    anchor_list: msgspec.Raw  # decoded when first needed: most candidates are only scored by text
    item_id: str
    ref: bytes = b""  # the item ref it is stored under (set when read)
    row: int = -1  # the signature's row in the planning round's matrix (-1: none, or not ``num_perm`` long)
    anchor_set: frozenset[str] | None = None
    fact_set: frozenset[str] | None = None

    @property
    def anchors(self) -> frozenset[str]:
        """The anchors as a set, built when an anchor match or the number veto first needs them."""
        if self.anchor_set is None:
            try:
                self.anchor_set = frozenset(_anchors_decoder.decode(self.anchor_list))
            except msgspec.DecodeError:  # not a list of strings: a record no version of this code wrote
                self.anchor_set = _NO_ANCHORS
        return self.anchor_set

    @property
    def facts(self) -> frozenset[str]:
        """``fact_numbers`` of the anchors, computed when a text match first needs the veto."""
        if self.fact_set is None:
            self.fact_set = fact_numbers(self.anchors)
        return self.fact_set


_NO_ORIGINS: dict[str, str] = {}  # shared, never written


class _Found(msgspec.Struct, gc=False):
    """What the first read found for one item."""

    record: _Record | None
    band_refs: list[bytes]
    anchor_refs: list[bytes]
    origins: dict[str, str] | None = None  # provenance key -> cluster id
    origin_ids: list[bytes] | None = None  # the cluster ids found under provenance keys


class _Plan(msgspec.Struct, gc=False):
    prepared: _Prepared
    mode: Literal["new", "join", "self", "skip"]
    cluster_id: str
    matched_by: MatchedBy
    score: float | None = None
    via: str | None = None
    record: bytes = b""
    seen_refs: bytes = b""  # what a new cluster's item saw (compare-and-set): item refs, concatenated
    seen_ids: bytes = b""  # and cluster ids


_encoder = msgspec.msgpack.Encoder()
_record_encoder = _encoder
_record_decoder = msgspec.msgpack.Decoder(_Record)
_anchors_decoder = msgspec.msgpack.Decoder(list[str])
_NO_RAW = msgspec.Raw(b"\x90")  # an empty msgpack array
_REF_SIZE = 8
_CLUSTER_ID_SIZE = 2 * _REF_SIZE


def _decode_record(raw: bytes) -> _Record | None:
    try:
        return _record_decoder.decode(raw)
    except msgspec.DecodeError:
        return None


def _joined(values: Collection[bytes], size: int) -> bytes:
    """The values of exactly ``size`` bytes, concatenated (any other would shift the script's fixed-width cuts)."""
    joined = b"".join(values)
    if len(joined) == size * len(values):
        return joined
    return b"".join(value for value in values if len(value) == size)


def _before(record: _Record, other: _Record) -> bool:
    """Ties between equally scored candidates go to the older record (then the smaller ref): every process agrees."""
    return record.t < other.t or (record.t == other.t and record.ref < other.ref)


def item_ref(item_id: str) -> bytes:
    """The 8-byte blake2b of an item id; its hex is the cluster id of a cluster the item starts."""
    return hashlib.blake2b(item_id.encode("utf-8", "surrogatepass"), digest_size=8).digest()


class StoryClusters:
    """Assigns items to story clusters; every process with the same Redis and prefix agrees."""

    def __init__(
        self,
        redis: Redis,
        keys: Keys,
        *,
        window: float = WINDOW,
        num_perm: int = NUM_PERM,
        bands: int = BANDS,
        rows: int = ROWS,
        shingle_size: int = SHINGLE_SIZE,
        min_tokens: int = MIN_TOKENS,
        text_threshold: float = TEXT_THRESHOLD,
        anchor_jaccard: float = ANCHOR_JACCARD,
        anchor_min_shared: int = ANCHOR_MIN_SHARED,
        anchor_min_strong: int = ANCHOR_MIN_STRONG,
        veto_min_numbers: int = VETO_MIN_NUMBERS,
        veto_containment: float = VETO_CONTAINMENT,
        max_retries: int = MAX_RETRIES,
        max_indexed_anchors: int = MAX_INDEXED_ANCHORS,
    ) -> None:
        if window <= 0:
            raise ValueError("window must be positive")
        if bands * rows > num_perm:
            raise ValueError(f"bands * rows ({bands * rows}) exceeds num_perm ({num_perm})")
        self.redis = redis
        self.keys = keys
        self.window = float(window)
        self.index_ttl = math.ceil(self.window)
        self.cluster_ttl = math.ceil(2 * self.window)
        self.num_perm = num_perm
        self.bands = bands
        self.rows = rows
        self.shingle_size = shingle_size
        self.min_tokens = min_tokens
        self.text_threshold = text_threshold
        self.anchor_jaccard = anchor_jaccard
        self.anchor_min_shared = anchor_min_shared
        self.anchor_min_strong = anchor_min_strong
        self.veto_min_numbers = veto_min_numbers
        self.veto_containment = veto_containment
        self.max_retries = max_retries
        self.max_indexed_anchors = max_indexed_anchors
        self.round_trips = 0  # Redis round trips so far (pipelines and script calls), for tests and benchmarks
        self._lookup: AsyncScript = redis.register_script(_LOOKUP)
        self._commit: AsyncScript = redis.register_script(_COMMIT)

    # --- public ------------------------------------------------------------------------------------

    async def assign(self, item: Item) -> ClusterResult:
        """The cluster of one item (see ``assign_many``)."""
        return (await self.assign_many([item]))[0]

    async def assign_many(self, items: Sequence[Item]) -> list[ClusterResult]:
        """The cluster of each item, in order; items later in the list see the earlier ones."""
        if not items:
            return []
        prepared = self.prepare_many(items)
        results: list[ClusterResult | None] = [None] * len(items)
        pending = list(range(len(items)))
        for attempt in range(self.max_retries + 1):
            plans, versions = await self._plan([prepared[index] for index in pending])
            replies = await self._commit_plans(plans, versions, force=attempt == self.max_retries)
            retry: list[int] = []
            missing: list[int] = []
            for index, reply in zip(pending, replies, strict=True):
                if reply is None:
                    retry.append(index)
                    continue
                results[index] = reply
                if not reply.first_item_id:
                    missing.append(index)
            if missing:  # a cluster record that expired under its members, or a forced commit's late find
                await self._fill_cluster_info(results, missing, prepared)
            if not retry:
                break
            pending = retry
        done = [result for result in results if result is not None]
        if len(done) != len(results):  # pragma: no cover - a forced commit never conflicts
            raise RuntimeError("story clusters: items left unassigned after the forced commit")
        return done

    async def members(self, cluster_id: str) -> list[tuple[str, float]]:
        """A cluster's member item ids with their times, oldest first."""
        rows: list[Any] = await self.redis.zrange(self.keys.cluster_members(cluster_id), 0, -1, withscores=True)
        return [(_text(member), float(score)) for member, score in rows]

    async def info(self, cluster_id: str) -> dict[str, Any] | None:
        """``{"first": item id, "first_seen": unix time, "size": n}``, or None for an unknown cluster."""
        raw = await self.redis.hgetall(self.keys.cluster(cluster_id))
        if not raw:
            return None
        fields = {_text(name): _text(value) for name, value in raw.items()}
        return {
            "first": fields.get("first"),
            "first_seen": float(fields["first_seen"]) if "first_seen" in fields else None,
            "size": int(fields.get("size", 0)),
        }

    # --- pure preparation --------------------------------------------------------------------------

    def prepare(self, item: Item) -> _Prepared:
        """Signatures, anchors and provenance keys of one item (CPU only)."""
        return self.prepare_many([item])[0]

    def prepare_many(self, items: Sequence[Item]) -> list[_Prepared]:
        """``prepare`` for a batch: the batch's shingles are hashed and MinHashed together (numpy)."""
        prepared: list[_Prepared] = []
        texts: list[list[str]] = []  # the token lists of the items with enough tokens for a signature
        signed: list[_Prepared] = []  # and those items
        enough = max(self.min_tokens, self.shingle_size)
        window = self.window
        limit = self.max_indexed_anchors
        for item in items:
            t = (item.published_at or item.collected_at).timestamp()
            ref = item_ref(item.id)
            origins, own = provenance(item)
            if own or origins:
                lookups = origins + [key for key in own if "@" not in key]
                marks = [key for key in own if "@" in key]
            else:
                lookups, marks = [], []
            if item.event == "delete":
                item_anchors, facts = _NO_ANCHORS, _NO_ANCHORS
                strong: list[str] = []
                words: list[str] = []
            else:
                text, how = _words(item.text)
                words = text.split()  # the view's tokens before fold: _WORD_HASHES folds them
                item_anchors, facts, strong = _anchor_parts(item, _view_numbers(text, how), limit)
            one = _Prepared(
                item, ref, ref.hex(), t, math.floor(t / window), item_anchors, facts, strong, lookups, marks
            )
            prepared.append(one)
            if len(words) >= enough:
                texts.append(words)
                signed.append(one)
        if texts:
            sigs = _signatures(texts, self.num_perm, self.shingle_size)
            width = 8 * self.bands
            blob = _band_matrix(sigs, self.bands, self.rows) if width else b""
            cut = _band_cutter(self.bands)
            for row, one in enumerate(signed):
                one.sig = sigs[row]
                one.matrix = sigs
                one.row = row
                one.band_blob = blob[row * width : (row + 1) * width]
                one.bands = cut.unpack_from(blob, row * width)
        return prepared

    # --- planning ----------------------------------------------------------------------------------

    async def _read(self, batch: Sequence[_Prepared]) -> tuple[list[_Found], dict[bytes, _Record], dict[int, int]]:
        """Round trip 1: the lookup script's hits for every item of the batch, with the candidates' records."""
        key_index: dict[str, int] = {}
        around: dict[int, list[int]] = {}  # epoch -> KEYS index of the items hash of it and its neighbours
        epoch_of: dict[int, int] = {}  # KEYS index of an items hash -> its epoch

        def items_key(epoch: int) -> int:
            items_key = self.keys.cluster_items(epoch)
            if items_key not in key_index:
                key_index[items_key] = len(key_index) + 1
                epoch_of[key_index[items_key]] = epoch
                for name in (
                    self.keys.cluster_bands(epoch),
                    self.keys.cluster_anchors(epoch),
                    self.keys.cluster_origins(epoch),
                ):
                    key_index[name] = len(key_index) + 1
            return key_index[items_key]

        entries: list[Any] = []
        for prepared in batch:
            epoch = prepared.epoch
            bases = around.get(epoch)
            if bases is None:
                bases = around[epoch] = [items_key(epoch - 1), items_key(epoch), items_key(epoch + 1)]
            entries.append((bases, len(prepared.bands), prepared.strong, prepared.lookups))
        args = [
            _encoder.encode(entries),
            b"".join([prepared.ref for prepared in batch]),
            b"".join([prepared.band_blob for prepared in batch]),
        ]
        replies = await self._lookup(keys=list(key_index), args=args)
        self.round_trips += 1

        flat = replies[-3]  # the write version of each items hash that exists (0 for those that do not)
        versions = dict.fromkeys(epoch_of.values(), 0)
        versions.update((epoch_of[int(flat[i])], int(flat[i + 1])) for i in range(0, len(flat), 2))
        records: dict[bytes, _Record] = {}
        for ref, raw in zip(replies[-2], replies[-1], strict=True):
            if (record := _decode_record(raw)) is not None:
                record.ref = ref
                records[ref] = record
        found: list[_Found] = []
        for prepared, (own, band_refs, anchor_refs, origin_hits) in zip(batch, replies[:-3], strict=True):
            hit = _Found(_decode_record(own) if own else None, band_refs, anchor_refs)
            if origin_hits:
                origins: dict[str, str] = {}
                hit.origins = origins
                hit.origin_ids = origin_hits[1::2]
                provenance_keys = prepared.lookups
                for offset in range(0, len(origin_hits), 2):
                    origins.setdefault(provenance_keys[int(origin_hits[offset])], _text(origin_hits[offset + 1]))
            found.append(hit)
        return found, records, versions

    def _signature_matrix(self, batch: Sequence[_Prepared], records: dict[bytes, _Record]) -> np.ndarray:
        """The signatures a planning round compares: the batch's (``_Prepared.row``), then the records read.

        Each decoded record of ``num_perm`` minima gets the next row (``_Record.row``).
        """
        width = self.num_perm
        own = next((prepared.matrix for prepared in batch if prepared.row >= 0), None)
        if own is None or own.ndim != 2 or own.shape[1] != width:
            own = np.zeros((0, width), np.uint32)
        stored = [record for record in records.values() if len(record.sig) == 4 * width]
        if not stored:
            return own
        for row, record in enumerate(stored, start=len(own)):
            record.row = row
        read = np.frombuffer(b"".join([record.sig for record in stored]), dtype=np.uint32).reshape(-1, width)
        return np.concatenate((own, read))

    async def _plan(self, batch: Sequence[_Prepared]) -> tuple[list[_Plan], dict[int, int]]:
        """Decide each item's cluster, in order, against the index plus the batch's earlier items.

        Also returns the write version of each epoch the lookup read (see ``_COMMIT``).
        """
        found, records, versions = await self._read(batch)
        sigs = self._signature_matrix(batch, records)
        # What the commit will have written by the time it reaches each item (same rules as the script).
        local_refs: dict[bytes, str] = {}
        local_bands: dict[bytes, bytes] = {}
        local_anchors: dict[str, bytes] = {}
        local_origins: dict[str, str] = {}
        plans: list[_Plan] = []
        for prepared, hit in zip(batch, found, strict=True):
            plan = self._decide(prepared, hit, records, sigs, local_refs, local_bands, local_anchors, local_origins)
            plans.append(plan)
            if plan.mode in ("self", "skip"):
                local_refs.setdefault(prepared.ref, plan.cluster_id)
                continue
            cluster_id = plan.cluster_id
            local_refs[prepared.ref] = cluster_id
            local_bands.update(dict.fromkeys(prepared.bands, prepared.ref))
            local_anchors.update(dict.fromkeys(prepared.strong, prepared.ref))
            for key in chain(prepared.lookups, prepared.marks):
                local_origins.setdefault(key, cluster_id)
            records[prepared.ref] = _Record(
                prepared.t,
                cluster_id,
                b"",
                _NO_RAW,
                prepared.item.id,
                prepared.ref,
                prepared.row,
                prepared.anchors,
                prepared.facts,
            )
        return plans, versions

    def _decide(
        self,
        prepared: _Prepared,
        hit: _Found,
        records: dict[bytes, _Record],
        sigs: np.ndarray,
        local_refs: dict[bytes, str],
        local_bands: dict[bytes, bytes],
        local_anchors: dict[str, bytes],
        local_origins: dict[str, str],
    ) -> _Plan:
        if prepared.ref in local_refs:
            return _Plan(prepared, "self", local_refs[prepared.ref], "self")
        if hit.record is not None:
            return _Plan(prepared, "self", hit.record.cluster_id, "self")
        if prepared.item.event == "delete":
            return _Plan(prepared, "skip", prepared.cluster_id, "self")

        # 1. provenance: what it forwards or quotes first, then its own keys (a forward seen earlier).
        origins = hit.origins or _NO_ORIGINS
        for key in prepared.lookups:
            cluster_id = origins.get(key) or local_origins.get(key)
            if cluster_id:
                return self._planned(prepared, "join", cluster_id, "forward")

        # 2. text: the best verified LSH candidate.
        band_refs = set(hit.band_refs)
        if local_bands and prepared.bands:
            band_refs.update(filter(None, map(local_bands.get, prepared.bands)))
        if prepared.sig.size and band_refs:
            best = self._best_text(prepared, band_refs, records, sigs)
            if best is not None:
                return self._planned(prepared, "join", best[1].cluster_id, "text", score=best[0], via=best[1].item_id)

        # 3. anchors: the best candidate among the last items written under each strong anchor.
        anchor_refs = set(hit.anchor_refs)
        if local_anchors and prepared.strong:
            anchor_refs.update(filter(None, map(local_anchors.get, prepared.strong)))
        if prepared.strong and anchor_refs:
            best = self._best_anchors(prepared, anchor_refs, records)
            if best is not None:
                return self._planned(
                    prepared, "join", best[1].cluster_id, "anchors", score=best[0], via=best[1].item_id
                )

        plan = self._planned(prepared, "new", prepared.cluster_id, "new")
        plan.seen_refs = _joined(band_refs | anchor_refs, _REF_SIZE)
        plan.seen_ids = _joined(set(hit.origin_ids), _CLUSTER_ID_SIZE) if hit.origin_ids else b""
        return plan

    def _candidates(self, prepared: _Prepared, refs: set[bytes], records: dict[bytes, _Record]) -> list[_Record]:
        """The candidates' records: those read or planned, within the window, other than the item itself."""
        t, window = prepared.t, self.window
        refs.discard(prepared.ref)
        return [record for record in map(records.get, refs) if record is not None and abs(record.t - t) <= window]

    def _best_text(
        self, prepared: _Prepared, refs: set[bytes], records: dict[bytes, _Record], sigs: np.ndarray
    ) -> tuple[float, _Record] | None:
        """The best-scoring text candidate at least ``text_threshold`` that the number veto lets through.

        Candidates are tried best first (ties: ``_before``), so the veto runs only until one passes.
        """
        candidates = self._candidates(prepared, refs, records)
        if not candidates:
            return None
        sig = prepared.sig
        size = sig.size
        rows = [record.row for record in candidates]
        counts: list[int]
        if size != self.num_perm or min(rows) < 0:  # pragma: no cover - a signature of another length
            counts = [
                round(estimate_jaccard(sig, sigs[r.row] if r.row >= 0 else np.frombuffer(r.sig, np.uint32)) * size)
                for r in candidates
            ]
        elif len(rows) == 1:
            counts = [int(np.count_nonzero(sigs[rows[0]] == sig))]
        else:  # every candidate's minima in one numpy step
            counts = np.add.reduce(sigs[rows] == sig, axis=1).tolist()
        while True:
            count = max(counts)
            score = count / size
            if count < 0 or score < self.text_threshold:
                return None
            position = counts.index(count)
            best = candidates[position]
            if counts.count(count) > 1:  # a tie: the older record
                for other, other_count in enumerate(counts):
                    if other_count == count and _before(candidates[other], best):
                        best, position = candidates[other], other
            if not _facts_disagree(prepared.facts, best.facts, self.veto_min_numbers, self.veto_containment):
                return score, best
            counts[position] = -1

    def _best_anchors(
        self, prepared: _Prepared, refs: set[bytes], records: dict[bytes, _Record]
    ) -> tuple[float, _Record] | None:
        """The best-scoring candidate the anchor rules link."""
        best: tuple[float, _Record] | None = None
        for record in self._candidates(prepared, refs, records):
            linked = anchor_score(
                prepared.anchors,
                record.anchors,
                jaccard=self.anchor_jaccard,
                min_shared=self.anchor_min_shared,
                min_strong=self.anchor_min_strong,
            )
            if linked is None:
                continue
            if best is None or linked > best[0] or (linked == best[0] and _before(record, best[1])):
                best = (linked, record)
        return best

    def _planned(
        self,
        prepared: _Prepared,
        mode: Literal["new", "join"],
        cluster_id: str,
        how: MatchedBy,
        *,
        score: float | None = None,
        via: str | None = None,
    ) -> _Plan:
        record = _record_encoder.encode(
            (prepared.t, cluster_id, prepared.sig.tobytes(), sorted(prepared.anchors), prepared.item.id)
        )
        return _Plan(prepared, mode, cluster_id, how, score, via, record)

    # --- commit ------------------------------------------------------------------------------------

    async def _commit_plans(
        self, plans: Sequence[_Plan], versions: dict[int, int], *, force: bool
    ) -> list[ClusterResult | None]:
        """Round trip 2: the compare-and-set script. None marks an item to plan again."""
        results: list[ClusterResult | None] = [None] * len(plans)
        key_index: dict[str, int] = {}
        epochs: dict[int, list[int]] = {}

        def index(key: str) -> int:
            if key not in key_index:
                key_index[key] = len(key_index) + 1
            return key_index[key]

        entries: list[Any] = []
        sent: list[int] = []
        refs: list[bytes] = []
        records: list[bytes] = []
        bands: list[bytes] = []
        seen_refs: list[bytes] = []
        seen_ids: list[bytes] = []
        keys = self.keys
        for position, plan in enumerate(plans):
            prepared = plan.prepared
            cluster_id = plan.cluster_id
            if plan.mode == "skip":
                results[position] = ClusterResult(cluster_id, prepared.item.id, False, 0, "self")
                continue
            epoch = prepared.epoch
            indexes = epochs.get(epoch)
            if indexes is None:
                indexes = epochs[epoch] = [
                    index(keys.cluster_items(epoch)),
                    index(keys.cluster_bands(epoch)),
                    index(keys.cluster_anchors(epoch)),
                    index(keys.cluster_origins(epoch)),
                ]
            cluster_keys = [*indexes, index(keys.cluster(cluster_id)), index(keys.cluster_members(cluster_id))]
            refs.append(prepared.ref)
            if plan.mode == "self":
                entries.append(
                    (plan.mode, repr(prepared.t), cluster_id, cluster_keys, prepared.item.id, 0, 0, (), (), (), 0, 0)
                )
            else:
                records.append(plan.record)
                bands.append(prepared.band_blob)
                seen_refs.append(plan.seen_refs)
                seen_ids.append(plan.seen_ids)
                entries.append(
                    (
                        plan.mode,
                        repr(prepared.t),
                        cluster_id,
                        cluster_keys,
                        prepared.item.id,
                        len(plan.record),
                        len(prepared.bands),
                        prepared.strong,
                        prepared.lookups,
                        prepared.marks,
                        len(plan.seen_refs) // _REF_SIZE,
                        len(plan.seen_ids) // _CLUSTER_ID_SIZE,
                    )
                )
            sent.append(position)
        if not sent:
            return results
        # The version shortcut only when every plan that writes is in one epoch: then what the batch
        # planned (``local_bands``: the last earlier writer of a band, whatever its epoch) is exactly
        # what its own writes leave in that epoch's hashes. Across epochs an earlier writer in the
        # item's epoch can be shadowed by a later one elsewhere; the full checks catch that (a retry).
        writing = {plans[position].prepared.epoch for position in sent if plans[position].mode != "self"}
        read_versions: list[int] = []
        if len(writing) == 1 and (epoch := writing.pop()) in versions:
            read_versions = [epochs[epoch][0], versions[epoch]]
        args = [
            self.index_ttl,
            self.cluster_ttl,
            "1" if force else "0",
            _encoder.encode(entries),
            b"".join(refs),
            b"".join(records),
            b"".join(bands),
            b"".join(seen_refs),
            b"".join(seen_ids),
            _encoder.encode(read_versions),
        ]
        replies = await self._commit(keys=list(key_index), args=args)
        self.round_trips += 1
        for position, reply in zip(sent, replies, strict=True):
            status = _text(reply[0])
            if status == "conflict":
                continue
            plan = plans[position]
            if status == "late":  # a forced commit found the item recorded meanwhile
                record = _decode_record(reply[1])
                cluster_id = record.cluster_id if record is not None else plan.cluster_id
                results[position] = ClusterResult(cluster_id, "", False, 0, "self")
                continue
            results[position] = ClusterResult(  # the cluster id is the plan's: the script answers what it was sent
                plan.cluster_id,
                _text(reply[2]) if reply[2] else "",
                status == "new",
                int(reply[3] or 0),
                plan.matched_by,
                plan.score,
                plan.via,
            )
        return results

    async def _fill_cluster_info(
        self, results: list[ClusterResult | None], positions: Sequence[int], prepared: Sequence[_Prepared]
    ) -> None:
        """Read ``first`` and ``size`` the commit could not return (the item itself when the record is gone)."""
        pipe = self.redis.pipeline(transaction=False)
        for position in positions:
            result = results[position]
            assert result is not None
            pipe.hmget(self.keys.cluster(result.cluster_id), ["first", "size"])
        replies = await pipe.execute()
        self.round_trips += 1
        for position, (first, size) in zip(positions, replies, strict=True):
            result = results[position]
            assert result is not None
            results[position] = ClusterResult(
                cluster_id=result.cluster_id,
                first_item_id=_text(first) if first else prepared[position].item.id,
                is_new=result.is_new,
                size=int(size or 0),
                matched_by=result.matched_by,
                score=result.score,
                via=result.via,
            )


def _text(value: bytes | str) -> str:
    return value.decode("utf-8", "surrogatepass") if isinstance(value, bytes) else value
