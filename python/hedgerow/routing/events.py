"""What the router did, as events: failovers, hedges, retries, breaker transitions, degradation.

The router publishes; observers (metrics, the event log, alerts) subscribe with
``Gateway.subscribe``. The router never imports an observer.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

import msgspec

from hedgerow.routing.health import Outcome

__all__ = ["AttemptFields", "Event", "EventBus", "attempt_fields"]

log = logging.getLogger("hedgerow.events")


class Event(msgspec.Struct, frozen=True):
    """One thing the router did. ``at`` is wall-clock epoch seconds."""

    kind: str
    route: str | None = None
    deployment: str | None = None
    detail: dict[str, Any] = msgspec.field(default_factory=dict)
    at: float = 0.0


# One upstream attempt as observers take it in batches: (route, deployment, outcome, error,
# status, latency in seconds, when on the gateway's clock). A plain tuple: made for every
# attempt, it must cost less than the work it saves.
AttemptFields = tuple[str | None, str | None, Outcome, str | None, int | None, float, float]


def attempt_fields(event: Event, now: float) -> AttemptFields:
    """The fields of an ``attempt`` event (``now``: when it happened, on the gateway's
    clock)."""
    d = event.detail
    return (
        event.route,
        event.deployment,
        d.get("outcome", "other"),
        d.get("error"),
        d.get("status"),
        d.get("latency") or 0.0,
        now,
    )


class EventBus:
    """Fan-out of router events to subscribers; free when nobody listens."""

    __slots__ = ("_subscribers",)

    def __init__(self) -> None:
        self._subscribers: list[Callable[[Event], None]] = []

    def subscribe(self, callback: Callable[[Event], None]) -> None:
        """Call ``callback`` with every event from now on."""
        self._subscribers.append(callback)

    @property
    def active(self) -> bool:
        """Whether anyone listens (callers skip building events otherwise)."""
        return bool(self._subscribers)

    def emit(
        self, kind: str, route: str | None = None, deployment: str | None = None, **detail: Any
    ) -> None:
        """Publish an event; a failing subscriber never breaks the request path."""
        if self._subscribers:
            self.publish(kind, route, deployment, detail)

    def publish(
        self, kind: str, route: str | None, deployment: str | None, detail: dict[str, Any]
    ) -> None:
        """``emit`` with the detail as a dict, for the events every request makes: a call
        with keywords collected into ``**detail`` compares each keyword's name with every
        parameter's, which costs more than building the event."""
        if not self._subscribers:
            return
        event = Event(kind, route, deployment, detail, time.time())
        for callback in self._subscribers:
            try:
                callback(event)
            except Exception:  # observers must never hurt traffic
                log.exception("event subscriber failed")
