"""A local news-feed server for the feed collector tests: RSS 2.0 and Atom feeds, and article pages.

It speaks plain HTTP on 127.0.0.1 the way news sites do. It sends ETag and Last-Modified and answers
304 to a matching conditional GET, follows 301 redirects, and can script 429/503 answers with
Retry-After. It also records every request, and the peak number in flight, so that tests can check
conditional headers and the per-host limit. The feeds and articles below are written for these tests.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from email.utils import format_datetime
from html import escape

from aiohttp import web

KYIV = timezone(timedelta(hours=2))
# The tests' "now" (their injected wall clock): Wednesday 6 March 2024, noon UTC.
NOW = datetime(2024, 3, 6, 12, 0, tzinfo=UTC)


# --- feed documents --------------------------------------------------------------------------------


@dataclass(slots=True)
class Entry:
    """One feed entry; ``None`` fields are left out of the document."""

    title: str | None
    link: str | None = None
    guid: str | None = None
    published: datetime | None = None
    summary_html: str | None = None
    content_html: str | None = None
    author: str | None = None
    # (url, mime type, length) of <enclosure>, and (url, mime type, medium) of <media:content>.
    enclosures: list[tuple[str, str, int]] = field(default_factory=list)
    media: list[tuple[str, str, str]] = field(default_factory=list)
    categories: list[str] = field(default_factory=list)


def rss(title: str, site: str, entries: Sequence[Entry], *, extra: str = "") -> bytes:
    """An RSS 2.0 document (newest entry first, as feeds list them)."""
    items: list[str] = []
    for e in entries:
        parts = ["<item>"]
        if e.title is not None:
            parts.append(f"<title>{escape(e.title)}</title>")
        if e.link is not None:
            parts.append(f"<link>{escape(e.link)}</link>")
        if e.guid is not None:
            parts.append(f'<guid isPermaLink="false">{escape(e.guid)}</guid>')
        if e.published is not None:
            parts.append(f"<pubDate>{format_datetime(e.published)}</pubDate>")
        if e.author is not None:
            parts.append(f"<dc:creator>{escape(e.author)}</dc:creator>")
        parts.extend(f"<category>{escape(c)}</category>" for c in e.categories)
        if e.summary_html is not None:
            parts.append(f"<description>{escape(e.summary_html)}</description>")
        if e.content_html is not None:
            parts.append(f"<content:encoded><![CDATA[{e.content_html}]]></content:encoded>")
        parts.extend(f'<enclosure url="{escape(u)}" type="{t}" length="{n}"/>' for u, t, n in e.enclosures)
        parts.extend(f'<media:content url="{escape(u)}" type="{t}" medium="{m}"/>' for u, t, m in e.media)
        parts.append("</item>")
        items.append("".join(parts))
    document = (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        '<rss version="2.0" xmlns:dc="http://purl.org/dc/elements/1.1/" '
        'xmlns:content="http://purl.org/rss/1.0/modules/content/" xmlns:media="http://search.yahoo.com/mrss/">\n'
        f"<channel><title>{escape(title)}</title><link>{escape(site)}</link>"
        f"<description>{escape(title)} - latest reports</description><language>en</language>{extra}\n"
        + "\n".join(items)
        + "\n</channel></rss>\n"
    )
    return document.encode("utf-8")


def atom(title: str, site: str, feed_id: str, entries: Sequence[Entry]) -> bytes:
    """An Atom 1.0 document."""
    parts: list[str] = []
    for e in entries:
        when = (e.published or NOW).isoformat()
        body = [f"<entry><id>{escape(e.guid or '')}</id>"]
        if e.title is not None:
            body.append(f'<title type="text">{escape(e.title)}</title>')
        if e.link is not None:
            body.append(f'<link rel="alternate" type="text/html" href="{escape(e.link)}"/>')
        body.append(f"<published>{when}</published><updated>{when}</updated>")
        if e.author is not None:
            body.append(f"<author><name>{escape(e.author)}</name></author>")
        if e.summary_html is not None:
            body.append(f'<summary type="html">{escape(e.summary_html)}</summary>')
        if e.content_html is not None:
            body.append(f'<content type="html">{escape(e.content_html)}</content>')
        body.extend(f'<category term="{escape(c)}"/>' for c in e.categories)
        body.append("</entry>")
        parts.append("".join(body))
    newest = max((e.published or NOW for e in entries), default=NOW).isoformat()
    document = (
        '<?xml version="1.0" encoding="utf-8"?>\n<feed xmlns="http://www.w3.org/2005/Atom" xml:lang="uk">\n'
        f"<title>{escape(title)}</title><id>{escape(feed_id)}</id><updated>{newest}</updated>"
        f'<link rel="alternate" href="{escape(site)}"/>\n' + "\n".join(parts) + "\n</feed>\n"
    )
    return document.encode("utf-8")


# --- the news written for these tests --------------------------------------------------------------

SITE = "https://frontline-review.example"


def frontline_entries(base_url: str) -> list[Entry]:
    """Three reports in English, Ukrainian and Russian, newest first; two mention Bakhmut."""
    return [
        Entry(
            title="Под Бахмутом продолжаются бои за высоты к западу от города",
            link=f"{base_url}/articles/bakhmut-heights-ru.html",
            guid="frontline:2024-03-06:bakhmut-heights-ru",
            published=datetime(2024, 3, 6, 6, 5, tzinfo=UTC),
            summary_html="Бои идут у Часова Яра и Ивановского.\nПодразделения ротируются ночью.",
            author="Служба новостей",
            media=[(f"{SITE}/media/heights.mp4", "video/mp4", "video")],
        ),
        Entry(
            title="Харків: нічна атака дронів, пошкоджено енергетичну інфраструктуру",
            link=f"{base_url}/articles/kharkiv-drones-uk.html",
            guid="frontline:2024-03-05:kharkiv-drones-uk",
            published=datetime(2024, 3, 5, 23, 15, tzinfo=KYIV),
            summary_html=(
                "<p>Уночі російські ударні дрони атакували Харків; влучання зафіксовано в Київському районі.</p>"
                "<p>Поранених немає, повідомив голова обласної адміністрації.</p>"
            ),
            author="Олена Мирна",
            categories=["Харків", "Енергетика"],
        ),
        Entry(
            title="Fighting continues west of Bakhmut as reserves rotate",
            link=f"{base_url}/articles/bakhmut-west.html?utm_source=rss&utm_medium=feed",
            guid="frontline:2024-03-05:bakhmut-west",
            published=datetime(2024, 3, 5, 7, 40, tzinfo=KYIV),
            summary_html=(
                "<p>Ukrainian units repelled <b>six assaults</b> near Bakhmut overnight, the General Staff said."
                "</p><p>Shelling was reported in Chasiv&nbsp;Yar and Ivanivske.<br>Two civilians were injured."
                "</p><script>trackReader()</script>"
            ),
            author="Frontline Desk",
            enclosures=[(f"{SITE}/media/bakhmut-west.jpg", "image/jpeg", 184_220)],
            categories=["Bakhmut", "Donetsk oblast"],
        ),
    ]


def kyiv_bureau_entries(base_url: str) -> list[Entry]:
    """Two Atom entries in Ukrainian with full content blocks."""
    return [
        Entry(
            title="Бахмутський напрямок: ворог збільшив кількість штурмів",
            link=f"{base_url}/kyiv/2024/03/06/bakhmut-shturmy",
            guid="tag:kyiv-bureau.example,2024-03-06:bakhmut-shturmy",
            published=datetime(2024, 3, 6, 9, 30, tzinfo=KYIV),
            summary_html="Коротко: більше штурмів на Бахмутському напрямку.",
            content_html=(
                "<p>За минулу добу на Бахмутському напрямку відбито 14 атак.</p>"
                "<p>Найактивніше противник діяв поблизу Богданівки та Іванівського.</p>"
            ),
            author="Київське бюро",
        ),
        Entry(
            title="Одеса: ППО збила ракети над морем",
            link=f"{base_url}/kyiv/2024/03/05/odesa-ppo",
            guid="tag:kyiv-bureau.example,2024-03-05:odesa-ppo",
            published=datetime(2024, 3, 5, 21, 0, tzinfo=KYIV),
            content_html="<p>Сили ППО знищили дві ракети над акваторією Чорного моря.</p>",
        ),
    ]


def bridge_entries(base_url: str) -> list[Entry]:
    """A social-media bridge that stopped updating: its newest post is from December 2022."""
    return [
        Entry(
            title="Soledar and Bakhmut under heavy shelling",
            link=f"{base_url}/bridge/status/1601",
            guid=f"{base_url}/bridge/status/1601",
            published=datetime(2022, 12, 14, 18, 2, tzinfo=UTC),
            summary_html="Soledar and Bakhmut under heavy shelling all day, local officials report.",
        ),
        Entry(
            title="Evacuation buses leave Bakhmut",
            link=f"{base_url}/bridge/status/1588",
            guid=f"{base_url}/bridge/status/1588",
            published=datetime(2022, 12, 12, 9, 45, tzinfo=UTC),
            summary_html="Evacuation buses left Bakhmut this morning with 40 residents.",
        ),
    ]


def shifting_feed(base_url: str, fetch: int) -> bytes:
    """A feed that mints new GUIDs on every fetch; from the second fetch on, it has one more entry."""
    entries = [
        Entry(
            title="Air raid alert lifted in Zaporizhzhia",
            link=f"{base_url}/zp/alert-lifted",
            guid=f"urn:uuid:{fetch:04d}-0002",
            published=datetime(2024, 3, 6, 8, 20, tzinfo=UTC),
            summary_html="The alert in Zaporizhzhia oblast lasted 47 minutes.",
        ),
        Entry(
            title="Bakhmut direction: situation update",
            link=f"{base_url}/zp/bakhmut-update",
            guid=f"urn:uuid:{fetch:04d}-0001",
            published=datetime(2024, 3, 6, 7, 0, tzinfo=UTC),
            summary_html="Morning situation update on the Bakhmut direction.",
        ),
        Entry(  # no link: only the title-and-date guard recognises it again
            title="Curfew hours unchanged",
            guid=f"urn:uuid:{fetch:04d}-0000",
            published=datetime(2024, 3, 5, 20, 0, tzinfo=UTC),
            summary_html="Curfew in the city stays from midnight to 5 a.m.",
        ),
    ]
    if fetch >= 2:
        entries.insert(
            0,
            Entry(
                title="Power restored in Zaporizhzhia districts",
                link=f"{base_url}/zp/power-restored",
                guid=f"urn:uuid:{fetch:04d}-0003",
                published=datetime(2024, 3, 6, 10, 10, tzinfo=UTC),
                summary_html="Engineers restored power to three districts.",
            ),
        )
    return rss("Zaporizhzhia Live", f"{base_url}/zp", entries)


def longreads_entries(base_url: str) -> list[Entry]:
    """Entries whose full text is on article pages: one page exists, one is gone (404)."""
    return [
        Entry(
            title="What the withdrawal from Avdiivka means for Bakhmut's flank",
            link=f"{base_url}/articles/avdiivka-analysis.html",
            guid="longreads:avdiivka-analysis",
            summary_html="<p>A short teaser for the analysis.</p>",
        ),
        Entry(
            title="Removed story",
            link=f"{base_url}/articles/gone.html",
            guid="longreads:gone",
            published=datetime(2024, 3, 5, 10, 0, tzinfo=UTC),
            summary_html="<p>Summary of a story whose page was taken down.</p>",
        ),
    ]


ARTICLE_PARAGRAPHS = [
    "Two weeks after Ukrainian troops left Avdiivka, the front line south of Bakhmut has shifted by several "
    "kilometres, and commanders describe a steady pressure on the villages west of the town.",
    "Officers of a brigade stationed near Chasiv Yar said the main problem remains artillery ammunition: "
    "they estimate that Russian guns fire five to seven shells for every Ukrainian one.",
    "Analysts expect the next fighting to centre on the canal line, which gives the defenders the high "
    "ground but is exposed to glide bombs launched from well behind the front.",
    "Local authorities continue to urge the remaining residents of the area to evacuate while roads are "
    "still passable; about three hundred people are believed to stay in the nearby villages.",
]


def article_page(title: str, paragraphs: Sequence[str], *, author: str, published: str) -> bytes:
    """A full article page: head metadata, navigation, the article itself, related links and a footer."""
    body = "\n".join(f"<p>{escape(p)}</p>" for p in paragraphs)
    page = f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{escape(title)} | Frontline Review</title>
<meta name="author" content="{escape(author)}">
<meta property="article:published_time" content="{published}">
<meta property="og:title" content="{escape(title)}"></head>
<body>
<header><nav><ul><li><a href="/">Home</a></li><li><a href="/war">War</a></li><li><a href="/world">World</a></li>
<li><a href="/subscribe">Subscribe</a></li></ul></nav></header>
<main><article>
<h1>{escape(title)}</h1>
<p class="byline">By {escape(author)}</p>
{body}
</article>
<aside><h2>Most read</h2><ul><li><a href="/a">NAVIGATION-NOISE ten photos of the week</a></li></ul></aside></main>
<footer><p>FOOTER-NOISE © 2024 Frontline Review. All rights reserved.</p>
<p><a href="/privacy">Privacy policy</a> · <a href="/contact">Contact us</a></p></footer>
</body></html>"""
    return page.encode("utf-8")


# --- the server ------------------------------------------------------------------------------------


@dataclass(slots=True)
class Resource:
    """What one path serves."""

    body: bytes | Callable[[int], bytes] = b""  # a callable gets the 1-based count of fetches served
    content_type: str = "application/rss+xml; charset=utf-8"
    etag: bool = True  # send an ETag and answer 304 to a matching If-None-Match
    last_modified: str | None = None  # send it and answer 304 to an equal If-Modified-Since
    redirect_to: str | None = None  # answer 301 to this path
    script: list[tuple[int, dict[str, str]]] = field(default_factory=list)  # answers served first, in order
    delay: float = 0.0  # seconds before answering
    served: int = 0  # bodies served (200)


@dataclass(slots=True)
class Request:
    """One request as the server saw it."""

    path: str
    headers: dict[str, str]


class FeedServer:
    """Serves the registered resources; anything else is 404."""

    def __init__(self) -> None:
        self.resources: dict[str, Resource] = {}
        self.requests: list[Request] = []
        self.base_url = ""
        self.in_flight = 0
        self.max_in_flight = 0
        self._request_seen = asyncio.Event()

    def add(self, path: str, resource: Resource) -> Resource:
        self.resources[path] = resource
        return resource

    def url(self, path: str) -> str:
        return f"{self.base_url}{path}"

    def hits(self, path: str) -> list[Request]:
        return [r for r in self.requests if r.path == path]

    async def wait_for_hits(self, paths: Sequence[str], count: int) -> None:
        """Return once every one of ``paths`` has been requested at least ``count`` times."""
        while min(len(self.hits(p)) for p in paths) < count:
            self._request_seen.clear()
            await self._request_seen.wait()

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_route("GET", "/{tail:.*}", self._handle)
        return app

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        self.requests.append(Request(request.path, dict(request.headers)))
        self._request_seen.set()
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            resource = self.resources.get(request.path)
            if resource is None:
                return web.Response(status=404, text="<html><body><h1>404 Not Found</h1></body></html>")
            if resource.delay:
                await asyncio.sleep(resource.delay)
            return self._answer(request, resource)
        finally:
            self.in_flight -= 1

    def _answer(self, request: web.Request, resource: Resource) -> web.Response:
        if resource.script:
            status, headers = resource.script.pop(0)
            return web.Response(status=status, headers=headers, text=f"status {status}")
        if resource.redirect_to is not None:
            return web.Response(status=301, headers={"Location": resource.redirect_to})
        body = resource.body(resource.served + 1) if callable(resource.body) else resource.body
        headers = {"Content-Type": resource.content_type}
        if resource.etag:
            tag = '"' + hashlib.sha1(body).hexdigest()[:16] + '"'
            headers["ETag"] = tag
            if request.headers.get("If-None-Match") == tag:
                return web.Response(status=304, headers={"ETag": tag})
        if resource.last_modified is not None:
            headers["Last-Modified"] = resource.last_modified
            if "If-None-Match" not in request.headers and request.headers.get("If-Modified-Since") == (
                resource.last_modified
            ):
                return web.Response(status=304, headers={"Last-Modified": resource.last_modified})
        resource.served += 1
        return web.Response(body=body, headers=headers)


def install_newsroom(server: FeedServer) -> None:
    """Register the standard feeds and pages on ``server`` (its base_url must be set)."""
    base = server.base_url
    server.add("/rss/frontline.xml", Resource(lambda _: rss("Frontline Review", SITE, frontline_entries(base))))
    server.add(
        "/atom/kyiv.xml",
        Resource(
            lambda _: atom(
                "Київське бюро", f"{base}/kyiv", "tag:kyiv-bureau.example,2024:feed", kyiv_bureau_entries(base)
            ),
            content_type="application/atom+xml; charset=utf-8",
            etag=False,
            last_modified="Wed, 06 Mar 2024 07:31:00 GMT",
        ),
    )
    server.add("/rss/zaporizhzhia.xml", Resource(lambda n: shifting_feed(base, n), etag=False))
    server.add(
        "/bridge/feed.xml", Resource(lambda _: rss("Bridge: @donbas_watch", f"{base}/bridge", bridge_entries(base)))
    )
    server.add("/old/frontline.rss", Resource(redirect_to="/rss/frontline.xml"))
    server.add(
        "/rss/broken.xml",
        Resource(b"<?xml version='1.0'?>\n<rss version='2.0'>\n<channel><title>Oops</title>\n</rss", etag=False),
    )
    server.add(
        "/rss/error-page.xml",
        Resource(
            b"<html><head><title>502 Bad Gateway</title></head><body><center>nginx</center></body></html>",
            content_type="text/html",
            etag=False,
        ),
    )
    server.add("/rss/longreads.xml", Resource(lambda _: rss("Longreads", SITE, longreads_entries(base)), etag=False))
    server.add(
        "/articles/avdiivka-analysis.html",
        Resource(
            article_page(
                "What the withdrawal from Avdiivka means for Bakhmut's flank",
                ARTICLE_PARAGRAPHS,
                author="Iryna Koval",
                published="2024-03-04T08:00:00+00:00",
            ),
            content_type="text/html; charset=utf-8",
            etag=False,
        ),
    )
