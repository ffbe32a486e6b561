"""hedgerow inside the official SDKs: an httpx transport that hands requests to a Gateway.

An async service keeps its SDK code and gains failover with no server and no extra hop::

    gw = Gateway.from_file("hedgerow.yaml")
    client = openai.AsyncOpenAI(api_key="unused", http_client=hedgerow.sdk.async_http_client(gw))
    anthropic.AsyncAnthropic(api_key="unused", http_client=hedgerow.sdk.async_http_client(gw))

Current SDKs (openai >= 3, anthropic >= 2) are built on ``httpx2``; older ones on ``httpx``.
``async_http_client`` builds a client of whichever library the SDK uses (``flavour``).
"""

from __future__ import annotations

import importlib
from collections.abc import AsyncIterator
from typing import Any, Literal

from hedgerow.formats import anthropic as anthropic_format
from hedgerow.formats import openai as openai_format
from hedgerow.routing import Gateway
from hedgerow.server.exchange import Exchange, bad_request, chat_exchange, error_exchange

__all__ = ["async_http_client", "gateway_transport"]

Flavour = Literal["httpx2", "httpx"]


async def _exchange_for(gateway: Gateway, method: str, path: str, data: bytes) -> Exchange:
    if method == "POST" and path.endswith("/chat/completions"):
        return await chat_exchange(gateway, openai_format, data)
    if method == "POST" and path.endswith("/messages"):
        return await chat_exchange(gateway, anthropic_format, data)
    fmt = anthropic_format if path.endswith("/messages") else openai_format
    return error_exchange(
        fmt,
        bad_request(
            f"hedgerow's in-process transport serves chat requests, not {method} {path}", status=404
        ),
        should_retry=False,
    )


def gateway_transport(gateway: Gateway, flavour: Flavour = "httpx2") -> Any:
    """An ``AsyncBaseTransport`` of ``flavour`` (``httpx2`` or ``httpx``) bound to ``gateway``."""
    httpx: Any = importlib.import_module(flavour)

    class _Body(httpx.AsyncByteStream):  # type: ignore[misc]
        def __init__(self, exchange: Exchange) -> None:
            self._exchange = exchange

        async def __aiter__(self) -> AsyncIterator[bytes]:
            assert self._exchange.stream is not None
            async for chunk in self._exchange.stream:
                yield chunk

        async def aclose(self) -> None:
            # The SDK closed the response early (or finished): stop the upstream call.
            self._exchange.close()

    class GatewayTransport(httpx.AsyncBaseTransport):  # type: ignore[misc]
        """Hands each request to the gateway; responses stream back as they are produced."""

        async def handle_async_request(self, request: Any) -> Any:
            data = await request.aread()
            exchange = await _exchange_for(gateway, request.method, request.url.path, data)
            if exchange.stream is None:
                return httpx.Response(
                    exchange.status, headers=exchange.headers, content=exchange.body
                )
            return httpx.Response(exchange.status, headers=exchange.headers, stream=_Body(exchange))

        async def aclose(self) -> None:
            await gateway.aclose()

    return GatewayTransport()


def async_http_client(gateway: Gateway, flavour: Flavour = "httpx2", **kwargs: Any) -> Any:
    """An ``AsyncClient`` of ``flavour`` whose requests go to ``gateway`` in-process."""
    httpx: Any = importlib.import_module(flavour)
    kwargs.setdefault("base_url", "http://hedgerow.local")
    return httpx.AsyncClient(transport=gateway_transport(gateway, flavour), **kwargs)
