"""The chat endpoints' own HTTP/1.1 connection: the hot path, below ``aiohttp.web``.

Every connection the server accepts starts as a ``LaneConnection``. A request for one of
the chat endpoints (``POST /v1/chat/completions``, ``POST /v1/messages``) is parsed by llhttp
(httptools), authenticated, answered through ``chat_exchange`` and written straight to the
transport: no ``web.Request``, no middleware chain, no ``StreamResponse``, one task per
request. Anything else (another path or method, an upgrade, a compressed body, a request
llhttp refuses or one past the header limits) is handed to aiohttp with its connection: the
bytes received so far are replayed into a ``GuardedRequestHandler``, which serves the rest
of that connection, so the admin API, the dashboard, metrics, jobs and every error aiohttp knows
how to answer stay as they are.

Why: aiohttp's server side was about a fifth of the CPU of a streamed request and most of
the memory of an open stream (its request, parser, writer, payload reader, two tasks); see
``benches/README.md`` (Speed and scale-out).

What the aiohttp path does for these endpoints, done here too: the key check of
``server.auth`` (answered in the endpoint's format), a ``RequestScope`` for the request log
(when observability is on), the body limit (``server.max_body_bytes``: a declared length
past it is handed to aiohttp, which answers 413; a chunked body past it gets 413 here) and
the body timeout (408), the header phase timeout (408; a connection that never sends a byte
is closed), keep-alive with the same idle timeout, ``Expect: 100-continue``, write
back-pressure, a departed client cancelling its request (and so the upstream call), and a
graceful shutdown that lets a request in flight finish within the drain time.

One limit of the replay: a request pipelined behind another in the same read (HTTP/1.1
pipelining, which no SDK or browser uses) can only be served here, since where it starts in
that read is not known; one that would need aiohttp gets a 400 and the connection closes.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import re
import time
from collections.abc import Callable
from email.utils import formatdate
from http import HTTPStatus
from types import ModuleType
from typing import TYPE_CHECKING, Any

import httptools

from hedgerow import ir
from hedgerow.formats import anthropic as anthropic_format
from hedgerow.formats import openai as openai_format
from hedgerow.server.auth import error_format
from hedgerow.server.exchange import Exchange, bad_request, error_exchange

if TYPE_CHECKING:
    from hedgerow.security import KeyGuard
    from hedgerow.server.chat import ChatHandler
    from hedgerow.server.protocol import HeaderLimits

__all__ = ["Lane", "LaneConnection", "client_format_of"]

log = logging.getLogger("hedgerow.server")

# Connection states.
_IDLE = 0  # between requests (or before the first)
_HEAD = 1  # a request's line and headers are arriving
_BODY = 2  # its body is arriving
_HANDING = 3  # going to aiohttp once the request in flight is answered

_CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"
_LAST_CHUNK = b"0\r\n\r\n"


class Lane:
    """What the lane serves and how: the chat handlers by path, and the server's limits."""

    __slots__ = (
        "body_timeout",
        "guard",
        "handlers",
        "keepalive_timeout",
        "limits",
        "max_body",
        "scoped",
    )

    def __init__(
        self,
        handlers: dict[str, ChatHandler],
        *,
        guard: KeyGuard,
        limits: HeaderLimits,
        max_body: int,
        body_timeout: float,
        keepalive_timeout: float,
        scoped: Callable[[], None] | None = None,
    ) -> None:
        self.handlers = {path.encode(): handler for path, handler in handlers.items()}
        self.guard = guard
        self.limits = limits
        self.max_body = max_body
        self.body_timeout = body_timeout
        self.keepalive_timeout = keepalive_timeout
        # Called first in each request's task to give it a scope (the request log's), when
        # observing.
        self.scoped = scoped


class _Message:
    """One request on the lane: its handler, headers and body."""

    __slots__ = (
        "body",
        "chunked",
        "count",
        "expect",
        "handler",
        "head",
        "headers",
        "keep_alive",
        "size",
        "url",
    )

    def __init__(self) -> None:
        self.url = b""
        self.headers: dict[str, str] = {}
        self.head = 16  # the head's size in bytes (the method and version, roughly)
        self.count = 0  # header lines
        self.body: list[bytes] = []
        self.size = 0
        self.handler: ChatHandler | None = None
        self.keep_alive = True
        self.expect = False
        self.chunked = True  # whether the answer may be chunked (not for HTTP/1.0)


def _take_body(message: _Message) -> bytes:
    """The request's body, which ``message`` no longer holds."""
    parts, message.body = message.body, []
    return parts[0] if len(parts) == 1 else b"".join(parts)


class _Date:
    """The ``date`` header's value, formatted once a second."""

    second = 0
    value = ""

    @classmethod
    def now(cls) -> str:
        second = int(time.time())
        if second != cls.second:
            cls.second = second
            cls.value = formatdate(second, usegmt=True)
        return cls.value


_REASONS = {s.value: s.phrase for s in HTTPStatus}
_REQUEST_LINE = re.compile(rb"^[A-Z]+ +(\S+)", re.ASCII)


def client_format_of(prefix: bytes) -> ModuleType:
    """The error format of a request known only by its first bytes."""
    match = _REQUEST_LINE.match(prefix)
    if match is not None and match.group(1).startswith(b"/v1/messages"):
        return anthropic_format
    if b"\nanthropic-version:" in prefix.lower():
        return anthropic_format
    return openai_format


def _head(status: int, headers: dict[str, str], framing: str, close: bool) -> bytes:
    """A response's status line and headers; header values with a line break are dropped
    (they would split the response)."""
    lines = [f"HTTP/1.1 {status} {_REASONS.get(status, 'Unknown')}\r\n"]
    for name, value in headers.items():
        if "\n" in value or "\r" in value:
            log.warning("dropped a response header with a line break: %s", name)
            continue
        lines.append(f"{name}: {value}\r\n")
    lines.append(f"date: {_Date.now()}\r\n{framing}")
    if close:
        lines.append("connection: close\r\n")
    lines.append("\r\n")
    return "".join(lines).encode("latin-1", "replace")


def _whole(exchange: Exchange, close: bool) -> bytes:
    """A response with its whole body (``content-length`` framed), head and body."""
    body = exchange.body or b""
    framing = f"content-length: {len(body)}\r\n"
    return _head(exchange.status, exchange.headers, framing, close) + body


class LaneConnection(asyncio.Protocol):
    """One client connection (see the module). ``server`` is the aiohttp ``web.Server``
    that tracks connections for shutdown and makes the handler a connection is given to."""

    __slots__ = (
        "_closing",
        "_completed_in_read",
        "_drain",
        "_exact",
        "_first",
        "_handed",
        "_head_bytes",
        "_lane",
        "_loop",
        "_message",
        "_parser",
        "_paused",
        "_queue",
        "_raw",
        "_read_paused",
        "_served",
        "_server",
        "_state",
        "_task_handler",
        "_timer",
        "_transport",
    )

    def __init__(self, server: Any, lane: Lane, loop: asyncio.AbstractEventLoop) -> None:
        self._server = server
        self._lane = lane
        self._loop = loop
        self._transport: asyncio.Transport | None = None
        self._parser = httptools.HttpRequestParser(self)
        self._state = _IDLE
        self._timer: asyncio.TimerHandle | None = None
        self._message: _Message | None = None
        # The bytes of the request being read, from its first byte, while it may still
        # go to aiohttp (until its headers are in); ``None`` once it is the lane's.
        self._raw: list[bytes] | None = None
        self._exact = True  # whether ``_raw`` starts where the request starts
        self._completed_in_read = False
        self._head_bytes = 0
        self._queue: collections.deque[_Message] = collections.deque()
        self._task_handler: asyncio.Task[None] | None = None
        self._paused = False  # writing paused by the transport
        self._drain: asyncio.Future[None] | None = None
        self._read_paused = False
        self._closing = False
        self._handed = False
        self._served = 0
        self._first: asyncio.Future[None] | None = None  # what ``shutdown`` waits on

    # -- the connection -----------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not ``asyncio.Transport`` subclasses, only alike.
        self._transport = transport  # type: ignore[assignment]
        self._server.connection_made(self, transport)
        # The first request's headers are due from the start.
        self._arm(self._lane.limits.timeout, self._head_timed_out)

    def connection_lost(self, exc: BaseException | None) -> None:
        self._disarm()
        self._transport = None
        self._queue.clear()
        task = self._task_handler
        if task is not None and not task.done():
            task.cancel()  # the client left: stop its request, and so its upstream call
        waiter = self._drain
        if waiter is not None and not waiter.done():
            waiter.set_exception(ConnectionResetError("the client closed the connection"))
        if self._first is not None and not self._first.done():
            self._first.set_result(None)
        if not self._handed:
            self._server.connection_lost(self, exc)

    def pause_writing(self) -> None:
        self._paused = True

    def resume_writing(self) -> None:
        self._paused = False
        waiter = self._drain
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def eof_received(self) -> bool:
        # A client half-closing after its request still gets the answer; then we close.
        self._closing = True
        return self._task_handler is not None or bool(self._queue)

    def data_received(self, data: bytes) -> None:
        if self._handed or self._transport is None:
            return
        if self._state == _HANDING:
            assert self._raw is not None
            self._raw.append(data)
            return
        if self._state == _IDLE:
            self._raw = [data]
            self._exact = True
            self._head_bytes = 0
        elif self._state == _HEAD and self._raw is not None:
            self._raw.append(data)
        self._completed_in_read = False
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._handing()  # not the lane's (its headers said so already)
        except httptools.HttpParserError:
            message = self._message
            if self._state == _BODY and message is not None:
                self._refuse(message, bad_request("The request body is not valid HTTP framing"))
                return
            if self._state != _HANDING:
                self._handing()  # aiohttp answers what llhttp refused, in its own words
        state = self._state
        if state == _HEAD:
            self._head_bytes += len(data)
            if self._head_bytes > self._lane.limits.max_bytes:
                self._handing()  # aiohttp's handler answers 431 in the client's format
            elif self._timer is None:
                self._arm(self._lane.limits.timeout, self._head_timed_out)
        elif state == _BODY and self._timer is None:
            # Armed only when a body is still due after a read: usually it came whole.
            self._arm(self._lane.body_timeout, self._body_timed_out)
        if self._state == _HANDING and self._task_handler is None and not self._queue:
            self._hand_over()

    # -- llhttp's callbacks ---------------------------------------------------------------------

    def on_message_begin(self) -> None:
        if self._state == _HANDING:
            return
        if self._completed_in_read:
            self._exact = False  # pipelined: this request starts mid-read
        if self._served or self._task_handler is not None:
            # A kept-alive connection's next request: its headers are due from its first
            # byte (the first request's timer runs from the connection's opening), timed
            # once this read is parsed if they are still incomplete (``data_received``).
            self._disarm()
        self._state = _HEAD
        self._message = _Message()

    def on_url(self, url: bytes) -> None:
        message = self._message
        if message is not None and self._state == _HEAD:
            message.url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        message = self._message
        if message is None or self._state != _HEAD:
            return
        headers = message.headers
        limits = self._lane.limits
        message.count += 1
        if len(name) + len(value) + 2 > limits.max_line or message.count > limits.max_count:
            self._handing()  # aiohttp's handler answers 431 in the client's format
            return
        message.head += len(name) + len(value) + 4
        headers[name.decode("latin-1").lower()] = value.decode("latin-1")

    def on_headers_complete(self) -> None:
        message = self._message
        if message is None or self._state != _HEAD:
            return
        parser = self._parser
        path = message.url.partition(b"?")[0]
        handler = self._lane.handlers.get(path)
        lane = self._lane
        if (
            handler is None
            or parser.get_method() != b"POST"
            or parser.should_upgrade()
            or len(message.url) > lane.limits.max_line
            or message.head + len(message.url) > lane.limits.max_bytes
        ):
            self._handing()
            return
        headers = message.headers
        length = headers.get("content-length")
        if length is not None and length.isdigit() and int(length) > lane.max_body:
            self._handing()  # aiohttp answers 413 in the client's format
            return
        if headers.get("content-encoding", "identity").lower() != "identity":
            self._handing()  # a compressed body: aiohttp decompresses it
            return
        message.handler = handler
        message.keep_alive = parser.should_keep_alive()
        message.chunked = parser.get_http_version() != "1.0"
        self._raw = None  # the lane's from here on
        self._state = _BODY
        self._disarm()
        if message.headers.get("expect", "").lower() == "100-continue":
            message.expect = True
            if self._transport is not None and self._task_handler is None:
                self._transport.write(_CONTINUE)

    def on_body(self, body: bytes) -> None:
        message = self._message
        if message is None or self._state != _BODY:
            return
        message.size += len(body)
        if message.size > self._lane.max_body:
            self._refuse(
                message,
                bad_request(
                    f"Request body is larger than the {self._lane.max_body}-byte limit", status=413
                ),
            )
            return
        message.body.append(body)

    def on_message_complete(self) -> None:
        message = self._message
        if message is None or self._state != _BODY:
            return
        self._completed_in_read = True
        self._message = None
        self._state = _IDLE
        self._disarm()
        if self._task_handler is None:
            self._start(message)
        else:
            self._queue.append(message)  # pipelined: answered in order
            if len(self._queue) >= 4:
                self._pause_reading()

    # -- timers ----------------------------------------------------------------------------

    def _arm(self, delay: float, callback: Callable[[], None]) -> None:
        self._timer = self._loop.call_later(delay, callback)

    def _disarm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _head_timed_out(self) -> None:
        self._timer = None
        if self._transport is None or self._task_handler is not None:
            return
        if self._state == _IDLE:
            # Nothing of a request yet: a fresh connection that never spoke, or a kept-alive
            # one that went quiet. Nothing to answer, just close it.
            self._transport.close()
            return
        if self._state == _HEAD:
            # The aiohttp side knows the client's format from the first bytes; here the
            # head is incomplete, so it is read from them as it does.
            fmt = client_format_of(b"".join(self._raw or [])[:2048])
            text = f"The request headers did not arrive within {self._lane.limits.timeout:g}s"
            self._write_error(fmt, bad_request(text, status=408))

    def _body_timed_out(self) -> None:
        self._timer = None
        message = self._message
        if message is not None and self._state == _BODY:
            self._refuse(
                message, bad_request("The request body did not arrive in time", status=408)
            )

    # -- handing a connection to aiohttp -------------------------------------------------------

    def _handing(self) -> None:
        """This request is aiohttp's: stop parsing, keep its bytes, hand over when free."""
        self._state = _HANDING
        self._message = None
        self._disarm()
        if self._task_handler is not None or self._queue:
            self._pause_reading()  # until then: what arrives meanwhile would only pile up

    def _hand_over(self) -> None:
        transport = self._transport
        if transport is None or self._handed or transport.is_closing():
            return  # refused and closing (``_refuse``), or gone
        if not self._exact:
            fmt = openai_format
            info = bad_request(
                "A pipelined request to this endpoint: send it after the previous answer"
            )
            self._write_error(fmt, info)
            return
        self._handed = True
        self._disarm()
        self._server.connection_lost(self, None)
        handler = self._server.aiohttp_handler()
        transport.set_protocol(handler)
        handler.connection_made(transport)
        self._resume_reading()
        raw = b"".join(self._raw or [])
        if raw:
            handler.data_received(raw)

    # -- answering ---------------------------------------------------------------------------

    def _start(self, message: _Message) -> None:
        task = self._loop.create_task(self._answer(message))
        self._task_handler = task
        if self._first is not None and not self._first.done():
            self._first.set_result(None)  # a shutdown waits for this request (``shutdown``)

    async def _answer(self, message: _Message) -> None:
        if self._lane.scoped is not None:
            self._lane.scoped()
        handler = message.handler
        assert handler is not None
        answered = False
        try:
            guard = self._lane.guard
            found = guard.authenticate(message.headers) if guard.enabled else None
            if isinstance(found, ir.ErrorInfo):
                fmt = error_format(message.url.decode("latin-1"), message.headers)
                exchange = error_exchange(fmt, found, should_retry=False)
            else:
                # Passed, not kept: once a stream is under way nothing holds the request's
                # bytes (a long prompt would otherwise stay in memory for the whole stream).
                exchange = await handler.exchange(_take_body(message), found)
            answered = True
            await self._send(exchange, message)
        except (asyncio.CancelledError, ConnectionError):
            self._task_handler = None
            self._close()
            return
        except Exception as exc:
            log.exception("answering a chat request failed")
            if answered:  # part of the answer may be out: the connection cannot go on
                self._task_handler = None
                self._close()
                return
            info = ir.ErrorInfo(
                ir.ErrorKind.SERVER_ERROR, f"hedgerow failed: {type(exc).__name__}", status=500
            )
            with contextlib.suppress(ConnectionError):
                await self._send(error_exchange(handler.fmt, info, should_retry=False), message)
        self._task_handler = None
        self._next()

    async def _send(self, exchange: Exchange, message: _Message) -> None:
        transport = self._transport
        if transport is None:
            raise ConnectionResetError("the client closed the connection")
        close = self._closing = self._closing or not message.keep_alive
        if exchange.stream is None:
            transport.write(_whole(exchange, close))
            self._served += 1
            return
        chunked = message.chunked
        try:
            framing = "transfer-encoding: chunked\r\n" if chunked else ""
            head = _head(exchange.status, exchange.headers, framing, close or not chunked)
            transport.write(head)
            async for data in exchange.stream:
                if not data:
                    continue
                transport.write(b"%x\r\n%b\r\n" % (len(data), data) if chunked else data)
                if self._paused:
                    await self._drained()
            if chunked:
                transport.write(_LAST_CHUNK)
            else:
                self._closing = True  # an HTTP/1.0 stream ends when the connection does
        finally:
            exchange.close()
        self._served += 1

    async def _drained(self) -> None:
        waiter = self._drain = self._loop.create_future()
        try:
            await waiter
        finally:
            self._drain = None

    def _next(self) -> None:
        """After an answer: the next pipelined request, aiohttp, or wait for the next one."""
        transport = self._transport
        if transport is None:
            return
        if self._closing:
            self._close()
            return
        if self._queue:
            self._start(self._queue.popleft())
            return
        self._resume_reading()
        if self._state == _HANDING:
            self._hand_over()
        elif self._state == _IDLE:
            self._disarm()
            self._arm(self._lane.keepalive_timeout, self._head_timed_out)
        elif self._state == _HEAD:
            self._disarm()
            self._arm(self._lane.limits.timeout, self._head_timed_out)
        elif self._state == _BODY and self._message is not None and self._message.expect:
            transport.write(_CONTINUE)

    def _refuse(self, message: _Message, info: ir.ErrorInfo) -> None:
        """Answer ``info`` instead of ``message`` and close: its body is not read."""
        handler = message.handler
        fmt = handler.fmt if handler is not None else openai_format
        self._message = None
        self._state = _HANDING  # read no more of it
        self._raw = []
        self._write_error(fmt, info)

    def _write_error(self, fmt: Any, info: ir.ErrorInfo) -> None:
        """Answer an error and close, unless a request is still being answered (then the
        connection closes after it)."""
        self._disarm()
        self._closing = True
        transport = self._transport
        if transport is None:
            return
        if self._task_handler is not None:
            return
        transport.write(_whole(error_exchange(fmt, info, should_retry=False), close=True))
        self._close()

    def _pause_reading(self) -> None:
        if self._transport is not None and not self._read_paused:
            self._read_paused = True
            self._transport.pause_reading()

    def _resume_reading(self) -> None:
        if self._transport is not None and self._read_paused:
            self._read_paused = False
            self._transport.resume_reading()

    def _close(self) -> None:
        self._disarm()
        transport = self._transport
        if transport is not None and not transport.is_closing():
            transport.close()

    # -- what aiohttp's ``web.Server`` calls at shutdown ------------------------------------

    def close(self) -> None:
        """Stop after the request in flight (the server stops accepting)."""
        self._closing = True
        if self._task_handler is None:
            self._close()

    async def shutdown(self, timeout: float | None = 15.0) -> None:
        """Let the request in flight finish within ``timeout``, then cancel it and close.

        A connection that has not yet sent its first request (one taken from the accept
        queue at shutdown, whose bytes are read on a later turn of the loop) gets until its
        header timeout for that request to arrive, within ``timeout``."""
        self._closing = True
        if self._task_handler is None and self._served == 0 and self._transport is not None:
            self._first = self._loop.create_future()
            limit = self._lane.limits.timeout
            await asyncio.wait(
                {self._first}, timeout=limit if timeout is None else min(timeout, limit)
            )
        task = self._task_handler
        if task is not None and not task.done():
            await asyncio.wait({task}, timeout=timeout)
            if not task.done():
                task.cancel()
                await asyncio.wait({task})
        self._close()
