"""Deterministic answers: generated text, tool-call arguments and token counts.

The simulator must answer the same request with the same bytes (tests compare answers, and a
benchmark must not measure a random-number generator), so every answer is a pure function of
the request. The seed is a hash of what the model would "read" — model, system prompt,
messages and tools — and deliberately not of ``stream`` or ``max_tokens``: a streamed answer
equals the non-streamed one, and a ``max_tokens`` cut is a prefix of the full answer.

Token accounting (documented for users who check usage figures):

* **Output**: one token is one word piece of the generated text — a vocabulary word with its
  leading space and any trailing punctuation (``" river."``). The usage ``output_tokens`` is
  exactly the number of pieces sent, so a client can check it against the text it received.
  A tool call costs ``ceil(len(name + arguments) / 4)`` tokens.
* **Input**: estimated at one token per four characters of prompt text (system, every text
  part, tool calls and results, tool definitions as JSON) plus four per message, the usual
  rule of thumb for English. ``count_tokens`` endpoints return the same figure.
"""

from __future__ import annotations

import hashlib
import math
import random
from functools import lru_cache
from typing import Any

import msgspec

from hedgerow import ir

__all__ = [
    "Reply",
    "estimate_tokens",
    "generate_reply",
    "input_tokens",
    "request_seed",
    "sample_schema",
    "text_pieces",
]

# Short, common words: answers read as (meaningless) prose and each piece is one "token".
# fmt: off
_VOCAB: tuple[str, ...] = (
    "the", "a", "river", "stone", "light", "quiet", "garden", "over", "under", "north", "south",
    "early", "late", "green", "amber", "signal", "bridge", "market", "morning", "evening",
    "paper", "window", "harbor", "field", "winter", "summer", "orchard", "hedge", "lantern",
    "meadow", "thread", "copper", "silver", "simple", "steady", "narrow", "wide", "gentle",
    "bright", "careful", "patient", "ready", "open", "closed", "slow", "fast", "near", "far",
    "above", "below", "between", "around", "answer", "question", "method", "system", "route",
    "path", "fallback", "model", "request", "response", "token", "stream", "message", "record",
    "ledger", "table", "column", "number", "value", "measure", "balance", "weather", "forecast",
    "traffic", "station", "platform", "engine", "circuit", "breaker", "bucket", "cloud",
    "valley", "mountain", "forest", "island", "coast", "canal", "tower", "village", "city",
    "road", "lane", "walks", "runs", "holds", "turns", "waits", "moves", "keeps", "finds",
    "makes", "takes", "gives", "brings", "carries", "shows", "tells", "reads", "writes",
    "counts", "checks", "builds", "opens", "closes", "starts", "stops", "follows", "and", "or",
    "but", "so", "then", "while", "because", "although", "if", "when", "where", "which", "that",
    "this", "these", "is", "was", "are", "were", "has", "had", "will", "can", "may", "should",
    "could", "would", "might", "must", "does",
)
# fmt: on

# Prompt characters per estimated input token, and the per-message framing overhead.
_CHARS_PER_TOKEN = 4
_MESSAGE_OVERHEAD = 4


def estimate_tokens(text: str) -> int:
    """Tokens of prompt text: one per four characters, rounded up."""
    return -(-len(text) // _CHARS_PER_TOKEN)


def input_tokens(request: ir.ChatRequest) -> int:
    """The estimated prompt size of ``request`` in tokens (see the module docstring)."""
    chars = len(request.system or "")
    for message in request.messages:
        chars += _MESSAGE_OVERHEAD * _CHARS_PER_TOKEN
        for part in message.content:
            if isinstance(part, ir.TextPart | ir.ThinkingPart):
                chars += len(part.text)
            elif isinstance(part, ir.ToolCallPart):
                chars += len(part.name) + len(part.arguments)
            elif isinstance(part, ir.ToolResultPart):
                chars += sum(len(p.text) for p in part.content if isinstance(p, ir.TextPart))
            else:
                # An image: providers bill them by size; a flat figure is enough here.
                chars += 1000 * _CHARS_PER_TOKEN
    if request.tools:
        chars += len(msgspec.json.encode(request.tools))
    return max(1, -(-chars // _CHARS_PER_TOKEN))


def request_seed(request: ir.ChatRequest) -> int:
    """A 64-bit seed from the parts of ``request`` that shape the answer."""
    digest = hashlib.blake2b(
        msgspec.json.encode((request.model, request.system, request.messages, request.tools)),
        digest_size=8,
    ).digest()
    return int.from_bytes(digest, "big")


@lru_cache(maxsize=4096)
def text_pieces(seed: int, count: int) -> tuple[str, ...]:
    """``count`` word pieces of prose, the same for the same ``seed`` (cached: benchmarks
    repeat requests, and generating is the costliest step of a cheap answer)."""
    rng = random.Random(seed)
    pieces: list[str] = []
    sentence_left = 0
    for i in range(count):
        word = _VOCAB[rng.randrange(len(_VOCAB))]
        if sentence_left == 0:
            word = word.capitalize()
            sentence_left = rng.randint(6, 14)
        sentence_left -= 1
        if sentence_left == 0 or i == count - 1:
            word += "."
        pieces.append(word if i == 0 else " " + word)
    return tuple(pieces)


class Reply(msgspec.Struct, frozen=True):
    """A generated answer: text pieces (one per output token) or tool calls, and why it ended.

    ``tool_calls`` non-empty means the answer is a tool call (``finish_reason`` is
    ``tool_calls``) and ``pieces`` is empty.
    """

    pieces: tuple[str, ...]
    tool_calls: tuple[ir.ToolCallPart, ...]
    finish_reason: ir.FinishReason
    output_tokens: int
    stop_sequence: str | None = None

    @property
    def text(self) -> str:
        """The whole generated text."""
        return "".join(self.pieces)


def generate_reply(
    request: ir.ChatRequest, *, reply_tokens: int, tool_id_prefix: str = "call_"
) -> Reply:
    """The answer to ``request``: a tool call when one is due, else ``reply_tokens`` pieces of
    text, cut by ``max_tokens`` (finish ``length``) or a stop sequence (``stop_sequence``)."""
    seed = request_seed(request)
    tool = _tool_to_call(request)
    if tool is not None:
        rng = random.Random(seed)
        value = sample_schema(tool.parameters, rng)
        # Arguments are always an object, even for a tool whose schema is empty or odd.
        arguments = msgspec.json.encode(value if isinstance(value, dict) else {}).decode()
        call_id = f"{tool_id_prefix}{seed:016x}"
        call = ir.ToolCallPart(id=call_id, name=tool.name, arguments=arguments)
        return Reply(
            pieces=(),
            tool_calls=(call,),
            finish_reason="tool_calls",
            output_tokens=max(1, estimate_tokens(tool.name + arguments)),
        )
    limit = reply_tokens if request.max_tokens is None else min(reply_tokens, request.max_tokens)
    # Cut the full answer rather than generating a shorter one: a max_tokens cut must be a
    # prefix of the uncut answer (the last piece of a full answer ends its sentence).
    pieces = text_pieces(seed, reply_tokens)[: max(0, limit)]
    if request.stop:
        cut = _cut_at_stop(pieces, request.stop)
        if cut is not None:
            kept, matched = cut
            return Reply(kept, (), "stop_sequence", len(kept), matched)
    finish: ir.FinishReason = "length" if limit < reply_tokens else "stop"
    return Reply(pieces, (), finish, len(pieces))


def _cut_at_stop(pieces: tuple[str, ...], stops: list[str]) -> tuple[tuple[str, ...], str] | None:
    """The pieces before the earliest stop sequence (the piece it starts in is shortened)."""
    text = "".join(pieces)
    best: tuple[int, str] | None = None
    for stop in stops:
        if not stop:
            continue
        at = text.find(stop)
        if at >= 0 and (best is None or at < best[0]):
            best = (at, stop)
    if best is None:
        return None
    at, matched = best
    kept: list[str] = []
    used = 0
    for piece in pieces:
        if used + len(piece) <= at:
            kept.append(piece)
            used += len(piece)
            continue
        if at > used:
            kept.append(piece[: at - used])
        break
    return tuple(kept), matched


def _tool_to_call(request: ir.ChatRequest) -> ir.Tool | None:
    """The tool the simulated model calls, if any.

    It calls one when tools are offered, ``tool_choice`` is not ``none``, and the last turn
    does not already carry a tool result (after a result it answers in text, as a model
    finishing a tool loop would). A forced ``tool_choice`` names the tool; otherwise the
    first tool is called.
    """
    if not request.tools:
        return None
    choice = request.tool_choice
    if choice is not None and choice.mode == "none":
        return None
    if request.messages and any(
        isinstance(part, ir.ToolResultPart) for part in request.messages[-1].content
    ):
        return None
    if choice is not None and choice.mode == "tool" and choice.name:
        for tool in request.tools:
            if tool.name == choice.name:
                return tool
    return request.tools[0]


_STRING_FORMATS = {
    "date": "2026-06-05",
    "date-time": "2026-06-05T12:00:00Z",
    "time": "12:00:00",
    "email": "someone@example.com",
    "uri": "https://example.com/",
    "url": "https://example.com/",
    "uuid": "00000000-0000-4000-8000-000000000000",
}

_MAX_DEPTH = 8


def sample_schema(schema: Any, rng: random.Random, depth: int = 0) -> Any:
    """A value that satisfies the simple JSON Schema ``schema``.

    Handles ``const``, ``enum``, ``default``, ``anyOf``/``oneOf``/``allOf`` (the first
    branch), type lists (the first non-null type), objects (their ``required`` properties),
    arrays (``minItems`` items, at least one), strings (``format``, length bounds), numbers
    and integers (bounds) and booleans. ``$ref`` and ``pattern`` are not followed: the
    answer is valid for the schemas tools use in practice, not for every schema.
    """
    if not isinstance(schema, dict) or depth > _MAX_DEPTH:
        return None
    if "const" in schema:
        return schema["const"]
    if schema.get("enum"):
        options = schema["enum"]
        return options[rng.randrange(len(options))]
    if "default" in schema:
        return schema["default"]
    for key in ("anyOf", "oneOf", "allOf"):
        branches = schema.get(key)
        if isinstance(branches, list) and branches:
            usable = [b for b in branches if not (isinstance(b, dict) and b.get("type") == "null")]
            return sample_schema((usable or branches)[0], rng, depth + 1)
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "null")
    if kind is None:
        kind = "object" if "properties" in schema else "string"
    if kind == "object":
        properties = schema.get("properties") or {}
        required = schema.get("required") or []
        return {
            name: sample_schema(properties.get(name, {}), rng, depth + 1)
            for name in required
            if isinstance(name, str)
        }
    if kind == "array":
        count = max(1, int(schema.get("minItems", 1)))
        if "maxItems" in schema:
            count = min(count, int(schema["maxItems"]))
        return [sample_schema(schema.get("items", {}), rng, depth + 1) for _ in range(count)]
    if kind == "integer":
        return _sample_number(schema, rng, integer=True)
    if kind == "number":
        return _sample_number(schema, rng, integer=False)
    if kind == "boolean":
        return rng.random() < 0.5
    if kind == "null":
        return None
    return _sample_string(schema, rng)


def _sample_number(schema: dict[str, Any], rng: random.Random, *, integer: bool) -> int | float:
    low = schema.get("minimum", schema.get("exclusiveMinimum"))
    high = schema.get("maximum", schema.get("exclusiveMaximum"))
    lo = float(low) if isinstance(low, int | float) else 1.0
    hi = float(high) if isinstance(high, int | float) else max(lo, 0.0) + 100.0
    if "exclusiveMinimum" in schema and "minimum" not in schema:
        lo += 1.0 if integer else 0.5
    if "exclusiveMaximum" in schema and "maximum" not in schema:
        hi -= 1.0 if integer else 0.5
    hi = max(hi, lo)
    if integer:
        first, last = math.ceil(lo), math.floor(hi)
        return rng.randint(first, max(first, last))
    return round(rng.uniform(lo, hi), 2)


def _sample_string(schema: dict[str, Any], rng: random.Random) -> str:
    text = _STRING_FORMATS.get(str(schema.get("format", "")))
    if text is None:
        text = _VOCAB[rng.randrange(len(_VOCAB))]
    low = schema.get("minLength")
    if isinstance(low, int) and len(text) < low:
        text = text + "x" * (low - len(text))
    high = schema.get("maxLength")
    if isinstance(high, int) and len(text) > high:
        text = text[:high]
    return text
