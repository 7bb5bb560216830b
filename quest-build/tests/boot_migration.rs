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

use quest_abi::console::Record;
use quest_abi::hypercall::MigrateRefusal;

#[macro_use]
mod common;
use common::{
    assert_passed, check_back_and_forth, check_scrubs, line, number_after, standby_region,
};

#[test]
fn a_sandbox_migrates_between_cores_and_memory_with_its_clock_ram_and_messages_intact() {
    let (_, out) = boot_example!("migration");
    let c = &out.console;
    assert_passed(&out);

    // SELF by the mover, CONTROL by the controller (the manifest's env); back and forth
    // between cores 1 and 2 and the two RAM regions; pre-copy of its 4 MiB; max_downtime 1s.
    const SELF: u64 = 50;
    const CONTROL: u64 = 50;
    const MIGRATIONS: u64 = SELF + CONTROL;
    // The mover's working set (WORKING_SET_KIB), in 4 KiB pages.
    const WORKING_SET_KIB: u64 = 256;
    const WORKING_SET_PAGES: u64 = WORKING_SET_KIB / 4;
    let log = check_back_and_forth(c, "mover", MIGRATIONS as usize, (&[1], &[2]), 1024, 1000);
    let (records, max_downtime, moves) = (&log.records, log.tsc_khz * 1000, &log.moves);
    // The mover rewrites its working set whenever its own request answers busy, that is
    // while the controller migrates it: pre-copy must see pages dirtied while it copied
    // (more than the first round's 1024 pages by at least half the working set, or more
    // than one round).
    let dirtied = moves
        .iter()
        .filter(|m| m.rounds > 1 || m.pages >= 1024 + WORKING_SET_PAGES / 2)
        .count();
    assert!(
        dirtied > 0,
        "no migration saw the working set dirtied: {moves:?}"
    );

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
    // No other refusal: the mover's are who asks, busy and destination not free; the
    // faulter's, below.
    assert!(records.iter().all(|r| !matches!(
        r,
        Record::MigrationRefused { sandbox: "mover", reason, .. }
            if *reason != "not allowed" && *reason != "busy" && *reason != "destination not free"
    )));
    // Right after each of its own migrations the mover asks again: the destination (the
    // placement it just left) is still being scrubbed, so it is refused as not free (or
    // busy, when the controller's migration of it is under way), never accepted.
    let not_free = records
        .iter()
        .filter(|r| {
            **r == Record::MigrationRefused {
                sandbox: "mover",
                by: "mover",
                reason: "destination not free",
            }
        })
        .count() as u64;
    assert!(not_free > 0, "the mover was never refused as not free");

    // The sandboxes' own checks.
    let mover = line(c, &format!("[mover] mover: {SELF} self-migrations"));
    assert!(
        number_after(mover, "destination not free ") == not_free,
        "the mover counted other refusals than the monitor logged: {mover}"
    );
    assert!(
        mover.contains(&format!(
            "{} messages sent, TSC monotonic, working set of {WORKING_SET_KIB} KiB intact",
            SELF * 20
        )),
        "{mover}"
    );
    assert!(
        number_after(mover, "worst downtime ") <= max_downtime,
        "{mover}"
    );
    line(
        c,
        &format!("[controller] controller: {CONTROL} migrations of the mover"),
    );
    line(c, "refusals as expected");
    line(
        c,
        &format!("[sink] sink: {} messages verified in order", SELF * 20),
    );

    // The faulter: refused by the admission test (the result code it printed), still
    // running; busy while the controller's migration of it is under way; then it
    // faulted during pre-copy.
    let code = |r: MigrateRefusal| format!("{} ({:#x})", r.as_str(), r.code());
    line(
        c,
        &format!(
            "[faulter] faulter: stop-and-copy refused: {}, still running",
            code(MigrateRefusal::WouldExceedMaxDowntime)
        ),
    );
    assert!(records.contains(&Record::MigrationRefused {
        sandbox: "faulter",
        by: "faulter",
        reason: "would exceed max_downtime"
    }));
    line(
        c,
        &format!(
            "[faulter] faulter: asking again: {}, its migration is under way",
            code(MigrateRefusal::Busy)
        ),
    );
    // The migration was abandoned because it stopped (the fault), never completed, and
    // the controller got the abandoned code.
    assert!(
        records.iter().any(|r| matches!(
            r,
            Record::MigrationAbandoned {
                sandbox: "faulter",
                reason: "the sandbox stopped",
                ..
            }
        )),
        "no abandon record for the faulter"
    );
    assert!(moves.iter().all(|m| m.sandbox != "faulter"));
    // The abandoned pre-copy's destination was scrubbed, and still all zero at the end
    // (the mover's scrubs are checked by `check_back_and_forth`).
    check_scrubs(records, "faulter", standby_region(c, "faulter"));
    line(
        c,
        &format!(
            "[controller] controller: migration of the faulter abandoned ({:#x})",
            MigrateRefusal::Abandoned.code()
        ),
    );
    // on_fault = "restart" applied: a triple fault, then a second launch that exits 0;
    // the others finished normally (assert_passed: every sandbox exited 0).
    line(c, "quest: sandbox 'faulter' core 4: triple fault");
    line(
        c,
        "[faulter] faulter: relaunched after its fault (launch 2), exiting",
    );
    let summary = line(c, "quest:   'faulter': exited 0, faults 1, launches 2");
    assert!(!summary.is_empty());
    for other in ["controller", "mover", "sink"] {
        line(
            c,
            &format!("quest:   '{other}': exited 0, faults 0, launches 1"),
        );
    }
}
