//! Sandbox runtimes: what turns a sandbox's Cargo package into its initial guest memory.
//!
//! Each runtime is one module behind one small interface, [`SandboxRuntime`]: the least
//! RAM it runs in, its fixed boot layout, building an application, and preparing a
//! sandbox's initial guest memory ([`SandboxImage`]) from the built application. The rest
//! of Quest asks [`of`] for the runtime of a sandbox and never branches on which one it is.
//!
//! - [`bare`]: Quest's own `no_std` runtime (`quest-rt`), built for `x86_64-unknown-none`.
//! - [`hermit`]: the Hermit library OS for ordinary std packages, booted as uhyve boots it.
//! - [`paging`]: guest identity page tables, shared by both.
//!
//! **Adding a runtime** takes one new module (`runtime/<name>/`, with a unit struct that
//! implements [`SandboxRuntime`]) and one registration line, its arm in [`of`]; the
//! compiler points at that `match` when `quest_abi::Runtime` gains a variant.

pub mod bare;
pub mod hermit;
pub mod paging;

use crate::build::{BuildError, Progress, Workspace};
use crate::plan::{BootLayout, Plan, SandboxImage, SandboxPlan};
use std::path::PathBuf;

pub use quest_abi::Runtime;

/// The runtime registered for `kind`: the one place that maps a runtime kind to its
/// module.
pub fn of(kind: Runtime) -> &'static dyn SandboxRuntime {
    match kind {
        Runtime::Bare => &bare::Bare,
        Runtime::Hermit => &hermit::Hermit,
    }
}

/// What building needs: where the checkout and the outputs are, and where progress goes.
#[derive(Clone, Copy, Debug)]
pub struct BuildContext<'a> {
    /// The checkout and its output directories.
    pub ws: &'a Workspace,
    /// Progress lines.
    pub progress: &'a Progress,
}

/// Why a runtime could not build an application or prepare a sandbox's memory.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    /// Cargo failed or produced no single executable.
    #[error(transparent)]
    Build(#[from] BuildError),
    /// The runtime's own reason (its module's error type says which).
    #[error(transparent)]
    Runtime(Box<dyn std::error::Error + Send + Sync>),
}

/// One sandbox runtime. Implementations are unit structs registered in [`of`].
pub trait SandboxRuntime: Sync {
    /// The runtime's name, as a manifest's `runtime` key spells it.
    fn name(&self) -> &'static str;

    /// The least RAM a sandbox of this runtime runs in.
    fn min_memory(&self) -> u64;

    /// The fixed guest-physical boot addresses of a sandbox (`has_channels` adds the
    /// channel directory).
    fn boot_layout(&self, has_channels: bool) -> BootLayout;

    /// The initial stack pointer of vCPU `vcpu` in a sandbox with `ram_size` bytes of
    /// RAM. Saturates instead of wrapping, so an impossible layout shows up as a
    /// validation error, never as a panic.
    fn stack_top(&self, ram_size: u64, vcpu: u32) -> u64;

    /// Builds the application package of `sandbox` (its `app_dir`; cached by cargo) and
    /// returns the path of the executable this runtime loads.
    fn build_app(
        &self,
        ctx: &BuildContext<'_>,
        sandbox: &SandboxPlan,
    ) -> Result<PathBuf, RuntimeError>;

    /// What besides the application package decides the executable [`build_app`]
    /// gives for `sandbox` (Hermit: the kernel configuration its devices need); sandboxes
    /// running one package share one build only when this is the same. Empty by default.
    ///
    /// [`build_app`]: Self::build_app
    fn build_variant(&self, _sandbox: &SandboxPlan) -> &'static str {
        ""
    }

    /// The initial guest memory of sandbox `sandbox` of `plan`, running the executable
    /// whose bytes are `app` (what [`build_app`](Self::build_app) produced).
    fn initial_memory(
        &self,
        plan: &Plan,
        sandbox: usize,
        app: &[u8],
    ) -> Result<SandboxImage, RuntimeError>;
}

impl std::fmt::Debug for dyn SandboxRuntime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "runtime {}", self.name())
    }
}

impl RuntimeError {
    /// A runtime's own error.
    pub fn runtime(e: impl std::error::Error + Send + Sync + 'static) -> Self {
        Self::Runtime(Box::new(e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every kind the partition table can hold has a runtime, registered under its own
    /// name (the manifest's spelling).
    #[test]
    fn every_runtime_kind_is_registered() {
        let kinds: Vec<Runtime> = (0..16).filter_map(Runtime::from_u32).collect();
        assert_eq!(kinds.len(), 2);
        let names: Vec<&str> = kinds.iter().map(|&k| of(k).name()).collect();
        assert_eq!(names, ["bare", "hermit"]);
    }
}
