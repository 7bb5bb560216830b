//! Loading a Hermit unikernel ELF at build time with `hermit-entry`'s loader: parse,
//! copy its segments, apply its relocations for the fixed load address.

use super::bootinfo::TlsTemplate;
use goblin::elf::Elf;
use hermit_entry::elf::KernelObject;
use std::mem::MaybeUninit;
use std::panic::{catch_unwind, AssertUnwindSafe};

/// Why a Hermit image cannot be loaded.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum LoadError {
    /// The file is not a well-formed Hermit image (the message says what is wrong).
    #[error("{0}")]
    Shape(&'static str),
    /// The file is no valid ELF file.
    #[error("the Hermit image is not a valid ELF file: {0}")]
    Elf(String),
    /// hermit-entry refused the image.
    #[error("{0}")]
    Parse(String),
    /// The image is not relocatable and wants another address.
    #[error(
        "the Hermit image must be loaded at {fixed:#x}, not at {start:#x} (it is not relocatable)"
    )]
    Fixed {
        /// Where it must be loaded.
        fixed: u64,
        /// Where it was to be loaded.
        start: u64,
    },
    /// The image does not fit below the limit.
    #[error("the Hermit image needs {size:#x} bytes at {start:#x}, which ends beyond {limit:#x}")]
    TooBig {
        /// Bytes in memory.
        size: usize,
        /// Load address.
        start: u64,
        /// Where it must end by.
        limit: u64,
    },
    /// The entry point is outside the image.
    #[error("the Hermit image's entry point {0:#x} lies outside the image")]
    Entry(u64),
    /// A relocation type the loader cannot apply.
    #[error("the Hermit image has an unsupported relocation (type {0})")]
    Relocation(u32),
    /// The loader panicked.
    #[error("the Hermit image is malformed (the ELF loader gave up on it)")]
    Malformed,
}

/// A unikernel image loaded and relocated for one guest-physical address.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LoadedImage {
    /// Where it was loaded.
    pub start: u64,
    /// Its bytes in memory (segments, zero-filled gaps and `.bss`).
    pub bytes: Vec<u8>,
    /// Entry point (`_start`).
    pub entry: u64,
    /// TLS template, if any.
    pub tls: Option<TlsTemplate>,
    /// Hermit version from the image's notes, if recorded.
    pub hermit_version: Option<String>,
}

impl LoadedImage {
    /// First byte after the image.
    pub fn end(&self) -> u64 {
        self.start + self.bytes.len() as u64
    }
}

/// Loads `elf` at `start`; the image must end by `limit`.
pub fn load(elf: &[u8], start: u64, limit: u64) -> Result<LoadedImage, LoadError> {
    check_shape(elf)?;
    // hermit-entry's loader trusts its input and panics on some malformed files; the
    // shape check above rules out the ones we know of, and anything else it finds is
    // turned into an error here rather than taking the whole tool down.
    let result = catch_unwind(AssertUnwindSafe(|| load_checked(elf, start, limit)));
    match result {
        Ok(r) => r,
        Err(_) => Err(LoadError::Malformed),
    }
}

fn load_checked(elf: &[u8], start: u64, limit: u64) -> Result<LoadedImage, LoadError> {
    let object = KernelObject::parse(elf).map_err(|e| LoadError::Parse(e.to_string()))?;
    match object.start_addr() {
        None => {}
        Some(fixed) if fixed == start => {}
        Some(fixed) => return Err(LoadError::Fixed { fixed, start }),
    }
    let size = object.mem_size();
    let end = start
        .checked_add(size as u64)
        .filter(|&e| e <= limit)
        .ok_or(LoadError::TooBig { size, start, limit })?;
    // Zero-initialized: load_kernel leaves the gaps between segments untouched.
    let mut memory = vec![MaybeUninit::new(0u8); size];
    let loaded = object.load_kernel(&mut memory, start);
    let bytes: Vec<u8> = memory
        .into_iter()
        // SAFETY: every element was initialized to 0 above, and `load_kernel` only ever
        // writes initialized bytes into it (segment contents, zeros and relocated
        // values), so each element is still initialized.
        .map(|b| unsafe { b.assume_init() })
        .collect();
    debug_assert_eq!(start + bytes.len() as u64, end);
    if !(start..end).contains(&loaded.entry_point) {
        return Err(LoadError::Entry(loaded.entry_point));
    }
    Ok(LoadedImage {
        start,
        bytes,
        entry: loaded.entry_point,
        tls: loaded.load_info.tls_info.map(|t| TlsTemplate {
            start: t.start,
            filesz: t.filesz,
            memsz: t.memsz,
            align: t.align,
        }),
        hermit_version: object.hermit_version().map(|v| v.to_string()),
    })
}

/// Rejects files hermit-entry would index out of bounds on: everything its parser and
/// loader read (program and section headers, notes, dynamic section, relocations and
/// segment contents) must lie inside the file.
fn check_shape(elf: &[u8]) -> Result<(), LoadError> {
    let shape = |problem| Err(LoadError::Shape(problem));
    let parsed = Elf::parse(elf).map_err(|e| LoadError::Elf(e.to_string()))?;
    if !parsed.is_64 || !parsed.little_endian {
        return shape("the Hermit image is not a 64-bit little-endian ELF file");
    }
    let len = elf.len() as u64;
    let within = |off: u64, size: u64| off.checked_add(size).is_some_and(|e| e <= len);
    let h = &parsed.header;
    if !within(h.e_phoff, u64::from(h.e_phnum) * u64::from(h.e_phentsize))
        || !within(h.e_shoff, u64::from(h.e_shnum) * u64::from(h.e_shentsize))
    {
        return shape("the Hermit image's headers extend past the end of the file");
    }
    let mut loads = 0;
    for ph in &parsed.program_headers {
        if ph.p_type == goblin::elf::program_header::PT_LOAD {
            loads += 1;
            if ph.p_memsz < ph.p_filesz {
                return shape("a Hermit image segment has more file bytes than memory bytes");
            }
        }
        if !within(ph.p_offset, ph.p_filesz) {
            return shape("a Hermit image segment extends past the end of the file");
        }
    }
    if loads == 0 {
        return shape("the Hermit image has no loadable segment");
    }
    for sh in &parsed.section_headers {
        if sh.sh_type == goblin::elf::section_header::SHT_DYNSYM
            && !within(sh.sh_offset, sh.sh_size)
        {
            return shape("the Hermit image's dynamic symbols extend past the end of the file");
        }
    }
    if let Some(dynamic) = &parsed.dynamic {
        let rela = dynamic.info.rela as u64;
        if !within(rela, dynamic.info.relasz as u64) {
            return shape("the Hermit image's relocations extend past the end of the file");
        }
    }
    // The loader relocates only R_X86_64_RELATIVE, 64-bit and GLOB_DAT entries and
    // panics on anything else.
    for r in parsed.dynrelas.iter() {
        use goblin::elf::reloc::{R_X86_64_64, R_X86_64_GLOB_DAT, R_X86_64_RELATIVE};
        if ![R_X86_64_RELATIVE, R_X86_64_64, R_X86_64_GLOB_DAT].contains(&r.r_type) {
            return Err(LoadError::Relocation(r.r_type));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        for bad in [
            &b""[..],
            b"\x7fELF",
            b"not an elf at all, not even close......",
        ] {
            assert!(load(bad, 0x40000, 1 << 30).is_err());
        }
        // A valid ELF that is not a Hermit image (no entry-version note): the host's own
        // test binary.
        let me = std::fs::read(std::env::current_exe().unwrap()).unwrap();
        let err = load(&me, 0x40000, u64::MAX).unwrap_err();
        assert!(!err.to_string().is_empty());
    }

    #[test]
    fn truncated_elf_headers_are_refused() {
        let me = std::fs::read(std::env::current_exe().unwrap()).unwrap();
        for cut in [64usize, 200, 4096] {
            assert!(check_shape(&me[..cut]).is_err(), "cut at {cut}");
        }
    }
}
