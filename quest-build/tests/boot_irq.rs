//! Boot test of device interrupts (`partition-manifests/irq.toml`) in QEMU TCG, on the
//! SVM backend (QEMU's `edu` device, which Bochs does not have). `probe` owns edu; its
//! irq-probe raises interrupts by INTx and by MSI and handles each. Checked:
//! - the monitor's log: edu's BAR0 mapped uncached, the I/O APIC found and masked, the
//!   INTx line routed to the probe's first core with vector 32 + line;
//! - every interrupt arrived, on the right vCPU, by both paths (INTx and MSI to virtual
//!   APIC ID 0 on vCPU 0; MSI to virtual APIC ID 1 on vCPU 1), and the probe measured
//!   latency and exits per interrupt (printed here);
//! - an MSI to APIC ID 2 (the bystander's core, outside the probe's sandbox) and one with
//!   NMI delivery are refused and logged once each, and nothing arrives anywhere;
//! - the probe's request to migrate itself is refused: it owns a device;
//! - the bystander sees no PCI function and gets no interrupt; both exit 0.
//!
//! `partition-manifests/irq-rtc.toml` (the CMOS clock's periodic interrupt on line 8, a
//! port device with its IRQ) runs on both backends: VT-x in Bochs, where an interrupt
//! costs no VM exit (the x2APIC EOI passes through), and SVM in QEMU, where the EOI is
//! the one exit (the monitor emulates the x2APIC on QEMU's xAPIC).

#[macro_use]
mod common;

use common::{assert_line, assert_passed, boot_with, build, line};
use quest_build::cli::bench_devices::{phases, rtc_exits};
use quest_build::run::{qemu::Accel, Emulator};

#[test]
fn irq_in_qemu_svm_reaches_the_owners_cores_by_intx_and_msi() {
    require_qemu!();
    let built = build("irq", "svm-irq");
    let out = boot_with(
        built.iso.as_ref().unwrap(),
        &built.elf,
        Emulator::Qemu(Accel::Tcg),
    );
    assert_line(&out.console, "quest: AMD SVM with nested paging (");
    assert_passed(&out);
    let c = &out.console;

    // Where edu is and which line firmware gave it, as the probe saw them.
    let found = line(c, "[probe] irq-probe: edu at ");
    let at = found
        .split("edu at ")
        .nth(1)
        .and_then(|r| r.split(',').next())
        .expect("edu's address");
    let irq = found
        .split(" line ")
        .nth(1)
        .and_then(|r| r.split(',').next())
        .and_then(|l| l.parse::<u8>().ok())
        .expect("edu's line");
    assert!(found.contains("reads 0x010000ed"), "{found}");
    assert!(found.contains("bus master on"), "{found}");
    assert_line(c, &format!("quest: device {at} BAR0 0x"));
    assert!(
        line(c, &format!("quest: device {at} BAR0 ")).ends_with("-> sandbox 'probe' (uncached)")
    );
    // Both paths go through VT-d's interrupt remapping (remappable MSI and I/O APIC
    // entries; a wrong entry would lose the interrupts counted below).
    assert_line(
        c,
        "quest: VT-d interrupt remapping on: 1 units, compatibility format blocked",
    );
    assert_line(
        c,
        "quest: I/O APIC at 0xfec00000: 24 pins (GSI 0-23), all masked",
    );
    assert_line(
        c,
        &format!(
            "quest: IRQ {irq} (device {at} INTA, level, active high) -> sandbox 'probe' core 0 (APIC ID 0) vector {}",
            32 + irq
        ),
    );

    let p = phases(c);
    assert_eq!(p.len(), 2, "INTx and MSI phases: {c}");
    for phase in &p {
        assert!(phase.rounds > 0);
        assert_eq!(
            phase.arrived, phase.rounds,
            "every interrupt arrived: {phase:?}"
        );
        assert_eq!(phase.on, [phase.rounds, 0, 0], "all on vCPU 0: {phase:?}");
        // QEMU TCG has no x2APIC: the monitor emulates it, so the EOI (one WRMSR) exits;
        // nothing else may (the device's registers are mapped, delivery needs no exit).
        assert!(phase.exits <= phase.rounds, "{phase:?}");
        eprintln!(
            "{}: latency median {} p99 {} max {} cycles; {:.2} exits per interrupt",
            phase.name,
            phase.median,
            phase.p99,
            phase.max,
            phase.exits_per_interrupt()
        );
    }
    assert_eq!(p[0].name, "INTx");
    assert_eq!(p[1].name, "MSI");
    assert_line(
        c,
        "[probe] irq-probe: MSI to APIC ID 1: 4 of 4 arrived on vCPU 1 (0 elsewhere)",
    );

    // Hostile messages: refused, logged once each, nothing delivered.
    common::checks::hostile_msis_refused(c, at);

    assert_line(
        c,
        "quest: migration of 'probe' asked by 'probe' refused: it owns PCI devices or IRQ lines",
    );
    assert_line(
        c,
        "[probe] irq-probe: 0 stray interrupts; all checks passed",
    );
    assert_line(c, "[bystander] irq-probe: bystander sees 0 PCI functions");
    assert_line(
        c,
        "[bystander] irq-probe: bystander got 0 interrupts while the probe ran",
    );
}

/// irq-rtc.toml's checks; returns the exits per interrupt the clock measured.
fn rtc_checks(out: &quest_build::run::RunOutcome) -> (u64, u64) {
    assert_passed(out);
    let c = &out.console;
    assert_line(
        c,
        "quest: IRQ 8 (ports 0x70-0x71, edge, active high) -> sandbox 'clock' core 0 (APIC ID 0) vector 40",
    );
    let (ticks, exits) = rtc_exits(c).expect("the clock's RTC line");
    // At least the 64 it waits for; one more may land between its count reaching 64 and
    // its turning interrupts off (QEMU's RTC follows host time).
    assert!((64..=65).contains(&ticks), "{c}");
    assert_line(
        c,
        &format!(
            "[clock] irq-probe: RTC: {ticks} of 64 periodic interrupts on vCPU 0 (vector 40), 0 stray;"
        ),
    );
    assert_line(
        c,
        "[bystander] irq-probe: bystander got 0 interrupts while the probe ran",
    );
    eprintln!("RTC: {ticks} interrupts, {exits} exits");
    (ticks, exits)
}

#[test]
fn rtc_interrupts_cost_no_exit_on_vt_x_in_bochs() {
    require_bochs!();
    let built = build("irq-rtc", "irq-rtc");
    let out = boot_with(built.iso.as_ref().unwrap(), &built.elf, Emulator::Bochs);
    assert!(!out.console.contains("AMD SVM"), "Bochs' Intel CPU: VT-x");
    let (_, exits) = rtc_checks(&out);
    assert_eq!(exits, 0, "the x2APIC EOI passes through on VT-x");
}

#[test]
fn rtc_interrupts_cost_only_the_eoi_on_svm_in_qemu() {
    require_qemu!();
    let built = build("irq-rtc", "svm-irq-rtc");
    let out = boot_with(
        built.iso.as_ref().unwrap(),
        &built.elf,
        Emulator::Qemu(Accel::Tcg),
    );
    let (ticks, exits) = rtc_checks(&out);
    assert_eq!(
        exits, ticks,
        "one exit per interrupt: the emulated x2APIC's EOI"
    );
}
