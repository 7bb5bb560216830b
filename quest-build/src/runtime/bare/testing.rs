//! Test helpers for the image stage: a tiny hand-built static PIE.

use goblin::elf::{header, reloc};

const RELA_AT: u64 = 0x180;
pub(crate) const SLOT_AT: u64 = 0x200;
pub(crate) const FILE_LEN: u64 = 0x210;
pub(crate) const BSS: u64 = 0x2000;

fn put(buf: &mut [u8], at: u64, bytes: &[u8]) {
    buf[at as usize..at as usize + bytes.len()].copy_from_slice(bytes);
}

/// A minimal static PIE: one RWX `PT_LOAD` covering the file plus `.bss`, a `PT_DYNAMIC`
/// naming one relocation `(type, offset, addend)`, entry at 0x208.
pub(crate) fn tiny_pie(reloc_type: u32, reloc_offset: u64, e_type: u16) -> Vec<u8> {
    let mut f = vec![0u8; FILE_LEN as usize];
    // ELF header.
    put(&mut f, 0, b"\x7fELF\x02\x01\x01");
    put(&mut f, 16, &e_type.to_le_bytes());
    put(&mut f, 18, &62u16.to_le_bytes()); // EM_X86_64
    put(&mut f, 20, &1u32.to_le_bytes());
    put(&mut f, 24, &0x208u64.to_le_bytes()); // e_entry
    put(&mut f, 32, &0x40u64.to_le_bytes()); // e_phoff
    put(&mut f, 52, &64u16.to_le_bytes()); // e_ehsize
    put(&mut f, 54, &56u16.to_le_bytes()); // e_phentsize
    put(&mut f, 56, &2u16.to_le_bytes()); // e_phnum
    put(&mut f, 58, &64u16.to_le_bytes()); // e_shentsize
                                           // PT_LOAD: offset 0, vaddr 0, file FILE_LEN, memory FILE_LEN + BSS, RWX.
    let ph = |f: &mut Vec<u8>, at: u64, ty: u32, off: u64, filesz: u64, memsz: u64| {
        put(f, at, &ty.to_le_bytes());
        put(f, at + 4, &7u32.to_le_bytes());
        put(f, at + 8, &off.to_le_bytes());
        put(f, at + 16, &off.to_le_bytes());
        put(f, at + 24, &off.to_le_bytes());
        put(f, at + 32, &filesz.to_le_bytes());
        put(f, at + 40, &memsz.to_le_bytes());
        put(f, at + 48, &0x1000u64.to_le_bytes());
    };
    ph(&mut f, 0x40, 1, 0, FILE_LEN, FILE_LEN + BSS);
    ph(&mut f, 0x78, 2, 0x100, 0x40, 0x40);
    // Dynamic section: DT_RELA, DT_RELASZ, DT_RELAENT, DT_NULL.
    for (i, (tag, val)) in [(7u64, RELA_AT), (8, 24), (9, 24), (0, 0)]
        .iter()
        .enumerate()
    {
        put(&mut f, 0x100 + 16 * i as u64, &tag.to_le_bytes());
        put(&mut f, 0x108 + 16 * i as u64, &val.to_le_bytes());
    }
    // The relocation.
    put(&mut f, RELA_AT, &reloc_offset.to_le_bytes());
    put(&mut f, RELA_AT + 8, &u64::from(reloc_type).to_le_bytes());
    put(&mut f, RELA_AT + 16, &0x1234u64.to_le_bytes());
    put(&mut f, 0x208, b"hello");
    f
}

/// A valid tiny static PIE with one `R_X86_64_RELATIVE` relocation.
pub(crate) fn tiny_app() -> Vec<u8> {
    tiny_pie(reloc::R_X86_64_RELATIVE, SLOT_AT, header::ET_DYN)
}
