"""Starting hedgerow's own processes (the simulator, the gateway, the load generator) pinned
to chosen cores, and waiting until they listen."""

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
from typing import IO

__all__ = ["HEDGEROW", "free_port", "hedgerow_process", "pin", "stop", "wait_for_port"]

HEDGEROW = [sys.executable, "-m", "hedgerow.cli"]


def free_port() -> int:
    """A port that was free a moment ago on 127.0.0.1."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for_port(port: int, proc: subprocess.Popen[bytes], timeout: float = 30.0) -> None:
    """Block until something accepts on ``port`` (or the process died, or time ran out)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode} before listening")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.02)  # polling a real condition (the port)
    raise TimeoutError(f"nothing listened on port {port} within {timeout}s")


def pin(pid: int, cpus: set[int] | None) -> None:
    """Keep ``pid`` on ``cpus`` (no-op for None, or where affinity is not supported)."""
    if cpus and hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(pid, cpus)


def stop(proc: subprocess.Popen[bytes], timeout: float = 10.0) -> None:
    """SIGTERM (the gateway drains), then SIGKILL after ``timeout``."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@contextmanager
def hedgerow_process(
    args: Sequence[str],
    port: int,
    log_path: Path,
    *,
    env: dict[str, str] | None = None,
    cpus: set[int] | None = None,
    stdin: int | IO[bytes] | None = None,
) -> Iterator[subprocess.Popen[bytes]]:
    """Run ``hedgerow ARGS`` (pinned to ``cpus``) until the block ends, once it listens on
    ``port``; its output goes to ``log_path``."""
    full_env = {**os.environ, **(env or {})}
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [*HEDGEROW, *args], stdout=log, stderr=subprocess.STDOUT, env=full_env, stdin=stdin
        )
        try:
            pin(proc.pid, cpus)
            wait_for_port(port, proc)
            yield proc
        finally:
            stop(proc)
