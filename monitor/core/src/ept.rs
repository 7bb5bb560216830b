//! Extended page tables (EPT): the guest-physical -> host-physical map of one sandbox
//! (Intel SDM Vol. 3, 29.3 "The Extended Page Table Mechanism").
//!
//! The builder never touches memory itself: page-table frames come from an injected
//! [`EptMemory`], so the same code runs in the monitor (frames from its own pool) and on
//! the host in tests (a plain buffer), the way uhyve tests its page-table builder.
//!
//! Layout: 4 levels (PML4, PDPT, PD, PT). Leaves are 2 MiB (PD level, bit 7) or 4 KiB
//! (PT level). Every leaf of memory is write-back; a device's registers (a PCI BAR) are
//! uncached ([`EptBuilder::map_range_uncached`]). Permissions are the `ACCESS_*` bits of
//! the partition table, which coincide with EPT bits 0 (read), 1 (write) and 2 (execute).

use quest_abi::{GuestPhysAddr, HostPhysAddr, ACCESS_EXEC, ACCESS_READ, ACCESS_WRITE};

/// Size of a 4 KiB page.
pub const PAGE_4K: u64 = 0x1000;
/// Size of a 2 MiB page.
pub const PAGE_2M: u64 = 0x20_0000;
/// Guest-physical addresses must be below 2^48 (4-level EPT).
pub const GPA_LIMIT: u64 = 1 << 48;
/// EPT entry bits 0-2: read, write, execute.
pub(crate) const RWX: u64 = 7;
/// Memory type write-back (6) in bits 5:3 of a leaf (SDM 29.3.7).
const LEAF_WB: u64 = 6 << 3;
/// Memory type uncached (0) in bits 5:3 with bit 6 "ignore PAT" set, so the guest's PAT
/// cannot make a device's registers cacheable (SDM 29.3.7.2). The set bit 6 is also what
/// tells such a leaf from a pointer to a table, whose bits 6:3 are zero.
pub(crate) const LEAF_UC: u64 = 1 << 6;
/// Bits 6:3 of a leaf: memory type and ignore-PAT.
pub(crate) const LEAF_TYPE: u64 = 0xf << 3;
/// Bit 7 of a PD entry: the entry maps a 2 MiB page.
pub(crate) const LARGE: u64 = 1 << 7;
/// Bits 51:12: the physical address in an entry.
pub(crate) const ADDR_MASK: u64 = 0x000F_FFFF_FFFF_F000;

/// The EPT's accessed and dirty flags (SDM Vol. 3, 29.3.5), which pre-copy migration
/// tracks dirty pages with (`crate::precopy`): with bit 6 of the EPT pointer set the
/// processor sets bit 8 (accessed) of every entry it uses and bit 9 (dirty) of a leaf it
/// writes through; bit 21 of IA32_VMX_EPT_VPID_CAP says the CPU can.
pub const EPTP_ACCESSED_DIRTY: u64 = 1 << 6;
/// Bit 8 of an entry: accessed.
pub const ACCESSED: u64 = 1 << 8;
/// Bit 9 of a leaf: dirty.
pub const DIRTY: u64 = 1 << 9;
/// IA32_VMX_EPT_VPID_CAP bit 21: the flags above are supported.
pub const CAP_ACCESSED_DIRTY: u64 = 1 << 21;

/// Where the builder gets and edits page-table frames.
pub trait EptMemory {
    /// Allocates one zeroed, 4 KiB-aligned frame and returns its host-physical address.
    fn alloc_table(&mut self) -> Option<HostPhysAddr>;
    /// Reads entry `index` (0..512) of the table at host-physical `table`.
    fn read(&self, table: HostPhysAddr, index: usize) -> u64;
    /// Writes entry `index` (0..512) of the table at host-physical `table`.
    fn write(&mut self, table: HostPhysAddr, index: usize, value: u64);
}

/// Why a mapping could not be made.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EptError {
    /// No frame left for a page table.
    OutOfFrames,
    /// An address or size is not aligned to the page size used.
    Unaligned {
        /// The guest-physical address.
        gpa: GuestPhysAddr,
    },
    /// The range goes beyond the 48-bit guest-physical space or wraps.
    OutOfRange {
        /// The guest-physical address.
        gpa: GuestPhysAddr,
    },
    /// The guest-physical page is already mapped.
    AlreadyMapped {
        /// The guest-physical address.
        gpa: GuestPhysAddr,
    },
    /// The permissions are empty or write-without-read (an EPT misconfiguration).
    BadAccess(u32),
}

impl core::fmt::Display for EptError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match *self {
            Self::OutOfFrames => f.write_str("out of frames for EPT tables"),
            Self::Unaligned { gpa } => write!(f, "EPT mapping at {gpa:#x} is not aligned"),
            Self::OutOfRange { gpa } => write!(f, "EPT mapping at {gpa:#x} is out of range"),
            Self::AlreadyMapped { gpa } => write!(f, "guest-physical {gpa:#x} is mapped twice"),
            Self::BadAccess(a) => write!(f, "invalid EPT access bits {a:#x}"),
        }
    }
}

/// A resolved guest-physical address.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Translation {
    /// Host-physical address.
    pub hpa: HostPhysAddr,
    /// `ACCESS_*` bits of the leaf.
    pub access: u32,
    /// Size of the leaf page (4 KiB or 2 MiB).
    pub page_size: u64,
    /// Whether the leaf is uncached (a device's registers), not write-back memory.
    pub uncached: bool,
}

/// Builds (and reads back) one sandbox's EPT.
#[derive(Debug)]
pub struct EptBuilder<M: EptMemory> {
    mem: M,
    root: HostPhysAddr,
}

pub(crate) fn index(gpa: u64, level: u32) -> usize {
    ((gpa >> (12 + 9 * level)) & 0x1ff) as usize
}

fn check_access(access: u32) -> Result<u64, EptError> {
    let valid = access & !(ACCESS_READ | ACCESS_WRITE | ACCESS_EXEC) == 0;
    let write_without_read = access & ACCESS_WRITE != 0 && access & ACCESS_READ == 0;
    if access == 0 || !valid || write_without_read {
        return Err(EptError::BadAccess(access));
    }
    Ok(u64::from(access))
}

impl<M: EptMemory> EptBuilder<M> {
    /// Starts an empty EPT (allocates its PML4).
    pub fn new(mut mem: M) -> Result<Self, EptError> {
        let root = mem.alloc_table().ok_or(EptError::OutOfFrames)?;
        Ok(Self { mem, root })
    }

    /// Host-physical address of the PML4.
    pub fn root(&self) -> HostPhysAddr {
        self.root
    }

    /// The EPT pointer for the VMCS: PML4 | 4-level walk (3 << 3) | write-back (6)
    /// (SDM 25.6.11).
    pub fn eptp(&self) -> u64 {
        self.root.as_u64() | (3 << 3) | 6
    }

    /// Gives the memory back (e.g. to learn how many frames were used).
    pub fn into_memory(self) -> M {
        self.mem
    }

    /// The memory, to read raw entries (e.g. a format's own root below the PML4).
    pub fn memory(&self) -> &M {
        &self.mem
    }

    /// The table referenced by slot `idx` of `table`, created when missing.
    fn next_table(
        &mut self,
        table: HostPhysAddr,
        idx: usize,
        gpa: GuestPhysAddr,
    ) -> Result<HostPhysAddr, EptError> {
        let entry = self.mem.read(table, idx);
        if entry & RWX != 0 {
            if entry & LARGE != 0 {
                return Err(EptError::AlreadyMapped { gpa });
            }
            return Ok(HostPhysAddr::new(entry & ADDR_MASK));
        }
        let next = self.mem.alloc_table().ok_or(EptError::OutOfFrames)?;
        self.mem.write(table, idx, next.as_u64() | RWX);
        Ok(next)
    }

    /// Walks from the PML4 (level 3) down to the table at `level` (1 = PD, 0 = PT) for
    /// `gpa`, creating missing tables.
    fn table_for(&mut self, gpa: GuestPhysAddr, level: u32) -> Result<HostPhysAddr, EptError> {
        let mut table = self.root;
        for l in (level + 1..=3).rev() {
            table = self.next_table(table, index(gpa.as_u64(), l), gpa)?;
        }
        Ok(table)
    }

    /// Maps one page: 2 MiB with `large` (a PD entry with bit 7), else 4 KiB.
    pub fn map_page(
        &mut self,
        gpa: GuestPhysAddr,
        hpa: HostPhysAddr,
        access: u32,
        large: bool,
    ) -> Result<(), EptError> {
        self.map_typed(gpa, hpa, access, large, LEAF_WB)
    }

    /// [`Self::map_page`] with leaf memory type bits `leaf_type` ([`LEAF_WB`] or
    /// [`LEAF_UC`]).
    fn map_typed(
        &mut self,
        gpa: GuestPhysAddr,
        hpa: HostPhysAddr,
        access: u32,
        large: bool,
        leaf_type: u64,
    ) -> Result<(), EptError> {
        let bits = check_access(access)?;
        let size = if large { PAGE_2M } else { PAGE_4K };
        if !gpa.is_aligned(size) || !hpa.is_aligned(size) {
            return Err(EptError::Unaligned { gpa });
        }
        let in_range = gpa
            .checked_add(size)
            .is_some_and(|end| end.as_u64() <= GPA_LIMIT);
        if !in_range || hpa.as_u64() & !ADDR_MASK != 0 {
            return Err(EptError::OutOfRange { gpa });
        }
        let level = u32::from(large);
        let table = self.table_for(gpa, level)?;
        let idx = index(gpa.as_u64(), level);
        if self.mem.read(table, idx) & RWX != 0 {
            return Err(EptError::AlreadyMapped { gpa });
        }
        let large = if large { LARGE } else { 0 };
        self.mem
            .write(table, idx, hpa.as_u64() | bits | leaf_type | large);
        Ok(())
    }

    /// Maps one 4 KiB page (`map_page` without `large`).
    pub fn map_4k(
        &mut self,
        gpa: GuestPhysAddr,
        hpa: HostPhysAddr,
        access: u32,
    ) -> Result<(), EptError> {
        self.map_page(gpa, hpa, access, false)
    }

    /// Maps `[gpa, gpa + size)` to `[hpa, ...)`. With `large`, uses 2 MiB pages wherever
    /// both addresses are 2 MiB aligned and a whole large page remains; 4 KiB otherwise.
    pub fn map_range(
        &mut self,
        gpa: GuestPhysAddr,
        hpa: HostPhysAddr,
        size: u64,
        access: u32,
        large: bool,
    ) -> Result<(), EptError> {
        self.map_range_typed(gpa, hpa, size, access, large, LEAF_WB)
    }

    /// Maps a device's registers `[gpa, gpa + size)` to `[hpa, ...)` uncached, in 2 MiB
    /// pages where both sides allow (as [`Self::map_range`] with `large`).
    pub fn map_range_uncached(
        &mut self,
        gpa: GuestPhysAddr,
        hpa: HostPhysAddr,
        size: u64,
        access: u32,
    ) -> Result<(), EptError> {
        self.map_range_typed(gpa, hpa, size, access, true, LEAF_UC)
    }

    fn map_range_typed(
        &mut self,
        gpa: GuestPhysAddr,
        hpa: HostPhysAddr,
        size: u64,
        access: u32,
        large: bool,
        leaf_type: u64,
    ) -> Result<(), EptError> {
        if !gpa.is_aligned(PAGE_4K) || !hpa.is_aligned(PAGE_4K) || size % PAGE_4K != 0 {
            return Err(EptError::Unaligned { gpa });
        }
        gpa.checked_add(size).ok_or(EptError::OutOfRange { gpa })?;
        hpa.checked_add(size).ok_or(EptError::OutOfRange { gpa })?;
        let mut off = 0;
        while off < size {
            // Both cannot overflow: `off < size` and the ends were checked above.
            let (Some(g), Some(h)) = (gpa.checked_add(off), hpa.checked_add(off)) else {
                return Err(EptError::OutOfRange { gpa });
            };
            let big =
                large && g.is_aligned(PAGE_2M) && h.is_aligned(PAGE_2M) && size - off >= PAGE_2M;
            self.map_typed(g, h, access, big, leaf_type)?;
            off += if big { PAGE_2M } else { PAGE_4K };
        }
        Ok(())
    }

    /// Looks `gpa` up as the processor would.
    pub fn translate(&self, gpa: GuestPhysAddr) -> Option<Translation> {
        let gpa = gpa.as_u64();
        if gpa >= GPA_LIMIT {
            return None;
        }
        let mut table = self.root;
        for level in (0..=3).rev() {
            let entry = self.mem.read(table, index(gpa, level));
            if entry & RWX == 0 {
                return None;
            }
            let leaf = level == 0 || (level == 1 && entry & LARGE != 0);
            if leaf {
                let page_size = if level == 0 { PAGE_4K } else { PAGE_2M };
                let frame = entry & ADDR_MASK & !(page_size - 1);
                return Some(Translation {
                    hpa: HostPhysAddr::new(frame | (gpa & (page_size - 1))),
                    access: (entry & RWX) as u32,
                    page_size,
                    uncached: entry & LEAF_TYPE == LEAF_UC,
                });
            }
            table = HostPhysAddr::new(entry & ADDR_MASK);
        }
        None
    }
}

/// Test and host-side memory: tables in a vector, host-physical addresses from `base`.
#[cfg(test)]
pub(crate) mod test_memory {
    use super::EptMemory;
    use quest_abi::HostPhysAddr;
    use std::vec::Vec;

    pub struct VecMemory {
        pub base: u64,
        pub tables: Vec<[u64; 512]>,
        pub limit: usize,
    }

    impl VecMemory {
        pub fn new(limit: usize) -> Self {
            Self {
                base: 0x10_0000,
                tables: Vec::new(),
                limit,
            }
        }
        fn slot(&self, table: HostPhysAddr) -> usize {
            assert!(table.is_aligned(0x1000), "table address unaligned");
            ((table.as_u64() - self.base) / 0x1000) as usize
        }
    }

    impl EptMemory for VecMemory {
        fn alloc_table(&mut self) -> Option<HostPhysAddr> {
            if self.tables.len() == self.limit {
                return None;
            }
            self.tables.push([0; 512]);
            let offset = (self.tables.len() as u64 - 1) * 0x1000;
            Some(HostPhysAddr::new(self.base + offset))
        }
        fn read(&self, table: HostPhysAddr, index: usize) -> u64 {
            self.tables[self.slot(table)][index]
        }
        fn write(&mut self, table: HostPhysAddr, index: usize, value: u64) {
            let slot = self.slot(table);
            self.tables[slot][index] = value;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::test_memory::VecMemory;
    use super::*;

    const RW: u32 = ACCESS_READ | ACCESS_WRITE;

    fn g(a: u64) -> GuestPhysAddr {
        GuestPhysAddr::new(a)
    }

    fn h(a: u64) -> HostPhysAddr {
        HostPhysAddr::new(a)
    }
    const RWX_ACCESS: u32 = RW | ACCESS_EXEC;

    #[test]
    fn large_pages_for_aligned_ram() {
        let mut ept = EptBuilder::new(VecMemory::new(16)).unwrap();
        ept.map_range(g(0), h(0x4000_0000), 8 * PAGE_2M, RWX_ACCESS, true)
            .unwrap();
        let t = ept.translate(g(0x12_3456)).unwrap();
        assert_eq!(t.hpa, h(0x4000_0000 + 0x12_3456));
        assert_eq!(t.page_size, PAGE_2M);
        assert_eq!(t.access, RWX_ACCESS);
        assert!(
            ept.translate(g(8 * PAGE_2M)).is_none(),
            "nothing past the end"
        );
        // PML4, PDPT, PD: 3 tables for 16 MiB of 2 MiB pages.
        assert_eq!(ept.into_memory().tables.len(), 3);
    }

    #[test]
    fn leaf_and_pointer_bits_match_the_sdm() {
        let mut ept = EptBuilder::new(VecMemory::new(16)).unwrap();
        ept.map_page(g(0), h(0x20_0000), RWX_ACCESS, true).unwrap();
        ept.map_4k(g(0x40_0000_0000), h(0x7000), ACCESS_READ)
            .unwrap();
        assert_eq!(ept.eptp() & 0xfff, 0x1e);
        let mem = ept.into_memory();
        // PML4[0] -> PDPT, non-leaf = address | 7.
        assert_eq!(mem.tables[0][0], (mem.base + 0x1000) | 7);
        // PD[0]: 2 MiB leaf, WB, bit 7.
        assert_eq!(mem.tables[2][0], 0x20_0000 | 7 | (6 << 3) | (1 << 7));
        // The 4 KiB leaf: read-only, WB, no bit 7.
        let pt = mem.tables.last().unwrap();
        assert_eq!(pt[0], 0x7000 | 1 | (6 << 3));
    }

    #[test]
    fn unaligned_tail_uses_small_pages() {
        let mut ept = EptBuilder::new(VecMemory::new(16)).unwrap();
        ept.map_range(g(0), h(0x20_0000), PAGE_2M + 3 * PAGE_4K, RW, true)
            .unwrap();
        assert_eq!(ept.translate(g(0)).unwrap().page_size, PAGE_2M);
        let t = ept.translate(g(PAGE_2M + 0x2fff)).unwrap();
        assert_eq!((t.page_size, t.hpa, t.access), (PAGE_4K, h(0x40_2fff), RW));
        assert!(ept.translate(g(PAGE_2M + 3 * PAGE_4K)).is_none());
    }

    #[test]
    fn misaligned_host_falls_back_to_small_pages() {
        let mut ept = EptBuilder::new(VecMemory::new(16)).unwrap();
        ept.map_range(g(0), h(0x1000), PAGE_2M, RW, true).unwrap();
        assert_eq!(ept.translate(g(0x1234)).unwrap().page_size, PAGE_4K);
        assert_eq!(ept.translate(g(0x1234)).unwrap().hpa, h(0x2234));
    }

    #[test]
    fn refuses_double_mapping_and_bad_input() {
        let mut ept = EptBuilder::new(VecMemory::new(16)).unwrap();
        ept.map_page(g(0), h(0), RW, true).unwrap();
        assert_eq!(
            ept.map_4k(g(0x1000), h(0x1000), RW),
            Err(EptError::AlreadyMapped { gpa: g(0x1000) })
        );
        assert_eq!(
            ept.map_page(g(0), h(0x20_0000), RW, true),
            Err(EptError::AlreadyMapped { gpa: g(0) })
        );
        ept.map_4k(g(PAGE_2M), h(0), RW).unwrap();
        assert_eq!(
            ept.map_page(g(PAGE_2M), h(0), RW, true),
            Err(EptError::AlreadyMapped { gpa: g(PAGE_2M) })
        );
        assert_eq!(
            ept.map_4k(g(0x1_0000_0800), h(0), RW),
            Err(EptError::Unaligned {
                gpa: g(0x1_0000_0800)
            })
        );
        assert_eq!(
            ept.map_4k(g(0x5000), h(0), ACCESS_WRITE),
            Err(EptError::BadAccess(ACCESS_WRITE))
        );
        assert_eq!(ept.map_4k(g(0x5000), h(0), 0), Err(EptError::BadAccess(0)));
        assert_eq!(
            ept.map_4k(g(GPA_LIMIT), h(0), RW),
            Err(EptError::OutOfRange { gpa: g(GPA_LIMIT) })
        );
        assert_eq!(
            ept.map_range(g(!0xfff_u64), h(0), 0x2000, RW, false),
            Err(EptError::OutOfRange { gpa: g(!0xfff_u64) })
        );
    }

    #[test]
    fn device_registers_are_uncached_and_ignore_the_guest_pat() {
        let mut ept = EptBuilder::new(VecMemory::new(16)).unwrap();
        ept.map_range(g(0), h(0x20_0000), PAGE_2M, RW, true)
            .unwrap();
        // A 4 KiB BAR and a 4 MiB one (2 MiB leaves), identity.
        ept.map_range_uncached(g(0xfebf_0000), h(0xfebf_0000), PAGE_4K, RW)
            .unwrap();
        ept.map_range_uncached(g(0x8_0000_0000), h(0x8_0000_0000), 2 * PAGE_2M, RW)
            .unwrap();
        let t = ept.translate(g(0xfebf_0ffc)).unwrap();
        assert_eq!(
            (t.hpa, t.page_size, t.uncached),
            (h(0xfebf_0ffc), PAGE_4K, true)
        );
        let t = ept.translate(g(0x8_0030_0000)).unwrap();
        assert_eq!((t.page_size, t.uncached, t.access), (PAGE_2M, true, RW));
        assert!(!ept.translate(g(0x1000)).unwrap().uncached, "RAM stays WB");
        assert!(ept.translate(g(0xfebf_1000)).is_none());
        assert_eq!(
            ept.map_range_uncached(g(0x1000), h(0x1000), PAGE_4K, RW),
            Err(EptError::AlreadyMapped { gpa: g(0x1000) }),
            "never over RAM"
        );
        let mem = ept.into_memory();
        let pt = mem.tables.iter().find(|t| t[0x1f0] != 0).unwrap();
        assert_eq!(
            pt[0x1f0],
            0xfebf_0000 | 3 | (1 << 6),
            "type 0 (UC), ignore PAT"
        );
    }

    #[test]
    fn runs_out_of_frames_cleanly() {
        let mut ept = EptBuilder::new(VecMemory::new(2)).unwrap();
        assert_eq!(ept.map_4k(g(0), h(0), RW), Err(EptError::OutOfFrames));
        assert!(EptBuilder::new(VecMemory::new(0)).is_err());
    }
}
