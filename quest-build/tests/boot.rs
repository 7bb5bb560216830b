//! Boot tests: each example manifest is built into an image and booted in Bochs (VT-x with
//! EPT, SMP), and its console is checked (`common::checks`, the same checks as the SVM
//! boot tests in `boot_svm.rs`). Plus: a corrupted payload is refused.
//!
//! They skip (loudly) only when Bochs is not installed and `QUEST_REQUIRE_BOOT` is unset;
//! CI sets it, so there a missing emulator is a failure.

#[macro_use]
mod common;

use common::{assert_refused, boot_with, build, checks};
use quest_build::image::inspect::{inspect, read_table};
use quest_build::image::iso;
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
    let built = build("hello", "corrupt-source");
    let mut bytes = std::fs::read(&built.elf).expect("the image exists");
    let (table, at) = read_table(&bytes).expect("the table is valid");
    let payload = table.sandbox_payloads(1)[0];
    let byte = at.payload_area(table.header.total_size.get()) + payload.offset.get() as usize;
    bytes[byte] ^= 0x5a;
    // The host sees it too, before anything boots.
    assert_eq!(
        inspect(&bytes)
            .expect("the table is still valid")
            .bad_payloads,
        1
    );

    let elf = built.elf.with_file_name("corrupted.elf");
    let iso_path = elf.with_extension("iso");
    std::fs::write(&elf, &bytes).expect("writing the corrupted image");
    iso::make_iso(&elf, &iso_path, "corrupted").expect("making the ISO");
    let out = boot_with(&iso_path, &elf, Emulator::Bochs);
    assert_refused(
        &out,
        "payload 0 of sandbox 'beta' is corrupt (SHA-256 mismatch); refusing to boot",
        "[beta]",
    );
}
