"""The passthrough fast path's light scanner: what it decodes matches the full decoder on
everything the gateway reads from a committed passthrough stream (errors, usage, the end)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hedgerow import ir
from hedgerow.formats import anthropic, openai
from hedgerow.formats.sse import PassthroughScanner

_OAI_HEAD = b'data: {"id":"c1","object":"chat.completion.chunk","model":"m","choices":[{"index":0,"delta":{"role":"assistant","content":"Hi"},"finish_reason":null}],"usage":null}\n\n'
_OAI_TEXT = b'data: {"id":"c1","object":"chat.completion.chunk","model":"m","choices":[{"index":0,"delta":{"content":" there"},"finish_reason":null}],"usage":null}\n\n'
_OAI_END = (
    b'data: {"id":"c1","choices":[{"index":0,"delta":{},"finish_reason":"stop"}],"usage":null}\n\n'
    b'data: {"id":"c1","choices":[],"usage":{"prompt_tokens":5,"completion_tokens":7,'
    b'"total_tokens":12}}\n\n'
    b"data: [DONE]\n\n"
)
_OAI_ERROR = b'data: {"error":{"message":"overloaded","type":"server_error"}}\n\n'
_OAI_CUT = b'data: {"id":"c1","choices":[{"index":0,"delta":{"content":"tru\n\n'

_ANT_HEAD = (
    b'event: message_start\ndata: {"type":"message_start","message":{"id":"m1","type":"message",'
    b'"role":"assistant","model":"c","content":[],"usage":{"input_tokens":5,"output_tokens":1}}}\n\n'
    b"event: content_block_start\n"
    b'data: {"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}\n\n'
    b"event: content_block_delta\n"
    b'data: {"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"Hi"}}\n\n'
)
_ANT_TEXT = (
    b"event: content_block_delta\n"
    b'data: {"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":" x"}}\n\n'
    b'event: ping\ndata: {"type": "ping"}\n\n'
)
_ANT_END = (
    b'event: content_block_stop\ndata: {"type":"content_block_stop","index":0}\n\n'
    b'event: message_delta\ndata: {"type":"message_delta","delta":{"stop_reason":"end_turn"},'
    b'"usage":{"output_tokens":9}}\n\n'
    b'event: message_stop\ndata: {"type":"message_stop"}\n\n'
)
_ANT_ERROR = (
    b'event: error\ndata: {"type":"error","error":{"type":"overloaded_error","message":"x"}}\n\n'
)
_ANT_CUT = (
    b"event: content_block_delta\n"
    b'data: {"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"tru\n\n'
)


def _split(data: bytes, size: int) -> list[bytes]:
    return [data[i : i + size] for i in range(0, len(data), size)]


def _summary(events: list[ir.StreamEvent]) -> list[object]:
    """What a passthrough stream's reader uses: usage at the end, or the error's kind."""
    out: list[object] = []
    for e in events:
        if isinstance(e, ir.MessageEnd):
            out.append(("end", e.usage.input_tokens, e.usage.output_tokens))
        elif isinstance(e, ir.StreamError):
            out.append(("error", e.error.kind))
    return out


def _light(fmt: object, data: bytes, size: int, native: bool = True) -> list[ir.StreamEvent]:
    """The scanner's events over ``data`` read ``size`` bytes at a time."""
    scanner = PassthroughScanner(fmt.StreamDecoder(), fmt.quiet_events, native=native)  # type: ignore[attr-defined]
    out: list[ir.StreamEvent] = []
    for part in _split(data, size):
        out += scanner.feed(part)
    return out + scanner.close()


def _run(fmt: object, head: bytes, rest: bytes, size: int) -> tuple[list[object], list[object]]:
    full = fmt.StreamDecoder()  # type: ignore[attr-defined]
    reference: list[ir.StreamEvent] = []
    for part in _split(head + rest, size):
        reference += full.feed(part)
    reference += full.close()
    return _summary(reference), _summary(_light(fmt, head + rest, size))


@pytest.mark.parametrize("size", [1, 7, 64, 100_000])
@pytest.mark.parametrize(
    ("fmt", "head", "rest"),
    [
        (openai, _OAI_HEAD, _OAI_TEXT * 5 + _OAI_END),
        (openai, _OAI_HEAD, _OAI_TEXT * 3 + _OAI_ERROR),
        (openai, _OAI_HEAD, _OAI_TEXT * 3 + _OAI_CUT),
        (openai, _OAI_HEAD, _OAI_TEXT * 3),  # cut without [DONE]
        (anthropic, _ANT_HEAD, _ANT_TEXT * 5 + _ANT_END),
        (anthropic, _ANT_HEAD, _ANT_TEXT * 3 + _ANT_ERROR),
        (anthropic, _ANT_HEAD, _ANT_TEXT * 3 + _ANT_CUT),
        (anthropic, _ANT_HEAD, _ANT_TEXT * 3),
        (openai, _OAI_HEAD, _OAI_TEXT * 2 + _OAI_ERROR + _OAI_TEXT * 2 + _OAI_END),
        (anthropic, _ANT_HEAD, _ANT_TEXT * 2 + _ANT_ERROR + _ANT_TEXT * 2 + _ANT_END),
    ],
    ids=[
        "oai-end",
        "oai-error",
        "oai-cut-json",
        "oai-eof",
        "ant-end",
        "ant-error",
        "ant-cut-json",
        "ant-eof",
        "oai-error-amid",
        "ant-error-amid",
    ],
)
def test_scanner_finds_what_the_full_decoder_finds(
    fmt: object, head: bytes, rest: bytes, size: int
) -> None:
    reference, light = _run(fmt, head, rest, size)
    assert reference, "the reference decoder reports an end or an error"
    assert light == reference


@settings(max_examples=300, deadline=None)
@given(
    pieces=st.lists(st.sampled_from(["text", "error", "end", "cut"]), max_size=12),
    size=st.integers(1, 400),
    anthropic_format=st.booleans(),
)
def test_any_mix_of_events_in_any_reads(
    pieces: list[str], size: int, anthropic_format: bool
) -> None:
    """Loud events anywhere (amid content, several per read, at the end) are all found, and
    the native classification (``loud_spans``) decodes exactly the events the Python rules
    do."""
    fmt, head, parts = (
        (anthropic, _ANT_HEAD, {"text": _ANT_TEXT, "error": _ANT_ERROR, "end": _ANT_END,
                                "cut": _ANT_CUT})
        if anthropic_format
        else (openai, _OAI_HEAD, {"text": _OAI_TEXT, "error": _OAI_ERROR, "end": _OAI_END,
                                  "cut": _OAI_CUT})
    )  # fmt: skip
    rest = b"".join(parts[p] for p in pieces)
    reference, light = _run(fmt, head, rest, size)
    assert light == reference
    assert _light(fmt, head + rest, size, native=True) == _light(fmt, head + rest, size, False)


def test_content_is_decoded_only_up_to_the_first() -> None:
    fed: list[bytes] = []
    decoder = openai.StreamDecoder()

    class Spy:
        def feed(self, chunk: bytes) -> list[ir.StreamEvent]:
            fed.append(chunk)
            return decoder.feed(chunk)

        def close(self) -> list[ir.StreamEvent]:
            return decoder.close()

    scanner = PassthroughScanner(Spy(), openai.quiet_events)
    # One read carrying the whole stream (a fast upstream): the first content is decoded, the
    # rest of the content is not, the usage and the end are.
    events = scanner.feed(_OAI_HEAD + _OAI_TEXT * 10 + _OAI_END)
    assert fed[0] == _OAI_HEAD
    assert not any(b'" there"' in chunk for chunk in fed)
    assert any(isinstance(e, ir.TextDelta) for e in events)
    assert _summary(events) == [("end", 5, 7)]


@pytest.mark.parametrize(
    ("fmt", "head", "text", "cut"),
    [(openai, _OAI_HEAD, _OAI_TEXT, _OAI_CUT), (anthropic, _ANT_HEAD, _ANT_TEXT, _ANT_CUT)],
    ids=["openai", "anthropic"],
)
def test_json_cut_short_is_reported_with_the_read_that_carries_it(
    fmt: object, head: bytes, text: bytes, cut: bytes
) -> None:
    # The router replaces that read by an error event: garbage never reaches the client.
    scanner = PassthroughScanner(fmt.StreamDecoder(), fmt.quiet_events)  # type: ignore[attr-defined]
    scanner.feed(head)
    assert scanner.feed(text * 3) == []
    assert _summary(scanner.feed(text + cut)) == [("error", ir.ErrorKind.MALFORMED)]
