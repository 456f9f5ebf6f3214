"""Importing Telegram Desktop chat exports (result.json): mapping, dates, media, skips and bad input."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from monitor.collectors.corpus_files import FileResult, Rejected, discover, read_corpus_file
from monitor.collectors.telegram_export import NOT_AN_EXPORT, parse_export
from monitor.schema import RAW_MAX_BYTES, Forward, Media, RawItem, decode, encode, item_id

COLLECTED = datetime(2024, 6, 1, 12, 0, tzinfo=UTC)
CHANNEL_ID = 1392375461
SOURCE_ID = 1101806611
PATH = "exports/ChatExport_2023-11-20/result.json"


def message(msg_id: int, **fields: Any) -> dict[str, Any]:
    """A channel post as Telegram Desktop 4.x writes it (date_unixtime, from/from_id, plain text)."""
    stamp = 1700143531 + 60 * msg_id
    base: dict[str, Any] = {
        "id": msg_id,
        "type": "message",
        "date": datetime.fromtimestamp(stamp + 7200, UTC).strftime("%Y-%m-%dT%H:%M:%S"),  # Kyiv local time
        "date_unixtime": str(stamp),
        "from": "Донбас Фронт",
        "from_id": f"channel{CHANNEL_ID}",
        "text": f"Пост {msg_id}: обстріл Бахмута триває.",
        "text_entities": [{"type": "plain", "text": f"Пост {msg_id}: обстріл Бахмута триває."}],
    }
    base.update(fields)
    return {key: value for key, value in base.items() if value is not None}


def export(messages: list[Any], **top: Any) -> dict[str, Any]:
    document: dict[str, Any] = {"name": "Донбас Фронт", "type": "public_channel", "id": CHANNEL_ID}
    document.update(top)
    document["messages"] = messages
    return {key: value for key, value in document.items() if value is not None}


def parse(document: Any, **kwargs: Any) -> FileResult:
    return parse_export(json.dumps(document, ensure_ascii=False), path=PATH, collected_at=COLLECTED, **kwargs)


def only_item(document: Any) -> RawItem:
    result = parse(document)
    assert result.rejected == [], result.rejected
    assert len(result.items) == 1, result.items
    return result.items[0]


# A realistic post from a newer export: list text with entities, and the same text as text_entities.
NEW_FORMAT_POST: dict[str, Any] = {
    "id": 4512,
    "type": "message",
    "date": "2023-11-16T16:05:31",
    "date_unixtime": "1700143531",
    "from": "Донбас Фронт",
    "from_id": "channel1392375461",
    "author": "Олена Коваль",
    "text": [
        "Обстріл ",
        {"type": "bold", "text": "Бахмута"},
        " триває. ",
        {"type": "text_link", "text": "Джерело", "href": "https://example.org/report/4512"},
        " ",
        {"type": "hashtag", "text": "#Бахмут"},
    ],
    "text_entities": [
        {"type": "plain", "text": "Обстріл "},
        {"type": "bold", "text": "Бахмута"},
        {"type": "plain", "text": " триває. "},
        {"type": "text_link", "text": "Джерело", "href": "https://example.org/report/4512"},
        {"type": "plain", "text": " "},
        {"type": "hashtag", "text": "#Бахмут"},
    ],
}


# ------------------------------------------------------------------------------------------------
# formats


def test_new_format_post_maps_to_a_telegram_export_item() -> None:
    """A new-format post becomes a telegram_export item: export name/id, message id, exact UTC time, author."""
    item = only_item(export([NEW_FORMAT_POST]))
    assert item.source == "telegram_export"
    assert item.channel == "Донбас Фронт"
    assert item.channel_id == CHANNEL_ID
    assert item.external_id == "4512"
    assert item.published_at == datetime(2023, 11, 16, 14, 5, 31, tzinfo=UTC)  # not the local 16:05
    assert item.collected_at == COLLECTED
    assert item.author == "Олена Коваль"
    assert item.event == "new"
    assert (item.forwarded_from, item.reply_to, item.media, item.url, item.title) == (None, None, [], None, None)


def test_text_from_entities_keeps_visible_text_and_drops_link_urls() -> None:
    """Entity lists are joined into the visible text: bold, link and hashtag text stay, a link's href does not."""
    item = only_item(export([NEW_FORMAT_POST]))
    assert item.text == "Обстріл Бахмута триває. Джерело #Бахмут"
    assert "https://" not in item.text


def test_text_entities_are_preferred_over_text() -> None:
    """When a message has text_entities, the item text is built from them rather than from 'text'."""
    post = message(
        7, text="stale text", text_entities=[{"type": "plain", "text": "fresh "}, {"type": "bold", "text": "text"}]
    )
    assert only_item(export([post])).text == "fresh text"


def test_list_text_without_text_entities_joins_strings_and_entities() -> None:
    """Without text_entities, a list 'text' is the concatenation of its strings and its entities' text."""
    post = message(
        8,
        text=["Під ", {"type": "italic", "text": "Авдіївкою"}, " бої. ", {"type": "link", "text": "t.me/x/1"}],
        text_entities=None,
    )
    assert only_item(export([post])).text == "Під Авдіївкою бої. t.me/x/1"


def test_old_format_export_reads_local_date_as_utc_and_warns_once() -> None:
    """Without date_unixtime the local 'date' is read as UTC and one warning for the file says so."""
    old = [message(n, date=f"2022-03-0{n}T10:15:00", date_unixtime=None, text_entities=None) for n in (1, 2, 3)]
    result = parse(export(old))
    assert result.rejected == []
    assert [item.published_at for item in result.items] == [datetime(2022, 3, n, 10, 15, tzinfo=UTC) for n in (1, 2, 3)]
    assert [item.text for item in result.items] == [f"Пост {n}: обстріл Бахмута триває." for n in (1, 2, 3)]
    (note,) = [w for w in result.warnings if "date_unixtime" in w]
    assert note.startswith("3 message(s)") and "UTC" in note


def test_new_format_export_has_no_date_warning() -> None:
    """An export whose messages all have date_unixtime reports no warning at all."""
    result = parse(export([message(1), message(2)]))
    assert len(result.items) == 2
    assert result.warnings == []


def test_invalid_date_unixtime_falls_back_to_date() -> None:
    """An unreadable date_unixtime with a usable 'date' still imports, dated from 'date' as UTC, with the warning."""
    result = parse(export([message(5, date="2023-01-02T03:04:05", date_unixtime="soon")]))
    assert result.rejected == []
    assert result.items[0].published_at == datetime(2023, 1, 2, 3, 4, 5, tzinfo=UTC)
    assert any(w.startswith("1 message(s)") for w in result.warnings)


def test_export_with_a_utf8_bom_is_read() -> None:
    """A leading BOM in the text handed to parse_export is ignored."""
    result = parse_export("\ufeff" + json.dumps(export([message(1)])), path=PATH, collected_at=COLLECTED)
    assert [item.external_id for item in result.items] == ["1"]


def test_crlf_in_message_text_becomes_lf() -> None:
    """Line endings inside a post are normalized to \\n, as the other corpus readers do."""
    item = only_item(export([message(1, text="рядок 1\r\nрядок 2\rрядок 3", text_entities=None)]))
    assert item.text == "рядок 1\nрядок 2\nрядок 3"


# ------------------------------------------------------------------------------------------------
# identity


def test_item_id_is_the_numeric_channel_id_and_message_id() -> None:
    """item_id(raw) is telegram:<export id>:<message id>, the same id the live collector gives that post."""
    item = only_item(export([NEW_FORMAT_POST]))
    assert item_id(item) == f"telegram:{CHANNEL_ID}:4512"
    live = RawItem(
        source="telegram",
        channel="donbas_front",
        channel_id=CHANNEL_ID,
        external_id="4512",
        text="Обстріл Бахмута триває.",
        collected_at=COLLECTED,
    )
    assert item_id(live) == item_id(item)


def test_export_without_numeric_id_uses_the_name_and_warns() -> None:
    """An export lacking a numeric 'id' keys its items by name and warns that ids will not match the live ones."""
    result = parse(export([message(3)], id=None))
    (item,) = result.items
    assert item.channel_id is None
    assert item_id(item) == "telegram:донбас фронт:3"
    assert any("no numeric 'id'" in w for w in result.warnings)


@pytest.mark.parametrize("bad_id", ["1392375461", True, 0, -5, 1.5])
def test_non_integer_export_id_is_not_used_as_channel_id(bad_id: Any) -> None:
    """A top-level 'id' that is not a positive integer is ignored rather than stored as the channel id."""
    (item,) = parse(export([message(3)], id=bad_id)).items
    assert item.channel_id is None


def test_export_with_neither_name_nor_id_is_rejected() -> None:
    """An export with no usable name and no numeric id cannot key its items, so the file is rejected."""
    result = parse(export([message(1)], name=None, id=None))
    assert result.items == []
    assert result.rejected == [Rejected(PATH, "Telegram export has neither a 'name' nor a numeric 'id'")]


def test_export_without_name_uses_the_id_as_channel() -> None:
    """An export with an id but no name (e.g. Saved Messages) uses the id as the channel name."""
    (item,) = parse(export([message(1)], name=None)).items
    assert (item.channel, item.channel_id) == (str(CHANNEL_ID), CHANNEL_ID)


# ------------------------------------------------------------------------------------------------
# forwards, replies, authors


def test_forward_with_forwarded_from_id_gives_name_and_numeric_channel() -> None:
    """forwarded_from names the source and a 'channel<id>' forwarded_from_id becomes Forward.channel."""
    post = message(9, forwarded_from="Генштаб ЗСУ", forwarded_from_id=f"channel{SOURCE_ID}")
    assert only_item(export([post])).forwarded_from == Forward(name="Генштаб ЗСУ", channel=str(SOURCE_ID))


def test_forward_without_forwarded_from_id_keeps_only_the_name() -> None:
    """Older exports give only the source name; Forward.channel stays unset."""
    post = message(9, forwarded_from="Генштаб ЗСУ")
    assert only_item(export([post])).forwarded_from == Forward(name="Генштаб ЗСУ")


def test_forward_from_a_user_or_hidden_source() -> None:
    """A user source is not a channel id, and a hidden source (null name) is still marked as a forward."""
    from_user = message(1, forwarded_from="Іван", forwarded_from_id="user777")
    hidden = {**message(2), "forwarded_from": None}
    result = parse(export([from_user, hidden]))
    assert [item.forwarded_from for item in result.items] == [Forward(name="Іван"), Forward()]


def test_reply_in_the_same_chat_sets_reply_to() -> None:
    """reply_to_message_id becomes reply_to as a string."""
    assert only_item(export([message(12, reply_to_message_id=11)])).reply_to == "11"


def test_reply_into_another_chat_is_not_a_local_reply() -> None:
    """A reply whose reply_to_peer_id is another chat does not point at a message of this channel."""
    here = message(12, reply_to_message_id=11, reply_to_peer_id=f"channel{CHANNEL_ID}")
    elsewhere = message(13, reply_to_message_id=11, reply_to_peer_id=f"channel{SOURCE_ID}")
    bad = message(14, reply_to_message_id="11")
    assert [item.reply_to for item in parse(export([here, elsewhere, bad])).items] == ["11", None, None]


def test_group_sender_is_the_author_but_a_channel_is_not() -> None:
    """In a group the sender's name is the author; a channel's own post without a signature has no author."""
    group = export(
        [message(1, **{"from": "Петро", "from_id": "user12345"}), message(2)],
        type="public_supergroup",
    )
    assert [item.author for item in parse(group).items] == ["Петро", None]


# ------------------------------------------------------------------------------------------------
# media


def test_photo_becomes_photo_media_with_its_path_and_size() -> None:
    """A photo post carries Media(type='photo') with the export's relative path and size; empty text is fine."""
    post = message(
        20,
        text="",
        text_entities=[],
        photo="photos/photo_1@16-11-2023_14-05-31.jpg",
        photo_file_size=184233,
        width=1280,
        height=960,
    )
    item = only_item(export([post]))
    assert item.text == ""
    assert item.media == [Media(type="photo", url="photos/photo_1@16-11-2023_14-05-31.jpg", size=184233)]


def test_file_media_uses_media_type_or_document() -> None:
    """A file is typed by media_type (video_file, voice_message...) or 'document' without one."""
    video = message(
        21,
        file="video_files/strike.mp4",
        thumbnail="video_files/strike.mp4_thumb.jpg",
        media_type="video_file",
        mime_type="video/mp4",
        duration_seconds=42,
        width=1920,
        height=1080,
        file_size=9_876_543,
    )
    document = message(22, file="files/report.pdf", mime_type="application/pdf", file_size=1024)
    sticker = message(23, text="", text_entities=[], file="stickers/sticker.webp", media_type="sticker")
    items = parse(export([video, document, sticker])).items
    assert [item.media for item in items] == [
        [Media(type="video_file", url="video_files/strike.mp4", size=9_876_543)],
        [Media(type="document", url="files/report.pdf", size=1024)],
        [Media(type="sticker", url="stickers/sticker.webp")],
    ]


def test_file_not_included_placeholder_is_kept_as_the_url() -> None:
    """A media file the export left out keeps its '(File not included...)' placeholder as its url."""
    placeholder = "(File not included. Change data exporting settings to download.)"
    post = message(24, text="", text_entities=[], file=placeholder, media_type="animation", mime_type="video/mp4")
    assert only_item(export([post])).media == [Media(type="animation", url=placeholder)]


def test_photo_size_falls_back_to_file_size() -> None:
    """A photo with only file_size (no photo_file_size) takes that size."""
    post = message(25, photo="photos/p.jpg", file_size=77)
    assert only_item(export([post])).media == [Media(type="photo", url="photos/p.jpg", size=77)]


# ------------------------------------------------------------------------------------------------
# skipped messages


def test_service_and_unsupported_messages_are_skipped_and_counted() -> None:
    """Service and unsupported messages yield no item and no rejection; their counts are in the warnings."""
    service = {
        "id": 1,
        "type": "service",
        "date": "2023-11-16T09:00:00",
        "date_unixtime": "1700118000",
        "actor": "Донбас Фронт",
        "actor_id": f"channel{CHANNEL_ID}",
        "action": "pin_message",
        "message_id": 2,
        "text": "",
        "text_entities": [],
    }
    unsupported = {"id": 3, "type": "unsupported"}
    result = parse(export([service, message(2), unsupported, {**service, "id": 4}]))
    assert [item.external_id for item in result.items] == ["2"]
    assert result.rejected == []
    (note,) = result.warnings
    assert "skipped 3 message(s)" in note
    assert "2 service" in note and "1 unsupported" in note


def test_message_with_neither_text_nor_media_is_skipped() -> None:
    """A post with empty text and no media (e.g. a poll) is skipped, not rejected."""
    poll = message(6, text="", text_entities=[], poll={"question": "?", "answers": []})
    blank = message(7, text="  \n", text_entities=None)
    result = parse(export([poll, blank, message(8)]))
    assert [item.external_id for item in result.items] == ["8"]
    assert result.rejected == []
    assert any("2 with neither text nor media" in w for w in result.warnings)


def test_export_with_no_posts_warns() -> None:
    """An export whose message list is empty yields nothing, but says so in a warning."""
    result = parse(export([]))
    assert (result.items, result.rejected) == ([], [])
    assert result.warnings == ["the export holds no posts with text or media"]


# ------------------------------------------------------------------------------------------------
# edits and raw


def test_edited_message_stays_new_and_records_edited_at_in_raw() -> None:
    """An edited post is still event 'new' (the export holds its final text) with edited_at in raw."""
    post = message(30, edited="2023-11-16T18:00:00", edited_unixtime="1700150400")
    item = only_item(export([post]))
    assert item.event == "new"
    assert item.raw is not None
    assert item.raw["edited_at"] == "2023-11-16T16:00:00+00:00"
    assert item.raw["id"] == 30


def test_raw_is_the_original_message() -> None:
    """raw holds the message object exactly as exported."""
    item = only_item(export([NEW_FORMAT_POST]))
    assert item.raw == NEW_FORMAT_POST


def test_huge_message_raw_is_bounded() -> None:
    """A message bigger than the raw limit keeps only a size note in raw (still with edited_at)."""
    post = message(31, text="Бахмут " * (RAW_MAX_BYTES // 4), text_entities=None, edited_unixtime="1700150400")
    item = only_item(export([post]))
    assert item.raw is not None
    assert item.raw["truncated"] is True and item.raw["bytes"] > RAW_MAX_BYTES
    assert item.raw["edited_at"] == "2023-11-16T16:00:00+00:00"
    assert "text" not in item.raw


def test_long_text_is_truncated_and_reported_per_message() -> None:
    """Text over max_text_chars is cut at a boundary and reported as path:messages[INDEX]."""
    long_text = "\n\n".join(f"Абзац {n} про бої біля Бахмута." for n in range(50))
    result = parse(export([message(1), message(2, text=long_text, text_entities=None)]), max_text_chars=200)
    short, cut = result.items
    assert short.text == "Пост 1: обстріл Бахмута триває."
    assert len(cut.text) <= 200 and long_text.startswith(cut.text)
    (report,) = result.truncated
    assert (report.path, report.original_chars, report.kept_chars) == (
        f"{PATH}:messages[1]",
        len(long_text),
        len(cut.text),
    )


def test_items_survive_the_wire() -> None:
    """Every imported item encodes and decodes as a RawItem unchanged."""
    posts = [NEW_FORMAT_POST, message(2, photo="photos/a.jpg", forwarded_from="X", forwarded_from_id="channel5")]
    for item in parse(export(posts)).items:
        assert decode(RawItem, encode(item)) == item


# ------------------------------------------------------------------------------------------------
# malformed input


def test_malformed_messages_are_rejected_by_index_and_the_rest_imports() -> None:
    """Each malformed message is rejected as path:messages[INDEX] with its problem; good messages still import."""
    messages: list[Any] = [
        message(1),  # 0 good
        "not a message",  # 1
        {k: v for k, v in message(2).items() if k != "id"},  # 2
        message(3, id="3"),  # 3
        message(4, date_unixtime="tomorrow", date="16.11.2023"),  # 4
        message(5, text=5, text_entities=None),  # 5
        message(6, text_entities=[{"type": "bold"}]),  # 6
        message(7, text_entities="plain"),  # 7: a string text_entities is tolerated
        {k: v for k, v in message(8).items() if k not in ("date", "date_unixtime")},  # 8
        message(9, type=["message"]),  # 9
        message(10, id=True),  # 10
        message(11),  # 11 good
    ]
    result = parse(export(messages))
    assert [item.external_id for item in result.items] == ["1", "7", "11"]
    reasons = {bad.path.removeprefix(f"{PATH}:"): bad.reason for bad in result.rejected}
    assert reasons == {
        "messages[1]": "message is a string, not an object",
        "messages[2]": "no 'id'",
        "messages[3]": "'id' must be a positive integer, not \"3\"",
        "messages[4]": "invalid 'date_unixtime' \"tomorrow\" and no usable 'date'",
        "messages[5]": "'text' must be a string or a list, not a number",
        "messages[6]": "'text_entities[0]' is an object, not a string or an entity object with a 'text' string",
        "messages[8]": "no 'date' or 'date_unixtime'",
        "messages[9]": "'type' must be a string, not a list",
        "messages[10]": "'id' must be a positive integer, not true",
    }


def test_lone_surrogate_escape_rejects_only_that_message() -> None:
    """A message holding an unpaired \\ud800 escape cannot be stored, so it alone is rejected."""
    data = json.dumps(export([message(1), message(2, text="bad \ud800 text", text_entities=None)]))
    result = parse_export(data, path=PATH, collected_at=COLLECTED)
    assert [item.external_id for item in result.items] == ["1"]
    (bad,) = result.rejected
    assert bad.path == f"{PATH}:messages[1]" and "surrogate" in bad.reason


def test_invalid_json_is_rejected_with_line_and_column() -> None:
    """Text that is not JSON is one rejection for the file naming the line and column of the error."""
    data = '{\n  "name": "Донбас Фронт",\n  "messages": [\n    {"id": 1,, "type": "message"}\n  ]\n}\n'
    result = parse_export(data, path=PATH, collected_at=COLLECTED)
    assert result.items == []
    assert result.rejected == [
        Rejected(PATH, "invalid JSON at line 4, column 14: Expecting property name enclosed in double quotes")
    ]


@pytest.mark.parametrize(
    "document",
    [
        [1, 2, 3],
        "just a string",
        {"name": "Донбас Фронт", "id": CHANNEL_ID},
        {"name": "x", "messages": {"1": "not a list"}},
        {"about": "Telegram settings", "frequent_contacts": {"list": []}},
    ],
)
def test_json_that_is_not_an_export_is_rejected(document: Any) -> None:
    """Valid JSON without a top-level 'messages' list is rejected as not a Telegram Desktop chat export."""
    result = parse(document)
    assert (result.items, result.rejected) == ([], [Rejected(PATH, NOT_AN_EXPORT)])
    assert NOT_AN_EXPORT == "JSON file is not a Telegram Desktop chat export (no 'messages' list)"


def test_whole_account_export_gets_a_hint() -> None:
    """A whole-account export (chats list, no messages) is rejected with advice to export one chat."""
    result = parse({"about": "...", "chats": {"about": "...", "list": [export([message(1)])]}})
    (bad,) = result.rejected
    assert bad.reason.startswith(NOT_AN_EXPORT) and "one channel's chat history" in bad.reason


def test_deeply_nested_json_is_rejected_not_raised() -> None:
    """JSON nested beyond the parser's recursion limit is a rejection, not a RecursionError."""
    result = parse_export("[" * 100_000 + "]" * 100_000, path=PATH)
    assert [bad.reason for bad in result.rejected] == ["invalid JSON: nested too deeply"]


def test_non_positive_text_limit_is_a_programming_error() -> None:
    """max_text_chars below 1 raises ValueError, as read_corpus_file does."""
    with pytest.raises(ValueError, match="positive"):
        parse_export("{}", path=PATH, max_text_chars=0)


def test_collected_at_defaults_to_now() -> None:
    """Without collected_at, items are stamped with the current UTC time."""
    before = datetime.now(UTC)
    (item,) = parse_export(json.dumps(export([message(1)])), path=PATH).items
    assert before <= item.collected_at <= datetime.now(UTC)


_JSON_SCALARS = st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats() | st.text(max_size=30)
_JSON_VALUES = st.recursive(
    _JSON_SCALARS,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=12,
)
_MESSAGE_KEYS = st.sampled_from(
    ["id", "type", "date", "date_unixtime", "text", "text_entities", "photo", "file", "media_type", "file_size",
     "forwarded_from", "forwarded_from_id", "reply_to_message_id", "reply_to_peer_id", "author", "from",
     "from_id", "edited", "edited_unixtime"]
)  # fmt: skip
_MESSAGES = st.lists(st.dictionaries(_MESSAGE_KEYS, _JSON_VALUES, max_size=10) | _JSON_VALUES, max_size=8)


@settings(max_examples=300, deadline=None)
@given(messages=_MESSAGES, top_id=_JSON_VALUES, name=_JSON_VALUES)
def test_arbitrary_messages_never_raise_and_items_encode(messages: list[Any], top_id: Any, name: Any) -> None:
    """Any JSON in the message list gives items, rejections or skips, never an exception; items encode."""
    result = parse_export(
        json.dumps({"name": name, "id": top_id, "messages": messages}), path=PATH, collected_at=COLLECTED
    )
    assert len(result.items) + len(result.rejected) <= max(len(messages), 1)
    for item in result.items:
        assert decode(RawItem, encode(item)) == item
        assert item.published_at is not None and item.published_at.tzinfo is not None


# ------------------------------------------------------------------------------------------------
# through read_corpus_file and discover


def write_export(folder: Path, document: Any) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "photos").mkdir(exist_ok=True)
    (folder / "photos" / "photo_1@16-11-2023_14-05-31.jpg").write_bytes(b"\xff\xd8\xff\xe0" + bytes(64))
    path = folder / "result.json"
    path.write_text(json.dumps(document, ensure_ascii=False, indent=1), encoding="utf-8")
    return path


def test_discover_and_read_corpus_file_pick_up_result_json(tmp_path: Path) -> None:
    """A folder holding a chat export's result.json is discovered and read into telegram_export items."""
    root = tmp_path / "inbox"
    result_json = write_export(
        root / "ChatExport_2023-11-20",
        export([NEW_FORMAT_POST, message(4513, photo="photos/photo_1@16-11-2023_14-05-31.jpg")]),
    )
    (root / "note.txt").write_text("Fighting near Bakhmut continued.", encoding="utf-8")
    files, rejected = discover([root])
    assert rejected == []
    assert files == [result_json, root / "note.txt"]
    result = read_corpus_file(result_json, collected_at=COLLECTED)
    assert (result.rejected, result.truncated, result.warnings) == ([], [], [])
    assert [item_id(item) for item in result.items] == [f"telegram:{CHANNEL_ID}:4512", f"telegram:{CHANNEL_ID}:4513"]
    assert {item.source for item in result.items} == {"telegram_export"}


def test_explicit_json_file_is_accepted_by_discover(tmp_path: Path) -> None:
    """A .json file named on the command line is supported, not rejected as an unknown type."""
    path = write_export(tmp_path / "export", export([message(1)]))
    assert discover([path]) == ([path], [])


def test_read_corpus_file_rejects_a_non_export_json(tmp_path: Path) -> None:
    """read_corpus_file gives a plain JSON document the not-an-export rejection under the file's path."""
    path = tmp_path / "config.json"
    path.write_text('{"redis": {"url": "redis://localhost"}}', encoding="utf-8")
    result = read_corpus_file(path, collected_at=COLLECTED)
    assert (result.items, result.rejected) == ([], [Rejected(str(path), NOT_AN_EXPORT)])


def test_read_corpus_file_reports_invalid_json_position(tmp_path: Path) -> None:
    """A broken .json file is rejected with the line and column, after a BOM is dropped."""
    path = tmp_path / "result.json"
    path.write_bytes(b'\xef\xbb\xbf{\r\n "messages": [}\r\n')
    (bad,) = read_corpus_file(path, collected_at=COLLECTED).rejected
    assert (bad.path, bad.reason) == (str(path), "invalid JSON at line 2, column 15: Expecting value")


def test_read_corpus_file_checks_size_encoding_and_emptiness_before_parsing(tmp_path: Path) -> None:
    """Oversize, empty, non-UTF-8 and binary .json files get the usual file rejections, not a JSON error."""
    big = write_export(tmp_path / "big", export([message(1)]))
    empty = tmp_path / "empty.json"
    empty.write_bytes(b"  \n")
    latin = tmp_path / "latin.json"
    latin.write_bytes(b'{"name": "Bakhmut \xe9", "messages": []}')
    binary = tmp_path / "binary.json"
    binary.write_bytes(b"{\x00\x00}")
    reasons = [
        read_corpus_file(big, max_bytes=100).rejected[0].reason,
        read_corpus_file(empty).rejected[0].reason,
        read_corpus_file(latin).rejected[0].reason,
        read_corpus_file(binary).rejected[0].reason,
    ]
    assert reasons[0].startswith("file is ") and "collectors.corpus.max_bytes" in reasons[0]
    assert reasons[1:] == ["empty file", "not valid UTF-8 (invalid byte 0xe9 at offset 18)", "binary file (NUL bytes)"]


def test_read_corpus_file_passes_the_text_limit_to_the_export(tmp_path: Path) -> None:
    """max_text_chars given to read_corpus_file applies to export posts, reported under the file's path."""
    path = write_export(tmp_path / "e", export([message(1, text="слово " * 100, text_entities=None)]))
    result = read_corpus_file(path, max_text_chars=50, collected_at=COLLECTED)
    assert len(result.items[0].text) <= 50
    assert [cut.path for cut in result.truncated] == [f"{path}:messages[0]"]


def test_file_result_warnings_default_to_empty() -> None:
    """FileResult built the old way (items, rejected, truncated) still works and has no warnings."""
    assert FileResult(items=[], rejected=[], truncated=[]).warnings == []


@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.binary(max_size=512))
def test_arbitrary_json_file_bytes_never_raise(tmp_path: Path, data: bytes) -> None:
    """Any bytes in a .json file give items, rejections or warnings through read_corpus_file, never an exception."""
    path = tmp_path / "fuzz.json"
    path.write_bytes(data)
    result = read_corpus_file(path, collected_at=COLLECTED)
    assert result.items or result.rejected or result.warnings
