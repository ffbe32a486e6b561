"""Native core against what a Python user would otherwise pick.

Run: ``.venv/bin/python -m pytest benches/bench_core.py --benchmark-only
--benchmark-columns=median,mean,ops -p no:cacheprovider`` (see benches/README.md).

Every native call uses the real clock (``now=None``), as the router does on its hot path.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from typing import Any

import pybreaker
import pytest
from aiolimiter import AsyncLimiter
from limits import RateLimitItemPerSecond, storage, strategies
from pyrate_limiter import GCRA, Duration, Limiter, Rate
from pyrate_limiter.buckets.state_bucket import StateBucket

from benches.pywindow import PyWindow
from hedgerow import CircuitBreaker, KeyedTokenBucket, SlidingWindow, TokenBucket, monotonic

# Limits far above the call rate, so every call takes the "granted" path.
HUGE = 10**8


def ok() -> None:
    """The protected call: does nothing."""


# -- breaker: one protected call ------------------------------------------------------------


@pytest.mark.benchmark(group="breaker: one call")
def test_native_breaker_allow_record(benchmark: Any) -> None:
    cb = CircuitBreaker()
    allow, record = cb.allow, cb.record

    def call() -> None:
        if allow():
            ok()
            record("success", 0.01)

    benchmark(call)
    assert cb.state == "closed"


@pytest.mark.benchmark(group="breaker: one call")
def test_native_breaker_allow_only(benchmark: Any) -> None:
    benchmark(CircuitBreaker().allow)


@pytest.mark.benchmark(group="breaker: one call")
def test_native_breaker_record_only(benchmark: Any) -> None:
    cb = CircuitBreaker()
    benchmark(cb.record, "success", 0.01)


@pytest.mark.benchmark(group="breaker: one call")
def test_baseline_wrapper_shape(benchmark: Any) -> None:
    """Not a breaker: the wrapper of ``test_native_breaker_allow_record`` with its two native
    calls swapped for the cheapest builtin call (``len``), i.e. what the Python wrapper
    itself costs in that row."""
    empty = ()

    def call() -> None:
        if not len(empty):
            ok()
            len(empty)

    benchmark(call)


@pytest.mark.benchmark(group="breaker: one call")
def test_pybreaker_call(benchmark: Any) -> None:
    cb = pybreaker.CircuitBreaker(fail_max=5, reset_timeout=60)
    benchmark(cb.call, ok)


# -- rate limiting: one acquire --------------------------------------------------------------


@pytest.mark.benchmark(group="rate limit: one acquire")
def test_native_bucket_try_acquire(benchmark: Any) -> None:
    benchmark(TokenBucket(HUGE).try_acquire)


@pytest.mark.benchmark(group="rate limit: one acquire")
def test_native_bucket_acquire_weighted(benchmark: Any) -> None:
    benchmark(TokenBucket(HUGE * 60, per=60).acquire, 1234.0)


@pytest.mark.benchmark(group="rate limit: one acquire")
def test_native_keyed_bucket_try_acquire(benchmark: Any) -> None:
    benchmark(KeyedTokenBucket(HUGE).try_acquire, "tenant-42")


@pytest.mark.benchmark(group="rate limit: one acquire")
def test_limits_fixed_window_hit(benchmark: Any) -> None:
    limiter = strategies.FixedWindowRateLimiter(storage.MemoryStorage())
    item = RateLimitItemPerSecond(HUGE)
    benchmark(limiter.hit, item, "tenant-42")


@pytest.mark.benchmark(group="rate limit: one acquire")
def test_pyrate_limiter_gcra_try_acquire(benchmark: Any) -> None:
    limiter = Limiter(StateBucket([Rate(HUGE, Duration.SECOND)], algorithm=GCRA()))
    benchmark(limiter.try_acquire, "tenant-42", 1, False)


AIO_BATCH = 1000


@pytest.mark.benchmark(group="rate limit: one acquire")
def test_aiolimiter_acquire(benchmark: Any) -> None:
    """aiolimiter is async-only: time a batch of awaits in one event loop, report per call."""
    loop = asyncio.new_event_loop()
    limiter = AsyncLimiter(HUGE, 1)

    async def batch() -> None:
        for _ in range(AIO_BATCH):
            await limiter.acquire()

    def run() -> None:
        loop.run_until_complete(batch())

    try:
        benchmark.pedantic(run, rounds=200, warmup_rounds=5)
    finally:
        loop.close()
    benchmark.extra_info["calls_per_round"] = AIO_BATCH


# -- sliding window: record and error rate ---------------------------------------------------


@pytest.mark.benchmark(group="window: record")
def test_native_window_record(benchmark: Any) -> None:
    benchmark(SlidingWindow().record, "5xx", 0.25)


@pytest.mark.benchmark(group="window: record")
def test_python_window_record(benchmark: Any) -> None:
    benchmark(PyWindow().record, "5xx", 0.25)


def filled(make: Callable[[], Any]) -> Any:
    """A 60 s / 60-slot window with 600 records spread over every slot (10 % errors)."""
    w = make()
    start = monotonic() - 59.0
    for i in range(600):
        w.record("success" if i % 10 else "5xx", 0.05 + i / 1000, start + i * 0.1)
    return w


@pytest.mark.benchmark(group="window: error rate")
def test_native_window_error_rate(benchmark: Any) -> None:
    w = filled(SlidingWindow)
    assert 0.05 < benchmark(w.error_rate) < 0.15


@pytest.mark.benchmark(group="window: error rate")
def test_python_window_error_rate(benchmark: Any) -> None:
    w = filled(PyWindow)
    assert 0.05 < benchmark(w.error_rate) < 0.15


@pytest.mark.benchmark(group="window: quantiles")
def test_native_window_quantiles(benchmark: Any) -> None:
    w = filled(SlidingWindow)
    assert benchmark(w.quantiles) is not None


# -- contention: one bucket, N acquires over 1 or 2 threads ----------------------------------

N_ACQUIRES = 200_000


def acquire_over_threads(threads: int) -> Callable[[], None]:
    def run() -> None:
        bucket = TokenBucket(10**9, burst=10**9)  # always grants: every call is a CAS write
        barrier = threading.Barrier(threads)
        per_thread = N_ACQUIRES // threads

        def work() -> None:
            acquire = bucket.try_acquire
            barrier.wait()
            for _ in range(per_thread):
                acquire()

        pool = [threading.Thread(target=work) for _ in range(threads)]
        for t in pool:
            t.start()
        for t in pool:
            t.join()

    return run


@pytest.mark.benchmark(group="contention: 200k acquires on one bucket")
def test_contention_one_thread(benchmark: Any) -> None:
    benchmark.pedantic(acquire_over_threads(1), rounds=10, warmup_rounds=1)
    benchmark.extra_info["calls_per_round"] = N_ACQUIRES


@pytest.mark.benchmark(group="contention: 200k acquires on one bucket")
def test_contention_two_threads(benchmark: Any) -> None:
    benchmark.pedantic(acquire_over_threads(2), rounds=10, warmup_rounds=1)
    benchmark.extra_info["calls_per_round"] = N_ACQUIRES
