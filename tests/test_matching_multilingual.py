"""Quality gate for multilingual matching: a table of terms and texts that must, or must not, match.

Each row is (term, text, expected): expected is the list of matched substrings of the cleaned text,
or [] for "must not match". Rows cover uk/ru case forms, transliterations in both directions,
homoglyph and invisible-character evasions, prefix and exact syntax, and near misses.
"""

from __future__ import annotations

import pytest

from monitor.alerting.matcher import CompiledRules
from monitor.config import Rule
from monitor.normalize.text import clean_text

CASES: list[tuple[str, str, list[str]]] = [
    # --- Ukrainian case forms ---------------------------------------------------------------------
    ("Бахмут", "Бої за Бахмут тривають", ["Бахмут"]),
    ("Бахмут", "На околицях Бахмута тихо", ["Бахмута"]),
    ("Бахмут", "Допомога Бахмуту надходить", ["Бахмуту"]),
    ("Бахмут", "У Бахмуті обстріли", ["Бахмуті"]),
    ("Бахмут", "Під Бахмутом бої", ["Бахмутом"]),
    ("Авдіївка", "Ситуація біля Авдіївки складна", ["Авдіївки"]),
    ("Авдіївка", "В Авдіївці знову вибухи", ["Авдіївці"]),
    ("Авдіївка", "Над Авдіївкою дрони", ["Авдіївкою"]),
    ("Авдіївка", "Захищаємо Авдіївку", ["Авдіївку"]),
    ("Харків", "Ракетний удар по Харкову", ["Харкову"]),
    ("Харків", "Вибухи у Харкові вночі", ["Харкові"]),
    ("Київ", "Атака на Київ відбита", ["Київ"]),
    ("Київ", "Над Києвом працює ППО", ["Києвом"]),
    ("Артемівськ", "Біля Артемівська", ["Артемівська"]),
    # --- Russian case forms -----------------------------------------------------------------------
    ("Авдеевка", "Бои за Авдеевку продолжаются", ["Авдеевку"]),
    ("Авдеевка", "Обстановка в Авдеевке", ["Авдеевке"]),
    ("Авдеевка", "Над Авдеевкой дроны", ["Авдеевкой"]),
    ("Авдеевка", "Окраины Авдеевки", ["Авдеевки"]),
    ("Бахмут", "Штурм Бахмута", ["Бахмута"]),
    ("Бахмут", "Бои в Бахмуте", ["Бахмуте"]),
    ("Артемовск", "Под Артемовском", ["Артемовском"]),
    ("Артёмовск", "Город Артемовск", ["Артемовск"]),  # ё written е
    # --- transliteration, Cyrillic term -> Latin text ---------------------------------------------
    ("Бахмут", "Heavy fighting in Bakhmut", ["Bakhmut"]),
    ("Авдіївка", "Russian assault on Avdiivka", ["Avdiivka"]),
    ("Авдеевка", "Reports from Avdeevka", ["Avdeevka"]),
    ("Київ", "Explosions in Kyiv", ["Kyiv"]),
    ("Киев", "Explosions in Kiev", ["Kiev"]),
    ("Харків", "Power cuts in Kharkiv", ["Kharkiv"]),
    ("Запоріжжя", "Drone attack on Zaporizhzhia", ["Zaporizhzhia"]),
    # --- transliteration, Latin term -> Cyrillic text ---------------------------------------------
    ("Bakhmut", "Бои за Бахмут", ["Бахмут"]),
    ("Bakhmut", "Під Бахмутом", ["Бахмутом"]),
    ("Avdiivka", "Біля Авдіївки", ["Авдіївки"]),
    ("Avdeevka", "В Авдеевке", ["Авдеевке"]),
    ("Kyiv", "Атака на Київ", ["Київ"]),
    ("Kiev", "Удар по Киеву", ["Киеву"]),
    ("Kharkiv", "У Харкові", ["Харкові"]),
    # --- homoglyphs, invisible characters, spacing, marks -----------------------------------------
    ("Bakhmut", "Shelling near Bаkhmut", ["Bаkhmut"]),
    ("Bakhmut", "Shelling near ВАКНМUТ", ["ВАКНМUТ"]),
    ("Бахмут", "Бои за Бaхмут", ["Бaхмут"]),
    ("Бахмут", "Бои за БAXМYТ", ["БAXМYТ"]),
    ("Bakhmut", "near Bak\u200bhmut", ["Bakhmut"]),
    ("Bakhmut", "near Bakh\u00admut", ["Bakhmut"]),
    ("Bakhmut", "near Bak\u2060hmut", ["Bakhmut"]),
    ("Bakhmut", "near B.a.k.h.m.u.t", ["B.a.k.h.m.u.t"]),
    ("Bakhmut", "near B a k h m u t", ["B a k h m u t"]),
    ("Бахмут", "под Б.а.х.м.у.т.", ["Б.а.х.м.у.т"]),
    ("Bakhmut", "near Ｂａｋｈｍｕｔ", ["Bakhmut"]),
    ("Бахмут", "в Бахму́те", ["Бахмуте"]),
    ("Bakhmut", "near B̶a̶k̶h̶m̶u̶t̶", ["Bakhmut"]),
    # --- phrases ----------------------------------------------------------------------------------
    ("chemical weapons", "use of chemical-weapons reported", ["chemical-weapons"]),
    ("chemical weapons", "chemical,\n weapons", ["chemical,\nweapons"]),
    ("3rd Assault Brigade", "the 3rd Assault Brigade posted", ["3rd Assault Brigade"]),
    # --- prefix and exact syntax ------------------------------------------------------------------
    ("Бахм*", "Бахмутский район", ["Бахмутский"]),
    ('"Бахмут"', "у Бахмута", []),
    ('"Бахмут"', "город Бахмут", ["Бахмут"]),
    ('"Bakhmut"', "Бахмут", []),
    # --- near misses that must not match ----------------------------------------------------------
    ("Бахмут", "річка Бахмутка", []),  # a different word with the same beginning
    ("Bakhmut", "Bakhmutka river", []),
    ("Київ", "Київщина", []),
    ("tank", "танк", []),  # a lowercase English word is not transliterated
    ("tank", "tanker", []),
    ("Avdiivka", "Avdiivkaaa", []),
    ("Харків", "Харківщина", []),
    ("Lyman", "Lymanske", []),
    ("Soledar", "Soledarska", []),
    ("Бахм*", "Пробахмут", []),
    ("Bakhmut", "nothing here", []),
    # Several-word names: the adjective agrees with the noun, and a short head noun declines too.
    ("Нова Каховка", "Вибухи біля Нової Каховки та у Новій Каховці", ["Нової Каховки", "Новій Каховці"]),
    ("Велика Новосілка", "Бої за Велику Новосілку", ["Велику Новосілку"]),
    ("Часів Яр", "Штурм Часового Яру, бої під Часовим Яром", ["Часового Яру", "Часовим Яром"]),
    ("Харківська область", "Обстріл Харківської області", ["Харківської області"]),
    ("Часов Яр", "Бои за Часов Яр и у Часова Яра", ["Часов Яр", "Часова Яра"]),
]


@pytest.mark.parametrize(("term", "text", "expected"), CASES, ids=[f"{i:02d}-{c[0]}" for i, c in enumerate(CASES)])
def test_term_matches_as_expected(term: str, text: str, expected: list[str]) -> None:
    """The term matches exactly the listed substrings of the cleaned text (none for a must-not row)."""
    cleaned = clean_text(text)
    result = CompiledRules([Rule(name="r", any=[term])]).match(cleaned)
    got = [cleaned[hit.start : hit.end] for hit in result[0].hits] if result else []
    assert got == expected


def test_the_table_is_big_enough() -> None:
    """The gate holds at least 60 cases, with positives and negatives."""
    assert len(CASES) >= 60
    assert sum(1 for _, _, e in CASES if e) >= 40 and sum(1 for _, _, e in CASES if not e) >= 10
