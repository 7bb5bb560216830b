//! Bochs with the configuration `quest-build run` writes starts on a host without a sound
//! card (a fresh server or CI machine), where Bochs 2.7's default ALSA driver aborts it
//! before the BIOS runs.
//!
//! A sound-less host is simulated on any machine by giving ALSA an empty configuration
//! (`ALSA_CONFIG_PATH`): ALSA then knows no PCM device at all, exactly as on a machine
//! without a card. A control run with the `sound:` line removed must abort, which shows
//! the simulation works here; the real configuration must reach the BIOS. No image is
//! needed: with an empty CD-ROM drive the BIOS runs, finds no bootable device and Bochs
//! ends (`panic: action=fatal`) within a few seconds.

#[macro_use]
mod common;

use quest_build::build::Workspace;
use quest_build::run::{bochs, host, Machine};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Bochs reaches "No bootable device" in about 1.5 s on an idle core.
const LIMIT: Duration = Duration::from_secs(60);

struct Started {
    /// Bochs' own stdout and stderr.
    output: String,
    /// Bochs' log (the BIOS writes its messages there).
    log: String,
}

/// Runs Bochs with `rc_edit` applied to the generated configuration, in its own network
/// namespace, with ALSA configured to know no device. Kills it (our own child, by PID) at
/// the time limit.
fn start_bochs(name: &str, rc_edit: impl Fn(String) -> String) -> Started {
    let dir: PathBuf = Workspace::locate()
        .images()
        .join("tests")
        .join(format!("bochs-host-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("scratch directory");
    let serial = dir.join("serial.log");
    let machine = Machine {
        cores: 1,
        memory_mib: 32,
        qemu_devices: Default::default(),
        com2: false,
        nics: Default::default(),
    };
    // An ISO that does not exist: the drive is empty, the BIOS finds nothing to boot.
    let args = bochs::prepare(&dir, &dir.join("absent.iso"), machine, &serial)
        .expect("writing the configuration");
    let rc = dir.join("bochsrc");
    let text = std::fs::read_to_string(&rc).expect("bochsrc");
    std::fs::write(&rc, rc_edit(text)).expect("bochsrc");
    let alsa = dir.join("alsa-without-devices.conf");
    std::fs::write(&alsa, "").expect("ALSA configuration");

    let isolation = host::network_isolation().expect("unshare --net works here");
    let out = std::fs::File::create(dir.join("emulator.out")).expect("output file");
    let mut child = Command::new(isolation[0])
        .args(&isolation[1..])
        .args(args)
        .env("ALSA_CONFIG_PATH", &alsa)
        .current_dir(&dir)
        .stdin(Stdio::null())
        .stdout(out.try_clone().expect("output file"))
        .stderr(out)
        .spawn()
        .expect("starting Bochs");
    let started = Instant::now();
    while child.try_wait().expect("waiting for Bochs").is_none() {
        if started.elapsed() > LIMIT {
            let _ = child.kill();
            let _ = child.wait();
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let read = |p: &Path| {
        std::fs::read(p).map_or_else(|_| String::new(), |b| String::from_utf8_lossy(&b).into())
    };
    let started = Started {
        output: read(&dir.join("emulator.out")),
        log: read(&dir.join("bochs.log")),
    };
    let _ = std::fs::remove_dir_all(&dir);
    started
}

fn reached_bios(s: &Started) -> bool {
    s.log.contains("[BIOS  ]") && s.log.contains("No bootable device")
}

#[test]
fn bochs_reaches_the_bios_on_a_host_without_sound() {
    require_bochs!();
    // Control: without the dummy sound drivers the simulated sound-less host kills Bochs
    // before its BIOS runs (if this fails, the simulation no longer reproduces the abort
    // and the check below proves nothing).
    let without = start_bochs("control", |rc| {
        rc.lines()
            .filter(|l| !l.starts_with("sound:"))
            .map(|l| format!("{l}\n"))
            .collect()
    });
    assert!(
        !reached_bios(&without),
        "the control run reached the BIOS; output:\n{}",
        without.output
    );
    // The configuration `quest-build run` writes.
    let with = start_bochs("generated", |rc| rc);
    assert!(
        reached_bios(&with),
        "Bochs did not reach the BIOS with the generated configuration; output:\n{}\nlog:\n{}",
        with.output,
        with.log
    );
    assert!(!with.output.contains("buffer overflow"), "{}", with.output);
}
