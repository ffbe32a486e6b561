"""Per-request admission for a gateway key: routes, rate limits, concurrency, budget.

Authorization is decided from the key alone: never from Host, X-Forwarded-* or any other
header a client can set.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping

import msgspec

from hedgerow import TokenBucket, ir
from hedgerow.security.keys import KeyRecord, KeyStore

__all__ = ["KeyGuard", "Price", "key_from_headers"]


class Price(msgspec.Struct, forbid_unknown_fields=True):
    """Price per million tokens of one deployment (``provider/model``)."""

    input: float = 0.0
    output: float = 0.0


def key_from_headers(headers: Mapping[str, str]) -> str | None:
    """The key a client sent: ``Authorization: Bearer KEY``, ``x-api-key: KEY``, or — for a
    browser opening the dashboard — ``Authorization: Basic`` with the key as the password."""
    auth = headers.get("authorization")
    if auth:
        scheme, _, value = auth.partition(" ")
        scheme = scheme.lower()
        if scheme == "bearer" and value.strip():
            return value.strip()
        if scheme == "basic":
            try:
                decoded = base64.b64decode(value.strip(), validate=True).decode("utf-8")
            except (ValueError, UnicodeDecodeError):
                return None
            password = decoded.partition(":")[2]
            return password or None
    key = headers.get("x-api-key")
    return key.strip() if key else None


def _denied(
    message: str, status: int, kind: ir.ErrorKind = ir.ErrorKind.BAD_REQUEST
) -> ir.ErrorInfo:
    return ir.ErrorInfo(kind, message, status=status)


class KeyGuard:
    """Holds each key's buckets and in-flight count; the store holds the keys themselves."""

    def __init__(self, store: KeyStore, prices: Mapping[str, Price] | None = None) -> None:
        self.store = store
        self.prices = dict(prices or {})
        self._buckets: dict[str, tuple[TokenBucket | None, TokenBucket | None]] = {}
        self._in_flight: dict[str, int] = {}

    @property
    def enabled(self) -> bool:
        """False in local mode (no keys configured): every request is let in."""
        return self.store.enabled

    def authenticate(self, headers: Mapping[str, str]) -> KeyRecord | ir.ErrorInfo:
        """The caller's key record, or the 401 to answer with."""
        key = key_from_headers(headers)
        if not key:
            return _denied(
                "Missing gateway key: send it as `Authorization: Bearer KEY` or `x-api-key: KEY`",
                401,
                ir.ErrorKind.AUTH,
            )
        record = self.store.lookup(key)
        if record is None:
            return _denied("Invalid or revoked gateway key", 401, ir.ErrorKind.AUTH)
        return record

    def _buckets_of(self, record: KeyRecord) -> tuple[TokenBucket | None, TokenBucket | None]:
        buckets = self._buckets.get(record.sha256)
        if buckets is None:
            buckets = (
                TokenBucket(record.rpm, per=60.0) if record.rpm else None,
                TokenBucket(record.tpm, per=60.0) if record.tpm else None,
            )
            self._buckets[record.sha256] = buckets
        return buckets

    def admit(self, record: KeyRecord, route: str, tokens: int) -> ir.ErrorInfo | None:
        """Let one request of ``record`` on ``route`` in, or say why not (403, 429, 402).

        On success the request counts as in flight until ``release``.
        """
        if record.routes is not None and route not in record.routes:
            return _denied(f"This key may not use the route `{route}`", 403)
        if record.budget is not None and self.store.spent(record) >= record.budget:
            return _denied("This key has spent its budget", 402)
        in_flight = self._in_flight.get(record.sha256, 0)
        if record.max_concurrent is not None and in_flight >= record.max_concurrent:
            info = _denied(
                f"This key already has {in_flight} requests in flight (its limit)",
                429,
                ir.ErrorKind.RATE_LIMITED,
            )
            info.retry_after = 1.0
            return info
        rpm, tpm = self._buckets_of(record)
        for bucket, cost, what in ((rpm, 1.0, "requests"), (tpm, float(tokens), "tokens")):
            if bucket is None or not cost:
                continue
            wait = bucket.acquire(cost)
            if wait > 0:
                info = _denied(
                    f"This key is over its {what}-per-minute limit", 429, ir.ErrorKind.RATE_LIMITED
                )
                info.retry_after = wait
                return info
        self._in_flight[record.sha256] = in_flight + 1
        return None

    def release(self, record: KeyRecord) -> None:
        """The request admitted for ``record`` is over."""
        count = self._in_flight.get(record.sha256, 0)
        if count <= 1:
            self._in_flight.pop(record.sha256, None)
        else:
            self._in_flight[record.sha256] = count - 1

    def charge(self, record: KeyRecord, deployment: str | None, usage: ir.Usage | None) -> float:
        """Add a response's cost (usage x the deployment's price) to the key's spend."""
        if usage is None or deployment is None:
            return 0.0
        price = self.prices.get(deployment)
        if price is None:
            return 0.0
        cost = (
            (usage.input_tokens + usage.cache_read_tokens + usage.cache_write_tokens) * price.input
            + usage.output_tokens * price.output
        ) / 1_000_000
        self.store.add_spend(record, cost)
        return cost
