"""The passthrough scanner past the first content: Python quiet rule against the native one.

Run: ``.venv/bin/python -m pytest benches/bench_sse.py --benchmark-only
--benchmark-columns=median,mean,ops -p no:cacheprovider`` (see benches/README.md).

Each round feeds a committed scanner (its first content already decoded) the rest of a
realistic stream: 20 content chunks, the finish, the usage and the end, either in one read
(a fast upstream) or one read per event (a slow one, the common case). ``native=False`` is the
scanner's Python path, the one every read took before ``hedgerow._core.loud_spans``.
"""

from __future__ import annotations

from types import ModuleType
from typing import Any

import pytest

from hedgerow import ir
from hedgerow.formats import anthropic, openai
from hedgerow.formats.sse import PassthroughScanner

_OAI_META = (
    b'"id":"chatcmpl-B9MHDbslfkBeAs8l4bebGdFOJ6PeG","object":"chat.completion.chunk",'
    b'"created":1741570283,"model":"gpt-4o-2024-08-06","service_tier":"default",'
    b'"system_fingerprint":"fp_4691090a87"'
)
OAI_HEAD = (
    b"data: {" + _OAI_META + b',"choices":[{"index":0,"delta":{"role":"assistant",'
    b'"content":"The"},"logprobs":null,"finish_reason":null}],"usage":null}\n\n'
)
OAI_EVENTS = [
    b"data: {" + _OAI_META + b',"choices":[{"index":0,"delta":{"content":" word%d"},'
    b'"logprobs":null,"finish_reason":null}],"usage":null}\n\n' % i
    for i in range(20)
] + [
    b"data: {" + _OAI_META + b',"choices":[{"index":0,"delta":{},"logprobs":null,'
    b'"finish_reason":"stop"}],"usage":null}\n\n',
    b"data: {" + _OAI_META + b',"choices":[],"usage":{"prompt_tokens":25,'
    b'"completion_tokens":21,"total_tokens":46,"prompt_tokens_details":{"cached_tokens":0},'
    b'"completion_tokens_details":{"reasoning_tokens":0}}}\n\n',
    b"data: [DONE]\n\n",
]

ANT_HEAD = (
    b'event: message_start\ndata: {"type":"message_start","message":{"id":"msg_01XFDUDYJgAACzvnptvVoYEL",'
    b'"type":"message","role":"assistant","model":"claude-sonnet-4-6","content":[],'
    b'"stop_reason":null,"stop_sequence":null,"usage":{"input_tokens":25,"output_tokens":1}}}\n\n'
    b'event: content_block_start\ndata: {"type":"content_block_start","index":0,'
    b'"content_block":{"type":"text","text":""}}\n\n'
    b'event: ping\ndata: {"type": "ping"}\n\n'
    b'event: content_block_delta\ndata: {"type":"content_block_delta","index":0,'
    b'"delta":{"type":"text_delta","text":"The"}}\n\n'
)
ANT_EVENTS = [
    b'event: content_block_delta\ndata: {"type":"content_block_delta","index":0,'
    b'"delta":{"type":"text_delta","text":" word%d"}}\n\n' % i
    for i in range(20)
] + [
    b'event: content_block_stop\ndata: {"type":"content_block_stop","index":0}\n\n',
    b'event: message_delta\ndata: {"type":"message_delta","delta":{"stop_reason":"end_turn",'
    b'"stop_sequence":null},"usage":{"output_tokens":21}}\n\n',
    b'event: message_stop\ndata: {"type":"message_stop"}\n\n',
]

CASES = {
    "openai": (openai, OAI_HEAD, OAI_EVENTS),
    "anthropic": (anthropic, ANT_HEAD, ANT_EVENTS),
}


def committed(fmt: ModuleType, head: bytes, native: bool) -> PassthroughScanner:
    scanner = PassthroughScanner(fmt.StreamDecoder(), fmt.quiet_events, native=native)
    assert any(ir.is_content(e) for e in scanner.feed(head))
    return scanner


@pytest.mark.parametrize("native", [False, True], ids=["python", "native"])
@pytest.mark.parametrize("dialect", sorted(CASES))
@pytest.mark.parametrize("reads", ["one-read", "23-reads"])
def test_feed_committed_stream(benchmark: Any, reads: str, dialect: str, native: bool) -> None:
    benchmark.group = f"passthrough scanner: {dialect}, {reads}"
    fmt, head, events = CASES[dialect]
    chunks = [b"".join(events)] if reads == "one-read" else events

    def setup() -> tuple[tuple[PassthroughScanner], dict[str, Any]]:
        return (committed(fmt, head, native),), {}

    def feed(scanner: PassthroughScanner) -> list[ir.StreamEvent]:
        out: list[ir.StreamEvent] = []
        for chunk in chunks:
            out += scanner.feed(chunk)
        return out

    out = benchmark.pedantic(feed, setup=setup, rounds=20_000, warmup_rounds=200)
    assert any(isinstance(e, ir.MessageEnd) for e in out)
    assert not any(isinstance(e, ir.TextDelta) for e in out)
