"""Across formats: IR -> A -> IR -> B -> IR keeps what every format can carry.

Each format's known losses are applied to the expectation explicitly (``LOSSES``), so a new
loss shows up as a failure here rather than as a silent change.
"""

from __future__ import annotations

import itertools
import random
from collections.abc import Callable
from types import ModuleType

import msgspec
import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hedgerow import ir
from hedgerow.formats import anthropic, gemini
from tests.formats.helpers import FORMATS, accumulate, decode, encode, random_splits

PAIRS = list(itertools.product(FORMATS, repeat=2))

PORTABLE_REQUEST = ir.ChatRequest(
    model="m",
    system="You are terse.",
    messages=[
        ir.Message(
            "user", [ir.TextPart("Weather?"), ir.ImagePart(media_type="image/png", data="iVBOR")]
        ),
        ir.Message(
            "assistant",
            [
                ir.TextPart("Checking."),
                ir.ToolCallPart("call_1", "weather", '{"city":"Paris"}'),
                ir.ToolCallPart("call_2", "weather", '{"city":"Rome"}'),
            ],
        ),
        ir.Message(
            "user",
            [
                ir.ToolResultPart("call_1", [ir.TextPart("18C")]),
                ir.ToolResultPart("call_2", [ir.TextPart("failed")], is_error=True),
            ],
        ),
        ir.Message("assistant", [ir.TextPart("Paris: 18C.")]),
        ir.Message("user", [ir.TextPart("Thanks")]),
    ],
    max_tokens=256,
    temperature=0.5,
    top_p=0.9,
    stop=["END"],
    tools=[
        ir.Tool(
            "weather",
            "Current weather",
            {"type": "object", "properties": {"city": {"type": "string"}}},
        )
    ],
    tool_choice=ir.ToolChoice("tool", "weather"),
    stream=True,
    include_usage=True,
)


def through(fmt: ModuleType, request: ir.ChatRequest) -> ir.ChatRequest:
    body = orjson.loads(orjson.dumps(fmt.render_request(request, "m")))  # as on the wire
    if fmt is gemini:
        return gemini.parse_request(body, model="m", stream=request.stream)
    parsed: ir.ChatRequest = fmt.parse_request(body)
    return parsed


def normal_request(request: ir.ChatRequest) -> ir.ChatRequest:
    """What must survive every format: tool-call ids only as links (Gemini makes its own),
    result names dropped (only Gemini carries them), OpenAI's is_error dropped, and the
    fields not every format has."""
    ids: dict[str, str] = {}
    messages = []
    for message in request.messages:
        parts: list[ir.ContentPart] = []
        for part in message.content:
            if isinstance(part, ir.ToolCallPart):
                part = msgspec.structs.replace(part, id=ids.setdefault(part.id, f"id{len(ids)}"))
            elif isinstance(part, ir.ToolResultPart):
                part = msgspec.structs.replace(
                    part, tool_call_id=ids.get(part.tool_call_id, "?"), name=None, is_error=False
                )
            parts.append(part)
        messages.append(ir.Message(message.role, parts))
    return msgspec.structs.replace(
        request, messages=messages, user=None, parallel_tool_calls=None, top_k=None
    )


@pytest.mark.parametrize(("a", "b"), PAIRS)
def test_request_across_formats(a: str, b: str) -> None:
    after = through(FORMATS[b], through(FORMATS[a], PORTABLE_REQUEST))
    assert normal_request(after) == normal_request(PORTABLE_REQUEST)


@pytest.mark.parametrize("name", FORMATS)
def test_request_extras_survive_where_carried(name: str) -> None:
    extra = msgspec.structs.replace(
        PORTABLE_REQUEST, user="u-1", parallel_tool_calls=False, top_k=7
    )
    after = through(FORMATS[name], extra)
    carried = {
        "openai": (("user", "u-1"), ("parallel_tool_calls", False), ("top_k", None)),
        "anthropic": (("user", "u-1"), ("parallel_tool_calls", False), ("top_k", 7)),
        "gemini": (("user", None), ("parallel_tool_calls", None), ("top_k", 7)),
    }[name]
    for field, value in carried:
        assert getattr(after, field) == value, field


PORTABLE_RESPONSE = ir.ChatResponse(
    id="resp_1",
    model="m",
    content=[
        ir.ThinkingPart("Let me think.", "sig"),
        ir.TextPart("Calling."),
        ir.ToolCallPart("call_1", "weather", '{"city":"Paris"}'),
    ],
    finish_reason="tool_calls",
    usage=ir.Usage(input_tokens=10, output_tokens=30, cache_read_tokens=5, reasoning_tokens=0),
)


def normal_response(response: ir.ChatResponse) -> ir.ChatResponse:
    content = [
        msgspec.structs.replace(p, signature=None) if isinstance(p, ir.ThinkingPart) else p
        for p in response.content
    ]
    return msgspec.structs.replace(response, content=content)


@pytest.mark.parametrize(("a", "b"), PAIRS)
def test_response_across_formats(a: str, b: str) -> None:
    resp = PORTABLE_RESPONSE
    for name in (a, b):
        fmt = FORMATS[name]
        resp = fmt.parse_response(orjson.loads(orjson.dumps(fmt.render_response(resp))))
    assert normal_response(resp) == normal_response(PORTABLE_RESPONSE)


# ---------------------------------------------------------------------------------------------
# Streams: generated IR streams through encoder and decoder of each format, and chained.


def _openai_loss(resp: ir.ChatResponse) -> ir.ChatResponse:
    # No signatures; prompt_tokens hold cache writes too, read back as plain input.
    usage = resp.usage
    usage = msgspec.structs.replace(
        usage, input_tokens=usage.input_tokens + usage.cache_write_tokens, cache_write_tokens=0
    )
    return msgspec.structs.replace(normal_response(resp), usage=usage)


def _anthropic_loss(resp: ir.ChatResponse) -> ir.ChatResponse:
    return msgspec.structs.replace(
        resp, usage=msgspec.structs.replace(resp.usage, reasoning_tokens=0)
    )


def _gemini_loss(resp: ir.ChatResponse) -> ir.ChatResponse:
    # Arguments travel as objects: they come back as compact JSON text. No signatures.
    usage = resp.usage
    usage = msgspec.structs.replace(
        usage, input_tokens=usage.input_tokens + usage.cache_write_tokens, cache_write_tokens=0
    )
    content = [
        msgspec.structs.replace(p, arguments=orjson.dumps(orjson.loads(p.arguments)).decode())
        if isinstance(p, ir.ToolCallPart)
        else msgspec.structs.replace(p, signature=None)
        if isinstance(p, ir.ThinkingPart)
        else p
        for p in resp.content
    ]
    return msgspec.structs.replace(resp, usage=usage, content=content)


LOSSES: dict[str, Callable[[ir.ChatResponse], ir.ChatResponse]] = {
    "openai": _openai_loss,
    "anthropic": _anthropic_loss,
    "gemini": _gemini_loss,
}

_json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-1000, 1000) | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3)
    ),
    max_leaves=8,
)
_text = st.text(st.characters(exclude_categories=["Cs"]), min_size=1, max_size=12)


def _fragments(draw: st.DrawFn, text: str) -> list[str]:
    cuts = sorted(draw(st.sets(st.integers(1, max(len(text) - 1, 1)), max_size=4)))
    bounds = [0, *[c for c in cuts if c < len(text)], len(text)]
    return [text[i:j] for i, j in itertools.pairwise(bounds) if i < j]


@st.composite
def ir_streams(draw: st.DrawFn) -> list[ir.StreamEvent]:
    """A well-formed stream: MessageStart, blocks (no two text or thinking blocks in a row,
    which formats without block boundaries would merge), MessageEnd."""
    kinds = draw(st.lists(st.sampled_from(["text", "thinking", "tool"]), max_size=5))
    kinds = [k for i, k in enumerate(kinds) if k == "tool" or i == 0 or kinds[i - 1] != k]
    output = draw(st.integers(1, 500))
    usage = ir.Usage(
        input_tokens=draw(st.integers(0, 500)),
        output_tokens=output,
        cache_read_tokens=draw(st.integers(0, 50)),
        cache_write_tokens=draw(st.integers(0, 50)),
        reasoning_tokens=draw(st.integers(0, output)),
    )
    events: list[ir.StreamEvent] = [ir.MessageStart("resp_x", "model-x")]
    for index, kind in enumerate(kinds):
        if kind == "text":
            events += [
                ir.TextDelta(index, t) for t in draw(st.lists(_text, min_size=1, max_size=3))
            ]
        elif kind == "thinking":
            events += [
                ir.ThinkingDelta(index, t) for t in draw(st.lists(_text, min_size=1, max_size=3))
            ]
            signature = draw(
                st.none() | st.text(st.characters(codec="ascii"), min_size=1, max_size=8)
            )
            if signature is not None:
                events.append(ir.ThinkingDelta(index, "", signature))
        else:
            name = draw(st.from_regex(r"[a-z][a-z_]{0,9}", fullmatch=True))
            args = orjson.dumps(
                draw(st.dictionaries(st.text(max_size=5), _json_values, max_size=3))
            )
            events.append(ir.ToolCallStart(index, f"call_{index}", name))
            events += [ir.ToolCallDelta(index, f) for f in _fragments(draw, args.decode())]
        events.append(ir.BlockStop(index))
    finish: ir.FinishReason = (
        "tool_calls"
        if "tool" in kinds
        else draw(st.sampled_from(["stop", "length", "content_filter"]))
    )
    events.append(ir.MessageEnd(finish, usage))
    return events


def relay(name: str, events: list[ir.StreamEvent], seed: int) -> list[ir.StreamEvent]:
    fmt = FORMATS[name]
    data = encode(fmt, events, id="resp_x", model="model-x", include_usage=True)
    return decode(fmt, data, random_splits(data, random.Random(seed)))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(events=ir_streams(), seed=st.integers(0, 2**16))
def test_streams_through_each_format_and_chained(events: list[ir.StreamEvent], seed: int) -> None:
    original = accumulate(events)
    for a, b in PAIRS:
        once = relay(a, events, seed)
        assert accumulate(once) == LOSSES[a](original), a
        twice = relay(b, once, seed)
        assert accumulate(twice) == LOSSES[b](LOSSES[a](original)), (a, b)


def test_decoder_output_drives_other_encoders_event_for_event() -> None:
    """The Anthropic fixture decoded, re-encoded as each format and decoded again."""
    from tests.formats.helpers import fixture_bytes

    events = decode(anthropic, fixture_bytes("anthropic/tool_use_response.sse"))
    expected = accumulate(events)
    for name in ("openai", "gemini"):
        fmt = FORMATS[name]
        again = accumulate(decode(fmt, encode(fmt, events, include_usage=True)))
        assert again.content == LOSSES[name](expected).content
        assert again.finish_reason == "tool_calls"
        assert again.usage == ir.Usage(377, 65)
