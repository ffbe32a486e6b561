"""Scenarios driving a listening simulator, with the clock in the test's hands."""

from __future__ import annotations

from typing import Any

import anthropic
import httpx
import pytest

from hedgerow.sim import Scenario, load_scenario, start_mock

HELLO: list[Any] = [{"role": "user", "content": "hello"}]


class FakeClock:
    """Wall-clock seconds that move only when the test says."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


async def outcome(client: anthropic.AsyncAnthropic, model: str) -> str:
    try:
        await client.messages.create(model=model, max_tokens=5, messages=HELLO)
    except anthropic.APIStatusError as exc:
        return str(exc.status_code)
    return "ok"


async def test_faults_follow_the_scenario_clock() -> None:
    scenario = Scenario.from_text(
        """
time_scale: 60
phases:
  - {at: 0, model: "claude-*", faults: [{kind: error, status: 529}]}
  - {at: "00:10", model: claude-a, faults: clear}
  - {at: "00:30", model: "*", faults: [{kind: error, status: 429, every: 2}]}
"""
    )
    clock = FakeClock()
    async with start_mock(scenario=scenario, clock=clock) as sim:
        async with anthropic.AsyncAnthropic(
            base_url=sim.anthropic_base_url, api_key="k", max_retries=0
        ) as client:
            assert [await outcome(client, "claude-a"), await outcome(client, "claude-b")] == [
                "529",
                "529",
            ]
            assert await outcome(client, "gpt-in-claude-clothes") == "ok"  # no phase names it
            clock.now = 9.99  # 00:09:59 simulated
            assert await outcome(client, "claude-a") == "529"
            clock.now = 10.0
            assert [await outcome(client, "claude-a"), await outcome(client, "claude-b")] == [
                "ok",
                "529",
            ]
            clock.now = 30.0
            assert [await outcome(client, "claude-a") for _ in range(4)] == [
                "ok",
                "429",
                "ok",
                "429",
            ]
            state = sim.state.state()["scenario"]
            assert state["clock"] == "00:30:00" and state["phase"] == 2
        assert sim.outcomes("claude-a") == {"error_529": 2, "ok": 3, "error_429": 2}


async def test_2026_06_05_recovers_model_by_model() -> None:
    clock = FakeClock()
    async with start_mock(scenario=load_scenario("2026-06-05"), clock=clock, seed=5) as sim:
        async with anthropic.AsyncAnthropic(
            base_url=sim.anthropic_base_url, api_key="k", max_retries=0
        ) as client:

            async def failures(model: str, n: int = 20) -> int:
                return sum([await outcome(client, model) != "ok" for _ in range(n)])

            assert await failures("claude-opus-4-6") >= 15  # ~90 % errors at the start
            clock.now = 17.0  # minute 17 at x60
            assert await failures("claude-opus-4-6") == 0
            assert await failures("claude-sonnet-4-6") >= 15
            clock.now = 75.0
            assert await failures("claude-sonnet-4-6") == 0
            assert await failures("claude-opus-4-8") >= 15
            clock.now = 111.0
            assert await failures("claude-opus-4-8") == 0
            clock.now = 120.0
            assert await failures("claude-haiku-4-5") == 0
        outcomes = sim.outcomes("claude-opus-4-6")
        assert set(outcomes) <= {"ok", "error_529", "error_500", "stream_error"}
        assert sum(outcomes.values()) == 40


@pytest.mark.parametrize("seed", [1, 2])
async def test_seeded_draws_repeat_exactly(seed: int) -> None:
    runs = []
    for _ in range(2):
        async with start_mock(seed=seed) as sim:
            sim.set_faults("*", {"kind": "error", "status": 500, "rate": 0.5})
            async with anthropic.AsyncAnthropic(
                base_url=sim.anthropic_base_url, api_key="k", max_retries=0
            ) as client:
                runs.append([await outcome(client, "m") for _ in range(16)])
    assert runs[0] == runs[1]
    assert 0 < runs[0].count("500") < 16


async def test_scenario_started_over_http_runs_on_the_injected_clock() -> None:
    clock = FakeClock()
    async with start_mock(clock=clock) as sim, httpx.AsyncClient(base_url=sim.url) as admin:
        await admin.post("/_mock/scenario", json={"name": "2026-06-05"})
        assert (await admin.get("/_mock/state")).json()["scenario"]["phase"] == 0
        clock.now = 17.0
        state = (await admin.get("/_mock/state")).json()["scenario"]
        assert state["clock"] == "00:17:00" and state["note"] == "claude-opus-4-6 recovered"
