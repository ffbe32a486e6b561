"""``hedgerow bench`` end to end: the simulator, the gateway and the load generator as real
processes, a quick run, and a report whose figures hang together."""

from __future__ import annotations

import math
import subprocess
from pathlib import Path

import orjson
import pytest

from hedgerow.capacity.bench import bench_config, plan_cores
from tests.procs import HEDGEROW

TARGET = 1234.0


@pytest.mark.timeout(240)
def test_quick_bench_reports_plausible_capacity() -> None:
    done = subprocess.run(
        [*HEDGEROW, "bench", "--quick", "--json", "--target-rps", str(TARGET)],
        capture_output=True,
        timeout=220,
        check=False,
    )
    assert done.returncode == 0, done.stderr.decode()[-2000:]
    report = orjson.loads(done.stdout)

    machine = report["machine"]
    assert machine["cores"] >= 1 and machine["memory_bytes"] > 0
    assert machine["cpu"] and machine["os"] and machine["python"].startswith("CPython")
    layout = report["layout"]
    if machine["cores"] >= 2:
        # The load generator never runs on the gateway's core.
        assert not set(layout["gateway_cores"]) & set(layout["load_generator_cores"])

    steps = report["steps"]
    assert steps and steps[0]["offered_rps"] == 20.0
    rates = [s["offered_rps"] for s in steps]
    assert rates == sorted(rates)
    for step in steps:
        assert set(step["cpu"]) == {"gateway", "simulator", "load_generator"}
        assert step["sent"] >= step["ok"]
        if step["passed"]:
            assert not step["errors"] and step["added_ms"]["p99"] <= report["p99_added_target_ms"]
            # Open loop: the achieved rate follows the offered one.
            assert step["achieved_rps"] == pytest.approx(step["offered_rps"], rel=0.25)

    max_rps = report["max_rps_per_worker"]
    assert max_rps > 0
    assert max_rps == max(s["offered_rps"] for s in steps if s["passed"])
    planning = report["planning_rps_per_worker"]
    assert planning >= max_rps
    assert report["workers_needed"] == math.ceil(TARGET / planning)
    projection = report["cpu_projection"]
    assert projection["cpu_us_per_request"] > 0
    # The projection is the measured cost at budget: rps = budget / seconds per request.
    assert projection["max_rps_per_worker"] == pytest.approx(
        projection["cpu_budget"] / (projection["cpu_us_per_request"] / 1e6), rel=0.01
    )
    if report["saturated_by"] == "gateway":
        assert planning == max_rps
    assert report["concurrent_streams_per_worker"] > 0  # 80% of the mix streams
    assert report["direct_at_max"]["added_ms"]["p99"] is not None

    held = report["open_streams"]
    assert held["opened"] == held["streams"] == 200
    assert held["rss_open_bytes"] > held["rss_idle_bytes"] > 0
    assert held["rss_per_1000_streams_bytes"] > 0
    assert held["cpu_percent_per_1000_streams"] > 0

    generator = report["load_generator"]
    assert generator["ok"] and generator["cpu_share_at_max"] < generator["limit"]


def test_a_users_config_is_pointed_at_the_simulator(tmp_path: Path) -> None:
    path = tmp_path / "hedgerow.yaml"
    path.write_text(
        "providers:\n"
        "  anthropic: {kind: anthropic, api_key: '${ANTHROPIC_API_KEY}'}\n"
        "  openai: {kind: openai, api_key_file: /run/secrets/openai}\n"
        "routes:\n"
        "  chat: {tiers: [[anthropic/claude-sonnet-4-6], [openai/gpt-5.5]]}\n"
        "auth: {keys: [{name: app, key_hash: x}]}\n"
        "shared: {redis_url: 'redis://prod:6379/0'}\n"
        "observe: {sinks: {slack: 'https://hooks.slack.com/x'}, status_pages: {anthropic: {url: 'https://status.anthropic.com'}}}\n"
    )
    raw, changes = bench_config(str(path), "http://127.0.0.1:9", tmp_path)
    providers = raw["providers"]
    assert providers["anthropic"]["base_url"] == "http://127.0.0.1:9"
    assert providers["openai"]["base_url"] == "http://127.0.0.1:9/v1"
    assert "api_key_file" not in providers["openai"]
    assert all(p["api_key"] == "hedgerow-bench-dummy-key" for p in providers.values())
    # Nothing reaches a real service or another instance from a bench.
    assert "auth" not in raw and "shared" not in raw
    assert "sinks" not in raw["observe"] and "status_pages" not in raw["observe"]
    assert any("shared dropped" in c for c in changes)


def test_cores_keep_the_gateway_alone() -> None:
    two = plan_cores([0, 1])
    assert two.gateway == {0} and two.load_generator == {1} == two.simulator
    four = plan_cores([0, 1, 2, 3])
    assert four.gateway == {0} and four.load_generator == {1} and four.simulator == {2, 3}
