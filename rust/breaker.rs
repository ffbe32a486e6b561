//! [`Breaker`]: a lock-free circuit breaker, closed -> open -> half-open -> closed.
//!
//! # States
//! * **closed**: every call is allowed. Outcomes go into a sliding window (a [`Ring`] of
//!   `window_slots` slots with a calls and a failures counter) and a consecutive-failures
//!   counter. It **trips** (-> open) when, on a failure, either `consecutive_failures`
//!   failures in a row were seen (0 disables), or the window holds >= `minimum_calls` calls
//!   of which a share >= `failure_rate_threshold` failed.
//! * **open**: no call is allowed for `min(open_base * 2^(trips-1), open_max) * (1 + j)`
//!   seconds, where `j` in `[-open_jitter, +open_jitter)` is deterministic: a hash of
//!   `(seed, trips)`, so a test that passes `seed` knows it exactly and any test can bound it.
//!   Outcomes recorded while open (late answers to calls made while closed) are ignored.
//! * **half-open**: evaluated lazily, an open breaker whose time has elapsed *reads* as
//!   half-open; the first `allow` materialises it. At most `half_open_probes` permits are out
//!   at once; each recorded outcome returns one. `half_open_successes` successes close it
//!   (window cleared, consecutive count cleared); one failure re-opens it with `trips + 1`.
//!   A permit not answered within `probe_timeout` seconds (the caller was cancelled and never
//!   recorded) is presumed lost: once all permits are out and the round is that old, `allow`
//!   starts a new round instead of leaving the breaker stuck half-open.
//! * **trips decay**: the trip count survives closing (a flapping upstream keeps backing off
//!   longer), but a breaker that stays closed for `open_max` seconds starts again at trip 1.
//! * **forced** (`force_open` / `force_closed`): an operator override; outcomes are still
//!   counted while forced closed, no transition happens until `release`, which returns to
//!   closed with a fresh window.
//!
//! # Outcomes
//! `success` is a success unless `slow_call_threshold` is set and the latency exceeds it
//! (then it is a failure). Other outcomes are failures if they are in `failure_outcomes`
//! (default: all of them) and otherwise **ignored** (not counted as calls; in half-open they
//! return their permit).
//!
//! # Noticing transitions
//! `record` returns the new state when *that* call caused a transition (else `None`), and a
//! `transitions` counter counts every transition (including the materialisation of
//! half-open by `allow` and forced changes), so a router can poll one integer.
//!
//! # Lock-free layout and memory ordering
//! The whole control state (state, forced flag, trips, half-open permits and successes,
//! window generation, and `since`, the nanosecond time the state began) is one 128-bit word,
//! changed only by compare-and-swap, so every transition is a single atomic step and two
//! threads can never both win the same transition. Loads are `Acquire` and the CAS is
//! `AcqRel` so that a thread that sees a transition also sees the counter updates its winner
//! made before it; the window and the consecutive counter are separate atomics that feed the
//! trip *decision* (advisory: a failure recorded concurrently with a trip may or may not be
//! counted before it). Closing bumps the window generation, which shifts the window's
//! logical epochs by a full window, so the old counts fall out at once (see [`Ring`]).

use std::sync::atomic::{AtomicU64, Ordering};

use portable_atomic::AtomicU128;

use crate::clock::{ns_to_secs, secs_to_ns};
use crate::error::{fmt_f64, int_in, non_negative, positive, ArgError};
use crate::outcome::Outcome;
use crate::ring::Ring;

/// The observable state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    Closed,
    Open,
    HalfOpen,
}

impl State {
    /// `"closed"`, `"open"` or `"half_open"`.
    pub fn name(self) -> &'static str {
        match self {
            State::Closed => "closed",
            State::Open => "open",
            State::HalfOpen => "half_open",
        }
    }

    fn bits(self) -> u64 {
        match self {
            State::Closed => 0,
            State::Open => 1,
            State::HalfOpen => 2,
        }
    }

    fn from_bits(b: u64) -> State {
        match b & 3 {
            1 => State::Open,
            2 => State::HalfOpen,
            _ => State::Closed,
        }
    }
}

/// An operator override.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Forced {
    None,
    Open,
    Closed,
}

impl Forced {
    /// `None`, `"open"` or `"closed"`.
    pub fn name(self) -> Option<&'static str> {
        match self {
            Forced::None => None,
            Forced::Open => Some("open"),
            Forced::Closed => Some("closed"),
        }
    }

    fn bits(self) -> u64 {
        match self {
            Forced::None => 0,
            Forced::Open => 1,
            Forced::Closed => 2,
        }
    }

    fn from_bits(b: u64) -> Forced {
        match b & 3 {
            1 => Forced::Open,
            2 => Forced::Closed,
            _ => Forced::None,
        }
    }
}

/// Trip counts saturate here (12 bits).
pub const MAX_TRIPS: u16 = 4095;

/// The control word, unpacked. Packed as `since (64) | gen (32) | successes (8) |
/// in_flight (8) | trips (12) | forced (2) | state (2)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Ctl {
    since: u64,
    state: State,
    forced: Forced,
    trips: u16,
    in_flight: u8,
    successes: u8,
    gen: u32,
}

impl Ctl {
    fn pack(self) -> u128 {
        let hi = self.state.bits()
            | (self.forced.bits() << 2)
            | (u64::from(self.trips.min(MAX_TRIPS)) << 4)
            | (u64::from(self.in_flight) << 16)
            | (u64::from(self.successes) << 24)
            | (u64::from(self.gen) << 32);
        (u128::from(hi) << 64) | u128::from(self.since)
    }

    fn unpack(w: u128) -> Ctl {
        let hi = (w >> 64) as u64;
        Ctl {
            since: w as u64,
            state: State::from_bits(hi),
            forced: Forced::from_bits(hi >> 2),
            trips: ((hi >> 4) & 0xfff) as u16,
            in_flight: (hi >> 16) as u8,
            successes: (hi >> 24) as u8,
            gen: (hi >> 32) as u32,
        }
    }
}

/// Constructor arguments, as given by the caller (validated by [`Breaker::new`]).
#[derive(Debug, Clone)]
pub struct BreakerConfig {
    pub failure_rate_threshold: f64,
    pub minimum_calls: i64,
    pub window: f64,
    pub window_slots: i64,
    pub consecutive_failures: i64,
    pub slow_call_threshold: Option<f64>,
    pub open_base: f64,
    pub open_max: f64,
    pub open_jitter: f64,
    pub half_open_probes: i64,
    pub half_open_successes: i64,
    /// `None` = every outcome but success.
    pub failure_outcomes: Option<Vec<Outcome>>,
    /// `None` = `open_base`.
    pub probe_timeout: Option<f64>,
    /// `None` = a per-instance seed (jitter differs between breakers).
    pub seed: Option<u64>,
}

impl Default for BreakerConfig {
    fn default() -> Self {
        BreakerConfig {
            failure_rate_threshold: 0.5,
            minimum_calls: 10,
            window: 60.0,
            window_slots: 12,
            consecutive_failures: 5,
            slow_call_threshold: None,
            open_base: 5.0,
            open_max: 300.0,
            open_jitter: 0.1,
            half_open_probes: 1,
            half_open_successes: 1,
            failure_outcomes: None,
            probe_timeout: None,
            seed: None,
        }
    }
}

/// Validated parameters.
#[derive(Debug, Clone)]
struct Params {
    threshold: f64,
    minimum_calls: u64,
    consecutive: u64,
    slow_secs: Option<f64>,
    open_base: f64,
    open_max: f64,
    open_max_ns: u64,
    jitter: f64,
    probes: u8,
    successes: u8,
    failure_mask: u8,
    probe_timeout_ns: u64,
    seed: u64,
}

/// A point-in-time view of a breaker.
#[derive(Debug, Clone, PartialEq)]
pub struct Snapshot {
    pub state: State,
    pub since_ns: u64,
    pub trips: u16,
    pub consecutive_failures: u64,
    pub failure_rate: f64,
    pub calls: u64,
    pub failures: u64,
    pub open_until_ns: Option<u64>,
    pub forced: Forced,
    pub half_open_in_flight: u8,
    pub half_open_successes: u8,
    pub transitions: u64,
}

const CALLS: usize = 0;
const FAILURES: usize = 1;

static INSTANCES: AtomicU64 = AtomicU64::new(0);

#[inline]
fn splitmix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The lock-free circuit breaker. See the module docs.
#[derive(Debug)]
pub struct Breaker {
    p: Params,
    ctl: AtomicU128,
    ring: Ring,
    consecutive: AtomicU64,
    transitions: AtomicU64,
}

impl Breaker {
    /// Validates `cfg` and builds a closed breaker (`since` = 0: it has been closed since the
    /// beginning of time, which also makes its first trip a first trip).
    pub fn new(cfg: &BreakerConfig) -> Result<Breaker, ArgError> {
        let threshold = cfg.failure_rate_threshold;
        if !(threshold > 0.0 && threshold <= 1.0) {
            return Err(ArgError(format!(
                "failure_rate_threshold must be in (0, 1], got {}",
                fmt_f64(threshold)
            )));
        }
        let minimum_calls = int_in("minimum_calls", cfg.minimum_calls, 1, i64::MAX)?;
        let window = positive("window", cfg.window)?;
        let slots = int_in(
            "window_slots",
            cfg.window_slots,
            1,
            crate::window::MAX_SLOTS,
        )?;
        let slot_ns = secs_to_ns(window) / slots;
        if slot_ns == 0 {
            return Err(ArgError(format!(
                "window must be at least window_slots nanoseconds, got {}",
                fmt_f64(window)
            )));
        }
        let consecutive = int_in(
            "consecutive_failures",
            cfg.consecutive_failures,
            0,
            i64::MAX,
        )?;
        let slow_secs = match cfg.slow_call_threshold {
            None => None,
            Some(s) => Some(positive("slow_call_threshold", s)?),
        };
        let open_base = positive("open_base", cfg.open_base)?;
        let open_max = positive("open_max", cfg.open_max)?;
        if open_max < open_base {
            return Err(ArgError(format!(
                "open_max must be >= open_base ({}), got {}",
                fmt_f64(open_base),
                fmt_f64(open_max)
            )));
        }
        let jitter = non_negative("open_jitter", cfg.open_jitter)?;
        if jitter >= 1.0 {
            return Err(ArgError(format!(
                "open_jitter must be in [0, 1), got {}",
                fmt_f64(jitter)
            )));
        }
        let probes = int_in("half_open_probes", cfg.half_open_probes, 1, 255)? as u8;
        let successes = int_in("half_open_successes", cfg.half_open_successes, 1, 255)? as u8;
        let failure_mask = match &cfg.failure_outcomes {
            None => Outcome::ALL[1..].iter().fold(0, |m, o| m | o.bit()),
            Some(list) => {
                let mut m = 0u8;
                for o in list {
                    if *o == Outcome::Success {
                        return Err(ArgError(
                            "failure_outcomes must not contain 'success'".to_owned(),
                        ));
                    }
                    m |= o.bit();
                }
                m
            }
        };
        let probe_timeout = positive("probe_timeout", cfg.probe_timeout.unwrap_or(open_base))?;
        let seed = cfg.seed.unwrap_or_else(|| {
            splitmix(INSTANCES.fetch_add(1, Ordering::Relaxed) ^ crate::clock::now_ns())
        });
        let init = Ctl {
            since: 0,
            state: State::Closed,
            forced: Forced::None,
            trips: 0,
            in_flight: 0,
            successes: 0,
            gen: 0,
        };
        Ok(Breaker {
            p: Params {
                threshold,
                minimum_calls,
                consecutive,
                slow_secs,
                open_base,
                open_max,
                open_max_ns: secs_to_ns(open_max),
                jitter,
                probes,
                successes,
                failure_mask,
                probe_timeout_ns: secs_to_ns(probe_timeout),
                seed,
            },
            ctl: AtomicU128::new(init.pack()),
            ring: Ring::new(slot_ns, slots as usize, 2),
            consecutive: AtomicU64::new(0),
            transitions: AtomicU64::new(0),
        })
    }

    /// The jitter seed in use.
    pub fn seed(&self) -> u64 {
        self.p.seed
    }

    /// Open time of the `trips`-th trip, before jitter, in seconds.
    pub fn base_open_secs(&self, trips: u16) -> f64 {
        let doublings = i32::from(trips.max(1) - 1);
        (self.p.open_base * 2f64.powi(doublings)).min(self.p.open_max)
    }

    /// Open time of the `trips`-th trip, jitter included, in nanoseconds.
    pub fn open_ns(&self, trips: u16) -> u64 {
        let h = splitmix(self.p.seed ^ splitmix(u64::from(trips)));
        let u = (h >> 11) as f64 / (1u64 << 53) as f64 * 2.0 - 1.0; // [-1, 1)
        secs_to_ns(self.base_open_secs(trips) * (1.0 + self.p.jitter * u))
    }

    #[inline]
    fn load(&self) -> Ctl {
        Ctl::unpack(self.ctl.load(Ordering::Acquire))
    }

    #[inline]
    fn cas(&self, cur: Ctl, next: Ctl) -> Result<(), Ctl> {
        self.ctl
            .compare_exchange(cur.pack(), next.pack(), Ordering::AcqRel, Ordering::Acquire)
            .map(|_| ())
            .map_err(Ctl::unpack)
    }

    #[inline]
    fn logical_epoch(&self, gen: u32, now: u64) -> u64 {
        self.ring
            .epoch_of(now)
            .saturating_add(u64::from(gen) * self.ring.slots() as u64)
    }

    /// The state `c` shows at `now`, and its open deadline if (non-forced) open.
    #[inline]
    fn view(&self, c: &Ctl, now: u64) -> (State, Option<u64>) {
        match c.forced {
            Forced::Open => return (State::Open, None),
            Forced::Closed => return (State::Closed, None),
            Forced::None => {}
        }
        match c.state {
            State::Open => {
                let until = c.since.saturating_add(self.open_ns(c.trips));
                if now >= until {
                    (State::HalfOpen, Some(until))
                } else {
                    (State::Open, Some(until))
                }
            }
            s => (s, None),
        }
    }

    /// The state at `now` (lazy: an open breaker whose time is up reads as half-open).
    pub fn state_at(&self, now: u64) -> State {
        self.view(&self.load(), now).0
    }

    /// Transitions so far.
    pub fn transitions(&self) -> u64 {
        self.transitions.load(Ordering::Relaxed)
    }

    #[inline]
    fn transitioned(&self) {
        self.transitions.fetch_add(1, Ordering::Relaxed);
    }

    /// May a call go ahead at `now`? In half-open a `true` is a probe permit: the caller
    /// must `record` the outcome (or the permit is presumed lost after `probe_timeout`).
    #[inline]
    pub fn allow(&self, now: u64) -> bool {
        let mut c = self.load();
        loop {
            match c.forced {
                Forced::Open => return false,
                Forced::Closed => return true,
                Forced::None => {}
            }
            let next = match c.state {
                State::Closed => return true,
                State::Open => {
                    if now < c.since.saturating_add(self.open_ns(c.trips)) {
                        return false;
                    }
                    Ctl {
                        since: now,
                        state: State::HalfOpen,
                        in_flight: 1,
                        successes: 0,
                        ..c
                    }
                }
                State::HalfOpen => {
                    if c.in_flight < self.p.probes {
                        Ctl {
                            in_flight: c.in_flight + 1,
                            ..c
                        }
                    } else if now >= c.since.saturating_add(self.p.probe_timeout_ns) {
                        // Every permit is out and the round is older than probe_timeout: the
                        // permits are presumed lost; start a new round.
                        Ctl {
                            since: now,
                            in_flight: 1,
                            ..c
                        }
                    } else {
                        return false;
                    }
                }
            };
            match self.cas(c, next) {
                Ok(()) => {
                    if c.state == State::Open {
                        self.transitioned();
                    }
                    return true;
                }
                Err(actual) => c = actual,
            }
        }
    }

    /// Classifies an outcome: `Some(failed)` if it counts, `None` if ignored.
    #[inline]
    fn classify(&self, outcome: Outcome, latency_secs: f64) -> Option<bool> {
        if outcome == Outcome::Success {
            Some(self.p.slow_secs.is_some_and(|s| latency_secs > s))
        } else if self.p.failure_mask & outcome.bit() != 0 {
            Some(true)
        } else {
            None
        }
    }

    #[inline]
    fn count(&self, gen: u32, failed: bool, now: u64) {
        let e = self.logical_epoch(gen, now);
        if let Some(idx) = self.ring.claim(e) {
            self.ring.bump(idx, e, CALLS, 1);
            if failed {
                self.ring.bump(idx, e, FAILURES, 1);
            }
        }
        if failed {
            self.consecutive.fetch_add(1, Ordering::AcqRel);
        } else {
            self.consecutive.store(0, Ordering::Release);
        }
    }

    /// Calls and failures in the window of generation `gen` at `now`.
    fn window_counts(&self, gen: u32, now: u64) -> (u64, u64) {
        let e = self.logical_epoch(gen, now);
        self.ring.sum_pair(e, 0, CALLS, FAILURES)
    }

    /// Records the outcome of a call (latency in seconds, validated by the caller). Returns
    /// the new state if this call caused a transition.
    pub fn record(&self, outcome: Outcome, latency_secs: f64, now: u64) -> Option<State> {
        let class = self.classify(outcome, latency_secs);
        let mut c = self.load();
        loop {
            match (c.forced, c.state) {
                (Forced::Open, _) => return None,
                (Forced::Closed, _) => {
                    if let Some(failed) = class {
                        self.count(c.gen, failed, now);
                    }
                    return None;
                }
                (Forced::None, State::Open) => return None,
                (Forced::None, State::Closed) => {
                    let failed = class?;
                    self.count(c.gen, failed, now);
                    if !failed {
                        return None;
                    }
                    return self.maybe_trip(c, now);
                }
                (Forced::None, State::HalfOpen) => {
                    let released = c.in_flight.saturating_sub(1);
                    let next = match class {
                        None => Ctl {
                            in_flight: released,
                            ..c
                        },
                        Some(true) => Ctl {
                            since: now,
                            state: State::Open,
                            trips: (c.trips + 1).min(MAX_TRIPS),
                            in_flight: 0,
                            successes: 0,
                            ..c
                        },
                        Some(false) if c.successes + 1 >= self.p.successes => Ctl {
                            since: now,
                            state: State::Closed,
                            in_flight: 0,
                            successes: 0,
                            gen: c.gen.wrapping_add(1),
                            ..c
                        },
                        Some(false) => Ctl {
                            in_flight: released,
                            successes: c.successes + 1,
                            ..c
                        },
                    };
                    match self.cas(c, next) {
                        Ok(()) if next.state != c.state => {
                            self.consecutive.store(0, Ordering::Release);
                            self.transitioned();
                            return Some(next.state);
                        }
                        Ok(()) => return None,
                        Err(actual) => c = actual,
                    }
                }
            }
        }
    }

    /// After a failure while closed: trips if a threshold is reached.
    fn maybe_trip(&self, mut c: Ctl, now: u64) -> Option<State> {
        loop {
            let consec = self.consecutive.load(Ordering::Acquire);
            let by_consecutive = self.p.consecutive > 0 && consec >= self.p.consecutive;
            let trip = by_consecutive || {
                let (calls, failures) = self.window_counts(c.gen, now);
                calls >= self.p.minimum_calls && failures as f64 >= self.p.threshold * calls as f64
            };
            if !trip {
                return None;
            }
            // Trips decay: closed for open_max seconds means this is a first trip again.
            let trips = if now.saturating_sub(c.since) >= self.p.open_max_ns {
                1
            } else {
                (c.trips + 1).min(MAX_TRIPS)
            };
            let next = Ctl {
                since: now,
                state: State::Open,
                trips,
                in_flight: 0,
                successes: 0,
                ..c
            };
            match self.cas(c, next) {
                Ok(()) => {
                    self.consecutive.store(0, Ordering::Release);
                    self.transitioned();
                    return Some(State::Open);
                }
                Err(actual) if actual.state == State::Closed && actual.forced == Forced::None => {
                    c = actual;
                }
                Err(_) => return None, // someone else moved it on
            }
        }
    }

    fn set(&self, now: u64, f: impl Fn(Ctl) -> Option<Ctl>) {
        let mut c = self.load();
        loop {
            let Some(next) = f(c) else { return };
            match self.cas(c, next) {
                Ok(()) => {
                    if self.view(&c, now).0 != self.view(&next, now).0 {
                        self.transitioned();
                    }
                    if next.state == State::Closed {
                        self.consecutive.store(0, Ordering::Release);
                    }
                    return;
                }
                Err(actual) => c = actual,
            }
        }
    }

    /// Forces the breaker open (no call allowed) until [`Breaker::release`].
    pub fn force_open(&self, now: u64) {
        self.set(now, |c| {
            (c.forced != Forced::Open).then_some(Ctl {
                since: now,
                state: State::Open,
                forced: Forced::Open,
                in_flight: 0,
                successes: 0,
                ..c
            })
        });
    }

    /// Forces the breaker closed (every call allowed) until [`Breaker::release`].
    pub fn force_closed(&self, now: u64) {
        self.set(now, |c| {
            (c.forced != Forced::Closed).then_some(Ctl {
                since: now,
                state: State::Closed,
                forced: Forced::Closed,
                in_flight: 0,
                successes: 0,
                ..c
            })
        });
    }

    /// Clears a forced state: back to closed with a fresh window (no-op if not forced).
    pub fn release(&self, now: u64) {
        self.set(now, |c| {
            (c.forced != Forced::None).then_some(Ctl {
                since: now,
                state: State::Closed,
                forced: Forced::None,
                in_flight: 0,
                successes: 0,
                gen: c.gen.wrapping_add(1),
                ..c
            })
        });
    }

    /// A point-in-time view at `now`.
    pub fn snapshot(&self, now: u64) -> Snapshot {
        let c = self.load();
        let (state, until) = self.view(&c, now);
        let (calls, failures) = self.window_counts(c.gen, now);
        let since = match (state, until) {
            (State::HalfOpen, Some(u)) => u, // lazily half-open: it began when open ended
            _ => c.since,
        };
        Snapshot {
            state,
            since_ns: since,
            trips: c.trips,
            consecutive_failures: self.consecutive.load(Ordering::Acquire),
            failure_rate: if calls == 0 {
                0.0
            } else {
                failures as f64 / calls as f64
            },
            calls,
            failures,
            open_until_ns: if state == State::Open { until } else { None },
            forced: c.forced,
            half_open_in_flight: if c.state == State::HalfOpen {
                c.in_flight
            } else {
                0
            },
            half_open_successes: if c.state == State::HalfOpen {
                c.successes
            } else {
                0
            },
            transitions: self.transitions(),
        }
    }

    /// Seconds view of the configured base open time (for docs/tests).
    pub fn open_base_secs(&self) -> f64 {
        self.p.open_base
    }

    /// Seconds view of `since` of a snapshot.
    pub fn secs(ns: u64) -> f64 {
        ns_to_secs(ns)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::sync::{Arc, Barrier};

    const S: u64 = 1_000_000_000;
    const T0: u64 = 1_000 * S;

    fn cfg() -> BreakerConfig {
        BreakerConfig {
            seed: Some(7),
            ..BreakerConfig::default()
        }
    }

    fn breaker(c: BreakerConfig) -> Breaker {
        Breaker::new(&c).unwrap()
    }

    #[test]
    fn ctl_round_trips() {
        let c = Ctl {
            since: u64::MAX - 3,
            state: State::HalfOpen,
            forced: Forced::Closed,
            trips: MAX_TRIPS,
            in_flight: 255,
            successes: 17,
            gen: u32::MAX,
        };
        assert_eq!(Ctl::unpack(c.pack()), c);
    }

    #[test]
    fn validates_arguments() {
        let bad = |f: fn(&mut BreakerConfig), name: &str| {
            let mut c = cfg();
            f(&mut c);
            let e = Breaker::new(&c).expect_err("must fail");
            assert!(e.0.starts_with(name), "{name}: {e}");
        };
        bad(
            |c| c.failure_rate_threshold = 0.0,
            "failure_rate_threshold ",
        );
        bad(
            |c| c.failure_rate_threshold = 1.5,
            "failure_rate_threshold ",
        );
        bad(
            |c| c.failure_rate_threshold = f64::NAN,
            "failure_rate_threshold ",
        );
        bad(|c| c.minimum_calls = 0, "minimum_calls ");
        bad(|c| c.window = 0.0, "window ");
        bad(|c| c.window_slots = 0, "window_slots ");
        bad(|c| c.consecutive_failures = -1, "consecutive_failures ");
        bad(
            |c| c.slow_call_threshold = Some(-1.0),
            "slow_call_threshold ",
        );
        bad(|c| c.open_base = 0.0, "open_base ");
        bad(|c| c.open_max = 1.0, "open_max ");
        bad(|c| c.open_jitter = 1.0, "open_jitter ");
        bad(|c| c.half_open_probes = 0, "half_open_probes ");
        bad(|c| c.half_open_successes = 256, "half_open_successes ");
        bad(
            |c| c.failure_outcomes = Some(vec![Outcome::Success]),
            "failure_outcomes ",
        );
        bad(|c| c.probe_timeout = Some(0.0), "probe_timeout ");
    }

    #[test]
    fn trips_on_failure_rate_once_minimum_calls_reached() {
        let b = breaker(BreakerConfig {
            consecutive_failures: 0,
            ..cfg()
        });
        // 5 failures out of 9: not enough calls yet.
        for i in 0..9 {
            let o = if i % 2 == 0 {
                Outcome::Http5xx
            } else {
                Outcome::Success
            };
            assert_eq!(b.record(o, 0.1, T0 + i * S), None);
        }
        assert_eq!(b.state_at(T0 + 9 * S), State::Closed);
        // 10th call, a failure: 6/10 >= 0.5.
        assert_eq!(
            b.record(Outcome::Timeout, 0.1, T0 + 9 * S),
            Some(State::Open)
        );
        assert!(!b.allow(T0 + 9 * S));
        assert_eq!(b.transitions(), 1);
        let s = b.snapshot(T0 + 9 * S);
        assert_eq!(s.trips, 1);
        assert_eq!(s.since_ns, T0 + 9 * S);
    }

    #[test]
    fn open_time_grows_with_trips_and_is_bounded() {
        let b = breaker(BreakerConfig {
            open_jitter: 0.1,
            ..cfg()
        });
        for trips in 1..=20u16 {
            let base = b.base_open_secs(trips);
            assert_eq!(base, (5.0 * 2f64.powi(i32::from(trips) - 1)).min(300.0));
            let got = ns_to_secs(b.open_ns(trips));
            assert!(
                got >= base * 0.9 - 1e-9 && got <= base * 1.1 + 1e-9,
                "{trips}: {got}"
            );
        }
        // Deterministic per seed, different across seeds.
        let other = breaker(BreakerConfig {
            seed: Some(8),
            ..cfg()
        });
        assert_eq!(b.open_ns(3), breaker(cfg()).open_ns(3));
        assert_ne!(b.open_ns(3), other.open_ns(3));
    }

    #[test]
    fn full_cycle_with_probes() {
        let b = breaker(BreakerConfig {
            half_open_probes: 2,
            half_open_successes: 2,
            open_jitter: 0.0,
            ..cfg()
        });
        let mut now = T0;
        for _ in 0..4 {
            assert_eq!(b.record(Outcome::Http529, 0.0, now), None);
        }
        assert_eq!(b.record(Outcome::Http529, 0.0, now), Some(State::Open));
        now += 5 * S - 1;
        assert_eq!(b.state_at(now), State::Open);
        assert!(!b.allow(now));
        now += 1;
        assert_eq!(b.state_at(now), State::HalfOpen);
        assert!(b.allow(now));
        assert!(b.allow(now));
        assert!(!b.allow(now), "only two probes");
        assert_eq!(b.record(Outcome::Success, 0.1, now), None);
        assert!(b.allow(now), "a returned permit can be reused");
        assert_eq!(b.record(Outcome::Success, 0.1, now), Some(State::Closed));
        assert_eq!(b.state_at(now), State::Closed);
        assert_eq!(b.snapshot(now).calls, 0, "window reset on close");
        // Trip again soon after: open twice as long (trips kept).
        for _ in 0..5 {
            b.record(Outcome::Other, 0.0, now);
        }
        assert_eq!(b.snapshot(now).trips, 2);
        assert_eq!(b.snapshot(now).open_until_ns, Some(now + 10 * S));
        // Probe fails: re-open with trips 3 -> 20 s.
        now += 10 * S;
        assert!(b.allow(now));
        assert_eq!(b.record(Outcome::Http5xx, 0.0, now), Some(State::Open));
        assert_eq!(b.snapshot(now).open_until_ns, Some(now + 20 * S));
    }

    #[test]
    fn trips_decay_after_open_max_closed() {
        let b = breaker(BreakerConfig {
            open_jitter: 0.0,
            ..cfg()
        });
        let mut now = T0;
        for _ in 0..5 {
            b.record(Outcome::Http5xx, 0.0, now);
        }
        now += 5 * S;
        assert!(b.allow(now));
        b.record(Outcome::Success, 0.0, now);
        now += 301 * S; // closed longer than open_max
        for _ in 0..5 {
            b.record(Outcome::Http5xx, 0.0, now);
        }
        let s = b.snapshot(now);
        assert_eq!((s.state, s.trips), (State::Open, 1));
    }

    #[test]
    fn slow_success_and_ignored_outcomes() {
        let b = breaker(BreakerConfig {
            slow_call_threshold: Some(2.0),
            failure_outcomes: Some(vec![Outcome::Http5xx]),
            consecutive_failures: 2,
            ..cfg()
        });
        assert_eq!(b.record(Outcome::Http429, 0.0, T0), None);
        assert_eq!(b.snapshot(T0).calls, 0, "429 ignored");
        assert_eq!(b.record(Outcome::Success, 2.5, T0), None);
        assert_eq!(b.snapshot(T0).consecutive_failures, 1);
        assert_eq!(
            b.record(Outcome::Success, 2.0, T0),
            None,
            "not slower than threshold"
        );
        assert_eq!(b.snapshot(T0).consecutive_failures, 0);
        b.record(Outcome::Success, 3.0, T0);
        assert_eq!(b.record(Outcome::Http5xx, 0.0, T0), Some(State::Open));
    }

    #[test]
    fn lost_probe_permits_are_reissued_after_probe_timeout() {
        let b = breaker(BreakerConfig {
            open_jitter: 0.0,
            probe_timeout: Some(30.0),
            ..cfg()
        });
        for _ in 0..5 {
            b.record(Outcome::Http5xx, 0.0, T0);
        }
        let t = T0 + 5 * S;
        assert!(b.allow(t));
        assert!(!b.allow(t + 29 * S));
        assert!(b.allow(t + 30 * S));
        assert!(!b.allow(t + 30 * S));
    }

    #[test]
    fn forced_states() {
        let b = breaker(cfg());
        b.force_open(T0);
        assert!(!b.allow(T0));
        assert_eq!(
            b.state_at(T0 + 1000 * S),
            State::Open,
            "forced open never elapses"
        );
        assert_eq!(b.snapshot(T0).forced, Forced::Open);
        b.force_closed(T0);
        for _ in 0..20 {
            assert_eq!(b.record(Outcome::Http5xx, 0.0, T0), None);
        }
        assert!(b.allow(T0));
        assert_eq!(b.snapshot(T0).calls, 20, "counted while forced closed");
        b.release(T0 + S);
        let s = b.snapshot(T0 + S);
        assert_eq!(
            (s.state, s.forced, s.calls),
            (State::Closed, Forced::None, 0)
        );
        assert_eq!(
            b.transitions(),
            2,
            "closed->open->closed; release shows no change"
        );
    }

    #[test]
    fn eight_threads_never_exceed_probe_limit() {
        let b = Arc::new(breaker(BreakerConfig {
            half_open_probes: 3,
            half_open_successes: 255,
            open_jitter: 0.0,
            ..cfg()
        }));
        for _ in 0..5 {
            b.record(Outcome::Http5xx, 0.0, T0);
        }
        let now = T0 + 5 * S;
        let barrier = Arc::new(Barrier::new(8));
        let granted = Arc::new(AtomicU64::new(0));
        let hs: Vec<_> = (0..8)
            .map(|_| {
                let (b, barrier, granted) = (b.clone(), barrier.clone(), granted.clone());
                std::thread::spawn(move || {
                    barrier.wait();
                    for _ in 0..1000 {
                        if b.allow(now) {
                            granted.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                })
            })
            .collect();
        for h in hs {
            h.join().unwrap();
        }
        assert_eq!(granted.load(Ordering::Relaxed), 3);
    }

    proptest! {
        /// Whatever the interleaving of allow/record in half-open, permits out never exceed
        /// half_open_probes (model: granted permits minus recorded outcomes).
        #[test]
        fn half_open_permits_bounded(
            probes in 1i64..5,
            ops in prop::collection::vec((any::<bool>(), 0usize..3, 0u64..3), 1..200),
        ) {
            let b = breaker(BreakerConfig {
                half_open_probes: probes,
                half_open_successes: 255,
                open_jitter: 0.0,
                failure_outcomes: Some(vec![Outcome::Http5xx]),
                probe_timeout: Some(1000.0),
                ..cfg()
            });
            for _ in 0..5 { b.record(Outcome::Http5xx, 0.0, T0); }
            let mut now = T0 + 5 * S;
            let mut out: i64 = 0;
            for (is_allow, o, dt) in ops {
                now += dt * 1_000;
                if b.state_at(now) != State::HalfOpen { break; }
                if is_allow {
                    if b.allow(now) { out += 1; }
                } else if out > 0 {
                    // success or ignored outcome: returns a permit, stays half-open
                    let o = [Outcome::Success, Outcome::Http429, Outcome::Success][o];
                    b.record(o, 0.0, now);
                    out -= 1;
                }
                prop_assert!(out <= probes);
                prop_assert_eq!(i64::from(b.snapshot(now).half_open_in_flight), out);
            }
        }

        /// The breaker trips on the call where the window first holds >= minimum_calls with
        /// failure share >= threshold, never before.
        #[test]
        fn trips_exactly_at_threshold(
            outcomes in prop::collection::vec(any::<bool>(), 1..80),
            threshold in 0.1f64..1.0,
            minimum in 1i64..20,
        ) {
            let b = breaker(BreakerConfig {
                failure_rate_threshold: threshold,
                minimum_calls: minimum,
                consecutive_failures: 0,
                ..cfg()
            });
            let (mut calls, mut fails) = (0u64, 0u64);
            for failed in outcomes {
                calls += 1;
                if failed { fails += 1; }
                let o = if failed { Outcome::Other } else { Outcome::Success };
                let r = b.record(o, 0.0, T0);
                let expect = failed && calls >= minimum as u64
                    && fails as f64 >= threshold * calls as f64;
                prop_assert_eq!(r == Some(State::Open), expect);
                if expect { break; }
            }
        }
    }
}
