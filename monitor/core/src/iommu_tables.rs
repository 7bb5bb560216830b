//! What a VT-d domain (`vtd::domain`) and an AMD-Vi domain (`amdvi::domain`) share: the
//! I/O page tables of a sandbox are built by the EPT's own region walk
//! ([`build_sandbox_ept`]) over an [`EptMemory`] adapter that re-encodes each entry
//! into the unit's format ([`IoEntryFormat`], [`io_entry`], [`ept_entry`]), so a domain
//! maps exactly what the sandbox's EPT maps of memory (RAM, the channel directory and
//! channel areas, with their access), never the monitor's calibration page nor its
//! functions' BARs ([`build_dma_tables`]). Each unit's entry bits, levels and root stay
//! in its own module.

use crate::ept::{EptBuilder, EptError, EptMemory, ADDR_MASK, LARGE, RWX};
use crate::sandbox_ept::{build_sandbox_ept, HostPlacement, SandboxEptError};
use core::marker::PhantomData;
use quest_abi::{HostPhysAddr, Table, ACCESS_READ, ACCESS_WRITE};

/// EPT leaf memory type and ignore-PAT (bits 6:3): non-zero in leaves only (write-back
/// memory 6 << 3, uncached device registers 1 << 6), zero in pointers to tables.
const EPT_LEAF_TYPE: u64 = 0xf << 3;
/// The memory type the builder's leaves read back with (write-back).
pub(crate) const EPT_WB: u64 = 6 << 3;

/// A unit's page table entry format, as far as the builder's adapter needs it. Entries
/// hold the address in bits 51:12 (the EPT's address mask).
pub trait IoEntryFormat {
    /// Bits of a leaf that allows reads.
    const READ: u64;
    /// Bits of a leaf that allows writes.
    const WRITE: u64;
    /// Bits that mark a 2 MiB leaf.
    const LARGE: u64;
    /// Bits (besides the address) of an entry that points to the next table; the leaf
    /// decides the access, so these allow everything.
    const DIRECTORY: u64;
    /// Bits (besides the address and the access) every leaf carries.
    const LEAF: u64;
    /// Whether entry `io`, as [`io_entry`] wrote it, maps anything.
    fn present(io: u64) -> bool;
    /// Whether present entry `io`, as [`io_entry`] wrote it, points to the next table.
    fn is_directory(io: u64) -> bool;
}

/// The entry of format `F` for the EPT entry `ept` (0 for not present). Execute-only
/// (no read, no write) leaves stay not present: devices do not execute.
pub fn io_entry<F: IoEntryFormat>(ept: u64) -> u64 {
    if ept & RWX == 0 {
        return 0;
    }
    let addr = ept & ADDR_MASK;
    if ept & EPT_LEAF_TYPE == 0 {
        return addr | F::DIRECTORY;
    }
    let mut e = addr | F::LEAF;
    if ept & u64::from(ACCESS_READ) != 0 {
        e |= F::READ;
    }
    if ept & u64::from(ACCESS_WRITE) != 0 {
        e |= F::WRITE;
    }
    if ept & LARGE != 0 {
        e |= F::LARGE;
    }
    if e & (F::READ | F::WRITE) == 0 {
        0
    } else {
        e
    }
}

/// The EPT entry the builder wrote for entry `io` of format `F` (inverse of
/// [`io_entry`]; leaves read back write-back).
pub fn ept_entry<F: IoEntryFormat>(io: u64) -> u64 {
    if !F::present(io) {
        return 0;
    }
    let addr = io & ADDR_MASK;
    if F::is_directory(io) {
        return addr | RWX;
    }
    let mut e = addr | EPT_WB;
    if io & F::READ != 0 {
        e |= u64::from(ACCESS_READ);
    }
    if io & F::WRITE != 0 {
        e |= u64::from(ACCESS_WRITE);
    }
    if io & F::LARGE != 0 {
        e |= LARGE;
    }
    e
}

/// Frames of `M` holding entries of format `F`, seen as EPT frames while the builder
/// runs.
#[derive(Debug)]
pub struct Reencoded<F, M> {
    /// The frames.
    pub inner: M,
    format: PhantomData<F>,
}

impl<F, M> Reencoded<F, M> {
    /// `inner`'s frames, read and written in format `F`.
    pub fn new(inner: M) -> Self {
        Self {
            inner,
            format: PhantomData,
        }
    }
}

impl<F: IoEntryFormat, M: EptMemory> EptMemory for Reencoded<F, M> {
    fn alloc_table(&mut self) -> Option<HostPhysAddr> {
        self.inner.alloc_table()
    }
    fn read(&self, table: HostPhysAddr, index: usize) -> u64 {
        ept_entry::<F>(self.inner.read(table, index))
    }
    fn write(&mut self, table: HostPhysAddr, index: usize, value: u64) {
        self.inner.write(table, index, io_entry::<F>(value));
    }
}

/// Why a domain's tables (or the unit's tables that lead to them) could not be built.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BuildError {
    /// The sandbox's regions could not be mapped.
    Map(SandboxEptError),
    /// No frame left for a table.
    OutOfFrames,
    /// A mapping lies at or above 2^39 and the unit walks only 3 levels.
    AboveWidth,
}

impl core::fmt::Display for BuildError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::Map(e) => write!(f, "its DMA tables: {e}"),
            Self::OutOfFrames => f.write_str("out of frames for IOMMU tables"),
            Self::AboveWidth => f.write_str("its memory lies above the IOMMU's 39-bit width"),
        }
    }
}

/// Runs sandbox `sandbox`'s EPT region walk (a valid index into a validated table) over
/// `mem` (an adapter such as [`Reencoded`]) for its DMA domain: what its EPT maps but
/// the calibration page, and not its functions' BARs (no DMA from one device to
/// another's registers).
pub fn build_dma_tables<M: EptMemory>(
    table: &Table<'_>,
    sandbox: usize,
    place: &HostPlacement<'_>,
    mem: M,
) -> Result<EptBuilder<M>, BuildError> {
    let place = HostPlacement {
        calibration_hpa: None,
        device_memory: &[],
        ..*place
    };
    build_sandbox_ept(table, sandbox, &place, mem).map_err(|e| match e {
        SandboxEptError::Map {
            error: EptError::OutOfFrames,
            ..
        } => BuildError::OutOfFrames,
        other => BuildError::Map(other),
    })
}
