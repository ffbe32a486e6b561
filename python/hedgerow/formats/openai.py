"""The OpenAI Chat Completions dialect, both directions (``POST /v1/chat/completions``).

The same module speaks to OpenAI-compatible servers (vLLM, Ollama, llama.cpp, ...): their
variations are accepted on input (``reasoning`` / ``reasoning_content`` deltas, Ollama's whole
tool call in one delta, vLLM's ``stop_reason`` and integer error ``code``), and
``render_request`` takes ``max_tokens_field`` for the servers that only know ``max_tokens``.

Mapping decisions (IR <-> wire)
-------------------------------
* ``system`` and ``developer`` messages become the IR system prompt (several join with a blank
  line; their position in the conversation is not kept). Rendering sends one ``system``
  message first.
* ``tool`` messages become ``ToolResultPart``\\ s of a user turn; consecutive ones share one
  turn. Rendering reverses it: a user turn's tool results become ``tool`` messages (first, as
  OpenAI requires them right after the assistant's calls), its other parts (and any images of
  the tool results, which a ``tool`` message cannot carry) a following ``user`` message.
  ``is_error`` has no OpenAI equivalent and is lost.
* ``max_completion_tokens`` is preferred over ``max_tokens`` when a client sends both.
* ``ThinkingPart`` renders as the de-facto ``reasoning_content`` field in responses and
  stream deltas (DeepSeek, vLLM); requests cannot carry reasoning, so it is dropped there.
* Usage: OpenAI's ``prompt_tokens`` include cached tokens, the IR's ``input_tokens`` do not:
  ``input = prompt_tokens - cached_tokens``; rendering adds cache reads and writes back in.
* Finish reasons: ``stop`` <-> stop, ``length`` <-> length, ``tool_calls`` (and legacy
  ``function_call``) <-> tool_calls, ``content_filter`` <-> content_filter; IR stop_sequence
  renders ``stop``, context_window ``length``, other ``stop``. ``stop`` with tool calls
  present (some compatible servers) is read as tool_calls.
* Not carried by the IR and dropped: ``n`` (``n > 1`` is refused), ``response_format``,
  ``seed``, ``logprobs``, ``top_k`` (not an OpenAI field), tool ``strict``.
"""

from __future__ import annotations

import time
from typing import Any, Literal

import orjson

from hedgerow import ir
from hedgerow.formats._common import (
    FormatError,
    as_dict,
    as_list,
    as_str,
    classify,
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
    req_list,
    req_str,
    str_or_empty,
    synth_call_id,
)
from hedgerow.formats.sse import QuietDialect, SSEEvent, SSEStreamDecoder, native_quiet

__all__ = [
    "NAME",
    "QUIET_DIALECT",
    "MaxTokensField",
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

NAME = "openai"

MaxTokensField = Literal["max_completion_tokens", "max_tokens"]

_FINISH_FROM_WIRE: dict[str, ir.FinishReason] = {
    "stop": "stop",
    "length": "length",
    "tool_calls": "tool_calls",
    "function_call": "tool_calls",
    "content_filter": "content_filter",
}

_FINISH_TO_WIRE: dict[str, str] = {
    "stop": "stop",
    "length": "length",
    "tool_calls": "tool_calls",
    "stop_sequence": "stop",
    "content_filter": "content_filter",
    "context_window": "length",
    "other": "stop",
}

_TOOL_CHOICE_MODES: dict[str, ir.ToolChoice] = {
    "auto": ir.ToolChoice("auto"),
    "none": ir.ToolChoice("none"),
    "required": ir.ToolChoice("required"),
}


# ---------------------------------------------------------------------------------------------
# Requests


def parse_request(body: dict[str, Any]) -> ir.ChatRequest:
    """A Chat Completions request body -> IR. ``FormatError`` names the bad field."""
    if type(body) is not dict:
        raise FormatError("request body must be a JSON object")
    model = req_str(body, "model")
    raw_messages = req_list(body, "messages")
    if not raw_messages:
        fail("messages", "List should have at least 1 item")
    n = opt_int(body, "n")
    if n is not None and n > 1:
        fail("n", "only n=1 is supported")
    system, messages = _parse_messages(raw_messages)
    max_tokens = opt_int(body, "max_completion_tokens")
    if max_tokens is None:
        max_tokens = opt_int(body, "max_tokens")
    stream_options = opt_dict(body, "stream_options")
    return ir.ChatRequest(
        model=model,
        messages=messages,
        system=system,
        max_tokens=max_tokens,
        temperature=opt_num(body, "temperature"),
        top_p=opt_num(body, "top_p"),
        stop=_parse_stop(body.get("stop")),
        tools=_parse_tools(opt_list(body, "tools")),
        tool_choice=_parse_tool_choice(body.get("tool_choice")),
        parallel_tool_calls=opt_bool(body, "parallel_tool_calls"),
        stream=bool(opt_bool(body, "stream")),
        include_usage=bool(
            stream_options and opt_bool(stream_options, "include_usage", "stream_options")
        ),
        user=opt_str(body, "user"),
    )


def _parse_stop(value: Any) -> list[str] | None:
    if value is None:
        return None
    if type(value) is str:
        return [value]
    return [as_str(item, f"stop.{i}") for i, item in enumerate(as_list(value, "stop"))]


def _parse_messages(raw: list[Any]) -> tuple[str | None, list[ir.Message]]:
    system: list[str] = []
    messages: list[ir.Message] = []
    tool_turn: list[ir.ContentPart] | None = None  # the user turn consecutive tool msgs share
    for i, item in enumerate(raw):
        prefix = f"messages.{i}"
        message = as_dict(item, prefix)
        role = req_str(message, "role", prefix)
        if role == "tool":
            result = ir.ToolResultPart(
                tool_call_id=req_str(message, "tool_call_id", prefix),
                content=[ir.TextPart(t) for t in _texts(message.get("content"), prefix)],
            )
            if tool_turn is None:
                tool_turn = [result]
                messages.append(ir.Message("user", tool_turn))
            else:
                tool_turn.append(result)
            continue
        tool_turn = None
        if role == "user":
            messages.append(ir.Message("user", _parse_user_content(message, prefix)))
        elif role == "assistant":
            messages.append(ir.Message("assistant", _parse_assistant(message, prefix)))
        elif role in ("system", "developer"):
            system.extend(_texts(message.get("content"), prefix))
        else:
            fail(
                prefix + ".role",
                "Input should be 'system', 'developer', 'user', 'assistant' or 'tool'",
            )
    return join_system(system), messages


def _texts(content: Any, prefix: str) -> list[str]:
    """Content that may only hold text: a string or a list of text parts."""
    param = prefix + ".content"
    if type(content) is str:
        return [content]
    if content is None:
        fail(param, "Field required")
    texts: list[str] = []
    for j, item in enumerate(as_list(content, param)):
        part = as_dict(item, f"{param}.{j}")
        if part.get("type") != "text":
            fail(f"{param}.{j}.type", "Input should be 'text'")
        texts.append(req_str(part, "text", f"{param}.{j}"))
    return texts


def _parse_user_content(message: dict[str, Any], prefix: str) -> list[ir.ContentPart]:
    param = prefix + ".content"
    content = message.get("content")
    if type(content) is str:
        return [ir.TextPart(content)]
    if content is None:
        fail(param, "Field required")
    parts: list[ir.ContentPart] = []
    for j, item in enumerate(as_list(content, param)):
        part_param = f"{param}.{j}"
        part = as_dict(item, part_param)
        kind = req_str(part, "type", part_param)
        if kind == "text":
            parts.append(ir.TextPart(req_str(part, "text", part_param)))
        elif kind == "image_url":
            image = part.get("image_url")
            # The API wants {"url": ...}; a bare string is a common client slip worth taking.
            if type(image) is str:
                url = image
            else:
                image = req_dict(part, "image_url", part_param)
                url = req_str(image, "url", part_param + ".image_url")
            parts.append(_image_from_url(url))
        else:
            fail(part_param + ".type", f"unsupported content part type '{kind}'")
    return parts


def _image_from_url(url: str) -> ir.ImagePart:
    """``data:<type>;base64,<data>`` URLs become inline images, anything else stays a URL."""
    if url.startswith("data:"):
        header, comma, data = url[5:].partition(",")
        if comma and header.endswith(";base64"):
            return ir.ImagePart(media_type=header[:-7] or None, data=data)
    return ir.ImagePart(url=url)


def _parse_assistant(message: dict[str, Any], prefix: str) -> list[ir.ContentPart]:
    parts: list[ir.ContentPart] = []
    tool_calls = opt_list(message, "tool_calls", prefix)
    content = message.get("content")
    if type(content) is str:
        # "" next to tool calls is the usual way to say "no text"; alone it is the text.
        if content or not tool_calls:
            parts.append(ir.TextPart(content))
    elif content is not None:
        param = prefix + ".content"
        for j, item in enumerate(as_list(content, param)):
            part = as_dict(item, f"{param}.{j}")
            kind = part.get("type")
            if kind not in ("text", "refusal"):
                fail(f"{param}.{j}.type", "Input should be 'text' or 'refusal'")
            key = "text" if kind == "text" else "refusal"
            parts.append(ir.TextPart(req_str(part, key, f"{param}.{j}")))
    for j, item in enumerate(tool_calls or ()):
        call_param = f"{prefix}.tool_calls.{j}"
        call = as_dict(item, call_param)
        function = req_dict(call, "function", call_param)
        parts.append(
            ir.ToolCallPart(
                id=req_str(call, "id", call_param),
                name=req_str(function, "name", call_param + ".function"),
                arguments=opt_str(function, "arguments", call_param + ".function") or "",
            )
        )
    return parts


def _parse_tools(raw: list[Any] | None) -> list[ir.Tool] | None:
    if raw is None:
        return None
    tools: list[ir.Tool] = []
    for i, item in enumerate(raw):
        param = f"tools.{i}"
        tool = as_dict(item, param)
        kind = tool.get("type", "function")
        if kind != "function":
            fail(param + ".type", f"unsupported tool type '{kind}'")
        function = req_dict(tool, "function", param)
        tools.append(
            ir.Tool(
                name=req_str(function, "name", param + ".function"),
                description=opt_str(function, "description", param + ".function"),
                parameters=opt_dict(function, "parameters", param + ".function") or {},
            )
        )
    return tools


def _parse_tool_choice(value: Any) -> ir.ToolChoice | None:
    if value is None:
        return None
    if type(value) is str:
        choice = _TOOL_CHOICE_MODES.get(value)
        if choice is None:
            fail("tool_choice", "Input should be 'none', 'auto', 'required' or a named function")
        return ir.ToolChoice(choice.mode)
    named = as_dict(value, "tool_choice")
    if named.get("type") != "function":
        fail("tool_choice.type", "Input should be 'function'")
    return ir.ToolChoice("tool", req_str(req_dict(named, "function", "tool_choice"), "name"))


def render_request(
    request: ir.ChatRequest,
    model: str,
    *,
    max_tokens_field: MaxTokensField = "max_completion_tokens",
) -> dict[str, Any]:
    """IR -> a Chat Completions request body for ``model``.

    ``max_tokens_field`` names the field the token limit goes in: OpenAI's own API wants
    ``max_completion_tokens`` (its reasoning models refuse ``max_tokens``); OpenAI-compatible
    servers (vLLM, Ollama, llama.cpp) understand ``max_tokens``, and older ones only that.

    Only what the IR sets is sent. ``tools`` only when non-empty (``tools: []`` breaks vLLM),
    and ``tool_choice`` / ``parallel_tool_calls`` only with tools (OpenAI refuses them
    alone). ``stream_options.include_usage`` only on a streamed request that asks for usage.
    """
    body: dict[str, Any] = {"model": model, "messages": _render_messages(request)}
    if request.max_tokens is not None:
        body[max_tokens_field] = request.max_tokens
    if request.temperature is not None:
        body["temperature"] = request.temperature
    if request.top_p is not None:
        body["top_p"] = request.top_p
    if request.stop is not None:
        body["stop"] = list(request.stop)
    if request.tools:
        body["tools"] = [_render_tool(tool) for tool in request.tools]
        choice = request.tool_choice
        if choice is not None:
            if choice.mode == "tool":
                body["tool_choice"] = {"type": "function", "function": {"name": choice.name}}
            else:
                body["tool_choice"] = choice.mode
        if request.parallel_tool_calls is not None:
            body["parallel_tool_calls"] = request.parallel_tool_calls
    if request.stream:
        body["stream"] = True
        if request.include_usage:
            body["stream_options"] = {"include_usage": True}
    if request.user is not None:
        body["user"] = request.user
    return body


def _render_tool(tool: ir.Tool) -> dict[str, Any]:
    function: dict[str, Any] = {"name": tool.name}
    if tool.description is not None:
        function["description"] = tool.description
    if tool.parameters:
        function["parameters"] = tool.parameters
    return {"type": "function", "function": function}


def _render_messages(request: ir.ChatRequest) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    if request.system is not None:
        out.append({"role": "system", "content": request.system})
    for i, message in enumerate(request.messages):
        if message.role == "assistant":
            out.append(_render_assistant(message, i))
        else:
            _render_user(message, i, out)
    return out


def _render_image(part: ir.ImagePart) -> dict[str, Any]:
    if part.data is not None:
        url = f"data:{part.media_type or 'image/png'};base64,{part.data}"
    else:
        url = part.url or ""
    return {"type": "image_url", "image_url": {"url": url}}


def _render_user(message: ir.Message, i: int, out: list[dict[str, Any]]) -> None:
    rest: list[dict[str, Any]] = []
    results = 0
    for j, part in enumerate(message.content):
        if type(part) is ir.TextPart:
            rest.append({"type": "text", "text": part.text})
        elif type(part) is ir.ToolResultPart:
            results += 1
            texts = [p.text for p in part.content if type(p) is ir.TextPart]
            content: Any = ""
            if len(texts) == 1:
                content = texts[0]
            elif texts:
                content = [{"type": "text", "text": t} for t in texts]
            out.append({"role": "tool", "tool_call_id": part.tool_call_id, "content": content})
            rest.extend(_render_image(p) for p in part.content if type(p) is ir.ImagePart)
        elif type(part) is ir.ImagePart:
            rest.append(_render_image(part))
        elif type(part) is ir.ToolCallPart:
            fail(f"messages.{i}.content.{j}", "a tool call cannot be part of a user turn")
        # A ThinkingPart in a user turn has no meaning on the wire: dropped.
    if rest or not results:
        if len(rest) == 1 and rest[0]["type"] == "text":
            out.append({"role": "user", "content": rest[0]["text"]})
        else:
            out.append({"role": "user", "content": rest or ""})


def _render_assistant(message: ir.Message, i: int) -> dict[str, Any]:
    texts: list[str] = []
    calls: list[dict[str, Any]] = []
    for j, part in enumerate(message.content):
        if type(part) is ir.TextPart:
            texts.append(part.text)
        elif type(part) is ir.ToolCallPart:
            calls.append(_render_call(part))
        elif type(part) is ir.ToolResultPart:
            fail(f"messages.{i}.content.{j}", "a tool result cannot be part of an assistant turn")
        # Thinking cannot be sent back to OpenAI, and assistant images do not exist: dropped.
    rendered: dict[str, Any] = {"role": "assistant"}
    if len(texts) == 1:
        rendered["content"] = texts[0]
    elif texts:
        rendered["content"] = [{"type": "text", "text": t} for t in texts]
    else:
        rendered["content"] = None if calls else ""
    if calls:
        rendered["tool_calls"] = calls
    return rendered


def _render_call(part: ir.ToolCallPart) -> dict[str, Any]:
    # Servers that parse the history's arguments (vLLM) choke on "": send an empty object.
    return {
        "id": part.id,
        "type": "function",
        "function": {"name": part.name, "arguments": part.arguments or "{}"},
    }


# ---------------------------------------------------------------------------------------------
# Responses


def parse_response(body: dict[str, Any]) -> ir.ChatResponse:
    """A ``chat.completion`` body -> IR (choice 0). ``FormatError`` if it is not one."""
    if type(body) is not dict:
        raise FormatError("response body must be a JSON object")
    choices = req_list(body, "choices")
    if not choices:
        fail("choices", "List should have at least 1 item")
    choice = next(
        (c for c in choices if type(c) is dict and c.get("index", 0) == 0),
        as_dict(choices[0], "choices.0"),
    )
    message = opt_dict(choice, "message", "choices.0") or {}
    content: list[ir.ContentPart] = []
    reasoning = message.get("reasoning_content") or message.get("reasoning")
    if type(reasoning) is str and reasoning:
        content.append(ir.ThinkingPart(reasoning))
    text = message.get("content")
    if type(text) is str and text:
        content.append(ir.TextPart(text))
    elif type(text) is list:
        content.extend(ir.TextPart(t) for t in _texts(text, "choices.0.message") if t)
    refusal = message.get("refusal")
    if type(refusal) is str and refusal and not text:
        content.append(ir.TextPart(refusal))
    for j, item in enumerate(opt_list(message, "tool_calls", "choices.0.message") or ()):
        call_param = f"choices.0.message.tool_calls.{j}"
        call = as_dict(item, call_param)
        function = req_dict(call, "function", call_param)
        call_id = call.get("id")
        arguments = function.get("arguments")
        content.append(
            ir.ToolCallPart(
                id=call_id
                if type(call_id) is str and call_id
                else synth_call_id(body.get("id"), j),
                name=req_str(function, "name", call_param + ".function"),
                arguments=arguments if type(arguments) is str else dump_json(arguments or {}),
            )
        )
    finish, stop_sequence = _finish_reason(choice, content)
    return ir.ChatResponse(
        id=str_or_empty(body.get("id")),
        model=str_or_empty(body.get("model")),
        content=content,
        finish_reason=finish,
        usage=_parse_usage(body.get("usage")),
        stop_sequence=stop_sequence,
    )


def _finish_reason(
    choice: dict[str, Any], content: list[ir.ContentPart]
) -> tuple[ir.FinishReason, str | None]:
    wire = choice.get("finish_reason")
    finish = _FINISH_FROM_WIRE.get(wire, "other") if type(wire) is str else "other"
    if finish == "stop" and any(type(p) is ir.ToolCallPart for p in content):
        finish = "tool_calls"
    # vLLM names the stop string that matched; OpenAI cannot tell it from a natural stop.
    matched = choice.get("stop_reason")
    if finish == "stop" and type(matched) is str and matched:
        return "stop_sequence", matched
    return finish, None


def _parse_usage(raw: Any) -> ir.Usage:
    if type(raw) is not dict:
        return ir.Usage()
    prompt = int_or_zero(raw.get("prompt_tokens"))
    details = raw.get("prompt_tokens_details")
    cached = int_or_zero(details.get("cached_tokens")) if type(details) is dict else 0
    completion_details = raw.get("completion_tokens_details")
    reasoning = (
        int_or_zero(completion_details.get("reasoning_tokens"))
        if type(completion_details) is dict
        else 0
    )
    return ir.Usage(
        input_tokens=max(prompt - cached, 0),
        output_tokens=int_or_zero(raw.get("completion_tokens")),
        cache_read_tokens=cached,
        reasoning_tokens=reasoning,
    )


def _render_usage(usage: ir.Usage) -> dict[str, Any]:
    prompt = usage.input_tokens + usage.cache_read_tokens + usage.cache_write_tokens
    return {
        "prompt_tokens": prompt,
        "completion_tokens": usage.output_tokens,
        "total_tokens": prompt + usage.output_tokens,
        "prompt_tokens_details": {"cached_tokens": usage.cache_read_tokens},
        "completion_tokens_details": {"reasoning_tokens": usage.reasoning_tokens},
    }


def render_response(response: ir.ChatResponse) -> dict[str, Any]:
    """IR -> a ``chat.completion`` body (``created`` is now)."""
    texts: list[str] = []
    thinking: list[str] = []
    calls: list[dict[str, Any]] = []
    for part in response.content:
        if type(part) is ir.TextPart:
            texts.append(part.text)
        elif type(part) is ir.ToolCallPart:
            calls.append(_render_call(part))
        elif type(part) is ir.ThinkingPart:
            thinking.append(part.text)
    message: dict[str, Any] = {
        "role": "assistant",
        "content": "".join(texts) if texts else (None if calls else ""),
        "refusal": None,
    }
    if thinking:
        message["reasoning_content"] = "".join(thinking)
    if calls:
        message["tool_calls"] = calls
    return {
        "id": response.id,
        "object": "chat.completion",
        "created": int(time.time()),
        "model": response.model,
        "choices": [
            {
                "index": 0,
                "message": message,
                "logprobs": None,
                "finish_reason": _FINISH_TO_WIRE[response.finish_reason],
            }
        ],
        "usage": _render_usage(response.usage),
    }


# ---------------------------------------------------------------------------------------------
# Streams


class StreamDecoder(SSEStreamDecoder):
    """``chat.completion.chunk`` SSE bytes -> IR events.

    OpenAI has no block boundaries on the wire: a block ends when another kind begins (text,
    reasoning, each tool call), at ``finish_reason``, and before ``MessageEnd``. IR indexes
    count all blocks; OpenAI's tool ``index`` is mapped to them.

    ``MessageEnd`` is emitted only at ``data: [DONE]``, since the usage chunk comes after the
    ``finish_reason`` chunk. A stream that ends without ``[DONE]`` is ``MALFORMED`` even if a
    ``finish_reason`` arrived: OpenAI and vLLM always send it, so its absence means the stream
    was cut (and the usage is missing). ``[DONE]`` without any ``finish_reason`` ends the
    message with finish reason ``other``. A ``data: {"error": ...}`` chunk is a
    ``StreamError`` classified by ``classify_error``.
    """

    __slots__ = (
        "_finish_reason",
        "_message_id",
        "_saw_tool",
        "_stop_sequence",
        "_tool_ids",
        "_tools",
        "_usage",
    )

    def __init__(self) -> None:
        super().__init__()
        self._finish_reason: ir.FinishReason | None = None
        self._stop_sequence: str | None = None
        self._usage = ir.Usage()
        self._tools: dict[int, int] = {}  # OpenAI tool index -> IR block index
        self._tool_ids: dict[int, str] = {}
        self._saw_tool = False
        self._message_id = ""

    def _on_event(self, event: SSEEvent, out: list[ir.StreamEvent]) -> None:
        data = event.data
        if data.startswith("[DONE]"):
            if not self._started:
                self._malformed(out, "stream ended before any chunk")
                return
            finish = self._finish_reason or "other"
            if finish == "stop" and self._saw_tool:
                finish = "tool_calls"
            if finish == "stop" and self._stop_sequence is not None:
                finish = "stop_sequence"
            self._finish(out, ir.MessageEnd(finish, self._usage, self._stop_sequence))
            return
        chunk = orjson.loads(data)
        if type(chunk) is not dict:
            self._malformed(out, "stream chunk is not a JSON object")
            return
        error = chunk.get("error")
        if error is not None:
            self._fail(out, _stream_error(error))
            return
        choices = chunk.get("choices")
        usage = chunk.get("usage")
        if not choices and not usage:
            return  # e.g. Azure's prompt_filter_results chunk: nothing of the message yet
        if not self._started:
            self._message_id = str_or_empty(chunk.get("id"))
            self._start(out, self._message_id, str_or_empty(chunk.get("model")), ir.Usage())
        if choices:
            for choice in choices:
                if choice.get("index", 0) == 0:
                    self._choice(choice, out)
                    break
        if usage:
            self._usage = _parse_usage(usage)

    def _choice(self, choice: dict[str, Any], out: list[ir.StreamEvent]) -> None:
        delta = choice.get("delta")
        if type(delta) is dict and delta:
            reasoning = delta.get("reasoning_content") or delta.get("reasoning")
            if type(reasoning) is str and reasoning:
                out.append(ir.ThinkingDelta(self._block("thinking", out), reasoning))
            text = delta.get("content")
            if type(text) is str and text:
                out.append(ir.TextDelta(self._block("text", out), text))
            refusal = delta.get("refusal")
            if type(refusal) is str and refusal:
                out.append(ir.TextDelta(self._block("text", out), refusal))
            calls = delta.get("tool_calls")
            if calls:
                for position, call in enumerate(calls):
                    self._tool_fragment(call, position, out)
        wire_finish = choice.get("finish_reason")
        if type(wire_finish) is str:
            self._finish_reason = _FINISH_FROM_WIRE.get(wire_finish, "other")
            self._close_block(out)
            matched = choice.get("stop_reason")
            if type(matched) is str and matched:
                self._stop_sequence = matched

    def _tool_fragment(
        self, call: dict[str, Any], position: int, out: list[ir.StreamEvent]
    ) -> None:
        wire = call.get("index")
        if type(wire) is not int:
            wire = position  # servers that send whole calls sometimes omit the index
        function = call.get("function") or {}
        call_id = call.get("id")
        index = self._tools.get(wire)
        if index is None or (type(call_id) is str and call_id and call_id != self._tool_ids[wire]):
            if type(call_id) is not str or not call_id:
                call_id = synth_call_id(self._message_id, self._next_index, wire)
            name = function.get("name")
            index = self._new_block("tool", out)
            self._tools[wire] = index
            self._tool_ids[wire] = call_id
            self._saw_tool = True
            out.append(ir.ToolCallStart(index, call_id, name if type(name) is str else ""))
        arguments = function.get("arguments")
        if type(arguments) is str:
            if arguments:
                out.append(ir.ToolCallDelta(index, arguments))
        elif type(arguments) is dict:  # Ollama has been seen sending the object itself
            out.append(ir.ToolCallDelta(index, dump_json(arguments)))


def _stream_error(error: Any) -> ir.ErrorInfo:
    if type(error) is dict:
        message = error.get("message")
        message = message if type(message) is str and message else "error in stream"
        code = error.get("code")
        kind_name = code if type(code) is str else error.get("type")
        kind_name = kind_name if type(kind_name) is str else None
        status = code if type(code) is int else 200
        param = error.get("param")
        return ir.ErrorInfo(
            kind=classify_error(status, kind_name, message),
            message=message,
            status=200,
            provider_type=kind_name,
            param=param if type(param) is str else None,
        )
    message = error if type(error) is str else "error in stream"
    return ir.ErrorInfo(kind=ir.ErrorKind.STREAM_ERROR, message=message, status=200)


_PROMPT_SUFFIX = b',"logprobs":null,"finish_reason":null}]}\n\n'
_ROLE_DELTA = b'{"role":"assistant","content":""}'
_DONE = b"data: [DONE]\n\n"


class StreamEncoder:
    """IR events -> ``chat.completion.chunk`` SSE bytes, as OpenAI sends them.

    The first chunk's delta is ``{"role": "assistant", "content": ""}`` (sent on
    ``MessageStart``, or before the first content if that never came); tool calls are numbered
    0, 1, ... in order of appearance, their first fragment carrying ``id``, ``type`` and
    ``function.name`` with empty ``arguments``; ``MessageEnd`` writes the closing chunk
    (``delta: {}`` and ``finish_reason``), then the usage chunk (``choices: []``) when
    ``include_usage``, then ``data: [DONE]``. A ``StreamError`` writes ``data: {"error": ...}``
    and no ``[DONE]``, so a client that ignores the error still sees a cut stream, not a clean
    end. Events after the terminal one encode to ``b""``.
    """

    __slots__ = (
        "_chunk",
        "_done",
        "_include_usage",
        "_role_sent",
        "_tools",
        "_usage",
        "_usage_head",
    )

    def __init__(self, *, id: str, model: str, include_usage: bool = False) -> None:
        head = b"".join(
            (
                b'{"id":',
                orjson.dumps(id),
                b',"object":"chat.completion.chunk","created":',
                str(int(time.time())).encode(),
                b',"model":',
                orjson.dumps(model),
            )
        )
        self._chunk = b"data: " + head + b',"choices":[{"index":0,"delta":'
        self._usage_head = b"data: " + head + b',"choices":[],"usage":'
        self._include_usage = include_usage
        self._role_sent = False
        self._done = False
        self._tools: dict[int, int] = {}  # IR block index -> OpenAI tool index
        self._usage = ir.Usage()

    def encode(self, event: ir.StreamEvent) -> bytes:
        """One IR event -> the bytes to write (possibly ``b""``)."""
        if self._done:
            return b""
        if type(event) is ir.TextDelta:
            if not event.text:
                return self._role()
            return self._delta(b'{"content":' + orjson.dumps(event.text) + b"}")
        if type(event) is ir.ToolCallDelta:
            tool = self._tools.get(event.index)
            lead = b""
            if tool is None:
                lead = self._tool_start(event.index, f"call_{event.index}", "")
                tool = self._tools[event.index]
            if not event.arguments:
                return lead
            return lead + self._delta(
                b'{"tool_calls":[{"index":%d,"function":{"arguments":%b}}]}'
                % (tool, orjson.dumps(event.arguments))
            )
        if type(event) is ir.ToolCallStart:
            return self._tool_start(event.index, event.id, event.name)
        if type(event) is ir.ThinkingDelta:
            if not event.text:
                return self._role()
            return self._delta(b'{"reasoning_content":' + orjson.dumps(event.text) + b"}")
        if type(event) is ir.BlockStop:
            return b""
        if type(event) is ir.MessageStart:
            self._usage = merge_usage(self._usage, event.usage)
            return self._role()
        if type(event) is ir.MessageEnd:
            self._done = True
            out = self._role() + self._chunk + b'{},"logprobs":null,"finish_reason":'
            out += b'"%s"}]}\n\n' % _FINISH_TO_WIRE[event.finish_reason].encode()
            if self._include_usage:
                usage = merge_usage(self._usage, event.usage)
                out += self._usage_head + orjson.dumps(_render_usage(usage)) + b"}\n\n"
            return out + _DONE
        if type(event) is ir.StreamError:
            self._done = True
            return b"data: " + orjson.dumps(render_error(event.error)) + b"\n\n"
        return b""

    def _role(self) -> bytes:
        if self._role_sent:
            return b""
        self._role_sent = True
        return self._chunk + _ROLE_DELTA + _PROMPT_SUFFIX

    def _delta(self, delta: bytes) -> bytes:
        return self._role() + self._chunk + delta + _PROMPT_SUFFIX

    def _tool_start(self, index: int, call_id: str, name: str) -> bytes:
        tool = len(self._tools)
        self._tools[index] = tool
        return self._delta(
            b'{"tool_calls":[{"index":%d,"id":%b,"type":"function","function":'
            b'{"name":%b,"arguments":""}}]}' % (tool, orjson.dumps(call_id), orjson.dumps(name))
        )


# ---------------------------------------------------------------------------------------------
# Errors

K = ir.ErrorKind

# kind -> (status, type, code). OpenAI has no 529: overloaded is a 503, which every OpenAI
# client retries. 5xx are all type "server_error" as OpenAI sends them; the code says which.
_ERRORS: dict[ir.ErrorKind, tuple[int, str, str | None]] = {
    K.CONNECT: (502, "server_error", "upstream_connect_error"),
    K.TIMEOUT: (504, "server_error", "timeout"),
    K.REQUEST_TIMEOUT: (408, "server_error", "request_timeout"),
    K.CONFLICT: (409, "invalid_request_error", "conflict"),
    K.RATE_LIMITED: (429, "rate_limit_error", "rate_limit_exceeded"),
    K.SERVER_ERROR: (500, "server_error", None),
    K.BAD_GATEWAY: (502, "server_error", "bad_gateway"),
    K.UNAVAILABLE: (503, "server_error", "service_unavailable"),
    K.GATEWAY_TIMEOUT: (504, "server_error", "timeout"),
    K.OVERLOADED: (503, "server_error", "overloaded"),
    K.STREAM_ERROR: (502, "server_error", "upstream_stream_error"),
    K.CONTEXT_WINDOW: (400, "invalid_request_error", "context_length_exceeded"),
    K.AUTH: (401, "invalid_request_error", "invalid_api_key"),
    K.BAD_REQUEST: (400, "invalid_request_error", None),
    K.MALFORMED: (502, "server_error", "upstream_malformed_response"),
}


def error_status(error: ir.ErrorInfo) -> int:
    """The HTTP status to send ``error`` with to an OpenAI client.

    Fixed per kind (see ``_ERRORS``), except: ``AUTH`` keeps a 403, ``BAD_REQUEST`` keeps any
    4xx status the error carries (404, 413, 422, ...).
    """
    return kept_client_status(error) or _ERRORS[error.kind][0]


def render_error(error: ir.ErrorInfo, *, request_id: str | None = None) -> dict[str, Any]:
    """``{"error": {"message", "type", "param", "code"}}`` for ``error``.

    ``request_id`` is accepted for uniformity with the other formats and not written: OpenAI
    carries it in the ``x-request-id`` header only.
    """
    _, kind, code = _ERRORS[error.kind]
    if error.kind is K.AUTH and error.status == 403:
        code = "permission_denied"
    elif error.kind is K.BAD_REQUEST and error.status == 404:
        code = "not_found"
    return {"error": {"message": error.message, "type": kind, "param": error.param, "code": code}}


def parse_error(status: int, body: bytes) -> tuple[str | None, str]:
    """The error type (an OpenAI ``code`` when it is a string, as it is the more specific:
    ``context_length_exceeded``, ``insufficient_quota``; else ``type``) and message of an
    error body. Never raises; garbage gives ``(None, <excerpt>)``."""
    return parse_error_body(status, body)


_KIND_BY_TYPE: dict[str, ir.ErrorKind] = {
    "context_length_exceeded": K.CONTEXT_WINDOW,
    "rate_limit_exceeded": K.RATE_LIMITED,
    "rate_limit_error": K.RATE_LIMITED,
    "requests": K.RATE_LIMITED,
    "tokens": K.RATE_LIMITED,
    # Quota exhaustion is an account problem like a bad key: this deployment is unusable
    # until someone pays, other deployments are not (a retry here would burn time).
    "insufficient_quota": K.AUTH,
    "invalid_api_key": K.AUTH,
    "authentication_error": K.AUTH,
    "server_error": K.SERVER_ERROR,
    "service_unavailable": K.UNAVAILABLE,
    "overloaded": K.OVERLOADED,
    "invalid_request_error": K.BAD_REQUEST,
}


def classify_error(status: int, error_type: str | None, message: str) -> ir.ErrorKind:
    """The IR kind of an OpenAI-dialect error: from the HTTP status when it is an error
    status, refined by type (``insufficient_quota`` is AUTH, ``context_length_exceeded``
    CONTEXT_WINDOW) and message; from the type alone inside a 200 stream (vLLM's integer
    ``code`` passed as ``status`` also works). See ``_common.classify``."""
    return classify(status, error_type, message, _KIND_BY_TYPE)


# The native twin of ``quiet_events`` (``hedgerow._core.loud_spans``) that the passthrough
# scanner applies; ``quiet_events`` stays the rule's definition, and the tests hold them equal.
QUIET_DIALECT: QuietDialect = "openai"


@native_quiet(QUIET_DIALECT)
def quiet_events(region: bytes) -> bool:
    """Whether a run of whole SSE events is content only, for the passthrough scanner
    (``sse.PassthroughScanner``): no ``[DONE]``, error, tool call, usage or finish reason.

    Counting ``"usage":null`` against ``"usage"`` keeps a real usage chunk loud even amid
    chunks that carry a null one. Spaced JSON (``"usage": null``) counts as loud: decoded,
    never lost. An event whose data does not end in ``}`` is loud too, so JSON cut short
    is decoded and replaced by an error event rather than passed on.
    """
    return (
        region.count(b"}\n\n") == region.count(b"\n\n")
        and b"[DONE]" not in region
        and b'"error"' not in region
        and b'"tool_calls"' not in region
        and region.count(b'"usage"') == region.count(b'"usage":null')
        and region.count(b'"finish_reason"') == region.count(b'"finish_reason":null')
    )
