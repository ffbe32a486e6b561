"""Upstream HTTP: one shared aiohttp client pool, and one call turned into bytes or an error.

Every failure leaves this module as an ``UpstreamError`` carrying a classified
``ir.ErrorInfo``: the router never sees an aiohttp exception.
"""

from __future__ import annotations

import functools
from collections.abc import AsyncIterator

import aiohttp

from hedgerow.config import Timeouts
from hedgerow.ir import ErrorInfo, ErrorKind
from hedgerow.providers.adapter import Adapter
from hedgerow.providers.classify import classify_http

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
    """The one aiohttp session (keep-alive connection pool) all adapters share.

    Created lazily inside the running loop, since an aiohttp session belongs to one loop.
    """

    # No cap by default: every open attempt holds one connection, so a cap would queue calls
    # (5,000 open streams need 5,000 upstream connections); the server's own limits and the
    # route's rate limits bound the calls.
    def __init__(self, limit: int = 0, limit_per_host: int = 0) -> None:
        self._limit = limit
        self._limit_per_host = limit_per_host
        self._session: aiohttp.ClientSession | None = None

    def session(self) -> aiohttp.ClientSession:
        """The shared session, created on first use."""
        session = self._session
        if session is None or session.closed:
            connector = aiohttp.TCPConnector(
                limit=self._limit,
                limit_per_host=self._limit_per_host,
                keepalive_timeout=30.0,
                enable_cleanup_closed=True,
                ttl_dns_cache=300,
            )
            session = aiohttp.ClientSession(
                connector=connector,
                # Timeouts are per attempt (see open_call); the session sets none.
                timeout=aiohttp.ClientTimeout(total=None),
                auto_decompress=True,
                skip_auto_headers=("User-Agent",),
            )
            self._session = session
        return session

    async def close(self) -> None:
        """Close every pooled connection."""
        if self._session is not None and not self._session.closed:
            await self._session.close()
        self._session = None


class UpstreamResponse:
    """A 2xx upstream answer whose body is still to be read."""

    __slots__ = ("_response", "headers", "status")

    def __init__(self, response: aiohttp.ClientResponse) -> None:
        self._response = response
        self.status = response.status
        self.headers = response.headers

    async def read(self) -> bytes:
        """The whole body (bounded by ``MAX_RESPONSE_BYTES``)."""
        try:
            length = self._response.content_length
            if length is not None and length <= MAX_RESPONSE_BYTES:
                return await self._response.read()  # announced and small enough: one read
            chunks: list[bytes] = []
            size = 0
            async for chunk in self._response.content.iter_any():
                size += len(chunk)
                if size > MAX_RESPONSE_BYTES:
                    raise UpstreamError(
                        ErrorInfo(ErrorKind.MALFORMED, "upstream response too large", self.status)
                    )
                chunks.append(chunk)
            return b"".join(chunks)
        except (aiohttp.ClientPayloadError, aiohttp.ServerDisconnectedError) as exc:
            raise UpstreamError(_cut(exc, self.status)) from None
        except aiohttp.ClientError as exc:
            raise UpstreamError(ErrorInfo(ErrorKind.CONNECT, _describe(exc), self.status)) from None
        finally:
            self._response.release()

    async def chunks(self) -> AsyncIterator[bytes]:
        """The body as it arrives. A cut connection raises ``UpstreamError`` (malformed)."""
        try:
            async for chunk in self._response.content.iter_any():
                yield chunk
        except (aiohttp.ClientPayloadError, aiohttp.ServerDisconnectedError) as exc:
            raise UpstreamError(_cut(exc, self.status)) from None
        except aiohttp.ClientError as exc:
            raise UpstreamError(ErrorInfo(ErrorKind.CONNECT, _describe(exc), self.status)) from None
        except TimeoutError:
            raise UpstreamError(
                ErrorInfo(ErrorKind.TIMEOUT, "upstream stream stalled (idle timeout)", self.status)
            ) from None

    def close(self) -> None:
        """Drop the connection (not back to the pool): a cancelled call stops costing."""
        self._response.close()


@functools.lru_cache(maxsize=256)
def _client_timeout(connect: float | None, idle: float | None) -> aiohttp.ClientTimeout:
    """aiohttp's per-call timeout, made once per distinct setting (it is immutable)."""
    return aiohttp.ClientTimeout(total=None, sock_connect=connect, sock_read=idle)


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


def _cut(exc: BaseException, status: int) -> ErrorInfo:
    return ErrorInfo(ErrorKind.MALFORMED, f"upstream stream cut: {_describe(exc)}", status)


async def open_call(
    pool: ClientPool,
    adapter: Adapter,
    url: str,
    body: bytes,
    timeouts: Timeouts,
) -> UpstreamResponse:
    """Send one request and wait for its status line and headers.

    A non-2xx answer is read (bounded), classified, and raised as ``UpstreamError``. The
    ``idle`` timeout becomes aiohttp's per-read timeout, so a stalled stream fails.
    """
    session = pool.session()
    timeout = _client_timeout(timeouts.connect, timeouts.idle)
    try:
        response = await session.post(url, data=body, headers=adapter.headers, timeout=timeout)
    except aiohttp.ServerTimeoutError as exc:
        kind = ErrorKind.CONNECT if "connect" in str(exc).lower() else ErrorKind.TIMEOUT
        raise UpstreamError(ErrorInfo(kind, f"{adapter.name}: {_describe(exc)}")) from None
    except aiohttp.ClientError as exc:
        # Refused, reset before headers, DNS: the request never got an answer.
        raise UpstreamError(
            ErrorInfo(ErrorKind.CONNECT, f"{adapter.name}: {_describe(exc)}")
        ) from None
    except TimeoutError:
        raise UpstreamError(
            ErrorInfo(ErrorKind.TIMEOUT, f"{adapter.name}: no response headers in time")
        ) from None
    if 200 <= response.status < 300:
        return UpstreamResponse(response)
    try:
        raw = await response.content.read(_MAX_ERROR_BODY)
    except (aiohttp.ClientError, TimeoutError):
        raw = b""
    finally:
        response.release()
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
    return ErrorInfo(ErrorKind.MALFORMED, _describe(exc))
