"""The aiohttp application: endpoints, and ``serve`` to run it."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import orjson
from aiohttp import web

from hedgerow import ir
from hedgerow.config import Config
from hedgerow.formats import FormatError
from hedgerow.formats import anthropic as anthropic_format
from hedgerow.formats import openai as openai_format
from hedgerow.jobs.api import QueueSink, open_queue
from hedgerow.observe import install_observability
from hedgerow.observe.logs import configure_logging, open_scope, scope_middleware
from hedgerow.observe.redact import Redactor, config_secrets
from hedgerow.routing import Gateway, GatewayError
from hedgerow.security import KeyGuard, KeyStore
from hedgerow.server.auth import GUARD_KEY, authenticate
from hedgerow.server.chat import (
    BODY_TIMEOUT_KEY,
    MAX_BODY_KEY,
    ChatHandler,
    read_body,
    send_exchange,
)
from hedgerow.server.exchange import error_exchange, parse_json_body
from hedgerow.server.jobs import add_job_routes, start_workers
from hedgerow.server.lane import Lane
from hedgerow.server.memory import releasing_memory
from hedgerow.server.protocol import KEEPALIVE_TIMEOUT, HeaderLimits, install
from hedgerow.tokens import estimate_request_tokens

__all__ = ["create_app", "serve"]

log = logging.getLogger("hedgerow.server")

GATEWAY_KEY: web.AppKey[Gateway] = web.AppKey("gateway", Gateway)
_CREATED = int(time.time())


def _json(data: Any, status: int = 200) -> web.Response:
    return web.Response(body=orjson.dumps(data), status=status, content_type="application/json")


async def _models(request: web.Request) -> web.Response:
    """The routes, in the shape of whichever API the client speaks."""
    routes = sorted(request.app[GATEWAY_KEY].routes)
    if "anthropic-version" in request.headers:
        data = [
            {"type": "model", "id": r, "display_name": r, "created_at": "1970-01-01T00:00:00Z"}
            for r in routes
        ]
        return _json(
            {
                "data": data,
                "has_more": False,
                "first_id": routes[0] if routes else None,
                "last_id": routes[-1] if routes else None,
            }
        )
    return _json(
        {
            "object": "list",
            "data": [
                {"id": r, "object": "model", "created": _CREATED, "owned_by": "hedgerow"}
                for r in routes
            ],
        }
    )


async def _count_tokens(request: web.Request) -> web.StreamResponse:
    """``POST /v1/messages/count_tokens``: an estimate (see ``hedgerow.tokens``)."""
    try:
        body = parse_json_body(await read_body(request))
        # count_tokens takes a Messages body without max_tokens; parse it as if it had one.
        chat = anthropic_format.parse_request({"max_tokens": 1, **body})
        request.app[GATEWAY_KEY].plan(chat.model)
    except GatewayError as exc:
        return await send_exchange(
            request, error_exchange(anthropic_format, exc.info, should_retry=False)
        )
    except FormatError as exc:
        info = ir.ErrorInfo(ir.ErrorKind.BAD_REQUEST, exc.message, 400, param=exc.param)
        return await send_exchange(
            request, error_exchange(anthropic_format, info, should_retry=False)
        )
    return _json({"input_tokens": estimate_request_tokens(chat)})


async def _healthz(_: web.Request) -> web.Response:
    return _json({"status": "ok"})


async def _readyz(request: web.Request) -> web.Response:
    """Ready while the routes are loaded. Limits fallen back from Redis to this instance's
    own (``shared.redis`` is ``local``) are said here but keep it ready: pulling every
    instance out of a load balancer because Redis is down would turn a degraded limit into
    an outage."""
    gateway = request.app[GATEWAY_KEY]
    return _json(
        {"status": "ready", "routes": len(gateway.routes), "shared": gateway.shared_status()}
    )


def _client_error(request: web.Request, info: ir.ErrorInfo) -> web.Response:
    """An error in the format the client seems to speak (Anthropic SDKs send their version)."""
    fmt = anthropic_format if "anthropic-version" in request.headers else openai_format
    exchange = error_exchange(fmt, info, should_retry=False)
    return web.Response(body=exchange.body, status=exchange.status, headers=exchange.headers)


@web.middleware
async def _client_format_errors(request: web.Request, handler: Any) -> web.StreamResponse:
    """Unknown paths and wrong methods answer in the client's error format, not HTML."""
    try:
        response: web.StreamResponse = await handler(request)
        return response
    except web.HTTPNotFound:
        return _client_error(
            request,
            ir.ErrorInfo(
                ir.ErrorKind.BAD_REQUEST, f"No such endpoint: {request.method} {request.path}", 404
            ),
        )
    except web.HTTPMethodNotAllowed as exc:
        allowed = ", ".join(sorted(exc.allowed_methods))
        return _client_error(
            request,
            ir.ErrorInfo(
                ir.ErrorKind.BAD_REQUEST,
                f"Method {request.method} not allowed on {request.path} (allowed: {allowed})",
                405,
            ),
        )


# The middleware the chat lane does the work of (``hedgerow.server.lane``).
_LANE_MIDDLEWARES = (_client_format_errors, authenticate, scope_middleware)


def create_app(
    gateway: Gateway, config: Config | None = None, header_limits: HeaderLimits | None = None
) -> web.Application:
    """The gateway's aiohttp application.

    ``header_limits``: limits on the request line and headers (size, count, time to
    arrive); by default those of the config's ``server`` section (see
    ``hedgerow.server.protocol``)."""
    config = config or gateway.config
    app = web.Application(
        client_max_size=config.server.max_body_bytes,
        middlewares=[_client_format_errors, authenticate],
    )
    # Per-key limits hold across the workers of `serve --workers N` through their region,
    # and across instances through Redis when `shared.redis_url` is set.
    guard = KeyGuard(
        KeyStore(config.auth.keys, config.auth.keys_db),
        config.auth.prices,
        region=gateway.shared.region,
        remote=gateway.shared.remote,
    )
    app[GATEWAY_KEY] = gateway
    app[GUARD_KEY] = guard
    app[MAX_BODY_KEY] = config.server.max_body_bytes
    app[BODY_TIMEOUT_KEY] = config.server.body_timeout
    max_messages = config.server.max_messages
    chat = {
        "/v1/chat/completions": ChatHandler(gateway, openai_format, max_messages, guard),
        "/v1/messages": ChatHandler(gateway, anthropic_format, max_messages, guard),
    }
    for path, handler in chat.items():
        app.router.add_post(path, handler.handle)
    limits = header_limits or HeaderLimits.from_config(config.server)

    def lane() -> Lane | None:
        """The chat lane, unless middleware or signals not hedgerow's were added to the app
        (the lane would pass them by)."""
        if any(m not in _LANE_MIDDLEWARES for m in app.middlewares) or app.on_response_prepare:
            log.info("chat endpoints served by aiohttp: the app has middleware of its own")
            return None
        return Lane(
            chat,
            guard=guard,
            limits=limits,
            max_body=config.server.max_body_bytes,
            body_timeout=config.server.body_timeout,
            keepalive_timeout=KEEPALIVE_TIMEOUT,
            scoped=open_scope if scope_middleware in app.middlewares else None,
        )

    install(app, limits, lane)
    app.router.add_post("/v1/messages/count_tokens", _count_tokens)
    app.router.add_get("/v1/models", _models)
    app.router.add_get("/healthz", _healthz)
    app.router.add_get("/readyz", _readyz)
    if config.observe.enabled:
        install_observability(app, gateway, config)

    # Background jobs: POST /v1/jobs, the router's `queue` degradation, in-process workers.
    queue = open_queue(config.jobs)
    gateway.set_job_sink(QueueSink(queue))
    add_job_routes(app, queue, routes=list(gateway.routes))
    if config.jobs.workers > 0:
        app.cleanup_ctx.append(start_workers(gateway, queue, config.jobs))
    if config.server.release_memory_every > 0:
        app.cleanup_ctx.append(releasing_memory(config.server.release_memory_every))

    async def close_gateway(_: web.Application) -> None:
        await gateway.aclose()
        guard.close()
        guard.store.close()

    app.on_cleanup.append(close_gateway)
    return app


def install_uvloop() -> bool:
    """Use uvloop's event loop when it is installed (it is a dependency on POSIX)."""
    try:
        import uvloop
    except ImportError:  # pragma: no cover - windows
        return False
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    return True


def serve(config: Config, host: str, port: int, drain: float = 10.0) -> None:
    """Run the gateway server until SIGTERM or SIGINT; open requests and streams get
    ``drain`` seconds to finish (``hedgerow.server.workers.serve_app``, as each worker of
    ``--workers N`` runs it)."""
    from hedgerow.server.workers import listening_socket, serve_app

    install_uvloop()
    # hedgerow's own logs as JSON lines with every configured secret masked.
    listener = configure_logging(Redactor(config_secrets(config)))
    app = create_app(Gateway(config), config)
    try:
        # A lone server's port is its own: no SO_REUSEPORT, so a port in use fails here.
        sock = listening_socket(host, port, reuse_port=False)
        asyncio.run(serve_app(app, sock, drain))
    finally:
        listener.stop()
