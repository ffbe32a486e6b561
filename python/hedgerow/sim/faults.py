"""Fault specifications and the per-model fault table.

A ``FaultSpec`` says what goes wrong (an HTTP error, an error event inside a 200 stream, a
reset connection, a hang, a stream cut short, a garbage chunk, a late first byte) and how
often. The table maps model names or globs (``claude-*``, ``*``) to lists of faults; the
most recently set entry whose pattern matches a model wins, so ``*`` set after
``claude-opus-4-6`` overrides it, and a model set after ``*`` overrides that.

How one request picks its fault
-------------------------------
``delay`` faults stack: each one that fires adds its latency. Every other kind is an
*outcome*, and a request gets at most one. One uniform draw ``u`` in [0, 1) is taken per
request from the model's seeded generator, and the outcome faults, in list order, own
consecutive slices of [0, 1) as wide as their ``rate``: ``[{error 529, rate 0.6}, {error
500, rate 0.2}]`` fails 80 % of requests, 60 % with 529. Rates of 0 and 1 need no luck,
and ``every`` / ``count`` / ``skip`` make a sequence exact: ``count: 3`` fails the next
three requests, then the fault is spent and the model recovers.
"""

from __future__ import annotations

import enum
import fnmatch
import random
from typing import Literal

import msgspec

__all__ = ["NO_FAULT", "Decision", "Fault", "FaultKind", "FaultSpec", "FaultTable", "decide"]

ERROR_STATUSES = frozenset({400, 401, 402, 403, 404, 408, 409, 413, 429, 500, 502, 503, 504, 529})


class FaultKind(enum.StrEnum):
    """What goes wrong."""

    ERROR = "error"  # an HTTP error response with ``status``
    STREAM_ERROR = "stream_error"  # a 200 stream, then the provider's in-stream error event
    RESET = "reset"  # the connection is aborted (before headers, or after N tokens)
    HANG = "hang"  # nothing more is sent until the client goes away
    CUT = "cut"  # the stream closes cleanly without its terminal event
    MALFORMED = "malformed"  # a data line of invalid JSON, then the connection closes
    DELAY = "delay"  # a late first byte (``delay`` seconds), then the request proceeds


class FaultSpec(msgspec.Struct, frozen=True, forbid_unknown_fields=True, omit_defaults=True):
    """One injected fault (the body of ``PUT /_mock/faults/{model}``, an entry of a
    scenario phase's ``faults``).

    Attributes:
        kind: what goes wrong (``FaultKind``).
        status: HTTP status for ``error`` (400, 401, 402, 403, 404, 408, 409, 413, 429, 500, 502,
            503, 504, 529); for ``stream_error`` the status whose error type the event carries
            (default: the provider's overloaded error) and the status a non-streaming request
            gets instead.
        rate: probability of firing, 0..1 (see the module docstring for how rates combine).
        every: fire only on every Nth request this fault sees (after ``skip``).
        count: fire at most this many times, then stay spent (until reset or replaced).
        skip: let the first N requests this fault sees pass untouched.
        after_tokens: for stream faults, how many output tokens are sent first. For
            ``reset`` and ``hang``, ``None`` means before the response headers.
        delay: seconds of delay for ``delay``.
        stage: where a ``delay`` sits: before the response ``headers`` (a slow first byte)
            or, in a stream, after the headers and before the first ``content``.
        retry_after: seconds for the ``retry-after`` header (429, 503 and 529 get 1 by
            default); Gemini also gets it as a ``RetryInfo`` detail.
        should_retry: when set, sent as ``x-should-retry: true|false``.
        message: the error message instead of the provider's usual one.
        stream: only for streaming (true) or non-streaming (false) requests.
    """

    kind: FaultKind
    status: int | None = None
    rate: float = 1.0
    every: int | None = None
    count: int | None = None
    skip: int = 0
    after_tokens: int | None = None
    delay: float = 0.0
    stage: Literal["headers", "content"] = "headers"
    retry_after: float | None = None
    should_retry: bool | None = None
    message: str | None = None
    stream: bool | None = None

    def __post_init__(self) -> None:
        if not 0.0 <= self.rate <= 1.0:
            raise ValueError("rate must be between 0 and 1")
        if self.kind is FaultKind.ERROR and self.status is None:
            raise ValueError("an error fault needs a status")
        if self.status is not None and self.status not in ERROR_STATUSES:
            raise ValueError(f"status must be one of {sorted(ERROR_STATUSES)}")
        if self.every is not None and self.every < 1:
            raise ValueError("every must be at least 1")
        if self.count is not None and self.count < 0:
            raise ValueError("count must not be negative")
        if self.skip < 0 or (self.after_tokens is not None and self.after_tokens < 0):
            raise ValueError("skip and after_tokens must not be negative")
        if self.delay < 0 or (self.retry_after is not None and self.retry_after < 0):
            raise ValueError("delay and retry_after must not be negative")

    @property
    def label(self) -> str:
        """The outcome name counted in ``/_mock/state`` (``error_529``, ``reset``, …)."""
        if self.kind is FaultKind.ERROR:
            return f"error_{self.status}"
        return self.kind.value


class Fault:
    """A ``FaultSpec`` in force, with the counters ``every``/``count``/``skip`` need."""

    __slots__ = ("fired", "seen", "spec")

    def __init__(self, spec: FaultSpec) -> None:
        self.spec = spec
        self.seen = 0
        self.fired = 0

    @property
    def spent(self) -> bool:
        """Whether ``count`` is used up."""
        return self.spec.count is not None and self.fired >= self.spec.count

    def armed(self, stream: bool) -> bool:
        """Count this request as seen; True when the fault may fire on it."""
        spec = self.spec
        if spec.stream is not None and spec.stream != stream:
            return False
        self.seen += 1
        if self.spent or self.seen <= spec.skip:
            return False
        return spec.every is None or (self.seen - spec.skip) % spec.every == 0

    def state(self) -> dict[str, object]:
        """The spec plus its counters, for ``/_mock/state``."""
        out: dict[str, object] = msgspec.to_builtins(self.spec)
        out["seen"] = self.seen
        out["fired"] = self.fired
        return out


class Decision(msgspec.Struct, frozen=True):
    """What happens to one request: stacked ``delays`` then at most one ``outcome``."""

    delays: tuple[FaultSpec, ...] = ()
    outcome: FaultSpec | None = None


NO_FAULT = Decision()


def decide(faults: list[Fault], rng: random.Random, *, stream: bool) -> Decision:
    """Pick the faults that hit one request (see the module docstring)."""
    if not faults:
        return NO_FAULT
    u = rng.random()
    low = 0.0
    delays: list[FaultSpec] = []
    outcome: FaultSpec | None = None
    for fault in faults:
        if not fault.armed(stream):
            continue
        spec = fault.spec
        if spec.kind is FaultKind.DELAY:
            if spec.rate >= 1.0 or rng.random() < spec.rate:
                fault.fired += 1
                delays.append(spec)
            continue
        high = low + spec.rate
        if outcome is None and low <= u < high:
            fault.fired += 1
            outcome = spec
        low = high
    if outcome is None and not delays:
        return NO_FAULT
    return Decision(tuple(delays), outcome)


class FaultTable:
    """Model pattern -> faults in force; the latest matching entry wins.

    Lookups are cached per model name (a gateway benchmark asks for the same few models
    thousands of times a second); any change clears the cache.
    """

    __slots__ = ("_cache", "_entries", "_seq")

    def __init__(self) -> None:
        self._entries: dict[str, tuple[int, list[Fault]]] = {}
        self._seq = 0
        self._cache: dict[str, list[Fault] | None] = {}

    def set(self, pattern: str, specs: list[FaultSpec]) -> None:
        """Put ``specs`` in force for models matching ``pattern`` (fresh counters); an empty
        list is an explicit "healthy" that overrides older, broader entries."""
        self._seq += 1
        self._entries.pop(pattern, None)  # re-insert so iteration order is set order
        self._entries[pattern] = (self._seq, [Fault(spec) for spec in specs])
        self._cache.clear()

    def remove(self, pattern: str) -> bool:
        """Drop the entry for ``pattern``; False if there was none."""
        found = self._entries.pop(pattern, None) is not None
        self._cache.clear()
        return found

    def clear(self) -> None:
        """Drop every entry."""
        self._entries.clear()
        self._cache.clear()

    def lookup(self, model: str) -> list[Fault] | None:
        """The faults for ``model``, or None when no entry matches (distinct from ``[]``)."""
        try:
            return self._cache[model]
        except KeyError:
            pass
        found: list[Fault] | None = None
        best = -1
        for pattern, (seq, faults) in self._entries.items():
            if seq > best and (pattern == model or fnmatch.fnmatchcase(model, pattern)):
                best, found = seq, faults
        self._cache[model] = found
        return found

    def state(self) -> dict[str, list[dict[str, object]]]:
        """Every entry with its counters, in the order set."""
        return {
            pattern: [fault.state() for fault in faults]
            for pattern, (_, faults) in self._entries.items()
        }
