"""Helpers shared by the wire-format modules: one copy of each piece of logic.

* ``FormatError`` and the field readers that raise it with the offending field's dotted path;
* tool-call argument and JSON helpers (IR arguments are JSON *text*);
* the system-prompt join rule, tool-name recovery, usage merging;
* the error-body helpers every format's ``parse_error`` shares.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any, NoReturn

import orjson

from hedgerow import ir
from hedgerow.ir import _merge_usage

__all__ = [
    "SYSTEM_JOINER",
    "FormatError",
    "as_dict",
    "as_list",
    "as_str",
    "classify",
    "decode_arguments",
    "dump_json",
    "error_fields",
    "excerpt",
    "fail",
    "int_or_zero",
    "is_context_overflow",
    "join_system",
    "kept_client_status",
    "kind_for_status",
    "load_error_body",
    "merge_usage",
    "opt_bool",
    "opt_dict",
    "opt_int",
    "opt_list",
    "opt_num",
    "opt_str",
    "parse_error_body",
    "req_dict",
    "req_int",
    "req_list",
    "req_str",
    "str_or_empty",
    "str_or_none",
    "synth_call_id",
    "tool_call_names",
]


class FormatError(ValueError):
    """A body that does not fit its wire format.

    ``param`` names the offending field (dotted path, ``messages.0.content``) when known, so
    the client's 400 says exactly what to fix.
    """

    def __init__(self, message: str, param: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.param = param


# ---------------------------------------------------------------------------------------------
# Field readers. The path of a field is built only when it is wrong (the common case pays
# nothing). Messages follow one style, ``<path>: <problem>``, the style of Anthropic's 400s
# (whose ``max_tokens: Field required`` clients may match on).


def _path(prefix: str, key: str) -> str:
    return f"{prefix}.{key}" if prefix else key


def fail(param: str, problem: str) -> NoReturn:
    """Raise ``FormatError`` for field ``param`` (``<param>: <problem>``)."""
    raise FormatError(f"{param}: {problem}", param)


def as_dict(value: Any, param: str) -> dict[str, Any]:
    """``value`` if it is a JSON object, else ``FormatError`` naming ``param``."""
    if type(value) is not dict:
        fail(param, "Input should be a valid dictionary")
    return value


def as_list(value: Any, param: str) -> list[Any]:
    """``value`` if it is a JSON array, else ``FormatError`` naming ``param``."""
    if type(value) is not list:
        fail(param, "Input should be a valid list")
    return value


def as_str(value: Any, param: str) -> str:
    """``value`` if it is a string, else ``FormatError`` naming ``param``."""
    if type(value) is not str:
        fail(param, "Input should be a valid string")
    return value


def req_str(obj: dict[str, Any], key: str, prefix: str = "") -> str:
    """A required string field."""
    value = obj.get(key)
    if value is None:
        fail(_path(prefix, key), "Field required")
    if type(value) is not str:
        fail(_path(prefix, key), "Input should be a valid string")
    return value


def opt_str(obj: dict[str, Any], key: str, prefix: str = "") -> str | None:
    """An optional string field (absent or ``null`` gives ``None``)."""
    value = obj.get(key)
    if value is None or type(value) is str:
        return value
    fail(_path(prefix, key), "Input should be a valid string")


def req_int(obj: dict[str, Any], key: str, prefix: str = "") -> int:
    """A required integer field (a JSON boolean is not an integer; ``2.0`` is)."""
    value = opt_int(obj, key, prefix)
    if value is None:
        fail(_path(prefix, key), "Field required")
    return value


def opt_int(obj: dict[str, Any], key: str, prefix: str = "") -> int | None:
    """An optional integer field."""
    value = obj.get(key)
    if value is None or type(value) is int:
        return value
    if type(value) is float and value.is_integer():
        return int(value)
    fail(_path(prefix, key), "Input should be a valid integer")


def opt_num(obj: dict[str, Any], key: str, prefix: str = "") -> float | None:
    """An optional number field."""
    value = obj.get(key)
    if value is None or type(value) is float:
        return value
    if type(value) is int:
        return float(value)
    fail(_path(prefix, key), "Input should be a valid number")


def opt_bool(obj: dict[str, Any], key: str, prefix: str = "") -> bool | None:
    """An optional boolean field."""
    value = obj.get(key)
    if value is None or type(value) is bool:
        return value
    fail(_path(prefix, key), "Input should be a valid boolean")


def req_list(obj: dict[str, Any], key: str, prefix: str = "") -> list[Any]:
    """A required array field."""
    value = obj.get(key)
    if value is None:
        fail(_path(prefix, key), "Field required")
    return as_list(value, _path(prefix, key))


def opt_list(obj: dict[str, Any], key: str, prefix: str = "") -> list[Any] | None:
    """An optional array field."""
    value = obj.get(key)
    if value is None:
        return None
    return as_list(value, _path(prefix, key))


def req_dict(obj: dict[str, Any], key: str, prefix: str = "") -> dict[str, Any]:
    """A required object field."""
    value = obj.get(key)
    if value is None:
        fail(_path(prefix, key), "Field required")
    return as_dict(value, _path(prefix, key))


def opt_dict(obj: dict[str, Any], key: str, prefix: str = "") -> dict[str, Any] | None:
    """An optional object field."""
    value = obj.get(key)
    if value is None:
        return None
    return as_dict(value, _path(prefix, key))


def int_or_zero(value: Any) -> int:
    """A count from an upstream body, leniently: anything but an integer reads as 0 (usage
    figures are informative; a malformed one must not fail a good answer)."""
    return value if type(value) is int else 0


def str_or_empty(value: Any) -> str:
    """A string from an upstream body, leniently: anything else reads as ``""``."""
    return value if type(value) is str else ""


def str_or_none(value: Any) -> str | None:
    """A non-empty string from an upstream body, or ``None``."""
    return value if type(value) is str and value else None


# ---------------------------------------------------------------------------------------------
# JSON and tool calls


def dump_json(value: Any) -> str:
    """Compact JSON text (what the IR stores as tool-call arguments)."""
    return json_bytes(value).decode()


def decode_arguments(arguments: str, param: str) -> dict[str, Any]:
    """IR tool-call arguments (JSON text) as the object Anthropic ``input`` / Gemini ``args``
    need. Empty text means no arguments; anything but a JSON object is a ``FormatError``."""
    if not arguments or arguments.isspace():
        return {}
    try:
        value = orjson.loads(arguments)
    except orjson.JSONDecodeError:
        fail(param, "tool call arguments are not valid JSON")
    if type(value) is not dict:
        fail(param, "tool call arguments are not a JSON object")
    return value


def synth_call_id(*parts: object) -> str:
    """A deterministic tool-call id for formats that carry none (Gemini).

    Hashing the caller's seed (response id, position, name, arguments) keeps ids stable for
    the same input and distinct between calls, including across turns of one conversation.
    """
    digest = hashlib.blake2b("\x1f".join(map(str, parts)).encode(), digest_size=12).hexdigest()
    return "call_" + digest


def tool_call_names(messages: list[ir.Message]) -> dict[str, str]:
    """Tool-call id -> tool name over a conversation, to name tool results whose wire format
    does not carry the name (OpenAI, Anthropic) for a format that needs it (Gemini)."""
    names: dict[str, str] = {}
    for message in messages:
        for part in message.content:
            if type(part) is ir.ToolCallPart:
                names[part.id] = part.name
    return names


# Several system prompt pieces (OpenAI system/developer messages, Anthropic system blocks,
# Gemini systemInstruction parts) become one IR string; a blank line keeps them apart for
# the model in every target format.
SYSTEM_JOINER = "\n\n"


def join_system(pieces: list[str]) -> str | None:
    """The IR system prompt from its pieces (``None`` when there are none)."""
    if not pieces:
        return None
    return pieces[0] if len(pieces) == 1 else SYSTEM_JOINER.join(pieces)


def merge_usage(old: ir.Usage, new: ir.Usage) -> ir.Usage:
    """Cumulative usage: a later non-zero count replaces an earlier one (the IR's own rule,
    shared rather than copied)."""
    return _merge_usage(old, new)


# ---------------------------------------------------------------------------------------------
# Errors


def excerpt(body: bytes, limit: int = 500) -> str:
    """A printable excerpt of an undecodable body, for the error message."""
    text = body[: limit * 4].decode("utf-8", "replace").strip()
    return text if len(text) <= limit else text[:limit] + "…"


def load_error_body(status: int, body: bytes) -> tuple[Any, str]:
    """The decoded JSON of an error body (``None`` if it is not JSON) and a fallback message
    (an excerpt, or ``HTTP <status>`` for an empty body)."""
    fallback = excerpt(body) if body else ""
    if not fallback:
        fallback = f"HTTP {status}"
    try:
        return orjson.loads(body), fallback
    except (orjson.JSONDecodeError, TypeError):
        return None, fallback


def error_fields(doc: Any) -> tuple[str | None, str | None]:
    """The (type, message) of a decoded error document in any dialect we meet upstream.

    Shapes: ``{"error": {...}}`` (OpenAI, Anthropic inside ``type: error``, Gemini, vLLM),
    ``{"error": "text"}`` (Ollama), flat ``{"object": "error", "type", "message"}`` (older
    vLLM), ``{"detail": "text"}`` (FastAPI servers), and a one-element list around any of
    them (Gemini without ``alt=sse``). The type is the most specific string offered: an
    OpenAI ``code`` (``context_length_exceeded``, ``insufficient_quota``), else a Gemini
    ``status`` (``RESOURCE_EXHAUSTED``), else ``type``.
    """
    if type(doc) is list and doc:
        doc = doc[0]
    if type(doc) is not dict:
        return None, None
    inner = doc.get("error")
    if type(inner) is str:
        return None, inner
    obj = inner if type(inner) is dict else doc
    kind: str | None = None
    for key in ("code", "status", "type"):
        value = obj.get(key)
        if type(value) is str and value and value != "error":
            kind = value
            break
    message = obj.get("message")
    if type(message) is not str:
        message = obj.get("detail") if type(obj.get("detail")) is str else None
    return kind, message


def parse_error_body(status: int, body: bytes) -> tuple[str | None, str]:
    """Every format's ``parse_error``: the provider's error type and message; never raises."""
    try:
        doc, fallback = load_error_body(status, body)
        kind, message = error_fields(doc)
        return kind, message or fallback
    except Exception:  # the contract is "never raises": garbage of any shape gives an excerpt
        return None, f"HTTP {status}"


# Providers signal a context overflow with a plain 400; only the message tells it apart.
_CONTEXT_MARKERS = (
    "prompt is too long",  # Anthropic
    "maximum context length",  # OpenAI, vLLM
    "context_length_exceeded",
    "exceeds the maximum number of tokens",  # Gemini
    "exceeds the available context size",  # llama.cpp
    "context window",
)


def is_context_overflow(message: str) -> bool:
    """Whether an error message says the prompt did not fit the model's context window."""
    lowered = message.lower()
    return any(marker in lowered for marker in _CONTEXT_MARKERS)


_KIND_BY_HTTP_STATUS = {
    400: ir.ErrorKind.BAD_REQUEST,
    401: ir.ErrorKind.AUTH,
    403: ir.ErrorKind.AUTH,
    408: ir.ErrorKind.REQUEST_TIMEOUT,
    409: ir.ErrorKind.CONFLICT,
    429: ir.ErrorKind.RATE_LIMITED,
    500: ir.ErrorKind.SERVER_ERROR,
    502: ir.ErrorKind.BAD_GATEWAY,
    503: ir.ErrorKind.UNAVAILABLE,
    504: ir.ErrorKind.GATEWAY_TIMEOUT,
    529: ir.ErrorKind.OVERLOADED,
}


def kind_for_status(status: int) -> ir.ErrorKind:
    """The error kind an HTTP status alone implies (used for in-stream errors that carry a
    numeric code but no type the format's table knows)."""
    kind = _KIND_BY_HTTP_STATUS.get(status)
    if kind is not None:
        return kind
    if 400 <= status < 500:
        return ir.ErrorKind.BAD_REQUEST
    if status >= 500:
        return ir.ErrorKind.SERVER_ERROR
    return ir.ErrorKind.STREAM_ERROR


# A 400 that is really a bad key (Gemini answers an invalid API key with 400 INVALID_ARGUMENT).
_AUTH_MARKERS = ("api key not valid", "api_key_invalid")


def classify(
    status: int, error_type: str | None, message: str, by_type: dict[str, ir.ErrorKind]
) -> ir.ErrorKind:
    """Every format's ``classify_error``, given the format's table of error types.

    An error HTTP status decides (it is the most precise signal, 529 included), except where
    the type says more: an account problem (AUTH: quota, billing) or a context overflow.
    Inside a 200 stream only the type can tell (unknown: STREAM_ERROR). A client error whose
    message says the key is invalid is AUTH; one that says the prompt is too long,
    CONTEXT_WINDOW.
    """
    typed = by_type.get(error_type or "")
    if status >= 400:
        kind = kind_for_status(status)
        if typed is ir.ErrorKind.AUTH or typed is ir.ErrorKind.CONTEXT_WINDOW:
            kind = typed
    else:
        kind = typed or ir.ErrorKind.STREAM_ERROR
    if kind is ir.ErrorKind.BAD_REQUEST or kind is ir.ErrorKind.STREAM_ERROR:
        lowered = message.lower()
        if any(marker in lowered for marker in _AUTH_MARKERS):
            return ir.ErrorKind.AUTH
        if is_context_overflow(message):
            return ir.ErrorKind.CONTEXT_WINDOW
    return kind


def kept_client_status(error: ir.ErrorInfo) -> int | None:
    """The specific 4xx an error keeps when rendered for a client, if any: a ``BAD_REQUEST``
    keeps the 4xx it carries (404, 413, 422, ...), an ``AUTH`` error a 403. Every other kind
    has one fixed status per format."""
    if error.kind is ir.ErrorKind.BAD_REQUEST and 400 <= error.status < 500:
        return error.status
    if error.kind is ir.ErrorKind.AUTH and error.status == 403:
        return 403
    return None


def json_bytes(value: Any) -> bytes:
    """JSON bytes of ``value``: orjson, or the standard library for what orjson refuses
    (integers beyond 64 bits, which JSON allows and a client may send in a schema)."""
    try:
        return orjson.dumps(value)
    except TypeError:
        return json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode()
