"""Keeping secrets out of everything observability writes.

A ``Redactor`` knows the secret values of the config (provider keys, sink URLs, the SMTP
password) and replaces them, wherever they appear, with ``[REDACTED]``; it also masks
anything shaped like a credential: ``Bearer ...``, ``x-api-key: ...``, ``sk-...`` keys.
Every writer of the request log, the event log, alert payloads and the JSON log formatter
passes its text through one.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable
from typing import Any

from hedgerow._core import SecretMask
from hedgerow.config import Config, Secret

__all__ = ["REDACTED", "RedactingFilter", "Redactor", "config_secrets"]

REDACTED = "[REDACTED]"

# Credential shapes worth masking even when the value is not one of ours (an upstream that
# echoes a key back in its error message, a header dumped in a traceback).
_PATTERNS = re.compile(
    r"(?i)(?P<scheme>\b(?:bearer|basic)\s+)[A-Za-z0-9._~+/=-]{8,}"
    r"|(?P<header>\b(?:x-api-key|x-goog-api-key|api[_-]?key|authorization)[\"']?\s*[:=]\s*[\"']?"
    r"(?:(?:bearer|basic)\s+)?)[^\s\"',;]{6,}"
    r"|\b(?:sk|pk|rk)-[A-Za-z0-9_-]{8,}"
    r"|\bAIza[0-9A-Za-z_-]{20,}"
)


_SECRET_HEADER = re.compile(r"(?i)auth|key|token|secret|cookie|signature")


def config_secrets(config: Config) -> list[str]:
    """Every secret value a config holds: provider keys and credential-like extra headers,
    sink URLs, the SMTP password, the jobs webhook secret."""
    found: list[Secret | None] = [p.api_key for p in config.providers.values()]
    sinks = config.observe.sinks
    found.extend(sinks.webhooks)
    found.append(sinks.slack)
    if sinks.email is not None:
        found.append(sinks.email.password)
    found.append(config.jobs.webhook_secret)
    values = [s.reveal() for s in found if s]
    for provider in config.providers.values():
        values.extend(v for k, v in provider.headers.items() if _SECRET_HEADER.search(k))
    return values


# Every credential shape above contains one of these (lower-cased): text without any of
# them is returned untouched without running the expression (the common case by far).
_TRIGGERS = ("bearer", "basic", "key", "authorization", "sk-", "pk-", "rk-", "aiza")


class Redactor:
    """Replaces known secret values and credential-shaped strings with ``[REDACTED]``."""

    __slots__ = ("_known", "_short", "_values")

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        # The rule (which values, which first) is the native one the request log masks by.
        self._known = SecretMask(list(secrets))
        self._values = tuple(self._known.values)
        self._short: dict[str, str] = {}

    def text(self, value: str) -> str:
        """``value`` with every secret masked."""
        value = self._known.mask(value)  # a SIMD scan per secret: no copy when none is there
        lowered = value.lower()
        if any(t in lowered for t in _TRIGGERS):
            return _PATTERNS.sub(_mask, value)
        return value

    def short(self, value: str) -> str:
        """``text`` for a short string seen often (a route name): remembered, up to 4096."""
        masked = self._short.get(value)
        if masked is None:
            masked = self.text(value)
            if len(self._short) < 4096:  # clients may send any name: the memory is bounded
                self._short[value] = masked
        return masked

    @property
    def values(self) -> tuple[str, ...]:
        """The secret values masked, longest first (the request log masks them natively)."""
        return self._values

    def value(self, value: Any) -> Any:
        """A JSON-like value (dicts, lists, strings) with every string masked."""
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, dict):
            return {k: self.value(v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [self.value(v) for v in value]
        return value


def _mask(match: re.Match[str]) -> str:
    prefix = match.group("scheme") or match.group("header") or ""
    return prefix + REDACTED


class RedactingFilter(logging.Filter):
    """A logging filter that masks secrets in a record's message (attach it to handlers).

    The record's arguments are merged into its message first, so a secret passed as an
    argument (``log.error("%s", upstream_message)``) is masked too.
    """

    def __init__(self, redactor: Redactor) -> None:
        super().__init__()
        self.redactor = redactor

    def filter(self, record: logging.LogRecord) -> bool:
        """Mask the message (and any formatted exception) in place; always keeps it."""
        try:
            message = record.getMessage()
        except Exception:  # a bad format string: keep what there is
            message = str(record.msg)
        record.msg = self.redactor.text(message)
        record.args = None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = self.redactor.text(record.exc_text)
        return True
