"""The chat lane (``hedgerow.server.lane``) on the wire: what a client sees over a raw socket.

Every connection starts on the lane; the chat endpoints are answered there and anything else
is handed, bytes replayed, to aiohttp, which keeps the connection. These tests pin the HTTP
behaviour across that seam against a real gateway on the simulator: keep-alive both ways,
``Expect: 100-continue``, chunked bodies and the body limit, HTTP/1.0, pipelining, garbage,
the streamed framing, an app with middleware of its own, and authentication.

Which side answered is visible on the wire: aiohttp sends a ``server`` header, the lane none.
"""

from __future__ import annotations

import asyncio
import fcntl
import gzip
import logging
import struct
import termios
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import Any

import orjson
import pytest
from aiohttp import web
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hedgerow.routing import Gateway
from hedgerow.security import hash_key
from hedgerow.server import lane
from hedgerow.server.app import create_app
from hedgerow.server.protocol import HeaderLimits
from hedgerow.sim.mock import RunningMock
from tests.security.test_headers import (
    CHAT,
    ROUTES,
    SMALL,
    assert_anthropic_error,
    assert_openai_error,
    exchange,
    head,
    serve,
)
from tests.servers import RunningGateway, make_config

TIMEOUT = 10.0
STREAM = orjson.dumps(
    {
        "model": "chat",
        "messages": [{"role": "user", "content": "hi"}],
        "max_tokens": 5,
        "stream": True,
    }
)
MODELS = head("/v1/models", method="GET")


@dataclass
class Response:
    """One response as read off the wire."""

    status: int
    headers: dict[str, str]  # names lower-cased
    body: bytes  # without its framing
    wire: bytes  # the body as sent (chunk sizes and all)

    def json(self) -> Any:
        return orjson.loads(self.body)

    @property
    def by_aiohttp(self) -> bool:
        return "aiohttp" in self.headers.get("server", "")


async def read_full(reader: asyncio.StreamReader) -> Response:
    """A whole response: framed by content-length, chunks, or the connection's end."""
    return await asyncio.wait_for(_read_full(reader), timeout=TIMEOUT)


async def _read_full(reader: asyncio.StreamReader) -> Response:
    status_line = await reader.readline()
    # aiohttp answers a request line it cannot read as HTTP/1.0.
    assert status_line.startswith((b"HTTP/1.1 ", b"HTTP/1.0 ")), status_line
    headers: dict[str, str] = {}
    while (line := await reader.readline()) not in (b"\r\n", b""):
        name, _, value = line.decode("latin-1").partition(":")
        assert name.lower() not in headers, f"{name} twice"
        headers[name.lower()] = value.strip()
    status = int(status_line.split()[1])
    if headers.get("transfer-encoding") == "chunked":
        assert "content-length" not in headers
        chunks, wire = bytearray(), bytearray()
        while True:
            size_line = await reader.readuntil(b"\r\n")
            wire += size_line
            size = int(size_line.strip(), 16)
            data = await reader.readexactly(size + 2)
            wire += data
            assert data.endswith(b"\r\n"), data[-10:]
            if size == 0:
                break  # the last chunk (no trailers are sent)
            chunks += data[:-2]
        return Response(status, headers, bytes(chunks), bytes(wire))
    if "content-length" in headers:
        body = await reader.readexactly(int(headers["content-length"]))
        return Response(status, headers, body, body)
    body = await reader.read()  # framed by the connection's end
    return Response(status, headers, body, body)


async def closed(reader: asyncio.StreamReader) -> bool:
    """Whether the server closes the connection (with nothing more to say)."""
    try:
        return await asyncio.wait_for(reader.read(), timeout=TIMEOUT) == b""
    except ConnectionResetError:
        return True


@asynccontextmanager
async def connect(port: int) -> AsyncIterator[tuple[asyncio.StreamReader, asyncio.StreamWriter]]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        yield reader, writer
    finally:
        writer.close()


async def send(writer: asyncio.StreamWriter, data: bytes) -> None:
    writer.write(data)
    await writer.drain()


def chat(path: str = "/v1/chat/completions", body: bytes = CHAT, *headers: bytes) -> bytes:
    return head(path, *headers, body=body) + body


def chunked(path: str, *chunks: bytes, headers: tuple[bytes, ...] = ()) -> bytes:
    lines = [
        f"POST {path} HTTP/1.1".encode(),
        b"Host: x",
        b"Content-Type: application/json",
        b"Transfer-Encoding: chunked",
        *headers,
    ]
    framed = b"".join(b"%x\r\n%b\r\n" % (len(c), c) for c in chunks if c)
    return b"\r\n".join(lines) + b"\r\n\r\n" + framed + b"0\r\n\r\n"


def assert_openai_completion(response: Response) -> None:
    assert response.status == 200, response.body
    data = response.json()
    assert data["object"] == "chat.completion" and data["choices"], data


def assert_anthropic_message(response: Response) -> None:
    assert response.status == 200, response.body
    data = response.json()
    assert data["type"] == "message" and data["content"], data


def assert_models(response: Response) -> None:
    assert response.status == 200, response.body
    assert [m["id"] for m in response.json()["data"]] == ["chat"]


@pytest.fixture
async def gw(mock: RunningMock) -> AsyncIterator[RunningGateway]:
    async with serve(make_config(mock, ROUTES, server={"max_body_bytes": 4096})) as running:
        yield running


# -- keep-alive across the seam ---------------------------------------------------------------


async def test_one_connection_goes_from_the_lane_to_aiohttp_and_stays_there(
    gw: RunningGateway,
) -> None:
    async with connect(gw.port) as (reader, writer):
        await send(writer, chat())
        first = await read_full(reader)
        assert_openai_completion(first)
        assert not first.by_aiohttp

        await send(writer, MODELS)  # not the lane's: handed over mid-connection
        models = await read_full(reader)
        assert_models(models)
        assert models.by_aiohttp

        await send(writer, chat())  # aiohttp keeps the connection from then on
        third = await read_full(reader)
        assert_openai_completion(third)
        assert third.by_aiohttp
        assert third.headers["x-request-id"] != first.headers["x-request-id"]


async def test_a_connection_that_starts_on_aiohttp_serves_chat_there(gw: RunningGateway) -> None:
    async with connect(gw.port) as (reader, writer):
        await send(writer, MODELS)
        assert_models(await read_full(reader))
        await send(writer, chat("/v1/messages"))
        message = await read_full(reader)
        assert_anthropic_message(message)
        assert message.by_aiohttp


async def test_many_requests_on_one_lane_connection(gw: RunningGateway) -> None:
    async with connect(gw.port) as (reader, writer):
        for path in ["/v1/chat/completions", "/v1/messages"] * 3:
            await send(writer, chat(path))
            response = await read_full(reader)
            assert response.status == 200 and not response.by_aiohttp, response.body
            assert "connection" not in response.headers


# -- Expect: 100-continue ---------------------------------------------------------------------


async def test_expect_100_continue(gw: RunningGateway) -> None:
    async with connect(gw.port) as (reader, writer):
        for path in ("/v1/chat/completions", "/v1/messages"):  # twice: kept alive
            await send(writer, head(path, b"Expect: 100-continue"))
            interim = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout=TIMEOUT)
            assert interim == b"HTTP/1.1 100 Continue\r\n\r\n"
            await send(writer, CHAT)
            response = await read_full(reader)
            assert response.status == 200, response.body


async def test_no_100_continue_without_expect(gw: RunningGateway) -> None:
    async with connect(gw.port) as (reader, writer):
        await send(writer, chat())
        response = await read_full(reader)  # the final answer straight away
        assert_openai_completion(response)


# -- request bodies -----------------------------------------------------------------------------


async def test_a_chunked_body_is_read(gw: RunningGateway) -> None:
    async with connect(gw.port) as (reader, writer):
        await send(writer, chunked("/v1/chat/completions", CHAT[:7], CHAT[7:20], CHAT[20:]))
        assert_openai_completion(await read_full(reader))
        # In pieces across reads, as a slow client sends it.
        request = chunked("/v1/messages", CHAT[:10], CHAT[10:])
        for piece in (request[:50], request[50:-9], request[-9:]):
            await send(writer, piece)
        assert_anthropic_message(await read_full(reader))


@pytest.mark.parametrize(
    ("path", "check"),
    [
        ("/v1/chat/completions", assert_openai_error),
        ("/v1/messages", assert_anthropic_error),
    ],
    ids=["openai", "anthropic"],
)
async def test_a_chunked_body_over_the_limit_gets_413_and_the_connection_closes(
    gw: RunningGateway, path: str, check: Callable[[bytes, str], None]
) -> None:
    async with connect(gw.port) as (reader, writer):
        # All in one write so the server has read it all when it closes (no reset).
        await send(writer, chunked(path, b"x" * 3000, b"y" * 3000))
        response = await read_full(reader)
        assert response.status == 413
        check(response.body, "larger than the 4096-byte limit")
        assert response.headers.get("connection") == "close"
        assert await closed(reader)
    # Nothing else hurt.
    status, _ = await exchange(gw.port, chat())
    assert status == 200


async def test_a_declared_length_over_the_limit_gets_413(gw: RunningGateway) -> None:
    big = b"x" * 5000
    status, body = await exchange(gw.port, head("/v1/chat/completions", body=big), big)
    assert status == 413
    assert_openai_error(body, "larger than the 4096-byte limit")
    status, body = await exchange(gw.port, head("/v1/messages", body=big), big)
    assert status == 413
    assert_anthropic_error(body, "larger than the 4096-byte limit")


async def test_a_body_at_the_limit_is_read(gw: RunningGateway) -> None:
    body = CHAT[:-1] + b" " * (4096 - len(CHAT)) + b"}"
    assert len(body) == 4096
    async with connect(gw.port) as (reader, writer):
        await send(writer, chunked("/v1/chat/completions", body[:2000], body[2000:]))
        assert_openai_completion(await read_full(reader))


async def test_bad_chunk_framing_gets_400_in_the_endpoints_format(gw: RunningGateway) -> None:
    request = chunked("/v1/messages", CHAT).replace(b"\r\n\r\n", b"\r\n\r\nzz\r\n", 1)
    async with connect(gw.port) as (reader, writer):
        await send(writer, request)
        response = await read_full(reader)
        assert response.status == 400
        assert_anthropic_error(response.body, "not valid HTTP framing")
        assert await closed(reader)


# -- HTTP/1.0 -----------------------------------------------------------------------------------


def http10(request: bytes) -> bytes:
    return request.replace(b" HTTP/1.1\r\n", b" HTTP/1.0\r\n", 1)


@pytest.mark.parametrize(
    "request_bytes",
    [
        pytest.param(http10(chat()), id="http/1.0"),
        pytest.param(chat("/v1/chat/completions", CHAT, b"Connection: close"), id="close"),
    ],
)
async def test_an_answer_asked_to_close_closes_the_socket(
    gw: RunningGateway, request_bytes: bytes
) -> None:
    async with connect(gw.port) as (reader, writer):
        await send(writer, request_bytes)
        response = await read_full(reader)
        assert_openai_completion(response)
        assert response.headers.get("connection") == "close"
        assert await closed(reader)


async def test_an_http10_stream_is_unframed_and_ended_by_the_close(gw: RunningGateway) -> None:
    async with connect(gw.port) as (reader, writer):
        await send(writer, http10(chat("/v1/chat/completions", STREAM)))
        response = await read_full(reader)  # read up to the connection's end
        assert response.status == 200, response.body
        assert "transfer-encoding" not in response.headers
        assert "content-length" not in response.headers
        assert response.headers.get("connection") == "close"
        assert response.headers["content-type"].startswith("text/event-stream")
        # Nothing but server-sent events: no chunk sizes between them.
        events = response.body.split(b"\n\n")
        assert events[-1] == b"" and events[-2] == b"data: [DONE]"
        for event in events[:-2]:
            assert event.startswith(b"data: "), event
            orjson.loads(event.removeprefix(b"data: "))
        assert len(events) > 3


# -- pipelining ---------------------------------------------------------------------------------


async def test_pipelined_chat_requests_are_answered_in_order(gw: RunningGateway) -> None:
    async with connect(gw.port) as (reader, writer):
        writer.write(chat("/v1/chat/completions") + chat("/v1/messages", STREAM) + chat())
        await writer.drain()
        assert_openai_completion(await read_full(reader))
        streamed = await read_full(reader)
        assert streamed.status == 200 and streamed.headers["transfer-encoding"] == "chunked"
        assert b"event: message_stop" in streamed.body
        assert_openai_completion(await read_full(reader))
        # Still open and on the lane.
        await send(writer, chat("/v1/messages"))
        last = await read_full(reader)
        assert_anthropic_message(last)
        assert not last.by_aiohttp


async def test_a_pipelined_request_for_aiohttp_gets_400_and_a_close(gw: RunningGateway) -> None:
    async with connect(gw.port) as (reader, writer):
        await send(writer, chat() + MODELS)
        assert_openai_completion(await read_full(reader))
        refused = await read_full(reader)
        assert refused.status == 400
        assert_openai_error(refused.body, "pipelined request")
        assert refused.headers.get("connection") == "close"
        assert await closed(reader)


# -- what llhttp refuses ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "garbage",
    [
        b"GARBAGE\r\n\r\n",
        b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + b"\x00" * 40,  # a TLS hello
        b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n",
        b"POST /v1/chat/completions HTTP/9.9\r\nHost: x\r\nContent-Length: 2\r\n\r\n{}",
    ],
    ids=["request-line", "tls", "content-length", "version"],
)
async def test_malformed_http_gets_400_from_aiohttp(gw: RunningGateway, garbage: bytes) -> None:
    status, _ = await exchange(gw.port, garbage)
    assert status == 400
    async with connect(gw.port) as (reader, writer):
        # After a good request too (a handover mid-connection).
        await send(writer, chat())
        assert_openai_completion(await read_full(reader))
        await send(writer, garbage)
        refused = await read_full(reader)
        assert refused.status == 400 and refused.by_aiohttp
        assert await closed(reader)
    # The server is fine.
    status, _ = await exchange(gw.port, chat("/v1/messages"))
    assert status == 200


# -- streamed answers ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "ending"),
    [
        ("/v1/chat/completions", b"data: [DONE]\n\n"),
        ("/v1/messages", b"event: message_stop\n"),
    ],
    ids=["openai", "anthropic"],
)
async def test_a_streamed_answer_is_chunked_on_the_wire(
    gw: RunningGateway, path: str, ending: bytes
) -> None:
    async with connect(gw.port) as (reader, writer):
        await send(writer, chat(path, STREAM))
        status_line = await asyncio.wait_for(reader.readline(), timeout=TIMEOUT)
        assert status_line == b"HTTP/1.1 200 OK\r\n"
        head_lines = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout=TIMEOUT)
        lines = head_lines.decode("latin-1").split("\r\n")
        headers = {n.lower(): v for n, _, v in (line.partition(": ") for line in lines if line)}
        assert headers["transfer-encoding"] == "chunked"
        assert "content-length" not in headers and "connection" not in headers
        assert headers["content-type"] == "text/event-stream; charset=utf-8"
        assert headers["x-request-id"]
        date = parsedate_to_datetime(headers["date"])
        assert abs(date.timestamp() - time.time()) < 60

        # The body: chunks, each with its size, the last one empty.
        wire = bytearray()
        while not wire.endswith(b"\r\n0\r\n\r\n"):
            data = await asyncio.wait_for(reader.read(65536), timeout=TIMEOUT)
            assert data, f"closed mid-stream: {bytes(wire[-200:])!r}"
            wire += data
        body, rest = bytearray(), bytes(wire)
        while True:
            size_text, _, rest = rest.partition(b"\r\n")
            size = int(size_text, 16)
            assert rest[size : size + 2] == b"\r\n"
            if size == 0:
                assert rest == b"\r\n"  # exactly the last chunk: nothing after it
                break
            body += rest[:size]
            rest = rest[size + 2 :]
        assert body.startswith(b"data: ") or body.startswith(b"event: ")
        assert ending in body[-300:]
        assert body.endswith(b"\n\n")

        # Kept alive afterwards.
        await send(writer, chat(path))
        assert (await read_full(reader)).status == 200


# -- an app with middleware of its own ----------------------------------------------------------


@asynccontextmanager
async def serve_app(app: web.Application, gateway: Gateway) -> AsyncIterator[RunningGateway]:
    runner = web.AppRunner(app, handler_cancellation=True, access_log=None, shutdown_timeout=1.0)
    await runner.setup()
    try:
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        yield RunningGateway(gateway, int(runner.addresses[0][1]))
    finally:
        await runner.cleanup()


async def test_an_app_with_its_own_middleware_serves_chat_through_aiohttp(
    mock: RunningMock,
) -> None:
    seen: list[str] = []

    @web.middleware
    async def spy(request: web.Request, handler: Any) -> web.StreamResponse:
        seen.append(f"{request.method} {request.path}")
        response: web.StreamResponse = await handler(request)
        return response

    config = make_config(mock, ROUTES)
    gateway = Gateway(config)
    app = create_app(gateway, config, header_limits=SMALL)
    app.middlewares.append(spy)
    async with serve_app(app, gateway) as gw, connect(gw.port) as (reader, writer):
        await send(writer, chat())
        answer = await read_full(reader)
        assert_openai_completion(answer)
        assert answer.by_aiohttp
        await send(writer, chat("/v1/messages", STREAM))
        streamed = await read_full(reader)
        assert streamed.status == 200 and b"event: message_stop" in streamed.body
    assert seen == ["POST /v1/chat/completions", "POST /v1/messages"]


async def test_an_app_with_a_response_signal_serves_chat_through_aiohttp(
    mock: RunningMock,
) -> None:
    async def mark(_: web.Request, response: web.StreamResponse) -> None:
        response.headers["x-marked"] = "yes"

    config = make_config(mock, ROUTES)
    gateway = Gateway(config)
    app = create_app(gateway, config, header_limits=SMALL)
    app.on_response_prepare.append(mark)
    async with serve_app(app, gateway) as gw, connect(gw.port) as (reader, writer):
        for path in ("/v1/chat/completions", "/v1/messages"):
            await send(writer, chat(path))
            answer = await read_full(reader)
            assert answer.status == 200 and answer.headers.get("x-marked") == "yes", path


# -- the response head --------------------------------------------------------------------------


def test_head_drops_header_values_with_a_line_break(caplog: pytest.LogCaptureFixture) -> None:
    headers = {
        "content-type": "application/json",
        "x-split": "a\r\nx-injected: 1",
        "x-newline": "a\nb",
        "x-return": "a\rb",
        "x-request-id": "req_1",
    }
    with caplog.at_level(logging.WARNING, logger="hedgerow.server"):
        raw = lane._head(200, headers, "content-length: 2\r\n", False)
    text = raw.decode("latin-1")
    lines = text.split("\r\n")
    assert lines[0] == "HTTP/1.1 200 OK"
    assert "content-type: application/json" in lines and "x-request-id: req_1" in lines
    assert "content-length: 2" in lines
    assert any(line.startswith("date: ") for line in lines)
    assert "x-injected" not in text and "x-split" not in text
    assert "x-newline" not in text and "x-return" not in text
    assert "connection: close" not in lines
    assert text.endswith("\r\n\r\n") and text.count("\r\n\r\n") == 1
    assert sum("dropped a response header" in r.getMessage() for r in caplog.records) == 3

    closing = lane._head(413, {}, "content-length: 0\r\n", True).decode("latin-1")
    assert closing.startswith("HTTP/1.1 413 Request Entity Too Large\r\n")
    assert "\r\nconnection: close\r\n\r\n" in closing


# -- authentication -----------------------------------------------------------------------------

KEY = "hr-test-lane-key-0001"


async def test_auth_on_the_lane_answers_401_in_the_endpoints_format(mock: RunningMock) -> None:
    config = make_config(mock, ROUTES, auth={"keys": [{"name": "app", "sha256": hash_key(KEY)}]})
    async with serve(config) as gw, connect(gw.port) as (reader, writer):
        await send(writer, chat())
        denied = await read_full(reader)
        assert denied.status == 401 and not denied.by_aiohttp
        error = denied.json()["error"]
        assert error["code"] == "invalid_api_key" and "Missing gateway key" in error["message"]

        await send(writer, chat("/v1/messages"))
        denied = await read_full(reader)
        assert denied.status == 401
        data = denied.json()
        assert data["type"] == "error" and data["error"]["type"] == "authentication_error"

        await send(writer, chat("/v1/messages", CHAT, b"x-api-key: hr-wrong"))
        denied = await read_full(reader)
        assert denied.status == 401
        assert "Invalid or revoked" in denied.json()["error"]["message"]

        # The same connection, now with the key.
        await send(
            writer, chat("/v1/chat/completions", CHAT, f"Authorization: Bearer {KEY}".encode())
        )
        assert_openai_completion(await read_full(reader))
        await send(writer, chat("/v1/messages", CHAT, f"x-api-key: {KEY}".encode()))
        assert_anthropic_message(await read_full(reader))


async def test_requests_refused_for_their_key_leave_the_connection_going(
    mock: RunningMock,
) -> None:
    """A 401 is an answer like any other: requests pipelined behind it are answered, and the
    one after them, with the key, too."""
    config = make_config(mock, ROUTES, auth={"keys": [{"name": "app", "sha256": hash_key(KEY)}]})
    keyed = f"Authorization: Bearer {KEY}".encode()
    async with serve(config) as gw, connect(gw.port) as (reader, writer):
        await send(
            writer, chat() + chat("/v1/messages") + chat("/v1/chat/completions", CHAT, keyed)
        )
        assert (await read_full(reader)).status == 401
        assert (await read_full(reader)).status == 401
        assert_openai_completion(await read_full(reader))


# -- any split of the bytes -----------------------------------------------------------------

_SEQUENCE = (
    ("chat", chat()),
    ("messages", chat("/v1/messages")),
    ("models", MODELS),
    ("chat", chat()),
)
_CHECKS: dict[str, Callable[[Response], None]] = {
    "chat": assert_openai_completion,
    "messages": assert_anthropic_message,
    "models": assert_models,
}


async def server_socket(server: web.Server, writer: asyncio.StreamWriter) -> int:
    """The file descriptor of the server's end of the client's connection ``writer``."""
    local = writer.get_extra_info("sockname")
    while True:
        for transport in list(server._connections.values()):
            if transport.get_extra_info("peername") == local:
                return int(transport.get_extra_info("socket").fileno())
        await asyncio.sleep(0)  # until the server has accepted it


def unread(fd: int) -> int:
    """Bytes waiting in the kernel for the server to read."""
    count: int = struct.unpack("i", fcntl.ioctl(fd, termios.FIONREAD, b"\0\0\0\0"))[0]
    return count


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    start=st.integers(min_value=0, max_value=len(_SEQUENCE) - 1),
    cuts=st.lists(st.floats(min_value=0.0, max_value=1.0), max_size=6),
)
async def test_requests_split_anywhere_are_answered_alike(
    mock: RunningMock, start: int, cuts: list[float]
) -> None:
    """Each request of a kept-alive sequence (lane, lane, handed to aiohttp, aiohttp) written
    in pieces cut at arbitrary offsets, each piece read by the server before the next is
    sent (its socket's unread count is watched): the same answers as whole, whichever side
    serves it, wherever a read ends (mid request line, mid header, mid body)."""
    config = make_config(mock, ROUTES, server={"max_body_bytes": 4096})
    # The default header timeout: on a loaded machine a head in seven pieces may take longer
    # than SMALL's half second to arrive, which is not what this test is about.
    async with serve(config, HeaderLimits()) as gw, connect(gw.port) as (reader, writer):
        assert gw.server is not None
        fd = await server_socket(gw.server, writer)
        for name, data in _SEQUENCE[start:]:
            offsets = sorted({round(c * len(data)) for c in cuts} - {0, len(data)})
            for a, b in zip([0, *offsets], [*offsets, len(data)], strict=True):
                await send(writer, data[a:b])
                while unread(fd):
                    await asyncio.sleep(0)  # until the server has read this piece
            _CHECKS[name](await read_full(reader))


async def test_a_gzipped_body_is_handed_to_aiohttp_which_decompresses_it(
    gw: RunningGateway,
) -> None:
    body = gzip.compress(CHAT)
    async with connect(gw.port) as (reader, writer):
        await send(writer, chat("/v1/chat/completions", body, b"Content-Encoding: gzip"))
        response = await read_full(reader)
        assert_openai_completion(response)
        assert response.by_aiohttp
