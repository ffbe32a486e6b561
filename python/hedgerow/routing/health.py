"""What the router knows about one deployment's health, held in the native core.

Per deployment: a circuit breaker, a sliding window of outcomes and latencies, a sliding
window of times to first content (for latency-aware balancing and ``auto`` hedging), the
optional RPM/TPM token buckets, the calls in flight, and a pause a 429 asked for.
"""

from __future__ import annotations

import math
from typing import Literal

from hedgerow import CircuitBreaker, SlidingWindow, TokenBucket
from hedgerow._core import SharedBucket
from hedgerow.config import BreakerConfig
from hedgerow.ir import ErrorInfo, ErrorKind
from hedgerow.routing.shared import SharedHealth

__all__ = ["Health", "Outcome", "outcome_of"]

Outcome = Literal["success", "5xx", "529", "429", "timeout", "other"]

_KIND_OUTCOMES: dict[ErrorKind, Outcome | None] = {
    ErrorKind.SERVER_ERROR: "5xx",
    ErrorKind.BAD_GATEWAY: "5xx",
    ErrorKind.UNAVAILABLE: "5xx",
    ErrorKind.GATEWAY_TIMEOUT: "5xx",
    ErrorKind.OVERLOADED: "529",
    ErrorKind.RATE_LIMITED: "429",
    ErrorKind.TIMEOUT: "timeout",
    ErrorKind.REQUEST_TIMEOUT: "timeout",
    ErrorKind.CONNECT: "other",
    ErrorKind.CONFLICT: "other",
    ErrorKind.MALFORMED: "other",
    ErrorKind.AUTH: "other",
    # The request's own fault: the deployment answered properly.
    ErrorKind.BAD_REQUEST: None,
    ErrorKind.CONTEXT_WINDOW: None,
}
_STREAM_TYPES: dict[str, Outcome] = {
    "overloaded_error": "529",
    "rate_limit_error": "429",
    "RESOURCE_EXHAUSTED": "429",
}

# Quantile reads merge every slot's histogram: refreshed at most this often (seconds).
_ESTIMATE_TTL = 1.0


def outcome_of(info: ErrorInfo) -> Outcome | None:
    """The window/breaker class of a failure; ``None`` when it is not the deployment's fault."""
    if info.kind is ErrorKind.STREAM_ERROR:
        return _STREAM_TYPES.get(info.provider_type or "", "5xx")
    return _KIND_OUTCOMES.get(info.kind, "other")


class Health:
    """One deployment's health state (shared by every route that uses the deployment)."""

    __slots__ = (
        "_p50",
        "_p50_at",
        "_ttfc_at",
        "_ttfc_p95",
        "breaker",
        "in_flight",
        "key",
        "local_rpm",
        "local_tpm",
        "paused_until",
        "probation_rate",
        "rpm",
        "rpm_rate",
        "shared",
        "tpm",
        "tpm_rate",
        "ttfc",
        "window",
    )

    def __init__(
        self,
        breaker: BreakerConfig,
        rpm: float | None = None,
        tpm: float | None = None,
        *,
        key: str = "",
        shared: SharedHealth | None = None,
    ) -> None:
        self.breaker = CircuitBreaker(
            failure_rate_threshold=breaker.failure_rate,
            minimum_calls=breaker.minimum_calls,
            window=breaker.window,
            consecutive_failures=breaker.consecutive_failures,
            slow_call_threshold=breaker.slow_call,
            open_base=breaker.open_base,
            open_max=breaker.open_max,
            half_open_probes=breaker.half_open_probes,
        )
        self.window = SlidingWindow(window=breaker.window, slots=60)
        self.probation_rate = breaker.probation_error_rate
        self.ttfc = SlidingWindow(window=300.0, slots=60)
        # With other copies of the gateway, ``rpm``/``tpm`` are the shared limits (a host's
        # region, else local here and Redis in ``remote_limit``); ``local_*`` are this
        # process's own, the fallback when Redis is unreachable.
        self.key = key
        self.shared = shared if shared is not None and shared.active else None
        self.rpm_rate = rpm
        self.tpm_rate = tpm
        self.local_rpm = TokenBucket(rpm, per=60.0) if rpm else None
        self.local_tpm = TokenBucket(tpm, per=60.0) if tpm else None
        self.rpm: TokenBucket | SharedBucket | None = self.local_rpm
        self.tpm: TokenBucket | SharedBucket | None = self.local_tpm
        if self.shared is not None:
            if rpm:
                self.rpm = self.shared.bucket(f"rpm:{key}", rpm, 60.0) or self.local_rpm
            if tpm:
                self.tpm = self.shared.bucket(f"tpm:{key}", tpm, 60.0) or self.local_tpm
        self.in_flight = 0
        self.paused_until = 0.0
        self._p50: float | None = None
        self._p50_at = -math.inf
        self._ttfc_p95: float | None = None
        self._ttfc_at = -math.inf

    def wait(self, now: float) -> float:
        """Seconds before this deployment may be tried: 0.0 now, ``inf`` while its breaker
        is open with no known end (forced)."""
        if self.paused_until > now:
            return self.paused_until - now
        if self.shared is not None:
            until = self.shared.open_until(self.key)
            if until is not None and until > now:
                return until - now  # another copy's breaker opened
        if self.breaker.state_at(now) == "open":
            until = self.breaker.snapshot(now)["open_until"]
            return math.inf if until is None else max(0.0, until - now)
        return 0.0

    def admit(self, now: float, tokens: int) -> float:
        """Take this deployment for one call: 0.0 when admitted, else seconds to wait.

        The order matters: the cheap refusals first, the buckets next, and the breaker's
        ``allow`` last, since in half-open it hands out a probe permit.
        """
        wait = self.wait(now)
        if wait > 0:
            return wait
        wait = self.limit(now, tokens)
        if wait > 0:
            return wait
        if not self.breaker.allow(now):
            return math.inf
        return 0.0

    def limit(self, now: float, tokens: int) -> float:
        """Take one request (and ``tokens``) from the rate limits: 0.0, or seconds to wait."""
        if self.rpm is not None:
            wait = self.rpm.acquire(1.0, now)
            if wait > 0:
                return wait
        if self.tpm is not None and tokens:
            wait = self.tpm.acquire(float(tokens), now)
            if wait > 0:
                return wait
        return 0.0

    async def remote_admit(self, now: float, tokens: int) -> float:
        """``admit`` with the limits held in Redis (several instances); this process's own
        limits stand in while Redis is unreachable."""
        wait = self.wait(now)
        if wait > 0:
            return wait
        remote = self.shared.remote if self.shared is not None else None
        assert remote is not None
        wait = 0.0
        fallback = False
        if self.rpm_rate:
            got = await remote.acquire(f"rpm:{self.key}", self.rpm_rate, 60.0, 1.0)
            fallback = got is None
            wait = got or 0.0
        if not wait and not fallback and self.tpm_rate and tokens:
            got = await remote.acquire(f"tpm:{self.key}", self.tpm_rate, 60.0, float(tokens))
            fallback = got is None
            wait = got or 0.0
        if fallback:
            wait = self.limit(now, tokens)
        if wait > 0:
            return wait
        if not self.breaker.allow(now):
            return math.inf
        return 0.0

    def record(self, outcome: Outcome, latency: float, now: float) -> str | None:
        """Count one call's outcome; returns the breaker's new state on a transition."""
        self.window.record(outcome, latency, now)
        transition = self.breaker.record(outcome, latency, now)
        if transition is not None and self.shared is not None:
            if transition == "open":
                until = self.breaker.snapshot(now)["open_until"]
                if until is not None:
                    self.shared.tripped(self.key, until, now)
            elif transition == "closed":
                self.shared.recovered(self.key, now)
        return transition

    def on_probation(self, now: float) -> bool:
        """Whether its streams should reach clients only whole: its breaker is probing it,
        or at least ``probation_error_rate`` of its calls over the window failed. A stream
        cut after its first content cannot fail over any more; held back whole, it can."""
        return (
            self.breaker.state_at(now) == "half_open"
            or self.window.error_rate(now) >= self.probation_rate
        )

    def record_ttfc(self, seconds: float, now: float) -> None:
        """Count a time to first content."""
        self.ttfc.record("success", seconds, now)

    def pause(self, seconds: float, now: float) -> None:
        """Take the deployment out of selection for ``seconds`` (a 429's Retry-After)."""
        self.paused_until = max(self.paused_until, now + seconds)

    def latency_p50(self, now: float) -> float | None:
        """Median latency over the window (cached for a second: it merges histograms)."""
        if now - self._p50_at > _ESTIMATE_TTL:
            self._p50 = self.window.quantile(0.5, now)
            self._p50_at = now
        return self._p50

    def ttfc_p95(self, now: float) -> float | None:
        """p95 time to first content (cached for a second)."""
        if now - self._ttfc_at > _ESTIMATE_TTL:
            self._ttfc_p95 = self.ttfc.quantile(0.95, now)
            self._ttfc_at = now
        return self._ttfc_p95
