"""TokenBucket and KeyedTokenBucket: exact grant counts with an injected clock."""

from __future__ import annotations

import math

import pytest

from hedgerow import KeyedTokenBucket, TokenBucket

T0 = 500.0


def grants(fn, n: int) -> int:  # type: ignore[no-untyped-def]
    return sum(1 for _ in range(n) if fn())


def test_burst_then_refill_at_rate() -> None:
    b = TokenBucket(4, per=1.0)
    assert grants(lambda: b.try_acquire(now=T0), 10) == 4
    assert b.remaining(now=T0) == 0.0
    assert not b.try_acquire(now=T0 + 0.249)
    assert b.try_acquire(now=T0 + 0.25)
    assert not b.try_acquire(now=T0 + 0.25)
    # Idle for long: refills to burst, never beyond.
    assert b.remaining(now=T0 + 100) == 4.0
    assert grants(lambda: b.try_acquire(now=T0 + 100), 10) == 4


def test_burst_differs_from_rate() -> None:
    b = TokenBucket(10, per=1.0, burst=2)
    assert (b.rate, b.per, b.burst) == (10.0, 1.0, 2.0)
    assert grants(lambda: b.try_acquire(now=T0), 5) == 2
    assert grants(lambda: b.try_acquire(now=T0 + 1.0), 50) == 2


def test_weighted_tokens_per_minute() -> None:
    b = TokenBucket(100_000, per=60)
    assert grants(lambda: b.try_acquire(cost=1234, now=T0), 200) == 100_000 // 1234
    assert b.remaining(now=T0) == pytest.approx(100_000 - 81 * 1234)
    wait = b.retry_after(cost=1234, now=T0)
    assert wait == pytest.approx((1234 - 46) * 60 / 100_000)
    assert not b.try_acquire(cost=1234, now=T0 + wait - 1e-6)
    assert b.try_acquire(cost=1234, now=T0 + wait)


def test_acquire_grants_or_returns_exact_wait() -> None:
    b = TokenBucket(2, per=1.0)
    assert b.acquire(now=T0) == 0.0
    assert b.acquire(now=T0) == 0.0
    wait = b.acquire(now=T0)
    assert wait == pytest.approx(0.5)
    assert b.remaining(now=T0) == 0.0  # the refused acquire took nothing
    assert b.acquire(now=T0 + wait) == 0.0


def test_cost_above_burst_never_succeeds() -> None:
    b = TokenBucket(10, per=1.0)
    assert b.retry_after(cost=11, now=T0) == math.inf
    assert b.acquire(cost=11, now=T0) == math.inf
    assert not b.try_acquire(cost=11, now=T0)
    assert b.remaining(now=T0) == 10.0


def test_zero_cost_is_always_granted() -> None:
    b = TokenBucket(1)
    assert b.try_acquire(now=T0)
    assert b.try_acquire(cost=0, now=T0)
    assert b.retry_after(cost=0, now=T0) == 0.0


def test_default_clock() -> None:
    b = TokenBucket(1, per=3600)
    assert b.try_acquire()
    assert not b.try_acquire()
    assert 3590 < b.retry_after() <= 3600


def test_keyed_keys_are_independent() -> None:
    k = KeyedTokenBucket(2, per=1.0)
    for key in ["alice", "bob", "carol"]:
        assert grants(lambda key=key: k.try_acquire(key, now=T0), 5) == 2
    assert k.remaining("alice", now=T0) == 0.0
    assert k.remaining("dave", now=T0) == 2.0
    assert k.retry_after("bob", now=T0) == pytest.approx(0.5)
    assert k.acquire("bob", now=T0 + 0.5) == 0.0
    assert k.active_keys(now=T0) == 3
    assert (k.rate, k.per, k.burst, k.capacity) == (2.0, 1.0, 2.0, 4096)


def test_keyed_full_table_fails_closed_until_a_slot_frees() -> None:
    k = KeyedTokenBucket(1, per=10.0, capacity=4)
    for key in ["a", "b", "c", "d"]:
        assert k.try_acquire(key, now=T0)
    assert k.active_keys(now=T0) == 4
    assert not k.try_acquire("e", now=T0)
    assert k.retry_after("e", now=T0) == pytest.approx(10.0)
    assert k.acquire("e", now=T0 + 4) == pytest.approx(6.0)
    assert k.remaining("e", now=T0) == 0.0
    # The refusal did not disturb the existing keys.
    assert not k.try_acquire("a", now=T0 + 4)
    # Once the old buckets are full again their slots are free and "e" takes one.
    assert k.try_acquire("e", now=T0 + 10)
    assert k.active_keys(now=T0 + 10) == 1


def test_keyed_memory_is_bounded_and_idle_keys_evicted() -> None:
    k = KeyedTokenBucket(1, per=1.0, capacity=64)
    granted = 0
    for i in range(10_000):
        # 1000 new keys every simulated second: older ones have refilled and are reclaimed.
        if k.try_acquire(f"user-{i}", now=T0 + i // 1000 * 1.0):
            granted += 1
        assert k.active_keys(now=T0 + i // 1000) <= 64
    assert granted >= 10 * 50  # most of each second's keys found room
    # A second after the last grant every bucket has refilled: nothing is held.
    assert k.active_keys(now=T0 + 10) == 0


def test_keyed_len_uses_the_real_clock() -> None:
    import hedgerow

    k = KeyedTokenBucket(1, per=3600)
    assert len(k) == 0
    k.try_acquire("x", now=hedgerow.monotonic())
    assert len(k) == 1


def test_keyed_key_must_be_str() -> None:
    k = KeyedTokenBucket(1)
    with pytest.raises(TypeError):
        k.try_acquire(42, now=T0)  # type: ignore[arg-type]
