"""Starting the gateway in-process on a real loopback port, over the simulator."""

from __future__ import annotations

import tempfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import orjson
from aiohttp import web

from hedgerow.config import Config, parse_config
from hedgerow.routing import Gateway
from hedgerow.server.app import create_app
from hedgerow.sim.mock import RunningMock


def provider_config(mock: RunningMock, **overrides: Any) -> dict[str, Any]:
    """One provider of each kind, all pointing at ``mock``."""
    providers: dict[str, Any] = {
        "anth": {
            "kind": "anthropic",
            "base_url": mock.anthropic_base_url,
            "api_key": "sk-ant-test",
        },
        "oai": {"kind": "openai", "base_url": mock.openai_base_url, "api_key": "sk-oai-test"},
        "gem": {"kind": "gemini", "base_url": mock.gemini_base_url, "api_key": "gem-test"},
        "compat": {
            "kind": "openai_compatible",
            "base_url": mock.openai_base_url,
            "api_key": "local-key",
        },
    }
    providers.update(overrides)
    return providers


def make_config(mock: RunningMock, routes: dict[str, Any], **extra: Any) -> Config:
    """A validated config over ``mock`` with ``routes``."""
    # Jobs in a fresh temporary file unless the test says where: never the working directory.
    extra.setdefault(
        "jobs", {"path": str(Path(tempfile.mkdtemp(prefix="hedgerow-test-")) / "jobs.db")}
    )
    raw = {"providers": provider_config(mock), "routes": routes, **extra}
    return parse_config(orjson.dumps(raw).decode(), env={})


class RunningGateway:
    """A gateway app listening on loopback; ``url`` for SDK base URLs."""

    def __init__(self, gateway: Gateway, port: int, server: web.Server | None = None) -> None:
        self.gateway = gateway
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self.server = server  # aiohttp's connection server, for tests that look at connections


@asynccontextmanager
async def start_gateway(config: Config) -> AsyncIterator[RunningGateway]:
    """Serve ``config`` on a free loopback port inside the running loop."""
    gateway = Gateway(config)
    runner = web.AppRunner(
        create_app(gateway, config),
        handler_cancellation=True,
        access_log=None,
        shutdown_timeout=1.0,
    )
    await runner.setup()
    try:
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        yield RunningGateway(gateway, int(runner.addresses[0][1]))
    finally:
        await runner.cleanup()


class FakeClock:
    """Monotonic seconds that move only when the test moves them (a gateway's ``clock``)."""

    def __init__(self, start: float = 1_000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds
