"""The Anthropic SDK against the simulator: messages, streams, tools, token counts, faults."""

from __future__ import annotations

import time
from typing import Any

import anthropic
import httpx
import httpx2
import pytest

from hedgerow.sim import ModelConfig
from hedgerow.sim.mock import RunningMock

MODEL = "claude-sonnet-4-6"
HELLO: list[Any] = [{"role": "user", "content": "hello"}]
TOOLS: list[Any] = [
    {
        "name": "get_weather",
        "description": "Weather for a city",
        "input_schema": {
            "type": "object",
            "properties": {
                "city": {"type": "string"},
                "days": {"type": "integer", "minimum": 1, "maximum": 3},
                "detail": {
                    "type": "object",
                    "properties": {"hourly": {"type": "boolean"}},
                    "required": ["hourly"],
                },
            },
            "required": ["city", "days", "detail"],
        },
    },
    {"name": "other", "input_schema": {"type": "object", "properties": {}}},
]


async def create(client: anthropic.AsyncAnthropic, **kwargs: Any) -> anthropic.types.Message:
    message: anthropic.types.Message = await client.messages.create(
        model=kwargs.pop("model", MODEL),
        max_tokens=kwargs.pop("max_tokens", 100),
        messages=kwargs.pop("messages", HELLO),
        **kwargs,
    )
    return message


async def test_message_shape_and_usage(claude: anthropic.AsyncAnthropic, sim: RunningMock) -> None:
    message = await create(claude, system="be brief")
    assert message.id.startswith("msg_") and message.model == MODEL
    assert message.stop_reason == "end_turn"
    (block,) = message.content
    assert block.type == "text" and block.text
    assert message.usage.output_tokens == 24 and message.usage.input_tokens > 0
    assert (await create(claude, system="be brief")).content[0] == block  # deterministic
    assert sim.outcomes(MODEL) == {"ok": 2}


async def test_max_tokens_and_stop_sequences(claude: anthropic.AsyncAnthropic) -> None:
    full = (await create(claude)).content[0]
    assert full.type == "text"
    capped = await create(claude, max_tokens=3)
    assert capped.stop_reason == "max_tokens" and capped.usage.output_tokens == 3
    word = full.text.split()[4]
    stopped = await create(claude, stop_sequences=[word])
    assert stopped.stop_reason == "stop_sequence" and stopped.stop_sequence == word
    assert stopped.content[0].type == "text"
    assert stopped.content[0].text == full.text[: full.text.find(word)]


async def test_stream_final_message_matches_create(claude: anthropic.AsyncAnthropic) -> None:
    whole = await create(claude)
    events: list[str] = []
    async with claude.messages.stream(model=MODEL, max_tokens=100, messages=HELLO) as stream:
        async for event in stream:
            events.append(event.type)
        final = await stream.get_final_message()
    assert [b.model_dump(exclude={"parsed_output"}) for b in final.content] == [
        b.model_dump() for b in whole.content
    ]
    assert final.usage.output_tokens == whole.usage.output_tokens
    assert events[0] == "message_start" and events[-1] == "message_stop"


async def test_tool_use_and_forced_choice(claude: anthropic.AsyncAnthropic) -> None:
    message = await create(claude, tools=TOOLS)
    assert message.stop_reason == "tool_use"
    (block,) = message.content
    assert (
        block.type == "tool_use" and block.name == "get_weather" and block.id.startswith("toolu_")
    )
    assert isinstance(block.input, dict)
    assert set(block.input) == {"city", "days", "detail"}
    detail = block.input["detail"]
    assert isinstance(detail, dict) and isinstance(detail["hourly"], bool)
    forced = await create(claude, tools=TOOLS, tool_choice={"type": "tool", "name": "other"})
    assert forced.content[0].type == "tool_use" and forced.content[0].name == "other"
    async with claude.messages.stream(
        model=MODEL, max_tokens=100, messages=HELLO, tools=TOOLS
    ) as stream:
        streamed = await stream.get_final_message()
    assert streamed.content == message.content
    reply: list[Any] = [
        *HELLO,
        {"role": "assistant", "content": [block.model_dump()]},
        {
            "role": "user",
            "content": [{"type": "tool_result", "tool_use_id": block.id, "content": "sunny"}],
        },
    ]
    answered = await create(claude, tools=TOOLS, messages=reply)
    assert answered.stop_reason == "end_turn" and answered.content[0].type == "text"


async def test_count_tokens_and_models(claude: anthropic.AsyncAnthropic, sim: RunningMock) -> None:
    small = await claude.messages.count_tokens(model=MODEL, messages=HELLO)
    big = await claude.messages.count_tokens(
        model=MODEL, messages=[{"role": "user", "content": "x" * 4000}]
    )
    assert big.input_tokens - small.input_tokens == (4000 - len("hello")) // 4
    assert (await create(claude)).usage.input_tokens == small.input_tokens
    models = [m.id async for m in claude.models.list()]
    assert "claude-opus-4-6" in models
    assert sim.state.counters.state()[MODEL]["paths"] == {
        "/v1/messages/count_tokens": 2,
        "/v1/messages": 1,
    }


@pytest.mark.parametrize(
    ("status", "error", "error_type"),
    [
        (400, anthropic.BadRequestError, "invalid_request_error"),
        (401, anthropic.AuthenticationError, "authentication_error"),
        (403, anthropic.PermissionDeniedError, "permission_error"),
        (429, anthropic.RateLimitError, "rate_limit_error"),
        (500, anthropic.InternalServerError, "api_error"),
        (504, anthropic.InternalServerError, "timeout_error"),
        (529, anthropic.OverloadedError, "overloaded_error"),
    ],
)
@pytest.mark.parametrize("stream", [False, True])
async def test_http_errors(
    claude: anthropic.AsyncAnthropic,
    sim: RunningMock,
    status: int,
    error: type[anthropic.APIStatusError],
    error_type: str,
    stream: bool,
) -> None:
    sim.set_faults("claude-*", {"kind": "error", "status": status, "count": 2})
    for _ in range(2):
        with pytest.raises(error) as caught:
            if stream:
                async with claude.messages.stream(model=MODEL, max_tokens=10, messages=HELLO) as s:
                    await s.get_final_message()
            else:
                await create(claude)
        exc = caught.value
        assert exc.status_code == status
        body = exc.body
        assert isinstance(body, dict) and body["type"] == "error"
        assert body["error"]["type"] == error_type
        assert body["request_id"] == exc.response.headers["request-id"] == exc.request_id
    await create(claude)
    assert sim.outcomes(MODEL) == {f"error_{status}": 2, "ok": 1}


async def test_overloaded_and_rate_limit_headers(
    claude: anthropic.AsyncAnthropic, sim: RunningMock
) -> None:
    sim.set_faults(
        MODEL,
        {"kind": "error", "status": 529, "count": 1},
        {"kind": "error", "status": 429, "count": 1, "retry_after": 30, "should_retry": False},
    )
    with pytest.raises(anthropic.OverloadedError) as overloaded:
        await create(claude)
    assert overloaded.value.message.endswith(
        "'message': 'Overloaded'}, 'request_id': '" + str(overloaded.value.request_id) + "'}"
    )
    with pytest.raises(anthropic.RateLimitError) as limited:
        await create(claude)
    headers = limited.value.response.headers
    assert headers["retry-after"] == "30"
    assert headers["x-should-retry"] == "false"
    assert headers["anthropic-ratelimit-requests-remaining"] == "0"
    assert headers["anthropic-ratelimit-requests-reset"].endswith("Z")


async def test_in_stream_overloaded_error(
    claude: anthropic.AsyncAnthropic, sim: RunningMock
) -> None:
    sim.set_faults(MODEL, {"kind": "stream_error", "after_tokens": 5, "stream": True})
    texts: list[str] = []
    with pytest.raises(anthropic.APIStatusError) as caught:
        async with claude.messages.stream(model=MODEL, max_tokens=100, messages=HELLO) as stream:
            async for text in stream.text_stream:
                texts.append(text)
    assert caught.value.status_code == 200  # the error arrived inside a 200 stream
    body = caught.value.body
    assert isinstance(body, dict) and body["error"] == {
        "type": "overloaded_error",
        "message": "Overloaded",
    }
    assert len(texts) == 5
    await create(claude)  # "stream": true leaves non-streamed requests alone
    assert sim.outcomes(MODEL) == {"stream_error": 1, "ok": 1}


async def test_cut_stream_lacks_message_stop(
    claude: anthropic.AsyncAnthropic, sim: RunningMock
) -> None:
    sim.set_faults(MODEL, {"kind": "cut", "after_tokens": 2})
    events: list[str] = []
    async with claude.messages.stream(model=MODEL, max_tokens=100, messages=HELLO) as stream:
        async for event in stream:
            events.append(event.type)
    assert (
        "message_start" in events and "message_stop" not in events and "message_delta" not in events
    )


async def test_reset_mid_stream(claude: anthropic.AsyncAnthropic, sim: RunningMock) -> None:
    sim.set_faults(MODEL, {"kind": "reset", "after_tokens": 3})
    texts: list[str] = []
    # Mid-stream, the SDK lets its HTTP library's error through unwrapped.
    with pytest.raises(httpx2.RemoteProtocolError, match="incomplete chunked read"):
        async with claude.messages.stream(model=MODEL, max_tokens=100, messages=HELLO) as stream:
            async for text in stream.text_stream:
                texts.append(text)
    assert len(texts) == 3


async def test_reset_before_headers(claude: anthropic.AsyncAnthropic, sim: RunningMock) -> None:
    sim.set_faults(MODEL, {"kind": "reset"})
    with pytest.raises(anthropic.APIConnectionError):
        await create(claude)


async def test_hang_then_recover(sim: RunningMock) -> None:
    sim.set_faults(MODEL, {"kind": "hang", "count": 1})
    async with anthropic.AsyncAnthropic(
        base_url=sim.anthropic_base_url, api_key="k", max_retries=0, timeout=0.3
    ) as client:
        with pytest.raises(anthropic.APITimeoutError):
            await create(client)
        await create(client)
    assert sim.outcomes(MODEL) == {"hang": 1, "ok": 1}


async def test_malformed_event(claude: anthropic.AsyncAnthropic, sim: RunningMock) -> None:
    sim.set_faults(MODEL, {"kind": "malformed", "after_tokens": 2})
    with pytest.raises(ValueError):
        async with claude.messages.stream(model=MODEL, max_tokens=100, messages=HELLO) as stream:
            await stream.get_final_message()


async def test_content_delay_holds_the_first_token(
    claude: anthropic.AsyncAnthropic, sim: RunningMock
) -> None:
    sim.set_faults(MODEL, {"kind": "delay", "delay": 0.25, "stage": "content"})
    began = time.monotonic()
    first_event = first_text = 0.0
    async with claude.messages.stream(model=MODEL, max_tokens=100, messages=HELLO) as stream:
        async for event in stream:
            if not first_event:
                first_event = time.monotonic() - began
            if event.type == "text" and not first_text:
                first_text = time.monotonic() - began
    assert first_text >= 0.25
    assert first_event < first_text  # message_start came before the delay


async def test_auth_and_version_header(sim: RunningMock) -> None:
    sim.state.require_key = "sk-ant-right"
    async with anthropic.AsyncAnthropic(
        base_url=sim.anthropic_base_url, api_key="sk-ant-wrong", max_retries=0
    ) as c:
        with pytest.raises(anthropic.AuthenticationError) as caught:
            await create(c)
    assert caught.value.body == {
        "type": "error",
        "error": {"type": "authentication_error", "message": "invalid x-api-key"},
        "request_id": caught.value.request_id,
    }
    async with httpx.AsyncClient() as raw:
        response = await raw.post(
            f"{sim.url}/v1/messages",
            headers={"x-api-key": "sk-ant-right"},
            json={"model": MODEL, "max_tokens": 5, "messages": HELLO},
        )
    assert response.status_code == 400
    assert response.json()["error"]["message"] == "anthropic-version: header is required"
    assert sim.outcomes(MODEL) == {"auth_error": 1, "bad_request": 1}


async def test_context_window_and_bad_request(
    claude: anthropic.AsyncAnthropic, sim: RunningMock
) -> None:
    sim.state.set_model("claude-*", ModelConfig(context_window=50))
    with pytest.raises(anthropic.BadRequestError) as caught:
        await create(claude, messages=[{"role": "user", "content": "y" * 400}])
    assert caught.value.message.endswith(
        "'message': 'prompt is too long: 104 tokens > 50 maximum'}, 'request_id': '"
        + str(caught.value.request_id)
        + "'}"
    )
    robot: Any = [{"role": "robot", "content": "x"}]
    with pytest.raises(anthropic.BadRequestError):
        await claude.messages.create(model=MODEL, max_tokens=10, messages=robot)
    assert sim.outcomes(MODEL) == {"context_length": 1, "bad_request": 1}
