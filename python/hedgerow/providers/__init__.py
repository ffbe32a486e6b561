"""Upstream transport: the shared client pool, provider adapters, failure classification."""

from hedgerow.providers.adapter import Adapter, format_module
from hedgerow.providers.classify import classify_http, parse_retry_after
from hedgerow.providers.transport import ClientPool, UpstreamError, UpstreamResponse, open_call

__all__ = [
    "Adapter",
    "ClientPool",
    "UpstreamError",
    "UpstreamResponse",
    "classify_http",
    "format_module",
    "open_call",
    "parse_retry_after",
]
