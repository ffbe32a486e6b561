"""Alert rules evaluated inside hedgerow, and the sinks that carry them.

Rules, per deployment, over native ``SlidingWindow``s fed by the router's ``attempt``
events, all on the gateway's clock (so tests and simulations drive them):

* ``error_rate``: 5xx (529 included) answers above 5 % of the attempts over 2 minutes (at
  least 20 attempts); resolves below 2.5 %.
* ``latency``: median attempt latency over 2 minutes above 3x the deployment's own baseline
  median, learned over the last hour from successful attempts (the baseline stops learning
  while the alert fires, so a long slowdown never becomes the new normal); resolves below
  2x. An attempt's latency is the time to its answer, or to the first content of a stream.
* ``overload`` / ``rate_limit``: a burst of 529s (5 within 60 s) / 429s (10 within 60 s) —
  the earliest sign of a provider in trouble; resolve at 1 / 2 or fewer.
* ``status_incident``: a provider's status page shows an unresolved incident (raised by
  ``hedgerow.observe.status``); resolves when the page does.

Every threshold can be changed for all deployments, per route (applied to the deployments
the route uses; later routes in the file win) and per deployment (``AlertRuleSettings``).

An alert **fires once** (when its condition starts to hold) and **resolves once** (when the
resolve condition holds: thresholds apart, for hysteresis). While a deployment's breaker is
not closed, too little reaches it to prove it healthy: its alerts resolve only once the
breaker has closed again.
**Rate limits**: the same alert notifies again no sooner than ``repeat_after`` seconds after
its last notification (a flapping deployment pages once; its suppressed firings are still in
the event log), and at most ``max_per_minute`` notifications leave per minute in all.

Every transition is an ``alert`` event (event log, metrics, dashboard) and a log line; a
notification goes to each configured sink: a generic JSON webhook, a Slack-compatible
incoming webhook, email over SMTP. Delivery runs in a background task with timeouts and
retries; a failing sink is logged and counted, never raised.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import smtplib
import socket
import ssl
import time
from collections.abc import Callable, Iterable
from email.message import EmailMessage
from typing import Any, Literal

import aiohttp
import msgspec
import orjson

from hedgerow import SlidingWindow, TokenBucket
from hedgerow.config import AlertRuleSettings, AlertsConfig, Secret, SinksConfig, SmtpConfig
from hedgerow.observe.eventlog import iso, stop_tasks
from hedgerow.observe.metrics import Metrics
from hedgerow.observe.redact import Redactor
from hedgerow.routing import Gateway
from hedgerow.routing.events import AttemptFields, Event, attempt_fields

__all__ = [
    "BUILTIN_SETTINGS",
    "Alert",
    "AlertEngine",
    "Notifier",
    "RuleSettings",
    "email_message",
    "resolve_settings",
    "slack_payload",
    "webhook_payload",
]

log = logging.getLogger("hedgerow.alerts")

Rule = Literal["error_rate", "latency", "overload", "rate_limit", "status_incident"]
DEPLOYMENT_RULES: tuple[Rule, ...] = ("error_rate", "latency", "overload", "rate_limit")
State = Literal["fired", "resolved", "suppressed"]


class RuleSettings(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """The thresholds in force for one deployment (see ``AlertRuleSettings``)."""

    error_rate: float = 0.05
    error_rate_resolve: float = 0.025
    error_rate_window: float = 120.0
    error_rate_min_calls: int = 20
    latency_factor: float = 3.0
    latency_resolve_factor: float = 2.0
    latency_window: float = 120.0
    latency_baseline_window: float = 3600.0
    latency_min_calls: int = 20
    latency_baseline_min_calls: int = 50
    overload_burst: int = 5
    overload_resolve: int = 1
    rate_limit_burst: int = 10
    rate_limit_resolve: int = 2
    burst_window: float = 60.0
    disabled: tuple[str, ...] = ()


BUILTIN_SETTINGS = RuleSettings()


def _set_fields(settings: AlertRuleSettings) -> dict[str, Any]:
    return {
        name: getattr(settings, name)
        for name in settings.__struct_fields__
        if getattr(settings, name) is not None
    }


def resolve_settings(config: AlertsConfig, gateway: Gateway) -> dict[str, RuleSettings]:
    """The thresholds of each deployment: built-in < ``defaults`` < routes that use it (in
    file order) < its own entry. ``ValueError`` names an override of something unknown or a
    resolve threshold that would not resolve."""
    for name in config.routes:
        if name not in gateway.routes:
            raise ValueError(f"observe.alerts.routes.{name}: no such route")
    for key in config.deployments:
        if key not in gateway.deployments:
            raise ValueError(f"observe.alerts.deployments.{key}: no such deployment")
    base = {**msgspec.structs.asdict(BUILTIN_SETTINGS), **_set_fields(config.defaults)}
    found: dict[str, RuleSettings] = {}
    for key in gateway.deployments:
        merged = dict(base)
        for route_name, plan in gateway.routes.items():
            override = config.routes.get(route_name)
            if override is not None and any(d.key == key for d in plan.deployments()):
                merged.update(_set_fields(override))
        own = config.deployments.get(key)
        if own is not None:
            merged.update(_set_fields(own))
        merged["disabled"] = tuple(merged["disabled"] or ())
        settings = msgspec.convert(merged, RuleSettings)
        if settings.error_rate_resolve > settings.error_rate:
            raise ValueError(f"alerts for {key}: error_rate_resolve must be <= error_rate")
        if settings.latency_resolve_factor > settings.latency_factor:
            raise ValueError(f"alerts for {key}: latency_resolve_factor must be <= latency_factor")
        if (
            settings.overload_resolve >= settings.overload_burst
            or settings.rate_limit_resolve >= settings.rate_limit_burst
        ):
            raise ValueError(f"alerts for {key}: a burst's resolve count must be below it")
        found[key] = settings
    return found


class Alert(msgspec.Struct, omit_defaults=False):
    """One alert transition: what, where, how bad, and when (epoch seconds)."""

    rule: str
    key: str
    state: State
    summary: str
    at: float
    started_at: float
    deployment: str | None = None
    provider: str | None = None
    model: str | None = None
    routes: list[str] = msgspec.field(default_factory=list)
    value: float | None = None
    threshold: float | None = None
    url: str | None = None

    def as_dict(self) -> dict[str, Any]:
        """The alert as plain JSON data (the webhook body's core)."""
        return msgspec.to_builtins(self)  # type: ignore[no-any-return]


def _slots(window: float) -> int:
    return max(4, min(120, int(window)))


class _Tracker:
    """The windows one deployment's rules read."""

    __slots__ = ("baseline", "bursts", "errors", "latency", "latency_key", "settings")

    def __init__(self, settings: RuleSettings, key: str) -> None:
        self.settings = settings
        self.latency_key = f"latency:{key}"
        self.errors = SlidingWindow(settings.error_rate_window, _slots(settings.error_rate_window))
        self.latency = SlidingWindow(settings.latency_window, _slots(settings.latency_window))
        self.baseline = SlidingWindow(settings.latency_baseline_window, 120)
        self.bursts = SlidingWindow(settings.burst_window, _slots(settings.burst_window))


class _Status:
    """Where one alert key stands."""

    __slots__ = ("firing", "last_notified", "notified", "started_at")

    def __init__(self) -> None:
        self.firing = False
        self.notified = False
        self.started_at = 0.0
        self.last_notified = -math.inf


class AlertEngine:
    """Evaluates the rules and emits transitions (see the module docstring).

    ``on_attempt`` feeds it (an ``attempt`` event subscriber); ``evaluate`` runs the rules
    at the gateway clock's ``now`` (the background loop calls it every ``evaluate_every``
    seconds; tests call it after moving their clock).
    """

    def __init__(
        self,
        gateway: Gateway,
        config: AlertsConfig,
        notifier: Notifier | None = None,
        metrics: Metrics | None = None,
    ) -> None:
        self.gateway = gateway
        self.config = config
        self.notifier = notifier
        self.metrics = metrics
        self.clock = gateway.clock
        self.settings = resolve_settings(config, gateway)
        self._trackers = {key: _Tracker(s, key) for key, s in self.settings.items()}
        self._status: dict[str, _Status] = {}
        self._routes: dict[str, list[str]] = {
            key: [name for name, plan in gateway.routes.items() if d in plan.deployments()]
            for key, d in gateway.deployments.items()
        }
        self.history: list[Alert] = []
        self.stopping = False
        # Called before evaluating (Observability processes its queued events there).
        self.before_evaluate: Callable[[], None] | None = None

    # -- input --------------------------------------------------------------------------------

    def on_attempt(self, event: Event, now: float | None = None) -> None:
        """Count one upstream attempt in its deployment's windows (``now``: when it was
        emitted, on the gateway's clock; the clock now by default)."""
        self.on_attempts((attempt_fields(event, self.clock() if now is None else now),))

    def on_attempts(self, batch: Iterable[AttemptFields]) -> None:
        """Count upstream attempts in their deployments' windows."""
        trackers = self._trackers
        for _route, deployment, outcome, error, _status, latency, now in batch:
            tracker = trackers.get(deployment)  # type: ignore[arg-type]
            if tracker is None:
                continue
            if error is not None and outcome == "success":
                continue  # the request's own fault says nothing about the deployment
            tracker.errors.record(outcome, latency, now)
            tracker.bursts.record(outcome, latency, now)
            if outcome == "success":
                tracker.latency.record("success", latency, now)
                status = self._status.get(tracker.latency_key)
                if status is None or not status.firing:
                    tracker.baseline.record("success", latency, now)

    # -- evaluation ---------------------------------------------------------------------------

    def _firing(self, key: str) -> bool:
        status = self._status.get(key)
        return status is not None and status.firing

    def evaluate(self, now: float | None = None) -> list[Alert]:
        """Run every deployment rule at ``now``; returns the transitions it emitted."""
        if not self.config.enabled:
            return []
        if self.before_evaluate is not None:
            self.before_evaluate()
        now = self.clock() if now is None else now
        emitted: list[Alert] = []
        for key, tracker in self._trackers.items():
            s = tracker.settings
            deployment = self.gateway.deployments[key]
            # Open or probing: too little reaches it to show it recovered.
            unproven = deployment.health.breaker.state_at(now) != "closed"
            for rule in DEPLOYMENT_RULES:
                if rule in s.disabled:
                    continue
                fire, resolve, value, threshold, summary = self._check(rule, tracker, now)
                if unproven:
                    resolve = False
                alert = self._transition(
                    f"{rule}:{key}",
                    rule,
                    fire,
                    resolve,
                    now,
                    summary=summary.format(key=key),
                    deployment=key,
                    provider=deployment.adapter.name,
                    model=deployment.model,
                    routes=self._routes.get(key, []),
                    value=value,
                    threshold=threshold,
                )
                if alert is not None:
                    emitted.append(alert)
        return emitted

    def _check(
        self, rule: Rule, tracker: _Tracker, now: float
    ) -> tuple[bool, bool, float | None, float | None, str]:
        """(fire?, resolve?, value, threshold, summary template) of one rule."""
        s = tracker.settings
        if rule == "error_rate":
            counts = tracker.errors.counts(now)
            total = counts["total"]
            errors = counts["5xx"] + counts["529"]
            rate = errors / total if total else 0.0
            fire = total >= s.error_rate_min_calls and rate > s.error_rate
            resolve = rate < s.error_rate_resolve and (
                total >= s.error_rate_min_calls or errors == 0
            )
            return (
                fire,
                resolve,
                rate,
                s.error_rate,
                f"{{key}}: 5xx error rate {rate:.1%} over {s.error_rate_window:g}s "
                f"({errors} of {total} attempts; threshold {s.error_rate:.1%})",
            )
        if rule == "latency":
            total = tracker.latency.total(now)
            p50 = tracker.latency.quantile(0.5, now) if total else None
            base_total = tracker.baseline.total(now)
            baseline = (
                tracker.baseline.quantile(0.5, now)
                if base_total >= s.latency_baseline_min_calls
                else None
            )
            if p50 is None or baseline is None or baseline <= 0:
                # Not enough to judge: a firing alert resolves once the window is empty.
                return False, total == 0, p50, None, "{key}: median latency back to normal"
            ratio = p50 / baseline
            fire = total >= s.latency_min_calls and ratio > s.latency_factor
            resolve = ratio < s.latency_resolve_factor
            return (
                fire,
                resolve,
                p50,
                baseline * s.latency_factor,
                f"{{key}}: median latency {p50 * 1000:.0f} ms over {s.latency_window:g}s, "
                f"{ratio:.1f}x its baseline median {baseline * 1000:.0f} ms",
            )
        outcome, burst, calm = (
            ("529", s.overload_burst, s.overload_resolve)
            if rule == "overload"
            else ("429", s.rate_limit_burst, s.rate_limit_resolve)
        )
        count = tracker.bursts.counts(now)[outcome]
        what = "overloaded (529)" if rule == "overload" else "rate limited (429)"
        return (
            count >= burst,
            count <= calm,
            float(count),
            float(burst),
            f"{{key}}: {count} {what} answers within {s.burst_window:g}s (threshold {burst})",
        )

    def _transition(
        self,
        key: str,
        rule: Rule,
        fire: bool,
        resolve: bool,
        now: float,
        *,
        summary: str,
        **fields: Any,
    ) -> Alert | None:
        """Apply fire/resolve to the alert ``key``; the alert emitted, if any."""
        status = self._status.get(key)
        if status is None:
            status = self._status[key] = _Status()
        wall = time.time()
        if not status.firing and fire:
            status.firing = True
            status.started_at = wall
            page = now - status.last_notified >= self.config.repeat_after
            state: State = "fired" if page else "suppressed"
        elif status.firing and resolve:
            status.firing = False
            # Only an alert whose firing went out is followed by its resolution.
            page = status.notified
            state = "resolved"
        else:
            return None
        alert = Alert(
            rule=rule,
            key=key,
            state=state,
            summary=summary,
            at=wall,
            started_at=status.started_at,
            **fields,
        )
        sent = page and (self.notifier is None or self.notifier.submit(alert, now))
        if state != "resolved":
            status.notified = sent
            if sent:
                status.last_notified = now
        self._emit(alert, sent)
        return alert

    def _emit(self, alert: Alert, notified: bool) -> None:
        """Record a transition: history, the ``alert`` event, the log."""
        self.history.append(alert)
        del self.history[:-200]
        detail = alert.as_dict()
        detail.pop("deployment")
        detail["notified"] = notified
        self.gateway.events.emit("alert", None, alert.deployment, **detail)
        if self.notifier is None or self.notifier.sinks.log:
            level = logging.WARNING if alert.state == "fired" else logging.INFO
            if alert.state == "suppressed":
                level = logging.DEBUG  # rate-limited: in the event log, not paging anyone
            log.log(level, "alert %s: %s", alert.state, alert.summary)

    # -- status pages -------------------------------------------------------------------------

    def incident(
        self,
        provider: str,
        incident_id: str,
        *,
        open: bool,
        summary: str,
        url: str | None = None,
    ) -> Alert | None:
        """A status-page incident of ``provider`` opened or resolved."""
        if not self.config.enabled:
            return None
        return self._transition(
            f"status_incident:{provider}:{incident_id}",
            "status_incident",
            open,
            not open,
            self.clock(),
            summary=summary,
            provider=provider,
            routes=sorted(
                {
                    name
                    for name, plan in self.gateway.routes.items()
                    if any(d.adapter.name == provider for d in plan.deployments())
                }
            ),
            url=url,
            threshold=None,
            value=None,
        )

    def firing(self) -> list[Alert]:
        """The alerts firing now (the last transition of each firing key)."""
        last: dict[str, Alert] = {}
        for alert in self.history:
            last[alert.key] = alert
        return [
            a for k, a in last.items() if self._firing(k) and a.state in ("fired", "suppressed")
        ]

    async def run(self) -> None:
        """Evaluate every ``evaluate_every`` seconds until ``stopping``."""
        while not self.stopping:
            await asyncio.sleep(self.config.evaluate_every)
            try:
                self.evaluate()
            except Exception:  # a bug in a rule must not stop the others for good
                log.exception("alert evaluation failed")


# ---------------------------------------------------------------------------------------------
# Sinks


def webhook_payload(alert: Alert) -> dict[str, Any]:
    """The generic JSON webhook body: the alert's fields plus ``source``, ``version``,
    ``host`` and ISO times."""
    return {
        "source": "hedgerow",
        "version": 1,
        "host": socket.gethostname(),
        **alert.as_dict(),
        "time": iso(alert.at),
        "started_time": iso(alert.started_at),
    }


_EMOJI = {"fired": ":rotating_light:", "resolved": ":white_check_mark:"}


def slack_payload(alert: Alert) -> dict[str, Any]:
    """A Slack incoming-webhook body (``text`` fallback plus ``blocks``); Mattermost,
    Rocket.Chat and Discord's ``/slack`` endpoints take the same shape."""
    head = f"{_EMOJI.get(alert.state, '')} *[{alert.state.upper()}] {alert.rule}*"
    text = f"{head} {alert.summary}"
    facts = []
    if alert.deployment:
        facts.append(f"*deployment:* `{alert.deployment}`")
    elif alert.provider:
        facts.append(f"*provider:* `{alert.provider}`")
    if alert.routes:
        facts.append("*routes:* " + ", ".join(f"`{r}`" for r in alert.routes))
    facts.append(f"*since:* {iso(alert.started_at)}")
    if alert.url:
        facts.append(f"<{alert.url}|status page>")
    return {
        "text": text,
        "blocks": [
            {"type": "section", "text": {"type": "mrkdwn", "text": text}},
            {"type": "context", "elements": [{"type": "mrkdwn", "text": " · ".join(facts)}]},
        ],
    }


def email_message(alert: Alert, smtp: SmtpConfig) -> EmailMessage:
    """The alert as an email."""
    message = EmailMessage()
    message["Subject"] = f"[hedgerow] {alert.state.upper()}: {alert.summary}"[:200]
    message["From"] = smtp.sender
    message["To"] = ", ".join(smtp.to)
    lines = [
        f"{alert.state.upper()}: {alert.summary}",
        "",
        f"rule:       {alert.rule}",
        f"deployment: {alert.deployment or '-'}",
        f"provider:   {alert.provider or '-'}",
        f"routes:     {', '.join(alert.routes) or '-'}",
        f"since:      {iso(alert.started_at)}",
        f"at:         {iso(alert.at)}",
    ]
    if alert.value is not None:
        lines.append(f"value:      {alert.value:g} (threshold {alert.threshold})")
    if alert.url:
        lines.append(f"details:    {alert.url}")
    lines += ["", f"-- hedgerow on {socket.gethostname()}"]
    message.set_content("\n".join(lines) + "\n")
    return message


def _send_email(smtp: SmtpConfig, message: EmailMessage) -> None:
    """Blocking SMTP delivery (run in a thread)."""
    client: smtplib.SMTP
    if smtp.tls:
        client = smtplib.SMTP_SSL(
            smtp.host, smtp.port, timeout=smtp.timeout, context=ssl.create_default_context()
        )
    else:
        client = smtplib.SMTP(smtp.host, smtp.port, timeout=smtp.timeout)
    with client:
        if smtp.starttls and not smtp.tls:
            client.starttls(context=ssl.create_default_context())
        if smtp.user:
            password = smtp.password.reveal() if smtp.password else ""
            client.login(smtp.user, password)
        client.send_message(message)


class Notifier:
    """Delivers alerts to the configured sinks from a background task.

    ``submit`` is cheap and never blocks; ``start``/``close`` run the delivery task
    (``close`` waits up to ``drain`` seconds for what is queued). A webhook is tried three
    times (connection errors and 5xx), each try bounded by ``sinks.timeout``.
    """

    def __init__(
        self,
        sinks: SinksConfig,
        *,
        max_per_minute: int = 20,
        metrics: Metrics | None = None,
        redactor: Redactor | None = None,
        clock: Callable[[], float] | None = None,
    ) -> None:
        self.sinks = sinks
        self.metrics = metrics
        self.redactor = redactor or Redactor()
        self.bucket = TokenBucket(max(1, max_per_minute), per=60.0)
        self.sent: list[tuple[str, str]] = []  # (sink, alert key) — for the health view
        self._queue: asyncio.Queue[Alert] | None = None
        self._task: asyncio.Task[None] | None = None
        self._session: aiohttp.ClientSession | None = None
        self._retry_delay = 0.5
        self._stopping = False

    @property
    def external(self) -> list[str]:
        """The configured sinks other than the log."""
        names = []
        if self.sinks.webhooks:
            names.append("webhook")
        if self.sinks.slack:
            names.append("slack")
        if self.sinks.email is not None:
            names.append("email")
        return names

    def submit(self, alert: Alert, now: float) -> bool:
        """Queue ``alert`` for delivery; ``False`` when the per-minute limit dropped it."""
        if not self.external:
            return True
        if not self.bucket.try_acquire(1.0, now):
            log.warning("alert notification rate limit reached: not sent: %s", alert.summary)
            for sink in self.external:
                self._count(sink, "rate_limited")
            return False
        if self._queue is None:
            self._queue = asyncio.Queue()
        self._queue.put_nowait(alert)
        if self._task is None:
            self.start()
        return True

    def start(self) -> None:
        """Start the delivery task on the running loop."""
        if self._queue is None:
            self._queue = asyncio.Queue()
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="hedgerow-alert-notifier")

    async def _run(self) -> None:
        assert self._queue is not None
        while not self._stopping:
            alert = await self._queue.get()
            try:
                await self.deliver(alert)
            finally:
                self._queue.task_done()

    async def deliver(self, alert: Alert) -> None:
        """Send ``alert`` to every sink at once; failures are logged and counted."""
        jobs = []
        for index, url in enumerate(self.sinks.webhooks):
            jobs.append(self._post("webhook", index, url, webhook_payload(alert)))
        if self.sinks.slack:
            jobs.append(self._post("slack", 0, self.sinks.slack, slack_payload(alert)))
        if self.sinks.email is not None:
            jobs.append(self._email(self.sinks.email, alert))
        await asyncio.gather(*jobs)

    def _count(self, sink: str, result: str) -> None:
        if self.metrics is not None:
            self.metrics.notification(sink, result)

    async def _post(self, sink: str, index: int, url: Secret, payload: dict[str, Any]) -> None:
        if self._session is None:
            self._session = aiohttp.ClientSession()
        body = self.redactor.text(orjson.dumps(payload).decode()).encode()
        timeout = aiohttp.ClientTimeout(total=self.sinks.timeout)
        problem = "no answer"
        for attempt in range(3):
            if attempt:
                await asyncio.sleep(self._retry_delay * 2 ** (attempt - 1))
            try:
                async with self._session.post(
                    url.reveal(),
                    data=body,
                    headers={"content-type": "application/json"},
                    timeout=timeout,
                    allow_redirects=False,
                ) as response:
                    await response.read()
                    if response.status < 300:
                        self._count(sink, "sent")
                        self.sent.append((sink, ""))
                        return
                    problem = f"HTTP {response.status}"
                    if response.status < 500 and response.status != 429:
                        break  # the receiver refuses it: trying again will not help
            except (TimeoutError, aiohttp.ClientError, OSError) as exc:
                # The URL is a secret (Slack's is a credential): name the sink, not the URL.
                problem = type(exc).__name__
        self._count(sink, "failed")
        log.error("alert %s #%d not delivered: %s", sink, index + 1, problem)

    async def _email(self, smtp: SmtpConfig, alert: Alert) -> None:
        message = email_message(alert, smtp)
        body = message.get_content()
        message.set_content(self.redactor.text(body))
        try:
            async with asyncio.timeout(smtp.timeout + 1.0):
                await asyncio.to_thread(_send_email, smtp, message)
        except (TimeoutError, OSError, smtplib.SMTPException) as exc:
            self._count("email", "failed")
            log.error("alert email not delivered: %s", type(exc).__name__)
            return
        self._count("email", "sent")

    async def drain(self, timeout: float = 5.0) -> None:
        """Wait until everything queued was delivered (or failed), up to ``timeout``."""
        if self._queue is not None and self._task is not None:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(timeout):
                    await self._queue.join()

    async def close(self, drain: float = 5.0) -> None:
        """Deliver what is queued (up to ``drain`` seconds), then stop."""
        await self.drain(drain)
        self._stopping = True
        if self._task is not None:
            await stop_tasks([self._task])
            self._task = None
        if self._session is not None:
            await self._session.close()
            self._session = None
