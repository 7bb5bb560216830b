//! Boot tests: each example manifest is built into an image and booted in Bochs (VT-x with
//! EPT, SMP), and its console is checked (`common::checks`, the same checks as the SVM
//! boot tests in `boot_svm.rs`, which boots each of these on SVM in QEMU as well). Plus:
//! a corrupted payload is refused (`common::boot_corrupted`, also in `boot_svm.rs`).
//!
//! They skip (loudly) only when Bochs is not installed and `QUEST_REQUIRE_BOOT` is unset;
//! CI sets it, so there a missing emulator is a failure.

#[macro_use]
mod common;

use common::checks;
use quest_build::run::Emulator;

#[test]
fn hello_runs_std_hermit_and_bare_sandboxes_and_exits_0() {
    let (built, out) = boot_example!("hello");
    checks::hello(&built, &out);
}

boot_checks! {
    require_bochs, common::build_and_boot;
    hermit_failures_are_contained_and_reported: "hermit-faults" => hermit_faults;
    isolation_contains_every_attack_and_the_victim_finishes: "isolation" => isolation;
    a_restarted_sandbox_comes_back_and_exits_0: "restart" => restart;
}

#[test]
fn a_corrupted_payload_byte_is_refused() {
    require_bochs!();
    let out = common::boot_corrupted("corrupt-source", Emulator::Bochs);
    checks::corrupted_payload(&out);
}
