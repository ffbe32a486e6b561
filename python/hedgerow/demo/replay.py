"""Replay an incident against hedgerow with the traffic of its victims, and measure it.

On one machine, with no keys and no services: the provider simulator plays the scenario
(time-compressed), the gateway serves on a loopback port with its embedded SQLite queue and
in-process workers, and clients drive what the outages broke — streaming user chat on
several routes, real-time classification, background summarisation jobs — while the replay
records what every client saw.
"""

from __future__ import annotations

import asyncio
import random
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import orjson
from aiohttp import web

from hedgerow.config import Config, parse_config
from hedgerow.demo.clock import ScaledClock
from hedgerow.jobs.api import open_queue
from hedgerow.routing import Gateway
from hedgerow.routing.events import Event
from hedgerow.server.app import create_app
from hedgerow.server.jobs import start_workers
from hedgerow.sim.mock import RunningMock, start_mock
from hedgerow.sim.scenario import Scenario
from hedgerow.sim.state import ModelConfig

__all__ = ["ChatSample", "JobSample", "Replay", "ReplayOptions", "run_replay"]

# The features of the article's tier table, as routes: primary, degraded, minimal.
CHAT_ROUTES = {
    "support-chat": ("anthropic/claude-sonnet-4-6", "openai/gpt-5.5"),
    "writing-assistant": ("anthropic/claude-opus-4-8", "gemini/gemini-3-5-pro"),
    "code-review": ("anthropic/claude-opus-4-6", "openai/gpt-5.5"),
}
CLASSIFY_ROUTE = ("classify", "anthropic/claude-haiku-4-5", "gemini/gemini-3-5-flash")
# Background summarisation: one route per model, so each model's backlog shows on its own.
JOB_MODELS = ("claude-opus-4-6", "claude-sonnet-4-6", "claude-opus-4-8")

TICKETS = (
    "I was charged twice for my plan, please refund one payment",
    "The dashboard shows a 503 error since this morning",
    "How do I reset my password?",
    "Can you explain the new export feature?",
)


@dataclass
class ReplayOptions:
    """How to replay: which scenario, how fast, how much traffic (wall requests/s)."""

    scenario: Scenario
    wall_seconds: float = 100.0
    lead_in: float = 600.0  # simulated seconds of healthy traffic before the incident
    chat_rate: float = 14.0
    classify_rate: float = 6.0
    job_rate: float = 2.0  # per summarisation model
    # How often the gateway evaluates its alert rules and polls the simulator's status page
    # (which posts the incident at the scenario's status lag), in simulated seconds; at
    # most every 50 wall ms.
    observe_every: float = 10.0
    drain_grace: float = 20.0  # wall seconds allowed for the last jobs after the scenario
    progress: Callable[[str], None] | None = None
    seed: int = 7


@dataclass
class ChatSample:
    """What one client request saw."""

    route: str
    at: float  # simulated seconds since the incident began, when sent
    stream: bool
    status: int
    tier: str  # "0", "1", "minimal", or "" when it failed
    deployment: str
    ttfc: float | None  # wall seconds to the first content (or whole answer)
    error: str | None


@dataclass
class JobSample:
    """One background job: when it was submitted and when it was delivered."""

    job_id: str
    model: str
    submitted: float
    delivered: float | None = None
    state: str = "queued"


@dataclass
class Replay:
    """Everything a replay recorded."""

    scenario: Scenario
    clock: ScaledClock
    options: ReplayOptions
    chats: list[ChatSample] = field(default_factory=list)
    jobs: list[JobSample] = field(default_factory=list)
    events: list[tuple[float, Event]] = field(default_factory=list)
    end: float = 0.0


def _config(mock: RunningMock, tmp: Path, every: float) -> Config:
    """The demo's gateway; ``every``: wall seconds between alert evaluations and between
    status-page polls (the same few simulated seconds whatever the replay's speed)."""
    routes: dict[str, Any] = {}
    chat_policy = {
        "retry": {"max_retries": 0},
        "hedge": {"after": 0.4, "budget": 0.05},
        "timeouts": {"first_content": 5.0},
    }
    for name, (primary, degraded) in CHAT_ROUTES.items():
        routes[name] = {
            "tiers": [[primary], [degraded]],
            "minimal": [
                {"kind": "cache"},
                {"kind": "template", "text": "We are a little busy: please try again shortly."},
            ],
            **chat_policy,
        }
    name, primary, degraded = CLASSIFY_ROUTE
    routes[name] = {
        "tiers": [[primary], [degraded]],
        "minimal": {"kind": "rule", "function": "hedgerow.demo.rules:classify_ticket"},
        **chat_policy,
    }
    for model in JOB_MODELS:
        routes[f"summarise-{model.removeprefix('claude-')}"] = {
            "tiers": [[f"anthropic/{model}"]],
            "retry": {"max_retries": 0},
        }
    raw = {
        "providers": {
            "anthropic": {
                "kind": "anthropic",
                "base_url": mock.anthropic_base_url,
                "api_key": "demo-anthropic",
            },
            "openai": {
                "kind": "openai",
                "base_url": mock.openai_base_url,
                "api_key": "demo-openai",
            },
            "gemini": {
                "kind": "gemini",
                "base_url": mock.gemini_base_url,
                "api_key": "demo-gemini",
            },
        },
        "routes": routes,
        "observe": {
            # The replay prints its own progress line; the per-request log would bury it.
            "request_log": False,
            # The simulator serves Anthropic's status page as the scenario plays it: the
            # gateway polls it as it would status.anthropic.com (interval in wall seconds).
            "status_pages": {"anthropic": {"url": mock.url, "interval": every, "timeout": 2.0}},
            "alerts": {"evaluate_every": every},
        },
        # Simulated seconds (the replay's clock drives the breakers).
        "breaker": {
            "consecutive_failures": 5,
            "minimum_calls": 10,
            "window": 120,
            "open_base": 20,
            "open_max": 60,
        },
        "jobs": {
            "path": str(tmp / "jobs.db"),
            "sqlite_synchronous": "normal",
            "concurrency": 32,
            "lease_seconds": 3600,
            "max_attempts": 1000,
            "max_age_seconds": 86_400,
            "backoff_base": 5,
            "backoff_max": 30,
            "poll_interval": 0.05,
        },
    }
    return parse_config(orjson.dumps(raw).decode(), env={})


def _model_timings(mock: RunningMock) -> None:
    """Answers take a little time, as real ones do (wall seconds: they are not compressed)."""
    for model, ttfb in (
        ("claude-*", 0.06),
        ("gpt-*", 0.09),
        ("gemini-*", 0.08),
    ):
        mock.state.set_model(model, ModelConfig(ttfb=ttfb, tokens_per_second=600, reply_tokens=24))


async def _chat_request(
    session: aiohttp.ClientSession, url: str, replay: Replay, route: str, stream: bool, text: str
) -> None:
    clock = replay.clock
    sent = clock.elapsed()
    body: dict[str, Any] = {
        "model": route,
        "messages": [{"role": "user", "content": text}],
        "max_tokens": 64,
    }
    if stream:
        body["stream"] = True
    started = time.monotonic()
    status, tier, deployment, error, ttfc = 0, "", "", None, None
    try:
        async with session.post(url, json=body) as response:
            status = response.status
            tier = response.headers.get("x-hedgerow-tier", "")
            deployment = response.headers.get("x-hedgerow-deployment", "")
            if status != 200:
                error = f"HTTP {status}"
                await response.read()
            elif stream:
                async for line in response.content:
                    if (
                        ttfc is None
                        and line.startswith(b"data:")
                        and b'"content":"' in line
                        and b'"content":""' not in line
                    ):
                        ttfc = time.monotonic() - started
                    if line.startswith(b'data: {"error"'):
                        error = "error event after the first content"
            else:
                data = await response.read()
                ttfc = time.monotonic() - started
                if b'"error"' in data[:20]:
                    error = "error body"
    except (aiohttp.ClientError, TimeoutError) as exc:
        error = f"{type(exc).__name__}"
    replay.chats.append(
        ChatSample(route, sent, stream, status, tier if not error else "", deployment, ttfc, error)
    )


async def _submit_job(
    session: aiohttp.ClientSession, url: str, replay: Replay, model: str, n: int
) -> None:
    route = f"summarise-{model.removeprefix('claude-')}"
    body = {
        "route": route,
        "idempotency_key": f"{model}-{n}",
        "request": {
            "messages": [{"role": "user", "content": f"Summarise document {n}."}],
            "max_tokens": 48,
        },
    }
    sent = replay.clock.elapsed()
    async with session.post(url, json=body) as response:
        data = await response.json()
        if response.status in (200, 202):
            replay.jobs.append(JobSample(data["id"], model, sent))


async def _paced(rate: float, until: Callable[[], bool], fire: Callable[[int], Any]) -> None:
    """Start ``fire(n)`` at ``rate`` per wall second (open loop) until ``until()``."""
    tasks: set[asyncio.Task[Any]] = set()
    loop = asyncio.get_running_loop()
    begin = loop.time()
    n = 0
    while not until():
        delay = begin + n / rate - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        task = asyncio.create_task(fire(n))
        tasks.add(task)
        task.add_done_callback(tasks.discard)
        n += 1
    if tasks:
        await asyncio.gather(*tasks, return_exceptions=True)


async def run_replay(options: ReplayOptions) -> Replay:
    """Play ``options.scenario`` against a gateway with client traffic; what clients saw."""
    scenario = options.scenario
    total = options.lead_in + scenario.duration
    clock = ScaledClock(scale=total / options.wall_seconds, lead_in=options.lead_in)
    replay = Replay(scenario, clock, options)
    rng = random.Random(options.seed)
    tmp = Path(tempfile.mkdtemp(prefix="hedgerow-demo-"))
    scenario.time_scale = clock.scale
    async with start_mock(scenario=scenario, seed=options.seed) as mock:
        player = mock.state.scenario
        assert player is not None
        player.seek(clock.elapsed())  # the simulator's scenario runs on the replay's time
        _model_timings(mock)
        config = _config(mock, tmp, max(0.05, clock.wall(options.observe_every)))
        gateway = Gateway(config, clock=clock)
        gateway.subscribe(lambda event: replay.events.append((clock.elapsed(), event)))
        app = create_app(gateway, config)
        queue = open_queue(config.jobs)
        app.cleanup_ctx.append(start_workers(gateway, queue, config.jobs, count=1, clock=clock))
        runner = web.AppRunner(app, handler_cancellation=True, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        base = f"http://127.0.0.1:{runner.addresses[0][1]}"
        try:
            await _drive(replay, base, rng, queue)
        finally:
            await runner.cleanup()  # stops the workers first
            await queue.close()
    return replay


async def _drive(replay: Replay, base: str, rng: random.Random, queue: Any) -> None:
    clock, options, scenario = replay.clock, replay.options, replay.scenario
    end = scenario.duration

    def over() -> bool:
        return clock.elapsed() >= end

    connector = aiohttp.TCPConnector(limit=256)
    async with aiohttp.ClientSession(
        connector=connector, timeout=aiohttp.ClientTimeout(total=30)
    ) as session:
        chat_url = f"{base}/v1/chat/completions"
        routes = list(CHAT_ROUTES)

        def chat(n: int) -> Any:
            route = routes[n % len(routes)]
            return _chat_request(
                session,
                chat_url,
                replay,
                route,
                route != "code-review",
                f"Question {rng.random():.6f}",
            )

        def classify(n: int) -> Any:
            return _chat_request(
                session, chat_url, replay, CLASSIFY_ROUTE[0], False, TICKETS[n % len(TICKETS)]
            )

        def job(n: int) -> Any:
            return _submit_job(
                session, f"{base}/v1/jobs", replay, JOB_MODELS[n % len(JOB_MODELS)], n
            )

        progress = asyncio.create_task(_progress(replay))
        try:
            await asyncio.gather(
                _paced(options.chat_rate, over, chat),
                _paced(options.classify_rate, over, classify),
                _paced(options.job_rate * len(JOB_MODELS), over, job),
            )
            await _await_jobs(replay, queue)
        finally:
            progress.cancel()
    replay.end = clock.elapsed()


async def _await_jobs(replay: Replay, queue: Any) -> None:
    """Wait (bounded) until every submitted job is delivered; record when each was."""
    deadline = time.monotonic() + replay.options.drain_grace
    pending = {j.job_id: j for j in replay.jobs}
    while True:
        for job_id, sample in list(pending.items()):
            job = await queue.get(job_id)
            if job is None:
                continue
            sample.state = job.state.value
            if sample.state in ("succeeded", "dead"):
                if job.finished_at is not None:
                    sample.delivered = replay.clock.to_elapsed(job.finished_at)
                del pending[job_id]
        if not pending or time.monotonic() > deadline:
            return
        await asyncio.sleep(0.1)


async def _progress(replay: Replay) -> None:
    report = replay.options.progress
    if report is None:
        return
    while True:
        await asyncio.sleep(0.5)
        t = replay.clock.elapsed()
        chats = replay.chats
        errors = sum(1 for c in chats if c.error)
        tiers = {"0": 0, "1": 0, "minimal": 0}
        for c in chats[-200:]:
            if c.tier in tiers:
                tiers[c.tier] += 1
        shown = max(1, sum(tiers.values()))
        sign = "-" if t < 0 else "+"
        minutes, seconds = divmod(int(abs(t)), 60)
        phase = replay.scenario.phase_at(max(t, 0.0))[1] if t >= 0 else "healthy lead-in"
        report(
            f"[{sign}{minutes // 60:02d}:{minutes % 60:02d}:{seconds:02d}] {phase or 'healthy'} | "
            f"requests {len(chats)} errors {errors} | primary {tiers['0'] * 100 // shown}% "
            f"degraded {tiers['1'] * 100 // shown}% minimal {tiers['minimal'] * 100 // shown}% | "
            f"jobs {len(replay.jobs)}"
        )


def stderr_progress(line: str) -> None:
    """Overwrite one status line on stderr."""
    sys.stderr.write("\r" + line[:150].ljust(150))
    sys.stderr.flush()
