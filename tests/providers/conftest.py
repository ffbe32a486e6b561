"""The upstream client runs on both event loops hedgerow meets: asyncio's own (embedded in
an application) and uvloop's (``hedgerow serve``); their transports differ in small ways
(uvloop calls ``connection_made`` later), so every async test here runs on each."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping

import pytest
import uvloop


def pytest_asyncio_loop_factories(
    config: pytest.Config, item: pytest.Item
) -> Mapping[str, Callable[[], asyncio.AbstractEventLoop]]:
    return {"asyncio": asyncio.new_event_loop, "uvloop": uvloop.new_event_loop}
