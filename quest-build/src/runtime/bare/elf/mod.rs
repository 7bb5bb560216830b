//! Loading an application ELF the way a loader would, at build time: its `PT_LOAD`
//! segments laid out in memory and, for a static PIE, its `R_X86_64_RELATIVE`
//! relocations applied for the load address.

use goblin::elf::{header, program_header, reloc, Elf};

/// An ELF laid out in guest memory.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LoadedElf {
    /// Guest-physical address of the first loaded byte (page-aligned).
    pub start: u64,
    /// Guest-physical address after the last loaded byte, `.bss` included.
    pub end: u64,
    /// Entry point.
    pub entry: u64,
    /// Memory from `start`: the segments with relocations applied, gaps zeroed; trailing
    /// zero-initialised memory (`.bss`) is left out (guest RAM starts zeroed).
    pub bytes: Vec<u8>,
}

/// Why an ELF cannot be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ElfError {
    /// goblin could not parse it.
    #[error("not a valid ELF file: {0}")]
    Parse(#[from] goblin::error::Error),
    /// Not a 64-bit little-endian x86-64 executable.
    #[error("not a 64-bit x86-64 executable (build it for x86_64-unknown-none)")]
    WrongKind,
    /// Needs a dynamic linker or thread-local storage, which a bare sandbox lacks.
    #[error("needs {0}, which a bare sandbox does not have (build a static executable)")]
    Unsupported(&'static str),
    /// Its segments span more than [`MAX_IMAGE_SIZE`].
    #[error("is larger than {} MiB in memory", MAX_IMAGE_SIZE >> 20)]
    TooLarge,
    /// It has no loadable segment.
    #[error("has no loadable segment")]
    Empty,
    /// A segment's file range or addresses are inconsistent.
    #[error("segment {0} lies outside the file or overflows the address space")]
    BadSegment(usize),
    /// A relocation other than `R_X86_64_RELATIVE`/`R_X86_64_NONE`, or outside the image.
    #[error("relocation {index} (type {kind}) at {offset:#x} is not supported (static PIE images may only use R_X86_64_RELATIVE inside the image)")]
    BadRelocation {
        /// Index in the relocation table.
        index: usize,
        /// Relocation type.
        kind: u32,
        /// Where it applies (unrelocated address).
        offset: u64,
    },
}

const PAGE: u64 = 4096;
/// Largest image (all segments, `.bss` included) this loader lays out.
pub const MAX_IMAGE_SIZE: u64 = 256 << 20;

/// Loads `bytes`. A position-independent executable (`ET_DYN`) is placed with its lowest
/// segment at `base` and relocated; a fixed-address one (`ET_EXEC`) is placed where its
/// segments say.
pub fn load(bytes: &[u8], base: u64) -> Result<LoadedElf, ElfError> {
    let elf = Elf::parse(bytes)?;
    if !elf.is_64 || !elf.little_endian || elf.header.e_machine != header::EM_X86_64 {
        return Err(ElfError::WrongKind);
    }
    let pie = match elf.header.e_type {
        header::ET_DYN => true,
        header::ET_EXEC => false,
        _ => return Err(ElfError::WrongKind),
    };
    for ph in &elf.program_headers {
        match ph.p_type {
            program_header::PT_INTERP => return Err(ElfError::Unsupported("a dynamic linker")),
            program_header::PT_TLS => return Err(ElfError::Unsupported("thread-local storage")),
            _ => {}
        }
    }
    let loads: Vec<_> = elf
        .program_headers
        .iter()
        .enumerate()
        .filter(|(_, ph)| ph.p_type == program_header::PT_LOAD && ph.p_memsz > 0)
        .collect();
    let low = loads
        .iter()
        .map(|(_, ph)| ph.p_vaddr)
        .min()
        .ok_or(ElfError::Empty)?
        / PAGE
        * PAGE;
    let mut high = 0u64;
    let mut file_high = 0u64;
    for (i, ph) in &loads {
        let end = ph
            .p_vaddr
            .checked_add(ph.p_memsz)
            .ok_or(ElfError::BadSegment(*i))?;
        let file_end = ph.p_offset.checked_add(ph.p_filesz);
        if ph.p_filesz > ph.p_memsz || file_end.is_none_or(|e| e > bytes.len() as u64) {
            return Err(ElfError::BadSegment(*i));
        }
        high = high.max(end);
        file_high = file_high.max(ph.p_vaddr + ph.p_filesz);
    }
    // The bias moves a PIE from its link address (usually 0) to `base`.
    let bias = if pie { base.wrapping_sub(low) } else { 0 };
    let start = low.wrapping_add(bias);
    let span = high - low;
    if span > MAX_IMAGE_SIZE {
        return Err(ElfError::TooLarge);
    }
    let end = start.checked_add(span).ok_or(ElfError::BadSegment(0))?;
    let mut memory = vec![0u8; span as usize];
    for (_, ph) in &loads {
        let at = (ph.p_vaddr - low) as usize;
        let from = ph.p_offset as usize;
        memory[at..at + ph.p_filesz as usize]
            .copy_from_slice(&bytes[from..from + ph.p_filesz as usize]);
    }
    if pie {
        relocate(&elf, &mut memory, low, bias)?;
    } else if !elf.dynrelas.is_empty() {
        let r = elf.dynrelas.iter().next().map_or(0, |r| r.r_offset);
        return Err(ElfError::BadRelocation {
            index: 0,
            kind: 0,
            offset: r,
        });
    }
    // Relocations never target .bss-only memory in a sane image, but trim only what is
    // still zero so nothing written is lost.
    let keep = memory
        .iter()
        .rposition(|&b| b != 0)
        .map_or(0, |i| i + 1)
        .max((file_high - low).min(span) as usize);
    memory.truncate(keep);
    Ok(LoadedElf {
        start,
        end,
        entry: elf.entry.wrapping_add(bias),
        bytes: memory,
    })
}

/// Applies the dynamic relocations of a PIE loaded with `bias` (memory starts at the
/// unrelocated address `low`).
fn relocate(elf: &Elf<'_>, memory: &mut [u8], low: u64, bias: u64) -> Result<(), ElfError> {
    if !elf.dynrels.is_empty() {
        return Err(ElfError::BadRelocation {
            index: 0,
            kind: 0,
            offset: elf.dynrels.iter().next().map_or(0, |r| r.r_offset),
        });
    }
    for (index, r) in elf.dynrelas.iter().chain(elf.pltrelocs.iter()).enumerate() {
        let bad = ElfError::BadRelocation {
            index,
            kind: r.r_type,
            offset: r.r_offset,
        };
        match r.r_type {
            reloc::R_X86_64_NONE => continue,
            reloc::R_X86_64_RELATIVE => {}
            _ => return Err(bad),
        }
        let at = r.r_offset.checked_sub(low).ok_or(ElfError::BadRelocation {
            index,
            kind: r.r_type,
            offset: r.r_offset,
        })? as usize;
        let slot = at
            .checked_add(8)
            .and_then(|e| memory.get_mut(at..e))
            .ok_or(bad)?;
        let value = bias.wrapping_add(r.r_addend.unwrap_or(0) as u64);
        slot.copy_from_slice(&value.to_le_bytes());
    }
    Ok(())
}

#[cfg(test)]
mod tests;
