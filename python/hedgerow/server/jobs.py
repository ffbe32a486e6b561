"""The jobs endpoints, and the in-process workers of ``hedgerow serve``.

=====================  ==================================================================
``POST /v1/jobs``      ``{"request": {...chat body...}, "format": "openai"|"anthropic",
                       "route"?, "idempotency_key"?, "metadata"?, "priority"?,
                       "delay"?}`` (an ``Idempotency-Key`` header works too) -> 202 with
                       the job, stored durably before the answer; 200 with the existing
                       job when the idempotency key was used before for the same request
``GET /v1/jobs/{id}``  the job: state, attempts, last error, and the result in the
                       job's format (``?format=`` renders it in the other)
``GET /v1/jobs``       ``?state=&route=&since=&limit=`` newest first, with ``counts``
=====================  ==================================================================

Errors are OpenAI-style ``{"error": {...}}`` bodies: 400 for a bad request, 404 for an
unknown route or job, 409 for an idempotency key reused with another request, 503 when the
store cannot take the job (read-only, full, unreachable: the message says which).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import orjson
from aiohttp import web

from hedgerow import ir
from hedgerow.config import JobsConfig
from hedgerow.formats import openai as openai_format
from hedgerow.jobs import (
    IdempotencyConflict,
    JobQueue,
    JobRequestError,
    JobState,
    JobStoreError,
    Worker,
    job_view,
    submit,
)
from hedgerow.jobs.clock import Clock
from hedgerow.jobs.worker import RateLimits
from hedgerow.routing import Gateway

__all__ = ["JOBS_QUEUE_KEY", "add_job_routes", "start_workers"]

JOBS_QUEUE_KEY: web.AppKey[JobQueue] = web.AppKey("jobs_queue", JobQueue)
MAX_LIST = 1000


def _json(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(
        body=orjson.dumps(data), status=status, content_type="application/json", headers=headers
    )


def _error(
    message: str, status: int, *, param: str | None = None, kind: ir.ErrorKind | None = None
) -> web.Response:
    if kind is None:
        kind = ir.ErrorKind.UNAVAILABLE if status >= 500 else ir.ErrorKind.BAD_REQUEST
    info = ir.ErrorInfo(kind, message, status=status, param=param)
    body = openai_format.render_error(info)
    return _json(body, status=status)


def add_job_routes(
    app: web.Application,
    queue: JobQueue,
    *,
    routes: Callable[[], list[str]] | list[str] | None = None,
    clock: Clock | None = None,
    close_queue: bool = True,
) -> None:
    """Mount ``/v1/jobs`` on ``app`` over ``queue``.

    ``routes`` (the configured route names, or a function returning them) makes a submit
    to an unknown route a 404 instead of a dead job; ``close_queue`` closes the queue when
    the app shuts down.
    """
    app[JOBS_QUEUE_KEY] = queue

    def known() -> list[str] | None:
        return routes() if callable(routes) else routes

    async def create(request: web.Request) -> web.Response:
        try:
            body = orjson.loads(await request.read())
        except orjson.JSONDecodeError as exc:
            return _error(f"Request body is not valid JSON: {exc}", 400)
        if not isinstance(body, dict):
            return _error("Request body must be a JSON object", 400)
        unknown = sorted(
            set(body)
            - {"request", "format", "route", "idempotency_key", "metadata", "priority", "delay"}
        )
        if unknown:
            return _error(f"Unknown field `{unknown[0]}`", 400, param=unknown[0])
        key = body.get("idempotency_key", request.headers.get("Idempotency-Key"))
        delay = body.get("delay", 0.0)
        if not isinstance(delay, int | float) or isinstance(delay, bool):
            return _error("delay must be a number of seconds", 400, param="delay")
        try:
            submission = await submit(
                queue,
                body.get("request"),  # type: ignore[arg-type]  # checked by submit
                route=body.get("route"),
                style=body.get("format", "openai"),
                idempotency_key=key,
                metadata=body.get("metadata"),
                priority=body.get("priority", "batch"),
                routes=known(),
                delay=float(delay),
                clock=clock,
            )
        except JobRequestError as exc:
            return _error(exc.message, exc.status, param=exc.param)
        except IdempotencyConflict as exc:
            return _error(str(exc), 409, param="idempotency_key", kind=ir.ErrorKind.CONFLICT)
        except JobStoreError as exc:
            return _error(str(exc), 503)
        job = submission.job
        headers = {"location": f"/v1/jobs/{job.id}"}
        if not submission.created:
            headers["x-hedgerow-idempotent-replay"] = "true"
        return _json(job_view(job), status=202 if submission.created else 200, headers=headers)

    async def show(request: web.Request) -> web.Response:
        job_id = request.match_info["job_id"]
        try:
            job = await queue.get(job_id)
        except JobStoreError as exc:
            return _error(str(exc), 503)
        if job is None:
            return _error(f"No job `{job_id}`", 404, param="id")
        style = request.query.get("format")
        if style is not None and style not in ("openai", "anthropic"):
            return _error("format must be openai or anthropic", 400, param="format")
        return _json(job_view(job, style=style))

    async def listing(request: web.Request) -> web.Response:
        query = request.query
        state = None
        if "state" in query:
            try:
                state = JobState(query["state"])
            except ValueError:
                states = ", ".join(s.value for s in JobState)
                return _error(f"state must be one of {states}", 400, param="state")
        try:
            limit = int(query.get("limit", "100"))
            since = float(query["since"]) if "since" in query else None
        except ValueError:
            return _error("limit must be an integer and since a number (epoch seconds)", 400)
        if not 1 <= limit <= MAX_LIST:
            return _error(f"limit must be between 1 and {MAX_LIST}", 400, param="limit")
        try:
            jobs = await queue.list_jobs(
                state=state, route=query.get("route"), since=since, limit=limit + 1
            )
            counts = await queue.counts()
        except JobStoreError as exc:
            return _error(str(exc), 503)
        return _json(
            {
                "object": "list",
                "data": [job_view(job) for job in jobs[:limit]],
                "has_more": len(jobs) > limit,
                "counts": {s.value: n for s, n in counts.items()},
            }
        )

    app.router.add_post("/v1/jobs", create)
    app.router.add_get("/v1/jobs", listing)
    app.router.add_get("/v1/jobs/{job_id}", show)

    if close_queue:

        async def close(_: web.Application) -> None:
            await queue.close()

        app.on_cleanup.append(close)


def start_workers(
    gateway: Gateway,
    queue: JobQueue,
    config: JobsConfig,
    *,
    count: int | None = None,
    clock: Clock | None = None,
) -> Callable[[web.Application], AsyncIterator[None]]:
    """A cleanup context running ``count`` (default ``config.workers``) workers for the
    life of the app: ``app.cleanup_ctx.append(start_workers(gateway, queue, config.jobs))``.

    On shutdown they stop leasing and let running calls finish for ``shutdown_grace``.
    """

    async def context(_: web.Application) -> AsyncIterator[None]:
        n = config.workers if count is None else count
        limits = RateLimits(config.rate_limits)  # shared: the rate is per process
        workers = [
            Worker(gateway, queue, config, clock=clock, rate_limits=limits) for _ in range(n)
        ]
        for worker in workers:
            worker.start()
        try:
            yield
        finally:
            for worker in workers:
                await worker.stop()

    return context
