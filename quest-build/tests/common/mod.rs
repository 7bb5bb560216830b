//! Helpers the integration tests share. Boot tests: skip only when Bochs is missing and
//! `QUEST_REQUIRE_BOOT` is unset, build an example manifest, boot it (at most
//! [`PARALLEL_BOOTS`] at a time), read the console. Golden tests: list the manifests of a
//! directory, compare with (or bless) an expected file.
//!
//! Each test crate includes this module and uses a part of it.
#![allow(dead_code, unused_macros)]

pub mod checks;

use quest_abi::console::{Migrated, Record};
use quest_build::build::{Progress, Workspace};
use quest_build::cli::bench_channels::{messages_sent, round_trips, stream, Stream};
use quest_build::image::{build_image, BuiltImage, ImageRequest};
use quest_build::run::{self, Emulator, RunOptions, RunOutcome};
use std::path::{Path, PathBuf};
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

/// Skips the test unless QEMU (and, like every boot test, Bochs' setup) is there.
macro_rules! require_qemu {
    () => {
        require_bochs!();
        if let Some(missing) = quest_build::run::host::qemu_missing() {
            if std::env::var_os("QUEST_REQUIRE_BOOT").is_some() {
                panic!("QUEST_REQUIRE_BOOT is set, but {missing}");
            }
            eprintln!("\n*** SKIPPED SVM boot test: {missing} ***\n");
            return;
        }
    };
}

/// Skips the test like `require_bochs!`, else builds `partition-manifests/<name>.toml` and
/// boots it: `(built image, outcome)`.
macro_rules! boot_example {
    ($name:expr) => {{
        require_bochs!();
        crate::common::build_and_boot($name)
    }};
}

/// Tests that each boot `partition-manifests/<manifest>.toml` with `$boot` (a function of
/// the manifest's name giving `(built image, outcome)`), after skipping the way `$require!`
/// does, and apply the check `common::checks::<check>` to the outcome. The VT-x boot tests
/// and the SVM ones share the checks this way.
macro_rules! boot_checks {
    ($require:ident, $boot:expr; $($test:ident: $manifest:literal => $check:ident;)*) => {$(
        #[test]
        fn $test() {
            $require!();
            let (_, out) = $boot($manifest);
            crate::common::checks::$check(&out);
        }
    )*};
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
    let machine = run::machine_of(elf).expect("the image has a readable table");
    boot_machine(iso, machine, emulator)
}

/// [`boot_with`] in QEMU with `iommu` on the Q35 machine of a table naming PCI devices
/// (`quest-build run --iommu`).
pub fn boot_with_iommu(
    iso: &Path,
    elf: &Path,
    emulator: Emulator,
    iommu: quest_build::run::qemu::Iommu,
) -> RunOutcome {
    let machine = run::machine_of(elf).expect("the image has a readable table");
    assert!(machine.qemu_devices.any_pci(), "no PCI device: no IOMMU");
    let machine = run::Machine {
        qemu_devices: machine.qemu_devices.with_iommu(iommu),
        ..machine
    };
    boot_machine(iso, machine, emulator)
}

/// Boots `iso` on `machine` in `emulator` (see [`boot_with`]).
fn boot_machine(iso: &Path, machine: run::Machine, emulator: Emulator) -> RunOutcome {
    {
        let mut used = SLOTS.used.lock().unwrap_or_else(|e| e.into_inner());
        while *used >= PARALLEL_BOOTS {
            used = SLOTS.freed.wait(used).unwrap_or_else(|e| e.into_inner());
        }
        *used += 1;
    }
    let opts = RunOptions::new(Some(emulator), BOOT_TIMEOUT);
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

/// Builds hello.toml into `images/tests/<output>.iso`, flips one byte of sandbox `beta`'s
/// first payload (the host's inspection must see it too), and boots the result in
/// `emulator`.
pub fn boot_corrupted(output: &str, emulator: Emulator) -> RunOutcome {
    use quest_build::image::inspect::{inspect, read_table};
    let built = build("hello", output);
    let mut bytes = std::fs::read(&built.elf).expect("the image exists");
    let (table, at) = read_table(&bytes).expect("the table is valid");
    let payload = table.sandbox_payloads(1)[0];
    let byte = at.payload_area(table.header.total_size.get()) + payload.offset.get() as usize;
    bytes[byte] ^= 0x5a;
    // The host sees it too, before anything boots.
    assert_eq!(
        inspect(&bytes)
            .expect("the table is still valid")
            .bad_payloads,
        1
    );
    let elf = built.elf.with_file_name(format!("{output}-corrupted.elf"));
    let iso_path = elf.with_extension("iso");
    std::fs::write(&elf, &bytes).expect("writing the corrupted image");
    quest_build::image::iso::make_iso(&elf, &iso_path, "corrupted").expect("making the ISO");
    boot_with(&iso_path, &elf, emulator)
}

/// Fails unless every sandbox exited 0 and none reported a failed check (`FAILED`).
pub fn assert_passed(out: &RunOutcome) {
    assert!(out.passed(), "{}", out.describe());
    assert!(
        !out.console.contains("FAILED"),
        "a sandbox reported a failed check"
    );
}

/// Fails unless the system failed (a sandbox did not exit 0) and the monitor said so.
pub fn assert_failed(out: &RunOutcome) {
    assert!(!out.passed());
    assert_line(&out.console, "quest: not every sandbox exited 0");
}

/// Fails unless the monitor refused to boot the image: the system did not pass, a console
/// line contains `reason`, and none contains `ran` (what a running sandbox would print).
pub fn assert_refused(out: &RunOutcome, reason: &str, ran: &str) {
    assert!(!out.passed());
    assert_line(&out.console, reason);
    assert!(
        !out.console.contains(ran),
        "no sandbox may run ({ran:?} was printed)"
    );
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

/// The monitor's reports about sandbox `name` that end with `ending` (`"-> halted"`,
/// `"-> restarting"`).
pub fn reports<'a>(
    console: &'a str,
    name: &'a str,
    ending: &'a str,
) -> impl Iterator<Item = &'a str> + 'a {
    let start = format!("quest: sandbox '{name}' core ");
    console
        .lines()
        .filter(move |l| l.starts_with(&start) && l.ends_with(ending))
}

/// The first report about sandbox `name` that says it was halted.
pub fn halt_report<'a>(console: &'a str, name: &'a str) -> &'a str {
    reports(console, name, "-> halted")
        .next()
        .unwrap_or_else(|| panic!("no containment report for `{name}`"))
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

/// Checks a ping-pong run's traffic, `ping` being the name ping prints its lines under
/// (`ping`, `ping-std`): backpressure both ways (each burst found the ring full), every
/// message verified in order and counted on both sides.
pub fn check_pingpong_traffic(console: &str, ping: &str) {
    let c = console;
    let burst = line(c, &format!("[ping] {ping}: burst of "));
    assert!(number_after(burst, "ring full ") > 0, "{burst}");
    let pong = line(c, "[pong] pong: verified 100000 messages in order (");
    assert!(number_after(pong, "echo ring full ") > 0, "{pong}");
    line(
        c,
        &format!("[ping] {ping}: verified 100000 echoes in order ("),
    );

    let (ping_sent, pong_sent) = (
        messages_sent(c, "ping").unwrap(),
        messages_sent(c, "pong").unwrap(),
    );
    let ping_done = line(c, &format!("[ping] {ping}: done: "));
    assert_eq!(number_after(ping_done, "received "), pong_sent);
    let pong_done = line(c, "[pong] pong: done: ");
    assert_eq!(number_after(pong_done, "received "), ping_sent);
    assert!(ping_sent > 100_000 && pong_sent > 100_000);
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

/// The repository root (tests run in `quest-build/`).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("quest-build has a parent")
        .to_path_buf()
}

/// `*.toml` files directly in `dir` (relative to the repository root), as paths relative
/// to the root, sorted.
pub fn manifests(dir: &str) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = std::fs::read_dir(repo_root().join(dir))
        .unwrap_or_else(|e| panic!("reading {dir}: {e}"))
        .map(|e| e.expect("directory entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .map(|p| Path::new(dir).join(p.file_name().expect("file name")))
        .collect();
    out.sort();
    out
}

/// Whether `QUEST_BLESS=1`: golden tests then write their expected files instead of
/// comparing with them.
pub fn blessing() -> bool {
    std::env::var_os("QUEST_BLESS").is_some_and(|v| v == "1")
}

/// Compares `actual` with the expected file `expected` (what `name` should give), or
/// writes it there when [`blessing`]. `Err` says how they differ, or that the file is
/// missing.
pub fn golden(name: &str, expected: &Path, actual: &str) -> Result<(), String> {
    if blessing() {
        std::fs::create_dir_all(expected.parent().expect("a file has a directory"))
            .and_then(|()| std::fs::write(expected, actual))
            .unwrap_or_else(|e| panic!("writing {}: {e}", expected.display()));
        return Ok(());
    }
    match std::fs::read_to_string(expected) {
        Ok(want) if want == actual => Ok(()),
        Ok(want) => Err(format!(
            "{name}: differs from {}\n--- expected\n{want}\n--- actual\n{actual}",
            expected.display()
        )),
        Err(e) => Err(format!(
            "{name}: cannot read {} ({e}); run with QUEST_BLESS=1 to create it\n{actual}",
            expected.display()
        )),
    }
}

/// The boot log's `quest: calibration:` records: every constant present and plausible
/// (non-zero where it must be, max >= median), one line per channel in `channels`
/// (name, writer core, reader core of its one core pair) and the `done` line with the
/// number of distinct core pairs. Returns each channel's TSC offset, in `channels` order.
/// (Cold >= warm is not asserted: Bochs has no cache model.)
pub fn check_calibration(console: &str, channels: &[(&str, u32, u32)], pairs: u64) -> Vec<i64> {
    use quest_abi::console::Record;
    use quest_build::bounds::{measured, profile::Measured};
    // The same reading `run --calibrate` does: every line must be there and parse.
    let profile = measured::profile(console, "test", "test").expect("a complete calibration");
    let plausible = |what: &str, c: &Measured| {
        assert!(c.median > 0 && c.max >= c.median, "{what}: {c:?}");
    };
    for (what, cost) in profile.cycles.each() {
        plausible(what, cost);
    }
    let offsets = channels
        .iter()
        .map(|&(name, w, r)| {
            let p = profile
                .channels
                .iter()
                .find(|p| p.name == name)
                .unwrap_or_else(|| panic!("no calibration line for channel `{name}`"));
            assert_eq!(p.cores, [w, r], "channel `{name}`: core pair");
            plausible(name, &p.line_round_trip);
            // The offset's uncertainty is half the best exchange's round trip, which is
            // never more than the worst line round trip plus a TSC read.
            assert!(
                p.tsc_uncertainty <= p.line_round_trip.max,
                "channel `{name}`: +- {} vs {:?}",
                p.tsc_uncertainty,
                p.line_round_trip
            );
            p.tsc_offset
        })
        .collect();
    let done = console
        .lines()
        .filter_map(Record::parse)
        .find_map(|r| match r {
            Record::CalibrationDone {
                cycles,
                trials,
                pairs,
            } => Some((cycles, trials, pairs)),
            _ => None,
        });
    let (cycles, trials, measured) = done.expect("a calibration done line");
    assert!(cycles > 0 && trials > 0, "{done:?}");
    assert_eq!(measured, pairs, "distinct core pairs measured");
    offsets
}

/// Where the monitor placed `sandbox`'s standby RAM at boot (its memory line).
pub fn standby_region(console: &str, sandbox: &str) -> u64 {
    let standby = line(
        console,
        &format!("quest: memory: sandbox '{sandbox}' standby RAM at 0x"),
    );
    u64::from_str_radix(
        standby
            .split_once(" at 0x")
            .and_then(|(_, r)| r.split_once('-'))
            .map(|(a, _)| a)
            .expect("standby address"),
        16,
    )
    .expect("hex address")
}

/// Checks that the monitor found every scrub of `sandbox`'s standby region still all
/// zero when it looked (before the next copy into it, and at summary time): one scrub per
/// `migrated` record (the region it left) and per abandoned migration (the region it was
/// copying to), none found written; `region` is its standby region at the end.
pub fn check_scrubs(records: &[Record<'_>], sandbox: &str, region: u64) {
    let scrubs = records
        .iter()
        .filter(|r| {
            matches!(r, Record::Migrated(m) if m.sandbox == sandbox)
                || matches!(r, Record::MigrationAbandoned { sandbox: s, .. } if *s == sandbox)
        })
        .count() as u64;
    assert!(
        !records
            .iter()
            .any(|r| matches!(r, Record::StandbyWritten { sandbox: s, .. } if *s == sandbox)),
        "a scrubbed standby region of {sandbox} was found written"
    );
    let summary = records.iter().find_map(|r| match r {
        Record::StandbyScrubs { sandbox: s, .. } if *s == sandbox => Some(*r),
        _ => None,
    });
    assert_eq!(
        summary,
        Some(Record::StandbyScrubs {
            sandbox,
            region,
            zero: scrubs,
            written: 0,
        })
    );
}

/// What a migration boot's console says about one migrating sandbox.
pub struct MigrationLog<'a> {
    /// Every monitor record of the boot.
    pub records: Vec<Record<'a>>,
    /// The TSC frequency the monitor measured.
    pub tsc_khz: u64,
    /// The sandbox's `migrated` records, in order.
    pub moves: Vec<Migrated<'a>>,
    /// The worst downtime among them, TSC cycles.
    pub worst: u64,
}

/// Checks the `migrated` records of `sandbox` in `console`: `count` moves back and forth
/// between `cores` (`.0` -> `.1`, then back) and between its RAM region and its standby
/// region, each a pre-copy of at least its `pages` pages of RAM within `max_downtime_ms`, and the
/// summary's count and worst downtime.
pub fn check_back_and_forth<'a>(
    console: &'a str,
    sandbox: &str,
    count: usize,
    cores: (&[u32], &[u32]),
    pages: u64,
    max_downtime_ms: u64,
) -> MigrationLog<'a> {
    let records: Vec<Record<'_>> = console.lines().filter_map(Record::parse).collect();
    let tsc_khz = records
        .iter()
        .find_map(|r| match r {
            Record::Tsc { khz, .. } => Some(*khz),
            _ => None,
        })
        .expect("the TSC record");
    let moves: Vec<Migrated<'_>> = records
        .iter()
        .filter_map(|r| match r {
            Record::Migrated(m) if m.sandbox == sandbox => Some(*m),
            _ => None,
        })
        .collect();
    assert_eq!(moves.len(), count, "{moves:?}");
    let standby = standby_region(console, sandbox);
    let home = moves[0].from_memory;
    assert_ne!(home, standby);
    let max_downtime = tsc_khz * max_downtime_ms;
    for (i, m) in moves.iter().enumerate() {
        let (from, to) = if i % 2 == 0 {
            (cores, (home, standby))
        } else {
            ((cores.1, cores.0), (standby, home))
        };
        assert_eq!(
            (m.from_cores.as_slice(), m.to_cores.as_slice()),
            from,
            "migration {i}"
        );
        assert_eq!((m.from_memory, m.to_memory), to, "migration {i}");
        // Pre-copy (Bochs has EPT dirty flags): a first round of all of RAM (`pages`),
        // then what was dirtied, within the rounds allowed (8).
        assert!((1..=8).contains(&m.rounds), "migration {i}: {m:?}");
        assert!(m.pages >= pages, "migration {i}: {m:?}");
        assert!(m.downtime > 0 && m.downtime <= max_downtime, "{m:?}");
    }
    let worst = moves.iter().map(|m| m.downtime).max().unwrap_or(0);
    assert!(records.contains(&Record::Migrations {
        sandbox,
        count: count as u64,
        worst_downtime: worst,
    }));
    check_scrubs(
        &records,
        sandbox,
        moves.last().map_or(standby, |m| m.from_memory),
    );
    MigrationLog {
        records,
        tsc_khz,
        moves,
        worst,
    }
}
