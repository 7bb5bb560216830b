//! What a VT-d unit walks (Intel VT-d spec rev. 4.1, chapter 9, legacy mode): the root
//! table (one 16-byte entry per bus, pointing to that bus's context table), context
//! entries (one per device and function: present, translation type 00 = untranslated
//! requests through second-level tables, address width, domain ID, second-level table
//! pointer), and each domain's second-level tables.
//!
//! A domain's second-level tables map exactly what its sandbox's EPT maps of memory
//! (RAM, the channel directory and channel areas, with their access; not the monitor's
//! calibration page, not its functions' BARs): [`build_domain`] runs the EPT's own region walk
//! ([`build_sandbox_ept`](crate::sandbox_ept::build_sandbox_ept)) over an [`EptMemory`] adapter that re-encodes each entry, as
//! the NPT does (`crate::npt`; what VT-d and AMD-Vi domains share is in
//! `crate::iommu_tables`). Second-level entries (9.8): bit 0 read, bit 1 write, bit
//! 7 a 2 MiB leaf in a PD, bits 51:12 the address; bits 11 (snoop) and 2-6 stay 0; bit
//! 52, ignored by the unit, marks leaves so the adapter can read its entries back. A
//! unit without 2 MiB pages gets each large leaf split into a table of 4 KiB leaves.
//! With 3 levels (39-bit), the table under the builder's PML4 entry 0 is the root, which
//! needs every mapping below 512 GiB (Quest's layout puts all of it there).

use super::regs::Levels;
use crate::ept::{EptBuilder, EptMemory, Translation, ADDR_MASK};
use crate::iommu_tables::{build_dma_tables, ept_entry, io_entry, BuildError, IoEntryFormat};
use crate::sandbox_ept::HostPlacement;
use quest_abi::{GuestPhysAddr, HostPhysAddr, PciAddress, Table};

/// Second-level entry: read.
pub const SL_R: u64 = 1;
/// Second-level entry: write.
pub const SL_W: u64 = 1 << 1;
/// Second-level entry: a 2 MiB leaf (in a PD).
pub const SL_PS: u64 = 1 << 7;
/// An ignored bit (61:52 are ignored at every level) marking leaves for read-back.
const SL_LEAF: u64 = 1 << 52;

/// Why a domain or a context entry could not be made.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DomainError {
    /// Its tables, or the root or context table, could not be built.
    Tables(BuildError),
    /// The function already has a context entry.
    Twice(PciAddress),
}

impl core::fmt::Display for DomainError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::Tables(e) => e.fmt(f),
            Self::Twice(a) => write!(f, "function {a} is given twice"),
        }
    }
}

/// Second-level entries as the builder's adapter writes them: pointers to tables allow
/// both accesses (the leaf decides), leaves carry [`SL_LEAF`].
#[derive(Debug)]
struct SecondLevel;

impl IoEntryFormat for SecondLevel {
    const READ: u64 = SL_R;
    const WRITE: u64 = SL_W;
    const LARGE: u64 = SL_PS;
    const DIRECTORY: u64 = SL_R | SL_W;
    const LEAF: u64 = SL_LEAF;
    fn present(sl: u64) -> bool {
        sl & (SL_R | SL_W) != 0
    }
    fn is_directory(sl: u64) -> bool {
        sl & SL_LEAF == 0
    }
}

/// Second-level frames seen as EPT frames.
#[derive(Debug)]
struct SlMemory<M> {
    inner: M,
    large_pages: bool,
    /// A split found no frame (its entry stayed not present).
    out_of_frames: bool,
}

impl<M: EptMemory> EptMemory for SlMemory<M> {
    fn alloc_table(&mut self) -> Option<HostPhysAddr> {
        self.inner.alloc_table()
    }
    fn read(&self, table: HostPhysAddr, index: usize) -> u64 {
        ept_entry::<SecondLevel>(self.inner.read(table, index))
    }
    fn write(&mut self, table: HostPhysAddr, index: usize, value: u64) {
        let entry = io_entry::<SecondLevel>(value);
        if entry & SL_PS == 0 || self.large_pages {
            return self.inner.write(table, index, entry);
        }
        // No 2 MiB pages: a table of 512 4 KiB leaves instead (fail closed without one).
        let Some(pt) = self.inner.alloc_table() else {
            self.out_of_frames = true;
            return;
        };
        let leaf = entry & !SL_PS;
        for i in 0..512u64 {
            self.inner.write(pt, i as usize, leaf + (i << 12));
        }
        self.inner.write(table, index, pt.as_u64() | SL_R | SL_W);
    }
}

/// One domain's second-level tables.
#[derive(Debug)]
pub struct Domain<M: EptMemory> {
    tables: EptBuilder<SlMemory<M>>,
    levels: Levels,
    root: HostPhysAddr,
}

impl<M: EptMemory> Domain<M> {
    /// The context entry's second-level table pointer.
    pub fn root(&self) -> HostPhysAddr {
        self.root
    }

    /// Its number of levels.
    pub fn levels(&self) -> Levels {
        self.levels
    }

    /// Looks a device address up (read back through the builder: 4 levels from the PML4).
    pub fn translate(&self, iova: GuestPhysAddr) -> Option<Translation> {
        if iova.as_u64() >= self.levels.limit() {
            return None;
        }
        self.tables.translate(iova)
    }

    /// Gives the memory back.
    pub fn into_memory(self) -> M {
        self.tables.into_memory().inner
    }
}

/// Builds the domain of sandbox `sandbox` (a valid index into a validated table): what
/// its EPT maps but the calibration page, walked with `levels`, in 2 MiB pages where its
/// EPT has them and `large_pages`.
pub fn build_domain<M: EptMemory>(
    table: &Table<'_>,
    sandbox: usize,
    place: &HostPlacement<'_>,
    mem: M,
    levels: Levels,
    large_pages: bool,
) -> Result<Domain<M>, DomainError> {
    let sl = SlMemory {
        inner: mem,
        large_pages,
        out_of_frames: false,
    };
    let tables = build_dma_tables(table, sandbox, place, sl).map_err(DomainError::Tables)?;
    let mem = tables.memory();
    if mem.out_of_frames {
        return Err(DomainError::Tables(BuildError::OutOfFrames));
    }
    let root = root_for(&mem.inner, tables.root(), levels)?;
    Ok(Domain {
        tables,
        levels,
        root,
    })
}

/// The table a walk of `levels` starts at, for tables built from the PML4 `pml4`.
fn root_for<M: EptMemory>(
    mem: &M,
    pml4: HostPhysAddr,
    levels: Levels,
) -> Result<HostPhysAddr, DomainError> {
    match levels {
        Levels::Four => Ok(pml4),
        Levels::Three => {
            if (1..512).any(|i| mem.read(pml4, i) != 0) {
                return Err(DomainError::Tables(BuildError::AboveWidth));
            }
            Ok(HostPhysAddr::new(mem.read(pml4, 0) & ADDR_MASK))
        }
    }
}

/// The root table and the context tables below it, in frames of `M`. Entries are 128
/// bits: two consecutive 64-bit slots of a frame.
#[derive(Debug)]
pub struct RootTable<M: EptMemory> {
    mem: M,
    root: HostPhysAddr,
}

impl<M: EptMemory> RootTable<M> {
    /// An empty root table: every request of every function faults (root entry not
    /// present) once translation is on.
    pub fn new(mut mem: M) -> Result<Self, DomainError> {
        let root = mem
            .alloc_table()
            .ok_or(DomainError::Tables(BuildError::OutOfFrames))?;
        Ok(Self { mem, root })
    }

    /// The root table's address (for RTADDR; legacy mode, TTM = 00).
    pub fn root(&self) -> HostPhysAddr {
        self.root
    }

    /// Gives function `f` a context entry: its requests are translated by the domain
    /// whose tables start at `slptptr`, with `levels` and domain ID `domain`.
    pub fn add(
        &mut self,
        f: PciAddress,
        slptptr: HostPhysAddr,
        levels: Levels,
        domain: u16,
    ) -> Result<(), DomainError> {
        let bus = 2 * usize::from(f.bus);
        let root_low = self.mem.read(self.root, bus);
        let context = if root_low & 1 != 0 {
            HostPhysAddr::new(root_low & ADDR_MASK)
        } else {
            let t = self
                .mem
                .alloc_table()
                .ok_or(DomainError::Tables(BuildError::OutOfFrames))?;
            self.mem.write(self.root, bus + 1, 0);
            self.mem.write(self.root, bus, t.as_u64() | 1);
            t
        };
        let slot = 2 * usize::from(f.device << 3 | f.function);
        if self.mem.read(context, slot) & 1 != 0 {
            return Err(DomainError::Twice(f));
        }
        // The upper half first: the entry becomes present with its last write.
        self.mem
            .write(context, slot + 1, levels.aw() | u64::from(domain) << 8);
        self.mem
            .write(context, slot, (slptptr.as_u64() & ADDR_MASK) | 1);
        Ok(())
    }

    /// Gives the memory back.
    pub fn into_memory(self) -> M {
        self.mem
    }

    /// Its memory.
    pub fn memory(&self) -> &M {
        &self.mem
    }
}

#[cfg(test)]
#[path = "domain_tests.rs"]
mod tests;
