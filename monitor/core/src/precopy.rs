//! Pre-copy migration: the dirty set of a sandbox's RAM as its EPT (VT-x) or nested page
//! tables (SVM) record it, and when to stop copying rounds (Intel SDM Vol. 3, 29.3.5
//! "Accessed and Dirty Flags for EPT"; AMD APM Vol. 2, 15.25 "Nested Paging", whose
//! entries are ordinary page-table entries, 5.4).
//!
//! The two formats differ only in where the bits are ([`Format`]): an EPT entry is
//! present when any of R/W/X (bits 2:0) is set, accessed is bit 8 and dirty bit 9; an NPT
//! entry is present with bit 0, accessed is bit 5 and dirty bit 6 (on leaves; bit 6 is
//! ignored in an entry that points to a table). Both mark a 2 MiB leaf with bit 7, and
//! both leave bit 11 to software (EPT: ignored; NPT: AVL), which holds [`TO_COPY`] and
//! [`RECENT`]. AMD CPUs update nested A/D bits whenever nested paging is on (no enable
//! bit, unlike EPTP bit 6); what is said below of INVEPT holds for the SVM backend's
//! TLB flush at the next VMRUN (TLB_CONTROL), which drops the ASID's nested
//! translations the same way.
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
//! Skipping untouched leaf tables: the processor also sets bit 8 (accessed) of every
//! paging-structure entry a walk uses, the PD entry above a leaf table included (SDM
//! 29.3.5; Bochs' `update_ept_access_dirty` sets it on every level it walks). Each mark
//! clears the accessed bit of the PD entry of a leaf table *before* it looks at the
//! table's leaves, and notes in [`RECENT`] (an ignored bit of that PD entry) whether it
//! was set. A mark then looks only at the leaves of tables whose entry had `ACCESSED` or
//! `RECENT`; the stop ([`DirtyTracker::take_dirty`]) and [`DirtyTracker::dirty_pages`]
//! only at those whose entry has either now. So the stop reads one PD entry per 2 MiB and
//! the 512 leaves of each table written around the last round, not every page.
//!
//! Why no dirty page hides under a skipped table. INVEPT (single context) drops every
//! translation and paging-structure-cache entry of the EPT (SDM 29.4.3.1), and each
//! round's INVEPT comes after its mark. Take a vCPU's write at time `t` to a page of a
//! 4 KiB leaf table, and let round `k`'s INVEPT be the vCPU's next after `t`. The write
//! goes through a translation a walk made after the vCPU's previous INVEPT (so after
//! mark `k - 1`), and the first walk through the table's PD entry since then (time
//! `w <= t`) set that entry's accessed bit in memory.
//! - `w` before mark `k`'s clear of that entry: the clear sees `ACCESSED` (only marks
//!   clear it), so mark `k` scans the table after the clear and mark `k + 1` (or the
//!   stop) scans it too (`RECENT`). A write before mark `k`'s scan leaves the leaf's
//!   dirty bit set (a translation caching a set dirty bit means the bit is still set: no
//!   mark came between `w` and `t`), so the page is marked and copied after the INVEPT,
//!   after the write. A write after the scan through a translation cached dirty finds
//!   the page marked the same way (the scan saw the bit); through one cached clean, it
//!   sets the leaf's dirty bit (perhaps without touching the PD entry: a
//!   paging-structure cache), and mark `k + 1` or the stop sees it.
//! - `w` after mark `k`'s clear: the accessed bit is still set at mark `k + 1`'s clear
//!   or at the stop, which scan the table after `t`.
//!
//! A write the monitor makes itself ([`DirtyTracker::set_dirty`]) sets the leaf's dirty
//! bit and then the PD entry's accessed bit, so whatever clears that bit afterwards
//! scans the table after the dirty bit was set. Large leaves (2 MiB PD entries) are
//! always looked at; the first mark ([`DirtyTracker::mark`] with `all`) marks every page,
//! so it needs no `RECENT`.

use crate::ept::{index, ADDR_MASK, LARGE, PAGE_2M, PAGE_4K, RWX};
use crate::npt::{NPT_P, NPT_PS};
use quest_abi::hypercall::{copy_cycles, MigrationCosts};
use quest_abi::HostPhysAddr;

pub use crate::ept::{ACCESSED, CAP_ACCESSED_DIRTY, DIRTY, EPTP_ACCESSED_DIRTY};

/// Bit 11 of an EPT leaf (ignored by the processor): the page is marked for this round's
/// copy.
pub const TO_COPY: u64 = 1 << 11;

/// Bit 11 of a PD entry that points to a leaf table (ignored by the processor): its
/// accessed bit was set when the last mark cleared it (see the module documentation).
pub const RECENT: u64 = 1 << 11;

/// Accessed bit of an NPT entry (any level).
pub const NPT_ACCESSED: u64 = 1 << 5;
/// Dirty bit of an NPT leaf.
pub const NPT_DIRTY: u64 = 1 << 6;

/// The entry format of the tables a tracker walks (module documentation).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// Intel EPT (with EPTP bit 6 set).
    Ept,
    /// AMD nested page tables.
    Npt,
}

impl Format {
    /// Bits of which any set means present.
    pub const fn present(self) -> u64 {
        match self {
            Self::Ept => RWX,
            Self::Npt => NPT_P,
        }
    }
    /// A 2 MiB leaf in a PD entry.
    pub const fn large(self) -> u64 {
        match self {
            Self::Ept => LARGE,
            Self::Npt => NPT_PS,
        }
    }
    /// Accessed.
    pub const fn accessed(self) -> u64 {
        match self {
            Self::Ept => ACCESSED,
            Self::Npt => NPT_ACCESSED,
        }
    }
    /// Dirty (leaves).
    pub const fn dirty(self) -> u64 {
        match self {
            Self::Ept => DIRTY,
            Self::Npt => NPT_DIRTY,
        }
    }
}

/// Entries of a live EPT or NPT (one that vCPUs may be walking).
pub trait EptEntries {
    /// Entry `index` (0..512) of the table at `table`.
    fn entry(&self, table: HostPhysAddr, index: usize) -> u64;
    /// Atomically clears `clear` and then sets `set` in that entry; returns the old value.
    fn modify(&mut self, table: HostPhysAddr, index: usize, clear: u64, set: u64) -> u64;
}

/// The RAM of one sandbox in its EPT or NPT: `[gpa, gpa + size)`.
#[derive(Debug)]
pub struct DirtyTracker<E: EptEntries> {
    entries: E,
    format: Format,
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

/// A PD entry (its table and index) that points to a leaf table.
#[derive(Clone, Copy, Debug)]
struct Dir {
    table: HostPhysAddr,
    index: usize,
}

impl<E: EptEntries> DirtyTracker<E> {
    /// The RAM at `[gpa, gpa + size)` of the tables in `format` whose root pointer (EPTP
    /// or nCR3) is `pointer`.
    pub fn new(entries: E, format: Format, pointer: u64, gpa: u64, size: u64) -> Self {
        Self {
            entries,
            format,
            root: HostPhysAddr::new(pointer & ADDR_MASK),
            gpa,
            size,
        }
    }

    /// The PD entry for guest-physical `gpa` (`None`: no PD there; the builder makes no
    /// 1 GiB leaves).
    fn directory(&self, gpa: u64) -> Option<Dir> {
        let mut table = self.root;
        for level in [3u32, 2] {
            let entry = self.entries.entry(table, index(gpa, level));
            if entry & self.format.present() == 0
                || (level == 2 && entry & self.format.large() != 0)
            {
                return None;
            }
            table = HostPhysAddr::new(entry & ADDR_MASK);
        }
        Some(Dir {
            table,
            index: index(gpa, 1),
        })
    }

    /// The leaf mapping RAM offset `offset`, and the PD entry above it when it is a
    /// 4 KiB leaf (`None`: not mapped).
    fn leaf(&self, offset: u64) -> Option<(Leaf, Option<Dir>)> {
        let gpa = self.gpa.checked_add(offset)?;
        let dir = self.directory(gpa)?;
        let f = self.format;
        let pde = self.entries.entry(dir.table, dir.index);
        if pde & f.present() == 0 {
            return None;
        }
        if pde & f.large() != 0 {
            let leaf = Leaf {
                table: dir.table,
                index: dir.index,
                offset: offset & !(PAGE_2M - 1),
                size: PAGE_2M,
            };
            return Some((leaf, None));
        }
        let table = HostPhysAddr::new(pde & ADDR_MASK);
        let i = index(gpa, 0);
        if self.entries.entry(table, i) & f.present() == 0 {
            return None;
        }
        let leaf = Leaf {
            table,
            index: i,
            offset: offset & !(PAGE_4K - 1),
            size: PAGE_4K,
        };
        Some((leaf, Some(dir)))
    }

    /// Calls `f` on every leaf mapping the RAM, in address order: every large leaf, and
    /// the leaves of each leaf table for which `scan` (called once per table, with its
    /// PD entry) says so. One walk per 2 MiB, a load per leaf.
    fn each_leaf(
        &mut self,
        mut scan: impl FnMut(&mut E, Dir) -> bool,
        mut f: impl FnMut(&mut E, Leaf),
    ) {
        let (start, size, fmt) = (self.gpa, self.size, self.format);
        let Some(end) = start.checked_add(size) else {
            return;
        };
        let mut base = start & !(PAGE_2M - 1);
        while base < end {
            if let Some(dir) = self.directory(base) {
                let pde = self.entries.entry(dir.table, dir.index);
                if pde & fmt.present() == 0 {
                    // Nothing mapped here.
                } else if pde & fmt.large() != 0 {
                    let leaf = Leaf {
                        table: dir.table,
                        index: dir.index,
                        offset: base.saturating_sub(start),
                        size: PAGE_2M,
                    };
                    f(&mut self.entries, leaf);
                } else if scan(&mut self.entries, dir) {
                    let table = HostPhysAddr::new(pde & ADDR_MASK);
                    for i in 0..512 {
                        let gpa = base + i as u64 * PAGE_4K;
                        if gpa < start || gpa >= end {
                            continue;
                        }
                        if self.entries.entry(table, i) & fmt.present() != 0 {
                            let leaf = Leaf {
                                table,
                                index: i,
                                offset: gpa - start,
                                size: PAGE_4K,
                            };
                            f(&mut self.entries, leaf);
                        }
                    }
                }
            }
            let Some(next) = base.checked_add(PAGE_2M) else {
                return;
            };
            base = next;
        }
    }

    /// Whether a leaf table may hold a dirty bit: its PD entry's accessed bit is set, or
    /// was at the last mark (module documentation).
    fn touched(accessed: u64) -> impl Fn(&mut E, Dir) -> bool {
        move |e, dir| e.entry(dir.table, dir.index) & (accessed | RECENT) != 0
    }

    /// Marks for copying every page (`all`) or the dirty ones, clearing their dirty bits;
    /// returns how many 4 KiB pages were marked. Clears the accessed bit of each leaf
    /// table's PD entry before it looks at the table (noting it in [`RECENT`]), and looks
    /// only at the tables touched since the last mark (module documentation). The caller
    /// makes every vCPU drop its cached translations afterwards, before it takes.
    pub fn mark(&mut self, all: bool) -> u64 {
        let mut pages = 0;
        let (accessed, dirty) = (self.format.accessed(), self.format.dirty());
        self.each_leaf(
            |e, dir| {
                let old = e.modify(dir.table, dir.index, accessed | RECENT, 0);
                if !all && old & accessed != 0 {
                    e.modify(dir.table, dir.index, 0, RECENT);
                }
                all || old & (accessed | RECENT) != 0
            },
            |e, leaf| {
                let marked = if all {
                    e.modify(leaf.table, leaf.index, dirty, TO_COPY);
                    true
                } else {
                    e.entry(leaf.table, leaf.index) & dirty != 0
                        && e.modify(leaf.table, leaf.index, dirty, TO_COPY) & dirty != 0
                };
                if marked {
                    pages += leaf.size / PAGE_4K;
                }
            },
        );
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
        self.each_leaf(
            |_, _| true,
            |e, leaf| {
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
            },
        );
        pages
    }

    /// The stop's copy, in one pass: takes every page still marked or dirtied since
    /// the last mark (the sandbox is stopped, so nothing can dirty a page meanwhile),
    /// clearing both bits and calling `copy(offset, len)`; returns the pages taken. Looks
    /// only at the leaf tables touched since the last mark (and large leaves): what was
    /// written during the last round, not the whole RAM. Marks left by a finished
    /// [`DirtyTracker::take`] are none; an interrupted one's are in tables looked at only
    /// if touched, so an interrupted round is abandoned, never followed by a stop.
    pub fn take_dirty(&mut self, mut copy: impl FnMut(u64, u64)) -> u64 {
        let mut pages = 0;
        let (accessed, dirty) = (self.format.accessed(), self.format.dirty());
        self.each_leaf(Self::touched(accessed), |e, leaf| {
            if e.entry(leaf.table, leaf.index) & (dirty | TO_COPY) != 0 {
                e.modify(leaf.table, leaf.index, dirty | TO_COPY, 0);
                copy(leaf.offset, leaf.size);
                pages += leaf.size / PAGE_4K;
            }
        });
        pages
    }

    /// 4 KiB pages whose dirty bit is set (in the tables touched since the last mark:
    /// nowhere else, module documentation).
    pub fn dirty_pages(&mut self) -> u64 {
        let mut pages = 0;
        let (accessed, dirty) = (self.format.accessed(), self.format.dirty());
        self.each_leaf(Self::touched(accessed), |e, leaf| {
            if e.entry(leaf.table, leaf.index) & dirty != 0 {
                pages += leaf.size / PAGE_4K;
            }
        });
        pages
    }

    /// Sets the dirty bit of the pages holding `[offset, offset + len)` (RAM the monitor
    /// itself wrote, which the processor does not see), and then the accessed bit of
    /// their leaf tables' PD entries, so the next mark or the stop looks at them.
    pub fn set_dirty(&mut self, offset: u64, len: u64) {
        let Some(end) = offset.checked_add(len).map(|e| e.min(self.size)) else {
            return;
        };
        let mut at = offset & !(PAGE_4K - 1);
        while at < end {
            let (accessed, dirty) = (self.format.accessed(), self.format.dirty());
            match self.leaf(at) {
                Some((leaf, dir)) => {
                    self.entries.modify(leaf.table, leaf.index, 0, dirty);
                    if let Some(dir) = dir {
                        self.entries.modify(dir.table, dir.index, 0, accessed);
                    }
                    at = leaf.offset + leaf.size;
                }
                None => at += PAGE_4K,
            }
        }
    }

    /// Clears every mark (an abandoned migration leaves the EPT as it found it, but for
    /// the accessed and dirty bits and [`RECENT`]).
    pub fn unmark(&mut self) {
        self.each_leaf(
            |_, _| true,
            |e, leaf| {
                e.modify(leaf.table, leaf.index, TO_COPY, 0);
            },
        );
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
    use crate::npt::NptBuilder;
    use proptest::prelude::*;
    use quest_abi::{GuestPhysAddr, ACCESS_EXEC, ACCESS_READ, ACCESS_WRITE};
    use std::cell::RefCell;
    use std::collections::{BTreeMap, BTreeSet};
    use std::vec::Vec;

    /// A simulated vCPU on a built EPT: a TLB of guest-physical pages (each caching
    /// whether its leaf was dirty) and a paging-structure cache of PD entries, both
    /// dropped by [`Cpu::invept`]; and a version number per page of the source RAM.
    #[derive(Default)]
    struct Cpu {
        tlb: BTreeMap<u64, bool>,
        pde_cache: BTreeSet<u64>,
        source: Vec<u64>,
        /// Pseudo-random writes while the tracker works (`chance` in 256 per access).
        rng: u64,
        chance: u64,
    }

    /// A built EPT as the monitor sees it while a vCPU runs (single-threaded: the vCPU
    /// may act before any access of the tracker).
    struct Live {
        mem: RefCell<VecMemory>,
        cpu: RefCell<Cpu>,
        /// Leaf tables whose entries the tracker read.
        read: RefCell<BTreeSet<u64>>,
        leaf_tables: BTreeSet<u64>,
        root: HostPhysAddr,
        format: Format,
    }

    impl Live {
        fn interleave(&self) {
            let mut cpu = self.cpu.borrow_mut();
            if cpu.chance == 0 {
                return;
            }
            cpu.rng ^= cpu.rng << 13;
            cpu.rng ^= cpu.rng >> 7;
            cpu.rng ^= cpu.rng << 17;
            let r = cpu.rng;
            let pages = cpu.source.len() as u64;
            drop(cpu);
            if r % 256 < self.cpu.borrow().chance {
                self.access((r >> 8) % pages * PAGE_4K, r & (1 << 40) != 0);
            }
        }

        /// What the processor does on a guest access at `gpa` (Bochs' walk, with the
        /// caches real processors may keep): a TLB hit writes without touching the EPT
        /// unless it cached the leaf clean (then it sets the dirty bit, finding the leaf
        /// through its cached PD entry if it has one); a miss walks, setting the accessed
        /// bit of every entry it reads from memory, and the leaf's dirty bit on a write.
        fn access(&self, gpa: u64, write: bool) {
            let page = gpa / PAGE_4K;
            let mut cpu = self.cpu.borrow_mut();
            let mut mem = self.mem.borrow_mut();
            if write {
                cpu.source[page as usize] += 1;
            }
            let cached = cpu.tlb.get(&page).copied();
            if cached == Some(true) || (cached == Some(false) && !write) {
                return;
            }
            let pd_cached = cpu.pde_cache.contains(&(gpa >> 21));
            let f = self.format;
            let (accessed, dirty) = (f.accessed(), f.dirty());
            let mut table = self.root;
            for level in (0..=3u32).rev() {
                let i = index(gpa, level);
                let e = mem.read(table, i);
                assert!(
                    e & f.present() != 0,
                    "the simulated guest writes mapped RAM"
                );
                let leaf = level == 0 || e & f.large() != 0;
                let walked = cached.is_none() && !(pd_cached && level >= 1);
                if leaf {
                    let set = if write { accessed | dirty } else { accessed };
                    mem.write(table, i, e | set);
                    cpu.tlb.insert(page, write || e & dirty != 0);
                    break;
                }
                if walked {
                    mem.write(table, i, e | accessed);
                }
                table = HostPhysAddr::new(e & ADDR_MASK);
            }
            cpu.pde_cache.insert(gpa >> 21);
        }

        fn invept(&self) {
            let mut cpu = self.cpu.borrow_mut();
            cpu.tlb.clear();
            cpu.pde_cache.clear();
        }
    }

    impl EptEntries for Live {
        fn entry(&self, table: HostPhysAddr, index: usize) -> u64 {
            self.interleave();
            if self.leaf_tables.contains(&table.as_u64()) {
                self.read.borrow_mut().insert(table.as_u64());
            }
            self.mem.borrow().read(table, index)
        }
        fn modify(&mut self, table: HostPhysAddr, index: usize, clear: u64, set: u64) -> u64 {
            self.interleave();
            let mut mem = self.mem.borrow_mut();
            let old = mem.read(table, index);
            mem.write(table, index, (old & !clear) | set);
            old
        }
    }

    const RAM: u64 = 4 << 20;
    const RWX_ACCESS: u32 = ACCESS_READ | ACCESS_WRITE | ACCESS_EXEC;

    /// Both formats, for tests that run on each.
    const FORMATS: [Format; 2] = [Format::Ept, Format::Npt];

    /// `ram` bytes of RAM at GPA 0 (4 KiB leaves unless `large`), and one more page
    /// outside it, in tables of `format` (built by the monitor's own builders).
    fn tracker_in(format: Format, ram: u64, large: bool) -> DirtyTracker<Live> {
        let h = |a| HostPhysAddr::new(a);
        let (g_ram, g_out) = (GuestPhysAddr::new(0), GuestPhysAddr::new(ram + PAGE_2M));
        let (pointer, root, mem) = match format {
            Format::Ept => {
                let mut ept = EptBuilder::new(VecMemory::new(64)).unwrap();
                ept.map_range(g_ram, h(0x4000_0000), ram, RWX_ACCESS, large)
                    .unwrap();
                ept.map_4k(g_out, h(0x9000_0000), ACCESS_READ).unwrap();
                (
                    ept.eptp() | EPTP_ACCESSED_DIRTY,
                    ept.root(),
                    ept.into_memory(),
                )
            }
            Format::Npt => {
                let mut npt = NptBuilder::new(VecMemory::new(64)).unwrap();
                npt.map_range(g_ram, h(0x4000_0000), ram, RWX_ACCESS, large)
                    .unwrap();
                npt.map_range(g_out, h(0x9000_0000), PAGE_4K, ACCESS_READ, false)
                    .unwrap();
                let ncr3 = npt.ncr3();
                (ncr3, h(ncr3), npt.into_memory())
            }
        };
        // The builder's frames: PML4, PDPT, PD, then RAM's leaf tables in order.
        let leaf_tables = (0..(ram / PAGE_2M) * u64::from(!large))
            .map(|i| mem.base + (3 + i) * PAGE_4K)
            .collect();
        let live = Live {
            mem: RefCell::new(mem),
            cpu: RefCell::new(Cpu {
                source: std::vec![0; (ram / PAGE_4K) as usize],
                rng: 0x9E37_79B9_7F4A_7C15,
                ..Cpu::default()
            }),
            read: RefCell::new(BTreeSet::new()),
            leaf_tables,
            root,
            format,
        };
        DirtyTracker::new(live, format, pointer, 0, ram)
    }

    fn tracker(format: Format, large: bool) -> DirtyTracker<Live> {
        tracker_in(format, RAM, large)
    }

    fn cpu_write(t: &mut DirtyTracker<Live>, at: u64) {
        t.entries.access(at, true);
    }

    /// The round's INVEPT (every vCPU).
    fn flush(t: &mut DirtyTracker<Live>) {
        t.entries.invept();
    }

    fn taken(t: &mut DirtyTracker<Live>) -> Vec<(u64, u64)> {
        let mut v = Vec::new();
        let n = t.take(|| true, |o, l| v.push((o, l)));
        assert_eq!(n, v.iter().map(|(_, l)| l / PAGE_4K).sum::<u64>());
        v
    }

    /// The leaf tables (by index in RAM) `f` read.
    fn tables_read(
        t: &mut DirtyTracker<Live>,
        f: impl FnOnce(&mut DirtyTracker<Live>),
    ) -> Vec<u64> {
        t.entries.read.borrow_mut().clear();
        f(t);
        let first = t.entries.leaf_tables.first().copied().unwrap_or(0);
        let read = t.entries.read.borrow();
        read.iter().map(|a| (a - first) / PAGE_4K).collect()
    }

    #[test]
    fn rounds_take_exactly_what_was_dirtied_since_the_last_mark() {
        for f in FORMATS {
            let mut t = tracker(f, false);
            cpu_write(&mut t, 0x5000);
            // Round 0: everything, and the dirty bits start clear.
            assert_eq!(t.mark(true), 1024);
            assert_eq!(t.dirty_pages(), 0);
            // A write between the mark and the copy is copied by this round...
            cpu_write(&mut t, 0x3000);
            flush(&mut t);
            let all = taken(&mut t);
            assert_eq!(all.len(), 1024);
            assert_eq!(all[3], (0x3000, PAGE_4K));
            // It went through the cached PD entry (only the leaf's dirty bit is set) and was
            // copied: nothing walked table 0 since the mark, so no round looks at it again...
            cpu_write(&mut t, 0x20_0000);
            cpu_write(&mut t, 0x3F_F123);
            assert_eq!(t.dirty_pages(), 2);
            assert_eq!(t.mark(false), 2);
            flush(&mut t);
            assert_eq!(taken(&mut t), [(0x20_0000, PAGE_4K), (0x3F_F000, PAGE_4K)]);
            // ...until a walk does: then its stale dirty bit costs one more copy.
            cpu_write(&mut t, 0x1_0000);
            let mut stop = Vec::new();
            assert_eq!(
                t.take_dirty(|o, l| stop.push((o, l))),
                2,
                "the stop's one pass"
            );
            assert_eq!(stop, [(0x3000, PAGE_4K), (0x1_0000, PAGE_4K)]);
            assert_eq!(t.mark(false), 0, "nothing written since");
            assert!(taken(&mut t).is_empty());
            // The page outside RAM is never touched.
            let (outside, _) = t.leaf(RAM + PAGE_2M).unwrap();
            assert_eq!(
                t.entries.entry(outside.table, outside.index) & (f.dirty() | TO_COPY),
                0
            );
        }
    }

    #[test]
    fn the_stop_and_marks_read_only_the_leaf_tables_written_around_the_last_round() {
        for f in FORMATS {
            let mut t = tracker_in(f, 16 << 20, false);
            assert_eq!(t.entries.leaf_tables.len(), 8);
            assert_eq!(t.mark(true), 4096);
            flush(&mut t);
            taken(&mut t);
            // Untouched since the first mark: the stop reads no leaf table at all.
            assert_eq!(tables_read(&mut t, |t| assert_eq!(t.dirty_pages(), 0)), []);
            cpu_write(&mut t, 2 * PAGE_2M + 0x5000);
            t.entries.access(3 * PAGE_2M, false);
            cpu_write(&mut t, 5 * PAGE_2M + 0x1F_F000);
            // A read walks too (it sets the accessed bit): table 3 is looked at, no page.
            assert_eq!(
                tables_read(&mut t, |t| assert_eq!(t.dirty_pages(), 2)),
                [2, 3, 5]
            );
            assert_eq!(
                tables_read(&mut t, |t| assert_eq!(t.mark(false), 2)),
                [2, 3, 5]
            );
            flush(&mut t);
            taken(&mut t);
            // The tables written around the last mark are looked at once more, then not.
            assert_eq!(
                tables_read(&mut t, |t| assert_eq!(t.take_dirty(|_, _| {}), 0)),
                [2, 3, 5]
            );
            assert_eq!(
                tables_read(&mut t, |t| assert_eq!(t.mark(false), 0)),
                [2, 3, 5]
            );
            flush(&mut t);
            taken(&mut t);
            assert_eq!(
                tables_read(&mut t, |t| assert_eq!(t.take_dirty(|_, _| {}), 0)),
                []
            );
            cpu_write(&mut t, 7 * PAGE_2M + 0x1000);
            let mut stop = Vec::new();
            let read = tables_read(&mut t, |t| {
                t.take_dirty(|o, l| stop.push((o, l)));
            });
            assert_eq!(
                (read, stop),
                (std::vec![7], std::vec![(7 * PAGE_2M + 0x1000, PAGE_4K)])
            );
            // A write through the TLB after the stop's pass (none happens in the monitor: the
            // sandbox is stopped) would set only the leaf's dirty bit; a mark would miss it
            // without the first walk's accessed bit, which is exactly what the rounds keep.
        }
    }

    #[test]
    fn an_interrupted_take_leaves_the_rest_marked_and_unmark_clears_it() {
        for f in FORMATS {
            let mut t = tracker(f, false);
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
    }

    #[test]
    fn monitor_writes_count_as_dirty_and_large_leaves_as_512_pages() {
        for f in FORMATS {
            let mut t = tracker(f, false);
            t.mark(true);
            flush(&mut t);
            taken(&mut t);
            t.mark(false);
            flush(&mut t);
            // No vCPU walked since: only the monitor's writes make tables to look at.
            assert_eq!(tables_read(&mut t, |t| assert_eq!(t.dirty_pages(), 0)), []);
            t.set_dirty(0x1FFF, 2);
            t.set_dirty(RAM - 1, 100);
            t.set_dirty(u64::MAX, 2);
            assert_eq!(
                tables_read(&mut t, |t| assert_eq!(t.dirty_pages(), 3)),
                [0, 1]
            );
            let mut stop = Vec::new();
            t.take_dirty(|o, l| stop.push((o, l)));
            assert_eq!(
                stop,
                [
                    (0x1000, PAGE_4K),
                    (0x2000, PAGE_4K),
                    (RAM - PAGE_4K, PAGE_4K)
                ]
            );
            let mut big = tracker(f, true);
            assert_eq!(big.mark(true), 1024);
            flush(&mut big);
            assert_eq!(taken(&mut big), [(0, PAGE_2M), (PAGE_2M, PAGE_2M)]);
            cpu_write(&mut big, 0x1234);
            assert_eq!(big.dirty_pages(), 512);
            big.set_dirty(PAGE_2M + 5, 1);
            let mut stop = Vec::new();
            assert_eq!(big.take_dirty(|o, l| stop.push((o, l))), 1024);
            assert_eq!(stop, [(0, PAGE_2M), (PAGE_2M, PAGE_2M)]);
        }
    }

    #[test]
    fn a_write_through_a_translation_cached_clean_after_the_scan_is_not_lost() {
        for f in FORMATS {
            let mut t = tracker(f, false);
            t.mark(true);
            flush(&mut t);
            taken(&mut t);
            // The guest reads a page: the walk sets the PD entry's accessed bit, the TLB
            // caches the leaf clean.
            t.entries.access(0x7000, false);
            // The next mark scans table 0 (nothing dirty) and clears the accessed bit...
            assert_eq!(t.mark(false), 0);
            // ...then, before the INVEPT, a write through the cached translation sets only
            // the leaf's dirty bit.
            cpu_write(&mut t, 0x7000);
            flush(&mut t);
            assert!(taken(&mut t).is_empty());
            // Nothing walks table 0 again, yet the stop copies the page (`RECENT`).
            let mut stop = Vec::new();
            t.take_dirty(|o, l| stop.push((o, l)));
            assert_eq!(stop, [(0x7000, PAGE_4K)]);
        }
    }

    /// One pre-copy as the monitor runs it, the vCPU writing at random meanwhile (also
    /// between any two EPT accesses of the tracker): marks, INVEPT, takes, then the stop.
    /// Returns the destination's versions and the source's.
    fn migrate(
        format: Format,
        seed: u64,
        chance: u64,
        rounds: u32,
        large: bool,
        between: &[u64],
    ) -> (Vec<u64>, Vec<u64>) {
        let mut t = tracker_in(format, 16 << 20, large);
        {
            let mut cpu = t.entries.cpu.borrow_mut();
            cpu.rng = seed | 1;
            cpu.chance = chance;
        }
        // The guest ran before: some walks and cached translations.
        for &gpa in between {
            t.entries.access(gpa % (16 << 20), gpa & 1 != 0);
        }
        let dest = RefCell::new(std::vec![0u64; 4096]);
        let copy = |t: &DirtyTracker<Live>, o: u64, l: u64| {
            let source = &t.entries.cpu.borrow().source;
            let mut d = dest.borrow_mut();
            for p in o / PAGE_4K..(o + l) / PAGE_4K {
                d[p as usize] = source[p as usize];
            }
        };
        for round in 0..rounds {
            t.mark(round == 0);
            for &gpa in between {
                t.entries.access(gpa % (16 << 20), true);
            }
            flush(&mut t);
            let mut v = Vec::new();
            t.take(|| true, |o, l| v.push((o, l)));
            // (The copies happen at take time; `take` holds the tracker.)
            for (o, l) in v {
                copy(&t, o, l);
            }
            if (seed >> round) & 1 == 0 {
                for &gpa in between.iter().rev() {
                    t.entries.access(gpa % (16 << 20), gpa & 2 != 0);
                }
            }
            t.set_dirty(seed % (16 << 20), 3);
            t.entries.cpu.borrow_mut().source[(seed % (16 << 20) / PAGE_4K) as usize] += 1;
        }
        // The stop: the vCPU is out.
        t.entries.cpu.borrow_mut().chance = 0;
        let mut v = Vec::new();
        t.take_dirty(|o, l| v.push((o, l)));
        for (o, l) in v {
            copy(&t, o, l);
        }
        let source = t.entries.cpu.borrow().source.clone();
        (dest.into_inner(), source)
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(200))]
        /// Whatever the vCPU writes, whenever, through whichever cached translation, the
        /// stop leaves the destination equal to the source.
        #[test]
        fn no_write_is_ever_missed(
            seed in any::<u64>(),
            chance in prop_oneof![Just(0u64), 0u64..4, 0u64..64],
            rounds in 1u32..5,
            large in any::<bool>(),
            npt in any::<bool>(),
            between in proptest::collection::vec(0u64..(16 << 20), 0..40),
        ) {
            let format = if npt { Format::Npt } else { Format::Ept };
            let (dest, source) = migrate(format, seed, chance, rounds, large, &between);
            prop_assert_eq!(dest, source);
        }
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
