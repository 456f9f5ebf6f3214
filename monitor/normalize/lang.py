"""Language of an item, so alert rules, routing and dashboards can filter by it.

The hard part for this project is Ukrainian versus Russian: short posts, Russian posts quoting
Ukrainian place names (with і/ї), Ukrainian posts that happen to use none of і/ї/є/ґ. Letters alone
cannot settle it, so the decision is py3langid's naive Bayes model (restricted to the candidates that
share the text's script) plus a small amount of our own evidence for the Cyrillic candidates: function
words and letters that only one of the languages uses.

Speed: py3langid walks its n-gram automaton one byte at a time in Python (~100 µs for a 600-character
Cyrillic post). The automaton is an Aho-Corasick machine: its state after any byte is the longest
suffix of the input read so far that is a node of its n-gram trie, so if the trie is ``w`` bytes deep
that state is also the state reached by reading just the last ``w`` bytes from the start state. This
module measures ``w`` when it loads the model, computes all states at once with numpy ``w`` lookups
at a time, then scores exactly as py3langid does. The fast path is also checked against py3langid's
own feature counter at load time and is switched off (falling back to ``LanguageIdentifier.rank``)
if anything disagrees.

Loading takes ~1 s and ~140 MB (mostly the two lookup tables), once per process, on the first call.
"""

from __future__ import annotations

import logging
import os
import re
import threading
import unicodedata
from collections import Counter
from typing import Any

import numpy as np
import numpy.typing as npt
from py3langid.langid import MODEL_FILE, LanguageIdentifier, visit_counts

__all__ = ["LANGUAGES", "UNDETERMINED", "detect_language"]

log = logging.getLogger(__name__)

UNDETERMINED = "und"
#: Candidate languages (ISO 639-1). Anything else is reported as the closest of these.
LANGUAGES: tuple[str, ...] = ("en", "uk", "ru", "de", "be", "pl", "bg", "fr", "es", "it")
_CYRILLIC_LANGS: tuple[str, ...] = ("uk", "ru", "be", "bg")
_LATIN_LANGS: tuple[str, ...] = ("en", "de", "pl", "fr", "es", "it")

#: Fewer letters (Latin or Cyrillic) than this in the analysed sample gives "und".
MIN_LETTERS = 10

# Bounds on the depth of py3langid's n-gram trie (measured when the model is loaded: 6 for the model
# shipped with py3langid 0.4) for which the fast path is used.
_MIN_WINDOW, _MAX_WINDOW = 3, 8

# --- letter counting, on UTF-8 bytes (bytes.translate runs in C) ------------------------------------
_ASCII_LETTERS = bytes(range(ord("A"), ord("Z") + 1)) + bytes(range(ord("a"), ord("z") + 1))
_NOT_ASCII_LETTER = bytes(b for b in range(256) if b not in _ASCII_LETTERS)
# Counting the UTF-8 lead bytes of U+00C0..U+024F (Latin-1 letters, Latin Extended-A/B), of
# U+0400..U+04FF (Cyrillic), and of every other non-ASCII character: delete all other bytes, take len.
_NOT_LATIN_EXT_LEAD = bytes(b for b in range(256) if not 0xC3 <= b <= 0xC9)
_NOT_CYRILLIC_LEAD = bytes(b for b in range(256) if not 0xD0 <= b <= 0xD3)
_NOT_LEAD = bytes(range(0xC0))

# Links, e-mail addresses, @mentions and #hashtags say nothing about the language of the text.
_URL_RE = re.compile(r"(?:https?://|www\.)\S+|\S+@\S+\.\w+|[@#]\w+/?")

# --- our own Cyrillic evidence ----------------------------------------------------------------------


def _word_set(words: str) -> frozenset[str]:
    return frozenset(words.split())


# Frequent function words of each candidate. A word is listed under every candidate in which it is a
# common word (so "але" is Ukrainian and Belarusian, "как" Russian and Bulgarian) and words common to
# all of them ("на", "в", "не") are left out. Distinct words present count, not occurrences.
_STOPWORDS: dict[str, frozenset[str]] = {
    "uk": _word_set(
        "що це та і й від які який яка також його її був була були але щоб чи або вже ще тому коли "
        "після під між біля поблизу де як ні він вона вони ми ви їх їм цього цей ця ці року році "
        "сьогодні вчора зараз може можуть буде будуть немає є зі із своїх свої дуже тільки лише понад "
        "щодо проти разом наразі повідомив повідомила повідомили заявив заявила зазначив внаслідок області"
    ),
    "ru": _word_set(
        "что это от также который которая которые был была были но чтобы или уже ещё еще поэтому "
        "когда после между возле около где как нет он она они мы вы их им этого этот эта эти года году "
        "сегодня вчера сейчас может могут будет будут и со своих свои очень только лишь более против "
        "вместе сообщил сообщила сообщили заявил заявила отметил результате области"
    ),
    "be": _word_set(
        "што гэта ад таксама якая якія быў была былі каб ці ўжо яшчэ калі пасля праз пад паміж дзе ён "
        "яна яны мы вы іх ім гэтага гэты гэтая гэтыя года годзе людзі сёння учора зараз можа будзе і "
        "але або як ў"
    ),
    "bg": _word_set(
        "че това от също който която които беше бяха но или вече още когато след през между къде как "
        "така ние вие им този тази тези година днес вчера сега може ще са е и със във против"
    ),
}
# Letters used by only some of the Cyrillic candidates. Counted (per occurrence) in lower-case words
# only, so that a Russian post naming "Авдіївка" or "Київ" does not look Ukrainian.
_LETTERS: dict[str, str] = {"uk": "іїєґ", "ru": "ыэъё", "be": "ўіыэё", "bg": "ъ"}
_FORBIDDEN: dict[str, str] = {"uk": "ыэъёў", "ru": "іїєґў", "be": "иїєґщъ", "bg": "ыэёіїєґў"}
_EVIDENCE_LETTERS = frozenset("".join(_LETTERS.values()) + "".join(_FORBIDDEN.values()))
# A word that starts with a lower-case Cyrillic letter (so names and acronyms are left out).
_LOWER_CYRILLIC_WORD_RE = re.compile(r"(?<![\w'])[а-яёіїєґўѝ][а-яёіїєґўѝ']*")
# Weights, in the model's log-likelihood units: each distinct function word and each distinctive letter
# adds to its language; each letter the language does not have subtracts.
_STOPWORD_WEIGHT = 6.0
_LETTER_WEIGHT = 4.0
_FORBIDDEN_WEIGHT = 8.0
# Our evidence is only consulted when the model's best two Cyrillic candidates are closer than this
# (short or mixed posts; on a few sentences of running text the model's margin is in the hundreds),
# and only over the first _EVIDENCE_CHARS characters.
_EVIDENCE_GATE = 120.0
_EVIDENCE_CHARS = 400


class _Model:
    """The candidate columns of py3langid's model and the automaton tables of the fast path.

    Built once per process. Fast-path tables, indexed by "row offset of a state + next byte":
    ``step`` holds the row offset of the next state, ``emit`` the feature id the next state emits
    (-1 for none) and ``pair`` the row offset reached from the start state after two bytes
    ``(b0 << 8) | b1``. Row offsets are int64 so numpy indexes with them without a conversion pass.
    """

    def __init__(self) -> None:
        ident = LanguageIdentifier.from_model_file(MODEL_FILE)
        classes = list(ident.nb_classes)
        full_ptc = np.asarray(ident.nb_ptc)
        full_pc = np.asarray(ident.nb_pc, dtype=np.float32)
        self.tables: dict[tuple[str, ...], tuple[npt.NDArray[np.float32], npt.NDArray[np.float32]]] = {}
        for langs in (_CYRILLIC_LANGS, _LATIN_LANGS):
            cols = [classes.index(lang) for lang in langs]
            self.tables[langs] = (np.ascontiguousarray(full_ptc[:, cols], dtype=np.float32), full_pc[cols])
        del full_ptc, full_pc
        self.fallback: Any = None
        try:
            self._build_fast_path(ident)
            ok = self._self_check(ident)
        except Exception:  # an incompatible py3langid: use its public API instead
            log.warning("py3langid fast path unavailable; using LanguageIdentifier.rank", exc_info=True)
            ok = False
        if not ok:
            ident.set_languages(list(LANGUAGES))
            self.fallback = ident
            self.step = self.emit = self.pair = np.empty(0, dtype=np.int64)

    def _build_fast_path(self, ident: Any) -> None:
        nextmove = np.asarray(ident.tk_nextmove)  # state -> row: tk_row; (row << 8) + byte -> next state
        rowbase = np.asarray(ident.tk_row, dtype=np.int64) << 8
        output = np.asarray(ident.tk_output, dtype=np.int32)
        byte = np.arange(256, dtype=np.int64)
        # depth of the trie = the longest shortest path from the start state (state 0), by BFS
        seen = np.zeros(len(rowbase), dtype=bool)
        seen[0] = True
        frontier = np.zeros(1, dtype=np.int64)
        depth = -1
        while frontier.size:
            depth += 1
            targets = nextmove[(rowbase[frontier][:, None] + byte[None, :]).ravel()]
            frontier = np.unique(targets[~seen[targets]])
            seen[frontier] = True
        if not _MIN_WINDOW <= depth <= _MAX_WINDOW:
            raise ValueError(f"n-gram trie depth {depth} outside [{_MIN_WINDOW}, {_MAX_WINDOW}]")
        self.window = depth
        self.start = int(rowbase[0])
        self.step = rowbase[nextmove]
        self.emit = output[nextmove]
        after_one = self.step[self.start + byte]
        self.pair = self.step[(after_one[:, None] + byte[None, :]).ravel()]

    def features(self, data: bytes) -> npt.NDArray[np.int32]:
        """Feature ids the automaton emits over ``data`` (the multiset py3langid's visit_counts counts)."""
        n, window = len(data), self.window
        step, emit = self.step, self.emit
        head: list[int] = []
        offset = self.start
        for byte in data[: window - 1]:  # the first bytes have less than a window of context
            head.append(int(emit[offset + byte]))
            offset = int(step[offset + byte])
        if n < window:
            feats = np.array(head, dtype=np.int32)
        else:
            arr = np.frombuffer(data, dtype=np.uint8).astype(np.int64)
            m = n - window + 1
            offsets = self.pair[(arr[:m] << 8) | arr[1 : m + 1]]
            for j in range(2, window - 1):
                offsets = step[offsets + arr[j : j + m]]
            feats = np.concatenate((np.array(head, dtype=np.int32), emit[offsets + arr[window - 1 :]]))
        return feats[feats >= 0]

    def scores(self, data: bytes, langs: tuple[str, ...]) -> npt.NDArray[np.float32]:
        """py3langid's naive Bayes scores of ``data`` for ``langs`` (log-likelihood units)."""
        ptc, pc = self.tables[langs]
        if self.fallback is not None:
            ranked = dict(self.fallback.rank(data))
            return np.array([ranked[lang] for lang in langs], dtype=np.float32)
        feats = self.features(data)
        if feats.size == 0:  # as py3langid: a featureless text scores the float32 floor everywhere
            return np.full(len(langs), np.finfo(np.float32).min, dtype=np.float32)
        ids, counts = np.unique(feats, return_counts=True)
        return np.asarray(np.log1p(counts.astype(np.float32)) @ ptc[ids] + pc, dtype=np.float32)

    def _self_check(self, ident: Any) -> bool:
        """Compare the fast feature extraction with py3langid's own on a few probes."""
        probes = (
            "Ukrainian forces repelled 24 attacks near Bakhmut, the General Staff said on Thursday.",
            "Українські захисники відбили атаки ворога поблизу Авдіївки, повідомили у Генштабі.",
            "Российские войска продолжают штурм Авдеевки, сообщили в Генштабе ВСУ. Это ещё не всё.",
            "Die ukrainische Armee meldet schwere Kämpfe um Bachmut - 2023 ẞ ü 😀 日本語 ﷺ",
            "abcde",
            "x",
            "",
        )
        for probe in probes:
            data = probe.encode("utf-8")
            expected = visit_counts(ident.tk_nextmove, ident._rowbase, ident.tk_output, data) or Counter()
            if Counter(self.features(data).tolist()) != expected:
                log.warning("py3langid fast path disagrees with the reference; using LanguageIdentifier.rank")
                return False
        return True


_model: _Model | None = None
_model_lock = threading.Lock()


def _reset_lock_after_fork() -> None:
    global _model_lock
    _model_lock = threading.Lock()


os.register_at_fork(after_in_child=_reset_lock_after_fork)


def _get_model() -> _Model:
    global _model
    model = _model
    if model is None:
        with _model_lock:
            model = _model
            if model is None:
                model = _model = _Model()
    return model


def _cyrillic_evidence(sample: str) -> npt.NDArray[np.float32]:
    """Our own log-likelihood bonus for each of _CYRILLIC_LANGS, from lower-case words only."""
    words = _LOWER_CYRILLIC_WORD_RE.findall(sample)
    if not words:
        return np.zeros(len(_CYRILLIC_LANGS), dtype=np.float32)
    distinct = set(words)
    joined = " ".join(words)
    counts = {c: joined.count(c) for c in _EVIDENCE_LETTERS}
    return np.array(
        [
            _STOPWORD_WEIGHT * len(distinct & _STOPWORDS[lang])
            + _LETTER_WEIGHT * sum(counts[c] for c in _LETTERS[lang])
            - _FORBIDDEN_WEIGHT * sum(counts[c] for c in _FORBIDDEN[lang])
            for lang in _CYRILLIC_LANGS
        ],
        dtype=np.float32,
    )


def detect_language(text: str, max_chars: int = 2000) -> str:
    """ISO 639-1 code of ``text`` (one of :data:`LANGUAGES`), or ``"und"``.

    Only the first ``max_chars`` characters are analysed. Text with more Cyrillic than Latin letters is
    decided among uk/ru/be/bg, other text among the Latin-script candidates. ``"und"`` means fewer than
    :data:`MIN_LETTERS` Latin or Cyrillic letters (digits, punctuation, emoji, links and @mentions do not
    count), or text mostly in a script none of the candidates uses. Safe to call from several threads;
    the model is loaded once per process, on the first call.
    """
    sample = text[: max(max_chars, 0)]
    if "http" in sample or "www." in sample or "@" in sample or "#" in sample:
        sample = _URL_RE.sub(" ", sample)
    if not sample.isascii() and not unicodedata.is_normalized("NFC", sample):
        sample = unicodedata.normalize("NFC", sample)
    data = sample.encode("utf-8", "ignore")
    latin = len(data.translate(None, _NOT_ASCII_LETTER))
    cyrillic = 0
    if not data.isascii():
        latin_ext = len(data.translate(None, _NOT_LATIN_EXT_LEAD))
        cyrillic = len(data.translate(None, _NOT_CYRILLIC_LEAD))
        other = len(data.translate(None, _NOT_LEAD)) - latin_ext - cyrillic
        latin += latin_ext
        if other > latin + cyrillic:  # mostly another script (Greek, Arabic, CJK, ...) or emoji
            return UNDETERMINED
    if latin + cyrillic < MIN_LETTERS:
        return UNDETERMINED
    if sample.isupper():  # as py3langid does: all-caps text is scored in lower case
        sample = sample.lower()
        data = sample.encode("utf-8", "ignore")
    model = _get_model()
    if cyrillic > latin:
        scores = model.scores(data, _CYRILLIC_LANGS)
        top2 = np.partition(scores, -2)[-2:]
        if top2[1] - top2[0] < _EVIDENCE_GATE:
            scores += _cyrillic_evidence(sample[:_EVIDENCE_CHARS])
        return _CYRILLIC_LANGS[int(scores.argmax())]
    scores = model.scores(data, _LATIN_LANGS)
    return _LATIN_LANGS[int(scores.argmax())]
