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
    match run::boot(&ws, &iso, machine, &opts, &mut std::io::stdout()) {
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
