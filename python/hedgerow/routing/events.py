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

__all__ = ["AttemptFields", "AttemptHook", "Event", "EventBus", "attempt_fields"]

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


# Hears an attempt's fields as they happen: (route, deployment, outcome, error, status,
# latency in seconds); see ``EventBus.subscribe_attempts``.
AttemptHook = Callable[[str | None, str | None, Outcome, str | None, int | None, float], None]


class EventBus:
    """Fan-out of router events to subscribers; free when nobody listens."""

    __slots__ = ("_attempt_events", "_attempt_hooks", "_subscribers")

    def __init__(self) -> None:
        self._subscribers: list[Callable[[Event], None]] = []
        self._attempt_events: list[Callable[[Event], None]] = []
        self._attempt_hooks: list[AttemptHook] = []

    def subscribe(self, callback: Callable[[Event], None], *, attempts: bool = True) -> None:
        """Call ``callback`` with every event from now on; with ``attempts=False``, every
        event but the router's ``attempt`` events (for a subscriber that takes those through
        ``subscribe_attempts``)."""
        self._subscribers.append(callback)
        if attempts:
            self._attempt_events.append(callback)

    def subscribe_attempts(self, hook: AttemptHook) -> None:
        """Call ``hook`` with the fields of every upstream attempt from now on. No event is
        built for a hook: an attempt is the commonest thing the router reports, and an
        event object with its detail dict costs more than what most observers do with it."""
        self._attempt_hooks.append(hook)

    @property
    def active(self) -> bool:
        """Whether anyone listens (callers skip building events otherwise)."""
        return bool(self._subscribers or self._attempt_hooks)

    def attempt(
        self,
        route: str | None,
        deployment: str | None,
        outcome: Outcome,
        error: str | None,
        status: int | None,
        latency: float,
    ) -> None:
        """Report one upstream attempt: to the hooks as fields, to the subscribers that
        asked for them as an ``attempt`` event."""
        for hook in self._attempt_hooks:
            try:
                hook(route, deployment, outcome, error, status, latency)
            except Exception:  # observers must never hurt traffic
                log.exception("attempt hook failed")
        if self._attempt_events:
            detail = {"outcome": outcome, "error": error, "status": status, "latency": latency}
            self.publish("attempt", route, deployment, detail, self._attempt_events)

    def emit(
        self, kind: str, route: str | None = None, deployment: str | None = None, **detail: Any
    ) -> None:
        """Publish an event; a failing subscriber never breaks the request path."""
        self.publish(kind, route, deployment, detail)

    def publish(
        self,
        kind: str,
        route: str | None,
        deployment: str | None,
        detail: dict[str, Any],
        subscribers: list[Callable[[Event], None]] | None = None,
    ) -> None:
        """``emit`` with the detail as a dict, for the events every request makes: a call
        with keywords collected into ``**detail`` compares each keyword's name with every
        parameter's, which costs more than building the event. (``subscribers``: the
        bus's own lists only.)"""
        subscribers = self._subscribers if subscribers is None else subscribers
        if not subscribers:
            return
        event = Event(kind, route, deployment, detail, time.time())
        for callback in subscribers:
            try:
                callback(event)
            except Exception:  # observers must never hurt traffic
                log.exception("event subscriber failed")
