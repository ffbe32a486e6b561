"""The simulator's mutable state: fault table, scenario, per-model timing, request counters.

One ``MockState`` per running simulator; the admin API reads and changes it, the provider
endpoints consult it once per request. Everything here runs on the event loop thread, so
plain ints and dicts are enough (no locks).
"""

from __future__ import annotations

import fnmatch
import random
import time
from collections.abc import Callable
from typing import Any

import msgspec

from hedgerow.sim.faults import NO_FAULT, Decision, FaultTable, decide
from hedgerow.sim.scenario import ScenarioPlayer

__all__ = ["TIMING_PREFIX", "Counters", "MockState", "ModelConfig", "request_timing"]


class ModelConfig(msgspec.Struct, forbid_unknown_fields=True, omit_defaults=True, frozen=True):
    """Timing and size of one model's answers (the body of ``PUT /_mock/models/{model}``).

    Attributes:
        ttfb: seconds before the first content token (a stream sends its headers and opening
            event at once, as the real services do; a non-streamed answer waits before its
            headers).
        tokens_per_second: output pace; ``None`` or 0 sends everything at once (the default,
            so a benchmark measures the gateway, not the simulator).
        chunk_tokens: output tokens per stream event.
        reply_tokens: length of a full text answer (``max_tokens`` may cut it).
        context_window: when set, a request estimated above it gets the provider's
            context-length 400.
    """

    ttfb: float = 0.0
    tokens_per_second: float | None = None
    chunk_tokens: int = 1
    reply_tokens: int = 24
    context_window: int | None = None

    def __post_init__(self) -> None:
        if self.ttfb < 0 or (self.tokens_per_second is not None and self.tokens_per_second < 0):
            raise ValueError("ttfb and tokens_per_second must not be negative")
        if self.chunk_tokens < 1 or self.reply_tokens < 0:
            raise ValueError("chunk_tokens must be at least 1, reply_tokens not negative")
        if self.context_window is not None and self.context_window < 1:
            raise ValueError("context_window must be positive")


TIMING_PREFIX = "hedgerow-mock-timing:"
"""A request whose ``user`` (Anthropic: ``metadata.user_id``) starts with this carries its own
timing, which wins over its model's: ``hedgerow-mock-timing:ttfb=0.4,tps=60,tokens=200``
(seconds before the first content, output tokens per second, answer length). It survives a
gateway's translation, so a load generator can script each request's latency through
hedgerow and subtract it (``hedgerow bench``)."""

_TIMING_FIELDS = {"ttfb": "ttfb", "tps": "tokens_per_second", "tokens": "reply_tokens"}


def request_timing(config: ModelConfig, user: str | None) -> ModelConfig:
    """``config`` with the timing a request's ``user`` carries (see ``TIMING_PREFIX``);
    ``config`` itself when it carries none or a malformed one."""
    if user is None or not user.startswith(TIMING_PREFIX):
        return config
    changes: dict[str, float | int] = {}
    for item in user[len(TIMING_PREFIX) :].split(","):
        key, _, value = item.partition("=")
        name = _TIMING_FIELDS.get(key.strip())
        if name is None:
            continue
        try:
            number = float(value)
        except ValueError:
            return config
        changes[name] = int(number) if name == "reply_tokens" else number
    try:
        return msgspec.structs.replace(config, **changes)
    except (TypeError, ValueError):
        return config


class _ModelCounters:
    __slots__ = ("gone", "outcomes", "paths", "requests", "streams")

    def __init__(self) -> None:
        self.gone = 0
        self.requests = 0
        self.streams = 0
        self.paths: dict[str, int] = {}
        self.outcomes: dict[str, int] = {}


class Counters:
    """Requests that reached the simulator: per model, per path and per outcome.

    Router tests assert exact upstream call counts from these, so every request is counted
    the moment it arrives (``arrived``) and its outcome the moment it is decided
    (``outcome``), before any byte of the answer is written: by the time a client sees a
    response, its count is already in ``/_mock/state``.
    """

    __slots__ = ("_models", "total")

    def __init__(self) -> None:
        self.total = 0
        self._models: dict[str, _ModelCounters] = {}

    def _model(self, model: str) -> _ModelCounters:
        counters = self._models.get(model)
        if counters is None:
            counters = self._models[model] = _ModelCounters()
        return counters

    def arrived(self, model: str, path: str, *, stream: bool) -> None:
        """Count a request for ``model`` (``""`` when it named none) at ``path``."""
        self.total += 1
        counters = self._model(model)
        counters.requests += 1
        counters.streams += stream
        counters.paths[path] = counters.paths.get(path, 0) + 1

    def outcome(self, model: str, outcome: str) -> None:
        """Count how a request of ``model`` ended: ``ok``, ``error_529``, ``reset``, …"""
        outcomes = self._model(model).outcomes
        outcomes[outcome] = outcomes.get(outcome, 0) + 1

    def client_gone(self, model: str) -> None:
        """Count an answer cut short because the client went away (or cancelled)."""
        self._model(model).gone += 1

    def state(self) -> dict[str, Any]:
        """Totals for ``/_mock/state``."""
        return {
            model: {
                "client_gone": c.gone,
                "requests": c.requests,
                "streams": c.streams,
                "paths": dict(c.paths),
                "outcomes": dict(c.outcomes),
            }
            for model, c in self._models.items()
        }


class MockState:
    """Everything the admin API can see and change.

    Faults for a model come from the admin table when an entry there matches it (a manual
    override, ``*`` included), else from the scenario when a phase names it, else none.
    """

    __slots__ = (
        "_model_cache",
        "_models",
        "_rngs",
        "clock",
        "counters",
        "faults",
        "require_key",
        "scenario",
        "seed",
    )

    def __init__(
        self,
        *,
        seed: int = 0,
        scenario: ScenarioPlayer | None = None,
        require_key: str | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.seed = seed
        self.clock = clock  # the clock of scenarios started later (admin API)
        self.scenario = scenario
        self.require_key = require_key
        self.faults = FaultTable()
        self.counters = Counters()
        self._models: dict[str, ModelConfig] = {}
        self._model_cache: dict[str, ModelConfig] = {}
        self._rngs: dict[str, random.Random] = {}

    # -- faults -----------------------------------------------------------------------------

    def decide(self, model: str, *, stream: bool) -> Decision:
        """The faults that hit this request of ``model`` (updates the fault counters)."""
        faults = self.faults.lookup(model)
        if faults is None and self.scenario is not None:
            faults = self.scenario.lookup(model)
        if not faults:
            return NO_FAULT
        return decide(faults, self._rng(model), stream=stream)

    def _rng(self, model: str) -> random.Random:
        # One generator per model, so traffic to one model never shifts another's draws.
        rng = self._rngs.get(model)
        if rng is None:
            rng = self._rngs[model] = random.Random(f"{self.seed}:{model}")
        return rng

    # -- model timing -----------------------------------------------------------------------

    def set_model(self, pattern: str, config: ModelConfig) -> None:
        """Set the timing of models matching ``pattern`` (``*`` for the default)."""
        self._models.pop(pattern, None)
        self._models[pattern] = config
        self._model_cache.clear()

    def remove_model(self, pattern: str) -> bool:
        """Forget the timing set for ``pattern``."""
        found = self._models.pop(pattern, None) is not None
        self._model_cache.clear()
        return found

    def model(self, model: str) -> ModelConfig:
        """The timing of ``model``: its own entry, else the latest matching glob, else the
        defaults."""
        config = self._model_cache.get(model)
        if config is None:
            config = self._models.get(model)
            if config is None:
                matches = [c for p, c in self._models.items() if fnmatch.fnmatchcase(model, p)]
                config = matches[-1] if matches else ModelConfig()
            self._model_cache[model] = config
        return config

    # -- lifecycle --------------------------------------------------------------------------

    def reset(self, *, seed: int | None = None) -> None:
        """Forget faults, counters and random state; restart the scenario clock.

        Model timing is configuration, not state, and survives.
        """
        if seed is not None:
            self.seed = seed
        self.faults.clear()
        self.counters = Counters()
        self._rngs.clear()
        if self.scenario is not None:
            self.scenario.restart()

    def state(self) -> dict[str, Any]:
        """The whole of ``GET /_mock/state``."""
        return {
            "requests_total": self.counters.total,
            "models": self.counters.state(),
            "faults": self.faults.state(),
            "model_config": {p: msgspec.to_builtins(c) for p, c in self._models.items()},
            "scenario": None if self.scenario is None else self.scenario.state(),
            "seed": self.seed,
            "require_key": self.require_key is not None,
        }
