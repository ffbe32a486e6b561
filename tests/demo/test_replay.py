"""A short replay of 2026-06-05, end to end: simulator, gateway, workers, clients.

The figures asserted are what the scripted outage makes possible: while a degraded tier is
healthy no user sees an error; no job is lost; every model's backlog drains after its own
recovery, in the order the models recovered.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from hedgerow.demo.clock import ScaledClock
from hedgerow.demo.replay import ReplayOptions, run_replay
from hedgerow.demo.report import html_report, summarise, text_report
from hedgerow.sim.incidents import load_scenario


@pytest.mark.timeout(90)
async def test_short_replay_of_june_5(tmp_path: Path) -> None:
    options = ReplayOptions(
        scenario=load_scenario("2026-06-05"),
        wall_seconds=12.0,
        lead_in=600.0,
        chat_rate=10.0,
        classify_rate=4.0,
        job_rate=1.5,
        drain_grace=15.0,
    )
    replay = await run_replay(options)
    figures = summarise(replay)

    assert figures["requests"] > 100
    assert figures["user_visible_errors"] == 0, figures["error_examples"]
    # The outage was real: the degraded tier carried traffic and every Anthropic breaker opened.
    assert figures["tier_share"].get("1", 0) > 0.3
    assert set(figures["breakers_opened"]) >= {
        "anthropic/claude-sonnet-4-6",
        "anthropic/claude-opus-4-8",
        "anthropic/claude-opus-4-6",
    }
    for deployment in ("anthropic/claude-sonnet-4-6", "anthropic/claude-opus-4-8"):
        # The busiest routes trip within minutes (each route sees a request a few sim-seconds).
        assert 0 <= figures["breakers_opened"][deployment]["at"] < 600, deployment
    jobs = figures["jobs"]
    assert jobs["submitted"] > 20
    assert jobs["lost"] == 0 and jobs["dead_lettered"] == 0
    assert jobs["delivered"] == jobs["submitted"]
    by_model = jobs["by_model"]
    for model, data in by_model.items():
        assert data["backlog_at_recovery"] > 0, model
        assert data["drained_after_recovery_s"] is not None, model
    # Backlogs drain after each model's own recovery: opus-4-6 long before sonnet, sonnet before opus-4-8.
    recovered = [
        by_model[m]["recovered_at"]
        for m in ("claude-opus-4-6", "claude-sonnet-4-6", "claude-opus-4-8")
    ]
    assert recovered == sorted(recovered)

    # Recovering models answer some first tokens 2 s late (scripted): hedging catches them.
    assert figures["hedges"]["started"] > 0 and figures["hedges"]["won"] > 0
    # The simulator's status page posts the incident 10 simulated minutes in; the gateway's
    # poller sees it then (within a poll), well after hedgerow's own first alert.
    page = figures["status_page"]
    assert page["scripted_at"] == 600.0
    assert page["seen_at"] is not None and 600.0 <= page["seen_at"] < 600.0 + 120.0
    assert figures["first_alert"] is not None and figures["first_alert"]["at"] < page["seen_at"]
    assert page["alert_lead_s"] > 0

    text = text_report(figures)
    assert "User-visible errors: 0" in text
    assert "Status page incident seen by hedgerow's poller" in text
    html = html_report(replay, figures)
    assert html.startswith("<!doctype html>") and "<svg" in html and "outage starts" in html


def test_scaled_clock_maps_wall_to_simulated_time() -> None:
    clock = ScaledClock(scale=60.0, lead_in=120.0)
    assert -121.0 < clock.elapsed() < -119.0
    assert clock.wall(60.0) == pytest.approx(1.0)
    assert clock.to_elapsed(clock.time()) == pytest.approx(clock.elapsed(), abs=0.5)
    with pytest.raises(ValueError, match="scale"):
        ScaledClock(scale=0)
