//! Bounded communication, booted through `quest-build run --check-bounds --json`, as a user
//! runs it: `partition-manifests/bounds.toml` (three channels, one per reader mode, 102 000
//! messages) must keep every message within the bound computed from the same boot's
//! calibration, and the tightest channel must come within half of its bound (a bound
//! nothing approaches is no use). Then the same system with a reader that breaks its
//! declared period: the check must say VIOLATED and exit 1, which proves it can fail.
//!
//! Both on VT-x (Bochs' Intel model) and on SVM in Bochs' AMD `ryzen` model, with the same
//! checks. Not on SVM in QEMU's software emulation: the bounds assume every endpoint has
//! its core to itself, which TCG cannot give (measured with QEMU 7.2, bounds.toml, 6 vCPUs,
//! on a 2-core host; run `--ignored` to see it again):
//! - single-threaded, one host thread runs the vCPUs in turn and a vCPU keeps it until it
//!   `PAUSE`s, halts or exits; without `-icount` the TSC (the host's clock) runs on for all:
//!   a reader waits for whatever the other five vCPUs do in their turns and the host's
//!   scheduling of the one thread. Calibration is sane there (line round trip median 2.3-3.6 k
//!   cycles, TSC offsets -0.8 k +- 1.2 k) but its maxima are 60-100x the medians, and
//!   messages still exceed them: ticks worst 68.6 M of 68.8 M and 239 M (92 ms) of 50 M,
//!   pages 5 063 214 of 5 062 933 and 3.93 M of 3.91 M (two runs);
//! - with `-icount shift=7,sleep=off` (what `quest_build::run::qemu` uses) the TSC counts the
//!   instructions of all vCPUs (deterministic: the calibration gives exactly 128x Bochs'
//!   counts, copy 17 248 = 135 x 128 cycles per KiB, and the whole boot takes 3.7 s), but the
//!   turns stay: a burst writer fills and sends its 12 messages before its reader runs at
//!   all, so bulk's median latency is >= 8.4 M cycles (65 k instructions, against ~2 k on
//!   Bochs): bulk 140%, ticks 273%, pages 985% of their bounds;
//! - multi-threaded (6 vCPU threads on 2 host cores) the host's scheduler decides: line round
//!   trips of 114 M cycles (max 239 M), bounds of 60-600 G cycles that hold at 0-1%, so the
//!   tightest-within-half check fails.

use quest_build::run::{qemu::Accel, Emulator};
use std::path::{Path, PathBuf};
use std::process::Command;

#[macro_use]
mod common;
use common::{line, number_after, repo_root};

/// The `quest-build run` options that choose `emulator`.
fn emulator_args(emulator: Emulator) -> &'static [&'static str] {
    match emulator {
        Emulator::Bochs => &["--emulator", "bochs"],
        Emulator::BochsAmd => &["--cpu", "amd"],
        Emulator::Qemu(Accel::Tcg) => &["--emulator", "qemu"],
        Emulator::Qemu(Accel::Kvm) => unreachable!("chosen by the host, not by a test"),
    }
}

/// bounds.toml rewritten by `edit` (its app paths made absolute) as system `name`, in
/// `images/tests/<name>/` (each emulator's boot builds its own image).
fn variant(name: &str, edit: impl FnOnce(String) -> String) -> PathBuf {
    let root = repo_root();
    let text = std::fs::read_to_string(root.join("partition-manifests/bounds.toml")).unwrap();
    let apps = root.join("unikernels/apps");
    let text = text
        .replace("\"../unikernels/apps", &format!("\"{}", apps.display()))
        .replace("name = \"bounds\"", &format!("name = \"{name}\""));
    assert!(text.contains(&format!("name = \"{name}\"")));
    let dir = root.join("images/tests").join(name);
    std::fs::create_dir_all(&dir).unwrap();
    let manifest = dir.join(format!("{name}.toml"));
    std::fs::write(&manifest, edit(text)).unwrap();
    manifest
}

/// Runs `quest-build run --check-bounds --json MANIFEST` as a user would: its exit status,
/// its stdout (the console, then the check).
fn run_checked(manifest: &Path, emulator: Emulator) -> (Option<i32>, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_quest-build"))
        .args(["run", "--check-bounds", "--json", "--timeout", "900"])
        .args(emulator_args(emulator))
        .arg(manifest)
        .output()
        .expect("quest-build runs");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    println!("{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    (out.status.code(), stdout)
}

/// The verdict line, printed last (the JSON before it quotes it too).
fn verdict(stdout: &str) -> &str {
    stdout
        .lines()
        .rfind(|l| l.starts_with("bounds: "))
        .unwrap_or_else(|| panic!("no verdict line"))
}

/// The JSON document `--json` printed after the console.
fn check_json(stdout: &str) -> serde_json::Value {
    let start = stdout.find("\n{\n").expect("a JSON document") + 1;
    let end = stdout[start..].find("\n}\n").expect("its end") + start + 2;
    serde_json::from_str(&stdout[start..end]).expect("valid JSON")
}

/// bounds.toml (as `manifest`) in `emulator`: every message within its bound, the tightest
/// channel within half of it.
fn every_message_is_within_its_bound(manifest: &Path, emulator: Emulator) {
    let (status, stdout) = run_checked(manifest, emulator);
    line(&stdout, "quest: all sandboxes exited 0");
    for (sandbox, what) in [
        ("bulk-sink", "spin bulk: 96000 messages verified"),
        ("poller", "poll ticks: 4000 messages verified in "),
        ("sleeper", "doorbell pages: 2000 messages verified"),
    ] {
        line(&stdout, &format!("[{sandbox}] {what}"));
    }
    // The doorbell reader really sleeps: it waits in WAIT for (nearly) every one of its
    // 2000 messages, each after a 2 ms pause, and is woken by the writer's doorbell.
    let sleeper = line(&stdout, "quest:   'sleeper': exited 0");
    let slept = number_after(sleeper, "(slept ");
    assert!(
        slept >= 1000,
        "the doorbell reader slept {slept} times: {sleeper}"
    );
    let verdict = verdict(&stdout);
    assert!(verdict.ends_with(", held"), "{verdict}");
    assert_eq!(status, Some(0));
    let v = check_json(&stdout);
    assert_eq!(v["held"], true);
    assert_eq!(v["unreported"].as_array().map(Vec::len), Some(0));
    let channels = v["channels"].as_array().expect("channels");
    assert_eq!(channels.len(), 3);
    let mut messages = 0;
    let mut tightest = 0.0f64;
    for ch in channels {
        let n = ch["messages"].as_u64().unwrap_or(0);
        let (worst, bound) = (
            ch["worst"].as_u64().unwrap_or(0),
            ch["bound"].as_u64().unwrap_or(0),
        );
        assert_eq!(ch["early"], 0, "{}: stamps from the future", ch["name"]);
        assert!(n > 0 && worst > 0 && worst <= bound, "{ch}");
        let histogram: u64 = ch["histogram"]
            .as_array()
            .expect("buckets")
            .iter()
            .filter_map(|b| b.as_u64())
            .sum();
        assert_eq!(
            histogram, n,
            "{}: every message is in the histogram",
            ch["name"]
        );
        messages += n;
        tightest = tightest.max(ch["ratio"].as_f64().unwrap_or(0.0));
    }
    assert!(messages >= 100_000, "{messages} messages");
    assert!(
        tightest >= 0.5,
        "the tightest channel's worst latency is only {:.0}% of its bound",
        tightest * 100.0
    );
}

#[test]
fn every_message_of_every_mode_is_within_its_bound() {
    require_bochs!();
    every_message_is_within_its_bound(
        &repo_root().join("partition-manifests/bounds.toml"),
        Emulator::Bochs,
    );
}

#[test]
fn every_message_of_every_mode_is_within_its_bound_on_svm_in_bochs_ryzen() {
    require_bochs!();
    let manifest = variant("bounds-svm", |t| t);
    every_message_is_within_its_bound(&manifest, Emulator::BochsAmd);
}

/// Fails: see the module documentation.
#[test]
#[ignore = "QEMU's software emulation cannot give each endpoint its own core (module documentation)"]
fn every_message_of_every_mode_is_within_its_bound_on_svm_in_qemu() {
    require_qemu!();
    let manifest = variant("bounds-qemu", |t| t);
    every_message_is_within_its_bound(&manifest, Emulator::Qemu(Accel::Tcg));
}

/// bounds.toml (as system `name`) with a poller that comes three periods late every fifth
/// look, and less traffic (the violation shows at once), in `emulator`: VIOLATED, exit 1.
fn a_broken_period_is_a_violation(name: &str, emulator: Emulator) {
    let manifest = variant(name, |text| {
        let broken = text
            .replace("OVERRUN = \"0\"", "OVERRUN = \"5\"")
            .replace("\"96000\"", "\"2000\"")
            .replace("COUNT = \"4000\"", "COUNT = \"100\"")
            .replace("COUNT = \"2000\"", "COUNT = \"50\"");
        assert!(broken.contains("OVERRUN = \"5\""));
        broken
    });
    let (status, stdout) = run_checked(&manifest, emulator);
    let verdict = verdict(&stdout);
    assert!(verdict.ends_with("VIOLATED on ticks"), "{verdict}");
    line(&stdout, "quest: all sandboxes exited 0");
    assert_eq!(check_json(&stdout)["held"], false);
    assert_eq!(status, Some(1), "a violation fails the run");
}

#[test]
fn a_reader_that_breaks_its_period_is_reported_as_a_violation() {
    require_bochs!();
    a_broken_period_is_a_violation("bounds-overrun", Emulator::Bochs);
}

#[test]
fn a_reader_that_breaks_its_period_is_reported_on_svm_in_bochs_ryzen() {
    require_bochs!();
    a_broken_period_is_a_violation("bounds-overrun-svm", Emulator::BochsAmd);
}
