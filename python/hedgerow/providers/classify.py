"""Turn an upstream failure into the router's one vocabulary (``ir.ErrorKind``), with how
long the provider asked us to wait.

Every adapter funnels its failures through ``classify_http`` so that a 529 from Anthropic, a
503 from OpenAI and an ``UNAVAILABLE`` from Gemini mean the same thing to the router.
"""

from __future__ import annotations

import email.utils
import re
import time
from collections.abc import Callable, Mapping
from datetime import datetime

from hedgerow.ir import ErrorInfo, ErrorKind

__all__ = ["classify_http", "parse_retry_after"]

_GO_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ms|us|µs|ns|h|m|s)")
_GO_UNITS = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 1e-3, "us": 1e-6, "µs": 1e-6, "ns": 1e-9}


def _go_duration(text: str) -> float | None:
    """``6m0s`` / ``1.5s`` / ``12ms`` (OpenAI's x-ratelimit-reset-*) in seconds."""
    parts = _GO_DURATION.findall(text)
    if not parts or "".join(n + u for n, u in parts) != text.strip():
        return None
    return sum(float(n) * _GO_UNITS[u] for n, u in parts)


def parse_retry_after(headers: Mapping[str, str], now: float | None = None) -> float | None:
    """Seconds to wait before retrying, from whatever the provider sent, or ``None``.

    Precedence follows the official SDKs: ``retry-after-ms``, then ``retry-after`` (seconds or
    an HTTP date), then the rate-limit reset headers (OpenAI Go durations, Anthropic RFC 3339).
    ``now`` is wall-clock epoch seconds (only HTTP dates and RFC 3339 stamps need it).
    """
    get = headers.get
    value = get("retry-after-ms")
    if value:
        try:
            ms = float(value)
            if ms >= 0:
                return ms / 1000.0
        except ValueError:
            pass
    value = get("retry-after")
    if value:
        value = value.strip()
        try:
            seconds = float(value)
            if seconds >= 0:
                return seconds
        except ValueError:
            try:
                when = email.utils.parsedate_to_datetime(value)
                wall = time.time() if now is None else now
                return max(0.0, when.timestamp() - wall)
            except (TypeError, ValueError):
                pass
    waits: list[float] = []
    for name in ("x-ratelimit-reset-requests", "x-ratelimit-reset-tokens"):
        raw = get(name)
        if raw:
            d = _go_duration(raw)
            if d is not None:
                waits.append(d)
    for name in (
        "anthropic-ratelimit-requests-reset",
        "anthropic-ratelimit-tokens-reset",
        "anthropic-ratelimit-input-tokens-reset",
        "anthropic-ratelimit-output-tokens-reset",
    ):
        raw = get(name)
        if raw:
            try:
                stamp = datetime.fromisoformat(raw.replace("Z", "+00:00"))
            except ValueError:
                continue
            wall = time.time() if now is None else now
            waits.append(max(0.0, stamp.timestamp() - wall))
    # Only a limit that is exhausted makes its reset time a wait; the shortest is the earliest.
    return min(waits) if waits else None


def classify_http(
    status: int,
    headers: Mapping[str, str],
    provider_type: str | None,
    message: str,
    classify_error: Callable[[int, str | None, str], ErrorKind],
) -> ErrorInfo:
    """Classify a non-2xx upstream answer (``provider_type`` and ``message`` from its body).

    The kind comes from the provider's format (``formats.X.classify_error``: the one copy of
    each dialect's status and type tables); this adds what the headers say about waiting.
    """
    kind = classify_error(status, provider_type, message)
    waits = kind in (ErrorKind.RATE_LIMITED, ErrorKind.OVERLOADED, ErrorKind.UNAVAILABLE)
    retry_after = (
        parse_retry_after(headers)
        if waits or "retry-after" in headers or "retry-after-ms" in headers
        else None
    )
    return ErrorInfo(
        kind=kind,
        message=message,
        status=status,
        provider_type=provider_type,
        retry_after=retry_after,
    )
