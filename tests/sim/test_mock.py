"""The simulator's own behaviour around the edges: shutdown, bad bodies, unknown methods."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from hedgerow.sim import start_mock

OPENAI = ("/v1/chat/completions", {"Authorization": "Bearer k"})
ANTHROPIC = ("/v1/messages", {"x-api-key": "k", "anthropic-version": "2023-06-01"})
BODY = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
GEMINI = ("/v1beta/models/gemini-x:generateContent", {"x-goog-api-key": "k"})


async def test_stopping_releases_hanging_requests() -> None:
    async with httpx.AsyncClient(timeout=30) as client:
        async with start_mock() as sim:
            sim.set_faults("*", {"kind": "hang"})
            pending = asyncio.create_task(
                client.post(f"{sim.url}{OPENAI[0]}", headers=OPENAI[1], json=BODY)
            )
            while sim.outcomes("m").get("hang") != 1:  # the request is parked in the hang
                assert not pending.done()
                await asyncio.sleep(0.005)
            began = asyncio.get_running_loop().time()
        # leaving the block stopped the server: the client is let go at once, not after 30 s
        with pytest.raises(httpx.RemoteProtocolError):
            await pending
        assert asyncio.get_running_loop().time() - began < 5


@pytest.mark.parametrize(
    ("route", "shape"),
    [
        (OPENAI, lambda b: set(b["error"]) == {"message", "type", "param", "code"}),
        (
            ANTHROPIC,
            lambda b: b["type"] == "error" and b["error"]["type"] == "invalid_request_error",
        ),
        (
            GEMINI,
            lambda b: b["error"]["status"] == "INVALID_ARGUMENT" and b["error"]["code"] == 400,
        ),
    ],
)
async def test_bad_bodies_get_each_services_400(
    route: tuple[str, dict[str, str]], shape: object
) -> None:
    path, headers = route
    async with start_mock() as sim, httpx.AsyncClient() as client:
        not_json = await client.post(f"{sim.url}{path}", headers=headers, content=b"{nope")
        wrong = await client.post(
            f"{sim.url}{path}", headers=headers, json={"model": "m", "messages": 7}
        )
    for response in (not_json, wrong):
        assert response.status_code == 400
        assert shape(response.json())  # type: ignore[operator]
    assert (
        sum(
            sim.state.counters.state()[m]["outcomes"]["bad_request"]
            for m in sim.state.counters.state()
        )
        == 2
    )


async def test_unknown_gemini_method_and_model_lookup() -> None:
    async with start_mock() as sim, httpx.AsyncClient(headers={"x-goog-api-key": "k"}) as client:
        unknown = await client.post(f"{sim.url}/v1beta/models/gemini-x:explode", json={})
        got = await client.get(f"{sim.url}/v1beta/models/gemini-x")
    assert unknown.status_code == 404 and unknown.json()["error"]["status"] == "NOT_FOUND"
    assert got.json()["name"] == "models/gemini-x"
    assert sim.outcomes("gemini-x") == {"not_found": 1, "ok": 1}
