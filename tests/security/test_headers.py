"""Hostile request heads: oversize headers get 431 in the client's format, a head that
trickles in gets 408 (slowloris), and neither stops other clients being served.

Every test talks to a real server on loopback through a raw socket: the point is what the
HTTP layer does before any handler runs.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import aiohttp
import orjson
import pytest
from aiohttp import web

from hedgerow.config import Config
from hedgerow.routing import Gateway
from hedgerow.server.app import create_app
from hedgerow.server.protocol import HeaderLimits
from hedgerow.sim.mock import RunningMock
from tests.procs import free_port, hedgerow_process
from tests.servers import RunningGateway, make_config

ROUTES = {"chat": {"tiers": [["oai/gpt-5.5"]]}}
CHAT = orjson.dumps(
    {"model": "chat", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 5}
)
SMALL = HeaderLimits(timeout=0.5, max_bytes=16 * 1024, max_line=4096, max_count=40)


def test_aiohttp_is_the_version_the_protocol_hook_was_written_for() -> None:
    # hedgerow.server.protocol subclasses aiohttp's RequestHandler and wraps
    # Application._make_handler: a new aiohttp must be checked against it, not trusted.
    assert aiohttp.__version__.startswith("3.14.")


@asynccontextmanager
async def serve(config: Config, limits: HeaderLimits = SMALL) -> AsyncIterator[RunningGateway]:
    """The gateway app on a free loopback port with ``limits`` on request heads."""
    gateway = Gateway(config)
    runner = web.AppRunner(
        create_app(gateway, config, header_limits=limits),
        handler_cancellation=True,
        access_log=None,
        shutdown_timeout=1.0,
    )
    await runner.setup()
    try:
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        yield RunningGateway(gateway, int(runner.addresses[0][1]), runner.server)
    finally:
        await runner.cleanup()


async def exchange(port: int, head: bytes, body: bytes = b"") -> tuple[int, bytes]:
    """Send ``head`` (and ``body``) on a fresh connection: the status and body answered."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(head + body)
        await writer.drain()
        return await read_response(reader)
    finally:
        writer.close()


async def read_response(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    status_line = await asyncio.wait_for(reader.readline(), timeout=10)
    assert status_line, "the connection closed without an answer"
    length = 0
    while (line := await asyncio.wait_for(reader.readline(), timeout=10)) not in (b"\r\n", b""):
        name, _, value = line.decode().partition(":")
        if name.lower() == "content-length":
            length = int(value)
    return int(status_line.split()[1]), await reader.readexactly(length)


def head(path: str, *headers: bytes, method: str = "POST", body: bytes = CHAT) -> bytes:
    lines = [f"{method} {path} HTTP/1.1".encode(), b"Host: x", *headers]
    if method == "POST":
        lines += [b"Content-Type: application/json", f"Content-Length: {len(body)}".encode()]
    return b"\r\n".join(lines) + b"\r\n\r\n"


def assert_openai_error(body: bytes, words: str) -> None:
    error = orjson.loads(body)["error"]
    assert error["type"] == "invalid_request_error" and words in error["message"], error


def assert_anthropic_error(body: bytes, words: str) -> None:
    data = orjson.loads(body)
    assert data["type"] == "error" and words in data["error"]["message"], data


@pytest.mark.parametrize(
    ("name", "headers", "words"),
    [
        ("one header line too long", [b"X-Big: " + b"a" * 6000], "header line is longer"),
        ("one huge header line", [b"X-Big: " + b"a" * 100_000], "larger than the 16384-byte"),
        ("too many headers", [f"X-H{i}: v".encode() for i in range(60)], "more than 40 headers"),
        (
            "a header block over the total limit",
            [f"X-H{i}: ".encode() + b"v" * 1000 for i in range(30)],
            "larger than the 16384-byte limit",
        ),
    ],
)
async def test_oversize_headers_get_431_in_the_clients_format(
    mock: RunningMock, name: str, headers: list[bytes], words: str
) -> None:
    async with serve(make_config(mock, ROUTES)) as gw:
        status, body = await exchange(gw.port, head("/v1/chat/completions", *headers), CHAT)
        assert status == 431, name
        assert_openai_error(body, words)
        status, body = await exchange(gw.port, head("/v1/messages", *headers), CHAT)
        assert status == 431, name
        assert_anthropic_error(body, words)
        # The Anthropic SDK's version header marks its format on any path.
        get = head("/v1/models", b"anthropic-version: 2023-06-01", *headers, method="GET")
        status, body = await exchange(gw.port, get)
        assert status == 431
        assert_anthropic_error(body, words)
        # The server is still fine.
        status, _ = await exchange(gw.port, head("/healthz", method="GET"))
        assert status == 200


async def test_an_oversize_request_line_gets_414(mock: RunningMock) -> None:
    async with serve(make_config(mock, ROUTES)) as gw:
        status, body = await exchange(gw.port, head("/v1/chat/completions?" + "q" * 10_000))
        assert status == 414
        assert_openai_error(body, "request line is longer")


async def test_headers_within_the_limits_are_served(mock: RunningMock) -> None:
    headers = [f"X-H{i}: ".encode() + b"v" * 300 for i in range(30)]  # ~10 KiB, 34 headers
    async with serve(make_config(mock, ROUTES)) as gw:
        status, body = await exchange(gw.port, head("/v1/chat/completions", *headers), CHAT)
        assert status == 200, body


async def test_default_limits(mock: RunningMock) -> None:
    async with serve(make_config(mock, ROUTES), HeaderLimits()) as gw:
        line = head("/v1/chat/completions", b"X-Big: " + b"a" * 20_000)
        status, body = await exchange(gw.port, line, CHAT)
        assert status == 431
        assert_openai_error(body, "longer than 8190 bytes")
        block = head("/v1/chat/completions", *[f"X-{i}: ".encode() + b"a" * 8000 for i in range(9)])
        status, body = await exchange(gw.port, block, CHAT)
        assert status == 431
        assert_openai_error(body, "larger than the 65536-byte limit")


async def trickle(
    port: int, first: bytes, every: float, limit: float
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter, asyncio.Task[None]]:
    """A slowloris client: ``first``, then one header byte every ``every`` seconds (the
    client side's own pace), for at most ``limit`` seconds."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(first)
    await writer.drain()

    async def drip() -> None:
        deadline = time.monotonic() + limit
        try:
            while time.monotonic() < deadline and not writer.is_closing():
                await asyncio.sleep(every)
                writer.write(b"x")
                await writer.drain()
        except (ConnectionError, OSError):
            pass  # the server closed it: what we want

    return reader, writer, asyncio.create_task(drip())


async def test_a_head_that_trickles_in_gets_408_within_the_timeout(mock: RunningMock) -> None:
    async with serve(make_config(mock, ROUTES)) as gw:
        start = time.monotonic()
        reader, writer, drip = await trickle(
            gw.port, b"POST /v1/messages HTTP/1.1\r\nHost: x\r\nX-Slow: ", every=0.1, limit=10
        )
        status, body = await read_response(reader)
        elapsed = time.monotonic() - start
        assert status == 408
        assert_anthropic_error(body, "did not arrive within 0.5s")
        assert 0.4 < elapsed < 3.0, elapsed
        assert await asyncio.wait_for(reader.read(), timeout=5) == b""  # closed
        drip.cancel()
        writer.close()


async def test_a_connection_that_sends_nothing_is_closed(mock: RunningMock) -> None:
    async with serve(make_config(mock, ROUTES)) as gw:
        start = time.monotonic()
        reader, writer = await asyncio.open_connection("127.0.0.1", gw.port)
        assert await asyncio.wait_for(reader.read(), timeout=5) == b""
        assert time.monotonic() - start < 3.0
        writer.close()


async def test_a_slow_body_still_gets_the_body_408_not_the_head_one(mock: RunningMock) -> None:
    config = make_config(mock, ROUTES, server={"body_timeout": 1.5})
    async with serve(config) as gw:
        reader, writer = await asyncio.open_connection("127.0.0.1", gw.port)
        writer.write(head("/v1/chat/completions", body=b"x" * 1000) + b'{"model":')
        await writer.drain()
        start = time.monotonic()
        status, body = await read_response(reader)
        # The head arrived at once: its timer (0.5 s) must not cut the body's (1.5 s).
        assert status == 408 and time.monotonic() - start > 1.2
        assert_openai_error(body, "request body did not arrive in time")
        writer.close()


async def test_a_body_slower_than_the_head_timeout_is_fine(mock: RunningMock) -> None:
    async with serve(make_config(mock, ROUTES)) as gw:
        reader, writer = await asyncio.open_connection("127.0.0.1", gw.port)
        writer.write(head("/v1/chat/completions") + CHAT[:10])
        await writer.drain()
        await asyncio.sleep(0.8)  # the client's pace: longer than the head timeout
        writer.write(CHAT[10:])
        await writer.drain()
        status, _ = await read_response(reader)
        assert status == 200
        writer.close()


async def test_a_kept_alive_connection_may_idle_between_requests(mock: RunningMock) -> None:
    async with serve(make_config(mock, ROUTES)) as gw:
        reader, writer = await asyncio.open_connection("127.0.0.1", gw.port)
        for _ in range(2):
            writer.write(head("/v1/chat/completions") + CHAT)
            await writer.drain()
            status, _ = await read_response(reader)
            assert status == 200
            await asyncio.sleep(0.8)  # idle (keep-alive), not a head: longer than its timeout
        writer.close()


async def test_many_slowloris_connections_do_not_stop_a_normal_client(
    mock: RunningMock,
) -> None:
    async with serve(make_config(mock, ROUTES), HeaderLimits(timeout=3.0)) as gw:
        clients = [
            await trickle(gw.port, b"GET /healthz HTTP/1.1\r\nX-A: ", every=0.5, limit=2.5)
            for _ in range(200)
        ]
        try:
            start = time.monotonic()
            async with aiohttp.ClientSession() as session:
                for _ in range(5):
                    async with session.post(
                        f"{gw.url}/v1/chat/completions", data=CHAT, headers={"x": "y"}
                    ) as response:
                        assert response.status == 200
            assert time.monotonic() - start < 2.0
            # And every slow one is answered 408 and closed once its time is up.
            statuses = [(await read_response(reader))[0] for reader, _, _ in clients]
            assert set(statuses) == {408}
        finally:
            for _, writer, drip in clients:
                drip.cancel()
                writer.close()


def test_a_real_serve_process_answers_431_and_closes_a_silent_connection(
    tmp_path: Path,
) -> None:
    import socket

    port = free_port()
    config = tmp_path / "c.yaml"
    config.write_text(
        orjson.dumps(
            {
                "providers": {"oai": {"kind": "openai", "base_url": "http://127.0.0.1:9/v1"}},
                "routes": {"chat": {"tiers": [["oai/gpt-5.5"]]}},
                "jobs": {"path": str(tmp_path / "jobs.db")},
                "observe": {"request_log": False},
            }
        ).decode()
    )
    args = ["serve", "--config", str(config), "--port", str(port)]
    with hedgerow_process(args, port, tmp_path / "gw.log"):
        with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
            sock.sendall(head("/v1/messages", b"X-Big: " + b"a" * 20_000) + CHAT)
            data = b""
            while chunk := sock.recv(65536):
                data += chunk
        status_line, _, rest = data.partition(b"\r\n")
        assert status_line.split()[1] == b"431", data[:200]
        assert_anthropic_error(rest.partition(b"\r\n\r\n")[2], "header line is longer")
