//! `quest-build run MANIFEST|IMAGE [--emulator bochs|qemu] [--timeout SECS]`.

use crate::build::{Progress, Workspace};
use crate::run::{self, qemu::Accel, Emulator, RunError, RunOptions};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

/// Emulator names on the command line.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum EmulatorArg {
    /// Bochs: emulates VT-x with EPT (slow, works everywhere).
    Bochs,
    /// QEMU: with KVM where the host offers VT-x, else software emulation (no VT-x).
    Qemu,
}

/// `quest-build run`.
#[derive(Debug, clap::Args)]
pub struct RunArgs {
    /// A manifest (built first), an image ISO, or its ELF.
    #[arg(value_name = "MANIFEST|IMAGE")]
    pub target: PathBuf,
    /// The emulator [default: QEMU with KVM if the host offers VT-x, else Bochs].
    #[arg(long, value_enum)]
    pub emulator: Option<EmulatorArg>,
    /// Stop the boot after this many seconds.
    #[arg(long, value_name = "SECS", default_value_t = 600)]
    pub timeout: u64,
    /// Write the platform constants the monitor measured at boot to
    /// `images/<system>.platform.toml` (for `quest-build bounds --platform`).
    #[arg(long)]
    pub calibrate: bool,
    /// Check every message's latency against its channel's bound (computed from this
    /// boot's calibration); exit 1 if any is over. Needs a manifest.
    #[arg(long)]
    pub check_bounds: bool,
    /// With --check-bounds: print the check as JSON (channels, bounds, histograms).
    #[arg(long, requires = "check_bounds")]
    pub json: bool,
}

fn emulator(arg: Option<EmulatorArg>) -> Option<Emulator> {
    arg.map(|e| match e {
        EmulatorArg::Bochs => Emulator::Bochs,
        EmulatorArg::Qemu if run::host::kvm_with_vtx() => Emulator::Qemu(Accel::Kvm),
        EmulatorArg::Qemu => Emulator::Qemu(Accel::Tcg),
    })
}

/// Builds if needed, boots, streams the console; status 0 only if every sandbox exited 0,
/// else the first failing sandbox's exit status (1 for a halt or a boot that never
/// finished).
pub fn run(args: &RunArgs) -> ExitCode {
    let ws = Workspace::locate();
    let progress = Progress::stderr();
    // A bound needs the channels' declared models: the manifest, read before building.
    let manifest = if args.check_bounds {
        if args.target.extension().is_some_and(|e| e == "toml") {
            match super::load_manifest(&args.target) {
                Some(m) => Some(m),
                None => return ExitCode::from(1),
            }
        } else {
            eprintln!(
                "error: --check-bounds needs the manifest (the channels' declared models), not an image"
            );
            return ExitCode::from(2);
        }
    } else {
        None
    };
    let (iso, elf) = match run::prepare(&ws, &args.target, &progress) {
        Ok(paths) => paths,
        Err(RunError::Image(e)) => {
            super::image::report_error(&e);
            return ExitCode::from(1);
        }
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(1);
        }
    };
    let machine = match run::machine_of(&elf) {
        Ok(m) => m,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(1);
        }
    };
    let opts = RunOptions {
        emulator: emulator(args.emulator),
        timeout: Duration::from_secs(args.timeout),
        echo: true,
    };
    let chosen = opts.emulator.unwrap_or_else(run::default_emulator);
    if chosen == Emulator::Qemu(Accel::Tcg) {
        progress.warn("this host offers no VT-x to QEMU; the monitor will refuse to start (use --emulator bochs)");
    }
    progress.step(
        "Running",
        format!(
            "{} on {} ({} cores, {} MiB)",
            iso.display(),
            chosen,
            machine.cores,
            machine.memory_mib
        ),
    );
    let opts = RunOptions {
        emulator: Some(chosen),
        ..opts
    };
    let outcome = run::boot(&ws, &iso, machine, &opts, &mut std::io::stdout());
    let system = iso
        .file_stem()
        .map_or_else(|| "system".into(), |s| s.to_string_lossy().into_owned());
    let machine_words = match chosen {
        Emulator::Bochs => format!(
            "bochs {}, {} cores, ips {}",
            run::bochs::CPU_MODEL,
            machine.cores,
            run::bochs::IPS
        ),
        other => format!("{other}, {} cores", machine.cores),
    };
    let mut measured_ok = true;
    if let Ok(o) = &outcome {
        if args.calibrate {
            measured_ok &= write_profile(&ws, &o.console, &machine_words, &system, &progress);
        }
        if let Some(m) = &manifest {
            measured_ok &= check_bounds(m, &o.console, &machine_words, args.json);
        }
    }
    match outcome {
        Ok(outcome) if outcome.passed() && !measured_ok => {
            eprintln!(
                "error: {} but the measurements failed (above)",
                outcome.describe()
            );
            ExitCode::from(1)
        }
        Ok(outcome) if outcome.passed() => {
            progress.step(
                "Finished",
                format!(
                    "{} in {:.1}s",
                    outcome.describe(),
                    outcome.elapsed.as_secs_f64()
                ),
            );
            ExitCode::SUCCESS
        }
        Ok(outcome) => {
            eprintln!("error: {}", outcome.describe());
            // The first failing sandbox's own status (see `run::console::exit_status`).
            ExitCode::from(outcome.exit_status())
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(1)
        }
    }
}

/// `--calibrate`: the profile this boot measured, written next to the images.
fn write_profile(
    ws: &Workspace,
    console: &str,
    machine: &str,
    system: &str,
    progress: &Progress,
) -> bool {
    let profile = match crate::bounds::measured::profile(console, machine, system) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("error: cannot calibrate: {e}");
            return false;
        }
    };
    let path = ws.images().join(format!("{system}.platform.toml"));
    match std::fs::write(&path, profile.render()) {
        Ok(()) => {
            progress.step("Calibrated", format!("wrote {}", path.display()));
            true
        }
        Err(e) => {
            eprintln!("error: cannot write {}: {e}", path.display());
            false
        }
    }
}

/// `--check-bounds`: every channel's observed latencies against the bounds computed from
/// this boot's own calibration; prints the histograms and the verdict line.
fn check_bounds(m: &crate::manifest::Manifest, console: &str, machine: &str, json: bool) -> bool {
    use crate::bounds::{analyse, check::check, measured};
    let profile = match measured::profile(console, machine, &m.system.name.value) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("error: cannot check bounds: {e}");
            return false;
        }
    };
    let bounds = analyse(m, &profile);
    let result = check(&bounds, &measured::latencies(console));
    if json {
        let doc = serde_json::json!({
            "line": result.line(),
            "held": result.held(),
            "tsc_khz": profile.platform.tsc_khz,
            "channels": result.channels,
            "unreported": result.unreported,
        });
        println!("{}", serde_json::to_string_pretty(&doc).unwrap_or_default());
    } else {
        print!("{}", result.report());
    }
    println!("{}", result.line());
    result.held()
}
