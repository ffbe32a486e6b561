//! GCRA token buckets: [`TokenBucket`] (one limit) and [`KeyedTokenBucket`] (one limit per
//! key in a fixed-size table).
//!
//! # GCRA
//! A bucket of `rate` tokens per `per` seconds with `burst` capacity is one number, the
//! theoretical arrival time (TAT, nanoseconds). Each token costs the emission interval
//! `T = per / rate`; the tolerance is `tau = burst * T`. A request of cost `c` at `now` is
//! granted iff `max(TAT, now) + c*T - now <= tau`, and then `TAT := max(TAT, now) + c*T`.
//! Tokens available at `now` are `(tau - max(TAT - now, 0)) / T`.
//!
//! `T` is quantised to a whole number of nanoseconds (at least 1, so `rate / per <= 1e9` per
//! second) and integer costs and bursts are then exact: `burst` unit requests at one instant
//! are all granted and the next is refused, with no float drift. The effective rate is
//! `per / T`, within `0.5 / T` (relative) of the requested one: 5e-7 for 1 000 tokens/s,
//! 8e-4 for 10 M tokens/min. Fractional costs round to the nearest nanosecond of `T`.
//!
//! # Memory ordering
//! All of a bucket's state is the one TAT word (for a keyed slot, the one 128-bit
//! key+TAT word), and nothing else is published through it, so every access is `Relaxed`:
//! read-modify-writes of a single location are totally ordered whatever the ordering
//! argument, which is all the compare-and-swap loop needs to grant each nanosecond of
//! tolerance at most once.

use std::sync::atomic::{AtomicU64, Ordering};

use portable_atomic::AtomicU128;

use crate::error::{fmt_f64, non_negative, positive, ArgError};

/// The result of deciding one request against a TAT.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Granted; the new TAT.
    Grant(u64),
    /// Refused; nanoseconds until the same request would be granted.
    Wait(u64),
    /// The cost exceeds the burst: it can never be granted.
    Never,
}

/// The immutable parameters of a GCRA limit.
#[derive(Debug, Clone, Copy)]
pub struct Gcra {
    rate: f64,
    per: f64,
    burst: f64,
    /// Emission interval T, nanoseconds per token (>= 1).
    t_ns: u64,
    /// Tolerance tau = burst * T, nanoseconds (>= 1).
    tau_ns: u64,
}

impl Gcra {
    /// Validates `rate` tokens per `per` seconds with `burst` capacity (default `rate`).
    pub fn new(rate: f64, per: f64, burst: Option<f64>) -> Result<Gcra, ArgError> {
        let rate = positive("rate", rate)?;
        let per = positive("per", per)?;
        let burst = positive("burst", burst.unwrap_or(rate))?;
        let t_raw = per * 1e9 / rate;
        let t = t_raw.round();
        if t_raw < 1.0 {
            return Err(ArgError(format!(
                "rate must be at most 1e9 tokens per second (rate / per), got {} per {} s",
                fmt_f64(rate),
                fmt_f64(per)
            )));
        }
        if t * burst >= u64::MAX as f64 / 4.0 {
            return Err(ArgError(format!(
                "burst must keep burst * per / rate below 146 years, got {}",
                fmt_f64(burst)
            )));
        }
        let t_ns = t as u64;
        let tau_ns = ((burst * t).round() as u64).max(1);
        Ok(Gcra {
            rate,
            per,
            burst,
            t_ns,
            tau_ns,
        })
    }

    /// Tokens per `per`, as given.
    pub fn rate(&self) -> f64 {
        self.rate
    }

    /// The period of `rate`, seconds.
    pub fn per(&self) -> f64 {
        self.per
    }

    /// Maximum tokens at once.
    pub fn burst(&self) -> f64 {
        self.burst
    }

    /// The emission interval in nanoseconds.
    pub fn t_ns(&self) -> u64 {
        self.t_ns
    }

    /// Validates a cost and converts it to nanoseconds of emission time.
    #[inline]
    pub fn cost_ns(&self, cost: f64) -> Result<u64, ArgError> {
        let cost = non_negative("cost", cost)?;
        Ok((cost * self.t_ns as f64).round() as u64)
    }

    /// Decides a request of `inc` nanoseconds against `tat` at `now`.
    #[inline]
    pub fn decide(&self, tat: u64, now: u64, inc: u64) -> Decision {
        if inc > self.tau_ns {
            return Decision::Never;
        }
        let new_tat = tat.max(now).saturating_add(inc);
        let ahead = new_tat - now;
        if ahead <= self.tau_ns {
            Decision::Grant(new_tat)
        } else {
            Decision::Wait(ahead - self.tau_ns)
        }
    }

    /// Tokens available at `now` given `tat`.
    #[inline]
    pub fn remaining(&self, tat: u64, now: u64) -> f64 {
        let used = tat.saturating_sub(now).min(self.tau_ns);
        (self.tau_ns - used) as f64 / self.t_ns as f64
    }
}

/// Seconds to report for a decision: 0.0 granted, the wait otherwise, `inf` never.
#[inline]
pub fn wait_secs(d: Decision) -> f64 {
    match d {
        Decision::Grant(_) => 0.0,
        Decision::Wait(ns) => crate::clock::ns_to_secs(ns),
        Decision::Never => f64::INFINITY,
    }
}

/// One GCRA limit in one atomic word. See the module docs.
#[derive(Debug)]
pub struct TokenBucket {
    gcra: Gcra,
    tat: AtomicU64,
}

impl TokenBucket {
    /// A bucket of `rate` tokens per `per` seconds, `burst` at once (default `rate`).
    pub fn new(rate: f64, per: f64, burst: Option<f64>) -> Result<TokenBucket, ArgError> {
        Ok(TokenBucket {
            gcra: Gcra::new(rate, per, burst)?,
            tat: AtomicU64::new(0),
        })
    }

    /// The limit's parameters.
    pub fn gcra(&self) -> &Gcra {
        &self.gcra
    }

    /// Grants `inc` nanoseconds of emission time if the bucket allows it now (one
    /// compare-and-swap loop), else grants nothing. Returns the decision.
    #[inline]
    pub fn acquire_ns(&self, inc: u64, now: u64) -> Decision {
        let mut tat = self.tat.load(Ordering::Relaxed);
        loop {
            let d = self.gcra.decide(tat, now, inc);
            let Decision::Grant(new_tat) = d else {
                return d;
            };
            if new_tat == tat {
                return d; // zero cost on a bucket already ahead of now: nothing to write
            }
            match self
                .tat
                .compare_exchange_weak(tat, new_tat, Ordering::Relaxed, Ordering::Relaxed)
            {
                Ok(_) => return d,
                Err(actual) => tat = actual,
            }
        }
    }

    /// Decides without granting.
    #[inline]
    pub fn peek_ns(&self, inc: u64, now: u64) -> Decision {
        self.gcra.decide(self.tat.load(Ordering::Relaxed), now, inc)
    }

    /// Tokens available at `now`.
    #[inline]
    pub fn remaining(&self, now: u64) -> f64 {
        self.gcra.remaining(self.tat.load(Ordering::Relaxed), now)
    }
}

/// How many consecutive slots a key may occupy from its home slot.
pub const MAX_PROBE: usize = 16;

const EMPTY_KEY: u64 = 0;

#[inline]
fn slot_pack(key: u64, tat: u64) -> u128 {
    (u128::from(key) << 64) | u128::from(tat)
}

#[inline]
fn slot_unpack(w: u128) -> (u64, u64) {
    ((w >> 64) as u64, w as u64)
}

/// Mixes a caller's 64-bit hash (e.g. Python's `hash(str)`) into a non-zero table key.
#[inline]
pub fn mix_key(h: u64) -> u64 {
    // splitmix64 finaliser: spreads low-entropy hashes over the whole table.
    let mut z = h.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^= z >> 31;
    if z == EMPTY_KEY {
        1
    } else {
        z
    }
}

/// Where a key stands in the table.
enum Lookup {
    /// The key's slot: index and current word.
    Found(usize, u128),
    /// Not present; the first reclaimable slot (index, word), if any.
    Absent(Option<(usize, u128)>, u64),
}

/// One GCRA per key, in a fixed open-addressing table of `capacity` 128-bit atomic slots
/// (key hash << 64 | TAT).
///
/// * A key lives in one of the [`MAX_PROBE`] slots following its home slot.
/// * A slot whose TAT is `<= now` holds a bucket indistinguishable from a fresh one, so it is
///   **free**: a new key claims it with one compare-and-swap of the whole word (idle keys
///   are evicted for nothing, no sweeper, memory bounded by `capacity`).
/// * A new key takes the first free slot of its probe range; when none is free the table
///   **fails closed**: the request is refused and the wait is the time until the first
///   slot in that range frees up (`try_acquire` is false, `acquire`/`retry_after` return
///   that wait, `remaining` is 0).
/// * Keys are compared by their 64-bit hash: two different keys with equal hashes (odds
///   ~ n^2 / 2^65) would share a limit.
/// * One race is not exact: if two threads insert the *same new key* at the same moment
///   while a slot ahead of it in the probe range frees by the passing of time, the key can
///   end up in two slots and the second copy's cost is forgotten, so that key can be granted
///   up to one extra request. With a fixed `now` (no slot frees by time alone) it cannot
///   happen, and an existing key is always exact.
#[derive(Debug)]
pub struct KeyedTokenBucket {
    gcra: Gcra,
    slots: Box<[AtomicU128]>,
    probe: usize,
}

impl KeyedTokenBucket {
    /// A table of `capacity` keys, each limited to `rate` per `per` seconds, `burst` at once.
    pub fn new(
        rate: f64,
        per: f64,
        burst: Option<f64>,
        capacity: i64,
    ) -> Result<KeyedTokenBucket, ArgError> {
        let gcra = Gcra::new(rate, per, burst)?;
        let capacity = crate::error::int_in("capacity", capacity, 1, 1 << 24)? as usize;
        Ok(KeyedTokenBucket {
            gcra,
            slots: (0..capacity).map(|_| AtomicU128::new(0)).collect(),
            probe: capacity.min(MAX_PROBE),
        })
    }

    /// The limit's parameters (shared by every key).
    pub fn gcra(&self) -> &Gcra {
        &self.gcra
    }

    /// Number of slots.
    pub fn capacity(&self) -> usize {
        self.slots.len()
    }

    #[inline]
    fn home(&self, key: u64) -> usize {
        // Lemire's multiply-shift range reduction: uniform, no division.
        ((u128::from(key) * self.slots.len() as u128) >> 64) as usize
    }

    #[inline]
    fn lookup(&self, key: u64, now: u64) -> Lookup {
        let n = self.slots.len();
        let mut idx = self.home(key);
        let mut free = None;
        let mut first_free_in = u64::MAX;
        for _ in 0..self.probe {
            let w = self.slots[idx].load(Ordering::Relaxed);
            let (k, tat) = slot_unpack(w);
            if k == key {
                return Lookup::Found(idx, w);
            }
            if k == EMPTY_KEY || tat <= now {
                if free.is_none() {
                    free = Some((idx, w));
                }
            } else {
                first_free_in = first_free_in.min(tat - now);
            }
            idx += 1;
            if idx == n {
                idx = 0;
            }
        }
        Lookup::Absent(free, first_free_in)
    }

    /// Grants `inc` nanoseconds of emission time to `key` (a [`mix_key`] hash) if allowed.
    pub fn acquire_ns(&self, key: u64, inc: u64, now: u64) -> Decision {
        loop {
            match self.lookup(key, now) {
                Lookup::Found(idx, w) => {
                    let (_, tat) = slot_unpack(w);
                    let d = self.gcra.decide(tat, now, inc);
                    let Decision::Grant(new_tat) = d else {
                        return d;
                    };
                    if new_tat == tat {
                        return d;
                    }
                    let next = slot_pack(key, new_tat);
                    if self.slots[idx]
                        .compare_exchange(w, next, Ordering::Relaxed, Ordering::Relaxed)
                        .is_ok()
                    {
                        return d;
                    }
                    // Someone granted to this key, or the slot was reclaimed: look again.
                }
                Lookup::Absent(free, first_free_in) => {
                    let d = self.gcra.decide(0, now, inc);
                    let Decision::Grant(new_tat) = d else {
                        return d; // Never (a fresh bucket cannot Wait)
                    };
                    let Some((idx, w)) = free else {
                        return Decision::Wait(first_free_in); // table full: fail closed
                    };
                    if inc == 0 {
                        return d; // a zero cost needs no slot
                    }
                    let next = slot_pack(key, new_tat);
                    if self.slots[idx]
                        .compare_exchange(w, next, Ordering::Relaxed, Ordering::Relaxed)
                        .is_ok()
                    {
                        return d;
                    }
                    // Lost the slot to another claimant (maybe this very key): look again.
                }
            }
        }
    }

    /// Decides for `key` without granting.
    pub fn peek_ns(&self, key: u64, inc: u64, now: u64) -> Decision {
        match self.lookup(key, now) {
            Lookup::Found(_, w) => self.gcra.decide(slot_unpack(w).1, now, inc),
            Lookup::Absent(free, first_free_in) => match self.gcra.decide(0, now, inc) {
                Decision::Grant(t) if free.is_some() || inc == 0 => Decision::Grant(t),
                Decision::Grant(_) => Decision::Wait(first_free_in),
                d => d,
            },
        }
    }

    /// Tokens `key` could take at `now` (0 when it has no slot and none is free).
    pub fn remaining(&self, key: u64, now: u64) -> f64 {
        match self.lookup(key, now) {
            Lookup::Found(_, w) => self.gcra.remaining(slot_unpack(w).1, now),
            Lookup::Absent(Some(_), _) => self.gcra.remaining(0, now),
            Lookup::Absent(None, _) => 0.0,
        }
    }

    /// Keys whose bucket is not full at `now` (the slots that are not free).
    pub fn active_keys(&self, now: u64) -> usize {
        self.slots
            .iter()
            .filter(|s| {
                let (k, tat) = slot_unpack(s.load(Ordering::Relaxed));
                k != EMPTY_KEY && tat > now
            })
            .count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::sync::atomic::AtomicU64 as Counter;
    use std::sync::{Arc, Barrier};

    const S: u64 = 1_000_000_000;

    fn granted(d: Decision) -> bool {
        matches!(d, Decision::Grant(_))
    }

    #[test]
    fn validates_arguments() {
        assert!(Gcra::new(-1.0, 1.0, None)
            .unwrap_err()
            .0
            .starts_with("rate "));
        assert!(Gcra::new(0.0, 1.0, None)
            .unwrap_err()
            .0
            .starts_with("rate "));
        assert!(Gcra::new(1.0, 0.0, None).unwrap_err().0.starts_with("per "));
        assert!(Gcra::new(1.0, 1.0, Some(f64::NAN))
            .unwrap_err()
            .0
            .starts_with("burst "));
        assert!(Gcra::new(2e9, 1.0, None)
            .unwrap_err()
            .0
            .starts_with("rate "));
        assert!(Gcra::new(1.0, 1e30, None).is_err());
        let g = Gcra::new(10.0, 1.0, None).unwrap();
        assert!(g.cost_ns(-1.0).unwrap_err().0.starts_with("cost "));
        assert!(g.cost_ns(f64::INFINITY).is_err());
        assert!(KeyedTokenBucket::new(1.0, 1.0, None, 0)
            .unwrap_err()
            .0
            .starts_with("capacity "));
    }

    #[test]
    fn burst_then_rate() {
        let b = TokenBucket::new(3.0, 1.0, None).unwrap();
        let one = b.gcra().cost_ns(1.0).unwrap();
        let t0 = 100 * S;
        let grants = (0..10).filter(|_| granted(b.acquire_ns(one, t0))).count();
        assert_eq!(grants, 3);
        assert_eq!(b.remaining(t0), 0.0);
        // A third of a second (rounded T) later exactly one more token.
        let t1 = t0 + b.gcra().t_ns();
        assert!(granted(b.acquire_ns(one, t1)));
        assert!(!granted(b.acquire_ns(one, t1)));
        // After a full second, three again (never more than burst).
        let t2 = t1 + 5 * S;
        assert_eq!(
            (0..10).filter(|_| granted(b.acquire_ns(one, t2))).count(),
            3
        );
    }

    #[test]
    fn weighted_costs_and_waits() {
        // 100k tokens per minute.
        let b = TokenBucket::new(100_000.0, 60.0, None).unwrap();
        let c = b.gcra().cost_ns(1234.0).unwrap();
        let now = 10 * S;
        let n = (0..200).filter(|_| granted(b.acquire_ns(c, now))).count();
        assert_eq!(n, 100_000 / 1234);
        match b.peek_ns(c, now) {
            Decision::Wait(w) => {
                // 81 * 1234 = 99 954 used, 46 left: 1188 more at 600 µs each.
                assert_eq!(w, 1188 * 600_000);
            }
            d => panic!("{d:?}"),
        }
        assert_eq!(
            b.peek_ns(b.gcra().cost_ns(100_001.0).unwrap(), now),
            Decision::Never
        );
        assert_eq!(wait_secs(Decision::Never), f64::INFINITY);
        assert!((b.remaining(now) - 46.0).abs() < 1e-9);
    }

    #[test]
    fn zero_cost_always_granted_and_writes_nothing() {
        let b = TokenBucket::new(1.0, 1.0, None).unwrap();
        assert!(granted(b.acquire_ns(S, 5 * S)));
        assert!(granted(b.acquire_ns(0, 5 * S)));
        assert!(!granted(b.acquire_ns(S, 5 * S)));
    }

    #[test]
    fn eight_threads_fixed_now_get_exactly_burst() {
        let b = Arc::new(TokenBucket::new(1000.0, 1.0, Some(5000.0)).unwrap());
        let one = b.gcra().cost_ns(1.0).unwrap();
        let total = Arc::new(Counter::new(0));
        let barrier = Arc::new(Barrier::new(8));
        let hs: Vec<_> = (0..8)
            .map(|_| {
                let (b, total, barrier) = (b.clone(), total.clone(), barrier.clone());
                std::thread::spawn(move || {
                    barrier.wait();
                    for _ in 0..2000 {
                        if granted(b.acquire_ns(one, 7 * S)) {
                            total.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                })
            })
            .collect();
        for h in hs {
            h.join().unwrap();
        }
        assert_eq!(total.load(Ordering::Relaxed), 5000);
    }

    #[test]
    fn eight_threads_advancing_now_get_exactly_rate_and_burst() {
        // 1000/s, burst 100; time advances 1 ms per step for 500 steps: 100 + 500 tokens.
        let b = Arc::new(TokenBucket::new(1000.0, 1.0, Some(100.0)).unwrap());
        let one = b.gcra().cost_ns(1.0).unwrap();
        let total = Arc::new(Counter::new(0));
        let barrier = Arc::new(Barrier::new(8));
        let t0 = 50 * S;
        let hs: Vec<_> = (0..8)
            .map(|_| {
                let (b, total, barrier) = (b.clone(), total.clone(), barrier.clone());
                std::thread::spawn(move || {
                    for step in 0..=500u64 {
                        barrier.wait();
                        let now = t0 + step * 1_000_000;
                        for _ in 0..4 {
                            if granted(b.acquire_ns(one, now)) {
                                total.fetch_add(1, Ordering::Relaxed);
                            }
                        }
                    }
                })
            })
            .collect();
        for h in hs {
            h.join().unwrap();
        }
        assert_eq!(total.load(Ordering::Relaxed), 600);
    }

    #[test]
    fn keyed_limits_each_key_and_reclaims_idle_slots() {
        let k = KeyedTokenBucket::new(2.0, 1.0, None, 4).unwrap();
        let one = k.gcra().cost_ns(1.0).unwrap();
        let now = 10 * S;
        for key in 1..=4u64 {
            let key = mix_key(key);
            assert!(granted(k.acquire_ns(key, one, now)));
            assert!(granted(k.acquire_ns(key, one, now)));
            assert!(!granted(k.acquire_ns(key, one, now)));
        }
        assert_eq!(k.active_keys(now), 4);
        // Table full: a fifth key fails closed until the first slot frees (1 s).
        let fifth = mix_key(5);
        assert_eq!(k.acquire_ns(fifth, one, now), Decision::Wait(S));
        assert_eq!(k.peek_ns(fifth, one, now), Decision::Wait(S));
        assert_eq!(k.remaining(fifth, now), 0.0);
        // Half a second later the old keys have one token each, still holding their slots.
        assert_eq!(k.acquire_ns(fifth, one, now + S / 2), Decision::Wait(S / 2));
        // At 1 s every old bucket is full again: its slot is free and the fifth key claims one.
        assert!(granted(k.acquire_ns(fifth, one, now + S)));
        assert_eq!(k.active_keys(now + S), 1);
        assert_eq!(k.capacity(), 4);
    }

    #[test]
    fn keyed_threads_fixed_now_exact_per_key() {
        let k = Arc::new(KeyedTokenBucket::new(10.0, 1.0, Some(50.0), 64).unwrap());
        let one = k.gcra().cost_ns(1.0).unwrap();
        let counts: Arc<Vec<Counter>> = Arc::new((0..8).map(|_| Counter::new(0)).collect());
        let barrier = Arc::new(Barrier::new(8));
        let hs: Vec<_> = (0..8)
            .map(|_| {
                let (k, counts, barrier) = (k.clone(), counts.clone(), barrier.clone());
                std::thread::spawn(move || {
                    barrier.wait();
                    for i in 0..800u64 {
                        let key = i % 8;
                        if granted(k.acquire_ns(mix_key(key), one, 3 * S)) {
                            counts[key as usize].fetch_add(1, Ordering::Relaxed);
                        }
                    }
                })
            })
            .collect();
        for h in hs {
            h.join().unwrap();
        }
        for c in counts.iter() {
            assert_eq!(c.load(Ordering::Relaxed), 50);
        }
        assert_eq!(k.active_keys(3 * S), 8);
    }

    #[test]
    fn slot_words_are_lock_free() {
        assert!(AtomicU128::is_lock_free());
    }

    proptest! {
        /// Whatever the sequence of costs and (non-decreasing) times, the total granted never
        /// exceeds `burst + elapsed / T` tokens (in emission nanoseconds: tau + elapsed).
        #[test]
        fn never_grants_more_than_burst_plus_rate(
            rate in 0.5f64..5000.0,
            burst in 0.5f64..500.0,
            steps in prop::collection::vec((0u64..50_000_000, 0.0f64..20.0), 1..300),
        ) {
            let b = TokenBucket::new(rate, 1.0, Some(burst)).unwrap();
            let t0 = 1_000 * S;
            let mut now = t0;
            let mut granted_ns: u64 = 0;
            for (dt, cost) in steps {
                now += dt;
                let inc = b.gcra().cost_ns(cost).unwrap();
                if let Decision::Grant(_) = b.acquire_ns(inc, now) {
                    granted_ns += inc;
                }
                prop_assert!(granted_ns <= b.gcra().tau_ns + (now - t0));
            }
        }

        /// A refused request with wait `w` is granted at `now + w` and not a nanosecond
        /// before (single-threaded).
        #[test]
        fn retry_after_is_exact(
            rate in 1.0f64..1000.0,
            pre in 0u64..50,
            cost in 0.1f64..5.0,
        ) {
            let b = TokenBucket::new(rate, 1.0, Some(5.0)).unwrap();
            let now = 100 * S;
            let one = b.gcra().cost_ns(1.0).unwrap();
            for _ in 0..pre { b.acquire_ns(one, now); }
            let inc = b.gcra().cost_ns(cost).unwrap();
            if let Decision::Wait(w) = b.peek_ns(inc, now) {
                prop_assert!(!granted(b.peek_ns(inc, now + w - 1)));
                prop_assert!(granted(b.peek_ns(inc, now + w)));
            }
        }
    }
}
