//! What GRUB tells the monitor (multiboot2 boot information): the firmware memory map,
//! the ACPI root pointer, and where the monitor image and its blob were loaded.
//!
//! Everything is copied out, so the information block itself may be overwritten later
//! (it is still reserved from placement, for the sake of simplicity).

use core::fmt;
use multiboot2::{BootInformation, BootInformationHeader, MemoryAreaType};
use quest_monitor_core::placement::Range;

/// The value GRUB passes in EAX for a multiboot2 boot.
pub const MULTIBOOT2_MAGIC: u32 = 0x36d7_6289;
/// Most memory-map entries kept (firmware maps have a few dozen at most).
pub const MAX_AREAS: usize = 128;

extern "C" {
    static __image_start: u8;
    static __image_end_before_blob: u8;
    static __quest_blob: u8;
}

/// One entry of the firmware memory map.
#[derive(Clone, Copy, Debug)]
pub struct Area {
    /// The range.
    pub range: Range,
    /// Free RAM (type 1); anything else must be left alone.
    pub usable: bool,
}

/// The ACPI root table as the RSDP names it.
#[derive(Clone, Copy, Debug)]
pub struct AcpiRoot {
    /// RSDP revision (0: RSDT with 32-bit entries; 2+: XSDT).
    pub revision: u8,
    /// Physical address of the RSDT or XSDT.
    pub address: u64,
}

/// Everything the monitor keeps from the boot information.
#[derive(Clone, Copy, Debug)]
pub struct BootInfo {
    areas: [Area; MAX_AREAS],
    area_count: usize,
    /// The ACPI root table, if GRUB found an RSDP.
    pub acpi_root: Option<AcpiRoot>,
    /// The boot information block itself.
    pub mbi: Range,
    /// The loaded monitor image, blob included.
    pub image: Range,
    /// The loaded `.quest_blob` section.
    pub blob: Range,
}

impl BootInfo {
    /// The firmware memory map, in firmware order.
    pub fn areas(&self) -> &[Area] {
        &self.areas[..self.area_count]
    }
}

/// Why the boot information cannot be used.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BootInfoError {
    /// Not booted by a multiboot2 loader.
    NotMultiboot2(u32),
    /// The information block is malformed.
    Unreadable,
    /// No memory map tag.
    NoMemoryMap,
    /// No ELF-sections tag, or no `.quest_blob` in it: the blob's size is unknown.
    NoBlobSection,
}

impl fmt::Display for BootInfoError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Self::NotMultiboot2(m) => write!(
                f,
                "not started by a multiboot2 boot loader (magic {m:#x}); boot the image with GRUB"
            ),
            Self::Unreadable => f.write_str("the multiboot2 boot information is malformed"),
            Self::NoMemoryMap => f.write_str("the boot loader gave no memory map"),
            Self::NoBlobSection => f.write_str(
                "the boot loader gave no ELF section information; cannot find the embedded partition table",
            ),
        }
    }
}

/// Reads the boot information GRUB left at `mbi_addr`.
///
/// # Safety
/// `mbi_addr` must be the address GRUB passed in EBX, identity mapped and untouched.
pub unsafe fn read(magic: u32, mbi_addr: u64) -> Result<BootInfo, BootInfoError> {
    if magic != MULTIBOOT2_MAGIC {
        return Err(BootInfoError::NotMultiboot2(magic));
    }
    // SAFETY: per the contract; `load` checks alignment and sizes before use.
    let mbi = unsafe { BootInformation::load(mbi_addr as *const BootInformationHeader) }
        .map_err(|_| BootInfoError::Unreadable)?;

    let mut areas = [Area {
        range: Range { start: 0, end: 0 },
        usable: false,
    }; MAX_AREAS];
    let map = mbi.memory_map_tag().ok_or(BootInfoError::NoMemoryMap)?;
    let mut area_count = 0;
    for (slot, area) in areas.iter_mut().zip(map.memory_areas()) {
        *slot = Area {
            range: Range::sized(area.start_address(), area.size()),
            usable: area.typ() == MemoryAreaType::Available,
        };
        area_count += 1;
    }

    let acpi_root = match (mbi.rsdp_v2_tag(), mbi.rsdp_v1_tag()) {
        (Some(v2), _) if v2.revision() >= 2 && v2.xsdt_address() != 0 => Some(AcpiRoot {
            revision: v2.revision(),
            address: v2.xsdt_address() as u64,
        }),
        (_, Some(v1)) => Some(AcpiRoot {
            revision: 0,
            address: v1.rsdt_address() as u64,
        }),
        _ => None,
    };

    let blob_start = core::ptr::addr_of!(__quest_blob) as u64;
    let blob_size = mbi
        .elf_sections_tag()
        .and_then(|tag| {
            tag.sections()
                .find(|s| s.sh_addr == blob_start && s.sh_size >= 4096)
        })
        .map(|s| s.sh_size)
        .ok_or(BootInfoError::NoBlobSection)?;
    let blob = Range::sized(blob_start, blob_size);
    let image_start = core::ptr::addr_of!(__image_start) as u64;
    let image_end = (core::ptr::addr_of!(__image_end_before_blob) as u64).max(blob.end);

    Ok(BootInfo {
        areas,
        area_count,
        acpi_root,
        mbi: Range::sized(mbi.start_address() as u64, mbi.total_size() as u64),
        image: Range {
            start: image_start,
            end: image_end,
        },
        blob,
    })
}
