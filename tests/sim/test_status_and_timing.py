"""The simulator's status page follows the scenario (posted after its lag, resolved after the
last fault clears), and a request can carry its own timing."""

from __future__ import annotations

import time

import aiohttp
import openai

from hedgerow.sim.incidents import load_scenario
from hedgerow.sim.mock import RunningMock, start_mock
from hedgerow.sim.scenario import DEFAULT_STATUS_LAG, Scenario
from hedgerow.sim.state import TIMING_PREFIX, ModelConfig, request_timing

SCENARIO = """
name: "2026-06-05"
phases:
  - {at: "00:02", model: "claude-*", errors: {529: 1.0}, note: "Elevated errors"}
  - {at: "00:30", model: "claude-*", faults: [{kind: delay, delay: 1, rate: 0.5}]}
  - {at: "00:40", model: "claude-*", faults: clear}
status_page: {lag: "5m", resolve_lag: "3m", components: [Claude API]}
"""


def test_the_incident_is_posted_after_the_lag_and_resolved_after_the_last_fault() -> None:
    scenario = Scenario.from_text(SCENARIO)
    incident = scenario.status_incident
    assert incident is not None
    assert incident.posted == 120 + 300  # the first errors, then the page's lag
    assert incident.resolved == 2400 + 180  # slow answers still count as degraded
    assert incident.name == "Elevated errors" and incident.components == ("Claude API",)
    assert scenario.status_at(419) is None and scenario.status_at(420) == incident
    assert scenario.status_at(2579) == incident and scenario.status_at(2580) is None
    # Delays alone are not down: the models recovered when the errors stopped.
    assert scenario.recovery_time("claude-opus-4-6") == 1800
    default = load_scenario("2026-06-05").status_incident
    assert default is not None and default.posted == DEFAULT_STATUS_LAG


async def test_the_status_page_answers_as_statuspage_does() -> None:
    scenario = Scenario.from_text(SCENARIO)
    clock = [0.0]
    async with start_mock(scenario=scenario, clock=lambda: clock[0]) as sim:
        async with aiohttp.ClientSession() as session:

            async def get(path: str) -> dict[str, object]:
                async with session.get(f"{sim.url}/api/v2/{path}") as response:
                    assert response.status == 200
                    data: dict[str, object] = await response.json()
                    return data

            summary = await get("summary.json")
            assert summary["incidents"] == [] and summary["status"] == {
                "indicator": "none",
                "description": "All Systems Operational",
            }
            clock[0] = 500.0  # the scenario plays at time_scale 1 on the injected clock
            summary = await get("summary.json")
            unresolved = await get("incidents/unresolved.json")
            assert isinstance(summary["incidents"], list) and len(summary["incidents"]) == 1
            incident = summary["incidents"][0]
            assert incident["status"] == "investigating" and incident["impact"] == "major"
            assert incident["created_at"] == "2026-06-05T00:07:00.000Z"
            assert unresolved["incidents"] == summary["incidents"]
            clock[0] = 3000.0
            assert (await get("incidents/unresolved.json"))["incidents"] == []
        assert sim.state.counters.total == 0  # status polls are not provider requests


def test_request_timing_overrides_the_models() -> None:
    base = ModelConfig(ttfb=0.5, tokens_per_second=10, reply_tokens=24)
    timed = request_timing(base, f"{TIMING_PREFIX}ttfb=0.1,tps=200,tokens=7")
    assert (timed.ttfb, timed.tokens_per_second, timed.reply_tokens) == (0.1, 200, 7)
    assert request_timing(base, "someone") is base
    assert request_timing(base, f"{TIMING_PREFIX}ttfb=soon") is base
    assert request_timing(base, f"{TIMING_PREFIX}ttfb=-1") is base


async def test_a_request_carries_its_own_first_content_delay(sim: RunningMock) -> None:
    async with openai.AsyncOpenAI(base_url=sim.openai_base_url, api_key="t") as client:
        started = time.perf_counter()
        await client.chat.completions.create(
            model="gpt-4o",
            messages=[{"role": "user", "content": "hi"}],
            user=f"{TIMING_PREFIX}ttfb=0.3,tokens=3",
        )
        assert time.perf_counter() - started >= 0.3
