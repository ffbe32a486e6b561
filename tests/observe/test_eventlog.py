"""The event log: rows for failovers, breakers, degradation, alerts and operator actions;
``GET /v1/events`` with its filters; ``hedgerow events`` on the file and on a server."""

from __future__ import annotations

import asyncio
import datetime
import time
from pathlib import Path
from typing import Any

import orjson
import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from hedgerow.cli import main
from hedgerow.observe.eventlog import EventLog, EventQuery, iso, parse_time
from hedgerow.routing.events import Event
from hedgerow.sim.mock import RunningMock
from tests.observe.conftest import FakeClock, config_for, running_app
from tests.servers import provider_config

ROUTES = {
    "chat": {"tiers": [["anth/claude-sonnet-4-6"], ["oai/gpt-5.5"]], "retry": {"max_retries": 0}},
    "support": {
        "tiers": [["anth/claude-opus-4-8"]],
        "retry": {"max_retries": 0},
        "minimal": {"kind": "template", "text": "Back soon."},
    },
}


async def scripted_incident(mock: RunningMock, tmp_path: Path) -> list[dict[str, Any]]:
    """An outage with failovers, a breaker, a minimal answer, an alert and operator actions;
    returns every row of ``GET /v1/events``."""
    clock = FakeClock()
    config = config_for(
        mock,
        tmp_path,
        ROUTES,
        observe={"alerts": {"evaluate_every": 3600.0, "defaults": {"overload_burst": 3}}},
    )
    async with running_app(config, clock) as app:
        await app.chat()
        mock.set_faults("claude-sonnet-4-6", {"kind": "error", "status": 529})
        for _ in range(3):
            await app.chat()
        mock.set_faults("claude-opus-4-8", {"kind": "error", "status": 503})
        await app.chat("support")
        app.observe.alerts.evaluate()
        async with app.session.post(
            app.url + "/admin/routes/chat/pin",
            json={"tier": 1, "reason": "INC-42: anthropic down"},
            headers={"x-hedgerow-operator": "alice"},
        ) as response:
            assert response.status == 200
        async with app.session.post(
            app.url + "/admin/deployments/anth/disable", json={}
        ) as response:
            assert response.status == 200
        body = await app.get_json("/v1/events?since=10m")
        assert body["truncated"] is False
        return list(body["events"])


async def test_the_audit_trail_of_an_outage(mock: RunningMock, tmp_path: Path) -> None:
    rows = await scripted_incident(mock, tmp_path)
    kinds = [r["kind"] for r in rows]
    assert kinds.count("failover") == 3
    assert {"breaker", "degraded", "retries_exhausted", "alert", "operator"} <= set(kinds)
    assert all(k not in kinds for k in ("request", "attempt"))  # not audit rows
    breaker = next(r for r in rows if r["kind"] == "breaker")
    assert breaker["deployment"] == "anth/claude-sonnet-4-6"
    assert breaker["detail"]["state"] == "open"
    failover = next(r for r in rows if r["kind"] == "failover")
    assert failover["route"] == "chat" and failover["deployment"] == "oai/gpt-5.5"
    assert failover["detail"] == {"tier": 1, "after": "overloaded"}
    degraded = next(r for r in rows if r["kind"] == "degraded")
    assert degraded["route"] == "support" and degraded["detail"]["minimal"] == "template"
    alert = next(r for r in rows if r["kind"] == "alert")
    assert alert["detail"]["rule"] == "overload" and alert["detail"]["state"] == "fired"
    pin, disable = [r for r in rows if r["kind"] == "operator"]
    assert pin["route"] == "chat"
    assert pin["detail"] == {
        "action": "pin",
        "tier": 1,
        "by": "alice",
        "reason": "INC-42: anthropic down",
    }
    assert disable["deployment"] == "anth" and disable["detail"]["action"] == "disable"
    # Chronological, with ids and ISO times.
    assert [r["at"] for r in rows] == sorted(r["at"] for r in rows)
    assert all(r["time"].endswith("Z") for r in rows)


async def test_events_endpoint_filters(mock: RunningMock, tmp_path: Path) -> None:
    clock = FakeClock()
    async with running_app(config_for(mock, tmp_path, ROUTES), clock) as app:
        mock.set_faults("claude-sonnet-4-6", {"kind": "error", "status": 529})
        for _ in range(3):
            await app.chat()
        mock.set_faults("claude-opus-4-8", {"kind": "error", "status": 503})
        await app.chat("support")

        async def events(query: str) -> list[dict[str, Any]]:
            body = await app.get_json("/v1/events?" + query)
            return list(body["events"])

        assert {r["kind"] for r in await events("kind=failover")} == {"failover"}
        both = await events("kind=failover,breaker")
        assert {r["kind"] for r in both} == {"failover", "breaker"}
        assert await events("kind=failover&kind=breaker") == both
        assert {r["route"] for r in await events("route=support")} == {"support"}
        assert await events("route=nope") == []
        assert {r["deployment"] for r in await events("deployment=anth")} == {
            "anth/claude-sonnet-4-6"
        }
        assert await events("since=" + str(time.time() + 60)) == []
        everything = await events("since=1h")
        assert await events("since=1h&after_id=" + str(everything[-2]["id"])) == everything[-1:]
        limited = await app.get_json("/v1/events?since=1h&limit=2")
        assert limited["truncated"] is True and limited["events"] == everything[-2:]
        async with app.session.get(app.url + "/v1/events?since=yesterday-ish") as response:
            assert response.status == 400
            assert "not a time" in (await response.json())["error"]["message"]


async def test_hedgerow_events_cli_reads_the_file_the_config_and_the_server(
    mock: RunningMock, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rows = await scripted_incident(mock, tmp_path)
    db = str(tmp_path / "events.db")

    assert main(["events", "--db", db, "--since", "1h"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == len(rows)
    assert "failover" in lines[0] and "oai/gpt-5.5" in lines[0] and "after=overloaded" in lines[0]

    assert main(["events", "--db", db, "--kind", "operator", "--json"]) == 0
    printed = [orjson.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r["detail"]["action"] for r in printed] == ["pin", "disable"]
    assert printed[0]["detail"]["by"] == "alice"

    assert main(["events", "--db", db, "--route", "support", "--kind", "degraded,breaker"]) == 0
    out = capsys.readouterr().out
    assert "degraded" in out and "failover" not in out

    config = tmp_path / "hedgerow.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "providers": provider_config(mock),
                "routes": ROUTES,
                "observe": {"event_log": db},
            }
        )
    )
    assert main(["events", "--config", str(config), "--kind", "breaker"]) == 0
    assert "anth/claude-sonnet-4-6" in capsys.readouterr().out
    assert main(["events", "--db", db, "--since", "soon"]) == 2
    assert main(["events", "--db", str(tmp_path / "missing.db")]) == 1
    assert "no event log" in capsys.readouterr().err

    # --url asks a running server (the log may be in memory there).
    clock = FakeClock()
    memory = config_for(mock, tmp_path / "m", ROUTES, observe={"event_log": None})
    (tmp_path / "m").mkdir()
    async with running_app(memory, clock) as app:
        mock.set_faults("claude-sonnet-4-6", {"kind": "error", "status": 529})
        await app.chat()
        code = await asyncio.to_thread(main, ["events", "--url", app.url, "--kind", "failover"])
        assert code == 0
        assert "failover" in capsys.readouterr().out


async def test_event_log_batches_bound_memory_and_survive_a_restart(tmp_path: Path) -> None:
    path = str(tmp_path / "e.db")
    log = EventLog(path, max_pending=5)
    for i in range(8):
        log.record(Event("breaker", "r", f"p/m{i}", {"state": "open"}, time.time()))
    log.record(Event("attempt", "r", "p/m", {}, time.time()))  # never logged
    assert log.dropped == 3
    await log.close()
    reopened = EventLog(path)
    rows, truncated = await reopened.query(EventQuery())
    assert [r["deployment"] for r in rows] == [f"p/m{i}" for i in range(5)]
    assert not truncated
    await reopened.close()


def test_parse_time_accepts_ages_iso_and_epoch() -> None:
    now = 1_750_000_000.0
    assert parse_time("15m", now) == now - 900
    assert parse_time("2h", now) == now - 7200
    assert parse_time("1d", now) == now - 86400
    assert parse_time("1750000000", now) == 1_750_000_000.0
    assert parse_time("2025-06-15T15:06:40Z", now) == 1_750_000_000.0
    assert parse_time("2025-06-15T15:06:40", now) == 1_750_000_000.0
    with pytest.raises(ValueError, match="not a time"):
        parse_time("last tuesday", now)


@given(
    st.one_of(
        st.floats(min_value=0, max_value=4e9),
        # the edges where rounding the microseconds carries into the next millisecond or
        # second
        st.builds(
            lambda s, f: s + f,
            st.integers(0, 4_000_000_000),
            st.sampled_from([0.9999995, 0.9999994, 0.0000005, 0.9995, 0.0005, 0.999999]),
        ),
    )
)
def test_iso_is_what_datetime_gives(epoch: float) -> None:
    """Every log line's timestamp: the cached, integer-only formatter agrees with
    ``datetime`` to the millisecond, carries included."""
    expected = datetime.datetime.fromtimestamp(epoch, datetime.UTC).isoformat(
        timespec="milliseconds"
    )
    assert iso(epoch) == expected.replace("+00:00", "Z")
