"""Submitting jobs: the library entry point, the router's ``queue`` degradation sink, and
opening the configured backend.

::

    queue = open_queue(config.jobs)
    submission = await submit(queue, {"model": "summarise", "messages": [...]},
                              idempotency_key="doc-1234", metadata={"doc": 1234})
    submission.id        # "job_018f..."; stored durably before submit returned

The request is validated here (it must parse in its format, name a known route when the
routes are given, and not ask for a stream): a request no provider could accept is an error
now, not a dead job later.
"""

from __future__ import annotations

import time
from collections.abc import Collection, Sequence
from typing import Any

import msgspec

from hedgerow import ir
from hedgerow.config import JobsConfig
from hedgerow.formats import FormatError
from hedgerow.formats import anthropic as anthropic_format
from hedgerow.formats import openai as openai_format
from hedgerow.jobs.clock import Clock
from hedgerow.jobs.queue import (
    ClientFormat,
    IdempotencyConflict,
    Job,
    JobQueue,
    NewJob,
    Priority,
    Submission,
    new_job_id,
    request_fingerprint,
)

__all__ = [
    "FORMATS",
    "JobRequestError",
    "QueueSink",
    "build_job",
    "job_view",
    "open_queue",
    "submit",
    "submit_many",
]

FORMATS = {"openai": openai_format, "anthropic": anthropic_format}

# A key long enough for any sensible scheme (UUIDs, hashes, "customer:doc:version").
MAX_KEY_LENGTH = 255


class JobRequestError(ValueError):
    """The job cannot be accepted as given (the client's mistake); ``param`` names the field
    and ``status`` the HTTP status to answer with (400, or 404 for an unknown route)."""

    def __init__(self, message: str, param: str | None = None, status: int = 400) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        self.status = status


def build_job(
    body: dict[str, Any],
    *,
    route: str | None = None,
    style: str = "openai",
    idempotency_key: str | None = None,
    metadata: dict[str, Any] | None = None,
    priority: str | int | Priority = Priority.BATCH,
    routes: Collection[str] | None = None,
    delay: float = 0.0,
    now: float | None = None,
) -> NewJob:
    """Validate a request body and its options into a ``NewJob`` (nothing is stored).

    ``route`` defaults to the body's ``model`` and is written into it; ``routes`` (the
    configured route names) rejects an unknown one; ``delay`` holds the job back that many
    seconds. Raises ``JobRequestError``.
    """
    if style not in FORMATS:
        raise JobRequestError(
            f"format must be one of {', '.join(FORMATS)}, not {style!r}", param="format"
        )
    fmt: ClientFormat = "openai" if style == "openai" else "anthropic"
    if not isinstance(body, dict):
        raise JobRequestError("request must be a JSON object (a chat request body)", "request")
    name = route if route is not None else body.get("model")
    if not isinstance(name, str) or not name:
        raise JobRequestError(
            "a job needs a route: give `route`, or `model` in the request", param="route"
        )
    if routes is not None and name not in routes:
        known = ", ".join(sorted(routes))
        raise JobRequestError(
            f"The route `{name}` does not exist: hedgerow routes are {known}",
            param="route",
            status=404,
        )
    if body.get("stream") is True:
        raise JobRequestError(
            "stream: a job's answer is stored, not streamed; remove `stream` from the request",
            param="request.stream",
        )
    request = {**body, "model": name}
    try:
        FORMATS[fmt].parse_request(request)
    except FormatError as exc:
        param = f"request.{exc.param}" if exc.param else "request"
        raise JobRequestError(exc.message, param=param) from None
    if idempotency_key is not None:
        if not isinstance(idempotency_key, str) or not idempotency_key:
            raise JobRequestError("idempotency_key must be a non-empty string", "idempotency_key")
        if len(idempotency_key) > MAX_KEY_LENGTH:
            raise JobRequestError(
                f"idempotency_key must be at most {MAX_KEY_LENGTH} characters", "idempotency_key"
            )
    if metadata is not None and not isinstance(metadata, dict):
        raise JobRequestError("metadata must be a JSON object", param="metadata")
    try:
        level = Priority.parse(priority)
    except ValueError as exc:
        raise JobRequestError(str(exc), param="priority") from None
    if delay < 0:
        raise JobRequestError("delay must not be negative", param="delay")
    now = time.time() if now is None else now
    return NewJob(
        id=new_job_id(now),
        route=name,
        format=fmt,
        request=request,
        priority=level,
        created_at=now,
        not_before=now + delay,
        idempotency_key=idempotency_key,
        fingerprint=request_fingerprint(name, fmt, request),
        metadata=dict(metadata or {}),
    )


async def submit(
    queue: JobQueue,
    body: dict[str, Any],
    *,
    route: str | None = None,
    style: str = "openai",
    idempotency_key: str | None = None,
    metadata: dict[str, Any] | None = None,
    priority: str | int | Priority = Priority.BATCH,
    routes: Collection[str] | None = None,
    delay: float = 0.0,
    clock: Clock | None = None,
) -> Submission:
    """Store a chat request as a job, durably, before returning; no provider is called.

    ``body`` is an OpenAI (``style="openai"``) or Anthropic (``"anthropic"``) request body.
    A second submit with the same ``idempotency_key`` returns the first job
    (``created=False``) or raises ``IdempotencyConflict`` if its request differs. Raises
    ``JobRequestError`` for a request that cannot be a job and ``JobStoreError`` when the
    store cannot take it (nothing was stored).
    """
    job = build_job(
        body,
        route=route,
        style=style,
        idempotency_key=idempotency_key,
        metadata=metadata,
        priority=priority,
        routes=routes,
        delay=delay,
        now=None if clock is None else clock.time(),
    )
    return await queue.submit(job)


async def submit_many(
    queue: JobQueue, jobs: Sequence[NewJob]
) -> list[Submission | IdempotencyConflict]:
    """Store jobs built with ``build_job`` in one write (see ``JobQueue.submit_many``)."""
    return await queue.submit_many(jobs)


class QueueSink:
    """The router's ``queue`` degradation mode, backed by a job queue.

    ``Gateway(config, job_sink=QueueSink(queue))`` (or ``gateway.set_job_sink``): when
    every tier of a route with ``minimal: [{kind: queue}]`` fails, the request is stored as
    an ``interactive`` job and the client gets 202 with its id.

    A worker's own call never reaches it: workers call the router with ``degrade=False``.
    """

    def __init__(self, queue: JobQueue, *, clock: Clock | None = None) -> None:
        self.queue = queue
        self.clock = clock

    async def submit_request(
        self, request: ir.ChatRequest, *, route: str, client_format: str | None, raw: Any
    ) -> str:
        """Store ``request`` as an interactive job; return its id."""
        style = client_format if client_format in FORMATS else "openai"
        if isinstance(raw, dict):
            body: dict[str, Any] = {k: v for k, v in raw.items() if k != "stream"}
        else:
            body = FORMATS[style].render_request(request, route)
            body.pop("stream", None)
        body.pop("stream_options", None)
        submission = await submit(
            self.queue,
            body,
            route=route,
            style=style,
            priority=Priority.INTERACTIVE,
            metadata={"source": "degraded"},
            clock=self.clock,
        )
        return submission.id

    async def submit_body(
        self,
        body: dict[str, Any],
        *,
        route: str | None,
        style: str,
        idempotency_key: str | None,
        metadata: dict[str, Any] | None,
        priority: str,
    ) -> str:
        """``Gateway.submit``: store ``body`` as a job (see ``submit``); return its id."""
        submission = await submit(
            self.queue,
            body,
            route=route,
            style=style,
            idempotency_key=idempotency_key,
            metadata=metadata,
            priority=priority,
            clock=self.clock,
        )
        return submission.id


def open_queue(config: JobsConfig) -> JobQueue:
    """The backend ``config`` names (connections open on first use)."""
    if config.backend == "redis":
        from hedgerow.jobs.redis import RedisQueue

        return RedisQueue(config.redis_url, prefix=config.redis_prefix)
    from hedgerow.jobs.sqlite import SqliteQueue

    return SqliteQueue(config.path, synchronous=config.sqlite_synchronous)


def job_view(job: Job, *, style: str | None = None, request: bool = False) -> dict[str, Any]:
    """A job as the API shows it (``GET /v1/jobs/{id}``, the webhook, ``hedgerow jobs show``).

    The result is rendered in ``style`` (default: the format the job was submitted in), as
    that API's SDK would have received it; ``request=True`` includes the stored request.
    """
    fmt = style if style in FORMATS else job.format
    out: dict[str, Any] = {
        "id": job.id,
        "object": "job",
        "state": job.state.value,
        "route": job.route,
        "format": job.format,
        "priority": job.priority.label,
        "attempts": job.attempts,
        "created_at": job.created_at,
        "updated_at": job.updated_at,
        "idempotency_key": job.idempotency_key,
        "metadata": job.metadata,
        "last_error": None,
        "result": None,
    }
    if job.state.value == "queued":
        out["not_before"] = job.not_before
    if job.state.value == "running":
        out["lease_owner"] = job.lease_owner
        out["lease_until"] = job.lease_until
    if job.last_error is not None:
        out["last_error"] = msgspec.to_builtins(job.last_error)
    if job.finished_at is not None:
        out["finished_at"] = job.finished_at
    if job.dead_reason is not None:
        out["dead_reason"] = job.dead_reason
    if job.served is not None:
        out["served"] = msgspec.to_builtins(job.served)
    if job.result is not None:
        out["result"] = FORMATS[fmt].render_response(job.result)
    if job.webhook != "none":
        out["webhook"] = job.webhook
    if request:
        out["request"] = job.request
    return out
