//! The monitor's identity map. The 32-bit entry maps the first 4 GiB with 2 MiB pages;
//! [`extend_identity_map`] maps RAM above that (1 GiB pages where the CPU has them, else
//! 2 MiB pages from a static pool), so the monitor can reach every byte it places.

use core::arch::x86_64::__cpuid;
use core::cell::UnsafeCell;
use x86_64::registers::control::Cr3;

/// What the 32-bit entry maps.
pub const BOOT_MAPPED: u64 = 4 << 30;
const GIB: u64 = 1 << 30;
/// One PDPT covers 512 GiB; the monitor maps no more than that.
const PDPT_SPAN: u64 = 512 * GIB;
/// Page directories for 2 MiB mappings above 4 GiB when 1 GiB pages are missing.
const EXTRA_PDS: usize = 28;
const PRESENT_WRITABLE: u64 = 0x3;
const LARGE: u64 = 0x80;

extern "C" {
    static mut boot_pdpt: [u64; 512];
}

#[repr(C, align(4096))]
struct ExtraPds(UnsafeCell<[[u64; 512]; EXTRA_PDS]>);
// SAFETY: only the boot core touches it, once, in `extend_identity_map` before any AP runs.
unsafe impl Sync for ExtraPds {}
static EXTRA: ExtraPds = ExtraPds(UnsafeCell::new([[0; 512]; EXTRA_PDS]));

fn has_1g_pages() -> bool {
    // Extended leaf 0x80000001 exists: the entry code checked it for long mode.
    __cpuid(0x8000_0001).edx & (1 << 26) != 0
}

/// Maps `[4 GiB, end)` and returns the end of the identity map afterwards (never less
/// than [`BOOT_MAPPED`]); memory beyond the returned limit must not be used.
///
/// # Safety
/// Call once on the boot core before any AP starts (they share these tables).
pub unsafe fn extend_identity_map(end: u64) -> u64 {
    let end = end.min(PDPT_SPAN);
    if end <= BOOT_MAPPED {
        return BOOT_MAPPED;
    }
    let gigs = end.div_ceil(GIB) as usize;
    let huge = has_1g_pages();
    // SAFETY: the PDPT is the one the entry code built and CR3 uses; entries 4.. are
    // empty and only this core writes them, before anything else reads them.
    let pdpt = unsafe { &mut *core::ptr::addr_of_mut!(boot_pdpt) };
    // SAFETY: see `ExtraPds`.
    let extra = unsafe { &mut *EXTRA.0.get() };
    let mut limit = BOOT_MAPPED;
    for (gig, pdpt_entry) in pdpt.iter_mut().enumerate().take(gigs).skip(4) {
        let base = gig as u64 * GIB;
        if huge {
            *pdpt_entry = base | PRESENT_WRITABLE | LARGE;
        } else {
            let Some(pd) = extra.get_mut(gig - 4) else {
                break;
            };
            for (i, entry) in pd.iter_mut().enumerate() {
                *entry = (base + ((i as u64) << 21)) | PRESENT_WRITABLE | LARGE;
            }
            *pdpt_entry = pd.as_ptr() as u64 | PRESENT_WRITABLE;
        }
        limit = base + GIB;
    }
    let (frame, flags) = Cr3::read();
    // SAFETY: reloading the same CR3 flushes the TLB; the tables only gained entries.
    unsafe { Cr3::write(frame, flags) };
    limit
}

/// Physical address of the PML4 (the APs load it in the trampoline; < 4 GiB).
pub fn root() -> u64 {
    Cr3::read().0.start_address().as_u64()
}
