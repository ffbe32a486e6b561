"""Clocks for the jobs subsystem: the real one, and one that tests drive.

Everything in ``hedgerow.jobs`` that depends on time reads it from a ``Clock``: wall-clock
epoch seconds for what is stored (``time``), monotonic seconds for the router's health
(``monotonic``, the clock of ``Gateway.route_ready``), and ``sleep`` to wait. ``FakeClock``
moves only when told to, so a test of backoff or Retry-After advances time instead of
sleeping and hoping.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import time
from typing import Protocol

__all__ = ["Clock", "FakeClock", "SystemClock"]


class Clock(Protocol):
    """What the queue and the workers read the time from."""

    def time(self) -> float:
        """Wall-clock epoch seconds (stored with jobs)."""
        ...

    def monotonic(self) -> float:
        """Monotonic seconds (the router's health clock)."""
        ...

    async def sleep(self, seconds: float) -> None:
        """Wait ``seconds`` on this clock."""
        ...


class SystemClock:
    """The real clocks and ``asyncio.sleep``."""

    def time(self) -> float:
        """``time.time()``."""
        return time.time()

    def monotonic(self) -> float:
        """``time.monotonic()``."""
        return time.monotonic()

    async def sleep(self, seconds: float) -> None:
        """``asyncio.sleep``."""
        await asyncio.sleep(max(0.0, seconds))


class FakeClock:
    """A clock that moves only by ``advance`` (or ``set``); sleepers wake when it passes
    their deadline. Wall and monotonic time move together."""

    def __init__(self, start: float = 1_700_000_000.0, monotonic_start: float = 1_000.0) -> None:
        self._wall = start
        self._offset = monotonic_start - start
        self._sleepers: list[tuple[float, int, asyncio.Future[None]]] = []
        self._seq = itertools.count()

    def time(self) -> float:
        """The fake wall-clock time."""
        return self._wall

    def monotonic(self) -> float:
        """The fake monotonic time (moves with ``time``)."""
        return self._wall + self._offset

    async def sleep(self, seconds: float) -> None:
        """Wait until the clock has been advanced past now + ``seconds``."""
        if seconds <= 0:
            await asyncio.sleep(0)
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._sleepers, (self._wall + seconds, next(self._seq), future))
        await future

    def advance(self, seconds: float) -> None:
        """Move time forward by ``seconds`` and wake the sleepers now due."""
        self.set(self._wall + seconds)

    def set(self, wall: float) -> None:
        """Move time forward to ``wall`` (never backward) and wake the sleepers now due."""
        self._wall = max(self._wall, wall)
        while self._sleepers and self._sleepers[0][0] <= self._wall:
            _, _, future = heapq.heappop(self._sleepers)
            if not future.done():
                future.set_result(None)

    @property
    def sleepers(self) -> int:
        """How many sleeps are waiting (lets a test see that a worker went idle)."""
        return sum(1 for _, _, f in self._sleepers if not f.done())
