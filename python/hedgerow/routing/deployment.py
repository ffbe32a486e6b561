"""Deployments and the route plans built from them.

A deployment is one provider + one model: the unit of health. Recovery after real outages
came back model by model, so whatever the router learns about health is kept per deployment
(shared by every route that uses it), never only per provider.
"""

from __future__ import annotations

from hedgerow.config import Timeouts
from hedgerow.providers import Adapter

__all__ = ["Candidate", "Deployment", "RoutePlan"]


class Deployment:
    """``provider/model`` and its adapter; one instance per key, shared across routes."""

    __slots__ = ("adapter", "key", "model")

    def __init__(self, adapter: Adapter, model: str) -> None:
        self.adapter = adapter
        self.model = model
        self.key = f"{adapter.name}/{model}"

    def __repr__(self) -> str:
        return f"Deployment({self.key!r})"


class Candidate:
    """A deployment as one route uses it: its tier, weight and effective timeouts."""

    __slots__ = ("deployment", "tier", "timeouts", "weight")

    def __init__(self, deployment: Deployment, tier: int, weight: float, timeouts: Timeouts) -> None:
        self.deployment = deployment
        self.tier = tier
        self.weight = weight
        self.timeouts = timeouts


class RoutePlan:
    """A route's tiers of candidates, prepared once at load time."""

    __slots__ = ("name", "tiers")

    def __init__(self, name: str, tiers: list[list[Candidate]]) -> None:
        self.name = name
        self.tiers = tiers

    def candidates(self) -> list[Candidate]:
        """Every candidate in the order to try them: tier by tier."""
        return [c for tier in self.tiers for c in tier]
