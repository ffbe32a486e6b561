"""Simulated time for a replay: an incident's hours played in a couple of wall minutes.

One clock drives everything time-based in the replay — the simulator's scenario, the
router's breakers and windows, the job workers' backoff and leases — so that an open period
of "20 seconds" is 20 simulated seconds, as it would be in the real incident.
"""

from __future__ import annotations

import asyncio
import time

__all__ = ["ScaledClock"]

# Keeps monotonic readings positive while the lead-in runs at negative simulated time.
_MONOTONIC_BASE = 1_000_000.0


class ScaledClock:
    """Simulated seconds at ``scale`` per wall second; 0 is the incident's start.

    ``lead_in`` simulated seconds run before it, so the report shows the healthy baseline
    and the first signals. Satisfies the router's clock (call it) and the job workers'
    ``Clock`` protocol (``time``, ``monotonic``, ``sleep``).
    """

    def __init__(self, scale: float, lead_in: float = 0.0) -> None:
        if scale <= 0:
            raise ValueError(f"scale must be > 0, got {scale}")
        self.scale = scale
        self.lead_in = lead_in
        self._wall_start = time.monotonic()
        self._epoch_start = time.time()

    def elapsed(self) -> float:
        """Simulated seconds since the incident began (negative during the lead-in)."""
        return (time.monotonic() - self._wall_start) * self.scale - self.lead_in

    def __call__(self) -> float:
        return self.monotonic()

    def monotonic(self) -> float:
        """Monotonic simulated seconds (the router's health clock)."""
        return _MONOTONIC_BASE + self.elapsed()

    def time(self) -> float:
        """Simulated wall-clock epoch seconds (stored with jobs)."""
        return self._epoch_start + self.lead_in + self.elapsed()

    def to_elapsed(self, epoch: float) -> float:
        """A ``time()`` reading as simulated seconds since the incident began."""
        return epoch - self._epoch_start - self.lead_in

    def wall(self, simulated: float) -> float:
        """Wall seconds that ``simulated`` seconds take."""
        return simulated / self.scale

    async def sleep(self, seconds: float) -> None:
        """Wait ``seconds`` of simulated time."""
        await asyncio.sleep(max(0.0, seconds) / self.scale)
