"""The chat endpoints (``POST /v1/chat/completions``, ``POST /v1/messages``) on aiohttp."""

from __future__ import annotations

import asyncio
from types import ModuleType

from aiohttp import web

from hedgerow.routing import Gateway, GatewayError
from hedgerow.security import KeyGuard, KeyRecord
from hedgerow.server.auth import principal_of
from hedgerow.server.exchange import Exchange, bad_request, chat_exchange, error_exchange

__all__ = ["BODY_TIMEOUT_KEY", "MAX_BODY_KEY", "ChatHandler", "read_body", "send_exchange"]

MAX_BODY_KEY: web.AppKey[int] = web.AppKey("max_body_bytes", int)
BODY_TIMEOUT_KEY: web.AppKey[float] = web.AppKey("body_timeout", float)


async def read_body(request: web.Request) -> bytes:
    """The body, or ``GatewayError`` (413) past the app's ``client_max_size``."""
    try:
        if request.content.is_eof():
            return await request.read()  # already all here (the usual case): no timer needed
        async with asyncio.timeout(request.app[BODY_TIMEOUT_KEY]):
            return await request.read()
    except TimeoutError:
        raise GatewayError(
            bad_request("The request body did not arrive in time", status=408)
        ) from None
    except web.HTTPRequestEntityTooLarge:
        limit = request.app[MAX_BODY_KEY]
        raise GatewayError(
            bad_request(f"Request body is larger than the {limit}-byte limit", status=413)
        ) from None


async def send_exchange(request: web.Request, exchange: Exchange) -> web.StreamResponse:
    """Write an ``Exchange`` to the client; a departed client stops the upstream call."""
    if exchange.stream is None:
        return web.Response(body=exchange.body, status=exchange.status, headers=exchange.headers)
    response = web.StreamResponse(status=exchange.status, headers=exchange.headers)
    try:
        await response.prepare(request)
        async for data in exchange.stream:
            await response.write(data)
        await response.write_eof()
    finally:
        exchange.close()
    return response


class ChatHandler:
    """Serves one client wire format through the gateway."""

    __slots__ = ("fmt", "gateway", "guard", "max_messages")

    def __init__(
        self, gateway: Gateway, fmt: ModuleType, max_messages: int, guard: KeyGuard | None = None
    ) -> None:
        self.gateway = gateway
        self.fmt = fmt
        self.max_messages = max_messages
        self.guard = guard

    async def handle(self, request: web.Request) -> web.StreamResponse:
        """Answer one request (the aiohttp handler)."""
        try:
            data = await read_body(request)
        except GatewayError as exc:
            return await send_exchange(
                request, error_exchange(self.fmt, exc.info, should_retry=False)
            )
        return await send_exchange(request, await self.exchange(data, principal_of(request)))

    async def exchange(self, data: bytes, principal: KeyRecord | None) -> Exchange:
        """Answer a request body of this handler's format from the caller ``principal``."""
        return await chat_exchange(
            self.gateway,
            self.fmt,
            data,
            max_messages=self.max_messages,
            guard=self.guard,
            principal=principal,
        )
