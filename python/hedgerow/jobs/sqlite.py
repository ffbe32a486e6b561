"""The SQLite job queue: the embedded default, one file, no set-up.

* WAL journal: readers never block the writer, and several processes (``hedgerow serve``
  and ``hedgerow worker``) share one file; a write transaction takes the lock up front
  (``BEGIN IMMEDIATE``) and waits up to ``busy_timeout`` for another process's.
* ``synchronous=FULL`` by default: a submit returns only once its commit is on disk.
  Concurrent submits share one commit (``JobQueue.submit`` batches them), which is what
  makes thousands of submits per second possible with an fsync per commit.
* Every statement runs on one dedicated thread holding the connection, so the event loop
  never blocks on disk.
* A lease is one ``UPDATE ... RETURNING`` (atomic across processes); an expired lease is
  recognised by ``lease_until`` on the caller's clock.

A write that fails (read-only file, full disk, a lock held too long) raises
``JobStoreError`` saying which and where: a submit is never dropped silently.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Literal, TypeVar

import msgspec

from hedgerow import ir
from hedgerow.jobs.queue import (
    DeadReason,
    Group,
    IdempotencyConflict,
    Job,
    JobError,
    JobQueue,
    JobState,
    JobStoreError,
    NewJob,
    Priority,
    ReadyGroups,
    ServedInfo,
    Submission,
)

__all__ = ["SqliteQueue"]

T = TypeVar("T")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    state TEXT NOT NULL,
    priority INTEGER NOT NULL,
    route TEXT NOT NULL,
    format TEXT NOT NULL,
    idempotency_key TEXT UNIQUE,
    fingerprint TEXT NOT NULL,
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL,
    enqueued_at REAL NOT NULL,
    not_before REAL NOT NULL,
    lease_owner TEXT,
    lease_until REAL,
    token INTEGER NOT NULL DEFAULT 0,
    attempts INTEGER NOT NULL DEFAULT 0,
    finished_at REAL,
    dead_reason TEXT,
    webhook TEXT NOT NULL DEFAULT 'none',
    request BLOB NOT NULL,
    metadata BLOB NOT NULL,
    last_error BLOB,
    result BLOB,
    served BLOB
);
CREATE INDEX IF NOT EXISTS jobs_lease ON jobs (state, priority, route, seq);
CREATE INDEX IF NOT EXISTS jobs_state_updated ON jobs (state, updated_at);
CREATE INDEX IF NOT EXISTS jobs_webhook ON jobs (webhook) WHERE webhook = 'pending';
CREATE INDEX IF NOT EXISTS jobs_unfinished_age ON jobs (enqueued_at)
    WHERE state IN ('queued', 'running');
"""

_COLUMNS = (
    "seq, id, state, priority, route, format, idempotency_key, fingerprint, created_at,"
    " updated_at, enqueued_at, not_before, lease_owner, lease_until, token, attempts, finished_at,"
    " dead_reason, webhook, request, metadata, last_error, result, served"
)

_INSERT = (
    "INSERT INTO jobs (id, state, priority, route, format, idempotency_key, fingerprint,"
    " created_at, updated_at, enqueued_at, not_before, request, metadata)"
    " VALUES (?, 'queued', ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)

_FINISHED_SQL = "('succeeded', 'dead')"

_encode = msgspec.json.Encoder().encode
_dec_request = msgspec.json.Decoder(dict[str, Any]).decode
_dec_error = msgspec.json.Decoder(JobError).decode
_dec_result = msgspec.json.Decoder(ir.ChatResponse).decode
_dec_served = msgspec.json.Decoder(ServedInfo).decode


def _row_to_job(row: tuple[Any, ...]) -> Job:
    (
        _seq,
        job_id,
        state,
        priority,
        route,
        fmt,
        key,
        fingerprint,
        created_at,
        updated_at,
        enqueued_at,
        not_before,
        lease_owner,
        lease_until,
        token,
        attempts,
        finished_at,
        dead_reason,
        webhook,
        request,
        metadata,
        last_error,
        result,
        served,
    ) = row
    return Job(
        id=job_id,
        route=route,
        format=fmt,
        request=_dec_request(request),
        state=JobState(state),
        priority=Priority(priority),
        attempts=attempts,
        token=token,
        created_at=created_at,
        updated_at=updated_at,
        enqueued_at=enqueued_at,
        not_before=not_before,
        lease_owner=lease_owner,
        lease_until=lease_until,
        idempotency_key=key,
        fingerprint=fingerprint,
        metadata=_dec_request(metadata),
        last_error=None if last_error is None else _dec_error(last_error),
        result=None if result is None else _dec_result(result),
        served=None if served is None else _dec_served(served),
        finished_at=finished_at,
        dead_reason=dead_reason,
        webhook=webhook,
    )


class SqliteQueue(JobQueue):
    """Jobs in one SQLite file (WAL), safe to share between processes on one host.

    Args:
        path: the database file (created with its tables when missing).
        synchronous: ``full`` (default) fsyncs every commit, so a submitted job survives a
            power cut; ``normal`` survives a crash of the process but not of the machine.
        busy_timeout: seconds to wait for another process's write lock.
    """

    def __init__(
        self,
        path: str | Path,
        *,
        synchronous: Literal["full", "normal"] = "full",
        busy_timeout: float = 10.0,
    ) -> None:
        super().__init__()
        self.path = Path(path)
        self.name = f"sqlite:{self.path}"
        self._synchronous = synchronous
        self._busy_timeout = busy_timeout
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="hedgerow-jobs")
        self._conn: sqlite3.Connection | None = None
        self._closed = False

    # -- plumbing -----------------------------------------------------------------------------

    def _connect(self) -> sqlite3.Connection:
        """The connection, opened (and the schema created) on first use, on the DB thread."""
        if self._conn is not None:
            return self._conn
        self.path.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(
            self.path,
            timeout=self._busy_timeout,
            isolation_level=None,  # explicit BEGIN/COMMIT
            check_same_thread=False,
        )
        try:
            conn.execute(f"PRAGMA busy_timeout = {int(self._busy_timeout * 1000)}")
            # Read-only files still open (for `jobs list`); writes then fail with a clear error.
            try:
                conn.execute("PRAGMA journal_mode = WAL")
                conn.executescript(_SCHEMA)
            except sqlite3.OperationalError as exc:
                if getattr(exc, "sqlite_errorname", "") != "SQLITE_READONLY":
                    raise
            conn.execute(f"PRAGMA synchronous = {self._synchronous.upper()}")
        except BaseException:
            conn.close()
            raise
        self._conn = conn
        return conn

    async def _run(self, fn: Callable[[sqlite3.Connection], T], *, write: bool) -> T:
        if self._closed:
            raise JobStoreError(f"{self.name}: the queue is closed")
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, self._call, fn, write)

    def _call(self, fn: Callable[[sqlite3.Connection], T], write: bool) -> T:
        try:
            conn = self._connect()
            if not write:
                return fn(conn)
            conn.execute("BEGIN IMMEDIATE")
            try:
                result = fn(conn)
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
            return result
        except sqlite3.Error as exc:
            raise JobStoreError(self._explain(exc)) from exc

    def _explain(self, exc: sqlite3.Error) -> str:
        """The failure in words an operator can act on; nothing was stored."""
        code = getattr(exc, "sqlite_errorname", "")
        where = f"jobs database {self.path}"
        if code.startswith("SQLITE_READONLY"):
            return f"{where} is read-only ({exc}): the job was not stored"
        if code == "SQLITE_FULL":
            return f"{where} is full: the disk or its size limit is reached ({exc}): the job was not stored"
        if code.startswith("SQLITE_BUSY") or code.startswith("SQLITE_LOCKED"):
            return (
                f"{where} is locked by another process for more than"
                f" {self._busy_timeout:g}s ({exc}): the job was not stored"
            )
        if code.startswith("SQLITE_CANTOPEN"):
            return f"{where} cannot be opened ({exc}): check the path and its permissions"
        if code.startswith("SQLITE_IOERR"):
            return f"{where}: disk I/O error ({exc}): the job was not stored"
        return f"{where}: {exc} ({code or type(exc).__name__})"

    async def close(self) -> None:
        """Flush pending submits, then close the connection and its thread."""
        await super().close()
        if self._closed:
            return
        self._closed = True
        loop = asyncio.get_running_loop()

        def shut() -> None:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

        await loop.run_in_executor(self._executor, shut)
        self._executor.shutdown(wait=True)

    # -- submit -------------------------------------------------------------------------------

    async def _submit_batch(self, jobs: Sequence[NewJob]) -> list[Submission | IdempotencyConflict]:
        def write(conn: sqlite3.Connection) -> list[Submission | IdempotencyConflict]:
            out: list[Submission | IdempotencyConflict] = []
            for job in jobs:
                if job.idempotency_key is not None:
                    row = conn.execute(
                        f"SELECT {_COLUMNS} FROM jobs WHERE idempotency_key = ?",
                        (job.idempotency_key,),
                    ).fetchone()
                    if row is not None:
                        existing = _row_to_job(row)
                        if existing.fingerprint != job.fingerprint:
                            out.append(IdempotencyConflict(job.idempotency_key, existing.id))
                        else:
                            out.append(Submission(existing, False))
                        continue
                conn.execute(
                    _INSERT,
                    (
                        job.id,
                        int(job.priority),
                        job.route,
                        job.format,
                        job.idempotency_key,
                        job.fingerprint,
                        job.created_at,
                        job.created_at,
                        job.created_at,
                        job.not_before,
                        _encode(job.request),
                        _encode(job.metadata),
                    ),
                )
                out.append(Submission(job.to_job(), True))
            return out

        return await self._run(write, write=True)

    # -- reading ------------------------------------------------------------------------------

    async def get(self, job_id: str) -> Job | None:
        """The job, or ``None``."""

        def read(conn: sqlite3.Connection) -> Job | None:
            row = conn.execute(f"SELECT {_COLUMNS} FROM jobs WHERE id = ?", (job_id,)).fetchone()
            return None if row is None else _row_to_job(row)

        return await self._run(read, write=False)

    async def list_jobs(
        self,
        *,
        state: JobState | None = None,
        route: str | None = None,
        since: float | None = None,
        limit: int = 100,
    ) -> list[Job]:
        """Jobs, newest state change first (see ``JobQueue.list_jobs``)."""
        where: list[str] = []
        args: list[Any] = []
        if state is not None:
            where.append("state = ?")
            args.append(state.value)
        if route is not None:
            where.append("route = ?")
            args.append(route)
        if since is not None:
            where.append("updated_at >= ?")
            args.append(since)
        clause = f"WHERE {' AND '.join(where)}" if where else ""
        sql = f"SELECT {_COLUMNS} FROM jobs {clause} ORDER BY updated_at DESC, seq DESC LIMIT ?"
        args.append(max(0, limit))

        def read(conn: sqlite3.Connection) -> list[Job]:
            return [_row_to_job(row) for row in conn.execute(sql, args)]

        return await self._run(read, write=False)

    async def counts(self) -> dict[JobState, int]:
        """How many jobs are in each state."""

        def read(conn: sqlite3.Connection) -> dict[JobState, int]:
            found = dict(conn.execute("SELECT state, COUNT(*) FROM jobs GROUP BY state"))
            return {state: int(found.get(state.value, 0)) for state in JobState}

        return await self._run(read, write=False)

    async def oldest_enqueued_at(self) -> float | None:
        """``enqueued_at`` of the oldest unfinished job (one index lookup)."""

        def read(conn: sqlite3.Connection) -> float | None:
            # Named: the planner would otherwise scan the (state, updated_at) index.
            (oldest,) = conn.execute(
                "SELECT MIN(enqueued_at) FROM jobs INDEXED BY jobs_unfinished_age"
                " WHERE state IN ('queued', 'running')"
            ).fetchone()
            return None if oldest is None else float(oldest)

        return await self._run(read, write=False)

    # -- the worker's side --------------------------------------------------------------------

    async def ready_groups(self, now: float) -> ReadyGroups:
        """Groups with queued jobs, ready or not, and the earliest future due time."""

        def read(conn: sqlite3.Connection) -> ReadyGroups:
            ready: list[Group] = []
            next_due: float | None = None
            rows = conn.execute(
                "SELECT priority, route, MIN(not_before) FROM jobs WHERE state = 'queued'"
                " GROUP BY priority, route"
            )
            for priority, route, due in rows:
                if due <= now:
                    ready.append(Group(Priority(priority), route))
                elif next_due is None or due < next_due:
                    next_due = due
            return ReadyGroups(ready, next_due)

        return await self._run(read, write=False)

    async def lease(
        self, group: Group, owner: str, limit: int, lease_seconds: float, now: float
    ) -> list[Job]:
        """Lease up to ``limit`` ready jobs of ``group``, oldest first, in one statement."""
        if limit <= 0:
            return []

        def write(conn: sqlite3.Connection) -> list[Job]:
            rows = conn.execute(
                "UPDATE jobs SET state = 'running', attempts = attempts + 1, token = token + 1,"
                " lease_owner = ?, lease_until = ?, updated_at = ?"
                " WHERE seq IN (SELECT seq FROM jobs WHERE state = 'queued' AND priority = ?"
                " AND route = ? AND not_before <= ? ORDER BY seq LIMIT ?)"
                f" RETURNING {_COLUMNS}",
                (owner, now + lease_seconds, now, int(group.priority), group.route, now, limit),
            ).fetchall()
            rows.sort(key=lambda row: row[0])
            return [_row_to_job(row) for row in rows]

        return await self._run(write, write=True)

    async def renew(self, job: Job, lease_seconds: float, now: float) -> bool:
        """Extend the lease while the caller still holds it."""

        def write(conn: sqlite3.Connection) -> bool:
            cursor = conn.execute(
                "UPDATE jobs SET lease_until = ? WHERE id = ? AND token = ? AND state = 'running'",
                (now + lease_seconds, job.id, job.token),
            )
            return cursor.rowcount == 1

        return await self._run(write, write=True)

    async def complete(
        self, job: Job, result: ir.ChatResponse, served: ServedInfo, now: float, *, webhook: bool
    ) -> bool:
        """Store the result unless the job is already finished (first completion wins)."""

        def write(conn: sqlite3.Connection) -> bool:
            cursor = conn.execute(
                "UPDATE jobs SET state = 'succeeded', result = ?, served = ?, finished_at = ?,"
                " updated_at = ?, lease_owner = NULL, lease_until = NULL, webhook = ?"
                f" WHERE id = ? AND state NOT IN {_FINISHED_SQL}",
                (
                    _encode(result),
                    _encode(served),
                    now,
                    now,
                    "pending" if webhook else "none",
                    job.id,
                ),
            )
            return cursor.rowcount == 1

        return await self._run(write, write=True)

    async def retry(
        self, job: Job, error: JobError, not_before: float, now: float, *, refund: bool = False
    ) -> bool:
        """Back to the queue until ``not_before``, while the caller holds the lease."""

        def write(conn: sqlite3.Connection) -> bool:
            cursor = conn.execute(
                "UPDATE jobs SET state = 'queued', not_before = ?, last_error = ?,"
                " updated_at = ?, lease_owner = NULL, lease_until = NULL,"
                " attempts = attempts - ? WHERE id = ? AND token = ? AND state = 'running'",
                (not_before, _encode(error), now, int(refund), job.id, job.token),
            )
            return cursor.rowcount == 1

        return await self._run(write, write=True)

    async def bury(
        self, job: Job, error: JobError, reason: DeadReason, now: float, *, webhook: bool
    ) -> bool:
        """To the dead-letter queue, while the caller holds the lease."""

        def write(conn: sqlite3.Connection) -> bool:
            cursor = conn.execute(
                "UPDATE jobs SET state = 'dead', last_error = ?, dead_reason = ?,"
                " finished_at = ?, updated_at = ?, lease_owner = NULL, lease_until = NULL,"
                " webhook = ? WHERE id = ? AND token = ? AND state = 'running'",
                (
                    _encode(error),
                    reason,
                    now,
                    now,
                    "pending" if webhook else "none",
                    job.id,
                    job.token,
                ),
            )
            return cursor.rowcount == 1

        return await self._run(write, write=True)

    async def requeue_expired(self, now: float, lease_seconds: float) -> int:
        """Running jobs whose ``lease_until`` passed go back to the queue, due now."""

        def write(conn: sqlite3.Connection) -> int:
            cursor = conn.execute(
                "UPDATE jobs SET state = 'queued', not_before = ?1, updated_at = ?1,"
                " last_error = json_object('kind', 'lease_expired', 'message',"
                " 'worker ' || coalesce(lease_owner, '?') ||"
                " ' stopped renewing its lease (it died or hung)', 'attempt', attempts,"
                " 'at', ?1), lease_owner = NULL, lease_until = NULL"
                " WHERE state = 'running' AND lease_until < ?1",
                (now,),
            )
            return cursor.rowcount

        return await self._run(write, write=True)

    async def expire(self, max_age: float, now: float, *, webhook: bool) -> int:
        """Bury queued jobs older than ``max_age`` (reason ``max_age``)."""

        def write(conn: sqlite3.Connection) -> int:
            cursor = conn.execute(
                "UPDATE jobs SET state = 'dead', dead_reason = 'max_age', finished_at = ?1,"
                " updated_at = ?1, webhook = ?3, last_error = coalesce(last_error,"
                " json_object('kind', 'expired', 'message', 'the job waited longer than '"
                " || ?2 || 's without an answer', 'attempt', attempts, 'at', ?1))"
                " WHERE state = 'queued' AND enqueued_at < ?1 - ?2",
                (now, max_age, "pending" if webhook else "none"),
            )
            return cursor.rowcount

        return await self._run(write, write=True)

    async def expedite(self, route: str, now: float) -> int:
        """Queued jobs of ``route`` in a backoff become due now."""

        def write(conn: sqlite3.Connection) -> int:
            cursor = conn.execute(
                "UPDATE jobs SET not_before = ?1 WHERE state = 'queued' AND route = ?2"
                " AND not_before > ?1",
                (now, route),
            )
            return cursor.rowcount

        count = await self._run(write, write=True)
        if count:
            self.notify()
        return count

    # -- operators ----------------------------------------------------------------------------

    async def replay(
        self,
        *,
        ids: Sequence[str] | None = None,
        state: JobState = JobState.DEAD,
        route: str | None = None,
        since: float | None = None,
        now: float,
    ) -> list[str]:
        """Finished jobs back to the queue (see ``JobQueue.replay``)."""
        if ids is not None:
            id_list = list(ids)
            where = f"state IN {_FINISHED_SQL} AND id IN ({','.join('?' * len(id_list))})"
            args: list[Any] = list(id_list)
            if not id_list:
                return []
        else:
            where = "state = ?"
            args = [state.value]
            if route is not None:
                where += " AND route = ?"
                args.append(route)
            if since is not None:
                where += " AND updated_at >= ?"
                args.append(since)

        def write(conn: sqlite3.Connection) -> list[str]:
            rows = conn.execute(
                "UPDATE jobs SET state = 'queued', attempts = 0, not_before = ?1, updated_at = ?1,"
                " enqueued_at = ?1, finished_at = NULL, dead_reason = NULL, result = NULL, served = NULL,"
                f" webhook = 'none' WHERE {where} RETURNING id",
                (now, *args),
            ).fetchall()
            return [row[0] for row in rows]

        replayed = await self._run(write, write=True)
        if replayed:
            self.notify()
        return replayed

    async def webhook_done(self, job_id: str, delivered: bool) -> None:
        """Record the webhook's outcome."""

        def write(conn: sqlite3.Connection) -> None:
            conn.execute(
                "UPDATE jobs SET webhook = ? WHERE id = ?",
                ("delivered" if delivered else "failed", job_id),
            )

        await self._run(write, write=True)

    async def pending_webhooks(self, limit: int) -> list[Job]:
        """Finished jobs whose webhook is still pending."""

        def read(conn: sqlite3.Connection) -> list[Job]:
            rows = conn.execute(
                f"SELECT {_COLUMNS} FROM jobs WHERE webhook = 'pending'"
                f" AND state IN {_FINISHED_SQL} ORDER BY seq LIMIT ?",
                (limit,),
            )
            return [_row_to_job(row) for row in rows]

        return await self._run(read, write=False)
