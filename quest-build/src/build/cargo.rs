//! The one way Quest runs cargo ([`cargo`], [`run`], [`run_build`]) and the one reader
//! of its JSON messages ([`artifacts`]); building a bare application or the monitor with
//! them and finding the executable it produced.

use super::{Progress, Workspace, BARE_TARGET};
use cargo_metadata::Message;
use std::path::{Path, PathBuf};
use xshell::{Cmd, Shell};

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

/// An application package about to be built.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AppPackage {
    /// Its directory, absolute (cargo runs there: a relative path would resolve twice).
    pub dir: PathBuf,
    /// Its `Cargo.toml`.
    pub manifest: PathBuf,
    /// Its directory's name, for progress lines and errors.
    pub name: String,
}

impl AppPackage {
    /// The package in `dir`, which must hold a `Cargo.toml`.
    pub fn at(dir: &Path) -> Result<Self, BuildError> {
        let dir = std::path::absolute(dir).unwrap_or_else(|_| dir.to_path_buf());
        let manifest = dir.join("Cargo.toml");
        if !manifest.is_file() {
            return Err(BuildError::NoPackage(dir));
        }
        let name = dir.file_name().map_or_else(
            || dir.display().to_string(),
            |n| n.to_string_lossy().into_owned(),
        );
        Ok(Self {
            dir,
            manifest,
            name,
        })
    }

    /// A shell in the package's directory, where cargo runs for it.
    pub fn shell(&self) -> Result<Shell, BuildError> {
        let sh = Shell::new()?;
        sh.change_dir(&self.dir);
        Ok(sh)
    }
}

/// Builds the application package in `app_dir` for the bare target (release) and returns
/// the path of its executable.
pub fn build_app(
    ws: &Workspace,
    app_dir: &Path,
    progress: &Progress,
) -> Result<PathBuf, BuildError> {
    let app = AppPackage::at(app_dir)?;
    let what = format!("app {}", app.name);
    progress.step("Compiling", &what);
    let artifacts = cargo_build(ws, &app.dir, &app.manifest, None, &what)?;
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

/// One artifact cargo reported: its target's name, its executable (if it is one) and
/// every file it wrote (a static library's archive, for instance).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Artifact {
    /// The target's name (the binary's or library's).
    pub target: String,
    /// The executable, for a binary target.
    pub executable: Option<PathBuf>,
    /// Every file the artifact consists of.
    pub filenames: Vec<PathBuf>,
}

/// The toolchain Quest pins in `rust-toolchain.toml` (`None` if it cannot be read).
fn pinned_toolchain(ws: &Workspace) -> Option<String> {
    let text = std::fs::read_to_string(ws.root.join("rust-toolchain.toml")).ok()?;
    let line = text
        .lines()
        .find(|l| l.trim_start().starts_with("channel"))?;
    let value = line.split_once('=')?.1.trim().trim_matches('"');
    (!value.is_empty()).then(|| value.to_owned())
}

/// Variables an enclosing cargo or rustup sets (when this tool runs under `cargo run` or
/// `cargo test`) that would change what an inner build does.
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

/// `cargo` run in the shell's directory with rustup toolchain `toolchain` (`None`:
/// whatever rustup picks there) and none of the build settings of an enclosing cargo.
/// Every cargo Quest runs starts here.
pub fn cargo<'a>(sh: &'a Shell, toolchain: Option<&str>) -> Cmd<'a> {
    let cmd = INHERITED_BUILD_VARS
        .iter()
        .fold(sh.cmd("cargo"), |cmd, var| cmd.env_remove(var));
    match toolchain {
        Some(t) => cmd.env("RUSTUP_TOOLCHAIN", t),
        None => cmd,
    }
}

/// Runs a cargo command and returns its stdout; what cargo prints on stderr
/// (diagnostics) is passed on. `what` names the build in the error.
pub fn run(cmd: Cmd<'_>, what: &str) -> Result<Vec<u8>, BuildError> {
    let output = cmd.ignore_status().output()?;
    let stderr = String::from_utf8_lossy(&output.stderr);
    if !stderr.trim().is_empty() {
        eprint!("{stderr}");
    }
    if !output.status.success() {
        return Err(BuildError::Failed(what.to_owned()));
    }
    Ok(output.stdout)
}

/// Runs a `cargo build` command with JSON messages (diagnostics rendered to stderr) and
/// returns the artifacts it reports.
pub fn run_build(cmd: Cmd<'_>, what: &str) -> Result<Vec<Artifact>, BuildError> {
    let stdout = run(cmd.arg("--message-format=json-render-diagnostics"), what)?;
    Ok(artifacts(&stdout))
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
    let target_dir = &ws.target;
    let package_args: Vec<&str> = package.map(|p| vec!["-p", p]).unwrap_or_default();
    // Quest's pinned toolchain (it has the bare target installed), whatever toolchain
    // runs this tool.
    let toolchain = pinned_toolchain(ws);
    let cmd = cargo(&sh, toolchain.as_deref())
        .args(["build", "--quiet", "--release", "--target", BARE_TARGET])
        .arg("--manifest-path")
        .arg(manifest)
        .arg("--target-dir")
        .arg(target_dir)
        .args(package_args);
    run_build(cmd, what)
}

/// The artifacts in cargo's JSON messages (anything else in them is skipped).
pub fn artifacts(stdout: &[u8]) -> Vec<Artifact> {
    Message::parse_stream(stdout)
        .filter_map(Result::ok)
        .filter_map(|m| match m {
            Message::CompilerArtifact(a) => Some(Artifact {
                target: a.target.name.clone(),
                executable: a.executable.map(|e| e.into_std_path_buf()),
                filenames: a
                    .filenames
                    .into_iter()
                    .map(|f| f.into_std_path_buf())
                    .collect(),
            }),
            _ => None,
        })
        .collect()
}

/// The one executable of a build: the binary named `prefer` if given and present, else
/// the only one.
pub fn pick_executable(
    artifacts: Vec<Artifact>,
    what: &str,
    prefer: Option<&str>,
) -> Result<PathBuf, BuildError> {
    let mut exes: Vec<(String, PathBuf)> = artifacts
        .into_iter()
        .filter_map(|a| a.executable.map(|e| (a.target, e)))
        .collect();
    if let Some(name) = prefer {
        if let Some(i) = exes.iter().position(|(bin, _)| bin == name) {
            return Ok(exes.swap_remove(i).1);
        }
    }
    match exes.len() {
        1 => Ok(exes.remove(0).1),
        0 => Err(BuildError::Executable {
            what: what.to_owned(),
            problem: "cargo built no executable (the package needs a binary target)".into(),
        }),
        n => Err(BuildError::Executable {
            what: what.to_owned(),
            problem: format!(
                "cargo built {n} executables ({}); an application package must have exactly one",
                exes.iter()
                    .map(|(bin, _)| bin.as_str())
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
        let found = artifacts(stdout);
        assert_eq!(
            found,
            [Artifact {
                target: "hello".into(),
                executable: Some(PathBuf::from("/t/hello")),
                filenames: vec![PathBuf::from("/t/hello")],
            }]
        );
    }

    #[test]
    fn a_package_with_several_binaries_is_refused_by_name() {
        let a = |n: &str| Artifact {
            target: n.to_owned(),
            executable: Some(PathBuf::from(n)),
            filenames: vec![PathBuf::from(n)],
        };
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
        // A library is no executable.
        let lib = Artifact {
            executable: None,
            ..a("lib")
        };
        assert!(pick_executable(vec![lib], "app x", None).is_err());
    }
}
