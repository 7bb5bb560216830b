//! Bounded communication, booted through `quest-build run --check-bounds --json`, as a user
//! runs it: `partition-manifests/bounds.toml` (three channels, one per reader mode, 102 000
//! messages) must keep every message within the bound computed from the same boot's
//! calibration, and the tightest channel must come within half of its bound (a bound
//! nothing approaches is no use). Then the same system with a reader that breaks its
//! declared period: the check must say VIOLATED and exit 1, which proves it can fail.

use std::process::Command;

#[macro_use]
mod common;
use common::{line, repo_root};

/// Runs `quest-build run --check-bounds --json MANIFEST` as a user would: its exit status,
/// its stdout (the console, then the check).
fn run_checked(manifest: &std::path::Path) -> (Option<i32>, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_quest-build"))
        .args(["run", "--check-bounds", "--json", "--timeout", "900"])
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

#[test]
fn every_message_of_every_mode_is_within_its_bound() {
    require_bochs!();
    let (status, stdout) = run_checked(&repo_root().join("partition-manifests/bounds.toml"));
    line(&stdout, "quest: all sandboxes exited 0");
    for (sandbox, what) in [
        ("bulk-sink", "spin bulk: 96000 messages verified"),
        ("poller", "poll ticks: 4000 messages verified in "),
        ("sleeper", "doorbell pages: 2000 messages verified"),
    ] {
        line(&stdout, &format!("[{sandbox}] {what}"));
    }
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
    let (status, stdout) = run_checked(&manifest);
    let verdict = verdict(&stdout);
    assert!(verdict.ends_with("VIOLATED on ticks"), "{verdict}");
    line(&stdout, "quest: all sandboxes exited 0");
    assert_eq!(check_json(&stdout)["held"], false);
    assert_eq!(status, Some(1), "a violation fails the run");
}
