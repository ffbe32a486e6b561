//! A ring of time slots whose counters reset themselves: the storage behind
//! [`crate::window::SlidingWindow`] and the breaker's failure-rate window.
//!
//! Time is cut into periods ("epochs") of `slot_ns`; epoch `e` lives in slot `e % slots`.
//! Each slot has a full 64-bit `epoch` word (the newest epoch written there, plus one, so 0
//! means never used) and `width` counters. A counter is one `AtomicU64` holding
//! `tag (low 32 bits of its epoch) << 32 | count (32 bits, saturating)`.
//!
//! **No reset race, nothing lost.** A stale slot is never cleared in bulk. A writer
//! increments a counter with one compare-and-swap that either adds to the count (tag is the
//! writer's epoch) or replaces an older count with `(epoch, n)`; a reader only counts a
//! counter whose tag is the epoch it expects for that slot. So a record can never be wiped by
//! a concurrent reset, and a reader never sees a half-reset slot. The slot's `epoch` word
//! (advanced with `fetch_max` *before* a counter is written) makes the older/newer decision
//! exact: a counter's full epoch is rebuilt from its 32-bit tag and the slot epoch, so a
//! record whose time is older than what the slot now holds (a caller with a stale `now`,
//! more than one window in the past) is dropped instead of overwriting newer counts.
//!
//! The only approximation is the 32-bit tag a *reader* compares: a counter untouched for an
//! exact multiple of 2^32 periods (136 years with 1 s slots) would alias. Each count
//! saturates at 2^32 - 1 per slot period.
//!
//! Memory ordering: a writer's `fetch_max` on the slot epoch is `AcqRel` and its counter CAS
//! is `AcqRel`; a writer loads the counter (`Acquire`) *before* the slot epoch, so the slot
//! epoch it sees is at least the one the counter's last writer published. That is the only
//! cross-word dependency; readers need no ordering beyond each word's own coherence.

use std::sync::atomic::{AtomicU64, Ordering};

/// Counters are 32-bit counts tagged with the low 32 bits of their epoch.
#[inline]
fn pack(tag: u32, count: u32) -> u64 {
    (u64::from(tag) << 32) | u64::from(count)
}

#[inline]
fn unpack(w: u64) -> (u32, u32) {
    ((w >> 32) as u32, w as u32)
}

/// The self-resetting slot ring. See the module docs.
pub struct Ring {
    slot_ns: u64,
    slots: usize,
    width: usize,
    epochs: Box<[AtomicU64]>,
    cells: Box<[AtomicU64]>,
}

impl std::fmt::Debug for Ring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ring")
            .field("slot_ns", &self.slot_ns)
            .field("slots", &self.slots)
            .field("width", &self.width)
            .finish_non_exhaustive()
    }
}

impl Ring {
    /// A ring of `slots` slots of `slot_ns` nanoseconds, each with `width` counters.
    /// Callers validate `slots >= 1` and `slot_ns >= 1`.
    pub fn new(slot_ns: u64, slots: usize, width: usize) -> Ring {
        let slots = slots.max(1);
        let zeros = |n: usize| (0..n).map(|_| AtomicU64::new(0)).collect::<Box<[_]>>();
        Ring {
            slot_ns: slot_ns.max(1),
            slots,
            width,
            epochs: zeros(slots),
            cells: zeros(slots.saturating_mul(width)),
        }
    }

    /// Width of one slot in nanoseconds.
    pub fn slot_ns(&self) -> u64 {
        self.slot_ns
    }

    /// Number of slots.
    pub fn slots(&self) -> usize {
        self.slots
    }

    /// The epoch (period number) of a time.
    #[inline]
    pub fn epoch_of(&self, now_ns: u64) -> u64 {
        now_ns / self.slot_ns
    }

    /// Claims the slot of epoch `e` for writing; `None` when the slot already holds a newer
    /// epoch (the record is older than the window and is dropped).
    #[inline]
    pub fn claim(&self, e: u64) -> Option<usize> {
        let idx = (e % self.slots as u64) as usize;
        let want = e.saturating_add(1);
        let cur = self.epochs[idx].load(Ordering::Acquire);
        if cur == want {
            return Some(idx);
        }
        if cur > want {
            return None;
        }
        let prev = self.epochs[idx].fetch_max(want, Ordering::AcqRel);
        if prev > want {
            None
        } else {
            Some(idx)
        }
    }

    /// Adds `by` to counter `cell` of the claimed slot `idx` for epoch `e`.
    #[inline]
    pub fn bump(&self, idx: usize, e: u64, cell: usize, by: u32) {
        let word = &self.cells[idx * self.width + cell];
        let tag = e as u32;
        let mut w = word.load(Ordering::Acquire);
        loop {
            let (t, c) = unpack(w);
            let next = if c == 0 {
                pack(tag, by) // empty: nothing to lose
            } else {
                // Rebuild the counter's full epoch from its tag and the slot's newest epoch
                // (loaded after the counter, so it covers the counter's last writer).
                let slot_epoch = self.epochs[idx].load(Ordering::Acquire).saturating_sub(1);
                let back = u64::from((slot_epoch as u32).wrapping_sub(t));
                let full = slot_epoch.wrapping_sub(back);
                if full == e {
                    pack(tag, c.saturating_add(by))
                } else if full > e && full <= slot_epoch {
                    return; // the counter holds a newer period: this record is stale
                } else {
                    pack(tag, by) // an older period: replace it
                }
            };
            match word.compare_exchange_weak(w, next, Ordering::AcqRel, Ordering::Acquire) {
                Ok(_) => return,
                Err(actual) => w = actual,
            }
        }
    }

    /// Calls `f(slot index, epoch)` for each epoch a reader at `e_now` counts (the last
    /// `slots` periods, never before `floor`) whose slot has reached that epoch. The index is
    /// stepped, not divided, per epoch.
    #[inline]
    fn for_each_live(&self, e_now: u64, floor: u64, mut f: impl FnMut(usize, u64)) {
        let first = e_now.saturating_sub(self.slots as u64 - 1).max(floor);
        if first > e_now {
            return;
        }
        let mut idx = (first % self.slots as u64) as usize;
        for e in first..=e_now {
            // A slot that never reached epoch e cannot hold a counter tagged e.
            if self.epochs[idx].load(Ordering::Acquire) > e {
                f(idx, e);
            }
            idx += 1;
            if idx == self.slots {
                idx = 0;
            }
        }
    }

    /// Sum of counter `cell` over the window ending at epoch `e_now` (epochs < `floor` are
    /// excluded).
    #[inline]
    pub fn sum(&self, e_now: u64, floor: u64, cell: usize) -> u64 {
        let mut total = 0u64;
        self.for_each_live(e_now, floor, |idx, e| {
            let (t, c) = unpack(self.cells[idx * self.width + cell].load(Ordering::Acquire));
            // At most 3600 slots of 2^32 - 1: a u64 sum cannot overflow.
            total += u64::from(c) * u64::from(t == e as u32);
        });
        total
    }

    /// Sums of counters `a` and `b` over the window, in one pass.
    #[inline]
    pub fn sum_pair(&self, e_now: u64, floor: u64, a: usize, b: usize) -> (u64, u64) {
        let (mut sa, mut sb) = (0u64, 0u64);
        self.for_each_live(e_now, floor, |idx, e| {
            let base = idx * self.width;
            let tag = e as u32;
            let (ta, ca) = unpack(self.cells[base + a].load(Ordering::Acquire));
            let (tb, cb) = unpack(self.cells[base + b].load(Ordering::Acquire));
            sa += u64::from(ca) * u64::from(ta == tag);
            sb += u64::from(cb) * u64::from(tb == tag);
        });
        (sa, sb)
    }

    /// Adds counters `first_cell..first_cell + out.len()` over the window into `out`.
    pub fn sum_into(&self, e_now: u64, floor: u64, first_cell: usize, out: &mut [u64]) {
        self.for_each_live(e_now, floor, |idx, e| {
            let base = idx * self.width + first_cell;
            let tag = e as u32;
            let cells = &self.cells[base..base + out.len()];
            for (o, cell) in out.iter_mut().zip(cells) {
                let (t, c) = unpack(cell.load(Ordering::Acquire));
                // At most 3600 slots of 2^32 - 1: a u64 sum cannot overflow.
                *o += u64::from(c) * u64::from(t == tag);
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_expire_with_the_window() {
        let r = Ring::new(10, 4, 2);
        for e in 0..4u64 {
            let i = r.claim(e).unwrap();
            r.bump(i, e, 0, 1);
            r.bump(i, e, 1, 2);
        }
        assert_eq!(r.sum(3, 0, 0), 4);
        assert_eq!(r.sum(3, 0, 1), 8);
        // Epoch 5: epochs 2..=5 are in the window; 0 and 1 expired.
        assert_eq!(r.sum(5, 0, 0), 2);
        // A floor cuts older epochs.
        assert_eq!(r.sum(3, 3, 0), 1);
        // Re-using slot 0 for epoch 4 replaces epoch 0's counts.
        let i = r.claim(4).unwrap();
        r.bump(i, 4, 0, 5);
        assert_eq!(r.sum(4, 0, 0), 3 + 5);
    }

    #[test]
    fn stale_records_are_dropped_not_merged() {
        let r = Ring::new(10, 4, 1);
        let i = r.claim(8).unwrap();
        r.bump(i, 8, 0, 1);
        // Epoch 4 maps to the same slot but is older than what the slot holds.
        assert!(r.claim(4).is_none());
        // Even a writer that claimed before the slot moved on cannot clobber newer counts.
        r.bump(i, 4, 0, 7);
        assert_eq!(r.sum(8, 0, 0), 1);
    }

    #[test]
    fn counts_saturate() {
        let r = Ring::new(10, 1, 1);
        let i = r.claim(0).unwrap();
        r.bump(i, 0, 0, u32::MAX);
        r.bump(i, 0, 0, 5);
        assert_eq!(r.sum(0, 0, 0), u64::from(u32::MAX));
    }
}
