//! Helpers the channel boot tests share: skip only when Bochs is missing and
//! `QUEST_REQUIRE_BOOT` is unset, build and boot one example manifest, read the console.

use quest_build::build::{Progress, Workspace};
use quest_build::image::{build_image, BuiltImage, ImageRequest};
use quest_build::run::{self, Emulator, RunOptions, RunOutcome};
use std::time::Duration;

/// Wall-clock limit per boot (pingpong and pingpong-hermit take 30-35 s of Bochs on an idle core).
pub const BOOT_TIMEOUT: Duration = Duration::from_secs(400);

pub fn skip_reason() -> Option<String> {
    let missing = run::host::bochs_missing()?;
    if std::env::var_os("QUEST_REQUIRE_BOOT").is_some() {
        panic!("QUEST_REQUIRE_BOOT is set, but {missing}");
    }
    Some(missing)
}

macro_rules! require_bochs {
    () => {
        if let Some(reason) = crate::common::skip_reason() {
            eprintln!("\n*** SKIPPED boot test: {reason} (set QUEST_REQUIRE_BOOT=1 to fail instead) ***\n");
            return;
        }
    };
}

/// Builds `partition-manifests/<name>.toml` into `images/tests/<name>.iso` and boots it.
pub fn build_and_boot(name: &str) -> (BuiltImage, RunOutcome) {
    let ws = Workspace::locate();
    let req = ImageRequest {
        manifest: ws
            .root
            .join("partition-manifests")
            .join(format!("{name}.toml")),
        iso: Some(ws.images().join("tests").join(format!("{name}.iso"))),
        make_iso: true,
    };
    let built = build_image(&ws, &req, &Progress::stderr())
        .unwrap_or_else(|e| panic!("building {name}: {e}"));
    let iso = built.iso.clone().expect("an ISO was built");
    let machine = run::machine_of(&built.elf).expect("the image has a readable table");
    let opts = RunOptions {
        emulator: Some(Emulator::Bochs),
        timeout: BOOT_TIMEOUT,
        echo: false,
    };
    let out = run::boot(&ws, &iso, machine, &opts, &mut std::io::sink()).expect("Bochs runs");
    // Shown on failure (the test harness captures it otherwise).
    println!(
        "--- console of {name} ---\n{}--- end: {} ---",
        out.console,
        out.describe()
    );
    (built, out)
}

pub fn line<'a>(console: &'a str, wanted: &str) -> &'a str {
    console
        .lines()
        .find(|l| l.contains(wanted))
        .unwrap_or_else(|| panic!("no console line contains {wanted:?}"))
}

/// The number right after `key` in `text`.
pub fn number_after(text: &str, key: &str) -> u64 {
    let rest = text
        .split_once(key)
        .unwrap_or_else(|| panic!("{key:?} not in {text:?}"))
        .1;
    rest.split(|c: char| !c.is_ascii_digit())
        .next()
        .and_then(|d| d.parse().ok())
        .unwrap_or_else(|| panic!("no number after {key:?} in {text:?}"))
}
