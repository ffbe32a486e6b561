"""Bad input gets a clear 4xx in the client's own error format: never a crash or a hang.

The README's table of bad inputs is this file's parametrisation.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import orjson
import pytest

from hedgerow.sim.mock import RunningMock
from tests.servers import RunningGateway, make_config, start_gateway

ROUTES = {"chat": {"tiers": [["anth/claude-sonnet-4-6"], ["oai/gpt-5.5"]]}}
OK_OPENAI = {"model": "chat", "messages": [{"role": "user", "content": "hi"}]}
OK_ANTHROPIC = {**OK_OPENAI, "max_tokens": 10}


@pytest.fixture
async def gw(mock: RunningMock) -> AsyncIterator[RunningGateway]:
    config = make_config(mock, ROUTES, server={"max_body_bytes": 4096, "max_messages": 50})
    async with start_gateway(config) as running:
        yield running


def _anthropic_error(body: dict[str, Any]) -> dict[str, Any]:
    assert body["type"] == "error"
    error: dict[str, Any] = body["error"]
    assert set(error) >= {"type", "message"}
    return error


def _openai_error(body: dict[str, Any]) -> dict[str, Any]:
    error: dict[str, Any] = body["error"]
    assert set(error) >= {"message", "type", "param", "code"}
    return error


CASES: list[tuple[str, str, bytes, int, str]] = [
    # (id, path, body, status, what the message must say)
    ("openai-malformed-json", "/v1/chat/completions", b'{"model": "chat",', 400, "not valid JSON"),
    ("anthropic-malformed-json", "/v1/messages", b"{nope", 400, "not valid JSON"),
    ("openai-empty-body", "/v1/chat/completions", b"", 400, "empty"),
    ("anthropic-not-an-object", "/v1/messages", b"[1, 2]", 400, "JSON object"),
    (
        "anthropic-missing-max-tokens",
        "/v1/messages",
        orjson.dumps(OK_OPENAI),
        400,
        "max_tokens",
    ),
    (
        "openai-messages-wrong-type",
        "/v1/chat/completions",
        orjson.dumps({"model": "chat", "messages": "hello"}),
        400,
        "messages",
    ),
    (
        "anthropic-messages-wrong-type",
        "/v1/messages",
        orjson.dumps({**OK_ANTHROPIC, "messages": [{"role": "robot", "content": "x"}]}),
        400,
        "role",
    ),
    (
        "openai-unknown-route",
        "/v1/chat/completions",
        orjson.dumps({**OK_OPENAI, "model": "no-such-route"}),
        404,
        "no-such-route",
    ),
    (
        "anthropic-unknown-route",
        "/v1/messages",
        orjson.dumps({**OK_ANTHROPIC, "model": "no-such-route"}),
        404,
        "no-such-route",
    ),
    (
        "openai-oversize-body",
        "/v1/chat/completions",
        orjson.dumps({**OK_OPENAI, "user": "x" * 5000}),
        413,
        "4096-byte limit",
    ),
    (
        "anthropic-too-many-messages",
        "/v1/messages",
        orjson.dumps({**OK_ANTHROPIC, "messages": [{"role": "user", "content": "x"}] * 51}),
        413,
        "at most 50 messages",
    ),
    (
        "openai-unknown-endpoint",
        "/v1/completions",
        orjson.dumps(OK_OPENAI),
        404,
        "No such endpoint",
    ),
]


@pytest.mark.parametrize(
    ("path", "body", "status", "says"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
async def test_bad_input_gets_a_clear_error(
    gw: RunningGateway, mock: RunningMock, path: str, body: bytes, status: int, says: str
) -> None:
    headers = {"content-type": "application/json"}
    if path.startswith("/v1/messages"):
        headers["anthropic-version"] = "2023-06-01"
    async with (
        aiohttp.ClientSession() as session,
        session.post(gw.url + path, data=body, headers=headers) as response,
    ):
        assert response.status == status
        assert response.content_type == "application/json"
        payload = await response.json()
    error = _anthropic_error(payload) if path.startswith("/v1/messages") else _openai_error(payload)
    assert says in error["message"]
    assert mock.state.counters.total == 0, "bad input never reaches a provider"


async def test_wrong_method_answers_in_format(gw: RunningGateway) -> None:
    async with (
        aiohttp.ClientSession() as session,
        session.get(gw.url + "/v1/chat/completions") as response,
    ):
        assert response.status == 405
        assert "not allowed" in _openai_error(await response.json())["message"]


async def test_openai_param_names_the_field(gw: RunningGateway) -> None:
    async with (
        aiohttp.ClientSession() as session,
        session.post(
            gw.url + "/v1/chat/completions",
            data=orjson.dumps({**OK_OPENAI, "model": "nope"}),
        ) as response,
    ):
        error = _openai_error(await response.json())
    assert error["param"] == "model"


async def test_the_server_still_answers_after_all_of_it(gw: RunningGateway) -> None:
    async with aiohttp.ClientSession() as session:
        for _, path, body, _, _ in CASES:
            async with session.post(gw.url + path, data=body) as response:
                await response.read()
        async with session.post(
            gw.url + "/v1/chat/completions", data=orjson.dumps(OK_OPENAI)
        ) as response:
            assert response.status == 200
            assert (await response.json())["choices"][0]["message"]["content"]
