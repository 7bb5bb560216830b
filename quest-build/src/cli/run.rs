//! `quest-build run MANIFEST|IMAGE [--emulator bochs|qemu] [--cpu intel|amd] [--timeout SECS]
//! [--com2 SOCKET] [--forward HOST_PORT:GUEST_PORT]... [--iommu intel|amd|none]`.

use crate::build::{Progress, Workspace};
use crate::run::{self, network, qemu, qemu::Accel, Emulator, Machine, RunError, RunOptions};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

/// Emulator names on the command line.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum EmulatorArg {
    /// Bochs: emulates VT-x with EPT (slow, works everywhere).
    Bochs,
    /// QEMU: with KVM where the host offers VT-x or SVM, else software emulation (AMD
    /// SVM, which the monitor's SVM backend runs on).
    Qemu,
}

/// The processor Bochs emulates.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum CpuArg {
    /// Intel with VT-x and EPT (the default).
    Intel,
    /// AMD with SVM and nested paging (the `ryzen` model).
    Amd,
}

/// The IOMMU QEMU gives a system with PCI devices.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum IommuArg {
    /// Intel VT-d (`-device intel-iommu`, an ACPI DMAR table; the default).
    Intel,
    /// AMD-Vi (`-device amd-iommu`, an ACPI IVRS table).
    Amd,
    /// None: DMA stays unprotected, so the monitor refuses bus mastering unless a
    /// device says `dma = "unprotected"`.
    None,
}

/// The IOMMU `--iommu` asks for on `chosen` for a system that names PCI devices or not
/// (`any_pci`); an error where it cannot be given.
fn iommu(
    arg: Option<IommuArg>,
    chosen: Emulator,
    any_pci: bool,
) -> Result<qemu::Iommu, &'static str> {
    let Some(arg) = arg else {
        return Ok(qemu::Iommu::default());
    };
    if matches!(chosen, Emulator::Bochs | Emulator::BochsAmd) {
        return Err("--iommu chooses QEMU's IOMMU; Bochs has none (its i440FX chipset cannot have one): use --emulator qemu");
    }
    if !any_pci {
        return Err("--iommu: this system gives no sandbox a PCI device, so QEMU gets neither its Q35 machine nor an IOMMU");
    }
    Ok(match arg {
        IommuArg::Intel => qemu::Iommu::Intel,
        IommuArg::Amd => qemu::Iommu::Amd,
        IommuArg::None => qemu::Iommu::None,
    })
}

/// `quest-build run`.
#[derive(Debug, clap::Args)]
pub struct RunArgs {
    /// A manifest (built first), an image ISO, or its ELF.
    #[arg(value_name = "MANIFEST|IMAGE")]
    pub target: PathBuf,
    /// The emulator [default: QEMU with KVM if the host offers VT-x or SVM; else QEMU's
    /// software emulation, or Bochs with --check-bounds (its cores keep pace)].
    #[arg(long, value_enum)]
    pub emulator: Option<EmulatorArg>,
    /// The processor Bochs emulates (implies Bochs; QEMU's software emulation is always
    /// AMD and KVM uses the host's CPU).
    #[arg(long, value_enum)]
    pub cpu: Option<CpuArg>,
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
    /// For a system that gives a sandbox COM2 (ports 0x2f8-0x2ff), booted in QEMU: the
    /// Unix socket QEMU listens on for COM2's other end (default:
    /// `images/run/<system>.com2.sock`); connect with e.g. `socat - UNIX-CONNECT:SOCKET`.
    #[arg(long, value_name = "SOCKET")]
    pub com2: Option<PathBuf>,
    /// Forward TCP port HOST_PORT of 127.0.0.1 here to GUEST_PORT of the sandbox that owns
    /// the network card (`{ pci = "10ec:8139" }`; QEMU only). Repeatable.
    #[arg(long = "forward", value_name = "HOST_PORT:GUEST_PORT")]
    pub forwards: Vec<network::Forward>,
    /// For a system that gives a sandbox a PCI device, booted in QEMU: the IOMMU of its
    /// Q35 machine [default: intel].
    #[arg(long, value_enum)]
    pub iommu: Option<IommuArg>,
}

/// The emulator `--emulator` and `--cpu` ask for (`None`: the default); an error for a
/// CPU QEMU cannot be told to emulate.
fn emulator(
    arg: Option<EmulatorArg>,
    cpu: Option<CpuArg>,
    kvm: impl FnOnce() -> bool,
) -> Result<Option<Emulator>, &'static str> {
    Ok(match (arg, cpu) {
        (Some(EmulatorArg::Qemu), Some(_)) => {
            return Err("--cpu chooses Bochs' processor; QEMU uses the host's CPU with KVM and an AMD one without")
        }
        (Some(EmulatorArg::Qemu), None) if kvm() => Some(Emulator::Qemu(Accel::Kvm)),
        (Some(EmulatorArg::Qemu), None) => Some(Emulator::Qemu(Accel::Tcg)),
        (_, Some(CpuArg::Amd)) => Some(Emulator::BochsAmd),
        (Some(EmulatorArg::Bochs), _) | (None, Some(CpuArg::Intel)) => Some(Emulator::Bochs),
        (None, None) => None,
    })
}

/// Builds if needed, boots, streams the console; status 0 only if every sandbox exited 0,
/// else the first failing sandbox's exit status (1 for a halt, a sandbox not started for
/// want of a device, or a boot that never finished).
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
    let asked = match emulator(args.emulator, args.cpu, run::host::kvm_usable) {
        Ok(e) => e,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    let chosen = asked.unwrap_or_else(|| run::default_emulator(args.check_bounds));
    // An IOMMU Bochs cannot have is refused before anything is built (whether the
    // system has PCI devices is known once it is).
    if let Err(e) = iommu(args.iommu, chosen, true) {
        eprintln!("error: {e}");
        return ExitCode::from(2);
    }
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
    let machine = match iommu(args.iommu, chosen, machine.qemu_devices.any_pci()) {
        Ok(i) => Machine {
            qemu_devices: machine.qemu_devices.with_iommu(i),
            ..machine
        },
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    let bochs = matches!(chosen, Emulator::Bochs | Emulator::BochsAmd);
    if let Err(e) = network::check(machine.nics, bochs, &args.forwards) {
        eprintln!("error: {e}");
        return ExitCode::from(2);
    }
    for f in &args.forwards {
        progress.step(
            "Forwarding",
            format!(
                "127.0.0.1:{} to the guest's port {} (the network card's user network)",
                f.host, f.guest
            ),
        );
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
        echo: true,
        forwards: args.forwards.clone(),
        ..RunOptions::new(Some(chosen), Duration::from_secs(args.timeout))
    };
    let system = iso
        .file_stem()
        .map_or_else(|| "system".into(), |s| s.to_string_lossy().into_owned());
    let com2 = machine
        .com2
        .then(|| com2_socket(&ws, args.com2.as_deref(), &system));
    match (&com2, chosen) {
        (Some(path), Emulator::Qemu(_)) => progress.step(
            "COM2",
            format!(
                "on the Unix socket {} (connect with `socat - UNIX-CONNECT:{}`)",
                path.display(),
                path.display()
            ),
        ),
        (Some(_), _) => progress.step(
            "COM2",
            "a sandbox owns COM2, but only QEMU gets a second serial port here (use --emulator qemu)",
        ),
        (None, _) => {}
    }
    let opts = RunOptions {
        emulator: Some(chosen),
        com2,
        ..opts
    };
    let outcome = run::boot(&ws, &iso, machine, &opts, &mut std::io::stdout());
    let machine_words = match chosen {
        Emulator::Bochs | Emulator::BochsAmd => format!(
            "bochs {}, {} cores, ips {}",
            if chosen == Emulator::BochsAmd {
                run::bochs::AMD_CPU_MODEL
            } else {
                run::bochs::CPU_MODEL
            },
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

/// Where QEMU listens for COM2: `--com2`, else `images/run/<system>.com2.sock` (the same
/// path every run of that system, so a client's command line can be kept).
fn com2_socket(ws: &Workspace, asked: Option<&Path>, system: &str) -> PathBuf {
    asked.map_or_else(
        || ws.images().join("run").join(format!("{system}.com2.sock")),
        Path::to_path_buf,
    )
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_and_emulator_choose_together() {
        let no_kvm = || false;
        assert_eq!(emulator(None, None, no_kvm), Ok(None), "the default");
        assert_eq!(
            emulator(None, Some(CpuArg::Amd), no_kvm),
            Ok(Some(Emulator::BochsAmd)),
            "--cpu implies Bochs"
        );
        assert_eq!(
            emulator(Some(EmulatorArg::Bochs), Some(CpuArg::Amd), no_kvm),
            Ok(Some(Emulator::BochsAmd))
        );
        for cpu in [None, Some(CpuArg::Intel)] {
            assert_eq!(
                emulator(Some(EmulatorArg::Bochs), cpu, no_kvm),
                Ok(Some(Emulator::Bochs))
            );
        }
        assert_eq!(
            emulator(None, Some(CpuArg::Intel), no_kvm),
            Ok(Some(Emulator::Bochs))
        );
        assert_eq!(
            emulator(Some(EmulatorArg::Qemu), None, no_kvm),
            Ok(Some(Emulator::Qemu(Accel::Tcg)))
        );
        assert_eq!(
            emulator(Some(EmulatorArg::Qemu), None, || true),
            Ok(Some(Emulator::Qemu(Accel::Kvm)))
        );
        let refused = emulator(Some(EmulatorArg::Qemu), Some(CpuArg::Amd), no_kvm);
        assert!(refused.is_err_and(|e| e.starts_with("--cpu chooses Bochs")));
    }

    #[test]
    fn the_iommu_is_qemus_and_needs_pci() {
        let qemu = Emulator::Qemu(Accel::Tcg);
        assert_eq!(
            iommu(None, qemu, true),
            Ok(qemu::Iommu::Intel),
            "the default"
        );
        assert_eq!(iommu(None, Emulator::Bochs, false), Ok(qemu::Iommu::Intel));
        assert_eq!(iommu(Some(IommuArg::Amd), qemu, true), Ok(qemu::Iommu::Amd));
        assert_eq!(
            iommu(Some(IommuArg::None), Emulator::Qemu(Accel::Kvm), true),
            Ok(qemu::Iommu::None)
        );
        assert_eq!(
            iommu(Some(IommuArg::Intel), qemu, true),
            Ok(qemu::Iommu::Intel)
        );
        for bochs in [Emulator::Bochs, Emulator::BochsAmd] {
            let e = iommu(Some(IommuArg::Amd), bochs, true).unwrap_err();
            assert!(e.contains("Bochs has none"), "{e}");
        }
        let e = iommu(Some(IommuArg::Amd), qemu, false).unwrap_err();
        assert!(e.contains("no sandbox a PCI device"), "{e}");
    }

    #[test]
    fn the_cpu_flag_parses() {
        use clap::Parser;
        #[derive(clap::Parser)]
        struct Cli {
            #[command(flatten)]
            run: RunArgs,
        }
        let cli = Cli::try_parse_from(["x", "a.toml", "--cpu", "amd"]).expect("parses");
        assert_eq!(cli.run.cpu, Some(CpuArg::Amd));
        assert!(Cli::try_parse_from(["x", "a.toml", "--cpu", "arm"]).is_err());
        let cli = Cli::try_parse_from(["x", "a.toml", "--iommu", "none"]).expect("parses");
        assert_eq!(cli.run.iommu, Some(IommuArg::None));
        let Err(bad) = Cli::try_parse_from(["x", "a.toml", "--iommu", "arm"]) else {
            panic!("--iommu arm parsed");
        };
        assert!(
            bad.to_string()
                .contains("possible values: intel, amd, none"),
            "{bad}"
        );
    }

    #[test]
    fn forwards_repeat_and_bad_ones_are_usage_errors() {
        use clap::Parser;
        #[derive(clap::Parser)]
        struct Cli {
            #[command(flatten)]
            run: RunArgs,
        }
        let cli = Cli::try_parse_from(["x", "w.toml", "--forward", "8080:80", "--forward=2222:22"])
            .expect("parses");
        let pairs: Vec<(u16, u16)> = cli.run.forwards.iter().map(|f| (f.host, f.guest)).collect();
        assert_eq!(pairs, [(8080, 80), (2222, 22)]);
        assert!(Cli::try_parse_from(["x", "w.toml"])
            .unwrap()
            .run
            .forwards
            .is_empty());
        for bad in ["80", "0:80", "x:80", "80:65536"] {
            let e = Cli::try_parse_from(["x", "w.toml", "--forward", bad])
                .err()
                .unwrap_or_else(|| panic!("{bad} parsed"));
            assert_eq!(e.kind(), clap::error::ErrorKind::ValueValidation, "{bad}");
            assert!(e.to_string().contains(bad), "{e}");
        }
    }
}
