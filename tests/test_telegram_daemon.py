"""Telegram collectors inside the daemon: the web preview polled once by `run --once`, through the pipeline."""

from __future__ import annotations

from pathlib import Path

import redis.asyncio as aioredis
from aiohttp import web
from aiohttp.test_utils import TestServer

from monitor.bus.keys import Keys
from monitor.schema import Alert, Item, decode_entry
from tests.telegram_web_pages import FakeChannel, Post
from tests.test_pipeline import make_settings, run_once

CHANNEL_ID = 1392375461


def preview_app(channel: FakeChannel) -> web.Application:
    """A t.me stand-in serving one channel's /s/ pages, newest page first, paged with ?before=."""

    async def preview(request: web.Request) -> web.Response:
        before = request.query.get("before")
        return web.Response(text=channel.render(int(before) if before else None), content_type="text/html")

    app = web.Application()
    app.router.add_get(f"/s/{channel.name}", preview)
    return app


async def test_web_preview_posts_flow_to_alerts_once(
    redis_url: str, redis_client: aioredis.Redis, keys: Keys, tmp_path: Path
) -> None:
    """`run --once` polls the preview, each post becomes one Item, a Bakhmut post alerts, a rerun adds nothing."""
    channel = FakeChannel.numbered("ab3army", "3rd Assault Brigade", CHANNEL_ID, 101, 130)
    channel.add(Post(131, text_html="Штурмові групи відбили атаки біля Бахмута.<br>Тримаємося!"))
    server = TestServer(preview_app(channel), host="127.0.0.1")
    await server.start_server()
    try:
        web_settings = {"channels": ["ab3army"], "base_url": str(server.make_url("")).rstrip("/")}
        settings = make_settings(redis_url, keys, [], collectors={"telegram_web": web_settings})
        await run_once(settings)
        items = [decode_entry(Item, f) for _, f in await redis_client.xrange(keys.items)]
        # First run: first_run_pages (3) pages of ~20 posts, newest first, so all 31 posts.
        assert len(items) == len({i.id for i in items}) == 31
        assert {i.id for i in items} >= {f"telegram:{CHANNEL_ID}:131", f"telegram:{CHANNEL_ID}:101"}
        alerts = [decode_entry(Alert, f) for _, f in await redis_client.xrange(keys.alerts)]
        assert [a.item_id for a in alerts] == [f"telegram:{CHANNEL_ID}:131"]
        assert await redis_client.get(keys.cursor("telegram_web", "ab3army")) == b"131"
        channel.add(Post(132, text_html="New report from the flank."))
        await run_once(settings)
        assert await redis_client.xlen(keys.items) == 32
        assert await redis_client.xlen(keys.alerts) == 1
    finally:
        await server.close()
