"""The provider's status page, as the simulator plays a scenario: a Statuspage-shaped JSON API.

``GET /api/v2/summary.json`` and ``GET /api/v2/incidents/unresolved.json`` answer in the
shape Atlassian Statuspage serves (status.anthropic.com, status.openai.com), with the
scenario's one incident (``Scenario.status_incident``) unresolved from its ``posted`` time to
its ``resolved`` time on the scenario's clock. So hedgerow's status-page poller
(``observe.status_pages``) can be pointed at the simulator, and a drill shows when
hedgerow's own alerts fired against when the provider's page said so — both measured.
Without a scenario the page says "All Systems Operational". Requests here are not counted
as provider requests.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
from aiohttp import web

from hedgerow.sim.scenario import StatusIncident
from hedgerow.sim.state import MockState

__all__ = ["add_status_routes", "status_body"]

_PAGE_ID = "hedgerowmock"
# Incident times are shown on the scenario's day when its name is one, else on this day.
_DEFAULT_DAY = datetime(2026, 1, 1, tzinfo=UTC)


def _day(name: str) -> datetime:
    try:
        return datetime.fromisoformat(name).replace(tzinfo=UTC)
    except ValueError:
        return _DEFAULT_DAY


def _iso(day: datetime, seconds: float) -> str:
    return (
        (day + timedelta(seconds=seconds)).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    )


def _component(name: str, status: str) -> dict[str, Any]:
    return {
        "id": "c-" + "".join(ch for ch in name.lower() if ch.isalnum()),
        "name": name,
        "status": status,
        "page_id": _PAGE_ID,
        "group": False,
        "only_show_if_degraded": False,
    }


def _incident(incident: StatusIncident, day: datetime) -> dict[str, Any]:
    created = _iso(day, incident.posted)
    return {
        "id": incident.id,
        "name": incident.name,
        "status": "investigating",
        "impact": incident.impact,
        "created_at": created,
        "updated_at": created,
        "started_at": created,
        "resolved_at": None,
        "shortlink": f"https://stspg.io/{incident.id}",
        "page_id": _PAGE_ID,
        "incident_updates": [
            {
                "id": f"u-{incident.id}",
                "status": "investigating",
                "body": "We are currently investigating this issue.",
                "incident_id": incident.id,
                "created_at": created,
                "display_at": created,
                "affected_components": [
                    {"name": c, "old_status": "operational", "new_status": "major_outage"}
                    for c in incident.components
                ],
            }
        ],
        "components": [_component(c, "major_outage") for c in incident.components],
    }


def status_body(state: MockState, kind: str) -> dict[str, Any]:
    """The body of ``summary.json`` (``kind="summary"``) or ``incidents/unresolved.json``
    (``kind="unresolved"``) at the scenario's current time."""
    player = state.scenario
    incident = None if player is None else player.scenario.status_at(player.elapsed())
    day = _day(player.scenario.name) if player is not None else _DEFAULT_DAY
    incidents = [] if incident is None else [_incident(incident, day)]
    page = {"id": _PAGE_ID, "name": "hedgerow mock", "url": "", "time_zone": "Etc/UTC"}
    if kind == "unresolved":
        return {"page": page, "incidents": incidents}
    down = set(incident.components) if incident is not None else set()
    names = sorted(down | ({"API"} if not down else set()))
    return {
        "page": page,
        "status": {
            "indicator": "none" if incident is None else incident.impact,
            "description": "All Systems Operational"
            if incident is None
            else "Partial System Outage",
        },
        "components": [
            _component(c, "major_outage" if c in down else "operational") for c in names
        ],
        "incidents": incidents,
        "scheduled_maintenances": [],
    }


def add_status_routes(app: web.Application, state: MockState) -> None:
    """Mount the status page for ``state``'s scenario on ``app``."""

    async def summary(request: web.Request) -> web.Response:
        return web.Response(
            body=orjson.dumps(status_body(state, "summary")), content_type="application/json"
        )

    async def unresolved(request: web.Request) -> web.Response:
        return web.Response(
            body=orjson.dumps(status_body(state, "unresolved")), content_type="application/json"
        )

    app.router.add_get("/api/v2/summary.json", summary)
    app.router.add_get("/api/v2/incidents/unresolved.json", unresolved)
