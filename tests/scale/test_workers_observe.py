"""Observability of ``hedgerow serve --workers 2``, with real processes: ``/metrics`` adds up
every worker's counts whichever worker answers the scrape (and keeps a dead worker's), and an
operator action received by one worker holds in every worker before the admin call answers,
recorded once."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

from tests.scale.conftest import Mock, chat, gateway, request, until, write_config
from tests.scale.test_workers import _workers

N = 40
SCRAPES = 12


def total(text: str, name: str, **labels: str) -> float:
    """The sum of every series ``name{...}`` whose labels include ``labels``."""
    found = 0.0
    for line in text.splitlines():
        if line.startswith("#"):
            continue
        head, _, value = line.rpartition(" ")
        series, _, rest = head.partition("{")
        if series != name:
            continue
        pairs = dict(p.split("=", 1) for p in rest.rstrip("}").split(",") if "=" in p)
        if all(pairs.get(k) == f'"{v}"' for k, v in labels.items()):
            found += float(value)
    return found


def scrape(port: int) -> str:
    """``/metrics`` on a fresh connection (either worker may answer)."""
    status, body = request(port, "GET", "/metrics")
    assert status == 200
    return body.decode()


def requests_counted(port: int) -> float:
    return total(scrape(port), "hedgerow_requests_total", route="chat")


def test_metrics_add_up_across_workers_and_keep_a_dead_workers_counts(
    tmp_path: Path, mock: Mock
) -> None:
    config = write_config(tmp_path / "c.yaml", mock, {"tiers": [["oai/gpt-5.5"]]})
    metrics_dir = tmp_path / "metrics"
    env = {"PROMETHEUS_MULTIPROC_DIR": str(metrics_dir)}
    with gateway(config, tmp_path / "gw.log", "--workers", "2", env=env) as (port, proc):
        assert until(lambda: len(_workers(proc)) == 2, 10)
        # Fresh connections: the kernel spreads the calls over both workers.
        assert [chat(port)[0] for _ in range(N)] == [200] * N
        # A worker takes its events in within 50 ms; then every scrape, whichever worker
        # answers it, counts every worker's requests.
        assert until(lambda: requests_counted(port) == N, 5), requests_counted(port)
        for _ in range(SCRAPES):
            text = scrape(port)
            assert total(text, "hedgerow_requests_total", route="chat") == N
            assert total(text, "hedgerow_attempts_total", route="chat") == N
            assert total(text, "hedgerow_request_duration_seconds_count", route="chat") == N
            # Gauges are combined per metric (no series per process).
            assert 'pid="' not in text
            assert total(text, "hedgerow_breaker_state", model="gpt-5.5") == 0
        # Both workers really served (each wrote its own counts).
        writers = {p.name for p in metrics_dir.glob("counter_*.db")}
        assert writers == {f"counter_{pid}.db" for pid in _workers(proc)}

        victim = min(_workers(proc))
        os.kill(victim, signal.SIGKILL)
        assert until(lambda: victim not in _workers(proc) and len(_workers(proc)) == 2, 10)
        # Marked dead: its live gauges stop counting, its counts stay in the sums.
        assert until(lambda: not list(metrics_dir.glob(f"gauge_live*_{victim}.db")), 5)
        assert (metrics_dir / f"counter_{victim}.db").exists()
        for _ in range(SCRAPES):
            assert requests_counted(port) == N
        assert chat(port)[0] == 200
        assert until(lambda: requests_counted(port) == N + 1, 5)


def _environ(pid: int) -> dict[str, str]:
    """A process's environment, as it was started."""
    entries = Path(f"/proc/{pid}/environ").read_text().split("\0")
    return dict(entry.split("=", 1) for entry in entries if "=" in entry)


def test_metrics_directory_is_made_and_removed_by_the_supervisor(
    tmp_path: Path, mock: Mock
) -> None:
    config = write_config(tmp_path / "c.yaml", mock, {"tiers": [["oai/gpt-5.5"]]})
    env = {"PROMETHEUS_MULTIPROC_DIR": ""}  # not given: a temporary one of its own
    with gateway(config, tmp_path / "gw.log", "--workers", "2", env=env) as (port, proc):
        assert until(lambda: len(_workers(proc)) == 2, 10)
        assert [chat(port)[0] for _ in range(N)] == [200] * N
        assert until(lambda: requests_counted(port) == N, 5), requests_counted(port)
        for _ in range(SCRAPES):
            assert requests_counted(port) == N
        made = Path(_environ(min(_workers(proc)))["PROMETHEUS_MULTIPROC_DIR"])
        assert made.is_dir() and list(made.glob("counter_*.db"))
    assert not made.exists()


# -- operator controls ---------------------------------------------------------------------


def admin(port: int, *args: str) -> subprocess.CompletedProcess[str]:
    """``hedgerow admin`` against the server on ``port``, as a process."""
    return subprocess.run(
        [sys.executable, "-m", "hedgerow.cli", "admin", "--url", f"http://127.0.0.1:{port}", *args],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


def served(port: int, calls: int = 20) -> set[str]:
    """What answered ``calls`` chats on fresh connections: the model, or the minimal text."""
    seen = set()
    for _ in range(calls):
        status, body = chat(port)
        assert status == 200, body
        answer = json.loads(body)
        text = answer["choices"][0]["message"]["content"]
        seen.add("minimal" if text == "Back soon." else answer["model"])
    return seen


def test_an_operator_action_holds_in_every_worker_at_once_and_is_recorded_once(
    tmp_path: Path, mock: Mock
) -> None:
    route = {
        "tiers": [["oai/gpt-5.5"], ["oai/gpt-4.1"]],
        "minimal": {"kind": "template", "text": "Back soon."},
    }
    events = tmp_path / "events.db"
    observe = {"request_log": False, "event_log": str(events)}
    config = write_config(tmp_path / "c.yaml", mock, route, observe=observe)
    with gateway(config, tmp_path / "gw.log", "--workers", "2") as (port, proc):
        assert until(lambda: len(_workers(proc)) == 2, 10)
        assert served(port) == {"gpt-5.5"}

        result = admin(port, "--reason", "INC-12", "disable", "oai/gpt-5.5")
        assert result.returncode == 0, result.stderr
        # The very next calls, whichever worker takes each, avoid it: nothing waited.
        assert served(port) == {"gpt-4.1"}

        # A worker started later (a crash, a reload) applies what operators did first.
        victim = min(_workers(proc))
        os.kill(victim, signal.SIGKILL)
        assert until(lambda: victim not in _workers(proc) and len(_workers(proc)) == 2, 10)
        assert served(port) == {"gpt-4.1"}

        for args in (
            ("enable", "oai/gpt-5.5"),
            ("pin", "chat", "1"),
        ):
            assert admin(port, *args).returncode == 0
        assert served(port) == {"gpt-4.1"}
        assert admin(port, "minimal", "chat", "on").returncode == 0
        assert served(port) == {"minimal"}
        assert admin(port, "minimal", "chat", "off").returncode == 0
        assert admin(port, "pin", "chat", "none").returncode == 0
        assert served(port) == {"gpt-5.5"}

        for _ in range(6):
            state = json.loads(admin(port, "state").stdout)
            assert state["scope"] == "every worker"
            assert state["disabled"] == [] and state["pinned"] == {} and state["minimal"] == []

        # Once in the event log (both workers write to it), and once in the metrics.
        events_cli = ["events", "--db", str(events), "--kind", "operator", "--json"]
        result = subprocess.run(
            [sys.executable, "-m", "hedgerow.cli", *events_cli],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        assert result.returncode == 0, result.stderr
        rows = [json.loads(line) for line in result.stdout.splitlines()]
        assert [r["detail"]["action"] for r in rows] == [
            "disable",
            "enable",
            "pin",
            "minimal",
            "minimal",
            "pin",
        ]
        assert rows[0]["detail"]["reason"] == "INC-12"
        for _ in range(SCRAPES):
            text = scrape(port)
            assert total(text, "hedgerow_operator_actions_total") == 6
            assert total(text, "hedgerow_deployment_disabled", model="gpt-5.5") == 0


def test_workers_share_one_event_log_when_the_config_names_none(tmp_path: Path, mock: Mock) -> None:
    """No ``observe.event_log``: the supervisor gives the workers one file to share, so an
    action taken through one worker is in ``/v1/events`` whichever worker answers; the file
    goes when the server does."""
    observe = {"request_log": False}
    config = write_config(tmp_path / "c.yaml", mock, {"tiers": [["oai/gpt-5.5"]]}, observe=observe)
    with gateway(config, tmp_path / "gw.log", "--workers", "2") as (port, proc):
        assert until(lambda: len(_workers(proc)) == 2, 10)
        assert admin(port, "--reason", "INC-7", "disable", "oai/gpt-5.5").returncode == 0
        for _ in range(12):  # fresh connections: both workers answer some of them
            status, body = request(port, "GET", "/v1/events?kind=operator")
            assert status == 200, body
            rows = json.loads(body)["events"]
            assert [r["detail"].get("reason") for r in rows] == ["INC-7"], rows
        shared = Path(_environ(min(_workers(proc)))["HEDGEROW_EVENT_LOG"])
        assert shared.is_file()
    assert not shared.parent.exists()
