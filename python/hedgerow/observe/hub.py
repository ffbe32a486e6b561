"""``Observability``: metrics, event log, request log, alerts and status pages over one
``Gateway``, fed by one event subscriber.

The subscriber runs synchronously on the request path, so it does almost nothing there: the
two kinds every request emits (``attempt``, ``request``) are queued and processed in batches
on the loop (every 50 ms, every 256 events, and before anything reads the state); the event
log and the request log write from threads; alerts are evaluated and notified from
background tasks. Measured cost: ``benches/README.md`` (Observability). The server gets it from ``install_observability``; a library user can run
it around an embedded gateway::

    async with Observability(gateway) as observe:
        ...
        print(observe.metrics.exposition().decode())
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from hedgerow.config import ObserveConfig
from hedgerow.observe.alerts import AlertEngine, Notifier
from hedgerow.observe.eventlog import (
    AUDITED_KINDS,
    DEFAULT_MAX_ROWS,
    SHARED_EVENT_LOG_ENV,
    EventLog,
    EventQuery,
    stop_tasks,
)
from hedgerow.observe.health import health_view
from hedgerow.observe.logs import RequestLog, RequestScope, current_scope
from hedgerow.observe.metrics import Metrics
from hedgerow.observe.redact import Redactor
from hedgerow.observe.status import StatusMonitor
from hedgerow.routing import Gateway
from hedgerow.routing.events import AttemptFields, Event, attempt_fields
from hedgerow.routing.health import Outcome

__all__ = ["Observability", "QueueProbe", "queue_probe"]

log = logging.getLogger("hedgerow.observe")

# () -> ({state: count}, age of the oldest queued job in seconds or None)
QueueProbe = Callable[[], Awaitable[tuple[dict[str, int], float | None]]]


# Queued events past which the subscriber processes them at once: batches stay small
# (events that live long get promoted by the garbage collector, which then works harder),
# and never pile up unprocessed.
_BATCH = 256


def _feed(consume: Callable[[list[Any]], None], batch: list[Any]) -> None:
    """Hand ``batch`` to ``consume``; when that fails, hand its events one at a time, so
    that one bad event costs only itself (and never stops the others, nor the reader)."""
    if not batch:
        return
    try:
        consume(batch)
    except Exception:
        for item in batch:
            try:
                consume([item])
            except Exception:
                log.exception("observability: processing an event failed")


def queue_probe(queue: Any, wall: Callable[[], float] = time.time) -> QueueProbe:
    """A probe over a job queue (``hedgerow.jobs.JobQueue``): its ``counts()`` and the age
    of its oldest unfinished job (``oldest_enqueued_at()``; 0 when there is none), on the
    wall clock ``wall`` (job times are epoch seconds)."""

    async def probe() -> tuple[dict[str, int], float | None]:
        counts = await queue.counts()
        at = await queue.oldest_enqueued_at()
        oldest = 0.0 if at is None else max(0.0, wall() - float(at))
        return {str(getattr(k, "value", k)): int(v) for k, v in counts.items()}, oldest

    return probe


class Observability:
    """Everything hedgerow observes about one gateway (see the module docstring).

    ``secrets`` are masked wherever they would appear (the config's keys and sink URLs are
    added by ``install_observability``). ``request_log_stream`` overrides where request
    lines go when no ``request_log_file`` is set (stderr by default).
    """

    def __init__(
        self,
        gateway: Gateway,
        config: ObserveConfig | None = None,
        *,
        secrets: Iterable[str] = (),
        request_log_stream: Any = None,
    ) -> None:
        config = config or gateway.config.observe
        self.gateway = gateway
        self.config = config
        self.redactor = Redactor(secrets)
        self.metrics = Metrics(gateway)
        # Unset in the config: in memory, or, under `serve --workers N`, the file the
        # supervisor made for its workers to share (bounded like the in-memory one).
        shared = None if config.event_log else os.environ.get(SHARED_EVENT_LOG_ENV)
        self.events = EventLog(
            config.event_log or shared,
            redactor=self.redactor,
            retention_days=config.event_log_retention_days,
            max_rows=DEFAULT_MAX_ROWS if shared else None,
        )
        self.request_log = (
            RequestLog(config.request_log_file, stream=request_log_stream, redactor=self.redactor)
            if config.request_log
            else None
        )
        self.notifier = Notifier(
            config.sinks,
            max_per_minute=config.alerts.max_per_minute,
            metrics=self.metrics,
            redactor=self.redactor,
        )
        self.alerts = AlertEngine(gateway, config.alerts, self.notifier, self.metrics)
        self.status = StatusMonitor(
            gateway, config.status_pages, alerts=self.alerts, metrics=self.metrics
        )
        self.queue_probe: QueueProbe | None = None
        # Cumulative per-deployment [attempts, failures] and per-route requests, for the
        # dashboard's rates.
        self.attempts: dict[str, list[int]] = {key: [0, 0] for key in gateway.deployments}
        self.requests: dict[str, int] = {name: 0 for name in gateway.routes}
        self.started = time.time()
        self._tasks: list[asyncio.Task[None]] = []
        self._closed = False
        self._stopping = False
        metrics_handlers = self.metrics.handlers
        self._other: dict[str, tuple[Callable[[Event], None], ...]] = {}
        for kind in {*metrics_handlers, *AUDITED_KINDS}:
            handlers: list[Callable[[Event], None]] = []
            if kind in metrics_handlers and kind != "attempt":
                handlers.append(metrics_handlers[kind])
            handlers.append(self.events.record)
            if kind == "operator":
                handlers.append(self.status.on_operator)
            self._other[kind] = tuple(handlers)
        self._record_unknown = (self.events.record,)
        # Queued for ``drain``: the attempts (and the request scope each was made in), and
        # the requests (with theirs).
        self._attempts: list[AttemptFields] = []
        self._attempt_scopes: list[RequestScope | None] = []
        self._requests: list[tuple[Event, RequestScope | None]] = []
        self._clock = gateway.clock
        # Whatever reads the state first takes in what is queued.
        self.metrics.before_render = self.drain
        self.alerts.before_evaluate = self.drain
        self.events.before_flush = self.drain
        self.status.before_apply = self.drain
        gateway.subscribe(self._on_event, attempts=False)
        gateway.subscribe_attempts(self._on_attempt)

    # -- the subscriber (synchronous, on the request path) ------------------------------------
    #
    # The two kinds every request emits (``attempt``, ``request``) are only queued here, with
    # the request's scope and the clock's ``now``; ``drain`` hands them to metrics and alerts
    # in batches (every 50 ms, and before anything reads the state), where the attempts and
    # requests of one shape are added up before any series is touched: a Python call costs
    # about what the work inside it does, so the work is done per batch, not per event. The
    # rare kinds (failover, breaker, operator, ...) are handled at once, in the emitter's
    # context (who acted is read from it).

    def _on_attempt(
        self,
        route: str | None,
        deployment: str | None,
        outcome: Outcome,
        error: str | None,
        status: int | None,
        latency: float,
    ) -> None:
        if self._closed:
            return
        self._attempts.append((route, deployment, outcome, error, status, latency, self._clock()))
        self._attempt_scopes.append(current_scope())
        if len(self._attempts) >= _BATCH:
            self.drain()

    def _on_event(self, event: Event) -> None:
        if self._closed:
            return
        kind = event.kind
        if kind == "request":
            self._requests.append((event, current_scope()))
            if len(self._requests) >= _BATCH:
                self.drain()
        elif kind == "attempt":  # one published by hand: the router's come to _on_attempt
            self._on_attempt(*attempt_fields(event, 0.0)[:6])
        else:
            for handler in self._other.get(kind, self._record_unknown):
                handler(event)

    def drain(self) -> None:
        """Process the queued ``attempt`` and ``request`` events (metrics, alert windows,
        request log, dashboard counters)."""
        while self._attempts or self._requests:
            attempts, scopes, requests = self._attempts, self._attempt_scopes, self._requests
            self._attempts, self._attempt_scopes, self._requests = [], [], []
            counts = self.attempts
            for fields, scope in zip(attempts, scopes, strict=True):
                _, deployment, outcome, error, status, latency, _ = fields
                if scope is not None:
                    scope.append((deployment, outcome, error, status, latency))
                tally = counts.get(deployment)  # type: ignore[arg-type]
                if tally is not None:
                    tally[0] += 1
                    if outcome != "success":
                        tally[1] += 1
            _feed(self.metrics.on_attempts, attempts)
            _feed(self.alerts.on_attempts, attempts)
            if not requests:
                continue
            _feed(
                self.metrics.on_requests,
                [
                    (
                        event,
                        scope.first_content()
                        if scope is not None and event.detail.get("stream")
                        else None,
                    )
                    for event, scope in requests
                ],
            )
            served = self.requests
            request_log = self.request_log
            for event, scope in requests:
                route = event.route
                if route is not None and route in served:
                    served[route] += 1
                if request_log is not None:
                    try:
                        request_log.write(event, scope)
                    except Exception:
                        log.exception("observability: processing an event failed")

    # -- life cycle ---------------------------------------------------------------------------

    def watch_queue(self, probe: QueueProbe | Any) -> None:
        """Report a job queue's depth and oldest age in the metrics: a ``QueueProbe`` or a
        queue with ``counts()`` (see ``queue_probe``)."""
        self.queue_probe = probe if not hasattr(probe, "counts") else queue_probe(probe)

    async def start(self) -> None:
        """Start the background work: event-log flushing, alert evaluation, status polling,
        gauge refreshing."""
        if self._tasks or self._closed:
            return
        self.events.start()
        await self.events.flush()  # create the database now: a bad path fails at start
        self.notifier.start()
        self.status.start()
        self._tasks = [
            asyncio.create_task(self.alerts.run(), name="hedgerow-alerts"),
            asyncio.create_task(self._sample(), name="hedgerow-metrics-sampler"),
            asyncio.create_task(self._drain_loop(), name="hedgerow-observe-drain"),
        ]

    async def _drain_loop(self) -> None:
        while not self._stopping:
            await asyncio.sleep(0.05)
            self.drain()

    async def _sample(self) -> None:
        ticks = 0
        while not self._stopping:
            try:
                self.metrics.refresh()
                self.metrics.eventlog(self.events.dropped)
                if self.queue_probe is not None and ticks % 2 == 0:
                    async with asyncio.timeout(5.0):
                        counts, oldest = await self.queue_probe()
                    self.metrics.queue(counts, oldest)
            except Exception:
                log.exception("metrics sampler failed")
            ticks += 1
            await asyncio.sleep(1.0)

    async def close(self) -> None:
        """Stop the background work; write out the event and request logs."""
        if self._closed:
            return
        self._stopping = True
        self.alerts.stopping = True
        await stop_tasks(self._tasks)
        self._tasks = []
        self.drain()
        await self.status.close()
        await self.notifier.close()
        self._closed = True
        await self.events.close()
        if self.request_log is not None:
            await asyncio.to_thread(self.request_log.close)

    async def __aenter__(self) -> Observability:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # -- views --------------------------------------------------------------------------------

    def health(self) -> dict[str, Any]:
        """The ``/v1/health`` document."""
        self.drain()
        return health_view(
            self.gateway,
            alerts=[a.as_dict() for a in self.alerts.firing()],
            status_pages=self.status.view(),
            actions=self.status.actions(),
        )

    async def dashboard(self, since: float, after_id: int | None = None) -> dict[str, Any]:
        """What the dashboard polls: health, counters for rates, recent events."""
        events, truncated = await self.events.query(
            EventQuery(since=since, kinds=AUDITED_KINDS, after_id=after_id, limit=500)
        )
        return {
            "health": self.health(),
            "counters": {
                "at": time.time(),
                "attempts": {k: v[0] for k, v in self.attempts.items()},
                "failures": {k: v[1] for k, v in self.attempts.items()},
                "requests": dict(self.requests),
            },
            "events": events,
            "events_truncated": truncated,
            "started": self.started,
        }
