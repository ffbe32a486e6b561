"""One upstream provider: its wire format, its URLs, its auth headers.

An ``Adapter`` is built once per configured provider; everything that can be prepared ahead
(header dicts, URL prefixes, the format module) is, so a request only fills in the body.
"""

from __future__ import annotations

from types import ModuleType
from typing import Any

import msgspec

from hedgerow import ir
from hedgerow.config import ProviderConfig
from hedgerow.formats import anthropic as anthropic_format
from hedgerow.formats import gemini as gemini_format
from hedgerow.formats import openai as openai_format
from hedgerow.formats._common import json_bytes
from hedgerow.providers.http1 import header_block

__all__ = ["Adapter", "format_module"]

_FORMATS: dict[str, ModuleType] = {
    "anthropic": anthropic_format,
    "openai": openai_format,
    "openai_compatible": openai_format,
    "gemini": gemini_format,
}


def format_module(kind: str) -> ModuleType:
    """The ``hedgerow.formats`` module a provider kind speaks."""
    return _FORMATS[kind]


class Adapter:
    """How to call one provider (``name`` as in the config)."""

    __slots__ = (
        "_base",
        "_max_tokens_field",
        "config",
        "fmt",
        "header_block",
        "kind",
        "name",
        "wire_format",
    )

    def __init__(self, name: str, config: ProviderConfig) -> None:
        self.name = name
        self.config = config
        self.kind = config.kind
        self.fmt = format_module(config.kind)
        # The client-facing format this provider shares bytes with (for the passthrough path).
        self.wire_format: str = self.fmt.NAME
        self._base = config.resolved_base_url
        key = config.api_key.reveal() if config.api_key else ""
        headers = {"content-type": "application/json", "accept": "application/json"}
        if self.kind == "anthropic":
            headers["anthropic-version"] = config.anthropic_version
            if key:
                headers["x-api-key"] = key
        elif self.kind == "gemini":
            # The header, never ?key=: a query string ends up in access logs.
            if key:
                headers["x-goog-api-key"] = key
        elif key:
            headers["authorization"] = f"Bearer {key}"
        headers.update({k.lower(): v for k, v in config.headers.items()})
        # The request headers (auth included) as wire bytes, prepared once for the HTTP/1.1
        # client and shared by every call.
        self.header_block = header_block(headers)
        self._max_tokens_field = config.max_tokens_field or (
            "max_tokens" if self.kind == "openai_compatible" else "max_completion_tokens"
        )

    def url(self, model: str, stream: bool) -> str:
        """The endpoint for a chat request to ``model``."""
        if self.kind == "anthropic":
            return f"{self._base}/v1/messages"
        if self.kind == "gemini":
            base = self._base if self._base.endswith("/v1beta") else f"{self._base}/v1beta"
            if stream:
                return f"{base}/models/{model}:streamGenerateContent?alt=sse"
            return f"{base}/models/{model}:generateContent"
        return f"{self._base}/chat/completions"

    def render_body(self, request: ir.ChatRequest, model: str, stream: bool) -> bytes:
        """The upstream request body for ``request`` sent to ``model``."""
        if request.stream != stream:
            request = msgspec.structs.replace(request, stream=stream)
        if self.fmt is openai_format:
            body: dict[str, Any] = openai_format.render_request(
                request, model, max_tokens_field=self._max_tokens_field
            )
        else:
            body = self.fmt.render_request(request, model)
        return json_bytes(body)

    def passthrough_body(self, raw: dict[str, Any], model: str) -> bytes:
        """The client's own body with only the model replaced (formats match: no rewrite)."""
        if raw.get("model") != model:
            raw = {**raw, "model": model}
        return json_bytes(raw)
