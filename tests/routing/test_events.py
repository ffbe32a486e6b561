"""``EventBus``: attempts heard as fields by hooks, as events by the subscribers that want
them; no subscriber's failure reaches the router."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from hedgerow.routing.events import Event, EventBus


def test_an_attempt_reaches_hooks_as_fields_and_only_the_subscribers_that_want_events() -> None:
    bus = EventBus()
    assert not bus.active
    fields: list[tuple[Any, ...]] = []
    every: list[Event] = []
    all_but_attempts: list[Event] = []
    bus.subscribe_attempts(lambda *f: fields.append(f))
    assert bus.active
    bus.subscribe(every.append)
    bus.subscribe(all_but_attempts.append, attempts=False)

    bus.attempt("chat", "anth/claude-sonnet-4-6", "529", "overloaded", 529, 0.25)
    bus.emit("failover", "chat", "oai/gpt-5.5", tier=1)

    assert fields == [("chat", "anth/claude-sonnet-4-6", "529", "overloaded", 529, 0.25)]
    assert [e.kind for e in every] == ["attempt", "failover"]
    attempt = every[0]
    assert (attempt.route, attempt.deployment) == ("chat", "anth/claude-sonnet-4-6")
    assert attempt.detail == {
        "outcome": "529",
        "error": "overloaded",
        "status": 529,
        "latency": 0.25,
    }
    assert attempt.at > 0
    assert [e.kind for e in all_but_attempts] == ["failover"]


def test_an_attempt_builds_no_event_when_only_hooks_listen() -> None:
    bus = EventBus()
    heard: list[Event] = []
    bus.subscribe(heard.append, attempts=False)
    bus.subscribe_attempts(lambda *f: None)
    bus.attempt("chat", "oai/gpt-5.5", "success", None, None, 0.1)
    assert heard == []


def test_a_failing_hook_or_subscriber_is_logged_and_the_others_still_hear(
    caplog: pytest.LogCaptureFixture,
) -> None:
    bus = EventBus()

    def broken(*_: Any) -> None:
        raise RuntimeError("observer bug")

    fields: list[tuple[Any, ...]] = []
    events: list[Event] = []
    bus.subscribe_attempts(broken)
    bus.subscribe_attempts(lambda *f: fields.append(f))
    bus.subscribe(broken)
    bus.subscribe(events.append)
    with caplog.at_level(logging.ERROR, logger="hedgerow.events"):
        bus.attempt("chat", "oai/gpt-5.5", "5xx", "server_error", 502, 0.5)
        bus.publish("request", "chat", None, {"status": 502})
    assert len(fields) == 1
    assert [e.kind for e in events] == ["attempt", "request"]
    assert [r.message for r in caplog.records] == [
        "attempt hook failed",
        "event subscriber failed",
        "event subscriber failed",
    ]
