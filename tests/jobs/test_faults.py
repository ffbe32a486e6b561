"""Faults injected for real: a worker process killed with SIGKILL mid-call, workers
restarted with a backlog, Redis restarted mid-run, a read-only and a full SQLite file.

The simulator runs in the test's event loop; worker processes (``hedgerow worker``) call it
over loopback. Waits poll real conditions (the simulator's counters, the queue's states)
with a deadline; none sleeps hoping a race goes its way.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiohttp import web

from hedgerow.jobs import JobQueue, JobState, JobStoreError, Worker, submit
from hedgerow.jobs.redis import RedisQueue
from hedgerow.jobs.sqlite import SqliteQueue
from hedgerow.routing import Gateway
from hedgerow.server.jobs import add_job_routes
from hedgerow.sim.mock import RunningMock
from tests.jobs.conftest import ROUTES, RedisServer, chat, jobs_config
from tests.servers import provider_config

MODEL = "claude-sonnet-4-6"


async def until(condition: Callable[[], Awaitable[bool]], timeout: float = 20.0) -> None:
    """Poll ``condition`` until true; fail after ``timeout`` seconds."""
    deadline = asyncio.get_running_loop().time() + timeout
    while not await condition():
        if asyncio.get_running_loop().time() > deadline:
            raise TimeoutError("condition not met in time")
        await asyncio.sleep(0.02)


def _write_config(tmp: Path, mock: RunningMock, jobs: dict[str, Any]) -> Path:
    path = tmp / "hedgerow.yaml"
    raw = {"providers": provider_config(mock), "routes": ROUTES, "jobs": jobs}
    path.write_text(orjson.dumps(raw).decode())  # JSON is YAML
    return path


@contextlib.asynccontextmanager
async def worker_process(config: Path, log: Path) -> AsyncIterator[asyncio.subprocess.Process]:
    """``hedgerow worker`` as a real process; SIGTERM at the end if still running."""
    with open(log, "ab") as out:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "hedgerow.cli", "worker", "--config", str(config),
            stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip
    try:
        yield proc
    finally:
        if proc.returncode is None:
            proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(proc.wait(), 15)
            except TimeoutError:
                proc.kill()
                await proc.wait()


def _backend_settings(backend: str, tmp: Path, request: pytest.FixtureRequest) -> dict[str, Any]:
    if backend == "sqlite":
        return {"backend": "sqlite", "path": str(tmp / "jobs.db")}
    server: RedisServer = request.getfixturevalue("redis_server")
    return {
        "backend": "redis",
        "redis_url": server.url,
        "redis_prefix": f"t{uuid.uuid4().hex[:10]}",
    }


def _open(settings: dict[str, Any]) -> JobQueue:
    if settings["backend"] == "sqlite":
        return SqliteQueue(settings["path"])
    return RedisQueue(settings["redis_url"], prefix=settings["redis_prefix"])


async def _states(queue: JobQueue, ids: list[str]) -> list[JobState]:
    jobs = [await queue.get(i) for i in ids]
    return [j.state if j is not None else JobState.DEAD for j in jobs]


async def test_kill_9_of_a_worker_mid_call_loses_nothing(
    backend: str, mock: RunningMock, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    """The first call hangs; the worker holding it is SIGKILLed mid-call. After its lease
    runs out, a second worker process re-leases the job and completes it."""
    settings = {**_backend_settings(backend, tmp_path, request), "lease_seconds": 1.0,
                "poll_interval": 0.1}  # fmt: skip
    config = _write_config(tmp_path, mock, settings)
    mock.set_faults(MODEL, {"kind": "hang", "count": 1})
    queue = _open(settings)
    try:
        ids = [(await submit(queue, chat(f"doc {i}"))).id for i in range(3)]
        async with worker_process(config, tmp_path / "w1.log") as first:

            async def hung() -> bool:
                # The first call hangs; the other two jobs have finished.
                if mock.outcomes(MODEL).get("hang", 0) != 1:
                    return False
                return (await queue.counts())[JobState.SUCCEEDED] == 2

            await until(hung)
            first.kill()  # SIGKILL: no cleanup, the lease is simply never renewed
            await first.wait()
        running = await queue.list_jobs(state=JobState.RUNNING)
        assert len(running) == 1  # the hung job, held by a dead worker
        victim = running[0].id
        async with worker_process(config, tmp_path / "w2.log"):

            async def all_done() -> bool:
                return await _states(queue, ids) == [JobState.SUCCEEDED] * 3

            await until(all_done)
        job = await queue.get(victim)
        assert job is not None and job.attempts == 2
        assert job.last_error is not None and job.last_error.kind == "lease_expired"
        assert mock.requests(MODEL) == 4  # 3 jobs + the call that hung
    finally:
        if isinstance(queue, RedisQueue):
            await queue.flush()
        await queue.close()


async def test_restart_with_backlog_does_each_job_once(mock: RunningMock, tmp_path: Path) -> None:
    """Workers stopped (SIGTERM) and started again with a backlog, while the client
    resubmits everything with the same idempotency keys: every job done, none twice."""
    settings = {"backend": "sqlite", "path": str(tmp_path / "jobs.db"), "concurrency": 2,
                "poll_interval": 0.05}  # fmt: skip
    config = _write_config(tmp_path, mock, settings)
    mock.set_faults(MODEL, {"kind": "delay", "delay": 0.05})
    queue = _open(settings)
    try:
        ids = [(await submit(queue, chat(f"doc {i}"), idempotency_key=f"doc-{i}")).id
               for i in range(24)]  # fmt: skip
        async with worker_process(config, tmp_path / "w1.log") as first:

            async def some_done() -> bool:
                return (await queue.counts())[JobState.SUCCEEDED] >= 4

            await until(some_done)
            first.send_signal(signal.SIGTERM)
            assert await asyncio.wait_for(first.wait(), 15) == 0
        counts = await queue.counts()
        assert counts[JobState.RUNNING] == 0 and counts[JobState.QUEUED] > 0  # a backlog
        again = [
            await submit(queue, chat(f"doc {i}"), idempotency_key=f"doc-{i}") for i in range(24)
        ]
        assert [s.id for s in again] == ids and not any(s.created for s in again)
        async with worker_process(config, tmp_path / "w2.log"):

            async def all_done() -> bool:
                return (await queue.counts())[JobState.SUCCEEDED] == 24

            await until(all_done)
        assert mock.requests(MODEL) == 24  # nothing done twice
        assert sum((await queue.counts()).values()) == 24
    finally:
        await queue.close()


async def test_redis_restart_mid_run(
    durable_redis: RedisServer, mock: RunningMock, tmp_path: Path
) -> None:
    """Redis (append-only, fsync always) stopped and started mid-run: queued jobs survive,
    the worker reconnects, every job completes."""
    mock.set_faults(MODEL, {"kind": "delay", "delay": 0.02})
    config = jobs_config(mock, concurrency=4, lease_seconds=10.0, poll_interval=0.05)
    queue = RedisQueue(durable_redis.url, prefix="restart")
    async with Gateway(config) as gw:
        worker = Worker(gw, queue, config.jobs)
        ids = [(await submit(queue, chat(f"doc {i}"))).id for i in range(40)]
        worker.start()
        try:

            async def some_done() -> bool:
                return (await queue.counts())[JobState.SUCCEEDED] >= 5

            await until(some_done)
            await asyncio.to_thread(durable_redis.stop)
            with pytest.raises(JobStoreError, match="unreachable"):
                await queue.counts()
            await asyncio.to_thread(durable_redis.start)

            async def all_done() -> bool:
                try:
                    return (await queue.counts())[JobState.SUCCEEDED] == 40
                except JobStoreError:
                    return False

            await until(all_done, timeout=40)
        finally:
            await worker.stop(grace=5)
    assert await _states(queue, ids) == [JobState.SUCCEEDED] * 40
    assert 40 <= mock.requests(MODEL) <= 44  # at most the calls in flight at the restart
    await queue.flush()
    await queue.close()


def _chattr(flag: str, *paths: Path) -> None:
    subprocess.run(["chattr", flag, *map(str, paths)], check=True)


async def test_read_only_sqlite_gives_a_clear_error_at_submit(
    mock: RunningMock, tmp_path: Path
) -> None:
    """The database file is made immutable (``chattr +i``): unlike ``chmod``, that binds
    root too (the tests run as root), so SQLite really cannot write it. A submit then fails
    loudly, through the library and through ``POST /v1/jobs``; reading still works."""
    path = tmp_path / "jobs.db"
    first = SqliteQueue(path)
    await submit(first, chat())
    await first.close()
    _chattr("+i", path)
    try:
        queue = SqliteQueue(path)
        with pytest.raises(JobStoreError, match="read-only") as info:
            await submit(queue, chat("another"))
        assert str(path) in str(info.value)
        assert (await queue.counts())[JobState.QUEUED] == 1  # still readable, nothing added
        app = web.Application()
        add_job_routes(app, queue)
        status, body = await _post(app, {"request": chat("via http")})
        assert status == 503
        assert "read-only" in body["error"]["message"]
    finally:
        _chattr("-i", path)


async def _post(app: web.Application, payload: dict[str, Any]) -> tuple[int, Any]:
    from aiohttp.test_utils import TestClient, TestServer

    async with TestClient(TestServer(app)) as client:
        reply = await client.post("/v1/jobs", json=payload)
        return reply.status, await reply.json()


@pytest.fixture
def tiny_disk(tmp_path: Path) -> Any:
    """A 1 MiB tmpfs: a real filesystem that fills up (mount needs root, as the tests have)."""
    mount = tmp_path / "tiny"
    mount.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mount)], capture_output=True
    )
    if done.returncode != 0:
        pytest.fail(f"cannot mount a tmpfs for the disk-full test: {done.stderr.decode()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


async def test_full_disk_gives_a_clear_error_at_submit(tiny_disk: Path) -> None:
    """Submits until the 1 MiB filesystem is full: the one that does not fit raises a clear
    error; every submit that returned an id is really stored (no silent drop)."""
    queue = SqliteQueue(tiny_disk / "jobs.db")
    stored: list[str] = []
    padding = "x" * 8000
    with pytest.raises(JobStoreError, match="full") as info:
        for i in range(1000):
            stored.append((await submit(queue, chat(), metadata={"pad": padding, "i": i})).id)
    assert "was not stored" in str(info.value)
    assert stored  # some fitted before the disk filled
    assert (await queue.counts())[JobState.QUEUED] == len(stored)
    for job_id in (stored[0], stored[-1]):
        assert await queue.get(job_id) is not None
    await queue.close()
    os.sync()
