//! `quest-build new`, run as the binary: a new system of each runtime passes `check` and
//! builds into an image as it is; an existing directory is never overwritten.
//!
//! `image` needs the toolchains (the Hermit one is installed on first use) and GRUB;
//! the Hermit kernel is shared with the other tests through `images/hermit/`.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn quest_build(args: &[&str], cwd: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_quest-build"))
        .args(args)
        .current_dir(cwd)
        .output()
        .expect("quest-build runs")
}

fn assert_ok(out: &Output, what: &str) {
    assert!(
        out.status.success(),
        "{what}: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
}

fn scratch(test: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("quest-cli-new-{test}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// `new`, then `check` and `image` on what it wrote.
fn new_checks_and_builds(runtime: &str) {
    let dir = scratch(runtime);
    let name = format!("my-{runtime}");
    assert_ok(
        &quest_build(&["new", &name, "--runtime", runtime], &dir),
        "new",
    );
    let manifest = dir.join(&name).join(format!("{name}.toml"));
    let text = std::fs::read_to_string(&manifest).unwrap();
    assert!(text.contains("partition-manifests/README.md"), "{text}");
    assert!(text.contains(&format!("runtime = \"{runtime}\"")), "{text}");

    let manifest_arg = manifest.to_str().unwrap();
    assert_ok(&quest_build(&["check", manifest_arg], &dir), "check");
    let iso = dir.join("out").join(format!("{name}.iso"));
    let out = quest_build(&["image", manifest_arg, "-o", iso.to_str().unwrap()], &dir);
    assert_ok(&out, "image");
    assert!(iso.is_file() && iso.with_extension("elf").is_file());

    // A second `new` with the same name is refused and changes nothing.
    let out = quest_build(&["new", &name, "--runtime", runtime], &dir);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("already exists"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(std::fs::read_to_string(&manifest).unwrap(), text);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_new_bare_system_checks_and_builds() {
    new_checks_and_builds("bare");
}

#[test]
fn a_new_hermit_system_checks_and_builds() {
    new_checks_and_builds("hermit");
}

#[test]
fn bad_names_and_runtimes_are_clear_errors() {
    let dir = scratch("bad");
    let out = quest_build(&["new", "Not Valid"], &dir);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot be a name"));
    let out = quest_build(&["new", "x", "--runtime", "linux"], &dir);
    assert_eq!(out.status.code(), Some(2), "a usage error");
    assert_eq!(
        std::fs::read_dir(&dir).unwrap().count(),
        0,
        "nothing written"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}
