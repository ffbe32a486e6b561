"""Fixtures of the simulator tests: a simulator on a loopback port and the official SDKs
pointed at it, with retries off (so upstream counts are exact) and short timeouts (so a hang
fails fast)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable

import anthropic
import openai
import pytest
from google import genai
from google.genai import types as genai_types

from hedgerow.sim.mock import RunningMock, start_mock

# Long enough for any honest answer on loopback, short enough that a hang test is quick.
CLIENT_TIMEOUT = 2.0


@pytest.fixture
async def sim() -> AsyncIterator[RunningMock]:
    """A fresh simulator on a free loopback port."""
    async with start_mock() as running:
        yield running


@pytest.fixture
async def oai(sim: RunningMock) -> AsyncIterator[openai.AsyncOpenAI]:
    """The OpenAI SDK against ``sim``."""
    async with openai.AsyncOpenAI(
        base_url=sim.openai_base_url, api_key="test", max_retries=0, timeout=CLIENT_TIMEOUT
    ) as client:
        yield client


@pytest.fixture
async def claude(sim: RunningMock) -> AsyncIterator[anthropic.AsyncAnthropic]:
    """The Anthropic SDK against ``sim``."""
    async with anthropic.AsyncAnthropic(
        base_url=sim.anthropic_base_url, api_key="test", max_retries=0, timeout=CLIENT_TIMEOUT
    ) as client:
        yield client


def gemini_client(
    base_url: str, api_key: str = "test", timeout: float = CLIENT_TIMEOUT
) -> genai.Client:
    """The Gemini SDK against ``base_url``, retries off.

    Without ``retry_options`` google-genai still retries a dropped connection once, after
    sleeping 1-10 s at random; ``attempts=1`` turns that off too.
    """
    options = genai_types.HttpOptions(
        base_url=base_url,
        timeout=int(timeout * 1000),
        retry_options=genai_types.HttpRetryOptions(attempts=1),
    )
    return genai.Client(api_key=api_key, http_options=options)


GeminiFactory = Callable[..., genai.client.AsyncClient]


@pytest.fixture
async def make_gemini(sim: RunningMock) -> AsyncIterator[GeminiFactory]:
    """Makes Gemini SDK clients (``api_key``, ``timeout``) against ``sim``; closes them."""
    made: list[genai.Client] = []

    def make(api_key: str = "test", timeout: float = CLIENT_TIMEOUT) -> genai.client.AsyncClient:
        made.append(gemini_client(sim.gemini_base_url, api_key, timeout))
        return made[-1].aio

    yield make
    for client in made:
        await client.aio.aclose()
        client.close()


@pytest.fixture
def gem(make_gemini: GeminiFactory) -> genai.client.AsyncClient:
    """The Gemini SDK's async face against ``sim``."""
    return make_gemini()
