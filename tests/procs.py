"""Starting hedgerow's own processes (the simulator, the gateway) on loopback for tests.

Fixtures that start real processes live here, in one place.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

HEDGEROW = [sys.executable, "-m", "hedgerow.cli"]


def free_port() -> int:
    """A port that was free a moment ago on 127.0.0.1."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for_port(port: int, proc: subprocess.Popen[bytes], timeout: float = 20.0) -> None:
    """Block until something accepts on ``port`` (or the process died, or time ran out)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode} before listening")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.02)  # polling a real condition (the port), not hoping a race away
    raise TimeoutError(f"nothing listened on port {port} within {timeout}s")


@contextmanager
def hedgerow_process(
    args: Sequence[str],
    port: int,
    log_path: Path,
    env: dict[str, str] | None = None,
    cpus: str | None = None,
) -> Iterator[subprocess.Popen[bytes]]:
    """Run ``hedgerow ARGS`` until the block ends; its output goes to ``log_path``.

    ``cpus`` pins the process (``taskset -c``), for benchmarks.
    """
    full_env = {**os.environ, **(env or {})}
    pin = ["taskset", "-c", cpus] if cpus else []
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [*pin, *HEDGEROW, *args], stdout=log, stderr=subprocess.STDOUT, env=full_env
        )
        try:
            wait_for_port(port, proc)
            yield proc
        finally:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
