"""``hedgerow bench``: how much one gateway worker carries, measured on this machine.

Three real processes: the simulator (``hedgerow mock``), the gateway (``hedgerow serve``
with the given config, its providers pointed at the simulator, or a built-in one-route
config) and the load generator (``hedgerow.capacity.loadgen``). The gateway gets a core of
its own; the load generator never shares the gateway's core (on two cores it shares the
other one with the simulator). Every process's CPU is measured during every step.

1. **Open streams**: ``streams`` streams held open through the gateway, paced slowly; the
   gateway's RSS before and with all of them open, and its CPU while they run: memory and
   CPU per 1,000 open streams. Measured first, on a fresh gateway.
2. **Steps**: the request mix sent open loop at a rate growing by ``growth`` each step
   until a step fails (an error, or p99 added latency above the target), then bisected.
   The highest passing rate is the max sustainable requests/s of one worker; the streams
   open on average at that rate, its concurrent streams.
3. **Direct**: the same mix at that rate straight to the simulator: the added latency the
   simulator and the client account for by themselves (the floor of the measurement).

Added latency is the client's latency (to the first content of a stream, to the whole
answer otherwise) minus the latency the simulator was scripted to take for that request
(each request carries its own timing, drawn from the mix).
"""

from __future__ import annotations

import math
import os
import subprocess
import sys
import tempfile
import time
import tomllib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgspec
import orjson

from hedgerow import __version__
from hedgerow.capacity.loadgen import Mix, mix_dict
from hedgerow.capacity.procs import free_port, hedgerow_process, pin, stop
from hedgerow.capacity.stats import cpu_seconds, machine_info, rss_bytes

__all__ = ["BenchOptions", "Layout", "bench_config", "plan_cores", "run_bench"]

# The load generator above this share of its core may be what limits the rate.
LOADGEN_CPU_LIMIT = 0.8
# The share of a core a worker is planned to use (headroom for bursts and GC), for the
# projection from CPU per request.
CPU_BUDGET = 0.8
# A latency failure while the gateway used less than this share of its core is put down to
# the harness (simulator, load generator, neighbours), not the gateway.
HARNESS_CPU = 0.6

BUILTIN_ROUTE = "bench"
BUILTIN_CONFIG: dict[str, Any] = {
    "providers": {"sim": {"kind": "openai", "base_url": "", "api_key": "hedgerow-bench-dummy-key"}},
    "routes": {BUILTIN_ROUTE: {"tiers": [["sim/bench-model"]]}},
}

# Parts of a user's config that would reach real services or other instances from a bench.
_DROPPED = ("auth", "shared")
_DROPPED_OBSERVE = ("sinks", "status_pages")


@dataclass
class BenchOptions:
    """What to measure and how long."""

    config: str | None = None
    route: str | None = None
    mix: Mix = field(default_factory=Mix)
    target_rps: float = 1000.0
    p99_target_ms: float = 50.0
    step_seconds: float = 10.0
    start_rps: float = 20.0
    growth: float = 1.5
    max_steps: int = 12
    refine: int = 2
    streams: int = 2000
    hold_tps: float = 2.0
    hold_seconds: float = 5.0
    progress: Callable[[str], None] | None = None


@dataclass
class Layout:
    """Which cores each process may run on."""

    gateway: set[int]
    load_generator: set[int]
    simulator: set[int]
    note: str


def plan_cores(cores: list[int] | None = None) -> Layout:
    """The gateway alone on the first core; the load generator on the next; the simulator
    on the one after (or beside the load generator when there are only two)."""
    if cores is None:
        cores = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
    if len(cores) >= 3:
        return Layout(
            {cores[0]},
            {cores[1]},
            set(cores[2:]),
            "gateway, load generator and simulator each on cores of their own",
        )
    if len(cores) == 2:
        return Layout(
            {cores[0]},
            {cores[1]},
            {cores[1]},
            "gateway alone on one core; load generator and simulator share the other",
        )
    return Layout(set(cores), set(cores), set(cores), "one core: every process shares it")


def bench_config(path: str | None, sim_url: str, tmp: Path) -> tuple[dict[str, Any], list[str]]:
    """The gateway's config: the user's with every provider pointed at the simulator (and
    what would reach real services dropped), or the built-in one; with what was changed."""
    if path is None:
        raw: dict[str, Any] = orjson.loads(orjson.dumps(BUILTIN_CONFIG))
        changes = ["built-in one-route config"]
    else:
        text = Path(path).read_bytes()
        raw = tomllib.loads(text.decode()) if path.endswith(".toml") else msgspec.yaml.decode(text)
        if not isinstance(raw, dict):
            raise ValueError(f"{path}: not a mapping")
        changes = [f"{path}: every provider pointed at the simulator, with a dummy key"]
    for provider in raw.get("providers", {}).values():
        kind = provider.get("kind")
        provider["base_url"] = sim_url + ("/v1" if kind in ("openai", "openai_compatible") else "")
        provider["api_key"] = "hedgerow-bench-dummy-key"
        provider.pop("api_key_file", None)
    for key in _DROPPED:
        if raw.pop(key, None) is not None:
            changes.append(f"{key} dropped")
    observe = raw.setdefault("observe", {})
    for key in _DROPPED_OBSERVE:
        if observe.pop(key, None) is not None:
            changes.append(f"observe.{key} dropped")
    observe["event_log"] = str(tmp / "events.db")
    if observe.get("request_log", True):
        observe["request_log_file"] = str(tmp / "requests.jsonl")
    raw.setdefault("jobs", {})["path"] = str(tmp / "jobs.db")
    return raw, changes


class _LoadGenerator:
    """The load generator process: JSON lines in and out."""

    def __init__(self, cpus: set[int], log: Path) -> None:
        self._log = open(log, "wb")  # noqa: SIM115 - closed in close()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "hedgerow.capacity.loadgen"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._log,
        )
        pin(self.proc.pid, cpus)

    def send(self, command: dict[str, Any]) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(orjson.dumps(command) + b"\n")
        self.proc.stdin.flush()

    def read(self) -> dict[str, Any]:
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"the load generator stopped (see {self._log.name})")
        result: dict[str, Any] = orjson.loads(line)
        return result

    def close(self) -> None:
        if self.proc.poll() is None:
            self.send({"op": "quit"})
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                stop(self.proc)
        self._log.close()


@contextmanager
def _load_generator(cpus: set[int], log: Path) -> Iterator[_LoadGenerator]:
    generator = _LoadGenerator(cpus, log)
    try:
        yield generator
    finally:
        generator.close()


class _Meter:
    """CPU share of each process over a stretch of time."""

    def __init__(self, pids: dict[str, int]) -> None:
        self.pids = pids
        self.start = time.monotonic()
        self.cpu = {name: cpu_seconds(pid) for name, pid in pids.items()}

    def shares(self) -> dict[str, float]:
        wall = max(1e-9, time.monotonic() - self.start)
        return {
            name: round((cpu_seconds(pid) - self.cpu[name]) / wall, 3)
            for name, pid in self.pids.items()
        }


def _step(
    generator: _LoadGenerator,
    pids: dict[str, int],
    url: str,
    model: str,
    rate: float,
    options: BenchOptions,
    seed: int,
) -> dict[str, Any]:
    """One open-loop step; whether it passed, and why not."""
    meter = _Meter(pids)
    generator.send(
        {
            "op": "run",
            "url": url,
            "model": model,
            "rate": rate,
            "seconds": options.step_seconds,
            "mix": mix_dict(options.mix),
            "seed": seed,
        }
    )
    generator.read()  # {"event": "sent"}: CPU is measured over the sending time
    cpu = meter.shares()
    result = generator.read()
    result["cpu"] = cpu
    errors = sum(result["errors"].values())
    p99 = result["added_ms"]["p99"]
    reasons = []
    if errors:
        reasons.append(f"{errors} errors")
    if p99 is None or p99 > options.p99_target_ms:
        reasons.append(f"p99 added {p99} ms > {options.p99_target_ms:g} ms")
    result["achieved_rps"] = round(result["ok"] / max(1e-9, result["send_seconds"]), 1)
    # The gateway's own cost, which hardly moves when neighbours add latency.
    result["gateway_cpu_us_per_request"] = (
        round(cpu["gateway"] / result["achieved_rps"] * 1e6, 1) if result["achieved_rps"] else None
    )
    result["passed"] = not reasons
    result["reason"] = "; ".join(reasons)
    return result


def _hold(
    generator: _LoadGenerator, gateway: int, url: str, model: str, options: BenchOptions
) -> dict[str, Any]:
    """Streams held open through the gateway: RSS and CPU per 1,000 of them."""
    rss_before = rss_bytes(gateway)
    generator.send(
        {
            "op": "hold",
            "url": url,
            "model": model,
            "streams": options.streams,
            "tps": options.hold_tps,
            "seconds": options.hold_seconds,
        }
    )
    opened = generator.read()
    rss_open = rss_bytes(gateway)
    cpu0, wall0 = cpu_seconds(gateway), time.monotonic()
    # A measurement window inside the load generator's hold (it closes the streams after).
    time.sleep(max(0.2, options.hold_seconds * 0.8))
    cpu_share = (cpu_seconds(gateway) - cpu0) / (time.monotonic() - wall0)
    result = generator.read()
    count = max(1, int(opened["open"]))
    return {
        "streams": options.streams,
        "opened": opened["open"],
        "errors": result["errors"],
        "tokens_per_second_each": options.hold_tps,
        "rss_idle_bytes": rss_before,
        "rss_open_bytes": rss_open,
        "rss_per_1000_streams_bytes": round((rss_open - rss_before) * 1000 / count),
        "cpu_percent_per_1000_streams": round(100 * cpu_share * 1000 / count, 2),
    }


def _say(options: BenchOptions, line: str) -> None:
    if options.progress is not None:
        options.progress(line)


def _rates(options: BenchOptions, run: Callable[[float], dict[str, Any]]) -> list[dict[str, Any]]:
    """Step up to the first failing rate, then bisect between it and the last passing one."""
    steps: list[dict[str, Any]] = []
    rate = options.start_rps
    good: float | None = None
    bad: float | None = None
    for _ in range(options.max_steps):
        step = run(rate)
        steps.append(step)
        if not step["passed"]:
            bad = rate
            break
        good = rate
        rate = round(rate * options.growth, 1)
    if good is not None and bad is not None:
        for _ in range(options.refine):
            middle = round((good + bad) / 2, 1)
            step = run(middle)
            steps.append(step)
            good, bad = (middle, bad) if step["passed"] else (good, middle)
    return steps


def _cpu_projection(passing: list[dict[str, Any]]) -> dict[str, Any] | None:
    """Requests/s one worker takes at ``CPU_BUDGET`` of its core, from the gateway's CPU per
    request at the highest passing step (the most requests measured, the least timer noise)."""
    measured = [s for s in passing if s.get("gateway_cpu_us_per_request")]
    if not measured:
        return None
    top = max(measured, key=lambda s: s["offered_rps"])
    cpu_us = float(top["gateway_cpu_us_per_request"])
    return {
        "cpu_us_per_request": cpu_us,
        "at_rps": top["offered_rps"],
        "cpu_budget": CPU_BUDGET,
        "max_rps_per_worker": round(CPU_BUDGET / (cpu_us / 1e6), 1),
    }


def run_bench(options: BenchOptions) -> dict[str, Any]:
    """Run everything (see the module docstring); the report's figures as plain data."""
    layout = plan_cores()
    tmp = Path(tempfile.mkdtemp(prefix="hedgerow-bench-"))
    sim_port, gw_port = free_port(), free_port()
    sim_url = f"http://127.0.0.1:{sim_port}"
    raw, changes = bench_config(options.config, sim_url, tmp)
    routes = list(raw.get("routes", {}))
    route = options.route or (routes[0] if routes else BUILTIN_ROUTE)
    if route not in routes:
        raise ValueError(f"no route {route!r} in the config (routes: {', '.join(routes)})")
    config_path = tmp / "hedgerow.json"
    config_path.write_bytes(orjson.dumps(raw))
    gateway_url = f"http://127.0.0.1:{gw_port}/v1/chat/completions"
    direct_url = f"{sim_url}/v1/chat/completions"
    warnings: list[str] = []
    if layout.gateway & layout.load_generator:
        warnings.append("the load generator shares the gateway's core: figures are low")
    env = {"PYTHONUNBUFFERED": "1"}
    _say(options, f"simulator on :{sim_port}, gateway on :{gw_port} (logs in {tmp})")
    with (
        hedgerow_process(
            ["mock", "--port", str(sim_port)],
            sim_port,
            tmp / "mock.log",
            env=env,
            cpus=layout.simulator,
        ) as sim,
        hedgerow_process(
            ["serve", "--config", str(config_path), "--port", str(gw_port)],
            gw_port,
            tmp / "serve.log",
            env=env,
            cpus=layout.gateway,
        ) as gateway,
        _load_generator(layout.load_generator, tmp / "loadgen.log") as generator,
    ):
        pids = {"gateway": gateway.pid, "simulator": sim.pid, "load_generator": generator.proc.pid}
        _say(options, f"holding {options.streams} streams open")
        held = _hold(generator, gateway.pid, gateway_url, route, options)
        # Warm-up (connections, caches), not reported.
        _step(generator, pids, gateway_url, route, options.start_rps, options, seed=0)

        seeds = iter(range(1, 1000))
        late_ms = options.p99_target_ms / 4

        def run(rate: float) -> dict[str, Any]:
            step = _step(generator, pids, gateway_url, route, rate, options, next(seeds))
            if not step["passed"] and (step["send_lag_ms"]["p99"] or 0) > late_ms:
                # The load generator itself sent late (its core stalled: the gateway cannot
                # have caused that), so the step says nothing of the gateway: once more.
                _say(options, f"{rate:8.1f} req/s: the load generator sent late; again")
                step = _step(generator, pids, gateway_url, route, rate, options, next(seeds))
                step["repeated"] = True
            added = step["added_ms"]
            _say(
                options,
                f"{rate:8.1f} req/s: p99 added {added['p99']} ms, gateway CPU "
                f"{step['cpu']['gateway'] * 100:.0f}%, "
                + ("ok" if step["passed"] else f"failed ({step['reason']})"),
            )
            return step

        steps = _rates(options, run)
        passing = [s for s in steps if s["passed"]]
        best = max(passing, key=lambda s: s["offered_rps"]) if passing else None
        direct = None
        if best is not None:
            direct = _step(
                generator, pids, direct_url, "bench-model", best["offered_rps"], options, seed=999
            )
    max_rps = best["offered_rps"] if best is not None else 0.0
    failing = [s for s in steps if not s["passed"]]
    saturated_by = "not reached"
    if failing:
        first = failing[0]
        cpu = first["cpu"]
        load_side = cpu["load_generator"] + (
            cpu["simulator"] if layout.simulator == layout.load_generator else 0.0
        )
        if cpu["gateway"] >= 0.85:
            saturated_by = "gateway"
        elif load_side >= 0.9 or cpu["load_generator"] >= LOADGEN_CPU_LIMIT:
            saturated_by = "load side"
            warnings.append(
                "the load generator's core was saturated before the gateway's: the max is a "
                "lower bound"
            )
        elif cpu["gateway"] < HARNESS_CPU:
            saturated_by = "harness"
            warnings.append(
                f"p99 added latency passed the target while the gateway used only "
                f"{cpu['gateway'] * 100:.0f}% of its core: the simulator and the load "
                "generator (sharing a core here) added it; plan with the CPU projection"
            )
        else:
            saturated_by = "latency"
    else:
        warnings.append(
            f"no step failed within {options.max_steps} steps: the max is a lower bound"
        )
    late = [s["offered_rps"] for s in steps if (s["send_lag_ms"]["p99"] or 0) > late_ms]
    if late:
        warnings.append(
            f"the load generator sent late (p99 > {late_ms:g} ms) at {late} req/s: its core "
            "was busy (other work on the machine?); those steps understate the gateway"
        )
    generator_peak = max((s["cpu"]["load_generator"] for s in steps), default=0.0)
    at_max = best["cpu"]["load_generator"] if best is not None else generator_peak
    if at_max >= LOADGEN_CPU_LIMIT:
        warnings.append(
            f"the load generator used {at_max * 100:.0f}% of its core at the max rate "
            f"(limit {LOADGEN_CPU_LIMIT * 100:.0f}%): it may be what limited the rate"
        )
    if best is None:
        warnings.append("even the first step failed: lower --start-rps or raise --p99-target-ms")
    if held["opened"] < held["streams"]:
        warnings.append(f"only {held['opened']} of {held['streams']} streams opened")
    projected = _cpu_projection(passing)
    # What a worker can take: the measured max when the gateway itself saturated; the CPU
    # projection when the harness gave out first (the measured max is then a lower bound).
    planning_rps = max_rps
    if projected is not None and saturated_by in ("harness", "load side", "not reached"):
        planning_rps = max(max_rps, projected["max_rps_per_worker"])
    workers = math.ceil(options.target_rps / planning_rps) if planning_rps > 0 else None
    return {
        "hedgerow": __version__,
        "machine": machine_info(),
        "layout": {
            "gateway_cores": sorted(layout.gateway),
            "load_generator_cores": sorted(layout.load_generator),
            "simulator_cores": sorted(layout.simulator),
            "note": layout.note,
        },
        "config": changes,
        "route": route,
        "mix": mix_dict(options.mix),
        "added_latency": (
            "client latency (to the first content of a stream, to the whole answer "
            "otherwise) minus the latency the simulator was scripted to take for that request"
        ),
        "p99_added_target_ms": options.p99_target_ms,
        "step_seconds": options.step_seconds,
        "steps": steps,
        "max_rps_per_worker": max_rps,
        "cpu_projection": projected,
        "planning_rps_per_worker": planning_rps,
        "concurrent_streams_per_worker": best["open_streams"]["mean"] if best else 0.0,
        "p99_added_ms_at_max": best["added_ms"]["p99"] if best else None,
        "direct_at_max": None
        if direct is None
        else {"added_ms": direct["added_ms"], "errors": direct["errors"]},
        "saturated_by": saturated_by,
        "open_streams": held,
        "target_rps": options.target_rps,
        "workers_needed": workers,
        "load_generator": {
            "how": (
                "a separate process pinned away from the gateway's core; its CPU share is "
                f"measured at every step and must stay below {LOADGEN_CPU_LIMIT * 100:.0f}% "
                "of its core at the max rate, else a warning; latency counts from when each "
                "request was due, so a late send shows as added latency (send_lag_ms)"
            ),
            "cpu_share_at_max": at_max,
            "cpu_share_peak": generator_peak,
            "limit": LOADGEN_CPU_LIMIT,
            "ok": at_max < LOADGEN_CPU_LIMIT,
        },
        "warnings": warnings,
        "logs": str(tmp),
    }
