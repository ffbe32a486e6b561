"""Per-request admission for a gateway key: routes, rate limits, concurrency, budget.

Authorization is decided from the key alone: never from Host, X-Forwarded-* or any other
header a client can set.

Under ``hedgerow serve --workers N`` a key's limits hold across the workers, not N times
over: its RPM/TPM buckets are GCRA words in the host's shared region (the same mechanism as
a deployment's ``rpm``/``tpm``, ``hedgerow._core.SharedState``), and its requests in flight
are counted per worker in the region and summed (``SharedMember``; a worker that dies stops
counting once it is found dead). Without a region (one process), or when the region is
full, the limits are this process's own.
"""

from __future__ import annotations

import base64
import contextlib
import logging
import os
from collections.abc import Mapping
from typing import Protocol

import msgspec

from hedgerow import TokenBucket, ir
from hedgerow._core import SharedBucket, SharedMember, SharedState
from hedgerow.security.keys import KeyRecord, KeyStore

__all__ = ["KeyGuard", "Price", "key_from_headers"]

log = logging.getLogger("hedgerow.security")

_Bucket = TokenBucket | SharedBucket


class RemoteLimits(Protocol):
    """Limits shared between instances (``hedgerow.routing.remote.RemoteHealth``)."""

    async def acquire(self, name: str, rate: float, per: float, cost: float) -> float | None:
        """0.0, seconds to wait, or ``None`` when the shared store is unreachable."""
        ...


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


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process: alive
    return True


def _sweep(region: SharedState) -> None:
    """Evict members of the region whose process is gone (a worker that died)."""
    me = os.getpid()
    for index, pid in region.members():
        if pid != me and not _alive(pid):
            region.evict(index, pid)


class KeyGuard:
    """Holds each key's buckets and in-flight count; the store holds the keys themselves.

    ``region``: the host's shared region (``serve --workers N``), so that the limits hold
    across the workers (see the module)."""

    def __init__(
        self,
        store: KeyStore,
        prices: Mapping[str, Price] | None = None,
        region: SharedState | None = None,
        remote: RemoteLimits | None = None,
    ) -> None:
        self.store = store
        self.prices = dict(prices or {})
        self.region = region
        # Instances sharing Redis (``shared.redis_url``) hold each key's RPM/TPM there.
        self.remote = remote
        self._buckets: dict[tuple[str, float | None, float | None], tuple[_Bucket | None, ...]] = {}
        self._in_flight: dict[str, int] = {}
        # Requests of each key counted in the region (released there, not locally).
        self._shared_held: dict[str, int] = {}
        self._member: SharedMember | None = None
        if region is not None and store.enabled:
            try:
                _sweep(region)
                self._member = region.join(os.getpid())
            except ValueError as exc:
                log.warning("per-key concurrency stays local to this worker: %s", exc)

    def close(self) -> None:
        """Leave the shared region (this process's requests stop counting there)."""
        if self._member is not None:
            self._member.leave()
            self._member = None

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

    def _bucket(self, record: KeyRecord, what: str, rate: float | None) -> _Bucket | None:
        if not rate:
            return None
        if self.region is not None:
            try:
                return self.region.bucket(f"key:{record.sha256}:{what}", rate, per=60.0)
            except ValueError:
                log.warning("shared region full: key %s's limits stay local", record.name)
        return TokenBucket(rate, per=60.0)

    def _buckets_of(self, record: KeyRecord) -> tuple[_Bucket | None, ...]:
        # Keyed by the limits too: a key whose limits were changed in the store gets buckets
        # of its new limits.
        cache_key = (record.sha256, record.rpm, record.tpm)
        buckets = self._buckets.get(cache_key)
        if buckets is None:
            buckets = (
                self._bucket(record, "rpm", record.rpm),
                self._bucket(record, "tpm", record.tpm),
            )
            self._buckets[cache_key] = buckets
        return buckets

    def _take_slot(self, record: KeyRecord) -> bool:
        """One more request of ``record`` in flight, within its ``max_concurrent``."""
        limit = record.max_concurrent
        name = record.sha256
        if limit is not None and self._member is not None:
            try:
                if not self._member.acquire(name, limit):
                    # Refused: a worker that died with requests in flight may hold the
                    # slots. Evict the dead and look once more.
                    assert self.region is not None
                    _sweep(self.region)
                    if not self._member.acquire(name, limit):
                        return False
            except ValueError:
                pass  # region full: count locally below
            else:
                self._shared_held[name] = self._shared_held.get(name, 0) + 1
                self._in_flight[name] = self._in_flight.get(name, 0) + 1
                return True
        in_flight = self._in_flight.get(name, 0)
        if limit is not None and in_flight >= limit:
            return False
        self._in_flight[name] = in_flight + 1
        return True

    def admit(self, record: KeyRecord, route: str, tokens: int) -> ir.ErrorInfo | None:
        """Let one request of ``record`` on ``route`` in, or say why not (403, 429, 402).

        On success the request counts as in flight until ``release``.
        """
        denied = self._enter(record, route)
        if denied is None:
            rpm, tpm = self._buckets_of(record)
            for bucket, cost, what in ((rpm, 1.0, "requests"), (tpm, float(tokens), "tokens")):
                if bucket is not None and cost:
                    denied = self._over(record, what, bucket.acquire(cost))
                    if denied is not None:
                        break
        return denied

    async def admit_shared(self, record: KeyRecord, route: str, tokens: int) -> ir.ErrorInfo | None:
        """``admit`` with the key's RPM/TPM held in Redis, so that several instances grant the
        key's limit once between them (GCRA in one script, as the deployments' limits). While
        Redis is unreachable this instance's own buckets stand in, and nothing fails."""
        remote = self.remote
        assert remote is not None, "admit_shared is for a guard with shared limits (remote)"
        denied = self._enter(record, route)
        if denied is None:
            rpm, tpm = self._buckets_of(record)
            limits = (
                (rpm, record.rpm, 1.0, "requests"),
                (tpm, record.tpm, float(tokens), "tokens"),
            )
            for bucket, rate, cost, what in limits:
                if bucket is None or not rate or not cost:
                    continue
                wait = await remote.acquire(f"key:{record.sha256}:{what}", rate, 60.0, cost)
                if wait is None:  # Redis unreachable: this instance's own limit
                    wait = bucket.acquire(cost)
                denied = self._over(record, what, wait)
                if denied is not None:
                    break
        return denied

    def _enter(self, record: KeyRecord, route: str) -> ir.ErrorInfo | None:
        """The checks before the rate limits: the route, the budget, a slot in flight."""
        if record.routes is not None and route not in record.routes:
            return _denied(f"This key may not use the route `{route}`", 403)
        if record.budget is not None and self.store.spent(record) >= record.budget:
            return _denied("This key has spent its budget", 402)
        if not self._take_slot(record):
            info = _denied(
                f"This key already has {record.max_concurrent} requests in flight (its limit)",
                429,
                ir.ErrorKind.RATE_LIMITED,
            )
            info.retry_after = 1.0
            return info
        return None

    def _over(self, record: KeyRecord, what: str, wait: float) -> ir.ErrorInfo | None:
        """A refusal when a limit says wait (the slot taken by ``_enter`` is given back)."""
        if wait <= 0:
            return None
        self.release(record)
        info = _denied(
            f"This key is over its {what}-per-minute limit", 429, ir.ErrorKind.RATE_LIMITED
        )
        # A cost no bucket can ever hold waits forever: say a minute, the limits' period.
        info.retry_after = min(wait, 60.0)
        return info

    def release(self, record: KeyRecord) -> None:
        """The request admitted for ``record`` is over."""
        name = record.sha256
        held = self._shared_held.get(name, 0)
        if held and self._member is not None:
            with contextlib.suppress(ValueError):
                self._member.release(name)
            if held <= 1:
                self._shared_held.pop(name, None)
            else:
                self._shared_held[name] = held - 1
        count = self._in_flight.get(name, 0)
        if count <= 1:
            self._in_flight.pop(name, None)
        else:
            self._in_flight[name] = count - 1

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
