//! `quest-build new NAME`: a new system that builds and boots as it is, like `cargo new`.
//!
//! It writes a directory `NAME/` holding the partition manifest `NAME.toml` (one sandbox,
//! commented, pointing at the manifest reference) and the application package
//! `apps/NAME/` beside it (the layout of Quest's own `partition-manifests/` and
//! `unikernels/apps/`, so that more sandboxes and apps fit in later). Nothing is ever
//! overwritten: an existing `NAME/` is refused.

use crate::build::Workspace;
use crate::runtime::{self, Runtime};
use std::path::{Path, PathBuf};

/// What was created.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewSystem {
    /// The new directory.
    pub dir: PathBuf,
    /// The manifest in it.
    pub manifest: PathBuf,
    /// The application package.
    pub app: PathBuf,
}

/// Why a new system could not be created.
#[derive(Debug, thiserror::Error)]
pub enum NewError {
    /// The name is not a valid system and package name.
    #[error("`{0}` cannot be a name: use 1 to {max} characters from a-z, 0-9, `_` and `-`, starting with a letter", max = quest_abi::NAME_LEN - 1)]
    BadName(String),
    /// The directory exists already (nothing is overwritten).
    #[error("{0} already exists; nothing was written (choose another name or remove it)")]
    Exists(PathBuf),
    /// A file or directory could not be written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
}

/// Whether `name` can name a system, a sandbox and a Cargo package alike.
pub fn valid_name(name: &str) -> bool {
    name.len() < quest_abi::NAME_LEN
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && name
            .chars()
            .all(|c| matches!(c, 'a'..='z' | '0'..='9' | '_' | '-'))
}

/// Creates system `name` running on `runtime` in `parent/name/`; `ws` is the Quest
/// checkout (the bare runtime's crate and the manifest reference live there).
pub fn create(
    ws: &Workspace,
    parent: &Path,
    name: &str,
    runtime: Runtime,
) -> Result<NewSystem, NewError> {
    if !valid_name(name) {
        return Err(NewError::BadName(name.to_owned()));
    }
    let dir = parent.join(name);
    if dir.exists() {
        return Err(NewError::Exists(dir));
    }
    let root = std::path::absolute(&ws.root).unwrap_or_else(|_| ws.root.clone());
    let app = dir.join("apps").join(name);
    let manifest = dir.join(format!("{name}.toml"));
    let files = [
        (manifest.clone(), manifest_text(&root, name, runtime)),
        (app.join("Cargo.toml"), cargo_toml(&root, name, runtime)),
        (app.join("src").join("main.rs"), main_rs(name, runtime)),
    ];
    // `create_dir` (not `_all`) on `dir` itself: if it appeared meanwhile, stop.
    std::fs::create_dir_all(parent).map_err(io(parent))?;
    std::fs::create_dir(&dir).map_err(|source| match source.kind() {
        std::io::ErrorKind::AlreadyExists => NewError::Exists(dir.clone()),
        _ => io(&dir)(source),
    })?;
    for (path, text) in files {
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(io(parent))?;
        }
        std::fs::write(&path, text).map_err(io(&path))?;
    }
    Ok(NewSystem { dir, manifest, app })
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> NewError + '_ {
    move |source| NewError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Sandbox RAM: Hermit needs room for kernel, std and heap; a bare app very little.
fn sandbox_memory(runtime: Runtime) -> &'static str {
    match runtime {
        Runtime::Bare => "8MiB",
        Runtime::Hermit => "64MiB",
    }
}

/// The partition manifest: one sandbox on core 0.
fn manifest_text(root: &Path, name: &str, runtime: Runtime) -> String {
    let reference = root.join("partition-manifests").join("README.md");
    let reference = reference.display();
    let rt = runtime::of(runtime).name();
    let memory = sandbox_memory(runtime);
    format!(
        r#"# The Quest system `{name}`: one sandbox running the application in apps/{name}.
#
#   quest-build check {name}.toml    every problem in this file, with hints
#   quest-build plan {name}.toml     cores, memory map and channels as planned
#   quest-build image {name}.toml    the bootable image ({name}.iso in the checkout's images/)
#   quest-build run {name}.toml      build it and boot it in an emulator
#
# Every key, its type, default and unit, channels and the memory budget:
#   {reference}

[system]
name = "{name}"
# Logical cores the target machine must have; sandboxes get disjoint sets of them.
cores = 1
# All the RAM the system may use: the sandboxes, channels and the monitor's reserve.
memory = "128MiB"
console = "com1"

[[sandbox]]
name = "{name}"
# The Cargo package this sandbox runs, relative to this file.
app = "apps/{name}"
# "hermit": an ordinary std program (a Hermit unikernel); "bare": no_std on quest-rt.
runtime = "{rt}"
cores = [0]
memory = "{memory}"
# args = ["one", "two"]
# env = {{ GREETING = "hello" }}
"#
    )
}

/// The application's `Cargo.toml`.
fn cargo_toml(root: &Path, name: &str, runtime: Runtime) -> String {
    let dependencies = match runtime {
        Runtime::Hermit => String::new(),
        Runtime::Bare => format!(
            "# Quest's bare runtime: entry point, console, heap, arguments, channels.\n\
             quest-rt = {{ path = {:?} }}\n",
            root.join("unikernels")
                .join("quest-rt")
                .display()
                .to_string()
        ),
    };
    format!(
        "[package]\nname = \"{name}\"\nversion = \"0.1.0\"\nedition = \"2021\"\npublish = false\n\n\
         [dependencies]\n{dependencies}\n\
         # A package of its own, not a member of any enclosing workspace.\n[workspace]\n"
    )
}

/// The application: prints a greeting, its arguments, and exits 0.
fn main_rs(name: &str, runtime: Runtime) -> String {
    match runtime {
        Runtime::Hermit => format!(
            r#"//! `{name}`: an ordinary std program; Quest runs it as a Hermit unikernel.

fn main() {{
    let args: Vec<String> = std::env::args().skip(1).collect();
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    println!("hello from {name} on {{cores}} core(s), args {{args:?}}");
}}
"#
        ),
        Runtime::Bare => format!(
            r#"//! `{name}`: a `no_std` application on Quest's bare runtime (`quest-rt`).
#![no_std]
#![no_main]

use quest_rt::{{println, Ctx}};

quest_rt::entry!(main);

/// Runs on every vCPU of the sandbox; the sandbox exits once all have returned.
fn main(ctx: &Ctx) -> i32 {{
    println!(
        "hello from {{}} vcpu {{}} on core {{}}",
        ctx.name(),
        ctx.vcpu(),
        ctx.core()
    );
    0
}}
"#
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest;

    fn scratch(tag: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("quest-new-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        dir
    }

    #[test]
    fn names_follow_the_manifest_rules_and_start_with_a_letter() {
        for ok in ["a", "hello", "my-app_2"] {
            assert!(valid_name(ok), "{ok}");
        }
        for bad in [
            "",
            "1st",
            "Hello",
            "a b",
            "-x",
            "ä",
            &"n".repeat(quest_abi::NAME_LEN),
        ] {
            assert!(!valid_name(bad), "{bad}");
        }
    }

    /// Both runtimes' systems are valid manifests whose one sandbox runs the new app
    /// (the check asks cargo about the package), and nothing is ever overwritten.
    #[test]
    fn a_new_system_checks_and_is_never_overwritten() {
        let ws = Workspace::locate();
        let parent = scratch("unit");
        for (name, runtime) in [("hi-hermit", Runtime::Hermit), ("hi-bare", Runtime::Bare)] {
            let made = create(&ws, &parent, name, runtime).unwrap();
            let m =
                manifest::load(&made.manifest).unwrap_or_else(|d| panic!("{}", d.render(false)));
            assert_eq!(m.sandboxes.len(), 1);
            // `app` is relative to the manifest.
            assert_eq!(made.dir.join(&m.sandboxes[0].app.value), made.app);
            let before = std::fs::read_to_string(&made.manifest).unwrap();
            let err = create(&ws, &parent, name, runtime).unwrap_err();
            assert!(matches!(err, NewError::Exists(_)), "{err}");
            assert_eq!(std::fs::read_to_string(&made.manifest).unwrap(), before);
        }
        let err = create(&ws, &parent, "Bad Name", Runtime::Bare).unwrap_err();
        assert!(err.to_string().contains("cannot be a name"), "{err}");
        assert!(!parent.join("Bad Name").exists());
        std::fs::remove_dir_all(&parent).unwrap();
    }
}
