"""The event log: every failover, hedge, retry exhaustion, breaker transition, degradation,
operator action, alert and status incident as a row in SQLite — the audit trail of what
failed over, when, and why.

Writes never touch the request path: ``record`` appends to a list (bounded; overflow is
counted, never blocking), and a background task writes the batch with one
``executemany`` on a dedicated thread. Queries flush first, so an action is visible the
moment it returns. A file database runs in WAL mode, so ``hedgerow events`` reads it while
the server writes. Without a path the log is an in-memory database (kept for the life of
the process, queried through ``GET /v1/events``).

Schema (one table)::

    events(id INTEGER PRIMARY KEY, at REAL  -- epoch seconds
           kind TEXT, route TEXT, deployment TEXT, detail TEXT  -- JSON object
           pid INTEGER)  -- the worker process that wrote it
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import datetime
import logging
import os
import re
import sqlite3
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import Any

import orjson

from hedgerow._core import iso_millis
from hedgerow.observe.redact import Redactor
from hedgerow.routing.events import Event

__all__ = [
    "AUDITED_KINDS",
    "EventLog",
    "EventQuery",
    "acting",
    "format_row",
    "iso",
    "parse_time",
    "read_events",
    "replicated",
    "replicating",
    "stop_tasks",
]

log = logging.getLogger("hedgerow.observe.eventlog")

# High-volume kinds stay out of the log: requests and attempts go to the request log and
# the metrics instead.
SKIPPED_KINDS = frozenset({"request", "attempt"})
# What `GET /v1/events` and the dashboard show by default (everything else is still kept).
AUDITED_KINDS = (
    "failover",
    "hedge_started",
    "hedge_won",
    "hedge_cancelled",
    "retry",
    "retry_budget_exhausted",
    "retries_exhausted",
    "breaker",
    "degraded",
    "auth_error",
    "operator",
    "alert",
    "status_incident",
    "status_action",
)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS events (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    at REAL NOT NULL,
    kind TEXT NOT NULL,
    route TEXT,
    deployment TEXT,
    detail TEXT NOT NULL DEFAULT '{}',
    pid INTEGER
);
CREATE INDEX IF NOT EXISTS events_at ON events (at);
CREATE INDEX IF NOT EXISTS events_kind_at ON events (kind, at);
CREATE INDEX IF NOT EXISTS events_route_at ON events (route, at);
"""
_MAX_LIMIT = 10_000
# Who did it: the admin API and the status-page monitor say so around their actions, and
# the router's `operator` event (emitted synchronously in the same task) carries it here.
_ACTOR: contextvars.ContextVar[dict[str, Any] | None] = contextvars.ContextVar(
    "hedgerow_observe_actor", default=None
)

# Set while a worker applies an operator action another worker received (``serve
# --workers N``): the worker that received it records it, so the log has it once.
_REPLICA: contextvars.ContextVar[bool] = contextvars.ContextVar(
    "hedgerow_observe_replica", default=False
)

_Row = tuple[float, str, str | None, str | None, dict[str, Any], dict[str, Any] | None]


async def stop_tasks(tasks: Iterable[asyncio.Task[Any]], timeout: float = 5.0) -> None:
    """Cancel ``tasks`` and wait for them to end, at most ``timeout`` seconds (a task that
    lost its cancellation — CPython 3.11's ``wait_for`` can swallow one — is not waited on
    forever; the loops here also check a stop flag)."""
    pending = [t for t in tasks if not t.done()]
    for task in pending:
        task.cancel()
    if pending:
        _, stuck = await asyncio.wait(pending, timeout=timeout)
        for task in stuck:
            log.error("background task %s did not stop", task.get_name())


@contextmanager
def acting(**actor: Any) -> Iterator[None]:
    """Attribute the events emitted inside the block (``by``: who, ``reason``: why)."""
    token = _ACTOR.set({k: v for k, v in actor.items() if v is not None})
    try:
        yield
    finally:
        _ACTOR.reset(token)


@contextmanager
def replicating() -> Iterator[None]:
    """Inside the block, events repeat what another process already recorded: they change
    state here but are neither logged nor counted again."""
    token = _REPLICA.set(True)
    try:
        yield
    finally:
        _REPLICA.reset(token)


def replicated() -> bool:
    """Whether the current events repeat another process's (see ``replicating``)."""
    return _REPLICA.get()


def iso(epoch: float) -> str:
    """Epoch seconds as ISO 8601 UTC with milliseconds (``2026-06-05T15:08:12.345Z``), as
    ``datetime`` gives them (microseconds rounded, then cut to milliseconds). Native: the
    request log's lines get their times from the same code (``hedgerow._core``)."""
    return iso_millis(epoch)


_AGE = re.compile(r"(\d+(?:\.\d+)?)\s*([smhdw])")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_time(text: str, now: float | None = None) -> float:
    """Epoch seconds from an age (``90s``, ``15m``, ``2h``, ``1d``, ``1w``: that long ago),
    an ISO 8601 time (``2026-06-05T08:08:00Z``; naive means UTC) or epoch seconds.

    ``ValueError`` names what is accepted.
    """
    text = text.strip()
    now = time.time() if now is None else now
    match = _AGE.fullmatch(text)
    if match:
        return now - float(match.group(1)) * _UNITS[match.group(2)]
    with contextlib.suppress(ValueError):
        return float(text)
    try:
        moment = datetime.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(
            f"{text!r} is not a time: use an age (15m, 2h, 1d), ISO 8601 or epoch seconds"
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=datetime.UTC)
    return moment.timestamp()


class EventQuery:
    """A filter over the event log; ``None`` fields do not filter."""

    __slots__ = ("after_id", "deployment", "kinds", "limit", "route", "since", "until")

    def __init__(
        self,
        *,
        since: float | None = None,
        until: float | None = None,
        route: str | None = None,
        kinds: Sequence[str] | None = None,
        deployment: str | None = None,
        after_id: int | None = None,
        limit: int = 500,
    ) -> None:
        self.since = since
        self.until = until
        self.route = route
        self.kinds = list(kinds) if kinds else None
        self.deployment = deployment
        self.after_id = after_id
        self.limit = max(1, min(limit, _MAX_LIMIT))

    def sql(self) -> tuple[str, list[Any]]:
        """The SELECT (newest first, one more than ``limit`` to tell truncation) and its
        parameters."""
        where: list[str] = []
        params: list[Any] = []
        if self.since is not None:
            where.append("at >= ?")
            params.append(self.since)
        if self.until is not None:
            where.append("at <= ?")
            params.append(self.until)
        if self.route is not None:
            where.append("route = ?")
            params.append(self.route)
        if self.deployment is not None:
            # A provider name matches all its deployments.
            where.append("(deployment = ? OR deployment LIKE ? ESCAPE '\\')")
            escaped = self.deployment.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
            params.extend([self.deployment, escaped + "/%"])
        if self.kinds:
            where.append(f"kind IN ({', '.join('?' * len(self.kinds))})")
            params.extend(self.kinds)
        if self.after_id is not None:
            where.append("id > ?")
            params.append(self.after_id)
        clause = f" WHERE {' AND '.join(where)}" if where else ""
        sql = (
            "SELECT id, at, kind, route, deployment, detail, pid FROM events"
            f"{clause} ORDER BY at DESC, id DESC LIMIT ?"
        )
        return sql, [*params, self.limit + 1]


def _run_query(conn: sqlite3.Connection, query: EventQuery) -> tuple[list[dict[str, Any]], bool]:
    sql, params = query.sql()
    rows = conn.execute(sql, params).fetchall()
    truncated = len(rows) > query.limit
    rows = rows[: query.limit]
    rows.reverse()  # chronological
    return [
        {
            "id": row[0],
            "at": row[1],
            "time": iso(row[1]),
            "kind": row[2],
            "route": row[3],
            "deployment": row[4],
            "detail": orjson.loads(row[5]) if row[5] else {},
            "pid": row[6],
        }
        for row in rows
    ], truncated


def read_events(path: str, query: EventQuery) -> tuple[list[dict[str, Any]], bool]:
    """Events from the database file at ``path`` (read-only; for ``hedgerow events``):
    the rows, oldest first, and whether ``query.limit`` cut older ones off."""
    if not os.path.exists(path):
        raise FileNotFoundError(f"no event log at {path}")
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5.0)
    try:
        return _run_query(conn, query)
    finally:
        conn.close()


def format_row(row: dict[str, Any]) -> str:
    """One event as a line for people: time, kind, route, deployment, then the details."""
    detail = " ".join(
        f"{k}={v if isinstance(v, str | int | float) or v is None else orjson.dumps(v).decode()}"
        for k, v in row["detail"].items()
    )
    return (
        f"{row['time']}  {row['kind']:<22} {row['route'] or '-':<18} "
        f"{row['deployment'] or '-':<32} {detail}"
    ).rstrip()


# ``serve --workers N`` names, in this variable, the event log its workers share when the
# config names none (``hedgerow.server.workers``): in memory, each worker would keep its own.
SHARED_EVENT_LOG_ENV = "HEDGEROW_EVENT_LOG"
# How many rows a log the config did not ask for keeps (in memory, or the workers' shared one).
DEFAULT_MAX_ROWS = 100_000


class EventLog:
    """SQLite-backed event log with batched writes off the request path.

    Call ``record`` from an event subscriber; ``start`` the background flusher inside a
    running loop and ``close`` it at shutdown (both idempotent). ``path=None`` keeps the
    log in memory.
    """

    def __init__(
        self,
        path: str | None = None,
        *,
        redactor: Redactor | None = None,
        retention_days: float = 30.0,
        flush_every: float = 0.25,
        max_pending: int = 100_000,
        max_rows: int | None = None,
    ) -> None:
        self.path = path
        self.redactor = redactor or Redactor()
        self.retention = retention_days * 86400.0
        self.flush_every = flush_every
        self.max_pending = max_pending
        # An in-memory log keeps a bounded number of rows; a file keeps `retention_days`.
        self.max_rows = max_rows if max_rows is not None else (None if path else DEFAULT_MAX_ROWS)
        self.written = 0
        self.dropped = 0
        self.failed = 0
        self._pending: list[_Row] = []
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="hedgerow-eventlog")
        self._conn: sqlite3.Connection | None = None
        self._lock: asyncio.Lock | None = None
        self._task: asyncio.Task[None] | None = None
        self._pruned_at = 0.0
        self._closed = False
        self._stopping = False
        # Called before each flush (Observability processes its queued events there).
        self.before_flush: Callable[[], None] | None = None

    # -- the hot path -------------------------------------------------------------------------

    def record(self, event: Event) -> None:
        """Queue ``event`` for the next batch (cheap: one append). High-volume kinds
        (``request``, ``attempt``) are skipped."""
        if event.kind in SKIPPED_KINDS or self._closed or _REPLICA.get():
            return
        if len(self._pending) >= self.max_pending:
            self.dropped += 1
            return
        self._pending.append(
            (event.at, event.kind, event.route, event.deployment, event.detail, _ACTOR.get())
        )

    # -- the background side ------------------------------------------------------------------

    def start(self) -> None:
        """Start the periodic flusher on the running loop."""
        if self._task is None and not self._closed:
            self._task = asyncio.create_task(self._flush_loop(), name="hedgerow-eventlog")

    async def _flush_loop(self) -> None:
        while not self._stopping:
            await asyncio.sleep(self.flush_every)
            if self._pending:
                await self.flush()

    async def flush(self) -> None:
        """Write everything recorded so far (the rows are durable when this returns)."""
        if self.before_flush is not None:
            self.before_flush()
        if self._lock is None:
            self._lock = asyncio.Lock()
        async with self._lock:
            batch, self._pending = self._pending, []
            if not batch and self._conn is not None:
                return
            loop = asyncio.get_running_loop()
            try:
                await loop.run_in_executor(self._executor, self._write, batch)
            except Exception:
                self.failed += len(batch)
                log.exception("event log: could not write %d events", len(batch))

    def _connect(self) -> sqlite3.Connection:
        if self._conn is None:
            conn = sqlite3.connect(self.path or ":memory:", timeout=5.0, check_same_thread=False)
            if self.path:
                conn.execute("PRAGMA journal_mode=WAL")
                conn.execute("PRAGMA synchronous=NORMAL")
            conn.executescript(_SCHEMA)
            self._conn = conn
        return self._conn

    def _write(self, batch: list[_Row]) -> None:
        """On the log's thread: serialise, redact and insert ``batch`` in one transaction."""
        conn = self._connect()
        pid = os.getpid()
        rows = []
        for at, kind, route, deployment, detail, actor in batch:
            if actor:
                detail = {**detail, **actor}
            text = orjson.dumps(detail, default=str, option=orjson.OPT_NON_STR_KEYS).decode()
            rows.append((at, kind, route, deployment, self.redactor.text(text), pid))
        with conn:
            conn.executemany(
                "INSERT INTO events (at, kind, route, deployment, detail, pid)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                rows,
            )
        self.written += len(rows)
        now = time.time()
        if now - self._pruned_at > 600.0:
            self._pruned_at = now
            self._prune(conn, now)

    def _prune(self, conn: sqlite3.Connection, now: float) -> None:
        with conn:
            conn.execute("DELETE FROM events WHERE at < ?", (now - self.retention,))
            if self.max_rows is not None:
                conn.execute(
                    "DELETE FROM events WHERE id <= (SELECT MAX(id) FROM events) - ?",
                    (self.max_rows,),
                )

    async def query(self, query: EventQuery) -> tuple[list[dict[str, Any]], bool]:
        """Matching events, oldest first (the newest ``query.limit`` of them), and whether
        older ones were cut off. Flushes first: what was recorded is there."""
        await self.flush()
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(
            self._executor, lambda: _run_query(self._connect(), query)
        )

    async def close(self) -> None:
        """Stop the flusher, write what is left and close the database."""
        if self._closed:
            return
        self._stopping = True
        if self._task is not None:
            await stop_tasks([self._task])
            self._task = None
        await self.flush()
        self._closed = True
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self._executor, self._close_conn)
        self._executor.shutdown(wait=False)

    def _close_conn(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None


def kinds_from(values: Iterable[str]) -> list[str]:
    """``--kind a,b --kind c`` / ``?kind=a,b&kind=c`` as one list."""
    return [k.strip() for value in values for k in value.split(",") if k.strip()]
