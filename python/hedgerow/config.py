"""The config file: msgspec Structs, loaded from YAML or TOML.

Errors name the bad key by its path (``routes.support-chat.tiers[0]``) and, for YAML, the
line it is on. Provider keys are written as ``${ENV_VAR}`` (or read from a secrets file) and
held as ``Secret`` values that never print.
"""

from __future__ import annotations

import enum
import os
import re
import sys
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import msgspec
import yaml

from hedgerow.security.guard import Price
from hedgerow.security.keys import KeyRecord

__all__ = [
    "Config",
    "ConfigError",
    "JobsConfig",
    "ObserveConfig",
    "ProviderConfig",
    "RouteConfig",
    "Secret",
    "SharedConfig",
    "Target",
    "Timeouts",
    "load_config",
    "load_config_or_exit",
    "parse_config",
]

ProviderKind = Literal["anthropic", "openai", "gemini", "openai_compatible"]

DEFAULT_BASE_URLS: dict[str, str] = {
    "anthropic": "https://api.anthropic.com",
    "openai": "https://api.openai.com/v1",
    "gemini": "https://generativelanguage.googleapis.com",
}


class ConfigError(ValueError):
    """A config that cannot be used; the message names the key (and line, for YAML)."""


class Secret:
    """A secret string (a provider key). Its repr and str never show the value."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        """The value, for the one place that needs it: the upstream request header."""
        return self._value

    def __bool__(self) -> bool:
        return bool(self._value)

    def __repr__(self) -> str:
        return "Secret('***')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)


class Timeouts(msgspec.Struct, forbid_unknown_fields=True, omit_defaults=True):
    """Per-attempt time limits in seconds (``None``: no limit of that kind).

    ``first_content`` runs from sending the request to the first content token or tool-call
    fragment; ``idle`` is the longest gap between two chunks of a stream; ``total`` bounds the
    whole attempt.
    """

    connect: float | None = None
    first_content: float | None = None
    idle: float | None = None
    total: float | None = None

    def merged(self, override: Timeouts | None) -> Timeouts:
        """These timeouts with every field ``override`` sets taking precedence."""
        if override is None:
            return self
        return Timeouts(
            connect=override.connect if override.connect is not None else self.connect,
            first_content=(
                override.first_content if override.first_content is not None else self.first_content
            ),
            idle=override.idle if override.idle is not None else self.idle,
            total=override.total if override.total is not None else self.total,
        )


DEFAULT_TIMEOUTS = Timeouts(connect=5.0, first_content=60.0, idle=60.0, total=600.0)


class BreakerConfig(msgspec.Struct, forbid_unknown_fields=True):
    """When a deployment is taken out of selection, and how it comes back.

    Opens when at least ``failure_rate`` of the calls over ``window`` seconds failed (once
    ``minimum_calls`` were made) or after ``consecutive_failures`` in a row; stays open
    ``open_base`` seconds, doubling on each repeated trip up to ``open_max``; then real
    traffic probes it (``half_open_probes`` at once) and one success brings it back.
    ``slow_call`` (seconds) counts slower successes as failures.

    A deployment whose breaker probes it, or that failed at least ``probation_error_rate``
    of its calls over ``window``, is on probation: its streams reach the client only once
    they are whole (held back, like every stream until its first content), so that a stream
    it cuts halfway still fails over unseen.
    """

    failure_rate: float = 0.5
    minimum_calls: int = 10
    window: float = 60.0
    consecutive_failures: int = 5
    slow_call: float | None = None
    open_base: float = 5.0
    open_max: float = 300.0
    half_open_probes: int = 1
    probation_error_rate: float = 0.25

    def __post_init__(self) -> None:
        if not 0 < self.probation_error_rate <= 1:
            raise ValueError("probation_error_rate must be a share between 0 and 1")


class ProviderConfig(msgspec.Struct, forbid_unknown_fields=True):
    """One upstream service: its kind (wire format), where it is, and how to authenticate."""

    kind: ProviderKind
    base_url: str | None = None
    api_key: Secret | None = None
    # A file holding the key (a mounted secret); read at load time, never echoed.
    api_key_file: str | None = None
    headers: dict[str, str] = msgspec.field(default_factory=dict)
    timeouts: Timeouts | None = None
    anthropic_version: str = "2023-06-01"
    # OpenAI-compatible servers (vLLM, Ollama, llama.cpp) want `max_tokens`; OpenAI's current
    # models want `max_completion_tokens`.
    max_tokens_field: Literal["max_tokens", "max_completion_tokens"] | None = None
    max_connections: int = 256
    breaker: BreakerConfig | None = None

    @property
    def resolved_base_url(self) -> str:
        """``base_url``, or the service's public address for the known kinds."""
        url = self.base_url or DEFAULT_BASE_URLS.get(self.kind)
        if not url:
            raise ConfigError(f"provider of kind {self.kind!r} needs a base_url")
        return url.rstrip("/")


class Target(msgspec.Struct, forbid_unknown_fields=True):
    """A deployment in a tier: ``provider/model`` plus its share of the tier's load."""

    target: str
    weight: float = 1.0
    timeouts: Timeouts | None = None
    # The deployment's own limits (requests and tokens per minute), kept by native buckets.
    rpm: float | None = None
    tpm: float | None = None
    # Input tokens the model accepts; longer requests (estimated) skip it.
    context_window: int | None = None

    @property
    def provider(self) -> str:
        """The provider name (before the first ``/``)."""
        return self.target.split("/", 1)[0]

    @property
    def model(self) -> str:
        """The provider's model id (after the first ``/``)."""
        return self.target.split("/", 1)[1]


ErrorTreatment = Literal["failover", "retry", "return"]
Balance = Literal["weighted", "least_in_flight", "latency"]


class RetryConfig(msgspec.Struct, forbid_unknown_fields=True):
    """Retries: more passes over the plan once every candidate failed, and same-deployment
    retries for error classes treated as ``retry``.

    Backoff is exponential with full jitter (``uniform(0, min(max, base * 2**n))``) and never
    shorter than a Retry-After the provider sent. The budget keeps retries under ``budget``
    of the requests over ``budget_window`` seconds (with a floor of ``budget_floor``), so an
    outage never multiplies the load.
    """

    max_retries: int = 1
    backoff_base: float = 0.25
    backoff_max: float = 4.0
    budget: float = 0.2
    budget_floor: int = 3
    budget_window: float = 60.0


class HedgeConfig(msgspec.Struct, forbid_unknown_fields=True):
    """Hedging: when no content has arrived ``after`` seconds (or ``"auto"``: the deployment's
    observed p95 time to first content), the next candidate is asked too; the first to
    produce content wins and the other is cancelled. ``budget`` bounds the extra upstream
    requests as a share of requests over ``budget_window`` seconds."""

    after: float | Literal["auto"] = "auto"
    budget: float = 0.05
    budget_floor: int = 1
    budget_window: float = 60.0
    # With "auto": the floor and ceiling of the delay, and the value before any sample.
    min_after: float = 0.05
    max_after: float = 10.0
    initial_after: float = 2.0


class MinimalConfig(msgspec.Struct, forbid_unknown_fields=True):
    """The last resort when every tier failed; needs no model.

    ``cache``: the last good answer to the same request (``ttl`` seconds);
    ``template``: ``text``; ``rule``: a Python function ``module:function`` (or dotted)
    taking the ``hedgerow.ir.ChatRequest`` and returning text; ``queue``: accept as a
    background job (202 with its id); ``skip``: a clear error saying the feature is skipped.
    """

    kind: Literal["cache", "template", "rule", "queue", "skip"]
    text: str | None = None
    function: str | None = None
    ttl: float = 3600.0


class RouteConfig(msgspec.Struct, forbid_unknown_fields=True):
    """The model name a client asks for, mapped to ordered tiers of deployments."""

    tiers: list[list[str | Target]]
    timeouts: Timeouts | None = None
    description: str | None = None
    balance: Balance = "weighted"
    retry: RetryConfig = msgspec.field(default_factory=RetryConfig)
    hedge: HedgeConfig | None = None
    # Treatment of each failure class (``hedgerow.ir.ErrorKind`` values) that differs from
    # the default: failover for everything but ``bad_request`` (returned as is).
    errors: dict[str, ErrorTreatment] = msgspec.field(default_factory=dict)
    # Larger-context targets for requests too long for the tiers' models.
    context_fallback: list[str | Target] = msgspec.field(default_factory=list)
    minimal: list[MinimalConfig] = msgspec.field(default_factory=list)
    # One deadline over all attempts of a request, hedges and retries included.
    deadline: float | None = None
    # When every deployment of a tier is at its rate limit: go to the next tier, or wait
    # up to ``limit_wait`` seconds for a token.
    on_limit: Literal["failover", "wait"] = "failover"
    limit_wait: float = 1.0
    # Cache good answers (for a ``cache`` minimal answer) this many seconds; 0: only when a
    # ``cache`` minimal is configured, with its ttl.
    cache_entries: int = 10_000

    def tier_targets(self) -> list[list[Target]]:
        """Tiers with every bare ``provider/model`` string turned into a ``Target``."""
        return [[_target(t) for t in tier] for tier in self.tiers]

    def context_targets(self) -> list[Target]:
        """``context_fallback`` as ``Target``s."""
        return [_target(t) for t in self.context_fallback]


def _target(value: str | Target) -> Target:
    return value if isinstance(value, Target) else Target(target=value)


class ServerConfig(msgspec.Struct, forbid_unknown_fields=True):
    """How ``hedgerow serve`` listens and what it accepts."""

    host: str = "127.0.0.1"
    port: int = 8080
    max_body_bytes: int = 8 * 1024 * 1024
    max_messages: int = 10_000
    # A request body must arrive within this many seconds (a slow body gets 408).
    body_timeout: float = 30.0
    # The whole header block must arrive within this many seconds of its first byte (a
    # slowloris client gets 408 and is disconnected).
    header_timeout: float = 10.0
    # Request line and headers together; one line (the request line or a header); header
    # count. Over any of them: 431 (414 for the request line) in the client's format.
    max_header_bytes: int = 64 * 1024
    max_header_line: int = 8190
    max_header_count: int = 100
    # Worker processes on the port (SO_REUSEPORT) under a supervisor; `--workers` overrides.
    workers: int = 1
    # On SIGTERM or a reload, how long open requests and streams may run on.
    drain_seconds: float = 30.0
    # Every this many seconds, memory freed since (a burst of long prompts, say) is given
    # back to the operating system once the process has grown by 32 MiB; 0: never.
    release_memory_every: float = 5.0


class JobsConfig(msgspec.Struct, forbid_unknown_fields=True):
    """Durable background jobs: where they are stored and how workers treat them."""

    backend: Literal["sqlite", "redis"] = "sqlite"
    path: str = "hedgerow-jobs.db"
    redis_url: str = "redis://127.0.0.1:6379/0"
    redis_prefix: str = "hedgerow"
    # Workers inside `hedgerow serve` (0: none; run `hedgerow worker` separately).
    workers: int = 0
    concurrency: int = 16
    lease_seconds: float = 60.0
    max_attempts: int = 8
    max_age_seconds: float = 86_400.0
    backoff_base: float = 1.0
    backoff_max: float = 300.0
    webhook_url: str | None = None
    webhook_secret: Secret | None = None
    # SQLite: "full" fsyncs every commit (a submitted job survives a power cut); "normal"
    # survives a crash of the process only.
    sqlite_synchronous: Literal["full", "normal"] = "full"
    # How often an idle worker looks for jobs other processes submitted, and for expired
    # leases (a submit in the same process wakes it at once).
    poll_interval: float = 0.5
    # Route -> job attempts per second that one worker process starts (the drain rate
    # after an outage); routes not named are limited only by `concurrency`.
    rate_limits: dict[str, float] = msgspec.field(default_factory=dict)
    webhook_timeout: float = 10.0
    webhook_max_attempts: int = 5
    # On shutdown, how long running calls may take to finish before they are abandoned
    # (their jobs are then re-leased when the lease runs out).
    shutdown_grace: float = 30.0


class AuthConfig(msgspec.Struct, forbid_unknown_fields=True):
    """Who may call the gateway. With no keys and no key store, hedgerow runs in local mode.

    ``keys``: keys written in the config (hashes only: ``hedgerow keys create --print``
    makes one); ``keys_db``: the SQLite store ``hedgerow keys create|list|revoke`` manages;
    ``prices``: per ``provider/model``, the price per million input and output tokens that
    key budgets are charged at.
    """

    keys: list[KeyRecord] = msgspec.field(default_factory=list)
    keys_db: str | None = None
    prices: dict[str, Price] = msgspec.field(default_factory=dict)


# ---------------------------------------------------------------------------------------------
# Observability (hedgerow.observe): event log, request log, alert rules and sinks, status pages


class AlertRuleSettings(msgspec.Struct, forbid_unknown_fields=True, omit_defaults=True):
    """Thresholds of the built-in alert rules; every field unset inherits (built-in defaults
    < ``observe.alerts.defaults`` < ``routes.NAME`` < ``deployments.PROVIDER/MODEL``).

    Rules, evaluated per deployment over its upstream attempts: ``error_rate`` (share of 5xx
    and 529 answers above ``error_rate`` over ``error_rate_window`` s, resolved below
    ``error_rate_resolve``); ``latency`` (median above ``latency_factor`` x the baseline
    median learned over ``latency_baseline_window`` s, resolved below
    ``latency_resolve_factor`` x); ``overload`` and ``rate_limit`` (at least
    ``overload_burst`` 529s / ``rate_limit_burst`` 429s within ``burst_window`` s, resolved
    at or below ``*_resolve``). ``disabled`` names rules switched off here.
    """

    error_rate: float | None = None
    error_rate_resolve: float | None = None
    error_rate_window: float | None = None
    error_rate_min_calls: int | None = None
    latency_factor: float | None = None
    latency_resolve_factor: float | None = None
    latency_window: float | None = None
    latency_baseline_window: float | None = None
    latency_min_calls: int | None = None
    latency_baseline_min_calls: int | None = None
    overload_burst: int | None = None
    overload_resolve: int | None = None
    rate_limit_burst: int | None = None
    rate_limit_resolve: int | None = None
    burst_window: float | None = None
    disabled: list[Literal["error_rate", "latency", "overload", "rate_limit"]] | None = None

    def __post_init__(self) -> None:
        for name in ("error_rate", "error_rate_resolve"):
            value = getattr(self, name)
            if value is not None and not 0 < value <= 1:
                raise ValueError(f"{name} must be a share between 0 and 1")
        for name in self.__struct_fields__:
            value = getattr(self, name)
            if isinstance(value, int | float) and value < 0:
                raise ValueError(f"{name} must not be negative")


class AlertsConfig(msgspec.Struct, forbid_unknown_fields=True):
    """Alert rules evaluated inside hedgerow. An alert fires once, resolves once, and fires
    again no sooner than ``repeat_after`` seconds after it last fired; at most
    ``max_per_minute`` notifications go out per minute in all."""

    enabled: bool = True
    evaluate_every: float = 1.0
    repeat_after: float = 300.0
    max_per_minute: int = 20
    defaults: AlertRuleSettings = msgspec.field(default_factory=AlertRuleSettings)
    routes: dict[str, AlertRuleSettings] = msgspec.field(default_factory=dict)
    deployments: dict[str, AlertRuleSettings] = msgspec.field(default_factory=dict)


class SmtpConfig(msgspec.Struct, forbid_unknown_fields=True):
    """Alert email over SMTP: ``starttls`` upgrades a plain connection (port 587), ``tls``
    connects with TLS from the start (port 465)."""

    host: str
    sender: str = msgspec.field(name="from")
    to: list[str] = msgspec.field(default_factory=list)
    port: int = 25
    starttls: bool = False
    tls: bool = False
    user: str | None = None
    password: Secret | None = None
    timeout: float = 10.0


class SinksConfig(msgspec.Struct, forbid_unknown_fields=True):
    """Where alerts go: generic JSON webhooks, a Slack-compatible incoming webhook, email,
    and the log. URLs are secrets (a Slack webhook URL is a credential) and never print."""

    webhooks: list[Secret] = msgspec.field(default_factory=list)
    slack: Secret | None = None
    email: SmtpConfig | None = None
    log: bool = True
    timeout: float = 5.0


class StatusPageConfig(msgspec.Struct, forbid_unknown_fields=True):
    """A provider's public status page (Atlassian Statuspage JSON API, e.g.
    ``https://status.anthropic.com``), polled every ``interval`` seconds. An unresolved
    incident of at least ``min_impact`` (touching one of ``components`` when given) raises
    an alert and, by ``action``: ``deprioritise`` multiplies the provider's weight in every
    tier by ``deprioritise_factor``; ``open_breakers`` takes its deployments out of
    rotation until the incident resolves."""

    url: str
    interval: float = 60.0
    timeout: float = 5.0
    action: Literal["alert", "deprioritise", "open_breakers"] = "alert"
    min_impact: Literal["none", "minor", "major", "critical"] = "minor"
    components: list[str] = msgspec.field(default_factory=list)
    deprioritise_factor: float = 0.01

    def __post_init__(self) -> None:
        if not self.url.startswith(("http://", "https://")):
            raise ValueError("url must start with http:// or https://")
        if self.interval <= 0 or self.timeout <= 0:
            raise ValueError("interval and timeout must be > 0")
        if not 0 < self.deprioritise_factor <= 1:
            raise ValueError("deprioritise_factor must be between 0 and 1")


class ObserveConfig(msgspec.Struct, forbid_unknown_fields=True):
    """Observability: the event log (SQLite at ``event_log``; in memory when unset), the
    JSON request log (``request_log_file``, or stderr), alert rules and sinks, status pages
    (provider name -> page)."""

    # False: none of it (no /metrics, events, request log, alerts, dashboard or operator
    # controls), for embedding behind an observability stack of one's own.
    enabled: bool = True
    event_log: str | None = None
    event_log_retention_days: float = 30.0
    request_log: bool = True
    request_log_file: str | None = None
    alerts: AlertsConfig = msgspec.field(default_factory=AlertsConfig)
    sinks: SinksConfig = msgspec.field(default_factory=SinksConfig)
    status_pages: dict[str, StatusPageConfig] = msgspec.field(default_factory=dict)


class SharedConfig(msgspec.Struct, forbid_unknown_fields=True):
    """State shared between gateway instances (separate hosts) through Redis: rate limits
    (GCRA in one Lua script, on Redis's clock) and breaker trips (pub/sub). Unset
    ``redis_url``: nothing is shared beyond one host. When Redis cannot be reached, each
    instance falls back to its own limits (logged, and a ``shared`` event) and retries it
    every ``retry_interval`` seconds; users never see an error for it."""

    redis_url: str | None = None
    prefix: str = "hedgerow"
    # Seconds one Redis call may take before the instance decides Redis is unreachable.
    timeout: float = 0.25
    retry_interval: float = 1.0


class Config(msgspec.Struct, forbid_unknown_fields=True):
    """The whole config file."""

    providers: dict[str, ProviderConfig]
    routes: dict[str, RouteConfig]
    server: ServerConfig = msgspec.field(default_factory=ServerConfig)
    jobs: JobsConfig = msgspec.field(default_factory=JobsConfig)
    breaker: BreakerConfig = msgspec.field(default_factory=BreakerConfig)
    auth: AuthConfig = msgspec.field(default_factory=AuthConfig)
    # Merged over DEFAULT_TIMEOUTS field by field; routes, providers and targets override.
    timeouts: Timeouts = msgspec.field(default_factory=Timeouts)
    observe: ObserveConfig = msgspec.field(default_factory=ObserveConfig)
    shared: SharedConfig = msgspec.field(default_factory=SharedConfig)


# ---------------------------------------------------------------------------------------------
# Loading

_ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


def _dec_hook(type_: type, obj: Any) -> Any:
    if type_ is Secret:
        if not isinstance(obj, str):
            raise TypeError("expected a string")
        return Secret(obj)
    raise NotImplementedError(f"unsupported type {type_!r}")


def _expand_env(
    node: Any, env: Mapping[str, str], path: str, missing: list[tuple[str, str]]
) -> Any:
    """Replace ``${VAR}`` / ``${VAR:-default}`` in every string, recording unset variables."""
    if isinstance(node, str):

        def sub(match: re.Match[str]) -> str:
            name, default = match.group(1), match.group(2)
            if name in env:
                return env[name]
            if default is not None:
                return default
            missing.append((path, name))
            return ""

        return _ENV_REF.sub(sub, node)
    if isinstance(node, dict):
        return {
            k: _expand_env(v, env, f"{path}.{k}" if path else str(k), missing)
            for k, v in node.items()
        }
    if isinstance(node, list):
        return [_expand_env(v, env, f"{path}[{i}]", missing) for i, v in enumerate(node)]
    return node


_PATH_PART = re.compile(r"\.([^.\[]+)|\[(\d+)\]")


def _yaml_line(text: str, path: str) -> int | None:
    """The 1-based line of the node at msgspec's error path (``$.a.b[0]``), if found."""
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError:
        return None
    line = None
    for key, index in _PATH_PART.findall(path.removeprefix("$")):
        if node is None:
            break
        line = node.start_mark.line + 1
        if key and isinstance(node, yaml.MappingNode):
            found = None
            for k_node, v_node in node.value:
                if k_node.value == key:
                    line = k_node.start_mark.line + 1
                    found = v_node
                    break
            node = found
        elif index and isinstance(node, yaml.SequenceNode) and int(index) < len(node.value):
            node = node.value[int(index)]
            line = node.start_mark.line + 1
        else:
            break
    return line


def parse_config(
    text: str,
    *,
    fmt: Literal["yaml", "toml"] = "yaml",
    env: Mapping[str, str] | None = None,
    source: str = "<config>",
) -> Config:
    """Parse and validate config text; ``ConfigError`` names what is wrong and where."""
    try:
        raw = tomllib.loads(text) if fmt == "toml" else yaml.safe_load(text)
    except (yaml.YAMLError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"{source}: not valid {fmt.upper()}: {exc}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: the top level must be a mapping with providers and routes")
    missing: list[tuple[str, str]] = []
    expanded = _expand_env(raw, os.environ if env is None else env, "", missing)
    if missing:
        where, name = missing[0]
        raise ConfigError(f"{source}: {where}: environment variable {name} is not set")
    config = _convert(expanded, text if fmt == "yaml" else None, source)
    _check_references(config, source)
    return config


def _convert(raw: dict[str, Any], yaml_text: str | None, source: str) -> Config:
    """Validate section by section, so an error's path names the dict keys msgspec elides."""

    def convert(value: Any, type_: Any, path: str) -> Any:
        try:
            return msgspec.convert(value, type_, dec_hook=_dec_hook, strict=True)
        except msgspec.ValidationError as exc:
            message = str(exc)
            match = re.search(r" - at `\$([^`]*)`", message)
            detail = message[: match.start()] if match else message
            full = path + (match.group(1) if match else "")
            line = _yaml_line(yaml_text, "$." + full) if yaml_text is not None else None
            at = f" (line {line})" if line else ""
            raise ConfigError(f"{source}: {full}{at}: {detail}") from None

    unknown = sorted(set(raw) - set(Config.__struct_fields__))
    if unknown:
        raise ConfigError(f"{source}: {unknown[0]}: unknown top-level key")
    for section in ("providers", "routes"):
        if not isinstance(raw.get(section, {}), dict):
            raise ConfigError(f"{source}: {section}: must be a mapping of names")
    providers = {
        str(name): convert(value, ProviderConfig, f"providers.{name}")
        for name, value in (raw.get("providers") or {}).items()
    }
    routes = {
        str(name): convert(_normalise_route(value), RouteConfig, f"routes.{name}")
        for name, value in (raw.get("routes") or {}).items()
    }
    config = Config(providers=providers, routes=routes)
    if "server" in raw:
        config.server = convert(raw["server"], ServerConfig, "server")
    if "timeouts" in raw:
        config.timeouts = convert(raw["timeouts"], Timeouts, "timeouts")
    if "jobs" in raw:
        config.jobs = convert(raw["jobs"], JobsConfig, "jobs")
    if "breaker" in raw:
        config.breaker = convert(raw["breaker"], BreakerConfig, "breaker")
    if "auth" in raw:
        config.auth = convert(raw["auth"], AuthConfig, "auth")
    if "shared" in raw:
        config.shared = convert(raw["shared"], SharedConfig, "shared")
    if "observe" in raw:
        config.observe = convert(raw["observe"], ObserveConfig, "observe")
    return config


def _normalise_route(value: Any) -> Any:
    """A single ``minimal`` answer may be written without a list around it."""
    if isinstance(value, dict) and isinstance(value.get("minimal"), dict | str):
        minimal = value["minimal"]
        value = {**value, "minimal": [minimal]}
    if isinstance(value, dict) and isinstance(value.get("minimal"), list):
        # `minimal: [cache, skip]`: a bare kind needs no mapping.
        value = {
            **value,
            "minimal": [{"kind": m} if isinstance(m, str) else m for m in value["minimal"]],
        }
    return value


def _check_references(config: Config, source: str) -> None:
    """Every target names a configured provider; every route has at least one target."""
    if not config.routes:
        raise ConfigError(f"{source}: routes: at least one route is needed")
    for name, provider in config.providers.items():
        if provider.api_key_file:
            if provider.api_key is not None:
                raise ConfigError(
                    f"{source}: providers.{name}: set api_key or api_key_file, not both"
                )
            try:
                provider.api_key = Secret(Path(provider.api_key_file).read_text().strip())
            except OSError as exc:
                raise ConfigError(
                    f"{source}: providers.{name}.api_key_file: cannot read: {exc.strerror}"
                ) from None
        try:
            provider.resolved_base_url  # noqa: B018 - validates
        except ConfigError as exc:
            raise ConfigError(f"{source}: providers.{name}: {exc}") from None
    kinds = {kind.value for kind in _error_kinds()}
    for route_name, route in config.routes.items():
        prefix = f"{source}: routes.{route_name}"
        if not route.tiers or not any(route.tiers):
            raise ConfigError(f"{prefix}.tiers: at least one target is needed")
        placed = [
            (f"tiers[{i}][{j}]", target)
            for i, tier in enumerate(route.tier_targets())
            for j, target in enumerate(tier)
        ] + [(f"context_fallback[{j}]", t) for j, t in enumerate(route.context_targets())]
        for where, target in placed:
            if "/" not in target.target:
                raise ConfigError(
                    f"{prefix}.{where}: {target.target!r} is not of the form provider/model"
                )
            if target.provider not in config.providers:
                known = ", ".join(sorted(config.providers)) or "none"
                raise ConfigError(
                    f"{prefix}.{where}: unknown provider {target.provider!r} (configured: {known})"
                )
            if target.weight <= 0:
                raise ConfigError(f"{prefix}.{where}.weight: must be > 0")
            for limit in ("rpm", "tpm", "context_window"):
                value = getattr(target, limit)
                if value is not None and value <= 0:
                    raise ConfigError(f"{prefix}.{where}.{limit}: must be > 0")
        for kind in route.errors:
            if kind not in kinds:
                raise ConfigError(
                    f"{prefix}.errors.{kind}: unknown failure class (known: {', '.join(sorted(kinds))})"
                )
        for j, minimal in enumerate(route.minimal):
            if minimal.kind == "template" and minimal.text is None:
                raise ConfigError(f"{prefix}.minimal[{j}].text: a template needs its text")
            if minimal.kind == "rule" and not minimal.function:
                raise ConfigError(
                    f"{prefix}.minimal[{j}].function: a rule needs a function (module:function)"
                )
        if (
            route.hedge is not None
            and not isinstance(route.hedge.after, str)
            and route.hedge.after <= 0
        ):
            raise ConfigError(f'{prefix}.hedge.after: must be > 0 or "auto"')
        if not 0 <= route.retry.budget <= 1:
            raise ConfigError(f"{prefix}.retry.budget: must be between 0 and 1")


def _error_kinds() -> type[enum.StrEnum]:
    # The vocabulary lives in the IR; imported lazily so config stays importable on its own.
    from hedgerow.ir import ErrorKind

    return ErrorKind


def load_config_or_exit(path: str | os.PathLike[str]) -> Config:
    """``load_config`` for the command line: a bad config prints why and exits with 2."""
    try:
        return load_config(path)
    except ConfigError as exc:
        print(f"hedgerow: config error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None


def load_config(path: str | os.PathLike[str], env: Mapping[str, str] | None = None) -> Config:
    """Load a ``.yaml``/``.yml`` or ``.toml`` config file."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{p}: cannot read: {exc.strerror}") from None
    fmt: Literal["yaml", "toml"] = "toml" if p.suffix == ".toml" else "yaml"
    return parse_config(text, fmt=fmt, env=env, source=str(p))
