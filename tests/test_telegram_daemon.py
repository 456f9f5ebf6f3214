"""Telegram collectors with the pipeline: the web preview under `run --once`, and one post seen by all three."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import redis.asyncio as aioredis
from aiohttp import web
from aiohttp.test_utils import TestServer
from telethon.tl import types

from monitor.bus.keys import Keys
from monitor.bus.publish import Publisher
from monitor.collectors.base import Checkpoints, Emitter
from monitor.collectors.corpus import ingest_paths
from monitor.collectors.telegram import ChannelRef, message_to_raw
from monitor.collectors.telegram_web import TelegramWebCollector
from monitor.config import CorpusSettings, parse_config
from monitor.metrics import Metrics
from monitor.schema import Alert, Item, RawItem, decode_entry, item_id
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


async def test_one_post_through_all_three_telegram_collectors_is_one_item(
    redis_url: str, redis_client: aioredis.Redis, keys: Keys, tmp_path: Path
) -> None:
    """The same post seen live (Telethon), in the web preview and in a Desktop export becomes one Item."""
    text = "Штурмові групи відбили атаки біля Бахмута."
    when = datetime(2023, 11, 16, 14, 5, 31, tzinfo=UTC)
    publisher = Publisher(redis_client, keys, 3600)
    metrics = Metrics()
    emitter = Emitter(publisher, Checkpoints(redis_client, keys), metrics)

    # 1. Live: a real Telethon message from the channel.
    ref = ChannelRef(id=CHANNEL_ID, access_hash=1, username="ab3army", title="3rd Assault Brigade")
    message = types.Message(id=1201, peer_id=types.PeerChannel(channel_id=CHANNEL_ID), date=when, message=text)
    live = await emitter.emit("telegram", ref.name, [message_to_raw(message, channel=ref)])

    # 2. The web preview page holding the same post.
    channel = FakeChannel("ab3army", "3rd Assault Brigade", CHANNEL_ID, [Post(1201, text_html=text, when=when)])
    server = TestServer(preview_app(channel), host="127.0.0.1")
    await server.start_server()
    try:
        web_settings = parse_config(
            {
                "collectors": {
                    "telegram_web": {"channels": ["ab3army"], "base_url": str(server.make_url("")).rstrip("/")}
                }
            },
            env={},
        ).collectors.telegram_web
        collector = TelegramWebCollector(web_settings, emitter, emitter.checkpoints, metrics)
        try:
            web_published = await collector.poll_channel("ab3army")
        finally:
            await collector.aclose()
    finally:
        await server.close()

    # 3. A Telegram Desktop export of the channel.
    export = {
        "name": "3rd Assault Brigade",
        "type": "public_channel",
        "id": CHANNEL_ID,
        "messages": [
            {
                "id": 1201,
                "type": "message",
                "date": "2023-11-16T16:05:31",
                "date_unixtime": str(int(when.timestamp())),
                "from": "3rd Assault Brigade",
                "from_id": f"channel{CHANNEL_ID}",
                "text": text,
                "text_entities": [{"type": "plain", "text": text}],
            }
        ],
    }
    folder = tmp_path / "export"
    folder.mkdir()
    (folder / "result.json").write_text(json.dumps(export, ensure_ascii=False))
    report = await ingest_paths([folder], publisher, CorpusSettings(), metrics)

    assert live.published == 1 and web_published == 0 and report.items == 1 and report.published == 0
    raws = [decode_entry(RawItem, f) for _, f in await redis_client.xrange(keys.raw)]
    assert len(raws) == 1 and item_id(raws[0]) == f"telegram:{CHANNEL_ID}:1201"

    settings = make_settings(redis_url, keys, [])
    await run_once(settings)
    items = [decode_entry(Item, f) for _, f in await redis_client.xrange(keys.items)]
    assert [i.id for i in items] == [f"telegram:{CHANNEL_ID}:1201"]
    assert await redis_client.xlen(keys.alerts) == 1
