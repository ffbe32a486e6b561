"""Every failure class the router acts on, from each provider's way of saying it."""

from __future__ import annotations

import pytest

from hedgerow.formats import anthropic, gemini, openai
from hedgerow.ir import ErrorKind
from hedgerow.providers.classify import classify_http, parse_retry_after


@pytest.mark.parametrize(
    ("status", "provider_type", "message", "kind"),
    [
        (408, None, "timeout", ErrorKind.REQUEST_TIMEOUT),
        (409, None, "conflict", ErrorKind.CONFLICT),
        (429, "rate_limit_error", "slow down", ErrorKind.RATE_LIMITED),
        (429, "RESOURCE_EXHAUSTED", "quota", ErrorKind.RATE_LIMITED),
        (500, "api_error", "Internal server error", ErrorKind.SERVER_ERROR),
        (502, None, "bad gateway", ErrorKind.BAD_GATEWAY),
        (503, "UNAVAILABLE", "overloaded", ErrorKind.UNAVAILABLE),
        (504, "timeout_error", "slow", ErrorKind.GATEWAY_TIMEOUT),
        (529, "overloaded_error", "Overloaded", ErrorKind.OVERLOADED),
        (401, "authentication_error", "invalid x-api-key", ErrorKind.AUTH),
        (403, "permission_error", "no", ErrorKind.AUTH),
        (400, "INVALID_ARGUMENT", "API key not valid. reason: API_KEY_INVALID", ErrorKind.AUTH),
        (
            400,
            "invalid_request_error",
            "prompt is too long: 208656 tokens > 200000 maximum",
            ErrorKind.CONTEXT_WINDOW,
        ),
        (
            400,
            "invalid_request_error",
            "This model's maximum context length is 128000 tokens.",
            ErrorKind.CONTEXT_WINDOW,
        ),
        (400, "context_length_exceeded", "too long", ErrorKind.CONTEXT_WINDOW),
        (400, "invalid_request_error", "max_tokens: Field required", ErrorKind.BAD_REQUEST),
        (404, "not_found_error", "model not found", ErrorKind.BAD_REQUEST),
        (418, None, "teapot", ErrorKind.BAD_REQUEST),
        (599, None, "odd", ErrorKind.SERVER_ERROR),
    ],
)
def test_classification(
    status: int, provider_type: str | None, message: str, kind: ErrorKind
) -> None:
    # Every dialect agrees on these; each format keeps its own table of type names.
    fmt = gemini if provider_type and provider_type.isupper() else anthropic
    if provider_type in ("context_length_exceeded", "invalid_api_key", "rate_limit_exceeded"):
        fmt = openai
    info = classify_http(status, {}, provider_type, message, fmt.classify_error)
    assert info.kind is kind
    assert info.status == status
    assert info.message == message


def test_retry_after_precedence_and_forms() -> None:
    assert parse_retry_after({"retry-after-ms": "1500", "retry-after": "9"}) == 1.5
    assert parse_retry_after({"retry-after": "7"}) == 7.0
    assert (
        parse_retry_after({"retry-after": "Wed, 21 Oct 2015 07:28:10 GMT"}, now=1445412480.0)
        == 10.0
    )
    assert (
        parse_retry_after(
            {"x-ratelimit-reset-requests": "6m0s", "x-ratelimit-reset-tokens": "1.5s"}
        )
        == 1.5
    )
    assert parse_retry_after({"x-ratelimit-reset-tokens": "12ms"}) == pytest.approx(0.012)
    assert (
        parse_retry_after(
            {"anthropic-ratelimit-requests-reset": "2026-06-05T15:00:30Z"}, now=1780671600.0
        )
        == 30.0
    )
    assert parse_retry_after({"retry-after": "soon"}) is None
    assert parse_retry_after({"x-ratelimit-reset-requests": "6 minutes"}) is None
    assert parse_retry_after({}) is None


def test_rate_limit_carries_retry_after() -> None:
    info = classify_http(
        429, {"retry-after": "3"}, "rate_limit_error", "x", anthropic.classify_error
    )
    assert info.retry_after == 3.0
