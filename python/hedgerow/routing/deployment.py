"""Deployments and the route plans built from them.

A deployment is one provider + one model: the unit of health. Recovery after real outages
came back model by model, so whatever the router learns about health is kept per deployment
(shared by every route that uses it), never only per provider.
"""

from __future__ import annotations

from hedgerow import ir
from hedgerow.config import HedgeConfig, RetryConfig, RouteConfig, Timeouts
from hedgerow.providers import Adapter
from hedgerow.routing.budget import Budget
from hedgerow.routing.degrade import Minimal, ResponseCache
from hedgerow.routing.health import Health

__all__ = ["Candidate", "Deployment", "RoutePlan"]

# Default treatment of each failure class: everything fails over but the client's own error.
_DEFAULT_TREATMENT = {kind: "failover" for kind in ir.ErrorKind}
_DEFAULT_TREATMENT[ir.ErrorKind.BAD_REQUEST] = "return"


class Deployment:
    """``provider/model``, its adapter and its health; one instance per key, shared by routes.

    Limits (``rpm``/``tpm``) belong to the deployment: the first target that sets them wins.
    """

    __slots__ = ("adapter", "health", "key", "model")

    def __init__(self, adapter: Adapter, model: str, health: Health) -> None:
        self.adapter = adapter
        self.model = model
        self.key = f"{adapter.name}/{model}"
        self.health = health

    def __repr__(self) -> str:
        return f"Deployment({self.key!r})"


class Candidate:
    """A deployment as one route uses it: its tier, weight, timeouts and context window."""

    __slots__ = ("context_window", "deployment", "tier", "timeouts", "weight")

    def __init__(
        self,
        deployment: Deployment,
        tier: int,
        weight: float,
        timeouts: Timeouts,
        context_window: int | None = None,
    ) -> None:
        self.deployment = deployment
        self.tier = tier
        self.weight = weight
        self.timeouts = timeouts
        self.context_window = context_window


class RoutePlan:
    """A route's tiers of candidates and its policies, prepared once at load time."""

    __slots__ = (
        "balance",
        "cache",
        "context",
        "deadline",
        "force_minimal",
        "hedge",
        "hedge_budget",
        "limit_wait",
        "minimal",
        "name",
        "on_limit",
        "pinned_tier",
        "retry",
        "retry_budget",
        "tiers",
        "treatment",
    )

    def __init__(
        self,
        name: str,
        config: RouteConfig,
        tiers: list[list[Candidate]],
        context: list[Candidate],
        minimal: Minimal | None,
        cache: ResponseCache | None,
    ) -> None:
        self.name = name
        self.tiers = tiers
        self.context = context
        self.minimal = minimal
        self.cache = cache
        self.balance = config.balance
        self.retry: RetryConfig = config.retry
        self.hedge: HedgeConfig | None = config.hedge
        self.deadline = config.deadline
        self.on_limit = config.on_limit
        self.limit_wait = config.limit_wait
        # Operator controls: serve only from one tier, or go straight to the minimal answer.
        self.pinned_tier: int | None = None
        self.force_minimal = False
        self.treatment: dict[ir.ErrorKind, str] = {
            **_DEFAULT_TREATMENT,
            **{ir.ErrorKind(k): v for k, v in config.errors.items()},
        }
        self.retry_budget = Budget(
            config.retry.budget, config.retry.budget_floor, config.retry.budget_window
        )
        hedge = config.hedge
        self.hedge_budget = (
            Budget(hedge.budget, hedge.budget_floor, hedge.budget_window) if hedge else None
        )

    def deployments(self) -> list[Deployment]:
        """Every deployment the route may use, context fallbacks included."""
        seen: dict[str, Deployment] = {}
        for tier in [*self.tiers, self.context]:
            for candidate in tier:
                seen.setdefault(candidate.deployment.key, candidate.deployment)
        return list(seen.values())
