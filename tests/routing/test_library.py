"""The library: `Gateway.chat` / `Gateway.stream` and the in-process SDK transport."""

from __future__ import annotations

from typing import Any

import anthropic
import openai
import pytest

from hedgerow import ir
from hedgerow.routing import Gateway, GatewayError
from hedgerow.sdk import async_http_client
from hedgerow.sim.mock import RunningMock
from tests.servers import make_config

ROUTES = {
    "support-chat": {"tiers": [["anth/claude-sonnet-4-6"], ["oai/gpt-5.5"]]},
    "solo": {"tiers": [["gem/gemini-3-5-flash"]], "retry": {"max_retries": 0}},
}
USER: list[Any] = [{"role": "user", "content": "Where do hedgehogs sleep?"}]


async def test_chat_in_both_request_styles(mock: RunningMock) -> None:
    async with Gateway(make_config(mock, ROUTES)) as gw:
        result = await gw.chat({"model": "support-chat", "messages": USER})
        assert result.text
        assert result.served.deployment == "anth/claude-sonnet-4-6"
        assert result.served.attempts == 1
        body = result.body("anthropic")
        assert body["type"] == "message" and body["content"][0]["text"] == result.text

        styled = await gw.chat(
            {"model": "support-chat", "max_tokens": 50, "messages": USER}, style="anthropic"
        )
        assert styled.text
        assert styled.body("openai")["choices"][0]["message"]["content"] == styled.text


async def test_library_fails_over_and_reports_what_served(mock: RunningMock) -> None:
    mock.set_faults("claude-sonnet-4-6", {"kind": "error", "status": 529})
    async with Gateway(make_config(mock, ROUTES)) as gw:
        result = await gw.chat({"model": "support-chat", "messages": USER})
        assert result.served.deployment == "oai/gpt-5.5"
        assert result.served.tier == 1
        assert result.served.attempts == 2
        events = [e async for e in gw.stream({"model": "support-chat", "messages": USER})]
    assert isinstance(events[0], ir.MessageStart)
    assert isinstance(events[-1], ir.MessageEnd)
    text = "".join(e.text for e in events if isinstance(e, ir.TextDelta))
    assert text == result.text


async def test_library_raises_gateway_error_when_all_fail(mock: RunningMock) -> None:
    mock.set_faults("gemini-3-5-flash", {"kind": "error", "status": 503})
    async with Gateway(make_config(mock, ROUTES)) as gw:
        with pytest.raises(GatewayError) as info:
            await gw.chat({"model": "solo", "messages": USER})
    assert info.value.info.kind is ir.ErrorKind.UNAVAILABLE
    assert info.value.attempts == 1


async def test_library_stream_raises_on_failure_after_content(mock: RunningMock) -> None:
    mock.set_faults("gemini-3-5-flash", {"kind": "cut", "after_tokens": 2})
    async with Gateway(make_config(mock, ROUTES)) as gw:
        seen: list[ir.StreamEvent] = []
        with pytest.raises(GatewayError) as info:
            async for event in gw.stream({"model": "solo", "messages": USER}):
                seen.append(event)
    assert any(isinstance(e, ir.TextDelta) for e in seen)
    assert info.value.info.kind is ir.ErrorKind.MALFORMED


async def test_openai_sdk_in_process(mock: RunningMock) -> None:
    mock.set_faults("claude-sonnet-4-6", {"kind": "error", "status": 529})
    gw = Gateway(make_config(mock, ROUTES))
    client = openai.AsyncOpenAI(api_key="unused", http_client=async_http_client(gw), max_retries=0)
    raw = await client.chat.completions.with_raw_response.create(
        model="support-chat", messages=USER, max_tokens=30
    )
    assert raw.headers["x-hedgerow-deployment"] == "oai/gpt-5.5"
    whole = raw.parse()
    stream = await client.chat.completions.create(
        model="support-chat", messages=USER, max_tokens=30, stream=True
    )
    pieces = [c.choices[0].delta.content or "" async for c in stream if c.choices]
    assert "".join(pieces) == whole.choices[0].message.content
    await client.close()


async def test_anthropic_sdk_in_process(mock: RunningMock) -> None:
    gw = Gateway(make_config(mock, ROUTES))
    client = anthropic.AsyncAnthropic(
        api_key="unused", http_client=async_http_client(gw), max_retries=0
    )
    whole = await client.messages.create(model="solo", max_tokens=30, messages=USER)
    async with client.messages.stream(model="solo", max_tokens=30, messages=USER) as stream:
        final = await stream.get_final_message()
    assert final.content[0].type == "text" and whole.content[0].type == "text"
    assert final.content[0].text == whole.content[0].text
    assert final.usage.output_tokens == whole.usage.output_tokens
    with pytest.raises(anthropic.NotFoundError):
        await client.messages.create(model="nope", max_tokens=5, messages=USER)
    await client.close()
