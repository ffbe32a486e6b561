"""Server-sent events: an incremental parser (bytes in, events out), the encoder helpers, and
``SSEStreamDecoder``, the skeleton of every format's stream decoder (all three dialects are
SSE-framed).

The parser follows the WHATWG event-stream rules that matter to LLM streams: ``event:`` and
``data:`` fields (several ``data:`` lines join with ``\\n``), ``:`` comment lines ignored, any
of ``\\r\\n``, ``\\n`` and ``\\r`` ending a line, one optional space after the colon stripped,
and a leading byte-order mark dropped. Chunks may be split anywhere, including inside a UTF-8
sequence or between ``\\r`` and ``\\n``.

It is on the hot path of every streamed attempt, so the work is done with ``bytes.find`` /
``bytes.split`` over whole chunks, never a Python loop over characters: lines are only decoded
once they are complete, which is also what keeps a UTF-8 sequence split across chunks whole
(``\\n`` never occurs inside a multi-byte sequence).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal, Protocol, TypeVar

import msgspec

from hedgerow import ir
from hedgerow._core import loud_spans
from hedgerow.formats._common import FormatError

__all__ = [
    "DEFAULT_MAX_EVENT_BYTES",
    "BlockKind",
    "PassthroughScanner",
    "QuietDialect",
    "SSEEvent",
    "SSEParser",
    "SSEStreamDecoder",
    "encode_sse",
    "native_quiet",
    "sse_prefix",
]

# Upstream bytes are untrusted: a server that never ends a line must not grow memory without
# bound. 16 MiB is far above any real event (a whole non-streamed answer fits many times).
DEFAULT_MAX_EVENT_BYTES = 16 * 1024 * 1024


class SSEEvent(msgspec.Struct, frozen=True, gc=False):
    """One dispatched event: its ``event:`` name (``None`` when absent) and its data."""

    event: str | None
    data: str


class SSEParser:
    """Incremental SSE parser: ``feed`` bytes as they arrive, ``close`` at end of stream.

    ``close`` is lenient in the way the official SDKs are: an event whose ``data:`` lines are
    all complete is dispatched even if the final blank line never came, while an unterminated
    last line (a cut in the middle of a line) is dropped. Whether the stream as a whole was
    complete is for the format's decoder to judge from the events it saw.

    ``feed`` raises ``FormatError`` when an event grows beyond ``max_event_bytes``.
    """

    __slots__ = ("_data", "_event", "_max", "_pending", "_size", "_skip_lf", "_start")

    def __init__(self, *, max_event_bytes: int = DEFAULT_MAX_EVENT_BYTES) -> None:
        self._max = max_event_bytes
        self._pending = bytearray()  # the unterminated tail of the last chunk
        self._skip_lf = False  # the last chunk ended with \r: a leading \n belongs to it
        self._start = True  # nothing decoded yet (a byte-order mark may lead)
        self._event: str | None = None
        self._data: list[str] = []
        self._size = 0  # characters of data gathered for the current event

    def feed(self, chunk: bytes) -> list[SSEEvent]:
        """Take the next bytes off the wire; returns the events they complete."""
        if not chunk:
            return []
        if self._skip_lf:
            self._skip_lf = False
            if chunk[0] == 10:
                chunk = chunk[1:]
                if not chunk:
                    return []
        if b"\r" in chunk:
            # Normalise to \n once per chunk; a trailing \r may be the first half of \r\n.
            self._skip_lf = chunk[-1] == 13
            chunk = chunk.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
        end = chunk.rfind(b"\n")
        if end < 0:
            self._pending += chunk
            if len(self._pending) > self._max:
                raise FormatError(f"server-sent event line longer than {self._max} bytes")
            return []
        if self._pending:
            self._pending += chunk[:end]
            text = self._pending.decode("utf-8", "replace")
            self._pending = bytearray(chunk[end + 1 :])
        else:
            text = chunk[:end].decode("utf-8", "replace")
            if end + 1 < len(chunk):
                self._pending = bytearray(chunk[end + 1 :])
        return self._lines(text.split("\n"))

    def close(self) -> list[SSEEvent]:
        """End of stream: drop an unterminated line, dispatch an event left without its blank
        line (see the class docstring)."""
        self._pending = bytearray()
        self._skip_lf = False
        if not self._data:
            self._event = None
            return []
        return self._lines([""])

    def _lines(self, lines: list[str]) -> list[SSEEvent]:
        events: list[SSEEvent] = []
        if self._start:
            self._start = False
            if lines[0].startswith("\ufeff"):
                lines[0] = lines[0][1:]
        data = self._data
        event = self._event
        size = self._size
        for line in lines:
            if not line:
                if data:
                    events.append(SSEEvent(event, data[0] if len(data) == 1 else "\n".join(data)))
                    data = []
                    size = 0
                event = None
                continue
            if line.startswith("data:"):
                value = line[6:] if line.startswith("data: ") else line[5:]
            else:
                if line[0] == ":":
                    continue
                name, colon, value = line.partition(":")
                if colon and value.startswith(" "):
                    value = value[1:]
                if name == "event":
                    event = value
                    continue
                if name != "data":
                    continue  # id, retry and unknown fields mean nothing to an LLM stream
            size += len(value)
            if size > self._max:
                raise FormatError(f"server-sent event larger than {self._max} bytes")
            data.append(value)
        self._data = data
        self._event = event
        self._size = size
        return events


def sse_prefix(event: str | None = None) -> bytes:
    """The constant bytes that open an event: ``event: NAME\\ndata: `` (or just ``data: ``).

    Encoders precompute these once per event name and append the JSON and ``\\n\\n``.
    """
    if event is None:
        return b"data: "
    return b"event: " + event.encode() + b"\ndata: "


def encode_sse(data: bytes, event: str | None = None) -> bytes:
    """One whole event. ``data`` containing line breaks is split over several ``data:`` lines
    (JSON from ``orjson`` never contains one, so the common case is a single concatenation)."""
    if b"\n" in data or b"\r" in data:
        lines = data.replace(b"\r\n", b"\n").replace(b"\r", b"\n").split(b"\n")
        body = b"\n".join(b"data: " + line for line in lines)
        head = b"" if event is None else b"event: " + event.encode() + b"\n"
        return head + body + b"\n\n"
    return sse_prefix(event) + data + b"\n\n"


# ---------------------------------------------------------------------------------------------
# The skeleton every format's StreamDecoder builds on (all three dialects are SSE-framed).

# The kinds of content block a stream carries (IR events name them by type, decoders by this).
BlockKind = Literal["text", "thinking", "tool"]


class SSEStreamDecoder:
    """What every format's ``StreamDecoder`` shares: SSE framing, the contract's guarantees and
    block bookkeeping for dialects that have no block boundaries on the wire.

    Guarantees, whatever the bytes: ``feed`` and ``close`` never raise (a failure of any kind
    becomes one ``StreamError`` of kind ``MALFORMED``); ``MessageStart`` comes first (unless the
    stream fails before it, and a ``StreamError`` is all there is); exactly one terminal event
    (``MessageEnd`` or ``StreamError``) by the time ``close`` returns, after which input is
    ignored; ``close`` on a stream without its terminal event yields ``MALFORMED``
    (subclasses that judge completeness differently override ``_on_eof``).

    Subclasses implement ``_on_event`` (one SSE event -> IR events appended to ``out``).
    """

    __slots__ = ("_done", "_index", "_kind", "_next_index", "_sse", "_started")

    def __init__(self) -> None:
        self._sse = SSEParser()
        self._started = False
        self._done = False
        self._kind: BlockKind | None = None  # the open block, for dialects without boundaries
        self._index = -1
        self._next_index = 0

    def feed(self, chunk: bytes) -> list[ir.StreamEvent]:
        """Bytes off the wire -> the IR events they complete."""
        if self._done:
            return []
        out: list[ir.StreamEvent] = []
        try:
            for event in self._sse.feed(chunk):
                self._on_event(event, out)
                if self._done:
                    break
        except Exception as exc:  # never raise: whatever broke, the stream is malformed
            self._malformed(out, f"undecodable stream: {exc}")
        return out

    def close(self) -> list[ir.StreamEvent]:
        """End of the stream: the last events, or ``MALFORMED`` if it was incomplete."""
        if self._done:
            return []
        out: list[ir.StreamEvent] = []
        try:
            for event in self._sse.close():
                self._on_event(event, out)
                if self._done:
                    break
            if not self._done:
                self._on_eof(out)
        except Exception as exc:
            self._malformed(out, f"undecodable stream: {exc}")
        self._done = True
        return out

    # -- for subclasses -----------------------------------------------------------------------

    def _on_event(self, event: SSEEvent, out: list[ir.StreamEvent]) -> None:
        raise NotImplementedError

    def _on_eof(self, out: list[ir.StreamEvent]) -> None:
        self._malformed(out, "stream ended before its terminal event")

    def _start(self, out: list[ir.StreamEvent], id: str, model: str, usage: ir.Usage) -> None:
        """Emit ``MessageStart`` once, before anything else."""
        if not self._started:
            self._started = True
            out.append(ir.MessageStart(id=id, model=model, usage=usage))

    def _finish(self, out: list[ir.StreamEvent], end: ir.MessageEnd) -> None:
        self._close_block(out)
        out.append(end)
        self._done = True

    def _fail(self, out: list[ir.StreamEvent], error: ir.ErrorInfo) -> None:
        out.append(ir.StreamError(error))
        self._done = True

    def _malformed(self, out: list[ir.StreamEvent], message: str) -> None:
        self._fail(out, ir.ErrorInfo(kind=ir.ErrorKind.MALFORMED, message=message, status=200))

    def _block(self, kind: BlockKind, out: list[ir.StreamEvent]) -> int:
        """The index of the open block if it is of ``kind``, else of a new one."""
        if self._kind == kind:
            return self._index
        return self._new_block(kind, out)

    def _new_block(self, kind: BlockKind, out: list[ir.StreamEvent]) -> int:
        """Close the open block (the wire has no boundaries: a switch is one) and open one."""
        if self._kind is not None:
            out.append(ir.BlockStop(self._index))
        self._kind = kind
        self._index = self._next_index
        self._next_index += 1
        return self._index

    def _close_block(self, out: list[ir.StreamEvent]) -> None:
        if self._kind is not None:
            out.append(ir.BlockStop(self._index))
            self._kind = None


# ---------------------------------------------------------------------------------------------
# The passthrough fast path's light scanner.


class _Decoder(Protocol):
    def feed(self, chunk: bytes) -> list[ir.StreamEvent]: ...
    def close(self) -> list[ir.StreamEvent]: ...


# The quiet rules the native core knows (``hedgerow._core.loud_spans``), by name.
QuietDialect = Literal["openai", "anthropic"]

_Rule = TypeVar("_Rule", bound=Callable[[bytes], bool])
_NATIVE_QUIET: dict[Callable[[bytes], bool], QuietDialect] = {}


def native_quiet(dialect: QuietDialect) -> Callable[[_Rule], _Rule]:
    """Declares a format's ``quiet_events`` the reference of the native rule ``dialect``:
    a ``PassthroughScanner`` given that function classifies events natively, one call per
    read, and the Python function stays the rule's definition (the tests hold the two equal).
    """

    def register(rule: _Rule) -> _Rule:
        _NATIVE_QUIET[rule] = dialect
        return rule

    return register


class PassthroughScanner:
    """Stands in front of a format's decoder on the passthrough path (the client's format is
    the provider's, so the upstream bytes go to the client unchanged).

    Until the first content the events are decoded one by one, as the router needs them to
    decide whether the attempt succeeded. From the first content on, hedgerow still needs the
    errors, the usage and the terminal event, but not the content: the scanner cuts the bytes
    at event boundaries (``\\n\\n``) and asks the format's ``quiet(event)`` rule whether each
    event is content only; those are dropped unparsed, the rest go to the decoder. When in
    doubt a format answers "not quiet", so the decoder sees at least what matters; an event
    whose JSON is cut short is never quiet, so it is decoded (and replaced by an error event)
    rather than passed on.

    A rule declared with ``native_quiet`` (OpenAI's, Anthropic's) is applied by the native
    core: one ``loud_spans`` call per read returns the runs of loud events, and only those
    are sliced off and decoded. Any other rule (or ``native=False``) is applied from Python:
    a few ``bytes.count`` / ``in`` tests, asked about whole runs of events at once.

    Framing with ``\\r`` (no LLM API sends it, but upstream bytes are untrusted) and an
    event past ``DEFAULT_MAX_EVENT_BYTES`` hand everything to the decoder from then on.
    """

    __slots__ = ("_committed", "_decoder", "_dialect", "_full", "_pending", "_quiet")

    def __init__(
        self, decoder: _Decoder, quiet: Callable[[bytes], bool], *, native: bool = True
    ) -> None:
        self._decoder = decoder
        self._quiet = quiet
        self._dialect = _NATIVE_QUIET.get(quiet) if native else None
        self._pending = b""
        self._committed = False
        self._full = False

    def feed(self, chunk: bytes) -> list[ir.StreamEvent]:
        """The IR events of ``chunk`` that matter (see the class)."""
        if self._full:
            return self._decoder.feed(chunk)
        data = self._pending + chunk if self._pending else chunk
        end = data.rfind(b"\n\n")
        # 13 is \r: an int membership test is a plain memchr (b"\r" in data takes the buffer
        # protocol first, ~4x the cost on a typical read).
        if 13 in data or (end < 0 and len(data) > DEFAULT_MAX_EVENT_BYTES):
            self._full = True
            self._pending = b""
            return self._decoder.feed(data)
        if end < 0:
            self._pending = data
            return []
        end += 2
        self._pending = data[end:]
        region = data[:end] if end < len(data) else data
        decoder = self._decoder
        out: list[ir.StreamEvent] = []
        start = 0
        if not self._committed:
            # Up to the first content every event is decoded, cut as region.split(b"\n\n")
            # would cut it (empty pieces skipped).
            size = len(region)
            while start < size:
                cut = region.find(b"\n\n", start)
                if cut == start:
                    start += 2
                    continue
                if cut < 0:  # the \n an odd run of newlines leaves at the end
                    event = region[start:] + b"\n\n"
                    start = size
                else:
                    event = region[start : cut + 2]
                    start = cut + 2
                events = decoder.feed(event)
                out += events
                if any(ir.is_content(e) or isinstance(e, ir.MessageEnd) for e in events):
                    self._committed = True
                    break
            if start >= size:
                return out
        dialect = self._dialect
        if dialect is not None:
            spans = loud_spans(region, dialect, start)
            if spans:
                for i in range(0, len(spans), 2):
                    out += decoder.feed(region[spans[i] : spans[i + 1]])
            return out
        if start:
            region = region[start:]
        elif self._quiet(region):
            return out
        parts = [part for part in region.split(b"\n\n") if part]
        return out + self._loud(parts)

    def _loud(self, parts: list[bytes]) -> list[ir.StreamEvent]:
        """The events of the loud ones among ``parts`` (whole events past the first content).

        Loud events come at a stream's end (finish, usage, ``[DONE]``), so the loud tail is
        found from the back and what is before it is asked about at once: a run of events is
        quiet only if each of them is (every test of ``quiet`` is a count or an absence), so
        a quiet run is dropped in one call instead of one call per event.
        """
        quiet = self._quiet
        decoder = self._decoder
        end = len(parts)
        while end and not quiet(parts[end - 1] + b"\n\n"):
            end -= 1
        out: list[ir.StreamEvent] = []
        if end > 1 and not quiet(b"\n\n".join(parts[:end]) + b"\n\n"):
            for part in parts[: end - 1]:  # a loud event amid quiet ones: one at a time
                event = part + b"\n\n"
                if not quiet(event):
                    out += decoder.feed(event)
        for part in parts[end:]:
            out += decoder.feed(part + b"\n\n")
        return out

    def close(self) -> list[ir.StreamEvent]:
        """End of the stream: the decoder's last events (or its ``MALFORMED``)."""
        out: list[ir.StreamEvent] = []
        if self._pending:
            out = self._decoder.feed(self._pending)
            self._pending = b""
        return out + self._decoder.close()
