"""Deterministic answers: same request, same text; limits, stop sequences, tool arguments."""

from __future__ import annotations

import random
from typing import Any

import msgspec
import pytest

from hedgerow import ir
from hedgerow.sim import textgen


def chat(text: str = "hello", **fields: Any) -> ir.ChatRequest:
    return ir.ChatRequest(
        model=fields.pop("model", "m"),
        messages=[ir.Message("user", [ir.TextPart(text)])],
        **fields,
    )


def test_same_request_same_answer_and_usage_counts_pieces() -> None:
    first = textgen.generate_reply(chat(), reply_tokens=30)
    again = textgen.generate_reply(chat(), reply_tokens=30)
    other = textgen.generate_reply(chat("something else"), reply_tokens=30)
    assert first == again
    assert first.text != other.text
    assert first.output_tokens == len(first.pieces) == 30
    assert first.finish_reason == "stop"
    assert first.text.endswith(".")


def test_stream_flag_and_max_tokens_do_not_change_the_text() -> None:
    whole = textgen.generate_reply(chat(), reply_tokens=30)
    streamed = textgen.generate_reply(chat(stream=True), reply_tokens=30)
    capped = textgen.generate_reply(chat(max_tokens=7), reply_tokens=30)
    assert streamed.text == whole.text
    assert capped.pieces == whole.pieces[:7]
    assert capped.finish_reason == "length"
    assert capped.output_tokens == 7


def test_max_tokens_above_the_answer_is_a_natural_stop() -> None:
    reply = textgen.generate_reply(chat(max_tokens=100), reply_tokens=10)
    assert (reply.finish_reason, reply.output_tokens) == ("stop", 10)


def test_stop_sequence_cuts_before_the_earliest_match() -> None:
    whole = textgen.generate_reply(chat(), reply_tokens=40).text
    word = whole.split()[5]
    at = whole.find(word)
    reply = textgen.generate_reply(chat(stop=["zzz-never", word]), reply_tokens=40)
    assert reply.finish_reason == "stop_sequence"
    assert reply.stop_sequence == word
    assert reply.text == whole[:at]
    assert reply.output_tokens == len(reply.pieces)


def weather_tool(**extra: Any) -> ir.Tool:
    schema = {
        "type": "object",
        "properties": {
            "city": {"type": "string", "minLength": 2},
            "unit": {"enum": ["celsius", "fahrenheit"]},
            "days": {"type": "integer", "minimum": 1, "maximum": 5},
            "ratio": {"type": "number", "exclusiveMinimum": 0, "maximum": 1},
            "alerts": {"type": "boolean"},
            "when": {"type": "string", "format": "date"},
            "tags": {"type": "array", "items": {"type": "string"}, "minItems": 2},
            "where": {
                "type": "object",
                "properties": {"lat": {"type": "number"}, "note": {"type": ["null", "string"]}},
                "required": ["lat", "note"],
            },
            "optional": {"type": "string"},
        },
        "required": ["city", "unit", "days", "ratio", "alerts", "when", "tags", "where"],
        **extra,
    }
    return ir.Tool(name="get_weather", parameters=schema)


def test_tool_call_arguments_follow_the_schema() -> None:
    request = chat(tools=[weather_tool()])
    reply = textgen.generate_reply(request, reply_tokens=30, tool_id_prefix="toolu_")
    assert reply.finish_reason == "tool_calls" and not reply.pieces
    (call,) = reply.tool_calls
    assert call.name == "get_weather" and call.id.startswith("toolu_")
    args = msgspec.json.decode(call.arguments)
    assert set(args) == {"city", "unit", "days", "ratio", "alerts", "when", "tags", "where"}
    assert isinstance(args["city"], str) and len(args["city"]) >= 2
    assert args["unit"] in ("celsius", "fahrenheit")
    assert isinstance(args["days"], int) and 1 <= args["days"] <= 5
    assert isinstance(args["ratio"], float) and 0 < args["ratio"] <= 1
    assert isinstance(args["alerts"], bool)
    assert args["when"] == "2026-06-05"
    assert len(args["tags"]) == 2 and all(isinstance(t, str) for t in args["tags"])
    assert isinstance(args["where"]["lat"], float) and isinstance(args["where"]["note"], str)
    assert reply.output_tokens == textgen.estimate_tokens(call.name + call.arguments)


def test_forced_tool_choice_none_and_tool_results() -> None:
    other = ir.Tool(name="lookup", parameters={"type": "object"})
    forced = chat(tools=[weather_tool(), other], tool_choice=ir.ToolChoice("tool", "lookup"))
    assert textgen.generate_reply(forced, reply_tokens=5).tool_calls[0].name == "lookup"
    assert textgen.generate_reply(forced, reply_tokens=5).tool_calls[0].arguments == "{}"
    none = chat(tools=[weather_tool()], tool_choice=ir.ToolChoice("none"))
    assert textgen.generate_reply(none, reply_tokens=5).finish_reason == "stop"
    after_result = ir.ChatRequest(
        model="m",
        tools=[weather_tool()],
        messages=[
            ir.Message("user", [ir.TextPart("weather?")]),
            ir.Message("assistant", [ir.ToolCallPart("c1", "get_weather", "{}")]),
            ir.Message("user", [ir.ToolResultPart("c1", [ir.TextPart("sunny")])]),
        ],
    )
    reply = textgen.generate_reply(after_result, reply_tokens=5)
    assert reply.finish_reason == "stop" and reply.output_tokens == 5


@pytest.mark.parametrize(
    ("schema", "check"),
    [
        ({"const": 3}, lambda v: v == 3),
        ({"anyOf": [{"type": "null"}, {"type": "integer"}]}, lambda v: isinstance(v, int)),
        ({"type": "string", "maxLength": 2}, lambda v: isinstance(v, str) and len(v) <= 2),
        ({"default": "x", "type": "string"}, lambda v: v == "x"),
        ({"properties": {"a": {"type": "boolean"}}, "required": ["a"]}, lambda v: "a" in v),
        ({"type": "array", "items": {"type": "integer"}, "maxItems": 0}, lambda v: v == []),
    ],
)
def test_sample_schema_cases(schema: dict[str, Any], check: Any) -> None:
    assert check(textgen.sample_schema(schema, random.Random(1)))


def test_input_tokens_grow_with_the_prompt() -> None:
    short = textgen.input_tokens(chat("x" * 40))
    long = textgen.input_tokens(chat("x" * 4000))
    assert long - short == (4000 - 40) // 4
    assert textgen.input_tokens(chat("x", system="s" * 400)) >= 100
