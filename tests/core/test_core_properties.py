"""Property tests of the native core's Python API: no input crashes it, invariants hold.

Arbitrary numbers (NaN, infinities, huge, negative) go into every constructor and method:
the only exceptions allowed are ``ValueError`` and ``TypeError`` (a Rust panic would
surface as ``pyo3_runtime.PanicException``, a ``BaseException``, and fail these tests).
"""

from __future__ import annotations

import math
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from hedgerow import CircuitBreaker, KeyedTokenBucket, SlidingWindow, TokenBucket

ANY_FLOAT = st.floats(allow_nan=True, allow_infinity=True) | st.integers(-(2**70), 2**70)
OUTCOMES = st.sampled_from(["success", "5xx", "529", "429", "timeout", "other", "bogus", ""])


def calls_only_raise_value_or_type_errors(fn: Any, *args: Any, **kwargs: Any) -> Any:
    try:
        return fn(*args, **kwargs)
    except (ValueError, TypeError, OverflowError):
        return None


@settings(max_examples=300, deadline=None)
@given(rate=ANY_FLOAT, per=ANY_FLOAT, burst=ANY_FLOAT | st.none(), cost=ANY_FLOAT, now=ANY_FLOAT)
def test_bucket_never_crashes(rate: Any, per: Any, burst: Any, cost: Any, now: Any) -> None:
    bucket = calls_only_raise_value_or_type_errors(TokenBucket, rate, per=per, burst=burst)
    if bucket is None:
        return
    for method in (bucket.try_acquire, bucket.acquire, bucket.retry_after):
        calls_only_raise_value_or_type_errors(method, cost, now=now)
    calls_only_raise_value_or_type_errors(bucket.remaining, now=now)


@settings(max_examples=200, deadline=None)
@given(
    rate=st.floats(0.1, 1e6),
    burst=st.integers(1, 1000),
    steps=st.lists(st.tuples(st.floats(0, 5), st.floats(0.01, 50)), max_size=200),
)
def test_bucket_never_grants_more_than_rate_and_burst_allow(
    rate: float, burst: int, steps: list[tuple[float, float]]
) -> None:
    bucket = TokenBucket(rate, burst=burst)
    now = 100.0
    start = now
    granted = 0.0
    for dt, cost in steps:
        now += dt
        if bucket.try_acquire(cost, now=now):
            granted += cost
    # One nanosecond of rounding per token interval is the stated precision.
    assert granted <= burst + rate * (now - start) + 1e-6 * (1 + granted)


@settings(max_examples=300, deadline=None)
@given(
    threshold=ANY_FLOAT,
    window=ANY_FLOAT,
    minimum=st.integers(-5, 2**40),
    consecutive=st.integers(-5, 2**40),
    open_base=ANY_FLOAT,
    probes=st.integers(-5, 2**40),
    outcome=OUTCOMES,
    latency=ANY_FLOAT,
    now=ANY_FLOAT,
)
def test_breaker_never_crashes(
    threshold: Any,
    window: Any,
    minimum: int,
    consecutive: int,
    open_base: Any,
    probes: int,
    outcome: str,
    latency: Any,
    now: Any,
) -> None:
    breaker = calls_only_raise_value_or_type_errors(
        CircuitBreaker,
        failure_rate_threshold=threshold,
        window=window,
        minimum_calls=minimum,
        consecutive_failures=consecutive,
        open_base=open_base,
        half_open_probes=probes,
    )
    if breaker is None:
        return
    calls_only_raise_value_or_type_errors(breaker.allow, now=now)
    calls_only_raise_value_or_type_errors(breaker.record, outcome, latency, now=now)
    calls_only_raise_value_or_type_errors(breaker.snapshot, now=now)
    calls_only_raise_value_or_type_errors(breaker.state_at, now=now)


@settings(max_examples=200, deadline=None)
@given(
    events=st.lists(
        st.tuples(st.sampled_from(["success", "5xx", "timeout"]), st.floats(0, 2)), max_size=150
    ),
    probes=st.integers(1, 4),
)
def test_breaker_half_open_never_admits_more_than_its_probes(
    events: list[tuple[str, float]], probes: int
) -> None:
    breaker = CircuitBreaker(
        consecutive_failures=2, open_base=1.0, half_open_probes=probes, open_jitter=0.0
    )
    now = 10.0
    for outcome, dt in events:
        now += dt
        state = breaker.state_at(now)
        if state == "half_open":
            admitted = sum(breaker.allow(now=now) for _ in range(probes + 3))
            assert admitted <= probes
            breaker.record(outcome, 0.1, now=now)
        elif breaker.allow(now=now):
            breaker.record(outcome, 0.1, now=now)
        assert breaker.state_at(now) in ("closed", "open", "half_open")


@settings(max_examples=300, deadline=None)
@given(
    window=ANY_FLOAT,
    slots=st.integers(-5, 2**20),
    outcome=OUTCOMES,
    latency=ANY_FLOAT,
    now=ANY_FLOAT,
    q=ANY_FLOAT,
)
def test_window_never_crashes(
    window: Any, slots: int, outcome: str, latency: Any, now: Any, q: Any
) -> None:
    sliding = calls_only_raise_value_or_type_errors(SlidingWindow, window=window, slots=slots)
    if sliding is None:
        return
    calls_only_raise_value_or_type_errors(sliding.record, outcome, latency, now=now)
    calls_only_raise_value_or_type_errors(sliding.quantile, q, now=now)
    calls_only_raise_value_or_type_errors(sliding.error_rate, now=now)
    calls_only_raise_value_or_type_errors(sliding.counts, now=now)


@settings(max_examples=200, deadline=None)
@given(
    records=st.lists(
        st.tuples(st.sampled_from(["success", "5xx", "429"]), st.floats(0, 0.5)), max_size=300
    )
)
def test_window_counts_what_was_recorded_within_it(records: list[tuple[str, float]]) -> None:
    sliding = SlidingWindow(window=60.0, slots=60)
    now = 1000.0
    for outcome, dt in records:
        now += dt
        sliding.record(outcome, 0.01, now=now)
    # Everything fits in the window when the total span is under 60 s minus a slot.
    span = sum(dt for _, dt in records)
    counts = sliding.counts(now=now)
    if span < 59.0:
        assert counts["total"] == len(records)
        for name in ("success", "5xx", "429"):
            assert counts[name] == sum(1 for o, _ in records if o == name)
    assert not math.isnan(sliding.error_rate(now=now))


@settings(max_examples=200, deadline=None)
@given(
    key=st.text(max_size=64),
    rate=ANY_FLOAT,
    capacity=st.integers(-5, 2**33),
    cost=ANY_FLOAT,
    now=ANY_FLOAT,
)
def test_keyed_bucket_never_crashes(
    key: str, rate: Any, capacity: int, cost: Any, now: Any
) -> None:
    keyed = calls_only_raise_value_or_type_errors(KeyedTokenBucket, rate, capacity=capacity)
    if keyed is None:
        return
    calls_only_raise_value_or_type_errors(keyed.try_acquire, key, cost, now=now)
    calls_only_raise_value_or_type_errors(keyed.retry_after, key, cost, now=now)
