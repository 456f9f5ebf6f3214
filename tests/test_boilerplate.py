"""Tests for monitor.normalize.boilerplate.strip_boilerplate: real seeds, synthetic furniture in English,
Ukrainian and Russian, prose that must survive, and the no-new-text / idempotence properties."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from monitor.normalize.boilerplate import BoilerplateResult, strip_boilerplate
from monitor.normalize.text import clean_text

PROSE_EN = (
    "Ukrainian forces repelled 24 Russian attacks near Bakhmut and Avdiivka on Thursday, the General Staff "
    "said in its evening update, adding that fighting had intensified on the southern flank."
)
PROSE_UK = (
    "Українські захисники відбили 24 атаки поблизу Бахмута та Авдіївки, повідомили у Генштабі ЗСУ, "
    "додавши, що бої на південному фланзі посилилися."
)
PROSE_RU = (
    "Российские войска продолжают попытки окружить Авдеевку, сообщили в Генштабе ВСУ, добавив, что за сутки "
    "было отражено более двадцати атак."
)


def seed_text(seeds_dir: Path, prefix: str) -> str:
    (path,) = sorted(seeds_dir.glob(f"{prefix}_*.txt"))
    return clean_text(path.read_text(encoding="utf-8"))


def assert_removed(line: str, prose: str = PROSE_EN) -> BoilerplateResult:
    text = clean_text(f"{prose}\n\n{line}\n\nSecond paragraph of real reporting stays here.")
    result = strip_boilerplate(text)
    assert result.text == f"{clean_text(prose)}\n\nSecond paragraph of real reporting stays here.", line
    assert clean_text(line) in result.removed
    return result


# --- the five real seed articles ---------------------------------------------------------------------

SEED_EXPECTATIONS: dict[str, tuple[list[str], list[str]]] = {
    # prefix: (strings that must be gone, strings that must stay)
    "000": (
        ["From: Lisa Mariella", "© Roman Chop/AP/dpa"],
        [
            "Will Russia retake Bakhmut?",
            "Ukrainian soldiers prepare a multiple rocket launcher before firing on Russian positions.",
            "Russia wants to bloodily recapture Bakhmut from Ukrainian forces",
            '"very similar to World War I."',
        ],
    ),
    "001": (
        [
            "ADVERTISEMENT",
            "Copy to clipboard",
            "Copy/paste the article video embed link below",
            "Share this article",
            "Close Button",
            "By Euronews with AP",
            "Copyright",
            "All rights reserved",
            "You might also like",
            "Nearly a quarter of Ukraine's air-raid shelters locked or unusable",
            "Russia claims it stopped 'large scale' Ukrainian military offensive",
            "At least 4 killed in Russian drone attacks on Kharkiv",
        ],
        [
            "Ukraine says battle for Bakhmut continues in the outskirts of the city",
            "Bakhmut may have fallen into Russian hands",
            "Ukrainian soldier fires a mortar at Russian positions on the frontline near Bakhmut",
            "A Ukrainian soldier sits in a trench at the frontline near Bakhmut in the Donetsk region, Ukraine, "
            "Friday, May 26, 2023",
            "But Ukrainian defenders aren't retreating.",
            "Any slippage of Russia's grip would be a political embarrassment for President Vladimir Putin.",
        ],
    ),
    "002": (
        ["No Script", "Please Wait", "folder_open", "access_time", "starAdd to favorites", "By Staff, Agencies"],
        [
            "Resistance and Liberation May 2023",
            "Russian Forces Achieving Progress in Bakhmut",
            "Ukraine confessed that the Russian forces have achieved some success",
            "Zelensky stated.",
        ],
    ),
    "003": (
        ["(@92OMBr/Newsflash )"],
        [
            "Ukrainian Forces Pummel Russian Positions Near Bakhmut",
            "The footage was released by the 92nd OMBr on Friday, Mar. 24, 2023.",
            "Russia had lost about 169,170 personnel",
            "Sauli Niinisto, the President of Finland, has signed legislation",
        ],
    ),
    "004": (
        [
            "was first published in",
            "No Comments",
            "Leave A Reply",
            "Please enter your comment!",
            "Please enter your name here",
            "Exit mobile version",
        ],
        [
            "The battle for Bakhmut is not over yet, according to Ukraine",
            "Ukraine does not throw in the towel",
            "Wagner leaves the front",
            "commented on Twitter.",
        ],
    ),
}


@pytest.mark.parametrize("prefix", sorted(SEED_EXPECTATIONS))
def test_seed_boilerplate_removed_and_prose_kept(seeds_dir: Path, prefix: str) -> None:
    """On each real seed the furniture it carries is gone and its reporting is intact."""
    text = seed_text(seeds_dir, prefix)
    gone, kept = SEED_EXPECTATIONS[prefix]
    for snippet in gone:
        assert snippet in text, f"test premise: {snippet!r} is in seed {prefix}"
    result = strip_boilerplate(text)
    for snippet in gone:
        assert snippet not in result.text, snippet
        assert any(snippet in removed for removed in result.removed), snippet
    for snippet in kept:
        assert snippet in result.text, snippet


@pytest.mark.parametrize("prefix", sorted(SEED_EXPECTATIONS))
def test_seed_only_removes_short_pieces(seeds_dir: Path, prefix: str) -> None:
    """Nothing prose-sized is removed from a seed, and most of the text survives."""
    text = seed_text(seeds_dir, prefix)
    result = strip_boilerplate(text)
    assert all(len(removed) < 200 for removed in result.removed), result.removed
    assert len(result.text) > 0.8 * len(text)
    assert "\n\n\n" not in result.text
    assert result.text == result.text.strip()


def test_seed_caption_credit_cut_keeps_caption(seeds_dir: Path) -> None:
    """A credit glued to a caption ("...2023Libkos/Copyright ...") is cut and the caption kept whole."""
    result = strip_boilerplate(seed_text(seeds_dir, "001"))
    lines = result.text.split("\n")
    assert (
        "A Ukrainian soldier sits in a trench at the frontline near Bakhmut in the Donetsk region, Ukraine, "
        "Friday, May 26, 2023"
    ) in lines
    assert "Libkos/Copyright 2023 The AP. All rights reserved." in result.removed


# --- synthetic furniture, one line at a time ---------------------------------------------------------

FURNITURE = [
    # share widgets
    "Share this article",
    "Share",
    "Tweet",
    "Share this articleComments",
    "Share this articleClose Button",
    "Facebook Twitter WhatsApp Telegram",
    "Share | Tweet | Email",
    "Поділитися",
    "ПОДІЛИТИСЯ",
    "Поделиться",
    "Поделиться: Telegram Viber",
    # embed and copy
    "Copy/paste the article video embed link below:Copy to clipboardCopied",
    "Copy link",
    "Link copied",
    "Скопіювати посилання",
    "Посилання скопійовано",
    "Копировать ссылку",
    # advertising
    "ADVERTISEMENT",
    "Advertisement",
    "Реклама",
    "РЕКЛАМА",
    "Story continues below advertisement",
    # comment forms
    "No Comments",
    "Leave A Reply",
    "Leave a comment",
    "Please enter your comment!",
    "Please enter your name here",
    "Comments",
    "Comments (12)",
    "Коментарі",
    "Коментарі (3)",
    "Залишити коментар",
    "Комментарии",
    "Нет комментариев",
    "Оставить комментарий",
    # script and loading notices
    "No Script",
    "Please Wait...",
    "Loading...",
    "JavaScript is disabled",
    "JavaScript is disabled in your browser.",
    "Please enable JavaScript to view the comments",
    "Завантаження...",
    "Будь ласка, зачекайте...",
    "Загрузка...",
    "Пожалуйста, подождите",
    # navigation
    "Exit mobile version",
    "Skip to content",
    "Back to top",
    "Вийти з мобільної версії",
    "На початок",
    "Наверх",
    "Перейти к содержимому",
    # glued icon-font names
    "folder_openRussia access_time2 months ago",
    "starAdd to favorites",
    "access_time3 hours ago",
    "folder_openНовини visibility1520",
    # calls to subscribe
    "Підписуйтесь на наш Telegram-канал",
    "Подписывайтесь на наш канал в Telegram",
    "Subscribe to our newsletter",
    # bylines
    "By Euronews with AP",
    "By Staff, Agencies",
    "By Olena Harmash and Tom Balmforth",
    "By AFP",
    "From: Lisa Mariella Löw",
    "Автор: Олена Петренко",
    "Автор: Мария Иванова",
    "Авторка - Ірина Коваль",
    "Reporting by Pavel Polityuk; Editing by Alex Richardson",
    # photo credits, whole line
    "Copyright Efrem Lukatsky/AP",
    "Libkos/Copyright 2023 The AP. All rights reserved.",
    "© Reuters",
    "Photo: Reuters",
    "Фото: Генштаб ЗСУ",
    "Фото: РИА Новости",
    "Ілюстративне фото",
    # syndication footers
    "The entry Russia shells Kherson again was first published in Daily Wire Noticias.",
    "The post Ukraine downs 29 drones appeared first on Kyiv Example News.",
    "Запис Ворог атакував Одесу вперше з'явився на Приклад Новини.",
    "Сообщение Взрывы в Белгороде появились сначала на Пример Новости.",
    # read-more with the link on the same line
    "Read more: Russia claims it stopped Ukrainian offensive",
    "Читайте також: Ворог атакував Одесу ударними дронами",
    "Читайте также: Взрывы прогремели в Белгороде",
]


@pytest.mark.parametrize("line", FURNITURE)
def test_furniture_line_is_removed(line: str) -> None:
    """A furniture line between two prose paragraphs is removed and reported; the prose is intact."""
    assert_removed(line)


@pytest.mark.parametrize(("line", "prose"), [("Поділитися", PROSE_UK), ("Комментарии", PROSE_RU)])
def test_furniture_removed_from_cyrillic_articles(line: str, prose: str) -> None:
    """Widgets are removed from Ukrainian and Russian articles the same way."""
    assert_removed(line, prose)


@pytest.mark.parametrize(
    ("header", "items"),
    [
        (
            "You might also like",
            [
                "Nearly a quarter of Kyiv's air-raid shelters locked or unusable",
                "Ukraine war: Russia claims it stopped 'large scale' offensive",
                "At least 4 killed in Russian drone attacks on Kharkiv",
            ],
        ),
        ("Related", ["Zelensky visits troops near Bakhmut", "EU agrees new sanctions package..."]),
        ("Read more:", ["Wagner chief says his fighters will leave Bakhmut by June 1"]),
        (
            "Читайте також",
            ["Ворог атакував Одесу ударними дронами", "У Харкові пролунали вибухи: працює ППО"],
        ),
        ("Читайте также:", ["В Белгородской области объявлена ракетная опасность", "Взрывы в Донецке"]),
    ],
)
def test_related_header_and_its_list_are_removed(header: str, items: list[str]) -> None:
    """A "read more" header takes the short headline lines after it, up to the next prose paragraph."""
    closing = "The governor said repair crews were working through the night to restore power."
    text = clean_text("\n\n".join([PROSE_EN, header, *items, closing]))
    result = strip_boilerplate(text)
    assert result.text == f"{PROSE_EN}\n\n{closing}"
    assert result.removed == [clean_text(header), *[clean_text(item) for item in items]]


def test_related_list_at_end_of_text_is_removed() -> None:
    """A "read more" list that runs to the end of the text goes entirely."""
    text = f"{PROSE_EN}\n\nYou might also like\n\nHeadline one\nHeadline two\n\nHeadline three"
    result = strip_boilerplate(text)
    assert result.text == PROSE_EN
    assert result.removed[-1] == "Headline three"


def test_related_list_stops_at_a_short_sentence() -> None:
    """A short paragraph ending like a sentence ends the list and is kept."""
    text = f"Read more\n\nHeadline one\n\nBut Ukrainian defenders aren't retreating.\n\n{PROSE_EN}"
    result = strip_boilerplate(text)
    assert result.text == f"But Ukrainian defenders aren't retreating.\n\n{PROSE_EN}"


@pytest.mark.parametrize(
    ("caption", "credit"),
    [
        ("Ukrainian soldiers prepare a rocket launcher before firing on Russian positions.", "© Roman Chop/AP/dpa"),
        ("Ukrainian soldier fires a mortar near Bakhmut", "Copyright Efrem Lukatsky/AP"),
        (
            "A soldier sits in a trench near Bakhmut, Friday, May 26, 2023",
            "Libkos/Copyright 2023 The AP. All rights reserved.",
        ),
        ("Рятувальники на місці удару в Одесі.", "Фото: ДСНС"),
        ("Последствия обстрела Херсона.", "Фото: РИА Новости"),
        ("Destroyed tanks near Avdiivka.", "(AP Photo/Efrem Lukatsky)"),
        ("The footage was released on Friday, Mar. 24, 2023.", "(@92OMBr/Newsflash )"),
        ("Firefighters at the scene in Kyiv.", "Photo: Reuters"),
    ],
)
def test_trailing_credit_is_cut_from_caption(caption: str, credit: str) -> None:
    """A credit at the end of a caption is cut off; the caption itself stays."""
    glue = "" if credit.startswith("Libkos") else " "
    text = f"{PROSE_EN}\n\n{caption}{glue}{credit}"
    result = strip_boilerplate(text)
    assert result.text == f"{PROSE_EN}\n\n{caption}"
    assert result.removed == [credit.strip()]


# --- prose that must survive -------------------------------------------------------------------------

KEEP = [
    "By the end of May, Russian forces had taken most of the city, according to the Institute for the Study of War.",
    "By Tuesday, the shelling had stopped.",
    "Russia's share of the grain market fell sharply after the strikes on Odesa port.",
    "Share prices in Moscow fell 3% after the mutiny.",
    "The advertisement, placed in a Moscow newspaper, called for volunteers to join the Wagner Group.",
    "Comments by the Kremlin spokesman suggested the talks had stalled.",
    "He declined to make comments on the losses near Bakhmut.",
    '"Please wait until the air raid alert is over," the mayor wrote on Telegram.',
    "Read more about the battle for Bakhmut in our explainer, which tracks the front line day by day.",
    "Related sanctions were announced by the EU on Friday.",
    "Copyright laws in occupied Crimea were rewritten after the annexation.",
    "The article, which was first published in The Guardian in 2019, described the siege of Mariupol.",
    "The post was first published on Telegram, and the regional governor later confirmed the strike.",
    "The photo showed a destroyed bridge over the Dnipro.",
    "Реклама російських військових контрактів з'явилася на білбордах у Луганську.",
    "Коментарі речника Кремля свідчать про те, що переговори зайшли в глухий кут.",
    "Поделиться своим мнением жители Белгорода могли только анонимно.",
    "Автор відео, який зняв удар по Одесі, передав запис поліції.",
    "Фото, оприлюднене Генштабом, показує знищений танк біля Авдіївки.",
    "Загрузка боеприпасов на склады продолжалась всю ночь, сообщили источники.",
    "Wagner leaves the front",
    "Ukraine does not throw in the towel",
    "Will Russia retake Bakhmut?",
]


@pytest.mark.parametrize("line", KEEP)
def test_prose_mentioning_furniture_words_is_kept(line: str) -> None:
    """Sentences and headlines that merely contain share/ads/comments/by/photo words are untouched."""
    text = f"{PROSE_EN}\n\n{line}"
    result = strip_boilerplate(text)
    assert result.text == text
    assert result.removed == []


def test_quotes_and_headlines_are_kept() -> None:
    """A short headline, a quote and a single-newline sub-line survive as they were."""
    text = (
        "Ukraine defends Bakhmut from Russian tanks: Fierce counteroffensive in war\n\n"
        '"The war continues and it will continue," said Oleh Shiryaev.\n'
        "He commands a combat unit."
    )
    assert strip_boilerplate(text) == BoilerplateResult(text, [])


def test_paragraph_structure_is_kept() -> None:
    """Paragraphs stay "\\n\\n"-separated, single newlines inside a paragraph stay, removals leave no gaps."""
    text = "Headline\nSubheadline\n\nADVERTISEMENT\n\nFirst paragraph.\nShare\nSecond line.\n\nComments"
    result = strip_boilerplate(text)
    assert result.text == "Headline\nSubheadline\n\nFirst paragraph.\nSecond line."
    assert result.removed == ["ADVERTISEMENT", "Share", "Comments"]


def test_repeated_line_is_removed() -> None:
    """A line repeating the line kept just before it (a scraped title or caption twice) is dropped."""
    text = "Russian Forces Achieving Progress in Bakhmut\n\nRussian Forces Achieving Progress in Bakhmut\n\nBody."
    result = strip_boilerplate(text)
    assert result.text == "Russian Forces Achieving Progress in Bakhmut\n\nBody."
    assert result.removed == ["Russian Forces Achieving Progress in Bakhmut"]


def test_empty_and_all_furniture_input() -> None:
    """Empty input gives empty output; input made only of furniture gives empty text and lists it all."""
    assert strip_boilerplate("") == BoilerplateResult("", [])
    result = strip_boilerplate("Share\n\nADVERTISEMENT\n\nExit mobile version")
    assert result == BoilerplateResult("", ["Share", "ADVERTISEMENT", "Exit mobile version"])


# --- properties ----------------------------------------------------------------------------------------

line_strategy = st.one_of(
    st.sampled_from(FURNITURE + KEEP + [PROSE_EN, PROSE_UK, PROSE_RU, "Read more", "Читайте також", ""]),
    st.text(max_size=60),
    st.builds(
        lambda a, b: a + b,
        st.sampled_from([*KEEP, "Caption near Bakhmut", "Підпис до фото."]),
        st.sampled_from([" © Roman Chop/AP/dpa", "Libkos/Copyright 2023 The AP.", " Фото: ДСНС", " (AP Photo/X Y)"]),
    ),
)
documents = st.lists(line_strategy, max_size=12).flatmap(
    lambda lines: st.lists(st.sampled_from(["\n", "\n\n", "\n \n"]), min_size=len(lines), max_size=len(lines)).map(
        lambda seps: "".join(line + sep for line, sep in zip(lines, seps, strict=True))
    )
)


@settings(max_examples=300, deadline=None)
@given(documents)
def test_never_adds_text(text: str) -> None:
    """Every output line is a substring of the input: the function only removes."""
    result = strip_boilerplate(text)
    for line in result.text.split("\n"):
        assert line in text


@settings(max_examples=300, deadline=None)
@given(documents)
def test_idempotent(text: str) -> None:
    """Stripping an already stripped text changes nothing and removes nothing."""
    once = strip_boilerplate(text)
    twice = strip_boilerplate(once.text)
    assert twice.text == once.text
    assert twice.removed == []


@settings(max_examples=200, deadline=None)
@given(documents)
def test_idempotent_after_clean_text(text: str) -> None:
    """The pipeline order (clean_text, then strip_boilerplate) is idempotent as a whole."""
    once = strip_boilerplate(clean_text(text)).text
    assert strip_boilerplate(clean_text(once)).text == once
