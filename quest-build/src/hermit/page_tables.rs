//! The initial page tables of a Hermit sandbox, as uhyve builds them: RAM identity-mapped
//! with 2 MiB pages, and PML4 entry 511 pointing back at the PML4 (recursive mapping).
//!
//! Hermit keeps editing these tables through its identity view of physical memory and
//! later identity-maps all of RAM again with 2 MiB pages, expecting to find exactly the
//! same mappings; 1 GiB pages would make that fail.
//!
//! Table pages are laid out from `base`: the PML4, one PDPT, then one page directory per
//! GiB of RAM.

use quest_abi::LARGE_PAGE_SIZE;

/// Entry bits (Intel SDM Vol. 3A, 4.5, Tables 4-14 to 4-18).
const PRESENT: u64 = 1;
const WRITABLE: u64 = 1 << 1;
/// PS: the PD entry maps a 2 MiB page.
const HUGE: u64 = 1 << 7;

const PAGE: u64 = 4096;
const ENTRIES: u64 = 512;
/// RAM one page directory maps (512 x 2 MiB).
const PD_SPAN: u64 = ENTRIES * LARGE_PAGE_SIZE;
/// PML4 slot of the recursive entry.
const RECURSIVE_SLOT: usize = 511;

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
}

/// The tables for `ram_size` bytes of RAM, as bytes to place at guest-physical `base`;
/// at most `area_size` bytes. CR3 = `base`.
pub fn identity_page_tables(
    base: u64,
    area_size: u64,
    ram_size: u64,
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
    let mut pages = vec![[0u64; ENTRIES as usize]; needed as usize];
    let page_gpa = |i: u64| base + i * PAGE;

    pages[0][0] = page_gpa(1) | PRESENT | WRITABLE;
    pages[0][RECURSIVE_SLOT] = page_gpa(0) | PRESENT | WRITABLE;
    for d in 0..directories {
        pages[1][d as usize] = page_gpa(2 + d) | PRESENT | WRITABLE;
    }
    for (n, gpa) in (0..ram_size).step_by(LARGE_PAGE_SIZE as usize).enumerate() {
        let pd = 2 + n / ENTRIES as usize;
        pages[pd][n % ENTRIES as usize] = gpa | PRESENT | WRITABLE | HUGE;
    }
    Ok(pages
        .iter()
        .flat_map(|p| p.iter().flat_map(|e| e.to_le_bytes()))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use quest_abi::layout::{PAGE_TABLES_END, PAGE_TABLES_GPA};

    const AREA: u64 = PAGE_TABLES_END - PAGE_TABLES_GPA;

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
            let mut table = self.base;
            for level in (1..=4).rev() {
                let index = (va >> (12 + 9 * (level - 1))) & 0x1ff;
                let e = self.entry(table, index);
                if e & PRESENT == 0 {
                    return None;
                }
                let addr = e & 0x000f_ffff_ffff_f000;
                if level == 2 && e & HUGE != 0 {
                    return Some((addr + (va & (LARGE_PAGE_SIZE - 1)), true));
                }
                if level == 1 {
                    return Some((addr + (va & 0xfff), false));
                }
                // A table outside the buffer would be a bug: the walk must stay inside.
                assert!(addr >= self.base && addr < self.base + self.bytes.len() as u64);
                table = addr;
            }
            None
        }
    }

    fn walker(ram: u64) -> Walker {
        let bytes = identity_page_tables(PAGE_TABLES_GPA, AREA, ram).unwrap();
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
        assert_eq!(e & (PRESENT | WRITABLE), PRESENT | WRITABLE);
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
        let err = identity_page_tables(PAGE_TABLES_GPA, AREA, 3 << 20).unwrap_err();
        assert_eq!(err, PageTableError::Shape(3 << 20));
        assert!(identity_page_tables(PAGE_TABLES_GPA, AREA, 0).is_err());
        // 40 pages of room: 38 directories at most.
        assert!(identity_page_tables(PAGE_TABLES_GPA, AREA, 38 << 30).is_ok());
        let err = identity_page_tables(PAGE_TABLES_GPA, AREA, 39 << 30).unwrap_err();
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
}
