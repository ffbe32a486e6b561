"""Router benchmarks: hedging against a slow tail, and an outage of the primary.

The simulator runs as its own process on core 1; the gateway runs in this process, pinned
to core 0, as the library (``Gateway``) — the router's behaviour is what is measured, and
the HTTP server's overhead has its own benchmark (load_gateway.py).

* hedging: the primary answers 5 % of requests with its first content after 3 s (the rest
  after 100 ms); the secondary answers in 100 ms. Time to first content (TTFC) with hedging
  (after 250 ms) against the same traffic without, and the extra upstream requests.
* outage: the primary answers 529 to everything for ``--outage`` seconds while traffic
  arrives at a fixed rate (open loop). User-visible errors, calls per second reaching the
  dead primary once its breaker is open (against the probe rate), and the latency the
  failover path adds beyond the secondary's own (the same request to a route that has only
  the secondary, interleaved in the same run).

Run: ``make bench-router`` (or ``python benches/router_bench.py``).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

import httpx2

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from hedgerow import ir  # noqa: E402
from hedgerow.config import parse_config  # noqa: E402
from hedgerow.routing import Gateway, GatewayError  # noqa: E402
from tests.procs import free_port, hedgerow_process  # noqa: E402


def quantile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[max(0, round(q * len(ordered)) - 1)]


def config(mock_port: int, hedge: bool) -> Any:
    routes: dict[str, Any] = {
        "chat": {
            "tiers": [["anth/claude-sonnet-4-6"], ["oai/gpt-5.5"]],
            "retry": {"max_retries": 0},
        },
        "secondary-only": {"tiers": [["oai/gpt-5.5"]], "retry": {"max_retries": 0}},
    }
    if hedge:
        routes["chat"]["hedge"] = {"after": 0.25, "budget": 0.06}
    raw = {
        "providers": {
            "anth": {
                "kind": "anthropic",
                "base_url": f"http://127.0.0.1:{mock_port}",
                "api_key": "b",
            },
            "oai": {
                "kind": "openai",
                "base_url": f"http://127.0.0.1:{mock_port}/v1",
                "api_key": "b",
            },
        },
        "routes": routes,
    }
    return parse_config(json.dumps(raw), env={})


def request(route: str, n: int) -> ir.ChatRequest:
    text = f"request {n}"
    return ir.ChatRequest(
        model=route, messages=[ir.Message("user", [ir.TextPart(text)])], max_tokens=16, stream=True
    )


async def timed_stream(gw: Gateway, route: str, n: int) -> tuple[float, Any]:
    """TTFC of one streamed request (time until the router commits), then drain it."""
    loop = asyncio.get_running_loop()
    start = loop.time()
    reply = await gw.open_stream(request(route, n))
    ttfc = loop.time() - start
    async for _ in reply.chunks():
        pass
    return ttfc, reply.served


async def open_loop(rate: float, count: int, fn: Any) -> list[Any]:
    """Start ``fn(i)`` at a fixed rate regardless of how long each takes."""
    loop = asyncio.get_running_loop()
    begin = loop.time()
    tasks = []
    for i in range(count):
        delay = begin + i / rate - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(fn(i)))
    return list(await asyncio.gather(*tasks, return_exceptions=True))


def admin(mock_port: int) -> httpx2.Client:
    return httpx2.Client(base_url=f"http://127.0.0.1:{mock_port}/_mock", timeout=10)


async def hedging(mock_port: int, requests: int, rate: float) -> dict[str, Any]:
    results: dict[str, Any] = {}
    with admin(mock_port) as http:
        for hedge in (False, True):
            http.post("/reset").raise_for_status()
            for model in ("claude-sonnet-4-6", "gpt-5.5"):
                http.put(f"/models/{model}", json={"ttfb": 0.1}).raise_for_status()
            http.put(
                "/faults/claude-sonnet-4-6",
                json={"kind": "delay", "delay": 2.9, "stage": "content", "rate": 0.05},
            ).raise_for_status()
            async with Gateway(config(mock_port, hedge)) as gw:
                out = await open_loop(rate, requests, lambda i, gw=gw: timed_stream(gw, "chat", i))
            errors = [o for o in out if isinstance(o, BaseException)]
            ttfc = [o[0] for o in out if not isinstance(o, BaseException)]
            state = http.get("/state").json()["models"]
            upstream = sum(m["requests"] for m in state.values())
            results["with hedging" if hedge else "without"] = {
                "p50_ms": statistics.median(ttfc) * 1000,
                "p99_ms": quantile(ttfc, 0.99) * 1000,
                "errors": len(errors),
                "extra_upstream_pct": (upstream - requests) / requests * 100,
                "hedged": sum(1 for o in out if not isinstance(o, BaseException) and o[1].hedged),
            }
    return results


async def outage(mock_port: int, seconds: float, rate: float) -> dict[str, Any]:
    with admin(mock_port) as http:
        http.post("/reset").raise_for_status()
        http.delete("/models/claude-sonnet-4-6")
        http.delete("/models/gpt-5.5")
        http.put(
            "/faults/claude-sonnet-4-6", json={"kind": "error", "status": 529}
        ).raise_for_status()
        async with Gateway(config(mock_port, hedge=False)) as gw:
            breaker = gw.deployments["anth/claude-sonnet-4-6"].health.breaker
            loop = asyncio.get_running_loop()
            opened_at: list[float] = []
            primary_before: list[int] = []

            async def one(i: int) -> tuple[str, float, Any]:
                route = "chat" if i % 2 == 0 else "secondary-only"
                if not opened_at and breaker.state == "open":
                    opened_at.append(loop.time())
                    primary_before.append(
                        http.get("/state").json()["models"]["claude-sonnet-4-6"]["requests"]
                    )
                try:
                    ttfc, served = await timed_stream(gw, route, i)
                except GatewayError as exc:
                    return route, -1.0, exc
                return route, ttfc, served

            start = loop.time()
            out = await open_loop(rate, int(seconds * rate), one)
            end = loop.time()
        primary_total = http.get("/state").json()["models"]["claude-sonnet-4-6"]["requests"]
    errors = sum(1 for o in out if isinstance(o, BaseException) or o[1] < 0)
    after_open = [
        o for o in out if not isinstance(o, BaseException) and o[0] == "chat" and o[2].attempts == 1
    ]
    failover = [o[1] for o in after_open]
    direct = [o[1] for o in out if not isinstance(o, BaseException) and o[0] == "secondary-only"]
    open_span = end - opened_at[0] if opened_at else 0.0
    probes = primary_total - (primary_before[0] if primary_before else primary_total)
    return {
        "requests": len(out),
        "user_visible_errors": errors,
        "breaker_opened_after_s": (opened_at[0] - start) if opened_at else None,
        "primary_calls_while_open": probes,
        "primary_calls_per_s_while_open": probes / open_span if open_span else 0.0,
        "open_seconds": open_span,
        "failover_p50_ms": statistics.median(failover) * 1000,
        "failover_p99_ms": quantile(failover, 0.99) * 1000,
        "secondary_p50_ms": statistics.median(direct) * 1000,
        "secondary_p99_ms": quantile(direct, 0.99) * 1000,
    }


async def run(args: argparse.Namespace, mock_port: int) -> dict[str, Any]:
    return {
        "hedging": await hedging(mock_port, args.requests, args.rate),
        "outage": await outage(mock_port, args.outage, args.outage_rate),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=2000, help="hedging: requests per run")
    parser.add_argument("--rate", type=float, default=100.0, help="hedging: requests/s")
    parser.add_argument("--outage", type=float, default=30.0, help="outage: seconds")
    parser.add_argument("--outage-rate", type=float, default=100.0, help="outage: requests/s")
    args = parser.parse_args()
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {0})
    tmp = Path(tempfile.mkdtemp(prefix="hedgerow-router-bench-"))
    port = free_port()
    with hedgerow_process(["mock", "--port", str(port)], port, tmp / "mock.log", cpus={1}):
        results = asyncio.run(run(args, port))
    print(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
