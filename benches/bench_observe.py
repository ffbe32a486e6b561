"""Observability's hot-path cost: gateway CPU per request with metrics, event log, request
log and alert windows on, against the same gateway with nothing listening.

The simulator runs as its own process pinned to core 1; this process (pinned to core 0)
holds two gateways over the same config: ``off`` (no subscriber: the router does not even
build its events) and ``on`` (``hedgerow.observe.Observability`` started: Prometheus
metrics, the SQLite event log and the JSON request log each writing from their own thread
to files, the alert rules' windows, the status-page and gauge loops). Requests go through
``chat_exchange`` — the server's own code path, which emits the per-request event — inside a
request scope (what the server's middleware adds), at a fixed concurrency.

Batches alternate ``off``/``on`` so drift hits both alike; after each ``on`` batch the event
log and the request log are flushed before the clock stops, so their threads' CPU is
counted against ``on``. CPU is ``time.process_time()`` (every thread of this process).

Three workloads: ``healthy`` (short non-streamed answers from the primary: the cheapest
requests, so the largest relative cost), ``streaming`` (200-token streams, 50 events each:
what an LLM gateway mostly carries), and ``outage`` (the primary answers 529 to everything
and its breaker never opens, so every request fails over: two attempts, a failover event and
an event-log row per request).

Run: ``python benches/bench_observe.py [--requests 400] [--rounds 8] [--concurrency 16]``
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx2
import orjson

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from hedgerow.config import Config, parse_config  # noqa: E402
from hedgerow.formats import openai as openai_format  # noqa: E402
from hedgerow.observe import Observability  # noqa: E402
from hedgerow.observe.logs import request_scope  # noqa: E402
from hedgerow.routing import Gateway  # noqa: E402
from hedgerow.server.exchange import chat_exchange  # noqa: E402
from tests.procs import free_port, hedgerow_process  # noqa: E402


def config(mock_port: int, tmp: Path) -> Config:
    raw = {
        "providers": {
            "anth": {
                "kind": "anthropic",
                "base_url": f"http://127.0.0.1:{mock_port}",
                "api_key": "bench-key-anthropic",
            },
            "oai": {
                "kind": "openai",
                "base_url": f"http://127.0.0.1:{mock_port}/v1",
                "api_key": "bench-key-openai",
            },
        },
        "routes": {
            "chat": {
                "tiers": [["anth/claude-sonnet-4-6"], ["oai/gpt-5.5"]],
                "retry": {"max_retries": 0},
            }
        },
        # The outage workload keeps failing over: a breaker that never opens.
        "breaker": {"consecutive_failures": 0, "minimum_calls": 100_000_000},
        "observe": {
            "event_log": str(tmp / "events.db"),
            "request_log_file": str(tmp / "requests.log"),
        },
    }
    return parse_config(json.dumps(raw), env={})


BODY = orjson.dumps(
    {"model": "chat", "messages": [{"role": "user", "content": "Say hello."}], "max_tokens": 16}
)
STREAM_BODY = orjson.dumps(
    {
        "model": "chat",
        "messages": [{"role": "user", "content": "Write a paragraph."}],
        "max_tokens": 200,
        "stream": True,
    }
)
WORKLOAD = {"body": BODY}


async def one(gateway: Gateway) -> None:
    with request_scope():
        exchange = await chat_exchange(gateway, openai_format, WORKLOAD["body"])
        if exchange.stream is not None:
            async for _ in exchange.stream:
                pass
    assert exchange.status == 200, exchange.body


async def batch(gateway: Gateway, n: int, concurrency: int) -> None:
    gate = asyncio.Semaphore(concurrency)

    async def bounded() -> None:
        async with gate:
            await one(gateway)

    await asyncio.gather(*(bounded() for _ in range(n)))


async def settle(observe: Observability) -> None:
    """Let the observers' threads finish this batch's work before the clock stops."""
    await observe.events.flush()
    log = observe.request_log
    while log is not None and log.pending:
        await asyncio.sleep(0.005)
    await asyncio.sleep(0.01)  # the writer writes what it just took


MODES = ("off", "events", "metrics", "metrics+alerts+eventlog", "on")


async def workload(
    name: str,
    gateways: dict[str, Gateway],
    observers: list[Observability],
    args: argparse.Namespace,
) -> dict[str, Any]:
    cpu: dict[str, list[float]] = {mode: [] for mode in gateways}
    wall: dict[str, list[float]] = {mode: [] for mode in gateways}
    for round_number in range(args.rounds + 1):
        for mode, gateway in gateways.items():
            gc.collect()
            started_cpu, started_wall = time.process_time(), time.perf_counter()
            await batch(gateway, args.requests, args.concurrency)
            elapsed = time.perf_counter() - started_wall
            for observe in observers:
                if observe.gateway is gateway:
                    await settle(observe)
            if round_number:  # the first round warms up connections and caches
                cpu[mode].append(time.process_time() - started_cpu)
                wall[mode].append(elapsed)
    per = {m: statistics.median(v) / args.requests * 1e6 for m, v in cpu.items()}
    return {
        "workload": name,
        "requests_per_batch": args.requests,
        "rounds": args.rounds,
        "cpu_us_per_request": {m: round(v, 1) for m, v in per.items()},
        "overhead_pct": {m: round((v / per["off"] - 1) * 100, 1) for m, v in per.items()},
        "wall_ms_per_batch": {m: round(statistics.median(v) * 1000, 1) for m, v in wall.items()},
    }


def _observers(cfg: Config, gateways: dict[str, Gateway]) -> list[Observability]:
    """``events``: a subscriber that does nothing (what the router's events cost);
    ``metrics``: Prometheus only; ``metrics+alerts+eventlog``: all but the request log;
    ``on``: everything."""
    gateways["events"].subscribe(lambda event: None)
    observers = []
    for mode in ("metrics", "metrics+alerts+eventlog", "on"):
        observe = Observability(gateways[mode], cfg.observe)
        if mode != "on":
            observe.request_log = None
        if mode == "metrics":
            observe.alerts.on_attempts = lambda batch: None  # type: ignore[method-assign]
            observe.events.record = lambda event: None  # type: ignore[method-assign]
        observers.append(observe)
    return observers


async def run(args: argparse.Namespace, mock_port: int, tmp: Path) -> list[dict[str, Any]]:
    cfg = config(mock_port, tmp)
    gateways = {mode: Gateway(cfg) for mode in MODES}
    observers = _observers(cfg, gateways)
    results = []
    try:
        for observe in observers:
            await observe.start()
        results.append(await workload("healthy", gateways, observers, args))
        with httpx2.Client(base_url=f"http://127.0.0.1:{mock_port}/_mock", timeout=5) as admin:
            # Streams of 200 tokens, 4 per event (the Anthropic passthrough path).
            admin.put("/models/*", json={"reply_tokens": 200, "chunk_tokens": 4})
            WORKLOAD["body"] = STREAM_BODY
            results.append(await workload("streaming", gateways, observers, args))
            WORKLOAD["body"] = BODY
            admin.delete("/models/*")
            admin.put("/faults/claude-sonnet-4-6", json={"kind": "error", "status": 529})
        results.append(await workload("outage", gateways, observers, args))
    finally:
        for observe in observers:
            await observe.close()
        for gateway in gateways.values():
            await gateway.aclose()
    results[-1]["event_log_rows"] = observers[-1].events.written
    results[-1]["request_log_lines"] = len((tmp / "requests.log").read_text().splitlines())
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=400, help="requests per batch")
    parser.add_argument("--rounds", type=int, default=8, help="measured off/on batch pairs")
    parser.add_argument("--concurrency", type=int, default=16, help="requests in flight")
    args = parser.parse_args()
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {0})
    tmp = Path(tempfile.mkdtemp(prefix="hedgerow-observe-bench-"))
    port = free_port()
    with hedgerow_process(["mock", "--port", str(port)], port, tmp / "mock.log", cpus={1}):
        results = asyncio.run(run(args, port, tmp))
    print(json.dumps(results, indent=2))
    print()
    print("| workload | " + " | ".join(f"{m}: CPU µs/req" for m in MODES) + " |")
    print("| --- | " + " | ".join("---:" for _ in MODES) + " |")
    for r in results:
        cells = [
            f"{r['cpu_us_per_request'][m]}"
            + ("" if m == "off" else f" ({r['overhead_pct'][m]:+.1f} %)")
            for m in MODES
        ]
        print(f"| {r['workload']} | " + " | ".join(cells) + " |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
