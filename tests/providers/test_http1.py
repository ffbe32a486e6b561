"""The upstream HTTP/1.1 client against scripted raw-socket servers on loopback.

Each server is a few lines of asyncio that answer with exactly the bytes a case needs (a cut,
garbage, a stall, a huge head), so every failure the client must classify is injected, on
both event loops the gateway runs on (asyncio's and uvloop's).
"""

from __future__ import annotations

import asyncio
import datetime
import gzip
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import pytest

from hedgerow.config import ProviderConfig, Timeouts
from hedgerow.ir import ErrorKind
from hedgerow.providers import ClientPool, UpstreamError, open_call
from hedgerow.providers.adapter import Adapter
from hedgerow.providers.http1 import (
    HIGH_WATER,
    MAX_HEAD_BYTES,
    Http1Error,
    Http1Pool,
    header_block,
)

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]
HEADERS = header_block({"content-type": "application/json", "authorization": "Bearer k"})
OK = b'HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 11\r\n\r\n{"ok":true}'


class Server:
    """A loopback server running ``handler`` per connection, counting connections."""

    def __init__(self, handler: Handler) -> None:
        self.handler = handler
        self.connections = 0
        self.url = ""

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            await self.handler(reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()


@asynccontextmanager
async def serving(
    handler: Handler, ssl_context: ssl.SSLContext | None = None
) -> AsyncIterator[Server]:
    server = Server(handler)
    listener = await asyncio.start_server(server._serve, "127.0.0.1", 0, ssl=ssl_context)
    port = listener.sockets[0].getsockname()[1]
    scheme = "https" if ssl_context else "http"
    server.url = f"{scheme}://127.0.0.1:{port}/v1/chat/completions"
    try:
        yield server
    finally:
        listener.close()


async def read_request(reader: asyncio.StreamReader) -> tuple[bytes, bytes]:
    """One request's head and body (bodies here always carry content-length)."""
    head = await reader.readuntil(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            length = int(line.split(b":", 1)[1])
    return head, await reader.readexactly(length)


def answering(*responses: bytes, close: bool = False) -> Handler:
    """Answer each request on a connection with the next of ``responses`` (the last repeats)."""

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        i = 0
        while True:
            await read_request(reader)
            writer.write(responses[min(i, len(responses) - 1)])
            await writer.drain()
            i += 1
            if close:
                return

    return handler


async def test_keep_alive_connections_are_reused() -> None:
    async with serving(answering(OK)) as server:
        pool = Http1Pool()
        for _ in range(20):
            response = await pool.post(server.url, HEADERS, b"{}", 5, 5)
            assert response.status == 200
            assert await response.read(1 << 20) == b'{"ok":true}'
        assert server.connections == 1
        assert pool.connections_opened == 1
        await pool.close()


async def test_the_request_on_the_wire() -> None:
    seen: list[tuple[bytes, bytes]] = []

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        seen.append(await read_request(reader))
        writer.write(OK)
        await writer.drain()

    async with serving(handler) as server:
        pool = Http1Pool()
        url = server.url.replace("/v1/chat/completions", "/v1beta/models/m:gen?alt=sse")
        await (await pool.post(url, HEADERS, b'{"a":1}', 5, 5)).read(1 << 20)
        await pool.close()
    head, body = seen[0]
    lines = head.decode().split("\r\n")
    assert lines[0] == "POST /v1beta/models/m:gen?alt=sse HTTP/1.1"
    port = server.url.split(":")[2].split("/")[0]
    assert f"host: 127.0.0.1:{port}" in lines
    assert "authorization: Bearer k" in lines
    assert "content-length: 7" in lines
    assert body == b'{"a":1}'


@pytest.mark.parametrize(
    ("raw", "pooled"),
    [
        (b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nhello", True),
        (
            b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n2\r\nhe\r\n3\r\nllo\r\n0\r\n\r\n",
            True,
        ),
        (b"HTTP/1.1 200 OK\r\nconnection: close\r\n\r\nhello", False),
    ],
    ids=["content-length", "chunked", "until-close"],
)
async def test_every_body_framing(raw: bytes, pooled: bool) -> None:
    async with serving(answering(raw, close=not pooled)) as server:
        pool = Http1Pool()
        response = await pool.post(server.url, HEADERS, b"{}", 5, 5)
        assert await response.read(1 << 20) == b"hello"
        assert pool.idle_count() == (1 if pooled else 0)
        await pool.close()


async def test_a_stream_arrives_piece_by_piece() -> None:
    go = [asyncio.Event() for _ in range(3)]

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n")
        for i, event in enumerate(go):
            await event.wait()
            piece = f"data: {i}\n\n".encode()
            writer.write(b"%x\r\n%s\r\n" % (len(piece), piece))
            await writer.drain()
        writer.write(b"0\r\n\r\n")
        await writer.drain()
        await reader.read()  # keep the connection until the client goes

    async with serving(handler) as server:
        pool = Http1Pool()
        response = await pool.post(server.url, HEADERS, b"{}", 5, 5)
        got = []
        go[0].set()
        async for chunk in response.chunks():
            got.append(chunk)
            if len(got) < len(go):
                go[len(got)].set()
        assert got == [b"data: 0\n\n", b"data: 1\n\n", b"data: 2\n\n"]
        assert pool.idle_count() == 1
        await pool.close()


@pytest.mark.parametrize(
    "raw",
    [
        b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\nonly ten b",
        b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhello\r\n",
    ],
    ids=["short-content-length", "unterminated-chunked"],
)
async def test_a_cut_body_is_a_cut(raw: bytes) -> None:
    async with serving(answering(raw, close=True)) as server:
        pool = Http1Pool()
        response = await pool.post(server.url, HEADERS, b"{}", 5, 5)
        with pytest.raises(Http1Error) as caught:
            await response.read(1 << 20)
        assert caught.value.kind == "cut"
        assert pool.idle_count() == 0
        await pool.close()


@pytest.mark.parametrize(
    "raw",
    [
        b"SMTP ready\r\n\r\n",
        b"HTTP/1.1 2OO OK\r\n\r\n",
        b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\ntransfer-encoding: chunked\r\n\r\nhello",
        b"HTTP/1.1 200 OK\r\ncontent-length: -1\r\n\r\n",
    ],
    ids=["not-http", "bad-status", "length-and-chunked", "negative-length"],
)
async def test_garbage_is_malformed(raw: bytes) -> None:
    async with serving(answering(raw)) as server:
        pool = Http1Pool()
        with pytest.raises(Http1Error) as caught:
            await pool.post(server.url, HEADERS, b"{}", 5, 5)
        assert caught.value.kind == "malformed"
        await pool.close()


async def test_an_endless_head_is_refused_at_its_limit() -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\n")
        for i in range(MAX_HEAD_BYTES // 100 + 10):
            writer.write(b"x-h%d: %s\r\n" % (i, b"v" * 90))
            await writer.drain()
        await reader.read()

    async with serving(handler) as server:
        pool = Http1Pool()
        with pytest.raises(Http1Error, match="head over") as caught:
            await pool.post(server.url, HEADERS, b"{}", 5, 5)
        assert caught.value.kind == "malformed"
        await pool.close()


async def test_no_answer_is_an_idle_timeout() -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        await reader.read()  # never answers

    async with serving(handler) as server:
        pool = Http1Pool()
        with pytest.raises(Http1Error, match="waiting for a response") as caught:
            await pool.post(server.url, HEADERS, b"{}", 5, 0.2)
        assert caught.value.kind == "timeout"
        await pool.close()


async def test_a_stalled_stream_is_an_idle_timeout_but_a_slow_reader_is_not() -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhello\r\n")
        await writer.drain()
        await reader.read()  # then silence

    async with serving(handler) as server:
        pool = Http1Pool()
        response = await pool.post(server.url, HEADERS, b"{}", 5, 0.2)
        got = []
        with pytest.raises(Http1Error, match="waiting for the response body") as caught:
            async for chunk in response.chunks():
                got.append(chunk)
        assert got == [b"hello"]
        assert caught.value.kind == "timeout"
        await pool.close()


async def test_a_refused_connection_is_a_connect_error() -> None:
    listener = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
    port = listener.sockets[0].getsockname()[1]
    listener.close()
    await listener.wait_closed()
    pool = Http1Pool()
    with pytest.raises(Http1Error) as caught:
        await pool.post(f"http://127.0.0.1:{port}/x", HEADERS, b"{}", 5, 5)
    assert caught.value.kind == "connect"
    await pool.close()


async def test_a_stale_keep_alive_connection_is_retried_once_on_a_new_one() -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(OK)
        await writer.drain()
        await read_request(reader)  # the second request on this connection: hang up on it

    async with serving(handler) as server:
        pool = Http1Pool()
        assert await (await pool.post(server.url, HEADERS, b"{}", 5, 5)).read(99) == b'{"ok":true}'
        second = await pool.post(server.url, HEADERS, b"{}", 5, 5)
        assert await second.read(99) == b'{"ok":true}'
        assert pool.connections_opened == 2
        await pool.close()


async def test_a_reader_that_falls_behind_stops_the_socket_being_read() -> None:
    total = 64 * 1024 * 1024  # far more than loopback's socket buffers hold
    piece = b"x" * 65536
    sent_all = asyncio.Event()

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\n\r\n" % total)
        for _ in range(total // len(piece)):
            writer.write(piece)
            await writer.drain()
        sent_all.set()
        await reader.read()

    async with serving(handler) as server:
        pool = Http1Pool()
        response = await pool.post(server.url, HEADERS, b"{}", 5, 5)
        conn = response._conn
        for _ in range(2000):  # give the loop turns until the buffer fills and reading stops
            if conn._paused:
                break
            await asyncio.sleep(0)
        assert conn._paused
        assert conn._body_size <= HIGH_WATER + 4 * len(piece)
        assert not sent_all.is_set()
        received = 0
        async for chunk in response.chunks():
            received += len(chunk)
        assert received == total
        assert sent_all.is_set()
        await pool.close()


async def test_a_cancelled_call_never_returns_its_connection_to_the_pool() -> None:
    answered = asyncio.Event()

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        await answered.wait()
        writer.write(OK)  # a late answer to the cancelled call
        await writer.drain()
        await reader.read()

    async with serving(handler) as server:
        pool = Http1Pool()
        call = asyncio.ensure_future(pool.post(server.url, HEADERS, b"{}", 5, 5))
        while server.connections == 0:
            await asyncio.sleep(0)
        call.cancel()
        with pytest.raises(asyncio.CancelledError):
            await call
        answered.set()
        assert pool.idle_count() == 0
        await pool.close()


async def test_a_stream_left_early_closes_its_connection() -> None:
    body = b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhello\r\n"

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(body)
        await writer.drain()
        await reader.read()

    async with serving(handler) as server:
        pool = Http1Pool()
        response = await pool.post(server.url, HEADERS, b"{}", 5, 5)
        chunks = response.chunks()
        assert await anext(chunks) == b"hello"
        await chunks.aclose()
        assert response._conn.closed
        assert pool.idle_count() == 0
        await pool.close()


async def test_a_whole_answer_left_unread_keeps_its_connection_and_is_handed_back_once() -> None:
    """The router stops reading at a stream's last event and then closes the attempt: the
    connection goes back to the pool once, and a late ``close`` of the old answer does not
    touch the call that reuses it."""
    stream = b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\nc\r\ndata: [DONE]\r\n0\r\n\r\n"
    async with serving(answering(stream, OK)) as server:
        pool = Http1Pool()
        first = await pool.post(server.url, HEADERS, b"{}", 5, 5)
        chunks = first.chunks()
        assert await anext(chunks) == b"data: [DONE]"
        await chunks.aclose()  # stopped at the last event: the body was whole on the wire
        first.close()
        first.close()
        assert pool.idle_count() == 1
        second = await pool.post(server.url, HEADERS, b"{}", 5, 5)
        first.close()  # late: must not hand back the connection the second call now uses
        assert await second.read(99) == b'{"ok":true}'
        assert pool.connections_opened == 1
        assert pool.idle_count() == 1
        await pool.close()


async def test_gzip_is_inflated_and_a_bomb_is_refused() -> None:
    payload = b'{"text": "' + b"a" * 1000 + b'"}'
    packed = gzip.compress(payload)
    bomb = gzip.compress(b"\0" * (8 * 1024 * 1024))
    answers = [
        b"HTTP/1.1 200 OK\r\ncontent-encoding: gzip\r\ncontent-length: %d\r\n\r\n%s"
        % (len(data), data)
        for data in (packed, bomb)
    ]
    async with serving(answering(*answers)) as server:
        pool = Http1Pool()
        assert await (await pool.post(server.url, HEADERS, b"{}", 5, 5)).read(1 << 20) == payload
        with pytest.raises(Http1Error, match="inflates past") as caught:
            await (await pool.post(server.url, HEADERS, b"{}", 5, 5)).read(1 << 20)
        assert caught.value.kind == "malformed"
        await pool.close()


async def test_a_body_over_the_limit_is_too_large() -> None:
    big = b"HTTP/1.1 200 OK\r\ncontent-length: 5000\r\n\r\n" + b"x" * 5000
    async with serving(answering(big)) as server:
        pool = Http1Pool()
        response = await pool.post(server.url, HEADERS, b"{}", 5, 5)
        with pytest.raises(Http1Error) as caught:
            await response.read(4096)
        assert caught.value.kind == "too_large"
        assert pool.idle_count() == 0
        await pool.close()


def test_header_values_cannot_split_the_request() -> None:
    with pytest.raises(ValueError, match="line break"):
        header_block({"x-note": "a\r\nhost: evil"})
    with pytest.raises(ValueError, match="line break"):
        header_block({"x-bad:name": "v"})
    assert header_block({"a": "1"}) == b"a: 1\r\n"


def _self_signed(tmp_path: Path) -> tuple[ssl.SSLContext, ssl.SSLContext]:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.IPAddress(__import__("ipaddress").ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server.load_cert_chain(cert_path, key_path)
    client = ssl.create_default_context(cafile=str(cert_path))
    return server, client


async def test_https_with_a_verified_certificate(tmp_path: Path) -> None:
    server_ctx, client_ctx = _self_signed(tmp_path)
    async with serving(answering(OK), ssl_context=server_ctx) as server:
        trusting = Http1Pool(ssl_context=client_ctx)
        for _ in range(3):
            assert await (await trusting.post(server.url, HEADERS, b"{}", 5, 5)).read(99) == (
                b'{"ok":true}'
            )
        assert trusting.connections_opened == 1
        await trusting.close()
        # The default context does not trust a self-signed certificate: no call goes through.
        default = Http1Pool()
        with pytest.raises(Http1Error, match="CERTIFICATE_VERIFY_FAILED") as caught:
            await default.post(server.url, HEADERS, b"{}", 5, 5)
        assert caught.value.kind == "connect"
        await default.close()


async def test_the_transport_classifies_for_the_router() -> None:
    """What leaves ``open_call``: an ``UpstreamError`` of the router's kinds, error bodies read
    for their message and retry hints."""
    overloaded = (
        b"HTTP/1.1 529 \r\ncontent-type: application/json\r\nretry-after: 7\r\n"
        b'content-length: 75\r\n\r\n{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}'
    )
    adapter = Adapter("anthropic", ProviderConfig(kind="anthropic", base_url="http://x"))
    async with serving(answering(overloaded)) as server:
        pool = ClientPool()
        with pytest.raises(UpstreamError) as caught:
            await open_call(pool, adapter, server.url, b"{}", Timeouts(connect=5, idle=5))
        assert caught.value.info.kind == ErrorKind.OVERLOADED
        assert caught.value.info.retry_after == 7
        assert caught.value.info.provider_type == "overloaded_error"
        await pool.close()
    async with serving(
        answering(b"HTTP/1.1 200 OK\r\ncontent-length: 9\r\n\r\nhal", close=True)
    ) as server:
        pool = ClientPool()
        response = await open_call(pool, adapter, server.url, b"{}", Timeouts(connect=5, idle=5))
        with pytest.raises(UpstreamError) as caught:
            await response.read()
        assert caught.value.info.kind == ErrorKind.MALFORMED
        assert "cut" in caught.value.info.message
        await pool.close()
