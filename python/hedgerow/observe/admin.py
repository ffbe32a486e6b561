"""The operator controls over HTTP (the feature flags an on-call person flips during an
incident), and the command they share with the CLI.

===============================================  ===============================================
``POST /admin/deployments/{name}/disable``       take ``provider/model`` (or every deployment
``POST /admin/deployments/{name}/enable``        of provider ``name``) out of rotation / back
``POST /admin/routes/{route}/pin``               ``{"tier": n}`` serve only from tier n;
                                                 ``{"tier": null}`` every tier again
``POST /admin/routes/{route}/minimal``           ``{"on": true|false}`` straight to the minimal
                                                 answer / back to the tiers
``GET /admin/state``                             what operators changed, per deployment and route
===============================================  ===============================================

Every POST takes an optional ``"reason"`` in its JSON body and an ``x-hedgerow-operator``
header (who; the CLI sends the local user), both recorded with the ``operator`` event in the
event log. POSTs must be ``Content-Type: application/json`` — a cross-site form cannot send
that, so a web page an on-call person visits cannot flip a control through their browser.
The answer comes after the event log has the row.

An action is an ``OperatorCommand`` applied by ``apply_command`` to this process's
``Gateway``. Under ``serve --workers N`` the worker that received it then hands the same
command to ``AdminAPI.peers`` (``hedgerow.server.workers``: the supervisor relays it to
every other worker, and to workers started later), and answers only once every worker
applied it. The others apply it as a replica: the state changes there, the event log and
the metrics count it once, where it was received.
"""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable, Callable
from typing import Any, Literal

import msgspec
import orjson
from aiohttp import web

from hedgerow.observe.eventlog import acting, replicating
from hedgerow.routing import Gateway, GatewayError

__all__ = ["OperatorCommand", "Peers", "apply_command", "operator_routes", "state_view"]

Action = Literal["disable", "enable", "pin", "minimal"]


class OperatorCommand(msgspec.Struct, frozen=True, omit_defaults=True):
    """One operator action: ``target`` is a deployment or provider (disable, enable) or a
    route (pin, minimal)."""

    action: Action
    target: str
    tier: int | None = None
    on: bool | None = None
    by: str | None = None
    reason: str | None = None


# Hands a command this process applied to the other workers; answers once they applied it
# too: {"applied": workers that did (this one included), "missed": those that did not}.
Peers = Callable[[OperatorCommand], Awaitable[dict[str, Any]]]


def apply_command(
    gateway: Gateway, command: OperatorCommand, *, replica: bool = False
) -> dict[str, Any]:
    """Apply ``command`` to ``gateway``; ``KeyError`` (unknown name) or ``ValueError``
    (not possible) when it cannot be. ``replica``: another worker received and recorded
    it (see the module)."""
    replicas = replicating() if replica else contextlib.nullcontext()
    with acting(by=command.by, reason=command.reason), replicas:
        if command.action in ("disable", "enable"):
            changed = gateway.set_enabled(command.target, command.action == "enable")
            return {"changed": changed}
        if command.action == "pin":
            gateway.pin_route(command.target, command.tier)
            return {"route": command.target, "pinned_tier": command.tier}
        gateway.force_minimal(command.target, bool(command.on))
        return {"route": command.target, "force_minimal": bool(command.on)}


def state_view(gateway: Gateway, scope: str = "this process") -> dict[str, Any]:
    """What operators changed, plus each deployment's and route's flags; ``scope`` says
    where the changes apply (``this process`` or ``every worker``)."""
    now = gateway.clock()
    operator = gateway.operator_state()
    disabled = set(operator["disabled"])
    return {
        **operator,
        "deployments": {
            key: {
                "enabled": key not in disabled,
                "state": d.health.breaker.state_at(now),
                "provider": d.adapter.name,
            }
            for key, d in gateway.deployments.items()
        },
        "routes": {
            name: {
                "tiers": len(plan.tiers),
                "pinned_tier": plan.pinned_tier,
                "force_minimal": plan.force_minimal,
                "has_minimal": plan.minimal is not None,
            }
            for name, plan in gateway.routes.items()
        },
        "scope": scope,
    }


def _json(data: Any, status: int = 200) -> web.Response:
    return web.Response(body=orjson.dumps(data), status=status, content_type="application/json")


def _error(message: str, status: int) -> web.Response:
    return _json({"error": {"message": message, "status": status}}, status)


class AdminAPI:
    """The aiohttp handlers of the operator controls."""

    def __init__(self, gateway: Gateway, after: Any = None, peers: Peers | None = None) -> None:
        self.gateway = gateway
        # Awaited after an action (the event log's flush): the row exists when we answer.
        self.after = after
        # The other workers of `serve --workers N` (set by the worker; None: just this one).
        self.peers = peers

    @property
    def scope(self) -> str:
        """Where an action applies."""
        return "this process" if self.peers is None else "every worker"

    async def _body(self, request: web.Request) -> dict[str, Any] | web.Response:
        if request.content_type != "application/json":
            return _error("admin actions need Content-Type: application/json", 415)
        data = await request.read()
        if not data:
            return {}
        try:
            body = orjson.loads(data)
        except orjson.JSONDecodeError:
            return _error("body is not valid JSON", 400)
        if not isinstance(body, dict):
            return _error("body must be a JSON object", 400)
        return body

    async def _run(self, request: web.Request, command: OperatorCommand) -> web.Response:
        try:
            result = apply_command(self.gateway, command)
        except KeyError as exc:
            return _error(str(exc.args[0]) if exc.args else "not found", 404)
        except GatewayError as exc:
            return _error(exc.info.message, exc.info.status or 404)
        except ValueError as exc:
            return _error(str(exc), 400)
        if self.after is not None:
            await self.after()
        if self.peers is not None:
            result["workers"] = await self.peers(command)
        return _json(
            {
                "ok": True,
                "action": command.action,
                **result,
                "state": state_view(self.gateway, self.scope),
            }
        )

    def _command(
        self, request: web.Request, body: dict[str, Any], action: Action, target: str, **extra: Any
    ) -> OperatorCommand:
        reason = body.get("reason")
        return OperatorCommand(
            action=action,
            target=target,
            by=request.headers.get("x-hedgerow-operator", "admin-api")[:100],
            reason=reason[:500] if isinstance(reason, str) else None,
            **extra,
        )

    async def deployment(self, request: web.Request) -> web.Response:
        """``POST /admin/deployments/{name}/disable|enable``."""
        body = await self._body(request)
        if isinstance(body, web.Response):
            return body
        action: Action = "disable" if request.match_info["action"] == "disable" else "enable"
        return await self._run(
            request, self._command(request, body, action, request.match_info["name"])
        )

    async def pin(self, request: web.Request) -> web.Response:
        """``POST /admin/routes/{route}/pin`` with ``{"tier": n|null}``."""
        body = await self._body(request)
        if isinstance(body, web.Response):
            return body
        if "tier" not in body:
            return _error('pin needs {"tier": n} or {"tier": null}', 400)
        tier = body["tier"]
        if tier is not None and (isinstance(tier, bool) or not isinstance(tier, int)):
            return _error("tier must be an integer or null", 400)
        return await self._run(
            request, self._command(request, body, "pin", request.match_info["route"], tier=tier)
        )

    async def minimal(self, request: web.Request) -> web.Response:
        """``POST /admin/routes/{route}/minimal`` with ``{"on": bool}``."""
        body = await self._body(request)
        if isinstance(body, web.Response):
            return body
        on = body.get("on")
        if not isinstance(on, bool):
            return _error('minimal needs {"on": true} or {"on": false}', 400)
        return await self._run(
            request,
            self._command(request, body, "minimal", request.match_info["route"], on=on),
        )

    async def state(self, request: web.Request) -> web.Response:
        """``GET /admin/state``."""
        return _json(state_view(self.gateway, self.scope))


def operator_routes(api: AdminAPI) -> list[web.RouteDef]:
    """The admin routes (every path under ``/admin``)."""
    return [
        web.post(r"/admin/deployments/{name:.+}/{action:disable|enable}", api.deployment),
        web.post("/admin/routes/{route}/pin", api.pin),
        web.post("/admin/routes/{route}/minimal", api.minimal),
        web.get("/admin/state", api.state),
    ]
