//! Boot test of migration (`partition-manifests/migration.toml`): a sandbox streams
//! verified messages while it migrates itself and a controller migrates it, back and
//! forth between two placements that differ in cores and host memory; the monitor's
//! records, the sandboxes' own checks (clock, RAM, messages) and the refusals are
//! asserted.
//!
//! Like `boot.rs`, it skips (loudly) only when Bochs is missing and `QUEST_REQUIRE_BOOT`
//! is unset.

use quest_abi::console::Record;

#[macro_use]
mod common;
use common::{assert_passed, check_back_and_forth, line, number_after};

#[test]
fn a_sandbox_migrates_between_cores_and_memory_with_its_clock_ram_and_messages_intact() {
    let (_, out) = boot_example!("migration");
    let c = &out.console;
    assert_passed(&out);

    // SELF = 10 by the mover, CONTROL = 10 by the controller; back and forth between
    // cores 1 and 2 and the two RAM regions; pre-copy of its 4 MiB; max_downtime 1s.
    let log = check_back_and_forth(c, "mover", 20, (&[1], &[2]), 1024, 1000);
    let (records, max_downtime) = (&log.records, log.tsc_khz * 1000);

    // Who may not ask.
    for (sandbox, by) in [
        ("sink", "controller"),
        ("controller", "controller"),
        ("mover", "sink"),
    ] {
        assert!(
            records.contains(&Record::MigrationRefused {
                sandbox,
                by,
                reason: "not allowed"
            }),
            "{sandbox} by {by}"
        );
    }
    // Refusals never stopped anything: no refused migration was counted.
    assert!(records
        .iter()
        .all(|r| !matches!(r, Record::MigrationRefused { reason, .. } if *reason != "not allowed" && *reason != "busy")));

    // The sandboxes' own checks.
    let mover = line(c, "[mover] mover: 10 self-migrations");
    assert!(
        mover.contains("200 messages sent, TSC monotonic, RAM intact"),
        "{mover}"
    );
    assert!(
        number_after(mover, "worst downtime ") <= max_downtime,
        "{mover}"
    );
    line(c, "[controller] controller: 10 migrations of the mover");
    line(c, "refusals as expected");
    line(c, "[sink] sink: 200 messages verified in order");
}
