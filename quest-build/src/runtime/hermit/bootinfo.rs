//! Hermit's boot information block (`hermit_entry::boot_info::RawBootInfo`, entry
//! version 4) as plain little-endian bytes, and the offsets the monitor patches.
//!
//! `hermit-entry` keeps the fields of `RawBootInfo` private and has padding in it, so its
//! bytes cannot be read out soundly. [`HermitBootInfo`] spells out the same `repr(C)`
//! layout with explicit padding; the tests below check it against `hermit-entry` itself
//! (our bytes, read as a `RawBootInfo`, convert to exactly the values we wrote).

use core::mem::offset_of;
use quest_abi::layout::BOOT_INFO_GPA;
use zerocopy::little_endian::{I128, U16, U32, U64};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout, Unaligned};

/// `RawPlatformInfo::Uhyve`'s discriminant on x86_64 (`Multiboot` = 0 comes first).
pub const PLATFORM_UHYVE: u32 = 1;

/// The bytes of a `RawBootInfo` with platform `Uhyve`, field by field.
#[derive(Clone, Copy, Debug, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
#[repr(C)]
pub struct HermitBootInfo {
    /// First guest-physical RAM address.
    pub phys_addr_start: U64,
    /// End (exclusive) of guest-physical RAM.
    pub phys_addr_end: U64,
    /// Serial port base (`Option<NonZeroU16>`; 0 = none). Hermit requires one, but in
    /// uhyve mode writes its log by hypercall instead.
    pub serial_port_base: U16,
    /// Padding.
    pub pad0: [u8; 6],
    /// Guest-physical address of the FDT (`Option<NonZeroU64>`).
    pub device_tree: U64,
    /// First byte of the loaded kernel image.
    pub kernel_image_start: U64,
    /// End (exclusive) of the loaded kernel image.
    pub kernel_image_end: U64,
    /// TLS template start (all TLS fields 0: no TLS).
    pub tls_start: U64,
    /// TLS `p_filesz`.
    pub tls_filesz: U64,
    /// TLS `p_memsz`.
    pub tls_memsz: U64,
    /// TLS `p_align`.
    pub tls_align: U64,
    /// Platform discriminant ([`PLATFORM_UHYVE`]).
    pub platform: U32,
    /// Padding (the variant union is 8-aligned).
    pub pad1: [u8; 4],
    /// Whether Hermit should probe PCI (0 or 1).
    pub has_pci: u8,
    /// Padding.
    pub pad2: [u8; 7],
    /// Number of vCPUs (`NonZeroU64`).
    pub num_cpus: U64,
    /// TSC frequency in kHz (`Option<NonZeroU32>`; 0 = unknown). Patched by the monitor.
    pub cpu_freq_khz: U32,
    /// Padding.
    pub pad3: [u8; 4],
    /// Boot time: nanoseconds since the Unix epoch as a little-endian `i128`.
    pub boot_time_ns: I128,
}

/// Size of the block.
pub const BOOT_INFO_SIZE: usize = core::mem::size_of::<HermitBootInfo>();
/// Offset of [`HermitBootInfo::cpu_freq_khz`]: a little-endian u32 in kHz, 0 = unknown.
pub const TSC_KHZ_OFFSET: u64 = offset_of!(HermitBootInfo, cpu_freq_khz) as u64;
/// Guest-physical address of the TSC frequency (what the table's `patch_tsc_khz_gpa`
/// should hold for a Hermit sandbox; same format as the bare runtime's).
pub const TSC_KHZ_GPA: u64 = BOOT_INFO_GPA + TSC_KHZ_OFFSET;
/// Offset of [`HermitBootInfo::boot_time_ns`]: a little-endian **i128 of nanoseconds**
/// since the epoch (16 bytes), not the bare runtime's u64 of microseconds.
pub const BOOT_TIME_OFFSET: u64 = offset_of!(HermitBootInfo, boot_time_ns) as u64;
/// Guest-physical address of the boot time.
pub const BOOT_TIME_GPA: u64 = BOOT_INFO_GPA + BOOT_TIME_OFFSET;

/// What goes into a Hermit boot information block.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BootInfoParams {
    /// Guest RAM is `[0, ram_size)`.
    pub ram_size: u64,
    /// Guest-physical address of the FDT.
    pub fdt_gpa: u64,
    /// The loaded kernel image, `[start, end)`.
    pub image: (u64, u64),
    /// TLS template of the image, if it has one.
    pub tls: Option<TlsTemplate>,
    /// Number of vCPUs (at least 1).
    pub num_cpus: u64,
    /// The sandbox owns PCI functions: Hermit scans the bus (through ports 0xCF8/0xCFC,
    /// which the monitor serves from the sandbox's virtual configuration space). Without
    /// it, Hermit under uhyve never touches PCI.
    pub has_pci: bool,
}

/// An image's TLS template (its `PT_TLS` program header, relocated).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TlsTemplate {
    /// Start address.
    pub start: u64,
    /// Initialized bytes.
    pub filesz: u64,
    /// Whole size.
    pub memsz: u64,
    /// Alignment.
    pub align: u64,
}

/// COM1: Hermit unwraps the serial port base, so it must be set; in uhyve mode the kernel
/// never touches the port (its log goes out by hypercall).
const SERIAL_PORT_BASE: u16 = 0x3f8;

/// The boot information block for `p`. TSC frequency and boot time are left 0 (unknown)
/// for the monitor to patch at [`TSC_KHZ_OFFSET`] and [`BOOT_TIME_OFFSET`].
pub fn boot_info(p: &BootInfoParams) -> HermitBootInfo {
    let tls = p.tls.unwrap_or(TlsTemplate {
        start: 0,
        filesz: 0,
        memsz: 0,
        align: 0,
    });
    HermitBootInfo {
        phys_addr_start: 0.into(),
        phys_addr_end: p.ram_size.into(),
        serial_port_base: SERIAL_PORT_BASE.into(),
        pad0: [0; 6],
        device_tree: p.fdt_gpa.into(),
        kernel_image_start: p.image.0.into(),
        kernel_image_end: p.image.1.into(),
        tls_start: tls.start.into(),
        tls_filesz: tls.filesz.into(),
        tls_memsz: tls.memsz.into(),
        tls_align: tls.align.into(),
        platform: PLATFORM_UHYVE.into(),
        pad1: [0; 4],
        has_pci: u8::from(p.has_pci),
        pad2: [0; 7],
        num_cpus: p.num_cpus.max(1).into(),
        cpu_freq_khz: 0.into(),
        pad3: [0; 4],
        boot_time_ns: 0.into(),
    }
}

#[cfg(all(test, target_arch = "x86_64"))]
mod tests {
    use super::*;
    use hermit_entry::boot_info::{BootInfo, PlatformInfo, RawBootInfo};

    fn sample() -> HermitBootInfo {
        boot_info(&BootInfoParams {
            ram_size: 64 << 20,
            fdt_gpa: 0x5000,
            image: (0x40000, 0x12_3456),
            tls: Some(TlsTemplate {
                start: 0x9_8000,
                filesz: 0x20,
                memsz: 0x7c,
                align: 8,
            }),
            num_cpus: 2,
            has_pci: false,
        })
    }

    /// Reads our bytes the way the kernel does (`RawBootInfo` -> `BootInfo`).
    fn as_hermit_sees_it(info: &HermitBootInfo) -> BootInfo {
        let bytes = info.as_bytes();
        // The fields whose bit patterns are restricted: the enum tag, the bool and the
        // NonZeroU64. Check them before reinterpreting.
        assert_eq!(info.platform.get(), PLATFORM_UHYVE);
        assert!(info.has_pci <= 1);
        assert_ne!(info.num_cpus.get(), 0);
        assert_eq!(bytes.len(), core::mem::size_of::<RawBootInfo>());
        // SAFETY: `bytes` is exactly `size_of::<RawBootInfo>()` initialized bytes,
        // `read_unaligned` has no alignment requirement, and the only fields with invalid
        // bit patterns (enum tag, bool, NonZeroU64) were checked just above; every other
        // field is a plain integer or an `Option<NonZero*>` (any value is valid).
        let raw: RawBootInfo = unsafe { core::ptr::read_unaligned(bytes.as_ptr().cast()) };
        BootInfo::from(raw)
    }

    #[test]
    fn layout_matches_hermit_entry() {
        assert_eq!(BOOT_INFO_SIZE, core::mem::size_of::<RawBootInfo>());
        assert_eq!(BOOT_INFO_SIZE, 128);
        assert_eq!(TSC_KHZ_OFFSET, 104);
        assert_eq!(BOOT_TIME_OFFSET, 112);
        assert_eq!(BOOT_TIME_GPA, quest_abi::layout::HERMIT_BOOT_TIME_NS_GPA);
        assert_eq!(TSC_KHZ_GPA, quest_abi::layout::HERMIT_TSC_KHZ_GPA);
        assert_eq!(TSC_KHZ_GPA, BOOT_INFO_GPA + 104);
    }

    #[test]
    fn hermit_entry_reads_back_every_field() {
        let info = as_hermit_sees_it(&sample());
        assert_eq!(info.hardware_info.phys_addr_range, 0..64 << 20);
        assert_eq!(info.hardware_info.serial_port_base.unwrap().get(), 0x3f8);
        assert_eq!(info.hardware_info.device_tree.unwrap().get(), 0x5000);
        assert_eq!(info.load_info.kernel_image_addr_range, 0x40000..0x12_3456);
        let tls = info.load_info.tls_info.unwrap();
        assert_eq!(
            (tls.start, tls.filesz, tls.memsz, tls.align),
            (0x9_8000, 0x20, 0x7c, 8)
        );
        match info.platform_info {
            PlatformInfo::Uhyve {
                has_pci,
                num_cpus,
                cpu_freq,
                boot_time,
            } => {
                assert!(!has_pci);
                assert_eq!(num_cpus.get(), 2);
                assert_eq!(cpu_freq, None);
                assert_eq!(boot_time.unix_timestamp_nanos(), 0);
            }
            other => panic!("wrong platform {other:?}"),
        }
    }

    #[test]
    fn no_tls_reads_back_as_none() {
        let mut p = BootInfoParams {
            ram_size: 4 << 20,
            fdt_gpa: 0x5000,
            image: (0x40000, 0x50000),
            tls: None,
            num_cpus: 0,
            has_pci: false,
        };
        let info = as_hermit_sees_it(&boot_info(&p));
        assert!(info.load_info.tls_info.is_none());
        // num_cpus 0 is clamped: Hermit needs a NonZeroU64.
        assert!(
            matches!(info.platform_info, PlatformInfo::Uhyve { num_cpus, .. } if num_cpus.get() == 1)
        );
        p.num_cpus = 3;
        assert!(
            matches!(as_hermit_sees_it(&boot_info(&p)).platform_info, PlatformInfo::Uhyve { num_cpus, .. } if num_cpus.get() == 3)
        );
    }

    #[test]
    fn has_pci_reads_back_as_hermit_s_flag() {
        for pci in [false, true] {
            let p = BootInfoParams {
                ram_size: 64 << 20,
                fdt_gpa: 0x5000,
                image: (0x40000, 0x50000),
                tls: None,
                num_cpus: 1,
                has_pci: pci,
            };
            assert_eq!(boot_info(&p).has_pci, u8::from(pci));
            // What `is_uhyve_with_pci` matches on.
            assert!(matches!(
                as_hermit_sees_it(&boot_info(&p)).platform_info,
                PlatformInfo::Uhyve { has_pci, .. } if has_pci == pci
            ));
        }
    }

    #[test]
    fn patching_the_recorded_offsets_sets_frequency_and_boot_time() {
        let mut bytes = sample().as_bytes().to_vec();
        let khz: u32 = 2_345_678;
        let t = TSC_KHZ_OFFSET as usize;
        bytes[t..t + 4].copy_from_slice(&khz.to_le_bytes());
        let ns: i128 = 1_700_000_000_123_456_789;
        let b = BOOT_TIME_OFFSET as usize;
        bytes[b..b + 16].copy_from_slice(&ns.to_le_bytes());
        let patched = HermitBootInfo::read_from_bytes(&bytes).unwrap();
        match as_hermit_sees_it(&patched).platform_info {
            PlatformInfo::Uhyve {
                cpu_freq,
                boot_time,
                ..
            } => {
                assert_eq!(cpu_freq.unwrap().get(), khz);
                assert_eq!(boot_time.unix_timestamp_nanos(), ns);
            }
            other => panic!("wrong platform {other:?}"),
        }
    }
}
