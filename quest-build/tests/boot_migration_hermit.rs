//! Boot test of a Hermit sandbox's migration (`partition-manifests/migration-hermit.toml`):
//! `migrate-std`, a std program on two vCPUs, sleeps, computes and writes to a channel
//! while a controller migrates it 10 times between two placements that differ in cores
//! and host memory. Asserted: the monitor's records (10 moves back and forth, each within
//! `max_downtime`), that the moves happened while the program's threads ran, the program's
//! own checks (sleeps never early and stretched by no more than the worst downtime plus
//! scheduling latency, `Instant` monotonic, verified compute jobs on both vCPUs), every
//! message verified by the bare sink, and no fault anywhere.
//!
//! Like `boot.rs`, it skips (loudly) only when Bochs is missing and `QUEST_REQUIRE_BOOT`
//! is unset.
//!
//! The checks are `common::checks::migration_hermit`; the SVM boot test (`boot_svm.rs`)
//! applies them to the same manifest booted in QEMU.

#[macro_use]
mod common;

boot_checks! {
    require_bochs, crate::common::build_and_boot;
    a_hermit_sandbox_sleeps_computes_and_streams_correctly_across_ten_migrations: "migration-hermit" => migration_hermit;
}
