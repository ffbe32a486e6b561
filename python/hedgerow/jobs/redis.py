"""The Redis job queue: Redis Streams with a consumer group, for several gateway instances
sharing one queue.

Layout (every key under ``prefix``):

=============================  ================================================================
``{p}:job:{id}``               hash: the job (scalar fields, JSON for request, result, ...)
``{p}:q:{priority}:{route}``   stream of ready job ids, one per (priority, route); consumer
                               group ``workers``; a leased job's entry stays pending (PEL)
                               until the job finishes or goes back to wait
``{p}:streams``                set of those stream keys
``{p}:delayed``                zset id -> ``not_before``: jobs waiting out a backoff; due ones
                               are moved to their stream (``promote``)
``{p}:leases``                 zset id -> ``lease_until``: running jobs' leases
``{p}:age``                    zset id -> ``enqueued_at`` of unfinished jobs (``max_age``)
``{p}:st:{state}``             zset id -> ``updated_at``, one per state (listing, counts)
``{p}:idem:{key}``             idempotency key -> job id
``{p}:webhooks``               set of finished jobs whose webhook is not delivered yet
=============================  ================================================================

Every state change is one Lua script, so it is atomic however many workers race. Leases
expire on the workers' shared clock (``{p}:leases``, as every backend does); in addition a
stream entry left pending by a consumer that vanished is claimed with ``XAUTOCLAIM`` once it
has been idle longer than a lease, and requeued. The scripts build key names from the
prefix, so this backend targets a single Redis server (or a primary with replicas), not a
cluster.

Durability is Redis's own: run it with ``appendonly yes`` so that queued jobs survive a
restart of Redis (the tests do, and restart it mid-run).
"""

from __future__ import annotations

import asyncio
import functools
import socket
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

import msgspec
import redis.asyncio as aioredis
from redis import exceptions as redis_errors
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff

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

__all__ = ["RedisQueue"]

T = TypeVar("T")

GROUP = "workers"

_encode = msgspec.json.Encoder().encode
_dec_dict = msgspec.json.Decoder(dict[str, Any]).decode
_dec_error = msgspec.json.Decoder(JobError).decode
_dec_result = msgspec.json.Decoder(ir.ChatResponse).decode
_dec_served = msgspec.json.Decoder(ServedInfo).decode

# ---------------------------------------------------------------------------------------------
# Lua. Shared helpers are prepended to each script (Redis keeps no functions between scripts).

_LIB = """
local p = ARGV[1]
local function jk(id) return p .. ':job:' .. id end
local function drop_entry(key)
  local entry = redis.call('HGET', key, 'entry')
  local stream = redis.call('HGET', key, 'stream')
  if entry and stream then
    redis.call('XACK', stream, 'workers', entry)
    redis.call('XDEL', stream, entry)
  end
  redis.call('HDEL', key, 'entry')
end
local function push(id, key)
  local stream = redis.call('HGET', key, 'stream')
  local entry = redis.call('XADD', stream, '*', 'id', id)
  redis.call('HSET', key, 'entry', entry)
end
local function move(id, from, to, score)
  redis.call('ZREM', p .. ':st:' .. from, id)
  redis.call('ZADD', p .. ':st:' .. to, score, id)
end
"""

# ARGV: p, id, idem, fingerprint, stream, not_before, now, field/value pairs...
_SUBMIT = """
local id, idem, stream = ARGV[2], ARGV[3], ARGV[5]
if idem ~= '' then
  local existing = redis.call('GET', p .. ':idem:' .. idem)
  if existing then return {0, existing} end
end
local key = jk(id)
local fields = {}
for i = 8, #ARGV do fields[#fields + 1] = ARGV[i] end
redis.call('HSET', key, unpack(fields))
if redis.call('SADD', p .. ':streams', stream) == 1 then
  pcall(redis.call, 'XGROUP', 'CREATE', stream, 'workers', '0', 'MKSTREAM')
end
if tonumber(ARGV[6]) <= tonumber(ARGV[7]) then
  push(id, key)
else
  redis.call('ZADD', p .. ':delayed', ARGV[6], id)
end
redis.call('ZADD', p .. ':st:queued', ARGV[7], id)
redis.call('ZADD', p .. ':age', ARGV[7], id)
if idem ~= '' then redis.call('SET', p .. ':idem:' .. idem, id) end
return {1, id}
"""

# ARGV: p, id, entry, owner, lease_until, now
_ACQUIRE = """
local id, entry = ARGV[2], ARGV[3]
local key = jk(id)
local state = redis.call('HGET', key, 'state')
local stream = redis.call('HGET', key, 'stream')
if state ~= 'queued' or redis.call('HGET', key, 'entry') ~= entry then
  if stream then
    redis.call('XACK', stream, 'workers', entry)
    redis.call('XDEL', stream, entry)
  end
  return false
end
redis.call('HINCRBY', key, 'attempts', 1)
redis.call('HINCRBY', key, 'token', 1)
redis.call('HSET', key, 'state', 'running', 'lease_owner', ARGV[4], 'lease_until', ARGV[5],
  'updated_at', ARGV[6])
move(id, 'queued', 'running', ARGV[6])
redis.call('ZADD', p .. ':leases', ARGV[5], id)
return redis.call('HGETALL', key)
"""

# ARGV: p, id, token, lease_until, owner
_RENEW = """
local key = jk(ARGV[2])
if redis.call('HGET', key, 'state') ~= 'running' or redis.call('HGET', key, 'token') ~= ARGV[3] then
  return 0
end
redis.call('HSET', key, 'lease_until', ARGV[4])
redis.call('ZADD', p .. ':leases', ARGV[4], ARGV[2])
local entry = redis.call('HGET', key, 'entry')
if entry then
  -- Resets the entry's idle time, so XAUTOCLAIM leaves a live worker's job alone.
  redis.call('XCLAIM', redis.call('HGET', key, 'stream'), 'workers', ARGV[5], 0, entry, 'JUSTID')
end
return 1
"""

# ARGV: p, id, now, result, served, webhook
_COMPLETE = """
local id = ARGV[2]
local key = jk(id)
local state = redis.call('HGET', key, 'state')
if not state or state == 'succeeded' or state == 'dead' then return 0 end
drop_entry(key)
redis.call('HDEL', key, 'lease_owner', 'lease_until')
redis.call('HSET', key, 'state', 'succeeded', 'result', ARGV[4], 'served', ARGV[5],
  'finished_at', ARGV[3], 'updated_at', ARGV[3], 'webhook', ARGV[6])
move(id, state, 'succeeded', ARGV[3])
redis.call('ZREM', p .. ':delayed', id)
redis.call('ZREM', p .. ':leases', id)
redis.call('ZREM', p .. ':age', id)
if ARGV[6] == 'pending' then redis.call('SADD', p .. ':webhooks', id) end
return 1
"""

# ARGV: p, id, token, not_before, now, error, refund
_RETRY = """
local id = ARGV[2]
local key = jk(id)
if redis.call('HGET', key, 'state') ~= 'running' or redis.call('HGET', key, 'token') ~= ARGV[3] then
  return 0
end
drop_entry(key)
redis.call('HDEL', key, 'lease_owner', 'lease_until')
redis.call('HSET', key, 'state', 'queued', 'not_before', ARGV[4], 'last_error', ARGV[6],
  'updated_at', ARGV[5])
if ARGV[7] == '1' then redis.call('HINCRBY', key, 'attempts', -1) end
move(id, 'running', 'queued', ARGV[5])
redis.call('ZREM', p .. ':leases', id)
redis.call('ZADD', p .. ':delayed', ARGV[4], id)
return 1
"""

# ARGV: p, id, token, now, error, reason, webhook
_BURY = """
local id = ARGV[2]
local key = jk(id)
if redis.call('HGET', key, 'state') ~= 'running' or redis.call('HGET', key, 'token') ~= ARGV[3] then
  return 0
end
drop_entry(key)
redis.call('HDEL', key, 'lease_owner', 'lease_until')
redis.call('HSET', key, 'state', 'dead', 'last_error', ARGV[5], 'dead_reason', ARGV[6],
  'finished_at', ARGV[4], 'updated_at', ARGV[4], 'webhook', ARGV[7])
move(id, 'running', 'dead', ARGV[4])
redis.call('ZREM', p .. ':leases', id)
redis.call('ZREM', p .. ':age', id)
if ARGV[7] == 'pending' then redis.call('SADD', p .. ':webhooks', id) end
return 1
"""

# A lease ran out (leases zset) or a pending entry idled too long (XAUTOCLAIM).
# ARGV: p, id, entry ('' when unknown), now, owner of the claim
_REQUEUE = """
local id, claimed, now = ARGV[2], ARGV[3], ARGV[4]
local key = jk(id)
local state = redis.call('HGET', key, 'state')
local entry = redis.call('HGET', key, 'entry')
local stream = redis.call('HGET', key, 'stream')
if claimed ~= '' and claimed ~= entry then
  -- A stale entry (the job moved on): just clear it.
  if stream then
    redis.call('XACK', stream, 'workers', claimed)
    redis.call('XDEL', stream, claimed)
  end
  return 0
end
if state == 'running' then
  local lease_until = tonumber(redis.call('HGET', key, 'lease_until') or '0')
  if claimed == '' and lease_until >= tonumber(now) then return 0 end
  local owner = redis.call('HGET', key, 'lease_owner') or '?'
  local attempts = tonumber(redis.call('HGET', key, 'attempts') or '0')
  local err = cjson.encode({kind = 'lease_expired', attempt = attempts, at = tonumber(now),
    message = 'worker ' .. owner .. ' stopped renewing its lease (it died or hung)'})
  drop_entry(key)
  redis.call('HDEL', key, 'lease_owner', 'lease_until')
  redis.call('HSET', key, 'state', 'queued', 'not_before', now, 'updated_at', now,
    'last_error', err)
  move(id, 'running', 'queued', now)
  redis.call('ZREM', p .. ':leases', id)
  push(id, key)
  return 1
elseif state == 'queued' and claimed ~= '' then
  -- Delivered to a consumer that vanished before leasing it: make it deliverable again.
  drop_entry(key)
  push(id, key)
  return 1
end
redis.call('ZREM', p .. ':leases', id)
return 0
"""

# ARGV: p, id, now, max_age, webhook
_EXPIRE = """
local id, now = ARGV[2], ARGV[3]
local key = jk(id)
local state = redis.call('HGET', key, 'state')
if state ~= 'queued' then
  if state ~= 'running' then redis.call('ZREM', p .. ':age', id) end
  return 0
end
drop_entry(key)
if not redis.call('HGET', key, 'last_error') then
  local attempts = tonumber(redis.call('HGET', key, 'attempts') or '0')
  redis.call('HSET', key, 'last_error', cjson.encode({kind = 'expired', attempt = attempts,
    at = tonumber(now), message = 'the job waited longer than ' .. ARGV[4] ..
    's without an answer'}))
end
redis.call('HSET', key, 'state', 'dead', 'dead_reason', 'max_age', 'finished_at', now,
  'updated_at', now, 'webhook', ARGV[5])
move(id, 'queued', 'dead', now)
redis.call('ZREM', p .. ':delayed', id)
redis.call('ZREM', p .. ':age', id)
if ARGV[5] == 'pending' then redis.call('SADD', p .. ':webhooks', id) end
return 1
"""

# ARGV: p, now, limit
_PROMOTE = """
local ids = redis.call('ZRANGEBYSCORE', p .. ':delayed', '-inf', ARGV[2], 'LIMIT', 0, ARGV[3])
for _, id in ipairs(ids) do
  local key = jk(id)
  if redis.call('HGET', key, 'state') == 'queued' then push(id, key) end
  redis.call('ZREM', p .. ':delayed', id)
end
return #ids
"""

# ARGV: p, route, now
_EXPEDITE = """
local n = 0
local ids = redis.call('ZRANGEBYSCORE', p .. ':delayed', '(' .. ARGV[3], '+inf')
for _, id in ipairs(ids) do
  local key = jk(id)
  if redis.call('HGET', key, 'route') == ARGV[2] then
    redis.call('ZREM', p .. ':delayed', id)
    if redis.call('HGET', key, 'state') == 'queued' then
      redis.call('HSET', key, 'not_before', ARGV[3])
      push(id, key)
      n = n + 1
    end
  end
end
return n
"""

# ARGV: p, id, now
_REPLAY = """
local id, now = ARGV[2], ARGV[3]
local key = jk(id)
local state = redis.call('HGET', key, 'state')
if state ~= 'succeeded' and state ~= 'dead' then return 0 end
redis.call('HDEL', key, 'finished_at', 'dead_reason', 'result', 'served')
redis.call('HSET', key, 'state', 'queued', 'attempts', 0, 'not_before', now, 'updated_at', now,
  'enqueued_at', now, 'webhook', 'none')
redis.call('SREM', p .. ':webhooks', id)
move(id, state, 'queued', now)
redis.call('ZADD', p .. ':age', now, id)
push(id, key)
return 1
"""

# ARGV: p, id, outcome
_WEBHOOK_DONE = """
redis.call('HSET', jk(ARGV[2]), 'webhook', ARGV[3])
redis.call('SREM', p .. ':webhooks', ARGV[2])
return 1
"""


def _num(value: float) -> str:
    return repr(float(value))


def _s(value: bytes | None) -> str | None:
    return None if value is None else value.decode()


def _hash_to_job(raw: dict[bytes, bytes]) -> Job:
    f = raw.get

    def num(name: str, default: float = 0.0) -> float:
        value = f(name.encode())
        return default if value is None else float(value)

    def opt_num(name: str) -> float | None:
        value = f(name.encode())
        return None if value is None else float(value)

    last_error = f(b"last_error")
    result = f(b"result")
    served = f(b"served")
    return Job(
        id=raw[b"id"].decode(),
        route=raw[b"route"].decode(),
        format=raw[b"format"].decode(),  # type: ignore[arg-type]
        request=_dec_dict(raw[b"request"]),
        state=JobState(raw[b"state"].decode()),
        priority=Priority(int(raw[b"priority"])),
        attempts=int(num("attempts")),
        token=int(num("token")),
        created_at=num("created_at"),
        updated_at=num("updated_at"),
        enqueued_at=num("enqueued_at"),
        not_before=num("not_before"),
        lease_owner=_s(f(b"lease_owner")),
        lease_until=opt_num("lease_until"),
        idempotency_key=_s(f(b"idempotency_key")),
        fingerprint=(f(b"fingerprint") or b"").decode(),
        metadata=_dec_dict(f(b"metadata") or b"{}"),
        last_error=None if last_error is None else _dec_error(last_error),
        result=None if result is None else _dec_result(result),
        served=None if served is None else _dec_served(served),
        finished_at=opt_num("finished_at"),
        dead_reason=_s(f(b"dead_reason")),  # type: ignore[arg-type]
        webhook=(f(b"webhook") or b"none").decode(),  # type: ignore[arg-type]
    )


def _pairs(flat: list[bytes]) -> dict[bytes, bytes]:
    return dict(zip(flat[::2], flat[1::2], strict=True))


# How long ``close`` lets pipelines still running end (each is bounded by the client's
# socket timeout and retries) before cancelling them.
_CLOSE_WAIT = 10.0


class RedisQueue(JobQueue):
    """Jobs in Redis Streams, shared by every process and host that uses the same server
    and ``prefix``.

    Args:
        url: ``redis://host:port/db`` (``rediss://`` for TLS).
        prefix: the namespace of every key (several queues can share a server).
        client: an existing ``redis.asyncio.Redis`` (``url`` is then ignored; it must not
            decode responses).
    """

    def __init__(
        self,
        url: str = "redis://127.0.0.1:6379/0",
        *,
        prefix: str = "hedgerow",
        client: aioredis.Redis | None = None,
    ) -> None:
        super().__init__()
        self.url = url
        self.prefix = prefix
        self.name = f"redis:{url}#{prefix}"
        # Reconnect by itself: a restarted Redis is picked up on the next command.
        made = client or aioredis.Redis.from_url(
            url,
            decode_responses=False,
            retry=Retry(ExponentialBackoff(cap=1.0, base=0.05), retries=3),
            retry_on_error=[redis_errors.ConnectionError, redis_errors.TimeoutError],
            health_check_interval=10,
            socket_connect_timeout=5,
        )
        self._redis: aioredis.Redis = made
        # redis-py's annotations cover its sync and async clients at once (every reply is a
        # union of both); the replies' shapes are documented per command instead.
        self._client: Any = made
        self._owns_client = client is None
        self._running: set[asyncio.Future[list[Any]]] = set()  # pipelines being executed
        reg = self._client.register_script
        self._submit_script = reg(_LIB + _SUBMIT)
        self._acquire = reg(_LIB + _ACQUIRE)
        self._renew = reg(_LIB + _RENEW)
        self._complete = reg(_LIB + _COMPLETE)
        self._retry = reg(_LIB + _RETRY)
        self._bury = reg(_LIB + _BURY)
        self._requeue = reg(_LIB + _REQUEUE)
        self._expire = reg(_LIB + _EXPIRE)
        self._promote = reg(_LIB + _PROMOTE)
        self._expedite = reg(_LIB + _EXPEDITE)
        self._replay = reg(_LIB + _REPLAY)
        self._webhook_done = reg(_LIB + _WEBHOOK_DONE)
        self._consumer_base = f"{socket.gethostname()}:{id(self):x}"

    @property
    def client(self) -> aioredis.Redis:
        """The Redis client (tests use it to look inside)."""
        return self._redis

    def _stream(self, priority: Priority, route: str) -> str:
        return f"{self.prefix}:q:{int(priority)}:{route}"

    def _group_of(self, stream: str) -> Group:
        _, priority, route = stream[len(self.prefix) + 1 :].split(":", 2)
        return Group(Priority(int(priority)), route)

    async def _guard(self, make: Callable[[], Awaitable[T]]) -> T:
        """Run a Redis call, turning connection and server errors into ``JobStoreError``."""
        try:
            return await make()
        except (redis_errors.ConnectionError, redis_errors.TimeoutError, OSError) as exc:
            raise JobStoreError(f"jobs store {self.name} is unreachable: {exc}") from exc
        except redis_errors.ResponseError as exc:
            text = str(exc)
            if text.startswith(("OOM", "MISCONF", "READONLY", "NOREPLICAS")):
                raise JobStoreError(
                    f"jobs store {self.name} refused the write: {text}: the job was not stored"
                ) from exc
            raise JobStoreError(f"jobs store {self.name}: {text}") from exc

    async def _execute(self, pipe: Any, raise_on_error: bool = True) -> list[Any]:
        """Run a pipeline to its end even if the caller is cancelled meanwhile.

        redis-py gives the pipeline's connection back in a ``finally`` that awaits the pool;
        a cancellation landing there keeps the connection (and warns when the pipeline is
        collected). Shielded, the execute finishes and releases it; the caller still sees
        its cancellation. ``close`` waits for the executes still running (a worker stopped
        while Redis was down leaves some retrying), so none is cut off by the loop's end.
        """
        task = asyncio.ensure_future(pipe.execute(raise_on_error=raise_on_error))
        self._running.add(task)
        task.add_done_callback(self._running.discard)
        result: list[Any] = await asyncio.shield(task)
        return result

    async def close(self) -> None:
        """Flush pending submits, let running pipelines end, and close the connection pool
        (if this object made it)."""
        await super().close()
        running = set(self._running)
        if running:
            _, stuck = await asyncio.wait(running, timeout=_CLOSE_WAIT)
            for task in stuck:
                task.cancel()  # redis-py gives the connection back on a cancellation
            if stuck:
                await asyncio.wait(stuck)
        if self._owns_client:
            await self._client.aclose()

    # -- submit -------------------------------------------------------------------------------

    def _fields(self, job: NewJob) -> list[Any]:
        fields: list[Any] = [
            "id", job.id, "route", job.route, "format", job.format,
            "priority", int(job.priority), "state", "queued", "attempts", 0, "token", 0,
            "created_at", _num(job.created_at), "updated_at", _num(job.created_at),
            "enqueued_at", _num(job.created_at), "not_before", _num(job.not_before),
            "fingerprint", job.fingerprint, "request", _encode(job.request),
            "metadata", _encode(job.metadata), "webhook", "none",
            "stream", self._stream(job.priority, job.route),
        ]  # fmt: skip
        if job.idempotency_key is not None:
            fields += ["idempotency_key", job.idempotency_key]
        return fields

    async def _submit_batch(self, jobs: Sequence[NewJob]) -> list[Submission | IdempotencyConflict]:
        async def run() -> list[Submission | IdempotencyConflict]:
            pipe = self._client.pipeline(transaction=False)
            for job in jobs:
                args = [
                    self.prefix,
                    job.id,
                    job.idempotency_key or "",
                    job.fingerprint,
                    self._stream(job.priority, job.route),
                    _num(job.not_before),
                    _num(job.created_at),
                    *self._fields(job),
                ]
                await self._submit_script(args=args, client=pipe)
            replies = await self._execute(pipe)
            out: list[Submission | IdempotencyConflict] = []
            existing: dict[int, str] = {}
            for index, (job, reply) in enumerate(zip(jobs, replies, strict=True)):
                if int(reply[0]) == 1:
                    out.append(Submission(job.to_job(), True))
                else:
                    existing[index] = reply[1].decode()
                    out.append(Submission(job.to_job(), False))  # replaced below
            if existing:
                pipe = self._client.pipeline(transaction=False)
                for job_id in existing.values():
                    pipe.hgetall(f"{self.prefix}:job:{job_id}")
                found = await self._execute(pipe)
                for (index, _), raw in zip(existing.items(), found, strict=True):
                    job = jobs[index]
                    old = _hash_to_job(raw)
                    key = job.idempotency_key or ""
                    if old.fingerprint != job.fingerprint:
                        out[index] = IdempotencyConflict(key, old.id)
                    else:
                        out[index] = Submission(old, False)
            return out

        return await self._guard(run)

    # -- reading ------------------------------------------------------------------------------

    async def get(self, job_id: str) -> Job | None:
        """The job, or ``None``."""
        raw = await self._guard(lambda: self._client.hgetall(f"{self.prefix}:job:{job_id}"))
        return _hash_to_job(raw) if raw else None

    async def list_jobs(
        self,
        *,
        state: JobState | None = None,
        route: str | None = None,
        since: float | None = None,
        limit: int = 100,
    ) -> list[Job]:
        """Jobs, newest state change first (see ``JobQueue.list_jobs``)."""
        states = [state] if state is not None else list(JobState)
        low = "-inf" if since is None else _num(since)
        found: list[Job] = []
        for one in states:
            key = f"{self.prefix}:st:{one.value}"
            offset = 0
            page = max(limit, 100)
            kept = 0
            while kept < limit:
                ids = await self._page(key, low, offset, page)
                if not ids:
                    break
                offset += len(ids)
                pipe = self._client.pipeline(transaction=False)
                for job_id in ids:
                    pipe.hgetall(f"{self.prefix}:job:{job_id.decode()}")
                raws = await self._guard(functools.partial(self._execute, pipe))
                for raw in raws:
                    if not raw:
                        continue
                    job = _hash_to_job(raw)
                    if route is not None and job.route != route:
                        continue
                    found.append(job)
                    kept += 1
                if len(ids) < page:
                    break
        found.sort(key=lambda j: (j.updated_at, j.id), reverse=True)
        return found[: max(0, limit)]

    async def _page(self, key: str, low: str, offset: int, count: int) -> list[bytes]:
        async def run() -> list[bytes]:
            return list(
                await self._client.zrevrangebyscore(key, "+inf", low, start=offset, num=count)
            )

        return await self._guard(run)

    async def counts(self) -> dict[JobState, int]:
        """How many jobs are in each state."""

        async def run() -> list[int]:
            pipe = self._client.pipeline(transaction=False)
            for state in JobState:
                pipe.zcard(f"{self.prefix}:st:{state.value}")
            return list(await self._execute(pipe))

        values = await self._guard(run)
        return {state: int(n) for state, n in zip(JobState, values, strict=True)}

    async def oldest_enqueued_at(self) -> float | None:
        """``enqueued_at`` of the oldest unfinished job: the lowest score of ``{p}:age``."""

        async def run() -> list[tuple[bytes, float]]:
            return list(await self._client.zrange(f"{self.prefix}:age", 0, 0, withscores=True))

        found = await self._guard(run)
        return float(found[0][1]) if found else None

    # -- the worker's side --------------------------------------------------------------------

    async def ready_groups(self, now: float) -> ReadyGroups:
        """Promote due delayed jobs, then report streams with undelivered entries."""

        async def run() -> ReadyGroups:
            while int(await self._promote(args=[self.prefix, _num(now), 500])) == 500:
                pass
            streams = sorted(
                s.decode() for s in await self._client.smembers(f"{self.prefix}:streams")
            )
            ready: list[Group] = []
            if streams:
                pipe = self._client.pipeline(transaction=False)
                for stream in streams:
                    pipe.xlen(stream)
                    pipe.xpending(stream, GROUP)
                replies = await self._execute(pipe, raise_on_error=False)
                for i, stream in enumerate(streams):
                    length, pending = replies[2 * i], replies[2 * i + 1]
                    if isinstance(length, Exception) or isinstance(pending, Exception):
                        await self._ensure_group(stream)
                        ready.append(self._group_of(stream))
                        continue
                    # Entries are deleted when acknowledged: what is not pending is ready.
                    if int(length) > int(pending["pending"]):
                        ready.append(self._group_of(stream))
            head = await self._client.zrange(f"{self.prefix}:delayed", 0, 0, withscores=True)
            next_due = float(head[0][1]) if head else None
            return ReadyGroups(ready, next_due)

        return await self._guard(run)

    async def _ensure_group(self, stream: str) -> None:
        try:
            await self._client.xgroup_create(stream, GROUP, id="0", mkstream=True)
        except redis_errors.ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    async def lease(
        self, group: Group, owner: str, limit: int, lease_seconds: float, now: float
    ) -> list[Job]:
        """Read up to ``limit`` new entries of the group's stream and lease their jobs."""
        if limit <= 0:
            return []
        stream = self._stream(group.priority, group.route)
        consumer = self._consumer(owner)

        async def run() -> list[Job]:
            try:
                reply = await self._client.xreadgroup(GROUP, consumer, {stream: ">"}, count=limit)
            except redis_errors.ResponseError as exc:
                if "NOGROUP" not in str(exc):
                    raise
                await self._ensure_group(stream)
                return []
            if not reply:
                return []
            entries = reply[0][1]
            pipe = self._client.pipeline(transaction=False)
            for entry_id, fields in entries:
                job_id = fields[b"id"].decode()
                await self._acquire(
                    args=[
                        self.prefix,
                        job_id,
                        entry_id.decode(),
                        owner,
                        _num(now + lease_seconds),
                        _num(now),
                    ],
                    client=pipe,
                )
            replies = await self._execute(pipe)
            return [_hash_to_job(_pairs(r)) for r in replies if r]

        return await self._guard(run)

    def _consumer(self, owner: str) -> str:
        return owner or self._consumer_base

    async def renew(self, job: Job, lease_seconds: float, now: float) -> bool:
        """Extend the lease (and reset the entry's idle time) while the caller holds it."""
        owner = self._consumer(job.lease_owner or "")
        reply = await self._guard(
            lambda: self._renew(
                args=[self.prefix, job.id, job.token, _num(now + lease_seconds), owner]
            )
        )
        return int(reply) == 1

    async def complete(
        self, job: Job, result: ir.ChatResponse, served: ServedInfo, now: float, *, webhook: bool
    ) -> bool:
        """Store the result unless the job is already finished (first completion wins)."""
        args: list[Any] = [
            self.prefix,
            job.id,
            _num(now),
            _encode(result),
            _encode(served),
            "pending" if webhook else "none",
        ]
        return int(await self._guard(lambda: self._complete(args=args))) == 1

    async def retry(
        self, job: Job, error: JobError, not_before: float, now: float, *, refund: bool = False
    ) -> bool:
        """Back to wait until ``not_before``, while the caller holds the lease."""
        args: list[Any] = [
            self.prefix,
            job.id,
            job.token,
            _num(not_before),
            _num(now),
            _encode(error),
            "1" if refund else "0",
        ]
        return int(await self._guard(lambda: self._retry(args=args))) == 1

    async def bury(
        self, job: Job, error: JobError, reason: DeadReason, now: float, *, webhook: bool
    ) -> bool:
        """To the dead-letter queue, while the caller holds the lease."""
        args: list[Any] = [
            self.prefix,
            job.id,
            job.token,
            _num(now),
            _encode(error),
            reason,
            "pending" if webhook else "none",
        ]
        return int(await self._guard(lambda: self._bury(args=args))) == 1

    async def requeue_expired(self, now: float, lease_seconds: float) -> int:
        """Requeue jobs whose lease ran out, and claim pending entries of vanished consumers
        (``XAUTOCLAIM``, idle longer than ``lease_seconds``)."""

        async def run() -> int:
            count = 0
            expired = await self._client.zrangebyscore(
                f"{self.prefix}:leases", "-inf", f"({_num(now)}", start=0, num=1000
            )
            for job_id in expired:
                count += int(
                    await self._requeue(args=[self.prefix, job_id.decode(), "", _num(now), ""])
                )
            claimer = f"{self._consumer_base}:reaper"
            min_idle = max(1, int(lease_seconds * 1000))
            for raw_stream in await self._client.smembers(f"{self.prefix}:streams"):
                stream = raw_stream.decode()
                start = "0-0"
                while True:
                    try:
                        reply = await self._client.xautoclaim(
                            stream, GROUP, claimer, min_idle, start_id=start, count=100
                        )
                    except redis_errors.ResponseError as exc:
                        if "NOGROUP" not in str(exc):
                            raise
                        await self._ensure_group(stream)
                        break
                    start = reply[0].decode() if isinstance(reply[0], bytes) else reply[0]
                    for entry_id, fields in reply[1]:
                        if not fields:
                            continue
                        args = [
                            self.prefix,
                            fields[b"id"].decode(),
                            entry_id.decode(),
                            _num(now),
                            claimer,
                        ]
                        count += int(await self._requeue(args=args))
                    if start == "0-0":
                        break
                # Consumers with nothing pending are gone for good: forget them.
                for consumer in await self._client.xinfo_consumers(stream, GROUP):
                    name = consumer["name"]
                    if int(consumer["pending"]) == 0 and int(consumer["idle"]) > min_idle:
                        await self._client.xgroup_delconsumer(stream, GROUP, name)
            return count

        return await self._guard(run)

    async def expire(self, max_age: float, now: float, *, webhook: bool) -> int:
        """Bury queued jobs enqueued more than ``max_age`` seconds ago."""

        async def run() -> int:
            count = 0
            ids = await self._client.zrangebyscore(
                f"{self.prefix}:age", "-inf", f"({_num(now - max_age)}", start=0, num=1000
            )
            hook = "pending" if webhook else "none"
            for job_id in ids:
                args = [self.prefix, job_id.decode(), _num(now), f"{max_age:g}", hook]
                count += int(await self._expire(args=args))
            return count

        return await self._guard(run)

    async def expedite(self, route: str, now: float) -> int:
        """Backed-off jobs of ``route`` become due now."""
        count = int(await self._guard(lambda: self._expedite(args=[self.prefix, route, _num(now)])))
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
        if ids is None:
            # Every match, however many (list_jobs is newest first and bounded).
            total = await self._guard(lambda: self._client.zcard(f"{self.prefix}:st:{state.value}"))
            matching = await self.list_jobs(state=state, route=route, since=since, limit=total)
            ids = [job.id for job in matching]
        replayed: list[str] = []
        for job_id in ids:
            args: list[Any] = [self.prefix, job_id, _num(now)]
            done = await self._guard(lambda args=args: self._replay(args=args))  # type: ignore[misc]
            if int(done):
                replayed.append(job_id)
        if replayed:
            self.notify()
        return replayed

    async def webhook_done(self, job_id: str, delivered: bool) -> None:
        """Record the webhook's outcome."""
        outcome = "delivered" if delivered else "failed"
        await self._guard(lambda: self._webhook_done(args=[self.prefix, job_id, outcome]))

    async def pending_webhooks(self, limit: int) -> list[Job]:
        """Finished jobs whose webhook is still pending."""
        ids = await self._guard(lambda: self._client.srandmember(f"{self.prefix}:webhooks", limit))
        jobs = [await self.get(job_id.decode()) for job_id in ids or []]
        return [job for job in jobs if job is not None and job.finished]

    async def flush(self) -> None:
        """Delete every key of this prefix (tests and benchmarks)."""

        async def run() -> None:
            cursor = 0
            while True:
                cursor, keys = await self._client.scan(cursor, match=f"{self.prefix}:*", count=1000)
                if keys:
                    await self._client.delete(*keys)
                if cursor == 0:
                    break

        await self._guard(run)
