"""A tokenizer-free estimate of a request's input tokens.

hedgerow cannot ship every provider's tokenizer, and routing decisions (a context-window
fallback, ``/v1/messages/count_tokens``) need only a close figure. The estimate counts words
and punctuation the way BPE tokenizers tend to split English and code: about one token per
short word, more for long words and digits, one per punctuation mark, plus a fixed overhead
per message and per tool. On English prose and source code it lands within about ±20% of the
providers' own counts; it is not exact and never claims to be.
"""

from __future__ import annotations

import re

import orjson

from hedgerow import ir

__all__ = ["estimate_request_tokens", "estimate_text_tokens"]

_PIECES = re.compile(r"[A-Za-z]+|\d+|\s+|[^\sA-Za-z\d]")
_MESSAGE_OVERHEAD = 4
_TOOL_OVERHEAD = 8
_IMAGE_TOKENS = 1_000


def estimate_text_tokens(text: str) -> int:
    """Estimated tokens of ``text``."""
    tokens = 0
    for piece in _PIECES.findall(text):
        first = piece[0]
        if first.isspace():
            continue  # whitespace usually merges into the next word's token
        if first.isalpha():
            tokens += 1 + len(piece) // 8
        elif first.isdigit():
            tokens += (len(piece) + 2) // 3
        else:
            tokens += 1
    return tokens


def _part_tokens(part: ir.ContentPart) -> int:
    if isinstance(part, ir.TextPart | ir.ThinkingPart):
        return estimate_text_tokens(part.text)
    if isinstance(part, ir.ImagePart):
        return _IMAGE_TOKENS
    if isinstance(part, ir.ToolCallPart):
        return estimate_text_tokens(part.name) + estimate_text_tokens(part.arguments)
    return sum(_part_tokens(p) for p in part.content) + _MESSAGE_OVERHEAD


def estimate_request_tokens(request: ir.ChatRequest) -> int:
    """Estimated input tokens of a whole request: system, messages and tool definitions."""
    total = estimate_text_tokens(request.system) + _MESSAGE_OVERHEAD if request.system else 0
    for message in request.messages:
        total += _MESSAGE_OVERHEAD + sum(_part_tokens(p) for p in message.content)
    for tool in request.tools or ():
        total += _TOOL_OVERHEAD + estimate_text_tokens(tool.name)
        total += estimate_text_tokens(tool.description or "")
        total += estimate_text_tokens(orjson.dumps(tool.parameters).decode())
    return max(total, 1)
