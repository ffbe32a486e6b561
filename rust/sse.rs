//! The passthrough scanner's native half (`PassthroughScanner` in `formats/sse.py`): which
//! events of a run of whole SSE events are "loud", i.e. may carry an error, a tool call, the
//! usage or the end, and so must reach the format's decoder. The others are content only and
//! go to the client unparsed.
//!
//! Events are cut exactly as Python's `region.split(b"\n\n")` cuts them: left to right at
//! each non-overlapping `\n\n`, empty pieces skipped; an event is its piece plus the `\n\n`
//! that ends it. An event is quiet when the Python rule of its dialect (`quiet_events` in
//! `formats/openai.py` / `formats/anthropic.py`, the reference) says so of that one event.
//! The rules below are those rules specialised to one event, which is why they are shorter:
//! an event holds exactly one `\n\n` (a piece holds none and never ends in `\n`, else the
//! split would have cut earlier), so "as many `}\n\n` as `\n\n`" is "the piece ends in `}`".
//!
//! Counts follow `bytes.count`: non-overlapping, leftmost first. `"usage"` can overlap
//! itself (`"usage"usage":null` holds two, `count` sees one), so the counts are kept the
//! same way rather than occurrence by occurrence.
//!
//! Each event is searched with `memmem` finders built once (a few tens of ns per ~300-byte
//! OpenAI chunk each); one pass over every `"` of the event instead was 3x slower, JSON being
//! mostly quotes.
//!
//! Nothing here can panic on any input: every index is checked (`get`, `starts_with`).

use std::sync::LazyLock;

use memchr::memchr;
use memchr::memmem::Finder;

use crate::error::ArgError;

/// Whose rule says which events are quiet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dialect {
    /// `formats/openai.py::quiet_events`: no `[DONE]`, error, tool call, usage or finish
    /// reason, and the data ends in `}`.
    OpenAi,
    /// `formats/anthropic.py::quiet_events`: one `content_block_delta` or `ping` event, not a
    /// tool's input, no error, and the data ends in `}`.
    Anthropic,
}

impl Dialect {
    /// `"openai"` or `"anthropic"`, the `QUIET_DIALECT` of the format module.
    pub fn parse(name: &str) -> Result<Self, ArgError> {
        match name {
            "openai" => Ok(Self::OpenAi),
            "anthropic" => Ok(Self::Anthropic),
            _ => Err(ArgError(format!(
                "dialect must be 'openai' or 'anthropic', got {name:?}"
            ))),
        }
    }

    /// Whether `event` (a piece plus its `\n\n`, as cut by [`loud_runs`]) is content only.
    pub fn quiet(self, event: &[u8]) -> bool {
        match self {
            Self::OpenAi => openai_quiet(event),
            Self::Anthropic => anthropic_quiet(event),
        }
    }
}

/// The loud events of `region[start..]`, as runs of adjacent loud events: `(begin, end)`
/// byte offsets into `region`, ascending, non-overlapping, each beginning where an event
/// begins and ending where one ends (after its `\n\n`). Feeding the runs to a decoder in
/// order is feeding it every loud event in order.
///
/// `region` should end with `\n\n` (whole events) and `start` sit at an event boundary (0, or
/// just after a `\n\n`). Bytes after the last `\n\n` are not a whole event and always count
/// as loud (the end of the last run is then `region.len()`). This covers the `\n` an odd run
/// of newlines leaves at the end of a region: Python feeds it as `\n\n\n`, which its rule
/// also calls loud, and both are blank lines to an SSE parser. A `start` past the end gives
/// no runs.
pub fn loud_runs(region: &[u8], start: usize, dialect: Dialect) -> Vec<(usize, usize)> {
    let mut runs: Vec<(usize, usize)> = Vec::new();
    let mut add = |begin: usize, end: usize| match runs.last_mut() {
        Some(last) if last.1 == begin => last.1 = end,
        _ => runs.push((begin, end)),
    };
    let mut pos = start;
    while let Some(rest) = region.get(pos..).filter(|r| !r.is_empty()) {
        let Some(cut) = find_blank_line(rest) else {
            add(pos, region.len());
            break;
        };
        let end = pos + cut + 2;
        if cut > 0 && !dialect.quiet(&region[pos..end]) {
            add(pos, end);
        }
        pos = end;
    }
    runs
}

/// The first `\n\n` of `hay` (where `bytes.find(b"\n\n")` finds it).
#[inline]
fn find_blank_line(hay: &[u8]) -> Option<usize> {
    let mut from = 0;
    while let Some(i) = hay.get(from..).and_then(|h| memchr(b'\n', h)) {
        let at = from + i;
        match hay.get(at + 1) {
            Some(b'\n') => return Some(at),
            Some(_) => from = at + 2, // the byte after this `\n` is not one: skip both
            None => return None,
        }
    }
    None
}

/// The data of a single event ends in `}`: its piece's last byte, before the `\n\n`.
#[inline]
fn ends_in_brace(event: &[u8]) -> bool {
    event.len() >= 3 && event[event.len() - 3] == b'}'
}

const USAGE: &[u8] = b"\"usage\"";
const USAGE_NULL: &[u8] = b"\"usage\":null";
const FINISH: &[u8] = b"\"finish_reason\"";
const FINISH_NULL: &[u8] = b"\"finish_reason\":null";

// Built once: a finder's set-up costs about what a search of one event does.
static DONE: LazyLock<Finder<'static>> = LazyLock::new(|| Finder::new(b"[DONE]"));
static ERROR: LazyLock<Finder<'static>> = LazyLock::new(|| Finder::new(b"\"error\""));
static TOOL_CALLS: LazyLock<Finder<'static>> = LazyLock::new(|| Finder::new(b"\"tool_calls\""));
static USAGE_KEY: LazyLock<Finder<'static>> = LazyLock::new(|| Finder::new(USAGE));
static FINISH_KEY: LazyLock<Finder<'static>> = LazyLock::new(|| Finder::new(FINISH));
static EVENT_FIELD: LazyLock<Finder<'static>> = LazyLock::new(|| Finder::new(b"event:"));
static INPUT_JSON: LazyLock<Finder<'static>> = LazyLock::new(|| Finder::new(b"input_json_delta"));

/// `event.count(key) == event.count(null)`, `null` being `key` followed by `:null`.
///
/// `key` may overlap itself, so every occurrence is visited (each search restarts one byte
/// on) and `bytes.count`'s tally kept: an occurrence counts if it starts at or after the end
/// of the last one counted. `null` cannot overlap itself: all its occurrences count.
fn only_nulls(event: &[u8], key: &Finder<'_>, null: &[u8]) -> bool {
    let len = key.needle().len();
    let (mut keys, mut nulls) = (0usize, 0usize);
    let (mut from, mut next) = (0usize, 0usize);
    while let Some(i) = event.get(from..).and_then(|h| key.find(h)) {
        let at = from + i;
        if at >= next {
            keys += 1;
            next = at + len;
        }
        nulls += usize::from(event[at..].starts_with(null));
        from = at + 1;
    }
    keys == nulls
}

fn openai_quiet(event: &[u8]) -> bool {
    ends_in_brace(event)
        && DONE.find(event).is_none()
        && ERROR.find(event).is_none()
        && TOOL_CALLS.find(event).is_none()
        && only_nulls(event, &USAGE_KEY, USAGE_NULL)
        && only_nulls(event, &FINISH_KEY, FINISH_NULL)
}

/// With one `\n\n` and one `}\n\n` in the event, the rule asks for exactly one `event:`,
/// and for it to be `event: content_block_delta\n` or `event: ping\n` (each of those holds an
/// `event:`, so their counts add up to one only then).
fn anthropic_quiet(event: &[u8]) -> bool {
    if !ends_in_brace(event) {
        return false;
    }
    let mut fields = EVENT_FIELD.find_iter(event);
    let (Some(at), None) = (fields.next(), fields.next()) else {
        return false;
    };
    let name = &event[at..];
    (name.starts_with(b"event: content_block_delta\n") || name.starts_with(b"event: ping\n"))
        && INPUT_JSON.find(event).is_none()
        && ERROR.find(event).is_none()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    // -- a straightforward reference: the Python rules, literally ---------------------------

    /// `bytes.count`: non-overlapping, leftmost first.
    fn count(hay: &[u8], needle: &[u8]) -> usize {
        let (mut n, mut i) = (0, 0);
        while i + needle.len() <= hay.len() {
            if &hay[i..i + needle.len()] == needle {
                n += 1;
                i += needle.len();
            } else {
                i += 1;
            }
        }
        n
    }

    fn contains(hay: &[u8], needle: &[u8]) -> bool {
        hay.windows(needle.len()).any(|w| w == needle)
    }

    fn python_quiet(dialect: Dialect, r: &[u8]) -> bool {
        match dialect {
            Dialect::OpenAi => {
                count(r, b"}\n\n") == count(r, b"\n\n")
                    && !contains(r, b"[DONE]")
                    && !contains(r, b"\"error\"")
                    && !contains(r, b"\"tool_calls\"")
                    && count(r, USAGE) == count(r, USAGE_NULL)
                    && count(r, FINISH) == count(r, FINISH_NULL)
            }
            Dialect::Anthropic => {
                let quiet = count(r, b"event: content_block_delta\n") + count(r, b"event: ping\n");
                count(r, b"\n\n") == quiet
                    && count(r, b"}\n\n") == quiet
                    && count(r, b"event:") == quiet
                    && !contains(r, b"input_json_delta")
                    && !contains(r, b"\"error\"")
            }
        }
    }

    /// `PassthroughScanner`'s old loop: `region[start:].split(b"\n\n")`, empty pieces
    /// dropped, each piece plus `\n\n` asked about alone; then loud neighbours joined.
    fn reference(region: &[u8], start: usize, dialect: Dialect) -> Vec<(usize, usize)> {
        let mut runs: Vec<(usize, usize)> = Vec::new();
        let mut pos = start.min(region.len());
        while pos < region.len() {
            let cut = (pos..region.len().saturating_sub(1))
                .find(|&i| region[i] == b'\n' && region[i + 1] == b'\n');
            let (piece_end, end) = match cut {
                Some(i) => (i, i + 2),
                None => (region.len(), region.len()),
            };
            let piece = &region[pos..piece_end];
            if !piece.is_empty() {
                let mut event = piece.to_vec();
                event.extend_from_slice(b"\n\n");
                let unterminated = cut.is_none();
                if unterminated || !python_quiet(dialect, &event) {
                    match runs.last_mut() {
                        Some(last) if last.1 == pos => last.1 = end,
                        _ => runs.push((pos, end)),
                    }
                }
            }
            pos = end;
        }
        runs
    }

    const OAI_TEXT: &[u8] = b"data: {\"id\":\"c1\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\" x\"},\"finish_reason\":null}],\"usage\":null}\n\n";
    const OAI_FINISH: &[u8] =
        b"data: {\"id\":\"c1\",\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"stop\"}],\"usage\":null}\n\n";
    const OAI_USAGE: &[u8] =
        b"data: {\"id\":\"c1\",\"choices\":[],\"usage\":{\"prompt_tokens\":5,\"completion_tokens\":7}}\n\n";
    const OAI_DONE: &[u8] = b"data: [DONE]\n\n";
    const ANT_TEXT: &[u8] = b"event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\" x\"}}\n\n";
    const ANT_PING: &[u8] = b"event: ping\ndata: {\"type\": \"ping\"}\n\n";
    const ANT_STOP: &[u8] = b"event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n";

    #[test]
    fn content_is_quiet_and_the_end_is_loud() {
        let mut region = OAI_TEXT.repeat(3);
        let tail = region.len();
        region.extend_from_slice(OAI_FINISH);
        region.extend_from_slice(OAI_USAGE);
        region.extend_from_slice(OAI_DONE);
        assert_eq!(
            loud_runs(&region, 0, Dialect::OpenAi),
            [(tail, region.len())]
        );
        assert!(loud_runs(&OAI_TEXT.repeat(20), 0, Dialect::OpenAi).is_empty());

        let mut region = [ANT_TEXT, ANT_PING, ANT_TEXT].concat();
        let tail = region.len();
        region.extend_from_slice(ANT_STOP);
        assert_eq!(
            loud_runs(&region, 0, Dialect::Anthropic),
            [(tail, region.len())]
        );
    }

    #[test]
    fn a_loud_event_amid_quiet_ones_is_its_own_run() {
        let error = b"data: {\"error\":{\"message\":\"x\"}}\n\n";
        let region = [OAI_TEXT, error, OAI_TEXT].concat();
        let at = OAI_TEXT.len();
        assert_eq!(
            loud_runs(&region, 0, Dialect::OpenAi),
            [(at, at + error.len())]
        );
        // From `start` on only: the error is before it.
        assert!(loud_runs(&region, at + error.len(), Dialect::OpenAi).is_empty());
    }

    #[test]
    fn json_cut_short_is_loud() {
        let cut = b"data: {\"id\":\"c1\",\"choices\":[{\"delta\":{\"content\":\"tru\n\n";
        assert_eq!(loud_runs(cut, 0, Dialect::OpenAi), [(0, cut.len())]);
        let cut = b"event: content_block_delta\ndata: {\"type\":\"content_block_delta\n\n";
        assert_eq!(loud_runs(cut, 0, Dialect::Anthropic), [(0, cut.len())]);
    }

    #[test]
    fn self_overlapping_usage_counts_as_python_counts_it() {
        // `count` sees one `"usage"` and one `"usage":null` here: quiet, as in Python.
        let event = b"data: {\"usage\"usage\":null}\n\n";
        assert!(python_quiet(Dialect::OpenAi, event));
        assert!(loud_runs(event, 0, Dialect::OpenAi).is_empty());
        let event = b"data: {\"usage\"usage\"usage\":null}\n\n";
        assert!(!python_quiet(Dialect::OpenAi, event));
        assert_eq!(loud_runs(event, 0, Dialect::OpenAi), [(0, event.len())]);
    }

    #[test]
    fn cuts_where_split_cuts() {
        // An odd run of newlines: the spare `\n` opens the next piece, or is left at the end.
        let region = [&b"data: {}\n\n\ndata: [DONE]\n\n\n"[..]].concat();
        assert_eq!(loud_runs(&region, 0, Dialect::OpenAi), [(10, region.len())]);
        assert_eq!(reference(&region, 0, Dialect::OpenAi), [(10, region.len())]);
        // Empty pieces between events are skipped.
        let region = b"data: {}\n\n\n\n\n\ndata: {}\n\n";
        assert!(loud_runs(region, 0, Dialect::OpenAi).is_empty());
        assert!(loud_runs(b"", 0, Dialect::OpenAi).is_empty());
        assert!(loud_runs(b"\n\n", 0, Dialect::Anthropic).is_empty());
        assert!(loud_runs(OAI_TEXT, OAI_TEXT.len() + 5, Dialect::OpenAi).is_empty());
        assert_eq!(loud_runs(b"data: {}", 0, Dialect::OpenAi), [(0, 8)]);
    }

    #[test]
    fn dialect_names() {
        assert_eq!(Dialect::parse("openai"), Ok(Dialect::OpenAi));
        assert_eq!(Dialect::parse("anthropic"), Ok(Dialect::Anthropic));
        assert!(Dialect::parse("gemini")
            .unwrap_err()
            .0
            .starts_with("dialect"));
    }

    /// Byte soups from the fragments the rules look at, plus arbitrary bytes.
    fn soup() -> impl Strategy<Value = Vec<u8>> {
        let fragment = prop_oneof![
            Just(b"data: ".to_vec()),
            Just(b"}".to_vec()),
            Just(b"{".to_vec()),
            Just(b"\n".to_vec()),
            Just(b"\n\n".to_vec()),
            Just(b"\"usage\":null".to_vec()),
            Just(b"\"usage\"".to_vec()),
            Just(b"usage\":null".to_vec()),
            Just(b"[DONE]".to_vec()),
            Just(b"\"finish_reason\"".to_vec()),
            Just(b"\"finish_reason\":null".to_vec()),
            Just(b"finish_reason\"".to_vec()),
            Just(b"\"error\"".to_vec()),
            Just(b"\"tool_calls\"".to_vec()),
            Just(b"event: content_block_delta\n".to_vec()),
            Just(b"event: ping\n".to_vec()),
            Just(b"event:".to_vec()),
            Just(b"input_json_delta".to_vec()),
            Just(OAI_TEXT.to_vec()),
            Just(ANT_TEXT.to_vec()),
            prop::collection::vec(any::<u8>(), 0..6),
        ];
        prop::collection::vec(fragment, 0..40).prop_map(|parts| parts.concat())
    }

    fn dialect() -> impl Strategy<Value = Dialect> {
        prop_oneof![Just(Dialect::OpenAi), Just(Dialect::Anthropic)]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(4000))]

        #[test]
        fn agrees_with_the_python_rule(mut region in soup(), dialect in dialect(), skip in 0usize..4) {
            region.extend_from_slice(b"\n\n");
            // Start after one of the first event boundaries, as the scanner does after commit.
            let start = (0..skip).fold(0, |pos, _| match find_blank_line(&region[pos..]) {
                Some(i) if pos + i + 2 < region.len() => pos + i + 2,
                _ => pos,
            });
            prop_assert_eq!(loud_runs(&region, start, dialect), reference(&region, start, dialect));
        }

        #[test]
        fn never_panics_and_runs_are_well_formed(
            region in prop_oneof![soup(), prop::collection::vec(any::<u8>(), 0..300)],
            dialect in dialect(),
            start in 0usize..400,
        ) {
            let runs = loud_runs(&region, start, dialect);
            prop_assert_eq!(&runs, &reference(&region, start, dialect));
            let mut last = start;
            for &(begin, end) in &runs {
                prop_assert!(last <= begin && begin < end && end <= region.len());
                prop_assert!(end == region.len() || region[..end].ends_with(b"\n\n"));
                prop_assert!(begin == start || region[..begin].ends_with(b"\n\n"));
                last = end;
            }
        }
    }
}
