"""CircuitBreaker driven through every transition with an injected clock."""

from __future__ import annotations

from typing import Literal

import pytest

from hedgerow import CircuitBreaker

T0 = 1000.0
Outcome = Literal["success", "5xx", "529", "429", "timeout", "other"]


def trip_by_consecutive(b: CircuitBreaker, now: float, n: int = 5) -> None:
    for _ in range(n - 1):
        assert b.record("5xx", now=now) is None
    assert b.record("5xx", now=now) == "open"


def test_new_breaker_is_closed_and_allows() -> None:
    b = CircuitBreaker()
    assert b.state == "closed"
    assert b.allow()
    assert b.allow(now=T0)
    snap = b.snapshot(now=T0)
    assert snap["state"] == "closed"
    assert snap["since"] == 0.0
    assert snap["trips"] == 0
    assert snap["open_until"] is None
    assert snap["forced"] is None
    assert b.transitions == 0


def test_closed_to_open_by_failure_rate_needs_minimum_calls() -> None:
    b = CircuitBreaker(consecutive_failures=0, minimum_calls=10, failure_rate_threshold=0.5, seed=1)
    # Alternate failure/success: 5 failures in 9 calls is above 50 % but below minimum_calls.
    for i in range(9):
        outcome: Outcome = "timeout" if i % 2 == 0 else "success"
        assert b.record(outcome, 0.1, now=T0 + i) is None
    assert b.state_at(now=T0 + 9) == "closed"
    assert b.snapshot(now=T0 + 9)["calls"] == 9
    assert b.record("5xx", now=T0 + 9) == "open"
    assert not b.allow(now=T0 + 9)
    snap = b.snapshot(now=T0 + 9)
    assert snap["state"] == "open"
    assert snap["since"] == T0 + 9
    assert snap["trips"] == 1
    assert b.transitions == 1


def test_rate_below_threshold_does_not_trip() -> None:
    b = CircuitBreaker(consecutive_failures=0, minimum_calls=4, failure_rate_threshold=0.5)
    sequence: list[Outcome] = ["success", "success", "5xx", "success", "success", "5xx"]
    for outcome in sequence:
        assert b.record(outcome, now=T0) is None
    assert b.snapshot(now=T0)["failure_rate"] == pytest.approx(2 / 6)
    assert b.state_at(now=T0) == "closed"


def test_old_failures_leave_the_window() -> None:
    b = CircuitBreaker(consecutive_failures=0, minimum_calls=4, window=10.0, window_slots=10)
    for _ in range(3):
        b.record("5xx", now=T0)
    # 20 s later those failures are out of the window: 1 failure in 4 calls.
    tail: list[Outcome] = ["success", "success", "success", "5xx"]
    for outcome in tail:
        assert b.record(outcome, now=T0 + 20) is None
    assert b.snapshot(now=T0 + 20)["calls"] == 4


def test_closed_to_open_by_consecutive_failures() -> None:
    b = CircuitBreaker(consecutive_failures=3, minimum_calls=1000)
    b.record("5xx", now=T0)
    b.record("5xx", now=T0)
    b.record("success", now=T0)  # resets the streak
    b.record("timeout", now=T0)
    assert b.snapshot(now=T0)["consecutive_failures"] == 1
    b.record("529", now=T0)
    assert b.record("other", now=T0) == "open"


def test_slow_success_counts_as_failure() -> None:
    b = CircuitBreaker(consecutive_failures=2, slow_call_threshold=1.5)
    assert b.record("success", latency=1.5, now=T0) is None  # not slower than the threshold
    assert b.record("success", latency=1.6, now=T0) is None
    assert b.record("success", latency=9.0, now=T0) == "open"


def test_outcomes_outside_failure_outcomes_are_ignored() -> None:
    b = CircuitBreaker(consecutive_failures=2, failure_outcomes={"5xx", "timeout"})
    for _ in range(10):
        assert b.record("429", now=T0) is None
    assert b.snapshot(now=T0)["calls"] == 0
    b.record("5xx", now=T0)
    assert b.record("timeout", now=T0) == "open"


def test_open_to_half_open_exactly_after_open_duration() -> None:
    b = CircuitBreaker(open_base=5.0, open_jitter=0.2, seed=42)
    trip_by_consecutive(b, T0)
    d = b.open_duration(1)
    assert 4.0 <= d < 6.0
    assert b.snapshot(now=T0)["open_until"] == pytest.approx(T0 + d, abs=1e-9)
    assert b.state_at(now=T0 + d - 1e-6) == "open"
    assert not b.allow(now=T0 + d - 1e-6)
    assert b.state_at(now=T0 + d) == "half_open"
    snap = b.snapshot(now=T0 + d)
    assert snap["state"] == "half_open"
    assert snap["since"] == pytest.approx(T0 + d, abs=1e-9)


def test_jitter_is_deterministic_per_seed_and_bounded() -> None:
    a = CircuitBreaker(open_jitter=0.1, seed=3)
    same = CircuitBreaker(open_jitter=0.1, seed=3)
    other = CircuitBreaker(open_jitter=0.1, seed=4)
    durations = [a.open_duration(t) for t in range(1, 12)]
    assert durations == [same.open_duration(t) for t in range(1, 12)]
    assert durations != [other.open_duration(t) for t in range(1, 12)]
    for trips, d in enumerate(durations, start=1):
        base = min(5.0 * 2 ** (trips - 1), 300.0)
        assert base * 0.9 <= d < base * 1.1


def test_half_open_probe_limit_and_close() -> None:
    b = CircuitBreaker(half_open_probes=2, half_open_successes=3, open_jitter=0.0)
    trip_by_consecutive(b, T0)
    now = T0 + 5.0
    assert b.allow(now=now)
    assert b.transitions == 2  # open -> half_open materialised by allow
    assert b.allow(now=now)
    assert not b.allow(now=now)
    assert b.snapshot(now=now)["half_open_in_flight"] == 2
    assert b.record("success", now=now) is None
    assert b.allow(now=now)  # the permit came back
    assert not b.allow(now=now)
    assert b.record("success", now=now) is None
    assert b.snapshot(now=now)["half_open_successes"] == 2
    assert b.record("success", now=now) == "closed"
    snap = b.snapshot(now=now)
    assert (snap["state"], snap["calls"], snap["consecutive_failures"]) == ("closed", 0, 0)
    assert snap["since"] == now
    assert b.allow(now=now)


def test_half_open_failure_reopens_longer_and_open_max_bounds_it() -> None:
    b = CircuitBreaker(open_base=5.0, open_max=30.0, open_jitter=0.0)
    trip_by_consecutive(b, T0)
    now = T0
    expected = [5.0, 10.0, 20.0, 30.0, 30.0, 30.0]
    for i, d in enumerate(expected):
        snap = b.snapshot(now=now)
        assert snap["trips"] == i + 1
        assert snap["open_until"] == pytest.approx(now + d)
        now += d
        assert b.allow(now=now)
        assert b.record("timeout", now=now) == "open"
    assert b.open_duration(100) == 30.0


def test_trips_persist_across_close_but_decay_after_open_max() -> None:
    b = CircuitBreaker(open_base=5.0, open_max=60.0, open_jitter=0.0)
    trip_by_consecutive(b, T0)
    assert b.allow(now=T0 + 5)
    assert b.record("success", now=T0 + 5) == "closed"
    trip_by_consecutive(b, T0 + 10)
    assert b.snapshot(now=T0 + 10)["trips"] == 2
    assert b.snapshot(now=T0 + 10)["open_until"] == T0 + 20
    assert b.allow(now=T0 + 20)
    assert b.record("success", now=T0 + 20) == "closed"
    trip_by_consecutive(b, T0 + 20 + 60)  # closed for open_max: first trip again
    assert b.snapshot(now=T0 + 80)["trips"] == 1


def test_outcomes_while_open_are_ignored() -> None:
    b = CircuitBreaker(open_jitter=0.0)
    trip_by_consecutive(b, T0)
    assert b.record("success", now=T0 + 1) is None
    assert b.record("5xx", now=T0 + 1) is None
    # Time is up but no probe was issued: still ignored, still reads half-open.
    assert b.record("success", now=T0 + 6) is None
    assert b.state_at(now=T0 + 6) == "half_open"


def test_ignored_outcome_returns_probe_permit() -> None:
    b = CircuitBreaker(open_jitter=0.0, failure_outcomes=["5xx"], consecutive_failures=1)
    assert b.record("5xx", now=T0) == "open"
    assert b.allow(now=T0 + 5)
    assert not b.allow(now=T0 + 5)
    assert b.record("429", now=T0 + 5) is None
    assert b.state_at(now=T0 + 5) == "half_open"
    assert b.allow(now=T0 + 5)


def test_lost_probe_permit_is_reissued_after_probe_timeout() -> None:
    b = CircuitBreaker(open_jitter=0.0, probe_timeout=20.0)
    trip_by_consecutive(b, T0)
    assert b.allow(now=T0 + 5)  # this caller never records
    assert not b.allow(now=T0 + 24.9)
    assert b.allow(now=T0 + 25)
    assert not b.allow(now=T0 + 25)


def test_forced_states_and_release() -> None:
    b = CircuitBreaker()
    b.force_open(now=T0)
    assert not b.allow(now=T0)
    assert b.state_at(now=T0 + 10_000) == "open"
    snap = b.snapshot(now=T0)
    assert (snap["forced"], snap["open_until"]) == ("open", None)
    for _ in range(10):
        assert b.record("5xx", now=T0) is None
    b.force_closed(now=T0 + 1)
    assert b.snapshot(now=T0 + 1)["forced"] == "closed"
    for _ in range(20):
        assert b.record("5xx", now=T0 + 1) is None  # counted, but no transition
    assert b.allow(now=T0 + 1)
    assert b.snapshot(now=T0 + 1)["calls"] == 20
    b.release(now=T0 + 2)
    snap = b.snapshot(now=T0 + 2)
    assert (snap["state"], snap["forced"], snap["calls"]) == ("closed", None, 0)
    assert b.transitions == 2  # closed -> open -> closed; forced closed -> closed is no change
    b.release(now=T0 + 3)  # no-op
    assert b.transitions == 2


def test_snapshot_keys() -> None:
    snap = CircuitBreaker().snapshot(now=T0)
    assert set(snap) == {
        "state",
        "since",
        "trips",
        "consecutive_failures",
        "failure_rate",
        "calls",
        "failures",
        "open_until",
        "forced",
        "half_open_in_flight",
        "half_open_successes",
        "transitions",
    }
