"""Fixtures of the jobs tests: a real ``redis-server``, a queue of each backend, a fake clock.

``redis-server`` comes from the system's packages (``tests/redis_server.py`` installs it when
it is missing), then each test session starts its own on a free loopback port in a temporary
directory, and stops it at the end.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from hedgerow.config import Config, JobsConfig
from hedgerow.jobs import FakeClock, JobQueue
from hedgerow.jobs.redis import RedisQueue
from hedgerow.jobs.sqlite import SqliteQueue
from hedgerow.sim.mock import RunningMock
from tests.redis_server import RedisServer, ensure_redis
from tests.servers import make_config

HERE = Path(__file__).resolve().parent


@pytest.fixture
def durable_redis(tmp_path: Path) -> Iterator[RedisServer]:
    """A Redis of its own with an fsynced append-only file, for restart tests."""
    ensure_redis()
    server = RedisServer(tmp_path, appendonly=True)
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture(params=["sqlite", "redis"])
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
async def queue(
    backend: str, tmp_path: Path, request: pytest.FixtureRequest
) -> AsyncIterator[JobQueue]:
    """A fresh, empty queue of the parametrised backend."""
    q: JobQueue
    if backend == "sqlite":
        q = SqliteQueue(tmp_path / "jobs.db")
    else:
        server: RedisServer = request.getfixturevalue("redis_server")
        q = RedisQueue(server.url, prefix=f"t{uuid.uuid4().hex[:12]}")
    try:
        yield q
    finally:
        if isinstance(q, RedisQueue):
            await q.flush()
        await q.close()


# The router's own same-request retries are off: these tests count the job's attempts.
_ONCE = {"max_retries": 0}
ROUTES: dict[str, Any] = {
    "summarise": {"tiers": [["anth/claude-sonnet-4-6"]], "retry": _ONCE},
    "classify": {"tiers": [["oai/gpt-5.5"]], "retry": _ONCE},
    "extract": {"tiers": [["oai/gpt-4.1-mini"]], "retry": _ONCE},
}


def jobs_config(mock: RunningMock, **jobs: Any) -> Config:
    """A gateway config over ``mock`` with the three job routes and ``jobs`` settings."""
    settings = {"poll_interval": 0.05, "lease_seconds": 30.0, **jobs}
    config = make_config(mock, ROUTES, jobs=settings)
    assert isinstance(config.jobs, JobsConfig)
    return config


def chat(text: str = "Summarise the hedgerow survey.", model: str = "summarise") -> dict[str, Any]:
    """An OpenAI chat body."""
    return {"model": model, "messages": [{"role": "user", "content": text}], "max_tokens": 32}
