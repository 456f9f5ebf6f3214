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
against one verified candidate (the best-scoring one).

Redis layout (key names in ``monitor.bus.keys.Keys``). The index is
bucketed by *epochs* of the item's time, ``epoch = floor(t / window)``, t = ``published_at`` or
else ``collected_at``:

* ``{p}:cluster:index:{epoch}:items`` hash: item ref (8-byte blake2b of the item id) -> msgpack
  ``[t, cluster_id, minhash bytes, anchors, item_id]``. Serves idempotency (an item already here is
  answered with ``matched_by="self"``: replays, redeliveries, edits) and candidate verification.
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

Races between normalizers: the cluster id is the hex blake2b (8 bytes) of the first item's id, so
replays agree; the commit script is a compare-and-set. An item that decided to start a new cluster
is written only if none of its band, anchor and provenance fields has meanwhile been taken by an
item it did not see; otherwise (and when the item itself was recorded meanwhile) it is planned again
with fresh reads (two more round trips; only under real races). After ``max_retries`` such rounds
it is committed as planned. A race can still split a story when the two items' times fall in
adjacent epochs (the compare-and-set checks the item's own epoch).

Every key a script touches is passed in ``KEYS``; under Redis Cluster they would need one hash tag
(e.g. ``{prefix:cluster}``) to share a slot. The client must return bytes (``decode_responses`` off,
as ``monitor.bus.redis`` connects).
"""

from __future__ import annotations

import hashlib
import math
import re
import zlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, Literal

import msgspec
import numpy as np
from redis.asyncio import Redis
from redis.commands.core import AsyncScript

from monitor.alerting.matcher import match_view
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
_CHUNK = 4096  # shingles per step, so a long article never needs a huge temporary matrix


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


def _join_groups(match: re.Match[str]) -> str:
    start = match.start()
    if start and match.string[start - 1] in "0123456789.,":  # the tail of a longer number: leave it
        return match.group()
    return _NON_DIGIT.sub("", match.group())


def view(text: str) -> str:
    """The padded match view (``matcher.match_view``) of ``text`` with URLs removed and digit groups joined."""
    if any(marker in text for marker in _URL_MARKERS):
        text = _URL.sub(" ", text)
    return match_view(_GROUPED.sub(_join_groups, text))


def tokens(text: str) -> list[str]:
    """The folded word tokens shingles are built from."""
    return view(text).split()


def numbers_in_view(folded: str) -> list[int]:
    """The whole-token numbers of a ``view``: ASCII digits, and English ordinals ("92nd" -> 92)."""
    return [int(found) for found in _VIEW_NUMBER.findall(folded)]


def numbers(text: str) -> list[int]:
    """Every number in ``text`` outside URLs and not glued to letters, digit groups joined ("3 574" -> 3574)."""
    return numbers_in_view(view(text))


def is_strong_number(value: int) -> bool:
    """A number specific enough to tie two texts: >= 100, not a year, not a round hundred below 10 000."""
    if value < 100 or 1900 <= value <= 2100:
        return False
    return not (value < 10_000 and value % 100 == 0)


def is_strong(anchor: str) -> bool:
    """Whether an anchor is a strong number (only those are indexed for lookup)."""
    return anchor.startswith("n:") and is_strong_number(int(anchor[2:]))


def anchors(item: Item, *, folded: str | None = None) -> set[str]:
    """The language-independent tokens of an item: numbers >= 10 and entity ids.

    ``folded`` is the item text's ``view`` when the caller has it already.
    """
    found = {f"n:{value}" for value in numbers_in_view(view(item.text) if folded is None else folded) if value >= 10}
    entities = item.entities
    for quantity in entities.quantities:
        value = quantity.value
        if math.isfinite(value) and value == int(value) and value >= 10:
            found.add(f"n:{int(value)}")
    found.update(f"place:{place.id}" for place in entities.places if place.id)
    found.update(f"unit:{unit.id}" for unit in entities.units if unit.id)
    found.update(f"person:{person.id}" for person in entities.people if person.id)
    return found


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


_EMPTY = np.zeros(0, dtype=np.uint32)


def shingle_hashes(words: Sequence[str], size: int = SHINGLE_SIZE) -> np.ndarray:
    """32-bit hashes (in uint64) of the word ``size``-grams, in order (duplicates kept)."""
    if len(words) < size:
        return np.zeros(0, dtype=np.uint64)
    word_hashes = np.fromiter(
        (zlib.crc32(word.encode("utf-8", "surrogatepass")) for word in words), dtype=np.uint64, count=len(words)
    )
    count = len(words) - size + 1
    rolled = word_hashes[:count].copy()
    for offset in range(1, size):
        rolled = rolled * _ROLL + word_hashes[offset : offset + count]
    return (rolled * _FINAL) >> np.uint64(32)


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
    return signature(shingle_hashes(words, shingle_size), num_perm)


def signature(shingles: np.ndarray, num_perm: int = NUM_PERM) -> np.ndarray:
    """MinHash of a set of 32-bit shingle hashes: per permutation the minimum of ``(a*x + b) >> 32``."""
    a, b = _permutations(num_perm)
    result = np.full(num_perm, np.iinfo(np.uint64).max, dtype=np.uint64)
    for start in range(0, len(shingles), _CHUNK):
        chunk = shingles[None, start : start + _CHUNK]
        np.minimum(result, ((a * chunk + b) >> np.uint64(32)).min(axis=1), out=result)
    return result.astype(np.uint32)


def estimate_jaccard(a: np.ndarray, b: np.ndarray) -> float:
    """The share of equal minima: an unbiased estimate of the shingle sets' Jaccard similarity."""
    if a.size == 0 or a.size != b.size:
        return 0.0
    return float(np.count_nonzero(a == b)) / a.size


def band_hashes(sig: np.ndarray, bands: int = BANDS, rows: int = ROWS) -> list[bytes]:
    """One 8-byte hash per LSH band over the first ``bands * rows`` minima (band number included)."""
    if sig.size < bands * rows:
        return []
    matrix = sig[: bands * rows].astype(np.uint64).reshape(bands, rows)
    acc = (np.arange(1, bands + 1, dtype=np.uint64) ^ _BAND_BASIS) * _BAND_PRIME
    for column in range(rows):
        acc = (acc ^ matrix[:, column]) * _BAND_PRIME
    raw = acc.astype("<u8").tobytes()
    return [raw[offset : offset + 8] for offset in range(0, len(raw), 8)]


# --- provenance ------------------------------------------------------------------------------------


def _channel_ref(channel: str) -> str:
    return "".join(channel.split()).lower().lstrip("@")  # no whitespace: keys travel newline-separated


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
        channels = [_channel_ref(item.channel)]
        if item.channel_id is not None:
            channels.insert(0, str(item.channel_id))
        own.extend(f"tg:{channel}:{item.external_id}" for channel in channels)
        if item.published_at is not None:
            stamp = int(item.published_at.timestamp())
            own.extend(f"tg:{channel}@{stamp}" for channel in channels)
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

# The lookup, one call per batch. ARGV, 5 values per item: the KEYS indexes (comma-separated) of the
# items hash of each epoch to search (the epoch's bands, anchors and origins hashes follow it in KEYS),
# the item ref, its band hashes (8 bytes each, concatenated), strong anchors and provenance keys
# (newline-separated). Reply per item: {own record or false, {kinds, ref, record or false, ...},
# {provenance key position (0-based), cluster id, ...}}; kinds is "b", "a" or "ba" (found by band,
# anchor or both); a candidate's record is sent once per call (false when sent before or gone).
_LOOKUP = """
local sent = {}
local present = {}
local out = {}

local function exists(key)
  local known = present[key]
  if known == nil then
    known = redis.call('EXISTS', key) == 1
    present[key] = known
  end
  return known
end

local function chunks(s, size)
  local parts = {}
  for i = 1, #s, size do parts[#parts + 1] = string.sub(s, i, i + size - 1) end
  return parts
end

local function lines(s)
  local parts = {}
  for part in string.gmatch(s, '[^\\n]+') do parts[#parts + 1] = part end
  return parts
end

local function collect(key, fields, kind, ref, kinds, order)
  if #fields == 0 or not exists(key) then return end
  local values = redis.call('HMGET', key, unpack(fields))
  for i = 1, #fields do
    local v = values[i]
    if v and v ~= ref then
      local seen = kinds[v]
      if not seen then
        kinds[v] = kind
        order[#order + 1] = v
      elseif seen ~= kind and seen ~= 'ba' then
        kinds[v] = 'ba'
      end
    end
  end
end

local n = 0
for base = 1, #ARGV, 5 do
  n = n + 1
  local ref = ARGV[base + 1]
  local bands, anchors, origins = chunks(ARGV[base + 2], 8), lines(ARGV[base + 3]), lines(ARGV[base + 4])
  local own = false
  local hits = {}
  local origin_hits = {}
  for index in string.gmatch(ARGV[base], '%d+') do
    local k = tonumber(index)
    local ikey = KEYS[k]
    if exists(ikey) then
      own = redis.call('HGET', ikey, ref) or own
      local kinds = {}
      local order = {}
      collect(KEYS[k + 1], bands, 'b', ref, kinds, order)
      collect(KEYS[k + 2], anchors, 'a', ref, kinds, order)
      local wanted = {}
      for _, v in ipairs(order) do
        if not sent[v] then wanted[#wanted + 1] = v end
      end
      local got = {}
      if #wanted > 0 then
        local values = redis.call('HMGET', ikey, unpack(wanted))
        for i = 1, #wanted do
          got[wanted[i]] = values[i]
          sent[wanted[i]] = true
        end
      end
      for _, v in ipairs(order) do
        hits[#hits + 1] = kinds[v]
        hits[#hits + 1] = v
        hits[#hits + 1] = got[v] or false
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
  out[n] = {own, hits, origin_hits}
end
return out
"""

# The commit, one call per batch. ARGV[1]: TTL of the index hashes, ARGV[2]: TTL of cluster records
# (seconds); ARGV[3]: "1" to commit without the compare-and-set; then 10 values per plan: a header
# "mode|time|cluster id|K1,K2,K3,K4,K5,K6" (the KEYS indexes of the epoch's items, bands, anchors
# and origins hashes and of the cluster hash and members set), the item ref, the item id, its record,
# its band hashes (8 bytes each, concatenated), strong anchors, provenance keys to check and write and
# provenance keys only to write (newline-separated), and what the plan saw: item refs (8 bytes each,
# concatenated) and cluster ids (16 characters each, concatenated).
# Reply per plan: {mode, cluster_id, first item id, size}, {"conflict"}, or {"late", record} when a
# forced commit finds the item already recorded.
_COMMIT = """
local index_ttl, cluster_ttl = tonumber(ARGV[1]), tonumber(ARGV[2])
local force = ARGV[3] == '1'
local touched = {}
local failed = {}
local out = {}

local function chunks(s, size)
  local parts = {}
  for i = 1, #s, size do parts[#parts + 1] = string.sub(s, i, i + size - 1) end
  return parts
end

local function lines(s)
  local parts = {}
  for part in string.gmatch(s, '[^\\n]+') do parts[#parts + 1] = part end
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

local n = 0
for base = 4, #ARGV, 10 do
  n = n + 1
  local header = {}
  for part in string.gmatch(ARGV[base], '[^|]+') do header[#header + 1] = part end
  local mode, t, cid = header[1], header[2], header[3]
  local k = {}
  for index in string.gmatch(header[4], '%d+') do k[#k + 1] = KEYS[tonumber(index)] end
  local ikey, bkey, akey, okey, ckey, mkey = k[1], k[2], k[3], k[4], k[5], k[6]
  local ref, item_id, record = ARGV[base + 1], ARGV[base + 2], ARGV[base + 3]
  local bands, anchors, origins = chunks(ARGV[base + 4], 8), lines(ARGV[base + 5]), lines(ARGV[base + 6])
  local status = 'ok'
  if mode ~= 'self' and redis.call('HEXISTS', ikey, ref) == 1 then
    status = force and 'late' or 'conflict'
  elseif failed[cid] then
    status = 'conflict'
  elseif mode == 'new' and not force then
    local seen = {}
    for _, v in ipairs(chunks(ARGV[base + 8], 8)) do seen[v] = true end
    for _, v in ipairs(chunks(ARGV[base + 9], 16)) do seen[v] = true end
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
    if mode ~= 'self' then
      redis.call('HSET', ikey, ref, record)
      touched[ikey] = index_ttl
      hset_all(bkey, bands, ref)
      hset_all(akey, anchors, ref)
      for _, f in ipairs(origins) do
        redis.call('HSETNX', okey, f, cid)
        touched[okey] = index_ttl
      end
      for _, f in ipairs(lines(ARGV[base + 7])) do
        redis.call('HSETNX', okey, f, cid)
        touched[okey] = index_ttl
      end
      if redis.call('HSETNX', ckey, 'first', item_id) == 1 then
        redis.call('HSET', ckey, 'first_seen', t)
      end
      if redis.call('ZADD', mkey, 'NX', t, item_id) == 1 then
        redis.call('HINCRBY', ckey, 'size', 1)
      end
      touched[ckey] = cluster_ttl
      touched[mkey] = cluster_ttl
    end
    local info = redis.call('HMGET', ckey, 'first', 'size')
    out[n] = {mode, cid, info[1], tonumber(info[2]) or 0}
  end
end
for key, ttl in pairs(touched) do
  redis.call('EXPIRE', key, ttl)
end
return out
"""


@dataclass(slots=True)
class _Prepared:
    """Everything computed from the item alone (no Redis)."""

    item: Item
    ref: bytes
    cluster_id: str
    t: float
    epoch: int
    sig: np.ndarray
    bands: list[bytes]
    anchors: frozenset[str]
    facts: frozenset[str]
    strong: list[bytes]
    lookups: list[str]  # provenance keys read (and compare-and-set): what it forwards, its own ids
    marks: list[str]  # provenance keys only written: its own date keys, for forward headers without an id


@dataclass(slots=True)
class _Record:
    t: float
    cluster_id: str
    sig: np.ndarray
    anchors: frozenset[str]
    item_id: str
    _facts: frozenset[str] | None = None

    @property
    def facts(self) -> frozenset[str]:
        """``fact_numbers`` of the anchors, computed when a text match first needs the veto."""
        if self._facts is None:
            self._facts = fact_numbers(self.anchors)
        return self._facts


@dataclass(slots=True)
class _Found:
    """What the first read found for one item."""

    record: _Record | None = None
    band_refs: set[bytes] = field(default_factory=set)
    anchor_refs: set[bytes] = field(default_factory=set)
    origins: dict[str, str] = field(default_factory=dict)
    seen: set[bytes] = field(default_factory=set)


@dataclass(slots=True)
class _Plan:
    prepared: _Prepared
    mode: Literal["new", "join", "self", "skip"]
    cluster_id: str
    matched_by: MatchedBy
    score: float | None = None
    via: str | None = None
    record: bytes = b""
    seen: set[bytes] = field(default_factory=set)


_record_encoder = msgspec.msgpack.Encoder()
_record_decoder = msgspec.msgpack.Decoder(tuple[float, str, bytes, list[str], str])
_REF_SIZE = 8
_CLUSTER_ID_SIZE = 2 * _REF_SIZE


def _decode_record(raw: bytes) -> _Record | None:
    try:
        t, cluster_id, sig, anchor_list, item_id = _record_decoder.decode(raw)
    except msgspec.DecodeError:
        return None
    return _Record(t, cluster_id, np.frombuffer(sig, dtype=np.uint32), frozenset(anchor_list), item_id)


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
        prepared = [self.prepare(item) for item in items]
        results: list[ClusterResult | None] = [None] * len(items)
        pending = list(range(len(items)))
        for attempt in range(self.max_retries + 1):
            plans = await self._plan([prepared[index] for index in pending])
            replies = await self._commit_plans(plans, force=attempt == self.max_retries)
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
        when = item.published_at or item.collected_at
        t = when.timestamp()
        ref = item_ref(item.id)
        if item.event == "delete":
            sig, item_anchors, strong = _EMPTY, frozenset[str](), []
        else:
            folded = view(item.text)
            sig = minhash_of(
                folded.split(), num_perm=self.num_perm, shingle_size=self.shingle_size, min_tokens=self.min_tokens
            )
            item_anchors = frozenset(anchors(item, folded=folded))
            strong = [anchor.encode() for anchor in sorted(item_anchors) if is_strong(anchor)]
            strong = strong[: self.max_indexed_anchors]
        origins, own = provenance(item)
        lookups = [*origins, *(key for key in own if "@" not in key)]
        marks = [key for key in own if "@" in key]
        return _Prepared(
            item=item,
            ref=ref,
            cluster_id=ref.hex(),
            t=t,
            epoch=math.floor(t / self.window),
            sig=sig,
            bands=band_hashes(sig, self.bands, self.rows),
            anchors=item_anchors,
            facts=fact_numbers(item_anchors),
            strong=strong,
            lookups=lookups,
            marks=marks,
        )

    # --- planning ----------------------------------------------------------------------------------

    async def _read(self, batch: Sequence[_Prepared]) -> tuple[list[_Found], dict[bytes, _Record]]:
        """Round trip 1: the lookup script's hits for every item of the batch, with the candidates' records."""
        key_index: dict[str, int] = {}
        args: list[Any] = []
        for prepared in batch:
            bases = []
            for epoch in (prepared.epoch - 1, prepared.epoch, prepared.epoch + 1):
                items_key = self.keys.cluster_items(epoch)
                if items_key not in key_index:
                    key_index[items_key] = len(key_index) + 1
                    for name in (
                        self.keys.cluster_bands(epoch),
                        self.keys.cluster_anchors(epoch),
                        self.keys.cluster_origins(epoch),
                    ):
                        key_index[name] = len(key_index) + 1
                bases.append(str(key_index[items_key]))
            args += (
                ",".join(bases),
                prepared.ref,
                b"".join(prepared.bands),
                b"\n".join(prepared.strong),
                "\n".join(prepared.lookups),
            )
        replies = await self._lookup(keys=list(key_index), args=args)
        self.round_trips += 1

        found: list[_Found] = []
        records: dict[bytes, _Record] = {}
        for prepared, (own, hits, origin_hits) in zip(batch, replies, strict=True):
            hit = _Found(record=_decode_record(own) if own else None)
            for offset in range(0, len(hits), 3):
                kinds, ref, raw = hits[offset : offset + 3]
                hit.seen.add(ref)
                if b"b" in kinds:
                    hit.band_refs.add(ref)
                if b"a" in kinds:
                    hit.anchor_refs.add(ref)
                if raw and ref not in records and (record := _decode_record(raw)) is not None:
                    records[ref] = record
            provenance_keys = prepared.lookups
            for offset in range(0, len(origin_hits), 2):
                position, cluster_id = int(origin_hits[offset]), origin_hits[offset + 1]
                hit.origins.setdefault(provenance_keys[position], _text(cluster_id))
                hit.seen.add(cluster_id)
            found.append(hit)
        return found, records

    async def _plan(self, batch: Sequence[_Prepared]) -> list[_Plan]:
        """Decide each item's cluster, in order, against the index plus the batch's earlier items."""
        found, records = await self._read(batch)
        # What the commit will have written by the time it reaches each item (same rules as the script).
        local_refs: dict[bytes, str] = {}
        local_bands: dict[bytes, bytes] = {}
        local_anchors: dict[bytes, bytes] = {}
        local_origins: dict[str, str] = {}
        plans: list[_Plan] = []
        for prepared, hit in zip(batch, found, strict=True):
            plan = self._decide(prepared, hit, records, local_refs, local_bands, local_anchors, local_origins)
            plans.append(plan)
            if plan.mode in ("self", "skip"):
                local_refs.setdefault(prepared.ref, plan.cluster_id)
                continue
            local_refs[prepared.ref] = plan.cluster_id
            for band in prepared.bands:
                local_bands[band] = prepared.ref
            for anchor in prepared.strong:
                local_anchors[anchor] = prepared.ref
            for key in (*prepared.lookups, *prepared.marks):
                local_origins.setdefault(key, plan.cluster_id)
            records[prepared.ref] = _Record(
                prepared.t, plan.cluster_id, prepared.sig, prepared.anchors, prepared.item.id, prepared.facts
            )
        return plans

    def _decide(
        self,
        prepared: _Prepared,
        hit: _Found,
        records: dict[bytes, _Record],
        local_refs: dict[bytes, str],
        local_bands: dict[bytes, bytes],
        local_anchors: dict[bytes, bytes],
        local_origins: dict[str, str],
    ) -> _Plan:
        item = prepared.item
        if prepared.ref in local_refs:
            return _Plan(prepared, "self", local_refs[prepared.ref], "self")
        if hit.record is not None:
            return _Plan(prepared, "self", hit.record.cluster_id, "self")
        if item.event == "delete":
            return _Plan(prepared, "skip", prepared.cluster_id, "self")

        seen = set(hit.seen)
        for band in prepared.bands:
            if band in local_bands:
                seen.add(local_bands[band])
        for anchor in prepared.strong:
            if anchor in local_anchors:
                seen.add(local_anchors[anchor])

        def planned(mode: Literal["new", "join"], cluster_id: str, how: MatchedBy, **extra: Any) -> _Plan:
            record = _record_encoder.encode(
                (prepared.t, cluster_id, prepared.sig.tobytes(), sorted(prepared.anchors), item.id)
            )
            return _Plan(prepared, mode, cluster_id, how, record=record, seen=seen, **extra)

        # 1. provenance: what it forwards or quotes first, then its own keys (a forward seen earlier).
        for key in prepared.lookups:
            cluster_id = hit.origins.get(key) or local_origins.get(key)
            if cluster_id:
                seen.add(cluster_id.encode())
                return planned("join", cluster_id, "forward")

        # 2. text: the best verified LSH candidate.
        if prepared.sig.size:
            refs = set(hit.band_refs)
            refs.update(local_bands[band] for band in prepared.bands if band in local_bands)
            best: tuple[float, _Record] | None = None
            for ref in refs:
                record = records.get(ref)
                if record is None or ref == prepared.ref or abs(record.t - prepared.t) > self.window:
                    continue
                score = estimate_jaccard(prepared.sig, record.sig)
                if score < self.text_threshold or (best is not None and score <= best[0]):
                    continue
                if _facts_disagree(prepared.facts, record.facts, self.veto_min_numbers, self.veto_containment):
                    continue
                best = (score, record)
            if best is not None:
                return planned("join", best[1].cluster_id, "text", score=best[0], via=best[1].item_id)

        # 3. anchors: the best candidate among the last items written under each strong anchor.
        if prepared.strong:
            refs = set(hit.anchor_refs)
            refs.update(local_anchors[anchor] for anchor in prepared.strong if anchor in local_anchors)
            best = None
            for ref in refs:
                record = records.get(ref)
                if record is None or ref == prepared.ref or abs(record.t - prepared.t) > self.window:
                    continue
                linked = anchor_score(
                    prepared.anchors,
                    record.anchors,
                    jaccard=self.anchor_jaccard,
                    min_shared=self.anchor_min_shared,
                    min_strong=self.anchor_min_strong,
                )
                if linked is not None and (best is None or linked > best[0]):
                    best = (linked, record)
            if best is not None:
                return planned("join", best[1].cluster_id, "anchors", score=best[0], via=best[1].item_id)

        return planned("new", prepared.cluster_id, "new")

    # --- commit ------------------------------------------------------------------------------------

    async def _commit_plans(self, plans: Sequence[_Plan], *, force: bool) -> list[ClusterResult | None]:
        """Round trip 2: the compare-and-set script. None marks an item to plan again."""
        results: list[ClusterResult | None] = [None] * len(plans)
        key_index: dict[str, int] = {}

        def index(key: str) -> int:
            if key not in key_index:
                key_index[key] = len(key_index) + 1
            return key_index[key]

        args: list[Any] = [self.index_ttl, self.cluster_ttl, "1" if force else "0"]
        sent: list[int] = []
        for position, plan in enumerate(plans):
            prepared = plan.prepared
            if plan.mode == "skip":
                results[position] = ClusterResult(plan.cluster_id, prepared.item.id, False, 0, "self")
                continue
            epoch = prepared.epoch
            writes = plan.mode != "self"
            seen = sorted(plan.seen) if plan.mode == "new" else []
            indexes = ",".join(
                str(index(name))
                for name in (
                    self.keys.cluster_items(epoch),
                    self.keys.cluster_bands(epoch),
                    self.keys.cluster_anchors(epoch),
                    self.keys.cluster_origins(epoch),
                    self.keys.cluster(plan.cluster_id),
                    self.keys.cluster_members(plan.cluster_id),
                )
            )
            args += (
                f"{plan.mode}|{prepared.t!r}|{plan.cluster_id}|{indexes}",
                prepared.ref,
                prepared.item.id,
                plan.record,
                b"".join(prepared.bands) if writes else b"",
                b"\n".join(prepared.strong) if writes else b"",
                "\n".join(prepared.lookups) if writes else "",
                "\n".join(prepared.marks) if writes else "",
                b"".join(value for value in seen if len(value) == _REF_SIZE),
                b"".join(value for value in seen if len(value) == _CLUSTER_ID_SIZE),
            )
            sent.append(position)
        if not sent:
            return results
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
            results[position] = ClusterResult(
                cluster_id=_text(reply[1]),
                first_item_id=_text(reply[2]) if reply[2] else "",
                is_new=status == "new",
                size=int(reply[3] or 0),
                matched_by=plan.matched_by,
                score=plan.score,
                via=plan.via,
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
