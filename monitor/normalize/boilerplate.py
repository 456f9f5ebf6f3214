"""Removal of page furniture (share bars, ads, comment forms, bylines, photo credits, "read more"
lists, syndication footers) from scraped articles and posts, so that it does not trigger alerts,
skew language detection or make two copies of one story look different to dedup.

The rules are general shapes of such furniture in English, Ukrainian and Russian, never the names of
particular sites. A line is only dropped when all of it is furniture; inside a line only a trailing
photo credit is cut. Input is expected to be ``clean_text`` output (ASCII quotes and dashes, one
blank line between paragraphs).
"""

from __future__ import annotations

import re
from typing import NamedTuple

__all__ = ["BoilerplateResult", "strip_boilerplate"]


class BoilerplateResult(NamedTuple):
    """What :func:`strip_boilerplate` kept and what it took out."""

    text: str  # the text without boilerplate, paragraphs still "\n\n"-separated, stripped
    removed: list[str]  # every removed line or fragment, in order


def _alternation(phrases: str) -> str:
    """A regex alternation of the top-level ``|``-separated phrases (themselves regexes).

    Phrases that start with a plain letter are grouped by that letter, so that the regex engine
    rejects a line after one comparison per group instead of trying every phrase. Within a group the
    longest phrase comes first, so the usual parse is found without backtracking. Runs at import only.
    """
    parts: list[str] = []
    depth = start = 0
    for i, char in enumerate(phrases):
        if char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
        elif char == "|" and depth == 0:
            parts.append(phrases[start:i])
            start = i + 1
    parts.append(phrases[start:])
    groups: dict[str, list[str]] = {}
    others: list[str] = []
    for part in sorted((p.strip() for p in parts if p.strip()), key=len, reverse=True):
        if part[0].isalpha() and (len(part) == 1 or part[1] not in "?*{"):
            groups.setdefault(part[0].lower(), []).append(part[1:])
        else:
            others.append(part)
    branches = [key + "(?:" + "|".join(rests) + ")" for key, rests in groups.items()]
    return "|".join(branches + [f"(?:{p})" for p in others])


# Upper-case initial (Latin, Latin-1, Cyrillic) for names in bylines and credits.
_UP = "A-ZÀ-ÖØ-ÞА-ЯЁІЇЄҐЎ"

# --- widgets: a line made only of these tokens (and separators, counters) is furniture -------------
# Tokens are matched case-insensitively and may be glued together ("Share this articleComments").
_UI_TOKENS = _alternation(
    # share bars
    r"share this (?:article|story|post|page|video)|share on (?:facebook|twitter|x|telegram|whatsapp|"
    r"linkedin|reddit|e-?mail)|share via e-?mail|share|shares|tweet(?: this)?|retweet|pin it|e-?mail|"
    r"print(?: this (?:article|page))?|facebook|twitter|telegram|whatsapp|linkedin|reddit|viber|"
    r"messenger|pinterest|flipboard|vkontakte|"
    r"поділитися|поділитись|поширити|твітнути|друкувати|друк|поделиться|твитнуть|печать|распечатать|"
    # embed / copy UI
    r"copy ?/ ?paste (?:the )?(?:\w+ ){0,3}embed (?:link|code)(?: below)?|embed(?: code| link)?|"
    r"copy (?:link|url)|link copied|copy to clipboard|copied|close button|close|"
    r"(?:с?копіювати|скопіюйте) посилання|посилання скопійовано|скопійовано|закрити|"
    r"(?:с?копировать|скопируйте) ссылку|ссылка скопирована|скопировано|закрыть|"
    # advertising
    r"advertisement|advertising|sponsored(?: content)?|scroll to continue(?: with content| reading)?|"
    r"story continues below(?: this)?(?: advertisement)?|continue reading(?: below)?|"
    r"реклама|партнерський матеріал|партнерский материал|"
    # comment forms
    r"no comments(?: yet)?|comments?|leave a (?:reply|comment)|(?:post|add|write) a comment|"
    r"(?:show|view|load|hide|read) (?:more |all )?comments|cancel reply|post comment|reply|submit|"
    r"please enter your (?:comment|name|e-?mail(?: address)?)(?: here)?|"
    r"you have entered an incorrect e-?mail address|"
    r"save my name, e-?mail, and website in this browser for the next time i comment|"
    r"коментарі|коментар(?:ів)?|(?:немає|жодних) коментарів|коментарів (?:ще )?немає|"
    r"(?:залишити|залиште|додати|написати) коментар|коментувати|"
    r"комментарии|комментари(?:й|ев)|нет комментариев|комментариев (?:пока )?нет|"
    r"(?:оставить|оставьте|добавить|написать) комментарий|комментировать|"
    # script and loading notices
    r"no ?script|please wait|loading|"
    r"javascript is (?:disabled|required|not enabled|off)(?: (?:in|on) (?:your|this) browser)?|"
    r"(?:please )?(?:enable|turn on) javascript(?: (?:in|to) [\w ]{1,60})?|"
    r"your browser does not support (?:the )?(?:video|audio|iframe|html5 video)(?: tag| element)?|"
    r"завантаження|(?:будь ласка,? )?зачекайте|javascript (?:вимкнено|вимкнений)|увімкніть javascript|"
    r"загрузка|(?:пожалуйста,? )?подождите|javascript (?:отключен|выключен)|включите javascript|"
    # navigation
    r"exit mobile version|skip to (?:main )?(?:content|navigation)|back to top|(?:go|scroll) to top|"
    r"add to (?:favou?rites|bookmarks)|bookmark|menu|search|home|"
    r"вийти з мобільної версії|мобільна версія|перейти до (?:основного )?(?:вмісту|змісту)|"
    r"на початок|вгору|нагору|(?:додати )?(?:в|до) обран(?:е|ого)|меню|пошук|головна|"
    r"выйти из мобильной версии|мобильная версия|перейти к (?:основному )?(?:содержимому|содержанию)|"
    r"наверх|в начало|(?:добавить )?в избранное|поиск|главная"
)
# Separators and counters allowed between widget tokens: "Comments (12)", "Share | Tweet", "Loading...".
_UI_SEP = r"[\s\d:;|·•/,.!?()\[\]\"'*+×><-]"
_UI_LINE_RE = re.compile(rf"{_UI_SEP}*+(?:(?:{_UI_TOKENS}){_UI_SEP}*+)+", re.IGNORECASE)

# Calls to subscribe or follow, as a line of their own.
_CTA_RE = re.compile(
    r"(?:subscribe|follow us|join us|sign up|підписуйтес[ья]|підпишіться|підписатися|приєднуйтес[ья]|"
    r"подписывайтесь|подпишитесь|подписаться|присоединяйтесь)\b.{0,90}",
    re.IGNORECASE,
)

# Icon-font ligature names left glued to their label when a page is flattened to text:
# "folder_openRussia access_time2 months ago", "starAdd to favorites".
_ICON_RE = re.compile(
    r"(?:[a-z]+(?:_[a-z]+)+|star|person|schedule|visibility|comment|comments|share|bookmark|favorite|"
    r"event|label|today|update|public|language|home|search|menu|close|mail|email|print|phone|place|"
    rf"room|chat|forum|whatshot|timer|category|tag|sell|info|link|edit|add|remove)(?=[{_UP}0-9])"
)

# --- "read more" blocks: a header, then a list of short headline lines ------------------------------
_RELATED_HEADERS = _alternation(
    r"you (?:might|may) also (?:like|be interested in)|you (?:might|may) be interested in|"
    r"read (?:more|also|next)|also read|see also|related(?: (?:articles|stories|news|posts|content|"
    r"topics|coverage))?|more (?:stories|news|on this (?:story|topic)|from this section)|"
    r"most (?:read|popular|viewed)|recommended(?: for you| stories)?|"
    r"читайте також|також читайте|дивіться також|більше новин|більше за темою|"
    r"новини за темою|по темі|на тему|схожі (?:новини|матеріали)|інші новини|"
    r"рекомендуємо|вам (?:може|можуть) сподобатися|вас (?:може|можуть) зацікавити|"
    r"читайте также|также читайте|смотрите также|больше новостей|новости по теме|по теме|"
    r"похожие (?:новости|материалы)|другие новости|рекомендуем|"
    r"вам (?:может|могут) понравиться|вас (?:может|могут) заинтересовать"
)
_RELATED_HEADER_RE = re.compile(rf"(?:{_RELATED_HEADERS})[\s:.!-]*", re.IGNORECASE)
# The same header with one link glued on: "Read more: Russia claims ...", "Читайте також: ...".
_RELATED_INLINE_RE = re.compile(
    r"(?:read (?:more|also|next)|also read|see also|related|читайте (?:також|также)|також читайте|"
    r"также читайте|дивіться також|смотрите также|по темі|по теме)\s*(?::|-|>>)\s*\S.{0,250}",
    re.IGNORECASE,
)
_RELATED_ITEM_MAX = 160
_RELATED_HEADER_MAX = 60


def _is_related_item(line: str) -> bool:
    """A short line that does not end like a sentence ("." or "!"; an ellipsis is fine)."""
    if len(line) > _RELATED_ITEM_MAX:
        return False
    end = line.rstrip("\"')]")
    return not (end.endswith("!") or (end.endswith(".") and not end.endswith("..")))


# --- bylines -----------------------------------------------------------------------------------------
_NAME = rf"[{_UP}][\w'.-]*"
_NAME_LINK = r"(?:and|with|in|for|of|the|de|van|von|der|al|el|bin|і|й|та|и)"
_NAMES = rf"{_NAME}(?:(?:\s*[,;&|/]\s*|\s+)(?:{_NAME_LINK}\s+)*{_NAME})*\.?"
# "By Staff, Agencies", "By X with AP", "Written by X" (names only: "By the end of May, ..." stays).
_BYLINE_BY_RE = re.compile(rf"(?i:(?:written |reported |words |text |story )?by):?\s+{_NAMES}")
# "From: Name", "Автор: ...", "Author - ...": a label, a colon or dash, a short remainder.
_BYLINE_LABEL_RE = re.compile(
    r"(?:from|authors?|writer|reporter|автор(?:ка|и|ы)?|текст|підготува(?:в|ла|ли)|"
    r"подготови(?:л|ла|ли)|від)\s*(?::|-)\s*\S.{0,60}",
    re.IGNORECASE,
)
# Wire-service footers: "Reporting by X; Editing by Y".
_BYLINE_WIRE_RE = re.compile(rf"(?i:(?:additional )?(?:reporting|writing|editing) by) {_NAME}[^.!?]{{0,200}}")
_BYLINE_MAX = 80

# --- photo credits -----------------------------------------------------------------------------------
_PHOTO_LABEL = (
    r"photos?|photograph|images?|pictures?|credit|photo credit|image credit|фото|світлин[аи]|"
    r"зображення|ілюстративне фото|фото ілюстративне|иллюстративное фото|фото иллюстративное|"
    r"джерело фото|источник фото"
)
# A line that is only a credit: "Photo: Reuters", "Фото: Укрінформ", "Copyright Efrem Lukatsky/AP",
# "Libkos/Copyright 2023 The AP. All rights reserved.", "© AFP".
_CREDIT_LINE_RE = re.compile(
    rf"(?i:{_PHOTO_LABEL})(?:\s*(?::|-|\||(?i:by)\b)\s*.{{0,80}})?"
    rf"|(?:{_NAME}(?: {_NAME})?/)?(?:©|\([cC]\)|(?i:copyright)\b)(?:\s*©)?"
    rf"(?:\s*(?:\d{{4}}|[{_UP}©@]).{{0,150}})?"
)
# Credits cut from the end of a caption line: runs of capitalised names, agencies and years.
_CREDIT_GROUP = rf"[{_UP}0-9@][\w.'&@-]*(?:/[\w.'&@-]+)*"
_CREDIT_TOKENS = rf"{_CREDIT_GROUP}(?:[ ,;|&]+(?:(?:via|and|for|of|the|і|та|и) )*{_CREDIT_GROUP}){{0,8}}"
# "... positions. © Roman Chop/AP/dpa", "... Bakhmut Copyright Efrem Lukatsky/AP",
# "... 2023Libkos/Copyright 2023 The AP. All rights reserved."
_TRAILING_COPYRIGHT_RE = re.compile(
    rf"(?:{_NAME}(?: {_NAME})?/)?(?:©|\([cC]\)|Copyright\b|COPYRIGHT\b)(?:\s*©)?\s*"
    rf"(?:{_CREDIT_TOKENS})?(?:[.,]?\s*All rights reserved\.?)?\s*$"
)
# "... Photo: Reuters", "... Фото: ОВА"
_TRAILING_LABEL_RE = re.compile(
    r"(?<!\S)(?:Photos?|PHOTOS?|Images?|Credit|Фото|ФОТО|Світлина|Джерело фото|Источник фото)"
    r"\s*:\s*\S.{0,60}$"
)
# "... 2023. (@92OMBr/Newsflash )", "... (AP Photo/Efrem Lukatsky)", "... (Photo: Reuters)"
_TRAILING_PAREN_RE = re.compile(
    r"(?<=[.!?\"'])\s*\((?:"
    r"(?:(?:AP |Reuters )?Photo/|@)?[\w.' &@-]{1,40}(?:/[\w.' &@-]{1,40})+"
    r"|(?i:photo|фото)\s*:\s*[^()]{1,60}"
    r")\s*\)$"
)
_CREDIT_TAIL = 200  # only the end of a line is searched for a trailing credit


# --- syndication footers ("The post X appeared first on Y") -------------------------------------------
_FOOTER_RE = re.compile(
    r"(?:the (?:entry|post|article)|this (?:article|story|post)|запис|запись|публікація|публикация|"
    r"сообщение|материал|стаття|статья)\b.{0,300}?"
    r"(?:was (?:first|originally) published (?:in|on|by)|(?:first|originally) appeared (?:in|on)|"
    r"appeared first (?:in|on)|is republished from|"
    r"(?:вперше|спочатку) (?:з'яви(?:вся|лася|лося|лись|лися)|опублікован[аоі]?)|"
    r"впервые (?:появил(?:ся|ась|ось|ись)|опубликован[аоы]?)|появил(?:ся|ась|ось|ись) сначала)"
    # then only the site's name: a prose sentence going on after a comma is not a footer
    r"\s+(?:on |in |на |в )?[^,;:!?]{1,80}",
    re.IGNORECASE,
)

# (regex, longest line it applies to): lines dropped whole. Most prose lines are longer than the
# widget limits, so they only meet the last few rules.
_LINE_RULES: tuple[tuple[re.Pattern[str], int], ...] = (
    (_UI_LINE_RE, 110),
    (_ICON_RE, 110),  # a prefix match: the line starts with a glued icon name
    (_CTA_RE, 110),
    (_BYLINE_BY_RE, _BYLINE_MAX),
    (_BYLINE_LABEL_RE, _BYLINE_MAX),
    (_CREDIT_LINE_RE, 160),
    (_BYLINE_WIRE_RE, 250),
    (_RELATED_INLINE_RE, 300),
    (_FOOTER_RE, 400),
)


def _is_furniture(line: str) -> bool:
    n = len(line)
    for rule, max_len in _LINE_RULES:
        if n <= max_len and (rule.match(line) if rule is _ICON_RE else rule.fullmatch(line)):
            return True
    return False


def _cut_trailing_credit(line: str) -> tuple[str, str]:
    """Split a trailing photo credit off a caption line: (line without it, credit or "")."""
    tail_start = max(0, len(line) - _CREDIT_TAIL)
    tail = line[tail_start:]
    match = None
    # cheap substring checks first: the regex searches scan the whole tail
    if "©" in tail or "opyright" in tail or "OPYRIGHT" in tail or "(c)" in tail or "(C)" in tail:
        match = _TRAILING_COPYRIGHT_RE.search(tail)
    if (
        match is None
        and ":" in tail
        and (
            "Photo" in tail
            or "PHOTO" in tail
            or "Image" in tail
            or "Credit" in tail
            or "Фото" in tail
            or "ФОТО" in tail
            or "Світлина" in tail
            or "фото" in tail
        )
    ):
        match = _TRAILING_LABEL_RE.search(tail)
    if match is None and tail.endswith(")"):
        match = _TRAILING_PAREN_RE.search(tail)
    if match is None or not match.group().strip():
        return line, ""
    return line[: tail_start + match.start()].rstrip(), match.group().strip()


def strip_boilerplate(text: str) -> BoilerplateResult:
    """Remove boilerplate lines and trailing credit fragments from ``text``.

    Removed: share/embed/copy widgets, ADVERTISEMENT lines, comment forms, script and loading notices,
    navigation ("Exit mobile version", "Skip to content"), lines starting with a glued icon-font
    name, subscribe calls, "read more"/"related" headers together with the short headline lines
    that follow them (up to the first sentence-like line), short bylines ("By X with AP",
    "From: X", "Автор: X"), photo credit lines and trailing credits inside captions, syndication
    footers ("The post X appeared first on Y") and a line repeating the line just kept before it.
    Prose that merely mentions sharing, advertisements or comments is kept.

    Blank lines separate paragraphs; the output joins lines with "\\n" and paragraphs with "\\n\\n".
    Idempotent, and never adds text: every output line is a (stripped) prefix of an input line.
    """
    removed: list[str] = []
    paragraphs: list[str] = []
    kept: list[str] = []
    in_related = False
    previous: str | None = None
    for raw_line in text.split("\n"):
        line = raw_line.strip()
        if not line:
            if kept:
                paragraphs.append("\n".join(kept))
                kept = []
            continue
        if in_related:
            if _is_related_item(line):
                removed.append(line)
                continue
            in_related = False
        while line:  # cutting a credit can leave a line that is furniture as a whole
            if len(line) <= _RELATED_HEADER_MAX and _RELATED_HEADER_RE.fullmatch(line):
                in_related = True
            elif not _is_furniture(line):
                line, credit = _cut_trailing_credit(line)
                if credit:
                    removed.append(credit)
                    continue
                break
            removed.append(line)
            line = ""
        if not line:
            continue
        if line == previous:
            removed.append(line)
            continue
        kept.append(line)
        previous = line
    if kept:
        paragraphs.append("\n".join(kept))
    return BoilerplateResult("\n\n".join(paragraphs), removed)
