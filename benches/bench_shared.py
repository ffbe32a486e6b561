"""What sharing a rate limit costs per request: local, shared memory, Redis (a script).

Times one granted acquire of:

* ``TokenBucket.acquire`` (one process's own limit);
* ``SharedState.bucket(...).acquire`` (the region the workers of ``serve --workers N`` share:
  the same GCRA compare-and-swap on a word of a file mapped under /dev/shm);
* the Redis GCRA Lua script of ``hedgerow.routing.remote.RemoteHealth`` from asyncio
  (redis-py, one loopback round trip), sequential and 64 at once.

Run: ``python benches/bench_shared.py`` (starts its own ``redis-server``).
"""

from __future__ import annotations

import asyncio
import math
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from hedgerow import TokenBucket  # noqa: E402
from hedgerow._core import SharedState  # noqa: E402
from hedgerow.config import SharedConfig  # noqa: E402
from hedgerow.routing.remote import RemoteHealth  # noqa: E402
from tests.redis_server import RedisServer, ensure_redis  # noqa: E402

N = 200_000


def per_call_ns(fn: object, n: int = N) -> float:
    call = fn  # type: ignore[assignment]
    start = time.perf_counter_ns()
    for _ in range(n):
        call()  # type: ignore[operator]
    return (time.perf_counter_ns() - start) / n


async def redis_us(url: str) -> tuple[float, float]:
    remote = RemoteHealth(SharedConfig(redis_url=url, prefix="bench"), time.monotonic)
    rate = 1e9
    for _ in range(200):  # warm-up: connection, script load
        await remote.acquire("k", rate, 60.0, 1.0)
    n = 5_000
    start = time.perf_counter()
    for _ in range(n):
        assert await remote.acquire("k", rate, 60.0, 1.0) == 0.0
    sequential = (time.perf_counter() - start) / n * 1e6
    start = time.perf_counter()
    for _ in range(n // 64):
        await asyncio.gather(*(remote.acquire("k", rate, 60.0, 1.0) for _ in range(64)))
    concurrent = (time.perf_counter() - start) / (n // 64 * 64) * 1e6
    await remote.aclose()
    return sequential, concurrent


def main() -> None:
    huge = 1e9
    local = TokenBucket(huge, per=1.0)
    tmp = Path(tempfile.mkdtemp(prefix="hedgerow-shared-"))
    region = SharedState(str(tmp / "region"), 4096)
    shared = region.bucket("rpm:bench", huge, 1.0)
    rows = {
        "TokenBucket.acquire (local)": per_call_ns(lambda: local.acquire(1.0)),
        "SharedBucket.acquire (shared memory)": per_call_ns(lambda: shared.acquire(1.0)),
        "SharedState.open_until (breaker trip read)": per_call_ns(
            lambda: region.open_until("oai/gpt")
        ),
    }
    ensure_redis()
    server = RedisServer(tmp, appendonly=False)
    server.start()
    try:
        seq, conc = asyncio.run(redis_us(server.url))
    finally:
        server.stop()
    print("| operation | per call |")
    print("|---|---:|")
    for name, ns in rows.items():
        print(f"| {name} | {ns:,.0f} ns |")
    print(f"| Redis GCRA script, sequential (round trip) | {seq:,.1f} µs |")
    print(f"| Redis GCRA script, 64 concurrent | {conc:,.1f} µs |")
    assert not math.isnan(seq)


if __name__ == "__main__":
    main()
