//! Any bytes as a manifest: parsing, validation and diagnostic rendering never panic, and
//! every accepted manifest plans to a partition table that the ABI's validate accepts.
#![no_main]

use libfuzzer_sys::fuzz_target;
use quest_build::manifest::{parse_and_validate, AppCheck};
use quest_build::plan;
use std::path::Path;

/// Apps are decided by the path itself (no cargo), so both outcomes are exercised.
struct PathParityApps;

impl AppCheck for PathParityApps {
    fn check(&self, dir: &Path) -> Result<(), String> {
        if dir.as_os_str().len() % 7 == 0 {
            Err("no Cargo.toml in this directory".into())
        } else {
            Ok(())
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(source) = std::str::from_utf8(data) else {
        return;
    };
    match parse_and_validate(Path::new("fuzz/m.toml"), source, &PathParityApps) {
        Ok(manifest) => {
            let plan = plan::plan(&manifest);
            if let Err(e) = plan::encode_table(&plan, None) {
                panic!("a valid manifest gave an invalid table: {e}\n{source}");
            }
        }
        Err(diagnostics) => {
            assert!(diagnostics.has_errors());
            let _ = diagnostics.render(false);
            let _ = diagnostics.render(true);
        }
    }
});
