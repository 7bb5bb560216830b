//! Golden test: every valid example manifest `partition-manifests/NAME.toml` plans to the
//! report in `partition-manifests/expected/NAME.plan.txt`.
//!
//! After an intended change, regenerate the files with
//! `QUEST_BLESS=1 cargo test -p quest-build --test golden_plan` and review the diff.

use quest_build::{manifest, plan};
use std::path::{Path, PathBuf};

fn manifests_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../partition-manifests")
}

fn example_manifests() -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(manifests_dir())
        .expect("partition-manifests/ exists")
        .map(|e| e.expect("readable directory entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    files.sort();
    files
}

#[test]
fn every_example_plans_to_its_expected_report() {
    let bless = std::env::var_os("QUEST_BLESS").is_some_and(|v| v == "1");
    let files = example_manifests();
    assert!(!files.is_empty(), "no example manifests found");
    let mut failures = Vec::new();
    for path in &files {
        let name = path.file_stem().unwrap().to_string_lossy().into_owned();
        let m = match manifest::load(path) {
            Ok(m) => m,
            Err(d) => {
                failures.push(format!("{name}: invalid manifest:\n{}", d.render(false)));
                continue;
            }
        };
        let p = plan::plan(&m);
        let table = plan::encode_table(&p, None).expect("a valid manifest gives a valid table");
        let report = plan::report::render(&p, &table, &m.base_dir);
        assert_eq!(
            report,
            plan::report::render(&plan::plan(&m), &table, &m.base_dir),
            "{name}: the report is deterministic"
        );
        let expected = manifests_dir()
            .join("expected")
            .join(format!("{name}.plan.txt"));
        if bless {
            std::fs::create_dir_all(expected.parent().unwrap()).unwrap();
            std::fs::write(&expected, &report).unwrap();
            continue;
        }
        match std::fs::read_to_string(&expected) {
            Ok(want) if want == report => {}
            Ok(want) => failures.push(format!(
                "{name}: report differs from {}\n--- expected\n{want}\n--- actual\n{report}",
                expected.display()
            )),
            Err(e) => failures.push(format!(
                "{name}: cannot read {} ({e}); run with QUEST_BLESS=1 to create it",
                expected.display()
            )),
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}
