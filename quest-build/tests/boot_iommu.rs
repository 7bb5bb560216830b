//! Boot test of DMA protection (`partition-manifests/dma.toml`) in QEMU TCG on the SVM
//! backend, on Q35 with QEMU's Intel VT-d (`quest_build::run::qemu::PCI_PLATFORM`):
//! `probe` owns QEMU's `edu` and makes it DMA (`unikernels/apps/dma-probe`); `bystander`
//! owns nothing and ticks for 3 s. Checked:
//! - the monitor programs the IOMMU (one device in one domain) and allows edu's bus
//!   mastering;
//! - a page DMA'd from the probe's RAM into edu and back into its RAM arrives intact
//!   (its domain maps its RAM);
//! - the DMA to the page above its RAM is refused by the IOMMU: the monitor reports the
//!   device, the sandbox and the address, and stops the probe (halted, one fault), which
//!   never prints again (it would say `NOT CONTAINED` if it ran on);
//! - the bystander keeps ticking after the fault and exits 0; the system reports that
//!   not every sandbox exited 0 (the probe was halted), as the other containment tests.

#[macro_use]
mod common;

use common::{assert_failed, assert_line, boot_with, build, line};
use quest_build::run::{qemu::Accel, Emulator};

#[test]
fn a_dma_outside_its_memory_stops_the_probe_and_the_bystander_goes_on() {
    require_qemu!();
    let built = build("dma", "svm-dma");
    let out = boot_with(
        built.iso.as_ref().unwrap(),
        &built.elf,
        Emulator::Qemu(Accel::Tcg),
    );
    assert!(!out.timed_out, "{}", out.describe());
    let c = &out.console;
    assert_line(c, "quest: AMD SVM with nested paging (");
    assert_line(c, "quest: PCI through ECAM (ACPI MCFG): ");
    let edu = c
        .lines()
        .find_map(|l| {
            l.strip_prefix("quest: device ")?
                .strip_suffix(" (1234:11e8) -> sandbox 'probe'")
        })
        .unwrap_or_else(|| panic!("edu is the probe's: {c}"));
    assert_line(
        c,
        "quest: IOMMU VT-d at 0xfed90000: 1 devices in 1 domains (",
    );

    // Bus mastering allowed, edu's registers through its BAR, DMA inside RAM intact.
    assert_line(
        c,
        &format!("[probe] dma-probe: edu at {edu}, bus master enabled"),
    );
    assert_line(c, "[probe] dma-probe: edu id 0x010000ed, liveness ok");
    assert_line(
        c,
        "[probe] dma-probe: DMA in its RAM verified: 2048 bytes 0x",
    );
    assert_line(c, "[probe] dma-probe: DMA to 0x400000, outside its RAM");

    // The IOMMU refused the write above its 4 MiB of RAM; the monitor said so and
    // stopped it.
    let fault = format!(
        "quest: DMA fault: device {edu} of sandbox 'probe' wrote 0x400000 (not its memory); sandbox stopped"
    );
    assert_line(c, &fault);
    let halted = line(
        c,
        "quest: sandbox 'probe' core 0: DMA fault (device write) at rip=",
    );
    assert!(halted.ends_with("addr=0x400000 -> halted"), "{halted}");
    assert!(!c.contains("NOT CONTAINED"), "the DMA got through: {c}");
    assert!(!c.contains("still running after the DMA"), "{c}");
    assert!(!c.contains("FAILED"), "{c}");
    assert_line(c, "quest:   'probe': halted, faults 1");

    // The bystander went on after the fault and finished normally.
    let at_fault = c.find(&fault).unwrap();
    let ticks_after = c[at_fault..]
        .lines()
        .filter(|l| l.starts_with("[bystander] bystander: tick "))
        .count();
    assert!(ticks_after > 0, "no tick after the fault: {c}");
    assert_line(c, "[bystander] bystander: done");
    assert_line(c, "quest: sandbox 'bystander' exited with status 0");
    assert_failed(&out);
}
