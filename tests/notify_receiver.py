"""A local stand-in for notification services: a JSON webhook (Apprise ``json://``) and the Telegram
Bot API (``tgram://`` with the sink's ``api_url`` pointed here), on 127.0.0.1.

It speaks the real wire formats: Apprise's JSON payload (``version``, ``title``, ``message``,
``type``) answered with 200, and Bot API ``sendMessage`` calls answered with ``{"ok": true, "result":
...}`` or ``{"ok": false, "error_code", "description"}``. Failures are scripted per path: the next N
requests get a status code, or the server holds them (to simulate a slow service).
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web


@dataclass
class Received:
    """One request the receiver accepted (or refused)."""

    path: str
    status: int
    payload: dict[str, Any]
    headers: dict[str, str]


@dataclass
class NotifyReceiver:
    """The server, its script of failures, and everything it received."""

    fail_next: dict[str, list[int]] = field(default_factory=dict)
    delay: float = 0.0
    received: list[Received] = field(default_factory=list)
    in_flight: int = 0
    max_in_flight: int = 0
    port: int = 0
    _runner: web.AppRunner | None = None
    arrived: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def delivered(self, prefix: str = "/") -> list[Received]:
        """Requests under ``prefix`` that were answered with success."""
        return [r for r in self.received if r.path.startswith(prefix) and r.status == 200]

    def fail(self, path: str, *statuses: int) -> None:
        """Answer the next requests to ``path`` with these statuses, in order."""
        self.fail_next.setdefault(path, []).extend(statuses)

    async def start(self) -> NotifyReceiver:
        app = web.Application()
        app.router.add_post("/hook/{name}", self._webhook)
        app.router.add_post("/bot{token}/{method}", self._bot_api)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        server: Any = site._server
        self.port = server.sockets[0].getsockname()[1]
        return self

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def _enter(self, request: web.Request) -> tuple[dict[str, Any], int | None]:
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            body = await request.read()
            if self.delay:
                await asyncio.sleep(self.delay)
        finally:
            self.in_flight -= 1
        payload = json.loads(body) if body else {}
        script = self.fail_next.get(request.path)
        status = script.pop(0) if script else None
        return payload, status

    def _record(self, request: web.Request, status: int, payload: dict[str, Any]) -> None:
        self.received.append(Received(request.path, status, payload, dict(request.headers)))
        self.arrived.set()

    async def _webhook(self, request: web.Request) -> web.Response:
        payload, status = await self._enter(request)
        if status is not None:
            self._record(request, status, payload)
            return web.json_response({"error": "scripted failure"}, status=status)
        self._record(request, 200, payload)
        return web.json_response({"ok": True})

    async def _bot_api(self, request: web.Request) -> web.Response:
        payload, status = await self._enter(request)
        if request.match_info["method"] != "sendMessage":
            self._record(request, 404, payload)
            return web.json_response({"ok": False, "error_code": 404, "description": "Not Found"}, status=404)
        if status is not None:
            self._record(request, status, payload)
            error = {"ok": False, "error_code": status, "description": "Internal Server Error"}
            if status == 429:
                error = {"ok": False, "error_code": 429, "description": "Too Many Requests: retry after 1"}
                error["parameters"] = {"retry_after": 1}
            return web.json_response(error, status=status)
        self._record(request, 200, payload)
        message = {
            "message_id": len(self.received),
            "chat": {"id": payload.get("chat_id")},
            "text": payload.get("text"),
        }
        return web.json_response({"ok": True, "result": message})
