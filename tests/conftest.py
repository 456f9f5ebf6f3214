"""Shared fixtures: the seed articles from ../shared/seeds and (see redis_fixtures) a real redis-server."""

from __future__ import annotations

from pathlib import Path

import pytest

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
