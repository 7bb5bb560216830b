//! The boot information block a `bare` sandbox finds at [`crate::layout::BOOT_INFO_GPA`]
//! (RDI at entry points to it).
//!
//! # Argument block
//! The manifest's `args` and `env` reach a bare application as one block ([`crate::args`]) at
//! [`crate::layout::BARE_ARGS_GPA`] (named by [`BootInfo::args_gpa`]): `argc` arguments,
//! then `envc` environment entries written `KEY=VALUE`, each UTF-8 and terminated by one
//! NUL byte, `args_size` bytes in all (at most [`crate::layout::BARE_ARGS_MAX_SIZE`]).

use crate::table::{MAX_VCPUS_PER_SANDBOX, NAME_LEN};
use zerocopy::little_endian::{U16, U32, U64};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout, Unaligned};

/// [`BootInfo::magic`].
pub const BOOT_INFO_MAGIC: [u8; 8] = *b"QUESTBI\0";
/// [`BootInfo::version`].
pub const BOOT_INFO_VERSION: u32 = 1;

/// What a bare sandbox is told at entry. Built by the host; `tsc_khz` and
/// `boot_time_us` are patched in by the monitor at launch.
#[derive(Clone, Copy, Debug, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
#[repr(C)]
pub struct BootInfo {
    /// [`BOOT_INFO_MAGIC`].
    pub magic: [u8; 8],
    /// [`BOOT_INFO_VERSION`].
    pub version: U32,
    /// Index of this sandbox in the partition table.
    pub sandbox_index: U32,
    /// Sandbox name.
    pub name: [u8; NAME_LEN],
    /// Number of vCPUs (RSI at entry is this vCPU's index).
    pub num_vcpus: U32,
    /// TSC frequency in kHz (patched by the monitor at launch).
    pub tsc_khz: U32,
    /// How many times this sandbox has been launched: 1 at first boot, 2 after the
    /// first restart, ... (patched by the monitor at launch).
    pub launch_count: U32,
    /// Reserved, zero.
    pub reserved: U32,
    /// Boot time in microseconds since the Unix epoch (patched by the monitor; 0 = unknown).
    pub boot_time_us: U64,
    /// Guest RAM size in bytes.
    pub ram_size: U64,
    /// First byte of the loaded image.
    pub image_start: U64,
    /// First byte after the loaded image (and its .bss).
    pub image_end: U64,
    /// Heap start (page-aligned, after the image).
    pub heap_start: U64,
    /// Heap end (below the stacks).
    pub heap_end: U64,
    /// Stack size of each vCPU.
    pub stack_size: U64,
    /// Guest-physical address of the channel directory (0: no channels).
    pub directory_gpa: U64,
    /// Logical core index of each vCPU.
    pub cores: [U32; MAX_VCPUS_PER_SANDBOX],
    /// Guest-physical address of the argument block (see the [argument block](self#argument-block);
    /// 0: none).
    pub args_gpa: U64,
    /// Size of the argument block in bytes.
    pub args_size: U32,
    /// Number of arguments in the block.
    pub argc: U16,
    /// Number of environment entries in the block (they follow the arguments).
    pub envc: U16,
}

/// Offset of [`BootInfo::tsc_khz`] inside the block (the monitor patches it).
pub const TSC_KHZ_OFFSET: u64 = 8 + 4 + 4 + NAME_LEN as u64 + 4;
/// Offset of [`BootInfo::boot_time_us`] inside the block.
pub const BOOT_TIME_OFFSET: u64 = TSC_KHZ_OFFSET + 12;
/// Offset of [`BootInfo::launch_count`] inside the block.
pub const LAUNCH_COUNT_OFFSET: u64 = TSC_KHZ_OFFSET + 4;

#[cfg(test)]
mod tests {
    use super::*;
    use zerocopy::FromZeros;

    #[test]
    fn boot_info_ends_before_the_argument_block() {
        use crate::layout::{BARE_ARGS_GPA, BOOT_INFO_GPA};
        let size = core::mem::size_of::<BootInfo>() as u64;
        assert!(
            BOOT_INFO_GPA + size <= BARE_ARGS_GPA,
            "BootInfo is {size} bytes"
        );
    }

    #[test]
    fn patch_offsets_match_the_struct() {
        let mut info = BootInfo::new_zeroed();
        info.tsc_khz = 0x1122_3344.into();
        info.boot_time_us = 0x5566_7788_99aa_bbcc.into();
        info.launch_count = 0xdead_beef.into();
        let bytes = info.as_bytes();
        let t = TSC_KHZ_OFFSET as usize;
        assert_eq!(&bytes[t..t + 4], &0x1122_3344u32.to_le_bytes());
        let l = LAUNCH_COUNT_OFFSET as usize;
        assert_eq!(&bytes[l..l + 4], &0xdead_beefu32.to_le_bytes());
        let b = BOOT_TIME_OFFSET as usize;
        assert_eq!(&bytes[b..b + 8], &0x5566_7788_99aa_bbccu64.to_le_bytes());
    }
}
