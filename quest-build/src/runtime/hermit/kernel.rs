//! Building the Hermit kernel (`hermit-kernel` 0.11.0 from crates.io, the last source
//! release there) into a post-processed `libhermit.a`, once for every sandbox.
//!
//! Cargo itself downloads the crate: a generated one-line wrapper package depends on
//! `hermit-kernel = "=0.11.0"`, and `cargo metadata` on it fetches the source into cargo's
//! registry and says where it is. The kernel is then built in that source directory with
//! its own `Cargo.lock` (`--locked`) and the flags upstream's build tool uses. The
//! processed archive is cached under `images/hermit/kernel/smp/`: a later build runs no
//! command at all.
//!
//! One kernel serves every sandbox without devices, whatever its core count: the `smp`
//! build. Under uhyve (and Quest, which boots Hermit the same way) the hypervisor starts
//! every vCPU at the kernel's entry itself and the boot info says how many there are; the
//! kernel never wakes processors on its own (`apic::boot_application_processors` is only
//! for bare metal), so on one vCPU the `smp` kernel runs exactly like the uniprocessor
//! one. uhyve ships one kernel for all core counts as well. Building a second,
//! uniprocessor kernel (and a second standard library for its applications) cost a cold
//! build about a minute and bought nothing.
//!
//! A sandbox that owns a network card Hermit drives gets a second configuration with
//! PCI, the TCP/IP stack and that driver ([`KernelConfig::of`]); each configuration is
//! built and cached on its own (`images/hermit/kernel/<name>/`, its applications in
//! `images/hermit/apps-<name>/`), so adding a networked sandbox never rebuilds the others.

use super::postprocess;
use super::toolchain::Toolchain;
use super::{HermitDirs, HermitError};
use crate::build::cargo::{cargo, run, run_build};
use crate::build::Progress;
use crate::plan::{DevicePlan, SandboxPlan};
use quest_abi::{PciId, PciSelector};
use std::path::{Path, PathBuf};
use std::time::Instant;
use xshell::Shell;

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
pub fn log_level() -> Result<String, HermitError> {
    let level = std::env::var("QUEST_HERMIT_LOG")
        .map(|l| l.trim().to_ascii_lowercase())
        .unwrap_or_else(|_| DEFAULT_LOG_LEVEL.to_owned());
    const LEVELS: [&str; 6] = ["off", "error", "warn", "info", "debug", "trace"];
    if !LEVELS.contains(&level.as_str()) {
        return Err(HermitError::LogLevel(level));
    }
    Ok(level)
}

/// Which kernel a Hermit sandbox gets: its cargo features, chosen from the devices the
/// manifest gives the sandbox.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum KernelConfig {
    /// `smp` only: no PCI, ACPI or network (the sandbox has no device the kernel drives).
    Plain,
    /// `smp,pci,tcp,rtl8139`: the kernel scans PCI (through ports 0xCF8/0xCFC, which the
    /// monitor serves from the sandbox's virtual configuration space), drives a Realtek
    /// RTL8139 and runs smoltcp's TCP behind `std::net`.
    ///
    /// Why the RTL8139 and not virtio-net: Hermit 0.11's virtio-net driver does not
    /// negotiate `VIRTIO_F_ACCESS_PLATFORM`, so behind an IOMMU (which every DMA-capable
    /// device of a Quest sandbox sits behind) QEMU either fails the device or lets it
    /// bypass translation; the RTL8139's DMA goes through the IOMMU like any PCI
    /// device's. Its driver uses the I/O BAR and INTx (vector 32 + Interrupt Line).
    ///
    /// The address comes from `HERMIT_IP`/`HERMIT_GATEWAY`/`HERMIT_MASK`, which the
    /// kernel reads from its command line at run time (the manifest's `env`) before its
    /// compile-time environment: static, so the server listens as soon as `main` runs
    /// (no DHCP exchange to wait for and nothing to rebuild per network).
    Rtl8139,
}

/// PCI IDs of the network cards Hermit 0.11 drives under Quest (its RTL8139 driver
/// matches both device IDs).
pub const RTL8139_IDS: [PciId; 2] = [
    PciId {
        vendor: 0x10ec,
        device: 0x8139,
    },
    PciId {
        vendor: 0x10ec,
        device: 0x8138,
    },
];

impl KernelConfig {
    /// The kernel of `sandbox`: [`Self::Rtl8139`] if the manifest gives it a function by
    /// one of the [`RTL8139_IDS`], else [`Self::Plain`]. A function named by address
    /// (`00:03.0`) says nothing about what it is until the monitor scans the bus, so a
    /// network card must be named by its ID to get its driver.
    pub fn of(sandbox: &SandboxPlan) -> Self {
        let nic = sandbox.devices.iter().any(|d| {
            matches!(d, DevicePlan::Pci { select: PciSelector::Id { id, .. }, .. }
                if RTL8139_IDS.contains(id))
        });
        if nic {
            Self::Rtl8139
        } else {
            Self::Plain
        }
    }

    /// Its cargo features.
    pub fn features(self) -> &'static str {
        match self {
            Self::Plain => "smp",
            Self::Rtl8139 => "smp,pci,tcp,rtl8139",
        }
    }

    /// Its name: the cache directory of its kernel (`images/hermit/kernel/<name>`) and of
    /// the applications linked with it (`images/hermit/apps-<name>`).
    pub fn name(self) -> &'static str {
        match self {
            Self::Plain => "smp",
            Self::Rtl8139 => "smp-pci-tcp-rtl8139",
        }
    }
}

/// Everything that decides the archive's contents; a cached archive is reused only if
/// its stamp says exactly this.
fn stamp(toolchain: &Toolchain, config: KernelConfig, log_level: &str) -> String {
    format!(
        "hermit-kernel {KERNEL_VERSION}\ntoolchain {}\ntarget {KERNEL_TARGET}\nfeatures {}\n\
         log {log_level}\nrustflags {}\nbuild-std core,alloc compiler-builtins-mem\n\
         postprocess prefix={} osabi={}\n",
        toolchain.name,
        config.features(),
        KERNEL_RUSTFLAGS,
        postprocess::PREFIX,
        postprocess::OSABI_STANDALONE,
    )
}

/// RUSTFLAGS upstream builds the kernel with.
const KERNEL_RUSTFLAGS: &str = "-Zmutable-noalias=no";

/// The processed kernel archive of `config`, built (and cached) if needed.
pub fn kernel_archive(
    toolchain: &Toolchain,
    dirs: &HermitDirs,
    config: KernelConfig,
    progress: &Progress,
) -> Result<PathBuf, HermitError> {
    let out_dir = dirs.kernel_dir(config);
    let archive = out_dir.join("libhermit.a");
    let stamp_file = out_dir.join("stamp");
    let log_level = log_level()?;
    let stamp = stamp(toolchain, config, &log_level);
    let fresh = std::fs::read_to_string(&stamp_file).is_ok_and(|s| s == stamp);
    if fresh && archive.is_file() {
        return Ok(archive);
    }

    let what = format!("hermit-kernel {KERNEL_VERSION} ({})", config.name());
    progress.step("Compiling", &what);
    let started = Instant::now();
    let source = kernel_source(toolchain, dirs)?;
    let built = cargo_build_kernel(
        toolchain,
        config,
        &log_level,
        &source,
        &dirs.kernel_target(),
    )?;

    std::fs::create_dir_all(&out_dir).map_err(HermitError::io(&out_dir))?;
    let _ = std::fs::remove_file(&stamp_file);
    // Unique per process, so that two quest-build runs never write the same file.
    let staging = out_dir.join(format!("libhermit-{}.a.new", std::process::id()));
    postprocess::postprocess(&toolchain.llvm, &built, &staging).map_err(|source| {
        HermitError::Postprocess {
            path: built.clone(),
            source,
        }
    })?;
    std::fs::rename(&staging, &archive).map_err(HermitError::io(&archive))?;
    std::fs::write(&stamp_file, stamp).map_err(HermitError::io(&stamp_file))?;
    progress.step(
        "Compiled",
        format!("{what} in {:.1}s", started.elapsed().as_secs_f64()),
    );
    Ok(archive)
}

/// The source directory of hermit-kernel [`KERNEL_VERSION`], downloaded by cargo.
fn kernel_source(toolchain: &Toolchain, dirs: &HermitDirs) -> Result<PathBuf, HermitError> {
    let wrapper = dirs.kernel_source_wrapper();
    std::fs::create_dir_all(&wrapper).map_err(HermitError::io(&wrapper))?;
    let manifest = wrapper.join("Cargo.toml");
    write_if_changed(&manifest, &wrapper_manifest())?;
    write_if_changed(
        &wrapper.join("lib.rs"),
        "//! Only here so that cargo downloads hermit-kernel.\n",
    )?;
    let sh = Shell::new().map_err(crate::build::BuildError::from)?;
    sh.change_dir(&wrapper);
    // Only the kernel target's dependencies: cargo downloads every package it lists.
    let cmd = cargo(&sh, Some(&toolchain.name))
        .args(["metadata", "--format-version", "1", "--filter-platform"])
        .arg(KERNEL_TARGET)
        .arg("--manifest-path")
        .arg(&manifest);
    let what = format!("fetching hermit-kernel {KERNEL_VERSION} (is crates.io reachable?)");
    let stdout = run(cmd, &what)?;
    let meta: cargo_metadata::Metadata = serde_json::from_slice(&stdout)
        .map_err(|e| HermitError::KernelSource(format!("reading cargo metadata's output: {e}")))?;
    let pkg = meta
        .packages
        .iter()
        .find(|p| p.name.as_str() == "hermit-kernel" && p.version.to_string() == KERNEL_VERSION)
        .ok_or_else(|| {
            HermitError::KernelSource(format!(
                "cargo metadata lists no hermit-kernel {KERNEL_VERSION}"
            ))
        })?;
    let dir = pkg.manifest_path.parent().ok_or_else(|| {
        HermitError::KernelSource("hermit-kernel's manifest path has no parent".into())
    })?;
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
) -> Result<PathBuf, HermitError> {
    let sh = Shell::new().map_err(crate::build::BuildError::from)?;
    // Run from the source directory so that no configuration of the directory quest-build
    // was started in applies to the kernel.
    sh.change_dir(source);
    let cmd = cargo(&sh, Some(&toolchain.name))
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
            "--features",
            config.features(),
        ])
        .arg("--target-dir")
        .arg(target_dir);
    let artifacts = run_build(cmd, &format!("hermit-kernel {KERNEL_VERSION}"))?;
    artifacts
        .into_iter()
        .flat_map(|a| a.filenames)
        .find(|f| f.file_name().is_some_and(|n| n == "libhermit.a"))
        .ok_or(HermitError::NoArchive)
}

/// Writes `contents` to `path` unless it already holds exactly that (keeps mtimes, so
/// cargo sees nothing new).
fn write_if_changed(path: &Path, contents: &str) -> Result<(), HermitError> {
    if std::fs::read_to_string(path).is_ok_and(|s| s == contents) {
        return Ok(());
    }
    std::fs::write(path, contents).map_err(HermitError::io(path))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stamps_differ_by_toolchain_and_log_level() {
        let tc = |name: &str| Toolchain {
            name: name.into(),
            sysroot: PathBuf::new(),
            llvm: postprocess::LlvmTools {
                nm: PathBuf::new(),
                objcopy: PathBuf::new(),
            },
        };
        let plain = KernelConfig::Plain;
        let a = stamp(&tc("n1"), plain, "warn");
        assert_ne!(a, stamp(&tc("n2"), plain, "warn"));
        assert_ne!(
            a,
            stamp(&tc("n1"), plain, "info"),
            "the log level is compiled in"
        );
        assert_eq!(a, stamp(&tc("n1"), plain, "warn"));
        assert!(a.contains("features smp\n"), "{a}");
        let net = stamp(&tc("n1"), KernelConfig::Rtl8139, "warn");
        assert!(net.contains("features smp,pci,tcp,rtl8139\n"), "{net}");
    }

    /// A Hermit sandbox with `devices`, planned like any other.
    fn sandbox_with(devices: Vec<DevicePlan>) -> SandboxPlan {
        use crate::plan::testing::{manifest, SandboxSpec};
        let m = manifest(
            1,
            64,
            &[SandboxSpec::new(
                "web",
                crate::manifest::Runtime::Hermit,
                &[0],
                32,
            )],
            &[],
        );
        let mut sb = crate::plan::plan(&m).sandboxes.remove(0);
        sb.devices = devices;
        sb
    }

    fn pci(select: PciSelector) -> DevicePlan {
        DevicePlan::Pci {
            select,
            dma_unprotected: false,
            start_without: false,
        }
    }

    fn id(vendor: u16, device: u16, index: u32) -> PciSelector {
        PciSelector::Id {
            id: PciId { vendor, device },
            index,
        }
    }

    #[test]
    fn an_rtl8139_named_by_id_chooses_the_network_kernel() {
        assert_eq!(KernelConfig::of(&sandbox_with(vec![])), KernelConfig::Plain);
        let nic = sandbox_with(vec![pci(id(0x10ec, 0x8139, 0))]);
        assert_eq!(KernelConfig::of(&nic), KernelConfig::Rtl8139);
        // The second RTL8139, the 8138 ID, and a NIC among other devices count too.
        for devices in [
            vec![pci(id(0x10ec, 0x8139, 1))],
            vec![pci(id(0x10ec, 0x8138, 0))],
            vec![
                DevicePlan::Ports {
                    first: 0x2f8,
                    last: 0x2ff,
                    irq: Some(3),
                },
                pci(id(0x1234, 0x11e8, 0)),
                pci(id(0x10ec, 0x8139, 0)),
            ],
        ] {
            assert_eq!(
                KernelConfig::of(&sandbox_with(devices.clone())),
                KernelConfig::Rtl8139,
                "{devices:?}"
            );
        }
        // Other devices, another vendor's 8139, and a function named by address (which
        // may be anything until the monitor scans the bus) keep the plain kernel.
        for devices in [
            vec![pci(id(0x1234, 0x11e8, 0))],
            vec![pci(id(0x10ed, 0x8139, 0))],
            vec![pci(PciSelector::Address(quest_abi::PciAddress {
                bus: 0,
                device: 3,
                function: 0,
            }))],
            vec![DevicePlan::Ports {
                first: 0x2f8,
                last: 0x2ff,
                irq: None,
            }],
        ] {
            assert_eq!(
                KernelConfig::of(&sandbox_with(devices.clone())),
                KernelConfig::Plain,
                "{devices:?}"
            );
        }
    }

    #[test]
    fn each_configuration_has_its_own_features_and_cache_directory() {
        let all = [KernelConfig::Plain, KernelConfig::Rtl8139];
        assert_eq!(KernelConfig::Plain.features(), "smp");
        assert_eq!(KernelConfig::Rtl8139.features(), "smp,pci,tcp,rtl8139");
        let names: std::collections::BTreeSet<_> = all.iter().map(|c| c.name()).collect();
        assert_eq!(names.len(), all.len());
        // The plain kernel keeps the directory it always had (caches stay valid).
        assert_eq!(KernelConfig::Plain.name(), "smp");
        let dirs = HermitDirs {
            root: PathBuf::from("/h"),
        };
        assert_ne!(
            dirs.kernel_dir(KernelConfig::Plain),
            dirs.kernel_dir(KernelConfig::Rtl8139)
        );
        assert_ne!(
            super::super::app::target_dir(&dirs, KernelConfig::Plain),
            super::super::app::target_dir(&dirs, KernelConfig::Rtl8139)
        );
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
