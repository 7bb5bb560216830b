//! A sandbox's fixed guest-physical boot layout, per runtime.
//!
//! Every address comes from [`quest_abi::layout`]; which of them a runtime uses, where
//! each vCPU's stack starts and which boot-info fields the monitor patches at launch is
//! up to the runtime's module ([`crate::runtime`]).

use super::types::{BootLayout, RegionPlan, VcpuPlan};
use quest_abi::{GuestPhysAddr, RegionKind, Runtime, ACCESS_EXEC, ACCESS_READ, ACCESS_WRITE};

/// The fixed boot addresses of a sandbox running `runtime`; `has_channels` adds the
/// channel directory. The runtime's module decides them.
pub fn boot_layout(runtime: Runtime, has_channels: bool) -> BootLayout {
    crate::runtime::of(runtime).boot_layout(has_channels)
}

/// Initial stack pointer of vCPU `index` in a sandbox with `ram_size` bytes of RAM, as
/// the runtime's module decides it.
pub fn stack_top(runtime: Runtime, ram_size: u64, index: u32) -> u64 {
    crate::runtime::of(runtime).stack_top(ram_size, index)
}

/// The vCPUs of a sandbox: vCPU `i` runs on `cores[i]` and stands by on `standby[i]`
/// (none when `standby` is shorter).
pub fn vcpus(runtime: Runtime, ram_size: u64, cores: &[u32], standby: &[u32]) -> Vec<VcpuPlan> {
    cores
        .iter()
        .zip(0u32..)
        .map(|(&core, index)| VcpuPlan {
            index,
            core,
            standby_core: standby.get(index as usize).copied(),
            stack_top: stack_top(runtime, ram_size, index),
        })
        .collect()
}

/// The sandbox's private RAM: guest-physical `[0, ram_size)`, readable, writable and
/// executable.
pub fn ram_region(ram_size: u64) -> RegionPlan {
    RegionPlan {
        kind: RegionKind::Ram,
        gpa: GuestPhysAddr::ZERO,
        size: ram_size,
        access: ACCESS_READ | ACCESS_WRITE | ACCESS_EXEC,
        channel: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use quest_abi::bootinfo::BootInfo;
    use quest_abi::layout::{
        BARE_IMAGE_GPA, BARE_STACK_SIZE, BOOT_INFO_GPA, HERMIT_BOOT_STACK_GPA, HERMIT_KERNEL_GPA,
    };
    use zerocopy::FromZeros;
    use zerocopy::IntoBytes;

    #[test]
    fn bare_patch_addresses_land_on_boot_info_fields() {
        let b = boot_layout(Runtime::Bare, false);
        let mut info = BootInfo::new_zeroed();
        info.tsc_khz = 0xaabb_ccdd.into();
        info.launch_count = 0x1234_5678.into();
        info.boot_time_us = 0x0102_0304_0506_0708.into();
        let bytes = info.as_bytes();
        let at = |gpa: Option<GuestPhysAddr>, len: usize| {
            let off = gpa.unwrap().checked_offset_from(b.boot_info_gpa).unwrap() as usize;
            bytes[off..off + len].to_vec()
        };
        assert_eq!(at(b.patch_tsc_khz_gpa, 4), 0xaabb_ccddu32.to_le_bytes());
        assert_eq!(
            at(b.patch_launch_count_gpa, 4),
            0x1234_5678u32.to_le_bytes()
        );
        assert_eq!(
            at(b.patch_boot_time_gpa, 8),
            0x0102_0304_0506_0708u64.to_le_bytes()
        );
        assert_eq!(b.directory_gpa, None);
        assert_eq!(b.image_gpa, GuestPhysAddr::new(BARE_IMAGE_GPA));
    }

    #[test]
    fn hermit_layout_patches_raw_boot_info_and_directory_follows_channels() {
        let h = boot_layout(Runtime::Hermit, true);
        assert_eq!(h.image_gpa, GuestPhysAddr::new(HERMIT_KERNEL_GPA));
        assert_eq!(
            h.directory_gpa,
            Some(GuestPhysAddr::new(quest_abi::layout::DIRECTORY_GPA))
        );
        assert_eq!(
            h.patch_tsc_khz_gpa,
            Some(GuestPhysAddr::new(BOOT_INFO_GPA + 104))
        );
        assert_eq!(
            h.patch_boot_time_ns_gpa,
            Some(GuestPhysAddr::new(BOOT_INFO_GPA + 112))
        );
        assert_eq!(h.patch_boot_time_gpa, None);
        assert_eq!(h.patch_launch_count_gpa, None);
        assert_eq!(boot_layout(Runtime::Hermit, false).directory_gpa, None);
    }

    #[test]
    fn bare_stacks_are_disjoint_at_the_top_of_ram() {
        let ram = 8 << 20;
        let v = vcpus(Runtime::Bare, ram, &[3, 1, 2], &[]);
        assert_eq!(v.iter().map(|v| v.core).collect::<Vec<_>>(), [3, 1, 2]);
        assert_eq!(v.iter().map(|v| v.index).collect::<Vec<_>>(), [0, 1, 2]);
        assert_eq!(v[0].stack_top, ram);
        assert_eq!(v[1].stack_top, ram - BARE_STACK_SIZE);
        assert_eq!(v[2].stack_top, ram - 2 * BARE_STACK_SIZE);
    }

    #[test]
    fn hermit_vcpus_share_the_boot_stack_below_the_kernel() {
        let v = vcpus(Runtime::Hermit, 64 << 20, &[0, 1], &[]);
        // Hermit's `_start` takes RSP as the base of its boot stack and adds the size.
        assert!(v.iter().all(|v| v.stack_top == HERMIT_BOOT_STACK_GPA));
    }

    #[test]
    fn stack_top_saturates_instead_of_wrapping() {
        assert_eq!(stack_top(Runtime::Bare, 0x1000, 5), 0);
        assert_eq!(stack_top(Runtime::Bare, 0x1000, u32::MAX), 0);
    }
}
