"""Gateway keys: authentication from the key alone, per-key routes, limits, budget, revocation."""

from __future__ import annotations

import asyncio
import base64
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import anthropic
import openai
import pytest

from hedgerow.cli import main
from hedgerow.security import KeyStore
from hedgerow.sim.mock import RunningMock
from hedgerow.sim.state import ModelConfig
from tests.servers import RunningGateway, make_config, start_gateway

ROUTES = {
    "chat": {"tiers": [["anth/claude-sonnet-4-6"]], "retry": {"max_retries": 0}},
    "internal": {"tiers": [["oai/gpt-5.5"]], "retry": {"max_retries": 0}},
}
USER: list[Any] = [{"role": "user", "content": "hello"}]


@pytest.fixture
def store_path(tmp_path: Path) -> str:
    return str(tmp_path / "keys.db")


@pytest.fixture
async def gw(mock: RunningMock, store_path: str) -> AsyncIterator[RunningGateway]:
    config = make_config(
        mock,
        ROUTES,
        auth={
            "keys_db": store_path,
            "prices": {"anth/claude-sonnet-4-6": {"input": 1_000_000.0, "output": 1_000_000.0}},
        },
    )
    async with start_gateway(config) as running:
        yield running


def create(store_path: str, name: str, **limits: Any) -> str:
    store = KeyStore(path=store_path)
    key, _ = store.create(name, **limits)
    store.close()
    return key


async def post(
    gw: RunningGateway, key: str | None, route: str = "chat", **headers: str
) -> aiohttp.ClientResponse:
    if key is not None:
        headers["authorization"] = f"Bearer {key}"
    async with (
        aiohttp.ClientSession() as session,
        session.post(
            f"{gw.url}/v1/chat/completions",
            json={"model": route, "messages": USER, "max_tokens": 5},
            headers=headers,
        ) as response,
    ):
        await response.read()
        return response


async def test_missing_or_wrong_key_is_401_in_each_format(
    gw: RunningGateway, store_path: str
) -> None:
    create(store_path, "app")
    oai = openai.AsyncOpenAI(base_url=f"{gw.url}/v1", api_key="hr-not-a-key", max_retries=0)
    with pytest.raises(openai.AuthenticationError, match="Invalid or revoked"):
        await oai.chat.completions.create(model="chat", messages=USER)
    ant = anthropic.AsyncAnthropic(base_url=gw.url, api_key="hr-not-a-key", max_retries=0)
    with pytest.raises(anthropic.AuthenticationError):
        await ant.messages.create(model="chat", max_tokens=5, messages=USER)
    response = await post(gw, None)
    assert response.status == 401
    await oai.close()
    await ant.close()


async def test_spoofed_headers_never_replace_a_key(gw: RunningGateway, store_path: str) -> None:
    create(store_path, "app")
    for headers in (
        {"x-forwarded-for": "127.0.0.1"},
        {"host": "localhost"},
        {"x-real-ip": "127.0.0.1", "forwarded": "for=127.0.0.1"},
        {"authorization": "Basic YWRtaW46YWRtaW4="},
    ):
        assert (await post(gw, None, **headers)).status == 401


async def test_a_valid_key_works_with_both_header_styles(
    gw: RunningGateway, store_path: str
) -> None:
    key = create(store_path, "app")
    oai = openai.AsyncOpenAI(base_url=f"{gw.url}/v1", api_key=key, max_retries=0)
    assert (await oai.chat.completions.create(model="chat", messages=USER)).choices
    ant = anthropic.AsyncAnthropic(base_url=gw.url, api_key=key, max_retries=0)  # x-api-key
    assert (await ant.messages.create(model="chat", max_tokens=5, messages=USER)).content
    await oai.close()
    await ant.close()


async def test_a_key_may_use_only_its_routes(gw: RunningGateway, store_path: str) -> None:
    key = create(store_path, "support", routes=["chat"])
    assert (await post(gw, key, "chat")).status == 200
    assert (await post(gw, key, "internal")).status == 403


async def test_per_key_rate_limit_does_not_touch_other_keys(
    gw: RunningGateway, store_path: str
) -> None:
    slow = create(store_path, "batch", rpm=2)
    other = create(store_path, "chat-app")
    assert [(await post(gw, slow)).status for _ in range(3)] == [200, 200, 429]
    limited = await post(gw, slow)
    assert 0 < int(limited.headers["retry-after"]) <= 60
    assert (await post(gw, other)).status == 200


async def test_concurrent_requests_per_key(
    gw: RunningGateway, mock: RunningMock, store_path: str
) -> None:
    key = create(store_path, "one-at-a-time", max_concurrent=1)
    mock.state.set_model("claude-sonnet-4-6", ModelConfig(tokens_per_second=20, reply_tokens=40))
    async with (
        aiohttp.ClientSession() as session,
        session.post(
            f"{gw.url}/v1/chat/completions",
            json={"model": "chat", "messages": USER, "stream": True},
            headers={"authorization": f"Bearer {key}"},
        ) as streaming,
    ):
        assert streaming.status == 200
        await streaming.content.readany()
        assert (await post(gw, key)).status == 429
        await streaming.read()
    mock.state.set_model("claude-sonnet-4-6", ModelConfig())
    assert (await post(gw, key)).status == 200


async def test_spend_budget_is_charged_from_usage(gw: RunningGateway, store_path: str) -> None:
    # Prices of a million per million tokens: each answer costs its token count.
    key = create(store_path, "capped", budget=20.0)
    statuses = [(await post(gw, key)).status for _ in range(4)]
    assert statuses[0] == 200
    assert 402 in statuses
    store = KeyStore(path=store_path)
    record = next(r for r in store.records() if r.name == "capped")
    assert store.spent(record) >= 20.0
    store.close()


async def test_revoked_key_stops_at_once_without_restart(
    gw: RunningGateway, store_path: str, capsys: pytest.CaptureFixture[str]
) -> None:
    key = create(store_path, "leaked")
    assert (await post(gw, key)).status == 200
    assert main(["keys", "revoke", "leaked", "--db", store_path]) == 0
    assert (await post(gw, key)).status == 401
    assert "leaked" in capsys.readouterr().out


async def test_admin_surface_needs_an_admin_key(gw: RunningGateway, store_path: str) -> None:
    user = create(store_path, "user")
    admin = create(store_path, "oncall", admin=True)
    async with aiohttp.ClientSession() as session:
        for path in ("/v1/events", "/admin/state", "/dashboard"):
            async with session.get(gw.url + path, headers={"authorization": f"Bearer {user}"}) as r:
                assert r.status == 403, path
            async with session.get(
                gw.url + path, headers={"authorization": f"Bearer {admin}"}
            ) as r:
                assert r.status != 403, path
        async with session.get(gw.url + "/healthz") as r:
            assert r.status == 200


async def test_local_mode_needs_no_key(mock: RunningMock) -> None:
    async with start_gateway(make_config(mock, ROUTES)) as running:
        assert (await post(running, None)).status == 200


def test_keys_cli_create_list_and_print(
    store_path: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert (
        main(["keys", "create", "app", "--db", store_path, "--rpm", "60", "--routes", "chat"]) == 0
    )
    out = capsys.readouterr().out
    key = out.strip().splitlines()[-1]
    assert key.startswith("hr-")
    assert main(["keys", "list", "--db", store_path]) == 0
    listing = capsys.readouterr().out
    assert '"name":"app"' in listing and '"rpm":60.0' in listing
    assert key not in listing  # only hashes are ever shown again
    assert main(["keys", "create", "cfg", "--print", "--db", store_path]) == 0
    assert '"sha256"' in capsys.readouterr().out


def test_serve_refuses_to_expose_local_mode(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "hedgerow.yaml"
    config.write_text("providers: {a: {kind: openai}}\nroutes: {r: {tiers: [[a/m]]}}\n")
    assert main(["serve", "--config", str(config), "--host", "0.0.0.0", "--port", "1"]) == 2
    assert "local mode" in capsys.readouterr().err


async def test_revocation_is_seen_by_another_process_store(store_path: str) -> None:
    """Two stores on one file (two gateway processes): a revoke in one is seen by the other."""
    key = create(store_path, "shared")
    reader = KeyStore(path=store_path)
    assert reader.lookup(key) is not None
    writer = KeyStore(path=store_path)
    writer.revoke("shared")
    await asyncio.sleep(0)  # no wait needed: the next lookup sees the new data_version
    assert reader.lookup(key) is None
    reader.close()
    writer.close()


def basic(user: str, password: str) -> dict[str, str]:
    """What a browser sends after its login prompt."""
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    return {"authorization": f"Basic {token}"}


async def test_a_browser_opens_the_dashboard_with_the_key_as_password(
    gw: RunningGateway, store_path: str
) -> None:
    admin = create(store_path, "oncall", admin=True)
    user = create(store_path, "user")
    async with aiohttp.ClientSession() as session:
        async with session.get(gw.url + "/dashboard") as r:
            assert r.status == 401
            assert r.headers["www-authenticate"] == 'Basic realm="hedgerow"'
        async with session.get(gw.url + "/dashboard", headers=basic("me", admin)) as r:
            assert r.status == 200
            assert "<html" in (await r.text()).lower()
        async with session.get(gw.url + "/dashboard", headers=basic("me", user)) as r:
            assert r.status == 403
        async with session.get(gw.url + "/dashboard", headers=basic("me", "hr-wrong")) as r:
            assert r.status == 401
