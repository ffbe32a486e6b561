"""The incremental SSE parser and the encoder helpers."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hedgerow.formats import FormatError
from hedgerow.formats.sse import SSEEvent, SSEParser, encode_sse, sse_prefix
from tests.formats.helpers import byte_by_byte, fixture_bytes, random_splits


def parse(*pieces: bytes) -> list[SSEEvent]:
    parser = SSEParser()
    events: list[SSEEvent] = []
    for piece in pieces:
        events.extend(parser.feed(piece))
    return events + parser.close()


def test_event_names_and_data() -> None:
    stream = b"event: a\ndata: one\n\ndata: two\n\n"
    assert parse(stream) == [SSEEvent("a", "one"), SSEEvent(None, "two")]


def test_multi_line_data_joins_with_newline() -> None:
    assert parse(b"data: x\ndata:  y\ndata:\n\n") == [SSEEvent(None, "x\n y\n")]


def test_comments_and_unknown_fields_are_ignored() -> None:
    stream = b": keep-alive\nid: 7\nretry: 10\nfoo: bar\ndata: x\n\n:\n\n"
    assert parse(stream) == [SSEEvent(None, "x")]


def test_field_without_space_and_without_colon() -> None:
    assert parse(b"event:e\ndata:v\n\n") == [SSEEvent("e", "v")]
    assert parse(b"data\n\n") == [SSEEvent(None, "")]


def test_event_without_data_is_not_dispatched() -> None:
    assert parse(b"event: ping\n\ndata: x\n\n") == [SSEEvent(None, "x")]


@pytest.mark.parametrize("eol", [b"\n", b"\r\n", b"\r"])
def test_line_endings(eol: bytes) -> None:
    stream = b"event: a" + eol + b"data: 1" + eol + eol + b"data: 2" + eol + eol
    expected = [SSEEvent("a", "1"), SSEEvent(None, "2")]
    assert parse(stream) == expected
    assert parse(*byte_by_byte(stream)) == expected


def test_crlf_split_between_cr_and_lf() -> None:
    # The \n completing a \r\n must not be read as a second (blank) line.
    assert parse(b"data: a\r", b"\ndata: b\r", b"\n\r", b"\n") == [SSEEvent(None, "a\nb")]


def test_utf8_sequence_split_across_chunks() -> None:
    data = "data: héllo → 🌍\n\n".encode()
    assert parse(*byte_by_byte(data)) == [SSEEvent(None, "héllo → 🌍")]


def test_byte_order_mark_is_dropped() -> None:
    assert parse(b"\xef\xbb", b"\xbfdata: x\n\n") == [SSEEvent(None, "x")]


def test_close_dispatches_complete_lines_and_drops_a_cut_line() -> None:
    assert parse(b"data: whole\n") == [SSEEvent(None, "whole")]
    assert parse(b"data: whole\n\ndata: cut") == [SSEEvent(None, "whole")]


def test_invalid_utf8_is_replaced_not_raised() -> None:
    assert parse(b"data: \xff\xfe\n\n") == [SSEEvent(None, "\ufffd\ufffd")]


def test_unbounded_line_is_refused() -> None:
    parser = SSEParser(max_event_bytes=64)
    parser.feed(b"data: " + b"x" * 40)
    with pytest.raises(FormatError):
        parser.feed(b"x" * 40)


def test_unbounded_event_is_refused() -> None:
    parser = SSEParser(max_event_bytes=64)
    with pytest.raises(FormatError):
        parser.feed(b"data: " + b"x" * 30 + b"\n" + b"data: " + b"y" * 40 + b"\n")


def test_fixture_byte_by_byte_equals_whole() -> None:
    data = fixture_bytes("anthropic/tool_use_response.sse")
    whole = parse(data)
    assert [e.event for e in whole][:3] == ["message_start", "content_block_start", "ping"]
    assert parse(*byte_by_byte(data)) == whole
    assert parse(*random_splits(data, random.Random(3))) == whole


def test_encode_helpers() -> None:
    assert sse_prefix() == b"data: "
    assert sse_prefix("ping") == b"event: ping\ndata: "
    assert encode_sse(b'{"a":1}') == b'data: {"a":1}\n\n'
    assert encode_sse(b"x", "e") == b"event: e\ndata: x\n\n"
    assert encode_sse(b"a\nb\r\nc", "e") == b"event: e\ndata: a\ndata: b\ndata: c\n\n"


# Surrogates cannot be encoded: no stream carries them.
_chars = st.characters(exclude_categories=["Cs"])
_names = st.one_of(
    st.none(),
    st.text(st.characters(exclude_categories=["Cs"], exclude_characters="\r\n"), min_size=1),
)
_events = st.lists(st.tuples(_names, st.text(_chars)), max_size=8)


@settings(max_examples=200, deadline=None)
@given(
    events=_events,
    eol=st.sampled_from([b"\n", b"\r\n", b"\r"]),
    seed=st.integers(0, 2**32),
)
def test_round_trip_in_random_splits(
    events: list[tuple[str | None, str]], eol: bytes, seed: int
) -> None:
    """Whatever the data (line breaks included) and the splits, the events come back."""
    stream = b"".join(encode_sse(data.encode(), name) for name, data in events)
    stream = stream.replace(b"\n", eol)
    # A lone \r in the data is a line break too: the parser sees it as one.
    expected = [
        SSEEvent(
            None if name is None else name,
            data.replace("\r\n", "\n").replace("\r", "\n"),
        )
        for name, data in events
    ]
    # An event name that is a BOM-led first line loses the BOM; names come back as given.
    if expected and expected[0].event is not None and expected[0].event.startswith("\ufeff"):
        return
    assert parse(stream) == expected
    assert parse(*random_splits(stream, random.Random(seed), max_piece=9)) == expected
