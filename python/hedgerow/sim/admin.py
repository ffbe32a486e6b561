"""The admin API under ``/_mock/``: inspect the simulator and change its faults at run time.

========================================  ===================================================
``GET /_mock/health``                     ``{"ok": true}`` (readiness)
``GET /_mock/state``                      faults in force, per-model counters, model timing,
                                          scenario clock and phase
``PUT /_mock/faults/{model}``             body: a fault spec or a list of them; ``{model}``
                                          may be a glob (``claude-*``) or ``*``
``DELETE /_mock/faults``                  drop every admin fault (a scenario keeps playing)
``DELETE /_mock/faults/{model}``          drop one entry
``POST /_mock/reset``                     faults, counters, random state and scenario clock;
                                          optional body ``{"seed": N}``
``PUT /_mock/models/{model}``             body: model timing (``ModelConfig``)
``DELETE /_mock/models/{model}``          back to the defaults
``POST /_mock/scenario``                  body ``{"name": "2026-06-05"}`` (a built-in) or
                                          ``{"scenario": {...}}`` (the file format as JSON),
                                          optional ``time_scale`` and ``at``; starts at once
``PUT /_mock/scenario/clock``             body ``{"at": 1020}`` or ``{"at": "00:17"}``: seek
``DELETE /_mock/scenario``                stop the scenario
========================================  ===================================================

Admin calls are not counted as requests. Errors are ``400 {"error": "..."}``.
"""

from __future__ import annotations

from typing import Any

import msgspec
import orjson
from aiohttp import web

from hedgerow.sim.faults import FaultSpec
from hedgerow.sim.incidents import BUILTIN_SCENARIOS, load_scenario
from hedgerow.sim.scenario import Scenario, ScenarioFile, ScenarioPlayer, parse_time
from hedgerow.sim.state import MockState, ModelConfig

__all__ = ["add_admin_routes"]

PREFIX = "/_mock"


class _ScenarioRequest(msgspec.Struct, forbid_unknown_fields=True):
    name: str | None = None
    scenario: ScenarioFile | None = None
    time_scale: float | None = None
    at: float | str = 0.0


class _Seek(msgspec.Struct, forbid_unknown_fields=True):
    at: float | str


class _Reset(msgspec.Struct, forbid_unknown_fields=True):
    seed: int | None = None


def _json(data: Any, status: int = 200) -> web.Response:
    return web.Response(body=orjson.dumps(data), status=status, content_type="application/json")


def _bad(message: str) -> web.Response:
    return _json({"error": message}, status=400)


async def _decode(request: web.Request, kind: Any) -> Any:
    raw = await request.read()
    return msgspec.json.decode(raw or b"{}", type=kind)


def add_admin_routes(app: web.Application, state: MockState) -> None:
    """Mount the admin API for ``state`` on ``app``."""

    async def health(request: web.Request) -> web.Response:
        return _json({"ok": True})

    async def get_state(request: web.Request) -> web.Response:
        return _json(state.state())

    async def put_faults(request: web.Request) -> web.Response:
        pattern = request.match_info["model"]
        try:
            body = await _decode(request, list[FaultSpec] | FaultSpec)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            return _bad(f"bad fault spec: {exc}")
        specs = body if isinstance(body, list) else [body]
        state.faults.set(pattern, specs)
        return _json({"model": pattern, "faults": [msgspec.to_builtins(s) for s in specs]})

    async def delete_faults(request: web.Request) -> web.Response:
        pattern = request.match_info.get("model")
        if pattern is None:
            state.faults.clear()
            return _json({"removed": True})
        return _json({"removed": state.faults.remove(pattern)})

    async def reset(request: web.Request) -> web.Response:
        try:
            body = await _decode(request, _Reset)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            return _bad(str(exc))
        state.reset(seed=body.seed)
        return _json({"reset": True, "seed": state.seed})

    async def put_model(request: web.Request) -> web.Response:
        pattern = request.match_info["model"]
        try:
            config = await _decode(request, ModelConfig)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            return _bad(f"bad model config: {exc}")
        state.set_model(pattern, config)
        return _json({"model": pattern, "config": msgspec.to_builtins(config)})

    async def delete_model(request: web.Request) -> web.Response:
        return _json({"removed": state.remove_model(request.match_info["model"])})

    async def post_scenario(request: web.Request) -> web.Response:
        try:
            body = await _decode(request, _ScenarioRequest)
            if (body.name is None) == (body.scenario is None):
                return _bad("give exactly one of name and scenario")
            if body.name is not None:
                # Built-ins only: the admin API is unauthenticated and must not read files.
                if body.name not in BUILTIN_SCENARIOS:
                    known = ", ".join(sorted(BUILTIN_SCENARIOS))
                    return _bad(f"unknown scenario {body.name!r} (built-in: {known})")
                scenario = load_scenario(body.name, time_scale=body.time_scale)
            else:
                assert body.scenario is not None
                scenario = Scenario(body.scenario)
                if body.time_scale is not None:
                    scenario.time_scale = body.time_scale
            at = parse_time(body.at)
        except (msgspec.DecodeError, msgspec.ValidationError, ValueError) as exc:
            return _bad(str(exc))
        state.scenario = ScenarioPlayer(scenario, clock=state.clock, at=at)
        return _json(state.scenario.state())

    async def seek(request: web.Request) -> web.Response:
        if state.scenario is None:
            return _bad("no scenario is playing")
        try:
            body = await _decode(request, _Seek)
            state.scenario.seek(parse_time(body.at))
        except (msgspec.DecodeError, msgspec.ValidationError, ValueError) as exc:
            return _bad(str(exc))
        return _json(state.scenario.state())

    async def stop_scenario(request: web.Request) -> web.Response:
        stopped = state.scenario is not None
        state.scenario = None
        return _json({"stopped": stopped})

    router = app.router
    router.add_get(f"{PREFIX}/health", health)
    router.add_get(f"{PREFIX}/state", get_state)
    router.add_put(f"{PREFIX}/faults/{{model}}", put_faults)
    router.add_delete(f"{PREFIX}/faults", delete_faults)
    router.add_delete(f"{PREFIX}/faults/{{model}}", delete_faults)
    router.add_post(f"{PREFIX}/reset", reset)
    router.add_put(f"{PREFIX}/models/{{model}}", put_model)
    router.add_delete(f"{PREFIX}/models/{{model}}", delete_model)
    router.add_post(f"{PREFIX}/scenario", post_scenario)
    router.add_put(f"{PREFIX}/scenario/clock", seek)
    router.add_delete(f"{PREFIX}/scenario", stop_scenario)
