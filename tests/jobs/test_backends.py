"""The queue interface, one suite run against every backend (SQLite and a real Redis)."""

from __future__ import annotations

import asyncio

import pytest

from hedgerow import ir
from hedgerow.jobs import (
    FakeClock,
    Group,
    IdempotencyConflict,
    JobError,
    JobQueue,
    JobState,
    Priority,
    ServedInfo,
    build_job,
    submit,
)
from tests.jobs.conftest import chat

LEASE = 30.0
RESPONSE = ir.ChatResponse(
    id="msg_1",
    model="claude-sonnet-4-6",
    content=[ir.TextPart("Hedgerows shelter hedgehogs.")],
    finish_reason="stop",
    usage=ir.Usage(input_tokens=7, output_tokens=5),
)
SERVED = ServedInfo(
    route="summarise", tier=0, deployment="anth/claude-sonnet-4-6", model="m", attempts=1
)
BATCH = Group(Priority.BATCH, "summarise")


async def _one(queue: JobQueue, clock: FakeClock, **options: object) -> str:
    submission = await submit(queue, chat(), clock=clock, **options)  # type: ignore[arg-type]
    return submission.id


async def test_submit_stores_the_job_before_returning(queue: JobQueue, clock: FakeClock) -> None:
    submission = await submit(
        queue, chat(), metadata={"doc": 7}, idempotency_key="doc-7", clock=clock
    )
    assert submission.created
    job = await queue.get(submission.id)
    assert job is not None
    assert job.state is JobState.QUEUED
    assert job.route == "summarise" and job.format == "openai"
    assert job.request["messages"][0]["content"] == "Summarise the hedgerow survey."
    assert job.metadata == {"doc": 7}
    assert job.attempts == 0 and job.created_at == clock.time()
    assert (await queue.counts())[JobState.QUEUED] == 1
    assert await queue.get("job_missing") is None


async def test_idempotency_key_returns_the_first_job(queue: JobQueue, clock: FakeClock) -> None:
    first = await submit(queue, chat(), idempotency_key="k1", clock=clock)
    again = await submit(queue, chat(), idempotency_key="k1", clock=clock)
    assert again.id == first.id and not again.created
    with pytest.raises(IdempotencyConflict) as info:
        await submit(queue, chat("something else"), idempotency_key="k1", clock=clock)
    assert info.value.job_id == first.id
    # Same key twice inside one batch: one job.
    jobs = [build_job(chat(), idempotency_key="k2", now=clock.time()) for _ in range(2)]
    outcomes = await queue.submit_many(jobs)
    ids = {o.id for o in outcomes if not isinstance(o, IdempotencyConflict)}
    assert len(ids) == 1
    assert (await queue.counts())[JobState.QUEUED] == 2


async def test_concurrent_submits_share_commits_and_all_land(
    queue: JobQueue, clock: FakeClock
) -> None:
    results = await asyncio.gather(
        *(submit(queue, chat(f"doc {i}"), idempotency_key=f"d{i}", clock=clock) for i in range(300))
    )
    assert len({r.id for r in results}) == 300
    assert (await queue.counts())[JobState.QUEUED] == 300


async def test_lease_is_oldest_first_and_exclusive(queue: JobQueue, clock: FakeClock) -> None:
    ids = [await _one(queue, clock) for _ in range(3)]
    ready = await queue.ready_groups(clock.time())
    assert ready.ready == [BATCH] and ready.next_due is None
    first = await queue.lease(BATCH, "w1", 2, LEASE, clock.time())
    assert [j.id for j in first] == ids[:2]
    assert all(j.state is JobState.RUNNING and j.attempts == 1 for j in first)
    assert first[0].lease_owner == "w1" and first[0].lease_until == clock.time() + LEASE
    second = await queue.lease(BATCH, "w2", 5, LEASE, clock.time())
    assert [j.id for j in second] == ids[2:]
    assert await queue.lease(BATCH, "w3", 5, LEASE, clock.time()) == []


async def test_complete_first_wins(queue: JobQueue, clock: FakeClock) -> None:
    await _one(queue, clock)
    (job,) = await queue.lease(BATCH, "w1", 1, LEASE, clock.time())
    assert await queue.complete(job, RESPONSE, SERVED, clock.time(), webhook=False)
    assert not await queue.complete(job, RESPONSE, SERVED, clock.time(), webhook=False)
    done = await queue.get(job.id)
    assert done is not None and done.state is JobState.SUCCEEDED
    assert done.result == RESPONSE and done.served == SERVED
    assert done.finished_at == clock.time()
    assert (await queue.counts())[JobState.SUCCEEDED] == 1


async def test_retry_waits_for_not_before_and_refund(queue: JobQueue, clock: FakeClock) -> None:
    await _one(queue, clock)
    (job,) = await queue.lease(BATCH, "w1", 1, LEASE, clock.time())
    error = JobError("overloaded", "529", 529, 2.0, 1, clock.time())
    assert await queue.retry(job, error, clock.time() + 10, clock.time())
    # A stale token cannot act on the job any more.
    assert not await queue.retry(job, error, clock.time(), clock.time())
    ready = await queue.ready_groups(clock.time())
    assert ready.ready == [] and ready.next_due == clock.time() + 10
    assert await queue.lease(BATCH, "w1", 1, LEASE, clock.time()) == []
    clock.advance(10)
    assert (await queue.ready_groups(clock.time())).ready == [BATCH]
    (again,) = await queue.lease(BATCH, "w1", 1, LEASE, clock.time())
    assert again.attempts == 2 and again.last_error == error
    assert await queue.retry(again, error, clock.time(), clock.time(), refund=True)
    refunded = await queue.get(job.id)
    assert refunded is not None and refunded.attempts == 1


async def test_renew_and_expired_lease_requeue(queue: JobQueue, clock: FakeClock) -> None:
    await _one(queue, clock)
    (job,) = await queue.lease(BATCH, "w1", 1, 5.0, clock.time())
    clock.advance(4)
    assert await queue.renew(job, 5.0, clock.time())
    clock.advance(4)
    assert await queue.requeue_expired(clock.time(), 5.0) == 0  # renewed: still held
    clock.advance(2)
    assert await queue.requeue_expired(clock.time(), 5.0) == 1
    back = await queue.get(job.id)
    assert back is not None and back.state is JobState.QUEUED and back.attempts == 1
    assert back.last_error is not None and back.last_error.kind == "lease_expired"
    assert "w1" in back.last_error.message
    assert not await queue.renew(job, 5.0, clock.time())  # the old holder lost it
    (again,) = await queue.lease(BATCH, "w2", 1, 5.0, clock.time())
    assert again.attempts == 2 and again.token != job.token
    # The first worker finishing late still counts once (first completion wins).
    assert await queue.complete(job, RESPONSE, SERVED, clock.time(), webhook=False)
    assert not await queue.complete(again, RESPONSE, SERVED, clock.time(), webhook=False)


async def test_oldest_enqueued_at_follows_the_unfinished_jobs(
    queue: JobQueue, clock: FakeClock
) -> None:
    assert await queue.oldest_enqueued_at() is None
    start = clock.time()
    for _ in range(3):
        await _one(queue, clock)
        clock.advance(5)
    assert await queue.oldest_enqueued_at() == start
    first, second = await queue.lease(BATCH, "w1", 2, LEASE, clock.time())
    assert await queue.oldest_enqueued_at() == start  # running is not finished
    assert await queue.complete(first, RESPONSE, SERVED, clock.time(), webhook=False)
    assert await queue.oldest_enqueued_at() == start + 5
    error = JobError("overloaded", "529", 529, attempt=1)
    assert await queue.retry(second, error, clock.time() + 60, clock.time())
    assert await queue.oldest_enqueued_at() == start + 5  # waiting out a backoff: unfinished
    (third,) = await queue.lease(BATCH, "w1", 1, LEASE, clock.time())
    assert await queue.bury(third, error, "max_attempts", clock.time(), webhook=False)
    assert await queue.oldest_enqueued_at() == start + 5
    clock.advance(100)
    assert await queue.replay(ids=[third.id], now=clock.time()) == [third.id]
    assert (await queue.ready_groups(clock.time())).ready == [BATCH]
    leased = await queue.lease(BATCH, "w1", 2, LEASE, clock.time())
    (second,) = [j for j in leased if j.id == second.id]
    assert await queue.complete(second, RESPONSE, SERVED, clock.time(), webhook=False)
    # What is left is the replayed job, which counts from its replay.
    assert await queue.oldest_enqueued_at() == clock.time()
    (third,) = [j for j in leased if j.id == third.id]
    assert await queue.retry(third, error, clock.time(), clock.time())
    assert await queue.expire(10.0, clock.time() + 11, webhook=False) == 1
    assert await queue.oldest_enqueued_at() is None


async def test_bury_replay_with_filters(queue: JobQueue, clock: FakeClock) -> None:
    await _one(queue, clock)
    await _one(queue, clock, route="classify")
    error = JobError("bad_request", "nope", 400, attempt=1)
    for group in (BATCH, Group(Priority.BATCH, "classify")):
        (job,) = await queue.lease(group, "w", 1, LEASE, clock.time())
        assert await queue.bury(job, error, "permanent", clock.time(), webhook=False)
        clock.advance(100)
    dead = await queue.list_jobs(state=JobState.DEAD)
    assert [j.route for j in dead] == ["classify", "summarise"]  # newest first
    assert dead[0].last_error == error and dead[0].dead_reason == "permanent"
    assert await queue.list_jobs(state=JobState.DEAD, route="classify", limit=5) == [dead[0]]
    since = dead[0].updated_at
    assert [j.id for j in await queue.list_jobs(since=since)] == [dead[0].id]
    # --since picks only what died after it; --route only that route.
    replayed = await queue.replay(since=since, now=clock.time())
    assert replayed == [dead[0].id]
    replayed = await queue.replay(route="summarise", now=clock.time())
    assert replayed == [dead[1].id]
    assert await queue.replay(now=clock.time()) == []
    for job_id in (dead[0].id, dead[1].id):
        job = await queue.get(job_id)
        assert job is not None and job.state is JobState.QUEUED and job.attempts == 0
        assert job.last_error == error  # kept for reference
    assert (await queue.counts())[JobState.QUEUED] == 2


async def test_priority_groups_and_next_due(queue: JobQueue, clock: FakeClock) -> None:
    await _one(queue, clock, priority="batch")
    await _one(queue, clock, priority="interactive", route="classify")
    await _one(queue, clock, route="extract", delay=30.0)
    ready = await queue.ready_groups(clock.time())
    assert sorted(ready.ready) == [
        Group(Priority.INTERACTIVE, "classify"),
        Group(Priority.BATCH, "summarise"),
    ]
    assert ready.next_due == clock.time() + 30


async def test_expire_buries_old_jobs_and_expedite(queue: JobQueue, clock: FakeClock) -> None:
    old = await _one(queue, clock)
    clock.advance(50)
    young = await _one(queue, clock, delay=500.0)
    assert await queue.expire(40.0, clock.time(), webhook=False) == 1
    dead = await queue.get(old)
    assert dead is not None and dead.state is JobState.DEAD and dead.dead_reason == "max_age"
    assert dead.last_error is not None and dead.last_error.kind == "expired"
    assert await queue.expedite("summarise", clock.time()) == 1
    (job,) = await queue.lease(BATCH, "w", 1, LEASE, clock.time())
    assert job.id == young
    # A replayed job's age counts from the replay.
    assert await queue.replay(ids=[old], now=clock.time()) == [old]
    assert await queue.expire(40.0, clock.time(), webhook=False) == 0


async def test_webhook_bookkeeping(queue: JobQueue, clock: FakeClock) -> None:
    await _one(queue, clock)
    (job,) = await queue.lease(BATCH, "w", 1, LEASE, clock.time())
    assert await queue.complete(job, RESPONSE, SERVED, clock.time(), webhook=True)
    pending = await queue.pending_webhooks(10)
    assert [j.id for j in pending] == [job.id]
    await queue.webhook_done(job.id, True)
    assert await queue.pending_webhooks(10) == []
    done = await queue.get(job.id)
    assert done is not None and done.webhook == "delivered"
