"""The google-genai SDK against the simulator: content, streams, function calls, faults."""

from __future__ import annotations

import time
from collections.abc import Callable

import aiohttp
import httpx
import pytest
from google import genai
from google.genai import errors, types

from hedgerow.sim.mock import RunningMock

GeminiFactory = Callable[..., genai.client.AsyncClient]

# google-genai subclasses aiohttp's ClientSession for every async session it opens, which
# aiohttp deprecates; the warning is theirs, not ours.
pytestmark = pytest.mark.filterwarnings(
    "ignore:Inheritance class AiohttpClientSession:DeprecationWarning"
)

MODEL = "gemini-2.5-flash"
WEATHER = types.Tool(
    function_declarations=[
        types.FunctionDeclaration(
            name="get_weather",
            description="Weather for a city",
            parameters_json_schema={
                "type": "object",
                "properties": {
                    "city": {"type": "string"},
                    "days": {"type": "integer", "minimum": 1, "maximum": 3},
                    "unit": {"type": "string", "enum": ["c", "f"]},
                },
                "required": ["city", "days", "unit"],
            },
        )
    ]
)
MANUAL = types.AutomaticFunctionCallingConfig(disable=True)

Aio = genai.client.AsyncClient


async def stream(
    gem: Aio, contents: str = "hello", **config: object
) -> tuple[str, list[types.GenerateContentResponse]]:
    chunks = [
        chunk
        async for chunk in await gem.models.generate_content_stream(
            model=MODEL,
            contents=contents,
            config=types.GenerateContentConfig(**config),  # type: ignore[arg-type]
        )
    ]
    return "".join(c.text or "" for c in chunks), chunks


async def test_generate_and_stream_agree(gem: Aio, sim: RunningMock) -> None:
    whole = await gem.models.generate_content(model=MODEL, contents="hello")
    assert whole.text and whole.candidates
    assert whole.candidates[0].finish_reason == types.FinishReason.STOP
    usage = whole.usage_metadata
    assert usage is not None and usage.candidates_token_count == 24
    assert usage.total_token_count == (usage.prompt_token_count or 0) + 24
    text, chunks = await stream(gem)
    assert text == whole.text
    last = chunks[-1]
    assert last.candidates and last.candidates[0].finish_reason == types.FinishReason.STOP
    assert last.usage_metadata is not None and last.usage_metadata.candidates_token_count == 24
    paths = sim.state.counters.state()[MODEL]["paths"]
    assert sorted(path.rpartition(":")[2] for path in paths) == [
        "generateContent",
        "streamGenerateContent",
    ]
    assert sum(paths.values()) == 2


async def test_max_output_tokens_and_stop(gem: Aio) -> None:
    full = (await gem.models.generate_content(model=MODEL, contents="hello")).text or ""
    capped = await gem.models.generate_content(
        model=MODEL, contents="hello", config=types.GenerateContentConfig(max_output_tokens=4)
    )
    assert capped.candidates and capped.candidates[0].finish_reason == types.FinishReason.MAX_TOKENS
    assert full.startswith(capped.text or "-") and len((capped.text or "").split()) == 4
    word = full.split()[2]
    stopped = await gem.models.generate_content(
        model=MODEL, contents="hello", config=types.GenerateContentConfig(stop_sequences=[word])
    )
    assert stopped.text == full[: full.find(word)]


async def test_function_call_then_answer(gem: Aio) -> None:
    config = types.GenerateContentConfig(tools=[WEATHER], automatic_function_calling=MANUAL)
    called = await gem.models.generate_content(model=MODEL, contents="weather?", config=config)
    (call,) = called.function_calls or []
    assert call.name == "get_weather" and call.args is not None
    assert set(call.args) == {"city", "days", "unit"} and call.args["unit"] in ("c", "f")
    _, chunks = await stream(gem, "weather?", tools=[WEATHER], automatic_function_calling=MANUAL)
    streamed = [c for chunk in chunks for c in chunk.function_calls or []]
    assert [(c.name, c.args) for c in streamed] == [(call.name, call.args)]
    history = [
        types.Content(role="user", parts=[types.Part.from_text(text="weather?")]),
        types.Content(role="model", parts=[types.Part(function_call=call)]),
        types.Content(
            role="user",
            parts=[
                types.Part.from_function_response(name="get_weather", response={"output": "sun"})
            ],
        ),
    ]
    answered = await gem.models.generate_content(model=MODEL, contents=history, config=config)
    assert answered.text and not answered.function_calls


async def test_count_tokens_and_models(gem: Aio) -> None:
    counted = await gem.models.count_tokens(model=MODEL, contents="hello")
    generated = await gem.models.generate_content(model=MODEL, contents="hello")
    assert generated.usage_metadata is not None
    assert counted.total_tokens == generated.usage_metadata.prompt_token_count
    names = [m.name async for m in await gem.models.list()]
    assert f"models/{MODEL}" in names


@pytest.mark.parametrize(
    ("status", "error", "name"),
    [
        (400, errors.ClientError, "INVALID_ARGUMENT"),
        (403, errors.ClientError, "PERMISSION_DENIED"),
        (429, errors.ClientError, "RESOURCE_EXHAUSTED"),
        (500, errors.ServerError, "INTERNAL"),
        (503, errors.ServerError, "UNAVAILABLE"),
        (504, errors.ServerError, "DEADLINE_EXCEEDED"),
    ],
)
@pytest.mark.parametrize("streamed", [False, True])
async def test_http_errors(
    gem: Aio, sim: RunningMock, status: int, error: type[errors.APIError], name: str, streamed: bool
) -> None:
    sim.set_faults("gemini-*", {"kind": "error", "status": status, "count": 1, "retry_after": 3})
    with pytest.raises(error) as caught:
        if streamed:
            await stream(gem)
        else:
            await gem.models.generate_content(model=MODEL, contents="hello")
    assert caught.value.code == status and caught.value.status == name
    details = caught.value.details["error"].get("details")
    if status == 429:
        assert details == [
            {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "3s"}
        ]
    else:
        assert details is None
    await gem.models.generate_content(model=MODEL, contents="hello")
    assert sim.outcomes(MODEL) == {f"error_{status}": 1, "ok": 1}


async def test_in_stream_error_chunk(gem: Aio, sim: RunningMock) -> None:
    sim.set_faults(MODEL, {"kind": "stream_error", "status": 503, "after_tokens": 2})
    texts: list[str] = []
    with pytest.raises(errors.ServerError) as caught:
        async for chunk in await gem.models.generate_content_stream(model=MODEL, contents="hello"):
            texts.append(chunk.text or "")
    assert caught.value.code == 503 and caught.value.status == "UNAVAILABLE"
    assert len("".join(texts).split()) == 2


async def test_cut_stream_has_no_finish_reason(gem: Aio, sim: RunningMock) -> None:
    sim.set_faults(MODEL, {"kind": "cut", "after_tokens": 3})
    text, chunks = await stream(gem)
    assert len(text.split()) == 3
    assert all(c.candidates and c.candidates[0].finish_reason is None for c in chunks)


async def test_malformed_chunk(gem: Aio, sim: RunningMock) -> None:
    sim.set_faults(MODEL, {"kind": "malformed", "after_tokens": 1})
    with pytest.raises(errors.UnknownApiResponseError):
        await stream(gem)


async def test_reset_and_hang(sim: RunningMock, make_gemini: GeminiFactory) -> None:
    sim.set_faults(MODEL, {"kind": "reset", "count": 1}, {"kind": "hang", "count": 1})
    client = make_gemini(timeout=0.3)
    with pytest.raises(aiohttp.ServerDisconnectedError):
        await client.models.generate_content(model=MODEL, contents="hello")
    began = time.monotonic()
    with pytest.raises(TimeoutError):
        await client.models.generate_content(model=MODEL, contents="hello")
    assert time.monotonic() - began >= 0.3
    await client.models.generate_content(model=MODEL, contents="hello")
    assert sim.outcomes(MODEL) == {"reset": 1, "hang": 1, "ok": 1}


async def test_api_key_checks(sim: RunningMock, make_gemini: GeminiFactory) -> None:
    sim.state.require_key = "gem-right"
    with pytest.raises(errors.ClientError) as caught:
        await make_gemini(api_key="gem-wrong").models.generate_content(model=MODEL, contents="hi")
    assert caught.value.code == 400 and caught.value.status == "INVALID_ARGUMENT"
    (detail,) = caught.value.details["error"]["details"]
    assert detail["reason"] == "API_KEY_INVALID"
    url = f"{sim.url}/v1beta/models/{MODEL}:generateContent"
    body = {"contents": [{"role": "user", "parts": [{"text": "hi"}]}]}
    async with httpx.AsyncClient() as raw:
        missing = await raw.post(url, json=body)
        right = await raw.post(url, json=body, headers={"x-goog-api-key": "gem-right"})
    assert missing.status_code == 403 and missing.json()["error"]["status"] == "PERMISSION_DENIED"
    assert right.status_code == 200
    assert sim.outcomes(MODEL) == {"auth_error": 2, "ok": 1}


async def test_stream_without_alt_sse_is_a_json_array(sim: RunningMock) -> None:
    url = f"{sim.url}/v1beta/models/{MODEL}:streamGenerateContent"
    body = {"contents": [{"role": "user", "parts": [{"text": "hello"}]}]}
    async with httpx.AsyncClient() as raw:
        response = await raw.post(url, json=body, headers={"x-goog-api-key": "k"})
        sse = await raw.post(url + "?alt=sse", json=body, headers={"x-goog-api-key": "k"})
    chunks = response.json()
    assert isinstance(chunks, list) and len(chunks) > 1
    assert chunks[-1]["candidates"][0]["finishReason"] == "STOP"
    assert sse.headers["content-type"].startswith("text/event-stream")
    assert sse.text.count("data: ") == len(chunks)
