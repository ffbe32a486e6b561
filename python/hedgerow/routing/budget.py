"""Budgets for extra upstream calls (retries, hedges), kept in a native sliding window.

A budget allows at most ``share`` extra calls per request over the window, and never fewer
than ``floor``: so an outage, when every request wants a retry, never multiplies the load on
the providers, while a quiet route can still retry its rare failure.
"""

from __future__ import annotations

from hedgerow import SlidingWindow

__all__ = ["Budget"]


class Budget:
    """Requests are counted as ``success``, extra calls as ``other``, in one window."""

    __slots__ = ("_window", "floor", "share")

    def __init__(self, share: float, floor: int, window: float) -> None:
        self.share = share
        self.floor = floor
        self._window = SlidingWindow(window=window, slots=max(6, min(60, int(window))))

    def request(self, now: float) -> None:
        """Count a request (the base the share is taken of)."""
        self._window.record("success", 0.0, now)

    def try_spend(self, now: float) -> bool:
        """Take one extra call from the budget, if it has one."""
        counts = self._window.counts(now)
        allowed = max(float(self.floor), self.share * counts["success"])
        if counts["other"] >= allowed:
            return False
        self._window.record("other", 0.0, now)
        return True

    def spent(self, now: float) -> int:
        """Extra calls made over the window."""
        return self._window.counts(now)["other"]
