"""``GET /v1/health``: the state every other gateway hides.

Per deployment: its breaker (state, since when, trips, failure rate, when it may be tried
again, whether an operator forced it), the sliding window's error rate and latency
quantiles, time to first content, calls in flight, a 429's pause and the rate limit left.
Per route: its tiers, operator flags and how soon it can be served. Plus the alerts firing,
the status pages, and what is shared with other workers and instances (``shared``: whether
Redis answers or this instance fell back to its local limits). Times read from the gateway's monotonic clock are also given as wall
clock (ISO 8601 UTC) and as seconds ago / from now.
"""

from __future__ import annotations

import math
import time
from typing import Any

from hedgerow.observe.eventlog import iso
from hedgerow.routing import Gateway
from hedgerow.routing.deployment import Deployment

__all__ = ["deployment_health", "health_view", "overall_status"]


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000.0, 2)


def deployment_health(
    gateway: Gateway, deployment: Deployment, now: float, wall: float
) -> dict[str, Any]:
    """One deployment's health as JSON data."""
    health = deployment.health
    breaker = health.breaker.snapshot(now)
    state = health.breaker.state_at(now)
    since = breaker["since"] or None  # 0.0: never changed since start
    open_until = breaker["open_until"]
    window = health.window.snapshot(now)
    ttfc = health.ttfc.snapshot(now)
    limits: dict[str, Any] = {}
    for name, bucket in (("rpm", health.rpm), ("tpm", health.tpm)):
        if bucket is not None:
            limits[name] = {"limit": bucket.rate, "remaining": round(bucket.remaining(now), 3)}
    routes = [
        {"route": name, "tier": candidate.tier}
        for name, plan in gateway.routes.items()
        for tier in [*plan.tiers, plan.context]
        for candidate in tier
        if candidate.deployment is deployment
    ]
    return {
        "deployment": deployment.key,
        "provider": deployment.adapter.name,
        "model": deployment.model,
        "routes": routes,
        "state": state,
        "disabled": state == "open" and breaker["forced"] == "open",
        "breaker": {
            "state": state,
            "since": None if since is None else iso(wall - (now - since)),
            "since_seconds": None if since is None else round(now - since, 3),
            "trips": breaker["trips"],
            "consecutive_failures": breaker["consecutive_failures"],
            "failure_rate": round(breaker["failure_rate"], 4),
            "calls": breaker["calls"],
            "retry_in": None if open_until is None else round(max(0.0, open_until - now), 3),
            "forced": breaker["forced"],
            "transitions": breaker["transitions"],
        },
        "window": {
            "seconds": window["window"],
            "total": window["total"],
            "counts": {k: v for k, v in window["counts"].items() if k != "total"},
            "error_rate": round(window["error_rate"], 4),
            "p50_ms": _ms(window["p50"]),
            "p95_ms": _ms(window["p95"]),
            "p99_ms": _ms(window["p99"]),
            "per_second": round(window["total"] / window["window"], 3),
        },
        "ttfc": {
            "total": ttfc["total"],
            "p50_ms": _ms(ttfc["p50"]),
            "p95_ms": _ms(ttfc["p95"]),
        },
        "in_flight": health.in_flight,
        "paused_for": round(max(0.0, health.paused_until - now), 3),
        "rate_limits": limits,
    }


def overall_status(
    deployments: list[dict[str, Any]],
    routes: list[dict[str, Any]],
    down: bool,
    shared: dict[str, Any] | None = None,
) -> str:
    """``down`` when some route can serve nothing now (no deployment may be tried and it
    has no minimal answer), ``degraded`` when any deployment is not closed, any route is
    pinned or forced to its minimal answer, or the Redis shared with other instances is
    unreachable (each instance on its own limits), else ``ok``."""
    if down:
        return "down"
    if (
        any(d["state"] != "closed" for d in deployments)
        or any(r["pinned_tier"] is not None or r["force_minimal"] for r in routes)
        or (shared is not None and shared.get("redis") == "local")
    ):
        return "degraded"
    return "ok"


def health_view(
    gateway: Gateway,
    *,
    alerts: list[dict[str, Any]] | None = None,
    status_pages: list[dict[str, Any]] | None = None,
    actions: dict[str, Any] | None = None,
    now: float | None = None,
) -> dict[str, Any]:
    """The whole ``/v1/health`` document."""
    now = gateway.clock() if now is None else now
    wall = time.time()
    deployments = [deployment_health(gateway, d, now, wall) for d in gateway.deployments.values()]
    routes = []
    down = False
    for name, plan in gateway.routes.items():
        ready = min((d.health.wait(now) for d in plan.deployments()), default=0.0)
        minimal = [step.kind for step in gateway.config.routes[name].minimal]
        down = down or (ready > 0 and not minimal)
        routes.append(
            {
                "route": name,
                "tiers": [[c.deployment.key for c in tier] for tier in plan.tiers],
                "context_fallback": [c.deployment.key for c in plan.context],
                "minimal": minimal,
                "pinned_tier": plan.pinned_tier,
                "force_minimal": plan.force_minimal,
                # None: every deployment is out with no known end (taken out of rotation).
                "ready_in": None if math.isinf(ready) else round(ready, 3),
            }
        )
    # workers_region: the file the workers of this host share; redis: "shared", "local"
    # (unreachable: fallen back to this instance's own limits) or None (not configured).
    shared = gateway.shared_status()
    status = overall_status(deployments, routes, down, shared)
    return {
        "status": status,
        "time": iso(wall),
        "shared": shared,
        "deployments": deployments,
        "routes": routes,
        "operator": gateway.operator_state(),
        "alerts": alerts or [],
        "status_pages": status_pages or [],
        "status_actions": actions or {},
    }
