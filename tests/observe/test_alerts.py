"""Alert rules: each fires once and resolves once (with hysteresis), rate-limited; sinks are
real servers: an aiohttp receiver for the JSON webhook and the Slack payload, aiosmtpd for
email.

Attempts reach the rules two ways: through the gateway against the simulator (the real
path), and, where a rule needs exact samples (latencies, counts at a boundary), as
``attempt`` events emitted on the gateway's own event bus — the same entry point the router
uses. Time is the test's ``FakeClock``.
"""

from __future__ import annotations

import email
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from pathlib import Path
from typing import Any

import pytest

from hedgerow.config import ConfigError
from hedgerow.observe import Observability
from hedgerow.observe.alerts import Alert
from hedgerow.observe.eventlog import EventQuery
from hedgerow.routing import Gateway, GatewayError
from hedgerow.routing.health import Outcome
from hedgerow.sim.mock import RunningMock
from tests.observe.conftest import (
    CHAT,
    NO_BREAKER,
    USER,
    FakeClock,
    Receiver,
    config_for,
    metric,
    running_app,
    until,
)

SONNET = "anth/claude-sonnet-4-6"
GPT = "oai/gpt-5.5"


@asynccontextmanager
async def observed(
    mock: RunningMock,
    tmp: Path,
    clock: FakeClock,
    *,
    routes: dict[str, Any] | None = None,
    breaker: dict[str, Any] | None = None,
    **observe: Any,
) -> AsyncIterator[Observability]:
    """A gateway on ``clock`` with observability running (its loops parked)."""
    config = config_for(mock, tmp, routes, breaker=breaker or NO_BREAKER, observe=observe)
    async with (
        Gateway(config, clock=clock) as gateway,
        Observability(gateway, config.observe) as obs,
    ):
        obs.notifier._retry_delay = 0.01
        yield obs


def attempts(
    obs: Observability,
    n: int,
    outcome: Outcome = "success",
    latency: float = 0.05,
    deployment: str = SONNET,
) -> None:
    """``n`` attempt events, as the router emits them."""
    for _ in range(n):
        error = None if outcome == "success" else "server_error"
        obs.gateway.events.attempt("chat", deployment, outcome, error, None, latency)


def states(fired: list[Alert], rule: str) -> list[str]:
    return [a.state for a in fired if a.rule == rule]


async def test_error_rate_fires_once_and_resolves_once_with_hysteresis(
    mock: RunningMock, tmp_path: Path, receiver: Receiver
) -> None:
    clock = FakeClock()
    async with observed(mock, tmp_path, clock, sinks={"webhooks": [receiver.url + "/hook"]}) as obs:
        engine = obs.alerts
        attempts(obs, 20)
        assert engine.evaluate() == []
        attempts(obs, 2, "5xx")  # 2 of 22: 9 % > 5 %
        assert states(engine.evaluate(), "error_rate") == ["fired"]
        assert engine.evaluate() == []  # fires once
        attempts(obs, 28)  # 2 of 50: 4 %, below 5 % but above 2.5 %: still firing
        assert engine.evaluate() == []
        assert [a.rule for a in engine.firing()] == ["error_rate"]
        attempts(obs, 40)  # 2 of 90: 2.2 % < 2.5 %
        assert states(engine.evaluate(), "error_rate") == ["resolved"]
        assert engine.evaluate() == []  # resolves once
        await obs.notifier.drain()
        sent = receiver.bodies["/hook"]
        assert [(b["rule"], b["state"]) for b in sent] == [
            ("error_rate", "fired"),
            ("error_rate", "resolved"),
        ]
        fired = sent[0]
        assert fired["deployment"] == SONNET and fired["routes"] == ["chat"]
        assert fired["provider"] == "anth" and fired["model"] == "claude-sonnet-4-6"
        assert fired["value"] == pytest.approx(2 / 22) and fired["threshold"] == 0.05
        assert "5xx error rate 9.1%" in fired["summary"]
        assert fired["source"] == "hedgerow" and fired["time"].endswith("Z")

        # Flapping: it fires again within `repeat_after` (300 s): kept in the event log
        # as suppressed, nobody is paged; after 300 s it pages again.
        clock.advance(121.0)  # the old window is gone
        attempts(obs, 20)
        attempts(obs, 5, "5xx")
        assert states(engine.evaluate(), "error_rate") == ["suppressed"]
        clock.advance(121.0)
        attempts(obs, 40)
        assert states(engine.evaluate(), "error_rate") == ["resolved"]
        clock.advance(121.0)
        attempts(obs, 20)
        attempts(obs, 5, "529")
        assert states(engine.evaluate(), "error_rate") == ["fired"]
        await obs.notifier.drain()
        # (529s count as 5xx; five of them are also an overload burst, its own alert.)
        sent = [b["state"] for b in receiver.bodies["/hook"] if b["rule"] == "error_rate"]
        assert sent == ["fired", "resolved", "fired"]
        rows, _ = await obs.events.query(EventQuery(kinds=["alert"]))
        rows = [r for r in rows if r["detail"]["rule"] == "error_rate"]
        assert [r["detail"]["state"] for r in rows] == [
            "fired",
            "resolved",
            "suppressed",
            "resolved",
            "fired",
        ]
        assert [r["detail"]["notified"] for r in rows] == [True, True, False, False, True]


async def test_latency_fires_against_its_own_baseline_and_resolves_with_hysteresis(
    mock: RunningMock, tmp_path: Path
) -> None:
    clock = FakeClock()
    async with observed(mock, tmp_path, clock) as obs:
        engine = obs.alerts
        for _ in range(6):  # a baseline of 60 calls at 100 ms over ten minutes
            attempts(obs, 10, latency=0.1)
            clock.advance(100.0)
        assert engine.evaluate() == []
        attempts(obs, 25, latency=0.5)  # 5x the baseline median
        fired = engine.evaluate()
        assert states(fired, "latency") == ["fired"]
        # Quantiles come from the native histogram (within 3.125 %).
        assert fired[0].value == pytest.approx(0.5, rel=0.04)
        assert "5.0x its baseline median" in fired[0].summary
        clock.advance(121.0)
        attempts(obs, 25, latency=0.25)  # 2.5x: between resolve (2x) and fire (3x)
        assert engine.evaluate() == []
        assert [a.rule for a in engine.firing()] == ["latency"]
        clock.advance(121.0)
        attempts(obs, 25, latency=0.15)  # 1.5x, against a baseline that did not learn the
        assert states(engine.evaluate(), "latency") == ["resolved"]  # slow calls
        assert engine.evaluate() == []


async def test_529_and_429_bursts_fire_once_and_resolve_once(
    mock: RunningMock, tmp_path: Path
) -> None:
    clock = FakeClock()
    async with observed(mock, tmp_path, clock) as obs:
        engine = obs.alerts
        attempts(obs, 100)
        attempts(obs, 4, "529")
        assert engine.evaluate() == []  # 4 < 5 (and 4 % is no 5xx alert)
        attempts(obs, 1, "529")
        assert states(engine.evaluate(), "overload") == ["fired"]
        attempts(obs, 10, "529")
        assert states(engine.evaluate(), "overload") == []
        attempts(obs, 10, "429", deployment=GPT)
        fired = engine.evaluate()
        assert [(a.rule, a.deployment, a.state) for a in fired if a.rule == "rate_limit"] == [
            ("rate_limit", GPT, "fired")
        ]
        clock.advance(61.0)
        resolved = engine.evaluate()
        assert sorted((a.rule, a.state) for a in resolved if a.rule != "error_rate") == [
            ("overload", "resolved"),
            ("rate_limit", "resolved"),
        ]
        assert engine.evaluate() == []


async def test_alerts_from_real_traffic_reach_webhook_slack_and_email(
    mock: RunningMock, tmp_path: Path, receiver: Receiver, smtp_server: tuple[int, Any]
) -> None:
    port, mailbox = smtp_server
    clock = FakeClock()
    sinks = {
        "webhooks": [receiver.url + "/generic"],
        "slack": receiver.url + "/services/T1/B2/xyz",
        "email": {
            "host": "127.0.0.1",
            "port": port,
            "from": "hedgerow@example.org",
            "to": ["oncall@example.org", "lead@example.org"],
        },
    }
    routes = {"chat": {"tiers": [[SONNET]], "retry": {"max_retries": 0}}}
    async with observed(mock, tmp_path, clock, routes=routes, sinks=sinks) as obs:
        for _ in range(10):
            await obs.gateway.chat({"model": "chat", "messages": USER, "max_tokens": 10})
        # Half of Sonnet's answers turn into 529s.
        mock.set_faults("claude-sonnet-4-6", {"kind": "error", "status": 529, "every": 2})
        for _ in range(14):
            with suppress(GatewayError):  # both attempts of a retry may fail
                await obs.gateway.chat({"model": "chat", "messages": USER, "max_tokens": 10})
        fired = obs.alerts.evaluate()
        assert sorted(a.rule for a in fired) == ["error_rate", "overload"]
        await obs.notifier.drain()
        await until(lambda: len(mailbox.messages) == 2, what="two emails")

    generic = receiver.bodies["/generic"]
    assert sorted(b["rule"] for b in generic) == ["error_rate", "overload"]
    slack = receiver.bodies["/services/T1/B2/xyz"]
    assert len(slack) == 2
    for body in slack:
        assert body["text"].startswith(":rotating_light: *[FIRED]")
        assert body["blocks"][0]["type"] == "section"
        assert "`anth/claude-sonnet-4-6`" in body["blocks"][1]["elements"][0]["text"]
    sender, recipients, content = mailbox.messages[0]
    assert sender == "hedgerow@example.org"
    assert recipients == ["oncall@example.org", "lead@example.org"]
    message = email.message_from_bytes(content)
    assert message["Subject"].startswith("[hedgerow] FIRED: anth/claude-sonnet-4-6")
    assert "deployment: anth/claude-sonnet-4-6" in message.get_payload()


async def test_notifications_are_rate_limited_per_minute_and_failures_counted(
    mock: RunningMock, tmp_path: Path, receiver: Receiver
) -> None:
    clock = FakeClock()
    routes = {
        "a": {"tiers": [[SONNET]]},
        "b": {"tiers": [[GPT]]},
        "c": {"tiers": [["gem/gemini-3-5-flash"]]},
    }
    async with observed(
        mock,
        tmp_path,
        clock,
        routes=routes,
        sinks={"webhooks": [receiver.url + "/ok", receiver.url + "/fail"]},
        alerts={"evaluate_every": 3600.0, "max_per_minute": 2},
    ) as obs:
        for deployment in (SONNET, GPT, "gem/gemini-3-5-flash"):
            attempts(obs, 5, "529", deployment=deployment)
        fired = obs.alerts.evaluate()
        assert len([a for a in fired if a.rule == "overload"]) == 3
        await obs.notifier.drain()
        text = obs.metrics.render().decode()
        # Two notifications a minute: the third alert is logged and counted, not sent.
        assert len(receiver.bodies["/ok"]) == 2
        assert (
            metric(
                text, "hedgerow_alert_notifications_total", sink="webhook", result="rate_limited"
            )
            == 1
        )
        # A minute later the bursts are over: the two alerts that went out resolve; the one
        # that never went out resolves silently (in the event log only).
        clock.advance(61.0)
        resolved = obs.alerts.evaluate()
        assert [a.state for a in resolved] == ["resolved"] * 3
        await obs.notifier.drain()
        assert [b["state"] for b in receiver.bodies["/ok"]] == ["fired"] * 2 + ["resolved"] * 2
        clock.advance(61.0)
        attempts(obs, 10, "429", deployment=GPT)
        obs.alerts.evaluate()
        await obs.notifier.drain()
        assert receiver.bodies["/ok"][-1]["rule"] == "rate_limit"

        # The broken receiver got every notification that went out, three tries each, and
        # each is counted as failed; nothing raised.
        text = obs.metrics.render().decode()
        assert (
            metric(text, "hedgerow_alert_notifications_total", sink="webhook", result="sent") == 5
        )
        assert (
            metric(text, "hedgerow_alert_notifications_total", sink="webhook", result="failed") == 5
        )
        assert len(receiver.bodies["/fail"]) == 5 * 3


async def test_background_evaluation_and_event_log_in_the_server(
    mock: RunningMock, tmp_path: Path
) -> None:
    clock = FakeClock()
    config = config_for(
        mock,
        tmp_path,
        {"chat": CHAT},
        observe={"alerts": {"evaluate_every": 0.05, "defaults": {"overload_burst": 3}}},
    )
    async with running_app(config, clock) as app:
        mock.set_faults("claude-sonnet-4-6", {"kind": "error", "status": 529})
        for _ in range(3):
            await app.chat()

        async def alert_rows() -> list[Any]:
            body = await app.get_json("/v1/events?since=5m&kind=alert")
            return body["events"]

        rows = await until(alert_rows, what="an alert row from the background evaluation")
        assert rows[0]["detail"]["rule"] == "overload"
        assert rows[0]["deployment"] == SONNET
        health = await app.get_json("/v1/health")
        assert [a["rule"] for a in health["alerts"]] == ["overload"]
        text = await app.metrics()
        assert (
            metric(text, "hedgerow_alerts_firing", rule="overload", model="claude-sonnet-4-6") == 1
        )


async def test_thresholds_per_route_and_deployment(mock: RunningMock, tmp_path: Path) -> None:
    routes = {"chat": CHAT, "other": {"tiers": [["gem/gemini-3-5-flash"]]}}
    alerts = {
        "evaluate_every": 3600.0,
        "defaults": {"error_rate": 0.1, "error_rate_resolve": 0.05},
        "routes": {"chat": {"error_rate_min_calls": 5}},
        "deployments": {GPT: {"error_rate": 0.5, "disabled": ["latency"]}},
    }
    clock = FakeClock()
    async with observed(mock, tmp_path, clock, routes=routes, alerts=alerts) as obs:
        settings = obs.alerts.settings
        assert settings[SONNET].error_rate == 0.1 and settings[SONNET].error_rate_min_calls == 5
        assert settings[GPT].error_rate == 0.5 and settings[GPT].disabled == ("latency",)
        assert settings["gem/gemini-3-5-flash"].error_rate_min_calls == 20
        attempts(obs, 4)
        attempts(obs, 1, "5xx")  # 20 % of 5 calls: above 10 %, and chat's minimum is 5
        assert states(obs.alerts.evaluate(), "error_rate") == ["fired"]

    for bad in (
        {"routes": {"nope": {"error_rate": 0.1}}},
        {"deployments": {"anth/nope": {"error_rate": 0.1}}},
        {"defaults": {"error_rate": 0.01, "error_rate_resolve": 0.02}},
    ):
        config = config_for(mock, tmp_path, routes, observe={"alerts": bad})
        with pytest.raises(ConfigError):
            async with running_app(config):
                pass
