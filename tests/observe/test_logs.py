"""Structured logs: one JSON line per request with its attempts, and no secrets anywhere."""

from __future__ import annotations

import io
import logging
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from hedgerow.observe.logs import JsonFormatter, configure_logging
from hedgerow.observe.redact import REDACTED, Redactor
from hedgerow.sim.mock import RunningMock
from tests.observe.conftest import (
    BREAKER,
    CHAT,
    FakeClock,
    Receiver,
    observe_config,
    running_app,
    until,
)
from tests.servers import make_config, provider_config

ROUTES = {
    "chat": CHAT,
    "hedged": {
        "tiers": [["anth/claude-haiku-4-5"], ["oai/gpt-4.1"]],
        "hedge": {"after": 0.05, "budget": 1.0},
        "retry": {"max_retries": 0},
    },
    "gem": {"tiers": [["gem/gemini-3-5-flash"]], "retry": {"max_retries": 0}},
}


def read_lines(path: Path) -> list[dict[str, Any]]:
    return [orjson.loads(line) for line in path.read_text().splitlines() if line.strip()]


async def test_one_json_line_per_request_with_its_attempts(
    mock: RunningMock, tmp_path: Path
) -> None:
    config = make_config(
        mock,
        ROUTES,
        breaker=BREAKER,
        observe=observe_config(tmp_path),
        jobs={"path": str(tmp_path / "jobs.db")},
    )
    async with running_app(config, FakeClock()) as app:
        assert (await app.chat()).status == 200
        mock.set_faults("claude-sonnet-4-6", {"kind": "error", "status": 529})
        assert (await app.chat(stream=True)).status == 200
        mock.set_faults("claude-haiku-4-5", {"kind": "delay", "delay": 5.0, "count": 1})
        assert (await app.chat("hedged")).status == 200
        assert (await app.chat("nope")).status == 404
        log = tmp_path / "requests.log"
        await until(lambda: log.exists() and len(read_lines(log)) == 4, what="4 request lines")
    lines = read_lines(log)
    healthy, failover, hedged, unknown = lines
    assert list(healthy)[:5] == ["ts", "level", "event", "route", "deployment"]
    assert healthy["status"] == 200 and healthy["tier"] == 0 and healthy["attempts"] == 1
    assert healthy["request_id"].startswith("req_")
    assert healthy["output_tokens"] > 0
    assert [a["outcome"] for a in healthy["attempt_log"]] == ["success"]

    assert failover["stream"] is True and failover["tier"] == 1
    assert failover["deployment"] == "oai/gpt-5.5"
    assert [
        (a["deployment"], a["outcome"], a["error"], a["status"]) for a in failover["attempt_log"]
    ] == [
        ("anth/claude-sonnet-4-6", "529", "overloaded", 529),
        ("oai/gpt-5.5", "success", None, None),
    ]

    assert hedged["hedged"] is True and hedged["deployment"] == "oai/gpt-4.1"
    assert {a["deployment"] for a in hedged["attempt_log"]} == {"oai/gpt-4.1"} or len(
        hedged["attempt_log"]
    ) == 1
    assert unknown["status"] == 404 and unknown["error"] == "bad_request"
    assert unknown["attempt_log"] == []
    assert len({line["request_id"] for line in lines}) == 4


@pytest.fixture
def restore_logging() -> Iterator[None]:
    logger = logging.getLogger("hedgerow")
    saved = (list(logger.handlers), logger.level, logger.propagate)
    try:
        yield
    finally:
        for handler in list(logger.handlers):
            logger.removeHandler(handler)
        for handler in saved[0]:
            logger.addHandler(handler)
        logger.setLevel(saved[1])
        logger.propagate = saved[2]


KEYS = {
    "anth": "sk-ant-api03-SECRETa1b2c3d4e5f6g7h8",
    "oai": "sk-proj-SECRET9f8e7d6c5b4a3210",
    "gem": "AIzaSyDSECRETgemini0123456789abc",
}


async def test_no_secret_reaches_any_output(
    mock: RunningMock,
    tmp_path: Path,
    receiver: Receiver,
    capfd: pytest.CaptureFixture[str],
    restore_logging: None,
) -> None:
    providers = provider_config(mock)
    for name, key in KEYS.items():
        providers[name]["api_key"] = key
    slack = receiver.url + "/services/T0000/B0000/SECRETslackTOKEN42"
    smtp_password = "SECRET-smtp-pass-77"
    secrets = [*KEYS.values(), slack, smtp_password]
    observe = observe_config(
        tmp_path,
        sinks={
            "slack": slack,
            "email": {
                "host": "127.0.0.1",
                "port": 9,
                "from": "a@example.org",
                "to": ["b@example.org"],
                "user": "u",
                "password": smtp_password,
                "timeout": 0.5,
            },
        },
        alerts={
            "evaluate_every": 3600.0,
            "defaults": {"error_rate_min_calls": 2, "overload_burst": 2, "overload_resolve": 1},
        },
    )
    config = make_config(
        mock,
        ROUTES,
        breaker=BREAKER,
        observe=observe,
        jobs={"path": str(tmp_path / "j.db")},
        providers=providers,
    )
    structured = io.StringIO()
    redactor = Redactor(secrets)
    listener = configure_logging(redactor, level=logging.DEBUG, stream=structured)
    clock = FakeClock()
    try:
        async with running_app(config, clock) as app:
            await app.chat()
            await app.chat(stream=True)
            await app.chat("gem")
            # An upstream that echoes the key back in its error (some do, partly masked).
            mock.set_faults(
                "claude-sonnet-4-6",
                {
                    "kind": "error",
                    "status": 401,
                    "message": f"Incorrect API key provided: {KEYS['anth']}. Authorization: Bearer {KEYS['anth']}",
                },
            )
            await app.chat()
            mock.set_faults("claude-sonnet-4-6", {"kind": "error", "status": 529})
            for _ in range(3):
                await app.chat(stream=True)
            mock.set_faults("claude-haiku-4-5", {"kind": "delay", "delay": 5.0, "count": 1})
            await app.chat("hedged")
            fired = app.observe.alerts.evaluate()
            assert fired, "an alert should fire (and be sent to the slack receiver)"
            await app.observe.notifier.drain()
            bodies = [
                await app.get_json("/v1/health"),
                await app.get_json("/v1/events?since=1h"),
                await app.get_json("/admin/state"),
                await app.get_json("/dashboard/api/state"),
            ]
            exposition = await app.metrics()
        listener.stop()
    finally:
        listener.stop()
    outputs = {
        "structured log": structured.getvalue(),
        "request log": (tmp_path / "requests.log").read_text(),
        "event log": "\n".join(
            str(row)
            for row in sqlite3.connect(tmp_path / "events.db").execute("SELECT * FROM events")
        ),
        "http": orjson.dumps(bodies).decode() + exposition,
        "slack payloads": orjson.dumps(list(receiver.bodies.values())).decode(),
    }
    captured = capfd.readouterr()
    outputs["stdout"], outputs["stderr"] = captured.out, captured.err
    # The paths that could leak were exercised: the echoed key reached the logs, masked.
    assert "Incorrect API key provided: " + REDACTED in outputs["event log"]
    assert "rejected hedgerow's key" in outputs["structured log"]
    assert REDACTED in outputs["structured log"]
    assert receiver.bodies, "the slack receiver got the alert"
    for where, text in outputs.items():
        for secret in secrets:
            assert secret not in text, f"{secret!r} leaked into the {where}"
        # Secrets in part: a key's distinctive middle, or a header value.
        assert "SECRET" not in text, where
        assert "Bearer sk-" not in text and "x-api-key: sk-" not in text.lower(), where


def test_redactor_masks_known_values_and_credential_shapes() -> None:
    redactor = Redactor(["hunter2-password", "x"])
    text = redactor.text(
        "login hunter2-password; Authorization: Bearer abc.def.ghijkl; x-api-key=AbCdEf123456; "
        "key sk-live-0123456789abcdef and AIzaSyA0123456789abcdefghijk; x stays"
    )
    assert "hunter2" not in text and "abc.def" not in text and "AbCdEf" not in text
    assert "sk-live" not in text and "AIzaSy" not in text
    assert text.endswith("x stays")  # values too short to be secrets are not scrubbed
    assert redactor.value({"a": ["hunter2-password"], "n": 3}) == {"a": [REDACTED], "n": 3}


def test_json_formatter_writes_one_object_per_record() -> None:
    record = logging.LogRecord("hedgerow.x", logging.ERROR, __file__, 1, "boom %s", ("now",), None)
    line = orjson.loads(JsonFormatter().format(record))
    assert line["level"] == "error" and line["logger"] == "hedgerow.x"
    assert line["message"] == "boom now"
