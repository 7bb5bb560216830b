//! `quest-build bench [MANIFEST]`: the benchmark table: monitor size and lines of code,
//! image size, boot cost in Bochs, the build-time rows ([`super::bench_build`]), the
//! Hermit rows ([`super::bench_hermit`]), the monitor's size by crate
//! ([`super::bench_size`]), the channel rows and the per-backend rows (VT-x in Bochs,
//! SVM in QEMU; [`super::bench_channels`]) and the migration rows
//! ([`super::bench_migration`]), the device interrupt rows ([`super::bench_devices`])
//! and the web rows ([`super::bench_web`]). `QUEST_BENCH_ONLY=backends`, `=migration`,
//! `=devices` or `=web` measures only those rows.

use crate::build::{self, Progress, Workspace};
use crate::image::ImageRequest;
use crate::run::{self, console, Emulator, RunOptions};
use goblin::elf::{program_header::PT_LOAD, Elf};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

/// `quest-build bench`.
#[derive(Debug, clap::Args)]
pub struct BenchArgs {
    /// The system to measure.
    #[arg(
        value_name = "MANIFEST",
        default_value = "partition-manifests/hello.toml"
    )]
    pub manifest: PathBuf,
    /// Skip the cold build (it rebuilds everything from scratch in its own target dir).
    #[arg(long)]
    pub no_cold: bool,
    /// Skip booting (no boot cost).
    #[arg(long)]
    pub no_boot: bool,
    /// Time limit for the boot, in seconds.
    #[arg(long, value_name = "SECS", default_value_t = 600)]
    pub timeout: u64,
}

/// Lines of Rust in `dir` that are neither blank nor comments, leaving out `tests.rs`
/// files and `#[cfg(test)]` modules' files named `tests`.
pub fn lines_of_code(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    let mut total = 0;
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            if path.file_name().is_some_and(|n| n != "tests") {
                total += lines_of_code(&path);
            }
        } else if path.extension().is_some_and(|e| e == "rs")
            && path.file_name().is_some_and(|n| n != "tests.rs")
        {
            total += std::fs::read_to_string(&path).map_or(0, |text| count_code_lines(&text));
        }
    }
    total
}

/// Non-blank lines that are not `//` comments.
pub fn count_code_lines(text: &str) -> u64 {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with("//"))
        .count() as u64
}

/// Bytes the monitor loads (every `PT_LOAD` segment's file part).
fn loaded_bytes(elf: &[u8]) -> Option<u64> {
    let elf = Elf::parse(elf).ok()?;
    Some(
        elf.program_headers
            .iter()
            .filter(|p| p.p_type == PT_LOAD)
            .map(|p| p.p_filesz)
            .sum(),
    )
}

fn kib(bytes: u64) -> String {
    format!("{:.1} KiB", bytes as f64 / 1024.0)
}

/// Seconds with two decimals.
pub(super) fn secs(d: Duration) -> String {
    format!("{:.2} s", d.as_secs_f64())
}

/// Measures and prints the table; status 1 if a measurement failed.
pub fn run(args: &BenchArgs) -> ExitCode {
    match measure(args) {
        Ok(rows) => {
            println!("| metric | value |\n|---|---|");
            for (metric, value) in rows {
                println!("| {metric} | {value} |");
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(1)
        }
    }
}

fn measure(args: &BenchArgs) -> Result<Vec<(String, String)>, String> {
    let ws = Workspace::locate();
    if super::bench_migration::only() {
        return super::bench_migration::measure(&ws, Duration::from_secs(args.timeout));
    }
    if super::bench_devices::only() {
        return super::bench_devices::measure(&ws, Duration::from_secs(args.timeout));
    }
    if super::bench_channels::only() {
        return super::bench_channels::backend_rows(&ws, Duration::from_secs(args.timeout));
    }
    if super::bench_web::only() {
        return super::bench_web::measure(&ws, Duration::from_secs(args.timeout));
    }
    let progress = Progress::stderr();
    let mut rows = Vec::new();
    let stem = args
        .manifest
        .file_stem()
        .map_or_else(|| "bench".into(), |s| s.to_string_lossy().into_owned());
    let req = ImageRequest {
        manifest: args.manifest.clone(),
        iso: Some(ws.images().join("bench").join(format!("{stem}.iso"))),
        make_iso: true,
    };

    let (build_rows, built) = super::bench_build::build_rows(&ws, &req, !args.no_cold, &progress)?;
    rows.extend(build_rows);

    if built
        .plan
        .sandboxes
        .iter()
        .any(|s| s.runtime == quest_abi::Runtime::Hermit)
    {
        progress.step(
            "Measuring",
            "Hermit builds (cold, warm) and unikernel sizes",
        );
    }
    rows.extend(super::bench_hermit::build_rows(
        &ws,
        &built.plan,
        !args.no_cold,
    )?);

    let monitor = build::build_monitor(&ws, &Progress::quiet()).map_err(|e| e.to_string())?;
    let monitor_bytes =
        std::fs::read(&monitor).map_err(|e| format!("{}: {e}", monitor.display()))?;
    rows.push((
        "monitor ELF".into(),
        format!(
            "{} file, {} loaded",
            kib(monitor_bytes.len() as u64),
            kib(loaded_bytes(&monitor_bytes).unwrap_or(0))
        ),
    ));
    rows.extend(super::bench_size::rows(&monitor_bytes, 8));
    let src = lines_of_code(&ws.root.join("monitor/src"));
    let core = lines_of_code(&ws.root.join("monitor/core/src"));
    let abi = lines_of_code(&ws.root.join("monitor/abi/src"));
    rows.push((
        "monitor lines of code (no blanks, comments, tests files)".into(),
        format!(
            "{} (monitor/src {src}, monitor/core {core}, quest-abi {abi})",
            src + core + abi
        ),
    ));
    let size_of = |p: &Path| std::fs::metadata(p).map_or(0, |m| m.len());
    let iso = built.iso.clone().unwrap_or_default();
    rows.push((
        "image size".into(),
        format!(
            "ELF {}, ISO {}",
            kib(size_of(&built.elf)),
            kib(size_of(&iso))
        ),
    ));

    if !args.no_boot {
        progress.step(
            "Measuring",
            format!("boot cost of {} in Bochs", iso.display()),
        );
        let machine = run::machine_of(&built.elf).map_err(|e| e.to_string())?;
        let opts = RunOptions::new(Some(Emulator::Bochs), Duration::from_secs(args.timeout));
        let outcome = run::boot(&ws, &iso, machine, &opts, &mut std::io::sink())
            .map_err(|e| e.to_string())?;
        let cost = console::boot_cycles(&outcome.console).map_or_else(
            || {
                "not reported (no `quest: all sandboxes running after N TSC cycles` line)"
                    .to_owned()
            },
            |c| format!("{c} TSC cycles"),
        );
        rows.push((
            "boot: monitor entry to all sandboxes running (Bochs)".into(),
            cost,
        ));
        rows.push((
            "boot: cost / one pass over all sandbox memory (goal <= 1.5)".into(),
            console::boot_ratio(&outcome.console).map_or_else(
                || "not reported".to_owned(),
                |(r, mib, pass)| {
                    format!(
                        "{}.{:02} ({mib} MiB, one pass {pass} TSC cycles)",
                        r / 100,
                        r % 100
                    )
                },
            ),
        ));
        rows.push((
            "boot: wall time to the summary (Bochs)".into(),
            format!("{} ({})", secs(outcome.elapsed), outcome.describe()),
        ));
        rows.extend(super::bench_hermit::launch_rows(&outcome.console));
    }
    if !args.no_boot {
        rows.extend(super::bench_channels::measure(
            &ws,
            Duration::from_secs(args.timeout),
        )?);
        rows.extend(super::bench_channels::backend_rows(
            &ws,
            Duration::from_secs(args.timeout),
        )?);
        rows.extend(super::bench_migration::measure(
            &ws,
            Duration::from_secs(args.timeout),
        )?);
        rows.extend(super::bench_devices::measure(
            &ws,
            Duration::from_secs(args.timeout),
        )?);
        rows.extend(super::bench_web::measure(
            &ws,
            Duration::from_secs(args.timeout),
        )?);
    }
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn code_lines_leave_out_blanks_and_comments() {
        let text = "//! doc\n\nfn main() {\n    // why\n    let x = 1; // trailing\n}\n";
        assert_eq!(count_code_lines(text), 3);
    }
}
