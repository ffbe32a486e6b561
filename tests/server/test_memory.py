"""Giving freed memory back after a burst (``hedgerow.server.memory``)."""

from __future__ import annotations

import asyncio

import pytest

from hedgerow.server.memory import malloc_trim, release_memory, rss_bytes

MiB = 1024 * 1024


def test_malloc_trim_gives_a_freed_burst_back_to_the_system() -> None:
    """The real call on this machine's libc: a burst of 32 KiB buffers (a long prompt's
    size), pinned in the heap by small objects allocated between them, then freed, stays
    resident until trimmed."""
    trim = malloc_trim()
    assert trim is not None, "glibc's malloc_trim is missing"
    pins, burst = [], []
    for _ in range(4000):
        burst.append(bytearray(32 * 1024))
        pins.append(bytearray(600))  # above pymalloc's limit: in malloc's heap, between
    burst.clear()
    before = rss_bytes()
    trim()
    after = rss_bytes()
    assert before - after > 64 * MiB, (before / MiB, after / MiB)
    assert len(pins) == 4000


async def test_trims_only_after_the_process_grew() -> None:
    """Trimmed when RSS has grown by ``grow`` since the last trim (or the lowest point
    since), not on every tick."""
    # The start, then one reading a tick, and one right after each trim.
    readings = iter([100, 110, 90, 125, 60, 70, 95, 60, 80])  # MiB
    last = [0]
    trims: list[int] = []

    def rss() -> int:
        last[0] = next(readings)
        return last[0] * MiB

    def trim() -> None:
        trims.append(last[0])

    ticks = [0]

    async def sleep(_: float) -> None:
        ticks[0] += 1
        if ticks[0] == 7:
            raise asyncio.CancelledError  # the app stops

    with pytest.raises(asyncio.CancelledError):
        await release_memory(5.0, grow=32 * MiB, trim=trim, rss=rss, sleep=sleep)
    # 110 (+10 over 100), 90 (the new low), 125 (+35 over 90: trim, then 60), 70 (+10),
    # 95 (+35 over 60: trim, then 60), 80 (+20).
    assert trims == [125, 95]
    assert next(readings, None) is None
