"""Helpers shared by the wire-format tests: golden fixtures, split feeding, SDK transports."""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable
from pathlib import Path
from types import ModuleType
from typing import Any

import httpx2

from hedgerow import ir
from hedgerow.formats import anthropic, gemini, openai

FIXTURES = Path(__file__).parent / "fixtures"

FORMATS: dict[str, ModuleType] = {"openai": openai, "anthropic": anthropic, "gemini": gemini}


def fixture_bytes(name: str) -> bytes:
    """A recorded stream from ``tests/formats/fixtures``."""
    return (FIXTURES / name).read_bytes()


def decode(
    fmt: ModuleType, data: bytes, pieces: Iterable[bytes] | None = None
) -> list[ir.StreamEvent]:
    """All events of ``data`` through ``fmt.StreamDecoder`` (fed as ``pieces`` if given)."""
    decoder = fmt.StreamDecoder()
    events: list[ir.StreamEvent] = []
    for piece in pieces if pieces is not None else [data]:
        events.extend(decoder.feed(piece))
    events.extend(decoder.close())
    return events


def byte_by_byte(data: bytes) -> list[bytes]:
    """``data`` one byte at a time."""
    return [data[i : i + 1] for i in range(len(data))]


def random_splits(data: bytes, rng: random.Random, max_piece: int = 17) -> list[bytes]:
    """``data`` cut at random places (pieces of 0..max_piece bytes)."""
    pieces: list[bytes] = []
    i = 0
    while i < len(data):
        n = rng.randint(0, max_piece)
        pieces.append(data[i : i + n])
        i += n
    return pieces


def encode(fmt: ModuleType, events: Iterable[ir.StreamEvent], **kwargs: Any) -> bytes:
    """``events`` through a fresh ``fmt.StreamEncoder``."""
    encoder = fmt.StreamEncoder(
        id=kwargs.pop("id", "resp_1"), model=kwargs.pop("model", "m"), **kwargs
    )
    return b"".join(encoder.encode(e) for e in events)


def accumulate(events: Iterable[ir.StreamEvent]) -> ir.ChatResponse:
    """The response the events add up to."""
    acc = ir.StreamAccumulator()
    for event in events:
        acc.feed(event)
    return acc.result()


def mock_client(
    handler: Callable[[httpx2.Request], httpx2.Response],
) -> httpx2.Client:
    """An httpx2 client whose requests ``handler`` answers in-process (for the official SDKs)."""
    return httpx2.Client(transport=httpx2.MockTransport(handler))


def sse_response(body: bytes) -> httpx2.Response:
    """A 200 ``text/event-stream`` response carrying ``body``."""
    return httpx2.Response(200, headers={"content-type": "text/event-stream"}, content=body)
