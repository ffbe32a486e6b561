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

import collections
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
    "new_scope_context",
    "request_scope",
    "scope_middleware",
]


class RequestScope:
    """The attempts of one client request, gathered from the tasks that made them."""

    __slots__ = ("attempts",)

    def __init__(self) -> None:
        # (deployment, outcome, error, status, latency seconds)
        self.attempts: list[tuple[str | None, str, str | None, int | None, float]] = []

    def add(self, event: Event) -> None:
        """Record one ``attempt`` event."""
        d = event.detail
        self.attempts.append(
            (
                event.deployment,
                d.get("outcome", "other"),
                d.get("error"),
                d.get("status"),
                d.get("latency") or 0.0,
            )
        )

    def first_content(self) -> tuple[str, float] | None:
        """``(deployment, seconds)`` of the first successful attempt (for a stream, its time
        to first content)."""
        for deployment, outcome, error, _, latency in self.attempts:
            if outcome == "success" and error is None and deployment is not None:
                return deployment, latency
        return None


_SCOPE: contextvars.ContextVar[RequestScope | None] = contextvars.ContextVar(
    "hedgerow_request_scope", default=None
)


def current_scope() -> RequestScope | None:
    """The scope of the request being served in this task, if any."""
    return _SCOPE.get()


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


def new_scope_context() -> contextvars.Context:
    """A copy of the current context holding a fresh ``RequestScope``: what
    ``scope_middleware`` gives a request, for a request run as a task of its own (the chat
    lane, ``hedgerow.server.lane``)."""
    context = contextvars.copy_context()
    context.run(_SCOPE.set, RequestScope())
    return context


@web.middleware
async def scope_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Give every request a ``RequestScope`` its attempt tasks inherit."""
    token = _SCOPE.set(RequestScope())
    try:
        return await handler(request)
    finally:
        _SCOPE.reset(token)


def request_line(
    event: Event, scope: RequestScope | None, redactor: Redactor | None = None
) -> dict[str, Any]:
    """The request log entry of a ``request`` event (see the module docstring). Every field
    is hedgerow's own but ``route`` (the model a client asked for, which may be anything):
    that one is masked by ``redactor``."""
    d = event.detail
    route = event.route
    if redactor is not None and route is not None:
        route = redactor.short(route)
    failed = (d.get("status") or 0) >= 500 or d.get("error") is not None
    attempts = None
    if scope is not None:
        attempts = [
            {
                "deployment": deployment,
                "outcome": "rejected" if error is not None and outcome == "success" else outcome,
                "error": error,
                "status": status,
                "latency": round(latency, 4),
            }
            for deployment, outcome, error, status, latency in scope.attempts
        ]
    # The event's own fields are copied as they are (request_id, format, stream, status,
    # latency, attempts, tier, hedged, error, input_tokens, output_tokens).
    return {
        "ts": iso(event.at),
        "level": "warning" if failed else "info",
        "event": "request",
        "route": route,
        "deployment": event.deployment,
        **d,
        "attempt_log": attempts,
    }


class RequestLog:
    """Writes one JSON line per request to a stream or a file, from a thread of its own.

    ``write`` (on the event loop) only serialises the line and appends it to a deque; every
    ``flush_every`` seconds the writer thread takes what is there and writes it with one
    call and one flush. Waking a thread per line would cost more than the line (a hand-over of the
    GIL each time). Past ``max_pending`` waiting lines, lines are dropped and counted.
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
        self.dropped = 0
        self.flush_every = flush_every
        self._stream = stream
        # Appended on the loop, popped by the writer: a deque's append and popleft are
        # thread-safe. Lines are kept as str: orjson's bytes results are allocated outside
        # Python's small-object allocator, and holding hundreds of them costs more than
        # formatting them.
        self._lines: collections.deque[str] = collections.deque()
        self._max_pending = max_pending
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def pending(self) -> int:
        """Lines not yet handed to the writer."""
        return len(self._lines)

    def write(self, event: Event, scope: RequestScope | None) -> None:
        """Log the request of ``event`` (a ``request`` event) with its attempts."""
        if len(self._lines) >= self._max_pending:
            self.dropped += 1
            return
        line = orjson.dumps(request_line(event, scope, self.redactor), default=str).decode()
        self._lines.append(line)
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

    def _take(self) -> list[str]:
        lines = self._lines
        return [lines.popleft() for _ in range(len(lines))]

    def _run(self) -> None:
        if self.path is not None:
            out: IO[str] = open(self.path, "a", encoding="utf-8")  # noqa: SIM115
        else:
            out = self._stream or sys.stderr
        try:
            while True:
                stopping = self._stop.wait(self.flush_every)
                lines = self._take()
                if lines:
                    # Known secrets only: the one free-text field was masked already.
                    text = self.redactor.known("\n".join(lines))
                    try:
                        out.write(text + "\n")
                        out.flush()
                    except (OSError, ValueError):
                        self.dropped += len(lines)
                if stopping:
                    return
        finally:
            if self.path is not None:
                out.close()

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
