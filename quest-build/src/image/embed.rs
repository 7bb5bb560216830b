//! Putting the partition table and the payloads into the monitor's ELF.
//!
//! # The blob contract (shared with `monitor/linker.ld` and `monitor/src/blob.rs`)
//! The monitor as built has a section `.quest_blob` (symbol `__quest_blob`, 4 KiB
//! aligned) holding a 4 KiB zero placeholder, alone in the **last** `PT_LOAD` segment in
//! both file order and address order. [`embed`] replaces the placeholder with the blob:
//! - blob offset 0: the partition table (`quest_abi::encode`);
//! - blob offset `quest_abi::validate::payload_area_offset(total_size)`: the payload
//!   area, `header.payload_area_size` bytes;
//! - zero padding to a multiple of 4 KiB.
//!
//! The section's `sh_size` and the segment's `p_filesz`/`p_memsz` become the padded blob
//! size; everything stored after the placeholder in the file (symbol and string tables,
//! the section header table) moves back by the growth, which is a multiple of 4 KiB so
//! every alignment still holds. Because the blob is the last thing loaded, no address the
//! monitor was linked against changes. GRUB loads the segment; the monitor finds the size
//! in the ELF-sections tag of the multiboot2 information.
//!
//! The function is pure: same monitor and blob bytes, same output bytes.

use goblin::elf::header::{ELFCLASS64, ELFDATA2LSB, ET_EXEC};
use goblin::elf::program_header::PT_LOAD;
use goblin::elf::section_header::{SHT_NOBITS, SHT_PROGBITS};
use goblin::elf::Elf;

/// Name of the section that carries the blob.
pub const BLOB_SECTION: &str = ".quest_blob";
/// Size of the zero placeholder in the monitor as built.
pub const PLACEHOLDER_SIZE: u64 = 4096;
/// The blob is padded to this multiple.
const BLOB_ALIGN: u64 = 4096;
/// GRUB loads multiboot2 ELF segments below 4 GiB only.
const LOAD_LIMIT: u64 = 1 << 32;

// ELF64 field offsets (System V gABI, "ELF Header", "Program Header", "Section Header").
const E_PHOFF: usize = 0x20;
const E_SHOFF: usize = 0x28;
const P_OFFSET: usize = 0x08;
const P_FILESZ: usize = 0x20;
const P_MEMSZ: usize = 0x28;
const SH_OFFSET: usize = 0x18;
const SH_SIZE: usize = 0x20;

/// Why a blob could not be embedded. The doc line of each variant is its message.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum EmbedError {
    /// The monitor is not a readable ELF file.
    #[error("the monitor is not a valid ELF file: {0}")]
    NotElf(String),
    /// The monitor is not a 64-bit little-endian executable.
    #[error("the monitor is not a 64-bit little-endian ELF executable")]
    WrongKind,
    /// The monitor has no `.quest_blob` section.
    #[error("the monitor has no {BLOB_SECTION} section (was it linked with monitor/linker.ld?)")]
    NoBlobSection,
    /// The `.quest_blob` section does not hold the zero placeholder.
    #[error("the monitor's {BLOB_SECTION} section is not the 4 KiB zero placeholder (already embedded?)")]
    NotPlaceholder,
    /// The `.quest_blob` section is not alone in the last loadable segment.
    #[error("the monitor's {BLOB_SECTION} section is not alone in its last loadable segment")]
    NotLastSegment,
    /// The blob is empty.
    #[error("the blob to embed is empty")]
    EmptyBlob,
    /// The image would not load below 4 GiB or exceed the ELF size fields.
    #[error("the blob ({0} bytes) is too large to load below 4 GiB")]
    TooLarge(u64),
}

/// Returns a copy of `monitor_elf` whose `.quest_blob` holds `blob` (see the module doc).
pub fn embed(monitor_elf: &[u8], blob: &[u8]) -> Result<Vec<u8>, EmbedError> {
    let elf = Elf::parse(monitor_elf).map_err(|e| EmbedError::NotElf(e.to_string()))?;
    let ident = &elf.header.e_ident;
    if !elf.is_64
        || !elf.little_endian
        || ident[goblin::elf::header::EI_CLASS] != ELFCLASS64
        || ident[goblin::elf::header::EI_DATA] != ELFDATA2LSB
        || elf.header.e_type != ET_EXEC
    {
        return Err(EmbedError::WrongKind);
    }
    if blob.is_empty() {
        return Err(EmbedError::EmptyBlob);
    }

    let (section_index, section) = elf
        .section_headers
        .iter()
        .enumerate()
        .find(|(_, s)| elf.shdr_strtab.get_at(s.sh_name) == Some(BLOB_SECTION))
        .ok_or(EmbedError::NoBlobSection)?;
    let old_start = section.sh_offset;
    let old_end = old_start + PLACEHOLDER_SIZE;
    let placeholder = monitor_elf.get(old_start as usize..old_end as usize);
    if section.sh_type != SHT_PROGBITS
        || section.sh_size != PLACEHOLDER_SIZE
        || !placeholder.is_some_and(|p| p.iter().all(|&b| b == 0))
    {
        return Err(EmbedError::NotPlaceholder);
    }

    // The segment that holds exactly the placeholder, last in file and in memory.
    let loads: Vec<_> = elf
        .program_headers
        .iter()
        .enumerate()
        .filter(|(_, p)| p.p_type == PT_LOAD)
        .collect();
    let (segment_index, segment) = loads
        .iter()
        .find(|(_, p)| p.p_offset == old_start && p.p_vaddr == section.sh_addr)
        .copied()
        .ok_or(EmbedError::NotLastSegment)?;
    let last_in_memory = loads.iter().all(|(_, p)| p.p_vaddr <= segment.p_vaddr);
    let last_in_file = loads.iter().all(|(_, p)| p.p_offset <= segment.p_offset);
    if segment.p_filesz != PLACEHOLDER_SIZE
        || segment.p_memsz != PLACEHOLDER_SIZE
        || !last_in_memory
        || !last_in_file
    {
        return Err(EmbedError::NotLastSegment);
    }
    // No other section may share the placeholder's bytes or addresses.
    let shares = elf.section_headers.iter().enumerate().any(|(i, s)| {
        i != section_index
            && s.sh_size != 0
            && ((s.sh_type != SHT_NOBITS
                && s.sh_offset < old_end
                && old_start < s.sh_offset + s.sh_size)
                || (s.sh_addr != 0
                    && s.sh_addr < segment.p_vaddr + PLACEHOLDER_SIZE
                    && segment.p_vaddr < s.sh_addr + s.sh_size))
    });
    if shares {
        return Err(EmbedError::NotLastSegment);
    }

    let new_size = (blob.len() as u64).div_ceil(BLOB_ALIGN) * BLOB_ALIGN;
    if segment
        .p_paddr
        .max(segment.p_vaddr)
        .checked_add(new_size)
        .is_none_or(|end| end > LOAD_LIMIT)
    {
        return Err(EmbedError::TooLarge(blob.len() as u64));
    }
    let growth = new_size - PLACEHOLDER_SIZE;
    let shift = |offset: u64| {
        if offset >= old_end {
            offset + growth
        } else {
            offset
        }
    };

    let mut out = Vec::with_capacity(monitor_elf.len() + growth as usize);
    out.extend_from_slice(&monitor_elf[..old_start as usize]);
    out.extend_from_slice(blob);
    out.resize((old_start + new_size) as usize, 0);
    out.extend_from_slice(&monitor_elf[old_end as usize..]);

    let header = &elf.header;
    put(&mut out, E_PHOFF, shift(header.e_phoff));
    let shoff = shift(header.e_shoff);
    put(&mut out, E_SHOFF, shoff);
    let phoff = shift(header.e_phoff) as usize;
    for (i, p) in elf.program_headers.iter().enumerate() {
        let at = phoff + i * header.e_phentsize as usize;
        if i == segment_index {
            put(&mut out, at + P_FILESZ, new_size);
            put(&mut out, at + P_MEMSZ, new_size);
        } else {
            put(&mut out, at + P_OFFSET, shift(p.p_offset));
        }
    }
    for (i, s) in elf.section_headers.iter().enumerate() {
        let at = shoff as usize + i * header.e_shentsize as usize;
        if i == section_index {
            put(&mut out, at + SH_SIZE, new_size);
        } else if s.sh_type != SHT_NOBITS {
            put(&mut out, at + SH_OFFSET, shift(s.sh_offset));
        }
    }
    Ok(out)
}

/// Writes a little-endian u64 at `at` (inside a header goblin already read, so in bounds).
fn put(out: &mut [u8], at: usize, value: u64) {
    out[at..at + 8].copy_from_slice(&value.to_le_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT_ADDR: u64 = 0x20_0000;
    const BLOB_ADDR: u64 = 0x20_1000;

    /// A small monitor-shaped ELF: .text, the placeholder, .shstrtab, then the section
    /// header table; two PT_LOADs (text, blob).
    fn synthetic_monitor(blob_first: bool, blob_addr: u64) -> Vec<u8> {
        let shstrtab = b"\0.text\0.quest_blob\0.shstrtab\0";
        let mut f = vec![0u8; 0x1000];
        // ELF header.
        f[..4].copy_from_slice(b"\x7fELF");
        f[4] = 2; // 64-bit
        f[5] = 1; // little-endian
        f[6] = 1; // version
        f[16..18].copy_from_slice(&2u16.to_le_bytes()); // ET_EXEC
        f[18..20].copy_from_slice(&62u16.to_le_bytes()); // x86-64
        f[20..24].copy_from_slice(&1u32.to_le_bytes());
        f[24..32].copy_from_slice(&TEXT_ADDR.to_le_bytes()); // entry
        f[32..40].copy_from_slice(&64u64.to_le_bytes()); // phoff
        f[52..54].copy_from_slice(&64u16.to_le_bytes()); // ehsize
        f[54..56].copy_from_slice(&56u16.to_le_bytes()); // phentsize
        f[56..58].copy_from_slice(&2u16.to_le_bytes()); // phnum
        f[58..60].copy_from_slice(&64u16.to_le_bytes()); // shentsize
        f[60..62].copy_from_slice(&4u16.to_le_bytes()); // shnum
        f[62..64].copy_from_slice(&3u16.to_le_bytes()); // shstrndx
        let phdr = |f: &mut Vec<u8>, i: usize, flags: u32, off: u64, addr: u64, size: u64| {
            let at = 64 + i * 56;
            f[at..at + 4].copy_from_slice(&1u32.to_le_bytes());
            f[at + 4..at + 8].copy_from_slice(&flags.to_le_bytes());
            for (k, v) in [off, addr, addr, size, size, 0x1000].iter().enumerate() {
                f[at + 8 + k * 8..at + 16 + k * 8].copy_from_slice(&v.to_le_bytes());
            }
        };
        let (text_phdr, blob_phdr) = if blob_first { (1, 0) } else { (0, 1) };
        phdr(&mut f, text_phdr, 5, 0x1000, TEXT_ADDR, 0x1000);
        phdr(&mut f, blob_phdr, 6, 0x2000, blob_addr, 0x1000);
        f.resize(0x1000, 0);
        f.extend(std::iter::repeat_n(0x90, 0x1000)); // .text at 0x1000
        f.extend(std::iter::repeat_n(0, 0x1000)); // placeholder at 0x2000
        let strtab_off = f.len() as u64;
        f.extend_from_slice(shstrtab);
        while f.len() % 8 != 0 {
            f.push(0);
        }
        let shoff = f.len() as u64;
        f[40..48].copy_from_slice(&shoff.to_le_bytes());
        let shdr =
            |f: &mut Vec<u8>, name: u32, ty: u32, flags: u64, addr: u64, off: u64, size: u64| {
                let mut s = [0u8; 64];
                s[0..4].copy_from_slice(&name.to_le_bytes());
                s[4..8].copy_from_slice(&ty.to_le_bytes());
                s[8..16].copy_from_slice(&flags.to_le_bytes());
                s[16..24].copy_from_slice(&addr.to_le_bytes());
                s[24..32].copy_from_slice(&off.to_le_bytes());
                s[32..40].copy_from_slice(&size.to_le_bytes());
                s[48..56].copy_from_slice(&1u64.to_le_bytes());
                f.extend_from_slice(&s);
            };
        shdr(&mut f, 0, 0, 0, 0, 0, 0);
        shdr(&mut f, 1, 1, 6, TEXT_ADDR, 0x1000, 0x1000);
        shdr(&mut f, 7, 1, 3, blob_addr, 0x2000, 0x1000);
        shdr(&mut f, 19, 3, 0, 0, strtab_off, shstrtab.len() as u64);
        f
    }

    fn blob_section<'a>(elf: &Elf<'_>, bytes: &'a [u8]) -> (u64, &'a [u8]) {
        let s = elf
            .section_headers
            .iter()
            .find(|s| elf.shdr_strtab.get_at(s.sh_name) == Some(BLOB_SECTION))
            .unwrap();
        (
            s.sh_addr,
            &bytes[s.sh_offset as usize..(s.sh_offset + s.sh_size) as usize],
        )
    }

    #[test]
    fn embeds_blob_grows_segment_and_moves_what_follows() {
        let monitor = synthetic_monitor(false, BLOB_ADDR);
        let blob: Vec<u8> = (0..10_000u32).map(|i| (i % 251) as u8 + 1).collect();
        let out = embed(&monitor, &blob).unwrap();
        assert_eq!(out.len(), monitor.len() + 3 * 4096 - 4096);

        let elf = Elf::parse(&out).unwrap();
        let (addr, contents) = blob_section(&elf, &out);
        assert_eq!(addr, BLOB_ADDR, "the blob's address does not change");
        assert_eq!(contents.len(), 3 * 4096);
        assert_eq!(&contents[..blob.len()], &blob[..]);
        assert!(contents[blob.len()..].iter().all(|&b| b == 0));

        let seg = elf
            .program_headers
            .iter()
            .find(|p| p.p_vaddr == BLOB_ADDR)
            .unwrap();
        assert_eq!(
            (seg.p_offset, seg.p_filesz, seg.p_memsz),
            (0x2000, 3 * 4096, 3 * 4096)
        );
        let text = elf
            .program_headers
            .iter()
            .find(|p| p.p_vaddr == TEXT_ADDR)
            .unwrap();
        assert_eq!((text.p_offset, text.p_filesz), (0x1000, 0x1000));
        assert!(
            out[0x1000..0x2000].iter().all(|&b| b == 0x90),
            ".text is untouched"
        );

        // The section header table and the string table moved behind the blob, intact.
        assert!(elf.header.e_shoff >= 0x2000 + 3 * 4096);
        let names: Vec<_> = elf
            .section_headers
            .iter()
            .map(|s| elf.shdr_strtab.get_at(s.sh_name).unwrap_or("?"))
            .collect();
        assert_eq!(names, ["", ".text", ".quest_blob", ".shstrtab"]);
    }

    #[test]
    fn output_is_deterministic_and_small_blobs_keep_the_size() {
        let monitor = synthetic_monitor(false, BLOB_ADDR);
        let a = embed(&monitor, b"QUESTPT\0table").unwrap();
        let b = embed(&monitor, b"QUESTPT\0table").unwrap();
        assert_eq!(a, b);
        assert_eq!(a.len(), monitor.len());
        assert_ne!(a, embed(&monitor, b"QUESTPT\0tablf").unwrap());
    }

    #[test]
    fn refuses_what_it_cannot_patch_safely() {
        let monitor = synthetic_monitor(false, BLOB_ADDR);
        assert_eq!(embed(&monitor, b""), Err(EmbedError::EmptyBlob));
        assert!(matches!(
            embed(b"not an elf", b"x"),
            Err(EmbedError::NotElf(_))
        ));

        let embedded = embed(&monitor, b"x").unwrap();
        assert_eq!(embed(&embedded, b"y"), Err(EmbedError::NotPlaceholder));

        let mut renamed = monitor.clone();
        let at = renamed
            .windows(11)
            .position(|w| w == b".quest_blob")
            .unwrap();
        renamed[at + 1] = b'Q';
        assert_eq!(embed(&renamed, b"x"), Err(EmbedError::NoBlobSection));

        // The blob's segment must be last in memory: move the text segment above it.
        let mut text_high = monitor.clone();
        let vaddr = 64 + 16;
        text_high[vaddr..vaddr + 8].copy_from_slice(&(BLOB_ADDR + 0x1000).to_le_bytes());
        assert_eq!(embed(&text_high, b"x"), Err(EmbedError::NotLastSegment));

        // Below 4 GiB with the placeholder, but not with an 8 KiB blob.
        let near_top = synthetic_monitor(false, LOAD_LIMIT - 0x1000);
        assert!(embed(&near_top, &[1u8; 4096]).is_ok());
        assert_eq!(
            embed(&near_top, &[1u8; 4097]),
            Err(EmbedError::TooLarge(4097))
        );
    }

    #[test]
    fn program_header_order_does_not_matter() {
        let monitor = synthetic_monitor(true, BLOB_ADDR);
        let out = embed(&monitor, &[7u8; 5000]).unwrap();
        let elf = Elf::parse(&out).unwrap();
        let (_, contents) = blob_section(&elf, &out);
        assert_eq!(&contents[..5000], &[7u8; 5000][..]);
    }
}
