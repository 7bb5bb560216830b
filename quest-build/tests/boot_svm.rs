//! Boot tests on the SVM backend: the example manifests booted in QEMU's software
//! emulation (an AMD CPU with SVM and nested paging, no x2APIC, no next-RIP save), with
//! the same checks as the VT-x boot tests in Bochs (`common::checks`), and a line that
//! shows the monitor chose SVM and brought the cores up through the xAPIC.
//!
//! They skip (loudly) only when QEMU or the GRUB tools are missing and `QUEST_REQUIRE_BOOT`
//! is unset; CI sets it, so there a missing emulator is a failure.

#[macro_use]
mod common;

use common::{assert_line, boot_with, build, checks};
use quest_build::image::BuiltImage;
use quest_build::run::{self, qemu::Accel, Emulator, RunOutcome};

/// Skips the test unless QEMU (and, like every boot test, Bochs' setup) is there.
macro_rules! require_qemu {
    () => {
        require_bochs!();
        if let Some(missing) = run::host::qemu_missing() {
            if std::env::var_os("QUEST_REQUIRE_BOOT").is_some() {
                panic!("QUEST_REQUIRE_BOOT is set, but {missing}");
            }
            eprintln!("\n*** SKIPPED SVM boot test: {missing} ***\n");
            return;
        }
    };
}

/// Builds `partition-manifests/<name>.toml` (into `images/tests/svm-<name>.iso`) and boots
/// it in QEMU TCG; checks that the SVM backend ran it.
fn boot_on_svm(name: &str) -> (BuiltImage, RunOutcome) {
    let built = build(name, &format!("svm-{name}"));
    let iso = built.iso.as_ref().expect("an ISO was built");
    let out = boot_with(iso, &built.elf, Emulator::Qemu(Accel::Tcg));
    assert_line(&out.console, "quest: AMD SVM with nested paging (");
    assert!(!out.timed_out, "{}", out.describe());
    (built, out)
}

#[test]
fn hello_runs_on_svm() {
    require_qemu!();
    let (built, out) = boot_on_svm("hello");
    checks::hello(&built, &out);
    // QEMU 7.2's emulated CPU has no x2APIC: the monitor started its cores through the
    // xAPIC, and the Hermit sandboxes still used an x2APIC (emulated) for their threads.
    assert_line(&out.console, "quest: core 1 online (xAPIC ID 1)");
}

/// A test that boots `partition-manifests/<manifest>.toml` on SVM and applies the VT-x
/// boot test's check `check` (from `common::checks`) to the outcome.
macro_rules! same_checks_on_svm {
    ($($test:ident: $manifest:literal => $check:ident;)*) => {$(
        #[test]
        fn $test() {
            require_qemu!();
            let (_, out) = boot_on_svm($manifest);
            checks::$check(&out);
        }
    )*};
}

same_checks_on_svm! {
    isolation_holds_on_svm: "isolation" => isolation;
    restart_works_on_svm: "restart" => restart;
    hermit_failures_are_contained_on_svm: "hermit-faults" => hermit_faults;
    hostile_channel_endpoints_are_contained_on_svm: "channels-hostile" => channels_hostile;
    a_hermit_ping_and_a_bare_pong_run_on_svm: "pingpong-hermit" => pingpong_hermit;
}

#[test]
fn a_migrating_table_is_refused_clearly_on_svm() {
    require_qemu!();
    let built = build("migration", "svm-migration");
    let iso = built.iso.as_ref().expect("an ISO was built");
    let out = boot_with(iso, &built.elf, Emulator::Qemu(Accel::Tcg));
    assert!(!out.passed());
    assert_line(
        &out.console,
        "quest: this table migrates vCPUs (standby cores), which the SVM backend cannot do yet; boot it on VT-x",
    );
    assert!(
        !out.console.contains("launched at TSC"),
        "no sandbox may run"
    );
    assert!(!out.timed_out, "the monitor stops the machine itself");
}
