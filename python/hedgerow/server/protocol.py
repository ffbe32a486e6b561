"""The HTTP connection below the app: limits on the request line and headers.

aiohttp parses the request line and headers before any handler (or middleware) runs, so the
limits on them live in its connection protocol, ``RequestHandler``. hedgerow's subclass adds
what aiohttp lacks and answers in the client's own error format instead of aiohttp's plain
text:

* **a header phase timeout**: the whole header block must arrive within
  ``HeaderLimits.timeout`` seconds of its first byte (of the connection's opening, for the
  first request), or the client gets 408 and the connection is closed; a fresh connection
  that sends nothing at all is closed without an answer. A slowloris client trickling a
  header byte every few seconds holds its socket for ``timeout`` seconds, not forever;
* **a limit on the whole header block** (``max_bytes``), not only on one line and the
  number of lines as aiohttp has (``max_line``, ``max_count``, passed to its parser);
* **431** (``Request Header Fields Too Large``) for any of the three (414 for an oversize
  request line), as OpenAI-shaped error JSON, or Anthropic-shaped for ``/v1/messages`` and
  clients that send ``anthropic-version``. The request was never parsed, so the format is
  read from the first bytes of the request, kept for that purpose.

Hooked in by ``install`` (``create_app`` calls it), so every runner of the app gets it:
``hedgerow serve``, the workers of ``--workers N``, tests' in-process servers. Connections
start on the chat lane (``hedgerow.server.lane``), which keeps the same limits for the chat
endpoints and hands every other request, with its connection, to ``GuardedRequestHandler``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from aiohttp.http_exceptions import BadHttpMessage, LineTooLong
from aiohttp.streams import EMPTY_PAYLOAD, StreamReader
from aiohttp.web_protocol import RequestHandler, _ErrInfo
from aiohttp.web_request import BaseRequest

from hedgerow.config import ServerConfig
from hedgerow.server.exchange import bad_request, error_exchange
from hedgerow.server.lane import Lane, LaneConnection, client_format_of

__all__ = ["HeaderLimits", "install"]

log = logging.getLogger("hedgerow.server")

# The defaults are the config's (``server.header_timeout`` and friends, documented there):
# what the official SDKs send is a few hundred bytes, browsers with cookies a few KiB.
_SERVER_DEFAULTS = ServerConfig()
KEEPALIVE_TIMEOUT = 75.0  # seconds an idle kept-alive connection stays open
# How much of a request's first bytes is kept to tell its format when it is refused.
_PREFIX = 2048


@dataclass(frozen=True)
class HeaderLimits:
    """Limits on a request's line and headers (see the module)."""

    timeout: float = _SERVER_DEFAULTS.header_timeout
    max_bytes: int = _SERVER_DEFAULTS.max_header_bytes
    max_line: int = _SERVER_DEFAULTS.max_header_line
    max_count: int = _SERVER_DEFAULTS.max_header_count

    @classmethod
    def from_config(cls, server: ServerConfig) -> HeaderLimits:
        """The limits of a ``server`` config section."""
        return cls(
            timeout=server.header_timeout,
            max_bytes=server.max_header_bytes,
            max_line=server.max_header_line,
            max_count=server.max_header_count,
        )


class HeaderLimitError(BadHttpMessage):
    """A request refused by hedgerow's own header limits (size, time)."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


class GuardedRequestHandler(RequestHandler):
    """aiohttp's connection protocol with a header-phase timer and a header-block limit;
    header refusals answered in the client's format (see the module)."""

    __slots__ = (
        "_error_prefix",
        "_head_prefix",
        "_head_size",
        "_head_tail",
        "_head_timer",
        "_in_head",
        "_last_payload",
        "_limits",
        "_line_end",
        "_line_too_long",
        "_refused",
    )

    def __init__(self, manager: web.Server, *, limits: HeaderLimits, **kwargs: Any) -> None:
        super().__init__(manager, **kwargs)
        self._limits = limits
        self._in_head = False
        self._head_size = 0
        self._head_prefix = bytearray()
        self._head_tail = b""
        self._line_end: int | None = None  # where the request line ends in the head
        self._head_timer: asyncio.TimerHandle | None = None
        self._last_payload: StreamReader | None = None
        self._error_prefix = b""
        self._line_too_long = False
        self._refused = False

    # -- the header phase ---------------------------------------------------------------------

    def _start_head(self) -> None:
        self._in_head = True
        self._head_size = 0
        self._head_prefix = bytearray()
        self._head_tail = b""
        self._line_end = None
        self._head_timer = self._loop.call_later(self._limits.timeout, self._head_timed_out)

    def _end_head(self) -> None:
        self._in_head = False
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_timed_out(self) -> None:
        self._head_timer = None
        if not self._in_head or self._refused or self.transport is None:
            return
        if self._head_size == 0 and self._request_count == 0:
            # A connection that never sent a byte: nothing to answer, just close it.
            log.debug("closing a connection that sent no request in %.1fs", self._limits.timeout)
            self._end_head()
            self.force_close()
            return
        self._refuse(
            HeaderLimitError(
                f"The request headers did not arrive within {self._limits.timeout:g}s", 408
            )
        )

    def _refuse(self, exc: HeaderLimitError) -> None:
        """Answer ``exc`` instead of the request being received, and read no more of it."""
        self._end_head()
        self._refused = True
        self._remember_head()
        self._request_count += 1
        self._messages.append(
            (_ErrInfo(status=exc.status, exc=exc, message=exc.message), EMPTY_PAYLOAD)
        )
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _remember_head(self) -> None:
        self._error_prefix = bytes(self._head_prefix)
        # Whether the request line itself was too long (rather than a header line).
        self._line_too_long = self._line_end is None or self._line_end > self._limits.max_line

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        self._start_head()  # the first request's headers are due from the start

    def connection_lost(self, exc: BaseException | None) -> None:
        self._end_head()
        self._last_payload = None
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._refused or self._force_close or self._close:
            return
        if (
            not self._in_head
            and data
            and self._payload_parser is None
            and not self._upgraded
            and (self._last_payload is None or self._last_payload.is_eof())
        ):
            self._start_head()  # the next request on a kept-alive connection
        if self._in_head:
            if len(self._head_prefix) < _PREFIX:
                self._head_prefix += data[: _PREFIX - len(self._head_prefix)]
            if self._line_end is None and (at := data.find(b"\n")) >= 0:
                self._line_end = self._head_size + at
            allowed = max(0, self._limits.max_bytes - self._head_size)
            if len(data) > allowed and (self._head_tail + data[:allowed]).find(b"\r\n\r\n") < 0:
                self._refuse(
                    HeaderLimitError(
                        f"The request headers are larger than the {self._limits.max_bytes}"
                        "-byte limit",
                        431,
                    )
                )
                return
            self._head_size += len(data)
            self._head_tail = (self._head_tail + data[-3:])[-3:]
        count = self._request_count
        super().data_received(data)
        if self._request_count != count and self._messages:
            message, payload = self._messages[-1]
            if isinstance(message, _ErrInfo):
                self._remember_head()
            self._last_payload = payload
            self._end_head()

    # -- answers ------------------------------------------------------------------------------

    def handle_error(
        self,
        request: BaseRequest,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        if isinstance(exc, HeaderLimitError):
            status, text = exc.status, exc.message
        elif isinstance(exc, LineTooLong):
            if self._line_too_long:
                status = 414
                text = f"The request line is longer than {self._limits.max_line} bytes"
            else:
                status = 431
                text = f"A request header line is longer than {self._limits.max_line} bytes"
        elif isinstance(exc, BadHttpMessage) and "Too many headers" in exc.message:
            status = 431
            text = f"The request has more than {self._limits.max_count} headers"
        else:
            return super().handle_error(request, status, exc, message)
        log.info("refused a request: %d %s", status, text)
        exchange = error_exchange(
            client_format_of(self._error_prefix),
            bad_request(text, status=status),
            should_retry=False,
        )
        response = web.Response(
            body=exchange.body, status=exchange.status, headers=exchange.headers
        )
        response.force_close()
        return response


class _GuardedServer(web.Server):
    """``web.Server`` whose connections start on the chat lane (``hedgerow.server.lane``),
    which hands what it does not serve to a ``GuardedRequestHandler``; without a lane,
    connections are ``GuardedRequestHandler`` from the start."""

    def __init__(self, *args: Any, limits: HeaderLimits, lane: Lane | None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._limits = limits
        self._lane = lane

    def __call__(self) -> Any:
        if self._lane is not None:
            return LaneConnection(self, self._lane, self._loop)
        return self.aiohttp_handler()

    def aiohttp_handler(self) -> RequestHandler:
        """A connection served by aiohttp (with hedgerow's header limits)."""
        limits = self._limits
        kwargs = {
            # An idle kept-alive connection closes after 75 s (what `web.run_app` sets; a
            # bare AppRunner, as the workers of `--workers N` use, would wait an hour).
            "keepalive_timeout": KEEPALIVE_TIMEOUT,
            **self._kwargs,
            "max_line_size": limits.max_line,
            "max_field_size": limits.max_line,
            "max_headers": limits.max_count,
        }
        return GuardedRequestHandler(self, loop=self._loop, limits=limits, **kwargs)


def install(
    app: web.Application, limits: HeaderLimits, lane: Callable[[], Lane | None] = lambda: None
) -> None:
    """Make every runner of ``app`` serve it through the chat lane that ``lane`` makes
    (called when a runner starts, once the app is complete) and ``GuardedRequestHandler``.

    aiohttp builds its connection ``Server`` in ``Application._make_handler`` (what every
    ``AppRunner`` calls); this wraps that one method on this one app, keeping everything it
    sets up (``handler_args``, the request factory, cancellation) and changing only the
    connection class. Tests pin the aiohttp version this relies on (``tests/security``).
    """
    make_handler = app._make_handler

    def _make_handler(**kwargs: Any) -> web.Server:
        server = make_handler(**kwargs)
        return _GuardedServer(
            server.request_handler,
            request_factory=server.request_factory,
            handler_cancellation=server.handler_cancellation,
            loop=server._loop,
            limits=limits,
            lane=lane(),
            **server._kwargs,
        )

    app._make_handler = _make_handler  # type: ignore[method-assign]
