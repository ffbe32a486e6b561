"""One attempt: one upstream call to one deployment, as IR (and, when formats match, bytes).

An attempt knows nothing of tiers or failover: it calls, classifies, and reports. Errors
leave it as ``UpstreamError``.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import orjson

from hedgerow import ir
from hedgerow.config import Timeouts
from hedgerow.formats import FormatError
from hedgerow.formats.sse import PassthroughScanner
from hedgerow.providers import ClientPool, UpstreamError, UpstreamResponse, open_call
from hedgerow.providers.http1 import Http1Error
from hedgerow.routing.deployment import Deployment

__all__ = ["Chunk", "StreamAttempt", "complete_once", "open_stream"]

# One network read: the raw bytes (forwarded as they are on the passthrough path) and the IR
# events decoded from them. ``raw`` is ``None`` for events hedgerow made itself (a cut stream's
# closing error), which must be encoded in the client's format.
Chunk = tuple[bytes | None, list[ir.StreamEvent]]


def _body(
    deployment: Deployment, request: ir.ChatRequest, raw: dict[str, Any] | None, stream: bool
) -> bytes:
    if raw is not None:
        return deployment.adapter.passthrough_body(raw, deployment.model)
    return deployment.adapter.render_body(request, deployment.model, stream)


async def complete_once(
    pool: ClientPool,
    deployment: Deployment,
    request: ir.ChatRequest,
    raw: dict[str, Any] | None,
    timeouts: Timeouts,
) -> tuple[ir.ChatResponse, bytes]:
    """A non-streamed call: the parsed response and its raw bytes.

    The whole response must arrive within ``first_content`` (it *is* the first content) and
    ``total``; a body that does not parse is a malformed response, so it fails over too.
    """
    adapter = deployment.adapter
    limit = _min_timeout(timeouts.first_content, timeouts.total)
    try:
        async with asyncio.timeout(limit):
            upstream = await open_call(
                pool,
                adapter,
                adapter.url(deployment.model, False),
                _body(deployment, request, raw, False),
                timeouts,
            )
            data = await upstream.read()
    except TimeoutError:
        raise UpstreamError(
            ir.ErrorInfo(ir.ErrorKind.TIMEOUT, f"{deployment.key}: no response within {limit}s")
        ) from None
    try:
        body = orjson.loads(data)
        if not isinstance(body, dict):
            raise FormatError("response is not a JSON object")
        if (
            "error" in body
            and "choices" not in body
            and "content" not in body
            and "candidates" not in body
        ):
            provider_type, message = adapter.fmt.parse_error(200, data)
            raise UpstreamError(
                ir.ErrorInfo(ir.ErrorKind.STREAM_ERROR, message, 200, provider_type)
            )
        response: ir.ChatResponse = adapter.fmt.parse_response(body)
    except (orjson.JSONDecodeError, FormatError) as exc:
        raise UpstreamError(
            ir.ErrorInfo(
                ir.ErrorKind.MALFORMED, f"{deployment.key}: malformed response: {exc}", 200
            )
        ) from None
    return response, data


def _min_timeout(*values: float | None) -> float | None:
    present = [v for v in values if v is not None]
    return min(present) if present else None


class StreamAttempt:
    """A streamed call whose headers have arrived; iterate it for ``Chunk``s.

    The decoder's ``close()`` runs when the upstream ends, so a stream cut before its
    terminal event yields a final ``StreamError`` instead of a clean-looking end.

    On the passthrough path (``light``) a ``PassthroughScanner`` stands in front of the
    decoder: the bytes go to the client as they are, and past the first content only the
    events that can carry an error, the usage or the end are decoded.
    """

    __slots__ = ("_deadline", "_decoder", "_scanner", "deployment", "response")

    def __init__(
        self,
        deployment: Deployment,
        response: UpstreamResponse,
        deadline: float | None,
        light: bool = False,
    ) -> None:
        self.deployment = deployment
        self.response = response
        self._decoder = deployment.adapter.fmt.StreamDecoder()
        self._scanner: PassthroughScanner | None = None
        quiet = getattr(deployment.adapter.fmt, "quiet_events", None)
        if light and quiet is not None:
            self._scanner = PassthroughScanner(self._decoder, quiet)
        self._deadline = deadline

    async def chunks(self) -> AsyncIterator[Chunk]:
        """The stream as it arrives, bounded by the attempt's total deadline.

        The deadline is one timer for the whole stream (not a timeout per read): when it
        fires, the connection is dropped and the stream ends with a ``TIMEOUT`` error.
        """
        iterator = self.response.chunks().__aiter__()
        expired = False
        timer: asyncio.TimerHandle | None = None
        if self._deadline is not None:

            def expire() -> None:
                nonlocal expired
                expired = True
                self.response.close()

            timer = asyncio.get_running_loop().call_at(self._deadline, expire)
        try:
            while True:
                try:
                    raw = await iterator.__anext__()
                except StopAsyncIteration:
                    if expired:
                        yield None, [self._timed_out()]
                        return
                    break
                except Http1Error as exc:
                    info = self.response.stream_error(exc)
                    yield None, [self._timed_out() if expired else ir.StreamError(info)]
                    return
                if expired:
                    yield None, [self._timed_out()]
                    return
                scanner = self._scanner
                events = self._decoder.feed(raw) if scanner is None else scanner.feed(raw)
                yield raw, events
        finally:
            if timer is not None:
                timer.cancel()
        scanner = self._scanner
        tail = self._decoder.close() if scanner is None else scanner.close()
        if tail:
            yield None, tail

    def _timed_out(self) -> ir.StreamError:
        return ir.StreamError(
            ir.ErrorInfo(
                ir.ErrorKind.TIMEOUT,
                f"{self.deployment.key}: stream exceeded its total time limit",
            )
        )

    def close(self) -> None:
        """Drop the upstream connection (used when the attempt loses or the client leaves)."""
        self.response.close()


async def open_stream(
    pool: ClientPool,
    deployment: Deployment,
    request: ir.ChatRequest,
    raw: dict[str, Any] | None,
    timeouts: Timeouts,
    light: bool = False,
) -> StreamAttempt:
    """Send a streamed request and wait for its headers.

    The caller bounds this wait by the first-content deadline; the attempt's total deadline
    starts now and bounds the whole stream. ``light``: the bytes will pass through to the
    client and nothing needs the content decoded (see ``StreamAttempt``).
    """
    loop = asyncio.get_running_loop()
    deadline = None if timeouts.total is None else loop.time() + timeouts.total
    adapter = deployment.adapter
    upstream = await open_call(
        pool,
        adapter,
        adapter.url(deployment.model, True),
        _body(deployment, request, raw, True),
        timeouts,
    )
    return StreamAttempt(deployment, upstream, deadline, light)
