"""The enrichment fast paths give exactly what the plain (slower) paths give.

The extractors share one ``MatchView`` per item, try their big regexes only where a match can start,
skip work that a cheap test shows cannot change the result, and remember pure helper results. Each of
these is held here to the plain code it replaces (the reference implementations below are the code as
it was before the fast paths), over the seed articles, the benchmark posts, the sample corpus, the test
suites' own strings, their variations (capitals, invisible characters, homoglyphs, spaced-out letters,
no digits) and generated texts; the character-level shortcuts are checked for every character.
"""

from __future__ import annotations

import ast
import importlib.util
import json
import random
import re
import sys
from pathlib import Path
from typing import Any
from unittest import mock

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from monitor.alerting.matcher import _LETTER_RUN, WORD, CompiledRules, _scan, deobfuscated_view, fold
from monitor.config import NormalizerSettings, Rule
from monitor.enrich import enricher as enricher_module
from monitor.enrich import places as places_module
from monitor.enrich import quantities as quantities_module
from monitor.enrich import units as units_module
from monitor.enrich.enricher import Enricher, MatchView, RuleIndex, number_starts
from monitor.enrich.gazetteer import COMMON, FLAG_BITS, FREQUENT, GIVEN
from monitor.enrich.geo import haversine_km
from monitor.enrich.people import PeopleExtractor
from monitor.enrich.places import PlaceExtractor
from monitor.enrich.quantities import extract_quantities
from monitor.enrich.regex_parts import top_level_alternatives
from monitor.enrich.units import UnitExtractor
from monitor.normalize.normalizer import Normalizer
from monitor.schema import Place

REPO = Path(__file__).resolve().parents[1]


# --------------------------------------------------------------------------------------------- texts

HOMOGLYPHS = str.maketrans("aeopcxAEOPCX", "аеорсхАЕОРСХ")
INVISIBLE = ["\u200b", "\u00ad", "\u0301", "\u200e", "\ufeff", "\u2066"]


def variations(text: str, rng: random.Random) -> list[str]:
    """The text in other cases, with invisible characters, homoglyphs, spaced letters, line breaks, no digits."""
    out = [text.upper(), text.lower(), text.replace(".", "\n"), "".join(c for c in text if not c.isdigit())]
    chars = list(text)
    for _ in range(3):
        chars.insert(rng.randrange(len(chars) + 1), rng.choice(INVISIBLE))
    out.append("".join(chars))
    words = text.split(" ")
    i, j = rng.randrange(len(words)), rng.randrange(len(words))
    words[i] = words[i].translate(HOMOGLYPHS)
    words[j] = ".".join(words[j])
    out.append(" ".join(words))
    if len(text) > 40:
        start = rng.randrange(len(text))
        out.append(text[start : start + rng.randint(5, 300)])
    return out


def suite_strings() -> list[str]:
    """Every string literal of the entity and matcher test suites (the cases they pin)."""
    found: list[str] = []
    for name in [
        "test_places.py",
        "test_units_people_quantities.py",
        "test_entity_rules.py",
        "test_matcher.py",
        "test_obfuscation.py",
        "test_matching_multilingual.py",
    ]:
        path = REPO / "tests" / name
        if path.is_file():
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                if isinstance(node, ast.Constant) and isinstance(node.value, str) and len(node.value) >= 3:
                    found.append(node.value)
    return found


def bench_posts(count: int) -> list[tuple[str, str | None]]:
    """``bench/normalize.py``'s posts (dense with places, units and figures), normalized as the pipeline does."""
    path = REPO / "bench" / "normalize.py"
    spec = importlib.util.spec_from_file_location("_bench_normalize", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    saved = list(sys.path)
    try:
        spec.loader.exec_module(module)
    finally:
        sys.path[:] = saved
    normalizer = Normalizer(NormalizerSettings(enrich=False))
    texts: list[tuple[str, str | None]] = []
    for post in module.enriched_posts(count, seed=5):
        item = normalizer.normalize(post)
        texts.append((item.text, item.lang))
        texts.append((post.text, None))
    return texts


@pytest.fixture(scope="module")
def corpus() -> list[tuple[str, str | None]]:
    """Benchmark posts, the sample corpus and the suites' strings, each also varied (with a language or none)."""
    texts = bench_posts(150)
    for path in sorted((REPO / "corpus").iterdir()):
        if path.suffix == ".jsonl":
            lines = path.read_text(encoding="utf-8").splitlines()
            texts += [(json.loads(line)["text"], None) for line in lines if line.strip()]
        elif path.is_file():
            texts.append((path.read_text(encoding="utf-8"), None))
    texts += [(s, lang) for s in suite_strings() for lang in (None, "en", "uk", "ru")]
    rng = random.Random(7)
    texts += [(v, lang) for text, lang in texts[::3] if text for v in variations(text, rng)]
    assert len(texts) > 3000
    return texts


@pytest.fixture(scope="module")
def seeds(seeds_dir: Path) -> list[tuple[str, str | None]]:
    """The seed articles, whole and varied."""
    texts: list[tuple[str, str | None]] = [
        (path.read_text(encoding="utf-8"), None) for path in sorted(seeds_dir.glob("*.txt"))
    ]
    rng = random.Random(11)
    return texts + [(v, None) for text, _ in texts for v in variations(text, rng)]


@pytest.fixture(scope="module")
def enricher() -> Enricher:
    """The real extractors (gazetteer from its cache)."""
    return Enricher.load()


WORDS = [
    "Bakhmut", "Бахмут", "Бахмута", "Bаkhmut", "B.a.k.h.m.u.t", "Мирне", "мирне", "Щастя", "Лиман", "Лиманському",
    "напрямку", "Андріївка", "Andriivka", "Donetsk", "region", "області", "Донецької", "Roman", "Chop", "Volodymyr",
    "Zelensky", "Сирський", "Олександр", "Маляр", "заявила", "Пригожин", "Wagner", "Azov", "РДК", "92nd", "92-га",
    "93rd", "3-тя", "47", "200-я", "ОМБр", "OMBr", "brigade", "бригада", "бригади", "Separate", "Mechanized",
    "штурмова", "окрема", "Холодний", "Яр", "вул.", "street", "1,5", "3,574", "317 860", "тис.", "(+19)", "‒", "-",
    ":", "танків", "tanks", "БпЛА", "знищено", "destroyed", "killed", "загинули", "wounded", "attacks", "атак",
    "п'ять", "five", "2023", "in", "у", "24.02.22", "12:30", "Су-34", "$100", "10%", "ß", "İ", "ı", "ſ", "ё",
    "вулиця", "ул.", "УЛИЦА", "проспект", "просп.", "пров.", "провулок", "переулок", "avenue", "Street", "a hundred",
    "ten", "дві", "Героїв", "93-ї", "бригади", "ОБр ТрО", "ОБрТрО", "мотострелковая", "Kholodnyi Yar", "імені",
]  # fmt: skip
SEPARATORS = [" ", ", ", ". ", "\n", "-", "  ", " — ", ": ", " (", ") ", "\u00a0", "\u200b", "«", "»", "'", "’"]
generated_texts = st.lists(
    st.one_of(st.sampled_from(WORDS), st.sampled_from(SEPARATORS), st.text(max_size=3), st.integers(0, 3000).map(str)),
    max_size=30,
).map("".join)


# ------------------------------------------------------------------------------------- shared view


def test_match_view_is_the_matchers_view(corpus: list[tuple[str, str | None]]) -> None:
    """``MatchView`` holds what ``CompiledRules.match`` builds, and ``words`` lines up with the view."""
    for text, _ in corpus:
        view = MatchView(text)
        words, _ = _scan(text)
        plain = " " + fold(words) + " "
        if view.tokens is None:
            assert view.view == plain
        else:
            assert (view.view, view.tokens) == deobfuscated_view(text)
        if view.words is not None:
            assert view.words == " ".join(WORD.findall(text))
            assert all(fold(c) == view.view[i + 1] for i, c in enumerate(view.words))


def test_number_starts_are_every_possible_start(corpus: list[tuple[str, str | None]]) -> None:
    """``number_starts`` lists exactly the digits that follow no word character."""
    for text, _ in corpus:
        assert number_starts(text) == [m.start() for m in re.finditer(r"(?<!\w)\d", text)]


def test_view_match_equals_rules_match(enricher: Enricher, corpus: list[tuple[str, str | None]]) -> None:
    """``MatchView.match`` (with and without the one-pass ``RuleIndex``) equals ``CompiledRules.match``."""
    rule_sets = [enricher.units.name_rules, enricher.people.name_rules]  # type: ignore[attr-defined]
    index = RuleIndex(rule_sets)
    for text, _ in corpus:
        plain, indexed = MatchView(text), MatchView(text, index)
        for rules in rule_sets:
            expected = rules.match(text)
            assert plain.match(rules) == expected
            assert indexed.match(rules) == expected


def test_rule_index_finds_what_each_automaton_finds(enricher: Enricher, corpus: list[tuple[str, str | None]]) -> None:
    """Per rule set, the index's one pass finds the hits of the set's own automaton, in the same order."""
    rule_sets = [enricher.units.name_rules, enricher.people.name_rules]  # type: ignore[attr-defined]
    index = RuleIndex(rule_sets)
    assert index.slot(CompiledRules([Rule(name="x", any=["x"])])) is None
    for text, _ in corpus:
        view = MatchView(text).view
        found = index.hits(view)
        for slot, rules in enumerate(rule_sets):
            own = list(rules._automaton.iter(view))
            assert sorted(found[slot]) == sorted(own)
            assert [end for end, _ in found[slot]] == [end for end, _ in own]


def test_view_match_falls_back_for_other_rules() -> None:
    """Rules with all/none/regex/NEAR terms or filters are matched by ``CompiledRules.match`` itself."""
    rules = CompiledRules(
        [
            Rule(name="a", any=["Bakhmut"], none=["exercise"]),
            Rule(name="b", any=["tank NEAR/3 Bakhmut", "re:t.nk"], all=["Бахмут"]),
            Rule(name="c", any=["Kupiansk"], langs=["en"]),
        ]
    )
    assert not enricher_module._simple(rules)
    for text in ["tank near Bakhmut, Бахмут", "Bakhmut exercise", "Kupiansk", "tonk Бахмутом tank"]:
        assert MatchView(text).match(rules) == rules.match(text)


def test_enrich_equals_extractors_without_a_view(enricher: Enricher, corpus: list[tuple[str, str | None]]) -> None:
    """``Enricher.enrich`` (one shared view) gives what each extractor gives on its own."""
    for text, lang in corpus[::2]:
        entities = enricher.enrich(text, lang=lang)
        assert entities.places == enricher.places.extract(text)
        assert entities.units == enricher.units.extract(text)
        assert entities.people == enricher.people.extract(text)
        assert entities.quantities == extract_quantities(text, lang)


def test_channel_areas_are_learned_as_before(enricher: Enricher, corpus: list[tuple[str, str | None]]) -> None:
    """A channel's learned area, and the places it helps resolve, are those of the plain update loop."""
    fast = Enricher(enricher.places, enricher.units, enricher.people)
    slow = Enricher(enricher.places, enricher.units, enricher.people)
    for n, (text, lang) in enumerate(corpus[:1500]):
        channel = f"c{n % 3}"
        got = fast.enrich(text, lang=lang, channel=channel)
        places = slow.places.extract(text, area=slow.area(channel))
        for place in places:
            if place.confidence >= 1.0 and place.lat is not None and place.lon is not None:
                slow._areas.setdefault(channel, enricher_module._Area()).add(place.lat, place.lon)
        assert got.places == places, text[:300]
    assert fast._areas == slow._areas


def test_enrich_many_equals_enrich_item_by_item(enricher: Enricher, corpus: list[tuple[str, str | None]]) -> None:
    """A batch enriched extractor by extractor gives each text what ``enrich`` gives it, areas included."""
    batched = Enricher(enricher.places, enricher.units, enricher.people)
    single = Enricher(enricher.places, enricher.units, enricher.people)
    sample = corpus[:900]
    channels = [f"c{n % 4}" for n in range(len(sample))]
    got: list[Any] = []
    for start in range(0, len(sample), 200):
        chunk = sample[start : start + 200]
        got += batched.enrich_many([t for t, _ in chunk], [lang for _, lang in chunk], channels[start : start + 200])
    want = [
        single.enrich(text, lang=lang, channel=channel) for (text, lang), channel in zip(sample, channels, strict=True)
    ]
    assert got == want
    assert batched._areas == single._areas


def test_enrich_many_keeps_one_texts_error_to_itself(enricher: Enricher) -> None:
    """An extractor failing on one text of a batch fails that text alone; the others get their entities."""
    texts = ["92-га ОМБр під Бахмутом", "boom: Kupiansk", "знищено 5 танків під Авдіївкою"]
    original = enricher.units.extract

    def failing(text: str, **kwargs: Any) -> Any:
        if text.startswith("boom"):
            raise ValueError("unit grammar broke")
        return original(text, **kwargs)

    with mock.patch.object(enricher.units, "extract", failing):
        results = enricher.enrich_many(texts, ["uk", "en", "uk"], [None, None, None])
    assert isinstance(results[1], ValueError)
    assert results[0] == enricher.enrich(texts[0], lang="uk")
    assert results[2] == enricher.enrich(texts[2], lang="uk")
    assert results[0].units and results[2].quantities  # type: ignore[union-attr]


def test_a_view_of_another_text_is_not_used(enricher: Enricher) -> None:
    """Extractors given a view built from a different text build their own."""
    text, other = "92-га ОМБр під Бахмутом, знищено 5 танків, Сирський", "Kupiansk"
    wrong = MatchView(other)
    assert enricher.places.extract(text, view=wrong) == enricher.places.extract(text)  # type: ignore[call-arg]
    assert enricher.units.extract(text, view=wrong) == enricher.units.extract(text)  # type: ignore[call-arg]
    assert enricher.people.extract(text, view=wrong) == enricher.people.extract(text)  # type: ignore[call-arg]
    assert extract_quantities(text, "uk", view=wrong) == extract_quantities(text, "uk")


# --------------------------------------------------------------------------------------------- places


def test_invisible_check_for_every_character() -> None:
    """``_may_have_invisible`` is False only for texts ``_INVISIBLE`` finds nothing in, for every character."""
    for code in [*range(0x80, 0x10000), *range(0x10000, 0x110000, 61)]:
        char = chr(code)
        for text in (char, f"ab{char}", f"Бах{char}мут"):
            if places_module._INVISIBLE.search(text) is not None:
                assert places_module._may_have_invisible(text), hex(code)


def test_token_starts_for_every_character() -> None:
    """``_TokenStarts`` finds the ``WORD`` token starts in texts holding any BMP character (and some others)."""
    for code in [*range(0, 0x10000, 3), *range(0x10000, 0x110000, 997)]:
        char = chr(code)
        check_token_starts(f"a{char}b {char} x{char}.{char}Я {char}")


def check_token_starts(text: str) -> None:
    """Every token start, looked up in a shuffled order, and nothing past the last token."""
    tokens = WORD.findall(text)
    starts = [m.start() for m in WORD.finditer(text)]
    letters = [sum(map(len, tokens[:k])) for k in range(len(tokens) + 1)]
    found = places_module._TokenStarts(text)
    order = list(range(len(tokens))) * 2
    random.Random(len(text)).shuffle(order)
    for token in order:  # any order: the cursor also moves back
        assert found.start(token, letters[token]) == starts[token], (ascii(text), token)
    assert found.start(len(tokens), letters[-1]) is None


@settings(max_examples=300, deadline=None)
@given(text=generated_texts)
def test_token_starts_on_generated_texts(text: str) -> None:
    """``_TokenStarts`` on generated texts (separators, marks, digits, any characters)."""
    check_token_starts(text)


def test_common_word_shortcut_characters() -> None:
    """A non-letter word character never folds to letters only, and folding never makes a space."""
    for code in range(0x110000):
        char = chr(code)
        if (char.isalnum() or char == "_") and not char.isalpha():
            assert not fold(char).isalpha(), hex(code)
        assert " " not in fold(char) or char == " ", hex(code)


class ReferencePlaces(PlaceExtractor):
    """``PlaceExtractor`` as it was before the fast paths: no shared view, every hit through every check,
    every distance and prior computed afresh, every place built from scratch."""

    takes_view = False

    def extract(  # type: ignore[override]
        self, text: str, *, area: tuple[float, float] | None = None, view: MatchView | None = None
    ) -> list[Place]:
        clean, segments = _reference_strip_invisible(text)
        mentions = self._mentions(clean)
        if not mentions:
            return []
        resolved = self._resolve(mentions, area)
        places = []
        for mention in mentions:
            resolution = resolved.get(mention.candidates)
            if resolution is None:
                continue
            start, end = mention.start, mention.end
            if segments is not None:
                start, end = places_module._original(segments, start), places_module._original(segments, end - 1) + 1
            places.append(self._place(resolution, start, end))
        return places

    def _mentions(self, text: str, view: MatchView | None = None) -> list[Any]:
        words, mixed = _scan(text)
        padded = " " + fold(words) + " "
        tokens: list[tuple[int, int]] | None = None
        if mixed or _LETTER_RUN.search(padded) is not None:
            padded, tokens = deobfuscated_view(text)
        found = []
        for end, pid in self._automaton.iter(padded):
            pattern = self._patterns[pid]
            first = padded.count(" ", 0, end - len(pattern)) - 1
            last = first + pattern.count(" ")
            if tokens is None:
                tokens = [m.span() for m in WORD.finditer(text)]
            if last >= len(tokens):
                continue
            start, stop = tokens[first][0], tokens[last][1]
            mention = self._reference_filter(text, pid, start, stop, first, last)
            if mention is not None:
                found.append(mention)
        found.sort(key=lambda m: (m.first, m.first - m.last))
        chosen: list[Any] = []
        for mention in found:
            if not chosen or mention.first > chosen[-1].last:
                chosen.append(mention)
        # The oblast readings are semantics, not a fast path: the reference applies the real ones.
        self._english_oblast_readings(text, chosen)
        regions = [m for m in chosen if len(m.candidates) == 1 and not self._is_place[m.candidates[0]]]
        chosen = self._coordinated_oblasts(text, chosen, regions) if regions else chosen
        regions = [m for m in chosen if len(m.candidates) == 1 and not self._is_place[m.candidates[0]]]
        for mention in chosen:
            near = [
                (self.entries[r.candidates[0]].country, self.entries[r.candidates[0]].admin1_code)
                for r in regions
                if r is not mention and -3 <= r.first - mention.last <= places_module.OBLAST_WINDOW
            ]
            if near:
                mention.oblasts = frozenset(near)
        return chosen

    def _reference_filter(self, text: str, pid: int, start: int, stop: int, first: int, last: int) -> Any:
        if places_module._after_given_name(text, start, self._given_names):
            return None
        if places_module._SECTOR_NEXT.match(text, stop) and places_module._ADJECTIVE_END.search(
            text[start:stop].lower()
        ):
            return None
        strong: list[int] = []
        weak: list[int] = []
        position: tuple[bool, bool] | None = None
        person: bool | None = None
        for ref in self._refs[pid]:
            index, flags = ref >> FLAG_BITS, ref & 7
            if index in self._vetoes and places_module._vetoed(self._vetoes[index], text, start, stop):
                continue
            if flags & GIVEN:
                if person is None:
                    person = places_module._before_surname(text, start, stop)
                if person:
                    continue
            if index in self._needs_context:
                weak.append(index)
                continue
            if not flags & COMMON:
                strong.append(index)
                continue
            if position is None:
                position = places_module._position(text, start, stop)
            titled, weak_position = position
            if not titled:
                continue
            if flags & FREQUENT and weak_position and self._population[index] < places_module.SENTENCE_RULE_POPULATION:
                weak.append(index)
            else:
                strong.append(index)
        if strong:
            return places_module._Mention(start, stop, first, last, tuple(strong), False)
        if weak:
            return places_module._Mention(start, stop, first, last, tuple(weak), True)
        return None

    def _near(self, index: int, points: Any) -> float:
        lat, lon = self._lat[index], self._lon[index]
        return min((haversine_km(lat, lon, p_lat, p_lon) for p_lat, p_lon in points), default=float("inf"))

    def _resolve(self, mentions: list[Any], area: tuple[float, float] | None) -> dict[tuple[int, ...], Any]:
        resolution = places_module._Resolution
        strong_keys = {m.candidates for m in mentions if not m.weak}
        keys = list(dict.fromkeys(m.candidates for m in mentions))
        weight = self._weight
        local: dict[tuple[int, ...], set[tuple[str, str | None]]] = {}
        for mention in mentions:
            local.setdefault(mention.candidates, set()).update(mention.oblasts)
        anchors: dict[tuple[int, ...], tuple[float, float]] = {}
        resolved: dict[tuple[int, ...], Any] = {}
        for key in keys:
            best = max(key, key=weight.__getitem__)
            share = weight[best] / sum(weight[i] for i in key)
            if len(key) == 1:
                resolved[key] = resolution(best, 1.0, [best])
            if key in strong_keys and self._is_place[best] and (len(key) == 1 or share >= places_module.DOMINANT_SHARE):
                anchors[key] = (self._lat[best], self._lon[best])
        pending = sorted((k for k in keys if len(k) > 1), key=len)
        undecided: list[tuple[int, ...]] = []
        for key in pending:
            pool = self._in_oblasts(key, local.get(key))
            best = max(key, key=weight.__getitem__)
            share = weight[best] / sum(weight[i] for i in key)
            if share >= places_module.DOMINANT_SHARE and best in pool:
                resolved[key] = resolution(best, share, sorted(key, key=lambda i: -weight[i]))
                continue
            points = [point for other, point in anchors.items() if other != key]
            decided = self._by_distance(key, pool, points, 0.95) if points else None
            if decided is None and area is not None:
                decided = self._by_distance(key, pool, [area], 0.9, radius=places_module.AREA_KM)
            if decided is None:
                undecided.append(key)
                continue
            resolved[key] = decided
            if key in strong_keys and decided.confidence >= 0.5:
                anchors[key] = (self._lat[decided.chosen], self._lon[decided.chosen])
        for key in undecided:
            pool = self._in_oblasts(key, local.get(key))
            others = [k for k in undecided if k != key]
            support = {
                i: sum(
                    1
                    for k in others
                    if self._near(i, ((self._lat[j], self._lon[j]) for j in k)) <= places_module.SUPPORT_KM
                )
                for i in pool
            }
            top = max(support.values(), default=0)
            if top > 0:
                best_pool, factor = [i for i in pool if support[i] == top], 0.8
            else:
                best_pool, factor = pool, (0.95 if len(pool) < len(key) else 1.0)
            chosen = max(best_pool, key=weight.__getitem__)
            share = weight[chosen] / sum(weight[i] for i in best_pool)
            ranked = sorted(key, key=lambda i: (i not in best_pool, -support.get(i, 0), -weight[i]))
            resolved[key] = resolution(chosen, factor * share, ranked)
        for key in keys:
            if key in strong_keys or key not in resolved:
                continue
            chosen = resolved[key].chosen
            points = [point for other, point in anchors.items() if other != key]
            entry = self.entries[chosen]
            supported = (
                (points and self._near(chosen, points) <= places_module.WEAK_SUPPORT_KM)
                or (area is not None and self._near(chosen, [area]) <= places_module.AREA_KM)
                or (entry.country, entry.admin1_code) in local.get(key, ())
            )
            if supported:
                resolved[key].confidence *= 0.8
            else:
                del resolved[key]
        return resolved


def _reference_strip_invisible(text: str) -> tuple[str, list[tuple[int, int]] | None]:
    """``_strip_invisible`` deciding by the regex alone."""
    if places_module._INVISIBLE.search(text) is None:
        return text, None
    with mock.patch.object(places_module, "_may_have_invisible", lambda _: True):
        return places_module._strip_invisible(text)


@pytest.fixture(scope="module")
def reference_places(enricher: Enricher) -> ReferencePlaces:
    """The reference extractor over the same gazetteer."""
    return ReferencePlaces(enricher.places.gazetteer)  # type: ignore[attr-defined]


AREAS = [None, (48.6, 38.0), (50.0, 36.2)]


def check_places(enricher: Enricher, reference: ReferencePlaces, texts: list[tuple[str, str | None]]) -> None:
    """Places of each text (with an area for some) equal the reference's, with and without a shared view."""
    for n, (text, _) in enumerate(texts):
        area = AREAS[n % len(AREAS)]
        expected = reference.extract(text, area=area)
        assert enricher.places.extract(text, area=area) == expected, text[:300]
        view = MatchView(text)
        assert enricher.places.extract(text, area=area, view=view) == expected, text[:300]  # type: ignore[call-arg]


def test_places_equal_the_reference(
    enricher: Enricher, reference_places: ReferencePlaces, corpus: list[tuple[str, str | None]]
) -> None:
    """Places (spans, ids, confidences, candidates) on the corpus, with and without a channel area."""
    check_places(enricher, reference_places, corpus)


def test_places_equal_the_reference_on_seeds(
    enricher: Enricher, reference_places: ReferencePlaces, seeds: list[tuple[str, str | None]]
) -> None:
    """Places on the seed articles and their variations."""
    check_places(enricher, reference_places, seeds)


@settings(max_examples=200, deadline=None)
@given(text=generated_texts)
def test_places_equal_the_reference_on_generated_texts(text: str) -> None:
    """Places on generated texts."""
    extractor = PlaceExtractor.load()
    reference = _generated_reference(extractor)
    assert extractor.extract(text) == reference.extract(text)


_REFERENCES: dict[int, ReferencePlaces] = {}


def _generated_reference(extractor: PlaceExtractor) -> ReferencePlaces:
    """One reference extractor per extractor (building its automaton takes a moment)."""
    reference = _REFERENCES.get(id(extractor))
    if reference is None:
        reference = _REFERENCES[id(extractor)] = ReferencePlaces(extractor.gazetteer)
    return reference


def test_place_memos_hold_exact_values(enricher: Enricher, corpus: list[tuple[str, str | None]]) -> None:
    """Every remembered prior and distance equals a fresh computation."""
    places: Any = enricher.places
    for n, (text, _) in enumerate(corpus[:400]):
        places.extract(text, area=AREAS[n % len(AREAS)])
    assert places._priors and places._distances
    weight = places._weight
    for key, (best, share, anchor) in places._priors.items():
        assert best == max(key, key=weight.__getitem__)
        assert share == weight[best] / sum(weight[i] for i in key)
        expected = (places._lat[best], places._lon[best])
        is_anchor = places._is_place[best] and (len(key) == 1 or share >= places_module.DOMINANT_SHARE)
        assert anchor == (expected if is_anchor else None)
    for (index, lat, lon), km in places._distances.items():
        assert km == haversine_km(places._lat[index], places._lon[index], lat, lon)


# ---------------------------------------------------------------------------------------------- units


_PLAIN_GRAMMARS: dict[int, re.Pattern[str]] = {}


def plain_grammar(extractor: Any) -> re.Pattern[str]:
    """The numbered-unit grammar without its first-letter lookaheads."""
    grammar = _PLAIN_GRAMMARS.get(id(extractor))
    if grammar is None:
        pattern = extractor._grammar.pattern
        for guard in extractor._guards:
            assert not guard or pattern.count(guard) == 1
            pattern = pattern.replace(guard, "") if guard else pattern
        grammar = _PLAIN_GRAMMARS[id(extractor)] = re.compile(pattern, re.IGNORECASE)
    return grammar


def reference_numbered(self: UnitExtractor, text: str, starts: list[int] | None = None) -> list[Any]:
    """``UnitExtractor._numbered`` as it was: the plain grammar searched everywhere, nothing remembered."""
    ex: Any = self
    out: list[Any] = []
    for match in plain_grammar(ex).finditer(text):
        start = match.start()
        if units_module._STREET_BEFORE.search(text, max(0, start - 40), start) or units_module._STREET_AFTER.match(
            text, match.end()
        ):
            continue
        numbers = [
            (m.start(), m.end(), int(m.group(1)), m.group(2)) for m in units_module._ORD_PARTS.finditer(match["chain"])
        ]
        abbr = ex._abbrevs.get(ex._key(match["abbr"])) if match["abbr"] else None
        spec = country = guess = None
        if abbr is not None:
            unit_type = abbr["type"]
            spec = abbr.get("spec")
            guess = abbr.get("country")
            if abbr.get("ordinal_only") and any(suffix is None for *_, suffix in numbers):
                continue
        else:
            noun = match["noun"]
            unit_type = next(t for t, regex in ex._noun_types if regex.match(noun))
            plural = units_module._PLURAL_NOUN.match(noun) is not None
            mods = [m.group() for m in ex._modifier.finditer(match["mods"] or "")]
            for word in mods:
                word_spec, word_country = ex._classify_word(word)
                spec = spec or word_spec
                country = country or word_country
            trail_spec = ex._trailing.get(ex._key(match["trail"]), (None, None))[0] if match["trail"] else None
            if any(suffix is None for *_, suffix in numbers):
                has_spec = any(ex._classify_word(w)[0] or re.fullmatch(units_module._SEPARATE, w, re.I) for w in mods)
                cyr_mods = [w for w in mods if re.search(f"[{units_module._CYR}]", w, re.I)]
                singular = not plural and not (cyr_mods and units_module._PLURAL_ADJ.search(cyr_mods[0]))
                nominative = ex._key(noun) in units_module._NOMINATIVE
                if (
                    len(numbers) > 1
                    or not singular
                    or not (has_spec or (trail_spec and nominative))
                    or 1900 <= numbers[0][2] <= 2100
                ):
                    continue
        if match["trail"]:
            trail_spec, trail_country = ex._trailing.get(ex._key(match["trail"]), (None, None))
            spec = spec or trail_spec
            country = country or trail_country
        before = re.search(r"([\w'-]+)\s+$", text[max(0, start - 30) : start])
        country = country or (ex._classify_word(before.group(1))[1] if before else None)
        if spec is not None:
            guess = guess or ex._spec_country.get(spec)
        base = match.start("chain")
        for index, (a, b, number, _suffix) in enumerate(numbers):
            unit_id, name = ex._resolve(number, unit_type, spec, country, guess)
            last = index == len(numbers) - 1
            out.append(units_module._Found(base + a, match.end() if last else base + b, unit_id, name, True, number))
    return out


def slow_match(self: MatchView, rules: CompiledRules) -> Any:
    """``MatchView.match`` the slow way: the matcher builds its own view."""
    return rules.match(self.text)


def check_units(extractor: UnitExtractor, texts: list[tuple[str, str | None]]) -> None:
    """Units of each text equal those with the plain grammar search and the matcher's own ``match``."""
    fast = [extractor.extract(text) for text, _ in texts]
    with (
        mock.patch.object(UnitExtractor, "_numbered", reference_numbered),
        mock.patch.object(MatchView, "match", slow_match),
    ):
        slow = [extractor.extract(text) for text, _ in texts]
    for (text, _), got, expected in zip(texts, fast, slow, strict=True):
        assert got == expected, text[:300]


def test_units_equal_the_reference(enricher: Enricher, corpus: list[tuple[str, str | None]]) -> None:
    """Units on the corpus equal those of the plain grammar search and matcher."""
    check_units(enricher.units, corpus)  # type: ignore[arg-type]


def test_units_equal_the_reference_on_seeds(enricher: Enricher, seeds: list[tuple[str, str | None]]) -> None:
    """Units on the seed articles."""
    check_units(enricher.units, seeds)  # type: ignore[arg-type]


@settings(max_examples=200, deadline=None)
@given(text=generated_texts)
def test_units_equal_the_reference_on_generated_texts(text: str) -> None:
    """Units on generated texts."""
    check_units(UnitExtractor.load(), [(text, None)])


@settings(max_examples=500, deadline=None)
@given(text=generated_texts)
def test_unit_window_helpers(text: str) -> None:
    """The grammar's candidate positions, the street test and the word before a number, against their regexes."""
    extractor: Any = UnitExtractor.load()
    expected = [(m.span(), m.groupdict()) for m in plain_grammar(extractor).finditer(text)]
    assert [(m.span(), m.groupdict()) for m in extractor._grammar_matches(text)] == expected
    for start in range(len(text) + 1):
        street = units_module._STREET_BEFORE.search(text, max(0, start - 40), start) is not None
        assert units_module._street_before(text, start) == street
        window = text[max(0, start - 30) : start]
        found = units_module._WORD_BEFORE.search(window)
        assert units_module._word_before(window) == (found.group(1) if found else None)


def test_grammar_guards_admit_every_first_letter() -> None:
    """Ignoring case, each grammar guard's class admits every character any of its letters matches."""
    everything = "".join(map(chr, range(0x110000)))
    guards = [guard for guard in UnitExtractor.load()._guards if guard]  # type: ignore[attr-defined]
    assert len(guards) == 2
    for guard in guards:
        letters = guard[len("(?=[") : -len("])")]
        admitted = set(re.findall(f"[{letters}]", everything, re.IGNORECASE))
        for letter in letters:
            assert set(re.findall(re.escape(letter), everything, re.IGNORECASE)) <= admitted, letter


def test_street_hints_cover_every_spelling() -> None:
    """Street-hint letters match (ignoring case) only characters folding to them; every street word has a hint."""
    everything = "".join(map(chr, range(0x110000)))
    for letter in set("".join(units_module._STREET_HINTS)):
        for char in re.findall(re.escape(letter), everything, re.IGNORECASE):
            assert char.casefold() == letter, (letter, hex(ord(char)))
    head = units_module._STREET_BEFORE.pattern[len("(?:") :]
    alternatives = top_level_alternatives(head[: quantities_module._closing_paren("(" + head)])
    for alternative in alternatives:
        plain = alternative.replace("\\", "").replace("[" + units_module._CYR + "]*", "")
        assert any(hint in plain for hint in units_module._STREET_HINTS), alternative


def test_unit_memos_hold_exact_values(enricher: Enricher, corpus: list[tuple[str, str | None]]) -> None:
    """Remembered word classes, nouns and modifier lists equal fresh computations."""
    units: Any = enricher.units
    for text, _ in corpus[:400]:
        units.extract(text)
    assert units._classified and units._nouns
    for word, known in units._classified.items():
        assert known == units._classify_word(word)
    for noun, (unit_type, plural, nominative) in units._nouns.items():
        assert unit_type == next(t for t, regex in units._noun_types if regex.match(noun))
        assert plural == (units_module._PLURAL_NOUN.match(noun) is not None)
        assert nominative == (units._key(noun) in units_module._NOMINATIVE)
    for mods, words in units._mods.items():
        assert words == tuple(m.group() for m in units._modifier.finditer(mods))


# --------------------------------------------------------------------------------------------- people


def test_people_equal_the_reference(enricher: Enricher, corpus: list[tuple[str, str | None]]) -> None:
    """People found through the shared view equal those of the matcher's own ``match``."""
    people: PeopleExtractor = enricher.people  # type: ignore[assignment]
    fast = [people.extract(text) for text, _ in corpus]
    with mock.patch.object(MatchView, "match", slow_match):
        slow = [people.extract(text) for text, _ in corpus]
    assert fast == slow


# ----------------------------------------------------------------------------------------- quantities


def reference_after_list_dash(text: str, start: int) -> bool:
    """``_after_list_dash`` as it was."""
    before = text[max(0, start - 40) : start].rstrip()
    if before[-1:] in quantities_module._LIST_DASHES:
        return bool(before)
    lowered = before.lower()
    for word in quantities_module._APPROX_WORDS:
        if lowered.endswith(word) and not lowered[-len(word) - 1 : -len(word)].isalnum():
            return before[: -len(word)].rstrip()[-1:] in quantities_module._LIST_DASHES and len(before) > len(word)
    return False


def reference_context_matches(lowered: str, candidates: list[int] | None = None) -> list[tuple[int, int, str]]:
    """Every context word, by searching everywhere."""
    return [(m.start(), m.end(), m.lastgroup or "") for m in quantities_module._CONTEXT.finditer(lowered)]


def slow_quantities() -> list[Any]:
    """Patches that put every quantity fast path back to its plain version."""
    q = quantities_module
    return [
        mock.patch.object(q, "_digit_matches", lambda text, starts=None: q._DIGITS.finditer(text)),
        mock.patch.object(q, "_context_matches", reference_context_matches),
        mock.patch.object(q, "_scan_lowered", lambda lowered: None),  # number words by a whitespace split
        mock.patch.object(q, "_SENTENCE_FAST", q._SENTENCE),
        mock.patch.object(q, "_CLAUSE_BREAK_FAST", q._CLAUSE_BREAK),
        mock.patch.object(q, "_noun", q._noun_slow),
        mock.patch.object(q, "_after_list_dash", reference_after_list_dash),
    ]


def check_quantities(texts: list[tuple[str, str | None]]) -> None:
    """Quantities of each text (alone and with a view) equal those with every fast path patched out."""
    fast = [extract_quantities(text, lang) for text, lang in texts]
    viewed = [extract_quantities(text, lang, view=MatchView(text)) for text, lang in texts]
    patches = slow_quantities()
    for patch in patches:
        patch.start()
    try:
        slow = [extract_quantities(text, lang) for text, lang in texts]
    finally:
        for patch in patches:
            patch.stop()
    for (text, _), got, shared, expected in zip(texts, fast, viewed, slow, strict=True):
        assert got == expected, text[:300]
        assert shared == expected, text[:300]


def test_quantities_equal_the_reference(corpus: list[tuple[str, str | None]]) -> None:
    """Quantities on the corpus equal those of the plain regex searches."""
    check_quantities(corpus)


def test_quantities_equal_the_reference_on_seeds(seeds: list[tuple[str, str | None]]) -> None:
    """Quantities on the seed articles."""
    check_quantities(seeds)


@settings(max_examples=300, deadline=None)
@given(text=generated_texts, lang=st.sampled_from([None, "en", "uk", "ru"]))
def test_quantities_equal_the_reference_on_generated_texts(text: str, lang: str | None) -> None:
    """Quantities on generated texts."""
    check_quantities([(text, lang)])


@settings(max_examples=500, deadline=None)
@given(text=generated_texts)
def test_quantity_regex_rewrites(text: str) -> None:
    """The rewritten sentence and clause-break regexes, the digit and context searches, as the originals."""
    q = quantities_module
    assert [m.span() for m in q._SENTENCE_FAST.finditer(text)] == [m.span() for m in q._SENTENCE.finditer(text)]
    starts = [m.start() for m in q._CLAUSE_BREAK.finditer(text)]
    assert [m.start() for m in q._CLAUSE_BREAK_FAST.finditer(text)] == starts
    for position in range(len(text) + 1):
        fast = q._CLAUSE_BREAK_FAST.search(text, position)
        slow = q._CLAUSE_BREAK.search(text, position)
        assert (fast and fast.start()) == (slow and slow.start())
    assert [m.span() for m in q._digit_matches(text)] == [m.span() for m in q._DIGITS.finditer(text)]
    lowered = text.lower()
    assert q._context_matches(lowered) == reference_context_matches(lowered)
    candidates, tokens = q._scan_lowered(lowered)
    assert tokens == q._ALL_WORDS.intersection(lowered.split())
    assert {start for start, _, _ in reference_context_matches(lowered)} <= set(candidates)
    for start in range(len(text) + 1):
        assert q._after_list_dash(text, start) == reference_after_list_dash(text, start)


def test_context_prefixes_start_every_context_word() -> None:
    """Each context alternative begins with its literal prefix (so the automaton finds every match start)."""
    q = quantities_module
    for _, body in q._CONTEXT_BODIES:
        for alternative in top_level_alternatives(body):
            prefix = q._literal_prefix(alternative)
            assert prefix and prefix in q._CONTEXT_PREFIXES
            regex = re.compile(alternative)
            for sample in [prefix + "x", prefix, prefix + "ed", prefix + " в плен", prefix + "ения"]:
                found = regex.match(sample)
                assert found is None or sample.startswith(prefix)


def test_noun_group_is_the_last_group(corpus: list[tuple[str, str | None]]) -> None:
    """The forward and list regexes name their noun in ``lastgroup``, as a look at every group does."""
    q = quantities_module
    for text, _ in corpus:
        for match in q._FORWARD.finditer(text):
            assert q._noun(match) == q._noun_slow(match)
        for position in range(0, len(text), 7):
            found = q._BACKWARD.match(text, position)
            if found is not None:
                assert q._noun(found) == q._noun_slow(found)
