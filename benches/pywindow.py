"""A straightforward pure-Python sliding-window counter: the benchmark's baseline for
``hedgerow.SlidingWindow`` (what one would write without the native core).

A ring of ``slots`` time slots; each slot keeps the period it belongs to and a count per
outcome class. A stale slot is reset when it is next written; readers skip stale slots.
"""

from __future__ import annotations

import time

OUTCOMES = ("success", "5xx", "529", "429", "timeout", "other")
_INDEX = {name: i for i, name in enumerate(OUTCOMES)}


class PyWindow:
    """Counts by outcome class over the last ``window`` seconds, in ``slots`` slots."""

    def __init__(self, window: float = 60.0, slots: int = 60) -> None:
        self.slot_width = window / slots
        self.slots = slots
        self.epochs = [-1] * slots
        self.counts = [[0] * len(OUTCOMES) for _ in range(slots)]
        self.latency_sum = [0.0] * slots

    def record(self, outcome: str, latency: float = 0.0, now: float | None = None) -> None:
        """Count one outcome at ``now`` (monotonic seconds)."""
        if now is None:
            now = time.monotonic()
        epoch = int(now // self.slot_width)
        i = epoch % self.slots
        if self.epochs[i] != epoch:
            self.epochs[i] = epoch
            self.counts[i] = [0] * len(OUTCOMES)
            self.latency_sum[i] = 0.0
        self.counts[i][_INDEX[outcome]] += 1
        self.latency_sum[i] += latency

    def error_rate(self, now: float | None = None) -> float:
        """Share of non-success outcomes in the window; 0.0 when empty."""
        if now is None:
            now = time.monotonic()
        epoch = int(now // self.slot_width)
        oldest = epoch - self.slots + 1
        total = errors = 0
        for e, c in zip(self.epochs, self.counts, strict=True):
            if oldest <= e <= epoch:
                n = sum(c)
                total += n
                errors += n - c[0]
        return errors / total if total else 0.0
