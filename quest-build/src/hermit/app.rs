//! Building a user's ordinary std package as a Hermit unikernel.
//!
//! The package needs nothing Hermit-specific: it is built for `x86_64-unknown-hermit`
//! with `-Zbuild-std`, and the processed kernel archive is handed to the linker as one
//! more input (`-Clink-arg=<libhermit.a>`), which is all the upstream `hermit` crate's
//! build script achieves. `RUSTFLAGS` reach only target crates (with `--target`, build
//! scripts and proc macros are built without them), and rustc passes link arguments only
//! to the final link. The result is a static-PIE ELF holding kernel and application.
//!
//! All applications built against one kernel share a target directory, so the standard
//! library is compiled once per kernel, not once per application.

use super::toolchain::Toolchain;
use super::{HermitDirs, Progress};
use anyhow::{bail, Context};
use cargo_metadata::Message;
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use std::process::Stdio;

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
    progress: Progress<'_>,
) -> anyhow::Result<PathBuf> {
    // cargo runs in the package's directory: a relative path would resolve twice.
    let app_dir = &std::path::absolute(app_dir).unwrap_or_else(|_| app_dir.to_path_buf());
    let manifest = app_dir.join("Cargo.toml");
    if !manifest.is_file() {
        bail!("{}: not a Cargo package (no Cargo.toml)", app_dir.display());
    }
    let kernel =
        std::path::absolute(kernel).with_context(|| format!("resolving {}", kernel.display()))?;
    let bytes = std::fs::read(&kernel).with_context(|| format!("reading {}", kernel.display()))?;
    let hash = hex16(&Sha256::digest(&bytes));
    let name = app_dir.file_name().map_or_else(
        || app_dir.display().to_string(),
        |n| n.to_string_lossy().into_owned(),
    );
    progress("Compiling", &format!("app {name} (hermit)"));

    let out = toolchain
        .cargo()
        .current_dir(app_dir)
        .env("CARGO_ENCODED_RUSTFLAGS", app_rustflags(&kernel, &hash))
        .args(["build", "--quiet", "--release", "--manifest-path"])
        .arg(&manifest)
        .args([
            "--target",
            APP_TARGET,
            "-Zbuild-std=std,core,alloc,panic_abort",
            "-Zbuild-std-features=compiler-builtins-mem",
            "--message-format=json-render-diagnostics",
        ])
        .arg("--target-dir")
        .arg(target_dir)
        .stderr(Stdio::inherit())
        .output()
        .context("could not run cargo")?;
    if !out.status.success() {
        bail!("building app {name} for Hermit failed (cargo's messages are above)");
    }
    pick_executable(&out.stdout, &name)
}

/// The one executable in cargo's JSON messages.
fn pick_executable(stdout: &[u8], name: &str) -> anyhow::Result<PathBuf> {
    let mut exes: Vec<(String, PathBuf)> = Message::parse_stream(stdout)
        .filter_map(Result::ok)
        .filter_map(|m| match m {
            Message::CompilerArtifact(a) => a
                .executable
                .map(|exe| (a.target.name.clone(), exe.into_std_path_buf())),
            _ => None,
        })
        .collect();
    match exes.len() {
        1 => Ok(exes.remove(0).1),
        0 => bail!("app {name}: cargo built no executable (the package needs a binary target)"),
        n => bail!(
            "app {name}: cargo built {n} executables ({}); an application package must have exactly one",
            exes.iter().map(|(t, _)| t.as_str()).collect::<Vec<_>>().join(", ")
        ),
    }
}

/// The first 8 bytes of a digest in hex.
fn hex16(digest: &[u8]) -> String {
    digest.iter().take(8).map(|b| format!("{b:02x}")).collect()
}

/// Where applications built against the kernel in `kernel_dir` go.
pub fn target_dir_for(dirs: &HermitDirs, kernel_name: &str) -> PathBuf {
    dirs.root.join(format!("apps-{kernel_name}"))
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
    fn exactly_one_executable_is_taken() {
        let msg = |bin: &str| {
            format!(
                r#"{{"reason":"compiler-artifact","package_id":"path+file:///a#0.1.0","manifest_path":"/a/Cargo.toml","target":{{"kind":["bin"],"crate_types":["bin"],"name":"{bin}","src_path":"/a/src/main.rs","edition":"2021","doc":true,"doctest":false,"test":true}},"profile":{{"opt_level":"3","debuginfo":0,"debug_assertions":false,"overflow_checks":false,"test":false}},"features":[],"filenames":["/t/{bin}"],"executable":"/t/{bin}","fresh":true}}"#
            )
        };
        let one = format!(
            "{}\n{{\"reason\":\"build-finished\",\"success\":true}}\n",
            msg("hello")
        );
        assert_eq!(
            pick_executable(one.as_bytes(), "a").unwrap(),
            PathBuf::from("/t/hello")
        );
        let two = format!("{}\n{}\n", msg("x"), msg("y"));
        let err = pick_executable(two.as_bytes(), "a")
            .unwrap_err()
            .to_string();
        assert!(err.contains("2 executables (x, y)"), "{err}");
        let err = pick_executable(b"", "a").unwrap_err().to_string();
        assert!(err.contains("no executable"), "{err}");
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
            &|_, _| {},
        )
        .unwrap_err();
        assert!(err.to_string().contains("not a Cargo package"), "{err}");
    }
}
