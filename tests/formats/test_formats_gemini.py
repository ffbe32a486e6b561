"""The Gemini generateContent dialect: requests, responses, streams, errors."""

from __future__ import annotations

import random
from typing import Any

import msgspec
import orjson
import pytest

from hedgerow import ir
from hedgerow.formats import FormatError
from hedgerow.formats import gemini as fmt
from tests.formats.helpers import accumulate, byte_by_byte, decode, encode, random_splits

K = ir.ErrorKind

FULL_REQUEST: dict[str, Any] = {
    "contents": [
        {"role": "user", "parts": [{"text": "Weather in Paris and Rome?"}]},
        {
            "role": "model",
            "parts": [
                {"text": "thinking...", "thought": True, "thoughtSignature": "c2ln"},
                {"functionCall": {"name": "weather", "args": {"city": "Paris"}}},
                {"functionCall": {"name": "weather", "args": {"city": "Rome"}}},
            ],
        },
        {
            "role": "user",
            "parts": [
                {"functionResponse": {"name": "weather", "response": {"output": "18C"}}},
                {"functionResponse": {"name": "weather", "response": {"temp": 24, "unit": "C"}}},
            ],
        },
        {
            "parts": [
                {"text": "And these?"},
                {"inlineData": {"mimeType": "image/png", "data": "iVBOR"}},
                {"fileData": {"mimeType": "image/jpeg", "fileUri": "gs://b/a.jpg"}},
            ]
        },
    ],
    "systemInstruction": {"parts": [{"text": "Be brief."}, {"text": "Metric."}]},
    "generationConfig": {
        "maxOutputTokens": 200,
        "temperature": 0.4,
        "topP": 0.9,
        "topK": 32,
        "stopSequences": ["END"],
        "responseMimeType": "text/plain",
    },
    "tools": [
        {
            "functionDeclarations": [
                {
                    "name": "weather",
                    "description": "Current weather",
                    "parameters": {"type": "OBJECT", "properties": {"city": {"type": "STRING"}}},
                },
                {"name": "time", "parametersJsonSchema": {"type": "object"}},
            ]
        }
    ],
    "toolConfig": {"functionCallingConfig": {"mode": "ANY", "allowedFunctionNames": ["weather"]}},
    "safetySettings": [],
}


def test_parse_full_request() -> None:
    req = fmt.parse_request(FULL_REQUEST, model="gemini-2.5-flash", stream=True)
    assert (req.model, req.stream, req.include_usage) == ("gemini-2.5-flash", True, True)
    assert req.system == "Be brief.\n\nMetric."
    assert (req.max_tokens, req.temperature, req.top_p, req.top_k, req.stop) == (
        200,
        0.4,
        0.9,
        32,
        ["END"],
    )
    assert req.tool_choice == ir.ToolChoice("tool", "weather")
    assert req.tools is not None and [t.name for t in req.tools] == ["weather", "time"]
    assert req.tools[1].parameters == {"type": "object"}
    user, model, results, last = req.messages
    assert user == ir.Message("user", [ir.TextPart("Weather in Paris and Rome?")])
    assert model.role == "assistant"
    thought, call_paris, call_rome = model.content
    assert thought == ir.ThinkingPart("thinking...")  # thoughtSignature: not carried
    assert isinstance(call_paris, ir.ToolCallPart) and isinstance(call_rome, ir.ToolCallPart)
    assert call_paris.arguments == '{"city":"Paris"}' and call_paris.id.startswith("call_")
    assert call_paris.id != call_rome.id
    # Results without ids answer the earliest unanswered call of the same name.
    assert results.content == [
        ir.ToolResultPart(call_paris.id, [ir.TextPart("18C")], name="weather"),
        ir.ToolResultPart(call_rome.id, [ir.TextPart('{"temp":24,"unit":"C"}')], name="weather"),
    ]
    assert last.content == [
        ir.TextPart("And these?"),
        ir.ImagePart(media_type="image/png", data="iVBOR"),
        ir.ImagePart(media_type="image/jpeg", url="gs://b/a.jpg"),
    ]
    # Deterministic: the same body gives the same ids.
    assert fmt.parse_request(FULL_REQUEST).messages == req.messages


def test_wire_ids_are_kept() -> None:
    body = {
        "contents": [
            {"role": "model", "parts": [{"functionCall": {"id": "a1", "name": "f", "args": {}}}]},
            {
                "role": "user",
                "parts": [
                    {"functionResponse": {"id": "a1", "name": "f", "response": {"error": "no"}}}
                ],
            },
        ]
    }
    req = fmt.parse_request(body)
    assert req.messages[0].content == [ir.ToolCallPart("a1", "f", "{}")]
    assert req.messages[1].content == [
        ir.ToolResultPart("a1", [ir.TextPart("no")], is_error=True, name="f")
    ]
    assert req.model == "" and req.stream is False


@pytest.mark.parametrize(
    ("config", "choice"),
    [
        ({"mode": "AUTO"}, ir.ToolChoice("auto")),
        ({"mode": "VALIDATED"}, ir.ToolChoice("auto")),
        ({"mode": "NONE"}, ir.ToolChoice("none")),
        ({"mode": "ANY"}, ir.ToolChoice("required")),
        ({"mode": "ANY", "allowedFunctionNames": ["a", "b"]}, ir.ToolChoice("required")),
        ({"mode": "ANY", "allowedFunctionNames": ["a"]}, ir.ToolChoice("tool", "a")),
        ({}, None),
    ],
)
def test_tool_config(config: dict[str, Any], choice: ir.ToolChoice | None) -> None:
    body = {
        "contents": [{"parts": [{"text": "x"}]}],
        "toolConfig": {"functionCallingConfig": config},
    }
    assert fmt.parse_request(body).tool_choice == choice


def test_render_request() -> None:
    req = fmt.parse_request(FULL_REQUEST)
    body = fmt.render_request(req, "gemini-x")
    assert "model" not in body
    assert body["systemInstruction"] == {"parts": [{"text": "Be brief.\n\nMetric."}]}
    assert body["generationConfig"] == {
        "maxOutputTokens": 200,
        "temperature": 0.4,
        "topP": 0.9,
        "topK": 32,
        "stopSequences": ["END"],
    }
    assert body["toolConfig"] == {
        "functionCallingConfig": {"mode": "ANY", "allowedFunctionNames": ["weather"]}
    }
    assert body["tools"][0]["functionDeclarations"][0] == {
        "name": "weather",
        "description": "Current weather",
        "parametersJsonSchema": {"type": "OBJECT", "properties": {"city": {"type": "STRING"}}},
    }
    model_turn = body["contents"][1]
    # Thoughts are not sent back; calls go without (made-up) ids.
    assert model_turn == {
        "role": "model",
        "parts": [
            {"functionCall": {"name": "weather", "args": {"city": "Paris"}}},
            {"functionCall": {"name": "weather", "args": {"city": "Rome"}}},
        ],
    }
    assert body["contents"][2]["parts"] == [
        {"functionResponse": {"name": "weather", "response": {"output": "18C"}}},
        {"functionResponse": {"name": "weather", "response": {"temp": 24, "unit": "C"}}},
    ]
    assert body["contents"][3] == FULL_REQUEST["contents"][3] | {"role": "user"}
    # and back: the same IR, thoughts aside
    again = fmt.parse_request(body)
    assert again.messages[2:] == req.messages[2:]


def test_render_request_names_results_from_the_calls() -> None:
    req = ir.ChatRequest(
        "m",
        [
            ir.Message("assistant", [ir.ToolCallPart("toolu_1", "lookup", '{"q":"x"}')]),
            ir.Message(
                "user",
                [
                    ir.ToolResultPart("toolu_1", [ir.TextPart("plain text")]),
                    ir.ToolResultPart("toolu_1", [ir.TextPart("bad")], is_error=True),
                    ir.ToolResultPart(
                        "toolu_1", [ir.TextPart("[1]"), ir.ImagePart(url="https://i")]
                    ),
                ],
            ),
        ],
    )
    parts = fmt.render_request(req, "g")["contents"][1]["parts"]
    assert parts == [
        {"functionResponse": {"name": "lookup", "response": {"output": "plain text"}}},
        {"functionResponse": {"name": "lookup", "response": {"error": "bad"}}},
        {"functionResponse": {"name": "lookup", "response": {"output": "[1]"}}},
        {"fileData": {"fileUri": "https://i"}},
    ]


def test_render_request_refusals() -> None:
    orphan = ir.ChatRequest("m", [ir.Message("user", [ir.ToolResultPart("nope", [])])])
    with pytest.raises(FormatError) as info:
        fmt.render_request(orphan, "g")
    assert info.value.param == "messages.0.content.0"
    bad_args = ir.ChatRequest("m", [ir.Message("assistant", [ir.ToolCallPart("c", "f", "{x")])])
    with pytest.raises(FormatError) as info:
        fmt.render_request(bad_args, "g")
    assert info.value.param == "messages.0.content.0"


def test_render_request_adds_nothing_the_ir_left_unset() -> None:
    req = ir.ChatRequest(
        "m",
        [
            ir.Message("user", [ir.TextPart("x"), ir.TextPart("")]),
            ir.Message("assistant", [ir.ThinkingPart("only thoughts")]),
        ],
        tools=[],
        tool_choice=ir.ToolChoice("auto"),
    )
    assert fmt.render_request(req, "g") == {
        "contents": [{"role": "user", "parts": [{"text": "x"}]}]
    }


def _body(**changes: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"contents": [{"role": "user", "parts": [{"text": "x"}]}]}
    body.update(changes)
    return {k: v for k, v in body.items() if v is not ...}


def _parts(*parts: Any) -> list[dict[str, Any]]:
    return [{"role": "user", "parts": list(parts)}]


@pytest.mark.parametrize(
    ("body", "param"),
    [
        (_body(contents=...), "contents"),
        (_body(contents=[]), "contents"),
        (_body(contents=[{"role": "user"}]), "contents.0.parts"),
        (_body(contents=[{"role": "system", "parts": []}]), "contents.0.role"),
        (_body(contents=_parts({"text": 1})), "contents.0.parts.0.text"),
        (_body(contents=_parts({"executableCode": {}})), "contents.0.parts.0"),
        (
            _body(contents=_parts({"functionCall": {"args": {}}})),
            "contents.0.parts.0.functionCall.name",
        ),
        (
            _body(contents=_parts({"functionCall": {"name": "f", "args": []}})),
            "contents.0.parts.0.functionCall.args",
        ),
        (
            _body(contents=_parts({"functionResponse": {"name": "f", "response": "x"}})),
            "contents.0.parts.0.functionResponse.response",
        ),
        (
            _body(contents=_parts({"inlineData": {"data": "x"}})),
            "contents.0.parts.0.inlineData.mimeType",
        ),
        (_body(contents=_parts({"fileData": {}})), "contents.0.parts.0.fileData.fileUri"),
        (_body(systemInstruction={"parts": [{}]}), "systemInstruction.parts.0.text"),
        (_body(systemInstruction="x"), "systemInstruction"),
        (_body(generationConfig={"maxOutputTokens": "9"}), "generationConfig.maxOutputTokens"),
        (_body(generationConfig={"candidateCount": 2}), "generationConfig.candidateCount"),
        (_body(generationConfig={"stopSequences": [1]}), "generationConfig.stopSequences.0"),
        (_body(tools=[{"googleSearch": {}}]), "tools.0.googleSearch"),
        (_body(tools=[{"functionDeclarations": [{}]}]), "tools.0.functionDeclarations.0.name"),
        (
            _body(toolConfig={"functionCallingConfig": {"mode": "SOMETIMES"}}),
            "toolConfig.functionCallingConfig.mode",
        ),
    ],
)
def test_parse_request_errors_name_the_field(body: dict[str, Any], param: str) -> None:
    with pytest.raises(FormatError) as info:
        fmt.parse_request(body)
    assert info.value.param == param


# ---------------------------------------------------------------------------------------------
# Responses

RESPONSE: dict[str, Any] = {
    "candidates": [
        {
            "content": {
                "role": "model",
                "parts": [
                    {"text": "planning", "thought": True},
                    {"text": "Let me look."},
                    {"functionCall": {"name": "weather", "args": {"city": "Paris"}}},
                ],
            },
            "finishReason": "STOP",
            "index": 0,
            "safetyRatings": [],
        }
    ],
    "usageMetadata": {
        "promptTokenCount": 120,
        "candidatesTokenCount": 30,
        "totalTokenCount": 170,
        "thoughtsTokenCount": 20,
        "cachedContentTokenCount": 100,
    },
    "modelVersion": "gemini-2.5-flash",
    "responseId": "resp-abc",
}


def test_parse_response() -> None:
    resp = fmt.parse_response(RESPONSE)
    assert resp.id == "resp-abc" and resp.model == "gemini-2.5-flash"
    assert resp.finish_reason == "tool_calls"  # Gemini says STOP for function calls
    assert resp.usage == ir.Usage(
        input_tokens=20, output_tokens=50, cache_read_tokens=100, reasoning_tokens=20
    )
    thought, text, call = resp.content
    assert thought == ir.ThinkingPart("planning") and text == ir.TextPart("Let me look.")
    assert isinstance(call, ir.ToolCallPart) and call.arguments == '{"city":"Paris"}'
    # deterministic, and distinct between responses
    assert fmt.parse_response(RESPONSE).content[2] == call
    other = fmt.parse_response({**RESPONSE, "responseId": "resp-def"}).content[2]
    assert isinstance(other, ir.ToolCallPart) and other.id != call.id


def test_render_response_round_trip_and_sdk_model() -> None:
    from google.genai import types

    resp = fmt.parse_response(RESPONSE)
    body = fmt.render_response(resp)
    sdk = types.GenerateContentResponse.model_validate(body)
    assert sdk.function_calls is not None and sdk.function_calls[0].args == {"city": "Paris"}
    assert sdk.function_calls[0].id == resp.content[2].id  # type: ignore[union-attr]
    assert sdk.usage_metadata is not None
    assert sdk.usage_metadata.prompt_token_count == 120
    assert sdk.usage_metadata.candidates_token_count == 30
    assert sdk.usage_metadata.thoughts_token_count == 20
    assert sdk.usage_metadata.cached_content_token_count == 100
    assert sdk.candidates is not None and sdk.candidates[0].finish_reason == "STOP"
    assert fmt.parse_response(body) == resp


@pytest.mark.parametrize(
    ("wire", "finish"),
    [
        ("STOP", "stop"),
        ("MAX_TOKENS", "length"),
        ("SAFETY", "content_filter"),
        ("RECITATION", "content_filter"),
        ("PROHIBITED_CONTENT", "content_filter"),
        ("MALFORMED_FUNCTION_CALL", "other"),
        ("OTHER", "other"),
        (None, "other"),
    ],
)
def test_finish_reason_from_wire(wire: str | None, finish: str) -> None:
    body = {"candidates": [{"content": {"parts": [{"text": "a"}]}, "finishReason": wire}]}
    assert fmt.parse_response(body).finish_reason == finish


@pytest.mark.parametrize(
    ("finish", "wire"),
    [
        ("stop", "STOP"),
        ("tool_calls", "STOP"),
        ("stop_sequence", "STOP"),
        ("length", "MAX_TOKENS"),
        ("context_window", "MAX_TOKENS"),
        ("content_filter", "SAFETY"),
        ("other", "OTHER"),
    ],
)
def test_finish_reason_to_wire(finish: ir.FinishReason, wire: str) -> None:
    resp = ir.ChatResponse("x", "m", [], finish, ir.Usage())
    assert fmt.render_response(resp)["candidates"][0]["finishReason"] == wire


def test_blocked_prompt_is_an_empty_filtered_answer() -> None:
    body = {"promptFeedback": {"blockReason": "SAFETY"}, "usageMetadata": {"promptTokenCount": 4}}
    assert fmt.parse_response(body) == ir.ChatResponse("", "", [], "content_filter", ir.Usage(4))


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"candidates": []},
        {"error": {"code": 500}},
        {"candidates": [1]},
        {"candidates": [{"content": 1}]},
    ],
)
def test_parse_response_errors(body: dict[str, Any]) -> None:
    with pytest.raises(FormatError):
        fmt.parse_response(body)


# ---------------------------------------------------------------------------------------------
# Streams


def sse(obj: dict[str, Any]) -> bytes:
    return b"data: " + orjson.dumps(obj) + b"\r\n\r\n"


def candidate(parts: list[dict[str, Any]], finish: str | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {
        "candidates": [{"content": {"role": "model", "parts": parts}, "index": 0}],
        "modelVersion": "gemini-2.5-flash",
        "responseId": "r1",
    }
    if finish:
        out["candidates"][0]["finishReason"] = finish
    return out


GEMINI_STREAM = b"".join(
    [
        sse(candidate([{"text": "**Plan**", "thought": True}])),
        sse(candidate([{"text": "Hello"}])),
        sse(candidate([{"text": " world"}])),
        sse(
            candidate(
                [
                    {"functionCall": {"name": "f", "args": {"a": 1}}, "thoughtSignature": "x"},
                    {"functionCall": {"id": "g1", "name": "g", "args": {}}},
                ]
            )
        ),
        sse(
            candidate([{"text": ""}], "STOP")
            | {
                "usageMetadata": {
                    "promptTokenCount": 9,
                    "candidatesTokenCount": 7,
                    "totalTokenCount": 16,
                }
            }
        ),
    ]
)


def _expected() -> list[ir.StreamEvent]:
    f_id = fmt.parse_response(
        {
            "responseId": "r1",
            "candidates": [
                {
                    "content": {
                        "parts": [
                            {"text": "a"},
                            {"text": "b"},
                            {"functionCall": {"name": "f", "args": {"a": 1}}},
                        ]
                    }
                }
            ],
        }
    ).content[2]
    assert isinstance(f_id, ir.ToolCallPart)
    return [
        ir.MessageStart("r1", "gemini-2.5-flash"),
        ir.ThinkingDelta(0, "**Plan**"),
        ir.BlockStop(0),
        ir.TextDelta(1, "Hello"),
        ir.TextDelta(1, " world"),
        ir.BlockStop(1),
        ir.ToolCallStart(2, f_id.id, "f"),
        ir.ToolCallDelta(2, '{"a":1}'),
        ir.BlockStop(2),
        ir.ToolCallStart(3, "g1", "g"),
        ir.ToolCallDelta(3, "{}"),
        ir.BlockStop(3),
        ir.MessageEnd("tool_calls", ir.Usage(9, 7)),
    ]


def test_decode_stream(rng: random.Random) -> None:
    expected = _expected()
    assert decode(fmt, GEMINI_STREAM) == expected
    assert decode(fmt, GEMINI_STREAM, byte_by_byte(GEMINI_STREAM)) == expected
    for _ in range(20):
        assert decode(fmt, GEMINI_STREAM, random_splits(GEMINI_STREAM, rng)) == expected


def test_completeness_is_decided_at_close() -> None:
    decoder = fmt.StreamDecoder()
    events = decoder.feed(GEMINI_STREAM)
    assert not any(isinstance(e, ir.MessageEnd) for e in events)  # usage may still come
    late_usage = sse({"usageMetadata": {"promptTokenCount": 10, "candidatesTokenCount": 8}})
    assert decoder.feed(late_usage) == []
    assert decoder.close() == [ir.MessageEnd("tool_calls", ir.Usage(10, 8))]


@pytest.mark.parametrize(
    "stream",
    [
        b"",
        sse(candidate([{"text": "Hello"}])),  # no finishReason: cut
        GEMINI_STREAM[:-30],  # the last chunk cut mid-line
        b"data: [1]\r\n\r\n",
        b"data: {oops\r\n\r\n",
    ],
)
def test_cut_or_garbled_streams_are_malformed(stream: bytes) -> None:
    events = decode(fmt, stream)
    assert isinstance(events[-1], ir.StreamError) and events[-1].error.kind is K.MALFORMED


def test_in_stream_error() -> None:
    error = {"error": {"code": 503, "message": "The model is overloaded.", "status": "UNAVAILABLE"}}
    events = decode(fmt, sse(candidate([{"text": "a"}])) + sse(error))
    assert events[-1] == ir.StreamError(
        ir.ErrorInfo(K.UNAVAILABLE, "The model is overloaded.", 200, "UNAVAILABLE")
    )


def test_blocked_prompt_stream_ends_as_content_filter() -> None:
    events = decode(fmt, sse({"promptFeedback": {"blockReason": "OTHER"}, "responseId": "r"}))
    assert events == [ir.MessageStart("r", ""), ir.MessageEnd("content_filter")]


def test_encoder_output() -> None:
    events = _expected()
    data = encode(fmt, events, id="r1", model="gemini-2.5-flash")
    chunks = [orjson.loads(c[6:]) for c in data.split(b"\r\n\r\n") if c]
    assert all(c["responseId"] == "r1" and c["modelVersion"] == "gemini-2.5-flash" for c in chunks)
    assert [c["candidates"][0]["content"]["parts"] for c in chunks] == [
        [{"text": "**Plan**", "thought": True}],
        [{"text": "Hello"}],
        [{"text": " world"}],
        [{"functionCall": {"id": events[6].id, "name": "f", "args": {"a": 1}}}],  # type: ignore[union-attr]
        [{"functionCall": {"id": "g1", "name": "g", "args": {}}}],
        [{"text": ""}],
    ]
    assert chunks[-1]["candidates"][0]["finishReason"] == "STOP"
    assert chunks[-1]["usageMetadata"] == {
        "promptTokenCount": 9,
        "candidatesTokenCount": 7,
        "totalTokenCount": 16,
    }
    assert decode(fmt, data) == events


def test_encoder_buffers_tool_calls_until_they_end() -> None:
    encoder = fmt.StreamEncoder(id="r", model="g")
    assert encoder.encode(ir.ToolCallStart(0, "c", "f")) == b""
    assert encoder.encode(ir.ToolCallDelta(0, '{"a":')) == b""
    assert encoder.encode(ir.ToolCallDelta(0, "1}")) == b""
    out = encoder.encode(ir.BlockStop(0))
    assert b'"functionCall":{"id":"c","name":"f","args":{"a":1}}' in out
    # a call never stopped is flushed by MessageEnd
    encoder.encode(ir.ToolCallDelta(1, "{}"))
    out = encoder.encode(ir.MessageEnd("tool_calls"))
    assert out.count(b"\r\n\r\n") == 2 and b'"name":""' in out


def test_encoder_bad_arguments_end_with_an_error() -> None:
    encoder = fmt.StreamEncoder(id="r", model="g")
    encoder.encode(ir.ToolCallStart(0, "c", "f"))
    encoder.encode(ir.ToolCallDelta(0, "{not json"))
    out = encoder.encode(ir.MessageEnd("tool_calls"))
    assert out.startswith(b'data: {"error":{"code":502,')
    assert encoder.encode(ir.TextDelta(1, "late")) == b""
    events = decode(fmt, out)
    assert isinstance(events[-1], ir.StreamError)


def test_encoder_stream_error() -> None:
    encoder = fmt.StreamEncoder(id="r", model="g")
    out = encoder.encode(ir.StreamError(ir.ErrorInfo(K.RATE_LIMITED, "slow down")))
    assert (
        out
        == b'data: {"error":{"code":429,"message":"slow down","status":"RESOURCE_EXHAUSTED"}}\r\n\r\n'
    )


def test_accumulated_stream_matches_the_response() -> None:
    resp = accumulate(_expected())
    assert fmt.parse_response(fmt.render_response(resp)) == msgspec.structs.replace(
        resp, content=resp.content
    )


# ---------------------------------------------------------------------------------------------
# Errors


@pytest.mark.parametrize(
    ("kind", "code", "status"),
    [
        (K.CONNECT, 502, "UNAVAILABLE"),
        (K.TIMEOUT, 504, "DEADLINE_EXCEEDED"),
        (K.REQUEST_TIMEOUT, 408, "DEADLINE_EXCEEDED"),
        (K.CONFLICT, 409, "ABORTED"),
        (K.RATE_LIMITED, 429, "RESOURCE_EXHAUSTED"),
        (K.SERVER_ERROR, 500, "INTERNAL"),
        (K.BAD_GATEWAY, 502, "UNAVAILABLE"),
        (K.UNAVAILABLE, 503, "UNAVAILABLE"),
        (K.GATEWAY_TIMEOUT, 504, "DEADLINE_EXCEEDED"),
        (K.OVERLOADED, 503, "UNAVAILABLE"),
        (K.STREAM_ERROR, 502, "INTERNAL"),
        (K.CONTEXT_WINDOW, 400, "INVALID_ARGUMENT"),
        (K.AUTH, 401, "UNAUTHENTICATED"),
        (K.BAD_REQUEST, 400, "INVALID_ARGUMENT"),
        (K.MALFORMED, 502, "INTERNAL"),
    ],
)
def test_errors_by_kind(kind: ir.ErrorKind, code: int, status: str) -> None:
    error = ir.ErrorInfo(kind, "boom")
    assert fmt.error_status(error) == code
    assert fmt.render_error(error) == {"error": {"code": code, "message": "boom", "status": status}}


def test_error_status_keeps_specific_client_statuses() -> None:
    assert (
        fmt.render_error(ir.ErrorInfo(K.AUTH, "x", status=403))["error"]["status"]
        == "PERMISSION_DENIED"
    )
    assert fmt.render_error(ir.ErrorInfo(K.BAD_REQUEST, "x", status=404))["error"] == {
        "code": 404,
        "message": "x",
        "status": "NOT_FOUND",
    }
    assert fmt.error_status(ir.ErrorInfo(K.BAD_REQUEST, "x", status=422)) == 422


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (
            b'{"error":{"code":429,"message":"Resource exhausted","status":"RESOURCE_EXHAUSTED","details":[]}}',
            ("RESOURCE_EXHAUSTED", "Resource exhausted"),
        ),
        (
            b'[{"error":{"code":503,"message":"overloaded","status":"UNAVAILABLE"}}]',
            ("UNAVAILABLE", "overloaded"),
        ),
        (b"Service Unavailable", (None, "Service Unavailable")),
    ],
)
def test_parse_error(body: bytes, expected: tuple[str | None, str]) -> None:
    assert fmt.parse_error(503, body) == expected


@pytest.mark.parametrize(
    ("status", "name", "message", "kind"),
    [
        (400, "INVALID_ARGUMENT", "API key not valid. Please pass a valid API key.", K.AUTH),
        (
            400,
            "INVALID_ARGUMENT",
            "The input token count (1200000) exceeds the maximum number of tokens allowed (1048576).",
            K.CONTEXT_WINDOW,
        ),
        (400, "INVALID_ARGUMENT", "bad field", K.BAD_REQUEST),
        (429, "RESOURCE_EXHAUSTED", "quota", K.RATE_LIMITED),
        (503, "UNAVAILABLE", "The model is overloaded.", K.UNAVAILABLE),
        (504, "DEADLINE_EXCEEDED", "deadline", K.GATEWAY_TIMEOUT),
        (200, "INTERNAL", "x", K.SERVER_ERROR),
        (200, None, "x", K.STREAM_ERROR),
    ],
)
def test_classify_error(status: int, name: str | None, message: str, kind: ir.ErrorKind) -> None:
    assert fmt.classify_error(status, name, message) is kind


def test_snake_case_field_names_are_read() -> None:
    # Google's JSON mapping takes both spellings; the official SDK sends some snake_case.
    body = {
        "contents": [
            {
                "role": "user",
                "parts": [
                    {"text": "x"},
                    {"inline_data": {"mime_type": "image/png", "data": "AA"}},
                    {"function_response": {"name": "f", "response": {"snake_key": 1}}},
                ],
            }
        ],
        "system_instruction": {"parts": [{"text": "s"}]},
        "generation_config": {"max_output_tokens": 5, "stop_sequences": ["x"]},
        "tools": [
            {
                "function_declarations": [
                    {"name": "f", "parameters_json_schema": {"properties": {"a_b": {}}}}
                ]
            }
        ],
        "tool_config": {"function_calling_config": {"mode": "NONE"}},
    }
    req = fmt.parse_request(body)
    assert req.system == "s" and req.max_tokens == 5 and req.stop == ["x"]
    assert req.tool_choice == ir.ToolChoice("none")
    # user values beneath keep their own keys
    assert req.tools == [ir.Tool("f", None, {"properties": {"a_b": {}}})]
    assert req.messages[0].content[1] == ir.ImagePart(media_type="image/png", data="AA")
    result = req.messages[0].content[2]
    assert isinstance(result, ir.ToolResultPart)
    assert result.content == [ir.TextPart('{"snake_key":1}')]
