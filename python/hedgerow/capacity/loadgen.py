"""The load generator of ``hedgerow bench``: an open-loop HTTP client in its own process.

``hedgerow bench`` starts it as ``python -m hedgerow.capacity.loadgen`` pinned to a core of
its own (never the gateway's) and talks to it in JSON lines: one command on stdin, its
result on stdout. Open loop: request *i* of a run at ``rate`` is due at ``i / rate``
seconds and is sent then whatever earlier answers do, and its latency counts from when it
was due (a late send counts against the latency, so a saturated generator cannot hide
it; ``send_lag_ms`` says how late sends were).

Each request scripts its own latency in the simulator (``hedgerow.sim.state.TIMING_PREFIX``
in ``user``): its first-content delay, pace and length, drawn from the mix. The latency
hedgerow *added* is what the client measured minus that scripted latency: to the first
content for a stream, to the whole answer otherwise.

Commands::

    {"op": "run", "url": U, "model": M, "rate": R, "seconds": S, "mix": {...}, "seed": N}
        -> {"event": "sent"} when the last request is sent, then the result
    {"op": "hold", "url": U, "model": M, "streams": N, "tps": T, "seconds": S}
        -> {"event": "open", "open": K} once every stream has its first content, then the
           result when they are closed
    {"op": "quit"}
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import re
import resource
import sys
import time
from dataclasses import asdict, dataclass, field
from typing import Any

import aiohttp
import orjson

from hedgerow.capacity.stats import quantile
from hedgerow.sim.state import TIMING_PREFIX

__all__ = ["Mix", "main"]

# A data line with content in it (OpenAI and Anthropic streams), not an empty role delta.
_CONTENT = re.compile(rb'"(?:content|text)":"[^"]')

_WORDS = [
    "the",
    "quarterly",
    "report",
    "shows",
    "revenue",
    "growth",
    "across",
    "every",
    "region",
    "while",
    "costs",
    "stayed",
    "flat",
    "and",
    "the",
    "support",
    "team",
    "resolved",
    "most",
    "tickets",
    "within",
    "a",
    "day",
]


@dataclass
class Mix:
    """The request mix: the share of streams and the distributions each request's timing
    and size are drawn from (uniformly from each list: give a list shaped like the
    distribution, e.g. its deciles)."""

    stream_share: float = 0.8
    ttfb: list[float] = field(default_factory=lambda: [0.3, 0.5, 0.8])
    tokens_per_second: list[float] = field(default_factory=lambda: [50.0, 100.0, 200.0])
    reply_tokens: list[int] = field(default_factory=lambda: [40, 80, 160])
    prompt_tokens: list[int] = field(default_factory=lambda: [100, 500, 2000])

    def scripted_seconds(self, ttfb: float, tps: float, tokens: int, stream: bool) -> float:
        """What the simulator takes by design: to the first token of a stream (one token at
        ``tps`` after the delay), to the whole answer otherwise."""
        return ttfb + (1 if stream else tokens) / tps


def _prompt(tokens: int, rng: random.Random) -> str:
    start = rng.randrange(len(_WORDS))
    return " ".join(_WORDS[(start + i) % len(_WORDS)] for i in range(max(1, tokens)))


class _Run:
    """One open-loop run's measurements."""

    def __init__(self) -> None:
        self.added: list[float] = []
        self.lag: list[float] = []
        self.errors: dict[str, int] = {}
        self.ok = 0
        self.open_streams = 0
        self.stream_samples: list[int] = []

    def error(self, kind: str) -> None:
        self.errors[kind] = self.errors.get(kind, 0) + 1


async def _one(
    session: aiohttp.ClientSession,
    url: str,
    body: dict[str, Any],
    due: float,
    scripted: float,
    run: _Run,
) -> None:
    stream = bool(body.get("stream"))
    try:
        async with session.post(url, json=body) as response:
            if response.status != 200:
                run.error(f"HTTP {response.status}")
                await response.read()
                return
            if not stream:
                data = await response.read()
                if b'"error"' in data[:40]:
                    run.error("error body")
                    return
                run.added.append(time.perf_counter() - due - scripted)
                run.ok += 1
                return
            run.open_streams += 1
            try:
                first: float | None = None
                failed = False
                async for chunk in response.content.iter_any():
                    if first is None and _CONTENT.search(chunk):
                        first = time.perf_counter()
                    failed = failed or b'"error"' in chunk
                if failed:
                    run.error("error event")
                elif first is None:
                    run.error("no content")
                else:
                    run.added.append(first - due - scripted)
                    run.ok += 1
            finally:
                run.open_streams -= 1
    except (aiohttp.ClientError, TimeoutError) as exc:
        run.error(type(exc).__name__)


async def _sample_streams(run: _Run) -> None:
    while True:
        await asyncio.sleep(0.1)
        run.stream_samples.append(run.open_streams)


def _ms(value: float | None) -> float | None:
    return None if value is None else round(value * 1000, 2)


async def run_load(
    session: aiohttp.ClientSession,
    url: str,
    model: str,
    rate: float,
    seconds: float,
    mix: Mix,
    seed: int,
) -> dict[str, Any]:
    """Send ``rate`` requests/s for ``seconds`` (open loop); what they measured."""
    rng = random.Random(seed)
    run = _Run()
    tasks: set[asyncio.Task[None]] = set()
    count = max(1, int(rate * seconds))
    longest = 0.0
    sampler = asyncio.create_task(_sample_streams(run))
    cpu0 = time.process_time()
    begin = time.perf_counter() + 0.05
    for i in range(count):
        stream = rng.random() < mix.stream_share
        ttfb = rng.choice(mix.ttfb)
        tps = rng.choice(mix.tokens_per_second)
        tokens = rng.choice(mix.reply_tokens)
        body: dict[str, Any] = {
            "model": model,
            "messages": [{"role": "user", "content": _prompt(rng.choice(mix.prompt_tokens), rng)}],
            "max_tokens": tokens,
            "user": f"{TIMING_PREFIX}ttfb={ttfb},tps={tps},tokens={tokens}",
        }
        if stream:
            body["stream"] = True
        longest = max(longest, ttfb + tokens / tps)
        due = begin + i / rate
        delay = due - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        run.lag.append(max(0.0, time.perf_counter() - due))
        scripted = mix.scripted_seconds(ttfb, tps, tokens, stream)
        task = asyncio.create_task(_one(session, url, body, due, scripted, run))
        tasks.add(task)
        task.add_done_callback(tasks.discard)
    sent_for = time.perf_counter() - begin
    _emit({"event": "sent"})  # the parent's CPU window is the sending time
    if tasks:
        # Answers still running get what their scripted length allows, and a margin.
        _, late = await asyncio.wait(set(tasks), timeout=longest + 10.0)
        for task in late:
            task.cancel()
        if late:
            await asyncio.gather(*late, return_exceptions=True)
            run.errors["unfinished"] = run.errors.get("unfinished", 0) + len(late)
    elapsed = time.perf_counter() - begin
    sampler.cancel()
    # The steady part of the run: after the first scripted answer lengths have filled in.
    samples = run.stream_samples[len(run.stream_samples) // 4 : max(1, int(sent_for * 10))]
    return {
        "offered_rps": rate,
        "sent": count,
        "ok": run.ok,
        "errors": run.errors,
        "send_seconds": round(sent_for, 3),
        "elapsed": round(elapsed, 3),
        "added_ms": {
            "p50": _ms(quantile(run.added, 0.5)),
            "p99": _ms(quantile(run.added, 0.99)),
            "max": _ms(max(run.added, default=None)),
        },
        "send_lag_ms": {"p99": _ms(quantile(run.lag, 0.99)), "max": _ms(max(run.lag))},
        "open_streams": {
            "mean": round(sum(samples) / len(samples), 1) if samples else 0.0,
            "max": max(samples, default=0),
        },
        "cpu_seconds": round(time.process_time() - cpu0, 3),
    }


async def hold_streams(
    session: aiohttp.ClientSession, url: str, model: str, streams: int, tps: float, seconds: float
) -> dict[str, Any]:
    """Open ``streams`` streams paced at ``tps`` tokens/s, say so once each has its first
    content, keep them open ``seconds``, then close them."""
    opened = 0
    failed: dict[str, int] = {}
    every_open = asyncio.Event()
    release = asyncio.Event()
    tokens = int(tps * (seconds + 60)) + 1  # longer than the hold: closed by the client

    async def one(n: int) -> None:
        nonlocal opened
        body = {
            "model": model,
            "stream": True,
            "max_tokens": tokens,
            "messages": [{"role": "user", "content": f"hold {n}"}],
            "user": f"{TIMING_PREFIX}ttfb=0,tps={tps},tokens={tokens}",
        }
        try:
            async with session.post(url, json=body) as response:
                if response.status != 200:
                    failed[f"HTTP {response.status}"] = failed.get(f"HTTP {response.status}", 0) + 1
                    return
                async for chunk in response.content.iter_any():
                    if _CONTENT.search(chunk):
                        break
                opened += 1
                if opened == streams:
                    every_open.set()
                await release.wait()
        except (aiohttp.ClientError, TimeoutError) as exc:
            failed[type(exc).__name__] = failed.get(type(exc).__name__, 0) + 1

    tasks = []
    for n in range(streams):
        tasks.append(asyncio.create_task(one(n)))
        if n % 100 == 99:
            await asyncio.sleep(0.01)  # pace the connects: a burst of SYNs is not the test
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(every_open.wait(), timeout=30 + streams / 200)
    _emit({"event": "open", "open": opened, "errors": failed})
    await asyncio.sleep(seconds)
    release.set()
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    return {"streams": streams, "opened": opened, "errors": failed}


def _emit(data: dict[str, Any]) -> None:
    sys.stdout.write(orjson.dumps(data).decode() + "\n")
    sys.stdout.flush()


async def _serve() -> None:
    loop = asyncio.get_running_loop()
    connector = aiohttp.TCPConnector(limit=0, force_close=False)
    timeout = aiohttp.ClientTimeout(total=None, sock_connect=10)
    # The simulator wants a key; the gateway ignores it in local mode.
    headers = {"authorization": "Bearer hedgerow-bench"}
    async with aiohttp.ClientSession(
        connector=connector, timeout=timeout, headers=headers
    ) as session:
        while True:
            line = await loop.run_in_executor(None, sys.stdin.readline)
            if not line:
                return
            command = orjson.loads(line)
            op = command.get("op")
            if op == "quit":
                return
            if op == "run":
                mix = Mix(**command.get("mix", {}))
                result = await run_load(
                    session,
                    command["url"],
                    command["model"],
                    float(command["rate"]),
                    float(command["seconds"]),
                    mix,
                    int(command.get("seed", 0)),
                )
                _emit(result)
            elif op == "hold":
                result = await hold_streams(
                    session,
                    command["url"],
                    command["model"],
                    int(command["streams"]),
                    float(command["tps"]),
                    float(command["seconds"]),
                )
                _emit(result)
            else:
                _emit({"error": f"unknown op {op!r}"})


def main() -> None:
    """Serve commands on stdin until ``quit`` or end of input."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))  # thousands of streams
    try:
        import uvloop

        uvloop.install()
    except ImportError:  # pragma: no cover - uvloop is a dependency off Windows
        pass
    asyncio.run(_serve())


def mix_dict(mix: Mix) -> dict[str, Any]:
    """``mix`` as the JSON a ``run`` command carries."""
    return asdict(mix)


if __name__ == "__main__":
    main()
