//! The request log's lines, built natively: JSON output, ISO 8601 times and the masking of
//! known secret values.
//!
//! One line a request is written on the event loop's thread; building it in Python (a dict,
//! a list of dicts, `orjson.dumps`, a `str` kept until the writer takes it) cost more than
//! the rest of observability together. Here a line is appended to one growing buffer, and
//! the writer thread takes the whole buffer as one `bytes` (see `RequestLines` in `py.rs`).
//! The field layout lives in `py.rs`; this module has the pieces that need no interpreter.

use crate::error::ArgError;

/// Appends `s` as a JSON string: `"`, `\` and control characters escaped, everything else
/// (UTF-8 included) as it is.
pub fn push_str(out: &mut Vec<u8>, s: &str) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    out.push(b'"');
    let bytes = s.as_bytes();
    // Most text (keys, ids, model names) needs no escape: one copy, after a check that
    // reads eight bytes at a time.
    if !needs_escape(bytes) {
        out.extend_from_slice(bytes);
        out.push(b'"');
        return;
    }
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let escape: &[u8] = match b {
            b'"' => b"\\\"",
            b'\\' => b"\\\\",
            b'\n' => b"\\n",
            b'\r' => b"\\r",
            b'\t' => b"\\t",
            0..=0x1f => b"",
            _ => continue,
        };
        out.extend_from_slice(&bytes[start..i]);
        if escape.is_empty() {
            out.extend_from_slice(b"\\u00");
            out.push(HEX[usize::from(b >> 4)]);
            out.push(HEX[usize::from(b & 0xf)]);
        } else {
            out.extend_from_slice(escape);
        }
        start = i + 1;
    }
    out.extend_from_slice(&bytes[start..]);
    out.push(b'"');
}

/// Whether `bytes` hold a `"`, a `\\` or a control character (what JSON escapes).
fn needs_escape(bytes: &[u8]) -> bool {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGHS: u64 = 0x8080_8080_8080_8080;
    // A byte of `x` is zero <=> its high bit is set in `(x - ONES) & !x & HIGHS`; a byte
    // below 0x20 <=> the same with `x - 0x20 * ONES` (bytes of 0x80 and up never match).
    let hit = |x: u64| {
        let quote = x ^ (ONES * u64::from(b'"'));
        let backslash = x ^ (ONES * u64::from(b'\\'));
        ((quote.wrapping_sub(ONES) & !quote)
            | (backslash.wrapping_sub(ONES) & !backslash)
            | (x.wrapping_sub(ONES * 0x20) & !x))
            & HIGHS
            != 0
    };
    let mut chunks = bytes.chunks_exact(8);
    for chunk in &mut chunks {
        let word = u64::from_le_bytes(chunk.try_into().expect("chunks of 8"));
        if hit(word) {
            return true;
        }
    }
    // The last few bytes, padded with a byte that needs no escape: the same check.
    let mut last = [b'a'; 8];
    last[..chunks.remainder().len()].copy_from_slice(chunks.remainder());
    hit(u64::from_le_bytes(last))
}

/// Appends `x` as a JSON number: the shortest text that reads back as `x` (`0.0134`,
/// `1e-7`), `null` for NaN and infinities (JSON has neither).
pub fn push_f64(out: &mut Vec<u8>, x: f64) {
    if x.is_finite() {
        // The shortest text that reads back as `x`, with an exponent for very small or
        // large magnitudes (`1e-7`): valid JSON either way.
        out.extend_from_slice(ryu::Buffer::new().format_finite(x).as_bytes());
    } else {
        out.extend_from_slice(b"null");
    }
}

/// Appends `n` in decimal.
pub fn push_i64(out: &mut Vec<u8>, n: i64) {
    out.extend_from_slice(itoa::Buffer::new().format(n).as_bytes());
}

/// `x` rounded to 4 decimal places (a tenth of a millisecond for latencies in seconds).
pub fn round4(x: f64) -> f64 {
    (x * 1e4).round() / 1e4
}

/// Year, month, day of the proleptic Gregorian calendar for days since 1970-01-01
/// (H. Hinnant's `civil_from_days`).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097) as u32; // [0, 146096]
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365; // [0, 399]
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100); // [0, 365]
    let mp = (5 * doy + 2) / 153; // [0, 11], from March
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = i64::from(yoe) + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// Appends epoch seconds as ISO 8601 UTC with milliseconds (`2026-06-05T15:08:12.345Z`),
/// exactly as `datetime.fromtimestamp(epoch, UTC)` gives it cut to milliseconds: the
/// fraction is rounded to microseconds (half to even), then truncated to milliseconds.
/// `ArgError` for a time that is not finite or falls outside the years 1-9999 (where
/// `datetime` refuses too).
pub fn push_iso_millis(out: &mut Vec<u8>, epoch: f64) -> Result<(), ArgError> {
    // Years 1..=9999 span these seconds; anything outside has no ISO text of this form.
    const FIRST: f64 = -62_135_596_800.0;
    const END: f64 = 253_402_300_800.0;
    let out_of_range = || {
        Err(ArgError(format!(
            "epoch must be a time between the years 1 and 9999, got {}",
            crate::error::fmt_f64(epoch)
        )))
    };
    if !(epoch.is_finite() && (FIRST..END).contains(&epoch)) {
        return out_of_range();
    }
    // What datetime.fromtimestamp does: modf, round the fraction to microseconds.
    let mut second = epoch.trunc() as i64;
    let mut micros = ((epoch - epoch.trunc()) * 1e6).round_ties_even() as i64;
    if micros >= 1_000_000 {
        second += 1;
        micros -= 1_000_000;
    } else if micros < 0 {
        second -= 1;
        micros += 1_000_000;
    }
    let (year, month, day) = civil_from_days(second.div_euclid(86_400));
    // Just under the end, the rounded microseconds can carry into the year 10000.
    if !(1..=9999).contains(&year) {
        return out_of_range();
    }
    let of_day = second.rem_euclid(86_400);
    let digits = |out: &mut Vec<u8>, value: i64, width: u32| {
        for power in (0..width).rev() {
            out.push(b'0' + (value / 10_i64.pow(power) % 10) as u8);
        }
    };
    digits(out, year, 4);
    out.push(b'-');
    digits(out, i64::from(month), 2);
    out.push(b'-');
    digits(out, i64::from(day), 2);
    out.push(b'T');
    digits(out, of_day / 3600, 2);
    out.push(b':');
    digits(out, of_day / 60 % 60, 2);
    out.push(b':');
    digits(out, of_day % 60, 2);
    out.push(b'.');
    digits(out, micros / 1000, 3);
    out.push(b'Z');
    Ok(())
}

/// Known secret values to mask, longest first (a secret that contains another is replaced
/// whole). Values shorter than 4 bytes are dropped: masking "x" everywhere would destroy
/// the text, not protect it.
pub struct Secrets {
    finders: Vec<memchr::memmem::Finder<'static>>,
}

/// What replaces a secret.
pub const REDACTED: &[u8] = b"[REDACTED]";

impl Secrets {
    pub fn new<I: IntoIterator<Item = Vec<u8>>>(values: I) -> Self {
        let mut values: Vec<Vec<u8>> = values.into_iter().filter(|v| v.len() >= 4).collect();
        values.sort_by(|a, b| b.len().cmp(&a.len()).then_with(|| a.cmp(b)));
        values.dedup();
        let finders = values
            .into_iter()
            .map(|v| memchr::memmem::Finder::new(&v).into_owned())
            .collect();
        Secrets { finders }
    }

    /// The values kept, longest first.
    pub fn values(&self) -> impl Iterator<Item = &[u8]> {
        self.finders.iter().map(|f| f.needle())
    }

    /// `data` with every occurrence of a secret replaced by `[REDACTED]`, or `None` when
    /// none occurs (the common case: one SIMD scan per secret, no copy).
    pub fn mask(&self, data: &[u8]) -> Option<Vec<u8>> {
        if !self.finders.iter().any(|f| f.find(data).is_some()) {
            return None;
        }
        // Rare: left to right, at each place the longest secret that starts there.
        let mut out = Vec::with_capacity(data.len());
        let mut at = 0;
        while at < data.len() {
            let found = self
                .finders
                .iter()
                .map(|f| f.needle())
                .find(|needle| data[at..].starts_with(needle));
            match found {
                Some(needle) => {
                    out.extend_from_slice(REDACTED);
                    at += needle.len();
                }
                None => {
                    out.push(data[at]);
                    at += 1;
                }
            }
        }
        Some(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_word_at_a_time_check_finds_every_byte_json_escapes_wherever_it_is() {
        let naive = |bytes: &[u8]| bytes.iter().any(|&b| b < 0x20 || b == b'"' || b == b'\\');
        for len in 0..20 {
            for at in 0..len {
                for b in 0..=255u8 {
                    let mut bytes = vec![b'a'; len];
                    bytes[at] = b;
                    assert_eq!(
                        needs_escape(&bytes),
                        naive(&bytes),
                        "{b:#x} at {at} of {len}"
                    );
                    // Next to bytes a borrow could carry into.
                    bytes.iter_mut().for_each(|x| *x = 0x80);
                    bytes[at] = b;
                    assert_eq!(
                        needs_escape(&bytes),
                        naive(&bytes),
                        "{b:#x} at {at} in 0x80s"
                    );
                }
            }
        }
    }

    fn text(f: impl FnOnce(&mut Vec<u8>)) -> String {
        let mut out = Vec::new();
        f(&mut out);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn strings_are_escaped_as_json() {
        assert_eq!(text(|o| push_str(o, "plain")), r#""plain""#);
        assert_eq!(
            text(|o| push_str(o, "a\"b\\c\nd\re\tf\u{1}g\u{1f}")),
            r#""a\"b\\c\nd\re\tf\u0001g\u001f""#
        );
        assert_eq!(text(|o| push_str(o, "süß ✓")), "\"süß ✓\"");
    }

    #[test]
    fn numbers_are_json() {
        assert_eq!(text(|o| push_f64(o, 0.0134)), "0.0134");
        assert_eq!(text(|o| push_f64(o, 1.0)), "1.0");
        assert_eq!(text(|o| push_f64(o, 1e-7)), "1e-7");
        assert_eq!(text(|o| push_f64(o, f64::NAN)), "null");
        assert_eq!(text(|o| push_f64(o, f64::NEG_INFINITY)), "null");
        assert_eq!(text(|o| push_i64(o, -42)), "-42");
        assert_eq!(round4(0.012_345_6), 0.0123);
    }

    #[test]
    fn iso_times() {
        let iso = |e: f64| text(|o| push_iso_millis(o, e).unwrap());
        assert_eq!(iso(0.0), "1970-01-01T00:00:00.000Z");
        assert_eq!(iso(1_780_672_092.345_6), "2026-06-05T15:08:12.345Z");
        // 999999.6 µs rounds up into the next second; 1.9999995 is 999999.4999... µs.
        assert_eq!(iso(0.999_999_6), "1970-01-01T00:00:01.000Z");
        assert_eq!(iso(1.999_999_5), "1970-01-01T00:00:01.999Z");
        assert_eq!(iso(951_782_400.0), "2000-02-29T00:00:00.000Z");
        assert_eq!(iso(-0.25), "1969-12-31T23:59:59.750Z");
        assert_eq!(iso(-62_135_596_800.0), "0001-01-01T00:00:00.000Z");
        assert_eq!(iso(253_402_300_799.0), "9999-12-31T23:59:59.000Z");
        for bad in [
            f64::NAN,
            f64::INFINITY,
            253_402_300_800.0,
            -62_135_596_801.0,
        ] {
            assert!(push_iso_millis(&mut Vec::new(), bad).is_err());
        }
    }

    #[test]
    fn known_secrets_are_masked_longest_first() {
        let secrets = Secrets::new([b"abcd".to_vec(), b"abcdef".to_vec(), b"xy".to_vec()]);
        assert_eq!(secrets.mask(b"nothing here xy"), None);
        assert_eq!(
            secrets.mask(b"k=abcdefg abcd.").unwrap(),
            b"k=[REDACTED]g [REDACTED].".to_vec()
        );
        assert_eq!(Secrets::new([]).mask(b"abcd"), None);
    }
}
