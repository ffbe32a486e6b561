"""What each simulated service says besides the body shapes: ids, headers, error wording,
authentication.

The bodies and stream events themselves come from ``hedgerow.formats`` (one copy of each
dialect); this module adds what those pure converters do not know: the request-id and
rate-limit headers, the usual message and error type of each status, and how each service
checks its API key.
"""

from __future__ import annotations

import hmac
import itertools
import os
import time
from datetime import UTC, datetime
from typing import Any, ClassVar, Literal, Protocol

import msgspec
import orjson

from hedgerow import ir
from hedgerow.formats import anthropic as anthropic_format
from hedgerow.formats import gemini as gemini_format
from hedgerow.formats import openai as openai_format
from hedgerow.formats._common import kind_for_status

__all__ = [
    "AnthropicDialect",
    "Dialect",
    "Encoder",
    "ErrorReply",
    "GeminiDialect",
    "OpenAIDialect",
    "ProviderName",
    "WireFormat",
]

ProviderName = Literal["openai", "anthropic", "gemini"]


class Encoder(Protocol):
    """The part of ``formats.*.StreamEncoder`` the simulator uses."""

    def encode(self, event: ir.StreamEvent) -> bytes:
        """IR event -> whole SSE events."""
        ...


class WireFormat(Protocol):
    """The part of a ``hedgerow.formats`` module the simulator uses (see its docstring)."""

    def parse_request(self, body: dict[str, Any]) -> ir.ChatRequest:
        """Wire -> IR; raises ``FormatError``."""
        ...

    def render_response(self, response: ir.ChatResponse) -> dict[str, Any]:
        """IR -> wire body."""
        ...

    def render_error(self, error: ir.ErrorInfo) -> dict[str, Any]:
        """The error body of the format."""
        ...

    def StreamEncoder(  # a class, called like a factory
        self, *, id: str, model: str, include_usage: bool = False
    ) -> Encoder:
        """A stream encoder."""
        ...


class ErrorReply:
    """An error ready to send: status, JSON body bytes, extra headers, and the IR error (for
    an in-stream event)."""

    __slots__ = ("body", "headers", "info", "status")

    def __init__(
        self, status: int, body: bytes, headers: dict[str, str], info: ir.ErrorInfo
    ) -> None:
        self.status = status
        self.body = body
        self.headers = headers
        self.info = info


def _go_duration(seconds: float) -> str:
    """OpenAI's reset header style: ``1s``, ``6m0s``, ``120ms``."""
    if seconds < 1:
        return f"{round(seconds * 1000)}ms"
    minutes, rest = divmod(round(seconds), 60)
    return f"{minutes}m{rest}s" if minutes else f"{rest}s"


class Dialect:
    """One simulated service. Subclasses fill in the wording and headers."""

    name: ProviderName
    fmt: WireFormat  # the ``hedgerow.formats`` module of this dialect
    id_prefix: str
    tool_id_prefix: str
    request_id_header: str | None
    # status -> (provider error type, usual message)
    errors: ClassVar[dict[int, tuple[str, str]]]
    overload_status: int  # the status of this service's "overloaded" error
    # A stream event whose JSON breaks off (the ``malformed`` fault), and a body that does.
    malformed_event: bytes
    malformed_body: bytes

    def __init__(self) -> None:
        self._tag = os.urandom(4).hex()  # distinct ids across simulator restarts
        self._ids = itertools.count(1)

    def parse(self, body: dict[str, Any], model: str, stream: bool) -> ir.ChatRequest:
        """The request body as IR, with the model and stream flag the endpoint decided."""
        chat = self.fmt.parse_request(body)
        if chat.model != model or chat.stream != stream:
            chat = msgspec.structs.replace(chat, model=model, stream=stream)
        return chat

    def next_ids(self) -> tuple[str, str]:
        """A fresh (request id, response id) pair."""
        n = next(self._ids)
        return f"req_{self._tag}{n:012x}", f"{self.id_prefix}{self._tag}{n:012x}"

    # -- headers ----------------------------------------------------------------------------

    def headers(self, request_id: str) -> dict[str, str]:
        """The headers of a successful answer."""
        headers = self.rate_limit_headers(None)
        if self.request_id_header:
            headers[self.request_id_header] = request_id
        return headers

    def rate_limit_headers(self, retry_after: float | None) -> dict[str, str]:
        """Rate-limit headers; ``retry_after`` set means the limit is exhausted."""
        return {}

    # -- errors -----------------------------------------------------------------------------

    def error(
        self,
        status: int,
        request_id: str,
        *,
        message: str | None = None,
        retry_after: float | None = None,
        should_retry: bool | None = None,
        model: str = "",
        param: str | None = None,
        code: str | None = None,
    ) -> ErrorReply:
        """The service's answer for an error ``status``."""
        kind = kind_for_status(status)
        return self._error(
            status,
            kind,
            request_id,
            message=message,
            retry_after=retry_after,
            should_retry=should_retry,
            model=model,
            param=param,
            code=code,
        )

    def _error(
        self,
        status: int,
        kind: ir.ErrorKind,
        request_id: str,
        *,
        message: str | None,
        retry_after: float | None,
        should_retry: bool | None,
        model: str,
        param: str | None,
        code: str | None,
    ) -> ErrorReply:
        provider_type, usual = self.errors.get(status, self.errors[500])
        text = message if message is not None else usual.format(model=model)
        if retry_after is None and status in (429, 503, 529):
            retry_after = 1.0
        info = ir.ErrorInfo(
            kind=kind,
            message=text,
            status=status,
            provider_type=provider_type,
            retry_after=retry_after,
            param=param,
        )
        body = self.error_body(info, request_id, code=code)
        headers = self.rate_limit_headers(retry_after if status == 429 else None)
        if self.request_id_header:
            headers[self.request_id_header] = request_id
        if retry_after is not None:
            headers["retry-after"] = str(max(0, round(retry_after)))
        if should_retry is not None:
            headers["x-should-retry"] = "true" if should_retry else "false"
        return ErrorReply(status, orjson.dumps(body), headers, info)

    def error_body(
        self, info: ir.ErrorInfo, request_id: str, *, code: str | None = None
    ) -> dict[str, Any]:
        """The error body (the format's shape, with the service's details filled in)."""
        return self.fmt.render_error(info)

    # -- authentication ---------------------------------------------------------------------

    def presented_key(self, headers: Any, query: Any) -> str | None:
        """The API key the request carries, if any (never logged, never stored)."""
        raise NotImplementedError

    def check_key(self, headers: Any, query: Any, required: str | None) -> ErrorReply | None:
        """None when the request may proceed; else the service's authentication error.

        By default any non-empty key is accepted; with ``required`` only that one.
        """
        presented = self.presented_key(headers, query)
        if presented and (
            required is None or hmac.compare_digest(presented.encode(), required.encode())
        ):
            return None
        request_id, _ = self.next_ids()
        return self.auth_error(request_id, missing=not presented)

    def auth_error(self, request_id: str, *, missing: bool) -> ErrorReply:
        """The error for a missing or wrong key."""
        return self.error(401, request_id)

    # -- sizes ------------------------------------------------------------------------------

    def context_error(self, request_id: str, tokens: int, window: int, model: str) -> ErrorReply:
        """The service's answer to a prompt longer than the context window."""
        raise NotImplementedError

    def model_info(self, model: str) -> dict[str, Any]:
        """One entry of the service's model list."""
        raise NotImplementedError

    def models_list(self, models: list[str]) -> dict[str, Any]:
        """The body of the service's model list."""
        raise NotImplementedError


def _bearer(headers: Any) -> str | None:
    value = headers.get("Authorization")
    if value and value[:7].lower() == "bearer ":
        return str(value[7:].strip())
    return None


class OpenAIDialect(Dialect):
    """OpenAI Chat Completions."""

    name: ProviderName = "openai"
    fmt: WireFormat = openai_format
    id_prefix = "chatcmpl-"
    tool_id_prefix = "call_"
    request_id_header = "x-request-id"
    overload_status = 503
    malformed_event = (
        b'data: {"id":"chatcmpl-x","object":"chat.completion.chunk","choices":[{"index":0,'
        b'"delta":{"content":"tru\n\n'
    )
    malformed_body = b'{"id":"chatcmpl-x","object":"chat.completion","choices":[{"index":0,"mess'
    errors: ClassVar[dict[int, tuple[str, str]]] = {
        400: ("invalid_request_error", "Invalid request."),
        401: (
            "invalid_request_error",
            "Incorrect API key provided. You can find your API key at"
            " https://platform.openai.com/account/api-keys.",
        ),
        403: ("invalid_request_error", "You are not allowed to access this resource."),
        404: (
            "invalid_request_error",
            "The model `{model}` does not exist or you do not have access to it.",
        ),
        408: ("timeout", "Request timed out."),
        409: ("invalid_request_error", "Conflict."),
        413: ("invalid_request_error", "Request too large."),
        429: (
            "requests",
            "Rate limit reached for {model} on requests per min (RPM): Limit 10000, Used"
            " 10000, Requested 1. Please try again in 1s.",
        ),
        500: (
            "server_error",
            "The server had an error while processing your request. Sorry about that!",
        ),
        502: ("server_error", "Bad gateway."),
        503: ("server_error", "The server is overloaded or not ready yet."),
        504: ("server_error", "Gateway timeout."),
        529: ("server_error", "The server is overloaded or not ready yet."),
    }
    _codes: ClassVar[dict[int, str]] = {
        401: "invalid_api_key",
        404: "model_not_found",
        429: "rate_limit_exceeded",
    }

    def rate_limit_headers(self, retry_after: float | None) -> dict[str, str]:
        limited = retry_after is not None
        return {
            "x-ratelimit-limit-requests": "10000",
            "x-ratelimit-limit-tokens": "30000000",
            "x-ratelimit-remaining-requests": "0" if limited else "9999",
            "x-ratelimit-remaining-tokens": "29999000",
            "x-ratelimit-reset-requests": "6ms"
            if retry_after is None
            else _go_duration(retry_after),
            "x-ratelimit-reset-tokens": "2ms",
        }

    def error_body(
        self, info: ir.ErrorInfo, request_id: str, *, code: str | None = None
    ) -> dict[str, Any]:
        body = self.fmt.render_error(info)
        error = body.setdefault("error", {})
        error["message"] = info.message
        error["type"] = info.provider_type
        error["param"] = info.param
        error["code"] = (code or None) if code is not None else self._codes.get(info.status)
        return body

    def presented_key(self, headers: Any, query: Any) -> str | None:
        return _bearer(headers)

    def auth_error(self, request_id: str, *, missing: bool) -> ErrorReply:
        if missing:
            message = (
                "You didn't provide an API key. You need to provide your API key in an"
                " Authorization header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY)."
            )
            return self.error(401, request_id, message=message, code="")
        return self.error(401, request_id)

    def context_error(self, request_id: str, tokens: int, window: int, model: str) -> ErrorReply:
        message = (
            f"This model's maximum context length is {window} tokens. However, your messages"
            f" resulted in {tokens} tokens. Please reduce the length of the messages."
        )
        reply = self._error(
            400,
            ir.ErrorKind.CONTEXT_WINDOW,
            request_id,
            message=message,
            retry_after=None,
            should_retry=None,
            model=model,
            param="messages",
            code="context_length_exceeded",
        )
        return reply

    def model_info(self, model: str) -> dict[str, Any]:
        return {"id": model, "object": "model", "created": 1700000000, "owned_by": "hedgerow"}

    def models_list(self, models: list[str]) -> dict[str, Any]:
        return {"object": "list", "data": [self.model_info(m) for m in models]}


def _rfc3339(seconds_from_now: float) -> str:
    moment = datetime.fromtimestamp(time.time() + seconds_from_now, UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


class AnthropicDialect(Dialect):
    """Anthropic Messages."""

    name: ProviderName = "anthropic"
    fmt: WireFormat = anthropic_format
    id_prefix = "msg_"
    tool_id_prefix = "toolu_"
    request_id_header = "request-id"
    overload_status = 529
    malformed_event = (
        b"event: content_block_delta\n"
        b'data: {"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"tru'
        b"\n\n"
    )
    malformed_body = b'{"id":"msg_x","type":"message","role":"assistant","content":[{"ty'
    errors: ClassVar[dict[int, tuple[str, str]]] = {
        400: ("invalid_request_error", "Invalid request."),
        401: ("authentication_error", "invalid x-api-key"),
        402: ("billing_error", "Your credit balance is too low to access the Anthropic API."),
        403: ("permission_error", "Your API key does not have permission to use this resource."),
        404: ("not_found_error", "model: {model}"),
        408: ("timeout_error", "Request timed out."),
        409: ("invalid_request_error", "Conflict."),
        413: ("request_too_large", "Request exceeds the maximum allowed number of bytes."),
        429: (
            "rate_limit_error",
            "This request would exceed the rate limit for your organization of 4,000 requests"
            " per minute. Please reduce the prompt length or the maximum tokens requested, or"
            " try again later.",
        ),
        500: ("api_error", "Internal server error"),
        502: ("api_error", "Bad gateway"),
        503: ("api_error", "Service unavailable"),
        504: ("timeout_error", "Request timed out"),
        529: ("overloaded_error", "Overloaded"),
    }

    def __init__(self) -> None:
        super().__init__()
        self._reset_cache: tuple[int, str] = (0, "")

    def rate_limit_headers(self, retry_after: float | None) -> dict[str, str]:
        limited = retry_after is not None
        if limited:
            reset = _rfc3339(retry_after or 0.0)
        else:
            # One formatted timestamp per wall-clock second is plenty.
            now = int(time.time())
            if self._reset_cache[0] != now:
                self._reset_cache = (now, _rfc3339(1.0))
            reset = self._reset_cache[1]
        return {
            "anthropic-ratelimit-requests-limit": "4000",
            "anthropic-ratelimit-requests-remaining": "0" if limited else "3999",
            "anthropic-ratelimit-requests-reset": reset,
            "anthropic-ratelimit-tokens-limit": "2000000",
            "anthropic-ratelimit-tokens-remaining": "1999000",
            "anthropic-ratelimit-tokens-reset": reset,
            "anthropic-ratelimit-input-tokens-limit": "1600000",
            "anthropic-ratelimit-input-tokens-remaining": "1599000",
            "anthropic-ratelimit-input-tokens-reset": reset,
            "anthropic-ratelimit-output-tokens-limit": "400000",
            "anthropic-ratelimit-output-tokens-remaining": "399000",
            "anthropic-ratelimit-output-tokens-reset": reset,
        }

    def error_body(
        self, info: ir.ErrorInfo, request_id: str, *, code: str | None = None
    ) -> dict[str, Any]:
        body = self.fmt.render_error(info)
        body["type"] = "error"
        error = body.setdefault("error", {})
        error["type"] = info.provider_type
        error["message"] = info.message
        body["request_id"] = request_id
        return body

    def presented_key(self, headers: Any, query: Any) -> str | None:
        key = headers.get("x-api-key")
        return str(key) if key else _bearer(headers)

    def context_error(self, request_id: str, tokens: int, window: int, model: str) -> ErrorReply:
        return self._error(
            400,
            ir.ErrorKind.CONTEXT_WINDOW,
            request_id,
            message=f"prompt is too long: {tokens} tokens > {window} maximum",
            retry_after=None,
            should_retry=None,
            model=model,
            param=None,
            code=None,
        )

    def model_info(self, model: str) -> dict[str, Any]:
        return {
            "type": "model",
            "id": model,
            "display_name": model,
            "created_at": "2026-01-01T00:00:00Z",
        }

    def models_list(self, models: list[str]) -> dict[str, Any]:
        return {
            "data": [self.model_info(m) for m in models],
            "has_more": False,
            "first_id": models[0] if models else None,
            "last_id": models[-1] if models else None,
        }


class GeminiDialect(Dialect):
    """Google Gemini (Generative Language API, v1beta)."""

    name: ProviderName = "gemini"
    fmt: WireFormat = gemini_format
    id_prefix = "resp-"
    tool_id_prefix = "call_"
    request_id_header = None
    overload_status = 503
    malformed_event = b'data: {"candidates":[{"content":{"parts":[{"text":"tru\n\n'
    malformed_body = b'{"candidates":[{"content":{"parts":[{"te'
    errors: ClassVar[dict[int, tuple[str, str]]] = {
        400: ("INVALID_ARGUMENT", "Request contains an invalid argument."),
        401: (
            "UNAUTHENTICATED",
            "Request had invalid authentication credentials.",
        ),
        403: ("PERMISSION_DENIED", "The caller does not have permission"),
        404: (
            "NOT_FOUND",
            "models/{model} is not found for API version v1beta, or is not supported for"
            " generateContent.",
        ),
        408: ("DEADLINE_EXCEEDED", "Request timed out."),
        409: ("ABORTED", "The request was aborted."),
        413: ("INVALID_ARGUMENT", "Request payload size exceeds the limit."),
        429: (
            "RESOURCE_EXHAUSTED",
            "Resource has been exhausted (e.g. check quota).",
        ),
        500: (
            "INTERNAL",
            "An internal error has occurred. Please retry or report in"
            " https://developers.generativeai.google/guide/troubleshooting",
        ),
        502: ("UNAVAILABLE", "Bad gateway."),
        503: ("UNAVAILABLE", "The model is overloaded. Please try again later."),
        504: ("DEADLINE_EXCEEDED", "Deadline exceeded."),
        529: ("UNAVAILABLE", "The model is overloaded. Please try again later."),
    }

    def parse(self, body: dict[str, Any], model: str, stream: bool) -> ir.ChatRequest:
        # Gemini names the model and streaming in the URL; its parser takes them.
        return gemini_format.parse_request(body, model=model, stream=stream)

    def error_body(
        self, info: ir.ErrorInfo, request_id: str, *, code: str | None = None
    ) -> dict[str, Any]:
        body = self.fmt.render_error(info)
        error = body.setdefault("error", {})
        error["code"] = info.status
        error["message"] = info.message
        error["status"] = info.provider_type
        details: list[dict[str, Any]] = []
        if code is not None:
            details.append(
                {
                    "@type": "type.googleapis.com/google.rpc.ErrorInfo",
                    "reason": code,
                    "domain": "googleapis.com",
                    "metadata": {"service": "generativelanguage.googleapis.com"},
                }
            )
        if info.status == 429 and info.retry_after is not None:
            details.append(
                {
                    "@type": "type.googleapis.com/google.rpc.RetryInfo",
                    "retryDelay": f"{max(0, round(info.retry_after))}s",
                }
            )
        if details:
            error["details"] = details
        return body

    def presented_key(self, headers: Any, query: Any) -> str | None:
        key = headers.get("x-goog-api-key") or query.get("key")
        return str(key) if key else None

    def auth_error(self, request_id: str, *, missing: bool) -> ErrorReply:
        if missing:
            message = (
                "Method doesn't allow unregistered callers (callers without established"
                " identity). Please use API Key or other form of API consumer identity to call"
                " this API."
            )
            return self.error(403, request_id, message=message)
        return self.error(
            400,
            request_id,
            message="API key not valid. Please pass a valid API key.",
            code="API_KEY_INVALID",
        )

    def context_error(self, request_id: str, tokens: int, window: int, model: str) -> ErrorReply:
        return self._error(
            400,
            ir.ErrorKind.CONTEXT_WINDOW,
            request_id,
            message=(
                f"The input token count ({tokens}) exceeds the maximum number of tokens"
                f" allowed ({window})."
            ),
            retry_after=None,
            should_retry=None,
            model=model,
            param=None,
            code=None,
        )

    def model_info(self, model: str) -> dict[str, Any]:
        return {
            "name": f"models/{model}",
            "displayName": model,
            "supportedGenerationMethods": [
                "generateContent",
                "streamGenerateContent",
                "countTokens",
            ],
        }

    def models_list(self, models: list[str]) -> dict[str, Any]:
        return {"models": [self.model_info(m) for m in models]}
