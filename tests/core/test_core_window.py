"""SlidingWindow: counts, rates, expiry and latency quantiles with an injected clock."""

from __future__ import annotations

import math
from typing import Literal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hedgerow import SlidingWindow

T0 = 300.0
Outcome = Literal["success", "5xx", "529", "429", "timeout", "other"]
OUTCOMES: list[Outcome] = ["success", "5xx", "529", "429", "timeout", "other"]
#: The stated bound on a reported quantile's relative error (docstring: 3.125 %).
BOUND = 1 / 32


def test_counts_total_and_error_rates() -> None:
    w = SlidingWindow(window=10.0, slots=10)
    for _ in range(6):
        w.record("success", 0.1, now=T0)
    for outcome in OUTCOMES[1:5]:
        w.record(outcome, 0.2, now=T0 + 1)
    counts = w.counts(now=T0 + 1)
    assert counts == {
        "success": 6,
        "5xx": 1,
        "529": 1,
        "429": 1,
        "timeout": 1,
        "other": 0,
        "total": 10,
    }
    assert w.total(now=T0 + 1) == 10
    assert w.error_rate(now=T0 + 1) == pytest.approx(0.4)
    assert w.error_rate(now=T0 + 1, outcome="429") == pytest.approx(0.1)
    assert w.error_rate(now=T0 + 1, outcome="success") == pytest.approx(0.6)


def test_records_leave_the_window() -> None:
    w = SlidingWindow(window=10.0, slots=10)
    w.record("5xx", now=T0)
    w.record("success", now=T0 + 5)
    assert w.total(now=T0 + 9.999) == 2
    assert w.counts(now=T0 + 10.0)["5xx"] == 0  # T0's slot has left
    assert w.total(now=T0 + 10.0) == 1
    assert w.total(now=T0 + 15.0) == 0
    assert w.error_rate(now=T0 + 15.0) == 0.0
    assert w.quantile(0.5, now=T0 + 15.0) is None
    assert w.quantiles(now=T0 + 15.0) is None


def test_slot_reuse_replaces_old_counts() -> None:
    w = SlidingWindow(window=4.0, slots=4)
    for i in range(40):
        w.record("success", now=T0 + i)
    assert w.total(now=T0 + 39) == 4


def test_quantiles_of_known_samples() -> None:
    w = SlidingWindow()
    for ms in range(1, 101):
        w.record("success", ms / 1000, now=T0)
    for q, exact in [(0.5, 0.050), (0.95, 0.095), (0.99, 0.099), (0.0, 0.001), (1.0, 0.100)]:
        got = w.quantile(q, now=T0)
        assert got is not None
        assert abs(got - exact) / exact <= BOUND
    p = w.quantiles(now=T0)
    assert p is not None
    assert [abs(a - b) / b <= BOUND for a, b in zip(p, (0.05, 0.095, 0.099), strict=True)] == [
        True
    ] * 3


def test_tiny_latencies_read_as_zero() -> None:
    w = SlidingWindow()
    w.record("success", now=T0)  # latency defaults to 0.0
    w.record("success", 5e-7, now=T0)
    assert w.quantile(1.0, now=T0) == 0.0


@settings(max_examples=200, deadline=None)
@given(
    lats=st.lists(st.floats(min_value=2e-6, max_value=3600.0), min_size=1, max_size=300),
    q=st.floats(min_value=0.0, max_value=1.0),
)
def test_quantile_within_stated_relative_error(lats: list[float], q: float) -> None:
    w = SlidingWindow(window=60.0, slots=6)
    for lat in lats:
        w.record("success", lat, now=T0)
    ordered = sorted(lats)
    rank = min(max(1, math.ceil(q * len(ordered))), len(ordered))
    exact = ordered[rank - 1]
    got = w.quantile(q, now=T0)
    assert got is not None
    assert abs(got - exact) / exact <= BOUND + 1e-12


def test_snapshot() -> None:
    w = SlidingWindow(window=30.0, slots=3)
    assert (w.window, w.slots) == (30.0, 3)
    empty = w.snapshot(now=T0)
    assert (empty["total"], empty["p50"], empty["error_rate"]) == (0, None, 0.0)
    w.record("success", 0.2, now=T0)
    w.record("timeout", 2.0, now=T0)
    snap = w.snapshot(now=T0)
    assert snap["total"] == 2
    assert snap["counts"]["timeout"] == 1
    assert snap["error_rate"] == 0.5
    assert snap["p99"] == pytest.approx(2.0, rel=BOUND)
    assert (snap["window"], snap["slots"]) == (30.0, 3)


@pytest.mark.parametrize("outcome", OUTCOMES)
def test_every_outcome_class_is_counted(outcome: Outcome) -> None:
    w = SlidingWindow()
    w.record(outcome, now=T0)
    counts = w.counts(now=T0)
    assert counts[outcome] == 1
    assert counts["total"] == 1


def test_record_older_than_the_window_is_dropped() -> None:
    w = SlidingWindow(window=10.0, slots=10)
    w.record("5xx", now=T0 + 10)
    w.record("success", now=T0)  # same slot, one full window older: dropped
    assert w.counts(now=T0 + 10) == {
        "success": 0,
        "5xx": 1,
        "529": 0,
        "429": 0,
        "timeout": 0,
        "other": 0,
        "total": 1,
    }
    # A late record that is still inside the window is counted.
    w.record("success", now=T0 + 5)
    assert w.total(now=T0 + 10) == 2
