"""A local fake of the X API v2 endpoints the ``x`` collector uses, for tests on 127.0.0.1 only.

It answers with X's documented shapes: ``data``/``includes``/``meta`` bodies, RFC 7807 problem bodies
(``title``, ``detail``, ``type``, ``status``) for 4xx/5xx, the ``x-rate-limit-*`` headers on every
response, and in-stream error objects. The filtered stream is a chunked body of newline-delimited
JSON with ``\\r\\n`` keep-alives. Each stream connection follows the next ``StreamScript`` queued
(answer with a status, send lines, then close cleanly, drop the socket, go silent, or stay open).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

KEEPALIVE = b"\r\n"
PROBLEM_TYPES = {
    400: "https://api.twitter.com/2/problems/invalid-request",
    401: "about:blank",
    403: "https://api.twitter.com/2/problems/client-forbidden",
    429: "about:blank",
    503: "about:blank",
}
OPERATIONAL_DISCONNECT = {
    "errors": [
        {
            "title": "operational-disconnect",
            "disconnect_type": "UpstreamOperationalDisconnect",
            "detail": "This stream has been disconnected upstream for operational reasons.",
            "type": "https://api.twitter.com/2/problems/operational-disconnect",
        }
    ]
}


@dataclass
class StreamScript:
    """What one stream connection does.

    ``refuse`` closes the socket before any answer (a network error at the client). aiohttp retries a
    GET once by itself when the server hangs up before answering (RFC 9112 section 9.3.1), so one
    refusal the collector sees hangs up on ``hangups`` connections in a row. A ``status`` other
    than 200 answers with a problem body. Otherwise ``lines`` are sent in order: an ``int`` is a tweet
    id (sent as a stream message), ``KEEPALIVE`` is a keep-alive, a ``dict`` is sent as JSON, ``bytes``
    as is. Then ``end``: ``close`` (clean end of body), ``drop`` (socket closed mid-body), ``stall``
    (silent until the client leaves) or ``hold`` (keep-alives until the client leaves).
    """

    status: int = 200
    lines: list[Any] = field(default_factory=list)
    end: str = "close"
    refuse: bool = False
    hangups: int = 2
    headers: dict[str, str] = field(default_factory=dict)
    detail: str = ""


@dataclass
class Recorded:
    """One request the fake received."""

    method: str
    path: str
    query: dict[str, str]
    authorization: str | None
    body: Any = None


class FakeX:
    """The fake API: users, tweets, media, search results, timelines, stream rules and stream scripts."""

    def __init__(self, token: str, *, now: Callable[[], float] = time.time) -> None:
        self.token = token
        self.now = now
        self.users: dict[str, dict[str, Any]] = {}
        self.tweets: dict[str, dict[str, Any]] = {}
        self.media: dict[str, dict[str, Any]] = {}
        self.search: dict[str, list[str]] = {}  # exact query -> tweet ids
        self.timelines: dict[str, list[str]] = {}  # user id -> tweet ids
        self.missing_refs: set[str] = set()  # referenced tweet ids to report as partial errors
        self.rules: dict[str, dict[str, str]] = {}
        self.stream_scripts: list[StreamScript] = []
        self.stream_connections = 0
        self.requests: list[Recorded] = []
        self.page_size = 10
        self.fail_later_pages = 0  # answer this many requests for a second or later page with 503
        # kind -> list of (status, extra headers) to answer next, instead of the real answer.
        self.fail_next: dict[str, list[tuple[int, dict[str, str]]]] = {}
        # kind -> (remaining, reset) for the x-rate-limit headers; default 100 left, reset in 15 min.
        self.limits: dict[str, tuple[int, int]] = {}
        self._next_rule_id = 1000
        # Recent search only reaches back so far: an older since_id is answered with 400, as X does.
        self.oldest_searchable_id = 0

    # -- data set-up --------------------------------------------------------------------------------

    def add_user(self, user_id: str, username: str, name: str) -> None:
        self.users[user_id] = {"id": user_id, "username": username, "name": name}

    def add_tweet(
        self,
        tweet_id: int | str,
        author_id: str,
        text: str,
        *,
        refs: list[tuple[str, str]] | None = None,
        media_keys: list[str] | None = None,
        metrics: dict[str, int] | None = None,
    ) -> dict[str, Any]:
        tweet: dict[str, Any] = {
            "id": str(tweet_id),
            "text": text,
            "author_id": author_id,
            "created_at": f"2024-03-01T08:00:{int(tweet_id) % 60:02d}.000Z",
            "lang": "en",
            "conversation_id": str(tweet_id),
            "edit_history_tweet_ids": [str(tweet_id)],
        }
        if refs:
            tweet["referenced_tweets"] = [{"type": kind, "id": ref} for kind, ref in refs]
        if media_keys:
            tweet["attachments"] = {"media_keys": media_keys}
        if metrics is not None:
            tweet["public_metrics"] = metrics
        self.tweets[str(tweet_id)] = tweet
        return tweet

    def add_media(self, key: str, kind: str, *, url: str | None = None, preview: str | None = None) -> None:
        entry = {"media_key": key, "type": kind}
        if url:
            entry["url"] = url
        if preview:
            entry["preview_image_url"] = preview
        self.media[key] = entry

    def includes_for(self, tweets: list[dict[str, Any]]) -> dict[str, Any]:
        """The ``includes`` X sends for these tweets with the collector's expansions."""
        users: dict[str, dict[str, Any]] = {}
        referenced: dict[str, dict[str, Any]] = {}
        media: dict[str, dict[str, Any]] = {}
        for tweet in tweets:
            if tweet["author_id"] in self.users:
                users[tweet["author_id"]] = self.users[tweet["author_id"]]
            for ref in tweet.get("referenced_tweets", []):
                origin = self.tweets.get(ref["id"])
                if origin is not None and ref["id"] not in self.missing_refs:
                    referenced[ref["id"]] = origin
                    if origin["author_id"] in self.users:
                        users[origin["author_id"]] = self.users[origin["author_id"]]
            for key in tweet.get("attachments", {}).get("media_keys", []):
                if key in self.media:
                    media[key] = self.media[key]
        includes: dict[str, Any] = {}
        if users:
            includes["users"] = list(users.values())
        if referenced:
            includes["tweets"] = list(referenced.values())
        if media:
            includes["media"] = list(media.values())
        return includes

    def partial_errors(self, tweets: list[dict[str, Any]]) -> list[dict[str, Any]]:
        errors = []
        for tweet in tweets:
            for ref in tweet.get("referenced_tweets", []):
                if ref["id"] in self.missing_refs:
                    errors.append(
                        {
                            "value": ref["id"],
                            "detail": f"Could not find tweet with referenced_tweets.id: [{ref['id']}].",
                            "title": "Not Found Error",
                            "resource_type": "tweet",
                            "parameter": "referenced_tweets.id",
                            "resource_id": ref["id"],
                            "type": "https://api.twitter.com/2/problems/resource-not-found",
                        }
                    )
        return errors

    def stream_message(self, tweet_id: int | str) -> dict[str, Any]:
        tweet = self.tweets[str(tweet_id)]
        tags = [{"id": rid, "tag": rule["tag"]} for rid, rule in self.rules.items()][:1]
        message: dict[str, Any] = {"data": tweet, "includes": self.includes_for([tweet]), "matching_rules": tags}
        errors = self.partial_errors([tweet])
        if errors:
            message["errors"] = errors
        return message

    # -- plumbing -----------------------------------------------------------------------------------

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/2/tweets/search/stream", self.stream)
        app.router.add_get("/2/tweets/search/stream/rules", self.get_rules)
        app.router.add_post("/2/tweets/search/stream/rules", self.post_rules)
        app.router.add_get("/2/tweets/search/recent", self.search_recent)
        app.router.add_get("/2/users/by/username/{username}", self.user_by_name)
        app.router.add_get("/2/users/{user_id}/tweets", self.user_tweets)
        return app

    def count(self, kind_path: str) -> int:
        """Requests received whose path starts with ``kind_path``."""
        return sum(1 for r in self.requests if r.path.startswith(kind_path))

    def _limit_headers(self, kind: str) -> dict[str, str]:
        remaining, reset = self.limits.get(kind, (100, int(self.now()) + 900))
        return {"x-rate-limit-limit": "450", "x-rate-limit-remaining": str(remaining), "x-rate-limit-reset": str(reset)}

    @staticmethod
    def problem(status: int, title: str, detail: str, headers: dict[str, str] | None = None) -> web.Response:
        body = {"title": title, "detail": detail, "type": PROBLEM_TYPES.get(status, "about:blank"), "status": status}
        return web.json_response(body, status=status, headers=headers, content_type="application/problem+json")

    async def _gate(self, request: web.Request, kind: str) -> web.Response | None:
        """Record the request; answer 401 for a wrong token, or an injected failure; else None."""
        body = None
        if request.can_read_body:
            body = await request.json()
        self.requests.append(
            Recorded(request.method, request.path, dict(request.query), request.headers.get("Authorization"), body)
        )
        headers = self._limit_headers(kind)
        if request.headers.get("Authorization") != f"Bearer {self.token}":
            return self.problem(401, "Unauthorized", "Unauthorized", headers)
        queued = self.fail_next.get(kind)
        if queued:
            status, extra = queued.pop(0)
            titles = {429: "Too Many Requests", 403: "Forbidden", 503: "Service Unavailable"}
            return self.problem(status, titles.get(status, "Error"), f"injected {status}", {**headers, **extra})
        return None

    def _ok(self, kind: str, body: dict[str, Any], status: int = 200) -> web.Response:
        return web.json_response(body, status=status, headers=self._limit_headers(kind))

    # -- the stream ---------------------------------------------------------------------------------

    async def stream(self, request: web.Request) -> web.StreamResponse:
        self.stream_connections += 1
        script = self.stream_scripts.pop(0) if self.stream_scripts else StreamScript(end="hold")
        if script.refuse:
            script.hangups -= 1
            if script.hangups > 0:
                self.stream_scripts.insert(0, script)
            self.requests.append(Recorded("GET", request.path, dict(request.query), None))
            assert request.transport is not None
            request.transport.close()
            return web.Response(status=204)
        gated = await self._gate(request, "stream")
        if gated is not None:
            return gated
        headers = {**self._limit_headers("stream"), **script.headers}
        if script.status != 200:
            titles = {429: "TooManyConnections", 403: "Forbidden", 503: "Service Unavailable"}
            return self.problem(script.status, titles.get(script.status, "Error"), script.detail or "scripted", headers)
        response = web.StreamResponse(status=200, headers={**headers, "Content-Type": "application/json"})
        response.enable_chunked_encoding()
        await response.prepare(request)
        for line in script.lines:
            if isinstance(line, int):
                await response.write(json.dumps(self.stream_message(line)).encode() + b"\r\n")
            elif isinstance(line, dict):
                await response.write(json.dumps(line).encode() + b"\r\n")
            else:
                await response.write(line)
        if script.end == "drop":
            assert request.transport is not None
            request.transport.close()
            return response
        if script.end in ("stall", "hold"):
            await self._until_client_leaves(request, response, keepalive=script.end == "hold")
            return response
        await response.write_eof()
        return response

    @staticmethod
    async def _until_client_leaves(request: web.Request, response: web.StreamResponse, *, keepalive: bool) -> None:
        deadline = time.monotonic() + 10.0
        while time.monotonic() < deadline:
            transport = request.transport
            if transport is None or transport.is_closing():
                return
            await asyncio.sleep(0.02)
            if keepalive:
                try:
                    await response.write(KEEPALIVE)
                except (ConnectionError, RuntimeError):
                    return

    # -- rules --------------------------------------------------------------------------------------

    async def get_rules(self, request: web.Request) -> web.Response:
        gated = await self._gate(request, "rules")
        if gated is not None:
            return gated
        meta = {"sent": "2024-03-01T08:00:00.000Z", "result_count": len(self.rules)}
        if not self.rules:
            return self._ok("rules", {"meta": meta})
        return self._ok("rules", {"data": list(self.rules.values()), "meta": meta})

    async def post_rules(self, request: web.Request) -> web.Response:
        gated = await self._gate(request, "rules")
        if gated is not None:
            return gated
        body = self.requests[-1].body or {}
        dry_run = request.query.get("dry_run") == "true"
        sent = "2024-03-01T08:00:00.000Z"
        if "delete" in body:
            ids = [str(i) for i in body["delete"].get("ids", [])]
            deleted = [i for i in ids if i in self.rules]
            if not dry_run:
                for rule_id in deleted:
                    del self.rules[rule_id]
            summary = {"deleted": len(deleted), "not_deleted": len(ids) - len(deleted)}
            return self._ok("rules", {"meta": {"sent": sent, "summary": summary}})
        errors = []
        created = []
        for rule in body.get("add", []):
            value = str(rule.get("value", ""))
            if "badop:" in value or value.count("(") != value.count(")"):
                errors.append(
                    {
                        "value": value,
                        "details": [f"Reference to invalid operator 'badop'. ({value})"],
                        "title": "UnprocessableEntity",
                        "type": "https://api.twitter.com/2/problems/invalid-rules",
                        "detail": "Reference to invalid operator 'badop'. Operator is not available in current "
                        "product or product packaging.",
                    }
                )
                continue
            self._next_rule_id += 1
            created.append({"value": value, "tag": rule.get("tag", ""), "id": str(self._next_rule_id)})
        summary = {"created": len(created), "not_created": len(errors), "valid": len(created), "invalid": len(errors)}
        if errors:
            return web.json_response(
                {"errors": errors, "meta": {"sent": sent, "summary": summary}},
                status=400,
                headers=self._limit_headers("rules"),
            )
        if not dry_run:
            for rule in created:
                self.rules[rule["id"]] = rule
        return self._ok("rules", {"data": created, "meta": {"sent": sent, "summary": summary}}, status=201)

    # -- search, users, timelines -------------------------------------------------------------------

    def _page(self, ids: list[str], query: dict[str, str], token_param: str) -> dict[str, Any]:
        since = int(query.get("since_id", "0"))
        newer = sorted((i for i in ids if int(i) > since), key=int, reverse=True)
        size = min(int(query.get("max_results", "10")), self.page_size)
        offset = int(query[token_param].removeprefix("p")) if token_param in query else 0
        page = [self.tweets[i] for i in newer[offset : offset + size]]
        meta: dict[str, Any] = {"result_count": len(page)}
        if page:
            meta["newest_id"], meta["oldest_id"] = page[0]["id"], page[-1]["id"]
        if offset + size < len(newer):
            meta["next_token"] = f"p{offset + size}"
        body: dict[str, Any] = {"meta": meta}
        if page:
            body["data"] = page
            body["includes"] = self.includes_for(page)
            errors = self.partial_errors(page)
            if errors:
                body["errors"] = errors
        return body

    async def search_recent(self, request: web.Request) -> web.Response:
        gated = await self._gate(request, "search")
        if gated is not None:
            return gated
        query = request.query.get("query", "")
        since_id = request.query.get("since_id")
        if since_id and int(since_id) < self.oldest_searchable_id:
            detail = (
                f"Invalid 'since_id':'{since_id}'. 'since_id' must be a tweet id created after "
                "2024-02-23T08:00Z. Please use a 'since_id' that is larger than "
                f"{self.oldest_searchable_id}"
            )
            return self.problem(400, "Invalid Request", detail, self._limit_headers("search"))
        if "next_token" in request.query and self.fail_later_pages > 0:
            self.fail_later_pages -= 1
            return self.problem(503, "Service Unavailable", "injected 503", self._limit_headers("search"))
        if query not in self.search:
            return self._ok("search", {"meta": {"result_count": 0}})
        return self._ok("search", self._page(self.search[query], dict(request.query), "next_token"))

    async def user_by_name(self, request: web.Request) -> web.Response:
        gated = await self._gate(request, "users")
        if gated is not None:
            return gated
        name = request.match_info["username"]
        for user in self.users.values():
            if user["username"].lower() == name.lower():
                return self._ok("users", {"data": user})
        error = {
            "value": name,
            "detail": f"Could not find user with username: [{name}].",
            "title": "Not Found Error",
            "resource_type": "user",
            "parameter": "username",
            "resource_id": name,
            "type": "https://api.twitter.com/2/problems/resource-not-found",
        }
        return self._ok("users", {"errors": [error]})

    async def user_tweets(self, request: web.Request) -> web.Response:
        gated = await self._gate(request, "timeline")
        if gated is not None:
            return gated
        ids = self.timelines.get(request.match_info["user_id"], [])
        return self._ok("timeline", self._page(ids, dict(request.query), "pagination_token"))
