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
//! text decides.

/// The line that says the system succeeded.
pub const SUCCESS_LINE: &str = "quest: all sandboxes exited 0";
/// Starts of the lines that say the system failed.
pub const FAILURE_PREFIXES: [&str; 2] =
    ["quest: not every sandbox exited 0", "quest: system failed"];
/// The line that starts the summary block.
pub const SUMMARY_LINE: &str = "quest: summary:";
/// Boot-cost line: `<prefix> <N> TSC cycles`.
pub const RUNNING_PREFIX: &str = "quest: all sandboxes running after ";

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
    for line in console.lines().map(|l| l.trim_end_matches('\r')) {
        if line.trim_end() == SUCCESS_LINE {
            return Verdict::Passed;
        }
        if FAILURE_PREFIXES.iter().any(|p| line.starts_with(p)) {
            return Verdict::Failed(line.to_owned());
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
    console.lines().find_map(|l| {
        l.trim_end_matches('\r')
            .strip_prefix(RUNNING_PREFIX)?
            .strip_suffix(" TSC cycles")?
            .trim()
            .parse()
            .ok()
    })
}

/// How one sandbox ended, from its summary line (`quest:   '<name>': exited <N>, ...`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SandboxEnd {
    /// It exited with this status.
    Exited(i32),
    /// It was halted after a fault.
    Halted,
    /// It was still running (or the line says something else).
    Other,
}

/// Every sandbox's end as the summary lists it, in table order (only lines after
/// `quest: summary:` count).
pub fn sandbox_ends(console: &str) -> Vec<(String, SandboxEnd)> {
    let Some(at) = console.find(SUMMARY_LINE) else {
        return Vec::new();
    };
    console[at..]
        .lines()
        .filter_map(|l| {
            let rest = l.trim_end_matches('\r').strip_prefix("quest:   '")?;
            let (name, rest) = rest.split_once("': ")?;
            let end = match rest.strip_prefix("exited ") {
                Some(code) => {
                    let digits = code.split(|c: char| c == ',' || c.is_whitespace()).next()?;
                    SandboxEnd::Exited(digits.parse().ok()?)
                }
                None if rest.starts_with("halted") => SandboxEnd::Halted,
                None => SandboxEnd::Other,
            };
            Some((name.to_owned(), end))
        })
        .collect()
}

/// The status `quest-build run` ends with: 0 when every sandbox exited 0; otherwise
/// that of the first sandbox (table order) that did not: its exit status's low 8 bits
/// (as a process's status would be; 1 when those are 0), or 1 when it was halted, never
/// finished, or the console has no summary at all.
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
            SandboxEnd::Halted | SandboxEnd::Other => Some(1),
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

    const PASSED: &str = "quest: Quest monitor\r\n[a] hello\nquest: all sandboxes running after 123456 TSC cycles\n[b] hi there\nquest: summary: a exited 0\nquest: all sandboxes exited 0\n";

    #[test]
    fn the_success_line_passes() {
        assert_eq!(verdict(PASSED), Verdict::Passed);
        assert!(finished(PASSED));
        assert_eq!(boot_cycles(PASSED), Some(123_456));
    }

    #[test]
    fn failures_and_refusals_do_not_pass() {
        let failed =
            "quest: summary: a exited 3\nquest: system failed: 1 of 2 sandboxes did not exit 0\n";
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

    #[test]
    fn the_run_status_is_the_first_failing_sandbox_status() {
        let summary =
            |lines: &str| format!("quest: summary:\n{lines}quest: not every sandbox exited 0\n");
        let c = summary(
            "quest:   'a': exited 0, faults 0, launches 1, exits 5: cpuid 5\n\
             quest:   'b': exited 3, faults 0, launches 1, exits none\n\
             quest:   'c': exited -1, faults 0\n",
        );
        assert_eq!(
            sandbox_ends(&c),
            [
                ("a".to_owned(), SandboxEnd::Exited(0)),
                ("b".to_owned(), SandboxEnd::Exited(3)),
                ("c".to_owned(), SandboxEnd::Exited(-1)),
            ]
        );
        assert_eq!(exit_status(&c), 3);
        assert_eq!(
            exit_status(&summary("quest:   'c': exited -1, faults 0\n")),
            255
        );
        assert_eq!(
            exit_status(&summary("quest:   'c': exited 256, faults 0\n")),
            1
        );
        assert_eq!(
            exit_status(&summary("quest:   'x': halted, faults 1, launches 1\n")),
            1
        );
        assert_eq!(exit_status(PASSED), 0);
        assert_eq!(exit_status("quest: no VT-x\n"), 1, "no summary: failed");
        // Sandbox output cannot pose as a summary line.
        assert!(sandbox_ends(&summary("[evil] quest:   'a': exited 7\n")).is_empty());
        // Lines before the summary do not count.
        assert!(sandbox_ends("quest:   'a': exited 7\n").is_empty());
    }

    #[test]
    fn sandbox_lines_are_found_by_name() {
        let lines: Vec<_> = sandbox_lines(PASSED, "b").collect();
        assert_eq!(lines, ["hi there"]);
        assert_eq!(sandbox_lines(PASSED, "").count(), 0);
    }
}
