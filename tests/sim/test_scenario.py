"""Scenario timelines: the fault table as a pure function of simulated time."""

from __future__ import annotations

import pytest

from hedgerow.sim.faults import FaultKind
from hedgerow.sim.incidents import BUILTIN_SCENARIOS, load_scenario
from hedgerow.sim.scenario import Scenario, ScenarioPlayer, format_time, parse_time

DRILL = """
name: drill
time_scale: 60
phases:
  - at: 0
    model: "claude-*"
    errors: {529: 0.6, 500: 0.2}
    faults: [{kind: delay, delay: 2, stage: content}]
    note: trouble
  - {at: "00:10", model: claude-a, faults: clear}
  - {at: "10m30s", model: "gpt-*", faults: [{kind: reset}], until: "00:20"}
  - {at: "01:00", model: "*", faults: clear, note: resolved}
"""


class FakeClock:
    """A wall clock that moves only when told."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        (90, 90.0),
        ("01:30", 5400.0),
        ("00:17", 1020.0),
        ("01:00:15", 3615.0),
        ("17m", 1020.0),
        ("1h30m", 5400.0),
        ("45s", 45.0),
        ("2.5", 2.5),
    ],
)
def test_parse_time(text: float | str, seconds: float) -> None:
    assert parse_time(text) == seconds


@pytest.mark.parametrize("text", ["", "soon", "1:2:3:4", "-5", "1x"])
def test_parse_time_rejects(text: str) -> None:
    with pytest.raises(ValueError):
        parse_time(text)


def test_faults_at_is_a_function_of_time() -> None:
    scenario = Scenario.from_text(DRILL)
    assert scenario.faults_at(-1) == {}
    at_start = scenario.faults_at(0)
    assert list(at_start) == ["claude-*"]
    statuses = [(s.kind, s.status, s.rate) for s in at_start["claude-*"]]
    assert statuses == [
        (FaultKind.ERROR, 529, 0.6),
        (FaultKind.ERROR, 500, 0.2),
        (FaultKind.DELAY, None, 1.0),
    ]
    assert scenario.faults_at(600)["claude-a"] == ()
    assert [s.kind for s in scenario.faults_at(630)["gpt-*"]] == [FaultKind.RESET]
    assert scenario.faults_at(1200)["gpt-*"] == ()  # until
    assert scenario.faults_at(3600) == {"*": ()}
    assert scenario.duration == 3600


def test_event_for_picks_the_latest_matching_phase() -> None:
    scenario = Scenario.from_text(DRILL)
    assert scenario.event_for("claude-a", 599) is not None
    assert scenario.specs_of(scenario.event_for("claude-a", 599) or 0)
    assert scenario.specs_of(scenario.event_for("claude-a", 600) or 0) == ()
    assert scenario.specs_of(scenario.event_for("claude-b", 600) or 0)
    assert scenario.event_for("gemini-x", 700) is None
    assert scenario.phase_at(700) == (2, "trouble")
    assert scenario.phase_at(3600) == (3, "resolved")


def test_player_follows_an_injected_clock() -> None:
    clock = FakeClock()
    player = ScenarioPlayer(Scenario.from_text(DRILL), clock=clock)
    assert len(player.lookup("claude-a") or []) == 3
    clock.now += 10  # ten wall seconds at x60: minute 10
    assert player.elapsed() == 600
    assert player.lookup("claude-a") == []
    assert len(player.lookup("claude-b") or []) == 3
    state = player.state()
    assert state["clock"] == "00:10:00" and state["phase"] == 1 and state["note"] == "trouble"
    player.seek(3600)
    assert player.lookup("claude-b") == [] and player.state()["finished"] is True
    player.restart()
    assert player.elapsed() == 0


def test_phase_fault_counters_are_kept_per_phase() -> None:
    text = """
phases:
  - {at: 0, model: m, faults: [{kind: error, status: 503, count: 1}]}
  - {at: 10, model: m, faults: [{kind: error, status: 503, count: 1}]}
"""
    clock = FakeClock()
    player = ScenarioPlayer(Scenario.from_text(text), clock=clock)
    first = player.lookup("m")
    assert first is not None and first is player.lookup("m")  # the same live counters
    clock.now += 10
    second = player.lookup("m")
    assert second is not None and second is not first


def test_loop_wraps_the_clock() -> None:
    text = "loop: true\nduration: 100\nphases: [{at: 50, model: m, errors: {500: 1.0}}]"
    scenario = Scenario.from_text(text)
    assert scenario.event_for("m", 60) is not None
    assert scenario.event_for("m", 120) is None
    assert scenario.event_for("m", 160) is not None


@pytest.mark.parametrize(
    "text",
    [
        "phases: [{at: 0}]",
        "phases: [{at: 0, errors: {500: 2}}]",
        "phases: [{at: 10, until: 5, faults: clear}]",
        "time_scale: 0\nphases: []",
        "phases: [{at: 0, faults: [{kind: error}]}]",
        "phases: [{at: 0, faults: clear, colour: red}]",
        "nonsense: [",
    ],
)
def test_bad_scenarios_are_rejected(text: str) -> None:
    with pytest.raises(ValueError):
        Scenario.from_text(text)


def test_2026_06_05_staggered_recovery() -> None:
    scenario = load_scenario("2026-06-05")
    failing = {
        minute: sorted(
            model
            for model in (
                "claude-opus-4-6",
                "claude-sonnet-4-6",
                "claude-opus-4-8",
                "claude-haiku-4-5",
            )
            # Recovered models are slow at first (delays), but no longer failing.
            if any(
                spec.kind != "delay"
                for spec in scenario.specs_of(scenario.event_for(model, minute * 60) or 0)
            )
        )
        for minute in (0, 16, 17, 74, 75, 110, 111, 119, 120)
    }
    assert failing == {
        0: ["claude-haiku-4-5", "claude-opus-4-6", "claude-opus-4-8", "claude-sonnet-4-6"],
        16: ["claude-haiku-4-5", "claude-opus-4-6", "claude-opus-4-8", "claude-sonnet-4-6"],
        17: ["claude-haiku-4-5", "claude-opus-4-8", "claude-sonnet-4-6"],
        74: ["claude-haiku-4-5", "claude-opus-4-8", "claude-sonnet-4-6"],
        75: ["claude-haiku-4-5", "claude-opus-4-8"],
        110: ["claude-haiku-4-5", "claude-opus-4-8"],
        111: ["claude-haiku-4-5"],
        119: ["claude-haiku-4-5"],
        120: [],
    }
    assert scenario.event_for("gpt-4o", 60) is None  # only Anthropic models are hit


@pytest.mark.parametrize("name", sorted(BUILTIN_SCENARIOS))
def test_builtins_load_and_end_healthy(name: str) -> None:
    scenario = load_scenario(name, time_scale=1)
    assert scenario.name == name and scenario.time_scale == 1
    assert scenario.specs_of(scenario.event_for("claude-sonnet-4-6", 60) or 0)
    assert scenario.specs_of(scenario.event_for("claude-sonnet-4-6", scenario.duration) or 0) == ()
    hours = {"2026-03-02": 4, "2026-06-02": 6, "2026-06-05": 2}[name]
    assert format_time(scenario.duration).startswith(f"0{hours}:")


def test_load_scenario_from_a_file(tmp_path: pytest.TempPathFactory) -> None:
    path = tmp_path / "drill.yaml"  # type: ignore[operator]
    path.write_text(DRILL)
    assert load_scenario(str(path)).name == "drill"
    with pytest.raises(ValueError, match="built-in"):
        load_scenario(str(path) + ".missing")
