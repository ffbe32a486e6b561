"""A gateway key's limits hold across the workers of ``hedgerow serve --workers N``: N
workers grant the key's RPM and its concurrent requests once, not N times."""

from __future__ import annotations

import http.client
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager
from pathlib import Path

import pytest

from hedgerow._core import SharedState
from hedgerow.security import KeyGuard, KeyStore
from tests.procs import free_port, hedgerow_process


@pytest.fixture(scope="module")
def mock_port(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    port = free_port()
    log = tmp_path_factory.mktemp("mock") / "mock.log"
    with hedgerow_process(["mock", "--port", str(port)], port, log):
        yield port


def call(port: int, method: str, path: str, body: object = None, key: str | None = None) -> int:
    """One call on a fresh connection (the kernel spreads them over the workers)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=20)
    try:
        headers = {"content-type": "application/json", "connection": "close"}
        if key is not None:
            headers["authorization"] = f"Bearer {key}"
        payload = None if body is None else json.dumps(body).encode()
        conn.request(method, path, body=payload, headers=headers)
        response = conn.getresponse()
        response.read()
        return response.status
    finally:
        conn.close()


def chat(port: int, key: str) -> int:
    body = {"model": "chat", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 5}
    return call(port, "POST", "/v1/chat/completions", body, key)


def setup(tmp_path: Path, mock_port: int, **limits: object) -> tuple[Path, str]:
    store = KeyStore(path=str(tmp_path / "keys.db"))
    key, _ = store.create("limited", **limits)
    store.close()
    config = tmp_path / "c.yaml"
    raw = {
        "providers": {
            "oai": {
                "kind": "openai",
                "base_url": f"http://127.0.0.1:{mock_port}/v1",
                "api_key": "sk-test",
            }
        },
        "routes": {"chat": {"tiers": [["oai/gpt-5.5"]], "retry": {"max_retries": 0}}},
        "auth": {"keys_db": str(tmp_path / "keys.db")},
        "jobs": {"path": str(tmp_path / "jobs.db")},
        "observe": {"request_log": False},
    }
    config.write_text(json.dumps(raw))
    return config, key


def serve(
    config: Path, tmp_path: Path, port: int
) -> AbstractContextManager[subprocess.Popen[bytes]]:
    args = ["serve", "--config", str(config), "--port", str(port), "--workers", "2"]
    return hedgerow_process(args, port, tmp_path / "gw.log")


def test_a_keys_rpm_is_its_rpm_across_two_workers(tmp_path: Path, mock_port: int) -> None:
    config, key = setup(tmp_path, mock_port, rpm=10)
    port = free_port()
    with serve(config, tmp_path, port):
        statuses = [chat(port, key) for _ in range(30)]
    granted = statuses.count(200)
    # GCRA: a burst of 10, then 10/60 a second: the run takes a few seconds, so at most one
    # more. Per-worker buckets would grant about 20.
    assert 10 <= granted <= 11, statuses
    assert set(statuses) <= {200, 429}


def test_a_keys_concurrency_is_its_limit_across_two_workers(tmp_path: Path, mock_port: int) -> None:
    config, key = setup(tmp_path, mock_port, max_concurrent=2)
    port = free_port()
    fault = {"kind": "delay", "delay": 2.0}
    assert call(mock_port, "PUT", "/_mock/faults/gpt-5.5", fault) < 300
    try:
        with serve(config, tmp_path, port):
            with ThreadPoolExecutor(8) as pool:
                statuses = list(pool.map(lambda _: chat(port, key), range(8)))
            assert statuses.count(200) == 2, statuses
            assert statuses.count(429) == 6, statuses
            # Every slot came back when its request ended.
            call(mock_port, "DELETE", "/_mock/faults")
            with ThreadPoolExecutor(2) as pool:
                assert list(pool.map(lambda _: chat(port, key), range(2))) == [200, 200]
    finally:
        call(mock_port, "DELETE", "/_mock/faults")


def test_a_dead_workers_requests_in_flight_stop_counting(tmp_path: Path) -> None:
    region = SharedState(str(tmp_path / "region"), 256)
    store = KeyStore(path=str(tmp_path / "keys.db"))
    _, record = store.create("k", max_concurrent=2)
    # A worker that died holding both of the key's slots (a real, exited process).
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        check=True,
    )
    ghost = region.join(int(dead.stdout))
    assert ghost.acquire(record.sha256, 2) and ghost.acquire(record.sha256, 2)
    guard = KeyGuard(store, region=region)  # joining sweeps the dead
    try:
        assert region.in_flight(record.sha256) == 0
        assert guard.admit(record, "chat", 0) is None
        assert guard.admit(record, "chat", 0) is None
        refused = guard.admit(record, "chat", 0)
        assert refused is not None and refused.status == 429
        assert region.in_flight(record.sha256) == 2
        # A second process's guard shares the count.
        other = KeyGuard(store, region=region)
        refused = other.admit(record, "chat", 0)
        assert refused is not None and refused.status == 429
        guard.release(record)
        assert other.admit(record, "chat", 0) is None
        other.release(record)
        other.close()
        guard.release(record)
        assert region.in_flight(record.sha256) == 0
        assert os.getpid() in {pid for _, pid in region.members()}
    finally:
        guard.close()
        store.close()
    assert region.members() == []
