"""``GET /v1/health``: breaker state and since, error rate, quantiles, in-flight, rate limit."""

from __future__ import annotations

import asyncio
import datetime
from pathlib import Path
from typing import Any

import pytest

from hedgerow.sim.mock import RunningMock
from hedgerow.sim.state import ModelConfig
from tests.observe.conftest import FakeClock, config_for, running_app, until

ROUTES = {
    "chat": {
        "tiers": [[{"target": "anth/claude-sonnet-4-6", "rpm": 10}], ["oai/gpt-5.5"]],
        "retry": {"max_retries": 0},
    },
    "slow": {"tiers": [["gem/gemini-3-5-pro"]], "retry": {"max_retries": 0}},
}


def by_key(health: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {d["deployment"]: d for d in health["deployments"]}


async def test_health_shows_breaker_window_in_flight_and_limits(
    mock: RunningMock, tmp_path: Path
) -> None:
    clock = FakeClock()
    async with running_app(config_for(mock, tmp_path, ROUTES), clock) as app:
        health = await app.get_json("/v1/health")
        assert health["status"] == "ok"
        sonnet = by_key(health)["anth/claude-sonnet-4-6"]
        assert sonnet["state"] == "closed"
        assert sonnet["breaker"]["since"] is None  # never changed since start
        assert sonnet["window"]["total"] == 0
        assert sonnet["rate_limits"] == {"rpm": {"limit": 10.0, "remaining": 10.0}}
        assert sonnet["routes"] == [{"route": "chat", "tier": 0}]

        for _ in range(3):
            await app.chat()
        mock.set_faults("claude-sonnet-4-6", {"kind": "error", "status": 529})
        for _ in range(3):
            await app.chat()
        clock.advance(2.5)

        health = await app.get_json("/v1/health")
        assert health["status"] == "degraded"
        sonnet = by_key(health)["anth/claude-sonnet-4-6"]
        assert sonnet["state"] == "open"
        breaker = sonnet["breaker"]
        assert breaker["since_seconds"] == 2.5
        since = datetime.datetime.fromisoformat(breaker["since"].replace("Z", "+00:00"))
        age = datetime.datetime.now(datetime.UTC) - since
        assert 2.0 < age.total_seconds() < 10.0
        assert breaker["trips"] == 1
        # Open 10 s (with the breaker's jitter), 2.5 s of it gone.
        native = app.gateway.deployments["anth/claude-sonnet-4-6"].health.breaker
        assert breaker["retry_in"] == pytest.approx(native.open_duration(1) - 2.5, abs=0.001)
        window = sonnet["window"]
        assert window["total"] == 6
        assert window["counts"]["529"] == 3
        assert window["error_rate"] == 0.5
        assert window["p50_ms"] is not None and window["p99_ms"] >= window["p50_ms"]
        # Six calls took six tokens of the ten a minute allowed (the clock moved 2.5 s).
        assert 4.0 <= sonnet["rate_limits"]["rpm"]["remaining"] < 5.0
        assert health["routes"][0]["route"] == "chat"
        assert health["routes"][0]["ready_in"] == 0.0  # the secondary can serve

        # In flight: a slow call is counted while it runs.
        mock.state.set_model("gemini-3-5-pro", ModelConfig(ttfb=1.0))
        call = asyncio.create_task(app.chat("slow"))

        async def one_in_flight() -> bool:
            health = await app.get_json("/v1/health")
            return by_key(health)["gem/gemini-3-5-pro"]["in_flight"] == 1

        await until(one_in_flight, timeout=5.0, what="in_flight == 1")
        await call
        health = await app.get_json("/v1/health")
        assert by_key(health)["gem/gemini-3-5-pro"]["in_flight"] == 0
        assert by_key(health)["gem/gemini-3-5-pro"]["window"]["p50_ms"] >= 900


async def test_health_says_down_when_a_route_cannot_be_served(
    mock: RunningMock, tmp_path: Path
) -> None:
    clock = FakeClock()
    routes = {"solo": {"tiers": [["anth/claude-opus-4-8"]], "retry": {"max_retries": 0}}}
    async with running_app(config_for(mock, tmp_path, routes), clock) as app:
        mock.set_faults("claude-opus-4-8", {"kind": "error", "status": 500})
        for _ in range(3):
            await app.chat("solo")
        health = await app.get_json("/v1/health")
        assert health["status"] == "down"
        assert 9.0 <= health["routes"][0]["ready_in"] <= 11.0
