//! Running `cargo build` for one package and finding the executable it produced.

use super::{Progress, Workspace, BARE_TARGET};
use cargo_metadata::Message;
use std::path::{Path, PathBuf};
use xshell::{cmd, Shell};

/// Why a build failed.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// `cargo` could not be run at all.
    #[error("could not run cargo: {0}")]
    Cargo(#[from] xshell::Error),
    /// `app` is not a directory with a `Cargo.toml`.
    #[error("{0}: not a Cargo package (no Cargo.toml)")]
    NoPackage(PathBuf),
    /// Cargo reported a failure; its messages were printed above.
    #[error("building {0} failed (cargo's messages are above)")]
    Failed(String),
    /// Cargo succeeded but produced no (or no unambiguous) executable.
    #[error("building {what}: {problem}")]
    Executable {
        /// The package.
        what: String,
        /// What is wrong.
        problem: String,
    },
}

/// Builds the application package in `app_dir` for the bare target (release) and returns
/// the path of its executable.
pub fn build_app(
    ws: &Workspace,
    app_dir: &Path,
    progress: &Progress,
) -> Result<PathBuf, BuildError> {
    // Absolute, since cargo runs in the package's directory.
    let app_dir = &std::path::absolute(app_dir).unwrap_or_else(|_| app_dir.to_path_buf());
    let manifest = app_dir.join("Cargo.toml");
    if !manifest.is_file() {
        return Err(BuildError::NoPackage(app_dir.to_path_buf()));
    }
    let name = app_dir.file_name().map_or_else(
        || app_dir.display().to_string(),
        |n| n.to_string_lossy().into_owned(),
    );
    progress.step("Compiling", format!("app {name}"));
    let what = format!("app {name}");
    let artifacts = cargo_build(ws, app_dir, &manifest, None, &what)?;
    pick_executable(artifacts, &what, None)
}

/// Builds the monitor (release, bare target) and returns the path of its ELF.
pub fn build_monitor(ws: &Workspace, progress: &Progress) -> Result<PathBuf, BuildError> {
    progress.step("Compiling", "monitor");
    let manifest = ws.root.join("Cargo.toml");
    let artifacts = cargo_build(
        ws,
        &ws.root,
        &manifest,
        Some("quest-monitor"),
        "the monitor",
    )?;
    pick_executable(artifacts, "the monitor", Some("quest-monitor"))
}

/// One executable cargo reported: (package name, binary target name, path).
type Artifact = (String, String, PathBuf);

/// The toolchain Quest pins in `rust-toolchain.toml` (`None` if it cannot be read).
fn pinned_toolchain(ws: &Workspace) -> Option<String> {
    let text = std::fs::read_to_string(ws.root.join("rust-toolchain.toml")).ok()?;
    let line = text
        .lines()
        .find(|l| l.trim_start().starts_with("channel"))?;
    let value = line.split_once('=')?.1.trim().trim_matches('"');
    (!value.is_empty()).then(|| value.to_owned())
}

fn cargo_build(
    ws: &Workspace,
    dir: &Path,
    manifest: &Path,
    package: Option<&str>,
    what: &str,
) -> Result<Vec<Artifact>, BuildError> {
    let sh = Shell::new()?;
    sh.change_dir(dir);
    let target_dir = ws.target_dir();
    let package_args: Vec<&str> = package.map(|p| vec!["-p", p]).unwrap_or_default();
    let command = cmd!(
        sh,
        "cargo build --quiet --release --target {BARE_TARGET} --manifest-path {manifest}
            --target-dir {target_dir} --message-format=json-render-diagnostics {package_args...}"
    )
    // Our target directory and target, not whatever the caller's environment says.
    .env_remove("CARGO_TARGET_DIR")
    .env_remove("CARGO_BUILD_TARGET")
    .ignore_status();
    // Build with Quest's pinned toolchain (it has the bare target installed), whatever
    // toolchain runs this tool.
    let command = match pinned_toolchain(ws) {
        Some(t) => command.env("RUSTUP_TOOLCHAIN", t),
        None => command.env_remove("RUSTUP_TOOLCHAIN"),
    };
    let output = command.output()?;
    // Diagnostics were rendered to stderr, which `output` captured: pass them on.
    let stderr = String::from_utf8_lossy(&output.stderr);
    if !stderr.trim().is_empty() {
        eprint!("{stderr}");
    }
    if !output.status.success() {
        return Err(BuildError::Failed(what.to_owned()));
    }
    Ok(executables(&output.stdout))
}

/// The executables in cargo's JSON messages.
fn executables(stdout: &[u8]) -> Vec<Artifact> {
    Message::parse_stream(stdout)
        .filter_map(Result::ok)
        .filter_map(|m| match m {
            Message::CompilerArtifact(a) => a.executable.map(|exe| {
                (
                    a.package_id.repr.clone(),
                    a.target.name.clone(),
                    exe.into_std_path_buf(),
                )
            }),
            _ => None,
        })
        .collect()
}

/// The one executable of a build: the binary named `prefer` if given and present, else
/// the only one.
fn pick_executable(
    mut artifacts: Vec<Artifact>,
    what: &str,
    prefer: Option<&str>,
) -> Result<PathBuf, BuildError> {
    if let Some(name) = prefer {
        if let Some(i) = artifacts.iter().position(|(_, bin, _)| bin == name) {
            return Ok(artifacts.swap_remove(i).2);
        }
    }
    match artifacts.len() {
        1 => Ok(artifacts.remove(0).2),
        0 => Err(BuildError::Executable {
            what: what.to_owned(),
            problem: "cargo built no executable (the package needs a binary target)".into(),
        }),
        n => Err(BuildError::Executable {
            what: what.to_owned(),
            problem: format!(
                "cargo built {n} executables ({}); an application package must have exactly one",
                artifacts
                    .iter()
                    .map(|(_, bin, _)| bin.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn executables_come_from_compiler_artifact_messages() {
        let stdout = br#"{"reason":"compiler-artifact","package_id":"path+file:///x/hello#0.1.0","manifest_path":"/x/hello/Cargo.toml","target":{"kind":["bin"],"crate_types":["bin"],"name":"hello","src_path":"/x/hello/src/main.rs","edition":"2021","doc":true,"doctest":false,"test":true},"profile":{"opt_level":"3","debuginfo":0,"debug_assertions":false,"overflow_checks":false,"test":false},"features":[],"filenames":["/t/hello"],"executable":"/t/hello","fresh":true}
{"reason":"build-finished","success":true}
"#;
        let found = executables(stdout);
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].1, "hello");
        assert_eq!(found[0].2, PathBuf::from("/t/hello"));
    }

    #[test]
    fn a_package_with_several_binaries_is_refused_by_name() {
        let a = |n: &str| (String::new(), n.to_owned(), PathBuf::from(n));
        let err = pick_executable(vec![a("one"), a("two")], "app x", None).unwrap_err();
        assert!(
            err.to_string().contains("2 executables (one, two)"),
            "{err}"
        );
        let ok = pick_executable(
            vec![a("one"), a("quest-monitor")],
            "m",
            Some("quest-monitor"),
        );
        assert_eq!(ok.unwrap(), PathBuf::from("quest-monitor"));
        assert!(pick_executable(vec![], "app x", None).is_err());
    }
}
