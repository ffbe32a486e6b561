"""Every bad argument raises ValueError whose message starts with the argument's name."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import pytest

from hedgerow import CircuitBreaker, KeyedTokenBucket, SlidingWindow, TokenBucket

NAN = math.nan
INF = math.inf

bucket = TokenBucket(10)
keyed = KeyedTokenBucket(10)
window = SlidingWindow()
breaker = CircuitBreaker()

CASES: list[tuple[str, Callable[[], Any]]] = [
    # TokenBucket
    ("rate", lambda: TokenBucket(-1.0)),
    ("rate", lambda: TokenBucket(0)),
    ("rate", lambda: TokenBucket(NAN)),
    ("rate", lambda: TokenBucket(INF)),
    ("rate", lambda: TokenBucket(2e9)),
    ("per", lambda: TokenBucket(1, per=0)),
    ("per", lambda: TokenBucket(1, per=-2.0)),
    ("burst", lambda: TokenBucket(1, burst=0)),
    ("burst", lambda: TokenBucket(1, burst=NAN)),
    ("cost", lambda: bucket.try_acquire(cost=-1)),
    ("cost", lambda: bucket.acquire(cost=NAN)),
    ("cost", lambda: bucket.retry_after(cost=INF)),
    ("now", lambda: bucket.try_acquire(now=NAN)),
    ("now", lambda: bucket.acquire(now=-1.0)),
    ("now", lambda: bucket.retry_after(now=INF)),
    ("now", lambda: bucket.remaining(now=NAN)),
    # KeyedTokenBucket
    ("rate", lambda: KeyedTokenBucket(-1)),
    ("capacity", lambda: KeyedTokenBucket(1, capacity=0)),
    ("capacity", lambda: KeyedTokenBucket(1, capacity=-5)),
    ("cost", lambda: keyed.try_acquire("k", cost=-0.5)),
    ("cost", lambda: keyed.acquire("k", cost=NAN)),
    ("now", lambda: keyed.retry_after("k", now=NAN)),
    ("now", lambda: keyed.remaining("k", now=-3.0)),
    ("now", lambda: keyed.active_keys(now=NAN)),
    # SlidingWindow
    ("window", lambda: SlidingWindow(window=0)),
    ("window", lambda: SlidingWindow(window=-1.0)),
    ("window", lambda: SlidingWindow(window=NAN)),
    ("slots", lambda: SlidingWindow(slots=0)),
    ("slots", lambda: SlidingWindow(slots=-1)),
    ("slots", lambda: SlidingWindow(slots=100_000)),
    ("outcome", lambda: window.record("bogus")),  # type: ignore[arg-type]
    ("outcome", lambda: window.record("503")),  # type: ignore[arg-type]
    ("outcome", lambda: window.error_rate(outcome="fail")),  # type: ignore[arg-type]
    ("latency", lambda: window.record("success", latency=NAN)),
    ("latency", lambda: window.record("success", latency=-0.1)),
    ("latency", lambda: window.record("success", latency=INF)),
    ("q", lambda: window.quantile(-0.1)),
    ("q", lambda: window.quantile(1.5)),
    ("q", lambda: window.quantile(NAN)),
    ("now", lambda: window.record("success", now=NAN)),
    ("now", lambda: window.counts(now=NAN)),
    ("now", lambda: window.quantiles(now=-1.0)),
    # CircuitBreaker
    ("failure_rate_threshold", lambda: CircuitBreaker(failure_rate_threshold=0.0)),
    ("failure_rate_threshold", lambda: CircuitBreaker(failure_rate_threshold=1.5)),
    ("failure_rate_threshold", lambda: CircuitBreaker(failure_rate_threshold=-0.1)),
    ("failure_rate_threshold", lambda: CircuitBreaker(failure_rate_threshold=NAN)),
    ("minimum_calls", lambda: CircuitBreaker(minimum_calls=0)),
    ("window", lambda: CircuitBreaker(window=0)),
    ("window_slots", lambda: CircuitBreaker(window_slots=0)),
    ("consecutive_failures", lambda: CircuitBreaker(consecutive_failures=-1)),
    ("slow_call_threshold", lambda: CircuitBreaker(slow_call_threshold=0.0)),
    ("slow_call_threshold", lambda: CircuitBreaker(slow_call_threshold=NAN)),
    ("open_base", lambda: CircuitBreaker(open_base=0)),
    ("open_base", lambda: CircuitBreaker(open_base=INF)),
    ("open_max", lambda: CircuitBreaker(open_base=10, open_max=5)),
    ("open_jitter", lambda: CircuitBreaker(open_jitter=-0.1)),
    ("open_jitter", lambda: CircuitBreaker(open_jitter=1.0)),
    ("half_open_probes", lambda: CircuitBreaker(half_open_probes=0)),
    ("half_open_probes", lambda: CircuitBreaker(half_open_probes=256)),
    ("half_open_successes", lambda: CircuitBreaker(half_open_successes=0)),
    ("failure_outcomes", lambda: CircuitBreaker(failure_outcomes={"success"})),
    ("failure_outcomes", lambda: CircuitBreaker(failure_outcomes={"bogus"})),  # type: ignore[arg-type]
    ("failure_outcomes", lambda: CircuitBreaker(failure_outcomes="5xx")),  # type: ignore[arg-type]
    ("probe_timeout", lambda: CircuitBreaker(probe_timeout=0.0)),
    ("outcome", lambda: breaker.record("fail")),  # type: ignore[arg-type]
    ("latency", lambda: breaker.record("success", latency=NAN)),
    ("latency", lambda: breaker.record("success", latency=-1.0)),
    ("now", lambda: breaker.allow(now=NAN)),
    ("now", lambda: breaker.record("success", now=NAN)),
    ("now", lambda: breaker.state_at(now=-1.0)),
    ("now", lambda: breaker.snapshot(now=INF)),
    ("now", lambda: breaker.force_open(now=NAN)),
    ("now", lambda: breaker.force_closed(now=NAN)),
    ("now", lambda: breaker.release(now=NAN)),
    ("trips", lambda: breaker.open_duration(0)),
]


@pytest.mark.parametrize(
    ("name", "call"), CASES, ids=[f"{i}-{name}" for i, (name, _) in enumerate(CASES)]
)
def test_bad_argument_raises_value_error_naming_it(name: str, call: Callable[[], Any]) -> None:
    with pytest.raises(ValueError, match=rf"^{name} ") as info:
        call()
    # The message also shows the rejected value (or the allowed range).
    assert len(str(info.value)) > len(name) + 10


def test_message_shows_value() -> None:
    with pytest.raises(ValueError, match=r"^rate must be a finite number > 0, got -1\.0$"):
        TokenBucket(-1.0)
    with pytest.raises(ValueError, match=r"got nan$"):
        window.record("success", latency=NAN)
    with pytest.raises(ValueError, match=r"got 'bogus'$|got \"bogus\"$"):
        window.record("bogus")  # type: ignore[arg-type]
