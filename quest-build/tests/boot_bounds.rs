//! Bounded communication, booted: `partition-manifests/bounds.toml` (three channels, one
//! per reader mode, 102 000 messages) must keep every message within the bound computed
//! from the same boot's calibration, and the tightest channel must come within half of
//! its bound (a bound nothing approaches is no use). Then the same system with a reader
//! that breaks its declared period, through `quest-build run --check-bounds`: it must say
//! VIOLATED and exit 1, which proves the check can fail.

use quest_build::bounds::{analyse, check::check, measured};
use quest_build::manifest;
use std::process::Command;

#[macro_use]
mod common;
use common::{assert_passed, line, repo_root};

#[test]
fn every_message_of_every_mode_is_within_its_bound() {
    let (_, out) = boot_example!("bounds");
    let c = &out.console;
    assert_passed(&out);
    for (sandbox, what) in [
        ("bulk-sink", "spin bulk: 96000 messages verified"),
        ("poller", "poll ticks: 4000 messages verified in "),
        ("sleeper", "doorbell pages: 2000 messages verified"),
    ] {
        line(c, &format!("[{sandbox}] {what}"));
    }
    let m = manifest::load(&repo_root().join("partition-manifests/bounds.toml"))
        .unwrap_or_else(|d| panic!("{}", d.render(false)));
    let profile = measured::profile(c, "bochs", "bounds").expect("the boot calibrated");
    let bounds = analyse(&m, &profile);
    let result = check(&bounds, &measured::latencies(c));
    println!("{}{}", result.report(), result.line());
    assert!(result.held(), "{}", result.line());
    assert!(result.unreported.is_empty(), "{:?}", result.unreported);
    assert_eq!(result.channels.len(), 3);
    assert!(result.messages() >= 100_000, "{}", result.line());
    for ch in &result.channels {
        assert_eq!(ch.early, 0, "{}: stamps from the future", ch.name);
        assert!(ch.worst > 0 && ch.median_at_least <= ch.worst, "{ch:?}");
    }
    let tightest = result.channels.iter().map(|c| c.ratio).fold(0.0, f64::max);
    assert!(
        tightest >= 0.5,
        "the tightest channel's worst latency is only {:.0}% of its bound",
        tightest * 100.0
    );
}

#[test]
fn a_reader_that_breaks_its_period_is_reported_as_a_violation() {
    require_bochs!();
    // bounds.toml with a poller that comes three periods late every fifth look, and less
    // traffic (the violation shows at once).
    let root = repo_root();
    let text = std::fs::read_to_string(root.join("partition-manifests/bounds.toml")).unwrap();
    let apps = root.join("unikernels/apps");
    let broken = text
        .replace("\"../unikernels/apps", &format!("\"{}", apps.display()))
        .replace("name = \"bounds\"", "name = \"bounds-overrun\"")
        .replace("OVERRUN = \"0\"", "OVERRUN = \"5\"")
        .replace("\"96000\"", "\"2000\"")
        .replace("COUNT = \"4000\"", "COUNT = \"100\"")
        .replace("COUNT = \"2000\"", "COUNT = \"50\"");
    assert!(broken.contains("OVERRUN = \"5\""));
    let dir = root.join("images/tests/bounds-overrun");
    std::fs::create_dir_all(&dir).unwrap();
    let manifest = dir.join("bounds-overrun.toml");
    std::fs::write(&manifest, broken).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_quest-build"))
        .args(["run", "--check-bounds", "--timeout", "600"])
        .arg(&manifest)
        .output()
        .expect("quest-build runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    println!("{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    let verdict = line(&stdout, "bounds: ");
    assert!(verdict.ends_with("VIOLATED on ticks"), "{verdict}");
    line(&stdout, "quest: all sandboxes exited 0");
    assert_eq!(out.status.code(), Some(1), "a violation fails the run");
}
