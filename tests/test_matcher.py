"""Keyword matching: whole words, case folding, phrases across punctuation, any/all/none, filters, spans."""

from __future__ import annotations

import re
from datetime import UTC, datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from monitor.alerting.engine import AlertEngine, alert_id_for, snippet
from monitor.alerting.matcher import CompiledRules, fold_term
from monitor.config import Rule
from monitor.schema import Item


def rule(name: str, **kw: object) -> Rule:
    return Rule.model_validate({"name": name, **kw})


def names(rules: CompiledRules, text: str, **kw: str) -> list[str]:
    return [m.rule.name for m in rules.match(text, **kw)]


def test_whole_words_only() -> None:
    """A term does not match inside a longer word, but does next to punctuation."""
    rules = CompiledRules([rule("tank", any=["tank"])])
    assert names(rules, "Russian tankers refuel") == []
    assert names(rules, "one tank, destroyed") == ["tank"]
    assert names(rules, "(tank)") == ["tank"]


def test_case_insensitive_in_both_scripts() -> None:
    """Latin and Cyrillic terms match regardless of case; ё matches е."""
    rules = CompiledRules([rule("b", any=["Bakhmut", "Бахмут"]), rule("a", any=["Артёмовск"])])
    assert names(rules, "BAKHMUT holds") == ["b"]
    assert names(rules, "бои за бахмут") == ["b"]
    assert names(rules, "город Артемовск") == ["a"]


def test_phrases_match_across_whitespace_and_punctuation() -> None:
    """A phrase matches through line breaks, hyphens and commas, but not with words in between."""
    rules = CompiledRules([rule("cw", any=["chemical weapons"])])
    assert names(rules, "use of chemical\n  weapons") == ["cw"]
    assert names(rules, "chemical-weapons attack") == ["cw"]
    assert names(rules, "chemical and other weapons") == []


def test_any_all_none_logic() -> None:
    """any needs one, all needs each, none vetoes."""
    rules = CompiledRules([rule("r", any=["Bakhmut", "Soledar"], all=["tanks", "assault"], none=["exercise"])])
    assert names(rules, "tanks assault near Soledar") == ["r"]
    assert names(rules, "tanks near Soledar") == []
    assert names(rules, "tanks assault near Kupiansk") == []
    assert names(rules, "tanks assault near Soledar during an exercise") == []


def test_all_only_rule() -> None:
    """A rule with only `all` terms fires when each is present."""
    rules = CompiledRules([rule("r", all=["drone", "Kherson"])])
    assert names(rules, "drone strike in Kherson") == ["r"]
    assert names(rules, "drone strike in Odesa") == []


def test_source_and_channel_filters() -> None:
    """sources and channels restrict where a rule applies; channel match is case-insensitive."""
    rules = CompiledRules([rule("r", any=["Bakhmut"], sources=["telegram"], channels=["AB3Army"])])
    assert names(rules, "Bakhmut", source="telegram", channel="ab3army") == ["r"]
    assert names(rules, "Bakhmut", source="x", channel="ab3army") == []
    assert names(rules, "Bakhmut", source="telegram", channel="nexta_tv") == []


def test_many_rules_share_one_automaton() -> None:
    """A term shared by many rules is one pattern; every rule using it fires."""
    rules = CompiledRules([rule(f"r{i}", any=['"Bakhmut"', f'"term{i}"']) for i in range(50)])
    assert rules.pattern_count == 51
    assert len(names(rules, "Bakhmut")) == 50
    assert names(rules, "term7 only") == ["r7"]


def test_spans_point_at_original_text() -> None:
    """Each hit's span slices the matched words out of the text, in order, without repeats."""
    text = "Near BAKHMUT: chemical,  weapons.\nBakhmut again"
    rules = CompiledRules([rule("r", any=["Bakhmut", "chemical weapons"])])
    [match] = rules.match(text)
    assert [text[h.start : h.end] for h in match.hits] == ["BAKHMUT", "chemical,  weapons", "Bakhmut"]


@settings(max_examples=200, deadline=None)
@given(
    before=st.text(alphabet=st.sampled_from("ab ,.\n-Бахмутё"), max_size=40),
    after=st.text(alphabet=st.sampled_from("ab ,.\n-Бахмутё"), max_size=40),
    term=st.sampled_from(["Bakhmut", "Бахмут", "chemical weapons", "3rd Assault Brigade"]),
)
def test_embedded_term_is_found_with_a_true_span(before: str, after: str, term: str) -> None:
    """A term placed between separators is always found at its true span; other hits are derived forms.

    The alphabet mixes Latin a/b with Cyrillic letters, so the surroundings can spell a homoglyph
    evasion such as "Бaхмут" (Latin a): those are real matches too, but they say how they matched.
    """
    text = f"{before} {term.upper()} {after}"
    rules = CompiledRules([rule("r", any=[term])])
    matches = rules.match(text)
    assert matches, text
    placed = (len(before) + 1, len(before) + 1 + len(term))
    assert placed in {(hit.start, hit.end) for hit in matches[0].hits}, text
    for hit in matches[0].hits:
        assert fold_term(text[hit.start : hit.end]) == fold_term(term) or hit.how != "as written", (text, hit)


def test_engine_builds_deterministic_alerts() -> None:
    """Alert ids depend on rule and item only; matched terms and snippet come from the text."""
    engine = AlertEngine([rule("bakhmut", any=["Bakhmut"], severity="high")])
    item = Item(
        id="corpus:c:1",
        source="corpus",
        channel="c",
        external_id="1",
        text="Intro. " + "x " * 100 + "The battle for Bakhmut continues. " + "y " * 100,
        collected_at=datetime(2023, 1, 1, tzinfo=UTC),
        lang="en",
        content_hash="h",
    )
    [alert] = engine.evaluate(item)
    assert alert.alert_id == alert_id_for("bakhmut", item.id) == engine.evaluate(item)[0].alert_id
    assert alert.severity == "high"
    assert item.text[alert.matched[0].start : alert.matched[0].end] == "Bakhmut"
    assert "The battle for Bakhmut continues." in alert.snippet
    assert alert.snippet.startswith("…") and alert.snippet.endswith("…")
    deleted = Item(**{**{f: getattr(item, f) for f in item.__struct_fields__}, "event": "delete"})
    assert engine.evaluate(deleted) == []


def test_snippet_is_one_line_and_bounded() -> None:
    """Snippets collapse whitespace and keep about the configured context on each side."""
    text = "a\n\nb " * 200 + "TARGET" + " c\nd" * 200
    start = text.index("TARGET")
    cut = snippet(text, start, start + 6, context=50)
    assert "\n" not in cut and "TARGET" in cut
    assert len(cut) <= 6 + 2 * 50 + 4
    assert re.fullmatch(r"…[ab ]+TARGET[cd ]+…", cut)


def test_spans_survive_case_folding_that_changes_length() -> None:
    """Where folding changes a word's length (ß -> ss), spans still point at the right words."""
    text = "Die Straße nach Bachmut. STRASSE gesperrt, Straße offen."
    [match] = CompiledRules([rule("s", any=["strasse"])]).match(text)
    assert [text[h.start : h.end] for h in match.hits] == ["Straße", "STRASSE", "Straße"]


def test_left_word_boundary_in_span_search() -> None:
    """A term inside a longer word earlier in the text does not shift or add spans."""
    text = "Antibakhmut forces; later Bakhmut itself."
    [match] = CompiledRules([rule("b", any=["Bakhmut"])]).match(text)
    assert [(text[h.start : h.end], h.start) for h in match.hits] == [("Bakhmut", text.rindex("Bakhmut"))]


def test_language_filter() -> None:
    """``langs`` restricts a rule to items in those languages; an invalid code is a config error."""
    rules = CompiledRules([rule("r", any=['"Bakhmut"'], langs=["en", "de"])])
    assert names(rules, "Bakhmut", lang="en") == ["r"]
    assert names(rules, "Bakhmut", lang="uk") == []
    assert names(rules, "Bakhmut") == []
    with pytest.raises(ValueError, match="langs"):
        rule("bad", any=["x"], langs=["English"])


def test_near_operator() -> None:
    """``a NEAR/n b`` needs both within n words, in either order; spans cover both sides."""
    rules = CompiledRules([rule("cw", any=["chemical NEAR/3 weapons"])])
    assert names(rules, "chemical and other banned weapons") == ["cw"]  # 3 words between
    assert names(rules, "weapons, mostly chemical ones") == ["cw"]  # reverse order
    assert names(rules, "chemical plants far away from any of the weapons") == []  # 6 words between
    assert names(rules, "chemical only") == []
    text = "They used chemical and other weapons."
    [match] = rules.match(text)
    assert [text[h.start : h.end] for h in match.hits] == ["chemical", "weapons"]


def test_near_in_all_and_none() -> None:
    """NEAR works as an ``all`` requirement and as a ``none`` veto, with inflected sides."""
    rules = CompiledRules([rule("r", any=["Бахмут"], all=["штурм NEAR/2 Бахмут"], none=["exercise NEAR/1 drill"])])
    assert names(rules, "штурм Бахмута продолжается") == ["r"]
    assert names(rules, "Бахмут: штурм отменен, потом долгое ожидание, штурм") == ["r"]
    assert names(rules, "Бахмут стоит крепко, и никакой штурм не помог") == []  # 4 words between
    assert names(rules, "штурм Бахмута, exercise drill") == []


def test_regex_terms() -> None:
    """``re:`` terms are compiled once, searched in the text, and combine with the other terms."""
    rules = CompiledRules(
        [
            rule("losses", any=[r"re:\b\d{1,3}(,\d{3})* tanks\b"]),
            rule("place", any=['"Bakhmut"'], none=[r"re:\bexercise\w*"]),
            rule("both", any=['"Bakhmut"'], all=[r"re:\bd\w+ strikes?\b"]),
        ]
    )
    assert names(rules, "Russia had lost 3,574 tanks") == ["losses"]
    assert names(rules, "Bakhmut drone strike") == ["place", "both"]
    assert names(rules, "Bakhmut exercises") == []
    text = "losses: 12 tanks"
    [match] = rules.match(text)
    assert [(text[h.start : h.end], h.how) for h in match.hits] == [("12 tanks", "regular expression")]


def test_invalid_regex_terms_are_config_errors() -> None:
    """A regex that does not compile, or that matches empty text, is rejected with the reason."""
    with pytest.raises(ValueError, match="not a valid regular expression"):
        rule("bad", any=["re:(unclosed"])
    with pytest.raises(ValueError, match="matches empty text"):
        rule("empty", any=["re:x*"])
