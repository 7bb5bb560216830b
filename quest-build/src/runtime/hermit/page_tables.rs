//! The initial page tables of a Hermit sandbox, as uhyve builds them: RAM identity-mapped
//! with 2 MiB pages, and PML4 entry 511 pointing back at the PML4 (recursive mapping).
//! A sandbox with channels also gets its channel window identity-mapped (directory
//! read-only, each data/ack area writable only where the plan grants it, 4 KiB pages where
//! a region does not cover whole 2 MiB pages), so that `quest-channel` reaches it at its
//! guest-physical address, as in a bare sandbox.
//!
//! Hermit keeps editing these tables through its identity view of physical memory and
//! later identity-maps all of RAM again with 2 MiB pages, expecting to find exactly the
//! same mappings; 1 GiB pages would make that fail.
//!
//! Hermit never reuses the window's virtual range. In hermit-kernel 0.11.0 every virtual
//! address it picks comes from one free list (`arch/x86_64/mm/virtualmem.rs`), seeded with
//! `[kernel_heap_end() / 2, kernel_heap_end()]` = `[0x4000_0000_0000, 0x7fff_ffff_ffff]`
//! (PML4 slots 128..=255): the heap (`mm::init` allocates it there and maps it with fresh
//! frames), thread stacks, TLS and `mmap`. Everything else is an identity mapping of RAM
//! (`physicalmem::init_frame_range`, below [`quest_abi::layout::MAX_RAM`]). The channel
//! window, `[0x40_0000_0000, +1 GiB)`, lies in PML4 slot 0, far below that range and above
//! RAM, so nothing Hermit allocates can land on it; [`hermit_page_tables`] refuses extra
//! mappings that reach [`HERMIT_VIRTUAL_START`].
//!
//! Table pages are laid out from `base`: the PML4, one PDPT, then one page directory per
//! GiB of RAM, then the tables of the channel window.

use crate::runtime::paging::{PageTables, PagingError};
use quest_abi::{GuestPhysAddr, LARGE_PAGE_SIZE};

const PAGE: u64 = 4096;
const ENTRIES: u64 = 512;
/// RAM one page directory maps (512 x 2 MiB).
const PD_SPAN: u64 = ENTRIES * LARGE_PAGE_SIZE;
/// PML4 slot of the recursive entry.
const RECURSIVE_SLOT: usize = 511;

// The whole channel window lies above any RAM and below Hermit's virtual range.
const _: () = {
    use quest_abi::layout::{CHANNEL_WINDOW_GPA, CHANNEL_WINDOW_SIZE, MAX_RAM};
    assert!(MAX_RAM <= CHANNEL_WINDOW_GPA);
    assert!(CHANNEL_WINDOW_GPA + CHANNEL_WINDOW_SIZE <= HERMIT_VIRTUAL_START);
};

/// Start of the virtual range hermit-kernel 0.11.0 allocates from (heap, stacks, TLS,
/// mmap): `kernel_heap_end().div_ceil(2)` in its `virtualmem::init`. Extra identity
/// mappings must end below it.
pub const HERMIT_VIRTUAL_START: u64 = 0x4000_0000_0000;

/// One region identity-mapped beyond RAM (a channel window region).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WindowMapping {
    /// Guest-physical (and virtual) start, 4 KiB aligned.
    pub gpa: GuestPhysAddr,
    /// Size, a multiple of 4 KiB.
    pub size: u64,
    /// Whether the guest may write it.
    pub writable: bool,
}

/// Why the page tables cannot be built.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PageTableError {
    /// RAM is empty or not a multiple of 2 MiB.
    #[error("sandbox RAM ({0:#x} bytes) must be a non-zero multiple of 2 MiB")]
    Shape(u64),
    /// More page directories are needed than fit in the page-table area.
    #[error("mapping {ram:#x} bytes of RAM needs {needed} page-table pages, but only {room} fit")]
    TooBig {
        /// RAM size.
        ram: u64,
        /// Pages needed.
        needed: u64,
        /// Pages available.
        room: u64,
    },
    /// A window region reaches the virtual range Hermit allocates from.
    #[error(
        "the region at {0:#x} reaches Hermit's own virtual address range (from {HERMIT_VIRTUAL_START:#x})"
    )]
    HermitRange(GuestPhysAddr),
    /// A window region cannot be mapped (misaligned, overlapping, no room for tables).
    #[error("channel window: {0}")]
    Window(#[from] PagingError),
}

/// The tables for `ram_size` bytes of RAM, as bytes to place at guest-physical `base`;
/// at most `area_size` bytes. CR3 = `base`.
pub fn identity_page_tables(
    base: GuestPhysAddr,
    area_size: u64,
    ram_size: u64,
) -> Result<Vec<u8>, PageTableError> {
    hermit_page_tables(base, area_size, ram_size, &[])
}

/// [`identity_page_tables`] plus identity mappings of `window` (each region with its own
/// write permission; never executable code, but NX is left to Hermit's EFER setting).
pub fn hermit_page_tables(
    base: GuestPhysAddr,
    area_size: u64,
    ram_size: u64,
    window: &[WindowMapping],
) -> Result<Vec<u8>, PageTableError> {
    if ram_size == 0 || ram_size % LARGE_PAGE_SIZE != 0 {
        return Err(PageTableError::Shape(ram_size));
    }
    let directories = ram_size.div_ceil(PD_SPAN);
    // One PDPT maps 512 GiB, more than any sandbox RAM (quest_abi::layout::MAX_RAM).
    let needed = 2 + directories;
    let room = area_size / PAGE;
    if directories > ENTRIES || needed > room {
        return Err(PageTableError::TooBig {
            ram: ram_size,
            needed,
            room,
        });
    }
    let mut tables = PageTables::new(base, room as usize);
    // RAM first: PML4, PDPT, then the directories in address order, as uhyve lays them.
    tables.map(GuestPhysAddr::ZERO, ram_size, true)?;
    for w in window {
        if w.gpa.as_u64().saturating_add(w.size) > HERMIT_VIRTUAL_START {
            return Err(PageTableError::HermitRange(w.gpa));
        }
        tables.map(w.gpa, w.size, w.writable)?;
    }
    tables.map_recursive(RECURSIVE_SLOT);
    Ok(tables.to_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;
    use quest_abi::layout::{PAGE_TABLES_END, PAGE_TABLES_GPA};
    use x86_64::structures::paging::PageTableFlags as Flags;

    const AREA: u64 = PAGE_TABLES_END - PAGE_TABLES_GPA;
    const BASE: GuestPhysAddr = GuestPhysAddr::new(PAGE_TABLES_GPA);

    /// A guest memory holding just the tables, and a 4-level walk over it.
    struct Walker {
        base: u64,
        bytes: Vec<u8>,
    }

    impl Walker {
        fn entry(&self, table: u64, index: u64) -> u64 {
            let off = (table - self.base + index * 8) as usize;
            u64::from_le_bytes(self.bytes[off..off + 8].try_into().unwrap())
        }

        /// Physical address `va` maps to (and whether the leaf is a 2 MiB page), or None.
        fn translate(&self, va: u64) -> Option<(u64, bool)> {
            self.translate_rw(va).map(|(pa, huge, _)| (pa, huge))
        }

        /// [`Self::translate`] plus whether every level allows writing.
        fn translate_rw(&self, va: u64) -> Option<(u64, bool, bool)> {
            let mut table = self.base;
            let mut writable = true;
            for level in (1..=4).rev() {
                let index = (va >> (12 + 9 * (level - 1))) & 0x1ff;
                let e = self.entry(table, index);
                let flags = Flags::from_bits_retain(e);
                if !flags.contains(Flags::PRESENT) {
                    return None;
                }
                writable &= flags.contains(Flags::WRITABLE);
                let addr = e & !Flags::all().bits();
                if level == 2 && flags.contains(Flags::HUGE_PAGE) {
                    return Some((addr + (va & (LARGE_PAGE_SIZE - 1)), true, writable));
                }
                if level == 1 {
                    return Some((addr + (va & 0xfff), false, writable));
                }
                // A table outside the buffer would be a bug: the walk must stay inside.
                assert!(addr >= self.base && addr < self.base + self.bytes.len() as u64);
                table = addr;
            }
            None
        }
    }

    fn walker(ram: u64) -> Walker {
        let bytes = identity_page_tables(BASE, AREA, ram).unwrap();
        assert!(bytes.len() as u64 <= AREA);
        Walker {
            base: PAGE_TABLES_GPA,
            bytes,
        }
    }

    #[test]
    fn all_ram_is_identity_mapped_with_2mib_pages_and_nothing_more() {
        let ram = 64 << 20;
        let w = walker(ram);
        for va in [0, 0x1000, 0x9000, 0x4_0000, 0x1f_ffff, 0x20_0000, ram - 1] {
            assert_eq!(w.translate(va), Some((va, true)), "va {va:#x}");
        }
        assert_eq!(w.translate(ram), None);
        assert_eq!(w.translate(1 << 30), None);
    }

    #[test]
    fn more_than_a_gib_uses_several_directories() {
        let ram = (3 << 30) + (4 << 20);
        let w = walker(ram);
        assert_eq!(w.bytes.len() as u64, (2 + 4) * PAGE);
        for va in [(1 << 30) - 1, 1 << 30, (3 << 30) + 0x12345, ram - 1] {
            assert_eq!(w.translate(va), Some((va, true)), "va {va:#x}");
        }
        assert_eq!(w.translate(ram), None);
    }

    #[test]
    fn pml4_slot_511_maps_the_pml4_itself() {
        let w = walker(4 << 20);
        let e = w.entry(PAGE_TABLES_GPA, 511);
        assert_eq!(e & !0xfff, PAGE_TABLES_GPA);
        assert!(Flags::from_bits_retain(e).contains(Flags::PRESENT | Flags::WRITABLE));
        // The recursive address of the PML4 (slot 511 four times) reads the PML4 page:
        // walking it ends at the PML4's own frame.
        let recursive_pml4: u64 = 0xffff_ffff_ffff_f000;
        let mut table = PAGE_TABLES_GPA;
        for level in (1..=4).rev() {
            let index = (recursive_pml4 >> (12 + 9 * (level - 1))) & 0x1ff;
            table = w.entry(table, index) & !0xfff;
        }
        assert_eq!(table, PAGE_TABLES_GPA);
    }

    #[test]
    fn bad_sizes_are_refused() {
        let err = identity_page_tables(BASE, AREA, 3 << 20).unwrap_err();
        assert_eq!(err, PageTableError::Shape(3 << 20));
        assert!(identity_page_tables(BASE, AREA, 0).is_err());
        // 40 pages of room: 38 directories at most.
        assert!(identity_page_tables(BASE, AREA, 38 << 30).is_ok());
        let err = identity_page_tables(BASE, AREA, 39 << 30).unwrap_err();
        assert!(matches!(
            err,
            PageTableError::TooBig {
                needed: 41,
                room: 40,
                ..
            }
        ));
        assert!(err.to_string().contains("41 page-table pages"));
    }

    /// A window like the planner lays out for one outgoing and one incoming 64 KiB
    /// channel: directory, guard, data, ack, guard, data, ack.
    fn window() -> Vec<WindowMapping> {
        use quest_abi::layout::{CHANNEL_WINDOW_GPA, DIRECTORY_GPA};
        let w = |gpa: u64, size: u64, writable: bool| WindowMapping {
            gpa: GuestPhysAddr::new(gpa),
            size,
            writable,
        };
        assert_eq!(DIRECTORY_GPA, CHANNEL_WINDOW_GPA);
        vec![
            w(DIRECTORY_GPA, 0x1000, false),
            w(CHANNEL_WINDOW_GPA + 0x2000, 0x10000, true),
            w(CHANNEL_WINDOW_GPA + 0x12000, 0x1000, false),
            w(CHANNEL_WINDOW_GPA + 0x14000, 0x10000, false),
            w(CHANNEL_WINDOW_GPA + 0x24000, 0x1000, true),
        ]
    }

    #[test]
    fn the_channel_window_is_identity_mapped_with_planned_access() {
        let ram = 64 << 20;
        let bytes = hermit_page_tables(BASE, AREA, ram, &window()).unwrap();
        // PML4, PDPT, one RAM directory, the window's directory and one 4 KiB table.
        assert_eq!(bytes.len() as u64, 5 * PAGE);
        let w = Walker {
            base: PAGE_TABLES_GPA,
            bytes,
        };
        for region in window() {
            let gpa = region.gpa.as_u64();
            for va in [gpa, gpa + 8, gpa + region.size - 1] {
                assert_eq!(
                    w.translate_rw(va),
                    Some((va, false, region.writable)),
                    "va {va:#x}"
                );
            }
        }
        let base = quest_abi::layout::CHANNEL_WINDOW_GPA;
        // Guard pages and everything after the last region stay unmapped.
        for va in [
            base + 0x1000,
            base + 0x13000,
            base + 0x25000,
            base + (2 << 20),
        ] {
            assert_eq!(w.translate(va), None, "va {va:#x}");
        }
        // RAM is unchanged: 2 MiB pages, writable; the recursive slot is still there.
        assert_eq!(w.translate_rw(ram - 1), Some((ram - 1, true, true)));
        assert_eq!(w.entry(PAGE_TABLES_GPA, 511) & !0xfff, PAGE_TABLES_GPA);
        // The RAM part is what it is without a window: the same PML4 and RAM directory,
        // and the same PDPT but for the window's entry (slot 256: 0x40_0000_0000 / 1 GiB).
        let plain = identity_page_tables(BASE, AREA, ram).unwrap();
        assert_eq!(plain.len() as u64, 3 * PAGE);
        let page = |b: &[u8], i: u64| b[(i * PAGE) as usize..((i + 1) * PAGE) as usize].to_vec();
        assert_eq!(page(&w.bytes, 0), page(&plain, 0));
        assert_eq!(page(&w.bytes, 2), page(&plain, 2));
        for slot in 0..ENTRIES {
            let (with, without) = (w.entry(PAGE_TABLES_GPA + PAGE, slot), {
                let at = (PAGE + slot * 8) as usize;
                u64::from_le_bytes(plain[at..at + 8].try_into().unwrap())
            });
            if slot == 256 {
                assert_eq!((with & !0xfff, without), (PAGE_TABLES_GPA + 3 * PAGE, 0));
            } else {
                assert_eq!(with, without, "PDPT slot {slot}");
            }
        }
    }

    #[test]
    fn whole_aligned_2mib_of_a_window_region_use_large_pages() {
        let gpa = quest_abi::layout::CHANNEL_WINDOW_GPA + (2 << 20);
        let big = WindowMapping {
            gpa: GuestPhysAddr::new(gpa),
            size: 4 << 20,
            writable: true,
        };
        let bytes = hermit_page_tables(BASE, AREA, 4 << 20, &[big]).unwrap();
        assert_eq!(bytes.len() as u64, 4 * PAGE, "no 4 KiB table needed");
        let w = Walker {
            base: PAGE_TABLES_GPA,
            bytes,
        };
        assert_eq!(
            w.translate_rw(gpa + 0x3f_ffff),
            Some((gpa + 0x3f_ffff, true, true))
        );
    }

    #[test]
    fn window_regions_that_clash_are_refused() {
        let ram = 8 << 20;
        let at = |gpa: u64, size: u64| WindowMapping {
            gpa: GuestPhysAddr::new(gpa),
            size,
            writable: false,
        };
        // Inside RAM.
        let err = hermit_page_tables(BASE, AREA, ram, &[at(0x1000, 0x1000)]);
        assert_eq!(
            err,
            Err(PageTableError::Window(PagingError::Overlap(
                GuestPhysAddr::new(0x1000)
            )))
        );
        // Reaching the range Hermit allocates its heap and stacks from.
        let err = hermit_page_tables(
            BASE,
            AREA,
            ram,
            &[at(HERMIT_VIRTUAL_START - 0x1000, 0x2000)],
        )
        .unwrap_err();
        assert_eq!(
            err,
            PageTableError::HermitRange(GuestPhysAddr::new(HERMIT_VIRTUAL_START - 0x1000))
        );
        assert!(err.to_string().contains("0x400000000000"), "{err}");
        // Misaligned.
        let gpa = quest_abi::layout::CHANNEL_WINDOW_GPA + 0x10;
        assert!(matches!(
            hermit_page_tables(BASE, AREA, ram, &[at(gpa, 0x1000)]),
            Err(PageTableError::Window(PagingError::Shape { .. }))
        ));
        // No room left for the window's tables.
        let err = hermit_page_tables(BASE, 3 * PAGE, ram, &window()).unwrap_err();
        assert_eq!(err, PageTableError::Window(PagingError::Full(3)));
    }

    #[test]
    fn hermit_virtual_start_is_where_hermit_0_11_allocates_from() {
        // hermit-kernel 0.11.0: kernel_heap_end() = (256 << 39) - 1, free list from
        // its half, rounded up.
        let kernel_heap_end: u64 = (256u64 << 39) - 1;
        assert_eq!(kernel_heap_end.div_ceil(2), HERMIT_VIRTUAL_START);
    }
}
