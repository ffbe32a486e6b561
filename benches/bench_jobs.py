"""Background jobs: submit throughput (SQLite, Redis) and the drain after an outage.

* submit: ``--jobs`` concurrent ``submit()`` calls (commits batched by the queue), jobs/s;
  SQLite with ``synchronous=full`` (an fsync per commit) and ``normal``, and a real
  ``redis-server`` (started here, no persistence, and with ``appendfsync always``);
* drain: ``--drain-jobs`` jobs submitted while the only deployment answers 529 to
  everything (``hedgerow mock`` in its own process, fault set through its admin API), a
  worker running all along; then the fault is cleared and the time until every job has
  succeeded is measured. The route's rate limit is ``--rate`` jobs/s (``jobs.rate_limits``,
  and the deployment's ``rpm``); the target is a drain at >= 90 % of it. Every job is
  counted twice: as ``succeeded`` in the queue and as an ``ok`` answer in the simulator.

Run: ``.venv/bin/python benches/bench_jobs.py`` (``--help`` for sizes).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp
import orjson

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from hedgerow.config import parse_config  # noqa: E402
from hedgerow.jobs import JobQueue, JobState, Worker, submit  # noqa: E402
from hedgerow.jobs.redis import RedisQueue  # noqa: E402
from hedgerow.jobs.sqlite import SqliteQueue  # noqa: E402
from hedgerow.routing import Gateway  # noqa: E402
from tests.jobs.conftest import RedisServer, _ensure_redis  # noqa: E402
from tests.procs import free_port, hedgerow_process  # noqa: E402

MODEL = "claude-sonnet-4-6"


def _body(i: int) -> dict[str, Any]:
    return {
        "model": "pipeline",
        "max_tokens": 16,
        "messages": [{"role": "user", "content": f"Classify document {i}."}],
    }


async def _submit_rate(queue: JobQueue, count: int, wave: int = 2000) -> float:
    start = time.perf_counter()
    for offset in range(0, count, wave):
        await asyncio.gather(
            *(
                submit(queue, _body(i), idempotency_key=f"doc-{i}")
                for i in range(offset, min(count, offset + wave))
            )
        )
    elapsed = time.perf_counter() - start
    stored = (await queue.counts())[JobState.QUEUED]
    assert stored == count, (stored, count)
    return count / elapsed


async def bench_submit(count: int) -> dict[str, float]:
    results: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for sync in ("full", "normal"):
            queue = SqliteQueue(Path(tmp) / f"{sync}.db", synchronous=sync)  # type: ignore[arg-type]
            results[f"sqlite synchronous={sync}"] = await _submit_rate(queue, count)
            await queue.close()
        _ensure_redis()
        for appendonly in (False, True):
            server = RedisServer(Path(tmp), appendonly=appendonly)
            server.start()
            try:
                queue = RedisQueue(server.url, prefix="bench")
                label = "redis appendonly, fsync always" if appendonly else "redis no persistence"
                results[label] = await _submit_rate(queue, count)
                await queue.close()
            finally:
                server.stop()
    return results


CONFIG = """\
providers:
  anth: {{kind: anthropic, base_url: "http://127.0.0.1:{mock}", api_key: bench}}
routes:
  pipeline:
    tiers: [[{{target: anth/{model}, rpm: {rpm}}}]]
    retry: {{max_retries: 0}}
breaker: {{open_base: 1.0, open_max: 2.0, consecutive_failures: 5}}
jobs:
  backend: sqlite
  path: "{db}"
  concurrency: 32
  poll_interval: 0.2
  backoff_base: 1.0
  backoff_max: 30.0
  max_attempts: 50
  rate_limits: {{pipeline: {rate}}}
"""


async def _mock_state(session: aiohttp.ClientSession, url: str) -> dict[str, Any]:
    async with session.get(f"{url}/_mock/state") as reply:
        state: dict[str, Any] = await reply.json()
        return state


async def bench_drain(count: int, rate: float, outage: float) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        mock_port = free_port()
        url = f"http://127.0.0.1:{mock_port}"
        text = CONFIG.format(
            mock=mock_port, model=MODEL, rpm=rate * 60, rate=rate, db=Path(tmp) / "jobs.db"
        )
        config = parse_config(text, env={})
        with hedgerow_process(
            ["mock", "--port", str(mock_port)], mock_port, Path(tmp) / "mock.log", cpus={1}
        ):
            async with aiohttp.ClientSession() as http, Gateway(config) as gateway:
                async with http.put(
                    f"{url}/_mock/faults/{MODEL}", json={"kind": "error", "status": 529}
                ) as reply:
                    reply.raise_for_status()
                queue = SqliteQueue(config.jobs.path)
                worker = Worker(gateway, queue, config.jobs)
                worker.start()
                started = time.monotonic()
                await _submit_rate(queue, count)
                await asyncio.sleep(max(0.0, outage - (time.monotonic() - started)))
                during = (await _mock_state(http, url))["models"].get(MODEL, {})
                async with http.delete(f"{url}/_mock/faults") as reply:
                    reply.raise_for_status()
                recovered = time.monotonic()
                while (await queue.counts())[JobState.SUCCEEDED] < count:
                    await asyncio.sleep(0.05)  # polling the queue (a real condition)
                drained = time.monotonic() - recovered
                await worker.stop()
                state = (await _mock_state(http, url))["models"][MODEL]
                counts = await queue.counts()
                await queue.close()
    ok = state["outcomes"].get("ok", 0)
    return {
        "jobs": count,
        "rate_limit": rate,
        "outage_s": outage,
        "calls_during_outage": during.get("requests", 0),
        "drain_s": drained,
        "drain_rate": count / drained,
        "share_of_limit": count / drained / rate,
        "succeeded_in_queue": counts[JobState.SUCCEEDED],
        "dead": counts[JobState.DEAD],
        "ok_answers_in_simulator": ok,
    }


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=20_000, help="jobs per submit run")
    parser.add_argument("--drain-jobs", type=int, default=10_000)
    parser.add_argument("--rate", type=float, default=300.0, help="route rate limit, jobs/s")
    parser.add_argument("--outage", type=float, default=10.0, help="seconds of 529 before recovery")
    parser.add_argument("--skip-submit", action="store_true")
    parser.add_argument("--skip-drain", action="store_true")
    args = parser.parse_args()
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {0})  # this process on core 0; redis / the simulator on 1
    if not args.skip_submit:
        for label, value in (await bench_submit(args.jobs)).items():
            print(f"submit {label}: {value:,.0f} jobs/s ({args.jobs} jobs)")
    if not args.skip_drain:
        result = await bench_drain(args.drain_jobs, args.rate, args.outage)
        print("drain: " + orjson.dumps(result).decode())


if __name__ == "__main__":
    asyncio.run(main())
