"""hedgerow's native resilience core (Rust, PyO3). Import these names from ``hedgerow``.

Time convention: every ``now`` argument is **monotonic seconds** as a float, on the clock of
``time.monotonic()`` (also available as :func:`monotonic`). ``None`` reads the clock; an
explicit value lets tests and simulations drive time. A ``now`` that is NaN, infinite or
negative raises ``ValueError``.

Every object is lock-free (atomics and compare-and-swap, no mutex), safe to share between
threads and sound on free-threaded CPython. Bad arguments raise ``ValueError`` whose message
starts with the argument's name.

Outcome vocabulary (breaker and window): ``"success"``, ``"5xx"``, ``"529"``, ``"429"``,
``"timeout"``, ``"other"`` (any other failure).
"""

from collections.abc import Iterable
from typing import Any, Literal, TypeAlias, TypedDict, final

__all__ = [
    "CircuitBreaker",
    "KeyedTokenBucket",
    "RequestLines",
    "SecretMask",
    "SharedBucket",
    "SharedMember",
    "SharedState",
    "SlidingWindow",
    "TokenBucket",
    "iso_millis",
    "loud_spans",
    "monotonic",
]

_Outcome: TypeAlias = Literal["success", "5xx", "529", "429", "timeout", "other"]
_State: TypeAlias = Literal["closed", "open", "half_open"]

class _BreakerSnapshot(TypedDict):
    """What :meth:`CircuitBreaker.snapshot` returns."""

    state: _State
    since: float
    trips: int
    consecutive_failures: int
    failure_rate: float
    calls: int
    failures: int
    open_until: float | None
    forced: Literal["open", "closed"] | None
    half_open_in_flight: int
    half_open_successes: int
    transitions: int

class _WindowSnapshot(TypedDict):
    """What :meth:`SlidingWindow.snapshot` returns."""

    counts: dict[str, int]
    total: int
    error_rate: float
    p50: float | None
    p95: float | None
    p99: float | None
    window: float
    slots: int

def monotonic() -> float:
    """Monotonic seconds now: the clock of ``time.monotonic()``, read without a Python call.

    Every ``now`` argument in this module is a float on this clock.
    """

@final
class TokenBucket:
    """A GCRA token bucket: ``rate`` tokens per ``per`` seconds, at most ``burst`` at once.

    ``burst`` defaults to ``rate``. Costs are weighted, so one bucket limits requests per
    minute (``cost=1``) or tokens per minute (``TokenBucket(100_000, per=60)`` then
    ``try_acquire(cost=1234)``). The whole state is one atomic word (the theoretical arrival
    time, in nanoseconds) updated by compare-and-swap.

    The emission interval ``per / rate`` is a whole number of nanoseconds (so ``rate / per``
    may be at most 1e9 per second); integer costs and bursts are exact. A cost larger than
    ``burst`` can never be granted: ``acquire`` and ``retry_after`` return ``math.inf``.

    Raises ``ValueError`` for a ``rate``, ``per`` or ``burst`` that is not a finite number > 0.
    """

    def __new__(cls, rate: float, per: float = 1.0, burst: float | None = None) -> TokenBucket: ...
    def try_acquire(self, cost: float = 1.0, now: float | None = None) -> bool:
        """Take ``cost`` tokens if available now; ``True`` if granted (else nothing is taken)."""

    def acquire(self, cost: float = 1.0, now: float | None = None) -> float:
        """Take ``cost`` tokens and return 0.0, or take nothing and return the seconds to wait.

        The wait is exact: the same request made ``wait`` seconds later succeeds (if nobody
        else took tokens meanwhile). ``math.inf`` if ``cost > burst``.
        """

    def retry_after(self, cost: float = 1.0, now: float | None = None) -> float:
        """Seconds until ``cost`` tokens would be granted (0.0 if now; ``math.inf`` if
        ``cost > burst``). Takes nothing."""

    def remaining(self, now: float | None = None) -> float:
        """Tokens available now, between 0 and ``burst`` (e.g. for rate-limit headers)."""

    @property
    def rate(self) -> float:
        """Tokens per ``per`` seconds."""

    @property
    def per(self) -> float:
        """The period of ``rate``, in seconds."""

    @property
    def burst(self) -> float:
        """Maximum tokens at once."""

@final
class KeyedTokenBucket:
    """One GCRA token bucket per ``str`` key, in a fixed table of ``capacity`` slots.

    Every key gets its own ``rate`` / ``per`` / ``burst`` limit. Memory is bounded: a slot
    whose bucket has refilled completely is indistinguishable from a fresh bucket, so any key
    may take it over (idle keys are evicted for free, no sweeper). A key may use one of the
    16 slots following its home slot; when none of them is free the table **fails closed**:
    the request is refused, the wait returned is the time until the first of those slots
    frees up, and ``remaining`` is 0.0. Keys are compared by a 64-bit hash of ``hash(key)``.
    """

    def __new__(
        cls, rate: float, per: float = 1.0, burst: float | None = None, capacity: int = 4096
    ) -> KeyedTokenBucket: ...
    def try_acquire(self, key: str, cost: float = 1.0, now: float | None = None) -> bool:
        """Take ``cost`` tokens from ``key``'s bucket if available now; ``True`` if granted."""

    def acquire(self, key: str, cost: float = 1.0, now: float | None = None) -> float:
        """Take ``cost`` tokens from ``key``'s bucket and return 0.0, or take nothing and
        return the seconds to wait (``math.inf`` if ``cost > burst``)."""

    def retry_after(self, key: str, cost: float = 1.0, now: float | None = None) -> float:
        """Seconds until ``key`` could take ``cost`` tokens (0.0 if now; ``math.inf`` if
        ``cost > burst``). Takes nothing."""

    def remaining(self, key: str, now: float | None = None) -> float:
        """Tokens ``key`` could take now (``burst`` for an unseen key; 0.0 if the table has
        no room for it)."""

    def active_keys(self, now: float | None = None) -> int:
        """Number of keys whose bucket is not full at ``now`` (the occupied slots)."""

    def __len__(self) -> int:
        """``active_keys()`` at the current time."""

    @property
    def capacity(self) -> int:
        """Number of slots: the most keys that can be limited at once."""

    @property
    def rate(self) -> float:
        """Tokens per ``per`` seconds, per key."""

    @property
    def per(self) -> float:
        """The period of ``rate``, in seconds."""

    @property
    def burst(self) -> float:
        """Maximum tokens at once, per key."""

@final
class SlidingWindow:
    """Counts by outcome class and a latency histogram over the last ``window`` seconds.

    A ring of ``slots`` time slots (at most 3600, about 4 KiB each). Exact under
    concurrency: each counter carries its slot period and resets itself in the same
    compare-and-swap that increments it, so no record is lost at a slot boundary. The window
    is slot-granular: it covers between ``window - window/slots`` and ``window`` seconds.

    Latency quantiles come from log-linear buckets (16 per power of two) from 1.024 µs to
    73.3 min; a reported quantile is within **3.125 %** (1/32) of the true sample's value.
    Latencies below 1.024 µs read as 0.0, above 73.3 min as about 73 min.
    ``quantile(q)`` is the value of the sample of rank ``max(1, ceil(q * n))`` among the
    ``n`` in the window.
    """

    def __new__(cls, window: float = 60.0, slots: int = 60) -> SlidingWindow: ...
    def record(self, outcome: _Outcome, latency: float = 0.0, now: float | None = None) -> None:
        """Record one outcome with its latency in seconds (finite, >= 0)."""

    def counts(self, now: float | None = None) -> dict[str, int]:
        """Counts per outcome class in the window (all six names) plus ``"total"``."""

    def total(self, now: float | None = None) -> int:
        """Number of records in the window."""

    def error_rate(self, now: float | None = None, outcome: _Outcome | None = None) -> float:
        """Share of records that are not ``"success"`` (or, given ``outcome``, of that class);
        0.0 when the window is empty."""

    def quantile(self, q: float, now: float | None = None) -> float | None:
        """The ``q``-quantile of latency in seconds (``0 <= q <= 1``); ``None`` when empty."""

    def quantiles(self, now: float | None = None) -> tuple[float, float, float] | None:
        """``(p50, p95, p99)`` of latency in seconds in one pass; ``None`` when empty."""

    def snapshot(self, now: float | None = None) -> _WindowSnapshot:
        """``counts``, ``total``, ``error_rate``, ``p50``/``p95``/``p99``, ``window``,
        ``slots``."""

    @property
    def window(self) -> float:
        """The window length in seconds."""

    @property
    def slots(self) -> int:
        """The number of slots."""

@final
class CircuitBreaker:
    """A lock-free circuit breaker: closed -> open -> half-open -> closed.

    * closed: every call allowed; trips open when, over the sliding ``window``
      (``window_slots`` slots), at least ``minimum_calls`` calls were recorded of which a
      share of at least ``failure_rate_threshold`` failed, or after ``consecutive_failures``
      failures in a row (0 disables).
    * open: nothing allowed for ``min(open_base * 2**(trips-1), open_max) * (1 + j)``
      seconds, ``j`` in ``[-open_jitter, open_jitter)`` derived from a hash of
      ``(seed, trips)`` (``open_duration(trips)`` gives the exact value; pass ``seed`` for
      reproducible runs, by default each breaker gets its own). Outcomes recorded while open
      are ignored.
    * half-open (lazy: an open breaker whose time is up reads as ``"half_open"``): at most
      ``half_open_probes`` permits out at once (``allow()`` returning ``True`` *is* a permit,
      ``record`` returns it). ``half_open_successes`` successes close it with a fresh window;
      one failure re-opens it with ``trips + 1``. Permits not answered within
      ``probe_timeout`` seconds (default ``open_base``) are presumed lost and re-issued.
    * trips survive closing (a flapping upstream backs off longer each time) but restart at 1
      once the breaker has stayed closed for ``open_max`` seconds.
    * ``force_open`` / ``force_closed`` override everything until ``release``.

    ``"success"`` is a failure when ``slow_call_threshold`` is set and the latency exceeds it.
    The failure classes are ``failure_outcomes`` (default: every outcome but ``"success"``);
    an outcome outside it is ignored (not a call; in half-open it returns its permit).

    ``record`` returns the new state when that call caused a transition, else ``None``;
    ``transitions`` counts every transition.
    """

    def __new__(
        cls,
        *,
        failure_rate_threshold: float = 0.5,
        minimum_calls: int = 10,
        window: float = 60.0,
        window_slots: int = 12,
        consecutive_failures: int = 5,
        slow_call_threshold: float | None = None,
        open_base: float = 5.0,
        open_max: float = 300.0,
        open_jitter: float = 0.1,
        half_open_probes: int = 1,
        half_open_successes: int = 1,
        failure_outcomes: Iterable[_Outcome] | None = None,
        probe_timeout: float | None = None,
        seed: int | None = None,
    ) -> CircuitBreaker: ...
    def allow(self, now: float | None = None) -> bool:
        """May a call go ahead now? In half-open, ``True`` is a probe permit: record the
        outcome."""

    def record(
        self, outcome: _Outcome, latency: float = 0.0, now: float | None = None
    ) -> _State | None:
        """Record the outcome of a call (latency in seconds). Returns the new state if this
        call caused a transition, else ``None``."""

    @property
    def state(self) -> _State:
        """The state now."""

    def state_at(self, now: float | None = None) -> _State:
        """The state at ``now`` (an open breaker whose time is up reads as ``"half_open"``)."""

    @property
    def transitions(self) -> int:
        """Number of state transitions so far (poll it to notice transitions cheaply)."""

    def open_duration(self, trips: int) -> float:
        """The open time in seconds, jitter included, of the ``trips``-th trip."""

    def snapshot(self, now: float | None = None) -> _BreakerSnapshot:
        """State, ``since`` (monotonic seconds the state began; 0.0 if it never changed),
        trips, consecutive failures, failure rate / calls / failures in the window,
        ``open_until`` (``None`` unless open and not forced), ``forced``, half-open permits
        and successes, transitions."""

    def force_open(self, now: float | None = None) -> None:
        """Force the breaker open (``allow`` is ``False``) until ``release``."""

    def force_closed(self, now: float | None = None) -> None:
        """Force the breaker closed (``allow`` is ``True``; outcomes still counted) until
        ``release``."""

    def release(self, now: float | None = None) -> None:
        """Clear a forced state: back to closed with a fresh window (no-op when not forced)."""

@final
class SharedState:
    """State shared by every process that maps the same file (``serve --workers N``): rate
    limits (one GCRA word each) and breaker trips ("open until" words). ``slots`` must be the
    same in every process. Raises ``ValueError`` when the file cannot be mapped."""

    def __new__(cls, path: str, slots: int = 4096) -> SharedState: ...
    def bucket(
        self, name: str, rate: float, per: float = 1.0, burst: float | None = None
    ) -> SharedBucket: ...
    def trip(self, name: str, until: float) -> None: ...
    def open_until(self, name: str) -> float | None: ...
    def clear(self, name: str, until: float) -> None: ...
    def used(self) -> int: ...
    def join(self, pid: int) -> SharedMember:
        """Take part in in-flight counts as process ``pid``; ``ValueError`` when every member
        word is taken or the region is full."""

    def members(self) -> list[tuple[int, int]]:
        """The current members: ``(index, pid)`` each."""

    def evict(self, index: int, pid: int) -> bool:
        """Vacate member word ``index`` if ``pid`` holds it: its requests stop counting."""

    def in_flight(self, name: str) -> int:
        """Requests of ``name`` in flight across the members."""

    @property
    def path(self) -> str: ...

@final
class SharedBucket:
    """A rate limit held in a ``SharedState`` (``TokenBucket``'s hot-path methods)."""

    def acquire(self, cost: float = 1.0, now: float | None = None) -> float: ...
    def try_acquire(self, cost: float = 1.0, now: float | None = None) -> bool: ...
    def remaining(self, now: float | None = None) -> float: ...
    @property
    def rate(self) -> float: ...

@final
class SharedMember:
    """A process taking part in a ``SharedState``'s in-flight counts (``SharedState.join``)."""

    def acquire(self, name: str, limit: int) -> bool:
        """One more request of ``name`` in flight if fewer than ``limit`` are in flight across
        every member; whether it was let in. ``ValueError`` when the region is full or this
        member was evicted (or left)."""

    def release(self, name: str) -> None:
        """A request of ``name`` let in by ``acquire`` is over."""

    def leave(self) -> bool:
        """Stop taking part: this member's requests in flight stop counting."""

    @property
    def index(self) -> int: ...
    @property
    def pid(self) -> int: ...

def loud_spans(region: bytes, dialect: Literal["openai", "anthropic"], start: int = 0) -> list[int]:
    """The loud events of ``region[start:]`` (whole SSE events: it ends with ``b"\\n\\n"``)
    under the quiet rule of ``dialect`` (a format module's ``QUIET_DIALECT``), as flat offsets
    into ``region``: ``[begin, end, begin, end, ...]``, one pair per run of adjacent loud
    events, ascending.

    Events are cut as ``region.split(b"\\n\\n")`` cuts them (empty pieces skipped); an event
    is loud when the format's ``quiet_events`` says it is not quiet on its own. Bytes after
    the last ``\\n\\n`` are loud. ``ValueError`` for an unknown dialect.
    """

def iso_millis(epoch: float) -> str:
    """Epoch seconds as ISO 8601 UTC with milliseconds (``2026-06-05T15:08:12.345Z``), exactly
    as ``datetime.fromtimestamp(epoch, UTC)`` gives it cut to milliseconds (the fraction
    rounded to microseconds, half to even, then truncated). ``ValueError`` outside the years
    1-9999.
    """

@final
class SecretMask:
    """Known secret values masked in text, the one rule hedgerow masks them by (its logs,
    events, alerts and request-log lines): values of 4 bytes and more, the longest first where
    two start at the same place, each occurrence replaced by ``[REDACTED]``."""

    def __new__(cls, secrets: list[str]) -> SecretMask: ...
    @property
    def values(self) -> list[str]:
        """The values masked, longest first (shorter ones and repeats dropped)."""
    def mask(self, text: str) -> str:
        """``text`` with every secret masked; ``text`` itself when none occurs in it."""

@final
class RequestLines:
    """The request log's pending lines: ``add`` formats one request's JSON line into a buffer
    (on the event loop, no Python objects made), ``take`` hands the writer thread everything
    added so far as one ``bytes``, the config's secret values masked.

    Past ``max_pending`` lines not yet taken, ``add`` drops the line, counts it in
    ``dropped`` and returns ``False``.

    A line, fields in this order: ``ts`` (``at`` as ISO 8601), ``level`` (``warning`` when
    ``detail["status"] >= 500`` or ``detail["error"]`` is not ``None``, else ``info``),
    ``event`` (``"request"``), ``route``, ``deployment``, every item of ``detail`` as it is
    (``None``, ``bool``, ``int``, ``float``, ``str``; anything else as its ``str()``), and
    ``attempt_log``: one object per ``(deployment, outcome, error, status, latency)`` tuple of
    ``attempts`` (``outcome`` ``rejected`` for a success with an error, latency rounded to
    0.1 ms), or ``null`` when ``attempts`` is ``None``.
    """

    def __new__(cls, secrets: list[str] = ..., max_pending: int = 100_000) -> RequestLines: ...
    def add(
        self,
        at: float,
        route: str | None,
        deployment: str | None,
        detail: dict[str, Any],
        attempts: list[tuple[str | None, str, str | None, int | None, float]] | None,
    ) -> bool:
        """Add the line of one request; ``False`` when it was dropped. ``ValueError`` for a
        time outside the years 1-9999, ``TypeError`` for an attempt that is not a 5-tuple
        ending in a number; nothing is added then."""
    def take(self) -> bytes:
        """Everything added since the last ``take``, the secrets masked (``b""`` when
        nothing)."""
    @property
    def pending(self) -> int:
        """Lines added and not yet taken."""
    @property
    def dropped(self) -> int:
        """Lines dropped because ``max_pending`` were waiting."""
