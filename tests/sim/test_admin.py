"""The ``/_mock/`` admin API, over HTTP as a drill or another process would use it."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import anthropic
import httpx
import openai
import pytest

from hedgerow.sim.mock import RunningMock

HELLO: list[Any] = [{"role": "user", "content": "hello"}]


@pytest.fixture
async def admin(sim: RunningMock) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=f"{sim.url}/_mock") as client:
        yield client


async def ask(client: openai.AsyncOpenAI, model: str = "gpt-4o") -> str:
    try:
        await client.chat.completions.create(model=model, messages=HELLO)
    except openai.APIStatusError as exc:
        return str(exc.status_code)
    return "ok"


async def test_health_and_empty_state(admin: httpx.AsyncClient) -> None:
    assert (await admin.get("/health")).json() == {"ok": True}
    state = (await admin.get("/state")).json()
    assert state["requests_total"] == 0 and state["models"] == {} and state["faults"] == {}
    assert state["scenario"] is None and state["require_key"] is False


async def test_put_faults_then_counters_by_model_path_and_outcome(
    admin: httpx.AsyncClient, oai: openai.AsyncOpenAI, claude: anthropic.AsyncAnthropic
) -> None:
    put = await admin.put("/faults/gpt-*", json=[{"kind": "error", "status": 503, "count": 2}])
    assert put.status_code == 200
    assert [await ask(oai) for _ in range(3)] == ["503", "503", "ok"]
    assert await ask(oai, "gpt-4o-mini") == "ok"  # the first three spent the count of gpt-*
    await claude.messages.count_tokens(model="claude-x", messages=HELLO)
    state = (await admin.get("/state")).json()
    assert state["requests_total"] == 5
    assert state["models"]["gpt-4o"] == {
        "client_gone": 0,
        "requests": 3,
        "streams": 0,
        "paths": {"/v1/chat/completions": 3},
        "outcomes": {"error_503": 2, "ok": 1},
    }
    assert state["models"]["gpt-4o-mini"]["outcomes"] == {"ok": 1}
    assert state["models"]["claude-x"]["paths"] == {"/v1/messages/count_tokens": 1}
    assert state["faults"] == {
        "gpt-*": [{"kind": "error", "status": 503, "count": 2, "seen": 4, "fired": 2}]
    }


async def test_a_single_spec_body_and_delete(
    admin: httpx.AsyncClient, oai: openai.AsyncOpenAI
) -> None:
    await admin.put("/faults/*", json={"kind": "error", "status": 500})
    await admin.put("/faults/gpt-4o", json={"kind": "error", "status": 502})
    assert [await ask(oai), await ask(oai, "other")] == ["502", "500"]
    assert (await admin.delete("/faults/gpt-4o")).json() == {"removed": True}
    assert (await admin.delete("/faults/gpt-4o")).json() == {"removed": False}
    assert await ask(oai) == "500"
    await admin.delete("/faults")
    assert await ask(oai) == "ok"


@pytest.mark.parametrize(
    "body",
    [
        {"kind": "error"},
        {"kind": "error", "status": 200},
        [{"kind": "nope"}],
        {"kind": "reset", "rate": 2},
        "not json at all",
    ],
)
async def test_bad_fault_specs_are_400(admin: httpx.AsyncClient, body: Any) -> None:
    response = await admin.put(
        "/faults/m",
        content=body if isinstance(body, str) else httpx.Response(200, json=body).content,
    )
    assert response.status_code == 400 and "error" in response.json()
    assert (await admin.get("/state")).json()["faults"] == {}


async def test_reset_clears_faults_and_counters_keeps_timing(
    admin: httpx.AsyncClient, oai: openai.AsyncOpenAI
) -> None:
    await admin.put("/models/gpt-4o", json={"reply_tokens": 3})
    await admin.put("/faults/gpt-4o", json={"kind": "error", "status": 500, "count": 1})
    assert await ask(oai) == "500"
    response = await admin.post("/reset", json={"seed": 42})
    assert response.json() == {"reset": True, "seed": 42}
    state = (await admin.get("/state")).json()
    assert state["requests_total"] == 0 and state["faults"] == {} and state["seed"] == 42
    assert state["model_config"] == {"gpt-4o": {"reply_tokens": 3}}
    answer = await oai.chat.completions.create(model="gpt-4o", messages=HELLO)
    assert answer.usage is not None and answer.usage.completion_tokens == 3


async def test_model_config_and_context_window(
    admin: httpx.AsyncClient, oai: openai.AsyncOpenAI
) -> None:
    assert (await admin.put("/models/gpt-4o", json={"chunk_tokens": 0})).status_code == 400
    assert (await admin.put("/models/gpt-4o", json={"colour": "red"})).status_code == 400
    await admin.put("/models/gpt-*", json={"context_window": 10})
    with pytest.raises(openai.BadRequestError):
        await oai.chat.completions.create(
            model="gpt-4o", messages=[{"role": "user", "content": "x" * 100}]
        )
    assert (await admin.delete("/models/gpt-*")).json() == {"removed": True}
    await oai.chat.completions.create(
        model="gpt-4o", messages=[{"role": "user", "content": "x" * 100}]
    )
    outcomes = (await admin.get("/state")).json()["models"]["gpt-4o"]["outcomes"]
    assert outcomes == {"context_length": 1, "ok": 1}


async def test_counts_are_exact_under_concurrency(
    admin: httpx.AsyncClient, oai: openai.AsyncOpenAI
) -> None:
    await admin.put("/faults/gpt-4o", json={"kind": "error", "status": 429, "count": 10})
    results = await asyncio.gather(*(ask(oai) for _ in range(40)))
    assert results.count("429") == 10 and results.count("ok") == 30
    model = (await admin.get("/state")).json()["models"]["gpt-4o"]
    assert model["requests"] == 40 and model["outcomes"] == {"error_429": 10, "ok": 30}


SCENARIO = {
    "name": "drill",
    "time_scale": 1,
    "phases": [
        {"at": 0, "model": "claude-*", "errors": {"529": 1.0}, "note": "down"},
        {"at": "00:17", "model": "claude-opus-4-6", "faults": "clear", "note": "opus back"},
    ],
}


async def test_scenario_over_the_admin_api(
    admin: httpx.AsyncClient, claude: anthropic.AsyncAnthropic
) -> None:
    started = await admin.post("/scenario", json={"scenario": SCENARIO})
    assert started.status_code == 200 and started.json()["phase"] == 0
    with pytest.raises(anthropic.OverloadedError):
        await claude.messages.create(model="claude-opus-4-6", max_tokens=5, messages=HELLO)
    seek = (await admin.put("/scenario/clock", json={"at": "00:17"})).json()
    assert seek["clock"].startswith("00:17:") and seek["phase"] == 1 and seek["note"] == "opus back"
    assert seek["active"] == {
        "claude-*": [{"kind": "error", "status": 529, "rate": 1.0}],
        "claude-opus-4-6": [],
    }
    await claude.messages.create(model="claude-opus-4-6", max_tokens=5, messages=HELLO)
    with pytest.raises(anthropic.OverloadedError):
        await claude.messages.create(model="claude-sonnet-4-6", max_tokens=5, messages=HELLO)
    # an admin fault overrides the scenario for the models it matches
    await admin.put("/faults/claude-sonnet-4-6", json=[])
    await claude.messages.create(model="claude-sonnet-4-6", max_tokens=5, messages=HELLO)
    state = (await admin.get("/state")).json()["scenario"]
    assert state["name"] == "drill" and state["time_scale"] == 1
    assert (await admin.delete("/scenario")).json() == {"stopped": True}
    assert (await admin.get("/state")).json()["scenario"] is None


async def test_builtin_scenarios_by_name_only(admin: httpx.AsyncClient, tmp_path: Any) -> None:
    started = await admin.post(
        "/scenario", json={"name": "2026-06-05", "at": "00:20", "time_scale": 2}
    )
    body = started.json()
    assert body["name"] == "2026-06-05" and body["time_scale"] == 2 and body["phase"] == 1
    path = tmp_path / "s.yaml"
    path.write_text("phases: [{at: 0, faults: clear}]")
    refused = await admin.post("/scenario", json={"name": str(path)})
    assert refused.status_code == 400 and "unknown scenario" in refused.json()["error"]
    assert (await admin.post("/scenario", json={})).status_code == 400
    assert (await admin.put("/scenario/clock", json={"at": "soon"})).status_code == 400
