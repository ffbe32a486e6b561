"""The config file: msgspec Structs, loaded from YAML or TOML.

Errors name the bad key by its path (``routes.support-chat.tiers[0]``) and, for YAML, the
line it is on. Provider keys are written as ``${ENV_VAR}`` (or read from a secrets file) and
held as ``Secret`` values that never print.
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import msgspec
import yaml

__all__ = [
    "Config",
    "ConfigError",
    "JobsConfig",
    "ProviderConfig",
    "RouteConfig",
    "Secret",
    "Target",
    "Timeouts",
    "load_config",
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
                override.first_content
                if override.first_content is not None
                else self.first_content
            ),
            idle=override.idle if override.idle is not None else self.idle,
            total=override.total if override.total is not None else self.total,
        )


DEFAULT_TIMEOUTS = Timeouts(connect=5.0, first_content=60.0, idle=60.0, total=600.0)


class ProviderConfig(msgspec.Struct, forbid_unknown_fields=True):
    """One upstream service: its kind (wire format), where it is, and how to authenticate."""

    kind: ProviderKind
    base_url: str | None = None
    api_key: Secret | None = None
    headers: dict[str, str] = msgspec.field(default_factory=dict)
    timeouts: Timeouts | None = None
    anthropic_version: str = "2023-06-01"
    # OpenAI-compatible servers (vLLM, Ollama, llama.cpp) want `max_tokens`; OpenAI's current
    # models want `max_completion_tokens`.
    max_tokens_field: Literal["max_tokens", "max_completion_tokens"] | None = None
    max_connections: int = 256

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

    @property
    def provider(self) -> str:
        """The provider name (before the first ``/``)."""
        return self.target.split("/", 1)[0]

    @property
    def model(self) -> str:
        """The provider's model id (after the first ``/``)."""
        return self.target.split("/", 1)[1]


class RouteConfig(msgspec.Struct, forbid_unknown_fields=True):
    """The model name a client asks for, mapped to ordered tiers of deployments."""

    tiers: list[list[str | Target]]
    timeouts: Timeouts | None = None
    description: str | None = None

    def tier_targets(self) -> list[list[Target]]:
        """Tiers with every bare ``provider/model`` string turned into a ``Target``."""
        return [
            [t if isinstance(t, Target) else Target(target=t) for t in tier] for tier in self.tiers
        ]


class ServerConfig(msgspec.Struct, forbid_unknown_fields=True):
    """How ``hedgerow serve`` listens and what it accepts."""

    host: str = "127.0.0.1"
    port: int = 8080
    max_body_bytes: int = 8 * 1024 * 1024
    max_messages: int = 10_000


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


class Config(msgspec.Struct, forbid_unknown_fields=True):
    """The whole config file."""

    providers: dict[str, ProviderConfig]
    routes: dict[str, RouteConfig]
    server: ServerConfig = msgspec.field(default_factory=ServerConfig)
    jobs: JobsConfig = msgspec.field(default_factory=JobsConfig)
    # Merged over DEFAULT_TIMEOUTS field by field; routes, providers and targets override.
    timeouts: Timeouts = msgspec.field(default_factory=Timeouts)


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
        return {k: _expand_env(v, env, f"{path}.{k}" if path else str(k), missing) for k, v in node.items()}
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
        str(name): convert(value, RouteConfig, f"routes.{name}")
        for name, value in (raw.get("routes") or {}).items()
    }
    config = Config(providers=providers, routes=routes)
    if "server" in raw:
        config.server = convert(raw["server"], ServerConfig, "server")
    if "timeouts" in raw:
        config.timeouts = convert(raw["timeouts"], Timeouts, "timeouts")
    if "jobs" in raw:
        config.jobs = convert(raw["jobs"], JobsConfig, "jobs")
    return config


def _check_references(config: Config, source: str) -> None:
    """Every target names a configured provider; every route has at least one target."""
    if not config.routes:
        raise ConfigError(f"{source}: routes: at least one route is needed")
    for name, provider in config.providers.items():
        try:
            provider.resolved_base_url  # noqa: B018 - validates
        except ConfigError as exc:
            raise ConfigError(f"{source}: providers.{name}: {exc}") from None
    for route_name, route in config.routes.items():
        if not route.tiers or not any(route.tiers):
            raise ConfigError(f"{source}: routes.{route_name}.tiers: at least one target is needed")
        for i, tier in enumerate(route.tier_targets()):
            for j, target in enumerate(tier):
                where = f"routes.{route_name}.tiers[{i}][{j}]"
                if "/" not in target.target:
                    raise ConfigError(
                        f"{source}: {where}: {target.target!r} is not of the form provider/model"
                    )
                if target.provider not in config.providers:
                    known = ", ".join(sorted(config.providers)) or "none"
                    raise ConfigError(
                        f"{source}: {where}: unknown provider {target.provider!r} "
                        f"(configured: {known})"
                    )
                if target.weight <= 0:
                    raise ConfigError(f"{source}: {where}.weight: must be > 0")


def load_config(path: str | os.PathLike[str], env: Mapping[str, str] | None = None) -> Config:
    """Load a ``.yaml``/``.yml`` or ``.toml`` config file."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{p}: cannot read: {exc.strerror}") from None
    fmt: Literal["yaml", "toml"] = "toml" if p.suffix == ".toml" else "yaml"
    return parse_config(text, fmt=fmt, env=env, source=str(p))
