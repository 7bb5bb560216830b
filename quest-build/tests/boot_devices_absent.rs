//! Boot tests of devices that are not on the machine (`partition-manifests/devices-absent.toml`):
//! - `needs` names a PCI function by an ID no emulator has (abcd:1234), with the default
//!   `if_absent = "keep-stopped"`: the monitor reports it absent and the sandbox never
//!   runs (no output, no launch; the summary says `not started`, launches 0);
//! - `optional` names an address no machine here has (42:00.0) with `if_absent =
//!   "start-without"`: it runs without it, and its bus scan finds nothing;
//! - `plain` has no device and runs.
//!
//! The system counts as failed (`quest: not every sandbox exited 0`, `quest-build run`
//! exits 1: see `run::console::exit_status`), but it ends by itself: the boot-cost line
//! does not wait for the sandbox that never starts. Booted in Bochs (VT-x) and in QEMU
//! TCG (SVM).

#[macro_use]
mod common;

use common::{assert_failed, assert_line, boot_with, build};
use quest_build::run::console::{sandbox_ends, summaries, SandboxEnd};
use quest_build::run::{qemu::Accel, Emulator, RunOutcome};

fn checks(out: &RunOutcome) {
    assert!(!out.timed_out, "{}", out.describe());
    assert_failed(out);
    assert_eq!(out.exit_status(), 1, "{}", out.describe());
    let c = &out.console;
    assert_line(
        c,
        "quest: device abcd:1234 for sandbox 'needs' is absent; it is not started",
    );
    assert_line(
        c,
        "quest: sandbox 'needs' is not started: a device it needs is missing",
    );
    assert_line(
        c,
        "quest: device 42:00.0 for sandbox 'optional' is absent; it starts without it",
    );
    assert!(
        !c.lines().any(|l| l.starts_with("[needs]")),
        "'needs' never runs, so never prints"
    );
    assert!(
        !c.contains("sandbox 'needs' launched"),
        "'needs' is never launched"
    );
    assert_line(c, "quest: all sandboxes running after ");
    assert_line(c, "[optional] pci-scan: 0 functions");
    assert_line(c, "[plain] launch 1, 1 vcpus, tsc ");
    assert_eq!(
        sandbox_ends(c),
        [
            ("needs".to_owned(), SandboxEnd::NotStarted),
            ("optional".to_owned(), SandboxEnd::Exited(0)),
            ("plain".to_owned(), SandboxEnd::Exited(0)),
        ]
    );
    let needs = summaries(c)
        .find(|s| s.name == "needs")
        .expect("needs' summary line");
    assert_eq!((needs.launches, needs.exits), (0, 0), "{needs:?}");
}

#[test]
fn an_absent_device_keeps_its_sandbox_stopped_in_bochs() {
    require_bochs!();
    let built = build("devices-absent", "devices-absent");
    let out = boot_with(built.iso.as_ref().unwrap(), &built.elf, Emulator::Bochs);
    checks(&out);
}

#[test]
fn an_absent_device_keeps_its_sandbox_stopped_in_qemu_svm() {
    require_qemu!();
    let built = build("devices-absent", "svm-devices-absent");
    let out = boot_with(
        built.iso.as_ref().unwrap(),
        &built.elf,
        Emulator::Qemu(Accel::Tcg),
    );
    assert_line(&out.console, "quest: AMD SVM with nested paging (");
    checks(&out);
}
