"""Observability's cost counted in instructions: deterministic where CPU time is not.

CPU time per request on this shared 2-vCPU VM moves by ±15 % from one 4-second run to the
next (``speed.py --observe-only`` pairs and repeats runs to see through it). Instructions
executed do not depend on the neighbours: ``hedgerow serve`` runs under valgrind's callgrind
(``--instr-atstart=no``), gets 300 warm-up requests uninstrumented, then counts exactly the
instructions (user space, every thread) of ``--requests`` answers; the same server counted
twice agrees within 0.1 %.

Three servers over the same config as ``speed.py``: **off** (``observe.enabled: false``),
**no request log** (observability on, ``request_log: false``) and **on** (what ``hedgerow
serve`` runs by default), for non-streamed and streamed answers. Under callgrind a server
answers ~400 requests/s, not thousands: what observability does per *second* (the 50 ms
drain, the gauge sampler, alert evaluation, the writer threads' wake-ups) would weigh
several times more per request than at a real rate. So each server is also counted idle for
``--idle-seconds``, and the table gives instructions per request at ``--rate`` requests/s:
``(counted - idle per second x seconds) / requests + idle per second / rate``.

What this does not count: the kernel (system calls, the network stack: about a third of the
server's CPU time, the same with observability on or off, which is why the share of CPU
time is smaller than the share of instructions) and how fast the instructions run (cache
misses).

Needs valgrind (``apt-get install valgrind``). Run (from the repository root)::

    .venv/bin/python benches/observe_instructions.py [--requests 3000] [--rate 2500]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benches.load_gateway import oha_binary  # noqa: E402
from benches.speed import HEDGEROW_CONFIG, MODEL, SLOW_MODEL, body, process  # noqa: E402
from tests.procs import HEDGEROW, free_port, wait_for_port  # noqa: E402

VARIANTS = (
    ("off", "false", "false"),
    ("no request log", "true", "false"),
    ("on", "true", "true"),
)


def oha_count(url: str, payload: dict[str, Any], requests: int) -> float:
    """``requests`` answers from ``url`` (8 connections); returns the seconds taken."""
    args = [oha_binary(), "--no-tui", "-n", str(requests), "-c", "8", "-m", "POST"]
    args += ["-T", "application/json", "-d", json.dumps(payload), url]
    began = time.monotonic()
    subprocess.run(args, check=True, capture_output=True)
    return time.monotonic() - began


def callgrind_control(pid: int, *args: str) -> None:
    subprocess.run(["callgrind_control", *args, str(pid)], check=True, capture_output=True)


def counted(config: Path, stream: bool, requests: int, idle: float, tmp: Path) -> dict[str, float]:
    """Instructions of one server: ``requests`` answers, then ``idle`` seconds of nothing."""
    results = {}
    for phase in ("busy", "idle"):
        port = free_port()
        log = tmp / f"callgrind-{config.stem}-{phase}.log"
        args = ["valgrind", "--tool=callgrind", "--instr-atstart=no"]
        args += ["--callgrind-out-file=/dev/null", *HEDGEROW, "serve"]
        args += ["--config", str(config), "--port", str(port)]
        with open(log, "wb") as out:
            proc = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT)
            try:
                wait_for_port(port, proc, timeout=300)
                url = f"http://127.0.0.1:{port}/v1/chat/completions"
                oha_count(url, body(MODEL, stream), 300)  # warm-up, not counted
                callgrind_control(proc.pid, "-i", "on")
                if phase == "busy":
                    results["seconds"] = oha_count(url, body(MODEL, stream), requests)
                else:
                    time.sleep(idle)  # counting what a server does with no traffic
                callgrind_control(proc.pid, "-i", "off")
            finally:
                proc.terminate()
                proc.wait(timeout=120)
        found = re.search(r"Collected : (\d+)", log.read_text())
        if found is None:
            raise RuntimeError(f"callgrind reported nothing: see {log}")
        results[phase] = float(found.group(1))
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--rate", type=float, default=2500.0)
    parser.add_argument("--idle-seconds", type=float, default=6.0)
    args = parser.parse_args()
    if shutil.which("valgrind") is None:
        print("needs valgrind: apt-get install valgrind", file=sys.stderr)
        return 2
    tmp = Path(tempfile.mkdtemp(prefix="hedgerow-instructions-"))
    mock = free_port()
    configs = {}
    for name, observe, request_log in VARIANTS:
        path = tmp / f"{name.replace(' ', '-')}.yaml"
        (tmp / path.stem).mkdir()
        path.write_text(
            HEDGEROW_CONFIG.format(
                mock=mock,
                model=MODEL,
                slow=SLOW_MODEL,
                tmp=tmp / path.stem,
                request_log=request_log,
                observe=observe,
            )
        )
        configs[name] = path
    rows = []
    with contextlib.ExitStack() as stack:
        stack.enter_context(
            process([*HEDGEROW, "mock", "--port", str(mock)], mock, tmp / "mock.log", "1")
        )
        for stream in (False, True):
            per_request = {}
            for name, path in configs.items():
                c = counted(path, stream, args.requests, args.idle_seconds, tmp)
                idle_rate = c["idle"] / args.idle_seconds
                busy = c["busy"] - idle_rate * c["seconds"]
                per_request[name] = busy / args.requests + idle_rate / args.rate
                print(
                    f"{'stream' if stream else 'non-stream'} {name}: "
                    f"{c['busy'] / args.requests:,.0f} a request as counted, "
                    f"{idle_rate:,.0f} a second idle",
                    file=sys.stderr,
                )
            rows.append(("stream" if stream else "non-stream", per_request))
    print(f"| mode | {' | '.join(n for n, _, _ in VARIANTS)} | cost of it all |")
    print(f"|---|{'---:|' * (len(VARIANTS) + 1)}")
    for mode, per_request in rows:
        cells = " | ".join(f"{per_request[n] / 1000:,.1f}k" for n, _, _ in VARIANTS)
        cost = per_request["on"] / per_request["off"] - 1
        print(f"| {mode} | {cells} | **{cost:+.1%}** |")
    print(f"\n(instructions a request at {args.rate:,.0f} requests/s, {args.requests} counted)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
