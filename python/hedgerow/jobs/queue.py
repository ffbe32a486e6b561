"""The job queue interface: what a job is, the states it goes through, and what a backend does.

A job is a chat request written durably **before** any provider is called. Its life::

    queued ──lease──► running ──complete──► succeeded
      ▲                 │
      │   retry (backoff, Retry-After)      │ bury (max attempts, max age, a 4xx)
      └─────────────────┤                   ▼
      ▲   lease expired (worker died)       dead  (the dead-letter queue)
      └──────────────── replay ◄────────────┘

Delivery is at least once: a worker that dies mid-call loses its lease, and the job runs
again. Two things make it exactly-once from the user's point of view: an idempotency key
(a second submit with the same key returns the first job instead of a new one) and a
first-completion-wins rule (a late second completion of the same job is discarded, so the
stored result and the completion webhook happen once).

Times stored with a job are wall-clock epoch seconds (they outlive the process and are
shared between hosts); every method that needs the time takes an explicit ``now`` so that
tests drive the clock (``hedgerow.jobs.clock``).

Backends: ``SqliteQueue`` (embedded default) and ``RedisQueue`` (several gateway instances
sharing work). Both pass one shared test suite (``tests/jobs/test_backends.py``).
"""

from __future__ import annotations

import abc
import asyncio
import enum
import hashlib
import secrets
from collections.abc import Callable, Sequence
from typing import Any, Literal

import msgspec
import orjson

from hedgerow import ir

__all__ = [
    "ClientFormat",
    "DeadReason",
    "Group",
    "IdempotencyConflict",
    "Job",
    "JobError",
    "JobNotFound",
    "JobQueue",
    "JobState",
    "JobStoreError",
    "NewJob",
    "Priority",
    "ReadyGroups",
    "ServedInfo",
    "Submission",
    "SubmitOutcome",
    "new_job_id",
    "request_fingerprint",
]

ClientFormat = Literal["openai", "anthropic"]
DeadReason = Literal["max_attempts", "max_age", "permanent"]


class JobState(enum.StrEnum):
    """Where a job is in its life (see the module docstring)."""

    QUEUED = "queued"  # waiting: ready now, or not before ``not_before`` (a backoff)
    RUNNING = "running"  # leased by a worker whose call is in progress
    SUCCEEDED = "succeeded"  # the result is stored
    DEAD = "dead"  # in the dead-letter queue, with the last error; ``replay`` puts it back


FINISHED = frozenset({JobState.SUCCEEDED, JobState.DEAD})


class Priority(enum.IntEnum):
    """Lower runs first. ``interactive`` is for requests a user is waiting on that the router
    queued while degraded; ``batch`` for pipelines submitted as jobs."""

    INTERACTIVE = 0
    BATCH = 1

    @classmethod
    def parse(cls, value: str | int | Priority) -> Priority:
        """A priority from its name (``"batch"``) or number; ``ValueError`` otherwise."""
        if isinstance(value, Priority):
            return value
        if isinstance(value, str):
            try:
                return cls[value.upper()]
            except KeyError:
                names = ", ".join(p.name.lower() for p in cls)
                raise ValueError(f"unknown priority {value!r} (known: {names})") from None
        return cls(value)

    @property
    def label(self) -> str:
        """The name used in the API and in keys (``interactive``, ``batch``)."""
        return self.name.lower()


class JobError(msgspec.Struct, omit_defaults=True):
    """The error of a failed attempt, kept with the job (the last one wins).

    ``kind`` is an ``ir.ErrorKind`` value, or one of the queue's own: ``lease_expired`` (the
    worker holding the job stopped renewing its lease: it died or hung), ``expired`` (the
    job outlived ``max_age_seconds``), ``degraded`` (only a minimal answer was available),
    ``internal`` (a bug).
    """

    kind: str
    message: str
    status: int = 0
    retry_after: float | None = None
    attempt: int = 0
    at: float = 0.0


class ServedInfo(msgspec.Struct, omit_defaults=True):
    """What answered a job (a copy of the router's ``Served``, decoupled from its shape)."""

    route: str
    tier: int
    deployment: str
    model: str
    attempts: int


class Job(msgspec.Struct, omit_defaults=True):
    """One job as stored.

    ``request`` is the body as the client wrote it, in ``format`` (``openai`` or
    ``anthropic``), with ``model`` set to ``route``. ``attempts`` counts leases (each is one
    call, or a call that a dying worker may have made). ``token`` changes at every lease;
    a worker's writes about its attempt carry it, so a worker whose lease was taken over
    cannot overwrite the new holder's state.
    """

    id: str
    route: str
    format: ClientFormat
    request: dict[str, Any]
    state: JobState = JobState.QUEUED
    priority: Priority = Priority.BATCH
    attempts: int = 0
    token: int = 0
    created_at: float = 0.0
    updated_at: float = 0.0  # when the job entered its current state
    enqueued_at: float = 0.0  # submit or last replay: max_age_seconds counts from here
    not_before: float = 0.0
    lease_owner: str | None = None
    lease_until: float | None = None
    idempotency_key: str | None = None
    fingerprint: str = ""
    metadata: dict[str, Any] = msgspec.field(default_factory=dict)
    last_error: JobError | None = None
    result: ir.ChatResponse | None = None
    served: ServedInfo | None = None
    finished_at: float | None = None
    # Why a dead job died: max_attempts, max_age, permanent (a 4xx no retry can fix).
    dead_reason: DeadReason | None = None
    # Completion webhook: "pending" until delivered; "delivered" or "failed" after.
    webhook: Literal["none", "pending", "delivered", "failed"] = "none"

    @property
    def finished(self) -> bool:
        """Succeeded or dead."""
        return self.state in FINISHED


class NewJob(msgspec.Struct):
    """What ``submit`` stores (see ``hedgerow.jobs.api.submit``, which builds it)."""

    id: str
    route: str
    format: ClientFormat
    request: dict[str, Any]
    priority: Priority
    created_at: float
    not_before: float
    idempotency_key: str | None
    fingerprint: str
    metadata: dict[str, Any]

    def to_job(self) -> Job:
        """The job as first stored: queued, no attempt yet."""
        return Job(
            id=self.id,
            route=self.route,
            format=self.format,
            request=self.request,
            priority=self.priority,
            created_at=self.created_at,
            updated_at=self.created_at,
            enqueued_at=self.created_at,
            not_before=self.not_before,
            idempotency_key=self.idempotency_key,
            fingerprint=self.fingerprint,
            metadata=self.metadata,
        )


class Submission(msgspec.Struct):
    """The answer to a submit: the job, and whether this call created it (``False``: the
    idempotency key named a job submitted before, which is returned unchanged)."""

    job: Job
    created: bool

    @property
    def id(self) -> str:
        """The job's id."""
        return self.job.id


class Group(msgspec.Struct, frozen=True, order=True):
    """The jobs of one priority and one route: the unit of fair scheduling."""

    priority: Priority
    route: str


class ReadyGroups(msgspec.Struct):
    """``ready``: groups that may have a job to lease now (a hint; a lease may find none);
    ``next_due``: the earliest ``not_before`` of a waiting job, when there is one."""

    ready: list[Group]
    next_due: float | None


# ---------------------------------------------------------------------------------------------
# Errors


class JobStoreError(RuntimeError):
    """The store could not take a write (read-only, full, unreachable). Nothing was stored;
    the message says why in words an operator can act on."""


class IdempotencyConflict(ValueError):
    """The idempotency key names a job whose request differs from this one."""

    def __init__(self, key: str, job_id: str) -> None:
        super().__init__(
            f"idempotency key {key!r} was used for job {job_id} with a different request"
        )
        self.key = key
        self.job_id = job_id


class JobNotFound(LookupError):
    """No job has this id."""


SubmitOutcome = Submission | IdempotencyConflict


# ---------------------------------------------------------------------------------------------
# Helpers


def new_job_id(now: float) -> str:
    """A fresh job id: ``job_`` + milliseconds (hex, so ids sort by creation) + randomness."""
    return f"job_{int(now * 1000):011x}{secrets.token_hex(8)}"


def request_fingerprint(route: str, fmt: str, request: dict[str, Any]) -> str:
    """What an idempotency key is compared on: the route, format and request body."""
    payload = orjson.dumps([route, fmt, request], option=orjson.OPT_SORT_KEYS)
    return hashlib.blake2b(payload, digest_size=16).hexdigest()


# ---------------------------------------------------------------------------------------------
# The interface


class JobQueue(abc.ABC):
    """A durable job store with leases. Every method is safe to call from several workers
    and (for the backends that say so) several processes or hosts at once.

    Methods that change a running job take its ``token``: they act only while the caller
    still holds the lease (``complete`` is the exception: the first completion wins).
    """

    #: A short name for messages (``sqlite:/path``, ``redis://host/0``).
    name: str = "queue"

    def __init__(self) -> None:
        self._listeners: list[Callable[[], None]] = []
        self._batcher = _SubmitBatcher(self)

    # -- submit -------------------------------------------------------------------------------

    async def submit(self, job: NewJob) -> Submission:
        """Store one job (durably, before returning); concurrent calls share one commit."""
        return await self._batcher.submit(job)

    async def submit_many(self, jobs: Sequence[NewJob]) -> list[Submission | IdempotencyConflict]:
        """Store many jobs in one write, one outcome per job in order: its ``Submission``,
        or an ``IdempotencyConflict`` for a job whose key names a different request.
        ``JobStoreError`` (raised) means none of them was stored."""
        if not jobs:
            return []
        done = await self._submit_batch(jobs)
        if any(isinstance(s, Submission) and s.created for s in done):
            self.notify()
        return done

    @abc.abstractmethod
    async def _submit_batch(self, jobs: Sequence[NewJob]) -> list[Submission | IdempotencyConflict]:
        """Store ``jobs`` in one transaction (one result per job, in order).

        A job whose idempotency key is taken gets the existing job (``created=False``), or
        an ``IdempotencyConflict`` *in its slot* when the fingerprints differ; any other
        failure raises ``JobStoreError`` for the whole batch.
        """

    # -- reading ------------------------------------------------------------------------------

    @abc.abstractmethod
    async def get(self, job_id: str) -> Job | None:
        """The job, or ``None``."""

    @abc.abstractmethod
    async def list_jobs(
        self,
        *,
        state: JobState | None = None,
        route: str | None = None,
        since: float | None = None,
        limit: int = 100,
    ) -> list[Job]:
        """Jobs newest state change first; ``since`` keeps those whose ``updated_at`` (the
        time they entered their state) is at or after it."""

    @abc.abstractmethod
    async def counts(self) -> dict[JobState, int]:
        """How many jobs are in each state."""

    @abc.abstractmethod
    async def oldest_enqueued_at(self) -> float | None:
        """When the oldest job not finished yet (queued, or running) was enqueued (its
        ``enqueued_at``: submit or last replay), or ``None`` when every job is finished.
        ``now`` minus this is how far behind the queue is (the oldest-job-age metric)."""

    # -- the worker's side --------------------------------------------------------------------

    @abc.abstractmethod
    async def ready_groups(self, now: float) -> ReadyGroups:
        """Which (priority, route) groups may have a job to lease, and the next due time."""

    @abc.abstractmethod
    async def lease(
        self, group: Group, owner: str, limit: int, lease_seconds: float, now: float
    ) -> list[Job]:
        """Lease up to ``limit`` ready jobs of ``group`` (oldest first) to ``owner`` until
        ``now + lease_seconds``. Each lease counts one attempt and gets a new token."""

    @abc.abstractmethod
    async def renew(self, job: Job, lease_seconds: float, now: float) -> bool:
        """Extend the lease on ``job``; ``False`` when the caller no longer holds it."""

    @abc.abstractmethod
    async def complete(
        self, job: Job, result: ir.ChatResponse, served: ServedInfo, now: float, *, webhook: bool
    ) -> bool:
        """Store the result: ``True`` if this call finished the job, ``False`` if it was
        already finished (the first completion wins; the caller drops its result)."""

    @abc.abstractmethod
    async def retry(
        self, job: Job, error: JobError, not_before: float, now: float, *, refund: bool = False
    ) -> bool:
        """Put a leased job back, not to run before ``not_before``. ``refund`` un-counts the
        attempt (no call reached a provider). ``False`` if the caller lost the lease."""

    @abc.abstractmethod
    async def bury(
        self, job: Job, error: JobError, reason: DeadReason, now: float, *, webhook: bool
    ) -> bool:
        """Move a leased job to the dead-letter queue with ``error`` (kept as its last
        error) and ``reason``; ``False`` if the caller lost the lease."""

    @abc.abstractmethod
    async def requeue_expired(self, now: float, lease_seconds: float) -> int:
        """Put back every running job whose lease ran out (its worker died or hung), with a
        ``lease_expired`` error; the attempt stays counted. Returns how many."""

    @abc.abstractmethod
    async def expire(self, max_age: float, now: float, *, webhook: bool) -> int:
        """Bury every queued job enqueued more than ``max_age`` seconds before ``now``
        (reason ``max_age``; its last error is kept, or an ``expired`` error is written
        when it never failed, e.g. it waited behind an open breaker)."""

    @abc.abstractmethod
    async def expedite(self, route: str, now: float) -> int:
        """Make every queued job of ``route`` waiting out a backoff due now (the route came
        back: a success after failures). Returns how many."""

    # -- operators ----------------------------------------------------------------------------

    @abc.abstractmethod
    async def replay(
        self,
        *,
        ids: Sequence[str] | None = None,
        state: JobState = JobState.DEAD,
        route: str | None = None,
        since: float | None = None,
        now: float,
    ) -> list[str]:
        """Put finished jobs back in the queue with a fresh attempt count: the ``ids`` given,
        or every job in ``state`` (dead by default) matching ``route`` and ``since``. The
        last error is kept for reference until the next attempt. Returns the ids replayed."""

    @abc.abstractmethod
    async def webhook_done(self, job_id: str, delivered: bool) -> None:
        """Record the outcome of the completion webhook of a finished job."""

    @abc.abstractmethod
    async def pending_webhooks(self, limit: int) -> list[Job]:
        """Finished jobs whose completion webhook was not delivered yet (a worker died
        between finishing the job and delivering it)."""

    async def close(self) -> None:
        """Release connections. The queue may not be used afterwards."""
        await self._batcher.flush_all()

    # -- wake-ups -----------------------------------------------------------------------------

    def add_listener(self, callback: Callable[[], None]) -> None:
        """Call ``callback`` when a job becomes ready through this object (a submit or a
        replay in this process), so local workers need not wait for their next poll."""
        self._listeners.append(callback)

    def remove_listener(self, callback: Callable[[], None]) -> None:
        """Stop calling ``callback``."""
        if callback in self._listeners:
            self._listeners.remove(callback)

    def notify(self) -> None:
        """Tell the listeners that work may be ready."""
        for callback in list(self._listeners):
            callback()


class _SubmitBatcher:
    """Coalesces concurrent ``submit`` calls into one write.

    While one batch is being written, new submits wait and go together in the next: under
    load, one commit (one fsync) carries many jobs, and a lone submit still goes at once.
    """

    __slots__ = ("_flushing", "_pending", "_queue")

    # Enough to amortise a commit, small enough that one batch's latency stays low.
    MAX_BATCH = 512

    def __init__(self, queue: JobQueue) -> None:
        self._queue = queue
        self._pending: list[tuple[NewJob, asyncio.Future[Submission]]] = []
        self._flushing: asyncio.Task[None] | None = None

    async def submit(self, job: NewJob) -> Submission:
        future: asyncio.Future[Submission] = asyncio.get_running_loop().create_future()
        self._pending.append((job, future))
        if self._flushing is None or self._flushing.done():
            self._flushing = asyncio.create_task(self._flush())
        return await future

    async def _flush(self) -> None:
        # Let every submit made in this loop iteration join the batch.
        await asyncio.sleep(0)
        while self._pending:
            batch = self._pending[: self.MAX_BATCH]
            del self._pending[: self.MAX_BATCH]
            try:
                results = await self._queue.submit_many([job for job, _ in batch])
            except BaseException as exc:
                for _, future in batch:
                    if not future.done():
                        future.set_exception(exc)
                if not isinstance(exc, Exception):
                    raise
                continue
            for (_, future), result in zip(batch, results, strict=True):
                if future.done():
                    continue
                if isinstance(result, IdempotencyConflict):
                    future.set_exception(result)
                else:
                    future.set_result(result)

    async def flush_all(self) -> None:
        if self._flushing is not None and not self._flushing.done():
            await asyncio.shield(self._flushing)
