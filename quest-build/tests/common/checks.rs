//! What each example manifest's boot must show, the same on every backend: the Bochs
//! (VT-x) boot tests and the QEMU (SVM) ones call these on their outcome.

use super::{
    assert_failed, assert_line, assert_passed, assert_refused, check_back_and_forth,
    check_calibration, check_ping_benchmark, check_pingpong_traffic, check_scrubs, halt_report,
    line, number_after, reports, standby_region,
};
use quest_abi::console::{Constant, Record};
use quest_abi::hypercall::MigrateRefusal;
use quest_abi::layout::{CHANNEL_WINDOW_GPA, CHANNEL_WINDOW_SIZE};
use quest_abi::Runtime;
use quest_build::cli::bench_channels::{
    console_lines, floors, round_trips, summary_exits, unexplained_exits,
};
use quest_build::image::BuiltImage;
use quest_build::run::{console, RunOutcome};
use quest_build::runtime::hermit::page_tables::HERMIT_VIRTUAL_START;

/// hello.toml: std Hermit and bare sandboxes run and exit 0.
pub fn hello(built: &BuiltImage, out: &RunOutcome) {
    assert_passed(out);
    let c = &out.console;
    for sb in &built.plan.sandboxes {
        match sb.runtime {
            Runtime::Bare => {
                for v in &sb.vcpus {
                    assert_line(
                        c,
                        &format!(
                            "[{0}] hello from {0} vcpu {1} on core {2} (apic id ",
                            sb.name, v.index, v.core
                        ),
                    );
                }
            }
            Runtime::Hermit => check_hello_std(c, &sb.name, sb.vcpus.len(), &sb.args, &sb.env),
        }
        assert_line(
            c,
            &format!("quest: sandbox '{}' exited with status 0", sb.name),
        );
        assert_line(c, &format!("quest:   '{}': exited 0, faults 0", sb.name));
    }
    assert_line(c, "[gamma] env: GREETING=hello from gamma");
    assert_eq!(console::verdict(c), console::Verdict::Passed);
}

/// What hello-std proves in sandbox `name` with `cores` cores: its threads ran on every
/// core and their results joined correctly, it saw exactly its `args` and `env`, its
/// clocks work, and every check passed.
pub fn check_hello_std(
    console: &str,
    name: &str,
    cores: usize,
    args: &[String],
    env: &[(String, String)],
) {
    let lines: Vec<&str> = console::sandbox_lines(console, name).collect();
    let has = |wanted: &str| {
        assert!(
            lines.iter().any(|l| l.contains(wanted)),
            "[{name}] never printed {wanted:?}; it printed:\n{}",
            lines.join("\n")
        )
    };
    has(&format!("hello-std: {cores} core(s) available"));
    let all_cores: Vec<usize> = (0..cores).collect();
    has(&format!(
        "threads joined, on {cores} distinct core(s) {all_cores:?}, total "
    ));
    has(&format!("hello-std: {} argument(s): {args:?}", args.len()));
    for (k, v) in env {
        has(&format!("hello-std: env {k}={v}"));
    }
    // 15 000 words from the workload, plus the arguments.
    has(&format!("hello-std: counted {} words", 15_000 + args.len()));
    has("hello-std: wall clock ");
    has("hello-std: main started at TSC ");
    has("hello-std: all checks passed");
    assert!(
        !lines.iter().any(|l| l.contains("FAILED")),
        "[{name}] reported a failed check"
    );
}

/// hello.toml with a byte of `beta`'s first payload flipped ([`super::boot_corrupted`]):
/// the monitor refuses to boot it before any sandbox runs.
pub fn corrupted_payload(out: &RunOutcome) {
    assert_refused(
        out,
        "payload 0 of sandbox 'beta' is corrupt (SHA-256 mismatch); refusing to boot",
        "[beta]",
    );
}

/// hermit-faults.toml: a panic and a failing exit are contained and reported.
pub fn hermit_faults(out: &RunOutcome) {
    let c = &out.console;
    // A panic: its message reaches the console, the sandbox ends with Hermit's abort
    // status, and nothing counts as a monitor-level fault.
    assert_line(c, "[panicky] panic-std: about to panic");
    assert_line(c, "[panicky] thread 'main' panicked at src/main.rs:");
    assert_line(
        c,
        "[panicky] panic-std: index 10 is out of range for 3 entries",
    );
    assert_line(c, "quest:   'panicky': exited -1, faults 0");
    // A host file cannot be opened (no host), cleanly; then a non-zero exit status.
    assert_line(
        c,
        "quest: sandbox 'failing' core 0: uhyve FileOpen is not available in Quest",
    );
    assert_line(
        c,
        "[failing] exit-code-std: opening a host file failed as expected: ",
    );
    assert_line(c, "[failing] exit-code-std: exiting with status 3");
    assert_line(c, "quest: sandbox 'failing' exited with status 3");
    assert_line(c, "quest:   'failing': exited 3, faults 0");
    // The bare sandbox beside them is untouched.
    assert_line(c, "quest:   'steady': exited 0, faults 0");
    assert_failed(out);
    // `quest-build run` ends with the first failing sandbox's status.
    assert_eq!(out.exit_status(), 3, "{}", out.describe());
}

/// isolation.toml: every attack is contained, the victim finishes.
pub fn isolation(out: &RunOutcome) {
    let c = &out.console;
    assert!(!c.contains("NOT CONTAINED"), "an attack got through");
    assert_line(c, "[victim] victim: result ok ");
    assert_line(c, "quest: sandbox 'victim' exited with status 0");
    // Each attacker sandbox is named after its attack; the monitor's report names why.
    let reasons = [
        ("write-outside", "EPT violation"),
        ("read-outside", "EPT violation"),
        ("write-channel", "EPT violation"),
        ("port", "forbidden I/O port 0x3f8 (out)"),
        ("msr", "forbidden MSR write 0x1b"),
        ("ipi", "outside the sandbox"),
        ("triple-fault", "triple fault"),
        ("write-calibration", "EPT violation (write)"),
    ];
    for (name, reason) in reasons {
        assert_line(c, &format!("[{name}] attacker: launch 1: attack {name}"));
        let report = halt_report(c, name);
        assert!(
            report.contains(reason),
            "`{name}` was stopped for the wrong reason: {report}"
        );
        assert_line(c, &format!("quest:   '{name}': halted, faults 1"));
    }
    // The calibration page: what a sandbox reads there is what the monitor measured.
    let khz = number_after(line(c, "quest: TSC "), "quest: TSC ");
    let exit = c
        .lines()
        .find_map(|l| match Record::parse(l) {
            Some(Record::CalibrationCost {
                what: Constant::VmExitEntry,
                cost,
            }) => Some(cost.median),
            _ => None,
        })
        .expect("a vm exit+entry calibration line");
    assert_line(
        c,
        &format!(
            "[write-calibration] attacker: calibration page v1: TSC {khz} kHz, 2 channels, vm exit+entry {exit} cycles"
        ),
    );
    // The doorbell attacker's hostile channel indices are refused without a fault.
    assert_line(
        c,
        "[doorbell] attacker: launch 1: attack doorbell-bad-index",
    );
    assert_line(
        c,
        "[doorbell] attacker: doorbell: 7 hostile indices refused, our own channel rang",
    );
    assert_line(c, "quest:   'doorbell': exited 0, faults 0");
    assert_line(
        c,
        "quest:   'doorbell': exited 0, faults 0, launches 1, exits ",
    );
    let doorbell_summary = c
        .lines()
        .find(|l| l.starts_with("quest:   'doorbell': exited"))
        .expect("a summary line for `doorbell`");
    assert!(
        doorbell_summary.contains("doorbells 1, waits 0"),
        "only the valid index counts as a doorbell: {doorbell_summary}"
    );
    // Halted attackers make the system fail, which is the honest verdict.
    assert_failed(out);
}

/// restart.toml: a crashing sandbox is restarted twice and then exits 0.
pub fn restart(out: &RunOutcome) {
    let c = &out.console;
    let crasher: Vec<&str> = console::sandbox_lines(c, "crasher").collect();
    for launch in 1..=3 {
        assert!(
            crasher.contains(&format!("crasher: launch {launch}").as_str()),
            "crasher never printed its launch {launch}: {crasher:?}"
        );
    }
    assert!(crasher.contains(&"crasher: launch 3 survived, exiting cleanly"));
    let restarts = reports(c, "crasher", "-> restarting").count();
    assert_eq!(restarts, 2, "two faults, two restarts");
    assert_line(c, "quest:   'crasher': exited 0, faults 2, launches 3");
    assert_line(c, "quest:   'steady': exited 0, faults 0, launches 1");
    assert_passed(out);
}

/// channels-hostile.toml: a hostile writer and a writing reader are contained, the rest
/// finish.
pub fn channels_hostile(out: &RunOutcome) {
    let c = &out.console;
    assert!(
        !c.contains("NOT CONTAINED"),
        "the scribbler's write got through"
    );
    assert!(!c.contains("NOT AS EXPECTED"));
    for channel in ["hostile-index", "hostile-length"] {
        line(
            c,
            &format!("[hostile] hostile: {channel}: sent 8 valid messages, then scribbled: "),
        );
        line(
            c,
            &format!(
                "[collector] collector: {channel}: error after 8 verified messages: the channel is corrupt"
            ),
        );
    }
    line(
        c,
        "[collector] collector: healthy: 3000 messages verified in order",
    );
    line(
        c,
        "[collector] collector: done: healthy 3000 verified, hostile channels closed as corrupt: both",
    );
    line(c, "[feeder] feeder: sent 3000 messages");
    line(c, "[scribbler] scribbler: 4 messages verified; now writing");
    let report = halt_report(c, "scribbler");
    assert!(report.contains("EPT violation (write)"), "{report}");
    line(c, "quest:   'scribbler': halted, faults 1");
    for sandbox in ["hostile", "feeder", "collector"] {
        line(c, &format!("quest:   '{sandbox}': exited 0, faults 0"));
    }
    // A halted sandbox makes the system fail: the honest verdict.
    assert_failed(out);
}

/// The `0x...` hexadecimal number right after `key` in `text`.
fn hex_after(text: &str, key: &str) -> u64 {
    let rest = text
        .split_once(key)
        .and_then(|(_, r)| r.strip_prefix("0x"))
        .unwrap_or_else(|| panic!("no 0x number after {key:?} in {text:?}"));
    let digits: String = rest.chars().take_while(char::is_ascii_hexdigit).collect();
    u64::from_str_radix(&digits, 16).unwrap_or_else(|e| panic!("{digits:?}: {e}"))
}

/// pingpong-hermit.toml: a Hermit ping and a bare pong verify every message while Hermit
/// fills its heap, with no VM exit per message.
pub fn pingpong_hermit(out: &RunOutcome) {
    let c = &out.console;
    assert_passed(out);

    // The std program found both channels in its directory through the boot page tables.
    let largest = quest_channel::wire::max_message_len(64 << 10);
    line(
        c,
        &format!("[ping] ping-std: channels open (largest message {largest} B); 100000 messages"),
    );

    // Backpressure both ways, every message verified and counted on both sides.
    check_pingpong_traffic(c, "ping-std");

    // The heap hog: 40 MiB written while messages flowed, intact at the end, all of it
    // where Hermit 0.11 allocates (its own virtual range), nowhere near the window.
    let hog = line(c, "[ping] ping-std: heap hog: 40 MiB in 40 chunks at ");
    assert!(hog.contains("every word intact"), "{hog}");
    let (lo, hi) = (hex_after(hog, " chunks at "), hex_after(hog, ".."));
    assert!(hi - lo >= 40 << 20, "{hog}");
    assert!(hi <= CHANNEL_WINDOW_GPA || lo >= CHANNEL_WINDOW_GPA + CHANNEL_WINDOW_SIZE);
    assert!(lo >= HERMIT_VIRTUAL_START, "{hog}");

    // The benchmark lines, consistent with themselves.
    let s = check_ping_benchmark(c);
    // Derived from `Instant`: within 10 % of the frequency the monitor measured.
    let measured = number_after(line(c, "quest: TSC "), "quest: TSC ");
    assert!(
        s.tsc_khz.abs_diff(measured) * 10 <= measured,
        "{s:?} vs {measured} kHz"
    );

    // No VM exit per message: bare pong exits only for its console lines and its exit;
    // Hermit's exits are its boot (CPUID, XSETBV, one MSR) and its console, a fixed few
    // dozen against 200 000 messages, and none of them an EPT violation.
    assert_eq!(unexplained_exits(c, "pong"), Some(0));
    let exits = summary_exits(c, "ping").expect("summary exit counts");
    assert!(exits.total < 100, "{exits:?}");
    assert!(
        exits.by_reason.keys().all(|r| !r.contains("ept")),
        "{exits:?}"
    );
    for sandbox in ["ping", "pong"] {
        line(c, &format!("quest:   '{sandbox}': exited 0, faults 0"));
    }
}

/// pingpong.toml: 100 000 verified messages both ways, backpressure, the benchmark, zero
/// VM exits per message.
pub fn pingpong(out: &RunOutcome) {
    let c = &out.console;
    assert_passed(out);

    // Calibrated before the sandboxes ran: both channels share one core pair (measured
    // once), seen from opposite ends, so their offsets are opposite.
    let offsets = check_calibration(c, &[("ping-to-pong", 0, 1), ("pong-to-ping", 1, 0)], 1);
    assert_eq!(offsets[0], -offsets[1], "{offsets:?}");

    // Backpressure both ways, every message verified and counted on both sides.
    check_pingpong_traffic(c, "ping");

    // The benchmark lines, consistent with themselves.
    check_ping_benchmark(c);

    // No VM exit beyond the console lines and the exit call: zero exits per message on
    // the spinning path.
    for sandbox in ["ping", "pong"] {
        let exits = summary_exits(c, sandbox).expect("summary exit counts");
        assert_eq!(
            unexplained_exits(c, sandbox),
            Some(0),
            "{sandbox}: {} exits for {} console lines: {:?}",
            exits.total,
            console_lines(c, sandbox),
            exits.by_reason
        );
        line(c, &format!("quest:   '{sandbox}': exited 0, faults 0"));
    }
}

/// channels-doorbell.toml: sleeping endpoints wake on the doorbell at one exit per
/// hypercall.
pub fn channels_doorbell(out: &RunOutcome) {
    let c = &out.console;
    assert_passed(out);
    let wakes = line(c, "[sleeper] sleeper: 20 wake-ups verified after ");
    assert!(number_after(wakes, "after ") >= 20, "{wakes}");
    line(
        c,
        "[sleeper] sleeper: 1000 racing messages verified in order",
    );
    let burst = line(c, "[ringer] ringer: burst of ");
    assert!(number_after(burst, "full ring ") > 0, "{burst}");
    let rang = line(c, "[sleeper] sleeper: burst of ");
    assert!(number_after(rang, "sleeping writer ") > 0, "{rang}");

    for sandbox in ["ringer", "sleeper"] {
        // What the app counted equals what the monitor counted ...
        let done = line(c, &format!("[{sandbox}] {sandbox}: done: "));
        let (waits, rings) = (
            number_after(done, "done: "),
            number_after(done, "WAIT and "),
        );
        let summary = line(c, &format!("quest:   '{sandbox}': exited 0"));
        assert_eq!(number_after(summary, "doorbells "), rings, "{summary}");
        assert_eq!(number_after(summary, "waits "), waits, "{summary}");
        // ... and each WAIT or DOORBELL costs exactly one VM exit (its VMCALL), no more.
        assert_eq!(
            unexplained_exits(c, sandbox),
            Some(waits + rings),
            "{summary}"
        );
    }
}

/// migration.toml: the mover migrates itself and is migrated by the controller, back and
/// forth between two placements that differ in cores and host memory, with its clock,
/// working set and messages intact; the refusals; the faulter's refused stop-and-copy,
/// busy request and abandoned pre-copy (`boot_migration.rs`, and on SVM `boot_svm.rs`).
pub fn migration(out: &RunOutcome) {
    let c = &out.console;
    assert_passed(out);

    // SELF by the mover, CONTROL by the controller (the manifest's env); back and forth
    // between cores 1 and 2 and the two RAM regions; pre-copy of its 4 MiB; max_downtime 1s.
    const SELF: u64 = 50;
    const CONTROL: u64 = 50;
    const MIGRATIONS: u64 = SELF + CONTROL;
    // The mover's working set (WORKING_SET_KIB), in 4 KiB pages.
    const WORKING_SET_KIB: u64 = 256;
    const WORKING_SET_PAGES: u64 = WORKING_SET_KIB / 4;
    let log = check_back_and_forth(c, "mover", MIGRATIONS as usize, (&[1], &[2]), 1024, 1000);
    let (records, max_downtime, moves) = (&log.records, log.tsc_khz * 1000, &log.moves);
    // The mover rewrites its working set whenever its own request answers busy, that is
    // while the controller migrates it: pre-copy must see pages dirtied while it copied
    // (more than the first round's 1024 pages by at least half the working set, or more
    // than one round).
    let dirtied = moves
        .iter()
        .filter(|m| m.rounds > 1 || m.pages >= 1024 + WORKING_SET_PAGES / 2)
        .count();
    assert!(
        dirtied > 0,
        "no migration saw the working set dirtied: {moves:?}"
    );

    // Who may not ask.
    for (sandbox, by) in [
        ("sink", "controller"),
        ("controller", "controller"),
        ("mover", "sink"),
    ] {
        assert!(
            records.contains(&Record::MigrationRefused {
                sandbox,
                by,
                reason: "not allowed"
            }),
            "{sandbox} by {by}"
        );
    }
    // No other refusal: the mover's are who asks, busy and destination not free; the
    // faulter's, below.
    assert!(records.iter().all(|r| !matches!(
        r,
        Record::MigrationRefused { sandbox: "mover", reason, .. }
            if *reason != "not allowed" && *reason != "busy" && *reason != "destination not free"
    )));
    // Right after each of its own migrations the mover asks again: the destination (the
    // placement it just left) is still being scrubbed, so it is refused as not free (or
    // busy, when the controller's migration of it is under way), never accepted.
    let not_free = records
        .iter()
        .filter(|r| {
            **r == Record::MigrationRefused {
                sandbox: "mover",
                by: "mover",
                reason: "destination not free",
            }
        })
        .count() as u64;
    assert!(not_free > 0, "the mover was never refused as not free");

    // The sandboxes' own checks.
    let mover = line(c, &format!("[mover] mover: {SELF} self-migrations"));
    assert!(
        number_after(mover, "destination not free ") == not_free,
        "the mover counted other refusals than the monitor logged: {mover}"
    );
    assert!(
        mover.contains(&format!(
            "{} messages sent, TSC monotonic, working set of {WORKING_SET_KIB} KiB intact",
            SELF * 20
        )),
        "{mover}"
    );
    assert!(
        number_after(mover, "worst downtime ") <= max_downtime,
        "{mover}"
    );
    line(
        c,
        &format!("[controller] controller: {CONTROL} migrations of the mover"),
    );
    line(c, "refusals as expected");
    line(
        c,
        &format!("[sink] sink: {} messages verified in order", SELF * 20),
    );

    // The faulter: refused by the admission test (the result code it printed), still
    // running; busy while the controller's migration of it is under way; then it
    // faulted during pre-copy.
    let code = |r: MigrateRefusal| format!("{} ({:#x})", r.as_str(), r.code());
    line(
        c,
        &format!(
            "[faulter] faulter: stop-and-copy refused: {}, still running",
            code(MigrateRefusal::WouldExceedMaxDowntime)
        ),
    );
    assert!(records.contains(&Record::MigrationRefused {
        sandbox: "faulter",
        by: "faulter",
        reason: "would exceed max_downtime"
    }));
    line(
        c,
        &format!(
            "[faulter] faulter: asking again: {}, its migration is under way",
            code(MigrateRefusal::Busy)
        ),
    );
    // The migration was abandoned because it stopped (the fault), never completed, and
    // the controller got the abandoned code.
    assert!(
        records.iter().any(|r| matches!(
            r,
            Record::MigrationAbandoned {
                sandbox: "faulter",
                reason: "the sandbox stopped",
                ..
            }
        )),
        "no abandon record for the faulter"
    );
    assert!(moves.iter().all(|m| m.sandbox != "faulter"));
    // The abandoned pre-copy's destination was scrubbed, and still all zero at the end
    // (the mover's scrubs are checked by `check_back_and_forth`).
    check_scrubs(records, "faulter", standby_region(c, "faulter"));
    line(
        c,
        &format!(
            "[controller] controller: migration of the faulter abandoned ({:#x})",
            MigrateRefusal::Abandoned.code()
        ),
    );
    // on_fault = "restart" applied: a triple fault, then a second launch that exits 0;
    // the others finished normally (assert_passed: every sandbox exited 0).
    line(c, "quest: sandbox 'faulter' core 4: triple fault");
    line(
        c,
        "[faulter] faulter: relaunched after its fault (launch 2), exiting",
    );
    let summary = line(c, "quest:   'faulter': exited 0, faults 1, launches 2");
    assert!(!summary.is_empty());
    for other in ["controller", "mover", "sink"] {
        line(
            c,
            &format!("quest:   '{other}': exited 0, faults 0, launches 1"),
        );
    }
}

/// Scheduling latency allowed on top of a migration's downtime, in microseconds: a
/// timer that expired during the move fires on arrival, then Hermit switches to the
/// sleeping thread (the manifest's MAX_JUMP_MS allows the same margin over max_downtime).
const MIGRATION_LATENCY_US: u64 = 50_000;

/// Index of the first console line containing `wanted`.
fn position(console: &str, wanted: &str) -> usize {
    console
        .lines()
        .position(|l| l.contains(wanted))
        .unwrap_or_else(|| panic!("no console line contains {wanted:?}"))
}

/// migration-hermit.toml: a std Hermit sandbox on two vCPUs sleeps, computes and streams
/// correctly across ten migrations (`boot_migration_hermit.rs`, and on SVM `boot_svm.rs`).
pub fn migration_hermit(out: &RunOutcome) {
    let c = &out.console;
    assert_passed(out);

    // Back and forth: cores [1, 2] <-> [3, 4] (vCPU i to the i-th), RAM home <-> standby
    // region, all 32 MiB copied while stopped, each within max_downtime = "1s".
    let log = check_back_and_forth(c, "worker", 10, (&[1, 2], &[3, 4]), 8192, 1000);
    let (tsc_khz, worst) = (log.tsc_khz, log.worst);

    // Every move happened while the program's threads ran: after it said ready, before
    // its result.
    let ready = position(c, "[worker] migrate-std: threads running");
    let result = position(c, "[worker] migrate-std: all checks passed");
    let migrated: Vec<usize> = c
        .lines()
        .enumerate()
        .filter(|(_, l)| l.starts_with("quest: migrated 'worker'"))
        .map(|(i, _)| i)
        .collect();
    assert!(
        migrated.iter().all(|&i| ready < i && i < result),
        "{migrated:?}"
    );
    // And the compute thread answered jobs in between (woken across cores each time).
    let (first, last) = (migrated[0], migrated[migrated.len() - 1]);
    let answered = c
        .lines()
        .enumerate()
        .filter(|(i, l)| first < *i && *i < last && l.contains("[worker] migrate-std: job "))
        .count();
    assert!(
        answered > 0,
        "no compute job answered during the migrations"
    );

    // The program's own checks, and its clock against the monitor's downtimes: a sleep
    // (or a compute thread's gap between two `Instant` samples) stretched by a move by at
    // most that move's downtime, plus scheduling latency.
    let jobs = line(c, " compute jobs verified (compute thread on vCPU ");
    assert!(jobs.starts_with("[worker] migrate-std: "), "{jobs}");
    assert!(number_after(jobs, "migrate-std: ") >= 20, "{jobs}");
    // Both vCPUs worked: the compute thread on the second, main on the first.
    assert!(
        jobs.contains("(compute thread on vCPU [1], main on vCPU 0)"),
        "{jobs}"
    );
    let sleeps = line(c, " sleeps of 10ms none early (largest overshoot ");
    assert!(sleeps.starts_with("[worker] migrate-std: "), "{sleeps}");
    assert!(number_after(sleeps, "migrate-std: ") > 0, "{sleeps}");
    assert!(
        sleeps.ends_with("), 100 messages sent, Instant monotonic"),
        "{sleeps}"
    );
    let worst_us = worst * 1000 / tsc_khz;
    let overshoot = number_after(sleeps, "largest overshoot ");
    let gap = number_after(jobs, "largest compute gap ");
    for (what, jump) in [("sleep overshoot", overshoot), ("compute gap", gap)] {
        assert!(
            jump <= worst_us + MIGRATION_LATENCY_US,
            "{what} {jump} us, worst downtime {worst_us} us"
        );
    }

    // The bare peers: every message verified in order across the moves; the controller
    // moved it 10 times and may not move the others.
    line(c, "[sink] sink: 100 messages verified in order");
    let controller = line(c, "[controller] controller: 10 migrations of the mover");
    assert!(controller.contains("refusals as expected"), "{controller}");
    for sandbox in ["controller", "worker", "sink"] {
        line(c, &format!("quest:   '{sandbox}': exited 0, faults 0"));
    }
}

/// The clock's report: its largest step between two TSC reads, and how far it is behind
/// the controller's clock (negative: ahead, by the message's transfer time).
fn clock_report(console: &str, sandbox: &str) -> (u64, i64) {
    let l = line(console, &format!("[{sandbox}] clock: largest step "));
    let behind = l
        .split_once("behind the controller by ")
        .and_then(|(_, r)| r.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no lag in {l:?}"));
    (number_after(l, "largest step "), behind)
}

/// migration-clock.toml: `downtime_clock` shows (`elapses`) or hides (`hidden`) each
/// migration's pause on the sandbox's TSC (`boot_migration_clock.rs`, and on SVM
/// `boot_svm.rs`).
pub fn migration_clock(out: &RunOutcome) {
    let c = &out.console;
    assert_passed(out);

    // `elapses`: every pause shows, as a step no shorter than the reported downtime (the
    // stop measured from the request to the release, which the vCPU's pause contains),
    // and not much longer; its clock ends level with the controller's.
    let elapses = check_back_and_forth(c, "elapses", 5, (&[1], &[2]), 1024, 1000);
    let (step, behind) = clock_report(c, "elapses");
    let longest = elapses.worst;
    assert!(
        step >= longest && step <= 2 * longest,
        "elapses: largest step {step}, longest downtime {longest}"
    );
    let shortest = elapses.moves.iter().map(|m| m.downtime).min().unwrap_or(0);
    assert!(
        behind.unsigned_abs() < shortest / 4,
        "elapses: {behind} cycles off the controller's clock"
    );

    // `hidden`: no pause shows; its clock falls behind by the hidden part of each pause
    // (from the vCPU's exit to the release: most of the downtime, never more).
    let hidden = check_back_and_forth(c, "hidden", 5, (&[3], &[4]), 1024, 1000);
    let (step, behind) = clock_report(c, "hidden");
    let shortest = hidden.moves.iter().map(|m| m.downtime).min().unwrap_or(0);
    let total: u64 = hidden.moves.iter().map(|m| m.downtime).sum();
    assert!(
        step < shortest / 4,
        "hidden: a step of {step} cycles, a pause is at least {shortest}"
    );
    assert!(
        behind > 0 && (behind as u64) >= total / 2 && (behind as u64) <= total,
        "hidden: {behind} cycles behind, the pauses took {total}"
    );
}

/// channels-local.toml: one bare sandbox, its two vCPUs on pingpong's two cores, times
/// the floor (an atomic ping-pong of 64 B each way) and quest-channel round trips over
/// its own memory (64 B, 1 KiB, 4 KiB), 2000 rounds each; no VM exit per message.
pub fn channels_local(out: &RunOutcome) {
    let c = &out.console;
    assert_passed(out);
    let consistent = |r: &quest_build::cli::bench_channels::RoundTrip| {
        assert_eq!(r.rounds, 2000, "{r:?}");
        assert!(
            0 < r.min && r.min <= r.median && r.median <= r.p99 && r.p99 <= r.max,
            "{r:?}"
        );
    };
    let floor = floors(c, "local");
    assert_eq!(floor.iter().map(|f| f.size).collect::<Vec<_>>(), [64]);
    consistent(&floor[0]);
    let rtts = round_trips(c, "local");
    assert_eq!(
        rtts.iter().map(|r| r.size).collect::<Vec<_>>(),
        [64, 1024, 4096]
    );
    rtts.iter().for_each(consistent);
    // The floor is the least a round trip through shared memory costs: the channel's own
    // 64 B round trip does more (records, indices, checks), and a 4 KiB one copies more.
    assert!(floor[0].median <= rtts[0].median, "{floor:?} {rtts:?}");
    assert!(rtts[2].median > rtts[0].median, "{rtts:?}");
    // The channels are the sandbox's own memory: no exit per message. Besides the console
    // lines, the exit call and the CPUID at start, the only exit is the NMI that stops
    // vCPU 1 (still in its guest) when vCPU 0 ends the sandbox.
    let exits = summary_exits(c, "local").expect("summary exit counts");
    let nmi = exits.by_reason.get("exception/nmi").copied().unwrap_or(0);
    assert!(nmi <= 1, "{exits:?}");
    assert_eq!(
        unexplained_exits(c, "local"),
        Some(nmi),
        "{} exits for {} console lines: {:?}",
        exits.total,
        console_lines(c, "local"),
        exits.by_reason
    );
    line(c, "quest:   'local': exited 0, faults 0");
}

/// irq.toml's hostile MSIs (to a core outside the sandbox, with NMI delivery): each
/// refused and logged once for the probe's edu at `edu`, nothing delivered, and a valid
/// MSI arrives again afterwards. The same on every backend and IOMMU.
pub fn hostile_msis_refused(c: &str, edu: &str) {
    for refusal in [
        "MSI to APIC ID 2 outside the sandbox refused",
        "MSI with delivery mode NMI refused",
    ] {
        let wanted = format!("quest: sandbox 'probe' core 0: PCI {edu}: {refusal}");
        assert_eq!(
            c.lines().filter(|l| *l == wanted).count(),
            1,
            "{wanted}: {c}"
        );
    }
    assert_line(
        c,
        "[probe] irq-probe: MSI to APIC ID 2 (outside the sandbox): nothing arrived (interrupts 0, stray 0)",
    );
    assert_line(
        c,
        "[probe] irq-probe: MSI with NMI delivery: nothing arrived (interrupts 0, stray 0)",
    );
    assert_line(c, "[probe] irq-probe: MSI valid again: arrived");
}
