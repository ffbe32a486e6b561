"""Prometheus metrics (``GET /metrics``), fed by the router's events and its health state.

Every label value comes from the config or a closed vocabulary, so the number of series is
bounded by the config, never by traffic: ``route`` is a configured route (a request for an
unknown model counts under ``route="_unknown"``), ``provider``/``model`` a configured
deployment, ``tier`` a tier index, ``minimal`` or ``none``, ``class`` one of the names
listed per metric below, ``rule``/``sink``/``result`` the alert rules, sinks and poll
results hedgerow knows.

=========================================  ==================================================
``hedgerow_requests_total``                client requests {route, tier, class: ok, minimal,
                                           queued, client_error, error, stream_error}
``hedgerow_request_duration_seconds``      client request latency {route} (histogram)
``hedgerow_tokens_total``                  usage {route, class: input, output}
``hedgerow_attempts_total``                upstream attempts {route, provider, model, class:
                                           success, 5xx, 529, 429, timeout, other, rejected}
``hedgerow_upstream_errors_total``         failed attempts by error kind {provider, model,
                                           class: server_error, overloaded, rate_limited,
                                           timeout, stream_error, connect, malformed, auth...}
``hedgerow_attempt_duration_seconds``      attempt latency (to the answer, or to the first
                                           content of a stream) {provider, model, class}
``hedgerow_time_to_first_content_seconds`` streamed requests {provider, model} (histogram)
``hedgerow_failovers_total``               {route, tier, provider, model} (failed over *to*)
``hedgerow_hedges_total``                  {route, class: started, won, cancelled}
``hedgerow_retries_total``                 {route, class: retry, budget_exhausted,
                                           exhausted}
``hedgerow_degraded_total``                minimal answers {route, class: cache, template,
                                           rule, queue, skip}
``hedgerow_breaker_state``                 0 closed, 1 half-open, 2 open {provider, model}
``hedgerow_breaker_transitions_total``     {provider, model, class: the new state}
``hedgerow_deployment_disabled``           1 while taken out of rotation {provider, model}
``hedgerow_in_flight``                     calls in flight {provider, model}
``hedgerow_rate_limit_remaining``          tokens left {provider, model, class: rpm, tpm}
``hedgerow_route_pinned_tier``             the pinned tier, -1 when none {route}
``hedgerow_route_forced_minimal``          1 while sent to its minimal answer {route}
``hedgerow_operator_actions_total``        {class: disable, enable, pin, minimal}
``hedgerow_alerts_firing``                 {rule, provider, model}
``hedgerow_alerts_total``                  {rule, class: fired, resolved, suppressed}
``hedgerow_alert_notifications_total``     {sink, result: sent, failed, rate_limited}
``hedgerow_status_page_polls_total``       {provider, result: ok, timeout, http_error,
                                           garbage, connect_error}
``hedgerow_status_incidents``              unresolved incidents counted {provider}
``hedgerow_queue_jobs``                    background jobs {class: queued, running, ...}
``hedgerow_queue_oldest_age_seconds``      age of the oldest job not finished (queued or
                                           running; 0 when none)
``hedgerow_event_log_dropped_total``       events the log could not keep up with
``hedgerow_shared_redis_up``               1 while the Redis shared between instances
                                           answers, 0 while this instance runs on its
                                           local limits (only with ``shared.redis_url``)
=========================================  ==================================================

**Several worker processes** (``--workers N``): ``PROMETHEUS_MULTIPROC_DIR`` names an
empty directory (the same for every worker, wiped before start) *before* the processes
start (the supervisor calls ``prepare_multiprocess``, and ``worker_exited(pid)`` when one
ends); prometheus_client then keeps each process's values in files there and any worker's
``/metrics`` answers for all of them. Counters and histograms add up; gauges combine per
metric as noted at its definition (breaker state: the worst worker; in-flight: the sum;
remaining rate limit: the lowest). Gauges are refreshed from each worker's health state
every second, and by the worker that answers a scrape at that moment.
"""

from __future__ import annotations

import os
import tempfile
from bisect import bisect_left
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

from hedgerow import ir
from hedgerow.observe.eventlog import replicated
from hedgerow.routing import Gateway
from hedgerow.routing.events import AttemptFields, Event, attempt_fields

__all__ = [
    "CONTENT_TYPE",
    "Metrics",
    "multiprocess_dir",
    "prepare_multiprocess",
    "worker_exited",
]

CONTENT_TYPE = CONTENT_TYPE_LATEST
UNKNOWN = "_unknown"
STATE_VALUES = {"closed": 0.0, "half_open": 1.0, "open": 2.0}
OUTCOMES = frozenset({"success", "5xx", "529", "429", "timeout", "other"})
ERROR_KINDS = frozenset(kind.value for kind in ir.ErrorKind)
MINIMAL_KINDS = frozenset({"cache", "template", "rule", "queue", "skip"})
OPERATOR_ACTIONS = frozenset({"disable", "enable", "pin", "minimal"})
ALERT_RULES = frozenset({"error_rate", "latency", "overload", "rate_limit", "status_incident"})
POLL_RESULTS = frozenset({"ok", "timeout", "http_error", "garbage", "connect_error"})
SINKS = frozenset({"webhook", "slack", "email", "log"})
JOB_STATES = frozenset({"queued", "running", "succeeded", "dead"})

REQUEST_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0)
TTFC_BUCKETS = (0.05, 0.1, 0.2, 0.35, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0, 8.0, 13.0, 20.0, 30.0)


def multiprocess_dir() -> str | None:
    """The multiprocess directory when prometheus_client runs in multiprocess mode."""
    return os.environ.get("PROMETHEUS_MULTIPROC_DIR") or None


def prepare_multiprocess(directory: str | None = None) -> str:
    """For a supervisor of several workers, before it starts them: make ``directory`` (a
    fresh temporary one by default) empty, set ``PROMETHEUS_MULTIPROC_DIR`` to it for the
    workers it will start, and return it."""
    path = directory or tempfile.mkdtemp(prefix="hedgerow-metrics-")
    os.makedirs(path, exist_ok=True)
    for name in os.listdir(path):
        if name.endswith(".db"):
            os.unlink(os.path.join(path, name))
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = path
    return path


def worker_exited(pid: int) -> None:
    """For a supervisor: a worker process ended (its live gauges stop counting)."""
    if multiprocess_dir() is not None:
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(pid)  # type: ignore[no-untyped-call]


class _FastCounter:
    """One counter series kept as a plain float (single-process mode)."""

    __slots__ = ("value",)

    def __init__(self) -> None:
        self.value = 0.0

    def inc(self, amount: float = 1.0) -> None:
        """Add ``amount``."""
        self.value += amount


class _FastHistogram:
    """One histogram series: per-bucket counts and the sum (single-process mode)."""

    __slots__ = ("bounds", "counts", "sum")

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)  # the last is +Inf
        self.sum = 0.0

    def observe(self, value: float) -> None:
        """Count one observation (``le`` buckets: the first bound >= value)."""
        self.counts[bisect_left(self.bounds, value)] += 1
        self.sum += value

    def observe_all(self, values: Sequence[float]) -> None:
        """``observe`` each of ``values``."""
        counts, bounds = self.counts, self.bounds
        for value in values:
            counts[bisect_left(bounds, value)] += 1
        self.sum += sum(values)


_NOT_CACHED = object()


def _series(cache: dict[tuple[Any, ...], Any], shape: tuple[Any, ...], make: Any) -> Any:
    """The metric children of an event shape: ``make(*shape)``, remembered in ``cache`` (up
    to 10,000 shapes: they are bounded by the config, this is a guard)."""
    children = cache.get(shape, _NOT_CACHED)
    if children is _NOT_CACHED:
        children = make(*shape)
        if len(cache) < 10_000:
            cache[shape] = children
    return children


def _observe_all(histogram: Any, values: Sequence[float]) -> None:
    """Observe ``values`` in a histogram series, fast or prometheus_client's own."""
    if isinstance(histogram, _FastHistogram):
        histogram.observe_all(values)
    else:
        for value in values:
            histogram.observe(value)


class _FastFamily:
    """A counter or histogram family whose series live in plain Python objects, rendered by
    ``_FastCollector`` at scrape time. Costs a fraction of prometheus_client's own (no lock,
    no checks per increment); safe because every update happens on the event loop thread."""

    def __init__(
        self,
        name: str,
        documentation: str,
        labelnames: list[str],
        buckets: tuple[float, ...] | None = None,
    ) -> None:
        self.name = name
        self.documentation = documentation
        self.labelnames = labelnames
        self.buckets = buckets
        self.series: dict[tuple[str, ...], Any] = {}

    def inc(self, amount: float = 1.0) -> None:
        """Add to the family's only series (a family without labels)."""
        self.labels().inc(amount)

    def labels(self, *values: str) -> Any:
        """The series of ``values`` (created at zero)."""
        series = self.series.get(values)
        if series is None:
            series = _FastCounter() if self.buckets is None else _FastHistogram(self.buckets)
            self.series[values] = series
        return series

    def family(self) -> Metric:
        """The family as prometheus_client exposes it."""
        if self.buckets is None:
            counters = CounterMetricFamily(self.name, self.documentation, labels=self.labelnames)
            for values, counter in list(self.series.items()):
                counters.add_metric(list(values), counter.value)
            return counters
        histograms = HistogramMetricFamily(self.name, self.documentation, labels=self.labelnames)
        bounds = [floatToGoString(b) for b in self.buckets] + ["+Inf"]  # type: ignore[no-untyped-call]
        for values, histogram in list(self.series.items()):
            cumulative, total = [], 0
            for bound, count in zip(bounds, list(histogram.counts), strict=True):
                total += count
                cumulative.append((bound, float(total)))
            histograms.add_metric(list(values), cumulative, histogram.sum)
        return histograms


class _FastCollector(Collector):
    """Renders the fast families."""

    def __init__(self, families: list[_FastFamily]) -> None:
        self.families = families

    def collect(self) -> Iterable[Metric]:
        """Every fast family."""
        for family in self.families:
            yield family.family()


class Metrics:
    """The gateway's Prometheus metrics.

    ``on_event`` takes router events (subscribe it, or let ``Observability`` do it);
    ``refresh`` sets the gauges from the health state; ``exposition`` renders the text
    format. Each instance has its own registry (several gateways in one process do not
    collide), except in multiprocess mode where the directory holds everything.
    """

    def __init__(self, gateway: Gateway) -> None:
        self.gateway = gateway
        self.multiprocess = multiprocess_dir() is not None
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self._fast: list[_FastFamily] = []
        self._routes = set(gateway.routes)
        self._deployments: dict[str, tuple[str, str]] = {
            key: (d.adapter.name, d.model) for key, d in gateway.deployments.items()
        }
        self._providers = {p for p, _ in self._deployments.values()}
        self._tiers: dict[str, frozenset[str]] = {
            name: frozenset([str(i) for i in range(len(plan.tiers) + 1)] + ["minimal", "none"])
            for name, plan in gateway.routes.items()
        }

        self.requests = self._counter(
            "hedgerow_requests", "Client requests", ["route", "tier", "class"], registry=r
        )
        self.request_duration = self._histogram(
            "hedgerow_request_duration_seconds",
            "Client request latency (streams: to the end of the stream)",
            ["route"],
            buckets=REQUEST_BUCKETS,
            registry=r,
        )
        self.tokens = self._counter(
            "hedgerow_tokens", "Tokens reported by providers", ["route", "class"], registry=r
        )
        self.attempts = self._counter(
            "hedgerow_attempts",
            "Upstream attempts by outcome class",
            ["route", "provider", "model", "class"],
            registry=r,
        )
        self.upstream_errors = self._counter(
            "hedgerow_upstream_errors",
            "Failed upstream attempts by error kind",
            ["provider", "model", "class"],
            registry=r,
        )
        self.attempt_duration = self._histogram(
            "hedgerow_attempt_duration_seconds",
            "Upstream attempt latency: to the answer, or to the first content of a stream",
            ["provider", "model", "class"],
            buckets=REQUEST_BUCKETS,
            registry=r,
        )
        self.ttfc = self._histogram(
            "hedgerow_time_to_first_content_seconds",
            "Time to first content of streamed requests, per serving deployment",
            ["provider", "model"],
            buckets=TTFC_BUCKETS,
            registry=r,
        )
        self.failovers = self._counter(
            "hedgerow_failovers",
            "Failovers, labelled by the deployment failed over to",
            ["route", "tier", "provider", "model"],
            registry=r,
        )
        self.hedges = self._counter("hedgerow_hedges", "Hedges", ["route", "class"], registry=r)
        self.retries = self._counter(
            "hedgerow_retries", "Retry passes and their limits", ["route", "class"], registry=r
        )
        self.degraded = self._counter(
            "hedgerow_degraded", "Minimal answers given", ["route", "class"], registry=r
        )
        self.breaker_state = Gauge(
            "hedgerow_breaker_state",
            "Circuit breaker state: 0 closed, 1 half-open, 2 open",
            ["provider", "model"],
            registry=r,
            multiprocess_mode="livemax",
        )
        self.breaker_transitions = self._counter(
            "hedgerow_breaker_transitions",
            "Circuit breaker transitions, by new state",
            ["provider", "model", "class"],
            registry=r,
        )
        self.disabled = Gauge(
            "hedgerow_deployment_disabled",
            "1 while an operator (or a status-page action) took the deployment out of rotation",
            ["provider", "model"],
            registry=r,
            multiprocess_mode="livemax",
        )
        self.in_flight = Gauge(
            "hedgerow_in_flight",
            "Upstream calls in flight",
            ["provider", "model"],
            registry=r,
            multiprocess_mode="livesum",
        )
        self.rate_remaining = Gauge(
            "hedgerow_rate_limit_remaining",
            "Tokens left in the deployment's rate-limit bucket",
            ["provider", "model", "class"],
            registry=r,
            multiprocess_mode="livemin",
        )
        self.pinned = Gauge(
            "hedgerow_route_pinned_tier",
            "The tier an operator pinned the route to (-1: none)",
            ["route"],
            registry=r,
            multiprocess_mode="livemax",
        )
        self.forced_minimal = Gauge(
            "hedgerow_route_forced_minimal",
            "1 while an operator sends the route to its minimal answer",
            ["route"],
            registry=r,
            multiprocess_mode="livemax",
        )
        self.operator = self._counter(
            "hedgerow_operator_actions", "Operator actions", ["class"], registry=r
        )
        self.alerts_firing = Gauge(
            "hedgerow_alerts_firing",
            "1 while the alert fires",
            ["rule", "provider", "model"],
            registry=r,
            multiprocess_mode="livemax",
        )
        self.alerts = self._counter(
            "hedgerow_alerts", "Alert transitions", ["rule", "class"], registry=r
        )
        self.notifications = self._counter(
            "hedgerow_alert_notifications",
            "Alert notifications by sink and result",
            ["sink", "result"],
            registry=r,
        )
        self.status_polls = self._counter(
            "hedgerow_status_page_polls",
            "Status page polls by result",
            ["provider", "result"],
            registry=r,
        )
        self.status_incidents = Gauge(
            "hedgerow_status_incidents",
            "Unresolved status-page incidents that count (impact and components filters)",
            ["provider"],
            registry=r,
            multiprocess_mode="livemax",
        )
        self.queue_jobs = Gauge(
            "hedgerow_queue_jobs",
            "Background jobs by state",
            ["class"],
            registry=r,
            multiprocess_mode="mostrecent",
        )
        self.queue_oldest = Gauge(
            "hedgerow_queue_oldest_age_seconds",
            "Age of the oldest background job not finished (queued or running; 0 when none)",
            registry=r,
            multiprocess_mode="mostrecent",
        )
        # Only with Redis configured: an instance that shares nothing has nothing to lose.
        self.shared_redis = (
            Gauge(
                "hedgerow_shared_redis_up",
                "1 while Redis (limits and breaker trips shared between instances) answers, "
                "0 while this instance has fallen back to its local limits",
                registry=r,
                multiprocess_mode="livemin",
            )
            if gateway.shared.remote is not None
            else None
        )
        self.eventlog_dropped = self._counter(
            "hedgerow_event_log_dropped", "Events the event log dropped (overflow)", registry=r
        )
        self._eventlog_dropped_seen = 0
        # Called before rendering (Observability processes its queued events there).
        self.before_render: Callable[[], None] | None = None
        self._children: dict[tuple[Any, ...], Any] = {}
        self._request_cache: dict[tuple[Any, ...], tuple[Any, Any, Any, Any]] = {}
        self._attempt_cache: dict[tuple[Any, ...], tuple[Any, Any, Any] | None] = {}
        self._failover_cache: dict[tuple[Any, ...], Any] = {}
        # Every series that matters for alerting exists from the start (rate() of a missing
        # series is nothing, not zero).
        for key, (provider, model) in self._deployments.items():
            self.breaker_state.labels(provider, model).set(0)
            self.disabled.labels(provider, model).set(0)
            self.in_flight.labels(provider, model).set(0)
            for name, plan in gateway.routes.items():
                if any(d.key == key for d in plan.deployments()):
                    for outcome in ("success", "5xx", "529", "429", "timeout"):
                        self.attempts.labels(name, provider, model, outcome)
        for name in self._routes:
            self.pinned.labels(name).set(-1)
            self.forced_minimal.labels(name).set(0)
        if self._fast:
            r.register(_FastCollector(self._fast))
        self.handlers: Mapping[str, Callable[[Event], None]] = {
            "attempt": self.on_attempt,
            "failover": self._failover,
            "hedge_started": self._hedge,
            "hedge_won": self._hedge,
            "hedge_cancelled": self._hedge,
            "retry": self._retry,
            "retry_budget_exhausted": self._retry,
            "retries_exhausted": self._retry,
            "degraded": self._degraded,
            "breaker": self._breaker,
            "operator": self._operator,
            "alert": self._alert,
        }

    def _counter(
        self,
        name: str,
        documentation: str,
        labelnames: list[str] | None = None,
        registry: CollectorRegistry | None = None,
    ) -> Any:
        """A counter: prometheus_client's own in multiprocess mode (kept in the shared
        files), else a fast in-memory family."""
        if self.multiprocess:
            return Counter(name, documentation, labelnames or [], registry=registry)
        family = _FastFamily(name, documentation, labelnames or [])
        self._fast.append(family)
        return family

    def _histogram(
        self,
        name: str,
        documentation: str,
        labelnames: list[str],
        buckets: tuple[float, ...],
        registry: CollectorRegistry | None = None,
    ) -> Any:
        """A histogram, as ``_counter`` chooses."""
        if self.multiprocess:
            return Histogram(name, documentation, labelnames, buckets=buckets, registry=registry)
        family = _FastFamily(name, documentation, labelnames, buckets)
        self._fast.append(family)
        return family

    # -- label hygiene ------------------------------------------------------------------------

    def route_label(self, route: str | None) -> str:
        """A configured route, or ``_unknown``."""
        return route if route is not None and route in self._routes else UNKNOWN

    def deployment_labels(self, key: str | None) -> tuple[str, str]:
        """``(provider, model)`` of a configured deployment, else ``_unknown`` twice."""
        if key is None:
            return UNKNOWN, UNKNOWN
        return self._deployments.get(key, (UNKNOWN, UNKNOWN))

    def _child(self, metric: Any, *labels: str) -> Any:
        key = (id(metric), *labels)
        child = self._children.get(key)
        if child is None:
            child = metric.labels(*labels)
            self._children[key] = child
        return child

    # -- events -------------------------------------------------------------------------------

    def on_event(self, event: Event) -> None:
        """Count one router event (a subscriber callback)."""
        handler = self.handlers.get(event.kind)
        if handler is not None:
            handler(event)

    # The request path resolves labels once per shape of event (route, tier, status, ...)
    # and keeps the metric children it found. Events come in batches (``Observability``
    # queues them): the requests and attempts of one shape are added up first, and each
    # series is incremented once per batch. The caches are bounded (the shapes are, too).

    def on_requests(self, batch: Iterable[tuple[Event, tuple[str, float] | None]]) -> None:
        """Count client requests: each a ``request`` event, with ``(deployment, seconds)``
        of a stream's winning attempt when known (its time to first content)."""
        routes = self._routes
        # shape -> [requests, latencies, input tokens, output tokens]
        shapes: dict[tuple[Any, ...], list[Any]] = {}
        first_content: dict[str, list[float]] = {}
        for event, ttfc in batch:
            detail = event.detail
            route = event.route if event.route in routes else UNKNOWN
            shape = (
                route,
                detail.get("tier"),
                detail.get("status"),
                detail.get("error") is not None,
            )
            sums = shapes.get(shape)
            if sums is None:
                sums = shapes[shape] = [0, [], 0, 0]
            sums[0] += 1
            latency = detail.get("latency")
            if latency is not None:
                sums[1].append(latency)
            sums[2] += detail.get("input_tokens") or 0
            sums[3] += detail.get("output_tokens") or 0
            if ttfc is not None:
                first_content.setdefault(ttfc[0], []).append(ttfc[1])
        for shape, (count, latencies, tokens_in, tokens_out) in shapes.items():
            requests, duration, input_tokens, output_tokens = _series(
                self._request_cache, shape, self._request_children
            )
            requests.inc(count)
            _observe_all(duration, latencies)
            if tokens_in:
                input_tokens.inc(tokens_in)
            if tokens_out:
                output_tokens.inc(tokens_out)
        for deployment, seconds in first_content.items():
            provider, model = self.deployment_labels(deployment)
            if provider != UNKNOWN:
                _observe_all(self._child(self.ttfc, provider, model), seconds)

    def _request_children(
        self, route: str, tier: Any, status: Any, failed: bool
    ) -> tuple[Any, Any, Any, Any]:
        status = status if isinstance(status, int) else 0
        tier_label = "none" if tier is None else str(tier)
        if route == UNKNOWN or tier_label not in self._tiers[route]:
            tier_label = "none"
        if status == 202:
            klass = "queued"
        elif status >= 500:
            klass = "error"
        elif status >= 400:
            klass = "client_error"
        elif failed:
            klass = "stream_error"
        elif tier == "minimal":
            klass = "minimal"
        else:
            klass = "ok"
        return (
            self._child(self.requests, route, tier_label, klass),
            self._child(self.request_duration, route),
            self._child(self.tokens, route, "input"),
            self._child(self.tokens, route, "output"),
        )

    def on_attempt(self, event: Event) -> None:
        """Count one upstream attempt (an ``attempt`` event)."""
        self.on_attempts((attempt_fields(event, 0.0),))

    def on_attempts(self, batch: Iterable[AttemptFields]) -> None:
        """Count upstream attempts."""
        shapes: dict[tuple[Any, ...], list[float]] = {}
        for route, deployment, outcome, error, _status, latency, _now in batch:
            shape = (route, deployment, outcome, error)
            latencies = shapes.get(shape)
            if latencies is None:
                shapes[shape] = [latency]
            else:
                latencies.append(latency)
        for shape, latencies in shapes.items():
            children = _series(self._attempt_cache, shape, self._attempt_children)
            if children is None:
                continue
            attempts, duration, errors = children
            attempts.inc(len(latencies))
            _observe_all(duration, latencies)
            if errors is not None:
                errors.inc(len(latencies))

    def _attempt_children(
        self, route: str | None, deployment: str | None, outcome: Any, error: Any
    ) -> tuple[Any, Any, Any] | None:
        provider, model = self.deployment_labels(deployment)
        if provider == UNKNOWN:
            return None
        if outcome not in OUTCOMES:
            outcome = "other"
        if error is not None and outcome == "success":
            outcome = "rejected"  # the request's own fault (bad request, context window)
        errors = None
        if error is not None:
            kind = error if error in ERROR_KINDS else "other"
            errors = self._child(self.upstream_errors, provider, model, kind)
        return (
            self._child(self.attempts, self.route_label(route), provider, model, outcome),
            self._child(self.attempt_duration, provider, model, outcome),
            errors,
        )

    def _failover(self, event: Event) -> None:
        key = (event.route, event.deployment, event.detail.get("tier"))
        child = self._failover_cache.get(key)
        if child is None:
            provider, model = self.deployment_labels(event.deployment)
            route = self.route_label(event.route)
            tier = str(key[2])
            if route == UNKNOWN or tier not in self._tiers[route]:
                tier = "none"
            child = self._child(self.failovers, route, tier, provider, model)
            if len(self._failover_cache) < 10_000:
                self._failover_cache[key] = child
        child.inc()

    def _hedge(self, event: Event) -> None:
        klass = event.kind.removeprefix("hedge_")
        count = event.detail.get("count", 1) if klass == "cancelled" else 1
        self._child(self.hedges, self.route_label(event.route), klass).inc(count)

    def _retry(self, event: Event) -> None:
        klass = {
            "retry": "retry",
            "retry_budget_exhausted": "budget_exhausted",
            "retries_exhausted": "exhausted",
        }[event.kind]
        self._child(self.retries, self.route_label(event.route), klass).inc()

    def _degraded(self, event: Event) -> None:
        kind = event.detail.get("minimal")
        klass = kind if kind in MINIMAL_KINDS else "other"
        self._child(self.degraded, self.route_label(event.route), klass).inc()

    def _breaker(self, event: Event) -> None:
        provider, model = self.deployment_labels(event.deployment)
        state = event.detail.get("state")
        if provider == UNKNOWN or state not in STATE_VALUES:
            return
        self._child(self.breaker_state, provider, model).set(STATE_VALUES[state])
        self._child(self.breaker_transitions, provider, model, state).inc()

    def _operator(self, event: Event) -> None:
        action = event.detail.get("action")
        if action in OPERATOR_ACTIONS and not replicated():  # counted where it was received
            self._child(self.operator, action).inc()
        self.refresh()

    def _alert(self, event: Event) -> None:
        detail = event.detail
        rule = detail.get("rule")
        if rule not in ALERT_RULES:
            return
        state = detail.get("state")
        if state in ("fired", "resolved", "suppressed"):
            self._child(self.alerts, rule, state).inc()
        if state == "suppressed":
            return
        provider, model = self.deployment_labels(event.deployment)
        if event.deployment is None:
            name = detail.get("provider")
            provider = name if name in self._providers else UNKNOWN
            model = ""
        self._child(self.alerts_firing, rule, provider, model).set(1 if state == "fired" else 0)

    # -- calls from the other observers -------------------------------------------------------

    def notification(self, sink: str, result: str) -> None:
        """Count one alert notification (``result``: sent, failed, rate_limited)."""
        if sink in SINKS:
            self._child(self.notifications, sink, result).inc()

    def status_poll(self, provider: str, result: str, incidents: int | None) -> None:
        """Count one status-page poll; ``incidents`` is the count that matters, when known."""
        if result in POLL_RESULTS:
            self._child(self.status_polls, provider, result).inc()
        if incidents is not None:
            self._child(self.status_incidents, provider).set(incidents)

    def queue(self, counts: Mapping[str, int], oldest_age: float | None) -> None:
        """Set the background-job gauges."""
        for state, count in counts.items():
            if state in JOB_STATES:
                self._child(self.queue_jobs, state).set(count)
        if oldest_age is not None:
            self.queue_oldest.set(oldest_age)

    def eventlog(self, dropped: int) -> None:
        """Advance the dropped-events counter to the event log's own count."""
        if dropped > self._eventlog_dropped_seen:
            self.eventlog_dropped.inc(dropped - self._eventlog_dropped_seen)
            self._eventlog_dropped_seen = dropped

    # -- gauges from state --------------------------------------------------------------------

    def refresh(self, now: float | None = None) -> None:
        """Set the state gauges from each deployment's health (breaker, in-flight, rate
        limits) and each route's operator flags."""
        if self.before_render is not None:
            self.before_render()
        now = self.gateway.clock() if now is None else now
        for key, deployment in self.gateway.deployments.items():
            provider, model = self._deployments.get(key, (UNKNOWN, UNKNOWN))
            if provider == UNKNOWN:
                continue
            health = deployment.health
            breaker = health.breaker
            state = breaker.state_at(now)
            self._child(self.breaker_state, provider, model).set(STATE_VALUES[state])
            forced = state == "open" and breaker.snapshot(now)["forced"] == "open"
            self._child(self.disabled, provider, model).set(1 if forced else 0)
            self._child(self.in_flight, provider, model).set(health.in_flight)
            if health.rpm is not None:
                self._child(self.rate_remaining, provider, model, "rpm").set(
                    health.rpm.remaining(now)
                )
            if health.tpm is not None:
                self._child(self.rate_remaining, provider, model, "tpm").set(
                    health.tpm.remaining(now)
                )
        if self.shared_redis is not None:
            shared = self.gateway.shared_status()["redis"] == "shared"
            self.shared_redis.set(1 if shared else 0)
        for name, plan in self.gateway.routes.items():
            pinned = plan.pinned_tier
            self._child(self.pinned, name).set(-1 if pinned is None else pinned)
            self._child(self.forced_minimal, name).set(1 if plan.force_minimal else 0)

    def exposition(self) -> bytes:
        """The text exposition format of every metric (all workers in multiprocess mode),
        gauges refreshed first."""
        self.refresh()
        return self.render()

    def render(self) -> bytes:
        """The text exposition format as the metrics stand (in multiprocess mode it may be
        called from a thread: the queued events are taken in by ``exposition``/``refresh``
        on the loop first)."""
        if self.before_render is not None and not self.multiprocess:
            self.before_render()
        if self.multiprocess:
            registry = CollectorRegistry()
            MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
            return generate_latest(registry)
        return generate_latest(self.registry)
