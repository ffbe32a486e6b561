"""A real ``redis-server`` for tests (the jobs backend, the state shared between instances).

``ensure_redis`` installs it from the system's packages when it is missing
(``ensure_debian.sh``: CI on a fresh machine); a ``RedisServer`` runs one on a free
loopback port in a directory of its own, and can be stopped and started again.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path

from tests.procs import free_port

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


def ensure_redis() -> None:
    """Install ``redis-server`` (``ensure_debian.sh``) when it is not on PATH."""
    if shutil.which("redis-server") is None:
        script = HERE / "ensure_debian.sh"
        subprocess.run(["bash", str(script), "redis-server", "--", "redis-server"], check=True)
    if shutil.which("redis-server") is None:
        raise RuntimeError("redis-server is not installed and could not be installed")
