"""Failover down the tiers, with the commit point at the first content.

The router's full behaviour (breakers, hedging, retries, degradation) has its own suite; this
one holds what the gateway server must do from the start: an error before the first content
never reaches the client, and a failure after it ends the stream with an error event.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import anthropic
import openai
import pytest

from hedgerow.sim.mock import RunningMock
from hedgerow.sim.state import ModelConfig
from tests.servers import RunningGateway, make_config, start_gateway

ROUTES = {
    # Retries (walking the plan again) have their own suite; here one walk is the contract.
    "chat": {"tiers": [["anth/claude-sonnet-4-6"], ["oai/gpt-5.5"]], "retry": {"max_retries": 0}},
    "solo": {"tiers": [["anth/claude-opus-4-8"]], "retry": {"max_retries": 0}},
}
USER: list[Any] = [{"role": "user", "content": "Summarise the incident."}]


@pytest.fixture
async def gw(mock: RunningMock) -> AsyncIterator[RunningGateway]:
    async with start_gateway(make_config(mock, ROUTES, timeouts={"first_content": 2.0})) as running:
        yield running


@pytest.mark.parametrize(
    "fault",
    [
        {"kind": "error", "status": 529},
        {"kind": "error", "status": 500},
        {"kind": "error", "status": 503},
        {"kind": "error", "status": 429, "retry_after": 7},
        {"kind": "stream_error"},
        {"kind": "reset"},
        {"kind": "malformed"},
        {"kind": "cut", "after_tokens": 0},
        {"kind": "hang"},
    ],
    ids=lambda f: f"{f['kind']}-{f.get('status', '')}",
)
async def test_failure_before_content_fails_over_invisibly(
    gw: RunningGateway, mock: RunningMock, fault: dict[str, Any]
) -> None:
    mock.set_faults("claude-sonnet-4-6", fault)
    client = anthropic.AsyncAnthropic(base_url=gw.url, api_key="k", max_retries=0)
    async with client.messages.with_streaming_response.create(
        model="chat", max_tokens=30, messages=USER, stream=True
    ) as response:
        assert response.headers["x-hedgerow-deployment"] == "oai/gpt-5.5"
        assert response.headers["x-hedgerow-tier"] == "1"
        assert response.headers["x-hedgerow-attempts"] == "2"
        body = (await response.read()).decode()
    assert "event: message_stop" in body
    assert "event: error" not in body
    assert mock.requests("claude-sonnet-4-6") == 1
    assert mock.requests("gpt-5.5") == 1
    await client.close()


async def test_non_streamed_request_fails_over_too(gw: RunningGateway, mock: RunningMock) -> None:
    mock.set_faults("claude-sonnet-4-6", {"kind": "error", "status": 529})
    client = openai.AsyncOpenAI(base_url=f"{gw.url}/v1", api_key="k", max_retries=0)
    raw = await client.chat.completions.with_raw_response.create(
        model="chat", messages=USER, max_tokens=20
    )
    assert raw.headers["x-hedgerow-deployment"] == "oai/gpt-5.5"
    assert raw.parse().choices[0].message.content
    await client.close()


async def test_every_tier_failing_is_one_clear_error_that_stops_sdk_retries(
    gw: RunningGateway, mock: RunningMock
) -> None:
    mock.set_faults("claude-sonnet-4-6", {"kind": "error", "status": 529})
    mock.set_faults("gpt-5.5", {"kind": "error", "status": 503, "retry_after": 3})
    # The SDK would retry twice by default; x-should-retry: false must stop it.
    client = openai.AsyncOpenAI(base_url=f"{gw.url}/v1", api_key="k", max_retries=2)
    with pytest.raises(openai.APIStatusError) as info:
        await client.chat.completions.create(model="chat", messages=USER, max_tokens=20)
    assert info.value.status_code == 503
    assert info.value.response.headers["x-should-retry"] == "false"
    assert info.value.response.headers["retry-after"] == "3"
    assert mock.requests("claude-sonnet-4-6") == 1
    assert mock.requests("gpt-5.5") == 1
    await client.close()


async def test_a_client_error_is_returned_as_is_without_failover(
    gw: RunningGateway, mock: RunningMock
) -> None:
    mock.set_faults("claude-sonnet-4-6", {"kind": "error", "status": 400, "message": "bad image"})
    client = anthropic.AsyncAnthropic(base_url=gw.url, api_key="k", max_retries=0)
    with pytest.raises(anthropic.BadRequestError) as info:
        await client.messages.create(model="chat", max_tokens=20, messages=USER)
    assert "bad image" in str(info.value)
    assert mock.requests("gpt-5.5") == 0
    await client.close()


@pytest.mark.parametrize(
    "fault",
    [
        {"kind": "stream_error", "after_tokens": 3},
        {"kind": "cut", "after_tokens": 3},
        {"kind": "reset", "after_tokens": 3},
        {"kind": "malformed", "after_tokens": 3},
    ],
    ids=lambda f: str(f["kind"]),
)
async def test_failure_after_content_ends_the_stream_with_an_error_event(
    gw: RunningGateway, mock: RunningMock, fault: dict[str, Any]
) -> None:
    mock.set_faults("claude-opus-4-8", fault)
    # Paced tokens, so the content is read (and committed) before the failure arrives.
    mock.state.set_model("claude-opus-4-8", ModelConfig(tokens_per_second=50))
    client = anthropic.AsyncAnthropic(base_url=gw.url, api_key="k", max_retries=0)
    received: list[str] = []
    with pytest.raises(anthropic.APIStatusError):
        async with client.messages.stream(model="solo", max_tokens=30, messages=USER) as stream:
            async for text in stream.text_stream:
                received.append(text)
    assert received, "content before the failure reached the client"
    await client.close()


@pytest.mark.parametrize(
    "fault",
    [{"kind": "cut", "after_tokens": 3}, {"kind": "reset", "after_tokens": 3}],
    ids=lambda f: str(f["kind"]),
)
async def test_openai_client_sees_an_error_not_a_clean_end(
    gw: RunningGateway, mock: RunningMock, fault: dict[str, Any]
) -> None:
    mock.set_faults("claude-opus-4-8", fault)
    client = openai.AsyncOpenAI(base_url=f"{gw.url}/v1", api_key="k", max_retries=0)
    stream = await client.chat.completions.create(
        model="solo", messages=USER, max_tokens=30, stream=True
    )
    with pytest.raises(openai.APIError):
        async for _ in stream:
            pass
    await client.close()


async def test_client_disconnect_mid_stream_cancels_the_upstream_call(
    gw: RunningGateway, mock: RunningMock
) -> None:
    # A slow stream: 100 tokens at 10 per second, ten seconds if nobody stops it.
    mock.state.set_model("claude-opus-4-8", ModelConfig(tokens_per_second=10, reply_tokens=100))
    body = {"model": "solo", "max_tokens": 200, "stream": True, "messages": USER}
    async with (
        aiohttp.ClientSession() as session,
        session.post(
            f"{gw.url}/v1/messages", json=body, headers={"anthropic-version": "2023-06-01"}
        ) as response,
    ):
        assert response.status == 200
        first = await response.content.readany()
        assert b"content_block_delta" in first or b"message_start" in first
        # Leaving the block closed the connection mid-stream.
    deadline = asyncio.get_running_loop().time() + 5.0
    while mock.state.counters.state()["claude-opus-4-8"]["client_gone"] == 0:
        assert asyncio.get_running_loop().time() < deadline, "upstream call still running"
        await asyncio.sleep(0.01)  # polling a real condition with a deadline
    assert mock.state.counters.state()["claude-opus-4-8"]["client_gone"] == 1
