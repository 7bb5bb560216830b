//! Checking guest-supplied addresses against a sandbox's RAM, and walking the guest's own
//! page tables (for hypercalls that pass guest-virtual buffers, like uhyve's FileWrite).
//!
//! Every guest value is untrusted: all arithmetic is checked and every page-table entry
//! read comes from sandbox RAM through the same check.

use core::ops::Range;
use x86_64::structures::paging::PageTableFlags as Flags;
use x86_64::VirtAddr;

/// The byte range `[gpa, gpa + len)` if it lies entirely inside RAM `[0, ram_size)`.
pub fn ram_range(gpa: u64, len: u64, ram_size: u64) -> Option<Range<u64>> {
    let end = gpa.checked_add(len)?;
    (end <= ram_size).then_some(gpa..end)
}

/// Read access to a sandbox's RAM by guest-physical address.
pub trait GuestRam {
    /// RAM size in bytes.
    fn ram_size(&self) -> u64;
    /// Reads the little-endian u64 at `gpa` (8-byte aligned and inside RAM; the walker
    /// checks both before calling).
    fn read_u64(&self, gpa: u64) -> u64;
}

/// Why a guest-virtual address could not be translated.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WalkError {
    /// A paging-structure entry is not present.
    NotPresent {
        /// The linear address.
        linear: u64,
    },
    /// A paging structure or the final address lies outside the sandbox's RAM.
    OutsideRam {
        /// The offending guest-physical address.
        gpa: u64,
    },
    /// The linear address is not canonical.
    NonCanonical(u64),
}

impl core::fmt::Display for WalkError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match *self {
            Self::NotPresent { linear } => write!(f, "guest address {linear:#x} is not mapped"),
            Self::OutsideRam { gpa } => write!(f, "guest-physical {gpa:#x} is outside RAM"),
            Self::NonCanonical(l) => write!(f, "guest address {l:#x} is not canonical"),
        }
    }
}

/// The address field of a paging-structure entry (and of CR3): every bit that is not a
/// flag, bits 12..=51.
const ADDR: u64 = !Flags::all().bits();

/// Translates `linear` with 4-level paging rooted at `cr3` (4 KiB, 2 MiB and 1 GiB
/// pages; SDM Vol. 3, 4.5). Returns the guest-physical address and how many bytes remain
/// in its page.
pub fn translate(ram: &impl GuestRam, cr3: u64, linear: u64) -> Result<(u64, u64), WalkError> {
    if VirtAddr::try_new(linear).is_err() {
        return Err(WalkError::NonCanonical(linear));
    }
    let mut table = cr3 & ADDR;
    for level in (0..4u32).rev() {
        let shift = 12 + 9 * level;
        let slot = table + ((linear >> shift) & 0x1ff) * 8;
        if ram_range(slot, 8, ram.ram_size()).is_none() {
            return Err(WalkError::OutsideRam { gpa: slot });
        }
        let entry = ram.read_u64(slot);
        let flags = Flags::from_bits_retain(entry);
        if !flags.contains(Flags::PRESENT) {
            return Err(WalkError::NotPresent { linear });
        }
        let leaf = level == 0 || ((level == 1 || level == 2) && flags.contains(Flags::HUGE_PAGE));
        if leaf {
            let page = 1u64 << shift;
            let gpa = (entry & ADDR & !(page - 1)) | (linear & (page - 1));
            if gpa >= ram.ram_size() {
                return Err(WalkError::OutsideRam { gpa });
            }
            return Ok((gpa, page - (linear & (page - 1))));
        }
        table = entry & ADDR;
    }
    Err(WalkError::NotPresent { linear })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::vec;
    use std::vec::Vec;

    struct Ram(Vec<u8>);
    impl GuestRam for Ram {
        fn ram_size(&self) -> u64 {
            self.0.len() as u64
        }
        fn read_u64(&self, gpa: u64) -> u64 {
            let g = gpa as usize;
            u64::from_le_bytes(self.0[g..g + 8].try_into().unwrap())
        }
    }
    impl Ram {
        fn set(&mut self, gpa: u64, v: u64) {
            let g = gpa as usize;
            self.0[g..g + 8].copy_from_slice(&v.to_le_bytes());
        }
    }

    #[test]
    fn the_address_field_is_bits_12_to_51() {
        assert_eq!(ADDR, 0x000f_ffff_ffff_f000);
    }

    #[test]
    fn ranges_are_checked() {
        assert_eq!(ram_range(0x1000, 0x10, 0x2000), Some(0x1000..0x1010));
        assert_eq!(ram_range(0x1ff0, 0x10, 0x2000), Some(0x1ff0..0x2000));
        assert_eq!(ram_range(0x1ff0, 0x11, 0x2000), None);
        assert_eq!(ram_range(u64::MAX, 2, u64::MAX), None);
    }

    /// PML4 at 0x1000 -> PDPT 0x2000 -> PD 0x3000: PD[0] = 2 MiB page at 0,
    /// PD[1] -> PT 0x4000 whose entry 3 maps 0x5000.
    fn tables() -> Ram {
        let mut ram = Ram(vec![0; 4 << 20]);
        ram.set(0x1000, 0x2003);
        ram.set(0x2000, 0x3003);
        ram.set(0x3000, 0x83);
        ram.set(0x3008, 0x4003);
        ram.set(0x4000 + 3 * 8, 0x5003);
        ram
    }

    #[test]
    fn walks_large_and_small_pages() {
        let ram = tables();
        assert_eq!(
            translate(&ram, 0x1000, 0x1234),
            Ok((0x1234, 0x20_0000 - 0x1234))
        );
        assert_eq!(translate(&ram, 0x1000, 0x20_3010), Ok((0x5010, 0xff0)));
        assert_eq!(
            translate(&ram, 0x1000, 0x20_4000),
            Err(WalkError::NotPresent { linear: 0x20_4000 })
        );
    }

    #[test]
    fn hostile_tables_stay_inside_ram() {
        let mut ram = tables();
        ram.set(0x4000 + 3 * 8, 0x10_0000_0003);
        assert_eq!(
            translate(&ram, 0x1000, 0x20_3000),
            Err(WalkError::OutsideRam {
                gpa: 0x10_0000_0000
            })
        );
        ram.set(0x2000, 0xff_f000_0003);
        assert!(matches!(
            translate(&ram, 0x1000, 0x1000),
            Err(WalkError::OutsideRam { .. })
        ));
        assert!(matches!(
            translate(&ram, 0xffff_f000, 0),
            Err(WalkError::OutsideRam { .. })
        ));
        assert_eq!(
            translate(&ram, 0x1000, 0x8000_0000_0000),
            Err(WalkError::NonCanonical(0x8000_0000_0000))
        );
    }
}
