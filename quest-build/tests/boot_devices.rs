//! Boot tests of PCI configuration-space passthrough (`partition-manifests/devices.toml`):
//! `owner` is given the PIIX3 IDE function (8086:7010, `if_absent = "start-without"`)
//! and QEMU's `edu` (1234:11e8, `if_absent = "start-without"`), `bystander` nothing. Both
//! scan the whole bus through 0xCF8/0xCFC (`unikernels/apps/pci-scan`). Checked: the
//! monitor's assignment lines; the owner sees exactly its functions with their real IDs
//! and BAR sizes; the bystander sees nothing; both exit 0.
//! - in Bochs (VT-x, i440FX): the IDE function is at 00:01.1 (its I/O BAR's ports are
//!   passed), edu is absent; there is no IOMMU, so the owner's bus-master enable is
//!   refused and logged.
//! - in QEMU TCG (SVM): a table naming PCI devices boots on Q35 with QEMU's VT-d
//!   (`quest_build::run::qemu::PCI_PLATFORM`), which has no PIIX3 IDE (the owner starts
//!   without it), and `-device edu` because the table names it; the monitor reaches
//!   configuration space through ECAM, maps edu's BAR0 uncached where firmware put it
//!   (the owner reads edu's ID through it) and protects edu's DMA, so its bus-master
//!   enable is allowed.

#[macro_use]
mod common;

use common::{assert_line, assert_passed, boot_with, build, line};
use quest_build::run::{qemu::Accel, Emulator, RunOutcome};

fn owner_lines(c: &str) -> Vec<&str> {
    c.lines()
        .filter(|l| l.starts_with("[owner] function "))
        .collect()
}

/// What both emulators show: the bystander sees nothing; sizing restores every BAR; all
/// exit 0.
fn common_checks(out: &RunOutcome) {
    assert_passed(out);
    let c = &out.console;
    assert_line(c, "[owner] disabled read 0xffffffff");
    assert_line(c, "[bystander] pci-scan: 0 functions");
    assert!(
        !c.lines().any(|l| l.starts_with("[bystander] function")),
        "{c}"
    );
    assert!(
        !c.lines().any(|l| l.contains("restored no")),
        "sizing restores every BAR: {c}"
    );
}

#[test]
fn devices_in_bochs_show_each_sandbox_its_own_functions() {
    require_bochs!();
    let built = build("devices", "devices");
    let out = boot_with(built.iso.as_ref().unwrap(), &built.elf, Emulator::Bochs);
    common_checks(&out);
    let c = &out.console;
    assert_line(c, "quest: PCI through ports 0xcf8/0xcfc: ");
    assert_line(c, "quest: device 00:01.1 (8086:7010) -> sandbox 'owner'");
    // Its I/O BAR's ports are passed through (the address is firmware's).
    assert_line(c, "quest: device 00:01.1 BAR4 ports 0x");
    assert_line(
        c,
        "quest: no IOMMU: no DMAR or IVRS table (no Intel VT-d, no AMD-Vi)",
    );
    assert_line(c, "[owner] function 00:01.1 id 8086:7010 class 010180");
    assert_line(c, "[owner] bar 00:01.1 #4: io size 0x10 (value 0x");
    assert_line(c, "[owner] bus master 00:01.1: refused");
    assert_line(
        c,
        "quest: sandbox 'owner' core 0: PCI 00:01.1: bus-master enable refused (no DMA protection)",
    );
    assert_line(
        c,
        "quest: device 1234:11e8 for sandbox 'owner' is absent; it starts without it",
    );
    assert_eq!(owner_lines(c).len(), 1, "only the IDE function: {c}");
    assert_line(c, "[owner] pci-scan: 1 functions");
}

#[test]
fn devices_in_qemu_svm_show_the_owner_edu_behind_the_iommu() {
    require_qemu!();
    let built = build("devices", "svm-devices");
    let out = boot_with(
        built.iso.as_ref().unwrap(),
        &built.elf,
        Emulator::Qemu(Accel::Tcg),
    );
    assert_line(&out.console, "quest: AMD SVM with nested paging (");
    common_checks(&out);
    let c = &out.console;
    assert_line(c, "quest: PCI through ECAM (ACPI MCFG): ");
    assert_line(
        c,
        "quest: device 8086:7010 for sandbox 'owner' is absent; it starts without it",
    );
    let edu = c
        .lines()
        .find_map(|l| {
            l.strip_prefix("quest: device ")?
                .strip_suffix(" (1234:11e8) -> sandbox 'owner'")
        })
        .unwrap_or_else(|| panic!("edu is the owner's: {c}"));
    assert_line(
        c,
        "quest: IOMMU VT-d at 0xfed90000: 1 devices in 1 domains (",
    );
    assert_line(
        c,
        &format!("[owner] function {edu} id 1234:11e8 class 00ff00"),
    );
    assert_line(c, &format!("[owner] bar {edu} #0: mem32 size 0x100000"));
    // BAR0 mapped where SeaBIOS put it, uncached; edu's ID register reads through it.
    let mapped = line(c, &format!("quest: device {edu} BAR0 0x"));
    assert!(
        mapped.ends_with("+0x100000 -> sandbox 'owner' (uncached)"),
        "{mapped}"
    );
    assert_line(c, &format!("[owner] bar {edu} #0: reads 0x010000ed"));
    assert_line(c, &format!("[owner] bus master {edu}: enabled"));
    assert!(!c.contains("bus-master enable refused"), "{c}");
    assert_eq!(owner_lines(c).len(), 1, "edu only: {c}");
    assert_line(c, "[owner] pci-scan: 1 functions");
}
