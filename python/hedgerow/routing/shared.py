"""Health state shared beyond one process: between the workers of one host, and between hosts.

Every deployment keeps its own breaker, windows and buckets in the native core (see
``health``). Two things must hold across copies of the gateway, or running N copies would
multiply the limits by N and let each copy learn of an outage on its own:

* **rate limits** (a deployment's ``rpm`` / ``tpm``): one GCRA state for all copies;
* **breaker trips**: when one copy's breaker opens, the others hold off for the open time.

Two carriers, chosen by how far the copies are apart:

* ``serve --workers N`` on one host: a region of shared memory (``hedgerow._core.SharedState``,
  a file under ``/dev/shm`` mapped by every worker). A limit is one atomic word updated by the
  same compare-and-swap GCRA as a local ``TokenBucket`` (~100 ns, no system call); a trip is
  an "open until" word raised with ``fetch_max``. Nothing to run, nothing to lose.
* several instances (hosts): Redis (``shared.redis_url``). A limit is GCRA in one Lua script
  on Redis's own clock (hosts' clocks differ); a trip is published on a channel, carrying the
  seconds left open (not a time, so clock skew does not matter). When Redis cannot be reached
  the instance falls back to its local limits, logs it once, emits a ``shared`` event, and
  tries Redis again every ``retry_interval`` seconds; a user never sees an error for it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import os
import secrets
from collections.abc import Callable
from typing import Any

import orjson
import redis.asyncio as aioredis
from redis import exceptions as redis_errors

from hedgerow._core import SharedBucket, SharedState
from hedgerow.config import SharedConfig

__all__ = ["REGION_ENV", "RemoteHealth", "SharedHealth", "open_region"]

log = logging.getLogger("hedgerow.shared")

# The supervisor of `serve --workers N` names the region file in this variable.
REGION_ENV = "HEDGEROW_SHARED_REGION"
REGION_SLOTS = 4096

# GCRA on Redis's clock (microseconds). KEYS[1]: the TAT; ARGV: emission interval, tolerance,
# cost (microseconds). Returns 0 (granted), the microseconds to wait, or -1 (never: cost >
# burst). One script, so the read-decide-write is atomic across every instance.
_GCRA = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local tau = tonumber(ARGV[2])
local inc = tonumber(ARGV[3])
if inc > tau then return -1 end
local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
if tat < now then tat = now end
local new = tat + inc
local ahead = new - now
if ahead <= tau then
  redis.call('SET', KEYS[1], string.format('%d', new), 'PX', math.ceil(ahead / 1000) + 1000)
  return 0
end
return ahead - tau
"""

_REDIS_ERRORS = (redis_errors.RedisError, OSError, TimeoutError, asyncio.TimeoutError)


def open_region() -> SharedState | None:
    """The region named by ``HEDGEROW_SHARED_REGION`` (set by the supervisor), if any."""
    path = os.environ.get(REGION_ENV)
    if not path:
        return None
    return SharedState(path, REGION_SLOTS)


class RemoteHealth:
    """Limits and trips shared through Redis, with the local fallback (see the module)."""

    def __init__(self, config: SharedConfig, clock: Callable[[], float]) -> None:
        assert config.redis_url is not None
        self.config = config
        self.clock = clock
        self.instance = secrets.token_hex(6)
        self.channel = f"{config.prefix}:trips"
        self._client: aioredis.Redis = aioredis.Redis.from_url(
            config.redis_url,
            socket_timeout=config.timeout,
            socket_connect_timeout=config.timeout,
            retry_on_timeout=False,
        )
        self._script = self._client.register_script(_GCRA)
        self._open: dict[str, float] = {}  # deployment -> local monotonic end of a peer's trip
        self._down_until = -math.inf  # while Redis is considered down: local limits only
        self.available = True
        self._listener: asyncio.Task[None] | None = None
        self.on_change: Callable[[bool, str], None] | None = None

    # -- rate limits --------------------------------------------------------------------------

    async def acquire(self, name: str, rate: float, per: float, cost: float) -> float | None:
        """Take ``cost`` from the shared limit ``name``: 0.0, seconds to wait, or ``None``
        when Redis is unavailable (the caller uses its local limit)."""
        now = self.clock()
        if now < self._down_until:
            return None
        interval = per / rate * 1e6
        try:
            waited = await self._script(
                keys=[f"{self.config.prefix}:gcra:{name}"],
                args=[round(interval), round(interval * rate), round(interval * cost)],
            )
        except _REDIS_ERRORS as exc:
            self._down(exc)
            return None
        self._up()
        waited = int(waited)
        if waited < 0:
            return math.inf
        return waited / 1e6

    # -- breaker trips ------------------------------------------------------------------------

    def open_until(self, name: str) -> float | None:
        """When a peer's trip of ``name`` ends (local monotonic seconds), if one is known."""
        return self._open.get(name)

    def tripped(self, name: str, seconds: float) -> None:
        """Tell the peers ``name``'s breaker opened here for ``seconds`` (fire and forget)."""
        if self.clock() < self._down_until:
            return
        message = orjson.dumps({"d": name, "s": seconds, "i": self.instance})
        # No running loop (a synchronous caller): nothing to tell.
        with contextlib.suppress(RuntimeError):
            asyncio.get_running_loop().create_task(self._publish(message))

    async def _publish(self, message: bytes) -> None:
        try:
            await self._client.publish(self.channel, message)
        except _REDIS_ERRORS as exc:
            self._down(exc)

    def start(self) -> None:
        """Start listening for peers' trips (idempotent; needs a running loop)."""
        if self._listener is None or self._listener.done():
            self._listener = asyncio.get_running_loop().create_task(self._listen())

    async def _listen(self) -> None:
        while True:
            pubsub = self._client.pubsub(ignore_subscribe_messages=True)
            try:
                await pubsub.subscribe(self.channel)
                while True:
                    message = await pubsub.get_message(timeout=None)
                    if message is not None:
                        self._heard(message.get("data"))
            except asyncio.CancelledError:
                await _quietly(pubsub.aclose())  # type: ignore[no-untyped-call]
                raise
            except _REDIS_ERRORS as exc:
                self._down(exc)
                await _quietly(pubsub.aclose())  # type: ignore[no-untyped-call]
                await asyncio.sleep(self.config.retry_interval)  # then subscribe again

    def _heard(self, data: Any) -> None:
        try:
            trip = orjson.loads(data)
            if trip["i"] == self.instance:
                return
            name, seconds = str(trip["d"]), float(trip["s"])
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
            return  # not ours: ignore
        until = self.clock() + max(0.0, min(seconds, 3600.0))
        self._open[name] = max(self._open.get(name, 0.0), until)
        log.info("breaker of %s opened on a peer instance: holding off for %.1fs", name, seconds)

    # -- availability -------------------------------------------------------------------------

    def _down(self, exc: BaseException) -> None:
        self._down_until = self.clock() + self.config.retry_interval
        if self.available:
            self.available = False
            reason = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
            log.warning(
                "shared state: Redis unreachable (%s): falling back to local rate limits", reason
            )
            if self.on_change is not None:
                self.on_change(False, reason)

    def _up(self) -> None:
        if not self.available:
            self.available = True
            log.warning("shared state: Redis reachable again: rate limits shared again")
            if self.on_change is not None:
                self.on_change(True, "")

    async def aclose(self) -> None:
        """Stop listening and close the connections."""
        if self._listener is not None:
            self._listener.cancel()
            await asyncio.gather(self._listener, return_exceptions=True)
            self._listener = None
        await _quietly(self._client.aclose())


async def _quietly(awaitable: Any) -> None:
    with contextlib.suppress(*_REDIS_ERRORS):
        await awaitable


class SharedHealth:
    """The shared state one gateway process takes part in: a host's region, Redis, both, or
    neither (then every method is cheap and changes nothing)."""

    def __init__(
        self, region: SharedState | None = None, remote: RemoteHealth | None = None
    ) -> None:
        self.region = region
        self.remote = remote

    @property
    def active(self) -> bool:
        """Whether anything is shared at all."""
        return self.region is not None or self.remote is not None

    def bucket(self, name: str, rate: float, per: float) -> SharedBucket | None:
        """The host-wide limit ``name`` (``None`` without a region, or when it is full)."""
        if self.region is None:
            return None
        try:
            return self.region.bucket(name, rate, per)
        except ValueError:
            log.warning("shared region full: limit %s stays local to this worker", name)
            return None

    def open_until(self, name: str) -> float | None:
        """The latest end of a trip of ``name`` recorded by another copy, if any."""
        found = self.region.open_until(name) if self.region is not None else None
        if self.remote is not None:
            remote = self.remote.open_until(name)
            if remote is not None and (found is None or remote > found):
                found = remote
        return found

    def tripped(self, name: str, until: float, now: float) -> None:
        """``name``'s breaker opened here until ``until`` (monotonic seconds)."""
        if self.region is not None:
            self.region.trip(name, until)
        if self.remote is not None:
            self.remote.tripped(name, until - now)

    def recovered(self, name: str, now: float) -> None:
        """``name``'s breaker closed here (a probe succeeded): forget trips that have ended."""
        if self.region is not None:
            self.region.clear(name, now)
