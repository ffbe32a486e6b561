"""``hedgerow serve --workers N``: one limit and one breaker across the workers, a dead worker
restarted, a reload that drops nothing, a drain on SIGTERM."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import threading
from pathlib import Path

import pytest

from tests.scale.conftest import Mock, chat, gateway, request, until, write_config

LIMIT = 30  # requests per minute (burst 30): the whole test runs well inside one minute


def _workers(supervisor: subprocess.Popen[bytes]) -> set[int]:
    """The supervisor's live worker processes."""
    out = subprocess.run(
        ["pgrep", "-P", str(supervisor.pid)], capture_output=True, text=True, check=False
    )
    return {int(pid) for pid in out.stdout.split()}


def _served_by_both(port: int, supervisor: subprocess.Popen[bytes]) -> None:
    """Both workers listen (the supervisor started them) before the test measures."""
    assert until(lambda: len(_workers(supervisor)) == 2, 10)
    assert until(lambda: chat(port)[0] in (200, 503), 10)


def test_rate_limit_is_the_limit_across_workers_not_n_times_it(tmp_path: Path, mock: Mock) -> None:
    route = {"tiers": [[{"target": "oai/gpt-5.5", "rpm": LIMIT}]]}
    config = write_config(tmp_path / "c.yaml", mock, route)
    with gateway(config, tmp_path / "gw.log", "--workers", "2") as (port, proc):
        assert until(lambda: len(_workers(proc)) == 2, 10)
        # Fresh connections: the kernel spreads them over both workers' sockets.
        statuses = [chat(port)[0] for _ in range(3 * LIMIT)]
    granted = statuses.count(200)
    # The bucket refills 0.5 token/s while the calls run: allow one or two more.
    assert LIMIT <= granted <= LIMIT + 2, statuses
    assert set(statuses) <= {200, 503, 429}


def test_a_breaker_opened_in_one_worker_is_honoured_by_the_others(
    tmp_path: Path, mock: Mock
) -> None:
    route = {"tiers": [["oai/gpt-4.1-mini"]]}
    breaker = {"consecutive_failures": 1, "open_base": 30, "open_max": 60}
    config = write_config(tmp_path / "c.yaml", mock, route, breaker=breaker)
    with gateway(config, tmp_path / "gw.log", "--workers", "2") as (port, proc):
        assert until(lambda: len(_workers(proc)) == 2, 10)
        # Exactly one failure, so exactly one worker (whichever took the call) trips.
        mock.admin("PUT", "faults/gpt-4.1-mini", {"kind": "error", "status": 500, "count": 1})
        try:
            assert chat(port)[0] >= 500
        finally:
            mock.heal()
        # The deployment is healthy again, but every worker holds off for the open time:
        # none of these calls (spread over both workers) reaches the simulator.
        before = mock.calls()
        statuses = [chat(port)[0] for _ in range(20)]
        assert mock.calls() == before, statuses
        assert set(statuses) == {503}


def test_the_config_sets_the_workers(tmp_path: Path, mock: Mock) -> None:
    """``server.workers`` in the config starts the supervisor without ``--workers``; the
    flag, when given, wins."""
    server = {"workers": 2, "drain_seconds": 5}
    config = write_config(tmp_path / "c.yaml", mock, {"tiers": [["oai/gpt-5.5"]]}, server=server)
    with gateway(config, tmp_path / "gw.log") as (port, proc):
        assert until(lambda: len(_workers(proc)) == 2, 10)
        assert chat(port)[0] == 200
    assert "with 2 workers" in (tmp_path / "gw.log").read_text()
    with gateway(config, tmp_path / "one.log", "--workers", "1") as (port, proc):
        assert chat(port)[0] == 200
        assert _workers(proc) == set()  # one process, no supervisor
    assert "workers" not in (tmp_path / "one.log").read_text()


def test_a_worker_that_dies_is_restarted(tmp_path: Path, mock: Mock) -> None:
    config = write_config(tmp_path / "c.yaml", mock, {"tiers": [["oai/gpt-5.5"]]})
    with gateway(config, tmp_path / "gw.log", "--workers", "2") as (port, proc):
        assert until(lambda: len(_workers(proc)) == 2, 10)
        victim = min(_workers(proc))
        os.kill(victim, signal.SIGKILL)
        assert until(lambda: victim not in _workers(proc) and len(_workers(proc)) == 2, 10)
        # The socket of the dead worker was kept open: every call is answered.
        assert [chat(port)[0] for _ in range(20)] == [200] * 20
        assert "restarting" in (tmp_path / "gw.log").read_text()


def _stream(port: int, out: list[bytes]) -> None:
    """A slow stream, read to its end."""
    status, body = request(
        port,
        "POST",
        "/v1/chat/completions",
        {
            "model": "slow",
            "messages": [{"role": "user", "content": "hi"}],
            "max_tokens": 30,
            "stream": True,
        },
        timeout=30,
    )
    out.append(str(status).encode() + b" " + body)


def test_sighup_reloads_the_config_without_dropping_a_request(tmp_path: Path, mock: Mock) -> None:
    mock.admin("PUT", "models/gpt-4o", {"tokens_per_second": 15, "reply_tokens": 20})
    routes = {"tiers": [["oai/gpt-5.5"]]}
    config = write_config(tmp_path / "c.yaml", mock, routes)
    raw = json.loads(config.read_text())
    raw["routes"]["slow"] = {"tiers": [["oai/gpt-4o"]]}
    config.write_text(json.dumps(raw))
    with gateway(config, tmp_path / "gw.log", "--workers", "2") as (port, proc):
        assert until(lambda: len(_workers(proc)) == 2, 10)
        old = _workers(proc)
        streams: list[bytes] = []
        stream = threading.Thread(target=_stream, args=(port, streams))
        stream.start()
        # The new config adds a route.
        raw["routes"]["added"] = {"tiers": [["oai/gpt-5.5"]]}
        config.write_text(json.dumps(raw))
        statuses: list[int] = []
        stop = threading.Event()

        def load() -> None:
            while not stop.is_set():
                statuses.append(chat(port)[0])

        caller = threading.Thread(target=load)
        caller.start()
        try:
            assert until(lambda: len(statuses) > 20, 10)
            proc.send_signal(signal.SIGHUP)
            assert until(lambda: chat(port, "added")[0] == 200, 20)
            assert until(lambda: not (old & _workers(proc)), 20)  # the old ones drained
            mark = len(statuses)
            assert until(lambda: len(statuses) > mark + 20, 10)
        finally:
            stop.set()
            caller.join()
            stream.join()
    assert statuses and set(statuses) == {200}, statuses
    # The stream opened on an old worker ran to its end across the reload.
    assert streams and streams[0].startswith(b"200 ") and b"[DONE]" in streams[0]


def _refused(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    except ConnectionRefusedError:
        return True
    return False


def test_sigterm_drains_open_streams_then_exits(tmp_path: Path, mock: Mock) -> None:
    """Open streams run to their end; meanwhile the port refuses new connections (they are
    not queued for the whole drain and then reset)."""
    mock.admin("PUT", "models/gpt-4o", {"tokens_per_second": 15, "reply_tokens": 60})
    config = write_config(tmp_path / "c.yaml", mock, {"tiers": [["oai/gpt-5.5"]]})
    raw = json.loads(config.read_text())
    raw["routes"]["slow"] = {"tiers": [["oai/gpt-4o"]]}
    config.write_text(json.dumps(raw))
    with gateway(config, tmp_path / "gw.log", "--workers", "2") as (port, proc):
        assert until(lambda: len(_workers(proc)) == 2, 10)
        streams: list[bytes] = []

        def upstream_streams() -> int:
            return int(mock.admin("GET", "state")["models"].get("gpt-4o", {}).get("streams", 0))

        # The simulator is shared by the module's tests: count from what is there now.
        before = upstream_streams()
        threads = [threading.Thread(target=_stream, args=(port, streams)) for _ in range(4)]
        for t in threads:
            t.start()
        assert until(lambda: upstream_streams() >= before + 4, 10)
        proc.send_signal(signal.SIGTERM)
        # Within the streams' 4 s, while they are still running: refused.
        assert until(lambda: _refused(port), 3)
        assert any(t.is_alive() for t in threads)
        for t in threads:
            t.join()
        assert proc.wait(timeout=20) == 0
    assert len(streams) == 4
    assert all(s.startswith(b"200 ") and b"[DONE]" in s for s in streams), streams


@pytest.mark.parametrize("workers", [1, 2])
def test_connections_waiting_in_the_accept_queue_at_sigterm_are_served(
    tmp_path: Path, mock: Mock, workers: int
) -> None:
    """Requests sent while the server could not accept (stopped), then SIGTERM: each worker
    (or the lone server) serves what waits in its queue before closing its socket, instead
    of letting those connections be reset."""
    config = write_config(tmp_path / "c.yaml", mock, {"tiers": [["oai/gpt-5.5"]]})
    body = json.dumps(
        {"model": "chat", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 5}
    ).encode()
    head = (
        b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Connection: close\r\nContent-Length: %d\r\n\r\n" % len(body)
    )
    with gateway(config, tmp_path / "gw.log", "--workers", str(workers)) as (port, proc):

        def servers() -> set[int]:
            return _workers(proc) if workers > 1 else {proc.pid}

        # Serving: a server catches SIGTERM once it listens (its handler is in place).
        assert until(lambda: _signals(servers(), "SigCgt") == workers, 10)
        pids = servers()
        for pid in pids:
            os.kill(pid, signal.SIGSTOP)
        try:
            # The kernel completes these connections into the workers' queues.
            clients = [socket.create_connection(("127.0.0.1", port), timeout=10) for _ in range(8)]
            for client in clients:
                client.sendall(head + body)
            proc.send_signal(signal.SIGTERM)
            # The supervisor signals the workers as it starts its shutdown.
            assert until(lambda: _signals(pids, "ShdPnd", "SigPnd") == len(pids), 5)
        finally:
            for pid in pids:
                os.kill(pid, signal.SIGCONT)
        answers = []
        for client in clients:
            with client:
                data = b""
                try:
                    while chunk := client.recv(65536):
                        data += chunk
                except ConnectionResetError:
                    data += b"<reset>"
                answers.append(data.split(b"\r\n", 1)[0])
        assert proc.wait(timeout=20) == 0
    assert answers == [b"HTTP/1.1 200 OK"] * 8, answers


def _signals(pids: set[int], *fields: str) -> int:
    """How many of ``pids`` have SIGTERM in one of the signal masks ``fields`` of their
    ``/proc/PID/status`` (``SigCgt``: caught; ``ShdPnd``/``SigPnd``: pending)."""
    bit = 1 << (signal.SIGTERM - 1)
    count = 0
    for pid in pids:
        masks = {
            name: int(value, 16)
            for name, _, value in (
                line.partition(":\t")
                for line in Path(f"/proc/{pid}/status").read_text().splitlines()
            )
            if name in fields
        }
        count += any(mask & bit for mask in masks.values())
    return count
