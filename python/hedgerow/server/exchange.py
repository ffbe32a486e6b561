"""One client exchange on a chat endpoint, independent of the HTTP library carrying it.

The aiohttp server and the in-process SDK transport (``hedgerow.sdk``) both turn a request
body into an ``Exchange`` here, so the two share one copy of parsing, routing, passthrough
and error rendering.

When the serving provider speaks the client's format the upstream bytes go through untouched
(the fast path); otherwise IR events are encoded in the client's format.
"""

from __future__ import annotations

import itertools
import os
import secrets
import time
from collections.abc import AsyncIterator, Callable
from types import ModuleType
from typing import Any

import orjson

from hedgerow import ir
from hedgerow.formats import FormatError
from hedgerow.routing import Gateway, GatewayError, Served, StreamReply
from hedgerow.routing.degrade import QueuedJob
from hedgerow.security import KeyGuard, KeyRecord
from hedgerow.tokens import estimate_request_tokens

__all__ = ["Exchange", "bad_request", "chat_exchange", "error_exchange", "parse_json_body"]

SSE_HEADERS = {
    "content-type": "text/event-stream; charset=utf-8",
    "cache-control": "no-cache",
    "x-accel-buffering": "no",
}
JSON_HEADERS = {"content-type": "application/json"}
# The official SDKs honour retry-after only up to 60 s; beyond that they ignore it.
_MAX_RETRY_AFTER = 60


class Exchange:
    """A response to send: status, headers, and either a body or a stream of bytes."""

    __slots__ = ("body", "headers", "on_close", "reply", "status", "stream")

    def __init__(
        self,
        status: int,
        headers: dict[str, str],
        body: bytes | None = None,
        stream: AsyncIterator[bytes] | None = None,
        reply: StreamReply | None = None,
        on_close: Callable[[], None] | None = None,
    ) -> None:
        self.status = status
        self.headers = headers
        self.body = body
        self.stream = stream
        self.reply = reply
        self.on_close = on_close

    def close(self) -> None:
        """Stop the upstream call behind a stream (the client went away, or it ended)."""
        if self.reply is not None:
            self.reply.close()
        if self.on_close is not None:
            self.on_close()


class _Ids:
    """Unique ids without a system call per request: a random per-process prefix and a
    counter (24 hex digits in all, the shape the SDKs show). ``secrets.token_hex`` per request
    cost more than the whole router; ids identify, they do not authenticate. A forked child
    draws a prefix of its own."""

    prefix = secrets.token_hex(6)
    counter = itertools.count(1)

    @classmethod
    def reseed(cls) -> None:
        cls.prefix = secrets.token_hex(6)
        cls.counter = itertools.count(1)


os.register_at_fork(after_in_child=_Ids.reseed)


def _next_id() -> str:
    return f"{_Ids.prefix}{next(_Ids.counter) & 0xFFFFFFFFFFFF:012x}"


def new_request_id() -> str:
    """A fresh request id (sent as ``x-request-id`` and ``request-id``)."""
    return "req_" + _next_id()


def bad_request(message: str, param: str | None = None, status: int = 400) -> ir.ErrorInfo:
    """The client's own mistake, with the field to fix."""
    return ir.ErrorInfo(ir.ErrorKind.BAD_REQUEST, message, status=status, param=param)


def error_exchange(
    fmt: ModuleType,
    info: ir.ErrorInfo,
    *,
    should_retry: bool | None = None,
    request_id: str | None = None,
    headers: dict[str, str] | None = None,
) -> Exchange:
    """An error in the client's format.

    ``should_retry=False`` sends ``x-should-retry: false`` (hedgerow already retried and
    failed over, or the error is the client's own); a known ``retry_after`` is passed on,
    capped at what the SDKs honour.
    """
    out = {**JSON_HEADERS, **(headers or {})}
    if should_retry is not None:
        out["x-should-retry"] = "true" if should_retry else "false"
    if info.retry_after is not None:
        out["retry-after"] = str(min(_MAX_RETRY_AFTER, max(0, round(info.retry_after))))
    if request_id:
        out["x-request-id"] = request_id
        out["request-id"] = request_id
    body = fmt.render_error(info, request_id=request_id)
    return Exchange(fmt.error_status(info), out, orjson.dumps(body))


def parse_json_body(data: bytes) -> dict[str, Any]:
    """A request body as a JSON object; ``GatewayError`` (400) otherwise."""
    if not data:
        raise GatewayError(bad_request("Request body is empty: a JSON object is required"))
    try:
        body = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise GatewayError(bad_request(f"Request body is not valid JSON: {exc}")) from None
    if not isinstance(body, dict):
        raise GatewayError(bad_request("Request body must be a JSON object"))
    return body


def _parse_chat(fmt: ModuleType, body: dict[str, Any], max_messages: int) -> ir.ChatRequest:
    messages = body.get("messages")
    if isinstance(messages, list) and len(messages) > max_messages:
        raise GatewayError(
            bad_request(
                f"messages: at most {max_messages} messages are accepted",
                param="messages",
                status=413,
            )
        )
    try:
        request: ir.ChatRequest = fmt.parse_request(body)
    except FormatError as exc:
        raise GatewayError(bad_request(exc.message, exc.param)) from None
    return request


class _Ticket:
    """One request's bookkeeping, settled once however it ends: its key's in-flight count
    and spend, and the ``request`` event."""

    __slots__ = (
        "admitted",
        "done",
        "fmt",
        "gateway",
        "guard",
        "principal",
        "request_id",
        "route",
        "started",
    )

    def __init__(
        self,
        gateway: Gateway,
        fmt: ModuleType,
        guard: KeyGuard | None,
        principal: KeyRecord | None,
    ) -> None:
        self.gateway = gateway
        self.fmt = fmt
        self.guard = guard
        self.principal = principal
        self.request_id = new_request_id()
        self.started = time.monotonic()
        self.route: str | None = None
        self.admitted = False
        self.done = False

    def admit(self, chat: ir.ChatRequest) -> ir.ErrorInfo | None:
        """The key's own limits for this route; ``None`` when the request may go on."""
        self.route = chat.model
        if self.guard is None or self.principal is None:
            return None
        tokens = estimate_request_tokens(chat) if self.principal.tpm else 0
        denied = self.guard.admit(self.principal, chat.model, tokens)
        self.admitted = denied is None
        return denied

    @property
    def shared(self) -> bool:
        """Whether the key's limits live in Redis (instances share them): ``admit_shared``."""
        return (
            self.principal is not None and self.guard is not None and self.guard.remote is not None
        )

    async def admit_shared(self, chat: ir.ChatRequest) -> ir.ErrorInfo | None:
        """``admit`` with the key's RPM/TPM shared between instances."""
        self.route = chat.model
        assert self.guard is not None and self.principal is not None
        tokens = estimate_request_tokens(chat) if self.principal.tpm else 0
        denied = await self.guard.admit_shared(self.principal, chat.model, tokens)
        self.admitted = denied is None
        return denied

    def finish(
        self,
        status: int,
        served: Served | None = None,
        error: ir.ErrorInfo | None = None,
        attempts: int = 0,
        usage: ir.Usage | None = None,
        stream: bool = False,
    ) -> None:
        """Settle the request (only the first call counts)."""
        if self.done:
            return
        self.done = True
        if self.admitted:
            self.admitted = False
            assert self.guard is not None and self.principal is not None
            self.guard.release(self.principal)
            self.guard.charge(self.principal, served.deployment if served else None, usage)
        events = self.gateway.events
        if not events.active:
            return
        events.publish(
            "request",
            self.route,
            served.deployment if served else None,
            {
                "request_id": self.request_id,
                "key": self.principal.name if self.principal else None,
                "format": self.fmt.NAME,
                "stream": stream,
                "status": status,
                "latency": time.monotonic() - self.started,
                "attempts": served.attempts if served else attempts,
                "tier": ("minimal" if served.minimal else served.tier) if served else None,
                "hedged": served.hedged if served else False,
                "error": error.kind.value if error else None,
                "input_tokens": usage.input_tokens if usage else None,
                "output_tokens": usage.output_tokens if usage else None,
            },
        )


async def chat_exchange(
    gateway: Gateway,
    fmt: ModuleType,
    data: bytes,
    *,
    max_messages: int = 10_000,
    guard: KeyGuard | None = None,
    principal: KeyRecord | None = None,
) -> Exchange:
    """Answer one chat request body of the client format ``fmt``. Never raises for bad input.

    ``principal`` is the caller's authenticated key (``None`` in local mode); ``guard``
    applies its routes, limits and budget. When anyone listens to the gateway's events, one
    ``request`` event per request tells what happened to it.
    """
    ticket = _Ticket(gateway, fmt, guard, principal)
    request_id = ticket.request_id
    try:
        body = parse_json_body(data)
        chat = _parse_chat(fmt, body, max_messages)
        denied = await ticket.admit_shared(chat) if ticket.shared else ticket.admit(chat)
        if denied is not None:
            raise GatewayError(denied)
        if chat.stream:
            reply = await gateway.open_stream(chat, client_format=fmt.NAME, raw=body)
            headers = {**SSE_HEADERS, **reply.served.headers(), "x-request-id": request_id}
            # The stream keeps what it needs of the request, not the request (its messages
            # may be large, and a stream may last minutes).
            stream = _encode_stream(fmt, chat.include_usage, reply, ticket)
            # A stream never read (the client left first) is settled when it is closed.
            settle = lambda: ticket.finish(499, reply.served, stream=True)  # noqa: E731
            return Exchange(200, headers, stream=stream, reply=reply, on_close=settle)
        result = await gateway.complete(chat, client_format=fmt.NAME, raw=body)
    except GatewayError as exc:
        exchange = error_exchange(
            fmt, exc.info, should_retry=exc.should_retry, request_id=request_id
        )
        ticket.finish(exchange.status, None, exc.info, exc.attempts)
        return exchange
    except QueuedJob as queued:
        # The route degrades to `queue`: accepted as a background job, answered later.
        body = {
            "id": queued.job_id,
            "object": "hedgerow.job",
            "status": "queued",
            "route": queued.route,
        }
        headers = {**JSON_HEADERS, "x-hedgerow-job-id": queued.job_id, "x-request-id": request_id}
        ticket.finish(202)
        return Exchange(202, headers, orjson.dumps(body))
    except BaseException:
        ticket.finish(500)
        raise
    payload = result.raw
    if payload is None:
        payload = orjson.dumps(fmt.render_response(result.response))
    headers = {**JSON_HEADERS, **result.served.headers(), "x-request-id": request_id}
    ticket.finish(200, result.served, usage=result.response.usage)
    return Exchange(200, headers, payload)


async def _encode_stream(
    fmt: ModuleType, include_usage: bool, reply: StreamReply, ticket: _Ticket
) -> AsyncIterator[bytes]:
    """The stream's bytes for the client: upstream bytes on the fast path, else re-encoded.

    A failure after the first content ends the stream with the format's error event (the
    upstream's own on the fast path), never a clean-looking end.
    """
    served = reply.served
    passthrough = served.passthrough
    # The passthrough path forwards the upstream's bytes: an encoder is made only if needed.
    encoder: Any = None

    def encode(events: list[ir.StreamEvent]) -> bytes:
        nonlocal encoder
        if encoder is None:
            encoder = fmt.StreamEncoder(
                id=_response_id(fmt.NAME), model=served.model, include_usage=include_usage
            )
        return b"".join([encoder.encode(e) for e in events])

    failed: ir.StreamError | None = None
    usage: ir.Usage | None = None
    try:
        async for raw, events in reply.chunks():
            last = events[-1] if events else None
            if isinstance(last, ir.MessageEnd):
                usage = last.usage
            failed = last if isinstance(last, ir.StreamError) else None
            if passthrough and raw is not None:
                # Garbage must not reach the client: a chunk that did not decode is replaced
                # by an error event of the client's format (the stream is over either way).
                if failed is not None and failed.error.kind is ir.ErrorKind.MALFORMED:
                    out = encode([failed])
                else:
                    out = raw
            else:
                out = encode(events)
            if out:
                yield out
            if failed is not None:
                break
    finally:
        ticket.finish(200, served, failed.error if failed else None, usage=usage, stream=True)


def _response_id(fmt_name: str) -> str:
    if fmt_name == "anthropic":
        return "msg_" + _next_id()
    return "chatcmpl-" + _next_id()
