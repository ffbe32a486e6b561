"""The OpenAI SDK against the simulator: answers, streams, tools, and every fault."""

from __future__ import annotations

import json
import time
from typing import Any

import httpx
import openai
import pytest
from openai.types.chat import ChatCompletionMessageFunctionToolCall

from hedgerow.sim import ModelConfig
from hedgerow.sim.mock import RunningMock

MODEL = "gpt-4o"
HELLO: list[Any] = [{"role": "user", "content": "hello"}]
WEATHER: list[Any] = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "Weather for a city",
            "parameters": {
                "type": "object",
                "properties": {
                    "city": {"type": "string"},
                    "unit": {"type": "string", "enum": ["c", "f"]},
                    "days": {"type": "integer", "minimum": 1, "maximum": 3},
                },
                "required": ["city", "unit", "days"],
            },
        },
    }
]


async def stream_text(client: openai.AsyncOpenAI, **kwargs: Any) -> tuple[str, list[str], Any]:
    """Text, finish reasons and usage of a streamed completion."""
    stream = await client.chat.completions.create(
        model=kwargs.pop("model", MODEL),
        messages=kwargs.pop("messages", HELLO),
        stream=True,
        **kwargs,
    )
    text, finishes, usage = [], [], None
    async for chunk in stream:
        if chunk.usage is not None:
            usage = chunk.usage
        for choice in chunk.choices:
            if choice.delta.content:
                text.append(choice.delta.content)
            if choice.finish_reason:
                finishes.append(choice.finish_reason)
    return "".join(text), finishes, usage


async def test_completion_is_deterministic_with_consistent_usage(oai: openai.AsyncOpenAI) -> None:
    first = await oai.chat.completions.create(model=MODEL, messages=HELLO)
    again = await oai.chat.completions.create(model=MODEL, messages=HELLO)
    message = first.choices[0].message
    assert message.content and message.content == again.choices[0].message.content
    assert first.id != again.id and first.id.startswith("chatcmpl-")
    assert first.choices[0].finish_reason == "stop"
    assert first.usage is not None
    assert first.usage.completion_tokens == 24  # the default answer length
    assert first.usage.total_tokens == first.usage.prompt_tokens + 24


async def test_max_tokens_and_stop(oai: openai.AsyncOpenAI) -> None:
    full = (
        (await oai.chat.completions.create(model=MODEL, messages=HELLO)).choices[0].message.content
    )
    assert full
    capped = await oai.chat.completions.create(model=MODEL, messages=HELLO, max_completion_tokens=5)
    assert capped.choices[0].finish_reason == "length"
    assert capped.usage is not None and capped.usage.completion_tokens == 5
    assert full.startswith(capped.choices[0].message.content or "-")
    word = full.split()[3]
    stopped = await oai.chat.completions.create(model=MODEL, messages=HELLO, stop=[word])
    assert stopped.choices[0].finish_reason == "stop"
    assert stopped.choices[0].message.content == full[: full.find(word)]


async def test_stream_equals_whole_answer(oai: openai.AsyncOpenAI) -> None:
    whole = await oai.chat.completions.create(model=MODEL, messages=HELLO)
    text, finishes, usage = await stream_text(oai, stream_options={"include_usage": True})
    assert text == whole.choices[0].message.content
    assert finishes == ["stop"]
    assert usage is not None and usage.completion_tokens == 24


async def test_tools_then_tool_result(oai: openai.AsyncOpenAI) -> None:
    called = await oai.chat.completions.create(model=MODEL, messages=HELLO, tools=WEATHER)
    choice = called.choices[0]
    assert choice.finish_reason == "tool_calls"
    (call,) = choice.message.tool_calls or []
    assert call.type == "function" and call.function.name == "get_weather"
    args = json.loads(call.function.arguments)
    assert set(args) == {"city", "unit", "days"} and args["unit"] in ("c", "f")
    follow_up: list[Any] = [
        *HELLO,
        {"role": "assistant", "tool_calls": [call.model_dump()]},
        {"role": "tool", "tool_call_id": call.id, "content": "sunny"},
    ]
    answered = await oai.chat.completions.create(model=MODEL, messages=follow_up, tools=WEATHER)
    assert answered.choices[0].finish_reason == "stop"
    assert answered.choices[0].message.content


async def test_stream_helper_accumulates_tool_calls(
    oai: openai.AsyncOpenAI, sim: RunningMock
) -> None:
    sim.state.set_model("*", ModelConfig(chunk_tokens=2))  # arguments in 8-character pieces
    whole = await oai.chat.completions.create(model=MODEL, messages=HELLO, tools=WEATHER)
    async with oai.chat.completions.stream(model=MODEL, messages=HELLO, tools=WEATHER) as stream:
        final = await stream.get_final_completion()
    (call,) = final.choices[0].message.tool_calls or []
    (expected,) = whole.choices[0].message.tool_calls or []
    assert isinstance(expected, ChatCompletionMessageFunctionToolCall)
    assert (call.id, call.function.name, call.function.arguments) == (
        expected.id,
        expected.function.name,
        expected.function.arguments,
    )
    assert final.choices[0].finish_reason == "tool_calls"


async def test_models_list(oai: openai.AsyncOpenAI) -> None:
    models = [m.id async for m in oai.models.list()]
    assert "gpt-4o" in models
    assert (await oai.models.retrieve("gpt-4o")).id == "gpt-4o"


@pytest.mark.parametrize(
    ("status", "error"),
    [
        (400, openai.BadRequestError),
        (401, openai.AuthenticationError),
        (429, openai.RateLimitError),
        (500, openai.InternalServerError),
        (502, openai.InternalServerError),
        (503, openai.InternalServerError),
        (504, openai.InternalServerError),
    ],
)
@pytest.mark.parametrize("stream", [False, True])
async def test_http_errors(
    oai: openai.AsyncOpenAI, sim: RunningMock, status: int, error: type[Exception], stream: bool
) -> None:
    sim.set_faults(MODEL, {"kind": "error", "status": status, "count": 1})
    with pytest.raises(error) as caught:
        if stream:
            await stream_text(oai)
        else:
            await oai.chat.completions.create(model=MODEL, messages=HELLO)
    exc = caught.value
    assert isinstance(exc, openai.APIStatusError) and exc.status_code == status
    assert exc.response.headers["x-request-id"].startswith("req_")
    body = exc.body
    assert isinstance(body, dict) and set(body) == {"message", "type", "param", "code"}
    # count 1: the next request goes through, and both were counted
    await oai.chat.completions.create(model=MODEL, messages=HELLO)
    assert sim.outcomes(MODEL) == {f"error_{status}": 1, "ok": 1}


async def test_rate_limit_headers(oai: openai.AsyncOpenAI, sim: RunningMock) -> None:
    sim.set_faults(MODEL, {"kind": "error", "status": 429, "retry_after": 7})
    with pytest.raises(openai.RateLimitError) as caught:
        await oai.chat.completions.create(model=MODEL, messages=HELLO)
    headers = caught.value.response.headers
    assert headers["retry-after"] == "7"
    assert headers["x-ratelimit-remaining-requests"] == "0"
    assert headers["x-ratelimit-reset-requests"] == "7s"
    assert caught.value.code == "rate_limit_exceeded"


async def test_in_stream_error_after_tokens(oai: openai.AsyncOpenAI, sim: RunningMock) -> None:
    sim.set_faults(MODEL, {"kind": "stream_error", "after_tokens": 3})
    seen: list[str] = []
    with pytest.raises(openai.APIError, match="overloaded"):
        stream = await oai.chat.completions.create(model=MODEL, messages=HELLO, stream=True)
        async for chunk in stream:
            seen.extend(c.delta.content or "" for c in chunk.choices)
    assert len([s for s in seen if s]) == 3
    # a non-streamed request meets the same fault as an HTTP status
    with pytest.raises(openai.InternalServerError) as caught:
        await oai.chat.completions.create(model=MODEL, messages=HELLO)
    assert caught.value.status_code == 503
    assert sim.outcomes(MODEL) == {"stream_error": 2}


@pytest.mark.parametrize("after", [None, 2])
@pytest.mark.parametrize("stream", [False, True])
async def test_reset(
    oai: openai.AsyncOpenAI, sim: RunningMock, after: int | None, stream: bool
) -> None:
    sim.set_faults(MODEL, {"kind": "reset", "after_tokens": after})
    with pytest.raises((openai.APIConnectionError, httpx.RemoteProtocolError)):
        if stream:
            await stream_text(oai)
        else:
            await oai.chat.completions.create(model=MODEL, messages=HELLO)
    assert sim.outcomes(MODEL) == {"reset": 1}


async def test_clean_cut_has_no_terminal_event(oai: openai.AsyncOpenAI, sim: RunningMock) -> None:
    sim.set_faults(MODEL, {"kind": "cut", "after_tokens": 4})
    text, finishes, _ = await stream_text(oai)
    assert finishes == []  # no closing chunk: the SDK ends quietly, a careful client notices
    assert len(text.split()) == 4
    async with httpx.AsyncClient() as raw:
        response = await raw.post(
            f"{sim.openai_base_url}/chat/completions",
            json={"model": MODEL, "messages": HELLO, "stream": True},
            headers={"Authorization": "Bearer test"},
        )
    assert response.status_code == 200 and b"data: [DONE]" not in response.content
    sim.state.faults.clear()
    async with httpx.AsyncClient() as raw:
        response = await raw.post(
            f"{sim.openai_base_url}/chat/completions",
            json={"model": MODEL, "messages": HELLO, "stream": True},
            headers={"Authorization": "Bearer test"},
        )
    assert response.content.endswith(b"data: [DONE]\n\n")


async def test_malformed_chunk(oai: openai.AsyncOpenAI, sim: RunningMock) -> None:
    sim.set_faults(MODEL, {"kind": "malformed", "after_tokens": 1})
    with pytest.raises(ValueError):
        await stream_text(oai)
    with pytest.raises(ValueError):
        await oai.chat.completions.create(model=MODEL, messages=HELLO)


@pytest.mark.parametrize("after", [None, 2])
async def test_hang_times_out_the_client(sim: RunningMock, after: int | None) -> None:
    sim.set_faults(MODEL, {"kind": "hang", "after_tokens": after})
    async with openai.AsyncOpenAI(
        base_url=sim.openai_base_url, api_key="test", max_retries=0, timeout=0.3
    ) as client:
        with pytest.raises(openai.APITimeoutError):
            await stream_text(client)
    assert sim.outcomes(MODEL) == {"hang": 1}


async def test_slow_first_byte(oai: openai.AsyncOpenAI, sim: RunningMock) -> None:
    sim.set_faults(MODEL, {"kind": "delay", "delay": 0.3})
    began = time.monotonic()
    await oai.chat.completions.create(model=MODEL, messages=HELLO)
    assert time.monotonic() - began >= 0.3
    assert sim.outcomes(MODEL) == {"ok": 1, "delayed": 1}


async def test_key_required(sim: RunningMock) -> None:
    sim.state.require_key = "right-key"
    async with openai.AsyncOpenAI(
        base_url=sim.openai_base_url, api_key="wrong", max_retries=0
    ) as c:
        with pytest.raises(openai.AuthenticationError) as caught:
            await c.chat.completions.create(model=MODEL, messages=HELLO)
    assert caught.value.code == "invalid_api_key"
    assert "wrong" not in caught.value.response.text  # the key is never echoed
    async with openai.AsyncOpenAI(
        base_url=sim.openai_base_url, api_key="right-key", max_retries=0
    ) as c:
        await c.chat.completions.create(model=MODEL, messages=HELLO)
    assert sim.outcomes(MODEL) == {"auth_error": 1, "ok": 1}


async def test_context_window(oai: openai.AsyncOpenAI, sim: RunningMock) -> None:
    sim.state.set_model(MODEL, ModelConfig(context_window=100))
    with pytest.raises(openai.BadRequestError) as caught:
        await oai.chat.completions.create(
            model=MODEL, messages=[{"role": "user", "content": "x" * 800}]
        )
    assert caught.value.code == "context_length_exceeded"
    assert "maximum context length is 100 tokens" in caught.value.message
    await oai.chat.completions.create(model=MODEL, messages=HELLO)


async def test_ttfb_and_pace(oai: openai.AsyncOpenAI, sim: RunningMock) -> None:
    sim.state.set_model(MODEL, ModelConfig(ttfb=0.2, tokens_per_second=50, reply_tokens=10))
    began = time.monotonic()
    stream = await oai.chat.completions.create(model=MODEL, messages=HELLO, stream=True)
    arrivals = []
    async for chunk in stream:
        if chunk.choices and chunk.choices[0].delta.content:
            arrivals.append(time.monotonic() - began)
    assert len(arrivals) == 10  # one event per token (chunk_tokens 1)
    assert arrivals[0] >= 0.2
    assert arrivals[-1] >= 0.2 + 10 / 50 - 0.01  # paced, not sent at once
