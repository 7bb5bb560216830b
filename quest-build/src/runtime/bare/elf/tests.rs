//! ELF loading against small hand-built images (no toolchain needed).

use super::*;
use proptest::prelude::*;

use crate::runtime::bare::testing::{tiny_pie, BSS, FILE_LEN, SLOT_AT};

#[test]
fn a_static_pie_is_placed_at_the_base_and_relocated() {
    let base = 0x20_0000;
    let elf = tiny_pie(reloc::R_X86_64_RELATIVE, SLOT_AT, header::ET_DYN);
    let loaded = load(&elf, base).unwrap();
    assert_eq!(loaded.start, base);
    assert_eq!(loaded.entry, base + 0x208);
    assert_eq!(loaded.end, base + FILE_LEN + BSS);
    assert_eq!(loaded.bytes.len() as u64, FILE_LEN, ".bss is not carried");
    let slot = &loaded.bytes[SLOT_AT as usize..SLOT_AT as usize + 8];
    assert_eq!(slot, &(base + 0x1234).to_le_bytes());
    assert_eq!(&loaded.bytes[0x208..0x20d], b"hello");
}

#[test]
fn a_fixed_address_executable_stays_where_it_was_linked() {
    let elf = tiny_pie(reloc::R_X86_64_NONE, SLOT_AT, header::ET_EXEC);
    // ET_EXEC with a (harmless) relocation entry: refused, since nobody would apply it.
    assert!(matches!(
        load(&elf, 0x20_0000),
        Err(ElfError::BadRelocation { .. })
    ));
}

#[test]
fn other_relocation_types_are_refused() {
    let elf = tiny_pie(reloc::R_X86_64_64, SLOT_AT, header::ET_DYN);
    let err = load(&elf, 0x20_0000).unwrap_err();
    assert!(
        err.to_string().contains("type 1"),
        "names the relocation type: {err}"
    );
}

#[test]
fn relocations_outside_the_image_are_refused() {
    let elf = tiny_pie(reloc::R_X86_64_RELATIVE, FILE_LEN + BSS, header::ET_DYN);
    assert!(matches!(
        load(&elf, 0x20_0000),
        Err(ElfError::BadRelocation { .. })
    ));
}

#[test]
fn garbage_and_wrong_machines_are_refused() {
    assert!(matches!(load(b"not an elf", 0), Err(ElfError::Parse(_))));
    let mut elf = tiny_pie(reloc::R_X86_64_RELATIVE, SLOT_AT, header::ET_DYN);
    elf[18] = 40; // EM_ARM
    assert!(matches!(load(&elf, 0), Err(ElfError::WrongKind)));
}

proptest! {
    #[test]
    fn loading_corrupted_images_never_panics(
        edits in proptest::collection::vec((0..FILE_LEN as usize, any::<u8>()), 1..8),
        cut in 0..=FILE_LEN as usize,
    ) {
        let mut elf = tiny_pie(reloc::R_X86_64_RELATIVE, SLOT_AT, header::ET_DYN);
        for (at, b) in edits {
            elf[at] = b;
        }
        elf.truncate(cut.max(1));
        let _ = load(&elf, 0x20_0000);
    }
}
