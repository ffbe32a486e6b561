//! The monotonic clock shared with Python.
//!
//! Convention: time is **monotonic seconds** as a float at the Python boundary (the clock of
//! `time.monotonic()`), and **nanoseconds in a `u64`** inside the core. The binding anchors
//! the clock once at module import: it reads `time.monotonic_ns()` between two
//! `Instant::now()` readings and keeps the pair (midpoint instant, base nanoseconds). Every
//! later reading is `base + instant.elapsed()`, so no FFI call and no `unsafe` is needed on
//! the hot path, and the result agrees with `time.monotonic()` (both are `CLOCK_MONOTONIC` on
//! Linux) to within the anchoring error of well under a microsecond.

use std::sync::OnceLock;
use std::time::{Duration, Instant};

use crate::error::{fmt_f64, ArgError};

struct Anchor {
    instant: Instant,
    base_ns: u64,
}

static ANCHOR: OnceLock<Anchor> = OnceLock::new();

/// Anchors the clock: `base_ns` is the monotonic reading taken between `before` and `after`.
/// Only the first call has an effect (returns whether it did).
pub fn anchor(before: Instant, base_ns: u64, after: Instant) -> bool {
    let half = after.saturating_duration_since(before) / 2;
    let instant = before + half;
    ANCHOR.set(Anchor { instant, base_ns }).is_ok()
}

/// Monotonic nanoseconds now. Without an anchor (pure-Rust use) the clock starts at 0.
#[inline]
pub fn now_ns() -> u64 {
    let a = ANCHOR.get_or_init(|| Anchor {
        instant: Instant::now(),
        base_ns: 0,
    });
    let elapsed = a.instant.elapsed();
    a.base_ns.saturating_add(duration_ns(elapsed))
}

#[inline]
fn duration_ns(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// Seconds (float) to nanoseconds, rounding to nearest and saturating at both ends.
#[inline]
pub fn secs_to_ns(s: f64) -> u64 {
    // `as` from f64 to u64 saturates (negative -> 0, too large -> MAX, NaN -> 0).
    (s * 1e9).round() as u64
}

/// Nanoseconds to seconds (float); the same formula as CPython's `time.monotonic()`.
#[inline]
pub fn ns_to_secs(ns: u64) -> f64 {
    ns as f64 / 1e9
}

/// Resolves an optional `now` argument: `None` reads the clock, a float must be finite and
/// >= 0 (monotonic seconds).
#[inline]
pub fn resolve_now(now: Option<f64>) -> Result<u64, ArgError> {
    match now {
        None => Ok(now_ns()),
        Some(s) if s.is_finite() && s >= 0.0 => Ok(secs_to_ns(s)),
        Some(s) => Err(ArgError(format!(
            "now must be a finite number of monotonic seconds >= 0, got {}",
            fmt_f64(s)
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conversions_round_trip() {
        for s in [0.0, 1.0, 10.1, 12_345.678_901_234, 1e-9, 86_400.5] {
            assert_eq!(ns_to_secs(secs_to_ns(s)), s);
        }
        assert_eq!(secs_to_ns(-1.0), 0);
        assert_eq!(secs_to_ns(f64::INFINITY), u64::MAX);
    }

    #[test]
    fn resolve_now_validates() {
        assert_eq!(resolve_now(Some(2.5)), Ok(2_500_000_000));
        assert!(resolve_now(Some(f64::NAN))
            .unwrap_err()
            .0
            .starts_with("now "));
        assert!(resolve_now(Some(-1.0)).is_err());
        assert!(resolve_now(Some(f64::INFINITY)).is_err());
        let a = resolve_now(None).unwrap();
        let b = resolve_now(None).unwrap();
        assert!(b >= a);
    }
}
