"""``hedgerow mock`` options, and a simulator process started the way the CLI starts it."""

from __future__ import annotations

import argparse
import os
import signal
import socket
import subprocess
import sys
import time

import httpx
import pytest

from hedgerow.sim.faults import FaultKind
from hedgerow.sim.mock import _parse_fault_option, add_mock_arguments, main_mock

# What cli.py does with these two functions.
SCRIPT = """
import argparse, sys
from hedgerow.sim.mock import add_mock_arguments, main_mock
parser = argparse.ArgumentParser(prog="hedgerow mock")
add_mock_arguments(parser)
sys.exit(main_mock(parser.parse_args(sys.argv[1:])))
"""


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_mock_arguments(parser)
    return parser.parse_args(argv)


def test_defaults_and_fault_option() -> None:
    args = parse()
    assert (args.host, args.port, args.scenario, args.fault) == ("127.0.0.1", 8099, None, [])
    model, specs = _parse_fault_option(
        'claude-*=[{"kind":"error","status":529,"rate":0.5},{"kind":"hang"}]'
    )
    assert model == "claude-*" and [s.kind for s in specs] == [FaultKind.ERROR, FaultKind.HANG]


@pytest.mark.parametrize(
    "argv",
    [
        ["--fault", "no-equals-sign"],
        ["--fault", 'm={"kind":"boom"}'],
        ["--scenario", "no-such-scenario"],
        ["--require-key-env", "HEDGEROW_TEST_UNSET_VARIABLE"],
        ["--chunk-tokens", "0"],
    ],
)
def test_bad_options_exit_2(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    os.environ.pop("HEDGEROW_TEST_UNSET_VARIABLE", None)
    assert main_mock(parse(*argv)) == 2
    assert capsys.readouterr().err.startswith("hedgerow mock: ")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_process_serves_with_scenario_faults_and_key() -> None:
    port = free_port()
    argv = [
        "--port", str(port),
        "--scenario", "2026-06-05",
        "--time-scale", "1",
        "--fault", 'gpt-4o={"kind":"error","status":503}',
        "--require-key-env", "HEDGEROW_MOCK_KEY",
        "--reply-tokens", "5",
    ]  # fmt: skip
    env = {**os.environ, "HEDGEROW_MOCK_KEY": "sekrit"}
    proc = subprocess.Popen(
        [sys.executable, "-c", SCRIPT, *argv],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 20
        while True:  # wait for a real condition: the port answers
            assert proc.poll() is None, proc.stdout.read() if proc.stdout else ""
            try:
                httpx.get(f"{url}/_mock/health", timeout=0.5)
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline, "the simulator never listened"
                time.sleep(0.05)
        body = {"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}]}
        wrong = httpx.post(
            f"{url}/v1/chat/completions", json=body, headers={"Authorization": "Bearer nope"}
        )
        right = httpx.post(
            f"{url}/v1/chat/completions", json=body, headers={"Authorization": "Bearer sekrit"}
        )
        body["model"] = "gpt-4.1"
        other = httpx.post(
            f"{url}/v1/chat/completions", json=body, headers={"Authorization": "Bearer sekrit"}
        )
        assert (wrong.status_code, right.status_code, other.status_code) == (401, 503, 200)
        assert other.json()["usage"]["completion_tokens"] == 5
        state = httpx.get(f"{url}/_mock/state").json()
        assert state["scenario"]["name"] == "2026-06-05" and state["scenario"]["time_scale"] == 1
        assert state["require_key"] is True and "sekrit" not in str(state)
        assert state["models"]["gpt-4o"]["outcomes"] == {"auth_error": 1, "error_503": 1}
    finally:
        proc.send_signal(signal.SIGINT)
        output, _ = proc.communicate(timeout=10)
    assert proc.returncode == 0
    text = output.decode()
    assert f"listening on http://127.0.0.1:{port}" in text and "2026-06-05" in text
    assert "sekrit" not in text
