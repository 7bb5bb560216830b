//! Golden test: every valid example manifest `partition-manifests/NAME.toml` plans to the
//! report in `partition-manifests/expected/NAME.plan.txt`.
//!
//! After an intended change, regenerate the files with
//! `QUEST_BLESS=1 cargo test -p quest-build --test golden_plan` and review the diff.

mod common;

use common::{golden, manifests, repo_root};
use quest_build::{manifest, plan};

#[test]
fn every_example_plans_to_its_expected_report() {
    let files = manifests("partition-manifests");
    assert!(!files.is_empty(), "no example manifests found");
    let mut failures = Vec::new();
    for path in &files {
        let name = path.file_stem().unwrap().to_string_lossy().into_owned();
        let m = match manifest::load(&repo_root().join(path)) {
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
        let expected = repo_root()
            .join("partition-manifests/expected")
            .join(format!("{name}.plan.txt"));
        if let Err(why) = golden(&name, &expected, &report) {
            failures.push(why);
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}
