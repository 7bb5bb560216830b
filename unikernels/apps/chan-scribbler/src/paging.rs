//! Setting the writable bit in our own boot page tables, so that a write reaches the
//! monitor's EPT instead of stopping at a guest page fault. The host builds identity page
//! tables at `PAGE_TABLES_GPA` inside our RAM (mapped writable), so physical = virtual.
//! (The same walk as the `attacker` app's; each app is its own package.)

use quest_rt::quest_abi::layout::PAGE_TABLES_GPA;

const PRESENT: u64 = 1;
const WRITABLE: u64 = 1 << 1;
const LARGE: u64 = 1 << 7;
const ADDRESS: u64 = 0x000f_ffff_ffff_f000;

fn index(addr: u64, level: u32) -> usize {
    ((addr >> (12 + 9 * level)) & 511) as usize
}

/// Sets the writable bit on every level of the mapping of `addr`.
pub fn make_writable(addr: u64) -> Result<(), &'static str> {
    let mut table = PAGE_TABLES_GPA;
    for level in (0..4).rev() {
        // SAFETY: `table` is our PML4 or a table one of its entries points to (all inside
        // our identity-mapped RAM, page aligned), and `index` is below 512.
        let slot = unsafe { (table as *mut u64).add(index(addr, level)) };
        // SAFETY: `slot` lies in one of our page-table pages (mapped, aligned).
        let e = unsafe { slot.read_volatile() };
        if e & PRESENT == 0 {
            return Err("address not mapped");
        }
        // SAFETY: as above; the writable bit changes no translation, only the access.
        unsafe { slot.write_volatile(e | WRITABLE) };
        if level == 0 || e & LARGE != 0 {
            // SAFETY: INVLPG only drops a cached translation.
            unsafe { core::arch::asm!("invlpg [{}]", in(reg) addr, options(nostack)) };
            return Ok(());
        }
        table = e & ADDRESS;
    }
    Err("page-table walk did not end")
}
