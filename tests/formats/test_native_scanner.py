"""The native quiet rules (``hedgerow._core.loud_spans``) against their Python definitions
(``quiet_events`` of each format). The scanner's native path against its Python one is held
in test_passthrough_scanner.py, with the full decoder."""

from __future__ import annotations

from collections.abc import Callable
from types import ModuleType

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hedgerow._core import loud_spans
from hedgerow.formats import anthropic, openai
from hedgerow.formats.sse import PassthroughScanner, QuietDialect
from tests.formats.test_passthrough_scanner import (
    _ANT_END,
    _ANT_TEXT,
    _OAI_END,
    _OAI_ERROR,
    _OAI_HEAD,
    _OAI_TEXT,
)

FORMATS: list[ModuleType] = [openai, anthropic]


def reference(region: bytes, quiet: Callable[[bytes], bool], start: int = 0) -> list[int]:
    """What ``loud_spans`` should answer, the way the scanner used to find it: the region cut
    by ``split``, every event asked about alone, adjacent loud events joined into runs."""
    spans: list[int] = []
    pos = start
    for piece in region[start:].split(b"\n\n"):
        end = min(pos + len(piece) + 2, len(region))
        if piece and not quiet(piece + b"\n\n"):
            if spans and spans[-1] == pos:
                spans[-1] = end
            else:
                spans += [pos, end]
        pos = end
    return spans


# The bytes the two rules look at, and some that merely look like them.
FRAGMENTS = [
    b"data: ",
    b"{",
    b"}",
    b"\n",
    b"\n\n",
    b" ",
    b'"usage":null',
    b'"usage"',
    b'usage":null',
    b'"usage": null',
    b"[DONE]",
    b'"finish_reason"',
    b'"finish_reason":null',
    b'finish_reason"',
    b'"error"',
    b'"tool_calls"',
    b"event: content_block_delta\n",
    b"event: ping\n",
    b"event: ",
    b"event:",
    b"input_json_delta",
    _OAI_TEXT,
    _ANT_TEXT,
]

soups = st.lists(st.one_of(st.sampled_from(FRAGMENTS), st.binary(max_size=6)), max_size=40).map(
    b"".join
)


@settings(max_examples=1500, deadline=None)
@given(soup=soups, fmt=st.sampled_from(FORMATS), skip=st.integers(0, 3))
def test_native_rule_is_the_python_rule_event_by_event(
    soup: bytes, fmt: ModuleType, skip: int
) -> None:
    region = soup + b"\n\n"
    start = 0
    for _ in range(skip):  # start after an event, as the scanner does once committed
        cut = region.find(b"\n\n", start)
        if cut + 2 < len(region):
            start = cut + 2
    dialect: QuietDialect = fmt.QUIET_DIALECT
    assert loud_spans(region, dialect, start) == reference(region, fmt.quiet_events, start)


@settings(max_examples=500, deadline=None)
@given(data=st.binary(max_size=300), fmt=st.sampled_from(FORMATS), start=st.integers(0, 400))
def test_any_bytes_give_well_formed_spans(data: bytes, fmt: ModuleType, start: int) -> None:
    spans = loud_spans(data, fmt.QUIET_DIALECT, start)
    assert len(spans) % 2 == 0
    assert spans == sorted(spans)
    assert all(start <= s <= len(data) for s in spans)
    # Each run ends after a \n\n, or at the end of the bytes (what follows the last \n\n).
    assert all(data[:end].endswith(b"\n\n") or end == len(data) for end in spans[1::2])


def test_the_runs_of_a_stream_read() -> None:
    region = _OAI_HEAD + _OAI_TEXT * 3 + _OAI_ERROR + _OAI_TEXT + _OAI_END
    at = len(_OAI_HEAD + _OAI_TEXT * 3)
    tail = len(region) - len(_OAI_END)
    assert loud_spans(region, "openai", len(_OAI_HEAD)) == [
        at,
        at + len(_OAI_ERROR),
        tail,
        len(region),
    ]
    region = _ANT_TEXT * 4 + _ANT_END
    assert loud_spans(region, "anthropic") == [len(_ANT_TEXT) * 4, len(region)]


def test_bad_arguments_raise() -> None:
    with pytest.raises(ValueError, match=r"^dialect"):
        loud_spans(b"data: {}\n\n", "gemini")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        loud_spans(bytearray(b"data: {}\n\n"), "openai")  # type: ignore[arg-type]
    with pytest.raises(OverflowError):
        loud_spans(b"data: {}\n\n", "openai", -1)


def test_the_format_rules_are_declared_native() -> None:
    assert openai.QUIET_DIALECT == "openai"
    assert anthropic.QUIET_DIALECT == "anthropic"
    for fmt in FORMATS:
        assert PassthroughScanner(fmt.StreamDecoder(), fmt.quiet_events)._dialect is not None
    assert PassthroughScanner(openai.StreamDecoder(), lambda _: False)._dialect is None
