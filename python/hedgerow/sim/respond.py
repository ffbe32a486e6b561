"""Writing one generated answer, faults included, as a JSON body or an event stream.

The answer is built as IR (``ir.ChatResponse`` or ``ir.StreamEvent``s) and written with the
dialect's ``hedgerow.formats`` module, so the simulator speaks exactly the wire format the
gateway parses — one copy of each dialect. Faults are applied around it: before the headers
(an error status, a reset, a hang, a slow first byte), or inside a stream after a number of
output tokens (an error event, a reset, a hang, a clean cut, a garbage chunk).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import orjson
from aiohttp import web

from hedgerow import ir
from hedgerow.sim.faults import Decision, FaultKind, FaultSpec
from hedgerow.sim.state import ModelConfig
from hedgerow.sim.textgen import Reply, estimate_tokens
from hedgerow.sim.wire import Dialect, Encoder, ErrorReply

__all__ = ["Call", "abort", "answer", "error_response"]

# Awaits until the client goes away (or the simulator stops); supplied by the app.
Hang = Callable[[], Awaitable[None]]

_JSON = "application/json"


class Call:
    """One generation request, parsed and decided, ready to be answered."""

    __slots__ = (
        "chat",
        "client_gone",
        "config",
        "decision",
        "dialect",
        "input_tokens",
        "model",
        "reply",
        "request",
        "request_id",
        "response_id",
        "sse",
        "stream",
    )

    def __init__(
        self,
        *,
        request: web.Request,
        dialect: Dialect,
        chat: ir.ChatRequest,
        model: str,
        stream: bool,
        sse: bool,
        config: ModelConfig,
        decision: Decision,
        reply: Reply,
        input_tokens: int,
        request_id: str,
        response_id: str,
    ) -> None:
        self.request = request
        self.dialect = dialect
        self.chat = chat
        self.model = model
        self.stream = stream
        # Set when the client went away before the answer was complete.
        self.client_gone = False
        self.sse = sse
        self.config = config
        self.decision = decision
        self.reply = reply
        self.input_tokens = input_tokens
        self.request_id = request_id
        self.response_id = response_id


def error_response(reply: ErrorReply) -> web.Response:
    """An HTTP error answer."""
    return web.Response(
        status=reply.status, body=reply.body, headers=reply.headers, content_type=_JSON
    )


def abort(request: web.Request) -> web.Response:
    """Reset the connection (no FIN handshake, no response). The returned object is never
    written: aiohttp skips a response whose transport is gone."""
    transport = request.transport
    if transport is not None:
        transport.abort()
    return web.Response()


async def _sleep(seconds: float) -> None:
    if seconds > 0:
        await asyncio.sleep(seconds)


def _delays(decision: Decision, stage: str) -> float:
    return sum(d.delay for d in decision.delays if d.stage == stage)


def _fault_error(call: Call, spec: FaultSpec) -> ErrorReply:
    status = spec.status
    if status is None:
        status = call.dialect.overload_status
    return call.dialect.error(
        status,
        call.request_id,
        message=spec.message,
        retry_after=spec.retry_after,
        should_retry=spec.should_retry,
        model=call.model,
    )


async def answer(call: Call, hang: Hang) -> web.StreamResponse:
    """Answer ``call``: the faults decided for it, then (unless one ended it) the reply."""
    decision = call.decision
    await _sleep(_delays(decision, "headers"))
    outcome = decision.outcome
    if outcome is not None:
        kind = outcome.kind
        if kind is FaultKind.ERROR:
            return error_response(_fault_error(call, outcome))
        if kind is FaultKind.RESET and outcome.after_tokens is None:
            return abort(call.request)
        if kind is FaultKind.HANG and outcome.after_tokens is None:
            await hang()
            return abort(call.request)
    if call.stream:
        return await _stream(call, hang)
    return await _whole(call, hang)


# -- a whole (non-streamed) answer ------------------------------------------------------------


def _response(call: Call) -> ir.ChatResponse:
    reply = call.reply
    content: list[ir.ContentPart] = list(reply.tool_calls)
    if not content:
        content.append(ir.TextPart(reply.text))
    return ir.ChatResponse(
        id=call.response_id,
        model=call.model,
        content=content,
        finish_reason=reply.finish_reason,
        usage=ir.Usage(input_tokens=call.input_tokens, output_tokens=reply.output_tokens),
        stop_sequence=reply.stop_sequence,
    )


def _generation_time(config: ModelConfig, tokens: int) -> float:
    tps = config.tokens_per_second
    return tokens / tps if tps else 0.0


async def _whole(call: Call, hang: Hang) -> web.StreamResponse:
    config = call.config
    outcome = call.decision.outcome
    await _sleep(
        _delays(call.decision, "content")
        + config.ttfb
        + _generation_time(config, call.reply.output_tokens)
    )
    if outcome is not None and outcome.kind is FaultKind.STREAM_ERROR:
        # A non-streamed request cannot carry an in-stream error: it gets the status.
        return error_response(_fault_error(call, outcome))
    headers = call.dialect.headers(call.request_id)
    if outcome is not None and outcome.kind is FaultKind.MALFORMED:
        return web.Response(body=call.dialect.malformed_body, headers=headers, content_type=_JSON)
    body = orjson.dumps(call.dialect.fmt.render_response(_response(call)))
    if outcome is None:
        return web.Response(body=body, headers=headers, content_type=_JSON)
    # reset / hang / cut after the headers: announce the whole length, send half of it.
    response = web.StreamResponse(headers=headers)
    response.content_type = _JSON
    response.content_length = len(body)
    await response.prepare(call.request)
    await response.write(body[: len(body) // 2])
    if outcome.kind is FaultKind.HANG:
        await hang()
    transport = call.request.transport
    if transport is not None:
        if outcome.kind is FaultKind.CUT:
            transport.close()  # an orderly close, the body simply stops short
        else:
            transport.abort()
    return response


# -- a stream ---------------------------------------------------------------------------------


def _units(reply: Reply, chunk_tokens: int) -> list[tuple[int, list[ir.StreamEvent]]]:
    """The content as (tokens, events) units, one stream write each."""
    units: list[tuple[int, list[ir.StreamEvent]]] = []
    if reply.tool_calls:
        step = 4 * chunk_tokens  # ~ chunk_tokens tokens of JSON per fragment
        for index, tool in enumerate(reply.tool_calls):
            args = tool.arguments
            fragments = [args[i : i + step] for i in range(0, len(args), step)] or [""]
            start: list[ir.StreamEvent] = [ir.ToolCallStart(index, tool.id, tool.name)]
            for n, fragment in enumerate(fragments):
                events = start if n == 0 else []
                events.append(ir.ToolCallDelta(index, fragment))
                units.append((max(1, estimate_tokens(fragment)), events))
            units.append((0, [ir.BlockStop(index)]))
        return units
    pieces = reply.pieces
    for i in range(0, len(pieces), chunk_tokens):
        chunk = pieces[i : i + chunk_tokens]
        units.append((len(chunk), [ir.TextDelta(0, "".join(chunk))]))
    if units:
        units.append((0, [ir.BlockStop(0)]))
    return units


class _Writer:
    """Writes SSE bytes, or — for Gemini's ``streamGenerateContent`` without ``alt=sse`` —
    the same chunks as the elements of one JSON array."""

    __slots__ = ("_first", "_response", "array")

    def __init__(self, response: web.StreamResponse, *, array: bool) -> None:
        self._response = response
        self.array = array
        self._first = True

    async def write(self, data: bytes) -> None:
        if not data:
            return
        if self.array:
            events = data.replace(b"\r\n", b"\n").split(b"\n\n")
            items = [e.removeprefix(b"data: ") for e in events if e.strip()]
            lead = b"[" if self._first else b",\r\n"
            self._first = False
            data = lead + b",\r\n".join(items)
        await self._response.write(data)

    async def finish(self, *, complete: bool) -> None:
        if self.array and complete:
            await self._response.write(b"[]" if self._first else b"]")
        await self._response.write_eof()


async def _stream(call: Call, hang: Hang) -> web.StreamResponse:
    config = call.config
    reply = call.reply
    outcome = call.decision.outcome
    encoder: Encoder = call.dialect.fmt.StreamEncoder(
        id=call.response_id, model=call.model, include_usage=call.chat.include_usage
    )
    response = web.StreamResponse(headers=call.dialect.headers(call.request_id))
    response.content_type = "text/event-stream" if call.sse else _JSON
    if call.sse:
        response.headers["Cache-Control"] = "no-cache"
    await response.prepare(call.request)
    writer = _Writer(response, array=not call.sse)
    start = ir.MessageStart(
        id=call.response_id, model=call.model, usage=ir.Usage(input_tokens=call.input_tokens)
    )
    units = _units(reply, config.chunk_tokens)
    end = ir.MessageEnd(
        finish_reason=reply.finish_reason,
        usage=ir.Usage(input_tokens=call.input_tokens, output_tokens=reply.output_tokens),
        stop_sequence=reply.stop_sequence,
    )
    wait = _delays(call.decision, "content") + config.ttfb
    tps = config.tokens_per_second
    cut_at = None if outcome is None else (outcome.after_tokens or 0)
    try:
        if cut_at is None and not tps and wait <= 0:
            # The common, benchmark case: everything in one write.
            data = [encoder.encode(start)]
            data.extend(encoder.encode(e) for _, events in units for e in events)
            data.append(encoder.encode(end))
            await writer.write(b"".join(data))
            await writer.finish(complete=True)
            return response
        await writer.write(encoder.encode(start))
        await _sleep(wait)
        loop = asyncio.get_running_loop()
        began = loop.time()
        sent = 0
        for tokens, events in units:
            if cut_at is not None and sent >= cut_at and tokens:
                break
            if tps and tokens:
                await _sleep(began + (sent + tokens) / tps - loop.time())
            await writer.write(b"".join(encoder.encode(e) for e in events))
            sent += tokens
        else:
            if outcome is None:
                await writer.write(encoder.encode(end))
                await writer.finish(complete=True)
                return response
        assert outcome is not None
        await _stream_fault(call, outcome, encoder, writer, hang)
    except ConnectionError:
        call.client_gone = True  # the client went away; nothing left to tell it
    return response


async def _stream_fault(
    call: Call, outcome: FaultSpec, encoder: Encoder, writer: _Writer, hang: Hang
) -> None:
    kind = outcome.kind
    if kind is FaultKind.STREAM_ERROR:
        info = _fault_error(call, outcome).info
        await writer.write(encoder.encode(ir.StreamError(info)))
        await writer.finish(complete=True)
    elif kind is FaultKind.MALFORMED:
        await writer.write(call.dialect.malformed_event)
        await writer.finish(complete=False)
    elif kind is FaultKind.CUT:
        await writer.finish(complete=False)
    else:
        if kind is FaultKind.HANG:
            await hang()
        abort(call.request)
