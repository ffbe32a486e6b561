"""``hedgerow demo`` for now: a self-check that exercises each native primitive and reports.

It drives every state machine with an explicit clock (``now``), so what it prints is exact
and the same on every machine, and it times each call so a newcomer sees the hot path's cost.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable

from hedgerow import CircuitBreaker, SlidingWindow, TokenBucket, __version__

__all__ = ["run_selfcheck"]


def _ns_per_call(fn: Callable[[], object], calls: int = 200_000) -> float:
    """Median over 5 runs of the mean nanoseconds per call of ``fn``."""
    runs = []
    for _ in range(5):
        start = time.perf_counter_ns()
        for _ in range(calls):
            fn()
        runs.append((time.perf_counter_ns() - start) / calls)
    return statistics.median(runs)


class _Check:
    def __init__(self) -> None:
        self.failures: list[str] = []

    def expect(self, what: str, ok: bool) -> None:
        print(f"  [{'ok' if ok else 'FAIL'}] {what}")
        if not ok:
            self.failures.append(what)


def _breaker(check: _Check) -> None:
    print("CircuitBreaker: 5 consecutive failures open it; it half-opens, a probe closes it")
    breaker = CircuitBreaker(consecutive_failures=5, open_base=5.0, open_jitter=0.0)
    t = 1000.0
    for i in range(5):
        check.expect(f"t={t - 1000:.1f}s call {i + 1} allowed while closed", breaker.allow(now=t))
        breaker.record("529", 0.2, now=t)
        t += 0.1
    check.expect("open after 5 failures", breaker.snapshot(now=t)["state"] == "open")
    check.expect("open breaker refuses calls", not breaker.allow(now=t))
    t += 5.0
    check.expect(
        "half-open after the 5 s open period", breaker.snapshot(now=t)["state"] == "half_open"
    )
    check.expect("one probe admitted", breaker.allow(now=t))
    check.expect("a second concurrent probe refused", not breaker.allow(now=t))
    breaker.record("success", 0.3, now=t)
    check.expect("closed after the probe succeeded", breaker.snapshot(now=t)["state"] == "closed")
    fresh = CircuitBreaker()
    cost = _ns_per_call(lambda: (fresh.allow(now=1.0), fresh.record("success", 0.1, now=1.0)))
    print(f"  allow()+record(): {cost:.0f} ns per pair")


def _bucket(check: _Check) -> None:
    print("TokenBucket (GCRA): 100 requests/s with a burst of 10")
    bucket = TokenBucket(100, per=1.0, burst=10)
    granted = sum(bucket.try_acquire(now=50.0) for _ in range(50))
    check.expect(f"a burst at one instant grants exactly 10 (granted {granted})", granted == 10)
    wait = bucket.retry_after(now=50.0)
    check.expect(
        f"the next token is due in 10 ms (retry_after={wait * 1000:.2f} ms)",
        abs(wait - 0.01) < 1e-9,
    )
    over_second = sum(bucket.try_acquire(now=50.0 + i / 1000) for i in range(1, 1001))
    check.expect(
        f"one second later 100 more were granted (granted {over_second})", over_second == 100
    )
    weighted = TokenBucket(60_000, per=60.0)
    check.expect(
        "weighted cost: 1,234 tokens of a 60,000/min budget", weighted.try_acquire(1234, now=0.0)
    )
    check.expect("a cost above the burst is refused", not weighted.try_acquire(60_001, now=0.0))
    hot = TokenBucket(1e9)
    print(f"  try_acquire(): {_ns_per_call(lambda: hot.try_acquire(now=1.0)):.0f} ns per call")


def _window(check: _Check) -> None:
    print("SlidingWindow: 60 s of 1,000 calls, 5% of them 529, latencies 1..1000 ms")
    window = SlidingWindow(window=60.0, slots=60)
    latencies = [(i % 1000 + 1) / 1000 for i in range(1000)]
    for i, latency in enumerate(latencies):
        window.record("529" if i % 20 == 0 else "success", latency, now=100.0 + i * 0.05)
    now = 100.0 + 999 * 0.05
    rate = window.error_rate(now=now)
    check.expect(f"error rate 5.0% (measured {rate * 100:.1f}%)", abs(rate - 0.05) < 1e-9)
    exact = sorted(latencies)
    for q in (0.5, 0.95, 0.99):
        got = window.quantile(q, now=now)
        want = exact[int(q * len(exact)) - 1]
        assert got is not None
        err = abs(got - want) / want
        check.expect(
            f"p{int(q * 100)} {got * 1000:.1f} ms vs exact {want * 1000:.1f} ms ({err:.1%} off)",
            err < 0.05,
        )
    check.expect("an hour later the window is empty", window.total(now=now + 3600) == 0)
    print(
        f"  record(): {_ns_per_call(lambda: window.record('success', 0.1, now=now)):.0f} ns per call"
    )


def run_selfcheck() -> int:
    """Exercise each primitive of the native core and print what it measured."""
    print(f"hedgerow {__version__}: native core self-check (time driven through `now`)\n")
    check = _Check()
    for section in (_breaker, _bucket, _window):
        section(check)
        print()
    if check.failures:
        print(f"self-check FAILED: {len(check.failures)} expectation(s) not met")
        return 1
    print("self-check passed")
    return 0
