"""The matcher's capital rule: a name's forms that are also everyday words count only when capitalized.

A rule term written with a capital (Буда, Мирне) is a name; its forms that the gazetteer's curated
lists know as ordinary words (Буда's «буде» is "will be", «мирне» is "peaceful") match only where the
text capitalizes them. These run through ``AlertEngine``, which loads the lists.
"""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from monitor.alerting.common_words import common_words
from monitor.alerting.engine import AlertEngine
from monitor.alerting.matcher import CompiledRules
from monitor.config import Rule
from monitor.schema import Item


def item(text: str) -> Item:
    return Item(
        id="telegram:c:1",
        source="telegram",
        channel="c",
        external_id="1",
        text=text,
        collected_at=datetime(2024, 5, 1, tzinfo=UTC),
        content_hash="0",
        lang="uk",
    )


def fired(rules: list[Rule], text: str) -> list[str]:
    return [alert.rule for alert in AlertEngine(rules).evaluate(item(text))]


def test_the_lists_hold_the_known_collisions() -> None:
    """The everyday words include Буда's «буде» and Мирне's «мирне», but not Київ (marked not common)."""
    words = common_words()
    assert {"буде", "мирне"} <= words
    assert "київ" not in words


@pytest.mark.parametrize(
    ("text", "alerts"),
    [
        ("Завтра буде тепло, кажуть синоптики.", False),  # "will be"
        ("Ворог обстріляв Буди на Чернігівщині.", True),
        ("Вибухи у Буді, повідомляє ОВА.", True),
        ("Село Буда під обстрілом.", True),
        ("Завтра бyде тепло.", False),  # a Latin "y" inside: the de-obfuscated view path
        ("Обстріл Бyди вночі.", True),
    ],
)
def test_a_name_matches_its_everyday_forms_only_when_capitalized(text: str, alerts: bool) -> None:
    """Rule "Буда" fires on Буди/Буді/Буда but not on the verb «буде» written in lower case."""
    assert (fired([Rule(name="buda", any=["Буда"])], text) == ["buda"]) is alerts


def test_a_lower_case_term_keeps_every_form() -> None:
    """A term written in lower case is a word, not a name: «мирне» matches in lower case."""
    assert fired([Rule(name="peace", any=["мирне"])], "Мирне небо і мирне життя.") == ["peace"]
    assert fired([Rule(name="peace", any=["мирне"])], "мирне небо") == ["peace"]


def test_a_capitalized_place_needs_its_capital() -> None:
    """Rule "Мирне" (the town) fires on «Обстріл Мирного», not on «мирне небо»."""
    rules = [Rule(name="myrne", any=["Мирне"])]
    assert fired(rules, "Обстріл Мирного тривав усю ніч.") == ["myrne"]
    assert fired(rules, "Над нами мирне небо.") == []


def test_names_that_are_no_everyday_word_are_unaffected() -> None:
    """Forms that are no everyday word match in any case: «бахмуті» in lower case still counts."""
    assert fired([Rule(name="b", any=["Бахмут"])], "бої у бахмуті тривають") == ["b"]


def test_without_the_lists_nothing_changes() -> None:
    """``CompiledRules`` built without common words (the extractors' name rules) applies no capital rule."""
    rules = CompiledRules([Rule(name="buda", any=["Буда"])])
    assert [m.rule.name for m in rules.match("Завтра буде тепло.")] == ["buda"]


def test_a_form_shared_with_a_lower_case_term_is_not_limited() -> None:
    """When another rule's lower-case term yields the same form, the form matches in lower case for both
    (the capital rule is per form; documented in ``CompiledRules``)."""
    rules = [Rule(name="buda", any=["Буда"]), Rule(name="will", any=["буде"])]
    assert sorted(fired(rules, "Завтра буде тепло.")) == ["buda", "will"]
