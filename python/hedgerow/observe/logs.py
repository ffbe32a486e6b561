"""Structured JSON logs: one line per client request with its attempts, and no secrets.

How attempts find their request: the router's ``attempt`` events carry no request id, and a
request's attempts run in tasks of their own. The server's middleware (``request_scope``)
puts a fresh ``RequestScope`` in a context variable before the handler runs; the attempt
tasks the router creates copy that context, so every ``attempt`` event appends to the same
scope, and the ``request`` event (emitted in the handler's task when the request ends)
writes the line with all of them: deployment, outcome, error, status and latency of each,
hedges included. Requests that do not pass the middleware (the in-process SDK transport)
get the line with the attempt count alone.

A line (latencies in seconds)::

    {"ts": "2026-06-05T15:08:12.345Z", "level": "info", "event": "request",
     "route": "support-chat", "deployment": "openai/gpt-5.5", "request_id": "req_…",
     "format": "openai", "stream": false, "status": 200, "latency": 0.8124, "attempts": 2,
     "tier": 1, "hedged": false, "error": null, "input_tokens": 12, "output_tokens": 40,
     "attempt_log": [{"deployment": "anthropic/claude-sonnet-4-6", "outcome": "529",
     "error": "overloaded", "status": 529, "latency": 0.031}, …]}

``attempt_log`` is ``null`` when the request did not pass the server's middleware.

Lines are written by a thread (``RequestLog``), never on the event loop; the one field a
client controls (``route``) passes through the ``Redactor``, and every line is checked for the
config's secret values before it is written. ``configure_logging`` does the same for hedgerow's other loggers
(JSON lines, secrets masked) for ``hedgerow serve``.
"""

from __future__ import annotations

import contextvars
import logging
import logging.handlers
import queue
import sys
import threading
from collections.abc import Awaitable, Callable
from typing import IO, Any

import orjson
from aiohttp import web

from hedgerow._core import RequestLines
from hedgerow.observe.eventlog import iso
from hedgerow.observe.redact import RedactingFilter, Redactor
from hedgerow.routing.events import Event

__all__ = [
    "JsonFormatter",
    "LogListener",
    "RequestLog",
    "RequestScope",
    "configure_logging",
    "current_scope",
    "open_scope",
    "request_scope",
    "scope_middleware",
]


# One attempt in a request's scope: (deployment, outcome, error, status, latency seconds).
ScopedAttempt = tuple[str | None, str, str | None, int | None, float]


class RequestScope(list[ScopedAttempt]):
    """The attempts of one client request, gathered from the tasks that made them: the list
    itself (made for every request, it has no ``__init__`` of its own to run)."""

    __slots__ = ()

    def first_content(self) -> tuple[str, float] | None:
        """``(deployment, seconds)`` of the first successful attempt (for a stream, its time
        to first content)."""
        for deployment, outcome, error, _, latency in self:
            if outcome == "success" and error is None and deployment is not None:
                return deployment, latency
        return None


_SCOPE: contextvars.ContextVar[RequestScope | None] = contextvars.ContextVar(
    "hedgerow_request_scope", default=None
)


# The scope of the request being served in this task, if any. The context variable's own
# method: called for every attempt and request, a wrapper would cost as much again.
current_scope: Callable[[], RequestScope | None] = _SCOPE.get


class request_scope:
    """Gather the attempts of the request made inside the block (the server's middleware
    does this for every request; library users may wrap a call)."""

    __slots__ = ("_token", "scope")

    def __init__(self) -> None:
        self.scope = RequestScope()
        self._token: contextvars.Token[RequestScope | None] | None = None

    def __enter__(self) -> RequestScope:
        self._token = _SCOPE.set(self.scope)
        return self.scope

    def __exit__(self, *exc: object) -> None:
        if self._token is not None:
            _SCOPE.reset(self._token)


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def open_scope() -> None:
    """Give the running task a fresh ``RequestScope``: what ``scope_middleware`` gives a
    request, for a request run as a task of its own (the chat lane, ``hedgerow.server.lane``).
    Call it first thing in that task: a task runs in a copy of its creator's context, so the
    scope stays the task's (and its attempt tasks'), and no second copy is made for it."""
    _SCOPE.set(RequestScope())


@web.middleware
async def scope_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Give every request a ``RequestScope`` its attempt tasks inherit."""
    token = _SCOPE.set(RequestScope())
    try:
        return await handler(request)
    finally:
        _SCOPE.reset(token)


class RequestLog:
    """Writes one JSON line per request to a stream or a file, from a thread of its own.

    ``write`` (on the event loop) formats the line natively into a buffer
    (``hedgerow._core.RequestLines``: no Python objects made, the field layout documented
    there and in the module docstring); every ``flush_every`` seconds the writer thread takes
    the whole buffer as one ``bytes``, the config's secret values masked, and writes it with
    one call and one flush. Waking a thread per line would cost more than the line (a
    hand-over of the GIL each time). Past ``max_pending`` waiting lines, lines are dropped and
    counted.
    """

    def __init__(
        self,
        path: str | None = None,
        *,
        stream: IO[str] | None = None,
        redactor: Redactor | None = None,
        max_pending: int = 100_000,
        flush_every: float = 0.1,
    ) -> None:
        self.path = path
        self.redactor = redactor or Redactor()
        self.flush_every = flush_every
        self._stream = stream
        self._lines = RequestLines(list(self.redactor.values), max_pending)
        self._failed = 0  # lines the output refused
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def pending(self) -> int:
        """Lines not yet handed to the writer."""
        return self._lines.pending

    @property
    def dropped(self) -> int:
        """Lines lost: too many waiting, or the output refused them."""
        return self._lines.dropped + self._failed

    def write(self, event: Event, scope: RequestScope | None) -> None:
        """Log the request of ``event`` (a ``request`` event) with its attempts."""
        route = event.route
        if route is not None:
            # The one field a client controls (the model it asked for).
            route = self.redactor.short(route)
        self._lines.add(event.at, route, event.deployment, event.detail, scope)
        if self._thread is None:
            self.start()

    def start(self) -> None:
        """Start the writer thread (``write`` starts it when needed)."""
        if self._thread is None:
            self._stop.clear()
            self._thread = threading.Thread(
                target=self._run, name="hedgerow-request-log", daemon=True
            )
            self._thread.start()

    def _run(self) -> None:
        if self.path is not None:
            with open(self.path, "ab") as file:
                self._write_until_stopped(file.write, file.flush)
        else:
            stream = self._stream or sys.stderr
            self._write_until_stopped(lambda data: stream.write(data.decode()), stream.flush)

    def _write_until_stopped(
        self, write: Callable[[bytes], object], flush: Callable[[], object]
    ) -> None:
        while True:
            stopping = self._stop.wait(self.flush_every)
            data = self._lines.take()
            if data:
                try:
                    write(data)
                    flush()
                except (OSError, ValueError):
                    self._failed += data.count(b"\n")
            if stopping:
                return

    def close(self, timeout: float = 5.0) -> None:
        """Write what is waiting and stop the thread."""
        if self._thread is not None:
            self._stop.set()
            self._thread.join(timeout)
            self._thread = None


class JsonFormatter(logging.Formatter):
    """Log records as JSON lines: ``ts``, ``level``, ``logger``, ``message`` (and ``exc``)."""

    def format(self, record: logging.LogRecord) -> str:
        """One JSON line."""
        entry: dict[str, Any] = {
            "ts": iso(record.created),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            entry["exc"] = record.exc_text
        return orjson.dumps(entry, default=str).decode()


class LogListener(logging.handlers.QueueListener):
    """The thread that writes hedgerow's log records; ``stop`` may be called twice."""

    def stop(self) -> None:
        """Write what is queued and stop the thread (no-op when stopped)."""
        if self._thread is not None:
            super().stop()


_INSTALLED: list[LogListener] = []


def configure_logging(
    redactor: Redactor, *, level: int = logging.INFO, stream: IO[str] | None = None
) -> LogListener:
    """Send hedgerow's own loggers (``hedgerow.*``) to ``stream`` (stderr) as JSON lines,
    secrets masked, written by a thread; for ``hedgerow serve``. Returns the listener (stop
    it at exit). Replaces what an earlier call installed."""
    for listener in _INSTALLED:
        listener.stop()
    _INSTALLED.clear()
    root = logging.getLogger("hedgerow")
    for handler in list(root.handlers):
        if isinstance(handler, logging.handlers.QueueHandler):
            root.removeHandler(handler)
    target = logging.StreamHandler(stream or sys.stderr)
    target.setFormatter(JsonFormatter())
    pending: queue.SimpleQueue[logging.LogRecord] = queue.SimpleQueue()
    front = logging.handlers.QueueHandler(pending)
    # Masked before the record crosses to the thread (QueueHandler formats it there).
    front.addFilter(RedactingFilter(redactor))
    listener = LogListener(pending, target, respect_handler_level=False)
    listener.start()
    _INSTALLED.append(listener)
    root.addHandler(front)
    root.setLevel(level)
    root.propagate = False
    return listener
