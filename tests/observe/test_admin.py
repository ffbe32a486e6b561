"""Operator controls: the admin API and ``hedgerow admin`` against a running (in-process)
server take effect at once and are recorded in the event log."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from hedgerow.cli import main
from hedgerow.observe.routes import ADMIN_PREFIXES, PUBLIC_PATHS
from hedgerow.security.keys import hash_key
from hedgerow.server import auth
from hedgerow.sim.mock import RunningMock
from tests.observe.conftest import App, FakeClock, config_for, running_app

ROUTES = {
    "chat": {
        "tiers": [["anth/claude-sonnet-4-6"], ["oai/gpt-5.5"]],
        "retry": {"max_retries": 0},
        "minimal": {"kind": "template", "text": "Switched off for now."},
    },
    "plain": {"tiers": [["gem/gemini-3-5-flash"]], "retry": {"max_retries": 0}},
}


async def post(app: App, path: str, body: Any = None, **headers: str) -> tuple[int, Any]:
    async with app.session.post(app.url + path, json=body or {}, headers=headers) as r:
        return r.status, await r.json()


async def served(app: App, route: str = "chat") -> str:
    response = await app.chat(route)
    assert response.status == 200
    return response.headers["x-hedgerow-deployment"]


async def test_admin_api_controls_take_effect_at_once(mock: RunningMock, tmp_path: Path) -> None:
    async with running_app(config_for(mock, tmp_path, ROUTES), FakeClock()) as app:
        assert await served(app) == "anth/claude-sonnet-4-6"

        status, body = await post(app, "/admin/deployments/anth/disable", {"reason": "INC-7"})
        assert status == 200 and body["changed"] == ["anth/claude-sonnet-4-6"]
        assert body["state"]["disabled"] == ["anth/claude-sonnet-4-6"]
        before = mock.requests("claude-sonnet-4-6")
        assert await served(app) == "oai/gpt-5.5"
        assert mock.requests("claude-sonnet-4-6") == before  # not even tried
        status, body = await post(app, "/admin/deployments/anth/claude-sonnet-4-6/enable")
        assert status == 200 and body["changed"] == ["anth/claude-sonnet-4-6"]
        assert await served(app) == "anth/claude-sonnet-4-6"

        status, body = await post(app, "/admin/routes/chat/pin", {"tier": 1})
        assert status == 200 and body["pinned_tier"] == 1
        assert await served(app) == "oai/gpt-5.5"
        status, _ = await post(app, "/admin/routes/chat/pin", {"tier": None})
        assert await served(app) == "anth/claude-sonnet-4-6"

        status, body = await post(app, "/admin/routes/chat/minimal", {"on": True})
        assert status == 200 and body["force_minimal"] is True
        response = await app.chat()
        assert response.headers["x-hedgerow-tier"] == "minimal"
        await post(app, "/admin/routes/chat/minimal", {"on": False})
        assert await served(app) == "anth/claude-sonnet-4-6"

        state = await app.get_json("/admin/state")
        assert state["disabled"] == [] and state["pinned"] == {} and state["minimal"] == []
        assert state["deployments"]["anth/claude-sonnet-4-6"]["enabled"] is True
        assert state["routes"]["chat"]["has_minimal"] is True

        events = await app.get_json("/v1/events?kind=operator")
        actions = [(e["detail"]["action"], e["route"] or e["deployment"]) for e in events["events"]]
        assert actions == [
            ("disable", "anth"),
            ("enable", "anth/claude-sonnet-4-6"),
            ("pin", "chat"),
            ("pin", "chat"),
            ("minimal", "chat"),
            ("minimal", "chat"),
        ]
        assert events["events"][0]["detail"]["reason"] == "INC-7"
        text = await app.metrics()
        assert 'hedgerow_operator_actions_total{class="pin"} 2.0' in text


async def test_admin_api_refuses_what_cannot_be_done(mock: RunningMock, tmp_path: Path) -> None:
    async with running_app(config_for(mock, tmp_path, ROUTES), FakeClock()) as app:
        status, body = await post(app, "/admin/deployments/nobody/disable")
        assert status == 404 and "nobody" in body["error"]["message"]
        status, body = await post(app, "/admin/routes/chat/pin", {"tier": 5})
        assert status == 400 and "tiers 0..1" in body["error"]["message"]
        status, body = await post(app, "/admin/routes/chat/pin", {"tier": "1"})
        assert status == 400
        status, body = await post(app, "/admin/routes/nope/pin", {"tier": 0})
        assert status == 404
        status, body = await post(app, "/admin/routes/plain/minimal", {"on": True})
        assert status == 400 and "no minimal answer" in body["error"]["message"]
        status, body = await post(app, "/admin/routes/chat/minimal", {"on": "yes"})
        assert status == 400
        # A cross-site form cannot send JSON: a plain form post is refused.
        async with app.session.post(
            app.url + "/admin/deployments/anth/disable", data={"x": "1"}
        ) as response:
            assert response.status == 415
        assert (await app.get_json("/admin/state"))["disabled"] == []


async def test_hedgerow_admin_cli_against_a_running_server(
    mock: RunningMock, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    async with running_app(config_for(mock, tmp_path, ROUTES), FakeClock()) as app:

        async def cli(*argv: str) -> int:
            return await asyncio.to_thread(main, ["admin", "--url", app.url, *argv])

        assert await cli("--reason", "status page incident", "disable", "anth") == 0
        assert "disabled: anth/claude-sonnet-4-6" in capsys.readouterr().out
        assert await served(app) == "oai/gpt-5.5"
        assert await cli("enable", "anth/claude-sonnet-4-6") == 0
        assert await cli("pin", "chat", "1") == 0
        assert "pinned to tier 1" in capsys.readouterr().out
        assert await served(app) == "oai/gpt-5.5"
        assert await cli("pin", "chat", "none") == 0
        assert await cli("minimal", "chat", "on") == 0
        assert (await app.chat()).headers["x-hedgerow-tier"] == "minimal"
        assert await cli("minimal", "chat", "off") == 0
        capsys.readouterr()
        assert await cli("state") == 0
        assert '"disabled": []' in capsys.readouterr().out
        assert await cli("disable", "nobody/nothing") == 1
        assert "HTTP 404" in capsys.readouterr().err
        assert await cli("pin", "chat", "first") == 2

        code = await asyncio.to_thread(
            main, ["events", "--db", str(tmp_path / "events.db"), "--kind", "operator", "--json"]
        )
        assert code == 0
        lines = capsys.readouterr().out.splitlines()
        assert len(lines) == 6
        assert '"reason":"status page incident"' in lines[0]
        assert '"by":"cli:' in lines[0]

    assert main(["admin", "--url", "http://127.0.0.1:9", "state"]) == 1
    assert "cannot reach" in capsys.readouterr().err


async def test_admin_surface_needs_an_admin_key_when_keys_exist(
    mock: RunningMock, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    admin_key, user_key = "hr-test-admin-key-0001", "hr-test-user-key-0002"
    config = config_for(
        mock,
        tmp_path,
        ROUTES,
        auth={
            "keys": [
                {"name": "oncall", "sha256": hash_key(admin_key), "admin": True},
                {"name": "app", "sha256": hash_key(user_key)},
            ]
        },
    )
    async with running_app(config, FakeClock()) as app:
        for path in (
            "/v1/health",
            "/v1/events",
            "/dashboard",
            "/dashboard/api/state",
            "/admin/state",
        ):
            async with app.session.get(app.url + path) as r:
                assert r.status == 401, path
            async with app.session.get(
                app.url + path, headers={"authorization": f"Bearer {user_key}"}
            ) as r:
                assert r.status == 403, path
            async with app.session.get(
                app.url + path, headers={"authorization": f"Bearer {admin_key}"}
            ) as r:
                assert r.status == 200, path
        async with app.session.get(app.url + "/metrics") as r:
            assert r.status == 200  # Prometheus scrapes without a key

        args = ["admin", "--url", app.url, "disable", "anth"]
        assert await asyncio.to_thread(main, args) == 1
        assert "HTTP 401" in capsys.readouterr().err
        assert await asyncio.to_thread(main, [*args[:3], "--key", admin_key, *args[3:]]) == 0


def test_every_observability_route_is_public_or_behind_the_admin_gate() -> None:
    """The gate in hedgerow.server.auth covers exactly the prefixes this package uses."""
    assert set(ADMIN_PREFIXES) <= set(auth.ADMIN_PREFIXES)
    assert PUBLIC_PATHS <= auth._PUBLIC


async def test_routes_added_are_all_under_the_admin_prefixes(
    mock: RunningMock, tmp_path: Path
) -> None:
    async with running_app(config_for(mock, tmp_path, ROUTES), FakeClock()) as app:
        paths = {resource.canonical for resource in app.app.router.resources()}
    ours = {
        p
        for p in paths
        if p.startswith(("/metrics", "/v1/health", "/v1/events", "/dashboard", "/admin"))
    }
    assert {"/metrics", "/v1/health", "/v1/events", "/dashboard", "/admin/state"} <= ours
    for path in ours:
        assert path in PUBLIC_PATHS or path.startswith(ADMIN_PREFIXES), path
        assert auth.is_public_path(path) or auth.is_admin_path("POST", path), path
