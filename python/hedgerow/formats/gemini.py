"""The Google Gemini ``generateContent`` dialect, both directions.

Endpoints ``POST /v1beta/models/{model}:generateContent`` and
``:streamGenerateContent?alt=sse``: the model and whether to stream are in the URL, not the
body. So ``render_request`` returns the body only (it takes ``model`` for uniformity), and
``parse_request`` takes them as keywords from the caller that read the URL.

Mapping decisions (IR <-> wire)
-------------------------------
* Tool-call ids: Gemini's ``functionCall`` / ``functionResponse`` carry an ``id`` only in
  newer versions. A call without one gets a deterministic id (``call_<hash>`` of the response
  id, its position, name and arguments); a ``functionResponse`` without one takes the id of
  the earliest unanswered call of that function name. Rendering a request sends no ids (the
  function name links a call to its response) and names each result from
  ``ToolResultPart.name`` or else from the matching call earlier in the conversation.
  Rendering a response (to a Gemini client) includes the ids, so a client that echoes them
  keeps the link exact.
* Tool results: a ``functionResponse.response`` of exactly ``{"output": "<text>"}`` or
  ``{"error": "<text>"}`` is that text (the latter with ``is_error``); any other object is its
  JSON text. Rendering reverses it: error results become ``{"error": text}``, text that is a
  JSON object is sent as that object, other text as ``{"output": text}``.
* Function declarations render their schema as ``parametersJsonSchema`` (full JSON Schema:
  OpenAI and Anthropic clients send ``additionalProperties``, ``$schema`` and the like, which
  the older OpenAPI-subset ``parameters`` field refuses); both are read.
* ``toolConfig.functionCallingConfig``: AUTO <-> auto, NONE <-> none, ANY <-> required, ANY
  with a single ``allowedFunctionNames`` <-> tool (several names: required, the restriction
  is lost), VALIDATED -> auto.
* Thought parts (``thought: true``) <-> ``ThinkingPart``; they are not sent back in requests.
  ``thoughtSignature`` is not carried: it is an opaque token of Gemini's own context, not the
  signature of a thinking block, and Anthropic refuses a thinking block signed by anyone else
  (a conversation failing over between the two would break).
* Usage: ``promptTokenCount`` includes ``cachedContentTokenCount`` (IR ``input_tokens`` does
  not); ``candidatesTokenCount`` excludes ``thoughtsTokenCount`` (IR ``output_tokens``
  includes reasoning, as OpenAI and Anthropic count it).
* finishReason: STOP -> stop (tool_calls when the answer holds function calls: Gemini says
  STOP for those), MAX_TOKENS -> length, SAFETY / RECITATION / BLOCKLIST /
  PROHIBITED_CONTENT / SPII / IMAGE_* -> content_filter, anything else -> other. IR stop,
  tool_calls and stop_sequence render STOP, length and context_window MAX_TOKENS,
  content_filter SAFETY, other OTHER.
* Not carried: ``safetySettings``, ``responseMimeType`` / ``responseSchema``,
  ``thinkingConfig``, ``cachedContent``; non-function tools (``googleSearch``,
  ``codeExecution``) are refused with ``FormatError``. Request field names are read in
  camelCase or snake_case (Google accepts both, and the official SDK sends some snake_case).
"""

from __future__ import annotations

from typing import Any

import orjson

from hedgerow import ir
from hedgerow.formats._common import (
    FormatError,
    as_dict,
    as_str,
    classify,
    decode_arguments,
    dump_json,
    fail,
    int_or_zero,
    join_system,
    kept_client_status,
    merge_usage,
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
    str_or_none,
    synth_call_id,
    tool_call_names,
)
from hedgerow.formats.sse import SSEEvent, SSEStreamDecoder

__all__ = [
    "NAME",
    "StreamDecoder",
    "StreamEncoder",
    "classify_error",
    "error_status",
    "parse_error",
    "parse_request",
    "parse_response",
    "render_error",
    "render_request",
    "render_response",
]

NAME = "gemini"

_FINISH_FROM_WIRE: dict[str, ir.FinishReason] = {
    "STOP": "stop",
    "MAX_TOKENS": "length",
    "SAFETY": "content_filter",
    "RECITATION": "content_filter",
    "BLOCKLIST": "content_filter",
    "PROHIBITED_CONTENT": "content_filter",
    "SPII": "content_filter",
    "IMAGE_SAFETY": "content_filter",
    "IMAGE_PROHIBITED_CONTENT": "content_filter",
    "IMAGE_RECITATION": "content_filter",
}

_FINISH_TO_WIRE: dict[str, str] = {
    "stop": "STOP",
    "tool_calls": "STOP",
    "stop_sequence": "STOP",
    "length": "MAX_TOKENS",
    "context_window": "MAX_TOKENS",
    "content_filter": "SAFETY",
    "other": "OTHER",
}

_ROLES: dict[str, ir.Role] = {"user": "user", "model": "assistant", "function": "user"}

_MODES_TO_WIRE = {"auto": "AUTO", "required": "ANY", "none": "NONE"}


# ---------------------------------------------------------------------------------------------
# Requests


def parse_request(body: dict[str, Any], *, model: str = "", stream: bool = False) -> ir.ChatRequest:
    """A ``GenerateContentRequest`` body -> IR. ``FormatError`` names the bad field.

    ``model`` and ``stream`` come from the URL (``models/{model}:streamGenerateContent``),
    which only the caller has seen. Streams always carry usage: ``include_usage = stream``.
    """
    if type(body) is not dict:
        raise FormatError("request body must be a JSON object")
    body = _camel(body)
    contents = req_list(body, "contents")
    if not contents:
        fail("contents", "List should have at least 1 item")
    messages = _parse_contents(contents)
    config = _opt_obj(body, "generationConfig") or {}
    candidates = opt_int(config, "candidateCount", "generationConfig")
    if candidates is not None and candidates > 1:
        fail("generationConfig.candidateCount", "only candidateCount=1 is supported")
    stop = opt_list(config, "stopSequences", "generationConfig")
    tools = _parse_tools(opt_list(body, "tools"))
    return ir.ChatRequest(
        model=model,
        messages=messages,
        system=_parse_system(_opt_obj(body, "systemInstruction")),
        max_tokens=opt_int(config, "maxOutputTokens", "generationConfig"),
        temperature=opt_num(config, "temperature", "generationConfig"),
        top_p=opt_num(config, "topP", "generationConfig"),
        top_k=opt_int(config, "topK", "generationConfig"),
        stop=None
        if stop is None
        else [as_str(s, f"generationConfig.stopSequences.{i}") for i, s in enumerate(stop)],
        tools=tools,
        tool_choice=_parse_tool_config(_opt_obj(body, "toolConfig")),
        stream=stream,
        include_usage=stream,
    )


def _to_camel(key: str) -> str:
    head, *rest = key.split("_")
    return head + "".join(word[:1].upper() + word[1:] for word in rest)


def _camel(obj: dict[str, Any]) -> dict[str, Any]:
    """``obj`` with snake_case keys in camelCase, one level deep.

    Google's JSON mapping accepts both spellings and the official SDK mixes them
    (``parameters_json_schema``); user values beneath (``args``, ``response``, schemas) are
    never touched, as their keys are the user's.
    """
    if not any("_" in key for key in obj):
        return obj
    return {_to_camel(key) if "_" in key else key: value for key, value in obj.items()}


def _obj(value: Any, param: str) -> dict[str, Any]:
    return _camel(as_dict(value, param))


def _req_obj(obj: dict[str, Any], key: str, prefix: str) -> dict[str, Any]:
    return _camel(req_dict(obj, key, prefix))


def _opt_obj(obj: dict[str, Any], key: str, prefix: str = "") -> dict[str, Any] | None:
    value = opt_dict(obj, key, prefix)
    return None if value is None else _camel(value)


def _parse_system(instruction: dict[str, Any] | None) -> str | None:
    if instruction is None:
        return None
    parts = req_list(instruction, "parts", "systemInstruction")
    pieces = [
        req_str(_obj(part, f"systemInstruction.parts.{i}"), "text", f"systemInstruction.parts.{i}")
        for i, part in enumerate(parts)
    ]
    return join_system(pieces)


def _parse_contents(contents: list[Any]) -> list[ir.Message]:
    messages: list[ir.Message] = []
    unanswered: dict[str, list[str]] = {}  # function name -> ids of calls awaiting a response
    calls = 0
    for i, item in enumerate(contents):
        prefix = f"contents.{i}"
        content = _obj(item, prefix)
        role = _ROLES.get(opt_str(content, "role", prefix) or "user")
        if role is None:
            fail(prefix + ".role", "Input should be 'user' or 'model'")
        parts: list[ir.ContentPart] = []
        for j, raw in enumerate(req_list(content, "parts", prefix)):
            param = f"{prefix}.parts.{j}"
            part = _obj(raw, param)
            if "text" in part:
                text = as_str(part["text"], param + ".text")
                if part.get("thought") is True:
                    parts.append(ir.ThinkingPart(text))
                else:
                    parts.append(ir.TextPart(text))
            elif "functionCall" in part:
                call = _req_obj(part, "functionCall", param)
                name = req_str(call, "name", param + ".functionCall")
                arguments = dump_json(opt_dict(call, "args", param + ".functionCall") or {})
                call_id = opt_str(call, "id", param + ".functionCall") or synth_call_id(
                    "request", calls, name, arguments
                )
                calls += 1
                unanswered.setdefault(name, []).append(call_id)
                parts.append(ir.ToolCallPart(call_id, name, arguments))
            elif "functionResponse" in part:
                parts.append(_parse_function_response(part, param, unanswered))
            elif "inlineData" in part:
                data = _req_obj(part, "inlineData", param)
                parts.append(
                    ir.ImagePart(
                        media_type=req_str(data, "mimeType", param + ".inlineData"),
                        data=req_str(data, "data", param + ".inlineData"),
                    )
                )
            elif "fileData" in part:
                data = _req_obj(part, "fileData", param)
                parts.append(
                    ir.ImagePart(
                        media_type=opt_str(data, "mimeType", param + ".fileData"),
                        url=req_str(data, "fileUri", param + ".fileData"),
                    )
                )
            else:
                fail(
                    param,
                    "unsupported part: expected text, inlineData, fileData, "
                    "functionCall or functionResponse",
                )
        messages.append(ir.Message(role, parts))
    return messages


def _parse_function_response(
    part: dict[str, Any], param: str, unanswered: dict[str, list[str]]
) -> ir.ToolResultPart:
    result = _req_obj(part, "functionResponse", param)
    param += ".functionResponse"
    name = req_str(result, "name", param)
    response = opt_dict(result, "response", param) or {}
    call_id = opt_str(result, "id", param)
    waiting = unanswered.get(name)
    if call_id is None:
        call_id = waiting.pop(0) if waiting else synth_call_id("result", param, name)
    elif waiting and call_id in waiting:
        waiting.remove(call_id)
    is_error = False
    if len(response) == 1 and type(response.get("output")) is str:
        text = response["output"]
    elif len(response) == 1 and type(response.get("error")) is str:
        text = response["error"]
        is_error = True
    else:
        text = dump_json(response)
    return ir.ToolResultPart(call_id, [ir.TextPart(text)], is_error=is_error, name=name)


def _parse_tools(raw: list[Any] | None) -> list[ir.Tool] | None:
    if raw is None:
        return None
    tools: list[ir.Tool] = []
    for i, item in enumerate(raw):
        param = f"tools.{i}"
        tool = _obj(item, param)
        for key in tool:
            if key != "functionDeclarations":
                fail(f"{param}.{key}", f"unsupported tool '{key}'")
        declarations = opt_list(tool, "functionDeclarations", param) or []
        for j, entry in enumerate(declarations):
            decl_param = f"{param}.functionDeclarations.{j}"
            decl = _obj(entry, decl_param)
            schema = opt_dict(decl, "parametersJsonSchema", decl_param)
            if schema is None:
                schema = opt_dict(decl, "parameters", decl_param)
            tools.append(
                ir.Tool(
                    name=req_str(decl, "name", decl_param),
                    description=opt_str(decl, "description", decl_param),
                    parameters=schema or {},
                )
            )
    return tools


def _parse_tool_config(config: dict[str, Any] | None) -> ir.ToolChoice | None:
    if config is None:
        return None
    calling = _opt_obj(config, "functionCallingConfig", "toolConfig")
    if calling is None:
        return None
    param = "toolConfig.functionCallingConfig"
    mode = opt_str(calling, "mode", param)
    names = opt_list(calling, "allowedFunctionNames", param)
    if mode is None or mode == "MODE_UNSPECIFIED":
        return None
    if mode == "AUTO" or mode == "VALIDATED":
        return ir.ToolChoice("auto")
    if mode == "NONE":
        return ir.ToolChoice("none")
    if mode == "ANY":
        if names is not None and len(names) == 1:
            return ir.ToolChoice("tool", as_str(names[0], param + ".allowedFunctionNames.0"))
        return ir.ToolChoice("required")
    fail(param + ".mode", "Input should be 'AUTO', 'ANY', 'NONE' or 'VALIDATED'")


def render_request(request: ir.ChatRequest, model: str) -> dict[str, Any]:
    """IR -> a ``GenerateContentRequest`` body (the model goes in the URL, not here).

    Only what the IR sets is sent: ``generationConfig`` only with at least one of its fields,
    ``tools`` only when non-empty, ``toolConfig`` only alongside them. Empty text parts and
    turns left without parts are not sent (Gemini refuses both). A tool result whose function
    name cannot be found is a ``FormatError``.
    """
    body: dict[str, Any] = {"contents": _render_contents(request.messages)}
    if request.system is not None:
        body["systemInstruction"] = {"parts": [{"text": request.system}]}
    config: dict[str, Any] = {}
    if request.max_tokens is not None:
        config["maxOutputTokens"] = request.max_tokens
    if request.temperature is not None:
        config["temperature"] = request.temperature
    if request.top_p is not None:
        config["topP"] = request.top_p
    if request.top_k is not None:
        config["topK"] = request.top_k
    if request.stop is not None:
        config["stopSequences"] = list(request.stop)
    if config:
        body["generationConfig"] = config
    if request.tools:
        body["tools"] = [{"functionDeclarations": [_render_tool(t) for t in request.tools]}]
        choice = request.tool_choice
        if choice is not None:
            if choice.mode == "tool":
                calling: dict[str, Any] = {"mode": "ANY", "allowedFunctionNames": [choice.name]}
            else:
                calling = {"mode": _MODES_TO_WIRE[choice.mode]}
            body["toolConfig"] = {"functionCallingConfig": calling}
    return body


def _render_tool(tool: ir.Tool) -> dict[str, Any]:
    declaration: dict[str, Any] = {"name": tool.name}
    if tool.description is not None:
        declaration["description"] = tool.description
    if tool.parameters:
        declaration["parametersJsonSchema"] = tool.parameters
    return declaration


def _render_image(part: ir.ImagePart) -> dict[str, Any]:
    if part.data is not None:
        return {"inlineData": {"mimeType": part.media_type or "image/png", "data": part.data}}
    file_data = {"fileUri": part.url or ""}
    if part.media_type is not None:
        file_data["mimeType"] = part.media_type
    return {"fileData": file_data}


def _render_contents(messages: list[ir.Message]) -> list[dict[str, Any]]:
    names: dict[str, str] | None = None  # built on the first result that needs it
    contents: list[dict[str, Any]] = []
    for i, message in enumerate(messages):
        parts: list[dict[str, Any]] = []
        for j, part in enumerate(message.content):
            if type(part) is ir.TextPart:
                if part.text:
                    parts.append({"text": part.text})
            elif type(part) is ir.ToolCallPart:
                args = decode_arguments(part.arguments, f"messages.{i}.content.{j}")
                parts.append({"functionCall": {"name": part.name, "args": args}})
            elif type(part) is ir.ToolResultPart:
                name = part.name
                if name is None:
                    if names is None:
                        names = tool_call_names(messages)
                    name = names.get(part.tool_call_id)
                    if name is None:
                        fail(
                            f"messages.{i}.content.{j}",
                            f"no tool call '{part.tool_call_id}' names the function this "
                            "result answers",
                        )
                response = {"name": name, "response": _result_response(part)}
                parts.append({"functionResponse": response})
                parts.extend(_render_image(p) for p in part.content if type(p) is ir.ImagePart)
            elif type(part) is ir.ImagePart:
                parts.append(_render_image(part))
            # ThinkingPart: Gemini takes no reasoning back.
        if parts:
            contents.append(
                {"role": "model" if message.role == "assistant" else "user", "parts": parts}
            )
    return contents


def _result_response(part: ir.ToolResultPart) -> dict[str, Any]:
    text = "".join(p.text for p in part.content if type(p) is ir.TextPart)
    if part.is_error:
        return {"error": text}
    if text.startswith("{"):
        try:
            value = orjson.loads(text)
        except orjson.JSONDecodeError:
            pass
        else:
            if type(value) is dict:
                return value
    return {"output": text}


# ---------------------------------------------------------------------------------------------
# Responses


def parse_response(body: dict[str, Any]) -> ir.ChatResponse:
    """A ``GenerateContentResponse`` -> IR (candidate 0). A prompt blocked before any
    candidate (``promptFeedback.blockReason``) is an empty content_filter answer."""
    if type(body) is not dict:
        raise FormatError("response body must be a JSON object")
    if "error" in body:
        fail("error", "the body is an error, not a response")
    response_id = str_or_empty(body.get("responseId"))
    usage = _parse_usage(body.get("usageMetadata"))
    model = str_or_empty(body.get("modelVersion"))
    candidates = opt_list(body, "candidates")
    if not candidates:
        feedback = body.get("promptFeedback")
        if type(feedback) is dict and feedback.get("blockReason"):
            return ir.ChatResponse(response_id, model, [], "content_filter", usage)
        fail("candidates", "Field required")
    candidate = as_dict(candidates[0], "candidates.0")
    content: list[ir.ContentPart] = []
    raw_content = opt_dict(candidate, "content", "candidates.0")
    raw_parts = opt_list(raw_content, "parts", "candidates.0.content") if raw_content else None
    for j, raw in enumerate(raw_parts or ()):
        part = as_dict(raw, f"candidates.0.content.parts.{j}")
        text = part.get("text")
        call = part.get("functionCall")
        if type(text) is str:
            if part.get("thought") is True:
                content.append(ir.ThinkingPart(text))
            else:
                content.append(ir.TextPart(text))
        elif type(call) is dict:
            content.append(_call_part(call, response_id, j))
        # executableCode, inline images of image models...: not for the IR
    return ir.ChatResponse(
        id=response_id,
        model=model,
        content=content,
        finish_reason=_finish(candidate.get("finishReason"), content),
        usage=usage,
    )


def _call_part(call: dict[str, Any], seed: str, position: int) -> ir.ToolCallPart:
    name = str_or_empty(call.get("name"))
    args = call.get("args")
    arguments = dump_json(args if type(args) is dict else {})
    call_id = str_or_none(call.get("id")) or synth_call_id(seed, position, name, arguments)
    return ir.ToolCallPart(call_id, name, arguments)


def _finish(wire: Any, content: list[ir.ContentPart]) -> ir.FinishReason:
    finish = _FINISH_FROM_WIRE.get(wire, "other") if type(wire) is str else "other"
    if finish == "stop" and any(type(p) is ir.ToolCallPart for p in content):
        return "tool_calls"
    return finish


def _parse_usage(raw: Any) -> ir.Usage:
    if type(raw) is not dict:
        return ir.Usage()
    cached = int_or_zero(raw.get("cachedContentTokenCount"))
    thoughts = int_or_zero(raw.get("thoughtsTokenCount"))
    return ir.Usage(
        input_tokens=max(int_or_zero(raw.get("promptTokenCount")) - cached, 0),
        output_tokens=int_or_zero(raw.get("candidatesTokenCount")) + thoughts,
        cache_read_tokens=cached,
        reasoning_tokens=thoughts,
    )


def _render_usage(usage: ir.Usage) -> dict[str, int]:
    prompt = usage.input_tokens + usage.cache_read_tokens + usage.cache_write_tokens
    rendered = {
        "promptTokenCount": prompt,
        "candidatesTokenCount": max(usage.output_tokens - usage.reasoning_tokens, 0),
        "totalTokenCount": prompt + usage.output_tokens,
    }
    if usage.reasoning_tokens:
        rendered["thoughtsTokenCount"] = usage.reasoning_tokens
    if usage.cache_read_tokens:
        rendered["cachedContentTokenCount"] = usage.cache_read_tokens
    return rendered


def _render_call(part: ir.ToolCallPart, param: str) -> dict[str, Any]:
    args = decode_arguments(part.arguments, param)
    return {"functionCall": {"id": part.id, "name": part.name, "args": args}}


def _thought(text: str) -> dict[str, Any]:
    return {"text": text, "thought": True}


def render_response(response: ir.ChatResponse) -> dict[str, Any]:
    """IR -> a ``GenerateContentResponse``. Tool-call arguments that are not a JSON object
    are a ``FormatError``."""
    parts: list[dict[str, Any]] = []
    for j, part in enumerate(response.content):
        if type(part) is ir.TextPart:
            parts.append({"text": part.text})
        elif type(part) is ir.ToolCallPart:
            parts.append(_render_call(part, f"content.{j}.arguments"))
        elif type(part) is ir.ThinkingPart:
            parts.append(_thought(part.text))
    return {
        "candidates": [
            {
                "content": {"role": "model", "parts": parts},
                "finishReason": _FINISH_TO_WIRE[response.finish_reason],
                "index": 0,
            }
        ],
        "usageMetadata": _render_usage(response.usage),
        "modelVersion": response.model,
        "responseId": response.id,
    }


# ---------------------------------------------------------------------------------------------
# Streams


class StreamDecoder(SSEStreamDecoder):
    """``alt=sse`` bytes (each ``data:`` a whole ``GenerateContentResponse``) -> IR events.

    The stream has no terminator: it ends with the connection. So ``close`` decides: a stream
    that showed a ``finishReason`` (or a prompt ``blockReason``) ends with ``MessageEnd``
    (carrying the last ``usageMetadata`` seen, which may follow in a later chunk); one that
    did not is ``MALFORMED``. Each ``functionCall`` part arrives whole and becomes a complete
    tool-call block. A ``data: {"error": ...}`` chunk is a ``StreamError``.
    """

    __slots__ = ("_finish_reason", "_saw_call", "_usage")

    def __init__(self) -> None:
        super().__init__()
        self._finish_reason: ir.FinishReason | None = None
        self._saw_call = False
        self._usage = ir.Usage()

    def _on_event(self, event: SSEEvent, out: list[ir.StreamEvent]) -> None:
        chunk = orjson.loads(event.data)
        if type(chunk) is not dict:
            self._malformed(out, "stream chunk is not a JSON object")
            return
        error = chunk.get("error")
        if error is not None:
            self._fail(out, _stream_error(error))
            return
        response_id = str_or_empty(chunk.get("responseId"))
        self._start(out, response_id, str_or_empty(chunk.get("modelVersion")), ir.Usage())
        usage = chunk.get("usageMetadata")
        if usage is not None:
            self._usage = merge_usage(self._usage, _parse_usage(usage))
        candidates = chunk.get("candidates")
        if not candidates:
            feedback = chunk.get("promptFeedback")
            if type(feedback) is dict and feedback.get("blockReason"):
                self._finish_reason = "content_filter"
            return
        candidate = candidates[0]
        content = candidate.get("content")
        parts = content.get("parts") if type(content) is dict else None
        if parts:
            for part in parts:
                self._part(part, response_id, out)
        finish = candidate.get("finishReason")
        if type(finish) is str:
            self._finish_reason = _FINISH_FROM_WIRE.get(finish, "other")

    def _part(self, part: dict[str, Any], response_id: str, out: list[ir.StreamEvent]) -> None:
        text = part.get("text")
        if type(text) is str:
            if part.get("thought") is True:
                if text:
                    out.append(ir.ThinkingDelta(self._block("thinking", out), text))
            elif text:
                out.append(ir.TextDelta(self._block("text", out), text))
            return
        call = part.get("functionCall")
        if type(call) is dict:
            index = self._new_block("tool", out)
            tool = _call_part(call, response_id, index)
            out.append(ir.ToolCallStart(index, tool.id, tool.name))
            out.append(ir.ToolCallDelta(index, tool.arguments))
            self._close_block(out)
            self._saw_call = True

    def _on_eof(self, out: list[ir.StreamEvent]) -> None:
        finish = self._finish_reason
        if finish is None:
            self._malformed(out, "stream ended without a finishReason")
            return
        if finish == "stop" and self._saw_call:
            finish = "tool_calls"
        self._finish(out, ir.MessageEnd(finish, self._usage))


def _stream_error(error: Any) -> ir.ErrorInfo:
    if type(error) is not dict:
        message = error if type(error) is str and error else "error in stream"
        return ir.ErrorInfo(kind=ir.ErrorKind.STREAM_ERROR, message=message, status=200)
    status = str_or_none(error.get("status"))
    code = error.get("code")
    message = str_or_none(error.get("message")) or "error in stream"
    return ir.ErrorInfo(
        kind=classify_error(code if type(code) is int else 200, status, message),
        message=message,
        status=200,
        provider_type=status,
    )


_HEAD = b'data: {"candidates":[{"content":{"parts":['
_OPEN = b'],"role":"model"},"index":0}]'


class StreamEncoder:
    """IR events -> ``alt=sse`` bytes: one whole ``GenerateContentResponse`` per ``data:``
    line, ``\\r\\n\\r\\n``-terminated as Gemini sends them, no terminator.

    Text and thought deltas are written as they come. A tool call is buffered until its
    ``BlockStop`` (or ``MessageEnd``) and written whole, as Gemini sends function calls;
    arguments that are not a JSON object end the stream with an in-stream error. The last
    chunk carries ``finishReason`` and ``usageMetadata``. ``include_usage`` is accepted for
    uniformity: Gemini streams always carry usage.
    """

    __slots__ = ("_calls", "_done", "_tail", "_usage")

    def __init__(self, *, id: str, model: str, include_usage: bool = False) -> None:
        self._tail = b',"modelVersion":%b,"responseId":%b}\r\n\r\n' % (
            orjson.dumps(model),
            orjson.dumps(id),
        )
        self._calls: dict[int, tuple[str, str, list[str]]] = {}  # IR index -> id, name, args
        self._usage = ir.Usage()
        self._done = False

    def encode(self, event: ir.StreamEvent) -> bytes:
        """One IR event -> the bytes to write (possibly ``b""``)."""
        if self._done:
            return b""
        if type(event) is ir.TextDelta:
            if not event.text:
                return b""
            return _HEAD + b'{"text":' + orjson.dumps(event.text) + b"}" + _OPEN + self._tail
        if type(event) is ir.ToolCallDelta:
            call = self._calls.get(event.index)
            if call is None:
                call = self._calls[event.index] = (f"call_{event.index}", "", [])
            call[2].append(event.arguments)
            return b""
        if type(event) is ir.ThinkingDelta:
            if not event.text:
                return b""
            part = orjson.dumps(_thought(event.text))
            return _HEAD + part + _OPEN + self._tail
        if type(event) is ir.ToolCallStart:
            self._calls[event.index] = (event.id, event.name, [])
            return b""
        if type(event) is ir.BlockStop:
            return self._flush(event.index)
        if type(event) is ir.MessageStart:
            self._usage = merge_usage(self._usage, event.usage)
            return b""
        if type(event) is ir.MessageEnd:
            out = b"".join(self._flush(index) for index in list(self._calls))
            if self._done:  # a call's arguments were not JSON: the error is written
                return out
            self._done = True
            usage = orjson.dumps(_render_usage(merge_usage(self._usage, event.usage)))
            finish = _FINISH_TO_WIRE[event.finish_reason].encode()
            return (
                out + b'%b{"text":""}],"role":"model"},"finishReason":"%b","index":0}]'
                b',"usageMetadata":%b%b' % (_HEAD, finish, usage, self._tail)
            )
        if type(event) is ir.StreamError:
            return self._error(event.error)
        return b""

    def _flush(self, index: int) -> bytes:
        call = self._calls.pop(index, None)
        if call is None or self._done:
            return b""
        call_id, name, fragments = call
        try:
            args = decode_arguments("".join(fragments), "arguments")
        except FormatError:
            return self._error(
                ir.ErrorInfo(
                    kind=ir.ErrorKind.MALFORMED,
                    message=f"the arguments of tool call {call_id} are not a JSON object",
                )
            )
        part = {"functionCall": {"id": call_id, "name": name, "args": args}}
        return _HEAD + orjson.dumps(part) + _OPEN + self._tail

    def _error(self, error: ir.ErrorInfo) -> bytes:
        self._done = True
        return b"data: " + orjson.dumps(render_error(error)) + b"\r\n\r\n"


# ---------------------------------------------------------------------------------------------
# Errors

K = ir.ErrorKind

# kind -> (HTTP code, google.rpc status), as Google's APIs pair them.
_ERRORS: dict[ir.ErrorKind, tuple[int, str]] = {
    K.CONNECT: (502, "UNAVAILABLE"),
    K.TIMEOUT: (504, "DEADLINE_EXCEEDED"),
    K.REQUEST_TIMEOUT: (408, "DEADLINE_EXCEEDED"),
    K.CONFLICT: (409, "ABORTED"),
    K.RATE_LIMITED: (429, "RESOURCE_EXHAUSTED"),
    K.SERVER_ERROR: (500, "INTERNAL"),
    K.BAD_GATEWAY: (502, "UNAVAILABLE"),
    K.UNAVAILABLE: (503, "UNAVAILABLE"),
    K.GATEWAY_TIMEOUT: (504, "DEADLINE_EXCEEDED"),
    K.OVERLOADED: (503, "UNAVAILABLE"),
    K.STREAM_ERROR: (502, "INTERNAL"),
    K.CONTEXT_WINDOW: (400, "INVALID_ARGUMENT"),
    K.AUTH: (401, "UNAUTHENTICATED"),
    K.BAD_REQUEST: (400, "INVALID_ARGUMENT"),
    K.MALFORMED: (502, "INTERNAL"),
}

# The 4xx an error may keep (``kept_client_status``), with their google.rpc status (others:
# FAILED_PRECONDITION).
_CLIENT_STATUSES = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    409: "ABORTED",
    413: "INVALID_ARGUMENT",
    499: "CANCELLED",
}


def _code_and_status(error: ir.ErrorInfo) -> tuple[int, str]:
    kept = kept_client_status(error)
    if kept is not None:
        return kept, _CLIENT_STATUSES.get(kept, "FAILED_PRECONDITION")
    return _ERRORS[error.kind]


def error_status(error: ir.ErrorInfo) -> int:
    """The HTTP status to send ``error`` with to a Gemini client (``OVERLOADED`` is 503
    UNAVAILABLE, as Gemini reports an overloaded model)."""
    return _code_and_status(error)[0]


def render_error(error: ir.ErrorInfo, *, request_id: str | None = None) -> dict[str, Any]:
    """``{"error": {"code", "message", "status"}}`` for ``error`` (``request_id`` is accepted
    for uniformity with the other formats; Gemini error bodies do not carry one)."""
    code, status = _code_and_status(error)
    return {"error": {"code": code, "message": error.message, "status": status}}


def parse_error(status: int, body: bytes) -> tuple[str | None, str]:
    """The ``error.status`` (``RESOURCE_EXHAUSTED``) and ``error.message`` of an error body,
    also when wrapped in a list (the non-SSE stream). Never raises; garbage gives
    ``(None, <excerpt>)``."""
    return parse_error_body(status, body)


_KIND_BY_STATUS: dict[str, ir.ErrorKind] = {
    "RESOURCE_EXHAUSTED": K.RATE_LIMITED,
    "INTERNAL": K.SERVER_ERROR,
    "UNKNOWN": K.SERVER_ERROR,
    "UNAVAILABLE": K.UNAVAILABLE,
    "DEADLINE_EXCEEDED": K.GATEWAY_TIMEOUT,
    "UNAUTHENTICATED": K.AUTH,
    "PERMISSION_DENIED": K.AUTH,
    "INVALID_ARGUMENT": K.BAD_REQUEST,
    "FAILED_PRECONDITION": K.BAD_REQUEST,
    "NOT_FOUND": K.BAD_REQUEST,
}


def classify_error(status: int, error_status_name: str | None, message: str) -> ir.ErrorKind:
    """The IR kind of a Gemini error: from the HTTP code (also the ``code`` of an in-stream
    error), else the google.rpc status; a 400 that says the API key is invalid is AUTH, one
    that says the input is too long CONTEXT_WINDOW. See ``_common.classify``."""
    return classify(status, error_status_name, message, _KIND_BY_STATUS)
