//! What an AMD IOMMU walks (AMD IOMMU spec 48882, 2.2): the device table (one 32-byte
//! entry per device ID, [`DeviceTable`]) and each domain's I/O page tables ("host"
//! tables in the v1 format, [`build_domain`]).
//!
//! A domain's tables map exactly what its sandbox's EPT maps of memory (RAM, the channel
//! directory and channel areas, with their access; not the monitor's calibration page,
//! not its functions' BARs): [`build_domain`] runs the EPT's own region walk
//! ([`build_sandbox_ept`](crate::sandbox_ept::build_sandbox_ept)) over an [`EptMemory`] adapter that re-encodes each entry, as
//! `vtd::domain` does for VT-d (what the two share is in `crate::iommu_tables`). Entries: bit 0 PR (present), bits 11:9 Next Level (the
//! level of the table a directory entry points to; 0 in a leaf, which in a level-2 table
//! is a 2 MiB page), bits 51:12 the address, bit 61 IR and bit 62 IW (read/write
//! allowed; the unit ANDs them over every level, so directory entries allow both and the
//! leaf decides). The adapter cannot know a table's level when the builder links it, so
//! it writes directory entries with a provisional Next Level and leaves with an ignored
//! bit marking 2 MiB pages (to read them back as the builder wrote them); a final walk
//! from the root sets every Next Level by depth and clears the marks.
//!
//! Entries that map nothing are not zero: they hold [`NOT_PRESENT`] (PR = 0, Next Level
//! 1). PR = 0 makes them not present for the spec whatever else they hold, so a request
//! through them faults as through a zero entry. QEMU 7.2's amd-iommu needs the
//! difference to notice the fault at all: its walk (`amdvi_page_walk`) returns quietly,
//! the request refused but nothing reported, when it reads an entry that is all zero,
//! and takes its page-fault path only for a non-zero entry without PR whose Next Level
//! keeps the walk going.

use super::regs::{
    Dte, Levels, ADDR_MASK, DTES_PER_PAGE, DTE_BLOCKED, DTE_INTERRUPTS_BLOCKED, DTE_SIZE,
};
use crate::ept::EptMemory;
use crate::iommu_tables::{build_dma_tables, BuildError, IoEntryFormat, Reencoded};
use crate::sandbox_ept::HostPlacement;
use quest_abi::{GuestPhysAddr, HostPhysAddr, Table};

/// Page table entry bit 0: present.
pub const PR: u64 = 1;
/// Page table entry bits 11:9: Next Level.
const NEXT_LEVEL_SHIFT: u32 = 9;
const NEXT_LEVEL_MASK: u64 = 7 << NEXT_LEVEL_SHIFT;
/// Page table entry bit 61: reads allowed.
pub const IR: u64 = 1 << 61;
/// Page table entry bit 62: writes allowed.
pub const IW: u64 = 1 << 62;
/// What an entry that maps nothing holds (see the module documentation).
pub const NOT_PRESENT: u64 = 1 << NEXT_LEVEL_SHIFT;
/// Bit 1 (one of bits 4:1, ignored by the unit) marks a 2 MiB leaf while the builder
/// runs; the final walk clears it.
const BUILD_LARGE: u64 = 1 << 1;
/// The Next Level directory entries carry until the final walk sets it.
const BUILD_DIRECTORY: u64 = 1 << NEXT_LEVEL_SHIFT;

/// Why a domain or a device table entry could not be made.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DomainError {
    /// Its tables could not be built.
    Tables(BuildError),
    /// The device ID already translates through a domain.
    Twice(u16),
    /// The device ID is beyond the device table.
    OutsideTable(u16),
}

impl core::fmt::Display for DomainError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::Tables(e) => e.fmt(f),
            Self::Twice(id) => write!(f, "device ID {id:#06x} is given twice"),
            Self::OutsideTable(id) => write!(f, "device ID {id:#06x} is beyond the device table"),
        }
    }
}

/// Page table entries as the builder's adapter writes them (see the module
/// documentation): directory entries allow both accesses (the leaf decides) and carry a
/// provisional Next Level; 2 MiB leaves carry [`BUILD_LARGE`].
#[derive(Debug)]
struct Build;

impl IoEntryFormat for Build {
    const READ: u64 = IR;
    const WRITE: u64 = IW;
    const LARGE: u64 = BUILD_LARGE;
    const DIRECTORY: u64 = PR | BUILD_DIRECTORY | IR | IW;
    const LEAF: u64 = PR;
    fn present(io: u64) -> bool {
        io & PR != 0
    }
    fn is_directory(io: u64) -> bool {
        io & NEXT_LEVEL_MASK != 0
    }
}

/// Sets the Next Level of every directory entry of `table` (a table of `level`, 4 to 1)
/// and below, clears the build marks of its leaves, and fills what maps nothing with
/// [`NOT_PRESENT`].
fn finish<M: EptMemory>(mem: &mut M, table: HostPhysAddr, level: u64) {
    for i in 0..512 {
        let e = mem.read(table, i);
        let value = if e & PR == 0 {
            NOT_PRESENT
        } else if e & NEXT_LEVEL_MASK != 0 && level > 1 {
            finish(mem, HostPhysAddr::new(e & ADDR_MASK), level - 1);
            (e & !NEXT_LEVEL_MASK) | (level - 1) << NEXT_LEVEL_SHIFT
        } else {
            e & !(BUILD_LARGE | NEXT_LEVEL_MASK)
        };
        mem.write(table, i, value);
    }
}

/// One domain's I/O page tables.
#[derive(Debug)]
pub struct Domain<M: EptMemory> {
    mem: M,
    levels: Levels,
    root: HostPhysAddr,
}

/// A device address the domain translates.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IoTranslation {
    /// Host-physical address.
    pub hpa: HostPhysAddr,
    /// Bytes of the page (4 KiB or 2 MiB).
    pub page_size: u64,
    /// Reads allowed.
    pub read: bool,
    /// Writes allowed.
    pub write: bool,
}

impl<M: EptMemory> Domain<M> {
    /// The device table entry's page table root pointer.
    pub fn root(&self) -> HostPhysAddr {
        self.root
    }

    /// Its number of levels.
    pub fn levels(&self) -> Levels {
        self.levels
    }

    /// Walks the tables as the unit does (from the root, Next Level by Next Level).
    pub fn translate(&self, iova: GuestPhysAddr) -> Option<IoTranslation> {
        let iova = iova.as_u64();
        if iova >= self.levels.limit() {
            return None;
        }
        let (mut table, mut level) = (self.root, self.levels.mode());
        let (mut read, mut write) = (true, true);
        loop {
            let e = self
                .mem
                .read(table, ((iova >> (3 + 9 * level)) & 511) as usize);
            if e & PR == 0 {
                return None;
            }
            read &= e & IR != 0;
            write &= e & IW != 0;
            let next = (e & NEXT_LEVEL_MASK) >> NEXT_LEVEL_SHIFT;
            if next == 0 {
                let page_size = 1u64 << (3 + 9 * level);
                let hpa = (e & ADDR_MASK & !(page_size - 1)) | (iova & (page_size - 1));
                return Some(IoTranslation {
                    hpa: HostPhysAddr::new(hpa),
                    page_size,
                    read,
                    write,
                });
            }
            if next >= level {
                return None;
            }
            table = HostPhysAddr::new(e & ADDR_MASK);
            level = next;
        }
    }

    /// Gives the memory back.
    pub fn into_memory(self) -> M {
        self.mem
    }
}

/// Builds the domain of sandbox `sandbox` (a valid index into a validated table): what
/// its EPT maps but the calibration page and its functions' BARs, walked with `levels`.
pub fn build_domain<M: EptMemory>(
    table: &Table<'_>,
    sandbox: usize,
    place: &HostPlacement<'_>,
    mem: M,
    levels: Levels,
) -> Result<Domain<M>, DomainError> {
    let tables = build_dma_tables(table, sandbox, place, Reencoded::<Build, M>::new(mem))
        .map_err(DomainError::Tables)?;
    let pml4 = tables.root();
    let mut mem = tables.into_memory().inner;
    let root = root_for(&mut mem, pml4, levels)?;
    finish(&mut mem, root, levels.mode());
    Ok(Domain { mem, levels, root })
}

/// The table a walk of `levels` starts at, for tables built from the PML4 `pml4`.
fn root_for<M: EptMemory>(
    mem: &mut M,
    pml4: HostPhysAddr,
    levels: Levels,
) -> Result<HostPhysAddr, DomainError> {
    match levels {
        Levels::Four => Ok(pml4),
        Levels::Three => {
            if (1..512).any(|i| mem.read(pml4, i) & PR != 0) {
                return Err(DomainError::Tables(BuildError::AboveWidth));
            }
            let e = mem.read(pml4, 0);
            if e & PR == 0 {
                // Nothing mapped at all: an empty level-3 table.
                mem.alloc_table()
                    .ok_or(DomainError::Tables(BuildError::OutOfFrames))
            } else {
                Ok(HostPhysAddr::new(e & ADDR_MASK))
            }
        }
    }
}

/// The device table: one entry per device ID `0..entries`, in contiguous frames.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DeviceTable {
    base: HostPhysAddr,
    entries: u32,
}

impl DeviceTable {
    /// The 4 KiB pages a table for device IDs `0..=highest` needs.
    pub fn pages_for(highest: u16) -> u32 {
        u32::from(highest) / DTES_PER_PAGE + 1
    }

    /// A table at `base` (`pages` contiguous 4 KiB frames of `mem`) whose every entry
    /// blocks its device ([`DTE_BLOCKED`]).
    pub fn new<M: EptMemory>(mem: &mut M, base: HostPhysAddr, pages: u32) -> Self {
        let t = Self {
            base,
            entries: pages.clamp(1, 512) * DTES_PER_PAGE,
        };
        for id in 0..t.entries {
            t.write(mem, id as u16, DTE_BLOCKED);
        }
        t
    }

    /// Its address.
    pub fn base(&self) -> HostPhysAddr {
        self.base
    }

    /// Its number of 4 KiB pages.
    pub fn pages(&self) -> u32 {
        self.entries / DTES_PER_PAGE
    }

    /// Where word `word` of entry `id` is: (frame, index in the frame).
    fn slot(&self, id: u16, word: usize) -> (HostPhysAddr, usize) {
        let byte = u64::from(id) * DTE_SIZE + 8 * word as u64;
        (
            HostPhysAddr::new(self.base.as_u64() + (byte & !0xfff)),
            ((byte & 0xfff) / 8) as usize,
        )
    }

    fn write<M: EptMemory>(&self, mem: &mut M, id: u16, dte: Dte) {
        // Word 0 (V, TV, the root) last: the entry changes meaning with it.
        for word in (0..4).rev() {
            let (frame, index) = self.slot(id, word);
            mem.write(frame, index, dte[word]);
        }
    }

    /// Entry `id` (`None` beyond the table).
    pub fn entry<M: EptMemory>(&self, mem: &M, id: u16) -> Option<Dte> {
        (u32::from(id) < self.entries).then(|| {
            core::array::from_fn(|word| {
                let (frame, index) = self.slot(id, word);
                mem.read(frame, index)
            })
        })
    }

    /// Blocks the interrupts of every device ID that is still blocked for DMA
    /// ([`DTE_BLOCKED`]): IV = 1, IntCtl = 00b, no pass bit ([`DTE_INTERRUPTS_BLOCKED`]).
    /// With interrupt remapping on, only the entries the monitor wrote let an interrupt
    /// through. Call it after the last [`DeviceTable::assign`].
    pub fn block_interrupts<M: EptMemory>(&self, mem: &mut M) {
        let blocked = [DTE_BLOCKED[0], 0, DTE_INTERRUPTS_BLOCKED, 0];
        for id in 0..self.entries {
            if self.entry(mem, id as u16) == Some(DTE_BLOCKED) {
                self.write(mem, id as u16, blocked);
            }
        }
    }

    /// Makes device ID `id`'s requests go through `dte` (one entry per ID: a second is
    /// refused).
    pub fn assign<M: EptMemory>(&self, mem: &mut M, id: u16, dte: Dte) -> Result<(), DomainError> {
        match self.entry(mem, id) {
            None => Err(DomainError::OutsideTable(id)),
            Some(e) if e != DTE_BLOCKED => Err(DomainError::Twice(id)),
            Some(_) => {
                self.write(mem, id, dte);
                Ok(())
            }
        }
    }
}

#[cfg(test)]
#[path = "domain_tests.rs"]
mod tests;
