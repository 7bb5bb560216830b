//! Golden tests of the manifest language.
//!
//! Every `partition-manifests/invalid/<kind>.toml` must be rejected with exactly the
//! diagnostics in `<kind>.stderr` (plain, as `quest-build check` prints them when run from
//! the repository root). Every example `partition-manifests/*.toml` must be accepted.
//!
//! `QUEST_BLESS=1 cargo test -p quest-build --test golden_manifest` rewrites the
//! `.stderr` files from the current output; review the diff before committing it.

mod common;

use common::{golden, manifests, repo_root};
use quest_build::manifest::{self, AppCheck, CargoAppCheck};
use std::fs;
use std::path::Path;

/// The real app check, for paths relative to the repository root.
struct FromRoot(CargoAppCheck);

impl AppCheck for FromRoot {
    fn check(&self, dir: &Path) -> Result<(), String> {
        self.0.check(&repo_root().join(dir))
    }
}

fn check(rel: &Path, apps: &FromRoot) -> Result<manifest::Manifest, manifest::Diagnostics> {
    let bytes = fs::read(repo_root().join(rel)).expect("readable fixture");
    let source = manifest::source::decode(rel, bytes)?;
    manifest::parse_and_validate(rel, &source, apps)
}

#[test]
fn invalid_fixtures_give_their_diagnostics() {
    let apps = FromRoot(CargoAppCheck::new());
    let fixtures = manifests("partition-manifests/invalid");
    assert!(fixtures.len() >= 22, "only {} fixtures", fixtures.len());
    let mut failures = Vec::new();
    for rel in &fixtures {
        let expected_path = repo_root().join(rel.with_extension("stderr"));
        let actual = match check(rel, &apps) {
            Ok(_) => {
                failures.push(format!(
                    "{}: accepted, but it is an invalid fixture",
                    rel.display()
                ));
                continue;
            }
            Err(d) => d.render(false),
        };
        if let Err(why) = golden(&rel.display().to_string(), &expected_path, &actual) {
            failures.push(why);
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

/// Each `.stderr` names its file and a line for every error, and there is one summary.
#[test]
fn expected_diagnostics_are_located() {
    for rel in manifests("partition-manifests/invalid") {
        let Ok(expected) = fs::read_to_string(repo_root().join(rel.with_extension("stderr")))
        else {
            continue; // reported by the golden test
        };
        let errors =
            expected.matches("\nerror: ").count() + usize::from(expected.starts_with("error: "));
        let locations = expected
            .matches(&format!(" --> {}:", rel.display()))
            .count();
        // Every error but the summary line is located at file:line:col.
        assert_eq!(locations, errors - 1, "{}:\n{expected}", rel.display());
        assert!(expected.contains("= help: "), "{}: no hint", rel.display());
    }
}

#[test]
fn many_errors_are_all_reported() {
    let apps = FromRoot(CargoAppCheck::new());
    let d = check(
        Path::new("partition-manifests/invalid/many-errors.toml"),
        &apps,
    )
    .unwrap_err();
    assert!(d.error_count() >= 5, "{}", d.render(false));
}

#[test]
fn examples_are_valid() {
    let apps = FromRoot(CargoAppCheck::new());
    let examples = manifests("partition-manifests");
    assert!(examples.len() >= 3);
    for rel in examples {
        if let Err(d) = check(&rel, &apps) {
            panic!("{} is invalid:\n{}", rel.display(), d.render(false));
        }
    }
}

#[test]
fn load_reads_the_file_and_checks_apps_for_real() {
    let m = manifest::load(&repo_root().join("partition-manifests/hello.toml")).unwrap();
    assert_eq!(m.system.name.value, "hello");
    let d = manifest::load(&repo_root().join("partition-manifests/invalid/app-no-binary.toml"))
        .unwrap_err();
    assert!(d
        .render(false)
        .contains("package `lib-only` has no binary target"));
}
