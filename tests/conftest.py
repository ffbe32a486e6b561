"""Fixtures shared by the whole suite: the simulator on a real loopback port."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from hedgerow.sim.mock import RunningMock, start_mock


@pytest.fixture
async def mock() -> AsyncIterator[RunningMock]:
    """The provider simulator on a free loopback port, fresh for each test."""
    async with start_mock() as running:
        yield running
