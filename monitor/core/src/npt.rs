//! Nested page tables (NPT): the guest-physical -> host-physical map of one sandbox on
//! AMD SVM (AMD APM Vol. 2, 15.25 "Nested Paging"), built from exactly the same plan as
//! its EPT.
//!
//! NPT entries are ordinary long-mode page-table entries (APM Vol. 2, 5.4 "Page-Translation-
//! Table Entry Fields"), not EPT entries: bit 0 present (readable), bit 1 writable, bit 2
//! user, bit 7 page size (a 2 MiB leaf in a PD), bit 63 no-execute. Every nested walk is a
//! user-level access, so U must be set at every level; NX is honoured because the host
//! runs with EFER.NXE = 1 (the nested walk uses the host's EFER and CR4, as captured at
//! VMRUN; both in APM 15.25), which the SVM backend must keep set. PWT, PCD and PAT are 0
//! in memory leaves: PAT entry 0, write-back with the power-on PAT, the same type as the
//! EPT's leaves. A device's registers (the EPT's uncached leaves) get PCD and PWT: PAT
//! entry 3, uncached with the power-on PAT the monitor keeps (APM 15.25.8: the nested
//! walk's type comes from the host's PAT and combines with the guest's, uncached wins).
//!
//! There is one page-table builder and one region walk: [`NptBuilder`] runs the EPT
//! builder ([`crate::ept::EptBuilder`]) and [`build_sandbox_npt`] the EPT's region walk
//! ([`crate::sandbox_ept::build_sandbox_ept`]) over an [`EptMemory`] adapter that
//! re-encodes every entry as it is written (and back as it is read). The frames therefore
//! hold only NPT entries, and allocation, alignment, large-page choice, double-mapping
//! checks and per-region access are the EPT's own. Tests walk the raw frames the way the
//! processor does, against the same expectations as the EPT.
//!
//! NPT cannot express execute-only or write-only pages (present means readable); the
//! builder refuses an access without read, as the EPT builder refuses write-without-read.

use crate::ept::{EptBuilder, EptError, EptMemory, Translation};
use crate::sandbox_ept::{build_sandbox_ept, HostPlacement, SandboxEptError};
use quest_abi::{GuestPhysAddr, HostPhysAddr, Table, ACCESS_READ};

/// Present.
pub const NPT_P: u64 = 1;
/// Writable.
pub const NPT_RW: u64 = 1 << 1;
/// User (required at every level of a nested walk).
pub const NPT_US: u64 = 1 << 2;
/// Page size: the PD entry maps a 2 MiB page.
pub const NPT_PS: u64 = 1 << 7;
/// No-execute (with EFER.NXE = 1 on the host).
pub const NPT_NX: u64 = 1 << 63;
/// An AVL bit (ignored by the processor, APM 5.4.1): marks leaves, so the adapter can
/// tell a 4 KiB leaf from a pointer to a table when it reads an entry back.
const NPT_LEAF: u64 = 1 << 9;
/// Page-level write-through.
pub const NPT_PWT: u64 = 1 << 3;
/// Page-level cache disable.
pub const NPT_PCD: u64 = 1 << 4;
/// Bits 51:12: the physical address.
const ADDR_MASK: u64 = 0x000F_FFFF_FFFF_F000;

/// EPT entry bits the builder writes (SDM 29.3.2): read, write, execute, memory type in
/// 5:3 (non-zero only in leaves) and bit 7 for a 2 MiB leaf.
const EPT_R: u64 = 1;
const EPT_W: u64 = 1 << 1;
const EPT_X: u64 = 1 << 2;
const EPT_WB: u64 = 6 << 3;
use crate::ept::{LEAF_TYPE as EPT_LEAF_TYPE, LEAF_UC as EPT_UC};
const EPT_LARGE: u64 = 1 << 7;

/// The leaf bits that translate one to one between the formats: (EPT bit, NPT bit, whether
/// the NPT bit means the opposite). Write is RW, execute is the absence of NX, a 2 MiB
/// leaf is PS.
const LEAF_BITS: [(u64, u64, bool); 3] = [
    (EPT_W, NPT_RW, false),
    (EPT_X, NPT_NX, true),
    (EPT_LARGE, NPT_PS, false),
];

/// The [`LEAF_BITS`] of leaf `entry` in the other format: `entry` is an EPT leaf and the
/// result NPT bits with `to_npt`, the reverse without.
fn leaf_bits(entry: u64, to_npt: bool) -> u64 {
    LEAF_BITS.iter().fold(0, |bits, &(ept, npt, inverted)| {
        let (from, to) = if to_npt { (ept, npt) } else { (npt, ept) };
        if (entry & from != 0) != inverted {
            bits | to
        } else {
            bits
        }
    })
}

/// The NPT entry for the EPT entry `ept`; `None` when NPT cannot express it (a leaf
/// without read).
fn npt_entry(ept: u64) -> Option<u64> {
    if ept & (EPT_R | EPT_W | EPT_X) == 0 {
        return Some(0);
    }
    let addr = ept & ADDR_MASK;
    if ept & EPT_LEAF_TYPE == 0 {
        // A pointer to the next table: everything allowed, the leaf decides.
        return Some(addr | NPT_P | NPT_RW | NPT_US);
    }
    if ept & EPT_R == 0 {
        return None;
    }
    let uncached = if ept & EPT_LEAF_TYPE == EPT_UC {
        NPT_PCD | NPT_PWT
    } else {
        0
    };
    Some(addr | NPT_P | NPT_US | NPT_LEAF | uncached | leaf_bits(ept, true))
}

/// The EPT entry the builder wrote for NPT entry `npt` (inverse of [`npt_entry`]).
fn ept_entry(npt: u64) -> u64 {
    if npt & NPT_P == 0 {
        return 0;
    }
    let addr = npt & ADDR_MASK;
    if npt & NPT_LEAF == 0 {
        return addr | EPT_R | EPT_W | EPT_X;
    }
    let memory_type = if npt & NPT_PCD != 0 { EPT_UC } else { EPT_WB };
    addr | EPT_R | memory_type | leaf_bits(npt, false)
}

/// The frames of an NPT seen as EPT frames: entries are re-encoded on the way in and out.
#[derive(Debug)]
struct NptMemory<M> {
    inner: M,
}

impl<M: EptMemory> EptMemory for NptMemory<M> {
    fn alloc_table(&mut self) -> Option<HostPhysAddr> {
        self.inner.alloc_table()
    }
    fn read(&self, table: HostPhysAddr, index: usize) -> u64 {
        ept_entry(self.inner.read(table, index))
    }
    fn write(&mut self, table: HostPhysAddr, index: usize, value: u64) {
        // Both entry points refuse an access without read before mapping, so every leaf
        // can be expressed; were one not, it would stay not present (fail closed).
        self.inner
            .write(table, index, npt_entry(value).unwrap_or(0));
    }
}

/// Builds (and reads back) one sandbox's nested page tables.
#[derive(Debug)]
pub struct NptBuilder<M: EptMemory> {
    tables: EptBuilder<NptMemory<M>>,
}

fn readable(access: u32) -> Result<(), EptError> {
    if access & ACCESS_READ == 0 {
        return Err(EptError::BadAccess(access));
    }
    Ok(())
}

impl<M: EptMemory> NptBuilder<M> {
    /// Starts empty nested page tables (allocates the PML4).
    pub fn new(mem: M) -> Result<Self, EptError> {
        Ok(Self {
            tables: EptBuilder::new(NptMemory { inner: mem })?,
        })
    }

    /// The VMCB's nCR3: the PML4's host-physical address (PWT = PCD = 0, write-back).
    pub fn ncr3(&self) -> u64 {
        self.tables.root().as_u64()
    }

    /// Gives the memory back.
    pub fn into_memory(self) -> M {
        self.tables.into_memory().inner
    }

    /// Maps `[gpa, gpa + size)` to `[hpa, ...)` with `access` (which must include read),
    /// in 2 MiB pages where both sides allow and `large` is set (as the EPT builder).
    pub fn map_range(
        &mut self,
        gpa: GuestPhysAddr,
        hpa: HostPhysAddr,
        size: u64,
        access: u32,
        large: bool,
    ) -> Result<(), EptError> {
        readable(access)?;
        self.tables.map_range(gpa, hpa, size, access, large)
    }

    /// Maps a device's registers `[gpa, gpa + size)` to `[hpa, ...)` uncached (PCD and
    /// PWT), as [`EptBuilder::map_range_uncached`].
    pub fn map_range_uncached(
        &mut self,
        gpa: GuestPhysAddr,
        hpa: HostPhysAddr,
        size: u64,
        access: u32,
    ) -> Result<(), EptError> {
        readable(access)?;
        self.tables.map_range_uncached(gpa, hpa, size, access)
    }

    /// Looks `gpa` up (what the monitor uses to reach guest memory).
    pub fn translate(&self, gpa: GuestPhysAddr) -> Option<Translation> {
        self.tables.translate(gpa)
    }
}

/// Builds the nested page tables of sandbox `sandbox` (a valid index into a validated
/// table): the same regions, page sizes and access as [`build_sandbox_ept`].
pub fn build_sandbox_npt<M: EptMemory>(
    table: &Table<'_>,
    sandbox: usize,
    place: &HostPlacement<'_>,
    mem: M,
) -> Result<NptBuilder<M>, SandboxEptError> {
    let first = table.sandboxes[sandbox].regions.first.get() as usize;
    for (pos, r) in table.sandbox_regions(sandbox).iter().enumerate() {
        readable(r.access.get()).map_err(|error| SandboxEptError::Map {
            region: first + pos,
            error,
        })?;
    }
    let tables = build_sandbox_ept(table, sandbox, place, NptMemory { inner: mem })?;
    Ok(NptBuilder { tables })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ept::test_memory::VecMemory;
    use crate::ept::{PAGE_2M, PAGE_4K};
    use quest_abi::layout::{CALIBRATION_GPA, CALIBRATION_SIZE, DIRECTORY_GPA, DIRECTORY_SIZE};
    use quest_abi::testing::{sample_table, DATA_SIZE, MIB};
    use quest_abi::{validate, ACCESS_EXEC, ACCESS_WRITE};

    const R: u32 = ACCESS_READ;
    const RW: u32 = ACCESS_READ | ACCESS_WRITE;
    const RWX: u32 = RW | ACCESS_EXEC;

    fn g(a: u64) -> GuestPhysAddr {
        GuestPhysAddr::new(a)
    }

    fn h(a: u64) -> HostPhysAddr {
        HostPhysAddr::new(a)
    }

    /// The processor's nested walk over the raw frames (APM 15.25 and 5.3): every level
    /// must be present and user; writable and executable are the AND over the levels; a
    /// PD entry with PS is a 2 MiB leaf. Returns (hpa, ACCESS_* bits, page size).
    fn hardware_walk(mem: &VecMemory, ncr3: u64, gpa: u64) -> Option<(u64, u32, u64)> {
        let (mut write, mut exec) = (true, true);
        let mut table = ncr3;
        for level in (0..4u32).rev() {
            let idx = ((gpa >> (12 + 9 * level)) & 0x1ff) as usize;
            let e = mem.read(h(table), idx);
            if e & NPT_P == 0 || e & NPT_US == 0 {
                return None;
            }
            write &= e & NPT_RW != 0;
            exec &= e & NPT_NX == 0;
            let caching = e & (NPT_PCD | NPT_PWT);
            let leaf = level == 0 || e & NPT_PS != 0;
            assert!(
                caching == 0 || (leaf && caching == NPT_PCD | NPT_PWT),
                "tables write-back; leaves write-back or uncached (PAT entry 3)"
            );
            let size = match level {
                0 => PAGE_4K,
                1 if e & NPT_PS != 0 => PAGE_2M,
                _ => {
                    assert_eq!(e & NPT_PS, 0, "no 1 GiB pages");
                    table = e & ADDR_MASK;
                    continue;
                }
            };
            let access =
                R | if write { ACCESS_WRITE } else { 0 } | if exec { ACCESS_EXEC } else { 0 };
            let base = e & ADDR_MASK & !(size - 1);
            return Some((base | (gpa & (size - 1)), access, size));
        }
        None
    }

    /// RAM at 1 GiB, the directory at 2 GiB.
    fn placed() -> crate::sandbox_place::SandboxPlacement {
        crate::sandbox_place::SandboxPlacement {
            ram_hpa: h(0x4000_0000),
            directory_hpa: Some(h(0x8000_0000)),
            ..crate::sandbox_place::SandboxPlacement::UNPLACED
        }
    }

    /// The sample sandbox `sandbox` mapped both ways with the same placement: RAM at
    /// 1 GiB, directory at 2 GiB, the channel at 0x9000_0000, calibration at 0xa000_0000.
    fn both(sandbox: usize) -> (EptBuilder<VecMemory>, NptBuilder<VecMemory>) {
        let bytes = sample_table();
        let table = validate(&bytes).unwrap();
        let chan = [h(0x9000_0000)];
        let sandbox_place = placed();
        let place = HostPlacement {
            sandbox: &sandbox_place,
            channel_hpas: &chan,
            calibration_hpa: Some(h(0xa000_0000)),
            device_memory: &[],
        };
        let ept = build_sandbox_ept(&table, sandbox, &place, VecMemory::new(32)).unwrap();
        let npt = build_sandbox_npt(&table, sandbox, &place, VecMemory::new(32)).unwrap();
        (ept, npt)
    }

    #[test]
    fn device_registers_are_uncached_pat_entry_3() {
        let mut npt = NptBuilder::new(VecMemory::new(16)).unwrap();
        npt.map_range(g(0), h(0x20_0000), PAGE_2M, RWX, true)
            .unwrap();
        npt.map_range_uncached(g(0xfebf_0000), h(0xfebf_0000), PAGE_4K, RW)
            .unwrap();
        npt.map_range_uncached(g(0x8_0000_0000), h(0x8_0000_0000), PAGE_2M, RW)
            .unwrap();
        assert_eq!(
            npt.map_range_uncached(g(0x1000), h(0x1000), PAGE_4K, ACCESS_WRITE),
            Err(EptError::BadAccess(ACCESS_WRITE))
        );
        for (gpa, size) in [(0xfebf_0ff8, PAGE_4K), (0x8_001f_fff8, PAGE_2M)] {
            let t = npt.translate(g(gpa)).unwrap();
            assert_eq!(
                (t.hpa, t.uncached, t.access, t.page_size),
                (h(gpa), true, RW, size)
            );
        }
        assert!(!npt.translate(g(0x10)).unwrap().uncached);
        let ncr3 = npt.ncr3();
        let mem = npt.into_memory();
        assert_eq!(
            hardware_walk(&mem, ncr3, 0xfebf_0010),
            Some((0xfebf_0010, RW, PAGE_4K))
        );
        let leaf = |gpa: u64| {
            let mut table = ncr3;
            for level in (0..4u32).rev() {
                let e = mem.read(h(table), ((gpa >> (12 + 9 * level)) & 0x1ff) as usize);
                if level == 0 || e & NPT_PS != 0 {
                    return e;
                }
                table = e & ADDR_MASK;
            }
            unreachable!()
        };
        assert_eq!(leaf(0xfebf_0000) & (NPT_PCD | NPT_PWT), NPT_PCD | NPT_PWT);
        assert_eq!(
            leaf(0x8_0000_0000) & (NPT_PCD | NPT_PWT | NPT_NX),
            NPT_PCD | NPT_PWT | NPT_NX
        );
        assert_eq!(leaf(0) & (NPT_PCD | NPT_PWT), 0, "RAM write-back");
    }

    /// One expectation: guest-physical address -> (host-physical, access, page size), or
    /// not mapped.
    type Expect = (u64, Option<(u64, u32, u64)>);

    /// What sandbox `sandbox` of the sample must see, region by region.
    fn expectations(sandbox: usize) -> Vec<Expect> {
        let data = DIRECTORY_GPA + DIRECTORY_SIZE;
        let ack = data + DATA_SIZE;
        // Sandbox 0 writes the channel (data rw, ack r), sandbox 1 reads it (data r, ack rw).
        let (data_access, ack_access) = if sandbox == 0 { (RW, R) } else { (R, RW) };
        vec![
            (0, Some((0x4000_0000, RWX, PAGE_2M))),
            (8 * MIB - 1, Some((0x4000_0000 + 8 * MIB - 1, RWX, PAGE_2M))),
            (8 * MIB, None),
            (DIRECTORY_GPA + 8, Some((0x8000_0008, R, PAGE_4K))),
            (data, Some((0x9000_0000, data_access, PAGE_4K))),
            (
                data + DATA_SIZE - 1,
                Some((0x9000_0000 + DATA_SIZE - 1, data_access, PAGE_4K)),
            ),
            (ack, Some((0x9000_0000 + DATA_SIZE, ack_access, PAGE_4K))),
            (ack + PAGE_4K, None),
            (
                CALIBRATION_GPA + CALIBRATION_SIZE - 1,
                Some((0xa000_0000 + CALIBRATION_SIZE - 1, R, PAGE_4K)),
            ),
            (CALIBRATION_GPA + CALIBRATION_SIZE, None),
            (0x100_0000_0000, None),
        ]
    }

    #[test]
    fn ept_and_npt_map_every_region_alike() {
        for sandbox in [0, 1] {
            let (ept, npt) = both(sandbox);
            let view = |t: Translation| (t.hpa.as_u64(), t.access, t.page_size);
            for (gpa, want) in expectations(sandbox) {
                let ept_got = ept.translate(g(gpa)).map(view);
                assert_eq!(ept_got, want, "EPT, sandbox {sandbox}, gpa {gpa:#x}");
                let read_back = npt.translate(g(gpa)).map(view);
                assert_eq!(
                    read_back, want,
                    "NPT read back, sandbox {sandbox}, gpa {gpa:#x}"
                );
            }
            let ncr3 = npt.ncr3();
            let mem = npt.into_memory();
            for (gpa, want) in expectations(sandbox) {
                let npt_got = hardware_walk(&mem, ncr3, gpa);
                assert_eq!(npt_got, want, "NPT, sandbox {sandbox}, gpa {gpa:#x}");
            }
        }
    }

    #[test]
    fn leaf_and_pointer_bits_match_the_apm() {
        let mut npt = NptBuilder::new(VecMemory::new(16)).unwrap();
        npt.map_range(g(0), h(0x20_0000), PAGE_2M, RWX, true)
            .unwrap();
        npt.map_range(g(0x40_0000_0000), h(0x7000), PAGE_4K, R, false)
            .unwrap();
        npt.map_range(g(0x40_0000_1000), h(0x8000), PAGE_4K, RW, false)
            .unwrap();
        assert_eq!(npt.ncr3() & 0xfff, 0, "nCR3: PWT = PCD = 0");
        let mem = npt.into_memory();
        // PML4[0] -> PDPT: present, writable, user.
        assert_eq!(mem.tables[0][0], (mem.base + 0x1000) | 7);
        // PD[0]: 2 MiB leaf, P | RW | US | PS, executable.
        assert_eq!(mem.tables[2][0], 0x20_0000 | 7 | NPT_PS | NPT_LEAF);
        // The 4 KiB leaves: read-only and read-write, both no-execute, no PS.
        let pt = mem.tables.last().unwrap();
        assert_eq!(pt[0], 0x7000 | NPT_P | NPT_US | NPT_NX | NPT_LEAF);
        assert_eq!(pt[1], 0x8000 | NPT_P | NPT_RW | NPT_US | NPT_NX | NPT_LEAF);
    }

    #[test]
    fn every_entry_the_ept_builder_writes_survives_the_round_trip() {
        let addrs = [0, 0x1000, 0x20_0000, 0x000F_FFFF_FFFF_F000];
        for addr in addrs {
            assert_eq!(ept_entry(npt_entry(addr | 7).unwrap()), addr | 7, "pointer");
            for access in 1..8u64 {
                for (large, memory_type) in [0, EPT_LARGE]
                    .into_iter()
                    .flat_map(|l| [(l, EPT_WB), (l, EPT_UC)])
                {
                    let e = addr | access | memory_type | large;
                    match npt_entry(e) {
                        Some(n) => assert_eq!(ept_entry(n), e, "{e:#x}"),
                        None => assert_eq!(access & EPT_R, 0, "{e:#x} refused"),
                    }
                }
            }
        }
        assert_eq!((npt_entry(0), ept_entry(0)), (Some(0), 0));
    }

    /// The range tests of `ept.rs`, run on both builders with the same expectations.
    trait Tables {
        fn map(&mut self, gpa: u64, hpa: u64, size: u64, access: u32) -> Result<(), EptError>;
        fn get(&self, gpa: u64) -> Option<(u64, u32, u64)>;
    }

    /// [`Tables`] through the builders' own `map_range` (large pages allowed) and
    /// `translate`, which both have.
    macro_rules! tables {
        ($($builder:ty),*) => {$(
            impl Tables for $builder {
                fn map(&mut self, gpa: u64, hpa: u64, size: u64, access: u32) -> Result<(), EptError> {
                    self.map_range(g(gpa), h(hpa), size, access, true)
                }
                fn get(&self, gpa: u64) -> Option<(u64, u32, u64)> {
                    self.translate(g(gpa))
                        .map(|t| (t.hpa.as_u64(), t.access, t.page_size))
                }
            }
        )*};
    }
    tables!(EptBuilder<VecMemory>, NptBuilder<VecMemory>);

    fn ranges_behave(t: &mut dyn Tables) {
        t.map(0, 0x4000_0000, 2 * PAGE_2M + 3 * PAGE_4K, RWX)
            .unwrap();
        assert_eq!(t.get(0x12_3456), Some((0x4012_3456, RWX, PAGE_2M)));
        assert_eq!(
            t.get(2 * PAGE_2M + 0x2fff),
            Some((0x4040_2fff, RWX, PAGE_4K)),
            "unaligned tail in small pages"
        );
        assert_eq!(t.get(2 * PAGE_2M + 3 * PAGE_4K), None);
        // A host address that is not 2 MiB aligned falls back to small pages.
        t.map(0x100_0000, 0x1000, PAGE_2M, RW).unwrap();
        assert_eq!(t.get(0x100_1234), Some((0x2234, RW, PAGE_4K)));
        assert_eq!(
            t.map(0x1000, 0x1000, PAGE_4K, RW),
            Err(EptError::AlreadyMapped { gpa: g(0x1000) })
        );
        assert_eq!(
            t.map(0x1_0000_0800, 0, PAGE_4K, RW),
            Err(EptError::Unaligned {
                gpa: g(0x1_0000_0800)
            })
        );
        assert_eq!(
            t.map(crate::ept::GPA_LIMIT, 0, PAGE_4K, RW),
            Err(EptError::OutOfRange {
                gpa: g(crate::ept::GPA_LIMIT)
            })
        );
        assert_eq!(
            t.map(0x5000_0000, 0, PAGE_4K, 0),
            Err(EptError::BadAccess(0))
        );
        assert_eq!(
            t.map(0x5000_0000, 0, PAGE_4K, ACCESS_WRITE),
            Err(EptError::BadAccess(ACCESS_WRITE))
        );
    }

    #[test]
    fn ranges_behave_the_same_on_ept_and_npt() {
        ranges_behave(&mut EptBuilder::new(VecMemory::new(16)).unwrap());
        ranges_behave(&mut NptBuilder::new(VecMemory::new(16)).unwrap());
    }

    #[test]
    fn npt_refuses_what_it_cannot_express_and_runs_out_cleanly() {
        let mut npt = NptBuilder::new(VecMemory::new(16)).unwrap();
        // Execute-only is valid EPT but would be readable in NPT.
        assert_eq!(
            npt.map_range(g(0), h(0), PAGE_4K, ACCESS_EXEC, false),
            Err(EptError::BadAccess(ACCESS_EXEC))
        );
        assert!(npt.translate(g(0)).is_none());
        let mut small = NptBuilder::new(VecMemory::new(2)).unwrap();
        assert_eq!(
            small.map_range(g(0), h(0), PAGE_4K, RW, false),
            Err(EptError::OutOfFrames)
        );
        assert!(NptBuilder::new(VecMemory::new(0)).is_err());
    }

    #[test]
    fn a_region_without_read_or_placement_is_an_error() {
        let bytes = sample_table();
        let table = validate(&bytes).unwrap();
        let sandbox_place = placed();
        let place = HostPlacement {
            sandbox: &sandbox_place,
            channel_hpas: &[],
            calibration_hpa: None,
            device_memory: &[],
        };
        assert!(matches!(
            build_sandbox_npt(&table, 0, &place, VecMemory::new(32)),
            Err(SandboxEptError::Region(2))
        ));
        let mut sample = quest_abi::testing::Sample::new();
        sample.regions[2].access = ACCESS_EXEC.into();
        // Validation already refuses a channel area NPT could not express (execute-only);
        // build_sandbox_npt checks again rather than rely on it.
        assert!(validate(&sample.encode()).is_err());
    }
}
