"""The worker over the real router and the provider simulator, driven by a fake clock.

Each test steps the worker itself (``tick`` then ``idle``) and advances the clock, so no
test sleeps hoping a race goes its way.
"""

from __future__ import annotations

import random
from typing import Any

import pytest
from aiohttp import web

from hedgerow.jobs import (
    FakeClock,
    JobQueue,
    JobState,
    Worker,
    backoff_delay,
    submit,
    verify_signature,
)
from hedgerow.routing import Gateway
from hedgerow.sim.mock import RunningMock
from tests.jobs.conftest import chat, jobs_config

MODEL = "claude-sonnet-4-6"


async def _step(worker: Worker) -> float | None:
    """One scheduling round, then wait for the calls it started."""
    wait = await worker.tick()
    await worker.idle()
    return wait


class GatedGateway(Gateway):
    """The real router with ``route_ready`` scripted by the test (its breakers are another
    issue's work): an honest double of the one method the worker consults."""

    down_for: dict[str, float]

    def route_ready(self, route: str, now: float | None = None) -> float:
        self.plan(route)
        return self.down_for.get(route, 0.0)


async def test_job_runs_and_stores_its_result(
    queue: JobQueue, mock: RunningMock, clock: FakeClock
) -> None:
    config = jobs_config(mock)
    async with Gateway(config) as gw:
        worker = Worker(gw, queue, config.jobs, clock=clock)
        sub = await submit(queue, chat(), clock=clock)
        anth = await submit(
            queue,
            {
                "model": "summarise",
                "max_tokens": 20,
                "messages": [{"role": "user", "content": "hi"}],
            },
            style="anthropic",
            clock=clock,
        )
        await _step(worker)
    job = await queue.get(sub.id)
    assert job is not None and job.state is JobState.SUCCEEDED
    assert job.attempts == 1 and job.result is not None and job.result.content
    assert job.served is not None and job.served.deployment == f"anth/{MODEL}"
    other = await queue.get(anth.id)
    assert other is not None and other.state is JobState.SUCCEEDED and other.format == "anthropic"
    assert mock.requests(MODEL) == 2


async def test_poison_job_goes_to_dlq_without_blocking_others(
    queue: JobQueue, mock: RunningMock, clock: FakeClock
) -> None:
    """The simulator answers 400 to every request of the poison job's model."""
    mock.set_faults("gpt-5.5", {"kind": "error", "status": 400})
    config = jobs_config(mock, concurrency=1)
    async with Gateway(config) as gw:
        worker = Worker(gw, queue, config.jobs, clock=clock)
        poison = await submit(queue, chat(model="classify"), clock=clock)
        good = [await submit(queue, chat(f"doc {i}"), clock=clock) for i in range(3)]
        for _ in range(4):
            await _step(worker)
    dead = await queue.get(poison.id)
    assert dead is not None and dead.state is JobState.DEAD
    assert dead.dead_reason == "permanent" and dead.attempts == 1
    assert dead.last_error is not None and dead.last_error.status == 400
    assert mock.requests("gpt-5.5") == 1  # a 400 is not retried
    for sub in good:
        job = await queue.get(sub.id)
        assert job is not None and job.state is JobState.SUCCEEDED


async def test_backoff_full_jitter_bounds() -> None:
    rng = random.Random(7)
    for attempt in range(1, 12):
        cap = min(60.0, 0.5 * 2 ** (attempt - 1))
        draws = [backoff_delay(attempt, 0.5, 60.0, rng) for _ in range(200)]
        assert all(0.0 <= d <= cap for d in draws)
        assert max(draws) > 0.8 * cap and min(draws) < 0.2 * cap  # spread over the range


async def test_retry_with_backoff_then_dead_after_max_attempts(
    queue: JobQueue, mock: RunningMock, clock: FakeClock
) -> None:
    mock.set_faults(MODEL, {"kind": "error", "status": 503, "retry_after": 0})
    config = jobs_config(mock, max_attempts=3, backoff_base=2.0, backoff_max=100.0)
    async with GatedGateway(config) as gw:
        gw.down_for = {}  # the breakers stay out of it: this is the job's own backoff
        worker = Worker(gw, queue, config.jobs, clock=clock, rng=random.Random(1))
        sub = await submit(queue, chat(), clock=clock)
        for attempt in (1, 2):
            await _step(worker)
            job = await queue.get(sub.id)
            assert job is not None and job.state is JobState.QUEUED and job.attempts == attempt
            delay = job.not_before - clock.time()
            assert 0.0 <= delay <= 2.0 * 2 ** (attempt - 1)  # full jitter bound
            assert job.last_error is not None and job.last_error.status == 503
            clock.advance(delay)
        await _step(worker)
    job = await queue.get(sub.id)
    assert job is not None and job.state is JobState.DEAD and job.dead_reason == "max_attempts"
    assert job.attempts == 3 and mock.requests(MODEL) == 3
    assert job.last_error is not None and job.last_error.kind == "unavailable"


async def test_retry_after_is_honoured(
    queue: JobQueue, mock: RunningMock, clock: FakeClock
) -> None:
    """A 429 with Retry-After 30: nothing is tried for 30 s, whether the job's own backoff
    or the router's pause of the deployment holds it (the router runs on the same clock)."""
    mock.set_faults(MODEL, {"kind": "error", "status": 429, "retry_after": 30, "count": 1})
    config = jobs_config(mock, backoff_base=0.1, backoff_max=1.0)
    async with Gateway(config, clock=clock.monotonic) as gw:
        worker = Worker(gw, queue, config.jobs, clock=clock)
        sub = await submit(queue, chat(), clock=clock)
        await _step(worker)
        job = await queue.get(sub.id)
        assert job is not None and job.state is JobState.QUEUED
        assert job.last_error is not None and job.last_error.retry_after == 30
        clock.advance(29)
        wait = await _step(worker)
        assert mock.requests(MODEL) == 1  # not before Retry-After
        assert wait is not None and 0 < wait <= 1.0 + 1e-6
        clock.advance(1)
        await _step(worker)
    job = await queue.get(sub.id)
    assert job is not None and job.state is JobState.SUCCEEDED


async def test_retry_after_sets_the_jobs_own_backoff(
    queue: JobQueue, mock: RunningMock, clock: FakeClock
) -> None:
    mock.set_faults(MODEL, {"kind": "error", "status": 429, "retry_after": 30, "count": 1})
    config = jobs_config(mock, backoff_base=0.1, backoff_max=1.0)
    async with GatedGateway(config) as gw:
        gw.down_for = {}
        worker = Worker(gw, queue, config.jobs, clock=clock)
        sub = await submit(queue, chat(), clock=clock)
        await _step(worker)
        job = await queue.get(sub.id)
        assert job is not None and job.not_before >= clock.time() + 30 and job.attempts == 1


async def test_breaker_open_spends_no_attempts_and_probe_releases_all(
    queue: JobQueue, mock: RunningMock, clock: FakeClock
) -> None:
    config = jobs_config(mock, concurrency=8)
    async with GatedGateway(config) as gw:
        gw.down_for = {"summarise": 20.0}
        worker = Worker(gw, queue, config.jobs, clock=clock)
        subs = [await submit(queue, chat(f"doc {i}"), clock=clock) for i in range(5)]
        wait = await _step(worker)
        assert wait == pytest.approx(min(20.0, config.jobs.poll_interval)) or wait == 20.0
        assert mock.requests(MODEL) == 0
        for sub in subs:
            job = await queue.get(sub.id)
            assert job is not None and job.state is JobState.QUEUED and job.attempts == 0
        # Half-open: one probe goes first; the rest wait for its outcome.
        gw.down_for = {}
        await worker.tick()
        assert worker.running == 1
        await worker.idle()
        assert mock.requests(MODEL) == 1
        await _step(worker)
    assert mock.requests(MODEL) == 5
    for sub in subs:
        job = await queue.get(sub.id)
        assert job is not None and job.state is JobState.SUCCEEDED and job.attempts == 1


async def test_failure_while_route_down_is_refunded_and_held(
    queue: JobQueue, mock: RunningMock, clock: FakeClock
) -> None:
    """The call that trips the breaker fails; the job waits at the gate, not in a backoff,
    and its attempt is not held against it."""
    mock.set_faults(MODEL, {"kind": "error", "status": 529, "count": 1})
    config = jobs_config(mock, max_attempts=1)

    class Tripping(GatedGateway):
        async def complete(self, *args: Any, **kwargs: Any) -> Any:
            try:
                return await super().complete(*args, **kwargs)
            except Exception:
                self.down_for = {"summarise": 5.0}
                raise

    async with Tripping(config) as gw:
        gw.down_for = {}
        worker = Worker(gw, queue, config.jobs, clock=clock)
        sub = await submit(queue, chat(), clock=clock)
        await _step(worker)
        job = await queue.get(sub.id)
        assert job is not None and job.state is JobState.QUEUED and job.attempts == 0
        assert job.not_before == clock.time() and job.last_error is not None
        gw.down_for = {}
        await _step(worker)
    job = await queue.get(sub.id)
    assert job is not None and job.state is JobState.SUCCEEDED


async def test_real_gateway_route_ready_gates_the_worker(
    queue: JobQueue, mock: RunningMock
) -> None:
    """The real Gateway's route_ready: while it says wait, nothing is called."""
    config = jobs_config(mock)
    async with Gateway(config) as gw:
        worker = Worker(gw, queue, config.jobs)
        sub = await submit(queue, chat())
        assert gw.route_ready("summarise") == 0.0
        await _step(worker)
    job = await queue.get(sub.id)
    assert job is not None and job.state is JobState.SUCCEEDED


async def test_interactive_jobs_go_before_batch(
    queue: JobQueue, mock: RunningMock, clock: FakeClock
) -> None:
    config = jobs_config(mock, concurrency=1)
    async with Gateway(config) as gw:
        worker = Worker(gw, queue, config.jobs, clock=clock)
        batch = [await submit(queue, chat(f"b{i}"), clock=clock) for i in range(3)]
        urgent = await submit(queue, chat("urgent"), priority="interactive", clock=clock)
        await _step(worker)
        first = await queue.get(urgent.id)
        assert first is not None and first.state is JobState.SUCCEEDED
        for sub in batch:
            job = await queue.get(sub.id)
            assert job is not None and job.state is JobState.QUEUED


async def test_routes_take_turns(queue: JobQueue, mock: RunningMock, clock: FakeClock) -> None:
    """A big backlog on one route does not starve a route submitted after it."""
    config = jobs_config(mock, concurrency=1)
    async with Gateway(config) as gw:
        worker = Worker(gw, queue, config.jobs, clock=clock)
        for i in range(6):
            await submit(queue, chat(f"s{i}"), clock=clock)
        for i in range(2):
            await submit(queue, chat(f"c{i}", model="classify"), clock=clock)
        order: list[str] = []
        for _ in range(4):
            clock.advance(1)  # so "newest first" orders the finished jobs
            await _step(worker)
            done = await queue.list_jobs(state=JobState.SUCCEEDED, limit=1)
            order.append(done[0].route)
    assert sorted(order[:2]) == ["classify", "summarise"]
    assert order.count("classify") == 2


async def test_max_age_sends_waiting_jobs_to_dlq(
    queue: JobQueue, mock: RunningMock, clock: FakeClock
) -> None:
    config = jobs_config(mock, max_age_seconds=60.0)
    async with GatedGateway(config) as gw:
        gw.down_for = {"summarise": 1000.0}
        worker = Worker(gw, queue, config.jobs, clock=clock)
        sub = await submit(queue, chat(), clock=clock)
        await _step(worker)
        clock.advance(61)
        await _step(worker)
    job = await queue.get(sub.id)
    assert job is not None and job.state is JobState.DEAD and job.dead_reason == "max_age"
    assert mock.requests(MODEL) == 0


async def test_expired_lease_is_taken_over(
    queue: JobQueue, mock: RunningMock, clock: FakeClock
) -> None:
    """A worker that leased a job and vanished: after the lease, another runs it."""
    config = jobs_config(mock, lease_seconds=10.0)
    async with Gateway(config) as gw:
        sub = await submit(queue, chat(), clock=clock)
        (ghost,) = await queue.lease(
            (await queue.ready_groups(clock.time())).ready[0], "ghost", 1, 10.0, clock.time()
        )
        worker = Worker(gw, queue, config.jobs, clock=clock)
        await _step(worker)
        assert mock.requests(MODEL) == 0
        clock.advance(11)
        await _step(worker)
        await _step(worker)
    job = await queue.get(sub.id)
    assert job is not None and job.state is JobState.SUCCEEDED and job.attempts == 2
    assert ghost.id == sub.id


async def test_webhook_is_signed_and_verified_by_a_real_receiver(
    queue: JobQueue, mock: RunningMock, clock: FakeClock, aiohttp_receiver: Any
) -> None:
    url, received = aiohttp_receiver
    config = jobs_config(mock, webhook_url=url, webhook_secret="s3cret")
    async with Gateway(config) as gw:
        worker = Worker(gw, queue, config.jobs, clock=clock)
        sub = await submit(queue, chat(), metadata={"doc": 1}, clock=clock)
        await _step(worker)
        await worker.stop(grace=0)
    assert len(received) == 1
    body, headers = received[0]
    assert verify_signature("s3cret", body, headers["x-hedgerow-signature"])
    assert not verify_signature("wrong", body, headers["x-hedgerow-signature"])
    assert headers["x-hedgerow-event"] == "job.succeeded"
    assert headers["x-hedgerow-job-id"] == sub.id
    job = await queue.get(sub.id)
    assert job is not None and job.webhook == "delivered"


@pytest.fixture
async def aiohttp_receiver() -> Any:
    """A real local webhook receiver: records raw bodies and headers."""
    received: list[tuple[bytes, dict[str, str]]] = []

    async def hook(request: web.Request) -> web.Response:
        received.append((await request.read(), dict(request.headers)))
        return web.Response(status=204)

    app = web.Application()
    app.router.add_post("/hook", hook)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        yield f"http://127.0.0.1:{port}/hook", received
    finally:
        await runner.cleanup()
