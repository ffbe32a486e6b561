//! Argument errors of the pure core. The binding maps them to Python `ValueError`; the message
//! always starts with the name of the offending argument.

use std::fmt;

/// A rejected argument; `Display` gives the full message, e.g. `rate must be > 0, got -1.0`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArgError(pub String);

impl fmt::Display for ArgError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ArgError {}

/// Formats a float the way Python's `repr` does for the common cases (`nan`, `inf`, `-1.0`).
pub fn fmt_f64(v: f64) -> String {
    if v.is_nan() {
        "nan".to_owned()
    } else if v.is_infinite() {
        if v > 0.0 { "inf" } else { "-inf" }.to_owned()
    } else {
        format!("{v:?}")
    }
}

/// `v` must be finite and > 0.
pub fn positive(name: &str, v: f64) -> Result<f64, ArgError> {
    if v.is_finite() && v > 0.0 {
        Ok(v)
    } else {
        Err(ArgError(format!(
            "{name} must be a finite number > 0, got {}",
            fmt_f64(v)
        )))
    }
}

/// `v` must be finite and >= 0.
pub fn non_negative(name: &str, v: f64) -> Result<f64, ArgError> {
    if v.is_finite() && v >= 0.0 {
        Ok(v)
    } else {
        Err(ArgError(format!(
            "{name} must be a finite number >= 0, got {}",
            fmt_f64(v)
        )))
    }
}

/// Integer `v` must lie in `lo..=hi`.
pub fn int_in(name: &str, v: i64, lo: i64, hi: i64) -> Result<u64, ArgError> {
    if (lo..=hi).contains(&v) {
        // lo >= 0 at every call site, so the cast is lossless.
        Ok(v.unsigned_abs())
    } else if hi == i64::MAX {
        Err(ArgError(format!("{name} must be >= {lo}, got {v}")))
    } else {
        Err(ArgError(format!(
            "{name} must be between {lo} and {hi}, got {v}"
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_name_the_argument() {
        assert_eq!(
            positive("rate", -1.0).unwrap_err().0,
            "rate must be a finite number > 0, got -1.0"
        );
        assert!(non_negative("cost", f64::NAN)
            .unwrap_err()
            .0
            .contains("nan"));
        assert_eq!(
            int_in("slots", 0, 1, 10).unwrap_err().0,
            "slots must be between 1 and 10, got 0"
        );
        assert_eq!(
            int_in("minimum_calls", -2, 1, i64::MAX).unwrap_err().0,
            "minimum_calls must be >= 1, got -2"
        );
        assert_eq!(fmt_f64(f64::NEG_INFINITY), "-inf");
    }
}
