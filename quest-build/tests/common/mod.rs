//! Helpers the boot tests share: skip only when Bochs is missing and `QUEST_REQUIRE_BOOT`
//! is unset, build an example manifest, boot it (at most [`PARALLEL_BOOTS`] at a time),
//! read the console.
//!
//! Each test crate includes this module and uses a part of it.
#![allow(dead_code)]

use quest_build::build::{Progress, Workspace};
use quest_build::cli::bench_channels::{round_trips, stream, Stream};
use quest_build::image::{build_image, BuiltImage, ImageRequest};
use quest_build::run::{self, Emulator, RunOptions, RunOutcome};
use std::path::Path;
use std::sync::{Condvar, Mutex};
use std::time::Duration;

/// Wall-clock limit per boot (Bochs emulates every core on one host core; pingpong and
/// pingpong-hermit take 30-35 s of Bochs on an idle core).
pub const BOOT_TIMEOUT: Duration = Duration::from_secs(600);
/// Boots at a time: the machines this runs on have two cores.
pub const PARALLEL_BOOTS: u32 = 2;

/// `Some(reason)` if the boot tests must be skipped: only when Bochs is missing and the
/// environment does not require booting.
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

/// Builds `partition-manifests/<name>.toml` into `images/tests/<output>.iso`.
pub fn build(name: &str, output: &str) -> BuiltImage {
    let ws = Workspace::locate();
    let req = ImageRequest {
        manifest: ws
            .root
            .join("partition-manifests")
            .join(format!("{name}.toml")),
        iso: Some(ws.images().join("tests").join(format!("{output}.iso"))),
        make_iso: true,
    };
    build_image(&ws, &req, &Progress::stderr()).unwrap_or_else(|e| panic!("building {name}: {e}"))
}

/// Limits concurrent boots to [`PARALLEL_BOOTS`].
struct BootSlots {
    used: Mutex<u32>,
    freed: Condvar,
}

static SLOTS: BootSlots = BootSlots {
    used: Mutex::new(0),
    freed: Condvar::new(),
};

/// Boots `iso` (whose ELF is `elf`) in `emulator`, and prints its console (shown on
/// failure; the test harness captures it otherwise).
pub fn boot_with(iso: &Path, elf: &Path, emulator: Emulator) -> RunOutcome {
    {
        let mut used = SLOTS.used.lock().unwrap_or_else(|e| e.into_inner());
        while *used >= PARALLEL_BOOTS {
            used = SLOTS.freed.wait(used).unwrap_or_else(|e| e.into_inner());
        }
        *used += 1;
    }
    let machine = run::machine_of(elf).expect("the image has a readable table");
    let opts = RunOptions {
        emulator: Some(emulator),
        timeout: BOOT_TIMEOUT,
        echo: false,
    };
    let result = run::boot(
        &Workspace::locate(),
        iso,
        machine,
        &opts,
        &mut std::io::sink(),
    );
    *SLOTS.used.lock().unwrap_or_else(|e| e.into_inner()) -= 1;
    SLOTS.freed.notify_one();
    let outcome = result.expect("the emulator runs");
    println!(
        "--- console of {} ({}) ---\n{}--- end: {} ---",
        iso.display(),
        outcome.emulator,
        outcome.console,
        outcome.describe()
    );
    outcome
}

/// Boots a built image in Bochs.
pub fn boot(built: &BuiltImage) -> RunOutcome {
    let iso = built.iso.as_ref().expect("an ISO was built");
    boot_with(iso, &built.elf, Emulator::Bochs)
}

/// Builds `partition-manifests/<name>.toml` into `images/tests/<name>.iso` and boots it.
pub fn build_and_boot(name: &str) -> (BuiltImage, RunOutcome) {
    let built = build(name, name);
    let out = boot(&built);
    (built, out)
}

/// Fails unless a console line contains `wanted`.
pub fn assert_line(console: &str, wanted: &str) {
    line(console, wanted);
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

/// Checks ping's benchmark lines (2000 round trips of each size, a 2000 x 4 KiB stream) are
/// there and consistent with themselves; returns the stream line.
pub fn check_ping_benchmark(console: &str) -> Stream {
    let rtts = round_trips(console, "ping");
    let sizes: Vec<u64> = rtts.iter().map(|r| r.size).collect();
    assert_eq!(sizes, [64, 1024, 4096]);
    for r in &rtts {
        assert_eq!(r.rounds, 2000);
        assert!(0 < r.min && r.min <= r.median && r.median <= r.p99 && r.p99 <= r.max);
    }
    // A 4 KiB message costs more than a 64 B one (the copy is real).
    assert!(rtts[2].median > rtts[0].median);
    let s = stream(console, "ping").expect("a stream line");
    assert_eq!(s.bytes, 2000 * 4096);
    s
}
