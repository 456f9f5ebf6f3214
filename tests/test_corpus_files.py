"""Reading article files into RawItems: formats, identity, title/date extraction and bad input."""

from __future__ import annotations

import json
import os
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from monitor.collectors.corpus_files import (
    DEFAULT_MAX_BYTES,
    DEFAULT_MAX_TEXT_CHARS,
    SUPPORTED_SUFFIXES,
    FileResult,
    Rejected,
    Truncated,
    article_from_text,
    discover,
    extract_published_at,
    extract_title,
    read_corpus_file,
)
from monitor.schema import RawItem, encode, item_id, short_hash

COLLECTED = datetime(2024, 6, 1, 12, 0, tzinfo=UTC)

ARTICLE = """Shelling intensifies on the approaches to Bakhmut

Published: 18 November 2023

Russian artillery struck positions west of Bakhmut through the night, the brigade said.

Fighting continued near the railway line south of the city.
"""


def write(path: Path, content: str | bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(content, str):
        path.write_text(content, encoding="utf-8")
    else:
        path.write_bytes(content)
    return path


def read_one(path: Path, **kwargs: object) -> RawItem:
    result = read_corpus_file(path, collected_at=COLLECTED, **kwargs)  # type: ignore[arg-type]
    assert result.rejected == [], result.rejected
    assert len(result.items) == 1
    return result.items[0]


def rejection(path: Path, **kwargs: object) -> str:
    result = read_corpus_file(path, collected_at=COLLECTED, **kwargs)  # type: ignore[arg-type]
    assert result.items == []
    assert len(result.rejected) == 1
    assert result.rejected[0].path == str(path)
    return result.rejected[0].reason


def midnight(year: int, month: int, day: int) -> datetime:
    return datetime(year, month, day, tzinfo=UTC)


# ------------------------------------------------------------------------------------------------
# API constants


def test_constants_match_the_documented_contract() -> None:
    """The supported suffixes and default limits are the ones the corpus collector and config rely on."""
    assert frozenset({".txt", ".md", ".markdown", ".html", ".htm", ".jsonl", ".json"}) == SUPPORTED_SUFFIXES
    assert DEFAULT_MAX_BYTES == 5 * 1024 * 1024
    assert DEFAULT_MAX_TEXT_CHARS == 200_000


# ------------------------------------------------------------------------------------------------
# each suffix


def test_txt_becomes_a_corpus_item_with_identity_title_and_date(tmp_path: Path) -> None:
    """A .txt file becomes one corpus RawItem: text as written, folder channel, content-hash id, file URL."""
    path = write(tmp_path / "donetsk_desk" / "report.txt", ARTICLE)
    item = read_one(path)
    assert item.source == "corpus"
    assert item.channel == "donetsk_desk"
    assert item.external_id == short_hash(path.read_bytes())
    assert item.url == path.resolve().as_uri()
    assert item.url.startswith("file://")
    assert item.text == ARTICLE
    assert item.title == "Shelling intensifies on the approaches to Bakhmut"
    assert item.published_at == midnight(2023, 11, 18)
    assert item.collected_at == COLLECTED
    assert item.html is None
    assert item.event == "new"


def test_txt_drops_bom_and_normalizes_line_endings(tmp_path: Path) -> None:
    """A UTF-8 BOM is stripped from the text (not the id) and CRLF line endings become LF."""
    raw = b"\xef\xbb\xbf" + ARTICLE.replace("\n", "\r\n").encode()
    path = write(tmp_path / "c" / "bom.txt", raw)
    item = read_one(path)
    assert item.text == ARTICLE
    assert item.external_id == short_hash(raw)
    assert item.title == "Shelling intensifies on the approaches to Bakhmut"


def test_collected_at_defaults_to_now(tmp_path: Path) -> None:
    """Without collected_at the item is stamped with the current UTC time."""
    path = write(tmp_path / "c" / "a.txt", ARTICLE)
    before = datetime.now(UTC)
    item = read_corpus_file(path).items[0]
    assert before <= item.collected_at <= datetime.now(UTC)
    assert item.collected_at.tzinfo is not None


MARKDOWN = """---
title: "Бои под Бахмутом: южный фланг"
date: 2023-07-03
author: Отдел новостей
---

# A heading that is not the title

**Обстановка** на южном фланге _остаётся_ напряжённой, сообщает [сводка](https://example.org/a_(b)).

![схема](map.png)

> Цитата из сводки

Snake_case_names and 2*3*4 stay as they are.
"""


@pytest.mark.parametrize("suffix", [".md", ".markdown"])
def test_markdown_front_matter_gives_title_date_author_and_syntax_is_stripped(tmp_path: Path, suffix: str) -> None:
    """Markdown front matter supplies title/date/author; heading hashes, emphasis, links and images are stripped."""
    item = read_one(write(tmp_path / "ru" / f"note{suffix}", MARKDOWN))
    assert item.title == "Бои под Бахмутом: южный фланг"
    assert item.published_at == midnight(2023, 7, 3)
    assert item.author == "Отдел новостей"
    assert "title:" not in item.text and "---" not in item.text
    assert item.text.startswith("A heading that is not the title\n")
    assert "Обстановка на южном фланге остаётся напряжённой, сообщает сводка." in item.text
    assert "Цитата из сводки" in item.text and "> " not in item.text
    assert "map.png" not in item.text and "схема" not in item.text
    assert "https://example.org" not in item.text
    assert "Snake_case_names and 2*3*4 stay as they are." in item.text


def test_markdown_without_front_matter_takes_first_heading_and_text_date(tmp_path: Path) -> None:
    """Without front matter the first '# ' heading is the title and the date comes from the text."""
    text = "Intro line about the front near Bakhmut.\n\n# Counterattack near *Bakhmut*\n\nOn 3 July 2023 it began.\n"
    item = read_one(write(tmp_path / "md" / "plain.md", text))
    assert item.title == "Counterattack near Bakhmut"
    assert item.published_at == midnight(2023, 7, 3)
    assert "#" not in item.text and "*" not in item.text


@pytest.mark.parametrize("unit", ["[a ", "![a ", "[a](", "*a ", "**a ", "_a ", "~~a ", "`a ", "[a\n"])
def test_markdown_full_of_unmatched_markers_is_read_quickly(tmp_path: Path, unit: str) -> None:
    """Long lines of unclosed link/emphasis markers are stripped in roughly linear time, not quadratic."""
    path = write(tmp_path / "md" / "junk.md", unit * 100_000)
    started = time.monotonic()
    result = read_corpus_file(path, collected_at=COLLECTED)
    assert time.monotonic() - started < 10
    assert len(result.items) == 1


def test_markdown_unclosed_front_matter_is_content(tmp_path: Path) -> None:
    """A leading '---' that is never closed is treated as text, not swallowed as front matter."""
    text = "---\ntitle: not front matter\n\nSoldiers near Bakhmut held the line on 2 June 2023.\n"
    item = read_one(write(tmp_path / "md" / "open.md", text))
    assert "Soldiers near Bakhmut" in item.text
    assert item.published_at == midnight(2023, 6, 2)


HTML_PAGE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<title>Drone crews near Bakhmut | Example Wire</title>
<meta property="og:title" content="Drone crews keep watch over the roads into Bakhmut">
<meta property="article:published_time" content="2023-05-21T08:30:00+00:00">
</head><body>
<header><nav><a href="/">Home</a> <a href="/war">War</a> <a href="/economy">Economy section</a></nav></header>
<div class="share"><a href="#">Share on Facebook</a> <a href="#">Share on X</a></div>
<article>
<h1>Drone crews keep watch over the roads into Bakhmut</h1>
<p>In a cellar a few kilometres north of Bakhmut, four soldiers watch screens showing grey fields and broken
tree lines. Their unit flies small drones day and night to spot infantry before it reaches the trenches.</p>
<p>Russian units answer with jamming that can bring a quadcopter down in seconds, so the crews change
frequencies several times a day and build many of their drones from parts sent by volunteers.</p>
<p>Fighting continues on the high ground north and south of the city, where both sides try to control the
roads that supply the troops inside Bakhmut.</p>
</article>
<footer><p>&copy; 2023 Example Wire. All rights reserved.</p><a href="/privacy">Privacy policy</a></footer>
</body></html>
"""


@pytest.mark.parametrize("suffix", [".html", ".htm"])
def test_html_main_text_title_and_date_come_from_the_article(tmp_path: Path, suffix: str) -> None:
    """HTML yields the article body (no nav, share bar or footer), its title and date, and no raw HTML."""
    item = read_one(write(tmp_path / "web" / f"page{suffix}", HTML_PAGE))
    assert "In a cellar a few kilometres north of Bakhmut" in item.text
    assert "roads that supply the troops inside Bakhmut" in item.text
    for furniture in ("Share on Facebook", "Economy section", "All rights reserved", "Privacy policy"):
        assert furniture not in item.text
    assert item.title == "Drone crews keep watch over the roads into Bakhmut"
    assert item.published_at == midnight(2023, 5, 21)
    assert item.html is None
    assert item.channel == "web"
    assert item.external_id == short_hash(HTML_PAGE.encode())


def test_html_without_date_metadata_falls_back_to_text_date(tmp_path: Path) -> None:
    """When the page has no date metadata the publication date is taken from the article text."""
    body = " ".join(["Artillery duels continued around Bakhmut through the night."] * 8)
    page = f"<html><body><article><p>Published: 4 April 2023</p><p>{body}</p></article></body></html>"
    item = read_one(write(tmp_path / "web" / "nodate.html", page))
    assert item.published_at == midnight(2023, 4, 4)
    assert "Artillery duels continued around Bakhmut" in item.text


@pytest.mark.parametrize(
    "content",
    [
        "<html><body><div><p>unclosed",
        "<html>",
        "<<<>>>&&&;;<!-- --><![CDATA[ ]]></p></div></body>",
        "<html><body><script>var x = '<p>';</script></body></html>",
        "\x01\x02junk<<>>\x03" + "z" * 80,
        "<" * 5000,
        "<div>" * 3000,
    ],
)
def test_malformed_html_gives_an_item_or_a_rejection_never_an_exception(tmp_path: Path, content: str) -> None:
    """Broken or junk HTML is either read or rejected with a reason; it never raises."""
    path = write(tmp_path / "web" / "broken.html", content)
    result = read_corpus_file(path, collected_at=COLLECTED)
    assert len(result.items) + len(result.rejected) == 1
    for bad in result.rejected:
        assert bad.path == str(path) and bad.reason


def test_html_with_no_article_text_is_rejected_with_reason(tmp_path: Path) -> None:
    """An HTML page with nothing extractable is rejected as 'no article text found in HTML'."""
    path = write(tmp_path / "web" / "empty.html", "<html><head><title>x</title></head><body></body></html>")
    assert rejection(path) == "no article text found in HTML"


def test_jsonl_lines_are_raw_items_with_their_own_identity(tmp_path: Path) -> None:
    """Each .jsonl line is decoded as a RawItem and kept as written (source, channel, ids, times)."""
    lines = [
        {
            "source": "telegram_web",
            "channel": "example_brigade",
            "external_id": str(n),
            "text": f"Post {n} from near Bakhmut",
            "collected_at": "2023-05-20T10:15:00Z",
            "published_at": "2023-05-20T09:58:00Z",
        }
        for n in (1, 2)
    ]
    path = write(tmp_path / "posts" / "feed.jsonl", "\n".join(json.dumps(line) for line in lines) + "\n")
    result = read_corpus_file(path, collected_at=COLLECTED)
    assert result.rejected == [] and result.truncated == []
    assert [item.external_id for item in result.items] == ["1", "2"]
    assert {item.source for item in result.items} == {"telegram_web"}
    assert {item.channel for item in result.items} == {"example_brigade"}
    assert result.items[0].published_at == datetime(2023, 5, 20, 9, 58, tzinfo=UTC)
    assert result.items[0].collected_at == datetime(2023, 5, 20, 10, 15, tzinfo=UTC)


def test_bad_jsonl_lines_are_rejected_alone_and_good_lines_survive(tmp_path: Path) -> None:
    """Invalid .jsonl lines become 'path:LINE' rejections; blank lines are skipped; the good lines still load."""
    good = {
        "source": "telegram_web",
        "channel": "c",
        "external_id": "1",
        "text": "ok",
        "collected_at": "2023-05-20T10:15:00Z",
    }
    missing_text = {k: v for k, v in good.items() if k != "text"}
    bad_source = {**good, "source": "carrier_pigeon"}
    content = b"\n".join(
        [
            json.dumps(good).encode(),  # 1
            b"",  # 2 blank
            json.dumps(missing_text).encode(),  # 3
            b"{not json",  # 4
            b'{"text": "\xff"}',  # 5 invalid UTF-8
            json.dumps(bad_source).encode(),  # 6
            b"   ",  # 7 blank
            json.dumps({**good, "external_id": "8"}).encode(),  # 8
        ]
    )
    path = write(tmp_path / "p" / "mixed.jsonl", content)
    result = read_corpus_file(path, collected_at=COLLECTED)
    assert [item.external_id for item in result.items] == ["1", "8"]
    by_path = {bad.path: bad.reason for bad in result.rejected}
    assert sorted(by_path) == [f"{path}:3", f"{path}:4", f"{path}:5", f"{path}:6"]
    assert by_path[f"{path}:3"] == "line 3: RawItem: Object missing required field `text`"
    assert by_path[f"{path}:4"].startswith("line 4: RawItem: ")
    assert by_path[f"{path}:5"].startswith("line 5: not valid UTF-8 (invalid byte 0xff")
    assert "source" in by_path[f"{path}:6"]


# ------------------------------------------------------------------------------------------------
# identity


def test_rereading_an_unchanged_file_gives_the_identical_item(tmp_path: Path) -> None:
    """Two reads of an unchanged file give the same external_id and, at the same collected_at, the same item."""
    path = write(tmp_path / "c" / "a.txt", ARTICLE)
    first, second = read_one(path), read_one(path)
    assert first.external_id == second.external_id
    assert encode(first) == encode(second)


def test_changing_the_content_changes_the_external_id(tmp_path: Path) -> None:
    """The external_id is a content hash: an edited file is a new item."""
    path = write(tmp_path / "c" / "a.txt", ARTICLE)
    before = read_one(path).external_id
    write(path, ARTICLE + "\nUpdate: the shelling continued.\n")
    assert read_one(path).external_id != before


def test_same_bytes_in_two_folders_differ_only_by_channel(tmp_path: Path) -> None:
    """The channel is the parent folder's name, so the same file in two folders has two item ids."""
    one = read_one(write(tmp_path / "kyiv_desk" / "a.txt", ARTICLE))
    two = read_one(write(tmp_path / "field_notes" / "a.txt", ARTICLE))
    assert (one.channel, two.channel) == ("kyiv_desk", "field_notes")
    assert one.external_id == two.external_id
    assert item_id(one) != item_id(two)


@pytest.mark.parametrize(
    "spelling",
    ["corpus", "corpus/", "./corpus", "./corpus/", "corpus/a.txt", "ABSOLUTE", "ABSOLUTE/", "sub/../corpus"],
)
def test_identity_does_not_depend_on_how_the_path_is_spelled(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, spelling: str
) -> None:
    """Relative, absolute, trailing-slash and '..' spellings of the same file give the same channel, id and URL."""
    write(tmp_path / "corpus" / "a.txt", ARTICLE)
    (tmp_path / "sub").mkdir()
    monkeypatch.chdir(tmp_path)
    given = spelling.replace("ABSOLUTE", str(tmp_path / "corpus"))
    files, rejected = discover([given])
    assert rejected == []
    assert len(files) == 1
    item = read_one(files[0])
    reference = read_one(tmp_path / "corpus" / "a.txt")
    assert (item.channel, item.external_id, item.url) == ("corpus", reference.external_id, reference.url)
    assert item_id(item) == item_id(reference)


def test_channel_of_a_file_given_by_bare_name_is_its_real_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A file named without any folder part still gets its resolved parent folder as channel."""
    write(tmp_path / "frontline" / "a.txt", ARTICLE)
    monkeypatch.chdir(tmp_path / "frontline")
    assert read_one(Path("a.txt")).channel == "frontline"


# ------------------------------------------------------------------------------------------------
# seeds (real scraped articles, skipped when ../shared/seeds is absent)

SEED_EXPECTATIONS = {
    "000": (
        "Ukrainian and Russian soldiers brutally shoot each other with fire, rockets and rifles. "
        "Will Russia retake Bakhmut?",
        midnight(2023, 11, 18),
    ),
    "001": ("Ukraine says battle for Bakhmut continues in the outskirts of the city", midnight(2023, 5, 26)),
    "002": ("Russian Forces Achieving Progress in Bakhmut", None),
    "003": ("Ukrainian Forces Pummel Russian Positions Near Bakhmut", midnight(2023, 3, 24)),
    "004": ("The battle for Bakhmut is not over yet, according to Ukraine", None),
}


@pytest.mark.parametrize("prefix", sorted(SEED_EXPECTATIONS))
def test_seed_article_title_and_date(seeds_dir: Path, prefix: str) -> None:
    """Each real seed article gets a sensible headline and the publication date its text states (or none)."""
    (path,) = sorted(seeds_dir.glob(f"{prefix}_*.txt"))
    item = read_one(path)
    title, published = SEED_EXPECTATIONS[prefix]
    assert item.title == title
    assert item.published_at == published
    assert item.text == path.read_text(encoding="utf-8").replace("\r\n", "\n")
    assert item.external_id == short_hash(path.read_bytes())
    assert item.channel == seeds_dir.resolve().name


def test_seed_folder_reads_completely(seeds_dir: Path) -> None:
    """Every seed file is discovered and read without rejection or truncation."""
    files, rejected = discover([seeds_dir])
    assert rejected == [] and len(files) == len(list(seeds_dir.glob("*.txt")))
    for path in files:
        result = read_corpus_file(path, collected_at=COLLECTED)
        assert (len(result.items), result.rejected, result.truncated) == (1, [], [])
        assert "Bakhmut" in result.items[0].text


# ------------------------------------------------------------------------------------------------
# extract_title on synthetic layouts


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "Russian assault stalls at the canal\n\nBody text follows here and is long enough.\n",
            "Russian assault stalls at the canal",
        ),
        # navigation lines and a byline before the headline are skipped
        (
            "No Script\nPlease Wait...\nSkip to content\nBy Staff Reporter\nFrom: Jane Example\n"
            "Heavy fighting reported near the railway\n\nThe first paragraph of the body ends here.\n",
            "Heavy fighting reported near the railway",
        ),
        # a headline printed twice wins over an earlier section label
        (
            "Loading...\nFront Line Digest June 2023\n\nCounteroffensive gains ground in the south\n"
            "Counteroffensive gains ground in the south\n\nBody.\n",
            "Counteroffensive gains ground in the south",
        ),
        # breadcrumb prefix stripped when the remainder repeats below
        (
            "Home News Europe Shelling cuts power in three districts\n\n"
            "Shelling cuts power in three districts\n\nBody.\n",
            "Shelling cuts power in three districts",
        ),
        # a date-marker navigation line is not a headline
        (
            "date 2023-11-18 Home page politics\n\nWhat comes next for the eastern front?\n\nBody.",
            "What comes next for the eastern front?",
        ),
        # captions with credits and sharing widgets are skipped
        (
            "Share this article\nA soldier in a trench © Example Photo Agency\nADVERTISEMENT\n"
            "Winter tests supply lines in Donbas\n\nBody text.\n",
            "Winter tests supply lines in Donbas",
        ),
        # Cyrillic headlines and boilerplate
        (
            "Поділитися\nЧитайте також\nСили оборони тримають позиції біля Бахмута\n\nТекст.",
            "Сили оборони тримають позиції біля Бахмута",
        ),
        # a long cookie notice before the headline is boilerplate, not the start of the body
        (
            "We use cookies to improve your experience on our site. By continuing to browse the site you "
            "agree to our use of cookies.\nEvacuations resume along the eastern highway\n\nBody text.\n",
            "Evacuations resume along the eastern highway",
        ),
        # headlines that merely start with "By" or "From" are not bylines
        (
            "By the numbers: a year of fighting in Donbas\n\nBody text.\n",
            "By the numbers: a year of fighting in Donbas",
        ),
        ("From Bakhmut to Avdiivka: how the front moved\n\nBody.\n", "From Bakhmut to Avdiivka: how the front moved"),
        (
            "Автор: Олена Приклад\nВід світанку до ночі: день на позиціях\n\nТекст.\n",
            "Від світанку до ночі: день на позиціях",
        ),
        # a markdown heading at the top
        ("# Night strikes on the city\n\nText.", "Night strikes on the city"),
    ],
)
def test_extract_title_heuristics(text: str, expected: str) -> None:
    """The headline is found past navigation, bylines, credits and breadcrumbs, preferring a repeated line."""
    assert extract_title(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "",
        "   \n\n  ",
        "Short\n\nTiny.\n",
        "Artillery fire continued through the night near the city, according to the regional administration.\n",
        "ADVERTISEMENT\nShare this article\nExit mobile version\n",
        # a subheading after the first paragraph is not the headline
        "Shelling went on through the night, the regional administration said on Monday morning.\n\n"
        "What the strikes mean for the region\n\nMore text follows.\n",
    ],
)
def test_extract_title_returns_none_without_a_headline(text: str) -> None:
    """Text that starts straight with prose, or holds only boilerplate, has no title."""
    assert extract_title(text) is None


def test_extract_title_ignores_a_line_repeated_far_below_the_top() -> None:
    """A caption repeated deep in the body does not beat the headline on the first line."""
    body = "\n\n".join(f"Paragraph {n} describes the fighting in detail and ends with a full stop." for n in range(20))
    caption = "Soldiers fire a mortar near the front (Example Agency)"
    text = f"Mortar crews dig in for a long winter\n\n{caption}\n\n{body}\n\n{caption}\n"
    assert extract_title(text) == "Mortar crews dig in for a long winter"


# ------------------------------------------------------------------------------------------------
# extract_published_at


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("The report came out on 2023-11-18 in the morning.", midnight(2023, 11, 18)),
        ("Filed 2023-11-18T14:05:00+02:00 by the desk.", datetime(2023, 11, 18, 12, 5, tzinfo=UTC)),
        ("Filed 2023-11-18T14:05:00Z by the desk.", datetime(2023, 11, 18, 14, 5, tzinfo=UTC)),
        ("Footage released on Friday, Mar. 24, 2023 shows the strikes.", midnight(2023, 3, 24)),
        ("Footage released on March 24, 2023 shows the strikes.", midnight(2023, 3, 24)),
        ("A soldier in a trench, Friday, May 26, 2023Libkos/Agency", midnight(2023, 5, 26)),
        ("The images were released on 24th March 2023 by the brigade.", midnight(2023, 3, 24)),
        ("The images were released on 24 March 2023 by the brigade.", midnight(2023, 3, 24)),
        ("The images were released on the 1st of June, 2023 by the brigade.", midnight(2023, 6, 1)),
        ("Станом на 18.11.2023 ситуація не змінилася.", midnight(2023, 11, 18)),
        ("Бої тривали 18 листопада 2023 року.", midnight(2023, 11, 18)),
        ("Бої тривали 3 січня 2024 р.", midnight(2024, 1, 3)),
        ("Бои продолжались 18 ноября 2023 года.", midnight(2023, 11, 18)),
        ("Бои продолжались 9 мая 2023 года.", midnight(2023, 5, 9)),
        ("Sept 5, 2023: heavy fighting reported.", midnight(2023, 9, 5)),
    ],
)
def test_extract_published_at_formats(text: str, expected: datetime) -> None:
    """Each supported date format (ISO, English month names, ordinals, dotted, uk/ru genitive months) is read."""
    assert extract_published_at(text, now=COLLECTED) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("date 2023-11-18 Home page\n\nThe clashes of 20 November 2023 were the fiercest.", midnight(2023, 11, 18)),
        ("Published: Friday, 24 March 2023\n\nBy 2 April 2023 the lines had shifted.", midnight(2023, 3, 24)),
        ("Published on May 1, 2023\nLater, on 9 May 2023, a parade.", midnight(2023, 5, 1)),
        ("Опубліковано 12 червня 2023, 09:40\n\nДо 20 червня 2023 бої тривали.", midnight(2023, 6, 12)),
        ("Опубликовано: 18.11.2023\n\nК 25 ноября 2023 года ситуация изменилась.", midnight(2023, 11, 18)),
    ],
)
def test_explicit_publication_marker_wins_over_later_dates(text: str, expected: datetime) -> None:
    """A 'date' / 'Published' / 'Опубліковано' / 'Опубликовано' marker beats any other date in the text."""
    assert extract_published_at(text, now=COLLECTED) == expected


def test_without_marker_the_latest_date_is_the_publication_date() -> None:
    """Without a marker the latest full date mentioned is taken (articles follow the events they report)."""
    text = "The war began on 24th February 2022. By Mar. 24, 2023 losses had mounted; on 1 March 2023 too."
    assert extract_published_at(text, now=COLLECTED) == midnight(2023, 3, 24)


def test_the_word_date_in_prose_is_not_a_marker() -> None:
    """'date' inside a sentence without a date right after it does not count as a publication marker."""
    text = "The date the video was recorded is unknown. It surfaced on 5 May 2023 and again on 1 June 2023."
    assert extract_published_at(text, now=COLLECTED) == midnight(2023, 6, 1)


def test_future_dates_are_ignored() -> None:
    """Dates after collected_at (plus a day of slack) are plans or typos, not the publication date."""
    text = "Talks are scheduled for 10 October 2024. The strike happened on 3 May 2024."
    assert extract_published_at(text, now=COLLECTED) == midnight(2024, 5, 3)
    assert extract_published_at("Published: 10 October 2024", now=COLLECTED) is None


@pytest.mark.parametrize(
    "text",
    [
        "",
        "On Thursday, November 16, the brigade posted a video.",
        "The images were obtained on 24th March, along with a statement.",
        "Resistance and Liberation May 2023",
        "Wagner will leave from May 25 to June 1, he said.",
        "Invalid days: 31.02.2023 and 2023-13-45 and 30 лютого 2023.",
        "the army may 26, 2023 units",  # lowercase 'may' is the verb, not a month
        "Build 12.11.20231 of the map",
    ],
)
def test_no_full_date_means_none(text: str) -> None:
    """Dates without a year, month-and-year only, impossible dates and non-dates give None."""
    assert extract_published_at(text, now=COLLECTED) is None


# ------------------------------------------------------------------------------------------------
# article_from_text


def test_article_from_text_builds_a_corpus_item() -> None:
    """article_from_text makes a corpus RawItem with extracted title/date and the text's hash as default id."""
    item, cut = article_from_text(ARTICLE, channel="match", collected_at=COLLECTED)
    assert cut is None
    assert (item.source, item.channel, item.external_id) == ("corpus", "match", short_hash(ARTICLE))
    assert item.title == "Shelling intensifies on the approaches to Bakhmut"
    assert item.published_at == midnight(2023, 11, 18)
    assert item.collected_at == COLLECTED
    assert item.url is None and item.html is None


def test_article_from_text_uses_given_id_and_url() -> None:
    """An explicit external_id and url are used as given."""
    item, _ = article_from_text("Some text near Bakhmut", channel="c", external_id="abc", url="file:///x.txt")
    assert (item.external_id, item.url) == ("abc", "file:///x.txt")


def test_article_from_text_truncates_and_reports() -> None:
    """A text over max_text_chars is cut at a boundary and the cut is returned, never silent."""
    text = "\n\n".join(["word " * 30] * 10)
    item, cut = article_from_text(text, channel="c", max_text_chars=400)
    assert cut is not None
    assert cut.original_chars == len(text)
    assert cut.kept_chars == len(item.text) <= 400
    assert text.startswith(item.text)


# ------------------------------------------------------------------------------------------------
# bad input


def test_invalid_utf8_is_rejected_with_byte_and_offset(tmp_path: Path) -> None:
    """Invalid UTF-8 is rejected with the offending byte and its offset."""
    path = write(tmp_path / "c" / "latin1.txt", b"Hello, world\xff and more")
    assert rejection(path) == "not valid UTF-8 (invalid byte 0xff at offset 12)"


def test_invalid_utf8_offset_counts_the_bom(tmp_path: Path) -> None:
    """The reported offset is in the file's bytes, including a leading BOM."""
    path = write(tmp_path / "c" / "bom.txt", b"\xef\xbb\xbfAB\xc3(")
    assert rejection(path) == "not valid UTF-8 (invalid byte 0xc3 at offset 5)"


@pytest.mark.parametrize("content", [b"", b"   \n\t\n  ", b"\xef\xbb\xbf", b"\xef\xbb\xbf \n"])
@pytest.mark.parametrize("suffix", [".txt", ".md", ".html", ".jsonl", ".json"])
def test_empty_or_blank_file_is_rejected(tmp_path: Path, content: bytes, suffix: str) -> None:
    """Empty and whitespace-only files are rejected as 'empty file'."""
    assert rejection(write(tmp_path / "c" / f"blank{suffix}", content)) == "empty file"


def test_file_with_nul_bytes_is_rejected_as_binary(tmp_path: Path) -> None:
    """A file containing NUL bytes is rejected as binary."""
    path = write(tmp_path / "c" / "image.txt", b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(range(256)))
    assert rejection(path) == "binary file (NUL bytes)"


def test_file_full_of_control_characters_is_rejected_as_binary(tmp_path: Path) -> None:
    """More than 10% control characters in the first 8 KB marks a file as binary."""
    path = write(tmp_path / "c" / "ctl.txt", b"abc\x01\x02\x03\x04\x05def" * 50)
    assert rejection(path).startswith("binary file (")


def test_a_few_control_characters_are_tolerated(tmp_path: Path) -> None:
    """Occasional control characters (under 10%) do not make a text file binary."""
    item = read_one(write(tmp_path / "c" / "ok.txt", "Fighting near Bakhmut\x07 continued through the night.\n"))
    assert "\x07" in item.text


def test_utf16_file_is_rejected_with_advice(tmp_path: Path) -> None:
    """A UTF-16 file is rejected with a hint to save it as UTF-8."""
    path = write(tmp_path / "c" / "wide.txt", "Бахмут".encode("utf-16"))
    assert "UTF-8" in rejection(path)


def test_oversize_file_is_rejected_before_reading(tmp_path: Path) -> None:
    """A file over max_bytes is rejected with its size, the limit and the setting to change."""
    path = write(tmp_path / "c" / "big.txt", "x" * 150)
    assert rejection(path, max_bytes=100) == (
        "file is 150 bytes, over the 100 bytes limit (collectors.corpus.max_bytes)"
    )
    assert read_one(path, max_bytes=150).text == "x" * 150


def test_oversize_message_uses_megabytes(tmp_path: Path) -> None:
    """Large sizes are reported in MB, matching the configured default limit."""
    path = tmp_path / "c" / "huge.txt"
    path.parent.mkdir()
    with path.open("wb") as handle:
        handle.truncate(int(6.2 * 1024 * 1024))  # sparse: only stat() may look at it
    assert rejection(path) == "file is 6.2 MB, over the 5.0 MB limit (collectors.corpus.max_bytes)"


def test_long_text_is_truncated_at_a_paragraph_boundary_and_reported(tmp_path: Path) -> None:
    """Text over max_text_chars is cut at a paragraph break at or below the limit, and reported in truncated."""
    paragraphs = [f"Paragraph {n} about the fighting near Bakhmut continues here." for n in range(40)]
    text = "\n\n".join(paragraphs) + "\n"
    path = write(tmp_path / "c" / "long.txt", text)
    result = read_corpus_file(path, max_text_chars=500, collected_at=COLLECTED)
    (item,) = result.items
    assert len(item.text) <= 500
    assert item.text.endswith("continues here.")
    assert text.startswith(item.text)
    assert result.truncated == [Truncated(str(path), len(text), len(item.text))]
    assert result.rejected == []


def test_unbroken_text_is_cut_hard_at_the_limit(tmp_path: Path) -> None:
    """A text with no whitespace at all is cut exactly at max_text_chars."""
    path = write(tmp_path / "c" / "blob.txt", "Б" * 1000)
    result = read_corpus_file(path, max_text_chars=300, collected_at=COLLECTED)
    assert result.items[0].text == "Б" * 300
    assert result.truncated == [Truncated(str(path), 1000, 300)]


def test_long_jsonl_text_is_truncated_per_line(tmp_path: Path) -> None:
    """A .jsonl item with over-long text is truncated and reported as 'path:LINE'."""
    line = {
        "source": "x",
        "channel": "c",
        "external_id": "9",
        "text": "word " * 100,
        "collected_at": "2023-05-20T10:15:00Z",
    }
    path = write(tmp_path / "p" / "long.jsonl", json.dumps(line) + "\n")
    result = read_corpus_file(path, max_text_chars=120, collected_at=COLLECTED)
    assert len(result.items[0].text) <= 120
    assert result.truncated == [Truncated(f"{path}:1", 500, len(result.items[0].text))]


def test_text_within_the_limit_is_not_reported(tmp_path: Path) -> None:
    """A text exactly at max_text_chars is kept whole and not reported as truncated."""
    path = write(tmp_path / "c" / "exact.txt", "a" * 200)
    result = read_corpus_file(path, max_text_chars=200, collected_at=COLLECTED)
    assert result.truncated == [] and result.items[0].text == "a" * 200


def test_unsupported_suffix_is_rejected(tmp_path: Path) -> None:
    """A file with an unsupported suffix is rejected by read_corpus_file and, when named, by discover."""
    path = write(tmp_path / "c" / "report.pdf", b"%PDF-1.7")
    assert rejection(path) == "unsupported file type '.pdf'"
    assert discover([path]) == ([], [Rejected(str(path), "unsupported file type '.pdf'")])


def test_missing_path_is_rejected(tmp_path: Path) -> None:
    """A path that does not exist is a rejection, not an exception, in both discover and read_corpus_file."""
    missing = tmp_path / "nope" / "gone.txt"
    files, rejected = discover([missing])
    assert files == [] and [bad.path for bad in rejected] == [str(missing)]
    assert rejection(missing) == "no such file"


def test_directory_passed_to_read_corpus_file_is_rejected(tmp_path: Path) -> None:
    """read_corpus_file on a folder rejects it rather than raising."""
    folder = tmp_path / "folder.txt"
    folder.mkdir()
    assert rejection(folder) == "not a regular file"


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="root can read anything")
def test_unreadable_file_is_rejected(tmp_path: Path) -> None:
    """A file that cannot be opened is rejected with the OS reason."""
    path = write(tmp_path / "c" / "locked.txt", ARTICLE)
    path.chmod(0)
    try:
        assert rejection(path).startswith("cannot read file")
    finally:
        path.chmod(0o644)


def test_one_bad_file_does_not_affect_the_others(tmp_path: Path) -> None:
    """Reading a folder with bad files still yields every good file's item."""
    write(tmp_path / "mix" / "a_good.txt", ARTICLE)
    write(tmp_path / "mix" / "b_bad.txt", b"\xff\xfe\x00\x00")
    write(tmp_path / "mix" / "c_empty.md", b"")
    write(tmp_path / "mix" / "d_good.md", "# Second article about Bakhmut\n\nText.\n")
    files, rejected = discover([tmp_path / "mix"])
    assert rejected == []
    results = [read_corpus_file(path, collected_at=COLLECTED) for path in files]
    assert [len(r.items) for r in results] == [1, 0, 0, 1]
    assert [len(r.rejected) for r in results] == [0, 1, 1, 0]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.binary(max_size=2048), suffix=st.sampled_from(sorted(SUPPORTED_SUFFIXES)))
def test_arbitrary_bytes_never_raise(tmp_path: Path, data: bytes, suffix: str) -> None:
    """Any bytes in any supported file type give items, rejections or (empty export) a warning, never an exception."""
    path = write(tmp_path / "fuzz" / f"f{suffix}", data)
    result = read_corpus_file(path, max_text_chars=500, collected_at=COLLECTED)
    assert isinstance(result, FileResult)
    assert result.items or result.rejected or result.warnings
    for item in result.items:
        assert len(item.text) <= 500


@settings(max_examples=200, deadline=None)
@given(text=st.text(max_size=600))
def test_extractors_never_raise_and_dates_are_utc(text: str) -> None:
    """extract_title and extract_published_at accept any text; a found date is timezone-aware UTC."""
    title = extract_title(text)
    assert title is None or 0 < len(title) <= 200
    found = extract_published_at(text, now=COLLECTED)
    assert found is None or found.utcoffset() == timedelta(0)


# ------------------------------------------------------------------------------------------------
# discover


def test_discover_walks_folders_sorted_skipping_hidden_and_unsupported(tmp_path: Path) -> None:
    """Folders are expanded recursively in sorted order; hidden entries and unsupported files are skipped."""
    root = tmp_path / "c"
    for rel in [
        "b.txt", "a.md", "z/1.html", "z/0.jsonl", "y/deep/x.htm", "A.TXT",
        ".hidden.txt", ".git/config.txt", "z/.cache/c.txt", "notes.pdf", "noext", "m.markdown",
    ]:  # fmt: skip
        write(root / rel, "Fighting near Bakhmut")
    files, rejected = discover([root])
    assert rejected == []
    assert [path.relative_to(root).as_posix() for path in files] == [
        "A.TXT", "a.md", "b.txt", "m.markdown", "y/deep/x.htm", "z/0.jsonl", "z/1.html",
    ]  # fmt: skip
    assert discover([root]) == (files, [])  # deterministic


def test_discover_keeps_argument_order_and_lists_each_file_once(tmp_path: Path) -> None:
    """Paths are expanded in the order given, and a file reached twice is listed once."""
    write(tmp_path / "one" / "a.txt", "x")
    write(tmp_path / "two" / "b.txt", "y")
    files, rejected = discover([tmp_path / "two", tmp_path / "one", tmp_path / "one" / "a.txt", str(tmp_path / "two")])
    assert rejected == []
    assert files == [tmp_path / "two" / "b.txt", tmp_path / "one" / "a.txt"]


def test_discover_accepts_an_explicit_hidden_file_and_reports_every_bad_path(tmp_path: Path) -> None:
    """A hidden file named explicitly is read; each missing or unsupported path gets its own rejection."""
    hidden = write(tmp_path / ".draft.txt", "x")
    files, rejected = discover(
        [hidden, tmp_path / "missing", tmp_path / "missing.txt", write(tmp_path / "a.docx", "x")]
    )
    assert files == [hidden]
    assert [bad.path for bad in rejected] == [
        str(tmp_path / "missing"),
        str(tmp_path / "missing.txt"),
        str(tmp_path / "a.docx"),
    ]
    assert rejected[2].reason == "unsupported file type '.docx'"


def test_discover_of_an_empty_folder_is_empty(tmp_path: Path) -> None:
    """An empty folder yields no files and no rejections."""
    (tmp_path / "empty").mkdir()
    assert discover([tmp_path / "empty"]) == ([], [])


# ------------------------------------------------------------------------------------------------
# the sample corpus shipped in corpus/

BAKHMUT_WORDS = ("Bakhmut", "Бахмут")


def test_sample_corpus_reads_cleanly_into_nine_items(sample_corpus_dir: Path) -> None:
    """Every sample corpus file reads with no rejection or truncation: 6 article files plus 3 .jsonl posts."""
    files, rejected = discover([sample_corpus_dir])
    assert rejected == []
    assert len(files) == 7
    assert {path.suffix for path in files} == {".txt", ".md", ".html", ".jsonl"}
    items: list[RawItem] = []
    for path in files:
        result = read_corpus_file(path)
        assert (result.rejected, result.truncated) == ([], []), path
        assert result.items, path
        items.extend(result.items)
    assert len(items) == 9
    assert len({item_id(item) for item in items}) == 9
    articles = [item for item in items if item.source == "corpus"]
    assert len(articles) == 6
    for article in articles:
        assert article.channel == "corpus"
        assert article.title, article.url
        assert article.published_at is not None, article.url
    posts = [item for item in items if item.source != "corpus"]
    assert [post.source for post in posts] == ["telegram_web"] * 3
    assert len({post.external_id for post in posts}) == 3


def test_sample_corpus_mentions_bakhmut_in_most_but_not_all_articles(sample_corpus_dir: Path) -> None:
    """At least five sample items mention Bakhmut/Бахмут and at least one article does not mention it at all."""
    files, _ = discover([sample_corpus_dir])
    items = [item for path in files for item in read_corpus_file(path).items]
    mentions = [item for item in items if any(word in item.text for word in BAKHMUT_WORDS)]
    assert len(mentions) >= 5
    silent_articles = [
        path for path in files
        if path.suffix != ".jsonl" and not any(w in path.read_text(encoding="utf-8") for w in BAKHMUT_WORDS)
    ]  # fmt: skip
    assert silent_articles


def test_sample_corpus_boilerplate_article_has_a_clean_title(sample_corpus_dir: Path) -> None:
    """The scraped-style sample with share/ad/byline boilerplate still yields its real headline and date."""
    item = read_one(sample_corpus_dir / "en_bakhmut_flanks.txt")
    assert item.title == "Ukrainian units push along Bakhmut's southern flank as shelling continues"
    assert item.published_at == midnight(2023, 5, 17)
    for boilerplate in (
        "Share this article",
        "ADVERTISEMENT",
        "By Staff Reporter",
        "You might also like",
        "Exit mobile version",
    ):
        assert boilerplate in item.text  # text is kept as written; cleaning is the normalizer's job


def test_sample_corpus_hidden_note_is_not_ingested(sample_corpus_dir: Path) -> None:
    """The corpus/.about note exists but discover skips it because it is hidden."""
    assert (sample_corpus_dir / ".about").is_file()
    files, _ = discover([sample_corpus_dir])
    assert all(not path.name.startswith(".") for path in files)
