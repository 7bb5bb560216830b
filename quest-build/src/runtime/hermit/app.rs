//! Building a user's ordinary std package as a Hermit unikernel.
//!
//! The package needs nothing Hermit-specific: it is built for `x86_64-unknown-hermit`
//! with `-Zbuild-std`, and the processed kernel archive is handed to the linker as one
//! more input (`-Clink-arg=<libhermit.a>`), which is all the upstream `hermit` crate's
//! build script achieves. `RUSTFLAGS` reach only target crates (with `--target`, build
//! scripts and proc macros are built without them), and rustc passes link arguments only
//! to the final link. The result is a static-PIE ELF holding kernel and application.
//!
//! All applications built against one kernel configuration share a target directory, so
//! the standard library is compiled once per kernel, not once per application.

use super::toolchain::Toolchain;
use super::{HermitDirs, HermitError};
use crate::build::cargo::{cargo, pick_executable, run_build, AppPackage};
use crate::build::Progress;
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};

/// The target std applications are built for.
pub const APP_TARGET: &str = "x86_64-unknown-hermit";

/// The `RUSTFLAGS` (as `CARGO_ENCODED_RUSTFLAGS`, `\x1f`-separated) for linking against
/// `kernel`. The archive's hash rides along as a `--cfg`, so that a changed kernel
/// changes the flags and cargo relinks (cargo does not track link-argument files).
pub fn app_rustflags(kernel: &Path, kernel_hash: &str) -> String {
    [
        format!("-Clink-arg={}", kernel.display()),
        format!("--cfg=quest_hermit_kernel=\"{kernel_hash}\""),
    ]
    .join("\x1f")
}

/// Builds the package in `app_dir` against `kernel` (a processed `libhermit.a`) into
/// `target_dir`; returns the ELF's path.
pub fn build_app(
    toolchain: &Toolchain,
    app_dir: &Path,
    kernel: &Path,
    target_dir: &Path,
    progress: &Progress,
) -> Result<PathBuf, HermitError> {
    let app = AppPackage::at(app_dir)?;
    let kernel = std::path::absolute(kernel).map_err(HermitError::io(kernel))?;
    let bytes = std::fs::read(&kernel).map_err(HermitError::io(&kernel))?;
    let hash = hex16(&Sha256::digest(&bytes));
    progress.step("Compiling", format!("app {} (hermit)", app.name));

    let sh = app.shell()?;
    let cmd = cargo(&sh, Some(&toolchain.name))
        .env("CARGO_ENCODED_RUSTFLAGS", app_rustflags(&kernel, &hash))
        .args(["build", "--quiet", "--release", "--manifest-path"])
        .arg(&app.manifest)
        .args([
            "--target",
            APP_TARGET,
            "-Zbuild-std=std,core,alloc,panic_abort",
            "-Zbuild-std-features=compiler-builtins-mem",
        ])
        .arg("--target-dir")
        .arg(target_dir);
    let what = format!("app {} for Hermit", app.name);
    let artifacts = run_build(cmd, &what)?;
    Ok(pick_executable(artifacts, &what, None)?)
}

/// The first 8 bytes of a digest in hex.
fn hex16(digest: &[u8]) -> String {
    digest.iter().take(8).map(|b| format!("{b:02x}")).collect()
}

/// Where applications built against the kernel of `config` go (one target directory for
/// all of them, so the standard library is compiled once per kernel; sharing one across
/// kernels would rebuild it at every switch, since the kernel's hash is in the flags).
pub fn target_dir(dirs: &HermitDirs, config: super::KernelConfig) -> PathBuf {
    dirs.root.join(format!("apps-{}", config.name()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rustflags_link_the_kernel_and_carry_its_hash() {
        let f = app_rustflags(Path::new("/k/libhermit.a"), "0011aabb");
        let parts: Vec<&str> = f.split('\x1f').collect();
        assert_eq!(
            parts,
            [
                "-Clink-arg=/k/libhermit.a",
                "--cfg=quest_hermit_kernel=\"0011aabb\""
            ]
        );
    }

    #[test]
    fn a_directory_without_a_package_is_refused() {
        let tc = Toolchain {
            name: "none".into(),
            sysroot: PathBuf::new(),
            llvm: super::super::postprocess::LlvmTools {
                nm: PathBuf::new(),
                objcopy: PathBuf::new(),
            },
        };
        let dir = std::env::temp_dir();
        let err = build_app(
            &tc,
            &dir.join("no-such-app"),
            Path::new("k"),
            &dir,
            &Progress::quiet(),
        )
        .unwrap_err();
        assert!(err.to_string().contains("not a Cargo package"), "{err}");
    }
}
