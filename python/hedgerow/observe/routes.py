"""``install_observability``: the one call ``create_app`` makes to add observability.

Endpoints it adds:

=============================  ====================================================  =======
``GET /metrics``               Prometheus text format                                public
``GET /v1/health``             per-deployment health (``hedgerow.observe.health``)  admin
``GET /v1/events``             the event log: ``?since=&until=&route=&kind=``         admin
                               ``&deployment=&after_id=&limit=``
``GET /dashboard``             the live dashboard (static files in the package)      admin
``GET /dashboard/api/state``   what the dashboard polls                              admin
``/admin/...``                 operator controls (``hedgerow.observe.admin``)        admin
=============================  ====================================================  =======

**The admin surface** is every path under ``ADMIN_PREFIXES`` (``/admin``, ``/dashboard``,
``/v1/events``, ``/v1/health``): ``hedgerow.server.auth`` lets only an admin key reach them
when gateway keys are configured. Every route this module adds is ``/metrics`` or under one
of those prefixes (a test holds it to that), so the gate stays in one place.

Background work (event-log flushing, alert evaluation, status polling, gauge refreshing)
starts and stops with the app (``cleanup_ctx``).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from importlib import resources
from typing import Any

import orjson
from aiohttp import web

from hedgerow.config import Config, ConfigError
from hedgerow.observe.admin import AdminAPI, operator_routes
from hedgerow.observe.alerts import resolve_settings
from hedgerow.observe.eventlog import EventQuery, kinds_from, parse_time
from hedgerow.observe.hub import Observability
from hedgerow.observe.logs import scope_middleware
from hedgerow.observe.metrics import CONTENT_TYPE
from hedgerow.observe.redact import config_secrets
from hedgerow.routing import Gateway

__all__ = [
    "ADMIN_KEY",
    "ADMIN_PREFIXES",
    "OBSERVE_KEY",
    "PUBLIC_PATHS",
    "install_observability",
    "validate_observe",
]

OBSERVE_KEY: web.AppKey[Observability] = web.AppKey("observe", Observability)
# The operator controls' handlers (a worker of `serve --workers N` sets their `peers`).
ADMIN_KEY: web.AppKey[AdminAPI] = web.AppKey("observe_admin", AdminAPI)
ADMIN_PREFIXES = ("/admin", "/dashboard", "/v1/events", "/v1/health")
PUBLIC_PATHS = frozenset({"/metrics"})

_ASSETS = {
    "index.html": "text/html",
    "app.css": "text/css",
    "app.js": "text/javascript",
}
# Nothing from anywhere else: no CDN, no inline script, no framing by other sites.
_ASSET_HEADERS = {
    "cache-control": "no-cache",
    "content-security-policy": (
        "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
        "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
    ),
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
}


def _json(data: Any, status: int = 200) -> web.Response:
    return web.Response(
        body=orjson.dumps(data, default=str),
        status=status,
        content_type="application/json",
        headers={"cache-control": "no-store"},
    )


def _bad(message: str) -> web.Response:
    return _json({"error": {"message": message, "status": 400}}, 400)


def validate_observe(config: Config, gateway: Gateway) -> None:
    """``ConfigError`` for an observe section naming routes, deployments or providers the
    config does not have."""
    try:
        resolve_settings(config.observe.alerts, gateway)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    providers = {d.adapter.name for d in gateway.deployments.values()}
    for name, page in config.observe.status_pages.items():
        if page.action != "alert" and name not in providers:
            raise ConfigError(
                f"observe.status_pages.{name}: action {page.action!r} needs a provider of "
                f"that name used by a route (known: {', '.join(sorted(providers))})"
            )


class _Handlers:
    def __init__(self, observe: Observability) -> None:
        self.observe = observe
        self.assets: dict[str, bytes] = {}

    async def metrics(self, request: web.Request) -> web.Response:
        metrics = self.observe.metrics
        metrics.refresh()
        body = await asyncio.to_thread(metrics.render) if metrics.multiprocess else metrics.render()
        return web.Response(body=body, headers={"content-type": CONTENT_TYPE})

    async def health(self, request: web.Request) -> web.Response:
        return _json(self.observe.health())

    async def events(self, request: web.Request) -> web.Response:
        q = request.query
        try:
            query = EventQuery(
                since=parse_time(q["since"]) if "since" in q else time.time() - 86400.0,
                until=parse_time(q["until"]) if "until" in q else None,
                route=q.get("route") or None,
                kinds=kinds_from(q.getall("kind", [])) or None,
                deployment=q.get("deployment") or None,
                after_id=int(q["after_id"]) if "after_id" in q else None,
                limit=int(q.get("limit", "500")),
            )
        except ValueError as exc:
            return _bad(str(exc))
        rows, truncated = await self.observe.events.query(query)
        return _json({"events": rows, "truncated": truncated})

    def _asset(self, name: str) -> web.Response:
        body = self.assets.get(name)
        if body is None:
            body = resources.files("hedgerow.observe").joinpath("dashboard", name).read_bytes()
            self.assets[name] = body
        return web.Response(
            body=body, content_type=_ASSETS[name], charset="utf-8", headers=_ASSET_HEADERS
        )

    async def dashboard(self, request: web.Request) -> web.Response:
        return self._asset("index.html")

    async def asset(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        if name not in _ASSETS:
            raise web.HTTPNotFound()
        return self._asset(name)

    async def dashboard_state(self, request: web.Request) -> web.Response:
        q = request.query
        try:
            since = parse_time(q.get("since", "30m"))
            after_id = int(q["after_id"]) if "after_id" in q else None
        except ValueError as exc:
            return _bad(str(exc))
        return _json(await self.observe.dashboard(since, after_id))


def install_observability(
    app: web.Application, gateway: Gateway, config: Config | None = None
) -> Observability:
    """Add metrics, health, events, dashboard and the operator controls to ``app``, and
    run observability's background work with it. Returns the ``Observability`` (also at
    ``app[OBSERVE_KEY]``). ``ConfigError`` for an observe section that names unknown
    routes, deployments or providers."""
    config = config or gateway.config
    validate_observe(config, gateway)
    observe = Observability(gateway, config.observe, secrets=config_secrets(config))
    app[OBSERVE_KEY] = observe
    # Gives each request a scope its attempt tasks inherit (the request log's attempts).
    app.middlewares.append(scope_middleware)
    handlers = _Handlers(observe)
    admin = AdminAPI(gateway, after=observe.events.flush)
    app[ADMIN_KEY] = admin
    app.router.add_routes(
        [
            web.get("/metrics", handlers.metrics),
            web.get("/v1/health", handlers.health),
            web.get("/v1/events", handlers.events),
            web.get("/dashboard", handlers.dashboard),
            web.get("/dashboard/", handlers.dashboard),
            web.get("/dashboard/api/state", handlers.dashboard_state),
            web.get("/dashboard/{name}", handlers.asset),
            *operator_routes(admin),
        ]
    )

    async def lifecycle(app: web.Application) -> AsyncIterator[None]:
        _discover_queue(app, observe)
        await observe.start()
        yield
        await observe.close()

    app.cleanup_ctx.append(lifecycle)
    return observe


def _discover_queue(app: web.Application, observe: Observability) -> None:
    """Watch the app's background-job queue, when it has one."""
    if observe.queue_probe is not None:
        return
    try:
        from hedgerow.jobs.queue import JobQueue
    except ImportError:  # pragma: no cover - jobs are part of the package
        return
    for value in app.values():
        if isinstance(value, JobQueue):
            observe.watch_queue(value)
            return
