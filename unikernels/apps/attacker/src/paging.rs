//! Edits of our own boot page tables, so that an attack reaches the monitor's EPT instead
//! of stopping at a guest page fault. The host builds identity page tables at
//! `PAGE_TABLES_GPA` inside our RAM (mapped writable), so physical = virtual here.

use alloc::boxed::Box;
use quest_rt::quest_abi::layout::PAGE_TABLES_GPA;

const PRESENT: u64 = 1;
const WRITABLE: u64 = 1 << 1;
const LARGE: u64 = 1 << 7;
const ADDRESS: u64 = 0x000f_ffff_ffff_f000;

/// A page-table page taken from the heap.
#[repr(C, align(4096))]
struct TablePage([u64; 512]);

fn index(addr: u64, level: u32) -> usize {
    ((addr >> (12 + 9 * level)) & 511) as usize
}

/// Reads entry `i` of the table at `table`.
///
/// # Safety
/// `table` must be the identity-mapped address of one of our page-table pages.
unsafe fn entry(table: u64, i: usize) -> *mut u64 {
    // SAFETY: a page-table page holds 512 entries and `i < 512` by construction.
    unsafe { (table as *mut u64).add(i & 511) }
}

/// The table entry `i` of `table` points to, allocating an empty one if it is absent.
///
/// # Safety
/// As for [`entry`].
unsafe fn next_table(table: u64, i: usize) -> Result<u64, &'static str> {
    // SAFETY: forwarded from the caller.
    let slot = unsafe { entry(table, i) };
    // SAFETY: `slot` points into one of our page-table pages (mapped, aligned).
    let e = unsafe { slot.read_volatile() };
    if e & PRESENT == 0 {
        let page = Box::leak(Box::new(TablePage([0; 512])));
        let addr = page as *mut TablePage as u64;
        // SAFETY: as above; the new page is ours for good (leaked), so the entry may
        // point to it.
        unsafe { slot.write_volatile(addr | PRESENT | WRITABLE) };
        return Ok(addr);
    }
    if e & LARGE != 0 {
        return Err("address already covered by a large page");
    }
    Ok(e & ADDRESS)
}

/// Flushes the TLB entry of `addr`.
fn invlpg(addr: u64) {
    // SAFETY: INVLPG only drops a cached translation; it cannot break memory safety.
    unsafe { core::arch::asm!("invlpg [{}]", in(reg) addr, options(nostack)) };
}

/// Maps the 2 MiB page at `gpa` (2 MiB aligned) read-write, identity.
pub fn map_large(gpa: u64) -> Result<(), &'static str> {
    if !gpa.is_multiple_of(2 << 20) {
        return Err("address not 2 MiB aligned");
    }
    // SAFETY: PAGE_TABLES_GPA is our PML4, and `next_table` only returns table pages.
    unsafe {
        let pdpt = next_table(PAGE_TABLES_GPA, index(gpa, 3))?;
        let pd = next_table(pdpt, index(gpa, 2))?;
        entry(pd, index(gpa, 1)).write_volatile(gpa | PRESENT | WRITABLE | LARGE);
    }
    invlpg(gpa);
    Ok(())
}

/// Sets the writable bit on every level of the mapping of `addr`.
pub fn make_writable(addr: u64) -> Result<(), &'static str> {
    let mut table = PAGE_TABLES_GPA;
    for level in (0..4).rev() {
        // SAFETY: `table` is our PML4 or a table an entry of ours points to.
        let slot = unsafe { entry(table, index(addr, level)) };
        // SAFETY: `slot` lies in one of our page-table pages.
        let e = unsafe { slot.read_volatile() };
        if e & PRESENT == 0 {
            return Err("address not mapped");
        }
        // SAFETY: as above.
        unsafe { slot.write_volatile(e | WRITABLE) };
        if level == 0 || e & LARGE != 0 {
            invlpg(addr);
            return Ok(());
        }
        table = e & ADDRESS;
    }
    Err("page-table walk did not end")
}
