"""Wire formats: one module per provider dialect, each converting both directions.

Pure conversion, no I/O; these modules import only ``hedgerow.ir`` (and each other's shared
helpers in ``formats/_common.py`` and ``formats/sse.py``).

Every format module (``openai``, ``anthropic``, ``gemini``) offers the same surface, so the
server (speaking to clients), the provider adapters (speaking to upstreams) and the simulator
(pretending to be an upstream) all share one copy of each dialect:

Requests
    ``parse_request(body: dict) -> ir.ChatRequest``
        Wire -> IR. Raises ``FormatError`` (naming the bad field in ``param``) on input the
        real service would reject with a 400: missing required fields, wrong types.
    ``render_request(request: ir.ChatRequest, model: str) -> dict``
        IR -> wire, for ``model`` (the provider's model id). Never adds a field the IR left
        at ``None``.

Responses
    ``parse_response(body: dict) -> ir.ChatResponse``
        Raises ``FormatError`` when the body is not a valid response (malformed upstream).
    ``render_response(response: ir.ChatResponse) -> dict``

Streams
    ``StreamDecoder()`` with ``feed(chunk: bytes) -> list[ir.StreamEvent]`` and
    ``close() -> list[ir.StreamEvent]``: bytes off the wire -> IR events, incremental (chunks
    split anywhere). An in-stream error becomes ``ir.StreamError``; ``close()`` on a stream
    that never sent its terminal event yields a ``StreamError`` of kind ``MALFORMED``, as does
    undecodable data.
    ``StreamEncoder(*, id: str, model: str, include_usage: bool = False)`` with
    ``encode(event: ir.StreamEvent) -> bytes``: IR events -> wire bytes (whole SSE events).
    Feeding it a ``StreamError`` writes the format's in-stream error event.

Errors
    ``render_error(error: ir.ErrorInfo) -> dict``: the error body a client of this format
    expects (OpenAI ``{"error": {...}}``, Anthropic ``{"type": "error", "error": {...}}``,
    Gemini ``{"error": {"code", "message", "status"}}``).
    ``error_status(error: ir.ErrorInfo) -> int``: the HTTP status to send it with.
    ``parse_error(status: int, body: bytes) -> tuple[str | None, str]``: the provider's error
    type and message from an error body (never raises; garbage gives ``(None, <excerpt>)``).

Each module also has ``NAME`` (``"openai"``, ``"anthropic"``, ``"gemini"``).
"""

from __future__ import annotations

from hedgerow.formats._common import FormatError

__all__ = ["FormatError"]
