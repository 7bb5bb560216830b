//! The Rust toolchain Hermit 0.11 is built with (`nightly-2025-03-15` with `rust-src`
//! for `-Zbuild-std` and `llvm-tools` for the kernel's SMP boot code and our
//! post-processing), installed through rustup when it is missing.

use super::postprocess::LlvmTools;
use super::Progress;
use anyhow::{bail, Context};
use std::path::PathBuf;
use std::process::Command;

/// The toolchain hermit-kernel 0.11.0 pins in its `rust-toolchain.toml`.
pub const HERMIT_TOOLCHAIN: &str = "nightly-2025-03-15";
/// Components the builds need.
const COMPONENTS: [&str; 2] = ["rust-src", "llvm-tools"];

/// An installed toolchain.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Toolchain {
    /// Rustup name, used as `cargo +<name>`.
    pub name: String,
    /// `rustc --print sysroot`.
    pub sysroot: PathBuf,
    /// Its LLVM tools.
    pub llvm: LlvmTools,
}

impl Toolchain {
    /// `cargo +<toolchain>` with the environment of an enclosing cargo (when this tool
    /// runs under `cargo run` or `cargo test`) removed, so it cannot leak into the build.
    pub fn cargo(&self) -> Command {
        let mut cmd = Command::new("cargo");
        cmd.arg(format!("+{}", self.name));
        for var in INHERITED_BUILD_VARS {
            cmd.env_remove(var);
        }
        cmd
    }
}

/// Variables an enclosing cargo or rustup sets that would change what an inner build
/// does.
const INHERITED_BUILD_VARS: [&str; 12] = [
    "RUSTUP_TOOLCHAIN",
    "RUSTC",
    "RUSTC_WRAPPER",
    "RUSTC_WORKSPACE_WRAPPER",
    "RUSTFLAGS",
    "RUSTDOCFLAGS",
    "CARGO_ENCODED_RUSTFLAGS",
    "CARGO_BUILD_RUSTFLAGS",
    "CARGO_TARGET_DIR",
    "CARGO_BUILD_TARGET",
    "CARGO_MAKEFLAGS",
    "__CARGO_FIX_PLZ",
];

/// The Hermit toolchain, installing it (or its missing components) first if needed.
pub fn ensure(progress: Progress<'_>) -> anyhow::Result<Toolchain> {
    let (present, complete) = probe(HERMIT_TOOLCHAIN)?;
    if let Some(tc) = complete {
        return Ok(tc);
    }
    let mut rustup = Command::new("rustup");
    rustup.env_remove("RUSTUP_TOOLCHAIN");
    if present {
        progress(
            "Installing",
            &format!("rust-src and llvm-tools for {HERMIT_TOOLCHAIN} (for Hermit)"),
        );
        rustup.args(["component", "add", "--toolchain", HERMIT_TOOLCHAIN]);
        rustup.args(COMPONENTS);
    } else {
        progress(
            "Installing",
            &format!("Rust toolchain {HERMIT_TOOLCHAIN} with rust-src and llvm-tools (for Hermit)"),
        );
        rustup.args([
            "toolchain",
            "install",
            HERMIT_TOOLCHAIN,
            "--profile",
            "minimal",
        ]);
        for c in COMPONENTS {
            rustup.args(["--component", c]);
        }
    }
    let status = rustup
        .status()
        .context("could not run rustup (is it installed and on PATH?)")?;
    if !status.success() {
        bail!("installing {HERMIT_TOOLCHAIN} with rustup failed ({status})");
    }
    probe(HERMIT_TOOLCHAIN)?.1.with_context(|| {
        format!("{HERMIT_TOOLCHAIN} still lacks rust-src or llvm-tools after installing them")
    })
}

/// Whether toolchain `name` is installed, and the toolchain if it also has every
/// component.
fn probe(name: &str) -> anyhow::Result<(bool, Option<Toolchain>)> {
    // Ask the list first: `rustup run` may install a missing toolchain on its own, with
    // the wrong profile and without asking.
    let list = Command::new("rustup")
        .env_remove("RUSTUP_TOOLCHAIN")
        .args(["toolchain", "list"])
        .output()
        .context("could not run rustup (is it installed and on PATH?)")?;
    let list = String::from_utf8_lossy(&list.stdout);
    if !list.lines().any(|l| l.starts_with(&format!("{name}-"))) {
        return Ok((false, None));
    }
    let out = Command::new("rustup")
        .env_remove("RUSTUP_TOOLCHAIN")
        .args(["run", name, "rustc", "-vV"])
        .output()
        .context("could not run rustup (is it installed and on PATH?)")?;
    if !out.status.success() {
        return Ok((false, None));
    }
    let version = String::from_utf8_lossy(&out.stdout);
    let Some(host) = version.lines().find_map(|l| l.strip_prefix("host: ")) else {
        bail!("`rustc -vV` of {name} names no host");
    };
    let out = Command::new("rustup")
        .env_remove("RUSTUP_TOOLCHAIN")
        .args(["run", name, "rustc", "--print", "sysroot"])
        .output()
        .context("could not run rustup")?;
    if !out.status.success() {
        return Ok((false, None));
    }
    let sysroot = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
    let bin = sysroot.join("lib/rustlib").join(host.trim()).join("bin");
    let tc = Toolchain {
        name: name.to_owned(),
        llvm: LlvmTools {
            nm: bin.join("llvm-nm"),
            objcopy: bin.join("llvm-objcopy"),
        },
        sysroot,
    };
    let has_src = tc.sysroot.join("lib/rustlib/src/rust/library/std").is_dir();
    let has_llvm = tc.llvm.nm.is_file() && tc.llvm.objcopy.is_file();
    Ok((true, (has_src && has_llvm).then_some(tc)))
}
