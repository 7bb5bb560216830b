//! Building the Hermit kernel (`hermit-kernel` 0.11.0 from crates.io, the last source
//! release there) into a post-processed `libhermit.a`, once per feature set.
//!
//! Cargo itself downloads the crate: a generated one-line wrapper package depends on
//! `hermit-kernel = "=0.11.0"`, and `cargo metadata` on it fetches the source into cargo's
//! registry and says where it is. The kernel is then built in that source directory with
//! its own `Cargo.lock` (`--locked`) and the flags upstream's build tool uses. The
//! processed archive is cached under `images/hermit/kernel/<features>/`: a later build
//! with the same features runs no command at all.

use super::postprocess;
use super::toolchain::Toolchain;
use super::{HermitDirs, Progress};
use anyhow::{bail, Context};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Instant;

/// The kernel release Quest builds.
pub const KERNEL_VERSION: &str = "0.11.0";
/// The target the kernel is built for.
const KERNEL_TARGET: &str = "x86_64-unknown-none";
/// The kernel's log level when `QUEST_HERMIT_LOG` does not say otherwise: warnings and
/// errors only, so a sandbox's console shows its application's output, not the kernel's
/// boot chatter (`QUEST_HERMIT_LOG=info` brings that back).
pub const DEFAULT_LOG_LEVEL: &str = "warn";

/// The kernel log level to build with: `QUEST_HERMIT_LOG` (off, error, warn, info, debug,
/// trace) or [`DEFAULT_LOG_LEVEL`]. Anything else is refused, since the kernel would
/// silently fall back to `info`.
pub fn log_level() -> anyhow::Result<String> {
    let level = std::env::var("QUEST_HERMIT_LOG")
        .map(|l| l.trim().to_ascii_lowercase())
        .unwrap_or_else(|_| DEFAULT_LOG_LEVEL.to_owned());
    const LEVELS: [&str; 6] = ["off", "error", "warn", "info", "debug", "trace"];
    if !LEVELS.contains(&level.as_str()) {
        bail!(
            "QUEST_HERMIT_LOG={level} is not a log level (use one of {})",
            LEVELS.join(", ")
        );
    }
    Ok(level)
}

/// Which kernel a sandbox needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct KernelConfig {
    /// SMP support (the sandbox has more than one core).
    pub smp: bool,
}

impl KernelConfig {
    /// The kernel for a sandbox with `cores` cores: `smp` when there is more than one;
    /// no PCI, ACPI or network (a sandbox has none of those devices).
    pub fn for_cores(cores: usize) -> Self {
        Self { smp: cores > 1 }
    }

    /// Cargo features.
    pub fn features(&self) -> Vec<&'static str> {
        let mut f = Vec::new();
        if self.smp {
            f.push("smp");
        }
        f
    }

    /// A name for this configuration (directory names, progress lines).
    pub fn name(&self) -> String {
        let features = self.features();
        if features.is_empty() {
            "uni".to_owned()
        } else {
            features.join("-")
        }
    }

    /// Everything that decides the archive's contents; a cached archive is reused only
    /// if its stamp says exactly this.
    fn stamp(&self, toolchain: &Toolchain, log_level: &str) -> String {
        format!(
            "hermit-kernel {KERNEL_VERSION}\ntoolchain {}\ntarget {KERNEL_TARGET}\nfeatures {}\n\
             log {log_level}\nrustflags {}\nbuild-std core,alloc compiler-builtins-mem\n\
             postprocess prefix={} osabi={}\n",
            toolchain.name,
            self.features().join(","),
            KERNEL_RUSTFLAGS,
            postprocess::PREFIX,
            postprocess::OSABI_STANDALONE,
        )
    }
}

/// RUSTFLAGS upstream builds the kernel with.
const KERNEL_RUSTFLAGS: &str = "-Zmutable-noalias=no";

/// The processed kernel archive for `config`, built (and cached) if needed.
pub fn kernel_archive(
    toolchain: &Toolchain,
    config: KernelConfig,
    dirs: &HermitDirs,
    progress: Progress<'_>,
) -> anyhow::Result<PathBuf> {
    let out_dir = dirs.kernel_dir(config);
    let archive = out_dir.join("libhermit.a");
    let stamp_file = out_dir.join("stamp");
    let log_level = log_level()?;
    let stamp = config.stamp(toolchain, &log_level);
    let fresh = std::fs::read_to_string(&stamp_file).is_ok_and(|s| s == stamp);
    if fresh && archive.is_file() {
        return Ok(archive);
    }

    let what = format!("hermit-kernel {KERNEL_VERSION} ({})", config.name());
    progress("Compiling", &what);
    let started = Instant::now();
    let source = kernel_source(toolchain, dirs)?;
    let built = cargo_build_kernel(
        toolchain,
        config,
        &log_level,
        &source,
        &dirs.kernel_target(),
    )?;

    std::fs::create_dir_all(&out_dir).with_context(|| format!("creating {}", out_dir.display()))?;
    let _ = std::fs::remove_file(&stamp_file);
    // Unique per process, so that two quest-build runs never write the same file.
    let staging = out_dir.join(format!("libhermit-{}.a.new", std::process::id()));
    postprocess::postprocess(&toolchain.llvm, &built, &staging)
        .with_context(|| format!("post-processing {}", built.display()))?;
    std::fs::rename(&staging, &archive)
        .with_context(|| format!("moving {} into place", staging.display()))?;
    std::fs::write(&stamp_file, stamp)
        .with_context(|| format!("writing {}", stamp_file.display()))?;
    progress(
        "Compiled",
        &format!("{what} in {:.1}s", started.elapsed().as_secs_f64()),
    );
    Ok(archive)
}

/// The source directory of hermit-kernel [`KERNEL_VERSION`], downloaded by cargo.
fn kernel_source(toolchain: &Toolchain, dirs: &HermitDirs) -> anyhow::Result<PathBuf> {
    let wrapper = dirs.kernel_source_wrapper();
    std::fs::create_dir_all(&wrapper).with_context(|| format!("creating {}", wrapper.display()))?;
    let manifest = wrapper.join("Cargo.toml");
    write_if_changed(&manifest, &wrapper_manifest())?;
    write_if_changed(
        &wrapper.join("lib.rs"),
        "//! Only here so that cargo downloads hermit-kernel.\n",
    )?;
    let out = toolchain
        .cargo()
        .current_dir(&wrapper)
        // Only the kernel target's dependencies: cargo downloads every package it lists.
        .args([
            "metadata",
            "--format-version",
            "1",
            "--filter-platform",
            KERNEL_TARGET,
        ])
        .arg("--manifest-path")
        .arg(&manifest)
        .stderr(Stdio::inherit())
        .output()
        .context("could not run cargo")?;
    if !out.status.success() {
        bail!(
            "cargo could not fetch hermit-kernel {KERNEL_VERSION} (see its messages above; \
             is crates.io reachable?)"
        );
    }
    let meta: cargo_metadata::Metadata =
        serde_json::from_slice(&out.stdout).context("reading cargo metadata's output")?;
    let pkg = meta
        .packages
        .iter()
        .find(|p| p.name.as_str() == "hermit-kernel" && p.version.to_string() == KERNEL_VERSION)
        .with_context(|| format!("cargo metadata lists no hermit-kernel {KERNEL_VERSION}"))?;
    let dir = pkg
        .manifest_path
        .parent()
        .context("hermit-kernel's manifest path has no parent")?;
    Ok(dir.as_std_path().to_path_buf())
}

/// The wrapper package whose only purpose is to make cargo download the kernel.
fn wrapper_manifest() -> String {
    format!(
        "# Generated by quest-build: makes cargo download hermit-kernel's source.\n\
         [package]\nname = \"quest-hermit-kernel-source\"\nversion = \"0.0.0\"\n\
         edition = \"2021\"\npublish = false\n\n[lib]\npath = \"lib.rs\"\n\n\
         [dependencies]\nhermit-kernel = {{ version = \"={KERNEL_VERSION}\", default-features = false }}\n\n\
         # Not part of any enclosing workspace.\n[workspace]\n"
    )
}

/// Runs the kernel build; returns the raw `libhermit.a`.
fn cargo_build_kernel(
    toolchain: &Toolchain,
    config: KernelConfig,
    log_level: &str,
    source: &Path,
    target_dir: &Path,
) -> anyhow::Result<PathBuf> {
    let mut cmd = toolchain.cargo();
    // Run from the source directory so that no configuration of the directory quest-build
    // was started in applies to the kernel.
    cmd.current_dir(source)
        .env("CARGO_ENCODED_RUSTFLAGS", KERNEL_RUSTFLAGS)
        // Read by the kernel at compile time (`option_env!`).
        .env("HERMIT_LOG_LEVEL_FILTER", log_level)
        .args([
            "build",
            "--quiet",
            "--release",
            "--locked",
            "--manifest-path",
        ])
        .arg(source.join("Cargo.toml"))
        .args([
            "--target",
            KERNEL_TARGET,
            "-Zbuild-std=core,alloc",
            "-Zbuild-std-features=compiler-builtins-mem",
            "--no-default-features",
        ])
        .arg("--target-dir")
        .arg(target_dir);
    let features = config.features();
    if !features.is_empty() {
        cmd.arg("--features").arg(features.join(","));
    }
    let status = cmd.status().context("could not run cargo")?;
    if !status.success() {
        bail!("building hermit-kernel {KERNEL_VERSION} failed (cargo's messages are above)");
    }
    let archive = target_dir
        .join(KERNEL_TARGET)
        .join("release")
        .join("libhermit.a");
    if !archive.is_file() {
        bail!(
            "cargo built hermit-kernel but {} is missing",
            archive.display()
        );
    }
    Ok(archive)
}

/// Writes `contents` to `path` unless it already holds exactly that (keeps mtimes, so
/// cargo sees nothing new).
fn write_if_changed(path: &Path, contents: &str) -> anyhow::Result<()> {
    if std::fs::read_to_string(path).is_ok_and(|s| s == contents) {
        return Ok(());
    }
    std::fs::write(path, contents).with_context(|| format!("writing {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn features_follow_the_core_count() {
        assert_eq!(KernelConfig::for_cores(1).features(), Vec::<&str>::new());
        assert_eq!(KernelConfig::for_cores(1).name(), "uni");
        assert_eq!(KernelConfig::for_cores(2).features(), vec!["smp"]);
        assert_eq!(KernelConfig::for_cores(16).name(), "smp");
    }

    #[test]
    fn stamps_differ_by_features_and_toolchain() {
        let tc = |name: &str| Toolchain {
            name: name.into(),
            sysroot: PathBuf::new(),
            llvm: postprocess::LlvmTools {
                nm: PathBuf::new(),
                objcopy: PathBuf::new(),
            },
        };
        let a = KernelConfig { smp: true }.stamp(&tc("n1"), "warn");
        let b = KernelConfig { smp: false }.stamp(&tc("n1"), "warn");
        let c = KernelConfig { smp: true }.stamp(&tc("n2"), "warn");
        let d = KernelConfig { smp: true }.stamp(&tc("n1"), "info");
        assert_ne!(a, b);
        assert_ne!(a, c);
        assert_ne!(a, d, "the log level is compiled in");
        assert_eq!(a, KernelConfig { smp: true }.stamp(&tc("n1"), "warn"));
        assert!(a.contains("features smp\n"), "{a}");
    }

    #[test]
    fn the_wrapper_pins_the_kernel_and_stays_out_of_workspaces() {
        let m = wrapper_manifest();
        let doc: toml_edit::DocumentMut = m.parse().unwrap();
        assert_eq!(
            doc["dependencies"]["hermit-kernel"]["version"].as_str(),
            Some("=0.11.0")
        );
        assert!(doc.contains_key("workspace"));
    }
}
