"""Tests for monitor.normalize.lang.detect_language: en/de/uk/ru news sentences, Ukrainian versus Russian
edge cases, "und", the max_chars window, seeds, lazy thread-safe loading and the exactness of the fast path."""

from __future__ import annotations

import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from py3langid.langid import visit_counts

from monitor.normalize import lang
from monitor.normalize.boilerplate import strip_boilerplate
from monitor.normalize.lang import LANGUAGES, detect_language
from monitor.normalize.text import clean_text

UKRAINIAN = [
    "Українські захисники відбили шість атак ворога поблизу Авдіївки, повідомили у Генштабі ЗСУ.",
    "Вибухи пролунали у Харкові, працює ППО.",
    "Тривога по всій країні. Прямуйте в укриття!",
    "Окупанти обстріляли Херсон з артилерії: загинула жінка, ще троє людей поранені.",
    "Генштаб: за добу знищено 12 танків та 30 артилерійських систем ворога.",
    "У Запоріжжі внаслідок ракетного удару зруйновано будинок, під завалами можуть бути люди.",
    "Сили оборони продовжують утримувати позиції на лівому березі Дніпра.",
    "Речник Повітряних сил заявив, що вночі ворог запустив по Україні 31 ударний дрон типу Shahed, "
    "з них 29 було знищено над південними та центральними областями.",
]
# Ukrainian with none of the letters і, ї, є, ґ.
UKRAINIAN_WITHOUT_UK_LETTERS = "Ворог атакував Одесу ударними дронами, пошкоджено склад та поранено двох людей."

RUSSIAN = [
    "В Белгородской области объявлена ракетная опасность.",
    "Это уже третий удар по городу за неделю, сообщил губернатор.",
    "Взрывы слышны в Донецке, работает ПВО.",
    "Минобороны России заявило о взятии Бахмута силами группы «Вагнер».",
    "По словам главы региона, в результате обстрела Херсона пострадали четыре человека, повреждены жилые дома "
    "и линия электропередачи.",
    "Враг атаковал Одессу ударными дронами, повреждён склад и ранены два человека.",
]
# Russian text quoting Ukrainian spellings of place names (with і/ї).
RUSSIAN_WITH_UKRAINIAN_NAMES = [
    "Российские войска продолжают штурм Авдіївки, сообщили в Генштабе ВСУ.",
    "Жители Київа и Харківа снова провели ночь в укрытиях.",
    "Под Авдіївкою и Мар'їнкою идут тяжёлые бои, заявил военный эксперт.",
]

ENGLISH = [
    "Russian shelling killed two civilians in Kherson overnight, the regional governor said.",
    "Air raid alert declared across Ukraine.",
    "Ukraine's air force said it shot down 29 of 31 drones launched by Russia overnight.",
    "The Institute for the Study of War said Russian forces made marginal gains near Avdiivka on Thursday.",
]

GERMAN = [
    "Die ukrainische Armee meldet schwere Kämpfe um Bachmut im Osten des Landes.",
    "Russland hat in der Nacht erneut Kiew mit Drohnen und Raketen angegriffen, teilte die Luftwaffe mit.",
    "Explosionen in Odessa gemeldet, Luftalarm im ganzen Land.",
]

OTHERS = [
    ("be", "Беларускія ўлады заявілі аб правядзенні вучэнняў каля мяжы з Украінай."),
    ("bg", "България ще изпрати на Украйна още бронирани машини, съобщи министърът на отбраната."),
    ("pl", "Rosyjskie wojska ostrzelały Chersoń, zginęły dwie osoby, poinformował gubernator."),
    ("fr", "Les forces ukrainiennes ont repoussé plusieurs attaques russes près de Bakhmout."),
    ("es", "Las fuerzas ucranianas repelieron varios ataques rusos cerca de Bajmut, según el Estado Mayor."),
    ("it", "Le forze ucraine hanno respinto diversi attacchi russi vicino a Bakhmut, secondo lo Stato maggiore."),
]


@pytest.mark.parametrize("text", UKRAINIAN)
def test_ukrainian(text: str) -> None:
    """Ukrainian war-news sentences, short and long, are "uk"."""
    assert detect_language(clean_text(text)) == "uk"


def test_ukrainian_without_distinctive_letters() -> None:
    """A Ukrainian sentence with no і/ї/є/ґ is still "uk"."""
    assert not set("іїєґІЇЄҐ") & set(UKRAINIAN_WITHOUT_UK_LETTERS)
    assert detect_language(UKRAINIAN_WITHOUT_UK_LETTERS) == "uk"


@pytest.mark.parametrize("text", RUSSIAN)
def test_russian(text: str) -> None:
    """Russian war-news sentences, short and long, are "ru"."""
    assert detect_language(clean_text(text)) == "ru"


@pytest.mark.parametrize("text", RUSSIAN_WITH_UKRAINIAN_NAMES)
def test_russian_quoting_ukrainian_place_names(text: str) -> None:
    """Ukrainian spellings of place names (Авдіївка, Київ) do not make a Russian sentence Ukrainian."""
    assert set("іїІЇ") & set(text)
    assert detect_language(clean_text(text)) == "ru"


@pytest.mark.parametrize("text", ENGLISH)
def test_english(text: str) -> None:
    """English sentences are "en"."""
    assert detect_language(clean_text(text)) == "en"


@pytest.mark.parametrize("text", GERMAN)
def test_german(text: str) -> None:
    """German sentences are "de"."""
    assert detect_language(clean_text(text)) == "de"


@pytest.mark.parametrize(("expected", "text"), OTHERS)
def test_other_candidates(expected: str, text: str) -> None:
    """The other supported candidates are recognised on a plain news sentence."""
    assert detect_language(text) == expected


def test_all_caps_ukrainian() -> None:
    """An all-caps alert is scored in lower case and still recognised."""
    assert detect_language("ТРИВОГА! ВИБУХИ У КИЄВІ ТА ХАРКОВІ, ПРАЦЮЄ ППО") == "uk"


def test_links_mentions_and_hashtags_are_ignored() -> None:
    """A Russian post full of Latin-script links and handles is still "ru"."""
    text = (
        "Взрывы в Белгороде, работает ПВО https://t.me/example_channel/12345 @example_news "
        "#Belgorod www.example.com/news/article-about-the-attack"
    )
    assert detect_language(text) == "ru"


@pytest.mark.parametrize(
    "text", ["12345 !!!", "", "   ", "🔥🔥🔥", "OK", "10:45 — 12:30", "Бахмут", "https://t.me/x/1"]
)
def test_undetermined_when_too_few_letters(text: str) -> None:
    """Text with too few letters to tell is "und"."""
    assert detect_language(text) == "und"


@pytest.mark.parametrize(
    "text",
    ["日本語のニュース記事です。ウクライナ東部で戦闘が続いている。", "Οι ρωσικές δυνάμεις βομβάρδισαν το Χάρκοβο"],
)
def test_undetermined_for_other_scripts(text: str) -> None:
    """Text in a script none of the candidates uses is "und", not a wild guess."""
    assert detect_language(text) == "und"


def test_only_first_max_chars_are_analysed() -> None:
    """A short English lead followed by a long Russian body is "en" when max_chars covers only the lead."""
    lead = ENGLISH[3] + " "
    body = " ".join(RUSSIAN) * 10
    assert detect_language(lead + body, max_chars=len(lead)) == "en"
    assert detect_language(lead + body) == "ru"


def test_lone_surrogates_do_not_crash() -> None:
    """Undecodable bytes carried as surrogates are ignored."""
    raw = b"\xff\xfeUkrainian forces repelled attacks near Bakhmut".decode("utf-8", errors="surrogateescape")
    assert detect_language(raw) == "en"


def test_seeds_are_english(seeds_dir: Path) -> None:
    """Every seed article, cleaned and stripped as the pipeline does, is "en"."""
    paths = sorted(seeds_dir.glob("*.txt"))
    assert len(paths) == 5
    for path in paths:
        text = strip_boilerplate(clean_text(path.read_text(encoding="utf-8"))).text
        assert detect_language(text) == "en", path.name


def test_required_candidates_are_supported() -> None:
    """The candidate set holds at least en, uk, ru and de, as ISO 639-1 codes."""
    assert {"en", "uk", "ru", "de"} <= set(LANGUAGES)
    assert all(len(code) == 2 and code.islower() for code in LANGUAGES)


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=300))
def test_result_is_always_a_candidate_or_und(text: str) -> None:
    """Any input gives one of LANGUAGES or "und", never an error."""
    assert detect_language(text) in (*LANGUAGES, "und")


def test_concurrent_first_calls_build_the_model_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """Threads racing on the first call share one model build (lazy, thread-safe initialisation)."""
    real = lang._get_model()
    builds: list[int] = []

    def slow_build() -> lang._Model:
        builds.append(threading.get_ident())
        time.sleep(0.05)
        return real

    monkeypatch.setattr(lang, "_model", None)
    monkeypatch.setattr(lang, "_Model", slow_build)
    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(detect_language, [UKRAINIAN[0]] * 8 + [ENGLISH[0]] * 8))
    assert len(builds) == 1
    assert results == ["uk"] * 8 + ["en"] * 8


@pytest.fixture(scope="module")
def reference_model() -> lang._Model:
    """A model forced onto py3langid's own (slow) scoring path."""
    original = lang._Model._build_fast_path

    def broken(self: lang._Model, ident: object) -> None:
        raise RuntimeError("fast path disabled for the test")

    lang._Model._build_fast_path = broken  # type: ignore[method-assign]
    try:
        model = lang._Model()
    finally:
        lang._Model._build_fast_path = original  # type: ignore[method-assign]
    assert model.fallback is not None
    return model


PROBES = [*UKRAINIAN, *RUSSIAN, *ENGLISH, *GERMAN, *(text for _, text in OTHERS), "x", "ab", "", "😀 日本 Straße"]


def test_fast_path_is_active() -> None:
    """With the installed py3langid the vectorised path passes its load-time check and is used."""
    assert lang._get_model().fallback is None


@pytest.mark.parametrize("text", PROBES)
def test_fast_features_equal_py3langid(reference_model: lang._Model, text: str) -> None:
    """The vectorised automaton emits exactly the features py3langid's byte-by-byte walk counts."""
    ident = reference_model.fallback
    data = text.encode("utf-8")
    expected = visit_counts(ident.tk_nextmove, ident._rowbase, ident.tk_output, data) or Counter()
    assert Counter(lang._get_model().features(data).tolist()) == expected


@pytest.mark.parametrize("text", PROBES)
def test_fast_scores_equal_py3langid(reference_model: lang._Model, text: str) -> None:
    """The fast path's scores match py3langid's LanguageIdentifier.rank for every candidate."""
    data = text.encode("utf-8")
    model = lang._get_model()
    for langs in (lang._CYRILLIC_LANGS, lang._LATIN_LANGS):
        np.testing.assert_allclose(model.scores(data, langs), reference_model.scores(data, langs), rtol=1e-4)


@pytest.mark.parametrize("text", [*UKRAINIAN, *RUSSIAN_WITH_UKRAINIAN_NAMES, *ENGLISH])
def test_slow_path_gives_same_answers(monkeypatch: pytest.MonkeyPatch, reference_model: lang._Model, text: str) -> None:
    """When the fast path is unavailable the fallback through py3langid gives the same languages."""
    fast = detect_language(text)
    monkeypatch.setattr(lang, "_model", reference_model)
    assert detect_language(text) == fast
