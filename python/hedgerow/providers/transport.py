"""Upstream HTTP: one shared keep-alive pool, and one call turned into bytes or an error.

The wire work is ``http1`` (a lean HTTP/1.1 client); this module turns its outcomes into the
router's vocabulary. Every failure leaves as an ``UpstreamError`` carrying a classified
``ir.ErrorInfo``: the router never sees a socket or parser exception.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping

from hedgerow.config import Timeouts
from hedgerow.ir import ErrorInfo, ErrorKind
from hedgerow.providers.adapter import Adapter
from hedgerow.providers.classify import classify_http
from hedgerow.providers.http1 import Http1Error, Http1Pool, Http1Response

__all__ = ["ClientPool", "UpstreamError", "UpstreamResponse", "open_call"]

# An upstream error body larger than this is cut: it is only read for its message.
_MAX_ERROR_BODY = 64 * 1024
# A whole (non-streamed) response larger than this is refused as malformed.
MAX_RESPONSE_BYTES = 32 * 1024 * 1024


class UpstreamError(Exception):
    """A failed upstream call, classified."""

    def __init__(self, info: ErrorInfo) -> None:
        super().__init__(f"{info.kind}: {info.message}")
        self.info = info


class ClientPool:
    """The keep-alive connection pool all adapters share.

    Created lazily inside the running loop, since connections belong to one loop. There is
    no cap on connections: every open attempt holds one (5,000 open streams need 5,000
    upstream connections), and the server's own limits and the routes' rate limits bound
    the calls.
    """

    def __init__(self, keepalive: float = 30.0) -> None:
        self._keepalive = keepalive
        self._pool: Http1Pool | None = None

    def pool(self) -> Http1Pool:
        """The shared pool, created on first use (and again after ``close``)."""
        pool = self._pool
        if pool is None:
            pool = self._pool = Http1Pool(keepalive=self._keepalive)
        return pool

    async def close(self) -> None:
        """Close every pooled connection."""
        if self._pool is not None:
            await self._pool.close()
        self._pool = None


_KINDS = {
    "connect": ErrorKind.CONNECT,
    "timeout": ErrorKind.TIMEOUT,
    "cut": ErrorKind.MALFORMED,
    "malformed": ErrorKind.MALFORMED,
    "too_large": ErrorKind.MALFORMED,
}


def _info(exc: Http1Error, status: int = 0, prefix: str = "") -> ErrorInfo:
    message = f"upstream stream cut: {exc}" if exc.kind == "cut" else f"{prefix}{exc}"
    return ErrorInfo(_KINDS[exc.kind], message, status)


class UpstreamResponse:
    """A 2xx upstream answer whose body is still to be read."""

    __slots__ = ("_response", "status")

    def __init__(self, response: Http1Response) -> None:
        self._response = response
        self.status = response.status

    @property
    def headers(self) -> Mapping[str, str]:
        """The response headers (names in lower case), decoded only if asked for."""
        return self._response.headers

    async def read(self) -> bytes:
        """The whole body (bounded by ``MAX_RESPONSE_BYTES``)."""
        try:
            return await self._response.read(MAX_RESPONSE_BYTES)
        except Http1Error as exc:
            raise UpstreamError(_info(exc, self.status)) from None

    def chunks(self) -> AsyncIterator[bytes]:
        """The body as it arrives. A failure raises ``Http1Error``, which ``stream_error``
        classifies: no wrapping generator here, since every streamed read already passes
        through several layers and each costs on every read."""
        return self._response.chunks()

    def stream_error(self, exc: Http1Error) -> ErrorInfo:
        """What a failure while reading ``chunks`` means to the router: an idle stream is a
        timeout, a cut or garbage a malformed response."""
        if exc.kind == "timeout":
            return ErrorInfo(
                ErrorKind.TIMEOUT, f"upstream stream stalled (idle timeout): {exc}", self.status
            )
        return _info(exc, self.status)

    def close(self) -> None:
        """Drop the connection (not back to the pool): a cancelled call stops costing."""
        self._response.close()


async def open_call(
    pool: ClientPool,
    adapter: Adapter,
    url: str,
    body: bytes,
    timeouts: Timeouts,
) -> UpstreamResponse:
    """Send one request and wait for its status line and headers.

    A non-2xx answer is read (bounded), classified, and raised as ``UpstreamError``. The
    ``idle`` timeout bounds every wait for upstream bytes, so a stalled stream fails.
    """
    try:
        response = await pool.pool().post(
            url, adapter.header_block, body, timeouts.connect, timeouts.idle
        )
    except Http1Error as exc:
        if exc.kind == "timeout":
            raise UpstreamError(
                ErrorInfo(ErrorKind.TIMEOUT, f"{adapter.name}: no response headers in time")
            ) from None
        raise UpstreamError(_info(exc, prefix=f"{adapter.name}: ")) from None
    if 200 <= response.status < 300:
        return UpstreamResponse(response)
    try:
        raw = await response.read_some(_MAX_ERROR_BODY)
    except Http1Error:
        raw = b""
    provider_type, message = adapter.fmt.parse_error(response.status, raw)
    info = classify_http(
        response.status, response.headers, provider_type, message, adapter.fmt.classify_error
    )
    raise UpstreamError(info)


def error_from_exception(exc: BaseException) -> ErrorInfo:
    """Classify an unexpected exception during an attempt (a bug or an odd transport state)."""
    if isinstance(exc, UpstreamError):
        return exc.info
    if isinstance(exc, TimeoutError):
        return ErrorInfo(ErrorKind.TIMEOUT, "upstream timed out")
    message = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    return ErrorInfo(ErrorKind.MALFORMED, message)
