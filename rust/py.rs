//! The PyO3 binding: thin wrappers that parse arguments, resolve `now` and call the pure core.
//!
//! Every class is `frozen` (no `&mut self`, no borrow flag) and all state is atomics, so the
//! objects are shared freely between threads, including on free-threaded CPython
//! (`gil_used = false`). Nothing here can panic on user input: every argument is validated
//! into an [`ArgError`], raised as `ValueError` naming the argument.

use std::time::Instant;

use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::{PyBool, PyBytes, PyDict, PyFloat, PyInt, PyList, PyString, PyTuple};

use crate::breaker::{Breaker, BreakerConfig, State};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, PoisonError};

use crate::bucket::{mix_key, wait_secs, Decision, Gcra, KeyedTokenBucket, TokenBucket};
use crate::clock::{self, ns_to_secs, resolve_now};
use crate::error::{non_negative, ArgError};
use crate::logline::{self, Secrets};
use crate::outcome::Outcome;
use crate::shared::{self, clear, gcra_acquire, trip, Member, SharedRegion};
use crate::sse::{self, Dialect};
use crate::window::SlidingWindow;

impl From<ArgError> for PyErr {
    fn from(e: ArgError) -> PyErr {
        PyValueError::new_err(e.0)
    }
}

#[inline]
fn outcome(s: &str) -> PyResult<Outcome> {
    Ok(Outcome::parse(s)?)
}

#[inline]
fn latency(l: f64) -> PyResult<f64> {
    Ok(non_negative("latency", l)?)
}

fn opt_secs(ns: Option<u64>) -> Option<f64> {
    ns.map(ns_to_secs)
}

/// Monotonic seconds now: the clock of ``time.monotonic()``, read without a Python call.
///
/// Every ``now`` argument in this module is a float on this clock; passing one explicitly
/// lets tests and simulations drive time.
#[pyfunction]
fn monotonic() -> f64 {
    ns_to_secs(clock::now_ns())
}

// ---------------------------------------------------------------------------------------
// TokenBucket

/// A GCRA token bucket: ``rate`` tokens per ``per`` seconds, at most ``burst`` at once.
///
/// ``TokenBucket(rate, per=1.0, burst=None)``; ``burst`` defaults to ``rate``. Costs are
/// weighted, so one bucket limits requests per minute (``cost=1``) or tokens per minute
/// (``TokenBucket(100_000, per=60)`` then ``try_acquire(cost=1234)``). The whole state is one
/// atomic word updated by compare-and-swap: safe to share between threads, never blocks.
///
/// Time: every ``now`` is monotonic seconds (``time.monotonic()`` / ``hedgerow.monotonic()``);
/// ``None`` reads the clock. The emission interval ``per / rate`` is kept as a whole number
/// of nanoseconds (so ``rate / per`` may be at most 1e9 per second); integer costs and
/// bursts are exact. A cost larger than ``burst`` can never be granted: ``acquire`` and
/// ``retry_after`` return ``math.inf`` for it.
///
/// Raises ``ValueError`` (naming the argument) for a rate, per or burst that is not a finite
/// number > 0.
#[pyclass(frozen, name = "TokenBucket", module = "hedgerow._core")]
pub struct PyTokenBucket {
    inner: TokenBucket,
}

#[pymethods]
impl PyTokenBucket {
    #[new]
    #[pyo3(signature = (rate, per = 1.0, burst = None))]
    fn new(rate: f64, per: f64, burst: Option<f64>) -> PyResult<Self> {
        Ok(PyTokenBucket {
            inner: TokenBucket::new(rate, per, burst)?,
        })
    }

    /// Take ``cost`` tokens if available now; ``True`` if granted (nothing is taken
    /// otherwise).
    #[pyo3(signature = (cost = 1.0, now = None))]
    fn try_acquire(&self, cost: f64, now: Option<f64>) -> PyResult<bool> {
        let inc = self.inner.gcra().cost_ns(cost)?;
        Ok(matches!(
            self.inner.acquire_ns(inc, resolve_now(now)?),
            Decision::Grant(_)
        ))
    }

    /// Take ``cost`` tokens if available and return 0.0, else take nothing and return the
    /// seconds to wait before the same request would succeed (``math.inf`` if
    /// ``cost > burst``). The router's hot-path call.
    #[pyo3(signature = (cost = 1.0, now = None))]
    fn acquire(&self, cost: f64, now: Option<f64>) -> PyResult<f64> {
        let inc = self.inner.gcra().cost_ns(cost)?;
        Ok(wait_secs(self.inner.acquire_ns(inc, resolve_now(now)?)))
    }

    /// Seconds until ``cost`` tokens would be granted (0.0 if now, ``math.inf`` if
    /// ``cost > burst``); takes nothing.
    #[pyo3(signature = (cost = 1.0, now = None))]
    fn retry_after(&self, cost: f64, now: Option<f64>) -> PyResult<f64> {
        let inc = self.inner.gcra().cost_ns(cost)?;
        Ok(wait_secs(self.inner.peek_ns(inc, resolve_now(now)?)))
    }

    /// Tokens available now (a float between 0 and ``burst``), e.g. for rate-limit headers.
    #[pyo3(signature = (now = None))]
    fn remaining(&self, now: Option<f64>) -> PyResult<f64> {
        Ok(self.inner.remaining(resolve_now(now)?))
    }

    /// Tokens per ``per`` seconds.
    #[getter]
    fn rate(&self) -> f64 {
        self.inner.gcra().rate()
    }

    /// The period of ``rate``, in seconds.
    #[getter]
    fn per(&self) -> f64 {
        self.inner.gcra().per()
    }

    /// Maximum tokens at once.
    #[getter]
    fn burst(&self) -> f64 {
        self.inner.gcra().burst()
    }

    fn __repr__(&self) -> String {
        let g = self.inner.gcra();
        format!(
            "TokenBucket(rate={:?}, per={:?}, burst={:?})",
            g.rate(),
            g.per(),
            g.burst()
        )
    }
}

// ---------------------------------------------------------------------------------------
// KeyedTokenBucket

/// One GCRA token bucket per key (``str``), in a fixed table of ``capacity`` slots.
///
/// ``KeyedTokenBucket(rate, per=1.0, burst=None, capacity=4096)``: every key gets its own
/// ``rate`` / ``per`` / ``burst`` limit. Memory is bounded: a slot whose bucket has refilled
/// completely is indistinguishable from a fresh one, so it is free for any key to take over
/// (idle keys are evicted for free). A key may use one of the 16 slots following its home
/// slot; when none of them is free the table **fails closed**: the request is refused and
/// the wait returned is the time until the first of those slots frees up (``remaining`` is
/// 0.0). Keys are compared by a 64-bit hash of ``hash(key)``.
///
/// Time: every ``now`` is monotonic seconds; ``None`` reads the clock.
#[pyclass(frozen, name = "KeyedTokenBucket", module = "hedgerow._core")]
pub struct PyKeyedTokenBucket {
    inner: KeyedTokenBucket,
}

#[inline]
fn key_hash(key: &Bound<'_, PyString>) -> PyResult<u64> {
    // Python caches a str's hash; reinterpreting the isize bits is intended.
    Ok(mix_key(key.hash()? as u64))
}

#[pymethods]
impl PyKeyedTokenBucket {
    #[new]
    #[pyo3(signature = (rate, per = 1.0, burst = None, capacity = 4096))]
    fn new(rate: f64, per: f64, burst: Option<f64>, capacity: i64) -> PyResult<Self> {
        Ok(PyKeyedTokenBucket {
            inner: KeyedTokenBucket::new(rate, per, burst, capacity)?,
        })
    }

    /// Take ``cost`` tokens from ``key``'s bucket if available now; ``True`` if granted.
    #[pyo3(signature = (key, cost = 1.0, now = None))]
    fn try_acquire(
        &self,
        key: &Bound<'_, PyString>,
        cost: f64,
        now: Option<f64>,
    ) -> PyResult<bool> {
        let inc = self.inner.gcra().cost_ns(cost)?;
        let d = self
            .inner
            .acquire_ns(key_hash(key)?, inc, resolve_now(now)?);
        Ok(matches!(d, Decision::Grant(_)))
    }

    /// Take ``cost`` tokens from ``key``'s bucket and return 0.0, or take nothing and return
    /// the seconds to wait (``math.inf`` if ``cost > burst``).
    #[pyo3(signature = (key, cost = 1.0, now = None))]
    fn acquire(&self, key: &Bound<'_, PyString>, cost: f64, now: Option<f64>) -> PyResult<f64> {
        let inc = self.inner.gcra().cost_ns(cost)?;
        Ok(wait_secs(self.inner.acquire_ns(
            key_hash(key)?,
            inc,
            resolve_now(now)?,
        )))
    }

    /// Seconds until ``key`` could take ``cost`` tokens (0.0 if now, ``math.inf`` if
    /// ``cost > burst``); takes nothing.
    #[pyo3(signature = (key, cost = 1.0, now = None))]
    fn retry_after(&self, key: &Bound<'_, PyString>, cost: f64, now: Option<f64>) -> PyResult<f64> {
        let inc = self.inner.gcra().cost_ns(cost)?;
        Ok(wait_secs(self.inner.peek_ns(
            key_hash(key)?,
            inc,
            resolve_now(now)?,
        )))
    }

    /// Tokens ``key`` could take now (``burst`` for an unseen key, 0.0 if the table has no
    /// room for it).
    #[pyo3(signature = (key, now = None))]
    fn remaining(&self, key: &Bound<'_, PyString>, now: Option<f64>) -> PyResult<f64> {
        Ok(self.inner.remaining(key_hash(key)?, resolve_now(now)?))
    }

    /// Number of keys whose bucket is not full at ``now`` (the occupied slots).
    #[pyo3(signature = (now = None))]
    fn active_keys(&self, now: Option<f64>) -> PyResult<usize> {
        Ok(self.inner.active_keys(resolve_now(now)?))
    }

    /// ``active_keys()`` at the current time.
    fn __len__(&self) -> usize {
        self.inner.active_keys(clock::now_ns())
    }

    /// Number of slots (the most keys that can be limited at once).
    #[getter]
    fn capacity(&self) -> usize {
        self.inner.capacity()
    }

    /// Tokens per ``per`` seconds, per key.
    #[getter]
    fn rate(&self) -> f64 {
        self.inner.gcra().rate()
    }

    /// The period of ``rate``, in seconds.
    #[getter]
    fn per(&self) -> f64 {
        self.inner.gcra().per()
    }

    /// Maximum tokens at once, per key.
    #[getter]
    fn burst(&self) -> f64 {
        self.inner.gcra().burst()
    }

    fn __repr__(&self) -> String {
        let g = self.inner.gcra();
        format!(
            "KeyedTokenBucket(rate={:?}, per={:?}, burst={:?}, capacity={})",
            g.rate(),
            g.per(),
            g.burst(),
            self.inner.capacity()
        )
    }
}

// ---------------------------------------------------------------------------------------
// SlidingWindow

/// Counts by outcome class and a latency histogram over the last ``window`` seconds.
///
/// ``SlidingWindow(window=60.0, slots=60)``: a ring of ``slots`` time slots, each holding
/// counts of the six outcome classes (``"success"``, ``"5xx"``, ``"529"``, ``"429"``,
/// ``"timeout"``, ``"other"``) and a latency histogram, all atomics. It is exact under
/// concurrency: every counter carries its slot period and resets itself in the same
/// compare-and-swap that increments it, so no record is lost at a slot boundary. The window
/// is slot-granular: it covers between ``window - window/slots`` and ``window`` seconds.
///
/// Latency quantiles come from log-linear buckets (16 per power of two) from 1.024 µs to
/// 73.3 min: a reported quantile is within 3.125 % (1/32) of the true sample's value
/// (latencies below 1.024 µs read as 0.0, above 73.3 min as ~73 min). ``quantile(q)`` is the
/// value of the sample of rank ``max(1, ceil(q * n))`` of the ``n`` in the window.
///
/// Time: every ``now`` is monotonic seconds; ``None`` reads the clock. ``slots`` is at most
/// 3600; each slot takes about 4 KiB.
#[pyclass(frozen, name = "SlidingWindow", module = "hedgerow._core")]
pub struct PySlidingWindow {
    inner: SlidingWindow,
}

fn counts_dict<'py>(py: Python<'py>, c: &[u64; Outcome::COUNT]) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    for o in Outcome::ALL {
        d.set_item(o.name(), c[o.index()])?;
    }
    d.set_item("total", c.iter().sum::<u64>())?;
    Ok(d)
}

#[pymethods]
impl PySlidingWindow {
    #[new]
    #[pyo3(signature = (window = 60.0, slots = 60))]
    fn new(window: f64, slots: i64) -> PyResult<Self> {
        Ok(PySlidingWindow {
            inner: SlidingWindow::new(window, slots)?,
        })
    }

    /// Record one outcome (one of the six class names) with its latency in seconds.
    #[pyo3(signature = (outcome, latency = 0.0, now = None))]
    fn record(&self, outcome: &str, latency: f64, now: Option<f64>) -> PyResult<()> {
        let o = self::outcome(outcome)?;
        let l = self::latency(latency)?;
        self.inner.record(o, l, resolve_now(now)?);
        Ok(())
    }

    /// Counts per outcome class in the window, plus ``"total"``.
    #[pyo3(signature = (now = None))]
    fn counts<'py>(&self, py: Python<'py>, now: Option<f64>) -> PyResult<Bound<'py, PyDict>> {
        counts_dict(py, &self.inner.counts(resolve_now(now)?))
    }

    /// Number of records in the window.
    #[pyo3(signature = (now = None))]
    fn total(&self, now: Option<f64>) -> PyResult<u64> {
        Ok(self.inner.total(resolve_now(now)?))
    }

    /// Share of records that are not ``"success"`` (or, with ``outcome``, that are of that
    /// class); 0.0 when the window is empty.
    #[pyo3(signature = (now = None, outcome = None))]
    fn error_rate(&self, now: Option<f64>, outcome: Option<&str>) -> PyResult<f64> {
        let class = outcome.map(self::outcome).transpose()?;
        Ok(self.inner.error_rate(resolve_now(now)?, class))
    }

    /// The ``q``-quantile of latency in seconds (``0 <= q <= 1``), ``None`` when empty.
    #[pyo3(signature = (q, now = None))]
    fn quantile(&self, q: f64, now: Option<f64>) -> PyResult<Option<f64>> {
        if !(0.0..=1.0).contains(&q) {
            return Err(ArgError(format!(
                "q must be between 0 and 1, got {}",
                crate::error::fmt_f64(q)
            ))
            .into());
        }
        Ok(self
            .inner
            .quantiles_of(&[q], resolve_now(now)?)
            .map(|v| v[0]))
    }

    /// ``(p50, p95, p99)`` of latency in seconds, ``None`` when empty (one pass).
    #[pyo3(signature = (now = None))]
    fn quantiles(&self, now: Option<f64>) -> PyResult<Option<(f64, f64, f64)>> {
        Ok(self
            .inner
            .quantiles_of(&[0.5, 0.95, 0.99], resolve_now(now)?)
            .map(|v| (v[0], v[1], v[2])))
    }

    /// Everything at once: ``counts`` (with ``"total"``), ``total``, ``error_rate``,
    /// ``p50``/``p95``/``p99`` (``None`` when empty), ``window`` and ``slots``.
    #[pyo3(signature = (now = None))]
    fn snapshot<'py>(&self, py: Python<'py>, now: Option<f64>) -> PyResult<Bound<'py, PyDict>> {
        let now = resolve_now(now)?;
        let c = self.inner.counts(now);
        let total: u64 = c.iter().sum();
        let d = PyDict::new(py);
        d.set_item("counts", counts_dict(py, &c)?)?;
        d.set_item("total", total)?;
        let rate = if total == 0 {
            0.0
        } else {
            (total - c[0]) as f64 / total as f64
        };
        d.set_item("error_rate", rate)?;
        let q = self.inner.quantiles_of(&[0.5, 0.95, 0.99], now);
        for (i, name) in ["p50", "p95", "p99"].into_iter().enumerate() {
            d.set_item(name, q.as_ref().map(|v| v[i]))?;
        }
        d.set_item("window", self.inner.window())?;
        d.set_item("slots", self.inner.slots())?;
        Ok(d)
    }

    /// The window length in seconds.
    #[getter]
    fn window(&self) -> f64 {
        self.inner.window()
    }

    /// The number of slots.
    #[getter]
    fn slots(&self) -> usize {
        self.inner.slots()
    }

    fn __repr__(&self) -> String {
        format!(
            "SlidingWindow(window={:?}, slots={})",
            self.inner.window(),
            self.inner.slots()
        )
    }
}

// ---------------------------------------------------------------------------------------
// CircuitBreaker

/// A lock-free circuit breaker: closed -> open -> half-open -> closed.
///
/// * closed: every call allowed; trips open when, over the sliding ``window`` (``window_slots``
///   slots), at least ``minimum_calls`` calls were recorded and a share of at least
///   ``failure_rate_threshold`` failed, or after ``consecutive_failures`` failures in a row
///   (0 disables).
/// * open: nothing allowed for ``min(open_base * 2**(trips-1), open_max) * (1 + j)`` seconds,
///   ``j`` in ``[-open_jitter, open_jitter)`` derived from a hash of ``(seed, trips)``
///   (``open_duration(trips)`` tells the exact value; pass ``seed`` for reproducible
///   runs, by default every breaker gets its own). Outcomes recorded while open are ignored.
/// * half-open (lazy: an open breaker whose time is up reads as ``"half_open"``): at most
///   ``half_open_probes`` permits out at once (``allow()`` returning ``True`` *is* a permit;
///   ``record`` returns it). ``half_open_successes`` successes close it, with a fresh window;
///   one failure re-opens it with ``trips + 1``. Permits not answered within
///   ``probe_timeout`` seconds (default ``open_base``) are presumed lost and re-issued.
/// * trips survive closing (a flapping upstream backs off longer each time) but restart at 1
///   once the breaker has stayed closed for ``open_max`` seconds.
/// * ``force_open`` / ``force_closed`` override everything until ``release`` (which returns
///   to closed with a fresh window).
///
/// Outcomes: ``"success"`` (a failure if ``slow_call_threshold`` is set and the latency
/// exceeds it), ``"5xx"``, ``"529"``, ``"429"``, ``"timeout"``, ``"other"``. The failure
/// classes are ``failure_outcomes`` (default: all but ``"success"``); an outcome outside it
/// is ignored (not a call; in half-open it returns its permit).
///
/// Transitions: ``record`` returns the new state when that call caused a transition, else
/// ``None``; ``transitions`` counts every transition (including half-open being entered by
/// ``allow`` and forced changes).
///
/// Time: every ``now`` is monotonic seconds; ``None`` reads the clock. The whole control
/// state is one 128-bit atomic word changed by compare-and-swap.
#[pyclass(frozen, name = "CircuitBreaker", module = "hedgerow._core")]
pub struct PyCircuitBreaker {
    inner: Breaker,
}

fn outcome_list(obj: &Bound<'_, PyAny>) -> PyResult<Vec<Outcome>> {
    if obj.is_instance_of::<PyString>() {
        return Err(ArgError(
            "failure_outcomes must be a collection of outcome names, not a str".to_owned(),
        )
        .into());
    }
    let mut out = Vec::new();
    for item in obj.try_iter()? {
        let s: String = item?.extract()?;
        out.push(Outcome::parse_named("failure_outcomes", &s)?);
    }
    Ok(out)
}

#[pymethods]
impl PyCircuitBreaker {
    #[new]
    #[pyo3(signature = (
        *,
        failure_rate_threshold = 0.5,
        minimum_calls = 10,
        window = 60.0,
        window_slots = 12,
        consecutive_failures = 5,
        slow_call_threshold = None,
        open_base = 5.0,
        open_max = 300.0,
        open_jitter = 0.1,
        half_open_probes = 1,
        half_open_successes = 1,
        failure_outcomes = None,
        probe_timeout = None,
        seed = None,
    ))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        failure_rate_threshold: f64,
        minimum_calls: i64,
        window: f64,
        window_slots: i64,
        consecutive_failures: i64,
        slow_call_threshold: Option<f64>,
        open_base: f64,
        open_max: f64,
        open_jitter: f64,
        half_open_probes: i64,
        half_open_successes: i64,
        failure_outcomes: Option<&Bound<'_, PyAny>>,
        probe_timeout: Option<f64>,
        seed: Option<i64>,
    ) -> PyResult<Self> {
        let cfg = BreakerConfig {
            failure_rate_threshold,
            minimum_calls,
            window,
            window_slots,
            consecutive_failures,
            slow_call_threshold,
            open_base,
            open_max,
            open_jitter,
            half_open_probes,
            half_open_successes,
            failure_outcomes: failure_outcomes.map(outcome_list).transpose()?,
            probe_timeout,
            // Any i64 is a fine seed; negative ones wrap.
            seed: seed.map(|s| s as u64),
        };
        Ok(PyCircuitBreaker {
            inner: Breaker::new(&cfg)?,
        })
    }

    /// May a call go ahead now? In half-open, ``True`` is a probe permit: record the outcome.
    #[pyo3(signature = (now = None))]
    fn allow(&self, now: Option<f64>) -> PyResult<bool> {
        Ok(self.inner.allow(resolve_now(now)?))
    }

    /// Record the outcome of a call (latency in seconds). Returns the new state name if this
    /// call caused a transition, else ``None``.
    #[pyo3(signature = (outcome, latency = 0.0, now = None))]
    fn record(
        &self,
        outcome: &str,
        latency: f64,
        now: Option<f64>,
    ) -> PyResult<Option<&'static str>> {
        let o = self::outcome(outcome)?;
        let l = self::latency(latency)?;
        Ok(self.inner.record(o, l, resolve_now(now)?).map(State::name))
    }

    /// The state now: ``"closed"``, ``"open"`` or ``"half_open"``.
    #[getter]
    fn state(&self) -> &'static str {
        self.inner.state_at(clock::now_ns()).name()
    }

    /// The state at ``now`` (an open breaker whose time is up reads as ``"half_open"``).
    #[pyo3(signature = (now = None))]
    fn state_at(&self, now: Option<f64>) -> PyResult<&'static str> {
        Ok(self.inner.state_at(resolve_now(now)?).name())
    }

    /// Number of state transitions so far (poll it to notice transitions cheaply).
    #[getter]
    fn transitions(&self) -> u64 {
        self.inner.transitions()
    }

    /// The open time in seconds, jitter included, of the ``trips``-th trip.
    fn open_duration(&self, trips: i64) -> PyResult<f64> {
        let t = crate::error::int_in("trips", trips, 1, i64::from(crate::breaker::MAX_TRIPS))?;
        Ok(ns_to_secs(self.inner.open_ns(t as u16)))
    }

    /// A dict: ``state``, ``since`` (monotonic seconds the state began; for half-open, the
    /// current probe round; 0.0 if it never changed), ``trips``, ``consecutive_failures``, ``failure_rate``, ``calls``
    /// and ``failures`` (in the window), ``open_until`` (``None`` unless open and not
    /// forced), ``forced`` (``None``, ``"open"`` or ``"closed"``), ``half_open_in_flight``,
    /// ``half_open_successes``, ``transitions``.
    #[pyo3(signature = (now = None))]
    fn snapshot<'py>(&self, py: Python<'py>, now: Option<f64>) -> PyResult<Bound<'py, PyDict>> {
        let s = self.inner.snapshot(resolve_now(now)?);
        let d = PyDict::new(py);
        d.set_item("state", s.state.name())?;
        d.set_item("since", ns_to_secs(s.since_ns))?;
        d.set_item("trips", s.trips)?;
        d.set_item("consecutive_failures", s.consecutive_failures)?;
        d.set_item("failure_rate", s.failure_rate)?;
        d.set_item("calls", s.calls)?;
        d.set_item("failures", s.failures)?;
        d.set_item("open_until", opt_secs(s.open_until_ns))?;
        d.set_item("forced", s.forced.name())?;
        d.set_item("half_open_in_flight", s.half_open_in_flight)?;
        d.set_item("half_open_successes", s.half_open_successes)?;
        d.set_item("transitions", s.transitions)?;
        Ok(d)
    }

    /// Force the breaker open (``allow`` is ``False``) until ``release``.
    #[pyo3(signature = (now = None))]
    fn force_open(&self, now: Option<f64>) -> PyResult<()> {
        self.inner.force_open(resolve_now(now)?);
        Ok(())
    }

    /// Force the breaker closed (``allow`` is ``True``; outcomes still counted) until
    /// ``release``.
    #[pyo3(signature = (now = None))]
    fn force_closed(&self, now: Option<f64>) -> PyResult<()> {
        self.inner.force_closed(resolve_now(now)?);
        Ok(())
    }

    /// Clear a forced state: back to closed with a fresh window (no-op when not forced).
    #[pyo3(signature = (now = None))]
    fn release(&self, now: Option<f64>) -> PyResult<()> {
        self.inner.release(resolve_now(now)?);
        Ok(())
    }

    fn __repr__(&self) -> String {
        format!(
            "<CircuitBreaker {}>",
            self.inner.state_at(clock::now_ns()).name()
        )
    }
}

// ---------------------------------------------------------------------------------------
// SharedState: the cross-process region of `hedgerow serve --workers N`

/// State shared by every process that opens the same file (``hedgerow serve --workers N``):
/// rate limits (GCRA, one atomic word each) and breaker trips ("open until" words).
///
/// ``SharedState(path, slots=4096)`` maps ``path`` (created when missing; put it under
/// ``/dev/shm``). Every process must pass the same ``slots``. Raises ``ValueError`` when the
/// file cannot be opened or mapped, or is not a region of that size.
#[pyclass(frozen, name = "SharedState", module = "hedgerow._core")]
pub struct PySharedState {
    inner: Arc<SharedRegion>,
    path: String,
}

#[pymethods]
impl PySharedState {
    #[new]
    #[pyo3(signature = (path, slots = 4096))]
    fn new(path: &str, slots: i64) -> PyResult<Self> {
        let slots = usize::try_from(slots)
            .map_err(|_| PyValueError::new_err(format!("slots must be > 0, got {slots}")))?;
        let inner = SharedRegion::open(std::path::Path::new(path), slots)
            .map_err(|e| PyValueError::new_err(e.0))?;
        Ok(PySharedState {
            inner: Arc::new(inner),
            path: path.to_owned(),
        })
    }

    /// A rate limit named ``name`` held in the region: ``rate`` per ``per`` seconds, ``burst``
    /// at once (as ``TokenBucket``). Raises ``ValueError`` when the region is full.
    #[pyo3(signature = (name, rate, per = 1.0, burst = None))]
    fn bucket(
        &self,
        name: &str,
        rate: f64,
        per: f64,
        burst: Option<f64>,
    ) -> PyResult<PySharedBucket> {
        let gcra = Gcra::new(rate, per, burst)?;
        let key = shared::key_hash("bucket", name);
        if self.inner.slot(key).is_none() {
            return Err(PyValueError::new_err("shared region is full"));
        }
        Ok(PySharedBucket {
            region: Arc::clone(&self.inner),
            key,
            gcra,
        })
    }

    /// Record that ``name``'s breaker is open until ``until`` (monotonic seconds); a later
    /// trip already recorded stands.
    fn trip(&self, name: &str, until: f64) -> PyResult<()> {
        let until = resolve_now(Some(until))?;
        if let Some(word) = self.inner.slot(shared::key_hash("trip", name)) {
            trip(word, until);
        }
        Ok(())
    }

    /// When ``name``'s latest recorded trip ends (monotonic seconds); ``None`` if none.
    fn open_until(&self, name: &str) -> Option<f64> {
        let word = self.inner.slot(shared::key_hash("trip", name))?;
        match word.load(Ordering::Acquire) {
            0 => None,
            ns => Some(ns_to_secs(ns)),
        }
    }

    /// Forget ``name``'s trip if it ends no later than ``until`` (a probe succeeded).
    fn clear(&self, name: &str, until: f64) -> PyResult<()> {
        let until = resolve_now(Some(until))?;
        if let Some(word) = self.inner.slot(shared::key_hash("trip", name)) {
            clear(word, until);
        }
        Ok(())
    }

    /// Slots in use.
    fn used(&self) -> usize {
        self.inner.used()
    }

    /// Take part in in-flight counts as process ``pid``: a ``SharedMember``. Raises
    /// ``ValueError`` when every member word is taken or the region is full.
    fn join(&self, pid: i64) -> PyResult<PySharedMember> {
        let pid = u32::try_from(pid)
            .ok()
            .filter(|p| *p > 0)
            .ok_or_else(|| PyValueError::new_err(format!("pid must be in 1..2**32, got {pid}")))?;
        let member = self
            .inner
            .join(pid)
            .ok_or_else(|| PyValueError::new_err("no free member word in the shared region"))?;
        Ok(PySharedMember {
            region: Arc::clone(&self.inner),
            member,
        })
    }

    /// The current members: ``(index, pid)`` each.
    fn members(&self) -> Vec<(usize, u32)> {
        self.inner.members()
    }

    /// Vacate member word ``index`` if ``pid`` holds it (the process is gone): its requests
    /// in flight stop counting. Whether it was vacated.
    fn evict(&self, index: i64, pid: i64) -> bool {
        match (usize::try_from(index), u32::try_from(pid)) {
            (Ok(index), Ok(pid)) => self.inner.evict(index, pid),
            _ => false,
        }
    }

    /// Requests of ``name`` in flight across the members.
    fn in_flight(&self, name: &str) -> u64 {
        self.inner.in_flight(shared::key_hash("inflight", name))
    }

    /// The region's file.
    #[getter]
    fn path(&self) -> &str {
        &self.path
    }
}

/// A rate limit in a ``SharedState``: ``TokenBucket``'s hot-path methods on a shared word.
#[pyclass(frozen, name = "SharedBucket", module = "hedgerow._core")]
pub struct PySharedBucket {
    region: Arc<SharedRegion>,
    key: u64,
    gcra: Gcra,
}

impl PySharedBucket {
    fn decide(&self, cost: f64, now: Option<f64>) -> PyResult<Decision> {
        let inc = self.gcra.cost_ns(cost)?;
        let now = resolve_now(now)?;
        match self.region.slot(self.key) {
            Some(word) => Ok(gcra_acquire(word, &self.gcra, inc, now)),
            None => Err(PyValueError::new_err("shared region is full")),
        }
    }
}

#[pymethods]
impl PySharedBucket {
    /// As ``TokenBucket.acquire``: 0.0 when granted, else seconds to wait.
    #[pyo3(signature = (cost = 1.0, now = None))]
    fn acquire(&self, cost: f64, now: Option<f64>) -> PyResult<f64> {
        Ok(wait_secs(self.decide(cost, now)?))
    }

    /// As ``TokenBucket.try_acquire``.
    #[pyo3(signature = (cost = 1.0, now = None))]
    fn try_acquire(&self, cost: f64, now: Option<f64>) -> PyResult<bool> {
        Ok(matches!(self.decide(cost, now)?, Decision::Grant(_)))
    }

    /// Tokens available now (as ``TokenBucket.remaining``; 0.0 if the region is full).
    #[pyo3(signature = (now = None))]
    fn remaining(&self, now: Option<f64>) -> PyResult<f64> {
        let now = resolve_now(now)?;
        Ok(match self.region.slot(self.key) {
            Some(word) => self.gcra.remaining(word.load(Ordering::Relaxed), now),
            None => 0.0,
        })
    }

    /// Tokens per ``per`` seconds.
    #[getter]
    fn rate(&self) -> f64 {
        self.gcra.rate()
    }
}

/// A process taking part in a ``SharedState``'s in-flight counts (``SharedState.join``).
#[pyclass(frozen, name = "SharedMember", module = "hedgerow._core")]
pub struct PySharedMember {
    region: Arc<SharedRegion>,
    member: Member,
}

#[pymethods]
impl PySharedMember {
    /// One more request of ``name`` in flight, if fewer than ``limit`` are in flight across
    /// every member; whether it was let in. Raises ``ValueError`` when the region is full or
    /// this member was evicted (or left): the caller counts locally instead.
    fn acquire(&self, name: &str, limit: i64) -> PyResult<bool> {
        let limit = u32::try_from(limit.max(0)).unwrap_or(u32::MAX);
        self.region
            .acquire_in_flight(shared::key_hash("inflight", name), &self.member, limit)
            .ok_or_else(|| {
                PyValueError::new_err("shared region is full, or this member was evicted")
            })
    }

    /// A request of ``name`` let in by ``acquire`` is over.
    fn release(&self, name: &str) {
        self.region
            .release_in_flight(shared::key_hash("inflight", name), &self.member);
    }

    /// Stop taking part: this member's requests in flight stop counting.
    fn leave(&self) -> bool {
        self.region.evict(self.member.index, self.member.pid)
    }

    /// The member word this process holds.
    #[getter]
    fn index(&self) -> usize {
        self.member.index
    }

    /// The process id it joined as.
    #[getter]
    fn pid(&self) -> u32 {
        self.member.pid
    }
}

// ---------------------------------------------------------------------------------------
// The passthrough scanner

/// The loud events of ``region[start:]`` (a run of whole SSE events: it ends with
/// ``b"\n\n"``) under the quiet rule of ``dialect`` (``"openai"`` or ``"anthropic"``, a
/// format module's ``QUIET_DIALECT``), as a flat list of offsets into ``region``:
/// ``[begin, end, begin, end, ...]``, one pair per run of adjacent loud events, ascending.
///
/// Events are cut as ``region.split(b"\n\n")`` cuts them (empty pieces skipped); an event
/// is loud when the format's ``quiet_events`` says it is not quiet on its own. Bytes after
/// the last ``\n\n`` are loud. ``ValueError`` for an unknown dialect.
#[pyfunction]
#[pyo3(signature = (region, dialect, start = 0))]
fn loud_spans<'py>(
    py: Python<'py>,
    region: &Bound<'py, PyBytes>,
    dialect: &str,
    start: usize,
) -> PyResult<Bound<'py, PyList>> {
    let dialect = Dialect::parse(dialect)?;
    let runs = sse::loud_runs(region.as_bytes(), start, dialect);
    PyList::new(py, runs.iter().flat_map(|&(begin, end)| [begin, end]))
}

// ---------------------------------------------------------------------------------------
// The request log's lines

/// Epoch seconds as ISO 8601 UTC with milliseconds (``2026-06-05T15:08:12.345Z``), exactly as
/// ``datetime.fromtimestamp(epoch, UTC)`` gives it cut to milliseconds (the fraction rounded
/// to microseconds, half to even, then truncated). ``ValueError`` outside the years 1-9999.
#[pyfunction]
fn iso_millis(epoch: f64) -> PyResult<String> {
    let mut out = Vec::with_capacity(24);
    logline::push_iso_millis(&mut out, epoch)?;
    // Only ASCII digits and punctuation were written.
    Ok(String::from_utf8(out).unwrap_or_default())
}

/// Appends a Python value as JSON: ``None``, ``bool``, ``int``, ``float`` and ``str`` as
/// themselves, anything else as its ``str()`` (what ``orjson.dumps(default=str)`` does).
fn push_value(out: &mut Vec<u8>, value: &Bound<'_, PyAny>) -> PyResult<()> {
    if value.is_none() {
        out.extend_from_slice(b"null");
    } else if let Ok(text) = value.cast::<PyString>() {
        logline::push_str(out, &text.to_string_lossy());
    } else if let Ok(flag) = value.cast::<PyBool>() {
        out.extend_from_slice(if flag.is_true() { b"true" } else { b"false" });
    } else if value.cast::<PyInt>().is_ok() {
        match value.extract::<i64>() {
            Ok(n) => logline::push_i64(out, n),
            // Past 64 bits: the decimal digits are still a JSON number.
            Err(_) => out.extend_from_slice(value.str()?.to_string_lossy().as_bytes()),
        }
    } else if let Ok(number) = value.cast::<PyFloat>() {
        logline::push_f64(out, number.value());
    } else {
        logline::push_str(out, &value.str()?.to_string_lossy());
    }
    Ok(())
}

/// Appends ``"key":`` to a JSON object being written.
fn push_key(out: &mut Vec<u8>, key: &str) {
    logline::push_str(out, key);
    out.push(b':');
}

/// One ``attempt_log`` entry from ``(deployment, outcome, error, status, latency)``.
fn push_attempt(out: &mut Vec<u8>, attempt: &Bound<'_, PyAny>) -> PyResult<()> {
    let attempt = attempt.cast::<PyTuple>()?;
    if attempt.len() != 5 {
        return Err(pyo3::exceptions::PyTypeError::new_err(format!(
            "an attempt is (deployment, outcome, error, status, latency), got {} items",
            attempt.len()
        )));
    }
    let error = attempt.get_item(2)?;
    let outcome = attempt.get_item(1)?;
    out.extend_from_slice(b"{\"deployment\":");
    push_value(out, &attempt.get_item(0)?)?;
    out.extend_from_slice(b",\"outcome\":");
    // Failed for the request's own fault (bad request, context window): not the upstream's.
    if !error.is_none() && outcome.cast::<PyString>().is_ok_and(|o| o == "success") {
        logline::push_str(out, "rejected");
    } else {
        push_value(out, &outcome)?;
    }
    out.extend_from_slice(b",\"error\":");
    push_value(out, &error)?;
    out.extend_from_slice(b",\"status\":");
    push_value(out, &attempt.get_item(3)?)?;
    out.extend_from_slice(b",\"latency\":");
    logline::push_f64(out, logline::round4(attempt.get_item(4)?.extract::<f64>()?));
    out.push(b'}');
    Ok(())
}

struct PendingLines {
    buffer: Vec<u8>,
    lines: usize,
    dropped: u64,
}

/// ``SecretMask(secrets)``: known secret values masked in text, the one rule hedgerow
/// masks them by (its logs, events, alerts and request-log lines): values of 4 bytes and
/// more, the longest first where two start at the same place, each occurrence replaced by
/// ``[REDACTED]``.
#[pyclass(frozen, name = "SecretMask", module = "hedgerow._core")]
struct PySecretMask {
    secrets: Secrets,
}

#[pymethods]
impl PySecretMask {
    #[new]
    fn new(secrets: Vec<String>) -> Self {
        PySecretMask {
            secrets: Secrets::new(secrets.into_iter().map(String::into_bytes)),
        }
    }

    /// The values masked, longest first (shorter ones and repeats dropped).
    #[getter]
    fn values(&self) -> Vec<String> {
        self.secrets
            .values()
            .map(|v| String::from_utf8_lossy(v).into_owned())
            .collect()
    }

    /// ``text`` with every secret masked; ``text`` itself when none occurs in it.
    fn mask<'py>(&self, text: &Bound<'py, PyString>) -> Bound<'py, PyString> {
        // Text that is no UTF-8 (lone surrogates) is searched as its lossy form: it is only
        // replaced when a secret was found in it.
        let utf8 = text.to_string_lossy();
        match self.secrets.mask(utf8.as_bytes()) {
            None => text.clone(),
            Some(masked) => PyString::new(text.py(), &String::from_utf8_lossy(&masked)),
        }
    }
}

/// The request log's pending lines: ``add`` formats one request's JSON line into a buffer
/// (on the event loop, no Python objects made), ``take`` hands the writer thread everything
/// added so far as one ``bytes``, the config's secret values masked.
///
/// ``RequestLines(secrets=[], max_pending=100_000)``: past ``max_pending`` lines not yet
/// taken, ``add`` drops the line, counts it in ``dropped`` and returns ``False``.
///
/// A line, fields in this order: ``ts`` (``at`` as ISO 8601), ``level`` (``warning`` when
/// ``detail["status"] >= 500`` or ``detail["error"]`` is not ``None``, else ``info``),
/// ``event`` (``"request"``), ``route``, ``deployment``, every item of ``detail`` as it is,
/// and ``attempt_log``: one object per ``(deployment, outcome, error, status, latency)``
/// tuple of ``attempts`` (``outcome`` ``rejected`` for a success with an error, latency
/// rounded to 0.1 ms), or ``null`` when ``attempts`` is ``None``.
#[pyclass(frozen, name = "RequestLines", module = "hedgerow._core")]
struct PyRequestLines {
    secrets: Secrets,
    max_pending: usize,
    // Held only to append a finished line or to swap the buffer out, never across a call
    // into Python (which could hand the interpreter to the writer thread, waiting on it).
    pending: Mutex<PendingLines>,
}

impl PyRequestLines {
    fn lock(&self) -> std::sync::MutexGuard<'_, PendingLines> {
        self.pending.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[pymethods]
impl PyRequestLines {
    #[new]
    #[pyo3(signature = (secrets = Vec::new(), max_pending = 100_000))]
    fn new(secrets: Vec<String>, max_pending: usize) -> Self {
        PyRequestLines {
            secrets: Secrets::new(secrets.into_iter().map(String::into_bytes)),
            max_pending,
            pending: Mutex::new(PendingLines {
                buffer: Vec::new(),
                lines: 0,
                dropped: 0,
            }),
        }
    }

    /// Add the line of one request (see the class docstring); ``False`` when it was
    /// dropped. ``ValueError`` for a time outside the years 1-9999, ``TypeError`` for an
    /// attempt that is not a 5-tuple ending in a number; nothing is added then.
    fn add(
        &self,
        at: f64,
        route: Option<&str>,
        deployment: Option<&str>,
        detail: &Bound<'_, PyDict>,
        attempts: Option<&Bound<'_, PyList>>,
    ) -> PyResult<bool> {
        {
            let mut pending = self.lock();
            if pending.lines >= self.max_pending {
                pending.dropped += 1;
                return Ok(false);
            }
        }
        let py = detail.py();
        let status = detail.get_item(pyo3::intern!(py, "status"))?;
        let failed = status.is_some_and(|s| s.extract::<i64>().is_ok_and(|s| s >= 500))
            || detail
                .get_item(pyo3::intern!(py, "error"))?
                .is_some_and(|e| !e.is_none());
        let mut line = Vec::with_capacity(512);
        line.extend_from_slice(b"{\"ts\":\"");
        logline::push_iso_millis(&mut line, at)?;
        line.extend_from_slice(if failed {
            b"\",\"level\":\"warning\",\"event\":\"request\",\"route\":"
        } else {
            b"\",\"level\":\"info\",\"event\":\"request\",\"route\":"
        });
        match route {
            Some(route) => logline::push_str(&mut line, route),
            None => line.extend_from_slice(b"null"),
        }
        line.extend_from_slice(b",\"deployment\":");
        match deployment {
            Some(deployment) => logline::push_str(&mut line, deployment),
            None => line.extend_from_slice(b"null"),
        }
        for (key, value) in detail.iter() {
            line.push(b',');
            match key.cast::<PyString>() {
                Ok(key) => push_key(&mut line, &key.to_string_lossy()),
                Err(_) => push_key(&mut line, &key.str()?.to_string_lossy()),
            }
            push_value(&mut line, &value)?;
        }
        line.extend_from_slice(b",\"attempt_log\":");
        match attempts {
            None => line.extend_from_slice(b"null"),
            Some(attempts) => {
                line.push(b'[');
                for (i, attempt) in attempts.iter().enumerate() {
                    if i > 0 {
                        line.push(b',');
                    }
                    push_attempt(&mut line, &attempt)?;
                }
                line.push(b']');
            }
        }
        line.extend_from_slice(b"}\n");
        let mut pending = self.lock();
        pending.buffer.extend_from_slice(&line);
        pending.lines += 1;
        Ok(true)
    }

    /// Everything added since the last ``take``, the secrets masked (``b""`` when nothing).
    fn take<'py>(&self, py: Python<'py>) -> Bound<'py, PyBytes> {
        let data = {
            let mut pending = self.lock();
            pending.lines = 0;
            std::mem::take(&mut pending.buffer)
        };
        let masked = py.detach(|| self.secrets.mask(&data));
        PyBytes::new(py, masked.as_deref().unwrap_or(&data))
    }

    /// Lines added and not yet taken.
    #[getter]
    fn pending(&self) -> usize {
        self.lock().lines
    }

    /// Lines dropped because ``max_pending`` were waiting.
    #[getter]
    fn dropped(&self) -> u64 {
        self.lock().dropped
    }
}

/// hedgerow's native resilience core: ``CircuitBreaker``, ``TokenBucket``,
/// ``KeyedTokenBucket``, ``SlidingWindow`` and ``monotonic`` (import them from ``hedgerow``),
/// ``SharedState`` / ``SharedBucket``, the state the workers of one host share, and
/// ``loud_spans``, the passthrough scanner's event classifier.
#[pymodule(gil_used = false)]
fn _core(m: &Bound<'_, PyModule>) -> PyResult<()> {
    // Anchor the clock to time.monotonic_ns(), read between two Instant readings.
    let monotonic_ns = m.py().import("time")?.getattr("monotonic_ns")?;
    let before = Instant::now();
    let base: u64 = monotonic_ns.call0()?.extract()?;
    let after = Instant::now();
    clock::anchor(before, base, after);

    m.add_function(wrap_pyfunction!(monotonic, m)?)?;
    m.add_function(wrap_pyfunction!(loud_spans, m)?)?;
    m.add_function(wrap_pyfunction!(iso_millis, m)?)?;
    m.add_class::<PyRequestLines>()?;
    m.add_class::<PySecretMask>()?;
    m.add_class::<PyCircuitBreaker>()?;
    m.add_class::<PyTokenBucket>()?;
    m.add_class::<PyKeyedTokenBucket>()?;
    m.add_class::<PySlidingWindow>()?;
    m.add_class::<PySharedState>()?;
    m.add_class::<PySharedBucket>()?;
    m.add_class::<PySharedMember>()?;
    Ok(())
}
