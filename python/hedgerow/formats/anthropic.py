"""The Anthropic Messages dialect, both directions (``POST /v1/messages``).

Mapping decisions (IR <-> wire)
-------------------------------
* ``system`` as a list of text blocks joins into one IR string with a blank line between
  blocks; ``cache_control`` (on system, messages and tools) is not carried by the IR and is
  lost in translation (the same-format fast path passes bytes through untouched).
* ``redacted_thinking`` blocks are dropped: their encrypted payload means nothing to another
  provider. ``thinking`` blocks are kept with their signature; a thinking part without a
  signature (reasoning from another provider) is not rendered, as the API would refuse it.
* ``tool_use.input`` (an object) becomes IR argument *text* (compact JSON); rendering parses
  it back, and arguments that are not a JSON object are a ``FormatError``.
* ``tool_choice``: auto <-> auto, any <-> required, tool <-> tool, none <-> none;
  ``disable_parallel_tool_use: true`` <-> ``parallel_tool_calls = False``.
* ``metadata.user_id`` <-> ``user``. Streams always carry usage, so a streamed request
  parses with ``include_usage = True``.
* ``max_tokens`` is required on the wire: ``render_request`` uses ``default_max_tokens`` when
  the IR has none. ``temperature`` is clamped to Anthropic's 0..1 (OpenAI allows up to 2).
* ``stop_reason``: end_turn <-> stop, max_tokens <-> length, tool_use <-> tool_calls,
  stop_sequence <-> stop_sequence (with ``stop_sequence``), refusal <-> content_filter,
  model_context_window_exceeded <-> context_window, pause_turn -> other (other -> end_turn).
* Not carried: ``thinking`` (the request's budget), document/search-result blocks and server
  tools (refused with ``FormatError``), citations.
"""

from __future__ import annotations

from typing import Any

import orjson

from hedgerow import ir
from hedgerow.formats._common import (
    FormatError,
    as_dict,
    as_list,
    as_str,
    classify,
    decode_arguments,
    dump_json,
    fail,
    int_or_zero,
    join_system,
    kept_client_status,
    merge_usage,
    opt_bool,
    opt_dict,
    opt_int,
    opt_list,
    opt_num,
    opt_str,
    parse_error_body,
    req_dict,
    req_int,
    req_list,
    req_str,
    str_or_empty,
)
from hedgerow.formats.sse import BlockKind, QuietDialect, SSEEvent, SSEStreamDecoder, native_quiet

__all__ = [
    "DEFAULT_MAX_TOKENS",
    "NAME",
    "QUIET_DIALECT",
    "StreamDecoder",
    "StreamEncoder",
    "classify_error",
    "error_status",
    "parse_error",
    "parse_request",
    "parse_response",
    "quiet_events",
    "render_error",
    "render_request",
    "render_response",
]

NAME = "anthropic"

DEFAULT_MAX_TOKENS = 4096
"""``max_tokens`` sent when the IR has none (the field is required by Anthropic)."""

_STOP_FROM_WIRE: dict[str, ir.FinishReason] = {
    "end_turn": "stop",
    "max_tokens": "length",
    "tool_use": "tool_calls",
    "stop_sequence": "stop_sequence",
    "refusal": "content_filter",
    "model_context_window_exceeded": "context_window",
    "pause_turn": "other",
}

_STOP_TO_WIRE: dict[str, str] = {
    "stop": "end_turn",
    "length": "max_tokens",
    "tool_calls": "tool_use",
    "stop_sequence": "stop_sequence",
    "content_filter": "refusal",
    "context_window": "model_context_window_exceeded",
    "other": "end_turn",
}

_CHOICE_FROM_WIRE: dict[str, ir.ToolChoice] = {
    "auto": ir.ToolChoice("auto"),
    "any": ir.ToolChoice("required"),
    "none": ir.ToolChoice("none"),
}

_ROLES: dict[str, ir.Role] = {"user": "user", "assistant": "assistant"}

_CHOICE_TO_WIRE = {"auto": "auto", "required": "any", "none": "none", "tool": "tool"}


# ---------------------------------------------------------------------------------------------
# Requests


def parse_request(body: dict[str, Any]) -> ir.ChatRequest:
    """A Messages request body -> IR. ``FormatError`` names the bad field, with Anthropic's
    own wording for the common cases (``max_tokens: Field required``)."""
    if type(body) is not dict:
        raise FormatError("request body must be a JSON object")
    model = req_str(body, "model")
    max_tokens = req_int(body, "max_tokens")
    messages = [_parse_message(item, i) for i, item in enumerate(req_list(body, "messages"))]
    stream = bool(opt_bool(body, "stream"))
    tools = _parse_tools(opt_list(body, "tools"))
    tool_choice, parallel = _parse_tool_choice(opt_dict(body, "tool_choice"))
    stop = opt_list(body, "stop_sequences")
    metadata = opt_dict(body, "metadata")
    return ir.ChatRequest(
        model=model,
        messages=messages,
        system=_parse_system(body.get("system")),
        max_tokens=max_tokens,
        temperature=opt_num(body, "temperature"),
        top_p=opt_num(body, "top_p"),
        top_k=opt_int(body, "top_k"),
        stop=None
        if stop is None
        else [as_str(s, f"stop_sequences.{i}") for i, s in enumerate(stop)],
        tools=tools,
        tool_choice=tool_choice,
        parallel_tool_calls=parallel,
        stream=stream,
        include_usage=stream,
        user=opt_str(metadata, "user_id", "metadata") if metadata is not None else None,
    )


def _parse_system(value: Any) -> str | None:
    if value is None or type(value) is str:
        return value
    pieces: list[str] = []
    for i, item in enumerate(as_list(value, "system")):
        block = as_dict(item, f"system.{i}")
        if block.get("type") != "text":
            fail(f"system.{i}.type", "Input should be 'text'")
        pieces.append(req_str(block, "text", f"system.{i}"))
    return join_system(pieces)


def _parse_message(item: Any, i: int) -> ir.Message:
    prefix = f"messages.{i}"
    message = as_dict(item, prefix)
    role = _ROLES.get(req_str(message, "role", prefix))
    if role is None:
        fail(prefix + ".role", "Input should be 'user' or 'assistant'")
    content = message.get("content")
    if type(content) is str:
        return ir.Message(role, [ir.TextPart(content)])
    param = prefix + ".content"
    if content is None:
        fail(param, "Field required")
    parts: list[ir.ContentPart] = []
    for j, block in enumerate(as_list(content, param)):
        part = _parse_block(as_dict(block, f"{param}.{j}"), f"{param}.{j}")
        if part is not None:
            parts.append(part)
    return ir.Message(role, parts)


def _parse_block(block: dict[str, Any], param: str) -> ir.ContentPart | None:
    kind = req_str(block, "type", param)
    if kind == "text":
        return ir.TextPart(req_str(block, "text", param))
    if kind == "image":
        return _parse_image(block, param)
    if kind == "tool_use":
        tool_input = opt_dict(block, "input", param)
        return ir.ToolCallPart(
            id=req_str(block, "id", param),
            name=req_str(block, "name", param),
            arguments=dump_json(tool_input if tool_input is not None else {}),
        )
    if kind == "tool_result":
        return ir.ToolResultPart(
            tool_call_id=req_str(block, "tool_use_id", param),
            content=_parse_result_content(block.get("content"), param + ".content"),
            is_error=bool(opt_bool(block, "is_error", param)),
        )
    if kind == "thinking":
        return ir.ThinkingPart(
            text=req_str(block, "thinking", param), signature=opt_str(block, "signature", param)
        )
    if kind == "redacted_thinking":
        return None
    fail(param + ".type", f"unsupported content block type '{kind}'")


def _parse_image(block: dict[str, Any], param: str) -> ir.ImagePart:
    source = req_dict(block, "source", param)
    source_param = param + ".source"
    kind = req_str(source, "type", source_param)
    if kind == "base64":
        return ir.ImagePart(
            media_type=req_str(source, "media_type", source_param),
            data=req_str(source, "data", source_param),
        )
    if kind == "url":
        return ir.ImagePart(url=req_str(source, "url", source_param))
    fail(source_param + ".type", f"unsupported image source type '{kind}'")


def _parse_result_content(content: Any, param: str) -> list[ir.TextPart | ir.ImagePart]:
    if content is None:
        return []
    if type(content) is str:
        return [ir.TextPart(content)]
    parts: list[ir.TextPart | ir.ImagePart] = []
    for j, item in enumerate(as_list(content, param)):
        block = as_dict(item, f"{param}.{j}")
        kind = req_str(block, "type", f"{param}.{j}")
        if kind == "text":
            parts.append(ir.TextPart(req_str(block, "text", f"{param}.{j}")))
        elif kind == "image":
            parts.append(_parse_image(block, f"{param}.{j}"))
        else:
            fail(f"{param}.{j}.type", f"unsupported tool result block type '{kind}'")
    return parts


def _parse_tools(raw: list[Any] | None) -> list[ir.Tool] | None:
    if raw is None:
        return None
    tools: list[ir.Tool] = []
    for i, item in enumerate(raw):
        param = f"tools.{i}"
        tool = as_dict(item, param)
        kind = tool.get("type")
        if kind is not None and kind != "custom":
            fail(param + ".type", f"unsupported tool type '{kind}'")
        tools.append(
            ir.Tool(
                name=req_str(tool, "name", param),
                description=opt_str(tool, "description", param),
                parameters=req_dict(tool, "input_schema", param),
            )
        )
    return tools


def _parse_tool_choice(raw: dict[str, Any] | None) -> tuple[ir.ToolChoice | None, bool | None]:
    if raw is None:
        return None, None
    kind = req_str(raw, "type", "tool_choice")
    disable = opt_bool(raw, "disable_parallel_tool_use", "tool_choice")
    parallel = None if disable is None else not disable
    if kind == "tool":
        return ir.ToolChoice("tool", req_str(raw, "name", "tool_choice")), parallel
    choice = _CHOICE_FROM_WIRE.get(kind)
    if choice is None:
        fail("tool_choice.type", "Input should be 'auto', 'any', 'tool' or 'none'")
    return ir.ToolChoice(choice.mode), parallel


def render_request(
    request: ir.ChatRequest, model: str, *, default_max_tokens: int = DEFAULT_MAX_TOKENS
) -> dict[str, Any]:
    """IR -> a Messages request body for ``model``.

    Only what the IR sets is sent, except ``max_tokens``, which Anthropic requires
    (``default_max_tokens`` when the IR has none). ``tools`` only when non-empty, with
    ``tool_choice`` only alongside them; ``parallel_tool_calls = False`` becomes
    ``tool_choice.disable_parallel_tool_use`` (with ``type: auto`` if there was no choice).
    Messages that render empty (an assistant turn that held only foreign reasoning) are left
    out, since Anthropic refuses empty content.
    """
    body: dict[str, Any] = {
        "model": model,
        "max_tokens": request.max_tokens if request.max_tokens is not None else default_max_tokens,
        "messages": _render_messages(request.messages),
    }
    if request.system is not None:
        body["system"] = request.system
    if request.temperature is not None:
        body["temperature"] = min(max(request.temperature, 0.0), 1.0)
    if request.top_p is not None:
        body["top_p"] = request.top_p
    if request.top_k is not None:
        body["top_k"] = request.top_k
    if request.stop is not None:
        body["stop_sequences"] = list(request.stop)
    if request.tools:
        body["tools"] = [_render_tool(tool) for tool in request.tools]
        choice = request.tool_choice
        wire_choice: dict[str, Any] | None = None
        if choice is not None:
            wire_choice = {"type": _CHOICE_TO_WIRE[choice.mode]}
            if choice.mode == "tool":
                wire_choice["name"] = choice.name
        if request.parallel_tool_calls is False and (choice is None or choice.mode != "none"):
            wire_choice = wire_choice or {"type": "auto"}
            wire_choice["disable_parallel_tool_use"] = True
        if wire_choice is not None:
            body["tool_choice"] = wire_choice
    if request.stream:
        body["stream"] = True
    if request.user is not None:
        body["metadata"] = {"user_id": request.user}
    return body


def _render_tool(tool: ir.Tool) -> dict[str, Any]:
    rendered: dict[str, Any] = {"name": tool.name}
    if tool.description is not None:
        rendered["description"] = tool.description
    rendered["input_schema"] = tool.parameters or {"type": "object", "properties": {}}
    return rendered


def _render_image(part: ir.ImagePart) -> dict[str, Any]:
    if part.data is not None:
        source = {"type": "base64", "media_type": part.media_type or "image/png", "data": part.data}
        return {"type": "image", "source": source}
    return {"type": "image", "source": {"type": "url", "url": part.url or ""}}


def _render_messages(messages: list[ir.Message]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for i, message in enumerate(messages):
        results: list[dict[str, Any]] = []
        blocks: list[dict[str, Any]] = []
        for j, part in enumerate(message.content):
            if type(part) is ir.TextPart:
                if part.text:  # Anthropic refuses empty text blocks
                    blocks.append({"type": "text", "text": part.text})
            elif type(part) is ir.ToolCallPart:
                blocks.append(
                    {
                        "type": "tool_use",
                        "id": part.id,
                        "name": part.name,
                        "input": decode_arguments(part.arguments, f"messages.{i}.content.{j}"),
                    }
                )
            elif type(part) is ir.ToolResultPart:
                # Tool results must lead their user turn; the rest follows in order.
                results.append(_render_result(part))
            elif type(part) is ir.ImagePart:
                blocks.append(_render_image(part))
            elif type(part) is ir.ThinkingPart and part.signature is not None:
                blocks.append(
                    {"type": "thinking", "thinking": part.text, "signature": part.signature}
                )
        if results:
            blocks = results + blocks
        if not blocks:
            if message.content and all(type(p) is ir.TextPart for p in message.content):
                out.append({"role": message.role, "content": ""})  # as sent, for the API to judge
            continue
        if len(blocks) == 1 and blocks[0]["type"] == "text":
            out.append({"role": message.role, "content": blocks[0]["text"]})
        else:
            out.append({"role": message.role, "content": blocks})
    return out


def _render_result(part: ir.ToolResultPart) -> dict[str, Any]:
    rendered: dict[str, Any] = {"type": "tool_result", "tool_use_id": part.tool_call_id}
    content: list[dict[str, Any]] = []
    for item in part.content:
        if isinstance(item, ir.ImagePart):
            content.append(_render_image(item))
        elif item.text:
            content.append({"type": "text", "text": item.text})
    if len(content) == 1 and content[0]["type"] == "text":
        rendered["content"] = content[0]["text"]
    elif content:
        rendered["content"] = content
    if part.is_error:
        rendered["is_error"] = True
    return rendered


# ---------------------------------------------------------------------------------------------
# Responses


def parse_response(body: dict[str, Any]) -> ir.ChatResponse:
    """A ``message`` body -> IR. ``FormatError`` if it is not one."""
    if type(body) is not dict:
        raise FormatError("response body must be a JSON object")
    kind = body.get("type")
    if kind is not None and kind != "message":
        fail("type", "Input should be 'message'")
    content: list[ir.ContentPart] = []
    for j, item in enumerate(req_list(body, "content")):
        param = f"content.{j}"
        block = as_dict(item, param)
        block_type = block.get("type")
        if block_type == "text":
            content.append(ir.TextPart(req_str(block, "text", param)))
        elif block_type == "tool_use":
            tool_input = block.get("input")
            content.append(
                ir.ToolCallPart(
                    id=req_str(block, "id", param),
                    name=req_str(block, "name", param),
                    arguments=dump_json(tool_input if tool_input is not None else {}),
                )
            )
        elif block_type == "thinking":
            content.append(
                ir.ThinkingPart(req_str(block, "thinking", param), opt_str(block, "signature"))
            )
        # redacted_thinking, server tool blocks and future types: not for the IR
    stop_reason = body.get("stop_reason")
    stop_sequence = body.get("stop_sequence")
    return ir.ChatResponse(
        id=req_str(body, "id"),
        model=req_str(body, "model"),
        content=content,
        finish_reason=_STOP_FROM_WIRE.get(stop_reason, "other")
        if type(stop_reason) is str
        else "other",
        usage=_parse_usage(body.get("usage")),
        stop_sequence=stop_sequence if type(stop_sequence) is str else None,
    )


def _parse_usage(raw: Any) -> ir.Usage:
    if type(raw) is not dict:
        return ir.Usage()
    return ir.Usage(
        input_tokens=int_or_zero(raw.get("input_tokens")),
        output_tokens=int_or_zero(raw.get("output_tokens")),
        cache_read_tokens=int_or_zero(raw.get("cache_read_input_tokens")),
        cache_write_tokens=int_or_zero(raw.get("cache_creation_input_tokens")),
    )


def _render_usage(usage: ir.Usage, *, min_output: int = 0) -> dict[str, int]:
    return {
        "input_tokens": usage.input_tokens,
        "cache_creation_input_tokens": usage.cache_write_tokens,
        "cache_read_input_tokens": usage.cache_read_tokens,
        "output_tokens": max(usage.output_tokens, min_output),
    }


def render_response(response: ir.ChatResponse) -> dict[str, Any]:
    """IR -> a ``message`` body. Tool-call arguments that are not a JSON object are a
    ``FormatError`` (a client cannot be handed an ``input`` that is not one)."""
    content: list[dict[str, Any]] = []
    for j, part in enumerate(response.content):
        if type(part) is ir.TextPart:
            content.append({"type": "text", "text": part.text})
        elif type(part) is ir.ToolCallPart:
            content.append(
                {
                    "type": "tool_use",
                    "id": part.id,
                    "name": part.name,
                    "input": decode_arguments(part.arguments, f"content.{j}.input"),
                }
            )
        elif type(part) is ir.ThinkingPart:
            content.append(
                {"type": "thinking", "thinking": part.text, "signature": part.signature or ""}
            )
    return {
        "id": response.id,
        "type": "message",
        "role": "assistant",
        "model": response.model,
        "content": content,
        "stop_reason": _STOP_TO_WIRE[response.finish_reason],
        "stop_sequence": response.stop_sequence,
        "usage": _render_usage(response.usage),
    }


# ---------------------------------------------------------------------------------------------
# Streams


class StreamDecoder(SSEStreamDecoder):
    """Messages SSE bytes -> IR events.

    Block indexes are the wire's. ``ping`` and unknown events are ignored (forward
    compatible); ``redacted_thinking`` and server-tool blocks are skipped with their deltas.
    A text or thinking block start emits an empty delta, so the block exists from that
    point (an empty delta is not content: ``ir.is_content`` says so). ``MessageEnd`` comes at
    ``message_stop`` with the usage of ``message_start`` and ``message_delta`` merged; a
    stream without ``message_stop`` is ``MALFORMED`` at ``close``. An ``error`` event is a
    ``StreamError`` whose kind follows the error type (``overloaded_error`` -> OVERLOADED,
    ``api_error`` -> SERVER_ERROR, ``rate_limit_error`` -> RATE_LIMITED, ...). Events that
    contradict the stream (a delta for a block never started, or of another kind than its
    start, a block started twice) are ``MALFORMED``: the IR the decoder emits is always
    well-formed.
    """

    __slots__ = ("_blocks", "_finish_reason", "_skip", "_stop_sequence", "_usage")

    def __init__(self) -> None:
        super().__init__()
        self._finish_reason: ir.FinishReason = "other"
        self._stop_sequence: str | None = None
        self._usage = ir.Usage()
        self._blocks: dict[int, BlockKind] = {}  # started blocks: deltas must fit their kind
        self._skip: set[int] = set()  # blocks the IR does not carry, with their deltas

    def _on_event(self, event: SSEEvent, out: list[ir.StreamEvent]) -> None:
        data = orjson.loads(event.data)
        if type(data) is not dict:
            self._malformed(out, "stream event data is not a JSON object")
            return
        name = event.event or data.get("type")
        if name == "content_block_delta":
            self._delta(data, out)
        elif name == "ping":
            return
        elif name == "content_block_start":
            self._block_start(data, out)
        elif name == "content_block_stop":
            index = _index(data)
            if index in self._blocks:
                out.append(ir.BlockStop(index))
            elif index not in self._skip:
                raise ValueError(f"stop of block {index}, which never started")
        elif name == "message_start":
            raw = data.get("message")
            message: dict[str, Any] = raw if type(raw) is dict else {}
            self._usage = _parse_usage(message.get("usage"))
            self._start(
                out,
                str_or_empty(message.get("id")),
                str_or_empty(message.get("model")),
                self._usage,
            )
        elif name == "message_delta":
            self._ensure_started(out)
            delta = data.get("delta")
            if type(delta) is dict:
                stop_reason = delta.get("stop_reason")
                if type(stop_reason) is str:
                    self._finish_reason = _STOP_FROM_WIRE.get(stop_reason, "other")
                stop_sequence = delta.get("stop_sequence")
                self._stop_sequence = stop_sequence if type(stop_sequence) is str else None
            self._usage = merge_usage(self._usage, _parse_usage(data.get("usage")))
        elif name == "message_stop":
            self._ensure_started(out)
            end = ir.MessageEnd(self._finish_reason, self._usage, self._stop_sequence)
            self._finish(out, end)
        elif name == "error":
            self._fail(out, _stream_error(data))

    def _ensure_started(self, out: list[ir.StreamEvent]) -> None:
        if not self._started:  # a stream that skipped message_start: the IR still needs one
            self._start(out, "", "", ir.Usage())

    def _delta(self, data: dict[str, Any], out: list[ir.StreamEvent]) -> None:
        index = _index(data)
        block = self._blocks.get(index)
        if block is None:
            if index not in self._skip:
                raise ValueError(f"delta for block {index}, which never started")
            return
        delta = data["delta"]
        kind = delta.get("type")
        if kind == "text_delta":
            text = as_str(delta["text"], "delta.text")
            if block != "text":
                raise ValueError(f"text_delta for the {block} block {index}")
            if text:
                out.append(ir.TextDelta(index, text))
        elif kind == "input_json_delta":
            fragment = as_str(delta["partial_json"], "delta.partial_json")
            if block != "tool":
                raise ValueError(f"input_json_delta for the {block} block {index}")
            if fragment:  # the service opens every tool block with an empty fragment
                out.append(ir.ToolCallDelta(index, fragment))
        elif kind == "thinking_delta":
            text = as_str(delta["thinking"], "delta.thinking")
            if block != "thinking":
                raise ValueError(f"thinking_delta for the {block} block {index}")
            out.append(ir.ThinkingDelta(index, text))
        elif kind == "signature_delta":
            signature = as_str(delta["signature"], "delta.signature")
            if block != "thinking":
                raise ValueError(f"signature_delta for the {block} block {index}")
            out.append(ir.ThinkingDelta(index, "", signature))
        # citations_delta and future delta types: nothing the IR carries

    def _block_start(self, data: dict[str, Any], out: list[ir.StreamEvent]) -> None:
        index = _index(data)
        if index in self._blocks or index in self._skip:
            raise ValueError(f"block {index} started twice")
        self._ensure_started(out)
        block = data["content_block"]
        kind = block.get("type")
        if kind == "text":
            self._blocks[index] = "text"
            out.append(ir.TextDelta(index, str_or_empty(block.get("text"))))
        elif kind == "tool_use":
            self._blocks[index] = "tool"
            out.append(
                ir.ToolCallStart(
                    index, str_or_empty(block.get("id")), str_or_empty(block.get("name"))
                )
            )
            tool_input = block.get("input")
            if tool_input:
                out.append(ir.ToolCallDelta(index, dump_json(tool_input)))
        elif kind == "thinking":
            self._blocks[index] = "thinking"
            out.append(ir.ThinkingDelta(index, str_or_empty(block.get("thinking"))))
        else:
            self._skip.add(index)


def _index(data: dict[str, Any]) -> int:
    index = data["index"]
    if type(index) is not int:
        raise TypeError("block index is not an integer")
    return index


def _stream_error(data: dict[str, Any]) -> ir.ErrorInfo:
    error = data.get("error")
    error = error if type(error) is dict else {}
    kind = error.get("type")
    kind = kind if type(kind) is str else None
    message = error.get("message")
    message = message if type(message) is str and message else "error in stream"
    return ir.ErrorInfo(
        kind=classify_error(200, kind, message), message=message, status=200, provider_type=kind
    )


def _event(name: str) -> bytes:
    return b"event: " + name.encode() + b"\ndata: "


_DELTA = _event("content_block_delta") + b'{"type":"content_block_delta","index":'
_START = _event("content_block_start") + b'{"type":"content_block_start","index":'
_STOP = _event("content_block_stop") + b'{"type":"content_block_stop","index":'
_PING = _event("ping") + b'{"type": "ping"}\n\n'
_MESSAGE_STOP = _event("message_stop") + b'{"type":"message_stop"}\n\n'


class StreamEncoder:
    """IR events -> Messages SSE bytes, event for event as the service sends them.

    ``message_start`` (usage with ``output_tokens`` at least 1, as the service reports it),
    ``content_block_start`` (a ``ping`` after the first, like the service), the deltas (a tool
    block opens with an empty ``input_json_delta``), ``content_block_stop``, ``message_delta``
    with ``stop_reason`` and the cumulative usage (input and cache counts included, which
    clients read when ``message_start`` could not know them), ``message_stop``.

    Robust to loose IR: ``message_start`` is written before anything else if ``MessageStart``
    never came; a delta for a block not yet started opens it (text, thinking, or a tool call
    with a made-up id); open blocks are closed before ``message_delta``. Wire indexes are
    renumbered 0, 1, ... in order of opening, as the SDKs index content by them.
    ``StreamError`` writes ``event: error``. ``include_usage`` is accepted for uniformity:
    Anthropic streams always carry usage.
    """

    __slots__ = ("_done", "_id", "_model", "_open", "_pinged", "_started", "_usage", "_wire")

    def __init__(self, *, id: str, model: str, include_usage: bool = False) -> None:
        self._id = id
        self._model = model
        self._started = False
        self._done = False
        self._pinged = False
        self._wire: dict[int, int] = {}  # IR block index -> wire index
        self._open: dict[int, None] = {}  # open IR blocks, in opening order
        self._usage = ir.Usage()

    def encode(self, event: ir.StreamEvent) -> bytes:
        """One IR event -> the bytes to write (possibly ``b""``)."""
        if self._done:
            return b""
        if type(event) is ir.TextDelta:
            lead = self._ensure(event.index, b'{"type":"text","text":""}')
            if not event.text:
                return lead
            return b'%b%b%d,"delta":{"type":"text_delta","text":%b}}\n\n' % (
                lead,
                _DELTA,
                self._wire[event.index],
                orjson.dumps(event.text),
            )
        if type(event) is ir.ToolCallDelta:
            lead = self._ensure(event.index, b"")
            if not event.arguments:
                return lead
            return lead + self._json_delta(event.index, orjson.dumps(event.arguments))
        if type(event) is ir.ThinkingDelta:
            lead = self._ensure(event.index, b'{"type":"thinking","thinking":"","signature":""}')
            wire = self._wire[event.index]
            if event.text:
                lead += b'%b%d,"delta":{"type":"thinking_delta","thinking":%b}}\n\n' % (
                    _DELTA,
                    wire,
                    orjson.dumps(event.text),
                )
            if event.signature is not None:
                lead += b'%b%d,"delta":{"type":"signature_delta","signature":%b}}\n\n' % (
                    _DELTA,
                    wire,
                    orjson.dumps(event.signature),
                )
            return lead
        if type(event) is ir.ToolCallStart:
            if event.index in self._wire:
                return b""
            return self._open_tool(event.index, event.id, event.name)
        if type(event) is ir.BlockStop:
            return self._stop(event.index)
        if type(event) is ir.MessageStart:
            return self._message_start(event.usage)
        if type(event) is ir.MessageEnd:
            return self._message_end(event)
        if type(event) is ir.StreamError:
            self._done = True
            return _event("error") + orjson.dumps(render_error(event.error)) + b"\n\n"
        return b""

    def _message_start(self, usage: ir.Usage) -> bytes:
        if self._started:
            self._usage = merge_usage(self._usage, usage)
            return b""
        self._started = True
        self._usage = usage
        message: dict[str, Any] = {
            "id": self._id,
            "type": "message",
            "role": "assistant",
            "model": self._model,
            "content": [],
            "stop_reason": None,
            "stop_sequence": None,
            "usage": _render_usage(usage, min_output=1),
        }
        data = orjson.dumps({"type": "message_start", "message": message})
        return _event("message_start") + data + b"\n\n"

    def _open_block(self, index: int, block: bytes) -> bytes:
        wire = len(self._wire)
        self._wire[index] = wire
        self._open[index] = None
        out = self._message_start(ir.Usage())
        out += b'%b%d,"content_block":%b}\n\n' % (_START, wire, block)
        if not self._pinged:
            self._pinged = True
            out += _PING
        return out

    def _open_tool(self, index: int, call_id: str, name: str) -> bytes:
        block = b'{"type":"tool_use","id":%b,"name":%b,"input":{}}' % (
            orjson.dumps(call_id),
            orjson.dumps(name),
        )
        return self._open_block(index, block) + self._json_delta(index, b'""')

    def _ensure(self, index: int, block: bytes) -> bytes:
        """Open block ``index`` if it never was (``block`` is its start; empty for a tool)."""
        if index in self._wire:
            return b""
        if not block:
            return self._open_tool(index, f"toolu_hedgerow_{index}", "")
        return self._open_block(index, block)

    def _json_delta(self, index: int, fragment: bytes) -> bytes:
        return b'%b%d,"delta":{"type":"input_json_delta","partial_json":%b}}\n\n' % (
            _DELTA,
            self._wire[index],
            fragment,
        )

    def _stop(self, index: int) -> bytes:
        if index not in self._open:
            return b""
        del self._open[index]
        return b"%b%d}\n\n" % (_STOP, self._wire[index])

    def _message_end(self, event: ir.MessageEnd) -> bytes:
        out = self._message_start(ir.Usage())
        for index in list(self._open):
            out += self._stop(index)
        usage = merge_usage(self._usage, event.usage)
        data = {
            "type": "message_delta",
            "delta": {
                "stop_reason": _STOP_TO_WIRE[event.finish_reason],
                "stop_sequence": event.stop_sequence,
            },
            "usage": _render_usage(usage),
        }
        self._done = True
        return out + _event("message_delta") + orjson.dumps(data) + b"\n\n" + _MESSAGE_STOP


# ---------------------------------------------------------------------------------------------
# Errors

K = ir.ErrorKind

# kind -> (status, type), as the service answers.
_ERRORS: dict[ir.ErrorKind, tuple[int, str]] = {
    K.CONNECT: (502, "api_error"),
    K.TIMEOUT: (504, "timeout_error"),
    K.REQUEST_TIMEOUT: (408, "timeout_error"),
    K.CONFLICT: (409, "invalid_request_error"),
    K.RATE_LIMITED: (429, "rate_limit_error"),
    K.SERVER_ERROR: (500, "api_error"),
    K.BAD_GATEWAY: (502, "api_error"),
    K.UNAVAILABLE: (503, "api_error"),
    K.GATEWAY_TIMEOUT: (504, "timeout_error"),
    K.OVERLOADED: (529, "overloaded_error"),
    K.STREAM_ERROR: (502, "api_error"),
    K.CONTEXT_WINDOW: (400, "invalid_request_error"),
    K.AUTH: (401, "authentication_error"),
    K.BAD_REQUEST: (400, "invalid_request_error"),
    K.MALFORMED: (502, "api_error"),
}

# The 4xx an error may keep (``kept_client_status``), with the type Anthropic gives each.
_CLIENT_TYPES = {
    402: "billing_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
}


def _status_and_type(error: ir.ErrorInfo) -> tuple[int, str]:
    status, kind = _ERRORS[error.kind]
    kept = kept_client_status(error)
    if kept is not None:
        return kept, _CLIENT_TYPES.get(kept, kind)
    return status, kind


def error_status(error: ir.ErrorInfo) -> int:
    """The HTTP status to send ``error`` with to an Anthropic client (``OVERLOADED`` is 529,
    ``AUTH`` 401 or 403, ``BAD_REQUEST`` keeps a 4xx status it carries)."""
    return _status_and_type(error)[0]


def render_error(error: ir.ErrorInfo, *, request_id: str | None = None) -> dict[str, Any]:
    """``{"type": "error", "error": {"type", "message"}}`` (plus ``request_id`` when given).

    A context overflow's message starts with ``prompt is too long``, as Anthropic's does:
    clients (Claude Code) recognise the condition by it.
    """
    message = error.message
    if error.kind is K.CONTEXT_WINDOW and not message.lower().startswith("prompt is too long"):
        message = f"prompt is too long: {message}"
    body: dict[str, Any] = {
        "type": "error",
        "error": {"type": _status_and_type(error)[1], "message": message},
    }
    if request_id is not None:
        body["request_id"] = request_id
    return body


def parse_error(status: int, body: bytes) -> tuple[str | None, str]:
    """The ``error.type`` and ``error.message`` of an error body. Never raises; garbage gives
    ``(None, <excerpt>)``."""
    return parse_error_body(status, body)


_KIND_BY_TYPE: dict[str, ir.ErrorKind] = {
    "overloaded_error": K.OVERLOADED,
    "api_error": K.SERVER_ERROR,
    "rate_limit_error": K.RATE_LIMITED,
    "timeout_error": K.GATEWAY_TIMEOUT,
    "authentication_error": K.AUTH,
    "permission_error": K.AUTH,
    # An unpaid account is unusable until someone pays, like a bad key; other deployments are
    # not affected.
    "billing_error": K.AUTH,
    "invalid_request_error": K.BAD_REQUEST,
    "not_found_error": K.BAD_REQUEST,
    "request_too_large": K.BAD_REQUEST,
}


def classify_error(status: int, error_type: str | None, message: str) -> ir.ErrorKind:
    """The IR kind of an Anthropic error: from the HTTP status when it is an error status
    (529 -> OVERLOADED), refined by type (``billing_error`` is AUTH) and message (``prompt is
    too long``); from the type alone inside a 200 stream (unknown types: STREAM_ERROR). See
    ``_common.classify``."""
    return classify(status, error_type, message, _KIND_BY_TYPE)


_DELTA_EVENT = b"event: content_block_delta\n"
_PING_EVENT = b"event: ping\n"


# The native twin of ``quiet_events`` (``hedgerow._core.loud_spans``) that the passthrough
# scanner applies; ``quiet_events`` stays the rule's definition, and the tests hold them equal.
QUIET_DIALECT: QuietDialect = "anthropic"


@native_quiet(QUIET_DIALECT)
def quiet_events(region: bytes) -> bool:
    """Whether a run of whole SSE events is content only, for the passthrough scanner
    (``sse.PassthroughScanner``): every event a ``content_block_delta`` (not a tool's input,
    which the decoder assembles) or a ``ping``, and no error anywhere. Each event's data must
    end in ``}``, so JSON cut short is decoded and replaced rather than passed on.
    """
    quiet = region.count(_DELTA_EVENT) + region.count(_PING_EVENT)
    return (
        region.count(b"\n\n") == quiet
        and region.count(b"}\n\n") == quiet
        and region.count(b"event:") == quiet
        and b"input_json_delta" not in region
        and b'"error"' not in region
    )
