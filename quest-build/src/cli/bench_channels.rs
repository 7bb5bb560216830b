//! The channel rows of `quest-build bench`: boots `partition-manifests/pingpong.toml` in
//! Bochs and reads what ping printed (`bench rtt ...`, `bench stream ...`, its message
//! count) and what the monitor's summary counted (VM exits per sandbox); boots
//! `channels-local.toml` for the floor and the same channel inside one sandbox
//! ([`local_rows`]); boots `bounds.toml` for each reader mode's bound against what was
//! observed ([`bounds_rows`], the `--check-bounds` code); and per backend, the boot cost,
//! the 64 B round trip, the VM exits per message and the boot tests' wall time
//! ([`backend_rows`]).
//!
//! VM exits per message: every exit of ping and pong that is not explained by a console
//! line it printed (one `CONSOLE_WRITE` hypercall each; they print only outside the
//! measured loops), by its final `EXIT` hypercall or by the one CPUID quest-rt runs at
//! start (to choose VMCALL or VMMCALL), divided by the messages both sent. Anything else
//! (another CPUID, an interrupt, an EPT violation, a doorbell) counts against the
//! messages, so the figure can only err upwards.

use crate::build::{Progress, Workspace};
use crate::image::{self, ImageRequest};
use crate::run::{self, Emulator, RunOptions, RunOutcome};
use std::collections::BTreeMap;
use std::time::Duration;

/// One `bench rtt SIZE rounds=N min=.. median=.. p99=.. max=..` line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RoundTrip {
    /// Message size in bytes.
    pub size: u64,
    /// Timed round trips.
    pub rounds: u64,
    /// TSC cycles per round trip.
    pub min: u64,
    /// Median.
    pub median: u64,
    /// 99th percentile.
    pub p99: u64,
    /// Maximum.
    pub max: u64,
}

/// The `bench stream SIZE messages=.. bytes=.. cycles=.. ... tsc_khz=..` line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Stream {
    /// Size of each message.
    pub size: u64,
    /// Bytes sent one way.
    pub bytes: u64,
    /// TSC cycles from the first send to the receiver's acknowledgement.
    pub cycles: u64,
    /// TSC frequency the sandbox was told (kHz).
    pub tsc_khz: u64,
}

/// A sandbox's line of the monitor's summary.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SandboxExits {
    /// Total VM exits.
    pub total: u64,
    /// Per reason, as the monitor names them (`vmcall`, `cpuid`, ...).
    pub by_reason: BTreeMap<String, u64>,
}

/// `key=value` pairs of a line, as numbers.
fn fields(text: &str) -> BTreeMap<&str, u64> {
    text.split_whitespace()
        .filter_map(|f| {
            let (k, v) = f.split_once('=')?;
            Some((k, v.parse().ok()?))
        })
        .collect()
}

/// Text of `sandbox`'s console lines (`[name] ...`), without the prefix.
fn sandbox_lines<'a>(console: &'a str, sandbox: &'a str) -> impl Iterator<Item = &'a str> + 'a {
    let prefix = format!("[{sandbox}] ");
    console
        .lines()
        .filter_map(move |l| l.trim_end_matches('\r').strip_prefix(prefix.as_str()))
}

/// Every `bench <kind> <size> key=value ...` line `sandbox` printed: its size and fields.
fn bench_lines<'a>(
    console: &'a str,
    sandbox: &'a str,
    kind: &'a str,
) -> impl Iterator<Item = (&'a str, BTreeMap<&'a str, u64>)> + 'a {
    sandbox_lines(console, sandbox).filter_map(move |l| {
        let rest = l
            .strip_prefix("bench ")?
            .strip_prefix(kind)?
            .strip_prefix(' ')?;
        let (size, rest) = rest.split_once(' ')?;
        Some((size, fields(rest)))
    })
}

/// Every `bench rtt` line `sandbox` printed.
pub fn round_trips(console: &str, sandbox: &str) -> Vec<RoundTrip> {
    timed(console, sandbox, "rtt")
}

/// Every `bench floor` line `sandbox` printed (chan-local's atomic ping-pong, in the
/// format of a round trip).
pub fn floors(console: &str, sandbox: &str) -> Vec<RoundTrip> {
    timed(console, sandbox, "floor")
}

/// Every `bench <kind> SIZE rounds=N min=.. median=.. p99=.. max=..` line.
fn timed(console: &str, sandbox: &str, kind: &str) -> Vec<RoundTrip> {
    bench_lines(console, sandbox, kind)
        .filter_map(|(size, f)| {
            Some(RoundTrip {
                size: size.parse().ok()?,
                rounds: *f.get("rounds")?,
                min: *f.get("min")?,
                median: *f.get("median")?,
                p99: *f.get("p99")?,
                max: *f.get("max")?,
            })
        })
        .collect()
}

/// The `bench stream` line `sandbox` printed.
pub fn stream(console: &str, sandbox: &str) -> Option<Stream> {
    bench_lines(console, sandbox, "stream").find_map(|(size, f)| {
        Some(Stream {
            size: size.parse().ok()?,
            bytes: *f.get("bytes")?,
            cycles: *f.get("cycles")?,
            tsc_khz: *f.get("tsc_khz")?,
        })
    })
}

/// Messages `sandbox` sent, from its `...: done: messages sent S received R ...` line.
pub fn messages_sent(console: &str, sandbox: &str) -> Option<u64> {
    sandbox_lines(console, sandbox).find_map(|l| {
        let rest = l.split_once(": done: messages sent ")?.1;
        rest.split_whitespace().next()?.parse().ok()
    })
}

/// Console lines `sandbox` printed.
pub fn console_lines(console: &str, sandbox: &str) -> u64 {
    sandbox_lines(console, sandbox).count() as u64
}

/// `sandbox`'s VM exits from its summary line (a [`quest_abi::console::Record::Summary`]).
pub fn summary_exits(console: &str, sandbox: &str) -> Option<SandboxExits> {
    let summary = crate::run::console::summaries(console).find(|s| s.name == sandbox)?;
    Some(SandboxExits {
        total: summary.exits,
        by_reason: summary
            .reasons
            .iter()
            .map(|(name, n)| (name.to_owned(), n))
            .collect(),
    })
}

/// VM exits of `sandbox` not explained by its console lines, its exit hypercall and the
/// one CPUID with which quest-rt chooses VMCALL or VMMCALL at start.
pub fn unexplained_exits(console: &str, sandbox: &str) -> Option<u64> {
    let exits = summary_exits(console, sandbox)?;
    let choice = exits.by_reason.get("cpuid").map_or(0, |&n| n.min(1));
    Some(
        exits
            .total
            .saturating_sub(console_lines(console, sandbox) + 1 + choice),
    )
}

/// The rows for the benchmark table, from a pingpong console.
pub fn rows(console: &str) -> Result<Vec<(String, String)>, String> {
    let mut rows = Vec::new();
    let rtts = round_trips(console, "ping");
    if rtts.is_empty() {
        return Err("ping printed no `bench rtt` line".into());
    }
    for r in rtts {
        rows.push((
            format!(
                "channel round trip {} B, TSC cycles ({} rounds)",
                r.size, r.rounds
            ),
            format!(
                "min {}, median {}, p99 {}, max {}",
                r.min, r.median, r.p99, r.max
            ),
        ));
    }
    let s = stream(console, "ping").ok_or("ping printed no `bench stream` line")?;
    let cycles = s.cycles.max(1);
    rows.push((
        format!("channel one-way stream of {} B messages", s.size),
        format!(
            "{} B/kcycle = {:.1} MB/s at the {} kHz TSC ({} B in {} cycles)",
            s.bytes * 1000 / cycles,
            s.bytes as f64 * s.tsc_khz as f64 / cycles as f64 / 1000.0,
            s.tsc_khz,
            s.bytes,
            s.cycles
        ),
    ));
    let mut messages = 0;
    let mut unexplained = 0;
    let mut detail = Vec::new();
    for sandbox in ["ping", "pong"] {
        let sent = messages_sent(console, sandbox)
            .ok_or_else(|| format!("{sandbox} printed no message count"))?;
        let exits = summary_exits(console, sandbox)
            .ok_or_else(|| format!("the summary has no exit counts for {sandbox}"))?;
        let extra = unexplained_exits(console, sandbox).unwrap_or(exits.total);
        messages += sent;
        unexplained += extra;
        let reasons: Vec<String> = exits
            .by_reason
            .iter()
            .map(|(r, n)| format!("{r} {n}"))
            .collect();
        detail.push(format!(
            "{sandbox}: {} exits ({}) = {} console lines + 1 exit call + CPUID at start + {extra} other",
            exits.total,
            reasons.join(", "),
            console_lines(console, sandbox)
        ));
    }
    rows.push((
        "channel VM exits per message (spinning)".into(),
        format!(
            "{:.6} ({unexplained} other exits / {messages} messages; {})",
            unexplained as f64 / messages.max(1) as f64,
            detail.join("; ")
        ),
    ));
    Ok(rows)
}

/// `inter / intra` with two decimals (`-` if either is missing).
fn ratio(inter: u64, intra: u64) -> String {
    if intra == 0 {
        return "-".into();
    }
    format!("{:.2}", inter as f64 / intra as f64)
}

/// The rows that compare pingpong's round trips with chan-local's (`local_console`): the
/// floor, the same channel inside one sandbox, and the ratios the goals are stated in.
pub fn local_rows(
    pingpong_console: &str,
    local_console: &str,
) -> Result<Vec<(String, String)>, String> {
    let floor = floors(local_console, "local")
        .first()
        .map(|f| (f.size, f.median, f.rounds))
        .ok_or("chan-local printed no `bench floor` line")?;
    let intra = round_trips(local_console, "local");
    if intra.is_empty() {
        return Err("chan-local printed no `bench rtt` line".into());
    }
    let inter = round_trips(pingpong_console, "ping");
    let mut rows = vec![(
        format!(
            "floor: atomic ping-pong of {} B each way, one sandbox, 2 cores, TSC cycles ({} rounds)",
            floor.0, floor.2
        ),
        format!("median {}", floor.1),
    )];
    for r in &intra {
        let other = inter.iter().find(|i| i.size == r.size);
        rows.push((
            format!(
                "channel round trip {} B inside one sandbox (2 vCPUs), TSC cycles",
                r.size
            ),
            format!(
                "min {}, median {}, p99 {}, max {}; inter-sandbox / intra-sandbox median {} (goal <= 1.1)",
                r.min,
                r.median,
                r.p99,
                r.max,
                other.map_or_else(|| "-".into(), |o| ratio(o.median, r.median))
            ),
        ));
    }
    if let Some(o) = inter.iter().find(|i| i.size == floor.0) {
        rows.push((
            format!("channel {} B round trip / floor (goal <= 2)", floor.0),
            format!(
                "{} (inter-sandbox median {} / floor median {})",
                ratio(o.median, floor.1),
                o.median,
                floor.1
            ),
        ));
    }
    Ok(rows)
}

/// The per-channel rows of a `bounds.toml` console: for each reader mode its bound, worst
/// observed latency, median (the lower edge of the median's log2 bucket) and ratio, as
/// `quest-build run --check-bounds` computes them from the boot's own calibration.
pub fn bounds_rows(
    m: &crate::manifest::Manifest,
    console: &str,
) -> Result<Vec<(String, String)>, String> {
    use crate::bounds::{analyse, check::check, measured};
    let profile = measured::profile(console, "bochs (quest-build bench)", &m.system.name.value)?;
    let result = check(&analyse(m, &profile), &measured::latencies(console));
    let mut rows: Vec<(String, String)> = result
        .channels
        .iter()
        .map(|c| {
            (
                format!("bound, {} reader: channel {}, TSC cycles", c.mode, c.name),
                format!(
                    "bound {}, worst {}, median >= {}, worst/bound {:.2} ({} messages{})",
                    c.bound,
                    c.worst,
                    c.median_at_least,
                    c.ratio,
                    c.messages,
                    if c.held { "" } else { ", VIOLATED" }
                ),
            )
        })
        .collect();
    rows.push(("bounds: verdict".into(), result.line()));
    Ok(rows)
}

/// Builds the example `manifest` (relative to the repository, or absolute) into
/// `images/bench/<prefix><stem>.iso` and boots it in `emulator`.
pub(super) fn boot_in(
    ws: &Workspace,
    manifest: &str,
    emulator: Emulator,
    prefix: &str,
    timeout: Duration,
) -> Result<RunOutcome, String> {
    let stem = std::path::Path::new(manifest)
        .file_stem()
        .map_or_else(|| "bench".into(), |s| s.to_string_lossy().into_owned());
    let req = ImageRequest {
        manifest: ws.root.join(manifest),
        iso: Some(
            ws.images()
                .join("bench")
                .join(format!("{prefix}{stem}.iso")),
        ),
        make_iso: true,
    };
    Progress::stderr().step("Measuring", format!("booting {stem} in {emulator}"));
    let built = image::build_image(ws, &req, &Progress::quiet()).map_err(|e| match e {
        image::ImageError::Manifest(d) => d.render(false),
        other => other.to_string(),
    })?;
    let iso = built.iso.ok_or("no ISO was built")?;
    let machine = run::machine_of(&built.elf).map_err(|e| e.to_string())?;
    let opts = RunOptions::new(Some(emulator), timeout);
    run::boot(ws, &iso, machine, &opts, &mut std::io::sink()).map_err(|e| e.to_string())
}

/// Builds and boots the example `manifest` (relative to the repository) in Bochs and
/// returns its console; an error unless every sandbox passed.
pub(super) fn boot(ws: &Workspace, manifest: &str, timeout: Duration) -> Result<String, String> {
    let outcome = boot_in(ws, manifest, Emulator::Bochs, "", timeout)?;
    if !outcome.passed() {
        return Err(format!("{manifest} did not pass: {}", outcome.describe()));
    }
    Ok(outcome.console)
}

/// The example systems that the boot tests boot on both backends (`boot.rs`,
/// `boot_channels.rs` and `boot_hermit_channels.rs` in Bochs, `boot_svm.rs` in QEMU), in
/// the order the per-backend wall-time row boots them.
pub const BOOT_TEST_SYSTEMS: [&str; 9] = [
    "hello",
    "isolation",
    "restart",
    "hermit-faults",
    "channels-hostile",
    "pingpong",
    "pingpong-hermit",
    "channels-doorbell",
    "channels-local",
];

/// The backends and the emulator each is tested in.
const BACKENDS: [(&str, &str, Emulator); 2] = [
    ("VT-x in Bochs", "vmx-", Emulator::Bochs),
    (
        "SVM in QEMU TCG",
        "svm-",
        Emulator::Qemu(run::qemu::Accel::Tcg),
    ),
];

/// `QUEST_BENCH_ONLY=backends`: `quest-build bench` measures only [`backend_rows`].
pub fn only() -> bool {
    std::env::var_os("QUEST_BENCH_ONLY").is_some_and(|v| v == "backends")
}

/// `cycles` of a `khz` TSC in microseconds, with one decimal.
fn micros(cycles: u64, khz: u64) -> String {
    format!("{:.1} us", cycles as f64 * 1000.0 / khz.max(1) as f64)
}

/// Per backend (VT-x in Bochs, SVM in QEMU's software emulation): boot cost (hello.toml),
/// channel round trip of 64 B and VM exits per message (pingpong.toml), and the wall time
/// of booting [`BOOT_TEST_SYSTEMS`] one at a time: the boot tests' own systems, each
/// booted once as the tests boot it (without the build, the test harness and the other
/// tests running beside it), so the emulators compare on the same work. Each backend's
/// TSC is its emulator's: Bochs' follows instructions at 10 MHz, QEMU's (`-icount
/// shift=7`) at 1 GHz with 128 cycles per instruction, so the rows give microseconds of
/// that guest time too.
pub fn backend_rows(ws: &Workspace, timeout: Duration) -> Result<Vec<(String, String)>, String> {
    let mut out = Vec::new();
    for (label, prefix, emulator) in BACKENDS {
        let mut wall = Duration::ZERO;
        let mut consoles = BTreeMap::new();
        for system in BOOT_TEST_SYSTEMS {
            let manifest = format!("partition-manifests/{system}.toml");
            let outcome = boot_in(ws, &manifest, emulator, prefix, timeout)?;
            if outcome.timed_out {
                return Err(format!("{system} in {emulator}: {}", outcome.describe()));
            }
            wall += outcome.elapsed;
            consoles.insert(system, outcome);
        }
        let passed = |system: &str| match consoles.get(system) {
            Some(o) if o.passed() => Ok(o.console.as_str()),
            Some(o) => Err(format!("{system} in {emulator}: {}", o.describe())),
            None => Err(format!("{system} was not booted")),
        };
        let hello = passed("hello")?;
        let khz = crate::run::console::records(hello)
            .find_map(|r| match r {
                quest_abi::console::Record::Tsc { khz, .. } => Some(khz),
                _ => None,
            })
            .ok_or("hello printed no TSC frequency")?;
        let boot = crate::run::console::boot_cycles(hello).ok_or("hello printed no boot cost")?;
        let ratio = crate::run::console::boot_ratio(hello).map_or_else(
            || "-".into(),
            |(r, _, _)| format!("{}.{:02}", r / 100, r % 100),
        );
        out.push((
            format!("{label}: boot of hello, monitor entry to all sandboxes running"),
            format!(
                "{boot} TSC cycles = {} at {khz} kHz; / one pass over sandbox memory {ratio}",
                micros(boot, khz)
            ),
        ));
        let pingpong = passed("pingpong")?;
        let ping = rows(pingpong)?;
        let rtt = round_trips(pingpong, "ping")
            .into_iter()
            .find(|r| r.size == 64)
            .ok_or("ping printed no 64 B round trip")?;
        out.push((
            format!("{label}: channel round trip 64 B, median"),
            format!(
                "{} TSC cycles = {} ({} rounds, min {}, max {})",
                rtt.median,
                micros(rtt.median, khz),
                rtt.rounds,
                rtt.min,
                rtt.max
            ),
        ));
        if let Some((_, exits)) = ping
            .into_iter()
            .find(|(m, _)| m.contains("VM exits per message"))
        {
            out.push((
                format!("{label}: channel VM exits per message (goal 0)"),
                exits,
            ));
        }
        out.push((
            format!(
                "{label}: wall time of the boot tests' {} systems, one boot at a time",
                BOOT_TEST_SYSTEMS.len()
            ),
            format!(
                "{} ({})",
                super::bench::secs(wall),
                consoles
                    .iter()
                    .map(|(s, o)| format!("{s} {:.1}", o.elapsed.as_secs_f64()))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        ));
    }
    Ok(out)
}

/// Boots `pingpong.toml`, `channels-local.toml` and `bounds.toml` in Bochs and returns the
/// channel rows.
pub fn measure(ws: &Workspace, timeout: Duration) -> Result<Vec<(String, String)>, String> {
    let pingpong = boot(ws, "partition-manifests/pingpong.toml", timeout)?;
    let mut out = rows(&pingpong)?;
    let local = boot(ws, "partition-manifests/channels-local.toml", timeout)?;
    out.extend(local_rows(&pingpong, &local)?);
    let bounds = "partition-manifests/bounds.toml";
    let m = crate::manifest::load(&ws.root.join(bounds)).map_err(|d| d.render(false))?;
    out.extend(bounds_rows(&m, &boot(ws, bounds, timeout)?)?);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const CONSOLE: &str = "\
quest: 2 of 2 cores running
[ping] ping: channels open
[ping] bench rtt 64 rounds=2000 min=740 median=790 p99=795 max=810
[pong] pong: done: messages sent 106151 received 108150 total 214301
[ping] bench rtt 4096 rounds=2000 min=16900 median=16905 p99=16955 max=16955
[ping] bench stream 4096 messages=2000 bytes=8192000 cycles=8491290 bytes_per_kcycle=964 mb_per_s=9 tsc_khz=10000
[ping] ping: done: messages sent 108150 received 106151 total 214301
quest: summary:
quest:   'ping': exited 0, faults 0, launches 1, exits 7: vmcall 6, cpuid 1; doorbells 0, waits 0 (slept 0)
quest:   'pong': exited 0, faults 0, launches 1, exits 2: vmcall 2; doorbells 0, waits 0 (slept 0)
";

    #[test]
    fn round_trips_and_stream_are_parsed() {
        let r = round_trips(CONSOLE, "ping");
        assert_eq!(r.len(), 2);
        assert_eq!(
            r[1],
            RoundTrip {
                size: 4096,
                rounds: 2000,
                min: 16900,
                median: 16905,
                p99: 16955,
                max: 16955
            }
        );
        assert!(round_trips(CONSOLE, "pong").is_empty());
        let s = stream(CONSOLE, "ping").unwrap();
        assert_eq!(
            (s.bytes, s.cycles, s.tsc_khz),
            (8_192_000, 8_491_290, 10_000)
        );
    }

    #[test]
    fn exits_are_read_from_the_summary_and_explained_by_console_lines() {
        let e = summary_exits(CONSOLE, "ping").unwrap();
        assert_eq!(e.total, 7);
        assert_eq!(e.by_reason.get("vmcall"), Some(&6));
        assert_eq!(e.by_reason.get("cpuid"), Some(&1));
        assert_eq!(console_lines(CONSOLE, "ping"), 5);
        // 7 exits - 5 lines - 1 exit call - the CPUID at start.
        assert_eq!(unexplained_exits(CONSOLE, "ping"), Some(0));
        assert_eq!(unexplained_exits(CONSOLE, "pong"), Some(0));
        // A second CPUID is not explained.
        let twice = CONSOLE.replace("exits 7: vmcall 6, cpuid 1", "exits 8: vmcall 6, cpuid 2");
        assert_eq!(unexplained_exits(&twice, "ping"), Some(1));
        assert_eq!(messages_sent(CONSOLE, "pong"), Some(106_151));
        assert_eq!(summary_exits(CONSOLE, "nobody"), None);
    }

    #[test]
    fn rows_report_exits_per_message() {
        let table = rows(CONSOLE).unwrap();
        let exits = table.iter().find(|(m, _)| m.contains("exits")).unwrap();
        assert!(exits
            .1
            .starts_with("0.000000 (0 other exits / 214301 messages"));
        assert!(rows(&CONSOLE.replace("bench rtt", "x")).is_err());
    }

    #[test]
    fn a_summary_without_exits_has_no_reasons() {
        let c = "quest: summary:\nquest:   'a': exited 0, faults 0, launches 1, exits 0; doorbells 0, waits 0 (slept 0)\n";
        let e = summary_exits(c, "a").unwrap();
        assert_eq!(e.total, 0);
        assert!(e.by_reason.is_empty());
    }

    #[test]
    fn local_rows_set_the_channel_beside_the_floor_and_the_intra_sandbox_ring() {
        let local = "[local] bench floor 64 rounds=2000 min=70 median=70 p99=75 max=75\n\
                     [local] bench rtt 64 rounds=2000 min=550 median=555 p99=555 max=555\n";
        let table = local_rows(CONSOLE, local).unwrap();
        assert_eq!(table.len(), 3, "{table:#?}");
        assert!(table[0].0.starts_with("floor: atomic ping-pong of 64 B"));
        assert_eq!(table[0].1, "median 70");
        assert!(table[1]
            .1
            .ends_with("inter-sandbox / intra-sandbox median 1.42 (goal <= 1.1)"));
        assert_eq!(
            table[2].1,
            "11.29 (inter-sandbox median 790 / floor median 70)"
        );
        assert!(local_rows(
            CONSOLE,
            "[local] bench rtt 64 rounds=1 min=1 median=1 p99=1 max=1\n"
        )
        .is_err());
        assert!(local_rows(CONSOLE, &local.replace("rtt", "x")).is_err());
    }
}
