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
//!   worker's breaker opens and read by every worker before it calls that deployment;
//! * **requests in flight** (a gateway key's `max_concurrent`): each worker *joins* the
//!   region as a member (a numbered member word holding its pid and a generation) and counts
//!   its own requests of a name in its own word; the total is the sum over the current
//!   members. A worker that dies is evicted (its member word vacated) and its counts stop
//!   counting at once, without anyone having to find and zero them: a count is tagged with
//!   its member's generation, and a count of an older generation reads as 0.
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

    /// The value word of `key` if it has one, without claiming a slot (probing stops at the
    /// first empty slot: slots are never freed, so `key` is not further on).
    pub fn find(&self, key: u64) -> Option<&AtomicU64> {
        let key = key.max(1);
        let words = self.words();
        let start = (key % self.slots as u64) as usize;
        for probe in 0..self.slots {
            let i = (start + probe) % self.slots;
            match words.get(HEADER_WORDS + 2 * i)?.load(Ordering::Acquire) {
                found if found == key => return words.get(HEADER_WORDS + 2 * i + 1),
                0 => return None,
                _ => continue,
            }
        }
        None
    }

    /// Joins the region as a member for in-flight counts, as process `pid` (non-zero): the
    /// first vacant member word is claimed with the next generation. `None` when every one
    /// of the [`MEMBERS`] words is taken or the region is full.
    pub fn join(&self, pid: u32) -> Option<Member> {
        if pid == 0 {
            return None;
        }
        for index in 0..MEMBERS {
            let word = self.slot(member_key(index))?;
            let mut cur = word.load(Ordering::SeqCst);
            while member_pid(cur) == 0 {
                let gen = member_gen(cur).wrapping_add(1).max(1);
                let new = pack(gen, pid);
                match word.compare_exchange(cur, new, Ordering::SeqCst, Ordering::SeqCst) {
                    Ok(_) => return Some(Member { index, pid, gen }),
                    Err(actual) => cur = actual,
                }
            }
        }
        None
    }

    /// Whether `member` still holds its member word (it was not evicted, nor left).
    pub fn is_member(&self, member: &Member) -> bool {
        self.find(member_key(member.index))
            .is_some_and(|w| w.load(Ordering::SeqCst) == pack(member.gen, member.pid))
    }

    /// The current members: `(index, pid)` of each taken member word.
    pub fn members(&self) -> Vec<(usize, u32)> {
        (0..MEMBERS)
            .filter_map(|index| {
                let pid = member_pid(self.find(member_key(index))?.load(Ordering::SeqCst));
                (pid != 0).then_some((index, pid))
            })
            .collect()
    }

    /// Vacates member word `index` if `pid` holds it (a process that left or died): its
    /// in-flight counts stop counting. Whether it was vacated here.
    pub fn evict(&self, index: usize, pid: u32) -> bool {
        if index >= MEMBERS || pid == 0 {
            return false;
        }
        let Some(word) = self.find(member_key(index)) else {
            return false;
        };
        let cur = word.load(Ordering::SeqCst);
        member_pid(cur) == pid
            && word
                .compare_exchange(
                    cur,
                    pack(member_gen(cur), 0),
                    Ordering::SeqCst,
                    Ordering::SeqCst,
                )
                .is_ok()
    }

    /// One more request of `name` (a [`key_hash`]) in flight for `member`, if fewer than
    /// `limit` are in flight across every member. `None` when the region is full or
    /// `member` was evicted (the caller falls back to its local count).
    ///
    /// Never over-grants: the member's own count is raised first (sequentially consistent)
    /// and the total read after, so of two racing requests at least the later one sees both
    /// (both may be refused: a refusal is the safe side).
    pub fn acquire_in_flight(&self, name: u64, member: &Member, limit: u32) -> Option<bool> {
        if !self.is_member(member) {
            return None; // evicted: its counts would not count, so it must not grant
        }
        let own = self.slot(counter_key(name, member.index))?;
        let mut cur = own.load(Ordering::SeqCst);
        loop {
            let count = if member_gen(cur) == member.gen {
                member_pid(cur)
            } else {
                0
            };
            let new = pack(member.gen, count.saturating_add(1));
            match own.compare_exchange_weak(cur, new, Ordering::SeqCst, Ordering::SeqCst) {
                Ok(_) => break,
                Err(actual) => cur = actual,
            }
        }
        if self.in_flight(name) > u64::from(limit) {
            self.release_in_flight(name, member);
            return Some(false);
        }
        Some(true)
    }

    /// One request of `name` admitted by [`Self::acquire_in_flight`] for `member` is over.
    pub fn release_in_flight(&self, name: u64, member: &Member) {
        let Some(own) = self.find(counter_key(name, member.index)) else {
            return;
        };
        let mut cur = own.load(Ordering::SeqCst);
        loop {
            if member_gen(cur) != member.gen || member_pid(cur) == 0 {
                return; // nothing of ours to release (evicted, or never counted)
            }
            let new = pack(member.gen, member_pid(cur) - 1);
            match own.compare_exchange_weak(cur, new, Ordering::SeqCst, Ordering::SeqCst) {
                Ok(_) => return,
                Err(actual) => cur = actual,
            }
        }
    }

    /// Requests of `name` in flight across the current members.
    pub fn in_flight(&self, name: u64) -> u64 {
        (0..MEMBERS)
            .filter_map(|index| {
                let m = self.find(member_key(index))?.load(Ordering::SeqCst);
                if member_pid(m) == 0 {
                    return None;
                }
                let c = self.find(counter_key(name, index))?.load(Ordering::SeqCst);
                (member_gen(c) == member_gen(m)).then_some(u64::from(member_pid(c)))
            })
            .sum()
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

/// Member words for in-flight counts (processes taking part at once, reloads included).
pub const MEMBERS: usize = 64;

/// A process that joined a region ([`SharedRegion::join`]): its member word and generation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Member {
    pub index: usize,
    pub pid: u32,
    pub gen: u32,
}

// A member word and an in-flight count word are both (generation << 32) | low, where low is
// the pid (0: vacant) or the count.
#[inline]
fn pack(gen: u32, low: u32) -> u64 {
    (u64::from(gen) << 32) | u64::from(low)
}

#[inline]
fn member_gen(word: u64) -> u32 {
    (word >> 32) as u32
}

#[inline]
fn member_pid(word: u64) -> u32 {
    word as u32
}

fn member_key(index: usize) -> u64 {
    key_hash("member", &index.to_string())
}

fn counter_key(name: u64, index: usize) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    "inflight".hash(&mut h);
    name.hash(&mut h);
    index.hash(&mut h);
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
    fn in_flight_is_counted_across_members_and_a_dead_member_stops_counting() {
        let (a, path) = region(64);
        let b = SharedRegion::open(&path, 64).unwrap();
        let name = key_hash("inflight", "key-1");
        let ma = a.join(100).unwrap();
        let mb = b.join(200).unwrap();
        assert_ne!(ma.index, mb.index);
        assert_eq!(a.members(), vec![(ma.index, 100), (mb.index, 200)]);
        assert_eq!(a.acquire_in_flight(name, &ma, 3), Some(true));
        assert_eq!(b.acquire_in_flight(name, &mb, 3), Some(true));
        assert_eq!(b.acquire_in_flight(name, &mb, 3), Some(true));
        assert_eq!(a.acquire_in_flight(name, &ma, 3), Some(false));
        assert_eq!(a.in_flight(name), 3);
        // Another name is another count.
        assert_eq!(
            a.acquire_in_flight(key_hash("inflight", "key-2"), &ma, 1),
            Some(true)
        );
        // b dies with two in flight: evicting it frees them at once.
        assert!(a.evict(mb.index, 200));
        assert!(!a.evict(mb.index, 200));
        assert_eq!(a.in_flight(name), 1);
        // A new process takes b's member word: b's old counts stay forgotten.
        let mc = a.join(300).unwrap();
        assert_eq!(mc.index, mb.index);
        assert_eq!(mc.gen, mb.gen + 1);
        assert_eq!(a.in_flight(name), 1);
        // The old b releasing after its eviction changes nothing; acquiring is refused.
        b.release_in_flight(name, &mb);
        assert_eq!(a.in_flight(name), 1);
        assert!(!b.is_member(&mb) && a.is_member(&mc));
        assert_eq!(b.acquire_in_flight(name, &mb, 100), None);
        assert_eq!(a.acquire_in_flight(name, &mc, 3), Some(true));
        a.release_in_flight(name, &ma);
        a.release_in_flight(name, &ma); // one too many: saturates at 0
        assert_eq!(a.in_flight(name), 1);
        assert!(a.join(0).is_none());
        std::fs::remove_file(path).unwrap();
    }

    #[test]
    fn racing_threads_never_exceed_the_in_flight_limit() {
        let (region, path) = region(256);
        let region = std::sync::Arc::new(region);
        let name = key_hash("inflight", "k");
        // `held`: requests granted and not yet released (the tentative raises of refused
        // requests are not held); it must never pass the limit.
        let held = std::sync::Arc::new(AtomicU64::new(0));
        let peak = std::sync::Arc::new(AtomicU64::new(0));
        let threads: Vec<_> = (0..4u32)
            .map(|t| {
                let region = std::sync::Arc::clone(&region);
                let (held, peak) = (std::sync::Arc::clone(&held), std::sync::Arc::clone(&peak));
                std::thread::spawn(move || {
                    let me = region.join(1000 + t).unwrap();
                    for _ in 0..2000 {
                        if region.acquire_in_flight(name, &me, 2) == Some(true) {
                            peak.fetch_max(
                                held.fetch_add(1, Ordering::SeqCst) + 1,
                                Ordering::SeqCst,
                            );
                            held.fetch_sub(1, Ordering::SeqCst);
                            region.release_in_flight(name, &me);
                        }
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert!(peak.load(Ordering::SeqCst) <= 2);
        assert_eq!(region.in_flight(name), 0);
        std::fs::remove_file(path).unwrap();
    }

    #[test]
    fn members_run_out_and_find_never_claims() {
        let (a, path) = region(256);
        let joined: Vec<_> = (1..=MEMBERS as u32).map(|p| a.join(p).unwrap()).collect();
        assert!(a.join(9999).is_none());
        assert!(a.evict(joined[5].index, 6));
        assert_eq!(a.join(9999).unwrap().index, joined[5].index);
        let before = a.used();
        assert!(a.find(key_hash("nothing", "here")).is_none());
        assert_eq!(a.used(), before);
        assert!(!a.evict(MEMBERS, 1));
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

    use proptest::prelude::*;

    fn scratch(tag: &str) -> std::path::PathBuf {
        std::env::temp_dir().join(format!(
            "hedgerow-region-prop-{}-{}-{}",
            std::process::id(),
            tag,
            key_hash("t", &format!("{:?}", std::time::Instant::now()))
        ))
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(200))]

        /// A region file of any size and content (a stale file, another program's, one
        /// cut short or corrupted) is refused with an error or decoded without a panic, and
        /// every operation on what it decodes stays in bounds.
        #[test]
        fn any_file_opens_or_fails_without_panicking(
            bytes in prop::collection::vec(any::<u8>(), 0..2048),
            zero_header in any::<bool>(),
            slots in 1usize..48,
            keys in prop::collection::vec(any::<u64>(), 0..20),
        ) {
            let path = scratch("bytes");
            let mut bytes = bytes;
            if zero_header {
                for b in bytes.iter_mut().take(16) {
                    *b = 0;
                }
            }
            std::fs::write(&path, &bytes).unwrap();
            if let Ok(region) = SharedRegion::open(&path, slots) {
                let gcra = Gcra::new(10.0, 1.0, None).unwrap();
                for &k in &keys {
                    if let Some(w) = region.slot(k) {
                        let _ = gcra_acquire(w, &gcra, gcra.cost_ns(1.0).unwrap(), k);
                        trip(w, k);
                        clear(w, k);
                    }
                    let _ = region.find(k);
                    let _ = region.in_flight(k);
                }
                let _ = region.members();
                if let Some(me) = region.join(42) {
                    for &k in &keys {
                        if region.acquire_in_flight(k, &me, 3) == Some(true) {
                            region.release_in_flight(k, &me);
                        }
                    }
                    prop_assert!(region.evict(me.index, 42));
                }
                prop_assert!(region.used() <= slots);
            }
            std::fs::remove_file(&path).unwrap();
        }

        /// Garbage in the words of a valid region (counts at their maximum, members of
        /// dead processes, generations about to wrap) never panics and never lets the total
        /// in flight past the limit through one member's acquisitions.
        #[test]
        fn garbage_words_in_a_valid_region_never_panic(
            garbage in prop::collection::vec(any::<u64>(), 0..300),
            limit in 0u32..5,
        ) {
            let path = scratch("words");
            let region = SharedRegion::open(&path, 128).unwrap();
            for (i, g) in garbage.iter().enumerate() {
                if let Some(w) = region.words().get(HEADER_WORDS + i) {
                    w.store(*g, Ordering::Relaxed);
                }
            }
            let name = key_hash("inflight", "k");
            if let Some(me) = region.join(7) {
                let before = region.in_flight(name);
                let mut mine = 0u64;
                for _ in 0..6 {
                    if region.acquire_in_flight(name, &me, limit) == Some(true) {
                        mine += 1;
                    }
                }
                prop_assert!(mine == 0 || before + mine <= u64::from(limit));
                for _ in 0..8 {
                    region.release_in_flight(name, &me);
                }
            }
            let _ = region.members();
            std::fs::remove_file(&path).unwrap();
        }
    }
}
