"""The router under scripted outages: breakers, pauses, budgets, hedging, degradation.

Health runs on a driven clock (``FakeClock``): the breaker's open period and a 429's pause
pass when the test says so, never by sleeping. Upstream call counts come from the
simulator, exactly.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from hedgerow import ir
from hedgerow.routing import Gateway, GatewayError
from hedgerow.routing.events import Event
from hedgerow.sim.mock import RunningMock
from hedgerow.sim.state import ModelConfig
from tests.servers import FakeClock, make_config

USER: list[Any] = [{"role": "user", "content": "What is a hedgerow?"}]
BREAKER = {"consecutive_failures": 3, "minimum_calls": 100, "open_base": 10.0, "open_max": 60.0}
NO_RETRY = {"max_retries": 0}


def gateway(mock: RunningMock, routes: dict[str, Any], clock: FakeClock, **extra: Any) -> Gateway:
    config = make_config(mock, routes, breaker=BREAKER, **extra)
    return Gateway(config, clock=clock)


async def ask(gw: Gateway, route: str, **body: Any) -> Any:
    return await gw.chat({"model": route, "messages": USER, "max_tokens": 20, **body})


async def test_open_breaker_makes_no_calls_and_primary_returns_after_one_probe(
    mock: RunningMock,
) -> None:
    clock = FakeClock()
    routes = {"chat": {"tiers": [["anth/claude-sonnet-4-6"], ["oai/gpt-5.5"]], "retry": NO_RETRY}}
    async with gateway(mock, routes, clock) as gw:
        transitions: list[str] = []
        gw.subscribe(
            lambda e: transitions.append(e.detail["state"]) if e.kind == "breaker" else None
        )
        mock.set_faults("claude-sonnet-4-6", {"kind": "error", "status": 529})
        for _ in range(3):
            result = await ask(gw, "chat")
            assert result.served.deployment == "oai/gpt-5.5"
            assert result.served.attempts == 2
        assert transitions == ["open"]
        assert mock.requests("claude-sonnet-4-6") == 3

        # Open: the dead primary gets no calls at all, and users see no error.
        for _ in range(10):
            result = await ask(gw, "chat")
            assert result.served.tier == 1
            assert result.served.attempts == 1
        assert mock.requests("claude-sonnet-4-6") == 3

        # The primary recovers; until the open period ends it is still not called.
        mock.state.faults.clear()
        clock.advance(8.0)
        assert (await ask(gw, "chat")).served.tier == 1
        assert mock.requests("claude-sonnet-4-6") == 3
        assert gw.route_ready("chat") == 0.0  # the secondary is up

        # One probe interval later: one real request probes it, and traffic is back.
        clock.advance(4.0)
        result = await ask(gw, "chat")
        assert result.served.deployment == "anth/claude-sonnet-4-6"
        assert mock.requests("claude-sonnet-4-6") == 4
        assert transitions == ["open", "half_open", "closed"] or transitions == ["open", "closed"]
        assert (await ask(gw, "chat")).served.tier == 0


async def test_one_model_failing_never_takes_its_siblings_out(mock: RunningMock) -> None:
    clock = FakeClock()
    routes = {
        "deep": {"tiers": [["anth/claude-opus-4-8"], ["oai/gpt-5.5"]], "retry": NO_RETRY},
        "chat": {"tiers": [["anth/claude-sonnet-4-6"], ["oai/gpt-5.5"]], "retry": NO_RETRY},
    }
    async with gateway(mock, routes, clock) as gw:
        mock.set_faults("claude-opus-4-8", {"kind": "error", "status": 500})
        for _ in range(5):
            assert (await ask(gw, "deep")).served.tier == 1
            assert (await ask(gw, "chat")).served.tier == 0
        assert gw.deployments["anth/claude-opus-4-8"].health.breaker.state_at(clock.now) == "open"
        assert (
            gw.deployments["anth/claude-sonnet-4-6"].health.breaker.state_at(clock.now) == "closed"
        )


async def test_staggered_recovery_model_by_model(mock: RunningMock) -> None:
    """June 5: every model down, back one at a time; each route returns on its own."""
    clock = FakeClock()
    models = ["claude-opus-4-6", "claude-sonnet-4-6", "claude-opus-4-8"]
    routes = {m: {"tiers": [[f"anth/{m}"], ["oai/gpt-5.5"]], "retry": NO_RETRY} for m in models}
    async with gateway(mock, routes, clock) as gw:
        mock.set_faults("claude-*", {"kind": "error", "status": 529})
        for _ in range(3):
            for model in models:
                assert (await ask(gw, model)).served.tier == 1
        for recovered in models:
            # This model comes back; the others stay dark.
            still_down = [m for m in models if models.index(m) > models.index(recovered)]
            mock.state.faults.clear()
            for model in still_down:
                mock.set_faults(model, {"kind": "error", "status": 529})
            clock.advance(61.0)  # past any open period (open_max is 60 s)
            for model in models:
                served = (await ask(gw, model)).served
                if model in still_down:
                    assert served.tier == 1, model
                else:
                    assert served.tier == 0, model


async def test_429_pauses_the_deployment_for_as_long_as_it_asked(mock: RunningMock) -> None:
    clock = FakeClock()
    routes = {"chat": {"tiers": [["anth/claude-sonnet-4-6"], ["oai/gpt-5.5"]], "retry": NO_RETRY}}
    async with gateway(mock, routes, clock) as gw:
        mock.set_faults(
            "claude-sonnet-4-6", {"kind": "error", "status": 429, "retry_after": 30, "count": 1}
        )
        assert (await ask(gw, "chat")).served.tier == 1
        clock.advance(29.0)
        assert (await ask(gw, "chat")).served.tier == 1
        assert mock.requests("claude-sonnet-4-6") == 1  # paused: not asked again
        clock.advance(2.0)
        assert (await ask(gw, "chat")).served.tier == 0
        assert mock.requests("claude-sonnet-4-6") == 2


async def test_retry_budget_bounds_upstream_calls_exactly(mock: RunningMock) -> None:
    clock = FakeClock()
    routes = {
        "solo": {
            "tiers": [["gem/gemini-3-5-flash"]],
            "retry": {"max_retries": 1, "backoff_base": 0.001, "budget": 0.2, "budget_floor": 3},
        }
    }
    # A breaker that never opens, so the budget alone bounds the calls.
    config = make_config(
        mock, routes, breaker={"consecutive_failures": 0, "minimum_calls": 1_000_000}
    )
    async with Gateway(config, clock=clock) as gw:
        mock.set_faults("gemini-3-5-flash", {"kind": "error", "status": 500})
        for _ in range(20):
            with pytest.raises(GatewayError):
                await ask(gw, "solo")
    # 20 requests, retries at most max(3, 20% of 20) = 4 over the window.
    assert mock.requests("gemini-3-5-flash") == 24


async def test_a_retry_succeeds_when_the_failure_was_transient(mock: RunningMock) -> None:
    clock = FakeClock()
    routes = {"solo": {"tiers": [["gem/gemini-3-5-flash"]], "retry": {"backoff_base": 0.001}}}
    async with gateway(mock, routes, clock) as gw:
        mock.set_faults("gemini-3-5-flash", {"kind": "error", "status": 500, "count": 1})
        result = await ask(gw, "solo")
        assert result.served.attempts == 2
        assert result.text


async def test_hedge_wins_over_a_slow_first_content_and_the_loser_is_cancelled(
    mock: RunningMock,
) -> None:
    clock = FakeClock()
    routes = {
        "chat": {
            "tiers": [["anth/claude-sonnet-4-6", "oai/gpt-5.5"]],
            "balance": "least_in_flight",
            "hedge": {"after": 0.05, "budget": 1.0},
            "retry": NO_RETRY,
        }
    }
    events: list[Event] = []
    async with gateway(mock, routes, clock) as gw:
        gw.subscribe(events.append)
        # Whichever goes first is slow; the hedge goes to the other.
        mock.set_faults("*", {"kind": "delay", "delay": 5.0, "stage": "content", "count": 1})
        reply = await gw.open_stream(
            ir.ChatRequest(
                model="chat", messages=[ir.Message("user", [ir.TextPart("hi")])], stream=True
            )
        )
        text = "".join(
            [e.text async for _, evs in reply.chunks() for e in evs if isinstance(e, ir.TextDelta)]
        )
    assert text
    assert reply.served.hedged
    assert reply.served.attempts == 2
    kinds = [e.kind for e in events]
    assert kinds.count("hedge_started") == 1
    assert kinds.count("hedge_won") == 1
    assert kinds.count("hedge_cancelled") == 1
    assert mock.requests("claude-sonnet-4-6") + mock.requests("gpt-5.5") == 2


async def test_hedging_non_streamed_requests_too(mock: RunningMock) -> None:
    clock = FakeClock()
    routes = {
        "chat": {
            "tiers": [["anth/claude-sonnet-4-6"], ["oai/gpt-5.5"]],
            "hedge": {"after": 0.05, "budget": 1.0},
            "retry": NO_RETRY,
        }
    }
    async with gateway(mock, routes, clock) as gw:
        mock.set_faults("claude-sonnet-4-6", {"kind": "delay", "delay": 5.0})
        result = await ask(gw, "chat")
    assert result.served.deployment == "oai/gpt-5.5"
    assert result.served.hedged


async def test_hedge_budget_bounds_extra_requests(mock: RunningMock) -> None:
    clock = FakeClock()
    routes = {
        "chat": {
            "tiers": [["anth/claude-sonnet-4-6"], ["oai/gpt-5.5"]],
            "hedge": {"after": 0.02, "budget": 0.05, "budget_floor": 1},
            "retry": NO_RETRY,
        }
    }
    async with gateway(mock, routes, clock) as gw:
        mock.state.set_model("claude-sonnet-4-6", ModelConfig(ttfb=0.3))
        results = await asyncio.gather(*[ask(gw, "chat") for _ in range(40)])
    hedged = sum(r.served.hedged for r in results)
    # 40 requests at 5%: at most 2 hedges; every request still answered.
    assert hedged == 2
    assert mock.requests("claude-sonnet-4-6") + mock.requests("gpt-5.5") == 42


async def test_minimal_template_when_every_tier_fails(mock: RunningMock) -> None:
    clock = FakeClock()
    routes = {
        "support": {
            "tiers": [["anth/claude-sonnet-4-6"], ["oai/gpt-5.5"]],
            "retry": NO_RETRY,
            "minimal": {"kind": "template", "text": "We are on it; a person will reply soon."},
        }
    }
    async with gateway(mock, routes, clock) as gw:
        mock.set_faults("*", {"kind": "error", "status": 503})
        result = await ask(gw, "support")
        assert result.text == "We are on it; a person will reply soon."
        assert result.served.minimal == "template"
        assert result.served.headers()["x-hedgerow-tier"] == "minimal"
        events = [e async for e in gw.stream({"model": "support", "messages": USER})]
        assert "".join(e.text for e in events if isinstance(e, ir.TextDelta)) == result.text


async def test_minimal_cache_answers_with_the_last_good_response(mock: RunningMock) -> None:
    clock = FakeClock()
    routes = {
        "faq": {
            "tiers": [["anth/claude-sonnet-4-6"]],
            "retry": NO_RETRY,
            "minimal": ["cache", {"kind": "template", "text": "fallback"}],
        }
    }
    async with gateway(mock, routes, clock) as gw:
        good = await ask(gw, "faq")
        streamed = await gw.open_stream(
            ir.ChatRequest(
                model="faq", messages=[ir.Message("user", [ir.TextPart("other")])], stream=True
            )
        )
        async for _ in streamed.chunks():
            pass
        mock.set_faults("*", {"kind": "error", "status": 529})
        cached = await ask(gw, "faq")
        assert cached.served.minimal == "cache"
        assert cached.text == good.text
        # The streamed answer was cached too.
        other = await gw.chat({"model": "faq", "messages": [{"role": "user", "content": "other"}]})
        assert other.served.minimal == "cache"
        # A request never seen before falls through to the template.
        unseen = await gw.chat({"model": "faq", "messages": [{"role": "user", "content": "new"}]})
        assert unseen.served.minimal == "template"


async def test_minimal_rule_classifies_without_a_model(mock: RunningMock) -> None:
    clock = FakeClock()
    routes = {
        "classify": {
            "tiers": [["gem/gemini-3-5-flash"]],
            "retry": NO_RETRY,
            "minimal": {"kind": "rule", "function": "tests.routing.rules:classify_ticket"},
        }
    }
    async with gateway(mock, routes, clock) as gw:
        mock.set_faults("*", {"kind": "error", "status": 500})
        result = await gw.chat(
            {"model": "classify", "messages": [{"role": "user", "content": "I want a refund!"}]}
        )
    assert result.text == "billing"
    assert result.served.minimal == "rule"


async def test_minimal_skip_is_a_clear_error(mock: RunningMock) -> None:
    clock = FakeClock()
    routes = {"review": {"tiers": [["anth/claude-opus-4-8"]], "retry": NO_RETRY, "minimal": "skip"}}
    async with gateway(mock, routes, clock) as gw:
        mock.set_faults("*", {"kind": "error", "status": 529})
        with pytest.raises(GatewayError, match="skips this request"):
            await ask(gw, "review")


async def test_context_window_fallback_by_estimate_and_by_provider_error(
    mock: RunningMock,
) -> None:
    clock = FakeClock()
    routes = {
        "docs": {
            "tiers": [[{"target": "oai/gpt-5.5", "context_window": 50}], ["anth/claude-haiku-4-5"]],
            "context_fallback": ["gem/gemini-3-5-pro"],
            "retry": NO_RETRY,
        }
    }
    long_text = "word " * 400
    async with gateway(mock, routes, clock) as gw:
        short = await ask(gw, "docs")
        assert short.served.deployment == "oai/gpt-5.5"
        # Too long for gpt-5.5 by estimate: not sent there at all. Haiku's window (set in
        # the simulator) refuses it with the provider's own error: then the fallback.
        mock.state.set_model("claude-haiku-4-5", ModelConfig(context_window=100))
        long = await gw.chat(
            {"model": "docs", "messages": [{"role": "user", "content": long_text}]}
        )
        assert long.served.deployment == "gem/gemini-3-5-pro"
        assert mock.requests("gpt-5.5") == 1
        assert mock.outcomes("claude-haiku-4-5").get("context_length") == 1


async def test_rate_limited_deployment_fails_over_to_the_next_tier(mock: RunningMock) -> None:
    clock = FakeClock()
    routes = {
        "chat": {
            "tiers": [[{"target": "anth/claude-sonnet-4-6", "rpm": 2}], ["oai/gpt-5.5"]],
            "retry": NO_RETRY,
        }
    }
    async with gateway(mock, routes, clock) as gw:
        tiers = [(await ask(gw, "chat")).served.tier for _ in range(4)]
        assert tiers == [0, 0, 1, 1]
        clock.advance(30.0)  # one token back (2 per minute)
        assert (await ask(gw, "chat")).served.tier == 0


async def test_auth_failure_fails_over_and_is_reported_loudly(
    mock: RunningMock, caplog: pytest.LogCaptureFixture
) -> None:
    clock = FakeClock()
    routes = {"chat": {"tiers": [["anth/claude-sonnet-4-6"], ["oai/gpt-5.5"]], "retry": NO_RETRY}}
    events: list[Event] = []
    async with gateway(mock, routes, clock) as gw:
        gw.subscribe(events.append)
        mock.set_faults("claude-sonnet-4-6", {"kind": "error", "status": 401})
        result = await ask(gw, "chat")
    assert result.served.tier == 1
    assert [e.deployment for e in events if e.kind == "auth_error"] == ["anth/claude-sonnet-4-6"]
    assert any("rejected hedgerow's key" in r.message for r in caplog.records)


async def test_request_deadline_bounds_all_attempts(mock: RunningMock) -> None:
    clock = FakeClock()
    routes = {"chat": {"tiers": [["anth/claude-sonnet-4-6"], ["oai/gpt-5.5"]], "deadline": 0.3}}
    async with gateway(mock, routes, clock) as gw:
        mock.set_faults("*", {"kind": "hang"})
        loop = asyncio.get_running_loop()
        started = loop.time()
        with pytest.raises(GatewayError) as info:
            await ask(gw, "chat")
        assert loop.time() - started < 2.0
    assert info.value.info.kind is ir.ErrorKind.TIMEOUT


async def test_every_breaker_open_answers_at_once_with_retry_after(mock: RunningMock) -> None:
    clock = FakeClock()
    routes = {"solo": {"tiers": [["anth/claude-opus-4-8"]], "retry": NO_RETRY}}
    async with gateway(mock, routes, clock) as gw:
        mock.set_faults("*", {"kind": "error", "status": 529})
        for _ in range(3):
            with pytest.raises(GatewayError):
                await ask(gw, "solo")
        wait = gw.route_ready("solo")
        assert 9.0 <= wait <= 11.0
        with pytest.raises(GatewayError) as info:
            await ask(gw, "solo")
        assert info.value.info.retry_after == pytest.approx(wait, abs=0.01)
        assert mock.requests("claude-opus-4-8") == 3


async def test_operator_controls_take_effect_at_once(mock: RunningMock) -> None:
    clock = FakeClock()
    routes = {
        "chat": {
            "tiers": [["anth/claude-sonnet-4-6"], ["oai/gpt-5.5"]],
            "retry": NO_RETRY,
            "minimal": {"kind": "template", "text": "degraded on purpose"},
        }
    }
    events: list[Event] = []
    async with gateway(mock, routes, clock) as gw:
        gw.subscribe(events.append)
        # A provider posts an incident: take the whole provider out of rotation.
        assert gw.set_enabled("anth", False) == ["anth/claude-sonnet-4-6"]
        assert (await ask(gw, "chat")).served.tier == 1
        assert mock.requests("claude-sonnet-4-6") == 0
        assert gw.operator_state()["disabled"] == ["anth/claude-sonnet-4-6"]
        clock.advance(3600)  # forced out stays out, however long
        assert (await ask(gw, "chat")).served.tier == 1
        gw.set_enabled("anth/claude-sonnet-4-6", True)
        assert (await ask(gw, "chat")).served.tier == 0

        gw.pin_route("chat", 1)
        assert (await ask(gw, "chat")).served.deployment == "oai/gpt-5.5"
        gw.pin_route("chat", None)
        gw.force_minimal("chat", True)
        result = await ask(gw, "chat")
        assert result.served.minimal == "template"
        assert result.served.attempts == 0
        assert gw.operator_state() == {"disabled": [], "pinned": {}, "minimal": ["chat"]}
        with pytest.raises(ValueError, match=r"tiers 0\.\.1"):
            gw.pin_route("chat", 5)
    assert [e.detail["action"] for e in events if e.kind == "operator"] == [
        "disable",
        "enable",
        "pin",
        "pin",
        "minimal",
    ]


async def _streamed_text(gw: Gateway, route: str) -> str:
    body = {"model": route, "messages": USER, "max_tokens": 20, "stream": True}
    return "".join(
        [event.text async for event in gw.stream(body) if isinstance(event, ir.TextDelta)]
    )


CUT_AFTER_3_TOKENS = {"kind": "stream_error", "after_tokens": 3}


def cut_streams_halfway(mock: RunningMock, model: str) -> None:
    """``model``'s streams end with an error event after 3 tokens, paced (100 tokens/s) so
    that the first content reaches the gateway before the cut does."""
    mock.state.set_model(model, ModelConfig(tokens_per_second=100))
    mock.set_faults(model, CUT_AFTER_3_TOKENS)


async def test_a_stream_from_a_probed_deployment_reaches_the_client_only_whole(
    mock: RunningMock,
) -> None:
    """The breaker's probe is real traffic: a stream it cuts halfway fails over unseen,
    because a deployment on probation is streamed only once its answer is whole."""
    clock = FakeClock()
    routes = {"chat": {"tiers": [["anth/claude-sonnet-4-6"], ["oai/gpt-5.5"]], "retry": NO_RETRY}}
    async with gateway(mock, routes, clock) as gw:
        mock.set_faults("claude-sonnet-4-6", {"kind": "error", "status": 529})
        for _ in range(3):
            await ask(gw, "chat")
        assert gw.deployments["anth/claude-sonnet-4-6"].health.breaker.state_at(clock()) == "open"
        clock.advance(12.0)  # past the open period: the next request is the probe
        cut_streams_halfway(mock, "claude-sonnet-4-6")

        text = await _streamed_text(gw, "chat")

        assert mock.requests("claude-sonnet-4-6") == 4  # the probe was made, and cut
        assert mock.requests("gpt-5.5") == 4  # ... and the next tier answered in full
        assert text  # no GatewayError: the client saw one clean stream


async def test_a_deployment_failing_a_share_of_its_calls_is_streamed_whole_too(
    mock: RunningMock,
) -> None:
    clock = FakeClock()
    routes = {"chat": {"tiers": [["anth/claude-sonnet-4-6"], ["oai/gpt-5.5"]], "retry": NO_RETRY}}
    async with gateway(mock, routes, clock) as gw:
        health = gw.deployments["anth/claude-sonnet-4-6"].health
        # One failure in four calls: 25 %, the default probation_error_rate; breaker closed.
        mock.set_faults("claude-sonnet-4-6", {"kind": "error", "status": 529})
        await ask(gw, "chat")
        mock.state.faults.clear()
        for _ in range(3):
            assert (await ask(gw, "chat")).served.tier == 0
        assert health.breaker.state_at(clock()) == "closed"
        assert health.on_probation(clock())
        cut_streams_halfway(mock, "claude-sonnet-4-6")

        assert await _streamed_text(gw, "chat")
        assert mock.requests("gpt-5.5") == 2  # the failover of the 529, and of the cut


async def test_a_healthy_deployment_streams_from_its_first_content(mock: RunningMock) -> None:
    """Off probation nothing is held past the first content: a cut after it is the
    client's to see, as an error where it happens (what hedgerow cannot hide)."""
    clock = FakeClock()
    routes = {"chat": {"tiers": [["anth/claude-sonnet-4-6"], ["oai/gpt-5.5"]], "retry": NO_RETRY}}
    async with gateway(mock, routes, clock) as gw:
        assert not gw.deployments["anth/claude-sonnet-4-6"].health.on_probation(clock())
        cut_streams_halfway(mock, "claude-sonnet-4-6")
        seen: list[str] = []
        body = {"model": "chat", "messages": USER, "max_tokens": 20, "stream": True}
        with pytest.raises(GatewayError):
            async for event in gw.stream(body):
                if isinstance(event, ir.TextDelta):
                    seen.append(event.text)
        assert seen  # content reached the client before the cut
        assert mock.requests("gpt-5.5") == 0
