//! Edits of the sandbox's own boot page tables.
//!
//! The host builds a bare sandbox's page tables at
//! [`PAGE_TABLES_GPA`](quest_abi::layout::PAGE_TABLES_GPA), inside its RAM, as an identity
//! map, so a table's physical address is also its virtual address here. An application
//! that wants an access to reach the monitor's EPT (rather than stop at a guest page
//! fault), for example to show that the monitor contains it, maps or unlocks the page
//! first with these functions. Entries are x86_64's typed [`PageTable`] entries.

use alloc::boxed::Box;
use quest_abi::layout::PAGE_TABLES_GPA;
use x86_64::structures::paging::{PageTable, PageTableFlags as Flags};
use x86_64::{PhysAddr, VirtAddr};

/// Why a page-table edit was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PagingError {
    /// The address is not 2 MiB aligned (for [`map_large`]).
    Unaligned,
    /// A 2 MiB or 1 GiB page already covers the address (for [`map_large`]).
    CoveredByLargePage,
    /// No mapping exists for the address (for [`make_writable`]).
    NotMapped,
    /// The 2 MiB page is mapped already (for [`map_device`]: by an earlier call).
    AlreadyMapped,
}

impl PagingError {
    /// What went wrong, in a few words.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Unaligned => "address not 2 MiB aligned",
            Self::CoveredByLargePage => "address already covered by a large page",
            Self::NotMapped => "address not mapped",
            Self::AlreadyMapped => "address already mapped",
        }
    }
}

impl From<PagingError> for &'static str {
    fn from(e: PagingError) -> Self {
        e.as_str()
    }
}

impl core::fmt::Display for PagingError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The index of `addr` in the table of `level` (3 = PML4 ... 0 = page table).
fn index(addr: u64, level: u32) -> usize {
    ((addr >> (12 + 9 * level)) & 511) as usize
}

/// The page-table page at the identity-mapped address `table`.
///
/// # Safety
/// `table` is this sandbox's PML4 or a page-table page one of its entries points to, and
/// no other reference to that page is live.
unsafe fn table_at(table: u64) -> &'static mut PageTable {
    // SAFETY: by the caller's contract it is a 4 KiB aligned, mapped page-table page,
    // which has exactly PageTable's layout (512 entries).
    unsafe { &mut *(table as *mut PageTable) }
}

/// The table entry `i` of `table` points to, with a fresh empty table from the heap if
/// the entry is absent.
///
/// # Safety
/// As for [`table_at`].
unsafe fn next_table(table: u64, i: usize) -> Result<u64, PagingError> {
    // SAFETY: forwarded from the caller.
    let entry = &mut unsafe { table_at(table) }[i];
    if entry.is_unused() {
        let page: &'static mut PageTable = Box::leak(Box::new(PageTable::new()));
        let addr = page as *mut PageTable as u64;
        entry.set_addr(PhysAddr::new(addr), Flags::PRESENT | Flags::WRITABLE);
        return Ok(addr);
    }
    if entry.flags().contains(Flags::HUGE_PAGE) {
        return Err(PagingError::CoveredByLargePage);
    }
    Ok(entry.addr().as_u64())
}

/// Maps the 2 MiB page at `gpa` (2 MiB aligned) read-write, identity.
pub fn map_large(gpa: u64) -> Result<(), PagingError> {
    map_large_with(gpa, Flags::empty())
}

/// Maps the 2 MiB page around device registers at `addr` (a PCI BAR, which the monitor
/// maps guest-physical == host-physical) read-write, identity, uncached (PCD and PWT,
/// as the monitor's EPT/NPT entry is). Returns `addr` as a pointer.
pub fn map_device(addr: u64) -> Result<*mut u32, PagingError> {
    let page = addr & !((2 << 20) - 1);
    match map_large_with(page, Flags::NO_CACHE | Flags::WRITE_THROUGH) {
        Ok(()) | Err(PagingError::AlreadyMapped) => Ok(addr as *mut u32),
        Err(e) => Err(e),
    }
}

fn map_large_with(gpa: u64, extra: Flags) -> Result<(), PagingError> {
    if gpa % (2 << 20) != 0 {
        return Err(PagingError::Unaligned);
    }
    // SAFETY: PAGE_TABLES_GPA is our PML4 and `next_table` only returns table pages; the
    // references do not outlive each step.
    unsafe {
        let pdpt = next_table(PAGE_TABLES_GPA, index(gpa, 3))?;
        let pd = next_table(pdpt, index(gpa, 2))?;
        let entry = &mut table_at(pd)[index(gpa, 1)];
        if !extra.is_empty() && !entry.is_unused() {
            return Err(PagingError::AlreadyMapped);
        }
        entry.set_addr(
            PhysAddr::new(gpa),
            Flags::PRESENT | Flags::WRITABLE | Flags::HUGE_PAGE | extra,
        );
    }
    x86_64::instructions::tlb::flush(VirtAddr::new(gpa));
    Ok(())
}

/// Sets the writable bit on every level of the mapping of `addr`.
pub fn make_writable(addr: u64) -> Result<(), PagingError> {
    let mut table = PAGE_TABLES_GPA;
    for level in (0..4).rev() {
        // SAFETY: `table` is our PML4 or a table an entry of ours points to.
        let entry = &mut unsafe { table_at(table) }[index(addr, level)];
        let flags = entry.flags();
        if !flags.contains(Flags::PRESENT) {
            return Err(PagingError::NotMapped);
        }
        entry.set_flags(flags | Flags::WRITABLE);
        if level == 0 || flags.contains(Flags::HUGE_PAGE) {
            x86_64::instructions::tlb::flush(VirtAddr::new(addr));
            return Ok(());
        }
        table = entry.addr().as_u64();
    }
    Err(PagingError::NotMapped)
}
