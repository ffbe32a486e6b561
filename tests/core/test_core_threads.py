"""Exactness under threads: fixed `now`, many threads, one object (no sleeps, no timing)."""

from __future__ import annotations

import threading
from collections.abc import Callable

from hedgerow import CircuitBreaker, KeyedTokenBucket, SlidingWindow, TokenBucket

THREADS = 8
T0 = 100.0


def run_threads(work: Callable[[int], int]) -> list[int]:
    barrier = threading.Barrier(THREADS)
    results = [0] * THREADS

    def body(i: int) -> None:
        barrier.wait()
        results[i] = work(i)

    threads = [threading.Thread(target=body, args=(i,)) for i in range(THREADS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return results


def test_bucket_grants_exactly_burst_with_fixed_now() -> None:
    b = TokenBucket(1000, per=1.0, burst=3000)
    got = run_threads(lambda _: sum(b.try_acquire(now=T0) for _ in range(1000)))
    assert sum(got) == 3000


def test_bucket_weighted_costs_exact_with_fixed_now() -> None:
    b = TokenBucket(100_000, per=60)
    got = run_threads(lambda _: sum(b.acquire(cost=1000, now=T0) == 0.0 for _ in range(50)))
    assert sum(got) == 100


def test_keyed_bucket_exact_per_key_with_fixed_now() -> None:
    k = KeyedTokenBucket(10, per=1.0, burst=25, capacity=256)
    keys = [f"route-{i}" for i in range(16)]
    per_key = [0] * len(keys)
    lock = threading.Lock()  # only guards the test's own tally

    def work(i: int) -> int:
        mine = [0] * len(keys)
        for n in range(400):
            j = (n + i) % len(keys)
            if k.try_acquire(keys[j], now=T0):
                mine[j] += 1
        with lock:
            for j, c in enumerate(mine):
                per_key[j] += c
        return sum(mine)

    run_threads(work)
    assert per_key == [25] * len(keys)


def test_breaker_issues_exactly_half_open_probes() -> None:
    b = CircuitBreaker(half_open_probes=3, half_open_successes=10, open_jitter=0.0)
    for _ in range(5):
        b.record("5xx", now=T0)
    now = T0 + 5.0
    got = run_threads(lambda _: sum(b.allow(now=now) for _ in range(500)))
    assert sum(got) == 3


def test_window_counts_every_record() -> None:
    w = SlidingWindow(window=1.0, slots=10)

    def work(i: int) -> int:
        for n in range(2000):
            # Times sweep across slot boundaries (0.1 s slots) within one window.
            w.record("5xx" if n % 4 == 0 else "success", 0.01, now=T0 + n * 0.0004)
        return 0

    run_threads(work)
    counts = w.counts(now=T0 + 0.8)
    assert counts["total"] == THREADS * 2000
    assert counts["5xx"] == THREADS * 500
