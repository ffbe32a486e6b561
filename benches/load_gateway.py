"""Added latency of the gateway over calling the simulator directly (a load benchmark).

Layout on this 2-core machine: the gateway alone on core 0; the simulator and the load
generator on core 1. The load generator is oha (Rust, installed from crates.io into
benches/.tools on first use):

* max requests/s: closed loop, 16 connections, for ``--seconds``;
* latency: open loop at half of the gateway's max rate (``oha -q RATE --latency-correction``,
  so a slow response does not lower the offered rate), p50 / p99;
* streaming time to first byte: a small asyncio client at a fixed rate, timing the first
  body byte of each SSE response.

Targets run side by side in one invocation: the simulator directly, the gateway on its
passthrough path (OpenAI client -> OpenAI provider), and the gateway translating (OpenAI
client -> Anthropic provider). Run: ``make bench-load`` (or ``python benches/load_gateway.py``).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp

ROOT = Path(__file__).resolve().parent.parent
TOOLS = ROOT / "benches" / ".tools"
sys.path.insert(0, str(ROOT))

from tests.procs import free_port, hedgerow_process  # noqa: E402

CONFIG = """\
providers:
  oai: {{kind: openai, base_url: "http://127.0.0.1:{mock}/v1", api_key: bench}}
  anth: {{kind: anthropic, base_url: "http://127.0.0.1:{mock}", api_key: bench}}
routes:
  passthrough: {{tiers: [[oai/gpt-5.5]]}}
  translated: {{tiers: [[anth/claude-sonnet-4-6]]}}
"""


def oha_binary() -> str:
    """oha, installed from crates.io into benches/.tools when missing."""
    found = shutil.which("oha") or (
        str(TOOLS / "bin" / "oha") if (TOOLS / "bin" / "oha").exists() else None
    )
    if found:
        return found
    subprocess.run(["cargo", "install", "--locked", "--root", str(TOOLS), "oha"], check=True)
    return str(TOOLS / "bin" / "oha")


def run_oha(url: str, body: dict[str, Any], seconds: float, rate: float | None) -> dict[str, Any]:
    """One oha run pinned to core 1; its JSON summary."""
    args = [
        "taskset",
        "-c",
        "1",
        oha_binary(),
        "--no-tui",
        "--output-format",
        "json",
        "-z",
        f"{seconds}s",
        "-c",
        "16",
        "-m",
        "POST",
        "-T",
        "application/json",
        "-H",
        "authorization: Bearer bench",
        "-d",
        json.dumps(body),
    ]
    if rate is not None:
        args += ["-q", str(rate), "--latency-correction"]
    out = subprocess.run([*args, url], check=True, capture_output=True, text=True).stdout
    return dict(json.loads(out))


def summary(result: dict[str, Any]) -> dict[str, float]:
    """requests/s, p50 and p99 in ms, success share, from an oha summary."""
    pct = result["latencyPercentiles"]
    stats = result["summary"]
    return {
        "rps": float(stats["requestsPerSec"]),
        "p50_ms": float(pct["p50"]) * 1000,
        "p99_ms": float(pct["p99"]) * 1000,
        "success": float(stats["successRate"]),
    }


async def stream_ttfb(
    url: str, body: dict[str, Any], rate: float, seconds: float
) -> dict[str, float]:
    """Time to the first body byte of SSE responses, sent at a fixed rate (open loop)."""
    samples: list[float] = []
    errors = 0
    async with aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=64), headers={"authorization": "Bearer bench"}
    ) as session:

        async def one() -> None:
            nonlocal errors
            start = time.perf_counter()
            async with session.post(url, json=body) as response:
                if response.status != 200:
                    errors += 1
                    await response.read()
                    return
                await response.content.readany()
                samples.append(time.perf_counter() - start)
                await response.read()

        tasks = []
        interval = 1.0 / rate
        begin = time.perf_counter()
        n = int(rate * seconds)
        for i in range(n):
            delay = begin + i * interval - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(one()))
        await asyncio.gather(*tasks)
    samples.sort()
    return {
        "p50_ms": statistics.median(samples) * 1000,
        "p99_ms": samples[int(len(samples) * 0.99) - 1] * 1000,
        "errors": errors,
        "n": len(samples),
    }


def pinned_ttfb(url: str, body: dict[str, Any], rate: float, seconds: float) -> dict[str, float]:
    """``stream_ttfb`` in a child process pinned to core 1 (beside the simulator)."""
    out = subprocess.run(
        [
            "taskset",
            "-c",
            "1",
            sys.executable,
            __file__,
            "--ttfb",
            url,
            json.dumps(body),
            str(rate),
            str(seconds),
        ],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return dict(json.loads(out.strip().splitlines()[-1]))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    parser.add_argument("--ttfb", nargs=4, help=argparse.SUPPRESS)  # the pinned TTFB child
    args = parser.parse_args()
    if args.ttfb:
        url, body, rate, seconds = args.ttfb
        result = asyncio.run(stream_ttfb(url, json.loads(body), float(rate), float(seconds)))
        print(json.dumps(result))
        return 0
    oha_binary()
    tmp = Path(tempfile.mkdtemp(prefix="hedgerow-bench-"))
    mock_port, gw_port = free_port(), free_port()
    (tmp / "hedgerow.yaml").write_text(CONFIG.format(mock=mock_port))
    pin = {"HEDGEROW_BENCH": "1"}
    mock_cmd = ["mock", "--port", str(mock_port)]
    serve_cmd = ["serve", "--config", str(tmp / "hedgerow.yaml"), "--port", str(gw_port)]
    results: dict[str, Any] = {"machine": machine()}
    with (
        hedgerow_process(mock_cmd, mock_port, tmp / "mock.log", env=pin, cpus={1}),
        hedgerow_process(serve_cmd, gw_port, tmp / "serve.log", env=pin, cpus={0}),
    ):
        targets = {
            "direct": (f"http://127.0.0.1:{mock_port}/v1/chat/completions", "gpt-5.5"),
            "gateway passthrough": (
                f"http://127.0.0.1:{gw_port}/v1/chat/completions",
                "passthrough",
            ),
            "gateway translated": (f"http://127.0.0.1:{gw_port}/v1/chat/completions", "translated"),
        }
        for stream in (False, True):
            mode = "stream" if stream else "non-stream"
            rows: dict[str, Any] = {}
            for name, (url, model) in targets.items():
                body = {
                    "model": model,
                    "messages": [{"role": "user", "content": "benchmark"}],
                    "max_tokens": 16,
                    "stream": stream,
                }
                run_oha(url, body, 2.0, None)  # warm-up: connections, caches
                rows[name] = {"max": summary(run_oha(url, body, args.seconds, None))}
            half = rows["gateway passthrough"]["max"]["rps"] / 2
            for name, (url, model) in targets.items():
                body = {
                    "model": model,
                    "messages": [{"role": "user", "content": "benchmark"}],
                    "max_tokens": 16,
                    "stream": stream,
                }
                rows[name]["at_half"] = summary(run_oha(url, body, args.seconds, half))
                if stream:
                    rows[name]["ttfb"] = pinned_ttfb(url, body, min(half, 500.0), args.seconds)
            results[mode] = {"half_rate": half, "rows": rows}
    if args.json:
        print(json.dumps(results, indent=2))
    else:
        print(table(results))
    return 0


def machine() -> str:
    model = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{os.cpu_count()} cores, {model}"


def table(results: dict[str, Any]) -> str:
    lines = [f"machine: {results['machine']}", ""]
    for mode in ("non-stream", "stream"):
        data = results[mode]
        direct = data["rows"]["direct"]["at_half"]
        lines.append(
            f"### {mode} (latency at {data['half_rate']:.0f} req/s = half the gateway's max)"
        )
        lines.append("")
        header = "| target | max req/s | p50 ms | p99 ms | added p50 ms | added p99 ms |"
        if mode == "stream":
            header += " TTFB p50 ms | TTFB p99 ms |"
        lines.append(header)
        lines.append("|" + "---|" * (header.count("|") - 1))
        for name, row in data["rows"].items():
            at = row["at_half"]
            cells = [
                name,
                f"{row['max']['rps']:.0f}",
                f"{at['p50_ms']:.2f}",
                f"{at['p99_ms']:.2f}",
                "—" if name == "direct" else f"{at['p50_ms'] - direct['p50_ms']:+.2f}",
                "—" if name == "direct" else f"{at['p99_ms'] - direct['p99_ms']:+.2f}",
            ]
            if mode == "stream":
                cells += [f"{row['ttfb']['p50_ms']:.2f}", f"{row['ttfb']['p99_ms']:.2f}"]
            lines.append("| " + " | ".join(cells) + " |")
        lines.append("")
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
