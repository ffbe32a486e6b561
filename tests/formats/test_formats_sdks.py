"""The official SDKs against our wire code, in-process (httpx2 ``MockTransport``, no server).

Each SDK's own request body is parsed by ``parse_request``; our rendered responses, streams and
errors are read by the SDK's own parsers and stream accumulators.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import anthropic
import httpx2
import openai
import orjson
import pytest
from google import genai
from google.genai import types as genai_types

from hedgerow import ir
from hedgerow.formats import anthropic as anthropic_format
from hedgerow.formats import gemini as gemini_format
from hedgerow.formats import openai as openai_format
from tests.formats.helpers import encode, mock_client, sse_response

K = ir.ErrorKind

TOOL_STREAM: list[ir.StreamEvent] = [
    ir.MessageStart("upstream-id", "upstream-model", ir.Usage(input_tokens=21)),
    ir.ThinkingDelta(0, "Need weather."),
    ir.ThinkingDelta(0, "", signature="sig"),
    ir.BlockStop(0),
    ir.TextDelta(1, "Checking "),
    ir.TextDelta(1, "both."),
    ir.BlockStop(1),
    ir.ToolCallStart(2, "call_p", "weather"),
    ir.ToolCallDelta(2, '{"city":'),
    ir.ToolCallDelta(2, ' "Paris"}'),
    ir.BlockStop(2),
    ir.ToolCallStart(3, "call_r", "weather"),
    ir.ToolCallDelta(3, '{"city": "Rome"}'),
    ir.BlockStop(3),
    ir.MessageEnd("tool_calls", ir.Usage(output_tokens=40, cache_read_tokens=5)),
]

WEATHER_TOOL: dict[str, Any] = {
    "type": "object",
    "properties": {"city": {"type": "string"}},
    "required": ["city"],
}


class Recorder:
    """A MockTransport handler answering with ``reply`` and keeping the request bodies."""

    def __init__(self, reply: Callable[[dict[str, Any]], httpx2.Response]) -> None:
        self.bodies: list[dict[str, Any]] = []
        self.paths: list[str] = []
        self._reply = reply

    def __call__(self, request: httpx2.Request) -> httpx2.Response:
        body = orjson.loads(request.content)
        self.bodies.append(body)
        self.paths.append(request.url.path)
        return self._reply(body)


def json_response(body: dict[str, Any], status: int = 200) -> httpx2.Response:
    return httpx2.Response(status, json=body)


# ---------------------------------------------------------------------------------------------
# OpenAI


def _openai(recorder: Recorder) -> openai.OpenAI:
    return openai.OpenAI(
        api_key="sk-test",
        base_url="http://openai.test/v1",
        http_client=mock_client(recorder),
        max_retries=0,
    )


def test_openai_sdk_request_and_response() -> None:
    answer = ir.ChatResponse(
        "chatcmpl-1",
        "gpt-test",
        [ir.TextPart("Hi"), ir.ToolCallPart("call_1", "weather", '{"city":"Oslo"}')],
        "tool_calls",
        ir.Usage(10, 5, cache_read_tokens=2, reasoning_tokens=1),
    )
    recorder = Recorder(lambda _: json_response(openai_format.render_response(answer)))
    client = _openai(recorder)
    messages: Any = [
        {"role": "developer", "content": "Be brief."},
        {"role": "user", "content": "Weather?"},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "call_0",
                    "type": "function",
                    "function": {"name": "weather", "arguments": '{"city":"Oslo"}'},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "call_0", "content": "-3C"},
    ]
    completion = client.chat.completions.create(
        model="gpt-test",
        messages=messages,
        tools=[
            {
                "type": "function",
                "function": {"name": "weather", "parameters": WEATHER_TOOL, "strict": True},
            }
        ],
        tool_choice="required",
        max_completion_tokens=50,
        stop=["\n\n"],
        user="u",
    )
    request = openai_format.parse_request(recorder.bodies[0])
    assert request.system == "Be brief."
    assert request.tool_choice == ir.ToolChoice("required")
    assert request.messages[2] == ir.Message(
        "user", [ir.ToolResultPart("call_0", [ir.TextPart("-3C")])]
    )
    assert (request.max_tokens, request.stop, request.user) == (50, ["\n\n"], "u")
    message = completion.choices[0].message
    assert message.content == "Hi"
    assert message.tool_calls is not None and message.tool_calls[0].id == "call_1"
    assert completion.usage is not None and completion.usage.prompt_tokens == 12


def test_openai_sdk_stream_helper_accumulates_our_stream() -> None:
    body = encode(openai_format, TOOL_STREAM, id="chatcmpl-9", model="gpt-test", include_usage=True)
    recorder = Recorder(lambda _: sse_response(body))
    client = _openai(recorder)
    with client.chat.completions.stream(
        model="gpt-test",
        messages=[{"role": "user", "content": "Weather in Paris and Rome?"}],
        tools=[
            {
                "type": "function",
                "function": {"name": "weather", "parameters": WEATHER_TOOL, "strict": True},
            }
        ],
        stream_options={"include_usage": True},
    ) as stream:
        kinds = [event.type for event in stream]
        final = stream.get_final_completion()
    assert "content.delta" in kinds and "tool_calls.function.arguments.done" in kinds
    assert recorder.bodies[0]["stream"] is True
    message = final.choices[0].message
    assert final.id == "chatcmpl-9" and final.choices[0].finish_reason == "tool_calls"
    assert message.content == "Checking both."
    assert message.tool_calls is not None
    assert [(c.id, c.function.arguments) for c in message.tool_calls] == [
        ("call_p", '{"city": "Paris"}'),
        ("call_r", '{"city": "Rome"}'),
    ]
    assert message.tool_calls[0].function.parsed_arguments == {"city": "Paris"}
    assert final.usage is not None and final.usage.prompt_tokens == 26
    assert final.usage.completion_tokens == 40


def test_openai_sdk_raises_on_our_in_stream_error() -> None:
    events: list[ir.StreamEvent] = [
        ir.MessageStart("x", "m"),
        ir.TextDelta(0, "partial"),
        ir.StreamError(ir.ErrorInfo(K.OVERLOADED, "upstream overloaded")),
    ]
    body = encode(openai_format, events)
    client = _openai(Recorder(lambda _: sse_response(body)))
    stream = client.chat.completions.create(
        model="m", messages=[{"role": "user", "content": "x"}], stream=True
    )
    with pytest.raises(openai.APIError, match="upstream overloaded"):
        for _ in stream:
            pass


def test_openai_sdk_reads_our_error_bodies() -> None:
    error = ir.ErrorInfo(K.CONTEXT_WINDOW, "too long", param="messages")
    recorder = Recorder(
        lambda _: json_response(
            openai_format.render_error(error), openai_format.error_status(error)
        )
    )
    client = _openai(recorder)
    with pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(model="m", messages=[{"role": "user", "content": "x"}])
    assert info.value.code == "context_length_exceeded"
    assert info.value.param == "messages"


# ---------------------------------------------------------------------------------------------
# Anthropic


def _anthropic(recorder: Recorder) -> anthropic.Anthropic:
    return anthropic.Anthropic(
        api_key="sk-ant-test",
        base_url="http://anthropic.test",
        http_client=mock_client(recorder),
        max_retries=0,
    )


def test_anthropic_sdk_request_and_response() -> None:
    answer = ir.ChatResponse(
        "msg_1",
        "claude-test",
        [ir.TextPart("Sure."), ir.ToolCallPart("toolu_1", "weather", '{"city":"Oslo"}')],
        "tool_calls",
        ir.Usage(10, 5, cache_write_tokens=3),
    )
    recorder = Recorder(lambda _: json_response(anthropic_format.render_response(answer)))
    client = _anthropic(recorder)
    history: Any = [
        {"role": "user", "content": "Weather?"},
        {
            "role": "assistant",
            "content": [
                {
                    "type": "tool_use",
                    "id": "toolu_0",
                    "name": "weather",
                    "input": {"city": "Oslo"},
                }
            ],
        },
        {
            "role": "user",
            "content": [
                {
                    "type": "tool_result",
                    "tool_use_id": "toolu_0",
                    "content": [{"type": "text", "text": "-3C"}],
                }
            ],
        },
    ]
    message = client.messages.create(
        model="claude-test",
        max_tokens=100,
        system=[{"type": "text", "text": "Be brief.", "cache_control": {"type": "ephemeral"}}],
        messages=history,
        tools=[{"name": "weather", "input_schema": WEATHER_TOOL}],
        tool_choice={"type": "tool", "name": "weather"},
        metadata={"user_id": "u"},
    )
    request = anthropic_format.parse_request(recorder.bodies[0])
    assert request.system == "Be brief." and request.user == "u"
    assert request.tool_choice == ir.ToolChoice("tool", "weather")
    assert request.messages[1].content == [ir.ToolCallPart("toolu_0", "weather", '{"city":"Oslo"}')]
    assert message.stop_reason == "tool_use"
    assert message.content[1].type == "tool_use" and message.content[1].input == {"city": "Oslo"}
    assert message.usage.cache_creation_input_tokens == 3


def test_anthropic_sdk_stream_helper_accumulates_our_stream() -> None:
    body = encode(anthropic_format, TOOL_STREAM, id="msg_9", model="claude-test")
    client = _anthropic(Recorder(lambda _: sse_response(body)))
    with client.messages.stream(
        model="claude-test",
        max_tokens=100,
        messages=[{"role": "user", "content": "Weather in Paris and Rome?"}],
        tools=[{"name": "weather", "input_schema": WEATHER_TOOL}],
    ) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert text == "Checking both."
    assert final.id == "msg_9" and final.stop_reason == "tool_use"
    assert [block.type for block in final.content] == ["thinking", "text", "tool_use", "tool_use"]
    thinking, _, paris, rome = final.content
    assert thinking.type == "thinking" and thinking.signature == "sig"
    assert paris.type == "tool_use" and paris.input == {"city": "Paris"} and paris.id == "call_p"
    assert rome.type == "tool_use" and rome.input == {"city": "Rome"}
    assert final.usage.input_tokens == 21 and final.usage.output_tokens == 40
    assert final.usage.cache_read_input_tokens == 5


def test_anthropic_sdk_reads_usage_known_only_at_the_end() -> None:
    # An OpenAI upstream tells input tokens only at the end: message_delta must carry them.
    events: list[ir.StreamEvent] = [
        ir.MessageStart("x", "m"),
        ir.TextDelta(0, "hi"),
        ir.MessageEnd("stop", ir.Usage(input_tokens=33, output_tokens=2)),
    ]
    body = encode(anthropic_format, events)
    client = _anthropic(Recorder(lambda _: sse_response(body)))
    with client.messages.stream(
        model="m", max_tokens=10, messages=[{"role": "user", "content": "x"}]
    ) as stream:
        final = stream.get_final_message()
    assert final.usage.input_tokens == 33 and final.usage.output_tokens == 2


def test_anthropic_sdk_raises_on_our_error_event() -> None:
    events: list[ir.StreamEvent] = [
        ir.MessageStart("x", "m"),
        ir.TextDelta(0, "partial"),
        ir.StreamError(ir.ErrorInfo(K.OVERLOADED, "Overloaded")),
    ]
    body = encode(anthropic_format, events)
    client = _anthropic(Recorder(lambda _: sse_response(body)))
    stream = client.messages.create(
        model="m", max_tokens=10, messages=[{"role": "user", "content": "x"}], stream=True
    )
    with pytest.raises(anthropic.APIStatusError, match="overloaded_error"):
        for _ in stream:
            pass


def test_anthropic_sdk_reads_our_error_bodies() -> None:
    error = ir.ErrorInfo(K.OVERLOADED, "Overloaded")
    recorder = Recorder(
        lambda _: json_response(
            anthropic_format.render_error(error, request_id="req_1"),
            anthropic_format.error_status(error),
        )
    )
    client = _anthropic(recorder)
    with pytest.raises(anthropic.APIStatusError) as info:
        client.messages.create(model="m", max_tokens=1, messages=[{"role": "user", "content": "x"}])
    assert info.value.status_code == 529
    assert info.value.body["error"]["type"] == "overloaded_error"  # type: ignore[index]


# ---------------------------------------------------------------------------------------------
# Gemini


def _genai(recorder: Recorder) -> genai.Client:
    options = genai_types.HttpOptions(
        base_url="http://gemini.test", httpx_client=mock_client(recorder)
    )
    return genai.Client(api_key="gem-test", http_options=options)


def test_genai_sdk_request_and_response() -> None:
    answer = ir.ChatResponse(
        "resp-1",
        "gemini-test",
        [ir.ToolCallPart("call_1", "weather", '{"city":"Oslo"}')],
        "tool_calls",
        ir.Usage(10, 5, reasoning_tokens=2),
    )
    recorder = Recorder(lambda _: json_response(gemini_format.render_response(answer)))
    client = _genai(recorder)
    config = genai_types.GenerateContentConfig(
        system_instruction="Be brief.",
        max_output_tokens=64,
        temperature=0.2,
        stop_sequences=["END"],
        tools=[
            genai_types.Tool(
                function_declarations=[
                    genai_types.FunctionDeclaration(
                        name="weather", parameters_json_schema=WEATHER_TOOL
                    )
                ]
            )
        ],
        tool_config=genai_types.ToolConfig(
            function_calling_config=genai_types.FunctionCallingConfig(
                mode=genai_types.FunctionCallingConfigMode.ANY
            )
        ),
        automatic_function_calling=genai_types.AutomaticFunctionCallingConfig(disable=True),
    )
    response = client.models.generate_content(
        model="gemini-test",
        contents=[
            genai_types.Content(role="user", parts=[genai_types.Part(text="Weather?")]),
            genai_types.Content(
                role="model",
                parts=[genai_types.Part.from_function_call(name="weather", args={"city": "Oslo"})],
            ),
            genai_types.Content(
                role="user",
                parts=[
                    genai_types.Part.from_function_response(
                        name="weather", response={"output": "-3C"}
                    )
                ],
            ),
        ],
        config=config,
    )
    assert recorder.paths[0].endswith("/models/gemini-test:generateContent")
    request = gemini_format.parse_request(recorder.bodies[0], model="gemini-test")
    assert request.system == "Be brief."
    assert (request.max_tokens, request.temperature, request.stop) == (64, 0.2, ["END"])
    assert request.tool_choice == ir.ToolChoice("required")
    assert request.tools == [ir.Tool("weather", None, WEATHER_TOOL)]
    call = request.messages[1].content[0]
    result = request.messages[2].content[0]
    assert isinstance(call, ir.ToolCallPart) and isinstance(result, ir.ToolResultPart)
    assert result.tool_call_id == call.id and result.content == [ir.TextPart("-3C")]
    assert response.function_calls is not None
    assert response.function_calls[0].args == {"city": "Oslo"}
    assert response.usage_metadata is not None
    assert response.usage_metadata.candidates_token_count == 3
    assert response.usage_metadata.thoughts_token_count == 2


def test_genai_sdk_reads_our_stream() -> None:
    body = encode(gemini_format, TOOL_STREAM, id="resp-9", model="gemini-test")
    recorder = Recorder(lambda _: sse_response(body))
    client = _genai(recorder)
    texts: list[str] = []
    calls: list[genai_types.FunctionCall] = []
    last: genai_types.GenerateContentResponse | None = None
    for chunk in client.models.generate_content_stream(model="gemini-test", contents="Weather?"):
        assert chunk.candidates is not None
        content = chunk.candidates[0].content
        for part in (content.parts if content else None) or []:
            if part.text and not part.thought:
                texts.append(part.text)
            if part.function_call:
                calls.append(part.function_call)
        last = chunk
    assert recorder.paths[0].endswith("/models/gemini-test:streamGenerateContent")
    assert "".join(texts) == "Checking both."
    assert [(c.id, c.name, c.args) for c in calls] == [
        ("call_p", "weather", {"city": "Paris"}),
        ("call_r", "weather", {"city": "Rome"}),
    ]
    assert last is not None and last.candidates is not None
    assert last.candidates[0].finish_reason == "STOP"
    assert last.usage_metadata is not None and last.usage_metadata.prompt_token_count == 26


def test_genai_sdk_reads_our_error_bodies() -> None:
    error = ir.ErrorInfo(K.RATE_LIMITED, "Resource has been exhausted")
    recorder = Recorder(
        lambda _: json_response(
            gemini_format.render_error(error), gemini_format.error_status(error)
        )
    )
    client = _genai(recorder)
    with pytest.raises(genai.errors.ClientError) as info:
        client.models.generate_content(model="gemini-test", contents="x")
    assert info.value.code == 429 and info.value.status == "RESOURCE_EXHAUSTED"
