//! The `bare` runtime: a `no_std` application on Quest's own runtime (`quest-rt`), built
//! for `x86_64-unknown-none` and started directly at its entry point.
//!
//! - [`elf`]: loading and relocating the application ELF.
//! - [`memory`]: the sandbox's initial memory (GDT, page tables, boot info, arguments,
//!   channel directory, the loaded application).

pub mod elf;
pub mod memory;
#[cfg(test)]
pub(crate) mod testing;

pub use memory::{page_tables, prepare, BareError};

use super::{BuildContext, RuntimeError, SandboxRuntime};
use crate::build;
use crate::plan::{BootLayout, Plan, SandboxImage, SandboxPlan};
use quest_abi::bootinfo::{BOOT_TIME_OFFSET, LAUNCH_COUNT_OFFSET, TSC_KHZ_OFFSET};
use quest_abi::layout::{BARE_IMAGE_GPA, BARE_STACK_SIZE, BOOT_INFO_GPA};
use quest_abi::{GuestPhysAddr, Runtime};
use std::path::PathBuf;

/// Smallest RAM a bare sandbox runs in: image at 2 MiB, stack, heap.
pub const MIN_MEMORY: u64 = 4 << 20;

/// The bare runtime.
#[derive(Clone, Copy, Debug)]
pub struct Bare;

impl SandboxRuntime for Bare {
    fn name(&self) -> &'static str {
        "bare"
    }

    fn min_memory(&self) -> u64 {
        MIN_MEMORY
    }

    fn boot_layout(&self, has_channels: bool) -> BootLayout {
        BootLayout {
            patch_tsc_khz_gpa: Some(GuestPhysAddr::new(BOOT_INFO_GPA + TSC_KHZ_OFFSET)),
            patch_boot_time_gpa: Some(GuestPhysAddr::new(BOOT_INFO_GPA + BOOT_TIME_OFFSET)),
            patch_launch_count_gpa: Some(GuestPhysAddr::new(BOOT_INFO_GPA + LAUNCH_COUNT_OFFSET)),
            ..BootLayout::fixed(BARE_IMAGE_GPA, has_channels)
        }
    }

    /// Stacks are [`BARE_STACK_SIZE`] each at the top of RAM, vCPU 0 highest.
    fn stack_top(&self, ram_size: u64, vcpu: u32) -> u64 {
        ram_size.saturating_sub(u64::from(vcpu).saturating_mul(BARE_STACK_SIZE))
    }

    fn build_app(
        &self,
        ctx: &BuildContext<'_>,
        sandbox: &SandboxPlan,
    ) -> Result<PathBuf, RuntimeError> {
        Ok(build::build_app(ctx.ws, &sandbox.app_dir, ctx.progress)?)
    }

    fn initial_memory(
        &self,
        plan: &Plan,
        sandbox: usize,
        app: &[u8],
    ) -> Result<SandboxImage, RuntimeError> {
        debug_assert_eq!(
            plan.sandboxes.get(sandbox).map(|s| s.runtime),
            Some(Runtime::Bare)
        );
        prepare(plan, sandbox, app).map_err(RuntimeError::runtime)
    }
}
