"""Tests for monitor.alerting.forms: required case forms, transliterations, rule syntax, caps and properties."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from monitor.alerting.forms import (
    STOPWORDS,
    expand_term,
    inflect_ru,
    inflect_uk,
    latin_to_cyrillic_candidates,
    transliterate_ru,
    transliterate_uk,
)
from monitor.alerting.matcher import fold_term

REQUIRED = [
    ("Бахмут", {"бахмут", "бахмута", "бахмуту", "бахмуті", "бахмуте", "бахмутом", "bakhmut"}),
    ("Авдіївка", {"авдіївка", "авдіївки", "авдіївці", "авдіївкою", "авдіївку", "avdiivka"}),
    ("Авдеевка", {"авдеевка", "авдеевки", "авдеевке", "авдеевкой", "авдеевку", "avdeevka"}),
    ("Bakhmut", {"bakhmut", "бахмут", "бахмута", "бахмуті"}),
    ("Avdiivka", {"avdiivka", "авдіївка", "авдіївці"}),
    ("Kyiv", {"kyiv", "київ", "києва", "києві"}),
    ("Kiev", {"kiev", "киев", "киева", "киеве"}),
    ("Артемівськ", {"артемівськ", "артемівська", "артемівську", "artemivsk"}),
    ("Харків", {"харків", "харкова", "харкові", "kharkiv"}),
    ("Запоріжжя", {"запоріжжя", "запоріжжі", "запоріжжю", "zaporizhzhia"}),
]


@pytest.mark.parametrize(("term", "expected"), REQUIRED)
def test_required_forms(term: str, expected: set[str]) -> None:
    """Each required surface form is generated for the term."""
    result = expand_term(term)
    assert result.mode == "inflected"
    assert expected <= set(result.forms), expected - set(result.forms)


@pytest.mark.parametrize(
    ("term", "forbidden"),
    [("Бахмут", "бахмутка"), ("Бахмут", "бахм"), ("Харків", "харківа"), ("Київ", "київа")],
)
def test_no_different_word(term: str, forbidden: str) -> None:
    """Expansion never produces a different word or a non-form such as a derived noun or bare stem."""
    assert forbidden not in expand_term(term).forms


@pytest.mark.parametrize("term", ["Бахмут", "Авдіївка", "Kyiv", "Кривий Ріг", "Мар'янка", "Сумы", "Суми"])
def test_no_short_or_stopword_forms(term: str) -> None:
    """No derived word is shorter than 3 letters or a common stopword."""
    for form, how in expand_term(term).forms.items():
        if how != "as written":
            assert all(len(word) >= 3 for word in form.split(" ") if word not in fold_term(term).split()), form
            assert form not in STOPWORDS, form


@pytest.mark.parametrize(
    ("term", "mode", "forms"),
    [
        ('"Бахмут"', "exact", {"бахмут"}),
        ("“Бахмут”", "exact", {"бахмут"}),
        ("«Бахмут»", "exact", {"бахмут"}),
        ("Бахм*", "prefix", {"бахм"}),
        ("Bakhm*", "prefix", {"bakhm"}),
        ('"chemical weapons"', "exact", {"chemical weapons"}),
    ],
)
def test_exact_and_prefix_syntax(term: str, mode: str, forms: set[str]) -> None:
    """Quoted terms give only the folded term; a trailing * gives only the folded stem."""
    result = expand_term(term)
    assert result.mode == mode
    assert set(result.forms) == forms
    assert result.written == term


@pytest.mark.parametrize(
    ("source", "latin"),
    [
        ("Київ", "Kyiv"),
        ("Бахмут", "Bakhmut"),
        ("Авдіївка", "Avdiivka"),
        ("Харків", "Kharkiv"),
        ("Запоріжжя", "Zaporizhzhia"),
        ("Щастя", "Shchastia"),
        ("Єнакієве", "Yenakiieve"),
        ("Згурівка", "Zghurivka"),
        ("Мар'янка", "Marianka"),
        ("Ґалаґан", "Galagan"),
        ("Юрій", "Yurii"),
    ],
)
def test_transliterate_uk(source: str, latin: str) -> None:
    """Ukrainian follows the KMU 2010 table, including word-start variants and zgh."""
    assert transliterate_uk(source) == latin


@pytest.mark.parametrize(
    ("source", "latin"),
    [("Авдеевка", "Avdeevka"), ("Артемовск", "Artemovsk"), ("Бахмут", "Bakhmut"), ("Щёлково", "Shchelkovo"),
     ("Харьков", "Kharkov"), ("Объект", "Obekt"), ("Крым", "Krym"), ("Юля", "Yulya"), ("Цой", "Tsoy")],
)  # fmt: skip
def test_transliterate_ru(source: str, latin: str) -> None:
    """Russian follows the documented BGN/PCGN-style table."""
    assert transliterate_ru(source) == latin


@pytest.mark.parametrize(
    ("word", "expected"),
    [("Avdiivka", "авдіївка"), ("Avdeevka", "авдеевка"), ("Kyiv", "київ"), ("Kiev", "киев"),
     ("Artemivsk", "артемівськ"), ("Mariupol", "маріуполь"), ("Luhansk", "луганськ"), ("Zhytomyr", "житомир")],
)  # fmt: skip
def test_latin_candidates(word: str, expected: str) -> None:
    """The reverse transliteration proposes the real Cyrillic spelling, within the bound of 8."""
    candidates = latin_to_cyrillic_candidates(word)
    assert expected in candidates
    assert len(candidates) <= 8


def test_bakhmut_has_one_candidate() -> None:
    """An unambiguous Latin name gives exactly one Cyrillic spelling."""
    assert latin_to_cyrillic_candidates("Bakhmut") == {"бахмут"}


@pytest.mark.parametrize("term", ["на", "по", "ЗС"])
def test_short_words_not_expanded(term: str) -> None:
    """Words under 3 letters are kept as written and never inflected into other words."""
    assert set(expand_term(term).forms) == {fold_term(term)}


def test_english_words_get_no_candidates() -> None:
    """Words with letters neither scheme uses (c, q, w, x) are treated as English."""
    assert latin_to_cyrillic_candidates("chemical") == set()
    assert set(expand_term("weapons").forms) == {"weapons"}


@pytest.mark.parametrize(
    ("word", "model", "expected"),
    [("бахмут", inflect_uk, {"бахмут", "бахмута", "бахмуті", "бахмутом"}),
     ("київ", inflect_uk, {"києва", "києві", "києвом"}),
     ("авдіївка", inflect_uk, {"авдіївки", "авдіївці", "авдіївкою"}),
     ("покровськ", inflect_uk, {"покровська", "покровську", "покровськом"}),
     ("росія", inflect_uk, {"росії", "росію", "росією"}),
     ("авдеевка", inflect_ru, {"авдеевки", "авдеевке", "авдеевкой"}),
     ("россия", inflect_ru, {"россии", "россию", "россией"}),
     ("киев", inflect_ru, {"киева", "киеве", "киевом"}),
     ("кременная", inflect_ru, {"кременной", "кременную", "кременною"}),
     ("великая", inflect_ru, {"великой", "великую"}),
     ("верхняя", inflect_ru, {"верхней", "верхнюю"})],
)  # fmt: skip
def test_inflection_models(word: str, model: object, expected: set[str]) -> None:
    """The suffix models produce the expected case forms and include the word itself."""
    assert callable(model)
    forms = model(word)
    assert word in forms
    assert expected <= forms


def test_ru_feminine_adjectives_are_not_declined_as_nouns() -> None:
    """Russian -ая/-яя words get adjective endings, not the noun ones ("кременнаю", "верхняю")."""
    assert not {"кременнаю", "кременнае", "кременнаям"} & inflect_ru("кременная")
    assert not {"верхняю", "верхняям"} & inflect_ru("верхняя")
    assert {"армии", "армию"} <= inflect_ru("армия")  # -ия stays a noun


def test_phrase_adjectives_agree_with_the_noun() -> None:
    """A phrase's leading adjective takes adjective case forms (Нової Каховки), and its head noun declines
    even when it has two letters (Часового Яру)."""
    assert {"нової каховки", "новій каховці", "новою каховкою"} <= set(expand_term("Нова Каховка").forms)
    assert {"часового яру", "часовим яром", "часовому яру"} <= set(expand_term("Часів Яр").forms)
    assert {"харківської області", "харківській області"} <= set(expand_term("Харківська область").forms)
    assert expand_term("Нова Каховка").forms["нової каховки"].startswith("uk adjective case form")
    assert not {"яру", "яром"} & set(expand_term("яр").forms)  # a lone short word is not inflected


def test_phrase_inflects_each_word() -> None:
    """A phrase expands word by word and keeps the as-written combination first."""
    forms = expand_term("Кривий Ріг").forms
    assert next(iter(forms)) == "кривий ріг"
    assert {"kryvyi rih", "кривого рогу", "кривому розі"} <= set(forms)


def test_apostrophe_word_is_one_unit() -> None:
    """An apostrophe word inflects only its ending, never the piece before the apostrophe."""
    forms = expand_term("Мар'янка").forms
    assert {"мар янки", "мар янці"} <= set(forms)
    assert all(form.startswith("мар ") or form.isascii() for form in forms)


@pytest.mark.parametrize("cap", [1, 2, 5, 17])
def test_max_forms_cap(cap: int) -> None:
    """The total never exceeds max_forms and the as-written form survives any cap."""
    result = expand_term("Кривий Ріг Бахмут Авдіївка", max_forms=cap)
    assert len(result.forms) == cap
    assert next(iter(result.forms)) == "кривий ріг бахмут авдіївка"


def test_max_forms_must_be_positive() -> None:
    """A cap below 1 is rejected."""
    with pytest.raises(ValueError):
        expand_term("Бахмут", max_forms=0)


@pytest.mark.parametrize("term", [t for t, _ in REQUIRED] + ["Кривий Ріг", "Мар'янка", '"Бахмут"', "Бахм*"])
def test_forms_are_folded(term: str) -> None:
    """Every form is already in fold_term form, so the matcher can search it directly."""
    for form in expand_term(term).forms:
        assert form == fold_term(form)


@pytest.mark.parametrize("term", ["Бахмут", "Kyiv", "Кривий Ріг", "drone strike"])
def test_deterministic(term: str) -> None:
    """The same input gives the same forms in the same order."""
    assert list(expand_term(term).forms.items()) == list(expand_term(term).forms.items())


@settings(max_examples=150, deadline=None)
@given(st.text(alphabet=st.characters(categories=["L", "Zs", "P"]), max_size=40))
def test_never_raises_and_keeps_term(text: str) -> None:
    """expand_term never raises and always includes the folded term when it has word characters."""
    result = expand_term(text, max_forms=50)
    assert len(result.forms) <= 50
    if fold_term(text):
        assert fold_term(text) in result.forms
