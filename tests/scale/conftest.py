"""Fixtures of the scale-out tests: a simulator process, gateway processes, plain HTTP calls.

Every gateway here is a real ``hedgerow serve`` process (one per host it stands for, or one
supervisor with its workers); calls open a fresh connection each, so the kernel spreads them
over the workers of a ``SO_REUSEPORT`` port.
"""

from __future__ import annotations

import http.client
import json
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from tests.procs import free_port, hedgerow_process


class Mock:
    """A ``hedgerow mock`` process and its admin API."""

    def __init__(self, port: int) -> None:
        self.port = port

    def admin(self, method: str, path: str, body: Any = None) -> Any:
        status, data = request(self.port, method, f"/_mock/{path}", body)
        assert status < 300, (status, data)
        return json.loads(data) if data else None

    def fail(self, model: str, status: int = 500) -> None:
        """Every call to ``model`` answers ``status``."""
        self.admin("PUT", f"faults/{model}", {"kind": "error", "status": status})

    def heal(self) -> None:
        self.admin("DELETE", "faults")

    def calls(self) -> int:
        """Chat calls the simulator has answered so far (every model)."""
        return int(self.admin("GET", "state")["requests_total"])


@pytest.fixture(scope="session")
def mock(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mock]:
    port = free_port()
    log = tmp_path_factory.mktemp("mock") / "mock.log"
    with hedgerow_process(["mock", "--port", str(port)], port, log):
        yield Mock(port)


def request(
    port: int,
    method: str,
    path: str,
    body: Any = None,
    timeout: float = 10.0,
    key: str | None = None,
) -> tuple[int, bytes]:
    """One HTTP call on a fresh connection (with gateway ``key``): its status and body."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        payload = None if body is None else json.dumps(body).encode()
        headers = {"content-type": "application/json", "connection": "close"}
        if key is not None:
            headers["authorization"] = f"Bearer {key}"
        conn.request(method, path, body=payload, headers=headers)
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def chat(port: int, model: str = "chat", key: str | None = None, **extra: Any) -> tuple[int, bytes]:
    """An OpenAI chat call to the gateway on ``port``."""
    body = {"model": model, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 5}
    return request(port, "POST", "/v1/chat/completions", {**body, **extra}, key=key)


def write_config(path: Path, mock: Mock, route: dict[str, Any], **extra: Any) -> Path:
    """A config with one route ``chat`` over the simulator (JSON is valid YAML)."""
    raw = {
        "providers": {
            "oai": {
                "kind": "openai",
                "base_url": f"http://127.0.0.1:{mock.port}/v1",
                "api_key": "sk-test",
            }
        },
        "routes": {"chat": {"retry": {"max_retries": 0}, **route}},
        "observe": {"request_log": False},
        **extra,
    }
    path.write_text(json.dumps(raw))
    return path


@contextmanager
def gateway(
    config: Path, log: Path, *extra_args: str, env: dict[str, str] | None = None
) -> Iterator[tuple[int, Any]]:
    """``hedgerow serve`` on a free port until the block ends: (port, process)."""
    port = free_port()
    args = ["serve", "--config", str(config), "--port", str(port), *extra_args]
    with hedgerow_process(args, port, log, env=env) as proc:
        yield port, proc


def until(condition: Callable[[], bool], timeout: float, every: float = 0.02) -> bool:
    """Poll a real condition until it holds or ``timeout`` passes; whether it held."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(every)  # polling a real condition, not hoping a race away
    return condition()
