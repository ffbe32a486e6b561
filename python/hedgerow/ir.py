"""The neutral shape of requests, responses, stream events and errors.

Every wire format (``hedgerow.formats.*``) converts to and from these types exactly once, so
the router never sees a provider's dialect. The types are msgspec Structs: cheap to build,
cheap to copy, and they encode to JSON without a detour through dicts.

This module imports nothing of hedgerow's own (the bottom of the dependency graph).

Conventions
-----------
* Content block indexes in stream events are a running counter over the *response's* blocks
  (text, thinking and tool calls share one index space, as in Anthropic's stream). Formats
  whose wire index differs (OpenAI numbers tool calls separately) map it in their encoder and
  decoder.
* Tool-call arguments are JSON *text*, exactly as the model produced them: a stream delivers
  them in fragments, and re-serialising would change bytes a client may hash or compare.
* ``Usage`` counts are cumulative: the last value seen in a stream is the total.
"""

from __future__ import annotations

import enum
from typing import Any, Literal

import msgspec

__all__ = [
    "BlockStop",
    "ChatRequest",
    "ChatResponse",
    "ContentPart",
    "ErrorInfo",
    "ErrorKind",
    "FinishReason",
    "ImagePart",
    "Message",
    "MessageEnd",
    "MessageStart",
    "StreamAccumulator",
    "StreamError",
    "StreamEvent",
    "TextDelta",
    "TextPart",
    "ThinkingDelta",
    "ThinkingPart",
    "Tool",
    "ToolCallDelta",
    "ToolCallPart",
    "ToolCallStart",
    "ToolChoice",
    "ToolResultPart",
    "Usage",
    "is_content",
]


# ---------------------------------------------------------------------------------------------
# Content


class TextPart(msgspec.Struct, tag="text"):
    """Plain text."""

    text: str


class ImagePart(msgspec.Struct, tag="image"):
    """An image, inline (base64 ``data`` with its ``media_type``) or by ``url``."""

    media_type: str | None = None
    data: str | None = None
    url: str | None = None


class ThinkingPart(msgspec.Struct, tag="thinking"):
    """Model reasoning shown to the client (Anthropic ``thinking`` blocks)."""

    text: str
    signature: str | None = None


class ToolCallPart(msgspec.Struct, tag="tool_call"):
    """A call the model asks the client to make. ``arguments`` is JSON text."""

    id: str
    name: str
    arguments: str


class ToolResultPart(msgspec.Struct, tag="tool_result"):
    """The client's answer to a tool call.

    ``name`` is the called tool's name when the wire format carries it (Gemini's
    ``functionResponse`` needs it; formats that lack it recover it from the matching call).
    """

    tool_call_id: str
    content: list[TextPart | ImagePart]
    is_error: bool = False
    name: str | None = None


ContentPart = TextPart | ImagePart | ThinkingPart | ToolCallPart | ToolResultPart

Role = Literal["user", "assistant"]


class Message(msgspec.Struct):
    """One turn. System prompts live on ``ChatRequest.system``; tool results are user turns."""

    role: Role
    content: list[ContentPart]


class Tool(msgspec.Struct):
    """A function the model may call; ``parameters`` is a JSON Schema object."""

    name: str
    description: str | None = None
    parameters: dict[str, Any] = msgspec.field(default_factory=dict)


class ToolChoice(msgspec.Struct):
    """``auto`` (model decides), ``required`` (some tool), ``none``, or ``tool`` (``name``)."""

    mode: Literal["auto", "required", "none", "tool"]
    name: str | None = None


class ChatRequest(msgspec.Struct):
    """A chat request in no provider's dialect.

    Optional fields stay ``None`` when the client did not send them, so that a renderer never
    adds a field the client did not ask for (an empty ``tools: []`` breaks some servers).
    """

    model: str
    messages: list[Message]
    system: str | None = None
    max_tokens: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    top_k: int | None = None
    stop: list[str] | None = None
    tools: list[Tool] | None = None
    tool_choice: ToolChoice | None = None
    parallel_tool_calls: bool | None = None
    stream: bool = False
    include_usage: bool = False
    user: str | None = None


FinishReason = Literal[
    "stop",  # natural end (OpenAI stop, Anthropic end_turn, Gemini STOP)
    "length",  # max tokens reached
    "tool_calls",  # the model wants tool results
    "stop_sequence",  # a client stop sequence matched
    "content_filter",  # refused or filtered
    "context_window",  # the model ran out of context window
    "other",
]


class Usage(msgspec.Struct):
    """Token counts. ``input_tokens`` excludes cached reads, as in Anthropic's usage."""

    input_tokens: int = 0
    output_tokens: int = 0
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0
    reasoning_tokens: int = 0


class ChatResponse(msgspec.Struct):
    """A whole (non-streamed, or accumulated) response."""

    id: str
    model: str
    content: list[ContentPart]
    finish_reason: FinishReason
    usage: Usage
    stop_sequence: str | None = None


# ---------------------------------------------------------------------------------------------
# Errors


class ErrorKind(enum.StrEnum):
    """The one failure vocabulary every provider adapter classifies into.

    The router decides failover, retry and breaker accounting from this alone.
    """

    CONNECT = "connect_error"
    TIMEOUT = "timeout"
    REQUEST_TIMEOUT = "request_timeout"  # HTTP 408
    CONFLICT = "conflict"  # HTTP 409
    RATE_LIMITED = "rate_limited"  # HTTP 429
    SERVER_ERROR = "server_error"  # HTTP 500 (and other 5xx not named below)
    BAD_GATEWAY = "bad_gateway"  # HTTP 502
    UNAVAILABLE = "unavailable"  # HTTP 503
    GATEWAY_TIMEOUT = "gateway_timeout"  # HTTP 504
    OVERLOADED = "overloaded"  # HTTP 529 (Anthropic)
    STREAM_ERROR = "stream_error"  # an error event inside a 200 stream
    CONTEXT_WINDOW = "context_window_exceeded"
    AUTH = "auth_error"  # 401 / 403 (and Gemini's API_KEY_INVALID 400)
    BAD_REQUEST = "bad_request"  # any other 4xx: the client's fault
    MALFORMED = "malformed_response"  # garbage, a cut stream, a missing terminal event


class ErrorInfo(msgspec.Struct):
    """A classified failure.

    ``status`` is the HTTP status seen (0 when there was no response); ``provider_type`` is
    the provider's own error type string when it sent one (``overloaded_error``);
    ``retry_after`` is in seconds, parsed from Retry-After / retry-after-ms / reset headers.
    """

    kind: ErrorKind
    message: str
    status: int = 0
    provider_type: str | None = None
    retry_after: float | None = None
    param: str | None = None


# ---------------------------------------------------------------------------------------------
# Stream events


class MessageStart(msgspec.Struct, tag="message_start"):
    """The response has begun; ``usage`` holds the input tokens when the provider says."""

    id: str
    model: str
    usage: Usage = msgspec.field(default_factory=Usage)


class TextDelta(msgspec.Struct, tag="text_delta"):
    """A piece of text of block ``index`` (the block starts at its first delta)."""

    index: int
    text: str


class ThinkingDelta(msgspec.Struct, tag="thinking_delta"):
    """A piece of reasoning of block ``index``; ``signature`` arrives once, at its end."""

    index: int
    text: str = ""
    signature: str | None = None


class ToolCallStart(msgspec.Struct, tag="tool_call_start"):
    """A tool call begins as block ``index``."""

    index: int
    id: str
    name: str


class ToolCallDelta(msgspec.Struct, tag="tool_call_delta"):
    """A fragment of the JSON text of the arguments of the tool call at block ``index``."""

    index: int
    arguments: str


class BlockStop(msgspec.Struct, tag="block_stop"):
    """Block ``index`` is complete."""

    index: int


class MessageEnd(msgspec.Struct, tag="message_end"):
    """The terminal event of a successful stream, with the final (cumulative) usage."""

    finish_reason: FinishReason
    usage: Usage = msgspec.field(default_factory=Usage)
    stop_sequence: str | None = None


class StreamError(msgspec.Struct, tag="error"):
    """The stream failed (an in-stream error event, a cut, garbage)."""

    error: ErrorInfo


StreamEvent = (
    MessageStart
    | TextDelta
    | ThinkingDelta
    | ToolCallStart
    | ToolCallDelta
    | BlockStop
    | MessageEnd
    | StreamError
)


def is_content(event: StreamEvent) -> bool:
    """True for the events that commit a response: real text, reasoning or a tool call.

    Everything before the first such event (``message_start``, pings, a role-only delta) can
    be held back, so a failure before it fails over invisibly.
    """
    if isinstance(event, TextDelta):
        return bool(event.text)
    if isinstance(event, ThinkingDelta):
        return bool(event.text) or event.signature is not None
    return isinstance(event, ToolCallStart | ToolCallDelta)


class StreamAccumulator:
    """Folds stream events into a ``ChatResponse`` (a streamed upstream, a whole answer).

    ``feed`` every event, then ``result()``. ``result`` raises ``ValueError`` when the stream
    never ended with ``MessageEnd``: a stream without its terminal event is not a response.
    """

    __slots__ = ("_blocks", "_end", "_id", "_model", "_usage", "error")

    def __init__(self) -> None:
        self._id = ""
        self._model = ""
        self._usage = Usage()
        self._blocks: dict[int, list[Any]] = {}
        self._end: MessageEnd | None = None
        self.error: ErrorInfo | None = None

    def feed(self, event: StreamEvent) -> None:
        """Take one event."""
        if isinstance(event, TextDelta):
            self._blocks.setdefault(event.index, ["text", []])[1].append(event.text)
        elif isinstance(event, ThinkingDelta):
            block = self._blocks.setdefault(event.index, ["thinking", [], None])
            block[1].append(event.text)
            if event.signature is not None:
                block[2] = event.signature
        elif isinstance(event, ToolCallStart):
            self._blocks[event.index] = ["tool", event.id, event.name, []]
        elif isinstance(event, ToolCallDelta):
            tool = self._blocks.get(event.index)
            if tool is None or tool[0] != "tool":
                raise ValueError(f"tool-call fragment for unknown block {event.index}")
            tool[3].append(event.arguments)
        elif isinstance(event, MessageStart):
            self._id = event.id
            self._model = event.model
            self._usage = _merge_usage(self._usage, event.usage)
        elif isinstance(event, MessageEnd):
            self._end = event
            self._usage = _merge_usage(self._usage, event.usage)
        elif isinstance(event, StreamError):
            self.error = event.error

    @property
    def finished(self) -> bool:
        """Whether the terminal ``MessageEnd`` arrived."""
        return self._end is not None

    def result(self) -> ChatResponse:
        """The accumulated response; ``ValueError`` if the stream did not finish."""
        if self._end is None:
            raise ValueError("stream ended without its terminal event")
        content: list[ContentPart] = []
        for index in sorted(self._blocks):
            block = self._blocks[index]
            if block[0] == "text":
                content.append(TextPart("".join(block[1])))
            elif block[0] == "thinking":
                content.append(ThinkingPart("".join(block[1]), block[2]))
            else:
                content.append(ToolCallPart(block[1], block[2], "".join(block[3]) or "{}"))
        return ChatResponse(
            id=self._id,
            model=self._model,
            content=content,
            finish_reason=self._end.finish_reason,
            usage=self._usage,
            stop_sequence=self._end.stop_sequence,
        )


def _merge_usage(old: Usage, new: Usage) -> Usage:
    """Cumulative counts: a later non-zero figure replaces an earlier one."""
    return Usage(
        input_tokens=new.input_tokens or old.input_tokens,
        output_tokens=new.output_tokens or old.output_tokens,
        cache_read_tokens=new.cache_read_tokens or old.cache_read_tokens,
        cache_write_tokens=new.cache_write_tokens or old.cache_write_tokens,
        reasoning_tokens=new.reasoning_tokens or old.reasoning_tokens,
    )
