//! Pre-copy migration: the dirty set of a sandbox's RAM as its EPT records it, and when
//! to stop copying rounds (Intel SDM Vol. 3, 29.3.5 "Accessed and Dirty Flags for EPT").
//!
//! Dirty tracking: with EPTP bit 6 set the processor sets bit 9 (dirty) of an EPT leaf
//! on the first write through it. The RAM of a sandbox that moves its memory is mapped
//! with 4 KiB leaves, so a write dirties one page. The dirty set lives in the EPT itself:
//! a round *marks* the pages to copy (clears their dirty bit and sets [`TO_COPY`], an
//! ignored bit of the leaf), the monitor then makes every vCPU of the sandbox drop its
//! cached translations (INVEPT), and only then *takes* the marked pages (clears the mark,
//! copies the page). A write after the INVEPT sets the dirty bit again and lands in the
//! next round; a write between the mark and the INVEPT happens before the copy. Both
//! sides change entries with atomic read-modify-writes ([`EptEntries::modify`]), as the
//! processor sets the flags with locked operations.
//!
//! Round policy ([`RoundPolicy`]): after each round, if copying what was dirtied during
//! it (with the stop's fixed cost) fits in the budget, stop the sandbox and copy the rest;
//! otherwise copy another round, up to a bounded number, and then abandon.

use crate::ept::{index, ADDR_MASK, LARGE, PAGE_2M, PAGE_4K, RWX};
use quest_abi::hypercall::{copy_cycles, MigrationCosts};
use quest_abi::HostPhysAddr;

pub use crate::ept::{ACCESSED, CAP_ACCESSED_DIRTY, DIRTY, EPTP_ACCESSED_DIRTY};

/// Bit 11 of an EPT leaf (ignored by the processor): the page is marked for this round's
/// copy.
pub const TO_COPY: u64 = 1 << 11;

/// Entries of a live EPT (one that vCPUs may be walking).
pub trait EptEntries {
    /// Entry `index` (0..512) of the table at `table`.
    fn entry(&self, table: HostPhysAddr, index: usize) -> u64;
    /// Atomically clears `clear` and then sets `set` in that entry; returns the old value.
    fn modify(&mut self, table: HostPhysAddr, index: usize, clear: u64, set: u64) -> u64;
}

/// The RAM of one sandbox in its EPT: `[gpa, gpa + size)`.
#[derive(Debug)]
pub struct DirtyTracker<E: EptEntries> {
    entries: E,
    root: HostPhysAddr,
    gpa: u64,
    size: u64,
}

/// One leaf: its table and index, and where it is in RAM.
#[derive(Clone, Copy, Debug)]
struct Leaf {
    table: HostPhysAddr,
    index: usize,
    offset: u64,
    size: u64,
}

impl<E: EptEntries> DirtyTracker<E> {
    /// The RAM at `[gpa, gpa + size)` of the EPT whose pointer is `eptp`.
    pub fn new(entries: E, eptp: u64, gpa: u64, size: u64) -> Self {
        Self {
            entries,
            root: HostPhysAddr::new(eptp & ADDR_MASK),
            gpa,
            size,
        }
    }

    /// The leaf mapping RAM offset `offset` (`None`: not mapped).
    fn leaf(&self, offset: u64) -> Option<Leaf> {
        let gpa = self.gpa.checked_add(offset)?;
        let mut table = self.root;
        for level in (0..=3u32).rev() {
            let i = index(gpa, level);
            let entry = self.entries.entry(table, i);
            if entry & RWX == 0 {
                return None;
            }
            let size = match level {
                0 => PAGE_4K,
                1 if entry & LARGE != 0 => PAGE_2M,
                _ => {
                    table = HostPhysAddr::new(entry & ADDR_MASK);
                    continue;
                }
            };
            return Some(Leaf {
                table,
                index: i,
                offset: offset & !(size - 1),
                size,
            });
        }
        None
    }

    /// Calls `f` on every leaf mapping the RAM, in address order. One walk per leaf
    /// table: the following entries of a 4 KiB leaf's table map the following pages, so
    /// they are visited without walking again (the stop's scan is a few loads a page).
    fn each_leaf(&mut self, mut f: impl FnMut(&mut E, Leaf)) {
        let mut offset = 0;
        while offset < self.size {
            let Some(mut leaf) = self.leaf(offset) else {
                offset += PAGE_4K;
                continue;
            };
            loop {
                f(&mut self.entries, leaf);
                offset = leaf.offset + leaf.size;
                let next = leaf.index + 1;
                if leaf.size != PAGE_4K
                    || next == 512
                    || offset >= self.size
                    || self.entries.entry(leaf.table, next) & RWX == 0
                {
                    break;
                }
                leaf = Leaf {
                    index: next,
                    offset,
                    ..leaf
                };
            }
        }
    }

    /// Marks for copying every page (`all`) or the dirty ones, clearing their dirty bits;
    /// returns how many 4 KiB pages were marked.
    pub fn mark(&mut self, all: bool) -> u64 {
        let mut pages = 0;
        self.each_leaf(|e, leaf| {
            let marked = if all {
                e.modify(leaf.table, leaf.index, DIRTY, TO_COPY);
                true
            } else {
                e.entry(leaf.table, leaf.index) & DIRTY != 0
                    && e.modify(leaf.table, leaf.index, DIRTY, TO_COPY) & DIRTY != 0
            };
            if marked {
                pages += leaf.size / PAGE_4K;
            }
        });
        pages
    }

    /// Takes every marked page: clears its mark and calls `copy(offset, len)` for it;
    /// returns how many 4 KiB pages were taken. `keep_going` is asked before each page:
    /// false leaves the rest marked (see [`DirtyTracker::unmark`]).
    pub fn take(
        &mut self,
        mut keep_going: impl FnMut() -> bool,
        mut copy: impl FnMut(u64, u64),
    ) -> u64 {
        let mut pages = 0;
        let mut stopped = false;
        self.each_leaf(|e, leaf| {
            if stopped || e.entry(leaf.table, leaf.index) & TO_COPY == 0 {
                return;
            }
            if !keep_going() {
                stopped = true;
                return;
            }
            e.modify(leaf.table, leaf.index, TO_COPY, 0);
            copy(leaf.offset, leaf.size);
            pages += leaf.size / PAGE_4K;
        });
        pages
    }

    /// The stop's copy, in one pass: takes every page still marked or dirtied since
    /// the last mark (the sandbox is stopped, so nothing can dirty a page meanwhile),
    /// clearing both bits and calling `copy(offset, len)`; returns the pages taken.
    pub fn take_dirty(&mut self, mut copy: impl FnMut(u64, u64)) -> u64 {
        let mut pages = 0;
        self.each_leaf(|e, leaf| {
            if e.entry(leaf.table, leaf.index) & (DIRTY | TO_COPY) != 0 {
                e.modify(leaf.table, leaf.index, DIRTY | TO_COPY, 0);
                copy(leaf.offset, leaf.size);
                pages += leaf.size / PAGE_4K;
            }
        });
        pages
    }

    /// 4 KiB pages whose dirty bit is set.
    pub fn dirty_pages(&mut self) -> u64 {
        let mut pages = 0;
        self.each_leaf(|e, leaf| {
            if e.entry(leaf.table, leaf.index) & DIRTY != 0 {
                pages += leaf.size / PAGE_4K;
            }
        });
        pages
    }

    /// Sets the dirty bit of the pages holding `[offset, offset + len)` (RAM the monitor
    /// itself wrote, which the processor does not see).
    pub fn set_dirty(&mut self, offset: u64, len: u64) {
        let Some(end) = offset.checked_add(len).map(|e| e.min(self.size)) else {
            return;
        };
        let mut at = offset & !(PAGE_4K - 1);
        while at < end {
            match self.leaf(at) {
                Some(leaf) => {
                    self.entries.modify(leaf.table, leaf.index, 0, DIRTY);
                    at = leaf.offset + leaf.size;
                }
                None => at += PAGE_4K,
            }
        }
    }

    /// Clears every mark (an abandoned migration leaves the EPT as it found it, but for
    /// the accessed and dirty bits).
    pub fn unmark(&mut self) {
        self.each_leaf(|e, leaf| {
            e.modify(leaf.table, leaf.index, TO_COPY, 0);
        });
    }
}

/// What to do after a pre-copy round.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Next {
    /// Copy the dirty set again while the sandbox runs.
    Copy,
    /// Stop the sandbox and copy the rest: it fits in the budget.
    Stop,
    /// The dirty set does not shrink enough: give up, the sandbox stays where it is.
    Abandon,
}

/// When pre-copy stops.
#[derive(Clone, Copy, Debug)]
pub struct RoundPolicy {
    /// The longest stop allowed, TSC cycles (`max_downtime`).
    pub budget: u64,
    /// The stop's fixed part (stopping and resuming every vCPU), TSC cycles.
    pub park: u64,
    /// The calibrated costs.
    pub costs: MigrationCosts,
    /// Most rounds (the first copies all of RAM).
    pub max_rounds: u32,
}

/// The default bound on pre-copy rounds.
pub const MAX_ROUNDS: u32 = 8;

impl RoundPolicy {
    /// The stop if `dirty` pages remain: the fixed part and their copy.
    pub fn stop_cycles(&self, dirty: u64) -> u64 {
        self.park
            .saturating_add(copy_cycles(dirty.saturating_mul(PAGE_4K), &self.costs))
    }

    /// After `rounds` rounds, with `dirty` pages dirtied during the last one.
    pub fn next(&self, rounds: u32, dirty: u64) -> Next {
        if self.stop_cycles(dirty) <= self.budget {
            Next::Stop
        } else if rounds >= self.max_rounds {
            Next::Abandon
        } else {
            Next::Copy
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ept::test_memory::VecMemory;
    use crate::ept::{EptBuilder, EptMemory};
    use quest_abi::{GuestPhysAddr, ACCESS_EXEC, ACCESS_READ, ACCESS_WRITE};
    use std::vec::Vec;

    /// A built EPT as the monitor sees it while vCPUs run (single-threaded here).
    struct Live(VecMemory);

    impl EptEntries for Live {
        fn entry(&self, table: HostPhysAddr, index: usize) -> u64 {
            self.0.read(table, index)
        }
        fn modify(&mut self, table: HostPhysAddr, index: usize, clear: u64, set: u64) -> u64 {
            let old = self.0.read(table, index);
            self.0.write(table, index, (old & !clear) | set);
            old
        }
    }

    const RAM: u64 = 4 << 20;
    const RWX_ACCESS: u32 = ACCESS_READ | ACCESS_WRITE | ACCESS_EXEC;

    /// 4 MiB of RAM at GPA 0 (4 KiB leaves unless `large`), and one more page outside it.
    fn tracker(large: bool) -> DirtyTracker<Live> {
        let mut ept = EptBuilder::new(VecMemory::new(16)).unwrap();
        let h = |a| HostPhysAddr::new(a);
        ept.map_range(
            GuestPhysAddr::new(0),
            h(0x4000_0000),
            RAM,
            RWX_ACCESS,
            large,
        )
        .unwrap();
        ept.map_4k(
            GuestPhysAddr::new(RAM + PAGE_2M),
            h(0x9000_0000),
            ACCESS_READ,
        )
        .unwrap();
        let eptp = ept.eptp() | EPTP_ACCESSED_DIRTY;
        DirtyTracker::new(Live(ept.into_memory()), eptp, 0, RAM)
    }

    /// What the processor does on a write at RAM offset `at`.
    fn cpu_write(t: &mut DirtyTracker<Live>, at: u64) {
        let leaf = t.leaf(at).unwrap();
        t.entries
            .modify(leaf.table, leaf.index, 0, ACCESSED | DIRTY);
    }

    fn taken(t: &mut DirtyTracker<Live>) -> Vec<(u64, u64)> {
        let mut v = Vec::new();
        let n = t.take(|| true, |o, l| v.push((o, l)));
        assert_eq!(n, v.iter().map(|(_, l)| l / PAGE_4K).sum::<u64>());
        v
    }

    #[test]
    fn rounds_take_exactly_what_was_dirtied_since_the_last_mark() {
        let mut t = tracker(false);
        cpu_write(&mut t, 0x5000);
        // Round 0: everything, and the dirty bits start clear.
        assert_eq!(t.mark(true), 1024);
        assert_eq!(t.dirty_pages(), 0);
        // A write between the mark and the copy is copied by this round...
        cpu_write(&mut t, 0x3000);
        let all = taken(&mut t);
        assert_eq!(all.len(), 1024);
        assert_eq!(all[3], (0x3000, PAGE_4K));
        // ...and, being a dirty bit again, by the next one too.
        cpu_write(&mut t, 0x20_0000);
        cpu_write(&mut t, 0x3F_F123);
        assert_eq!(t.dirty_pages(), 3);
        assert_eq!(t.mark(false), 3);
        assert_eq!(
            taken(&mut t),
            [
                (0x3000, PAGE_4K),
                (0x20_0000, PAGE_4K),
                (0x3F_F000, PAGE_4K)
            ]
        );
        cpu_write(&mut t, 0x1_0000);
        let mut stop = Vec::new();
        assert_eq!(
            t.take_dirty(|o, l| stop.push((o, l))),
            1,
            "the stop's one pass"
        );
        assert_eq!(stop, [(0x1_0000, PAGE_4K)]);
        assert_eq!(t.mark(false), 0, "nothing written since");
        assert!(taken(&mut t).is_empty());
        // The page outside RAM is never touched.
        let outside = t.leaf(RAM + PAGE_2M).unwrap();
        assert_eq!(
            t.entries.entry(outside.table, outside.index) & (DIRTY | TO_COPY),
            0
        );
    }

    #[test]
    fn an_interrupted_take_leaves_the_rest_marked_and_unmark_clears_it() {
        let mut t = tracker(false);
        t.mark(true);
        let mut budget = 10;
        let n = t.take(
            || {
                budget -= 1;
                budget >= 0
            },
            |_, _| {},
        );
        assert_eq!(n, 10);
        t.unmark();
        assert!(taken(&mut t).is_empty());
    }

    #[test]
    fn monitor_writes_count_as_dirty_and_large_leaves_as_512_pages() {
        let mut t = tracker(false);
        t.mark(true);
        taken(&mut t);
        t.set_dirty(0x1FFF, 2);
        t.set_dirty(RAM - 1, 100);
        t.set_dirty(u64::MAX, 2);
        assert_eq!(t.dirty_pages(), 3);
        let mut big = tracker(true);
        assert_eq!(big.mark(true), 1024);
        assert_eq!(taken(&mut big), [(0, PAGE_2M), (PAGE_2M, PAGE_2M)]);
        cpu_write(&mut big, 0x1234);
        assert_eq!(big.dirty_pages(), 512);
    }

    #[test]
    fn the_policy_stops_when_the_rest_fits_and_gives_up_after_its_rounds() {
        let p = RoundPolicy {
            budget: 10_000,
            park: 1_000,
            costs: MigrationCosts {
                ipi: 0,
                vm_exit_entry: 0,
                copy_per_kib: 100,
            },
            max_rounds: 3,
        };
        // 4 KiB = 400 cycles: 22 pages fit in 9000, 23 do not.
        assert_eq!(p.stop_cycles(22), 9_800);
        assert_eq!(p.next(1, 22), Next::Stop);
        assert_eq!(p.next(1, 23), Next::Copy);
        assert_eq!(p.next(2, 23), Next::Copy);
        assert_eq!(p.next(3, 23), Next::Abandon);
        assert_eq!(p.next(3, 0), Next::Stop);
        assert_eq!(p.next(1, u64::MAX), Next::Copy, "no overflow");
    }
}
