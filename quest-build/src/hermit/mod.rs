//! Hermit sandboxes: an ordinary std package becomes a Hermit unikernel, and its whole
//! initial guest memory is prepared here, at build time.
//!
//! - [`toolchain`]: the nightly Hermit 0.11 needs, installed when missing.
//! - [`kernel`]: hermit-kernel 0.11.0 from crates.io, built once per feature set,
//!   post-processed by [`postprocess`] (symbol prefixing, [`archive`] OS/ABI patch).
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

pub use kernel::KernelConfig;

use crate::plan::{Plan, SandboxImage};
use anyhow::Context;
use quest_abi::Runtime;
use std::path::{Path, PathBuf};

/// Receives progress lines: a verb (`Compiling`, `Installing`, ...) and what it is about.
pub type Progress<'a> = &'a dyn Fn(&str, &str);

/// Where Hermit build outputs go (under `images/hermit/`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HermitDirs {
    /// The root, `images/hermit`.
    pub root: PathBuf,
}

impl HermitDirs {
    /// `images/hermit` of the Quest checkout this tool was built from, or of `$QUEST_ROOT`
    /// if set (the same convention as the rest of the build).
    pub fn locate() -> Self {
        let quest_root = match std::env::var_os("QUEST_ROOT") {
            Some(dir) => PathBuf::from(dir),
            None => Path::new(env!("CARGO_MANIFEST_DIR"))
                .parent()
                .map_or_else(|| PathBuf::from("."), Path::to_path_buf),
        };
        Self::at(quest_root.join("images").join("hermit"))
    }

    /// Outputs under `root`.
    pub fn at(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    /// The generated package that makes cargo download the kernel source.
    pub fn kernel_source_wrapper(&self) -> PathBuf {
        self.root.join("kernel-source")
    }

    /// Cargo's target directory for kernel builds.
    pub fn kernel_target(&self) -> PathBuf {
        self.root.join("kernel-target")
    }

    /// The processed kernel for `config`.
    pub fn kernel_dir(&self, config: KernelConfig) -> PathBuf {
        self.root.join("kernel").join(config.name())
    }
}

/// What building one Hermit sandbox produced, beyond its memory image.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HermitBuild {
    /// Entry point and initial memory.
    pub image: SandboxImage,
    /// The unikernel ELF (kernel and application linked together).
    pub elf: PathBuf,
    /// The kernel configuration it was linked with.
    pub kernel: KernelConfig,
}

/// Serialises Hermit builds within this process.
static BUILDS: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Builds Hermit sandbox `sandbox` of `plan`: its unikernel and its initial memory.
pub fn build_sandbox(
    plan: &Plan,
    sandbox: usize,
    progress: &dyn Fn(&str, &str),
) -> anyhow::Result<SandboxImage> {
    Ok(build_sandbox_in(&HermitDirs::locate(), plan, sandbox, progress)?.image)
}

/// [`build_sandbox`] with outputs under `dirs`, also returning the ELF's path.
pub fn build_sandbox_in(
    dirs: &HermitDirs,
    plan: &Plan,
    sandbox: usize,
    progress: Progress<'_>,
) -> anyhow::Result<HermitBuild> {
    let sb = plan
        .sandboxes
        .get(sandbox)
        .with_context(|| format!("the plan has no sandbox {sandbox}"))?;
    if sb.runtime != Runtime::Hermit {
        anyhow::bail!("sandbox {} does not use the Hermit runtime", sb.name);
    }
    // One Hermit build at a time in this process (parallel boot tests build the same
    // sandboxes): the second waits, then finds everything cached. Other processes are
    // kept apart by cargo's own locks and unique staging names.
    let _one_at_a_time = BUILDS.lock().unwrap_or_else(|e| e.into_inner());
    let toolchain = toolchain::ensure(progress)?;
    let config = KernelConfig::for_cores(sb.vcpus.len());
    let kernel = kernel::kernel_archive(&toolchain, config, dirs, progress)?;
    let target_dir = app::target_dir_for(dirs, &config.name());
    let elf = app::build_app(&toolchain, &sb.app_dir, &kernel, &target_dir, progress)
        .with_context(|| format!("building sandbox {}", sb.name))?;
    let bytes = std::fs::read(&elf).with_context(|| format!("reading {}", elf.display()))?;
    let image = memory::initial_memory(plan, sandbox, &bytes)?;
    Ok(HermitBuild {
        image,
        elf,
        kernel: config,
    })
}
