//! The `check` and `plan` commands, run as the binary: output and exit statuses
//! (0 ok, 1 invalid input, 2 usage).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// A scratch directory with a two-sandbox manifest, its applications (minimal Cargo
/// packages) and a broken manifest; removed on drop.
struct Scratch {
    dir: PathBuf,
}

impl Scratch {
    fn new(test: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("quest-cli-{test}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        for app in ["ping", "pong"] {
            let src = dir.join("apps").join(app).join("src");
            std::fs::create_dir_all(&src).unwrap();
            std::fs::write(
                dir.join("apps").join(app).join("Cargo.toml"),
                format!("[package]\nname = \"{app}\"\nversion = \"0.1.0\"\nedition = \"2021\"\n\n[workspace]\n"),
            )
            .unwrap();
            std::fs::write(src.join("main.rs"), "fn main() {}\n").unwrap();
        }
        std::fs::write(
            dir.join("good.toml"),
            r#"[system]
name = "pair"
cores = 4
memory = "512MiB"

[[sandbox]]
name = "ping"
app = "apps/ping"
runtime = "bare"
cores = [0]
memory = "16MiB"

[[sandbox]]
name = "pong"
app = "apps/pong"
cores = [1, 2]
memory = "64MiB"

[[channel]]
name = "ping-to-pong"
writer = "ping"
reader = "pong"
size = "64KiB"
"#,
        )
        .unwrap();
        std::fs::write(
            dir.join("bad.toml"),
            "[system]\nname = \"bad\"\ncores = 2\nmemory = \"64MiB\"\n\n[[sandbox]]\nname = \"x\"\napp = \"apps/ping\"\ncores = [5]\nmemory = \"16MiB\"\n",
        )
        .unwrap();
        Self { dir }
    }
    fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn quest_build(args: &[&dyn AsRef<std::ffi::OsStr>]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_quest-build"))
        .args(args.iter().map(|a| a.as_ref()))
        .output()
        .expect("quest-build runs")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Runs quest-build, asserts it succeeded and returns its standard output.
fn stdout_of(args: &[&dyn AsRef<std::ffi::OsStr>]) -> String {
    let out = quest_build(args);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    text(&out.stdout)
}

#[test]
fn check_reports_every_manifest_and_fails_if_one_is_invalid() {
    let s = Scratch::new("check");
    let (good, bad) = (s.path("good.toml"), s.path("bad.toml"));
    let out = quest_build(&[&"check", &good]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(
        text(&out.stdout),
        format!("ok: {}: 2 sandboxes, 1 channel\n", good.display())
    );

    // The invalid one first: the valid one after it is still checked.
    let out = quest_build(&[&"check", &bad, &good]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stdout).contains("ok: "), "{}", text(&out.stdout));
    let err = text(&out.stderr);
    assert!(
        err.contains("bad.toml:"),
        "diagnostics name the file: {err}"
    );
    assert!(err.contains("1 of 2 manifests are invalid"), "{err}");
}

#[test]
fn plan_prints_report_json_and_svg() {
    let s = Scratch::new("plan");
    let good = s.path("good.toml");
    let report = stdout_of(&[&"plan", &good]);
    assert!(
        report.starts_with("system `pair`: 4 cores, 512 MiB RAM"),
        "{report}"
    );
    for wanted in ["channel `ping-to-pong` data (writer)", "partition table: "] {
        assert!(report.contains(wanted), "{report}");
    }

    let v: serde_json::Value =
        serde_json::from_str(&stdout_of(&[&"plan", &"--json", &good])).expect("valid JSON");
    assert_eq!(v["sandboxes"][1]["vcpus"][1]["core"], 2);
    assert_eq!(v["sandboxes"][0]["app"], "apps/ping");
    assert_eq!(v["channels"][0]["data_size"], 65536);

    let svg = s.path("pair.svg");
    let out = quest_build(&[&"plan", &good, &"--svg", &svg]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let picture = std::fs::read_to_string(&svg).unwrap();
    assert!(picture.starts_with("<svg "), "{picture}");
    assert!(picture.contains(">ping-to-pong (64 KiB)</text>"));
    assert_eq!(text(&out.stdout), report, "--svg still prints the report");
}

#[test]
fn plan_fails_with_status_1_on_bad_input_and_2_on_usage() {
    let s = Scratch::new("status");
    let out = quest_build(&[&"plan", &s.path("bad.toml")]);
    assert_eq!(out.status.code(), Some(1));
    assert!(out.stdout.is_empty());
    let out = quest_build(&[&"plan", &s.path("missing.toml")]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    let unwritable = Path::new("/nonexistent-dir/x.svg");
    let out = quest_build(&[&"plan", &s.path("good.toml"), &"--svg", &unwritable]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("cannot write"),
        "{}",
        text(&out.stderr)
    );

    assert_eq!(quest_build(&[&"check"]).status.code(), Some(2));
    assert_eq!(quest_build(&[&"plan"]).status.code(), Some(2));
    assert_eq!(
        quest_build(&[&"plan", &"--bogus", &"x.toml"]).status.code(),
        Some(2)
    );
    let help = quest_build(&[&"plan", &"--help"]);
    assert_eq!(help.status.code(), Some(0));
    assert!(text(&help.stdout).contains("--svg <FILE>"));
}

#[test]
fn bounds_prints_each_migratable_sandbox_and_its_admission() {
    let example =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../partition-manifests/migration.toml");
    let report = stdout_of(&[&"bounds", &example]);
    assert!(
        report.starts_with("bounds for 'migration': 3 channel(s), 2 migratable sandbox(es)"),
        "{report}"
    );
    assert!(
        report.contains("sandbox 'mover' migrates cores [1] <-> [2], 4096 KiB of RAM moving"),
        "{report}"
    );
    assert!(
        report.contains("admission: accepted if the least pause"),
        "{report}"
    );

    let v: serde_json::Value =
        serde_json::from_str(&stdout_of(&[&"bounds", &"--json", &example])).expect("valid JSON");
    let m = &v["migrations"][0];
    assert_eq!(m["sandbox"], "mover");
    let n = |k: &str| {
        m[k].as_u64()
            .unwrap_or_else(|| panic!("{k} is a number: {m}"))
    };
    assert_eq!(n("least"), n("park") + n("least_copy"));
    assert!(
        n("least") <= n("worst") && n("worst") <= n("stop_and_copy"),
        "{m}"
    );
    assert!(n("worst") <= n("budget"), "{m}");
    assert_eq!(m["admissible"], true);
}
