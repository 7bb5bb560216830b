//! Boot test of migration (`partition-manifests/migration.toml`): a sandbox streams
//! verified messages while it migrates itself and a controller migrates it, back and
//! forth between two placements that differ in cores and host memory; the monitor's
//! records, the sandboxes' own checks (clock, a working set rewritten during pre-copy,
//! messages) and the refusals are asserted. A second migratable sandbox is refused a
//! stop-and-copy (it would exceed its max_downtime) and busy while its migration is under
//! way, then faults during pre-copy: the migration is abandoned and on_fault restarts it.
//!
//! Like `boot.rs`, it skips (loudly) only when Bochs is missing and `QUEST_REQUIRE_BOOT`
//! is unset.
//!
//! The checks are `common::checks::migration`; the SVM boot test (`boot_svm.rs`)
//! applies them to the same manifest booted in QEMU.

#[macro_use]
mod common;

boot_checks! {
    require_bochs, crate::common::build_and_boot;
    a_sandbox_migrates_between_cores_and_memory_with_its_clock_ram_and_messages_intact: "migration" => migration;
}
