//! What a VT-d unit walks (Intel VT-d spec rev. 4.1, chapter 9, legacy mode): the root
//! table (one 16-byte entry per bus, pointing to that bus's context table), context
//! entries (one per device and function: present, translation type 00 = untranslated
//! requests through second-level tables, address width, domain ID, second-level table
//! pointer), and each domain's second-level tables.
//!
//! A domain's second-level tables map exactly what its sandbox's EPT maps of memory
//! (RAM, the channel directory and channel areas, with their access; not the monitor's
//! calibration page, not its functions' BARs): [`build_domain`] runs the EPT's own region walk
//! ([`build_sandbox_ept`]) over an [`EptMemory`] adapter that re-encodes each entry, as
//! the NPT does (`crate::npt`). Second-level entries (9.8): bit 0 read, bit 1 write, bit
//! 7 a 2 MiB leaf in a PD, bits 51:12 the address; bits 11 (snoop) and 2-6 stay 0; bit
//! 52, ignored by the unit, marks leaves so the adapter can read its entries back. A
//! unit without 2 MiB pages gets each large leaf split into a table of 4 KiB leaves.
//! With 3 levels (39-bit), the table under the builder's PML4 entry 0 is the root, which
//! needs every mapping below 512 GiB (Quest's layout puts all of it there).

use super::regs::Levels;
use crate::ept::{EptBuilder, EptError, EptMemory, Translation, ADDR_MASK, LARGE, RWX};
use crate::sandbox_ept::{build_sandbox_ept, HostPlacement, SandboxEptError};
use quest_abi::{GuestPhysAddr, HostPhysAddr, PciAddress, Table, ACCESS_READ, ACCESS_WRITE};

/// Second-level entry: read.
pub const SL_R: u64 = 1;
/// Second-level entry: write.
pub const SL_W: u64 = 1 << 1;
/// Second-level entry: a 2 MiB leaf (in a PD).
pub const SL_PS: u64 = 1 << 7;
/// An ignored bit (61:52 are ignored at every level) marking leaves for read-back.
const SL_LEAF: u64 = 1 << 52;
/// EPT leaf memory type and ignore-PAT (bits 6:3): non-zero in leaves only (write-back
/// memory 6 << 3, uncached device registers 1 << 6), zero in pointers to tables.
const EPT_LEAF_TYPE: u64 = 0xf << 3;
const EPT_WB: u64 = 6 << 3;

/// Why a domain or a context entry could not be made.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DomainError {
    /// The sandbox's regions could not be mapped.
    Map(SandboxEptError),
    /// No frame left for a table.
    OutOfFrames,
    /// A mapping lies at or above 2^39 and the unit walks only 3 levels.
    AboveWidth,
    /// The function already has a context entry.
    Twice(PciAddress),
}

impl core::fmt::Display for DomainError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::Map(e) => write!(f, "its DMA tables: {e}"),
            Self::OutOfFrames => f.write_str("out of frames for IOMMU tables"),
            Self::AboveWidth => f.write_str("its memory lies above the IOMMU's 39-bit width"),
            Self::Twice(a) => write!(f, "function {a} is given twice"),
        }
    }
}

/// The second-level entry for the EPT entry `ept` (0 for not present).
fn sl_entry(ept: u64) -> u64 {
    if ept & RWX == 0 {
        return 0;
    }
    let addr = ept & ADDR_MASK;
    if ept & EPT_LEAF_TYPE == 0 {
        // A pointer to the next table: the leaf decides.
        return addr | SL_R | SL_W;
    }
    let mut e = addr | SL_LEAF;
    if ept & u64::from(ACCESS_READ) != 0 {
        e |= SL_R;
    }
    if ept & u64::from(ACCESS_WRITE) != 0 {
        e |= SL_W;
    }
    if ept & LARGE != 0 {
        e |= SL_PS;
    }
    // Execute-only (no read, no write) leaves stay not present: devices do not execute.
    if e & (SL_R | SL_W) == 0 {
        0
    } else {
        e
    }
}

/// The EPT entry the builder wrote for second-level entry `sl` (inverse of [`sl_entry`]).
fn ept_entry(sl: u64) -> u64 {
    if sl & (SL_R | SL_W) == 0 {
        return 0;
    }
    let addr = sl & ADDR_MASK;
    if sl & SL_LEAF == 0 {
        return addr | RWX;
    }
    let mut e = addr | EPT_WB;
    if sl & SL_R != 0 {
        e |= u64::from(ACCESS_READ);
    }
    if sl & SL_W != 0 {
        e |= u64::from(ACCESS_WRITE);
    }
    if sl & SL_PS != 0 {
        e |= LARGE;
    }
    e
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
        ept_entry(self.inner.read(table, index))
    }
    fn write(&mut self, table: HostPhysAddr, index: usize, value: u64) {
        let entry = sl_entry(value);
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
    // Not the calibration page, and not the functions' BARs (no DMA from one device
    // to another's registers).
    let place = HostPlacement {
        calibration_hpa: None,
        device_memory: &[],
        ..*place
    };
    let sl = SlMemory {
        inner: mem,
        large_pages,
        out_of_frames: false,
    };
    let tables = build_sandbox_ept(table, sandbox, &place, sl).map_err(|e| match e {
        SandboxEptError::Map {
            error: EptError::OutOfFrames,
            ..
        } => DomainError::OutOfFrames,
        other => DomainError::Map(other),
    })?;
    let mem = tables.memory();
    if mem.out_of_frames {
        return Err(DomainError::OutOfFrames);
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
                return Err(DomainError::AboveWidth);
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
        let root = mem.alloc_table().ok_or(DomainError::OutOfFrames)?;
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
            let t = self.mem.alloc_table().ok_or(DomainError::OutOfFrames)?;
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
