"""A lean HTTP/1.1 client for upstream calls: pooled keep-alive connections, nothing else.

Why not aiohttp's ``ClientSession``: it was about 28 % of a request's CPU in the gateway's
profile (and most of an open stream's memory), for features an upstream call to an LLM
provider never uses (cookies, redirects, proxies, multipart, per-request tracing). This
client does one thing: POST a prepared body to a configured origin over a reused
connection and hand back the status, the headers and the body as it arrives. The response
is parsed by llhttp (Node's parser, through ``httptools``); TLS is asyncio's own.

What it guarantees, since upstream bytes are not trusted (THREAT_MODEL.md):
- a response head larger than ``MAX_HEAD_BYTES`` is refused, so headers cannot grow without
  bound;
- a body is buffered only up to ``HIGH_WATER`` bytes ahead of its reader: past that the
  socket stops being read (TCP backpressure reaches the upstream), reading resumes below
  ``LOW_WATER``;
- ``idle`` seconds without a byte while a response is awaited or read is a timeout;
- a connection goes back to the pool only after a complete response that allows keep-alive;
  anything else (a cancelled call, a cut or malformed answer) closes it.

Errors leave as ``Http1Error`` with a ``kind`` the transport maps onto ``ir.ErrorKind``.
"""

from __future__ import annotations

import asyncio
import functools
import ssl
import zlib
from collections.abc import AsyncIterator, Mapping
from typing import Literal, cast
from urllib.parse import urlsplit

import httptools

from hedgerow import __version__

__all__ = [
    "HIGH_WATER",
    "LOW_WATER",
    "MAX_HEAD_BYTES",
    "Http1Error",
    "Http1Pool",
    "Http1Response",
    "header_block",
]

# A response head (status line and headers) larger than this is refused.
MAX_HEAD_BYTES = 64 * 1024
# Body bytes buffered ahead of the reader before the socket stops being read, and the level
# at which reading resumes.
HIGH_WATER = 256 * 1024
LOW_WATER = 64 * 1024
# What one network read of a compressed body may inflate to.
MAX_INFLATED_CHUNK = 4 * 1024 * 1024
# Idle connections kept per origin; one more is closed rather than pooled.
MAX_IDLE_PER_ORIGIN = 1024

ErrorClass = Literal["connect", "timeout", "cut", "malformed", "too_large"]


class Http1Error(Exception):
    """A failed call. ``kind``: connect (no answer began), timeout, cut (the connection
    ended inside the response), malformed (bytes that are not HTTP/1.1) or too_large (a
    body over the caller's limit)."""

    def __init__(self, kind: ErrorClass, message: str) -> None:
        super().__init__(message)
        self.kind: ErrorClass = kind


def header_block(headers: Mapping[str, str]) -> bytes:
    """Request headers as wire bytes, prepared once per provider.

    Values come from the config (trusted), but a CR or LF in one would split the request,
    so it is refused here rather than sent.
    """
    lines = []
    for name, value in headers.items():
        if any(c in name or c in value for c in "\r\n\0") or ":" in name:
            raise ValueError(f"header {name!r}: a name or value holds a line break or colon")
        lines.append(f"{name}: {value}\r\n")
    return "".join(lines).encode("latin-1")


class _Origin:
    """Where a URL's requests go: connection target and the request-line prefix."""

    __slots__ = ("host", "host_header", "key", "path", "port", "tls")

    def __init__(self, url: str) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"not an http(s) URL: {url!r}")
        self.tls = parts.scheme == "https"
        self.host = parts.hostname
        self.port = parts.port or (443 if self.tls else 80)
        default_port = self.port == (443 if self.tls else 80)
        host = f"[{self.host}]" if ":" in self.host else self.host
        self.host_header = host if default_port else f"{host}:{self.port}"
        path = parts.path or "/"
        if parts.query:
            path = f"{path}?{parts.query}"
        self.path = path
        self.key = (self.tls, self.host, self.port)


@functools.lru_cache(maxsize=1024)
def _origin(url: str) -> _Origin:
    return _Origin(url)


class Http1Response:
    """An answer whose head has arrived; its body is read with ``read`` or ``chunks``."""

    __slots__ = (
        "_conn",
        "_decoder",
        "_headers",
        "_raw_headers",
        "status",
    )

    def __init__(self, conn: _Connection, status: int, raw_headers: list[tuple[bytes, bytes]]):
        self._conn = conn
        conn.owner = self  # until the answer is handed back (see _finish)
        self.status = status
        self._raw_headers = raw_headers
        self._headers: dict[str, str] | None = None
        self._decoder: zlib._Decompress | None = None
        encoding = conn.encoding.decode("latin-1").strip().lower()
        if not encoding or encoding == "identity":
            pass
        elif encoding in ("gzip", "x-gzip"):
            self._decoder = zlib.decompressobj(16 + zlib.MAX_WBITS)
        elif encoding == "deflate":
            self._decoder = zlib.decompressobj()
        else:
            self._finish(reuse=False)
            raise Http1Error("malformed", f"unsupported content-encoding {encoding!r}")

    @property
    def headers(self) -> dict[str, str]:
        """Header names in lower case; a repeated header's values joined with ", ".

        Empty for a 2xx answer: only an error's headers are kept (see ``on_status``)."""
        headers = self._headers
        if headers is None:
            headers = {}
            for raw_name, raw_value in self._raw_headers:
                name = raw_name.decode("latin-1").lower()
                value = raw_value.decode("latin-1")
                headers[name] = f"{headers[name]}, {value}" if name in headers else value
            self._headers = headers
        return headers

    async def read(self, limit: int) -> bytes:
        """The whole body; more than ``limit`` bytes raises (malformed), closing the connection.

        Written without ``chunks()``: a small answer usually arrives with its head, and this
        path then costs no generator and no wait.
        """
        conn = self._conn
        parts: list[bytes] = []
        size = 0
        try:
            while True:
                data = conn.take_body()
                if data is None:
                    await conn.wait_body()
                    continue
                if not data:
                    break
                size += len(data)
                if size > limit:
                    raise Http1Error("too_large", f"upstream response over {limit} bytes")
                parts.append(data)
        except BaseException:
            self._finish(reuse=False)
            raise
        self._finish(reuse=True)
        body = parts[0] if len(parts) == 1 else b"".join(parts)
        if self._decoder is not None:
            body = _decompress(self._decoder, body, limit) + self._decoder.flush()
        return body

    async def read_some(self, limit: int) -> bytes:
        """At most ``limit`` bytes of the body (an error body is read only for its message);
        the connection is closed when the body was longer."""
        parts: list[bytes] = []
        size = 0
        async for chunk in self.chunks():
            parts.append(chunk)
            size += len(chunk)
            if size >= limit:
                self._finish(reuse=False)
                break
        return b"".join(parts)[:limit]

    async def chunks(self) -> AsyncIterator[bytes]:
        """The body as it arrives (what is buffered at each wake-up, joined)."""
        conn = self._conn
        decoder = self._decoder
        try:
            while True:
                data = conn.take_body()
                if data is None:
                    await conn.wait_body()
                    continue
                if data:
                    if decoder is not None:
                        data = _decompress(decoder, data)
                        if not data:
                            continue
                    yield data
                    continue
                if decoder is not None:
                    tail = decoder.flush()
                    if tail:
                        yield tail
                return
        finally:
            # A reader that stopped early (at the stream's last event, say) leaves a reusable
            # connection when the whole answer is in; otherwise it is dropped.
            self._finish(reuse=True)

    def close(self) -> None:
        """Done with this answer: the connection is pooled if the response was read whole
        off the wire, else dropped, so an abandoned call stops costing at once."""
        self._finish(reuse=True)

    def _finish(self, reuse: bool) -> None:
        """Hand the connection back, once: a second call (``close`` after the body was read)
        must not touch it, since it may already carry another call."""
        conn = self._conn
        if conn.owner is not self:
            return
        conn.owner = None
        if reuse:
            conn.release()  # pools it only if the response is complete and keep-alive
        else:
            conn.abort()


def _decompress(decoder: zlib._Decompress, data: bytes, limit: int = MAX_INFLATED_CHUNK) -> bytes:
    """Inflate ``data``, refusing more than ``limit`` bytes out of it (a compression bomb)."""
    try:
        out = decoder.decompress(data, limit)
    except zlib.error as exc:
        raise Http1Error("malformed", f"bad compressed body: {exc}") from None
    if decoder.unconsumed_tail:
        raise Http1Error("malformed", f"compressed body inflates past {limit} bytes")
    return out


class _Connection(asyncio.Protocol):
    """One upstream connection and the response being read on it (one at a time)."""

    __slots__ = (
        "_body",
        "_body_size",
        "_complete",
        "_framed",
        "_head",
        "_head_bytes",
        "_headers",
        "_idle",
        "_idle_timer",
        "_keep_alive",
        "_keep_headers",
        "_last_read",
        "_loop",
        "_paused",
        "_pool",
        "_waiter",
        "closed",
        "encoding",
        "error",
        "idle_since",
        "origin_key",
        "owner",
        "parser",
        "received",
        "transport",
        "used",
    )

    def __init__(self, pool: Http1Pool, origin_key: tuple[bool, str, int]) -> None:
        self._pool = pool
        self._loop = asyncio.get_running_loop()
        self.origin_key = origin_key
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.closed = False
        self.used = False  # has it carried a request before (a stale keep-alive may fail)
        self.idle_since = 0.0
        self.error: Http1Error | None = None
        self.owner: Http1Response | None = None  # the answer being read on it
        self._reset()
        self._idle: float | None = None
        self._idle_timer: asyncio.TimerHandle | None = None
        self._last_read = 0.0
        self._paused = False

    def _reset(self) -> None:
        self._head: asyncio.Future[None] | None = None
        self._headers: list[tuple[bytes, bytes]] = []
        self._head_bytes = 0
        self._body: list[bytes] = []  # a list, not a deque: 56 bytes empty against 760
        self._body_size = 0
        self._complete = False
        self._keep_alive = False
        self._keep_headers = True
        self._framed = False  # a length or chunked framing was announced
        self.received = False
        self._waiter: asyncio.Future[None] | None = None
        self.encoding = b""

    # -- asyncio.Protocol ---------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses, but have its methods.
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        self.received = True
        self._last_read = self._loop.time()
        head = self._head
        if head is None:  # bytes with no request outstanding: the connection is unusable
            self.abort()
            return
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._fail(Http1Error("malformed", "upstream switched protocols"))
            return
        except httptools.HttpParserError as exc:
            self._fail(Http1Error("malformed", f"not a valid HTTP/1.1 response: {exc}"))
            return
        if not head.done():  # bytes fed and still no end of head: count them against its limit
            self._head_bytes += len(data)
            if self._head_bytes > MAX_HEAD_BYTES:
                self._fail(Http1Error("malformed", f"response head over {MAX_HEAD_BYTES} bytes"))

    def eof_received(self) -> bool | None:
        return False  # close our side too; connection_lost decides what the EOF meant

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._cancel_idle_timer()
        if self._complete or self._head is None:
            return
        if self._head.done() and self._ends_at_close():
            self._message_done()  # a body delimited by the connection's end is complete
            return
        reason = f": {exc}" if exc else ""
        if self._head.done():
            self._fail(Http1Error("cut", f"connection closed inside the response body{reason}"))
        else:
            self._fail(Http1Error("connect", f"server disconnected before answering{reason}"))

    def pause_writing(self) -> None:  # a request body bigger than the socket buffer
        pass

    def resume_writing(self) -> None:
        pass

    # -- llhttp callbacks ---------------------------------------------------------------

    def on_status(self, reason: bytes) -> None:
        # A success's headers are not kept: the gateway reads headers only from errors (retry
        # hints), and an open stream should not carry a dozen of them for its whole life.
        self._keep_headers = not 200 <= self.parser.get_status_code() < 300

    def on_header(self, name: bytes, value: bytes) -> None:
        if self._keep_headers:
            self._headers.append((name, value))
        if len(name) in (14, 16, 17):  # the three whose meaning this client needs
            lower = name.lower()
            if lower == b"content-encoding":
                self.encoding = value
            elif lower in (b"content-length", b"transfer-encoding"):
                self._framed = True

    def on_headers_complete(self) -> None:
        # Asked now: llhttp resets its flags once the message is complete.
        self._keep_alive = self.parser.should_keep_alive()
        head = self._head
        if head is not None and not head.done():
            head.set_result(None)

    def on_body(self, body: bytes) -> None:
        self._body.append(body)
        self._body_size += len(body)
        if self._body_size > HIGH_WATER and not self._paused and self.transport is not None:
            self._paused = True
            self.transport.pause_reading()
        self._wake()

    def on_message_complete(self) -> None:
        self._message_done()

    # -- the request's side ---------------------------------------------------------------

    def send(self, request: bytes, idle: float | None) -> asyncio.Future[None]:
        """Write a request; the returned future resolves when the response head is in."""
        self._reset()
        self.used = True
        head: asyncio.Future[None] = self._loop.create_future()
        self._head = head
        self._idle = idle
        self._last_read = self._loop.time()
        if idle is not None:
            self._idle_timer = self._loop.call_at(self._last_read + idle, self._check_idle)
        assert self.transport is not None
        self.transport.write(request)
        return head

    def response_head(self) -> tuple[int, list[tuple[bytes, bytes]]]:
        return self.parser.get_status_code(), self._headers

    def take_body(self) -> bytes | None:
        """Buffered body bytes; ``b""`` once the body is complete; ``None``: wait."""
        body = self._body
        if body:
            data = body[0] if len(body) == 1 else b"".join(body)
            body.clear()
            self._body_size = 0
            if self._paused and self.transport is not None:
                self._paused = False
                self._last_read = self._loop.time()  # the pause was ours, not the upstream's
                self.transport.resume_reading()
            return data
        if self.error is not None:
            raise self.error
        if self._complete:
            return b""
        return None

    async def wait_body(self) -> None:
        waiter = self._loop.create_future()
        self._waiter = waiter
        try:
            await waiter
        finally:
            self._waiter = None

    def release(self) -> None:
        """The response was read to its end: pool the connection if it may be reused."""
        self._cancel_idle_timer()
        if self.closed or self.error is not None or not self._complete:
            self.abort()
            return
        if not self._keep_alive:
            self.abort()
            return
        self._head = None
        self._pool.put_idle(self)

    def abort(self) -> None:
        """Close at once; nothing more is read or pooled."""
        self._cancel_idle_timer()
        self.closed = True
        if self.transport is not None:
            self.transport.abort()

    # -- internals ------------------------------------------------------------------------

    def _ends_at_close(self) -> bool:
        """No length and not chunked: the body runs to the connection's end (RFC 9112 6.3)."""
        return not self._framed

    def _message_done(self) -> None:
        self._complete = True
        self._cancel_idle_timer()
        head = self._head
        if head is not None and not head.done():  # a body-less answer completes the head too
            head.set_result(None)
        self._wake()

    def _fail(self, error: Http1Error) -> None:
        if self.error is None:
            self.error = error
        head = self._head
        if head is not None and not head.done():
            head.set_exception(error)
        self._wake()
        self.abort()

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _check_idle(self) -> None:
        self._idle_timer = None
        idle = self._idle
        if idle is None or self._complete or self.closed:
            return
        # Re-armed lazily: a read only stores its time; the timer looks at it when it fires.
        now = self._loop.time()
        if self._paused:  # the pause is ours (a slow reader), not the upstream's silence
            self._idle_timer = self._loop.call_at(now + idle, self._check_idle)
            return
        due = self._last_read + idle
        if due > now:
            self._idle_timer = self._loop.call_at(due, self._check_idle)
            return
        what = "the response body" if self._head is not None and self._head.done() else "a response"
        self._fail(Http1Error("timeout", f"no bytes for {idle}s while waiting for {what}"))

    def _cancel_idle_timer(self) -> None:
        timer = self._idle_timer
        if timer is not None:
            timer.cancel()
            self._idle_timer = None


class Http1Pool:
    """Keep-alive connections per origin (scheme, host, port), most recently used first.

    Belongs to the event loop it was first used in (as its connections do).
    """

    def __init__(
        self,
        keepalive: float = 30.0,
        ssl_context: ssl.SSLContext | None = None,
        max_idle_per_origin: int = MAX_IDLE_PER_ORIGIN,
    ) -> None:
        self._keepalive = keepalive
        self._ssl = ssl_context
        self._max_idle = max_idle_per_origin
        self._idle: dict[tuple[bool, str, int], list[_Connection]] = {}
        self._closed = False
        self.connections_opened = 0  # for tests and the health view

    def _ssl_context(self) -> ssl.SSLContext:
        context = self._ssl
        if context is None:
            context = ssl.create_default_context()
            context.set_alpn_protocols(["http/1.1"])
            self._ssl = context
        return context

    async def post(
        self,
        url: str,
        headers: bytes,
        body: bytes,
        connect_timeout: float | None,
        idle_timeout: float | None,
    ) -> Http1Response:
        """Send ``body`` to ``url`` with prepared ``headers`` (see ``header_block``) and wait
        for the response head. A reused connection that turns out to have been closed by the
        server before it answered is retried once on a new connection."""
        origin = _origin(url)
        request = b"".join(
            (
                f"POST {origin.path} HTTP/1.1\r\nhost: {origin.host_header}\r\n".encode("latin-1"),
                headers,
                b"user-agent: hedgerow/%s\r\ncontent-length: %d\r\n\r\n"
                % (__version__.encode(), len(body)),
                body,
            )
        )
        conn = self._take_idle(origin.key)
        if conn is not None:
            try:
                return await self._exchange(conn, request, idle_timeout)
            except Http1Error as exc:
                if exc.kind != "connect" or conn.received:
                    raise
                # A stale keep-alive connection: the server closed it before reading this.
        conn = await self._connect(origin, connect_timeout)
        return await self._exchange(conn, request, idle_timeout)

    async def _exchange(
        self, conn: _Connection, request: bytes, idle: float | None
    ) -> Http1Response:
        head = conn.send(request, idle)
        try:
            await head
        except BaseException:
            conn.abort()  # cancelled or failed: an answer may still come, so never reuse it
            raise
        status, raw_headers = conn.response_head()
        return Http1Response(conn, status, raw_headers)

    async def _connect(self, origin: _Origin, timeout: float | None) -> _Connection:
        if self._closed:
            raise Http1Error("connect", "the client pool is closed")
        loop = asyncio.get_running_loop()
        ssl_context = self._ssl_context() if origin.tls else None
        try:
            async with asyncio.timeout(timeout):
                transport, conn = await loop.create_connection(
                    lambda: _Connection(self, origin.key),
                    origin.host,
                    origin.port,
                    ssl=ssl_context,
                    server_hostname=origin.host if ssl_context is not None else None,
                )
        except TimeoutError:
            raise Http1Error(
                "connect", f"connect to {origin.host}:{origin.port} timed out after {timeout}s"
            ) from None
        except (OSError, ssl.SSLError) as exc:
            raise Http1Error(
                "connect", f"cannot connect to {origin.host}:{origin.port}: {exc}"
            ) from None
        # uvloop may call connection_made only after create_connection has returned.
        conn.transport = transport
        self.connections_opened += 1
        return conn

    def _take_idle(self, key: tuple[bool, str, int]) -> _Connection | None:
        idle = self._idle.get(key)
        if not idle:
            return None
        oldest_usable = asyncio.get_running_loop().time() - self._keepalive
        while idle:
            conn = idle.pop()
            if not conn.closed and conn.idle_since >= oldest_usable:
                return conn
            conn.abort()
        return None

    def put_idle(self, conn: _Connection) -> None:
        """Keep a connection whose response was read whole (called by the connection)."""
        idle = self._idle.setdefault(conn.origin_key, [])
        if self._closed or len(idle) >= self._max_idle:
            conn.abort()
            return
        conn.idle_since = asyncio.get_running_loop().time()
        idle.append(conn)

    def idle_count(self) -> int:
        """Pooled connections that are still open."""
        return sum(1 for conns in self._idle.values() for c in conns if not c.closed)

    async def close(self) -> None:
        """Close every pooled connection; calls in flight keep theirs until they end."""
        self._closed = True
        for conns in self._idle.values():
            for conn in conns:
                conn.abort()
        self._idle.clear()
