"""The alerting rules and the Grafana dashboard shipped for teams that alert outside hedgerow:
``promtool`` checks and unit-tests the rules, and every metric they (and the dashboard) use
is one hedgerow really exports."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

from hedgerow.sim.mock import RunningMock
from tests.observe.conftest import ROOT, FakeClock, config_for, running_app

RULES = ROOT / "deploy" / "prometheus" / "hedgerow-rules.yml"
RULE_TESTS = ROOT / "deploy" / "prometheus" / "hedgerow-rules.test.yml"
DASHBOARD = ROOT / "deploy" / "grafana" / "hedgerow-dashboard.json"
METRIC = re.compile(r"\bhedgerow_[a-z_]+")


def test_promtool_checks_the_rules(prometheus_tools: None) -> None:
    result = subprocess.run(
        ["promtool", "check", "rules", str(RULES)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS: 10 rules found" in result.stdout


def test_promtool_unit_tests_of_the_rules_pass(prometheus_tools: None) -> None:
    result = subprocess.run(
        ["promtool", "test", "rules", str(RULE_TESTS)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=RULE_TESTS.parent,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def _family(name: str) -> str:
    for suffix in ("_bucket", "_count", "_sum", "_total", "_created"):
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return name


async def test_rules_and_dashboard_use_only_exported_metrics(
    mock: RunningMock, tmp_path: Path
) -> None:
    # A Redis shared between instances (unreachable here: the gauge still exists, at 0).
    config = config_for(mock, tmp_path, shared={"redis_url": "redis://127.0.0.1:1"})
    async with running_app(config, FakeClock()) as app:
        await app.chat()
        exposition = await app.metrics()
    exported = {line.split()[2] for line in exposition.splitlines() if line.startswith("# TYPE ")}
    dashboard = json.loads(DASHBOARD.read_text())
    exprs = [t["expr"] for p in dashboard["panels"] for t in p["targets"]]
    exprs += [a["expr"] for a in dashboard["annotations"]["list"]]
    used = {name for text in [RULES.read_text(), *exprs] for name in METRIC.findall(text)}
    assert len(used) > 15
    missing = sorted(n for n in used if _family(n) not in exported and n not in exported)
    assert missing == [], f"not exported by hedgerow: {missing}"
    # Every panel queries through the dashboard's data source variable.
    assert all(p["datasource"]["uid"] == "${datasource}" for p in dashboard["panels"])
    assert {v["name"] for v in dashboard["templating"]["list"]} == {
        "datasource",
        "route",
        "provider",
    }
