"""The Anthropic Messages dialect: requests, responses, streams (golden fixtures), errors."""

from __future__ import annotations

import random
from typing import Any

import msgspec
import orjson
import pytest

from hedgerow import ir
from hedgerow.formats import FormatError
from hedgerow.formats import anthropic as fmt
from hedgerow.formats.sse import SSEParser
from tests.formats.helpers import (
    accumulate,
    byte_by_byte,
    decode,
    encode,
    fixture_bytes,
    random_splits,
)

K = ir.ErrorKind

FULL_REQUEST: dict[str, Any] = {
    "model": "claude-sonnet-4-5",
    "max_tokens": 1024,
    "system": [
        {"type": "text", "text": "You are terse.", "cache_control": {"type": "ephemeral"}},
        {"type": "text", "text": "Use tools."},
    ],
    "messages": [
        {"role": "user", "content": "Weather in Paris?"},
        {
            "role": "assistant",
            "content": [
                {"type": "thinking", "thinking": "Need the tool.", "signature": "sig=="},
                {"type": "redacted_thinking", "data": "opaque"},
                {"type": "text", "text": "Checking."},
                {
                    "type": "tool_use",
                    "id": "toolu_1",
                    "name": "weather",
                    "input": {"city": "Paris"},
                },
            ],
        },
        {
            "role": "user",
            "content": [
                {"type": "tool_result", "tool_use_id": "toolu_1", "content": "18C"},
                {
                    "type": "tool_result",
                    "tool_use_id": "toolu_2",
                    "is_error": True,
                    "content": [
                        {"type": "text", "text": "failed"},
                        {"type": "image", "source": {"type": "url", "url": "https://x.test/e.png"}},
                    ],
                },
                {
                    "type": "image",
                    "source": {"type": "base64", "media_type": "image/jpeg", "data": "/9j/"},
                },
                {"type": "text", "text": "Thanks", "cache_control": {"type": "ephemeral"}},
            ],
        },
    ],
    "tools": [
        {
            "name": "weather",
            "description": "Current weather",
            "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}},
        }
    ],
    "tool_choice": {"type": "any", "disable_parallel_tool_use": True},
    "stop_sequences": ["END"],
    "temperature": 0.3,
    "top_p": 0.8,
    "top_k": 40,
    "stream": True,
    "metadata": {"user_id": "u-1"},
    "thinking": {"type": "enabled", "budget_tokens": 2000},
}


def test_parse_full_request() -> None:
    req = fmt.parse_request(FULL_REQUEST)
    assert req.system == "You are terse.\n\nUse tools."
    assert (req.max_tokens, req.temperature, req.top_p, req.top_k) == (1024, 0.3, 0.8, 40)
    assert (req.stop, req.user, req.stream, req.include_usage) == (["END"], "u-1", True, True)
    assert req.tool_choice == ir.ToolChoice("required")
    assert req.parallel_tool_calls is False
    assert req.messages == [
        ir.Message("user", [ir.TextPart("Weather in Paris?")]),
        ir.Message(
            "assistant",
            [
                ir.ThinkingPart("Need the tool.", "sig=="),
                ir.TextPart("Checking."),
                ir.ToolCallPart("toolu_1", "weather", '{"city":"Paris"}'),
            ],
        ),
        ir.Message(
            "user",
            [
                ir.ToolResultPart("toolu_1", [ir.TextPart("18C")]),
                ir.ToolResultPart(
                    "toolu_2",
                    [ir.TextPart("failed"), ir.ImagePart(url="https://x.test/e.png")],
                    is_error=True,
                ),
                ir.ImagePart(media_type="image/jpeg", data="/9j/"),
                ir.TextPart("Thanks"),
            ],
        ),
    ]


def test_render_request_round_trip() -> None:
    req = fmt.parse_request(FULL_REQUEST)
    body = fmt.render_request(req, "claude-x")
    assert body["system"] == "You are terse.\n\nUse tools."
    assert body["tool_choice"] == {"type": "any", "disable_parallel_tool_use": True}
    assert body["messages"][0] == {"role": "user", "content": "Weather in Paris?"}
    assert body["messages"][1]["content"][2] == {
        "type": "tool_use",
        "id": "toolu_1",
        "name": "weather",
        "input": {"city": "Paris"},
    }
    assert body["messages"][2]["content"][1] == {
        "type": "tool_result",
        "tool_use_id": "toolu_2",
        "content": [
            {"type": "text", "text": "failed"},
            {"type": "image", "source": {"type": "url", "url": "https://x.test/e.png"}},
        ],
        "is_error": True,
    }
    assert "thinking" not in body
    assert fmt.parse_request(body) == msgspec.structs.replace(req, model="claude-x")


def test_render_request_defaults_and_clamps() -> None:
    req = ir.ChatRequest("m", [ir.Message("user", [ir.TextPart("x")])], temperature=1.7)
    body = fmt.render_request(req, "claude")
    assert body == {
        "model": "claude",
        "max_tokens": fmt.DEFAULT_MAX_TOKENS,
        "messages": [{"role": "user", "content": "x"}],
        "temperature": 1.0,
    }
    assert fmt.render_request(req, "c", default_max_tokens=7)["max_tokens"] == 7


def test_render_request_tools_and_choices() -> None:
    tool = ir.Tool("f")
    base = ir.ChatRequest("m", [ir.Message("user", [ir.TextPart("x")])], tools=[tool])
    body = fmt.render_request(base, "c")
    assert body["tools"] == [{"name": "f", "input_schema": {"type": "object", "properties": {}}}]
    assert "tool_choice" not in body
    cases = [
        (ir.ToolChoice("auto"), None, {"type": "auto"}),
        (ir.ToolChoice("required"), None, {"type": "any"}),
        (ir.ToolChoice("none"), False, {"type": "none"}),
        (
            ir.ToolChoice("tool", "f"),
            False,
            {"type": "tool", "name": "f", "disable_parallel_tool_use": True},
        ),
        (None, False, {"type": "auto", "disable_parallel_tool_use": True}),
    ]
    for choice, parallel, wire in cases:
        req = msgspec.structs.replace(base, tool_choice=choice, parallel_tool_calls=parallel)
        assert fmt.render_request(req, "c")["tool_choice"] == wire
    no_tools = msgspec.structs.replace(base, tools=[], tool_choice=ir.ToolChoice("auto"))
    assert "tools" not in fmt.render_request(no_tools, "c")
    assert "tool_choice" not in fmt.render_request(no_tools, "c")


def test_render_request_keeps_an_empty_text_turn_for_the_api_to_judge() -> None:
    req = ir.ChatRequest("m", [ir.Message("user", [ir.TextPart("")])])
    assert fmt.render_request(req, "c")["messages"] == [{"role": "user", "content": ""}]


def test_render_request_orders_and_filters_parts() -> None:
    req = ir.ChatRequest(
        "m",
        [
            ir.Message("assistant", [ir.ThinkingPart("foreign, unsigned"), ir.TextPart("")]),
            ir.Message(
                "user",
                [ir.TextPart("see:"), ir.ToolResultPart("t1", [ir.TextPart("")]), ir.TextPart("")],
            ),
            ir.Message(
                "assistant", [ir.ThinkingPart("signed", "s"), ir.ToolCallPart("t2", "f", "")]
            ),
        ],
        user="u",
    )
    body = fmt.render_request(req, "c")
    assert body["metadata"] == {"user_id": "u"}
    # The first turn held only foreign reasoning and an empty text: nothing to send.
    assert body["messages"] == [
        {
            "role": "user",
            "content": [
                {"type": "tool_result", "tool_use_id": "t1"},  # results lead the turn
                {"type": "text", "text": "see:"},
            ],
        },
        {
            "role": "assistant",
            "content": [
                {"type": "thinking", "thinking": "signed", "signature": "s"},
                {"type": "tool_use", "id": "t2", "name": "f", "input": {}},
            ],
        },
    ]


@pytest.mark.parametrize("arguments", ["{", "[1]", '"x"'])
def test_render_request_refuses_arguments_that_are_not_an_object(arguments: str) -> None:
    req = ir.ChatRequest("m", [ir.Message("assistant", [ir.ToolCallPart("t", "f", arguments)])])
    with pytest.raises(FormatError) as info:
        fmt.render_request(req, "c")
    assert info.value.param == "messages.0.content.0"


def test_missing_max_tokens_is_refused_as_anthropic_does() -> None:
    with pytest.raises(FormatError) as info:
        fmt.parse_request({"model": "c", "messages": [{"role": "user", "content": "x"}]})
    assert info.value.param == "max_tokens"
    assert info.value.message == "max_tokens: Field required"


def _body(**changes: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "model": "c",
        "max_tokens": 10,
        "messages": [{"role": "user", "content": "x"}],
    }
    body.update(changes)
    return {k: v for k, v in body.items() if v is not ...}


def _content(*blocks: Any) -> list[dict[str, Any]]:
    return [{"role": "user", "content": list(blocks)}]


@pytest.mark.parametrize(
    ("body", "param"),
    [
        (_body(model=...), "model"),
        (_body(max_tokens="10"), "max_tokens"),
        (_body(max_tokens=1.5), "max_tokens"),
        (_body(messages=...), "messages"),
        (_body(messages=[{"role": "system", "content": "x"}]), "messages.0.role"),
        (_body(messages=[{"role": "user"}]), "messages.0.content"),
        (_body(messages=[{"role": "user", "content": {"a": 1}}]), "messages.0.content"),
        (_body(messages=_content({"text": "x"})), "messages.0.content.0.type"),
        (_body(messages=_content({"type": "document"})), "messages.0.content.0.type"),
        (_body(messages=_content({"type": "text"})), "messages.0.content.0.text"),
        (_body(messages=_content({"type": "image"})), "messages.0.content.0.source"),
        (
            _body(messages=_content({"type": "image", "source": {"type": "file", "file_id": "f"}})),
            "messages.0.content.0.source.type",
        ),
        (_body(messages=_content({"type": "tool_use", "name": "f"})), "messages.0.content.0.id"),
        (
            _body(messages=_content({"type": "tool_use", "id": "t", "name": "f", "input": []})),
            "messages.0.content.0.input",
        ),
        (_body(messages=_content({"type": "tool_result"})), "messages.0.content.0.tool_use_id"),
        (
            _body(
                messages=_content(
                    {"type": "tool_result", "tool_use_id": "t", "content": [{"type": "document"}]}
                )
            ),
            "messages.0.content.0.content.0.type",
        ),
        (
            _body(messages=_content({"type": "tool_result", "tool_use_id": "t", "is_error": "y"})),
            "messages.0.content.0.is_error",
        ),
        (_body(messages=_content({"type": "thinking"})), "messages.0.content.0.thinking"),
        (_body(system=5), "system"),
        (_body(system=[{"type": "image"}]), "system.0.type"),
        (_body(tools=[{"name": "f"}]), "tools.0.input_schema"),
        (_body(tools=[{"type": "web_search_20250305", "name": "web_search"}]), "tools.0.type"),
        (_body(tool_choice={"type": "maybe"}), "tool_choice.type"),
        (_body(tool_choice={"type": "tool"}), "tool_choice.name"),
        (_body(tool_choice="auto"), "tool_choice"),
        (_body(stop_sequences="END"), "stop_sequences"),
        (_body(stop_sequences=[1]), "stop_sequences.0"),
        (_body(temperature="x"), "temperature"),
        (_body(top_k=0.5), "top_k"),
        (_body(stream=1), "stream"),
        (_body(metadata={"user_id": 3}), "metadata.user_id"),
    ],
)
def test_parse_request_errors_name_the_field(body: dict[str, Any], param: str) -> None:
    with pytest.raises(FormatError) as info:
        fmt.parse_request(body)
    assert info.value.param == param


# ---------------------------------------------------------------------------------------------
# Responses

RESPONSE: dict[str, Any] = {
    "id": "msg_1",
    "type": "message",
    "role": "assistant",
    "model": "claude-sonnet-4-5",
    "content": [
        {"type": "thinking", "thinking": "hm", "signature": "s"},
        {"type": "text", "text": "Done", "citations": None},
        {"type": "tool_use", "id": "toolu_9", "name": "f", "input": {"a": [1, 2]}},
        {"type": "server_tool_use", "id": "srvtoolu_1", "name": "web_search", "input": {}},
    ],
    "stop_reason": "stop_sequence",
    "stop_sequence": "END",
    "usage": {
        "input_tokens": 10,
        "output_tokens": 20,
        "cache_creation_input_tokens": 5,
        "cache_read_input_tokens": 100,
        "service_tier": "standard",
    },
}


def test_parse_response() -> None:
    assert fmt.parse_response(RESPONSE) == ir.ChatResponse(
        id="msg_1",
        model="claude-sonnet-4-5",
        content=[
            ir.ThinkingPart("hm", "s"),
            ir.TextPart("Done"),
            ir.ToolCallPart("toolu_9", "f", '{"a":[1,2]}'),
        ],
        finish_reason="stop_sequence",
        usage=ir.Usage(10, 20, cache_read_tokens=100, cache_write_tokens=5),
        stop_sequence="END",
    )


def test_render_response_round_trip_and_sdk_model() -> None:
    from anthropic.types import Message

    resp = fmt.parse_response(RESPONSE)
    body = fmt.render_response(resp)
    message = Message.model_validate(body)
    assert message.stop_reason == "stop_sequence" and message.stop_sequence == "END"
    assert message.usage.cache_read_input_tokens == 100
    assert message.content[2].type == "tool_use" and message.content[2].input == {"a": [1, 2]}
    assert fmt.parse_response(body) == resp


@pytest.mark.parametrize(
    ("wire", "finish"),
    [
        ("end_turn", "stop"),
        ("max_tokens", "length"),
        ("tool_use", "tool_calls"),
        ("stop_sequence", "stop_sequence"),
        ("refusal", "content_filter"),
        ("model_context_window_exceeded", "context_window"),
        ("pause_turn", "other"),
        ("something_new", "other"),
        (None, "other"),
    ],
)
def test_stop_reason_from_wire(wire: str | None, finish: str) -> None:
    assert fmt.parse_response({**RESPONSE, "stop_reason": wire}).finish_reason == finish


@pytest.mark.parametrize(
    ("finish", "wire"),
    [
        ("stop", "end_turn"),
        ("length", "max_tokens"),
        ("tool_calls", "tool_use"),
        ("stop_sequence", "stop_sequence"),
        ("content_filter", "refusal"),
        ("context_window", "model_context_window_exceeded"),
        ("other", "end_turn"),
    ],
)
def test_stop_reason_to_wire(finish: ir.FinishReason, wire: str) -> None:
    resp = ir.ChatResponse("x", "m", [], finish, ir.Usage())
    assert fmt.render_response(resp)["stop_reason"] == wire


def test_render_response_refuses_bad_arguments() -> None:
    resp = ir.ChatResponse("x", "m", [ir.ToolCallPart("t", "f", "{oops")], "tool_calls", ir.Usage())
    with pytest.raises(FormatError):
        fmt.render_response(resp)


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"type": "error", "error": {}},
        {**RESPONSE, "content": "x"},
        {**RESPONSE, "id": None},
        {**RESPONSE, "content": [{"type": "text"}]},
    ],
)
def test_parse_response_errors(body: dict[str, Any]) -> None:
    with pytest.raises(FormatError):
        fmt.parse_response(body)


# ---------------------------------------------------------------------------------------------
# Streams: the recorded fixtures are the golden input and the golden output shape.

BASIC_EVENTS: list[ir.StreamEvent] = [
    ir.MessageStart(
        "msg_4QpJur2dWWDjF6C758FbBw5vm12BaVipnK", "claude-3-opus-latest", ir.Usage(11, 1)
    ),
    ir.TextDelta(0, ""),
    ir.TextDelta(0, "Hello"),
    ir.TextDelta(0, " there"),
    ir.TextDelta(0, "!"),
    ir.BlockStop(0),
    ir.MessageEnd("stop", ir.Usage(11, 6)),
]

TOOL_EVENTS: list[ir.StreamEvent] = [
    ir.MessageStart("msg_019Q1hrJbZG26Fb9BQhrkHEr", "claude-sonnet-4-20250514", ir.Usage(377, 1)),
    ir.TextDelta(0, ""),
    ir.TextDelta(0, "I"),
    ir.TextDelta(0, "'ll check the current weather in Paris for you."),
    ir.BlockStop(0),
    ir.ToolCallStart(1, "toolu_01NRLabsLyVHZPKxbKvkfSMn", "get_weather"),
    ir.ToolCallDelta(1, '{"locati'),
    ir.ToolCallDelta(1, 'on": "P'),
    ir.ToolCallDelta(1, "ar"),
    ir.ToolCallDelta(1, 'is"}'),
    ir.BlockStop(1),
    ir.MessageEnd("tool_calls", ir.Usage(377, 65)),
]

GOLDEN = [
    ("anthropic/basic_response.sse", BASIC_EVENTS),
    ("anthropic/tool_use_response.sse", TOOL_EVENTS),
]


@pytest.mark.parametrize(("name", "expected"), GOLDEN)
def test_decode_fixture(name: str, expected: list[ir.StreamEvent], rng: random.Random) -> None:
    data = fixture_bytes(name)
    assert decode(fmt, data) == expected
    assert decode(fmt, data, byte_by_byte(data)) == expected
    for _ in range(20):
        assert decode(fmt, data, random_splits(data, rng)) == expected


def _events(data: bytes) -> list[tuple[str | None, Any]]:
    parser = SSEParser()
    return [(e.event, orjson.loads(e.data)) for e in parser.feed(data) + parser.close()]


# Fields of the recording the IR does not carry (the server's, not the message's).
_NOT_CARRIED = {"caller", "service_tier"}


def _strip(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _strip(v) for k, v in value.items() if k not in _NOT_CARRIED}
    if isinstance(value, list):
        return [_strip(v) for v in value]
    return value


@pytest.mark.parametrize(("name", "events"), GOLDEN)
def test_encoder_reproduces_the_fixture(name: str, events: list[ir.StreamEvent]) -> None:
    recorded = _events(fixture_bytes(name))
    start = events[0]
    assert isinstance(start, ir.MessageStart)
    ours = _events(encode(fmt, events, id=start.id, model=start.model))
    assert [name for name, _ in ours] == [name for name, _ in recorded]
    for (event, mine), (_, theirs) in zip(ours, recorded, strict=True):
        theirs = _strip(theirs)
        if event in ("message_start", "message_delta"):
            # We always write every usage count (clients read input tokens from either).
            usage = (mine["message"] if event == "message_start" else mine)["usage"]
            recorded_usage = (theirs["message"] if event == "message_start" else theirs)["usage"]
            assert {k: usage[k] for k in recorded_usage} == recorded_usage
            assert usage["input_tokens"] == (11 if "basic" in name else 377)
            for obj in (mine, theirs):
                (obj["message"] if event == "message_start" else obj).pop("usage")
        assert mine == theirs


def test_encoder_opens_and_closes_blocks_for_loose_ir() -> None:
    events: list[ir.StreamEvent] = [
        ir.TextDelta(5, "hi"),  # no MessageStart, no explicit start: opens text block 0
        ir.ThinkingDelta(7, "hm"),
        ir.ThinkingDelta(7, "", signature="sig"),
        ir.ToolCallDelta(9, '{"a":1}'),  # a tool block never started
        ir.MessageEnd("stop", ir.Usage(3, 4)),  # blocks still open: closed before message_delta
    ]
    out = _events(encode(fmt, events))
    names = [n for n, _ in out]
    assert names == [
        "message_start",
        "content_block_start",
        "ping",
        "content_block_delta",
        "content_block_start",
        "content_block_delta",
        "content_block_delta",
        "content_block_start",
        "content_block_delta",
        "content_block_delta",
        "content_block_stop",
        "content_block_stop",
        "content_block_stop",
        "message_delta",
        "message_stop",
    ]
    assert [d["index"] for n, d in out if n == "content_block_start"] == [0, 1, 2]
    assert out[4][1]["content_block"] == {"type": "thinking", "thinking": "", "signature": ""}
    assert out[6][1]["delta"] == {"type": "signature_delta", "signature": "sig"}
    assert out[-2][1]["usage"]["output_tokens"] == 4
    assert accumulate(decode(fmt, encode(fmt, events))).content == [
        ir.TextPart("hi"),
        ir.ThinkingPart("hm", "sig"),
        ir.ToolCallPart("toolu_hedgerow_9", "", '{"a":1}'),
    ]


def test_encoder_error_event() -> None:
    encoder = fmt.StreamEncoder(id="m", model="c")
    encoder.encode(ir.MessageStart("x", "y"))
    out = encoder.encode(ir.StreamError(ir.ErrorInfo(K.OVERLOADED, "Overloaded")))
    assert out == (
        b"event: error\n"
        b'data: {"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}\n\n'
    )
    assert encoder.encode(ir.TextDelta(0, "late")) == b""


@pytest.mark.parametrize(
    ("type_", "kind"),
    [
        ("overloaded_error", K.OVERLOADED),
        ("api_error", K.SERVER_ERROR),
        ("rate_limit_error", K.RATE_LIMITED),
        ("timeout_error", K.GATEWAY_TIMEOUT),
        ("authentication_error", K.AUTH),
        ("invalid_request_error", K.BAD_REQUEST),
        ("brand_new_error", K.STREAM_ERROR),
    ],
)
def test_in_stream_error(type_: str, kind: ir.ErrorKind) -> None:
    data = fixture_bytes("anthropic/basic_response.sse")
    cut = data[: data.index(b"event: content_block_stop")]
    error = (
        f'event: error\ndata: {{"type":"error","error":{{"type":"{type_}","message":"boom"}}}}\n\n'
    )
    events = decode(fmt, cut + error.encode() + b"event: message_stop\ndata: {}\n\n")
    assert events[-1] == ir.StreamError(ir.ErrorInfo(kind, "boom", 200, type_))


def test_in_stream_context_overflow() -> None:
    error = b'event: error\ndata: {"type":"error","error":{"type":"invalid_request_error","message":"prompt is too long: 300 tokens > 200 maximum"}}\n\n'
    events = decode(fmt, error)
    assert events[0] == ir.MessageStart("", "") or isinstance(events[0], ir.StreamError)
    assert isinstance(events[-1], ir.StreamError) and events[-1].error.kind is K.CONTEXT_WINDOW


@pytest.mark.parametrize("cut", [0, 100, 500, -40, -1])
def test_truncated_fixture_is_malformed(cut: int) -> None:
    data = fixture_bytes("anthropic/tool_use_response.sse")
    data = data[: data.index(b"event: message_stop")] if cut == -1 else data[:cut]
    events = decode(fmt, data)
    assert isinstance(events[-1], ir.StreamError)
    assert events[-1].error.kind is K.MALFORMED
    assert not any(isinstance(e, ir.MessageEnd) for e in events)


def test_unknown_and_skipped_blocks() -> None:
    stream = (
        b'event: message_start\ndata: {"type":"message_start","message":{"id":"m","model":"c","usage":{"input_tokens":1,"output_tokens":1}}}\n\n'
        b'event: content_block_start\ndata: {"type":"content_block_start","index":0,"content_block":{"type":"redacted_thinking","data":"x"}}\n\n'
        b'event: content_block_stop\ndata: {"type":"content_block_stop","index":0}\n\n'
        b'event: content_block_start\ndata: {"type":"content_block_start","index":1,"content_block":{"type":"text","text":""}}\n\n'
        b'event: content_block_delta\ndata: {"type":"content_block_delta","index":1,"delta":{"type":"citations_delta","citation":{}}}\n\n'
        b'event: brand_new_event\ndata: {"type":"brand_new_event"}\n\n'
        b'event: content_block_stop\ndata: {"type":"content_block_stop","index":1}\n\n'
        b'event: message_delta\ndata: {"type":"message_delta","delta":{"stop_reason":"end_turn","stop_sequence":null},"usage":{"output_tokens":3}}\n\n'
        b'event: message_stop\ndata: {"type":"message_stop"}\n\n'
    )
    assert decode(fmt, stream) == [
        ir.MessageStart("m", "c", ir.Usage(1, 1)),
        ir.TextDelta(1, ""),
        ir.BlockStop(1),
        ir.MessageEnd("stop", ir.Usage(1, 3)),
    ]


def test_message_delta_input_tokens_override_start() -> None:
    # Current service: message_delta repeats the (cumulative) input and cache counts.
    stream = (
        b'event: message_start\ndata: {"type":"message_start","message":{"id":"m","model":"c","usage":{"input_tokens":0,"output_tokens":1}}}\n\n'
        b'event: message_delta\ndata: {"type":"message_delta","delta":{"stop_reason":"max_tokens"},"usage":{"input_tokens":12,"cache_read_input_tokens":30,"output_tokens":9}}\n\n'
        b'event: message_stop\ndata: {"type":"message_stop"}\n\n'
    )
    assert decode(fmt, stream)[-1] == ir.MessageEnd("length", ir.Usage(12, 9, cache_read_tokens=30))


@pytest.mark.parametrize(
    "stream",
    [
        b"event: content_block_delta\ndata: nope\n\n",
        b'event: content_block_delta\ndata: {"type":"content_block_delta","index":"0","delta":{"type":"text_delta","text":"x"}}\n\n',
        b'event: content_block_delta\ndata: {"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":5}}\n\n',
        b'event: content_block_delta\ndata: {"type":"content_block_delta","index":0}\n\n',
        b'event: message_start\ndata: "x"\n\n',
    ],
)
def test_garbled_events_are_malformed(stream: bytes) -> None:
    events = decode(fmt, stream)
    assert isinstance(events[-1], ir.StreamError) and events[-1].error.kind is K.MALFORMED


def test_fixture_through_encoder_and_back() -> None:
    for _, events in GOLDEN:
        start = events[0]
        assert isinstance(start, ir.MessageStart)
        assert decode(fmt, encode(fmt, events, id=start.id, model=start.model)) == events


# ---------------------------------------------------------------------------------------------
# Errors


@pytest.mark.parametrize(
    ("kind", "status", "type_"),
    [
        (K.CONNECT, 502, "api_error"),
        (K.TIMEOUT, 504, "timeout_error"),
        (K.REQUEST_TIMEOUT, 408, "timeout_error"),
        (K.CONFLICT, 409, "invalid_request_error"),
        (K.RATE_LIMITED, 429, "rate_limit_error"),
        (K.SERVER_ERROR, 500, "api_error"),
        (K.BAD_GATEWAY, 502, "api_error"),
        (K.UNAVAILABLE, 503, "api_error"),
        (K.GATEWAY_TIMEOUT, 504, "timeout_error"),
        (K.OVERLOADED, 529, "overloaded_error"),
        (K.STREAM_ERROR, 502, "api_error"),
        (K.CONTEXT_WINDOW, 400, "invalid_request_error"),
        (K.AUTH, 401, "authentication_error"),
        (K.BAD_REQUEST, 400, "invalid_request_error"),
        (K.MALFORMED, 502, "api_error"),
    ],
)
def test_errors_by_kind(kind: ir.ErrorKind, status: int, type_: str) -> None:
    error = ir.ErrorInfo(kind, "boom")
    assert fmt.error_status(error) == status
    body = fmt.render_error(error, request_id="req_1")
    assert body["type"] == "error" and body["request_id"] == "req_1"
    assert body["error"]["type"] == type_
    assert "request_id" not in fmt.render_error(error)


def test_error_specifics() -> None:
    overflow = fmt.render_error(
        ir.ErrorInfo(K.CONTEXT_WINDOW, "This model's maximum context length is 8")
    )
    assert overflow["error"]["message"].startswith("prompt is too long: ")
    own = fmt.render_error(
        ir.ErrorInfo(K.CONTEXT_WINDOW, "prompt is too long: 9 tokens > 8 maximum")
    )
    assert own["error"]["message"] == "prompt is too long: 9 tokens > 8 maximum"
    assert fmt.error_status(ir.ErrorInfo(K.AUTH, "x", status=403)) == 403
    assert (
        fmt.render_error(ir.ErrorInfo(K.AUTH, "x", status=403))["error"]["type"]
        == "permission_error"
    )
    for status, type_ in [
        (404, "not_found_error"),
        (413, "request_too_large"),
        (402, "billing_error"),
        (422, "invalid_request_error"),
    ]:
        error = ir.ErrorInfo(K.BAD_REQUEST, "x", status=status)
        assert fmt.error_status(error) == status
        assert fmt.render_error(error)["error"]["type"] == type_


def test_error_body_read_by_the_sdk() -> None:
    from anthropic.types import ErrorResponse

    body = fmt.render_error(ir.ErrorInfo(K.OVERLOADED, "Overloaded"), request_id="req_1")
    parsed = ErrorResponse.model_validate(body)
    assert parsed.error.type == "overloaded_error"


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (
            b'{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"},"request_id":"req_1"}',
            ("overloaded_error", "Overloaded"),
        ),
        (
            b'{"type":"error","error":{"type":"invalid_request_error"}}',
            ("invalid_request_error", '{"type":"error","error":{"type":"invalid_request_error"}}'),
        ),
        (b"upstream connect error", (None, "upstream connect error")),
        (b"\xff\xfe", (None, "\ufffd\ufffd")),
    ],
)
def test_parse_error(body: bytes, expected: tuple[str | None, str]) -> None:
    assert fmt.parse_error(529, body) == expected


@pytest.mark.parametrize(
    ("status", "type_", "message", "kind"),
    [
        (529, "overloaded_error", "Overloaded", K.OVERLOADED),
        (
            400,
            "invalid_request_error",
            "prompt is too long: 208656 tokens > 200000 maximum",
            K.CONTEXT_WINDOW,
        ),
        (400, "invalid_request_error", "messages: field required", K.BAD_REQUEST),
        (402, "billing_error", "credit balance too low", K.AUTH),
        (413, "request_too_large", "too big", K.BAD_REQUEST),
        (500, "api_error", "Internal server error", K.SERVER_ERROR),
        (504, "timeout_error", "timeout", K.GATEWAY_TIMEOUT),
    ],
)
def test_classify_error(status: int, type_: str, message: str, kind: ir.ErrorKind) -> None:
    assert fmt.classify_error(status, type_, message) is kind
