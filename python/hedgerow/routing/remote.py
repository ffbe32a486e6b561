"""Health state shared between instances through Redis: rate limits (GCRA in one Lua script
on Redis's clock) and breaker trips (pub/sub), with the fall-back to local limits while
Redis cannot be reached. See ``hedgerow.routing.shared`` for the whole picture; this module
is imported only when ``shared.redis_url`` is set (redis-py costs ~7 MiB of every worker's
memory to import).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import secrets
from collections.abc import Callable
from typing import Any

import orjson
import redis.asyncio as aioredis
from redis import exceptions as redis_errors

from hedgerow.config import SharedConfig

__all__ = ["RemoteHealth"]

log = logging.getLogger("hedgerow.shared")

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
