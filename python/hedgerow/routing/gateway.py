"""``Gateway``: the router the library and the server share.

A request names a route. The route's tiers are walked in order, each tier's deployments
ordered by the route's balancing policy and filtered by their health (breaker, a 429's
pause, rate limits, context window). Nothing is committed to the client before the first
content, so every failure before it (an error status, a timeout, an in-stream error on a
200) moves on to the next candidate invisibly. A late first content starts a hedge; the
first to produce content wins and the loser's connection is closed. When every candidate
failed, budgeted retries walk the plan again; when those are spent, the route's minimal
answer (cache, template, rule, queue, skip) answers instead of an error.
"""

from __future__ import annotations

import asyncio
import logging
import math
import os
import random
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Coroutine
from typing import Any, Literal

import msgspec

from hedgerow import ir, monotonic
from hedgerow.config import DEFAULT_TIMEOUTS, Config, HedgeConfig, load_config
from hedgerow.formats import anthropic as anthropic_format
from hedgerow.formats import openai as openai_format
from hedgerow.providers import Adapter, ClientPool, UpstreamError
from hedgerow.routing.attempt import Chunk, StreamAttempt, complete_once, open_stream
from hedgerow.routing.degrade import JobSink, Minimal, ResponseCache, request_key, response_events
from hedgerow.routing.deployment import Candidate, Deployment, RoutePlan
from hedgerow.routing.events import AttemptHook, Event, EventBus
from hedgerow.routing.health import Health, outcome_of
from hedgerow.routing.shared import SharedHealth, open_region
from hedgerow.tokens import estimate_request_tokens

__all__ = ["ChatResult", "Gateway", "GatewayError", "Served", "StreamReply"]

log = logging.getLogger("hedgerow.routing")

ClientFormat = Literal["openai", "anthropic"]
_CLIENT_FORMATS = {"openai": openai_format, "anthropic": anthropic_format}
Clock = Callable[[], float]


class Served(msgspec.Struct, frozen=True):
    """What answered a request: route, tier (0 = primary), deployment, attempts made.

    ``minimal`` names the minimal answer (``cache``, ``template``, ``rule``) when no model
    answered; ``hedged`` says a hedge was started for this request.
    """

    route: str
    tier: int
    deployment: str
    model: str
    attempts: int
    passthrough: bool = False
    minimal: str | None = None
    hedged: bool = False

    def headers(self) -> dict[str, str]:
        """The ``x-hedgerow-*`` response headers that tell the client what served it."""
        return {
            "x-hedgerow-route": self.route,
            "x-hedgerow-tier": "minimal" if self.minimal else str(self.tier),
            "x-hedgerow-deployment": self.deployment,
            "x-hedgerow-attempts": str(self.attempts),
        }


class GatewayError(Exception):
    """No candidate could answer (or the request itself is wrong).

    ``attempts`` counts upstream calls made. When hedgerow already tried more than one
    candidate, a client should not stack its own retries on top (``should_retry`` is False).
    """

    def __init__(self, info: ir.ErrorInfo, attempts: int = 0, route: str | None = None) -> None:
        super().__init__(info.message)
        self.info = info
        self.attempts = attempts
        self.route = route

    @property
    def should_retry(self) -> bool:
        """Whether a client retry could help: not after hedgerow's own failover, nor a 4xx."""
        return self.attempts <= 1 and self.info.kind is not ir.ErrorKind.BAD_REQUEST


class ChatResult:
    """A whole response and what served it.

    ``raw`` holds the upstream's own bytes when they can go to the client unchanged
    (the client's format is the provider's).
    """

    __slots__ = ("raw", "response", "served")

    def __init__(self, served: Served, response: ir.ChatResponse, raw: bytes | None) -> None:
        self.served = served
        self.response = response
        self.raw = raw

    @property
    def text(self) -> str:
        """The response's text blocks joined."""
        return "".join(p.text for p in self.response.content if isinstance(p, ir.TextPart))

    def body(self, style: ClientFormat = "openai") -> dict[str, Any]:
        """The response as a body of ``style`` (what that API's SDK would receive)."""
        rendered: dict[str, Any] = _CLIENT_FORMATS[style].render_response(self.response)
        return rendered


class StreamReply:
    """A committed stream: the held-back chunks up to the first content, then the rest.

    ``on_error`` hears a failure after the commit point (for health accounting);
    ``on_close`` runs once when the stream ends however it ends.
    """

    __slots__ = (
        "_attempt",
        "_closed",
        "_held",
        "_on_close",
        "_on_error",
        "_rest",
        "_sink",
        "served",
    )

    def __init__(
        self,
        served: Served,
        attempt: StreamAttempt | None,
        held: list[Chunk],
        rest: AsyncIterator[Chunk] | None = None,
        *,
        on_error: Callable[[ir.ErrorInfo], None] | None = None,
        on_close: Callable[[], None] | None = None,
        sink: Callable[[ir.ChatResponse], None] | None = None,
    ) -> None:
        self.served = served
        self._attempt = attempt
        self._held = held
        self._rest = rest
        self._on_error = on_error
        self._on_close = on_close
        self._sink = sink
        self._closed = False

    async def chunks(self) -> AsyncIterator[Chunk]:
        """Every chunk of the stream; closing early drops the upstream connection."""
        accumulator = ir.StreamAccumulator() if self._sink is not None else None
        try:
            for chunk in self._held:
                if accumulator is not None:
                    for event in chunk[1]:
                        accumulator.feed(event)
                yield chunk
            self._held = []
            if self._rest is not None:
                async for chunk in self._rest:
                    events = chunk[1]
                    if accumulator is not None:
                        for event in events:
                            accumulator.feed(event)
                    failed = events and isinstance(events[-1], ir.StreamError)
                    if failed and self._on_error is not None:
                        self._on_error(events[-1].error)  # type: ignore[union-attr]
                    yield chunk
            if accumulator is not None and accumulator.finished and accumulator.error is None:
                assert self._sink is not None
                self._sink(accumulator.result())
        finally:
            self.close()

    def close(self) -> None:
        """Stop the upstream call (the client went away, or the caller is done)."""
        if self._closed:
            return
        self._closed = True
        if self._attempt is not None:
            self._attempt.close()
        if self._on_close is not None:
            self._on_close()


class _Request:
    """The state of one request across its attempts."""

    __slots__ = ("attempts", "deadline", "hedged", "last", "need_context", "tokens")

    def __init__(self, deadline: float | None, tokens: int) -> None:
        self.deadline = deadline
        self.tokens = tokens
        self.attempts = 0
        self.hedged = False
        self.last: ir.ErrorInfo | None = None
        self.need_context = False


class Gateway:
    """The router over a config: ``await chat(...)``, ``async for ... in stream(...)``.

    ``clock`` (monotonic seconds) drives every health decision: breakers, windows, budgets
    and rate limits; tests and simulations pass their own. Use as an async context manager
    (or call ``aclose``) so pooled connections close.
    """

    def __init__(
        self,
        config: Config,
        *,
        pool: ClientPool | None = None,
        clock: Clock | None = None,
        job_sink: JobSink | None = None,
        shared: SharedHealth | None = None,
    ) -> None:
        self.config = config
        self.pool = pool or ClientPool()
        self.clock: Clock = clock or monotonic
        self.events = EventBus()
        if shared is None:
            # The supervisor of `serve --workers N` names a host-wide region; `shared.redis_url`
            # shares with other instances.
            remote = None
            if config.shared.redis_url:
                from hedgerow.routing.remote import RemoteHealth  # redis-py only when used

                remote = RemoteHealth(config.shared, self.clock)
                remote.on_change = self._shared_changed
            shared = SharedHealth(open_region(), remote)
        self.shared = shared
        self.adapters = {name: Adapter(name, p) for name, p in config.providers.items()}
        self.deployments: dict[str, Deployment] = {}
        self.routes: dict[str, RoutePlan] = {}
        self._caches: list[ResponseCache] = []
        self._job_sink: JobSink | None = job_sink
        base = DEFAULT_TIMEOUTS.merged(config.timeouts)
        for route_name, route in config.routes.items():

            def candidate(target: Any, tier: int, route: Any = route) -> Candidate:
                adapter = self.adapters[target.provider]
                # Precedence: built-in < global < provider < route < target.
                timeouts = (
                    base.merged(adapter.config.timeouts)
                    .merged(route.timeouts)
                    .merged(target.timeouts)
                )
                deployment = self.deployments.get(target.target)
                if deployment is None:
                    breaker = adapter.config.breaker or config.breaker
                    health = Health(
                        breaker, rpm=target.rpm, tpm=target.tpm, key=target.target, shared=shared
                    )
                    deployment = Deployment(adapter, target.model, health)
                    self.deployments[target.target] = deployment
                return Candidate(deployment, tier, target.weight, timeouts, target.context_window)

            tiers = [[candidate(t, i) for t in tier] for i, tier in enumerate(route.tier_targets())]
            context = [candidate(t, len(tiers)) for t in route.context_targets()]
            cache = None
            if any(step.kind == "cache" for step in route.minimal):
                cache = ResponseCache(route.cache_entries)
                self._caches.append(cache)
            minimal = Minimal(route_name, route.minimal, cache, job_sink) if route.minimal else None
            self.routes[route_name] = RoutePlan(route_name, route, tiers, context, minimal, cache)
        self._needs_tokens = {
            name: any(
                c.context_window or c.deployment.health.tpm
                for tier in [*plan.tiers, plan.context]
                for c in tier
            )
            for name, plan in self.routes.items()
        }

    @classmethod
    def from_file(cls, path: str | os.PathLike[str], **kwargs: Any) -> Gateway:
        """A gateway over the config file at ``path`` (YAML or TOML)."""
        return cls(load_config(path), **kwargs)

    async def __aenter__(self) -> Gateway:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the upstream connection pool, any on-disk cache and the link to Redis."""
        await self.pool.close()
        if self.shared.remote is not None:
            await self.shared.remote.aclose()
        for cache in self._caches:
            cache.close()

    def _shared_changed(self, available: bool, reason: str) -> None:
        """Redis (the state shared with other instances) went away or came back."""
        self.events.emit(
            "shared", None, state="shared" if available else "local", reason=reason or None
        )

    def shared_status(self) -> dict[str, Any]:
        """What this process shares and whether it can right now (for health endpoints)."""
        remote = self.shared.remote
        return {
            "workers_region": self.shared.region.path if self.shared.region is not None else None,
            "redis": None if remote is None else ("shared" if remote.available else "local"),
        }

    def subscribe(self, callback: Callable[[Event], None], *, attempts: bool = True) -> None:
        """Hear every router event (failover, hedge, retry, breaker, degraded, ...); with
        ``attempts=False`` all but the ``attempt`` events (see ``subscribe_attempts``)."""
        self.events.subscribe(callback, attempts=attempts)

    def subscribe_attempts(self, hook: AttemptHook) -> None:
        """Hear every upstream attempt as its fields, without an event built for it:
        ``hook(route, deployment, outcome, error, status, latency)``."""
        self.events.subscribe_attempts(hook)

    def set_job_sink(self, sink: JobSink) -> None:
        """Where background jobs go: ``submit`` and routes with a ``queue`` minimal answer."""
        self._job_sink = sink
        for plan in self.routes.values():
            if plan.minimal is not None:
                plan.minimal.sink = sink

    async def submit(
        self,
        body: dict[str, Any],
        *,
        route: str | None = None,
        style: ClientFormat = "openai",
        idempotency_key: str | None = None,
        metadata: dict[str, Any] | None = None,
        priority: str = "batch",
    ) -> str:
        """Store a request as a background job, durably, before returning its id.

        No provider is called here: workers (``hedgerow worker``, or ``jobs.workers`` inside
        ``hedgerow serve``) run it through this router and keep the result with the job. The
        queue is the config's ``jobs`` backend (SQLite by default), opened on first use.
        """
        if self._job_sink is None:
            # Opened lazily: the jobs package builds on the router, not the other way round.
            from hedgerow.jobs.api import QueueSink, open_queue

            self.set_job_sink(QueueSink(open_queue(self.config.jobs)))
        assert self._job_sink is not None
        if route is not None:
            self.plan(route)
        return await self._job_sink.submit_body(
            body,
            route=route,
            style=style,
            idempotency_key=idempotency_key,
            metadata=metadata,
            priority=priority,
        )

    # -----------------------------------------------------------------------------------------
    # Health, as the workers and the operators see it

    def plan(self, route: str) -> RoutePlan:
        """The plan of ``route``; ``GatewayError`` (404) when no such route is configured."""
        plan = self.routes.get(route)
        if plan is None:
            known = ", ".join(sorted(self.routes))
            raise GatewayError(
                ir.ErrorInfo(
                    ir.ErrorKind.BAD_REQUEST,
                    f"The model `{route}` does not exist: hedgerow routes are {known}",
                    status=404,
                    param="model",
                ),
                route=route,
            )
        return plan

    def route_ready(self, route: str, now: float | None = None) -> float:
        """Seconds until some deployment of ``route`` may be attempted (0.0: one may now).

        Background workers ask this before leasing a job, so that no attempt is spent while
        every deployment of the route is known to be down.
        """
        plan = self.plan(route)
        now = self.clock() if now is None else now
        return min(d.health.wait(now) for d in plan.deployments())

    # -----------------------------------------------------------------------------------------
    # Operator controls (the feature flags an on-call person flips during an incident)

    def _deployments_named(self, name: str) -> list[Deployment]:
        """The deployment ``provider/model``, or every deployment of provider ``name``."""
        if name in self.deployments:
            return [self.deployments[name]]
        found = [d for d in self.deployments.values() if d.adapter.name == name]
        if not found:
            raise KeyError(f"no deployment or provider named {name!r}")
        return found

    def set_enabled(self, name: str, enabled: bool) -> list[str]:
        """Take a deployment (``provider/model``) or a whole provider out of rotation, or
        back; returns the deployments changed. Out of rotation is a forced-open breaker."""
        now = self.clock()
        changed = []
        for deployment in self._deployments_named(name):
            if enabled:
                deployment.health.breaker.release(now)
            else:
                deployment.health.breaker.force_open(now)
            changed.append(deployment.key)
        self.events.emit("operator", None, name, action="enable" if enabled else "disable")
        return changed

    def pin_route(self, route: str, tier: int | None) -> None:
        """Serve ``route`` from one tier only (``None``: every tier again)."""
        plan = self.plan(route)
        if tier is not None and not 0 <= tier < len(plan.tiers):
            raise ValueError(f"route {route!r} has tiers 0..{len(plan.tiers) - 1}, not {tier}")
        plan.pinned_tier = tier
        self.events.emit("operator", route, action="pin", tier=tier)

    def force_minimal(self, route: str, on: bool) -> None:
        """Send ``route`` straight to its minimal answer (or back to its tiers)."""
        plan = self.plan(route)
        if on and plan.minimal is None:
            raise ValueError(f"route {route!r} has no minimal answer configured")
        plan.force_minimal = on
        self.events.emit("operator", route, action="minimal", on=on)

    def operator_state(self) -> dict[str, Any]:
        """What operators changed: disabled deployments, pinned and degraded routes."""
        now = self.clock()
        return {
            "disabled": sorted(
                key
                for key, d in self.deployments.items()
                if d.health.breaker.snapshot(now)["forced"]
                and d.health.breaker.state_at(now) == "open"
            ),
            "pinned": {
                n: p.pinned_tier for n, p in self.routes.items() if p.pinned_tier is not None
            },
            "minimal": sorted(n for n, p in self.routes.items() if p.force_minimal),
        }

    # -----------------------------------------------------------------------------------------
    # The router

    async def complete(
        self,
        request: ir.ChatRequest,
        *,
        client_format: str | None = None,
        raw: dict[str, Any] | None = None,
        degrade: bool = True,
    ) -> ChatResult:
        """Answer a non-streamed request.

        ``degrade=False`` raises the failure instead of giving the route's minimal answer
        (background workers would rather retry than store a template as the result).
        """
        result = await self._execute(request, client_format, raw, stream=False, degrade=degrade)
        assert isinstance(result, ChatResult)
        return result

    async def open_stream(
        self,
        request: ir.ChatRequest,
        *,
        client_format: str | None = None,
        raw: dict[str, Any] | None = None,
        degrade: bool = True,
    ) -> StreamReply:
        """Open a streamed answer, committed at its first content (``degrade`` as in
        ``complete``)."""
        result = await self._execute(request, client_format, raw, stream=True, degrade=degrade)
        assert isinstance(result, StreamReply)
        return result

    async def _execute(
        self,
        request: ir.ChatRequest,
        client_format: str | None,
        raw: dict[str, Any] | None,
        stream: bool,
        degrade: bool = True,
    ) -> ChatResult | StreamReply:
        plan = self.plan(request.model)
        loop = asyncio.get_running_loop()
        if self.shared.remote is not None:
            self.shared.remote.start()
        now = self.clock()
        plan.retry_budget.request(now)
        if plan.hedge_budget is not None:
            plan.hedge_budget.request(now)
        tokens = estimate_request_tokens(request) if self._needs_tokens[plan.name] else 0
        deadline = None if plan.deadline is None else loop.time() + plan.deadline
        state = _Request(deadline, tokens)
        for pass_number in range(plan.retry.max_retries + 1):
            if pass_number and not await self._before_retry(plan, state, pass_number, loop):
                break
            won = await self._race(plan, state, request, client_format, raw, stream)
            if won is not None:
                return won
        self.events.emit(
            "retries_exhausted",
            plan.name,
            attempts=state.attempts,
            error=state.last.kind.value if state.last else None,
        )
        if not degrade:
            raise GatewayError(self._final_error(plan, state), state.attempts, plan.name)
        return await self._degrade(plan, state, request, client_format, raw, stream)

    async def _before_retry(
        self, plan: RoutePlan, state: _Request, pass_number: int, loop: asyncio.AbstractEventLoop
    ) -> bool:
        """Wait before walking the plan again; False when a retry cannot or should not run."""
        retry = plan.retry
        now = self.clock()
        # Full jitter, but never sooner than a Retry-After or the first breaker to reopen.
        delay = random.uniform(
            0.0, min(retry.backoff_max, retry.backoff_base * 2 ** (pass_number - 1))
        )
        if state.last is not None and state.last.retry_after:
            delay = max(delay, state.last.retry_after)
        delay = max(delay, self.route_ready(plan.name, now))
        if delay > retry.backoff_max:
            return False
        if state.deadline is not None and loop.time() + delay >= state.deadline:
            return False
        if not plan.retry_budget.try_spend(now):
            self.events.emit("retry_budget_exhausted", plan.name)
            return False
        self.events.emit("retry", plan.name, delay=delay, pass_number=pass_number)
        await asyncio.sleep(delay)
        return True

    async def _candidates(
        self, plan: RoutePlan, state: _Request
    ) -> AsyncGenerator[Candidate, None]:
        """Admitted candidates in the order to try them, chosen lazily (health changes)."""
        if plan.force_minimal:
            return
        tiers = plan.tiers if not plan.context else [*plan.tiers, plan.context]
        last_tier = len(plan.tiers)
        for index, tier in enumerate(tiers):
            if plan.pinned_tier is not None and index != plan.pinned_tier:
                continue
            if index == last_tier and not state.need_context:
                return  # the larger-context targets serve only requests too long for the rest
            pending = self._order(plan, tier)
            for round_number in range(2):
                limited: list[tuple[float, Candidate]] = []
                for candidate in pending:
                    window = candidate.context_window
                    if window is not None and state.tokens > window:
                        state.need_context = True
                        continue
                    health = candidate.deployment.health
                    if health.shared is not None and health.shared.remote is not None:
                        wait = await health.remote_admit(self.clock(), state.tokens)
                    else:
                        wait = health.admit(self.clock(), state.tokens)
                    if wait == 0.0:
                        yield candidate
                    elif not math.isinf(wait):
                        limited.append((wait, candidate))
                if not limited or plan.on_limit != "wait" or round_number:
                    break
                shortest = min(w for w, _ in limited)
                if shortest > plan.limit_wait:
                    break
                # Every deployment of the tier is at its rate limit: wait for the first token.
                await asyncio.sleep(shortest)
                pending = [c for _, c in sorted(limited, key=lambda item: item[0])]

    def _order(self, plan: RoutePlan, tier: list[Candidate]) -> list[Candidate]:
        """The tier's candidates in preference order under the route's balancing policy."""
        if len(tier) == 1:
            return tier
        if plan.balance == "least_in_flight":
            return sorted(
                tier, key=lambda c: (c.deployment.health.in_flight / c.weight, random.random())
            )
        if plan.balance == "latency":
            now = self.clock()

            def latency(c: Candidate) -> float:
                p50 = c.deployment.health.latency_p50(now)
                return (0.0 if p50 is None else p50) / c.weight

            return sorted(tier, key=lambda c: (latency(c), random.random()))
        # Weighted random order (Efraimidis-Spirakis keys): share in proportion to weight.
        return sorted(tier, key=lambda c: random.random() ** (1.0 / c.weight), reverse=True)

    def _hedge_after(self, hedge: HedgeConfig, candidate: Candidate) -> float:
        if not isinstance(hedge.after, str):
            return hedge.after
        p95 = candidate.deployment.health.ttfc_p95(self.clock())
        if p95 is None:
            return hedge.initial_after
        return min(hedge.max_after, max(hedge.min_after, p95))

    async def _race(
        self,
        plan: RoutePlan,
        state: _Request,
        request: ir.ChatRequest,
        client_format: str | None,
        raw: dict[str, Any] | None,
        stream: bool,
    ) -> ChatResult | StreamReply | None:
        """Walk the candidates once, hedging a late first content; the winner or ``None``."""
        if plan.hedge is None:
            return await self._walk(plan, state, request, client_format, raw, stream)
        loop = asyncio.get_running_loop()
        candidates = self._candidates(plan, state)
        pending: dict[asyncio.Task[ChatResult | StreamReply], tuple[Candidate, float]] = {}

        async def start_next(hedge: bool = False) -> bool:
            try:
                candidate = await candidates.__anext__()
            except StopAsyncIteration:
                return False
            call = self._call(plan, state, candidate, request, client_format, raw, stream, hedge)
            pending[asyncio.create_task(call)] = (candidate, loop.time())
            return True

        try:
            if not await start_next():
                return None
            hedge: HedgeConfig | None = plan.hedge
            while pending:
                timeout: float | None = None
                if hedge is not None and len(pending) == 1 and not state.hedged:
                    candidate, started = next(iter(pending.values()))
                    timeout = max(0.0, started + self._hedge_after(hedge, candidate) - loop.time())
                if state.deadline is not None:
                    left = state.deadline - loop.time()
                    timeout = left if timeout is None else min(timeout, left)
                done, _ = await asyncio.wait(
                    pending, timeout=timeout, return_when=asyncio.FIRST_COMPLETED
                )
                if not done:
                    if state.deadline is not None and loop.time() >= state.deadline:
                        state.last = _deadline_error(plan)
                        return None
                    budget = plan.hedge_budget
                    if (
                        budget is not None
                        and budget.try_spend(self.clock())
                        and await start_next(hedge=True)
                    ):
                        state.hedged = True
                        primary = next(iter(pending.values()))[0]
                        self.events.emit("hedge_started", plan.name, primary.deployment.key)
                    else:
                        hedge = None  # no budget or no candidate: wait for what runs
                    continue
                winner: ChatResult | StreamReply | None = None
                for task in done:
                    candidate, _ = pending.pop(task)
                    error = task.exception()
                    if error is None:
                        if winner is None:
                            winner = task.result()
                            if state.hedged:
                                self.events.emit("hedge_won", plan.name, candidate.deployment.key)
                        else:
                            _discard(task.result())  # a simultaneous second winner
                        continue
                    if not isinstance(error, UpstreamError):
                        raise error
                    self._failed(plan, state, error.info)
                if winner is not None:
                    return winner
                if not pending and not await start_next():
                    return None
            return None
        finally:
            for task in pending:
                task.cancel()
            if pending:
                if state.hedged:
                    self.events.emit("hedge_cancelled", plan.name, count=len(pending))
                # Wait for the losers so their connections are closed before we go on.
                results = await asyncio.gather(*pending, return_exceptions=True)
                for result in results:
                    if isinstance(result, ChatResult | StreamReply):
                        _discard(result)
            await candidates.aclose()

    async def _walk(
        self,
        plan: RoutePlan,
        state: _Request,
        request: ir.ChatRequest,
        client_format: str | None,
        raw: dict[str, Any] | None,
        stream: bool,
    ) -> ChatResult | StreamReply | None:
        """``_race`` for a route that never hedges: one attempt at a time, awaited in place.

        Nothing runs concurrently, so no task and no wait set are needed (they cost more than
        the rest of the router on a fast upstream); failures and the deadline are handled as
        in ``_race``.
        """
        candidates = self._candidates(plan, state)
        try:
            async for candidate in candidates:
                call = self._call(plan, state, candidate, request, client_format, raw, stream)
                try:
                    if state.deadline is None:
                        return await call
                    limit = asyncio.timeout_at(state.deadline)
                    try:
                        async with limit:
                            return await call
                    except TimeoutError:
                        if not limit.expired():
                            raise
                        state.last = _deadline_error(plan)
                        return None
                except UpstreamError as error:
                    self._failed(plan, state, error.info)
            return None
        finally:
            await candidates.aclose()

    def _call(
        self,
        plan: RoutePlan,
        state: _Request,
        candidate: Candidate,
        request: ir.ChatRequest,
        client_format: str | None,
        raw: dict[str, Any] | None,
        stream: bool,
        hedge: bool = False,
    ) -> Coroutine[Any, Any, ChatResult | StreamReply]:
        """Count an attempt at ``candidate`` (a failover when it is not the first and not a
        hedge) and return the call that makes it."""
        state.attempts += 1
        if state.attempts > 1 and not hedge:
            self.events.emit(
                "failover",
                plan.name,
                candidate.deployment.key,
                tier=candidate.tier,
                after=state.last.kind.value if state.last else None,
            )
        passthrough = raw is not None and candidate.deployment.adapter.wire_format == client_format
        return self._attempt(
            plan, candidate, state, request, raw if passthrough else None, stream, passthrough
        )

    @staticmethod
    def _failed(plan: RoutePlan, state: _Request, info: ir.ErrorInfo) -> None:
        """Take in an attempt's failure; a class treated as ``return`` ends the request."""
        state.last = info
        if info.kind is ir.ErrorKind.CONTEXT_WINDOW:
            state.need_context = True
        if plan.treatment[info.kind] == "return":
            raise GatewayError(info, state.attempts, plan.name)

    async def _attempt(
        self,
        plan: RoutePlan,
        candidate: Candidate,
        state: _Request,
        request: ir.ChatRequest,
        raw: dict[str, Any] | None,
        stream: bool,
        passthrough: bool,
    ) -> ChatResult | StreamReply:
        """One call to one deployment, with its health accounting."""
        deployment = candidate.deployment
        health = deployment.health
        loop = asyncio.get_running_loop()
        started = loop.time()
        health.in_flight += 1
        try:
            if stream:
                # Bytes that pass through with no cache to fill: decode only what matters.
                light = passthrough and plan.cache is None
                attempt, held, rest = await self._until_first_content(
                    candidate, request, raw, light
                )
                latency = loop.time() - started  # to the first content
                if health.on_probation(self.clock()):
                    rest = await _hold_whole(attempt, held, rest)
            else:
                response, data = await complete_once(
                    self.pool, deployment, request, raw, candidate.timeouts
                )
                latency = loop.time() - started
        except BaseException as exc:
            health.in_flight -= 1
            if isinstance(exc, UpstreamError):
                self._record_failure(plan, deployment, exc.info, loop.time() - started)
            raise
        now = self.clock()
        self._record(plan, deployment, "success", latency, now)
        health.record_ttfc(latency, now)
        if self.events.active:
            self.events.attempt(plan.name, deployment.key, "success", None, None, latency)
        served = Served(
            route=plan.name,
            tier=candidate.tier,
            deployment=deployment.key,
            model=deployment.model,
            attempts=state.attempts,
            passthrough=passthrough,
            hedged=state.hedged,
        )
        cache = plan.cache
        key = request_key(plan.name, request) if cache is not None else ""
        if not stream:
            health.in_flight -= 1
            if cache is not None:
                cache.put(key, response)
            return ChatResult(served, response, data if passthrough else None)

        def closed() -> None:
            health.in_flight -= 1  # an open stream counts as in flight until it ends

        def failed(info: ir.ErrorInfo) -> None:
            self._record_failure(plan, deployment, info, loop.time() - started)

        def remember(response: ir.ChatResponse) -> None:
            assert cache is not None
            cache.put(key, response)

        return StreamReply(
            served,
            attempt,
            held,
            rest,
            on_error=failed,
            on_close=closed,
            sink=remember if cache is not None else None,
        )

    def _record(
        self, plan: RoutePlan, deployment: Deployment, outcome: Any, latency: float, now: float
    ) -> None:
        transition = deployment.health.record(outcome, latency, now)
        if transition is not None:
            log.info("breaker %s -> %s", deployment.key, transition)
            self.events.emit("breaker", plan.name, deployment.key, state=transition)

    def _record_failure(
        self, plan: RoutePlan, deployment: Deployment, info: ir.ErrorInfo, latency: float
    ) -> None:
        now = self.clock()
        outcome = outcome_of(info)
        self._record(plan, deployment, outcome or "success", latency, now)
        if info.kind is ir.ErrorKind.RATE_LIMITED and info.retry_after:
            deployment.health.pause(min(info.retry_after, 600.0), now)
        if info.kind is ir.ErrorKind.AUTH:
            # A rejected key never fixes itself: say so loudly.
            log.error("provider rejected hedgerow's key: %s: %s", deployment.key, info.message)
            self.events.emit("auth_error", plan.name, deployment.key, message=info.message)
        if self.events.active:
            self.events.attempt(
                plan.name,
                deployment.key,
                outcome or "success",
                info.kind.value,
                info.status,
                latency,
            )

    async def _until_first_content(
        self,
        candidate: Candidate,
        request: ir.ChatRequest,
        raw: dict[str, Any] | None,
        light: bool = False,
    ) -> tuple[StreamAttempt, list[Chunk], AsyncIterator[Chunk]]:
        """Open a stream and hold its chunks back until content (or a clean empty end).

        An error event, a cut or a timeout before that raises ``UpstreamError``: nothing has
        reached the client, so the router may go on to the next candidate.
        """
        timeouts = candidate.timeouts
        key = candidate.deployment.key
        attempt: StreamAttempt | None = None
        held: list[Chunk] = []
        try:
            async with asyncio.timeout(timeouts.first_content):
                attempt = await open_stream(
                    self.pool, candidate.deployment, request, raw, timeouts, light
                )
                chunks = attempt.chunks().__aiter__()
                # Not closed on return: the same iterator carries the rest of the stream.
                async for raw_bytes, events in chunks:
                    _raise_stream_error(events)
                    held.append((raw_bytes, events))
                    if any(ir.is_content(e) or isinstance(e, ir.MessageEnd) for e in events):
                        return attempt, held, chunks
        except TimeoutError:
            if attempt is not None:
                attempt.close()
            raise UpstreamError(
                ir.ErrorInfo(
                    ir.ErrorKind.TIMEOUT, f"{key}: no content within {timeouts.first_content}s"
                )
            ) from None
        except BaseException:
            if attempt is not None:
                attempt.close()
            raise
        attempt.close()
        raise UpstreamError(ir.ErrorInfo(ir.ErrorKind.MALFORMED, f"{key}: stream ended empty"))

    def _final_error(self, plan: RoutePlan, state: _Request) -> ir.ErrorInfo:
        """The failure to report: the last one seen, or why no deployment was even tried."""
        return state.last or ir.ErrorInfo(
            ir.ErrorKind.UNAVAILABLE,
            f"route {plan.name!r}: every deployment is unavailable (circuit open or paused)",
            status=503,
            retry_after=self.route_ready(plan.name) or None,
        )

    async def _degrade(
        self,
        plan: RoutePlan,
        state: _Request,
        request: ir.ChatRequest,
        client_format: str | None,
        raw: dict[str, Any] | None,
        stream: bool,
    ) -> ChatResult | StreamReply:
        """Every tier failed: the route's minimal answer, or the error."""
        error = self._final_error(plan, state)
        if plan.minimal is not None:
            try:
                answer = await plan.minimal.answer(request, client_format, raw)
            except LookupError as exc:
                info = ir.ErrorInfo(ir.ErrorKind.UNAVAILABLE, str(exc), status=503)
                self.events.emit("degraded", plan.name, minimal="skip")
                raise GatewayError(info, state.attempts, plan.name) from None
            if answer is not None:
                kind, response = answer
                self.events.emit("degraded", plan.name, minimal=kind, after=error.kind.value)
                served = Served(
                    route=plan.name,
                    tier=len(plan.tiers),
                    deployment=f"minimal/{kind}",
                    model=response.model,
                    attempts=state.attempts,
                    minimal=kind,
                    hedged=state.hedged,
                )
                if stream:
                    return StreamReply(served, None, [(None, response_events(response))])
                return ChatResult(served, response, None)
        raise GatewayError(error, state.attempts, plan.name)

    # -----------------------------------------------------------------------------------------
    # The library API

    async def chat(self, body: dict[str, Any], *, style: ClientFormat = "openai") -> ChatResult:
        """Answer a request written as an OpenAI (default) or Anthropic API body."""
        request = _CLIENT_FORMATS[style].parse_request(body)
        return await self.complete(request)

    async def stream(
        self, body: dict[str, Any], *, style: ClientFormat = "openai"
    ) -> AsyncIterator[ir.StreamEvent]:
        """Stream the answer to a request body as IR events.

        A failure after the first content raises ``GatewayError`` where it happens.
        """
        request = _CLIENT_FORMATS[style].parse_request(body)
        reply = await self.open_stream(request)
        async for _raw, events in reply.chunks():
            for event in events:
                if isinstance(event, ir.StreamError):
                    raise GatewayError(event.error, reply.served.attempts, reply.served.route)
                yield event


def _raise_stream_error(events: list[ir.StreamEvent]) -> None:
    """``UpstreamError`` for a stream's error event (one not sent to the client yet)."""
    for event in events:
        if isinstance(event, ir.StreamError):
            raise UpstreamError(event.error)


async def _hold_whole(
    attempt: StreamAttempt, held: list[Chunk], rest: AsyncIterator[Chunk]
) -> AsyncIterator[Chunk]:
    """Read the rest of a stream into ``held`` (a deployment on probation: see
    ``Health.on_probation``); ``UpstreamError`` when it fails before its end, so that the
    router can still go on to the next candidate. Returns the (empty) rest."""
    try:
        async for raw_bytes, events in rest:
            _raise_stream_error(events)
            held.append((raw_bytes, events))
    except BaseException:
        attempt.close()
        raise
    return _no_chunks()


async def _no_chunks() -> AsyncIterator[Chunk]:
    return
    yield


def _discard(result: ChatResult | StreamReply) -> None:
    """Release a result nobody will read (a hedge that finished second)."""
    if isinstance(result, StreamReply):
        result.close()


def _deadline_error(plan: RoutePlan) -> ir.ErrorInfo:
    return ir.ErrorInfo(
        ir.ErrorKind.TIMEOUT,
        f"route {plan.name!r}: no answer within its {plan.deadline}s deadline",
    )
