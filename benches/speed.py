"""Speed and scale-out: hedgerow against the floor and against LiteLLM, in one run.

Every target runs alone on core 0, in turn, against the same simulator (``hedgerow mock``,
0 ms, on core 1); the load generator is oha (Rust, from crates.io, installed into
benches/.tools) on core 1:

* (a) ``direct``: the simulator itself;
* (b) ``aiohttp proxy``: ``benches/thin_proxy.py``, the thinnest aiohttp pass-through (the
  floor for a Python gateway);
* (c) ``hedgerow``: ``hedgerow serve`` with its full feature set: breakers, windows, RPM and
  TPM buckets (set high enough never to refuse), metrics, the event log (SQLite) and the JSON
  request log (to a file), when ``hedgerow.observe`` is wired into ``create_app``;
  (c') the same with the request log off, to show what that one feature costs; (c'') with
  ``observe.enabled: false`` (no metrics, event log, request log or alerts): against (c),
  what observability costs the whole server per request;
* (d) ``litellm``: the LiteLLM proxy (the latest release, installed by this script into
  benches/.litellm-venv, never a project dependency) with the equivalent one-route config.

Measured for each, non-streaming and streaming:

* max requests/s: closed loop, 16 connections, ``--seconds``;
* latency at a fixed rate (``--rate``, 2,500 req/s): **open loop**, ``oha -q RATE
  --latency-correction`` (a slow answer does not lower the offered rate; latency counts from
  when the request was due); p50 / p99, and added p99 over ``direct`` at the same rate. A
  target that cannot sustain the rate is measured at half its max rate instead (noted);
* CPU per request: the target's own CPU time (user + system, its processes together) over
  the fixed-rate run, divided by the requests answered. Unlike requests/s this hardly moves
  when a neighbour takes the core for a while, so "CPU vs (b)" is the steadier comparison;
* open streams: ``--streams`` (5,000) concurrent SSE streams held open through hedgerow (the
  simulator paces them at 0.5 token/s) by a client on core 1; the gateway's RSS before and
  with every stream open;
* workers: max requests/s of ``serve --workers 1`` and ``--workers 2``, unpinned (both cores
  shared with the simulator and oha: this machine has two);
* observability's cost: CPU per request at the fixed rate of (b), (c), (c') and (c''),
  ``--observe-rounds`` runs interleaved, the medians; (c) against (c'') is the cost.

Run: ``make bench-speed`` (or ``python benches/speed.py``; ``--skip-litellm`` to leave (d) out,
``--streams-only`` or ``--observe-only`` for one figure alone; ``--prompt-kib N`` gives the
held streams long prompts).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import resource
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benches.load_gateway import machine, oha_binary, summary  # noqa: E402
from tests.procs import HEDGEROW, free_port, wait_for_port  # noqa: E402

LITELLM_VENV = ROOT / "benches" / ".litellm-venv"
MODEL = "gpt-5.5"
SLOW_MODEL = "gpt-4o"  # paced slowly for the open-streams test

HEDGEROW_CONFIG = """\
providers:
  oai: {{kind: openai, base_url: "http://127.0.0.1:{mock}/v1", api_key: bench}}
routes:
  {model}:
    tiers: [[{{target: oai/{model}, rpm: 100000000, tpm: 10000000000}}]]
  slow: {{tiers: [[oai/{slow}]]}}
observe:
  enabled: {observe}
  event_log: "{tmp}/events.db"
  request_log: {request_log}
  request_log_file: "{tmp}/requests.jsonl"
"""

# LiteLLM refuses to start without a master key; every target gets it (the others ignore it).
KEY = "sk-hedgerow-bench-5f0c2a9e7d41b3a8"

LITELLM_CONFIG = """\
general_settings:
  master_key: {key}
model_list:
  - model_name: {model}
    litellm_params:
      model: openai/{model}
      api_base: http://127.0.0.1:{mock}/v1
      api_key: bench
litellm_settings:
  drop_params: true
"""


def observe_wired() -> bool:
    """Whether ``hedgerow.observe`` exists and ``create_app`` installs it."""
    app = (ROOT / "python" / "hedgerow" / "server" / "app.py").read_text()
    return (ROOT / "python" / "hedgerow" / "observe").is_dir() and "install_observability" in app


def litellm_binary() -> str:
    """The LiteLLM proxy, installed (latest release) into its own venv on first use."""
    binary = LITELLM_VENV / "bin" / "litellm"
    if not binary.exists():
        subprocess.run([sys.executable, "-m", "venv", str(LITELLM_VENV)], check=True)
        pip = [str(LITELLM_VENV / "bin" / "pip"), "install", "-q", "--disable-pip-version-check"]
        subprocess.run([*pip, "litellm[proxy]"], check=True)
    return str(binary)


def litellm_version() -> str:
    out = subprocess.run(
        [str(LITELLM_VENV / "bin" / "pip"), "show", "litellm"], capture_output=True, text=True
    ).stdout
    return next((ln.split(":", 1)[1].strip() for ln in out.splitlines() if "Version" in ln), "?")


@contextmanager
def process(
    args: list[str], port: int, log: Path, cpus: str | None, timeout: float = 30.0
) -> Iterator[subprocess.Popen[bytes]]:
    """A process (pinned to ``cpus``) listening on ``port`` until the block ends."""
    pin = ["taskset", "-c", cpus] if cpus else []
    with open(log, "wb") as out:
        proc = subprocess.Popen([*pin, *args], stdout=out, stderr=subprocess.STDOUT)
        try:
            wait_for_port(port, proc, timeout=timeout)
            yield proc
        finally:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()


def cpu_times(pids: list[int]) -> tuple[float, float]:
    """User and system CPU seconds of ``pids`` and their children (LiteLLM runs workers)."""
    user = system = 0.0
    tick = os.sysconf("SC_CLK_TCK")
    for pid in {p for root in pids for p in (root, *children(root))}:
        with contextlib.suppress(OSError):
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            user += int(fields[11]) / tick
            system += int(fields[12]) / tick
    return user, system


def oha(
    url: str, body: dict[str, Any], seconds: float, rate: float | None, pids: Sequence[int] = ()
) -> dict[str, float]:
    """One oha run on core 1: requests/s, p50 and p99 (ms), success share, and with ``pids``
    the target's CPU microseconds per answered request."""
    args = ["taskset", "-c", "1", oha_binary(), "--no-tui", "--output-format", "json"]
    args += ["-z", f"{seconds}s", "-c", "16", "-m", "POST", "-T", "application/json"]
    args += ["-H", f"authorization: Bearer {KEY}", "-d", json.dumps(body)]
    if rate is not None:
        args += ["-q", str(rate), "--latency-correction"]
    user_before, system_before = cpu_times(list(pids))
    out = subprocess.run([*args, url], check=True, capture_output=True, text=True).stdout
    result = summary(json.loads(out))
    if pids:
        per_request = 1e6 / max(result["rps"] * seconds * result["success"], 1)
        user, system = cpu_times(list(pids))
        result["cpu_user_us"] = (user - user_before) * per_request
        result["cpu_system_us"] = (system - system_before) * per_request
        result["cpu_us"] = result["cpu_user_us"] + result["cpu_system_us"]
    return result


def body(model: str, stream: bool, prompt_kib: int = 0) -> dict[str, Any]:
    # A long prompt: words, as a conversation's history would be.
    content = "benchmark" if not prompt_kib else ("lorem ipsum dolor " * (prompt_kib * 57))
    return {
        "model": model,
        "messages": [{"role": "user", "content": content}],
        "max_tokens": 16,
        "stream": stream,
    }


def measure(
    targets: dict[str, str], pids: dict[str, int], seconds: float, rate: float, reps: int
) -> dict[str, Any]:
    """Max rate (median of ``reps`` runs, interleaved over the targets so that a slow spell
    of this shared VM hits them all alike) and latency at ``rate``, both modes."""
    rows: dict[str, Any] = {name: {} for name in targets}
    for stream in (False, True):
        mode = "stream" if stream else "non-stream"
        runs: dict[str, list[dict[str, float]]] = {name: [] for name in targets}
        for url in targets.values():
            oha(url, body(MODEL, stream), 2.0, None)  # warm-up: connections, caches
        for _ in range(reps):
            for name, url in targets.items():
                runs[name].append(oha(url, body(MODEL, stream), seconds, None))
        for name, url in targets.items():
            top = sorted(runs[name], key=lambda r: r["rps"])[len(runs[name]) // 2]
            at = rate if top["rps"] >= rate * 1.1 else round(top["rps"] / 2)
            latency = oha(url, body(MODEL, stream), seconds, at, [pids[name]])
            rows[name][mode] = {
                "max": top,
                "runs": [r["rps"] for r in runs[name]],
                "rate": at,
                "latency": latency,
            }
    return rows


def observe_cost(
    targets: dict[str, str], pids: dict[str, int], seconds: float, rate: float, rounds: int
) -> dict[str, Any]:
    """CPU per request at ``rate`` of each target, ``rounds`` runs interleaved, both modes.

    Each target first runs 8 s at ``rate`` (a fresh server's first seconds cost more: its
    caches, heap and event log grow). The rounds then alternate their order (a, b, c, then
    c, b, a) so that a drift within a round weighs on every target alike, and the cost of
    observability is also taken per round, (c) against (c'') of the same round: the median
    of those ratios and their quartiles show how far this shared machine's noise reaches."""
    out: dict[str, Any] = {}
    names = list(targets)
    for stream in (False, True):
        mode = "stream" if stream else "non-stream"
        runs: dict[str, list[float]] = {name: [] for name in targets}
        splits: dict[str, list[tuple[float, float]]] = {name: [] for name in targets}
        for url in targets.values():
            oha(url, body(MODEL, stream), 8.0, rate)  # warm-up
        for round_number in range(rounds):
            for name in names if round_number % 2 == 0 else names[::-1]:
                result = oha(targets[name], body(MODEL, stream), seconds, rate, [pids[name]])
                runs[name].append(result["cpu_us"])
                splits[name].append((result["cpu_user_us"], result["cpu_system_us"]))
        out[mode] = {
            name: {
                "median": statistics.median(r),
                "runs": r,
                # Medians of each part: the kernel's share (sockets, the request-log file)
                # is steadier than the total on this VM.
                "user": statistics.median(u for u, _ in splits[name]),
                "system": statistics.median(s for _, s in splits[name]),
            }
            for name, r in runs.items()
        }
        on, off = (next(r for n, r in runs.items() if n.startswith(p)) for p in ("(c)", "(c'')"))
        ratios = sorted(a / b - 1 for a, b in zip(on, off, strict=True))
        quartiles = statistics.quantiles(ratios, n=4) if len(ratios) > 1 else ratios * 3
        out[mode]["paired"] = {
            "median": statistics.median(ratios),
            "q1": quartiles[0],
            "q3": quartiles[2],
        }
    return out


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def children(pid: int) -> list[int]:
    out = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout
    return [int(p) for p in out.split()]


async def hold_streams(
    url: str, n: int, ready_file: str, release_file: str, prompt_kib: int = 0
) -> dict[str, Any]:
    """Open ``n`` streams, read each one's first bytes, hold them until ``release_file``."""
    import aiohttp

    opened = 0
    failed = 0
    gate = asyncio.Event()
    connector = aiohttp.TCPConnector(limit=0, force_close=True)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def one() -> None:
            nonlocal opened, failed
            try:
                async with session.post(url, json=body("slow", True, prompt_kib)) as response:
                    if response.status != 200:
                        failed += 1
                        return
                    await response.content.readany()
                    opened += 1
                    await gate.wait()
            except (aiohttp.ClientError, OSError):
                failed += 1

        tasks = [asyncio.create_task(one()) for _ in range(n)]
        deadline = time.monotonic() + 120
        while opened + failed < n and time.monotonic() < deadline:
            await asyncio.sleep(0.2)
        Path(ready_file).write_text(json.dumps({"opened": opened, "failed": failed}))
        while not Path(release_file).exists():
            await asyncio.sleep(0.1)
        gate.set()
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    return {"opened": opened, "failed": failed}


def open_streams(
    port: int, mock: int, gw_pid: int, n: int, tmp: Path, prompt_kib: int = 0
) -> dict[str, Any]:
    """Hold ``n`` streams open through the gateway; its RSS before and with all open."""
    req = urllib.request.Request(
        f"http://127.0.0.1:{mock}/_mock/models/{SLOW_MODEL}",
        data=json.dumps({"tokens_per_second": 0.5, "reply_tokens": 100}).encode(),
        method="PUT",
        headers={"content-type": "application/json"},
    )
    urllib.request.urlopen(req).read()
    before = rss_mib(gw_pid)
    ready, release = tmp / "streams.ready", tmp / "streams.release"
    url = f"http://127.0.0.1:{port}/v1/chat/completions"
    hold = ["--hold", url, str(n), str(ready), str(release), str(prompt_kib)]
    holder = subprocess.Popen(["taskset", "-c", "1", sys.executable, __file__, *hold])
    start = time.monotonic()
    while not ready.exists() and holder.poll() is None:
        time.sleep(0.2)  # polling a real condition: the holder reports when all are open
    took = time.monotonic() - start
    result = json.loads(ready.read_text()) if ready.exists() else {"opened": 0, "failed": n}
    peak = rss_mib(gw_pid)
    # Still all open, past the gateway's next memory release (server.release_memory_every,
    # 5 s): what a burst of opening leaves resident.
    time.sleep(6.0)
    settled = rss_mib(gw_pid)
    release.write_text("go")
    holder.wait(timeout=60)
    return {
        **result,
        "rss_before_mib": before,
        "rss_open_mib": peak,
        "rss_settled_mib": settled,
        "open_seconds": took,
        "prompt_kib": prompt_kib,
    }


def workers_rps(config: Path, seconds: float, tmp: Path) -> dict[str, float]:
    """Max non-streaming requests/s with 1 and 2 workers (unpinned; oha unpinned too)."""
    out: dict[str, float] = {}
    for n in (1, 2):
        port = free_port()
        args = [*HEDGEROW, "serve", "--config", str(config), "--port", str(port)]
        args += ["--workers", str(n)]
        with process(args, port, tmp / f"workers{n}.log", None):
            url = f"http://127.0.0.1:{port}/v1/chat/completions"
            b = body(MODEL, False)
            cmd = [oha_binary(), "--no-tui", "--output-format", "json", "-c", "32"]
            cmd += ["-m", "POST", "-T", "application/json", "-d", json.dumps(b)]
            subprocess.run([*cmd, "-z", "2s", url], check=True, capture_output=True)
            res = subprocess.run(
                [*cmd, "-z", f"{seconds}s", url], check=True, capture_output=True, text=True
            )
            out[f"{n} worker{'s' if n > 1 else ''}"] = summary(json.loads(res.stdout))["rps"]
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=6.0)
    parser.add_argument("--rate", type=float, default=2500.0)
    parser.add_argument("--streams", type=int, default=5000)
    parser.add_argument("--reps", type=int, default=3, help="max-rate runs per target (median)")
    parser.add_argument("--skip-litellm", action="store_true")
    parser.add_argument(
        "--streams-only", action="store_true", help="only the open-streams memory figure"
    )
    parser.add_argument(
        "--observe-rounds",
        type=int,
        default=7,
        help="interleaved fixed-rate runs of (c), (c'), (c'') and (b) for observability's cost",
    )
    parser.add_argument(
        "--observe-only", action="store_true", help="only observability's cost (CPU per request)"
    )
    parser.add_argument("--json", action="store_true", help="print JSON instead of tables")
    parser.add_argument(
        "--prompt-kib", type=int, default=0, help="with --streams-only: each stream's prompt size"
    )
    parser.add_argument("--hold", nargs=5, help=argparse.SUPPRESS)  # the stream-holding child
    args = parser.parse_args()
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))  # children inherit it
    if args.hold:
        url, n, ready, release, prompt_kib = args.hold
        asyncio.run(hold_streams(url, int(n), ready, release, int(prompt_kib)))
        return 0
    oha_binary()
    if args.streams_only or args.observe_only:
        args.skip_litellm = True
    if not args.skip_litellm:
        litellm_binary()
    tmp = Path(tempfile.mkdtemp(prefix="hedgerow-speed-"))
    mock = free_port()
    results: dict[str, Any] = {
        "machine": machine(),
        "observe": observe_wired(),
        "rate": args.rate,
        "rows": {},
    }
    configs = {}
    for name, request_log, observe in (
        ("full", "true", "true"),
        ("nolog", "false", "true"),
        ("noobserve", "false", "false"),
    ):
        path = tmp / f"hedgerow-{name}.yaml"
        path.write_text(
            HEDGEROW_CONFIG.format(
                mock=mock,
                model=MODEL,
                slow=SLOW_MODEL,
                tmp=tmp,
                request_log=request_log,
                observe=observe,
            )
        )
        configs[name] = path
    mock_args = [*HEDGEROW, "mock", "--port", str(mock)]
    with contextlib.ExitStack() as stack:
        mock_proc = stack.enter_context(process(mock_args, mock, tmp / "mock.log", "1"))
        path = "/v1/chat/completions"
        targets = {"(a) direct": f"http://127.0.0.1:{mock}{path}"}
        pids = {"(a) direct": mock_proc.pid}
        port = free_port()
        thin = [sys.executable, str(ROOT / "benches" / "thin_proxy.py"), "--port", str(port)]
        thin += ["--upstream", f"http://127.0.0.1:{mock}"]
        thin_proc = stack.enter_context(process(thin, port, tmp / "thin.log", "0"))
        targets["(b) aiohttp proxy"] = f"http://127.0.0.1:{port}{path}"
        pids["(b) aiohttp proxy"] = thin_proc.pid
        gateways = {}
        for label, name in (
            ("(c) hedgerow", "full"),
            ("(c') hedgerow, request log off", "nolog"),
            ("(c'') hedgerow, observability off", "noobserve"),
        ):
            port = free_port()
            serve = [*HEDGEROW, "serve", "--config", str(configs[name]), "--port", str(port)]
            proc = stack.enter_context(process(serve, port, tmp / f"serve-{name}.log", "0"))
            gateways[name] = (port, proc)
            targets[label] = f"http://127.0.0.1:{port}{path}"
            pids[label] = proc.pid
        if args.streams_only:
            port, proc = gateways["full"]
            streams = open_streams(port, mock, proc.pid, args.streams, tmp, args.prompt_kib)
            print(json.dumps(streams, indent=2))
            return 0
        observed = {k: v for k, v in targets.items() if k.startswith(("(b)", "(c"))}
        if args.observe_only:
            cost = observe_cost(observed, pids, 4.0, args.rate, args.observe_rounds)
            print(json.dumps(cost, indent=2) if args.json else observe_table(cost))
            return 0
        lite_proc = None
        if not args.skip_litellm:
            port = free_port()
            (tmp / "litellm.yaml").write_text(
                LITELLM_CONFIG.format(model=MODEL, mock=mock, key=KEY)
            )
            lite = [litellm_binary(), "--config", str(tmp / "litellm.yaml"), "--port", str(port)]
            lite += ["--num_workers", "1"]
            lite_proc = stack.enter_context(
                process(lite, port, tmp / "litellm.log", "0", timeout=180)
            )
            label = f"(d) LiteLLM {litellm_version()}"
            targets[label] = f"http://127.0.0.1:{port}{path}"
            pids[label] = lite_proc.pid
        results["rows"] = measure(targets, pids, args.seconds, args.rate, args.reps)
        if args.observe_rounds:
            results["observe_cost"] = observe_cost(
                observed, pids, 4.0, args.rate, args.observe_rounds
            )
        if lite_proc is not None:
            results["litellm_rss_mib"] = sum(
                rss_mib(p) for p in [lite_proc.pid, *children(lite_proc.pid)]
            )
        if args.streams:
            port, proc = gateways["full"]
            results["streams"] = open_streams(port, mock, proc.pid, args.streams, tmp)
        results["workers"] = workers_rps(configs["full"], args.seconds, tmp)
    print(json.dumps(results, indent=2) if args.json else table(results))
    return 0


def observe_table(cost: dict[str, Any]) -> str:
    """Observability's cost: CPU µs per request, on (c) against off (c'')."""
    lines = [
        "| mode | (b) aiohttp proxy | (c'') observability off | (c') on, request log off "
        "| (c) on | cost of it all | per round: median [quartiles] "
        "| user + system, off / on | runs of (c'') / (c) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for mode, rows in cost.items():
        paired = rows["paired"]
        # "(c'') hedgerow, observability off" -> "c''"
        by = {n[1 : n.index(")")]: row for n, row in rows.items() if n != "paired"}
        off, nolog, on = by["c''"]["median"], by["c'"]["median"], by["c"]["median"]
        listed = " ".join(f"{x:.0f}" for x in by["c''"]["runs"]) + " / "
        listed += " ".join(f"{x:.0f}" for x in by["c"]["runs"])
        split = " / ".join(f"{by[n]['user']:.0f} + {by[n]['system']:.0f}" for n in ("c''", "c"))
        lines.append(
            f"| {mode} | {by['b']['median']:.0f} | {off:.0f} | {nolog:.0f} | {on:.0f} "
            f"| **{on / off - 1:+.1%}** | {paired['median']:+.1%} "
            f"[{paired['q1']:+.1%}, {paired['q3']:+.1%}] | {split} | {listed} |"
        )
    return "\n".join(lines)


def table(results: dict[str, Any]) -> str:
    rows = results["rows"]
    direct = rows["(a) direct"]
    floor = rows["(b) aiohttp proxy"]
    observe = "on" if results["observe"] else "NOT wired (hedgerow.observe absent)"
    lines = [
        f"machine: {results['machine']}; metrics + event log + request log: {observe}",
        "latency: open loop, oha -q RATE --latency-correction, 16 connections",
        "",
    ]
    for mode in ("non-stream", "stream"):
        lines += [
            f"### {mode}",
            "",
            "| target | max req/s (median) | runs | vs (b) | rate | p50 ms | p99 ms "
            "| added p99 ms | CPU µs/req | CPU vs (b) |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for name, row in rows.items():
            r = row[mode]
            d = direct[mode]["latency"]
            added = r["latency"]["p99_ms"] - d["p99_ms"]
            note = "" if r["rate"] == results["rate"] else " (half max)"
            lines.append(
                f"| {name} | {r['max']['rps']:,.0f} "
                f"| {' to '.join(f'{x:,.0f}' for x in (min(r['runs']), max(r['runs'])))} "
                f"| {r['max']['rps'] / floor[mode]['max']['rps']:.0%} "
                f"| {r['rate']:,.0f}{note} | {r['latency']['p50_ms']:.2f} "
                f"| {r['latency']['p99_ms']:.2f} | "
                + ("—" if name == "(a) direct" else f"{added:+.2f}")
                + f" | {r['latency']['cpu_us']:.0f}"
                + f" | {floor[mode]['latency']['cpu_us'] / r['latency']['cpu_us']:.0%} |"
            )
        lines.append("")
    s = results.get("streams")
    if s:
        lines.append(
            f"open streams: {s['opened']:,} open ({s['failed']} failed) in {s['open_seconds']:.1f}s;"
            f" gateway RSS {s['rss_before_mib']:.0f} MiB idle, {s['rss_open_mib']:.0f} MiB with"
            f" all open, {s['rss_settled_mib']:.0f} MiB 6 s later"
        )
    if "litellm_rss_mib" in results:
        lines.append(f"LiteLLM RSS after its runs: {results['litellm_rss_mib']:.0f} MiB")
    if "observe_cost" in results:
        lines += ["", "observability's cost (CPU µs per request at the fixed rate, median):"]
        lines.append(observe_table(results["observe_cost"]))
    w = results.get("workers")
    if w:
        lines.append("workers (unpinned, non-stream max req/s): " + ", ".join(
            f"{k}: {v:,.0f}" for k, v in w.items()))  # fmt: skip
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
