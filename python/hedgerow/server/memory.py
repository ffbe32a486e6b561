"""Give freed memory back to the operating system after a burst.

A request's body passes through several buffers of its size (the bytes read, the parsed
JSON, the body sent upstream); with long prompts these are tens of KiB each, so glibc's
malloc serves them from its heap, not from fresh mappings. Freed, they stay in the heap,
pinned there by small long-lived objects allocated in between, and the process keeps its
peak size: 2,000 streams opened at once with 32 KiB prompts left a worker at 359 MiB RSS,
97 MiB once trimmed (``benches/speed.py --streams-only --streams 2000 --prompt-kib 32``).
``malloc_trim(0)`` hands those free pages back (``madvise``), also in the middle of the heap.

It runs in a thread (the call releases the GIL) and only once the process has grown by
``grow`` bytes since the last time: it holds malloc's lock while it walks the heap (4 ms on
a quiet 50 MiB heap, 36 ms just after a 300 MiB burst), so it is not worth doing by the
clock alone. Not glibc (musl, macOS): nothing to do.
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import logging
import os
from collections.abc import AsyncIterator, Awaitable, Callable

__all__ = ["malloc_trim", "release_memory", "releasing_memory", "rss_bytes"]

log = logging.getLogger("hedgerow.server")

_PAGE = os.sysconf("SC_PAGE_SIZE")


def malloc_trim() -> Callable[[], object] | None:
    """glibc's ``malloc_trim(0)``, or ``None`` where there is none."""
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    try:
        trim = ctypes.CDLL(name).malloc_trim
    except (OSError, AttributeError):
        return None
    trim.argtypes = [ctypes.c_size_t]
    trim.restype = ctypes.c_int
    return lambda: trim(0)


def rss_bytes() -> int:
    """This process's resident set size."""
    with open("/proc/self/statm", "rb") as statm:
        return int(statm.read().split()[1]) * _PAGE


async def release_memory(
    every: float,
    *,
    grow: int = 32 * 1024 * 1024,
    trim: Callable[[], object] | None = None,
    rss: Callable[[], int] = rss_bytes,
    sleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
) -> None:
    """Every ``every`` seconds, trim the heap if the process grew by ``grow`` bytes since
    the last trim (or the start). Runs until cancelled; ``trim``, ``rss`` and ``sleep`` are
    glibc's, /proc's and asyncio's unless given."""
    trim = trim or malloc_trim()
    if trim is None:
        return
    baseline = rss()
    while True:
        await sleep(every)
        now = rss()
        if now - baseline < grow:
            baseline = min(baseline, now)  # measured from the lowest point since
            continue
        await asyncio.to_thread(trim)
        baseline = rss()
        log.debug("released memory: %.0f -> %.0f MiB", now / 2**20, baseline / 2**20)


def releasing_memory(every: float) -> Callable[[object], AsyncIterator[None]]:
    """``release_memory`` for the life of an aiohttp app (``app.cleanup_ctx``)."""

    async def context(_: object) -> AsyncIterator[None]:
        task = asyncio.create_task(release_memory(every), name="hedgerow-release-memory")
        yield
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)

    return context
