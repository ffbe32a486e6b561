"""The worker: leases jobs, calls the router, and records what happened.

One ``Worker`` runs up to ``concurrency`` jobs at once. Each scheduling round (``tick``):

1. housekeeping (every ``poll_interval``): requeue jobs whose lease ran out (their worker
   died), bury jobs older than ``max_age_seconds``, resend completion webhooks a dead worker
   left undelivered;
2. the groups with ready jobs, by priority (``interactive`` before ``batch``), and within a
   priority in turn across routes (round robin, so a route with a big backlog cannot starve
   a small one);
3. for each route, **before leasing**: ``gateway.route_ready(route)``: while every deployment
   of the route is known down (breakers open), no job of it is leased, so no attempt is
   spent. A route seen down is then *probed*: one job at a time until one succeeds, and then
   everything goes at once (jobs of that route waiting out a backoff are made due:
   ``expedite``). A per-route rate limit (``rate_limits``) paces the drain.

A job's call runs with its lease renewed every third of ``lease_seconds``. Its outcome:

* an answer: stored (first completion wins), then the webhook;
* a 4xx that no retry can fix (bad request, context window): dead-letter queue at once;
* a failure while the route is down afterwards (breaker opened): back to the queue, the
  attempt refunded; the route gate holds it;
* any other failure: retried after ``uniform(0, min(backoff_max, backoff_base * 2**(n-1)))``
  seconds (full jitter), never sooner than the provider's Retry-After; dead after
  ``max_attempts`` attempts or ``max_age_seconds``.

Every wait goes through an injectable ``Clock``; ``tick`` and ``idle`` let tests drive a
worker step by step.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import logging
import math
import os
import random
import socket
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable
from typing import Any, TypeVar

import aiohttp
import orjson

from hedgerow import TokenBucket, ir
from hedgerow.config import JobsConfig
from hedgerow.formats import FormatError
from hedgerow.jobs.api import FORMATS, job_view
from hedgerow.jobs.clock import Clock, SystemClock
from hedgerow.jobs.queue import (
    DeadReason,
    Group,
    Job,
    JobError,
    JobQueue,
    JobStoreError,
    Priority,
    ServedInfo,
)
from hedgerow.routing import Gateway, GatewayError

__all__ = [
    "RateLimits",
    "WebhookSender",
    "Worker",
    "backoff_delay",
    "sign_body",
    "verify_signature",
]

log = logging.getLogger("hedgerow.jobs")

T = TypeVar("T")

# Failures no retry can fix: the request itself is wrong for the route.
PERMANENT = frozenset({ir.ErrorKind.BAD_REQUEST, ir.ErrorKind.CONTEXT_WINDOW})
# Failures that say the route (not the request) is unwell.
ROUTE_LEVEL = frozenset(
    {
        ir.ErrorKind.CONNECT,
        ir.ErrorKind.TIMEOUT,
        ir.ErrorKind.REQUEST_TIMEOUT,
        ir.ErrorKind.RATE_LIMITED,
        ir.ErrorKind.SERVER_ERROR,
        ir.ErrorKind.BAD_GATEWAY,
        ir.ErrorKind.UNAVAILABLE,
        ir.ErrorKind.GATEWAY_TIMEOUT,
        ir.ErrorKind.OVERLOADED,
        ir.ErrorKind.STREAM_ERROR,
        ir.ErrorKind.MALFORMED,
    }
)


def backoff_delay(attempt: int, base: float, cap: float, rng: random.Random) -> float:
    """Full jitter: uniform in ``[0, min(cap, base * 2**(attempt - 1))]``."""
    exponent = min(max(attempt - 1, 0), 60)  # 2**60 s is already forever
    return rng.uniform(0.0, min(cap, base * 2.0**exponent))


# ---------------------------------------------------------------------------------------------
# Webhooks


def sign_body(secret: str, body: bytes) -> str:
    """The ``x-hedgerow-signature`` header value: ``sha256=`` + HMAC-SHA256(secret, body)."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def verify_signature(secret: str, body: bytes, header: str | None) -> bool:
    """Whether ``header`` is the signature of ``body`` under ``secret`` (constant time).

    A receiver verifies the raw body bytes, before parsing them.
    """
    if not header:
        return False
    return hmac.compare_digest(sign_body(secret, body), header.strip())


class WebhookSender:
    """Delivers completion webhooks: a POST of the job (as ``GET /v1/jobs/{id}`` shows it),
    signed, retried with backoff on errors and non-2xx answers.

    Headers: ``x-hedgerow-signature: sha256=<hex>`` (HMAC-SHA256 of the body with the
    configured secret; absent without one), ``x-hedgerow-event`` (``job.succeeded`` or
    ``job.dead``), ``x-hedgerow-job-id``. Delivery is at least once: a receiver dedupes on
    the job id.
    """

    def __init__(
        self,
        url: str,
        secret: str | None,
        *,
        timeout: float = 10.0,
        max_attempts: int = 5,
        clock: Clock | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self.url = url
        self.secret = secret
        self.timeout = timeout
        self.max_attempts = max(1, max_attempts)
        self.clock = clock or SystemClock()
        self.rng = rng or random.Random()
        self._session: aiohttp.ClientSession | None = None

    def payload(self, job: Job) -> bytes:
        """The body sent for ``job``."""
        view = job_view(job)
        view["event"] = f"job.{job.state.value}"
        view["sent_at"] = self.clock.time()
        return orjson.dumps(view)

    async def deliver(self, job: Job) -> bool:
        """POST the job until a 2xx answer or ``max_attempts``; ``True`` if delivered."""
        body = self.payload(job)
        headers = {
            "content-type": "application/json",
            "user-agent": "hedgerow-jobs",
            "x-hedgerow-event": f"job.{job.state.value}",
            "x-hedgerow-job-id": job.id,
        }
        if self.secret:
            headers["x-hedgerow-signature"] = sign_body(self.secret, body)
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=self.timeout))
        for attempt in range(1, self.max_attempts + 1):
            try:
                async with self._session.post(self.url, data=body, headers=headers) as reply:
                    await reply.read()
                    if 200 <= reply.status < 300:
                        return True
                    problem = f"HTTP {reply.status}"
            except (aiohttp.ClientError, TimeoutError) as exc:
                problem = f"{type(exc).__name__}: {exc}"
            log.warning(
                "webhook for %s: attempt %d of %d failed: %s",
                job.id,
                attempt,
                self.max_attempts,
                problem,
            )
            if attempt < self.max_attempts:
                await self.clock.sleep(backoff_delay(attempt, 1.0, 30.0, self.rng))
        return False

    async def close(self) -> None:
        """Close the HTTP session."""
        if self._session is not None:
            await self._session.close()


# ---------------------------------------------------------------------------------------------
# Rate limits


class RateLimits:
    """Per-route pacing of job attempts (native token buckets), shared by the workers of one
    process. ``burst`` is a tenth of a second's worth (at least one), so the drain rate is
    the configured rate, not the rate plus a large burst."""

    def __init__(self, rates: dict[str, float]) -> None:
        self.buckets = {
            route: TokenBucket(rate, per=1.0, burst=max(1.0, rate / 10.0))
            for route, rate in rates.items()
            if rate > 0
        }

    def available(self, route: str, now: float) -> tuple[int, float]:
        """``(whole tokens available, seconds until one is)`` for ``route``."""
        bucket = self.buckets.get(route)
        if bucket is None:
            return 1 << 30, 0.0
        tokens = int(bucket.remaining(now) + 1e-9)
        return tokens, (0.0 if tokens else bucket.retry_after(1.0, now))

    def take(self, route: str, count: int, now: float) -> None:
        """Spend ``count`` tokens of ``route`` (checked with ``available`` just before)."""
        bucket = self.buckets.get(route)
        if bucket is not None and count > 0:
            bucket.acquire(float(count), now)


# ---------------------------------------------------------------------------------------------
# The worker


class _Running:
    __slots__ = ("job", "task")

    def __init__(self, job: Job, task: asyncio.Task[None]) -> None:
        self.job = job
        self.task = task


class Worker:
    """Runs jobs of ``queue`` through ``gateway`` (see the module docstring).

    Args:
        gateway: the router (its ``complete`` and ``route_ready``).
        queue: the job store.
        config: the ``jobs`` section (concurrency, lease, attempts, age, backoff, webhook,
            rate limits, poll interval).
        clock: time source (``FakeClock`` in tests).
        rng: the jitter's random source.
        name: the lease owner name (default ``host:pid:n``).
        rate_limits: shared per-route limits (default: built from ``config``).
    """

    _count = 0

    def __init__(
        self,
        gateway: Gateway,
        queue: JobQueue,
        config: JobsConfig | None = None,
        *,
        clock: Clock | None = None,
        rng: random.Random | None = None,
        name: str | None = None,
        rate_limits: RateLimits | None = None,
        webhook: WebhookSender | None = None,
    ) -> None:
        self.gateway = gateway
        self.queue = queue
        self.config = config = config or JobsConfig()
        self.clock: Clock = clock or SystemClock()
        self.rng = rng or random.Random()
        Worker._count += 1
        self.name = name or f"{socket.gethostname()}:{os.getpid()}:{Worker._count}"
        self.limits = rate_limits or RateLimits(config.rate_limits)
        if webhook is None and config.webhook_url:
            secret = config.webhook_secret.reveal() if config.webhook_secret else None
            webhook = WebhookSender(
                config.webhook_url,
                secret,
                timeout=config.webhook_timeout,
                max_attempts=config.webhook_max_attempts,
                clock=self.clock,
                rng=self.rng,
            )
        self.webhook = webhook
        self._running: dict[str, _Running] = {}
        self._per_route: Counter[str] = Counter()
        self._probing: set[str] = set()  # routes seen down: one job at a time until a success
        self._troubled: set[str] = set()  # routes with a route-level failure since a success
        self._cursor: dict[Priority, int] = {}
        self._groups: list[Group] = []
        self._next_due: float | None = None
        self._groups_at = -math.inf
        self._stale = True
        self._last_housekeeping = -math.inf
        self._last_expire = -math.inf
        self._last_webhook_sweep = -math.inf
        self._wake = asyncio.Event()
        self._background: set[asyncio.Task[Any]] = set()
        self._delivering: set[str] = set()
        self._stopping = False
        self._task: asyncio.Task[None] | None = None
        self.stats: Counter[str] = Counter()

    # -- lifecycle ----------------------------------------------------------------------------

    def start(self) -> asyncio.Task[None]:
        """Run in the background until ``stop``."""
        if self._task is None or self._task.done():
            self._stopping = False
            self._task = asyncio.create_task(self.run(), name=f"hedgerow-worker-{self.name}")
        return self._task

    async def run(self) -> None:
        """Lease and run jobs until ``stop`` is called."""
        self.queue.add_listener(self._poke)
        try:
            while not self._stopping:
                try:
                    wait = await self.tick()
                except JobStoreError as exc:
                    log.warning("worker %s: %s", self.name, exc)
                    self._stale = True
                    wait = self.config.poll_interval
                if self._stopping:
                    break
                await self._nap(wait)
        finally:
            self.queue.remove_listener(self._poke)

    async def stop(self, grace: float | None = None) -> None:
        """Stop leasing; let running calls finish for up to ``grace`` seconds (default
        ``shutdown_grace``), then interrupt the rest and put their jobs back at once."""
        self._stopping = True
        self._wake.set()
        if self._task is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        grace = self.config.shutdown_grace if grace is None else grace
        tasks = [r.task for r in self._running.values()]
        if tasks:
            _, pending = await asyncio.wait(tasks, timeout=grace)
            left = [r for r in self._running.values() if r.task in pending]
            for running in left:
                running.task.cancel()
            await asyncio.gather(*(r.task for r in left), return_exceptions=True)
            now = self.clock.time()
            for running in left:
                error = JobError(
                    "interrupted",
                    f"worker {self.name} stopped during the call",
                    attempt=running.job.attempts,
                    at=now,
                )
                with contextlib.suppress(JobStoreError):
                    await self.queue.retry(running.job, error, now, now)
        if self._background:
            await asyncio.wait(list(self._background), timeout=max(grace, 0.1))
            for task in list(self._background):
                task.cancel()
        if self.webhook is not None:
            await self.webhook.close()

    async def idle(self) -> None:
        """Wait until no job of this worker is running (and its webhooks are sent)."""
        while self._running or self._background:
            await asyncio.gather(
                *(r.task for r in list(self._running.values())),
                *list(self._background),
                return_exceptions=True,
            )

    @property
    def running(self) -> int:
        """Jobs running now."""
        return len(self._running)

    def _poke(self) -> None:
        self._stale = True
        self._wake.set()

    async def _nap(self, wait: float | None) -> None:
        """Sleep until ``wait`` passes (capped at ``poll_interval``), a local submit, or a
        freed slot."""
        timeout = (
            self.config.poll_interval if wait is None else min(wait, self.config.poll_interval)
        )
        if self._wake.is_set():
            self._wake.clear()
            return
        if timeout <= 0:
            await asyncio.sleep(0)
            return
        sleeper = asyncio.ensure_future(self.clock.sleep(timeout))
        waker = asyncio.ensure_future(self._wake.wait())
        try:
            await asyncio.wait({sleeper, waker}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            sleeper.cancel()
            waker.cancel()
            self._wake.clear()

    # -- scheduling ---------------------------------------------------------------------------

    async def tick(self) -> float | None:
        """One scheduling round: housekeeping, then lease what may run now and start it.

        Returns the seconds until something is expected to become runnable (a backoff
        ending, a breaker's open time, a rate-limit token), or ``None`` if nothing is known.
        """
        now = self.clock.time()
        await self._housekeeping(now)
        free = self.config.concurrency - len(self._running)
        if free <= 0:
            return None
        if (
            self._stale
            or now - self._groups_at >= self.config.poll_interval
            or (self._next_due is not None and self._next_due <= now)
        ):
            found = await self.queue.ready_groups(now)
            self._groups, self._next_due = found.ready, found.next_due
            self._groups_at, self._stale = now, False
        waits: list[float] = []
        if self._next_due is not None:
            waits.append(max(0.0, self._next_due - now))
        mono = self.clock.monotonic()
        by_priority: dict[Priority, list[Group]] = {}
        for group in self._groups:
            by_priority.setdefault(group.priority, []).append(group)
        leased_any = False
        for priority in sorted(by_priority):
            if free <= 0:
                break
            groups = by_priority[priority]
            start = self._cursor.get(priority, 0) % len(groups)
            self._cursor[priority] = start + 1
            groups = groups[start:] + groups[:start]
            dry: set[Group] = set()
            while free > 0:
                caps: list[tuple[Group, int]] = []
                for group in groups:
                    if group in dry:
                        continue
                    cap = self._admit(group.route, free, mono, waits)
                    if cap > 0:
                        caps.append((group, cap))
                leased_now = 0
                dried = len(dry)
                for group, quota in _round_robin(caps, free):
                    if quota <= 0:
                        continue
                    jobs = await self.queue.lease(
                        group, self.name, quota, self.config.lease_seconds, now
                    )
                    if len(jobs) < quota:
                        # The group ran dry (or another worker took its jobs): its slots
                        # go to the other groups in the next pass.
                        dry.add(group)
                        self._stale = True
                    self.limits.take(group.route, len(jobs), mono)
                    for job in jobs:
                        self._launch(job)
                    free -= len(jobs)
                    leased_now += len(jobs)
                if not leased_now and len(dry) == dried:
                    break
                leased_any = leased_any or bool(leased_now)
        if leased_any and free > 0:
            return 0.0
        return min(waits) if waits else None

    def _admit(self, route: str, free: int, mono: float, waits: list[float]) -> int:
        """How many jobs of ``route`` may start now (0: none; ``waits`` gets why until when)."""
        try:
            wait = self.gateway.route_ready(route, mono)
        except GatewayError:
            wait = 0.0  # an unknown route: its jobs fail permanently when run
        if wait > 0:
            # Every deployment is down: spend nothing; probe once it may be tried again.
            self._probing.add(route)
            if not math.isinf(wait):
                waits.append(wait)
            return 0
        cap = free
        if route in self._probing:
            if self._per_route[route] > 0:
                return 0  # the probe is out; the rest wait for its outcome
            cap = 1
        tokens, token_wait = self.limits.available(route, mono)
        if tokens <= 0:
            waits.append(token_wait)
            return 0
        return min(cap, tokens)

    def _launch(self, job: Job) -> None:
        self.stats["leased"] += 1
        self._per_route[job.route] += 1
        task = asyncio.create_task(self._run(job))
        self._running[job.id] = _Running(job, task)

        def done(_: asyncio.Task[None]) -> None:
            self._running.pop(job.id, None)
            self._per_route[job.route] -= 1
            self._wake.set()  # a slot is free

        task.add_done_callback(done)

    async def _housekeeping(self, now: float) -> None:
        interval = self.config.poll_interval
        if now - self._last_housekeeping < interval:
            return
        self._last_housekeeping = now
        if await self.queue.requeue_expired(now, self.config.lease_seconds):
            self._stale = True
        if now - self._last_expire >= 10 * interval:
            self._last_expire = now
            hook = self.webhook is not None
            if await self.queue.expire(self.config.max_age_seconds, now, webhook=hook):
                self._stale = True
        if self.webhook is not None and now - self._last_webhook_sweep >= 60.0:
            self._last_webhook_sweep = now
            patience = self.webhook.timeout * self.webhook.max_attempts + 60.0
            for job in await self.queue.pending_webhooks(100):
                finished = job.finished_at or 0.0
                if job.id not in self._delivering and finished < now - patience:
                    self._notify(job)

    # -- one job ------------------------------------------------------------------------------

    async def _run(self, job: Job) -> None:
        renewer = asyncio.create_task(self._keep_lease(job, asyncio.current_task()))
        try:
            await self._attempt(job)
        except asyncio.CancelledError:
            raise
        except JobStoreError as exc:
            # The outcome could not be written; the lease will run out and the job re-run.
            log.error("worker %s: job %s: %s", self.name, job.id, exc)
        except Exception:
            log.exception("worker %s: job %s: unexpected error", self.name, job.id)
        finally:
            renewer.cancel()

    async def _keep_lease(self, job: Job, call: asyncio.Task[Any] | None) -> None:
        """Renew the lease every third of its length; a lost lease stops the call."""
        period = self.config.lease_seconds / 3.0
        while True:
            await self.clock.sleep(period)
            try:
                held = await self.queue.renew(job, self.config.lease_seconds, self.clock.time())
            except JobStoreError as exc:
                log.warning("worker %s: renewing %s: %s", self.name, job.id, exc)
                continue
            if not held:
                log.warning("worker %s: lost the lease on %s; stopping its call", self.name, job.id)
                self.stats["lease_lost"] += 1
                if call is not None:
                    call.cancel()
                return

    async def _attempt(self, job: Job) -> None:
        config = self.config
        now = self.clock.time()
        if job.attempts > config.max_attempts:
            # Every lease of it was lost (its workers died mid-call): don't try again.
            error = job.last_error or JobError(
                "lease_expired", "the job's workers stopped during its calls", at=now
            )
            await self._bury(job, error, "max_attempts")
            return
        if now - job.enqueued_at > config.max_age_seconds:
            error = job.last_error or JobError(
                "expired", f"the job waited longer than {config.max_age_seconds:g}s", at=now
            )
            await self._bury(job, error, "max_age")
            return
        try:
            request = FORMATS[job.format].parse_request(job.request)
        except FormatError as exc:
            await self._bury(
                job,
                JobError("bad_request", exc.message, 400, attempt=job.attempts, at=now),
                "permanent",
            )
            return
        self.stats["calls"] += 1
        try:
            # A job waits for a model: no cached, template or queued stand-in as its result.
            result = await self.gateway.complete(
                request, client_format=job.format, raw=job.request, degrade=False
            )
        except GatewayError as exc:
            await self._failed(job, exc.info, called=exc.attempts > 0)
            return
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.exception("worker %s: job %s: the call raised", self.name, job.id)
            info = ir.ErrorInfo(ir.ErrorKind.SERVER_ERROR, f"internal error: {exc!r}", 500)
            await self._failed(job, info, called=True, internal=True)
            return
        served = result.served
        served_info = ServedInfo(
            route=served.route,
            tier=served.tier,
            deployment=served.deployment,
            model=served.model,
            attempts=served.attempts,
        )
        hook = self.webhook is not None
        stored = await self._persist(
            lambda: self.queue.complete(
                job, result.response, served_info, self.clock.time(), webhook=hook
            )
        )
        self.stats["succeeded" if stored else "duplicate_completion"] += 1
        route = job.route
        self._probing.discard(route)
        if route in self._troubled:
            # The route is back: jobs of it waiting out a backoff go now.
            self._troubled.discard(route)
            if await self.queue.expedite(route, self.clock.time()):
                self._stale = True
        if stored and hook:
            finished = await self.queue.get(job.id)
            if finished is not None:
                self._notify(finished)

    async def _failed(
        self, job: Job, info: ir.ErrorInfo, *, called: bool, internal: bool = False
    ) -> None:
        config = self.config
        now = self.clock.time()
        error = JobError(
            "internal" if internal else info.kind.value,
            info.message,
            info.status,
            info.retry_after,
            job.attempts,
            now,
        )
        try:
            down = self.gateway.route_ready(job.route, self.clock.monotonic())
        except GatewayError:
            down = 0.0
        if not called:
            # No call left hedgerow (breakers open, limits full): nothing was spent.
            self.stats["refused"] += 1
            if down > 0:
                self._probing.add(job.route)
            wait = max(info.retry_after or 0.0, 0.0 if math.isinf(down) else down)
            await self._persist(lambda: self.queue.retry(job, error, now + wait, now, refund=True))
            return
        self.stats["failed_attempts"] += 1
        if info.kind in PERMANENT:
            await self._bury(job, error, "permanent")
            return
        if info.kind in ROUTE_LEVEL:
            self._troubled.add(job.route)
        if down > 0:
            # The route is known down now: its gate holds the job; the attempt is not held
            # against it (max_age_seconds still bounds the wait).
            self._probing.add(job.route)
            await self._persist(lambda: self.queue.retry(job, error, now, now, refund=True))
            return
        if job.attempts >= config.max_attempts:
            await self._bury(job, error, "max_attempts")
            return
        delay = backoff_delay(job.attempts, config.backoff_base, config.backoff_max, self.rng)
        if info.retry_after is not None:
            delay = max(delay, info.retry_after)
        if now + delay > job.enqueued_at + config.max_age_seconds:
            await self._bury(job, error, "max_age")
            return
        await self._persist(lambda: self.queue.retry(job, error, now + delay, now))

    async def _bury(self, job: Job, error: JobError, reason: DeadReason) -> None:
        hook = self.webhook is not None
        buried = await self._persist(
            lambda: self.queue.bury(job, error, reason, self.clock.time(), webhook=hook)
        )
        if buried:
            self.stats["dead"] += 1
            log.warning("job %s is dead (%s): %s", job.id, reason, error.message)
            if hook:
                dead = await self.queue.get(job.id)
                if dead is not None:
                    self._notify(dead)

    async def _persist(self, write: Callable[[], Awaitable[T]]) -> T:
        """Write an outcome, retrying while the store is unreachable (a Redis restart) for up
        to one lease; after that the lease runs out and the job runs again elsewhere."""
        deadline = self.clock.time() + self.config.lease_seconds
        delay = 0.05
        while True:
            try:
                return await write()
            except JobStoreError as exc:
                if self.clock.time() + delay > deadline:
                    raise
                log.warning("worker %s: storing an outcome: %s (retrying)", self.name, exc)
                await self.clock.sleep(delay)
                delay = min(delay * 2, 1.0)

    def _notify(self, job: Job) -> None:
        sender = self.webhook
        if sender is None:
            return
        self._delivering.add(job.id)

        async def send() -> None:
            try:
                delivered = await sender.deliver(job)
                await self._persist(lambda: self.queue.webhook_done(job.id, delivered))
            finally:
                self._delivering.discard(job.id)

        task = asyncio.create_task(send())
        self._background.add(task)
        task.add_done_callback(self._background.discard)


def _round_robin(caps: Iterable[tuple[Group, int]], free: int) -> list[tuple[Group, int]]:
    """Share ``free`` slots one at a time across groups in order, each up to its cap."""
    groups: list[Group] = []
    limits: list[int] = []
    for group, cap in caps:
        groups.append(group)
        limits.append(cap)
    given = [0] * len(groups)
    while free > 0:
        gave = False
        for index, cap in enumerate(limits):
            if free <= 0:
                break
            if given[index] < cap:
                given[index] += 1
                free -= 1
                gave = True
        if not gave:
            break
    return list(zip(groups, given, strict=True))
