"""Jobs wired into the gateway: `Gateway.submit`, `POST /v1/jobs` on `hedgerow serve`'s app
with in-process workers, and the router's `queue` degradation."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import aiohttp

from hedgerow.jobs.api import open_queue
from hedgerow.routing import Gateway
from hedgerow.sim.mock import RunningMock
from tests.servers import make_config, start_gateway

USER: list[Any] = [{"role": "user", "content": "Summarise the survey."}]


def config(mock: RunningMock, tmp_path: Path, **jobs: Any) -> Any:
    routes = {
        "summarise": {
            "tiers": [["anth/claude-sonnet-4-6"]],
            "retry": {"max_retries": 0},
            "minimal": "queue",
        }
    }
    jobs = {"path": str(tmp_path / "jobs.db"), "poll_interval": 0.05, "backoff_base": 0.05, **jobs}
    return make_config(mock, routes, jobs=jobs)


async def wait_for_state(session: aiohttp.ClientSession, url: str, state: str) -> dict[str, Any]:
    deadline = asyncio.get_running_loop().time() + 10.0
    while True:
        async with session.get(url) as response:
            job: dict[str, Any] = await response.json()
        if job["state"] == state:
            return job
        assert asyncio.get_running_loop().time() < deadline, f"job stuck in {job['state']}"
        await asyncio.sleep(0.02)  # polling a real condition with a deadline


async def test_library_submit_stores_before_any_call(mock: RunningMock, tmp_path: Path) -> None:
    async with Gateway(config(mock, tmp_path)) as gw:
        job_id = await gw.submit(
            {"messages": USER, "max_tokens": 20}, route="summarise", idempotency_key="k-1"
        )
        again = await gw.submit(
            {"messages": USER, "max_tokens": 20}, route="summarise", idempotency_key="k-1"
        )
    assert again == job_id
    assert mock.state.counters.total == 0  # stored, not called
    queue = open_queue(config(mock, tmp_path).jobs)
    job = await queue.get(job_id)
    assert job is not None and job.state.value == "queued"
    await queue.close()


async def test_every_tier_down_queues_the_request_and_a_worker_delivers_it(
    mock: RunningMock, tmp_path: Path
) -> None:
    mock.set_faults("claude-sonnet-4-6", {"kind": "error", "status": 529, "count": 1})
    async with (
        start_gateway(config(mock, tmp_path, workers=1)) as gw,
        aiohttp.ClientSession() as session,
    ):
        async with session.post(
            f"{gw.url}/v1/chat/completions",
            json={"model": "summarise", "messages": USER, "max_tokens": 20},
        ) as response:
            assert response.status == 202
            accepted = await response.json()
        assert accepted["object"] == "hedgerow.job"
        assert response.headers["x-hedgerow-job-id"] == accepted["id"]
        # The provider is back (the fault was for one call): the in-process worker delivers.
        job = await wait_for_state(session, f"{gw.url}/v1/jobs/{accepted['id']}", "succeeded")
    assert job["result"]["choices"][0]["message"]["content"]
    assert mock.requests("claude-sonnet-4-6") == 2  # the failed call, then the worker's


async def test_post_v1_jobs_on_the_server(mock: RunningMock, tmp_path: Path) -> None:
    async with (
        start_gateway(config(mock, tmp_path, workers=1)) as gw,
        aiohttp.ClientSession() as session,
    ):
        async with session.post(
            f"{gw.url}/v1/jobs",
            json={
                "format": "anthropic",
                "route": "summarise",
                "request": {"max_tokens": 20, "messages": USER},
            },
        ) as response:
            assert response.status == 202
            accepted = await response.json()
        job = await wait_for_state(session, f"{gw.url}/v1/jobs/{accepted['id']}", "succeeded")
    assert job["result"]["type"] == "message"
