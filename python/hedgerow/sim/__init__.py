"""The provider simulator behind ``hedgerow mock``, ``hedgerow bench`` and the drills.

It pretends to be OpenAI, Anthropic and Gemini on their real paths and wire formats
(sharing ``hedgerow.formats`` with the gateway, never its router), answers deterministically,
and injects faults per model — by hand through the admin API or on a scenario timeline.

==============  ==========================================================================
``mock``        the aiohttp app, ``start_mock`` (in a running loop), ``run_mock``, the CLI
``faults``      fault specs and the per-model fault table
``scenario``    timelines of faults over simulated time
``incidents``   the built-in incident scenarios
``textgen``     deterministic answers, tool-call arguments and token counts
``respond``     writing one answer (JSON or stream) with its faults
``wire``        each service's ids, headers, error wording and authentication
``state``       counters, model timing (per model, or per request), what the admin API shows
``admin``       the ``/_mock/`` admin API
``statuspage``  the provider's status page (Statuspage JSON API) as the scenario plays
==============  ==========================================================================
"""

from __future__ import annotations

from hedgerow.sim.faults import FaultKind, FaultSpec
from hedgerow.sim.incidents import BUILTIN_SCENARIOS, load_scenario
from hedgerow.sim.mock import MockServer, RunningMock, run_mock, start_mock
from hedgerow.sim.scenario import Scenario, ScenarioPlayer
from hedgerow.sim.state import MockState, ModelConfig

__all__ = [
    "BUILTIN_SCENARIOS",
    "FaultKind",
    "FaultSpec",
    "MockServer",
    "MockState",
    "ModelConfig",
    "RunningMock",
    "Scenario",
    "ScenarioPlayer",
    "load_scenario",
    "run_mock",
    "start_mock",
]
