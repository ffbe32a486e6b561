"""Real processes: ``hedgerow mock`` and ``hedgerow serve`` on loopback ports, a real
Prometheus server scraping the gateway every second, and ``hedgerow admin`` /
``hedgerow events`` run as commands. The outage is scripted through the simulator's admin
API; every wait is on a real condition with a deadline."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx2
import orjson
import pytest

from tests.observe.conftest import ROOT, metric
from tests.procs import free_port, hedgerow_process, wait_for_port

CONFIG = """\
providers:
  anthropic: {{kind: anthropic, base_url: "http://127.0.0.1:{mock}", api_key: "${{TEST_ANTHROPIC_KEY}}"}}
  openai:    {{kind: openai, base_url: "http://127.0.0.1:{mock}/v1", api_key: "${{TEST_OPENAI_KEY}}"}}
breaker: {{consecutive_failures: 6, minimum_calls: 1000, open_base: 120, open_max: 120}}
routes:
  support-chat:
    tiers: [[anthropic/claude-sonnet-4-6], [openai/gpt-5.5]]
    retry: {{max_retries: 0}}
  drafts:
    tiers: [[anthropic/claude-haiku-4-5], [openai/gpt-4.1]]
    retry: {{max_retries: 0}}
observe:
  event_log: {events}
  alerts: {{evaluate_every: 3600}}
jobs: {{path: {jobs}}}
"""
KEYS = {
    "TEST_ANTHROPIC_KEY": "sk-ant-proc-secret-5d1e",
    "TEST_OPENAI_KEY": "sk-oai-proc-secret-c0ff",
}
BODY = {"messages": [{"role": "user", "content": "hello"}], "max_tokens": 16}


class Stack:
    def __init__(self, mock: int, gateway: int, config: Path, tmp: Path) -> None:
        self.mock = mock
        self.gateway = gateway
        self.config = config
        self.tmp = tmp
        self.url = f"http://127.0.0.1:{gateway}"
        self.client = httpx2.Client(base_url=self.url, timeout=10)
        self.admin = httpx2.Client(base_url=f"http://127.0.0.1:{mock}/_mock", timeout=5)

    def ask(self, route: str) -> httpx2.Response:
        response = self.client.post("/v1/chat/completions", json={"model": route, **BODY})
        assert response.status_code == 200, response.text
        return response


def write_config(tmp: Path, mock_port: int) -> Path:
    config = tmp / "hedgerow.yaml"
    config.write_text(CONFIG.format(mock=mock_port, events=tmp / "events.db", jobs=tmp / "jobs.db"))
    return config


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    tmp = tmp_path_factory.mktemp("observe-procs")
    mock_port, gw_port = free_port(), free_port()
    config = write_config(tmp, mock_port)
    with (
        hedgerow_process(["mock", "--port", str(mock_port)], mock_port, tmp / "mock.log"),
        hedgerow_process(
            ["serve", "--config", str(config), "--port", str(gw_port)],
            gw_port,
            tmp / "serve.log",
            env=KEYS,
        ),
    ):
        running = Stack(mock_port, gw_port, config, tmp)
        try:
            yield running
        finally:
            running.client.close()
            running.admin.close()


def hedgerow(*args: str) -> subprocess.CompletedProcess[str]:
    """Run the ``hedgerow`` command line as a process."""
    return subprocess.run(
        [sys.executable, "-m", "hedgerow.cli", *args],
        capture_output=True,
        text=True,
        timeout=30,
        cwd=ROOT,
    )


def test_operator_controls_from_the_cli_take_effect_at_once(stack: Stack) -> None:
    assert stack.ask("drafts").headers["x-hedgerow-deployment"] == "anthropic/claude-haiku-4-5"
    result = hedgerow(
        "admin",
        "--url",
        stack.url,
        "--reason",
        "INC-9 drill",
        "disable",
        "anthropic/claude-haiku-4-5",
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "disabled: anthropic/claude-haiku-4-5"
    # The very next request avoids it; nothing waited for a refresh.
    assert stack.ask("drafts").headers["x-hedgerow-deployment"] == "openai/gpt-4.1"

    result = hedgerow("admin", "--url", stack.url, "pin", "drafts", "1")
    assert result.returncode == 0, result.stderr
    result = hedgerow("admin", "--url", stack.url, "enable", "anthropic/claude-haiku-4-5")
    assert result.returncode == 0, result.stderr
    assert stack.ask("drafts").headers["x-hedgerow-tier"] == "1"  # still pinned
    assert hedgerow("admin", "--url", stack.url, "pin", "drafts", "none").returncode == 0
    assert stack.ask("drafts").headers["x-hedgerow-deployment"] == "anthropic/claude-haiku-4-5"

    state = orjson.loads(hedgerow("admin", "--url", stack.url, "state").stdout)
    assert state["disabled"] == [] and state["pinned"] == {}

    # Recorded in the event log the server writes, read by another process.
    result = hedgerow("events", "--config", str(stack.config), "--kind", "operator", "--json")
    assert result.returncode == 0, result.stderr
    rows = [orjson.loads(line) for line in result.stdout.splitlines()]
    assert [(r["detail"]["action"], r["route"] or r["deployment"]) for r in rows] == [
        ("disable", "anthropic/claude-haiku-4-5"),
        ("pin", "drafts"),
        ("enable", "anthropic/claude-haiku-4-5"),
        ("pin", "drafts"),
    ]
    assert rows[0]["detail"]["reason"] == "INC-9 drill"
    assert rows[0]["detail"]["by"].startswith("cli:")


def prometheus_query(client: httpx2.Client, query: str) -> list[dict[str, Any]]:
    response = client.get("/api/v1/query", params={"query": query})
    response.raise_for_status()
    result: list[dict[str, Any]] = response.json()["data"]["result"]
    return result


def wait_until(check: Any, what: str, timeout: float = 30.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.25)  # polling a real condition (Prometheus's answer), with a deadline
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def test_a_real_prometheus_scrapes_the_outage(stack: Stack, prometheus_tools: None) -> None:
    port = free_port()
    prom_dir = stack.tmp / "prometheus"
    prom_dir.mkdir()
    config = prom_dir / "prometheus.yml"
    config.write_text(
        "global: {scrape_interval: 1s, evaluation_interval: 1s}\n"
        f"rule_files: [{ROOT / 'deploy' / 'prometheus' / 'hedgerow-rules.yml'}]\n"
        "scrape_configs:\n"
        "  - job_name: hedgerow\n"
        f"    static_configs: [{{targets: ['127.0.0.1:{stack.gateway}']}}]\n"
    )
    with open(prom_dir / "prometheus.log", "wb") as log:
        proc = subprocess.Popen(
            [
                "prometheus",
                f"--config.file={config}",
                f"--storage.tsdb.path={prom_dir / 'data'}",
                f"--web.listen-address=127.0.0.1:{port}",
                "--log.level=warn",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            wait_for_port(port, proc)
            prom = httpx2.Client(base_url=f"http://127.0.0.1:{port}", timeout=5)
            sonnet = 'model="claude-sonnet-4-6"'
            stack.ask("support-chat")
            # Healthy, as scraped: the breaker closed.
            wait_until(
                lambda: [
                    r
                    for r in prometheus_query(prom, f"hedgerow_breaker_state{{{sonnet}}}")
                    if r["value"][1] == "0"
                ],
                "Prometheus to scrape a closed breaker",
            )
            # The outage: Sonnet answers 529 to everything.
            stack.admin.put(
                "/faults/claude-sonnet-4-6", json={"kind": "error", "status": 529}
            ).raise_for_status()
            for _ in range(8):
                assert stack.ask("support-chat").headers["x-hedgerow-tier"] == "1"
            wait_until(
                lambda: [
                    r
                    for r in prometheus_query(prom, f"hedgerow_breaker_state{{{sonnet}}}")
                    if r["value"][1] == "2"
                ],
                "Prometheus to scrape the breaker open",
            )
            failovers = prometheus_query(
                prom, 'sum(hedgerow_failovers_total{route="support-chat"})'
            )
            assert float(failovers[0]["value"][1]) == 6.0
            errors = prometheus_query(prom, f'hedgerow_attempts_total{{{sonnet},class="529"}}')
            assert float(errors[0]["value"][1]) == 6.0
            # And the shipped rules, evaluated by Prometheus on those metrics, fire.
            alerts = wait_until(
                lambda: [
                    a
                    for a in prom.get("/api/v1/alerts").json()["data"]["alerts"]
                    if a["labels"]["alertname"] == "HedgerowOverloadBurst"
                    and a["state"] == "firing"
                ],
                "HedgerowOverloadBurst to fire in Prometheus",
            )
            assert alerts[0]["labels"]["model"] == "claude-sonnet-4-6"
            prom.close()
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            stack.admin.delete("/faults")


def test_the_server_logs_one_json_line_per_request_without_keys(stack: Stack) -> None:
    stack.ask("drafts")
    log = stack.tmp / "serve.log"

    def lines() -> list[dict[str, Any]]:
        found = []
        for line in log.read_text().splitlines():
            if line.startswith("{"):
                entry = orjson.loads(line)
                if entry.get("event") == "request":
                    found.append(entry)
        return found

    entries = wait_until(lambda: lines(), "request lines in the server's output", 10)
    assert all(e["request_id"].startswith("req_") for e in entries)
    assert any(e["attempt_log"] for e in entries)
    text = log.read_text()
    for key in KEYS.values():
        assert key not in text


def test_metrics_add_up_across_worker_processes(tmp_path: Path) -> None:
    """``--workers N`` (several processes): with PROMETHEUS_MULTIPROC_DIR set, any worker's
    /metrics answers for all of them."""
    multiproc = tmp_path / "prometheus-multiproc"
    multiproc.mkdir()
    mock_port, first, second = free_port(), free_port(), free_port()
    config = write_config(tmp_path, mock_port)
    env = {**KEYS, "PROMETHEUS_MULTIPROC_DIR": str(multiproc)}
    serve = ["serve", "--config", str(config), "--port"]
    with (
        hedgerow_process(["mock", "--port", str(mock_port)], mock_port, tmp_path / "mock.log"),
        hedgerow_process([*serve, str(first)], first, tmp_path / "w1.log", env=env),
        hedgerow_process([*serve, str(second)], second, tmp_path / "w2.log", env=env),
        httpx2.Client(timeout=10) as client,
    ):
        for port, n in ((first, 3), (second, 4)):
            for _ in range(n):
                response = client.post(
                    f"http://127.0.0.1:{port}/v1/chat/completions",
                    json={"model": "support-chat", **BODY},
                )
                assert response.status_code == 200
        # Each worker takes its queued events in within 50 ms: wait for both to be counted.
        for port in (first, second):

            def scraped(port: int = port) -> str | None:
                text = client.get(f"http://127.0.0.1:{port}/metrics").text
                requests = metric(
                    text,
                    "hedgerow_requests_total",
                    route="support-chat",
                    tier="0",
                    **{"class": "ok"},
                )
                return text if requests == 7.0 else None

            text = wait_until(scraped, f"worker on {port} to report all 7 requests", 10)
            assert metric(text, "hedgerow_breaker_state", model="claude-sonnet-4-6") == 0
            count = metric(
                text, "hedgerow_attempt_duration_seconds_count", model="claude-sonnet-4-6"
            )
            assert count == 7.0  # histograms add up too
    assert any(p.name.startswith("counter_") for p in multiproc.iterdir())
    assert os.environ.get("PROMETHEUS_MULTIPROC_DIR") is None  # the test process is untouched
