"""Fixtures of the jobs tests: a real ``redis-server``, a queue of each backend, a fake clock.

``redis-server`` comes from the system's packages: ``ensure_redis.sh`` installs it when it
is missing (CI on a fresh machine), then each test session starts its own on a free
loopback port in a temporary directory, and stops it at the end.
"""

from __future__ import annotations

import shutil
import subprocess
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from hedgerow.config import Config, JobsConfig
from hedgerow.jobs import FakeClock, JobQueue
from hedgerow.jobs.redis import RedisQueue
from hedgerow.jobs.sqlite import SqliteQueue
from hedgerow.sim.mock import RunningMock
from tests.procs import free_port
from tests.servers import make_config

HERE = Path(__file__).resolve().parent


class RedisServer:
    """A ``redis-server`` process on loopback that a test can stop and start again (same
    port, same directory, so an append-only file carries the data across)."""

    def __init__(self, directory: Path, *, appendonly: bool) -> None:
        self.directory = directory
        self.port = free_port()
        self.appendonly = appendonly
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        args = [
            "redis-server",
            "--port", str(self.port),
            "--bind", "127.0.0.1",
            "--dir", str(self.directory),
            "--save", "",
            "--daemonize", "no",
            "--protected-mode", "yes",
        ]  # fmt: skip
        if self.appendonly:
            args += ["--appendonly", "yes", "--appendfsync", "always"]
        else:
            args += ["--appendonly", "no"]
        log = open(self.directory / "redis.log", "ab")  # noqa: SIM115 - owned by the process
        self.proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT)
        log.close()
        self._wait_ready()

    def _wait_ready(self, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise RuntimeError(f"redis-server exited: see {self.directory / 'redis.log'}")
            ping = subprocess.run(
                ["redis-cli", "-p", str(self.port), "ping"], capture_output=True, check=False
            )
            if ping.stdout.strip() == b"PONG":
                return
            time.sleep(0.02)  # polling a real condition (the server answers)
        raise TimeoutError("redis-server did not answer PING")

    def stop(self) -> None:
        """A clean shutdown (SIGTERM: Redis flushes its append-only file and exits)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=10)
        self.proc = None


def _ensure_redis() -> None:
    if shutil.which("redis-server") is None:
        subprocess.run(["bash", str(HERE / "ensure_redis.sh")], check=True)
    if shutil.which("redis-server") is None:
        raise RuntimeError("redis-server is not installed and could not be installed")


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """One Redis for the session (no persistence); tests use distinct key prefixes."""
    _ensure_redis()
    server = RedisServer(tmp_path_factory.mktemp("redis"), appendonly=False)
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def durable_redis(tmp_path: Path) -> Iterator[RedisServer]:
    """A Redis of its own with an fsynced append-only file, for restart tests."""
    _ensure_redis()
    server = RedisServer(tmp_path, appendonly=True)
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture(params=["sqlite", "redis"])
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
async def queue(
    backend: str, tmp_path: Path, request: pytest.FixtureRequest
) -> AsyncIterator[JobQueue]:
    """A fresh, empty queue of the parametrised backend."""
    q: JobQueue
    if backend == "sqlite":
        q = SqliteQueue(tmp_path / "jobs.db")
    else:
        server: RedisServer = request.getfixturevalue("redis_server")
        q = RedisQueue(server.url, prefix=f"t{uuid.uuid4().hex[:12]}")
    try:
        yield q
    finally:
        if isinstance(q, RedisQueue):
            await q.flush()
        await q.close()


# The router's own same-request retries are off: these tests count the job's attempts.
_ONCE = {"max_retries": 0}
ROUTES: dict[str, Any] = {
    "summarise": {"tiers": [["anth/claude-sonnet-4-6"]], "retry": _ONCE},
    "classify": {"tiers": [["oai/gpt-5.5"]], "retry": _ONCE},
    "extract": {"tiers": [["oai/gpt-4.1-mini"]], "retry": _ONCE},
}


def jobs_config(mock: RunningMock, **jobs: Any) -> Config:
    """A gateway config over ``mock`` with the three job routes and ``jobs`` settings."""
    settings = {"poll_interval": 0.05, "lease_seconds": 30.0, **jobs}
    config = make_config(mock, ROUTES, jobs=settings)
    assert isinstance(config.jobs, JobsConfig)
    return config


def chat(text: str = "Summarise the hedgerow survey.", model: str = "summarise") -> dict[str, Any]:
    """An OpenAI chat body."""
    return {"model": model, "messages": [{"role": "user", "content": text}], "max_tokens": 32}
