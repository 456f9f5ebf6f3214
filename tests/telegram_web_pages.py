"""Builders of t.me/s pages in the real markup, for the telegram_web tests and their local server.

The structure follows the public web preview: one ``div.tgme_widget_message_wrap`` per post, holding a
``div.tgme_widget_message`` with ``data-post`` and a base64 ``data-view``. Inside is the bubble with
author, forward and reply headers, media, text and the footer with views, signature and date. A
``tme_messages_more`` link at the top points to the older page. All content here is made up for the
tests.
"""

from __future__ import annotations

import base64
import html
import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

PUBLIC_BASE = "https://t.me"
CDN = "https://cdn4.telesco.pe/file"
PER_PAGE = 20


def data_view(channel_id: int, post_id: int, when: datetime, *, padded: bool = False) -> str:
    """The ``data-view`` attribute: base64 JSON with the negated channel id; t.me drops the padding."""
    payload = {"c": -channel_id, "p": f"{post_id}", "t": int(when.timestamp()), "h": f"{post_id * 7919:x}"}
    encoded = base64.b64encode(json.dumps(payload, separators=(",", ":")).encode()).decode()
    return encoded if padded else encoded.rstrip("=")


def emoji(char: str) -> str:
    """An emoji as t.me renders it: an image span with the character inside a <b>."""
    code = char.encode("utf-8").hex().upper()
    return (
        f'<i class="emoji" style="background-image:url(\'//telegram.org/img/emoji/40/{code}.png\')"><b>{char}</b></i>'
    )


def photo(url: str, href: str, *, width: int = 800, ratio: float = 56.25) -> str:
    """One photo: an anchor whose background image is the picture."""
    return (
        f'<a class="tgme_widget_message_photo_wrap blured" href="{href}" '
        f"style=\"width:{width}px;background-image:url('{url}')\">"
        f'<div class="tgme_widget_message_photo" style="padding-top:{ratio}%"></div></a>'
    )


def album(items: Sequence[tuple[str, str]]) -> str:
    """Several photos of one post, in the grouped layout."""
    layers = "".join(f'<div class="tgme_widget_message_grouped_layer">{photo(url, href)}</div>' for url, href in items)
    return (
        '<div class="tgme_widget_message_grouped_wrap js-message_grouped_wrap" data-margin-w="2" data-margin-h="2">'
        f'<div class="tgme_widget_message_grouped js-message_grouped">{layers}</div></div>'
    )


def video(src: str, thumb: str, href: str, duration: str) -> str:
    """A video the preview can play: a player anchor with a thumbnail and a <video> tag."""
    return (
        f'<a class="tgme_widget_message_video_player js-message_video_player" href="{href}">'
        f'<i class="tgme_widget_message_video_thumb" style="background-image:url(\'{thumb}\')"></i>'
        '<div class="tgme_widget_message_video_wrap">'
        f'<video src="{src}" class="tgme_widget_message_video js-message_video" width="100%" height="100%" '
        "muted playsinline></video></div>"
        '<div class="message_video_play"></div>'
        f'<time class="message_video_duration js-message_video_duration">{duration}</time></a>'
    )


def document(href: str, title: str, extra: str) -> str:
    """A file attachment with its name and size."""
    return (
        f'<a class="tgme_widget_message_document_wrap" href="{href}">'
        '<div class="tgme_widget_message_document_icon accent_bg"></div>'
        '<div class="tgme_widget_message_document">'
        f'<div class="tgme_widget_message_document_title accent_color" dir="auto">{html.escape(title)}</div>'
        f'<div class="tgme_widget_message_document_extra" dir="auto">{html.escape(extra)}</div>'
        "</div></a>"
    )


def poll(question: str, options: Sequence[tuple[str, int]], kind: str = "Anonymous poll") -> str:
    """A poll with its question, type and options with percentages."""
    rows = "".join(
        '<div class="tgme_widget_message_poll_option">'
        f'<div class="tgme_widget_message_poll_option_percent">{percent}%</div>'
        '<div class="tgme_widget_message_poll_option_value">'
        f'<div class="tgme_widget_message_poll_option_text" dir="auto">{html.escape(text)}</div>'
        f'<div class="tgme_widget_message_poll_option_bar" style="width:{percent}%"></div></div></div>'
        for text, percent in options
    )
    return (
        '<div class="tgme_widget_message_poll js-poll">'
        f'<div class="tgme_widget_message_poll_question" dir="auto">{html.escape(question)}</div>'
        f'<div class="tgme_widget_message_poll_type">{html.escape(kind)}</div>'
        f'<div class="tgme_widget_message_poll_options">{rows}</div>'
        '<div class="tgme_widget_message_poll_votes">1,204 votes</div></div>'
    )


def link_preview(url: str, site: str, title: str, description: str, image: str) -> str:
    """The card shown under a post that contains a link."""
    return (
        f'<a class="tgme_widget_message_link_preview" href="{url}">'
        f'<i class="link_preview_right_image" style="background-image:url(\'{image}\')"></i>'
        f'<div class="link_preview_site_name accent_color" dir="auto">{html.escape(site)}</div>'
        f'<div class="link_preview_title" dir="auto">{html.escape(title)}</div>'
        f'<div class="link_preview_description" dir="auto">{html.escape(description)}</div></a>'
    )


@dataclass
class Post:
    """One post; the fields hold inner HTML where markup is allowed."""

    id: int
    text_html: str = ""
    when: datetime | None = None
    views: str | None = "1.1K"
    media_html: str = ""  # placed before the text, as t.me does for photos, albums, videos, polls
    after_text_html: str = ""  # placed after the text (link previews)
    forwarded_html: str | None = None  # the inside of .tgme_widget_message_forwarded_from
    reply_to: int | None = None
    reply_author: str = ""
    reply_quote_html: str = ""
    signature: str | None = None
    service: bool = False
    edited: bool = False
    # The class of the text block; a test changes it to simulate a markup change.
    text_class: str = "tgme_widget_message_text js-message_text"


def post_when(post_id: int) -> datetime:
    """A deterministic publication time per id: one post every 7 minutes."""
    return datetime(2024, 3, 5, 6, 0, tzinfo=UTC) + timedelta(minutes=7 * post_id % 100_000)


def post_html(channel: str, title: str, channel_id: int, post: Post) -> str:
    """One post in the real structure."""
    when = post.when or post_when(post.id)
    permalink = f"{PUBLIC_BASE}/{channel}/{post.id}"
    view = data_view(channel_id, post.id, when)
    iso = when.isoformat()  # t.me writes the offset, e.g. 2024-03-05T09:14:00+00:00
    if post.service:
        return (
            '<div class="tgme_widget_message_wrap js-widget_message_wrap">'
            f'<div class="tgme_widget_message service_message js-widget_message" data-post="{channel}/{post.id}" '
            f'data-view="{view}">'
            '<div class="tgme_widget_message_bubble">'
            f'<div class="tgme_widget_message_text js-message_text" dir="auto">{post.text_html}</div>'
            '<div class="tgme_widget_message_footer"><div class="tgme_widget_message_info">'
            f'<a class="tgme_widget_message_date" href="{permalink}"><time datetime="{iso}" class="time">'
            f"{when:%H:%M}</time></a></div></div></div></div></div>"
        )
    parts = [
        '<div class="tgme_widget_message_wrap js-widget_message_wrap">',
        f'<div class="tgme_widget_message text_not_supported_wrap js-widget_message" data-post="{channel}/{post.id}" '
        f'data-view="{view}">',
        '<div class="tgme_widget_message_user">'
        f'<a href="{PUBLIC_BASE}/{channel}"><i class="tgme_widget_message_user_photo bgcolor2" '
        f'style="background-color:#c8e6c9" data-content="{html.escape(title[:1])}"><img '
        f'src="{CDN}/avatar_{channel}.jpg"></i></a></div>',
        '<div class="tgme_widget_message_bubble">',
        '<i class="tgme_widget_message_bubble_tail"><svg class="bubble_icon" width="9px" height="20px" '
        'viewBox="0 0 9 20"><path d="M8,1 L9,1 L9,20 L8,20 Z"></path></svg></i>',
        '<div class="tgme_widget_message_author accent_color">'
        f'<a class="tgme_widget_message_owner_name" href="{PUBLIC_BASE}/{channel}"><span dir="auto">'
        f"{html.escape(title)}</span></a></div>",
    ]
    if post.forwarded_html is not None:
        parts.append(f'<div class="tgme_widget_message_forwarded_from accent_color">{post.forwarded_html}</div>')
    if post.reply_to is not None:
        parts.append(
            f'<a class="tgme_widget_message_reply" href="{PUBLIC_BASE}/{channel}/{post.reply_to}">'
            '<div class="tgme_widget_message_author accent_color">'
            f'<span class="tgme_widget_message_author_name" dir="auto">{html.escape(post.reply_author)}</span></div>'
            f'<div class="tgme_widget_message_text js-message_reply_text" dir="auto">{post.reply_quote_html}</div>'
            "</a>"
        )
    parts.append(post.media_html)
    if post.text_html:
        parts.append(f'<div class="{post.text_class}" dir="auto">{post.text_html}</div>')
    parts.append(post.after_text_html)
    views = f'<span class="tgme_widget_message_views">{post.views}</span>' if post.views else ""
    signature = (
        f'<span class="tgme_widget_message_from_author" dir="auto">{html.escape(post.signature)}</span>, '
        if post.signature
        else ""
    )
    edited = "edited " if post.edited else ""
    parts.append(
        '<div class="tgme_widget_message_footer compact js-message_footer">'
        '<div class="tgme_widget_message_info short js-message_info">'
        f'{views}<span class="tgme_widget_message_meta">{signature}{edited}'
        f'<a class="tgme_widget_message_date" href="{permalink}"><time datetime="{iso}" class="time">'
        f"{when:%H:%M}</time></a></span></div></div>"
    )
    parts.append("</div></div></div>")
    return "".join(parts)


def page_html(
    channel: str,
    title: str,
    posts: Sequence[str],
    *,
    before: int | None = None,
    after: int | None = None,
    subscribers: str = "48.2K subscribers",
) -> str:
    """A whole t.me/s document around ``posts`` (oldest first), with the "more" links."""
    more = (
        '<div class="tgme_widget_message_centered js-messages_more_wrap">'
        f'<a href="/s/{channel}?before={before}" class="tme_messages_more js-messages_more" '
        f'data-before="{before}"></a></div>'
        if before is not None
        else ""
    )
    newer = (
        '<div class="tgme_widget_message_centered js-messages_more_wrap">'
        f'<a href="/s/{channel}?after={after}" class="tme_messages_more js-messages_more" data-after="{after}"></a>'
        "</div>"
        if after is not None
        else ""
    )
    safe_title = html.escape(title)
    return (
        "<!DOCTYPE html>\n<html>\n<head>\n"
        '<meta charset="utf-8">\n'
        f"<title>{safe_title} – Telegram</title>\n"
        '<meta name="viewport" content="width=device-width, initial-scale=1.0">\n'
        f'<meta property="og:title" content="{safe_title}">\n'
        f'<meta property="og:image" content="{CDN}/avatar_{channel}.jpg">\n'
        f'<link rel="canonical" href="{PUBLIC_BASE}/s/{channel}">\n'
        '<link href="//telegram.org/css/widget-frame.css" rel="stylesheet">\n'
        "</head>\n"
        '<body class="widget_frame_base tgme_webpreview_body">\n'
        '<header class="tgme_header search_collapsed"><div class="tgme_header_brand">'
        '<a class="tgme_header_link" href="//telegram.org/">Telegram</a></div></header>\n'
        '<main class="tgme_main"><div class="tgme_container">\n'
        '<section class="tgme_right_column"><div class="tgme_channel_info">'
        '<div class="tgme_channel_info_header">'
        f'<div class="tgme_channel_info_header_title"><span dir="auto">{safe_title}</span></div>'
        f'<div class="tgme_channel_info_header_username"><a href="{PUBLIC_BASE}/{channel}">@{channel}</a></div>'
        "</div>"
        f'<div class="tgme_channel_info_counters"><div class="tgme_channel_info_counter">'
        f'<span class="counter_value">{subscribers}</span></div></div></div></section>\n'
        f'<section class="tgme_channel_history js-message_history">{more}\n'
        + "\n".join(posts)
        + f"\n{newer}</section>\n"
        "</div></main>\n"
        '<script src="//telegram.org/js/widget-frame.js"></script>\n'
        "</body>\n</html>\n"
    )


def landing_html(channel: str, title: str) -> str:
    """The t.me/<channel> page a private channel (or one without preview) redirects to."""
    return (
        '<!DOCTYPE html><html><head><meta charset="utf-8">'
        f"<title>Telegram: Contact @{channel}</title></head>"
        '<body class="no_transition"><div class="tgme_page_wrap"><div class="tgme_page">'
        f'<div class="tgme_page_title"><span dir="auto">{html.escape(title)}</span></div>'
        '<div class="tgme_page_extra">private channel</div>'
        f'<div class="tgme_page_action"><a class="tgme_action_button_new" href="tg://resolve?domain={channel}">'
        "View in Telegram</a></div></div></div></body></html>"
    )


class FakeChannel:
    """A channel's history, rendered page by page the way t.me/s pages it (newest page first)."""

    def __init__(self, name: str, title: str, channel_id: int, posts: Sequence[Post] = ()) -> None:
        self.name = name
        self.title = title
        self.channel_id = channel_id
        self.posts: dict[int, Post] = {p.id: p for p in posts}

    @classmethod
    def numbered(cls, name: str, title: str, channel_id: int, first: int, last: int) -> FakeChannel:
        """A channel with one plain text post per id from ``first`` to ``last``."""
        channel = cls(name, title, channel_id)
        for post_id in range(first, last + 1):
            channel.add(Post(post_id, text_html=f"Report {post_id}: shelling near the bridge<br>Update to follow."))
        return channel

    def add(self, post: Post) -> None:
        self.posts[post.id] = post

    def render(self, before: int | None = None, per_page: int = PER_PAGE) -> str:
        """The page with the newest ``per_page`` posts older than ``before`` (all posts when None)."""
        ids = sorted(i for i in self.posts if before is None or i < before)
        shown = ids[-per_page:]
        older = shown[0] if shown and len(ids) > len(shown) else None
        newer_ids = [i for i in self.posts if shown and i > shown[-1]]
        after = shown[-1] if before is not None and newer_ids else None
        body = [post_html(self.name, self.title, self.channel_id, self.posts[i]) for i in shown]
        return page_html(self.name, self.title, body, before=older, after=after)
