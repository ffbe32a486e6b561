"""One client exchange on a chat endpoint, independent of the HTTP library carrying it.

The aiohttp server and the in-process SDK transport (``hedgerow.sdk``) both turn a request
body into an ``Exchange`` here, so the two share one copy of parsing, routing, passthrough
and error rendering.

When the serving provider speaks the client's format the upstream bytes go through untouched
(the fast path); otherwise IR events are encoded in the client's format.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import AsyncIterator
from types import ModuleType
from typing import Any

import orjson

from hedgerow import ir
from hedgerow.formats import FormatError
from hedgerow.routing import Gateway, GatewayError, Served, StreamReply
from hedgerow.routing.degrade import QueuedJob

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

    __slots__ = ("body", "headers", "reply", "status", "stream")

    def __init__(
        self,
        status: int,
        headers: dict[str, str],
        body: bytes | None = None,
        stream: AsyncIterator[bytes] | None = None,
        reply: StreamReply | None = None,
    ) -> None:
        self.status = status
        self.headers = headers
        self.body = body
        self.stream = stream
        self.reply = reply

    def close(self) -> None:
        """Stop the upstream call behind a stream (the client went away)."""
        if self.reply is not None:
            self.reply.close()


def new_request_id() -> str:
    """A fresh request id (sent as ``x-request-id`` and ``request-id``)."""
    return "req_" + secrets.token_hex(12)


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


async def chat_exchange(
    gateway: Gateway, fmt: ModuleType, data: bytes, *, max_messages: int = 10_000
) -> Exchange:
    """Answer one chat request body of the client format ``fmt``. Never raises for bad input.

    When anyone listens to the gateway's events, one ``request`` event per request tells
    what happened to it (for the request log and the metrics).
    """
    request_id = new_request_id()
    started = time.monotonic()
    route: str | None = None
    try:
        body = parse_json_body(data)
        chat = _parse_chat(fmt, body, max_messages)
        route = chat.model
        if chat.stream:
            reply = await gateway.open_stream(chat, client_format=fmt.NAME, raw=body)
            headers = {**SSE_HEADERS, **reply.served.headers(), "x-request-id": request_id}
            stream = _encode_stream(fmt, chat, reply, gateway, request_id, started)
            return Exchange(200, headers, stream=stream, reply=reply)
        result = await gateway.complete(chat, client_format=fmt.NAME, raw=body)
    except GatewayError as exc:
        exchange = error_exchange(
            fmt, exc.info, should_retry=exc.should_retry, request_id=request_id
        )
        _request_event(
            gateway, fmt, request_id, started, route, None, exchange.status, exc.info, exc.attempts
        )
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
        _request_event(gateway, fmt, request_id, started, route, None, 202, None, 0)
        return Exchange(202, headers, orjson.dumps(body))
    payload = result.raw
    if payload is None:
        payload = orjson.dumps(fmt.render_response(result.response))
    headers = {**JSON_HEADERS, **result.served.headers(), "x-request-id": request_id}
    _request_event(
        gateway, fmt, request_id, started, route, result.served, 200, None, 0, result.response.usage
    )
    return Exchange(200, headers, payload)


def _request_event(
    gateway: Gateway,
    fmt: ModuleType,
    request_id: str,
    started: float,
    route: str | None,
    served: Served | None,
    status: int,
    error: ir.ErrorInfo | None,
    attempts: int,
    usage: ir.Usage | None = None,
    stream: bool = False,
) -> None:
    if not gateway.events.active:
        return
    gateway.events.emit(
        "request",
        route,
        served.deployment if served else None,
        request_id=request_id,
        format=fmt.NAME,
        stream=stream,
        status=status,
        latency=time.monotonic() - started,
        attempts=served.attempts if served else attempts,
        tier=("minimal" if served.minimal else served.tier) if served else None,
        hedged=served.hedged if served else False,
        error=error.kind.value if error else None,
        input_tokens=usage.input_tokens if usage else None,
        output_tokens=usage.output_tokens if usage else None,
    )


async def _encode_stream(
    fmt: ModuleType,
    chat: ir.ChatRequest,
    reply: StreamReply,
    gateway: Gateway,
    request_id: str,
    started: float,
) -> AsyncIterator[bytes]:
    """The stream's bytes for the client: upstream bytes on the fast path, else re-encoded.

    A failure after the first content ends the stream with the format's error event (the
    upstream's own on the fast path), never a clean-looking end.
    """
    served = reply.served
    encoder = fmt.StreamEncoder(
        id=_response_id(fmt.NAME), model=served.model, include_usage=chat.include_usage
    )
    passthrough = served.passthrough
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
                    out = encoder.encode(failed)
                else:
                    out = raw
            else:
                out = b"".join([encoder.encode(e) for e in events])
            if out:
                yield out
            if failed is not None:
                break
    finally:
        _request_event(
            gateway,
            fmt,
            request_id,
            started,
            served.route,
            served,
            200,
            failed.error if failed else None,
            0,
            usage,
            stream=True,
        )


def _response_id(fmt_name: str) -> str:
    if fmt_name == "anthropic":
        return "msg_" + secrets.token_hex(12)
    return "chatcmpl-" + secrets.token_hex(12)
