"""Graceful degradation: the answers a route gives when every tier has failed.

A route's ``minimal`` list is tried in order: the last good answer to the same request
(``cache``), a configured ``template``, a ``rule`` (a Python function), ``queue`` (accepted as
a background job), or ``skip`` (a clear error saying so). None of them calls a model.
"""

from __future__ import annotations

import hashlib
import importlib
import secrets
import sqlite3
import time
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

import msgspec

from hedgerow import ir
from hedgerow.config import MinimalConfig

__all__ = [
    "JobSink",
    "Minimal",
    "QueuedJob",
    "ResponseCache",
    "load_rule",
    "request_key",
    "response_events",
]


class JobSink(Protocol):
    """Where background work goes: the ``queue`` degradation and ``Gateway.submit``.

    ``hedgerow.jobs.QueueSink`` implements it over a durable queue; the router depends only
    on this protocol (jobs import the router, never the other way).
    """

    async def submit_request(
        self, request: ir.ChatRequest, *, route: str, client_format: str | None, raw: Any
    ) -> str:
        """Store a request that every tier failed as an interactive job; return its id."""
        ...

    async def submit_body(
        self,
        body: dict[str, Any],
        *,
        route: str | None,
        style: str,
        idempotency_key: str | None,
        metadata: dict[str, Any] | None,
        priority: str,
    ) -> str:
        """Store a request body as a job, durably, before returning its id."""
        ...


class QueuedJob(Exception):
    """The request was accepted as a background job (202 with ``job_id``)."""

    def __init__(self, job_id: str, route: str) -> None:
        super().__init__(f"queued as job {job_id}")
        self.job_id = job_id
        self.route = route


def request_key(route: str, request: ir.ChatRequest) -> str:
    """The identity of a request for the answer cache: everything that shapes the answer."""
    payload = msgspec.json.encode(
        (
            route,
            request.system,
            request.messages,
            request.tools,
            request.tool_choice,
            request.max_tokens,
            request.temperature,
            request.top_p,
            request.stop,
        )
    )
    return hashlib.blake2b(payload, digest_size=16).hexdigest()


class ResponseCache:
    """The last good answer per request: exact match, TTL, LRU-bounded, optionally on disk.

    The disk copy (SQLite) lets a restarted gateway still answer from the cache during an
    outage that began before it restarted.
    """

    __slots__ = ("_db", "_entries", "_max_entries", "clock")

    def __init__(
        self,
        max_entries: int = 10_000,
        path: str | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._entries: OrderedDict[str, tuple[float, bytes]] = OrderedDict()
        self._max_entries = max_entries
        self.clock = clock
        self._db: sqlite3.Connection | None = None
        if path:
            Path(path).parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute(
                "CREATE TABLE IF NOT EXISTS answers (key TEXT PRIMARY KEY, at REAL, body BLOB)"
            )

    def put(self, key: str, response: ir.ChatResponse) -> None:
        """Remember ``response`` as the last good answer to ``key``."""
        body = msgspec.json.encode(response)
        at = self.clock()
        entries = self._entries
        entries[key] = (at, body)
        entries.move_to_end(key)
        if len(entries) > self._max_entries:
            entries.popitem(last=False)
        if self._db is not None:
            self._db.execute(
                "INSERT OR REPLACE INTO answers (key, at, body) VALUES (?, ?, ?)", (key, at, body)
            )

    def get(self, key: str, ttl: float) -> ir.ChatResponse | None:
        """The answer stored under ``key`` if younger than ``ttl`` seconds."""
        hit = self._entries.get(key)
        if hit is None and self._db is not None:
            row = self._db.execute("SELECT at, body FROM answers WHERE key = ?", (key,)).fetchone()
            if row is not None:
                hit = (float(row[0]), bytes(row[1]))
        if hit is None or self.clock() - hit[0] > ttl:
            return None
        return msgspec.json.decode(hit[1], type=ir.ChatResponse)

    def close(self) -> None:
        """Close the disk copy."""
        if self._db is not None:
            self._db.close()
            self._db = None


def load_rule(path: str) -> Callable[[ir.ChatRequest], Any]:
    """Import ``module:function`` (or ``module.function``)."""
    module_name, _, attribute = path.partition(":") if ":" in path else path.rpartition(".")
    if not module_name or not attribute:
        raise ValueError(f"rule {path!r} is not of the form module:function")
    function = getattr(importlib.import_module(module_name), attribute)
    if not callable(function):
        raise ValueError(f"rule {path!r} is not callable")
    return function  # type: ignore[no-any-return]


def _text_response(text: str, model: str) -> ir.ChatResponse:
    return ir.ChatResponse(
        id="msg_hr_" + secrets.token_hex(10),
        model=model,
        content=[ir.TextPart(text)],
        finish_reason="stop",
        usage=ir.Usage(),
    )


class Minimal:
    """A route's minimal answers, prepared once (rules imported at load time)."""

    __slots__ = ("_rules", "cache", "route", "sink", "steps")

    def __init__(
        self,
        route: str,
        steps: list[MinimalConfig],
        cache: ResponseCache | None,
        sink: JobSink | None = None,
    ) -> None:
        self.route = route
        self.steps = steps
        self.cache = cache
        self.sink = sink
        self._rules = {s.function: load_rule(s.function) for s in steps if s.function}

    async def answer(
        self, request: ir.ChatRequest, client_format: str | None, raw: Any
    ) -> tuple[str, ir.ChatResponse] | None:
        """The first minimal answer that can be given, as ``(kind, response)``.

        ``None`` means none could (a cache miss with nothing after it). ``skip`` raises
        ``LookupError``; ``queue`` raises ``QueuedJob``.
        """
        for step in self.steps:
            if step.kind == "cache":
                if self.cache is None:
                    continue
                cached = self.cache.get(request_key(self.route, request), step.ttl)
                if cached is not None:
                    return "cache", cached
            elif step.kind == "template":
                return "template", _text_response(step.text or "", "hedgerow-template")
            elif step.kind == "rule":
                assert step.function is not None
                result = self._rules[step.function](request)
                if isinstance(result, ir.ChatResponse):
                    return "rule", result
                return "rule", _text_response(str(result), f"hedgerow-rule:{step.function}")
            elif step.kind == "queue":
                if self.sink is None:
                    raise LookupError(
                        f"route {self.route!r} would queue this request, but no job queue is configured"
                    )
                job_id = await self.sink.submit_request(
                    request, route=self.route, client_format=client_format, raw=raw
                )
                raise QueuedJob(job_id, self.route)
            elif step.kind == "skip":
                raise LookupError(
                    f"route {self.route!r} is degraded and skips this request while its providers are down"
                )
        return None


def response_events(response: ir.ChatResponse) -> list[ir.StreamEvent]:
    """A whole response as the stream events that would have produced it."""
    events: list[ir.StreamEvent] = [ir.MessageStart(response.id, response.model, response.usage)]
    for index, part in enumerate(response.content):
        if isinstance(part, ir.TextPart):
            events.append(ir.TextDelta(index, part.text))
        elif isinstance(part, ir.ThinkingPart):
            events.append(ir.ThinkingDelta(index, part.text, part.signature))
        elif isinstance(part, ir.ToolCallPart):
            events.append(ir.ToolCallStart(index, part.id, part.name))
            events.append(ir.ToolCallDelta(index, part.arguments))
        else:
            continue
        events.append(ir.BlockStop(index))
    events.append(ir.MessageEnd(response.finish_reason, response.usage, response.stop_sequence))
    return events
