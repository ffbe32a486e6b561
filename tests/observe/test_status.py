"""Provider status pages, against a local stub serving the Statuspage JSON API's real shape:
incidents appear and resolve, actions are taken and undone, and a page that times out,
answers garbage or disappears never changes traffic."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from hedgerow.observe import Observability
from hedgerow.observe.eventlog import EventQuery
from hedgerow.routing import Gateway
from hedgerow.sim.mock import RunningMock
from tests.observe.conftest import (
    USER,
    FakeClock,
    Receiver,
    config_for,
    metric,
    running_app,
    until,
)

PAGE = {
    "id": "tymt9n04zgry",
    "name": "Anthropic",
    "url": "https://status.anthropic.com",
    "time_zone": "Etc/UTC",
    "updated_at": "2026-06-05T15:08:12.345Z",
}
COMPONENTS = ["claude.ai", "Claude API", "Claude Code"]


def component(name: str, status: str = "operational") -> dict[str, Any]:
    return {
        "id": "c-" + name.lower().replace(" ", "-").replace(".", ""),
        "name": name,
        "status": status,
        "created_at": "2023-07-11T16:19:23.433Z",
        "updated_at": "2026-06-05T15:08:12.345Z",
        "position": COMPONENTS.index(name) + 1,
        "description": None,
        "showcase": True,
        "start_date": None,
        "group_id": None,
        "page_id": PAGE["id"],
        "group": False,
        "only_show_if_degraded": False,
    }


def incident(
    incident_id: str,
    name: str,
    *,
    impact: str = "major",
    status: str = "investigating",
    components: tuple[str, ...] = ("Claude API",),
) -> dict[str, Any]:
    """An unresolved incident as Statuspage serves it."""
    return {
        "id": incident_id,
        "name": name,
        "status": status,
        "created_at": "2026-06-05T15:08:00.000Z",
        "updated_at": "2026-06-05T15:08:12.345Z",
        "monitoring_at": None,
        "resolved_at": None,
        "impact": impact,
        "shortlink": f"https://stspg.io/{incident_id}",
        "started_at": "2026-06-05T15:08:00.000Z",
        "page_id": PAGE["id"],
        "incident_updates": [
            {
                "id": "u-" + incident_id,
                "status": status,
                "body": "We are currently investigating this issue.",
                "incident_id": incident_id,
                "created_at": "2026-06-05T15:08:12.345Z",
                "updated_at": "2026-06-05T15:08:12.345Z",
                "display_at": "2026-06-05T15:08:12.345Z",
                "affected_components": [
                    {
                        "code": component(c)["id"],
                        "name": c,
                        "old_status": "operational",
                        "new_status": "major_outage",
                    }
                    for c in components
                ],
                "deliver_notifications": True,
                "custom_tweet": None,
                "tweet_id": None,
            }
        ],
        "components": [component(c, "major_outage") for c in components],
    }


class StatusStub:
    """A Statuspage-shaped server: ``incidents`` are unresolved ones; ``mode`` breaks it
    (``timeout``, ``garbage``, ``wrong_shape``, ``404``, ``500``, ``no_summary``)."""

    def __init__(self) -> None:
        self.incidents: list[dict[str, Any]] = []
        self.mode = "ok"
        self.hits: Counter[str] = Counter()
        self.url = ""

    def _broken(self) -> web.Response | None:
        if self.mode == "garbage":
            return web.Response(
                text="<html><body>502 Bad Gateway</body></html>", content_type="text/html"
            )
        if self.mode == "wrong_shape":
            return web.json_response({"incidents": "all good", "status": 7})
        if self.mode == "404":
            return web.Response(status=404, text="Not Found")
        if self.mode == "500":
            return web.Response(status=500, text="oops")
        return None

    async def summary(self, request: web.Request) -> web.Response:
        self.hits["summary"] += 1
        if self.mode == "timeout":
            await asyncio.sleep(30)
        if self.mode == "no_summary":
            return web.Response(status=404, text="Not Found")
        broken = self._broken()
        if broken is not None:
            return broken
        worst = max(
            (i["impact"] for i in self.incidents),
            default="none",
            key=["none", "minor", "major", "critical"].index,
        )
        down = {c for i in self.incidents for c in (x["name"] for x in i["components"])}
        return web.json_response(
            {
                "page": PAGE,
                "status": {
                    "indicator": worst,
                    "description": "Partial System Outage"
                    if self.incidents
                    else "All Systems Operational",
                },
                "components": [
                    component(c, "major_outage" if c in down else "operational") for c in COMPONENTS
                ],
                "incidents": self.incidents,
                "scheduled_maintenances": [],
            }
        )

    async def unresolved(self, request: web.Request) -> web.Response:
        self.hits["unresolved"] += 1
        if self.mode == "timeout":
            await asyncio.sleep(30)
        broken = None if self.mode == "no_summary" else self._broken()
        if broken is not None:
            return broken
        return web.json_response({"page": PAGE, "incidents": self.incidents})


@pytest.fixture
async def stub() -> AsyncIterator[StatusStub]:
    page = StatusStub()
    app = web.Application()
    app.router.add_get("/api/v2/summary.json", page.summary)
    app.router.add_get("/api/v2/incidents/unresolved.json", page.unresolved)
    runner = web.AppRunner(app, handler_cancellation=True, access_log=None, shutdown_timeout=0.5)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    page.url = f"http://127.0.0.1:{runner.addresses[0][1]}"
    try:
        yield page
    finally:
        await runner.cleanup()


ROUTES = {
    "chat": {"tiers": [["anth/claude-sonnet-4-6"], ["oai/gpt-5.5"]], "retry": {"max_retries": 0}},
    "deep": {
        "tiers": [["anth/claude-opus-4-8"], ["gem/gemini-3-5-pro"]],
        "retry": {"max_retries": 0},
    },
    "shared": {
        "tiers": [["anth/claude-haiku-4-5", "oai/gpt-4.1"]],
        "retry": {"max_retries": 0},
    },
}


@asynccontextmanager
async def monitored(
    mock: RunningMock, tmp: Path, page: dict[str, Any], **observe: Any
) -> AsyncIterator[Observability]:
    config = config_for(mock, tmp, ROUTES, observe={"status_pages": {"anth": page}, **observe})
    async with Gateway(config, clock=FakeClock()) as gateway:
        obs = Observability(gateway, config.observe)  # not started: the test polls
        try:
            yield obs
        finally:
            await obs.close()


async def ask(gateway: Gateway, route: str) -> str:
    result = await gateway.chat({"model": route, "messages": USER, "max_tokens": 10})
    return result.served.deployment


async def test_incident_opens_breakers_then_resolves_and_gives_them_back(
    mock: RunningMock, tmp_path: Path, stub: StatusStub, receiver: Receiver
) -> None:
    page = {"url": stub.url, "action": "open_breakers", "interval": 3600}
    sinks = {"webhooks": [receiver.url + "/hook"]}
    async with monitored(mock, tmp_path, page, sinks=sinks) as obs:
        gateway = obs.gateway
        # An operator had already taken Opus out, for reasons of their own.
        gateway.set_enabled("anth/claude-opus-4-8", False)
        assert await obs.status.poll_once("anth") == "ok"
        assert await ask(gateway, "chat") == "anth/claude-sonnet-4-6"

        stub.incidents = [incident("inc-0605", "Elevated errors on Claude Opus 4.8")]
        assert await obs.status.poll_once("anth") == "ok"
        # Before our own error counts show anything, Anthropic is out of rotation.
        assert sorted(gateway.operator_state()["disabled"]) == [
            "anth/claude-haiku-4-5",
            "anth/claude-opus-4-8",
            "anth/claude-sonnet-4-6",
        ]
        before = mock.requests("claude-sonnet-4-6")
        for _ in range(5):
            assert await ask(gateway, "chat") == "oai/gpt-5.5"
            assert await ask(gateway, "shared") == "oai/gpt-4.1"
        assert mock.requests("claude-sonnet-4-6") == before
        assert await obs.status.poll_once("anth") == "ok"  # still open: nothing new
        firing = obs.alerts.firing()
        assert [(a.rule, a.provider, a.url) for a in firing] == [
            ("status_incident", "anth", "https://stspg.io/inc-0605")
        ]

        stub.incidents = []
        assert await obs.status.poll_once("anth") == "ok"
        assert gateway.operator_state()["disabled"] == ["anth/claude-opus-4-8"]  # the operator's
        assert await ask(gateway, "chat") == "anth/claude-sonnet-4-6"
        assert obs.alerts.firing() == []

        rows, _ = await obs.events.query(EventQuery())
        incidents = [
            (r["kind"], r["detail"].get("state") or r["detail"].get("action"))
            for r in rows
            if r["kind"].startswith("status_")
        ]
        assert incidents == [
            ("status_incident", "open"),
            ("status_action", "open_breakers"),
            ("status_incident", "resolved"),
            ("status_action", "close_breakers"),
        ]
        operator = [r for r in rows if r["kind"] == "operator" and r["detail"].get("by")]
        assert {r["detail"]["by"] for r in operator} == {"status-page:anth"}
        assert [r["detail"]["action"] for r in operator] == ["disable"] * 2 + ["enable"] * 2
        await obs.notifier.drain()
        assert [(b["rule"], b["state"]) for b in receiver.bodies["/hook"]] == [
            ("status_incident", "fired"),
            ("status_incident", "resolved"),
        ]
        text = obs.metrics.render().decode()
        assert metric(text, "hedgerow_status_page_polls_total", provider="anth", result="ok") == 4
        assert metric(text, "hedgerow_status_incidents", provider="anth") == 0


async def test_incident_deprioritises_the_provider_within_its_tiers(
    mock: RunningMock, tmp_path: Path, stub: StatusStub
) -> None:
    page = {"url": stub.url, "action": "deprioritise", "deprioritise_factor": 0.001}
    async with monitored(mock, tmp_path, page) as obs:
        gateway = obs.gateway
        stub.incidents = [incident("inc-1", "Degraded performance", impact="minor")]
        await obs.status.poll_once("anth")
        served = Counter([await ask(gateway, "shared") for _ in range(40)])
        assert served["anth/claude-haiku-4-5"] <= 3  # about 0.1 % expected
        # Where Anthropic is alone in its tier, nothing changes: it is still the primary.
        assert await ask(gateway, "chat") == "anth/claude-sonnet-4-6"
        assert gateway.operator_state()["disabled"] == []
        stub.incidents = []
        await obs.status.poll_once("anth")
        weights = [c.weight for c in gateway.routes["shared"].tiers[0]]
        assert weights == [1.0, 1.0]
        assert obs.status.actions() == {"deprioritised": [], "disabled": {}}


async def test_impact_and_component_filters(
    mock: RunningMock, tmp_path: Path, stub: StatusStub
) -> None:
    page = {
        "url": stub.url,
        "action": "open_breakers",
        "min_impact": "major",
        "components": ["API"],
    }
    async with monitored(mock, tmp_path, page) as obs:
        stub.incidents = [
            incident("a", "Slow logins", impact="major", components=("claude.ai",)),
            incident("b", "Some API errors", impact="minor"),
        ]
        await obs.status.poll_once("anth")
        assert obs.gateway.operator_state()["disabled"] == []
        assert obs.status.pages["anth"].incidents == {}
        stub.incidents.append(incident("c", "API errors", impact="critical"))
        await obs.status.poll_once("anth")
        assert list(obs.status.pages["anth"].incidents) == ["c"]
        assert obs.gateway.operator_state()["disabled"]


async def test_summary_missing_falls_back_to_the_unresolved_incidents(
    mock: RunningMock, tmp_path: Path, stub: StatusStub
) -> None:
    async with monitored(mock, tmp_path, {"url": stub.url}) as obs:
        stub.mode = "no_summary"
        stub.incidents = [incident("x", "Elevated errors")]
        assert await obs.status.poll_once("anth") == "ok"
        assert list(obs.status.pages["anth"].incidents) == ["x"]
        assert stub.hits == {"summary": 1, "unresolved": 1}
        assert [a.rule for a in obs.alerts.firing()] == ["status_incident"]


@pytest.mark.parametrize(
    ("mode", "result"),
    [
        ("timeout", "timeout"),
        ("garbage", "garbage"),
        ("wrong_shape", "garbage"),
        ("404", "http_error"),
        ("500", "http_error"),
    ],
)
async def test_a_broken_page_changes_nothing(
    mock: RunningMock, tmp_path: Path, stub: StatusStub, mode: str, result: str
) -> None:
    page = {"url": stub.url, "action": "open_breakers", "timeout": 0.2}
    async with monitored(mock, tmp_path, page) as obs:
        gateway = obs.gateway
        stub.mode = mode
        assert await obs.status.poll_once("anth") == result
        assert gateway.operator_state()["disabled"] == []
        assert await ask(gateway, "chat") == "anth/claude-sonnet-4-6"
        # During an incident, a page that breaks leaves the action as it was.
        stub.mode = "ok"
        stub.incidents = [incident("i", "Outage")]
        assert await obs.status.poll_once("anth") == "ok"
        disabled = gateway.operator_state()["disabled"]
        assert disabled
        stub.mode = mode
        stub.incidents = []  # (the page would say resolved, if it answered)
        assert await obs.status.poll_once("anth") == result
        assert gateway.operator_state()["disabled"] == disabled
        assert obs.alerts.firing()
        text = obs.metrics.render().decode()
        assert metric(text, "hedgerow_status_page_polls_total", provider="anth", result=result) == 2


async def test_a_dead_status_page_polled_in_the_background_never_touches_traffic(
    mock: RunningMock, tmp_path: Path, stub: StatusStub
) -> None:
    stub.mode = "garbage"
    config = config_for(
        mock,
        tmp_path,
        ROUTES,
        observe={
            "status_pages": {
                "anth": {
                    "url": stub.url,
                    "action": "open_breakers",
                    "interval": 0.02,
                    "timeout": 0.2,
                },
                "oai": {"url": "http://127.0.0.1:9", "interval": 0.02, "timeout": 0.2},  # refused
            }
        },
    )
    async with running_app(config, FakeClock()) as app:
        await until(lambda: stub.hits["summary"] >= 5, what="five polls of the garbage page")
        for _ in range(5):
            response = await app.chat()
            assert response.status == 200
            assert response.headers["x-hedgerow-tier"] == "0"
        health = await app.get_json("/v1/health")
        assert health["status"] == "ok"
        pages = {p["provider"]: p for p in health["status_pages"]}
        assert pages["anth"]["result"] == "garbage" and pages["anth"]["incidents"] == []
        assert pages["oai"]["result"] == "connect_error"
        text = await app.metrics()
        assert (
            metric(text, "hedgerow_status_page_polls_total", provider="oai", result="connect_error")
            or 0
        ) >= 1
