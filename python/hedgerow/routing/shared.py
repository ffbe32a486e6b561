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

import logging
import os
from typing import TYPE_CHECKING

from hedgerow._core import SharedBucket, SharedState

if TYPE_CHECKING:
    from hedgerow.routing.remote import RemoteHealth

__all__ = ["REGION_ENV", "SharedHealth", "open_region"]

log = logging.getLogger("hedgerow.shared")

# The supervisor of `serve --workers N` names the region file in this variable.
REGION_ENV = "HEDGEROW_SHARED_REGION"
REGION_SLOTS = 4096


def open_region() -> SharedState | None:
    """The region named by ``HEDGEROW_SHARED_REGION`` (set by the supervisor), if any."""
    path = os.environ.get(REGION_ENV)
    if not path:
        return None
    return SharedState(path, REGION_SLOTS)


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
