"""Authentication on the server: every request but health checks needs a gateway key, and
the admin surface an admin key — decided from the key alone, never from Host,
X-Forwarded-* or any other header a client can set.

With no keys configured (local mode) every request is let in; ``hedgerow serve`` then
listens on 127.0.0.1 only unless told otherwise explicitly.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from types import ModuleType

from aiohttp import web

from hedgerow import ir
from hedgerow.formats import anthropic as anthropic_format
from hedgerow.formats import openai as openai_format
from hedgerow.security import KeyGuard, KeyRecord
from hedgerow.server.exchange import error_exchange

__all__ = [
    "GUARD_KEY",
    "PRINCIPAL_KEY",
    "authenticate",
    "error_format",
    "is_admin_path",
    "is_public_path",
]

GUARD_KEY: web.AppKey[KeyGuard] = web.AppKey("guard", KeyGuard)
PRINCIPAL_KEY: web.RequestKey[KeyRecord] = web.RequestKey("principal", KeyRecord)

# Liveness, readiness and the Prometheus scrape need no key (they reveal no traffic content).
_PUBLIC = frozenset({"/healthz", "/readyz", "/metrics"})
# The admin surface: events, health details, the dashboard, operator controls, job lists.
ADMIN_PREFIXES = ("/admin", "/dashboard", "/v1/events", "/v1/health")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def is_public_path(path: str) -> bool:
    """Paths anyone may call."""
    return path in _PUBLIC


def is_admin_path(method: str, path: str) -> bool:
    """Paths only an admin key may call (listing every job is admin; one's own is not)."""
    if path.startswith(ADMIN_PREFIXES):
        return True
    return method == "GET" and path.rstrip("/") == "/v1/jobs"


def error_format(path: str, headers: Mapping[str, str]) -> ModuleType:
    """The format to refuse a request in: Anthropic's for ``/v1/messages`` and for clients
    that send ``anthropic-version`` (``headers`` matched case-insensitively or lower-case),
    OpenAI's otherwise."""
    if path.startswith("/v1/messages") or "anthropic-version" in headers:
        return anthropic_format
    return openai_format


def _client_error(request: web.Request, info: ir.ErrorInfo) -> web.Response:
    exchange = error_exchange(error_format(request.path, request.headers), info, should_retry=False)
    return web.Response(body=exchange.body, status=exchange.status, headers=exchange.headers)


@web.middleware
async def authenticate(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Let a request in on its key alone; remember the key for per-key limits."""
    guard = request.app[GUARD_KEY]
    if not guard.enabled or is_public_path(request.path):
        return await handler(request)
    found = guard.authenticate(request.headers)
    if isinstance(found, ir.ErrorInfo):
        response = _client_error(request, found)
        if request.path.startswith("/dashboard"):
            # A browser asks for the key (any user name, the key as the password).
            response.headers["www-authenticate"] = 'Basic realm="hedgerow"'
        return response
    if is_admin_path(request.method, request.path) and not found.admin:
        info = ir.ErrorInfo(ir.ErrorKind.BAD_REQUEST, "This needs an admin key", status=403)
        return _client_error(request, info)
    request[PRINCIPAL_KEY] = found
    return await handler(request)


def principal_of(request: web.Request) -> KeyRecord | None:
    """The authenticated key of ``request`` (``None`` in local mode)."""
    return request.get(PRINCIPAL_KEY)
