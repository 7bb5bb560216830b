//! The Rust toolchain Hermit 0.11 is built with (`nightly-2025-03-15` with `rust-src`
//! for `-Zbuild-std` and `llvm-tools` for the kernel's SMP boot code and our
//! post-processing), installed through rustup when it is missing. Cargo itself runs
//! through [`crate::build::cargo`] with this toolchain's name.

use super::postprocess::LlvmTools;
use super::HermitError;
use crate::build::Progress;
use std::path::PathBuf;
use xshell::{cmd, Shell};

/// The toolchain hermit-kernel 0.11.0 pins in its `rust-toolchain.toml`.
pub const HERMIT_TOOLCHAIN: &str = "nightly-2025-03-15";
/// Components the builds need.
const COMPONENTS: [&str; 2] = ["rust-src", "llvm-tools"];

/// An installed toolchain.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Toolchain {
    /// Rustup name (what `RUSTUP_TOOLCHAIN` is set to for cargo).
    pub name: String,
    /// `rustc --print sysroot`.
    pub sysroot: PathBuf,
    /// Its LLVM tools.
    pub llvm: LlvmTools,
}

/// The Hermit toolchain, installing it (or its missing components) first if needed.
pub fn ensure(progress: &Progress) -> Result<Toolchain, HermitError> {
    let sh = Shell::new().map_err(HermitError::Rustup)?;
    let (present, complete) = probe(&sh, HERMIT_TOOLCHAIN)?;
    if let Some(tc) = complete {
        return Ok(tc);
    }
    let rustup = if present {
        progress.step(
            "Installing",
            format!("rust-src and llvm-tools for {HERMIT_TOOLCHAIN} (for Hermit)"),
        );
        cmd!(
            sh,
            "rustup component add --toolchain {HERMIT_TOOLCHAIN} {COMPONENTS...}"
        )
    } else {
        progress.step(
            "Installing",
            format!("Rust toolchain {HERMIT_TOOLCHAIN} with rust-src and llvm-tools (for Hermit)"),
        );
        let components = COMPONENTS.iter().flat_map(|c| ["--component", c]);
        cmd!(
            sh,
            "rustup toolchain install {HERMIT_TOOLCHAIN} --profile minimal {components...}"
        )
    };
    rustup
        .env_remove("RUSTUP_TOOLCHAIN")
        .run()
        .map_err(HermitError::Rustup)?;
    probe(&sh, HERMIT_TOOLCHAIN)?
        .1
        .ok_or(HermitError::Incomplete(HERMIT_TOOLCHAIN))
}

/// Whether toolchain `name` is installed, and the toolchain if it also has every
/// component.
fn probe(sh: &Shell, name: &'static str) -> Result<(bool, Option<Toolchain>), HermitError> {
    // Ask the list first: `rustup run` may install a missing toolchain on its own, with
    // the wrong profile and without asking.
    let rustup = |args: &[&str]| {
        cmd!(sh, "rustup {args...}")
            .env_remove("RUSTUP_TOOLCHAIN")
            .quiet()
            .ignore_stderr()
            .read()
    };
    let list = rustup(&["toolchain", "list"]).map_err(HermitError::Rustup)?;
    if !list.lines().any(|l| l.starts_with(&format!("{name}-"))) {
        return Ok((false, None));
    }
    let Ok(version) = rustup(&["run", name, "rustc", "-vV"]) else {
        return Ok((false, None));
    };
    let Some(host) = version.lines().find_map(|l| l.strip_prefix("host: ")) else {
        return Err(HermitError::NoHost(name));
    };
    let Ok(sysroot) = rustup(&["run", name, "rustc", "--print", "sysroot"]) else {
        return Ok((false, None));
    };
    let sysroot = PathBuf::from(sysroot.trim());
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
