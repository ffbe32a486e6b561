"""Fixtures shared by the whole suite: the simulator on a real loopback port."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest

from hedgerow.sim.mock import RunningMock, start_mock
from tests.redis_server import RedisServer, ensure_redis


@pytest.fixture
async def mock() -> AsyncIterator[RunningMock]:
    """The provider simulator on a free loopback port, fresh for each test."""
    async with start_mock() as running:
        yield running


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """A real ``redis-server`` for the session (no persistence); tests use distinct key
    prefixes."""
    ensure_redis()
    server = RedisServer(tmp_path_factory.mktemp("redis"), appendonly=False)
    server.start()
    try:
        yield server
    finally:
        server.stop()
