"""``GET /metrics`` under a scripted outage, and label cardinality that traffic cannot grow."""

from __future__ import annotations

import asyncio
import contextlib
import os
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import aiohttp
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hedgerow.jobs import FakeClock as JobsClock
from hedgerow.jobs import Group, JobError, Priority, submit
from hedgerow.jobs.sqlite import SqliteQueue
from hedgerow.observe import Observability
from hedgerow.observe.hub import queue_probe
from hedgerow.observe.metrics import Metrics, prepare_multiprocess, worker_exited
from hedgerow.routing import Gateway
from hedgerow.routing.events import Event
from hedgerow.sim.mock import RunningMock
from tests.observe.conftest import CHAT, USER, FakeClock, config_for, metric, running_app, until
from tests.servers import make_config, start_gateway

# Provider addresses nothing listens on: metrics never call them.
_NO_MOCK: Any = SimpleNamespace(
    anthropic_base_url="http://127.0.0.1:9",
    openai_base_url="http://127.0.0.1:9/v1",
    gemini_base_url="http://127.0.0.1:9",
)

ROUTES = {
    "chat": CHAT,
    "support": {
        "tiers": [["anth/claude-opus-4-8"]],
        "retry": {"max_retries": 0},
        "minimal": {"kind": "template", "text": "We are on it."},
    },
    "hedged": {
        "tiers": [["anth/claude-haiku-4-5"], ["oai/gpt-4.1"]],
        "hedge": {"after": 0.05, "budget": 1.0},
        "retry": {"max_retries": 0},
    },
    "limited": {
        "tiers": [[{"target": "gem/gemini-3-5-flash", "rpm": 5}]],
        "retry": {"max_retries": 0},
    },
}


async def test_metrics_follow_a_scripted_outage(mock: RunningMock, tmp_path: Path) -> None:
    clock = FakeClock()
    async with running_app(config_for(mock, tmp_path, ROUTES), clock) as app:
        for _ in range(2):
            assert (await app.chat()).headers["x-hedgerow-tier"] == "0"
        text = await app.metrics()
        assert (
            metric(text, "hedgerow_requests_total", route="chat", tier="0", **{"class": "ok"}) == 2
        )
        assert metric(text, "hedgerow_breaker_state", model="claude-sonnet-4-6") == 0
        # Series that alert rules divide by exist before anything failed.
        assert (
            metric(text, "hedgerow_attempts_total", model="claude-sonnet-4-6", **{"class": "529"})
            == 0
        )

        # Anthropic's Sonnet answers 529 to everything: three failovers, then the breaker.
        mock.set_faults("claude-sonnet-4-6", {"kind": "error", "status": 529})
        for _ in range(4):
            assert (await app.chat()).headers["x-hedgerow-tier"] == "1"
        text = await app.metrics()
        sonnet = {"provider": "anth", "model": "claude-sonnet-4-6"}
        assert metric(text, "hedgerow_attempts_total", **sonnet, **{"class": "529"}) == 3
        assert (
            metric(text, "hedgerow_upstream_errors_total", **sonnet, **{"class": "overloaded"}) == 3
        )
        assert (
            metric(text, "hedgerow_failovers_total", route="chat", tier="1", model="gpt-5.5") == 3
        )
        assert metric(text, "hedgerow_breaker_state", **sonnet) == 2
        assert (
            metric(text, "hedgerow_breaker_transitions_total", **sonnet, **{"class": "open"}) == 1
        )
        assert (
            metric(text, "hedgerow_requests_total", route="chat", tier="1", **{"class": "ok"}) == 4
        )
        assert (
            metric(text, "hedgerow_attempt_duration_seconds_count", **sonnet, **{"class": "529"})
            == 3
        )

        # Every tier of `support` fails: its minimal answer, counted as such.
        mock.set_faults("claude-opus-4-8", {"kind": "error", "status": 500})
        assert (await app.chat("support")).headers["x-hedgerow-tier"] == "minimal"
        text = await app.metrics()
        assert (
            metric(text, "hedgerow_degraded_total", route="support", **{"class": "template"}) == 1
        )
        assert (
            metric(
                text,
                "hedgerow_requests_total",
                route="support",
                tier="minimal",
                **{"class": "minimal"},
            )
            == 1
        )
        assert (
            metric(text, "hedgerow_retries_total", route="support", **{"class": "exhausted"}) == 1
        )

        # A late first byte on `hedged`: a hedge starts, the secondary wins, the loser goes.
        mock.set_faults("claude-haiku-4-5", {"kind": "delay", "delay": 5.0, "count": 1})
        assert (await app.chat("hedged")).headers["x-hedgerow-deployment"] == "oai/gpt-4.1"
        text = await app.metrics()
        for klass in ("started", "won", "cancelled"):
            assert metric(text, "hedgerow_hedges_total", route="hedged", **{"class": klass}) == 1

        # A streamed request: its time to first content, per serving deployment.
        assert (await app.chat("hedged", stream=True)).status == 200
        text = await app.metrics()
        ttfc = metric(
            text, "hedgerow_time_to_first_content_seconds_count", model="claude-haiku-4-5"
        )
        assert ttfc == 1

        # Rate limit left, read from the deployment's bucket at scrape time.
        assert (await app.chat("limited")).status == 200
        text = await app.metrics()
        left = metric(
            text, "hedgerow_rate_limit_remaining", model="gemini-3-5-flash", **{"class": "rpm"}
        )
        assert left is not None and 3.9 <= left <= 4.0

        # Recovery: the open period passes on the clock (half-open shows at once), one probe
        # closes it.
        mock.state.faults.clear()
        clock.advance(11.0)
        text = await app.metrics()
        assert metric(text, "hedgerow_breaker_state", **sonnet) == 1
        assert (await app.chat()).headers["x-hedgerow-tier"] == "0"
        text = await app.metrics()
        assert metric(text, "hedgerow_breaker_state", **sonnet) == 0
        assert metric(text, "hedgerow_in_flight", **sonnet) == 0


def series(text: str) -> set[str]:
    """Every series in an exposition (histogram buckets folded into their histogram)."""
    found = set()
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        head = line.rpartition(" ")[0]
        name, _, labels = head.partition("{")
        kept = ",".join(p for p in labels.rstrip("}").split(",") if not p.startswith("le="))
        found.add(f"{name.removesuffix('_bucket')}{{{kept}}}")
    return found


async def test_label_cardinality_does_not_grow_with_traffic(
    mock: RunningMock, tmp_path: Path
) -> None:
    async with running_app(config_for(mock, tmp_path, ROUTES), FakeClock()) as app:

        async def junk(round_number: int) -> set[str]:
            # Requests for models no route has, and a provider answering oddly (403).
            for i in range(30):
                response = await app.chat(f"no-such-route-{round_number}-{i}")
                assert response.status == 404
            mock.set_faults("claude-sonnet-4-6", {"kind": "error", "status": 403})
            assert (await app.chat()).status == 200  # failed over
            mock.state.faults.clear()
            # (The job-queue gauges appear when the sampler first reads the queue: a fixed
            # set, whatever the traffic.)
            found = series(await app.metrics())
            return {s for s in found if not s.startswith("hedgerow_queue_")}

        first = await junk(1)
        second = await junk(2)
        text = await app.metrics()
        assert "no-such-route" not in text
        assert (
            metric(text, "hedgerow_requests_total", route="_unknown", **{"class": "client_error"})
            == 60
        )
        # Sixty distinct unknown names and two odd outages later: not one series more.
        assert second == first
        routes = {s.split('route="')[1].split('"')[0] for s in second if 'route="' in s}
        assert routes <= {*ROUTES, "_unknown"}


async def test_queue_depth_of_the_jobs_queue_is_exported(mock: RunningMock, tmp_path: Path) -> None:
    async with running_app(config_for(mock, tmp_path, ROUTES), FakeClock()) as app:
        job = {"request": {"model": "chat", "messages": [{"role": "user", "content": "later"}]}}
        async with app.session.post(app.url + "/v1/jobs", json=job) as response:
            assert response.status == 202, await response.text()

        async def queued() -> bool:
            value = metric(await app.metrics(), "hedgerow_queue_jobs", **{"class": "queued"})
            return value == 1

        # The sampler reads the queue on its own schedule (every few seconds).
        await until(queued, timeout=15.0, what="hedgerow_queue_jobs{class=queued} == 1")


async def test_oldest_job_age_is_exported_on_the_wall_clock_given(
    mock: RunningMock, tmp_path: Path
) -> None:
    config = config_for(mock, tmp_path, ROUTES)
    jobs_clock = JobsClock(start=1_800_000_000.0)
    wall = [jobs_clock.time()]
    queue = SqliteQueue(tmp_path / "aged.db")
    try:
        async with Gateway(config) as gateway:
            metrics = Metrics(gateway)
            probe = queue_probe(queue, wall=lambda: wall[0])

            async def sample() -> tuple[float | None, float | None]:
                metrics.queue(*await probe())
                text = metrics.exposition().decode()
                return (
                    metric(text, "hedgerow_queue_oldest_age_seconds"),
                    metric(text, "hedgerow_queue_jobs", **{"class": "queued"}),
                )

            assert await sample() == (0.0, 0.0)
            # No Redis configured: no sharing gauge that could read as "fallen back".
            assert "hedgerow_shared_redis_up" not in metrics.exposition().decode()
            first = await submit(queue, {"model": "chat", "messages": USER}, clock=jobs_clock)
            jobs_clock.advance(30)
            await submit(queue, {"model": "chat", "messages": USER}, clock=jobs_clock)
            wall[0] += 42.5
            assert await sample() == (42.5, 2.0)
            leased = await queue.lease(
                Group(Priority.BATCH, "chat"), "w", 1, 60.0, jobs_clock.time()
            )
            assert [j.id for j in leased] == [first.id]
            assert await sample() == (42.5, 1.0)  # running: not answered yet
            await queue.bury(
                leased[0], JobError("bad_request", "no", 400), "permanent", wall[0], webhook=False
            )
            assert await sample() == (12.5, 1.0)
    finally:
        await queue.close()


def test_supervisor_helpers_for_several_workers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    directory = tmp_path / "multiproc"
    directory.mkdir()
    (directory / "counter_1234.db").write_bytes(b"stale")
    (directory / "gauge_livemax_4321.db").write_bytes(b"x")
    monkeypatch.delenv("PROMETHEUS_MULTIPROC_DIR", raising=False)
    monkeypatch.setattr(os, "environ", dict(os.environ))  # the helper sets it for children
    assert prepare_multiprocess(str(directory)) == str(directory)
    assert os.environ["PROMETHEUS_MULTIPROC_DIR"] == str(directory)
    assert list(directory.iterdir()) == []  # stale values from a previous run are gone
    (directory / "gauge_livemax_4321.db").write_bytes(b"x")
    (directory / "counter_4321.db").write_bytes(b"x")
    worker_exited(4321)
    assert [p.name for p in directory.iterdir()] == ["counter_4321.db"]  # counts stay


async def test_close_finishes_when_a_probe_swallows_its_cancellation(
    mock: RunningMock, tmp_path: Path
) -> None:
    """CPython 3.11's ``wait_for`` can lose a cancellation; shutdown must not hang on it."""
    config = config_for(mock, tmp_path, ROUTES)
    started = asyncio.Event()

    async def stubborn_probe() -> tuple[dict[str, int], float | None]:
        started.set()
        with contextlib.suppress(asyncio.CancelledError):  # swallowed: on it goes
            await asyncio.sleep(30)
        return {"queued": 0}, None

    async with Gateway(config) as gateway:
        observe = Observability(gateway, config.observe)
        observe.watch_queue(stubborn_probe)
        await observe.start()
        await started.wait()
        loop = asyncio.get_running_loop()
        began = loop.time()
        await observe.close()
        assert loop.time() - began < 3.0


async def test_a_failing_observer_never_reaches_traffic_or_readers(
    mock: RunningMock, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    async with running_app(config_for(mock, tmp_path, ROUTES), FakeClock()) as app:
        on_requests = app.observe.metrics.on_requests
        bad: list[str] = []  # the request id of the one request whose counting fails

        def flaky(batch: Any) -> None:
            for event, _ in batch:
                if not bad:
                    bad.append(event.detail["request_id"])
                if event.detail["request_id"] == bad[0]:
                    raise RuntimeError("observer bug")
            on_requests(batch)

        app.observe.metrics.on_requests = flaky  # type: ignore[method-assign]
        for _ in range(3):
            assert (await app.chat()).status == 200
        text = await app.metrics()  # the scrape takes in the queue, past the failure
        assert (
            metric(text, "hedgerow_requests_total", route="chat", tier="0", **{"class": "ok"}) == 2
        )
        assert metric(text, "hedgerow_attempts_total", route="chat", **{"class": "success"}) == 3
    assert any("processing an event failed" in r.message for r in caplog.records)


async def test_observability_can_be_turned_off(mock: RunningMock) -> None:
    """``observe.enabled: false``: requests are served, and none of observability's
    endpoints exist (404 in the client's format), for a stack that brings its own."""
    config = make_config(mock, {"chat": {"tiers": [["oai/gpt-5.5"]]}}, observe={"enabled": False})
    async with start_gateway(config) as gw, aiohttp.ClientSession() as http:
        body = {"model": "chat", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 5}
        async with http.post(f"{gw.url}/v1/chat/completions", json=body) as response:
            assert response.status == 200
        for path in ("/metrics", "/v1/health", "/v1/events", "/dashboard"):
            async with http.get(f"{gw.url}{path}") as response:
                assert response.status == 404, path
                assert (await response.json())["error"]["type"] == "invalid_request_error"


_SHAPES = st.tuples(
    st.sampled_from(["chat", "support", "nope", None]),
    st.sampled_from(["anth/claude-sonnet-4-6", "oai/gpt-4.1", "ghost/model", None]),
    st.sampled_from([0, 1, "minimal", None]),
    st.sampled_from([200, 429, 502, 202]),
    st.sampled_from([None, "overloaded", "timeout"]),
    # Binary fractions: a batch's sum is then exactly the sum of its one-by-one additions.
    st.sampled_from([0.0, 0.125, 0.5, 3.0, 20.0, 700.0]),
    st.sampled_from([None, 0, 8, 1024]),
    st.booleans(),
)


@settings(max_examples=60, deadline=None)
@given(st.lists(_SHAPES, max_size=40))
def test_a_batch_counts_what_its_events_count_one_by_one(shapes: list[Any]) -> None:
    """``Observability`` hands metrics its events in batches, added up per shape: the
    exposition is the same as for the same events taken one at a time."""
    config = make_config(_NO_MOCK, ROUTES)
    batched, single = Metrics(Gateway(config)), Metrics(Gateway(config))
    requests, attempts = [], []
    for route, deployment, tier, status, error, latency, tokens, stream in shapes:
        detail = {"tier": tier, "status": status, "error": error, "latency": latency}
        detail |= {"input_tokens": tokens, "output_tokens": tokens, "stream": stream}
        ttfc = (deployment, latency) if stream and deployment else None
        requests.append((Event("request", route, deployment, detail), ttfc))
        outcome = "529" if error == "overloaded" else "success"
        attempts.append((route, deployment, outcome, error, status, latency, 0.0))
    batched.on_requests(requests)
    batched.on_attempts(attempts)
    for one in requests:
        single.on_requests([one])
    for fields in attempts:
        single.on_attempts([fields])
    assert batched.exposition() == single.exposition()
    assert series(batched.exposition().decode()) == series(single.exposition().decode())


def test_an_attempt_event_published_by_hand_is_counted_as_the_routers_are() -> None:
    gateway = Gateway(make_config(_NO_MOCK, ROUTES))
    observe = Observability(gateway)
    sonnet = "anth/claude-sonnet-4-6"
    gateway.events.emit("attempt", "chat", sonnet, outcome="529", error="overloaded", latency=0.1)
    gateway.events.attempt("chat", sonnet, "529", "overloaded", 529, 0.2)
    text = observe.metrics.exposition().decode()  # rendering takes in the queue
    assert metric(text, "hedgerow_attempts_total", route="chat", **{"class": "529"}) == 2
    assert observe.attempts[sonnet] == [2, 2]
