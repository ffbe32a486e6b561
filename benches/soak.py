"""Soak: mixed streaming and non-streaming traffic with faults injected at a steady rate.

Runs ``hedgerow mock`` and ``hedgerow serve`` as processes, drives traffic through the
official OpenAI and Anthropic SDKs for ``--minutes``, and samples the gateway's RSS and open
file descriptors (and its upstream TCP connections) every few seconds. Reports the growth
after warm-up (target: RSS under 5 %, no descriptor or connection growth).

Run: ``make soak`` (or ``python benches/soak.py --minutes 10``).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import anthropic
import httpx2
import openai

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.procs import free_port, hedgerow_process  # noqa: E402

CONFIG = """\
providers:
  anth: {{kind: anthropic, base_url: "http://127.0.0.1:{mock}", api_key: soak-anthropic}}
  oai: {{kind: openai, base_url: "http://127.0.0.1:{mock}/v1", api_key: soak-openai}}
  gem: {{kind: gemini, base_url: "http://127.0.0.1:{mock}", api_key: soak-gemini}}
routes:
  chat:
    tiers: [[anth/claude-sonnet-4-6], [oai/gpt-5.5], [gem/gemini-3-5-flash]]
    hedge: {{after: 0.2}}
  classify:
    tiers: [[gem/gemini-3-5-flash], [anth/claude-haiku-4-5]]
    minimal: {{kind: template, text: "general"}}
"""
# Faults that rotate over the run, one every ``--fault-every`` seconds.
FAULTS: list[tuple[str, dict[str, Any]]] = [
    ("claude-sonnet-4-6", {"kind": "error", "status": 529, "rate": 0.5}),
    ("claude-sonnet-4-6", {"kind": "stream_error", "rate": 0.3}),
    ("gpt-5.5", {"kind": "reset", "after_tokens": 3, "rate": 0.2}),
    ("gemini-3-5-flash", {"kind": "error", "status": 503, "rate": 0.4}),
    ("claude-sonnet-4-6", {"kind": "delay", "delay": 0.5, "stage": "content", "rate": 0.2}),
    ("gemini-3-5-flash", {"kind": "cut", "after_tokens": 2, "rate": 0.2}),
    ("claude-haiku-4-5", {"kind": "malformed", "rate": 0.3}),
]


def sample(pid: int) -> dict[str, int]:
    """RSS (KiB), open descriptors and TCP sockets of a process."""
    rss = 0
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            rss = int(line.split()[1])
    fds = os.listdir(f"/proc/{pid}/fd")
    sockets = 0
    for fd in fds:
        # A descriptor may close between the listing and the look.
        with contextlib.suppress(FileNotFoundError):
            sockets += os.readlink(f"/proc/{pid}/fd/{fd}").startswith("socket:")
    return {"rss_kib": rss, "fds": len(fds), "sockets": sockets}


async def traffic(gw_url: str, stop: float, counts: dict[str, int]) -> None:
    oai = openai.AsyncOpenAI(base_url=f"{gw_url}/v1", api_key="x", max_retries=0)
    ant = anthropic.AsyncAnthropic(base_url=gw_url, api_key="x", max_retries=0)
    rng = random.Random(7)
    while time.monotonic() < stop:
        n = rng.random()
        try:
            if n < 0.35:
                await oai.chat.completions.create(
                    model="chat", messages=[{"role": "user", "content": f"q{rng.random()}"}]
                )
            elif n < 0.7:
                async with ant.messages.stream(
                    model="chat",
                    max_tokens=30,
                    messages=[{"role": "user", "content": f"s{rng.random()}"}],
                ) as stream:
                    async for _ in stream.text_stream:
                        pass
            elif n < 0.85:
                stream = await oai.chat.completions.create(
                    model="classify",
                    messages=[{"role": "user", "content": "ticket"}],
                    stream=True,
                )
                async for _ in stream:
                    pass
            else:
                # A client that leaves mid-stream.
                async with ant.messages.stream(
                    model="chat", max_tokens=30, messages=[{"role": "user", "content": "bye"}]
                ) as stream:
                    async for _ in stream.text_stream:
                        break
            counts["ok"] += 1
        except (openai.APIError, anthropic.APIError, httpx2.HTTPError):
            counts["error"] += 1
    await oai.close()
    await ant.close()


async def run(args: argparse.Namespace, mock_port: int, gw_port: int, pid: int) -> dict[str, Any]:
    loop_start = time.monotonic()
    stop = loop_start + args.minutes * 60
    counts = {"ok": 0, "error": 0}
    samples: list[dict[str, Any]] = []
    workers = [
        asyncio.create_task(traffic(f"http://127.0.0.1:{gw_port}", stop, counts))
        for _ in range(args.clients)
    ]
    admin = httpx2.AsyncClient(base_url=f"http://127.0.0.1:{mock_port}/_mock", timeout=5)
    fault_index = 0
    next_fault = loop_start
    while time.monotonic() < stop:
        now = time.monotonic()
        if now >= next_fault:
            model, fault = FAULTS[fault_index % len(FAULTS)]
            await admin.delete("/faults")
            await admin.put(f"/faults/{model}", json=fault)
            fault_index += 1
            next_fault = now + args.fault_every
        samples.append({"t": round(now - loop_start, 1), **sample(pid), **counts})
        await asyncio.sleep(args.sample_every)
    await asyncio.gather(*workers)
    await admin.aclose()
    samples.append({"t": round(time.monotonic() - loop_start, 1), **sample(pid), **counts})
    warm = [s for s in samples if s["t"] >= args.warmup]
    first, last = warm[0], warm[-1]
    return {
        "minutes": args.minutes,
        "requests": counts["ok"] + counts["error"],
        "client_visible_errors": counts["error"],
        "rss_after_warmup_kib": first["rss_kib"],
        "rss_end_kib": last["rss_kib"],
        "rss_growth_pct": round((last["rss_kib"] - first["rss_kib"]) / first["rss_kib"] * 100, 2),
        "rss_max_kib": max(s["rss_kib"] for s in warm),
        "fds_after_warmup": first["fds"],
        "fds_end": last["fds"],
        "fds_max": max(s["fds"] for s in warm),
        "sockets_after_warmup": first["sockets"],
        "sockets_end": last["sockets"],
        "sockets_max": max(s["sockets"] for s in warm),
        "samples": samples,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--warmup", type=float, default=60.0, help="seconds before the baseline")
    parser.add_argument("--fault-every", type=float, default=20.0)
    parser.add_argument("--sample-every", type=float, default=5.0)
    parser.add_argument("--out", help="write the full report (with samples) here")
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="hedgerow-soak-"))
    mock_port, gw_port = free_port(), free_port()
    (tmp / "hedgerow.yaml").write_text(CONFIG.format(mock=mock_port))
    with (
        hedgerow_process(["mock", "--port", str(mock_port)], mock_port, tmp / "mock.log"),
        hedgerow_process(
            ["serve", "--config", str(tmp / "hedgerow.yaml"), "--port", str(gw_port)],
            gw_port,
            tmp / "serve.log",
        ) as gateway,
    ):
        report = asyncio.run(run(args, mock_port, gw_port, gateway.pid))
    if args.out:
        Path(args.out).write_text(json.dumps(report, indent=2))
    summary = {k: v for k, v in report.items() if k != "samples"}
    print(json.dumps(summary, indent=2))
    for secret in ("soak-anthropic", "soak-openai", "soak-gemini"):
        for log in tmp.glob("*.log"):
            if secret in log.read_text(errors="replace"):
                print(f"SECRET LEAKED into {log.name}")
                return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
