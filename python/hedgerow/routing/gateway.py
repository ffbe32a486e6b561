"""``Gateway``: the router the library and the server share.

A request names a route; the route's tiers are tried in order. Nothing is committed to the
client until the first content arrives, so every failure before it (an error status, a
timeout, an in-stream error on a 200) moves on to the next candidate invisibly.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from typing import Any, Literal

import msgspec

from hedgerow import ir
from hedgerow.config import DEFAULT_TIMEOUTS, Config, load_config
from hedgerow.formats import anthropic as anthropic_format
from hedgerow.formats import openai as openai_format
from hedgerow.providers import Adapter, ClientPool, UpstreamError
from hedgerow.routing.attempt import Chunk, StreamAttempt, complete_once, open_stream
from hedgerow.routing.deployment import Candidate, Deployment, RoutePlan

__all__ = ["ChatResult", "Gateway", "GatewayError", "Served", "StreamReply"]

ClientFormat = Literal["openai", "anthropic"]
_CLIENT_FORMATS = {"openai": openai_format, "anthropic": anthropic_format}

# Failures that are the request's own fault: trying elsewhere would fail the same way.
_NOT_RETRYABLE = frozenset({ir.ErrorKind.BAD_REQUEST})


class Served(msgspec.Struct, frozen=True):
    """What answered a request: route, tier (0 = primary), deployment, attempts made."""

    route: str
    tier: int
    deployment: str
    model: str
    attempts: int
    passthrough: bool = False

    def headers(self) -> dict[str, str]:
        """The ``x-hedgerow-*`` response headers that tell the client what served it."""
        return {
            "x-hedgerow-route": self.route,
            "x-hedgerow-tier": str(self.tier),
            "x-hedgerow-deployment": self.deployment,
            "x-hedgerow-attempts": str(self.attempts),
        }


class GatewayError(Exception):
    """No candidate could answer (or the request itself is wrong).

    ``attempts`` counts upstream calls made. When hedgerow already tried more than one
    candidate, a client should not stack its own retries on top (``should_retry`` is False).
    """

    def __init__(self, info: ir.ErrorInfo, attempts: int = 0, route: str | None = None) -> None:
        super().__init__(info.message)
        self.info = info
        self.attempts = attempts
        self.route = route

    @property
    def should_retry(self) -> bool:
        """Whether a client retry could help: not after hedgerow's own failover, nor a 4xx."""
        return self.attempts <= 1 and self.info.kind not in _NOT_RETRYABLE


class ChatResult:
    """A whole response and what served it.

    ``raw`` holds the upstream's own bytes when they can go to the client unchanged
    (the client's format is the provider's).
    """

    __slots__ = ("raw", "response", "served")

    def __init__(self, served: Served, response: ir.ChatResponse, raw: bytes | None) -> None:
        self.served = served
        self.response = response
        self.raw = raw

    @property
    def text(self) -> str:
        """The response's text blocks joined."""
        return "".join(p.text for p in self.response.content if isinstance(p, ir.TextPart))

    def body(self, style: ClientFormat = "openai") -> dict[str, Any]:
        """The response as a body of ``style`` (what that API's SDK would receive)."""
        rendered: dict[str, Any] = _CLIENT_FORMATS[style].render_response(self.response)
        return rendered


class StreamReply:
    """A committed stream: the held-back chunks up to the first content, then the rest."""

    __slots__ = ("_attempt", "_held", "_rest", "served")

    def __init__(
        self,
        served: Served,
        attempt: StreamAttempt,
        held: list[Chunk],
        rest: AsyncIterator[Chunk],
    ) -> None:
        self.served = served
        self._attempt = attempt
        self._held = held
        self._rest = rest

    async def chunks(self) -> AsyncIterator[Chunk]:
        """Every chunk of the stream; closing early drops the upstream connection."""
        try:
            for chunk in self._held:
                yield chunk
            self._held = []
            async for chunk in self._rest:
                yield chunk
        finally:
            self.close()

    def close(self) -> None:
        """Stop the upstream call (the client went away, or the caller is done)."""
        self._attempt.close()


class Gateway:
    """The router over a config: ``await chat(...)``, ``async for ... in stream(...)``.

    Use as an async context manager (or call ``aclose``) so pooled connections close.
    """

    def __init__(self, config: Config, *, pool: ClientPool | None = None) -> None:
        self.config = config
        self.pool = pool or ClientPool()
        self.adapters = {name: Adapter(name, p) for name, p in config.providers.items()}
        self.deployments: dict[str, Deployment] = {}
        self.routes: dict[str, RoutePlan] = {}
        for route_name, route in config.routes.items():
            # Precedence: built-in < global < provider < route < target.
            base = DEFAULT_TIMEOUTS.merged(config.timeouts)
            tiers: list[list[Candidate]] = []
            for tier_index, tier in enumerate(route.tier_targets()):
                candidates = []
                for target in tier:
                    adapter = self.adapters[target.provider]
                    timeouts = (
                        base.merged(adapter.config.timeouts)
                        .merged(route.timeouts)
                        .merged(target.timeouts)
                    )
                    deployment = self.deployments.get(target.target)
                    if deployment is None:
                        deployment = Deployment(adapter, target.model)
                        self.deployments[target.target] = deployment
                    candidates.append(Candidate(deployment, tier_index, target.weight, timeouts))
                tiers.append(candidates)
            self.routes[route_name] = RoutePlan(route_name, tiers)

    @classmethod
    def from_file(cls, path: str | os.PathLike[str]) -> Gateway:
        """A gateway over the config file at ``path`` (YAML or TOML)."""
        return cls(load_config(path))

    async def __aenter__(self) -> Gateway:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the upstream connection pool."""
        await self.pool.close()

    # -----------------------------------------------------------------------------------------
    # The router

    def plan(self, route: str) -> RoutePlan:
        """The plan of ``route``; ``GatewayError`` (404) when no such route is configured."""
        plan = self.routes.get(route)
        if plan is None:
            known = ", ".join(sorted(self.routes))
            raise GatewayError(
                ir.ErrorInfo(
                    ir.ErrorKind.BAD_REQUEST,
                    f"The model `{route}` does not exist: hedgerow routes are {known}",
                    status=404,
                    param="model",
                ),
                route=route,
            )
        return plan

    def route_ready(self, route: str, now: float | None = None) -> float:
        """Seconds until some deployment of ``route`` may be attempted (0.0: one may now).

        Background workers ask this before leasing a job, so that no attempt is spent while
        every deployment of the route is known to be down.
        """
        self.plan(route)
        return 0.0

    async def complete(
        self,
        request: ir.ChatRequest,
        *,
        client_format: str | None = None,
        raw: dict[str, Any] | None = None,
    ) -> ChatResult:
        """Answer a non-streamed request, failing over down the route's tiers."""
        plan = self.plan(request.model)
        attempts = 0
        last: ir.ErrorInfo | None = None
        for candidate in plan.candidates():
            attempts += 1
            passthrough = raw is not None and candidate.deployment.adapter.wire_format == client_format
            try:
                response, data = await complete_once(
                    self.pool,
                    candidate.deployment,
                    request,
                    raw if passthrough else None,
                    candidate.timeouts,
                )
            except UpstreamError as exc:
                last = exc.info
                if last.kind in _NOT_RETRYABLE:
                    break
                continue
            served = self._served(plan, candidate, attempts, passthrough)
            return ChatResult(served, response, data if passthrough else None)
        assert last is not None  # a plan has at least one candidate (checked at load)
        raise GatewayError(last, attempts, plan.name)

    async def open_stream(
        self,
        request: ir.ChatRequest,
        *,
        client_format: str | None = None,
        raw: dict[str, Any] | None = None,
    ) -> StreamReply:
        """Open a streamed answer, committed at its first content."""
        plan = self.plan(request.model)
        attempts = 0
        last: ir.ErrorInfo | None = None
        for candidate in plan.candidates():
            attempts += 1
            passthrough = raw is not None and candidate.deployment.adapter.wire_format == client_format
            try:
                attempt, held, rest = await self._until_first_content(
                    candidate, request, raw if passthrough else None
                )
            except UpstreamError as exc:
                last = exc.info
                if last.kind in _NOT_RETRYABLE:
                    break
                continue
            served = self._served(plan, candidate, attempts, passthrough)
            return StreamReply(served, attempt, held, rest)
        assert last is not None
        raise GatewayError(last, attempts, plan.name)

    async def _until_first_content(
        self, candidate: Candidate, request: ir.ChatRequest, raw: dict[str, Any] | None
    ) -> tuple[StreamAttempt, list[Chunk], AsyncIterator[Chunk]]:
        """Open a stream and hold its chunks back until content (or a clean empty end).

        An error event, a cut or a timeout before that raises ``UpstreamError``: nothing has
        reached the client, so the router may go on to the next candidate.
        """
        timeouts = candidate.timeouts
        key = candidate.deployment.key
        attempt: StreamAttempt | None = None
        held: list[Chunk] = []
        try:
            async with asyncio.timeout(timeouts.first_content):
                attempt = await open_stream(self.pool, candidate.deployment, request, raw, timeouts)
                chunks = attempt.chunks().__aiter__()
                # Not closed on return: the same iterator carries the rest of the stream.
                async for raw_bytes, events in chunks:
                    for event in events:
                        if isinstance(event, ir.StreamError):
                            raise UpstreamError(event.error)
                    held.append((raw_bytes, events))
                    if any(ir.is_content(e) or isinstance(e, ir.MessageEnd) for e in events):
                        return attempt, held, chunks
        except TimeoutError:
            if attempt is not None:
                attempt.close()
            raise UpstreamError(
                ir.ErrorInfo(
                    ir.ErrorKind.TIMEOUT,
                    f"{key}: no content within {timeouts.first_content}s",
                )
            ) from None
        except BaseException:
            if attempt is not None:
                attempt.close()
            raise
        attempt.close()
        raise UpstreamError(ir.ErrorInfo(ir.ErrorKind.MALFORMED, f"{key}: stream ended empty"))

    @staticmethod
    def _served(plan: RoutePlan, candidate: Candidate, attempts: int, passthrough: bool) -> Served:
        return Served(
            route=plan.name,
            tier=candidate.tier,
            deployment=candidate.deployment.key,
            model=candidate.deployment.model,
            attempts=attempts,
            passthrough=passthrough,
        )

    # -----------------------------------------------------------------------------------------
    # The library API

    async def chat(self, body: dict[str, Any], *, style: ClientFormat = "openai") -> ChatResult:
        """Answer a request written as an OpenAI (default) or Anthropic API body."""
        request = _CLIENT_FORMATS[style].parse_request(body)
        return await self.complete(request)

    async def stream(
        self, body: dict[str, Any], *, style: ClientFormat = "openai"
    ) -> AsyncIterator[ir.StreamEvent]:
        """Stream the answer to a request body as IR events.

        A failure after the first content raises ``GatewayError`` where it happens.
        """
        request = _CLIENT_FORMATS[style].parse_request(body)
        reply = await self.open_stream(request)
        async for _raw, events in reply.chunks():
            for event in events:
                if isinstance(event, ir.StreamError):
                    raise GatewayError(event.error, reply.served.attempts, reply.served.route)
                yield event

