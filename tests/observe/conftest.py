"""Fixtures of the observability tests: the gateway app in-process on a driven clock, HTTP
receivers for alert webhooks, a real SMTP server, and the system tools (a headless browser,
Prometheus) that the set-up scripts here install from Debian's packages when missing.

Time: every health decision and every alert rule runs on the gateway's clock; tests pass a
``FakeClock`` and move it, never sleep. Background loops that run on real time (alert
evaluation, status polling) are set to an hour in the default test config so that only the
test's own calls act, unless a test is about the loop itself.
"""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from hedgerow.config import Config
from hedgerow.observe import OBSERVE_KEY, Observability
from hedgerow.routing import Gateway
from hedgerow.server.app import create_app
from hedgerow.sim.mock import RunningMock
from tests.servers import FakeClock, make_config

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
USER = [{"role": "user", "content": "What is a hedgerow?"}]
# Opens after 3 failures in a row, stays open 10 s (on the test's clock).
BREAKER = {"consecutive_failures": 3, "minimum_calls": 100, "open_base": 10.0, "open_max": 60.0}
# Never opens: the windows see every attempt.
NO_BREAKER = {"consecutive_failures": 0, "minimum_calls": 1_000_000}
CHAT = {"tiers": [["anth/claude-sonnet-4-6"], ["oai/gpt-5.5"]], "retry": {"max_retries": 0}}


async def until(
    check: Callable[[], Any] | Callable[[], Awaitable[Any]],
    timeout: float = 10.0,
    what: str = "condition",
) -> Any:
    """Wait for ``check()`` to return something truthy (a real condition, with a deadline)."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(0.02)


def observe_config(tmp: Path, **overrides: Any) -> dict[str, Any]:
    """An ``observe`` section writing into ``tmp``, with the real-time loops parked."""
    section: dict[str, Any] = {
        "event_log": str(tmp / "events.db"),
        "request_log_file": str(tmp / "requests.log"),
        "alerts": {"evaluate_every": 3600.0},
    }
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(section.get(key), dict):
            section[key] = {**section[key], **value}
        else:
            section[key] = value
    return section


def config_for(
    mock: RunningMock,
    tmp: Path,
    routes: dict[str, Any] | None = None,
    *,
    breaker: dict[str, Any] | None = None,
    observe: dict[str, Any] | None = None,
    **extra: Any,
) -> Config:
    """A config over ``mock`` whose files (event log, request log, jobs) live in ``tmp``."""
    return make_config(
        mock,
        routes or {"chat": CHAT},
        breaker=breaker or BREAKER,
        observe=observe_config(tmp, **(observe or {})),
        jobs={"path": str(tmp / "jobs.db")},
        **extra,
    )


class App:
    """The gateway app on a loopback port: its gateway, observability, URL and a client."""

    def __init__(
        self,
        app: web.Application,
        gateway: Gateway,
        observe: Observability,
        url: str,
        session: aiohttp.ClientSession,
    ) -> None:
        self.app = app
        self.gateway = gateway
        self.observe = observe
        self.url = url
        self.session = session

    async def chat(self, route: str = "chat", **body: Any) -> aiohttp.ClientResponse:
        """POST an OpenAI-format request and read the whole answer."""
        payload = {"model": route, "messages": USER, "max_tokens": 20, **body}
        async with self.session.post(self.url + "/v1/chat/completions", json=payload) as r:
            await r.read()
            return r

    async def get_json(self, path: str) -> Any:
        async with self.session.get(self.url + path) as r:
            assert r.status == 200, (path, r.status, await r.text())
            return await r.json()

    async def metrics(self) -> str:
        async with self.session.get(self.url + "/metrics") as r:
            assert r.status == 200
            return await r.text()


@asynccontextmanager
async def running_app(config: Config, clock: FakeClock | None = None) -> AsyncIterator[App]:
    """``create_app`` (observability installed by it) served on a free loopback port."""
    gateway = Gateway(config, clock=clock)
    app = create_app(gateway, config)
    runner = web.AppRunner(app, handler_cancellation=True, access_log=None, shutdown_timeout=1.0)
    await runner.setup()
    try:
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        url = f"http://127.0.0.1:{runner.addresses[0][1]}"
        async with aiohttp.ClientSession() as session:
            yield App(app, gateway, app[OBSERVE_KEY], url, session)
    finally:
        await runner.cleanup()


def metric(text: str, name: str, **labels: str) -> float | None:
    """The value of the series ``name{labels}`` in exposition ``text`` (labels matched as a
    subset), or ``None`` when there is no such series."""
    for line in text.splitlines():
        if line.startswith("#") or not line.startswith(name):
            continue
        head, _, value = line.rpartition(" ")
        series, _, rest = head.partition("{")
        if series != name:
            continue
        found = dict(part.split("=", 1) for part in rest.rstrip("}").split(",") if "=" in part)
        if all(found.get(k) == f'"{v}"' for k, v in labels.items()):
            return float(value)
    return None


class Receiver:
    """A real HTTP server on loopback that records the JSON bodies POSTed to it (by path),
    answering ``status`` (paths under ``/fail``: 500)."""

    def __init__(self) -> None:
        self.bodies: dict[str, list[Any]] = {}
        self.status = 200
        self.url = ""

    async def handle(self, request: web.Request) -> web.Response:
        self.bodies.setdefault(request.path, []).append(await request.json())
        # Paths under /fail answer 500, always: a broken receiver.
        status = 500 if request.path.startswith("/fail") else self.status
        return web.Response(status=status, text="ok")


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    """An HTTP receiver for alert webhooks (``receiver.url + "/any/path"``)."""
    recv = Receiver()
    app = web.Application()
    app.router.add_post("/{tail:.*}", recv.handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    recv.url = f"http://127.0.0.1:{runner.addresses[0][1]}"
    try:
        yield recv
    finally:
        await runner.cleanup()


class Mailbox:
    """Messages a real SMTP server (aiosmtpd) accepted."""

    def __init__(self) -> None:
        self.messages: list[tuple[str, list[str], bytes]] = []
        self.lock = threading.Lock()

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        with self.lock:
            self.messages.append((envelope.mail_from, list(envelope.rcpt_tos), envelope.content))
        return "250 Message accepted for delivery"


@pytest.fixture
def smtp_server() -> Any:
    """A real aiosmtpd server on a free loopback port (its own thread); yields
    ``(port, mailbox)``."""
    from aiosmtpd.controller import Controller

    from tests.procs import free_port

    mailbox = Mailbox()
    port = free_port()
    controller = Controller(mailbox, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield port, mailbox
    finally:
        controller.stop()


def _ensure(tools: tuple[str, ...], packages: tuple[str, ...]) -> str | None:
    """Install Debian ``packages`` when a tool is missing; the reason to skip, if any."""
    if all(shutil.which(t) for t in tools):
        return None
    script = HERE.parent / "ensure_debian.sh"
    result = subprocess.run(
        ["bash", str(script), *tools, "--", *packages], capture_output=True, text=True
    )
    if result.returncode != 0 or not all(shutil.which(t) for t in tools):
        return (
            f"{', '.join(tools)} not available and {', '.join(packages)} could not be installed: "
            + (result.stderr.strip()[-300:] or "unknown error")
        )
    return None


@pytest.fixture(scope="session")
def prometheus_tools() -> None:
    """``prometheus`` and ``promtool`` on PATH (installed from Debian's packages if needed)."""
    reason = _ensure(("prometheus", "promtool"), ("prometheus",))
    if reason:
        pytest.skip(reason)


@pytest.fixture(scope="session")
def browser_tools() -> None:
    """``chromium`` and ``chromedriver`` on PATH (installed from Debian's packages if needed)."""
    reason = _ensure(
        ("chromium", "chromedriver"), ("chromium", "chromium-driver", "fonts-dejavu-core")
    )
    if reason:
        pytest.skip(reason)
