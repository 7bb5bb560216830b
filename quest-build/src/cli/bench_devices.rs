//! The device rows of `quest-build bench`: interrupt latency (median and p99, from the
//! raise to the handler's first instruction) and VM exits per interrupt, for INTx
//! (routed through the I/O APIC) and MSI (translated by the monitor), from one boot of
//! `partition-manifests/irq.toml` in QEMU's software emulation (SVM backend; QEMU's `edu`
//! device, which Bochs does not have). `QUEST_BENCH_ONLY=devices` measures only these.
//! The TSC is QEMU's under `-icount shift=7` (1 GHz, 128 cycles per instruction), so the
//! cycles are guest instructions x 128, deterministic (min = max), not host time.
//! Exits per interrupt on both backends come from `partition-manifests/irq-rtc.toml`
//! (the CMOS clock's periodic interrupt, an ISA device Bochs has too): VT-x in Bochs and
//! SVM in QEMU.

use crate::build::Workspace;
use std::time::Duration;

/// The manifest the rows boot.
const MANIFEST: &str = "partition-manifests/irq.toml";
/// The RTC manifest, booted on both backends.
const RTC_MANIFEST: &str = "partition-manifests/irq-rtc.toml";

/// One interrupt phase as irq-probe prints it:
/// `irq-probe: NAME: A of R arrived (vector V; on vCPU 0: x, vCPU 1: y, elsewhere: z);
/// latency median M p99 P max X cycles; E exits (...)`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InterruptPhase {
    /// `INTx` or `MSI`.
    pub name: String,
    /// Interrupts that arrived.
    pub arrived: u64,
    /// Interrupts raised.
    pub rounds: u64,
    /// Arrived on vCPU 0, vCPU 1, elsewhere.
    pub on: [u64; 3],
    /// Latency median, p99, max (TSC cycles).
    pub median: u64,
    /// Latency p99.
    pub p99: u64,
    /// Latency max.
    pub max: u64,
    /// The sandbox's VM exits during the phase.
    pub exits: u64,
}

impl InterruptPhase {
    /// Parses one console line (with or without the `[sandbox] ` prefix).
    pub fn parse(line: &str) -> Option<Self> {
        let rest = line.split_once("irq-probe: ")?.1;
        let (name, rest) = rest.split_once(": ")?;
        let (arrived, rest) = rest.split_once(" of ")?;
        let (rounds, rest) = rest.split_once(" arrived (vector ")?;
        let number = |s: &str, before: &str| -> Option<u64> {
            let at = s.find(before)? + before.len();
            let digits: String = s[at..].chars().take_while(char::is_ascii_digit).collect();
            digits.parse().ok()
        };
        Some(Self {
            name: name.to_owned(),
            arrived: arrived.parse().ok()?,
            rounds: rounds.parse().ok()?,
            on: [
                number(rest, "on vCPU 0: ")?,
                number(rest, "vCPU 1: ")?,
                number(rest, "elsewhere: ")?,
            ],
            median: number(rest, "latency median ")?,
            p99: number(rest, " p99 ")?,
            max: number(rest, " max ")?,
            exits: number(rest, "cycles; ")?,
        })
    }

    /// Exits per interrupt.
    pub fn exits_per_interrupt(&self) -> f64 {
        self.exits as f64 / self.rounds.max(1) as f64
    }
}

/// The phases irq-probe printed, in order.
pub fn phases(console: &str) -> Vec<InterruptPhase> {
    console.lines().filter_map(InterruptPhase::parse).collect()
}

/// irq-probe's RTC line (`irq-probe: RTC: T of R periodic interrupts ...; E exits (...)`):
/// the interrupts taken and the exits they cost.
pub fn rtc_exits(console: &str) -> Option<(u64, u64)> {
    let line = console.lines().find(|l| l.contains("irq-probe: RTC: "))?;
    let rest = line.split_once("irq-probe: RTC: ")?.1;
    let ticks = rest.split(' ').next()?.parse().ok()?;
    let exits = rest.split_once("; ")?.1.split(' ').next()?.parse().ok()?;
    Some((ticks, exits))
}

/// `QUEST_BENCH_ONLY=devices`: `quest-build bench` measures only these rows.
pub fn only() -> bool {
    std::env::var_os("QUEST_BENCH_ONLY").is_some_and(|v| v == "devices")
}

/// The rows of one console of irq.toml (`khz`: its TSC frequency).
pub fn rows_of(console: &str, khz: u64) -> Result<Vec<(String, String)>, String> {
    let phases = phases(console);
    ["INTx", "MSI"]
        .into_iter()
        .map(|name| {
            let p = phases
                .iter()
                .find(|p| p.name == name)
                .ok_or(format!("irq-probe printed no {name} phase"))?;
            let ns = |c: u64| c as f64 * 1e6 / khz.max(1) as f64;
            Ok((
                format!("interrupts: {name} (edu, SVM in QEMU TCG), raise to handler"),
                format!(
                    "median {} p99 {} TSC cycles ({:.0} / {:.0} ns at {khz} kHz), {} of {} arrived; {:.2} exits per interrupt (goal 0)",
                    p.median,
                    p.p99,
                    ns(p.median),
                    ns(p.p99),
                    p.arrived,
                    p.rounds,
                    p.exits_per_interrupt()
                ),
            ))
        })
        .collect()
}

/// Boots irq.toml in QEMU and returns the rows.
pub fn measure(ws: &Workspace, timeout: Duration) -> Result<Vec<(String, String)>, String> {
    let outcome = super::bench_channels::boot_in(
        ws,
        MANIFEST,
        crate::run::Emulator::Qemu(crate::run::qemu::Accel::Tcg),
        "svm-",
        timeout,
    )?;
    if !outcome.passed() {
        return Err(format!("{MANIFEST} did not pass: {}", outcome.describe()));
    }
    let khz = crate::run::console::records(&outcome.console)
        .find_map(|r| match r {
            quest_abi::console::Record::Tsc { khz, .. } => Some(khz),
            _ => None,
        })
        .ok_or("irq.toml printed no TSC frequency")?;
    let mut rows = rows_of(&outcome.console, khz)?;
    for (label, prefix, emulator) in [
        ("VT-x in Bochs", "", crate::run::Emulator::Bochs),
        (
            "SVM in QEMU TCG",
            "svm-",
            crate::run::Emulator::Qemu(crate::run::qemu::Accel::Tcg),
        ),
    ] {
        let outcome = super::bench_channels::boot_in(ws, RTC_MANIFEST, emulator, prefix, timeout)?;
        if !outcome.passed() {
            return Err(format!(
                "{RTC_MANIFEST} in {emulator}: {}",
                outcome.describe()
            ));
        }
        let (ticks, exits) = rtc_exits(&outcome.console).ok_or("irq-probe printed no RTC line")?;
        rows.push((
            format!("interrupts: exits per interrupt, RTC line 8 ({label})"),
            format!(
                "{:.2} ({exits} exits / {ticks} interrupts; goal 0)",
                exits as f64 / ticks.max(1) as f64
            ),
        ));
    }
    rows.push((
        "interrupts: why 1 exit on SVM in QEMU".into(),
        "QEMU TCG has no x2APIC: the monitor emulates it, so each EOI (WRMSR 0x80B) exits; \
         on VT-x (host x2APIC) the EOI passes through and an interrupt costs no exit"
            .into(),
    ));
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    const CONSOLE: &str = "\
[probe] irq-probe: edu at 00:03.0, BAR0 0xfea00000 reads 0x010000ed, INTA line 11, bus master on
[probe] irq-probe: INTx: 64 of 64 arrived (vector 43; on vCPU 0: 64, vCPU 1: 0, elsewhere: 0); latency median 4608 p99 4736 max 5000 cycles; 64 exits (1.00 per interrupt)
[probe] irq-probe: MSI: 63 of 64 arrived (vector 96; on vCPU 0: 62, vCPU 1: 1, elsewhere: 0); latency median 4000 p99 4100 max 4200 cycles; 0 exits (0.00 per interrupt)
[probe] irq-probe: MSI to APIC ID 1: 4 of 4 arrived on vCPU 1 (0 elsewhere)
";

    #[test]
    fn phases_are_parsed_from_the_probe_lines() {
        let p = phases(CONSOLE);
        assert_eq!(p.len(), 2, "{p:?}");
        assert_eq!(
            p[0],
            InterruptPhase {
                name: "INTx".into(),
                arrived: 64,
                rounds: 64,
                on: [64, 0, 0],
                median: 4608,
                p99: 4736,
                max: 5000,
                exits: 64,
            }
        );
        assert_eq!((p[1].arrived, p[1].on, p[1].exits), (63, [62, 1, 0], 0));
        assert!((p[0].exits_per_interrupt() - 1.0).abs() < 1e-9);
    }

    #[test]
    fn rows_give_latency_and_exits() {
        let rows = rows_of(CONSOLE, 1_000_000).unwrap();
        assert_eq!(rows.len(), 2);
        assert_eq!(
            rows[0].1,
            "median 4608 p99 4736 TSC cycles (4608 / 4736 ns at 1000000 kHz), 64 of 64 arrived; 1.00 exits per interrupt (goal 0)"
        );
        assert!(rows_of("", 1).is_err());
    }

    #[test]
    fn the_rtc_line_gives_interrupts_and_exits() {
        let line = "[clock] irq-probe: RTC: 64 of 64 periodic interrupts on vCPU 0 (vector 40), 0 stray; 3 exits (0.04 per interrupt)";
        assert_eq!(rtc_exits(line), Some((64, 3)));
        assert_eq!(rtc_exits(CONSOLE), None);
    }
}
