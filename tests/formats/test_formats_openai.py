"""The OpenAI Chat Completions dialect: requests, responses, streams, errors."""

from __future__ import annotations

import random
from typing import Any

import orjson
import pytest

from hedgerow import ir
from hedgerow.formats import FormatError
from hedgerow.formats import openai as fmt
from tests.formats.helpers import accumulate, byte_by_byte, decode, encode, random_splits

K = ir.ErrorKind

FULL_REQUEST: dict[str, Any] = {
    "model": "gpt-4o",
    "messages": [
        {"role": "system", "content": "Be brief."},
        {"role": "developer", "content": [{"type": "text", "text": "Use metric units."}]},
        {"role": "user", "content": "Weather in Paris and Rome?"},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "call_1",
                    "type": "function",
                    "function": {"name": "weather", "arguments": '{"city":"Paris"}'},
                },
                {
                    "id": "call_2",
                    "type": "function",
                    "function": {"name": "weather", "arguments": '{"city":"Rome"}'},
                },
            ],
        },
        {"role": "tool", "tool_call_id": "call_1", "content": "18C"},
        {"role": "tool", "tool_call_id": "call_2", "content": [{"type": "text", "text": "24C"}]},
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "And this?"},
                {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBOR"}},
                {"type": "image_url", "image_url": {"url": "https://x.test/a.jpg"}},
            ],
        },
    ],
    "tools": [
        {
            "type": "function",
            "function": {
                "name": "weather",
                "description": "Current weather",
                "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
            },
        }
    ],
    "tool_choice": {"type": "function", "function": {"name": "weather"}},
    "parallel_tool_calls": False,
    "max_completion_tokens": 300,
    "max_tokens": 100,
    "temperature": 0.5,
    "top_p": 0.9,
    "stop": "END",
    "stream": True,
    "stream_options": {"include_usage": True},
    "user": "u-42",
    "seed": 7,
}


def test_parse_full_request() -> None:
    req = fmt.parse_request(FULL_REQUEST)
    assert req.model == "gpt-4o"
    assert req.system == "Be brief.\n\nUse metric units."
    assert req.max_tokens == 300  # max_completion_tokens wins over max_tokens
    assert (req.temperature, req.top_p, req.stop, req.user) == (0.5, 0.9, ["END"], "u-42")
    assert (req.stream, req.include_usage, req.parallel_tool_calls) == (True, True, False)
    assert req.tool_choice == ir.ToolChoice("tool", "weather")
    assert req.tools == [
        ir.Tool(
            "weather",
            "Current weather",
            {"type": "object", "properties": {"city": {"type": "string"}}},
        )
    ]
    assert req.messages == [
        ir.Message("user", [ir.TextPart("Weather in Paris and Rome?")]),
        ir.Message(
            "assistant",
            [
                ir.ToolCallPart("call_1", "weather", '{"city":"Paris"}'),
                ir.ToolCallPart("call_2", "weather", '{"city":"Rome"}'),
            ],
        ),
        # consecutive tool messages share one user turn
        ir.Message(
            "user",
            [
                ir.ToolResultPart("call_1", [ir.TextPart("18C")]),
                ir.ToolResultPart("call_2", [ir.TextPart("24C")]),
            ],
        ),
        ir.Message(
            "user",
            [
                ir.TextPart("And this?"),
                ir.ImagePart(media_type="image/png", data="iVBOR"),
                ir.ImagePart(url="https://x.test/a.jpg"),
            ],
        ),
    ]


def test_max_tokens_alone_is_read() -> None:
    req = fmt.parse_request(
        {"model": "m", "messages": [{"role": "user", "content": "x"}], "max_tokens": 9}
    )
    assert req.max_tokens == 9


def test_render_request_round_trip() -> None:
    req = fmt.parse_request(FULL_REQUEST)
    body = fmt.render_request(req, "gpt-4o-2024")
    assert body["model"] == "gpt-4o-2024"
    assert body["max_completion_tokens"] == 300 and "max_tokens" not in body
    assert body["stop"] == ["END"]
    assert body["stream_options"] == {"include_usage": True}
    assert body["messages"][0] == {"role": "system", "content": "Be brief.\n\nUse metric units."}
    assert body["messages"][3:5] == [
        {"role": "tool", "tool_call_id": "call_1", "content": "18C"},
        {"role": "tool", "tool_call_id": "call_2", "content": "24C"},
    ]
    assert body["messages"][5]["content"][1] == {
        "type": "image_url",
        "image_url": {"url": "data:image/png;base64,iVBOR"},
    }
    assert "seed" not in body  # not in the IR
    assert fmt.parse_request(body) == msgspec_replace(req, model="gpt-4o-2024")


def msgspec_replace(req: ir.ChatRequest, **changes: Any) -> ir.ChatRequest:
    import msgspec

    return msgspec.structs.replace(req, **changes)


def test_render_request_max_tokens_field_for_compatible_servers() -> None:
    req = ir.ChatRequest("m", [ir.Message("user", [ir.TextPart("x")])], max_tokens=5)
    assert fmt.render_request(req, "m", max_tokens_field="max_tokens")["max_tokens"] == 5
    assert "max_tokens" not in fmt.render_request(req, "m")


def test_render_request_adds_nothing_the_ir_left_unset() -> None:
    req = ir.ChatRequest("m", [ir.Message("user", [ir.TextPart("x")])])
    assert fmt.render_request(req, "m") == {
        "model": "m",
        "messages": [{"role": "user", "content": "x"}],
    }
    # An empty tools list is never sent (vLLM refuses it), nor tool_choice without tools.
    empty = msgspec_replace(
        req, tools=[], tool_choice=ir.ToolChoice("none"), parallel_tool_calls=True
    )
    assert fmt.render_request(empty, "m") == fmt.render_request(req, "m")
    # include_usage only on a streamed request
    assert "stream_options" not in fmt.render_request(msgspec_replace(req, include_usage=True), "m")


def test_render_user_turn_mixing_results_and_text() -> None:
    req = ir.ChatRequest(
        "m",
        [
            ir.Message("assistant", [ir.TextPart("a"), ir.TextPart("b"), ir.ThinkingPart("hm")]),
            ir.Message(
                "user",
                [
                    ir.TextPart("here:"),
                    ir.ToolResultPart(
                        "c1",
                        [ir.TextPart("r"), ir.ImagePart(media_type="image/jpeg", data="AA")],
                        is_error=True,
                    ),
                ],
            ),
        ],
    )
    messages = fmt.render_request(req, "m")["messages"]
    assert messages == [
        {
            "role": "assistant",
            "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}],
        },
        {"role": "tool", "tool_call_id": "c1", "content": "r"},
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "here:"},
                {"type": "image_url", "image_url": {"url": "data:image/jpeg;base64,AA"}},
            ],
        },
    ]


def test_render_rejects_misplaced_parts() -> None:
    bad_user = ir.ChatRequest("m", [ir.Message("user", [ir.ToolCallPart("c", "f", "{}")])])
    with pytest.raises(FormatError) as info:
        fmt.render_request(bad_user, "m")
    assert info.value.param == "messages.0.content.0"
    bad_assistant = ir.ChatRequest("m", [ir.Message("assistant", [ir.ToolResultPart("c", [])])])
    with pytest.raises(FormatError):
        fmt.render_request(bad_assistant, "m")


def _body(**changes: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"model": "m", "messages": [{"role": "user", "content": "x"}]}
    body.update(changes)
    return {k: v for k, v in body.items() if v is not ...}


@pytest.mark.parametrize(
    ("body", "param"),
    [
        (_body(model=...), "model"),
        (_body(model=3), "model"),
        (_body(messages=...), "messages"),
        (_body(messages={}), "messages"),
        (_body(messages=[]), "messages"),
        (_body(messages=["x"]), "messages.0"),
        (_body(messages=[{"content": "x"}]), "messages.0.role"),
        (_body(messages=[{"role": "robot", "content": "x"}]), "messages.0.role"),
        (_body(messages=[{"role": "user"}]), "messages.0.content"),
        (_body(messages=[{"role": "user", "content": 5}]), "messages.0.content"),
        (
            _body(messages=[{"role": "user", "content": [{"type": "input_audio"}]}]),
            "messages.0.content.0.type",
        ),
        (
            _body(messages=[{"role": "user", "content": [{"type": "text"}]}]),
            "messages.0.content.0.text",
        ),
        (
            _body(messages=[{"role": "user", "content": [{"type": "image_url", "image_url": {}}]}]),
            "messages.0.content.0.image_url.url",
        ),
        (
            _body(messages=[{"role": "assistant", "tool_calls": [{"id": "c"}]}]),
            "messages.0.tool_calls.0.function",
        ),
        (
            _body(
                messages=[
                    {
                        "role": "assistant",
                        "tool_calls": [{"id": "c", "function": {"arguments": ""}}],
                    }
                ]
            ),
            "messages.0.tool_calls.0.function.name",
        ),
        (_body(messages=[{"role": "tool", "content": "x"}]), "messages.0.tool_call_id"),
        (_body(messages=[{"role": "system", "content": None}]), "messages.0.content"),
        (_body(tools=[{"type": "custom", "custom": {}}]), "tools.0.type"),
        (_body(tools=[{"type": "function"}]), "tools.0.function"),
        (_body(tools=[{"type": "function", "function": {}}]), "tools.0.function.name"),
        (_body(tools={}), "tools"),
        (_body(tool_choice="sometimes"), "tool_choice"),
        (_body(tool_choice={"type": "allowed_tools"}), "tool_choice.type"),
        (_body(max_tokens="9"), "max_tokens"),
        (_body(max_completion_tokens=True), "max_completion_tokens"),
        (_body(temperature="hot"), "temperature"),
        (_body(top_p=[1]), "top_p"),
        (_body(stop=3), "stop"),
        (_body(stop=["a", 1]), "stop.1"),
        (_body(stream="yes"), "stream"),
        (_body(stream_options={"include_usage": 1}), "stream_options.include_usage"),
        (_body(n=2), "n"),
        (_body(user=5), "user"),
        (_body(parallel_tool_calls="no"), "parallel_tool_calls"),
    ],
)
def test_parse_request_errors_name_the_field(body: dict[str, Any], param: str) -> None:
    with pytest.raises(FormatError) as info:
        fmt.parse_request(body)
    assert info.value.param == param
    assert info.value.message.startswith(param + ": ")


def test_parse_request_refuses_a_non_object() -> None:
    with pytest.raises(FormatError):
        fmt.parse_request([])  # type: ignore[arg-type]


# ---------------------------------------------------------------------------------------------
# Responses

RESPONSE: dict[str, Any] = {
    "id": "chatcmpl-1",
    "object": "chat.completion",
    "created": 1700000000,
    "model": "gpt-4o-2024-08-06",
    "choices": [
        {
            "index": 0,
            "message": {
                "role": "assistant",
                "content": "Checking.",
                "refusal": None,
                "tool_calls": [
                    {
                        "id": "call_9",
                        "type": "function",
                        "function": {"name": "weather", "arguments": '{"city":"Paris"}'},
                    }
                ],
            },
            "logprobs": None,
            "finish_reason": "tool_calls",
        }
    ],
    "usage": {
        "prompt_tokens": 100,
        "completion_tokens": 30,
        "total_tokens": 130,
        "prompt_tokens_details": {"cached_tokens": 64, "audio_tokens": 0},
        "completion_tokens_details": {"reasoning_tokens": 12},
    },
}


def test_parse_response() -> None:
    resp = fmt.parse_response(RESPONSE)
    assert resp == ir.ChatResponse(
        id="chatcmpl-1",
        model="gpt-4o-2024-08-06",
        content=[
            ir.TextPart("Checking."),
            ir.ToolCallPart("call_9", "weather", '{"city":"Paris"}'),
        ],
        finish_reason="tool_calls",
        usage=ir.Usage(
            input_tokens=36, output_tokens=30, cache_read_tokens=64, reasoning_tokens=12
        ),
    )


def test_render_response_round_trip_and_sdk_model() -> None:
    from openai.types.chat import ChatCompletion

    resp = fmt.parse_response(RESPONSE)
    body = fmt.render_response(resp)
    completion = ChatCompletion.model_validate(body)
    assert completion.choices[0].message.tool_calls is not None
    call = completion.choices[0].message.tool_calls[0]
    assert call.type == "function" and call.function.arguments == '{"city":"Paris"}'
    assert completion.choices[0].finish_reason == "tool_calls"
    assert completion.usage is not None and completion.usage.prompt_tokens == 100
    assert completion.usage.prompt_tokens_details is not None
    assert completion.usage.prompt_tokens_details.cached_tokens == 64
    assert fmt.parse_response(body) == resp


@pytest.mark.parametrize(
    ("wire", "finish"),
    [
        ("stop", "stop"),
        ("length", "length"),
        ("tool_calls", "tool_calls"),
        ("function_call", "tool_calls"),
        ("content_filter", "content_filter"),
        ("abort", "other"),
        (None, "other"),
    ],
)
def test_finish_reason_from_wire(wire: str | None, finish: str) -> None:
    body = {
        "id": "x",
        "model": "m",
        "choices": [{"index": 0, "message": {"content": "a"}, "finish_reason": wire}],
    }
    assert fmt.parse_response(body).finish_reason == finish


@pytest.mark.parametrize(
    ("finish", "wire"),
    [
        ("stop", "stop"),
        ("length", "length"),
        ("tool_calls", "tool_calls"),
        ("stop_sequence", "stop"),
        ("content_filter", "content_filter"),
        ("context_window", "length"),
        ("other", "stop"),
    ],
)
def test_finish_reason_to_wire(finish: ir.FinishReason, wire: str) -> None:
    resp = ir.ChatResponse("x", "m", [ir.TextPart("a")], finish, ir.Usage())
    assert fmt.render_response(resp)["choices"][0]["finish_reason"] == wire


def test_compatible_server_variations() -> None:
    # vLLM names the matched stop string; reasoning arrives in reasoning_content / reasoning.
    body: dict[str, Any] = {
        "id": "x",
        "model": "m",
        "choices": [
            {
                "index": 0,
                "message": {"content": "a", "reasoning_content": "think"},
                "finish_reason": "stop",
                "stop_reason": "###",
            }
        ],
        "usage": None,
    }
    resp = fmt.parse_response(body)
    assert resp.finish_reason == "stop_sequence" and resp.stop_sequence == "###"
    assert resp.content == [ir.ThinkingPart("think"), ir.TextPart("a")]
    assert resp.usage == ir.Usage()
    # a tool call announced with "stop" (some servers) is still a tool call
    body["choices"] = [
        {
            "index": 0,
            "message": {
                "content": None,
                "tool_calls": [{"function": {"name": "f", "arguments": {"a": 1}}}],
            },
            "finish_reason": "stop",
        }
    ]
    resp = fmt.parse_response(body)
    assert resp.finish_reason == "tool_calls"
    call = resp.content[0]
    assert isinstance(call, ir.ToolCallPart) and call.arguments == '{"a":1}' and call.id


def test_render_response_thinking_and_empty() -> None:
    resp = ir.ChatResponse(
        "x", "m", [ir.ThinkingPart("hm", "sig"), ir.TextPart("a")], "stop", ir.Usage()
    )
    message = fmt.render_response(resp)["choices"][0]["message"]
    assert message["reasoning_content"] == "hm" and message["content"] == "a"
    empty = ir.ChatResponse("x", "m", [], "stop", ir.Usage())
    assert fmt.render_response(empty)["choices"][0]["message"]["content"] == ""


@pytest.mark.parametrize(
    "body",
    [{}, {"choices": []}, {"choices": "x"}, {"choices": [5]}, {"choices": [{"message": 3}]}],
)
def test_parse_response_errors(body: dict[str, Any]) -> None:
    with pytest.raises(FormatError):
        fmt.parse_response(body)


# ---------------------------------------------------------------------------------------------
# Streams

HEAD = '{"id":"chatcmpl-7","object":"chat.completion.chunk","created":1,"model":"gpt-4o-mini","system_fingerprint":"fp","choices":'


def chunk(choices: str, usage: str = "null") -> bytes:
    return f'data: {HEAD}{choices},"usage":{usage}}}\n\n'.encode()


def delta(d: str, finish: str = "null") -> str:
    return f'[{{"index":0,"delta":{d},"logprobs":null,"finish_reason":{finish}}}]'


# An OpenAI stream as the service sends it: role chunk, text, two parallel tool calls,
# the finish chunk, the usage chunk (include_usage), [DONE].
OPENAI_STREAM = b"".join(
    [
        chunk(delta('{"role":"assistant","content":"","refusal":null}')),
        chunk(delta('{"content":"Let me"}')),
        chunk(delta('{"content":" check."}')),
        chunk(
            delta(
                '{"tool_calls":[{"index":0,"id":"call_a","type":"function",'
                '"function":{"name":"weather","arguments":""}}]}'
            )
        ),
        chunk(delta('{"tool_calls":[{"index":0,"function":{"arguments":"{\\"city\\": "}}]}')),
        chunk(delta('{"tool_calls":[{"index":0,"function":{"arguments":"\\"Paris\\"}"}}]}')),
        chunk(
            delta(
                '{"tool_calls":[{"index":1,"id":"call_b","type":"function",'
                '"function":{"name":"time","arguments":""}}]}'
            )
        ),
        chunk(delta('{"tool_calls":[{"index":1,"function":{"arguments":"{}"}}]}')),
        chunk(delta("{}", '"tool_calls"')),
        chunk(
            "[]",
            '{"prompt_tokens":50,"completion_tokens":20,"total_tokens":70,'
            '"prompt_tokens_details":{"cached_tokens":10},'
            '"completion_tokens_details":{"reasoning_tokens":0}}',
        ),
        b"data: [DONE]\n\n",
    ]
)

EXPECTED_EVENTS: list[ir.StreamEvent] = [
    ir.MessageStart("chatcmpl-7", "gpt-4o-mini"),
    ir.TextDelta(0, "Let me"),
    ir.TextDelta(0, " check."),
    ir.BlockStop(0),
    ir.ToolCallStart(1, "call_a", "weather"),
    ir.ToolCallDelta(1, '{"city": '),
    ir.ToolCallDelta(1, '"Paris"}'),
    ir.BlockStop(1),
    ir.ToolCallStart(2, "call_b", "time"),
    ir.ToolCallDelta(2, "{}"),
    ir.BlockStop(2),
    ir.MessageEnd("tool_calls", ir.Usage(input_tokens=40, output_tokens=20, cache_read_tokens=10)),
]


def test_decode_stream() -> None:
    assert decode(fmt, OPENAI_STREAM) == EXPECTED_EVENTS


def test_decode_stream_in_any_split(rng: random.Random) -> None:
    assert decode(fmt, OPENAI_STREAM, byte_by_byte(OPENAI_STREAM)) == EXPECTED_EVENTS
    for _ in range(20):
        assert decode(fmt, OPENAI_STREAM, random_splits(OPENAI_STREAM, rng)) == EXPECTED_EVENTS


def test_role_only_first_delta_is_no_content() -> None:
    events = fmt.StreamDecoder().feed(chunk(delta('{"role":"assistant","content":""}')))
    assert events == [ir.MessageStart("chatcmpl-7", "gpt-4o-mini")]


def test_message_end_waits_for_done_to_include_usage() -> None:
    decoder = fmt.StreamDecoder()
    events = decoder.feed(chunk(delta('{"content":"a"}')) + chunk(delta("{}", '"stop"')))
    assert not any(isinstance(e, ir.MessageEnd) for e in events)
    assert events[-1] == ir.BlockStop(0)
    events = decoder.feed(chunk("[]", '{"prompt_tokens":3,"completion_tokens":1}'))
    assert events == []
    assert decoder.feed(b"data: [DONE]\n\n") == [ir.MessageEnd("stop", ir.Usage(3, 1))]
    assert decoder.close() == []


def test_ollama_whole_tool_call_in_one_delta() -> None:
    stream = (
        chunk(
            delta(
                '{"role":"assistant","content":"","tool_calls":[{"id":"call_x","index":0,'
                '"type":"function","function":{"name":"f","arguments":"{\\"a\\":1}"}},'
                '{"id":"call_y","index":1,"type":"function",'
                '"function":{"name":"g","arguments":"{}"}}]}'
            )
        )
        + chunk(delta('{"role":"assistant","content":""}', '"stop"'))
        + b"data: [DONE]\n\n"
    )
    events = decode(fmt, stream)
    assert events[1:] == [
        ir.ToolCallStart(0, "call_x", "f"),
        ir.ToolCallDelta(0, '{"a":1}'),
        ir.BlockStop(0),
        ir.ToolCallStart(1, "call_y", "g"),
        ir.ToolCallDelta(1, "{}"),
        ir.BlockStop(1),
        ir.MessageEnd("tool_calls"),  # "stop" with tool calls
    ]


def test_reasoning_deltas_become_a_thinking_block() -> None:
    stream = (
        chunk(delta('{"role":"assistant","reasoning_content":"hm"}'))
        + chunk(delta('{"reasoning":" ok"}'))
        + chunk(delta('{"content":"a"}', '"stop"'))
        + b"data: [DONE]\n\n"
    )
    assert decode(fmt, stream)[1:] == [
        ir.ThinkingDelta(0, "hm"),
        ir.ThinkingDelta(0, " ok"),
        ir.BlockStop(0),
        ir.TextDelta(1, "a"),
        ir.BlockStop(1),
        ir.MessageEnd("stop"),
    ]


def test_in_stream_error() -> None:
    stream = chunk(delta('{"content":"a"}')) + (
        b'data: {"error":{"message":"This model\'s maximum context length is 8 tokens",'
        b'"type":"BadRequestError","param":null,"code":400}}\n\ndata: [DONE]\n\n'
    )
    events = decode(fmt, stream)
    assert isinstance(events[-1], ir.StreamError)
    assert events[-1].error.kind is K.CONTEXT_WINDOW
    assert events[-1].error.provider_type == "BadRequestError"
    overloaded = decode(
        fmt, b'data: {"error":{"message":"busy","type":"server_error","code":null}}\n\n'
    )
    assert overloaded == [ir.StreamError(ir.ErrorInfo(K.SERVER_ERROR, "busy", 200, "server_error"))]
    assert decode(fmt, b'data: {"error":"model not found"}\n\n')[0] == ir.StreamError(
        ir.ErrorInfo(K.STREAM_ERROR, "model not found", 200)
    )


@pytest.mark.parametrize(
    "stream",
    [
        b"",
        OPENAI_STREAM[: OPENAI_STREAM.index(b"data: [DONE]")],  # finish + usage, no [DONE]
        OPENAI_STREAM[:200],
        b"data: [DONE]\n\n",  # nothing at all before [DONE]
        b"data: {not json}\n\n",
        b"data: [1, 2]\n\n",
        chunk('[{"index":0,"delta":{"tool_calls":[5]}}]'),
    ],
)
def test_cut_or_garbled_streams_are_malformed(stream: bytes) -> None:
    events = decode(fmt, stream)
    assert isinstance(events[-1], ir.StreamError)
    assert events[-1].error.kind is K.MALFORMED
    assert sum(isinstance(e, ir.StreamError | ir.MessageEnd) for e in events) == 1


def test_done_without_finish_reason_ends_with_other() -> None:
    events = decode(fmt, chunk(delta('{"content":"a"}')) + b"data: [DONE]\n\n")
    assert events[-1] == ir.MessageEnd("other")


def test_input_after_the_terminal_event_is_ignored() -> None:
    decoder = fmt.StreamDecoder()
    decoder.feed(OPENAI_STREAM)
    assert decoder.feed(chunk(delta('{"content":"late"}'))) == []
    assert decoder.close() == []


def test_azure_filter_chunk_before_the_message_is_skipped() -> None:
    prelude = b'data: {"choices":[],"created":0,"id":"","model":"","object":"","prompt_filter_results":[]}\n\n'
    events = decode(fmt, prelude + OPENAI_STREAM)
    assert events == EXPECTED_EVENTS


def test_encoder_output_shape() -> None:
    data = encode(fmt, EXPECTED_EVENTS, id="chatcmpl-x", model="gpt", include_usage=True)
    chunks = [line[6:] for line in data.split(b"\n\n") if line]
    assert chunks[-1] == b"[DONE]"
    parsed = [orjson.loads(c) for c in chunks[:-1]]
    for c in parsed:
        assert c["id"] == "chatcmpl-x" and c["object"] == "chat.completion.chunk"
        assert c["model"] == "gpt" and isinstance(c["created"], int)
    assert parsed[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    assert parsed[3]["choices"][0]["delta"] == {
        "tool_calls": [
            {
                "index": 0,
                "id": "call_a",
                "type": "function",
                "function": {"name": "weather", "arguments": ""},
            }
        ]
    }
    # the second call is OpenAI tool index 1 although it is IR block 2
    assert parsed[6]["choices"][0]["delta"]["tool_calls"][0]["index"] == 1
    assert parsed[-2]["choices"][0] == {
        "index": 0,
        "delta": {},
        "logprobs": None,
        "finish_reason": "tool_calls",
    }
    assert parsed[-1]["choices"] == []
    assert parsed[-1]["usage"]["prompt_tokens"] == 50
    assert parsed[-1]["usage"]["prompt_tokens_details"] == {"cached_tokens": 10}
    # without include_usage: no usage chunk
    plain = encode(fmt, EXPECTED_EVENTS)
    assert b'"choices":[]' not in plain and plain.endswith(b"data: [DONE]\n\n")


def test_encoder_decoder_round_trip() -> None:
    data = encode(fmt, EXPECTED_EVENTS, id="chatcmpl-7", model="gpt-4o-mini", include_usage=True)
    assert decode(fmt, data) == EXPECTED_EVENTS


def test_encoder_error_and_after() -> None:
    encoder = fmt.StreamEncoder(id="x", model="m")
    encoder.encode(ir.TextDelta(0, "a"))
    out = encoder.encode(ir.StreamError(ir.ErrorInfo(K.OVERLOADED, "busy")))
    assert (
        out
        == b'data: {"error":{"message":"busy","type":"server_error","param":null,"code":"overloaded"}}\n\n'
    )
    assert encoder.encode(ir.MessageEnd("stop")) == b""


def test_encoder_tolerates_loose_ir() -> None:
    # No MessageStart, a tool delta without its start: still a stream the SDK can read.
    events: list[ir.StreamEvent] = [ir.ToolCallDelta(4, "{}"), ir.MessageEnd("tool_calls")]
    decoded = decode(fmt, encode(fmt, events))
    assert decoded[1] == ir.ToolCallStart(0, "call_4", "")
    assert decoded[-1] == ir.MessageEnd("tool_calls")


# ---------------------------------------------------------------------------------------------
# Errors


@pytest.mark.parametrize(
    ("kind", "status", "type_", "code"),
    [
        (K.CONNECT, 502, "server_error", "upstream_connect_error"),
        (K.TIMEOUT, 504, "server_error", "timeout"),
        (K.REQUEST_TIMEOUT, 408, "server_error", "request_timeout"),
        (K.CONFLICT, 409, "invalid_request_error", "conflict"),
        (K.RATE_LIMITED, 429, "rate_limit_error", "rate_limit_exceeded"),
        (K.SERVER_ERROR, 500, "server_error", None),
        (K.BAD_GATEWAY, 502, "server_error", "bad_gateway"),
        (K.UNAVAILABLE, 503, "server_error", "service_unavailable"),
        (K.GATEWAY_TIMEOUT, 504, "server_error", "timeout"),
        (K.OVERLOADED, 503, "server_error", "overloaded"),
        (K.STREAM_ERROR, 502, "server_error", "upstream_stream_error"),
        (K.CONTEXT_WINDOW, 400, "invalid_request_error", "context_length_exceeded"),
        (K.AUTH, 401, "invalid_request_error", "invalid_api_key"),
        (K.BAD_REQUEST, 400, "invalid_request_error", None),
        (K.MALFORMED, 502, "server_error", "upstream_malformed_response"),
    ],
)
def test_errors_by_kind(kind: ir.ErrorKind, status: int, type_: str, code: str | None) -> None:
    error = ir.ErrorInfo(kind, "boom", param="messages.0")
    assert fmt.error_status(error) == status
    assert fmt.render_error(error) == {
        "error": {"message": "boom", "type": type_, "param": "messages.0", "code": code}
    }


def test_every_kind_is_mapped() -> None:
    for kind in K:
        assert fmt.error_status(ir.ErrorInfo(kind, "x")) >= 400


def test_error_status_keeps_specific_client_statuses() -> None:
    assert fmt.error_status(ir.ErrorInfo(K.BAD_REQUEST, "x", status=404)) == 404
    assert (
        fmt.render_error(ir.ErrorInfo(K.BAD_REQUEST, "x", status=404))["error"]["code"]
        == "not_found"
    )
    assert fmt.error_status(ir.ErrorInfo(K.BAD_REQUEST, "x", status=500)) == 400
    assert fmt.error_status(ir.ErrorInfo(K.AUTH, "x", status=403)) == 403
    assert fmt.render_error(ir.ErrorInfo(K.AUTH, "x"), request_id="req_1") == fmt.render_error(
        ir.ErrorInfo(K.AUTH, "x")
    )


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (
            b'{"error":{"message":"This model\'s maximum context length is 10","type":"invalid_request_error","param":"messages","code":"context_length_exceeded"}}',
            ("context_length_exceeded", "This model's maximum context length is 10"),
        ),
        (
            b'{"error":{"message":"quota","type":"insufficient_quota","param":null,"code":"insufficient_quota"}}',
            ("insufficient_quota", "quota"),
        ),
        (
            b'{"error":{"message":"Rate limit","type":"requests","param":null,"code":null}}',
            ("requests", "Rate limit"),
        ),
        (
            b'{"error":{"message":"bad","type":"BadRequestError","param":null,"code":400}}',
            ("BadRequestError", "bad"),
        ),
        (
            b'{"object":"error","message":"old vllm","type":"BadRequestError","code":400}',
            ("BadRequestError", "old vllm"),
        ),
        (b'{"error":"model \\"x\\" not found"}', (None, 'model "x" not found')),
        (b'{"detail":"Not Found"}', (None, "Not Found")),
        (b"<html>502 Bad Gateway</html>", (None, "<html>502 Bad Gateway</html>")),
        (b"", (None, "HTTP 503")),
        (b"[]", (None, "[]")),
    ],
)
def test_parse_error(body: bytes, expected: tuple[str | None, str]) -> None:
    assert fmt.parse_error(503, body) == expected


@pytest.mark.parametrize(
    ("status", "type_", "message", "kind"),
    [
        (429, "requests", "Rate limit reached", K.RATE_LIMITED),
        (429, "insufficient_quota", "You exceeded your current quota", K.AUTH),
        (400, "context_length_exceeded", "too long", K.CONTEXT_WINDOW),
        (
            400,
            "BadRequestError",
            "This model's maximum context length is 4096 tokens",
            K.CONTEXT_WINDOW,
        ),
        (400, "invalid_request_error", "bad", K.BAD_REQUEST),
        (401, "invalid_request_error", "Incorrect API key", K.AUTH),
        (503, "server_error", "overloaded", K.UNAVAILABLE),
        (500, None, "x", K.SERVER_ERROR),
        (200, "server_error", "x", K.SERVER_ERROR),
        (200, "rate_limit_exceeded", "x", K.RATE_LIMITED),
        (200, None, "x", K.STREAM_ERROR),
    ],
)
def test_classify_error(status: int, type_: str | None, message: str, kind: ir.ErrorKind) -> None:
    assert fmt.classify_error(status, type_, message) is kind


def test_accumulated_stream_equals_the_parsed_response() -> None:
    resp = accumulate(EXPECTED_EVENTS)
    assert resp.content[1] == ir.ToolCallPart("call_a", "weather", '{"city": "Paris"}')
    assert fmt.parse_response(fmt.render_response(resp)) == resp


def test_vllm_stop_reason_in_a_stream() -> None:
    stream = (
        chunk(delta('{"content":"a"}'))
        + chunk('[{"index":0,"delta":{},"finish_reason":"stop","stop_reason":"###"}]')
        + b"data: [DONE]\n\n"
    )
    assert decode(fmt, stream)[-1] == ir.MessageEnd("stop_sequence", stop_sequence="###")
