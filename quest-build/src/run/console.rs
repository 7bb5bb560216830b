//! Reading a boot's outcome from the monitor's console text.
//!
//! # The console contract (what the monitor prints, what `quest-build run` reads)
//! Every monitor line starts with `quest: `; sandbox output is prefixed `[name] `.
//! - `quest: all sandboxes running after <N> TSC cycles`: boot cost, from monitor entry
//!   until every sandbox's vCPUs were launched (the benchmark reads it).
//! - The summary block, printed once when no sandbox is left running:
//!   `quest: summary: ...` lines (per sandbox: status, faults, launches, VM exits), then
//!   exactly one final line: `quest: all sandboxes exited 0` when every sandbox exited with
//!   status 0, else `quest: not every sandbox exited 0` (or `quest: system failed: <why>`).
//! - Any refusal (bad table, hash mismatch, no VT-x, ...) is one `quest: ` line followed
//!   by the shutdown; without the final success line the run counts as failed.
//!
//! The emulator's own status cannot be trusted for this (Bochs always exits 1), so the
//! text decides. Every line read here is a [`Record`], printed by the monitor and parsed
//! by the same crate (`quest_abi::console`).

pub use quest_abi::console::{Record, SandboxEnd, SandboxSummary};

/// Every monitor record on the console, in order (sandbox lines and others left out).
pub fn records(console: &str) -> impl Iterator<Item = Record<'_>> {
    console.lines().filter_map(Record::parse)
}

/// What the console says about a run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Every sandbox exited 0.
    Passed,
    /// The system failed; the line that says so (the last `quest:` line if none did).
    Failed(String),
    /// The console ended without a verdict (crash, hang, timeout).
    Unfinished,
}

impl Verdict {
    /// Whether the run passed.
    pub fn passed(&self) -> bool {
        matches!(self, Self::Passed)
    }
}

/// The verdict of a finished (or stopped) boot from its console text.
pub fn verdict(console: &str) -> Verdict {
    for line in console.lines().map(str::trim_end) {
        match Record::parse(line) {
            Some(Record::Passed) => return Verdict::Passed,
            Some(Record::NotPassed | Record::SystemFailed(_)) => {
                return Verdict::Failed(line.to_owned())
            }
            _ => {}
        }
    }
    Verdict::Unfinished
}

/// Whether the console shows the system has ended (a verdict was printed).
pub fn finished(console: &str) -> bool {
    verdict(console) != Verdict::Unfinished
}

/// The last line the monitor itself printed (a refusal is the last one), if any.
pub fn last_monitor_line(console: &str) -> Option<&str> {
    console
        .lines()
        .map(|l| l.trim_end_matches('\r'))
        .rfind(|l| l.starts_with("quest: "))
}

/// Boot cost in TSC cycles, from the `all sandboxes running` line.
pub fn boot_cycles(console: &str) -> Option<u64> {
    records(console).find_map(|r| match r {
        Record::Running { cycles } => Some(cycles),
        _ => None,
    })
}

/// The boot cost against one pass over all sandbox memory: (ratio in hundredths, sandbox
/// memory in MiB, TSC cycles per pass).
pub fn boot_ratio(console: &str) -> Option<(u64, u64, u64)> {
    records(console).find_map(|r| match r {
        Record::BootRatio {
            hundredths,
            mib,
            pass_cycles,
        } => Some((hundredths, mib, pass_cycles)),
        _ => None,
    })
}

/// The summary's per-sandbox lines, in table order (only lines after `quest: summary:`
/// count).
pub fn summaries(console: &str) -> impl Iterator<Item = SandboxSummary<'_>> {
    records(console)
        .skip_while(|r| *r != Record::SummaryStart)
        .filter_map(|r| match r {
            Record::Summary(s) => Some(s),
            _ => None,
        })
}

/// Every sandbox's end as the summary lists it, in table order.
pub fn sandbox_ends(console: &str) -> Vec<(String, SandboxEnd)> {
    summaries(console)
        .map(|s| (s.name.to_owned(), s.end))
        .collect()
}

/// The status `quest-build run` ends with: 0 when every sandbox exited 0; otherwise
/// that of the first sandbox (table order) that did not: its exit status's low 8 bits
/// (as a process's status would be; 1 when those are 0), or 1 when it was halted, never
/// finished, or the console has no summary at all. A sandbox that was not started
/// because a device it needs is absent (`if_absent = "keep-stopped"`, the default) counts
/// as not having exited 0 (1): the system that ran is not the one the manifest
/// describes, and a script should hear it; `if_absent = "start-without"` is the way to
/// say a sandbox's device is optional.
pub fn exit_status(console: &str) -> u8 {
    if verdict(console).passed() {
        return 0;
    }
    sandbox_ends(console)
        .into_iter()
        .find_map(|(_, end)| match end {
            SandboxEnd::Exited(0) => None,
            SandboxEnd::Exited(code) => Some(match code as u8 {
                0 => 1,
                low => low,
            }),
            SandboxEnd::Halted | SandboxEnd::NotStarted | SandboxEnd::Running => Some(1),
        })
        .unwrap_or(1)
}

/// The lines a sandbox printed (without the `[name] ` prefix).
pub fn sandbox_lines<'a>(console: &'a str, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
    console.lines().filter_map(move |l| {
        let rest = l.trim_end_matches('\r').strip_prefix('[')?;
        let rest = rest.strip_prefix(name)?;
        rest.strip_prefix("] ")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const PASSED: &str = "quest: Quest monitor\r\n[a] hello\nquest: all sandboxes running after 123456 TSC cycles\n[b] hi there\nquest: summary:\nquest:   'a': exited 0, faults 0, launches 1, exits 0; doorbells 0, waits 0 (slept 0)\nquest: all sandboxes exited 0\n";

    #[test]
    fn the_success_line_passes() {
        assert_eq!(verdict(PASSED), Verdict::Passed);
        assert!(finished(PASSED));
        assert_eq!(boot_cycles(PASSED), Some(123_456));
    }

    #[test]
    fn failures_and_refusals_do_not_pass() {
        let failed = "quest: summary:\nquest: system failed: 1 of 2 sandboxes did not exit 0\n";
        assert_eq!(
            verdict(failed),
            Verdict::Failed("quest: system failed: 1 of 2 sandboxes did not exit 0".into())
        );
        assert_eq!(
            verdict("quest: not every sandbox exited 0\n"),
            Verdict::Failed("quest: not every sandbox exited 0".into())
        );
        let refused = "quest: this CPU has no VT-x with EPT; Quest needs it\n";
        assert_eq!(verdict(refused), Verdict::Unfinished);
        assert_eq!(
            last_monitor_line(refused),
            Some("quest: this CPU has no VT-x with EPT; Quest needs it")
        );
        // A sandbox cannot fake the success line: its output is prefixed.
        assert_eq!(
            verdict("[evil] quest: all sandboxes exited 0\n"),
            Verdict::Unfinished
        );
        assert_eq!(
            boot_cycles("quest: all sandboxes running after lots TSC cycles"),
            None
        );
    }

    /// A summary line as the monitor prints it.
    fn line(name: &str, end: &str, exits: &str) -> String {
        format!("quest:   '{name}': {end}, faults 0, launches 1, exits {exits}; doorbells 0, waits 0 (slept 0)\n")
    }

    #[test]
    fn the_run_status_is_the_first_failing_sandbox_status() {
        let summary =
            |lines: &str| format!("quest: summary:\n{lines}quest: not every sandbox exited 0\n");
        let c = summary(&format!(
            "{}{}{}",
            line("a", "exited 0", "5: cpuid 5"),
            line("b", "exited 3", "0"),
            line("c", "exited -1", "0")
        ));
        assert_eq!(
            sandbox_ends(&c),
            [
                ("a".to_owned(), SandboxEnd::Exited(0)),
                ("b".to_owned(), SandboxEnd::Exited(3)),
                ("c".to_owned(), SandboxEnd::Exited(-1)),
            ]
        );
        assert_eq!(exit_status(&c), 3);
        assert_eq!(exit_status(&summary(&line("c", "exited -1", "0"))), 255);
        assert_eq!(exit_status(&summary(&line("c", "exited 256", "0"))), 1);
        assert_eq!(exit_status(&summary(&line("x", "halted", "1: cpuid 1"))), 1);
        assert_eq!(exit_status(&summary(&line("x", "running", "0"))), 1);
        let never = summary(&format!(
            "{}{}",
            line("x", "not started", "0"),
            line("y", "exited 4", "0")
        ));
        assert_eq!(sandbox_ends(&never)[0].1, SandboxEnd::NotStarted);
        assert_eq!(exit_status(&never), 1, "a sandbox kept stopped comes first");
        assert_eq!(exit_status(PASSED), 0);
        assert_eq!(exit_status("quest: no VT-x\n"), 1, "no summary: failed");
        // Sandbox output cannot pose as a summary line.
        let forged = format!("[evil] {}", line("a", "exited 7", "0"));
        assert!(sandbox_ends(&summary(&forged)).is_empty());
        // Lines before the summary do not count.
        assert!(sandbox_ends(&line("a", "exited 7", "0")).is_empty());
    }

    #[test]
    fn the_boot_ratio_is_read() {
        let c = "quest: all sandboxes running after 300 TSC cycles\nquest: boot cost is 1.50 passes over all sandbox memory (104 MiB in 200 TSC cycles per pass)\n";
        assert_eq!(boot_cycles(c), Some(300));
        assert_eq!(boot_ratio(c), Some((150, 104, 200)));
        assert_eq!(boot_ratio(PASSED), None);
    }

    #[test]
    fn sandbox_lines_are_found_by_name() {
        let lines: Vec<_> = sandbox_lines(PASSED, "b").collect();
        assert_eq!(lines, ["hi there"]);
        assert_eq!(sandbox_lines(PASSED, "").count(), 0);
    }
}
