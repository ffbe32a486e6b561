"""``hedgerow serve --workers N``: N worker processes on one port, and their supervisor.

The supervisor opens N listening sockets on the port with ``SO_REUSEPORT`` (the kernel
spreads connections over them) and keeps them open for its whole life; worker *i* inherits
socket *i*. Because the supervisor holds every socket, a socket's accept queue outlives the
worker that serves it:

* a worker that dies is restarted on the same socket; connections that arrived meanwhile
  wait in the queue instead of being refused or reset;
* ``SIGHUP`` reloads the config without dropping a request: the file is validated, N new
  workers start on the same sockets and say when they listen, then the old ones stop
  accepting and drain (their open streams run to the end, up to ``--drain-seconds``). A
  config that does not load is reported and the old workers keep serving;
* ``SIGTERM`` / ``SIGINT`` drain every worker (up to ``--drain-seconds``) and exit.

Rate limits and breaker trips hold across the workers through a region of shared memory
(``hedgerow.routing.shared``), created here under ``/dev/shm`` and named to each worker in
``HEDGEROW_SHARED_REGION``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import selectors
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from aiohttp import web

from hedgerow.config import ConfigError, load_config
from hedgerow.routing import Gateway
from hedgerow.routing.shared import REGION_ENV

__all__ = ["run_worker", "supervise"]

log = logging.getLogger("hedgerow.server")

# How long a new worker may take to start listening before a reload is abandoned.
_READY_TIMEOUT = 30.0
# A worker that dies sooner than this after starting is restarted after a growing delay.
_CRASH_WINDOW = 5.0


def run_worker(config_path: str, sock_fd: int, ready_fd: int, drain: float) -> None:
    """One worker: serve the app on the inherited socket until SIGTERM, then drain."""
    from hedgerow.server.app import create_app, install_uvloop

    install_uvloop()
    config = load_config(config_path)

    async def main() -> None:
        app = create_app(Gateway(config), config)
        runner = web.AppRunner(
            app, handler_cancellation=True, access_log=None, shutdown_timeout=drain
        )
        await runner.setup()
        sock = socket.socket(fileno=sock_fd)
        site = web.SockSite(runner, sock)
        await site.start()
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        loop.add_signal_handler(signal.SIGHUP, lambda: None)  # the supervisor's business
        os.write(ready_fd, b"r")
        os.close(ready_fd)
        await stop.wait()
        # Stop accepting (the socket stays open in the supervisor for the next worker), let
        # open requests and streams finish up to `drain` seconds, then close what is left.
        await runner.cleanup()

    asyncio.run(main())


@dataclass
class _Worker:
    slot: int
    proc: subprocess.Popen[bytes]
    ready_r: int
    started: float = field(default_factory=time.monotonic)
    ready: bool = False


class _Supervisor:
    def __init__(self, config_path: str, host: str, port: int, workers: int, drain: float) -> None:
        self.config_path = config_path
        self.drain = drain
        self.sockets = [_listen(host, port) for _ in range(workers)]
        self.region = _region_path()
        self.workers: list[_Worker | None] = [None] * workers
        self.crashes = [0] * workers
        self.restart_at = [0.0] * workers
        self.draining: list[_Worker] = []
        self.selector = selectors.DefaultSelector()
        self.wake_r, self.wake_w = socket.socketpair()
        self.wake_r.setblocking(False)
        self.wake_w.setblocking(False)
        self.signals: list[int] = []

    def spawn(self, slot: int) -> _Worker:
        ready_r, ready_w = os.pipe()
        sock = self.sockets[slot]
        env = {**os.environ, REGION_ENV: self.region}
        args = [sys.executable, "-m", "hedgerow.cli", "serve", "--config", self.config_path]
        args += ["--_worker", f"{sock.fileno()},{ready_w}", "--drain-seconds", str(self.drain)]
        proc = subprocess.Popen(args, pass_fds=(sock.fileno(), ready_w), env=env)
        os.close(ready_w)
        worker = _Worker(slot, proc, ready_r)
        self.selector.register(ready_r, selectors.EVENT_READ, worker)
        return worker

    def _drop_ready_pipe(self, worker: _Worker) -> None:
        if worker.ready_r >= 0:
            with contextlib.suppress(KeyError, ValueError):
                self.selector.unregister(worker.ready_r)
            os.close(worker.ready_r)
            worker.ready_r = -1

    def poll(self, timeout: float) -> None:
        """Wait up to ``timeout`` for a signal or a worker's readiness."""
        for key, _ in self.selector.select(timeout):
            if key.fileobj is self.wake_r:
                with contextlib.suppress(BlockingIOError):
                    for byte in self.wake_r.recv(64):
                        self.signals.append(byte)
                continue
            worker = key.data
            assert isinstance(worker, _Worker)
            data = os.read(worker.ready_r, 1)
            worker.ready = data == b"r"
            self._drop_ready_pipe(worker)

    def reap(self) -> None:
        """Restart workers that died; forget drained ones that exited."""
        now = time.monotonic()
        for slot, worker in enumerate(self.workers):
            if worker is None:
                if now >= self.restart_at[slot]:
                    self.workers[slot] = self.spawn(slot)
                continue
            code = worker.proc.poll()
            if code is None:
                continue
            self._drop_ready_pipe(worker)
            lived = now - worker.started
            self.crashes[slot] = self.crashes[slot] + 1 if lived < _CRASH_WINDOW else 0
            delay = min(30.0, 0.5 * 2 ** (self.crashes[slot] - 1)) if self.crashes[slot] else 0.0
            log.warning(
                "worker %d (pid %d) exited with %s after %.1fs: restarting%s",
                slot,
                worker.proc.pid,
                code,
                lived,
                f" in {delay:.1f}s" if delay else "",
            )
            self.workers[slot] = None
            self.restart_at[slot] = now + delay
            if not delay:
                self.workers[slot] = self.spawn(slot)
        for old in list(self.draining):
            if old.proc.poll() is not None:
                self.draining.remove(old)

    def reload(self) -> None:
        """SIGHUP: new workers with the new config, then drain the old ones."""
        try:
            load_config(self.config_path)
        except (ConfigError, OSError) as exc:
            log.error("reload refused, the running workers keep serving: %s", exc)
            return
        fresh = [self.spawn(slot) for slot in range(len(self.workers))]
        deadline = time.monotonic() + _READY_TIMEOUT
        while not all(w.ready for w in fresh):
            dead = [w for w in fresh if w.proc.poll() is not None]
            if dead or time.monotonic() > deadline:
                log.error("reload failed: a new worker did not start; the old ones keep serving")
                for w in fresh:
                    self._drop_ready_pipe(w)
                    _stop(w.proc)
                return
            self.poll(0.1)
        old = [w for w in self.workers if w is not None]
        self.workers = list(fresh)
        self.crashes = [0] * len(fresh)
        for w in old:
            self._drop_ready_pipe(w)
            w.proc.send_signal(signal.SIGTERM)  # stop accepting, drain open streams
        self.draining.extend(old)
        log.warning("config reloaded: %d new workers serving, old ones draining", len(fresh))

    def shutdown(self) -> None:
        """Drain every worker (up to the drain deadline, then kill) and clean up."""
        everyone = [w for w in self.workers if w is not None] + self.draining
        for w in everyone:
            if w.proc.poll() is None:
                w.proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + self.drain + 5.0
        for w in everyone:
            try:
                w.proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                w.proc.kill()
                w.proc.wait()
            self._drop_ready_pipe(w)
        for sock in self.sockets:
            sock.close()
        with contextlib.suppress(OSError):
            os.unlink(self.region)

    def run(self) -> None:
        signal.set_wakeup_fd(self.wake_w.fileno())
        self.selector.register(self.wake_r, selectors.EVENT_READ, None)
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGCHLD):
            signal.signal(sig, lambda *_: None)  # delivered through the wakeup fd
        try:
            self.workers = [self.spawn(slot) for slot in range(len(self.workers))]
            while True:
                self.poll(0.5)
                signals, self.signals = self.signals, []
                if signal.SIGTERM in signals or signal.SIGINT in signals:
                    log.warning("stopping: draining %d workers", len(self.workers))
                    return
                if signal.SIGHUP in signals:
                    self.reload()
                self.reap()
        finally:
            self.shutdown()


def _listen(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    sock.listen(4096)
    sock.set_inheritable(True)
    sock.setblocking(False)
    return sock


def _region_path() -> str:
    base = Path("/dev/shm") if Path("/dev/shm").is_dir() else Path(tempfile.gettempdir())
    return str(base / f"hedgerow-{os.getpid()}-{secrets.token_hex(4)}.region")


def _stop(proc: subprocess.Popen[bytes]) -> None:
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def supervise(config_path: str, host: str, port: int, workers: int, drain: float) -> None:
    """Run ``workers`` worker processes on ``host:port`` until SIGTERM (see the module)."""
    logging.basicConfig(level=logging.INFO, format="hedgerow supervisor: %(message)s")
    _Supervisor(config_path, host, port, workers, drain).run()
