"""Shared fixtures: the seed articles from ../shared/seeds and (see redis_fixtures) a real redis-server."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from monitor.bus.keys import Keys
from tests.redis_server import RedisServer

REPO_ROOT = Path(__file__).resolve().parents[1]
SEEDS_DIR = REPO_ROOT.parent / "shared" / "seeds"
SAMPLE_CORPUS_DIR = REPO_ROOT / "corpus"


@pytest.fixture(scope="session")
def seeds_dir() -> Path:
    """The five real seed articles; tests that need them are skipped when the folder is absent."""
    if not SEEDS_DIR.is_dir() or not any(SEEDS_DIR.glob("*.txt")):
        pytest.skip(f"seed articles not found at {SEEDS_DIR} (../shared/seeds beside the repo)")
    return SEEDS_DIR


@pytest.fixture(scope="session")
def sample_corpus_dir() -> Path:
    """The project's own sample corpus shipped in corpus/."""
    return SAMPLE_CORPUS_DIR


# --- Redis --------------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """A real redis-server for the whole session, on a free port in a temp dir."""
    server = RedisServer(tmp_path_factory.mktemp("redis"))
    server.start()
    yield server
    server.stop()


@pytest.fixture
def redis_url(redis_server: RedisServer) -> str:
    """URL of the session's redis-server."""
    return redis_server.url


@pytest.fixture
async def redis_client(redis_server: RedisServer) -> AsyncIterator[aioredis.Redis]:
    """An async client on the session's server, closed after the test."""
    client = aioredis.from_url(redis_server.url)
    yield client
    await client.aclose()


@pytest.fixture
def keys() -> Keys:
    """A key prefix unique to this test, so tests never see each other's streams."""
    return Keys(f"t{uuid.uuid4().hex[:12]}")
