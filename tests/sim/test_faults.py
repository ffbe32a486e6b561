"""Fault specs, how a request picks its fault, and the per-model table."""

from __future__ import annotations

import random

import msgspec
import pytest

from hedgerow.sim.faults import FaultKind, FaultSpec, FaultTable, decide


def spec(**fields: object) -> FaultSpec:
    return msgspec.convert(fields, FaultSpec)


def run(faults: list[FaultSpec], n: int, *, stream: bool = False, seed: int = 1) -> list[str]:
    table = FaultTable()
    table.set("m", faults)
    live = table.lookup("m")
    assert live is not None
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        decision = decide(live, rng, stream=stream)
        out.append("ok" if decision.outcome is None else decision.outcome.label)
    return out


def test_count_fails_the_next_n_then_recovers() -> None:
    assert run([spec(kind="error", status=503, count=3)], 5) == ["error_503"] * 3 + ["ok"] * 2


def test_every_and_skip_make_exact_sequences() -> None:
    assert run([spec(kind="reset", every=3)], 7) == ["ok", "ok", "reset"] * 2 + ["ok"]
    assert run([spec(kind="hang", skip=2, count=1)], 4) == ["ok", "ok", "hang", "ok"]


def test_rates_are_slices_of_one_draw() -> None:
    mix = [spec(kind="error", status=529, rate=0.6), spec(kind="error", status=500, rate=0.2)]
    outcomes = run(mix, 5000)
    share = {label: outcomes.count(label) / 5000 for label in set(outcomes)}
    assert share["error_529"] == pytest.approx(0.6, abs=0.03)
    assert share["error_500"] == pytest.approx(0.2, abs=0.03)
    assert share["ok"] == pytest.approx(0.2, abs=0.03)
    assert run(mix, 50, seed=7) == run(mix, 50, seed=7)  # seeded: exactly repeatable
    assert run([spec(kind="error", status=500, rate=0.0)], 20) == ["ok"] * 20


def test_delays_stack_and_do_not_take_the_outcome_slice() -> None:
    table = FaultTable()
    table.set(
        "m",
        [
            spec(kind="delay", delay=0.5),
            spec(kind="delay", delay=1.5, stage="content"),
            spec(kind="error", status=500),
        ],
    )
    live = table.lookup("m")
    assert live is not None
    decision = decide(live, random.Random(0), stream=False)
    assert [d.delay for d in decision.delays] == [0.5, 1.5]
    assert decision.outcome is not None and decision.outcome.status == 500


def test_stream_filter() -> None:
    only_streams = [spec(kind="cut", stream=True)]
    assert run(only_streams, 2, stream=False) == ["ok", "ok"]
    assert run(only_streams, 2, stream=True) == ["cut", "cut"]


def test_table_latest_matching_entry_wins() -> None:
    table = FaultTable()
    table.set("claude-*", [spec(kind="error", status=529)])
    table.set("claude-opus-4-6", [])
    assert table.lookup("claude-opus-4-6") == []
    assert [f.spec.status for f in table.lookup("claude-sonnet-4-6") or []] == [529]
    assert table.lookup("gpt-4o") is None
    table.set("*", [spec(kind="hang")])
    assert [f.spec.kind for f in table.lookup("claude-opus-4-6") or []] == [FaultKind.HANG]
    assert table.remove("*") and not table.remove("*")
    assert table.lookup("claude-opus-4-6") == []
    table.clear()
    assert table.lookup("claude-sonnet-4-6") is None


@pytest.mark.parametrize(
    "fields",
    [
        {"kind": "error"},
        {"kind": "error", "status": 418},
        {"kind": "reset", "rate": 1.5},
        {"kind": "reset", "every": 0},
        {"kind": "delay", "delay": -1},
        {"kind": "explode"},
        {"kind": "reset", "unknown": 1},
    ],
)
def test_bad_specs_are_rejected(fields: dict[str, object]) -> None:
    with pytest.raises(msgspec.ValidationError):
        spec(**fields)


def test_state_shows_counters() -> None:
    table = FaultTable()
    table.set("m", [spec(kind="error", status=500, count=1)])
    run_faults = table.lookup("m")
    assert run_faults is not None
    decide(run_faults, random.Random(0), stream=False)
    decide(run_faults, random.Random(0), stream=False)
    assert table.state() == {
        "m": [{"kind": "error", "status": 500, "count": 1, "seen": 2, "fired": 1}]
    }
