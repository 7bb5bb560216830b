//! The initial guest page tables of a bare sandbox: an identity map of its RAM (2 MiB
//! pages) and of its channel window regions (2 MiB pages where a region covers a whole
//! aligned 2 MiB, else 4 KiB), writable only where the plan grants write access.
//!
//! Built on the host into a plain buffer of table pages that the image stage stores as a
//! payload at [`quest_abi::layout::PAGE_TABLES_GPA`]; the guest's CR3 points at page 0.

use quest_abi::GuestPhysAddr;
use x86_64::structures::paging::page_table::PageTableEntry;
use x86_64::structures::paging::{PageTable, PageTableFlags as Flags};
use x86_64::PhysAddr;

const SMALL: u64 = 4096;
const BIG: u64 = 2 << 20;
/// Largest guest-physical address 4-level paging can map (48 bits).
const MAX_ADDRESS: u64 = 1 << 48;

/// Why a mapping cannot be built.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PagingError {
    /// The page-table area is full.
    #[error("the guest page tables need more than the {0} pages reserved for them")]
    Full(usize),
    /// An address or size is not 4 KiB aligned, or beyond 48 bits.
    #[error("cannot map {gpa:#x}+{size:#x}: not 4 KiB aligned or beyond 48 bits")]
    Shape {
        /// Start.
        gpa: GuestPhysAddr,
        /// Size.
        size: u64,
    },
    /// The address is already mapped.
    #[error("guest address {0:#x} is mapped twice")]
    Overlap(GuestPhysAddr),
}

/// Guest page tables under construction: table page `i` lives at `base + i * 4096`.
/// Entries are x86_64's typed [`PageTableEntry`]s (SDM Vol. 3A, 4.5).
#[derive(Clone, Debug)]
pub struct PageTables {
    base: GuestPhysAddr,
    max_pages: usize,
    pages: Vec<PageTable>,
}

impl PageTables {
    /// An empty PML4 at `base`, with room for `max_pages` table pages in all.
    pub fn new(base: GuestPhysAddr, max_pages: usize) -> Self {
        Self {
            base,
            max_pages: max_pages.max(1),
            pages: vec![PageTable::new()],
        }
    }

    /// Identity-maps `[gpa, gpa + size)`, writable if `writable`.
    pub fn map(
        &mut self,
        gpa: GuestPhysAddr,
        size: u64,
        writable: bool,
    ) -> Result<(), PagingError> {
        let shape = PagingError::Shape { gpa, size };
        let end = gpa.checked_add(size).ok_or(shape)?.as_u64();
        if !gpa.is_aligned(SMALL) || size % SMALL != 0 || end > MAX_ADDRESS {
            return Err(shape);
        }
        let mut flags = Flags::PRESENT;
        flags.set(Flags::WRITABLE, writable);
        let mut at = gpa.as_u64();
        while at < end {
            if at % BIG == 0 && end - at >= BIG {
                self.set(at, 1, flags | Flags::HUGE_PAGE)?;
                at += BIG;
            } else {
                self.set(at, 0, flags)?;
                at += SMALL;
            }
        }
        Ok(())
    }

    /// Points PML4 entry `slot` back at the PML4 itself (a recursive mapping), writable.
    pub fn map_recursive(&mut self, slot: usize) {
        self.pages[0][slot].set_addr(
            PhysAddr::new(self.base.as_u64()),
            Flags::PRESENT | Flags::WRITABLE,
        );
    }

    /// The table pages, page 0 (the PML4) first.
    pub fn to_bytes(&self) -> Vec<u8> {
        self.pages
            .iter()
            .flat_map(|p| p.iter().flat_map(|e| raw(e).to_le_bytes()))
            .collect()
    }

    /// Number of table pages used.
    pub fn pages(&self) -> usize {
        self.pages.len()
    }

    /// Translates `addr` as the CPU would: `(physical address, writable)`, or `None`
    /// if it is not mapped.
    pub fn lookup(&self, addr: u64) -> Option<(u64, bool)> {
        let mut page = 0usize;
        let mut writable = true;
        for level in (0..4).rev() {
            let e = &self.pages.get(page)?[index(addr, level)];
            let flags = e.flags();
            if !flags.contains(Flags::PRESENT) {
                return None;
            }
            writable &= flags.contains(Flags::WRITABLE);
            let target = e.addr().as_u64();
            if level == 0 || (level == 1 && flags.contains(Flags::HUGE_PAGE)) {
                let size = if level == 0 { SMALL } else { BIG };
                return Some(((target & !(size - 1)) | (addr % size), writable));
            }
            page = (target.checked_sub(self.base.as_u64())? / SMALL) as usize;
        }
        None
    }

    /// Writes the leaf entry identity-mapping `addr` with `flags` at `level` (0: 4 KiB
    /// page table, 1: page directory).
    fn set(&mut self, addr: u64, level: u32, flags: Flags) -> Result<(), PagingError> {
        let mut page = 0usize;
        for l in (level + 1..4).rev() {
            page = self.next(page, index(addr, l), addr)?;
        }
        let slot = &mut self.pages[page][index(addr, level)];
        if slot.flags().contains(Flags::PRESENT) {
            return Err(PagingError::Overlap(GuestPhysAddr::new(addr)));
        }
        slot.set_addr(PhysAddr::new(addr), flags);
        Ok(())
    }

    /// The table that entry `i` of table page `page` points to, created if absent.
    fn next(&mut self, page: usize, i: usize, addr: u64) -> Result<usize, PagingError> {
        let e = &self.pages[page][i];
        if e.flags().contains(Flags::PRESENT) {
            if e.flags().contains(Flags::HUGE_PAGE) {
                return Err(PagingError::Overlap(GuestPhysAddr::new(addr)));
            }
            return Ok((e.addr().as_u64() - self.base.as_u64()) as usize / SMALL as usize);
        }
        if self.pages.len() >= self.max_pages {
            return Err(PagingError::Full(self.max_pages));
        }
        let new = self.pages.len();
        self.pages.push(PageTable::new());
        // Non-leaf entries allow everything; the leaf decides.
        self.pages[page][i].set_addr(
            PhysAddr::new(self.base.as_u64() + new as u64 * SMALL),
            Flags::PRESENT | Flags::WRITABLE,
        );
        Ok(new)
    }
}

/// The entry as the CPU reads it: its address and its flags.
pub fn raw(e: &PageTableEntry) -> u64 {
    e.addr().as_u64() | e.flags().bits()
}

/// Index of `addr` in a table of `level` (0 = page table ... 3 = PML4).
fn index(addr: u64, level: u32) -> usize {
    ((addr >> (12 + 9 * level)) & 511) as usize
}

#[cfg(test)]
mod tests {
    use super::*;

    fn g(a: u64) -> GuestPhysAddr {
        GuestPhysAddr::new(a)
    }

    fn walk(t: &PageTables, addr: u64) -> Option<(u64, bool)> {
        t.lookup(addr)
    }

    #[test]
    fn ram_is_identity_mapped_with_large_pages() {
        let mut t = PageTables::new(g(0x10000), 40);
        t.map(g(0), 64 << 20, true).unwrap();
        assert_eq!(t.pages(), 3, "PML4, PDPT, one page directory");
        for addr in [0, 0x1234, (2 << 20) + 8, (64 << 20) - 1] {
            assert_eq!(walk(&t, addr), Some((addr, true)));
        }
        assert_eq!(walk(&t, 64 << 20), None, "nothing past RAM");
    }

    #[test]
    fn small_regions_get_small_pages_and_keep_read_only() {
        let mut t = PageTables::new(g(0x10000), 40);
        let window = 0x40_0000_0000;
        t.map(g(window), 0x1000, false).unwrap();
        t.map(g(window + 0x2000), 0x10000, true).unwrap();
        assert_eq!(walk(&t, window + 8), Some((window + 8, false)));
        assert_eq!(walk(&t, window + 0x1000), None, "guard page stays unmapped");
        assert_eq!(walk(&t, window + 0x2000), Some((window + 0x2000, true)));
        assert_eq!(walk(&t, window + 0x12000), None);
    }

    #[test]
    fn aligned_parts_of_large_regions_use_large_pages() {
        let mut t = PageTables::new(g(0x10000), 40);
        let start = 0x40_0000_0000 + BIG - 0x1000;
        t.map(g(start), BIG + 0x1000, true).unwrap();
        // One PDPT, one PD, one PT for the first 4 KiB page; the 2 MiB page needs none.
        assert_eq!(t.pages(), 4);
        assert_eq!(walk(&t, start + BIG - 1), Some((start + BIG - 1, true)));
    }

    #[test]
    fn overlaps_overflows_and_a_full_area_are_errors() {
        let mut t = PageTables::new(g(0x10000), 3);
        t.map(g(0), BIG, true).unwrap();
        assert_eq!(
            t.map(g(0x1000), 0x1000, true),
            Err(PagingError::Overlap(g(0x1000)))
        );
        assert_eq!(
            t.map(g(0x40_0000_0000), 0x1000, true),
            Err(PagingError::Full(3))
        );
        assert!(matches!(
            t.map(g(0x123), 0x1000, true),
            Err(PagingError::Shape { .. })
        ));
        assert!(matches!(
            t.map(g(u64::MAX - 0xfff), 0x2000, true),
            Err(PagingError::Shape { .. })
        ));
    }

    #[test]
    fn bytes_are_the_pages_in_order() {
        let mut t = PageTables::new(g(0x10000), 40);
        t.map(g(0), BIG, true).unwrap();
        let bytes = t.to_bytes();
        assert_eq!(bytes.len(), 3 * 4096);
        // PML4[0] -> PDPT at base + 4 KiB.
        assert_eq!(
            &bytes[..8],
            &(0x11000u64 | (Flags::PRESENT | Flags::WRITABLE).bits()).to_le_bytes()
        );
    }
}
