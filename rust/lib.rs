//! Native resilience core of hedgerow: circuit breakers, GCRA token buckets and sliding
//! windows, lock-free and driven by an explicit clock.
//!
//! The state machines are plain Rust (tested with `cargo test`, no interpreter needed); the
//! PyO3 binding in [`py`] is compiled only with the `python` feature and stays thin.
//!
//! Time convention everywhere: monotonic time in nanoseconds (`u64`), the same clock as
//! Python's `time.monotonic()` (see [`clock`]). Every operation takes `now` explicitly.

pub mod breaker;
pub mod bucket;
pub mod clock;
pub mod error;
pub mod logline;
pub mod outcome;
pub mod ring;
pub mod shared;
pub mod sse;
pub mod window;

#[cfg(feature = "python")]
mod py;
