"""Every client format x provider format, driven by the official SDKs through the gateway.

The gateway runs on a real loopback port; the providers are the simulator, also on a real
port. Text and tools, streaming and not: the streamed answer must equal the whole one (the
simulator answers the same request the same way), usage included.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import anthropic
import openai
import pytest

from hedgerow.sim.mock import RunningMock
from tests.servers import RunningGateway, make_config, start_gateway

ROUTES = {
    "via-anthropic": {"tiers": [["anth/claude-sonnet-4-6"]]},
    "via-openai": {"tiers": [["oai/gpt-5.5"]]},
    "via-gemini": {"tiers": [["gem/gemini-3-5-flash"]]},
    "via-compat": {"tiers": [["compat/llama-3"]]},
}
DEPLOYMENTS = {
    "via-anthropic": "anth/claude-sonnet-4-6",
    "via-openai": "oai/gpt-5.5",
    "via-gemini": "gem/gemini-3-5-flash",
    "via-compat": "compat/llama-3",
}

WEATHER_SCHEMA = {
    "type": "object",
    "properties": {
        "city": {"type": "string"},
        "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
    },
    "required": ["city", "unit"],
}
OPENAI_TOOLS: list[Any] = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "Weather now",
            "parameters": WEATHER_SCHEMA,
        },
    }
]
ANTHROPIC_TOOLS: list[Any] = [
    {"name": "get_weather", "description": "Weather now", "input_schema": WEATHER_SCHEMA}
]


@pytest.fixture
async def gw(mock: RunningMock) -> AsyncIterator[RunningGateway]:
    async with start_gateway(make_config(mock, ROUTES)) as running:
        yield running


def _openai(gw: RunningGateway) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=f"{gw.url}/v1", api_key="client-key", max_retries=0)


def _anthropic(gw: RunningGateway) -> anthropic.AsyncAnthropic:
    return anthropic.AsyncAnthropic(base_url=gw.url, api_key="client-key", max_retries=0)


@pytest.mark.parametrize("route", ROUTES)
async def test_openai_client_text(gw: RunningGateway, mock: RunningMock, route: str) -> None:
    client = _openai(gw)
    messages: list[Any] = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Tell me about hedgerows."},
    ]
    raw = await client.chat.completions.with_raw_response.create(
        model=route, messages=messages, max_tokens=40
    )
    assert raw.headers["x-hedgerow-deployment"] == DEPLOYMENTS[route]
    assert raw.headers["x-hedgerow-tier"] == "0"
    assert raw.headers["x-hedgerow-attempts"] == "1"
    whole = raw.parse()
    text = whole.choices[0].message.content
    assert text and len(text.split()) > 3
    assert whole.choices[0].finish_reason in ("stop", "length")
    assert whole.usage is not None and whole.usage.prompt_tokens > 0
    assert whole.usage.completion_tokens > 0

    stream = await client.chat.completions.create(
        model=route,
        messages=messages,
        max_tokens=40,
        stream=True,
        stream_options={"include_usage": True},
    )
    pieces: list[str] = []
    finish = None
    usage = None
    async for chunk in stream:
        if chunk.usage is not None:
            usage = chunk.usage
        for choice in chunk.choices:
            if choice.delta.content:
                pieces.append(choice.delta.content)
            finish = choice.finish_reason or finish
    assert "".join(pieces) == text
    assert finish == whole.choices[0].finish_reason
    assert usage is not None
    assert usage.completion_tokens == whole.usage.completion_tokens
    assert mock.requests(DEPLOYMENTS[route].split("/", 1)[1]) == 2
    await client.close()


@pytest.mark.parametrize("route", ROUTES)
async def test_openai_client_tools(gw: RunningGateway, route: str) -> None:
    client = _openai(gw)
    messages: list[Any] = [{"role": "user", "content": "Weather in Paris?"}]
    whole = await client.chat.completions.create(
        model=route, messages=messages, tools=OPENAI_TOOLS, max_tokens=100
    )
    call = whole.choices[0].message.tool_calls[0]  # type: ignore[index]
    assert whole.choices[0].finish_reason == "tool_calls"
    assert call.function.name == "get_weather"  # type: ignore[union-attr]
    arguments = json.loads(call.function.arguments)  # type: ignore[union-attr]
    assert set(arguments) >= {"city", "unit"}

    async with client.chat.completions.stream(
        model=route, messages=messages, tools=OPENAI_TOOLS, max_tokens=100
    ) as stream:
        final = await stream.get_final_completion()
    streamed = final.choices[0].message.tool_calls[0]  # type: ignore[index]
    assert streamed.function.name == "get_weather"
    assert json.loads(streamed.function.arguments) == arguments
    assert final.choices[0].finish_reason == "tool_calls"

    # The tool's answer goes back; the model answers in text.
    follow = [
        *messages,
        {"role": "assistant", "content": None, "tool_calls": [call.model_dump()]},
        {"role": "tool", "tool_call_id": call.id, "content": '{"temp": 18}'},
    ]
    answer = await client.chat.completions.create(
        model=route, messages=follow, tools=OPENAI_TOOLS, max_tokens=30
    )
    assert answer.choices[0].message.content
    assert not answer.choices[0].message.tool_calls
    await client.close()


@pytest.mark.parametrize("route", ROUTES)
async def test_anthropic_client_text(gw: RunningGateway, route: str) -> None:
    client = _anthropic(gw)
    kwargs: dict[str, Any] = {
        "model": route,
        "max_tokens": 40,
        "system": "Be brief.",
        "messages": [{"role": "user", "content": "Tell me about hedgerows."}],
    }
    raw = await client.messages.with_raw_response.create(**kwargs)
    assert raw.headers["x-hedgerow-deployment"] == DEPLOYMENTS[route]
    whole = await raw.parse()
    assert whole.content[0].type == "text"
    text = whole.content[0].text
    assert text and len(text.split()) > 3
    assert whole.stop_reason in ("end_turn", "max_tokens")
    assert whole.usage.input_tokens > 0 and whole.usage.output_tokens > 0

    async with client.messages.stream(**kwargs) as stream:
        streamed_text = "".join([t async for t in stream.text_stream])
        final = await stream.get_final_message()
    assert streamed_text == text
    assert final.stop_reason == whole.stop_reason
    # Claude Code reads usage from message_start and message_delta: both must carry it.
    assert final.usage.input_tokens > 0
    assert final.usage.output_tokens == whole.usage.output_tokens
    await client.close()


@pytest.mark.parametrize("route", ROUTES)
async def test_anthropic_client_tools(gw: RunningGateway, route: str) -> None:
    client = _anthropic(gw)
    messages: list[Any] = [{"role": "user", "content": "Weather in Paris?"}]
    whole = await client.messages.create(
        model=route, max_tokens=100, messages=messages, tools=ANTHROPIC_TOOLS
    )
    assert whole.stop_reason == "tool_use"
    block = next(b for b in whole.content if b.type == "tool_use")
    assert block.name == "get_weather"
    assert set(block.input) >= {"city", "unit"}  # type: ignore[arg-type]

    async with client.messages.stream(
        model=route, max_tokens=100, messages=messages, tools=ANTHROPIC_TOOLS
    ) as stream:
        final = await stream.get_final_message()
    streamed = next(b for b in final.content if b.type == "tool_use")
    assert streamed.name == "get_weather"
    assert streamed.input == block.input
    assert final.stop_reason == "tool_use"

    follow = [
        *messages,
        {"role": "assistant", "content": [block.model_dump()]},
        {
            "role": "user",
            "content": [{"type": "tool_result", "tool_use_id": block.id, "content": "18 degrees"}],
        },
    ]
    answer = await client.messages.create(
        model=route, max_tokens=30, messages=follow, tools=ANTHROPIC_TOOLS
    )
    assert answer.stop_reason in ("end_turn", "max_tokens")
    assert answer.content[0].type == "text"
    await client.close()
