//! The outcome vocabulary shared by the breaker and the sliding window.

use crate::error::ArgError;

/// How one upstream attempt ended. `Other` is any failure not covered by the other classes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Outcome {
    Success = 0,
    Http5xx = 1,
    Http529 = 2,
    Http429 = 3,
    Timeout = 4,
    Other = 5,
}

impl Outcome {
    /// All outcomes, in index order.
    pub const ALL: [Outcome; 6] = [
        Outcome::Success,
        Outcome::Http5xx,
        Outcome::Http529,
        Outcome::Http429,
        Outcome::Timeout,
        Outcome::Other,
    ];

    /// Number of outcome classes.
    pub const COUNT: usize = 6;

    /// Parses the wire name (`"success"`, `"5xx"`, `"529"`, `"429"`, `"timeout"`, `"other"`).
    #[inline]
    pub fn parse(s: &str) -> Result<Outcome, ArgError> {
        Self::parse_named("outcome", s)
    }

    /// Like [`Outcome::parse`], naming `arg` in the error.
    #[inline]
    pub fn parse_named(arg: &str, s: &str) -> Result<Outcome, ArgError> {
        Ok(match s {
            "success" => Outcome::Success,
            "5xx" => Outcome::Http5xx,
            "529" => Outcome::Http529,
            "429" => Outcome::Http429,
            "timeout" => Outcome::Timeout,
            "other" => Outcome::Other,
            _ => {
                return Err(ArgError(format!(
                    "{arg} must be one of 'success', '5xx', '529', '429', 'timeout', 'other', got {s:?}"
                )))
            }
        })
    }

    /// The wire name.
    pub fn name(self) -> &'static str {
        match self {
            Outcome::Success => "success",
            Outcome::Http5xx => "5xx",
            Outcome::Http529 => "529",
            Outcome::Http429 => "429",
            Outcome::Timeout => "timeout",
            Outcome::Other => "other",
        }
    }

    /// Index into per-class arrays.
    #[inline]
    pub fn index(self) -> usize {
        self as usize
    }

    /// Bit of this outcome in an outcome mask.
    #[inline]
    pub fn bit(self) -> u8 {
        1 << (self as u8)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_round_trips_and_rejects_unknown() {
        for o in Outcome::ALL {
            assert_eq!(Outcome::parse(o.name()), Ok(o));
            assert_eq!(Outcome::ALL[o.index()], o);
        }
        let e = Outcome::parse("503").unwrap_err();
        assert!(e.0.starts_with("outcome must be one of"), "{e}");
        assert!(e.0.ends_with("got \"503\""), "{e}");
    }
}
