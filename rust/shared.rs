//! Health state shared between processes on one host: a file-backed region of atomic words.
//!
//! `hedgerow serve --workers N` runs N processes; each keeps its own breakers, windows and
//! buckets (in [`crate::breaker`], [`crate::window`], [`crate::bucket`]), and the state that
//! must hold across them lives here, in a file mapped into every worker (under `/dev/shm`, so
//! it is memory, not disk):
//!
//! * **rate limits**: one GCRA TAT word per limit, updated with the same compare-and-swap
//!   loop as [`crate::bucket::TokenBucket`], so N workers together grant the limit, not N
//!   times it;
//! * **breaker trips**: one "open until" word per deployment, raised with `fetch_max` when a
//!   worker's breaker opens and read by every worker before it calls that deployment.
//!
//! Layout: a header (magic, slot count), then `slots` pairs of words (key hash, value).
//! A key claims its slot by compare-and-swap of the key word from 0 (linear probing), so
//! workers started with different configs (a rolling reload) still agree on where a key
//! lives without any coordination. Time is the system-wide monotonic clock
//! (`CLOCK_MONOTONIC`, the same in every process), in nanoseconds.

use std::fs::OpenOptions;
use std::hash::{Hash, Hasher};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

use memmap2::MmapMut;

use crate::bucket::{Decision, Gcra};

const MAGIC: u64 = 0x6865_6467_6572_6f77; // "hedgerow"
const HEADER_WORDS: usize = 2;

/// A mapped region of `slots` keyed atomic words.
pub struct SharedRegion {
    map: MmapMut,
    slots: usize,
}

/// Why a region could not be opened.
#[derive(Debug)]
pub struct RegionError(pub String);

impl SharedRegion {
    /// Opens (creating and sizing when new) the region file at `path` with `slots` slots.
    /// Every process must pass the same `slots` (checked against the header).
    pub fn open(path: &Path, slots: usize) -> Result<SharedRegion, RegionError> {
        if slots == 0 || slots > (1 << 24) {
            return Err(RegionError(format!(
                "slots must be in 1..=16777216, got {slots}"
            )));
        }
        let len = (HEADER_WORDS + 2 * slots) * 8;
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)
            .map_err(|e| RegionError(format!("{}: {e}", path.display())))?;
        let current = file
            .metadata()
            .map_err(|e| RegionError(format!("{}: {e}", path.display())))?
            .len();
        if current < len as u64 {
            // A new file reads as zeros: every slot empty. Growing an existing one is refused
            // below by the header check, so this only ever sizes a fresh file.
            file.set_len(len as u64)
                .map_err(|e| RegionError(format!("{}: {e}", path.display())))?;
        }
        // SAFETY: the file is hedgerow's own region (created above or by a sibling worker)
        // and is never truncated while mapped; every access to the mapped bytes goes through
        // atomics (see `words`), so concurrent writers in other processes are not a data race.
        let map = unsafe { MmapMut::map_mut(&file) }
            .map_err(|e| RegionError(format!("{}: mmap: {e}", path.display())))?;
        if map.len() < len {
            return Err(RegionError(format!(
                "{}: region is too small",
                path.display()
            )));
        }
        let region = SharedRegion { map, slots };
        let words = region.words();
        match words[0].compare_exchange(0, MAGIC, Ordering::AcqRel, Ordering::Acquire) {
            Ok(_) => words[1].store(slots as u64, Ordering::Release),
            Err(MAGIC) => {}
            Err(_) => {
                return Err(RegionError(format!(
                    "{}: not a hedgerow region",
                    path.display()
                )))
            }
        }
        let stored = words[1].load(Ordering::Acquire);
        if stored != 0 && stored != slots as u64 {
            return Err(RegionError(format!(
                "{}: region has {stored} slots, not {slots}",
                path.display()
            )));
        }
        Ok(region)
    }

    #[inline]
    fn words(&self) -> &[AtomicU64] {
        let ptr = self.map.as_ptr() as *const AtomicU64;
        let n = (HEADER_WORDS + 2 * self.slots).min(self.map.len() / 8);
        // SAFETY: the mapping is page-aligned (so 8-byte aligned), at least `n * 8` bytes
        // long (checked in `open`), and lives as long as `self`; `AtomicU64` has the size and
        // alignment of `u64`, and the bytes are only ever accessed as atomics.
        unsafe { std::slice::from_raw_parts(ptr, n) }
    }

    /// The value word of `key`, claiming a free slot for it when it has none yet.
    /// `None` when the region is full (the caller falls back to its local state).
    pub fn slot(&self, key: u64) -> Option<&AtomicU64> {
        let key = key.max(1); // 0 marks an empty slot
        let words = self.words();
        let start = (key % self.slots as u64) as usize;
        for probe in 0..self.slots {
            let i = (start + probe) % self.slots;
            let k = &words[HEADER_WORDS + 2 * i];
            let v = &words[HEADER_WORDS + 2 * i + 1];
            match k.load(Ordering::Acquire) {
                found if found == key => return Some(v),
                0 => match k.compare_exchange(0, key, Ordering::AcqRel, Ordering::Acquire) {
                    Ok(_) => return Some(v),
                    Err(found) if found == key => return Some(v),
                    Err(_) => continue,
                },
                _ => continue,
            }
        }
        None
    }

    /// Slots in use.
    pub fn used(&self) -> usize {
        let words = self.words();
        (0..self.slots)
            .filter(|i| words[HEADER_WORDS + 2 * i].load(Ordering::Relaxed) != 0)
            .count()
    }
}

/// A stable 64-bit hash of a key name (the same in every process running this build).
pub fn key_hash(kind: &str, name: &str) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    kind.hash(&mut h);
    name.hash(&mut h);
    h.finish()
}

/// GCRA on a shared TAT word: the loop of [`crate::bucket::TokenBucket::acquire_ns`].
#[inline]
pub fn gcra_acquire(word: &AtomicU64, gcra: &Gcra, inc: u64, now: u64) -> Decision {
    let mut tat = word.load(Ordering::Relaxed);
    loop {
        let d = gcra.decide(tat, now, inc);
        let Decision::Grant(new_tat) = d else {
            return d;
        };
        if new_tat == tat {
            return d;
        }
        match word.compare_exchange_weak(tat, new_tat, Ordering::Relaxed, Ordering::Relaxed) {
            Ok(_) => return d,
            Err(actual) => tat = actual,
        }
    }
}

/// Raise an "open until" word to `until` (a later trip wins; an earlier one changes nothing).
#[inline]
pub fn trip(word: &AtomicU64, until: u64) {
    word.fetch_max(until, Ordering::AcqRel);
}

/// Clear an "open until" word that is not later than `until` (a probe succeeded here; a
/// newer trip elsewhere stands).
#[inline]
pub fn clear(word: &AtomicU64, until: u64) {
    let cur = word.load(Ordering::Acquire);
    if cur != 0 && cur <= until {
        let _ = word.compare_exchange(cur, 0, Ordering::AcqRel, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn region(slots: usize) -> (SharedRegion, std::path::PathBuf) {
        let path = std::env::temp_dir().join(format!(
            "hedgerow-region-test-{}-{}",
            std::process::id(),
            key_hash("t", &format!("{:?}", std::time::Instant::now()))
        ));
        (SharedRegion::open(&path, slots).unwrap(), path)
    }

    #[test]
    fn two_mappings_share_one_limit() {
        let (a, path) = region(16);
        let b = SharedRegion::open(&path, 16).unwrap();
        let gcra = Gcra::new(10.0, 1.0, None).unwrap();
        let key = key_hash("rpm", "oai/gpt");
        let (wa, wb) = (a.slot(key).unwrap(), b.slot(key).unwrap());
        let inc = gcra.cost_ns(1.0).unwrap();
        let granted = (0..40)
            .filter(|i| {
                let w = if i % 2 == 0 { wa } else { wb };
                matches!(
                    gcra_acquire(w, &gcra, inc, 1_000_000_000),
                    Decision::Grant(_)
                )
            })
            .count();
        assert_eq!(granted, 10);
        std::fs::remove_file(path).unwrap();
    }

    #[test]
    fn slot_count_mismatch_and_full_region() {
        let (a, path) = region(2);
        assert!(SharedRegion::open(&path, 3).is_err());
        assert!(a.slot(1).is_some() && a.slot(2).is_some());
        assert!(a.slot(3).is_none());
        assert_eq!(a.used(), 2);
        assert!(SharedRegion::open(&path, 0).is_err());
        std::fs::remove_file(path).unwrap();
    }

    #[test]
    fn trips_keep_the_latest_and_clear_only_what_it_saw() {
        let w = AtomicU64::new(0);
        trip(&w, 50);
        trip(&w, 30);
        assert_eq!(w.load(Ordering::Relaxed), 50);
        clear(&w, 40);
        assert_eq!(w.load(Ordering::Relaxed), 50);
        clear(&w, 50);
        assert_eq!(w.load(Ordering::Relaxed), 0);
    }
}
