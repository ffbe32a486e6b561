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
* ``SIGTERM`` / ``SIGINT`` drain every worker (up to ``--drain-seconds``) and exit. Each
  worker first serves the connections already waiting in its accept queue, then closes its
  socket, as the supervisor does its own copies: from then on the port refuses new
  connections (a load balancer moves on) instead of queueing them until the drain ends.

Rate limits and breaker trips hold across the workers through a region of shared memory
(``hedgerow.routing.shared``), created here under ``/dev/shm`` and named to each worker in
``HEDGEROW_SHARED_REGION``.

**Metrics** (``/metrics``) answer for every worker whichever takes the scrape:
prometheus_client's multiprocess mode, in a directory made (or emptied) here before the
workers start (``PROMETHEUS_MULTIPROC_DIR``: the one given, else a fresh temporary one,
removed at exit), and a worker that exits is marked dead there (its live gauges stop
counting; its counts stay in the sums).

**The event log** (``/v1/events``, the dashboard's timeline) is one for all the workers: the
config's ``observe.event_log``, or, when it names none, a SQLite file made here for the
workers' lifetime (``HEDGEROW_EVENT_LOG``, bounded to the in-memory log's 100,000 rows,
removed at exit).

**Operator controls** (``/admin/...``, ``hedgerow admin``) apply in every worker before the
admin call answers. Each worker has a control channel to the supervisor (a socket pair, its
end named in ``HEDGEROW_CONTROL_FD``): the worker that receives an action applies and
records it, sends it up, the supervisor relays it to every other worker, collects their
acknowledgements (at most ``_RELAY_TIMEOUT``) and tells the first one, which then answers.
The supervisor keeps the latest action per target and hands that list to every worker it
starts (a restart, a reload) before it serves. Why a relay rather than shared memory or a
file the workers watch: those would leave a window in which another worker still serves
the old state (or cost a check on every request), the relay has none and costs nothing
per request, and the supervisor already outlives every worker, so the state survives
restarts and reloads without any file to clean up.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import selectors
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgspec
import orjson
from aiohttp import web

from hedgerow.config import ConfigError, load_config
from hedgerow.observe.admin import OperatorCommand, apply_command
from hedgerow.observe.eventlog import SHARED_EVENT_LOG_ENV
from hedgerow.observe.metrics import prepare_multiprocess, worker_exited
from hedgerow.routing import Gateway, GatewayError
from hedgerow.routing.shared import REGION_ENV

__all__ = ["listening_socket", "run_worker", "serve_app", "supervise"]

log = logging.getLogger("hedgerow.server")

# How long a new worker may take to start listening before a reload is abandoned.
_READY_TIMEOUT = 30.0
# A worker that dies sooner than this after starting is restarted after a growing delay.
_CRASH_WINDOW = 5.0
# The supervisor names each worker's end of its control channel in this variable.
CONTROL_ENV = "HEDGEROW_CONTROL_FD"
# How long the supervisor waits for every worker to apply a relayed operator action.
_RELAY_TIMEOUT = 5.0
# After a draining worker stops accepting: how long a connection it accepted last has to
# deliver its request before the server stops reading new ones (see ``run_worker``).
_ACCEPT_GRACE = 0.5


def run_worker(config_path: str, sock_fd: int, ready_fd: int, drain: float) -> None:
    """One worker: serve the app on the inherited socket until SIGTERM, then drain."""
    from hedgerow.server.app import create_app, install_uvloop

    install_uvloop()
    config = load_config(config_path)

    async def main() -> None:
        from hedgerow.observe.routes import ADMIN_KEY

        gateway = Gateway(config)
        app = create_app(gateway, config)

        async def link_peers() -> None:
            control = os.environ.get(CONTROL_ENV)
            if control is not None and ADMIN_KEY in app:
                link = _PeerLink(gateway, int(control))
                await link.open()  # the operators' state so far, applied before serving
                app[ADMIN_KEY].peers = link.relay
            # SIGHUP is the supervisor's business (a reload), not this worker's.
            asyncio.get_running_loop().add_signal_handler(signal.SIGHUP, lambda: None)

        def started() -> None:
            os.write(ready_fd, b"r")
            os.close(ready_fd)

        await serve_app(app, socket.socket(fileno=sock_fd), drain, link_peers, started)

    asyncio.run(main())


async def serve_app(
    app: web.Application,
    sock: socket.socket,
    drain: float,
    set_up: Callable[[], Awaitable[None]] | None = None,
    started: Callable[[], None] | None = None,
) -> None:
    """Serve ``app`` on the listening ``sock`` until SIGTERM or SIGINT, then stop
    gracefully: what waits in the accept queue is served, accepting stops, open requests and
    streams run on up to ``drain`` seconds. ``set_up`` runs once the app has started, before
    it listens; ``started`` once it listens and the signals are handled. ``hedgerow serve``
    and each worker of ``--workers N`` run this."""
    runner = web.AppRunner(app, handler_cancellation=True, access_log=None, shutdown_timeout=drain)
    await runner.setup()
    if set_up is not None:
        await set_up()
    site = web.SockSite(runner, sock)
    await site.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    if started is not None:
        started()
    await stop.wait()
    # Connections already in the accept queue are served, not left to be reset when the
    # socket closes (a full shutdown) or to wait for a new worker (a reload).
    await _serve_queued(sock, runner)
    # Stop accepting (under `--workers N` the socket stays open in the supervisor for the
    # next worker, unless the whole server is stopping). A connection accepted just before
    # has not always delivered its request yet, and once the server shuts down it reads
    # nothing more: that client would wait, unanswered, for the whole drain. So its request
    # gets a moment to arrive and be taken in hand.
    await site.stop()
    await asyncio.sleep(_ACCEPT_GRACE)
    # Then let open requests and streams finish up to the drain time, and close the rest.
    await runner.cleanup()


async def _serve_queued(sock: socket.socket, runner: web.AppRunner) -> None:
    """Accept what waits in the listening socket's queue and serve it like any connection."""
    loop = asyncio.get_running_loop()
    assert runner.server is not None
    while True:
        try:
            conn, _ = sock.accept()
        except (BlockingIOError, InterruptedError):
            return  # the queue is empty
        except OSError as exc:  # out of descriptors, say: the rest are reset at close
            log.warning("draining: could not accept a queued connection: %s", exc)
            return
        conn.setblocking(False)
        await loop.connect_accepted_socket(runner.server, conn)


class _PeerLink:
    """A worker's end of its control channel: newline-delimited JSON messages (see the
    module). Up: ``command`` (an action this worker applied). Down: ``state`` (first, the
    actions so far), ``apply`` (another worker's action; answered with ``ack``), ``done``
    (every worker applied this worker's ``command``)."""

    def __init__(self, gateway: Gateway, fd: int) -> None:
        self.gateway = gateway
        self.sock = socket.socket(fileno=fd)
        self.writer: asyncio.StreamWriter | None = None
        self.waiting: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self.sent = 0
        self.task: asyncio.Task[None] | None = None

    async def open(self) -> None:
        """Read and apply the actions so far, then listen for more."""
        self.sock.setblocking(False)
        reader, self.writer = await asyncio.open_unix_connection(sock=self.sock, limit=1 << 22)
        async with asyncio.timeout(_READY_TIMEOUT):
            state = orjson.loads(await reader.readline())
        for raw in state["commands"]:
            self._apply(raw)
        self.task = asyncio.create_task(self._listen(reader), name="hedgerow-peer-link")

    def _apply(self, raw: Any) -> bool:
        try:
            apply_command(self.gateway, msgspec.convert(raw, OperatorCommand), replica=True)
        except (KeyError, ValueError, GatewayError, msgspec.ValidationError) as exc:
            # E.g. a reloaded config without that route: the rest still applies.
            log.warning("operator action %s does not apply in this worker: %s", raw, exc)
            return False
        return True

    def _send(self, message: dict[str, Any]) -> None:
        assert self.writer is not None
        self.writer.write(orjson.dumps(message) + b"\n")

    async def _listen(self, reader: asyncio.StreamReader) -> None:
        while line := await reader.readline():
            try:
                message = orjson.loads(line)
                if message["op"] == "apply":
                    ok = self._apply(message["command"])
                    self._send({"op": "ack", "id": message["id"], "ok": ok})
                elif message["op"] == "done":
                    future = self.waiting.pop(message["id"], None)
                    if future is not None and not future.done():
                        done = {"applied": message["applied"], "missed": message["missed"]}
                        future.set_result(done)
            except Exception:  # one bad message must not stop the channel
                log.exception("control message not understood: %r", line[:200])
        log.warning("control channel to the supervisor closed")

    async def relay(self, command: OperatorCommand) -> dict[str, Any]:
        """Have every other worker apply ``command`` (this one did); answers once they have,
        with how many workers applied it and how many did not answer in time."""
        self.sent += 1
        ident = self.sent
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self.waiting[ident] = future
        self._send({"op": "command", "id": ident, "command": msgspec.to_builtins(command)})
        try:
            async with asyncio.timeout(_RELAY_TIMEOUT + 2.0):
                return await future
        except TimeoutError:
            log.error("the supervisor did not confirm operator action %s", command)
            return {"applied": 1, "missed": None}
        finally:
            self.waiting.pop(ident, None)


@dataclass
class _Worker:
    slot: int
    proc: subprocess.Popen[bytes]
    ready_r: int
    started: float = field(default_factory=time.monotonic)
    ready: bool = False
    control: _Control | None = None


@dataclass(eq=False)
class _Control:
    """The supervisor's end of one worker's control channel."""

    worker: _Worker
    sock: socket.socket
    inbox: bytearray = field(default_factory=bytearray)


@dataclass(eq=False)
class _Relay:
    """An operator action on its way to every worker."""

    origin: _Control
    origin_id: int
    waiting: set[_Control]
    deadline: float
    applied: int = 1  # the worker that received it
    missed: int = 0


class _Supervisor:
    def __init__(self, config_path: str, host: str, port: int, workers: int, drain: float) -> None:
        self.config_path = config_path
        self.drain = drain
        self.sockets = [listening_socket(host, port) for _ in range(workers)]
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
        given = os.environ.get("PROMETHEUS_MULTIPROC_DIR") or None
        self.metrics_dir = prepare_multiprocess(given)  # the workers inherit the variable
        self.own_metrics_dir = given is None
        # The event log the workers share when the config names none (in memory, each
        # worker would keep its own: /v1/events and the dashboard would show one worker's).
        self.events_dir = tempfile.mkdtemp(prefix="hedgerow-events-")
        # The latest operator action per target, in order (what a new worker applies first).
        self.operator: dict[tuple[str, str], dict[str, Any]] = {}
        self.controls: set[_Control] = set()
        self.relays: dict[int, _Relay] = {}
        self.relayed = 0

    def spawn(self, slot: int) -> _Worker:
        ready_r, ready_w = os.pipe()
        ours, theirs = socket.socketpair()
        sock = self.sockets[slot]
        env = {
            **os.environ,
            REGION_ENV: self.region,
            CONTROL_ENV: str(theirs.fileno()),
            SHARED_EVENT_LOG_ENV: str(Path(self.events_dir) / "events.db"),
        }
        args = [sys.executable, "-m", "hedgerow.cli", "serve", "--config", self.config_path]
        args += ["--_worker", f"{sock.fileno()},{ready_w}", "--drain-seconds", str(self.drain)]
        fds = (sock.fileno(), ready_w, theirs.fileno())
        proc = subprocess.Popen(args, pass_fds=fds, env=env)
        os.close(ready_w)
        theirs.close()
        worker = _Worker(slot, proc, ready_r)
        self.selector.register(ready_r, selectors.EVENT_READ, worker)
        # Blocking with a timeout for writes (the selector says when to read): a worker that
        # does not take its messages for a second is wedged, and is replaced.
        ours.settimeout(1.0)
        control = _Control(worker, ours)
        worker.control = control
        self.controls.add(control)
        self.selector.register(ours, selectors.EVENT_READ, control)
        self._send(control, {"op": "state", "commands": list(self.operator.values())})
        return worker

    # -- operator actions relayed between the workers -----------------------------------------

    def _send(self, control: _Control, message: dict[str, Any]) -> None:
        if control not in self.controls:
            return
        try:
            control.sock.sendall(orjson.dumps(message) + b"\n")
        except OSError as exc:
            log.error(
                "worker pid %d does not read its control channel (%s): replacing it",
                control.worker.proc.pid,
                exc,
            )
            self._unlink(control)
            control.worker.proc.kill()  # restarted with the operators' state by `reap`

    def _unlink(self, control: _Control) -> None:
        """The worker is gone: close its channel; relays stop waiting for it."""
        if control not in self.controls:
            return
        self.controls.discard(control)
        with contextlib.suppress(KeyError, ValueError):
            self.selector.unregister(control.sock)
        control.sock.close()
        for ident, relay in list(self.relays.items()):
            if control in relay.waiting:
                relay.waiting.discard(control)
                relay.missed += 1
            if relay.origin is control:
                del self.relays[ident]
            elif not relay.waiting:
                self._finish(ident)

    def _on_control(self, control: _Control) -> None:
        try:
            data = control.sock.recv(65536)
        except (BlockingIOError, TimeoutError):
            return
        except OSError:
            data = b""
        if not data:
            self._unlink(control)
            return
        control.inbox += data
        while (end := control.inbox.find(b"\n")) >= 0:
            line = bytes(control.inbox[:end])
            del control.inbox[: end + 1]
            try:
                message = orjson.loads(line)
                if message["op"] == "command":
                    self._relay(control, int(message["id"]), message["command"])
                elif message["op"] == "ack":
                    self._acked(control, int(message["id"]), bool(message["ok"]))
            except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
                log.error(
                    "bad control message from worker pid %d: %s", control.worker.proc.pid, exc
                )

    def _relay(self, origin: _Control, origin_id: int, command: dict[str, Any]) -> None:
        """A worker applied an operator action: every other worker applies it too."""
        action, target = str(command["action"]), str(command["target"])
        key = ("enabled" if action in ("disable", "enable") else action, target)
        self.operator.pop(key, None)  # the latest per target, after every earlier action
        self.operator[key] = command
        self.relayed += 1
        others = {c for c in self.controls if c is not origin}
        relay = _Relay(origin, origin_id, others, time.monotonic() + _RELAY_TIMEOUT)
        self.relays[self.relayed] = relay
        for control in others:
            self._send(control, {"op": "apply", "id": self.relayed, "command": command})
        if not relay.waiting:
            self._finish(self.relayed)

    def _acked(self, control: _Control, ident: int, ok: bool) -> None:
        relay = self.relays.get(ident)
        if relay is None or control not in relay.waiting:
            return
        relay.waiting.discard(control)
        if ok:
            relay.applied += 1
        else:
            relay.missed += 1
        if not relay.waiting:
            self._finish(ident)

    def _finish(self, ident: int) -> None:
        relay = self.relays.pop(ident)
        missed = relay.missed + len(relay.waiting)
        if missed:
            total = relay.applied + missed
            log.error("an operator action reached %d workers, not %d", relay.applied, total)
        message = {"op": "done", "id": relay.origin_id, "applied": relay.applied}
        self._send(relay.origin, {**message, "missed": missed})

    def expire_relays(self) -> None:
        """Answer relays some worker did not acknowledge in time."""
        now = time.monotonic()
        for ident, relay in list(self.relays.items()):
            if now >= relay.deadline:
                self._finish(ident)

    def _gone(self, worker: _Worker) -> None:
        """``worker``'s process has exited."""
        self._drop_ready_pipe(worker)
        if worker.control is not None:
            self._unlink(worker.control)
        worker_exited(worker.proc.pid)

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
            if isinstance(key.data, _Control):
                self._on_control(key.data)
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
            self._gone(worker)
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
                self._gone(old)
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
                    _stop(w.proc)
                    self._gone(w)
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
        # The supervisor's copies of the listening sockets go first: once each worker has
        # closed its own (at SIGTERM, after serving its queue), the port refuses new
        # connections at once instead of queueing them for the whole drain and then
        # resetting them.
        for sock in self.sockets:
            sock.close()
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
            self._gone(w)
        with contextlib.suppress(OSError):
            os.unlink(self.region)
        if self.own_metrics_dir:
            shutil.rmtree(self.metrics_dir, ignore_errors=True)
        shutil.rmtree(self.events_dir, ignore_errors=True)

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
                self.expire_relays()
                self.reap()
        finally:
            self.shutdown()


def listening_socket(host: str, port: int, reuse_port: bool = True) -> socket.socket:
    """A non-blocking socket listening on ``host:port`` (``SO_REUSEPORT`` for the workers'
    sockets on one port; a lone server leaves it off, so a port already taken fails)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if reuse_port:
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
