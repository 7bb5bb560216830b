//! `quest-build run`: boot an image in an emulator, stream its console, and decide from
//! the console whether the system succeeded.
//!
//! - [`console`]: the console contract and the verdict.
//! - [`host`]: what this host offers (KVM with VT-x, Bochs, QEMU, network isolation).
//! - [`bochs`], [`qemu`]: how each emulator is started.
//! - [`network`]: the network card QEMU gives a table that assigns one, and `--forward`.
//! - [`background`]: a boot on its own thread, for callers that talk to the system.

pub mod background;
pub mod bochs;
pub mod console;
pub mod host;
pub mod network;
pub mod qemu;

use crate::build::{Progress, Workspace};
use crate::image::inspect::{read_table, InspectError};
use crate::image::{self, ImageError, ImageRequest};
use console::Verdict;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Which emulator boots the image.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Emulator {
    /// Bochs with an Intel CPU (VT-x and EPT emulated; slow but available everywhere).
    Bochs,
    /// Bochs with an AMD CPU (SVM and nested paging; `quest-build run --cpu amd`).
    BochsAmd,
    /// QEMU with the given acceleration.
    Qemu(qemu::Accel),
}

impl std::fmt::Display for Emulator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Bochs => f.write_str("Bochs"),
            Self::BochsAmd => f.write_str("Bochs (AMD, SVM)"),
            Self::Qemu(qemu::Accel::Kvm) => f.write_str("QEMU (KVM)"),
            Self::Qemu(qemu::Accel::Tcg) => f.write_str("QEMU (software emulation, AMD SVM)"),
        }
    }
}

/// The default emulator; `timed` when the run checks channel latencies against their
/// bounds (`run --check-bounds`):
/// - QEMU with KVM where the host offers VT-x or SVM to guests;
/// - else, unless `timed`, QEMU's software emulation (the monitor's SVM backend; its
///   settings in [`qemu`]): every example boots there with the same checks as in Bochs
///   except the ones that time one vCPU against another, about 10x faster (the boot tests'
///   nine shared systems, booted one at a time on a 2-core host: 8.8 s against 91.0 s,
///   `QUEST_BENCH_ONLY=backends quest-build bench`);
/// - else Bochs: QEMU's software emulation runs the vCPUs in turns on one host thread, so
///   a reader can wait out its writer's whole turn and no latency bound holds there
///   (measured in `tests/boot_bounds.rs`); Bochs' cores keep pace with each other.
pub fn default_emulator(timed: bool) -> Emulator {
    default_for(host::qemu_missing().is_none(), host::kvm_usable, timed)
}

/// [`default_emulator`]'s rule, given whether QEMU is installed and KVM usable.
fn default_for(qemu: bool, kvm: impl FnOnce() -> bool, timed: bool) -> Emulator {
    if qemu && kvm() {
        Emulator::Qemu(qemu::Accel::Kvm)
    } else if qemu && !timed {
        Emulator::Qemu(qemu::Accel::Tcg)
    } else {
        Emulator::Bochs
    }
}

/// The machine an image needs, from its partition table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Machine {
    /// Logical cores.
    pub cores: u32,
    /// RAM in MiB.
    pub memory_mib: u64,
    /// PCI devices QEMU adds because the table names them (`qemu::EMULATED`).
    pub qemu_devices: qemu::EmulatedDevices,
    /// Whether a sandbox owns COM2's ports: QEMU then gets a second serial port on a Unix
    /// socket ([`qemu::com2_args`], [`RunOptions::com2`]).
    pub com2: bool,
    /// Network cards QEMU adds because the table assigns them ([`network`]).
    pub nics: network::Nics,
}

/// How to run.
#[derive(Clone, Debug)]
pub struct RunOptions {
    /// The emulator (default: [`default_emulator`] for a run that checks no bounds).
    pub emulator: Option<Emulator>,
    /// Wall-clock limit for the boot.
    pub timeout: Duration,
    /// Copy the console to stdout as it arrives.
    pub echo: bool,
    /// Where QEMU listens for COM2's client when the machine has a COM2
    /// ([`Machine::com2`]); `None`: `com2.sock` in the run directory.
    pub com2: Option<PathBuf>,
    /// Host TCP ports forwarded to the guest's network card (QEMU only).
    pub forwards: Vec<network::Forward>,
    /// Stops the boot when set (the emulator is ended as at the time limit, but the
    /// outcome is not "timed out"): for a caller that talks to the running system from
    /// another thread and is done with it.
    pub stop: Option<Arc<AtomicBool>>,
}

impl RunOptions {
    /// A boot in `emulator` (`None`: the default) with `timeout`, no console copy, no
    /// forwards and no stop flag.
    pub fn new(emulator: Option<Emulator>, timeout: Duration) -> Self {
        Self {
            emulator,
            timeout,
            echo: false,
            forwards: Vec::new(),
            com2: None,
            stop: None,
        }
    }
}

/// How a boot ended.
#[derive(Clone, Debug)]
pub struct RunOutcome {
    /// The emulator used.
    pub emulator: Emulator,
    /// Everything the console printed.
    pub console: String,
    /// What the console says.
    pub verdict: Verdict,
    /// Whether the boot was stopped at the time limit.
    pub timed_out: bool,
    /// Wall-clock time of the boot.
    pub elapsed: Duration,
    /// Where the emulator's configuration and logs are.
    pub run_dir: PathBuf,
}

impl RunOutcome {
    /// Whether the system succeeded: every sandbox exited 0.
    pub fn passed(&self) -> bool {
        self.verdict.passed()
    }

    /// The status `quest-build run` ends with ([`console::exit_status`]).
    pub fn exit_status(&self) -> u8 {
        console::exit_status(&self.console)
    }

    /// One line explaining the outcome.
    pub fn describe(&self) -> String {
        match &self.verdict {
            Verdict::Passed => format!("{}: every sandbox exited 0", self.emulator),
            Verdict::Failed(line) => line.clone(),
            Verdict::Unfinished if self.timed_out => format!(
                "timed out after {:.0}s without a summary from the monitor (logs in {}){}",
                self.elapsed.as_secs_f64(),
                self.run_dir.display(),
                self.emulator_tail_if_silent()
            ),
            Verdict::Unfinished => match console::last_monitor_line(&self.console) {
                Some(line) => format!("the system stopped: {line}"),
                None => format!(
                    "the emulator ended without any monitor output (logs in {}){}",
                    self.run_dir.display(),
                    self.emulator_tail_if_silent()
                ),
            },
        }
    }

    /// When the monitor printed nothing, the reason is usually in the emulator's own
    /// output (a missing file, an abort before the firmware ran): its last lines, indented
    /// under the error, else nothing.
    fn emulator_tail_if_silent(&self) -> String {
        if console::last_monitor_line(&self.console).is_some() {
            return String::new();
        }
        let out = self.run_dir.join(EMULATOR_OUT);
        let text = std::fs::read(&out).map_or_else(
            |e| format!("(cannot read {}: {e})", out.display()),
            |b| String::from_utf8_lossy(&b).into_owned(),
        );
        let tail = last_lines(&text, EMULATOR_TAIL_LINES);
        if tail.is_empty() {
            return format!("; {} is empty", out.display());
        }
        let mut s = format!("; the last lines of {}:", out.display());
        for line in tail {
            s.push_str("\n    ");
            s.push_str(line);
        }
        s
    }
}

/// The file that receives the emulator's stdout and stderr, in the run directory.
pub const EMULATOR_OUT: &str = "emulator.out";
/// How many lines of the emulator's output an error shows.
const EMULATOR_TAIL_LINES: usize = 8;

/// The last `n` non-blank lines of `text`, trimmed, in order.
fn last_lines(text: &str, n: usize) -> Vec<&str> {
    let mut lines: Vec<&str> = text
        .lines()
        .map(str::trim_end)
        .filter(|l| !l.trim().is_empty())
        .rev()
        .take(n)
        .collect();
    lines.reverse();
    lines
}

/// Why a run could not happen.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// An emulator or tool is missing (the message says what to install).
    #[error("{0}")]
    Missing(String),
    /// Building the image failed.
    #[error(transparent)]
    Image(#[from] ImageError),
    /// The image cannot be read.
    #[error("{path}: {source}")]
    Inspect {
        /// The image.
        path: PathBuf,
        /// Why.
        source: InspectError,
    },
    /// A file or process operation failed.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// Why.
        source: std::io::Error,
    },
    /// QEMU cannot listen for COM2 at the path asked.
    #[error("{0}")]
    Com2Socket(String),
    /// `--forward` cannot be given to this boot.
    #[error(transparent)]
    Forward(#[from] network::ForwardError),
    /// The argument is not a manifest, ISO or ELF.
    #[error("{0}: give a manifest (.toml), an image (.iso) or its ELF (.elf)")]
    UnknownInput(PathBuf),
}

fn io_err(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> RunError {
    let what = what.into();
    move |source| RunError::Io { what, source }
}

/// The machine an image ELF needs.
pub fn machine_of(elf: &Path) -> Result<Machine, RunError> {
    let bytes = std::fs::read(elf).map_err(io_err(format!("reading {}", elf.display())))?;
    let (table, _) = read_table(&bytes).map_err(|source| RunError::Inspect {
        path: elf.to_path_buf(),
        source,
    })?;
    Ok(Machine {
        cores: table.header.system_cores.get(),
        memory_mib: table.header.system_memory.get().div_ceil(1 << 20),
        qemu_devices: qemu::EmulatedDevices::of(&table),
        com2: qemu::names_com2(table.devices),
        nics: network::Nics::of(&table),
    })
}

/// Resolves what `quest-build run` was given to an (ISO, ELF) pair, building the image
/// from a manifest or the ISO from an ELF as needed.
pub fn prepare(
    ws: &Workspace,
    target: &Path,
    progress: &Progress,
) -> Result<(PathBuf, PathBuf), RunError> {
    match target.extension().and_then(|e| e.to_str()) {
        Some("toml") => {
            let req = ImageRequest {
                manifest: target.to_path_buf(),
                iso: None,
                make_iso: true,
            };
            let built = image::build_image(ws, &req, progress)?;
            let iso = built.iso.unwrap_or_else(|| built.elf.with_extension("iso"));
            Ok((iso, built.elf))
        }
        Some("iso") => Ok((target.to_path_buf(), target.with_extension("elf"))),
        Some("elf") => {
            let iso = target.with_extension("iso");
            let title = target
                .file_stem()
                .map_or_else(String::new, |s| s.to_string_lossy().into_owned());
            image::iso::make_iso(target, &iso, &title).map_err(ImageError::from)?;
            Ok((iso, target.to_path_buf()))
        }
        _ => Err(RunError::UnknownInput(target.to_path_buf())),
    }
}

/// A fresh directory for one boot's configuration and logs.
fn run_dir(ws: &Workspace, iso: &Path) -> Result<PathBuf, RunError> {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let stem = iso
        .file_stem()
        .map_or_else(|| "image".into(), |s| s.to_string_lossy().into_owned());
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let dir = ws
        .images()
        .join("run")
        .join(format!("{stem}-{}-{n}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).map_err(io_err(format!("creating {}", dir.display())))?;
    Ok(dir)
}

/// Boots `iso` on `machine` and follows its console until a verdict, the emulator's end,
/// or the time limit.
pub fn boot(
    ws: &Workspace,
    iso: &Path,
    machine: Machine,
    opts: &RunOptions,
    out: &mut dyn Write,
) -> Result<RunOutcome, RunError> {
    let emulator = opts.emulator.unwrap_or_else(|| default_emulator(false));
    let bochs = matches!(emulator, Emulator::Bochs | Emulator::BochsAmd);
    network::check(machine.nics, bochs, &opts.forwards)?;
    let iso = std::path::absolute(iso).map_err(io_err("resolving the ISO path"))?;
    if !iso.is_file() {
        return Err(RunError::Io {
            what: format!("reading {}", iso.display()),
            source: std::io::Error::from(std::io::ErrorKind::NotFound),
        });
    }
    let dir =
        std::path::absolute(run_dir(ws, &iso)?).map_err(io_err("resolving the run directory"))?;
    let serial = dir.join("serial.log");
    std::fs::write(&serial, b"").map_err(io_err("creating the serial log"))?;
    let mut command = match emulator {
        Emulator::Bochs | Emulator::BochsAmd => {
            if let Some(line) = host::bochs_missing() {
                return Err(RunError::Missing(line));
            }
            let cpu = if emulator == Emulator::BochsAmd {
                bochs::BochsCpu::Amd
            } else {
                bochs::BochsCpu::Intel
            };
            let args = bochs::prepare_cpu(&dir, &iso, cpu, machine, &serial)
                .map_err(io_err("writing the Bochs configuration"))?;
            let isolation = host::network_isolation().ok_or_else(|| {
                RunError::Missing(
                    "cannot give Bochs its own network namespace (its VNC display would listen on this machine): `unshare --net` failed; install util-linux or run as root".into(),
                )
            })?;
            let mut c = Command::new(isolation[0]);
            c.args(&isolation[1..]).args(args);
            c
        }
        Emulator::Qemu(accel) => {
            if let Some(line) = host::qemu_missing() {
                return Err(RunError::Missing(line));
            }
            let mut c = Command::new("qemu-system-x86_64");
            c.args(qemu::args(
                &iso,
                machine.cores,
                machine.memory_mib,
                accel,
                &serial,
            ));
            c.args(machine.qemu_devices.args());
            if machine.com2 {
                c.args(qemu::com2_args(&com2_socket(opts, &dir)?));
            }
            c.args(machine.nics.qemu_args(&opts.forwards)?);
            c
        }
    };
    let emulator_out = std::fs::File::create(dir.join(EMULATOR_OUT))
        .map_err(io_err("creating the emulator's log"))?;
    let emulator_err = emulator_out
        .try_clone()
        .map_err(io_err("creating the emulator's log"))?;
    command
        .current_dir(&dir)
        .stdin(Stdio::null())
        .stdout(emulator_out)
        .stderr(emulator_err);
    let started = Instant::now();
    let child = command
        .spawn()
        .map_err(io_err(format!("starting {emulator}")))?;
    let (console, timed_out) = follow(child, &serial, opts, out)?;
    let verdict = console::verdict(&console);
    Ok(RunOutcome {
        emulator,
        console,
        verdict,
        timed_out,
        elapsed: started.elapsed(),
        run_dir: dir,
    })
}

/// The Unix socket QEMU listens on for COM2: [`RunOptions::com2`], else `com2.sock` in
/// the run directory `dir`. A stale socket file there is removed (QEMU would not bind
/// over it); a path too long for a socket address is refused.
fn com2_socket(opts: &RunOptions, dir: &Path) -> Result<PathBuf, RunError> {
    let path = opts.com2.clone().unwrap_or_else(|| dir.join("com2.sock"));
    let path = std::path::absolute(&path).map_err(io_err("resolving the COM2 socket path"))?;
    if path.as_os_str().len() > qemu::SOCKET_PATH_MAX {
        return Err(RunError::Com2Socket(format!(
            "the COM2 socket path {} is longer than a Unix socket address allows ({} bytes); choose a shorter one with --com2",
            path.display(),
            qemu::SOCKET_PATH_MAX
        )));
    }
    if let Ok(meta) = std::fs::symlink_metadata(&path) {
        use std::os::unix::fs::FileTypeExt;
        if !meta.file_type().is_socket() {
            return Err(RunError::Com2Socket(format!(
                "{} exists and is not a socket; give --com2 a new path",
                path.display()
            )));
        }
        std::fs::remove_file(&path).map_err(io_err(format!("removing {}", path.display())))?;
    }
    Ok(path)
}

/// How long the emulator gets to end by itself after the monitor printed its verdict.
const GRACE: Duration = Duration::from_secs(5);
/// How often the serial log is polled.
const POLL: Duration = Duration::from_millis(50);

/// Streams the serial log while `child` runs; stops it (by its PID, our own child) at the
/// time limit or when it lingers after the verdict. Returns (console, timed out).
fn follow(
    mut child: Child,
    serial: &Path,
    opts: &RunOptions,
    out: &mut dyn Write,
) -> Result<(String, bool), RunError> {
    let deadline = Instant::now() + opts.timeout;
    let mut log = std::fs::File::open(serial).map_err(io_err("opening the serial log"))?;
    let mut console = Vec::new();
    let mut pos = 0u64;
    let mut verdict_at: Option<Instant> = None;
    let mut timed_out = false;
    loop {
        let exited = child
            .try_wait()
            .map_err(io_err("waiting for the emulator"))?
            .is_some();
        // Read after checking for exit, so nothing written before the exit is missed.
        let mut fresh = Vec::new();
        log.seek(SeekFrom::Start(pos))
            .map_err(io_err("reading the serial log"))?;
        log.read_to_end(&mut fresh)
            .map_err(io_err("reading the serial log"))?;
        pos += fresh.len() as u64;
        if !fresh.is_empty() {
            if opts.echo {
                // The console copy is best effort; the run goes on if stdout is closed.
                let _ = out.write_all(&fresh);
                let _ = out.flush();
            }
            console.extend_from_slice(&fresh);
            if verdict_at.is_none() && console::finished(&String::from_utf8_lossy(&console)) {
                verdict_at = Some(Instant::now());
            }
        }
        if exited {
            break;
        }
        let lingering = verdict_at.is_some_and(|t| t.elapsed() > GRACE);
        let stopped = opts
            .stop
            .as_ref()
            .is_some_and(|s| s.load(Ordering::Relaxed));
        if lingering || stopped || Instant::now() > deadline {
            timed_out = !lingering && !stopped;
            // Our own child, by its PID (the emulator itself: `unshare` execs it).
            let _ = child.kill();
            let _ = child.wait();
            // One last read for whatever arrived in between.
            let mut rest = Vec::new();
            let _ = log
                .seek(SeekFrom::Start(pos))
                .and_then(|_| log.read_to_end(&mut rest));
            if opts.echo {
                let _ = out.write_all(&rest);
            }
            console.extend_from_slice(&rest);
            break;
        }
        std::thread::sleep(POLL);
    }
    Ok((String::from_utf8_lossy(&console).into_owned(), timed_out))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_is_kvm_then_software_emulation_without_channels_then_bochs() {
        let (yes, no) = (|| true, || false);
        let kvm = Emulator::Qemu(qemu::Accel::Kvm);
        let tcg = Emulator::Qemu(qemu::Accel::Tcg);
        assert_eq!(default_for(true, yes, true), kvm);
        assert_eq!(default_for(true, yes, false), kvm);
        assert_eq!(default_for(true, no, false), tcg);
        assert_eq!(
            default_for(true, no, true),
            Emulator::Bochs,
            "bounds checked"
        );
        assert_eq!(default_for(false, yes, false), Emulator::Bochs, "no QEMU");
    }

    fn outcome(dir: &Path, console: &str, timed_out: bool) -> RunOutcome {
        RunOutcome {
            emulator: Emulator::Bochs,
            console: console.into(),
            verdict: console::verdict(console),
            timed_out,
            elapsed: Duration::from_secs(3),
            run_dir: dir.to_path_buf(),
        }
    }

    fn scratch(name: &str) -> PathBuf {
        crate::scratch::scratch_dir(&format!("run-{name}"))
    }

    #[test]
    fn a_silent_death_shows_the_emulators_last_lines_and_the_log_path() {
        let dir = scratch("silent");
        let mut out = String::from("00000000000i[      ] loading plugins\n");
        for i in 0..20 {
            out.push_str(&format!("noise {i}\n"));
        }
        out.push_str("ALSA lib pcm.c:2666:(snd_pcm_open_noupdate) Unknown PCM default\n\n");
        out.push_str("*** buffer overflow detected ***: terminated\n");
        std::fs::write(dir.join(EMULATOR_OUT), out).expect("write");
        let text = outcome(&dir, "", false).describe();
        assert!(
            text.starts_with("the emulator ended without any monitor output (logs in "),
            "{text}"
        );
        assert!(text.contains(&dir.display().to_string()), "{text}");
        assert!(text.contains("Unknown PCM default"), "{text}");
        assert!(
            text.ends_with("\n    *** buffer overflow detected ***: terminated"),
            "{text}"
        );
        assert_eq!(text.lines().count(), 1 + EMULATOR_TAIL_LINES, "{text}");
        assert!(
            !text.contains("noise 13") && text.contains("noise 14"),
            "{text}"
        );
        // The same when the time limit ends a boot that printed nothing.
        assert!(outcome(&dir, "", true)
            .describe()
            .contains("buffer overflow detected"));
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn once_the_monitor_spoke_its_last_line_is_the_reason() {
        let dir = scratch("spoke");
        std::fs::write(dir.join(EMULATOR_OUT), "emulator noise\n").expect("write");
        let text = outcome(&dir, "quest: table 'x' invalid: bad magic\n", false).describe();
        assert!(!text.contains("emulator noise"), "{text}");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn the_com2_socket_is_the_run_directorys_unless_asked_and_never_a_file() {
        let dir = std::path::absolute(scratch("com2")).expect("absolute");
        let opts = |com2: Option<PathBuf>| RunOptions {
            com2,
            ..RunOptions::new(None, Duration::from_secs(1))
        };
        assert_eq!(
            com2_socket(&opts(None), &dir).expect("default"),
            dir.join("com2.sock")
        );
        // A stale socket from an earlier run is removed so QEMU can bind again.
        let stale = dir.join("stale.sock");
        let listener = std::os::unix::net::UnixListener::bind(&stale).expect("bind");
        drop(listener);
        assert_eq!(
            com2_socket(&opts(Some(stale.clone())), &dir).expect("stale socket"),
            stale
        );
        assert!(!stale.exists());
        // Anything else at that path stays, and the run is refused.
        let file = dir.join("notes.txt");
        std::fs::write(&file, "keep me").expect("write");
        let err = com2_socket(&opts(Some(file.clone())), &dir).unwrap_err();
        assert!(err.to_string().contains("is not a socket"), "{err}");
        assert!(file.exists());
        let long = dir.join("x".repeat(qemu::SOCKET_PATH_MAX));
        let err = com2_socket(&opts(Some(long)), &dir).unwrap_err();
        assert!(
            err.to_string().contains("longer than a Unix socket"),
            "{err}"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_missing_or_empty_emulator_log_is_said() {
        let dir = scratch("missing");
        assert!(outcome(&dir, "", false)
            .describe()
            .contains("(cannot read "));
        std::fs::write(dir.join(EMULATOR_OUT), "\n\n").expect("write");
        assert!(outcome(&dir, "", false).describe().ends_with("is empty"));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
