"""Untrusted input: parsers raise nothing but ``FormatError``, decoders raise nothing at all
and always emit well-formed IR, ``parse_error`` never raises."""

from __future__ import annotations

import contextlib
import copy
import random
from types import ModuleType
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hedgerow import ir
from hedgerow.formats import FormatError
from hedgerow.formats._common import json_bytes
from tests.formats.helpers import FORMATS, fixture_bytes, random_splits

FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**63 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(st.characters(exclude_categories=["Cs"]), max_size=10),
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(
            st.text(st.characters(exclude_categories=["Cs"]), max_size=8), inner, max_size=4
        )
    ),
    max_leaves=20,
)

# Valid bodies of each format, to mutate: random JSON rarely gets past the first field.
TEMPLATES: dict[str, dict[str, Any]] = {
    "openai": {
        "model": "m",
        "messages": [
            {"role": "system", "content": "s"},
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "q"},
                    {"type": "image_url", "image_url": {"url": "data:image/png;base64,AA"}},
                ],
            },
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {"id": "c", "type": "function", "function": {"name": "f", "arguments": "{}"}}
                ],
            },
            {"role": "tool", "tool_call_id": "c", "content": "r"},
        ],
        "tools": [
            {"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}
        ],
        "tool_choice": "auto",
        "max_tokens": 5,
        "stop": ["x"],
        "stream": True,
        "stream_options": {"include_usage": True},
    },
    "anthropic": {
        "model": "m",
        "max_tokens": 5,
        "system": [{"type": "text", "text": "s"}],
        "messages": [
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "q"},
                    {
                        "type": "image",
                        "source": {"type": "base64", "media_type": "image/png", "data": "AA"},
                    },
                ],
            },
            {
                "role": "assistant",
                "content": [
                    {"type": "thinking", "thinking": "t", "signature": "s"},
                    {"type": "tool_use", "id": "c", "name": "f", "input": {}},
                ],
            },
            {
                "role": "user",
                "content": [
                    {
                        "type": "tool_result",
                        "tool_use_id": "c",
                        "content": [{"type": "text", "text": "r"}],
                    }
                ],
            },
        ],
        "tools": [{"name": "f", "input_schema": {"type": "object"}}],
        "tool_choice": {"type": "auto"},
        "metadata": {"user_id": "u"},
    },
    "gemini": {
        "contents": [
            {
                "role": "user",
                "parts": [{"text": "q"}, {"inlineData": {"mimeType": "image/png", "data": "AA"}}],
            },
            {"role": "model", "parts": [{"functionCall": {"name": "f", "args": {}}}]},
            {
                "role": "user",
                "parts": [{"functionResponse": {"name": "f", "response": {"output": "r"}}}],
            },
        ],
        "systemInstruction": {"parts": [{"text": "s"}]},
        "generationConfig": {"maxOutputTokens": 5, "stopSequences": ["x"]},
        "tools": [{"functionDeclarations": [{"name": "f", "parameters": {"type": "object"}}]}],
        "toolConfig": {"functionCallingConfig": {"mode": "AUTO"}},
    },
}

RESPONSES: dict[str, dict[str, Any]] = {
    "openai": {
        "id": "x",
        "model": "m",
        "choices": [
            {
                "index": 0,
                "message": {
                    "role": "assistant",
                    "content": "a",
                    "tool_calls": [
                        {
                            "id": "c",
                            "type": "function",
                            "function": {"name": "f", "arguments": "{}"},
                        }
                    ],
                },
                "finish_reason": "stop",
            }
        ],
        "usage": {
            "prompt_tokens": 1,
            "completion_tokens": 1,
            "prompt_tokens_details": {"cached_tokens": 0},
        },
    },
    "anthropic": {
        "id": "x",
        "type": "message",
        "model": "m",
        "content": [
            {"type": "text", "text": "a"},
            {"type": "tool_use", "id": "c", "name": "f", "input": {}},
        ],
        "stop_reason": "end_turn",
        "usage": {"input_tokens": 1, "output_tokens": 1},
    },
    "gemini": {
        "candidates": [
            {
                "content": {"parts": [{"text": "a"}, {"functionCall": {"name": "f", "args": {}}}]},
                "finishReason": "STOP",
            }
        ],
        "usageMetadata": {"promptTokenCount": 1},
    },
}


def _paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    paths = [prefix]
    if isinstance(value, dict):
        for key, item in value.items():
            paths += _paths(item, (*prefix, key))
    elif isinstance(value, list):
        for i, item in enumerate(value):
            paths += _paths(item, (*prefix, i))
    return paths


def mutate(template: dict[str, Any], path_choice: int, replacement: Any, drop: bool) -> Any:
    """``template`` with one node (picked by ``path_choice``) replaced or removed."""
    body = copy.deepcopy(template)
    paths = _paths(body)
    path = paths[path_choice % len(paths)]
    if not path:
        return replacement
    parent = body
    for key in path[:-1]:
        parent = parent[key]
    if drop:
        del parent[path[-1]]
    else:
        parent[path[-1]] = replacement
    return body


def parse_request(fmt: ModuleType, body: Any) -> ir.ChatRequest | None:
    try:
        return fmt.parse_request(body)  # type: ignore[no-any-return]
    except FormatError:
        return None


@pytest.mark.parametrize("name", FORMATS)
@FUZZ
@given(body=json_values)
def test_parse_request_on_arbitrary_json(name: str, body: Any) -> None:
    parse_request(FORMATS[name], body)


@pytest.mark.parametrize("name", FORMATS)
@FUZZ
@given(path=st.integers(0, 10_000), replacement=json_values, drop=st.booleans())
def test_parse_request_on_mutated_bodies(
    name: str, path: int, replacement: Any, drop: bool
) -> None:
    request = parse_request(FORMATS[name], mutate(TEMPLATES[name], path, replacement, drop))
    if request is None:
        return
    # What parses renders in every format, or is refused with FormatError (a Gemini result
    # whose function cannot be named, arguments that are not an object).
    for target in FORMATS.values():
        with contextlib.suppress(FormatError):
            json_bytes(target.render_request(request, "m"))


@pytest.mark.parametrize("name", FORMATS)
@FUZZ
@given(path=st.integers(0, 10_000), replacement=json_values, drop=st.booleans())
def test_parse_response_on_mutated_bodies(
    name: str, path: int, replacement: Any, drop: bool
) -> None:
    fmt = FORMATS[name]
    try:
        response = fmt.parse_response(mutate(RESPONSES[name], path, replacement, drop))
    except FormatError:
        return
    for target in FORMATS.values():
        with contextlib.suppress(FormatError):
            orjson.dumps(target.render_response(response))


@pytest.mark.parametrize("name", FORMATS)
@FUZZ
@given(body=json_values)
def test_parse_response_on_arbitrary_json(name: str, body: Any) -> None:
    with contextlib.suppress(FormatError):
        FORMATS[name].parse_response(body)


@pytest.mark.parametrize("name", FORMATS)
@FUZZ
@given(status=st.integers(0, 999), body=st.binary(max_size=200) | json_values.map(orjson.dumps))
def test_parse_error_never_raises(name: str, status: int, body: bytes) -> None:
    kind, message = FORMATS[name].parse_error(status, body)
    assert kind is None or isinstance(kind, str)
    assert isinstance(message, str) and message


def check_well_formed(events: list[ir.StreamEvent]) -> None:
    """What a decoder's output must always be, whatever went in."""
    terminals = [i for i, e in enumerate(events) if isinstance(e, ir.MessageEnd | ir.StreamError)]
    assert terminals == [len(events) - 1], "exactly one terminal event, last"
    if not isinstance(events[0], ir.StreamError):
        assert isinstance(events[0], ir.MessageStart)
    assert sum(isinstance(e, ir.MessageStart) for e in events) <= 1
    accumulator = ir.StreamAccumulator()
    for event in events:
        accumulator.feed(event)  # raises on fragments of unknown blocks
    if accumulator.finished:
        accumulator.result()


def run_decoder(fmt: ModuleType, pieces: list[bytes]) -> list[ir.StreamEvent]:
    decoder = fmt.StreamDecoder()
    events: list[ir.StreamEvent] = []
    for piece in pieces:
        events.extend(decoder.feed(piece))
    events.extend(decoder.close())
    assert decoder.feed(b"data: {}\n\n") == [] and decoder.close() == []
    return events


@pytest.mark.parametrize("name", FORMATS)
@FUZZ
@given(pieces=st.lists(st.binary(max_size=64), max_size=8))
def test_decoders_on_arbitrary_bytes(name: str, pieces: list[bytes]) -> None:
    check_well_formed(run_decoder(FORMATS[name], pieces))


# Event names and JSON shapes close to each dialect, so the fuzz gets past the framing.
_EVENT_NAMES = st.sampled_from(
    [
        None,
        "message_start",
        "content_block_start",
        "content_block_delta",
        "content_block_stop",
        "message_delta",
        "message_stop",
        "ping",
        "error",
    ]
)
_DELTAS = st.fixed_dictionaries(
    {
        "type": st.sampled_from(
            [
                "text_delta",
                "input_json_delta",
                "thinking_delta",
                "signature_delta",
                "citations_delta",
            ]
        )
    },
    optional={
        "text": json_values,
        "partial_json": json_values,
        "thinking": json_values,
        "signature": json_values,
    },
)
_BLOCKS = st.fixed_dictionaries(
    {
        "type": st.sampled_from(
            ["text", "tool_use", "thinking", "redacted_thinking", "server_tool_use"]
        )
    },
    optional={"text": json_values, "id": json_values, "name": json_values, "input": json_values},
)
_CHUNK_DATA = st.one_of(
    json_values,
    st.fixed_dictionaries(
        {
            "type": st.sampled_from(
                [
                    "content_block_start",
                    "content_block_delta",
                    "content_block_stop",
                    "message_start",
                    "message_delta",
                    "message_stop",
                    "error",
                ]
            )
        },
        optional={
            "index": st.integers(-1, 3) | json_values,
            "delta": _DELTAS | json_values,
            "content_block": _BLOCKS,
            "message": st.fixed_dictionaries(
                {}, optional={"id": json_values, "model": json_values, "usage": json_values}
            ),
            "usage": json_values,
            "error": json_values,
        },
    ),
    st.fixed_dictionaries(
        {},
        optional={
            "id": json_values,
            "choices": st.lists(
                st.fixed_dictionaries(
                    {},
                    optional={
                        "index": st.integers(0, 1),
                        "delta": st.fixed_dictionaries(
                            {},
                            optional={
                                "content": json_values,
                                "reasoning_content": json_values,
                                "tool_calls": st.lists(
                                    st.fixed_dictionaries(
                                        {},
                                        optional={
                                            "index": st.integers(0, 2) | json_values,
                                            "id": json_values,
                                            "function": json_values,
                                        },
                                    ),
                                    max_size=2,
                                ),
                            },
                        ),
                        "finish_reason": json_values,
                    },
                ),
                max_size=2,
            ),
            "usage": json_values,
            "error": json_values,
        },
    ),
    st.fixed_dictionaries(
        {},
        optional={
            "candidates": st.lists(
                st.fixed_dictionaries(
                    {},
                    optional={
                        "content": st.fixed_dictionaries(
                            {}, optional={"parts": st.lists(json_values, max_size=3)}
                        ),
                        "finishReason": json_values,
                    },
                ),
                max_size=2,
            ),
            "usageMetadata": json_values,
            "promptFeedback": json_values,
            "error": json_values,
        },
    ),
)
_STREAM_EVENTS = st.lists(
    st.tuples(
        _EVENT_NAMES, _CHUNK_DATA.map(lambda v: orjson.dumps(v).decode()) | st.just("[DONE]")
    ),
    max_size=10,
)


@pytest.mark.parametrize("name", FORMATS)
@FUZZ
@given(events=_STREAM_EVENTS, seed=st.integers(0, 2**16))
def test_decoders_on_dialect_shaped_events(
    name: str, events: list[tuple[str | None, str]], seed: int
) -> None:
    data = b"".join(
        (b"" if event is None else b"event: " + event.encode() + b"\n")
        + b"data: "
        + payload.encode()
        + b"\n\n"
        for event, payload in events
    )
    check_well_formed(run_decoder(FORMATS[name], random_splits(data, random.Random(seed))))


@pytest.mark.parametrize("cut", range(0, 2000, 37))
def test_every_truncation_of_a_real_stream_is_handled(cut: int) -> None:
    data = fixture_bytes("anthropic/tool_use_response.sse")[:cut]
    events = run_decoder(FORMATS["anthropic"], [data])
    check_well_formed(events)
    assert isinstance(events[-1], ir.StreamError)
