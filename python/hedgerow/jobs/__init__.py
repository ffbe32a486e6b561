"""Durable background jobs: queue before calling, retry with backoff, dead-letter, replay.

* ``submit(queue, body, route=..., style=..., idempotency_key=..., metadata=...)`` stores a
  chat request durably before returning (``hedgerow.jobs.api``);
* ``JobQueue`` is the store (``queue``): ``SqliteQueue`` (embedded default, WAL) and
  ``RedisQueue`` (Redis Streams, several instances sharing work); ``open_queue(config.jobs)``
  opens the configured one;
* ``Worker`` leases and runs jobs through a ``Gateway`` (``worker``);
* ``FakeClock`` drives time in tests (``clock``).

``jobs`` imports ``routing`` (never ``server``).
"""

from hedgerow.jobs.api import (
    JobRequestError,
    QueueSink,
    build_job,
    job_view,
    open_queue,
    submit,
    submit_many,
)
from hedgerow.jobs.clock import Clock, FakeClock, SystemClock
from hedgerow.jobs.queue import (
    Group,
    IdempotencyConflict,
    Job,
    JobError,
    JobNotFound,
    JobQueue,
    JobState,
    JobStoreError,
    NewJob,
    Priority,
    ReadyGroups,
    ServedInfo,
    Submission,
)
from hedgerow.jobs.worker import (
    RateLimits,
    WebhookSender,
    Worker,
    backoff_delay,
    sign_body,
    verify_signature,
)

__all__ = [
    "Clock",
    "FakeClock",
    "Group",
    "IdempotencyConflict",
    "Job",
    "JobError",
    "JobNotFound",
    "JobQueue",
    "JobRequestError",
    "JobState",
    "JobStoreError",
    "NewJob",
    "Priority",
    "QueueSink",
    "RateLimits",
    "ReadyGroups",
    "ServedInfo",
    "Submission",
    "SystemClock",
    "WebhookSender",
    "Worker",
    "backoff_delay",
    "build_job",
    "job_view",
    "open_queue",
    "sign_body",
    "submit",
    "submit_many",
    "verify_signature",
]
