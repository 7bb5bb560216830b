//! Every fixed guest-physical address Quest uses, one doc line each.
//!
//! Guest-physical layouts are static: fixed by the plan and identical on every machine.
//! Host-physical placement is chosen by the monitor at boot, and EPT joins the two, so a
//! sandbox can later move to other memory without noticing.
//!
//! Low memory follows the layout Hermit's own hypervisor (uhyve) uses, so both runtimes
//! share one boot path.

/// GDT used at launch (null, 64-bit code, data).
pub const GDT_GPA: u64 = 0x1000;
/// Flattened device tree (Hermit sandboxes).
pub const FDT_GPA: u64 = 0x5000;
/// Largest FDT that fits before the boot info.
pub const FDT_MAX_SIZE: u64 = BOOT_INFO_GPA - FDT_GPA;
/// Boot information block (`RawBootInfo` for Hermit, [`crate::bootinfo::BootInfo`] for bare).
pub const BOOT_INFO_GPA: u64 = 0x9000;
/// Argument block of a bare sandbox (`args`, then `env`; see [`crate::bootinfo`]).
pub const BARE_ARGS_GPA: u64 = 0xA000;
/// Largest argument block (it ends where the page tables start).
pub const BARE_ARGS_MAX_SIZE: u64 = PAGE_TABLES_GPA - BARE_ARGS_GPA;
/// Initial PML4; the page-table pages that follow it lie below [`PAGE_TABLES_END`].
pub const PAGE_TABLES_GPA: u64 = 0x10000;
/// End (exclusive) of the page-table area.
pub const PAGE_TABLES_END: u64 = 0x38000;
/// Hermit's boot stack (grows down from [`HERMIT_KERNEL_GPA`]).
pub const HERMIT_BOOT_STACK_GPA: u64 = 0x38000;
/// Hermit's `RawBootInfo` field the monitor patches with the TSC frequency (kHz, u32).
pub const HERMIT_TSC_KHZ_GPA: u64 = BOOT_INFO_GPA + 104;
/// Hermit's `RawBootInfo` boot time (i128 ns since the epoch; the monitor patches the low
/// u64, the high half is zero).
pub const HERMIT_BOOT_TIME_NS_GPA: u64 = BOOT_INFO_GPA + 112;
/// Where the Hermit kernel image is loaded.
pub const HERMIT_KERNEL_GPA: u64 = 0x40000;
/// Where a bare application image is loaded.
pub const BARE_IMAGE_GPA: u64 = 0x20_0000;
/// Stack size of each bare vCPU; stacks lie at the top of RAM, vCPU 0 highest.
pub const BARE_STACK_SIZE: u64 = 0x1_0000;
/// The MP-table scan areas Hermit reads (must be backed by RAM, i.e. RAM >= 1 MiB).
pub const MP_SCAN_AREAS: [(u64, u64); 2] = [(0x9_F000, 0xA_0000), (0xF_0000, 0x10_0000)];
/// Start of the channel window: the channel directory, then every channel this sandbox
/// is an endpoint of. Far above any RAM a sandbox can have, below a 39-bit address space.
pub const CHANNEL_WINDOW_GPA: u64 = 0x40_0000_0000;
/// Size of the channel window (the most channel memory one sandbox may map).
pub const CHANNEL_WINDOW_SIZE: u64 = 0x4000_0000;
/// The channel directory, at the start of the window (read-only for the guest).
pub const DIRECTORY_GPA: u64 = CHANNEL_WINDOW_GPA;
/// Size of the channel directory.
pub const DIRECTORY_SIZE: u64 = 0x1000;
/// Size of a channel's acknowledgement area (reader-writable).
pub const CHANNEL_ACK_SIZE: u64 = 0x1000;
/// Largest guest RAM a sandbox may have (RAM must end below the channel window).
pub const MAX_RAM: u64 = CHANNEL_WINDOW_GPA;
/// The calibration page(s) ([`crate::calibration`]), read-only in every sandbox: just past
/// the channel window, so it never meets RAM or a channel.
pub const CALIBRATION_GPA: u64 = CHANNEL_WINDOW_GPA + CHANNEL_WINDOW_SIZE;
/// Size of the calibration area.
pub const CALIBRATION_SIZE: u64 = crate::calibration::CALIBRATION_SIZE as u64;

const _: () = {
    assert!(CALIBRATION_GPA % 0x1000 == 0 && CALIBRATION_SIZE % 0x1000 == 0);
    assert!(CALIBRATION_GPA >= MAX_RAM);
    // Below a 39-bit guest-physical address space, like the channel window.
    assert!(CALIBRATION_GPA + CALIBRATION_SIZE <= 1 << 39);
};
