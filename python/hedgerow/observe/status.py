"""Polling providers' public status pages (the Atlassian Statuspage JSON API, which
status.anthropic.com serves and status.openai.com imitates).

Each configured page is asked for ``/api/v2/summary.json`` every ``interval`` seconds
(``/api/v2/incidents/unresolved.json`` when the summary carries no incident list or is
missing), each request bounded by ``timeout``. An unresolved incident of at least
``min_impact`` (and, when ``components`` is set, touching one of them) is:

* an event (``status_incident``, opened and resolved) and an alert (``status_incident``);
* with ``action: deprioritise``, the provider's weight in every tier multiplied by
  ``deprioritise_factor`` (its tier-mates take the load; a tier where it is alone is
  unchanged) until every incident is resolved;
* with ``action: open_breakers``, each of the provider's deployments taken out of rotation
  (the operator control ``set_enabled``, attributed to the status page in the event log)
  and put back when every incident is resolved. A deployment an operator had already taken
  out, or acts on meanwhile, is left to the operator.

A page that times out, answers an error status or something that is not that API's JSON
changes nothing: the failure is logged (once per change of result) and counted
(``hedgerow_status_page_polls_total{result}``); what the last good answer said stays in
force until the page answers again.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any

import aiohttp
import msgspec

from hedgerow.config import StatusPageConfig
from hedgerow.observe.alerts import AlertEngine
from hedgerow.observe.eventlog import acting, iso, stop_tasks
from hedgerow.observe.metrics import Metrics
from hedgerow.routing import Gateway
from hedgerow.routing.deployment import Candidate
from hedgerow.routing.events import Event

__all__ = ["Incident", "StatusMonitor", "StatusPage"]

log = logging.getLogger("hedgerow.status")

IMPACT_RANK = {"none": 0, "minor": 1, "major": 2, "critical": 3, "maintenance": 0}
_DONE = frozenset({"resolved", "postmortem", "completed"})


class Component(msgspec.Struct):
    """A component an incident affects."""

    name: str = ""
    status: str = ""


class Incident(msgspec.Struct):
    """The fields of a Statuspage incident hedgerow reads."""

    id: str
    name: str = ""
    status: str = ""
    impact: str = "none"
    shortlink: str | None = None
    created_at: str | None = None
    updated_at: str | None = None
    components: list[Component] = msgspec.field(default_factory=list)


class PageStatus(msgspec.Struct):
    """The page's overall indicator."""

    indicator: str = "none"
    description: str = ""


class Summary(msgspec.Struct):
    """``/api/v2/summary.json`` (the parts read)."""

    status: PageStatus | None = None
    incidents: list[Incident] | None = None


class Unresolved(msgspec.Struct):
    """``/api/v2/incidents/unresolved.json``."""

    incidents: list[Incident]


_SUMMARY = msgspec.json.Decoder(Summary)
_UNRESOLVED = msgspec.json.Decoder(Unresolved)


class PollFailure(Exception):
    """A poll that says nothing: ``result`` is ``timeout``, ``http_error``, ``garbage`` or
    ``connect_error``."""

    def __init__(self, result: str, message: str) -> None:
        super().__init__(message)
        self.result = result


class StatusPage:
    """What hedgerow knows of one provider's page."""

    def __init__(self, provider: str, config: StatusPageConfig) -> None:
        self.provider = provider
        self.config = config
        self.url = config.url.rstrip("/")
        self.result: str | None = None
        self.message = ""
        self.checked_at: float | None = None
        self.ok_at: float | None = None
        self.indicator: str | None = None
        self.description: str | None = None
        self.incidents: dict[str, Incident] = {}
        self.polls = 0

    def counts(self, incident: Incident) -> bool:
        """Whether ``incident`` is one this page's config acts on."""
        if incident.status in _DONE:
            return False
        if IMPACT_RANK.get(incident.impact, 1) < IMPACT_RANK[self.config.min_impact]:
            return False
        wanted = [c.lower() for c in self.config.components]
        if wanted and incident.components:
            names = [c.name.lower() for c in incident.components]
            return any(w in name for w in wanted for name in names)
        return True

    def view(self) -> dict[str, Any]:
        """The page's state as JSON data."""
        return {
            "provider": self.provider,
            "url": self.url,
            "action": self.config.action,
            "result": self.result,
            "message": self.message,
            "checked_at": None if self.checked_at is None else iso(self.checked_at),
            "ok_at": None if self.ok_at is None else iso(self.ok_at),
            "indicator": self.indicator,
            "description": self.description,
            "incidents": [
                {
                    "id": i.id,
                    "name": i.name,
                    "status": i.status,
                    "impact": i.impact,
                    "url": i.shortlink,
                    "created_at": i.created_at,
                }
                for i in self.incidents.values()
            ],
        }


class StatusMonitor:
    """Polls every configured page and acts on incidents (see the module docstring)."""

    def __init__(
        self,
        gateway: Gateway,
        pages: dict[str, StatusPageConfig],
        *,
        alerts: AlertEngine | None = None,
        metrics: Metrics | None = None,
    ) -> None:
        self.gateway = gateway
        self.alerts = alerts
        self.metrics = metrics
        providers = {d.adapter.name for d in gateway.deployments.values()}
        for name, page in pages.items():
            if page.action != "alert" and name not in providers:
                raise ValueError(
                    f"observe.status_pages.{name}: action {page.action!r} needs a provider "
                    f"of that name used by a route (known: {', '.join(sorted(providers))})"
                )
        self.pages = {name: StatusPage(name, page) for name, page in pages.items()}
        # What this monitor changed, to undo exactly that.
        self._weights: dict[str, list[tuple[Candidate, float]]] = {}
        self._disabled: dict[str, set[str]] = {}
        self._acting = False
        self._session: aiohttp.ClientSession | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._stopping = False
        # Called before acting on a poll (Observability processes its queued events there).
        self.before_apply: Callable[[], None] | None = None

    # -- polling ------------------------------------------------------------------------------

    async def _get(self, page: StatusPage, path: str) -> tuple[int, bytes]:
        if self._session is None:
            self._session = aiohttp.ClientSession(
                headers={"accept": "application/json", "user-agent": "hedgerow-status/1"}
            )
        timeout = aiohttp.ClientTimeout(total=page.config.timeout)
        try:
            async with self._session.get(
                page.url + path, timeout=timeout, allow_redirects=True
            ) as response:
                return response.status, await response.read()
        except TimeoutError:
            raise PollFailure("timeout", f"no answer within {page.config.timeout:g}s") from None
        except (aiohttp.ClientError, OSError) as exc:
            raise PollFailure("connect_error", type(exc).__name__) from None

    async def _fetch(self, page: StatusPage) -> tuple[list[Incident], PageStatus | None]:
        status, body = await self._get(page, "/api/v2/summary.json")
        summary: Summary | None = None
        if status == 200:
            try:
                summary = _SUMMARY.decode(body)
            except (msgspec.DecodeError, msgspec.ValidationError) as exc:
                raise PollFailure("garbage", f"summary.json: {exc}") from None
            if summary.incidents is not None:
                return summary.incidents, summary.status
        elif status != 404:
            raise PollFailure("http_error", f"summary.json: HTTP {status}")
        status, body = await self._get(page, "/api/v2/incidents/unresolved.json")
        if status != 200:
            raise PollFailure("http_error", f"incidents/unresolved.json: HTTP {status}")
        try:
            unresolved = _UNRESOLVED.decode(body)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            raise PollFailure("garbage", f"incidents/unresolved.json: {exc}") from None
        return unresolved.incidents, summary.status if summary else None

    async def poll_once(self, provider: str) -> str:
        """Ask ``provider``'s page once and act on what it says; returns the poll result
        (``ok`` or the failure's class). Never raises for anything the page does."""
        page = self.pages[provider]
        page.polls += 1
        page.checked_at = time.time()
        try:
            incidents, overall = await self._fetch(page)
        except PollFailure as failure:
            if failure.result != page.result:
                log.warning(
                    "status page of %s: %s (%s); nothing changes until it answers",
                    provider,
                    failure.result,
                    failure,
                )
            page.result, page.message = failure.result, str(failure)
            self._count(provider, failure.result, None)
            return failure.result
        if page.result not in (None, "ok"):
            log.info("status page of %s answers again", provider)
        page.result, page.message, page.ok_at = "ok", "", page.checked_at
        if overall is not None:
            page.indicator, page.description = overall.indicator, overall.description
        counted = {i.id: i for i in incidents if page.counts(i)}
        self._apply(page, counted)
        self._count(provider, "ok", len(counted))
        return "ok"

    def _count(self, provider: str, result: str, incidents: int | None) -> None:
        if self.metrics is not None:
            self.metrics.status_poll(provider, result, incidents)

    # -- acting -------------------------------------------------------------------------------

    def _apply(self, page: StatusPage, counted: dict[str, Incident]) -> None:
        if self.before_apply is not None:
            self.before_apply()
        provider = page.provider
        events = self.gateway.events
        for incident_id, incident in counted.items():
            if incident_id in page.incidents:
                continue
            summary = f"{provider} status page: {incident.name or incident_id} ({incident.impact})"
            events.emit(
                "status_incident",
                None,
                provider,
                state="open",
                id=incident_id,
                name=incident.name,
                impact=incident.impact,
                status=incident.status,
                url=incident.shortlink,
            )
            if self.alerts is not None:
                self.alerts.incident(
                    provider,
                    incident_id,
                    open=True,
                    summary=summary,
                    url=incident.shortlink,
                )
        for incident_id, incident in list(page.incidents.items()):
            if incident_id in counted:
                continue
            events.emit(
                "status_incident",
                None,
                provider,
                state="resolved",
                id=incident_id,
                name=incident.name,
            )
            if self.alerts is not None:
                self.alerts.incident(
                    provider,
                    incident_id,
                    open=False,
                    summary=f"{provider} status page: {incident.name or incident_id} resolved",
                    url=incident.shortlink,
                )
        page.incidents = counted
        action = page.config.action
        names = ", ".join(i.name or i.id for i in counted.values())
        if counted and action == "deprioritise" and provider not in self._weights:
            self._deprioritise(page, names)
        elif counted and action == "open_breakers" and provider not in self._disabled:
            self._open_breakers(page, names)
        elif not counted:
            self._withdraw(provider)

    def _candidates(self, provider: str) -> list[Candidate]:
        return [
            candidate
            for plan in self.gateway.routes.values()
            for tier in [*plan.tiers, plan.context]
            for candidate in tier
            if candidate.deployment.adapter.name == provider
        ]

    def _deprioritise(self, page: StatusPage, reason: str) -> None:
        factor = page.config.deprioritise_factor
        saved = []
        for candidate in self._candidates(page.provider):
            saved.append((candidate, candidate.weight))
            candidate.weight *= factor
        self._weights[page.provider] = saved
        self.gateway.events.emit(
            "status_action",
            None,
            page.provider,
            action="deprioritise",
            factor=factor,
            reason=reason,
        )

    def _open_breakers(self, page: StatusPage, reason: str) -> None:
        already = set(self.gateway.operator_state()["disabled"])
        taken: set[str] = set()
        self._acting = True
        try:
            with acting(by=f"status-page:{page.provider}", reason=reason):
                for key, deployment in self.gateway.deployments.items():
                    if deployment.adapter.name == page.provider and key not in already:
                        self.gateway.set_enabled(key, False)
                        taken.add(key)
        finally:
            self._acting = False
        self._disabled[page.provider] = taken
        self.gateway.events.emit(
            "status_action",
            None,
            page.provider,
            action="open_breakers",
            deployments=sorted(taken),
            reason=reason,
        )

    def _withdraw(self, provider: str) -> None:
        saved = self._weights.pop(provider, None)
        if saved is not None:
            for candidate, weight in saved:
                candidate.weight = weight
            self.gateway.events.emit("status_action", None, provider, action="restore_weight")
        taken = self._disabled.pop(provider, None)
        if taken is not None:
            self._acting = True
            try:
                with acting(by=f"status-page:{provider}", reason="incident resolved"):
                    for key in sorted(taken):
                        self.gateway.set_enabled(key, True)
            finally:
                self._acting = False
            self.gateway.events.emit(
                "status_action",
                None,
                provider,
                action="close_breakers",
                deployments=sorted(taken),
            )

    def on_operator(self, event: Event) -> None:
        """An operator acted: deployments they touched are theirs from now on."""
        if self._acting or event.kind != "operator" or event.deployment is None:
            return
        name = event.deployment
        for taken in self._disabled.values():
            for key in list(taken):
                if key == name or key.split("/", 1)[0] == name:
                    taken.discard(key)

    def actions(self) -> dict[str, Any]:
        """What the monitor changed, per provider."""
        return {
            "deprioritised": sorted(self._weights),
            "disabled": {p: sorted(keys) for p, keys in self._disabled.items()},
        }

    def view(self) -> list[dict[str, Any]]:
        """Every page's state."""
        return [page.view() for page in self.pages.values()]

    # -- background ---------------------------------------------------------------------------

    async def _loop(self, provider: str) -> None:
        interval = self.pages[provider].config.interval
        while not self._stopping:
            try:
                await self.poll_once(provider)
            except Exception:  # never let a bug here take anything else down
                log.exception("status page of %s: poll failed", provider)
            await asyncio.sleep(interval)

    def start(self) -> None:
        """Poll every page in the background (first poll at once)."""
        if not self._tasks:
            self._tasks = [
                asyncio.create_task(self._loop(name), name=f"hedgerow-status-{name}")
                for name in self.pages
            ]

    async def close(self) -> None:
        """Stop polling."""
        self._stopping = True
        await stop_tasks(self._tasks)
        self._tasks = []
        if self._session is not None:
            await self._session.close()
            self._session = None
