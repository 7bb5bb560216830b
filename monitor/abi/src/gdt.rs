//! The launch GDT every sandbox starts with: the host writes it at
//! [`crate::layout::GDT_GPA`] as part of the sandbox's initial memory, and the monitor
//! loads the matching selectors, access rights and GDTR limit into the vCPU at launch.
//! Descriptor format: Intel SDM Vol. 3A, 3.4.5 (segment descriptors).

use crate::layout::{FDT_GPA, GDT_GPA};

/// The null descriptor (index 0).
pub const NULL_DESCRIPTOR: u64 = 0;
/// Flat 64-bit code: present, DPL 0, execute/read, accessed, L=1, D=0, G=1.
pub const CODE64_DESCRIPTOR: u64 = 0x00AF_9B00_0000_FFFF;
/// Flat data: present, DPL 0, read/write, accessed, D/B=1, G=1, limit 4 GiB.
pub const DATA_DESCRIPTOR: u64 = 0x00CF_9300_0000_FFFF;

/// The launch GDT, in order: null, code ([`CODE_SELECTOR`]), data ([`DATA_SELECTOR`]).
pub const LAUNCH_GDT: [u64; 3] = [NULL_DESCRIPTOR, CODE64_DESCRIPTOR, DATA_DESCRIPTOR];
/// Its size in bytes.
pub const LAUNCH_GDT_SIZE: usize = LAUNCH_GDT.len() * 8;
/// The GDTR limit of the launch GDT (size - 1).
pub const LAUNCH_GDT_LIMIT: u32 = LAUNCH_GDT_SIZE as u32 - 1;
/// Selector of the code descriptor (CS).
pub const CODE_SELECTOR: u16 = selector(1);
/// Selector of the data descriptor (DS, ES, SS, FS, GS).
pub const DATA_SELECTOR: u16 = selector(2);
/// VMX access rights of [`CODE64_DESCRIPTOR`] (SDM Vol. 3C, 25.4.1, table 25-2).
pub const CODE_ACCESS_RIGHTS: u32 = access_rights(CODE64_DESCRIPTOR);
/// VMX access rights of [`DATA_DESCRIPTOR`].
pub const DATA_ACCESS_RIGHTS: u32 = access_rights(DATA_DESCRIPTOR);
/// Segment limit both flat descriptors describe (4 GiB with 4 KiB granularity).
pub const FLAT_LIMIT: u32 = 0xffff_ffff;

// The GDT fits below the FDT, the next fixed area.
const _: () = assert!(GDT_GPA + LAUNCH_GDT_SIZE as u64 <= FDT_GPA);

/// The selector of GDT entry `index` (table indicator 0, RPL 0).
pub const fn selector(index: u16) -> u16 {
    index << 3
}

/// A descriptor's attribute bits in the VMCS access-rights layout: type, S, DPL, P
/// (descriptor bits 40-47 -> 0-7) and AVL, L, D/B, G (bits 52-55 -> 12-15).
pub const fn access_rights(descriptor: u64) -> u32 {
    ((descriptor >> 40) & 0xf0ff) as u32
}

/// The launch GDT as the bytes the host writes at [`crate::layout::GDT_GPA`].
pub fn launch_gdt_bytes() -> [u8; LAUNCH_GDT_SIZE] {
    let mut out = [0u8; LAUNCH_GDT_SIZE];
    for (chunk, d) in out.chunks_exact_mut(8).zip(LAUNCH_GDT) {
        chunk.copy_from_slice(&d.to_le_bytes());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn descriptors_are_64bit_code_and_flat_data() {
        let code = CODE64_DESCRIPTOR;
        assert_eq!((code >> 47) & 1, 1, "present");
        assert_eq!((code >> 43) & 1, 1, "code");
        assert_eq!((code >> 53) & 1, 1, "long mode");
        assert_eq!((code >> 54) & 1, 0, "D must be 0 with L");
        let data = DATA_DESCRIPTOR;
        assert_eq!((data >> 47) & 1, 1, "present");
        assert_eq!((data >> 43) & 1, 0, "data");
        assert_eq!((data >> 41) & 1, 1, "writable");
    }

    #[test]
    fn selectors_and_access_rights_match_the_table() {
        assert_eq!(CODE_SELECTOR, 0x08);
        assert_eq!(DATA_SELECTOR, 0x10);
        assert_eq!(
            LAUNCH_GDT[usize::from(CODE_SELECTOR >> 3)],
            CODE64_DESCRIPTOR
        );
        assert_eq!(LAUNCH_GDT[usize::from(DATA_SELECTOR >> 3)], DATA_DESCRIPTOR);
        assert_eq!(CODE_ACCESS_RIGHTS, 0xa09b);
        assert_eq!(DATA_ACCESS_RIGHTS, 0xc093);
        assert_eq!(LAUNCH_GDT_LIMIT, 0x17);
    }

    #[test]
    fn bytes_are_little_endian_descriptors() {
        let b = launch_gdt_bytes();
        assert_eq!(&b[..8], &[0; 8]);
        assert_eq!(&b[8..16], &CODE64_DESCRIPTOR.to_le_bytes());
        assert_eq!(&b[16..], &DATA_DESCRIPTOR.to_le_bytes());
    }
}
