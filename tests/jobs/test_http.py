"""``/v1/jobs`` over a real loopback server, with in-process workers (``start_workers``)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from hedgerow.jobs import JobQueue
from hedgerow.routing import Gateway
from hedgerow.server.jobs import add_job_routes, start_workers
from hedgerow.sim.mock import RunningMock
from tests.jobs.conftest import chat, jobs_config


@pytest.fixture
async def server(queue: JobQueue, mock: RunningMock) -> AsyncIterator[str]:
    config = jobs_config(mock)
    gateway = Gateway(config)
    app = web.Application()
    add_job_routes(app, queue, routes=list(config.routes), close_queue=False)
    app.cleanup_ctx.append(start_workers(gateway, queue, config.jobs, count=1))
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        yield f"http://127.0.0.1:{runner.addresses[0][1]}"
    finally:
        await runner.cleanup()
        await gateway.aclose()


async def _wait_done(http: aiohttp.ClientSession, url: str) -> dict[str, Any]:
    for _ in range(500):
        async with http.get(url) as reply:
            job: dict[str, Any] = await reply.json()
        if job["state"] in ("succeeded", "dead"):
            return job
        await asyncio.sleep(0.02)  # polling the job's state (a real condition)
    raise TimeoutError(url)


async def test_submit_poll_and_result_in_the_clients_format(server: str) -> None:
    async with aiohttp.ClientSession() as http:
        body = {"max_tokens": 40, "messages": [{"role": "user", "content": "hi"}]}
        async with http.post(
            f"{server}/v1/jobs",
            json={"format": "anthropic", "route": "summarise", "request": body,
                  "metadata": {"doc": 3}},
            headers={"Idempotency-Key": "k-3"},
        ) as reply:  # fmt: skip
            assert reply.status == 202
            created = await reply.json()
            assert reply.headers["location"] == f"/v1/jobs/{created['id']}"
        assert created["state"] in ("queued", "running", "succeeded")
        assert created["idempotency_key"] == "k-3" and created["metadata"] == {"doc": 3}
        job = await _wait_done(http, f"{server}/v1/jobs/{created['id']}")
        assert job["state"] == "succeeded" and job["attempts"] == 1
        assert job["result"]["type"] == "message" and job["result"]["content"][0]["text"]
        async with http.get(f"{server}/v1/jobs/{created['id']}?format=openai") as reply:
            other = await reply.json()
        assert other["result"]["object"] == "chat.completion"
        # The same key again: the same job, 200, no second job.
        async with http.post(
            f"{server}/v1/jobs",
            json={"format": "anthropic", "route": "summarise", "request": body,
                  "idempotency_key": "k-3"},
        ) as reply:  # fmt: skip
            assert reply.status == 200 and (await reply.json())["id"] == created["id"]
        async with http.post(
            f"{server}/v1/jobs",
            json={"request": chat("different"), "idempotency_key": "k-3"},
        ) as reply:
            assert reply.status == 409
        async with http.get(f"{server}/v1/jobs?state=succeeded&route=summarise") as reply:
            listing = await reply.json()
        assert [j["id"] for j in listing["data"]] == [created["id"]]
        assert listing["counts"]["succeeded"] == 1 and listing["has_more"] is False


@pytest.mark.parametrize(
    ("payload", "status", "param"),
    [
        ({"request": chat(model="nope")}, 404, "route"),
        ({"request": {"model": "summarise"}}, 400, "request.messages"),
        ({"request": {**chat(), "stream": True}}, 400, "request.stream"),
        ({"request": chat(), "format": "gemini"}, 400, "format"),
        ({"request": chat(), "priority": "urgent"}, 400, "priority"),
        ({"request": chat(), "colour": "red"}, 400, "colour"),
    ],
)
async def test_bad_submissions_are_openai_errors(
    server: str, payload: dict[str, Any], status: int, param: str
) -> None:
    async with aiohttp.ClientSession() as http:
        async with http.post(f"{server}/v1/jobs", json=payload) as reply:
            assert reply.status == status
            error = (await reply.json())["error"]
        assert error["message"] and error["param"] == param
        async with http.get(f"{server}/v1/jobs/job_missing") as reply:
            assert reply.status == 404 and "error" in await reply.json()
        async with http.get(f"{server}/v1/jobs?state=sleeping") as reply:
            assert reply.status == 400
