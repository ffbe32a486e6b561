//! [`SlidingWindow`]: counts by outcome class and a latency histogram over the last
//! `window` seconds, in a ring of `slots` time slots (see [`crate::ring`] for why the ring is
//! exact under concurrency: counters reset themselves, nothing is lost at slot boundaries).
//!
//! The window is slot-granular: at time `now` it covers the `slots` periods ending with the
//! one containing `now`, i.e. between `window - window/slots` and `window` seconds of history.
//!
//! # Latency histogram
//! Log-linear buckets, 16 per power of two, over `[2^10 ns, 2^42 ns)` = 1.024 µs .. 73.3 min,
//! plus one bucket for `[0, 1.024 µs)` (reported as 0.0). A quantile reports the midpoint of
//! the bucket holding the sample of that rank; a bucket `[L, U)` has `U - L <= L / 16`, so
//! for latencies in the covered range the reported value is within **1/32 = 3.125 %** of the
//! true sample's value. Latencies of 73.3 min and more are reported as ~73 min.
//!
//! Rank definition: `quantile(q)` is the value of the sample of rank `max(1, ceil(q * n))`
//! among the `n` samples in the window sorted ascending (the "inverted CDF" quantile).

use crate::outcome::Outcome;
use crate::ring::Ring;

/// Sub-buckets per power of two.
pub const SUB: usize = 16;
const SUB_BITS: u32 = 4;
/// log2 of the lower edge of the first log bucket, in nanoseconds (1.024 µs).
const MIN_EXP: i64 = 10;
/// log2 of the upper edge of the last log bucket, in nanoseconds (73.3 min).
const MAX_EXP: i64 = 42;
/// Number of histogram buckets: the zero bucket plus 16 per octave.
pub const BUCKETS: usize = 1 + (MAX_EXP - MIN_EXP) as usize * SUB;
/// Stated bound on the relative error of a reported quantile (see module docs).
pub const MAX_RELATIVE_ERROR: f64 = 1.0 / 32.0;

/// The histogram bucket of a latency in seconds (finite, >= 0).
#[inline]
pub fn bucket_of(latency_secs: f64) -> usize {
    let ns = latency_secs * 1e9;
    if ns < (1u64 << MIN_EXP) as f64 {
        return 0;
    }
    let bits = ns.to_bits();
    let exp = ((bits >> 52) & 0x7ff) as i64 - 1023;
    if exp >= MAX_EXP {
        return BUCKETS - 1;
    }
    let sub = ((bits >> (52 - SUB_BITS)) & (SUB as u64 - 1)) as usize;
    1 + (exp - MIN_EXP) as usize * SUB + sub
}

/// The value (seconds) a bucket reports: the midpoint of its range; 0.0 for the zero bucket.
#[inline]
pub fn bucket_value(idx: usize) -> f64 {
    if idx == 0 {
        return 0.0;
    }
    let i = idx - 1;
    let octave = (1u64 << (MIN_EXP as usize + i / SUB)) as f64;
    let k = (i % SUB) as f64;
    let lo = octave * (1.0 + k / SUB as f64);
    let hi = octave * (1.0 + (k + 1.0) / SUB as f64);
    (lo + hi) / 2.0 / 1e9
}

const COUNTS: usize = Outcome::COUNT;
/// A per-slot total next to the six class counts: `total` and `error_rate` then read two
/// words a slot instead of six (one extra compare-and-swap per record buys it).
const TOTAL: usize = COUNTS;

/// Maximum number of slots of a window.
pub const MAX_SLOTS: i64 = 3600;

/// Counts by outcome class and a latency histogram over a sliding time window. Lock-free and
/// exact (see the module docs).
#[derive(Debug)]
pub struct SlidingWindow {
    /// Outcome counts: kept apart from the histogram so that rates read 6 dense words a slot.
    counts: Ring,
    /// Latency histogram buckets.
    hist: Ring,
    window: f64,
}

impl SlidingWindow {
    /// A window of `window` seconds cut into `slots` slots.
    pub fn new(window: f64, slots: i64) -> Result<SlidingWindow, crate::error::ArgError> {
        let window = crate::error::positive("window", window)?;
        let slots = crate::error::int_in("slots", slots, 1, MAX_SLOTS)?;
        let slot_ns = crate::clock::secs_to_ns(window) / slots;
        if slot_ns == 0 {
            return Err(crate::error::ArgError(format!(
                "window must be at least slots nanoseconds, got {}",
                crate::error::fmt_f64(window)
            )));
        }
        Ok(SlidingWindow {
            counts: Ring::new(slot_ns, slots as usize, COUNTS + 1),
            hist: Ring::new(slot_ns, slots as usize, BUCKETS),
            window,
        })
    }

    /// The window length in seconds.
    pub fn window(&self) -> f64 {
        self.window
    }

    /// The number of slots.
    pub fn slots(&self) -> usize {
        self.counts.slots()
    }

    /// Records one outcome with its latency (seconds, finite, >= 0; validated by the caller).
    #[inline]
    pub fn record(&self, outcome: Outcome, latency_secs: f64, now: u64) {
        let e = self.counts.epoch_of(now);
        if let Some(idx) = self.counts.claim(e) {
            self.counts.bump(idx, e, outcome.index(), 1);
            self.counts.bump(idx, e, TOTAL, 1);
        }
        if let Some(idx) = self.hist.claim(e) {
            self.hist.bump(idx, e, bucket_of(latency_secs), 1);
        }
    }

    /// Counts per outcome class (indexed by [`Outcome::index`]) in the window at `now`.
    pub fn counts(&self, now: u64) -> [u64; COUNTS] {
        let mut out = [0u64; COUNTS];
        self.counts
            .sum_into(self.counts.epoch_of(now), 0, 0, &mut out);
        out
    }

    /// All records in the window at `now`.
    pub fn total(&self, now: u64) -> u64 {
        self.counts.sum(self.counts.epoch_of(now), 0, TOTAL)
    }

    /// Share of non-success records (or of one class) in the window; 0.0 when empty.
    pub fn error_rate(&self, now: u64, class: Option<Outcome>) -> f64 {
        let cell = class.unwrap_or(Outcome::Success).index();
        let (part, total) = self
            .counts
            .sum_pair(self.counts.epoch_of(now), 0, cell, TOTAL);
        if total == 0 {
            return 0.0;
        }
        // Without a class, the rate is of everything but success.
        let part = if class.is_some() {
            part
        } else {
            total.saturating_sub(part)
        };
        part as f64 / total as f64
    }

    /// The merged latency histogram of the window at `now`.
    pub fn histogram(&self, now: u64) -> Vec<u64> {
        let mut h = vec![0u64; BUCKETS];
        self.hist.sum_into(self.hist.epoch_of(now), 0, 0, &mut h);
        h
    }

    /// Quantiles `qs` (each in 0..=1) of the latencies in the window, or `None` when empty.
    pub fn quantiles_of(&self, qs: &[f64], now: u64) -> Option<Vec<f64>> {
        let h = self.histogram(now);
        quantiles_from_histogram(&h, qs)
    }
}

/// Quantiles from a histogram by the inverted-CDF rank rule; `None` when empty.
pub fn quantiles_from_histogram(h: &[u64], qs: &[f64]) -> Option<Vec<f64>> {
    let n: u64 = h.iter().sum();
    if n == 0 {
        return None;
    }
    Some(
        qs.iter()
            .map(|&q| {
                let rank = ((q * n as f64).ceil() as u64).clamp(1, n);
                let mut seen = 0u64;
                for (i, &c) in h.iter().enumerate() {
                    seen += c;
                    if seen >= rank {
                        return bucket_value(i);
                    }
                }
                bucket_value(h.len() - 1)
            })
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::sync::Arc;

    const S: u64 = 1_000_000_000;

    #[test]
    fn buckets_are_monotone_and_cover_the_range() {
        assert_eq!(bucket_of(0.0), 0);
        assert_eq!(bucket_of(1e-6), 0);
        assert_eq!(bucket_of(1.024e-6), 1);
        assert_eq!(bucket_of(1e9), BUCKETS - 1);
        assert_eq!(BUCKETS, 513);
        let mut last = 0;
        let mut x = 1e-7;
        while x < 1e4 {
            let b = bucket_of(x);
            assert!(b >= last);
            last = b;
            if b > 0 && b < BUCKETS - 1 {
                let v = bucket_value(b);
                assert!(
                    (v - x).abs() / x <= MAX_RELATIVE_ERROR + 1e-12,
                    "{x} -> {v}"
                );
            }
            x *= 1.013;
        }
    }

    #[test]
    fn validates_arguments() {
        assert!(SlidingWindow::new(0.0, 10)
            .unwrap_err()
            .0
            .starts_with("window "));
        assert!(SlidingWindow::new(-5.0, 10)
            .unwrap_err()
            .0
            .starts_with("window "));
        assert!(SlidingWindow::new(60.0, 0)
            .unwrap_err()
            .0
            .starts_with("slots "));
        assert!(SlidingWindow::new(1e-9, 10)
            .unwrap_err()
            .0
            .starts_with("window "));
    }

    #[test]
    fn counts_rates_and_expiry() {
        let w = SlidingWindow::new(10.0, 10).unwrap();
        let t = 100 * S;
        for _ in 0..6 {
            w.record(Outcome::Success, 0.1, t);
        }
        w.record(Outcome::Http5xx, 0.2, t + S);
        w.record(Outcome::Http429, 0.2, t + 2 * S);
        w.record(Outcome::Timeout, 0.2, t + 3 * S);
        w.record(Outcome::Http529, 0.2, t + 3 * S);
        let c = w.counts(t + 3 * S);
        assert_eq!(c, [6, 1, 1, 1, 1, 0]);
        assert_eq!(w.total(t + 3 * S), 10);
        assert!((w.error_rate(t + 3 * S, None) - 0.4).abs() < 1e-12);
        assert!((w.error_rate(t + 3 * S, Some(Outcome::Http429)) - 0.1).abs() < 1e-12);
        // At t + 10 s the first slot (t) has left the window.
        assert_eq!(w.counts(t + 10 * S), [0, 1, 1, 1, 1, 0]);
        assert_eq!(w.total(t + 20 * S), 0);
        assert_eq!(w.error_rate(t + 20 * S, None), 0.0);
        assert!(w.quantiles_of(&[0.5], t + 20 * S).is_none());
    }

    #[test]
    fn threads_lose_nothing_across_slot_boundaries() {
        // 8 threads record at times that sweep across many slot boundaries of a small
        // window; every record inside the final window must be counted.
        let w = Arc::new(SlidingWindow::new(1.0, 100).unwrap()); // 10 ms slots
        let t0 = 5 * S;
        let hs: Vec<_> = (0..8)
            .map(|_| {
                let w = w.clone();
                std::thread::spawn(move || {
                    for i in 0..20_000u64 {
                        let now = t0 + i * 50_000; // 50 µs steps: 200 records per slot
                        w.record(Outcome::Success, 0.001, now);
                    }
                })
            })
            .collect();
        for h in hs {
            h.join().unwrap();
        }
        let end = t0 + 19_999 * 50_000;
        // The window at `end` holds the 100 slots ending at end's slot.
        let e_end = end / 10_000_000;
        let first = (e_end - 99) * 10_000_000;
        let expected = (0..20_000u64).filter(|i| t0 + i * 50_000 >= first).count() as u64 * 8;
        assert_eq!(w.total(end), expected);
    }

    proptest! {
        #[test]
        fn counts_equal_records_within_window(
            recs in prop::collection::vec((0u64..20_000, 0usize..6), 1..400),
            at in 0u64..25_000,
        ) {
            // Window 10 s in 10 slots; times in ms.
            let w = SlidingWindow::new(10.0, 10).unwrap();
            let mut sorted = recs.clone();
            sorted.sort();
            for &(ms, o) in &sorted {
                w.record(Outcome::ALL[o], 0.01, ms * 1_000_000);
            }
            let now = (at.max(sorted.last().unwrap().0)) * 1_000_000;
            let e_now = now / S;
            let mut expected = [0u64; 6];
            for &(ms, o) in &sorted {
                let e = ms / 1000;
                if e + 10 > e_now {
                    expected[o] += 1;
                }
            }
            prop_assert_eq!(w.counts(now), expected);
        }

        #[test]
        fn quantile_within_stated_relative_error(
            lats in prop::collection::vec(-13.8f64..8.3, 1..500),
            q in 0.0f64..=1.0,
        ) {
            // Log-uniform latencies from 1.1 µs to ~67 min.
            let lats: Vec<f64> = lats.iter().map(|x| x.exp().max(1.1e-6)).collect();
            let w = SlidingWindow::new(60.0, 6).unwrap();
            for &l in &lats {
                w.record(Outcome::Success, l, 30 * S);
            }
            let mut sorted = lats.clone();
            sorted.sort_by(f64::total_cmp);
            let n = sorted.len();
            let rank = ((q * n as f64).ceil() as usize).clamp(1, n);
            let exact = sorted[rank - 1];
            let got = w.quantiles_of(&[q], 30 * S).unwrap()[0];
            prop_assert!((got - exact).abs() / exact <= MAX_RELATIVE_ERROR + 1e-12,
                "q={} exact={} got={}", q, exact, got);
        }
    }
}
