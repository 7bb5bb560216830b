//! Boot test of `downtime_clock` (`partition-manifests/migration-clock.toml`): two bare
//! sandboxes read their TSC without pause while a controller migrates each 5 times
//! (cores and RAM); then the controller sends each its own TSC. `elapses` (the default)
//! must have seen every pause as a step of at least the downtime the monitor reported,
//! and end level with the controller's clock; `hidden` must have seen no step as long as
//! a pause, and end behind the controller by what the pauses hid (at most their sum).
//!
//! Like `boot.rs`, it skips (loudly) only when Bochs is missing and `QUEST_REQUIRE_BOOT`
//! is unset.
//!
//! The checks are `common::checks::migration_clock`; the SVM boot test (`boot_svm.rs`)
//! applies them to the same manifest booted in QEMU.

#[macro_use]
mod common;

boot_checks! {
    require_bochs, crate::common::build_and_boot;
    the_downtime_clock_shows_or_hides_a_migrations_pause: "migration-clock" => migration_clock;
}
