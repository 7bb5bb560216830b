//! What each example manifest's boot must show, the same on every backend: the Bochs
//! (VT-x) boot tests and the QEMU (SVM) ones call these on their outcome.

use super::{
    assert_failed, assert_line, assert_passed, assert_refused, check_calibration,
    check_ping_benchmark, check_pingpong_traffic, halt_report, line, number_after, reports,
};
use quest_abi::console::{Constant, Record};
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
