//! The Hermit rows of `quest-build bench`, for the manifest's Hermit sandboxes:
//!
//! - cold build: kernel, standard library and application from scratch, in a fresh
//!   output directory of their own (the kernel source is taken from cargo's registry, so
//!   no download is timed);
//! - warm build: the same again, everything cached;
//! - unikernel size: the linked ELF (kernel + application) and what the sandbox's
//!   initial memory holds of it;
//! - launch to `main`: the monitor prints each sandbox's launch TSC
//!   (`quest: sandbox '<name>' launched at TSC <T>`), an application that prints
//!   `main started at TSC <M>` first thing in `main` (hello-std does) gives `M - T`; the
//!   guest reads the same TSC as the monitor (no offset).

use crate::build::{Progress, Workspace};
use crate::plan::Plan;
use crate::run::console::Record;
use crate::runtime::hermit;
use goblin::elf::{program_header::PT_LOAD, Elf};
use quest_abi::Runtime;
use std::time::Instant;

/// Bench rows: (metric, value).
pub type Rows = Vec<(String, String)>;

/// The first Hermit sandbox of `plan`, if any: the one whose build is timed.
fn first_hermit(plan: &Plan) -> Option<usize> {
    plan.sandboxes
        .iter()
        .position(|s| s.runtime == Runtime::Hermit)
}

/// Build rows: cold (unless `cold` is false) and warm build time of the first Hermit
/// sandbox, and the unikernel size of every Hermit sandbox. No rows without Hermit.
pub fn build_rows(ws: &Workspace, plan: &Plan, cold: bool) -> Result<Rows, String> {
    let Some(first) = first_hermit(plan) else {
        return Ok(Vec::new());
    };
    let quiet = Progress::quiet();
    let build = |ws: &Workspace, i: usize| {
        hermit::build_sandbox(ws, plan, i, &quiet).map_err(|e| e.to_string())
    };
    let name = &plan.sandboxes[first].name;
    let mut rows = Vec::new();
    if cold {
        let scratch = ws.images().join("bench").join("hermit-cold");
        let _ = std::fs::remove_dir_all(&scratch);
        let started = Instant::now();
        build(&ws.with_outputs_in(&scratch), first)?;
        rows.push((
            format!("Hermit cold build of `{name}` (kernel + std + app, nothing cached)"),
            format!("{:.1} s", started.elapsed().as_secs_f64()),
        ));
        let _ = std::fs::remove_dir_all(&scratch);
    }
    build(ws, first)?;
    let started = Instant::now();
    build(ws, first)?;
    rows.push((
        format!("Hermit warm build of `{name}` (everything cached)"),
        format!("{:.2} s", started.elapsed().as_secs_f64()),
    ));
    for (i, sb) in plan.sandboxes.iter().enumerate() {
        if sb.runtime != Runtime::Hermit {
            continue;
        }
        let built = build(ws, i)?;
        let elf = std::fs::read(&built.elf).map_err(|e| format!("{}: {e}", built.elf.display()))?;
        let payload: u64 = built
            .image
            .payloads
            .iter()
            .map(|p| p.bytes.len() as u64)
            .sum();
        rows.push((
            format!(
                "Hermit unikernel `{}` ({} kernel)",
                sb.name,
                hermit::KernelConfig::of(sb).name()
            ),
            format!(
                "ELF {:.1} KiB, {:.1} KiB loaded; initial memory payloads {:.1} KiB",
                elf.len() as f64 / 1024.0,
                loaded_bytes(&elf) as f64 / 1024.0,
                payload as f64 / 1024.0
            ),
        ));
    }
    Ok(rows)
}

/// Bytes of every `PT_LOAD` segment's file part (0 if `elf` does not parse).
fn loaded_bytes(elf: &[u8]) -> u64 {
    Elf::parse(elf).map_or(0, |e| {
        e.program_headers
            .iter()
            .filter(|p| p.p_type == PT_LOAD)
            .map(|p| p.p_filesz)
            .sum()
    })
}

/// The TSC frequency the monitor measured (`quest: TSC <N> kHz ...`).
pub fn tsc_khz(console: &str) -> Option<u64> {
    crate::run::console::records(console).find_map(|r| match r {
        Record::Tsc { khz, .. } => Some(khz),
        _ => None,
    })
}

/// Per sandbox that printed `main started at TSC <M>`: cycles from its launch TSC.
pub fn launch_to_main(console: &str) -> Vec<(String, u64)> {
    let launched = |name: &str| {
        crate::run::console::records(console).find_map(|r| match r {
            Record::Launched { sandbox, tsc } if sandbox == name => Some(tsc),
            _ => None,
        })
    };
    let mut out: Vec<(String, u64)> = Vec::new();
    for line in console.lines().map(|l| l.trim_end_matches('\r')) {
        let Some(rest) = line.strip_prefix('[') else {
            continue;
        };
        let Some((name, text)) = rest.split_once("] ") else {
            continue;
        };
        let Some((_, tsc)) = text.split_once("main started at TSC ") else {
            continue;
        };
        let (Ok(main), Some(launch)) = (tsc.trim().parse::<u64>(), launched(name)) else {
            continue;
        };
        if out.iter().all(|(n, _)| n != name) {
            out.push((name.to_owned(), main.saturating_sub(launch)));
        }
    }
    out
}

/// Launch-to-main rows from a boot's console.
pub fn launch_rows(console: &str) -> Rows {
    let khz = tsc_khz(console);
    launch_to_main(console)
        .into_iter()
        .map(|(name, cycles)| {
            let time = khz.filter(|&k| k > 0).map_or_else(String::new, |k| {
                format!(" ({:.1} ms of guest time)", cycles as f64 / k as f64)
            });
            (
                format!("Hermit `{name}`: sandbox launch to `main` (Bochs)"),
                format!("{cycles} TSC cycles{time}"),
            )
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const CONSOLE: &str = "quest: TSC 10000 kHz (measured against the PIT)\n\
        quest: sandbox 'alpha' launched at TSC 1000\n\
        quest: sandbox 'gamma' launched at TSC 1200\n\
        [alpha] hello-std: main started at TSC 501000\n\
        [gamma] hello from gamma\n\
        [evil] hello-std: main started at TSC 9\n\
        [alpha] hello-std: main started at TSC 999999\n";

    #[test]
    fn launch_to_main_pairs_launch_and_main_by_sandbox() {
        assert_eq!(tsc_khz(CONSOLE), Some(10_000));
        // Only sandboxes with both lines count, each once (its first `main`).
        assert_eq!(launch_to_main(CONSOLE), [("alpha".to_owned(), 500_000)]);
        let rows = launch_rows(CONSOLE);
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0].1, "500000 TSC cycles (50.0 ms of guest time)");
        assert!(launch_to_main("").is_empty());
        assert_eq!(tsc_khz("quest: TSC lots kHz"), None);
    }
}
