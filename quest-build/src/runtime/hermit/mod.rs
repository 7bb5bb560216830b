//! The `hermit` runtime: an ordinary std package becomes a Hermit unikernel, and its
//! whole initial guest memory is prepared here, at build time.
//!
//! - [`toolchain`]: the nightly Hermit 0.11 needs, installed when missing.
//! - [`kernel`]: hermit-kernel 0.11.0 from crates.io, built once per configuration (the
//!   `smp` kernel serves every sandbox without a network card), post-processed by [`postprocess`] (symbol prefixing, [`archive`]
//!   OS/ABI patch).
//! - [`app`]: the user's package for `x86_64-unknown-hermit`, linked with that kernel.
//! - [`load`]: `hermit-entry` loads and relocates the result at
//!   [`quest_abi::layout::HERMIT_KERNEL_GPA`].
//! - [`memory`]: GDT, [`page_tables`], [`fdt`] with [`bootargs`], [`bootinfo`] and the
//!   image, as the payloads of a [`SandboxImage`].

pub mod app;
pub mod archive;
pub mod bootargs;
pub mod bootinfo;
pub mod fdt;
pub mod kernel;
pub mod load;
pub mod memory;
pub mod page_tables;
pub mod postprocess;
pub mod toolchain;

use super::{BuildContext, RuntimeError, SandboxRuntime};
use crate::build::{BuildError, Progress, Workspace};
use crate::plan::{BootLayout, Plan, SandboxImage, SandboxPlan};
pub use kernel::KernelConfig;
use memory::MemoryError;
use quest_abi::layout::{
    HERMIT_BOOT_STACK_GPA, HERMIT_BOOT_TIME_NS_GPA, HERMIT_KERNEL_GPA, HERMIT_TSC_KHZ_GPA,
};
use quest_abi::{GuestPhysAddr, Runtime};
use std::path::{Path, PathBuf};

/// Smallest RAM a Hermit sandbox runs in: kernel, application and its heap.
pub const MIN_MEMORY: u64 = 32 << 20;

/// The Hermit runtime.
#[derive(Clone, Copy, Debug)]
pub struct Hermit;

impl SandboxRuntime for Hermit {
    fn name(&self) -> &'static str {
        "hermit"
    }

    fn min_memory(&self) -> u64 {
        MIN_MEMORY
    }

    /// Hermit reads uhyve's `RawBootInfo`: the monitor patches its TSC frequency and its
    /// boot time (nanoseconds). Hermit has no notion of a launch count.
    fn boot_layout(&self, has_channels: bool) -> BootLayout {
        BootLayout {
            patch_tsc_khz_gpa: Some(GuestPhysAddr::new(HERMIT_TSC_KHZ_GPA)),
            patch_boot_time_ns_gpa: Some(GuestPhysAddr::new(HERMIT_BOOT_TIME_NS_GPA)),
            ..BootLayout::fixed(HERMIT_KERNEL_GPA, has_channels)
        }
    }

    /// Every vCPU starts with RSP at the *base* of the boot stack,
    /// [`HERMIT_BOOT_STACK_GPA`]: Hermit's `_start` adds the stack size itself (as under
    /// uhyve), ending below the kernel.
    fn stack_top(&self, _ram_size: u64, _vcpu: u32) -> u64 {
        HERMIT_BOOT_STACK_GPA
    }

    fn build_app(
        &self,
        ctx: &BuildContext<'_>,
        sandbox: &SandboxPlan,
    ) -> Result<PathBuf, RuntimeError> {
        build_unikernel(
            &HermitDirs::of(ctx.ws),
            &sandbox.app_dir,
            KernelConfig::of(sandbox),
            ctx.progress,
        )
        .map_err(RuntimeError::from)
    }

    /// The kernel configuration: one application linked with two kernels is two builds.
    fn build_variant(&self, sandbox: &SandboxPlan) -> &'static str {
        KernelConfig::of(sandbox).name()
    }

    fn initial_memory(
        &self,
        plan: &Plan,
        sandbox: usize,
        app: &[u8],
    ) -> Result<SandboxImage, RuntimeError> {
        memory::initial_memory(plan, sandbox, app).map_err(|e| HermitError::from(e).into())
    }
}

/// Why a Hermit unikernel could not be built or loaded.
#[derive(Debug, thiserror::Error)]
pub enum HermitError {
    /// rustup could not be run, or failed to install the toolchain.
    #[error("rustup (is it installed and on PATH?): {0}")]
    Rustup(xshell::Error),
    /// The toolchain still lacks a component after installing it.
    #[error("{0} still lacks rust-src or llvm-tools after installing them")]
    Incomplete(&'static str),
    /// `rustc -vV` of the toolchain names no host.
    #[error("`rustc -vV` of {0} names no host")]
    NoHost(&'static str),
    /// `QUEST_HERMIT_LOG` is not a log level (the kernel would silently use `info`).
    #[error(
        "QUEST_HERMIT_LOG={0} is not a log level (use one of off, error, warn, info, debug, trace)"
    )]
    LogLevel(String),
    /// Cargo failed, or built no single executable.
    #[error(transparent)]
    Build(#[from] BuildError),
    /// The kernel's source could not be located through `cargo metadata`.
    #[error("finding hermit-kernel's source: {0}")]
    KernelSource(String),
    /// The kernel build reported no `libhermit.a`.
    #[error("cargo built hermit-kernel but reported no libhermit.a")]
    NoArchive,
    /// Post-processing the kernel archive failed.
    #[error("post-processing {path}: {source}")]
    Postprocess {
        /// The raw archive.
        path: PathBuf,
        /// Why.
        source: postprocess::PostprocessError,
    },
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The sandbox's initial memory could not be prepared.
    #[error(transparent)]
    Memory(#[from] MemoryError),
    /// The sandbox does not use the Hermit runtime.
    #[error("sandbox {0} does not use the Hermit runtime")]
    NotHermit(String),
}

impl HermitError {
    /// An I/O error on `path`.
    pub fn io(path: &Path) -> impl FnOnce(std::io::Error) -> Self + '_ {
        move |source| Self::Io {
            path: path.to_path_buf(),
            source,
        }
    }
}

impl From<HermitError> for RuntimeError {
    fn from(e: HermitError) -> Self {
        match e {
            HermitError::Build(b) => Self::Build(b),
            other => Self::runtime(other),
        }
    }
}

/// Where Hermit build outputs go: derived from the [`Workspace`] (`images/hermit/`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HermitDirs {
    /// The root, `images/hermit`.
    pub root: PathBuf,
}

impl HermitDirs {
    /// The Hermit outputs of workspace `ws`.
    pub fn of(ws: &Workspace) -> Self {
        Self {
            root: ws.hermit.clone(),
        }
    }

    /// The generated package that makes cargo download the kernel source.
    pub fn kernel_source_wrapper(&self) -> PathBuf {
        self.root.join("kernel-source")
    }

    /// Cargo's target directory for kernel builds (shared by every configuration: cargo
    /// keeps each feature set's artifacts apart, and the dependencies they share are
    /// compiled once).
    pub fn kernel_target(&self) -> PathBuf {
        self.root.join("kernel-target")
    }

    /// The processed kernel of `config`.
    pub fn kernel_dir(&self, config: KernelConfig) -> PathBuf {
        self.root.join("kernel").join(config.name())
    }
}

/// Serialises Hermit builds within this process.
static BUILDS: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Builds the std package in `app_dir` as a Hermit unikernel (linked with the kernel of
/// `config`) under `dirs`; returns the ELF's path.
pub fn build_unikernel(
    dirs: &HermitDirs,
    app_dir: &Path,
    config: KernelConfig,
    progress: &Progress,
) -> Result<PathBuf, HermitError> {
    // One Hermit build at a time in this process (parallel boot tests build the same
    // sandboxes): the second waits, then finds everything cached. Other processes are
    // kept apart by cargo's own locks and unique staging names.
    let _one_at_a_time = BUILDS.lock().unwrap_or_else(|e| e.into_inner());
    let toolchain = toolchain::ensure(dirs, progress)?;
    let kernel = kernel::kernel_archive(&toolchain, dirs, config, progress)?;
    app::build_app(
        &toolchain,
        app_dir,
        &kernel,
        &app::target_dir(dirs, config),
        progress,
    )
}

/// What building one Hermit sandbox produced.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HermitBuild {
    /// Entry point and initial memory.
    pub image: SandboxImage,
    /// The unikernel ELF (kernel and application linked together).
    pub elf: PathBuf,
}

/// Builds Hermit sandbox `sandbox` of `plan` with outputs in `ws`: its unikernel and its
/// initial memory (what `quest-build image` does for it, also returning the ELF's path).
pub fn build_sandbox(
    ws: &Workspace,
    plan: &Plan,
    sandbox: usize,
    progress: &Progress,
) -> Result<HermitBuild, HermitError> {
    let sb = plan.sandbox(sandbox).map_err(MemoryError::from)?;
    if sb.runtime != Runtime::Hermit {
        return Err(HermitError::NotHermit(sb.name.clone()));
    }
    let elf = build_unikernel(
        &HermitDirs::of(ws),
        &sb.app_dir,
        KernelConfig::of(sb),
        progress,
    )?;
    let bytes = std::fs::read(&elf).map_err(HermitError::io(&elf))?;
    let image = memory::initial_memory(plan, sandbox, &bytes)?;
    Ok(HermitBuild { image, elf })
}
